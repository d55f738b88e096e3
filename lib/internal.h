/* libsbx internals shared by the API wrappers: one request primitive over a reused curl easy handle, error
 * filling and small JSON helpers. Nothing here is exported (-fvisibility=hidden). */
#pragma once

#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>

#include "encode.h"
#include "sbx.h"

struct sbx_client {
    CURL *curl; /* one easy handle: its connection cache keeps the daemon connection alive */
    char *url;  /* base URL without trailing '/' */
    struct curl_slist *hdr_plain;   /* Authorization, "Expect:" */
    struct curl_slist *hdr_json;    /* + Content-Type: application/json */
    struct curl_slist *hdr_octet;   /* + Content-Type: application/octet-stream */
    struct curl_slist *hdr_chunked; /* octet + Transfer-Encoding: chunked (uploads of unknown size) */
    struct curl_slist *hdr_sse;     /* + Accept: text/event-stream */
    char errbuf[CURL_ERROR_SIZE];
};

/* Receives the body of a 2xx response as it arrives; returns 0 or a negative errno to abort. */
typedef int (*http_sink_fn)(const char *data, size_t len, void *userdata);

enum http_body_kind {
    HTTP_BODY_NONE,
    HTTP_BODY_JSON,   /* body/body_len as application/json */
    HTTP_BODY_OCTET,  /* body/body_len as application/octet-stream */
    HTTP_BODY_STREAM, /* read_fn/read_data; upload_size bytes, or chunked when < 0 */
};

struct http_req {
    const char *method; /* "GET", "POST", "PUT", "DELETE" */
    const char *path;   /* encoded path and query, starting with '/' */
    enum http_body_kind body_kind;
    const char *body;
    size_t body_len;
    curl_read_callback read_fn;
    void *read_data;
    curl_off_t upload_size;
    bool sse;          /* Accept: text/event-stream, no buffering limits */
    http_sink_fn sink; /* NULL: collect the body in http_resp.body */
    void *sink_data;
};

struct http_resp {
    long status;
    struct lbuf body; /* the body of a response not given to a sink (errors always land here) */
};

/* Performs one request. Returns 0 for a 2xx answer (resp->status set), or a negative errno with `err`
 * filled from the JSON error body or the transport failure. resp->body must be released by the caller
 * with lbuf_done() in every case. */
int client_request(struct sbx_client *c, const struct http_req *req, struct http_resp *resp,
                   struct sbx_err *err);

/* Convenience: sends an optional JSON document (`body`, borrowed) and parses a JSON answer into *ret_json
 * (may be NULL to ignore it; NULL for an empty body). */
int client_json(struct sbx_client *c, const char *method, const char *path, json_t *body, json_t **ret_json,
                struct sbx_err *err);

/* Fills err (may be NULL) and returns r. */
int client_err(struct sbx_err *err, int r, int http_status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Builds "/v1/sandboxes/{sid}" + suffix into b (sid escaped). */
int client_sandbox_path(struct lbuf *b, const char *sid, const char *suffix);

/* Strings from a JSON object: a new copy, or NULL when absent or not a string. Sets *oom on allocation
 * failure. */
char *json_strdup_member(json_t *obj, const char *key, bool *oom);
/* Adds "K=V" entries of a NULL-terminated array as members of a new object under `key`. */
int json_set_kv_object(json_t *obj, const char *key, const char *const *kv);
