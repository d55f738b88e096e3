/* The Connect protocol's JSON codec and envelope framing (connect.h). */
#include "compat/connect.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/cleanup.h"
#include "base/util.h"

const char *connect_code_for(const sbx_error *err)
{
    const char *kind = sbx_error_kind(err);
    int status = sbx_error_http_status(err);
    if (strcmp(kind, "not_found") == 0 || strcmp(kind, "expired") == 0 || status == 404)
        return "not_found";
    if (strcmp(kind, "invalid_argument") == 0 || status == 400 || status == 413)
        return "invalid_argument";
    if (strcmp(kind, "unauthenticated") == 0 || status == 401)
        return "unauthenticated";
    if (strcmp(kind, "permission_denied") == 0 || status == 403)
        return "permission_denied";
    if (strcmp(kind, "not_running") == 0 || status == 503)
        return "unavailable";
    if (status == 409)
        return err->code == -EEXIST ? "already_exists" : "failed_precondition";
    if (status == 429)
        return "resource_exhausted";
    if (status == 507)
        return "resource_exhausted";
    if (status == 501)
        return "unimplemented";
    if (status == 504)
        return "deadline_exceeded";
    return "internal";
}

int connect_code_http_status(const char *code)
{
    static const struct {
        const char *code;
        int status;
    } table[] = {
        {"canceled", 499},
        {"unknown", 500},
        {"invalid_argument", 400},
        {"deadline_exceeded", 504},
        {"not_found", 404},
        {"already_exists", 409},
        {"permission_denied", 403},
        {"resource_exhausted", 429},
        {"failed_precondition", 400},
        {"aborted", 409},
        {"out_of_range", 400},
        {"unimplemented", 501},
        {"internal", 500},
        {"unavailable", 503},
        {"data_loss", 500},
        {"unauthenticated", 401},
    };
    for (size_t i = 0; i < ELEMENTSOF(table); i++)
        if (strcmp(table[i].code, code) == 0)
            return table[i].status;
    return 500;
}

bool connect_is_stream(const struct http_request *req)
{
    const char *ct = http_header_get(req, "Content-Type");
    return ct && strncasecmp(ct, "application/connect+json", 24) == 0;
}

int connect_decode_request(const struct http_request *req, const char *body, size_t len, json_t **ret,
                           sbx_error *err)
{
    if (connect_is_stream(req)) {
        if (len < 5)
            return sbx_error_set(err, -EINVAL, "streaming request: expected one 5-byte envelope header");
        const uint8_t *b = (const uint8_t *)body;
        uint32_t n = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
        if (b[0] & CONNECT_FLAG_COMPRESSED)
            return sbx_error_set(err, -EINVAL, "compressed envelopes are not supported");
        if (b[0] != 0)
            return sbx_error_set(err, -EINVAL, "unexpected envelope flags 0x%02x", b[0]);
        if ((size_t)n != len - 5)
            return sbx_error_set(err, -EINVAL, "envelope length %u does not match the body's %zu bytes", n,
                                 len - 5);
        body += 5;
        len -= 5;
    } else {
        const char *ct = http_header_get(req, "Content-Type");
        if (ct && strncasecmp(ct, "application/json", 16) != 0)
            return sbx_error_set(err, -EINVAL, "unsupported content type `%s`: use application/json", ct);
    }
    if (len == 0) {
        *ret = json_object();
        return 0;
    }
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return sbx_error_set(err, -EINVAL, "malformed JSON message: %s", je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return sbx_error_set(err, -EINVAL, "the message must be a JSON object");
    }
    *ret = j;
    return 0;
}

int64_t connect_timeout_ms(const struct http_request *req)
{
    const char *v = http_header_get(req, "Connect-Timeout-Ms");
    if (!v || !*v || strlen(v) > 10)
        return 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    return *end || n < 0 ? 0 : (int64_t)n;
}

void connect_reply(struct http_request *req, json_t *msg)
{
    if (!msg)
        msg = json_object();
    _cleanup_free_ char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    http_respond(req, 200, "application/json", text, strlen(text));
}

void connect_reply_error(struct http_request *req, const char *code, const char *message)
{
    json_t *o = json_pack("{s:s, s:s}", "code", code, "message", message ? message : "");
    _cleanup_free_ char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    http_respond(req, connect_code_http_status(code), "application/json", text, strlen(text));
}

void connect_reply_sbx_error(struct http_request *req, const sbx_error *err)
{
    connect_reply_error(req, connect_code_for(err), err->msg);
}

void connect_stream_begin(struct http_request *req)
{
    http_response_begin(req, 200, "application/connect+json", -1);
}

static int write_envelope(struct http_request *req, uint8_t flags, json_t *msg)
{
    _cleanup_free_ char *text = json_dumps(msg, JSON_COMPACT);
    size_t n = strlen(text);
    uint8_t hdr[5] = {flags, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    http_response_write(req, hdr, sizeof(hdr));
    return http_response_write(req, text, n);
}

int connect_stream_send(struct http_request *req, json_t *msg)
{
    int r = write_envelope(req, 0, msg);
    json_decref(msg);
    return r;
}

void connect_stream_end(struct http_request *req, const char *code, const char *message)
{
    json_t *end = code ? json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message ? message : "")
                       : json_object();
    write_envelope(req, CONNECT_FLAG_END_STREAM, end);
    json_decref(end);
    http_response_end(req);
}

void connect_stream_error(struct http_request *req, const char *code, const char *message)
{
    connect_stream_begin(req);
    connect_stream_end(req, code, message);
}
