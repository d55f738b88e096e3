/* The HTTP/1.1 server: listener, connections, llhttp glue and request body handling.
 *
 * Processing model: every state change (bytes read, handler answered, body mode chosen, body resumed) ends in
 * conn_process(), which runs from the loop only (a read callback, or the connection's deferred call queued by
 * http_conn_kick). User-facing http_* calls only set state and queue output, so handlers never re-enter the
 * parser and nothing is freed under them. One request per connection is handled at a time: llhttp is paused
 * after each message and resumed when its response is complete (pipelining). */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "http/http_internal.h"

#define READ_CHUNK (64 * 1024)
#define OUTBLOCK_MIN (16 * 1024)
#define LINGER_USEC (2 * USEC_PER_SEC)
#define WRITEV_MAX 64

static void conn_process(struct http_conn *c);
static void conn_destroy(struct http_conn *c);
static void conn_update(struct http_conn *c);
static void request_free(struct http_request *req);

/* --- arena ------------------------------------------------------------------------------------- */

void *http_request_alloc(struct http_request *req, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct arena_block *b = req->arena;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 4096 ? size : 4096;
        b = xmalloc(sizeof(*b) + cap);
        b->cap = cap;
        b->used = 0;
        b->next = req->arena;
        req->arena = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

char *http_request_strdup(struct http_request *req, const char *s)
{
    size_t n = strlen(s);
    char *p = http_request_alloc(req, n + 1);
    memcpy(p, s, n + 1);
    return p;
}

/* --- output queue -------------------------------------------------------------------------------- */

bool http_conn_queue(struct http_conn *c, const void *data, size_t len)
{
    if (c->dead || len == 0)
        return c->dead || c->out_bytes > c->srv->cfg.output_soft_limit;
    struct outblock *t = c->out_tail;
    if (t && t->cap - (t->off + t->len) >= len) {
        memcpy(t->data + t->off + t->len, data, len);
        t->len += len;
    } else {
        size_t cap = len > OUTBLOCK_MIN ? len : OUTBLOCK_MIN;
        struct outblock *b = xmalloc(sizeof(*b) + cap);
        b->next = NULL;
        b->off = 0;
        b->len = len;
        b->cap = cap;
        memcpy(b->data, data, len);
        if (t)
            t->next = b;
        else
            c->out_head = b;
        c->out_tail = b;
    }
    c->out_bytes += len;
    if (c->out_bytes > c->srv->cfg.output_hard_limit) {
        http_conn_fail(c);
        return true;
    }
    http_conn_kick(c);
    return c->out_bytes > c->srv->cfg.output_soft_limit;
}

static void out_free(struct http_conn *c)
{
    while (c->out_head) {
        struct outblock *b = c->out_head;
        c->out_head = b->next;
        free(b);
    }
    c->out_tail = NULL;
    c->out_bytes = 0;
}

/* Writes as much as the socket takes. Returns 0, or -errno when the connection failed. */
static int conn_flush(struct http_conn *c)
{
    while (c->out_head) {
        struct iovec iov[WRITEV_MAX];
        int n = 0;
        for (struct outblock *b = c->out_head; b && n < WRITEV_MAX; b = b->next)
            iov[n++] = (struct iovec){b->data + b->off, b->len};
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                c->write_blocked = true;
                return 0;
            }
            return -errno;
        }
        c->last_progress = loop_now(c->srv->loop);
        c->out_bytes -= (size_t)w;
        while (w > 0) {
            struct outblock *b = c->out_head;
            if ((size_t)w >= b->len) {
                w -= (ssize_t)b->len;
                c->out_head = b->next;
                free(b);
            } else {
                b->off += (size_t)w;
                b->len -= (size_t)w;
                w = 0;
            }
        }
        if (!c->out_head)
            c->out_tail = NULL;
    }
    c->write_blocked = false;
    return 0;
}

/* --- connection lifetime -------------------------------------------------------------------------- */

static void on_conn_defer(struct loop_defer *d)
{
    struct http_conn *c = container_of(d, struct http_conn, defer);
    conn_process(c);
}

void http_conn_kick(struct http_conn *c)
{
    if (c->in_process)
        c->again = true;
    else
        loop_defer(c->srv->loop, &c->defer, on_conn_defer);
}

void http_conn_fail(struct http_conn *c)
{
    c->dead = true;
    http_conn_kick(c);
}

void http_request_observe(struct http_request *req, int status, const char *error_code)
{
    struct http_server *srv = req->conn->srv;
    if (req->observed)
        return;
    req->observed = true;
    if (!srv->observer)
        return;
    usec_t now = now_usec(CLOCK_MONOTONIC);
    srv->observer(req, status, error_code, now > req->t0 ? now - req->t0 : 0, srv->observer_ud);
}

/* Calls the request's on_abort once if the handler still owns it. */
static void request_abort(struct http_request *req)
{
    if (!req->handler_called || req->user_completed || req->abort_called)
        return;
    http_request_observe(req, req->resp_state == RESP_STREAMING ? req->status : 0, NULL);
    req->abort_called = true;
    req->on_drain = NULL;
    if (req->on_abort)
        req->on_abort(req, req->abort_ud);
}

static void conn_destroy(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    loop_defer_cancel(srv->loop, &c->defer);
    loop_io_stop(srv->loop, &c->io);
    loop_timer_stop(srv->loop, &c->timer);
    if (c->req) {
        request_abort(c->req);
        request_free(c->req);
        c->req = NULL;
    }
    if (c->ws) {
        http_ws_destroy(c->ws, c->server_shutdown ? 1001 : 1006);
        c->ws = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    out_free(c);
    sbx_buf_done(&c->in);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    free(c);
}

/* --- server-generated errors --------------------------------------------------------------------- */

static void append_json_string(struct sbx_buf *b, const char *s)
{
    sbx_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sbx_buf_appendf(b, "\\%c", *p);
        else if (*p < 0x20)
            sbx_buf_appendf(b, "\\u%04x", *p);
        else
            sbx_buf_append(b, p, 1);
    }
    sbx_buf_append(b, "\"", 1);
}

/* Answers an error on the connection's behalf and closes it afterwards. If the handler owns the request it
 * gets on_abort (from the loop). If a response was already begun the connection just fails. */
static void conn_error(struct http_conn *c, int status, const char *code, const char *msg)
{
    struct http_request *req = c->req;
    if (req && req->resp_state != RESP_NONE) {
        if (req->resp_state == RESP_STREAMING)
            http_conn_fail(c);
        else
            c->closing = true;
        return;
    }
    _cleanup_(sbx_buf_done) struct sbx_buf body = SBX_BUF_INIT;
    sbx_buf_append(&body, "{\"error\":{\"code\":", 17);
    append_json_string(&body, code);
    sbx_buf_append(&body, ",\"message\":", 11);
    append_json_string(&body, msg);
    sbx_buf_append(&body, "}}\n", 3);
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, http_status_reason(status), body.len);
    http_conn_queue(c, head, (size_t)n);
    if (!req || !req->head)
        http_conn_queue(c, body.base, body.len);
    c->closing = true;
    if (req) {
        req->resp_state = RESP_DONE;
        req->failed = true;
        http_request_observe(req, status, code);
    }
}

/* --- llhttp callbacks ------------------------------------------------------------------------------ */

static struct http_conn *parser_conn(llhttp_t *p)
{
    return p->data;
}

/* Error flags carried out of callbacks through HPE_USER. */
enum { FAIL_NONE, FAIL_431, FAIL_413, FAIL_DISCARD };
static int fail_reason;

static int span_append(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = parser_conn(p);
    struct http_request *req = c->req;
    if (req->hbuf.len + len > c->srv->cfg.max_header_bytes) {
        fail_reason = FAIL_431;
        return HPE_USER;
    }
    sbx_buf_append(&req->hbuf, at, len);
    return 0;
}

static int span_complete(llhttp_t *p)
{
    struct http_request *req = parser_conn(p)->req;
    sbx_buf_append(&req->hbuf, "", 1);
    req->mark = (uint32_t)req->hbuf.len;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    return span_append(p, at, len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    return span_append(p, at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    struct http_conn *c = parser_conn(p);
    struct http_request *req = c->req;
    if (req->n_headers >= c->srv->cfg.max_headers) {
        fail_reason = FAIL_431;
        return HPE_USER;
    }
    if (req->n_headers == req->hoffs_cap) {
        req->hoffs_cap = req->hoffs_cap ? req->hoffs_cap * 2 : 16;
        req->hoffs = xrealloc(req->hoffs, req->hoffs_cap * sizeof(*req->hoffs));
    }
    req->hoffs[req->n_headers].name = req->mark; /* the name started where the previous piece ended */
    span_complete(p);
    req->hoffs[req->n_headers].value = req->mark;
    req->n_headers++;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    return span_append(p, at, len);
}

static int on_span_complete(llhttp_t *p)
{
    return span_complete(p);
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_conn *c = parser_conn(p);
    struct http_request *req = c->req;
    req->headers_done = true;
    req->version = p->http_major == 1 && p->http_minor == 0 ? 10 : 11;
    req->keep_alive = llhttp_should_keep_alive(p);
    req->upgrade = p->upgrade;
    if (p->flags & F_CHUNKED) {
        req->content_length = -1;
        req->has_body = true;
    } else if (p->flags & F_CONTENT_LENGTH) {
        req->content_length = (int64_t)p->content_length;
        req->has_body = p->content_length > 0;
    }
    req->method_str = llhttp_method_name((llhttp_method_t)p->method);
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *c = parser_conn(p);
    struct http_request *req = c->req;
    c->last_progress = loop_now(c->srv->loop);
    switch (req->body_mode) {
    case BODY_READ:
        if (req->body.len + len > req->body_max) {
            fail_reason = FAIL_413;
            return HPE_USER;
        }
        sbx_buf_append(&req->body, at, len);
        return 0;
    case BODY_STREAM:
        if (req->chunk_cb(req, at, len, req->body_ud) > 0)
            req->body_paused = true;
        /* The handler may have answered (and switched to discard) or paused. */
        return req->body_mode == BODY_STREAM && req->body_paused ? HPE_PAUSED : 0;
    case BODY_DISCARD:
        req->discarded += len;
        if (req->discarded > c->srv->cfg.discard_body_max) {
            fail_reason = FAIL_DISCARD;
            return HPE_USER;
        }
        return 0;
    case BODY_NONE:
    default:
        assert(!"body bytes without a body mode");
        return HPE_USER;
    }
}

static int on_message_complete(llhttp_t *p)
{
    parser_conn(p)->req->message_done = true;
    return HPE_PAUSED;
}

static void settings_init(llhttp_settings_t *s)
{
    llhttp_settings_init(s);
    s->on_url = on_url;
    s->on_url_complete = on_span_complete;
    s->on_header_field = on_header_field;
    s->on_header_field_complete = on_header_field_complete;
    s->on_header_value = on_header_value;
    s->on_header_value_complete = on_span_complete;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_message_complete = on_message_complete;
}

/* --- requests ------------------------------------------------------------------------------------ */

static struct http_request *request_new(struct http_conn *c)
{
    struct http_request *req = xcalloc(1, sizeof(*req));
    req->conn = c;
    req->started = loop_now(c->srv->loop);
    req->t0 = now_usec(CLOCK_MONOTONIC);
    req->method = HTTP_METHOD_OTHER; /* until the headers are parsed */
    req->resp_remaining = -1;
    memcpy(req->remote, c->remote, sizeof(req->remote));
    return req;
}

static void request_free(struct http_request *req)
{
    if (!req)
        return;
    if (req->free_fn)
        req->free_fn(req->userdata);
    if (req->sse_timer.active)
        loop_timer_stop(req->conn->srv->loop, &req->sse_timer);
    while (req->arena) {
        struct arena_block *b = req->arena;
        req->arena = b->next;
        free(b);
    }
    sbx_buf_done(&req->hbuf);
    sbx_buf_done(&req->body);
    sbx_buf_done(&req->resp_headers);
    free(req->hoffs);
    free(req->hnames);
    free(req->hvalues);
    free(req);
}

void http_request_destroy(struct http_request *req)
{
    request_free(req);
}

static enum http_method method_id(const char *m)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        if (strcmp(m, names[i]) == 0)
            return (enum http_method)i;
    return HTTP_METHOD_OTHER;
}

/* Resolves the parsed pieces into pointers. Returns 0, or an HTTP status to answer with (msg set). */
static int request_finish_headers(struct http_request *req, const char **msg)
{
    const char *base = req->hbuf.base ? req->hbuf.base : "";
    req->hnames = xcalloc(req->n_headers + 1, sizeof(char *));
    req->hvalues = xcalloc(req->n_headers + 1, sizeof(char *));
    for (size_t i = 0; i < req->n_headers; i++) {
        req->hnames[i] = base + req->hoffs[i].name;
        req->hvalues[i] = base + req->hoffs[i].value;
    }
    req->target = base;
    req->method = method_id(req->method_str);
    req->head = req->method == HTTP_METHOD_HEAD;

    const char *t = req->target;
    if (t[0] != '/') {
        *msg = "the request target must be an absolute path";
        return 400;
    }
    const char *q = strchr(t, '?');
    size_t plen = q ? (size_t)(q - t) : strlen(t);
    const char *hash = memchr(t, '#', plen);
    if (hash)
        plen = (size_t)(hash - t);
    char *path = http_request_alloc(req, plen + 1);
    if (http_percent_decode(t, plen, path, false) < 0) {
        *msg = "bad percent-encoding in the path";
        return 400;
    }
    req->path = path;
    req->query = q ? q + 1 : "";

    const char *expect = http_header_get(req, "Expect");
    if (expect) {
        if (strcasecmp(expect, "100-continue") != 0) {
            *msg = "unsupported Expect value";
            return 417;
        }
        req->expect_continue = req->version >= 11;
    }
    return 0;
}

static void send_continue(struct http_request *req)
{
    if (!req->expect_continue || req->continue_sent || req->message_done || req->resp_state != RESP_NONE)
        return;
    static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
    req->continue_sent = true;
    http_conn_queue(req->conn, msg, sizeof(msg) - 1);
}

void http_request_read_body(struct http_request *req, size_t max_bytes, http_body_cb cb, void *userdata)
{
    assert(req->body_mode == BODY_NONE && req->resp_state == RESP_NONE);
    req->body_mode = BODY_READ;
    req->body_max = max_bytes;
    req->body_cb = cb;
    req->body_ud = userdata;
    if (req->content_length > 0 && (uint64_t)req->content_length > max_bytes) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body of %lld bytes is over the limit of %zu",
                 (long long)req->content_length, max_bytes);
        conn_error(req->conn, 413, "too_large", msg);
        http_conn_kick(req->conn);
        return;
    }
    send_continue(req);
    http_conn_kick(req->conn);
}

void http_request_stream_body(struct http_request *req, http_chunk_cb chunk_cb, http_end_cb end_cb,
                              void *userdata)
{
    assert(req->body_mode == BODY_NONE && req->resp_state == RESP_NONE);
    req->body_mode = BODY_STREAM;
    req->chunk_cb = chunk_cb;
    req->end_cb = end_cb;
    req->body_ud = userdata;
    send_continue(req);
    http_conn_kick(req->conn);
}

void http_request_pause_body(struct http_request *req)
{
    req->body_paused = true;
}

void http_request_resume_body(struct http_request *req)
{
    if (!req->body_paused)
        return;
    req->body_paused = false;
    http_conn_kick(req->conn);
}

/* Called by the response code when the handler completed its response. */
void http_request_completed(struct http_request *req)
{
    http_request_observe(req, req->status, req->error_code[0] ? req->error_code : NULL);
    req->user_completed = true;
    req->on_drain = NULL;
    req->on_abort = NULL;
    if (!req->message_done) {
        if (req->expect_continue && !req->continue_sent && req->body_mode == BODY_NONE)
            req->conn->closing = true; /* the client waits for our go; it will not send the body */
        else if (req->body_mode == BODY_NONE || req->body_mode == BODY_READ)
            req->body_mode = BODY_DISCARD;
        /* A streamed body keeps flowing to the handler's chunk callback until its end. */
    }
    http_conn_kick(req->conn);
}

int http_request_take_over(struct http_request *req, int status, struct http_takeover *ret)
{
    struct http_conn *c = req->conn;
    if (!req->handler_called || req->user_completed || req->abort_called || req->body_mode != BODY_NONE ||
        req->resp_state != RESP_NONE || c->ws || c->dead || c->fd < 0)
        return -EBUSY;
    http_request_observe(req, status, NULL);
    req->user_completed = true;
    req->on_abort = NULL;
    req->on_drain = NULL;
    loop_io_stop(c->srv->loop, &c->io);
    loop_timer_stop(c->srv->loop, &c->timer);
    ret->fd = c->fd;
    c->fd = -1;
    ret->in = c->in;
    c->in = (struct sbx_buf)SBX_BUF_INIT;
    ret->out = (struct sbx_buf)SBX_BUF_INIT;
    for (struct outblock *b = c->out_head; b; b = b->next)
        sbx_buf_append(&ret->out, b->data + b->off, b->len);
    out_free(c);
    /* Destroyed from the loop (or right after the handler returns): the request is freed with it. */
    http_conn_fail(c);
    return 0;
}

/* --- processing ---------------------------------------------------------------------------------- */

static bool parser_may_run(const struct http_request *req)
{
    if (!req->headers_done)
        return true;
    if (!req->handler_called || req->message_done)
        return false;
    switch (req->body_mode) {
    case BODY_NONE:
        return false;
    case BODY_STREAM:
        return !req->body_paused;
    case BODY_READ:
    case BODY_DISCARD:
    default:
        return true;
    }
}

/* Feeds buffered input to llhttp. Returns true when something changed. */
static bool conn_parse(struct http_conn *c)
{
    struct http_request *req = c->req;
    static const char empty[1];
    const char *data = c->in.len ? c->in.base : empty;
    size_t len = c->in.len;
    bool was_headers = req->headers_done, was_done = req->message_done;
    fail_reason = FAIL_NONE;
    enum llhttp_errno e = llhttp_execute(&c->parser, data, len);
    size_t consumed = len;
    if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
        consumed = (size_t)(llhttp_get_error_pos(&c->parser) - data);
        if (e == HPE_PAUSED)
            llhttp_resume(&c->parser);
        else
            c->closing = true; /* upgrade that was not accepted: the rest is another protocol */
    } else if (e != HPE_OK) {
        consumed = len;
        /* A data callback's error comes back as HPE_USER, a notification callback's as its own
         * HPE_CB_* code: fail_reason says which limit tripped either way. */
        if (fail_reason == FAIL_431)
            conn_error(c, 431, "headers_too_large", "request line and headers are over the limit");
        else if (fail_reason == FAIL_413) {
            char msg[96];
            snprintf(msg, sizeof(msg), "request body is over the limit of %zu bytes", req->body_max);
            conn_error(c, 413, "too_large", msg);
        } else if (fail_reason == FAIL_DISCARD)
            c->closing = true;
        else
            conn_error(c, 400, "bad_request", llhttp_get_error_reason(&c->parser) ?: llhttp_errno_name(e));
        c->in.len = 0;
        return true;
    }
    sbx_buf_consume(&c->in, consumed);
    return consumed > 0 || req->headers_done != was_headers || req->message_done != was_done || e != HPE_OK;
}

static void call_handler(struct http_conn *c)
{
    struct http_request *req = c->req;
    const char *msg = NULL;
    int status = request_finish_headers(req, &msg);
    req->handler_called = true;
    if (status) {
        req->user_completed = true; /* the handler never saw it */
        conn_error(c, status, status == 417 ? "expectation_failed" : "bad_request", msg);
        return;
    }
    c->srv->handler(req, c->srv->userdata);
}

static void conn_process_http(struct http_conn *c)
{
    for (int guard = 0; guard < 1000 && !c->dead && !c->ws; guard++) {
        struct http_request *req = c->req;
        if (!req) {
            if (c->in.len == 0 || c->closing)
                return;
            c->req = req = request_new(c);
        }
        /* Server-completed requests (errors) are torn down as soon as the server answered. */
        if (req->failed) {
            if (!req->abort_called && req->handler_called && !req->user_completed) {
                request_abort(req);
            }
            c->in.len = 0;
            c->closing = true;
            return;
        }
        if (req->resp_state == RESP_DONE && (req->message_done || c->closing)) {
            if (c->closing)
                return; /* the request is freed with the connection */
            request_free(req);
            c->req = NULL;
            continue;
        }
        if (req->headers_done && !req->handler_called) {
            call_handler(c);
            continue;
        }
        if (req->message_done && !req->body_delivered && req->handler_called) {
            req->body_delivered = true;
            if (req->body_mode == BODY_READ && !req->user_completed) {
                sbx_buf_cstr(&req->body);
                req->body_cb(req, req->body.base ? req->body.base : "", req->body.len, req->body_ud);
                continue;
            }
            if (req->body_mode == BODY_STREAM && req->end_cb) {
                req->end_cb(req, req->body_ud);
                continue;
            }
        }
        if (parser_may_run(req) && (c->in.len > 0 || req->headers_done)) {
            if (conn_parse(c))
                continue;
        }
        return;
    }
}

static void conn_process(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    if (c->in_process) {
        c->again = true;
        return;
    }
    c->in_process = true;
    do {
        c->again = false;
        if (c->dead)
            break;
        if (c->ws)
            http_ws_process(c);
        else if (!c->lingering)
            conn_process_http(c);
    } while (c->again && !c->dead);
    c->in_process = false;

    if (!c->dead && c->out_head && !c->write_blocked && conn_flush(c) < 0)
        c->dead = true;
    if (c->dead)
        return conn_destroy(c);

    if (c->want_drain && c->out_bytes <= srv->cfg.output_soft_limit) {
        c->want_drain = false;
        if (c->ws) {
            if (c->ws->cbs->on_drain && !c->ws->user_closed)
                c->ws->cbs->on_drain(c->ws, c->ws->userdata);
        } else if (c->req && c->req->handler_called && !c->req->user_completed && !c->req->abort_called &&
                   c->req->on_drain) {
            c->req->on_drain(c->req, c->req->drain_ud);
        }
        /* Anything the callback did was deferred through http_conn_kick. */
    }

    if (c->eof && !c->ws && !c->lingering && !c->closing) {
        /* The client half-closed or went away: finish what is answered, abort what is not. */
        struct http_request *req = c->req;
        if (!req || req->resp_state == RESP_DONE)
            c->closing = true;
        else {
            c->dead = true;
            return conn_destroy(c);
        }
    }
    if (c->closing && !c->out_head && !c->lingering) {
        if (c->eof || c->ws) {
            c->dead = true;
            return conn_destroy(c);
        }
        /* Lingering close: shut our side and drain what the client still sends, so that an unread request
         * body does not make the kernel answer with a reset that destroys the response in flight. */
        (void)shutdown(c->fd, SHUT_WR);
        c->lingering = true;
        c->in.len = 0;
        c->last_progress = loop_now(srv->loop);
    }
    conn_update(c);
}

static void on_conn_timer(struct loop_timer *t)
{
    struct http_conn *c = container_of(t, struct http_conn, timer);
    struct http_request *req = c->req;
    if (!c->lingering && !c->ws && req && !req->headers_done && (req->hbuf.len > 0 || c->in.len > 0) &&
        !c->out_head) {
        conn_error(c, 408, "request_timeout", "timed out reading the request headers");
        c->in.len = 0;
    } else
        c->dead = true;
    conn_process(c);
}

static void conn_update(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    struct http_request *req = c->req;
    uint32_t ev = 0;
    usec_t deadline = 0;
    if (c->lingering) {
        ev = EPOLLIN | EPOLLRDHUP;
        deadline = c->last_progress + LINGER_USEC;
    } else {
        bool want_read;
        if (c->closing || c->eof)
            want_read = false;
        else if (c->ws)
            want_read = !c->ws->paused;
        else
            want_read = !req || parser_may_run(req);
        if (want_read)
            ev |= EPOLLIN;
        if (!c->eof)
            ev |= EPOLLRDHUP;
        if (c->write_blocked)
            ev |= EPOLLOUT;

        if (c->out_head)
            deadline = c->last_progress + srv->cfg.idle_timeout;
        else if (c->ws)
            deadline = c->ws->user_closed ? c->last_progress + 5 * USEC_PER_SEC : 0;
        else if (!req)
            deadline = c->last_progress + srv->cfg.idle_timeout;
        else if (!req->headers_done)
            deadline = req->started + srv->cfg.header_timeout;
        else if (want_read)
            deadline = c->last_progress + srv->cfg.idle_timeout;
    }
    if (loop_io_update(srv->loop, &c->io, ev) < 0) {
        c->dead = true;
        http_conn_kick(c);
        return;
    }
    if (!deadline)
        loop_timer_stop(srv->loop, &c->timer);
    else if (!c->timer.active || c->timer.when != deadline) {
        usec_t now = loop_now(srv->loop);
        loop_timer_start(srv->loop, &c->timer, deadline > now ? deadline - now : 0, on_conn_timer);
        c->timer.when = deadline;
    }
}

static void conn_read(struct http_conn *c, uint32_t revents)
{
    if (c->lingering) {
        char buf[16384];
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            c->dead = true;
        return;
    }
    if (!(c->io.events & EPOLLIN)) {
        /* We are not reading (the handler is busy with this request) and the peer hung up. */
        if (c->req && c->req->resp_state == RESP_DONE)
            c->eof = true;
        else
            c->dead = true;
        return;
    }
    char *p = sbx_buf_reserve(&c->in, READ_CHUNK);
    ssize_t n = read(c->fd, p, READ_CHUNK);
    if (n > 0) {
        c->in.len += (size_t)n;
        c->last_progress = loop_now(c->srv->loop);
    } else if (n == 0)
        c->eof = true;
    else if (errno != EAGAIN && errno != EINTR)
        c->dead = true;
}

static void on_conn_io(struct loop_io *io, uint32_t revents)
{
    struct http_conn *c = container_of(io, struct http_conn, io);
    if (revents & EPOLLOUT)
        c->write_blocked = false;
    if (revents & EPOLLERR)
        c->dead = true;
    else if (revents & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
        conn_read(c, revents);
    conn_process(c); /* may free c */
}

/* --- listener ------------------------------------------------------------------------------------ */

static void format_remote(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(buf, size, "%s:%u", ip, ntohs(s4->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, size, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else
        snprintf(buf, size, "unix");
}

static void on_accept(struct loop_io *io, uint32_t revents)
{
    struct http_server *srv = container_of(io, struct http_server, io);
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(srv->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break;
        }
        if (srv->n_conns >= srv->cfg.max_connections) {
            close(fd);
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct http_conn *c = xcalloc(1, sizeof(*c));
        c->srv = srv;
        c->fd = fd;
        format_remote(&ss, c->remote, sizeof(c->remote));
        llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
        c->parser.data = c;
        c->last_progress = loop_now(srv->loop);
        if (loop_io_start(srv->loop, &c->io, fd, EPOLLIN | EPOLLRDHUP, on_conn_io) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        srv->n_conns++;
        conn_update(c);
    }
}

int http_server_new(struct loop *loop, const char *host, int port, const struct http_server_config *cfg,
                    http_handler_fn handler, void *userdata, struct http_server **ret, sbx_error *err)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    bool dual = false;
    if (port < 0 || port > 65535)
        return sbx_error_set(err, -EINVAL, "invalid port %d", port);
    if (!host || !*host || strcmp(host, "*") == 0) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_any;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*s6);
        dual = true;
    } else {
        char h[INET6_ADDRSTRLEN + 2];
        snprintf(h, sizeof(h), "%s", strcmp(host, "localhost") == 0 ? "127.0.0.1" : host);
        size_t hl = strlen(h);
        if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
            memmove(h, h + 1, hl - 2);
            h[hl - 2] = '\0';
        }
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)port);
            sl = sizeof(*s4);
        } else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)port);
            sl = sizeof(*s6);
        } else
            return sbx_error_set(err, -EINVAL, "listen address `%s` is not an IP literal or localhost", host);
    }
    _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sbx_error_set(err, -errno, "socket: %m");
    int one = 1, zero = 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (dual)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
        return sbx_error_set(err, -errno, "bind %s:%d: %s", host ? host : "*", port, strerror(errno));
    if (listen(fd, 1024) < 0)
        return sbx_error_set(err, -errno, "listen: %s", strerror(errno));
    struct sockaddr_storage bound;
    socklen_t bl = sizeof(bound);
    if (getsockname(fd, (struct sockaddr *)&bound, &bl) < 0)
        return sbx_error_set(err, -errno, "getsockname: %s", strerror(errno));

    struct http_server *srv = xcalloc(1, sizeof(*srv));
    srv->loop = loop;
    if (cfg)
        srv->cfg = *cfg;
#define DEFAULT(f, v)                                                                                        \
    if (!srv->cfg.f)                                                                                         \
    srv->cfg.f = (v)
    DEFAULT(max_header_bytes, 16 * 1024);
    DEFAULT(max_headers, 100);
    DEFAULT(header_timeout, 10 * USEC_PER_SEC);
    DEFAULT(idle_timeout, 60 * USEC_PER_SEC);
    DEFAULT(output_soft_limit, 1024 * 1024);
    DEFAULT(output_hard_limit, 64 * 1024 * 1024);
    DEFAULT(discard_body_max, 1024 * 1024);
    DEFAULT(ws_max_message, 1024 * 1024);
    DEFAULT(max_connections, 4096);
#undef DEFAULT
    if (srv->cfg.max_headers > HTTP_MAX_HEADERS_HARD)
        srv->cfg.max_headers = HTTP_MAX_HEADERS_HARD;
    srv->handler = handler;
    srv->userdata = userdata;
    srv->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                 : ((struct sockaddr_in6 *)&bound)->sin6_port);
    settings_init(&srv->settings);
    int r = loop_io_start(loop, &srv->io, fd, EPOLLIN, on_accept);
    if (r < 0) {
        free(srv);
        return sbx_error_set(err, r, "watch listener: %s", strerror(-r));
    }
    srv->fd = TAKE_FD(fd);
    *ret = srv;
    return 0;
}

int http_server_port(const struct http_server *srv)
{
    return srv->port;
}

size_t http_server_connections(const struct http_server *srv)
{
    return srv->n_conns;
}

void http_server_set_observer(struct http_server *srv, http_observer_fn fn, void *userdata)
{
    srv->observer = fn;
    srv->observer_ud = userdata;
}

struct http_server *http_server_free(struct http_server *srv)
{
    if (!srv)
        return NULL;
    srv->freeing = true;
    loop_io_stop(srv->loop, &srv->io);
    close(srv->fd);
    while (srv->conns) {
        srv->conns->server_shutdown = true;
        conn_destroy(srv->conns);
    }
    free(srv);
    return NULL;
}

/* --- request accessors -------------------------------------------------------------------------- */

const char *http_request_method(const struct http_request *req)
{
    return req->method_str;
}

enum http_method http_request_method_id(const struct http_request *req)
{
    return req->method;
}

const char *http_request_path(const struct http_request *req)
{
    return req->path;
}

const char *http_request_query(const struct http_request *req)
{
    return req->query;
}

const char *http_request_target(const struct http_request *req)
{
    return req->target;
}

const char *http_request_remote(const struct http_request *req)
{
    return req->remote;
}

int http_request_version(const struct http_request *req)
{
    return req->version;
}

int64_t http_request_content_length(const struct http_request *req)
{
    return req->content_length;
}

bool http_request_has_body(const struct http_request *req)
{
    return req->has_body;
}

const char *http_header_get(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->hnames[i], name) == 0)
            return req->hvalues[i];
    return NULL;
}

size_t http_header_count(const struct http_request *req)
{
    return req->n_headers;
}

bool http_header_at(const struct http_request *req, size_t i, const char **ret_name, const char **ret_value)
{
    if (i >= req->n_headers)
        return false;
    *ret_name = req->hnames[i];
    *ret_value = req->hvalues[i];
    return true;
}

const char *http_query_get(struct http_request *req, const char *name)
{
    size_t nlen = strlen(name);
    const char *q = req->query;
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t plen = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', plen);
        size_t klen = eq ? (size_t)(eq - q) : plen;
        char *key = http_request_alloc(req, klen + 1);
        long kl = http_percent_decode(q, klen, key, true);
        if (kl >= 0 && (size_t)kl == nlen && memcmp(key, name, nlen) == 0) {
            size_t vlen = eq ? plen - klen - 1 : 0;
            char *val = http_request_alloc(req, vlen + 1);
            if (http_percent_decode(eq ? eq + 1 : "", vlen, val, true) < 0)
                return NULL;
            return val;
        }
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}

void http_request_set_userdata(struct http_request *req, void *data, void (*free_fn)(void *data))
{
    req->userdata = data;
    req->free_fn = free_fn;
}

void *http_request_get_userdata(const struct http_request *req)
{
    return req->userdata;
}

void http_request_on_abort(struct http_request *req, http_event_cb cb, void *userdata)
{
    req->on_abort = cb;
    req->abort_ud = userdata;
}

void http_request_on_drain(struct http_request *req, http_event_cb cb, void *userdata)
{
    req->on_drain = cb;
    req->drain_ud = userdata;
}
