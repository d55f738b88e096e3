#include "daemon/sandbox.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "daemon/checkpoint.h"
#include "daemon/egress.h"
#include "daemon/daemon.h"
#include "daemon/lifecycle.h"
#include "daemon/metrics.h"
#include "daemon/snapshot.h"
#include "daemon/volume.h"
#include "daemon/warm.h"
#include "files/files.h"
#include "loop/loop.h"
#include "runtime/runtime.h"
#include "shimclient/shim_client.h"
#include "store/store.h"

#define SHIM_READY_TIMEOUT_MS 10000
#define SHIM_CALL_TIMEOUT_MS 10000

static const char *const state_names[_SANDBOX_STATE_MAX] = {
    [SANDBOX_CREATING] = "creating", [SANDBOX_RUNNING] = "running", [SANDBOX_PAUSED] = "paused",
    [SANDBOX_STOPPED] = "stopped",   [SANDBOX_FAILED] = "failed",
};

const char *sandbox_state_to_string(enum sandbox_state s)
{
    return s >= 0 && s < _SANDBOX_STATE_MAX ? state_names[s] : "failed";
}

static enum sandbox_state sandbox_state_from_string(const char *s)
{
    for (int i = 0; i < _SANDBOX_STATE_MAX; i++)
        if (s && strcmp(s, state_names[i]) == 0)
            return (enum sandbox_state)i;
    return SANDBOX_FAILED;
}

static void set_reason(struct sandbox *sb, const char *reason)
{
    free(sb->reason);
    sb->reason = reason ? xstrdup(reason) : NULL;
}

struct sandbox *sandbox_ref(struct sandbox *sb)
{
    sb->refs++;
    return sb;
}

static void shim_unwatch(struct sandbox *sb)
{
    if (sb->shim_watch.active)
        loop_io_stop(sb->d->loop, &sb->shim_watch);
    if (sb->shim_pidfd >= 0)
        close(sb->shim_pidfd);
    sb->shim_pidfd = -1;
}

static void sandbox_free(struct sandbox *sb)
{
    shim_unwatch(sb);
    free(sb->name);
    free(sb->snapshot);
    json_decref(sb->env);
    json_decref(sb->metadata);
    json_decref(sb->volumes);
    free(sb->state_dir);
    free(sb->reason);
    free(sb->owner);
    free(sb->disk_source);
    egress_net_free(sb->net);
    if (sb->rootfs_fd >= 0)
        close(sb->rootfs_fd);
    shim_conn_close(sb->ctl);
    free(sb);
}

struct sandbox *sandbox_unref(struct sandbox *sb)
{
    if (!sb)
        return NULL;
    assert(sb->refs > 0);
    if (--sb->refs == 0)
        sandbox_free(sb);
    return NULL;
}

static void registry_add(struct daemon *d, struct sandbox *sb)
{
    sb->next = d->sandboxes;
    sb->prev = NULL;
    if (d->sandboxes)
        d->sandboxes->prev = sb;
    d->sandboxes = sb;
    d->n_sandboxes++;
    sb->refs++;
}

static void registry_remove(struct daemon *d, struct sandbox *sb)
{
    if (sb->prev)
        sb->prev->next = sb->next;
    else
        d->sandboxes = sb->next;
    if (sb->next)
        sb->next->prev = sb->prev;
    sb->prev = sb->next = NULL;
    d->n_sandboxes--;
    sb->deleted = true;
    sandbox_unref(sb);
}

static bool same_owner(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

bool sandbox_visible_to(const struct sandbox *sb, const char *owner)
{
    return !owner || same_owner(sb->owner, owner);
}

struct sandbox *sandbox_lookup(struct daemon *d, const char *id_or_name, const char *owner)
{
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next) {
        if (strcmp(sb->id, id_or_name) == 0)
            return sandbox_visible_to(sb, owner) ? sandbox_ref(sb) : NULL;
        if (sb->name && same_owner(sb->owner, owner) && strcmp(sb->name, id_or_name) == 0)
            return sandbox_ref(sb);
    }
    return NULL;
}

/* Identity, configuration and resources: the part of the sandbox object that never changes by itself. */
static json_t *sandbox_base_json(const struct sandbox *sb)
{
    char created[40];
    format_time_ms(created, sizeof(created), sb->created_ms);
    return json_pack("{s:s, s:s?, s:s, s:s, s:s, s:O, s:O, s:O, s:{s:f, s:I, s:I, s:I}}", "id", sb->id,
                     "name", sb->name, "snapshot", sb->snapshot, "state", sandbox_state_to_string(sb->state),
                     "created_at", created, "env", sb->env, "metadata", sb->metadata, "volumes", sb->volumes,
                     "resources", "cpus", sb->res.cpus, "memory_mb", (json_int_t)sb->res.memory_mb, "pids",
                     (json_int_t)sb->res.pids, "disk_mb", (json_int_t)sb->res.disk_mb);
}

/* The lifecycle part of the sandbox object: settings, timestamps, and why it is in its state. */
static void lifecycle_to_json(const struct sandbox *sb, json_t *o)
{
    char buf[40];
    json_object_set_new(o, "idle_ttl_seconds", json_integer(sb->life.idle_ttl_s));
    json_object_set_new(o, "delete_after_stop_seconds", json_integer(sb->life.delete_after_stop_s));
    json_object_set_new(o, "timeout_seconds", json_integer(sb->life.timeout_s));
    format_time_ms(buf, sizeof(buf), sb->last_active_ms);
    json_object_set_new(o, "last_active_at", json_string(buf));
    const struct {
        const char *key;
        int64_t ms;
    } times[] = {{"stopped_at", sb->stopped_ms}, {"expires_at", sb->expires_ms}};
    for (size_t i = 0; i < ELEMENTSOF(times); i++) {
        if (times[i].ms)
            format_time_ms(buf, sizeof(buf), times[i].ms);
        json_object_set_new(o, times[i].key, times[i].ms ? json_string(buf) : json_null());
    }
    json_object_set_new(o, "state_reason", sb->reason ? json_string(sb->reason) : json_null());
}

json_t *sandbox_to_json(const struct sandbox *sb)
{
    json_t *o = sandbox_base_json(sb);
    if (o) {
        lifecycle_to_json(sb, o);
        json_object_set_new(o, "network", egress_network_to_json(sb->net));
    }
    return o;
}

static json_t *resources_to_json(const struct sandbox_resources *r)
{
    return json_pack("{s:f, s:I, s:I, s:I}", "cpus", r->cpus, "memory_mb", (json_int_t)r->memory_mb, "pids",
                     (json_int_t)r->pids, "disk_mb", (json_int_t)r->disk_mb);
}

/* The shim's config.json: everything runtime_create needs. */
static int write_shim_config(struct daemon *d, struct sandbox *sb, sbx_error *err)
{
    _cleanup_free_ char *disk_templates = xasprintf("%s/disk-templates", d->data_dir);
    /* null for `host`; an image snapshot's layers (top first) under the sandbox's own /etc layer */
    json_t *lowers = NULL;
    int lr =
        snapshot_sandbox_lowers(d, sb->snapshot, sb->state_dir, sb->name ? sb->name : sb->id, &lowers, err);
    if (lr < 0)
        return lr;
    json_t *cfg = json_pack(
        "{s:s, s:I, s:s, s:I, s:f, s:I, s:I, s:s, s:s, s:s, s:o, s:s?, s:I, s:o}", "id", sb->id, "uid_base",
        (json_int_t)sb->uid_base, "hostname", sb->name ? sb->name : sb->id, "memory_bytes",
        (json_int_t)(sb->res.memory_mb << 20), "cpus", sb->res.cpus, "pids_max", (json_int_t)sb->res.pids,
        "disk_bytes", (json_int_t)(sb->res.disk_mb << 20), "disk_template_dir", disk_templates, "init_path",
        d->init_path, "seccomp_path", d->seccomp_path, "lower_dirs", lowers, "disk_source", sb->disk_source,
        "disk_source_uid_base", (json_int_t)sb->disk_source_uid_base, "volumes",
        volume_shim_mounts(d, sb->volumes));
    if (!cfg)
        return sbx_error_set(err, -ENOMEM, "build shim config");
    if (snapshot_is_host_based(d, sb->snapshot))
        json_object_set_new(cfg, "host_base", json_true());
    _cleanup_free_ char *path = xasprintf("%s/config.json", sb->state_dir);
    errno = 0;
    int r = json_dump_file(cfg, path, JSON_COMPACT);
    int e = errno; /* from the failed fopen/fwrite/fclose: ENOSPC on a full data dir is a 507, not a 500 */
    json_decref(cfg);
    if (r < 0)
        return sbx_error_set(err, e > 0 ? -e : -EIO, "write `%s`: %s", path, strerror(e > 0 ? e : EIO));
    return 0;
}

static int open_rootfs(struct sandbox *sb)
{
    _cleanup_free_ char *path = xasprintf("%s/rootfs", sb->state_dir);
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (sb->rootfs_fd >= 0)
        close(sb->rootfs_fd);
    sb->rootfs_fd = fd;
    return 0;
}

static struct sandbox *sandbox_new(struct daemon *d, const char *id)
{
    struct sandbox *sb = xcalloc(1, sizeof(*sb));
    snprintf(sb->id, sizeof(sb->id), "%s", id);
    sb->rootfs_fd = -1;
    sb->shim_pidfd = -1;
    sb->d = d;
    sb->state_dir = xasprintf("%s/%s", d->sandboxes_dir, id);
    sb->refs = 1;
    return sb;
}

/* A shim that does not answer on its socket (the socket file was removed, or it hangs) would live on
 * after its sandbox: kill it, after checking by its command line that the pid is still that shim. */
static void kill_lost_shim(const struct sandbox *sb)
{
    if (sb->shim_pid <= 1)
        return;
    char path[64], cmdline[4096];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)sb->shim_pid);
    _cleanup_close_ int pidfd = pidfd_open(sb->shim_pid, 0); /* before the check: the pid stays its */
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || pidfd < 0)
        return;
    ssize_t n = read(fd, cmdline, sizeof(cmdline) - 1);
    if (n <= 0)
        return;
    cmdline[n] = '\0';
    /* argv is "sbx-shim\0<state_dir>\0" */
    size_t first = strlen(cmdline);
    if ((size_t)n > first + 1 && strcmp(cmdline + first + 1, sb->state_dir) == 0) {
        log_warning("sandbox %s: its shim %d does not answer, killing it", sb->id, (int)sb->shim_pid);
        (void)pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        /* Wait (bounded) until it is gone: killed in the middle of a mount, it finishes that mount first,
         * and the cleanup that follows must come after it. */
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        while (poll(&p, 1, 2000) < 0 && errno == EINTR)
            ;
    }
}

/* Ends the sandbox's processes and mounts (its shim destroys it and exits); the files stay. */
static void shutdown_shim(struct sandbox *sb)
{
    shim_unwatch(sb); /* its exit is expected from here on */
    egress_detach(sb->d, sb);
    if (sb->rootfs_fd >= 0) {
        close(sb->rootfs_fd);
        sb->rootfs_fd = -1;
    }
    shim_conn_close(sb->ctl);
    sb->ctl = NULL;
    int r = shim_shutdown(sb->state_dir, SHIM_CALL_TIMEOUT_MS);
    if (r < 0) {
        log_debug_errno(r, "shutdown shim of %s: %m", sb->id);
        kill_lost_shim(sb);
    }
    /* Whatever the shim did or did not do, make sure nothing is left. */
    r = runtime_cleanup(sb->id, sb->state_dir);
    if (r < 0)
        log_warning_errno(r, "clean up sandbox %s: %m, ignoring", sb->id);
    sb->shim_pid = sb->init_pid = 0;
}

static void remove_files(struct daemon *d, struct sandbox *sb)
{
    shutdown_shim(sb);
    int r = rm_rf(sb->state_dir);
    if (r < 0)
        log_warning_errno(r, "remove `%s`: %m, ignoring", sb->state_dir);
    (void)d;
}

/* Writes the row of sb as it is now (insert or update). */
static int store_row(struct daemon *d, const struct sandbox *sb, const char *state, bool insert,
                     sbx_error *err)
{
    _cleanup_free_ char *env_json = json_dumps(sb->env, JSON_COMPACT);
    _cleanup_free_ char *meta_json = json_dumps(sb->metadata, JSON_COMPACT);
    _cleanup_free_ char *vol_json = json_dumps(sb->volumes, JSON_COMPACT);
    json_t *netj = sb->net ? egress_network_to_store(sb->net) : NULL;
    _cleanup_free_ char *net_json = netj ? json_dumps(netj, JSON_COMPACT) : NULL;
    json_decref(netj);
    json_t *resj = resources_to_json(&sb->res);
    _cleanup_free_ char *res_json = json_dumps(resj, JSON_COMPACT);
    json_decref(resj);
    struct store_sandbox row = {
        .id = (char *)sb->id,
        .name = sb->name,
        .snapshot = sb->snapshot,
        .state = (char *)state,
        .created_ms = sb->created_ms,
        .env_json = env_json,
        .metadata_json = meta_json,
        .volumes_json = vol_json,
        .network_json = net_json,
        .resources_json = res_json,
        .uid_slot = sb->uid_slot,
        .shim_pid = sb->shim_pid,
        .init_pid = sb->init_pid,
        .owner = sb->owner,
        .reason = sb->reason,
        .idle_ttl_s = sb->life.idle_ttl_s,
        .delete_after_stop_s = sb->life.delete_after_stop_s,
        .timeout_s = sb->life.timeout_s,
        .expires_ms = sb->expires_ms,
        .stopped_ms = sb->stopped_ms,
    };
    return insert ? store_sandbox_insert(d->store, &row, err) : store_sandbox_update(d->store, &row, err);
}

/* Lifecycle settings, owner and clocks of a sandbox handed to its creator now. */
static void set_lifecycle_at_birth(struct sandbox *sb, const struct sandbox_create_opts *opts)
{
    sb->life = opts->life;
    free(sb->owner);
    sb->owner = opts->owner ? xstrdup(opts->owner) : NULL;
    sb->created_ms = sb->last_active_ms = now_ms();
    sb->expires_ms = sb->life.timeout_s ? sb->created_ms + sb->life.timeout_s * 1000 : 0;
    sb->stopped_ms = 0;
}

int sandbox_prepare(struct daemon *d, const struct sandbox_create_opts *opts, const char *state,
                    struct sandbox **ret, sbx_error *err)
{
    char id[SBX_ID_MAX + 1];
    id_generate(id, sizeof(id), "sbx_");
    struct sandbox *sb = sandbox_new(d, id);
    sb->name = opts->name ? xstrdup(opts->name) : NULL;
    sb->snapshot = xstrdup(opts->snapshot ? opts->snapshot : "host");
    sb->env = opts->env ? json_deep_copy(opts->env) : json_object();
    sb->metadata = opts->metadata ? json_deep_copy(opts->metadata) : json_object();
    sb->volumes = opts->volumes ? json_deep_copy(opts->volumes) : json_array();
    sb->res = opts->res;
    int r = egress_parse_network(opts->network, &sb->net, err);
    if (r < 0) {
        sandbox_unref(sb);
        return r;
    }
    sb->disk_source = opts->disk_source ? xstrdup(opts->disk_source) : NULL;
    sb->disk_source_uid_base = opts->disk_source_uid_base;
    sb->state = strcmp(state, "creating") == 0 ? SANDBOX_CREATING : SANDBOX_RUNNING;
    set_lifecycle_at_birth(sb, opts);

    r = store_sandbox_free_uid_slot(d->store, &sb->uid_slot, err);
    if (r < 0)
        goto out_free;
    sb->uid_base = SANDBOX_UID_BASE + (uid_t)sb->uid_slot * RUNTIME_UID_RANGE;
    if (mkdir(sb->state_dir, 0700) < 0) {
        r = sbx_error_set(err, -errno, "create `%s`: %m", sb->state_dir);
        goto out_free;
    }
    if (opts->disk_source_take && opts->disk_source) {
        _cleanup_free_ char *img = xasprintf("%s/disk.img", sb->state_dir);
        if (rename(opts->disk_source, img) < 0) {
            r = sbx_error_set(err, -errno, "move `%s` to `%s`: %m", opts->disk_source, img);
            goto out_rmdir;
        }
    }
    if ((r = write_shim_config(d, sb, err)) < 0)
        goto out_rmdir;
    /* The row goes in first so a crash between here and the shim's start leaves a record that recovery
     * cleans up, never an orphan shim that nothing knows about. */
    if ((r = store_row(d, sb, state, true, err)) < 0)
        goto out_rmdir;
    *ret = sb;
    return 0;

out_rmdir:
    rm_rf(sb->state_dir);
out_free:
    sandbox_unref(sb);
    return r;
}

void sandbox_discard(struct daemon *d, struct sandbox *sb)
{
    remove_files(d, sb);
    store_sandbox_delete(d->store, sb->id, NULL);
    sandbox_unref(sb);
}

/* Moves sb to state, with the reason it is there (NULL for running and paused), persists the change and
 * lets the lifecycle timer know. Entering stopped or failed starts the delete_after_stop clock. */
static void enter_state(struct daemon *d, struct sandbox *sb, enum sandbox_state state, const char *reason)
{
    bool down = state == SANDBOX_STOPPED || state == SANDBOX_FAILED;
    bool was_down = sb->state == SANDBOX_STOPPED || sb->state == SANDBOX_FAILED;
    if (down && !was_down)
        sb->stopped_ms = now_ms();
    else if (!down)
        sb->stopped_ms = 0;
    if (state == SANDBOX_RUNNING && sb->state != SANDBOX_PAUSED)
        sb->last_active_ms = now_ms(); /* a (re)started sandbox gets a full idle period */
    sb->state = state;
    set_reason(sb, reason);
    sbx_error err = {0};
    /* A warm one stays "warm" in the store: the pool discards it. */
    if (!sb->warm && store_row(d, sb, sandbox_state_to_string(state), false, &err) < 0)
        log_warning("sandbox %s: record state %s: %s", sb->id, sandbox_state_to_string(state), err.msg);
    lifecycle_reschedule(d);
}

/* The shim exited without being asked: its sandbox's processes died with it (init's control socket
 * closed). Clean up what is left and say so in the sandbox's state. */
static void on_shim_exit(struct loop_io *io, uint32_t revents)
{
    struct sandbox *sb = container_of(io, struct sandbox, shim_watch);
    struct daemon *d = sb->d;
    char reason[128];
    snprintf(reason, sizeof(reason), "its shim (pid %d) exited unexpectedly", (int)sb->shim_pid);
    log_warning("sandbox %s: %s; marking it failed", sb->id, reason);
    shutdown_shim(sb); /* its socket has no listener: only the cleanup part does anything */
    enter_state(d, sb, SANDBOX_FAILED, reason);
}

static void shim_watch(struct sandbox *sb)
{
    shim_unwatch(sb);
    int fd = pidfd_open(sb->shim_pid, 0);
    if (fd < 0) {
        log_debug_errno(-errno, "sandbox %s: pidfd of shim %d: %m (not watched)", sb->id, (int)sb->shim_pid);
        return;
    }
    sb->shim_pidfd = fd;
    if (loop_io_start(sb->d->loop, &sb->shim_watch, fd, EPOLLIN, on_shim_exit) < 0)
        shim_unwatch(sb);
}

int sandbox_started(struct daemon *d, struct sandbox *sb, sbx_error *err)
{
    shim_watch(sb);
    int r = open_rootfs(sb);
    if (r < 0)
        return sbx_error_set(err, r, "open rootfs of `%s`: %s", sb->id, strerror(-r));
    /* The control connection now rather than on the first command: that one is on a user's clock. */
    sbx_error ignored = {0};
    if (!sb->ctl && shim_conn_open(sb->state_dir, &sb->ctl, &ignored) < 0)
        log_debug("sandbox %s: control connection: %s (retried on first use)", sb->id, ignored.msg);
    return sb->net ? egress_attach(d, sb, err) : 0;
}

/* A pre-created sandbox becomes the caller's: it takes the request's name, env and metadata. */
static int claim_warm(struct daemon *d, struct sandbox *sb, const struct sandbox_create_opts *opts,
                      sbx_error *err)
{
    sb->warm = false;
    free(sb->name);
    sb->name = opts->name ? xstrdup(opts->name) : NULL;
    json_decref(sb->env);
    json_decref(sb->metadata);
    sb->env = opts->env ? json_deep_copy(opts->env) : json_object();
    sb->metadata = opts->metadata ? json_deep_copy(opts->metadata) : json_object();
    set_lifecycle_at_birth(sb, opts);
    /* The pool's sandboxes are made with network mode none; egress is added to one that is up. */
    int r = egress_parse_network(opts->network, &sb->net, err);
    if (r < 0 || (sb->net && (r = egress_attach(d, sb, err)) < 0))
        return r;
    return store_row(d, sb, "running", false, err);
}

/* A create whose shim is starting: sbxd's loop goes on meanwhile (a sandbox takes ~10 ms to build). */
struct create_op {
    struct create_op *prev, *next; /* d->creating */
    struct daemon *d;
    struct sandbox *sb;
    struct shim_spawn spawn;
    struct loop_io io;
    struct loop_timer timeout;
    sandbox_created_cb cb; /* NULL once cancelled */
    void *userdata;
};

static void create_op_unlink(struct create_op *op)
{
    struct daemon *d = op->d;
    if (op->prev)
        op->prev->next = op->next;
    else
        d->creating = op->next;
    if (op->next)
        op->next->prev = op->prev;
    d->n_creating--;
    if (op->io.active)
        loop_io_stop(d->loop, &op->io);
    shim_spawn_close(&op->spawn); /* after the watcher is gone (shim_client.h) */
    if (op->timeout.active)
        loop_timer_stop(d->loop, &op->timeout);
}

/* Ends the op: on success the sandbox (in the registry as `creating` since the request) becomes running
 * and goes to the requester; when nobody waits any more (the client left, or it was deleted meanwhile),
 * or on failure, everything of it is undone and it leaves the registry. */
static void create_op_finish(struct create_op *op, int r, sbx_error *err)
{
    struct daemon *d = op->d;
    struct sandbox *sb = op->sb; /* the op's reference */
    create_op_unlink(op);
    bool wanted = op->cb && !sb->deleted;
    if (r >= 0 && wanted && (r = sandbox_started(d, sb, err)) >= 0) {
        enter_state(d, sb, SANDBOX_RUNNING, NULL);
        log_info("sandbox %s created (shim %d, init %d)", sb->id, (int)sb->shim_pid, (int)sb->init_pid);
        metrics_count(METRICS_SANDBOXES_CREATED);
        op->cb(sb, NULL, op->userdata);
        sandbox_unref(sb);
    } else {
        if (r >= 0)
            log_info("sandbox %s: %s, discarding it", sb->id,
                     sb->deleted ? "deleted while being created" : "its creator went away");
        else
            sbx_error_wrap(err, "start sandbox");
        if (!sb->deleted)
            registry_remove(d, sb);
        /* The shim may have died half-way through creating the sandbox: sandbox_discard undoes it. */
        sandbox_discard(d, sb);
        if (op->cb)
            op->cb(NULL, err, op->userdata);
    }
    free(op);
}

/* A delete of a sandbox still being created: its shim is killed and the requester told. */
static void create_op_abort_for(struct daemon *d, struct sandbox *sb)
{
    for (struct create_op *op = d->creating; op; op = op->next) {
        if (op->sb != sb)
            continue;
        shim_spawn_abort(&op->spawn, sb->state_dir);
        sbx_error err = {0};
        sbx_error_setk(&err, -ECANCELED, "conflict", 409, "sandbox `%s` was deleted while being created",
                       sb->id);
        create_op_finish(op, -ECANCELED, &err);
        return;
    }
}

static void create_on_ready_pipe(struct loop_io *io, uint32_t revents)
{
    struct create_op *op = container_of(io, struct create_op, io);
    sbx_error err = {0};
    int r = shim_spawn_poll(&op->spawn, op->sb->state_dir, &op->sb->shim_pid, &op->sb->init_pid, &err);
    if (r != 0)
        create_op_finish(op, r, &err);
}

static void create_on_timeout(struct loop_timer *t)
{
    struct create_op *op = container_of(t, struct create_op, timeout);
    shim_spawn_abort(&op->spawn, op->sb->state_dir);
    sbx_error err = {0};
    sbx_error_setk(&err, -ETIMEDOUT, "timeout", 0, "sbx-shim did not become ready within %d ms",
                   SHIM_READY_TIMEOUT_MS);
    create_op_finish(op, -ETIMEDOUT, &err);
}

void sandbox_create_cancel(struct create_op *op)
{
    op->cb = NULL;
}

struct sandbox *sandbox_create_op_sandbox(struct create_op *op)
{
    return op->sb;
}

void sandbox_create_abort_all(struct daemon *d)
{
    while (d->creating) {
        struct create_op *op = d->creating;
        shim_spawn_abort(&op->spawn, op->sb->state_dir);
        op->cb = NULL;
        sbx_error err = {0};
        sbx_error_set(&err, -ECANCELED, "sbxd is shutting down");
        create_op_finish(op, -ECANCELED, &err);
    }
}

int sandbox_create(struct daemon *d, const struct sandbox_create_opts *opts, sandbox_created_cb cb,
                   void *userdata, struct sandbox **ret, struct create_op **ret_op, sbx_error *err)
{
    /* An image snapshot: the sandbox records its id, and its env starts from the image's Env. */
    struct snapshot *snap = NULL;
    int sr = snapshot_for_create(d, opts->snapshot, opts->owner, &snap, err);
    if (sr < 0)
        return sr;
    struct sandbox_create_opts image_opts;
    json_auto_t *image_env = NULL;
    if (snap) {
        image_env = snapshot_sandbox_env(snap, opts->env);
        image_opts = *opts;
        image_opts.snapshot = snap->id;
        image_opts.env = image_env;
        opts = &image_opts;
    }
    if (opts->name) {
        if (!id_is_valid(opts->name))
            return sbx_error_set(err, -EINVAL, "name must match [A-Za-z0-9_.-]{1,64}");
        struct sandbox *other = sandbox_lookup(d, opts->name, opts->owner);
        if (other) {
            sandbox_unref(other);
            return sbx_error_setk(err, -EEXIST, "conflict", 409, "a sandbox named `%s` exists", opts->name);
        }
    }
    if (d->n_sandboxes >= d->max_sandboxes) /* creating ones included */
        return sbx_error_setk(err, -EAGAIN, "resource_exhausted", 429, "sandbox limit (%zu) reached",
                              d->max_sandboxes);

    struct sandbox *sb = warm_take(d, opts);
    if (sb) {
        if (claim_warm(d, sb, opts, err) < 0) {
            sandbox_discard(d, sb);
            return err->code;
        }
        registry_add(d, sb);
        lifecycle_reschedule(d); /* its timers start now */
        log_info("sandbox %s created from the warm pool (shim %d, init %d)", sb->id, (int)sb->shim_pid,
                 (int)sb->init_pid);
        metrics_count(METRICS_SANDBOXES_CREATED);
        *ret = sb;
        return 1;
    }

    /* The name is taken in the store at once (its UNIQUE constraint): a concurrent create of the same
     * name fails here rather than after building a sandbox. */
    int r = sandbox_prepare(d, opts, "creating", &sb, err);
    if (r < 0)
        return r;
    struct create_op *op = xcalloc(1, sizeof(*op));
    *op = (struct create_op){.d = d, .sb = sb, .cb = cb, .userdata = userdata};
    if ((r = shim_spawn_start(d->shim_path, sb->state_dir, &op->spawn, err)) < 0 ||
        (r = loop_io_start(d->loop, &op->io, op->spawn.rd, EPOLLIN, create_on_ready_pipe)) < 0) {
        if (op->spawn.rd >= 0) {
            shim_spawn_abort(&op->spawn, sb->state_dir);
            shim_spawn_close(&op->spawn);
            sbx_error_set(err, r, "watch the shim's ready pipe: %s", strerror(-r));
        }
        free(op);
        sandbox_discard(d, sb);
        return r;
    }
    loop_timer_start(d->loop, &op->timeout, SHIM_READY_TIMEOUT_MS * 1000ULL, create_on_timeout);
    op->next = d->creating;
    if (d->creating)
        d->creating->prev = op;
    d->creating = op;
    d->n_creating++;
    registry_add(d, sb); /* visible as `creating` meanwhile; the op keeps prepare's reference */
    lifecycle_reschedule(d);
    *ret_op = op;
    return 0;
}

int sandbox_need_up(const struct sandbox *sb, sbx_error *err)
{
    if (sb->state == SANDBOX_RUNNING || sb->state == SANDBOX_PAUSED)
        return 0;
    return sbx_error_setk(err, -EBUSY, "not_running", 409, "sandbox `%s` is %s", sb->id,
                          sandbox_state_to_string(sb->state));
}

int sandbox_shim_call(struct sandbox *sb, json_t *req, json_t **ret_resp, sbx_error *err)
{
    /* A paused sandbox's shim answers (it is outside the frozen cgroup); callers that need processes to
     * run resume it first (api_sandbox_awake). */
    int r = sandbox_need_up(sb, err);
    if (r < 0)
        return r;
    return sandbox_shim_call_unchecked(sb, req, ret_resp, err);
}

int sandbox_shim_call_unchecked(struct sandbox *sb, json_t *req, json_t **ret_resp, sbx_error *err)
{
    int r;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!sb->ctl && shim_conn_open(sb->state_dir, &sb->ctl, err) < 0)
            return sbx_error_wrap(err, "sandbox `%s`", sb->id);
        r = shim_conn_call(sb->ctl, req, SHIM_CALL_TIMEOUT_MS, ret_resp, err);
        if (r >= 0)
            return r;
        /* An error answer from the shim is final; a broken connection is retried once on a new one. */
        if (!shim_conn_broken(sb->ctl))
            return r;
        shim_conn_close(sb->ctl);
        sb->ctl = NULL;
    }
    return sbx_error_set(err, -EPIPE, "sandbox `%s`: its shim does not answer", sb->id);
}

static int set_frozen(struct daemon *d, struct sandbox *sb, bool frozen, sbx_error *err)
{
    enum sandbox_state want = frozen ? SANDBOX_PAUSED : SANDBOX_RUNNING;
    if (sb->state == want)
        return 0;
    int r = sandbox_need_up(sb, err);
    if (r < 0)
        return r;
    usec_t t0 = now_usec(CLOCK_MONOTONIC);
    if ((r = runtime_freeze(sb->id, frozen, err)) < 0)
        return sbx_error_wrap(err, "sandbox `%s`", sb->id);
    /* Only the state column: pause and resume are on users' clocks, a full row write is not needed. */
    sb->state = want;
    store_sandbox_set_state(d->store, sb->id, sandbox_state_to_string(want), sb->shim_pid, sb->init_pid,
                            NULL);
    log_info("sandbox %s %s in %llu us", sb->id, frozen ? "paused" : "resumed",
             (unsigned long long)(now_usec(CLOCK_MONOTONIC) - t0));
    return 0;
}

int sandbox_pause(struct daemon *d, struct sandbox *sb, sbx_error *err)
{
    return set_frozen(d, sb, true, err);
}

int sandbox_resume(struct daemon *d, struct sandbox *sb, sbx_error *err)
{
    return set_frozen(d, sb, false, err);
}

static int refuse_creating(const struct sandbox *sb, sbx_error *err)
{
    if (sb->state != SANDBOX_CREATING)
        return 0;
    return sbx_error_setk(err, -EBUSY, "conflict", 409, "sandbox `%s` is still being created", sb->id);
}

int sandbox_stop_because(struct daemon *d, struct sandbox *sb, const char *reason, sbx_error *err)
{
    if (sb->state == SANDBOX_STOPPED)
        return 0;
    int r = refuse_creating(sb, err);
    if (r < 0 || (r = sandbox_refuse_busy(sb, err)) < 0)
        return r;
    shutdown_shim(sb);
    enter_state(d, sb, SANDBOX_STOPPED, reason);
    log_info("sandbox %s stopped%s%s", sb->id, reason ? ": " : "", reason ? reason : "");
    return 0;
}

int sandbox_stop(struct daemon *d, struct sandbox *sb, sbx_error *err)
{
    return sandbox_stop_because(d, sb, "stopped by request", err);
}

int sandbox_start(struct daemon *d, struct sandbox *sb, sbx_error *err)
{
    if (sb->state == SANDBOX_RUNNING)
        return 0;
    if (sb->state == SANDBOX_PAUSED)
        return sandbox_resume(d, sb, err);
    int r = refuse_creating(sb, err);
    if (r < 0 || (r = sandbox_refuse_busy(sb, err)) < 0)
        return r;
    /* Same id, same state dir: the overlay's upper/ still holds every file the sandbox wrote. The shim
     * is started synchronously here (~10 ms in sbxd's loop); creates use the asynchronous path. */
    runtime_cleanup(sb->id, sb->state_dir); /* whatever a dead shim left */
    r = shim_spawn(d->shim_path, sb->state_dir, SHIM_READY_TIMEOUT_MS, &sb->shim_pid, &sb->init_pid, err);
    if (r < 0 || (r = sandbox_started(d, sb, err)) < 0) {
        shutdown_shim(sb);
        return sbx_error_wrap(err, "start sandbox `%s`", sb->id);
    }
    enter_state(d, sb, SANDBOX_RUNNING, NULL);
    log_info("sandbox %s started (shim %d, init %d)", sb->id, (int)sb->shim_pid, (int)sb->init_pid);
    return 0;
}

/* The sandbox object a deleted sandbox leaves behind, kept TOMBSTONE_KEEP_MS. */
static void write_tombstone(struct daemon *d, struct sandbox *sb, const char *reason)
{
    int64_t now = now_ms();
    char when[40];
    format_time_ms(when, sizeof(when), now);
    json_t *o = sandbox_to_json(sb);
    json_object_set_new(o, "state", json_string("deleted"));
    json_object_set_new(o, "state_reason", json_string(reason));
    json_object_set_new(o, "deleted_at", json_string(when));
    _cleanup_free_ char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    sbx_error err = {0};
    struct store_tombstone t = {.id = sb->id, .owner = sb->owner, .deleted_ms = now, .sandbox_json = text};
    if (!text || store_tombstone_insert(d->store, &t, &err) < 0)
        log_warning("sandbox %s: record its deletion: %s", sb->id, text ? err.msg : "out of memory");
}

int sandbox_delete(struct daemon *d, struct sandbox *sb, const char *reason, sbx_error *err)
{
    if (sb->deleted)
        return sbx_error_set(err, -ENOENT, "sandbox `%s` not found", sb->id);
    if (!reason)
        reason = "deleted by request";
    int br = sandbox_refuse_busy(sb, err);
    if (br < 0)
        return br;
    if (sb->state == SANDBOX_CREATING) {
        sandbox_ref(sb);
        write_tombstone(d, sb, reason);
        registry_remove(d, sb); /* before the abort: the op then discards it without a second removal */
        create_op_abort_for(d, sb);
        sandbox_unref(sb);
        log_info("sandbox %s deleted while being created", sb->id);
        metrics_count(METRICS_SANDBOXES_DELETED);
        return 0;
    }
    remove_files(d, sb);
    checkpoint_delete_all_of(d, sb->id);
    write_tombstone(d, sb, reason);
    int r = store_sandbox_delete(d->store, sb->id, err);
    if (r < 0)
        log_warning("forget sandbox %s: %s", sb->id, err->msg);
    log_info("sandbox %s deleted: %s", sb->id, reason);
    metrics_count(METRICS_SANDBOXES_DELETED);
    registry_remove(d, sb);
    lifecycle_reschedule(d);
    return 0;
}

void sandbox_delete_all(struct daemon *d)
{
    while (d->sandboxes) {
        sbx_error err = {0};
        sandbox_delete(d, d->sandboxes, "sbxd shut down (--ephemeral)", &err);
    }
}

void sandbox_touch(struct sandbox *sb)
{
    sb->last_active_ms = now_ms();
}

void sandbox_attach(struct sandbox *sb)
{
    sb->attached++;
    sandbox_touch(sb);
}

void sandbox_detach(struct sandbox *sb)
{
    assert(sb->attached > 0);
    sb->attached--;
    sandbox_touch(sb);
    /* The idle timer was not armed for it while attached. */
    if (sb->attached == 0 && !sb->deleted)
        lifecycle_reschedule(sb->d);
}

static int persist(struct daemon *d, struct sandbox *sb, sbx_error *err)
{
    int r = store_row(d, sb, sandbox_state_to_string(sb->state), false, err);
    lifecycle_reschedule(d);
    return r;
}

int sandbox_set_egress(struct daemon *d, struct sandbox *sb, struct egress_policy *policy, sbx_error *err)
{
    int r = egress_set_policy(d, sb, policy, err);
    return r < 0 ? r : persist(d, sb, err);
}

int sandbox_set_lifecycle(struct daemon *d, struct sandbox *sb, const struct sandbox_lifecycle *life,
                          sbx_error *err)
{
    bool new_timeout = life->timeout_s != sb->life.timeout_s;
    sb->life = *life;
    if (new_timeout)
        sb->expires_ms = life->timeout_s ? now_ms() + life->timeout_s * 1000 : 0;
    return persist(d, sb, err);
}

int sandbox_renew(struct daemon *d, struct sandbox *sb, int64_t timeout_s, sbx_error *err)
{
    if (timeout_s > 0)
        sb->life.timeout_s = timeout_s;
    if (sb->life.timeout_s == 0)
        return sbx_error_set(err, -EINVAL, "sandbox `%s` has no timeout: give `timeout_seconds`", sb->id);
    sb->expires_ms = now_ms() + sb->life.timeout_s * 1000;
    return persist(d, sb, err);
}

int sandbox_set_metadata(struct daemon *d, struct sandbox *sb, json_t *metadata, sbx_error *err)
{
    json_decref(sb->metadata);
    sb->metadata = json_deep_copy(metadata);
    return persist(d, sb, err);
}

json_t *sandbox_tombstone_lookup(struct daemon *d, const char *id, const char *owner)
{
    _cleanup_free_ char *text = NULL, *row_owner = NULL;
    if (store_tombstone_get(d->store, id, &text, &row_owner, NULL) < 0)
        return NULL;
    if (owner && (!row_owner || strcmp(owner, row_owner) != 0))
        return NULL;
    return json_loads(text, 0, NULL);
}

static int recover_one(const struct store_sandbox *row, void *userdata)
{
    struct daemon *d = userdata;
    struct sandbox *sb = sandbox_new(d, row->id);
    sb->name = row->name ? xstrdup(row->name) : NULL;
    sb->snapshot = xstrdup(row->snapshot);
    sb->created_ms = row->created_ms;
    sb->env = json_loads(row->env_json, 0, NULL);
    sb->metadata = json_loads(row->metadata_json, 0, NULL);
    if (!sb->env)
        sb->env = json_object();
    if (!sb->metadata)
        sb->metadata = json_object();
    sb->volumes = json_loads(row->volumes_json ? row->volumes_json : "[]", 0, NULL);
    if (!json_is_array(sb->volumes)) {
        json_decref(sb->volumes);
        sb->volumes = json_array();
    }
    json_t *res = json_loads(row->resources_json, 0, NULL);
    if (res) {
        sb->res.cpus = json_number_value(json_object_get(res, "cpus"));
        sb->res.memory_mb = (uint64_t)json_integer_value(json_object_get(res, "memory_mb"));
        sb->res.pids = (uint64_t)json_integer_value(json_object_get(res, "pids"));
        sb->res.disk_mb = (uint64_t)json_integer_value(json_object_get(res, "disk_mb"));
        json_decref(res);
    }
    sb->uid_slot = row->uid_slot;
    sb->uid_base = SANDBOX_UID_BASE + (uid_t)sb->uid_slot * RUNTIME_UID_RANGE;
    sb->shim_pid = row->shim_pid;
    sb->init_pid = row->init_pid;
    sb->owner = row->owner ? xstrdup(row->owner) : NULL;
    sb->reason = row->reason ? xstrdup(row->reason) : NULL;
    sb->life = (struct sandbox_lifecycle){.idle_ttl_s = row->idle_ttl_s,
                                          .delete_after_stop_s = row->delete_after_stop_s,
                                          .timeout_s = row->timeout_s};
    sb->expires_ms = row->expires_ms;
    sb->stopped_ms = row->stopped_ms;
    /* Idleness is not persisted: a restart gives every sandbox a full idle period rather than stopping
     * sandboxes whose clients were only waiting for sbxd to come back. */
    sb->last_active_ms = now_ms();
    sb->state = sandbox_state_from_string(row->state);
    sbx_error net_err = {0};
    if (egress_network_from_store(row->network_json, &sb->net, &net_err) < 0)
        log_warning("sandbox %s: its stored network: %s; it has none now", sb->id, net_err.msg);
    /* Its egress slot counts only if it is found alive below (a stopped sandbox's namespace, and the veth
     * with it, is gone). */
    int net_slot = sb->net ? sb->net->slot : 0;
    if (sb->net)
        sb->net->slot = 0;
    if (access(sb->state_dir, F_OK) < 0 && errno == ENOENT) {
        /* A ghost row: its files were removed behind sbxd's back. Nothing can bring it back. */
        static const char reason[] = "its state directory was gone when sbxd started";
        log_warning("sandbox %s: %s, deleting it", sb->id, reason);
        shutdown_shim(sb);
        write_tombstone(d, sb, reason);
        store_sandbox_delete(d->store, sb->id, NULL);
        sandbox_unref(sb);
        return 0;
    }
    if (strcmp(row->state, "warm") == 0 || sb->state == SANDBOX_CREATING) {
        /* Pre-created and given to nobody, or its creator never got an answer: not worth keeping. */
        log_info("discarding %s sandbox %s left from a previous run", row->state, sb->id);
        sandbox_discard(d, sb);
        return 0;
    }

    if (sb->state == SANDBOX_RUNNING || sb->state == SANDBOX_PAUSED) {
        sbx_error err = {0};
        json_t *ping = json_pack("{s:s}", "op", "ping"), *resp = NULL;
        int r = sandbox_shim_call(sb, ping, &resp, &err);
        json_decref(ping);
        if (r >= 0 && json_is_true(json_object_get(resp, "init_alive"))) {
            open_rootfs(sb);
            shim_watch(sb);
            if (sb->net) {
                sb->net->slot = net_slot;
                egress_recovered(d, sb); /* its rules come back with the table (egress_start) */
            }
            log_info("sandbox %s re-attached (shim %d)", sb->id, (int)sb->shim_pid);
            /* FIFREEZE outlives its caller: a checkpoint that a dying sbxd was copying left the disk
             * frozen, and every write inside would wait forever. Thawing a disk that is not frozen is a
             * no-op (EINVAL). */
            if (runtime_disk_freeze(sb->state_dir, false) == 0)
                log_warning("sandbox %s: thawed its disk, left frozen by an interrupted checkpoint", sb->id);
        } else {
            char reason[256];
            snprintf(reason, sizeof(reason), "found dead when sbxd started (%s)",
                     r < 0 ? err.msg : "its init had exited");
            log_warning("sandbox %s: %s, marking it failed", sb->id, reason);
            shutdown_shim(sb);
            enter_state(d, sb, SANDBOX_FAILED, reason);
        }
        json_decref(resp);
    } else {
        /* A crash in the middle of a stop can leave mounts or cgroups behind: make sure there are none. */
        int r = runtime_cleanup(sb->id, sb->state_dir);
        if (r < 0)
            log_warning_errno(r, "sandbox %s: clean up: %m, ignoring", sb->id);
    }
    registry_add(d, sb);
    sandbox_unref(sb);
    return 0;
}

/* State dirs that no row names are what a crash left between mkdir and the store's insert, or between
 * the store's delete and the removal of the files: shut down whatever runs there and remove them. */
static void remove_orphan_dirs(struct daemon *d)
{
    _cleanup_closedir_ DIR *dir = opendir(d->sandboxes_dir);
    if (!dir)
        return;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (de->d_name[0] == '.' || !id_is_valid(de->d_name))
            continue;
        struct sandbox *known = sandbox_lookup(d, de->d_name, NULL);
        if (known) {
            sandbox_unref(known);
            continue;
        }
        struct sandbox *sb = sandbox_new(d, de->d_name);
        _cleanup_free_ char *pid_path = xasprintf("%s/shim.pid", sb->state_dir);
        _cleanup_fclose_ FILE *f = fopen(pid_path, "re");
        if (f && fscanf(f, "%d", &sb->shim_pid) != 1)
            sb->shim_pid = 0;
        log_warning("removing %s: no sandbox of that id is recorded (left by a crash)", sb->state_dir);
        remove_files(d, sb);
        sandbox_unref(sb);
    }
}

int sandbox_recover_all(struct daemon *d, sbx_error *err)
{
    /* Sandbox disks are sparse images here: uploads check that this filesystem has room (files.h). */
    if (files_space_fd < 0)
        files_space_fd = open(d->data_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int r = store_sandbox_foreach(d->store, recover_one, d, err);
    if (r < 0)
        return r;
    remove_orphan_dirs(d);
    return 0;
}
