/* Incremental SSE parser: lines end in LF, CRLF or CR (also split across feeds); "data" lines are joined
 * with LF; comments (":...") and unknown fields are ignored; a blank line dispatches the event. */
#include "sse.h"

#include <errno.h>
#include <string.h>

void sse_parser_init(struct sse_parser *p, sse_event_fn fn, void *userdata)
{
    *p = (struct sse_parser){.line = LBUF_INIT, .data = LBUF_INIT, .fn = fn, .userdata = userdata};
}

void sse_parser_done(struct sse_parser *p)
{
    lbuf_done(&p->line);
    lbuf_done(&p->data);
}

static int dispatch(struct sse_parser *p)
{
    int r = 0;
    if (p->data.len > 0) {
        /* Every data line appended a LF; the last one is not part of the data. */
        p->data.len--;
        p->data.base[p->data.len] = 0;
        r = p->fn(p->event[0] ? p->event : "message", p->data.base, p->data.len, p->userdata);
    }
    lbuf_reset(&p->data);
    p->event[0] = 0;
    return r;
}

/* Data lines are "data:" followed by a value; the empty data buffer marks "no data line seen", so a
 * single empty "data:" line must still count. We append LF after each value and strip the last one;
 * "data:" alone therefore yields one LF which becomes the empty string, and dispatch() above only skips
 * events with no data line at all. */
static int process_line(struct sse_parser *p, const char *line, size_t len)
{
    if (len == 0)
        return dispatch(p);
    if (line[0] == ':')
        return 0;
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t value_len = (size_t)(line + len - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        int r = lbuf_append(&p->data, value, value_len);
        if (r < 0)
            return r;
        return lbuf_append(&p->data, "\n", 1);
    }
    if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        size_t n = value_len < sizeof(p->event) - 1 ? value_len : sizeof(p->event) - 1;
        memcpy(p->event, value, n);
        p->event[n] = 0;
    }
    /* "id", "retry" and unknown fields: ignored. */
    return 0;
}

int sse_parser_feed(struct sse_parser *p, const char *buf, size_t len)
{
    const char *end = buf + len;
    if (p->skip_lf && buf < end) {
        if (*buf == '\n')
            buf++;
        p->skip_lf = false;
    }
    while (buf < end) {
        const char *eol = buf;
        while (eol < end && *eol != '\n' && *eol != '\r')
            eol++;
        if (eol == end) {
            /* Incomplete line: keep it for the next feed. */
            if (p->line.len + (size_t)(end - buf) > SSE_LINE_MAX)
                return -E2BIG;
            return lbuf_append(&p->line, buf, (size_t)(end - buf));
        }
        int r;
        if (p->line.len > 0) {
            if (p->line.len + (size_t)(eol - buf) > SSE_LINE_MAX)
                return -E2BIG;
            r = lbuf_append(&p->line, buf, (size_t)(eol - buf));
            if (r >= 0)
                r = process_line(p, p->line.base, p->line.len);
            lbuf_reset(&p->line);
        } else {
            r = process_line(p, buf, (size_t)(eol - buf));
        }
        if (r < 0)
            return r;
        if (*eol == '\r') {
            if (eol + 1 == end)
                p->skip_lf = true;
            else if (eol[1] == '\n')
                eol++;
        }
        buf = eol + 1;
    }
    return 0;
}
