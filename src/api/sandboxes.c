/* /v1/sandboxes: create, list, get, delete. */
#include <errno.h>
#include <string.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "api/keys.h"
#include "base/cleanup.h"
#include "daemon/checkpoint.h"
#include "daemon/egress.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "daemon/volume.h"
#include "store/store.h"
#include "runtime/runtime.h"

#define ENV_MAX_ENTRIES 1024
#define ENV_MAX_ENTRY (32 * 1024)
#define METADATA_MAX_BYTES (64 * 1024)

static int parse_resources(json_t *body, struct sandbox_resources *res, sbx_error *err)
{
    *res = SANDBOX_DEFAULT_RESOURCES;
    json_t *r = NULL;
    int k = jsonreq_object(body, "resources", &r, err);
    if (k <= 0)
        return k;
    double cpus;
    int64_t mem, pids, disk;
    if ((k = jsonreq_number(r, "cpus", 0.01, 64, &cpus, err)) < 0)
        return sbx_error_wrap(err, "resources");
    if (k)
        res->cpus = cpus;
    if ((k = jsonreq_integer(r, "memory_mb", 16, 1048576, &mem, err)) < 0)
        return sbx_error_wrap(err, "resources");
    if (k)
        res->memory_mb = (uint64_t)mem;
    if ((k = jsonreq_integer(r, "pids", 16, 65536, &pids, err)) < 0)
        return sbx_error_wrap(err, "resources");
    if (k)
        res->pids = (uint64_t)pids;
    /* The size of the sandbox's own disk, which holds everything it writes (docs/design/runtime.md). */
    if ((k = jsonreq_integer(r, "disk_mb", 64, 1048576, &disk, err)) < 0)
        return sbx_error_wrap(err, "resources");
    if (k)
        res->disk_mb = (uint64_t)disk;
    return 0;
}

/* idle_ttl_seconds, delete_after_stop_seconds, timeout_seconds: each overrides *life when present. */
static int parse_lifecycle(json_t *body, struct sandbox_lifecycle *life, sbx_error *err)
{
    const struct {
        const char *key;
        int64_t *field;
    } fields[] = {
        {"idle_ttl_seconds", &life->idle_ttl_s},
        {"delete_after_stop_seconds", &life->delete_after_stop_s},
        {"timeout_seconds", &life->timeout_s},
    };
    for (size_t i = 0; i < ELEMENTSOF(fields); i++)
        if (jsonreq_integer(body, fields[i].key, 0, SANDBOX_LIFECYCLE_MAX_S, fields[i].field, err) < 0)
            return err->code;
    return 0;
}

/* The sandbox is built (or failed): answer the request that asked for it. */
static void created(struct sandbox *sb, const sbx_error *err, void *userdata)
{
    struct http_request *req = userdata;
    if (sb)
        api_reply_json(req, 201, sandbox_to_json(sb));
    else
        api_reply_error(req, err);
}

/* The client went away while its sandbox was being built: nobody will learn its id. */
static void create_aborted(struct http_request *req, void *userdata)
{
    sandbox_create_cancel(userdata);
}

static int parse_metadata(json_t *body, json_t **ret, sbx_error *err)
{
    int k = jsonreq_object(body, "metadata", ret, err);
    if (k <= 0)
        return k;
    char *dump = json_dumps(*ret, JSON_COMPACT);
    size_t n = dump ? strlen(dump) : 0;
    free(dump);
    if (n > METADATA_MAX_BYTES)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`metadata` is larger than %d bytes",
                              METADATA_MAX_BYTES);
    return 1;
}

/* "checkpoint": the new sandbox's disk starts as a copy of it, over the snapshot its sandbox had; its disk
 * size is the checkpoint's (another one asked for is refused: a disk's size is fixed). */
static int from_checkpoint(struct api_ctx *c, json_t *body, const char *ref, struct sandbox_create_opts *opts,
                           char **ret_source, sbx_error *err)
{
    if (opts->snapshot)
        return sbx_error_set(err, -EINVAL, "give `snapshot` or `checkpoint`, not both");
    struct checkpoint *ck = checkpoint_resolve(c->d, ref, c->owner, err);
    if (!ck)
        return err->code;
    json_t *res = json_object_get(body, "resources");
    if (res && json_object_get(res, "disk_mb") && opts->res.disk_mb != (uint64_t)ck->disk_mb)
        return sbx_error_set(err, -EINVAL, "`resources.disk_mb` must be the checkpoint's (%lld) or absent",
                             (long long)ck->disk_mb);
    opts->res.disk_mb = (uint64_t)ck->disk_mb;
    opts->snapshot = ck->snapshot;
    *ret_source = checkpoint_image_path(c->d, ck->id);
    opts->disk_source = *ret_source;
    opts->disk_source_uid_base = ck->uid_base;
    return 0;
}

static void create_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    struct sandbox_create_opts opts = {.life = {.idle_ttl_s = SANDBOX_DEFAULT_IDLE_TTL_S}};
    json_t *metadata = NULL;
    const char *checkpoint = NULL;
    if (jsonreq_string(body, "snapshot", 256, &opts.snapshot, &err) < 0 ||
        jsonreq_string(body, "checkpoint", 256, &checkpoint, &err) < 0 ||
        jsonreq_string(body, "name", 256, &opts.name, &err) < 0 ||
        jsonreq_string_map(body, "env", ENV_MAX_ENTRIES, ENV_MAX_ENTRY, &opts.env, &err) < 0 ||
        parse_metadata(body, &metadata, &err) < 0 || parse_resources(body, &opts.res, &err) < 0 ||
        parse_lifecycle(body, &opts.life, &err) < 0 ||
        keys_check_quota(c->d, c->owner, 1, opts.res.memory_mb, &err) < 0)
        return api_reply_error(c->req, &err);
    json_auto_t *volumes = NULL;
    if (volume_parse_mounts(c->d, json_object_get(body, "volumes"), c->owner, &volumes, &err) < 0)
        return api_reply_error(c->req, &err);
    opts.volumes = volumes;
    struct sandbox_net *net = NULL; /* checked here, so that a bad policy fails before anything is made */
    if (egress_parse_network(json_object_get(body, "network"), &net, &err) < 0)
        return api_reply_error(c->req, &err);
    egress_net_free(net);
    opts.network = json_object_get(body, "network");
    _cleanup_free_ char *disk_source = NULL;
    if (checkpoint && from_checkpoint(c, body, checkpoint, &opts, &disk_source, &err) < 0)
        return api_reply_error(c->req, &err);
    opts.metadata = metadata;
    opts.owner = c->owner;
    struct sandbox *sb = NULL;
    struct create_op *op = NULL;
    int r = sandbox_create(c->d, &opts, created, c->req, &sb, &op, &err);
    if (r < 0)
        return api_reply_error(c->req, &err);
    if (r > 0) {
        api_reply_json(c->req, 201, sandbox_to_json(sb));
        sandbox_unref(sb);
        return;
    }
    http_request_on_abort(c->req, create_aborted, op);
}

void api_sandboxes_create(struct api_ctx *c)
{
    api_read_json(c, create_with_body);
}

#define LIST_MAX_FILTERS 32

struct list_filter {
    const char *state; /* NULL = any */
    size_t n_meta;
    char *meta_key[LIST_MAX_FILTERS]; /* metadata.KEY=VALUE, all must match */
    char *meta_value[LIST_MAX_FILTERS];
};

static void list_filter_done(struct list_filter *f)
{
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_value[i]);
    }
}

/* ?state=running&metadata.owner=agent-7: every metadata.* parameter is one more condition. */
static int parse_list_filter(struct http_request *req, struct list_filter *f, sbx_error *err)
{
    f->state = http_query_get(req, "state");
    if (f->state && strcmp(f->state, "deleted") != 0) {
        int i = 0;
        while (i < _SANDBOX_STATE_MAX && strcmp(f->state, sandbox_state_to_string(i)) != 0)
            i++;
        if (i == _SANDBOX_STATE_MAX)
            return sbx_error_set(err, -EINVAL,
                                 "`state` must be creating, running, paused, stopped, failed or deleted");
    }
    for (const char *q = http_request_query(req); q && *q;) {
        const char *amp = strchr(q, '&');
        size_t plen = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', plen);
        size_t klen = eq ? (size_t)(eq - q) : plen, vlen = eq ? plen - klen - 1 : 0;
        char *key = xmalloc(klen + 1), *val = xmalloc(vlen + 1);
        long kl = http_percent_decode(q, klen, key, true);
        long vl = http_percent_decode(eq ? eq + 1 : "", vlen, val, true);
        if (kl < 0 || vl < 0 || strlen(key) != (size_t)kl || strlen(val) != (size_t)vl) {
            free(key);
            free(val);
            return sbx_error_set(err, -EINVAL, "malformed query string");
        }
        if (strncmp(key, "metadata.", 9) == 0) {
            if (f->n_meta == LIST_MAX_FILTERS) {
                free(key);
                free(val);
                return sbx_error_set(err, -EINVAL, "at most %d metadata filters", LIST_MAX_FILTERS);
            }
            f->meta_key[f->n_meta] = key;
            f->meta_value[f->n_meta++] = val;
        } else {
            free(key);
            free(val);
        }
        q = amp ? amp + 1 : NULL;
    }
    return 0;
}

static bool list_filter_match(const struct list_filter *f, const char *state, json_t *metadata)
{
    if (f->state && strcmp(f->state, state) != 0)
        return false;
    for (size_t i = 0; i < f->n_meta; i++) {
        const char *v = json_string_value(json_object_get(metadata, f->meta_key[i] + 9));
        if (!v || strcmp(v, f->meta_value[i]) != 0)
            return false;
    }
    return true;
}

struct tombstone_list {
    const struct list_filter *f;
    const char *owner;
    json_t *arr;
};

static int add_tombstone(const struct store_tombstone *t, void *userdata)
{
    struct tombstone_list *l = userdata;
    if (l->owner && (!t->owner || strcmp(l->owner, t->owner) != 0))
        return 0;
    json_t *o = json_loads(t->sandbox_json, 0, NULL);
    if (o && list_filter_match(l->f, "deleted", json_object_get(o, "metadata")))
        json_array_append_new(l->arr, o);
    else
        json_decref(o);
    return 0;
}

void api_sandboxes_list(struct api_ctx *c)
{
    struct list_filter f = {0};
    sbx_error err = {0};
    if (parse_list_filter(c->req, &f, &err) < 0) {
        list_filter_done(&f);
        return api_reply_error(c->req, &err);
    }
    json_t *arr = json_array();
    /* The registry is newest first; list oldest first, as created. */
    struct sandbox *last = c->d->sandboxes;
    while (last && last->next)
        last = last->next;
    for (struct sandbox *sb = last; sb; sb = sb->prev)
        if (sandbox_visible_to(sb, c->owner) &&
            list_filter_match(&f, sandbox_state_to_string(sb->state), sb->metadata))
            json_array_append_new(arr, sandbox_to_json(sb));
    /* Deleted ones only when asked for: they are history, not inventory. */
    if (f.state && strcmp(f.state, "deleted") == 0) {
        struct tombstone_list l = {.f = &f, .owner = c->owner, .arr = arr};
        if (store_tombstone_foreach(c->d->store, add_tombstone, &l, &err) < 0) {
            list_filter_done(&f);
            json_decref(arr);
            return api_reply_error(c->req, &err);
        }
    }
    list_filter_done(&f);
    api_reply_json(c->req, 200, json_pack("{s:o}", "sandboxes", arr));
}

void api_sandboxes_get(struct api_ctx *c)
{
    struct sandbox *sb = sandbox_lookup(c->d, c->sandbox_id, c->owner);
    if (!sb) {
        /* A deleted one still says what happened to it, for a while (by id only: names are reused). */
        json_t *tomb = sandbox_tombstone_lookup(c->d, c->sandbox_id, c->owner);
        if (tomb)
            return api_reply_json(c->req, 200, tomb);
        sb = api_sandbox(c); /* the 404 */
        return;
    }
    api_reply_json(c->req, 200, sandbox_to_json(sb));
    sandbox_unref(sb);
}

/* PATCH's "network": {"egress": {...}} replaces the egress policy; the mode is fixed at create. */
static int parse_network_patch(json_t *body, struct egress_policy *ret, bool *ret_has, sbx_error *err)
{
    json_t *n = json_object_get(body, "network");
    if (!n)
        return 0;
    if (!json_is_object(n))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400, "`network` must be an object");
    const char *key;
    json_t *v;
    json_object_foreach(n, key, v)
    {
        if (strcmp(key, "egress") != 0)
            return sbx_error_setk(
                err, -EINVAL, "invalid_argument", 400,
                "only `network.egress` can change on a sandbox (its mode is fixed at create)");
    }
    json_t *e = json_object_get(n, "egress");
    if (!e)
        return 0;
    int r = egress_parse_policy(e, ret, err);
    if (r >= 0)
        *ret_has = true;
    return r;
}

static void patch_with_body(struct api_ctx *c, json_t *body)
{
    struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    struct sandbox_lifecycle life = sb->life;
    json_t *metadata = NULL;
    struct egress_policy egress = {0};
    bool has_egress = false;
    if (parse_lifecycle(body, &life, &err) < 0 || parse_metadata(body, &metadata, &err) < 0 ||
        parse_network_patch(body, &egress, &has_egress, &err) < 0 ||
        (has_egress && sandbox_set_egress(c->d, sb, &egress, &err) < 0) ||
        sandbox_set_lifecycle(c->d, sb, &life, &err) < 0 ||
        (metadata && sandbox_set_metadata(c->d, sb, metadata, &err) < 0))
        api_reply_error(c->req, &err);
    else
        api_reply_json(c->req, 200, sandbox_to_json(sb));
    egress_policy_done(&egress); /* what sandbox_set_egress did not take */
    sandbox_unref(sb);
}

void api_sandboxes_patch(struct api_ctx *c)
{
    api_read_json(c, patch_with_body);
}

static void renew_with_body(struct api_ctx *c, json_t *body)
{
    struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    int64_t timeout = 0;
    if (jsonreq_integer(body, "timeout_seconds", 1, SANDBOX_LIFECYCLE_MAX_S, &timeout, &err) < 0 ||
        sandbox_renew(c->d, sb, timeout, &err) < 0)
        api_reply_error(c->req, &err);
    else
        api_reply_json(c->req, 200, sandbox_to_json(sb));
    sandbox_unref(sb);
}

void api_sandboxes_renew(struct api_ctx *c)
{
    api_read_json(c, renew_with_body);
}

void api_sandboxes_delete(struct api_ctx *c)
{
    struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (sandbox_delete(c->d, sb, NULL, &err) < 0)
        api_reply_error(c->req, &err);
    else
        api_reply_json(c->req, 204, NULL);
    sandbox_unref(sb);
}

/* pause, resume, stop, start: one state change, answered with the sandbox. */
static void change_state(struct api_ctx *c, int (*change)(struct daemon *, struct sandbox *, sbx_error *))
{
    struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    if (change(c->d, sb, &err) < 0)
        api_reply_error(c->req, &err);
    else
        api_reply_json(c->req, 200, sandbox_to_json(sb));
    sandbox_unref(sb);
}

void api_sandboxes_pause(struct api_ctx *c)
{
    change_state(c, sandbox_pause);
}

void api_sandboxes_resume(struct api_ctx *c)
{
    change_state(c, sandbox_resume);
}

void api_sandboxes_stop(struct api_ctx *c)
{
    change_state(c, sandbox_stop);
}

/* A stopped sandbox that starts again takes its memory back: the owner's memory quota applies. */
static int start_within_quota(struct daemon *d, struct sandbox *sb, sbx_error *err)
{
    bool down = sb->state == SANDBOX_STOPPED || sb->state == SANDBOX_FAILED;
    if (down && keys_check_quota(d, sb->owner, 0, sb->res.memory_mb, err) < 0)
        return err->code;
    return sandbox_start(d, sb, err);
}

void api_sandboxes_start(struct api_ctx *c)
{
    change_state(c, start_within_quota);
}

void api_sandboxes_metrics(struct api_ctx *c)
{
    struct sandbox *sb = api_sandbox(c);
    if (!sb)
        return;
    struct runtime_metrics m;
    sbx_error err = {0};
    if (sandbox_need_up(sb, &err) < 0) {
        api_reply_error(c->req, &err);
    } else if (runtime_metrics(sb->id, &m) < 0) {
        sbx_error_set(&err, -EIO, "sandbox `%s`: its cgroup cannot be read", sb->id);
        api_reply_error(c->req, &err);
    } else {
        json_t *o = json_pack("{s:s, s:f, s:I, s:I, s:I, s:{s:f, s:I, s:I}}", "state",
                              sandbox_state_to_string(sb->state), "cpu_usage_seconds",
                              (double)m.cpu_usage_nsec / 1e9, "memory_bytes", (json_int_t)m.memory_bytes,
                              "memory_peak_bytes", (json_int_t)m.memory_peak_bytes, "pids",
                              (json_int_t)m.pids, "limits", "cpus", sb->res.cpus, "memory_bytes",
                              (json_int_t)(sb->res.memory_mb << 20), "pids", (json_int_t)sb->res.pids);
        json_object_set_new(o, "oom_kills", json_integer((json_int_t)m.oom_kills));
        /* The sandbox's own disk: null for one made before sbx had disks (no quota, nothing to count). */
        struct runtime_disk_metrics dm;
        bool disk = sb->res.disk_mb && runtime_disk_metrics(sb->state_dir, &dm) >= 0;
        json_object_set_new(o, "disk_used_bytes",
                            disk ? json_integer((json_int_t)dm.used_bytes) : json_null());
        json_object_set_new(o, "disk_free_bytes",
                            disk ? json_integer((json_int_t)dm.free_bytes) : json_null());
        json_object_set_new(o, "io_read_bytes",
                            disk && dm.io_stats ? json_integer((json_int_t)dm.io_read_bytes) : json_null());
        json_object_set_new(o, "io_write_bytes",
                            disk && dm.io_stats ? json_integer((json_int_t)dm.io_write_bytes) : json_null());
        json_object_set_new(json_object_get(o, "limits"), "disk_bytes",
                            sb->res.disk_mb ? json_integer((json_int_t)(sb->res.disk_mb << 20))
                                            : json_null());
        api_reply_json(c->req, 200, o);
    }
    sandbox_unref(sb);
}
