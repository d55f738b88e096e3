/* /v1/volumes: named persistent volumes (daemon/volume.h). Each tenant sees and mounts its own; the
 * admin sees every one. */
#include <errno.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "daemon/daemon.h"
#include "daemon/volume.h"

static void create_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    const char *name = NULL;
    int64_t size_mb = VOLUME_DEFAULT_MB;
    struct volume *v = NULL;
    if (jsonreq_string(body, "name", 256, &name, &err) < 0 ||
        jsonreq_integer(body, "size_mb", VOLUME_MIN_MB, VOLUME_MAX_MB, &size_mb, &err) < 0 ||
        volume_create(c->d, name, size_mb, c->owner, &v, &err) < 0)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 201, volume_to_json(c->d, v));
}

void api_volumes_create(struct api_ctx *c)
{
    api_read_json(c, create_with_body);
}

void api_volumes_list(struct api_ctx *c)
{
    api_reply_json(c->req, 200, json_pack("{s:o}", "volumes", volume_list_json(c->d, c->owner)));
}

/* {id} here is a volume's id or name. */
void api_volumes_get(struct api_ctx *c)
{
    sbx_error err = {0};
    struct volume *v = volume_resolve(c->d, c->sandbox_id, c->owner, &err);
    if (!v)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 200, volume_to_json(c->d, v));
}

void api_volumes_delete(struct api_ctx *c)
{
    sbx_error err = {0};
    struct volume *v = volume_resolve(c->d, c->sandbox_id, c->owner, &err);
    if (!v || volume_delete(c->d, v, &err) < 0)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 204, NULL);
}
