#include "harness.h"

#include <stdint.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/error.h"
#include "base/util.h"

static int test_parse_size(void)
{
    uint64_t v;
    ASSERT_OK(parse_size("512M", &v));
    ASSERT_EQ(v, 512ULL << 20);
    ASSERT_OK(parse_size("1G", &v));
    ASSERT_EQ(v, 1ULL << 30);
    ASSERT_OK(parse_size("1024", &v));
    ASSERT_EQ(v, 1024);
    ASSERT_OK(parse_size("2MiB", &v));
    ASSERT_EQ(v, 2ULL << 20);
    ASSERT_ERRNO(parse_size("", &v), EINVAL);
    ASSERT_ERRNO(parse_size("-1", &v), EINVAL);
    ASSERT_ERRNO(parse_size("12X", &v), EINVAL);
    ASSERT_ERRNO(parse_size("99999999999999999999T", &v), EINVAL);
    ASSERT_ERRNO(parse_size("9999999999T", &v), ERANGE);
    return 0;
}

static int test_ids(void)
{
    char a[SBX_ID_MAX + 1], b[SBX_ID_MAX + 1];
    id_generate(a, sizeof(a), "sbx_");
    id_generate(b, sizeof(b), "sbx_");
    ASSERT_EQ(strlen(a), 24);
    ASSERT_TRUE(strcmp(a, b) != 0);
    ASSERT_TRUE(id_is_valid(a));
    ASSERT_TRUE(id_is_valid("my-cmd.1_x"));
    ASSERT_TRUE(!id_is_valid(""));
    ASSERT_TRUE(!id_is_valid("../etc"));
    ASSERT_TRUE(!id_is_valid("a/b"));
    ASSERT_TRUE(!id_is_valid(".hidden"));
    char longid[80];
    memset(longid, 'a', 65);
    longid[65] = 0;
    ASSERT_TRUE(!id_is_valid(longid));
    return 0;
}

static int test_buf(void)
{
    struct sbx_buf b = SBX_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        sbx_buf_appendf(&b, "%d,", i);
    ASSERT_TRUE(strncmp(b.base, "0,1,2,", 6) == 0);
    size_t len = b.len;
    sbx_buf_consume(&b, 2);
    ASSERT_EQ(b.len, len - 2);
    ASSERT_TRUE(strncmp(sbx_buf_cstr(&b), "1,2,", 4) == 0);
    sbx_buf_consume(&b, b.len + 5);
    ASSERT_EQ(b.len, 0);
    sbx_buf_done(&b);
    ASSERT_TRUE(b.base == NULL);
    return 0;
}

static int test_error_mapping(void)
{
    sbx_error e = {0};
    ASSERT_EQ(sbx_error_set(&e, -ENOENT, "sandbox `%s` not found", "x"), -ENOENT);
    ASSERT_EQ(sbx_error_http_status(&e), 404);
    ASSERT_STREQ(sbx_error_kind(&e), "not_found");
    sbx_error_wrap(&e, "get");
    ASSERT_STREQ(e.msg, "get: sandbox `x` not found");
    sbx_error_setk(&e, -ETIMEDOUT, "timeout", 408, "too slow");
    ASSERT_EQ(sbx_error_http_status(&e), 408);
    ASSERT_STREQ(sbx_error_kind(&e), "timeout");
    sbx_error_set(&e, -EEXIST, "x");
    ASSERT_EQ(sbx_error_http_status(&e), 409);
    ASSERT_EQ(sbx_error_set(NULL, -EINVAL, "ignored"), -EINVAL);
    return 0;
}

static int test_take_fd(void)
{
    _cleanup_close_ int fd = dup(0);
    ASSERT_TRUE(fd >= 0);
    int got = TAKE_FD(fd);
    ASSERT_EQ(fd, -1);
    close(got);
    _cleanup_free_ char *p = xstrdup("x");
    char *q = TAKE_PTR(p);
    ASSERT_TRUE(p == NULL);
    free(q);
    return 0;
}

TESTS(TEST(test_parse_size) TEST(test_ids) TEST(test_buf) TEST(test_error_mapping) TEST(test_take_fd))
