/* Shared by the LangSmith control plane (langsmith_api.c) and data plane (langsmith_dp.c). */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "base/error.h"
#include "http/http.h"

struct daemon;
struct sandbox;
struct api_ctx;

#define LS_PREFIX "/langsmith"
#define LS_DP_PREFIX "/langsmith/dp/"
/* The metadata key a create's or update's run_config is kept under (an object, so never a label). */
#define LS_RUN_CONFIG_KEY "langsmith.run_config"

/* Which typed error the SDK should raise for an sbx error. */
enum ls_plane {
    LS_CONTROL, /* boxes and snapshots */
    LS_CREATE,  /* POST /boxes */
    LS_READ,    /* data plane: downloads, glob, grep */
    LS_WRITE,   /* data plane: uploads */
    LS_COMMAND, /* data plane: execute */
};

/* {"detail": {"error": type, "message": ...}} with status. */
void ls_reply_error(struct http_request *req, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* {"detail": [{"loc": ["body", field], "msg": ..., "type": "value_error"}]} with 422: the SDK's
 * ValidationError. */
void ls_reply_validation(struct http_request *req, const char *field, const char *msg);
/* An sbx error in LangSmith's envelope, with the status and error type the SDK maps for plane. */
void ls_reply_sbx_error(struct http_request *req, const sbx_error *err, enum ls_plane plane);

/* Reads the whole (bounded) JSON object body, then calls cb with it (released after cb returns); a
 * malformed body is answered with a 422 ValidationError. */
void ls_read_json(struct api_ctx *c, void (*cb)(struct api_ctx *c, json_t *body));

/* A native request context for req (api/internal.h), freed with the request. owner NULL = the admin. */
struct api_ctx *ls_ctx_new(struct daemon *d, struct http_request *req, const char *route,
                           const char *sandbox_id, const char *owner);

/* The data plane of sandbox id_or_name: rest is the path after it ("/execute", ...). Authenticated. */
void ls_dp_handle(struct daemon *d, struct http_request *req, const char *id, const char *rest,
                  const char *owner);
/* Whether a download link's token (?token=) is valid for this sandbox and path now. */
bool ls_download_token_ok(struct daemon *d, struct http_request *req, const char *sandbox_id);
