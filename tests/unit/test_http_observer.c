/* The HTTP server's request observer (http_server_set_observer): called exactly once per request, with the
 * status sent, the JSON error code and a duration, whether the handler, the server or a lost connection
 * ended it. Server and client run in one process: the client's writes sit in the kernel until the loop
 * turns. */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "http/http.h"
#include "loop/loop.h"

struct seen {
    int status;
    char error_code[32];
    enum http_method method;
    char path[64];
    usec_t duration;
};

static struct seen seen[16];
static int n_seen;

static void observer(struct http_request *req, int status, const char *error_code, usec_t duration, void *ud)
{
    (*(int *)ud)++;
    if (n_seen == (int)ELEMENTSOF(seen))
        return;
    struct seen *s = &seen[n_seen++];
    s->status = status;
    snprintf(s->error_code, sizeof(s->error_code), "%s", error_code ? error_code : "");
    s->method = http_request_method_id(req);
    snprintf(s->path, sizeof(s->path), "%s", http_request_path(req) ? http_request_path(req) : "(null)");
    s->duration = duration;
}

static void body_done(struct http_request *req, const char *body, size_t len, void *ud)
{
    http_respond(req, 200, "text/plain", "ok", 2);
}

static void handler(struct http_request *req, void *ud)
{
    const char *path = http_request_path(req);
    if (strcmp(path, "/ok") == 0)
        http_respond(req, 200, "text/plain", "ok", 2);
    else if (strcmp(path, "/missing") == 0)
        http_respond_error(req, 404, "not_found", "no `%s`", path);
    else if (strcmp(path, "/stream") == 0) {
        http_response_begin(req, 200, "text/plain", -1);
        http_response_write(req, "x", 1);
    } else if (strcmp(path, "/small") == 0)
        http_request_read_body(req, 4, body_done, NULL);
    /* "/silent": never answered */
}

static struct loop *loop;
static struct http_server *srv;
static int calls;

static int setup(void)
{
    sbx_error err = {0};
    if (loop_new(&loop) < 0 || http_server_new(loop, "127.0.0.1", 0, NULL, handler, NULL, &srv, &err) < 0)
        return -1;
    http_server_set_observer(srv, observer, &calls);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static void teardown(void)
{
    http_server_free(srv);
    loop_free(loop);
}

static int client(const char *request)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_server_port(srv))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -1;
    if (write_all(fd, request, strlen(request)) < 0)
        return -1;
    return fd;
}

/* Turns the loop until the observer has been called `want` times in all (or a second passes). */
static void spin(int want)
{
    usec_t end = now_usec(CLOCK_MONOTONIC) + USEC_PER_SEC;
    while (calls < want && now_usec(CLOCK_MONOTONIC) < end)
        loop_run_once(loop, 10 * 1000);
    for (int i = 0; i < 5; i++) /* and a little more, to catch a second call */
        loop_run_once(loop, 0);
}

static int test_observer_sees_every_ending(void)
{
    if (setup() < 0)
        return -1;
    int a = client("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    spin(1);
    ASSERT_EQ(calls, 1);
    ASSERT_EQ(seen[0].status, 200);
    ASSERT_STREQ(seen[0].error_code, "");
    ASSERT_EQ(seen[0].method, HTTP_METHOD_GET);
    ASSERT_STREQ(seen[0].path, "/ok");
    ASSERT_TRUE(seen[0].duration < 5 * USEC_PER_SEC);

    int b = client("DELETE /missing HTTP/1.1\r\nHost: x\r\n\r\n");
    spin(2);
    ASSERT_EQ(calls, 2);
    ASSERT_EQ(seen[1].status, 404);
    ASSERT_STREQ(seen[1].error_code, "not_found");
    ASSERT_EQ(seen[1].method, HTTP_METHOD_DELETE);

    /* The server's own errors: a request line that does not parse, a body over the handler's limit. */
    int c = client("NOT HTTP AT ALL\r\n\r\n");
    spin(3);
    ASSERT_EQ(calls, 3);
    ASSERT_EQ(seen[2].status, 400);
    ASSERT_STREQ(seen[2].error_code, "bad_request");
    ASSERT_EQ(seen[2].method, HTTP_METHOD_OTHER);
    ASSERT_STREQ(seen[2].path, "(null)");
    int d = client("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789");
    spin(4);
    ASSERT_EQ(calls, 4);
    ASSERT_EQ(seen[3].status, 413);
    ASSERT_STREQ(seen[3].error_code, "too_large");
    ASSERT_STREQ(seen[3].path, "/small");

    /* A streamed response cut by the client reports what it had sent; an unanswered request 0. */
    int e = client("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    int f = client("GET /silent HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 20; i++)
        loop_run_once(loop, 1000);
    ASSERT_EQ(calls, 4); /* both still open */
    close(e);
    spin(5);
    ASSERT_EQ(calls, 5);
    ASSERT_EQ(seen[4].status, 200);
    ASSERT_STREQ(seen[4].path, "/stream");
    close(f);
    spin(6);
    ASSERT_EQ(calls, 6);
    ASSERT_EQ(seen[5].status, 0);
    ASSERT_STREQ(seen[5].path, "/silent");

    /* A half-sent request is no request: nothing reported. */
    int g = client("GET /ok HTTP/1.1\r\nHo");
    spin(7);
    close(g);
    spin(7);
    ASSERT_EQ(calls, 6);

    /* Keep-alive: the second request on a connection is reported on its own. */
    ASSERT_EQ(write_all(a, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", 29), 0);
    spin(7);
    ASSERT_EQ(calls, 7);
    ASSERT_EQ(seen[6].status, 200);

    close(a);
    close(b);
    close(c);
    close(d);
    teardown();
    ASSERT_EQ(calls, 7); /* shutting down reports nothing twice */
    return 0;
}

TESTS(TEST(test_observer_sees_every_ending))
