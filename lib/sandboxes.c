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
    free(s->last_active_at);
    free(s->stopped_at);
    free(s->expires_at);
    free(s->state_reason);
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

/* An integer member, or -1 when absent (a daemon older than the lifecycle fields). */
static int64_t json_int_member(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

/* Sets `key` to a lifecycle value of the public structs: 0 leaves it out, SBX_NEVER sends 0. Returns 0,
 * -EINVAL (another negative value) or -ENOMEM. */
static int set_lifecycle(json_t *body, const char *key, int64_t v)
{
    if (v == 0)
        return 0;
    if (v < 0 && v != SBX_NEVER)
        return -EINVAL;
    return json_object_set_new(body, key, json_integer(v == SBX_NEVER ? 0 : v)) < 0 ? -ENOMEM : 0;
}

static int set_lifecycle_fields(json_t *body, int64_t idle_ttl_s, int64_t delete_after_stop_s,
                                int64_t timeout_s)
{
    int r = set_lifecycle(body, "idle_ttl_seconds", idle_ttl_s);
    if (r >= 0)
        r = set_lifecycle(body, "delete_after_stop_seconds", delete_after_stop_s);
    if (r >= 0)
        r = set_lifecycle(body, "timeout_seconds", timeout_s);
    return r;
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
        .idle_ttl_s = json_int_member(o, "idle_ttl_seconds"),
        .delete_after_stop_s = json_int_member(o, "delete_after_stop_seconds"),
        .timeout_s = json_int_member(o, "timeout_seconds"),
        .last_active_at = json_strdup_member(o, "last_active_at", &oom),
        .stopped_at = json_strdup_member(o, "stopped_at", &oom),
        .expires_at = json_strdup_member(o, "expires_at", &oom),
        .state_reason = json_strdup_member(o, "state_reason", &oom),
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

/* "volumes": [{"volume": V, "path": P, "read_only": bool}] from "V:/P" or "V:/P:ro" entries. -EINVAL on a
 * malformed entry, -ENOMEM. */
static int set_volume_mounts(json_t *body, const char *const *mounts)
{
    if (!mounts || !mounts[0])
        return 0;
    json_t *list = json_array();
    if (!list)
        return -ENOMEM;
    for (size_t i = 0; mounts[i]; i++) {
        const char *m = mounts[i], *colon = strchr(m, ':');
        if (!colon || colon == m || colon[1] != '/') {
            json_decref(list);
            return -EINVAL;
        }
        char *path = strdup(colon + 1);
        char *name = strndup(m, (size_t)(colon - m));
        bool ro = false;
        size_t pl = path ? strlen(path) : 0;
        if (pl > 3 && strcmp(path + pl - 3, ":ro") == 0) {
            path[pl - 3] = '\0';
            ro = true;
        } else if (pl > 3 && strcmp(path + pl - 3, ":rw") == 0) {
            path[pl - 3] = '\0';
        }
        json_t *o =
            path && name ? json_pack("{s:s, s:s, s:b}", "volume", name, "path", path, "read_only", ro) : NULL;
        free(path);
        free(name);
        if (!o || json_array_append_new(list, o) < 0) {
            json_decref(list);
            return -ENOMEM;
        }
    }
    return json_object_set_new(body, "volumes", list) < 0 ? -ENOMEM : 0;
}

static json_t *string_array(const char *const *list)
{
    json_t *a = json_array();
    for (size_t i = 0; a && list && list[i]; i++)
        if (json_array_append_new(a, json_string(list[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* "network": {"mode", "egress": {"default", "allow", "deny"}}; absent when nothing is asked for. The
 * daemon validates the entries (a typed 400 names the bad one). */
static int set_network(json_t *body, const struct sbx_create_opts *o)
{
    bool egress = (o->network && strcmp(o->network, "egress") == 0) || o->egress_default ||
                  (o->egress_allow && o->egress_allow[0]) || (o->egress_deny && o->egress_deny[0]);
    if (!egress && !o->network)
        return 0;
    json_t *net = json_pack("{s:s}", "mode", egress ? "egress" : o->network);
    if (!net)
        return -ENOMEM;
    if (egress) {
        json_t *p = json_pack("{s:s, s:o*, s:o*}", "default", o->egress_default ? o->egress_default : "deny",
                              "allow", string_array(o->egress_allow), "deny", string_array(o->egress_deny));
        if (!p || json_object_set_new(net, "egress", p) < 0) {
            json_decref(net);
            return -ENOMEM;
        }
    }
    return json_object_set_new(body, "network", net);
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
    if (r >= 0 && opts->checkpoint)
        r = json_object_set_new(body, "checkpoint", json_string(opts->checkpoint));
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
    r = set_volume_mounts(body, opts->volumes);
    if (r < 0) {
        json_decref(body);
        return r == -ENOMEM ? OOM(err)
                            : client_err(err, r, 0, "invalid_argument", "volumes must be VOLUME:/path[:ro]");
    }
    r = set_network(body, opts);
    if (r < 0) {
        json_decref(body);
        return OOM(err);
    }
    r = set_lifecycle_fields(body, opts->idle_ttl_s, opts->delete_after_stop_s, opts->timeout_s);
    if (r < 0) {
        json_decref(body);
        return r == -ENOMEM ? OOM(err)
                            : client_err(err, r, 0, "invalid_argument",
                                         "lifecycle seconds must be > 0, 0 (default) or SBX_NEVER");
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

/* "/v1/sandboxes[?state=S&metadata.K=V...]" with every key and value escaped. Returns 0, -EINVAL (a
 * metadata entry without '=') or -ENOMEM. */
static int list_path(struct lbuf *b, const struct sbx_list_opts *opts)
{
    int r = lbuf_appends(b, "/v1/sandboxes");
    char sep = '?';
    if (r >= 0 && opts && opts->state) {
        r = lbuf_appends(b, "?state=");
        if (r >= 0)
            r = url_escape(b, opts->state);
        sep = '&';
    }
    for (size_t i = 0; r >= 0 && opts && opts->metadata && opts->metadata[i]; i++) {
        const char *kv = opts->metadata[i], *eq = strchr(kv, '=');
        if (!eq || eq == kv)
            return -EINVAL;
        char *key = strndup(kv, (size_t)(eq - kv));
        if (!key)
            return -ENOMEM;
        r = lbuf_printf(b, "%cmetadata.", sep);
        if (r >= 0)
            r = url_escape(b, key);
        if (r >= 0)
            r = lbuf_appends(b, "=");
        if (r >= 0)
            r = url_escape(b, eq + 1);
        free(key);
        sep = '&';
    }
    return r;
}

SBX_PUBLIC int sbx_sandbox_list(struct sbx_client *c, struct sbx_sandbox **ret_list, size_t *ret_n,
                                struct sbx_err *err)
{
    return sbx_sandbox_list_where(c, NULL, ret_list, ret_n, err);
}

SBX_PUBLIC int sbx_sandbox_list_where(struct sbx_client *c, const struct sbx_list_opts *opts,
                                      struct sbx_sandbox **ret_list, size_t *ret_n, struct sbx_err *err)
{
    if (!c || !ret_list || !ret_n)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    struct lbuf path = LBUF_INIT;
    int r = list_path(&path, opts);
    if (r < 0) {
        lbuf_done(&path);
        return r == -ENOMEM ? OOM(err)
                            : client_err(err, r, 0, "invalid_argument", "metadata filters must be K=V");
    }
    json_t *doc = NULL;
    r = client_json(c, "GET", path.base, NULL, &doc, err);
    lbuf_done(&path);
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

/* The PATCH body: only what opts changes. Returns 0, -EINVAL (with err) or -ENOMEM. */
static int update_body(const struct sbx_update_opts *opts, json_t **ret, struct sbx_err *err)
{
    json_t *body = json_object();
    if (!body)
        return OOM(err);
    int r = set_lifecycle_fields(body, opts->idle_ttl_s, opts->delete_after_stop_s, opts->timeout_s);
    if (r == -EINVAL) {
        json_decref(body);
        return client_err(err, r, 0, "invalid_argument",
                          "lifecycle seconds must be > 0, 0 (unchanged) or SBX_NEVER");
    }
    if (r >= 0 && opts->metadata)
        r = opts->metadata[0] ? json_set_kv_object(body, "metadata", opts->metadata)
                              : json_object_set_new(body, "metadata", json_object());
    if (r < 0) {
        json_decref(body);
        return r == -EINVAL ? client_err(err, r, 0, "invalid_argument", "metadata entries must be K=V")
                            : OOM(err);
    }
    *ret = body;
    return 0;
}

/* Sends `body` (borrowed; NULL for none) with `method` to /v1/sandboxes/{id}{suffix} and parses the
 * sandbox in the answer into *ret when ret is not NULL. */
static int sandbox_call(struct sbx_client *c, const char *method, const char *id, const char *suffix,
                        json_t *body, struct sbx_sandbox *ret, struct sbx_err *err)
{
    struct lbuf path = LBUF_INIT;
    if (client_sandbox_path(&path, id, suffix) < 0) {
        lbuf_done(&path);
        return OOM(err);
    }
    json_t *doc = NULL;
    int r = client_json(c, method, path.base, body, ret ? &doc : NULL, err);
    lbuf_done(&path);
    if (r >= 0 && ret)
        r = sandbox_from_json(doc, ret, err);
    json_decref(doc);
    return r < 0 ? r : 0;
}

SBX_PUBLIC int sbx_sandbox_update(struct sbx_client *c, const char *id, const struct sbx_update_opts *opts,
                                  struct sbx_sandbox *ret, struct sbx_err *err)
{
    static const struct sbx_update_opts none = {0};
    if (!c || !id)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    json_t *body = NULL;
    int r = update_body(opts ? opts : &none, &body, err);
    if (r < 0)
        return r;
    r = sandbox_call(c, "PATCH", id, NULL, body, ret, err);
    json_decref(body);
    return r;
}

SBX_PUBLIC int sbx_sandbox_renew(struct sbx_client *c, const char *id, int64_t timeout_s,
                                 struct sbx_sandbox *ret, struct sbx_err *err)
{
    if (!c || !id)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    if (timeout_s < 0)
        return client_err(err, -EINVAL, 0, "invalid_argument", "timeout_s must be > 0, or 0 to keep it");
    json_t *body = json_object();
    if (!body ||
        (timeout_s > 0 && json_object_set_new(body, "timeout_seconds", json_integer(timeout_s)) < 0)) {
        json_decref(body);
        return OOM(err);
    }
    int r = sandbox_call(c, "POST", id, "/renew", body, ret, err);
    json_decref(body);
    return r;
}
