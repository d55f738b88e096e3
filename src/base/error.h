/* One error convention: functions return >= 0 or a negative errno; those whose failure a user sees also
 * fill a caller-owned sbx_error (fixed size, nothing to release). */
#pragma once

#include <stdarg.h>

typedef struct sbx_error {
    int code;      /* negative errno */
    int http;      /* HTTP status to answer with, 0 = derive from code */
    char kind[32]; /* stable machine code ("not_found", "invalid_argument", ...), "" = derive from code */
    char msg[256];
} sbx_error;

/* Sets code and message; returns code so call sites can `return sbx_error_set(err, -errno, ...)`.
 * err may be NULL. */
int sbx_error_set(sbx_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Like sbx_error_set but with an explicit stable kind and HTTP status. */
int sbx_error_setk(sbx_error *err, int code, const char *kind, int http, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Prefixes the existing message with context ("create sandbox: ..."). Returns err->code. */
int sbx_error_wrap(sbx_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Maps a negative errno to an HTTP status and a stable kind string. */
int sbx_error_http_status(const sbx_error *err);
const char *sbx_error_kind(const sbx_error *err);
