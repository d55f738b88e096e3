/* /v1/sandboxes/{id}/commands: start, inspect, stream (wait, SSE, WebSocket), stdin, signals, and the
 * combined log read from a byte cursor. The lifecycle timers (ttl_seconds, idle_timeout,
 * kill_on_disconnect) are validated here and enforced by the shim, which outlives sbxd. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/codec.h"
#include "api/internal.h"
#include "api/jsonreq.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/daemon.h"
#include "daemon/metrics.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "loop/loop.h"
#include "shimclient/shim_client.h"
#include "shimclient/shim_protocol.h"

#define COMMAND_MAX_BYTES (128 * 1024)
#define ARGV_MAX_ENTRIES 4096
#define ENV_MAX_ENTRIES 1024
#define ENV_MAX_ENTRY (32 * 1024)
#define STDIN_FIELD_MAX (1u << 20)
#define STDIN_BODY_MAX (2u << 20)
#define WAIT_CAPTURE_MAX (16u << 20)
#define TIMEOUT_MAX_SEC (365.0 * 24 * 3600)
#define SHIM_READ_CHUNK (64 * 1024)
#define SHIM_WRITE_MAX (8u << 20)
#define LIFETIME_MAX_SEC (366.0 * 24 * 3600) /* the shim's TIMER_MAX_MS */
#define GRACE_MAX_SEC 300.0
#define LOGS_LIMIT_MAX (1u << 20) /* the shim's */
#define PTY_SIZE_MAX 1000         /* the shim's: largest pty cols/rows */

static const char *const default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "TERM=xterm",
    "LANG=C.UTF-8",
};

/* --- the command object ------------------------------------------------------------------------ */

static json_t *seconds_or_never(json_t *ms)
{
    if (!json_is_integer(ms))
        return json_null();
    json_int_t v = json_integer_value(ms);
    return v < 0 ? json_integer(-1) : json_real((double)v / 1000.0);
}

/* The public command object (docs/api.md) for a shim status, with the lifecycle fields; a new
 * reference. */
static json_t *command_json(const char *sandbox_id, json_t *st)
{
    json_t *c = command_json_from_shim(sandbox_id, st);
    json_object_set_new(c, "ttl_seconds", seconds_or_never(json_object_get(st, "ttl_ms")));
    json_object_set_new(c, "idle_timeout", seconds_or_never(json_object_get(st, "idle_timeout_ms")));
    json_object_set_new(c, "kill_on_disconnect",
                        json_boolean(json_is_true(json_object_get(st, "kill_on_disconnect"))));
    json_object_set_new(c, "disconnect_grace", seconds_or_never(json_object_get(st, "disconnect_grace_ms")));
    json_t *v = json_object_get(st, "attached");
    json_object_set_new(c, "attached", json_integer(json_integer_value(v)));
    json_object_set_new(c, "log_bytes", json_integer(json_integer_value(json_object_get(st, "log_bytes"))));
    json_object_set_new(c, "pty", json_boolean(json_is_true(json_object_get(st, "pty"))));
    v = json_object_get(st, "expires_at_ms");
    if (json_is_integer(v)) {
        char buf[40];
        format_time_ms(buf, sizeof(buf), json_integer_value(v));
        json_object_set_new(c, "expires_at", json_string(buf));
    } else {
        json_object_set_new(c, "expires_at", json_null());
    }
    return c;
}

/* --- request → shim exec request ---------------------------------------------------------------- */

static int build_argv(json_t *body, json_t **ret, sbx_error *err)
{
    json_t *cmd = json_object_get(body, "command");
    if (!cmd || json_is_null(cmd))
        return sbx_error_set(err, -EINVAL, "`command` is required");
    if (json_is_string(cmd)) {
        const char *s;
        if (jsonreq_string(body, "command", COMMAND_MAX_BYTES, &s, err) < 0)
            return err->code;
        if (!*s)
            return sbx_error_set(err, -EINVAL, "`command` must not be empty");
        *ret = json_pack("[s,s,s]", "/bin/sh", "-c", s);
        return 0;
    }
    if (!json_is_array(cmd))
        return sbx_error_set(err, -EINVAL, "`command` must be a string or an array of strings");
    size_t n = json_array_size(cmd), total = 0;
    if (n == 0)
        return sbx_error_set(err, -EINVAL, "`command` must not be empty");
    if (n > ARGV_MAX_ENTRIES)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`command` has more than %d entries",
                              ARGV_MAX_ENTRIES);
    size_t i;
    json_t *v;
    json_array_foreach(cmd, i, v)
    {
        if (!json_is_string(v))
            return sbx_error_set(err, -EINVAL, "`command[%zu]` must be a string", i);
        size_t len = json_string_length(v);
        if (strlen(json_string_value(v)) != len)
            return sbx_error_set(err, -EINVAL, "`command[%zu]` must not contain NUL characters", i);
        total += len + 1;
    }
    if (total > COMMAND_MAX_BYTES)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`command` is longer than %d bytes",
                              COMMAND_MAX_BYTES);
    if (json_string_length(json_array_get(cmd, 0)) == 0)
        return sbx_error_set(err, -EINVAL, "`command[0]` must not be empty");
    *ret = json_incref(cmd);
    return 0;
}

/* Default env, then the sandbox's, then the request's: later keys win. A pty command's default TERM is
 * xterm-256color (what terminals attached to it speak); the sandbox's or the request's TERM still win. */
static json_t *build_env(json_t *sandbox_env, json_t *request_env, bool pty)
{
    json_t *merged = json_object();
    for (size_t i = 0; i < ELEMENTSOF(default_env); i++) {
        const char *eq = strchr(default_env[i], '=');
        _cleanup_free_ char *k = xstrndup(default_env[i], (size_t)(eq - default_env[i]));
        json_object_set_new(merged, k, json_string(eq + 1));
    }
    if (pty)
        json_object_set_new(merged, "TERM", json_string("xterm-256color"));
    if (sandbox_env)
        json_object_update(merged, sandbox_env);
    if (request_env)
        json_object_update(merged, request_env);
    json_t *arr = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(merged, k, v)
    {
        _cleanup_free_ char *kv = xasprintf("%s=%s", k, json_string_value(v));
        json_array_append_new(arr, json_string(kv));
    }
    json_decref(merged);
    return arr;
}

/* A lifetime in seconds (fractions allowed) for the shim in ms: -1 = never (when never_ok), 0 only when
 * zero_ok, else up to LIFETIME_MAX_SEC. Absent leaves *ret_ms (the caller's "not sent") alone. */
static int lifetime_field(json_t *body, const char *key, bool never_ok, bool zero_ok, double max,
                          json_int_t *ret_ms, sbx_error *err)
{
    double v = 0;
    int r = jsonreq_number(body, key, never_ok ? -1 : 0, max, &v, err);
    if (r <= 0)
        return r;
    if (v == -1) {
        *ret_ms = -1;
        return 1;
    }
    json_int_t ms = (json_int_t)(v * 1000.0 + 0.5);
    if (v < 0 || (ms == 0 && !zero_ok) || (v > 0 && ms == 0))
        return sbx_error_set(err, -EINVAL, "`%s` must be %s%s to %g seconds (at least 0.001)", key,
                             never_ok ? "-1 (never) or " : "", zero_ok ? "0" : "more than 0", max);
    *ret_ms = ms;
    return 1;
}

/* ttl_seconds, idle_timeout, kill_on_disconnect and disconnect_grace as the shim's exec fields; fields
 * not sent get the shim's defaults. */
static int add_lifecycle(json_t *body, json_t *req, sbx_error *err)
{
    json_int_t ttl = -2, idle = -2, grace = -2;
    bool kod = false;
    if (lifetime_field(body, "ttl_seconds", true, true, LIFETIME_MAX_SEC, &ttl, err) < 0 ||
        lifetime_field(body, "idle_timeout", true, false, LIFETIME_MAX_SEC, &idle, err) < 0 ||
        lifetime_field(body, "disconnect_grace", false, true, GRACE_MAX_SEC, &grace, err) < 0 ||
        jsonreq_bool(body, "kill_on_disconnect", &kod, err) < 0)
        return err->code;
    if (ttl != -2)
        json_object_set_new(req, "ttl_ms", json_integer(ttl));
    if (idle != -2)
        json_object_set_new(req, "idle_timeout_ms", json_integer(idle));
    if (grace != -2)
        json_object_set_new(req, "disconnect_grace_ms", json_integer(grace));
    json_object_set_new(req, "kill_on_disconnect", json_boolean(kod));
    return 0;
}

/* A user name as useradd allows it ([A-Za-z0-9_.-], not starting with '-'), a uid, or UID:GID. */
static bool user_is_valid(const char *u)
{
    size_t n = strlen(u);
    if (n == 0 || n > 32 || u[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') || (u[i] >= '0' && u[i] <= '9') ||
              u[i] == '_' || u[i] == '.' || u[i] == '-' || u[i] == ':'))
            return false;
    return true;
}

int api_command_exec_request(struct sandbox *sb, json_t *body, json_t **ret, bool *ret_wait, sbx_error *err)
{
    const char *id = NULL, *cwd = snapshot_default_cwd(sb->d, sb->snapshot), *stdin_data = NULL;
    const char *user = snapshot_default_user(sb->d, sb->snapshot);
    json_t *env = NULL;
    double timeout = 0;
    bool wait = false, stdin_open = false;
    if (jsonreq_string(body, "id", SBX_ID_MAX, &id, err) < 0 ||
        jsonreq_string(body, "cwd", PATH_MAX, &cwd, err) < 0 ||
        jsonreq_string(body, "user", 256, &user, err) < 0 ||
        jsonreq_string(body, "stdin", STDIN_FIELD_MAX, &stdin_data, err) < 0 ||
        jsonreq_string_map(body, "env", ENV_MAX_ENTRIES, ENV_MAX_ENTRY, &env, err) < 0 ||
        jsonreq_number(body, "timeout", 0, TIMEOUT_MAX_SEC, &timeout, err) < 0 ||
        jsonreq_bool(body, "wait", &wait, err) < 0 || jsonreq_bool(body, "stdin_open", &stdin_open, err) < 0)
        return err->code;
    if (id && !id_is_valid(id))
        return sbx_error_set(err, -EINVAL, "`id` must match [A-Za-z0-9_.-]{1,64}");
    /* A terminal is interactive: its stdin stays open unless the request says otherwise. */
    bool pty = false;
    int64_t cols = 80, rows = 24;
    if (jsonreq_bool(body, "pty", &pty, err) < 0 ||
        jsonreq_integer(body, "cols", 1, PTY_SIZE_MAX, &cols, err) < 0 ||
        jsonreq_integer(body, "rows", 1, PTY_SIZE_MAX, &rows, err) < 0)
        return err->code;
    if (pty && !json_object_get(body, "stdin_open"))
        stdin_open = true;
    if (cwd[0] != '/')
        return sbx_error_set(err, -EINVAL, "`cwd` must be an absolute path");
    if (user && !user_is_valid(user))
        return sbx_error_set(err, -EINVAL, "`user` must be a user name, UID or UID:GID (at most 32 bytes)");
    json_t *argv = NULL;
    int r = build_argv(body, &argv, err);
    if (r < 0)
        return r;
    char gen[SBX_ID_MAX + 1];
    if (!id) {
        id_generate(gen, sizeof(gen), "cmd_");
        id = gen;
    }
    json_t *req = json_pack("{s:s, s:s, s:o, s:o, s:s, s:I, s:b}", "op", "exec", "id", id, "argv", argv,
                            "env", build_env(sb->env, env, pty), "cwd", cwd, "timeout_ms",
                            (json_int_t)(timeout * 1000.0), "stdin_open", stdin_open);
    if (pty) {
        json_object_set_new(req, "pty", json_true());
        json_object_set_new(req, "cols", json_integer(cols));
        json_object_set_new(req, "rows", json_integer(rows));
    }
    if (user && strcmp(user, "root") != 0 && strcmp(user, "0") != 0) {
        json_object_set_new(req, "user", json_string(user));
        /* Another user cannot enter root's home, the `host` default: it starts in its own home. */
        if (!json_object_get(body, "cwd") && strcmp(cwd, "/root") == 0)
            json_object_set_new(req, "cwd", json_null());
    }
    if (stdin_data) {
        _cleanup_free_ char *b64 = base64_encode(stdin_data, strlen(stdin_data));
        json_object_set_new(req, "stdin_b64", json_string(b64));
    }
    if (add_lifecycle(body, req, err) < 0) {
        json_decref(req);
        return err->code;
    }
    /* We attach right after the answer: the shim holds its timers for us until then. */
    json_object_set_new(req, "will_attach", json_boolean(wait));
    *ret = req;
    *ret_wait = wait;
    return 0;
}

/* --- attachments: one shim stream forwarded to one HTTP client ---------------------------------- */

enum attach_mode {
    ATTACH_WAIT, /* collect everything, answer once at exit */
    ATTACH_SSE,
    ATTACH_WS,
};

struct attach {
    struct loop_io io;
    struct daemon *d;
    enum attach_mode mode;
    int fd;
    struct http_request *req; /* WAIT and SSE */
    struct http_ws *ws;       /* WS */
    char sandbox_id[SBX_ID_MAX + 1];
    struct sandbox *sb; /* attached (sandbox_attach): it is not idle while this client streams */
    struct sbx_buf in;  /* bytes from the shim not yet parsed */
    struct sbx_buf out; /* frames to the shim not yet written (WS stdin) */
    struct sbx_buf capture[2];
    bool truncated[2];
    bool paused;   /* the client is slow: not reading the shim until it drains */
    bool finished; /* EXIT seen or the stream failed; the client side is done or closing */
    int watched;   /* epoll events currently requested */
};

static void attach_free(struct attach *a)
{
    if (a->watched)
        loop_io_stop(a->d->loop, &a->io);
    if (a->fd >= 0)
        close(a->fd);
    sbx_buf_done(&a->in);
    sbx_buf_done(&a->out);
    sbx_buf_done(&a->capture[0]);
    sbx_buf_done(&a->capture[1]);
    if (a->sb) {
        sandbox_detach(a->sb);
        sandbox_unref(a->sb);
    }
    free(a);
}

static void attach_update_watch(struct attach *a)
{
    int want = 0;
    if (!a->paused && !a->finished)
        want |= EPOLLIN;
    if (a->out.len > 0 && !a->finished)
        want |= EPOLLOUT;
    if (want == a->watched)
        return;
    if (a->watched && want)
        loop_io_update(a->d->loop, &a->io, (uint32_t)want);
    else if (want)
        loop_io_start(a->d->loop, &a->io, a->fd, (uint32_t)want, NULL);
    else
        loop_io_stop(a->d->loop, &a->io);
    a->watched = want;
}

static void send_exit(struct attach *a, json_t *status)
{
    json_t *cmd = command_json(a->sandbox_id, status);
    switch (a->mode) {
    case ATTACH_WAIT:
        for (int s = 0; s < 2; s++) {
            const char *key = s == 0 ? "stdout" : "stderr";
            char enc[32], trunc[32];
            snprintf(enc, sizeof(enc), "%s_encoding", key);
            snprintf(trunc, sizeof(trunc), "%s_truncated", key);
            json_set_bytes(cmd, key, enc, a->capture[s].base, a->capture[s].len);
            if (a->truncated[s])
                json_object_set_new(cmd, trunc, json_true());
        }
        api_reply_json(a->req, 200, cmd);
        break;
    case ATTACH_SSE: {
        _cleanup_free_ char *text = json_dumps(cmd, JSON_COMPACT);
        json_decref(cmd);
        http_sse_send(a->req, "exit", text, strlen(text));
        http_response_end(a->req);
        break;
    }
    case ATTACH_WS: {
        json_object_set_new(cmd, "type", json_string("exit"));
        _cleanup_free_ char *text = json_dumps(cmd, JSON_COMPACT);
        json_decref(cmd);
        http_ws_send_text(a->ws, text, strlen(text));
        http_ws_close(a->ws, 1000, "command exited");
        break;
    }
    default:
        json_decref(cmd);
        break;
    }
}

/* The shim closed the stream without an exit frame (its sandbox was deleted, or it crashed). */
static void send_failure(struct attach *a, const char *why)
{
    sbx_error err = {0};
    sbx_error_setk(&err, -EPIPE, "unavailable", 503, "output stream ended: %s", why);
    switch (a->mode) {
    case ATTACH_WAIT:
        api_reply_error(a->req, &err);
        break;
    case ATTACH_SSE: {
        _cleanup_free_ char *text = xasprintf("{\"code\":\"unavailable\",\"message\":\"%s\"}", why);
        http_sse_send(a->req, "error", text, strlen(text));
        http_response_end(a->req);
        break;
    }
    case ATTACH_WS:
        http_ws_close(a->ws, 1011, why);
        break;
    default:
        break;
    }
}

/* Forwards one DATA frame. Returns true when the client wants us to slow down. */
static bool forward_data(struct attach *a, int stream, uint64_t offset, const uint8_t *data, size_t len)
{
    switch (a->mode) {
    case ATTACH_WAIT: {
        struct sbx_buf *b = &a->capture[stream == SHIM_STREAM_STDERR];
        size_t room = b->len < WAIT_CAPTURE_MAX ? WAIT_CAPTURE_MAX - b->len : 0;
        if (len > room)
            a->truncated[stream == SHIM_STREAM_STDERR] = true;
        sbx_buf_append(b, data, len < room ? len : room);
        return false;
    }
    case ATTACH_SSE: {
        json_t *ev = output_event_json(stream, offset, data, len, false);
        _cleanup_free_ char *text = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
        return http_sse_send(a->req, "output", text, strlen(text)) > 0;
    }
    case ATTACH_WS: {
        json_t *ev = output_event_json(stream, offset, data, len, true);
        _cleanup_free_ char *text = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
        return http_ws_send_text(a->ws, text, strlen(text)) > 0;
    }
    default:
        return false;
    }
}

/* Parses and forwards every complete frame in a->in. */
static void process_frames(struct attach *a)
{
    size_t pos = 0;
    while (!a->finished && !a->paused) {
        struct shim_frame f;
        long n = shim_frame_parse((const uint8_t *)a->in.base + pos, a->in.len - pos, &f);
        if (n == 0)
            break;
        if (n < 0) {
            a->finished = true;
            send_failure(a, "malformed frame from shim");
            break;
        }
        pos += (size_t)n;
        if (f.type == SHIM_FRAME_DATA && f.len >= 9) {
            uint64_t off = 0;
            for (int i = 0; i < 8; i++)
                off |= (uint64_t)f.payload[1 + i] << (8 * i);
            if (forward_data(a, f.payload[0], off, f.payload + 9, f.len - 9))
                a->paused = true;
        } else if (f.type == SHIM_FRAME_EXIT) {
            json_t *status = json_loadb((const char *)f.payload, f.len, 0, NULL);
            a->finished = true;
            if (status)
                send_exit(a, status);
            else
                send_failure(a, "malformed exit from shim");
            json_decref(status);
        } else if (f.type == SHIM_FRAME_RESPONSE) {
            /* An error answer to the attach request itself. */
            json_t *resp = json_loadb((const char *)f.payload, f.len, 0, NULL);
            json_t *e = json_object_get(resp, "error");
            a->finished = true;
            send_failure(a, e ? json_string_value(json_object_get(e, "message")) ?: "attach failed"
                              : "attach failed");
            json_decref(resp);
        }
    }
    sbx_buf_consume(&a->in, pos);
}

static void attach_on_io(struct loop_io *io, uint32_t revents);

/* Writes and reads what it can; may free a (callers must not touch it afterwards). */
static void attach_pump(struct attach *a)
{
    if (a->out.len > 0) {
        ssize_t n = write(a->fd, a->out.base, a->out.len);
        if (n > 0)
            sbx_buf_consume(&a->out, (size_t)n);
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            a->out.len = 0; /* the shim is gone; reading will tell the client */
    }
    process_frames(a);
    if (a->finished && a->mode != ATTACH_WS) {
        /* The response is complete (exit or failure sent): the server forgets the request without an
         * on_abort, so the stream to the shim ends here. A WebSocket ends in ws_on_close instead. */
        attach_free(a);
        return;
    }
    attach_update_watch(a);
}

static void attach_on_io(struct loop_io *io, uint32_t revents)
{
    struct attach *a = container_of(io, struct attach, io);
    if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (int i = 0; i < 16 && !a->paused && !a->finished; i++) {
            char *p = sbx_buf_reserve(&a->in, SHIM_READ_CHUNK);
            ssize_t n = read(a->fd, p, SHIM_READ_CHUNK);
            if (n > 0) {
                a->in.len += (size_t)n;
                process_frames(a);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            process_frames(a);
            if (!a->finished) {
                a->finished = true;
                send_failure(a, "the sandbox's shim closed the stream");
            }
            break;
        }
    }
    attach_pump(a);
}

/* The HTTP side is gone (client disconnected) or done: release the shim stream. */
static void attach_on_abort(struct http_request *req, void *userdata)
{
    attach_free(userdata);
}

static void attach_on_drain(struct http_request *req, void *userdata)
{
    struct attach *a = userdata;
    a->paused = false;
    attach_pump(a);
}

static void queue_to_shim(struct attach *a, uint8_t type, const void *payload, size_t len)
{
    if (a->out.len + len > SHIM_WRITE_MAX) {
        http_ws_close(a->ws, 1009, "stdin backlog too large");
        return;
    }
    uint8_t hdr[SHIM_FRAME_HEADER];
    shim_frame_header(hdr, type, (uint32_t)len);
    sbx_buf_append(&a->out, hdr, sizeof(hdr));
    sbx_buf_append(&a->out, payload, len);
    attach_pump(a);
}

static void ws_on_text(struct http_ws *ws, const char *data, size_t len, void *userdata)
{
    struct attach *a = userdata;
    json_t *m = json_loadb(data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!type) {
        http_ws_close(ws, 1003, "expected a JSON object with a type");
    } else if (strcmp(type, "stdin") == 0) {
        const char *s = json_string_value(json_object_get(m, "data"));
        const char *enc = json_string_value(json_object_get(m, "encoding"));
        if (!s) {
            http_ws_close(ws, 1003, "stdin needs data");
        } else if (enc && strcmp(enc, "base64") == 0) {
            size_t slen = strlen(s);
            _cleanup_free_ uint8_t *raw = xmalloc(slen / 4 * 3 + 3);
            long n = base64_decode(s, slen, raw);
            if (n < 0)
                http_ws_close(ws, 1003, "invalid base64");
            else
                queue_to_shim(a, SHIM_FRAME_STDIN, raw, (size_t)n);
        } else {
            queue_to_shim(a, SHIM_FRAME_STDIN, s, json_string_length(json_object_get(m, "data")));
        }
    } else if (strcmp(type, "close_stdin") == 0) {
        static const char req[] = "{\"op\":\"close_stdin\"}";
        queue_to_shim(a, SHIM_FRAME_REQUEST, req, sizeof(req) - 1);
    } else if (strcmp(type, "resize") == 0) {
        json_t *cols = json_object_get(m, "cols"), *rows = json_object_get(m, "rows");
        json_int_t w = json_integer_value(cols), h = json_integer_value(rows);
        if (!json_is_integer(cols) || !json_is_integer(rows) || w < 1 || w > PTY_SIZE_MAX || h < 1 ||
            h > PTY_SIZE_MAX) {
            http_ws_close(ws, 1003, "resize needs integer cols and rows in 1..1000");
        } else {
            /* No answer on an attached stream: a command without a pty ignores it. */
            _cleanup_free_ char *req =
                xasprintf("{\"op\":\"resize\",\"cols\":%d,\"rows\":%d}", (int)w, (int)h);
            queue_to_shim(a, SHIM_FRAME_REQUEST, req, strlen(req));
        }
    } else if (strcmp(type, "signal") == 0) {
        int sig = signal_from_json(json_object_get(m, "signal"));
        if (sig < 0) {
            http_ws_close(ws, 1003, "unknown signal");
        } else {
            _cleanup_free_ char *req = xasprintf("{\"op\":\"signal\",\"signal\":%d}", sig);
            queue_to_shim(a, SHIM_FRAME_REQUEST, req, strlen(req));
        }
    } else {
        http_ws_close(ws, 1003, "unknown message type");
    }
    json_decref(m);
}

static void ws_on_binary(struct http_ws *ws, const char *data, size_t len, void *userdata)
{
    queue_to_shim(userdata, SHIM_FRAME_STDIN, data, len);
}

static void ws_on_drain(struct http_ws *ws, void *userdata)
{
    struct attach *a = userdata;
    a->paused = false;
    attach_pump(a);
}

static void ws_on_close(struct http_ws *ws, int code, void *userdata)
{
    attach_free(userdata);
}

static const struct http_ws_callbacks ws_callbacks = {
    .on_text = ws_on_text,
    .on_binary = ws_on_binary,
    .on_drain = ws_on_drain,
    .on_close = ws_on_close,
};

/* Connects to the command's output and starts forwarding it to the client in the given mode. */
static void attach_start(struct api_ctx *c, struct sandbox *sb, const char *cid, enum attach_mode mode,
                         uint64_t stdout_off, uint64_t stderr_off)
{
    sbx_error err = {0};
    int fd;
    if (shim_attach(sb->state_dir, cid, stdout_off, stderr_off, &fd, &err) < 0)
        return api_reply_error(c->req, &err);
    struct attach *a = xcalloc(1, sizeof(*a));
    a->d = c->d;
    a->mode = mode;
    a->fd = fd;
    a->io.cb = attach_on_io;
    snprintf(a->sandbox_id, sizeof(a->sandbox_id), "%s", sb->id);
    a->sb = sandbox_ref(sb);
    sandbox_attach(sb);
    if (mode == ATTACH_WS) {
        if (http_websocket_accept(c->req, &ws_callbacks, a, &a->ws) < 0) {
            attach_free(a);
            return; /* the server answered the failed handshake */
        }
    } else {
        a->req = c->req;
        http_request_on_abort(c->req, attach_on_abort, a);
        if (mode == ATTACH_SSE) {
            http_request_on_drain(c->req, attach_on_drain, a);
            http_sse_begin(c->req);
        }
    }
    attach_update_watch(a);
}

/* --- handlers ----------------------------------------------------------------------------------- */

static void exec_with_body(struct api_ctx *c, json_t *body)
{
    struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return;
    sbx_error err = {0};
    json_t *req = NULL, *resp = NULL;
    bool wait = false;
    if (api_command_exec_request(sb, body, &req, &wait, &err) < 0 ||
        sandbox_shim_call(sb, req, &resp, &err) < 0) {
        api_reply_error(c->req, &err);
        goto out;
    }
    json_t *status = json_object_get(resp, "command");
    bool created = json_is_true(json_object_get(resp, "created"));
    if (created)
        metrics_count(METRICS_COMMANDS_STARTED);
    if (wait)
        attach_start(c, sb, json_string_value(json_object_get(status, "id")), ATTACH_WAIT, 0, 0);
    else
        api_reply_json(c->req, created ? 201 : 200, command_json(sb->id, status));
out:
    json_decref(req);
    json_decref(resp);
    sandbox_unref(sb);
}

void api_commands_create(struct api_ctx *c)
{
    api_read_json(c, exec_with_body);
}

/* One simple request to the shim about command {cid}; answers with the command object or 204. */
static void simple_call(struct api_ctx *c, json_t *req, bool reply_command)
{
    struct sandbox *sb = api_sandbox_awake(c);
    if (!sb) {
        json_decref(req);
        return;
    }
    sbx_error err = {0};
    json_t *resp = NULL;
    if (sandbox_shim_call(sb, req, &resp, &err) < 0)
        api_reply_error(c->req, &err);
    else if (reply_command)
        api_reply_json(c->req, 200, command_json(sb->id, json_object_get(resp, "command")));
    else
        api_reply_json(c->req, 204, NULL);
    json_decref(req);
    json_decref(resp);
    sandbox_unref(sb);
}

void api_commands_get(struct api_ctx *c)
{
    simple_call(c, json_pack("{s:s, s:s}", "op", "status", "id", c->command_id), true);
}

void api_commands_list(struct api_ctx *c)
{
    struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return;
    sbx_error err = {0};
    json_t *req = json_pack("{s:s}", "op", "list"), *resp = NULL;
    if (sandbox_shim_call(sb, req, &resp, &err) < 0) {
        api_reply_error(c->req, &err);
    } else {
        json_t *out = json_array(), *v;
        size_t i;
        json_array_foreach(json_object_get(resp, "commands"), i, v)
            json_array_append_new(out, command_json(sb->id, v));
        api_reply_json(c->req, 200, json_pack("{s:o}", "commands", out));
    }
    json_decref(req);
    json_decref(resp);
    sandbox_unref(sb);
}

static int query_offset(struct http_request *req, const char *name, uint64_t *ret, sbx_error *err)
{
    const char *v = http_query_get(req, name);
    *ret = 0;
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || v[0] == '-')
        return sbx_error_set(err, -EINVAL, "`%s` must be a non-negative integer", name);
    *ret = n;
    return 0;
}

void api_commands_stream(struct api_ctx *c)
{
    sbx_error err = {0};
    uint64_t out_off, err_off;
    if (query_offset(c->req, "stdout_offset", &out_off, &err) < 0 ||
        query_offset(c->req, "stderr_offset", &err_off, &err) < 0)
        return api_reply_error(c->req, &err);
    struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return;
    /* Check the command exists first so a bad id is a clean 404, not a broken stream. */
    json_t *req = json_pack("{s:s, s:s}", "op", "status", "id", c->command_id), *resp = NULL;
    if (sandbox_shim_call(sb, req, &resp, &err) < 0)
        api_reply_error(c->req, &err);
    else
        attach_start(c, sb, c->command_id, http_request_is_websocket(c->req) ? ATTACH_WS : ATTACH_SSE,
                     out_off, err_off);
    json_decref(req);
    json_decref(resp);
    sandbox_unref(sb);
}

/* --- the combined log ---------------------------------------------------------------------------- */

/* The shim's logs answer as the public JSON: segments with their stream, stream offset and cursor. */
static json_t *logs_json(const char *sandbox_id, json_t *resp, const uint8_t *data, size_t len)
{
    json_t *status = json_object_get(resp, "command"), *chunks = json_array(), *v;
    size_t i, pos = 0;
    json_array_foreach(json_object_get(resp, "chunks"), i, v)
    {
        size_t n = (size_t)json_integer_value(json_object_get(v, "len"));
        if (n > len - pos)
            break; /* cannot happen with a sane shim */
        json_t *ch = json_pack(
            "{s:s, s:O, s:O}", "stream",
            json_integer_value(json_object_get(v, "stream")) == SHIM_STREAM_STDERR ? "stderr" : "stdout",
            "offset", json_object_get(v, "offset"), "cursor", json_object_get(v, "cursor"));
        json_set_bytes(ch, "data", "encoding", data + pos, n);
        json_array_append_new(chunks, ch);
        pos += n;
    }
    bool finished = strcmp(json_string_value(json_object_get(status, "state")) ?: "", "exited") == 0;
    json_int_t next = json_integer_value(json_object_get(resp, "next_cursor"));
    json_int_t total = json_integer_value(json_object_get(resp, "log_bytes"));
    return json_pack("{s:O, s:I, s:I, s:b, s:b, s:o, s:o}", "cursor", json_object_get(resp, "cursor"),
                     "next_cursor", next, "log_bytes", total, "finished", finished, "eof",
                     finished && next == total, "chunks", chunks, "command",
                     command_json(sandbox_id, status));
}

/* The same as raw bytes, the rest in headers (curl -D- friendly). */
static void logs_raw(struct http_request *req, json_t *resp, const uint8_t *data, size_t len)
{
    json_t *status = json_object_get(resp, "command");
    bool finished = strcmp(json_string_value(json_object_get(status, "state")) ?: "", "exited") == 0;
    json_int_t next = json_integer_value(json_object_get(resp, "next_cursor"));
    json_int_t total = json_integer_value(json_object_get(resp, "log_bytes"));
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(json_object_get(resp, "cursor")));
    http_response_header(req, "Sbx-Cursor", buf);
    snprintf(buf, sizeof(buf), "%lld", (long long)next);
    http_response_header(req, "Sbx-Next-Cursor", buf);
    snprintf(buf, sizeof(buf), "%lld", (long long)total);
    http_response_header(req, "Sbx-Log-Bytes", buf);
    http_response_header(req, "Sbx-Finished", finished ? "true" : "false");
    http_response_header(req, "Sbx-Eof", finished && next == total ? "true" : "false");
    json_t *code = json_object_get(status, "exit_code");
    if (json_is_integer(code)) {
        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(code));
        http_response_header(req, "Sbx-Exit-Code", buf);
    }
    http_respond(req, 200, "application/octet-stream", data, len);
}

static int query_limit(struct http_request *req, uint64_t *ret, sbx_error *err)
{
    const char *v = http_query_get(req, "limit");
    if (!v)
        return 0;
    uint64_t n;
    if (query_offset(req, "limit", &n, err) < 0 || n < 1 || n > LOGS_LIMIT_MAX)
        return sbx_error_set(err, -EINVAL, "`limit` must be an integer in 1..%u", LOGS_LIMIT_MAX);
    *ret = n;
    return 1;
}

void api_commands_logs(struct api_ctx *c)
{
    sbx_error err = {0};
    uint64_t cursor = 0, limit = 0;
    const char *format = http_query_get(c->req, "format");
    if (query_offset(c->req, "cursor", &cursor, &err) < 0 || query_limit(c->req, &limit, &err) < 0)
        return api_reply_error(c->req, &err);
    if (cursor > INT64_MAX) {
        sbx_error_set(&err, -EINVAL, "`cursor` is out of range");
        return api_reply_error(c->req, &err);
    }
    bool raw = format && strcmp(format, "raw") == 0;
    if (format && !raw && strcmp(format, "json") != 0) {
        sbx_error_set(&err, -EINVAL, "`format` must be `json` or `raw`");
        return api_reply_error(c->req, &err);
    }
    struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return;
    json_t *req =
        json_pack("{s:s, s:s, s:I}", "op", "logs", "id", c->command_id, "cursor", (json_int_t)cursor);
    json_t *resp = NULL;
    if (limit)
        json_object_set_new(req, "limit", json_integer((json_int_t)limit));
    if (sandbox_shim_call(sb, req, &resp, &err) < 0) {
        api_reply_error(c->req, &err);
    } else {
        json_t *b64 = json_object_get(resp, "data_b64");
        size_t blen = json_string_length(b64);
        _cleanup_free_ uint8_t *data = xmalloc(blen / 4 * 3 + 3);
        long n = base64_decode(json_string_value(b64) ?: "", blen, data);
        if (n < 0) {
            sbx_error_setk(&err, -EPROTO, "internal", 500, "malformed logs answer from the shim");
            api_reply_error(c->req, &err);
        } else if (raw) {
            logs_raw(c->req, resp, data, (size_t)n);
        } else {
            api_reply_json(c->req, 200, logs_json(sb->id, resp, data, (size_t)n));
        }
    }
    json_decref(req);
    json_decref(resp);
    sandbox_unref(sb);
}

static void stdin_with_body(struct api_ctx *c, const char *body, size_t len)
{
    const char *close_q = http_query_get(c->req, "close");
    bool close_after = close_q && (strcmp(close_q, "true") == 0 || strcmp(close_q, "1") == 0);
    _cleanup_free_ char *b64 = base64_encode(body, len);
    simple_call(c,
                json_pack("{s:s, s:s, s:s, s:b}", "op", "stdin", "id", c->command_id, "data_b64", b64,
                          "close", close_after),
                false);
}

static void stdin_body_done(struct http_request *req, const char *body, size_t len, void *userdata)
{
    stdin_with_body(userdata, body, len);
}

void api_commands_stdin(struct api_ctx *c)
{
    http_request_read_body(c->req, STDIN_BODY_MAX, stdin_body_done, c);
}

static void signal_with_body(struct api_ctx *c, json_t *body)
{
    int sig = signal_from_json(json_object_get(body, "signal"));
    if (sig < 0) {
        sbx_error err = {0};
        sbx_error_set(&err, -EINVAL, "`signal` must be a signal name like \"SIGTERM\" or a number 1-64");
        return api_reply_error(c->req, &err);
    }
    simple_call(c, json_pack("{s:s, s:s, s:i}", "op", "signal", "id", c->command_id, "signal", sig), false);
}

void api_commands_signal(struct api_ctx *c)
{
    api_read_json(c, signal_with_body);
}

static void resize_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    int64_t cols = 0, rows = 0;
    if (jsonreq_integer(body, "cols", 1, PTY_SIZE_MAX, &cols, &err) < 0 ||
        jsonreq_integer(body, "rows", 1, PTY_SIZE_MAX, &rows, &err) < 0)
        return api_reply_error(c->req, &err);
    if (!cols || !rows) {
        sbx_error_set(&err, -EINVAL, "`cols` and `rows` are required");
        return api_reply_error(c->req, &err);
    }
    simple_call(c,
                json_pack("{s:s, s:s, s:I, s:I}", "op", "resize", "id", c->command_id, "cols",
                          (json_int_t)cols, "rows", (json_int_t)rows),
                false);
}

/* POST …/commands/{cid}/resize {"cols","rows"}: a pty command's window size (it gets SIGWINCH). */
void api_commands_resize(struct api_ctx *c)
{
    api_read_json(c, resize_with_body);
}

void api_commands_kill(struct api_ctx *c)
{
    simple_call(c, json_pack("{s:s, s:s}", "op", "kill", "id", c->command_id), false);
}
