/* OpenSandbox's execd API for one sandbox, served by sbxd at the sandbox's execd endpoint
 * ({host}/opensandbox/sandboxes/{id}/proxy/44772): /ping, /metrics, /command (sbx commands run by the
 * sandbox's shim, streamed as execd's JSON-lines event stream), command status, logs by byte cursor and
 * interrupt, bash sessions (state kept in the sandbox, each run an sbx command), PTY sessions over
 * WebSocket (sbx PTY commands), the code interpreter (/code, on sbx's code contexts: api/contexts.h),
 * /metrics/watch, and the egress endpoint's /policy (read and changed through sandbox_set_egress). Files
 * are opensandbox_files.c. Shapes only; docs/compat/opensandbox.md. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "api/codec.h"
#include "api/contexts.h"
#include "api/internal.h"
#include "api/jsonreq.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "compat/opensandbox_internal.h"
#include "daemon/daemon.h"
#include "daemon/egress.h"
#include "daemon/metrics.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "files/files.h"
#include "loop/loop.h"
#include "runtime/runtime.h"
#include "shimclient/shim_client.h"
#include "shimclient/shim_protocol.h"

#define COMMAND_MAX (128u * 1024)
#define ENV_MAX_ENTRIES 1024
#define ENV_MAX_ENTRY (32 * 1024)
#define TIMEOUT_MAX_MS (365LL * 24 * 3600 * 1000)
#define SESSION_TIMEOUT_DEFAULT_MS (24LL * 3600 * 1000)
#define LINE_MAX_BYTES (64u * 1024) /* a longer line is sent in pieces of this size */
#define SHIM_READ_CHUNK (64 * 1024)
#define PING_INTERVAL_USEC (3 * USEC_PER_SEC)
#define COMMAND_TTL_S 3600 /* a finished command's status and logs stay this long */
#define LOGS_LIMIT (1u << 20)
#define INTERRUPT_GRACE_USEC (3 * USEC_PER_SEC)
#define INTERRUPT_POLL_USEC (100 * USEC_PER_MSEC)
#define CPU_SAMPLE_USEC (100 * USEC_PER_MSEC)
#define SESSIONS_DIR "/tmp/.opensandbox-sessions"

/* --- helpers -------------------------------------------------------------------------------------- */

static int64_t wall_ms(void)
{
    return (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC);
}

/* One shim request about command id; a new reference in *ret_resp. */
static int shim_op(struct sandbox *sb, const char *op, const char *id, json_t **ret_resp, sbx_error *err)
{
    json_t *req = json_pack("{s:s, s:s}", "op", op, "id", id);
    int r = sandbox_shim_call(sb, req, ret_resp, err);
    json_decref(req);
    return r;
}

/* bash when the sandbox has it, else sh (as execd does). */
static const char *shell_of(struct sandbox *sb)
{
    struct files_entry e;
    return files_stat(sb->rootfs_fd, "/bin/bash", &e, NULL) == 0 ? "/bin/bash" : "/bin/sh";
}

/* --- the event stream ----------------------------------------------------------------------------- */

/* One /command or /session/{id}/run: the shim's output as execd's JSON-lines events (init, stdout and
 * stderr per line, ping every 3 s, execution_complete or error). The command does not depend on the
 * client: a dropped stream leaves it running (execd's behaviour), and its status and logs stay. */
struct run {
    struct loop_io io;
    struct loop_timer ping;
    struct daemon *d;
    struct sandbox *sb; /* attached while streaming */
    struct http_request *req;
    int fd;
    int watched;
    struct sbx_buf in;
    struct sbx_buf line[2];
    bool after_cr[2]; /* the last byte of the stream was '\r': a '\n' next is the same line end */
    int64_t started_ms;
    bool paused, finished;
    /* A code-interpreter run (code_run_with_body): the output comes from the code context's run (api/
     * contexts.h) instead of fd, through the same line splitting. */
    struct context_run *crun;
    bool bash;
};

static void run_free(struct run *r)
{
    if (r->crun)
        context_run_abandon(r->crun); /* the client went: the cell runs on */
    if (r->watched)
        loop_io_stop(r->d->loop, &r->io);
    loop_timer_stop(r->d->loop, &r->ping);
    if (r->fd >= 0)
        close(r->fd);
    sbx_buf_done(&r->in);
    sbx_buf_done(&r->line[0]);
    sbx_buf_done(&r->line[1]);
    sandbox_detach(r->sb);
    sandbox_unref(r->sb);
    free(r);
}

/* Sends one event (takes ev): compact JSON and a blank line, no `data:` (execd's framing). Returns 1 when the
 * client is slow. */
static int send_event(struct http_request *req, json_t *ev)
{
    json_object_set_new(ev, "timestamp", json_integer(wall_ms()));
    _cleanup_free_ char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (!text)
        return 0;
    _cleanup_free_ char *framed = xasprintf("%s\n\n", text);
    return http_response_write(req, framed, strlen(framed));
}

static void stream_begin(struct http_request *req)
{
    http_response_header(req, "Cache-Control", "no-cache");
    http_response_header(req, "X-Accel-Buffering", "no");
    http_response_begin(req, 200, "text/event-stream", -1);
}

static int send_text(struct run *r, int s, const char *p, size_t n)
{
    char *copy = xstrndup(p, n);
    os_utf8_clean(copy, n);
    json_t *ev = json_pack("{s:s, s:s}", "type", s ? "stderr" : "stdout", "text", n ? copy : "\n");
    free(copy);
    return send_event(r->req, ev);
}

/* One line of output: an event. */
static int emit_line(struct run *r, int s, const char *p, size_t n)
{
    if (r->finished)
        return 0;
    return send_text(r, s, p, n);
}

/* Splits output of stream s into lines: '\n' and '\r' end one ("\r\n" once), a blank line is "\n", and a
 * line longer than LINE_MAX_BYTES goes in pieces (cut before a UTF-8 continuation byte). */
static bool forward_output(struct run *r, int s, const char *data, size_t len)
{
    bool slow = false;
    struct sbx_buf *b = &r->line[s];
    for (size_t i = 0; i < len && !r->finished; i++) {
        char ch = data[i];
        if (ch == '\n' && r->after_cr[s]) {
            r->after_cr[s] = false;
            continue;
        }
        r->after_cr[s] = ch == '\r';
        if (ch == '\n' || ch == '\r') {
            slow |= emit_line(r, s, b->base, b->len) > 0;
            b->len = 0;
            continue;
        }
        sbx_buf_append(b, &ch, 1);
        if (b->len >= LINE_MAX_BYTES) {
            size_t cut = b->len;
            while (cut > b->len - 4 && ((unsigned char)b->base[cut - 1] & 0xC0) == 0x80)
                cut--;
            if (cut > 0 && ((unsigned char)b->base[cut - 1] & 0xC0) == 0xC0)
                cut--;
            if (cut == 0)
                cut = b->len;
            slow |= emit_line(r, s, b->base, cut) > 0;
            sbx_buf_consume(b, cut);
        }
    }
    return slow;
}

static void run_end(struct run *r)
{
    r->finished = true;
    http_response_end(r->req);
    r->req = NULL;
}

static void send_error_event(struct http_request *req, const char *evalue, const char *traceback)
{
    send_event(req, json_pack("{s:s, s:{s:s, s:s, s:[s]}}", "type", "error", "error", "ename",
                              "CommandExecError", "evalue", evalue, "traceback", traceback));
}

static void send_exit(struct run *r, json_t *st)
{
    for (int s = 0; s < 2; s++)
        if (r->line[s].len)
            send_text(r, s, r->line[s].base, r->line[s].len);
    json_t *ec = json_object_get(st, "exit_code"), *sig = json_object_get(st, "signal");
    const char *code = json_string_value(json_object_get(json_object_get(st, "error"), "code"));
    if (json_is_integer(ec) && json_integer_value(ec) == 0 && !code) {
        send_event(r->req, json_pack("{s:s, s:I}", "type", "execution_complete", "execution_time",
                                     (json_int_t)(wall_ms() - r->started_ms)));
    } else if (code && strcmp(code, "timeout") == 0) {
        send_error_event(r->req, "-1", "command timed out");
    } else if (json_is_integer(sig) || !json_is_integer(ec)) {
        char tb[64];
        snprintf(tb, sizeof(tb), "signal: %lld", (long long)json_integer_value(sig));
        send_error_event(r->req, "-1", tb);
    } else {
        char ev[24], tb[48];
        snprintf(ev, sizeof(ev), "%lld", (long long)json_integer_value(ec));
        snprintf(tb, sizeof(tb), "exit status %lld", (long long)json_integer_value(ec));
        send_error_event(r->req, ev, tb);
    }
    run_end(r);
}

static void process_frames(struct run *r)
{
    size_t pos = 0;
    while (!r->finished && !r->paused) {
        struct shim_frame f;
        long n = shim_frame_parse((const uint8_t *)r->in.base + pos, r->in.len - pos, &f);
        if (n == 0)
            break;
        if (n < 0) {
            send_error_event(r->req, "malformed frame from the sandbox's shim", "");
            run_end(r);
            break;
        }
        pos += (size_t)n;
        uint8_t stream;
        uint64_t off;
        const uint8_t *data;
        size_t len;
        if (f.type == SHIM_FRAME_DATA && shim_frame_data_parse(&f, &stream, &off, &data, &len) == 0) {
            if (forward_output(r, stream == SHIM_STREAM_STDERR, (const char *)data, len))
                r->paused = true;
        } else if (f.type == SHIM_FRAME_EXIT) {
            json_t *st = json_loadb((const char *)f.payload, f.len, 0, NULL);
            if (st)
                send_exit(r, st);
            else {
                send_error_event(r->req, "malformed exit from the sandbox's shim", "");
                run_end(r);
            }
            json_decref(st);
        } else if (f.type == SHIM_FRAME_RESPONSE) {
            send_error_event(r->req, "the command's output could not be attached", "");
            run_end(r);
        }
    }
    sbx_buf_consume(&r->in, pos);
}

static void run_update_watch(struct run *r)
{
    int want = r->fd >= 0 && !r->paused && !r->finished ? EPOLLIN : 0;
    if (want == r->watched)
        return;
    if (want)
        loop_io_start(r->d->loop, &r->io, r->fd, (uint32_t)want, NULL);
    else
        loop_io_stop(r->d->loop, &r->io);
    r->watched = want;
}

static void run_pump(struct run *r)
{
    for (int i = 0; i < 16 && !r->paused && !r->finished; i++) {
        char *buf = sbx_buf_reserve(&r->in, SHIM_READ_CHUNK);
        ssize_t n = read(r->fd, buf, SHIM_READ_CHUNK);
        if (n > 0) {
            r->in.len += (size_t)n;
            process_frames(r);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        process_frames(r);
        if (!r->finished) {
            send_error_event(r->req, "-1", "the sandbox stopped while the command ran");
            run_end(r);
        }
        break;
    }
    process_frames(r);
    if (r->finished)
        return run_free(r);
    run_update_watch(r);
}

static void run_on_io(struct loop_io *io, uint32_t revents)
{
    run_pump(container_of(io, struct run, io));
}

static void run_on_ping(struct loop_timer *t)
{
    struct run *r = container_of(t, struct run, ping);
    send_event(r->req, json_pack("{s:s, s:s}", "type", "ping", "text", "pong"));
    loop_timer_start(r->d->loop, &r->ping, PING_INTERVAL_USEC, run_on_ping);
}

static void run_on_abort(struct http_request *req, void *userdata)
{
    struct run *r = userdata;
    r->req = NULL;
    run_free(r);
}

static void run_on_drain(struct http_request *req, void *userdata)
{
    struct run *r = userdata;
    r->paused = false;
    if (r->crun)
        return context_run_resume(r->crun);
    run_pump(r);
}

/* Starts body (a native command body, taken) in sb and streams it; init carries init_text (the command id
 * when NULL). Takes the reference sb. */
static void run_start(struct api_ctx *c, struct sandbox *sb, json_t *body, bool background,
                      const char *init_text)
{
    sbx_error err = {0};
    json_t *req = NULL, *resp = NULL;
    bool wait;
    if (api_command_exec_request(sb, body, &req, &wait, &err) < 0) {
        os_reply_sbx(c->req, &err, OS_COMMANDS);
        goto out;
    }
    if (sandbox_shim_call(sb, req, &resp, &err) < 0) {
        os_reply(c->req, 500, "RUNTIME_ERROR", "%s", err.msg);
        goto out;
    }
    metrics_count(METRICS_COMMANDS_STARTED);
    const char *cid = json_string_value(json_object_get(json_object_get(resp, "command"), "id")) ?: "";
    int fd = -1;
    if (!background && shim_attach(sb->state_dir, cid, 0, 0, &fd, &err) < 0) {
        os_reply(c->req, 500, "RUNTIME_ERROR", "%s", err.msg);
        goto out;
    }
    stream_begin(c->req);
    send_event(c->req, json_pack("{s:s, s:s}", "type", "init", "text", init_text ? init_text : cid));
    if (background) {
        send_event(c->req, json_pack("{s:s, s:i}", "type", "execution_complete", "execution_time", 0));
        http_response_end(c->req);
        goto out;
    }
    struct run *r = xcalloc(1, sizeof(*r));
    r->d = c->d;
    r->sb = TAKE_PTR(sb);
    sandbox_attach(r->sb);
    r->req = c->req;
    r->fd = fd;
    r->io.cb = run_on_io;
    r->started_ms = wall_ms();
    http_request_on_abort(c->req, run_on_abort, r);
    http_request_on_drain(c->req, run_on_drain, r);
    loop_timer_start(c->d->loop, &r->ping, PING_INTERVAL_USEC, run_on_ping);
    run_update_watch(r);
out:
    json_decref(body);
    json_decref(req);
    json_decref(resp);
    if (sb)
        sandbox_unref(sb);
}

/* cwd must be an existing directory (execd answers 400 otherwise). */
static int check_cwd(struct sandbox *sb, const char *cwd, sbx_error *err)
{
    struct files_entry e;
    if (cwd[0] != '/')
        return sbx_error_set(err, -EINVAL, "`cwd` must be an absolute path");
    if (files_stat(sb->rootfs_fd, cwd, &e, err) < 0)
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400, "`cwd` `%s` does not exist", cwd);
    if (e.type != FILES_TYPE_DIR && e.type != FILES_TYPE_SYMLINK)
        return sbx_error_set(err, -EINVAL, "`cwd` `%s` is not a directory", cwd);
    return 0;
}

/* The native command body for an execd command. */
static int command_body(struct sandbox *sb, json_t *m, const char *command, json_t **ret, sbx_error *err)
{
    const char *cwd = NULL;
    json_t *envs = NULL;
    int64_t timeout = 0, uid = -1, gid = -1;
    if (jsonreq_string(m, "cwd", PATH_MAX, &cwd, err) < 0 ||
        jsonreq_string_map(m, "envs", ENV_MAX_ENTRIES, ENV_MAX_ENTRY, &envs, err) < 0 ||
        jsonreq_integer(m, "timeout", 0, TIMEOUT_MAX_MS, &timeout, err) < 0 ||
        jsonreq_integer(m, "uid", 0, RUNTIME_UID_RANGE - 1, &uid, err) < 0 ||
        jsonreq_integer(m, "gid", 0, RUNTIME_UID_RANGE - 1, &gid, err) < 0)
        return err->code;
    if (gid >= 0 && uid < 0)
        return sbx_error_set(err, -EINVAL, "`gid` needs `uid`");
    if (cwd && *cwd && check_cwd(sb, cwd, err) < 0)
        return err->code;
    json_t *body =
        json_pack("{s:[s,s,s], s:b, s:i, s:i, s:b}", "command", shell_of(sb), "-c", command, "wait", false,
                  "idle_timeout", -1, "ttl_seconds", COMMAND_TTL_S, "stdin_open", false);
    if (cwd && *cwd)
        json_object_set_new(body, "cwd", json_string(cwd));
    if (envs)
        json_object_set(body, "env", envs);
    if (timeout > 0)
        json_object_set_new(body, "timeout", json_real((double)timeout / 1000.0));
    if (uid >= 0) {
        char user[48];
        if (gid >= 0)
            snprintf(user, sizeof(user), "%lld:%lld", (long long)uid, (long long)gid);
        else
            snprintf(user, sizeof(user), "%lld", (long long)uid);
        json_object_set_new(body, "user", json_string(user));
    }
    *ret = body;
    return 0;
}

static void command_with_body(struct api_ctx *c, json_t *m)
{
    sbx_error err = {0};
    const char *command = NULL;
    bool background = false;
    if (!json_is_object(m))
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "the body must be a JSON object");
    if (jsonreq_string(m, "command", COMMAND_MAX, &command, &err) < 0 ||
        jsonreq_bool(m, "background", &background, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    if (!command || !*command)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`command` is required");
    struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    json_t *body = NULL;
    if (command_body(sb, m, command, &body, &err) < 0) {
        sandbox_unref(sb);
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    }
    run_start(c, sb, body, background, NULL);
}

/* --- status, logs, interrupt ---------------------------------------------------------------------- */

static void command_status(struct api_ctx *c, const char *id)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    json_auto_t *resp = NULL;
    if (!id_is_valid(id))
        return os_reply(c->req, 404, "COMMAND_NOT_FOUND", "command `%s` not found", id);
    if (shim_op(sb, "status", id, &resp, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    json_t *st = json_object_get(resp, "command"), *argv = json_object_get(st, "argv");
    json_t *cmd = command_json_from_shim(sb->id, st);
    json_t *content =
        json_array_size(argv) == 3 && strcmp(json_string_value(json_array_get(argv, 1)) ?: "", "-c") == 0
            ? json_array_get(argv, 2)
            : json_array_get(argv, 0);
    bool running = strcmp(json_string_value(json_object_get(st, "state")) ?: "", "running") == 0;
    json_t *o = json_pack("{s:s, s:s, s:b, s:O}", "id", id, "content", json_string_value(content) ?: "",
                          "running", running, "started_at", json_object_get(cmd, "started_at"));
    if (!running) {
        json_t *ec = json_object_get(st, "exit_code");
        json_object_set_new(o, "exit_code", json_integer(json_is_integer(ec) ? json_integer_value(ec) : -1));
        json_object_set(o, "finished_at", json_object_get(cmd, "finished_at"));
        const char *msg = json_string_value(json_object_get(json_object_get(st, "error"), "message"));
        if (msg)
            json_object_set_new(o, "error", json_string(msg));
    }
    json_decref(cmd);
    http_respond_json(c->req, 200, o);
}

/* GET /command/{id}/logs?cursor=N: the combined output from byte N (at most 1 MiB per call), the new end in
 * EXECD-COMMANDS-TAIL-CURSOR. */
static void command_logs(struct api_ctx *c, const char *id)
{
    const char *cs = http_query_get(c->req, "cursor");
    unsigned long long cursor = 0;
    if (cs && *cs) {
        char *end;
        errno = 0;
        cursor = strtoull(cs, &end, 10);
        if (errno || *end || cs[0] == '-' || cursor > INT64_MAX)
            return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`cursor` must be a non-negative integer");
    }
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    if (!id_is_valid(id))
        return os_reply(c->req, 404, "COMMAND_NOT_FOUND", "command `%s` not found", id);
    sbx_error err = {0};
    json_auto_t *req = json_pack("{s:s, s:s, s:I, s:I}", "op", "logs", "id", id, "cursor", (json_int_t)cursor,
                                 "limit", (json_int_t)LOGS_LIMIT);
    json_auto_t *resp = NULL;
    if (sandbox_shim_call(sb, req, &resp, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    json_t *b64 = json_object_get(resp, "data_b64");
    size_t blen = json_string_length(b64);
    _cleanup_free_ uint8_t *data = xmalloc(blen / 4 * 3 + 3);
    long n = base64_decode(json_string_value(b64) ?: "", blen, data);
    if (n < 0)
        return os_reply(c->req, 500, "RUNTIME_ERROR", "malformed logs answer from the shim");
    char next[32];
    snprintf(next, sizeof(next), "%lld", (long long)json_integer_value(json_object_get(resp, "next_cursor")));
    http_response_header(c->req, "EXECD-COMMANDS-TAIL-CURSOR", next);
    http_respond(c->req, 200, "text/plain; charset=utf-8", data, (size_t)n);
}

/* DELETE /command?id=: SIGTERM, then SIGKILL if it still runs 3 s later; answered once it ended. */
struct interrupt {
    struct loop_timer timer;
    struct api_ctx *c;
    struct sandbox *sb;
    char id[SBX_ID_MAX + 1];
    usec_t deadline;
};

static void interrupt_free(struct interrupt *it)
{
    loop_timer_stop(it->c->d->loop, &it->timer);
    sandbox_unref(it->sb);
    free(it);
}

static void interrupt_aborted(struct http_request *req, void *userdata)
{
    interrupt_free(userdata);
}

static bool still_running(struct interrupt *it)
{
    json_auto_t *resp = NULL;
    if (shim_op(it->sb, "status", it->id, &resp, NULL) < 0)
        return false;
    return strcmp(json_string_value(json_object_get(json_object_get(resp, "command"), "state")) ?: "",
                  "running") == 0;
}

static void interrupt_poll(struct loop_timer *t)
{
    struct interrupt *it = container_of(t, struct interrupt, timer);
    if (still_running(it)) {
        if (now_usec(CLOCK_MONOTONIC) < it->deadline) {
            loop_timer_start(it->c->d->loop, &it->timer, INTERRUPT_POLL_USEC, interrupt_poll);
            return;
        }
        json_auto_t *resp = NULL;
        if (shim_op(it->sb, "kill", it->id, &resp, NULL) < 0)
            log_debug("opensandbox: kill `%s` failed", it->id);
    }
    os_reply_empty(it->c->req, 200);
    interrupt_free(it);
}

static void command_interrupt(struct api_ctx *c)
{
    const char *id = http_query_get(c->req, "id");
    if (!id || !*id)
        return os_reply(c->req, 400, "MISSING_QUERY", "`id` is required");
    struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    json_auto_t *resp = NULL;
    if (!id_is_valid(id)) {
        sandbox_unref(sb);
        return os_reply(c->req, 404, "COMMAND_NOT_FOUND", "command `%s` not found", id);
    }
    if (shim_op(sb, "status", id, &resp, &err) < 0) {
        sandbox_unref(sb);
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    }
    if (strcmp(json_string_value(json_object_get(json_object_get(resp, "command"), "state")) ?: "",
               "running") != 0) {
        sandbox_unref(sb);
        return os_reply(c->req, 409, "COMMAND_NOT_RUNNING", "command `%s` is not running", id);
    }
    json_auto_t *sig = json_pack("{s:s, s:s, s:i}", "op", "signal", "id", id, "signal", 15);
    json_auto_t *sresp = NULL;
    if (sandbox_shim_call(sb, sig, &sresp, &err) < 0) {
        sandbox_unref(sb);
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    }
    struct interrupt *it = xcalloc(1, sizeof(*it));
    it->c = c;
    it->sb = sb;
    snprintf(it->id, sizeof(it->id), "%s", id);
    it->deadline = now_usec(CLOCK_MONOTONIC) + INTERRUPT_GRACE_USEC;
    http_request_on_abort(c->req, interrupt_aborted, it);
    loop_timer_start(c->d->loop, &it->timer, INTERRUPT_POLL_USEC / 2, interrupt_poll);
}

/* --- bash sessions -------------------------------------------------------------------------------- */

/* A session is a directory in the sandbox holding its exported environment (`env`, as `export -p` wrote
 * it) and its working directory (`cwd`). Each run is an sbx command running WRAPPER, which restores both,
 * evaluates the command in that shell and saves both again on any exit, so `export` and `cd` persist. */
static const char WRAPPER[] =
    "__os_d=\"$OPENSANDBOX_SESSION_DIR\"; __os_c=\"$OPENSANDBOX_SESSION_CMD\"; "
    "__os_w=\"$OPENSANDBOX_SESSION_CWD\"\n"
    "unset OPENSANDBOX_SESSION_DIR OPENSANDBOX_SESSION_CMD OPENSANDBOX_SESSION_CWD\n"
    "[ -f \"$__os_d/env\" ] && . \"$__os_d/env\"\n"
    "if [ -n \"$__os_w\" ]; then cd \"$__os_w\" || exit 1; else cd \"$(cat \"$__os_d/cwd\")\" 2>/dev/null; "
    "fi\n"
    "trap '__os_rc=$?; export -p > \"$__os_d/env\"; pwd > \"$__os_d/cwd\"; exit $__os_rc' EXIT\n"
    "eval \"$__os_c\"\n";

static bool session_id_ok(const char *id)
{
    return id_is_valid(id) && strlen(id) <= 64;
}

static int session_dir(struct sandbox *sb, const char *id, char ret[PATH_MAX], sbx_error *err)
{
    struct files_entry e;
    snprintf(ret, PATH_MAX, SESSIONS_DIR "/%s", id);
    if (!session_id_ok(id) || files_stat(sb->rootfs_fd, ret, &e, NULL) < 0 || e.type != FILES_TYPE_DIR)
        return sbx_error_setk(err, -ENOENT, "not_found", 404, "session `%s` not found", id);
    return 0;
}

static void session_create_with_body(struct api_ctx *c, json_t *m)
{
    sbx_error err = {0};
    const char *cwd = NULL;
    if (!json_is_object(m) || jsonreq_string(m, "cwd", PATH_MAX, &cwd, &err) < 0)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "%s",
                        err.msg[0] ? err.msg : "the body must be an object");
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    if (!cwd || !*cwd)
        cwd = snapshot_default_cwd(sb->d, sb->snapshot);
    else if (check_cwd(sb, cwd, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    char id[SBX_ID_MAX + 1], dir[PATH_MAX], file[PATH_MAX];
    id_generate(id, sizeof(id), "sess_");
    snprintf(dir, sizeof(dir), SESSIONS_DIR "/%s", id);
    snprintf(file, sizeof(file), "%s/cwd", dir);
    struct files_writer w;
    if (files_mkdir_p(sb->rootfs_fd, SESSIONS_DIR, 01777, sb->uid_base, sb->uid_base, &err) < 0 ||
        files_mkdir_p(sb->rootfs_fd, dir, 0777, sb->uid_base, sb->uid_base, &err) < 0 ||
        files_writer_open(sb->rootfs_fd, file, 0666, sb->uid_base, sb->uid_base, &w, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    if (files_writer_write(&w, cwd, strlen(cwd), &err) < 0) {
        files_writer_abort(&w);
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    }
    if (files_writer_commit(&w, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    http_respond_json(c->req, 200, json_pack("{s:s}", "session_id", id));
}

static void session_run_with_body(struct api_ctx *c, json_t *m)
{
    sbx_error err = {0};
    const char *command = NULL, *cwd = NULL;
    int64_t timeout = SESSION_TIMEOUT_DEFAULT_MS;
    if (!json_is_object(m))
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "the body must be a JSON object");
    if (jsonreq_string(m, "command", COMMAND_MAX, &command, &err) < 0 ||
        jsonreq_string(m, "cwd", PATH_MAX, &cwd, &err) < 0 ||
        jsonreq_integer(m, "timeout", 0, TIMEOUT_MAX_MS, &timeout, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    if (!command || !*command)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`command` is required");
    struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    char dir[PATH_MAX];
    if (session_dir(sb, c->command_id, dir, &err) < 0 || (cwd && *cwd && check_cwd(sb, cwd, &err) < 0)) {
        sandbox_unref(sb);
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    }
    json_t *body = json_pack("{s:[s,s,s], s:b, s:i, s:i, s:b, s:{s:s, s:s, s:s}}", "command", shell_of(sb),
                             "-c", WRAPPER, "wait", false, "idle_timeout", -1, "ttl_seconds", COMMAND_TTL_S,
                             "stdin_open", false, "env", "OPENSANDBOX_SESSION_DIR", dir,
                             "OPENSANDBOX_SESSION_CMD", command, "OPENSANDBOX_SESSION_CWD", cwd ? cwd : "");
    if (timeout > 0)
        json_object_set_new(body, "timeout", json_real((double)timeout / 1000.0));
    run_start(c, sb, body, false, c->command_id);
}

static void session_delete(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    char dir[PATH_MAX];
    if (session_dir(sb, c->command_id, dir, &err) < 0 || files_remove(sb->rootfs_fd, dir, true, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    os_reply_empty(c->req, 200);
}

/* --- PTY over WebSocket ----------------------------------------------------------------------------- */

/* execd's /pty sessions on sbx's own commands. POST /pty records the session (cwd, command) in the sandbox
 * (PTY_DIR/<id>, a JSON file like the bash sessions' state); the shell starts on the first WebSocket as an
 * sbx command with a pty (or, with ?pty=0, with pipes), stdin open, kept after the socket goes, so a later
 * socket attaches to the same shell and ?since= replays its output (the shim keeps it). Frames: a JSON
 * `connected`, then binary frames with a channel byte (0x01 stdout, 0x02 stderr in pipe mode, 0x03 replay
 * + 8-byte big-endian offset); the client sends 0x00 + stdin bytes and JSON resize / signal / ping. One
 * socket per session: another gets 409 unless ?takeover=1, which closes the holder with 4001 TAKEN_OVER. */
#define PTY_DIR "/tmp/.opensandbox-pty"
#define PTY_FILE_MAX (COMMAND_MAX * 7 + 2 * PATH_MAX) /* the session file: a JSON-escaped command and cwd */
#define PTY_STDIN_BACKLOG (1u << 20)                  /* stdin bytes queued for the shim */
#define PTY_COLS 80
#define PTY_ROWS 24

struct pty_ws {
    struct loop_io io;
    struct pty_ws *next; /* in pty_holders */
    struct daemon *d;
    struct sandbox *sb; /* attached while the socket is open */
    struct http_ws *ws;
    char session[SBX_ID_MAX + 1];
    int fd;
    int watched;
    struct sbx_buf in, out;
    uint64_t replay_end; /* stdout before this offset was written before the socket came: replay frames */
    bool paused, finished, evicted, is_pty;
};

static struct pty_ws *pty_holders; /* the open sockets (each has its session) */

static struct pty_ws *pty_holder(const char *sandbox_id, const char *session)
{
    for (struct pty_ws *p = pty_holders; p; p = p->next)
        if (!p->evicted && strcmp(p->session, session) == 0 && strcmp(p->sb->id, sandbox_id) == 0)
            return p;
    return NULL;
}

static void pty_ws_free(struct pty_ws *p)
{
    for (struct pty_ws **pp = &pty_holders; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    if (p->watched)
        loop_io_stop(p->d->loop, &p->io);
    if (p->fd >= 0)
        close(p->fd);
    sbx_buf_done(&p->in);
    sbx_buf_done(&p->out);
    sandbox_detach(p->sb);
    sandbox_unref(p->sb);
    free(p);
}

/* A session's or context's state: a JSON file dir/<id> in the sandbox (root-owned, 0600). */
static int state_path(const char *dir, const char *id, const char *what, char ret[PATH_MAX], sbx_error *err)
{
    if (!session_id_ok(id))
        return sbx_error_setk(err, -ENOENT, "not_found", 404, "%s `%s` not found", what, id);
    snprintf(ret, PATH_MAX, "%s/%s", dir, id);
    return 0;
}

static int state_load(struct sandbox *sb, const char *dir, const char *id, const char *what, json_t **ret,
                      sbx_error *err)
{
    char path[PATH_MAX];
    int fd;
    uint64_t size;
    if (state_path(dir, id, what, path, err) < 0)
        return err->code;
    if (files_open_read(sb->rootfs_fd, path, &fd, &size, NULL) < 0)
        return sbx_error_setk(err, -ENOENT, "not_found", 404, "%s `%s` not found", what, id);
    if (size > PTY_FILE_MAX) {
        close(fd);
        return sbx_error_set(err, -EBADMSG, "%s `%s`: its state file is too large", what, id);
    }
    _cleanup_free_ char *buf = xmalloc(size + 1);
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    json_t *j = json_loadb(buf, got, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return sbx_error_set(err, -EBADMSG, "%s `%s`: its state file is malformed", what, id);
    }
    *ret = j;
    return 0;
}

static int state_save(struct sandbox *sb, const char *dir, const char *id, const char *what, json_t *j,
                      sbx_error *err)
{
    char path[PATH_MAX];
    struct files_writer w;
    _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
    if (state_path(dir, id, what, path, err) < 0)
        return err->code;
    if (!text)
        return sbx_error_set(err, -ENOMEM, "out of memory");
    if (files_mkdir_p(sb->rootfs_fd, dir, 0700, sb->uid_base, sb->uid_base, err) < 0 ||
        files_writer_open(sb->rootfs_fd, path, 0600, sb->uid_base, sb->uid_base, &w, err) < 0)
        return err->code;
    if (files_writer_write(&w, text, strlen(text), err) < 0) {
        files_writer_abort(&w);
        return err->code;
    }
    return files_writer_commit(&w, err);
}

static int pty_path(const char *id, char ret[PATH_MAX], sbx_error *err)
{
    return state_path(PTY_DIR, id, "pty session", ret, err);
}

static int pty_load(struct sandbox *sb, const char *id, json_t **ret, sbx_error *err)
{
    return state_load(sb, PTY_DIR, id, "pty session", ret, err);
}

static int pty_save(struct sandbox *sb, const char *id, json_t *j, sbx_error *err)
{
    return state_save(sb, PTY_DIR, id, "pty session", j, err);
}

/* The shim's status of the session's command (a new reference), or NULL when it has none or it is gone. */
static json_t *pty_command_status(struct sandbox *sb, json_t *session)
{
    const char *cid = json_string_value(json_object_get(session, "cid"));
    json_t *resp = NULL;
    if (!cid || !id_is_valid(cid) || shim_op(sb, "status", cid, &resp, NULL) < 0)
        return NULL;
    json_t *st = json_incref(json_object_get(resp, "command"));
    json_decref(resp);
    return st;
}

static bool status_running(json_t *st)
{
    return strcmp(json_string_value(json_object_get(st, "state")) ?: "", "running") == 0;
}

static void pty_create_with_body(struct api_ctx *c, json_t *m)
{
    sbx_error err = {0};
    const char *cwd = NULL, *command = NULL;
    if (!json_is_object(m))
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "the body must be a JSON object");
    if (jsonreq_string(m, "cwd", PATH_MAX, &cwd, &err) < 0 ||
        jsonreq_string(m, "command", COMMAND_MAX, &command, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    if (cwd && *cwd && check_cwd(sb, cwd, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    char id[SBX_ID_MAX + 1];
    id_generate(id, sizeof(id), "pty_");
    json_auto_t *session = json_pack("{s:s, s:s}", "cwd", cwd ? cwd : "", "command", command ? command : "");
    if (pty_save(sb, id, session, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    http_respond_json(c->req, 200, json_pack("{s:s}", "session_id", id));
}

static void pty_get(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    json_auto_t *session = NULL;
    if (pty_load(sb, c->command_id, &session, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    json_auto_t *st = pty_command_status(sb, session);
    json_t *out = json_object_get(st, "stdout_bytes");
    http_respond_json(c->req, 200,
                      json_pack("{s:s, s:b, s:I}", "session_id", c->command_id, "running",
                                st && status_running(st), "output_offset",
                                (json_int_t)(json_is_integer(out) ? json_integer_value(out) : 0)));
}

static void pty_delete(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    json_auto_t *session = NULL;
    char path[PATH_MAX];
    if (pty_load(sb, c->command_id, &session, &err) < 0 || pty_path(c->command_id, path, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    json_auto_t *st = pty_command_status(sb, session), *resp = NULL;
    if (st && status_running(st) &&
        shim_op(sb, "kill", json_string_value(json_object_get(session, "cid")), &resp, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    if (files_remove(sb->rootfs_fd, path, false, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    struct pty_ws *h = pty_holder(sb->id, c->command_id);
    if (h) {
        h->evicted = true;
        http_ws_close(h->ws, 1000, "session deleted");
    }
    os_reply_empty(c->req, 200);
}

static void pty_update_watch(struct pty_ws *p)
{
    int want = 0;
    if (!p->paused && !p->finished)
        want |= EPOLLIN;
    if (p->out.len > 0 && !p->finished)
        want |= EPOLLOUT;
    if (want == p->watched)
        return;
    if (p->watched && want)
        loop_io_update(p->d->loop, &p->io, (uint32_t)want);
    else if (want)
        loop_io_start(p->d->loop, &p->io, p->fd, (uint32_t)want, NULL);
    else
        loop_io_stop(p->d->loop, &p->io);
    p->watched = want;
}

static void pty_finish(struct pty_ws *p, int code, const char *why)
{
    p->finished = true;
    http_ws_close(p->ws, code, why);
}

static bool pty_forward(struct pty_ws *p, uint8_t stream, uint64_t off, const uint8_t *data, size_t len)
{
    _cleanup_free_ uint8_t *frame = xmalloc(len + 9);
    size_t n;
    if (stream == SHIM_STREAM_STDERR) {
        frame[0] = 0x02;
        memcpy(frame + 1, data, len);
        n = len + 1;
    } else if (off < p->replay_end) {
        frame[0] = 0x03;
        for (int i = 0; i < 8; i++)
            frame[1 + i] = (uint8_t)(off >> (8 * (7 - i)));
        memcpy(frame + 9, data, len);
        n = len + 9;
    } else {
        frame[0] = 0x01;
        memcpy(frame + 1, data, len);
        n = len + 1;
    }
    return http_ws_send_binary(p->ws, frame, n) > 0;
}

static void pty_process(struct pty_ws *p)
{
    size_t pos = 0;
    while (!p->finished && !p->paused) {
        struct shim_frame f;
        long n = shim_frame_parse((const uint8_t *)p->in.base + pos, p->in.len - pos, &f);
        if (n == 0)
            break;
        if (n < 0) {
            pty_finish(p, 1011, "malformed frame from the sandbox's shim");
            break;
        }
        pos += (size_t)n;
        uint8_t stream;
        uint64_t off;
        const uint8_t *data;
        size_t len;
        if (f.type == SHIM_FRAME_DATA && shim_frame_data_parse(&f, &stream, &off, &data, &len) == 0) {
            if (pty_forward(p, stream, off, data, len))
                p->paused = true;
        } else if (f.type == SHIM_FRAME_EXIT) {
            json_auto_t *st = json_loadb((const char *)f.payload, f.len, 0, NULL);
            json_t *ec = json_object_get(st, "exit_code");
            json_auto_t *ev = json_pack("{s:s, s:I}", "type", "exit", "exit_code",
                                        (json_int_t)(json_is_integer(ec) ? json_integer_value(ec) : -1));
            _cleanup_free_ char *text = json_dumps(ev, JSON_COMPACT);
            if (text)
                http_ws_send_text(p->ws, text, strlen(text));
            pty_finish(p, 1000, "the shell exited");
        } else if (f.type == SHIM_FRAME_RESPONSE) {
            pty_finish(p, 1011, "the shell's output could not be attached");
        }
    }
    sbx_buf_consume(&p->in, pos);
}

static void pty_pump(struct pty_ws *p)
{
    if (p->out.len > 0) {
        ssize_t n = write(p->fd, p->out.base, p->out.len);
        if (n > 0)
            sbx_buf_consume(&p->out, (size_t)n);
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            p->out.len = 0; /* the shim is gone; reading tells the client */
    }
    pty_process(p);
    pty_update_watch(p);
}

static void pty_on_io(struct loop_io *io, uint32_t revents)
{
    struct pty_ws *p = container_of(io, struct pty_ws, io);
    if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (int i = 0; i < 16 && !p->paused && !p->finished; i++) {
            char *buf = sbx_buf_reserve(&p->in, SHIM_READ_CHUNK);
            ssize_t n = read(p->fd, buf, SHIM_READ_CHUNK);
            if (n > 0) {
                p->in.len += (size_t)n;
                pty_process(p);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            pty_process(p);
            if (!p->finished)
                pty_finish(p, 1011, "the sandbox's shim closed the stream");
            break;
        }
    }
    pty_pump(p);
}

static void pty_queue(struct pty_ws *p, uint8_t type, const void *payload, size_t len)
{
    if (p->out.len + len > PTY_STDIN_BACKLOG)
        return pty_finish(p, 1009, "stdin backlog too large");
    uint8_t hdr[SHIM_FRAME_HEADER];
    shim_frame_header(hdr, type, (uint32_t)len);
    sbx_buf_append(&p->out, hdr, sizeof(hdr));
    sbx_buf_append(&p->out, payload, len);
    pty_pump(p);
}

static void pty_on_text(struct http_ws *ws, const char *data, size_t len, void *userdata)
{
    struct pty_ws *p = userdata;
    json_auto_t *m = json_loadb(data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    if (p->finished)
        return;
    if (!type)
        return pty_finish(p, 1003, "expected a JSON object with a type");
    if (strcmp(type, "ping") == 0) {
        static const char pong[] = "{\"type\":\"pong\"}";
        http_ws_send_text(ws, pong, sizeof(pong) - 1);
    } else if (strcmp(type, "resize") == 0) {
        json_t *cols = json_object_get(m, "cols"), *rows = json_object_get(m, "rows");
        json_int_t w = json_integer_value(cols), h = json_integer_value(rows);
        if (!json_is_integer(cols) || !json_is_integer(rows) || w < 1 || w > 1000 || h < 1 || h > 1000)
            return pty_finish(p, 1003, "resize needs integer cols and rows in 1..1000");
        _cleanup_free_ char *req = xasprintf("{\"op\":\"resize\",\"cols\":%d,\"rows\":%d}", (int)w, (int)h);
        pty_queue(p, SHIM_FRAME_REQUEST, req, strlen(req));
    } else if (strcmp(type, "signal") == 0) {
        int sig = signal_from_json(json_object_get(m, "signal"));
        if (sig < 0)
            return pty_finish(p, 1003, "unknown signal");
        /* On a terminal, SIGINT, SIGQUIT and SIGTSTP go to the foreground job (a command the shell runs,
         * not the interactive shell, which ignores them): typed as the line discipline's characters. */
        const char *ch = !p->is_pty       ? NULL
                         : sig == SIGINT  ? "\x03"
                         : sig == SIGQUIT ? "\x1c"
                         : sig == SIGTSTP ? "\x1a"
                                          : NULL;
        if (ch)
            return pty_queue(p, SHIM_FRAME_STDIN, ch, 1);
        _cleanup_free_ char *req = xasprintf("{\"op\":\"signal\",\"signal\":%d}", sig);
        pty_queue(p, SHIM_FRAME_REQUEST, req, strlen(req));
    } else {
        pty_finish(p, 1003, "unknown message type (resize, signal or ping)");
    }
}

static void pty_on_binary(struct http_ws *ws, const char *data, size_t len, void *userdata)
{
    struct pty_ws *p = userdata;
    if (p->finished)
        return;
    if (len == 0 || data[0] != 0x00)
        return pty_finish(p, 1003, "binary frames from the client are 0x00 + stdin bytes");
    if (len > 1)
        pty_queue(p, SHIM_FRAME_STDIN, data + 1, len - 1);
}

static void pty_on_drain(struct http_ws *ws, void *userdata)
{
    struct pty_ws *p = userdata;
    p->paused = false;
    pty_pump(p);
}

static void pty_on_close(struct http_ws *ws, int code, void *userdata)
{
    pty_ws_free(userdata);
}

static const struct http_ws_callbacks pty_ws_callbacks = {
    .on_text = pty_on_text,
    .on_binary = pty_on_binary,
    .on_drain = pty_on_drain,
    .on_close = pty_on_close,
};

/* Starts the session's shell (an sbx command) and records its id in the session. */
static int pty_start(struct sandbox *sb, const char *id, json_t *session, bool pty, sbx_error *err)
{
    const char *cwd = json_string_value(json_object_get(session, "cwd")) ?: "";
    const char *command = json_string_value(json_object_get(session, "command")) ?: "";
    json_t *body = *command ? json_pack("{s:[s,s,s]}", "command", shell_of(sb), "-c", command)
                            : json_pack("{s:[s]}", "command", shell_of(sb));
    json_object_set_new(body, "wait", json_false());
    json_object_set_new(body, "stdin_open", json_true());
    json_object_set_new(body, "idle_timeout", json_integer(-1));
    json_object_set_new(body, "ttl_seconds", json_integer(COMMAND_TTL_S));
    json_object_set_new(body, "pty", json_boolean(pty));
    if (pty) {
        json_object_set_new(body, "cols", json_integer(PTY_COLS));
        json_object_set_new(body, "rows", json_integer(PTY_ROWS));
    }
    if (*cwd)
        json_object_set_new(body, "cwd", json_string(cwd));
    json_auto_t *req = NULL, *resp = NULL;
    bool wait;
    int r = api_command_exec_request(sb, body, &req, &wait, err);
    json_decref(body);
    if (r < 0 || sandbox_shim_call(sb, req, &resp, err) < 0)
        return err->code;
    metrics_count(METRICS_COMMANDS_STARTED);
    const char *cid = json_string_value(json_object_get(json_object_get(resp, "command"), "id")) ?: "";
    json_object_set_new(session, "cid", json_string(cid));
    json_object_set_new(session, "pty", json_boolean(pty));
    return pty_save(sb, id, session, err);
}

static void pty_connect(struct api_ctx *c)
{
    if (!http_request_is_websocket(c->req))
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "GET /pty/{id}/ws needs a WebSocket upgrade");
    const char *mode = http_query_get(c->req, "pty"), *since_s = http_query_get(c->req, "since"),
               *takeover_s = http_query_get(c->req, "takeover");
    bool pty = !(mode && (strcmp(mode, "0") == 0 || strcmp(mode, "false") == 0));
    bool takeover = takeover_s && (strcmp(takeover_s, "1") == 0 || strcmp(takeover_s, "true") == 0);
    unsigned long long since = 0;
    if (since_s && *since_s) {
        char *end;
        errno = 0;
        since = strtoull(since_s, &end, 10);
        if (errno || *end || since_s[0] == '-' || since > INT64_MAX)
            return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`since` must be a non-negative integer");
    }
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    json_auto_t *session = NULL;
    if (pty_load(sb, c->command_id, &session, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    struct pty_ws *holder = pty_holder(sb->id, c->command_id);
    if (holder && !takeover)
        return os_reply(c->req, 409, "CONFLICT",
                        "pty session `%s` already has a client (connect with takeover=1 to take it over)",
                        c->command_id);
    json_auto_t *st = pty_command_status(sb, session);
    bool started = false;
    if (!st || !status_running(st)) {
        json_decref(st);
        st = NULL;
        if (pty_start(sb, c->command_id, session, pty, &err) < 0)
            return os_reply_sbx(c->req, &err, OS_COMMANDS);
        started = true;
    }
    const char *cid = json_string_value(json_object_get(session, "cid")) ?: "";
    /* A shell just started: all of its output is new (none may be lost before the attach). */
    uint64_t out_end = started ? 0 : (uint64_t)json_integer_value(json_object_get(st, "stdout_bytes"));
    uint64_t err_end = started ? 0 : (uint64_t)json_integer_value(json_object_get(st, "stderr_bytes"));
    bool replay = since_s && *since_s;
    int fd;
    if (shim_attach(sb->state_dir, cid, replay ? (since < out_end ? since : out_end) : out_end, err_end, &fd,
                    &err) < 0)
        return os_reply(c->req, 500, "RUNTIME_ERROR", "%s", err.msg);
    struct pty_ws *p = xcalloc(1, sizeof(*p));
    p->d = c->d;
    p->sb = sandbox_ref(sb);
    sandbox_attach(sb);
    p->fd = fd;
    p->io.cb = pty_on_io;
    p->replay_end = replay ? out_end : 0;
    snprintf(p->session, sizeof(p->session), "%s", c->command_id);
    if (http_websocket_accept(c->req, &pty_ws_callbacks, p, &p->ws) < 0) {
        p->fd = -1;
        close(fd);
        sandbox_detach(p->sb);
        sandbox_unref(p->sb);
        free(p);
        return;
    }
    if (holder) {
        holder->evicted = true;
        pty_finish(holder, 4001, "TAKEN_OVER");
    }
    p->next = pty_holders;
    pty_holders = p;
    bool is_pty = p->is_pty = json_is_true(json_object_get(session, "pty"));
    json_auto_t *hello = json_pack("{s:s, s:s, s:s}", "type", "connected", "session_id", p->session, "mode",
                                   is_pty ? "pty" : "pipe");
    _cleanup_free_ char *text = json_dumps(hello, JSON_COMPACT);
    if (text)
        http_ws_send_text(p->ws, text, strlen(text));
    pty_update_watch(p);
}

/* --- code-interpreter contexts ------------------------------------------------------------------- */

/* execd's /code on sbx's code contexts (api/contexts.h): the same drivers, records and runs as the native
 * /v1/sandboxes/{id}/contexts; here only execd's shapes: a run's output as line events, the result and
 * error events, execd's error codes and language names (their `javascript` is sbx's `node`). */

/* execd's language name → sbx's (NULL: not supported), and back. */
static const char *code_language_in(const char *l)
{
    if (strcmp(l, "python") == 0 || strcmp(l, "bash") == 0)
        return l;
    if (strcmp(l, "javascript") == 0 || strcmp(l, "node") == 0)
        return "node";
    return NULL;
}

static const char *code_language_out(json_t *ctx)
{
    const char *l = json_string_value(json_object_get(ctx, "language")) ?: "";
    return strcmp(l, "node") == 0 ? "javascript" : l;
}

static json_t *context_json(json_t *ctx)
{
    return json_pack("{s:O, s:s, s:O}", "id", json_object_get(ctx, "id"), "language", code_language_out(ctx),
                     "cwd", json_object_get(ctx, "cwd"));
}

/* A code context error in execd's codes: a context that is missing or has ended is CONTEXT_NOT_FOUND. */
static void code_reply_error(struct api_ctx *c, const sbx_error *err)
{
    const char *kind = sbx_error_kind(err);
    if (strcmp(kind, "not_found") == 0 || strcmp(kind, "context_ended") == 0)
        return os_reply(c->req, 404, "CONTEXT_NOT_FOUND", "%s", err->msg);
    if (strcmp(kind, "context_busy") == 0)
        return os_reply(c->req, 409, "CONFLICT", "%s", err->msg);
    if (strcmp(kind, "unsupported") == 0)
        return os_reply(c->req, 400, "NOT_SUPPORTED", "%s", err->msg);
    os_reply_sbx(c->req, err, OS_COMMANDS);
}

static void code_context_create_with_body(struct api_ctx *c, json_t *m)
{
    sbx_error err = {0};
    const char *language = NULL, *cwd = NULL;
    if (!json_is_object(m))
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "the body must be a JSON object");
    if (jsonreq_string(m, "language", 32, &language, &err) < 0 ||
        jsonreq_string(m, "cwd", PATH_MAX, &cwd, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    if (!language || !*language)
        language = "python";
    const char *lang = code_language_in(language);
    if (!lang)
        return os_reply(
            c->req, 501, "NOT_SUPPORTED",
            "language `%s` is not supported by sbx's code contexts (python, javascript and bash are)",
            language);
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    json_auto_t *ctx = NULL;
    if (context_create(sb, lang, cwd && *cwd ? cwd : NULL, NULL, &ctx, &err) < 0)
        return code_reply_error(c, &err);
    http_respond_json(c->req, 200, context_json(ctx));
}

static void code_contexts_list(struct api_ctx *c, bool del)
{
    const char *language = http_query_get(c->req, "language");
    if (language && !*language)
        language = NULL;
    if (del && !language)
        return os_reply(c->req, 400, "MISSING_QUERY", "`language` is required");
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    const char *want = language ? code_language_in(language) : NULL;
    json_auto_t *all = context_list(sb);
    json_t *out = json_array(), *ctx;
    size_t i;
    json_array_foreach(all, i, ctx)
    {
        if (language &&
            (!want || strcmp(json_string_value(json_object_get(ctx, "language")) ?: "", want) != 0))
            continue;
        if (del)
            context_delete(sb, json_string_value(json_object_get(ctx, "id")), NULL);
        else
            json_array_append_new(out, json_pack("{s:O, s:s}", "id", json_object_get(ctx, "id"), "language",
                                                 code_language_out(ctx)));
    }
    if (del) {
        json_decref(out);
        return os_reply_empty(c->req, 200);
    }
    http_respond_json(c->req, 200, out);
}

static void code_context_get(struct api_ctx *c, bool del)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    json_auto_t *ctx = NULL;
    if (context_get(sb, c->command_id, &ctx, &err) < 0)
        return code_reply_error(c, &err);
    if (!del)
        return http_respond_json(c->req, 200, context_json(ctx));
    if (context_delete(sb, c->command_id, &err) < 0)
        return code_reply_error(c, &err);
    os_reply_empty(c->req, 200);
}

static bool code_on_output(void *userdata, int stream, const char *data, size_t len)
{
    return forward_output(userdata, stream, data, len);
}

/* A rich output (display()): a `result` event with the mime bundle, `text` its text/plain. */
static bool code_on_display(void *userdata, json_t *data)
{
    struct run *r = userdata;
    json_t *results = json_deep_copy(data);
    const char *text = json_string_value(json_object_get(data, "text/plain"));
    if (text)
        json_object_set_new(results, "text", json_string(text));
    return send_event(r->req, json_pack("{s:s, s:o}", "type", "result", "results", results)) > 0;
}

static void code_on_done(void *userdata, json_t *res)
{
    struct run *r = userdata;
    r->crun = NULL; /* the context's run ends after this */
    for (int s = 0; s < 2; s++)
        if (r->line[s].len)
            send_text(r, s, r->line[s].base, r->line[s].len);
    json_t *count = json_object_get(res, "execution_count"), *e = json_object_get(res, "error");
    json_t *ec = json_object_get(res, "exit_code");
    if (json_is_true(json_object_get(res, "context_ended"))) {
        send_event(r->req, json_pack("{s:s, s:{s:s, s:O, s:[]}}", "type", "error", "error", "ename",
                                     "ContextEnded", "evalue", json_object_get(e, "value"), "traceback"));
        run_end(r);
        return run_free(r);
    }
    if (json_is_integer(count))
        send_event(r->req, json_pack("{s:s, s:O}", "type", "execution_count", "execution_count", count));
    const char *text = json_string_value(json_object_get(res, "text"));
    if (text)
        send_event(r->req, json_pack("{s:s, s:{s:s}}", "type", "result", "results", "text", text));
    if (r->bash && e && json_is_integer(ec) &&
        strcmp(json_string_value(json_object_get(e, "name")) ?: "", "CommandExecError") == 0) {
        char ev[24], tb[48];
        snprintf(ev, sizeof(ev), "%lld", (long long)json_integer_value(ec));
        snprintf(tb, sizeof(tb), "exit status %lld", (long long)json_integer_value(ec));
        send_error_event(r->req, ev, tb);
    } else if (e) {
        send_event(r->req, json_pack("{s:s, s:{s:O, s:O, s:O}}", "type", "error", "error", "ename",
                                     json_object_get(e, "name"), "evalue", json_object_get(e, "value"),
                                     "traceback", json_object_get(e, "traceback")));
    } else {
        send_event(r->req, json_pack("{s:s, s:I}", "type", "execution_complete", "execution_time",
                                     (json_int_t)(wall_ms() - r->started_ms)));
    }
    run_end(r);
    run_free(r);
}

static const struct context_run_ops code_ops = {
    .output = code_on_output,
    .display = code_on_display,
    .done = code_on_done,
};

static void code_run_with_body(struct api_ctx *c, json_t *m)
{
    sbx_error err = {0};
    const char *code = NULL, *id = NULL, *language = NULL;
    json_t *cref = json_object_get(m, "context");
    if (!json_is_object(m))
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "the body must be a JSON object");
    if (jsonreq_string(m, "code", CONTEXT_CODE_MAX, &code, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    if (cref && !json_is_object(cref) && !json_is_null(cref))
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`context` must be an object {id, language}");
    if (cref && json_is_object(cref) &&
        (jsonreq_string(cref, "id", SBX_ID_MAX, &id, &err) < 0 ||
         jsonreq_string(cref, "language", 32, &language, &err) < 0))
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    if (!code)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`code` is required");
    if (!id || !*id)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY",
                        "`context.id` is required (create one with POST /code/context)");
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    json_auto_t *ctx = NULL;
    if (context_get(sb, id, &ctx, &err) < 0)
        return code_reply_error(c, &err);
    struct run *r = xcalloc(1, sizeof(*r));
    r->d = c->d;
    r->sb = sandbox_ref(sb);
    sandbox_attach(r->sb);
    r->req = c->req;
    r->fd = -1;
    r->started_ms = wall_ms();
    r->bash = strcmp(json_string_value(json_object_get(ctx, "language")) ?: "", "bash") == 0;
    if (context_run_start(sb, id, code, 0, &code_ops, r, &r->crun, &err) < 0) {
        r->crun = NULL;
        run_free(r);
        return code_reply_error(c, &err);
    }
    stream_begin(c->req);
    send_event(c->req, json_pack("{s:s, s:s}", "type", "init", "text", id));
    http_request_on_abort(c->req, run_on_abort, r);
    http_request_on_drain(c->req, run_on_drain, r);
    loop_timer_start(c->d->loop, &r->ping, PING_INTERVAL_USEC, run_on_ping);
}

/* DELETE /code?id=: SIGINT to the context's interpreter and its children (a KeyboardInterrupt in the
 * running cell; the context stays). */
static void code_interrupt(struct api_ctx *c)
{
    const char *id = http_query_get(c->req, "id");
    if (!id || !*id)
        return os_reply(c->req, 400, "MISSING_QUERY", "`id` is required");
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    bool running;
    if (context_interrupt(sb, id, &running, &err) < 0 && strcmp(sbx_error_kind(&err), "context_ended") != 0)
        return code_reply_error(c, &err);
    os_reply_empty(c->req, 200);
}

/* --- metrics, ping, egress -------------------------------------------------------------------------- */

static double cpu_limit(const struct sandbox *sb)
{
    if (sb->res.cpus > 0)
        return sb->res.cpus;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (double)n : 1.0;
}

/* GET /metrics: one sample; cpu_used_pct is the cgroup's CPU time over a short window starting with the
 * request, as a percentage of the CPUs the sandbox may use. */
struct metrics_sample {
    struct loop_timer timer;
    struct api_ctx *c;
    struct sandbox *sb;
    uint64_t cpu_nsec;
    usec_t started;
};

static void metrics_sample_free(struct metrics_sample *ms)
{
    loop_timer_stop(ms->c->d->loop, &ms->timer);
    sandbox_unref(ms->sb);
    free(ms);
}

static void metrics_aborted(struct http_request *req, void *userdata)
{
    metrics_sample_free(userdata);
}

static void metrics_sampled(struct loop_timer *t)
{
    struct metrics_sample *ms = container_of(t, struct metrics_sample, timer);
    struct sandbox *sb = ms->sb;
    struct runtime_metrics m;
    if (runtime_metrics(sb->id, &m) < 0) {
        os_reply(ms->c->req, 500, "RUNTIME_ERROR", "the sandbox's cgroup cannot be read");
        return metrics_sample_free(ms);
    }
    usec_t elapsed = now_usec(CLOCK_MONOTONIC) - ms->started;
    uint64_t used = m.cpu_usage_nsec > ms->cpu_nsec ? m.cpu_usage_nsec - ms->cpu_nsec : 0;
    double pct = elapsed > 0 ? (double)used / ((double)elapsed * 1000.0) / cpu_limit(sb) * 100.0 : 0.0;
    if (pct > 100.0)
        pct = 100.0;
    http_respond_json(ms->c->req, 200,
                      json_pack("{s:f, s:f, s:f, s:f, s:I}", "cpu_count",
                                (double)(int)(cpu_limit(sb) + 0.999), "cpu_used_pct", pct, "mem_total_mib",
                                (double)sb->res.memory_mb, "mem_used_mib", (double)m.memory_bytes / 1048576.0,
                                "timestamp", (json_int_t)wall_ms()));
    metrics_sample_free(ms);
}

static void metrics_get(struct api_ctx *c)
{
    struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    struct runtime_metrics m;
    if (runtime_metrics(sb->id, &m) < 0) {
        sandbox_unref(sb);
        return os_reply(c->req, 500, "RUNTIME_ERROR", "the sandbox's cgroup cannot be read");
    }
    struct metrics_sample *ms = xcalloc(1, sizeof(*ms));
    ms->c = c;
    ms->sb = sb;
    ms->cpu_nsec = m.cpu_usage_nsec;
    ms->started = now_usec(CLOCK_MONOTONIC);
    http_request_on_abort(c->req, metrics_aborted, ms);
    loop_timer_start(c->d->loop, &ms->timer, CPU_SAMPLE_USEC, metrics_sampled);
}

/* GET /metrics/watch: the same object as /metrics, one compact JSON line each second until the client
 * goes (execd's stream, no `data:`); cpu_used_pct covers the second before each sample (the first one the
 * 100 ms after the request). A slow client misses samples rather than buffering them; the stream ends when
 * the sandbox's cgroup can no longer be read (it stopped or went). */
#define WATCH_INTERVAL_USEC USEC_PER_SEC

struct metrics_watch {
    struct loop_timer timer;
    struct daemon *d;
    struct http_request *req;
    struct sandbox *sb;
    uint64_t cpu_nsec;
    usec_t at;
    bool slow;
};

static void metrics_watch_free(struct metrics_watch *w)
{
    loop_timer_stop(w->d->loop, &w->timer);
    sandbox_unref(w->sb);
    free(w);
}

static void metrics_watch_aborted(struct http_request *req, void *userdata)
{
    metrics_watch_free(userdata);
}

static void metrics_watch_drained(struct http_request *req, void *userdata)
{
    struct metrics_watch *w = userdata;
    w->slow = false;
}

static void metrics_watch_tick(struct loop_timer *t)
{
    struct metrics_watch *w = container_of(t, struct metrics_watch, timer);
    struct runtime_metrics m;
    if (runtime_metrics(w->sb->id, &m) < 0) {
        http_response_end(w->req);
        return metrics_watch_free(w);
    }
    usec_t now = now_usec(CLOCK_MONOTONIC), elapsed = now - w->at;
    uint64_t used = m.cpu_usage_nsec > w->cpu_nsec ? m.cpu_usage_nsec - w->cpu_nsec : 0;
    double pct = elapsed > 0 ? (double)used / ((double)elapsed * 1000.0) / cpu_limit(w->sb) * 100.0 : 0.0;
    w->cpu_nsec = m.cpu_usage_nsec;
    w->at = now;
    if (!w->slow) {
        json_auto_t *o = json_pack(
            "{s:f, s:f, s:f, s:f, s:I}", "cpu_count", (double)(int)(cpu_limit(w->sb) + 0.999), "cpu_used_pct",
            pct > 100.0 ? 100.0 : pct, "mem_total_mib", (double)w->sb->res.memory_mb, "mem_used_mib",
            (double)m.memory_bytes / 1048576.0, "timestamp", (json_int_t)wall_ms());
        _cleanup_free_ char *text = json_dumps(o, JSON_COMPACT);
        if (text) {
            _cleanup_free_ char *line = xasprintf("%s\n", text);
            w->slow = http_response_write(w->req, line, strlen(line)) > 0;
        }
    }
    loop_timer_start(w->d->loop, &w->timer, WATCH_INTERVAL_USEC, metrics_watch_tick);
}

static void metrics_watch(struct api_ctx *c)
{
    struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    struct runtime_metrics m;
    if (runtime_metrics(sb->id, &m) < 0) {
        sandbox_unref(sb);
        return os_reply(c->req, 500, "RUNTIME_ERROR", "the sandbox's cgroup cannot be read");
    }
    struct metrics_watch *w = xcalloc(1, sizeof(*w));
    w->d = c->d;
    w->req = c->req;
    w->sb = sb;
    w->cpu_nsec = m.cpu_usage_nsec;
    w->at = now_usec(CLOCK_MONOTONIC);
    http_request_on_abort(c->req, metrics_watch_aborted, w);
    http_request_on_drain(c->req, metrics_watch_drained, w);
    stream_begin(c->req);
    loop_timer_start(c->d->loop, &w->timer, CPU_SAMPLE_USEC, metrics_watch_tick);
}

static void ping(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (sb)
        os_reply_empty(c->req, 200);
}

/* The sandbox's sbx egress policy in the sidecar's GET /policy shape. */
static json_t *egress_policy_json(struct sandbox *sb)
{
    json_t *rules = json_array();
    /* Without egress mode a sandbox has loopback only: nothing outside is reachable. */
    const char *def = "deny", *mode = "none";
    if (sb->net) {
        json_auto_t *j = egress_network_to_json(sb->net);
        json_t *eg = json_object_get(j, "egress"), *v;
        size_t i;
        def = sb->net->policy.default_allow ? "allow" : "deny";
        mode = "egress";
        json_array_foreach(json_object_get(eg, "allow"), i, v)
            json_array_append_new(rules, json_pack("{s:s, s:O}", "action", "allow", "target", v));
        json_array_foreach(json_object_get(eg, "deny"), i, v)
            json_array_append_new(rules, json_pack("{s:s, s:O}", "action", "deny", "target", v));
    }
    return json_pack("{s:s, s:s, s:s, s:{s:s, s:o}}", "status", "ok", "mode", mode, "enforcementMode",
                     "nftables", "policy", "defaultAction", def, "egress", rules);
}

/* GET /policy on the egress endpoint. */
static void egress_policy_get(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (sb)
        http_respond_json(c->req, 200, egress_policy_json(sb));
}

#define POLICY_ITEMS_MAX (2 * EGRESS_RULES_MAX) /* entries of a PATCH or DELETE body */

enum policy_op {
    POLICY_REPLACE, /* POST/PUT {defaultAction?, egress?[]} */
    POLICY_MERGE,   /* PATCH [{action, target}]: the incoming rule wins for its target */
    POLICY_REMOVE,  /* DELETE [target] */
};

/* Appends rule list r ([{action, target}]) to allow/deny, dropping earlier entries for the same targets. */
static int add_rules(json_t *r, json_t *allow, json_t *deny, const char *what, sbx_error *err)
{
    json_t *v;
    size_t i;
    json_array_foreach(r, i, v)
    {
        const char *action = json_string_value(json_object_get(v, "action"));
        const char *target = json_string_value(json_object_get(v, "target"));
        if (!action || !target || !*target || (strcmp(action, "allow") != 0 && strcmp(action, "deny") != 0))
            return sbx_error_set(err, -EINVAL, "`%s[%zu]` needs action (allow|deny) and a target", what, i);
        for (json_t *l = allow; l; l = l == allow ? deny : NULL)
            for (size_t k = json_array_size(l); k-- > 0;)
                if (strcasecmp(json_string_value(json_array_get(l, k)) ?: "", target) == 0)
                    json_array_remove(l, k);
        json_array_append_new(strcmp(action, "allow") == 0 ? allow : deny, json_string(target));
    }
    return 0;
}

/* Builds the new policy (sbx's {default, allow, deny}) from the current one and body, then applies it with
 * sandbox_set_egress (the same change as PATCHing the sandbox's network with the native API). */
static int policy_build(struct sandbox *sb, enum policy_op op, json_t *m, json_t **ret, sbx_error *err)
{
    json_auto_t *cur = egress_network_to_json(sb->net);
    json_t *eg = json_object_get(cur, "egress");
    bool def_allow = sb->net && sb->net->policy.default_allow;
    json_auto_t *allow = json_array(), *deny = json_array();
    if (op != POLICY_REPLACE) {
        if (!json_is_array(m))
            return sbx_error_set(err, -EINVAL, "the body must be a JSON array");
        if (json_array_size(m) > POLICY_ITEMS_MAX)
            return sbx_error_setk(err, -E2BIG, "too_large", 413, "at most %d entries per request",
                                  POLICY_ITEMS_MAX);
        json_array_extend(allow, json_object_get(eg, "allow") ?: json_array());
        json_array_extend(deny, json_object_get(eg, "deny") ?: json_array());
    }
    if (op == POLICY_REPLACE) {
        if (!json_is_object(m) && !json_is_null(m))
            return sbx_error_set(err, -EINVAL, "the body must be a policy object {defaultAction, egress}");
        json_t *d = json_object_get(m, "defaultAction"), *r = json_object_get(m, "egress");
        const char *def = json_string_value(d);
        if (d && !json_is_null(d) && (!def || (strcmp(def, "allow") != 0 && strcmp(def, "deny") != 0)))
            return sbx_error_set(err, -EINVAL, "`defaultAction` must be allow or deny");
        if (r && !json_is_null(r) && !json_is_array(r))
            return sbx_error_set(err, -EINVAL, "`egress` must be an array");
        /* Their rule: an empty (or null) policy allows everything; an omitted defaultAction is deny. */
        def_allow = def ? strcmp(def, "allow") == 0 : json_object_size(m) == 0;
        if (json_array_size(r) > POLICY_ITEMS_MAX)
            return sbx_error_setk(err, -E2BIG, "too_large", 413, "at most %d rules", POLICY_ITEMS_MAX);
        if (add_rules(r, allow, deny, "egress", err) < 0)
            return err->code;
    } else if (op == POLICY_MERGE) {
        if (add_rules(m, allow, deny, "rules", err) < 0)
            return err->code;
    } else {
        json_t *v;
        size_t i;
        json_array_foreach(m, i, v)
        {
            const char *target = json_string_value(v);
            if (!target || !*target)
                return sbx_error_set(err, -EINVAL, "`[%zu]` must be a non-empty target string", i);
            for (json_t *l = allow; l; l = l == allow ? deny : NULL)
                for (size_t k = json_array_size(l); k-- > 0;)
                    if (strcasecmp(json_string_value(json_array_get(l, k)) ?: "", target) == 0)
                        json_array_remove(l, k);
        }
    }
    *ret =
        json_pack("{s:s, s:O, s:O}", "default", def_allow ? "allow" : "deny", "allow", allow, "deny", deny);
    return 0;
}

static void policy_write(struct api_ctx *c, json_t *m, enum policy_op op)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    json_auto_t *native = NULL;
    struct egress_policy policy = {0};
    if (!sb->net)
        return os_reply(c->req, 409, "CONFLICT",
                        "sandbox `%s` was created without a networkPolicy (loopback only): its egress policy "
                        "cannot be changed",
                        sb->id);
    if (policy_build(sb, op, m, &native, &err) < 0 || egress_parse_policy(native, &policy, &err) < 0 ||
        sandbox_set_egress(c->d, sb, &policy, &err) < 0) {
        egress_policy_done(&policy);
        return os_reply_sbx(c->req, &err, OS_COMMANDS);
    }
    egress_policy_done(&policy);
    http_respond_json(c->req, 200, egress_policy_json(sb));
}

static void policy_replace_with_body(struct api_ctx *c, json_t *m)
{
    policy_write(c, m, POLICY_REPLACE);
}

static void policy_merge_with_body(struct api_ctx *c, json_t *m)
{
    policy_write(c, m, POLICY_MERGE);
}

static void policy_remove_with_body(struct api_ctx *c, json_t *m)
{
    policy_write(c, m, POLICY_REMOVE);
}

/* --- routing ---------------------------------------------------------------------------------------- */

/* The second path segment of rest ("/command/{id}/logs" → id) into c->command_id. */
static bool take_segment(struct api_ctx *c, const char *after, char *rest_out, size_t size)
{
    size_t n = strcspn(after, "/");
    if (n == 0 || n > SBX_ID_MAX)
        return false;
    free((char *)c->command_id);
    c->command_id = xstrndup(after, n);
    snprintf(rest_out, size, "%s", after + n);
    return true;
}

void os_execd_handle(struct api_ctx *c, const char *rest)
{
    const char *method = http_request_method(c->req);
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0,
         del = strcmp(method, "DELETE") == 0;
    char tail[64];
    if (strcmp(rest, "/ping") == 0 && get)
        return ping(c);
    if (strcmp(rest, "/metrics") == 0 && get)
        return metrics_get(c);
    if (strcmp(rest, "/metrics/watch") == 0 && get)
        return metrics_watch(c);
    if (strcmp(rest, "/command") == 0 && post)
        return os_read_json(c, command_with_body);
    if (strcmp(rest, "/command") == 0 && del)
        return command_interrupt(c);
    if (strncmp(rest, "/command/status/", 16) == 0 && get)
        return command_status(c, rest + 16);
    if (strncmp(rest, "/command/", 9) == 0 && get && take_segment(c, rest + 9, tail, sizeof(tail)) &&
        strcmp(tail, "/logs") == 0)
        return command_logs(c, c->command_id);
    if (strcmp(rest, "/session") == 0 && post)
        return os_read_json(c, session_create_with_body);
    if (strncmp(rest, "/session/", 9) == 0 && take_segment(c, rest + 9, tail, sizeof(tail))) {
        if (strcmp(tail, "/run") == 0 && post)
            return os_read_json(c, session_run_with_body);
        if (!tail[0] && del)
            return session_delete(c);
    }
    if (strcmp(rest, "/egress/policy") == 0 && get)
        return egress_policy_get(c);
    if (strcmp(rest, "/egress/policy") == 0 && (post || strcmp(method, "PUT") == 0))
        return os_read_json(c, policy_replace_with_body);
    if (strcmp(rest, "/egress/policy") == 0 && strcmp(method, "PATCH") == 0)
        return os_read_json(c, policy_merge_with_body);
    if (strcmp(rest, "/egress/policy") == 0 && del)
        return os_read_json(c, policy_remove_with_body);
    if (strcmp(rest, "/code/context") == 0 && post)
        return os_read_json(c, code_context_create_with_body);
    if (strcmp(rest, "/code/contexts") == 0 && (get || del))
        return code_contexts_list(c, del);
    if (strncmp(rest, "/code/contexts/", 15) == 0 && (get || del) &&
        take_segment(c, rest + 15, tail, sizeof(tail)) && !tail[0])
        return code_context_get(c, del);
    if (strcmp(rest, "/code") == 0 && post)
        return os_read_json(c, code_run_with_body);
    if (strcmp(rest, "/code") == 0 && del)
        return code_interrupt(c);
    if (strcmp(rest, "/pty") == 0 && post)
        return os_read_json(c, pty_create_with_body);
    if (strncmp(rest, "/pty/", 5) == 0 && take_segment(c, rest + 5, tail, sizeof(tail))) {
        if (!tail[0] && get)
            return pty_get(c);
        if (!tail[0] && del)
            return pty_delete(c);
        if (strcmp(tail, "/ws") == 0 && get)
            return pty_connect(c);
    }
    if (os_files_handle(c, method, rest))
        return;
    os_reply(c->req, 404, "NOT_FOUND", "%s %s is not part of sbx's execd", method, rest);
}
