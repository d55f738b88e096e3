/* Fuzzes the yamux session decoder of TCP tunnels (src/api/tunnel.c: process_frames, stream_open,
 * stream_data and the LangSmith 3-byte connect header), fed the client's WebSocket messages.
 *
 * tunnel.c is #included (the h2o unit-test trick, STYLE.md I), so its static functions are reachable with
 * no hook in src/. What it calls outside itself is stubbed below: the WebSocket send/close (frames sbxd
 * sends are checked for well-formedness; every 7th send reports backpressure so the blocked/drain path
 * runs), the sandbox (always up) and shim_connect_port (ports with an even number get one end of a
 * socketpair whose other end holds a little data and is then closed, so streams read, write, get EOF and
 * finish; odd ports fail to dial). The loop is the real one.
 *
 * Input: a sequence of messages, each a 2-byte big-endian length and that many bytes (the rest of the
 * input when shorter); the loop runs once between messages. */
#include "api/tunnel.c"

#include <assert.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PEERS_MAX 2048
static int peers[PEERS_MAX];
static size_t n_peers;
static unsigned sends;
static bool ws_closed;

int http_ws_send_binary(struct http_ws *ws, const void *data, size_t len)
{
    const uint8_t *p = data;
    assert(len >= Y_HDR && p[0] == 0 && p[1] <= Y_GOAWAY);
    uint32_t l;
    memcpy(&l, p + 8, 4);
    assert(p[1] != Y_DATA || ntohl(l) == len - Y_HDR);
    return ++sends % 7 == 0;
}

void http_ws_close(struct http_ws *ws, int code, const char *reason)
{
    ws_closed = true;
}

int shim_connect_port(const char *state_dir, int port, int timeout_ms, int *ret_fd, sbx_error *err)
{
    int sv[2];
    if (port % 2 || n_peers == PEERS_MAX ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        return sbx_error_set(err, -ECONNREFUSED, "nothing listening on port %d", port);
    if (port % 4 == 0) {
        static const char hello[] = "service says hello";
        (void)!write(sv[1], hello, sizeof(hello) - 1);
        (void)shutdown(sv[1], SHUT_WR);
    }
    peers[n_peers++] = sv[1];
    *ret_fd = sv[0];
    return 0;
}

int sandbox_need_up(const struct sandbox *sb, sbx_error *err)
{
    return 0;
}

void sandbox_touch(struct sandbox *sb)
{
}

void sandbox_attach(struct sandbox *sb)
{
}

void sandbox_detach(struct sandbox *sb)
{
}

struct sandbox *sandbox_unref(struct sandbox *sb)
{
    return NULL;
}

/* Referenced only by api_tunnel, which the harness does not call. */
bool http_request_is_websocket(const struct http_request *req)
{
    abort();
}

void http_respond_error(struct http_request *req, int status, const char *code, const char *fmt, ...)
{
    abort();
}

int http_websocket_accept(struct http_request *req, const struct http_ws_callbacks *cbs, void *userdata,
                          struct http_ws **ret)
{
    abort();
}

struct sandbox *api_sandbox_awake(struct api_ctx *c)
{
    abort();
}

void api_reply_error(struct http_request *req, const sbx_error *err)
{
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct daemon d;
    static struct sandbox sb;
    static char ws_dummy;
    if (!d.loop && loop_new(&d.loop) < 0)
        abort();
    sb.state_dir = (char *)"/nonexistent";

    struct tunnel *t = xcalloc(1, sizeof(*t));
    t->d = &d;
    t->sb = &sb;
    t->ws = (struct http_ws *)&ws_dummy;
    sends = 0;
    ws_closed = false;
    size_t off = 0;
    while (off < size && !t->closing) {
        size_t len = size - off >= 2 ? (size_t)(data[off] << 8 | data[off + 1]) : 0;
        off += size - off >= 2 ? 2 : size - off;
        if (len > size - off)
            len = size - off;
        on_message(t->ws, (const char *)data + off, len, t);
        off += len;
        if (t->blocked)
            on_drain(t->ws, t);
        (void)loop_run_once(d.loop, 0);
    }
    assert(!t->closing || ws_closed);
    on_close(t->ws, 1006, t); /* frees t and its streams */
    for (size_t i = 0; i < n_peers; i++)
        close(peers[i]);
    n_peers = 0;
    return 0;
}
