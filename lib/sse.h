/* Incremental Server-Sent Events parser (WHATWG HTML "event stream interpretation"): bytes are fed in
 * arbitrary pieces; every complete event is handed to a callback. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "encode.h"

/* Called once per dispatched event. `event` is the event type ("message" when none was given); `data`
 * is the joined data lines (NUL-terminated, without the final newline). Return < 0 to stop parsing; the
 * value is returned by sse_parser_feed(). */
typedef int (*sse_event_fn)(const char *event, const char *data, size_t len, void *userdata);

#define SSE_LINE_MAX ((size_t)64 << 20)

struct sse_parser {
    struct lbuf line; /* a line split across feeds */
    struct lbuf data; /* data lines of the event being built */
    char event[64];   /* event type of the event being built ("" = message); longer names are truncated */
    bool skip_lf;     /* the previous feed ended with CR: a leading LF belongs to that line ending */
    sse_event_fn fn;
    void *userdata;
};

void sse_parser_init(struct sse_parser *p, sse_event_fn fn, void *userdata);
void sse_parser_done(struct sse_parser *p);
/* Parses len bytes. Returns 0, the callback's negative value, -ENOMEM, or -E2BIG for a line over
 * SSE_LINE_MAX. An event left incomplete when the stream ends is dropped (as the spec says). */
int sse_parser_feed(struct sse_parser *p, const char *buf, size_t len);
