/* Service URLs (service.h): minting signed tokens, checking them, and handing authorized connections to
 * the proxy (proxy.c).
 *
 * Token: "<expiry>.<mac>", expiry in Unix seconds, mac = base64url(HMAC-SHA256(secret,
 * "sbx-service-v1\n<sandbox id>\n<port>\n<expiry>")). The secret is 32 random bytes in
 * <data_dir>/service.key (0600), made at first use and kept across restarts, so URLs survive a restart
 * of sbxd; deleting the file revokes every URL. A token names exactly one sandbox id and one port, so it
 * authorizes nothing else, and only whoever may see the sandbox (its owner, or the admin) can mint one. */
#include "api/service.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "compat/e2b.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "shimclient/shim_net.h"

#define SECRET_BYTES 32
#define TOKEN_DEFAULT_S 3600
#define TOKEN_MAX_S (7 * 24 * 3600)
#define TOKEN_MAX_LEN 64
#define COOKIE_NAME "sbx_service_token"
#define QUERY_NAME "sbx_token"
#define HEADER_NAME "X-Sbx-Service-Token"
/* The same token under the name LangSmith's SDK sends (compat/langsmith_api.c mints it). */
#define HEADER_NAME_LANGSMITH "X-Langsmith-Sandbox-Service-Token"
#define CONNECT_TIMEOUT_MS 2000
#define PROXY_MAX 4096 /* proxied connections at once */

static unsigned char secret[SECRET_BYTES];
static bool have_secret;
static char *service_domain;

void api_service_set_domain(const char *domain)
{
    free(service_domain);
    service_domain = domain && *domain ? xstrdup(domain) : NULL;
    for (char *s = service_domain; s && *s; s++)
        *s = (char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
}

const char *api_service_domain(void)
{
    return service_domain;
}

/* Reads <data_dir>/service.key, creating it (0600, atomically) the first time. */
static int load_secret(struct daemon *d, sbx_error *err)
{
    if (have_secret)
        return 0;
    char path[PATH_MAX], tmp[PATH_MAX];
    snprintf(path, sizeof(path), "%s/service.key", d->data_dir);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        ssize_t n = read(fd, secret, sizeof(secret));
        if (n != (ssize_t)sizeof(secret))
            return sbx_error_set(err, -EIO, "`%s` is not a %d-byte key", path, SECRET_BYTES);
        have_secret = true;
        return 0;
    }
    if (errno != ENOENT)
        return sbx_error_set(err, -errno, "open `%s`: %m", path);
    if (getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret))
        return sbx_error_set(err, -EIO, "getrandom failed");
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    (void)unlink(tmp);
    _cleanup_close_ int wfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (wfd < 0)
        return sbx_error_set(err, -errno, "create `%s`: %m", tmp);
    if (write(wfd, secret, sizeof(secret)) != (ssize_t)sizeof(secret) || fsync(wfd) < 0 ||
        rename(tmp, path) < 0) {
        int r = -errno;
        (void)unlink(tmp);
        return sbx_error_set(err, r ? r : -EIO, "write `%s`: %s", path, strerror(r ? -r : EIO));
    }
    have_secret = true;
    return 0;
}

int api_service_mac(struct daemon *d, const char *msg, unsigned char ret[32], sbx_error *err)
{
    if (load_secret(d, err) < 0)
        return err->code;
    unsigned maclen = 0;
    HMAC(EVP_sha256(), secret, sizeof(secret), (const unsigned char *)msg, strlen(msg), ret, &maclen);
    return 0;
}

/* The token for id, port and expiry into ret (TOKEN_MAX_LEN + 1 bytes). */
static void make_token(const char *id, int port, int64_t expiry, char *ret)
{
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "sbx-service-v1\n%s\n%d\n%lld", id, port, (long long)expiry);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), secret, sizeof(secret), (const unsigned char *)msg, (size_t)n, mac, &maclen);
    char enc[64];
    b64url_encode(mac, maclen, enc);
    snprintf(ret, TOKEN_MAX_LEN + 1, "%lld.%s", (long long)expiry, enc);
}

enum verdict { TOKEN_OK, TOKEN_BAD, TOKEN_EXPIRED };

static enum verdict check_token(const char *token, const char *id, int port)
{
    if (!token || !have_secret || strlen(token) > TOKEN_MAX_LEN)
        return TOKEN_BAD;
    char *dot;
    errno = 0;
    long long expiry = strtoll(token, &dot, 10);
    if (errno || dot == token || *dot != '.' || expiry <= 0)
        return TOKEN_BAD;
    char want[TOKEN_MAX_LEN + 1];
    make_token(id, port, expiry, want);
    size_t wl = strlen(want);
    if (strlen(token) != wl || CRYPTO_memcmp(token, want, wl) != 0)
        return TOKEN_BAD;
    return expiry < (long long)time(NULL) ? TOKEN_EXPIRED : TOKEN_OK;
}

/* --- minting and listing --------------------------------------------------------------------------- */

static int parse_port(const char *s)
{
    if (!s || !*s || strlen(s) > 5)
        return -1;
    int v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v >= 1 && v <= 65535 && s[0] != '0' ? v : -1;
}

json_t *api_service_link(struct daemon *d, const struct sandbox *sb, int port, int64_t ttl_s,
                         const char *host, sbx_error *err)
{
    if (load_secret(d, err) < 0)
        return NULL;
    int64_t expiry = (int64_t)time(NULL) + ttl_s;
    char token[TOKEN_MAX_LEN + 1], when[40];
    make_token(sb->id, port, expiry, token);
    format_time_ms(when, sizeof(when), expiry * 1000);
    if (!host || !*host || strpbrk(host, " /\\\"<>@"))
        host = "localhost";
    _cleanup_(sbx_buf_done) struct sbx_buf path_url = SBX_BUF_INIT;
    sbx_buf_appendf(&path_url, "http://%s/s/%s/%d/", host, sb->id, port);
    json_t *out = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "url", sbx_buf_cstr(&path_url), "path_url",
                            sbx_buf_cstr(&path_url), "token", token, "expires_at", when, "port", port,
                            "sandbox_id", sb->id);
    if (service_domain) {
        const char *colon = strrchr(host, ':');
        if (colon && strchr(colon, ']'))
            colon = NULL; /* an IPv6 literal without a port */
        _cleanup_(sbx_buf_done) struct sbx_buf host_url = SBX_BUF_INIT;
        sbx_buf_appendf(&host_url, "http://%d-%s.%s%s/", port, sb->id, service_domain, colon ? colon : "");
        json_object_set_new(out, "url", json_string(sbx_buf_cstr(&host_url)));
        json_object_set_new(out, "host_url", json_string(sbx_buf_cstr(&host_url)));
    }
    return out;
}

static void url_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    int port = parse_port(c->command_id);
    if (port < 0)
        return http_respond_error(c->req, 400, "invalid_argument", "the port must be an integer in 1..65535");
    int64_t ttl = TOKEN_DEFAULT_S;
    if (jsonreq_integer(body, "expires_in_seconds", 1, TOKEN_MAX_S, &ttl, &err) < 0)
        return api_reply_error(c->req, &err);
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    json_t *out = api_service_link(c->d, sb, port, ttl, http_header_get(c->req, "Host"), &err);
    if (!out)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 200, out);
}

void api_service_url(struct api_ctx *c)
{
    api_read_json(c, url_with_body);
}

void api_ports_list(struct api_ctx *c)
{
    sbx_error err = {0};
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    json_t *req = json_pack("{s:s}", "op", "ports"), *resp = NULL;
    int r = sandbox_shim_call(sb, req, &resp, &err);
    json_decref(req);
    if (r < 0)
        return api_reply_error(c->req, &err);
    json_t *ports = json_object_get(resp, "ports");
    api_reply_json(c->req, 200, json_pack("{s:O}", "ports", json_is_array(ports) ? ports : json_array()));
    json_decref(resp);
}

/* --- serving ------------------------------------------------------------------------------------- */

/* A service request: where it goes and what the sandbox should see as its target. */
struct target {
    char id[SBX_ID_MAX + 1];
    int port;
    bool path_form;
    const char *rest;   /* the target to send ("/x?y"), into the request's arena */
    const char *prefix; /* "/s/{id}/{port}" (path form) */
};

static bool id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '-';
}

/* "/s/{id}/{port}[/rest][?query]" from the raw target. Returns 1, 0 when not a service path, -1 when
 * malformed. */
static int parse_path_form(struct http_request *req, struct target *t)
{
    const char *path = http_request_path(req);
    if (strncmp(path, "/s/", 3) != 0 && strcmp(path, "/s") != 0)
        return 0;
    const char *raw = http_request_target(req);
    if (strncmp(raw, "/s/", 3) != 0)
        return -1;
    const char *p = raw + 3, *id = p;
    while (id_char(*p))
        p++;
    size_t idlen = (size_t)(p - id);
    if (idlen == 0 || idlen > SBX_ID_MAX || *p != '/')
        return -1;
    memcpy(t->id, id, idlen);
    t->id[idlen] = 0;
    const char *ps = ++p;
    while (*p >= '0' && *p <= '9')
        p++;
    char pbuf[8];
    if (p - ps > 5 || (*p && *p != '/' && *p != '?'))
        return -1;
    memcpy(pbuf, ps, (size_t)(p - ps));
    pbuf[p - ps] = 0;
    if ((t->port = parse_port(pbuf)) < 0)
        return -1;
    t->path_form = true;
    size_t plen = (size_t)(p - raw);
    char *prefix = http_request_alloc(req, plen + 1);
    memcpy(prefix, raw, plen);
    prefix[plen] = 0;
    t->prefix = prefix;
    if (*p == '/')
        t->rest = p;
    else {
        char *r = http_request_alloc(req, strlen(p) + 2);
        r[0] = '/';
        strcpy(r + 1, p);
        t->rest = r;
    }
    return 1;
}

/* Host "{port}-{id}.<domain>[:port]". Returns 1 or 0. */
static int parse_host_form(struct http_request *req, struct target *t)
{
    const char *host = http_header_get(req, "Host");
    if (!service_domain || !host)
        return 0;
    char h[256];
    size_t n = strcspn(host, ":");
    if (n >= sizeof(h))
        return 0;
    for (size_t i = 0; i < n; i++)
        h[i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] - 'A' + 'a' : host[i]);
    h[n] = 0;
    size_t dl = strlen(service_domain);
    if (n < dl + 4 || h[n - dl - 1] != '.' || strcmp(h + n - dl, service_domain) != 0)
        return 0;
    h[n - dl - 1] = 0;
    char *dash = strchr(h, '-');
    if (!dash || strchr(h, '.'))
        return 0;
    *dash = 0;
    const char *id = dash + 1;
    size_t idlen = strlen(id);
    if ((t->port = parse_port(h)) < 0 || idlen == 0 || idlen > SBX_ID_MAX)
        return 0;
    for (const char *s = id; *s; s++)
        if (!id_char(*s))
            return 0;
    memcpy(t->id, id, idlen + 1);
    t->path_form = false;
    t->rest = http_request_target(req);
    t->prefix = "";
    return 1;
}

/* The token a request shows: header, then query, then any of its cookies that verifies. */
static enum verdict request_token(struct http_request *req, const struct target *t, bool *ret_from_query)
{
    *ret_from_query = false;
    const char *h = http_header_get(req, HEADER_NAME);
    if (!h)
        h = http_header_get(req, HEADER_NAME_LANGSMITH);
    if (h)
        return check_token(h, t->id, t->port);
    const char *q = http_query_get(req, QUERY_NAME);
    if (q) {
        *ret_from_query = true;
        return check_token(q, t->id, t->port);
    }
    enum verdict best = TOKEN_BAD;
    for (size_t i = 0; i < http_header_count(req); i++) {
        const char *name, *value;
        if (!http_header_at(req, i, &name, &value) || strcasecmp(name, "Cookie") != 0)
            continue;
        for (const char *s = value; s && *s;) {
            while (*s == ' ' || *s == ';')
                s++;
            size_t len = strcspn(s, ";");
            size_t nl = strlen(COOKIE_NAME);
            if (len > nl + 1 && strncmp(s, COOKIE_NAME "=", nl + 1) == 0 && len - nl - 1 <= TOKEN_MAX_LEN) {
                char tok[TOKEN_MAX_LEN + 1];
                memcpy(tok, s + nl + 1, len - nl - 1);
                tok[len - nl - 1] = 0;
                enum verdict v = check_token(tok, t->id, t->port);
                if (v == TOKEN_OK)
                    return v;
                if (v == TOKEN_EXPIRED)
                    best = v;
            }
            s += len;
        }
    }
    return best;
}

/* The target without its sbx_token query parameter(s). */
static void target_without_token(const char *target, struct sbx_buf *out)
{
    const char *q = strchr(target, '?');
    if (!q) {
        sbx_buf_append(out, target, strlen(target));
        return;
    }
    sbx_buf_append(out, target, (size_t)(q - target));
    bool first = true;
    for (const char *s = q + 1; *s;) {
        size_t len = strcspn(s, "&");
        size_t nl = strlen(QUERY_NAME);
        bool ours = len >= nl && strncmp(s, QUERY_NAME, nl) == 0 && (len == nl || s[nl] == '=');
        if (!ours && len > 0) {
            sbx_buf_append(out, first ? "?" : "&", 1);
            sbx_buf_append(out, s, len);
            first = false;
        }
        s += len;
        if (*s == '&')
            s++;
    }
}

static bool has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    for (const char *s = value; (s = strcasestr(s, token)); s += tl) {
        bool start = s == value || s[-1] == ',' || s[-1] == ' ';
        bool end = s[tl] == 0 || s[tl] == ',' || s[tl] == ' ';
        if (start && end)
            return true;
    }
    return false;
}

/* The request head as the service in the sandbox sees it. */
static void build_head(struct http_request *req, const struct target *t, struct sbx_buf *b)
{
    bool upgrade = false;
    sbx_buf_appendf(b, "%s %s HTTP/1.%d\r\n", http_request_method(req), t->rest,
                    http_request_version(req) == 10 ? 0 : 1);
    for (size_t i = 0; i < http_header_count(req); i++) {
        const char *name, *value;
        if (!http_header_at(req, i, &name, &value) || strcasecmp(name, HEADER_NAME) == 0 ||
            strcasecmp(name, HEADER_NAME_LANGSMITH) == 0)
            continue;
        if (strcasecmp(name, "Connection") == 0) {
            upgrade |= has_token(value, "upgrade");
            if (t->path_form)
                continue;
        }
        if (t->path_form &&
            (strcasecmp(name, "Keep-Alive") == 0 || strcasecmp(name, "Proxy-Connection") == 0))
            continue;
        if (strcasecmp(name, "Cookie") == 0) { /* our cookie stays with sbxd */
            _cleanup_(sbx_buf_done) struct sbx_buf kept = SBX_BUF_INIT;
            for (const char *s = value; *s;) {
                while (*s == ' ' || *s == ';')
                    s++;
                size_t len = strcspn(s, ";");
                if (len && strncmp(s, COOKIE_NAME "=", strlen(COOKIE_NAME) + 1) != 0) {
                    if (kept.len)
                        sbx_buf_append(&kept, "; ", 2);
                    sbx_buf_append(&kept, s, len);
                }
                s += len;
            }
            if (kept.len)
                sbx_buf_appendf(b, "Cookie: %.*s\r\n", (int)kept.len, kept.base);
            continue;
        }
        sbx_buf_appendf(b, "%s: %s\r\n", name, value);
    }
    if (t->path_form)
        sbx_buf_appendf(b, "Connection: %s\r\nX-Forwarded-Prefix: %s\r\n", upgrade ? "Upgrade" : "close",
                        t->prefix);
    char remote[64];
    snprintf(remote, sizeof(remote), "%s", http_request_remote(req));
    char *colon = strrchr(remote, ':');
    if (colon)
        *colon = 0;
    const char *ip = remote[0] == '[' ? remote + 1 : remote;
    if (remote[0] == '[' && colon && colon[-1] == ']')
        colon[-1] = 0;
    sbx_buf_appendf(b, "X-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n\r\n", ip);
}

static void serve(struct daemon *d, struct http_request *req, struct target *t)
{
    bool from_query;
    sbx_error err = {0};
    if (load_secret(d, &err) < 0) {
        log_error("service URL: %s", err.msg);
        return http_respond_error(req, 500, "internal", "the service key is not available");
    }
    enum verdict v = request_token(req, t, &from_query);
    /* E2B's host form (compat/e2b_api.c decides): a sandbox made through E2B's API also takes its
     * e2b-traffic-access-token, or no credential at all when its E2B create made its ports public. */
    if (v != TOKEN_OK && !t->path_form && e2b_service_authorized(d, req, t->id)) {
        v = TOKEN_OK;
        from_query = false;
    }
    if (v != TOKEN_OK)
        return http_respond_error(req, 401, "unauthenticated", "%s service token for port %d of `%s`",
                                  v == TOKEN_EXPIRED ? "expired" : "missing or wrong", t->port, t->id);
    if (from_query) {
        /* Browsers: keep the token in a cookie scoped to this service and drop it from the address. */
        const char *tok = http_query_get(req, QUERY_NAME);
        _cleanup_(sbx_buf_done) struct sbx_buf loc = SBX_BUF_INIT, cookie = SBX_BUF_INIT;
        target_without_token(http_request_target(req), &loc);
        long long expiry = strtoll(tok, NULL, 10), left = expiry - (long long)time(NULL);
        sbx_buf_appendf(&cookie, COOKIE_NAME "=%s; Path=%s; Max-Age=%lld; HttpOnly; SameSite=Lax", tok,
                        t->path_form ? t->prefix : "/", left > 0 ? left : 0);
        http_response_header(req, "Location", sbx_buf_cstr(&loc));
        http_response_header(req, "Set-Cookie", sbx_buf_cstr(&cookie));
        http_response_header(req, "Cache-Control", "no-store");
        return http_respond(req, 302, NULL, NULL, 0);
    }
    _cleanup_(sandbox_unrefp) struct sandbox *sb = sandbox_lookup(d, t->id, NULL);
    if (!sb || strcmp(sb->id, t->id) != 0)
        return http_respond_error(req, 404, "not_found", "sandbox `%s` not found", t->id);
    if (sandbox_need_up(sb, &err) < 0)
        return api_reply_error(req, &err);
    if (sb->state == SANDBOX_PAUSED && sandbox_resume(d, sb, &err) < 0)
        return api_reply_error(req, &err);
    sandbox_touch(sb);
    if (api_proxy_count() >= PROXY_MAX)
        return http_respond_error(req, 503, "resource_exhausted", "too many proxied connections");
    _cleanup_close_ int fd = -1;
    if (shim_connect_port(sb->state_dir, t->port, CONNECT_TIMEOUT_MS, &fd, &err) < 0) {
        if (err.code == -ECONNREFUSED)
            return http_respond_error(req, 502, "port_closed", "nothing listens on port %d in sandbox `%s`",
                                      t->port, sb->id);
        log_warning("service URL for `%s` port %d: %s", sb->id, t->port, err.msg);
        return http_respond_error(req, 502, "bad_gateway", "cannot reach port %d in sandbox `%s`: %s",
                                  t->port, sb->id, err.msg);
    }
    struct sbx_buf head = SBX_BUF_INIT;
    build_head(req, t, &head);
    bool close_after = t->path_form;
    struct http_takeover tk;
    int status = http_request_is_websocket(req) ? 101 : 200;
    if (http_request_take_over(req, status, &tk) < 0) {
        sbx_buf_done(&head);
        return http_respond_error(req, 500, "internal", "cannot take over the connection");
    }
    api_proxy_start(d, sb, &tk, TAKE_FD(fd), &head, close_after);
}

bool api_service_dispatch(struct daemon *d, struct http_request *req)
{
    struct target t = {0};
    int r = parse_path_form(req, &t);
    if (r < 0) {
        http_respond_error(req, 404, "not_found", "a service URL looks like /s/{sandbox id}/{port}/...");
        return true;
    }
    if (r == 0 && parse_host_form(req, &t) == 0)
        return false;
    serve(d, req, &t);
    return true;
}
