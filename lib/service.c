/* Service URLs: POST /v1/sandboxes/{id}/ports/{port}/url. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define OOM(err) client_err(err, -ENOMEM, 0, "internal", "out of memory")

SBX_PUBLIC void sbx_service_url_done(struct sbx_service_url *u)
{
    if (!u)
        return;
    free(u->url);
    free(u->token);
    free(u->expires_at);
    free(u->json);
    memset(u, 0, sizeof(*u));
}

SBX_PUBLIC int sbx_service_url(struct sbx_client *c, const char *id, int port, int64_t expires_in_s,
                               struct sbx_service_url *ret, struct sbx_err *err)
{
    if (!c || !id || !ret)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    if (port < 1 || port > 65535 || expires_in_s < 0)
        return client_err(err, -EINVAL, 0, "invalid_argument", "port must be 1..65535, expiry >= 0");
    memset(ret, 0, sizeof(*ret));
    char suffix[48];
    snprintf(suffix, sizeof(suffix), "/ports/%d/url", port);
    struct lbuf path = LBUF_INIT;
    json_t *body = json_object(), *doc = NULL;
    if (!body || client_sandbox_path(&path, id, suffix) < 0 ||
        (expires_in_s > 0 &&
         json_object_set_new(body, "expires_in_seconds", json_integer(expires_in_s)) < 0)) {
        lbuf_done(&path);
        json_decref(body);
        return OOM(err);
    }
    int r = client_json(c, "POST", path.base, body, &doc, err);
    lbuf_done(&path);
    json_decref(body);
    if (r < 0)
        return r;
    bool oom = false;
    ret->url = json_strdup_member(doc, "url", &oom);
    ret->token = json_strdup_member(doc, "token", &oom);
    ret->expires_at = json_strdup_member(doc, "expires_at", &oom);
    ret->json = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (oom || !ret->json) {
        sbx_service_url_done(ret);
        return OOM(err);
    }
    if (!ret->url || !ret->token) {
        sbx_service_url_done(ret);
        return client_err(err, -EPROTO, 0, "internal", "the daemon's answer has no url or token");
    }
    return 0;
}
