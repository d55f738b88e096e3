/* HTTP/1.1 server on the epoll loop: keep-alive, pipelining (one request at a time per connection),
 * Content-Length and chunked bodies, Expect: 100-continue, buffered or streamed request bodies with
 * backpressure, streamed responses (Content-Length or chunked), SSE and WebSocket (wslay).
 *
 * Object lifetimes (read this before writing a handler):
 *
 * - The server calls handler(req, userdata) once the request headers are complete. The request stays valid
 *   until the handler completes the response (http_respond*, http_response_end, http_response_abort,
 *   a successful or failed http_websocket_accept), or until the server calls the request's on_abort
 *   callback, whichever comes first. The response may be completed later from any loop callback
 *   (asynchronously). After completion or on_abort the handler must not touch req.
 * - on_abort fires only when the connection dies (peer closed or reset, write error, hard output limit,
 *   server shutdown) before the response was completed. It is never called from inside an http_* call made
 *   by the handler; it always runs from the loop. After on_abort no other callback of that request runs.
 * - Every string the request hands out (method, path, query values, headers) is owned by the request and
 *   lives as long as it does; handlers never free them.
 * - http_request_set_userdata's free function runs when the request is destroyed, in every case
 *   (completed, aborted, server freed): use it as the catch-all to release per-request state.
 * - Callbacks registered by the handler (body, drain, abort) are never called after the response is
 *   completed, except the body callbacks of http_request_read_body/stream_body, which still run if the
 *   handler answered early but the body is still arriving (the handler may ignore them).
 *
 * Errors produced by the server itself (400 bad_request, 408 request_timeout, 413 too_large,
 * 431 headers_too_large, 417 expectation_failed, 501 unimplemented) always carry the JSON body
 * {"error":{"code":...,"message":...}} and close the connection.
 *
 * Nothing in here logs above debug (STYLE.md G). */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/util.h"

struct loop;
struct http_server;
struct http_request;
struct http_ws;

/* Zero fields take the defaults shown. */
struct http_server_config {
    size_t max_header_bytes;  /* 16 KiB: request line + headers, beyond -> 431 */
    unsigned max_headers;     /* 100, beyond -> 431 */
    usec_t header_timeout;    /* 10 s from the first byte of a request to the end of its headers */
    usec_t idle_timeout;      /* 60 s keep-alive idle, and no body progress while the server waits for it */
    size_t output_soft_limit; /* 1 MiB queued: writes return 1, on_drain fires when it drains below */
    size_t output_hard_limit; /* 64 MiB queued: the connection is closed (on_abort) */
    size_t discard_body_max; /* 1 MiB: an unread body is discarded up to this, beyond the connection closes */
    size_t ws_max_message;   /* 1 MiB from the client, beyond -> close 1009 */
    unsigned max_connections; /* 4096; over it new connections are accepted and closed at once */
};

typedef void (*http_handler_fn)(struct http_request *req, void *userdata);

/* Listens on host:port (IPv4 or IPv6 literal, "localhost", "*" / "" / NULL = all IPv4+IPv6 addresses; port 0
 * picks a free port, see http_server_port). cfg may be NULL (defaults); it is copied. handler gets every
 * request with userdata. Returns 0 or -errno with err filled (ret untouched). */
int http_server_new(struct loop *loop, const char *host, int port, const struct http_server_config *cfg,
                    http_handler_fn handler, void *userdata, struct http_server **ret, sbx_error *err);
/* The bound port (useful after port 0). */
int http_server_port(const struct http_server *srv);
/* Closes the listener and every connection. Requests in flight get on_abort, WebSockets on_close(1001),
 * synchronously from inside this call. Accepts NULL, returns NULL. */
struct http_server *http_server_free(struct http_server *srv);
/* Number of open connections (tests, stats). */
size_t http_server_connections(const struct http_server *srv);

/* Observation (metrics, access logs): fn runs exactly once for every request the server began to parse,
 * when it is over for the server's purposes:
 * - its response was completed (status as sent; 101 for an accepted WebSocket upgrade; a handler that
 *   gave up with http_response_abort before beginning a response reports 0),
 * - the server answered an error itself (400, 408, 413, 417, 431, ...),
 * - or the connection died first (status 0, or the status already sent when a streamed response was cut;
 *   an SSE stream that the client closes ends this way).
 * A request that never got its headers and no answer (a peer that closed mid-request) is not reported.
 * error_code is the JSON error `code` of a response sent by http_respond_error or by the server, NULL
 * otherwise. duration runs from the request's first byte to the observation. req may be inspected (method,
 * path, userdata; method is HTTP_METHOD_OTHER and path NULL when the headers never parsed) but not answered.
 * fn must not call into the server. NULL turns observation off. Costs two clock reads per request. */
typedef void (*http_observer_fn)(struct http_request *req, int status, const char *error_code,
                                 usec_t duration, void *userdata);
void http_server_set_observer(struct http_server *srv, http_observer_fn fn, void *userdata);

/* --- requests ----------------------------------------------------------------------------------- */

enum http_method {
    HTTP_METHOD_GET,
    HTTP_METHOD_HEAD,
    HTTP_METHOD_POST,
    HTTP_METHOD_PUT,
    HTTP_METHOD_DELETE,
    HTTP_METHOD_PATCH,
    HTTP_METHOD_OPTIONS,
    HTTP_METHOD_OTHER, /* see http_request_method() for the name */
    _HTTP_METHOD_MAX,
    _HTTP_METHOD_INVALID = -EINVAL,
};

/* "GET", "POST", ... */
const char *http_request_method(const struct http_request *req);
enum http_method http_request_method_id(const struct http_request *req);
/* The %-decoded path without the query ("/v1/sandboxes/x"). A path that decodes to a NUL byte or is not
 * origin-form is answered with 400 before the handler runs. */
const char *http_request_path(const struct http_request *req);
/* The raw query string after '?', without it; "" when there is none. */
const char *http_request_query(const struct http_request *req);
/* The raw request target as sent ("/v1/x?y=1"). */
const char *http_request_target(const struct http_request *req);
/* The %-decoded ('+' is a space) value of the first query parameter called name; "" for "?name" or
 * "?name="; NULL when absent. Owned by the request. */
const char *http_query_get(struct http_request *req, const char *name);
/* The value of the first header called name (case-insensitive), NULL when absent. Repeated headers are not
 * joined. Owned by the request. */
const char *http_header_get(const struct http_request *req, const char *name);
/* Header iteration in arrival order: returns false when i is past the end. */
size_t http_header_count(const struct http_request *req);
bool http_header_at(const struct http_request *req, size_t i, const char **ret_name, const char **ret_value);
/* "127.0.0.1:5555" or "[::1]:5555". */
const char *http_request_remote(const struct http_request *req);
/* 10 for HTTP/1.0, 11 for HTTP/1.1. */
int http_request_version(const struct http_request *req);
/* The declared Content-Length, or -1 when the body is chunked; 0 when there is no body. */
int64_t http_request_content_length(const struct http_request *req);
bool http_request_has_body(const struct http_request *req);

/* Per-request arena: memory freed when the request is destroyed. Aborts on OOM. */
void *http_request_alloc(struct http_request *req, size_t size);
char *http_request_strdup(struct http_request *req, const char *s);

/* Attaches handler state; free_fn(data) (may be NULL) runs when the request is destroyed, in every case.
 * A second call replaces the data without freeing the old one. */
void http_request_set_userdata(struct http_request *req, void *data, void (*free_fn)(void *data));
void *http_request_get_userdata(const struct http_request *req);

/* --- request bodies ----------------------------------------------------------------------------- */

/* The whole body; body is NUL-terminated (not counted in len), owned by the request, valid until it is
 * destroyed. */
typedef void (*http_body_cb)(struct http_request *req, const char *body, size_t len, void *userdata);
/* A piece of a streamed body. Return 0 to continue or 1 to pause reading (same as http_request_pause_body);
 * data is valid only during the call. */
typedef int (*http_chunk_cb)(struct http_request *req, const char *data, size_t len, void *userdata);
/* The streamed body ended (every byte was delivered). */
typedef void (*http_end_cb)(struct http_request *req, void *userdata);

/* Buffers the body up to max_bytes and then calls cb once (possibly from inside this call when the body is
 * already there). Beyond max_bytes the server answers 413 too_large itself and cb is never called (the
 * request is then completed; its userdata free_fn runs). Sends "100 Continue" when the client asked for it.
 * Call at most once per request, and only before responding. */
void http_request_read_body(struct http_request *req, size_t max_bytes, http_body_cb cb, void *userdata);
/* Delivers the body as it arrives, with no size limit (the idle timeout still applies), then calls end_cb
 * once. Chunks may be delivered from inside this call. */
void http_request_stream_body(struct http_request *req, http_chunk_cb chunk_cb, http_end_cb end_cb,
                              void *userdata);
/* Stops / restarts reading the socket for a streamed body (backpressure). Resume may deliver chunks and the
 * end callback from inside the call. */
void http_request_pause_body(struct http_request *req);
void http_request_resume_body(struct http_request *req);
/* A handler that responds without reading the body gets it discarded (up to discard_body_max, beyond that
 * the connection closes after the response). A handler that neither reads nor responds leaves the body
 * waiting on the socket until it does one of them. */

/* --- responses ---------------------------------------------------------------------------------- */

/* Adds a header to the response not yet begun (copied). Server-managed headers are Content-Length,
 * Transfer-Encoding, Connection and Date; do not add them. */
void http_response_header(struct http_request *req, const char *name, const char *value);

/* Complete responses. content_type NULL with len > 0 means application/octet-stream; with len 0 no
 * Content-Type is sent. body is copied. A HEAD request gets the headers only. */
void http_respond(struct http_request *req, int status, const char *content_type, const void *body,
                  size_t len);
/* Takes ownership of body (NULL answers with an empty body). */
void http_respond_json(struct http_request *req, int status, json_t *body);
/* {"error":{"code":code,"message":<formatted>}} with the given status. */
void http_respond_error(struct http_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Streamed responses: begin sends the status line and headers; content_length >= 0 promises that many
 * bytes, -1 uses chunked encoding (HTTP/1.1) or close-delimited (HTTP/1.0). */
void http_response_begin(struct http_request *req, int status, const char *content_type,
                         int64_t content_length);
/* Queues bytes (copied). Returns 0, or 1 when the producer should stop: the connection's queued output is
 * over the soft limit (on_drain follows once it drains) or the connection is failing (on_abort follows). */
int http_response_write(struct http_request *req, const void *data, size_t len);
/* Completes the response (last chunk for chunked). req is gone afterwards. */
void http_response_end(struct http_request *req);
/* Gives up on the response: the connection is closed once what is queued is sent (the client sees a
 * truncated response). on_abort is not called. req is gone afterwards. */
void http_response_abort(struct http_request *req);
/* Bytes queued on the connection and not yet written to the socket. */
size_t http_response_queued(const struct http_request *req);

typedef void (*http_event_cb)(struct http_request *req, void *userdata);
/* The connection died before the response was completed (see the top of this file). */
void http_request_on_abort(struct http_request *req, http_event_cb cb, void *userdata);
/* Queued output fell below the soft limit after a write returned 1. */
void http_request_on_drain(struct http_request *req, http_event_cb cb, void *userdata);

/* --- Server-Sent Events ------------------------------------------------------------------------- */

/* 200, text/event-stream, Cache-Control: no-cache, chunked. Extra headers added before are kept. */
void http_sse_begin(struct http_request *req);
/* One event: "event: <event>\n" (omitted when event is NULL) and data split into "data:" lines at each
 * "\n" (a "\r\n" pair counts as one break), then a blank line. Returns like http_response_write. */
int http_sse_send(struct http_request *req, const char *event, const char *data, size_t len);
/* A ": text" comment line (keep-alive ping). Returns like http_response_write. */
int http_sse_comment(struct http_request *req, const char *text);
/* Sends a comment ping every interval while the stream is open (0 = off). */
void http_sse_keepalive(struct http_request *req, usec_t interval);

/* --- WebSocket (RFC 6455, via wslay) ------------------------------------------------------------ */

struct http_ws_callbacks {
    /* A complete message (≤ ws_max_message); data valid only during the call. */
    void (*on_text)(struct http_ws *ws, const char *data, size_t len, void *userdata);
    void (*on_binary)(struct http_ws *ws, const char *data, size_t len, void *userdata);
    /* Queued output fell below the soft limit after a send returned 1. */
    void (*on_drain)(struct http_ws *ws, void *userdata);
    /* Called exactly once when the WebSocket is finished: the close handshake completed (code = the peer's
     * status, 1005 when it sent none), or the connection was lost (1006), or the server is shutting down
     * (1001). Never called from inside an http_ws_* call. ws is freed right after it returns. */
    void (*on_close)(struct http_ws *ws, int code, void *userdata);
};

/* GET with Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key. */
bool http_request_is_websocket(const struct http_request *req);
/* Answers 101 and switches the connection to WebSocket. On success returns 0 and *ret (req is gone;
 * cbs must outlive the ws, userdata is passed to every callback). On failure (not a valid upgrade) answers
 * 400 itself, returns -EINVAL and no callback will ever run; req is gone either way. Extra response
 * headers added with http_response_header are sent with the 101. */
int http_websocket_accept(struct http_request *req, const struct http_ws_callbacks *cbs, void *userdata,
                          struct http_ws **ret);
/* Queues a message (copied). Returns 0, 1 when the producer should stop (over the soft limit: on_drain
 * follows; or closing: on_close follows). */
int http_ws_send_text(struct http_ws *ws, const char *data, size_t len);
int http_ws_send_binary(struct http_ws *ws, const void *data, size_t len);
/* Starts the close handshake with code and reason (reason truncated to 123 bytes). No on_text/on_binary
 * after this; on_close follows when the peer answers or after a short timeout. Idempotent. */
void http_ws_close(struct http_ws *ws, int code, const char *reason);
/* Stops / restarts reading messages from the client (backpressure). */
void http_ws_pause(struct http_ws *ws, bool paused);
const char *http_ws_remote(const struct http_ws *ws);

/* --- taking over a connection ------------------------------------------------------------------ */

/* Hands req's connection, right after its request head, to the caller for the rest of its life (a proxy
 * that splices raw bytes both ways). Call it from the handler only, before reading the body or
 * responding, and copy out whatever of the head you need first. The server then forgets the connection:
 * it reports req to the observer with status, frees req (its userdata free_fn runs; no other callback of
 * req ever runs) and stops watching and timing the socket. ret gets the socket (nonblocking, CLOEXEC;
 * the caller owns it and closes it), the bytes already read past the request head (the start of the
 * body, a pipelined request, or the other protocol after an upgrade), and the bytes of earlier
 * (pipelined) responses not yet written, which the caller must write first. The server's limits and
 * timeouts no longer apply. Returns 0; -EBUSY (nothing changed) when the body was touched or a response
 * begun. */
struct http_takeover {
    int fd;
    struct sbx_buf in;  /* unparsed input, starting right after the request head */
    struct sbx_buf out; /* earlier responses still queued for the client */
};
int http_request_take_over(struct http_request *req, int status, struct http_takeover *ret);

/* --- tiny router -------------------------------------------------------------------------------- */

/* Patterns are absolute paths whose segments are literals or "*", which matches one non-empty segment and
 * is captured in order. A trailing "**" matches the rest of the path (possibly empty). */
#define HTTP_ROUTE_MAX_CAPTURES 4
struct http_route {
    const char *method; /* "GET", ..., or NULL for any */
    const char *pattern;
    void (*handler)(struct http_request *req, const char *const *captures, void *userdata);
};
/* Finds the route for req and calls it with captures (owned by the request). Answers 404 not_found when no
 * pattern matches and 405 method_not_allowed (with an Allow header) when only the method differs. Returns
 * the index of the route called, or -ENOENT / -EPERM when it answered itself. */
int http_route_dispatch(struct http_request *req, const struct http_route *routes, size_t n, void *userdata);

/* --- helpers shared with the fuzzer and tests --------------------------------------------------- */

/* Standard reason phrase, "Unknown" for unknown codes. */
const char *http_status_reason(int status);
/* %-decodes src[0..len) into dst (size >= len + 1), '+' to space when plus_is_space; returns the decoded
 * length or -EINVAL on a bad escape or an embedded NUL. */
long http_percent_decode(const char *src, size_t len, char *dst, bool plus_is_space);
/* Computes Sec-WebSocket-Accept for key into ret (29 bytes incl. NUL). */
void http_ws_accept_key(const char *key, char ret[29]);
