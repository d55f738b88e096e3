/* libsbx: /v1/sandboxes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define OOM(err) client_err(err, -ENOMEM, 0, "internal", "out of memory")

SBX_PUBLIC void sbx_sandbox_done(struct sbx_sandbox *s)
{
    if (!s)
        return;
    free(s->id);
    free(s->name);
    free(s->state);
    free(s->snapshot);
    free(s->created_at);
    free(s->json);
    *s = (struct sbx_sandbox){0};
}

SBX_PUBLIC void sbx_sandbox_list_free(struct sbx_sandbox *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        sbx_sandbox_done(&list[i]);
    free(list);
}

static int sandbox_from_json(json_t *o, struct sbx_sandbox *ret, struct sbx_err *err)
{
    if (!json_is_object(o))
        return client_err(err, -EPROTO, 0, "bad_response", "sandbox is not a JSON object");
    bool oom = false;
    struct sbx_sandbox s = {
        .id = json_strdup_member(o, "id", &oom),
        .name = json_strdup_member(o, "name", &oom),
        .state = json_strdup_member(o, "state", &oom),
        .snapshot = json_strdup_member(o, "snapshot", &oom),
        .created_at = json_strdup_member(o, "created_at", &oom),
        .json = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER),
    };
    json_t *res = json_object_get(o, "resources");
    s.cpus = json_number_value(json_object_get(res, "cpus"));
    s.memory_mb = json_integer_value(json_object_get(res, "memory_mb"));
    s.pids = json_integer_value(json_object_get(res, "pids"));
    if (oom || !s.json) {
        sbx_sandbox_done(&s);
        return OOM(err);
    }
    if (!s.id) {
        sbx_sandbox_done(&s);
        return client_err(err, -EPROTO, 0, "bad_response", "sandbox without an id");
    }
    *ret = s;
    return 0;
}

SBX_PUBLIC int sbx_sandbox_create(struct sbx_client *c, const struct sbx_create_opts *opts,
                                  struct sbx_sandbox *ret, struct sbx_err *err)
{
    static const struct sbx_create_opts none = {0};
    if (!c || !ret)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    if (!opts)
        opts = &none;
    json_t *body = json_object(), *res = json_object();
    int r = body && res ? 0 : -ENOMEM;
    if (r >= 0 && opts->snapshot)
        r = json_object_set_new(body, "snapshot", json_string(opts->snapshot));
    if (r >= 0 && opts->name)
        r = json_object_set_new(body, "name", json_string(opts->name));
    if (r >= 0 && opts->cpus > 0)
        r = json_object_set_new(res, "cpus", json_real(opts->cpus));
    if (r >= 0 && opts->memory_mb > 0)
        r = json_object_set_new(res, "memory_mb", json_integer(opts->memory_mb));
    if (r >= 0 && opts->pids > 0)
        r = json_object_set_new(res, "pids", json_integer(opts->pids));
    if (r >= 0 && json_object_size(res) > 0)
        r = json_object_set(body, "resources", res);
    if (r < 0) {
        json_decref(body);
        json_decref(res);
        return OOM(err);
    }
    json_decref(res);
    r = json_set_kv_object(body, "env", opts->env);
    if (r >= 0)
        r = json_set_kv_object(body, "metadata", opts->metadata);
    if (r < 0) {
        json_decref(body);
        return r == -ENOMEM
                   ? OOM(err)
                   : client_err(err, r, 0, "invalid_argument", "env and metadata entries must be K=V");
    }
    json_t *doc = NULL;
    r = client_json(c, "POST", "/v1/sandboxes", body, &doc, err);
    json_decref(body);
    if (r >= 0)
        r = sandbox_from_json(doc, ret, err);
    json_decref(doc);
    return r < 0 ? r : 0;
}

SBX_PUBLIC int sbx_sandbox_get(struct sbx_client *c, const char *id, struct sbx_sandbox *ret,
                               struct sbx_err *err)
{
    if (!c || !id || !ret)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    struct lbuf path = LBUF_INIT;
    if (client_sandbox_path(&path, id, NULL) < 0)
        return OOM(err);
    json_t *doc = NULL;
    int r = client_json(c, "GET", path.base, NULL, &doc, err);
    lbuf_done(&path);
    if (r >= 0)
        r = sandbox_from_json(doc, ret, err);
    json_decref(doc);
    return r < 0 ? r : 0;
}

SBX_PUBLIC int sbx_sandbox_list(struct sbx_client *c, struct sbx_sandbox **ret_list, size_t *ret_n,
                                struct sbx_err *err)
{
    if (!c || !ret_list || !ret_n)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    json_t *doc = NULL;
    int r = client_json(c, "GET", "/v1/sandboxes", NULL, &doc, err);
    if (r < 0)
        return r;
    json_t *arr = json_object_get(doc, "sandboxes");
    if (!json_is_array(arr)) {
        json_decref(doc);
        return client_err(err, -EPROTO, 0, "bad_response", "no `sandboxes` array in the answer");
    }
    size_t n = json_array_size(arr);
    struct sbx_sandbox *list = calloc(n ? n : 1, sizeof(*list));
    if (!list) {
        json_decref(doc);
        return OOM(err);
    }
    for (size_t i = 0; i < n; i++) {
        r = sandbox_from_json(json_array_get(arr, i), &list[i], err);
        if (r < 0) {
            sbx_sandbox_list_free(list, n);
            json_decref(doc);
            return r;
        }
    }
    json_decref(doc);
    *ret_list = list;
    *ret_n = n;
    return 0;
}

SBX_PUBLIC int sbx_sandbox_delete(struct sbx_client *c, const char *id, struct sbx_err *err)
{
    if (!c || !id)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    struct lbuf path = LBUF_INIT;
    if (client_sandbox_path(&path, id, NULL) < 0)
        return OOM(err);
    int r = client_json(c, "DELETE", path.base, NULL, NULL, err);
    lbuf_done(&path);
    return r < 0 ? r : 0;
}

static int sandbox_action(struct sbx_client *c, const char *id, const char *action, struct sbx_err *err)
{
    if (!c || !id)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    struct lbuf path = LBUF_INIT;
    if (client_sandbox_path(&path, id, action) < 0)
        return OOM(err);
    int r = client_json(c, "POST", path.base, NULL, NULL, err);
    lbuf_done(&path);
    return r < 0 ? r : 0;
}

SBX_PUBLIC int sbx_sandbox_pause(struct sbx_client *c, const char *id, struct sbx_err *err)
{
    return sandbox_action(c, id, "/pause", err);
}

SBX_PUBLIC int sbx_sandbox_resume(struct sbx_client *c, const char *id, struct sbx_err *err)
{
    return sandbox_action(c, id, "/resume", err);
}

SBX_PUBLIC int sbx_sandbox_stop(struct sbx_client *c, const char *id, struct sbx_err *err)
{
    return sandbox_action(c, id, "/stop", err);
}

SBX_PUBLIC int sbx_sandbox_start(struct sbx_client *c, const char *id, struct sbx_err *err)
{
    return sandbox_action(c, id, "/start", err);
}
