/* Small helpers: allocation that aborts on OOM (daemon side only), time, ids, fd I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef uint64_t usec_t;
#define USEC_PER_SEC ((usec_t)1000000)
#define USEC_PER_MSEC ((usec_t)1000)

/* Daemon allocation: abort on OOM (crun OOM(), Valkey zmalloc). Never use in lib/. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

usec_t now_usec(clockid_t clock); /* CLOCK_MONOTONIC or CLOCK_REALTIME */
/* Wall-clock milliseconds since the epoch: the unit of every timestamp sbx stores. */
int64_t now_ms(void);
/* base64url without padding (RFC 4648 §5) of len bytes into out, which holds (len * 4 + 2) / 3 + 1 bytes:
 * the alphabet of sbx's signed tokens, safe in URLs, headers and cookies. */
void b64url_encode(const unsigned char *in, size_t len, char *out);
/* Writes an RFC 3339 UTC timestamp with milliseconds ("2026-11-22T15:00:00.123Z") into buf (>= 32 bytes). */
void format_time_ms(char *buf, size_t size, int64_t ms);

/* Sandbox ids: "sbx_" + 20 lowercase base32 chars from getrandom(). Command ids: "cmd_" + 20. */
#define SBX_ID_MAX 64
void id_generate(char *ret, size_t size, const char *prefix);
/* A client-supplied id: 1..64 chars of [A-Za-z0-9_.-], not starting with '.' */
bool id_is_valid(const char *id);

/* Blocking helpers that retry EINTR and short counts. Return 0 or -errno; read_full returns bytes read. */
int write_all(int fd, const void *buf, size_t len);
ssize_t read_full(int fd, void *buf, size_t len);
int fd_set_nonblock(int fd, bool on);
int fd_set_cloexec(int fd, bool on);

/* Parses "512M", "1G", "1024" (bytes unless suffixed; K/M/G/T are powers of 1024). */
int parse_size(const char *s, uint64_t *ret);

/* mkdir -p relative to the current directory or absolute; mode for new directories. */
int mkdir_p(const char *path, mode_t mode);
/* rm -rf that never crosses mount points; returns 0 or -errno. */
int rm_rf(const char *path);
