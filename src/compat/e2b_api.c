/* E2B's control plane (the REST API behind E2B_API_URL) on sbx's sandbox registry, and the dispatch of
 * E2B requests between it, envd (e2b_envd.c) and the native router. Shapes only: every operation is the
 * registry's (daemon/sandbox.h). docs/compat/e2b.md has the mapping. */
#include "compat/e2b.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "api/keys.h"
#include "api/service.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "compat/e2b_internal.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "loop/loop.h"
#include "runtime/runtime.h"

#define E2B_DEFAULT_TIMEOUT_S 300 /* the SDK's and E2B's default sandbox lifetime */
#define E2B_ENV_MAX_ENTRIES 1024
#define E2B_ENV_MAX_ENTRY (32 * 1024)
#define E2B_METADATA_MAX (64 * 1024)
#define E2B_LIST_MAX 100

/* --- shared helpers ----------------------------------------------------------------------------- */

static void b64url(const unsigned char *in, size_t len, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = a[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = a[v & 63];
    }
    out[o] = 0;
}

int e2b_envd_token(struct daemon *d, const char *sandbox_id, char *ret, sbx_error *err)
{
    _cleanup_free_ char *msg = xasprintf("e2b-envd-v1\n%s", sandbox_id);
    unsigned char mac[32];
    if (api_service_mac(d, msg, mac, err) < 0)
        return err->code;
    char enc[48];
    b64url(mac, sizeof(mac), enc);
    snprintf(ret, E2B_ENVD_TOKEN_MAX + 1, "%s", enc);
    return 0;
}

void e2b_reply_error(struct http_request *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_respond_json(req, status, json_pack("{s:i, s:s}", "code", status, "message", msg));
}

void e2b_reply_sbx_error(struct http_request *req, const sbx_error *err)
{
    int status = sbx_error_http_status(err);
    if (status >= 500)
        log_error("%s %s: %s", http_request_method(req), http_request_path(req), err->msg);
    e2b_reply_error(req, status, "%s", err->msg);
}

/* The per-request context: the native one first (so api_* helpers and the metrics observer, which see
 * the request's userdata as a struct api_ctx, work), then state a handler attached to the request. */
struct e2b_ctx {
    struct api_ctx api;
    void *extra;
    void (*extra_free)(void *extra);
};

static void ctx_free(void *p)
{
    struct e2b_ctx *e = p;
    if (e->extra_free)
        e->extra_free(e->extra);
    free((char *)e->api.sandbox_id);
    free((char *)e->api.owner);
    free(e);
}

void e2b_ctx_set_extra(struct api_ctx *c, void *data, void (*free_fn)(void *data))
{
    struct e2b_ctx *e = container_of(c, struct e2b_ctx, api);
    e->extra = data;
    e->extra_free = free_fn;
}

struct api_ctx *e2b_ctx_new(struct daemon *d, struct http_request *req, const char *route,
                            const char *sandbox_id, const char *owner)
{
    struct e2b_ctx *e = xcalloc(1, sizeof(*e));
    struct api_ctx *c = &e->api;
    c->d = d;
    c->req = req;
    c->route = route;
    c->sandbox_id = sandbox_id ? xstrdup(sandbox_id) : NULL;
    c->owner = owner ? xstrdup(owner) : NULL;
    http_request_set_userdata(req, e, ctx_free);
    return c;
}

/* --- shapes ------------------------------------------------------------------------------------- */

static const char *template_of(const struct sandbox *sb)
{
    return sb->snapshot ? sb->snapshot : "host";
}

/* running and creating are E2B's "running"; paused and stopped (files kept, `connect` starts it again)
 * are "paused"; failed ones are not listed. */
static const char *e2b_state(const struct sandbox *sb)
{
    switch (sb->state) {
    case SANDBOX_CREATING:
    case SANDBOX_RUNNING:
        return "running";
    case SANDBOX_PAUSED:
    case SANDBOX_STOPPED:
        return "paused";
    case SANDBOX_FAILED:
    case _SANDBOX_STATE_MAX:
    default:
        return NULL;
    }
}

static json_t *time_json(int64_t ms)
{
    char buf[40];
    format_time_ms(buf, sizeof(buf), ms);
    return json_string(buf);
}

/* The `Sandbox` answer of create and connect. */
static json_t *sandbox_json(struct daemon *d, const struct sandbox *sb)
{
    char token[E2B_ENVD_TOKEN_MAX + 1] = "";
    sbx_error err = {0};
    if (e2b_envd_token(d, sb->id, token, &err) < 0)
        log_warning("e2b: envd token for `%s`: %s", sb->id, err.msg);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:n}", "sandboxID", sb->id, "templateID", template_of(sb),
                  "clientID", "sbx", "envdVersion", E2B_ENVD_VERSION, "envdAccessToken", token, "domain");
    if (sb->name)
        json_object_set_new(o, "alias", json_string(sb->name));
    return o;
}

/* The CPUs the sandbox may use: its cpus limit, or every online CPU when it has none. */
static double cpu_limit(const struct sandbox *sb)
{
    if (sb->res.cpus > 0)
        return sb->res.cpus;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (double)n : 1.0;
}

/* `ListedSandbox`, and with detail the `SandboxDetail` of getInfo. */
static json_t *listed_json(struct daemon *d, const struct sandbox *sb, bool detail)
{
    int64_t end = sb->expires_ms ? sb->expires_ms : sb->created_ms + sb->life.timeout_s * 1000;
    json_t *meta = sb->metadata ? json_deep_copy(sb->metadata) : json_object();
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:i, s:I, s:I, s:s, s:o, s:o, s:s, s:o}", "sandboxID", sb->id,
                  "templateID", template_of(sb), "clientID", "sbx", "cpuCount", (int)(cpu_limit(sb) + 0.999),
                  "memoryMB", (json_int_t)sb->res.memory_mb, "diskSizeMB", (json_int_t)sb->res.disk_mb,
                  "envdVersion", E2B_ENVD_VERSION, "startedAt", time_json(sb->created_ms), "endAt",
                  time_json(end), "state", e2b_state(sb) ? e2b_state(sb) : "paused", "metadata", meta);
    if (sb->name)
        json_object_set_new(o, "alias", json_string(sb->name));
    if (detail) {
        char token[E2B_ENVD_TOKEN_MAX + 1] = "";
        sbx_error err = {0};
        if (e2b_envd_token(d, sb->id, token, &err) >= 0)
            json_object_set_new(o, "envdAccessToken", json_string(token));
        json_object_set_new(o, "domain", json_null());
        json_object_set_new(o, "lifecycle",
                            json_pack("{s:s, s:b}", "onTimeout", "kill", "autoResume", false));
    }
    return o;
}

/* --- create ------------------------------------------------------------------------------------- */

struct create_req {
    struct daemon *d;
    struct http_request *req;
};

static void created(struct sandbox *sb, const sbx_error *err, void *userdata)
{
    struct api_ctx *c = userdata;
    if (sb)
        http_respond_json(c->req, 201, sandbox_json(c->d, sb));
    else
        e2b_reply_sbx_error(c->req, err);
}

static void create_aborted(struct http_request *req, void *userdata)
{
    sandbox_create_cancel(userdata);
}

/* `base` (E2B's default template) is the built-in `host` snapshot unless a snapshot is called so. */
static const char *snapshot_for_template(struct daemon *d, const char *template)
{
    if (!template || !*template)
        return NULL;
    if (strcmp(template, "base") == 0 && !snapshot_find(d, "base"))
        return NULL;
    return template;
}

static void create_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    struct sandbox_create_opts opts = {.res = SANDBOX_DEFAULT_RESOURCES};
    const char *template = NULL;
    json_t *metadata = NULL, *env = NULL;
    int64_t timeout = E2B_DEFAULT_TIMEOUT_S;
    if (jsonreq_string(body, "templateID", 256, &template, &err) < 0 ||
        jsonreq_string_map(body, "envVars", E2B_ENV_MAX_ENTRIES, E2B_ENV_MAX_ENTRY, &env, &err) < 0 ||
        jsonreq_object(body, "metadata", &metadata, &err) < 0 ||
        jsonreq_integer(body, "timeout", 1, SANDBOX_LIFECYCLE_MAX_S, &timeout, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    if (metadata) {
        const char *k;
        json_t *v;
        json_object_foreach(metadata, k, v) if (!json_is_string(v))
        {
            sbx_error_set(&err, -EINVAL, "metadata `%s` must be a string", k);
            return e2b_reply_sbx_error(c->req, &err);
        }
        _cleanup_free_ char *dump = json_dumps(metadata, JSON_COMPACT);
        if (dump && strlen(dump) > E2B_METADATA_MAX)
            return e2b_reply_error(c->req, 400, "metadata is larger than %d bytes", E2B_METADATA_MAX);
    }
    if (json_is_true(json_object_get(body, "autoPause")))
        return e2b_reply_error(c->req, 400,
                               "autoPause is not supported by sbx: sandboxes are killed at their "
                               "timeout");
    /* The lifetime is E2B's timeout; sbx's idle timer would stop a sandbox E2B keeps running. */
    opts.snapshot = snapshot_for_template(c->d, template);
    opts.env = env;
    opts.metadata = metadata;
    opts.life.timeout_s = timeout;
    opts.owner = c->owner;
    if (keys_check_quota(c->d, c->owner, 1, opts.res.memory_mb, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    struct sandbox *sb = NULL;
    struct create_op *op = NULL;
    int r = sandbox_create(c->d, &opts, created, c, &sb, &op, &err);
    if (r < 0) {
        if (err.code == -ENOENT && template)
            return e2b_reply_error(c->req, 404, "template `%s` not found", template);
        return e2b_reply_sbx_error(c->req, &err);
    }
    if (r > 0) {
        http_respond_json(c->req, 201, sandbox_json(c->d, sb));
        sandbox_unref(sb);
        return;
    }
    http_request_on_abort(c->req, create_aborted, op);
}

/* --- the rest ----------------------------------------------------------------------------------- */

/* {id}, or an E2B 404 answered. A new reference. */
static struct sandbox *lookup(struct api_ctx *c)
{
    struct sandbox *sb = sandbox_lookup(c->d, c->sandbox_id, c->owner);
    if (!sb || !e2b_state(sb)) {
        if (sb)
            sandbox_unref(sb);
        e2b_reply_error(c->req, 404, "sandbox `%s` not found", c->sandbox_id);
        return NULL;
    }
    return sb;
}

static void get_info(struct api_ctx *c)
{
    struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    http_respond_json(c->req, 200, listed_json(c->d, sb, true));
    sandbox_unref(sb);
}

static void kill_sandbox(struct api_ctx *c)
{
    struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (sandbox_delete(c->d, sb, "killed through the E2B API", &err) < 0)
        e2b_reply_sbx_error(c->req, &err);
    else
        http_respond(c->req, 204, NULL, NULL, 0);
    sandbox_unref(sb);
}

static void timeout_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    int64_t timeout = 0;
    if (jsonreq_integer(body, "timeout", 0, SANDBOX_LIFECYCLE_MAX_S, &timeout, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    if (sandbox_renew(c->d, sb, timeout > 0 ? timeout : 1, &err) < 0)
        e2b_reply_sbx_error(c->req, &err);
    else
        http_respond(c->req, 204, NULL, NULL, 0);
    sandbox_unref(sb);
}

static void pause_sandbox(struct api_ctx *c)
{
    struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (sb->state != SANDBOX_RUNNING)
        e2b_reply_error(c->req, 409, "sandbox `%s` is already paused", sb->id);
    else if (sandbox_pause(c->d, sb, &err) < 0)
        e2b_reply_sbx_error(c->req, &err);
    else
        http_respond(c->req, 204, NULL, NULL, 0);
    sandbox_unref(sb);
}

/* connect (v1, v2) and the older resume: a paused sandbox is resumed, a stopped one started (201); a
 * running one answers 200. A timeout given restarts the lifetime. */
static void connect_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    int64_t timeout = 0;
    if (jsonreq_integer(body, "timeout", 0, SANDBOX_LIFECYCLE_MAX_S, &timeout, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    int status = 200;
    int r = 0;
    if (sb->state == SANDBOX_PAUSED) {
        r = sandbox_resume(c->d, sb, &err);
        status = 201;
    } else if (sb->state == SANDBOX_STOPPED) {
        r = keys_check_quota(c->d, sb->owner, 0, sb->res.memory_mb, &err);
        if (r >= 0)
            r = sandbox_start(c->d, sb, &err);
        status = 201;
    }
    if (r >= 0 && timeout > 0)
        r = sandbox_renew(c->d, sb, timeout, &err);
    if (r < 0)
        e2b_reply_sbx_error(c->req, &err);
    else
        http_respond_json(c->req, status, sandbox_json(c->d, sb));
    sandbox_unref(sb);
}

/* getMetrics: one current sample. cpuUsedPct is the sandbox cgroup's CPU time (cpu.stat usage_usec, as
 * sbx's own metrics read it) over a short window starting with the request, as a percentage of the CPUs
 * it may use (its cpus limit, or every online CPU when it has none). */
#define CPU_SAMPLE_USEC (250 * USEC_PER_MSEC)

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
    json_t *arr = json_array();
    struct runtime_metrics m;
    if (sandbox_need_up(sb, NULL) >= 0 && runtime_metrics(sb->id, &m) >= 0) {
        usec_t elapsed = now_usec(CLOCK_MONOTONIC) - ms->started;
        uint64_t used = m.cpu_usage_nsec > ms->cpu_nsec ? m.cpu_usage_nsec - ms->cpu_nsec : 0;
        double pct = elapsed > 0 ? (double)used / ((double)elapsed * 1000.0) / cpu_limit(sb) * 100.0 : 0.0;
        pct = pct > 100.0 ? 100.0 : (double)(int64_t)(pct * 100.0 + 0.5) / 100.0;
        int64_t now = (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC);
        struct runtime_disk_metrics dm = {0};
        bool disk = sb->res.disk_mb && runtime_disk_metrics(sb->state_dir, &dm) >= 0;
        json_t *o = json_pack("{s:o, s:I, s:i, s:f, s:I, s:I, s:I, s:I, s:I}", "timestamp", time_json(now),
                              "timestampUnix", (json_int_t)(now / 1000), "cpuCount",
                              (int)(cpu_limit(sb) + 0.999), "cpuUsedPct", pct, "memUsed",
                              (json_int_t)m.memory_bytes, "memTotal", (json_int_t)(sb->res.memory_mb << 20),
                              "memCache", (json_int_t)0, "diskUsed", (json_int_t)(disk ? dm.used_bytes : 0),
                              "diskTotal", (json_int_t)(sb->res.disk_mb << 20));
        json_array_append_new(arr, o);
    }
    http_respond_json(ms->c->req, 200, arr);
    metrics_sample_free(ms);
}

static void metrics(struct api_ctx *c)
{
    struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    struct runtime_metrics m;
    if (sandbox_need_up(sb, NULL) < 0 || runtime_metrics(sb->id, &m) < 0) {
        sandbox_unref(sb);
        return http_respond_json(c->req, 200, json_array());
    }
    struct metrics_sample *ms = xcalloc(1, sizeof(*ms));
    ms->c = c;
    ms->sb = sb;
    ms->cpu_nsec = m.cpu_usage_nsec;
    ms->started = now_usec(CLOCK_MONOTONIC);
    http_request_on_abort(c->req, metrics_aborted, ms);
    loop_timer_start(c->d->loop, &ms->timer, CPU_SAMPLE_USEC, metrics_sampled);
}

/* --- list --------------------------------------------------------------------------------------- */

#define LIST_MAX_FILTERS 32

/* ?metadata=<k=v&k2=v2, URL-encoded, keys and values encoded once more>&state=running,paused&limit=N&
 * nextToken=<offset>. */
static void list(struct api_ctx *c)
{
    char *keys[LIST_MAX_FILTERS], *vals[LIST_MAX_FILTERS];
    size_t n_meta = 0;
    const char *meta = http_query_get(c->req, "metadata");
    const char *state = http_query_get(c->req, "state");
    const char *limit_s = http_query_get(c->req, "limit"), *next = http_query_get(c->req, "nextToken");
    long limit = limit_s && *limit_s ? strtol(limit_s, NULL, 10) : E2B_LIST_MAX;
    long offset = next && *next ? strtol(next, NULL, 10) : 0;
    if (limit < 1 || limit > E2B_LIST_MAX || offset < 0)
        return e2b_reply_error(c->req, 400, "limit must be 1..%d and nextToken one this API gave",
                               E2B_LIST_MAX);
    bool want_running = !state || !*state || strstr(state, "running");
    bool want_paused = !state || !*state || strstr(state, "paused");
    for (const char *q = meta; q && *q && n_meta < LIST_MAX_FILTERS;) {
        const char *amp = strchr(q, '&');
        size_t plen = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', plen);
        size_t klen = eq ? (size_t)(eq - q) : plen, vlen = eq ? plen - klen - 1 : 0;
        keys[n_meta] = xmalloc(klen + 1);
        vals[n_meta] = xmalloc(vlen + 1);
        long kl = http_percent_decode(q, klen, keys[n_meta], true);
        long vl = http_percent_decode(eq ? eq + 1 : "", vlen, vals[n_meta], true);
        n_meta++;
        if (kl < 0 || vl < 0) {
            for (size_t i = 0; i < n_meta; i++) {
                free(keys[i]);
                free(vals[i]);
            }
            return e2b_reply_error(c->req, 400, "malformed metadata filter");
        }
        q = amp ? amp + 1 : NULL;
    }
    json_t *arr = json_array();
    long seen = 0;
    bool more = false;
    struct sandbox *last = c->d->sandboxes;
    while (last && last->next)
        last = last->next;
    for (struct sandbox *sb = last; sb; sb = sb->prev) {
        const char *st = e2b_state(sb);
        if (!st || sb->warm || !sandbox_visible_to(sb, c->owner))
            continue;
        if ((strcmp(st, "running") == 0 && !want_running) || (strcmp(st, "paused") == 0 && !want_paused))
            continue;
        bool ok = true;
        for (size_t i = 0; i < n_meta && ok; i++) {
            const char *v = json_string_value(json_object_get(sb->metadata, keys[i]));
            ok = v && strcmp(v, vals[i]) == 0;
        }
        if (!ok || seen++ < offset)
            continue;
        if ((long)json_array_size(arr) == limit) {
            more = true;
            break;
        }
        json_array_append_new(arr, listed_json(c->d, sb, false));
    }
    for (size_t i = 0; i < n_meta; i++) {
        free(keys[i]);
        free(vals[i]);
    }
    if (more) {
        char tok[32];
        snprintf(tok, sizeof(tok), "%ld", offset + limit);
        http_response_header(c->req, "X-Next-Token", tok);
    }
    http_respond_json(c->req, 200, arr);
}

/* --- routing ------------------------------------------------------------------------------------ */

static void create(struct api_ctx *c)
{
    api_read_json(c, create_with_body);
}

static void set_timeout(struct api_ctx *c)
{
    api_read_json(c, timeout_with_body);
}

static void connect_sandbox(struct api_ctx *c)
{
    api_read_json(c, connect_with_body);
}

struct e2b_route {
    const char *method;
    const char *pattern; /* "*" is the sandbox id */
    void (*handler)(struct api_ctx *c);
};

static const struct e2b_route routes[] = {
    {"POST", "/v2/sandboxes", create},
    {"POST", "/sandboxes", create},
    {"GET", "/v2/sandboxes", list},
    {"GET", "/sandboxes", list},
    {"GET", "/sandboxes/*", get_info},
    {"DELETE", "/sandboxes/*", kill_sandbox},
    {"POST", "/sandboxes/*/timeout", set_timeout},
    {"POST", "/sandboxes/*/pause", pause_sandbox},
    {"POST", "/v2/sandboxes/*/connect", connect_sandbox},
    {"POST", "/sandboxes/*/connect", connect_sandbox},
    {"POST", "/sandboxes/*/resume", connect_sandbox},
    {"GET", "/sandboxes/*/metrics", metrics},
};

/* Matches path against pattern; the "*" segment goes to id (SBX_ID_MAX + 1 bytes). */
static bool route_match(const char *pattern, const char *path, char *id)
{
    while (*pattern && *path) {
        if (*pattern == '*') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n > SBX_ID_MAX)
                return false;
            memcpy(id, path, n);
            id[n] = 0;
            path += n;
            pattern++;
            continue;
        }
        if (*pattern++ != *path++)
            return false;
    }
    return !*pattern && !*path;
}

bool e2b_api_path(const char *path)
{
    return strcmp(path, "/sandboxes") == 0 || strncmp(path, "/sandboxes/", 11) == 0 ||
           strcmp(path, "/v2/sandboxes") == 0 || strncmp(path, "/v2/sandboxes/", 14) == 0 ||
           strcmp(path, "/snapshots") == 0 || strncmp(path, "/templates/", 11) == 0;
}

void e2b_api_handle(struct daemon *d, struct http_request *req)
{
    const char *path = http_request_path(req), *method = http_request_method(req);
    const struct api_key *key = NULL;
    if (!http_header_get(req, "X-Api-Key") && !http_header_get(req, "Authorization"))
        return e2b_reply_error(req, 401, "missing API key: set E2B_API_KEY to an sbx API key");
    if (api_identify(d, req, &key) < 0)
        return e2b_reply_error(req, 401, "invalid API key");
    bool path_known = false;
    for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
        char id[SBX_ID_MAX + 1] = "";
        if (!route_match(routes[i].pattern, path, id))
            continue;
        path_known = true;
        if (strcmp(routes[i].method, method) != 0)
            continue;
        /* One metrics label for the whole control plane: sbxd keeps a bounded set of route labels. */
        struct api_ctx *c = e2b_ctx_new(d, req, "e2b:api", id[0] ? id : NULL, key ? key->id : NULL);
        routes[i].handler(c);
        return;
    }
    if (path_known)
        return e2b_reply_error(req, 405, "%s is not allowed on %s", method, path);
    e2b_reply_error(req, 404, "%s %s is not supported by sbx's E2B API", method, path);
}

bool e2b_dispatch(struct daemon *d, struct http_request *req)
{
    const char *path = http_request_path(req);
    const char *sid = http_header_get(req, "E2b-Sandbox-Id");
    if (sid) {
        e2b_envd_handle(d, req, sid);
        return true;
    }
    if (strcmp(path, "/files") == 0 && http_query_get(req, "signature")) {
        e2b_envd_handle(d, req, NULL);
        return true;
    }
    if (!e2b_api_path(path))
        return false;
    e2b_api_handle(d, req);
    return true;
}
