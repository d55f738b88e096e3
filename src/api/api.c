/* The /v1 router: authentication, path matching, method checks and the error/JSON reply helpers. */
#include "api/api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/console.h"
#include "api/contexts.h"
#include "api/internal.h"
#include "api/service.h"
#include "api/jsonreq.h"
#include "api/keys.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "compat/e2b.h"
#include "compat/langsmith.h"
#include "compat/opensandbox.h"
#include "daemon/daemon.h"
#include "daemon/metrics.h"
#include "daemon/sandbox.h"

#define SBX_VERSION "0.1.0"

void api_reply_error(struct http_request *req, const sbx_error *err)
{
    int status = sbx_error_http_status(err);
    if (status >= 500)
        log_error("%s %s: %s", http_request_method(req), http_request_path(req), err->msg);
    http_respond_error(req, status, sbx_error_kind(err), "%s", err->msg);
}

void api_reply_json(struct http_request *req, int status, json_t *body)
{
    if (!body)
        http_respond(req, status, NULL, NULL, 0);
    else
        http_respond_json(req, status, body);
}

struct sandbox *api_sandbox(struct api_ctx *c)
{
    /* Another tenant's sandbox is as absent as one that never existed. */
    struct sandbox *sb = sandbox_lookup(c->d, c->sandbox_id, c->owner);
    if (!sb)
        http_respond_error(c->req, 404, "not_found", "sandbox `%s` not found", c->sandbox_id);
    return sb;
}

struct sandbox *api_sandbox_awake(struct api_ctx *c)
{
    struct sandbox *sb = api_sandbox(c);
    if (sb)
        sandbox_touch(sb);
    if (sb && sb->state == SANDBOX_PAUSED) {
        sbx_error err = {0};
        if (sandbox_resume(c->d, sb, &err) < 0) {
            api_reply_error(c->req, &err);
            return sandbox_unref(sb);
        }
    }
    return sb;
}

/* --- bodies ------------------------------------------------------------------------------------- */

/* The callback lives in the request's context (freed with the request in every case): a body that
 * never completes (413, client gone) then leaks nothing. */
static void json_body_done(struct http_request *req, const char *body, size_t len, void *userdata)
{
    struct api_ctx *c = userdata;
    sbx_error err = {0};
    json_t *j;
    if (jsonreq_parse(body, len, &j, &err) < 0)
        api_reply_error(req, &err);
    else {
        c->json_cb(c, j);
        json_decref(j);
    }
}

void api_read_json(struct api_ctx *c, api_json_cb cb)
{
    c->json_cb = cb;
    http_request_read_body(c->req, JSONREQ_BODY_MAX, json_body_done, c);
}

/* --- daemon metrics ----------------------------------------------------------------------------- */

/* GET /metrics: the Prometheus exposition (daemon/metrics.h). */
static void api_metrics_get(struct api_ctx *c)
{
    _cleanup_(sbx_buf_done) struct sbx_buf b = SBX_BUF_INIT;
    metrics_render(c->d, &b);
    http_respond(c->req, 200, METRICS_CONTENT_TYPE, b.base, b.len);
}

/* The server's observer: every finished request, labelled with its route pattern ("healthz" and
 * "unmatched" for requests answered before or without routing: 401, 404, 405, malformed). */
static void observe_request(struct http_request *req, int status, const char *error_code, usec_t duration,
                            void *userdata)
{
    const struct api_ctx *c = http_request_get_userdata(req);
    const char *path = http_request_path(req);
    const char *route = "unmatched";
    if (c && c->route)
        route = c->route;
    else if (path && strcmp(path, "/healthz") == 0)
        route = "healthz";
    metrics_http_request(http_request_method_id(req), route, status, error_code, duration);
}

/* --- routing ------------------------------------------------------------------------------------ */

/* Path patterns are split on '/'; "*" matches one segment, captured in order as {id} then {cid}. */
struct route {
    const char *method;
    const char *pattern;
    void (*handler)(struct api_ctx *c);
    bool admin_only; /* tenants' keys get 403 */
};

static const struct route routes[] = {
    {"POST", "v1/sandboxes", api_sandboxes_create},
    {"GET", "v1/sandboxes", api_sandboxes_list},
    {"GET", "v1/sandboxes/*", api_sandboxes_get},
    {"DELETE", "v1/sandboxes/*", api_sandboxes_delete},
    {"PATCH", "v1/sandboxes/*", api_sandboxes_patch},
    {"POST", "v1/sandboxes/*/renew", api_sandboxes_renew},
    {"POST", "v1/sandboxes/*/pause", api_sandboxes_pause},
    {"POST", "v1/sandboxes/*/resume", api_sandboxes_resume},
    {"POST", "v1/sandboxes/*/stop", api_sandboxes_stop},
    {"GET", "v1/sandboxes/*/metrics", api_sandboxes_metrics},
    {"POST", "v1/sandboxes/*/start", api_sandboxes_start},
    {"POST", "v1/sandboxes/*/fork", api_sandboxes_fork},
    {"POST", "v1/sandboxes/*/capture", api_sandboxes_capture},
    {"POST", "v1/sandboxes/*/checkpoints", api_checkpoints_create},
    {"GET", "v1/sandboxes/*/checkpoints", api_checkpoints_list},
    {"GET", "v1/sandboxes/*/checkpoints/*", api_checkpoints_get},
    {"DELETE", "v1/sandboxes/*/checkpoints/*", api_checkpoints_delete},
    {"POST", "v1/sandboxes/*/checkpoints/*/restore", api_checkpoints_restore},
    {"GET", "v1/sandboxes/*/ports", api_ports_list},
    {"POST", "v1/sandboxes/*/ports/*/url", api_service_url},
    {"GET", "v1/sandboxes/*/tunnel", api_tunnel},
    {"POST", "v1/sandboxes/*/commands", api_commands_create},
    {"GET", "v1/sandboxes/*/commands", api_commands_list},
    {"GET", "v1/sandboxes/*/commands/*", api_commands_get},
    {"GET", "v1/sandboxes/*/commands/*/stream", api_commands_stream},
    {"GET", "v1/sandboxes/*/commands/*/logs", api_commands_logs},
    {"POST", "v1/sandboxes/*/commands/*/stdin", api_commands_stdin},
    {"POST", "v1/sandboxes/*/commands/*/signal", api_commands_signal},
    {"POST", "v1/sandboxes/*/commands/*/kill", api_commands_kill},
    {"POST", "v1/sandboxes/*/commands/*/resize", api_commands_resize},
    {"POST", "v1/sandboxes/*/contexts", api_contexts_create},
    {"GET", "v1/sandboxes/*/contexts", api_contexts_list},
    {"GET", "v1/sandboxes/*/contexts/*", api_contexts_get},
    {"DELETE", "v1/sandboxes/*/contexts/*", api_contexts_delete},
    {"POST", "v1/sandboxes/*/contexts/*/run", api_contexts_run},
    {"POST", "v1/sandboxes/*/contexts/*/interrupt", api_contexts_interrupt},
    {"POST", "v1/sandboxes/*/agents", api_agents_create},
    {"GET", "v1/sandboxes/*/agents", api_agents_list},
    {"GET", "v1/sandboxes/*/agents/*", api_agents_get},
    {"PATCH", "v1/sandboxes/*/agents/*", api_agents_patch},
    {"DELETE", "v1/sandboxes/*/agents/*", api_agents_delete},
    {"GET", "v1/sandboxes/*/agents/*/stream", api_agents_stream},
    {"POST", "v1/sandboxes/*/agents/*/prompt", api_agents_prompt},
    {"POST", "v1/sandboxes/*/agents/*/interrupt", api_agents_interrupt},
    {"PUT", "v1/sandboxes/*/files", api_files_put},
    {"GET", "v1/sandboxes/*/files", api_files_get},
    {"DELETE", "v1/sandboxes/*/files", api_files_delete},
    {"GET", "v1/sandboxes/*/files/stat", api_files_stat},
    {"GET", "v1/sandboxes/*/files/list", api_files_list},
    {"POST", "v1/sandboxes/*/files/mkdir", api_files_mkdir},
    {"POST", "v1/sandboxes/*/files/move", api_files_move},
    {"POST", "v1/snapshots", api_snapshots_create, true},
    {"GET", "v1/snapshots", api_snapshots_list},
    {"GET", "v1/snapshots/*", api_snapshots_get},
    {"DELETE", "v1/snapshots/*", api_snapshots_delete}, /* tenants: their own captures */
    {"GET", "v1/layers", api_layers_list, true},
    {"POST", "v1/volumes", api_volumes_create},
    {"GET", "v1/volumes", api_volumes_list},
    {"GET", "v1/volumes/*", api_volumes_get},
    {"DELETE", "v1/volumes/*", api_volumes_delete},
    {"GET", "metrics", api_metrics_get, true},
    {"POST", "v1/keys", api_keys_create, true},
    {"GET", "v1/keys", api_keys_list, true},
    {"DELETE", "v1/keys/*", api_keys_delete, true},
};

#define MAX_SEGMENTS 8
#define MAX_CAPTURES 2

/* Splits path into at most MAX_SEGMENTS segments in buf; returns the count, or -1 when too many. */
static int split_path(const char *path, char *buf, size_t size, char *segs[MAX_SEGMENTS])
{
    snprintf(buf, size, "%s", path);
    int n = 0;
    char *save = NULL;
    for (char *s = strtok_r(buf, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
        if (n == MAX_SEGMENTS)
            return -1;
        segs[n++] = s;
    }
    return n;
}

static bool match(const char *pattern, char *segs[], int nsegs, const char *caps[MAX_CAPTURES])
{
    char pbuf[128];
    char *psegs[MAX_SEGMENTS];
    int np = split_path(pattern, pbuf, sizeof(pbuf), psegs);
    if (np != nsegs)
        return false;
    int ncap = 0;
    for (int i = 0; i < np; i++) {
        if (strcmp(psegs[i], "*") == 0) {
            if (ncap < MAX_CAPTURES)
                caps[ncap++] = segs[i];
        } else if (strcmp(psegs[i], segs[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* Constant-time comparison so the key cannot be guessed byte by byte from response times. */
static bool key_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0;
}

/* Who is asking: 0 for the admin, 1 for a tenant (*ret_key), -1 for nobody known. A tenant's key always
 * identifies its tenant; the admin is whoever shows SBX_API_KEY, or anyone when none is configured (then
 * sbxd only listens on loopback). */
int api_identify(struct daemon *d, struct http_request *req, const struct api_key **ret_key)
{
    const char *h = http_header_get(req, "Authorization"), *presented = NULL;
    if (h && strncasecmp(h, "Bearer ", 7) == 0)
        presented = h + 7;
    else if ((h = http_header_get(req, "X-Api-Key")))
        presented = h;
    else
        presented = api_console_ws_key(req); /* a browser's WebSocket (api/console.h) */
    if (presented && (*ret_key = keys_find(d, presented)))
        return 1;
    if (!d->api_key)
        return 0;
    return presented && key_equal(presented, d->api_key) ? 0 : -1;
}

static void free_ctx(void *p)
{
    struct api_ctx *c = p;
    free((char *)c->sandbox_id);
    free((char *)c->command_id);
    free((char *)c->owner);
    free(c);
}

static void handle(struct http_request *req, void *userdata)
{
    struct daemon *d = userdata;
    const char *method = http_request_method(req), *path = http_request_path(req);

    /* Service URLs carry their own credential (a signed token), not an API key. */
    if (api_service_dispatch(d, req))
        return;
    /* The E2B control plane and envd (src/compat) authenticate with their own headers. */
    if (e2b_dispatch(d, req))
        return;
    /* The LangSmith sandbox protocol under /langsmith (src/compat), in its own error envelope. */
    if (langsmith_dispatch(d, req))
        return;
    /* The OpenSandbox lifecycle and execd APIs under /opensandbox (src/compat), in their error envelope. */
    if (opensandbox_dispatch(d, req))
        return;
    /* The web console's static files under /console/ (api/console.c): public, no key. */
    if (api_console_dispatch(req))
        return;
    if (strcmp(path, "/healthz") == 0) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
            return http_respond_error(req, 405, "method_not_allowed", "use GET");
        return http_respond_json(req, 200, json_pack("{s:s, s:s}", "status", "ok", "version", SBX_VERSION));
    }
    const struct api_key *key = NULL;
    int who = api_identify(d, req, &key);
    if (who < 0)
        return http_respond_error(req, 401, "unauthenticated", "missing or wrong API key");

    char buf[1024];
    char *segs[MAX_SEGMENTS];
    int n = strlen(path) < sizeof(buf) ? split_path(path, buf, sizeof(buf), segs) : -1;
    bool path_known = false;
    for (size_t i = 0; n >= 0 && i < ELEMENTSOF(routes); i++) {
        const char *caps[MAX_CAPTURES] = {0};
        if (!match(routes[i].pattern, segs, n, caps))
            continue;
        path_known = true;
        if (strcmp(routes[i].method, method) != 0)
            continue;
        if (routes[i].admin_only && key)
            return http_respond_error(req, 403, "permission_denied", "only the admin key may use %s", path);
        struct api_ctx *c = xcalloc(1, sizeof(*c));
        c->d = d;
        c->req = req;
        c->sandbox_id = caps[0] ? xstrdup(caps[0]) : NULL;
        c->command_id = caps[1] ? xstrdup(caps[1]) : NULL;
        c->route = routes[i].pattern;
        c->owner = key ? xstrdup(key->id) : NULL;
        http_request_set_userdata(req, c, free_ctx);
        routes[i].handler(c);
        return;
    }
    if (path_known)
        return http_respond_error(req, 405, "method_not_allowed", "%s is not allowed on %s", method, path);
    http_respond_error(req, 404, "not_found", "no route for %s %s", method, path);
}

int api_start(struct daemon *d, const char *host, int port, sbx_error *err)
{
    int r = http_server_new(d->loop, host, port, NULL, handle, d, &d->http, err);
    if (r >= 0)
        http_server_set_observer(d->http, observe_request, d);
    return r;
}

void api_stop(struct daemon *d)
{
    api_proxy_close_all();
    api_agents_close_all();
    http_server_free(d->http);
    d->http = NULL;
    context_runs_close_all(); /* after the server: its aborts have detached every run's client */
}
