/* Checkpoints and fork (docs/design/snapshots.md, "Checkpoints and fork"): a checkpoint is a copy of a
 * sandbox's disk image (its upper layer) taken with the filesystem frozen, kept in
 * <data-dir>/checkpoints/<id>.img. Restore copies it back (processes restart); a new sandbox can start
 * from one; fork takes a temporary one and starts N sandboxes from it. Copies run on a thread, off the
 * loop; the request is answered when they end. Memory state is not captured. */
#pragma once

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

struct daemon;
struct sandbox;

struct checkpoint {
    struct checkpoint *next;
    char *id; /* ckp_... */
    char *sandbox_id;
    char *name;
    char *owner;    /* the sandbox's owner, NULL = the admin */
    char *snapshot; /* the sandbox's snapshot: the lower layers its files go over */
    int64_t disk_mb;
    uid_t uid_base; /* the sandbox's: its files' owners are in this range */
    int64_t size_bytes;
    int64_t created_ms;
};

#define CHECKPOINTS_PER_SANDBOX_MAX 64
#define FORK_COUNT_MAX 16

/* Loads the checkpoints of the sandboxes the registry holds (after sandbox recovery); rows of sandboxes
 * that are gone and image files no row names are removed. */
int checkpoint_init(struct daemon *d, sbx_error *err);
/* Waits for the copies in progress (bounded by their size), thaws what they froze, frees everything. */
void checkpoint_done(struct daemon *d);

json_t *checkpoint_to_json(const struct checkpoint *ck);
/* The checkpoints of a sandbox, oldest first, as a JSON array. */
json_t *checkpoint_list_json(struct daemon *d, const char *sandbox_id);
/* By name among a sandbox's checkpoints; NULL when there is none. Borrowed. */
struct checkpoint *checkpoint_find(struct daemon *d, const char *sandbox_id, const char *name);
/* What a create's "checkpoint" names: "ckp_..." or "<sandbox id or name>:<checkpoint name>", as owner
 * sees it. NULL with err (404) when there is none. Borrowed. */
struct checkpoint *checkpoint_resolve(struct daemon *d, const char *ref, const char *owner, sbx_error *err);
/* <data-dir>/checkpoints/<id>.img (caller frees). */
char *checkpoint_image_path(struct daemon *d, const char *id);

/* Removes a checkpoint (its row and image). -EBUSY (409) while a sandbox is being created from it. */
int checkpoint_delete(struct daemon *d, struct checkpoint *ck, sbx_error *err);
/* Removes every checkpoint of a sandbox (it is being deleted). */
void checkpoint_delete_all_of(struct daemon *d, const char *sandbox_id);

/* The long operations. Each returns 0 and later calls cb once from the loop (with the HTTP status and
 * body to answer, or with err), or returns a negative errno with err filled (cb is not called). The
 * sandbox is busy meanwhile: stop, start, delete, restore, checkpoint and fork answer 409 `busy`, file
 * calls too while its disk is frozen. checkpoint_op_forget: the requester is gone, cb will not run (a
 * fork then deletes the sandboxes it made, since nobody learns their ids). */
struct checkpoint_op;
typedef void (*checkpoint_cb)(int status, json_t *body, const sbx_error *err, void *userdata);
int checkpoint_create(struct daemon *d, struct sandbox *sb, const char *name, checkpoint_cb cb,
                      void *userdata, struct checkpoint_op **ret_op, sbx_error *err);
int checkpoint_restore(struct daemon *d, struct sandbox *sb, struct checkpoint *ck, checkpoint_cb cb,
                       void *userdata, struct checkpoint_op **ret_op, sbx_error *err);
int checkpoint_fork(struct daemon *d, struct sandbox *sb, unsigned count, checkpoint_cb cb, void *userdata,
                    struct checkpoint_op **ret_op, sbx_error *err);
void checkpoint_op_forget(struct checkpoint_op *op);

/* Capture (docs/design/snapshots.md): copies sb's upper dir into a new layer for the building snapshot sn
 * (made by the caller with snapshot_building_new), with the sandbox's disk frozen when it is running or
 * paused, mounted read-only when it is stopped. The sandbox is busy during the copy; the end goes to
 * snapshot_capture_finish or snapshot_building_fail. Returns a negative errno with err when refused (sn
 * is then the caller's to fail). */
struct snapshot;
struct capture_limits;
int checkpoint_capture(struct daemon *d, struct sandbox *sb, struct snapshot *sn,
                       const struct capture_limits *limits, sbx_error *err);

/* 409 `busy` when a checkpoint, restore or fork of sb is in progress. */
int sandbox_refuse_busy(const struct sandbox *sb, sbx_error *err);
