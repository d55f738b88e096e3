/* Shared by the E2B control plane (e2b_api.c) and envd (e2b_envd.c). */
#pragma once

#include <stdbool.h>

#include "base/error.h"
#include "http/http.h"

struct daemon;
struct sandbox;
struct api_ctx;

/* What the SDK is told envd is: it turns features on by this version (docs/compat/e2b.md). */
#define E2B_ENVD_VERSION "0.6.13"
#define E2B_ENVD_TOKEN_MAX 64

/* The sandbox's envd access token: base64url(HMAC-SHA256(service secret, "e2b-envd-v1\n<id>")), so it
 * needs no storage and dies with the service secret. ret holds E2B_ENVD_TOKEN_MAX + 1 bytes. */
int e2b_envd_token(struct daemon *d, const char *sandbox_id, char *ret, sbx_error *err);

/* E2B's REST error body {"code": status, "message": "..."}. */
void e2b_reply_error(struct http_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void e2b_reply_sbx_error(struct http_request *req, const sbx_error *err);

/* A native request context for req (api/internal.h), freed with the request: the api_* helpers and the
 * metrics observer (route label) work on E2B requests too. owner NULL = the admin. */
struct api_ctx *e2b_ctx_new(struct daemon *d, struct http_request *req, const char *route,
                            const char *sandbox_id, const char *owner);
/* Attaches state to a request's context (one per request), freed with free_fn(data) when the request is
 * destroyed: for handlers whose body callbacks may still run after they answered. */
void e2b_ctx_set_extra(struct api_ctx *c, void *data, void (*free_fn)(void *data));

/* The control plane: req's path is one of E2B's REST routes. Authenticates X-API-Key itself. */
void e2b_api_handle(struct daemon *d, struct http_request *req);
/* Whether path is one of the control plane's. */
bool e2b_api_path(const char *path);

/* envd for sandbox_id (NULL: find it from a signed /files URL). */
void e2b_envd_handle(struct daemon *d, struct http_request *req, const char *sandbox_id);
