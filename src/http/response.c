/* Responses: complete and streamed bodies, chunked encoding, JSON and error helpers, SSE. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/cleanup.h"
#include "http/http_internal.h"

const char *http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

/* "Date: ..." formatted once per second (time() is a vDSO call, no syscall). */
static const char *date_line(void)
{
    static char buf[64];
    static time_t last;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        last = now;
    }
    return buf;
}

void http_response_header(struct http_request *req, const char *name, const char *value)
{
    if (req->resp_state != RESP_NONE)
        return;
    /* No header injection: CR and LF become spaces. */
    size_t start = req->resp_headers.len;
    sbx_buf_appendf(&req->resp_headers, "%s: %s\r\n", name, value);
    for (size_t i = start; i < req->resp_headers.len - 2; i++)
        if (req->resp_headers.base[i] == '\r' || req->resp_headers.base[i] == '\n')
            req->resp_headers.base[i] = ' ';
}

static void begin(struct http_request *req, int status, const char *content_type, int64_t content_length)
{
    struct http_conn *c = req->conn;
    bool no_body = status < 200 || status == 204 || status == 304;
    /* An unread body the client will not send (it waits for 100 Continue), or an upgrade we did not take,
     * leaves the connection unusable afterwards. */
    if ((!req->message_done && req->expect_continue && !req->continue_sent && req->body_mode == BODY_NONE) ||
        req->upgrade || c->closing)
        req->keep_alive = false;
    /* An answer before an unread body that is too big to discard (or of unknown length): the connection
     * will be closed after it, so say so rather than leave the client to find out on its next request. */
    if (!req->message_done && req->has_body && req->body_mode == BODY_NONE &&
        (req->content_length < 0 || (uint64_t)req->content_length > c->srv->cfg.discard_body_max))
        req->keep_alive = false;
    if (!no_body && content_length < 0 && req->version < 11)
        req->keep_alive = false; /* close-delimited */

    char head[512];
    int n =
        snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%s", status, http_status_reason(status), date_line());
    if (content_type)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Type: %.200s\r\n", content_type);
    if (!no_body) {
        if (content_length >= 0)
            n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %lld\r\n",
                          (long long)content_length);
        else if (req->version >= 11)
            n += snprintf(head + n, sizeof(head) - (size_t)n, "Transfer-Encoding: chunked\r\n");
    }
    if (!req->keep_alive)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Connection: close\r\n");
    else if (req->version < 11)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Connection: keep-alive\r\n");
    assert((size_t)n < sizeof(head));
    http_conn_queue(c, head, (size_t)n);
    if (req->resp_headers.len)
        http_conn_queue(c, req->resp_headers.base, req->resp_headers.len);
    http_conn_queue(c, "\r\n", 2);

    req->status = status;
    req->resp_no_body = no_body || req->head;
    req->resp_chunked = !no_body && content_length < 0 && req->version >= 11;
    req->resp_remaining = no_body ? -1 : content_length;
    req->resp_state = RESP_STREAMING;
}

void http_response_begin(struct http_request *req, int status, const char *content_type,
                         int64_t content_length)
{
    if (req->resp_state != RESP_NONE)
        return;
    begin(req, status, content_type, content_length);
}

int http_response_write(struct http_request *req, const void *data, size_t len)
{
    struct http_conn *c = req->conn;
    if (c->dead || req->abort_called)
        return 1;
    if (req->resp_state != RESP_STREAMING || req->resp_no_body || len == 0)
        return c->out_bytes > c->srv->cfg.output_soft_limit;
    if (req->resp_remaining >= 0) {
        if ((uint64_t)len > (uint64_t)req->resp_remaining)
            len = (size_t)req->resp_remaining; /* more than promised: the excess is dropped */
        req->resp_remaining -= (int64_t)len;
    }
    bool over;
    if (req->resp_chunked) {
        char hdr[24];
        int n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
        http_conn_queue(c, hdr, (size_t)n);
        http_conn_queue(c, data, len);
        over = http_conn_queue(c, "\r\n", 2);
    } else
        over = http_conn_queue(c, data, len);
    if (over)
        c->want_drain = true;
    return over ? 1 : 0;
}

void http_response_end(struct http_request *req)
{
    struct http_conn *c = req->conn;
    if (req->resp_state != RESP_STREAMING)
        return;
    if (req->resp_chunked && !req->resp_no_body)
        http_conn_queue(c, "0\r\n\r\n", 5);
    if ((req->resp_remaining > 0 && !req->resp_no_body) || !req->keep_alive)
        c->closing = true;
    req->resp_state = RESP_DONE;
    http_request_completed(req);
}

void http_response_abort(struct http_request *req)
{
    struct http_conn *c = req->conn;
    if (req->resp_state == RESP_DONE && req->user_completed)
        return;
    c->closing = true;
    req->resp_state = RESP_DONE;
    http_request_completed(req);
}

size_t http_response_queued(const struct http_request *req)
{
    return req->conn->out_bytes;
}

void http_respond(struct http_request *req, int status, const char *content_type, const void *body,
                  size_t len)
{
    if (req->resp_state != RESP_NONE)
        return;
    if (!content_type && len > 0)
        content_type = "application/octet-stream";
    begin(req, status, content_type, (int64_t)len);
    http_response_write(req, body, len);
    http_response_end(req);
}

void http_respond_json(struct http_request *req, int status, json_t *body)
{
    if (!body) {
        http_respond(req, status, NULL, NULL, 0);
        return;
    }
    _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        http_respond_error(req, 500, "internal", "could not encode the response");
        return;
    }
    http_respond(req, status, "application/json", text, strlen(text));
}

void http_respond_error(struct http_request *req, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (req->resp_state == RESP_STREAMING) {
        http_response_abort(req); /* too late for a status: the client sees a truncated response */
        return;
    }
    json_t *m = json_string(msg);
    if (!m) {
        /* Not UTF-8 (a client-supplied path, say): keep it ASCII. */
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
        m = json_string(msg);
    }
    code = code ? code : "internal";
    json_t *body = json_pack("{s:{s:s, s:o}}", "error", "code", code, "message", m);
    snprintf(req->error_code, sizeof(req->error_code), "%s", code); /* for the observer */
    http_respond_json(req, status, body);
}

/* --- SSE ----------------------------------------------------------------------------------------- */

void http_sse_begin(struct http_request *req)
{
    http_response_header(req, "Cache-Control", "no-cache");
    http_response_begin(req, 200, "text/event-stream", -1);
}

int http_sse_send(struct http_request *req, const char *event, const char *data, size_t len)
{
    _cleanup_(sbx_buf_done) struct sbx_buf b = SBX_BUF_INIT;
    if (event)
        sbx_buf_appendf(&b, "event: %s\n", event);
    /* Each line break (LF, CR or CRLF) starts a new data: line; the client joins them with LF. */
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < len && data[j] != '\n' && data[j] != '\r')
            j++;
        sbx_buf_append(&b, "data: ", 6);
        sbx_buf_append(&b, data + i, j - i);
        sbx_buf_append(&b, "\n", 1);
        if (j >= len)
            break;
        if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n')
            j++;
        i = j + 1;
    }
    sbx_buf_append(&b, "\n", 1);
    return http_response_write(req, b.base, b.len);
}

int http_sse_comment(struct http_request *req, const char *text)
{
    _cleanup_(sbx_buf_done) struct sbx_buf b = SBX_BUF_INIT;
    sbx_buf_appendf(&b, ": %s\n\n", text);
    return http_response_write(req, b.base, b.len);
}

static void on_sse_timer(struct loop_timer *t)
{
    struct http_request *req = container_of(t, struct http_request, sse_timer);
    if (req->resp_state != RESP_STREAMING || req->conn->dead)
        return;
    http_sse_comment(req, "ping");
    loop_timer_start(req->conn->srv->loop, &req->sse_timer, req->sse_interval, on_sse_timer);
}

void http_sse_keepalive(struct http_request *req, usec_t interval)
{
    struct loop *loop = req->conn->srv->loop;
    req->sse_interval = interval;
    if (!interval)
        loop_timer_stop(loop, &req->sse_timer);
    else
        loop_timer_start(loop, &req->sse_timer, interval, on_sse_timer);
}
