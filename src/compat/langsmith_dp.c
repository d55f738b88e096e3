/* LangSmith's sandbox data plane, served at the dataplane_url sbxd hands out ({host}/langsmith/dp/{id}):
 * /execute and /execute/ws (sbx commands run by the sandbox's shim, with the shim's byte offsets, get-or-
 * create ids and lifecycle timers), /upload and /download (src/files, openat2 RESOLVE_IN_ROOT), /glob,
 * /grep, and /tunnel (the native yamux tunnel, api/tunnel.c). Shapes only; docs/compat/langsmith.md. */
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/codec.h"
#include "api/internal.h"
#include "api/jsonreq.h"
#include "api/keys.h"
#include "api/service.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "compat/langsmith_internal.h"
#include "daemon/daemon.h"
#include "daemon/metrics.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "files/files.h"
#include "http/multipart.h"
#include "loop/loop.h"
#include "shimclient/shim_client.h"
#include "shimclient/shim_protocol.h"

#define SHIM_READ_CHUNK (64 * 1024)
#define SHIM_WRITE_MAX (8u << 20) /* stdin queued toward the shim */
#define CAPTURE_MAX (16u << 20)   /* per stream, for the blocking /execute */
#define COMMAND_MAX (128u * 1024) /* the native limit */
#define SHELL_MAX 4096
#define LIFETIME_MAX_S (366LL * 24 * 3600)
#define UPLOAD_MAX (1ull << 30) /* a multipart upload is streamed; this bounds one file */
#define WALK_DEPTH_MAX 64
#define WALK_VISIT_MAX 100000
#define GLOB_LIMIT_DEFAULT 1000
#define GLOB_LIMIT_MAX 10000
#define GREP_LIMIT_DEFAULT 1000
#define GREP_LIMIT_MAX 10000
#define GREP_FILE_MAX (16u << 20) /* larger files are skipped */
#define GREP_READ_MAX (256u << 20)
#define GREP_LINE_MAX 2000
#define PATTERN_MAX 4096
#define ENV_MAX_ENTRIES 1024
#define ENV_MAX_ENTRY (32 * 1024)

/* --- the sandbox and paths ---------------------------------------------------------------------- */

/* The sandbox of a data-plane request, running: a paused one is resumed and a stopped one started (the
 * SDK keeps using the dataplane_url after stop). A new reference, or NULL with an answer sent. */
static struct sandbox *dp_sandbox(struct api_ctx *c)
{
    struct sandbox *sb = sandbox_lookup(c->d, c->sandbox_id, c->owner);
    sbx_error err = {0};
    if (!sb || sb->warm) {
        if (sb)
            sandbox_unref(sb);
        ls_reply_error(c->req, 404, "NotFound", "Sandbox '%s' not found", c->sandbox_id);
        return NULL;
    }
    sandbox_touch(sb);
    int r = 0;
    if (sb->state == SANDBOX_PAUSED)
        r = sandbox_resume(c->d, sb, &err);
    else if (sb->state == SANDBOX_STOPPED || sb->state == SANDBOX_FAILED) {
        r = keys_check_quota(c->d, sb->owner, 0, sb->res.memory_mb, &err);
        if (r >= 0)
            r = sandbox_start(c->d, sb, &err);
    }
    if (r < 0) {
        ls_reply_sbx_error(c->req, &err, LS_CONTROL);
        return sandbox_unref(sb);
    }
    if (sb->state != SANDBOX_RUNNING || api_files_ready(sb, &err) < 0) {
        ls_reply_error(c->req, 400, "NotReady", "sandbox '%s' is %s", sb->name ? sb->name : sb->id,
                       sandbox_state_to_string(sb->state));
        return sandbox_unref(sb);
    }
    return sb;
}

static json_t *run_config_of(const struct sandbox *sb)
{
    json_t *rc = json_object_get(sb->metadata, LS_RUN_CONFIG_KEY);
    return json_is_object(rc) ? rc : NULL;
}

/* Where relative paths and commands start: the run_config's work_dir, else the snapshot's. Borrowed. */
static const char *work_dir_of(struct sandbox *sb)
{
    const char *w = json_string_value(json_object_get(run_config_of(sb), "work_dir"));
    return w && *w ? w : snapshot_default_cwd(sb->d, sb->snapshot);
}

/* A client path: absolute as is, relative to the work dir. */
static int resolve_path(struct sandbox *sb, const char *path, char ret[PATH_MAX], sbx_error *err)
{
    if (!path || !*path)
        return sbx_error_set(err, -EINVAL, "`path` is required");
    int n = path[0] == '/' ? snprintf(ret, PATH_MAX, "%s", path)
                           : snprintf(ret, PATH_MAX, "%s/%s", work_dir_of(sb), path);
    if (n < 0 || n >= PATH_MAX)
        return sbx_error_set(err, -ENAMETOOLONG, "`path` is too long");
    return 0;
}

/* --- command sessions: one shim attach forwarded as LangSmith frames ------------------------------ */

enum exec_mode {
    EXEC_WS,   /* /execute/ws */
    EXEC_HTTP, /* POST /execute: collect, answer at exit */
    EXEC_SSE,  /* POST /execute/stream/start and /resume: text/event-stream, raw bytes in base64 */
};

#define SSE_HEARTBEAT_S 15 /* comment lines while a command is quiet (the client's read timeout is 60 s) */

struct exec {
    struct loop_io io;
    struct daemon *d;
    enum exec_mode mode;
    struct sandbox *sb; /* attached while streaming (sandbox_attach); NULL before the first message */
    struct http_ws *ws;
    struct http_request *req;
    int fd; /* the shim attach, -1 before it */
    int watched;
    struct sbx_buf in;  /* from the shim, not yet parsed */
    struct sbx_buf out; /* to the shim (stdin, close_stdin), not yet written */
    struct sbx_buf capture[2];
    bool truncated[2];
    uint8_t pend[2][4]; /* an incomplete UTF-8 sequence at the end of a stream's output so far */
    size_t pend_len[2];
    uint64_t pend_off[2];
    char cid[SBX_ID_MAX + 1];
    int64_t timeout_s;
    uint64_t sse_off[2]; /* SSE: the offset after the last byte sent of each stream (stream_end) */
    bool sse_begun;      /* SSE: the event stream was begun (errors are events from then on) */
    bool resuming;       /* SSE: a resume, which sends no `started` */
    bool begun;          /* the first message (execute or reconnect) was handled */
    bool paused;         /* the client is slow */
    bool finished;       /* exit or error sent */
};

static void exec_free(struct exec *e)
{
    if (e->watched)
        loop_io_stop(e->d->loop, &e->io);
    if (e->fd >= 0) {
        /* Hand the shim what the client sent last (Python sends kill or input and closes at once). */
        if (e->out.len > 0 && write(e->fd, e->out.base, e->out.len) < 0)
            log_debug("langsmith: last stdin for `%s` not delivered: %m", e->cid);
        close(e->fd);
    }
    sbx_buf_done(&e->in);
    sbx_buf_done(&e->out);
    sbx_buf_done(&e->capture[0]);
    sbx_buf_done(&e->capture[1]);
    if (e->sb) {
        sandbox_detach(e->sb);
        sandbox_unref(e->sb);
    }
    free(e);
}

static void exec_update_watch(struct exec *e)
{
    int want = 0;
    if (e->fd >= 0 && !e->paused && !e->finished)
        want |= EPOLLIN;
    if (e->fd >= 0 && e->out.len > 0 && !e->finished)
        want |= EPOLLOUT;
    if (want == e->watched)
        return;
    if (e->watched && want)
        loop_io_update(e->d->loop, &e->io, (uint32_t)want);
    else if (want)
        loop_io_start(e->d->loop, &e->io, e->fd, (uint32_t)want, NULL);
    else
        loop_io_stop(e->d->loop, &e->io);
    e->watched = want;
}

/* Sends one JSON frame; returns 1 when the client is slow. Takes ownership of m. */
static int send_frame(struct exec *e, json_t *m)
{
    _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return http_ws_send_text(e->ws, text, strlen(text));
}

/* SSE: begins the event stream, with heartbeat comments. */
static void sse_begin(struct exec *e)
{
    e->sse_begun = true;
    http_response_header(e->req, "X-Accel-Buffering", "no");
    http_sse_begin(e->req);
    http_sse_keepalive(e->req, (usec_t)SSE_HEARTBEAT_S * USEC_PER_SEC);
}

/* SSE: one event whose data is the JSON m (taken). Returns 1 when the client is slow. */
static int sse_event(struct exec *e, const char *event, json_t *m)
{
    _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return http_sse_send(e->req, event, text, strlen(text));
}

/* The error frame (WS), error answer (HTTP) or error event (SSE) that ends the session. */
static void exec_error(struct exec *e, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void exec_error(struct exec *e, const char *type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    e->finished = true;
    if (e->mode == EXEC_WS) {
        send_frame(e, json_pack("{s:s, s:s, s:s}", "type", "error", "error", msg, "error_type", type));
        http_ws_close(e->ws, 1000, "");
    } else if (e->mode == EXEC_SSE) {
        /* Before the stream: a resume of an unknown command is the 404 the client maps to CommandNotFound,
         * other refusals the data plane's typed errors. After: an `error` event, as over the WebSocket. */
        if (!e->sse_begun && strcmp(type, "CommandNotFound") == 0)
            return ls_reply_error(e->req, 404, "CommandNotFound", "%s", msg);
        if (!e->sse_begun && strcmp(type, "SessionExpired") != 0)
            return ls_reply_error(e->req, 400, "CommandError", "%s", msg);
        if (!e->sse_begun)
            sse_begin(e);
        sse_event(e, "error", json_pack("{s:s, s:s}", "error", msg, "error_type", type));
        http_response_end(e->req);
        e->req = NULL;
    } else {
        ls_reply_error(e->req, strcmp(type, "CommandTimeout") == 0 ? 408 : 400, "CommandError", "%s", msg);
    }
}

/* Length of the UTF-8 sequence at p as jansson accepts it: 1..4, 0 when it may be completed by bytes not
 * here yet, -1 when it is invalid. */
static int utf8_seq(const uint8_t *p, size_t avail)
{
    uint8_t c = p[0];
    int n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return -1;
    for (int i = 1; i < n; i++) {
        if ((size_t)i >= avail)
            return 0;
        if ((p[i] & 0xC0) != 0x80)
            return -1;
        if (i == 1 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) ||
                       (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F)))
            return -1;
    }
    return n;
}

/* Forwards output of stream s (0 stdout, 1 stderr) starting at byte offset off. Frames carry valid UTF-8
 * whose byte count equals the bytes they stand for, so the client's offsets stay the shim's: a sequence
 * split across chunks waits for its end, and each invalid byte becomes one '?'. final flushes what waits.
 * Returns true when the client is slow. */
static bool forward_output(struct exec *e, int s, uint64_t off, const uint8_t *data, size_t len, bool final)
{
    if (e->mode == EXEC_SSE) {
        /* Raw bytes in base64: the client decodes UTF-8 itself, so offsets are the shim's as they are. */
        if (len == 0)
            return false;
        _cleanup_free_ char *b64 = base64_encode(data, len);
        e->sse_off[s] = off + len;
        return sse_event(e, s ? "stderr" : "stdout",
                         json_pack("{s:I, s:s}", "offset", (json_int_t)off, "data", b64)) > 0;
    }
    _cleanup_(sbx_buf_done) struct sbx_buf b = SBX_BUF_INIT;
    uint64_t start = off;
    if (e->pend_len[s] > 0 && e->pend_off[s] + e->pend_len[s] == off) {
        start = e->pend_off[s];
        sbx_buf_append(&b, e->pend[s], e->pend_len[s]);
    }
    e->pend_len[s] = 0;
    if (len)
        sbx_buf_append(&b, data, len);
    uint8_t *p = (uint8_t *)b.base;
    size_t i = 0, keep = b.len;
    while (i < b.len) {
        int n = utf8_seq(p + i, b.len - i);
        if (n == 0 && !final) {
            keep = i;
            break;
        }
        if (n <= 0) {
            p[i++] = '?';
            continue;
        }
        i += (size_t)n;
    }
    if (keep < b.len) {
        e->pend_len[s] = b.len - keep;
        e->pend_off[s] = start + keep;
        memcpy(e->pend[s], p + keep, e->pend_len[s]);
    }
    if (keep == 0)
        return false;
    if (e->mode == EXEC_HTTP) {
        struct sbx_buf *cap = &e->capture[s];
        size_t room = cap->len < CAPTURE_MAX ? CAPTURE_MAX - cap->len : 0;
        size_t take = keep < room ? keep : room;
        while (take > 0 && take < keep && (p[take] & 0xC0) == 0x80)
            take--; /* never cut a character in two */
        if (take < keep)
            e->truncated[s] = true;
        sbx_buf_append(cap, p, take);
        return false;
    }
    json_t *m = json_pack("{s:s, s:s%, s:I}", "type", s ? "stderr" : "stdout", "data", (const char *)p, keep,
                          "offset", (json_int_t)start);
    return send_frame(e, m) > 0;
}

static void send_exit(struct exec *e, json_t *st)
{
    for (int s = 0; s < 2; s++)
        if (e->pend_len[s])
            forward_output(e, s, e->pend_off[s] + e->pend_len[s], NULL, 0, true);
    const char *code = json_string_value(json_object_get(json_object_get(st, "error"), "code"));
    if (code && strcmp(code, "timeout") == 0)
        return exec_error(e, "CommandTimeout", "Command timed out after %llds", (long long)e->timeout_s);
    json_t *ec = json_object_get(st, "exit_code");
    int exit_code = json_is_integer(ec) ? (int)json_integer_value(ec) : -1;
    e->finished = true;
    if (e->mode == EXEC_WS) {
        send_frame(e, json_pack("{s:s, s:i}", "type", "exit", "exit_code", exit_code));
        http_ws_close(e->ws, 1000, "");
        return;
    }
    if (e->mode == EXEC_SSE) {
        for (int s = 0; s < 2; s++)
            sse_event(e, "stream_end",
                      json_pack("{s:s, s:I}", "stream", s ? "stderr" : "stdout", "offset",
                                (json_int_t)e->sse_off[s]));
        sse_event(e, "exit", json_pack("{s:i}", "exit_code", exit_code));
        http_response_end(e->req);
        e->req = NULL;
        return;
    }
    json_t *o = json_pack("{s:s%, s:s%, s:i}", "stdout", e->capture[0].base ? e->capture[0].base : "",
                          e->capture[0].len, "stderr", e->capture[1].base ? e->capture[1].base : "",
                          e->capture[1].len, "exit_code", exit_code);
    if (e->truncated[0] || e->truncated[1])
        json_object_set_new(o, "truncated", json_true());
    http_respond_json(e->req, 200, o);
}

static void process_frames(struct exec *e)
{
    size_t pos = 0;
    while (!e->finished && !e->paused) {
        struct shim_frame f;
        long n = shim_frame_parse((const uint8_t *)e->in.base + pos, e->in.len - pos, &f);
        if (n == 0)
            break;
        if (n < 0) {
            exec_error(e, "CommandError", "malformed frame from the sandbox's shim");
            break;
        }
        pos += (size_t)n;
        uint8_t stream;
        uint64_t off;
        const uint8_t *data;
        size_t len;
        if (f.type == SHIM_FRAME_DATA && shim_frame_data_parse(&f, &stream, &off, &data, &len) == 0) {
            if (forward_output(e, stream == SHIM_STREAM_STDERR, off, data, len, false))
                e->paused = true;
        } else if (f.type == SHIM_FRAME_EXIT) {
            json_t *st = json_loadb((const char *)f.payload, f.len, 0, NULL);
            if (st)
                send_exit(e, st);
            else
                exec_error(e, "CommandError", "malformed exit from the sandbox's shim");
            json_decref(st);
        } else if (f.type == SHIM_FRAME_RESPONSE) {
            json_t *resp = json_loadb((const char *)f.payload, f.len, 0, NULL);
            const char *m = json_string_value(json_object_get(json_object_get(resp, "error"), "message"));
            exec_error(e, "CommandNotFound", "%s", m ? m : "attach failed");
            json_decref(resp);
        }
    }
    sbx_buf_consume(&e->in, pos);
}

/* Writes and reads what it can. In HTTP mode a finished session is freed here (the response is done). */
static void exec_pump(struct exec *e, bool readable)
{
    if (e->out.len > 0 && e->fd >= 0) {
        ssize_t n = write(e->fd, e->out.base, e->out.len);
        if (n > 0)
            sbx_buf_consume(&e->out, (size_t)n);
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            e->out.len = 0; /* the shim is gone; reading tells the client */
    }
    for (int i = 0; readable && i < 16 && !e->paused && !e->finished; i++) {
        char *buf = sbx_buf_reserve(&e->in, SHIM_READ_CHUNK);
        ssize_t n = read(e->fd, buf, SHIM_READ_CHUNK);
        if (n > 0) {
            e->in.len += (size_t)n;
            process_frames(e);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        process_frames(e);
        if (!e->finished) {
            /* The sandbox went away under the command: a dropped stream the client may reconnect to. */
            e->finished = true;
            if (e->mode == EXEC_WS) {
                http_ws_close(e->ws, 1011, "the sandbox's shim closed the stream");
            } else if (e->mode == EXEC_SSE) {
                http_response_end(e->req); /* no terminal event: the client resumes from its offsets */
                e->req = NULL;
            } else {
                ls_reply_error(e->req, 503, "CommandError", "the sandbox stopped while the command ran");
            }
        }
        break;
    }
    process_frames(e);
    if (e->finished && e->mode != EXEC_WS)
        return exec_free(e);
    exec_update_watch(e);
}

static void exec_on_io(struct loop_io *io, uint32_t revents)
{
    struct exec *e = container_of(io, struct exec, io);
    exec_pump(e, revents & (EPOLLIN | EPOLLHUP | EPOLLERR));
}

static void queue_to_shim(struct exec *e, uint8_t type, const void *payload, size_t len)
{
    if (e->out.len + len > SHIM_WRITE_MAX) {
        e->finished = true;
        http_ws_close(e->ws, 1009, "stdin backlog too large");
        return;
    }
    uint8_t hdr[SHIM_FRAME_HEADER];
    shim_frame_header(hdr, type, (uint32_t)len);
    sbx_buf_append(&e->out, hdr, sizeof(hdr));
    sbx_buf_append(&e->out, payload, len);
    exec_pump(e, false);
}

/* Attaches to command cid from the offsets and, over WS, acknowledges with `started`. */
static int exec_attach(struct exec *e, json_t *st, uint64_t out_off, uint64_t err_off, sbx_error *err)
{
    int fd;
    if (shim_attach(e->sb->state_dir, e->cid, out_off, err_off, &fd, err) < 0)
        return err->code;
    e->fd = fd;
    e->io.cb = exec_on_io;
    e->sse_off[0] = out_off;
    e->sse_off[1] = err_off;
    if (e->mode == EXEC_SSE) {
        sse_begin(e);
        json_t *pid = json_object_get(st, "pid");
        if (!e->resuming)
            sse_event(e, "started",
                      json_pack("{s:s, s:I}", "command_id", e->cid, "pid",
                                (json_int_t)(json_is_integer(pid) ? json_integer_value(pid) : 0)));
    }
    if (e->mode == EXEC_WS) {
        json_t *pid = json_object_get(st, "pid");
        send_frame(e, json_pack("{s:s, s:s, s:I}", "type", "started", "command_id", e->cid, "pid",
                                (json_int_t)(json_is_integer(pid) ? json_integer_value(pid) : 0)));
    }
    exec_update_watch(e);
    return 0;
}

/* A lifetime field in seconds: absent leaves *ret; a negative value means never (-1). */
static int seconds_field(json_t *m, const char *key, bool never_ok, int64_t *ret, sbx_error *err)
{
    int64_t v = 0;
    int r = jsonreq_integer(m, key, never_ok ? INT64_MIN / 2 : 0, LIFETIME_MAX_S, &v, err);
    if (r > 0)
        *ret = v < 0 ? -1 : v;
    return r;
}

/* The native command body (docs/api.md) for an execute message or an /execute body. */
static int exec_body(struct exec *e, json_t *m, const char *timeout_key, json_t **ret, sbx_error *err)
{
    const char *command = NULL, *shell = "/bin/bash", *cwd = NULL, *cid = NULL;
    json_t *env = NULL, *rc = NULL;
    int64_t timeout = 60, idle = 300, ttl = 600;
    bool kod = false, close_stdin = false, pty = false;
    if (jsonreq_string(m, "command", COMMAND_MAX, &command, err) < 0 ||
        jsonreq_string(m, "shell", SHELL_MAX, &shell, err) < 0 ||
        jsonreq_string(m, "cwd", PATH_MAX, &cwd, err) < 0 ||
        jsonreq_string(m, "command_id", SBX_ID_MAX, &cid, err) < 0 ||
        jsonreq_string_map(m, "env", ENV_MAX_ENTRIES, ENV_MAX_ENTRY, &env, err) < 0 ||
        jsonreq_object(m, "run_config", &rc, err) < 0 ||
        jsonreq_integer(m, timeout_key, 0, LIFETIME_MAX_S, &timeout, err) < 0 ||
        seconds_field(m, "idle_timeout_seconds", true, &idle, err) < 0 ||
        seconds_field(m, "ttl_seconds", true, &ttl, err) < 0 ||
        jsonreq_bool(m, "kill_on_disconnect", &kod, err) < 0 ||
        jsonreq_bool(m, "close_stdin", &close_stdin, err) < 0 || jsonreq_bool(m, "pty", &pty, err) < 0)
        return err->code;
    if (!command || !*command)
        return sbx_error_set(err, -EINVAL, "`command` is required");
    if (!*shell)
        return sbx_error_set(err, -EINVAL, "`shell` must not be empty");
    if (rc && (env || cwd))
        return sbx_error_set(err, -EINVAL, "give `run_config` or `env`/`cwd`, not both");
    if (e->mode == EXEC_SSE) {
        /* One-way: no input, no terminal, and a response that ends and resumes is no disconnect. */
        if (pty || kod)
            return sbx_error_set(err, -EINVAL, "`%s` needs /execute/ws", pty ? "pty" : "kill_on_disconnect");
        close_stdin = true;
    }
    const char *user = NULL;
    json_t *rc_env = NULL;
    if (rc) {
        if (jsonreq_string(rc, "user", 32, &user, err) < 0 ||
            jsonreq_string(rc, "work_dir", PATH_MAX, &cwd, err) < 0 ||
            jsonreq_string_map(rc, "env_vars", ENV_MAX_ENTRIES, ENV_MAX_ENTRY, &rc_env, err) < 0)
            return sbx_error_wrap(err, "run_config");
    }
    /* The sandbox's run_config is the layer below: its user and work_dir unless replaced, its env_vars
     * under the request's. */
    json_t *sbrc = run_config_of(e->sb);
    if (!user)
        user = json_string_value(json_object_get(sbrc, "user"));
    if (!cwd)
        cwd = json_string_value(json_object_get(sbrc, "work_dir"));
    json_t *merged = json_object();
    json_t *sbenv = json_object_get(sbrc, "env_vars");
    if (json_is_object(sbenv))
        json_object_update(merged, sbenv);
    if (rc_env)
        json_object_update(merged, rc_env);
    if (env)
        json_object_update(merged, env);
    json_t *body = json_pack("{s:[s,s,s], s:o, s:b, s:b, s:I, s:b}", "command", shell, "-c", command, "env",
                             merged, "wait", true, "kill_on_disconnect", kod, "timeout", (json_int_t)timeout,
                             "stdin_open", pty || !close_stdin);
    /* The shim's idle timeout has no 0; LangSmith's 0 is as good as never. */
    json_object_set_new(body, "idle_timeout", json_integer(idle > 0 ? idle : -1));
    json_object_set_new(body, "ttl_seconds", json_integer(ttl));
    if (cid)
        json_object_set_new(body, "id", json_string(cid));
    if (cwd)
        json_object_set_new(body, "cwd", json_string(cwd));
    if (user)
        json_object_set_new(body, "user", json_string(user));
    if (pty)
        json_object_set_new(body, "pty", json_true());
    e->timeout_s = timeout;
    *ret = body;
    return 0;
}

/* execute (WS first message, or the /execute body): get-or-create command_id, then attach from 0. */
static void exec_start(struct exec *e, json_t *m, const char *timeout_key)
{
    sbx_error err = {0};
    json_auto_t *body = NULL;
    json_t *req = NULL, *resp = NULL;
    bool wait;
    if (exec_body(e, m, timeout_key, &body, &err) < 0)
        return exec_error(e, "InvalidRequest", "%s", err.msg);
    if (api_command_exec_request(e->sb, body, &req, &wait, &err) < 0) {
        json_decref(req);
        return exec_error(e, "InvalidRequest", "%s", err.msg);
    }
    if (sandbox_shim_call(e->sb, req, &resp, &err) < 0) {
        json_decref(req);
        return exec_error(e, "CommandError", "%s", err.msg);
    }
    if (json_is_true(json_object_get(resp, "created")))
        metrics_count(METRICS_COMMANDS_STARTED);
    json_t *st = json_object_get(resp, "command");
    snprintf(e->cid, sizeof(e->cid), "%s", json_string_value(json_object_get(st, "id")) ?: "");
    /* A command that already existed is reattached from its first byte (the client's fresh handle). */
    if (exec_attach(e, st, 0, 0, &err) < 0)
        exec_error(e, "CommandError", "%s", err.msg);
    json_decref(req);
    json_decref(resp);
}

static void exec_reconnect(struct exec *e, json_t *m)
{
    sbx_error err = {0};
    const char *cid = NULL;
    int64_t out_off = 0, err_off = 0;
    if (jsonreq_string(m, "command_id", SBX_ID_MAX, &cid, &err) < 0 ||
        jsonreq_integer(m, "stdout_offset", 0, INT64_MAX, &out_off, &err) < 0 ||
        jsonreq_integer(m, "stderr_offset", 0, INT64_MAX, &err_off, &err) < 0)
        return exec_error(e, "InvalidRequest", "%s", err.msg);
    if (!cid || !*cid)
        return exec_error(e, "InvalidRequest", "`command_id` is required");
    snprintf(e->cid, sizeof(e->cid), "%s", cid);
    json_t *req = json_pack("{s:s, s:s}", "op", "status", "id", cid), *resp = NULL;
    int r = sandbox_shim_call(e->sb, req, &resp, &err);
    json_decref(req);
    if (r < 0) {
        const char *kind = sbx_error_kind(&err);
        if (strcmp(kind, "expired") == 0)
            return exec_error(e, "SessionExpired", "command '%s' has expired", cid);
        if (strcmp(kind, "not_found") == 0)
            return exec_error(e, "CommandNotFound", "command '%s' not found", cid);
        return exec_error(e, "CommandError", "%s", err.msg);
    }
    json_t *st = json_object_get(resp, "command");
    /* Offsets past what the command wrote are the client's mistake: resume at the end. */
    uint64_t outb = (uint64_t)json_integer_value(json_object_get(st, "stdout_bytes"));
    uint64_t errb = (uint64_t)json_integer_value(json_object_get(st, "stderr_bytes"));
    uint64_t oo = (uint64_t)out_off < outb ? (uint64_t)out_off : outb;
    uint64_t eo = (uint64_t)err_off < errb ? (uint64_t)err_off : errb;
    if (exec_attach(e, st, oo, eo, &err) < 0)
        exec_error(e, "CommandError", "%s", err.msg);
    json_decref(resp);
}

static void kill_command(struct exec *e)
{
    if (!e->cid[0] || e->finished)
        return;
    sbx_error err = {0};
    json_t *req = json_pack("{s:s, s:s}", "op", "kill", "id", e->cid), *resp = NULL;
    /* A request of its own, answered before we return: it holds even if the socket closes right after. */
    if (sandbox_shim_call(e->sb, req, &resp, &err) < 0)
        log_debug("langsmith: kill `%s`: %s", e->cid, err.msg);
    json_decref(req);
    json_decref(resp);
}

static void ws_on_text(struct http_ws *ws, const char *data, size_t len, void *userdata)
{
    struct exec *e = userdata;
    if (e->finished)
        return;
    json_auto_t *m = json_loadb(data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!json_is_object(m) || !type)
        return exec_error(e, "InvalidRequest", "expected a JSON object with a `type`");
    if (!e->begun) {
        e->begun = true;
        if (strcmp(type, "execute") == 0)
            return exec_start(e, m, "timeout_seconds");
        if (strcmp(type, "reconnect") == 0)
            return exec_reconnect(e, m);
        return exec_error(e, "InvalidRequest", "the first message must be execute or reconnect, not `%s`",
                          type);
    }
    if (e->fd < 0)
        return;
    if (strcmp(type, "input") == 0) {
        json_t *d = json_object_get(m, "data");
        if (!json_is_string(d))
            return exec_error(e, "InvalidRequest", "input needs a string `data`");
        queue_to_shim(e, SHIM_FRAME_STDIN, json_string_value(d), json_string_length(d));
    } else if (strcmp(type, "close_stdin") == 0) {
        static const char req[] = "{\"op\":\"close_stdin\"}";
        queue_to_shim(e, SHIM_FRAME_REQUEST, req, sizeof(req) - 1);
    } else if (strcmp(type, "kill") == 0) {
        kill_command(e);
    }
    /* Other types (future heartbeats, acks) are ignored, as the clients ignore ours. */
}

static void ws_on_binary(struct http_ws *ws, const char *data, size_t len, void *userdata)
{
    exec_error(userdata, "InvalidRequest", "messages are JSON text frames");
}

static void ws_on_drain(struct http_ws *ws, void *userdata)
{
    struct exec *e = userdata;
    e->paused = false;
    exec_pump(e, true);
}

static void ws_on_close(struct http_ws *ws, int code, void *userdata)
{
    exec_free(userdata);
}

static const struct http_ws_callbacks ws_callbacks = {
    .on_text = ws_on_text,
    .on_binary = ws_on_binary,
    .on_drain = ws_on_drain,
    .on_close = ws_on_close,
};

static struct exec *exec_new(struct api_ctx *c, struct sandbox *sb, enum exec_mode mode)
{
    struct exec *e = xcalloc(1, sizeof(*e));
    e->d = c->d;
    e->mode = mode;
    e->fd = -1;
    e->sb = sb;         /* the caller's reference */
    sandbox_attach(sb); /* a client is streaming: the sandbox is not idle */
    return e;
}

static void exec_ws(struct api_ctx *c)
{
    if (!http_request_is_websocket(c->req))
        return ls_reply_error(c->req, 400, "InvalidRequest", "/execute/ws is a WebSocket upgrade");
    struct sandbox *sb = dp_sandbox(c);
    if (!sb)
        return;
    struct exec *e = exec_new(c, sb, EXEC_WS);
    if (http_websocket_accept(c->req, &ws_callbacks, e, &e->ws) < 0) {
        exec_free(e);
        return;
    }
}

static void exec_http_aborted(struct http_request *req, void *userdata)
{
    exec_free(userdata);
}

static void exec_http_with_body(struct api_ctx *c, json_t *body)
{
    struct sandbox *sb = dp_sandbox(c);
    if (!sb)
        return;
    struct exec *e = exec_new(c, sb, EXEC_HTTP);
    e->req = c->req;
    exec_start(e, body, "timeout");
    if (e->finished)
        return exec_free(e); /* answered already */
    http_request_on_abort(c->req, exec_http_aborted, e);
    exec_pump(e, true);
}

/* SSE exec (POST /execute/stream/start, /execute/stream/resume): the same command sessions as
 * /execute/ws, answered as text/event-stream. The shim keeps every byte while the command is kept, so
 * sbxd never needs the client's ack and never sends `ack_required`: a slow client only pauses the
 * shim's stream. A dropped response leaves the command running (no kill_on_disconnect over SSE). */
static void exec_sse_aborted(struct http_request *req, void *userdata)
{
    struct exec *e = userdata;
    e->req = NULL;
    exec_free(e);
}

static void exec_sse_drain(struct http_request *req, void *userdata)
{
    struct exec *e = userdata;
    e->paused = false;
    exec_pump(e, true);
}

static void exec_sse_with_body(struct api_ctx *c, json_t *body, bool resume)
{
    struct sandbox *sb = dp_sandbox(c);
    if (!sb)
        return;
    struct exec *e = exec_new(c, sb, EXEC_SSE);
    e->req = c->req;
    e->resuming = resume;
    if (resume)
        exec_reconnect(e, body);
    else
        exec_start(e, body, "timeout_seconds");
    if (e->finished)
        return exec_free(e); /* answered already */
    http_request_on_abort(c->req, exec_sse_aborted, e);
    http_request_on_drain(c->req, exec_sse_drain, e);
    exec_pump(e, true);
}

static void sse_start_with_body(struct api_ctx *c, json_t *body)
{
    exec_sse_with_body(c, body, false);
}

static void sse_resume_with_body(struct api_ctx *c, json_t *body)
{
    exec_sse_with_body(c, body, true);
}

static void exec_sse_start(struct api_ctx *c)
{
    ls_read_json(c, sse_start_with_body);
}

static void exec_sse_resume(struct api_ctx *c)
{
    ls_read_json(c, sse_resume_with_body);
}

/* --- files: upload ------------------------------------------------------------------------------ */

/* The multipart body is parsed as it streams (http/multipart). Both SDKs send exactly one part (`file`, the
 * file's bytes), whose content goes to the file. A body with a second part is refused (400 WriteError) and
 * nothing is written: there is no second file name to write it under, and silently dropping it would lose
 * data. */
struct upload {
    struct sandbox *sb;
    struct files_writer w;
    bool open; /* w needs commit or abort */
    struct multipart mp;
    bool failed;
    sbx_error err;
};

static void upload_free(struct upload *u)
{
    if (u->open)
        files_writer_abort(&u->w);
    multipart_done(&u->mp);
    sandbox_detach(u->sb);
    sandbox_unref(u->sb);
    free(u);
}

static int upload_part_begin(void *userdata, const struct multipart_part *part, sbx_error *err)
{
    if (part->index > 0)
        return sbx_error_set(err, -EINVAL,
                             "the multipart body has more than one part: an upload carries one part, `file`");
    return 0;
}

static int upload_part_data(void *userdata, const char *p, size_t n, sbx_error *err)
{
    struct upload *u = userdata;
    if (u->w.written + n > UPLOAD_MAX)
        return sbx_error_set(err, -E2BIG, "the file is larger than 1 GiB");
    return files_writer_write(&u->w, p, n, err);
}

static const struct multipart_callbacks upload_callbacks = {
    .part_begin = upload_part_begin,
    .part_data = upload_part_data,
};

static int upload_chunk(struct http_request *req, const char *data, size_t len, void *userdata)
{
    struct upload *u = userdata;
    if (!u->failed && multipart_feed(&u->mp, data, len, &u->err) < 0)
        u->failed = true;
    return 0;
}

static void upload_end(struct http_request *req, void *userdata)
{
    struct upload *u = userdata;
    if (!u->failed && multipart_finish(&u->mp, &u->err) < 0)
        u->failed = true;
    if (!u->failed) {
        u->open = false;
        if (files_writer_commit(&u->w, &u->err) < 0)
            u->failed = true;
    }
    if (u->failed)
        ls_reply_sbx_error(req, &u->err, LS_WRITE);
    else
        http_respond_json(req, 200,
                          json_pack("{s:s, s:I}", "path", u->w.path, "size", (json_int_t)u->w.written));
    upload_free(u);
}

static void upload_aborted(struct http_request *req, void *userdata)
{
    upload_free(userdata);
}

static void upload(struct api_ctx *c)
{
    sbx_error err = {0};
    char boundary[MULTIPART_BOUNDARY_MAX + 1], path[PATH_MAX];
    if (!multipart_boundary(http_header_get(c->req, "Content-Type"), boundary))
        return ls_reply_error(c->req, 400, "WriteError",
                              "the body must be multipart/form-data with a boundary");
    struct sandbox *sb = dp_sandbox(c);
    if (!sb)
        return;
    if (resolve_path(sb, http_query_get(c->req, "path"), path, &err) < 0) {
        sandbox_unref(sb);
        return ls_reply_sbx_error(c->req, &err, LS_WRITE);
    }
    struct upload *u = xcalloc(1, sizeof(*u));
    u->sb = sb;
    sandbox_attach(sb);
    multipart_init(&u->mp, boundary, &upload_callbacks, u);
    if (files_writer_open(sb->rootfs_fd, path, 0644, sb->uid_base, sb->uid_base, &u->w, &err) < 0) {
        ls_reply_sbx_error(c->req, &err, LS_WRITE);
        return upload_free(u);
    }
    u->open = true;
    http_request_on_abort(c->req, upload_aborted, u);
    http_request_stream_body(c->req, upload_chunk, upload_end, u);
}

/* --- files: download ---------------------------------------------------------------------------- */

static void http_date(time_t t, char *buf, size_t size)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* RFC 9110 13.1.5: a Range applies only when If-Range names the current file: its strong ETag (a weak
 * one never matches), or its Last-Modified date when that is a strong validator (the file was last
 * modified at least a second before now). */
static bool if_range_matches(const char *ir, const char *etag, const char *lm, time_t mtime)
{
    while (*ir == ' ' || *ir == '\t')
        ir++;
    size_t n = strlen(ir);
    while (n > 0 && (ir[n - 1] == ' ' || ir[n - 1] == '\t'))
        n--;
    if (ir[0] == '"' || strncmp(ir, "W/", 2) == 0)
        return etag[0] && strlen(etag) == n && memcmp(ir, etag, n) == 0;
    return lm[0] && strlen(lm) == n && memcmp(ir, lm, n) == 0 && mtime + 1 < time(NULL);
}

/* The whole file with 200 despite a Range (a stale If-Range): sent in chunks as the client drains them. */
#define WHOLE_CHUNK (256 * 1024)

struct whole {
    struct sandbox *sb; /* attached while the file is sent */
    int fd;
    uint64_t pos, end;
};

static void whole_free(struct whole *w)
{
    close(w->fd);
    sandbox_detach(w->sb);
    sandbox_unref(w->sb);
    free(w);
}

static void whole_abort(struct http_request *req, void *userdata)
{
    whole_free(userdata);
}

static void whole_pump(struct http_request *req, void *userdata)
{
    struct whole *w = userdata;
    _cleanup_free_ char *buf = xmalloc(WHOLE_CHUNK);
    while (w->pos < w->end) {
        size_t want = w->end - w->pos < WHOLE_CHUNK ? (size_t)(w->end - w->pos) : WHOLE_CHUNK;
        ssize_t n = pread(w->fd, buf, want, (off_t)w->pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* The file shrank or failed under us: the length was promised, so the connection must close. */
            http_response_abort(req);
            return whole_free(w);
        }
        w->pos += (uint64_t)n;
        if (http_response_write(req, buf, (size_t)n) > 0 && w->pos < w->end)
            return; /* over the soft limit: continue on drain */
    }
    http_response_end(req);
    whole_free(w);
}

static void send_whole(struct http_request *req, struct sandbox *sb, int fd, uint64_t size)
{
    struct whole *w = xcalloc(1, sizeof(*w));
    w->sb = sb; /* the caller's reference */
    sandbox_attach(sb);
    w->fd = fd;
    w->end = size;
    http_response_header(req, "Accept-Ranges", "bytes");
    http_request_on_abort(req, whole_abort, w);
    http_request_on_drain(req, whole_pump, w);
    http_response_begin(req, 200, "application/octet-stream", (int64_t)size);
    whole_pump(req, w);
}

static void download(struct api_ctx *c)
{
    sbx_error err = {0};
    char path[PATH_MAX];
    struct sandbox *sb = dp_sandbox(c);
    if (!sb)
        return;
    int fd;
    uint64_t size;
    if (resolve_path(sb, http_query_get(c->req, "path"), path, &err) < 0 ||
        api_files_open_download(sb, path, &fd, &size, &err) < 0) {
        sandbox_unref(sb);
        return ls_reply_sbx_error(c->req, &err, LS_READ);
    }
    struct stat st = {0};
    char etag[64] = "", lm[64] = "";
    if (fstat(fd, &st) == 0) {
        snprintf(etag, sizeof(etag), "\"%llx-%llx-%lx\"", (unsigned long long)st.st_size,
                 (unsigned long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
        http_date(st.st_mtim.tv_sec, lm, sizeof(lm));
        http_response_header(c->req, "ETag", etag);
        http_response_header(c->req, "Last-Modified", lm);
    }
    const char *inm = http_header_get(c->req, "If-None-Match");
    if (etag[0] && inm && strcmp(inm, etag) == 0) {
        close(fd);
        sandbox_unref(sb);
        return http_respond(c->req, 304, NULL, NULL, 0);
    }
    const char *disp = http_query_get(c->req, "disposition");
    if (disp && (strcmp(disp, "attachment") == 0 || strcmp(disp, "inline") == 0)) {
        const char *base = strrchr(path, '/');
        char cd[PATH_MAX + 64];
        snprintf(cd, sizeof(cd), "%s; filename=\"%s\"", disp, base ? base + 1 : path);
        for (char *q = cd + strlen(disp) + 12; *q && q[1]; q++)
            if (*q == '"' || *q == '\\')
                *q = '_';
        http_response_header(c->req, "Content-Disposition", cd);
    }
    if (http_request_method_id(c->req) == HTTP_METHOD_HEAD) {
        close(fd);
        sandbox_unref(sb);
        http_response_header(c->req, "Accept-Ranges", "bytes");
        http_response_begin(c->req, 200, "application/octet-stream", (int64_t)size);
        return http_response_end(c->req);
    }
    const char *ir = http_header_get(c->req, "If-Range");
    if (ir && http_header_get(c->req, "Range") && !if_range_matches(ir, etag, lm, st.st_mtim.tv_sec))
        return send_whole(c->req, sb, fd, size); /* stale: the whole file, 200; takes fd and the reference */
    api_files_send(c->req, sb, fd, size);        /* Range, 206/416; takes fd and the reference */
}

/* --- glob and grep ------------------------------------------------------------------------------ */

/* Whether the relative path segments match the pattern's, "**" matching any number of segments. */
static bool glob_match(char **pat, size_t np, char **seg, size_t ns)
{
    if (np == 0)
        return ns == 0;
    if (strcmp(pat[0], "**") == 0) {
        for (size_t k = 0; k <= ns; k++)
            if (glob_match(pat + 1, np - 1, seg + k, ns - k))
                return true;
        return false;
    }
    if (ns == 0 || fnmatch(pat[0], seg[0], 0) != 0)
        return false;
    return glob_match(pat + 1, np - 1, seg + 1, ns - 1);
}

#define SEGS_MAX 128

static size_t split(char *s, char **out)
{
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(s, "/", &save); t && n < SEGS_MAX; t = strtok_r(NULL, "/", &save))
        out[n++] = t;
    return n;
}

struct walk {
    struct sandbox *sb;
    char *pat[SEGS_MAX];
    size_t np;
    bool deep; /* the pattern has "**" */
    size_t visited;
    bool truncated;
    void (*visit)(struct walk *w, const struct files_entry *e, const char *rel);
    /* glob */
    json_t *matches;
    size_t limit;
    /* grep */
    const char *needle;
    size_t needle_len;
    uint64_t read_bytes;
};

static bool walk_full(struct walk *w)
{
    return json_array_size(w->matches) >= w->limit;
}

static void walk(struct walk *w, const char *dir, const char *rel, unsigned depth)
{
    if (depth >= WALK_DEPTH_MAX || walk_full(w) || w->truncated)
        return;
    struct files_entry *ents = NULL;
    size_t n = 0;
    if (files_list(w->sb->rootfs_fd, dir, &ents, &n, WALK_VISIT_MAX, NULL) < 0)
        return;
    for (size_t i = 0; i < n && !walk_full(w); i++) {
        if (++w->visited > WALK_VISIT_MAX) {
            w->truncated = true;
            break;
        }
        _cleanup_free_ char *r = *rel ? xasprintf("%s/%s", rel, ents[i].name) : xstrdup(ents[i].name);
        w->visit(w, &ents[i], r);
        if (ents[i].type == FILES_TYPE_DIR && (w->deep || depth + 1 < w->np))
            walk(w, ents[i].path, r, depth + 1);
    }
    free(ents);
}

static json_t *entry_match(const struct files_entry *e)
{
    char when[40];
    format_time_ms(when, sizeof(when), e->mtime_sec * 1000);
    return json_pack("{s:s, s:b, s:I, s:s}", "path", e->path, "is_dir", e->type == FILES_TYPE_DIR,
                     "size_bytes", (json_int_t)(e->type == FILES_TYPE_DIR ? 0 : e->size), "modified_at",
                     when);
}

static void glob_visit(struct walk *w, const struct files_entry *e, const char *rel)
{
    _cleanup_free_ char *copy = xstrdup(rel);
    char *seg[SEGS_MAX];
    size_t ns = split(copy, seg);
    if (glob_match(w->pat, w->np, seg, ns))
        json_array_append_new(w->matches, entry_match(e));
}

/* Common to glob and grep: the pattern, the start directory and the limit. */
static struct sandbox *walk_setup(struct api_ctx *c, json_t *body, const char *pattern_key,
                                  const char *glob_key, size_t limit_default, size_t limit_max,
                                  struct walk *w, char *patbuf, char dir[PATH_MAX])
{
    sbx_error err = {0};
    const char *pattern = NULL, *path = NULL, *glob = NULL;
    int64_t limit = (int64_t)limit_default;
    if (jsonreq_string(body, pattern_key, PATTERN_MAX, &pattern, &err) < 0 ||
        jsonreq_string(body, "path", PATH_MAX, &path, &err) < 0 ||
        (glob_key && jsonreq_string(body, glob_key, PATTERN_MAX, &glob, &err) < 0) ||
        jsonreq_integer(body, "limit", 1, (int64_t)limit_max, &limit, &err) < 0) {
        ls_reply_error(c->req, 400, "ReadError", "%s", err.msg);
        return NULL;
    }
    if (!pattern || !*pattern) {
        ls_reply_error(c->req, 400, "ReadError", "`%s` is required", pattern_key);
        return NULL;
    }
    struct sandbox *sb = dp_sandbox(c);
    if (!sb)
        return NULL;
    if (resolve_path(sb, path && *path ? path : "/", dir, &err) < 0) {
        ls_reply_sbx_error(c->req, &err, LS_READ);
        return sandbox_unref(sb);
    }
    w->sb = sb;
    w->limit = (size_t)limit;
    w->matches = json_array();
    snprintf(patbuf, PATTERN_MAX + 1, "%s", glob_key ? (glob ? glob : "**") : pattern);
    if (glob_key) {
        w->needle = pattern;
        w->needle_len = strlen(pattern);
        /* A grep glob without '/' matches file names at any depth. */
        if (glob && !strchr(glob, '/')) {
            _cleanup_free_ char *deep = xasprintf("**/%s", glob);
            snprintf(patbuf, PATTERN_MAX + 1, "%s", deep);
        }
    }
    w->np = split(patbuf, w->pat);
    for (size_t i = 0; i < w->np; i++)
        if (strcmp(w->pat[i], "**") == 0)
            w->deep = true;
    return sb;
}

static void walk_answer(struct api_ctx *c, struct walk *w, const char *dir)
{
    struct files_entry top;
    sbx_error err = {0};
    if (files_stat(w->sb->rootfs_fd, dir, &top, &err) < 0) {
        json_decref(w->matches);
        sandbox_unref(w->sb);
        return ls_reply_sbx_error(c->req, &err, LS_READ);
    }
    if (top.type == FILES_TYPE_FILE && w->needle)
        w->visit(w, &top, top.name);
    else
        walk(w, dir, "", 0);
    bool truncated = w->truncated || walk_full(w);
    http_respond_json(c->req, 200, json_pack("{s:o, s:b}", "matches", w->matches, "truncated", truncated));
    sandbox_unref(w->sb);
}

static void glob_with_body(struct api_ctx *c, json_t *body)
{
    struct walk w = {.visit = glob_visit};
    char patbuf[PATTERN_MAX + 1], dir[PATH_MAX];
    if (!walk_setup(c, body, "pattern", NULL, GLOB_LIMIT_DEFAULT, GLOB_LIMIT_MAX, &w, patbuf, dir))
        return;
    walk_answer(c, &w, dir);
}

static void grep_visit(struct walk *w, const struct files_entry *e, const char *rel)
{
    if (e->type != FILES_TYPE_FILE || e->size > GREP_FILE_MAX || w->read_bytes > GREP_READ_MAX)
        return;
    _cleanup_free_ char *copy = xstrdup(rel);
    char *seg[SEGS_MAX];
    size_t ns = split(copy, seg);
    if (!glob_match(w->pat, w->np, seg, ns))
        return;
    int fd;
    uint64_t size;
    if (api_files_open_download(w->sb, e->path, &fd, &size, NULL) < 0)
        return;
    _cleanup_free_ char *buf = xmalloc(size + 1);
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, buf + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    w->read_bytes += got;
    if (memchr(buf, 0, got < 8192 ? got : 8192))
        return; /* binary */
    size_t line = 1;
    for (size_t pos = 0; pos < got && !walk_full(w);) {
        char *nl = memchr(buf + pos, '\n', got - pos);
        size_t end = nl ? (size_t)(nl - buf) : got;
        if (memmem(buf + pos, end - pos, w->needle, w->needle_len)) {
            size_t n = end - pos < GREP_LINE_MAX ? end - pos : GREP_LINE_MAX;
            uint8_t *p = (uint8_t *)buf + pos;
            for (size_t i = 0; i < n;) {
                int k = utf8_seq(p + i, n - i);
                if (k <= 0)
                    p[i++] = '?';
                else
                    i += (size_t)k;
            }
            json_array_append_new(w->matches, json_pack("{s:s, s:I, s:s%}", "path", e->path, "line",
                                                        (json_int_t)line, "text", (const char *)p, n));
        }
        line++;
        pos = end + 1;
    }
}

static void grep_with_body(struct api_ctx *c, json_t *body)
{
    struct walk w = {.visit = grep_visit};
    char patbuf[PATTERN_MAX + 1], dir[PATH_MAX];
    if (!walk_setup(c, body, "pattern", "glob", GREP_LIMIT_DEFAULT, GREP_LIMIT_MAX, &w, patbuf, dir))
        return;
    walk_answer(c, &w, dir);
}

/* --- routing ------------------------------------------------------------------------------------ */

/* The native tunnel (api/tunnel.c) once the sandbox is up: a stopped one is started first. */
static void tunnel(struct api_ctx *c)
{
    if (!http_request_is_websocket(c->req))
        return ls_reply_error(c->req, 400, "InvalidRequest", "/tunnel is a WebSocket upgrade");
    struct sandbox *sb = dp_sandbox(c);
    if (!sb)
        return;
    sandbox_unref(sb);
    api_tunnel(c);
}

static void exec_http(struct api_ctx *c)
{
    ls_read_json(c, exec_http_with_body);
}

static void glob_files(struct api_ctx *c)
{
    ls_read_json(c, glob_with_body);
}

static void grep_files(struct api_ctx *c)
{
    ls_read_json(c, grep_with_body);
}

static const struct {
    const char *method, *path;
    void (*handler)(struct api_ctx *c);
} dp_routes[] = {
    {"POST", "/execute", exec_http},
    {"GET", "/execute/ws", exec_ws},
    {"POST", "/upload", upload},
    {"GET", "/download", download},
    {"HEAD", "/download", download},
    {"POST", "/glob", glob_files},
    {"POST", "/grep", grep_files},
    {"GET", "/tunnel", tunnel},
    {"POST", "/execute/stream/start", exec_sse_start},
    {"POST", "/execute/stream/resume", exec_sse_resume},
};

void ls_dp_handle(struct daemon *d, struct http_request *req, const char *id, const char *rest,
                  const char *owner)
{
    const char *method = http_request_method(req);
    bool path_known = false;
    for (size_t i = 0; i < ELEMENTSOF(dp_routes); i++) {
        if (strcmp(dp_routes[i].path, rest) != 0)
            continue;
        path_known = true;
        if (strcmp(dp_routes[i].method, method) != 0)
            continue;
        struct api_ctx *c = ls_ctx_new(d, req, "langsmith:dataplane", id, owner);
        dp_routes[i].handler(c);
        return;
    }
    if (path_known)
        return ls_reply_error(req, 405, "MethodNotAllowed", "%s is not allowed on %s", method, rest);
    ls_reply_error(req, 404, "NotFound", "%s %s is not part of sbx's LangSmith data plane", method, rest);
}
