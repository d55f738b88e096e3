/* E2B's control plane (the REST API behind E2B_API_URL) on sbx's sandbox registry, and the dispatch of
 * E2B requests between it, envd (e2b_envd.c) and the native router. Shapes only: every operation is the
 * registry's (daemon/sandbox.h). docs/compat/e2b.md has the mapping. */
#include "compat/e2b.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
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
#include "compat/route.h"
#include "daemon/capture.h"
#include "daemon/checkpoint.h"
#include "daemon/daemon.h"
#include "daemon/egress.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "loop/loop.h"
#include "runtime/runtime.h"

#define E2B_DEFAULT_TIMEOUT_S 300 /* the SDK's and E2B's default sandbox lifetime */
#define E2B_ENV_MAX_ENTRIES 1024
#define E2B_ENV_MAX_ENTRY (32 * 1024)
#define E2B_METADATA_MAX (64 * 1024)
#define E2B_LIST_MAX 100
/* Metadata key marking a sandbox whose E2B create left its ports public (network.allowPublicTraffic not
 * false): its value is e2b_token("e2b-public-v1", id), which only sbxd can make and which names that one
 * sandbox, so no API call can set it on another (native) sandbox. Hidden from E2B's metadata views. */
#define E2B_PUBLIC_KEY "e2b:publicTraffic"

/* --- shared helpers ----------------------------------------------------------------------------- */

/* base64url(HMAC-SHA256(service secret, "<purpose>\n<id>")) into ret (E2B_ENVD_TOKEN_MAX + 1 bytes). */
static int e2b_token(struct daemon *d, const char *purpose, const char *sandbox_id, char *ret, sbx_error *err)
{
    _cleanup_free_ char *msg = xasprintf("%s\n%s", purpose, sandbox_id);
    unsigned char mac[32];
    if (api_service_mac(d, msg, mac, err) < 0)
        return err->code;
    char enc[48];
    b64url_encode(mac, sizeof(mac), enc);
    snprintf(ret, E2B_ENVD_TOKEN_MAX + 1, "%s", enc);
    return 0;
}

int e2b_envd_token(struct daemon *d, const char *sandbox_id, char *ret, sbx_error *err)
{
    return e2b_token(d, "e2b-envd-v1", sandbox_id, ret, err);
}

/* Whether `got` is the token of purpose for sandbox_id (compared in constant time). */
static bool token_matches(struct daemon *d, const char *purpose, const char *sandbox_id, const char *got)
{
    char want[E2B_ENVD_TOKEN_MAX + 1];
    sbx_error err = {0};
    if (!got || e2b_token(d, purpose, sandbox_id, want, &err) < 0)
        return false;
    size_t n = strlen(want);
    return strlen(got) == n && CRYPTO_memcmp(got, want, n) == 0;
}

static bool is_public(struct daemon *d, const struct sandbox *sb)
{
    return token_matches(d, "e2b-public-v1", sb->id,
                         json_string_value(json_object_get(sb->metadata, E2B_PUBLIC_KEY)));
}

bool e2b_service_authorized(struct daemon *d, struct http_request *req, const char *sandbox_id)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = sandbox_lookup(d, sandbox_id, NULL);
    if (!sb || strcmp(sb->id, sandbox_id) != 0)
        return false;
    const char *tok = http_header_get(req, "E2b-Traffic-Access-Token");
    if (tok && token_matches(d, "e2b-traffic-v1", sb->id, tok))
        return true;
    return is_public(d, sb);
}

/* E2B's `domain` for this request: sbxd's --service-domain with the port the client reached sbxd on, so
 * that getHost(port) = "<port>-<id>.<domain>" comes back to this listener; null without a domain. */
static json_t *domain_json(struct http_request *req)
{
    const char *dom = api_service_domain();
    if (!dom)
        return json_null();
    const char *host = http_header_get(req, "Host");
    const char *colon = host ? strrchr(host, ':') : NULL;
    if (colon && (!colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1)))
        colon = NULL;
    return json_sprintf("%s%s", dom, colon ? colon : "");
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
    bool public_traffic;    /* create: network.allowPublicTraffic is not false */
    int64_t fork_timeout_s; /* fork: the forks' lifetime */
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
static json_t *sandbox_json(struct daemon *d, struct http_request *req, const struct sandbox *sb)
{
    char token[E2B_ENVD_TOKEN_MAX + 1] = "", traffic[E2B_ENVD_TOKEN_MAX + 1] = "";
    sbx_error err = {0};
    if (e2b_envd_token(d, sb->id, token, &err) < 0 ||
        e2b_token(d, "e2b-traffic-v1", sb->id, traffic, &err) < 0)
        log_warning("e2b: tokens for `%s`: %s", sb->id, err.msg);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s}", "sandboxID", sb->id, "templateID", template_of(sb),
                  "clientID", "sbx", "envdVersion", E2B_ENVD_VERSION, "envdAccessToken", token, "domain",
                  domain_json(req), "trafficAccessToken", traffic);
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
/* SandboxDetail's network and allowInternetAccess from sbx's egress policy (e2b_egress_policy reversed:
 * a deny default is denyOut 0.0.0.0/0). */
static void network_info(struct daemon *d, const struct sandbox *sb, json_t *o)
{
    json_t *net = egress_network_to_json(sb->net);
    json_t *eg = json_object_get(net, "egress");
    bool deny_default =
        !eg || strcmp(json_string_value(json_object_get(eg, "default")) ?: "deny", "deny") == 0;
    json_t *allow = json_object_get(eg, "allow"), *deny = json_object_get(eg, "deny");
    json_t *deny_out = json_array();
    if (deny_default)
        json_array_append_new(deny_out, json_string("0.0.0.0/0"));
    if (deny)
        json_array_extend(deny_out, deny);
    json_object_set_new(o, "allowInternetAccess", json_boolean(!deny_default));
    json_object_set_new(o, "network",
                        json_pack("{s:o, s:o, s:b}", "allowOut", allow ? json_deep_copy(allow) : json_array(),
                                  "denyOut", deny_out, "allowPublicTraffic", is_public(d, sb)));
    json_decref(net);
}

static json_t *listed_json(struct daemon *d, struct http_request *req, const struct sandbox *sb, bool detail)
{
    int64_t end = sb->expires_ms ? sb->expires_ms : sb->created_ms + sb->life.timeout_s * 1000;
    json_t *meta = sb->metadata ? json_deep_copy(sb->metadata) : json_object();
    json_object_del(meta, E2B_PUBLIC_KEY);
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
        json_object_set_new(o, "domain", domain_json(req));
        network_info(d, sb, o);
        json_object_set_new(o, "lifecycle",
                            json_pack("{s:s, s:b}", "onTimeout", "kill", "autoResume", false));
    }
    return o;
}

/* --- network ------------------------------------------------------------------------------------ */

static struct sandbox *lookup(struct api_ctx *c);

static void json_decrefp_(json_t **p)
{
    json_decref(*p);
}

/* "a.b.c.d" or "a.b.c.d/p" (E2B's allowOut/denyOut CIDRs and bare addresses). */
static bool parse_cidr(const char *s, uint32_t *net, unsigned *prefix)
{
    char buf[32];
    if (strlen(s) >= sizeof(buf))
        return false;
    strcpy(buf, s);
    unsigned p = 32;
    char *slash = strchr(buf, '/');
    if (slash) {
        char *end;
        long v = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || v < 0 || v > 32)
            return false;
        p = (unsigned)v;
        *slash = 0;
    }
    struct in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1)
        return false;
    uint32_t h = ntohl(a.s_addr);
    *net = p ? h & (~0u << (32 - p)) : 0;
    *prefix = p;
    return true;
}

struct cidr {
    uint32_t net;
    unsigned prefix;
};

/* Appends to out the parts of net/prefix that no entry of allow covers: E2B's allowOut wins over its
 * denyOut, sbx's deny entries win over allow ones, so a deny range gives up what allowOut opens in it. */
static void deny_minus(uint32_t net, unsigned prefix, const struct cidr *allow, size_t n, json_t *out)
{
    bool overlap = false;
    for (size_t i = 0; i < n; i++) {
        unsigned p = allow[i].prefix < prefix ? allow[i].prefix : prefix;
        uint32_t mask = p ? ~0u << (32 - p) : 0;
        if ((net & mask) != (allow[i].net & mask))
            continue;
        if (allow[i].prefix <= prefix)
            return; /* all of it is allowed */
        overlap = true;
    }
    if (json_array_size(out) > EGRESS_RULES_MAX) /* sbx refuses the policy anyway */
        return;
    if (!overlap) {
        struct in_addr a = {.s_addr = htonl(net)};
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a, buf, sizeof(buf));
        json_array_append_new(out, json_sprintf("%s/%u", buf, prefix));
        return;
    }
    deny_minus(net, prefix + 1, allow, n, out); /* prefix < 32: a longer allow entry overlaps */
    deny_minus(net | (1u << (31 - prefix)), prefix + 1, allow, n, out);
}

/* An array of strings (NULL: absent), or 400. */
static int string_list(json_t *obj, const char *key, json_t **ret, sbx_error *err)
{
    json_t *v = json_object_get(obj, key);
    *ret = NULL;
    if (!v || json_is_null(v))
        return 0;
    size_t i;
    json_t *e;
    if (!json_is_array(v) || json_array_size(v) > EGRESS_RULES_MAX)
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "`%s` must be a list of at most %d CIDRs, addresses or domains", key,
                              EGRESS_RULES_MAX);
    json_array_foreach(v, i, e) if (!json_is_string(e))
    {
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400, "`%s` must be a list of strings", key);
    }
    *ret = v;
    return 0;
}

/* The E2B network options sbx cannot honour: a clear 400 rather than silently ignoring them. */
static int refuse_unsupported(json_t *net, sbx_error *err)
{
    json_t *rules = json_object_get(net, "rules"), *proxy = json_object_get(net, "egressProxy");
    json_t *mask = json_object_get(net, "maskRequestHost"), *https = json_object_get(net, "httpsPorts");
    const char *what = NULL;
    if (rules && !json_is_null(rules) && !(json_is_object(rules) && json_object_size(rules) == 0))
        what = "network.rules (request transforms)";
    else if (proxy && !json_is_null(proxy))
        what = "network.egressProxy";
    else if (mask && !json_is_null(mask))
        what = "network.maskRequestHost";
    else if (https && !json_is_null(https) && !(json_is_array(https) && json_array_size(https) == 0))
        what = "network.httpsPorts";
    if (what)
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400, "%s is not supported by sbx", what);
    return 0;
}

/* E2B's egress options as sbx's egress policy ({"default", "allow", "deny"}, daemon/egress.h) in *ret.
 * E2B: traffic is allowed unless denyOut names it, allowOut entries win over denyOut ones, and
 * allow_internet_access false is denyOut 0.0.0.0/0. So with 0.0.0.0/0 denied the policy is default deny
 * with allowOut as its allow list (other denyOut entries could only take from allowOut, which wins);
 * otherwise default allow, denyOut minus the allowOut CIDRs inside it as the deny list. internet: -1
 * absent, else the bool. */
static int e2b_egress_policy(json_t *obj, int internet, json_t **ret, sbx_error *err)
{
    json_t *allow_out, *deny_out;
    if (string_list(obj, "allowOut", &allow_out, err) < 0 || string_list(obj, "denyOut", &deny_out, err) < 0)
        return err->code;
    bool block = internet == 0;
    size_t i;
    json_t *e;
    json_array_foreach(deny_out, i, e)
    {
        uint32_t net;
        unsigned p;
        if (parse_cidr(json_string_value(e), &net, &p) && p == 0)
            block = true;
    }
    json_t *allow = allow_out ? json_deep_copy(allow_out) : json_array(), *deny = json_array();
    if (!block) {
        struct cidr holes[EGRESS_RULES_MAX];
        size_t n = 0;
        json_array_foreach(allow_out, i,
                           e) if (parse_cidr(json_string_value(e), &holes[n].net, &holes[n].prefix)) n++;
        json_array_foreach(deny_out, i, e)
        {
            uint32_t net;
            unsigned p;
            if (parse_cidr(json_string_value(e), &net, &p))
                deny_minus(net, p, holes, n, deny);
            else /* a domain (E2B refuses them in denyOut; sbx can deny them) or something sbx will refuse */
                json_array_append(deny, e);
        }
    }
    *ret = json_pack("{s:s, s:o, s:o}", "default", block ? "deny" : "allow", "allow", allow, "deny", deny);
    return 0;
}

/* A create's E2B network options: *ret_network the sbx "network" of sandbox_create_opts (NULL: mode none,
 * when the create names no egress option at all: sbx sandboxes have no network unless asked for it) and
 * whether its ports are public (E2B's default). */
static int create_network(json_t *body, json_t **ret_network, bool *ret_public, sbx_error *err)
{
    json_t *net = json_object_get(body, "network"), *aia = json_object_get(body, "allow_internet_access");
    *ret_network = NULL;
    *ret_public = true;
    if (net && !json_is_null(net) && !json_is_object(net))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400, "`network` must be an object");
    if (aia && !json_is_null(aia) && !json_is_boolean(aia))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "`allow_internet_access` must be a boolean");
    if (json_is_object(net)) {
        if (refuse_unsupported(net, err) < 0)
            return err->code;
        json_t *pub = json_object_get(net, "allowPublicTraffic");
        if (pub && !json_is_null(pub) && !json_is_boolean(pub))
            return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                                  "`network.allowPublicTraffic` must be a boolean");
        *ret_public = !json_is_false(pub);
    }
    bool egress =
        json_is_boolean(aia) ||
        (json_is_object(net) && (json_object_get(net, "allowOut") || json_object_get(net, "denyOut")));
    if (!egress)
        return 0;
    json_t *policy = NULL;
    if (e2b_egress_policy(json_is_object(net) ? net : NULL, json_is_boolean(aia) ? json_is_true(aia) : -1,
                          &policy, err) < 0)
        return err->code;
    *ret_network = json_pack("{s:s, s:o}", "mode", "egress", "egress", policy);
    return 0;
}

/* PUT /sandboxes/{id}/network: the whole egress configuration is replaced (omitted fields are cleared). */
static void network_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    json_t *aia = json_object_get(body, "allow_internet_access");
    if (aia && !json_is_null(aia) && !json_is_boolean(aia))
        return e2b_reply_error(c->req, 400, "`allow_internet_access` must be a boolean");
    _cleanup_(json_decrefp_) json_t *policy = NULL;
    if (refuse_unsupported(body, &err) < 0 ||
        e2b_egress_policy(body, json_is_boolean(aia) ? json_is_true(aia) : -1, &policy, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    if (!sb->net) {
        /* Mode none already denies everything; anything else needs an egress sandbox. */
        if (strcmp(json_string_value(json_object_get(policy, "default")), "deny") == 0 &&
            json_array_size(json_object_get(policy, "allow")) == 0)
            return http_respond(c->req, 204, NULL, NULL, 0);
        return e2b_reply_error(c->req, 409,
                               "sandbox `%s` was created without network access, and sbx cannot add it to a "
                               "running sandbox: create it with allowInternetAccess or network options",
                               sb->id);
    }
    struct egress_policy p = {0};
    int r = egress_parse_policy(policy, &p, &err);
    if (r >= 0)
        r = sandbox_set_egress(c->d, sb, &p, &err);
    egress_policy_done(&p);
    if (r < 0)
        return e2b_reply_sbx_error(c->req, &err);
    http_respond(c->req, 204, NULL, NULL, 0);
}

/* Marks a sandbox an E2B create made public (E2B_PUBLIC_KEY): its service ports then need no token. */
static void mark_public(struct daemon *d, struct sandbox *sb)
{
    char mac[E2B_ENVD_TOKEN_MAX + 1];
    sbx_error err = {0};
    json_t *m = sb->metadata ? json_deep_copy(sb->metadata) : json_object();
    if (e2b_token(d, "e2b-public-v1", sb->id, mac, &err) >= 0) {
        json_object_set_new(m, E2B_PUBLIC_KEY, json_string(mac));
        if (sandbox_set_metadata(d, sb, m, &err) < 0)
            log_warning("e2b: marking `%s` public: %s", sb->id, err.msg);
    }
    json_decref(m);
}

/* --- create ------------------------------------------------------------------------------------- */

struct create_req {
    struct daemon *d;
    struct http_request *req;
};

static void created(struct sandbox *sb, const sbx_error *err, void *userdata)
{
    struct api_ctx *c = userdata;
    if (sb && container_of(c, struct e2b_ctx, api)->public_traffic)
        mark_public(c->d, sb);
    if (sb)
        http_respond_json(c->req, 201, sandbox_json(c->d, c->req, sb));
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
    if (metadata)
        json_object_del(metadata, E2B_PUBLIC_KEY); /* sbxd's to set */
    _cleanup_(json_decrefp_) json_t *network = NULL;
    bool public_traffic = true;
    if (create_network(body, &network, &public_traffic, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    container_of(c, struct e2b_ctx, api)->public_traffic = public_traffic;
    opts.network = network;
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
        if (public_traffic)
            mark_public(c->d, sb);
        http_respond_json(c->req, 201, sandbox_json(c->d, c->req, sb));
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
    http_respond_json(c->req, 200, listed_json(c->d, c->req, sb, true));
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
        http_respond_json(c->req, status, sandbox_json(c->d, c->req, sb));
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
        json_array_append_new(arr, listed_json(c->d, c->req, sb, false));
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

/* --- snapshots ---------------------------------------------------------------------------------- */

/* Which sandbox each E2B snapshot was captured from, for listSnapshots' sandboxID filter. sbx's snapshots
 * do not record it, so this lives in memory: after a restart the filter no longer finds older ones. */
struct snap_origin {
    struct snap_origin *next;
    char snapshot_id[SBX_ID_MAX + 1];
    char sandbox_id[SBX_ID_MAX + 1];
};
static struct snap_origin *origins;

static void origin_add(const char *snapshot_id, const char *sandbox_id)
{
    struct snap_origin *o = xcalloc(1, sizeof(*o));
    snprintf(o->snapshot_id, sizeof(o->snapshot_id), "%s", snapshot_id);
    snprintf(o->sandbox_id, sizeof(o->sandbox_id), "%s", sandbox_id);
    o->next = origins;
    origins = o;
}

/* The sandbox a snapshot was captured from (NULL: unknown); forgets the snapshots that are gone. */
static const char *origin_of(struct daemon *d, const char *snapshot_id)
{
    const char *found = NULL;
    for (struct snap_origin **p = &origins; *p;) {
        struct snap_origin *o = *p;
        if (!snapshot_find(d, o->snapshot_id)) {
            *p = o->next;
            free(o);
            continue;
        }
        if (strcmp(o->snapshot_id, snapshot_id) == 0)
            found = o->sandbox_id;
        p = &o->next;
    }
    return found;
}

#define SNAPSHOT_POLL_USEC (50 * USEC_PER_MSEC)

/* createSnapshot: E2B answers when the snapshot is usable, sbx's capture at once (building); this waits
 * for the capture, polling the registry. */
struct snap_wait {
    struct loop_timer timer;
    struct api_ctx *c;
    char id[SBX_ID_MAX + 1];
};

static void snap_wait_free(struct snap_wait *w)
{
    loop_timer_stop(w->c->d->loop, &w->timer);
    free(w);
}

static void snap_wait_aborted(struct http_request *req, void *userdata)
{
    snap_wait_free(userdata);
}

static void snap_poll(struct loop_timer *t)
{
    struct snap_wait *w = container_of(t, struct snap_wait, timer);
    struct api_ctx *c = w->c;
    struct snapshot *sn = snapshot_find(c->d, w->id);
    if (sn && sn->status == SNAPSHOT_BUILDING)
        return loop_timer_start(c->d->loop, &w->timer, SNAPSHOT_POLL_USEC, snap_poll);
    http_request_on_abort(c->req, NULL, NULL);
    if (!sn)
        e2b_reply_error(c->req, 500, "snapshot `%s` disappeared while it was captured", w->id);
    else if (sn->status == SNAPSHOT_FAILED) {
        e2b_reply_error(c->req, 500, "snapshot failed: %s", sn->reason ? sn->reason : "unknown reason");
        sbx_error err = {0};
        if (snapshot_delete(c->d, sn, &err) < 0) /* E2B has no failed snapshots: free the name */
            log_warning("e2b: deleting failed snapshot `%s`: %s", w->id, err.msg);
    } else
        http_respond_json(c->req, 201, json_pack("{s:s, s:[s]}", "snapshotID", sn->id, "names", sn->name));
    snap_wait_free(w);
}

static void snapshot_with_body(struct api_ctx *c, json_t *body)
{
    static unsigned counter;
    sbx_error err = {0};
    const char *name = NULL;
    if (jsonreq_string(body, "name", 64, &name, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    _cleanup_free_ char *gen = NULL;
    if (!name || !*name)
        name = gen = xasprintf("e2b-snapshot-%lld-%u", (long long)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC),
                               counter++);
    /* As POST /v1/sandboxes/{id}/capture (api/snapshots.c). */
    if (sandbox_refuse_busy(sb, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    struct snapshot *sn = NULL;
    bool host_base =
        !sb->snapshot || strcmp(sb->snapshot, "host") == 0 || snapshot_is_host_based(c->d, sb->snapshot);
    if (snapshot_building_new(c->d, name, c->owner, "capture", host_base, &sn, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    const struct snapshot_limits *sl = snapshot_limits(c->d);
    struct capture_limits lim = {.max_bytes = sl->max_layer_bytes, .max_entries = sl->max_entries};
    if (checkpoint_capture(c->d, sb, sn, &lim, &err) < 0) {
        snapshot_building_drop(c->d, sn);
        return e2b_reply_sbx_error(c->req, &err);
    }
    origin_add(sn->id, sb->id);
    struct snap_wait *w = xcalloc(1, sizeof(*w));
    w->c = c;
    snprintf(w->id, sizeof(w->id), "%s", sn->id);
    http_request_on_abort(c->req, snap_wait_aborted, w);
    loop_timer_start(c->d->loop, &w->timer, SNAPSHOT_POLL_USEC, snap_poll);
}

static void create_snapshot(struct api_ctx *c)
{
    api_read_json(c, snapshot_with_body);
}

/* GET /snapshots?sandboxID=&name=&limit=&nextToken=<offset>: the ready captures the key sees, newest
 * first. */
static void list_snapshots(struct api_ctx *c)
{
    const char *sid = http_query_get(c->req, "sandboxID"), *name = http_query_get(c->req, "name");
    const char *limit_s = http_query_get(c->req, "limit"), *next = http_query_get(c->req, "nextToken");
    long limit = limit_s && *limit_s ? strtol(limit_s, NULL, 10) : E2B_LIST_MAX;
    long offset = next && *next ? strtol(next, NULL, 10) : 0;
    if (limit < 1 || limit > E2B_LIST_MAX || offset < 0)
        return e2b_reply_error(c->req, 400, "limit must be 1..%d and nextToken one this API gave",
                               E2B_LIST_MAX);
    json_t *all = snapshot_list_json(c->d, c->owner), *snaps = json_object_get(all, "snapshots");
    json_t *arr = json_array();
    long seen = 0;
    bool more = false;
    for (size_t i = json_array_size(snaps); i-- > 0;) {
        json_t *sn = json_array_get(snaps, i);
        const char *id = json_string_value(json_object_get(sn, "id"));
        const char *nm = json_string_value(json_object_get(sn, "name"));
        if (strcmp(json_string_value(json_object_get(sn, "source")) ?: "", "capture") != 0 ||
            strcmp(json_string_value(json_object_get(sn, "status")) ?: "", "ready") != 0)
            continue;
        if (name && *name && strcmp(name, nm) != 0 && strcmp(name, id) != 0)
            continue;
        const char *origin = origin_of(c->d, id);
        if (sid && *sid && (!origin || strcmp(origin, sid) != 0))
            continue;
        if (seen++ < offset)
            continue;
        if ((long)json_array_size(arr) == limit) {
            more = true;
            break;
        }
        json_array_append_new(arr, json_pack("{s:s, s:[s]}", "snapshotID", id, "names", nm));
    }
    json_decref(all);
    if (more) {
        char tok[32];
        snprintf(tok, sizeof(tok), "%ld", offset + limit);
        http_response_header(c->req, "X-Next-Token", tok);
    }
    http_respond_json(c->req, 200, arr);
}

/* DELETE /templates/{id}: a snapshot by id or name, as DELETE /v1/snapshots/{id} allows it. */
static void delete_snapshot(struct api_ctx *c)
{
    sbx_error err = {0};
    struct snapshot *sn = snapshot_find_visible(c->d, c->sandbox_id, c->owner);
    if (!sn)
        return e2b_reply_error(c->req, 404, "snapshot `%s` not found", c->sandbox_id);
    if (c->owner && !sn->owner)
        return e2b_reply_error(c->req, 403, "only the admin key may delete snapshot `%s`", sn->name);
    if (snapshot_delete(c->d, sn, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    http_respond(c->req, 204, NULL, NULL, 0);
}

/* --- fork --------------------------------------------------------------------------------------- */

/* POST /sandboxes/{id}/fork {timeout?, count?}: sbx's fork (a disk copy; processes and memory are not
 * carried over), answered as E2B's [{sandbox}] per fork. sbx's fork succeeds or fails as a whole. */
static void forked(int status, json_t *body, const sbx_error *err, void *userdata)
{
    struct api_ctx *c = userdata;
    struct e2b_ctx *e = container_of(c, struct e2b_ctx, api);
    http_request_on_abort(c->req, NULL, NULL);
    if (err) {
        json_decref(body);
        return e2b_reply_sbx_error(c->req, err);
    }
    json_t *arr = json_array(), *v;
    size_t i;
    json_array_foreach(json_object_get(body, "sandboxes"), i, v)
    {
        _cleanup_(sandbox_unrefp) struct sandbox *sb =
            sandbox_lookup(c->d, json_string_value(json_object_get(v, "id")), NULL);
        if (!sb)
            continue;
        sbx_error rerr = {0};
        if (e->fork_timeout_s > 0 && sandbox_renew(c->d, sb, e->fork_timeout_s, &rerr) < 0)
            log_warning("e2b: fork `%s` timeout: %s", sb->id, rerr.msg);
        if (e->public_traffic)
            mark_public(c->d, sb);
        json_array_append_new(arr, json_pack("{s:o}", "sandbox", sandbox_json(c->d, c->req, sb)));
    }
    json_decref(body);
    (void)status;
    http_respond_json(c->req, 201, arr);
}

static void fork_aborted(struct http_request *req, void *userdata)
{
    checkpoint_op_forget(userdata);
}

static void fork_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    int64_t count = 1, timeout = E2B_DEFAULT_TIMEOUT_S;
    if (jsonreq_integer(body, "count", 1, FORK_COUNT_MAX, &count, &err) < 0 ||
        jsonreq_integer(body, "timeout", 1, SANDBOX_LIFECYCLE_MAX_S, &timeout, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    struct e2b_ctx *e = container_of(c, struct e2b_ctx, api);
    e->fork_timeout_s = timeout;
    e->public_traffic = is_public(c->d, sb);
    struct checkpoint_op *op = NULL;
    if (keys_check_quota(c->d, c->owner, (unsigned)count, sb->res.memory_mb * (uint64_t)count, &err) < 0 ||
        checkpoint_fork(c->d, sb, (unsigned)count, forked, c, &op, &err) < 0)
        return e2b_reply_sbx_error(c->req, &err);
    http_request_on_abort(c->req, fork_aborted, op);
}

static void fork_sandbox(struct api_ctx *c)
{
    api_read_json(c, fork_with_body);
}

static void update_network(struct api_ctx *c)
{
    api_read_json(c, network_with_body);
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
    {"PUT", "/sandboxes/*/network", update_network},
    {"POST", "/sandboxes/*/fork", fork_sandbox},
    {"POST", "/sandboxes/*/snapshots", create_snapshot},
    {"GET", "/snapshots", list_snapshots},
    {"DELETE", "/templates/*", delete_snapshot},
};

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
        if (!compat_route_match(routes[i].pattern, path, SBX_ID_MAX, false, (char *const[]){id}, 1))
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
