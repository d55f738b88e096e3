/* The container runtime: builds one sandbox (namespaces, overlay rootfs, cgroups, capabilities, seccomp)
 * around sbx-init as its PID 1, spawns commands inside it through init, and tears it all down.
 * Used by sbx-shim (one shim per sandbox). Nothing here logs above debug; failures fill sbx_error. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/types.h>

#include "base/error.h"

#define RUNTIME_UID_RANGE 65536u /* ids mapped into each sandbox's user namespace */

/* A volume mounted into a sandbox: source is a host directory whose files hold ids 0..65535 (a
 * volume's disk, see runtime_volume_mount), bound at target (absolute, inside the sandbox) idmapped into
 * the sandbox's range, nosuid and nodev. */
struct runtime_volume {
    const char *source;
    const char *target;
    bool read_only;
};

#define RUNTIME_VOLUMES_MAX 16

struct runtime_config {
    const char *id;        /* sandbox id, used for cgroup names and the hostname */
    const char *state_dir; /* <data-dir>/sandboxes/<id>; the runtime creates upper/ work/ rootfs/ in it */
    uint64_t disk_bytes;   /* size of the sandbox's own disk (disk.img) holding upper/ and work/; 0 = none,
                              upper/ and work/ on the state dir's filesystem, unbounded */
    const char *disk_template_dir; /* formatted images to copy disks from, one per size (made on first
                                      use); NULL = format each disk */
    /* A disk image to start the disk from instead of the template (a checkpoint, sbxd's
     * <data-dir>/checkpoints/<id>.img), used only when the sandbox has no disk.img yet. Its files belong to
     * the sandbox whose root was disk_source_uid_base; they are moved to uid_base once (see disk.c). */
    const char *disk_source;
    uid_t disk_source_uid_base;
    const struct runtime_volume *volumes;
    size_t n_volumes;
    const char *const
        *lower_dirs; /* NULL = the built-in `host` snapshot; else overlay lower layers, top first */
    bool host_base;  /* lower_dirs go over the `host` snapshot's skeleton, and the host's /usr, /etc... are
                        bound as for `host` (a snapshot captured from a `host` sandbox) */
    uid_t uid_base;  /* host uid/gid that is root inside; RUNTIME_UID_RANGE ids are mapped */
    const char *hostname;     /* NULL = id */
    uint64_t memory_bytes;    /* 0 = no limit */
    double cpus;              /* 0 = no limit */
    uint64_t pids_max;        /* 0 = no limit */
    const char *init_path;    /* host path of the static sbx-init binary */
    const char *seccomp_path; /* file with the raw BPF made by runtime_seccomp_export(); NULL = none */
};

/* An exit reported by sbx-init on ctl_fd. */
struct runtime_exit_event {
    pid_t pid;  /* pid inside the sandbox, as returned by runtime_exec */
    int status; /* wait status: WIFEXITED/WEXITSTATUS/WIFSIGNALED/WTERMSIG apply */
};

/* A running sandbox as the shim holds it. */
struct runtime_sandbox {
    pid_t init_pid; /* host pid of sbx-init */
    int init_pidfd; /* pidfd of sbx-init; readable when it dies */
    int ctl_fd;     /* SOCK_SEQPACKET to sbx-init: exec requests out, exit events in */
    int rootfs_fd;  /* O_PATH fd of the merged rootfs as the host sees it (<state_dir>/rootfs) */
    uid_t uid_base;
    char cgroup_name[128]; /* relative name under each hierarchy, e.g. "sbx/<id>" */
    char *state_dir;
    /* Exit events runtime_exec read while waiting for its answer; runtime_read_event returns them first. */
    struct runtime_exit_event *pending;
    unsigned n_pending, cap_pending;
};

struct runtime_exec_spec {
    const char *const *argv; /* argv[0] is resolved with PATH from env when it has no '/' */
    const char *const *env;  /* "K=V" strings, complete (no inheritance) */
    const char *cwd;         /* inside the sandbox; NULL = the user's home if it has one, else "/" */
    bool new_session;        /* setsid(): the command leads its own process group */
    bool ctty;               /* with new_session: fd 0 is a terminal; make it the controlling tty */
    /* NULL = root; else a user of the sandbox's /etc/passwd, "UID" or "UID:GID" (resolved inside by
     * sbx-init, which drops to it before exec). */
    const char *user;
};

/* Creates the sandbox and starts sbx-init in it. On success fills *ret (caller owns its fds) and
 * returns 0; on failure nothing is left behind (no mount, cgroup or process) and err says which step
 * failed. */
int runtime_create(const struct runtime_config *cfg, struct runtime_sandbox *ret, sbx_error *err);

/* Asks sbx-init to fork and exec a command with fds[0..2] as its stdin/stdout/stderr (borrowed; the
 * caller closes its copies). Returns 0 and the command's host pidfd and its pid inside the sandbox.
 * An argv[0] that cannot be executed fails with -ENOENT/-EACCES/-ENOEXEC and err->kind
 * "command_not_found"; no process is left running. Blocking, bounded by a short timeout. */
int runtime_exec(struct runtime_sandbox *sb, const struct runtime_exec_spec *spec, const int fds[3],
                 int *ret_pidfd, pid_t *ret_pid, sbx_error *err);

/* Reads one pending event from ctl_fd without blocking. Returns 1 with *ret filled, 0 when nothing is
 * pending, -EPIPE when init is gone, or another negative errno. Call when ctl_fd is readable. */
int runtime_read_event(struct runtime_sandbox *sb, struct runtime_exit_event *ret);

/* Kills every process of the sandbox, unmounts its rootfs and its disk (the loop device goes with it),
 * removes its cgroups and closes the fds. Leaves state_dir's files (upper/, disk.img etc.) for the caller
 * to remove. Idempotent. */
int runtime_destroy(struct runtime_sandbox *sb);

/* Cleans up after a sandbox whose shim is gone: kills what is left in its cgroups, unmounts
 * <state_dir>/rootfs and <state_dir>/disk (waiting, bounded, for its loop device to be released), removes
 * the cgroups. Idempotent; used by sbxd on stop, delete or recovery. */
int runtime_cleanup(const char *id, const char *state_dir);

/* Changes the memory, CPU and process limits of a running sandbox (0 = no limit). Lowering memory below
 * what the sandbox uses fails (-EBUSY) and leaves the old limit. */
int runtime_set_limits(const char *id, uint64_t memory_bytes, double cpus, uint64_t pids_max, sbx_error *err);

/* Network mode `egress` (net.c): a veth pair whose host end is host_if (unique among the host's links:
 * a name freed when a sandbox's namespace goes stays taken for a while) with host_addr/prefix, and whose
 * sandbox end is RUNTIME_NET_SANDBOX_IF with sandbox_addr/prefix and a default route via host_addr. */
#define RUNTIME_NET_SANDBOX_IF "eth0"
struct runtime_net_config {
    const char *host_if;
    struct in_addr host_addr, sandbox_addr;
    unsigned prefix;
};

/* Makes and configures the pair. sandbox_ns and own_ns are open network-namespace fds (the sandbox's, and
 * the caller's own to return to). Returns the host end's ifindex (> 0), or a negative errno with err
 * filled and nothing left behind. Single-threaded callers only (it setns()es the calling thread). */
int runtime_net_attach(int sandbox_ns, int own_ns, const struct runtime_net_config *cfg, sbx_error *err);

/* Pauses (frozen = true) or resumes every process of a sandbox through the cgroup freezer; returns once
 * it has taken effect. Memory stays as it is; a paused sandbox uses no CPU. */
int runtime_freeze(const char *id, bool frozen, sbx_error *err);

/* What a sandbox uses now, from its cgroups. */
struct runtime_metrics {
    uint64_t cpu_usage_nsec;    /* CPU time of every process, ever */
    uint64_t memory_bytes;      /* charged now (page cache included) */
    uint64_t memory_peak_bytes; /* highest charge seen */
    uint64_t pids;              /* processes and threads now */
    uint64_t oom_kills;         /* processes the kernel killed because the sandbox hit its memory limit */
};
/* -ENOENT when the sandbox has no cgroup (stopped). */
int runtime_metrics(const char *id, struct runtime_metrics *ret);
/* The same for a sandbox this process created (the shim). */
int runtime_sandbox_metrics(const struct runtime_sandbox *sb, struct runtime_metrics *ret);

/* The sandbox's own disk (runtime_config.disk_bytes), from statfs of its mount and its loop device's
 * counters. */
struct runtime_disk_metrics {
    uint64_t size_bytes;     /* the filesystem's size (the image's, less ext4's fixed overhead) */
    uint64_t used_bytes;     /* taken by files and directories (not the journal or inode tables) */
    uint64_t free_bytes;     /* what the sandbox can still write */
    bool io_stats;           /* the two counters below are known */
    uint64_t io_read_bytes;  /* read from the disk since it was attached (page cache misses) */
    uint64_t io_write_bytes; /* written to it since it was attached (writeback, journal, discards excluded) */
};
/* -ENOENT when the sandbox has no disk of its own or it is not mounted (stopped). */
int runtime_disk_metrics(const char *state_dir, struct runtime_disk_metrics *ret);

/* Copies a disk image (src, a file of exactly its disk's size) to dst as sparsely as src is: through
 * dst.tmp, fsync'd, then renamed. Returns the bytes of data copied in *ret_bytes (may be NULL). */
int runtime_disk_copy(const char *src, const char *dst, uint64_t *ret_bytes, sbx_error *err);
/* Freezes (FIFREEZE: everything written so far reaches the image, later writers wait) or thaws the
 * filesystem mounted at <state_dir>/disk. Thawing one that is not frozen returns -EINVAL. */
int runtime_disk_freeze(const char *state_dir, bool frozen);
/* Mounts a stopped sandbox's disk (<state_dir>/disk.img) read-only (nosuid, nodev, noexec) at mnt, after
 * its last run's loop device is released; runtime_disk_unmount_ro undoes it. For capture. */
int runtime_disk_mount_ro(const char *state_dir, const char *mnt, sbx_error *err);
int runtime_disk_unmount_ro(const char *state_dir, const char *mnt);

/* A volume's own disk, like a sandbox's: <dir>/disk.img (bytes, sparse ext4) mounted at <dir>/disk, the
 * volume's files in <dir>/disk/upper (its root owned by 0: root of every sandbox that mounts it). Mounting
 * one that is mounted already (by an earlier sbxd, with sandboxes still holding it) is a no-op. Unmount
 * detaches it lazily and waits (bounded) for its loop device to go. */
int runtime_volume_mount(const char *dir, uint64_t bytes, const char *template_dir, sbx_error *err);
int runtime_volume_unmount(const char *dir);

/* Compiles the seccomp profile once and writes the raw BPF program to path (sbxd does this at start). */
int runtime_seccomp_export(const char *path, sbx_error *err);

/* Host capabilities that matter: user namespaces, overlay in the init ns, cgroup version. For skips. */
struct runtime_host_info {
    bool cgroup_v2; /* pure v2 (unified) rather than v1 hierarchies */
    bool idmapped_mounts;
};
int runtime_probe_host(struct runtime_host_info *ret);
