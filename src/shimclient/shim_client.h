/* sbxd's side of the shim protocol (shim_protocol.h): starting an sbx-shim, request/response calls and
 * attach streams. Blocking calls are bounded by a timeout; nothing here logs above debug. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

/* Starts `shim_path <state_dir>` (state_dir must hold config.json) detached from the caller: the shim
 * forks once at start so it is never the caller's child, and the caller reaps only the short-lived
 * first process (so no zombie stays behind and no subreaper is needed). Waits up to timeout_ms for the
 * shim's ready line. Returns 0 with the shim's and sbx-init's host pids; on failure (the shim's own
 * error, a crash or the timeout, after which the shim is killed) returns a negative errno with err
 * filled. After a failure the caller should still run runtime_cleanup(): a shim killed mid-create may
 * leave mounts or cgroups. */
int shim_spawn(const char *shim_path, const char *state_dir, int timeout_ms, pid_t *ret_shim_pid,
               pid_t *ret_init_pid, sbx_error *err);

/* The same in steps, for callers that wait in their own event loop: start, then call poll each time
 * rd is readable until it returns 1 (ready: pids filled) or < 0 (failed; the shim is killed, the caller
 * should still run runtime_cleanup()). Returns 0 while the line is incomplete. abort kills the shim.
 * close releases rd, always last: stop watching rd (epoll) before closing it, or a registration that
 * outlives the fd can fire later. */
struct shim_spawn {
    pid_t first; /* the short-lived first process, reaped by poll or abort */
    int rd;      /* the ready pipe, nonblocking; -1 once done */
    size_t len;
    char line[4096];
};
int shim_spawn_start(const char *shim_path, const char *state_dir, struct shim_spawn *ret, sbx_error *err);
int shim_spawn_poll(struct shim_spawn *s, const char *state_dir, pid_t *ret_shim_pid, pid_t *ret_init_pid,
                    sbx_error *err);
void shim_spawn_abort(struct shim_spawn *s, const char *state_dir);
void shim_spawn_close(struct shim_spawn *s);

/* Connects a nonblocking socket to <state_dir>/shim.sock (through the directory's fd when the path is
 * too long for sun_path). Returns 0 with *ret_fd, or -errno. */
int shim_socket_connect(const char *state_dir, int *ret_fd);
/* A deadline timeout_ms from now on the monotonic clock (-1 = none), and a wait until fd has events or
 * the deadline passes: 0, -ETIMEDOUT or -errno. */
int64_t shim_deadline(int timeout_ms);
int shim_wait_fd(int fd, short events, int64_t deadline);

/* One request on a new connection: connect, send, read one response, close. req is borrowed; on
 * success *ret_resp is a new reference to the {"ok":true,...} object. An {"error":{...}} answer becomes
 * err (code = -errno field, kind = the "code" string, message) and a negative return. */
int shim_call(const char *state_dir, json_t *req, int timeout_ms, json_t **ret_resp, sbx_error *err);

/* A persistent control connection (sbxd keeps one per sandbox). Calls on it are strictly sequential. */
struct shim_conn;

/* Connects to <state_dir>/shim.sock. Returns 0 with a new connection in *ret. */
int shim_conn_open(const char *state_dir, struct shim_conn **ret, sbx_error *err);
/* Like shim_call on the open connection. After an I/O failure or timeout the connection is broken
 * (shim_conn_broken) and every later call fails; an error answer from the shim leaves it usable. */
int shim_conn_call(struct shim_conn *conn, json_t *req, int timeout_ms, json_t **ret_resp, sbx_error *err);
bool shim_conn_broken(const struct shim_conn *conn);
/* Accepts NULL. */
void shim_conn_close(struct shim_conn *conn);

/* Asks the shim to destroy its sandbox and exit, and waits (up to timeout_ms) until it has closed the
 * connection. Returns 0, or a negative errno (-ENOENT/-ECONNREFUSED: no shim listening). */
int shim_shutdown(const char *state_dir, int timeout_ms);

/* Connects and sends {"op":"attach"} for command cid from the given offsets. Returns 0 with the
 * connected socket (nonblocking, CLOEXEC, caller closes) in *ret_fd. The caller reads frames with
 * shim_frame_parse: DATA frames, then one EXIT frame, then EOF; a RESPONSE frame means the attach
 * failed ({"error":...}, e.g. unknown id) and the shim closes the stream. The caller may write STDIN
 * frames and REQUEST frames {"op":"close_stdin"} / {"op":"signal","signal":N} on it. */
int shim_attach(const char *state_dir, const char *cid, uint64_t stdout_off, uint64_t stderr_off, int *ret_fd,
                sbx_error *err);

/* Converts an {"error":{"code","message","errno"}} object into err; returns err->code (< 0). */
int shim_error_from_json(json_t *resp, sbx_error *err);
