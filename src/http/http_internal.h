/* Private to src/http: the connection and request structures shared by the server, response, SSE and
 * WebSocket files. */
#pragma once

#include <llhttp.h>
#include <wslay/wslay.h>

#include "base/buf.h"
#include "http/http.h"
#include "loop/loop.h"

#define HTTP_MAX_HEADERS_HARD 1000

struct http_server {
    struct loop *loop;
    struct http_server_config cfg;
    http_handler_fn handler;
    void *userdata;
    http_observer_fn observer;
    void *observer_ud;
    int fd, port;
    struct loop_io io;
    struct http_conn *conns;
    size_t n_conns;
    llhttp_settings_t settings;
    bool freeing;
};

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
};

struct outblock {
    struct outblock *next;
    size_t off, len, cap;
    char data[];
};

enum body_mode { BODY_NONE, BODY_READ, BODY_STREAM, BODY_DISCARD };
enum resp_state { RESP_NONE, RESP_STREAMING, RESP_DONE };

struct hdr_off {
    uint32_t name, value;
};

struct http_request {
    struct http_conn *conn;
    struct arena_block *arena;

    /* Parsing: url, then each name and value, all NUL-terminated, addressed by offsets until complete. */
    struct sbx_buf hbuf;
    struct hdr_off *hoffs;
    size_t n_headers, hoffs_cap;
    uint32_t mark; /* where the next piece starts in hbuf */
    const char **hnames, **hvalues;

    const char *method_str, *target, *path, *query;
    enum http_method method;
    int version;
    int64_t content_length;
    bool keep_alive, upgrade, expect_continue, head, has_body;

    bool headers_done, handler_called, message_done;
    bool user_completed; /* the handler completed the response (or accepted a WebSocket) */
    bool abort_called, failed;

    enum body_mode body_mode;
    bool body_paused, body_delivered;
    size_t body_max, discarded;
    struct sbx_buf body;
    http_body_cb body_cb;
    http_chunk_cb chunk_cb;
    http_end_cb end_cb;
    void *body_ud;

    struct sbx_buf resp_headers; /* extra "Name: value\r\n" lines */
    enum resp_state resp_state;
    int status;
    bool resp_chunked, resp_no_body, continue_sent;
    int64_t resp_remaining; /* -1 when not length-delimited */

    http_event_cb on_abort, on_drain;
    void *abort_ud, *drain_ud;
    void *userdata;
    void (*free_fn)(void *);

    struct loop_timer sse_timer;
    usec_t sse_interval;
    usec_t started;
    usec_t t0;           /* CLOCK_MONOTONIC at the first byte, fresh (not the loop's cached time) */
    bool observed;       /* the server's observer has seen this request */
    char error_code[32]; /* http_respond_error's code while the error response completes */
    char remote[64];
};

struct http_ws {
    struct http_conn *conn;
    wslay_event_context_ptr ctx;
    const struct http_ws_callbacks *cbs;
    void *userdata;
    bool paused, user_closed;
    /* wslay sends control frames ahead of queued messages: a close asked for while messages are still
     * queued waits here until they are out, so the last message (e.g. a command's exit) is not lost. */
    bool close_pending;
    uint16_t pending_code;
    size_t pending_reason_len;
    char pending_reason[124];
    int close_code; /* set when finishing */
};

struct http_conn {
    struct http_server *srv;
    struct http_conn *prev, *next;
    int fd;
    struct loop_io io;
    struct loop_timer timer;
    struct loop_defer defer;
    char remote[64];

    llhttp_t parser;
    struct sbx_buf in;
    struct http_request *req;
    struct http_ws *ws;

    struct outblock *out_head, *out_tail;
    size_t out_bytes;
    usec_t last_progress; /* last read or write progress */

    bool in_process, again;
    bool closing;   /* close once the output is flushed */
    bool lingering; /* output flushed, write side shut, draining input briefly before close */
    bool dead;      /* destroy at the next chance */
    bool eof;
    bool write_blocked;
    bool want_drain;
    bool server_shutdown;
};

/* Schedules processing of the connection from the loop (never runs it inside the caller). */
void http_conn_kick(struct http_conn *c);
/* Queues bytes on the connection's output. Returns true when over the soft limit. Closes (deferred) past the
 * hard limit. */
bool http_conn_queue(struct http_conn *c, const void *data, size_t len);
/* Marks the connection failed: it is destroyed from the loop, firing on_abort / on_close. */
void http_conn_fail(struct http_conn *c);

/* Reports the request to the server's observer, once (see http_server_set_observer). */
void http_request_observe(struct http_request *req, int status, const char *error_code);

/* The handler completed its response (response.c -> server.c). */
void http_request_completed(struct http_request *req);

/* Frees a request (its free_fn runs). */
void http_request_destroy(struct http_request *req);

/* WebSocket internals (ws.c). */
void http_ws_process(struct http_conn *c);
void http_ws_destroy(struct http_ws *ws, int code);
