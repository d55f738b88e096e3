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

enum sandbox_state {
    SANDBOX_RUNNING,
    SANDBOX_PAUSED,  /* frozen by the cgroup freezer: no CPU, memory kept */
    SANDBOX_STOPPED, /* stopped, or its shim or init died: files kept, nothing runs; `start` brings it back */
    SANDBOX_ERROR,
    _SANDBOX_STATE_MAX,
};

struct sandbox_resources {
    double cpus;
    uint64_t memory_mb;
    uint64_t pids;
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
    struct sandbox_resources res;
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
    bool warm; /* in the warm pool, not handed out yet (its store row says "warm") */
    struct daemon *d;
};

struct sandbox_create_opts {
    const char *snapshot; /* NULL = "host" */
    const char *name;     /* NULL = none */
    json_t *env;          /* borrowed, may be NULL */
    json_t *metadata;     /* borrowed, may be NULL */
    struct sandbox_resources res;
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
#define SANDBOX_DEFAULT_RESOURCES ((struct sandbox_resources){.cpus = 1.0, .memory_mb = 512, .pids = 512})

/* Finds by id or name; returns a new reference, or NULL. */
struct sandbox *sandbox_lookup(struct daemon *d, const char *id_or_name);
/* Pause (freeze every process) and resume. Idempotent; -EBUSY "conflict" in any other state. */
int sandbox_pause(struct daemon *d, struct sandbox *sb, sbx_error *err);
int sandbox_resume(struct daemon *d, struct sandbox *sb, sbx_error *err);

/* Stop ends every process and unmounts, keeping the files; start brings a stopped sandbox back with the
 * same id and files (and resumes a paused one). Both idempotent. */
int sandbox_stop(struct daemon *d, struct sandbox *sb, sbx_error *err);
int sandbox_start(struct daemon *d, struct sandbox *sb, sbx_error *err);

/* Shuts the sandbox down and removes it with its files. The registry drops its reference. */
int sandbox_delete(struct daemon *d, struct sandbox *sb, sbx_error *err);
struct sandbox *sandbox_ref(struct sandbox *sb);
struct sandbox *sandbox_unref(struct sandbox *sb);

/* A JSON object in the shape of docs/api.md's sandbox object. */
json_t *sandbox_to_json(const struct sandbox *sb);

/* One request/response to the sandbox's shim over its persistent connection (reconnecting once if the
 * connection went stale). On success *ret_resp is a new reference. */
int sandbox_shim_call(struct sandbox *sb, json_t *req, json_t **ret_resp, sbx_error *err);

/* Reads the store at start-up and re-attaches to every shim still alive; sandboxes whose shim is gone
 * are cleaned up and marked stopped. */
int sandbox_recover_all(struct daemon *d, sbx_error *err);
/* Deletes every sandbox (for --ephemeral shutdown). */
void sandbox_delete_all(struct daemon *d);
