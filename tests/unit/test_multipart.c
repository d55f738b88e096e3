/* src/http/multipart: the streaming multipart/form-data parser shared by the upload routes. Every body is
 * parsed whole and again split at every byte position, which must give the same parts and contents. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "harness.h"
#include "http/multipart.h"

struct record {
    struct sbx_buf log; /* "[name|filename|type]content" per part */
    int fail_at_part;   /* part_begin of this part index fails (-1: never) */
};

static int on_begin(void *ud, const struct multipart_part *p, sbx_error *err)
{
    struct record *r = ud;
    if ((int)p->index == r->fail_at_part)
        return sbx_error_set(err, -EPERM, "refused part %u", p->index);
    sbx_buf_appendf(&r->log, "[%s|%s%s|%s]", p->name, p->has_filename ? "=" : "", p->filename,
                    p->content_type);
    return 0;
}

static int on_data(void *ud, const char *data, size_t len, sbx_error *err)
{
    (void)err;
    sbx_buf_append(&((struct record *)ud)->log, data, len);
    return 0;
}

static int on_end(void *ud, sbx_error *err)
{
    (void)err;
    sbx_buf_append(&((struct record *)ud)->log, "<end>", 5);
    return 0;
}

static const struct multipart_callbacks cbs = {on_begin, on_data, on_end};

/* Parses body in chunks of `step` bytes (0: whole); returns the record (caller frees) and the result. */
static int parse(const char *body, size_t len, size_t step, int fail_at, char **ret)
{
    struct record r = {.log = SBX_BUF_INIT, .fail_at_part = fail_at};
    struct multipart m;
    multipart_init(&m, "XyZ", &cbs, &r);
    sbx_error err = {0};
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0;) {
        size_t n = step && len - off > step ? step : len - off;
        rc = multipart_feed(&m, body + off, n, &err);
        off += n;
    }
    if (rc == 0)
        rc = multipart_finish(&m, &err);
    multipart_done(&m);
    *ret = strdup(sbx_buf_cstr(&r.log));
    sbx_buf_done(&r.log);
    return rc;
}

/* The same outcome whatever the chunking. */
static int check(const char *body, int want_rc, const char *want_log)
{
    for (size_t step = 0; step <= strlen(body); step++) {
        char *log;
        int rc = parse(body, strlen(body), step, -1, &log);
        if (rc != want_rc || (want_log && strcmp(log, want_log) != 0)) {
            FAILF("step %zu: rc %d (want %d), log `%s` (want `%s`)", step, rc, want_rc, log,
                  want_log ? want_log : "(any)");
            free(log);
            return 1;
        }
        free(log);
    }
    return 0;
}

static int test_parts(void)
{
    ASSERT_OK(check("preamble\r\n--XyZ\r\n"
                    "Content-Disposition: form-data; name=\"metadata\"\r\n\r\n"
                    "{\"path\":\"/a\"}\r\n--XyZ\r\n"
                    "Content-Disposition: form-data; name=\"file\"; filename=\"a;b \\\"c\\\".txt\"\r\n"
                    "Content-Type: text/plain\r\n\r\n"
                    "line1\r\n--Xy\r\n--XyZ--\r\nepilogue",
                    0,
                    "[metadata||]{\"path\":\"/a\"}<end>"
                    "[file|=a;b \"c\".txt|text/plain]line1\r\n--Xy<end>"));
    /* The delimiter string followed by anything but padding and CRLF or "--" is a bad delimiter line (a
     * boundary must not occur in content: RFC 2046). */
    ASSERT_OK(check("--XyZ\r\n\r\nline1\r\n--XyZnot-a-delimiter\r\n--XyZ--", -EINVAL, "[||]line1<end>"));
    /* No preamble, an empty part, a part without headers, padding after delimiters, empty filename. */
    ASSERT_OK(
        check("--XyZ \t\r\nContent-Disposition: form-data; filename=\"\"; name=file\r\n\r\n\r\n--XyZ\r\n"
              "\r\nraw\r\n--XyZ--",
              0, "[file|=|]<end>[||]raw<end>"));
    /* `name` is not found inside `filename`. */
    ASSERT_OK(check("--XyZ\r\nContent-Disposition: form-data; filename=\"x\"\r\n\r\nq\r\n--XyZ--", 0,
                    "[|=x|]q<end>"));
    /* Binary content with CR, LF and NUL, and bytes that start the delimiter. */
    static const char bin[] = "--XyZ\r\n\r\n\0\r\n-\r\n--X\r\n--Xy\r\n--XyZ--";
    for (size_t step = 0; step < sizeof(bin); step++) {
        char *log;
        ASSERT_EQ(parse(bin, sizeof(bin) - 1, step, -1, &log), 0);
        ASSERT_EQ(memcmp(log, "[||]", 4), 0);
        free(log);
    }
    return 0;
}

static int test_malformed(void)
{
    ASSERT_OK(check("", -EINVAL, ""));
    ASSERT_OK(check("no delimiter at all", -EINVAL, ""));
    ASSERT_OK(check("--XyZ\r\n\r\ncut short", -EINVAL, NULL)); /* never ended */
    ASSERT_OK(check("--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--XyZ", -EINVAL, NULL));
    ASSERT_OK(check("--XyZjunk\r\n\r\nx\r\n--XyZ--", -EINVAL, ""));
    ASSERT_OK(check("--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--XyZ--", -EINVAL, ""));
    /* Headers without an end, past the limit. */
    struct sbx_buf b = SBX_BUF_INIT;
    sbx_buf_appendf(&b, "--XyZ\r\nX-Pad: ");
    for (int i = 0; i < MULTIPART_HEAD_MAX; i++)
        sbx_buf_append(&b, "a", 1);
    char *log;
    ASSERT_EQ(parse(b.base, b.len, 0, -1, &log), -EINVAL);
    free(log);
    ASSERT_EQ(parse(b.base, b.len, 4096, -1, &log), -EINVAL);
    free(log);
    sbx_buf_done(&b);
    /* Too many parts. */
    sbx_buf_appendf(&b, "--XyZ");
    for (int i = 0; i <= MULTIPART_PARTS_MAX; i++)
        sbx_buf_appendf(&b, "\r\n\r\n%d\r\n--XyZ", i);
    sbx_buf_appendf(&b, "--");
    ASSERT_EQ(parse(b.base, b.len, 0, -1, &log), -E2BIG);
    free(log);
    sbx_buf_done(&b);
    return 0;
}

static int test_callback_error_stops(void)
{
    const char *body = "--XyZ\r\n\r\none\r\n--XyZ\r\n\r\ntwo\r\n--XyZ\r\n\r\nthree\r\n--XyZ--";
    for (size_t step = 0; step < strlen(body); step++) {
        char *log;
        ASSERT_EQ(parse(body, strlen(body), step, 1, &log), -EPERM);
        ASSERT_STREQ(log, "[||]one<end>");
        free(log);
    }
    return 0;
}

static int test_boundary(void)
{
    char b[MULTIPART_BOUNDARY_MAX + 1];
    ASSERT_TRUE(multipart_boundary("multipart/form-data; boundary=abc", b));
    ASSERT_STREQ(b, "abc");
    ASSERT_TRUE(multipart_boundary("Multipart/Form-Data;boundary=\"a b;c\"; charset=x", b));
    ASSERT_STREQ(b, "a b;c");
    ASSERT_TRUE(!multipart_boundary("multipart/form-data", b));
    ASSERT_TRUE(!multipart_boundary("multipart/form-data; xboundary=abc", b));
    ASSERT_TRUE(!multipart_boundary("multipart/mixed; boundary=abc", b));
    ASSERT_TRUE(!multipart_boundary("multipart/form-dataX; boundary=abc", b));
    ASSERT_TRUE(!multipart_boundary("multipart/form-data; boundary=", b));
    ASSERT_TRUE(!multipart_boundary("multipart/form-data; boundary=\"abc", b));
    ASSERT_TRUE(!multipart_boundary(NULL, b));
    char longb[200];
    memset(longb, 'a', sizeof(longb));
    snprintf(longb, sizeof(longb), "multipart/form-data; boundary=%0*d", 71, 0);
    ASSERT_TRUE(!multipart_boundary(longb, b));
    return 0;
}

TESTS(TEST(test_parts) TEST(test_malformed) TEST(test_callback_error_stops) TEST(test_boundary))
