/* /v1/snapshots and /v1/layers: image imports (the tarball is streamed to a file under the data dir, then
 * unpacked by sbx-unpack off the request), registry pulls (a JSON body), captures of sandboxes, listing,
 * lookup, deletion, and the layer store's usage. A snapshot a tenant captured is seen only by that tenant
 * and the admin; the others are everyone's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "base/cleanup.h"
#include "base/util.h"
#include "daemon/capture.h"
#include "daemon/checkpoint.h"
#include "daemon/daemon.h"
#include "daemon/pull.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"

struct upload {
    struct api_ctx *c;
    int fd;
    char *path;
    char *name;
    uint64_t bytes;
    bool failed;
    sbx_error err;
};

static void upload_free(struct upload *u)
{
    if (u->fd >= 0)
        close(u->fd);
    if (u->path)
        unlink(u->path); /* NULL once handed to the import */
    free(u->path);
    free(u->name);
    free(u);
}

static int upload_chunk(struct http_request *req, const char *data, size_t len, void *userdata)
{
    struct upload *u = userdata;
    if (u->failed)
        return 0; /* drained; the error is answered at the end */
    u->bytes += len;
    uint64_t max = snapshot_limits(u->c->d)->max_image_bytes;
    if (u->bytes > max) {
        u->failed = true;
        sbx_error_setk(&u->err, -EFBIG, "too_large", 413, "image over the limit of %llu MiB (--max-image-mb)",
                       (unsigned long long)(max >> 20));
    } else if (write_all(u->fd, data, len) < 0) {
        u->failed = true;
        int e = errno;
        sbx_error_set(&u->err, -e, "store the upload: %s", strerror(e));
    }
    if (u->failed && ftruncate(u->fd, 0) < 0) {
        /* nothing more to do: the file is removed when the request ends */
    }
    return 0;
}

static void upload_end(struct http_request *req, void *userdata)
{
    struct upload *u = userdata;
    struct snapshot *sn = NULL;
    if (!u->failed && u->bytes == 0)
        sbx_error_set(&u->err, -EINVAL, "the body must be an image tarball"), u->failed = true;
    if (!u->failed) {
        close(u->fd);
        u->fd = -1;
        char *path = TAKE_PTR(u->path); /* the import owns the file now */
        int r = snapshot_import_start(u->c->d, u->name, path, &sn, &u->err);
        free(path);
        if (r < 0)
            u->failed = true;
    }
    if (u->failed)
        api_reply_error(req, &u->err);
    else
        api_reply_json(req, 202, snapshot_to_json(sn));
    upload_free(u);
}

static void upload_abort(struct http_request *req, void *userdata)
{
    upload_free(userdata);
}

/* {"name", "image", "insecure", "auth": {"username", "password"} | {"token"}}: a registry pull. */
static void pull_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    struct pull_request req = {0};
    json_t *auth = NULL;
    bool insecure = false;
    if (jsonreq_string(body, "name", 64, &req.name, &err) < 0 ||
        jsonreq_string(body, "image", 512, &req.image, &err) < 0 ||
        jsonreq_bool(body, "insecure", &insecure, &err) < 0 || jsonreq_object(body, "auth", &auth, &err) < 0)
        return api_reply_error(c->req, &err);
    if (!req.name || !req.image)
        return http_respond_error(c->req, 400, "invalid_argument", "`name` and `image` are required");
    if (auth && (jsonreq_string(auth, "username", 256, &req.username, &err) < 0 ||
                 jsonreq_string(auth, "password", 1024, &req.password, &err) < 0 ||
                 jsonreq_string(auth, "token", 8192, &req.token, &err) < 0))
        return api_reply_error(c->req, &err);
    if (auth && !req.username && !req.token)
        return http_respond_error(c->req, 400, "invalid_argument",
                                  "`auth` is {\"username\", \"password\"} or {\"token\"}");
    req.insecure = insecure;
    struct snapshot *sn = NULL;
    if (pull_start(c->d, &req, &sn, &err) < 0)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 202, snapshot_to_json(sn));
}

/* POST /v1/snapshots?name=N with an image tarball (docker save or OCI layout) as the body, or with a JSON
 * body naming an image in a registry. */
void api_snapshots_create(struct api_ctx *c)
{
    sbx_error err = {0};
    const char *ct = http_header_get(c->req, "Content-Type");
    if (ct && strncasecmp(ct, "application/json", 16) == 0)
        return api_read_json(c, pull_with_body);
    const char *name = http_query_get(c->req, "name");
    if (snapshot_import_check(c->d, name, &err) < 0)
        return api_reply_error(c->req, &err);
    struct upload *u = xcalloc(1, sizeof(*u));
    u->c = c;
    u->fd = -1;
    u->name = xstrdup(name);
    if (snapshot_upload_open(c->d, &u->fd, &u->path, &err) < 0) {
        api_reply_error(c->req, &err);
        return upload_free(u);
    }
    http_request_on_abort(c->req, upload_abort, u);
    http_request_stream_body(c->req, upload_chunk, upload_end, u);
}

void api_snapshots_list(struct api_ctx *c)
{
    api_reply_json(c->req, 200, snapshot_list_json(c->d, c->owner));
}

static bool is_host(const char *id)
{
    return strcmp(id, "host") == 0;
}

void api_snapshots_get(struct api_ctx *c)
{
    if (is_host(c->sandbox_id))
        return api_reply_json(c->req, 200, snapshot_to_json(NULL));
    struct snapshot *sn = snapshot_find_visible(c->d, c->sandbox_id, c->owner);
    if (!sn)
        return http_respond_error(c->req, 404, "not_found", "snapshot `%s` not found", c->sandbox_id);
    api_reply_json(c->req, 200, snapshot_to_json(sn));
}

void api_snapshots_delete(struct api_ctx *c)
{
    sbx_error err = {0};
    if (is_host(c->sandbox_id))
        return http_respond_error(c->req, 403, "permission_denied",
                                  "the built-in `host` snapshot cannot be deleted");
    struct snapshot *sn = snapshot_find_visible(c->d, c->sandbox_id, c->owner);
    if (!sn)
        return http_respond_error(c->req, 404, "not_found", "snapshot `%s` not found", c->sandbox_id);
    if (c->owner && !sn->owner)
        return http_respond_error(c->req, 403, "permission_denied",
                                  "only the admin key may delete snapshot `%s`", sn->name);
    if (snapshot_delete(c->d, sn, &err) < 0)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 204, NULL);
}

void api_layers_list(struct api_ctx *c)
{
    sbx_error err = {0};
    json_t *o = snapshot_layers_json(c->d, &err);
    if (!o)
        return api_reply_error(c->req, &err);
    api_reply_json(c->req, 200, o);
}

/* POST /v1/sandboxes/{id}/capture {"name": N}: the sandbox's changes become a new snapshot, answered at once
 * (202, `building`); the copy runs off the loop with the sandbox busy. */
static void capture_with_body(struct api_ctx *c, json_t *body)
{
    _cleanup_(sandbox_unrefp) struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    const char *name = NULL;
    if (jsonreq_string(body, "name", 64, &name, &err) < 0)
        return api_reply_error(c->req, &err);
    if (!name)
        return http_respond_error(c->req, 400, "invalid_argument", "`name` is required");
    /* Refusals that do not need a snapshot first (busy, being created, no disk) are checked by the capture;
     * a refused capture leaves no snapshot behind. */
    if (sandbox_refuse_busy(sb, &err) < 0)
        return api_reply_error(c->req, &err);
    struct snapshot *sn = NULL;
    bool host_base =
        !sb->snapshot || strcmp(sb->snapshot, "host") == 0 || snapshot_is_host_based(c->d, sb->snapshot);
    if (snapshot_building_new(c->d, name, c->owner, "capture", host_base, &sn, &err) < 0)
        return api_reply_error(c->req, &err);
    const struct snapshot_limits *sl = snapshot_limits(c->d);
    struct capture_limits lim = {.max_bytes = sl->max_layer_bytes, .max_entries = sl->max_entries};
    if (checkpoint_capture(c->d, sb, sn, &lim, &err) < 0) {
        snapshot_building_drop(c->d, sn);
        return api_reply_error(c->req, &err);
    }
    api_reply_json(c->req, 202, snapshot_to_json(sn));
}

void api_sandboxes_capture(struct api_ctx *c)
{
    api_read_json(c, capture_with_body);
}
