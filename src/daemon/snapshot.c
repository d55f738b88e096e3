#include "daemon/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "daemon/daemon.h"
#include "daemon/pull.h"
#include "daemon/sandbox.h"
#include "loop/loop.h"
#include "store/store.h"

#define IMPORTS_MAX 4                           /* imports running at once */
#define IMPORT_TIMEOUT_USEC (3600ULL * 1000000) /* the helper is killed after this */
#define RESULT_MAX (1u << 20)                   /* the helper's JSON answer */
#define LAYERS_MAX 120                          /* as sbx-unpack's: overlayfs's limit, with room */

struct import_op {
    struct daemon *d;
    struct snapshot *sn;
    pid_t pid;
    int pidfd;
    int out_fd;
    struct loop_io io;
    struct loop_timer timeout;
    struct sbx_buf out;
    char *upload_path;
    char *staging;  /* <layers>/.tmp-<id> */
    bool absent_ok; /* a pull: stored layers may be absent from the tarball */
};

struct snapshot_state {
    struct snapshot *list;
    struct snapshot_limits limits;
    char *layers_dir;
    char *uploads_dir;
    char *unpack_path;
    size_t n_building;
    bool gc_pending;
};

static void snapshot_free(struct snapshot *sn)
{
    if (!sn)
        return;
    free(sn->name);
    free(sn->reason);
    free(sn->owner);
    json_decref(sn->config);
    for (size_t i = 0; i < sn->n_layers; i++)
        free(sn->layers[i]);
    free(sn->layers);
    free(sn);
}

static void list_add(struct snapshot_state *s, struct snapshot *sn)
{
    struct snapshot **p = &s->list;
    while (*p)
        p = &(*p)->next; /* creation order */
    *p = sn;
}

static void list_remove(struct snapshot_state *s, struct snapshot *sn)
{
    for (struct snapshot **p = &s->list; *p; p = &(*p)->next)
        if (*p == sn) {
            *p = sn->next;
            return;
        }
}

/* "sha256:<hex>" -> "<hex>"; NULL when malformed. */
static const char *digest_hex(const char *digest)
{
    if (!digest || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71)
        return NULL;
    for (const char *p = digest + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return NULL;
    return digest + 7;
}

static void set_layers(struct snapshot *sn, const char *csv)
{
    if (!csv || !*csv)
        return;
    _cleanup_free_ char *copy = xstrdup(csv);
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        sn->layers = xrealloc(sn->layers, (sn->n_layers + 1) * sizeof(char *));
        sn->layers[sn->n_layers++] = xstrdup(t);
    }
}

/* Only the fields that mean something for commands are kept from an image config. */
static json_t *config_subset(json_t *cfg)
{
    json_t *o = json_object();
    static const char *const keys[] = {"Env", "WorkingDir", "User", "Entrypoint", "Cmd"};
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        json_t *v = json_object_get(cfg, keys[i]);
        if (v && !json_is_null(v))
            json_object_set(o, keys[i], v);
    }
    return o;
}

static int load_one(const struct store_snapshot *row, void *userdata)
{
    struct daemon *d = userdata;
    struct snapshot *sn = xcalloc(1, sizeof(*sn));
    snprintf(sn->id, sizeof(sn->id), "%s", row->id);
    sn->name = xstrdup(row->name);
    sn->created_ms = row->created_ms;
    sn->size_bytes = row->size_bytes;
    sn->owner = row->owner ? xstrdup(row->owner) : NULL;
    sn->host_base = row->base && strcmp(row->base, "host") == 0;
    sn->source = row->source && strcmp(row->source, "registry") == 0  ? "registry"
                 : row->source && strcmp(row->source, "capture") == 0 ? "capture"
                                                                      : "image";
    sn->config = json_loads(row->config_json ? row->config_json : "{}", 0, NULL);
    if (!sn->config)
        sn->config = json_object();
    if (strcmp(row->status, "ready") == 0) {
        sn->status = SNAPSHOT_READY;
        set_layers(sn, row->layers);
    } else if (strcmp(row->status, "building") == 0) {
        static const char reason[] = "sbxd stopped during the import";
        sn->status = SNAPSHOT_FAILED;
        sn->reason = xstrdup(reason);
        sbx_error err = {0};
        if (store_snapshot_fail(d->store, sn->id, reason, &err) < 0)
            log_warning("snapshot %s: %s, ignoring", sn->id, err.msg);
    } else {
        sn->status = SNAPSHOT_FAILED;
        sn->reason = xstrdup(row->reason ? row->reason : "failed");
    }
    list_add(d->snap, sn);
    return 0;
}

int snapshot_init(struct daemon *d, const struct snapshot_limits *limits, sbx_error *err)
{
    struct snapshot_state *s = xcalloc(1, sizeof(*s));
    d->snap = s;
    s->limits = *limits;
    s->layers_dir = xasprintf("%s/layers", d->data_dir);
    s->uploads_dir = xasprintf("%s/uploads", d->data_dir);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        s->unpack_path = xasprintf("%s/sbx-unpack", self);
    }
    int r;
    if ((r = mkdir_p(s->layers_dir, 0700)) < 0)
        return sbx_error_set(err, r, "create `%s`: %s", s->layers_dir, strerror(-r));
    /* Uploads of a previous run are of no use: their imports are failed below. */
    rm_rf(s->uploads_dir);
    if ((r = mkdir_p(s->uploads_dir, 0700)) < 0)
        return sbx_error_set(err, r, "create `%s`: %s", s->uploads_dir, strerror(-r));
    if ((r = store_snapshot_foreach(d->store, load_one, d, err)) < 0)
        return r;
    snapshot_gc(d);
    return 0;
}

static void import_op_free(struct import_op *op);
static void building_end(struct daemon *d);
static int64_t stored_layer_size(struct daemon *d, const char *digest);

void snapshot_done(struct daemon *d)
{
    struct snapshot_state *s = d->snap;
    if (!s)
        return;
    pull_abort_all(d); /* their threads end before the snapshots they write to go */
    while (s->list) {
        struct snapshot *sn = s->list;
        s->list = sn->next;
        if (sn->op) {
            (void)pidfd_send_signal(sn->op->pidfd, SIGKILL, NULL, 0);
            siginfo_t si;
            (void)waitid(P_PIDFD, (id_t)sn->op->pidfd, &si, WEXITED);
            import_op_free(sn->op);
        }
        snapshot_free(sn);
    }
    free(s->layers_dir);
    free(s->uploads_dir);
    free(s->unpack_path);
    free(s);
    d->snap = NULL;
}

const struct snapshot_limits *snapshot_limits(struct daemon *d)
{
    return &d->snap->limits;
}

struct snapshot *snapshot_find(struct daemon *d, const char *id_or_name)
{
    for (struct snapshot *sn = d->snap->list; sn; sn = sn->next)
        if (strcmp(sn->id, id_or_name) == 0 || strcmp(sn->name, id_or_name) == 0)
            return sn;
    return NULL;
}

static bool visible(const struct snapshot *sn, const char *owner)
{
    return !owner || !sn->owner || strcmp(sn->owner, owner) == 0;
}

struct snapshot *snapshot_find_visible(struct daemon *d, const char *id_or_name, const char *owner)
{
    for (struct snapshot *sn = d->snap->list; sn; sn = sn->next)
        if ((strcmp(sn->id, id_or_name) == 0 || strcmp(sn->name, id_or_name) == 0) && visible(sn, owner))
            return sn;
    return NULL;
}

static const char *status_name(enum snapshot_status s)
{
    return s == SNAPSHOT_BUILDING ? "building" : s == SNAPSHOT_READY ? "ready" : "failed";
}

int snapshot_for_create(struct daemon *d, const char *id_or_name, const char *owner, struct snapshot **ret,
                        sbx_error *err)
{
    *ret = NULL;
    if (!id_or_name || strcmp(id_or_name, "host") == 0)
        return 0;
    struct snapshot *sn = snapshot_find_visible(d, id_or_name, owner);
    if (!sn)
        return sbx_error_setk(err, -ENOENT, "not_found", 404, "snapshot `%s` not found", id_or_name);
    if (sn->status != SNAPSHOT_READY)
        return sbx_error_setk(err, -EBUSY, "conflict", 409, "snapshot `%s` is %s%s%s", id_or_name,
                              status_name(sn->status), sn->reason ? ": " : "", sn->reason ? sn->reason : "");
    *ret = sn;
    return 0;
}

static int write_file_at(int dirfd, const char *name, const char *content)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (write_all(fd, content, strlen(content)) < 0 || fchmod(fd, 0644) < 0)
        return -errno;
    return 0;
}

/* The sandbox's own /etc/hostname and /etc/hosts: a small layer of its own over the image's, owned by host
 * root like every layer (root's inside, through the idmapped lower mounts). Returns its path (caller frees).
 */
static int write_image_etc(const char *state_dir, const char *hostname, char **ret_top, sbx_error *err)
{
    _cleanup_free_ char *top = xasprintf("%s/image-etc", state_dir);
    _cleanup_free_ char *etc = xasprintf("%s/etc", top);
    if (mkdir(top, 0755) < 0 && errno != EEXIST)
        return sbx_error_set(err, -errno, "create `%s`: %m", top);
    if (mkdir(etc, 0755) < 0 && errno != EEXIST)
        return sbx_error_set(err, -errno, "create `%s`: %m", etc);
    (void)chmod(top, 0755);
    (void)chmod(etc, 0755);
    _cleanup_close_ int dfd = open(etc, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return sbx_error_set(err, -errno, "open `%s`: %m", etc);
    _cleanup_free_ char *hn = xasprintf("%s\n", hostname);
    _cleanup_free_ char *hosts = xasprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                                           "127.0.1.1\t%s\n",
                                           hostname);
    int r;
    if ((r = write_file_at(dfd, "hostname", hn)) < 0 || (r = write_file_at(dfd, "hosts", hosts)) < 0)
        return sbx_error_set(err, r, "write `%s`: %s", etc, strerror(-r));
    *ret_top = TAKE_PTR(top);
    return 0;
}

int snapshot_sandbox_lowers(struct daemon *d, const char *snapshot, const char *state_dir,
                            const char *hostname, json_t **ret, sbx_error *err)
{
    if (!snapshot || strcmp(snapshot, "host") == 0) {
        *ret = json_null();
        return 0;
    }
    struct snapshot *sn = snapshot_find(d, snapshot);
    if (!sn || sn->status != SNAPSHOT_READY)
        return sbx_error_setk(err, -ENOENT, "not_found", 404, "snapshot `%s` not found", snapshot);
    json_t *arr = json_array();
    /* Over a host base, the host's /etc is bound over /etc with the sandbox's hostname and hosts. */
    if (!sn->host_base) {
        char *top = NULL;
        int r = write_image_etc(state_dir, hostname, &top, err);
        if (r < 0) {
            json_decref(arr);
            return r;
        }
        json_array_append_new(arr, json_string(top));
        free(top);
    }
    /* Top first; a layer listed twice keeps only its topmost place (overlayfs refuses a directory twice,
     * and the upper occurrence already shadows everything the lower one provides). */
    for (size_t i = sn->n_layers; i-- > 0;) {
        bool seen = false;
        for (size_t k = sn->n_layers; k-- > i + 1;)
            if (strcmp(sn->layers[k], sn->layers[i]) == 0)
                seen = true;
        if (seen)
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s", d->snap->layers_dir, digest_hex(sn->layers[i]));
        json_array_append_new(arr, json_string(p));
    }
    *ret = arr;
    return 0;
}

bool snapshot_is_host_based(struct daemon *d, const char *snapshot)
{
    struct snapshot *sn = snapshot && d->snap ? snapshot_find(d, snapshot) : NULL;
    return sn && sn->host_base;
}

const char *snapshot_default_cwd(struct daemon *d, const char *snapshot)
{
    if (!snapshot || strcmp(snapshot, "host") == 0 || !d->snap)
        return "/root";
    struct snapshot *sn = snapshot_find(d, snapshot);
    if (sn && sn->host_base)
        return "/root";
    const char *wd = sn ? json_string_value(json_object_get(sn->config, "WorkingDir")) : NULL;
    return wd && wd[0] == '/' ? wd : "/";
}

const char *snapshot_default_user(struct daemon *d, const char *snapshot)
{
    if (!snapshot || strcmp(snapshot, "host") == 0 || !d->snap)
        return NULL;
    struct snapshot *sn = snapshot_find(d, snapshot);
    const char *user = sn ? json_string_value(json_object_get(sn->config, "User")) : NULL;
    return user && user[0] ? user : NULL;
}

json_t *snapshot_sandbox_env(const struct snapshot *sn, json_t *env)
{
    json_t *o = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(sn->config, "Env"), i, v)
    {
        const char *kv = json_string_value(v), *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq || eq == kv)
            continue;
        _cleanup_free_ char *k = xstrndup(kv, (size_t)(eq - kv));
        json_object_set_new(o, k, json_string(eq + 1));
    }
    if (env)
        json_object_update(o, env);
    return o;
}

json_t *snapshot_to_json(const struct snapshot *sn)
{
    if (!sn)
        return json_pack("{s:s, s:s, s:s, s:[], s:I, s:n, s:s, s:n, s:{}}", "id", "host", "name", "host",
                         "source", "host", "layers", "size_bytes", (json_int_t)0, "created_at", "status",
                         "ready", "reason", "config");
    char created[40];
    format_time_ms(created, sizeof(created), sn->created_ms);
    json_t *layers = json_array();
    for (size_t i = 0; i < sn->n_layers; i++)
        json_array_append_new(layers, json_string(sn->layers[i]));
    json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:I, s:s, s:s, s:s?, s:O, s:s, s:s?}", "id", sn->id, "name",
                          sn->name, "source", sn->source ? sn->source : "image", "layers", layers,
                          "size_bytes", (json_int_t)sn->size_bytes, "created_at", created, "status",
                          status_name(sn->status), "reason", sn->reason, "config", sn->config, "base",
                          sn->host_base ? "host" : "image", "owner", sn->owner);
    uint64_t total = __atomic_load_n(&sn->progress_total, __ATOMIC_RELAXED);
    if (sn->status == SNAPSHOT_BUILDING && strcmp(sn->source, "registry") == 0)
        json_object_set_new(o, "progress",
                            json_pack("{s:I, s:I}", "bytes_done",
                                      (json_int_t)__atomic_load_n(&sn->progress_done, __ATOMIC_RELAXED),
                                      "bytes_total", (json_int_t)total));
    return o;
}

json_t *snapshot_list_json(struct daemon *d, const char *owner)
{
    json_t *arr = json_array();
    json_array_append_new(arr, snapshot_to_json(NULL));
    for (struct snapshot *sn = d->snap->list; sn; sn = sn->next)
        if (visible(sn, owner))
            json_array_append_new(arr, snapshot_to_json(sn));
    return json_pack("{s:o}", "snapshots", arr);
}

struct layers_walk {
    json_t *arr;
    int64_t total;
};

static int layer_json(const struct store_layer *l, void *userdata)
{
    struct layers_walk *w = userdata;
    char created[40];
    format_time_ms(created, sizeof(created), l->created_ms);
    json_array_append_new(w->arr, json_pack("{s:s, s:I, s:I, s:s}", "digest", l->digest, "size_bytes",
                                            (json_int_t)l->size_bytes, "refs", (json_int_t)l->refs,
                                            "created_at", created));
    w->total += l->size_bytes;
    return 0;
}

json_t *snapshot_layers_json(struct daemon *d, sbx_error *err)
{
    struct layers_walk w = {json_array(), 0};
    if (store_layer_foreach(d->store, layer_json, &w, err) < 0) {
        json_decref(w.arr);
        return NULL;
    }
    return json_pack("{s:o, s:I}", "layers", w.arr, "total_bytes", (json_int_t)w.total);
}

/* --- garbage collection --------------------------------------------------------------------------- */

struct gc_walk {
    struct daemon *d;
    char **keep; /* hex of every layer still recorded */
    size_t n_keep;
};

static int gc_layer(const struct store_layer *l, void *userdata)
{
    struct gc_walk *w = userdata;
    const char *hex = digest_hex(l->digest);
    if (!hex)
        return 0;
    if (l->refs == 0) {
        sbx_error err = {0};
        if (store_layer_delete_unreferenced(w->d->store, l->digest, &err) == 1) {
            _cleanup_free_ char *p = xasprintf("%s/%s", w->d->snap->layers_dir, hex);
            int r = rm_rf(p);
            if (r < 0)
                log_warning_errno(r, "remove layer `%s`: %m, ignoring", p);
            else
                log_info("layer %s removed: no snapshot uses it", l->digest);
            return 0;
        }
    }
    w->keep = xrealloc(w->keep, (w->n_keep + 1) * sizeof(char *));
    w->keep[w->n_keep++] = xstrdup(hex);
    return 0;
}

void snapshot_gc(struct daemon *d)
{
    struct snapshot_state *s = d->snap;
    if (s->n_building > 0) {
        /* A running import may be counting on a layer that no snapshot references yet. */
        s->gc_pending = true;
        return;
    }
    s->gc_pending = false;
    struct gc_walk w = {.d = d};
    sbx_error err = {0};
    if (store_layer_foreach(d->store, gc_layer, &w, &err) < 0) {
        log_warning("layer gc: %s, ignoring", err.msg);
    } else {
        /* Directories no row names: staging dirs of imports that died with a previous sbxd, or layers
         * whose row went away before their files did. */
        _cleanup_closedir_ DIR *dir = opendir(s->layers_dir);
        struct dirent *de;
        while (dir && (de = readdir(dir))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            bool known = false;
            for (size_t i = 0; i < w.n_keep && !known; i++)
                known = strcmp(w.keep[i], de->d_name) == 0;
            if (known)
                continue;
            _cleanup_free_ char *p = xasprintf("%s/%s", s->layers_dir, de->d_name);
            log_info("removing `%s`: no layer of that name is recorded", p);
            int r = rm_rf(p);
            if (r < 0)
                log_warning_errno(r, "remove `%s`: %m, ignoring", p);
        }
    }
    for (size_t i = 0; i < w.n_keep; i++)
        free(w.keep[i]);
    free(w.keep);
}

/* --- imports -------------------------------------------------------------------------------------- */

int snapshot_upload_open(struct daemon *d, int *ret_fd, char **ret_path, sbx_error *err)
{
    char id[SBX_ID_MAX + 1];
    id_generate(id, sizeof(id), "upl_");
    char *path = xasprintf("%s/%s.tar", d->snap->uploads_dir, id);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int r = sbx_error_set(err, -errno, "create `%s`: %m", path);
        free(path);
        return r;
    }
    *ret_fd = fd;
    *ret_path = path;
    return 0;
}

int snapshot_import_check(struct daemon *d, const char *name, sbx_error *err)
{
    if (!name)
        return sbx_error_set(err, -EINVAL, "query parameter `name` is required");
    if (!id_is_valid(name) || strcmp(name, "host") == 0)
        return sbx_error_set(err, -EINVAL, "`name` must match [A-Za-z0-9_.-]{1,64} and not be `host`");
    if (snapshot_find(d, name))
        return sbx_error_setk(err, -EEXIST, "conflict", 409, "a snapshot named `%s` exists", name);
    if (d->snap->n_building >= IMPORTS_MAX)
        return sbx_error_setk(err, -EAGAIN, "resource_exhausted", 429, "%d imports are running already",
                              IMPORTS_MAX);
    if (!d->snap->unpack_path || access(d->snap->unpack_path, X_OK) < 0)
        return sbx_error_setk(err, -ENOSYS, "unimplemented", 501, "sbx-unpack is not installed next to sbxd");
    return 0;
}

static void import_op_free(struct import_op *op)
{
    struct daemon *d = op->d;
    if (op->io.active)
        loop_io_stop(d->loop, &op->io);
    if (op->timeout.active)
        loop_timer_stop(d->loop, &op->timeout);
    if (op->out_fd >= 0)
        close(op->out_fd);
    if (op->pidfd >= 0)
        close(op->pidfd);
    if (op->staging) {
        int r = rm_rf(op->staging);
        if (r < 0)
            log_warning_errno(r, "remove `%s`: %m, ignoring", op->staging);
    }
    if (op->upload_path)
        unlink(op->upload_path);
    free(op->staging);
    free(op->upload_path);
    sbx_buf_done(&op->out);
    if (op->sn)
        op->sn->op = NULL;
    free(op);
    building_end(d);
}

static void import_fail(struct import_op *op, const char *reason)
{
    struct snapshot *sn = op->sn;
    struct daemon *d = op->d;
    sn->status = SNAPSHOT_FAILED;
    free(sn->reason);
    sn->reason = xstrdup(reason);
    sbx_error err = {0};
    if (store_snapshot_fail(d->store, sn->id, reason, &err) < 0)
        log_warning("snapshot %s: %s", sn->id, err.msg);
    log_warning("snapshot %s (`%s`) failed: %s", sn->id, sn->name, reason);
    import_op_free(op);
}

/* Moves the layers the helper unpacked into the store and records the snapshot as ready. */
static void import_finish(struct import_op *op, json_t *res)
{
    struct daemon *d = op->d;
    struct snapshot *sn = op->sn;
    json_t *ls = json_object_get(res, "layers");
    size_t n = json_array_size(ls);
    if (!json_is_array(ls) || n == 0)
        return import_fail(op, "the image has no layers");
    struct store_layer *rows = xcalloc(n, sizeof(*rows));
    char reason[256] = "";
    int64_t total = 0;
    for (size_t i = 0; i < n && !reason[0]; i++) {
        json_t *l = json_array_get(ls, i);
        const char *digest = json_string_value(json_object_get(l, "diff_id"));
        const char *hex = digest_hex(digest);
        if (!hex) {
            snprintf(reason, sizeof(reason), "sbx-unpack answered a malformed digest");
            break;
        }
        rows[i].digest = (char *)digest;
        rows[i].size_bytes = json_integer_value(json_object_get(l, "size_bytes"));
        if (json_is_true(json_object_get(l, "absent")))
            rows[i].size_bytes = stored_layer_size(d, digest); /* a pull did not download it */
        bool dup = false;
        for (size_t k = 0; k < i; k++)
            dup = dup || strcmp(rows[k].digest, digest) == 0;
        if (!dup)
            total += rows[i].size_bytes;
        _cleanup_free_ char *src = xasprintf("%s/%s", op->staging, hex);
        _cleanup_free_ char *dst = xasprintf("%s/%s", d->snap->layers_dir, hex);
        struct stat st;
        if (lstat(src, &st) == 0) {
            if (lstat(dst, &st) == 0)
                continue; /* another import stored it meanwhile: ours goes with the staging dir */
            if (rename(src, dst) < 0)
                snprintf(reason, sizeof(reason), "move layer %s into the store: %s", digest, strerror(errno));
        } else if (lstat(dst, &st) < 0) {
            snprintf(reason, sizeof(reason), "layer %s was neither unpacked nor in the store", digest);
        }
    }
    sbx_error err = {0};
    json_t *cfg = config_subset(json_object_get(res, "config"));
    _cleanup_free_ char *cfg_text = json_dumps(cfg, JSON_COMPACT);
    if (!reason[0] && store_snapshot_finish(d->store, sn->id, rows, n, total, cfg_text, now_ms(), &err) < 0)
        snprintf(reason, sizeof(reason), "record the snapshot: %s", err.msg);
    if (reason[0]) {
        json_decref(cfg);
        free(rows);
        return import_fail(op, reason);
    }
    sn->layers = xcalloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        sn->layers[i] = xstrdup(rows[i].digest);
    sn->n_layers = n;
    free(rows);
    json_decref(sn->config);
    sn->config = cfg;
    sn->size_bytes = total;
    sn->status = SNAPSHOT_READY;
    log_info("snapshot %s (`%s`) ready: %zu layers, %lld bytes", sn->id, sn->name, n, (long long)total);
    import_op_free(op);
}

static void import_on_output(struct loop_io *io, uint32_t revents)
{
    struct import_op *op = container_of(io, struct import_op, io);
    char buf[16384];
    for (;;) {
        ssize_t n = read(op->out_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n > 0) {
            if (op->out.len + (size_t)n <= RESULT_MAX)
                sbx_buf_append(&op->out, buf, (size_t)n);
            continue;
        }
        break; /* EOF (or an error): the helper is done */
    }
    loop_io_stop(op->d->loop, &op->io);
    /* It exits right after closing its output. */
    siginfo_t si = {0};
    while (waitid(P_PIDFD, (id_t)op->pidfd, &si, WEXITED) < 0 && errno == EINTR)
        ;
    sbx_buf_append(&op->out, "", 1);
    json_t *res = json_loads(op->out.base, 0, NULL);
    const char *error = json_string_value(json_object_get(res, "error"));
    char reason[600];
    if (error)
        snprintf(reason, sizeof(reason), "%s", error);
    else if (si.si_code != CLD_EXITED || si.si_status != 0 || !res)
        snprintf(reason, sizeof(reason), "sbx-unpack %s %d",
                 si.si_code == CLD_EXITED ? "exited with" : "killed by signal", si.si_status);
    else
        reason[0] = '\0';
    if (reason[0])
        import_fail(op, reason);
    else
        import_finish(op, res);
    json_decref(res);
}

static void import_on_timeout(struct loop_timer *t)
{
    struct import_op *op = container_of(t, struct import_op, timeout);
    (void)pidfd_send_signal(op->pidfd, SIGKILL, NULL, 0);
    siginfo_t si;
    (void)waitid(P_PIDFD, (id_t)op->pidfd, &si, WEXITED);
    import_fail(op, "the import took longer than an hour");
}

struct hex_list {
    char **v;
    size_t n;
};

static int collect_hex(const struct store_layer *l, void *userdata)
{
    struct hex_list *h = userdata;
    const char *hex = digest_hex(l->digest);
    if (hex) {
        h->v = xrealloc(h->v, (h->n + 1) * sizeof(char *));
        h->v[h->n++] = xstrdup(hex);
    }
    return 0;
}

void snapshot_known_hexes(struct daemon *d, char ***ret, size_t *ret_n)
{
    /* Every layer with a row, referenced or not: the one a deleted snapshot leaves stays until the garbage
     * collection, which waits for every import, pull and capture in progress (snapshot_gc) — so a build
     * that counted on a layer when it started still finds it when it ends. */
    struct hex_list h = {0};
    sbx_error err = {0};
    if (store_layer_foreach(d->store, collect_hex, &h, &err) < 0)
        log_warning("list stored layers: %s (every layer is downloaded and unpacked again)", err.msg);
    *ret = h.v;
    *ret_n = h.n;
}

/* Every layer the store has: the helper only verifies those. */
static void add_skips(struct daemon *d, char ***argv, size_t *argc)
{
    char **hexes;
    size_t n;
    snapshot_known_hexes(d, &hexes, &n);
    for (size_t i = 0; i < n; i++) {
        *argv = xrealloc(*argv, (*argc + 3) * sizeof(char *));
        (*argv)[(*argc)++] = xstrdup("--skip");
        (*argv)[(*argc)++] = hexes[i];
    }
    free(hexes);
}

static int spawn_helper(struct daemon *d, struct import_op *op, sbx_error *err)
{
    struct snapshot_state *s = d->snap;
    _cleanup_close_ int in = open(op->upload_path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return sbx_error_set(err, -errno, "open `%s`: %m", op->upload_path);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return sbx_error_set(err, -errno, "pipe: %m");
    _cleanup_close_ int wr = p[1];
    op->out_fd = p[0];
    fd_set_nonblock(op->out_fd, true);

    size_t argc = 0;
    char **argv = xcalloc(8, sizeof(char *));
    argv[argc++] = xstrdup(s->unpack_path);
    argv[argc++] = xasprintf("--max-layer-bytes=%llu", (unsigned long long)s->limits.max_layer_bytes);
    argv[argc++] = xasprintf("--max-entries=%llu", (unsigned long long)s->limits.max_entries);
    add_skips(d, &argv, &argc);
    if (op->absent_ok) {
        argv = xrealloc(argv, (argc + 1) * sizeof(char *));
        argv[argc++] = xstrdup("--absent-ok");
    }
    argv = xrealloc(argv, (argc + 1) * sizeof(char *));
    argv[argc] = NULL;
    /* A clean environment; under ASan the helper cannot run LeakSanitizer (no /proc in its root). */
    const char *asan = getenv("ASAN_OPTIONS");
    _cleanup_free_ char *asan_env =
        xasprintf("ASAN_OPTIONS=%s%sdetect_leaks=0", asan ? asan : "", asan ? ":" : "");
    char *envp[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", asan_env, NULL};

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, wr, 1);
    posix_spawn_file_actions_addchdir_np(&fa, op->staging);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int r = posix_spawn(&op->pid, s->unpack_path, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    for (size_t i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
    if (r != 0)
        return sbx_error_set(err, -r, "spawn `%s`: %s", s->unpack_path, strerror(r));
    op->pidfd = pidfd_open(op->pid, 0);
    if (op->pidfd < 0) {
        r = -errno;
        (void)kill(op->pid, SIGKILL);
        (void)waitpid(op->pid, NULL, 0);
        return sbx_error_set(err, r, "pidfd of sbx-unpack: %s", strerror(-r));
    }
    return 0;
}

char *snapshot_staging_path(struct daemon *d, const struct snapshot *sn)
{
    return xasprintf("%s/.tmp-%s", d->snap->layers_dir, sn->id);
}

static int name_check(struct daemon *d, const char *name, sbx_error *err)
{
    if (!name)
        return sbx_error_set(err, -EINVAL, "`name` is required");
    if (!id_is_valid(name) || strcmp(name, "host") == 0)
        return sbx_error_set(err, -EINVAL, "`name` must match [A-Za-z0-9_.-]{1,64} and not be `host`");
    if (snapshot_find(d, name))
        return sbx_error_setk(err, -EEXIST, "conflict", 409, "a snapshot named `%s` exists", name);
    if (d->snap->n_building >= IMPORTS_MAX)
        return sbx_error_setk(err, -EAGAIN, "resource_exhausted", 429,
                              "%d imports, pulls or captures are running already", IMPORTS_MAX);
    return 0;
}

int snapshot_building_new(struct daemon *d, const char *name, const char *owner, const char *source,
                          bool host_base, struct snapshot **ret, sbx_error *err)
{
    int r = name_check(d, name, err);
    if (r < 0)
        return r;
    struct snapshot *sn = xcalloc(1, sizeof(*sn));
    id_generate(sn->id, sizeof(sn->id), "snap_");
    sn->name = xstrdup(name);
    sn->status = SNAPSHOT_BUILDING;
    sn->created_ms = now_ms();
    sn->config = json_object();
    sn->owner = owner ? xstrdup(owner) : NULL;
    sn->source = source;
    sn->host_base = host_base;
    struct store_snapshot row = {.id = sn->id,
                                 .name = sn->name,
                                 .status = "building",
                                 .created_ms = sn->created_ms,
                                 .owner = sn->owner,
                                 .source = (char *)source,
                                 .base = host_base ? "host" : ""};
    if ((r = store_snapshot_insert(d->store, &row, err)) < 0) {
        snapshot_free(sn);
        return r;
    }
    list_add(d->snap, sn);
    d->snap->n_building++;
    *ret = sn;
    return 0;
}

static void building_end(struct daemon *d)
{
    d->snap->n_building--;
    if (d->snap->n_building == 0 && d->snap->gc_pending)
        snapshot_gc(d);
}

void snapshot_building_drop(struct daemon *d, struct snapshot *sn)
{
    sbx_error err = {0};
    if (store_snapshot_delete(d->store, sn->id, &err) < 0)
        log_warning("snapshot %s: %s", sn->id, err.msg);
    list_remove(d->snap, sn);
    snapshot_free(sn);
    building_end(d);
}

void snapshot_building_fail(struct daemon *d, struct snapshot *sn, const char *reason)
{
    sn->status = SNAPSHOT_FAILED;
    free(sn->reason);
    sn->reason = xstrdup(reason);
    sbx_error err = {0};
    if (store_snapshot_fail(d->store, sn->id, reason, &err) < 0)
        log_warning("snapshot %s: %s", sn->id, err.msg);
    log_warning("snapshot %s (`%s`) failed: %s", sn->id, sn->name, reason);
    building_end(d);
}

void snapshot_import_run(struct daemon *d, struct snapshot *sn, const char *upload_path, bool absent_ok)
{
    struct import_op *op = xcalloc(1, sizeof(*op));
    *op = (struct import_op){.d = d, .sn = sn, .pidfd = -1, .out_fd = -1, .out = SBX_BUF_INIT};
    op->upload_path = xstrdup(upload_path);
    op->staging = snapshot_staging_path(d, sn);
    op->absent_ok = absent_ok;
    sn->op = op;
    sbx_error serr = {0};
    if (!d->snap->unpack_path || access(d->snap->unpack_path, X_OK) < 0) {
        sbx_error_set(&serr, -ENOSYS, "sbx-unpack is not installed next to sbxd");
    } else if (mkdir(op->staging, 0700) < 0) {
        sbx_error_set(&serr, -errno, "create `%s`: %m", op->staging);
        free(op->staging);
        op->staging = NULL;
    } else if (spawn_helper(d, op, &serr) >= 0 &&
               loop_io_start(d->loop, &op->io, op->out_fd, EPOLLIN, import_on_output) < 0) {
        sbx_error_set(&serr, -EIO, "watch sbx-unpack's output");
        (void)pidfd_send_signal(op->pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        (void)waitid(P_PIDFD, (id_t)op->pidfd, &si, WEXITED);
    }
    if (serr.code < 0) {
        import_fail(op, serr.msg); /* the snapshot exists and says why */
    } else {
        loop_timer_start(d->loop, &op->timeout, IMPORT_TIMEOUT_USEC, import_on_timeout);
        log_info("snapshot %s (`%s`): importing (sbx-unpack %d)", sn->id, sn->name, (int)op->pid);
    }
}

int snapshot_import_start(struct daemon *d, const char *name, const char *upload_path, struct snapshot **ret,
                          sbx_error *err)
{
    struct snapshot *sn = NULL;
    int r = snapshot_import_check(d, name, err);
    if (r >= 0)
        r = snapshot_building_new(d, name, NULL, "image", false, &sn, err);
    if (r < 0) {
        unlink(upload_path);
        return r;
    }
    snapshot_import_run(d, sn, upload_path, false);
    *ret = sn;
    return 0;
}

struct size_walk {
    const char *digest;
    int64_t size;
};

static int size_of_layer(const struct store_layer *l, void *userdata)
{
    struct size_walk *w = userdata;
    if (strcmp(l->digest, w->digest) == 0)
        w->size = l->size_bytes;
    return 0;
}

/* The size the store records for a layer ("sha256:<hex>"), 0 when unknown. */
static int64_t stored_layer_size(struct daemon *d, const char *digest)
{
    struct size_walk w = {digest, 0};
    sbx_error err = {0};
    (void)store_layer_foreach(d->store, size_of_layer, &w, &err);
    return w.size;
}

void snapshot_capture_finish(struct daemon *d, struct snapshot *sn, const char *parent,
                             const char *staging_layer, const char *diff_id, int64_t size_bytes)
{
    struct snapshot *p = parent && strcmp(parent, "host") != 0 ? snapshot_find(d, parent) : NULL;
    const char *hex = digest_hex(diff_id);
    char reason[300] = "";
    if (parent && strcmp(parent, "host") != 0 && (!p || p->status != SNAPSHOT_READY))
        snprintf(reason, sizeof(reason), "the sandbox's snapshot `%s` is gone", parent);
    else if (!hex)
        snprintf(reason, sizeof(reason), "the layer's digest is malformed");
    else if (p && p->n_layers + 1 > LAYERS_MAX)
        snprintf(reason, sizeof(reason), "the snapshot would have more than %d layers", LAYERS_MAX);
    size_t n = p ? p->n_layers + 1 : 1;
    struct store_layer *rows = xcalloc(n, sizeof(*rows));
    int64_t total = 0;
    for (size_t i = 0; i + 1 < n; i++)
        rows[i].digest = p->layers[i]; /* recorded already: their sizes are not written again */
    total = p ? p->size_bytes : 0;
    rows[n - 1].digest = (char *)diff_id;
    rows[n - 1].size_bytes = size_bytes;
    if (!reason[0]) {
        _cleanup_free_ char *dst = xasprintf("%s/%s", d->snap->layers_dir, hex);
        struct stat st;
        bool dup = false;
        for (size_t i = 0; i + 1 < n; i++)
            dup = dup || strcmp(rows[i].digest, diff_id) == 0;
        if (!dup)
            total += size_bytes;
        if (lstat(dst, &st) == 0)
            ; /* the same content is stored already (an unchanged sandbox, say): ours goes */
        else if (rename(staging_layer, dst) < 0)
            snprintf(reason, sizeof(reason), "move the layer into the store: %s", strerror(errno));
    }
    json_t *cfg = p ? json_incref(p->config) : json_object();
    _cleanup_free_ char *cfg_text = json_dumps(cfg, JSON_COMPACT);
    sbx_error err = {0};
    if (!reason[0] && store_snapshot_finish(d->store, sn->id, rows, n, total, cfg_text, now_ms(), &err) < 0)
        snprintf(reason, sizeof(reason), "record the snapshot: %s", err.msg);
    if (reason[0]) {
        free(rows);
        json_decref(cfg);
        return snapshot_building_fail(d, sn, reason);
    }
    sn->layers = xcalloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        sn->layers[i] = xstrdup(rows[i].digest);
    sn->n_layers = n;
    free(rows);
    json_decref(sn->config);
    sn->config = cfg;
    sn->size_bytes = total;
    sn->status = SNAPSHOT_READY;
    log_info("snapshot %s (`%s`) captured: %zu layers, top %s, %lld bytes", sn->id, sn->name, n, diff_id,
             (long long)total);
    building_end(d);
}

int snapshot_delete(struct daemon *d, struct snapshot *sn, sbx_error *err)
{
    if (sn->status == SNAPSHOT_BUILDING)
        return sbx_error_setk(err, -EBUSY, "conflict", 409, "snapshot `%s` is being imported", sn->name);
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next)
        if (sb->snapshot && strcmp(sb->snapshot, sn->id) == 0)
            return sbx_error_setk(err, -EBUSY, "conflict", 409, "snapshot `%s` is used by sandbox `%s`",
                                  sn->name, sb->id);
    int r = store_snapshot_delete(d->store, sn->id, err);
    if (r < 0)
        return r;
    log_info("snapshot %s (`%s`) deleted", sn->id, sn->name);
    list_remove(d->snap, sn);
    snapshot_free(sn);
    snapshot_gc(d);
    return 0;
}
