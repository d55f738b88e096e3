/* sbx tunnel: a local TCP listener whose connections reach a port inside a sandbox through sbxd's
 * tunnel WebSocket (GET /v1/sandboxes/{id}/tunnel, docs/api.md "TCP tunnels"): one yamux session, one
 * stream per accepted connection, each opened with the 3-byte connect header and answered with a status
 * byte. Single-threaded poll loop. Flow control: yamux windows (256 KiB each way per stream); data from
 * sbxd is credited back only once written to the local socket, and local sockets are not read while the
 * WebSocket's output queue is large, so memory stays bounded whatever the speeds. Plain http:// only. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"

#define WINDOW (256u * 1024)
#define CREDIT_STEP (128u * 1024)
#define WS_OUT_HIGH (4u << 20) /* stop reading local sockets above this much queued for sbxd */
#define MAX_CONNS 1000
#define Y_HDR 12

struct tbuf {
    uint8_t *data;
    size_t len, cap;
};

static void tb_append(struct tbuf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *nd = realloc(b->data, cap);
        if (!nd) {
            fprintf(stderr, "sbx tunnel: out of memory\n");
            exit(1);
        }
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void tb_consume(struct tbuf *b, size_t n)
{
    if (n == 0)
        return;
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

struct conn {
    int fd;
    uint32_t id;
    uint32_t send_window, uncredited;
    int status;          /* -1 until sbxd answered */
    struct tbuf pending; /* from sbxd, for the local socket */
    bool local_eof, remote_fin, shut_wr;
};

static struct conn *conns[MAX_CONNS];
static size_t n_conns;
static struct tbuf ws_out, ws_in, ymx_in;
static int ws_fd = -1;
static uint32_t next_id = 1;

/* One masked binary WebSocket message. */
static void ws_send(const uint8_t *p, size_t n)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = 0x82;
    if (n < 126)
        hdr[h++] = (uint8_t)(0x80 | n);
    else if (n < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(n >> 8);
        hdr[h++] = (uint8_t)n;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    uint8_t mask[4];
    if (getrandom(mask, 4, 0) != 4)
        memset(mask, 0x5a, 4);
    memcpy(hdr + h, mask, 4);
    h += 4;
    tb_append(&ws_out, hdr, h);
    size_t at = ws_out.len;
    tb_append(&ws_out, p, n);
    for (size_t i = 0; i < n; i++)
        ws_out.data[at + i] ^= mask[i & 3];
}

static void y_send(uint8_t type, uint16_t flags, uint32_t id, uint32_t len, const void *payload, size_t plen)
{
    uint8_t stackbuf[Y_HDR + 8];
    uint8_t *b = plen + Y_HDR <= sizeof(stackbuf) ? stackbuf : malloc(Y_HDR + plen);
    if (!b) {
        fprintf(stderr, "sbx tunnel: out of memory\n");
        exit(1);
    }
    b[0] = 0;
    b[1] = type;
    b[2] = (uint8_t)(flags >> 8);
    b[3] = (uint8_t)flags;
    uint32_t i = htonl(id), l = htonl(len);
    memcpy(b + 4, &i, 4);
    memcpy(b + 8, &l, 4);
    if (plen)
        memcpy(b + Y_HDR, payload, plen);
    ws_send(b, Y_HDR + plen);
    if (b != stackbuf)
        free(b);
}

static void conn_close(size_t idx)
{
    struct conn *c = conns[idx];
    close(c->fd);
    free(c->pending.data);
    free(c);
    conns[idx] = conns[--n_conns];
}

static struct conn *conn_find(uint32_t id, size_t *ret_idx)
{
    for (size_t i = 0; i < n_conns; i++)
        if (conns[i]->id == id) {
            *ret_idx = i;
            return conns[i];
        }
    return NULL;
}

static int parse_url(const char *url, char *host, size_t hsize, char *port, size_t psize)
{
    if (strncmp(url, "http://", 7) != 0)
        return -EINVAL;
    const char *h = url + 7, *end = h + strcspn(h, "/");
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return -EINVAL;
        snprintf(host, hsize, "%.*s", (int)(rb - h - 1), h + 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        snprintf(host, hsize, "%.*s", (int)((colon ? colon : end) - h), h);
    }
    if (colon)
        snprintf(port, psize, "%.*s", (int)(end - colon - 1), colon + 1);
    else
        snprintf(port, psize, "80");
    return 0;
}

/* Connects and upgrades; returns the socket or -1 after printing why. */
static int ws_connect(const char *sid)
{
    const char *url = getenv("SBX_URL");
    if (!url || !*url)
        url = SBX_DEFAULT_URL;
    char host[256], port[16];
    if (parse_url(url, host, sizeof(host), port, sizeof(port)) < 0) {
        fprintf(stderr, "sbx tunnel: SBX_URL must be http://HOST[:PORT] (https is not supported here)\n");
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int r = getaddrinfo(host, port, &hints, &ai);
    if (r != 0) {
        fprintf(stderr, "sbx tunnel: %s: %s\n", host, gai_strerror(r));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        fprintf(stderr, "sbx tunnel: cannot connect to %s: %s\n", url, strerror(errno));
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint8_t key[16];
    if (getrandom(key, sizeof(key), 0) != sizeof(key))
        memset(key, 7, sizeof(key));
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char k64[25];
    size_t o = 0;
    for (size_t i = 0; i < 16; i += 3) {
        uint32_t v = (uint32_t)key[i] << 16 | (i + 1 < 16 ? (uint32_t)key[i + 1] << 8 : 0) |
                     (i + 2 < 16 ? key[i + 2] : 0);
        k64[o++] = b64[(v >> 18) & 63];
        k64[o++] = b64[(v >> 12) & 63];
        k64[o++] = i + 1 < 16 ? b64[(v >> 6) & 63] : '=';
        k64[o++] = i + 2 < 16 ? b64[v & 63] : '=';
    }
    k64[o] = 0;
    const char *api_key = getenv("SBX_API_KEY");
    char req[2048];
    int n =
        snprintf(req, sizeof(req),
                 "GET /v1/sandboxes/%s/tunnel HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                 sid, host, port, k64, api_key && *api_key ? "Authorization: Bearer " : "",
                 api_key && *api_key ? api_key : "", api_key && *api_key ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) {
        fprintf(stderr, "sbx tunnel: cannot send the upgrade request\n");
        close(fd);
        return -1;
    }
    char head[8192];
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        ssize_t got = read(fd, head + len, sizeof(head) - 1 - len);
        if (got <= 0 || len + (size_t)got >= sizeof(head) - 1) {
            fprintf(stderr, "sbx tunnel: sbxd closed the connection during the upgrade\n");
            close(fd);
            return -1;
        }
        len += (size_t)got;
        head[len] = 0;
        end = strstr(head, "\r\n\r\n");
    }
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        const char *body = end + 4;
        fprintf(stderr, "sbx tunnel: %.*s %s\n", (int)strcspn(head, "\r"), head, body);
        close(fd);
        return -1;
    }
    size_t extra = len - (size_t)(end + 4 - head);
    tb_append(&ws_in, end + 4, extra);
    return fd;
}

/* Handles the yamux frames in ymx_in. Returns -1 when the session is over. */
static int y_process(void)
{
    size_t off = 0;
    while (ymx_in.len - off >= Y_HDR) {
        const uint8_t *h = ymx_in.data + off;
        uint8_t type = h[1];
        uint16_t flags = (uint16_t)(h[2] << 8 | h[3]);
        uint32_t id, len;
        memcpy(&id, h + 4, 4);
        memcpy(&len, h + 8, 4);
        id = ntohl(id);
        len = ntohl(len);
        size_t need = Y_HDR + (type == 0 ? len : 0);
        if (ymx_in.len - off < need)
            break;
        const uint8_t *p = h + Y_HDR;
        off += need;
        if (type == 2) {
            if (flags & 1)
                y_send(2, 2, 0, len, NULL, 0);
            continue;
        }
        if (type == 3) {
            tb_consume(&ymx_in, off);
            return -1;
        }
        size_t idx;
        struct conn *c = conn_find(id, &idx);
        if (!c)
            continue;
        if (flags & 8) {
            conn_close(idx);
            continue;
        }
        if (type == 1)
            c->send_window += len;
        else if (len > 0) {
            if (c->status < 0) {
                c->status = p[0];
                p++;
                len--;
                c->uncredited++;
                if (c->status != 0) {
                    fprintf(stderr, "sbx tunnel: the sandbox refused a connection (%s)\n",
                            c->status == 2 ? "nothing listens on the port" : "status");
                    y_send(1, 8, c->id, 0, NULL, 0);
                    conn_close(idx);
                    continue;
                }
            }
            tb_append(&c->pending, p, len);
        }
        if (flags & 4)
            c->remote_fin = true;
    }
    tb_consume(&ymx_in, off);
    return 0;
}

/* Unwraps WebSocket frames from ws_in into ymx_in. Returns -1 when sbxd closed the WebSocket. */
static int ws_process(void)
{
    for (;;) {
        if (ws_in.len < 2)
            return 0;
        const uint8_t *b = ws_in.data;
        int op = b[0] & 0x0f;
        uint64_t n = b[1] & 0x7f;
        size_t h = 2;
        if (n == 126) {
            if (ws_in.len < 4)
                return 0;
            n = (uint64_t)b[2] << 8 | b[3];
            h = 4;
        } else if (n == 127) {
            if (ws_in.len < 10)
                return 0;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | b[2 + i];
            h = 10;
        }
        if (b[1] & 0x80)
            h += 4; /* a server never masks; tolerate it anyway */
        if (ws_in.len < h + n)
            return 0;
        if (op == 8)
            return -1;
        if (op == 9) { /* ping: pong */
            uint8_t pong[2 + 4 + 125];
            size_t pl = n > 125 ? 125 : (size_t)n;
            pong[0] = 0x8a;
            pong[1] = (uint8_t)(0x80 | pl);
            memset(pong + 2, 0, 4);
            memcpy(pong + 6, b + h, pl);
            tb_append(&ws_out, pong, 6 + pl);
        } else if (op <= 2)
            tb_append(&ymx_in, b + h, (size_t)n);
        tb_consume(&ws_in, h + (size_t)n);
    }
}

static int tunnel_main(int argc, char **argv)
{
    int first;
    int r = cli_simple_args(&cli_cmd_tunnel, argc, argv, NULL, &first);
    if (r != 0)
        return r > 0 ? 0 : 2;
    int n = argc - first;
    if (n != 2 && n != 3)
        return cli_usage_error(&cli_cmd_tunnel, "expected a sandbox id and a port", 2);
    char *end;
    long rport = strtol(argv[first + 1], &end, 10);
    if (*end || rport < 1 || rport > 65535)
        return cli_usage_error(&cli_cmd_tunnel, "REMOTE_PORT must be an integer in 1..65535", 2);
    long lport = rport;
    if (n == 3) {
        lport = strtol(argv[first + 2], &end, 10);
        if (*end || lport < 0 || lport > 65535)
            return cli_usage_error(&cli_cmd_tunnel, "LOCAL_PORT must be an integer in 0..65535", 2);
    }
    signal(SIGPIPE, SIG_IGN);
    ws_fd = ws_connect(argv[first]);
    if (ws_fd < 0)
        return 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    (void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lport)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
        fprintf(stderr, "sbx tunnel: listen on 127.0.0.1:%ld: %s\n", lport, strerror(errno));
        return 1;
    }
    printf("127.0.0.1:%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    static uint8_t buf[65536];
    struct pollfd *pfds = calloc(MAX_CONNS + 2, sizeof(*pfds));
    if (!pfds)
        return 1;
    for (;;) {
        size_t np = 0;
        pfds[np++] = (struct pollfd){.fd = ws_fd, .events = (short)(POLLIN | (ws_out.len ? POLLOUT : 0))};
        pfds[np++] = (struct pollfd){.fd = lfd, .events = n_conns < MAX_CONNS ? POLLIN : 0};
        for (size_t i = 0; i < n_conns; i++) {
            struct conn *c = conns[i];
            short ev = 0;
            if (!c->local_eof && c->send_window > 0 && ws_out.len < WS_OUT_HIGH)
                ev |= POLLIN;
            if (c->pending.len)
                ev |= POLLOUT;
            pfds[np++] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        if (poll(pfds, np, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (pfds[0].revents & POLLOUT) {
            ssize_t w = send(ws_fd, ws_out.data, ws_out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "sbx tunnel: connection to sbxd lost\n");
                return 1;
            }
            if (w > 0)
                tb_consume(&ws_out, (size_t)w);
        }
        if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t got = read(ws_fd, buf, sizeof(buf));
            if (got <= 0) {
                fprintf(stderr, "sbx tunnel: sbxd closed the tunnel\n");
                return 1;
            }
            tb_append(&ws_in, buf, (size_t)got);
        }
        if (ws_process() < 0 || y_process() < 0) {
            fprintf(stderr, "sbx tunnel: sbxd ended the tunnel\n");
            return 1;
        }
        /* Local connections: the pollfds map 1:1 onto conns as they were before y_process; match by fd. */
        for (size_t k = 2; k < np; k++) {
            size_t idx = SIZE_MAX;
            for (size_t i = 0; i < n_conns; i++)
                if (conns[i]->fd == pfds[k].fd)
                    idx = i;
            if (idx == SIZE_MAX)
                continue;
            struct conn *c = conns[idx];
            short re = pfds[k].revents;
            if ((re & POLLOUT) && c->pending.len) {
                ssize_t w = send(c->fd, c->pending.data, c->pending.len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w > 0) {
                    tb_consume(&c->pending, (size_t)w);
                    c->uncredited += (uint32_t)w;
                } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    y_send(1, 8, c->id, 0, NULL, 0);
                    conn_close(idx);
                    continue;
                }
            }
            if ((re & (POLLIN | POLLHUP | POLLERR)) && !c->local_eof && c->send_window > 0) {
                size_t want = c->send_window < sizeof(buf) ? c->send_window : sizeof(buf);
                ssize_t got = read(c->fd, buf, want);
                if (got > 0) {
                    y_send(0, 0, c->id, (uint32_t)got, buf, (size_t)got);
                    c->send_window -= (uint32_t)got;
                } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                    y_send(0, 4, c->id, 0, NULL, 0);
                    c->local_eof = true;
                }
            }
        }
        /* Credits, half-closes and finished connections. */
        for (size_t i = 0; i < n_conns;) {
            struct conn *c = conns[i];
            if (c->uncredited >= CREDIT_STEP || (c->pending.len == 0 && c->uncredited > 0)) {
                y_send(1, 0, c->id, c->uncredited, NULL, 0);
                c->uncredited = 0;
            }
            if (c->remote_fin && c->pending.len == 0 && !c->shut_wr) {
                (void)shutdown(c->fd, SHUT_WR);
                c->shut_wr = true;
            }
            if (c->shut_wr && c->local_eof) {
                conn_close(i);
                continue;
            }
            i++;
        }
        if (pfds[1].revents & POLLIN) {
            int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (cfd >= 0) {
                (void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                struct conn *c = calloc(1, sizeof(*c));
                if (!c)
                    return 1;
                c->fd = cfd;
                c->id = next_id;
                next_id += 2;
                c->status = -1;
                c->send_window = WINDOW - 3;
                conns[n_conns++] = c;
                uint8_t hdr[3] = {1, (uint8_t)(rport >> 8), (uint8_t)rport};
                y_send(1, 1, c->id, 0, NULL, 0);
                y_send(0, 0, c->id, 3, hdr, 3);
            }
        }
    }
}

const struct cli_command cli_cmd_tunnel = {
    .name = "tunnel",
    .run = tunnel_main,
    .summary = "forward a local TCP port to a port inside a sandbox",
    .usage = "Usage: sbx tunnel ID REMOTE_PORT [LOCAL_PORT]\n"
             "\n"
             "Listens on 127.0.0.1:LOCAL_PORT (default REMOTE_PORT; 0 picks a free one), prints that\n"
             "address, and carries every connection to it to 127.0.0.1:REMOTE_PORT (or [::1]) inside the\n"
             "sandbox through sbxd's tunnel WebSocket (yamux), until interrupted. The sandbox needs no\n"
             "network. $SBX_URL must be http://.\n",
};
