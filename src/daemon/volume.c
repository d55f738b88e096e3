/* Named volumes: see volume.h. */
#include "daemon/volume.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "runtime/runtime.h"
#include "store/store.h"

#define PATH_MAX_LEN 255

static char *volume_dir(struct daemon *d, const char *id)
{
    return xasprintf("%s/volumes/%s", d->data_dir, id);
}

static void volume_free(struct volume *v)
{
    if (!v)
        return;
    free(v->id);
    free(v->name);
    free(v->owner);
    free(v);
}

static bool same_owner(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void list_append(struct daemon *d, struct volume *v)
{
    struct volume **p = &d->volumes;
    while (*p)
        p = &(*p)->next;
    v->next = NULL;
    *p = v;
}

json_t *volume_to_json(struct daemon *d, const struct volume *v)
{
    char when[40];
    format_time_ms(when, sizeof(when), v->created_ms);
    _cleanup_free_ char *dir = volume_dir(d, v->id);
    struct runtime_disk_metrics m;
    bool have = runtime_disk_metrics(dir, &m) == 0;
    return json_pack("{s:s, s:s, s:I, s:o, s:s}", "id", v->id, "name", v->name, "size_mb",
                     (json_int_t)v->size_mb, "used_bytes",
                     have ? json_integer((json_int_t)m.used_bytes) : json_null(), "created_at", when);
}

json_t *volume_list_json(struct daemon *d, const char *owner)
{
    json_t *a = json_array();
    for (struct volume *v = d->volumes; v; v = v->next)
        if (!owner || same_owner(v->owner, owner))
            json_array_append_new(a, volume_to_json(d, v));
    return a;
}

struct volume *volume_resolve(struct daemon *d, const char *ref, const char *owner, sbx_error *err)
{
    for (struct volume *v = d->volumes; v; v = v->next)
        if (strcmp(v->id, ref) == 0 && (!owner || same_owner(v->owner, owner)))
            return v;
    for (struct volume *v = d->volumes; v; v = v->next)
        if (strcmp(v->name, ref) == 0 && same_owner(v->owner, owner))
            return v;
    sbx_error_set(err, -ENOENT, "volume `%s` not found", ref);
    return NULL;
}

int volume_create(struct daemon *d, const char *name, int64_t size_mb, const char *owner, struct volume **ret,
                  sbx_error *err)
{
    if (!name || !id_is_valid(name))
        return sbx_error_set(err, -EINVAL, "`name` must match [A-Za-z0-9_.-]{1,64}");
    size_t n = 0;
    for (struct volume *v = d->volumes; v; v = v->next)
        n++;
    if (n >= VOLUMES_MAX)
        return sbx_error_setk(err, -ENOSPC, "resource_exhausted", 429, "volume limit (%d) reached",
                              VOLUMES_MAX);
    struct volume *v = xcalloc(1, sizeof(*v));
    char id[SBX_ID_MAX + 1];
    id_generate(id, sizeof(id), "vol_");
    v->id = xstrdup(id);
    v->name = xstrdup(name);
    v->owner = owner ? xstrdup(owner) : NULL;
    v->size_mb = size_mb;
    v->created_ms = (int64_t)(now_usec(CLOCK_REALTIME) / 1000);
    struct store_volume row = {
        .id = v->id, .name = v->name, .owner = v->owner, .size_mb = v->size_mb, .created_ms = v->created_ms};
    /* The row first: its UNIQUE (owner, name) refuses a taken name before anything is made. */
    int r = store_volume_insert(d->store, &row, err);
    if (r < 0) {
        volume_free(v);
        return r;
    }
    _cleanup_free_ char *dir = volume_dir(d, v->id);
    _cleanup_free_ char *templates = xasprintf("%s/disk-templates", d->data_dir);
    if (mkdir(dir, 0700) < 0)
        r = sbx_error_set(err, -errno, "mkdir `%s`: %m", dir);
    else
        r = runtime_volume_mount(dir, (uint64_t)size_mb << 20, templates, err);
    if (r < 0) {
        (void)runtime_volume_unmount(dir);
        (void)rm_rf(dir);
        (void)store_volume_delete(d->store, v->id, NULL);
        volume_free(v);
        return r;
    }
    list_append(d, v);
    log_info("volume %s (%s) created, %lld MiB", v->id, v->name, (long long)size_mb);
    *ret = v;
    return 0;
}

static struct sandbox *user_of(struct daemon *d, const char *id)
{
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next) {
        size_t i;
        json_t *m;
        json_array_foreach(sb->volumes, i, m)
        {
            if (strcmp(json_string_value(json_object_get(m, "volume")) ?: "", id) == 0)
                return sb;
        }
    }
    return NULL;
}

int volume_delete(struct daemon *d, struct volume *v, sbx_error *err)
{
    struct sandbox *user = user_of(d, v->id);
    if (user)
        return sbx_error_setk(err, -EBUSY, "busy", 409, "volume `%s` is mounted by sandbox `%s` (%s)",
                              v->name, user->id, sandbox_state_to_string(user->state));
    _cleanup_free_ char *dir = volume_dir(d, v->id);
    int r = runtime_volume_unmount(dir);
    if (r < 0)
        return sbx_error_setk(err, r, "busy", 409, "volume `%s` is still in use: %s", v->name, strerror(-r));
    if ((r = store_volume_delete(d->store, v->id, err)) < 0)
        return r;
    if ((r = rm_rf(dir)) < 0)
        log_warning_errno(r, "remove `%s`: %m", dir);
    for (struct volume **p = &d->volumes; *p; p = &(*p)->next)
        if (*p == v) {
            *p = v->next;
            break;
        }
    log_info("volume %s (%s) deleted", v->id, v->name);
    volume_free(v);
    return 0;
}

int volume_check_mount_path(const char *path, sbx_error *err)
{
    if (path[0] != '/' || strlen(path) > PATH_MAX_LEN)
        return sbx_error_set(err, -EINVAL, "volume `path` must be absolute and at most %d bytes",
                             PATH_MAX_LEN);
    static const char *const reserved[] = {"proc", "sys", "dev"};
    _cleanup_free_ char *copy = xstrdup(path);
    char *save = NULL;
    int n = 0;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save), n++) {
        if (strcmp(c, ".") == 0 || strcmp(c, "..") == 0)
            return sbx_error_set(err, -EINVAL, "volume `path` `%s` has a `.` or `..` component", path);
        for (size_t i = 0; n == 0 && i < ELEMENTSOF(reserved); i++)
            if (strcmp(c, reserved[i]) == 0)
                return sbx_error_set(err, -EINVAL, "volume `path` cannot be under /%s", reserved[i]);
    }
    if (n == 0)
        return sbx_error_set(err, -EINVAL, "volume `path` cannot be `/`");
    return 0;
}

int volume_parse_mounts(struct daemon *d, json_t *list, const char *owner, json_t **ret, sbx_error *err)
{
    *ret = NULL;
    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list) || json_array_size(list) > RUNTIME_VOLUMES_MAX)
        return sbx_error_set(err, -EINVAL, "`volumes` must be an array of at most %d mounts",
                             RUNTIME_VOLUMES_MAX);
    json_auto_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m)
    {
        const char *ref = json_string_value(json_object_get(m, "volume"));
        const char *path = json_string_value(json_object_get(m, "path"));
        json_t *ro = json_object_get(m, "read_only");
        if (!json_is_object(m) || !ref || !path || (ro && !json_is_boolean(ro)))
            return sbx_error_set(
                err, -EINVAL,
                "`volumes[%zu]` must be {\"volume\": NAME, \"path\": \"/abs\", \"read_only\"?: bool}", i);
        int r = volume_check_mount_path(path, err);
        if (r < 0)
            return r;
        struct volume *v = volume_resolve(d, ref, owner, err);
        if (!v)
            return err->code;
        size_t j;
        json_t *prev;
        json_array_foreach(out, j, prev)
        {
            if (strcmp(json_string_value(json_object_get(prev, "path")), path) == 0)
                return sbx_error_set(err, -EINVAL, "two volumes at `%s`", path);
        }
        json_array_append_new(
            out, json_pack("{s:s, s:s, s:b}", "volume", v->id, "path", path, "read_only", json_is_true(ro)));
    }
    *ret = json_incref(out);
    return 0;
}

json_t *volume_shim_mounts(struct daemon *d, json_t *mounts)
{
    json_t *a = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(mounts, i, m)
    {
        _cleanup_free_ char *dir = volume_dir(d, json_string_value(json_object_get(m, "volume")));
        _cleanup_free_ char *src = xasprintf("%s/disk/upper", dir);
        json_array_append_new(a, json_pack("{s:s, s:O, s:O}", "source", src, "target",
                                           json_object_get(m, "path"), "read_only",
                                           json_object_get(m, "read_only")));
    }
    return a;
}

static int load_row(const struct store_volume *row, void *userdata)
{
    struct daemon *d = userdata;
    struct volume *v = xcalloc(1, sizeof(*v));
    v->id = xstrdup(row->id);
    v->name = xstrdup(row->name);
    v->owner = row->owner ? xstrdup(row->owner) : NULL;
    v->size_mb = row->size_mb;
    v->created_ms = row->created_ms;
    _cleanup_free_ char *dir = volume_dir(d, v->id);
    _cleanup_free_ char *templates = xasprintf("%s/disk-templates", d->data_dir);
    sbx_error err = {0};
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        log_warning_errno(-errno, "volume %s: mkdir `%s`: %m", v->id, dir);
    else if (runtime_volume_mount(dir, (uint64_t)v->size_mb << 20, templates, &err) < 0)
        log_warning("volume %s (%s): mount: %s; sandboxes that use it will fail to start", v->id, v->name,
                    err.msg);
    list_append(d, v);
    return 0;
}

int volume_init(struct daemon *d, sbx_error *err)
{
    _cleanup_free_ char *root = xasprintf("%s/volumes", d->data_dir);
    if (mkdir(root, 0700) < 0 && errno != EEXIST)
        return sbx_error_set(err, -errno, "mkdir `%s`: %m", root);
    int r = store_volume_foreach(d->store, load_row, d, err);
    if (r < 0)
        return r;
    /* Directories no row names: a create that a crash interrupted. */
    DIR *dir = opendir(root);
    struct dirent *de;
    while (dir && (de = readdir(dir))) {
        if (de->d_name[0] == '.')
            continue;
        bool known = false;
        for (struct volume *v = d->volumes; v && !known; v = v->next)
            known = strcmp(v->id, de->d_name) == 0;
        if (known)
            continue;
        _cleanup_free_ char *path = xasprintf("%s/%s", root, de->d_name);
        if (runtime_volume_unmount(path) == 0 && rm_rf(path) == 0)
            log_info("removed stray volume directory %s", path);
    }
    if (dir)
        closedir(dir);
    return 0;
}

void volume_done(struct daemon *d)
{
    while (d->volumes) {
        struct volume *v = d->volumes;
        d->volumes = v->next;
        /* A volume a kept sandbox still mounts stays mounted: the next sbxd finds it so. */
        if (!user_of(d, v->id)) {
            _cleanup_free_ char *dir = volume_dir(d, v->id);
            int r = runtime_volume_unmount(dir);
            if (r < 0)
                log_warning_errno(r, "volume %s: unmount: %m", v->id);
        }
        volume_free(v);
    }
}
