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
    struct import_op *op; /* while sbx-unpack runs */
    char *owner;          /* the tenant key that captured it; NULL = the admin's, visible to every key */
    bool host_base;       /* captured from a `host` sandbox: its layers go over the host's system dirs */
    const char *source;   /* "image", "registry" or "capture" (static) */
    /* A pull's download, written by its thread (__atomic), shown while building. */
    uint64_t progress_done, progress_total;
};

struct snapshot_limits {
    uint64_t max_image_bytes; /* upload body */
    uint64_t max_layer_bytes; /* one layer's unpacked content */
    uint64_t max_entries;     /* entries of one layer */
    long pull_stall_s;        /* a pull's transfer slower than 1 KiB/s for this long is abandoned */
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
/* The same, among the snapshots owner sees (owner NULL = the admin: all of them; a tenant: the global ones
 * and its own). */
struct snapshot *snapshot_find_visible(struct daemon *d, const char *id_or_name, const char *owner);

/* A snapshot a sandbox can be created from: 0 and *ret for `host` (NULL) or a ready one; 404 not_found,
 * or 409 conflict when it is building or failed. */
int snapshot_for_create(struct daemon *d, const char *id_or_name, const char *owner, struct snapshot **ret,
                        sbx_error *err);

/* The shim config's "lower_dirs" for a sandbox of this snapshot (a new reference): null for `host`, else
 * the sandbox's own /etc layer (hostname, hosts; made here in state_dir) over the snapshot's layers, top
 * first. */
int snapshot_sandbox_lowers(struct daemon *d, const char *snapshot, const char *state_dir,
                            const char *hostname, json_t **ret, sbx_error *err);

/* Whether the snapshot's layers go over the host's system dirs (the shim config's "host_base"). */
bool snapshot_is_host_based(struct daemon *d, const char *snapshot);

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
/* {"snapshots": [host, ...]}: those owner sees. */
json_t *snapshot_list_json(struct daemon *d, const char *owner);
/* {"layers": [...], "total_bytes": N}: the layer store and its disk usage. */
json_t *snapshot_layers_json(struct daemon *d, sbx_error *err);

/* Checks that a new import may start under this name (valid, free, not too many imports at once). */
int snapshot_import_check(struct daemon *d, const char *name, sbx_error *err);
/* Starts importing the image tarball at upload_path (taken over: removed when the import ends) as a new
 * `building` snapshot; returns it (borrowed). */
int snapshot_import_start(struct daemon *d, const char *name, const char *upload_path, struct snapshot **ret,
                          sbx_error *err);
/* A new `building` snapshot (name checked as by snapshot_import_check, without needing sbx-unpack), recorded
 * in the store and counted among the imports running; it ends with snapshot_import_run (whose end
 * finishes it), snapshot_capture_finish or snapshot_building_fail. Borrowed. */
int snapshot_building_new(struct daemon *d, const char *name, const char *owner, const char *source,
                          bool host_base, struct snapshot **ret, sbx_error *err);
/* Forgets a building snapshot whose work could not start (its row goes too). */
void snapshot_building_drop(struct daemon *d, struct snapshot *sn);
/* Marks a building snapshot failed with reason and ends its count. */
void snapshot_building_fail(struct daemon *d, struct snapshot *sn, const char *reason);
/* Runs sbx-unpack on the image tarball at upload_path (taken over) for a building snapshot. absent_ok:
 * layers of skip_hex (already stored) may be missing from the tarball (a pull does not download them). */
void snapshot_import_run(struct daemon *d, struct snapshot *sn, const char *upload_path, bool absent_ok);
/* The staging dir of a building snapshot: <layers>/.tmp-<id> (caller frees). */
char *snapshot_staging_path(struct daemon *d, const struct snapshot *sn);
/* Ends a capture: staging_layer (a directory, diff_id its content address) goes into the store as the
 * top layer over parent's layers (NULL = host), and sn becomes ready, or failed with the reason. */
void snapshot_capture_finish(struct daemon *d, struct snapshot *sn, const char *parent,
                             const char *staging_layer, const char *diff_id, int64_t size_bytes);
/* The hex of every stored layer, referenced or waiting for the garbage collection (a new vector of new
 * strings, with its length): what a pull need not download and an import need not unpack again. */
void snapshot_known_hexes(struct daemon *d, char ***ret, size_t *ret_n);

/* A new upload file under the data dir (O_EXCL, 0600): fd and path (malloc'd). */
int snapshot_upload_open(struct daemon *d, int *ret_fd, char **ret_path, sbx_error *err);

/* Deletes a snapshot not used by any sandbox (409 otherwise, and while it is building), then collects
 * the layers nothing references any more. */
int snapshot_delete(struct daemon *d, struct snapshot *sn, sbx_error *err);

/* Removes unreferenced layers (deferred while an import runs). */
void snapshot_gc(struct daemon *d);
