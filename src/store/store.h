/* Persistent daemon state in SQLite (WAL). Off the hot path: sbxd keeps an in-memory registry and
 * writes through to here on create/delete/state change, and reads it back at start to re-attach. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct store;

struct store_sandbox {
    char *id;
    char *name; /* may be NULL */
    char *snapshot;
    char *state; /* "creating", "running", "paused", "stopped", "failed", "warm" (pre-created, not yet handed
                    out) */
    int64_t created_ms;  /* Unix epoch milliseconds */
    char *env_json;      /* JSON object text */
    char *metadata_json; /* JSON object text */
    char *resources_json;
    int uid_slot; /* index of the sandbox's 65536-id range */
    int shim_pid;
    int init_pid;
    char *owner;  /* id of the API key that created it; NULL = the admin key */
    char *reason; /* why it is in its state (stopped or failed); may be NULL */
    int64_t idle_ttl_s, delete_after_stop_s, timeout_s; /* lifecycle settings, 0 = never */
    int64_t expires_ms, stopped_ms;                     /* Unix ms, 0 = none */
    char *volumes_json; /* JSON array text: [{"volume": id, "path": ..., "read_only": bool}] */
    char *network_json; /* "" = mode none; else daemon/egress.h's stored network object */
};

/* A deleted sandbox, kept for a while so that GET can say what happened to it. */
struct store_tombstone {
    char *id;
    char *owner;
    int64_t deleted_ms;
    char *sandbox_json; /* its last sandbox object, with state "deleted" */
};

/* An API key: a tenant. The secret is never stored, only its SHA-256 (hex). */
struct store_key {
    char *id;
    char *name;
    char *hash;
    int64_t created_ms;
    char *quotas_json; /* JSON object text */
};

/* Opens (creating and migrating) <path>. Returns 0 and *ret, or a negative errno with err filled. */
int store_open(const char *path, struct store **ret, sbx_error *err);
void store_close(struct store *s);

/* Inserts a new row. -EEXIST (kind "conflict") when the id or name is taken. */
int store_sandbox_insert(struct store *s, const struct store_sandbox *sb, sbx_error *err);
int store_sandbox_set_state(struct store *s, const char *id, const char *state, int shim_pid, int init_pid,
                            sbx_error *err);
/* Rewrites every field of the row with sb->id but the id and uid slot. -EEXIST when the name is taken. */
int store_sandbox_update(struct store *s, const struct store_sandbox *sb, sbx_error *err);
int store_sandbox_delete(struct store *s, const char *id, sbx_error *err);

/* Calls cb for every row, in creation order. The row is borrowed for the call only. */
int store_sandbox_foreach(struct store *s, int (*cb)(const struct store_sandbox *sb, void *userdata),
                          void *userdata, sbx_error *err);

/* Tombstones: insert (replacing one with the same id), look up one (0 and *ret_json malloc'd, or
 * -ENOENT), list them oldest first, and forget those deleted before a time. */
int store_tombstone_insert(struct store *s, const struct store_tombstone *t, sbx_error *err);
int store_tombstone_get(struct store *s, const char *id, char **ret_json, char **ret_owner, sbx_error *err);
int store_tombstone_foreach(struct store *s, int (*cb)(const struct store_tombstone *t, void *userdata),
                            void *userdata, sbx_error *err);
int store_tombstone_prune(struct store *s, int64_t before_ms, sbx_error *err);

/* API keys: insert (-EEXIST on a duplicate id or hash), delete (-ENOENT when there is none), list. */
int store_key_insert(struct store *s, const struct store_key *k, sbx_error *err);
int store_key_delete(struct store *s, const char *id, sbx_error *err);
int store_key_foreach(struct store *s, int (*cb)(const struct store_key *k, void *userdata), void *userdata,
                      sbx_error *err);

/* Lowest uid slot not used by any row (slots start at 1). */
int store_sandbox_free_uid_slot(struct store *s, int *ret_slot, sbx_error *err);

/* A snapshot from an image (the built-in `host` one is not stored). status: "building", "ready" or
 * "failed" (with reason). layers: its layers' digests ("sha256:<hex>"), bottom first, comma separated;
 * NULL when it has none (building or failed). */
struct store_snapshot {
    char *id;
    char *name;
    char *status;
    char *reason;
    int64_t created_ms;
    int64_t size_bytes;
    char *config_json; /* the image config's `config` object (Env, WorkingDir, User, Entrypoint, Cmd) */
    char *layers;
    char *owner;  /* the tenant key that captured it, NULL = the admin's (visible to every key) */
    char *base;   /* "host": its layers go over the `host` snapshot; "" or NULL: an image */
    char *source; /* "image" (an uploaded tarball), "registry" (a pull) or "capture"; NULL = "image" */
};

/* An unpacked layer in <data-dir>/layers/<hex>/; refs = the snapshots that use it. */
struct store_layer {
    char *digest; /* "sha256:<hex>" of the uncompressed layer tar (the OCI diff_id) */
    int64_t size_bytes;
    int64_t created_ms;
    int64_t refs;
};

/* Snapshots: insert (building; -EEXIST when the name is taken); finish (one transaction: records the
 * layers not known yet, references each of layers[0..n) in order, bottom first, and marks it ready);
 * fail (marks it failed with a reason); delete (its layer references go with it); list. */
int store_snapshot_insert(struct store *s, const struct store_snapshot *sn, sbx_error *err);
int store_snapshot_finish(struct store *s, const char *id, const struct store_layer *layers, size_t n,
                          int64_t size_bytes, const char *config_json, int64_t now_ms, sbx_error *err);
int store_snapshot_fail(struct store *s, const char *id, const char *reason, sbx_error *err);
int store_snapshot_delete(struct store *s, const char *id, sbx_error *err);
int store_snapshot_foreach(struct store *s, int (*cb)(const struct store_snapshot *sn, void *userdata),
                           void *userdata, sbx_error *err);

/* Layers with their reference counts, oldest first; and the removal of one row when no snapshot
 * references it (returns 1 when removed, 0 when still referenced or unknown). */
int store_layer_foreach(struct store *s, int (*cb)(const struct store_layer *l, void *userdata),
                        void *userdata, sbx_error *err);
int store_layer_delete_unreferenced(struct store *s, const char *digest, sbx_error *err);

/* A checkpoint of a sandbox: a copy of its disk image, <data-dir>/checkpoints/<id>.img. Its files are
 * owned in the range of the sandbox whose root was uid_base; its lower layers are those of snapshot. */
struct store_checkpoint {
    char *id;
    char *sandbox_id;
    char *name;
    char *owner;
    char *snapshot;
    int64_t disk_mb;
    int64_t uid_base;
    int64_t size_bytes;
    int64_t created_ms;
};

/* Checkpoints: insert (-EEXIST when the sandbox has one of that name), delete, list (oldest first). */
int store_checkpoint_insert(struct store *s, const struct store_checkpoint *ck, sbx_error *err);
int store_checkpoint_delete(struct store *s, const char *id, sbx_error *err);
int store_checkpoint_foreach(struct store *s, int (*cb)(const struct store_checkpoint *ck, void *userdata),
                             void *userdata, sbx_error *err);

/* Credentials of a container registry, for pulls that name it; owner NULL = the admin. Text fields are
 * never NULL when read ("" when unset). */
struct store_registry {
    char *id;
    char *owner;
    char *name;
    char *url; /* "https://host[:port]" (or http:// for a plain-HTTP registry) */
    char *auth_type;
    char *username;
    char *password;
    int64_t created_ms;
    int64_t updated_ms;
};

/* Registries: insert (409 conflict when the owner has one of that name), update (url, auth_type,
 * username, password, updated_ms of the row with g->id), delete, list (oldest first). */
int store_registry_insert(struct store *s, const struct store_registry *g, sbx_error *err);
int store_registry_update(struct store *s, const struct store_registry *g, sbx_error *err);
int store_registry_delete(struct store *s, const char *id, sbx_error *err);
int store_registry_foreach(struct store *s, int (*cb)(const struct store_registry *g, void *userdata),
                           void *userdata, sbx_error *err);

/* A named volume (its disk is <data-dir>/volumes/<id>/); owner NULL = the admin. */
struct store_volume {
    char *id;
    char *name;
    char *owner;
    int64_t size_mb;
    int64_t created_ms;
};

/* Volumes: insert (409 conflict when the owner has one of that name), delete, list (oldest first). */
int store_volume_insert(struct store *s, const struct store_volume *v, sbx_error *err);
int store_volume_delete(struct store *s, const char *id, sbx_error *err);
int store_volume_foreach(struct store *s, int (*cb)(const struct store_volume *v, void *userdata),
                         void *userdata, sbx_error *err);
