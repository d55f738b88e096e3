/* WebSocket connections (RFC 6455) driven through wslay's event API. wslay's send callback appends to the
 * connection's output queue (never blocks), so one accounting and one writev path serve HTTP and WebSocket;
 * its recv callback reads from the connection's input buffer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http_internal.h"

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *userdata)
{
    struct http_ws *ws = userdata;
    struct http_conn *c = ws->conn;
    if (ws->paused || c->in.len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < c->in.len ? len : c->in.len;
    memcpy(buf, c->in.base, n);
    sbx_buf_consume(&c->in, n);
    return (ssize_t)n;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *userdata)
{
    struct http_ws *ws = userdata;
    if (ws->conn->dead) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    http_conn_queue(ws->conn, data, len);
    return (ssize_t)len;
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *userdata)
{
    struct http_ws *ws = userdata;
    if (ws->user_closed || ws->conn->dead)
        return;
    if (arg->opcode == WSLAY_TEXT_FRAME && ws->cbs->on_text)
        ws->cbs->on_text(ws, (const char *)arg->msg, arg->msg_length, ws->userdata);
    else if (arg->opcode == WSLAY_BINARY_FRAME && ws->cbs->on_binary)
        ws->cbs->on_binary(ws, (const char *)arg->msg, arg->msg_length, ws->userdata);
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv,
    .send_callback = ws_send,
    .on_msg_recv_callback = ws_on_msg,
};

static bool header_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;
    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0)
            return true;
        p = *e ? e + 1 : NULL;
    }
    return false;
}

bool http_request_is_websocket(const struct http_request *req)
{
    const char *up = http_header_get(req, "Upgrade"), *conn = http_header_get(req, "Connection");
    const char *ver = http_header_get(req, "Sec-WebSocket-Version"),
               *key = http_header_get(req, "Sec-WebSocket-Key");
    return req->method == HTTP_METHOD_GET && up && header_has_token(up, "websocket") && conn &&
           header_has_token(conn, "upgrade") && ver && strcmp(ver, "13") == 0 && key && strlen(key) == 24;
}

int http_websocket_accept(struct http_request *req, const struct http_ws_callbacks *cbs, void *userdata,
                          struct http_ws **ret)
{
    struct http_conn *c = req->conn;
    if (req->resp_state != RESP_NONE || c->dead)
        return -EINVAL;
    if (!http_request_is_websocket(req) || req->has_body) {
        http_response_header(req, "Sec-WebSocket-Version", "13");
        http_respond_error(req, 400, "bad_request", "not a valid WebSocket upgrade request");
        return -EINVAL;
    }
    char accept[29];
    http_ws_accept_key(http_header_get(req, "Sec-WebSocket-Key"), accept);
    struct sbx_buf b = SBX_BUF_INIT;
    sbx_buf_appendf(&b,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %s\r\n",
                    accept);
    if (req->resp_headers.len)
        sbx_buf_append(&b, req->resp_headers.base, req->resp_headers.len);
    sbx_buf_append(&b, "\r\n", 2);
    http_conn_queue(c, b.base, b.len);
    sbx_buf_done(&b);

    struct http_ws *ws = xcalloc(1, sizeof(*ws));
    ws->conn = c;
    ws->cbs = cbs;
    ws->userdata = userdata;
    if (wslay_event_context_server_init(&ws->ctx, &ws_callbacks, ws) != 0)
        abort(); /* OOM */
    wslay_event_config_set_max_recv_msg_length(ws->ctx, c->srv->cfg.ws_max_message);
    c->ws = ws;
    req->resp_state = RESP_DONE;
    http_request_observe(req, 101, NULL);
    req->user_completed = true;
    req->on_abort = req->on_drain = NULL;
    http_conn_kick(c);
    *ret = ws;
    return 0;
}

static void queue_close(struct http_ws *ws, uint16_t code, const char *reason, size_t len)
{
    if (wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, len) != 0)
        (void)wslay_event_queue_close(ws->ctx, 1000, NULL, 0);
}

void http_ws_process(struct http_conn *c)
{
    struct http_ws *ws = c->ws;
    if (c->req) {
        /* The upgrade request is over; everything after its headers is WebSocket frames. */
        struct http_request *req = c->req;
        c->req = NULL;
        http_request_destroy(req);
    }
    if (!ws->paused && c->in.len > 0 && wslay_event_want_read(ws->ctx) && wslay_event_recv(ws->ctx) != 0) {
        c->dead = true;
        return;
    }
    if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
        c->dead = true;
        return;
    }
    if (ws->close_pending && wslay_event_get_queued_msg_count(ws->ctx) == 0) {
        ws->close_pending = false;
        queue_close(ws, ws->pending_code, ws->pending_reason, ws->pending_reason_len);
        if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
            c->dead = true;
            return;
        }
    }
    if (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx))
        c->closing = true;
    if (c->eof)
        c->dead = true;
}

void http_ws_destroy(struct http_ws *ws, int code)
{
    if (wslay_event_get_close_received(ws->ctx))
        code = wslay_event_get_status_code_received(ws->ctx);
    if (ws->cbs->on_close)
        ws->cbs->on_close(ws, code, ws->userdata);
    wslay_event_context_free(ws->ctx);
    free(ws);
}

static int ws_queue(struct http_ws *ws, uint8_t opcode, const void *data, size_t len)
{
    struct http_conn *c = ws->conn;
    if (ws->user_closed || c->dead)
        return 1;
    struct wslay_event_msg msg = {.opcode = opcode, .msg = data, .msg_length = len};
    if (wslay_event_queue_msg(ws->ctx, &msg) != 0)
        return 1;
    http_conn_kick(c);
    size_t queued = c->out_bytes + wslay_event_get_queued_msg_length(ws->ctx);
    if (queued > c->srv->cfg.output_hard_limit) {
        http_conn_fail(c);
        return 1;
    }
    if (queued > c->srv->cfg.output_soft_limit) {
        c->want_drain = true;
        return 1;
    }
    return 0;
}

int http_ws_send_text(struct http_ws *ws, const char *data, size_t len)
{
    return ws_queue(ws, WSLAY_TEXT_FRAME, data, len);
}

int http_ws_send_binary(struct http_ws *ws, const void *data, size_t len)
{
    return ws_queue(ws, WSLAY_BINARY_FRAME, data, len);
}

void http_ws_close(struct http_ws *ws, int code, const char *reason)
{
    if (ws->user_closed)
        return;
    ws->user_closed = true;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123)
        rl = 123;
    if (wslay_event_get_queued_msg_count(ws->ctx) > 0) {
        ws->close_pending = true;
        ws->pending_code = (uint16_t)code;
        memcpy(ws->pending_reason, reason ? reason : "", rl);
        ws->pending_reason_len = rl;
    } else
        queue_close(ws, (uint16_t)code, reason, rl);
    ws->conn->last_progress = loop_now(ws->conn->srv->loop); /* the close timeout counts from here */
    http_conn_kick(ws->conn);
}

void http_ws_pause(struct http_ws *ws, bool paused)
{
    ws->paused = paused;
    http_conn_kick(ws->conn);
}

const char *http_ws_remote(const struct http_ws *ws)
{
    return ws->conn->remote;
}
