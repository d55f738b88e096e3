/* libsbx: the C client of sbxd's native JSON/HTTP API (docs/api.md).
 *
 * Conventions (STYLE.md C):
 *  - Every call returns 0 (or a count) on success and a negative errno on failure. It never aborts; out of
 *    memory is -ENOMEM.
 *  - Calls that talk to the daemon take a caller-owned `struct sbx_err *` as their last argument (may be
 *    NULL). On failure it holds the HTTP status (0 for transport failures), the API's stable error code
 *    ("not_found", "invalid_argument", ...; "unavailable" when the daemon could not be reached) and its
 *    message. On success it is left untouched.
 *  - Strings returned through `ret_…` are new allocations owned by the caller (free()); structs returned
 *    through `ret_…` are released with their `…_done()`/`…_free()` function.
 *  - A `struct sbx_client` holds one keep-alive connection and must be used by one thread at a time. Use
 *    one client per thread (they are cheap).
 *
 * HTTP errors map to errno as: 400 -EINVAL, 401 -EACCES, 403 -EPERM, 404 -ENOENT, 405 -EOPNOTSUPP,
 * 409 -EBUSY, 413/431 -E2BIG, 416 -ERANGE, 429 -EAGAIN, 501 -EOPNOTSUPP, 504 -ETIMEDOUT, 507 -ENOSPC,
 * other statuses -EIO; transport failures are -ECONNREFUSED, -ETIMEDOUT, -ECONNRESET or -EIO. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SBX_PUBLIC __attribute__((visibility("default")))

#define SBX_VERSION "0.1.0"
#define SBX_DEFAULT_URL "http://127.0.0.1:7070"

/* Failure details of one call. Fixed size, nothing to release. */
struct sbx_err {
    int http_status; /* 0 when no HTTP answer was received */
    char code[32];   /* stable machine code, e.g. "not_found"; "unavailable" on transport failure */
    char message[256];
};

/* Returns the library version string (SBX_VERSION of the build). */
SBX_PUBLIC const char *sbx_version(void);

/* ---- Client ---------------------------------------------------------------------------------------- */

struct sbx_client;

/* Creates a client for the daemon at `url` (NULL: $SBX_URL, else SBX_DEFAULT_URL) authenticating with
 * `api_key` (NULL: $SBX_API_KEY, else none). Nothing is sent yet. Returns 0, -EINVAL (bad URL) or
 * -ENOMEM. */
SBX_PUBLIC int sbx_client_new(const char *url, const char *api_key, struct sbx_client **ret);
/* Closes the connection and frees the client. Accepts NULL; returns NULL. */
SBX_PUBLIC struct sbx_client *sbx_client_free(struct sbx_client *c);
/* The base URL in use (borrowed, valid until sbx_client_free()). */
SBX_PUBLIC const char *sbx_client_url(const struct sbx_client *c);

/* GET /healthz. On success *ret_version (may be NULL) is the daemon's version (caller frees). */
SBX_PUBLIC int sbx_health(struct sbx_client *c, char **ret_version, struct sbx_err *err);

/* Escape hatch for anything without a typed wrapper: sends `method` to `path_and_query` (already
 * URL-encoded, starting with "/") with an optional JSON body. On 2xx returns the HTTP status and, if
 * ret_body is not NULL, the response body as a NUL-terminated string (caller frees; "" for 204). */
SBX_PUBLIC int sbx_request(struct sbx_client *c, const char *method, const char *path_and_query,
                           const char *json_body, char **ret_body, struct sbx_err *err);

/* ---- Snapshots ------------------------------------------------------------------------------------- */

/* POST /v1/snapshots?name=NAME with the image tarball read from fd (docker save or OCI layout). The import
 * goes on in the daemon: *ret_json (caller frees) is the snapshot object, status "building"; poll
 * GET /v1/snapshots/{id} (sbx_request) until it is "ready" or "failed". */
SBX_PUBLIC int sbx_snapshot_import(struct sbx_client *c, const char *name, int fd, char **ret_json,
                                   struct sbx_err *err);

/* ---- Sandboxes ------------------------------------------------------------------------------------- */

struct sbx_create_opts {
    const char *snapshot;        /* NULL: daemon default ("host") */
    const char *name;            /* NULL: none */
    double cpus;                 /* 0: daemon default */
    int64_t memory_mb;           /* 0: daemon default */
    int64_t pids;                /* 0: daemon default */
    const char *const *env;      /* NULL-terminated "K=V" array, or NULL */
    const char *const *metadata; /* NULL-terminated "K=V" array, or NULL */
    /* Lifecycle, in whole seconds. 0: daemon default; SBX_NEVER: switched off (sent as 0). */
    int64_t idle_ttl_s;          /* stop the sandbox after this long without activity (default 600) */
    int64_t delete_after_stop_s; /* delete it this long after it stopped (default never) */
    int64_t timeout_s;           /* delete it this long after creation or the last renew (default never) */
    /* NULL, or a checkpoint to start from: "ckp_..." or "SANDBOX:NAME" (its snapshot and disk size are
     * the checkpoint's; do not set snapshot with it). */
    const char *checkpoint;
    /* NULL-terminated "VOLUME:/path" or "VOLUME:/path:ro" array (VOLUME: a volume's name or id), or NULL */
    const char *const *volumes;
    /* Network: NULL or "none" (loopback only, the default) or "egress" (outbound IPv4 through sbxd's
     * policy; docs/api.md). Setting any of the egress fields below implies "egress". */
    const char *network;
    const char *egress_default;      /* "allow" or "deny" (NULL: deny) */
    const char *const *egress_allow; /* NULL-terminated IPv4 CIDRs and domains ("*.x.com"), or NULL */
    const char *const *egress_deny;  /* the same, checked first */
};

/* Lifecycle value meaning "never" (0 on the wire) where 0 in a struct means "default" or "unchanged". */
#define SBX_NEVER INT64_C(-1)

/* A sandbox as returned by the daemon. All strings are owned by the struct (NULL when absent). */
struct sbx_sandbox {
    char *id;
    char *name;
    /* "creating", "running", "paused", "stopped" (files kept; `start` brings it back), "failed", or
     * "deleted" (a tombstone: GET answers for a deleted sandbox for 24 h, see state_reason). */
    char *state;
    char *snapshot;
    char *created_at; /* RFC 3339 */
    double cpus;
    int64_t memory_mb;
    int64_t pids;
    char *json; /* the whole object as compact JSON text */
    /* Lifecycle settings in seconds, 0 = never (-1 when the daemon did not send them). */
    int64_t idle_ttl_s;
    int64_t delete_after_stop_s;
    int64_t timeout_s;
    char *last_active_at; /* RFC 3339 */
    char *stopped_at;     /* NULL unless stopped */
    char *expires_at;     /* NULL without a timeout */
    char *state_reason;   /* why sbxd put it in its state (idle, timeout, ...); NULL when a client did */
};

/* Frees the strings of an embedded sandbox and zeroes it. Accepts a zeroed struct. */
SBX_PUBLIC void sbx_sandbox_done(struct sbx_sandbox *s);
/* Frees an array returned by sbx_sandbox_list(). Accepts NULL. */
SBX_PUBLIC void sbx_sandbox_list_free(struct sbx_sandbox *list, size_t n);

/* POST /v1/sandboxes. opts may be NULL. On success fills *ret (release with sbx_sandbox_done()). */
SBX_PUBLIC int sbx_sandbox_create(struct sbx_client *c, const struct sbx_create_opts *opts,
                                  struct sbx_sandbox *ret, struct sbx_err *err);
/* GET /v1/sandboxes/{id}; `id` is an id or a name. */
SBX_PUBLIC int sbx_sandbox_get(struct sbx_client *c, const char *id, struct sbx_sandbox *ret,
                               struct sbx_err *err);
/* GET /v1/sandboxes. *ret_list is a new array of *ret_n sandboxes (sbx_sandbox_list_free()). */
SBX_PUBLIC int sbx_sandbox_list(struct sbx_client *c, struct sbx_sandbox **ret_list, size_t *ret_n,
                                struct sbx_err *err);

struct sbx_list_opts {
    const char *state;           /* NULL: every live state; "deleted": only the tombstones */
    const char *const *metadata; /* NULL-terminated "K=V" array: all must match; or NULL */
};

/* GET /v1/sandboxes?state=&metadata.K=V: as sbx_sandbox_list(), filtered. opts may be NULL. */
SBX_PUBLIC int sbx_sandbox_list_where(struct sbx_client *c, const struct sbx_list_opts *opts,
                                      struct sbx_sandbox **ret_list, size_t *ret_n, struct sbx_err *err);
/* DELETE /v1/sandboxes/{id}. */
SBX_PUBLIC int sbx_sandbox_delete(struct sbx_client *c, const char *id, struct sbx_err *err);
/* POST /v1/sandboxes/{id}/pause and /resume: freeze every process of the sandbox (no CPU, memory kept)
 * and let it run again. A command or file call on a paused sandbox resumes it by itself. */
SBX_PUBLIC int sbx_sandbox_pause(struct sbx_client *c, const char *id, struct sbx_err *err);
SBX_PUBLIC int sbx_sandbox_resume(struct sbx_client *c, const char *id, struct sbx_err *err);
/* POST /v1/sandboxes/{id}/stop and /start: end every process keeping the files; bring it back. */
SBX_PUBLIC int sbx_sandbox_stop(struct sbx_client *c, const char *id, struct sbx_err *err);
SBX_PUBLIC int sbx_sandbox_start(struct sbx_client *c, const char *id, struct sbx_err *err);

/* What sbx_sandbox_update() changes; a zeroed struct changes nothing. */
struct sbx_update_opts {
    /* Whole seconds. 0: unchanged; SBX_NEVER: switched off. A new timeout_s restarts expires_at from now. */
    int64_t idle_ttl_s;
    int64_t delete_after_stop_s;
    int64_t timeout_s;
    const char *const *metadata; /* NULL: unchanged; else replaces all metadata ({} for an empty array) */
};

/* PATCH /v1/sandboxes/{id}. ret may be NULL; else it is filled with the updated sandbox
 * (sbx_sandbox_done()). */
SBX_PUBLIC int sbx_sandbox_update(struct sbx_client *c, const char *id, const struct sbx_update_opts *opts,
                                  struct sbx_sandbox *ret, struct sbx_err *err);
/* POST /v1/sandboxes/{id}/renew: expires_at becomes now + timeout. timeout_s > 0 also sets the sandbox's
 * timeout_seconds; 0 keeps it (-EINVAL "invalid_argument" from the daemon if the sandbox has none). ret
 * may be NULL; else it is filled with the renewed sandbox (sbx_sandbox_done()). */
SBX_PUBLIC int sbx_sandbox_renew(struct sbx_client *c, const char *id, int64_t timeout_s,
                                 struct sbx_sandbox *ret, struct sbx_err *err);

/* ---- Service URLs ------------------------------------------------------------------------------------ */

/* A signed URL through which sbxd proxies HTTP and WebSocket to a port inside a sandbox. All strings are
 * owned by the struct. */
struct sbx_service_url {
    char *url;        /* "http://HOST/s/ID/PORT/" (or the host form "http://PORT-ID.DOMAIN/") */
    char *token;      /* send as header X-Sbx-Service-Token, or once as ?sbx_token= (becomes a cookie) */
    char *expires_at; /* RFC 3339 */
    char *json;       /* the whole answer */
};

/* POST /v1/sandboxes/{id}/ports/{port}/url. expires_in_s 0: the daemon's default (1 hour). On success
 * *ret is filled (sbx_service_url_done()). */
SBX_PUBLIC int sbx_service_url(struct sbx_client *c, const char *id, int port, int64_t expires_in_s,
                               struct sbx_service_url *ret, struct sbx_err *err);
SBX_PUBLIC void sbx_service_url_done(struct sbx_service_url *u);

/* ---- API keys (admin only: a tenant key gets -EPERM "permission_denied") ---------------------------- */

struct sbx_key_opts {
    const char *name;      /* NULL: none */
    int64_t max_sandboxes; /* 0: unlimited */
    int64_t max_memory_mb; /* 0: unlimited */
};

/* A tenant API key. All strings are owned by the struct (NULL when absent). */
struct sbx_key {
    char *id; /* "key_..." */
    char *name;
    char *created_at;      /* RFC 3339 */
    int64_t max_sandboxes; /* 0: unlimited */
    int64_t max_memory_mb; /* 0: unlimited */
    char *secret;          /* "sbxk_...": only from sbx_key_create(), the one time the daemon shows it */
    char *json;            /* the whole object as compact JSON text (with "key" from sbx_key_create()) */
};

/* Frees the strings of an embedded key, wiping the secret, and zeroes it. Accepts a zeroed struct. */
SBX_PUBLIC void sbx_key_done(struct sbx_key *k);
/* Frees an array returned by sbx_key_list(). Accepts NULL. */
SBX_PUBLIC void sbx_key_list_free(struct sbx_key *list, size_t n);
/* POST /v1/keys. opts may be NULL. On success fills *ret (release with sbx_key_done()). */
SBX_PUBLIC int sbx_key_create(struct sbx_client *c, const struct sbx_key_opts *opts, struct sbx_key *ret,
                              struct sbx_err *err);
/* GET /v1/keys. *ret_list is a new array of *ret_n keys (sbx_key_list_free()), without secrets. */
SBX_PUBLIC int sbx_key_list(struct sbx_client *c, struct sbx_key **ret_list, size_t *ret_n,
                            struct sbx_err *err);
/* DELETE /v1/keys/{id}: the key stops working at once; its sandboxes are kept. */
SBX_PUBLIC int sbx_key_delete(struct sbx_client *c, const char *id, struct sbx_err *err);

/* ---- Commands -------------------------------------------------------------------------------------- */

struct sbx_exec_opts {
    const char *const *argv; /* NULL-terminated argv (resolved with the sandbox's PATH), or NULL to use: */
    const char *command;     /* a shell string run as /bin/sh -c */
    const char *const *env;  /* NULL-terminated "K=V" array, or NULL */
    const char *cwd;         /* NULL: /root */
    double timeout;          /* seconds; 0: none */
    const void *stdin_data;  /* bytes for stdin (any bytes; binary is sent via the stdin endpoint) */
    size_t stdin_len;
    bool stdin_open; /* keep stdin open for sbx_exec_stdin() after stdin_data */
    const char *id;  /* optional client-chosen command id (get-or-create) */
    /* Run on a pseudo-terminal of cols x rows (0: 80 x 24): one output stream (stdout), stdin kept open,
     * TERM=xterm-256color unless env says otherwise. */
    bool pty;
    unsigned cols, rows;
    const char *user; /* NULL: the snapshot's default (root for host); a user name, "UID" or "UID:GID" */
};

enum sbx_stream {
    SBX_STREAM_STDOUT = 1,
    SBX_STREAM_STDERR = 2,
};

/* Receives a command's output and its end. Either callback may be NULL. A callback returning a negative
 * errno aborts the stream; sbx_exec_stream() then returns that value. */
struct sbx_exec_callbacks {
    /* One chunk of decoded bytes; `offset` is the byte offset of data[0] within its stream. */
    int (*on_output)(enum sbx_stream stream, uint64_t offset, const void *data, size_t len, void *userdata);
    /* The command ended. `signal` is 0 unless killed by a signal (then exit_code is 128 + signal);
     * `error_code` is NULL or "timeout", "killed", "command_not_found". Called at most once. */
    int (*on_exit)(int exit_code, int signal, const char *error_code, void *userdata);
    void *userdata;
};

/* The result of sbx_exec_run(). Release with sbx_exec_result_done(). */
struct sbx_exec_result {
    char *id; /* command id */
    int exit_code;
    int signal;          /* 0 if none */
    char error_code[32]; /* "" or "timeout", "killed", "command_not_found" */
    char *stdout_data;   /* decoded bytes, NUL-terminated for convenience (not counted in the length) */
    size_t stdout_len;
    char *stderr_data;
    size_t stderr_len;
    bool stdout_truncated; /* the daemon returned only the first 16 MiB */
    bool stderr_truncated;
};

SBX_PUBLIC void sbx_exec_result_done(struct sbx_exec_result *r);

/* POST /v1/sandboxes/{sid}/commands without waiting. *ret_cmd_id (may be NULL) is the command id (caller
 * frees). Stdin bytes that are not valid UTF-8 text are written through the stdin endpoint. */
SBX_PUBLIC int sbx_exec_start(struct sbx_client *c, const char *sandbox_id, const struct sbx_exec_opts *opts,
                              char **ret_cmd_id, struct sbx_err *err);
/* Streams the command's output over SSE starting at the given byte offsets, calling `cb` for every chunk
 * and once at the end. Returns 0 once the exit event was delivered; -ECONNRESET ("unavailable") if the
 * stream ended before it (reconnect with the offsets past the last chunk seen to miss nothing). */
SBX_PUBLIC int sbx_exec_stream(struct sbx_client *c, const char *sandbox_id, const char *cmd_id,
                               uint64_t stdout_offset, uint64_t stderr_offset,
                               const struct sbx_exec_callbacks *cb, struct sbx_err *err);
/* Starts a command, waits for it to exit ("wait": true) and returns its output. With binary stdin or
 * stdin_open this falls back to start + stream. */
SBX_PUBLIC int sbx_exec_run(struct sbx_client *c, const char *sandbox_id, const struct sbx_exec_opts *opts,
                            struct sbx_exec_result *ret, struct sbx_err *err);
/* POST …/stdin: writes `len` bytes (any size; sent in chunks) and closes stdin afterwards if `close`. */
SBX_PUBLIC int sbx_exec_stdin(struct sbx_client *c, const char *sandbox_id, const char *cmd_id,
                              const void *data, size_t len, bool close, struct sbx_err *err);
/* POST …/signal with a signal number. */
SBX_PUBLIC int sbx_exec_signal(struct sbx_client *c, const char *sandbox_id, const char *cmd_id, int signal,
                               struct sbx_err *err);
/* POST …/resize: a pty command's new window size (1..1000 each); the command gets SIGWINCH. */
SBX_PUBLIC int sbx_exec_resize(struct sbx_client *c, const char *sandbox_id, const char *cmd_id,
                               unsigned cols, unsigned rows, struct sbx_err *err);
/* POST …/kill: SIGKILL to the command's process group. */
SBX_PUBLIC int sbx_exec_kill(struct sbx_client *c, const char *sandbox_id, const char *cmd_id,
                             struct sbx_err *err);
/* GET …/commands/{cid}: the command object as JSON text (caller frees). */
SBX_PUBLIC int sbx_exec_get(struct sbx_client *c, const char *sandbox_id, const char *cmd_id, char **ret_json,
                            struct sbx_err *err);

/* ---- Files ----------------------------------------------------------------------------------------- */

struct sbx_file_entry {
    char *name;
    char *path;
    char *type; /* "file", "dir", "symlink", "other" */
    uint64_t size;
    unsigned mode; /* permission bits */
    char *mtime;
    char *link_target; /* NULL unless a symlink */
};

SBX_PUBLIC void sbx_file_entry_done(struct sbx_file_entry *e);
SBX_PUBLIC void sbx_file_entries_free(struct sbx_file_entry *entries, size_t n);

/* PUT …/files?path=: streams everything readable from `fd` (from its current position) into
 * `remote_path`. Regular files are sent with Content-Length, pipes chunked. mode < 0: daemon default.
 * ret_entry may be NULL. */
SBX_PUBLIC int sbx_file_upload(struct sbx_client *c, const char *sandbox_id, const char *remote_path, int fd,
                               int mode, struct sbx_file_entry *ret_entry, struct sbx_err *err);
/* Same, from a buffer in memory. */
SBX_PUBLIC int sbx_file_write(struct sbx_client *c, const char *sandbox_id, const char *remote_path,
                              const void *data, size_t len, int mode, struct sbx_err *err);
/* GET …/files?path=: streams the file into `out_fd`. Nothing is written to out_fd unless the daemon
 * answers 200. Returns 0 or a negative errno (a short write to out_fd is the write's errno). */
SBX_PUBLIC int sbx_file_download(struct sbx_client *c, const char *sandbox_id, const char *remote_path,
                                 int out_fd, struct sbx_err *err);
SBX_PUBLIC int sbx_file_stat(struct sbx_client *c, const char *sandbox_id, const char *remote_path,
                             struct sbx_file_entry *ret, struct sbx_err *err);
/* *ret_entries is a new array of *ret_n entries (sbx_file_entries_free()). */
SBX_PUBLIC int sbx_file_list(struct sbx_client *c, const char *sandbox_id, const char *remote_dir,
                             struct sbx_file_entry **ret_entries, size_t *ret_n, struct sbx_err *err);
/* mkdir -p; mode < 0: daemon default. */
SBX_PUBLIC int sbx_file_mkdir(struct sbx_client *c, const char *sandbox_id, const char *remote_path, int mode,
                              struct sbx_err *err);
SBX_PUBLIC int sbx_file_move(struct sbx_client *c, const char *sandbox_id, const char *from, const char *to,
                             bool overwrite, struct sbx_err *err);
SBX_PUBLIC int sbx_file_remove(struct sbx_client *c, const char *sandbox_id, const char *remote_path,
                               bool recursive, struct sbx_err *err);

#ifdef __cplusplus
}
#endif
