#include "harness.h"

#include <signal.h>
#include <stdlib.h>

#include "api/codec.h"
#include "api/jsonreq.h"

static int test_utf8(void)
{
    ASSERT_TRUE(utf8_valid("hello", 5));
    ASSERT_TRUE(utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 16));
    ASSERT_TRUE(utf8_valid("", 0));
    ASSERT_TRUE(!utf8_valid("\xff", 1));
    ASSERT_TRUE(!utf8_valid("\xc3", 1));             /* truncated */
    ASSERT_TRUE(!utf8_valid("\xe2\x82", 2));         /* truncated */
    ASSERT_TRUE(!utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    ASSERT_TRUE(!utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    ASSERT_TRUE(!utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ASSERT_TRUE(utf8_valid("a\0b", 3));              /* NUL is valid UTF-8; JSON escapes it */
    return 0;
}

static int test_base64_roundtrip(void)
{
    uint8_t data[256], out[400];
    for (int i = 0; i < 256; i++)
        data[i] = (uint8_t)i;
    for (size_t n = 0; n < 10; n++) {
        char *e = base64_encode(data, n);
        long m = base64_decode(e, strlen(e), out);
        ASSERT_EQ(m, (long)n);
        ASSERT_TRUE(memcmp(out, data, n) == 0);
        free(e);
    }
    char *e = base64_encode("\xff\x00\x01", 3);
    ASSERT_STREQ(e, "/wAB");
    free(e);
    ASSERT_EQ(base64_decode("@@@@", 4, out), -EINVAL);
    ASSERT_EQ(base64_decode("a", 1, out), -EINVAL);
    return 0;
}

static int test_signals(void)
{
    ASSERT_EQ(signal_from_string("SIGTERM"), SIGTERM);
    ASSERT_EQ(signal_from_string("term"), SIGTERM);
    ASSERT_EQ(signal_from_string("9"), SIGKILL);
    ASSERT_EQ(signal_from_string("SIGNOPE"), -EINVAL);
    ASSERT_EQ(signal_from_string("0"), -EINVAL);
    ASSERT_EQ(signal_from_string("99"), -EINVAL);
    json_t *j = json_integer(2);
    ASSERT_EQ(signal_from_json(j), SIGINT);
    json_decref(j);
    j = json_true();
    ASSERT_EQ(signal_from_json(j), -EINVAL);
    return 0;
}

static int test_output_event(void)
{
    json_t *ev = output_event_json(2, 7, "\xff\x01", 2, true);
    ASSERT_STREQ(json_string_value(json_object_get(ev, "stream")), "stderr");
    ASSERT_STREQ(json_string_value(json_object_get(ev, "encoding")), "base64");
    ASSERT_STREQ(json_string_value(json_object_get(ev, "data")), "/wE=");
    ASSERT_EQ(json_integer_value(json_object_get(ev, "offset")), 7);
    ASSERT_STREQ(json_string_value(json_object_get(ev, "type")), "output");
    json_decref(ev);
    ev = output_event_json(1, 0, "hi\n", 3, false);
    ASSERT_TRUE(json_object_get(ev, "encoding") == NULL);
    ASSERT_TRUE(json_object_get(ev, "type") == NULL);
    json_decref(ev);
    return 0;
}

static int test_jsonreq(void)
{
    sbx_error err = {0};
    json_t *o;
    ASSERT_OK(jsonreq_parse("  ", 2, &o, &err));
    ASSERT_TRUE(json_is_object(o));
    json_decref(o);
    ASSERT_ERRNO(jsonreq_parse("[1]", 3, &o, &err), EINVAL);
    ASSERT_ERRNO(jsonreq_parse("{\"a\":1,\"a\":2}", 13, &o, &err), EINVAL);
    const char *body =
        "{\"s\":\"x\",\"n\":1.5,\"i\":3,\"b\":true,\"m\":{\"A\":\"1\"},\"bad\":{\"=x\":\"1\"},\"z\":null}";
    ASSERT_OK(jsonreq_parse(body, strlen(body), &o, &err));
    const char *s = NULL;
    ASSERT_EQ(jsonreq_string(o, "s", 10, &s, &err), 1);
    ASSERT_STREQ(s, "x");
    ASSERT_EQ(jsonreq_string(o, "missing", 10, &s, &err), 0);
    ASSERT_EQ(jsonreq_string(o, "z", 10, &s, &err), 0); /* null = absent */
    ASSERT_ERRNO(jsonreq_string(o, "n", 10, &s, &err), EINVAL);
    ASSERT_STREQ(err.msg, "`n` must be a string");
    double d;
    ASSERT_EQ(jsonreq_number(o, "n", 0, 2, &d, &err), 1);
    ASSERT_ERRNO(jsonreq_number(o, "n", 0, 1, &d, &err), EINVAL);
    int64_t i;
    ASSERT_EQ(jsonreq_integer(o, "i", 0, 10, &i, &err), 1);
    ASSERT_ERRNO(jsonreq_integer(o, "n", 0, 10, &i, &err), EINVAL);
    bool b;
    ASSERT_EQ(jsonreq_bool(o, "b", &b, &err), 1);
    ASSERT_TRUE(b);
    json_t *m;
    ASSERT_EQ(jsonreq_string_map(o, "m", 10, 100, &m, &err), 1);
    ASSERT_ERRNO(jsonreq_string_map(o, "bad", 10, 100, &m, &err), EINVAL);
    ASSERT_ERRNO(jsonreq_string_map(o, "m", 0, 100, &m, &err), E2BIG);
    json_decref(o);
    return 0;
}

TESTS(TEST(test_utf8) TEST(test_base64_roundtrip) TEST(test_signals) TEST(test_output_event)
          TEST(test_jsonreq))
