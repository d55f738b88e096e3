/* The sandbox registry: sbxd's in-memory view of every sandbox, written through to the store. The
 * sandbox itself is owned by its sbx-shim; sbxd holds a control connection to it. */
#pragma once

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"
#include "base/util.h"
#include "loop/loop.h"

struct daemon;
struct shim_conn;
struct sandbox_net;

/* A deleted sandbox leaves the registry; what remains is a tombstone in the store ("deleted"). */
enum sandbox_state {
    SANDBOX_CREATING, /* its shim is being started */
    SANDBOX_RUNNING,
    SANDBOX_PAUSED,  /* frozen by the cgroup freezer: no CPU, memory kept */
    SANDBOX_STOPPED, /* by `stop` or its idle timer: files kept, nothing runs; `start` brings it back */
    SANDBOX_FAILED,  /* its shim or init died: cleaned up, files kept; `start` or delete */
    _SANDBOX_STATE_MAX,
};

/* When sbxd stops or deletes a sandbox by itself. All in seconds, 0 = never. */
struct sandbox_lifecycle {
    int64_t idle_ttl_s;          /* stop after this long with no command, file or stream activity */
    int64_t delete_after_stop_s; /* delete this long after entering stopped (or failed) */
    int64_t timeout_s;           /* lifetime granted at create and by each renew: then it is deleted */
};

#define SANDBOX_DEFAULT_IDLE_TTL_S 600
#define SANDBOX_TOMBSTONE_KEEP_MS (24LL * 3600 * 1000) /* how long GET still answers for a deleted one */
#define SANDBOX_LIFECYCLE_MAX_S (366LL * 24 * 3600)

struct sandbox_resources {
    double cpus;
    uint64_t memory_mb;
    uint64_t pids;
    uint64_t disk_mb; /* size of its own disk (upper-dir quota); 0 = none (made before sbx had disks) */
};

struct sandbox {
    struct sandbox *prev, *next;
    unsigned refs; /* the registry holds one; each in-flight request or stream holds one */
    bool deleted;  /* removed from the registry; the last unref frees */
    char id[SBX_ID_MAX + 1];
    char *name; /* NULL if none */
    char *snapshot;
    int64_t created_ms;
    json_t *env;      /* object of strings */
    json_t *metadata; /* object */
    json_t *volumes;  /* its volume mounts: [{"volume": id, "path": "/data", "read_only": bool}] */
    struct sandbox_resources res;
    struct sandbox_lifecycle life;
    int64_t last_active_ms; /* Unix ms of the last command, file or stream activity (not persisted) */
    int64_t stopped_ms;     /* Unix ms it entered stopped or failed, 0 otherwise */
    int64_t expires_ms;     /* Unix ms it is deleted at (timeout_s after create or renew), 0 = never */
    unsigned attached;      /* clients streaming from it now: it is not idle while there are any */
    char *reason;           /* why it is stopped or failed (NULL when running) */
    char *owner;            /* id of the API key that created it, NULL = the admin */
    int uid_slot;
    uid_t uid_base;
    char *state_dir;
    enum sandbox_state state;
    pid_t shim_pid, init_pid;
    int rootfs_fd;         /* O_PATH dirfd of <state_dir>/rootfs, -1 when not mounted */
    struct shim_conn *ctl; /* persistent control connection, NULL until first use */
    /* The shim's pidfd, watched from the loop: a shim that dies on its own marks the sandbox `error`. */
    int shim_pidfd;
    struct loop_io shim_watch;
    bool warm;                  /* in the warm pool, not handed out yet (its store row says "warm") */
    struct checkpoint_op *busy; /* a checkpoint, restore or fork copying its disk (checkpoint.h) */
    char *disk_source;          /* created from this disk image (a checkpoint's), NULL = a new disk */
    uid_t disk_source_uid_base;
    struct sandbox_net *net; /* network mode egress (egress.h); NULL = none, loopback only */
    struct daemon *d;
};

struct sandbox_create_opts {
    const char *snapshot; /* NULL = "host" */
    const char *name;     /* NULL = none */
    json_t *env;          /* borrowed, may be NULL */
    json_t *metadata;     /* borrowed, may be NULL */
    struct sandbox_resources res;
    struct sandbox_lifecycle life;
    const char *owner; /* NULL = the admin */
    /* Start its disk from this image (a checkpoint's) whose files belong to the sandbox whose root was
     * disk_source_uid_base; NULL = a new, empty disk. */
    const char *disk_source;
    uid_t disk_source_uid_base;
    bool disk_source_take; /* the image is this sandbox's alone: moved, not copied, into its state dir */
    json_t *volumes;       /* borrowed, may be NULL: checked mounts (volume_parse_mounts) */
    json_t *network;       /* borrowed, may be NULL (= mode none): a create's "network" (egress.h) */
};

#define SANDBOX_UID_BASE ((uid_t)1 << 28)

const char *sandbox_state_to_string(enum sandbox_state s);

/* Creates a sandbox. Returns 1 with a new reference in *ret when it is ready at once (from the warm
 * pool); 0 when it is being built, with *ret_op set: cb then runs once from the loop with the sandbox
 * (borrowed; ref it to keep it) or NULL and the error; a negative errno with err filled when the
 * request is refused (cb is not called). */
struct create_op;
typedef void (*sandbox_created_cb)(struct sandbox *sb, const sbx_error *err, void *userdata);
int sandbox_create(struct daemon *d, const struct sandbox_create_opts *opts, sandbox_created_cb cb,
                   void *userdata, struct sandbox **ret, struct create_op **ret_op, sbx_error *err);
/* The requester is gone: cb will not run, and the sandbox is discarded once built. */
void sandbox_create_cancel(struct create_op *op);
/* The sandbox a create in progress is building (borrowed; in the registry as `creating` meanwhile): for
 * an answer that does not wait for it (cb then only learns how it ended). */
struct sandbox *sandbox_create_op_sandbox(struct create_op *op);
/* Stops every create in progress and undoes it (at exit). */
void sandbox_create_abort_all(struct daemon *d);
/* The steps of a create, for the warm pool (warm.c). prepare allocates the id, uid range, state dir,
 * shim config and store row (in `state`) and returns a sandbox that is in no registry; started finishes
 * one whose shim is up; discard shuts down whatever exists of it and forgets it (dropping *sb's ref). */
int sandbox_prepare(struct daemon *d, const struct sandbox_create_opts *opts, const char *state,
                    struct sandbox **ret, sbx_error *err);
int sandbox_started(struct daemon *d, struct sandbox *sb, sbx_error *err);
void sandbox_discard(struct daemon *d, struct sandbox *sb);

/* The resources of a create request that does not say (docs/api.md). */
#define SANDBOX_DEFAULT_DISK_MB 10240
#define SANDBOX_DEFAULT_RESOURCES                                                                            \
    ((struct sandbox_resources){                                                                             \
        .cpus = 1.0, .memory_mb = 512, .pids = 512, .disk_mb = SANDBOX_DEFAULT_DISK_MB})

/* Finds by id or name what owner may see (owner: the caller's API key id, NULL = the admin). By id: any
 * of owner's sandboxes (the admin's: any); by name: among owner's own, since names are unique per owner.
 * Returns a new reference, or NULL. */
struct sandbox *sandbox_lookup(struct daemon *d, const char *id_or_name, const char *owner);
bool sandbox_visible_to(const struct sandbox *sb, const char *owner);
/* Pause (freeze every process) and resume. Idempotent; -EBUSY "conflict" in any other state. */
int sandbox_pause(struct daemon *d, struct sandbox *sb, sbx_error *err);
int sandbox_resume(struct daemon *d, struct sandbox *sb, sbx_error *err);

/* Stop ends every process and unmounts, keeping the files; start brings a stopped sandbox back with the
 * same id and files (and resumes a paused one). Both idempotent. */
int sandbox_stop(struct daemon *d, struct sandbox *sb, sbx_error *err);
int sandbox_start(struct daemon *d, struct sandbox *sb, sbx_error *err);

/* Stops it (like sandbox_stop) and records why: an idle timer, for instance. */
int sandbox_stop_because(struct daemon *d, struct sandbox *sb, const char *reason, sbx_error *err);

/* Shuts the sandbox down and removes it with its files, leaving a tombstone that says why (NULL = "deleted
 * by request"). The registry drops its reference. */
int sandbox_delete(struct daemon *d, struct sandbox *sb, const char *reason, sbx_error *err);

/* Activity: a command, file or stream call. Clients attached to a stream keep the sandbox active until
 * they detach. */
void sandbox_touch(struct sandbox *sb);
void sandbox_attach(struct sandbox *sb);
void sandbox_detach(struct sandbox *sb);

/* Replaces the lifecycle settings (PATCH); a changed timeout_s restarts the lifetime from now, like renew.
 * renew grants timeout_s (its own, or the given one when > 0) from now. Both persist and reschedule. */
int sandbox_set_lifecycle(struct daemon *d, struct sandbox *sb, const struct sandbox_lifecycle *life,
                          sbx_error *err);
int sandbox_renew(struct daemon *d, struct sandbox *sb, int64_t timeout_s, sbx_error *err);
/* Replaces the egress policy of a sandbox in network mode egress (PATCH), live if it is up; takes *policy
 * (egress.h). */
struct egress_policy;
int sandbox_set_egress(struct daemon *d, struct sandbox *sb, struct egress_policy *policy, sbx_error *err);
/* Replaces the metadata (PATCH). */
int sandbox_set_metadata(struct daemon *d, struct sandbox *sb, json_t *metadata, sbx_error *err);

/* The tombstone of a deleted sandbox visible to owner (NULL = the admin, who sees all): a new sandbox
 * object with state "deleted", or NULL. */
json_t *sandbox_tombstone_lookup(struct daemon *d, const char *id, const char *owner);
struct sandbox *sandbox_ref(struct sandbox *sb);
struct sandbox *sandbox_unref(struct sandbox *sb);
/* For _cleanup_(sandbox_unrefp): drops the reference a lookup returned, if any. */
static inline void sandbox_unrefp(struct sandbox **p)
{
    if (*p)
        sandbox_unref(*p);
}

/* A JSON object in the shape of docs/api.md's sandbox object. */
json_t *sandbox_to_json(const struct sandbox *sb);

/* 0 when the sandbox has processes (running or paused); a 409 not_running error otherwise. */
int sandbox_need_up(const struct sandbox *sb, sbx_error *err);

/* One request/response to the sandbox's shim over its persistent connection (reconnecting once if the
 * connection went stale). On success *ret_resp is a new reference. */
int sandbox_shim_call(struct sandbox *sb, json_t *req, json_t **ret_resp, sbx_error *err);
/* The same without the state check: for the calls that bring a sandbox up (state creating). */
int sandbox_shim_call_unchecked(struct sandbox *sb, json_t *req, json_t **ret_resp, sbx_error *err);

/* Reads the store at start-up and re-attaches to every shim still alive; sandboxes whose shim is gone
 * are cleaned up and marked failed; state dirs with no row are removed (orphans of a crash). */
int sandbox_recover_all(struct daemon *d, sbx_error *err);
/* Deletes every sandbox (for --ephemeral shutdown). */
void sandbox_delete_all(struct daemon *d);
