/* Snapshots: the built-in `host` one and those imported from image tarballs, whose unpacked layers live
 * in the content-addressed layer store <data-dir>/layers/<hex>/ (docs/design/snapshots.md). The registry
 * is in memory, written through to the store. Imports run in the confined helper sbx-unpack, watched
 * from sbxd's loop. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "base/util.h"

struct daemon;

enum snapshot_status {
    SNAPSHOT_BUILDING,
    SNAPSHOT_READY,
    SNAPSHOT_FAILED,
};

struct import_op;

struct snapshot {
    struct snapshot *next;
    char id[SBX_ID_MAX + 1];
    char *name;
    enum snapshot_status status;
    char *reason; /* why it failed, NULL otherwise */
    int64_t created_ms;
    int64_t size_bytes; /* its layers' unpacked content, each layer counted once */
    json_t *config;     /* Env, WorkingDir, User, Entrypoint, Cmd of the image config (object) */
    char **layers;      /* "sha256:<hex>", bottom first */
    size_t n_layers;
    struct import_op *op; /* while building */
};

struct snapshot_limits {
    uint64_t max_image_bytes; /* upload body */
    uint64_t max_layer_bytes; /* one layer's unpacked content */
    uint64_t max_entries;     /* entries of one layer */
};

/* Loads the snapshots from the store (imports that a previous run left building are marked failed),
 * removes what unfinished imports left on disk and collects unreferenced layers. */
int snapshot_init(struct daemon *d, const struct snapshot_limits *limits, sbx_error *err);
/* Kills running imports (their snapshots stay `building` in the store; the next start fails them) and
 * frees the registry. */
void snapshot_done(struct daemon *d);

const struct snapshot_limits *snapshot_limits(struct daemon *d);

/* By id or name; borrowed, NULL when unknown. */
struct snapshot *snapshot_find(struct daemon *d, const char *id_or_name);

/* A snapshot a sandbox can be created from: 0 and *ret for `host` (NULL) or a ready one; 404 not_found,
 * or 409 conflict when it is building or failed. */
int snapshot_for_create(struct daemon *d, const char *id_or_name, struct snapshot **ret, sbx_error *err);

/* The shim config's "lower_dirs" for a sandbox of this snapshot (a new reference): null for `host`, else
 * the sandbox's own /etc layer (hostname, hosts; made here in state_dir) over the snapshot's layers, top
 * first. */
int snapshot_sandbox_lowers(struct daemon *d, const char *snapshot, const char *state_dir,
                            const char *hostname, json_t **ret, sbx_error *err);

/* The working directory commands start in when they name none: /root for `host`, else the image's
 * WorkingDir or /. Borrowed. */
const char *snapshot_default_cwd(struct daemon *d, const char *snapshot);
/* The user commands run as when they name none: the image's User, NULL (root) for `host` or an image
 * without one. Borrowed. */
const char *snapshot_default_user(struct daemon *d, const char *snapshot);

/* A new env object for a sandbox: the image's Env, then env (may be NULL) on top. */
json_t *snapshot_sandbox_env(const struct snapshot *sn, json_t *env);

/* The snapshot object of docs/api.md (new reference); NULL sn = `host`. */
json_t *snapshot_to_json(const struct snapshot *sn);
/* {"snapshots": [host, ...]} */
json_t *snapshot_list_json(struct daemon *d);
/* {"layers": [...], "total_bytes": N}: the layer store and its disk usage. */
json_t *snapshot_layers_json(struct daemon *d, sbx_error *err);

/* Checks that a new import may start under this name (valid, free, not too many imports at once). */
int snapshot_import_check(struct daemon *d, const char *name, sbx_error *err);
/* Starts importing the image tarball at upload_path (taken over: removed when the import ends) as a new
 * `building` snapshot; returns it (borrowed). */
int snapshot_import_start(struct daemon *d, const char *name, const char *upload_path, struct snapshot **ret,
                          sbx_error *err);
/* A new upload file under the data dir (O_EXCL, 0600): fd and path (malloc'd). */
int snapshot_upload_open(struct daemon *d, int *ret_fd, char **ret_path, sbx_error *err);

/* Deletes a snapshot not used by any sandbox (409 otherwise, and while it is building), then collects
 * the layers nothing references any more. */
int snapshot_delete(struct daemon *d, struct snapshot *sn, sbx_error *err);

/* Removes unreferenced layers (deferred while an import runs). */
void snapshot_gc(struct daemon *d);
