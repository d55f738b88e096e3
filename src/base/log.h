/* One logging API. Low-level modules log at debug at most and return codes; the daemon's top level logs
 * each error once. The output is chosen once at start-up: text lines (the default) or JSON lines on stderr.
 */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <syslog.h>

enum log_format {
    LOG_FORMAT_TEXT, /* "sbxd[123] info: message" */
    LOG_FORMAT_JSON, /* {"ts":"2026-01-02T03:04:05.678Z","level":"info","msg":"message",...} */
    _LOG_FORMAT_MAX,
    _LOG_FORMAT_INVALID = -EINVAL,
};

void log_set_level(int level); /* LOG_ERR .. LOG_DEBUG */
void log_set_format(enum log_format format);
void log_set_json(int json); /* 1 = LOG_FORMAT_JSON, 0 = LOG_FORMAT_TEXT */
void log_set_ident(const char *ident);
int log_get_level(void);
/* "text" or "json" to the format, _LOG_FORMAT_INVALID otherwise. */
enum log_format log_format_from_string(const char *s);

/* Logs and returns error (a negative errno) so callers write `return log_error_errno(r, ...)`.
 * "%m" expands to strerror(-error). */
int log_internal(int level, int error, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Writes s into dst as the inside of a JSON string (no quotes): '"', '\\' and control characters escaped,
 * bytes that are not valid UTF-8 replaced by \ufffd. Stops before an escape or character that would not fit
 * (size includes the NUL; dst is always NUL-terminated when size > 0). Returns the length written. Pure:
 * exported for the tests. */
size_t log_json_escape(const char *s, char *dst, size_t size);

#define log_full_errno(level, error, ...) log_internal(level, error, __FILE__, __LINE__, __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, error, __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, error, __VA_ARGS__)
#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, error, __VA_ARGS__)
#define log_error(...) (void)log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...) (void)log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...) (void)log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...) (void)log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) (void)log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
