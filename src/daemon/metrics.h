/* sbxd's own metrics, served by GET /metrics in the Prometheus text exposition format 0.0.4 (every name
 * prefixed `sbx_`; docs/api.md "Daemon metrics" lists them).
 *
 * Counters are process-wide (one daemon per process, like the log settings) and live in fixed tables:
 * recording allocates nothing and costs a few comparisons, so it can sit on every request's path. Label
 * values are bounded by construction: routes are route patterns, error codes are the API's stable codes,
 * methods are http.h's enum, and each table has a last "other" slot that absorbs anything beyond it.
 * Gauges (sandboxes by state, the warm pool, open connections, the process's memory and fds) are read from
 * the daemon when a scrape renders them. Everything runs on the event loop thread: no locking. */
#pragma once

#include "base/buf.h"
#include "base/util.h"
#include "http/http.h"

struct daemon;

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum metrics_counter {
    METRICS_SANDBOXES_CREATED, /* a sandbox joined the registry for a create request (built or warm) */
    METRICS_SANDBOXES_DELETED, /* a sandbox was deleted (by request, timer or ephemeral shutdown) */
    METRICS_COMMANDS_STARTED,  /* a command create started a new command */
    _METRICS_COUNTER_MAX,
};

/* Adds one to a counter. */
void metrics_count(enum metrics_counter which);

/* Records one finished HTTP request: sbx_http_requests_total{method,route,code}, the duration histogram of
 * its route and, when error_code is not NULL, sbx_errors_total{code}. route (a route pattern or another
 * fixed label) and error_code are copied on first sight, truncated to the table's width; both borrowed. */
void metrics_http_request(enum http_method method, const char *route, int status, const char *error_code,
                          usec_t duration);

/* Appends the whole exposition for d to out (gauges computed now). */
void metrics_render(struct daemon *d, struct sbx_buf *out);

/* Forgets every counter and label (tests). */
void metrics_reset(void);

/* Pure formatting, exported for the tests. */
/* Appends v as a label value between double quotes, with '\\', '"' and newline escaped. */
void metrics_append_label_value(struct sbx_buf *b, const char *v);
/* Appends a HELP text with '\\' and newline escaped. */
void metrics_append_help(struct sbx_buf *b, const char *text);
/* The shortest decimal that reads back as v ("0.00025", "10", "1e-07"), or "+Inf", "-Inf", "NaN". */
void metrics_format_value(double v, char buf[32]);
