/* OpenSandbox's lifecycle API (/v1/sandboxes... of the OpenSandbox server) on sbx's sandbox registry,
 * served under /opensandbox/v1 (and /opensandbox, as their server mounts every route without /v1 too),
 * and the dispatch of /opensandbox requests between it and the per-sandbox execd API
 * (opensandbox_execd.c, opensandbox_files.c). Shapes only: every operation is the registry's
 * (daemon/sandbox.h). docs/compat/opensandbox.md has the mapping. */
#include "compat/opensandbox.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <time.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "api/keys.h"
#include "api/service.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "compat/opensandbox_internal.h"
#include "compat/route.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "daemon/volume.h"
#include "runtime/runtime.h"

#define OS_PATH_MAX 2048
#define OS_REF_MAX 512
#define OS_REQUEST_ID_MAX 128
#define OS_METADATA_MAX 64     /* entries */
#define OS_METADATA_ENTRY 1024 /* key + value bytes */
#define OS_ENV_MAX 1024
#define OS_ENV_ENTRY (32 * 1024)
#define OS_ENTRYPOINT_MAX 256 /* argv entries */
#define OS_ENTRYPOINT_BYTES (128 * 1024)
#define OS_TIMEOUT_MIN_S 60
#define OS_CPUS_MAX 256.0
#define OS_MEM_MIN_MB 16
#define OS_MEM_MAX_MB (1024ull * 1024) /* 1 TiB */
#define OS_DISK_MIN_MB 64
#define OS_DISK_MAX_MB (1024ull * 1024)
#define OS_PAGE_SIZE_MAX 200
#define OS_SERVICE_TTL_S (24LL * 3600) /* endpoints of other ports: a service token this long */
/* The metadata key sbx keeps a sandbox's OpenSandbox-only fields under (an object, so never listed as
 * metadata, which is string-valued); users' keys may not use the prefix (their server reserves it). */
#define OS_SPEC_KEY "opensandbox.io/spec"
#define OS_RESERVED_PREFIX "opensandbox.io/"

/* --- errors and replies --------------------------------------------------------------------------- */

void os_reply(struct http_request *req, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    os_utf8_clean(msg, strlen(msg));
    http_respond_json(req, status, json_pack("{s:s, s:s}", "code", code, "message", msg));
}

void os_reply_empty(struct http_request *req, int status)
{
    http_respond(req, status, NULL, NULL, 0);
}

void os_reply_sbx(struct http_request *req, const sbx_error *err, enum os_plane plane)
{
    int status = sbx_error_http_status(err);
    if (status >= 500)
        log_error("opensandbox: %s %s: %s", http_request_method(req), http_request_path(req), err->msg);
    const char *kind = sbx_error_kind(err), *code;
    switch (status) {
    case 400:
        code = plane == OS_LIFECYCLE ? "SANDBOX::INVALID_PARAMETER" : "INVALID_REQUEST_BODY";
        break;
    case 403:
        code = plane == OS_LIFECYCLE ? "SANDBOX::FORBIDDEN" : "FORBIDDEN";
        break;
    case 404:
        code = plane == OS_LIFECYCLE ? "SANDBOX::NOT_FOUND"
               : plane == OS_FILES   ? "FILE_NOT_FOUND"
                                     : "COMMAND_NOT_FOUND";
        if (strcmp(kind, "expired") == 0)
            code = "COMMAND_EXPIRED";
        break;
    case 409:
        code = plane == OS_LIFECYCLE              ? "SANDBOX::CONFLICT"
               : strcmp(kind, "not_running") == 0 ? "SANDBOX_NOT_RUNNING"
                                                  : "CONFLICT";
        break;
    case 413:
        code = plane == OS_LIFECYCLE ? "SANDBOX::INVALID_PARAMETER" : "TOO_LARGE";
        break;
    case 416:
        code = "RANGE_NOT_SATISFIABLE";
        break;
    case 429:
        code = plane == OS_LIFECYCLE ? "SANDBOX::QUOTA_EXCEEDED" : "QUOTA_EXCEEDED";
        break;
    case 507:
        code = plane == OS_LIFECYCLE ? "SANDBOX::INSUFFICIENT_STORAGE" : "NO_SPACE";
        break;
    default:
        code = plane == OS_LIFECYCLE
                   ? (status >= 500 ? "GENERAL::UNKNOWN_ERROR" : "SANDBOX::INVALID_PARAMETER")
                   : (status >= 500 ? "RUNTIME_ERROR" : "INVALID_REQUEST_BODY");
        break;
    }
    os_reply(req, status, code, "%s", err->msg);
}

/* --- UTF-8 ---------------------------------------------------------------------------------------- */

/* Length of the UTF-8 sequence at p as jansson accepts it (1..4), or -1 when it is invalid or cut. */
static int utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    int n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return -1;
    if ((size_t)n > avail)
        return -1;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return -1;
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) || (c == 0xF0 && p[1] < 0x90) ||
        (c == 0xF4 && p[1] > 0x8F))
        return -1;
    return n;
}

void os_utf8_clean(char *s, size_t len)
{
    unsigned char *p = (unsigned char *)s;
    for (size_t i = 0; i < len;) {
        int n = utf8_seq(p + i, len - i);
        if (n < 0 || (n == 1 && p[i] == 0))
            p[i++] = '?';
        else
            i += (size_t)n;
    }
}

/* --- requests --------------------------------------------------------------------------------------- */

static void json_body_done(struct http_request *req, const char *body, size_t len, void *userdata)
{
    struct api_ctx *c = userdata;
    json_error_t jerr;
    json_t *j = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : json_object();
    if (!j)
        return os_reply(req, 400, "INVALID_REQUEST_BODY", "the body is not valid JSON: %s", jerr.text);
    c->json_cb(c, j);
    json_decref(j);
}

void os_read_json(struct api_ctx *c, void (*cb)(struct api_ctx *c, json_t *body))
{
    c->json_cb = cb;
    http_request_read_body(c->req, JSONREQ_BODY_MAX, json_body_done, c);
}

int os_query_all(struct http_request *req, const char *name, const char **ret, size_t max)
{
    const char *q = http_request_query(req);
    size_t nlen = strlen(name);
    int n = 0;
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        if (klen == nlen && memcmp(q, name, nlen) == 0) {
            if ((size_t)n == max)
                return -E2BIG;
            const char *v = eq ? eq + 1 : q + len;
            size_t vlen = (size_t)(q + len - v);
            char *out = http_request_alloc(req, vlen + 1);
            long m = http_percent_decode(v, vlen, out, true);
            if (m >= 0) {
                out[m] = 0;
                ret[n++] = out;
            }
        }
        q += len;
        if (*q == '&')
            q++;
    }
    return n;
}

static void ctx_free(void *p)
{
    struct api_ctx *c = p;
    free((char *)c->sandbox_id);
    free((char *)c->command_id);
    free((char *)c->owner);
    free(c);
}

static struct api_ctx *ctx_new(struct daemon *d, struct http_request *req, const char *route,
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

/* The Host the client used, when it is safe to put into an endpoint; else localhost. */
static const char *request_host(struct http_request *req)
{
    const char *host = http_header_get(req, "Host");
    if (!host || !*host || strlen(host) > 255 || strpbrk(host, " /\\\"<>@?#%"))
        return "localhost";
    return host;
}

static json_t *time_json(int64_t ms)
{
    char buf[40];
    format_time_ms(buf, sizeof(buf), ms);
    return json_string(buf);
}

/* RFC 3339 ("2026-01-02T03:04:05[.fff](Z|±hh:mm)") into Unix ms; -1 when malformed. */
static int64_t parse_rfc3339(const char *s)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n < 19)
        return -1;
    const char *p = s + n;
    int64_t frac_ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; isdigit((unsigned char)*p); p++, digits++)
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    int64_t off_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, m = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m != 5 || oh > 23 || om > 59)
            return -1;
        off_s = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -1;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970 || y > 9999)
        return -1;
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return ((int64_t)t - off_s) * 1000 + frac_ms;
}

/* --- the sandbox object --------------------------------------------------------------------------- */

static const char *state_of(const struct sandbox *sb, const char **ret_reason)
{
    switch (sb->state) {
    case SANDBOX_CREATING:
        *ret_reason = "SANDBOX_CREATING";
        return "Pending";
    case SANDBOX_RUNNING:
        *ret_reason = "SANDBOX_RUNNING";
        return "Running";
    case SANDBOX_PAUSED:
        *ret_reason = "SANDBOX_PAUSED";
        return "Paused";
    case SANDBOX_STOPPED:
        *ret_reason = "SANDBOX_STOPPED";
        return "Stopped";
    case SANDBOX_FAILED:
    case _SANDBOX_STATE_MAX:
    default:
        *ret_reason = "SANDBOX_FAILED";
        return "Failed";
    }
}

static json_t *spec_of(const struct sandbox *sb)
{
    json_t *s = json_object_get(sb->metadata, OS_SPEC_KEY);
    return json_is_object(s) ? s : NULL;
}

/* Sandbox (protocol §2.1); create answers omit image and snapshotId. */
static json_t *sandbox_json(const struct sandbox *sb, bool full)
{
    const char *reason;
    const char *state = state_of(sb, &reason);
    json_t *status = json_pack("{s:s, s:s}", "state", state, "reason", reason);
    if (sb->reason)
        json_object_set_new(status, "message", json_string(sb->reason));
    json_t *md = json_object(), *v;
    const char *k;
    json_object_foreach(sb->metadata, k, v) if (json_is_string(v)) json_object_set(md, k, v);
    json_t *spec = spec_of(sb);
    json_t *ep = json_object_get(spec, "entrypoint");
    json_t *epj = json_is_array(ep) ? json_incref(ep) : json_pack("[s,s,s]", "tail", "-f", "/dev/null");
#if defined(__aarch64__)
    const char *arch = "arm64";
#else
    const char *arch = "amd64";
#endif
    json_t *o = json_pack("{s:s, s:o, s:o, s:o, s:o, s:{s:s, s:s}}", "id", sb->id, "status", status,
                          "metadata", md, "entrypoint", epj, "createdAt", time_json(sb->created_ms),
                          "platform", "os", "linux", "arch", arch);
    if (sb->expires_ms)
        json_object_set_new(o, "expiresAt", time_json(sb->expires_ms));
    if (full) {
        const char *image = json_string_value(json_object_get(spec, "image"));
        const char *snap = json_string_value(json_object_get(spec, "snapshotId"));
        if (snap)
            json_object_set_new(o, "snapshotId", json_string(snap));
        else
            json_object_set_new(o, "image", json_pack("{s:s}", "uri", image ? image : "host"));
    }
    return o;
}

/* --- lookups ---------------------------------------------------------------------------------------- */

static struct sandbox *lookup(struct api_ctx *c)
{
    struct sandbox *sb = sandbox_lookup(c->d, c->sandbox_id, c->owner);
    if (!sb || sb->warm) {
        if (sb)
            sandbox_unref(sb);
        os_reply(c->req, 404, "SANDBOX::NOT_FOUND", "sandbox `%s` not found", c->sandbox_id);
        return NULL;
    }
    return sb;
}

struct sandbox *os_execd_sandbox(struct api_ctx *c)
{
    struct sandbox *sb = sandbox_lookup(c->d, c->sandbox_id, c->owner);
    sbx_error err = {0};
    if (!sb || sb->warm) {
        if (sb)
            sandbox_unref(sb);
        os_reply(c->req, 404, "SANDBOX_NOT_FOUND", "sandbox `%s` not found", c->sandbox_id);
        return NULL;
    }
    sandbox_touch(sb);
    if (sb->state == SANDBOX_PAUSED && sandbox_resume(c->d, sb, &err) < 0) {
        os_reply_sbx(c->req, &err, OS_COMMANDS);
        return sandbox_unref(sb);
    }
    if (sb->state != SANDBOX_RUNNING || api_files_ready(sb, &err) < 0) {
        os_reply(c->req, 409, "SANDBOX_NOT_RUNNING", "sandbox `%s` is %s", sb->id,
                 sandbox_state_to_string(sb->state));
        return sandbox_unref(sb);
    }
    return sb;
}

/* An image URI or snapshot id: an sbx snapshot by id or name (`name:tag` when the snapshot is called
 * `name`); `host` (and `host:latest`) is the built-in one (*ret_ref NULL). */
static int resolve_snapshot(struct api_ctx *c, const char *ref, const char **ret_ref, sbx_error *err)
{
    if (!ref || strcmp(ref, "host") == 0 || strcmp(ref, "host:latest") == 0) {
        *ret_ref = NULL;
        return 0;
    }
    struct snapshot *sn = snapshot_find_visible(c->d, ref, c->owner);
    const char *colon = strrchr(ref, ':');
    if (!sn && colon && !strchr(colon, '/')) {
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
        return sbx_error_set(
            err, -EINVAL,
            "image `%s` is not an sbx snapshot: import or pull it first (sbx snapshot import|pull "
            "--name NAME), or use `host`",
            ref);
    *ret_ref = sn->id;
    return 0;
}

/* --- resource strings ------------------------------------------------------------------------------- */

/* Kubernetes CPU quantity: "500m", "1", "1.5". */
static int parse_cpu(const char *s, double *ret, sbx_error *err)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v))
        return sbx_error_set(err, -EINVAL,
                             "`resourceLimits.cpu` `%s` is not a CPU quantity (\"500m\", \"2\")", s);
    if (strcmp(end, "m") == 0)
        v /= 1000.0;
    else if (*end)
        return sbx_error_set(err, -EINVAL,
                             "`resourceLimits.cpu` `%s` is not a CPU quantity (\"500m\", \"2\")", s);
    if (v < 0.01 || v > OS_CPUS_MAX)
        return sbx_error_set(err, -EINVAL, "`resourceLimits.cpu` must be 10m to %g", OS_CPUS_MAX);
    *ret = v;
    return 0;
}

/* Kubernetes memory quantity ("512Mi", "2Gi", "1G", "1048576", also "512mb") in MiB, rounded up. */
static int parse_bytes_mb(const char *key, const char *s, uint64_t min_mb, uint64_t max_mb, uint64_t *ret,
                          sbx_error *err)
{
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1e3},
        {"kb", 1e3},
        {"ki", 1024.0},
        {"kib", 1024.0},
        {"m", 1e6},
        {"mb", 1e6},
        {"mi", 1048576.0},
        {"mib", 1048576.0},
        {"g", 1e9},
        {"gb", 1e9},
        {"gi", 1073741824.0},
        {"gib", 1073741824.0},
        {"t", 1e12},
        {"tb", 1e12},
        {"ti", 1099511627776.0},
        {"tib", 1099511627776.0},
    };
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0)
        goto bad;
    for (size_t i = 0; i < ELEMENTSOF(units); i++) {
        if (strcasecmp(end, units[i].suffix) != 0)
            continue;
        double exact = v * units[i].mult / 1048576.0;
        if (exact > (double)max_mb)
            exact = (double)max_mb + 1;
        double mb = (double)(uint64_t)exact;
        if (mb < exact)
            mb += 1; /* rounded up, without libm */
        if (mb < (double)min_mb || mb > (double)max_mb)
            return sbx_error_set(err, -EINVAL, "`%s` must be %llu MiB to %llu MiB", key,
                                 (unsigned long long)min_mb, (unsigned long long)max_mb);
        *ret = (uint64_t)mb;
        return 0;
    }
bad:
    return sbx_error_set(err, -EINVAL, "`%s` `%s` is not a quantity (\"512Mi\", \"2Gi\")", key, s);
}

static int parse_resources(json_t *limits, struct sandbox_resources *res, sbx_error *err)
{
    const char *k;
    json_t *v;
    if (!limits)
        return 0;
    if (json_object_size(limits) > 32)
        return sbx_error_set(err, -EINVAL, "`resourceLimits` has too many entries");
    json_object_foreach(limits, k, v)
    {
        const char *s = json_string_value(v);
        if (!s || strlen(s) > 64)
            return sbx_error_set(err, -EINVAL, "`resourceLimits.%s` must be a string", k);
        int r = 0;
        if (strcmp(k, "cpu") == 0)
            r = parse_cpu(s, &res->cpus, err);
        else if (strcmp(k, "memory") == 0)
            r = parse_bytes_mb("resourceLimits.memory", s, OS_MEM_MIN_MB, OS_MEM_MAX_MB, &res->memory_mb,
                               err);
        else if (strcmp(k, "ephemeral-storage") == 0)
            r = parse_bytes_mb("resourceLimits.ephemeral-storage", s, OS_DISK_MIN_MB, OS_DISK_MAX_MB,
                               &res->disk_mb, err);
        else if (strcmp(k, "gpu") == 0 || strcmp(k, "nvidia.com/gpu") == 0) {
            if (strcmp(s, "0") != 0)
                return sbx_error_setk(err, -EOPNOTSUPP, "not_supported", 400,
                                      "`resourceLimits.%s`: sbx sandboxes have no GPUs", k);
        }
        /* Other keys are accepted and ignored, as their Docker runtime does. */
        if (r < 0)
            return r;
    }
    return 0;
}

/* networkPolicy {defaultAction, egress: [{action, target}]} as sbx's network {mode: egress, egress:
 * {default, allow, deny}}; NULL (a new reference otherwise) when absent or null (loopback only). */
static int parse_network_policy(json_t *np, json_t **ret, sbx_error *err)
{
    *ret = NULL;
    if (!np || json_is_null(np))
        return 0;
    if (!json_is_object(np))
        return sbx_error_set(err, -EINVAL, "`networkPolicy` must be an object");
    const char *def = json_string_value(json_object_get(np, "defaultAction"));
    if (json_object_get(np, "defaultAction") &&
        (!def || (strcmp(def, "allow") != 0 && strcmp(def, "deny") != 0)))
        return sbx_error_set(err, -EINVAL, "`networkPolicy.defaultAction` must be allow or deny");
    json_t *rules = json_object_get(np, "egress");
    if (rules && !json_is_array(rules) && !json_is_null(rules))
        return sbx_error_set(err, -EINVAL, "`networkPolicy.egress` must be an array");
    json_t *allow = json_array(), *deny = json_array(), *r;
    size_t i;
    json_array_foreach(rules, i, r)
    {
        const char *action = json_string_value(json_object_get(r, "action"));
        const char *target = json_string_value(json_object_get(r, "target"));
        if (!action || !target || (strcmp(action, "allow") != 0 && strcmp(action, "deny") != 0)) {
            json_decref(allow);
            json_decref(deny);
            return sbx_error_set(err, -EINVAL,
                                 "`networkPolicy.egress[%zu]` needs action (allow|deny) and target", i);
        }
        json_array_append_new(strcmp(action, "allow") == 0 ? allow : deny, json_string(target));
    }
    *ret = json_pack("{s:s, s:{s:s, s:o, s:o}}", "mode", "egress", "egress", "default", def ? def : "deny",
                     "allow", allow, "deny", deny);
    return 0;
}

/* --- create ----------------------------------------------------------------------------------------- */

/* A create being built while the client waits (theirs answers once the sandbox runs). In the request. */
struct create_wait {
    struct api_ctx *c;
    struct create_op *op;
};

static bool entrypoint_is_idle(json_t *ep)
{
    static const char *const idle[] = {"tail", "-f", "/dev/null"};
    if (json_array_size(ep) == 0)
        return true;
    if (json_array_size(ep) != 3)
        return false;
    for (size_t i = 0; i < 3; i++)
        if (strcmp(json_string_value(json_array_get(ep, i)) ?: "", idle[i]) != 0)
            return false;
    return true;
}

/* The entrypoint runs as the sbx command `entrypoint` (kept until the sandbox goes); the default
 * `tail -f /dev/null` only keeps their container alive and is not run. */
static int start_entrypoint(struct sandbox *sb, sbx_error *err)
{
    json_t *ep = json_object_get(spec_of(sb), "entrypoint");
    if (entrypoint_is_idle(ep))
        return 0;
    json_auto_t *body = json_pack("{s:s, s:O, s:b, s:i, s:i}", "id", "entrypoint", "command", ep, "wait",
                                  false, "idle_timeout", -1, "ttl_seconds", -1);
    json_t *req = NULL, *resp = NULL;
    bool wait;
    int r = api_command_exec_request(sb, body, &req, &wait, err);
    if (r >= 0)
        r = sandbox_shim_call(sb, req, &resp, err);
    json_decref(req);
    json_decref(resp);
    return r;
}

static void create_answer(struct api_ctx *c, struct sandbox *sb)
{
    sbx_error err = {0};
    if (start_entrypoint(sb, &err) < 0) {
        sbx_error e2 = {0};
        sandbox_delete(c->d, sb, "its entrypoint could not start", &e2);
        sbx_error_wrap(&err, "entrypoint");
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    }
    http_respond_json(c->req, 202, sandbox_json(sb, false));
}

static void created(struct sandbox *sb, const sbx_error *err, void *userdata)
{
    struct create_wait *w = userdata;
    if (sb)
        create_answer(w->c, sb);
    else
        os_reply_sbx(w->c->req, err, OS_LIFECYCLE);
}

static void create_aborted(struct http_request *req, void *userdata)
{
    struct create_wait *w = userdata;
    sandbox_create_cancel(w->op);
}

/* A field sbx cannot honour when it is present and not null / false. */
static int refuse(json_t *body, const char *key, const char *why, sbx_error *err)
{
    json_t *v = json_object_get(body, key);
    if (v && !json_is_null(v) && !json_is_false(v) && !(json_is_array(v) && json_array_size(v) == 0))
        return sbx_error_setk(err, -EOPNOTSUPP, "not_supported", 400, "`%s` is not supported by sbx: %s", key,
                              why);
    return 0;
}

/* A volume's `name`: a DNS label (their rule), at most 63 characters. */
static bool dns_label_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
            return false;
    return true;
}

/* One entry of `volumes` checked, with no side effect: *claim and *size_mb for its pvc. *os_code: their
 * error code where it is not the generic one. */
static int check_volume(json_t *v, size_t i, const char **claim, uint64_t *size_mb, const char **os_code,
                        sbx_error *err)
{
    const char *name = json_string_value(json_object_get(v, "name"));
    const char *path = json_string_value(json_object_get(v, "mountPath"));
    json_t *ro = json_object_get(v, "readOnly"), *pvc = json_object_get(v, "pvc");
    json_t *sub = json_object_get(v, "subPath");
    if (!json_is_object(v) || !name || !dns_label_is_valid(name))
        return sbx_error_set(err, -EINVAL, "`volumes[%zu].name` must be a DNS label of at most 63 characters",
                             i);
    if (!path)
        return sbx_error_set(err, -EINVAL, "`volumes[%zu].mountPath` must be an absolute path", i);
    int r = volume_check_mount_path(path, err);
    if (r < 0)
        return r;
    if (ro && !json_is_null(ro) && !json_is_boolean(ro))
        return sbx_error_set(err, -EINVAL, "`volumes[%zu].readOnly` must be a boolean", i);
    int backends = 0;
    for (const char *const *b = (const char *const[]){"host", "pvc", "ossfs", NULL}; *b; b++)
        backends += json_object_get(v, *b) && !json_is_null(json_object_get(v, *b));
    if (backends != 1)
        return sbx_error_set(err, -EINVAL,
                             "`volumes[%zu]` must have exactly one of `host`, `pvc` and `ossfs`", i);
    /* A host path is never bound into a sandbox: that is how their empty allowlist became an escape. */
    if (json_object_get(v, "host") && !json_is_null(json_object_get(v, "host"))) {
        *os_code = "VOLUME::HOST_PATH_NOT_ALLOWED";
        return sbx_error_setk(err, -EPERM, "not_supported", 400,
                              "`volumes[%zu].host`: sbx never mounts host paths into sandboxes (use a `pvc`: "
                              "an sbx named volume)",
                              i);
    }
    if (!pvc || !json_is_object(pvc)) {
        *os_code = "SANDBOX::API_NOT_SUPPORTED";
        return sbx_error_setk(err, -EOPNOTSUPP, "not_supported", 400,
                              "`volumes[%zu]`: only `pvc` volumes (sbx named volumes) are supported", i);
    }
    /* Within a volume the sandbox owns every path: a subPath could be its symlink to anywhere on the host
     * by the time it is bound, so it is refused rather than resolved. */
    if (sub && !json_is_null(sub) && !(json_is_string(sub) && json_string_length(sub) == 0)) {
        *os_code = "SANDBOX::API_NOT_SUPPORTED";
        return sbx_error_setk(err, -EOPNOTSUPP, "not_supported", 400,
                              "`volumes[%zu].subPath` is not supported: mount the whole volume", i);
    }
    json_t *del = json_object_get(pvc, "deleteOnSandboxTermination");
    if (json_is_true(del)) {
        *os_code = "SANDBOX::API_NOT_SUPPORTED";
        return sbx_error_setk(err, -EOPNOTSUPP, "not_supported", 400,
                              "`volumes[%zu].pvc.deleteOnSandboxTermination`: sbx volumes outlive sandboxes "
                              "(delete them with DELETE /v1/volumes/{name})",
                              i);
    }
    *claim = json_string_value(json_object_get(pvc, "claimName"));
    if (!*claim || !id_is_valid(*claim))
        return sbx_error_set(err, -EINVAL, "`volumes[%zu].pvc.claimName` must match [A-Za-z0-9_.-]{1,64}", i);
    json_t *create = json_object_get(pvc, "createIfNotExists");
    if (create && !json_is_null(create) && !json_is_boolean(create))
        return sbx_error_set(err, -EINVAL, "`volumes[%zu].pvc.createIfNotExists` must be a boolean", i);
    *size_mb = VOLUME_DEFAULT_MB;
    const char *storage = json_string_value(json_object_get(pvc, "storage"));
    if (json_object_get(pvc, "storage") && !json_is_null(json_object_get(pvc, "storage"))) {
        if (!storage || strlen(storage) > 64)
            return sbx_error_set(err, -EINVAL, "`volumes[%zu].pvc.storage` must be a quantity string", i);
        r = parse_bytes_mb("volumes[].pvc.storage", storage, VOLUME_MIN_MB, VOLUME_MAX_MB, size_mb, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* `volumes` [{name, pvc: {claimName, createIfNotExists, storage, ...}, mountPath, readOnly}] as sbx volume
 * mounts (*ret, volume_parse_mounts's form; NULL when absent). A pvc is the caller's sbx named volume
 * called claimName, made (storage big, 1 GiB without it) when missing and createIfNotExists is not false,
 * as Docker makes a named volume; it stays when the sandbox goes. Everything is checked before anything
 * is made. */
static int parse_volumes(struct api_ctx *c, json_t *list, json_t **ret, const char **os_code, sbx_error *err)
{
    *ret = NULL;
    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list) || json_array_size(list) > RUNTIME_VOLUMES_MAX)
        return sbx_error_set(err, -EINVAL, "`volumes` must be an array of at most %d volumes",
                             RUNTIME_VOLUMES_MAX);
    const char *claims[RUNTIME_VOLUMES_MAX];
    uint64_t sizes_mb[RUNTIME_VOLUMES_MAX];
    size_t i, j;
    json_t *v, *w;
    json_array_foreach(list, i, v)
    {
        int r = check_volume(v, i, &claims[i], &sizes_mb[i], os_code, err);
        if (r < 0)
            return r;
        json_array_foreach(list, j, w)
        {
            if (j < i && strcmp(json_string_value(json_object_get(w, "name")),
                                json_string_value(json_object_get(v, "name"))) == 0)
                return sbx_error_set(err, -EINVAL, "two volumes are named `%s`",
                                     json_string_value(json_object_get(v, "name")));
        }
    }
    /* Everything is checked: now make the missing volumes. */
    json_auto_t *mounts = json_array();
    json_array_foreach(list, i, v)
    {
        sbx_error lookup = {0};
        if (!volume_resolve(c->d, claims[i], c->owner, &lookup)) {
            struct volume *made;
            if (json_is_false(json_object_get(json_object_get(v, "pvc"), "createIfNotExists")))
                return sbx_error_setk(err, -ENOENT, "not_found", 404,
                                      "volume `%s` does not exist (createIfNotExists is false)", claims[i]);
            int r = volume_create(c->d, claims[i], (int64_t)sizes_mb[i], c->owner, &made, err);
            if (r < 0)
                return r;
        }
        json_array_append_new(mounts, json_pack("{s:s, s:O, s:b}", "volume", claims[i], "path",
                                                json_object_get(v, "mountPath"), "read_only",
                                                json_is_true(json_object_get(v, "readOnly"))));
    }
    return volume_parse_mounts(c->d, mounts, c->owner, ret, err);
}

static int check_entrypoint(json_t *ep, sbx_error *err)
{
    if (!ep || json_is_null(ep))
        return 0;
    size_t n = json_array_size(ep), total = 0, i;
    json_t *v;
    if (!json_is_array(ep) || n == 0 || n > OS_ENTRYPOINT_MAX)
        return sbx_error_set(err, -EINVAL, "`entrypoint` must be an array of 1 to %d strings",
                             OS_ENTRYPOINT_MAX);
    json_array_foreach(ep, i, v)
    {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
            return sbx_error_set(err, -EINVAL, "`entrypoint[%zu]` must be a string without NUL", i);
        total += json_string_length(v) + 1;
    }
    if (total > OS_ENTRYPOINT_BYTES || json_string_length(json_array_get(ep, 0)) == 0)
        return sbx_error_set(err, -EINVAL, "`entrypoint` is empty or longer than %d bytes",
                             OS_ENTRYPOINT_BYTES);
    return 0;
}

static void create_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    struct sandbox_create_opts opts = {.res = SANDBOX_DEFAULT_RESOURCES, .life = {.idle_ttl_s = 0}};
    const char *snapshot_id = NULL, *image = NULL;
    json_t *img = json_object_get(body, "image"), *env = NULL, *metadata = NULL, *limits = NULL, *ext = NULL;
    json_t *timeout = json_object_get(body, "timeout"), *ep = json_object_get(body, "entrypoint");
    json_t *platform = json_object_get(body, "platform");
    if (!json_is_object(body))
        return os_reply(c->req, 400, "SANDBOX::INVALID_PARAMETER", "the body must be a JSON object");
    if (img && !json_is_null(img)) {
        if (!json_is_object(img))
            return os_reply(c->req, 400, "SANDBOX::INVALID_PARAMETER", "`image` must be {\"uri\": ...}");
        if (jsonreq_string(img, "uri", OS_REF_MAX, &image, &err) < 0)
            return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
        if (!image || !*image)
            return os_reply(c->req, 400, "SANDBOX::INVALID_PARAMETER", "`image.uri` is required");
        if (json_object_get(img, "auth") && !json_is_null(json_object_get(img, "auth")))
            return os_reply(c->req, 400, "SANDBOX::API_NOT_SUPPORTED",
                            "`image.auth` is not supported: pull the image into an sbx snapshot first");
    }
    if (jsonreq_string(body, "snapshotId", OS_REF_MAX, &snapshot_id, &err) < 0 ||
        jsonreq_string_map(body, "env", OS_ENV_MAX, OS_ENV_ENTRY, &env, &err) < 0 ||
        jsonreq_string_map(body, "metadata", OS_METADATA_MAX, OS_METADATA_ENTRY, &metadata, &err) < 0 ||
        jsonreq_object(body, "resourceLimits", &limits, &err) < 0 ||
        jsonreq_string_map(body, "extensions", OS_METADATA_MAX, OS_METADATA_ENTRY, &ext, &err) < 0 ||
        check_entrypoint(ep, &err) < 0 || parse_resources(limits, &opts.res, &err) < 0 ||
        refuse(body, "secureAccess", "endpoints are authenticated with the API key or a service token",
               &err) < 0 ||
        refuse(json_object_get(body, "credentialProxy"), "enabled", "there is no credential vault", &err) < 0)
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    if (!!image == !!snapshot_id)
        return os_reply(c->req, 400, "SANDBOX::INVALID_PARAMETER",
                        "give exactly one of `image` and `snapshotId`");
    if (platform && !json_is_null(platform)) {
        const char *os = json_string_value(json_object_get(platform, "os"));
        const char *arch = json_string_value(json_object_get(platform, "arch"));
        struct utsname u;
        uname(&u);
        bool arm = strcmp(u.machine, "aarch64") == 0;
        if ((os && strcmp(os, "linux") != 0) || (arch && strcmp(arch, arm ? "arm64" : "amd64") != 0))
            return os_reply(c->req, 400, "SANDBOX::API_NOT_SUPPORTED",
                            "this sbxd runs linux/%s sandboxes only", arm ? "arm64" : "amd64");
    }
    if (timeout && !json_is_null(timeout)) {
        if (!json_is_integer(timeout) || json_integer_value(timeout) < OS_TIMEOUT_MIN_S ||
            json_integer_value(timeout) > SANDBOX_LIFECYCLE_MAX_S)
            return os_reply(c->req, 400, "SANDBOX::INVALID_PARAMETER",
                            "`timeout` must be an integer of %d to %lld seconds", OS_TIMEOUT_MIN_S,
                            (long long)SANDBOX_LIFECYCLE_MAX_S);
        opts.life.timeout_s = json_integer_value(timeout);
    }
    const char *k;
    json_t *v;
    json_object_foreach(metadata, k, v)
    {
        if (strncmp(k, OS_RESERVED_PREFIX, strlen(OS_RESERVED_PREFIX)) == 0)
            return os_reply(c->req, 400, "SANDBOX::INVALID_METADATA_LABEL",
                            "metadata key `%s`: the prefix `%s` is reserved", k, OS_RESERVED_PREFIX);
    }
    json_auto_t *network = NULL;
    if (parse_network_policy(json_object_get(body, "networkPolicy"), &network, &err) < 0 ||
        resolve_snapshot(c, image ? image : snapshot_id, &opts.snapshot, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    json_auto_t *md = metadata ? json_deep_copy(metadata) : json_object();
    json_t *spec = json_object();
    json_object_set_new(spec, image ? "image" : "snapshotId", json_string(image ? image : snapshot_id));
    if (ep && !json_is_null(ep))
        json_object_set(spec, "entrypoint", ep);
    json_object_set_new(md, OS_SPEC_KEY, spec);
    opts.metadata = md;
    opts.env = env;
    opts.network = network;
    opts.owner = c->owner;
    if (keys_check_quota(c->d, c->owner, 1, opts.res.memory_mb, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    json_auto_t *volumes = NULL;
    const char *os_code = NULL;
    if (parse_volumes(c, json_object_get(body, "volumes"), &volumes, &os_code, &err) < 0)
        return os_code ? os_reply(c->req, sbx_error_http_status(&err), os_code, "%s", err.msg)
                       : os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    opts.volumes = volumes;
    struct create_wait *w = http_request_alloc(c->req, sizeof(*w));
    memset(w, 0, sizeof(*w));
    w->c = c;
    struct sandbox *sb = NULL;
    int r = sandbox_create(c->d, &opts, created, w, &sb, &w->op, &err);
    if (r < 0)
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    if (r > 0) {
        create_answer(c, sb);
        sandbox_unref(sb);
        return;
    }
    http_request_on_abort(c->req, create_aborted, w);
}

static void sandboxes_create(struct api_ctx *c)
{
    os_read_json(c, create_with_body);
}

/* --- get, list, delete, pause, resume, renew, metadata ---------------------------------------------- */

static void sandboxes_get(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (sb)
        http_respond_json(c->req, 200, sandbox_json(sb, true));
}

/* Whether sb's metadata has every k=v of filter ("k=v&k2=v2"). */
static bool metadata_matches(const struct sandbox *sb, const char *filter)
{
    _cleanup_free_ char *copy = xstrdup(filter);
    char *save = NULL;
    for (char *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq = 0;
        const char *have = json_string_value(json_object_get(sb->metadata, kv));
        if (!have || (eq && strcmp(have, eq + 1) != 0))
            return false;
    }
    return true;
}

static int query_int(struct http_request *req, const char *name, long min, long max, long def, long *ret)
{
    const char *s = http_query_get(req, name);
    *ret = def;
    if (!s)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}

/* GET /sandboxes?state=&state=&metadata=k%3Dv%26k2%3Dv2&page=&pageSize= */
static void sandboxes_list(struct api_ctx *c)
{
    const char *states[OS_QUERY_VALUES_MAX];
    int nstates = os_query_all(c->req, "state", states, OS_QUERY_VALUES_MAX);
    if (nstates < 0)
        return os_reply(c->req, 400, "SANDBOX::INVALID_PARAMETER", "too many `state` parameters (at most %d)",
                        OS_QUERY_VALUES_MAX);
    const char *filter = http_query_get(c->req, "metadata");
    if (filter && strlen(filter) > 4096)
        return os_reply(c->req, 400, "INVALID_METADATA_FORMAT", "`metadata` is longer than 4096 bytes");
    if (filter && *filter && strchr(filter, '=') == NULL)
        return os_reply(c->req, 400, "INVALID_METADATA_FORMAT", "`metadata` must be k=v pairs joined by &");
    long page, size;
    if (query_int(c->req, "page", 1, 1000000, 1, &page) < 0)
        return os_reply(c->req, 400, "SANDBOX::INVALID_PARAMETER", "`page` must be an integer of at least 1");
    if (query_int(c->req, "pageSize", 1, OS_PAGE_SIZE_MAX, 20, &size) < 0)
        return os_reply(c->req, 400, "SANDBOX::INVALID_PARAMETER", "`pageSize` must be an integer of 1 to %d",
                        OS_PAGE_SIZE_MAX);
    json_t *items = json_array();
    long total = 0, first = (page - 1) * size;
    struct sandbox *last = c->d->sandboxes;
    while (last && last->next)
        last = last->next;
    for (struct sandbox *sb = last; sb; sb = sb->prev) {
        if (sb->warm || !sandbox_visible_to(sb, c->owner) || !spec_of(sb))
            continue;
        const char *reason, *state = state_of(sb, &reason);
        bool ok = nstates == 0;
        for (int i = 0; i < nstates && !ok; i++)
            ok = strcasecmp(states[i], state) == 0;
        if (!ok || (filter && *filter && !metadata_matches(sb, filter)))
            continue;
        if (total >= first && total < first + size)
            json_array_append_new(items, sandbox_json(sb, true));
        total++;
    }
    long pages = (total + size - 1) / size;
    http_respond_json(c->req, 200,
                      json_pack("{s:o, s:{s:I, s:I, s:I, s:I, s:b}}", "items", items, "pagination", "page",
                                (json_int_t)page, "pageSize", (json_int_t)size, "totalItems",
                                (json_int_t)total, "totalPages", (json_int_t)pages, "hasNextPage",
                                page < pages));
}

static void sandboxes_delete(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (sandbox_delete(c->d, sb, "deleted through the OpenSandbox API", &err) < 0)
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    os_reply_empty(c->req, 204);
}

static void sandboxes_pause(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (sb->state != SANDBOX_RUNNING)
        return os_reply(c->req, 409, "SANDBOX::SANDBOX_NOT_RUNNING", "sandbox `%s` is %s, not running",
                        sb->id, sandbox_state_to_string(sb->state));
    if (sandbox_pause(c->d, sb, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    os_reply_empty(c->req, 202);
}

static void sandboxes_resume(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (sb->state != SANDBOX_PAUSED)
        return os_reply(c->req, 409, "SANDBOX::SANDBOX_NOT_PAUSED", "sandbox `%s` is %s, not paused", sb->id,
                        sandbox_state_to_string(sb->state));
    if (sandbox_resume(c->d, sb, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    os_reply_empty(c->req, 202);
}

/* POST /sandboxes/{id}/renew-expiration {"expiresAt": RFC 3339}: sbx's renew with the lifetime that ends
 * then. */
static void renew_with_body(struct api_ctx *c, json_t *body)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    const char *at = json_string_value(json_object_get(body, "expiresAt"));
    int64_t ms = parse_rfc3339(at);
    if (ms < 0)
        return os_reply(c->req, 400, "SANDBOX::INVALID_EXPIRATION",
                        "`expiresAt` must be an RFC 3339 date-time");
    int64_t now = now_ms();
    if (ms <= now)
        return os_reply(c->req, 400, "SANDBOX::INVALID_EXPIRATION", "`expiresAt` must be in the future");
    if (!sb->expires_ms)
        return os_reply(c->req, 409, "SANDBOX::MANUAL_CLEANUP",
                        "sandbox `%s` was created without a timeout: it has no expiration to renew", sb->id);
    int64_t secs = (ms - now + 999) / 1000;
    if (secs > SANDBOX_LIFECYCLE_MAX_S)
        return os_reply(c->req, 400, "SANDBOX::INVALID_EXPIRATION",
                        "`expiresAt` is more than %lld seconds away", (long long)SANDBOX_LIFECYCLE_MAX_S);
    sbx_error err = {0};
    if (sandbox_renew(c->d, sb, secs, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    http_respond_json(c->req, 200, json_pack("{s:o}", "expiresAt", time_json(sb->expires_ms)));
}

static void sandboxes_renew(struct api_ctx *c)
{
    os_read_json(c, renew_with_body);
}

/* PATCH /sandboxes/{id}/metadata: a JSON merge patch of the string metadata. */
static void metadata_with_body(struct api_ctx *c, json_t *body)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    if (!json_is_object(body) || json_object_size(body) > OS_METADATA_MAX)
        return os_reply(c->req, 400, "SANDBOX::INVALID_PARAMETER",
                        "the body must be an object of at most %d entries", OS_METADATA_MAX);
    json_auto_t *md = json_deep_copy(sb->metadata ? sb->metadata : json_object());
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (strncmp(k, OS_RESERVED_PREFIX, strlen(OS_RESERVED_PREFIX)) == 0 || !*k ||
            strlen(k) + json_string_length(v) > OS_METADATA_ENTRY)
            return os_reply(c->req, 400, "SANDBOX::INVALID_METADATA_LABEL",
                            "metadata key `%s` is not allowed", k);
        if (json_is_null(v))
            json_object_del(md, k);
        else if (json_is_string(v))
            json_object_set(md, k, v);
        else
            return os_reply(c->req, 400, "SANDBOX::INVALID_METADATA_LABEL",
                            "metadata `%s` must be a string or null", k);
    }
    size_t strings = 0;
    json_object_foreach(md, k, v) strings += json_is_string(v);
    if (strings > OS_METADATA_MAX)
        return os_reply(c->req, 400, "SANDBOX::INVALID_METADATA_LABEL", "more than %d metadata entries",
                        OS_METADATA_MAX);
    sbx_error err = {0};
    if (sandbox_set_metadata(c->d, sb, md, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    http_respond_json(c->req, 200, sandbox_json(sb, true));
}

static void sandboxes_metadata(struct api_ctx *c)
{
    os_read_json(c, metadata_with_body);
}

/* GET /sandboxes/{id}/endpoints/{port} (the port is c->command_id): execd (44772) and egress (18080) are
 * served by sbxd itself under this sandbox's proxy path; any other port is an sbx service URL (path form)
 * with its token as an endpoint header. Scheme-less, ending in /{port}, as their SDKs check. */
static void sandboxes_endpoint(struct api_ctx *c)
{
    char *end;
    errno = 0;
    long port = strtol(c->command_id, &end, 10);
    if (errno || *end || port < 1 || port > 65535)
        return os_reply(c->req, 400, "SANDBOX::INVALID_PORT", "the port must be an integer of 1 to 65535");
    const char *expires = http_query_get(c->req, "expires");
    int64_t ttl = OS_SERVICE_TTL_S;
    if (expires) {
        long long e = strtoll(expires, &end, 10);
        int64_t now = now_ms() / 1000;
        if (!*expires || *end || e <= now || e - now > SANDBOX_LIFECYCLE_MAX_S)
            return os_reply(c->req, 400, "SANDBOX::INVALID_PARAMETER",
                            "`expires` must be epoch seconds in the future (at most a year away)");
        ttl = e - now;
    }
    _cleanup_(sandbox_unrefp) struct sandbox *sb = lookup(c);
    if (!sb)
        return;
    const char *host = request_host(c->req);
    if (port == OS_EXECD_PORT || port == OS_EGRESS_PORT) {
        _cleanup_free_ char *ep = xasprintf("%s" OS_PREFIX "/sandboxes/%s/proxy/%ld", host, sb->id, port);
        return http_respond_json(c->req, 200, json_pack("{s:s, s:{}}", "endpoint", ep, "headers"));
    }
    sbx_error err = {0};
    json_auto_t *link = api_service_link(c->d, sb, (int)port, ttl, host, &err);
    if (!link)
        return os_reply_sbx(c->req, &err, OS_LIFECYCLE);
    _cleanup_free_ char *ep = xasprintf("%s/s/%s/%ld", host, sb->id, port);
    http_respond_json(c->req, 200,
                      json_pack("{s:s, s:{s:O}}", "endpoint", ep, "headers", "X-Sbx-Service-Token",
                                json_object_get(link, "token")));
}

static void metrics_event(struct api_ctx *c)
{
    os_reply_empty(c->req, 204);
}

static void not_supported(struct api_ctx *c)
{
    os_reply(c->req, 501, "SANDBOX::API_NOT_SUPPORTED",
             "%s %s is not supported by sbx's OpenSandbox API (docs/compat/opensandbox.md)",
             http_request_method(c->req), http_request_path(c->req));
}

/* --- routing ---------------------------------------------------------------------------------------- */

struct os_route {
    const char *method;
    const char *pattern; /* after /opensandbox[/v1]; "*" is a path parameter ({id}, then {port}) */
    void (*handler)(struct api_ctx *c);
};

static const struct os_route routes[] = {
    {"POST", "/sandboxes", sandboxes_create},
    {"GET", "/sandboxes", sandboxes_list},
    {"GET", "/sandboxes/*", sandboxes_get},
    {"DELETE", "/sandboxes/*", sandboxes_delete},
    {"POST", "/sandboxes/*/pause", sandboxes_pause},
    {"POST", "/sandboxes/*/resume", sandboxes_resume},
    {"POST", "/sandboxes/*/renew-expiration", sandboxes_renew},
    {"PATCH", "/sandboxes/*/metadata", sandboxes_metadata},
    {"GET", "/sandboxes/*/endpoints/*", sandboxes_endpoint},
    {"POST", "/metrics/events", metrics_event},
    {"POST", "/sandboxes/*/snapshots", not_supported},
    {"GET", "/snapshots", not_supported},
    {"GET", "/snapshots/*", not_supported},
    {"DELETE", "/snapshots/*", not_supported},
    {"GET", "/sandboxes/*/diagnostics/*", not_supported},
};

static bool present(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

/* Who is asking (OPEN-SANDBOX-API-KEY: an sbx key), or a 401 answered (then returns -1). */
static int authenticate(struct daemon *d, struct http_request *req, const char **ret_owner)
{
    const char *presented = http_header_get(req, "OPEN-SANDBOX-API-KEY");
    *ret_owner = NULL;
    if (presented && *presented) {
        const struct api_key *key = keys_find(d, presented);
        if (key) {
            *ret_owner = key->id;
            return 0;
        }
        if (!d->api_key || present(presented, d->api_key))
            return 0;
        os_reply(req, 401, "INVALID_API_KEY", "the OPEN-SANDBOX-API-KEY is not an sbx API key");
        return -1;
    }
    if (!d->api_key)
        return 0;
    os_reply(req, 401, "MISSING_API_KEY", "missing OPEN-SANDBOX-API-KEY: set it to an sbx API key");
    return -1;
}

/* X-Request-ID: the client's (when it is a sane token) or a new one, on every answer. */
static void request_id(struct http_request *req)
{
    const char *id = http_header_get(req, "X-Request-ID");
    bool ok = id && *id && strlen(id) <= OS_REQUEST_ID_MAX;
    for (const char *p = id; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || strchr("-_.:/+=", *p);
    char gen[SBX_ID_MAX + 1];
    if (!ok) {
        id_generate(gen, sizeof(gen), "");
        id = gen;
    }
    http_response_header(req, "X-Request-ID", id);
}

/* rest after base when path is base or under it ("" or "/..."), else NULL. */
static const char *under(const char *path, const char *base)
{
    size_t n = strlen(base);
    if (strncmp(path, base, n) != 0 || (path[n] && path[n] != '/'))
        return NULL;
    return path + n;
}

/* /sandboxes/{id}/proxy/{port}[/rest]: execd or egress of sandbox id, served here. */
static bool proxy_route(struct daemon *d, struct http_request *req, const char *rest, const char *owner)
{
    if (strncmp(rest, "/sandboxes/", 11) != 0)
        return false;
    const char *p = rest + 11;
    size_t n = strcspn(p, "/");
    if (strncmp(p + n, "/proxy/", 7) != 0)
        return false;
    char id[SBX_ID_MAX + 1];
    if (n == 0 || n > SBX_ID_MAX) {
        os_reply(req, 404, "SANDBOX_NOT_FOUND", "sandbox not found");
        return true;
    }
    memcpy(id, p, n);
    id[n] = 0;
    const char *ps = p + n + 7;
    char *end;
    long port = strtol(ps, &end, 10);
    if (end == ps || (*end && *end != '/')) {
        os_reply(req, 404, "NOT_FOUND", "no route for %s", http_request_path(req));
        return true;
    }
    struct api_ctx *c = ctx_new(d, req, "opensandbox:execd", id, owner);
    if (port == OS_EXECD_PORT)
        os_execd_handle(c, *end ? end : "/");
    else if (port == OS_EGRESS_PORT)
        os_execd_handle(c, strcmp(end, "/policy") == 0 ? "/egress/policy" : *end ? end : "/");
    else
        os_reply(req, 404, "NOT_SUPPORTED",
                 "port %ld is reached through its endpoint (GET .../endpoints/%ld): an sbx service URL", port,
                 port);
    return true;
}

bool opensandbox_dispatch(struct daemon *d, struct http_request *req)
{
    const char *path = http_request_path(req), *rest;
    if (!(rest = under(path, OS_PREFIX)))
        return false;
    request_id(req);
    if (strlen(path) > OS_PATH_MAX) {
        os_reply(req, 414, "INVALID_REQUEST", "path too long");
        return true;
    }
    const char *method = http_request_method(req);
    if (strcmp(rest, "/health") == 0 || strcmp(rest, "/v1/health") == 0) {
        http_respond_json(req, 200, json_pack("{s:s}", "status", "healthy"));
        return true;
    }
    const char *owner = NULL;
    if (authenticate(d, req, &owner) < 0)
        return true;
    const char *r2 = under(rest, "/v1");
    if (r2)
        rest = r2;
    if (proxy_route(d, req, rest, owner))
        return true;
    bool path_known = false;
    for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
        char p1[OS_REF_MAX + 1] = "", p2[OS_REF_MAX + 1] = "";
        if (!compat_route_match(routes[i].pattern, rest, OS_REF_MAX, true, (char *const[]){p1, p2}, 2))
            continue;
        path_known = true;
        if (strcmp(routes[i].method, method) != 0)
            continue;
        /* One metrics label for the whole lifecycle API: sbxd keeps a bounded set of route labels. */
        struct api_ctx *c = ctx_new(d, req, "opensandbox:api", p1[0] ? p1 : NULL, owner);
        if (p2[0])
            c->command_id = xstrdup(p2);
        routes[i].handler(c);
        return true;
    }
    if (path_known)
        os_reply(req, 405, "METHOD_NOT_ALLOWED", "%s is not allowed on %s", method, path);
    else
        os_reply(req, 404, "NOT_FOUND", "%s %s is not part of sbx's OpenSandbox API", method, path);
    return true;
}
