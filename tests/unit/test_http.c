/* The HTTP server over real loopback sockets: the server runs its loop in a forked child, the test talks to
 * it with plain blocking sockets. The child reports handler-side events (on_abort, upload totals) on a pipe.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "harness.h"
#include "http/http.h"
#include "loop/loop.h"

static struct loop *g_loop;
static int g_events = -1; /* child: write end of the event pipe */

static void event(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    (void)!write(g_events, buf, (size_t)n);
}

/* --- handlers ------------------------------------------------------------------------------------- */

static void echo_body(struct http_request *req, const char *body, size_t len, void *ud)
{
    http_respond(req, 200, "text/plain", body, len);
}

struct streamer {
    struct loop_timer t;
    struct http_request *req;
    int n, max;
};

static void stream_tick(struct loop_timer *t)
{
    struct streamer *s = container_of(t, struct streamer, t);
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "part%d;", s->n++);
    http_response_write(s->req, buf, (size_t)n);
    if (s->max && s->n >= s->max) {
        http_response_end(s->req);
        free(s);
        return;
    }
    loop_timer_start(g_loop, &s->t, 5 * USEC_PER_MSEC, stream_tick);
}

static void stream_abort(struct http_request *req, void *ud)
{
    struct streamer *s = ud;
    loop_timer_stop(g_loop, &s->t);
    free(s);
    event("abort\n");
}

struct upload {
    struct loop_timer t;
    struct http_request *req;
    uint64_t total, sum, since_pause;
    int pauses;
};

static void upload_resume(struct loop_timer *t)
{
    struct upload *u = container_of(t, struct upload, t);
    u->since_pause = 0;
    http_request_resume_body(u->req);
}

static int upload_chunk(struct http_request *req, const char *data, size_t len, void *ud)
{
    struct upload *u = ud;
    for (size_t i = 0; i < len; i++)
        u->sum = u->sum * 31 + (unsigned char)data[i];
    u->total += len;
    u->since_pause += len;
    if (u->since_pause >= 512 * 1024) {
        u->pauses++;
        loop_timer_start(g_loop, &u->t, 2 * USEC_PER_MSEC, upload_resume);
        return 1;
    }
    return 0;
}

static void upload_end(struct http_request *req, void *ud)
{
    struct upload *u = ud;
    http_respond_json(req, 200,
                      json_pack("{s:I, s:I, s:i}", "total", (json_int_t)u->total, "sum",
                                (json_int_t)(u->sum >> 1), "pauses", u->pauses));
}

static void ws_text(struct http_ws *ws, const char *data, size_t len, void *ud)
{
    if (len == 5 && memcmp(data, "close", 5) == 0) {
        http_ws_close(ws, 4000, "bye");
        return;
    }
    http_ws_send_text(ws, data, len);
}

static void ws_closed(struct http_ws *ws, int code, void *ud)
{
    event("ws_close %d\n", code);
}

static const struct http_ws_callbacks ws_cbs = {
    .on_text = ws_text, .on_binary = ws_text, .on_close = ws_closed};

static void handler(struct http_request *req, void *ud)
{
    const char *path = http_request_path(req);
    if (strcmp(path, "/hello") == 0) {
        const char *q = http_query_get(req, "name");
        http_respond_json(req, 200,
                          json_pack("{s:s, s:s, s:s}", "path", path, "name", q ? q : "", "agent",
                                    http_header_get(req, "user-agent") ?: ""));
    } else if (strcmp(path, "/echo") == 0) {
        http_request_read_body(req, 1024 * 1024, echo_body, NULL);
    } else if (strcmp(path, "/small") == 0) {
        http_request_read_body(req, 10, echo_body, NULL);
    } else if (strcmp(path, "/stream") == 0 || strcmp(path, "/forever") == 0) {
        struct streamer *s = calloc(1, sizeof(*s));
        s->req = req;
        s->max = strcmp(path, "/stream") == 0 ? 3 : 0;
        http_request_on_abort(req, stream_abort, s);
        http_response_begin(req, 200, "text/plain", -1);
        loop_timer_start(g_loop, &s->t, USEC_PER_MSEC, stream_tick);
    } else if (strcmp(path, "/sse") == 0) {
        http_sse_begin(req);
        http_sse_send(req, "msg", "line1\nline2", 11);
        http_sse_send(req, NULL, "x", 1);
        http_response_end(req);
    } else if (strcmp(path, "/ws") == 0) {
        struct http_ws *ws;
        http_websocket_accept(req, &ws_cbs, NULL, &ws);
    } else if (strcmp(path, "/takeover") == 0) {
        /* The connection becomes ours: answer raw with what the server had read past the head. */
        struct http_takeover t;
        if (http_request_take_over(req, 200, &t) < 0)
            return http_respond_error(req, 500, "internal", "take over failed");
        (void)!write(t.fd, t.out.base, t.out.len);
        (void)!write(t.fd, "TAKEN:", 6);
        (void)!write(t.fd, t.in.base, t.in.len);
        close(t.fd);
        sbx_buf_done(&t.in);
        sbx_buf_done(&t.out);
        event("taken\n");
    } else if (strcmp(path, "/upload") == 0) {
        struct upload *u = calloc(1, sizeof(*u));
        u->req = req;
        http_request_set_userdata(req, u, free);
        http_request_stream_body(req, upload_chunk, upload_end, u);
    } else {
        http_respond_error(req, 404, "not_found", "no route for %s", path);
    }
}

/* --- harness: server child + client helpers ---------------------------------------------------------- */

static pid_t server_pid;
static int server_port;
static int events_rd = -1;

static int start_server(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    server_pid = fork();
    if (server_pid == 0) {
        /* The loop and server live in the child only: an epoll instance is shared across fork. */
        struct loop *loop;
        struct http_server *srv;
        sbx_error err = {0};
        close(p[0]);
        g_events = p[1];
        if (loop_new(&loop) < 0 ||
            http_server_new(loop, "127.0.0.1", 0, NULL, handler, NULL, &srv, &err) < 0) {
            fprintf(stderr, "# server: %s\n", err.msg);
            _exit(1);
        }
        g_loop = loop;
        signal(SIGPIPE, SIG_IGN);
        int port = http_server_port(srv);
        (void)!write(g_events, &port, sizeof(port));
        loop_run(loop);
        _exit(0);
    }
    close(p[1]);
    events_rd = p[0];
    if (read(events_rd, &server_port, sizeof(server_port)) != sizeof(server_port))
        return -1;
    return 0;
}

static void stop_server(void)
{
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -1;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int send_str(int fd, const char *s)
{
    return write_all(fd, s, strlen(s));
}

/* Per-connection read buffer so pipelined responses can be split. */
struct client {
    int fd;
    struct sbx_buf in;
};

static int fill(struct client *c)
{
    char *p = sbx_buf_reserve(&c->in, 65536);
    ssize_t n = read(c->fd, p, 65536);
    if (n <= 0)
        return -1;
    c->in.len += (size_t)n;
    return 0;
}

struct response {
    int status;
    char headers[8192];
    struct sbx_buf body;
    bool closed;
};

static const char *resp_header(struct response *r, const char *name)
{
    static char val[512];
    size_t nl = strlen(name);
    for (char *p = strstr(r->headers, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            while (*v == ' ')
                v++;
            size_t l = strcspn(v, "\r");
            snprintf(val, sizeof(val), "%.*s", (int)l, v);
            return val;
        }
    }
    return NULL;
}

/* Reads one response (Content-Length, chunked or until close). Returns 0 or -1. */
static int read_response(struct client *c, struct response *r)
{
    char *end;
    while (!(c->in.len && (end = memmem(c->in.base, c->in.len, "\r\n\r\n", 4))))
        if (fill(c) < 0)
            return -1;
    size_t hl = (size_t)(end - c->in.base) + 4;
    snprintf(r->headers, sizeof(r->headers), "%.*s", (int)hl, c->in.base);
    r->status = atoi(c->in.base + 9);
    sbx_buf_consume(&c->in, hl);
    const char *cl = resp_header(r, "Content-Length");
    const char *te = resp_header(r, "Transfer-Encoding");
    if (r->status == 101 || r->status == 100 || r->status == 204)
        return 0;
    if (cl) {
        size_t n = (size_t)atol(cl);
        while (c->in.len < n)
            if (fill(c) < 0)
                return -1;
        sbx_buf_append(&r->body, c->in.base, n);
        sbx_buf_consume(&c->in, n);
    } else if (te && strcasecmp(te, "chunked") == 0) {
        for (;;) {
            char *le;
            while (!(c->in.len && (le = memmem(c->in.base, c->in.len, "\r\n", 2))))
                if (fill(c) < 0)
                    return -1;
            size_t n = strtoul(c->in.base, NULL, 16);
            size_t skip = (size_t)(le - c->in.base) + 2;
            while (c->in.len < skip + n + 2)
                if (fill(c) < 0)
                    return -1;
            sbx_buf_append(&r->body, c->in.base + skip, n);
            sbx_buf_consume(&c->in, skip + n + 2);
            if (n == 0)
                break;
        }
    } else {
        while (fill(c) == 0)
            ;
        sbx_buf_append(&r->body, c->in.base, c->in.len);
        c->in.len = 0;
        r->closed = true;
    }
    sbx_buf_cstr(&r->body);
    return 0;
}

static bool peer_closed(int fd)
{
    char b;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) <= 0)
        return false;
    return read(fd, &b, 1) <= 0;
}

static int wait_event(const char *what)
{
    char buf[256];
    size_t got = 0;
    struct pollfd pfd = {.fd = events_rd, .events = POLLIN};
    while (poll(&pfd, 1, 5000) > 0) {
        ssize_t n = read(events_rd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, what))
            return 0;
    }
    fprintf(stderr, "# event `%s` not seen (got `%.*s`)\n", what, (int)got, buf);
    return -1;
}

#define SETUP()                                                                                              \
    ASSERT_OK(start_server());                                                                               \
    struct client cl = {.fd = connect_server()};                                                             \
    ASSERT_TRUE(cl.fd >= 0)

/* --- tests ------------------------------------------------------------------------------------------ */

static int test_keepalive_two_requests(void)
{
    SETUP();
    struct response r1 = {0}, r2 = {0};
    ASSERT_OK(send_str(cl.fd, "GET /hello?name=a%20b+c HTTP/1.1\r\nHost: x\r\nUser-Agent: t1\r\n\r\n"));
    ASSERT_OK(read_response(&cl, &r1));
    ASSERT_EQ(r1.status, 200);
    ASSERT_STREQ(r1.body.base, "{\"path\":\"/hello\",\"name\":\"a b c\",\"agent\":\"t1\"}");
    ASSERT_STREQ(resp_header(&r1, "Content-Type"), "application/json");
    ASSERT_OK(send_str(cl.fd, "GET /h%65llo HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_OK(read_response(&cl, &r2));
    ASSERT_EQ(r2.status, 200);
    ASSERT_TRUE(strstr(r2.body.base, "\"path\":\"/hello\"") != NULL);
    /* HTTP/1.0 closes after the response. */
    struct client c2 = {.fd = connect_server()};
    struct response r3 = {0};
    ASSERT_OK(send_str(c2.fd, "GET /hello HTTP/1.0\r\n\r\n"));
    ASSERT_OK(read_response(&c2, &r3));
    ASSERT_EQ(r3.status, 200);
    ASSERT_TRUE(peer_closed(c2.fd));
    stop_server();
    return 0;
}

/* An answer sent before a body the server will not discard (over discard_body_max) says Connection: close;
 * a small unread body is discarded and the connection stays usable. */
static int test_early_answer_before_body(void)
{
    SETUP();
    struct response r1 = {0}, r2 = {0}, r3 = {0};
    ASSERT_OK(send_str(cl.fd, "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"));
    ASSERT_OK(read_response(&cl, &r1));
    ASSERT_EQ(r1.status, 404);
    ASSERT_TRUE(resp_header(&r1, "Connection") == NULL);
    ASSERT_OK(send_str(cl.fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_OK(read_response(&cl, &r2));
    ASSERT_EQ(r2.status, 200);
    struct client c2 = {.fd = connect_server()};
    ASSERT_OK(send_str(c2.fd, "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n"));
    ASSERT_OK(read_response(&c2, &r3));
    ASSERT_EQ(r3.status, 404);
    ASSERT_STREQ(resp_header(&r3, "Connection"), "close");
    close(c2.fd);
    stop_server();
    return 0;
}

static int test_pipelined(void)
{
    SETUP();
    ASSERT_OK(send_str(cl.fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
                              "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                              "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"));
    struct response r[3] = {0};
    for (int i = 0; i < 3; i++)
        ASSERT_OK(read_response(&cl, &r[i]));
    ASSERT_EQ(r[0].status, 200);
    ASSERT_STREQ(r[0].body.base, "first");
    ASSERT_EQ(r[1].status, 404);
    ASSERT_TRUE(strstr(r[1].body.base, "\"code\":\"not_found\"") != NULL);
    ASSERT_EQ(r[2].status, 200);
    ASSERT_STREQ(r[2].body.base, "second");
    stop_server();
    return 0;
}

static int test_chunked_request_body(void)
{
    SETUP();
    ASSERT_OK(send_str(cl.fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5\r\nhello\r\n"));
    usleep(20000);
    ASSERT_OK(send_str(cl.fd, "7;ext=1\r\n, world\r\n0\r\n\r\n"));
    struct response r = {0};
    ASSERT_OK(read_response(&cl, &r));
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body.base, "hello, world");
    /* Expect: 100-continue gets the interim response first. */
    ASSERT_OK(send_str(
        cl.fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"));
    struct response c = {0};
    ASSERT_OK(read_response(&cl, &c));
    ASSERT_EQ(c.status, 100);
    ASSERT_OK(send_str(cl.fd, "abc"));
    struct response r2 = {0};
    ASSERT_OK(read_response(&cl, &r2));
    ASSERT_EQ(r2.status, 200);
    ASSERT_STREQ(r2.body.base, "abc");
    stop_server();
    return 0;
}

static int test_body_too_large(void)
{
    SETUP();
    ASSERT_OK(send_str(cl.fd, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"));
    struct response r = {0};
    ASSERT_OK(read_response(&cl, &r));
    ASSERT_EQ(r.status, 413);
    ASSERT_TRUE(strstr(r.body.base, "{\"error\":{\"code\":\"too_large\"") != NULL);
    ASSERT_TRUE(peer_closed(cl.fd));
    /* Chunked, so the limit is only found while reading. */
    struct client c2 = {.fd = connect_server()};
    ASSERT_OK(send_str(c2.fd, "POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"));
    struct response r2 = {0};
    ASSERT_OK(read_response(&c2, &r2));
    ASSERT_EQ(r2.status, 413);
    ASSERT_TRUE(strstr(r2.body.base, "too_large") != NULL);
    stop_server();
    return 0;
}

static int test_headers_too_large(void)
{
    SETUP();
    struct sbx_buf b = SBX_BUF_INIT;
    sbx_buf_appendf(&b, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ");
    for (int i = 0; i < 17000; i++)
        sbx_buf_append(&b, "a", 1);
    sbx_buf_appendf(&b, "\r\n\r\n");
    ASSERT_OK(write_all(cl.fd, b.base, b.len));
    struct response r = {0};
    ASSERT_OK(read_response(&cl, &r));
    ASSERT_EQ(r.status, 431);
    ASSERT_TRUE(strstr(r.body.base, "headers_too_large") != NULL);
    /* Too many headers. */
    struct client c2 = {.fd = connect_server()};
    sbx_buf_reset(&b);
    sbx_buf_appendf(&b, "GET /hello HTTP/1.1\r\n");
    for (int i = 0; i < 101; i++)
        sbx_buf_appendf(&b, "X-H%d: v\r\n", i);
    sbx_buf_appendf(&b, "\r\n");
    ASSERT_OK(write_all(c2.fd, b.base, b.len));
    struct response r2 = {0};
    ASSERT_OK(read_response(&c2, &r2));
    ASSERT_EQ(r2.status, 431);
    sbx_buf_done(&b);
    stop_server();
    return 0;
}

static int test_garbage_request(void)
{
    SETUP();
    ASSERT_OK(send_str(cl.fd, "HELLO THERE\r\n\r\n"));
    struct response r = {0};
    ASSERT_OK(read_response(&cl, &r));
    ASSERT_EQ(r.status, 400);
    ASSERT_TRUE(strstr(r.body.base, "{\"error\":{\"code\":\"bad_request\",\"message\":") != NULL);
    ASSERT_TRUE(peer_closed(cl.fd));
    /* A bad chunk size. */
    struct client c2 = {.fd = connect_server()};
    ASSERT_OK(send_str(c2.fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
    struct response r2 = {0};
    ASSERT_OK(read_response(&c2, &r2));
    ASSERT_EQ(r2.status, 400);
    /* Bad percent-encoding in the path. */
    struct client c3 = {.fd = connect_server()};
    ASSERT_OK(send_str(c3.fd, "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n"));
    struct response r3 = {0};
    ASSERT_OK(read_response(&c3, &r3));
    ASSERT_EQ(r3.status, 400);
    stop_server();
    return 0;
}

static int test_streaming_response(void)
{
    SETUP();
    ASSERT_OK(send_str(cl.fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
    struct response r = {0};
    ASSERT_OK(read_response(&cl, &r));
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(resp_header(&r, "Transfer-Encoding"), "chunked");
    ASSERT_STREQ(r.body.base, "part0;part1;part2;");
    /* Keep-alive still works after a streamed response. */
    struct response r2 = {0};
    ASSERT_OK(send_str(cl.fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_OK(read_response(&cl, &r2));
    ASSERT_EQ(r2.status, 200);
    stop_server();
    return 0;
}

static int test_sse_framing(void)
{
    SETUP();
    ASSERT_OK(send_str(cl.fd, "GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"));
    struct response r = {0};
    ASSERT_OK(read_response(&cl, &r));
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(resp_header(&r, "Content-Type"), "text/event-stream");
    ASSERT_STREQ(resp_header(&r, "Cache-Control"), "no-cache");
    ASSERT_STREQ(r.body.base, "event: msg\ndata: line1\ndata: line2\n\ndata: x\n\n");
    stop_server();
    return 0;
}

static int test_abort_mid_stream(void)
{
    SETUP();
    ASSERT_OK(send_str(cl.fd, "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n"));
    char buf[256];
    ASSERT_TRUE(read(cl.fd, buf, sizeof(buf)) > 0);
    close(cl.fd);
    ASSERT_OK(wait_event("abort\n"));
    stop_server();
    return 0;
}

static int ws_send_frame(int fd, int opcode, const char *data, size_t len)
{
    uint8_t hdr[14], mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t hl = 0;
    hdr[hl++] = (uint8_t)(0x80 | opcode);
    if (len < 126)
        hdr[hl++] = (uint8_t)(0x80 | len);
    else {
        hdr[hl++] = 0x80 | 126;
        hdr[hl++] = (uint8_t)(len >> 8);
        hdr[hl++] = (uint8_t)len;
    }
    memcpy(hdr + hl, mask, 4);
    hl += 4;
    _cleanup_free_ char *p = malloc(hl + len);
    memcpy(p, hdr, hl);
    for (size_t i = 0; i < len; i++)
        p[hl + i] = (char)(data[i] ^ mask[i % 4]);
    return write_all(fd, p, hl + len);
}

/* Reads one unmasked server frame; returns opcode, payload in buf. */
static int ws_read_frame(struct client *c, char *buf, size_t *len)
{
    while (c->in.len < 2)
        if (fill(c) < 0)
            return -1;
    uint8_t b1 = (uint8_t)c->in.base[1];
    size_t n = b1 & 0x7f, hl = 2;
    if (n == 126) {
        while (c->in.len < 4)
            if (fill(c) < 0)
                return -1;
        n = (size_t)((uint8_t)c->in.base[2] << 8 | (uint8_t)c->in.base[3]);
        hl = 4;
    }
    while (c->in.len < hl + n)
        if (fill(c) < 0)
            return -1;
    int op = c->in.base[0] & 0x0f;
    memcpy(buf, c->in.base + hl, n);
    *len = n;
    sbx_buf_consume(&c->in, hl + n);
    return op;
}

static int test_websocket(void)
{
    char accept[29];
    http_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", accept);
    /* RFC 6455 section 1.3's example. */
    ASSERT_STREQ(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    SETUP();
    ASSERT_OK(send_str(
        cl.fd, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
    struct response r = {0};
    ASSERT_OK(read_response(&cl, &r));
    ASSERT_EQ(r.status, 101);
    ASSERT_STREQ(resp_header(&r, "Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    char buf[4096];
    size_t n;
    ASSERT_OK(ws_send_frame(cl.fd, 1, "Hello", 5));
    ASSERT_EQ(ws_read_frame(&cl, buf, &n), 1);
    ASSERT_EQ(n, 5);
    ASSERT_TRUE(memcmp(buf, "Hello", 5) == 0);
    /* A ping gets a pong with the same payload. */
    ASSERT_OK(ws_send_frame(cl.fd, 9, "pp", 2));
    ASSERT_EQ(ws_read_frame(&cl, buf, &n), 10);
    ASSERT_EQ(n, 2);
    /* A 300-byte message (16-bit length). */
    char big[300];
    memset(big, 'z', sizeof(big));
    ASSERT_OK(ws_send_frame(cl.fd, 1, big, sizeof(big)));
    ASSERT_EQ(ws_read_frame(&cl, buf, &n), 1);
    ASSERT_EQ(n, 300);
    /* Client-initiated close: the server echoes the close and reports the code. */
    ASSERT_OK(ws_send_frame(cl.fd, 8,
                            "\x03\xe8"
                            "done",
                            6));
    ASSERT_EQ(ws_read_frame(&cl, buf, &n), 8);
    ASSERT_TRUE(n >= 2);
    ASSERT_EQ(((uint8_t)buf[0] << 8) | (uint8_t)buf[1], 1000);
    ASSERT_OK(wait_event("ws_close 1000\n"));
    ASSERT_TRUE(peer_closed(cl.fd));

    /* Server-initiated close. */
    struct client c2 = {.fd = connect_server()};
    ASSERT_OK(send_str(c2.fd,
                       "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
    struct response r2 = {0};
    ASSERT_OK(read_response(&c2, &r2));
    ASSERT_EQ(r2.status, 101);
    ASSERT_OK(ws_send_frame(c2.fd, 1, "close", 5));
    ASSERT_EQ(ws_read_frame(&c2, buf, &n), 8);
    ASSERT_EQ(((uint8_t)buf[0] << 8) | (uint8_t)buf[1], 4000);
    ASSERT_OK(ws_send_frame(c2.fd, 8, "\x0f\xa0", 2));
    ASSERT_OK(wait_event("ws_close 4000\n"));

    /* Not an upgrade: 400 JSON. */
    struct client c3 = {.fd = connect_server()};
    ASSERT_OK(send_str(c3.fd, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"));
    struct response r3 = {0};
    ASSERT_OK(read_response(&c3, &r3));
    ASSERT_EQ(r3.status, 400);
    ASSERT_TRUE(strstr(r3.body.base, "bad_request") != NULL);
    stop_server();
    return 0;
}

static int test_streaming_upload_backpressure(void)
{
    SETUP();
    const size_t total = 8 * 1024 * 1024;
    ASSERT_OK(send_str(cl.fd, "PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n"));
    uint64_t sum = 0;
    char chunk[65536];
    for (size_t off = 0; off < total; off += sizeof(chunk)) {
        for (size_t i = 0; i < sizeof(chunk); i++) {
            chunk[i] = (char)((off + i) * 7 % 251);
            sum = sum * 31 + (unsigned char)chunk[i];
        }
        ASSERT_OK(write_all(cl.fd, chunk, sizeof(chunk)));
    }
    struct response r = {0};
    ASSERT_OK(read_response(&cl, &r));
    ASSERT_EQ(r.status, 200);
    json_t *j = json_loads(r.body.base, 0, NULL);
    ASSERT_TRUE(j);
    ASSERT_EQ(json_integer_value(json_object_get(j, "total")), (long long)total);
    ASSERT_EQ(json_integer_value(json_object_get(j, "sum")), (long long)(sum >> 1));
    ASSERT_TRUE(json_integer_value(json_object_get(j, "pauses")) >= 8);
    json_decref(j);
    stop_server();
    return 0;
}

/* http_request_take_over: the handler gets the socket, the bytes read past the head and the responses of
 * earlier pipelined requests still queued; the server forgets the connection. */
static int test_take_over(void)
{
    SETUP();
    ASSERT_OK(send_str(cl.fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
                              "GET /takeover HTTP/1.1\r\nHost: x\r\n\r\nraw bytes after the head"));
    struct response r = {0};
    ASSERT_OK(read_response(&cl, &r));
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body.base, "first");
    ASSERT_OK(wait_event("taken"));
    while (fill(&cl) == 0)
        ;
    sbx_buf_cstr(&cl.in);
    ASSERT_STREQ(cl.in.base, "TAKEN:raw bytes after the head");
    stop_server();
    return 0;
}

static int test_percent_decode(void)
{
    char out[32];
    ASSERT_EQ(http_percent_decode("a%2Fb+c", 7, out, true), 5);
    ASSERT_STREQ(out, "a/b c");
    ASSERT_EQ(http_percent_decode("a%2", 3, out, false), -EINVAL);
    ASSERT_EQ(http_percent_decode("a%00", 4, out, false), -EINVAL);
    ASSERT_EQ(http_percent_decode("a+b", 3, out, false), 3);
    ASSERT_STREQ(out, "a+b");
    return 0;
}

TESTS(TEST(test_keepalive_two_requests) TEST(test_early_answer_before_body) TEST(test_pipelined)
          TEST(test_chunked_request_body) TEST(test_body_too_large) TEST(test_headers_too_large)
              TEST(test_garbage_request) TEST(test_streaming_response) TEST(test_sse_framing)
                  TEST(test_abort_mid_stream) TEST(test_websocket) TEST(test_streaming_upload_backpressure)
                      TEST(test_percent_decode) TEST(test_take_over))
