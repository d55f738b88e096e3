/* The sandbox's filesystem.
 *
 * Host side (the shim, as host root, in the host's mount namespace), under <state_dir>:
 *   rootfs/  overlay: lower = the snapshot's layers (for `host`, a generated skeleton in lower/),
 *            upper/ + work/ = everything the sandbox writes. sbxd's file API works on this view.
 *   rootfs/usr, /opt (and /bin, /lib... where they are not symlinks into /usr): the host's
 *            directories, read-only, through an idmapped mount so host root's files are root's inside.
 *   rootfs/etc: the host's /etc read-only and NOT idmapped: files only root may read (shadow, SSH host
 *            keys, TLS keys) belong to an id that does not exist inside, so no capability reaches them.
 *            /etc/hostname and /etc/hosts are the sandbox's own (files in runtime/).
 *
 * Sandbox side (rootfs_enter, in the sandbox's first process): /proc, /sys (read-only), a minimal /dev,
 * masked kernel interfaces, then pivot_root. Those mounts live only in the sandbox's mount namespace. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/util.h"
#include "runtime/internal.h"

/* Top-level host directories a `host` sandbox sees (read-only); everything else at / is its own. */
static const char *const host_dirs[] = {"usr",   "bin",    "sbin", "lib", "lib32",
                                        "lib64", "libx32", "opt",  "etc"};
#define N_HOST_DIRS (sizeof(host_dirs) / sizeof(host_dirs[0]))

/* Directories every sandbox root has, with their modes. */
static const struct {
    const char *path;
    mode_t mode;
} skeleton[] = {
    {"proc", 0555}, {"sys", 0555},      {"dev", 0755}, {"tmp", 01777}, {"root", 0700}, {"home", 0755},
    {"var", 0755},  {"var/tmp", 01777}, {"run", 0755}, {"mnt", 0755},  {"srv", 0755},  {"media", 0755},
};

static int mkdir_owned(int dirfd, const char *path, mode_t mode, uid_t uid)
{
    if (mkdirat(dirfd, path, mode) < 0 && errno != EEXIST)
        return -errno;
    /* mkdir honours the umask; the modes above are meant exactly. */
    if (fchmodat(dirfd, path, mode, 0) < 0 || fchownat(dirfd, path, uid, uid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

static int write_owned(int dirfd, const char *name, const char *content, uid_t uid)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    if (write_all(fd, content, strlen(content)) < 0 || fchown(fd, uid, uid) < 0)
        return -errno;
    return 0;
}

/* lower/ for the host snapshot: the skeleton dirs, mount points for the host dirs, and the host's own
 * top-level symlinks (/bin -> usr/bin on merged-/usr systems). */
static int make_host_skeleton(const char *state_dir, uid_t uid, sbx_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/lower", state_dir);
    int r = mkdir_owned(AT_FDCWD, path, 0755, uid);
    if (r < 0)
        return sbx_error_set(err, r, "mkdir %s: %s", path, strerror(-r));
    _cleanup_close_ int dfd = open(path, O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sbx_error_set(err, -errno, "open %s: %m", path);
    for (size_t i = 0; i < sizeof(skeleton) / sizeof(skeleton[0]); i++)
        if ((r = mkdir_owned(dfd, skeleton[i].path, skeleton[i].mode, uid)) < 0)
            return sbx_error_set(err, r, "skeleton %s: %s", skeleton[i].path, strerror(-r));
    for (size_t i = 0; i < N_HOST_DIRS; i++) {
        char host[64], target[PATH_MAX];
        snprintf(host, sizeof(host), "/%s", host_dirs[i]);
        struct stat st;
        if (lstat(host, &st) < 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            ssize_t n = readlink(host, target, sizeof(target) - 1);
            if (n < 0)
                continue;
            target[n] = '\0';
            if (symlinkat(target, dfd, host_dirs[i]) < 0 && errno != EEXIST)
                return sbx_error_set(err, -errno, "skeleton symlink %s: %m", host_dirs[i]);
            (void)fchownat(dfd, host_dirs[i], uid, uid, AT_SYMLINK_NOFOLLOW);
        } else if (S_ISDIR(st.st_mode)) {
            if ((r = mkdir_owned(dfd, host_dirs[i], 0755, uid)) < 0)
                return sbx_error_set(err, r, "skeleton %s: %s", host_dirs[i], strerror(-r));
        }
    }
    return 0;
}

/* A user namespace mapping 0..RUNTIME_UID_RANGE-1 to uid_base.., held only to idmap mounts with (the
 * sandbox's own does not exist yet when its rootfs is mounted): a child made in it waits on a pipe while
 * the maps are written and the namespace is opened, then exits. Returns an fd of it. */
static int idmap_userns(uid_t uid_base)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    struct clone_args ca = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
    pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        char c;
        close(p[1]);
        (void)!read(p[0], &c, 1);
        _exit(0);
    }
    close(p[0]);
    if (pid < 0) {
        int saved = -errno;
        close(p[1]);
        return saved;
    }
    char path[64], line[64];
    int fd = -1, r = 0;
    snprintf(line, sizeof(line), "0 %u %u\n", (unsigned)uid_base, RUNTIME_UID_RANGE);
    static const char *const maps[] = {"uid_map", "gid_map"};
    for (size_t i = 0; i < 2 && r == 0; i++) {
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, maps[i]);
        _cleanup_close_ int mfd = open(path, O_WRONLY | O_CLOEXEC);
        if (mfd < 0 || write(mfd, line, strlen(line)) != (ssize_t)strlen(line))
            r = -errno;
    }
    if (r == 0) {
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            r = -errno;
    }
    close(p[1]); /* the child exits */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return r < 0 ? r : fd;
}

/* An image snapshot's overlay: each lower layer (shared, owned by host root on disk) is seen through a
 * read-only idmapped mount, so the image's root is the sandbox's root, whatever the sandbox's uid range;
 * copy-up then writes the mapped ids into the sandbox's upper dir. The detached mounts are passed to
 * overlayfs as /proc/self/fd/N; it keeps its own references, so they are closed once it is mounted. */
static int mount_image_overlay(const struct runtime_config *cfg, const char *rootfs, const char *upper,
                               const char *work, sbx_error *err)
{
    size_t n = 0;
    while (cfg->lower_dirs[n])
        n++;
    _cleanup_close_ int userns = idmap_userns(cfg->uid_base);
    if (userns < 0)
        return sbx_error_set(err, userns, "user namespace for idmapped layers: %s", strerror(-userns));
    int *fds = xcalloc(n, sizeof(int));
    struct sbx_buf opts = SBX_BUF_INIT;
    int r = 0;
    sbx_buf_appendf(&opts, "lowerdir=");
    for (size_t i = 0; i < n; i++)
        fds[i] = -1;
    for (size_t i = 0; i < n && r == 0; i++) {
        fds[i] = open_tree(AT_FDCWD, cfg->lower_dirs[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV,
                                  .userns_fd = (uint64_t)userns};
        if (fds[i] < 0 || mount_setattr(fds[i], "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
            r = sbx_error_set(err, -errno, "idmapped mount of layer %s: %m", cfg->lower_dirs[i]);
        sbx_buf_appendf(&opts, "%s/proc/self/fd/%d", i ? ":" : "", fds[i]);
    }
    /* A snapshot captured from a `host` sandbox: its layers go over the host skeleton (owned by uid_base on
     * disk like a `host` sandbox's, so not idmapped); rootfs_mount_system then binds the host's dirs. */
    if (r == 0 && cfg->host_base) {
        if ((r = make_host_skeleton(cfg->state_dir, cfg->uid_base, err)) == 0)
            sbx_buf_appendf(&opts, ":%s/lower", cfg->state_dir);
    }
    if (r == 0) {
        sbx_buf_appendf(&opts, ",upperdir=%s,workdir=%s", upper, work);
        sbx_buf_append(&opts, "", 1);
        if (mount("overlay", rootfs, "overlay", MS_NODEV, opts.base) < 0)
            r = sbx_error_set(err, -errno, "mount overlay at %s: %m", rootfs);
    }
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    sbx_buf_done(&opts);
    return r;
}

int rootfs_mount_overlay(const struct runtime_config *cfg, sbx_error *err)
{
    char upper[PATH_MAX], work[PATH_MAX], rootfs[PATH_MAX];
    /* With a disk of its own (disk.c), upper/ and work/ are on it, made by disk_attach. */
    const char *wdir = cfg->disk_bytes ? "disk/" : "";
    snprintf(upper, sizeof(upper), "%s/%supper", cfg->state_dir, wdir);
    snprintf(work, sizeof(work), "%s/%swork", cfg->state_dir, wdir);
    snprintf(rootfs, sizeof(rootfs), "%s/rootfs", cfg->state_dir);
    int r;
    /* upper/'s root is the merged root's: owned by root inside. Existing upper/ (a restart) is kept. */
    if ((!cfg->disk_bytes && ((r = mkdir_owned(AT_FDCWD, upper, 0755, cfg->uid_base)) < 0 ||
                              (r = mkdir_owned(AT_FDCWD, work, 0700, 0)) < 0)) ||
        (r = mkdir_owned(AT_FDCWD, rootfs, 0755, 0)) < 0)
        return sbx_error_set(err, r, "create %s/{upper,work,rootfs}: %s", cfg->state_dir, strerror(-r));

    struct sbx_buf opts = SBX_BUF_INIT;
    sbx_buf_appendf(&opts, "lowerdir=");
    if (cfg->lower_dirs) {
        sbx_buf_done(&opts);
        if ((r = mount_image_overlay(cfg, rootfs, upper, work, err)) < 0)
            return r;
    } else {
        if ((r = make_host_skeleton(cfg->state_dir, cfg->uid_base, err)) < 0) {
            sbx_buf_done(&opts);
            return r;
        }
        sbx_buf_appendf(&opts, "%s/lower", cfg->state_dir);
        sbx_buf_appendf(&opts, ",upperdir=%s,workdir=%s", upper, work);
        sbx_buf_append(&opts, "", 1);
        r = mount("overlay", rootfs, "overlay", MS_NODEV, opts.base);
        int saved = errno;
        sbx_buf_done(&opts);
        if (r < 0)
            return sbx_error_set(err, -saved, "mount overlay at %s: %s", rootfs, strerror(saved));
    }
    int saved;

    /* Images may lack the mount points the sandbox side needs. */
    _cleanup_close_ int dfd = open(rootfs, O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        saved = errno;
        rootfs_unmount(cfg->state_dir);
        return sbx_error_set(err, -saved, "open %s: %s", rootfs, strerror(saved));
    }
    for (size_t i = 0; i < 4; i++) { /* proc, sys, dev, tmp */
        struct stat st;
        if (fstatat(dfd, skeleton[i].path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            (void)mkdir_owned(dfd, skeleton[i].path, skeleton[i].mode, cfg->uid_base);
        } else if (i < 3 && !S_ISDIR(st.st_mode)) {
            /* The sandbox side mounts on these by path: an image's symlink there would redirect it. */
            rootfs_unmount(cfg->state_dir);
            return sbx_error_set(err, -ENOTDIR, "the image's /%s is not a directory", skeleton[i].path);
        }
    }
    return 0;
}

/* Read-only bind of a host directory; with userns_fd >= 0 also idmapped (0..65535 -> uid_base..). */
static int bind_host_dir(const char *src, const char *target, int userns_fd)
{
    _cleanup_close_ int tree = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
        return -errno;
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    };
    if (userns_fd >= 0) {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = (uint64_t)userns_fd;
    }
    if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
        return -errno;
    if (move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return -errno;
    return 0;
}

/* Read-only bind of one file over another. */
static int bind_file_ro(const char *src, const char *target)
{
    if (mount(src, target, NULL, MS_BIND, NULL) < 0)
        return -errno;
    if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        return -errno;
    return 0;
}

int rootfs_mount_system(const struct runtime_config *cfg, int userns_fd, sbx_error *err)
{
    char rootfs[PATH_MAX], target[PATH_MAX + 64];
    snprintf(rootfs, sizeof(rootfs), "%s/rootfs", cfg->state_dir);
    int r;
    for (size_t i = 0; i < N_HOST_DIRS; i++) {
        char host[64];
        snprintf(host, sizeof(host), "/%s", host_dirs[i]);
        struct stat st;
        if (lstat(host, &st) < 0 || !S_ISDIR(st.st_mode))
            continue;
        snprintf(target, sizeof(target), "%s/%s", rootfs, host_dirs[i]);
        bool idmap = strcmp(host_dirs[i], "etc") != 0;
        r = bind_host_dir(host, target, idmap ? userns_fd : -1);
        if (r == -EINVAL && idmap) /* a filesystem without idmapping support: unmapped is still safe */
            r = bind_host_dir(host, target, -1);
        if (r < 0)
            return sbx_error_set(err, r, "bind %s read-only: %s", host, strerror(-r));
    }

    /* The sandbox's own identity files, bound over the host's. */
    char rt[PATH_MAX];
    snprintf(rt, sizeof(rt), "%s/runtime", cfg->state_dir);
    if ((r = mkdir_owned(AT_FDCWD, rt, 0755, cfg->uid_base)) < 0)
        return sbx_error_set(err, r, "mkdir %s: %s", rt, strerror(-r));
    _cleanup_close_ int dfd = open(rt, O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sbx_error_set(err, -errno, "open %s: %m", rt);
    const char *hostname = cfg->hostname ? cfg->hostname : cfg->id;
    _cleanup_free_ char *hn = xasprintf("%s\n", hostname);
    _cleanup_free_ char *hosts = xasprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                                           "127.0.1.1\t%s\n",
                                           hostname);
    static const char *const files[] = {"hostname", "hosts"};
    const char *contents[] = {hn, hosts};
    for (size_t i = 0; i < 2; i++) {
        if ((r = write_owned(dfd, files[i], contents[i], cfg->uid_base)) < 0)
            return sbx_error_set(err, r, "write %s/%s: %s", rt, files[i], strerror(-r));
        char src[PATH_MAX + 32];
        snprintf(src, sizeof(src), "%s/%s", rt, files[i]);
        snprintf(target, sizeof(target), "%s/etc/%s", rootfs, files[i]);
        if (access(target, F_OK) == 0 && (r = bind_file_ro(src, target)) < 0)
            return sbx_error_set(err, r, "bind %s: %s", target, strerror(-r));
    }
    return 0;
}

/* Opens (O_PATH) the directory at the absolute path rel inside rootfs_fd, making missing components
 * (0755, root inside). Never follows a symlink: what the sandbox's disk holds (from a checkpoint, say)
 * cannot redirect a mount onto a host path. */
static int open_mount_point(int rootfs_fd, const char *rel, uid_t uid_base)
{
    _cleanup_free_ char *copy = xstrdup(rel);
    int fd = fcntl(rootfs_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return -errno;
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0 || strcmp(c, "..") == 0) {
            close(fd);
            return -EINVAL;
        }
        if (mkdirat(fd, c, 0755) == 0)
            (void)fchownat(fd, c, uid_base, uid_base, AT_SYMLINK_NOFOLLOW);
        else if (errno != EEXIST) {
            int r = -errno;
            close(fd);
            return r;
        }
        int next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int r = -errno;
        close(fd);
        if (next < 0)
            return r;
        fd = next;
    }
    return fd;
}

int rootfs_mount_volumes(const struct runtime_config *cfg, int userns_fd, sbx_error *err)
{
    if (!cfg->n_volumes)
        return 0;
    char rootfs[PATH_MAX];
    snprintf(rootfs, sizeof(rootfs), "%s/rootfs", cfg->state_dir);
    _cleanup_close_ int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return sbx_error_set(err, -errno, "open %s: %m", rootfs);
    for (size_t i = 0; i < cfg->n_volumes; i++) {
        const struct runtime_volume *v = &cfg->volumes[i];
        _cleanup_close_ int tree = open_tree(AT_FDCWD, v->source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (tree < 0)
            return sbx_error_set(err, -errno, "volume %s: %m", v->source);
        struct mount_attr attr = {
            .attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_IDMAP |
                        (v->read_only ? MOUNT_ATTR_RDONLY : 0),
            .userns_fd = (uint64_t)userns_fd,
        };
        if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
            return sbx_error_set(err, -errno, "idmap volume %s: %m", v->source);
        _cleanup_close_ int target = open_mount_point(root, v->target, cfg->uid_base);
        if (target < 0)
            return sbx_error_set(err, target, "volume mount point %s: %s", v->target, strerror(-target));
        if (move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            return sbx_error_set(err, -errno, "mount volume at %s: %m", v->target);
    }
    return 0;
}

int rootfs_unmount(const char *state_dir)
{
    char rootfs[PATH_MAX];
    snprintf(rootfs, sizeof(rootfs), "%s/rootfs", state_dir);
    /* A lazy unmount takes the whole tree below; loop for anything stacked on the same point. */
    for (int i = 0; i < 16; i++)
        if (umount2(rootfs, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
            return errno == EINVAL || errno == ENOENT ? 0 : -errno;
    return -EBUSY;
}

/* --- inside the sandbox ---------------------------------------------------------------------------- */

/* Kernel interfaces that reveal the host or let a process affect it (Docker's and crun's lists). */
static const char *const masked_paths[] = {
    "proc/acpi",          "proc/asound",         "proc/kcore",       "proc/keys",
    "proc/latency_stats", "proc/timer_list",     "proc/timer_stats", "proc/sched_debug",
    "proc/scsi",          "proc/sysrq-trigger",  "sys/firmware",     "sys/devices/virtual/powercap",
    "sys/kernel/debug",   "sys/kernel/security",
};
static const char *const readonly_paths[] = {"proc/bus", "proc/fs", "proc/irq", "proc/sys"};

static int mask_path(const char *rootfs, const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", rootfs, rel);
    struct stat st;
    if (lstat(p, &st) < 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        if (mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=555") < 0)
            return -errno;
        return 0;
    }
    return mount("/dev/null", p, NULL, MS_BIND, NULL) < 0 ? -errno : 0;
}

static int readonly_path(const char *rootfs, const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", rootfs, rel);
    if (access(p, F_OK) < 0)
        return 0;
    if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
        return -errno;
    if (mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return -errno;
    return 0;
}

static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};

static int setup_dev(const char *rootfs, sbx_error *err)
{
    char dev[PATH_MAX], p[PATH_MAX + 32];
    snprintf(dev, sizeof(dev), "%s/dev", rootfs);
    if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k,nr_inodes=4096") < 0)
        return sbx_error_set(err, -errno, "mount /dev: %m");
    /* Device nodes cannot be created in a user namespace: bind the host's harmless ones. */
    for (size_t i = 0; i < sizeof(dev_nodes) / sizeof(dev_nodes[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dev, dev_nodes[i]);
        int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0)
            return sbx_error_set(err, -errno, "create /dev/%s: %m", dev_nodes[i]);
        close(fd);
        char src[64];
        snprintf(src, sizeof(src), "/dev/%s", dev_nodes[i]);
        if (mount(src, p, NULL, MS_BIND, NULL) < 0)
            return sbx_error_set(err, -errno, "bind /dev/%s: %m", dev_nodes[i]);
    }
    snprintf(p, sizeof(p), "%s/pts", dev);
    if (mkdir(p, 0755) < 0 ||
        mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
        return sbx_error_set(err, -errno, "mount /dev/pts: %m");
    snprintf(p, sizeof(p), "%s/shm", dev);
    if (mkdir(p, 01777) < 0 || mount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k") < 0)
        return sbx_error_set(err, -errno, "mount /dev/shm: %m");
    static const char *const links[][2] = {{"pts/ptmx", "ptmx"},          {"/proc/self/fd", "fd"},
                                           {"/proc/self/fd/0", "stdin"},  {"/proc/self/fd/1", "stdout"},
                                           {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"}};
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dev, links[i][1]);
        if (symlink(links[i][0], p) < 0)
            return sbx_error_set(err, -errno, "symlink /dev/%s: %m", links[i][1]);
    }
    return 0;
}

static int loopback_up(void)
{
    _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return -errno;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

int rootfs_enter(const char *rootfs, sbx_error *err)
{
    char p[PATH_MAX + 16];
    int r;
    /* Nothing mounted from here on may reach the host's namespace, nor the other way. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return sbx_error_set(err, -errno, "make / private: %m");
    /* Mounts copied into a namespace of a less privileged user namespace are locked, and pivot_root
     * refuses a locked new root: put a copy of the rootfs tree, made here, on top of it and move in. */
    _cleanup_close_ int tree =
        open_tree(AT_FDCWD, rootfs, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
        return sbx_error_set(err, -errno, "clone the rootfs tree: %m");
    if (move_mount(tree, "", AT_FDCWD, rootfs, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return sbx_error_set(err, -errno, "mount the rootfs tree: %m");
    if (fchdir(tree) < 0)
        return sbx_error_set(err, -errno, "enter the rootfs tree: %m");
    rootfs = ".";
    snprintf(p, sizeof(p), "%s/proc", rootfs);
    if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return sbx_error_set(err, -errno, "mount /proc: %m");
    snprintf(p, sizeof(p), "%s/sys", rootfs);
    /* sysfs needs a network namespace of our own: we have it. Read-only, like Docker. */
    if (mount("sysfs", p, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return sbx_error_set(err, -errno, "mount /sys: %m");
    if ((r = setup_dev(rootfs, err)) < 0)
        return r;
    for (size_t i = 0; i < sizeof(masked_paths) / sizeof(masked_paths[0]); i++)
        if ((r = mask_path(rootfs, masked_paths[i])) < 0)
            return sbx_error_set(err, r, "mask /%s: %s", masked_paths[i], strerror(-r));
    for (size_t i = 0; i < sizeof(readonly_paths) / sizeof(readonly_paths[0]); i++)
        if ((r = readonly_path(rootfs, readonly_paths[i])) < 0)
            return sbx_error_set(err, r, "read-only /%s: %s", readonly_paths[i], strerror(-r));
    if ((r = loopback_up()) < 0)
        return sbx_error_set(err, r, "bring up lo: %s", strerror(-r));

    /* pivot_root(".", "."): the old root ends up stacked under the new one and is detached at once. */
    if (chdir(rootfs) < 0)
        return sbx_error_set(err, -errno, "chdir %s: %m", rootfs);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return sbx_error_set(err, -errno, "pivot_root: %m");
    if (umount2(".", MNT_DETACH) < 0)
        return sbx_error_set(err, -errno, "detach the host root: %m");
    if (chdir("/") < 0)
        return sbx_error_set(err, -errno, "chdir /: %m");
    return 0;
}
