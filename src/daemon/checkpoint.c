/* Checkpoints, restore and fork: see checkpoint.h and docs/design/snapshots.md. */
#include "daemon/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/capture.h"
#include "daemon/daemon.h"
#include "daemon/egress.h"
#include "daemon/lifecycle.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "loop/loop.h"
#include "runtime/runtime.h"
#include "store/store.h"

enum op_kind { OP_CHECKPOINT, OP_RESTORE, OP_FORK, OP_CAPTURE };

struct checkpoint_op {
    struct checkpoint_op *next;
    struct daemon *d;
    enum op_kind kind;
    struct sandbox *sb; /* a reference; its `busy` points here while the copy runs */
    checkpoint_cb cb;   /* NULL once the requester is gone */
    void *userdata;

    /* The copy, done by a thread: src to dst, with <state_dir>/disk frozen meanwhile if freeze. The thread
     * writes r, err and bytes, then signals efd; the loop joins it. */
    char *src, *dst, *state_dir;
    bool freeze;
    pthread_t thread;
    bool thread_running;
    int efd;
    struct loop_io io;
    int r;
    sbx_error err;
    uint64_t bytes;
    usec_t started;

    char id[SBX_ID_MAX + 1]; /* checkpoint: the new one's id */
    char *name;              /* checkpoint: its name; restore: the checkpoint's */
    bool was_up;             /* restore: start the sandbox again afterwards */
    unsigned count, pending; /* fork: sandboxes asked for, creates not answered yet */
    struct sandbox **made;   /* fork: the ones built (references) */
    size_t n_made;
    sbx_error fork_err; /* fork: the first create that failed */

    /* capture: the building snapshot, the sandbox's snapshot under it, the staging dir (dst is the layer
     * dir in it), the copy's limits and result. */
    struct snapshot *snap;
    char *parent, *staging;
    struct capture_limits cap_limits;
    struct capture_result cap;
};

struct checkpoint_state {
    char *dir; /* <data-dir>/checkpoints */
    struct checkpoint *list;
    struct checkpoint_op *ops;
};

static void checkpoint_free(struct checkpoint *ck)
{
    if (!ck)
        return;
    free(ck->id);
    free(ck->sandbox_id);
    free(ck->name);
    free(ck->owner);
    free(ck->snapshot);
    free(ck);
}

static void list_append(struct checkpoint_state *cs, struct checkpoint *ck)
{
    struct checkpoint **p = &cs->list;
    while (*p)
        p = &(*p)->next;
    ck->next = NULL;
    *p = ck;
}

static void list_remove(struct checkpoint_state *cs, struct checkpoint *ck)
{
    for (struct checkpoint **p = &cs->list; *p; p = &(*p)->next)
        if (*p == ck) {
            *p = ck->next;
            return;
        }
}

char *checkpoint_image_path(struct daemon *d, const char *id)
{
    return xasprintf("%s/%s.img", d->ckpt->dir, id);
}

json_t *checkpoint_to_json(const struct checkpoint *ck)
{
    char when[40];
    format_time_ms(when, sizeof(when), ck->created_ms);
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "id", ck->id, "sandbox_id", ck->sandbox_id,
                     "name", ck->name, "snapshot", ck->snapshot, "disk_mb", (json_int_t)ck->disk_mb,
                     "size_bytes", (json_int_t)ck->size_bytes, "created_at", when);
}

json_t *checkpoint_list_json(struct daemon *d, const char *sandbox_id)
{
    json_t *a = json_array();
    for (struct checkpoint *ck = d->ckpt->list; ck; ck = ck->next)
        if (strcmp(ck->sandbox_id, sandbox_id) == 0)
            json_array_append_new(a, checkpoint_to_json(ck));
    return a;
}

struct checkpoint *checkpoint_find(struct daemon *d, const char *sandbox_id, const char *name)
{
    for (struct checkpoint *ck = d->ckpt->list; ck; ck = ck->next)
        if (strcmp(ck->sandbox_id, sandbox_id) == 0 && strcmp(ck->name, name) == 0)
            return ck;
    return NULL;
}

static size_t count_of(struct daemon *d, const char *sandbox_id)
{
    size_t n = 0;
    for (struct checkpoint *ck = d->ckpt->list; ck; ck = ck->next)
        n += strcmp(ck->sandbox_id, sandbox_id) == 0;
    return n;
}

struct checkpoint *checkpoint_resolve(struct daemon *d, const char *ref, const char *owner, sbx_error *err)
{
    if (strncmp(ref, "ckp_", 4) == 0) {
        for (struct checkpoint *ck = d->ckpt->list; ck; ck = ck->next)
            if (strcmp(ck->id, ref) == 0 && (!owner || (ck->owner && strcmp(ck->owner, owner) == 0)))
                return ck;
    } else {
        const char *colon = strchr(ref, ':');
        if (colon && colon != ref && colon[1]) {
            _cleanup_free_ char *sid = xstrndup(ref, (size_t)(colon - ref));
            struct sandbox *sb = sandbox_lookup(d, sid, owner);
            struct checkpoint *ck = sb ? checkpoint_find(d, sb->id, colon + 1) : NULL;
            sandbox_unref(sb);
            if (ck)
                return ck;
        } else {
            sbx_error_set(err, -EINVAL, "`checkpoint` must be a checkpoint id (ckp_...) or SANDBOX:NAME");
            return NULL;
        }
    }
    sbx_error_set(err, -ENOENT, "checkpoint `%s` not found", ref);
    return NULL;
}

static void remove_checkpoint(struct daemon *d, struct checkpoint *ck)
{
    sbx_error err = {0};
    if (store_checkpoint_delete(d->store, ck->id, &err) < 0)
        log_warning("forget checkpoint %s: %s", ck->id, err.msg);
    _cleanup_free_ char *img = checkpoint_image_path(d, ck->id);
    if (unlink(img) < 0 && errno != ENOENT)
        log_warning_errno(-errno, "remove `%s`: %m", img);
    list_remove(d->ckpt, ck);
    checkpoint_free(ck);
}

int checkpoint_delete(struct daemon *d, struct checkpoint *ck, sbx_error *err)
{
    _cleanup_free_ char *img = checkpoint_image_path(d, ck->id);
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next)
        if (sb->state == SANDBOX_CREATING && sb->disk_source && strcmp(sb->disk_source, img) == 0)
            return sbx_error_setk(err, -EBUSY, "busy", 409,
                                  "sandbox `%s` is being created from checkpoint `%s`", sb->id, ck->name);
    log_info("checkpoint %s (%s of sandbox %s) deleted", ck->id, ck->name, ck->sandbox_id);
    remove_checkpoint(d, ck);
    return 0;
}

void checkpoint_delete_all_of(struct daemon *d, const char *sandbox_id)
{
    if (!d->ckpt)
        return;
    for (struct checkpoint *ck = d->ckpt->list, *next; ck; ck = next) {
        next = ck->next;
        if (strcmp(ck->sandbox_id, sandbox_id) == 0)
            remove_checkpoint(d, ck);
    }
}

int sandbox_refuse_busy(const struct sandbox *sb, sbx_error *err)
{
    if (!sb->busy)
        return 0;
    static const char *const what[] = {"a checkpoint", "a restore", "a fork", "a capture"};
    return sbx_error_setk(err, -EBUSY, "busy", 409, "%s of sandbox `%s` is in progress", what[sb->busy->kind],
                          sb->id);
}

/* --- the copy thread ------------------------------------------------------------------------------ */

/* The sandbox's upper dir (on its disk mounted at mnt) into a new layer dir op->dst. */
static int capture_upper(struct checkpoint_op *op, const char *mnt)
{
    _cleanup_close_ int mfd = open(mnt, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (mfd < 0)
        return sbx_error_set(&op->err, -errno, "open `%s`: %m", mnt);
    _cleanup_close_ int ufd = openat(mfd, "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (ufd < 0)
        return sbx_error_set(&op->err, -errno, "open `%s/upper`: %m", mnt);
    if (mkdir(op->staging, 0700) < 0 || mkdir(op->dst, 0755) < 0)
        return sbx_error_set(&op->err, -errno, "create `%s`: %m", op->dst);
    _cleanup_close_ int dfd = open(op->dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return sbx_error_set(&op->err, -errno, "open `%s`: %m", op->dst);
    return capture_copy_layer(ufd, dfd, op->sb->uid_base, &op->cap_limits, &op->cap, &op->err);
}

/* The layer on disk before the snapshot is recorded as ready (a crash then leaves a complete layer or an
 * unrecorded staging dir), after the thaw: the sandbox need not wait for it. */
static int capture_sync(struct checkpoint_op *op, int r)
{
    if (r < 0)
        return r;
    _cleanup_close_ int fd = open(op->dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || syncfs(fd) < 0)
        return sbx_error_set(&op->err, -errno, "sync the layer: %m");
    return 0;
}

/* Capture: a running or paused sandbox's disk is frozen while its upper dir is copied; a stopped one's is
 * mounted read-only for the copy (nothing can start it meanwhile: it is busy). */
static int capture_work(struct checkpoint_op *op)
{
    int r;
    if (op->freeze) {
        if ((r = runtime_disk_freeze(op->state_dir, true)) < 0)
            return sbx_error_set(&op->err, r, "freeze the sandbox's disk: %s", strerror(-r));
        _cleanup_free_ char *mnt = xasprintf("%s/disk", op->state_dir);
        r = capture_upper(op, mnt);
        int t = runtime_disk_freeze(op->state_dir, false);
        if (t < 0 && r >= 0)
            r = sbx_error_set(&op->err, t, "thaw the sandbox's disk: %s", strerror(-t));
        return capture_sync(op, r);
    }
    _cleanup_free_ char *mnt = xasprintf("%s/capture", op->state_dir);
    if (mkdir(mnt, 0700) < 0 && errno != EEXIST)
        return sbx_error_set(&op->err, -errno, "create `%s`: %m", mnt);
    if ((r = runtime_disk_mount_ro(op->state_dir, mnt, &op->err)) < 0) {
        (void)rmdir(mnt);
        return r;
    }
    r = capture_upper(op, mnt);
    int t = runtime_disk_unmount_ro(op->state_dir, mnt);
    if (t < 0 && r >= 0)
        r = sbx_error_set(&op->err, t, "unmount the sandbox's disk: %s", strerror(-t));
    (void)rmdir(mnt);
    return capture_sync(op, r);
}

static void *copy_thread(void *p)
{
    struct checkpoint_op *op = p;
    int r = 0;
    if (op->kind == OP_CAPTURE) {
        op->r = capture_work(op);
        uint64_t one = 1;
        while (write(op->efd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
        return NULL;
    }
    if (op->freeze && (r = runtime_disk_freeze(op->state_dir, true)) < 0)
        sbx_error_set(&op->err, r, "freeze the sandbox's disk: %s", strerror(-r));
    if (r >= 0) {
        r = runtime_disk_copy(op->src, op->dst, &op->bytes, &op->err);
        if (op->freeze) {
            int t = runtime_disk_freeze(op->state_dir, false);
            if (t < 0 && r >= 0)
                r = sbx_error_set(&op->err, t, "thaw the sandbox's disk: %s", strerror(-t));
        }
    }
    op->r = r;
    uint64_t one = 1;
    while (write(op->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    return NULL;
}

static void op_unlink(struct checkpoint_op *op)
{
    for (struct checkpoint_op **p = &op->d->ckpt->ops; *p; p = &(*p)->next)
        if (*p == op) {
            *p = op->next;
            return;
        }
}

static void op_free(struct checkpoint_op *op)
{
    op_unlink(op);
    if (op->sb && op->sb->busy == op)
        op->sb->busy = NULL;
    lifecycle_reschedule(op->d); /* deadlines that passed while the sandbox was busy are due now */
    sandbox_unref(op->sb);
    for (size_t i = 0; i < op->n_made; i++)
        sandbox_unref(op->made[i]);
    free(op->made);
    free(op->src);
    free(op->dst);
    free(op->state_dir);
    free(op->name);
    free(op->parent);
    free(op->staging);
    free(op);
}

static void op_answer(struct checkpoint_op *op, int status, json_t *body, const sbx_error *err)
{
    if (op->cb)
        op->cb(status, body, err, op->userdata);
    else
        json_decref(body);
    op->cb = NULL;
}

static void copy_joined(struct checkpoint_op *op)
{
    pthread_join(op->thread, NULL);
    op->thread_running = false;
    loop_io_stop(op->d->loop, &op->io);
    close(op->efd);
    op->efd = -1;
    /* If the thread could not thaw, try once more: a disk left frozen hangs every writer in the sandbox. */
    if (op->freeze && op->r < 0) {
        int t = runtime_disk_freeze(op->state_dir, false);
        if (t < 0 && t != -EINVAL && t != -ENOENT)
            log_warning_errno(t, "sandbox %s: thaw its disk: %m", op->sb->id);
    }
}

static void finish_checkpoint(struct checkpoint_op *op);
static void finish_capture(struct checkpoint_op *op);
static void finish_restore(struct checkpoint_op *op);
static void start_forks(struct checkpoint_op *op);

static void on_copy_done(struct loop_io *io, uint32_t revents)
{
    struct checkpoint_op *op = container_of(io, struct checkpoint_op, io);
    copy_joined(op);
    log_info("sandbox %s: copied its disk (%llu bytes of data) in %llu us%s%s", op->sb->id,
             (unsigned long long)op->bytes, (unsigned long long)(now_usec(CLOCK_MONOTONIC) - op->started),
             op->r < 0 ? ": " : "", op->r < 0 ? op->err.msg : "");
    switch (op->kind) {
    case OP_CHECKPOINT:
        return finish_checkpoint(op);
    case OP_RESTORE:
        return finish_restore(op);
    case OP_CAPTURE:
        return finish_capture(op);
    case OP_FORK:
    default:
        return start_forks(op);
    }
}

/* Starts the copy thread of a new op (src, dst, freeze set) and registers the op; the sandbox is busy. */
static int op_start(struct daemon *d, struct checkpoint_op *op, sbx_error *err)
{
    op->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (op->efd < 0)
        return sbx_error_set(err, -errno, "eventfd: %m");
    int r = loop_io_start(d->loop, &op->io, op->efd, EPOLLIN, on_copy_done);
    if (r < 0) {
        close(op->efd);
        return sbx_error_set(err, r, "watch the copy: %s", strerror(-r));
    }
    op->started = now_usec(CLOCK_MONOTONIC);
    if ((r = -pthread_create(&op->thread, NULL, copy_thread, op)) < 0) {
        loop_io_stop(d->loop, &op->io);
        close(op->efd);
        return sbx_error_set(err, r, "start the copy: %s", strerror(-r));
    }
    op->thread_running = true;
    op->sb->busy = op;
    op->next = d->ckpt->ops;
    d->ckpt->ops = op;
    return 0;
}

static struct checkpoint_op *op_new(struct daemon *d, enum op_kind kind, struct sandbox *sb, checkpoint_cb cb,
                                    void *userdata)
{
    struct checkpoint_op *op = xcalloc(1, sizeof(*op));
    op->d = d;
    op->kind = kind;
    op->sb = sandbox_ref(sb);
    op->cb = cb;
    op->userdata = userdata;
    op->efd = -1;
    op->state_dir = xstrdup(sb->state_dir);
    op->src = xasprintf("%s/disk.img", sb->state_dir);
    /* A running or paused sandbox's disk is mounted: freeze it so the image is consistent. A stopped or
     * failed one's is not mounted (its shim unmounted it, or recovery did). */
    op->freeze = sb->state == SANDBOX_RUNNING || sb->state == SANDBOX_PAUSED;
    return op;
}

static int check_can_copy(struct sandbox *sb, sbx_error *err)
{
    int r = sandbox_refuse_busy(sb, err);
    if (r < 0)
        return r;
    if (sb->state == SANDBOX_CREATING)
        return sbx_error_setk(err, -EBUSY, "conflict", 409, "sandbox `%s` is still being created", sb->id);
    if (!sb->res.disk_mb)
        return sbx_error_setk(err, -EOPNOTSUPP, "not_supported", 409,
                              "sandbox `%s` has no disk of its own (made before sbx had disks)", sb->id);
    return 0;
}

void checkpoint_op_forget(struct checkpoint_op *op)
{
    op->cb = NULL;
}

/* --- checkpoint ----------------------------------------------------------------------------------- */

int checkpoint_create(struct daemon *d, struct sandbox *sb, const char *name, checkpoint_cb cb,
                      void *userdata, struct checkpoint_op **ret_op, sbx_error *err)
{
    int r = check_can_copy(sb, err);
    if (r < 0)
        return r;
    char id[SBX_ID_MAX + 1];
    id_generate(id, sizeof(id), "ckp_");
    if (!name)
        name = id; /* unnamed: named by its id */
    if (!id_is_valid(name))
        return sbx_error_set(err, -EINVAL, "`name` must match [A-Za-z0-9_.-]{1,64}");
    if (checkpoint_find(d, sb->id, name))
        return sbx_error_setk(err, -EEXIST, "conflict", 409, "sandbox `%s` has a checkpoint named `%s`",
                              sb->id, name);
    if (count_of(d, sb->id) >= CHECKPOINTS_PER_SANDBOX_MAX)
        return sbx_error_setk(err, -ENOSPC, "resource_exhausted", 429,
                              "sandbox `%s` has %d checkpoints, the limit: delete one first", sb->id,
                              CHECKPOINTS_PER_SANDBOX_MAX);
    struct checkpoint_op *op = op_new(d, OP_CHECKPOINT, sb, cb, userdata);
    snprintf(op->id, sizeof(op->id), "%s", id);
    op->name = xstrdup(name);
    op->dst = checkpoint_image_path(d, op->id);
    if ((r = op_start(d, op, err)) < 0) {
        op_free(op);
        return r;
    }
    *ret_op = op;
    return 0;
}

static void finish_checkpoint(struct checkpoint_op *op)
{
    struct daemon *d = op->d;
    struct sandbox *sb = op->sb;
    if (op->r < 0) {
        unlink(op->dst);
        op_answer(op, 0, NULL, &op->err);
        return op_free(op);
    }
    struct checkpoint *ck = xcalloc(1, sizeof(*ck));
    ck->id = xstrdup(op->id);
    ck->sandbox_id = xstrdup(sb->id);
    ck->name = xstrdup(op->name);
    ck->owner = sb->owner ? xstrdup(sb->owner) : NULL;
    ck->snapshot = xstrdup(sb->snapshot);
    ck->disk_mb = (int64_t)sb->res.disk_mb;
    ck->uid_base = sb->uid_base;
    ck->size_bytes = (int64_t)op->bytes;
    ck->created_ms = now_ms();
    struct store_checkpoint row = {
        .id = ck->id,
        .sandbox_id = ck->sandbox_id,
        .name = ck->name,
        .owner = ck->owner,
        .snapshot = ck->snapshot,
        .disk_mb = ck->disk_mb,
        .uid_base = ck->uid_base,
        .size_bytes = ck->size_bytes,
        .created_ms = ck->created_ms,
    };
    sbx_error err = {0};
    if (store_checkpoint_insert(d->store, &row, &err) < 0) {
        unlink(op->dst);
        checkpoint_free(ck);
        op_answer(op, 0, NULL, &err);
        return op_free(op);
    }
    list_append(d->ckpt, ck);
    sandbox_touch(sb);
    log_info("sandbox %s: checkpoint %s (%s), %lld bytes", sb->id, ck->name, ck->id,
             (long long)ck->size_bytes);
    op_answer(op, 201, checkpoint_to_json(ck), NULL);
    op_free(op);
}

/* --- capture -------------------------------------------------------------------------------------- */

int checkpoint_capture(struct daemon *d, struct sandbox *sb, struct snapshot *sn,
                       const struct capture_limits *limits, sbx_error *err)
{
    int r = check_can_copy(sb, err);
    if (r < 0)
        return r;
    struct checkpoint_op *op = op_new(d, OP_CAPTURE, sb, NULL, NULL);
    op->snap = sn;
    op->parent = xstrdup(sb->snapshot);
    op->staging = snapshot_staging_path(d, sn);
    op->dst = xasprintf("%s/layer", op->staging);
    op->cap_limits = *limits;
    if ((r = op_start(d, op, err)) < 0) {
        op_free(op);
        return r;
    }
    log_info("sandbox %s: capturing into snapshot %s (`%s`)", sb->id, sn->id, sn->name);
    return 0;
}

static void finish_capture(struct checkpoint_op *op)
{
    struct daemon *d = op->d;
    op->sb->busy = NULL;
    if (op->r < 0) {
        char reason[300];
        snprintf(reason, sizeof(reason), "capture of sandbox `%s`: %s", op->sb->id, op->err.msg);
        snapshot_building_fail(d, op->snap, reason);
    } else {
        log_info("sandbox %s: captured %llu entries, %llu bytes (%llu device nodes or sockets left out)",
                 op->sb->id, (unsigned long long)op->cap.entries, (unsigned long long)op->cap.bytes,
                 (unsigned long long)op->cap.skipped);
        snapshot_capture_finish(d, op->snap, op->parent, op->dst, op->cap.diff_id, (int64_t)op->cap.bytes);
    }
    int r = rm_rf(op->staging);
    if (r < 0 && r != -ENOENT)
        log_warning_errno(r, "remove `%s`: %m, ignoring", op->staging);
    sandbox_touch(op->sb);
    op_free(op);
}

/* --- restore -------------------------------------------------------------------------------------- */

int checkpoint_restore(struct daemon *d, struct sandbox *sb, struct checkpoint *ck, checkpoint_cb cb,
                       void *userdata, struct checkpoint_op **ret_op, sbx_error *err)
{
    int r = check_can_copy(sb, err);
    if (r < 0)
        return r;
    bool was_up = sb->state == SANDBOX_RUNNING || sb->state == SANDBOX_PAUSED;
    /* Processes end first (memory state is not part of a checkpoint); the disk is then not mounted. */
    char reason[160];
    snprintf(reason, sizeof(reason), "restoring checkpoint `%s`", ck->name);
    if (was_up && (r = sandbox_stop_because(d, sb, reason, err)) < 0)
        return r;
    struct checkpoint_op *op = op_new(d, OP_RESTORE, sb, cb, userdata);
    op->was_up = was_up;
    op->name = xstrdup(ck->name);
    free(op->src);
    op->src = checkpoint_image_path(d, ck->id);
    op->dst = xasprintf("%s/disk.img", sb->state_dir);
    op->freeze = false;
    if ((r = op_start(d, op, err)) < 0) {
        op_free(op);
        return r;
    }
    *ret_op = op;
    return 0;
}

static void finish_restore(struct checkpoint_op *op)
{
    struct daemon *d = op->d;
    struct sandbox *sb = op->sb;
    sb->busy = NULL;
    sbx_error err = {0};
    if (op->r < 0) {
        /* disk.img is replaced by a rename, so a failed copy left the sandbox's own disk as it was: it
         * comes back as it was. */
        if (!sb->deleted && op->was_up && sandbox_start(d, sb, &err) < 0)
            log_warning("sandbox %s: start it again after a failed restore: %s", sb->id, err.msg);
        op_answer(op, 0, NULL, &op->err);
        return op_free(op);
    }
    log_info("sandbox %s: restored checkpoint %s", sb->id, op->name);
    if (!sb->deleted && op->was_up && sandbox_start(d, sb, &err) < 0) {
        op_answer(op, 0, NULL, &err);
        return op_free(op);
    }
    sandbox_touch(sb);
    op_answer(op, 200, sandbox_to_json(sb), NULL);
    op_free(op);
}

/* --- fork ----------------------------------------------------------------------------------------- */

int checkpoint_fork(struct daemon *d, struct sandbox *sb, unsigned count, checkpoint_cb cb, void *userdata,
                    struct checkpoint_op **ret_op, sbx_error *err)
{
    int r = check_can_copy(sb, err);
    if (r < 0)
        return r;
    if (count < 1 || count > FORK_COUNT_MAX)
        return sbx_error_set(err, -EINVAL, "`count` must be 1..%d", FORK_COUNT_MAX);
    if (d->n_sandboxes + count > d->max_sandboxes)
        return sbx_error_setk(err, -EAGAIN, "resource_exhausted", 429,
                              "sandbox limit (%zu) reached: %zu exist, %u more asked for", d->max_sandboxes,
                              d->n_sandboxes, count);
    struct checkpoint_op *op = op_new(d, OP_FORK, sb, cb, userdata);
    char id[SBX_ID_MAX + 1];
    id_generate(id, sizeof(id), "fork_");
    op->dst = xasprintf("%s/%s.img", d->ckpt->dir, id); /* removed once the forks have copied it */
    op->count = count;
    op->made = xcalloc(count, sizeof(*op->made));
    if ((r = op_start(d, op, err)) < 0) {
        op_free(op);
        return r;
    }
    *ret_op = op;
    return 0;
}

static void finish_fork(struct checkpoint_op *op)
{
    struct daemon *d = op->d;
    unlink(op->dst);
    bool failed = op->fork_err.code < 0 || !op->cb;
    if (failed) {
        /* All or nothing: the ones made go (nobody would learn their ids otherwise). */
        for (size_t i = 0; i < op->n_made; i++) {
            sbx_error ignored = {0};
            if (!op->made[i]->deleted)
                (void)sandbox_delete(d, op->made[i], "its fork failed", &ignored);
        }
        if (op->fork_err.code < 0)
            op_answer(op, 0, NULL, &op->fork_err);
        return op_free(op);
    }
    json_t *list = json_array();
    for (size_t i = 0; i < op->n_made; i++)
        json_array_append_new(list, sandbox_to_json(op->made[i]));
    log_info("sandbox %s: forked into %zu sandboxes", op->sb->id, op->n_made);
    op_answer(op, 201, json_pack("{s:o}", "sandboxes", list), NULL);
    op_free(op);
}

static void fork_created(struct sandbox *sb, const sbx_error *err, void *userdata)
{
    struct checkpoint_op *op = userdata;
    if (sb)
        op->made[op->n_made++] = sandbox_ref(sb);
    else if (op->fork_err.code == 0)
        op->fork_err = *err;
    if (--op->pending == 0)
        finish_fork(op);
}

static void start_forks(struct checkpoint_op *op)
{
    struct daemon *d = op->d;
    struct sandbox *src = op->sb;
    src->busy = NULL;
    if (op->r < 0) {
        unlink(op->dst);
        op_answer(op, 0, NULL, &op->err);
        return op_free(op);
    }
    /* Forks keep the source's network policy (each gets its own address). */
    json_auto_t *network = egress_network_to_json(src->net);
    json_object_del(network, "address");
    struct sandbox_create_opts opts = {
        .snapshot = src->snapshot,
        .network = network,
        .env = src->env,
        .metadata = src->metadata,
        .res = src->res,
        .life = src->life,
        .owner = src->owner,
        .disk_source = op->dst,
        .disk_source_uid_base = src->uid_base,
        .volumes = src->volumes, /* volumes are shared: the forks mount the same ones */
        /* One fork: the copy becomes its disk as it is (a rename), saving the second copy. */
        .disk_source_take = op->count == 1,
    };
    op->pending = 1; /* held while the creates are started, so that none can finish the fork early */
    for (unsigned i = 0; i < op->count && op->fork_err.code == 0; i++) {
        struct sandbox *sb = NULL;
        struct create_op *cop = NULL;
        sbx_error err = {0};
        int r = sandbox_create(d, &opts, fork_created, op, &sb, &cop, &err);
        if (r < 0)
            op->fork_err = err;
        else if (r > 0)
            op->made[op->n_made++] = sb; /* not from the warm pool with a disk source; kept for safety */
        else
            op->pending++;
    }
    if (--op->pending == 0)
        finish_fork(op);
}

/* --- start and stop ------------------------------------------------------------------------------- */

struct load_ctx {
    struct daemon *d;
    size_t dropped;
};

static int load_row(const struct store_checkpoint *row, void *userdata)
{
    struct load_ctx *lc = userdata;
    struct daemon *d = lc->d;
    struct sandbox *sb = sandbox_lookup(d, row->sandbox_id, NULL);
    _cleanup_free_ char *img = checkpoint_image_path(d, row->id);
    if (!sb || access(img, F_OK) < 0) {
        /* Its sandbox was deleted while sbxd was down (or its image is gone): nothing can use it. */
        sbx_error err = {0};
        (void)store_checkpoint_delete(d->store, row->id, &err);
        (void)unlink(img);
        lc->dropped++;
        sandbox_unref(sb);
        return 0;
    }
    sandbox_unref(sb);
    struct checkpoint *ck = xcalloc(1, sizeof(*ck));
    ck->id = xstrdup(row->id);
    ck->sandbox_id = xstrdup(row->sandbox_id);
    ck->name = xstrdup(row->name);
    ck->owner = row->owner ? xstrdup(row->owner) : NULL;
    ck->snapshot = xstrdup(row->snapshot);
    ck->disk_mb = row->disk_mb;
    ck->uid_base = (uid_t)row->uid_base;
    ck->size_bytes = row->size_bytes;
    ck->created_ms = row->created_ms;
    list_append(d->ckpt, ck);
    return 0;
}

/* Image files no checkpoint names: a fork's or a checkpoint's interrupted by a crash. */
static void remove_strays(struct daemon *d)
{
    DIR *dir = opendir(d->ckpt->dir);
    if (!dir)
        return;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (de->d_name[0] == '.')
            continue;
        bool known = false;
        for (struct checkpoint *ck = d->ckpt->list; ck && !known; ck = ck->next) {
            size_t n = strlen(ck->id);
            known = strncmp(de->d_name, ck->id, n) == 0 && strcmp(de->d_name + n, ".img") == 0;
        }
        if (!known && unlinkat(dirfd(dir), de->d_name, 0) == 0)
            log_info("removed stray checkpoint file %s/%s", d->ckpt->dir, de->d_name);
    }
    closedir(dir);
}

int checkpoint_init(struct daemon *d, sbx_error *err)
{
    struct checkpoint_state *cs = xcalloc(1, sizeof(*cs));
    cs->dir = xasprintf("%s/checkpoints", d->data_dir);
    d->ckpt = cs;
    if (mkdir(cs->dir, 0700) < 0 && errno != EEXIST)
        return sbx_error_set(err, -errno, "mkdir `%s`: %m", cs->dir);
    struct load_ctx lc = {.d = d};
    int r = store_checkpoint_foreach(d->store, load_row, &lc, err);
    if (r < 0)
        return r;
    if (lc.dropped)
        log_info("dropped %zu checkpoints of sandboxes that are gone", lc.dropped);
    remove_strays(d);
    return 0;
}

void checkpoint_done(struct daemon *d)
{
    struct checkpoint_state *cs = d->ckpt;
    if (!cs)
        return;
    while (cs->ops) {
        struct checkpoint_op *op = cs->ops;
        op->cb = NULL;
        /* Every op still listed is a copy in progress, or a fork waiting for its creates. */
        if (op->thread_running)
            copy_joined(op); /* waits for the copy: it thaws what it froze */
        /* A checkpoint not recorded, or a fork's image. A restore's dst is the sandbox's own disk, done
         * or untouched (renamed into place or not at all); the sandbox stays stopped. */
        if (op->kind != OP_RESTORE && op->kind != OP_CAPTURE)
            unlink(op->dst); /* a capture's staging dir is collected at the next start */
        op_free(op);
    }
    while (cs->list) {
        struct checkpoint *ck = cs->list;
        cs->list = ck->next;
        checkpoint_free(ck);
    }
    free(cs->dir);
    free(cs);
    d->ckpt = NULL;
}
