/* TCP tunnels: GET /v1/sandboxes/{id}/tunnel upgrades to a WebSocket that carries a HashiCorp yamux
 * session (version 0) in binary messages, with the LangSmith tunnel framing on each stream (see
 * docs/api.md "TCP tunnels"): the client opens a stream, sends 3 bytes (0x01, port as big-endian u16),
 * sbxd answers one status byte (0 ok, 2 nothing listening, 3 unsupported version) and then the stream
 * carries the raw bytes of one TCP connection to that port inside the sandbox (made by the shim's
 * `connect` op, like service URLs, so it works with no network).
 *
 * sbxd is the yamux server. Flow control is yamux's own: each stream may have at most WINDOW bytes in
 * flight each way. Bytes from the client wait in the stream's buffer (at most WINDOW, or the stream is
 * reset) until the service takes them, and only then are they credited back with WINDOW_UPDATE, so a
 * slow service slows that one stream's client. Toward the client, a stream is read only while its send
 * window is open and while the WebSocket's output is under its soft limit. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/internal.h"
#include "api/service.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "loop/loop.h"
#include "shimclient/shim_net.h"

#define Y_HDR 12
#define Y_DATA 0
#define Y_WINDOW 1
#define Y_PING 2
#define Y_GOAWAY 3
#define F_SYN 1
#define F_ACK 2
#define F_FIN 4
#define F_RST 8
#define WINDOW (256u * 1024)     /* yamux's initial window, each way */
#define CREDIT_STEP (64u * 1024) /* credit taken bytes in steps of this, or when drained */
#define READ_MAX (64u * 1024)
#define STREAMS_MAX 1024
#define CONNECT_TIMEOUT_MS 2000

enum { ST_OK = 0, ST_DIAL_FAILED = 2, ST_BAD_VERSION = 3 };

struct tunnel;

struct tstream {
    struct tstream *prev, *next;
    struct tunnel *t;
    uint32_t id;
    int fd;
    struct loop_io io;
    uint8_t hdr[3];
    size_t hdr_len;
    bool connected;
    struct sbx_buf out;   /* from the client, for the service */
    uint32_t uncredited;  /* bytes the service took that the client has not been credited for */
    uint32_t send_window; /* bytes we may still send to the client */
    bool in_fin, out_fin, shut_wr;
};

struct tunnel {
    struct daemon *d;
    struct sandbox *sb;
    struct http_ws *ws;
    struct sbx_buf in; /* client bytes not yet parsed into frames */
    struct tstream *streams;
    unsigned n_streams;
    bool blocked; /* the WebSocket's output is over its soft limit */
    bool closing;
};

static void stream_update(struct tstream *s);

/* Queues one frame; a full WebSocket blocks every stream's reading until it drains. */
static void send_frame(struct tunnel *t, uint8_t type, uint16_t flags, uint32_t id, uint32_t len,
                       const void *payload, size_t plen)
{
    if (t->closing)
        return;
    uint8_t stackbuf[Y_HDR + 1];
    uint8_t *buf = plen + Y_HDR <= sizeof(stackbuf) ? stackbuf : xmalloc(Y_HDR + plen);
    buf[0] = 0;
    buf[1] = type;
    uint16_t f = htons(flags);
    uint32_t i = htonl(id), l = htonl(len);
    memcpy(buf + 2, &f, 2);
    memcpy(buf + 4, &i, 4);
    memcpy(buf + 8, &l, 4);
    if (plen)
        memcpy(buf + Y_HDR, payload, plen);
    if (http_ws_send_binary(t->ws, buf, Y_HDR + plen) > 0)
        t->blocked = true;
    if (buf != stackbuf)
        free(buf);
}

static void stream_free(struct tstream *s)
{
    struct tunnel *t = s->t;
    loop_io_stop(t->d->loop, &s->io);
    if (s->fd >= 0)
        close(s->fd);
    sbx_buf_done(&s->out);
    if (s->prev)
        s->prev->next = s->next;
    else
        t->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    t->n_streams--;
    free(s);
}

static void stream_reset(struct tstream *s)
{
    send_frame(s->t, Y_WINDOW, F_RST, s->id, 0, NULL, 0);
    stream_free(s);
}

/* Frees the stream once both directions ended and everything was delivered. Returns true if it did. */
static bool stream_maybe_done(struct tstream *s)
{
    if (s->in_fin && s->out_fin && s->out.len == 0) {
        stream_free(s);
        return true;
    }
    return false;
}

/* Writes buffered client bytes to the service and credits the client for them. */
static int stream_flush(struct tstream *s)
{
    while (s->out.len > 0) {
        ssize_t n = send(s->fd, s->out.base, s->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sbx_buf_consume(&s->out, (size_t)n);
            s->uncredited += (uint32_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        return -EPIPE;
    }
    if (s->uncredited >= CREDIT_STEP || (s->out.len == 0 && s->uncredited > 0)) {
        send_frame(s->t, Y_WINDOW, 0, s->id, s->uncredited, NULL, 0);
        s->uncredited = 0;
    }
    if (s->out.len == 0 && s->in_fin && !s->shut_wr) {
        (void)shutdown(s->fd, SHUT_WR);
        s->shut_wr = true;
    }
    return 0;
}

/* Reads from the service toward the client while the window and the WebSocket allow. Returns < 0 when
 * the stream was reset (freed). */
static int stream_read(struct tstream *s)
{
    struct tunnel *t = s->t;
    static uint8_t buf[READ_MAX];
    for (int rounds = 0; rounds < 4 && !s->out_fin && s->send_window > 0 && !t->blocked; rounds++) {
        size_t want = s->send_window < READ_MAX ? s->send_window : READ_MAX;
        ssize_t n = read(s->fd, buf, want);
        if (n > 0) {
            s->send_window -= (uint32_t)n;
            send_frame(t, Y_DATA, 0, s->id, (uint32_t)n, buf, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        if (n < 0 && errno != ECONNRESET) {
            stream_reset(s);
            return -1;
        }
        send_frame(t, Y_DATA, F_FIN, s->id, 0, NULL, 0);
        s->out_fin = true;
    }
    return 0;
}

static void stream_update(struct tstream *s)
{
    uint32_t ev = 0;
    if (s->connected && !s->out_fin && s->send_window > 0 && !s->t->blocked)
        ev |= EPOLLIN;
    if (s->out.len > 0)
        ev |= EPOLLOUT;
    if (s->fd >= 0 && loop_io_update(s->t->d->loop, &s->io, ev) < 0)
        stream_reset(s);
}

static void on_stream_io(struct loop_io *io, uint32_t revents)
{
    struct tstream *s = container_of(io, struct tstream, io);
    if ((revents & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && s->out.len > 0 && stream_flush(s) < 0)
        return stream_reset(s);
    if ((revents & (EPOLLIN | EPOLLERR | EPOLLHUP)) && stream_read(s) < 0)
        return;
    if (!stream_maybe_done(s))
        stream_update(s);
}

/* The 3-byte header is complete: dial the port inside the sandbox and answer the status byte. */
static void stream_connect(struct tstream *s)
{
    struct tunnel *t = s->t;
    uint8_t status = ST_OK;
    int port = (s->hdr[1] << 8) | s->hdr[2];
    sbx_error err = {0};
    if (s->hdr[0] != 1)
        status = ST_BAD_VERSION;
    else if (port < 1 || sandbox_need_up(t->sb, &err) < 0 ||
             shim_connect_port(t->sb->state_dir, port, CONNECT_TIMEOUT_MS, &s->fd, &err) < 0)
        status = ST_DIAL_FAILED;
    send_frame(t, Y_DATA, 0, s->id, 1, &status, 1);
    if (s->send_window)
        s->send_window--;
    if (status != ST_OK) {
        send_frame(t, Y_DATA, F_FIN, s->id, 0, NULL, 0);
        s->out_fin = true;
        s->in_fin = true; /* whatever else the client sends on it is dropped */
        sbx_buf_reset(&s->out);
        return;
    }
    s->connected = true;
    sandbox_touch(t->sb);
    if (loop_io_start(t->d->loop, &s->io, s->fd, 0, on_stream_io) < 0) {
        close(s->fd);
        s->fd = -1;
    }
}

static struct tstream *stream_find(struct tunnel *t, uint32_t id)
{
    for (struct tstream *s = t->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static struct tstream *stream_open(struct tunnel *t, uint32_t id)
{
    if (id == 0 || (id & 1) == 0 || t->n_streams >= STREAMS_MAX || stream_find(t, id)) {
        send_frame(t, Y_WINDOW, F_RST, id, 0, NULL, 0);
        return NULL;
    }
    struct tstream *s = xcalloc(1, sizeof(*s));
    s->t = t;
    s->id = id;
    s->fd = -1;
    s->send_window = WINDOW;
    s->next = t->streams;
    if (t->streams)
        t->streams->prev = s;
    t->streams = s;
    t->n_streams++;
    send_frame(t, Y_WINDOW, F_ACK, id, 0, NULL, 0);
    return s;
}

/* Client bytes on a stream: the connect header first, then data for the service. */
static void stream_data(struct tstream *s, const uint8_t *p, size_t len)
{
    while (len > 0 && s->hdr_len < sizeof(s->hdr)) {
        s->hdr[s->hdr_len++] = *p++;
        len--;
        s->uncredited++;
        if (s->hdr_len == sizeof(s->hdr))
            stream_connect(s);
    }
    if (len == 0 || s->in_fin)
        return;
    if (s->out.len + len > WINDOW) { /* the client ignored its window */
        stream_reset(s);
        return;
    }
    sbx_buf_append(&s->out, p, len);
}

/* Parses and handles every complete frame in t->in. Returns -1 when the session must end. */
static int process_frames(struct tunnel *t)
{
    size_t off = 0;
    int r = 0;
    while (t->in.len - off >= Y_HDR) {
        const uint8_t *h = (const uint8_t *)t->in.base + off;
        uint8_t type = h[1];
        uint16_t flags;
        uint32_t id, len;
        memcpy(&flags, h + 2, 2);
        memcpy(&id, h + 4, 4);
        memcpy(&len, h + 8, 4);
        flags = ntohs(flags);
        id = ntohl(id);
        len = ntohl(len);
        if (h[0] != 0 || type > Y_GOAWAY || (type == Y_DATA && len > WINDOW)) {
            r = -1;
            break;
        }
        size_t need = Y_HDR + (type == Y_DATA ? len : 0);
        if (t->in.len - off < need)
            break;
        off += need;
        if (type == Y_PING) {
            if (flags & F_SYN)
                send_frame(t, Y_PING, F_ACK, 0, len, NULL, 0);
            continue;
        }
        if (type == Y_GOAWAY) {
            r = -1;
            break;
        }
        struct tstream *s = stream_find(t, id);
        if (!s && (flags & F_SYN))
            s = stream_open(t, id);
        if (!s)
            continue; /* a stream we reset or finished: late frames are dropped */
        if (flags & F_RST) {
            stream_free(s);
            continue;
        }
        if (type == Y_WINDOW)
            s->send_window = len > UINT32_MAX - s->send_window ? UINT32_MAX : s->send_window + len;
        else if (len > 0) {
            stream_data(s, h + Y_HDR, len);
            if (!(s = stream_find(t, id)))
                continue; /* reset */
        }
        if (flags & F_FIN)
            s->in_fin = true;
        if (s->connected && (s->out.len > 0 || (s->in_fin && !s->shut_wr)) && stream_flush(s) < 0) {
            stream_reset(s);
            continue;
        }
        if (!stream_maybe_done(s))
            stream_update(s);
    }
    sbx_buf_consume(&t->in, off);
    return r;
}

static void on_message(struct http_ws *ws, const char *data, size_t len, void *userdata)
{
    struct tunnel *t = userdata;
    sbx_buf_append(&t->in, data, len);
    if (process_frames(t) < 0) {
        send_frame(t, Y_GOAWAY, 0, 0, 0, NULL, 0);
        t->closing = true;
        http_ws_close(ws, 1000, "session over");
    }
}

static void on_drain(struct http_ws *ws, void *userdata)
{
    (void)ws;
    struct tunnel *t = userdata;
    t->blocked = false;
    for (struct tstream *s = t->streams, *next; s; s = next) {
        next = s->next;
        stream_update(s);
    }
}

static void on_close(struct http_ws *ws, int code, void *userdata)
{
    (void)ws;
    (void)code;
    struct tunnel *t = userdata;
    t->closing = true;
    while (t->streams)
        stream_free(t->streams);
    sbx_buf_done(&t->in);
    sandbox_detach(t->sb);
    sandbox_touch(t->sb);
    sandbox_unref(t->sb);
    free(t);
}

static const struct http_ws_callbacks tunnel_cbs = {
    .on_text = on_message, .on_binary = on_message, .on_drain = on_drain, .on_close = on_close};

void api_tunnel(struct api_ctx *c)
{
    if (!http_request_is_websocket(c->req))
        return http_respond_error(c->req, 400, "invalid_argument", "a tunnel is a WebSocket upgrade");
    struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (sandbox_need_up(sb, &err) < 0) {
        sandbox_unref(sb);
        return api_reply_error(c->req, &err);
    }
    struct tunnel *t = xcalloc(1, sizeof(*t));
    t->d = c->d;
    t->sb = sb; /* the reference api_sandbox gave */
    if (http_websocket_accept(c->req, &tunnel_cbs, t, &t->ws) < 0) {
        sandbox_unref(sb);
        free(t);
        return;
    }
    sandbox_attach(sb);
}
