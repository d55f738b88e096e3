/* The service-URL proxy: after authorization a client connection is taken over from the HTTP server
 * (http_request_take_over) and spliced byte for byte with a TCP socket inside the sandbox's network
 * namespace (passed by the sandbox's shim). Nothing is parsed after the first request head, except, for
 * the path form, the first response head, which gets `Connection: close` so the client opens a new
 * connection (with a new, rewritten request) for its next request. Chunked bodies, streamed responses,
 * SSE and WebSocket frames are just bytes here.
 *
 * Back-pressure: each direction holds at most PIPE_BYTES (a buffer, then a pipe once it splices); a side
 * is not read while its direction toward the other side is full, so a slow reader slows the writer through
 * TCP flow control and memory stays bounded. Half-close is propagated: the client's EOF becomes
 * shutdown(SHUT_WR) toward the sandbox; the sandbox's EOF ends the connection once everything is written to
 * the client. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/service.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "loop/loop.h"

#define PIPE_BYTES (256u * 1024) /* per direction: the buffer, or the pipe once splicing */
#define HEAD_MAX (64u * 1024)    /* a first response head longer than this is passed through unchanged */
#define PUMP_ROUNDS 16 /* read/write rounds per wake-up, so one fast connection cannot hog the loop */

/* Bytes on their way in one direction. They start in buf (the request head sbxd wrote, what the HTTP
 * server had read, response heads being rewritten); once buf is empty and nothing needs rewriting, the
 * direction switches for good to splice(2) through a pipe (no copy through user space). */
struct pbuf {
    char *data;
    size_t start, end, cap;
};

struct side {
    struct pbuf buf;
    int pipe[2];     /* -1 until splicing */
    size_t in_pipe;  /* bytes in the pipe */
    size_t pipe_cap; /* its size */
    bool spliced;
    bool pipe_full; /* splice into the pipe made no progress although the source is readable */
    bool no_splice; /* the pipe could not be made: stay buffered */
};

struct proxy {
    struct proxy *prev, *next;
    struct daemon *d;
    struct sandbox *sb;
    int cfd, ufd;
    struct loop_io cio, uio;
    struct side to_u, to_c;
    bool c_eof, u_eof, u_shut;
    bool head_pending; /* close_after: the first final response head is not rewritten yet */
    size_t c_ready; /* while head_pending: bytes at the front of to_c.buf that may go out (interim heads) */
    bool u_any;     /* the sandbox sent something */
};

static struct proxy *proxies;
static unsigned n_proxies;

unsigned api_proxy_count(void)
{
    return n_proxies;
}

static size_t pb_len(const struct pbuf *b)
{
    return b->end - b->start;
}

/* Room at the end (compacting or allocating first). */
static size_t pb_room(struct pbuf *b)
{
    if (!b->data) {
        b->data = xmalloc(PIPE_BYTES);
        b->cap = PIPE_BYTES;
    }
    if (b->start == b->end)
        b->start = b->end = 0;
    else if (b->end == b->cap && b->start > 0) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    return b->cap - b->end;
}

static void side_done(struct side *s)
{
    free(s->buf.data);
    if (s->pipe[0] >= 0)
        close(s->pipe[0]);
    if (s->pipe[1] >= 0)
        close(s->pipe[1]);
}

/* Bytes queued in this direction. */
static size_t side_len(const struct side *s)
{
    return pb_len(&s->buf) + s->in_pipe;
}

static void proxy_free(struct proxy *p)
{
    struct loop *loop = p->d->loop;
    loop_io_stop(loop, &p->cio);
    loop_io_stop(loop, &p->uio);
    if (p->cfd >= 0)
        close(p->cfd);
    if (p->ufd >= 0)
        close(p->ufd);
    side_done(&p->to_u);
    side_done(&p->to_c);
    if (p->prev)
        p->prev->next = p->next;
    else
        proxies = p->next;
    if (p->next)
        p->next->prev = p->prev;
    n_proxies--;
    sandbox_detach(p->sb);
    sandbox_touch(p->sb);
    sandbox_unref(p->sb);
    free(p);
}

/* Finds "\r\n\r\n" in b[from, end); returns the offset just past it, or 0. */
static size_t find_head_end(const struct pbuf *b, size_t from)
{
    const char *s = b->data + b->start;
    size_t n = pb_len(b);
    for (size_t i = from + 3; i < n; i++)
        if (s[i] == '\n' && s[i - 1] == '\r' && s[i - 2] == '\n' && s[i - 3] == '\r')
            return i + 1;
    return 0;
}

/* close_after: marks interim (1xx) heads as ready and rewrites the first final head of to_c so that it
 * carries `Connection: close` (a 101 switches protocols and passes unchanged). */
static void rewrite_heads(struct proxy *p)
{
    struct pbuf *b = &p->to_c.buf;
    while (p->head_pending) {
        size_t end = find_head_end(b, p->c_ready);
        if (!end) {
            if (pb_len(b) - p->c_ready > HEAD_MAX || p->u_eof)
                p->head_pending = false; /* not HTTP as we know it: pass it through */
            return;
        }
        const char *h = b->data + b->start + p->c_ready;
        size_t hlen = end - p->c_ready;
        int status = 0;
        if (hlen > 12 && strncmp(h, "HTTP/1.", 7) == 0)
            status = atoi(h + 9);
        if (status >= 100 && status < 200 && status != 101) {
            p->c_ready = end;
            continue;
        }
        p->head_pending = false;
        if (status == 101 || status == 0)
            return;
        /* Rebuild: status line, every header but Connection/Keep-Alive, then Connection: close. */
        struct sbx_buf nb = SBX_BUF_INIT;
        const char *line = h, *stop = h + hlen - 2; /* the final empty line */
        bool first = true;
        while (line < stop) {
            const char *eol = memmem(line, (size_t)(stop - line), "\r\n", 2);
            if (!eol)
                eol = stop;
            size_t ll = (size_t)(eol - line);
            if (first || !((ll >= 11 && strncasecmp(line, "connection:", 11) == 0) ||
                           (ll >= 11 && strncasecmp(line, "keep-alive:", 11) == 0)))
                sbx_buf_append(&nb, line, ll + 2);
            first = false;
            line = eol + 2;
        }
        sbx_buf_append(&nb, "Connection: close\r\n\r\n", 21);
        size_t rest = pb_len(b) - end;
        size_t need = p->c_ready + nb.len + rest;
        size_t cap = need > PIPE_BYTES ? need : PIPE_BYTES;
        char *nd = xmalloc(cap);
        memcpy(nd, b->data + b->start, p->c_ready);
        memcpy(nd + p->c_ready, nb.base, nb.len);
        memcpy(nd + p->c_ready + nb.len, b->data + b->start + end, rest);
        free(b->data);
        b->data = nd;
        b->start = 0;
        b->end = need;
        b->cap = cap;
        sbx_buf_done(&nb);
    }
}

static const char bad_gateway[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
                                  "Connection: close\r\nContent-Length: 98\r\n\r\n"
                                  "{\"error\":{\"code\":\"bad_gateway\",\"message\":\"the service in the "
                                  "sandbox closed the connection\"}}\n";

/* Switches a direction to splicing once its buffer is empty (and nothing is left to rewrite). */
static void maybe_splice(struct side *s)
{
    if (s->spliced || s->no_splice || pb_len(&s->buf) > 0)
        return;
    if (pipe2(s->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        s->pipe[0] = s->pipe[1] = -1;
        s->no_splice = true; /* out of fds, say: stay buffered */
        return;
    }
    (void)fcntl(s->pipe[1], F_SETPIPE_SZ, (int)PIPE_BYTES);
    int sz = fcntl(s->pipe[1], F_GETPIPE_SZ);
    s->pipe_cap = sz > 0 ? (size_t)sz : 65536;
    s->spliced = true;
    free(s->buf.data);
    s->buf = (struct pbuf){0};
}

/* Whether the source of s may be read now (room for more). */
static bool side_wants_input(const struct side *s)
{
    return s->spliced ? !s->pipe_full && s->in_pipe < s->pipe_cap
                      : pb_len(&s->buf) < s->buf.cap || !s->buf.data;
}

/* Reads from src into s. Returns 1 when bytes moved, 0 when none are available, 2 at EOF, -errno on error. */
static int side_fill(struct side *s, int src)
{
    ssize_t n;
    if (s->spliced) {
        n = splice(src, NULL, s->pipe[1], NULL, s->pipe_cap - s->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0)
            s->in_pipe += (size_t)n;
        else if (n < 0 && errno == EAGAIN && s->in_pipe > 0)
            s->pipe_full = true; /* ambiguous: wait for the pipe to drain before trying again */
    } else {
        size_t room = pb_room(&s->buf);
        if (room == 0)
            return 0;
        n = read(src, s->buf.data + s->buf.end, room);
        if (n > 0)
            s->buf.end += (size_t)n;
    }
    if (n > 0)
        return 1;
    if (n == 0)
        return 2;
    return errno == EAGAIN || errno == EINTR ? 0 : -errno;
}

/* Writes up to limit queued bytes of s (the buffer first, then the pipe) to dst. Returns the bytes
 * written (0 when dst is full) or -errno. */
static ssize_t side_flush(struct side *s, int dst, size_t limit)
{
    ssize_t n;
    if (pb_len(&s->buf) > 0) {
        size_t len = pb_len(&s->buf) < limit ? pb_len(&s->buf) : limit;
        n = send(dst, s->buf.data + s->buf.start, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            s->buf.start += (size_t)n;
    } else if (s->in_pipe > 0) {
        n = splice(s->pipe[0], NULL, dst, NULL, s->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            s->in_pipe -= (size_t)n;
            s->pipe_full = false;
        }
    } else
        return 0;
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EINTR ? 0 : -errno;
}

/* Moves bytes both ways until nothing moves or the round budget is spent. Returns false when the proxy
 * is finished (the caller frees it). */
static bool pump(struct proxy *p)
{
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        bool moved = false;
        /* client -> sandbox */
        maybe_splice(&p->to_u);
        if (!p->c_eof && side_wants_input(&p->to_u)) {
            int r = side_fill(&p->to_u, p->cfd);
            if (r < 0 && r != -ECONNRESET)
                return false;
            if (r == 2 || r < 0)
                p->c_eof = true;
            moved |= r != 0;
        }
        ssize_t w = side_flush(&p->to_u, p->ufd, SIZE_MAX);
        if (w < 0) { /* the sandbox stopped reading: what it will not take is dropped */
            p->to_u.buf.start = p->to_u.buf.end;
            p->to_u.in_pipe = 0;
            p->c_eof = true;
        }
        moved |= w > 0;
        if (p->c_eof && side_len(&p->to_u) == 0 && !p->u_shut) {
            (void)shutdown(p->ufd, SHUT_WR);
            p->u_shut = true;
        }
        /* sandbox -> client */
        if (!p->head_pending)
            maybe_splice(&p->to_c);
        if (!p->u_eof && side_wants_input(&p->to_c)) {
            int r = side_fill(&p->to_c, p->ufd);
            if (r == 1)
                p->u_any = true;
            if (r == 2 || r < 0) {
                p->u_eof = true;
                if (!p->u_any && !p->c_eof && side_len(&p->to_c) == 0) {
                    /* refused or reset before a byte: say so (the buffer is empty, the pipe too) */
                    p->head_pending = false;
                    struct pbuf *b = &p->to_c.buf;
                    free(b->data);
                    b->data = xmalloc(sizeof(bad_gateway));
                    memcpy(b->data, bad_gateway, sizeof(bad_gateway) - 1);
                    b->start = 0;
                    b->end = b->cap = sizeof(bad_gateway) - 1;
                }
            }
            moved |= r != 0;
            if (p->head_pending)
                rewrite_heads(p);
        }
        w = side_flush(&p->to_c, p->cfd, p->head_pending ? p->c_ready : SIZE_MAX);
        if (w < 0)
            return false; /* the client is gone */
        if (p->head_pending)
            p->c_ready -= (size_t)w;
        moved |= w > 0;
        if (p->u_eof && side_len(&p->to_c) == 0)
            return false; /* the sandbox's side is over and everything reached the client */
        if (!moved)
            break;
    }
    return true;
}

static void update(struct proxy *p)
{
    struct loop *loop = p->d->loop;
    size_t out_c = p->head_pending ? p->c_ready : side_len(&p->to_c);
    uint32_t ce = (!p->c_eof && side_wants_input(&p->to_u) ? EPOLLIN : 0) | (out_c ? EPOLLOUT : 0);
    uint32_t ue =
        (!p->u_eof && side_wants_input(&p->to_c) ? EPOLLIN : 0) | (side_len(&p->to_u) ? EPOLLOUT : 0);
    if (loop_io_update(loop, &p->cio, ce) < 0 || loop_io_update(loop, &p->uio, ue) < 0) {
        proxy_free(p);
        return;
    }
    if (!ce && !ue) /* nothing can ever move again */
        proxy_free(p);
}

static void run(struct proxy *p)
{
    if (!pump(p))
        return proxy_free(p);
    update(p);
}

static void on_client(struct loop_io *io, uint32_t revents)
{
    (void)revents;
    run(container_of(io, struct proxy, cio));
}

static void on_upstream(struct loop_io *io, uint32_t revents)
{
    (void)revents;
    run(container_of(io, struct proxy, uio));
}

/* Appends to a buffer at start (it grows past PIPE_BYTES if it must, once). */
static void pb_put(struct pbuf *b, const void *data, size_t len)
{
    if (len == 0)
        return;
    size_t have = pb_len(b);
    if (!b->data || have + len > b->cap - b->start) {
        size_t cap = have + len > PIPE_BYTES ? have + len : PIPE_BYTES;
        char *nd = xmalloc(cap);
        if (have)
            memcpy(nd, b->data + b->start, have);
        free(b->data);
        b->data = nd;
        b->start = 0;
        b->end = have;
        b->cap = cap;
    }
    memcpy(b->data + b->end, data, len);
    b->end += len;
}

void api_proxy_start(struct daemon *d, struct sandbox *sb, struct http_takeover *t, int upstream_fd,
                     struct sbx_buf *head, bool close_after)
{
    struct proxy *p = xcalloc(1, sizeof(*p));
    p->d = d;
    p->sb = sandbox_ref(sb);
    p->cfd = t->fd;
    p->ufd = upstream_fd;
    p->to_u.pipe[0] = p->to_u.pipe[1] = p->to_c.pipe[0] = p->to_c.pipe[1] = -1;
    p->head_pending = close_after;
    pb_put(&p->to_u.buf, head->base, head->len);
    pb_put(&p->to_u.buf, t->in.base, t->in.len);
    pb_put(&p->to_c.buf, t->out.base, t->out.len);
    p->c_ready = pb_len(&p->to_c.buf); /* earlier responses go out as they are */
    sbx_buf_done(head);
    sbx_buf_done(&t->in);
    sbx_buf_done(&t->out);
    t->fd = -1;
    p->next = proxies;
    if (proxies)
        proxies->prev = p;
    proxies = p;
    n_proxies++;
    sandbox_attach(sb);
    sandbox_touch(sb);
    if (loop_io_start(d->loop, &p->cio, p->cfd, 0, on_client) < 0 ||
        loop_io_start(d->loop, &p->uio, p->ufd, 0, on_upstream) < 0) {
        log_warning("proxy for `%s`: cannot watch its sockets; closing", sb->id);
        return proxy_free(p);
    }
    run(p);
}

void api_proxy_close_all(void)
{
    while (proxies)
        proxy_free(proxies);
}
