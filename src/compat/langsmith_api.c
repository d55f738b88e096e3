/* LangSmith's sandbox control plane (boxes and snapshots under {LANGSMITH_ENDPOINT}/v2/sandboxes and
 * /api/v2/sandboxes) on sbx's sandbox and snapshot registries, and the dispatch of /langsmith requests
 * between it and the data plane (langsmith_dp.c). Shapes only: every operation is the registry's
 * (daemon/sandbox.h, daemon/snapshot.h). docs/compat/langsmith.md has the mapping. */
#include "compat/langsmith.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "api/keys.h"
#include "api/service.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "compat/langsmith_internal.h"
#include "compat/route.h"
#include "daemon/capture.h"
#include "daemon/checkpoint.h"
#include "daemon/daemon.h"
#include "daemon/pull.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "loop/loop.h"

#define LS_NAME_MAX 128
#define LS_REF_MAX 512
#define LS_LABELS_MAX 64
#define LS_LABEL_MAX 1024
#define LS_ENV_MAX_ENTRIES 1024
#define LS_ENV_MAX_ENTRY (32 * 1024)
#define LS_WAIT_MAX_S 3600
#define LS_VCPUS_MAX 64
#define LS_MEM_MIN (16LL << 20)
#define LS_MEM_MAX (1LL << 40)
#define LS_FS_MIN (64LL << 20)
#define LS_FS_MAX (1LL << 40)
#define LS_PATH_MAX 1024
#define LS_DOWNLOAD_TTL_MAX (366LL * 24 * 3600)
#define LS_FOREVER_EXPIRY 253402300799LL /* 9999-12-31T23:59:59Z: a link that never expires */

/* --- errors ------------------------------------------------------------------------------------- */

void ls_reply_error(struct http_request *req, int status, const char *type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_respond_json(req, status, json_pack("{s:{s:s, s:s}}", "detail", "error", type, "message", msg));
}

void ls_reply_validation(struct http_request *req, const char *field, const char *msg)
{
    http_respond_json(req, 422,
                      json_pack("{s:[{s:[s,s], s:s, s:s}]}", "detail", "loc", "body", field ? field : "body",
                                "msg", msg, "type", "value_error"));
}

/* The field an sbx validation message names first (`field`), into ret. */
static const char *field_of(const char *msg, char *ret, size_t size)
{
    const char *a = strchr(msg, '`'), *b = a ? strchr(a + 1, '`') : NULL;
    if (!a || !b || (size_t)(b - a - 1) >= size)
        return NULL;
    memcpy(ret, a + 1, (size_t)(b - a - 1));
    ret[b - a - 1] = 0;
    return ret;
}

void ls_reply_sbx_error(struct http_request *req, const sbx_error *err, enum ls_plane plane)
{
    int status = sbx_error_http_status(err);
    if (status >= 500)
        log_error("langsmith: %s %s: %s", http_request_method(req), http_request_path(req), err->msg);
    const char *kind = sbx_error_kind(err);
    /* The data plane's typed errors: the SDK raises SandboxOperationError(operation) for these. */
    if (plane == LS_READ || plane == LS_WRITE || plane == LS_COMMAND) {
        if (status == 404)
            return ls_reply_error(req, 404, "FileNotFound", "%s", err->msg);
        if (strcmp(kind, "not_running") == 0)
            return ls_reply_error(req, 400, "NotReady", "%s", err->msg);
        const char *type = plane == LS_READ ? "ReadError" : plane == LS_WRITE ? "WriteError" : "CommandError";
        return ls_reply_error(req, status >= 500 ? status : 400, type, "%s", err->msg);
    }
    char field[64];
    switch (status) {
    case 400:
    case 413:
        return ls_reply_validation(req, field_of(err->msg, field, sizeof(field)), err->msg);
    case 401:
        return ls_reply_error(req, 401, "Unauthorized", "%s", err->msg);
    case 403:
        return ls_reply_error(req, 403, "Forbidden", "%s", err->msg);
    case 404:
        return ls_reply_error(req, 404, "NotFound", "%s", err->msg);
    case 409:
        return ls_reply_error(req, 409, "Conflict", "%s", err->msg);
    case 429:
        /* The SDK reads the quota's kind from the message's words. */
        if (strstr(err->msg, "max_sandboxes"))
            return ls_reply_error(req, 429, "QuotaExceeded", "sandbox count limit reached: %s", err->msg);
        if (strstr(err->msg, "max_memory"))
            return ls_reply_error(req, 429, "QuotaExceeded", "memory limit exceeded: %s", err->msg);
        return ls_reply_error(req, 429, "QuotaExceeded", "%s", err->msg);
    case 503:
        return ls_reply_error(req, 503, plane == LS_CREATE ? "Unschedulable" : "ServiceUnavailable", "%s",
                              err->msg);
    default:
        return ls_reply_error(req, status, status >= 500 ? "InternalError" : "BadRequest", "%s", err->msg);
    }
}

/* --- context and auth ---------------------------------------------------------------------------- */

static void ctx_free(void *p)
{
    struct api_ctx *c = p;
    free((char *)c->sandbox_id);
    free((char *)c->command_id);
    free((char *)c->owner);
    free(c);
}

struct api_ctx *ls_ctx_new(struct daemon *d, struct http_request *req, const char *route,
                           const char *sandbox_id, const char *owner)
{
    struct api_ctx *c = xcalloc(1, sizeof(*c));
    c->d = d;
    c->req = req;
    c->route = route;
    c->sandbox_id = sandbox_id ? xstrdup(sandbox_id) : NULL;
    c->owner = owner ? xstrdup(owner) : NULL;
    http_request_set_userdata(req, c, ctx_free);
    return c;
}

/* The body is read whole (bounded) and parsed; a malformed one is a ValidationError in LangSmith's
 * envelope. The callback lives in the request's context, freed with the request in every case. */
static void json_body_done(struct http_request *req, const char *body, size_t len, void *userdata)
{
    struct api_ctx *c = userdata;
    sbx_error err = {0};
    json_t *j;
    if (jsonreq_parse(body, len, &j, &err) < 0)
        return ls_reply_validation(req, "body", err.msg);
    c->json_cb(c, j);
    json_decref(j);
}

void ls_read_json(struct api_ctx *c, void (*cb)(struct api_ctx *c, json_t *body))
{
    c->json_cb = cb;
    http_request_read_body(c->req, JSONREQ_BODY_MAX, json_body_done, c);
}

/* --- shapes ------------------------------------------------------------------------------------- */

static const char *box_status(const struct sandbox *sb)
{
    switch (sb->state) {
    case SANDBOX_CREATING:
        return "provisioning";
    case SANDBOX_RUNNING:
    case SANDBOX_PAUSED:
        return "ready";
    case SANDBOX_STOPPED:
        return "stopped";
    case SANDBOX_FAILED:
    case _SANDBOX_STATE_MAX:
    default:
        return "failed";
    }
}

static json_t *time_json(int64_t ms)
{
    char buf[40];
    format_time_ms(buf, sizeof(buf), ms);
    return json_string(buf);
}

/* The Host the client used, when it is safe to put into a URL; else localhost. */
static const char *request_host(struct http_request *req)
{
    const char *host = http_header_get(req, "Host");
    if (!host || !*host || strlen(host) > 255 || strpbrk(host, " /\\\"<>@?#"))
        return "localhost";
    return host;
}

/* The labels are the string-valued entries of the sandbox's metadata. */
static json_t *labels_of(json_t *metadata)
{
    json_t *o = json_object(), *v;
    const char *k;
    json_object_foreach(metadata, k, v) if (json_is_string(v)) json_object_set(o, k, v);
    return o;
}

/* The sandbox object (protocol §3.1). */
static json_t *box_json(struct http_request *req, const struct sandbox *sb)
{
    char dp[512];
    snprintf(dp, sizeof(dp), "http://%s" LS_DP_PREFIX "%s", request_host(req), sb->id);
    const char *snap = sb->snapshot ? sb->snapshot : "host";
    struct snapshot *sn = sb->snapshot ? snapshot_find(sb->d, sb->snapshot) : NULL;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:s, s:I, s:I, s:I, s:o}", "id", sb->id,
                          "name", sb->name ? sb->name : sb->id, "dataplane_url", dp, "status", box_status(sb),
                          "created_at", time_json(sb->created_ms), "updated_at", time_json(sb->created_ms),
                          "idle_ttl_seconds", (json_int_t)sb->life.idle_ttl_s, "delete_after_stop_seconds",
                          (json_int_t)sb->life.delete_after_stop_s, "snapshot_id", sn ? sn->id : snap,
                          "vcpus", (json_int_t)(sb->res.cpus + 0.999), "mem_bytes",
                          (json_int_t)(sb->res.memory_mb << 20), "fs_capacity_bytes",
                          (json_int_t)(sb->res.disk_mb << 20), "labels", labels_of(sb->metadata));
    json_object_set_new(o, "status_message", sb->reason ? json_string(sb->reason) : json_null());
    json_object_set_new(o, "stopped_at", sb->stopped_ms ? time_json(sb->stopped_ms) : json_null());
    json_t *rc = json_object_get(sb->metadata, LS_RUN_CONFIG_KEY);
    if (json_is_object(rc))
        json_object_set(o, "run_config", rc);
    return o;
}

static const char *snapshot_status(const struct snapshot *sn)
{
    switch (sn->status) {
    case SNAPSHOT_BUILDING:
        return "building";
    case SNAPSHOT_READY:
        return "ready";
    case SNAPSHOT_FAILED:
    default:
        return "failed";
    }
}

/* The snapshot object (protocol §4.1); NULL = the built-in `host`. */
static json_t *snapshot_json(const struct snapshot *sn)
{
    if (!sn)
        return json_pack("{s:s, s:s, s:s, s:I, s:I}", "id", "host", "name", "host", "status", "ready",
                         "fs_capacity_bytes", (json_int_t)SANDBOX_DEFAULT_DISK_MB << 20, "fs_used_bytes",
                         (json_int_t)0);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:o}", "id", sn->id, "name", sn->name, "status",
                          snapshot_status(sn), "fs_capacity_bytes", (json_int_t)SANDBOX_DEFAULT_DISK_MB << 20,
                          "fs_used_bytes", (json_int_t)sn->size_bytes, "created_at",
                          time_json(sn->created_ms), "updated_at", time_json(sn->created_ms));
    json_object_set_new(o, "status_message", sn->reason ? json_string(sn->reason) : json_null());
    return o;
}

/* A snapshot reference of a create: an id or a name, `name:tag` accepted when the snapshot is called
 * `name` (sbx snapshots have no tags). NULL = `host`; *ret_ref the one to create from. */
static int resolve_snapshot(struct api_ctx *c, const char *ref, const char **ret_ref, sbx_error *err)
{
    if (!ref || strcmp(ref, "host") == 0 || strcmp(ref, "host:latest") == 0) {
        *ret_ref = NULL;
        return 0;
    }
    struct snapshot *sn = snapshot_find_visible(c->d, ref, c->owner);
    const char *colon = strrchr(ref, ':');
    if (!sn && colon) {
        char *base = http_request_alloc(c->req, (size_t)(colon - ref) + 1);
        memcpy(base, ref, (size_t)(colon - ref));
        base[colon - ref] = 0;
        if (strcmp(base, "host") == 0) {
            *ret_ref = NULL;
            return 0;
        }
        sn = snapshot_find_visible(c->d, base, c->owner);
    }
    if (!sn)
        return sbx_error_setk(err, -ENOENT, "not_found", 404, "snapshot `%s` not found", ref);
    *ret_ref = sn->id;
    return 0;
}

/* --- boxes: create ------------------------------------------------------------------------------ */

/* A create being built while the client waits, at most `timeout` seconds (wait_for_ready). Lives in the
 * request (http_request_alloc); the timer is stopped before the request can go. */
struct create_wait {
    struct api_ctx *c;
    struct create_op *op;
    struct loop_timer timer;
    int64_t timeout_s;
    bool timing; /* the timer is armed */
};

static void create_wait_stop(struct create_wait *w)
{
    if (w->timing)
        loop_timer_stop(w->c->d->loop, &w->timer);
    w->timing = false;
}

static void created(struct sandbox *sb, const sbx_error *err, void *userdata)
{
    struct create_wait *w = userdata;
    create_wait_stop(w);
    if (sb)
        http_respond_json(w->c->req, 200, box_json(w->c->req, sb));
    else
        ls_reply_sbx_error(w->c->req, err, LS_CREATE);
}

static void create_aborted(struct http_request *req, void *userdata)
{
    struct create_wait *w = userdata;
    create_wait_stop(w);
    sandbox_create_cancel(w->op);
}

/* A create without wait_for_ready ended (the client polls /status meanwhile): a box that could not be
 * built is gone from the registry, and the next poll says so. */
static void created_detached(struct sandbox *sb, const sbx_error *err, void *userdata)
{
    (void)userdata;
    if (!sb)
        log_info("langsmith: a box created without wait_for_ready failed: %s", err->msg);
}

/* wait_for_ready's timeout passed: 408, which the SDK raises as ResourceTimeoutError("sandbox"). The
 * create failed for the client, so the sandbox is not kept (it is discarded once built) and counts
 * against no quota. */
static void create_timed_out(struct loop_timer *t)
{
    struct create_wait *w = container_of(t, struct create_wait, timer);
    w->timing = false;
    sandbox_create_cancel(w->op);
    ls_reply_error(w->c->req, 408, "Timeout", "sandbox not ready within %llds (last status: provisioning)",
                   (long long)w->timeout_s);
}

/* A bool field that sbx cannot honour when true. */
static int refuse_true(json_t *body, const char *key, const char *why, sbx_error *err)
{
    if (json_is_true(json_object_get(body, key)))
        return sbx_error_set(err, -EINVAL, "`%s` is not supported by sbx: %s", key, why);
    return 0;
}

/* A field that sbx cannot honour when it is present and not null. */
static int refuse_present(json_t *body, const char *key, const char *why, sbx_error *err)
{
    json_t *v = json_object_get(body, key);
    if (v && !json_is_null(v))
        return sbx_error_set(err, -EINVAL, "`%s` is not supported by sbx: %s", key, why);
    return 0;
}

/* run_config {user?, work_dir?, env_vars?}: checked and copied; NULL when absent. */
static int parse_run_config(json_t *body, json_t **ret, sbx_error *err)
{
    json_t *rc = NULL;
    int k = jsonreq_object(body, "run_config", &rc, err);
    if (k <= 0)
        return k;
    const char *user = NULL, *work_dir = NULL;
    json_t *env = NULL;
    const char *key;
    json_t *v;
    json_object_foreach(rc, key, v)
    {
        if (strcmp(key, "user") != 0 && strcmp(key, "work_dir") != 0 && strcmp(key, "env_vars") != 0)
            return sbx_error_set(err, -EINVAL, "`run_config.%s` is not a run_config field", key);
    }
    if (jsonreq_string(rc, "user", 32, &user, err) < 0 ||
        jsonreq_string(rc, "work_dir", 4096, &work_dir, err) < 0 ||
        jsonreq_string_map(rc, "env_vars", LS_ENV_MAX_ENTRIES, LS_ENV_MAX_ENTRY, &env, err) < 0)
        return sbx_error_wrap(err, "run_config");
    if (work_dir && work_dir[0] != '/')
        return sbx_error_set(err, -EINVAL, "`work_dir` must be an absolute path");
    *ret = json_deep_copy(rc);
    return 1;
}

static void create_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    struct sandbox_create_opts opts = {.res = SANDBOX_DEFAULT_RESOURCES,
                                       .life = {.idle_ttl_s = SANDBOX_DEFAULT_IDLE_TTL_S}};
    const char *snap_id = NULL, *snap_name = NULL, *snap = NULL;
    bool wait = true;
    int64_t timeout = 30, vcpus = 0, mem = 0, fs = 0;
    json_t *labels = NULL;
    json_auto_t *run_config = NULL;
    if (jsonreq_bool(body, "wait_for_ready", &wait, &err) < 0 ||
        jsonreq_integer(body, "timeout", 0, LS_WAIT_MAX_S, &timeout, &err) < 0 ||
        jsonreq_string(body, "snapshot_id", LS_REF_MAX, &snap_id, &err) < 0 ||
        jsonreq_string(body, "snapshot_name", LS_REF_MAX, &snap_name, &err) < 0 ||
        jsonreq_string(body, "snapshot", LS_REF_MAX, &snap, &err) < 0 ||
        jsonreq_string(body, "name", LS_NAME_MAX, &opts.name, &err) < 0 ||
        jsonreq_integer(body, "idle_ttl_seconds", 0, SANDBOX_LIFECYCLE_MAX_S, &opts.life.idle_ttl_s, &err) <
            0 ||
        jsonreq_integer(body, "delete_after_stop_seconds", 0, SANDBOX_LIFECYCLE_MAX_S,
                        &opts.life.delete_after_stop_s, &err) < 0 ||
        jsonreq_integer(body, "vcpus", 1, LS_VCPUS_MAX, &vcpus, &err) < 0 ||
        jsonreq_integer(body, "mem_bytes", LS_MEM_MIN, LS_MEM_MAX, &mem, &err) < 0 ||
        jsonreq_integer(body, "fs_capacity_bytes", LS_FS_MIN, LS_FS_MAX, &fs, &err) < 0 ||
        jsonreq_string_map(body, "labels", LS_LABELS_MAX, LS_LABEL_MAX, &labels, &err) < 0 ||
        parse_run_config(body, &run_config, &err) < 0 ||
        refuse_present(body, "mount_config", "mount a named volume with the native API instead", &err) < 0 ||
        refuse_present(body, "proxy_config", "use the native API's network egress policy", &err) < 0 ||
        refuse_present(body, "volumes", "use the native API's volumes", &err) < 0 ||
        refuse_true(body, "preserve_memory_on_stop", "a stopped sandbox keeps its files, not its memory",
                    &err) < 0 ||
        refuse_true(body, "restore_memory", "a stopped sandbox keeps its files, not its memory", &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    int refs = !!snap_id + !!snap_name + !!snap;
    if (refs > 1)
        return ls_reply_validation(c->req, "snapshot_id", "give snapshot_id or snapshot_name, not both");
    if (opts.name && !*opts.name)
        return ls_reply_validation(c->req, "name", "`name` must not be empty");
    if (resolve_snapshot(c, snap_id ? snap_id : snap_name ? snap_name : snap, &opts.snapshot, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    if (vcpus)
        opts.res.cpus = (double)vcpus;
    if (mem)
        opts.res.memory_mb = (uint64_t)mem >> 20;
    if (fs)
        opts.res.disk_mb = (uint64_t)fs >> 20;
    json_auto_t *metadata = labels ? json_deep_copy(labels) : json_object();
    if (run_config) {
        json_object_set(metadata, LS_RUN_CONFIG_KEY, run_config);
        opts.env = json_object_get(run_config, "env_vars");
    }
    opts.metadata = metadata;
    opts.owner = c->owner;
    if (keys_check_quota(c->d, c->owner, 1, opts.res.memory_mb, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CREATE);
    struct sandbox *sb = NULL;
    if (!wait) {
        /* Answered at once, `provisioning` unless the warm pool had one: the client polls /status, and
         * the build goes on without it. */
        struct create_op *op = NULL;
        int r = sandbox_create(c->d, &opts, created_detached, NULL, &sb, &op, &err);
        if (r < 0)
            return ls_reply_sbx_error(c->req, &err, LS_CREATE);
        http_respond_json(c->req, 200, box_json(c->req, r > 0 ? sb : sandbox_create_op_sandbox(op)));
        if (r > 0)
            sandbox_unref(sb);
        return;
    }
    /* With wait_for_ready the answer waits for the build (milliseconds, or a warm sandbox at once), at
     * most `timeout` seconds. */
    struct create_wait *w = http_request_alloc(c->req, sizeof(*w));
    memset(w, 0, sizeof(*w));
    w->c = c;
    w->timeout_s = timeout;
    int r = sandbox_create(c->d, &opts, created, w, &sb, &w->op, &err);
    if (r < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CREATE);
    if (r > 0) {
        http_respond_json(c->req, 200, box_json(c->req, sb));
        sandbox_unref(sb);
        return;
    }
    http_request_on_abort(c->req, create_aborted, w);
    w->timing = true;
    loop_timer_start(c->d->loop, &w->timer, (usec_t)timeout * USEC_PER_SEC, create_timed_out);
}

/* --- boxes: the rest ------------------------------------------------------------------------------ */

/* {name} (a name or an id), or a 404 answered. A new reference. */
static struct sandbox *lookup(struct api_ctx *c)
{
    struct sandbox *sb = sandbox_lookup(c->d, c->sandbox_id, c->owner);
    if (!sb || sb->warm) {
        if (sb)
            sandbox_unref(sb);
        ls_reply_error(c->req, 404, "NotFound", "Sandbox '%s' not found", c->sandbox_id);
        return NULL;
    }
    return sb;
}

static void box_get(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (sb)
        http_respond_json(c->req, 200, box_json(c->req, sb));
}

static void box_status_get(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    json_t *o = json_pack("{s:s}", "status", box_status(sb));
    if (sb->reason)
        json_object_set_new(o, "status_message", json_string(sb->reason));
    http_respond_json(c->req, 200, o);
}

static void box_list(struct api_ctx *c)
{
    json_t *arr = json_array();
    struct sandbox *last = c->d->sandboxes;
    while (last && last->next)
        last = last->next;
    for (struct sandbox *sb = last; sb; sb = sb->prev)
        if (!sb->warm && sandbox_visible_to(sb, c->owner))
            json_array_append_new(arr, box_json(c->req, sb));
    http_respond_json(c->req, 200,
                      json_pack("{s:O, s:o, s:n}", "sandboxes", arr, "items", arr, "next_cursor"));
}

static void box_delete(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (sandbox_delete(c->d, sb, "deleted through the LangSmith API", &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    http_respond(c->req, 204, NULL, NULL, 0);
}

static void box_stop(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (sandbox_stop(c->d, sb, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    http_respond_json(c->req, 200, box_json(c->req, sb));
}

static void box_start(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    int r = 0;
    if (sb->state == SANDBOX_STOPPED || sb->state == SANDBOX_FAILED)
        r = keys_check_quota(c->d, sb->owner, 0, sb->res.memory_mb, &err);
    if (r >= 0)
        r = sandbox_start(c->d, sb, &err);
    if (r < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    http_respond_json(c->req, 200, box_json(c->req, sb));
}

/* PATCH: name (only the current one: sbx names are fixed), idle_ttl_seconds, delete_after_stop_seconds,
 * labels (replace), run_config (merged). */
static void update_with_body(struct api_ctx *c, json_t *body)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    const char *name = NULL;
    json_t *labels = NULL;
    json_auto_t *run_config = NULL;
    struct sandbox_lifecycle life = sb->life;
    if (jsonreq_string(body, "name", LS_NAME_MAX, &name, &err) < 0 ||
        jsonreq_integer(body, "idle_ttl_seconds", 0, SANDBOX_LIFECYCLE_MAX_S, &life.idle_ttl_s, &err) < 0 ||
        jsonreq_integer(body, "delete_after_stop_seconds", 0, SANDBOX_LIFECYCLE_MAX_S,
                        &life.delete_after_stop_s, &err) < 0 ||
        jsonreq_string_map(body, "labels", LS_LABELS_MAX, LS_LABEL_MAX, &labels, &err) < 0 ||
        parse_run_config(body, &run_config, &err) < 0 ||
        refuse_present(body, "proxy_config", "use the native API's network egress policy", &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    if (name && strcmp(name, sb->name ? sb->name : sb->id) != 0) {
        struct sandbox *other = sandbox_lookup(c->d, name, c->owner);
        if (other) {
            sandbox_unref(other);
            return ls_reply_error(c->req, 409, "Conflict", "a sandbox named '%s' exists", name);
        }
        return ls_reply_validation(c->req, "name", "renaming a sandbox is not supported by sbx");
    }
    if (memcmp(&life, &sb->life, sizeof(life)) != 0 && sandbox_set_lifecycle(c->d, sb, &life, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    if (labels || run_config) {
        json_auto_t *md = json_object();
        const char *k;
        json_t *v;
        /* Keep what is not being replaced: other metadata, and labels when only run_config changes. */
        json_object_foreach(sb->metadata, k, v)
        {
            if (labels && json_is_string(v))
                continue;
            json_object_set(md, k, v);
        }
        if (labels)
            json_object_update(md, labels);
        if (run_config) {
            json_t *old = json_object_get(md, LS_RUN_CONFIG_KEY);
            json_t *merged = json_is_object(old) ? json_deep_copy(old) : json_object();
            json_t *oldenv = json_object_get(merged, "env_vars"),
                   *newenv = json_object_get(run_config, "env_vars");
            json_t *env = json_is_object(oldenv) ? json_deep_copy(oldenv) : json_object();
            if (json_is_object(newenv))
                json_object_update(env, newenv);
            json_object_update(merged, run_config);
            json_object_set_new(merged, "env_vars", env);
            json_object_set_new(md, LS_RUN_CONFIG_KEY, merged);
        }
        if (sandbox_set_metadata(c->d, sb, md, &err) < 0)
            return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    }
    http_respond_json(c->req, 200, box_json(c->req, sb));
}

/* --- snapshots ---------------------------------------------------------------------------------- */

/* POST /boxes/{name}/snapshot {"name"}: the sandbox's changes become a new snapshot (capture). */
static void capture_with_body(struct api_ctx *c, json_t *body)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    const char *name = NULL;
    if (jsonreq_string(body, "name", 64, &name, &err) < 0 ||
        refuse_present(body, "docker_image", "sbx captures the sandbox's filesystem", &err) < 0 ||
        refuse_present(body, "include_memory", "sbx captures files, not memory", &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    if (!name)
        return ls_reply_validation(c->req, "name", "`name` is required");
    if (sandbox_refuse_busy(sb, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    bool host_base =
        !sb->snapshot || strcmp(sb->snapshot, "host") == 0 || snapshot_is_host_based(c->d, sb->snapshot);
    struct snapshot *sn = NULL;
    if (snapshot_building_new(c->d, name, c->owner, "capture", host_base, &sn, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    const struct snapshot_limits *sl = snapshot_limits(c->d);
    struct capture_limits lim = {.max_bytes = sl->max_layer_bytes, .max_entries = sl->max_entries};
    if (checkpoint_capture(c->d, sb, sn, &lim, &err) < 0) {
        snapshot_building_drop(c->d, sn);
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    }
    json_t *o = snapshot_json(sn);
    json_object_set_new(o, "source_sandbox_id", json_string(sb->id));
    http_respond_json(c->req, 200, o);
}

/* POST /snapshots {"name", "docker_image", "fs_capacity_bytes"}: a registry pull. */
static void snapshot_create_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    struct pull_request pr = {0};
    const char *registry_id = NULL;
    int64_t fs = 0;
    if (jsonreq_string(body, "name", 64, &pr.name, &err) < 0 ||
        jsonreq_string(body, "docker_image", LS_REF_MAX, &pr.image, &err) < 0 ||
        jsonreq_integer(body, "fs_capacity_bytes", 0, LS_FS_MAX, &fs, &err) < 0 ||
        jsonreq_string(body, "registry_id", 128, &registry_id, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    if (!pr.name)
        return ls_reply_validation(c->req, "name", "`name` is required");
    if (!pr.image)
        return ls_reply_validation(c->req, "docker_image", "`docker_image` is required");
    _cleanup_free_ char *user = NULL, *pass = NULL;
    if (registry_id && ls_registry_credentials(c, registry_id, pr.image, &pr, &user, &pass, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    struct snapshot *sn = NULL;
    if (pull_start(c->d, &pr, &sn, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    json_t *o = snapshot_json(sn);
    json_object_set_new(o, "docker_image", json_string(pr.image));
    http_respond_json(c->req, 200, o);
}

/* {id} (an id, a name or name:tag) among what the caller sees; NULL sets *ret_host for `host`. */
static struct snapshot *snapshot_lookup(struct api_ctx *c, bool *ret_host)
{
    *ret_host = false;
    const char *ref = NULL;
    sbx_error err = {0};
    if (resolve_snapshot(c, c->sandbox_id, &ref, &err) < 0) {
        ls_reply_error(c->req, 404, "NotFound", "Snapshot '%s' not found", c->sandbox_id);
        return NULL;
    }
    if (!ref) {
        *ret_host = true;
        return NULL;
    }
    return snapshot_find_visible(c->d, ref, c->owner);
}

static void snapshot_get(struct api_ctx *c)
{
    bool host;
    struct snapshot *sn = snapshot_lookup(c, &host);
    if (sn || host)
        http_respond_json(c->req, 200, snapshot_json(sn));
}

static void snapshot_del(struct api_ctx *c)
{
    bool host;
    struct snapshot *sn = snapshot_lookup(c, &host);
    sbx_error err = {0};
    if (host)
        return ls_reply_error(c->req, 403, "Forbidden", "the built-in `host` snapshot cannot be deleted");
    if (!sn)
        return;
    if (c->owner && !sn->owner)
        return ls_reply_error(c->req, 403, "Forbidden", "only the admin key may delete snapshot '%s'",
                              sn->name);
    if (snapshot_delete(c->d, sn, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    http_respond(c->req, 204, NULL, NULL, 0);
}

/* GET /snapshots?name_contains=&limit=&offset= */
static void snapshot_list(struct api_ctx *c)
{
    const char *nc = http_query_get(c->req, "name_contains");
    const char *ls = http_query_get(c->req, "limit"), *os = http_query_get(c->req, "offset");
    char *end = NULL;
    long limit = ls && *ls ? strtol(ls, &end, 10) : 50;
    if (ls && *ls && (*end || limit < 1 || limit > 500))
        return ls_reply_validation(c->req, "limit", "`limit` must be 1..500");
    long offset = os && *os ? strtol(os, &end, 10) : 0;
    if (os && *os && (*end || offset < 0))
        return ls_reply_validation(c->req, "offset", "`offset` must be a non-negative integer");
    json_t *arr = json_array(), *v;
    json_auto_t *all = snapshot_list_json(c->d, c->owner);
    long seen = 0;
    size_t i;
    json_array_foreach(json_object_get(all, "snapshots"), i, v)
    {
        const char *id = json_string_value(json_object_get(v, "id"));
        struct snapshot *sn = id && strcmp(id, "host") != 0 ? snapshot_find(c->d, id) : NULL;
        const char *name = sn ? sn->name : "host";
        if ((id && strcmp(id, "host") != 0 && !sn) || (nc && *nc && !strstr(name, nc)))
            continue;
        if (seen++ < offset)
            continue;
        if ((long)json_array_size(arr) == limit)
            break;
        json_array_append_new(arr, snapshot_json(sn));
    }
    http_respond_json(c->req, 200, json_pack("{s:O, s:o}", "snapshots", arr, "items", arr));
}

/* --- download links ----------------------------------------------------------------------------- */

/* "<expiry>.<base64url(HMAC(service secret, "langsmith-download-v1\n<id>\n<path>\n<expiry>"))>" */
static int download_token(struct daemon *d, const char *id, const char *path, long long expiry, char ret[80],
                          sbx_error *err)
{
    _cleanup_free_ char *msg = xasprintf("langsmith-download-v1\n%s\n%s\n%lld", id, path, expiry);
    unsigned char mac[32];
    if (api_service_mac(d, msg, mac, err) < 0)
        return err->code;
    char enc[48];
    b64url_encode(mac, sizeof(mac), enc);
    snprintf(ret, 80, "%lld.%s", expiry, enc);
    return 0;
}

bool ls_download_token_ok(struct daemon *d, struct http_request *req, const char *sandbox_id)
{
    const char *token = http_query_get(req, "token"), *path = http_query_get(req, "path");
    if (!token || !path || strlen(token) > 79)
        return false;
    char *dot;
    errno = 0;
    long long expiry = strtoll(token, &dot, 10);
    if (errno || dot == token || *dot != '.' || expiry <= 0 || expiry < (long long)time(NULL))
        return false;
    char want[80];
    sbx_error err = {0};
    if (download_token(d, sandbox_id, path, expiry, want, &err) < 0)
        return false;
    size_t n = strlen(want);
    unsigned char diff = strlen(token) != n;
    for (size_t i = 0; i < n && !diff; i++)
        diff |= (unsigned char)(token[i] ^ want[i]);
    return diff == 0;
}

/* POST /boxes/{name}/download-url {"path", "expires_in_seconds"?}: a link that needs no credentials. */
static void download_url_with_body(struct api_ctx *c, json_t *body)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    const char *path = NULL, *disp = NULL, *ct = NULL;
    int64_t ttl = 0;
    if (jsonreq_string(body, "path", 4096, &path, &err) < 0 ||
        jsonreq_integer(body, "expires_in_seconds", 1, LS_DOWNLOAD_TTL_MAX, &ttl, &err) < 0 ||
        jsonreq_string(body, "content_disposition", 16, &disp, &err) < 0 ||
        jsonreq_string(body, "content_type", 256, &ct, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    if (!path || path[0] != '/')
        return ls_reply_validation(c->req, "path", "`path` must be an absolute path");
    if (disp && strcmp(disp, "attachment") != 0 && strcmp(disp, "inline") != 0)
        return ls_reply_validation(c->req, "content_disposition",
                                   "`content_disposition` is attachment or inline");
    long long expiry = ttl ? (long long)time(NULL) + ttl : LS_FOREVER_EXPIRY;
    char token[80];
    if (download_token(c->d, sb->id, path, expiry, token, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    _cleanup_(sbx_buf_done) struct sbx_buf url = SBX_BUF_INIT;
    sbx_buf_appendf(&url, "http://%s" LS_DP_PREFIX "%s/download?path=", request_host(c->req), sb->id);
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '/' ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~')
            sbx_buf_append(&url, p, 1);
        else
            sbx_buf_appendf(&url, "%%%02X", *p);
    }
    sbx_buf_appendf(&url, "&token=%s", token);
    if (disp)
        sbx_buf_appendf(&url, "&disposition=%s", disp);
    json_t *o = json_pack("{s:s, s:s}", "download_url", sbx_buf_cstr(&url), "token", token);
    json_object_set_new(o, "expires_at", ttl ? time_json(expiry * 1000) : json_null());
    http_respond_json(c->req, 200, o);
}

/* POST /boxes/{name}/service-url {"port", "expires_in_seconds"?}: sbx's own service URL (docs/api.md
 * "Service URLs") in LangSmith's shape. The SDK sends the token as X-Langsmith-Sandbox-Service-Token, which
 * sbx's proxy accepts like its own header; browser_url carries it as the query parameter that becomes a
 * cookie. Login mode (`access`) needs LangSmith's identity service: refused. */
static void service_url_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    int64_t port = 0, ttl = 600;
    if (jsonreq_integer(body, "port", 1, 65535, &port, &err) < 0 ||
        jsonreq_integer(body, "expires_in_seconds", 1, 86400, &ttl, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    if (port == 0)
        return ls_reply_validation(c->req, "port", "`port` is required");
    if (json_object_get(body, "access"))
        return ls_reply_validation(
            c->req, "access", "login-mode service URLs (`access`) are not supported by sbx: use token mode");
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    json_auto_t *link = api_service_link(c->d, sb, (int)port, ttl, http_header_get(c->req, "Host"), &err);
    if (!link)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    const char *url = json_string_value(json_object_get(link, "url"));
    const char *token = json_string_value(json_object_get(link, "token"));
    /* The SDK appends "/" + path: no trailing slash here. */
    _cleanup_free_ char *service_url = xstrndup(url, strlen(url) - (url[strlen(url) - 1] == '/'));
    _cleanup_free_ char *browser_url = xasprintf("%s/?sbx_token=%s", service_url, token);
    _cleanup_free_ char *embed_url = xasprintf("%s/#token=%s", service_url, token);
    json_t *o = json_pack("{s:s, s:s, s:s, s:O, s:s, s:[]}", "service_url", service_url, "browser_url",
                          browser_url, "token", token, "expires_at", json_object_get(link, "expires_at"),
                          "embed_url", embed_url, "embed_origins");
    http_respond_json(c->req, 200, o);
}

/* --- routing ------------------------------------------------------------------------------------ */

static void box_create(struct api_ctx *c)
{
    ls_read_json(c, create_with_body);
}

static void box_update(struct api_ctx *c)
{
    ls_read_json(c, update_with_body);
}

static void box_capture(struct api_ctx *c)
{
    ls_read_json(c, capture_with_body);
}

static void box_download_url(struct api_ctx *c)
{
    ls_read_json(c, download_url_with_body);
}

static void box_service_url(struct api_ctx *c)
{
    ls_read_json(c, service_url_with_body);
}

static void snapshot_create(struct api_ctx *c)
{
    ls_read_json(c, snapshot_create_with_body);
}

struct ls_route {
    const char *method;
    const char *pattern; /* after .../v2/sandboxes; "*" is the one path parameter */
    void (*handler)(struct api_ctx *c);
};

static const struct ls_route routes[] = {
    {"POST", "/boxes", box_create},
    {"GET", "/boxes", box_list},
    {"GET", "/boxes/*", box_get},
    {"PATCH", "/boxes/*", box_update},
    {"DELETE", "/boxes/*", box_delete},
    {"GET", "/boxes/*/status", box_status_get},
    {"POST", "/boxes/*/start", box_start},
    {"POST", "/boxes/*/stop", box_stop},
    {"POST", "/boxes/*/snapshot", box_capture},
    {"POST", "/boxes/*/download-url", box_download_url},
    {"POST", "/boxes/*/service-url", box_service_url},
    {"POST", "/registries", ls_registry_create},
    {"GET", "/registries", ls_registry_list},
    {"GET", "/registries/*", ls_registry_get},
    {"PATCH", "/registries/*", ls_registry_update},
    {"DELETE", "/registries/*", ls_registry_delete},
    {"POST", "/snapshots", snapshot_create},
    {"GET", "/snapshots", snapshot_list},
    {"GET", "/snapshots/*", snapshot_get},
    {"DELETE", "/snapshots/*", snapshot_del},
};

/* Who is asking, or a 401 answered (then returns -1). */
static int authenticate(struct daemon *d, struct http_request *req, const char **ret_owner)
{
    const struct api_key *key = NULL;
    if (!http_header_get(req, "X-Api-Key") && !http_header_get(req, "Authorization") && d->api_key) {
        ls_reply_error(req, 401, "Unauthorized", "missing API key: set LANGSMITH_API_KEY to an sbx API key");
        return -1;
    }
    if (api_identify(d, req, &key) < 0) {
        ls_reply_error(req, 401, "Unauthorized", "invalid API key");
        return -1;
    }
    *ret_owner = key ? key->id : NULL;
    return 0;
}

static void control_handle(struct daemon *d, struct http_request *req, const char *rest, const char *owner)
{
    const char *method = http_request_method(req);
    bool path_known = false;
    for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
        char param[LS_REF_MAX + 1] = "";
        if (!compat_route_match(routes[i].pattern, rest, LS_REF_MAX, true, (char *const[]){param}, 1))
            continue;
        path_known = true;
        if (strcmp(routes[i].method, method) != 0)
            continue;
        /* One metrics label for the whole control plane: sbxd keeps a bounded set of route labels. */
        struct api_ctx *c = ls_ctx_new(d, req, "langsmith:api", param[0] ? param : NULL, owner);
        routes[i].handler(c);
        return;
    }
    if (path_known)
        return ls_reply_error(req, 405, "MethodNotAllowed", "%s is not allowed on %s", method,
                              http_request_path(req));
    ls_reply_error(req, 404, "NotFound", "%s %s is not supported by sbx's LangSmith API", method,
                   http_request_path(req));
}

/* rest after base when path is base or under it ("" or "/..."), else NULL. */
static const char *under(const char *path, const char *base)
{
    size_t n = strlen(base);
    if (strncmp(path, base, n) != 0 || (path[n] && path[n] != '/'))
        return NULL;
    return path + n;
}

bool langsmith_dispatch(struct daemon *d, struct http_request *req)
{
    const char *path = http_request_path(req), *rest;
    if (!under(path, LS_PREFIX))
        return false;
    if (strlen(path) > LS_PATH_MAX) {
        ls_reply_error(req, 404, "NotFound", "path too long");
        return true;
    }
    const char *owner = NULL;
    if (strncmp(path, LS_DP_PREFIX, strlen(LS_DP_PREFIX)) == 0) {
        const char *p = path + strlen(LS_DP_PREFIX);
        size_t n = strcspn(p, "/");
        char id[SBX_ID_MAX + 1];
        if (n == 0 || n > SBX_ID_MAX) {
            ls_reply_error(req, 404, "NotFound", "Sandbox not found");
            return true;
        }
        memcpy(id, p, n);
        id[n] = 0;
        /* A download link carries its own credential. */
        bool signed_dl = strcmp(p + n, "/download") == 0 && http_query_get(req, "token");
        if (signed_dl) {
            if (!ls_download_token_ok(d, req, id)) {
                ls_reply_error(req, 403, "Forbidden", "the download link is invalid or expired");
                return true;
            }
        } else if (authenticate(d, req, &owner) < 0) {
            return true;
        }
        ls_dp_handle(d, req, id, p + n, owner);
        return true;
    }
    if (authenticate(d, req, &owner) < 0)
        return true;
    if ((rest = under(path, LS_PREFIX "/api/v2/sandboxes")) ||
        (rest = under(path, LS_PREFIX "/v2/sandboxes")))
        control_handle(d, req, rest, owner);
    else
        ls_reply_error(req, 404, "NotFound", "%s %s is not supported by sbx's LangSmith API",
                       http_request_method(req), path);
    return true;
}
