/* The daemon metrics module: value and label formatting, recording, and the rendered exposition. */
#include "harness.h"

#include <math.h>

#include "base/buf.h"
#include "daemon/daemon.h"
#include "daemon/metrics.h"

static int test_format_value(void)
{
    char buf[32];
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "0"},           {10, "10"},          {1, "1"},     {0.0001, "0.0001"}, {0.00025, "0.00025"},
        {2.5, "2.5"},       {0.1, "0.1"},        {-3, "-3"},   {1e-7, "1e-07"},    {123456.789, "123456.789"},
        {INFINITY, "+Inf"}, {-INFINITY, "-Inf"}, {NAN, "NaN"}, {1e20, "1e+20"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        metrics_format_value(cases[i].v, buf);
        ASSERT_STREQ(buf, cases[i].want);
    }
    /* Whatever it prints reads back exactly. */
    double odd = 0.1 + 0.2;
    metrics_format_value(odd, buf);
    ASSERT_TRUE(strtod(buf, NULL) == odd);
    return 0;
}

static int test_label_and_help_escaping(void)
{
    struct sbx_buf b = SBX_BUF_INIT;
    metrics_append_label_value(&b, "a\\b\"c\nd");
    ASSERT_STREQ(sbx_buf_cstr(&b), "\"a\\\\b\\\"c\\nd\"");
    sbx_buf_reset(&b);
    metrics_append_help(&b, "a\\b \"q\"\nnext");
    ASSERT_STREQ(sbx_buf_cstr(&b), "a\\\\b \"q\"\\nnext");
    sbx_buf_done(&b);
    return 0;
}

/* The rendered exposition for an empty daemon, NUL-terminated in b. */
static char *render(struct sbx_buf *b)
{
    struct daemon d = {0};
    sbx_buf_reset(b);
    metrics_render(&d, b);
    return sbx_buf_cstr(b);
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

static int test_record_and_render(void)
{
    metrics_reset();
    struct sbx_buf b = SBX_BUF_INIT;
    metrics_count(METRICS_SANDBOXES_CREATED);
    metrics_count(METRICS_SANDBOXES_CREATED);
    metrics_count(METRICS_COMMANDS_STARTED);
    metrics_http_request(HTTP_METHOD_GET, "v1/sandboxes/*", 404, "not_found", 50);
    metrics_http_request(HTTP_METHOD_GET, "v1/sandboxes/*", 404, "not_found", 300);
    metrics_http_request(HTTP_METHOD_GET, "v1/sandboxes/*", 200, NULL, 20 * 1000 * 1000);
    metrics_http_request(HTTP_METHOD_POST, "v1/sandboxes", 201, NULL, 1000);
    metrics_http_request(HTTP_METHOD_OTHER, "unmatched", 400, "bad_request", 10);
    char *t = render(&b);

    ASSERT_TRUE(has_line(t, "# TYPE sbx_sandboxes gauge"));
    ASSERT_TRUE(has_line(t, "sbx_sandboxes{state=\"running\"} 0"));
    ASSERT_TRUE(has_line(t, "sbx_sandboxes{state=\"stopped\"} 0"));
    ASSERT_TRUE(has_line(t, "sbx_warm_pool_sandboxes 0"));
    ASSERT_TRUE(has_line(t, "sbx_sandboxes_created_total 2"));
    ASSERT_TRUE(has_line(t, "sbx_sandboxes_deleted_total 0"));
    ASSERT_TRUE(has_line(t, "sbx_commands_started_total 1"));
    ASSERT_TRUE(
        has_line(t, "sbx_http_requests_total{method=\"GET\",route=\"v1/sandboxes/*\",code=\"404\"} 2"));
    ASSERT_TRUE(
        has_line(t, "sbx_http_requests_total{method=\"GET\",route=\"v1/sandboxes/*\",code=\"200\"} 1"));
    ASSERT_TRUE(
        has_line(t, "sbx_http_requests_total{method=\"POST\",route=\"v1/sandboxes\",code=\"201\"} 1"));
    ASSERT_TRUE(has_line(t, "sbx_http_requests_total{method=\"OTHER\",route=\"unmatched\",code=\"400\"} 1"));
    ASSERT_TRUE(has_line(t, "sbx_errors_total{code=\"not_found\"} 2"));
    ASSERT_TRUE(has_line(t, "sbx_errors_total{code=\"bad_request\"} 1"));
    /* Cumulative buckets: 50 µs, 300 µs and 20 s. */
    ASSERT_TRUE(
        has_line(t, "sbx_http_request_duration_seconds_bucket{route=\"v1/sandboxes/*\",le=\"0.0001\"} 1"));
    ASSERT_TRUE(
        has_line(t, "sbx_http_request_duration_seconds_bucket{route=\"v1/sandboxes/*\",le=\"0.00025\"} 1"));
    ASSERT_TRUE(
        has_line(t, "sbx_http_request_duration_seconds_bucket{route=\"v1/sandboxes/*\",le=\"0.0005\"} 2"));
    ASSERT_TRUE(
        has_line(t, "sbx_http_request_duration_seconds_bucket{route=\"v1/sandboxes/*\",le=\"10\"} 2"));
    ASSERT_TRUE(
        has_line(t, "sbx_http_request_duration_seconds_bucket{route=\"v1/sandboxes/*\",le=\"+Inf\"} 3"));
    ASSERT_TRUE(has_line(t, "sbx_http_request_duration_seconds_count{route=\"v1/sandboxes/*\"} 3"));
    ASSERT_TRUE(has_line(t, "sbx_http_request_duration_seconds_sum{route=\"v1/sandboxes/*\"} 20.00035"));
    ASSERT_TRUE(
        has_line(t, "sbx_http_request_duration_seconds_bucket{route=\"v1/sandboxes\",le=\"0.001\"} 1"));
    ASSERT_TRUE(strstr(t, "# TYPE sbx_process_resident_memory_bytes gauge\n"));
    ASSERT_TRUE(strstr(t, "# TYPE sbx_process_start_time_seconds gauge\n"));

    /* Every line is a comment or `name{labels} value`, every name sbx_. */
    for (char *line = t, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        ASSERT_TRUE(nl);
        if (*line == '#') {
            ASSERT_TRUE(strncmp(line, "# HELP sbx_", 11) == 0 || strncmp(line, "# TYPE sbx_", 11) == 0);
            continue;
        }
        ASSERT_TRUE(strncmp(line, "sbx_", 4) == 0);
        char *sp = memrchr(line, ' ', (size_t)(nl - line));
        ASSERT_TRUE(sp && sp + 1 < nl);
        char *end;
        strtod(sp + 1, &end);
        ASSERT_TRUE(end == nl);
    }
    sbx_buf_done(&b);
    return 0;
}

static int test_labels_are_bounded(void)
{
    metrics_reset();
    struct sbx_buf b = SBX_BUF_INIT;
    char route[32], code[32];
    for (int i = 0; i < 200; i++) {
        snprintf(route, sizeof(route), "r%d", i);
        snprintf(code, sizeof(code), "c%d", i);
        for (int status = 100; status < 110; status++)
            metrics_http_request(HTTP_METHOD_GET, route, status, code, 1);
    }
    char *t = render(&b);
    /* The tables' last slots absorb the rest, with their counts. */
    ASSERT_TRUE(has_line(t, "sbx_errors_total{code=\"c0\"} 10"));
    ASSERT_TRUE(has_line(t, "sbx_errors_total{code=\"other\"} 1530"));
    ASSERT_TRUE(has_line(t, "sbx_http_request_duration_seconds_count{route=\"other\"} 1370"));
    ASSERT_TRUE(has_line(t, "sbx_http_requests_total{method=\"GET\",route=\"other\",code=\"100\"} 137"));
    ASSERT_TRUE(!strstr(t, "\"r63\"") && !strstr(t, "\"c47\""));
    sbx_buf_done(&b);
    return 0;
}

TESTS(TEST(test_format_value) TEST(test_label_and_help_escaping) TEST(test_record_and_render)
          TEST(test_labels_are_bounded))
