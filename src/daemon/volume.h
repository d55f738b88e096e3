/* Named volumes (docs/design/snapshots.md, "Volumes"): persistent, sized disks that outlive sandboxes and
 * can be mounted into several at once. Each is an ext4 image of its own, <data-dir>/volumes/<id>/disk.img,
 * mounted by sbxd at <data-dir>/volumes/<id>/disk; sandboxes get an idmapped bind of its files, so one
 * volume's files have the same owners in every sandbox whatever its host id range. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "base/error.h"

struct daemon;
struct sandbox;

struct volume {
    struct volume *next;
    char *id; /* vol_... */
    char *name;
    char *owner; /* NULL = the admin */
    int64_t size_mb;
    int64_t created_ms;
};

#define VOLUME_MIN_MB 16
#define VOLUME_MAX_MB 1048576
#define VOLUME_DEFAULT_MB 1024
#define VOLUMES_MAX 256 /* per daemon */

/* Loads and mounts every volume; removes directories no row names. */
int volume_init(struct daemon *d, sbx_error *err);
/* Unmounts the volumes no sandbox in the registry uses any more, and frees everything. */
void volume_done(struct daemon *d);

json_t *volume_to_json(struct daemon *d, const struct volume *v);
json_t *volume_list_json(struct daemon *d, const char *owner);
/* By id or name, among what owner may see (the admin: any by id, its own by name). NULL with a 404 in
 * err. Borrowed. */
struct volume *volume_resolve(struct daemon *d, const char *ref, const char *owner, sbx_error *err);
int volume_create(struct daemon *d, const char *name, int64_t size_mb, const char *owner, struct volume **ret,
                  sbx_error *err);
/* 409 busy while any sandbox (in any state) mounts it. */
int volume_delete(struct daemon *d, struct volume *v, sbx_error *err);

/* A create's "volumes" ([{"volume": ref, "path": "/data", "read_only"?: false}], at most
 * RUNTIME_VOLUMES_MAX): checked, refs resolved for owner. *ret: the sandbox's form, [{"volume": id,
 * "path", "read_only"}] (new reference), or NULL when absent. */
int volume_parse_mounts(struct daemon *d, json_t *list, const char *owner, json_t **ret, sbx_error *err);
/* A mount point: an absolute path of normal components, not "/" and not under what the sandbox mounts
 * itself (/proc, /sys, /dev). */
int volume_check_mount_path(const char *path, sbx_error *err);
/* The shim's form of a sandbox's mounts: [{"source": host dir, "target", "read_only"}]. */
json_t *volume_shim_mounts(struct daemon *d, json_t *mounts);
