/* E2B's envd, served by sbxd itself on the host side: process.Process and filesystem.Filesystem over
 * Connect (JSON codec), GET/POST /files and /health. Processes are sbx commands run by the sandbox's
 * shim (api_command_exec_request, the native command code), files go through src/files (openat2
 * RESOLVE_IN_ROOT). Requests are routed here by their E2b-Sandbox-Id header (or, for signed /files URLs,
 * by the signature) and authorized by X-Access-Token, the sandbox's envd access token. */
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/codec.h"
#include "api/internal.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "compat/connect.h"
#include "compat/e2b_internal.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "files/files.h"
#include "loop/loop.h"
#include "shimclient/shim_client.h"
#include "shimclient/shim_protocol.h"

#define KEEPALIVE_DEFAULT_S 50  /* what the SDK asks for (Keepalive-Ping-Interval) */
#define EXIT_RETENTION_S 30     /* envd keeps a finished process's end this long */
#define UPLOAD_MAX (256u << 20) /* a /files upload is buffered whole */
#define LIST_DEPTH_MAX 64
#define LIST_MAX_ENTRIES 10000
#define SHIM_READ_CHUNK (64 * 1024)

/* --- the sandbox, the user and paths ------------------------------------------------------------- */

/* The sandbox the request is for, running (a paused one is resumed, as E2B's auto-resume does). A new
 * reference, or NULL with err filled. */
static struct sandbox *envd_sandbox(struct api_ctx *c, sbx_error *err)
{
    struct sandbox *sb = sandbox_lookup(c->d, c->sandbox_id, NULL);
    if (!sb) {
        sbx_error_setk(err, -ENOENT, "unavailable", 503, "sandbox `%s` not found", c->sandbox_id);
        return NULL;
    }
    sandbox_touch(sb);
    if (sb->state == SANDBOX_PAUSED && sandbox_resume(c->d, sb, err) < 0)
        return sandbox_unref(sb);
    if (sb->state != SANDBOX_RUNNING) {
        sbx_error_setk(err, -EBUSY, "unavailable", 503, "sandbox `%s` is %s", sb->id,
                       sandbox_state_to_string(sb->state));
        return sandbox_unref(sb);
    }
    return sb;
}

/* The user of the request: Authorization: Basic base64("<user>:"), else the snapshot's default (NULL =
 * root). Owned by the request. */
static const char *request_user(struct http_request *req, struct sandbox *sb)
{
    const char *q = http_query_get(req, "username");
    if (q && *q)
        return q;
    const char *h = http_header_get(req, "Authorization");
    if (h && strncasecmp(h, "Basic ", 6) == 0) {
        size_t n = strlen(h + 6);
        char *raw = http_request_alloc(req, n / 4 * 3 + 4);
        long k = base64_decode(h + 6, n, (uint8_t *)raw);
        if (k > 0) {
            raw[k] = 0;
            char *colon = strchr(raw, ':');
            if (colon)
                *colon = 0;
            if (*raw)
                return raw;
        }
    }
    return snapshot_default_user(sb->d, sb->snapshot);
}

static bool user_is_root(const char *user)
{
    return !user || strcmp(user, "root") == 0 || strcmp(user, "0") == 0;
}

/* A path of the request: absolute as is, relative to the user's home (E2B's rule). */
static void resolve_path(const char *user, const char *path, char ret[PATH_MAX])
{
    const char *home = user_is_root(user) ? "/root" : NULL;
    char buf[PATH_MAX];
    if (!home) {
        snprintf(buf, sizeof(buf), "/home/%s", user);
        home = buf;
    }
    if (!path || !*path)
        snprintf(ret, PATH_MAX, "%s", home);
    else if (path[0] == '/')
        snprintf(ret, PATH_MAX, "%s", path);
    else
        snprintf(ret, PATH_MAX, "%s/%s", home, path);
}

/* --- EntryInfo ---------------------------------------------------------------------------------- */

static const char *file_type(enum files_type t)
{
    switch (t) {
    case FILES_TYPE_FILE:
        return "FILE_TYPE_FILE";
    case FILES_TYPE_DIR:
        return "FILE_TYPE_DIRECTORY";
    case FILES_TYPE_SYMLINK:
        return "FILE_TYPE_SYMLINK";
    case FILES_TYPE_OTHER:
    case _FILES_TYPE_MAX:
    case _FILES_TYPE_INVALID:
    default:
        return "FILE_TYPE_UNSPECIFIED";
    }
}

/* Go's os.FileMode.String() for the type and permission bits: "-rw-r--r--", "drwxr-xr-x", "Lrwxrwxrwx". */
static void permissions_string(enum files_type t, mode_t mode, char ret[11])
{
    ret[0] = t == FILES_TYPE_DIR ? 'd' : t == FILES_TYPE_SYMLINK ? 'L' : '-';
    static const char rwx[] = "rwxrwxrwx";
    for (int i = 0; i < 9; i++)
        ret[1 + i] = mode & (1u << (8 - i)) ? rwx[i] : '-';
    ret[10] = 0;
}

static json_t *entry_json(const struct files_entry *e)
{
    char perms[11], mtime[40], size[32];
    permissions_string(e->type, e->mode, perms);
    format_time_ms(mtime, sizeof(mtime), e->mtime_sec * 1000);
    snprintf(size, sizeof(size), "%llu", (unsigned long long)e->size);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:s}", "name", e->name, "type",
                          file_type(e->type), "path", e->path, "size", size, "mode", (int)(e->mode & 0777),
                          "permissions", perms, "owner", "root", "group", "root", "modifiedTime", mtime);
    if (e->type == FILES_TYPE_SYMLINK)
        json_object_set_new(o, "symlinkTarget", json_string(e->link_target));
    return o;
}

/* --- process streams: one shim attach forwarded as Connect envelopes ------------------------------- */

struct pstream {
    struct loop_io io;
    struct loop_timer keepalive;
    struct loop_timer deadline;
    struct daemon *d;
    struct http_request *req;
    struct sandbox *sb; /* attached: it is not idle while this client streams */
    int fd;
    int watched;
    struct sbx_buf in;
    usec_t interval;
    bool pty;
    bool paused;
    bool finished;
};

static void pstream_free(struct pstream *p)
{
    if (p->watched)
        loop_io_stop(p->d->loop, &p->io);
    loop_timer_stop(p->d->loop, &p->keepalive);
    loop_timer_stop(p->d->loop, &p->deadline);
    if (p->fd >= 0)
        close(p->fd);
    sbx_buf_done(&p->in);
    sandbox_detach(p->sb);
    sandbox_unref(p->sb);
    free(p);
}

static void pstream_update_watch(struct pstream *p)
{
    int want = !p->paused && !p->finished ? EPOLLIN : 0;
    if (want == p->watched)
        return;
    if (want && p->watched)
        loop_io_update(p->d->loop, &p->io, (uint32_t)want);
    else if (want)
        loop_io_start(p->d->loop, &p->io, p->fd, (uint32_t)want, NULL);
    else
        loop_io_stop(p->d->loop, &p->io);
    p->watched = want;
}

static int send_event(struct pstream *p, json_t *event)
{
    return connect_stream_send(p->req, json_pack("{s:o}", "event", event));
}

/* Go's names for the signals a process dies of ("signal: killed"). */
static const char *signal_text(int sig)
{
    switch (sig) {
    case 1:
        return "hangup";
    case 2:
        return "interrupt";
    case 9:
        return "killed";
    case 15:
        return "terminated";
    case 6:
        return "aborted";
    case 11:
        return "segmentation fault";
    case 13:
        return "broken pipe";
    default:
        return NULL;
    }
}

/* The EndEvent for a shim status, then the end of the stream. A process killed at its Connect-Timeout-Ms
 * ends the stream with deadline_exceeded, as envd's does. */
static void send_end(struct pstream *p, json_t *st)
{
    const char *ecode = json_string_value(json_object_get(json_object_get(st, "error"), "code"));
    if (ecode && strcmp(ecode, "timeout") == 0)
        return connect_stream_end(p->req, "deadline_exceeded", "the process ran past its timeout (killed)");
    json_t *sig = json_object_get(st, "signal");
    char status[64];
    json_t *end;
    if (json_is_integer(sig)) {
        int s = (int)json_integer_value(sig);
        const char *t = signal_text(s);
        if (t)
            snprintf(status, sizeof(status), "signal: %s", t);
        else
            snprintf(status, sizeof(status), "signal: signal %d", s);
        end = json_pack("{s:i, s:b, s:s, s:s}", "exitCode", -1, "exited", false, "status", status, "error",
                        status);
    } else {
        int code = (int)json_integer_value(json_object_get(st, "exit_code"));
        snprintf(status, sizeof(status), "exit status %d", code);
        end = json_pack("{s:i, s:b, s:s}", "exitCode", code, "exited", true, "status", status);
        if (code != 0)
            json_object_set_new(end, "error", json_string(status));
    }
    send_event(p, json_pack("{s:o}", "end", end));
    connect_stream_end(p->req, NULL, NULL);
}

static void pstream_fail(struct pstream *p, const char *why)
{
    connect_stream_end(p->req, "unavailable", why);
}

static void process_frames(struct pstream *p)
{
    size_t pos = 0;
    while (!p->finished && !p->paused) {
        struct shim_frame f;
        long n = shim_frame_parse((const uint8_t *)p->in.base + pos, p->in.len - pos, &f);
        if (n == 0)
            break;
        if (n < 0) {
            p->finished = true;
            pstream_fail(p, "malformed frame from the sandbox's shim");
            break;
        }
        pos += (size_t)n;
        uint8_t stream;
        uint64_t off;
        const uint8_t *data;
        size_t len;
        if (f.type == SHIM_FRAME_DATA && shim_frame_data_parse(&f, &stream, &off, &data, &len) == 0) {
            _cleanup_free_ char *b64 = base64_encode(data, len);
            const char *key = p->pty ? "pty" : stream == SHIM_STREAM_STDERR ? "stderr" : "stdout";
            if (send_event(p, json_pack("{s:{s:s}}", "data", key, b64)) > 0)
                p->paused = true;
            /* Output is activity: the next keepalive is due an interval from now. */
            loop_timer_start(p->d->loop, &p->keepalive, p->interval, p->keepalive.cb);
        } else if (f.type == SHIM_FRAME_EXIT) {
            json_t *st = json_loadb((const char *)f.payload, f.len, 0, NULL);
            p->finished = true;
            if (st)
                send_end(p, st);
            else
                pstream_fail(p, "malformed exit from the sandbox's shim");
            json_decref(st);
        } else if (f.type == SHIM_FRAME_RESPONSE) {
            json_t *resp = json_loadb((const char *)f.payload, f.len, 0, NULL);
            const char *m = json_string_value(json_object_get(json_object_get(resp, "error"), "message"));
            p->finished = true;
            connect_stream_end(p->req, "not_found", m ? m : "attach failed");
            json_decref(resp);
        }
    }
    sbx_buf_consume(&p->in, pos);
}

/* Reads what it can and forwards it; frees p once the response is complete. */
static void pstream_pump(struct pstream *p, bool readable)
{
    for (int i = 0; readable && i < 16 && !p->paused && !p->finished; i++) {
        char *buf = sbx_buf_reserve(&p->in, SHIM_READ_CHUNK);
        ssize_t n = read(p->fd, buf, SHIM_READ_CHUNK);
        if (n > 0) {
            p->in.len += (size_t)n;
            process_frames(p);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        process_frames(p);
        if (!p->finished) {
            p->finished = true;
            pstream_fail(p, "the sandbox is not running any more");
        }
        break;
    }
    process_frames(p);
    if (p->finished)
        return pstream_free(p);
    pstream_update_watch(p);
}

static void pstream_on_io(struct loop_io *io, uint32_t revents)
{
    pstream_pump(container_of(io, struct pstream, io), true);
}

static void pstream_on_abort(struct http_request *req, void *userdata)
{
    pstream_free(userdata); /* the client left: the process keeps running */
}

static void pstream_on_drain(struct http_request *req, void *userdata)
{
    struct pstream *p = userdata;
    p->paused = false;
    pstream_pump(p, true);
}

static void pstream_on_keepalive(struct loop_timer *t)
{
    struct pstream *p = container_of(t, struct pstream, keepalive);
    if (send_event(p, json_pack("{s:{}}", "keepalive")) > 0)
        p->paused = true;
    loop_timer_start(p->d->loop, &p->keepalive, p->interval, pstream_on_keepalive);
    pstream_update_watch(p);
}

/* A Connect stream's own deadline (Connect-Timeout-Ms of a reconnect): the stream ends, the process
 * does not. */
static void pstream_on_deadline(struct loop_timer *t)
{
    struct pstream *p = container_of(t, struct pstream, deadline);
    p->finished = true;
    connect_stream_end(p->req, "deadline_exceeded", "the stream reached its Connect-Timeout-Ms");
    pstream_free(p);
}

/* Attaches to command cid from the given offsets and streams it: the start event, output, the end. */
static void pstream_start(struct api_ctx *c, struct sandbox *sb, const char *cid, uint32_t pid, bool pty,
                          uint64_t stdout_off, uint64_t stderr_off, int64_t deadline_ms)
{
    sbx_error err = {0};
    int fd;
    if (shim_attach(sb->state_dir, cid, stdout_off, stderr_off, &fd, &err) < 0)
        return connect_stream_error(c->req, connect_code_for(&err), err.msg);
    struct pstream *p = xcalloc(1, sizeof(*p));
    p->d = c->d;
    p->req = c->req;
    p->fd = fd;
    p->pty = pty;
    p->io.cb = pstream_on_io;
    p->sb = sandbox_ref(sb);
    sandbox_attach(sb);
    const char *ka = http_header_get(c->req, "Keepalive-Ping-Interval");
    long ka_s = ka ? strtol(ka, NULL, 10) : 0;
    p->interval = (usec_t)(ka_s > 0 && ka_s < 3600 ? ka_s : KEEPALIVE_DEFAULT_S) * USEC_PER_SEC;
    http_request_on_abort(c->req, pstream_on_abort, p);
    http_request_on_drain(c->req, pstream_on_drain, p);
    connect_stream_begin(c->req);
    send_event(p, json_pack("{s:{s:I}}", "start", "pid", (json_int_t)pid));
    loop_timer_start(c->d->loop, &p->keepalive, p->interval, pstream_on_keepalive);
    if (deadline_ms > 0)
        loop_timer_start(c->d->loop, &p->deadline, (usec_t)deadline_ms * USEC_PER_MSEC, pstream_on_deadline);
    pstream_update_watch(p);
}

/* --- process.Process ---------------------------------------------------------------------------- */

/* The shim's status of the process with E2B pid pid (its pid inside the sandbox): the running one, else
 * the most recent. A new reference, or NULL with a not_found error. */
static json_t *find_process(struct sandbox *sb, json_t *msg, sbx_error *err)
{
    json_t *sel = json_object_get(msg, "process");
    json_t *pidj = json_object_get(sel, "pid");
    if (!json_is_integer(pidj)) {
        if (json_object_get(sel, "tag"))
            sbx_error_set(err, -ENOENT, "process with tag %s not found",
                          json_string_value(json_object_get(sel, "tag")) ?: "?");
        else
            sbx_error_set(err, -EINVAL, "`process.pid` is required");
        return NULL;
    }
    json_int_t pid = json_integer_value(pidj);
    json_t *req = json_pack("{s:s}", "op", "list"), *resp = NULL, *found = NULL, *v;
    int r = sandbox_shim_call(sb, req, &resp, err);
    json_decref(req);
    if (r < 0)
        return NULL;
    size_t i;
    json_array_foreach(json_object_get(resp, "commands"), i, v)
    {
        if (json_integer_value(json_object_get(v, "pid")) != pid)
            continue;
        bool running = strcmp(json_string_value(json_object_get(v, "state")) ?: "", "running") == 0;
        if (running || !found ||
            strcmp(json_string_value(json_object_get(found, "state")) ?: "", "running") != 0)
            found = v;
    }
    if (found)
        json_incref(found);
    else
        sbx_error_set(err, -ENOENT, "process with pid %lld not found", (long long)pid);
    json_decref(resp);
    return found;
}

static void process_start(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    _cleanup_(sandbox_unrefp) struct sandbox *sb = envd_sandbox(c, &err);
    if (!sb)
        return connect_stream_error(c->req, connect_code_for(&err), err.msg);
    json_t *proc = json_object_get(msg, "process");
    const char *cmd = json_string_value(json_object_get(proc, "cmd"));
    if (!cmd || !*cmd)
        return connect_stream_error(c->req, "invalid_argument", "`process.cmd` is required");
    const char *user = request_user(c->req, sb);
    json_auto_t *body = json_object();
    json_t *argv = json_array();
    json_array_append_new(argv, json_string(cmd));
    json_t *args = json_object_get(proc, "args"), *v;
    size_t i;
    json_array_foreach(args, i, v) json_array_append(argv, v);
    json_object_set_new(body, "command", argv);
    if (json_is_object(json_object_get(proc, "envs")))
        json_object_set(body, "env", json_object_get(proc, "envs"));
    const char *cwd = json_string_value(json_object_get(proc, "cwd"));
    char path[PATH_MAX];
    if (cwd && *cwd) {
        resolve_path(user, cwd, path);
        json_object_set_new(body, "cwd", json_string(path));
    } else if (!user_is_root(user)) {
        resolve_path(user, NULL, path);
        json_object_set_new(body, "cwd", json_string(path));
    }
    if (user && !user_is_root(user))
        json_object_set_new(body, "user", json_string(user));
    json_t *pty = json_object_get(msg, "pty");
    if (pty) {
        json_t *size = json_object_get(pty, "size");
        json_object_set_new(body, "pty", json_true());
        if (json_integer_value(json_object_get(size, "cols")) > 0)
            json_object_set(body, "cols", json_object_get(size, "cols"));
        if (json_integer_value(json_object_get(size, "rows")) > 0)
            json_object_set(body, "rows", json_object_get(size, "rows"));
    }
    /* envd opens stdin unless the request says "stdin": false (old clients send nothing). */
    json_t *stdin_j = json_object_get(msg, "stdin");
    json_object_set_new(body, "stdin_open", json_boolean(pty || !stdin_j || json_is_true(stdin_j)));
    /* Connect-Timeout-Ms is the process's lifetime (E2B semantics): the shim kills it then. */
    int64_t timeout_ms = connect_timeout_ms(c->req);
    if (timeout_ms > 0)
        json_object_set_new(body, "timeout", json_real((double)timeout_ms / 1000.0));
    json_object_set_new(body, "ttl_seconds", json_integer(EXIT_RETENTION_S));
    json_object_set_new(body, "idle_timeout", json_integer(-1));
    json_object_set_new(body, "wait", json_true());
    json_t *req = NULL, *resp = NULL;
    bool wait;
    if (api_command_exec_request(sb, body, &req, &wait, &err) < 0 ||
        sandbox_shim_call(sb, req, &resp, &err) < 0) {
        json_decref(req);
        return connect_stream_error(c->req, connect_code_for(&err), err.msg);
    }
    json_t *st = json_object_get(resp, "command");
    pstream_start(c, sb, json_string_value(json_object_get(st, "id")),
                  (uint32_t)json_integer_value(json_object_get(st, "pid")), pty != NULL, 0, 0, 0);
    json_decref(req);
    json_decref(resp);
}

static void process_connect(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    _cleanup_(sandbox_unrefp) struct sandbox *sb = envd_sandbox(c, &err);
    if (!sb)
        return connect_stream_error(c->req, connect_code_for(&err), err.msg);
    json_auto_t *st = find_process(sb, msg, &err);
    if (!st)
        return connect_stream_error(c->req, connect_code_for(&err), err.msg);
    /* No replay: output from now on, as envd does. */
    pstream_start(
        c, sb, json_string_value(json_object_get(st, "id")),
        (uint32_t)json_integer_value(json_object_get(st, "pid")), json_is_true(json_object_get(st, "pty")),
        (uint64_t)json_integer_value(json_object_get(st, "stdout_bytes")),
        (uint64_t)json_integer_value(json_object_get(st, "stderr_bytes")), connect_timeout_ms(c->req));
}

static void process_list(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    _cleanup_(sandbox_unrefp) struct sandbox *sb = envd_sandbox(c, &err);
    if (!sb)
        return connect_reply_sbx_error(c->req, &err);
    json_t *req = json_pack("{s:s}", "op", "list"), *resp = NULL, *v;
    int r = sandbox_shim_call(sb, req, &resp, &err);
    json_decref(req);
    if (r < 0)
        return connect_reply_sbx_error(c->req, &err);
    json_t *procs = json_array();
    size_t i;
    json_array_foreach(json_object_get(resp, "commands"), i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "state")) ?: "", "running") != 0)
            continue;
        json_t *argv = json_object_get(v, "argv"), *args = json_array(), *a;
        size_t j;
        json_array_foreach(argv, j, a) if (j > 0) json_array_append(args, a);
        json_t *config = json_pack("{s:s, s:o, s:{}}", "cmd",
                                   json_string_value(json_array_get(argv, 0)) ?: "", "args", args, "envs");
        json_array_append_new(procs, json_pack("{s:o, s:I}", "config", config, "pid",
                                               json_integer_value(json_object_get(v, "pid"))));
    }
    json_decref(resp);
    connect_reply(c->req, json_pack("{s:o}", "processes", procs));
}

/* One shim request about the process msg selects (its "id" filled in); answers {} or the error. */
static void process_call(struct api_ctx *c, json_t *msg, json_t *req)
{
    sbx_error err = {0};
    json_auto_t *r = req;
    _cleanup_(sandbox_unrefp) struct sandbox *sb = envd_sandbox(c, &err);
    if (!sb)
        return connect_reply_sbx_error(c->req, &err);
    json_auto_t *st = find_process(sb, msg, &err);
    if (!st)
        return connect_reply_sbx_error(c->req, &err);
    json_object_set(r, "id", json_object_get(st, "id"));
    json_t *resp = NULL;
    if (sandbox_shim_call(sb, r, &resp, &err) < 0)
        return connect_reply_sbx_error(c->req, &err);
    json_decref(resp);
    connect_reply(c->req, NULL);
}

static void process_send_input(struct api_ctx *c, json_t *msg)
{
    json_t *input = json_object_get(msg, "input");
    const char *data = json_string_value(json_object_get(input, "stdin"));
    if (!data)
        data = json_string_value(json_object_get(input, "pty"));
    if (!data)
        return connect_reply_error(c->req, "invalid_argument", "`input.stdin` or `input.pty` is required");
    process_call(c, msg, json_pack("{s:s, s:s, s:b}", "op", "stdin", "data_b64", data, "close", false));
}

static void process_close_stdin(struct api_ctx *c, json_t *msg)
{
    process_call(c, msg, json_pack("{s:s, s:s, s:b}", "op", "stdin", "data_b64", "", "close", true));
}

static void process_send_signal(struct api_ctx *c, json_t *msg)
{
    json_t *s = json_object_get(msg, "signal");
    const char *name = json_string_value(s);
    int sig = json_is_integer(s) ? (int)json_integer_value(s) : 0;
    if (name && strcmp(name, "SIGNAL_SIGKILL") == 0)
        sig = 9;
    else if (name && strcmp(name, "SIGNAL_SIGTERM") == 0)
        sig = 15;
    if (sig == 9) /* the whole process group, as E2B's kill does */
        return process_call(c, msg, json_pack("{s:s}", "op", "kill"));
    if (sig != 15)
        return connect_reply_error(c->req, "invalid_argument",
                                   "`signal` must be SIGNAL_SIGKILL or SIGNAL_SIGTERM");
    process_call(c, msg, json_pack("{s:s, s:i}", "op", "signal", "signal", sig));
}

static void process_update(struct api_ctx *c, json_t *msg)
{
    json_t *size = json_object_get(json_object_get(msg, "pty"), "size");
    json_int_t cols = json_integer_value(json_object_get(size, "cols"));
    json_int_t rows = json_integer_value(json_object_get(size, "rows"));
    if (!size)
        return connect_reply(c->req, NULL);
    if (cols < 1 || rows < 1 || cols > 1000 || rows > 1000)
        return connect_reply_error(c->req, "invalid_argument", "`pty.size` needs cols and rows in 1..1000");
    process_call(c, msg, json_pack("{s:s, s:I, s:I}", "op", "resize", "cols", cols, "rows", rows));
}

/* --- filesystem.Filesystem ---------------------------------------------------------------------- */

/* The sandbox with its files reachable, and the request's path resolved; NULL with err filled. */
static struct sandbox *fs_sandbox(struct api_ctx *c, json_t *msg, const char *key, char path[PATH_MAX],
                                  sbx_error *err)
{
    struct sandbox *sb = envd_sandbox(c, err);
    if (!sb)
        return NULL;
    if (api_files_ready(sb, err) < 0)
        return sandbox_unref(sb);
    const char *p = json_string_value(json_object_get(msg, key));
    resolve_path(request_user(c->req, sb), p, path);
    return sb;
}

static void fs_stat(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    char path[PATH_MAX];
    _cleanup_(sandbox_unrefp) struct sandbox *sb = fs_sandbox(c, msg, "path", path, &err);
    struct files_entry e;
    if (!sb || files_stat(sb->rootfs_fd, path, &e, &err) < 0)
        return connect_reply_sbx_error(c->req, &err);
    connect_reply(c->req, json_pack("{s:o}", "entry", entry_json(&e)));
}

static void fs_make_dir(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    char path[PATH_MAX];
    _cleanup_(sandbox_unrefp) struct sandbox *sb = fs_sandbox(c, msg, "path", path, &err);
    if (!sb)
        return connect_reply_sbx_error(c->req, &err);
    struct files_entry e;
    if (files_stat(sb->rootfs_fd, path, &e, &err) >= 0)
        return connect_reply_error(c->req, e.type == FILES_TYPE_DIR ? "already_exists" : "invalid_argument",
                                   e.type == FILES_TYPE_DIR ? "directory already exists"
                                                            : "path already exists and is not a directory");
    err = (sbx_error){0};
    if (files_mkdir_p(sb->rootfs_fd, path, 0755, sb->uid_base, sb->uid_base, &err) < 0 ||
        files_stat(sb->rootfs_fd, path, &e, &err) < 0)
        return connect_reply_sbx_error(c->req, &err);
    connect_reply(c->req, json_pack("{s:o}", "entry", entry_json(&e)));
}

static void fs_move(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    char from[PATH_MAX], to[PATH_MAX];
    _cleanup_(sandbox_unrefp) struct sandbox *sb = fs_sandbox(c, msg, "source", from, &err);
    if (!sb)
        return connect_reply_sbx_error(c->req, &err);
    resolve_path(request_user(c->req, sb), json_string_value(json_object_get(msg, "destination")), to);
    struct files_entry e;
    if (files_move(sb->rootfs_fd, from, to, true, sb->uid_base, sb->uid_base, &err) < 0 ||
        files_stat(sb->rootfs_fd, to, &e, &err) < 0)
        return connect_reply_sbx_error(c->req, &err);
    connect_reply(c->req, json_pack("{s:o}", "entry", entry_json(&e)));
}

static int list_into(int rootfd, const char *path, unsigned depth, json_t *out, sbx_error *err)
{
    struct files_entry *entries = NULL;
    size_t n = 0;
    if (files_list(rootfd, path, &entries, &n, LIST_MAX_ENTRIES, err) < 0)
        return err->code;
    int r = 0;
    for (size_t i = 0; i < n && r >= 0; i++) {
        if (json_array_size(out) >= LIST_MAX_ENTRIES) {
            r = sbx_error_setk(err, -E2BIG, "too_large", 413, "more than %d entries", LIST_MAX_ENTRIES);
            break;
        }
        json_array_append_new(out, entry_json(&entries[i]));
        if (entries[i].type == FILES_TYPE_DIR && depth > 1)
            r = list_into(rootfd, entries[i].path, depth - 1, out, err);
    }
    free(entries);
    return r;
}

static void fs_list_dir(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    char path[PATH_MAX];
    _cleanup_(sandbox_unrefp) struct sandbox *sb = fs_sandbox(c, msg, "path", path, &err);
    if (!sb)
        return connect_reply_sbx_error(c->req, &err);
    json_int_t depth = json_integer_value(json_object_get(msg, "depth"));
    if (depth < 1)
        depth = 1;
    if (depth > LIST_DEPTH_MAX)
        depth = LIST_DEPTH_MAX;
    struct files_entry e;
    if (files_stat(sb->rootfs_fd, path, &e, &err) >= 0 && e.type == FILES_TYPE_FILE)
        return connect_reply_error(c->req, "invalid_argument", "path is not a directory");
    json_t *out = json_array();
    if (list_into(sb->rootfs_fd, path, (unsigned)depth, out, &err) < 0) {
        json_decref(out);
        return connect_reply_sbx_error(c->req, &err);
    }
    connect_reply(c->req, json_pack("{s:o}", "entries", out));
}

static void fs_remove(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    char path[PATH_MAX];
    _cleanup_(sandbox_unrefp) struct sandbox *sb = fs_sandbox(c, msg, "path", path, &err);
    if (!sb || files_remove(sb->rootfs_fd, path, true, &err) < 0)
        return connect_reply_sbx_error(c->req, &err);
    connect_reply(c->req, NULL);
}

static void unimplemented(struct api_ctx *c, json_t *msg)
{
    if (connect_is_stream(c->req))
        return connect_stream_error(c->req, "unimplemented", "not supported by sbx's envd yet");
    connect_reply_error(c->req, "unimplemented", "not supported by sbx's envd yet");
}

/* --- WatchDir: inotify on directories opened inside the root ----------------------------------- */

#define WATCH_MAX_DIRS 4096
#define WATCH_MASK (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_ONLYDIR)

struct wdir {
    int wd;
    char *rel; /* relative to the watched directory, "" for itself */
};

struct wstream {
    struct loop_io io;
    struct loop_timer keepalive;
    struct loop_timer deadline;
    struct daemon *d;
    struct http_request *req;
    struct sandbox *sb;
    int ifd;
    bool recursive, include_entry, watching;
    char base[PATH_MAX];
    struct wdir *dirs;
    size_t n_dirs;
    usec_t interval;
};

static void wstream_free(struct wstream *w)
{
    if (w->watching)
        loop_io_stop(w->d->loop, &w->io);
    loop_timer_stop(w->d->loop, &w->keepalive);
    loop_timer_stop(w->d->loop, &w->deadline);
    if (w->ifd >= 0)
        close(w->ifd);
    for (size_t i = 0; i < w->n_dirs; i++)
        free(w->dirs[i].rel);
    free(w->dirs);
    sandbox_detach(w->sb);
    sandbox_unref(w->sb);
    free(w);
}

/* Watches base/rel (and, recursively, its subdirectories). */
static int watch_add(struct wstream *w, const char *rel, unsigned depth, sbx_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s%s", w->base, *rel ? "/" : "", rel);
    if (w->n_dirs >= WATCH_MAX_DIRS)
        return sbx_error_setk(err, -E2BIG, "resource_exhausted", 429, "more than %d directories to watch",
                              WATCH_MAX_DIRS);
    _cleanup_close_ int fd = -1;
    if (files_open_dir(w->sb->rootfs_fd, path, &fd, err) < 0)
        return err->code;
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    int wd = inotify_add_watch(w->ifd, proc, WATCH_MASK);
    if (wd < 0)
        return sbx_error_set(err, -errno, "watch `%s`: %m", path);
    w->dirs = xrealloc(w->dirs, (w->n_dirs + 1) * sizeof(*w->dirs));
    w->dirs[w->n_dirs++] = (struct wdir){.wd = wd, .rel = xstrdup(rel)};
    if (!w->recursive || depth >= LIST_DEPTH_MAX)
        return 0;
    struct files_entry *entries = NULL;
    size_t n = 0;
    if (files_list(w->sb->rootfs_fd, path, &entries, &n, LIST_MAX_ENTRIES, err) < 0)
        return err->code;
    int r = 0;
    for (size_t i = 0; i < n && r >= 0; i++) {
        if (entries[i].type != FILES_TYPE_DIR)
            continue;
        _cleanup_free_ char *sub = *rel ? xasprintf("%s/%s", rel, entries[i].name) : xstrdup(entries[i].name);
        r = watch_add(w, sub, depth + 1, err);
    }
    free(entries);
    return r;
}

static const char *watch_event_type(uint32_t mask)
{
    if (mask & (IN_CREATE | IN_MOVED_TO))
        return "EVENT_TYPE_CREATE";
    if (mask & IN_MODIFY)
        return "EVENT_TYPE_WRITE";
    if (mask & IN_DELETE)
        return "EVENT_TYPE_REMOVE";
    if (mask & IN_MOVED_FROM)
        return "EVENT_TYPE_RENAME";
    if (mask & IN_ATTRIB)
        return "EVENT_TYPE_CHMOD";
    return NULL;
}

static void wstream_end(struct wstream *w, const char *code, const char *message)
{
    connect_stream_end(w->req, code, message);
    wstream_free(w);
}

static void wstream_on_io(struct loop_io *io, uint32_t revents)
{
    struct wstream *w = container_of(io, struct wstream, io);
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(w->ifd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW)
                return wstream_end(w, "resource_exhausted", "too many filesystem events at once");
            const char *rel = NULL;
            for (size_t i = 0; i < w->n_dirs && !rel; i++)
                if (w->dirs[i].wd == ev->wd)
                    rel = w->dirs[i].rel;
            const char *type = watch_event_type(ev->mask);
            if (!rel || !type || !ev->len)
                continue;
            _cleanup_free_ char *name = *rel ? xasprintf("%s/%s", rel, ev->name) : xstrdup(ev->name);
            json_t *fe = json_pack("{s:s, s:s}", "name", name, "type", type);
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s", w->base, name);
            struct files_entry e;
            if (w->include_entry && strcmp(type, "EVENT_TYPE_REMOVE") != 0 &&
                strcmp(type, "EVENT_TYPE_RENAME") != 0 && files_stat(w->sb->rootfs_fd, path, &e, NULL) >= 0)
                json_object_set_new(fe, "entry", entry_json(&e));
            connect_stream_send(w->req, json_pack("{s:o}", "filesystem", fe));
            /* A new directory in a recursive watch is watched too. */
            sbx_error err = {0};
            if (w->recursive && (ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO)) &&
                watch_add(w, name, 1, &err) < 0 && err.code == -E2BIG)
                return wstream_end(w, "resource_exhausted", err.msg);
        }
    }
}

static void wstream_on_abort(struct http_request *req, void *userdata)
{
    wstream_free(userdata);
}

static void wstream_on_keepalive(struct loop_timer *t)
{
    struct wstream *w = container_of(t, struct wstream, keepalive);
    connect_stream_send(w->req, json_pack("{s:{}}", "keepalive"));
    loop_timer_start(w->d->loop, &w->keepalive, w->interval, wstream_on_keepalive);
}

static void wstream_on_deadline(struct loop_timer *t)
{
    struct wstream *w = container_of(t, struct wstream, deadline);
    wstream_end(w, "deadline_exceeded", "the watch reached its Connect-Timeout-Ms");
}

static void fs_watch_dir(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    char path[PATH_MAX];
    _cleanup_(sandbox_unrefp) struct sandbox *sb = fs_sandbox(c, msg, "path", path, &err);
    if (!sb)
        return connect_stream_error(c->req, connect_code_for(&err), err.msg);
    struct files_entry e;
    if (files_stat(sb->rootfs_fd, path, &e, &err) >= 0 && e.type != FILES_TYPE_DIR)
        return connect_stream_error(c->req, "invalid_argument", "path is not a directory");
    struct wstream *w = xcalloc(1, sizeof(*w));
    w->d = c->d;
    w->req = c->req;
    w->sb = sandbox_ref(sb);
    sandbox_attach(sb);
    w->recursive = json_is_true(json_object_get(msg, "recursive"));
    w->include_entry = json_is_true(json_object_get(msg, "includeEntry"));
    snprintf(w->base, sizeof(w->base), "%s", path);
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->ifd < 0) {
        sbx_error_set(&err, -errno, "inotify: %m");
        wstream_free(w);
        return connect_stream_error(c->req, "resource_exhausted", err.msg);
    }
    err = (sbx_error){0};
    if (watch_add(w, "", 0, &err) < 0) {
        wstream_free(w);
        return connect_stream_error(c->req, connect_code_for(&err), err.msg);
    }
    const char *ka = http_header_get(c->req, "Keepalive-Ping-Interval");
    long ka_s = ka ? strtol(ka, NULL, 10) : 0;
    w->interval = (usec_t)(ka_s > 0 && ka_s < 3600 ? ka_s : KEEPALIVE_DEFAULT_S) * USEC_PER_SEC;
    w->io.cb = wstream_on_io;
    loop_io_start(c->d->loop, &w->io, w->ifd, EPOLLIN, NULL);
    w->watching = true;
    http_request_on_abort(c->req, wstream_on_abort, w);
    connect_stream_begin(c->req);
    connect_stream_send(c->req, json_pack("{s:{}}", "start"));
    loop_timer_start(c->d->loop, &w->keepalive, w->interval, wstream_on_keepalive);
    int64_t deadline = connect_timeout_ms(c->req);
    if (deadline > 0)
        loop_timer_start(c->d->loop, &w->deadline, (usec_t)deadline * USEC_PER_MSEC, wstream_on_deadline);
}

/* --- RPC dispatch ------------------------------------------------------------------------------- */

struct rpc {
    const char *path;
    void (*handler)(struct api_ctx *c, json_t *msg);
};

static const struct rpc rpcs[] = {
    {"/process.Process/Start", process_start},
    {"/process.Process/Connect", process_connect},
    {"/process.Process/List", process_list},
    {"/process.Process/SendInput", process_send_input},
    {"/process.Process/SendSignal", process_send_signal},
    {"/process.Process/CloseStdin", process_close_stdin},
    {"/process.Process/Update", process_update},
    {"/process.Process/StreamInput", unimplemented},
    {"/filesystem.Filesystem/Stat", fs_stat},
    {"/filesystem.Filesystem/MakeDir", fs_make_dir},
    {"/filesystem.Filesystem/Move", fs_move},
    {"/filesystem.Filesystem/ListDir", fs_list_dir},
    {"/filesystem.Filesystem/Remove", fs_remove},
    {"/filesystem.Filesystem/WatchDir", fs_watch_dir},
    {"/filesystem.Filesystem/CreateWatcher", unimplemented},
    {"/filesystem.Filesystem/GetWatcherEvents", unimplemented},
    {"/filesystem.Filesystem/RemoveWatcher", unimplemented},
};

static void rpc_body_done(struct http_request *req, const char *body, size_t len, void *userdata)
{
    struct api_ctx *c = userdata;
    sbx_error err = {0};
    json_t *msg = NULL;
    if (connect_decode_request(req, body, len, &msg, &err) < 0) {
        if (connect_is_stream(req))
            return connect_stream_error(req, "invalid_argument", err.msg);
        return connect_reply_error(req, "invalid_argument", err.msg);
    }
    c->json_cb(c, msg);
    json_decref(msg);
}

/* --- /files ------------------------------------------------------------------------------------- */

/* v1_ + base64 (standard alphabet, no padding) of SHA-256("<path>:<operation>:<user>:<token>[:<exp>]"). */
static void file_signature(const char *path, const char *op, const char *user, const char *token,
                           const char *expiration, char ret[64])
{
    _cleanup_free_ char *msg = expiration && *expiration
                                   ? xasprintf("%s:%s:%s:%s:%s", path, op, user, token, expiration)
                                   : xasprintf("%s:%s:%s:%s", path, op, user, token);
    unsigned char md[32];
    unsigned mdlen = 0;
    EVP_Digest(msg, strlen(msg), md, &mdlen, EVP_sha256(), NULL);
    _cleanup_free_ char *b64 = base64_encode(md, mdlen);
    size_t n = strlen(b64);
    while (n && b64[n - 1] == '=')
        b64[--n] = 0;
    snprintf(ret, 64, "v1_%s", b64);
}

enum sig_verdict { SIG_NONE, SIG_OK, SIG_BAD, SIG_EXPIRED };

static enum sig_verdict check_signature(struct daemon *d, struct http_request *req, const char *sandbox_id)
{
    const char *sig = http_query_get(req, "signature");
    if (!sig)
        return SIG_NONE;
    const char *path = http_query_get(req, "path") ?: "";
    const char *user = http_query_get(req, "username") ?: "";
    const char *exp = http_query_get(req, "signature_expiration");
    const char *op = http_request_method_id(req) == HTTP_METHOD_GET ? "read" : "write";
    char token[E2B_ENVD_TOKEN_MAX + 1], want[64];
    sbx_error err = {0};
    if (e2b_envd_token(d, sandbox_id, token, &err) < 0)
        return SIG_BAD;
    file_signature(path, op, user, token, exp, want);
    if (strlen(want) != strlen(sig) || CRYPTO_memcmp(want, sig, strlen(want)) != 0)
        return SIG_BAD;
    if (exp && *exp && strtoll(exp, NULL, 10) < (long long)time(NULL))
        return SIG_EXPIRED;
    return SIG_OK;
}

/* A signed URL names no sandbox: the one whose token made the signature is it. */
static const char *sandbox_by_signature(struct daemon *d, struct http_request *req)
{
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next)
        if (!sb->warm && check_signature(d, req, sb->id) != SIG_BAD)
            return http_request_strdup(req, sb->id);
    return NULL;
}

static void files_get(struct api_ctx *c)
{
    sbx_error err = {0};
    struct sandbox *sb = envd_sandbox(c, &err);
    if (!sb || api_files_ready(sb, &err) < 0) {
        if (sb)
            sandbox_unref(sb);
        return e2b_reply_sbx_error(c->req, &err);
    }
    char path[PATH_MAX];
    resolve_path(request_user(c->req, sb), http_query_get(c->req, "path"), path);
    int fd;
    uint64_t size;
    if (api_files_open_download(sb, path, &fd, &size, &err) < 0) {
        sandbox_unref(sb);
        if (err.code == -EISDIR)
            return e2b_reply_error(c->req, 400, "path `%s` is a directory", path);
        return e2b_reply_sbx_error(c->req, &err);
    }
    const char *slash = strrchr(path, '/');
    _cleanup_free_ char *disp = xasprintf("inline; filename=\"%s\"", slash ? slash + 1 : path);
    http_response_header(c->req, "Content-Disposition", disp);
    api_files_send(c->req, sb, fd, size); /* takes fd and the reference */
}

/* Writes one uploaded file; appends its WriteInfo to out. */
static int write_one(struct sandbox *sb, const char *path, const char *data, size_t len, json_t *out,
                     sbx_error *err)
{
    struct files_writer w;
    if (files_writer_open(sb->rootfs_fd, path, 0644, sb->uid_base, sb->uid_base, &w, err) < 0)
        return err->code;
    if (files_writer_write(&w, data, len, err) < 0) {
        files_writer_abort(&w);
        return err->code;
    }
    if (files_writer_commit(&w, err) < 0)
        return err->code;
    const char *slash = strrchr(w.path, '/');
    json_array_append_new(out, json_pack("{s:s, s:s, s:s}", "name", slash ? slash + 1 : w.path, "type",
                                         "file", "path", w.path));
    return 0;
}

/* The value of a parameter in a header value ("...; boundary=xyz" or boundary="xyz"), copied into ret. */
static bool header_param(const char *value, const char *name, char *ret, size_t size)
{
    size_t nl = strlen(name);
    for (const char *p = value; p && *p; p++) {
        if (strncasecmp(p, name, nl) != 0 || p[nl] != '=' || (p != value && p[-1] != ' ' && p[-1] != ';'))
            continue;
        p += nl + 1;
        size_t n = *p == '"' ? strcspn(p + 1, "\"") : strcspn(p, "; ");
        if (*p == '"')
            p++;
        if (n == 0 || n >= size)
            return false;
        memcpy(ret, p, n);
        ret[n] = 0;
        return true;
    }
    return false;
}

/* multipart/form-data: every part called "file" is one file, its filename the path (or the query's path
 * when there is one). */
static int write_multipart(struct sandbox *sb, const char *user, const char *qpath, const char *boundary,
                           const char *body, size_t len, json_t *out, sbx_error *err)
{
    _cleanup_free_ char *delim = xasprintf("--%s", boundary);
    size_t dl = strlen(delim);
    const char *end = body + len;
    const char *p = memmem(body, len, delim, dl);
    while (p) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return 0; /* the closing delimiter */
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
            p += 2;
        const char *hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend)
            return sbx_error_set(err, -EINVAL, "malformed multipart body: a part has no end of headers");
        _cleanup_free_ char *headers = xstrndup(p, (size_t)(hend - p));
        const char *data = hend + 4;
        _cleanup_free_ char *next_delim = xasprintf("\r\n--%s", boundary);
        const char *next = memmem(data, (size_t)(end - data), next_delim, strlen(next_delim));
        if (!next)
            return sbx_error_set(err, -EINVAL, "malformed multipart body: a part does not end");
        char filename[PATH_MAX] = "", name[64] = "";
        for (char *line = headers; line && *line;) {
            char *nl = strstr(line, "\r\n");
            if (nl)
                *nl = 0;
            if (strncasecmp(line, "Content-Disposition:", 20) == 0) {
                header_param(line + 20, "name", name, sizeof(name));
                header_param(line + 20, "filename", filename, sizeof(filename));
            }
            line = nl ? nl + 2 : NULL;
        }
        if (strcmp(name, "file") == 0) {
            char path[PATH_MAX];
            resolve_path(user, qpath && *qpath ? qpath : filename, path);
            if (!qpath && !*filename)
                return sbx_error_set(err, -EINVAL, "a file part has no filename and the request no path");
            if (write_one(sb, path, data, (size_t)(next - data), out, err) < 0)
                return err->code;
        }
        p = next + 2;
    }
    return 0;
}

static void upload_done(struct http_request *req, const char *body, size_t len, void *userdata)
{
    struct api_ctx *c = userdata;
    sbx_error err = {0};
    _cleanup_(sandbox_unrefp) struct sandbox *sb = envd_sandbox(c, &err);
    if (!sb || api_files_ready(sb, &err) < 0)
        return e2b_reply_sbx_error(req, &err);
    const char *user = request_user(req, sb), *qpath = http_query_get(req, "path");
    const char *ct = http_header_get(req, "Content-Type") ?: "";
    const char *enc = http_header_get(req, "Content-Encoding");
    if (enc && strcasecmp(enc, "identity") != 0)
        return e2b_reply_error(req, 415, "Content-Encoding `%s` is not supported by sbx", enc);
    json_auto_t *out = json_array();
    char boundary[256];
    int r;
    if (strncasecmp(ct, "multipart/form-data", 19) == 0) {
        if (!header_param(ct, "boundary", boundary, sizeof(boundary)))
            return e2b_reply_error(req, 400, "multipart body without a boundary");
        r = write_multipart(sb, user, qpath, boundary, body, len, out, &err);
    } else {
        if (!qpath || !*qpath)
            return e2b_reply_error(req, 400, "query parameter `path` is required for a raw upload");
        char path[PATH_MAX];
        resolve_path(user, qpath, path);
        r = write_one(sb, path, body, len, out, &err);
    }
    if (r < 0) {
        if (err.code == -ENOSPC || err.code == -EDQUOT)
            return e2b_reply_error(req, 507, "%s", err.msg);
        return e2b_reply_sbx_error(req, &err);
    }
    if (json_array_size(out) == 0)
        return e2b_reply_error(req, 400, "the upload holds no part named `file`");
    http_respond_json(req, 200, json_incref(out));
}

/* --- entry -------------------------------------------------------------------------------------- */

static bool token_ok(struct daemon *d, struct http_request *req, const char *sandbox_id)
{
    const char *t = http_header_get(req, "X-Access-Token");
    char want[E2B_ENVD_TOKEN_MAX + 1];
    sbx_error err = {0};
    if (!t || e2b_envd_token(d, sandbox_id, want, &err) < 0)
        return false;
    return strlen(t) == strlen(want) && CRYPTO_memcmp(t, want, strlen(want)) == 0;
}

static void sandbox_not_found(struct http_request *req, const char *sandbox_id)
{
    http_respond_json(req, 502,
                      json_pack("{s:s, s:s, s:i}", "sandboxId", sandbox_id ? sandbox_id : "", "message",
                                "The sandbox was not found", "code", 502));
}

void e2b_envd_handle(struct daemon *d, struct http_request *req, const char *sandbox_id)
{
    const char *path = http_request_path(req);
    enum http_method m = http_request_method_id(req);
    bool files = strcmp(path, "/files") == 0;
    if (!sandbox_id && !(sandbox_id = sandbox_by_signature(d, req)))
        return e2b_reply_error(req, 401, "invalid signature");
    struct sandbox *sb = sandbox_lookup(d, sandbox_id, NULL);
    bool found = sb && !sb->warm && sb->state != SANDBOX_FAILED;
    if (sb)
        sandbox_unref(sb);
    if (!found)
        return sandbox_not_found(req, sandbox_id);
    if (strcmp(path, "/health") == 0)
        return http_respond(req, 204, NULL, NULL, 0);
    if (!token_ok(d, req, sandbox_id)) {
        enum sig_verdict v = files ? check_signature(d, req, sandbox_id) : SIG_NONE;
        if (v == SIG_EXPIRED)
            return e2b_reply_error(req, 401, "signature is already expired");
        if (v != SIG_OK)
            return e2b_reply_error(req, 401,
                                   "unauthorized access, please provide a valid access token or "
                                   "signature");
    }
    if (files) {
        struct api_ctx *c = e2b_ctx_new(d, req, "e2b:files", sandbox_id, NULL);
        if (m == HTTP_METHOD_GET || m == HTTP_METHOD_HEAD)
            return files_get(c);
        if (m == HTTP_METHOD_POST)
            return http_request_read_body(req, UPLOAD_MAX, upload_done, c);
        return e2b_reply_error(req, 405, "use GET or POST on /files");
    }
    for (size_t i = 0; i < ELEMENTSOF(rpcs); i++) {
        if (strcmp(rpcs[i].path, path) != 0)
            continue;
        if (m != HTTP_METHOD_POST)
            return connect_reply_error(req, "unimplemented", "Connect RPCs are POST");
        bool process = strncmp(path, "/process.", 9) == 0;
        struct api_ctx *c = e2b_ctx_new(d, req, process ? "e2b:process" : "e2b:filesystem", sandbox_id, NULL);
        c->json_cb = rpcs[i].handler;
        return http_request_read_body(req, CONNECT_MESSAGE_MAX, rpc_body_done, c);
    }
    e2b_reply_error(req, 404, "%s %s is not an envd route sbx serves", http_request_method(req), path);
}
