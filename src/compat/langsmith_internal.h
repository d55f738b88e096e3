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
/* Registries (langsmith_registries.c): POST /registries, GET /registries, GET|PATCH|DELETE
 * /registries/{id or name} (the parameter is c->sandbox_id). */
void ls_registry_create(struct api_ctx *c);
void ls_registry_list(struct api_ctx *c);
void ls_registry_get(struct api_ctx *c);
void ls_registry_update(struct api_ctx *c);
void ls_registry_delete(struct api_ctx *c);
/* A snapshot create's `registry_id`: the caller's registry's credentials into pr (strings returned in
 * *ret_user and *ret_pass, for the caller to free after pull_start), and plain HTTP for an http:// one;
 * the image must be on that registry (400), the registry the caller's (404). */
struct pull_request;
int ls_registry_credentials(struct api_ctx *c, const char *registry_id, const char *image,
                            struct pull_request *pr, char **ret_user, char **ret_pass, sbx_error *err);

/* Whether a download link's token (?token=) is valid for this sandbox and path now. */
bool ls_download_token_ok(struct daemon *d, struct http_request *req, const char *sandbox_id);
