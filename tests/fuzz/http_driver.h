/* Shared by fuzz_http.c and fuzz_ws.c: a real http_server on 127.0.0.1 (port picked by the kernel) driven
 * by its own loop, and a handler that exercises the request API the /v1 handlers use (query and header
 * lookups, the router, buffered and streamed bodies, chunked responses, SSE, WebSocket echo).
 *
 * Each input is written to a fresh loopback TCP connection, the client's write side is shut, and the loop
 * runs until the server has closed the connection. Going through the socket and the loop, not a private
 * entry point, keeps src/http free of test hooks; it costs a connect per input (a few thousand inputs a
 * second). The server usually closes first, which leaves its side in TIME_WAIT for a minute; to keep those
 * from using up the ephemeral ports of one address pair, each connection comes from the next source
 * address in 127.1.0.0/16 (all of 127/8 is loopback). */
#pragma once

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/error.h"
#include "http/http.h"
#include "loop/loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct loop *fz_loop;
static struct http_server *fz_srv;
static int fz_port;

static void fz_ws_message(struct http_ws *ws, const char *data, size_t len, bool text)
{
    if (len == 5 && memcmp(data, "close", 5) == 0) {
        http_ws_close(ws, 1000, "bye");
        return;
    }
    if (len == 5 && memcmp(data, "pause", 5) == 0) {
        http_ws_pause(ws, true);
        http_ws_pause(ws, false);
    }
    (void)http_ws_remote(ws);
    if (text)
        (void)http_ws_send_text(ws, data, len);
    else
        (void)http_ws_send_binary(ws, data, len);
}

static void fz_on_text(struct http_ws *ws, const char *data, size_t len, void *ud)
{
    fz_ws_message(ws, data, len, true);
}

static void fz_on_binary(struct http_ws *ws, const char *data, size_t len, void *ud)
{
    fz_ws_message(ws, data, len, false);
}

static void fz_on_close(struct http_ws *ws, int code, void *ud)
{
    assert(code >= 1000 && code < 5000);
}

static const struct http_ws_callbacks fz_ws_cbs = {
    .on_text = fz_on_text, .on_binary = fz_on_binary, .on_close = fz_on_close};

static void fz_body(struct http_request *req, const char *body, size_t len, void *ud)
{
    assert(body[len] == '\0');
    http_respond(req, 200, "application/octet-stream", body, len);
}

static int fz_chunk(struct http_request *req, const char *data, size_t len, void *ud)
{
    return 0;
}

static void fz_end(struct http_request *req, void *ud)
{
    http_response_header(req, "X-Fuzz", "end");
    http_response_begin(req, 200, "text/plain", -1);
    (void)http_response_write(req, "ok\n", 3);
    http_response_end(req);
}

static void fz_route(struct http_request *req, const char *const *captures, void *ud)
{
    json_t *j = json_object();
    for (int i = 0; i < HTTP_ROUTE_MAX_CAPTURES && captures[i]; i++)
        json_object_set_new(j, "capture", json_string(captures[i]));
    json_object_set_new(j, "q", json_string(http_query_get(req, "q") ?: ""));
    http_respond_json(req, 200, j);
}

static const struct http_route fz_routes[] = {
    {"GET", "/v1/sandboxes/*", fz_route},
    {"POST", "/v1/sandboxes/*/commands", fz_route},
    {NULL, "/v1/sandboxes/*/files/**", fz_route},
};

static void fz_handler(struct http_request *req, void *ud)
{
    const char *path = http_request_path(req);
    assert(path && path[0] == '/');
    (void)http_request_method(req);
    (void)http_request_target(req);
    (void)http_request_query(req);
    (void)http_request_remote(req);
    (void)http_request_version(req);
    (void)http_request_content_length(req);
    (void)http_header_get(req, "Host");
    (void)http_query_get(req, "a");
    for (size_t i = 0; i < http_header_count(req); i++) {
        const char *n, *v;
        assert(http_header_at(req, i, &n, &v) && n && v);
    }
    if (http_request_is_websocket(req)) {
        struct http_ws *ws;
        (void)http_websocket_accept(req, &fz_ws_cbs, NULL, &ws);
    } else if (strcmp(path, "/body") == 0)
        http_request_read_body(req, 4096, fz_body, NULL);
    else if (strcmp(path, "/stream") == 0)
        http_request_stream_body(req, fz_chunk, fz_end, NULL);
    else if (strcmp(path, "/sse") == 0) {
        http_sse_begin(req);
        (void)http_sse_send(req, "output", "a\r\nb\nc", 6);
        (void)http_sse_comment(req, "ping");
        http_response_end(req);
    } else if (strcmp(path, "/error") == 0)
        http_respond_error(req, 409, "conflict", "path `%s`", path);
    else
        (void)http_route_dispatch(req, fz_routes, sizeof(fz_routes) / sizeof(fz_routes[0]), NULL);
}

static void fz_init(void)
{
    if (fz_srv)
        return;
    signal(SIGPIPE, SIG_IGN);
    struct http_server_config cfg = {
        .max_header_bytes = 4096, .max_headers = 32, .discard_body_max = 8192, .ws_max_message = 65536};
    sbx_error err = {0};
    if (loop_new(&fz_loop) < 0 ||
        http_server_new(fz_loop, "127.0.0.1", 0, &cfg, fz_handler, NULL, &fz_srv, &err) < 0)
        abort();
    fz_port = http_server_port(fz_srv);
}

/* Sends prefix then data on a new connection and runs the loop until the server is done with it. */
static void fz_run(const char *prefix, size_t plen, const uint8_t *data, size_t size)
{
    fz_init();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fz_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static uint32_t n_conns;
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f010000u | (n_conns++ & 0xffffu));
    /* Non-blocking connect: libFuzzer's SIGALRM (its -timeout watchdog) interrupts a blocking one (EINTR). */
    (void)fcntl(fd, F_SETFL, O_NONBLOCK);
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
        perror("fuzz: bind the client socket");
        abort();
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS && errno != EINTR) {
        perror("fuzz: connect to the server");
        abort();
    }
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int pr = poll(&pfd, 1, 10000);
        if (pr < 0 && errno == EINTR)
            continue;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (pr != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
            fprintf(stderr, "fuzz: connect to the server: %s\n", pr == 1 ? strerror(soerr) : "timed out");
            abort();
        }
        break;
    }

    uint8_t *in = malloc(plen + size + 1);
    memcpy(in, prefix, plen);
    if (size)
        memcpy(in + plen, data, size);
    size_t len = plen + size, off = 0;
    bool shut = false, closed = false;
    for (int i = 0; i < 5000 && !closed; i++) {
        if (off < len) {
            ssize_t n = send(fd, in + off, len - off, MSG_NOSIGNAL);
            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                off = len;
        }
        if (off == len && !shut) {
            (void)shutdown(fd, SHUT_WR);
            shut = true;
        }
        (void)loop_run_once(fz_loop, 2000);
        char buf[65536];
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n > 0)
                continue;
            if (n == 0 || (errno != EAGAIN && errno != EINTR))
                closed = true;
            break;
        }
    }
    free(in);
    close(fd);
    for (int i = 0; i < 1000 && http_server_connections(fz_srv) > 0; i++)
        (void)loop_run_once(fz_loop, 2000);
    /* The server must not keep a connection whose peer is gone. */
    assert(http_server_connections(fz_srv) == 0);
}
