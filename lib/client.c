/* libsbx core: the client object and the one request primitive every call goes through. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

SBX_PUBLIC const char *sbx_version(void)
{
    return SBX_VERSION;
}

int client_err(struct sbx_err *err, int r, int http_status, const char *code, const char *fmt, ...)
{
    if (!err)
        return r;
    err->http_status = http_status;
    snprintf(err->code, sizeof(err->code), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return r;
}

static struct curl_slist *slist_add(struct curl_slist *l, const char *s, bool *oom)
{
    if (*oom)
        return l;
    struct curl_slist *n = curl_slist_append(l, s);
    if (!n) {
        *oom = true;
        return l;
    }
    return n;
}

SBX_PUBLIC struct sbx_client *sbx_client_free(struct sbx_client *c)
{
    if (!c)
        return NULL;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->hdr_plain);
    curl_slist_free_all(c->hdr_json);
    curl_slist_free_all(c->hdr_octet);
    curl_slist_free_all(c->hdr_chunked);
    curl_slist_free_all(c->hdr_sse);
    free(c->url);
    free(c);
    return NULL;
}

SBX_PUBLIC int sbx_client_new(const char *url, const char *api_key, struct sbx_client **ret)
{
    if (!ret)
        return -EINVAL;
    if (!url || !*url)
        url = getenv("SBX_URL");
    if (!url || !*url)
        url = SBX_DEFAULT_URL;
    if (!api_key)
        api_key = getenv("SBX_API_KEY");
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return -EINVAL;

    struct sbx_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->url = strdup(url);
    if (!c->url)
        goto oom;
    size_t n = strlen(c->url);
    while (n > 0 && c->url[n - 1] == '/')
        c->url[--n] = 0;

    bool oom = false;
    const char *kinds[] = {NULL, "Content-Type: application/json", "Content-Type: application/octet-stream",
                           "Content-Type: application/octet-stream", "Accept: text/event-stream"};
    struct curl_slist **lists[] = {&c->hdr_plain, &c->hdr_json, &c->hdr_octet, &c->hdr_chunked, &c->hdr_sse};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        struct curl_slist *l = NULL;
        if (api_key && *api_key) {
            size_t len = strlen(api_key) + sizeof("Authorization: Bearer ");
            char *h = malloc(len);
            if (!h) {
                oom = true;
                break;
            }
            snprintf(h, len, "Authorization: Bearer %s", api_key);
            l = slist_add(l, h, &oom);
            free(h);
        }
        l = slist_add(l, "Expect:", &oom); /* no 100-continue round trip */
        if (kinds[i])
            l = slist_add(l, kinds[i], &oom);
        if (lists[i] == &c->hdr_chunked)
            l = slist_add(l, "Transfer-Encoding: chunked", &oom);
        *lists[i] = l;
    }
    if (oom)
        goto oom;
    c->curl = curl_easy_init();
    if (!c->curl)
        goto oom;
    *ret = c;
    return 0;
oom:
    sbx_client_free(c);
    return -ENOMEM;
}

SBX_PUBLIC const char *sbx_client_url(const struct sbx_client *c)
{
    return c->url;
}

int client_sandbox_path(struct lbuf *b, const char *sid, const char *suffix)
{
    int r = lbuf_appends(b, "/v1/sandboxes/");
    if (r >= 0)
        r = url_escape(b, sid);
    if (r >= 0 && suffix)
        r = lbuf_appends(b, suffix);
    return r;
}

struct xfer {
    struct sbx_client *c;
    const struct http_req *req;
    struct http_resp *resp;
    int sink_error;
};

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t len = size * nmemb;
    if (x->resp->status == 0)
        curl_easy_getinfo(x->c->curl, CURLINFO_RESPONSE_CODE, &x->resp->status);
    if (x->req->sink && x->resp->status >= 200 && x->resp->status < 300) {
        int r = x->req->sink(data, len, x->req->sink_data);
        if (r < 0) {
            x->sink_error = r;
            return CURL_WRITEFUNC_ERROR;
        }
        return len;
    }
    if (lbuf_append(&x->resp->body, data, len) < 0) {
        x->sink_error = -ENOMEM;
        return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

static int status_to_errno(long status)
{
    switch (status) {
    case 400:
        return -EINVAL;
    case 401:
        return -EACCES;
    case 403:
        return -EPERM;
    case 404:
        return -ENOENT;
    case 405:
    case 501:
        return -EOPNOTSUPP;
    case 409:
        return -EBUSY;
    case 413:
    case 431:
        return -E2BIG;
    case 416:
        return -ERANGE;
    case 429:
        return -EAGAIN;
    case 504:
        return -ETIMEDOUT;
    case 507:
        return -ENOSPC;
    default:
        return -EIO;
    }
}

static int curl_to_errno(CURLcode cc)
{
    switch (cc) {
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return -ECONNRESET;
    default:
        return -EIO;
    }
}

/* Turns a non-2xx answer into err: the API's {"error":{"code","message"}} body when there is one. */
static int http_error(const struct http_resp *resp, struct sbx_err *err)
{
    int r = status_to_errno(resp->status);
    json_t *doc = resp->body.len ? json_loadb(resp->body.base, resp->body.len, 0, NULL) : NULL;
    json_t *e = json_object_get(doc, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code)
        client_err(err, r, (int)resp->status, code, "%s", msg ? msg : code);
    else
        client_err(err, r, (int)resp->status, "http_error", "HTTP status %ld%s%.*s", resp->status,
                   resp->body.len ? ": " : "", (int)(resp->body.len > 200 ? 200 : resp->body.len),
                   resp->body.len ? resp->body.base : "");
    json_decref(doc);
    return r;
}

int client_request(struct sbx_client *c, const struct http_req *req, struct http_resp *resp,
                   struct sbx_err *err)
{
    CURL *h = c->curl;
    struct lbuf url = LBUF_INIT;
    if (lbuf_appends(&url, c->url) < 0 || lbuf_appends(&url, req->path) < 0) {
        lbuf_done(&url);
        return client_err(err, -ENOMEM, 0, "internal", "out of memory");
    }
    resp->status = 0;
    struct xfer x = {.c = c, .req = req, .resp = resp};

    /* Reset keeps the connection cache, so the daemon connection is reused across calls. */
    curl_easy_reset(h);
    c->errbuf[0] = 0;
    curl_easy_setopt(h, CURLOPT_URL, url.base);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);

    struct curl_slist *hdrs = req->sse ? c->hdr_sse : c->hdr_plain;
    switch (req->body_kind) {
    case HTTP_BODY_NONE:
        if (strcmp(req->method, "POST") == 0) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        } else if (strcmp(req->method, "GET") != 0) {
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
        }
        break;
    case HTTP_BODY_JSON:
    case HTTP_BODY_OCTET:
        hdrs = req->body_kind == HTTP_BODY_JSON ? c->hdr_json : c->hdr_octet;
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        if (strcmp(req->method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
        break;
    case HTTP_BODY_STREAM:
        hdrs = req->upload_size >= 0 ? c->hdr_octet : c->hdr_chunked;
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, req->read_fn);
        curl_easy_setopt(h, CURLOPT_READDATA, req->read_data);
        if (req->upload_size >= 0)
            curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, req->upload_size);
        if (strcmp(req->method, "PUT") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
        break;
    default:
        lbuf_done(&url);
        return client_err(err, -EINVAL, 0, "internal", "bad request body kind");
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

    CURLcode cc = curl_easy_perform(h);
    lbuf_done(&url);
    if (resp->status == 0)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);

    if (x.sink_error < 0 && x.sink_error != -ENOMEM)
        return client_err(err, x.sink_error, (int)resp->status, "aborted", "%s", strerror(-x.sink_error));
    if (x.sink_error == -ENOMEM || cc == CURLE_OUT_OF_MEMORY)
        return client_err(err, -ENOMEM, 0, "internal", "out of memory");
    /* An error answer wins over a transport failure it caused (e.g. the daemon rejecting an upload early
     * and closing the connection while we were still sending). */
    if (resp->status >= 300 && (cc == CURLE_OK || resp->body.len > 0))
        return http_error(resp, err);
    if (cc != CURLE_OK) {
        if (cc == CURLE_ABORTED_BY_CALLBACK || cc == CURLE_READ_ERROR)
            return client_err(err, -EIO, 0, "aborted", "%s: %s", req->path,
                              c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
        return client_err(err, curl_to_errno(cc), (int)resp->status, "unavailable", "%s: %s", c->url,
                          c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
    }
    if (resp->status < 200 || resp->status >= 300)
        return http_error(resp, err);
    return 0;
}

int client_json(struct sbx_client *c, const char *method, const char *path, json_t *body, json_t **ret_json,
                struct sbx_err *err)
{
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        if (!text)
            return client_err(err, -ENOMEM, 0, "internal", "out of memory");
    }
    struct http_req req = {
        .method = method,
        .path = path,
        .body_kind = body ? HTTP_BODY_JSON : HTTP_BODY_NONE,
        .body = text,
        .body_len = text ? strlen(text) : 0,
    };
    struct http_resp resp = {.body = LBUF_INIT};
    int r = client_request(c, &req, &resp, err);
    free(text);
    if (r >= 0 && ret_json) {
        *ret_json = NULL;
        if (resp.body.len > 0) {
            json_error_t jerr;
            *ret_json = json_loadb(resp.body.base, resp.body.len, 0, &jerr);
            if (!*ret_json)
                r = json_error_code(&jerr) == json_error_out_of_memory
                        ? client_err(err, -ENOMEM, 0, "internal", "out of memory")
                        : client_err(err, -EPROTO, (int)resp.status, "bad_response",
                                     "invalid JSON from daemon: %s", jerr.text);
        }
    }
    if (r >= 0)
        r = (int)resp.status;
    lbuf_done(&resp.body);
    return r;
}

SBX_PUBLIC int sbx_request(struct sbx_client *c, const char *method, const char *path_and_query,
                           const char *json_body, char **ret_body, struct sbx_err *err)
{
    if (!c || !method || !path_and_query || path_and_query[0] != '/')
        return client_err(err, -EINVAL, 0, "invalid_argument", "bad request arguments");
    struct http_req req = {
        .method = method,
        .path = path_and_query,
        .body_kind = json_body ? HTTP_BODY_JSON : HTTP_BODY_NONE,
        .body = json_body,
        .body_len = json_body ? strlen(json_body) : 0,
    };
    struct http_resp resp = {.body = LBUF_INIT};
    int r = client_request(c, &req, &resp, err);
    if (r >= 0 && ret_body) {
        *ret_body = lbuf_steal(&resp.body);
        if (!*ret_body)
            r = client_err(err, -ENOMEM, 0, "internal", "out of memory");
    }
    if (r >= 0)
        r = (int)resp.status;
    lbuf_done(&resp.body);
    return r;
}

SBX_PUBLIC int sbx_health(struct sbx_client *c, char **ret_version, struct sbx_err *err)
{
    json_t *doc = NULL;
    int r = client_json(c, "GET", "/healthz", NULL, &doc, err);
    if (r >= 0 && ret_version) {
        bool oom = false;
        *ret_version = json_strdup_member(doc, "version", &oom);
        if (oom)
            r = client_err(err, -ENOMEM, 0, "internal", "out of memory");
    }
    json_decref(doc);
    return r < 0 ? r : 0;
}

char *json_strdup_member(json_t *obj, const char *key, bool *oom)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

int json_set_kv_object(json_t *obj, const char *key, const char *const *kv)
{
    if (!kv)
        return 0;
    json_t *o = json_object();
    if (!o)
        return -ENOMEM;
    for (size_t i = 0; kv[i]; i++) {
        const char *eq = strchr(kv[i], '=');
        if (!eq || eq == kv[i]) {
            json_decref(o);
            return -EINVAL;
        }
        char *k = strndup(kv[i], (size_t)(eq - kv[i]));
        if (!k) {
            json_decref(o);
            return -ENOMEM;
        }
        json_t *v = json_string(eq + 1); /* NULL for invalid UTF-8 (or OOM) */
        if (!v) {
            free(k);
            json_decref(o);
            return -EINVAL;
        }
        int r = json_object_set_new(o, k, v);
        free(k);
        if (r < 0) {
            json_decref(o);
            return -ENOMEM;
        }
    }
    return json_object_set_new(obj, key, o) < 0 ? -ENOMEM : 0;
}
