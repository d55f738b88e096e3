/* libsbx: /v1/keys (tenant API keys; admin only). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define OOM(err) client_err(err, -ENOMEM, 0, "internal", "out of memory")

/* Overwrites a secret the struct owns before freeing it (best effort: the response buffers it came
 * through are not wiped). */
static void free_secret(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

SBX_PUBLIC void sbx_key_done(struct sbx_key *k)
{
    if (!k)
        return;
    free(k->id);
    free(k->name);
    free(k->created_at);
    free_secret(k->secret);
    free_secret(k->json); /* holds the secret too, after a create */
    *k = (struct sbx_key){0};
}

SBX_PUBLIC void sbx_key_list_free(struct sbx_key *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        sbx_key_done(&list[i]);
    free(list);
}

static int key_from_json(json_t *o, struct sbx_key *ret, struct sbx_err *err)
{
    if (!json_is_object(o))
        return client_err(err, -EPROTO, 0, "bad_response", "key is not a JSON object");
    bool oom = false;
    json_t *q = json_object_get(o, "quotas");
    struct sbx_key k = {
        .id = json_strdup_member(o, "id", &oom),
        .name = json_strdup_member(o, "name", &oom),
        .created_at = json_strdup_member(o, "created_at", &oom),
        .max_sandboxes = json_integer_value(json_object_get(q, "max_sandboxes")),
        .max_memory_mb = json_integer_value(json_object_get(q, "max_memory_mb")),
        .secret = json_strdup_member(o, "key", &oom),
        .json = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER),
    };
    if (oom || !k.json) {
        sbx_key_done(&k);
        return OOM(err);
    }
    if (!k.id) {
        sbx_key_done(&k);
        return client_err(err, -EPROTO, 0, "bad_response", "key without an id");
    }
    *ret = k;
    return 0;
}

/* The POST /v1/keys body. Returns 0, -EINVAL (with err) or -ENOMEM. */
static int key_body(const struct sbx_key_opts *opts, json_t **ret, struct sbx_err *err)
{
    if (opts->max_sandboxes < 0 || opts->max_memory_mb < 0)
        return client_err(err, -EINVAL, 0, "invalid_argument", "quotas must be >= 0 (0: unlimited)");
    json_t *body = json_object(), *q = json_object();
    int r = body && q ? 0 : -ENOMEM;
    if (r >= 0 && opts->name)
        r = json_object_set_new(body, "name", json_string(opts->name));
    if (r >= 0 && opts->max_sandboxes > 0)
        r = json_object_set_new(q, "max_sandboxes", json_integer(opts->max_sandboxes));
    if (r >= 0 && opts->max_memory_mb > 0)
        r = json_object_set_new(q, "max_memory_mb", json_integer(opts->max_memory_mb));
    if (r >= 0 && json_object_size(q) > 0)
        r = json_object_set(body, "quotas", q);
    json_decref(q);
    if (r < 0) {
        json_decref(body);
        /* json_string() fails on invalid UTF-8 as well as on OOM: blame the name if there is one. */
        return opts->name ? client_err(err, -EINVAL, 0, "invalid_argument", "bad key name (not UTF-8?)")
                          : OOM(err);
    }
    *ret = body;
    return 0;
}

SBX_PUBLIC int sbx_key_create(struct sbx_client *c, const struct sbx_key_opts *opts, struct sbx_key *ret,
                              struct sbx_err *err)
{
    static const struct sbx_key_opts none = {0};
    if (!c || !ret)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    json_t *body = NULL, *doc = NULL;
    int r = key_body(opts ? opts : &none, &body, err);
    if (r < 0)
        return r;
    r = client_json(c, "POST", "/v1/keys", body, &doc, err);
    json_decref(body);
    if (r >= 0)
        r = key_from_json(doc, ret, err);
    json_decref(doc);
    return r < 0 ? r : 0;
}

SBX_PUBLIC int sbx_key_list(struct sbx_client *c, struct sbx_key **ret_list, size_t *ret_n,
                            struct sbx_err *err)
{
    if (!c || !ret_list || !ret_n)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    json_t *doc = NULL;
    int r = client_json(c, "GET", "/v1/keys", NULL, &doc, err);
    if (r < 0)
        return r;
    json_t *arr = json_object_get(doc, "keys");
    if (!json_is_array(arr)) {
        json_decref(doc);
        return client_err(err, -EPROTO, 0, "bad_response", "no `keys` array in the answer");
    }
    size_t n = json_array_size(arr);
    struct sbx_key *list = calloc(n ? n : 1, sizeof(*list));
    if (!list) {
        json_decref(doc);
        return OOM(err);
    }
    for (size_t i = 0; i < n; i++) {
        r = key_from_json(json_array_get(arr, i), &list[i], err);
        if (r < 0) {
            sbx_key_list_free(list, n);
            json_decref(doc);
            return r;
        }
    }
    json_decref(doc);
    *ret_list = list;
    *ret_n = n;
    return 0;
}

SBX_PUBLIC int sbx_key_delete(struct sbx_client *c, const char *id, struct sbx_err *err)
{
    if (!c || !id)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    struct lbuf path = LBUF_INIT;
    int r = lbuf_appends(&path, "/v1/keys/");
    if (r >= 0)
        r = url_escape(&path, id);
    if (r < 0) {
        lbuf_done(&path);
        return OOM(err);
    }
    r = client_json(c, "DELETE", path.base, NULL, NULL, err);
    lbuf_done(&path);
    return r < 0 ? r : 0;
}
