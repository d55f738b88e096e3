/* Registry pull (pull.h). The download runs on a thread with a libcurl easy handle (connections reused);
 * the loop learns its end from an eventfd, then hands the tarball to snapshot_import_run. The thread reads
 * nothing of the daemon's state: what it needs (the layers already stored, the limits) is copied into its
 * op before it starts, and it reports progress through the snapshot's two __atomic counters. */
#include "daemon/pull.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/daemon.h"
#include "daemon/snapshot.h"
#include "loop/loop.h"

#define JSON_MAX (4u << 20) /* a manifest, an index, a config, a token answer */
#define ERR_BODY_MAX 2048   /* what is kept of an error answer */
#define CONNECT_TIMEOUT_S 30L
#define STALL_BYTES_PER_S 1024L /* slower than this for --pull-stall-seconds: the registry is hung */
#define LAYERS_MAX 120
#define INDEX_DEPTH_MAX 4

static const char accept_manifests[] =
    "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

struct pull_op {
    struct pull_op *next;
    struct daemon *d;
    struct snapshot *sn;
    /* the reference */
    char *host, *repo, *ref; /* ref: a tag or "sha256:<hex>" */
    bool insecure;
    char *username, *password, *bearer;
    bool basic; /* the registry asked for basic auth: send the credentials */
    /* copied from the daemon before the thread starts */
    char **known; /* layer hexes the store has */
    size_t n_known;
    uint64_t max_bytes;
    long stall_s;
    /* the thread */
    char *upload_path;
    int upload_fd;
    pthread_t thread;
    bool thread_running;
    int efd;
    struct loop_io io;
    int cancel; /* __atomic: set to stop the download */
    int r;
    sbx_error err;
    CURL *curl;
    struct archive *tar;
};

static struct pull_op *pulls;

/* --- one HTTP exchange ---------------------------------------------------------------------------- */

enum sink { SINK_MEM, SINK_BLOB };

struct exchange {
    struct pull_op *op;
    enum sink sink;
    long status;
    struct sbx_buf body; /* SINK_MEM, or an error answer */
    bool over;           /* the body passed its cap */
    size_t cap;
    char *www_auth;
    char *content_type;
    /* SINK_BLOB: the bytes go to the open tar entry, hashed and counted against expect */
    EVP_MD_CTX *md;
    uint64_t bytes, expect;
};

static void exchange_done(struct exchange *x)
{
    sbx_buf_done(&x->body);
    free(x->www_auth);
    free(x->content_type);
    if (x->md)
        EVP_MD_CTX_free(x->md);
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct exchange *x = ud;
    size_t len = size * n;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a redirect): forget the previous one's headers. */
        free(x->www_auth);
        free(x->content_type);
        x->www_auth = x->content_type = NULL;
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    size_t klen = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vlen = len - klen - 1;
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    if (klen == 16 && strncasecmp(data, "WWW-Authenticate", 16) == 0 && !x->www_auth)
        x->www_auth = xstrndup(v, vlen);
    else if (klen == 12 && strncasecmp(data, "Content-Type", 12) == 0) {
        free(x->content_type);
        x->content_type = xstrndup(v, vlen);
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct exchange *x = ud;
    size_t len = size * n;
    if (!x->status)
        curl_easy_getinfo(x->op->curl, CURLINFO_RESPONSE_CODE, &x->status);
    if (x->status != 200 || x->sink == SINK_MEM) {
        size_t cap = x->status != 200 ? ERR_BODY_MAX : x->cap;
        if (x->body.len + len > cap) {
            if (x->status == 200) {
                x->over = true;
                return 0; /* aborts the transfer */
            }
            len = x->body.len < cap ? cap - x->body.len : 0;
        }
        sbx_buf_append(&x->body, data, len);
        return size * n;
    }
    x->bytes += len;
    if (x->bytes > x->expect) {
        x->over = true;
        return 0;
    }
    EVP_DigestUpdate(x->md, data, len);
    if (archive_write_data(x->op->tar, data, len) != (la_ssize_t)len)
        return 0;
    __atomic_add_fetch(&x->op->sn->progress_done, (uint64_t)len, __ATOMIC_RELAXED);
    return len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    struct pull_op *op = ud;
    return __atomic_load_n(&op->cancel, __ATOMIC_RELAXED) ? 1 : 0;
}

/* The registry's own words from an error answer ({"errors": [{"code", "message"}]}), or "". */
static void registry_error(const struct exchange *x, char *buf, size_t size)
{
    buf[0] = '\0';
    json_t *j = x->body.len ? json_loadb(x->body.base, x->body.len, 0, NULL) : NULL;
    json_t *e = json_array_get(json_object_get(j, "errors"), 0);
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code)
        snprintf(buf, size, ": %s%s%s", code, msg ? ": " : "", msg ? msg : "");
    json_decref(j);
}

static int perform(struct pull_op *op, const char *url, const char *accept, struct exchange *x)
{
    CURL *c = op->curl;
    curl_easy_reset(c);
    struct curl_slist *hdrs = NULL;
    if (accept)
        hdrs = curl_slist_append(hdrs, accept);
    _cleanup_free_ char *auth = op->bearer ? xasprintf("Authorization: Bearer %s", op->bearer) : NULL;
    if (auth)
        hdrs = curl_slist_append(hdrs, auth);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, op->insecure ? "http,https" : "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, STALL_BYTES_PER_S);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, op->stall_s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sbx/0.1");
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "identity");
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, op);
    if (op->basic && op->username) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, op->username);
        curl_easy_setopt(c, CURLOPT_PASSWORD, op->password ? op->password : "");
    }
    x->status = 0;
    CURLcode cr = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
    if (__atomic_load_n(&op->cancel, __ATOMIC_RELAXED))
        return sbx_error_set(&op->err, -ECANCELED, "sbxd is shutting down");
    if (x->over)
        return sbx_error_set(&op->err, -EFBIG, "GET %s: the answer is larger than announced or allowed", url);
    curl_off_t sent_us = 0; /* when the request went out: 0 while still connecting */
    if (cr == CURLE_OPERATION_TIMEDOUT &&
        curl_easy_getinfo(c, CURLINFO_PRETRANSFER_TIME_T, &sent_us) == CURLE_OK && sent_us > 0)
        return sbx_error_set(&op->err, -ETIMEDOUT,
                             "GET %s: the registry stalled (less than %ld bytes/s for %ld s, "
                             "--pull-stall-seconds)",
                             url, STALL_BYTES_PER_S, op->stall_s);
    if (cr != CURLE_OK)
        return sbx_error_set(&op->err, -EIO, "GET %s: %s", url, curl_easy_strerror(cr));
    return 0;
}

/* A parameter of a WWW-Authenticate challenge (key="value"), or NULL. */
static char *challenge_param(const char *h, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = h; (p = strcasestr(p, key));) {
        bool start = p == h || p[-1] == ' ' || p[-1] == ',';
        if (start && p[kl] == '=') {
            const char *v = p + kl + 1;
            if (*v == '"') {
                const char *end = strchr(v + 1, '"');
                return end ? xstrndup(v + 1, (size_t)(end - v - 1)) : NULL;
            }
            return xstrndup(v, strcspn(v, ", "));
        }
        p += kl;
    }
    return NULL;
}

/* Answers a 401's challenge: basic (send the credentials from now on) or bearer (get a token from the
 * realm it names, with the credentials if any). */
static int authenticate(struct pull_op *op, const char *challenge)
{
    if (!challenge)
        return sbx_error_set(&op->err, -EACCES, "the registry answered 401 without a challenge");
    if (strncasecmp(challenge, "Basic", 5) == 0) {
        if (!op->username)
            return sbx_error_set(&op->err, -EACCES,
                                 "the registry requires credentials (basic auth, 401 Unauthorized)");
        if (op->basic)
            return sbx_error_set(&op->err, -EACCES,
                                 "the registry refused the credentials (401 Unauthorized)");
        op->basic = true;
        return 0;
    }
    if (strncasecmp(challenge, "Bearer", 6) != 0)
        return sbx_error_set(&op->err, -EACCES, "the registry asks for an unsupported auth scheme: %.60s",
                             challenge);
    if (op->bearer && !op->username)
        return sbx_error_set(&op->err, -EACCES, "the registry refused the token (401 Unauthorized)");
    _cleanup_free_ char *realm = challenge_param(challenge, "realm");
    _cleanup_free_ char *service = challenge_param(challenge, "service");
    _cleanup_free_ char *scope = challenge_param(challenge, "scope");
    if (!realm ||
        (strncmp(realm, "https://", 8) != 0 && !(op->insecure && strncmp(realm, "http://", 7) == 0)))
        return sbx_error_set(&op->err, -EACCES, "the registry's token realm `%.200s` is not an %s URL",
                             realm ? realm : "", op->insecure ? "HTTP(S)" : "HTTPS");
    struct sbx_buf url = SBX_BUF_INIT;
    sbx_buf_appendf(&url, "%s%c", realm, strchr(realm, '?') ? '&' : '?');
    if (service) {
        char *e = curl_easy_escape(op->curl, service, 0);
        sbx_buf_appendf(&url, "service=%s&", e);
        curl_free(e);
    }
    if (scope) {
        char *e = curl_easy_escape(op->curl, scope, 0);
        sbx_buf_appendf(&url, "scope=%s", e);
        curl_free(e);
    }
    sbx_buf_append(&url, "", 1);
    free(op->bearer);
    op->bearer = NULL;
    bool basic = op->basic;
    op->basic = op->username != NULL; /* the token service takes the credentials */
    struct exchange x = {.op = op, .sink = SINK_MEM, .cap = JSON_MAX, .body = SBX_BUF_INIT};
    int r = perform(op, url.base, NULL, &x);
    op->basic = basic;
    if (r >= 0 && x.status != 200) {
        char why[300];
        registry_error(&x, why, sizeof(why));
        r = sbx_error_set(&op->err, -EACCES, "the token service refused the credentials (HTTP %ld)%s",
                          x.status, why);
    }
    if (r >= 0) {
        json_t *j = json_loadb(x.body.base ? x.body.base : "", x.body.len, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "token"));
        if (!t)
            t = json_string_value(json_object_get(j, "access_token"));
        if (t && *t && !strpbrk(t, "\r\n"))
            op->bearer = xstrdup(t);
        else
            r = sbx_error_set(&op->err, -EACCES, "the token service answered no token");
        json_decref(j);
    }
    exchange_done(&x);
    sbx_buf_done(&url);
    return r;
}

/* GET path under /v2/<repo>/, answering one auth challenge. what names it in errors. */
static int registry_get(struct pull_op *op, const char *kind, const char *ref, const char *accept,
                        struct exchange *x, const char *what)
{
    _cleanup_free_ char *url =
        xasprintf("%s://%s/v2/%s/%s/%s", op->insecure ? "http" : "https", op->host, op->repo, kind, ref);
    for (int attempt = 0;; attempt++) {
        sbx_buf_done(&x->body);
        x->body = (struct sbx_buf)SBX_BUF_INIT;
        int r = perform(op, url, accept, x);
        if (r < 0)
            return r;
        if (x->status == 401 && attempt == 0) {
            if ((r = authenticate(op, x->www_auth)) < 0)
                return r;
            continue;
        }
        break;
    }
    if (x->status == 200)
        return 0;
    char why[300];
    registry_error(x, why, sizeof(why));
    if (x->status == 401 || x->status == 403)
        return sbx_error_set(&op->err, -EACCES, "the registry refused access to %s (HTTP %ld)%s", what,
                             x->status, why);
    if (x->status == 404)
        return sbx_error_set(&op->err, -ENOENT, "%s not found in %s/%s (HTTP 404)%s", what, op->host,
                             op->repo, why);
    return sbx_error_set(&op->err, -EIO, "GET %s: HTTP %ld%s", url, x->status, why);
}

/* --- the image ------------------------------------------------------------------------------------ */

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static bool is_hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* "sha256:<hex>" -> hex, NULL when it is not one. */
static const char *digest_hex(const char *d)
{
    return d && strncmp(d, "sha256:", 7) == 0 && is_hex64(d + 7) ? d + 7 : NULL;
}

static const char *host_arch(void)
{
#if defined(__x86_64__)
    return "amd64";
#elif defined(__aarch64__)
    return "arm64";
#else
    return "unknown";
#endif
}

static int tar_add(struct pull_op *op, const char *name, const void *data, size_t len)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)len);
    int r = archive_write_header(op->tar, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK || (len && archive_write_data(op->tar, data, len) != (la_ssize_t)len))
        return sbx_error_set(&op->err, -EIO, "write the image tarball: %s", archive_error_string(op->tar));
    return 0;
}

static bool is_index(const char *mt)
{
    return mt && (strcmp(mt, "application/vnd.oci.image.index.v1+json") == 0 ||
                  strcmp(mt, "application/vnd.docker.distribution.manifest.list.v2+json") == 0);
}

/* The manifest (verified against its digest when the reference or the index names one), following an index
 * to the linux/<host arch> entry. Returns it with its media type and digest hex. */
static int fetch_manifest(struct pull_op *op, json_t **ret, char **ret_mt, char ret_hex[65],
                          struct sbx_buf *raw)
{
    _cleanup_free_ char *ref = xstrdup(op->ref);
    for (int depth = 0; depth < INDEX_DEPTH_MAX; depth++) {
        struct exchange x = {.op = op, .sink = SINK_MEM, .cap = JSON_MAX, .body = SBX_BUF_INIT};
        char what[300];
        snprintf(what, sizeof(what), "manifest `%s`", ref);
        int r = registry_get(op, "manifests", ref, accept_manifests, &x, what);
        char hex[65];
        if (r >= 0) {
            sha256_hex(x.body.base ? x.body.base : "", x.body.len, hex);
            const char *want = digest_hex(ref);
            if (want && strcmp(want, hex) != 0)
                r = sbx_error_set(&op->err, -EBADMSG, "digest mismatch for manifest %s: got sha256:%s", ref,
                                  hex);
        }
        json_t *m = NULL;
        if (r >= 0) {
            m = json_loadb(x.body.base ? x.body.base : "", x.body.len, JSON_REJECT_DUPLICATES, NULL);
            if (!json_is_object(m))
                r = sbx_error_set(&op->err, -EBADMSG, "manifest `%s` is not a JSON object", ref);
        }
        if (r < 0) {
            json_decref(m);
            exchange_done(&x);
            return r;
        }
        const char *mt = json_string_value(json_object_get(m, "mediaType"));
        char *ct = x.content_type ? xstrndup(x.content_type, strcspn(x.content_type, ";")) : NULL;
        _cleanup_free_ char *media = xstrdup(mt   ? mt
                                             : ct ? ct
                                                  : "application/vnd.oci.image.manifest.v1+json");
        free(ct);
        if (json_integer_value(json_object_get(m, "schemaVersion")) == 1) {
            json_decref(m);
            exchange_done(&x);
            return sbx_error_set(&op->err, -EOPNOTSUPP, "schema 1 manifests are not supported");
        }
        if (!is_index(media)) {
            *ret = m;
            *ret_mt = TAKE_PTR(media);
            memcpy(ret_hex, hex, 65);
            sbx_buf_done(raw);
            *raw = x.body;
            x.body = (struct sbx_buf)SBX_BUF_INIT;
            exchange_done(&x);
            return 0;
        }
        exchange_done(&x);
        json_t *pick = NULL, *dsc;
        size_t i;
        json_array_foreach(json_object_get(m, "manifests"), i, dsc)
        {
            json_t *p = json_object_get(dsc, "platform");
            const char *os = json_string_value(json_object_get(p, "os"));
            const char *arch = json_string_value(json_object_get(p, "architecture"));
            if (os && arch && strcmp(os, "linux") == 0 && strcmp(arch, host_arch()) == 0) {
                pick = dsc;
                break;
            }
        }
        const char *next = json_string_value(json_object_get(pick, "digest"));
        if (!pick || !digest_hex(next)) {
            json_decref(m);
            return sbx_error_set(&op->err, -ENOENT, "the image has no manifest for linux/%s", host_arch());
        }
        free(ref);
        ref = xstrdup(next);
        json_decref(m);
    }
    return sbx_error_set(&op->err, -EBADMSG, "the image's indexes nest too deeply");
}

/* Downloads one blob into the open tar entry, checking its size and digest. */
static int fetch_blob_to_tar(struct pull_op *op, const char *digest, uint64_t size, const char *what)
{
    struct archive_entry *e = archive_entry_new();
    _cleanup_free_ char *name = xasprintf("blobs/sha256/%s", digest_hex(digest));
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    int r = archive_write_header(op->tar, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK)
        return sbx_error_set(&op->err, -EIO, "write the image tarball: %s", archive_error_string(op->tar));
    struct exchange x = {.op = op, .sink = SINK_BLOB, .body = SBX_BUF_INIT, .expect = size};
    x.md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(x.md, EVP_sha256(), NULL);
    r = registry_get(op, "blobs", digest, NULL, &x, what);
    if (r >= 0 && x.bytes != size)
        r = sbx_error_set(&op->err, -EBADMSG, "%s is %llu bytes, its descriptor says %llu", what,
                          (unsigned long long)x.bytes, (unsigned long long)size);
    if (r >= 0) {
        unsigned char md[32];
        unsigned n = 0;
        char hex[65];
        EVP_DigestFinal_ex(x.md, md, &n);
        for (unsigned i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        if (strcmp(hex, digest_hex(digest)) != 0)
            r = sbx_error_set(&op->err, -EBADMSG, "digest mismatch for %s: expected %s, got sha256:%s", what,
                              digest, hex);
    }
    exchange_done(&x);
    return r;
}

static bool known_layer(struct pull_op *op, const char *hex)
{
    for (size_t i = 0; i < op->n_known; i++)
        if (strcmp(op->known[i], hex) == 0)
            return true;
    return false;
}

static int pull_image(struct pull_op *op)
{
    json_t *man = NULL;
    _cleanup_free_ char *mt = NULL;
    char mhex[65];
    struct sbx_buf raw = SBX_BUF_INIT;
    int r = fetch_manifest(op, &man, &mt, mhex, &raw);
    json_t *cd = json_object_get(man, "config"), *ls = json_object_get(man, "layers");
    const char *cdig = json_string_value(json_object_get(cd, "digest"));
    json_int_t csize = json_integer_value(json_object_get(cd, "size"));
    if (r >= 0 && (!digest_hex(cdig) || !json_is_array(ls)))
        r = sbx_error_set(&op->err, -EBADMSG, "the manifest has no valid `config` or `layers`");
    if (r >= 0 && (csize <= 0 || (uint64_t)csize > JSON_MAX))
        r = sbx_error_set(&op->err, -EFBIG, "the image config's size (%lld) is not in 1..%u",
                          (long long)csize, JSON_MAX);
    if (r >= 0 && (json_array_size(ls) == 0 || json_array_size(ls) > LAYERS_MAX))
        r = sbx_error_set(&op->err, -EBADMSG, "the image has %zu layers (1..%d allowed)", json_array_size(ls),
                          LAYERS_MAX);
    /* The config: names the layers' diff_ids, which say which are stored already. */
    json_t *config = NULL;
    struct exchange cx = {.op = op, .sink = SINK_MEM, .cap = JSON_MAX, .body = SBX_BUF_INIT};
    if (r >= 0)
        r = registry_get(op, "blobs", cdig, NULL, &cx, "the image config");
    if (r >= 0) {
        char hex[65];
        sha256_hex(cx.body.base ? cx.body.base : "", cx.body.len, hex);
        if (strcmp(hex, digest_hex(cdig)) != 0 || cx.body.len != (size_t)csize)
            r = sbx_error_set(&op->err, -EBADMSG,
                              "digest mismatch for the image config: expected %s, got sha256:%s", cdig, hex);
        else if (!(config = json_loadb(cx.body.base, cx.body.len, 0, NULL)))
            r = sbx_error_set(&op->err, -EBADMSG, "the image config is not JSON");
    }
    json_t *diff_ids = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
    bool *skip = xcalloc(json_array_size(ls) + 1, sizeof(bool));
    uint64_t total = raw.len + (uint64_t)csize;
    size_t i;
    json_t *l;
    json_array_foreach(ls, i, l)
    {
        if (r < 0)
            break;
        json_int_t sz = json_integer_value(json_object_get(l, "size"));
        if (!digest_hex(json_string_value(json_object_get(l, "digest"))) || sz < 0) {
            r = sbx_error_set(&op->err, -EBADMSG, "layer %zu of the manifest has no valid digest or size", i);
            break;
        }
        /* Stored already (its diff_id, which the verified config names): not downloaded; sbx-unpack is told
         * it may be absent. A config whose diff_ids do not match the layers fails in sbx-unpack. */
        const char *dh = digest_hex(json_string_value(json_array_get(diff_ids, i)));
        skip[i] = json_array_size(diff_ids) == json_array_size(ls) && dh && known_layer(op, dh);
        if (!skip[i])
            total += (uint64_t)sz;
    }
    if (r >= 0 && total > op->max_bytes)
        r = sbx_error_setk(&op->err, -EFBIG, "too_large", 413,
                           "the image is %llu MiB, over the limit of %llu MiB (--max-image-mb)",
                           (unsigned long long)(total >> 20), (unsigned long long)(op->max_bytes >> 20));
    __atomic_store_n(&op->sn->progress_total, total, __ATOMIC_RELAXED);
    __atomic_store_n(&op->sn->progress_done, (uint64_t)(raw.len + cx.body.len), __ATOMIC_RELAXED);

    /* The OCI image layout sbx-unpack reads: what it checks for an upload, it checks here. */
    if (r >= 0) {
        _cleanup_free_ char *mpath = xasprintf("blobs/sha256/%s", mhex);
        _cleanup_free_ char *cpath = xasprintf("blobs/sha256/%s", digest_hex(cdig));
        json_t *index = json_pack("{s:i, s:[{s:s, s:s, s:I}]}", "schemaVersion", 2, "manifests", "mediaType",
                                  mt, "digest", "", "size", (json_int_t)raw.len);
        _cleanup_free_ char *mdig = xasprintf("sha256:%s", mhex);
        json_object_set_new(json_array_get(json_object_get(index, "manifests"), 0), "digest",
                            json_string(mdig));
        _cleanup_free_ char *itext = json_dumps(index, JSON_COMPACT);
        json_decref(index);
        static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
        if ((r = tar_add(op, "oci-layout", layout, strlen(layout))) >= 0 &&
            (r = tar_add(op, "index.json", itext, strlen(itext))) >= 0 &&
            (r = tar_add(op, mpath, raw.base, raw.len)) >= 0)
            r = tar_add(op, cpath, cx.body.base, cx.body.len);
    }
    json_array_foreach(ls, i, l)
    {
        if (r < 0)
            break;
        if (skip[i])
            continue;
        const char *dg = json_string_value(json_object_get(l, "digest"));
        bool dup = false;
        for (size_t k = 0; k < i; k++)
            dup =
                dup || (!skip[k] &&
                        strcmp(dg, json_string_value(json_object_get(json_array_get(ls, k), "digest"))) == 0);
        if (dup)
            continue; /* one member serves both places */
        char what[120];
        snprintf(what, sizeof(what), "layer %s", dg);
        r = fetch_blob_to_tar(op, dg, (uint64_t)json_integer_value(json_object_get(l, "size")), what);
    }
    free(skip);
    json_decref(config);
    exchange_done(&cx);
    json_decref(man);
    sbx_buf_done(&raw);
    return r;
}

static void *pull_thread(void *p)
{
    struct pull_op *op = p;
    int r = 0;
    op->curl = curl_easy_init();
    op->tar = archive_write_new();
    if (!op->curl || !op->tar)
        r = sbx_error_set(&op->err, -ENOMEM, "set up the download");
    else if (archive_write_set_format_pax_restricted(op->tar) != ARCHIVE_OK ||
             archive_write_open_fd(op->tar, op->upload_fd) != ARCHIVE_OK)
        r = sbx_error_set(&op->err, -EIO, "open the image tarball: %s", archive_error_string(op->tar));
    if (r >= 0)
        r = pull_image(op);
    if (r >= 0 && archive_write_close(op->tar) != ARCHIVE_OK)
        r = sbx_error_set(&op->err, -EIO, "finish the image tarball: %s", archive_error_string(op->tar));
    if (op->tar)
        archive_write_free(op->tar);
    op->tar = NULL;
    if (op->curl)
        curl_easy_cleanup(op->curl);
    op->curl = NULL;
    op->r = r;
    uint64_t one = 1;
    while (write(op->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    return NULL;
}

/* --- the loop's side ------------------------------------------------------------------------------ */

static void op_free(struct pull_op *op)
{
    for (struct pull_op **p = &pulls; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            break;
        }
    if (op->io.active)
        loop_io_stop(op->d->loop, &op->io);
    if (op->efd >= 0)
        close(op->efd);
    if (op->upload_fd >= 0)
        close(op->upload_fd);
    if (op->upload_path)
        unlink(op->upload_path);
    free(op->upload_path);
    for (size_t i = 0; i < op->n_known; i++)
        free(op->known[i]);
    free(op->known);
    free(op->host);
    free(op->repo);
    free(op->ref);
    free(op->username);
    if (op->password)
        explicit_bzero(op->password, strlen(op->password));
    free(op->password);
    free(op->bearer);
    free(op);
}

static void on_done(struct loop_io *io, uint32_t revents)
{
    struct pull_op *op = container_of(io, struct pull_op, io);
    pthread_join(op->thread, NULL);
    op->thread_running = false;
    struct daemon *d = op->d;
    struct snapshot *sn = op->sn;
    if (op->r < 0) {
        char reason[400];
        snprintf(reason, sizeof(reason), "pull of `%s/%s` failed: %s", op->host, op->repo, op->err.msg);
        snapshot_building_fail(d, sn, reason);
        return op_free(op);
    }
    log_info("snapshot %s (`%s`): pulled %s/%s (%llu bytes), unpacking", sn->id, sn->name, op->host, op->repo,
             (unsigned long long)__atomic_load_n(&sn->progress_done, __ATOMIC_RELAXED));
    _cleanup_free_ char *path = TAKE_PTR(op->upload_path); /* the import owns the file now */
    op_free(op);
    snapshot_import_run(d, sn, path, true);
}

/* host[:port]/repo[:tag] or host[:port]/repo@sha256:<hex>. The registry must be named: there is no
 * default one. */
static int parse_reference(const char *image, char **host, char **repo, char **ref, sbx_error *err)
{
    if (!image || !*image || strlen(image) > 512)
        return sbx_error_set(err, -EINVAL, "`image` must be a reference: host[:port]/name[:tag|@sha256:...]");
    const char *slash = strchr(image, '/');
    if (!slash || slash == image)
        return sbx_error_set(err, -EINVAL,
                             "`image` must name its registry: host[:port]/name[:tag] (got `%s`)", image);
    _cleanup_free_ char *h = xstrndup(image, (size_t)(slash - image));
    for (const char *p = h; *p; p++)
        if (!(((*p | 32) >= 'a' && (*p | 32) <= 'z') || (*p >= '0' && *p <= '9') || strchr(".-:[]", *p)))
            return sbx_error_set(err, -EINVAL, "`image`: bad registry host `%s`", h);
    const char *rest = slash + 1;
    _cleanup_free_ char *name = NULL, *r = NULL;
    const char *at = strchr(rest, '@');
    if (at) {
        if (!digest_hex(at + 1))
            return sbx_error_set(err, -EINVAL, "`image`: the digest must be sha256:<64 hex digits>");
        name = xstrndup(rest, (size_t)(at - rest));
        r = xstrdup(at + 1);
    } else {
        const char *colon = strrchr(rest, ':');
        name = colon ? xstrndup(rest, (size_t)(colon - rest)) : xstrdup(rest);
        r = xstrdup(colon ? colon + 1 : "latest");
        if (!*r || strlen(r) > 128)
            return sbx_error_set(err, -EINVAL, "`image`: bad tag");
        for (const char *p = r; *p; p++)
            if (!(((*p | 32) >= 'a' && (*p | 32) <= 'z') || (*p >= '0' && *p <= '9') || strchr("_.-", *p)))
                return sbx_error_set(err, -EINVAL, "`image`: bad tag `%s`", r);
    }
    if (!*name || name[0] == '/' || name[strlen(name) - 1] == '/' || strstr(name, "//") || strstr(name, ".."))
        return sbx_error_set(err, -EINVAL, "`image`: bad repository name");
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("._-/", *p)))
            return sbx_error_set(err, -EINVAL, "`image`: repository names are lowercase [a-z0-9._/-]");
    *host = TAKE_PTR(h);
    *repo = TAKE_PTR(name);
    *ref = TAKE_PTR(r);
    return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int pull_start(struct daemon *d, const struct pull_request *req, struct snapshot **ret, sbx_error *err)
{
    _cleanup_free_ char *host = NULL, *repo = NULL, *ref = NULL;
    int r = parse_reference(req->image, &host, &repo, &ref, err);
    if (r < 0)
        return r;
    if ((req->password && !req->username) || (req->token && req->username))
        return sbx_error_set(err, -EINVAL, "`auth` is {\"username\", \"password\"} or {\"token\"}");
    if ((r = snapshot_import_check(d, req->name, err)) < 0)
        return r;
    int fd = -1;
    char *path = NULL;
    if ((r = snapshot_upload_open(d, &fd, &path, err)) < 0)
        return r;
    struct snapshot *sn = NULL;
    if ((r = snapshot_building_new(d, req->name, NULL, "registry", false, &sn, err)) < 0) {
        close(fd);
        unlink(path);
        free(path);
        return r;
    }
    pthread_once(&curl_once, curl_init_once);
    struct pull_op *op = xcalloc(1, sizeof(*op));
    op->d = d;
    op->sn = sn;
    op->host = TAKE_PTR(host);
    op->repo = TAKE_PTR(repo);
    op->ref = TAKE_PTR(ref);
    op->insecure = req->insecure;
    op->username = req->username ? xstrdup(req->username) : NULL;
    op->password = req->password ? xstrdup(req->password) : NULL;
    op->bearer = req->token ? xstrdup(req->token) : NULL;
    op->upload_fd = fd;
    op->upload_path = path;
    op->max_bytes = snapshot_limits(d)->max_image_bytes;
    op->stall_s = snapshot_limits(d)->pull_stall_s;
    op->efd = -1;
    snapshot_known_hexes(d, &op->known, &op->n_known);
    sbx_error serr = {0};
    op->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (op->efd < 0)
        sbx_error_set(&serr, -errno, "eventfd: %m");
    else if ((r = loop_io_start(d->loop, &op->io, op->efd, EPOLLIN, on_done)) < 0)
        sbx_error_set(&serr, r, "watch the download: %s", strerror(-r));
    else if ((r = -pthread_create(&op->thread, NULL, pull_thread, op)) < 0)
        sbx_error_set(&serr, r, "start the download: %s", strerror(-r));
    else
        op->thread_running = true;
    if (serr.code < 0) {
        snapshot_building_fail(d, sn, serr.msg);
        op_free(op);
    } else {
        op->next = pulls;
        pulls = op;
        log_info("snapshot %s (`%s`): pulling %s from %s://%s", sn->id, sn->name, req->image,
                 op->insecure ? "http" : "https", op->host);
    }
    *ret = sn;
    return 0;
}

void pull_abort_all(struct daemon *d)
{
    for (struct pull_op *op = pulls; op; op = op->next)
        __atomic_store_n(&op->cancel, 1, __ATOMIC_RELAXED);
    while (pulls) {
        struct pull_op *op = pulls;
        if (op->thread_running)
            pthread_join(op->thread, NULL);
        op->thread_running = false;
        op_free(op);
    }
}
