/* OpenSandbox's execd API for one sandbox, served by sbxd at the sandbox's execd endpoint
 * ({host}/opensandbox/sandboxes/{id}/proxy/44772): /ping, /metrics, /command (sbx commands run by the
 * sandbox's shim, streamed as execd's JSON-lines event stream), command status, logs by byte cursor and
 * interrupt, and bash sessions (state kept in the sandbox, each run an sbx command). Files are
 * opensandbox_files.c. Shapes only; docs/compat/opensandbox.md. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/codec.h"
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
};

static void run_free(struct run *r)
{
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

/* Splits output of stream s into lines: '\n' and '\r' end one ("\r\n" once), a blank line is "\n", and a
 * line longer than LINE_MAX_BYTES goes in pieces (cut before a UTF-8 continuation byte). */
static bool forward_output(struct run *r, int s, const char *data, size_t len)
{
    bool slow = false;
    struct sbx_buf *b = &r->line[s];
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (ch == '\n' && r->after_cr[s]) {
            r->after_cr[s] = false;
            continue;
        }
        r->after_cr[s] = ch == '\r';
        if (ch == '\n' || ch == '\r') {
            slow |= send_text(r, s, b->base, b->len) > 0;
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
            slow |= send_text(r, s, b->base, cut) > 0;
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

static void ping(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (sb)
        os_reply_empty(c->req, 200);
}

/* GET /policy on the egress endpoint: the sandbox's sbx egress policy in their shape (read only). */
static void egress_policy_get(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    json_t *rules = json_array();
    const char *def = "allow", *mode = "none";
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
    /* Without egress mode a sandbox has loopback only: nothing outside is reachable. */
    if (!sb->net)
        def = "deny";
    http_respond_json(c->req, 200,
                      json_pack("{s:s, s:s, s:s, s:{s:s, s:o}}", "status", "ok", "mode", mode,
                                "enforcementMode", "nftables", "policy", "defaultAction", def, "egress",
                                rules));
}

/* --- routing ---------------------------------------------------------------------------------------- */

static void execd_not_supported(struct api_ctx *c, const char *what)
{
    os_reply(c->req, 501, "NOT_SUPPORTED", "%s is not supported by sbx's execd (docs/compat/opensandbox.md)",
             what);
}

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
    if (strcmp(rest, "/metrics/watch") == 0)
        return execd_not_supported(c, "/metrics/watch (poll /metrics)");
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
    if (strcmp(rest, "/egress/policy") == 0)
        return execd_not_supported(
            c, "changing the egress policy here (PATCH the sandbox's network with the native "
               "API)");
    if (strncmp(rest, "/code", 5) == 0)
        return execd_not_supported(c, "code-interpreter contexts (/code)");
    if (strncmp(rest, "/pty", 4) == 0)
        return execd_not_supported(c, "/pty (use the native API's pty commands)");
    if (os_files_handle(c, method, rest))
        return;
    os_reply(c->req, 404, "NOT_FOUND", "%s %s is not part of sbx's execd", method, rest);
}
