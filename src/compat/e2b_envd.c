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
#include "http/multipart.h"
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

/* --- StreamInput: a client stream whose data goes to the process's stdin as it arrives ------------ */

#define INPUT_CALL_MAX (1u << 20)            /* stdin bytes per call to the shim */
#define INPUT_RETRY_MIN (10 * USEC_PER_MSEC) /* the shim's stdin queue is full: offer again after */
#define INPUT_RETRY_MAX (160 * USEC_PER_MSEC)

/* The request's messages are {"start":{"process":{"pid"}}} first, then {"data":{"input":{"stdin"|"pty"}}}
 * and {"keepalive":{}}; the answer is one {} (or only the error) once the body has ended and every byte
 * was handed to the shim. Each message's input goes to the shim when the message is complete, with the
 * same stdin call as SendInput, on the sandbox's control connection: so it is ordered with SendInput and
 * CloseStdin, and a CloseStdin after the answer cannot overtake it. The shim queues up to 8 MiB of stdin
 * the process has not read; beyond, it says so, the body is paused and the rest offered again later. */
struct istream {
    struct loop_timer retry;
    struct daemon *d;
    struct api_ctx *c;
    struct http_request *req;
    struct sandbox *sb; /* attached once the start message named the process */
    char cid[SBX_ID_MAX + 1];
    uint32_t pid;
    usec_t backoff;
    bool body_ended;        /* every message was read */
    bool body_paused;       /* the shim is behind */
    bool answered;          /* the response is complete or the client left: the rest of the body is ignored */
    struct sbx_buf body;    /* request bytes not yet parsed into messages */
    struct sbx_buf pending; /* input the shim has not taken yet */
};

/* Lets go of the sandbox; s itself lives until the request is destroyed. */
static void istream_release(struct istream *s)
{
    loop_timer_stop(s->d->loop, &s->retry);
    if (s->sb) {
        sandbox_detach(s->sb);
        s->sb = sandbox_unref(s->sb);
    }
    sbx_buf_reset(&s->pending);
}

static void istream_free(void *p)
{
    struct istream *s = p;
    istream_release(s);
    sbx_buf_done(&s->body);
    sbx_buf_done(&s->pending);
    free(s);
}

/* Completes the response: the error, or (code NULL) the one empty StreamInputResponse. */
static void istream_answer(struct istream *s, const char *code, const char *message)
{
    if (s->answered)
        return;
    s->answered = true;
    istream_release(s);
    /* The rest of the body still has to be read (and is ignored); the server delivers it later. */
    if (s->body_paused)
        http_request_resume_body(s->req);
    if (code)
        return connect_stream_error(s->req, code, message);
    connect_stream_begin(s->req);
    connect_stream_send(s->req, json_object());
    connect_stream_end(s->req, NULL, NULL);
}

static void istream_on_abort(struct http_request *req, void *userdata)
{
    struct istream *s = userdata;
    s->answered = true;
    istream_release(s);
}

static void istream_on_retry(struct loop_timer *t);

/* Hands pending input to the shim until it is all taken or the shim's queue is full. */
static void istream_pump(struct istream *s)
{
    while (!s->answered && s->pending.len > 0 && !s->retry.active) {
        size_t k = s->pending.len < INPUT_CALL_MAX ? s->pending.len : INPUT_CALL_MAX;
        _cleanup_free_ char *b64 = base64_encode((const uint8_t *)s->pending.base, k);
        json_auto_t *req =
            json_pack("{s:s, s:s, s:s, s:b}", "op", "stdin", "id", s->cid, "data_b64", b64, "close", false);
        json_t *resp = NULL;
        sbx_error err = {0};
        if (sandbox_shim_call(s->sb, req, &resp, &err) < 0) {
            if (err.code == -EAGAIN) {
                loop_timer_start(s->d->loop, &s->retry, s->backoff, istream_on_retry);
                s->backoff = s->backoff * 2 < INPUT_RETRY_MAX ? s->backoff * 2 : INPUT_RETRY_MAX;
                return;
            }
            if (strcmp(sbx_error_kind(&err), "conflict") == 0) {
                char msg[128];
                snprintf(msg, sizeof(msg), "process with pid %u has exited or closed its stdin", s->pid);
                return istream_answer(s, "failed_precondition", msg);
            }
            return istream_answer(s, connect_code_for(&err), err.msg);
        }
        json_decref(resp);
        sbx_buf_consume(&s->pending, k);
        s->backoff = INPUT_RETRY_MIN;
    }
}

/* Reads on once the shim took everything; answers once the body has ended too. */
static void istream_settle(struct istream *s)
{
    if (s->answered || s->pending.len > 0)
        return;
    if (s->body_paused) {
        s->body_paused = false;
        http_request_resume_body(s->req); /* chunks come later, from the loop */
    }
    if (s->body_ended)
        istream_answer(s, NULL, NULL);
}

static void istream_on_retry(struct loop_timer *t)
{
    struct istream *s = container_of(t, struct istream, retry);
    istream_pump(s);
    istream_settle(s);
}

static void istream_start(struct istream *s, json_t *start)
{
    if (s->sb)
        return istream_answer(s, "invalid_argument", "the stream named its process already");
    sbx_error err = {0};
    struct sandbox *sb = envd_sandbox(s->c, &err);
    if (!sb)
        return istream_answer(s, connect_code_for(&err), err.msg);
    json_auto_t *st = find_process(sb, start, &err);
    if (!st) {
        sandbox_unref(sb);
        return istream_answer(s, connect_code_for(&err), err.msg);
    }
    s->sb = sb;
    sandbox_attach(sb);
    snprintf(s->cid, sizeof(s->cid), "%s", json_string_value(json_object_get(st, "id")) ?: "");
    s->pid = (uint32_t)json_integer_value(json_object_get(st, "pid"));
}

static void istream_data(struct istream *s, json_t *data)
{
    json_t *input = json_object_get(data, "input");
    json_t *v = json_object_get(input, "stdin");
    const char *b64 = json_string_value(v ? v : json_object_get(input, "pty"));
    if (!b64)
        return istream_answer(s, "invalid_argument", "a data message needs `input.stdin` or `input.pty`");
    if (!s->sb)
        return istream_answer(s, "failed_precondition", "a data message before the start message");
    size_t n = strlen(b64);
    char *raw = sbx_buf_reserve(&s->pending, n / 4 * 3 + 3);
    long len = base64_decode(b64, n, (uint8_t *)raw);
    if (len < 0)
        return istream_answer(s, "invalid_argument", "the input is not valid base64");
    s->pending.len += (size_t)len;
    istream_pump(s);
}

static void istream_message(struct istream *s, const char *text, size_t len)
{
    json_auto_t *m = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *v;
    if (!json_is_object(m))
        istream_answer(s, "invalid_argument", "a message is not a JSON object");
    else if ((v = json_object_get(m, "start")))
        istream_start(s, v);
    else if ((v = json_object_get(m, "data")))
        istream_data(s, v);
    else if (!json_object_get(m, "keepalive"))
        istream_answer(s, "unimplemented", "invalid event type: expected start, data or keepalive");
}

/* The body as it arrives: every complete envelope is handled at once. */
static int istream_on_chunk(struct http_request *req, const char *data, size_t len, void *userdata)
{
    struct istream *s = userdata;
    if (s->answered)
        return 0;
    sbx_buf_append(&s->body, data, len);
    size_t pos = 0;
    while (!s->answered && s->body.len - pos >= 5) {
        const uint8_t *b = (const uint8_t *)s->body.base + pos;
        uint32_t n = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
        if (b[0] & CONNECT_FLAG_COMPRESSED)
            istream_answer(s, "invalid_argument", "compressed envelopes are not supported");
        else if (b[0] & ~CONNECT_FLAG_END_STREAM)
            istream_answer(s, "invalid_argument", "unexpected envelope flags");
        else if (n > CONNECT_MESSAGE_MAX)
            istream_answer(s, "invalid_argument", "a message is larger than 4 MiB");
        if (s->answered || s->body.len - pos - 5 < n)
            break;
        if (!(b[0] & CONNECT_FLAG_END_STREAM))
            istream_message(s, (const char *)b + 5, n);
        pos += 5 + (size_t)n;
    }
    if (s->answered)
        return 0;
    sbx_buf_consume(&s->body, pos);
    if (s->pending.len > 0)
        s->body_paused = true; /* until the shim took it (istream_settle) */
    return s->body_paused ? 1 : 0;
}

static void istream_on_end(struct http_request *req, void *userdata)
{
    struct istream *s = userdata;
    if (s->answered)
        return;
    s->body_ended = true;
    if (s->body.len > 0)
        return istream_answer(s, "invalid_argument", "the request body ended inside an envelope");
    istream_settle(s);
}

static void process_stream_input(struct api_ctx *c)
{
    if (!connect_is_stream(c->req))
        return connect_reply_error(c->req, "invalid_argument",
                                   "StreamInput is a client stream: send application/connect+json envelopes");
    struct istream *s = xcalloc(1, sizeof(*s));
    s->d = c->d;
    s->c = c;
    s->req = c->req;
    s->backoff = INPUT_RETRY_MIN;
    e2b_ctx_set_extra(c, s, istream_free);
    http_request_on_abort(c->req, istream_on_abort, s);
    http_request_stream_body(c->req, istream_on_chunk, istream_on_end, s);
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

/* --- watching directories: inotify on directories opened inside the root ------------------------- */

#define WATCH_MAX_DIRS 4096
#define WATCH_MASK (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_ONLYDIR)

/* A field of a request message by its proto3 JSON name, else by its proto name (the SDKs send the
 * first; Connect servers accept both). */
static json_t *msg_field(json_t *msg, const char *json_name, const char *proto_name)
{
    json_t *v = json_object_get(msg, json_name);
    return v ? v : json_object_get(msg, proto_name);
}

struct wdir {
    int wd;
    char *rel; /* relative to the watched directory, "" for itself */
};

/* One watch of a directory (recursively: and of its subdirectories) inside a sandbox's root: what the
 * WatchDir stream and the polling watchers share. */
struct fswatch {
    struct sandbox *sb; /* a reference */
    int ifd;            /* the inotify instance, -1 once closed */
    bool recursive, include_entry;
    char base[PATH_MAX];
    struct wdir *dirs;
    size_t n_dirs;
};

/* Closes the inotify instance: no events any more. The sandbox reference stays. */
static void fswatch_close(struct fswatch *fw)
{
    if (fw->ifd >= 0)
        close(fw->ifd);
    fw->ifd = -1;
    for (size_t i = 0; i < fw->n_dirs; i++)
        free(fw->dirs[i].rel);
    free(fw->dirs);
    fw->dirs = NULL;
    fw->n_dirs = 0;
}

static void fswatch_done(struct fswatch *fw)
{
    fswatch_close(fw);
    if (fw->sb)
        fw->sb = sandbox_unref(fw->sb);
}

/* Watches base/rel (and, recursively, its subdirectories). */
static int watch_add(struct fswatch *fw, const char *rel, unsigned depth, sbx_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s%s", fw->base, *rel ? "/" : "", rel);
    if (fw->n_dirs >= WATCH_MAX_DIRS)
        return sbx_error_setk(err, -E2BIG, "resource_exhausted", 429, "more than %d directories to watch",
                              WATCH_MAX_DIRS);
    _cleanup_close_ int fd = -1;
    if (files_open_dir(fw->sb->rootfs_fd, path, &fd, err) < 0)
        return err->code;
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    int wd = inotify_add_watch(fw->ifd, proc, WATCH_MASK);
    if (wd < 0)
        return sbx_error_set(err, -errno, "watch `%s`: %m", path);
    fw->dirs = xrealloc(fw->dirs, (fw->n_dirs + 1) * sizeof(*fw->dirs));
    fw->dirs[fw->n_dirs++] = (struct wdir){.wd = wd, .rel = xstrdup(rel)};
    if (!fw->recursive || depth >= LIST_DEPTH_MAX)
        return 0;
    struct files_entry *entries = NULL;
    size_t n = 0;
    if (files_list(fw->sb->rootfs_fd, path, &entries, &n, LIST_MAX_ENTRIES, err) < 0)
        return err->code;
    int r = 0;
    for (size_t i = 0; i < n && r >= 0; i++) {
        if (entries[i].type != FILES_TYPE_DIR)
            continue;
        _cleanup_free_ char *sub = *rel ? xasprintf("%s/%s", rel, entries[i].name) : xstrdup(entries[i].name);
        r = watch_add(fw, sub, depth + 1, err);
    }
    free(entries);
    return r;
}

/* Starts watching path (resolved, inside sb's root) as msg asks (recursive, includeEntry). Returns 0, or a
 * negative errno with err filled. fswatch_done releases fw either way. */
static int fswatch_open(struct fswatch *fw, struct sandbox *sb, const char *path, json_t *msg, sbx_error *err)
{
    fw->sb = sandbox_ref(sb);
    fw->ifd = -1;
    fw->recursive = json_is_true(msg_field(msg, "recursive", "recursive"));
    fw->include_entry = json_is_true(msg_field(msg, "includeEntry", "include_entry"));
    snprintf(fw->base, sizeof(fw->base), "%s", path);
    struct files_entry e;
    if (files_stat(sb->rootfs_fd, path, &e, NULL) >= 0 && e.type != FILES_TYPE_DIR)
        return sbx_error_setk(err, -ENOTDIR, "invalid_argument", 400, "path is not a directory");
    fw->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fw->ifd < 0)
        return sbx_error_setk(err, -errno, "resource_exhausted", 429, "inotify: %m");
    return watch_add(fw, "", 0, err);
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

/* What a watch does with one FilesystemEvent (it takes ownership): 0 to go on, or a negative errno with
 * err filled to stop. */
typedef int (*fswatch_event_fn)(json_t *event, void *userdata, sbx_error *err);

/* Reads what inotify has queued and hands fn each FilesystemEvent ({name, type[, entry]}); a new
 * directory in a recursive watch is watched too. Returns 0, or a negative errno with err filled: fn's, or
 * the kernel's queue overflowed (events were lost), or too many directories. */
static int fswatch_read(struct fswatch *fw, fswatch_event_fn fn, void *userdata, sbx_error *err)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (fw->ifd >= 0) {
        ssize_t n = read(fw->ifd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW)
                return sbx_error_setk(err, -ENOBUFS, "resource_exhausted", 429,
                                      "too many filesystem events at once");
            const char *rel = NULL;
            for (size_t i = 0; i < fw->n_dirs && !rel; i++)
                if (fw->dirs[i].wd == ev->wd)
                    rel = fw->dirs[i].rel;
            const char *type = watch_event_type(ev->mask);
            if (!rel || !type || !ev->len)
                continue;
            _cleanup_free_ char *name = *rel ? xasprintf("%s/%s", rel, ev->name) : xstrdup(ev->name);
            json_t *fe = json_pack("{s:s, s:s}", "name", name, "type", type);
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s", fw->base, name);
            struct files_entry e;
            if (fw->include_entry && strcmp(type, "EVENT_TYPE_REMOVE") != 0 &&
                strcmp(type, "EVENT_TYPE_RENAME") != 0 && files_stat(fw->sb->rootfs_fd, path, &e, NULL) >= 0)
                json_object_set_new(fe, "entry", entry_json(&e));
            if (fn(fe, userdata, err) < 0)
                return err->code;
            /* A new directory in a recursive watch is watched too. */
            sbx_error werr = {0};
            if (fw->recursive && (ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO)) &&
                watch_add(fw, name, 1, &werr) < 0 && werr.code == -E2BIG) {
                *err = werr;
                return err->code;
            }
        }
    }
    return 0;
}

/* --- WatchDir: the events as a server stream -------------------------------------------------- */

struct wstream {
    struct loop_io io;
    struct loop_timer keepalive;
    struct loop_timer deadline;
    struct daemon *d;
    struct http_request *req;
    struct fswatch fw; /* its sandbox is attached: not idle while this client streams */
    bool watching;
    usec_t interval;
};

static void wstream_free(struct wstream *w)
{
    if (w->watching)
        loop_io_stop(w->d->loop, &w->io);
    loop_timer_stop(w->d->loop, &w->keepalive);
    loop_timer_stop(w->d->loop, &w->deadline);
    sandbox_detach(w->fw.sb);
    fswatch_done(&w->fw);
    free(w);
}

static void wstream_end(struct wstream *w, const char *code, const char *message)
{
    connect_stream_end(w->req, code, message);
    wstream_free(w);
}

static int wstream_event(json_t *event, void *userdata, sbx_error *err)
{
    struct wstream *w = userdata;
    connect_stream_send(w->req, json_pack("{s:o}", "filesystem", event));
    return 0;
}

static void wstream_on_io(struct loop_io *io, uint32_t revents)
{
    struct wstream *w = container_of(io, struct wstream, io);
    sbx_error err = {0};
    if (fswatch_read(&w->fw, wstream_event, w, &err) < 0)
        wstream_end(w, connect_code_for(&err), err.msg);
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
    struct wstream *w = xcalloc(1, sizeof(*w));
    if (fswatch_open(&w->fw, sb, path, msg, &err) < 0) {
        fswatch_done(&w->fw);
        free(w);
        return connect_stream_error(c->req, connect_code_for(&err), err.msg);
    }
    w->d = c->d;
    w->req = c->req;
    sandbox_attach(sb);
    const char *ka = http_header_get(c->req, "Keepalive-Ping-Interval");
    long ka_s = ka ? strtol(ka, NULL, 10) : 0;
    w->interval = (usec_t)(ka_s > 0 && ka_s < 3600 ? ka_s : KEEPALIVE_DEFAULT_S) * USEC_PER_SEC;
    w->io.cb = wstream_on_io;
    loop_io_start(c->d->loop, &w->io, w->fw.ifd, EPOLLIN, NULL);
    w->watching = true;
    http_request_on_abort(c->req, wstream_on_abort, w);
    connect_stream_begin(c->req);
    connect_stream_send(c->req, json_pack("{s:{}}", "start"));
    loop_timer_start(c->d->loop, &w->keepalive, w->interval, wstream_on_keepalive);
    int64_t deadline = connect_timeout_ms(c->req);
    if (deadline > 0)
        loop_timer_start(c->d->loop, &w->deadline, (usec_t)deadline * USEC_PER_MSEC, wstream_on_deadline);
}

/* --- CreateWatcher, GetWatcherEvents, RemoveWatcher: a watch whose events wait to be polled ------ */

#define WATCHERS_PER_SANDBOX_MAX 32
#define WATCHER_EVENTS_MAX 4096 /* queued between two GetWatcherEvents; beyond, the watcher fails */
#define WATCHER_SWEEP_USEC (2 * USEC_PER_SEC)

struct pwatcher {
    struct pwatcher *prev, *next;
    struct loop_io io;
    struct fswatch fw;
    char id[SBX_ID_MAX + 1];
    pid_t shim_pid, init_pid; /* its sandbox's when it was made: another start ends the watcher */
    json_t *events;           /* FilesystemEvents not fetched yet */
    sbx_error broken;         /* code < 0 once it failed: what every GetWatcherEvents answers then */
    bool watching;
};

/* The daemon's polling watchers (sbxd runs one daemon per process). They outlive requests, and end with
 * RemoveWatcher or, found by the sweep, when their sandbox stops, is deleted or starts again. */
static struct {
    struct daemon *d;
    struct pwatcher *list;
    struct loop_timer sweep;
} watchers;

/* Stops watching: no events any more (the queue stays). */
static void pwatcher_stop(struct pwatcher *w)
{
    if (w->watching)
        loop_io_stop(watchers.d->loop, &w->io);
    w->watching = false;
    fswatch_close(&w->fw);
}

static void pwatcher_free(struct pwatcher *w)
{
    pwatcher_stop(w);
    if (w->prev)
        w->prev->next = w->next;
    else
        watchers.list = w->next;
    if (w->next)
        w->next->prev = w->prev;
    fswatch_done(&w->fw);
    json_decref(w->events);
    free(w);
    if (!watchers.list)
        loop_timer_stop(watchers.d->loop, &watchers.sweep);
}

static int pwatcher_event(json_t *event, void *userdata, sbx_error *err)
{
    struct pwatcher *w = userdata;
    if (json_array_size(w->events) >= WATCHER_EVENTS_MAX) {
        json_decref(event);
        return sbx_error_setk(err, -ENOBUFS, "resource_exhausted", 429,
                              "more than %d events waited for GetWatcherEvents and later ones were lost: "
                              "remove this watcher and create a new one",
                              WATCHER_EVENTS_MAX);
    }
    json_array_append_new(w->events, event);
    return 0;
}

/* Queues what the kernel has; a failure breaks the watcher for good (envd's watchers do the same). */
static void pwatcher_drain(struct pwatcher *w)
{
    sbx_error err = {0};
    if (!w->watching || fswatch_read(&w->fw, pwatcher_event, w, &err) >= 0)
        return;
    w->broken = err;
    pwatcher_stop(w);
    json_array_clear(w->events);
}

static void pwatcher_on_io(struct loop_io *io, uint32_t revents)
{
    pwatcher_drain(container_of(io, struct pwatcher, io));
}

/* Whether w's sandbox was deleted, stopped, or started again since (its watches then see nothing). */
static bool pwatcher_stale(const struct pwatcher *w)
{
    const struct sandbox *sb = w->fw.sb;
    return sb->deleted || (sb->state != SANDBOX_RUNNING && sb->state != SANDBOX_PAUSED) ||
           sb->shim_pid != w->shim_pid || sb->init_pid != w->init_pid;
}

/* Frees the stale watchers; returns how many of the others belong to sb (may be NULL). */
static size_t watchers_sweep_now(const struct sandbox *sb)
{
    size_t n = 0;
    for (struct pwatcher *w = watchers.list, *next; w; w = next) {
        next = w->next;
        if (pwatcher_stale(w))
            pwatcher_free(w);
        else if (w->fw.sb == sb)
            n++;
    }
    return n;
}

static void watchers_on_sweep(struct loop_timer *t)
{
    watchers_sweep_now(NULL);
    if (watchers.list)
        loop_timer_start(watchers.d->loop, &watchers.sweep, WATCHER_SWEEP_USEC, watchers_on_sweep);
}

/* The watcher msg names, of sandbox sb; NULL with a not_found error. */
static struct pwatcher *pwatcher_find(struct sandbox *sb, json_t *msg, sbx_error *err)
{
    const char *id = json_string_value(msg_field(msg, "watcherId", "watcher_id"));
    if (!id || !*id) {
        sbx_error_set(err, -EINVAL, "`watcherId` is required");
        return NULL;
    }
    watchers_sweep_now(NULL);
    for (struct pwatcher *w = watchers.list; w; w = w->next)
        if (w->fw.sb == sb && strcmp(w->id, id) == 0)
            return w;
    sbx_error_set(err, -ENOENT, "watcher with id %s not found", id);
    return NULL;
}

static void fs_create_watcher(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    char path[PATH_MAX];
    _cleanup_(sandbox_unrefp) struct sandbox *sb = fs_sandbox(c, msg, "path", path, &err);
    if (!sb)
        return connect_reply_sbx_error(c->req, &err);
    watchers.d = c->d;
    if (watchers_sweep_now(sb) >= WATCHERS_PER_SANDBOX_MAX) {
        sbx_error_setk(&err, -EMFILE, "resource_exhausted", 429,
                       "sandbox `%s` has %d watchers already: remove one first", sb->id,
                       WATCHERS_PER_SANDBOX_MAX);
        return connect_reply_sbx_error(c->req, &err);
    }
    struct pwatcher *w = xcalloc(1, sizeof(*w));
    if (fswatch_open(&w->fw, sb, path, msg, &err) < 0) {
        fswatch_done(&w->fw);
        free(w);
        return connect_reply_sbx_error(c->req, &err);
    }
    int r = loop_io_start(c->d->loop, &w->io, w->fw.ifd, EPOLLIN, pwatcher_on_io);
    if (r < 0) {
        fswatch_done(&w->fw);
        free(w);
        sbx_error_set(&err, r, "watch: %s", strerror(-r));
        return connect_reply_sbx_error(c->req, &err);
    }
    w->watching = true;
    id_generate(w->id, sizeof(w->id), "w_");
    w->shim_pid = sb->shim_pid;
    w->init_pid = sb->init_pid;
    w->events = json_array();
    w->next = watchers.list;
    if (w->next)
        w->next->prev = w;
    watchers.list = w;
    if (!watchers.sweep.active)
        loop_timer_start(c->d->loop, &watchers.sweep, WATCHER_SWEEP_USEC, watchers_on_sweep);
    connect_reply(c->req, json_pack("{s:s}", "watcherId", w->id));
}

static void fs_get_watcher_events(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    _cleanup_(sandbox_unrefp) struct sandbox *sb = envd_sandbox(c, &err);
    struct pwatcher *w = sb ? pwatcher_find(sb, msg, &err) : NULL;
    if (!w)
        return connect_reply_sbx_error(c->req, &err);
    pwatcher_drain(w); /* what happened up to this request, even if the loop has not looked yet */
    if (w->broken.code < 0)
        return connect_reply_sbx_error(c->req, &w->broken);
    json_t *events = w->events;
    w->events = json_array();
    connect_reply(c->req, json_pack("{s:o}", "events", events));
}

static void fs_remove_watcher(struct api_ctx *c, json_t *msg)
{
    sbx_error err = {0};
    _cleanup_(sandbox_unrefp) struct sandbox *sb = envd_sandbox(c, &err);
    struct pwatcher *w = sb ? pwatcher_find(sb, msg, &err) : NULL;
    if (!w)
        return connect_reply_sbx_error(c->req, &err);
    pwatcher_free(w);
    connect_reply(c->req, NULL);
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
    {"/filesystem.Filesystem/Stat", fs_stat},
    {"/filesystem.Filesystem/MakeDir", fs_make_dir},
    {"/filesystem.Filesystem/Move", fs_move},
    {"/filesystem.Filesystem/ListDir", fs_list_dir},
    {"/filesystem.Filesystem/Remove", fs_remove},
    {"/filesystem.Filesystem/WatchDir", fs_watch_dir},
    {"/filesystem.Filesystem/CreateWatcher", fs_create_watcher},
    {"/filesystem.Filesystem/GetWatcherEvents", fs_get_watcher_events},
    {"/filesystem.Filesystem/RemoveWatcher", fs_remove_watcher},
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

/* multipart/form-data (http/multipart): every part called "file" is one file, its filename the path (or
 * the query's path when there is one). */
struct multipart_upload {
    struct sandbox *sb;
    const char *user, *qpath;
    json_t *out;
    struct files_writer w;
    bool open; /* w needs commit or abort */
};

static int upload_part_begin(void *userdata, const struct multipart_part *part, sbx_error *err)
{
    struct multipart_upload *u = userdata;
    if (strcmp(part->name, "file") != 0)
        return 0;
    if (!(u->qpath && *u->qpath) && !part->filename[0])
        return sbx_error_set(err, -EINVAL, "a file part has no filename and the request no path");
    char path[PATH_MAX];
    resolve_path(u->user, u->qpath && *u->qpath ? u->qpath : part->filename, path);
    if (files_writer_open(u->sb->rootfs_fd, path, 0644, u->sb->uid_base, u->sb->uid_base, &u->w, err) < 0)
        return err->code;
    u->open = true;
    return 0;
}

static int upload_part_data(void *userdata, const char *data, size_t len, sbx_error *err)
{
    struct multipart_upload *u = userdata;
    return u->open ? files_writer_write(&u->w, data, len, err) : 0;
}

static int upload_part_end(void *userdata, sbx_error *err)
{
    struct multipart_upload *u = userdata;
    if (!u->open)
        return 0;
    u->open = false;
    if (files_writer_commit(&u->w, err) < 0)
        return err->code;
    const char *slash = strrchr(u->w.path, '/');
    json_array_append_new(u->out, json_pack("{s:s, s:s, s:s}", "name", slash ? slash + 1 : u->w.path, "type",
                                            "file", "path", u->w.path));
    return 0;
}

static const struct multipart_callbacks upload_callbacks = {
    .part_begin = upload_part_begin,
    .part_data = upload_part_data,
    .part_end = upload_part_end,
};

static int write_multipart(struct sandbox *sb, const char *user, const char *qpath, const char *boundary,
                           const char *body, size_t len, json_t *out, sbx_error *err)
{
    struct multipart_upload u = {.sb = sb, .user = user, .qpath = qpath, .out = out};
    struct multipart mp;
    multipart_init(&mp, boundary, &upload_callbacks, &u);
    int r = multipart_feed(&mp, body, len, err);
    if (r == 0)
        r = multipart_finish(&mp, err);
    multipart_done(&mp);
    if (u.open)
        files_writer_abort(&u.w);
    return r;
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
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    int r;
    if (strncasecmp(ct, "multipart/form-data", 19) == 0) {
        if (!multipart_boundary(ct, boundary))
            return e2b_reply_error(req, 400, "multipart body without a valid boundary");
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
    if (strcmp(path, "/process.Process/StreamInput") == 0) {
        if (m != HTTP_METHOD_POST)
            return connect_reply_error(req, "unimplemented", "Connect RPCs are POST");
        return process_stream_input(e2b_ctx_new(d, req, "e2b:process", sandbox_id, NULL));
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
