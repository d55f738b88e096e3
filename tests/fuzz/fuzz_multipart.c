/* libFuzzer harness for src/http/multipart, the parser every upload route (E2B, LangSmith, OpenSandbox)
 * runs on client bodies. Input: one byte choosing a chunk size, then the body (boundary "XyZ"). Checks,
 * beyond memory safety: the body parsed whole and parsed in chunks gives the same result and the same
 * parts with the same bytes (a delimiter split across chunks is never missed nor invented); parts are
 * numbered in order and every part that began and was not cut short ends; content never outgrows the
 * input; nothing is called after an error. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "http/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
    struct sbx_buf log;
    unsigned next_index;
    bool in_part, stopped;
    size_t content;
};

static int on_begin(void *ud, const struct multipart_part *p, sbx_error *err)
{
    struct trace *t = ud;
    if (t->stopped || t->in_part || p->index != t->next_index ||
        strnlen(p->name, sizeof(p->name)) == sizeof(p->name))
        abort();
    t->next_index++;
    t->in_part = true;
    sbx_buf_appendf(&t->log, "[%u:%s:%d:%s:%s]", p->index, p->name, p->has_filename, p->filename,
                    p->content_type);
    /* Refuse a part named "stop": callers' errors end the parse. */
    if (strcmp(p->name, "stop") == 0) {
        t->stopped = true;
        return sbx_error_set(err, -EPERM, "stopped");
    }
    return 0;
}

static int on_data(void *ud, const char *d, size_t n, sbx_error *err)
{
    (void)err;
    struct trace *t = ud;
    if (t->stopped || !t->in_part || n == 0)
        abort();
    t->content += n;
    sbx_buf_append(&t->log, d, n);
    return 0;
}

static int on_end(void *ud, sbx_error *err)
{
    (void)err;
    struct trace *t = ud;
    if (t->stopped || !t->in_part)
        abort();
    t->in_part = false;
    sbx_buf_append(&t->log, "<end>", 5);
    return 0;
}

static const struct multipart_callbacks cbs = {on_begin, on_data, on_end};

static int run(const char *body, size_t len, size_t step, struct trace *t)
{
    struct multipart m;
    multipart_init(&m, "XyZ", &cbs, t);
    sbx_error err = {0};
    int r = 0;
    for (size_t off = 0; off < len && r == 0; off += step)
        r = multipart_feed(&m, body + off, len - off < step ? len - off : step, &err);
    if (r == 0)
        r = multipart_finish(&m, &err);
    if (r < 0 && (!err.msg[0] || multipart_feed(&m, "x", 1, &err) != r))
        abort(); /* an error is explained, and sticky */
    multipart_done(&m);
    if (t->content > len)
        abort();
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 17 + 1;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct trace whole = {.log = SBX_BUF_INIT}, chunked = {.log = SBX_BUF_INIT};
    int r1 = run(body, len, len ? len : 1, &whole);
    int r2 = run(body, len, step, &chunked);
    /* Chunking may only change how far a failing parse got before it failed (held-back bytes). */
    if (r1 != r2 ||
        (r1 == 0 && (whole.log.len != chunked.log.len ||
                     (whole.log.len && memcmp(whole.log.base, chunked.log.base, whole.log.len) != 0))))
        abort();
    if (r1 == 0 && whole.in_part)
        abort(); /* a successful parse ended every part */
    sbx_buf_done(&whole.log);
    sbx_buf_done(&chunked.log);
    return 0;
}
