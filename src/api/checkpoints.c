/* /v1/sandboxes/{id}/checkpoints and /v1/sandboxes/{id}/fork (daemon/checkpoint.h). The copies take a
 * while (their size): the request is answered when they end; a client that goes away meanwhile does not
 * stop a checkpoint or a restore, and a fork it asked for is undone. */
#include <errno.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "api/keys.h"
#include "base/cleanup.h"
#include "daemon/checkpoint.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"

static void op_done(int status, json_t *body, const sbx_error *err, void *userdata)
{
    struct http_request *req = userdata;
    if (err)
        api_reply_error(req, err);
    else
        api_reply_json(req, status, body);
}

static void op_aborted(struct http_request *req, void *userdata)
{
    checkpoint_op_forget(userdata);
}

/* The checkpoint {cid} of sandbox {id}, or an answered 404. */
static struct checkpoint *find_checkpoint(struct api_ctx *c, struct sandbox *sb)
{
    struct checkpoint *ck = checkpoint_find(c->d, sb->id, c->command_id);
    if (!ck) {
        sbx_error err = {0};
        sbx_error_set(&err, -ENOENT, "sandbox `%s` has no checkpoint `%s`", sb->id, c->command_id);
        api_reply_error(c->req, &err);
    }
    return ck;
}

static void create_with_body(struct api_ctx *c, json_t *body)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    const char *name = NULL;
    struct checkpoint_op *op = NULL;
    if (jsonreq_string(body, "name", 256, &name, &err) < 0 ||
        checkpoint_create(c->d, sb, name, op_done, c->req, &op, &err) < 0)
        return api_reply_error(c->req, &err);
    http_request_on_abort(c->req, op_aborted, op);
}

void api_checkpoints_create(struct api_ctx *c)
{
    api_read_json(c, create_with_body);
}

void api_checkpoints_list(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    if (sb)
        api_reply_json(c->req, 200, json_pack("{s:o}", "checkpoints", checkpoint_list_json(c->d, sb->id)));
}

void api_checkpoints_get(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    struct checkpoint *ck = sb ? find_checkpoint(c, sb) : NULL;
    if (ck)
        api_reply_json(c->req, 200, checkpoint_to_json(ck));
}

void api_checkpoints_delete(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    struct checkpoint *ck = sb ? find_checkpoint(c, sb) : NULL;
    if (!ck)
        return;
    sbx_error err = {0};
    if (checkpoint_delete(c->d, ck, &err) < 0)
        api_reply_error(c->req, &err);
    else
        api_reply_json(c->req, 204, NULL);
}

void api_checkpoints_restore(struct api_ctx *c)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    struct checkpoint *ck = sb ? find_checkpoint(c, sb) : NULL;
    if (!ck)
        return;
    sbx_error err = {0};
    struct checkpoint_op *op = NULL;
    if (checkpoint_restore(c->d, sb, ck, op_done, c->req, &op, &err) < 0)
        return api_reply_error(c->req, &err);
    http_request_on_abort(c->req, op_aborted, op);
}

static void fork_with_body(struct api_ctx *c, json_t *body)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    int64_t count = 1;
    struct checkpoint_op *op = NULL;
    if (jsonreq_integer(body, "count", 1, FORK_COUNT_MAX, &count, &err) < 0)
        return api_reply_error(c->req, &err);
    /* The forks count against the owner's quotas like creates of the same size. */
    if (keys_check_quota(c->d, c->owner, (unsigned)count, sb->res.memory_mb * (uint64_t)count, &err) < 0 ||
        checkpoint_fork(c->d, sb, (unsigned)count, op_done, c->req, &op, &err) < 0)
        return api_reply_error(c->req, &err);
    http_request_on_abort(c->req, op_aborted, op);
}

void api_sandboxes_fork(struct api_ctx *c)
{
    api_read_json(c, fork_with_body);
}
