/* Pieces of the runtime shared between its files; not part of the runtime's contract (runtime.h). */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"
#include "runtime/runtime.h"

/* --- rootfs.c: the sandbox's filesystem, as the host sees it under <state_dir>/rootfs ---------------- */

/* Mounts the writable root overlay at <state_dir>/rootfs (upper/ and work/ beside it). Needs no user
 * namespace yet. */
int rootfs_mount_overlay(const struct runtime_config *cfg, sbx_error *err);

/* Mounts the host's system directories read-only into the rootfs (host snapshot only), mapped through
 * userns_fd so that host root's files belong to root inside, plus the sandbox's /etc/hostname and
 * /etc/hosts. */
int rootfs_mount_system(const struct runtime_config *cfg, int userns_fd, sbx_error *err);

/* rootfs is a path from the current directory ("." after fchdir). Runs in the sandbox's first process, inside
 * its user, mount, PID and network namespaces: mounts /proc, /sys, /dev, masks what must not be seen and
 * pivots into rootfs. */
/* Binds cfg->volumes into the rootfs (after rootfs_mount_system; userns_fd: the sandbox's). */
int rootfs_mount_volumes(const struct runtime_config *cfg, int userns_fd, sbx_error *err);
int rootfs_enter(const char *rootfs, sbx_error *err);

/* Detaches <state_dir>/rootfs and everything mounted below it. Idempotent. */
int rootfs_unmount(const char *state_dir);

/* --- disk.c: the sandbox's own disk, <state_dir>/disk.img mounted at <state_dir>/disk ------------------ */

/* Formats disk.img (cfg->disk_bytes, sparse) unless it exists, attaches it to a loop device, mounts it at
 * <state_dir>/disk and makes upper/ and work/ in it (and the <state_dir>/upper symlink). Refuses (-EBUSY)
 * while an earlier mount of the same image is still alive. */
int disk_attach(const struct runtime_config *cfg, sbx_error *err);
/* Detaches <state_dir>/disk and waits up to wait_ms for its loop device to be released (-EBUSY if it is
 * not by then; it will be once the last holder lets go). Idempotent; 0 when there is no disk. */
int disk_detach(const char *state_dir, int wait_ms);

/* --- cgroup.c: one cgroup per sandbox, "sbx/<id>", in every hierarchy we use (v1 or v2) ------------ */

int cgroup_create(const char *name, const struct runtime_config *cfg, sbx_error *err);
int cgroup_attach(const char *name, pid_t pid, sbx_error *err);
/* Rewrites the limits of an existing cgroup (memory_bytes, cpus, pids_max of cfg; 0 = none). */
int cgroup_set_limits(const char *name, const struct runtime_config *cfg, sbx_error *err);
/* Freezes (true) or thaws every process of the cgroup and waits until that has taken effect. */
int cgroup_freeze(const char *name, bool frozen, sbx_error *err);
int cgroup_metrics(const char *name, struct runtime_metrics *ret);
/* Kills every process left in the cgroup, waits for them to go, removes it. Idempotent. */
int cgroup_destroy(const char *name);
