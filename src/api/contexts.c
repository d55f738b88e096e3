/* Code contexts (contexts.h): the drivers' lifecycle, the run protocol and the native
 * /v1/sandboxes/{id}/contexts routes.
 *
 * A run attaches to the context's command at its current output offsets, writes the cell and the line
 * "\x1e<token> <nonce>" to the driver's stdin, and forwards the driver's output up to its markers: on stdout
 * "\x1e<token> <nonce> D <json>\n" (a rich output) and "\x1e<token> <nonce> R <json>\n" (the cell's result),
 * on stderr "\x1e<token> <nonce> E\n". A marker may start mid-line (the cell's output need not end with a
 * newline): it is cut out wherever it starts, so the cell's own bytes pass unchanged and each line goes out
 * as soon as the driver writes it. The run ends when both streams reached their end marker. The token
 * is random per context, the nonce per run: output of an earlier cell that outlived its client (after an
 * sbxd restart) cannot end a later run. The drivers are embedded C arrays made from src/api/drivers at
 * build time, passed as the interpreter's -c/-e argument: nothing is installed into the sandbox, so any
 * snapshot with python3, node or bash works, and the driver always matches the sbxd that speaks to it. */
#include "api/contexts.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/codec.h"
#include "api/context_drivers.h"
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
#include "files/files.h"
#include "loop/loop.h"
#include "shimclient/shim_client.h"
#include "shimclient/shim_protocol.h"

#define CONTEXT_FILES_MAX 64            /* records (live or ended) per sandbox */
#define CONTEXT_RECORD_MAX (64u * 1024) /* one record file */
#define MARKER_LINE_MAX (16u << 20)     /* one display or result line from a driver */
#define RUN_TIMEOUT_MAX_SEC (24.0 * 3600)
#define INTERRUPT_GRACE_USEC (10 * USEC_PER_SEC) /* after a timeout's SIGINT, before the context is ended */
#define SHIM_READ_CHUNK (64 * 1024)
#define CONTEXT_TTL_SECONDS 600 /* an ended driver's status stays this long (the shim's ttl) */
#define ENV_MAX_ENTRIES 1024
#define ENV_MAX_ENTRY (32 * 1024)
#define WAIT_CAPTURE_MAX (4u << 20)  /* a non-streamed run: stdout and stderr kept, each */
#define WAIT_OUTPUTS_MAX (32u << 20) /* a non-streamed run: rich outputs kept, in total */
#define SSE_KEEPALIVE_USEC (15 * USEC_PER_SEC)

/* --- languages and records ------------------------------------------------------------------------ */

const char *context_language(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, "python") == 0 || strcmp(name, "python3") == 0)
        return "python";
    if (strcmp(name, "node") == 0 || strcmp(name, "javascript") == 0 || strcmp(name, "js") == 0)
        return "node";
    if (strcmp(name, "bash") == 0)
        return "bash";
    return NULL;
}

static bool context_id_ok(const char *id)
{
    return id && strncmp(id, "ctx_", 4) == 0 && strlen(id) <= SBX_ID_MAX && id_is_valid(id);
}

static char *records_dir(struct sandbox *sb)
{
    return xasprintf("%s/contexts", sb->state_dir);
}

static int record_load(struct sandbox *sb, const char *id, json_t **ret, sbx_error *err)
{
    if (!context_id_ok(id))
        return sbx_error_setk(err, -ENOENT, "not_found", 404, "context `%s` not found", id);
    _cleanup_free_ char *path = xasprintf("%s/contexts/%s.json", sb->state_dir, id);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return sbx_error_setk(err, -ENOENT, "not_found", 404, "context `%s` not found", id);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > CONTEXT_RECORD_MAX)
        return sbx_error_set(err, -EBADMSG, "context `%s`: its record is unreadable", id);
    _cleanup_free_ char *buf = xmalloc((size_t)st.st_size + 1);
    ssize_t n;
    do
        n = read(fd, buf, (size_t)st.st_size);
    while (n < 0 && errno == EINTR);
    json_t *j = n >= 0 ? json_loadb(buf, (size_t)n, 0, NULL) : NULL;
    if (!json_is_object(j) || !json_is_string(json_object_get(j, "token"))) {
        json_decref(j);
        return sbx_error_set(err, -EBADMSG, "context `%s`: its record is malformed", id);
    }
    *ret = j;
    return 0;
}

static int record_save(struct sandbox *sb, const char *id, json_t *rec, sbx_error *err)
{
    _cleanup_free_ char *dir = records_dir(sb);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return sbx_error_set(err, -errno, "create `%s`: %m", dir);
    _cleanup_free_ char *path = xasprintf("%s/%s.json", dir, id), *tmp = xasprintf("%s.tmp", path);
    _cleanup_free_ char *text = json_dumps(rec, JSON_COMPACT);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return sbx_error_set(err, -errno, "create `%s`: %m", tmp);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int r = sbx_error_set(err, -errno, "write `%s`: %m", tmp);
            unlink(tmp);
            return r;
        }
        off += (size_t)n;
    }
    if (rename(tmp, path) < 0) {
        int r = sbx_error_set(err, -errno, "rename `%s`: %m", tmp);
        unlink(tmp);
        return r;
    }
    return 0;
}

/* The context ids with a record, oldest first (ids sort by nothing useful: order by created_at). */
static json_t *record_all(struct sandbox *sb)
{
    json_t *out = json_array();
    _cleanup_free_ char *dir = records_dir(sb);
    _cleanup_closedir_ DIR *d = opendir(dir);
    if (!d)
        return out;
    struct dirent *de;
    while ((de = readdir(d)) && json_array_size(out) < CONTEXT_FILES_MAX) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        _cleanup_free_ char *id = xstrndup(de->d_name, n - 5);
        json_t *rec = NULL;
        if (record_load(sb, id, &rec, NULL) < 0)
            continue;
        size_t i = json_array_size(out);
        json_int_t at = json_integer_value(json_object_get(rec, "created_ms"));
        while (i > 0 && json_integer_value(json_object_get(json_array_get(out, i - 1), "created_ms")) > at)
            i--;
        json_array_insert_new(out, i, rec);
    }
    return out;
}

/* --- runs in progress ------------------------------------------------------------------------------- */

struct context_run {
    struct loop_io io;
    struct loop_timer timer;  /* the cell's timeout, then the grace after its SIGINT */
    struct context_run *next; /* in runs */
    struct sandbox *sb;
    char ctx[SBX_ID_MAX + 1];
    char needle[64]; /* "\x1e<token> ": the start of every marker */
    size_t needle_len;
    char nonce[24];
    int fd;
    int watched;
    struct sbx_buf in;      /* shim frames not parsed yet */
    struct sbx_buf pend[2]; /* per stream: bytes held back (a possible marker start, or a marker line) */
    bool in_marker[2];
    bool oversized[2]; /* the marker line being read is over MARKER_LINE_MAX: dropped */
    char oversized_kind[2];
    int markers; /* bit s: stream s reached its end marker */
    json_t *final;
    usec_t started;
    bool attached, paused, finished, timed_out, grace, eof;
    const struct context_run_ops *ops; /* NULL once abandoned */
    void *userdata;
};

static struct context_run *runs;

static struct context_run *run_find(const char *sandbox_id, const char *ctx)
{
    for (struct context_run *r = runs; r; r = r->next)
        if (strcmp(r->ctx, ctx) == 0 && strcmp(r->sb->id, sandbox_id) == 0)
            return r;
    return NULL;
}

static void run_free(struct context_run *r)
{
    for (struct context_run **pp = &runs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    if (r->watched)
        loop_io_stop(r->sb->d->loop, &r->io);
    loop_timer_stop(r->sb->d->loop, &r->timer);
    if (r->fd >= 0)
        close(r->fd);
    sbx_buf_done(&r->in);
    sbx_buf_done(&r->pend[0]);
    sbx_buf_done(&r->pend[1]);
    json_decref(r->final);
    if (r->attached)
        sandbox_detach(r->sb);
    sandbox_unref(r->sb);
    free(r);
}

static void emit(struct context_run *r, int s, const char *data, size_t len)
{
    if (len && r->ops && r->ops->output(r->userdata, s, data, len))
        r->paused = true;
}

/* Copies the driver's error object as {name, value, traceback: [strings]} (what the cell's code could put
 * there is only ever strings to a client). */
static json_t *error_json(json_t *e)
{
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *value = json_string_value(json_object_get(e, "value"));
    json_t *tb = json_array(), *v;
    size_t i;
    json_array_foreach(json_object_get(e, "traceback"), i, v) if (json_is_string(v)) json_array_append(tb, v);
    return json_pack("{s:s, s:s, s:o}", "name", name ? name : "Error", "value", value ? value : "",
                     "traceback", tb);
}

static json_t *result_base(struct context_run *r)
{
    json_t *res = json_pack("{s:s, s:I}", "context_id", r->ctx, "duration_ms",
                            (json_int_t)((now_usec(CLOCK_MONOTONIC) - r->started) / USEC_PER_MSEC));
    if (r->timed_out)
        json_object_set_new(res, "timed_out", json_true());
    return res;
}

static void finish(struct context_run *r, json_t *res)
{
    r->finished = true;
    if (r->ops)
        r->ops->done(r->userdata, res);
    r->ops = NULL;
    json_decref(res);
}

static void finish_ok(struct context_run *r)
{
    json_t *res = result_base(r), *f = r->final, *v;
    v = json_object_get(f, "count");
    json_object_set_new(res, "execution_count",
                        json_is_integer(v) ? json_integer(json_integer_value(v)) : json_null());
    v = json_object_get(f, "data");
    if (json_is_object(v) && json_object_size(v) > 0) {
        json_object_set(res, "data", v);
        const char *text = json_string_value(json_object_get(v, "text/plain"));
        if (text)
            json_object_set_new(res, "text", json_string(text));
    }
    v = json_object_get(f, "error");
    if (json_is_object(v))
        json_object_set_new(res, "error", error_json(v));
    v = json_object_get(f, "exit_code");
    if (json_is_integer(v))
        json_object_set_new(res, "exit_code", json_integer(json_integer_value(v)));
    finish(r, res);
}

/* The interpreter is gone (the cell exited it, a kill, a stopped sandbox): the context has ended. */
static void finish_ended(struct context_run *r, const char *why)
{
    for (int s = 0; s < 2; s++)
        if (!r->in_marker[s]) {
            emit(r, s, r->pend[s].base, r->pend[s].len);
            r->pend[s].len = 0;
        }
    json_t *res = result_base(r);
    json_object_set_new(res, "execution_count", json_null());
    json_object_set_new(res, "context_ended", json_true());
    json_object_set_new(res, "error",
                        json_pack("{s:s, s:s, s:[]}", "name", "ContextEnded", "value", why, "traceback"));
    finish(r, res);
}

/* One marker line (after the needle): "<nonce> <kind>[ <json>]". */
static void marker_line(struct context_run *r, int s, const char *p, size_t n, char oversized_kind)
{
    size_t nl = strlen(r->nonce);
    if (n < nl + 2 || memcmp(p, r->nonce, nl) != 0 || p[nl] != ' ')
        return; /* an earlier run's marker: its client is long gone */
    char kind = oversized_kind ? oversized_kind : p[nl + 1];
    const char *js = p + nl + 2;
    size_t jl = n - nl - 2;
    if (jl > 0 && *js == ' ')
        js++, jl--;
    if (s == 1) {
        if (kind == 'E')
            r->markers |= 2;
    } else if (kind == 'D') {
        json_auto_t *m = oversized_kind ? NULL : json_loadb(js, jl, 0, NULL);
        json_t *data = json_object_get(m, "data");
        if (!json_is_object(data))
            return;
        if (r->ops && r->ops->display(r->userdata, data))
            r->paused = true;
    } else if (kind == 'R') {
        json_decref(r->final);
        r->final = oversized_kind ? NULL : json_loadb(js, jl, 0, NULL);
        if (!json_is_object(r->final)) {
            json_decref(r->final);
            r->final = json_pack("{s:{s:s, s:s, s:[]}}", "error", "name", "OutputTooLarge", "value",
                                 "the cell's result was too large or malformed", "traceback");
        }
        r->markers |= 1;
    }
    if (r->markers == 3)
        finish_ok(r);
}

/* The length of the longest suffix of p[0..n) that is a proper prefix of the needle. */
static size_t partial_needle(const struct context_run *r, const char *p, size_t n)
{
    size_t max = n < r->needle_len - 1 ? n : r->needle_len - 1;
    for (size_t k = max; k > 0; k--)
        if (memcmp(p + n - k, r->needle, k) == 0)
            return k;
    return 0;
}

/* Output of stream s from the driver: the cell's bytes go out, markers are taken out. */
static void feed(struct context_run *r, int s, const char *data, size_t len)
{
    struct sbx_buf *b = &r->pend[s];
    sbx_buf_append(b, data, len);
    while (!r->finished) {
        if (r->in_marker[s]) {
            char *nl = memchr(b->base, '\n', b->len);
            if (!nl) {
                if (b->len > MARKER_LINE_MAX) {
                    size_t nlen = strlen(r->nonce);
                    if (!r->oversized[s] && b->len > nlen + 1 && memcmp(b->base, r->nonce, nlen) == 0)
                        r->oversized_kind[s] = b->base[nlen + 1];
                    r->oversized[s] = true;
                    b->len = 0;
                }
                return;
            }
            size_t n = (size_t)(nl - b->base);
            if (r->oversized[s]) {
                char head[40];
                snprintf(head, sizeof(head), "%s %c", r->nonce, r->oversized_kind[s]);
                marker_line(r, s, head, strlen(head), r->oversized_kind[s] ? r->oversized_kind[s] : '?');
            } else {
                marker_line(r, s, b->base, n, 0);
            }
            r->oversized[s] = false;
            r->oversized_kind[s] = 0;
            sbx_buf_consume(b, n + 1);
            r->in_marker[s] = false;
            continue;
        }
        char *at = memmem(b->base, b->len, r->needle, r->needle_len);
        if (at) {
            size_t n = (size_t)(at - b->base);
            emit(r, s, b->base, n);
            sbx_buf_consume(b, n + r->needle_len);
            r->in_marker[s] = true;
            continue;
        }
        size_t keep = partial_needle(r, b->base, b->len);
        emit(r, s, b->base, b->len - keep);
        sbx_buf_consume(b, b->len - keep);
        return;
    }
}

static void process_frames(struct context_run *r)
{
    size_t pos = 0;
    while (!r->finished && !r->paused) {
        struct shim_frame f;
        long n = shim_frame_parse((const uint8_t *)r->in.base + pos, r->in.len - pos, &f);
        if (n == 0)
            break;
        if (n < 0) {
            finish_ended(r, "malformed output from the sandbox's shim");
            break;
        }
        pos += (size_t)n;
        uint8_t stream;
        uint64_t off;
        const uint8_t *data;
        size_t len;
        if (f.type == SHIM_FRAME_DATA && shim_frame_data_parse(&f, &stream, &off, &data, &len) == 0) {
            feed(r, stream == SHIM_STREAM_STDERR, (const char *)data, len);
        } else if (f.type == SHIM_FRAME_EXIT) {
            json_auto_t *st = json_loadb((const char *)f.payload, f.len, 0, NULL);
            json_t *ec = json_object_get(st, "exit_code"), *sig = json_object_get(st, "signal");
            char why[96];
            if (json_is_integer(sig))
                snprintf(why, sizeof(why), "the context's interpreter was killed by signal %lld",
                         (long long)json_integer_value(sig));
            else
                snprintf(why, sizeof(why), "the context's interpreter exited with status %lld",
                         (long long)json_integer_value(ec));
            finish_ended(r, why);
        } else if (f.type == SHIM_FRAME_RESPONSE) {
            finish_ended(r, "the context's output could not be attached");
        }
    }
    sbx_buf_consume(&r->in, pos);
}

static void run_update_watch(struct context_run *r)
{
    int want = r->fd >= 0 && !r->paused && !r->finished ? EPOLLIN : 0;
    if (want == r->watched)
        return;
    if (want)
        loop_io_start(r->sb->d->loop, &r->io, r->fd, (uint32_t)want, NULL);
    else
        loop_io_stop(r->sb->d->loop, &r->io);
    r->watched = want;
}

/* Reads what the shim sent; frees r once it finished (callers must not touch it afterwards). */
static void run_pump(struct context_run *r)
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
        r->eof = true;
        break;
    }
    process_frames(r);
    /* The shim closed the stream: once every frame it sent is through, the driver has gone without an
     * exit frame (the sandbox stopped or was deleted). */
    if (r->eof && !r->finished && !r->paused)
        finish_ended(r, "the sandbox stopped while the cell ran");
    if (r->finished)
        return run_free(r);
    run_update_watch(r);
}

static void run_on_io(struct loop_io *io, uint32_t revents)
{
    run_pump(container_of(io, struct context_run, io));
}

void context_runs_close_all(void)
{
    while (runs) {
        runs->ops = NULL;
        run_free(runs);
    }
}

void context_run_resume(struct context_run *r)
{
    r->paused = false;
    run_pump(r);
}

void context_run_abandon(struct context_run *r)
{
    r->ops = NULL;
    r->userdata = NULL;
    if (r->attached) {
        sandbox_detach(r->sb);
        r->attached = false;
    }
    context_run_resume(r);
}

static int signal_driver(struct sandbox *sb, const char *cid, int sig, sbx_error *err)
{
    json_auto_t *req =
        json_pack("{s:s, s:s, s:i, s:b}", "op", "signal", "id", cid, "signal", sig, "session", 1);
    json_auto_t *resp = NULL;
    return sandbox_shim_call(sb, req, &resp, err);
}

static void run_on_timer(struct loop_timer *t)
{
    struct context_run *r = container_of(t, struct context_run, timer);
    if (!r->grace) {
        /* The cell's time is up: interrupt it; a cell that ignores SIGINT ends the context. */
        r->timed_out = r->grace = true;
        if (signal_driver(r->sb, r->ctx, SIGINT, NULL) < 0)
            log_debug("context `%s`: interrupt after its timeout failed", r->ctx);
        loop_timer_start(r->sb->d->loop, &r->timer, INTERRUPT_GRACE_USEC, run_on_timer);
        return;
    }
    json_auto_t *req = json_pack("{s:s, s:s}", "op", "kill", "id", r->ctx), *resp = NULL;
    if (sandbox_shim_call(r->sb, req, &resp, NULL) < 0)
        log_debug("context `%s`: kill after its timeout failed", r->ctx);
}

/* --- the operations ------------------------------------------------------------------------------------ */

/* The shim's state of the context's command: true when its driver runs. */
static bool driver_running(struct sandbox *sb, const char *cid)
{
    json_auto_t *req = json_pack("{s:s, s:s}", "op", "status", "id", cid), *resp = NULL;
    if (sb->state != SANDBOX_RUNNING && sb->state != SANDBOX_PAUSED)
        return false;
    if (sandbox_shim_call(sb, req, &resp, NULL) < 0)
        return false;
    return strcmp(json_string_value(json_object_get(json_object_get(resp, "command"), "state")) ?: "",
                  "running") == 0;
}

static json_t *context_json(struct sandbox *sb, json_t *rec)
{
    const char *id = json_string_value(json_object_get(rec, "id")) ?: "";
    const char *state = !driver_running(sb, id) ? "ended" : run_find(sb->id, id) ? "busy" : "idle";
    char at[40];
    format_time_ms(at, sizeof(at), json_integer_value(json_object_get(rec, "created_ms")));
    return json_pack("{s:s, s:O, s:O, s:s, s:s, s:s}", "id", id, "language", json_object_get(rec, "language"),
                     "cwd", json_object_get(rec, "cwd"), "state", state, "created_at", at, "command_id", id);
}

static const char *find_program(struct sandbox *sb, const char *const *paths)
{
    struct files_entry e;
    for (; *paths; paths++)
        if (files_stat(sb->rootfs_fd, *paths, &e, NULL) == 0 &&
            (e.type == FILES_TYPE_FILE || e.type == FILES_TYPE_SYMLINK))
            return *paths;
    return NULL;
}

int context_create(struct sandbox *sb, const char *language, const char *cwd, json_t *env, json_t **ret,
                   sbx_error *err)
{
    static const char *const pythons[] = {"/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3", NULL};
    static const char *const nodes[] = {"/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs", NULL};
    static const char *const bashes[] = {"/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash", NULL};
    if (sandbox_need_up(sb, err) < 0 || api_files_ready(sb, err) < 0)
        return err->code;
    assert(context_language(language));
    bool py = strcmp(language, "python") == 0, node = strcmp(language, "node") == 0;
    const char *prog = find_program(sb, py ? pythons : node ? nodes : bashes);
    if (!prog)
        return sbx_error_setk(err, -ENOENT, "unsupported", 400, "%s is not installed in the sandbox's image",
                              py     ? "python3"
                              : node ? "node"
                                     : "bash");
    if (!cwd)
        cwd = snapshot_default_cwd(sb->d, sb->snapshot);
    struct files_entry e;
    if (cwd[0] != '/')
        return sbx_error_set(err, -EINVAL, "`cwd` must be an absolute path");
    if (files_stat(sb->rootfs_fd, cwd, &e, NULL) < 0 ||
        (e.type != FILES_TYPE_DIR && e.type != FILES_TYPE_SYMLINK))
        return sbx_error_set(err, -EINVAL, "`cwd` `%s` is not a directory in the sandbox", cwd);

    json_auto_t *all = record_all(sb);
    if (json_array_size(all) >= CONTEXT_FILES_MAX)
        return sbx_error_setk(err, -EAGAIN, "resource_exhausted", 429,
                              "sandbox `%s` has %d contexts: delete some first", sb->id, CONTEXT_FILES_MAX);
    size_t live = 0, i;
    json_t *v;
    json_array_foreach(all, i, v) if (driver_running(sb, json_string_value(json_object_get(v, "id")) ?: ""))
        live++;
    if (live >= CONTEXTS_MAX)
        return sbx_error_setk(err, -EAGAIN, "resource_exhausted", 429,
                              "sandbox `%s` has %d live contexts, the most it may have: delete one first",
                              sb->id, CONTEXTS_MAX);

    char id[SBX_ID_MAX + 1], token[33];
    id_generate(id, sizeof(id), "ctx_");
    id_generate(token, sizeof(token), "");
    json_t *cmd = py     ? json_pack("[s,s,s,s]", prog, "-u", "-c", CONTEXT_DRIVER_PYTHON)
                  : node ? json_pack("[s,s,s]", prog, "-e", CONTEXT_DRIVER_NODE)
                         : json_pack("[s,s,s]", prog, "-c", CONTEXT_DRIVER_BASH);
    json_t *denv = json_object();
    if (env)
        json_object_update(denv, env);
    json_object_set_new(denv, "SBX_CONTEXT_TOKEN", json_string(token));
    if (py) {
        json_object_set_new(denv, "PYTHONIOENCODING", json_string("utf-8"));
        if (!json_object_get(denv, "MPLBACKEND"))
            json_object_set_new(denv, "MPLBACKEND", json_string("Agg"));
    }
    json_auto_t *body =
        json_pack("{s:s, s:o, s:s, s:o, s:b, s:b, s:i, s:i}", "id", id, "command", cmd, "cwd", cwd, "env",
                  denv, "wait", 0, "stdin_open", 1, "idle_timeout", -1, "ttl_seconds", CONTEXT_TTL_SECONDS);
    json_auto_t *req = NULL, *resp = NULL;
    bool wait;
    if (api_command_exec_request(sb, body, &req, &wait, err) < 0 ||
        sandbox_shim_call(sb, req, &resp, err) < 0)
        return err->code;
    metrics_count(METRICS_COMMANDS_STARTED);
    json_auto_t *rec =
        json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", id, "language", language, "cwd", cwd, "token", token,
                  "created_ms", (json_int_t)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC));
    if (record_save(sb, id, rec, err) < 0) {
        json_auto_t *kreq = json_pack("{s:s, s:s}", "op", "kill", "id", id), *kresp = NULL;
        sandbox_shim_call(sb, kreq, &kresp, NULL);
        return err->code;
    }
    *ret = context_json(sb, rec);
    return 0;
}

int context_get(struct sandbox *sb, const char *id, json_t **ret, sbx_error *err)
{
    json_auto_t *rec = NULL;
    if (record_load(sb, id, &rec, err) < 0)
        return err->code;
    *ret = context_json(sb, rec);
    return 0;
}

json_t *context_list(struct sandbox *sb)
{
    json_auto_t *all = record_all(sb);
    json_t *out = json_array(), *v;
    size_t i;
    json_array_foreach(all, i, v) json_array_append_new(out, context_json(sb, v));
    return out;
}

int context_delete(struct sandbox *sb, const char *id, sbx_error *err)
{
    json_auto_t *rec = NULL;
    if (record_load(sb, id, &rec, err) < 0)
        return err->code;
    if (sb->state == SANDBOX_RUNNING || sb->state == SANDBOX_PAUSED) {
        json_auto_t *req = json_pack("{s:s, s:s}", "op", "kill", "id", id), *resp = NULL;
        sandbox_shim_call(sb, req, &resp, NULL); /* an ended driver is already gone */
    }
    _cleanup_free_ char *path = xasprintf("%s/contexts/%s.json", sb->state_dir, id);
    if (unlink(path) < 0 && errno != ENOENT)
        return sbx_error_set(err, -errno, "remove `%s`: %m", path);
    return 0;
}

int context_interrupt(struct sandbox *sb, const char *id, bool *ret_running, sbx_error *err)
{
    json_auto_t *rec = NULL;
    if (record_load(sb, id, &rec, err) < 0)
        return err->code;
    *ret_running = run_find(sb->id, id) != NULL;
    if (!driver_running(sb, id))
        return sbx_error_setk(err, -EBUSY, "context_ended", 409, "context `%s` has ended", id);
    /* Even with no run streaming: a driver between cells ignores SIGINT, and a cell whose client went
     * (an sbxd restart) is still interrupted. */
    return signal_driver(sb, id, SIGINT, err);
}

int context_run_start(struct sandbox *sb, const char *id, const char *code, double timeout_s,
                      const struct context_run_ops *ops, void *userdata, struct context_run **ret,
                      sbx_error *err)
{
    json_auto_t *rec = NULL;
    if (sandbox_need_up(sb, err) < 0 || record_load(sb, id, &rec, err) < 0)
        return err->code;
    size_t clen = strlen(code);
    if (clen > CONTEXT_CODE_MAX)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`code` is longer than %u bytes",
                              CONTEXT_CODE_MAX);
    if (run_find(sb->id, id))
        return sbx_error_setk(err, -EBUSY, "context_busy", 409,
                              "context `%s` is running a cell (interrupt it or wait)", id);
    const char *token = json_string_value(json_object_get(rec, "token"));
    if (strlen(token) < 8 || strlen(token) > 40)
        return sbx_error_set(err, -EBADMSG, "context `%s`: its record is malformed", id);
    json_auto_t *sreq = json_pack("{s:s, s:s}", "op", "status", "id", id), *sresp = NULL;
    json_t *st = NULL;
    if (sandbox_shim_call(sb, sreq, &sresp, NULL) < 0 ||
        strcmp(json_string_value(json_object_get(st = json_object_get(sresp, "command"), "state")) ?: "",
               "running") != 0)
        return sbx_error_setk(err, -EBUSY, "context_ended", 409,
                              "context `%s` has ended (its interpreter exited): delete it and create another",
                              id);
    int fd;
    if (shim_attach(sb->state_dir, id, (uint64_t)json_integer_value(json_object_get(st, "stdout_bytes")),
                    (uint64_t)json_integer_value(json_object_get(st, "stderr_bytes")), &fd, err) < 0)
        return err->code;
    struct context_run *r = xcalloc(1, sizeof(*r));
    r->fd = fd;
    r->io.cb = run_on_io;
    r->sb = sandbox_ref(sb);
    snprintf(r->ctx, sizeof(r->ctx), "%s", id);
    r->needle_len = (size_t)snprintf(r->needle, sizeof(r->needle), "\x1e%s ", token);
    id_generate(r->nonce, sizeof(r->nonce), "r");
    r->ops = ops;
    r->userdata = userdata;
    r->started = now_usec(CLOCK_MONOTONIC);

    _cleanup_free_ char *input =
        xasprintf("%s%s\x1e%s %s\n", code, clen && code[clen - 1] == '\n' ? "" : "\n", token, r->nonce);
    _cleanup_free_ char *b64 = base64_encode(input, strlen(input));
    json_auto_t *ireq = json_pack("{s:s, s:s, s:s}", "op", "stdin", "id", id, "data_b64", b64), *iresp = NULL;
    if (sandbox_shim_call(sb, ireq, &iresp, err) < 0) {
        run_free(r);
        return err->code;
    }
    sandbox_attach(sb);
    r->attached = true;
    r->next = runs;
    runs = r;
    if (timeout_s > 0)
        loop_timer_start(sb->d->loop, &r->timer, (usec_t)(timeout_s * USEC_PER_SEC), run_on_timer);
    run_update_watch(r);
    if (ret)
        *ret = r;
    return 0;
}

/* --- the native routes ------------------------------------------------------------------------------ */

static void create_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    const char *language = NULL, *cwd = NULL;
    json_t *env = NULL;
    if (jsonreq_string(body, "language", 32, &language, &err) < 0 ||
        jsonreq_string(body, "cwd", PATH_MAX, &cwd, &err) < 0 ||
        jsonreq_string_map(body, "env", ENV_MAX_ENTRIES, ENV_MAX_ENTRY, &env, &err) < 0)
        return api_reply_error(c->req, &err);
    if (!language) {
        sbx_error_set(&err, -EINVAL, "`language` is required (python, node or bash)");
        return api_reply_error(c->req, &err);
    }
    const char *lang = context_language(language);
    if (!lang) {
        sbx_error_setk(&err, -EINVAL, "unsupported", 400,
                       "language `%s` is not supported (python, node or bash)", language);
        return api_reply_error(c->req, &err);
    }
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return;
    json_t *ctx = NULL;
    if (context_create(sb, lang, cwd, env, &ctx, &err) < 0)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 201, ctx);
}

void api_contexts_create(struct api_ctx *c)
{
    api_read_json(c, create_with_body);
}

void api_contexts_list(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    if (sb)
        api_reply_json(c->req, 200, json_pack("{s:o}", "contexts", context_list(sb)));
}

void api_contexts_get(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    json_t *ctx = NULL;
    if (context_get(sb, c->command_id, &ctx, &err) < 0)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 200, ctx);
}

void api_contexts_delete(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (context_delete(sb, c->command_id, &err) < 0)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 204, NULL);
}

void api_contexts_interrupt(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return;
    sbx_error err = {0};
    bool running = false;
    if (context_interrupt(sb, c->command_id, &running, &err) < 0)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 200, json_pack("{s:b}", "interrupted", running));
}

/* One native run: streamed as SSE (output, display, then result), or collected into one JSON answer. */
struct run_client {
    struct http_request *req;
    struct context_run *run;
    bool stream;
    struct sbx_buf out[2];
    bool truncated[2];
    json_t *outputs;
    size_t outputs_bytes;
    bool outputs_truncated;
};

static void run_client_free(struct run_client *rc)
{
    sbx_buf_done(&rc->out[0]);
    sbx_buf_done(&rc->out[1]);
    json_decref(rc->outputs);
    free(rc);
}

static bool rc_output(void *userdata, int stream, const char *data, size_t len)
{
    struct run_client *rc = userdata;
    if (rc->stream) {
        json_auto_t *ev = json_pack("{s:s}", "stream", stream ? "stderr" : "stdout");
        json_set_bytes(ev, "data", "encoding", data, len);
        _cleanup_free_ char *text = json_dumps(ev, JSON_COMPACT);
        return http_sse_send(rc->req, "output", text, strlen(text)) > 0;
    }
    struct sbx_buf *b = &rc->out[stream];
    size_t room = b->len < WAIT_CAPTURE_MAX ? WAIT_CAPTURE_MAX - b->len : 0;
    if (len > room)
        rc->truncated[stream] = true;
    sbx_buf_append(b, data, len < room ? len : room);
    return false;
}

static bool rc_display(void *userdata, json_t *data)
{
    struct run_client *rc = userdata;
    json_auto_t *ev = json_pack("{s:O}", "data", data);
    _cleanup_free_ char *text = json_dumps(ev, JSON_COMPACT);
    if (!text)
        return false;
    if (rc->stream)
        return http_sse_send(rc->req, "display", text, strlen(text)) > 0;
    size_t n = strlen(text);
    if (rc->outputs_bytes + n > WAIT_OUTPUTS_MAX)
        rc->outputs_truncated = true;
    else {
        rc->outputs_bytes += n;
        json_array_append(rc->outputs, data);
    }
    return false;
}

static void rc_done(void *userdata, json_t *result)
{
    struct run_client *rc = userdata;
    if (rc->stream) {
        _cleanup_free_ char *text = json_dumps(result, JSON_COMPACT);
        http_sse_send(rc->req, "result", text, strlen(text));
        http_response_end(rc->req);
    } else {
        json_t *o = json_deep_copy(result);
        json_set_bytes(o, "stdout", "stdout_encoding", rc->out[0].base, rc->out[0].len);
        json_set_bytes(o, "stderr", "stderr_encoding", rc->out[1].base, rc->out[1].len);
        if (rc->truncated[0])
            json_object_set_new(o, "stdout_truncated", json_true());
        if (rc->truncated[1])
            json_object_set_new(o, "stderr_truncated", json_true());
        json_object_set(o, "outputs", rc->outputs);
        if (rc->outputs_truncated)
            json_object_set_new(o, "outputs_truncated", json_true());
        api_reply_json(rc->req, 200, o);
    }
    run_client_free(rc);
}

static const struct context_run_ops rc_ops = {.output = rc_output, .display = rc_display, .done = rc_done};

static void rc_on_abort(struct http_request *req, void *userdata)
{
    struct run_client *rc = userdata;
    context_run_abandon(rc->run); /* may not free rc's run: the cell runs on */
    run_client_free(rc);
}

static void rc_on_drain(struct http_request *req, void *userdata)
{
    struct run_client *rc = userdata;
    context_run_resume(rc->run);
}

static void run_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    const char *code = NULL;
    double timeout = 0;
    bool stream = false;
    const char *accept = http_header_get(c->req, "Accept");
    if (accept && strstr(accept, "text/event-stream"))
        stream = true;
    if (jsonreq_string(body, "code", CONTEXT_CODE_MAX, &code, &err) < 0 ||
        jsonreq_number(body, "timeout", 0, RUN_TIMEOUT_MAX_SEC, &timeout, &err) < 0 ||
        jsonreq_bool(body, "stream", &stream, &err) < 0)
        return api_reply_error(c->req, &err);
    if (!code) {
        sbx_error_set(&err, -EINVAL, "`code` is required");
        return api_reply_error(c->req, &err);
    }
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return;
    struct run_client *rc = xcalloc(1, sizeof(*rc));
    rc->req = c->req;
    rc->stream = stream;
    rc->outputs = json_array();
    if (context_run_start(sb, c->command_id, code, timeout, &rc_ops, rc, &rc->run, &err) < 0) {
        run_client_free(rc);
        return api_reply_error(c->req, &err);
    }
    http_request_on_abort(c->req, rc_on_abort, rc);
    if (stream) {
        http_request_on_drain(c->req, rc_on_drain, rc);
        http_sse_begin(c->req);
        http_sse_keepalive(c->req, SSE_KEEPALIVE_USEC);
    }
}

void api_contexts_run(struct api_ctx *c)
{
    api_read_json(c, run_with_body);
}
