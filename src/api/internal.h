/* Shared by the API handler files; not part of the API module's public header. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "http/http.h"

struct daemon;
struct sandbox;
struct api_key;

/* What a route handler gets: the request, the daemon, and the path parameters. */
struct api_ctx {
    struct daemon *d;
    struct http_request *req;
    const char *sandbox_id; /* {id} */
    const char *command_id; /* {cid}: the second path parameter (a command id, a port, a checkpoint name) */
    const char *owner;      /* the caller's API key id (a tenant), NULL for the admin */
    const char *route;      /* the matched route pattern (a metrics label) */
    void (*json_cb)(struct api_ctx *c, json_t *body); /* api_read_json's */
};

/* Who is asking, from the Authorization: Bearer or X-Api-Key header: 0 for the admin, 1 for a tenant
 * (*ret_key, borrowed), -1 for nobody known. */
int api_identify(struct daemon *d, struct http_request *req, const struct api_key **ret_key);

/* Answers with the error's status and JSON body. */
void api_reply_error(struct http_request *req, const sbx_error *err);
/* Answers with status and body (takes ownership of body; NULL = empty 204-style body). */
void api_reply_json(struct http_request *req, int status, json_t *body);

/* Looks up {id}; answers 404 and returns NULL when there is no such sandbox. Returns a new reference. */
struct sandbox *api_sandbox(struct api_ctx *c);
/* Like api_sandbox, and resumes a paused sandbox first (commands and files need it running). */
struct sandbox *api_sandbox_awake(struct api_ctx *c);

/* Reads the whole (bounded) JSON body, then calls cb with it parsed; answers 400/413 itself on bad
 * input. The parsed object is released after cb returns. */
typedef void (*api_json_cb)(struct api_ctx *c, json_t *body);
void api_read_json(struct api_ctx *c, api_json_cb cb);

void api_sandboxes_create(struct api_ctx *c);
void api_sandboxes_list(struct api_ctx *c);
void api_sandboxes_get(struct api_ctx *c);
void api_sandboxes_delete(struct api_ctx *c);
void api_sandboxes_pause(struct api_ctx *c);
void api_sandboxes_resume(struct api_ctx *c);
void api_sandboxes_stop(struct api_ctx *c);
void api_sandboxes_metrics(struct api_ctx *c);
void api_sandboxes_fork(struct api_ctx *c);
void api_checkpoints_create(struct api_ctx *c);
void api_checkpoints_list(struct api_ctx *c);
void api_checkpoints_get(struct api_ctx *c);
void api_checkpoints_delete(struct api_ctx *c);
void api_checkpoints_restore(struct api_ctx *c);
void api_volumes_create(struct api_ctx *c);
void api_volumes_list(struct api_ctx *c);
void api_volumes_get(struct api_ctx *c);
void api_volumes_delete(struct api_ctx *c);
void api_sandboxes_start(struct api_ctx *c);
void api_sandboxes_patch(struct api_ctx *c);
void api_sandboxes_renew(struct api_ctx *c);

void api_keys_create(struct api_ctx *c);
void api_keys_list(struct api_ctx *c);
void api_keys_delete(struct api_ctx *c);

/* The shim's exec request for a native command body (docs/api.md, POST .../commands) in sandbox sb: a new
 * reference in *ret, and whether the body asked to wait (attach right after the answer). Shared with
 * the compat routers, which translate their requests into this body. */
int api_command_exec_request(struct sandbox *sb, json_t *body, json_t **ret, bool *ret_wait, sbx_error *err);

void api_commands_create(struct api_ctx *c);
void api_commands_list(struct api_ctx *c);
void api_commands_get(struct api_ctx *c);
void api_commands_stream(struct api_ctx *c);
void api_commands_logs(struct api_ctx *c);
void api_commands_stdin(struct api_ctx *c);
void api_commands_signal(struct api_ctx *c);
void api_commands_kill(struct api_ctx *c);
void api_commands_resize(struct api_ctx *c);

void api_agents_create(struct api_ctx *c);
void api_agents_list(struct api_ctx *c);
void api_agents_get(struct api_ctx *c);
void api_agents_stream(struct api_ctx *c);
void api_agents_prompt(struct api_ctx *c);
void api_agents_interrupt(struct api_ctx *c);
void api_agents_patch(struct api_ctx *c);
void api_agents_delete(struct api_ctx *c);

/* Code contexts (contexts.c, contexts.h). */
void api_contexts_create(struct api_ctx *c);
void api_contexts_list(struct api_ctx *c);
void api_contexts_get(struct api_ctx *c);
void api_contexts_delete(struct api_ctx *c);
void api_contexts_run(struct api_ctx *c);
void api_contexts_interrupt(struct api_ctx *c);

void api_snapshots_create(struct api_ctx *c);
void api_snapshots_list(struct api_ctx *c);
void api_snapshots_get(struct api_ctx *c);
void api_snapshots_delete(struct api_ctx *c);
void api_layers_list(struct api_ctx *c);
void api_sandboxes_capture(struct api_ctx *c);

/* 0 when sb's files can be reached now (mounted, no checkpoint copying its disk); an error otherwise. */
int api_files_ready(struct sandbox *sb, sbx_error *err);
/* Opens path in sb for a download, refusing what root inside the sandbox could not read: a new fd and its
 * size. Then api_files_send streams it (honouring Range) and completes req; takes ownership of fd and of
 * the reference sb. Shared with the compat routers. */
int api_files_open_download(struct sandbox *sb, const char *path, int *ret_fd, uint64_t *ret_size,
                            sbx_error *err);
void api_files_send(struct http_request *req, struct sandbox *sb, int fd, uint64_t size);

void api_files_put(struct api_ctx *c);
void api_files_get(struct api_ctx *c);
void api_files_delete(struct api_ctx *c);
void api_files_stat(struct api_ctx *c);
void api_files_list(struct api_ctx *c);
void api_files_mkdir(struct api_ctx *c);
void api_files_move(struct api_ctx *c);
