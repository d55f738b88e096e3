/* One logging API. Low-level modules log at debug at most and return codes; the daemon's top level logs
 * each error once. */
#pragma once

#include <syslog.h>

void log_set_level(int level); /* LOG_ERR .. LOG_DEBUG */
void log_set_json(int json);   /* 1 = JSON lines on stderr */
void log_set_ident(const char *ident);
int log_get_level(void);

/* Logs and returns error (a negative errno) so callers write `return log_error_errno(r, ...)`.
 * "%m" expands to strerror(-error). */
int log_internal(int level, int error, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#define log_full_errno(level, error, ...) log_internal(level, error, __FILE__, __LINE__, __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, error, __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, error, __VA_ARGS__)
#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, error, __VA_ARGS__)
#define log_error(...) (void)log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...) (void)log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...) (void)log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...) (void)log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) (void)log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
