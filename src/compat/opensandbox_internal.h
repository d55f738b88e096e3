/* Shared by the OpenSandbox lifecycle router (opensandbox_api.c), its execd commands, sessions and
 * metrics (opensandbox_execd.c) and its execd files API (opensandbox_files.c). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "http/http.h"

struct daemon;
struct sandbox;
struct api_ctx;

#define OS_PREFIX "/opensandbox"
#define OS_EXECD_PORT 44772
#define OS_EGRESS_PORT 18080
#define OS_QUERY_VALUES_MAX 64 /* repeated query parameters (path=a&path=b, state=...) */

/* {"code": code, "message": ...} with status. */
void os_reply(struct http_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Which code family an sbx error is answered in. */
enum os_plane {
    OS_LIFECYCLE, /* SANDBOX::... */
    OS_FILES,     /* execd: FILE_NOT_FOUND, ... */
    OS_COMMANDS,  /* execd: COMMAND_NOT_FOUND, ... */
};
void os_reply_sbx(struct http_request *req, const sbx_error *err, enum os_plane plane);

/* An empty success: 200 with Content-Length: 0 (execd) or 202/204 (lifecycle). */
void os_reply_empty(struct http_request *req, int status);

/* Reads the whole (bounded) JSON body, then calls cb with it (released after cb returns); any JSON value
 * is accepted (execd takes arrays too). A malformed body is a 400 INVALID_REQUEST_BODY. */
void os_read_json(struct api_ctx *c, void (*cb)(struct api_ctx *c, json_t *body));

/* Every value of the repeated query parameter name, %-decoded into the request's arena: at most max. Returns
 * the count, or -E2BIG when there are more. */
int os_query_all(struct http_request *req, const char *name, const char **ret, size_t max);

/* The execd API of sandbox c->sandbox_id: rest is the path after .../proxy/44772 ("/ping", ...). */
void os_execd_handle(struct api_ctx *c, const char *rest);

/* The sandbox of an execd request, up: a paused one is resumed. A new reference, or NULL with an answer
 * sent. */
struct sandbox *os_execd_sandbox(struct api_ctx *c);

/* Files routes (opensandbox_files.c); true when rest named one (and it was answered). */
bool os_files_handle(struct api_ctx *c, const char *method, const char *rest);

/* Replaces bytes that are not valid UTF-8 with '?' in place (the length stays). */
void os_utf8_clean(char *p, size_t len);
