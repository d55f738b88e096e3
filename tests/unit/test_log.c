/* The log module: JSON escaping and the shape of text and JSON lines. */
#include "harness.h"

#include <fcntl.h>
#include <jansson.h>
#include <regex.h>

#include "base/log.h"

static int test_json_escape(void)
{
    char out[128];
    ASSERT_EQ(log_json_escape("plain text", out, sizeof(out)), 10);
    ASSERT_STREQ(out, "plain text");
    log_json_escape("a \"quoted\" \\ back", out, sizeof(out));
    ASSERT_STREQ(out, "a \\\"quoted\\\" \\\\ back");
    log_json_escape("line\nnext\r\ttab\x01\x1f\x7f", out, sizeof(out));
    ASSERT_STREQ(out, "line\\nnext\\r\\ttab\\u0001\\u001f\\u007f");
    /* Valid UTF-8 passes as is (2, 3 and 4 bytes). */
    log_json_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", out, sizeof(out));
    ASSERT_STREQ(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    /* Invalid bytes, overlong forms, surrogates and a cut sequence become U+FFFD. */
    log_json_escape("a\xff"
                    "b\xc0\xaf"
                    "c\xed\xa0\x80"
                    "d\xe2\x82",
                    out, sizeof(out));
    ASSERT_STREQ(out, "a\\ufffdb\\ufffd\\ufffdc\\ufffd\\ufffd\\ufffdd\\ufffd\\ufffd");
    return 0;
}

static int test_json_escape_truncates_whole(void)
{
    char out[8];
    /* Never half an escape or half a character, always NUL-terminated. */
    ASSERT_EQ(log_json_escape("abcd\"efgh", out, sizeof(out)), 7);
    ASSERT_STREQ(out, "abcd\\\"e");
    ASSERT_EQ(log_json_escape("abcdef\"", out, sizeof(out)), 6);
    ASSERT_STREQ(out, "abcdef");
    ASSERT_EQ(log_json_escape("abcde\xe2\x82\xac", out, sizeof(out)), 5);
    ASSERT_STREQ(out, "abcde");
    ASSERT_EQ(log_json_escape("x\x01", out, 4), 1);
    ASSERT_STREQ(out, "x");
    ASSERT_EQ(log_json_escape("anything", out, 1), 0);
    ASSERT_STREQ(out, "");
    return 0;
}

static int test_format_names(void)
{
    ASSERT_EQ(log_format_from_string("text"), LOG_FORMAT_TEXT);
    ASSERT_EQ(log_format_from_string("json"), LOG_FORMAT_JSON);
    ASSERT_EQ(log_format_from_string("JSON"), _LOG_FORMAT_INVALID);
    ASSERT_EQ(log_format_from_string(""), _LOG_FORMAT_INVALID);
    ASSERT_EQ(log_format_from_string(NULL), _LOG_FORMAT_INVALID);
    return 0;
}

/* Runs one log call with stderr redirected to a pipe; returns what it wrote. */
static char *capture(void (*fn)(void))
{
    static char buf[16384];
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return NULL;
    int saved = dup(STDERR_FILENO);
    dup2(p[1], STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(p[1]);
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    close(p[0]);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void log_hostile(void)
{
    log_info("user said \"%s\"", "hi\\\n\x01\xff end");
}

static void log_long(void)
{
    char big[3000];
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_warning("%s", big);
}

static int test_json_lines(void)
{
    log_set_ident("sbxd");
    log_set_format(LOG_FORMAT_JSON);
    char *out = capture(log_hostile);
    ASSERT_TRUE(out);
    size_t len = strlen(out);
    ASSERT_TRUE(len > 1 && out[len - 1] == '\n' && !strchr(out, '\n')[1]); /* exactly one line */
    json_error_t jerr;
    json_t *o = json_loads(out, 0, &jerr);
    if (!o)
        FAILF("not JSON (%s): %s", jerr.text, out);
    ASSERT_STREQ(json_string_value(json_object_get(o, "level")), "info");
    ASSERT_STREQ(json_string_value(json_object_get(o, "msg")), "user said \"hi\\\n\x01\xef\xbf\xbd end\"");
    ASSERT_STREQ(json_string_value(json_object_get(o, "ident")), "sbxd");
    regex_t re;
    ASSERT_EQ(
        regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$", REG_EXTENDED), 0);
    int m = regexec(&re, json_string_value(json_object_get(o, "ts")), 0, NULL, 0);
    regfree(&re);
    json_decref(o);
    ASSERT_EQ(m, 0);

    /* A message cut at the message buffer's size is still one whole JSON line. */
    out = capture(log_long);
    o = json_loads(out, 0, &jerr);
    if (!o)
        FAILF("long line not JSON (%s)", jerr.text);
    ASSERT_STREQ(json_string_value(json_object_get(o, "level")), "warning");
    ASSERT_EQ(strlen(json_string_value(json_object_get(o, "msg"))), 1023);
    json_decref(o);
    return 0;
}

static int test_text_lines(void)
{
    log_set_ident("sbxd");
    log_set_json(0);
    char *out = capture(log_hostile);
    ASSERT_TRUE(out);
    char want[64];
    snprintf(want, sizeof(want), "sbxd[%d] info: user said \"hi", (int)getpid());
    ASSERT_TRUE(strncmp(out, want, strlen(want)) == 0);
    return 0;
}

TESTS(TEST(test_json_escape) TEST(test_json_escape_truncates_whole) TEST(test_format_names)
          TEST(test_json_lines) TEST(test_text_lines))
