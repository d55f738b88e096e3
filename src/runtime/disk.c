/* The sandbox's disk: its writable layer (the overlay's upper/ and work/) lives on a filesystem of its own,
 * so that what it writes is bounded by the size asked at create and never fills the host's disk.
 *
 * Under <state_dir>:
 *   disk.img  a sparse file of exactly the disk's size, ext4 (mke2fs, lazily initialised, no resize
 *             inode, no reserved blocks), copied from a template formatted once per size in
 *             cfg->disk_template_dir (<data-dir>/disk-templates/). It stays across stop/start; delete
 *             removes it.
 *   disk/     where it is mounted (nosuid, nodev, discard: space freed inside is punched out of the
 *             image), through a loop device attached with LOOP_CONFIGURE (direct I/O, autoclear: the
 *             device goes away when the filesystem is unmounted for the last time, or when the process
 *             that attached it dies before mounting).
 *   disk/upper, disk/work  the overlay's upper and work directories.
 *   upper     a symlink to disk/upper, so tools that look at <state_dir>/upper keep working.
 *   disk.loop the number of the loop device last attached, to wait for its release.
 *
 * One image must never be mounted twice at once (two ext4 instances on one file corrupt it). A lazily
 * unmounted disk lives on while something still holds it (a sandbox mount namespace being torn down, an
 * fd into the rootfs): detaching waits for its loop device to be released, and attaching refuses while
 * the previous one is still bound to the image. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "runtime/internal.h"

#define LOOP_ATTACH_TRIES 32
#define MKFS_ERR_MAX 200

static const char *const mke2fs_paths[] = {"/usr/sbin/mke2fs", "/sbin/mke2fs"};

/* realpath(state_dir) + "/" + name: sysfs reports loop backing files by their canonical path. */
static int state_path(const char *state_dir, const char *name, char ret[PATH_MAX])
{
    char dir[PATH_MAX];
    if (!realpath(state_dir, dir))
        return -errno;
    if ((size_t)snprintf(ret, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
        return -ENAMETOOLONG;
    return 0;
}

static int mkdir_owned(const char *path, mode_t mode, uid_t uid)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return -errno;
    if (chmod(path, mode) < 0 || lchown(path, uid, uid) < 0)
        return -errno;
    return 0;
}

/* Formats path as ext4. Its stderr, if it fails, ends up in err. */
static int run_mke2fs(const char *path, sbx_error *err)
{
    const char *bin = NULL;
    for (size_t i = 0; i < ELEMENTSOF(mke2fs_paths) && !bin; i++)
        if (access(mke2fs_paths[i], X_OK) == 0)
            bin = mke2fs_paths[i];
    if (!bin)
        return sbx_error_set(err, -ENOENT, "mke2fs not found (install e2fsprogs)");
    /* 4 KiB blocks and one inode per 16 KiB whatever the size (mke2fs.conf's "small" type would pick 1 KiB
     * blocks); no reserved blocks (the sandbox gets the whole size); no resize inode (it preallocates MiBs
     * of the image); inode tables and journal left for the kernel to treat as zero, which a sparse file
     * is, so formatting writes ~100-300 KiB whatever the size. */
    char *const argv[] = {(char *)bin,
                          "-q",
                          "-F",
                          "-t",
                          "ext4",
                          "-b",
                          "4096",
                          "-m",
                          "0",
                          "-i",
                          "16384",
                          "-O",
                          "^resize_inode",
                          "-E",
                          "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
                          "-L",
                          "sbx-disk",
                          (char *)path,
                          NULL};
    char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return sbx_error_set(err, -errno, "pipe: %m");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    pid_t pid;
    int r = posix_spawn(&pid, bin, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (r != 0) {
        close(p[0]);
        return sbx_error_set(err, -r, "run %s: %s", bin, strerror(r));
    }
    char msg[MKFS_ERR_MAX + 1];
    ssize_t n = read_full(p[0], msg, MKFS_ERR_MAX);
    close(p[0]);
    msg[n > 0 ? n : 0] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return sbx_error_set(err, -errno, "wait for mke2fs: %m");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char *nl = strchr(msg, '\n');
        if (nl)
            *nl = '\0';
        return sbx_error_set(err, -EIO, "mke2fs %s failed (status %d): %s", path, status, msg);
    }
    return 0;
}

/* Formats a new sparse file at path (made under a temporary name, then renamed: never half made). */
static int image_format(const char *path, uint64_t size, sbx_error *err)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    {
        _cleanup_close_ int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return sbx_error_set(err, -errno, "create %s: %m", tmp);
        if (ftruncate(fd, (off_t)size) < 0) {
            int r = -errno;
            unlink(tmp);
            return sbx_error_set(err, r, "size %s: %s", tmp, strerror(-r));
        }
    }
    int r = run_mke2fs(tmp, err);
    if (r >= 0 && rename(tmp, path) < 0)
        r = sbx_error_set(err, -errno, "rename %s: %m", tmp);
    if (r < 0)
        unlink(tmp);
    return r;
}

/* Copies the data extents of src_fd (SEEK_DATA/SEEK_HOLE) to dst_fd, which has src's size: dst stays as
 * sparse as src. */
static int copy_sparse(int src_fd, int dst_fd, off_t size)
{
    for (off_t off = 0; off < size;) {
        off_t data = lseek(src_fd, off, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -errno; /* ENXIO: only a hole is left */
        off_t hole = lseek(src_fd, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        for (loff_t in = data, out = data; in < hole;) {
            ssize_t n = copy_file_range(src_fd, &in, dst_fd, &out, (size_t)(hole - in), 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return n < 0 ? -errno : -EIO;
        }
        off = hole;
    }
    return 0;
}

/* Copies src (size bytes) to dst through dst.tmp: sparse, fsync'd if durable, renamed into place. A
 * sandbox's own disk.img is not fsync'd (a host crash loses its sandbox's running state anyway, and the
 * flush would cost creates milliseconds); a checkpoint is. */
static int copy_image(const char *src_path, const char *dst, uint64_t size, bool durable, sbx_error *err)
{
    char tmp[PATH_MAX + 32];
    int r = 0;
    _cleanup_close_ int src = open(src_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (src < 0)
        return sbx_error_set(err, -errno, "open %s: %m", src_path);
    snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
    _cleanup_close_ int out = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0)
        return sbx_error_set(err, -errno, "create %s: %m", tmp);
    if (ftruncate(out, (off_t)size) < 0 || (r = copy_sparse(src, out, (off_t)size)) < 0 ||
        (durable && fsync(out) < 0) || rename(tmp, dst) < 0) {
        r = r < 0 ? r : -errno;
        unlink(tmp);
        return sbx_error_set(err, r, "copy %s to %s: %s", src_path, dst, strerror(-r));
    }
    return 0;
}

int runtime_disk_copy(const char *src, const char *dst, uint64_t *ret_bytes, sbx_error *err)
{
    struct stat st;
    if (stat(src, &st) < 0)
        return sbx_error_set(err, -errno, "stat %s: %m", src);
    int r = copy_image(src, dst, (uint64_t)st.st_size, true, err);
    if (r >= 0 && ret_bytes)
        *ret_bytes = stat(dst, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
    return r;
}

int runtime_disk_freeze(const char *state_dir, bool frozen)
{
    char mnt[PATH_MAX + 8];
    snprintf(mnt, sizeof(mnt), "%s/disk", state_dir);
    _cleanup_close_ int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    return ioctl(fd, frozen ? FIFREEZE : FITHAW, 0) < 0 ? -errno : 0;
}

/* Makes <state_dir>/disk.img of size bytes unless it exists: a copy of source (a checkpoint's image, which
 * must be of that size) when given, else a sparse copy of a freshly formatted image of that size kept in
 * template_dir (mke2fs costs 10-50 ms, mostly its own start-up; copying the 0.1-0.3 MiB it wrote costs a
 * few ms), or formatted in place without template_dir. Every disk of a size thus has the same filesystem
 * UUID, which nothing on the host relies on. */
static int image_ensure(const char *template_dir, const char *source, const char *img, uint64_t size,
                        sbx_error *err)
{
    if (access(img, F_OK) == 0)
        return 0;
    if (source) {
        struct stat st;
        if (stat(source, &st) < 0)
            return sbx_error_set(err, -errno, "disk source %s: %m", source);
        if ((uint64_t)st.st_size != size)
            return sbx_error_set(err, -EINVAL, "disk source %s holds %lld bytes, the disk is %llu", source,
                                 (long long)st.st_size, (unsigned long long)size);
        return copy_image(source, img, size, false, err);
    }
    if (!template_dir)
        return image_format(img, size, err);
    char tpl[PATH_MAX + 64];
    int r;
    if (mkdir(template_dir, 0700) < 0 && errno != EEXIST)
        return sbx_error_set(err, -errno, "mkdir %s: %m", template_dir);
    snprintf(tpl, sizeof(tpl), "%s/ext4-v1-%llu.img", template_dir, (unsigned long long)size);
    if (access(tpl, F_OK) < 0 && (r = image_format(tpl, size, err)) < 0)
        return r;
    return copy_image(tpl, img, size, false, err);
}

/* Moves one node's owner and group from the range at from to the range at to (ids outside the range, such
 * as the overflow id, stay). chown clears set-id bits, which are put back. Never follows a link. */
static int shift_node(int dirfd, const char *name, const struct stat *st, uid_t from, uid_t to)
{
    bool uid_in = st->st_uid >= from && st->st_uid - from < RUNTIME_UID_RANGE;
    bool gid_in = st->st_gid >= from && st->st_gid - from < RUNTIME_UID_RANGE;
    if (!uid_in && !gid_in)
        return 0;
    uid_t uid = uid_in ? st->st_uid - from + to : st->st_uid;
    gid_t gid = gid_in ? st->st_gid - from + to : st->st_gid;
    if (fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) &&
        fchmodat(dirfd, name, st->st_mode & 07777, 0) < 0)
        return -errno;
    return 0;
}

/* Shifts every node below dirfd (see shift_node). Depth-first with one fd per level; the tree is the
 * sandbox's own upper dir on its own disk, mounted here and not in use by any process yet, so nothing
 * changes it meanwhile. Depth is bounded by PATH_MAX-long paths in practice; 4096 levels at most here. */
static int shift_tree(int dirfd, uid_t from, uid_t to, int depth)
{
    if (depth > 4096)
        return -ELOOP;
    int dup_fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
    if (dup_fd < 0)
        return -errno;
    DIR *dir = fdopendir(dup_fd);
    if (!dir) {
        close(dup_fd);
        return -errno;
    }
    int r = 0;
    struct dirent *de;
    while (r >= 0 && (errno = 0, de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            r = -errno;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                r = -errno;
                break;
            }
            r = shift_tree(sub, from, to, depth + 1);
            close(sub);
        }
        if (r >= 0)
            r = shift_node(dirfd, de->d_name, &st, from, to);
    }
    if (r >= 0 && errno)
        r = -errno;
    closedir(dir);
    return r;
}

/* A disk started from another sandbox's checkpoint holds files owned in that sandbox's id range: they are
 * moved into this one's, once (the marker file disk.shifted records it; shifting is idempotent anyway,
 * since ids already moved are outside the old range). ACLs and file capabilities carry ids of their own
 * that are not rewritten: they do not apply in the new sandbox (they never grant more than before). */
static int shift_disk_ids(const struct runtime_config *cfg, const char *mnt, sbx_error *err)
{
    if (!cfg->disk_source || cfg->disk_source_uid_base == cfg->uid_base || cfg->disk_source_uid_base == 0)
        return 0;
    char marker[PATH_MAX];
    int r = state_path(cfg->state_dir, "disk.shifted", marker);
    if (r < 0)
        return sbx_error_set(err, r, "state dir: %s", strerror(-r));
    if (access(marker, F_OK) == 0)
        return 0;
    _cleanup_close_ int root = open(mnt, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0)
        return sbx_error_set(err, -errno, "open %s: %m", mnt);
    if ((r = shift_tree(root, cfg->disk_source_uid_base, cfg->uid_base, 0)) < 0)
        return sbx_error_set(err, r, "move the files of the disk's source into this sandbox's ids: %s",
                             strerror(-r));
    _cleanup_close_ int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return sbx_error_set(err, -errno, "create %s: %m", marker);
    return 0;
}

/* Whether /dev/loop<n> is still bound to the file img. */
static bool loop_bound_to(int n, const char *img)
{
    char path[96], buf[PATH_MAX + 16];
    snprintf(path, sizeof(path), "/sys/block/loop%d/loop/backing_file", n);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    if (len <= 0)
        return false;
    buf[len] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    size_t il = strlen(img);
    /* An image removed while still attached reads "<path> (deleted)". */
    return strncmp(buf, img, il) == 0 && (buf[il] == '\0' || strcmp(buf + il, " (deleted)") == 0);
}

static int read_loop_record(const char *state_dir)
{
    char path[PATH_MAX], buf[32];
    if (state_path(state_dir, "disk.loop", path) < 0)
        return -1;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    if (len <= 0)
        return -1;
    buf[len] = '\0';
    char *end;
    long n = strtol(buf, &end, 10);
    return end != buf && n >= 0 && n < 1 << 20 ? (int)n : -1;
}

static int write_loop_record(const char *state_dir, int n)
{
    char path[PATH_MAX], buf[32];
    int r = state_path(state_dir, "disk.loop", path);
    if (r < 0)
        return r;
    int len = snprintf(buf, sizeof(buf), "%d\n", n);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    return write_all(fd, buf, (size_t)len);
}

/* Waits (up to wait_ms) until the loop device last attached for this sandbox no longer holds its image. */
static int wait_loop_released(const char *state_dir, int wait_ms)
{
    int n = read_loop_record(state_dir);
    char img[PATH_MAX];
    if (n < 0 || state_path(state_dir, "disk.img", img) < 0)
        return 0;
    for (int waited = 0; loop_bound_to(n, img); waited++) {
        if (waited >= wait_ms)
            return -EBUSY;
        nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
    }
    return 0;
}

/* Attaches img to a free loop device; returns its number and an fd of it (the caller closes it once the
 * filesystem is mounted; until then, dying releases the device). */
static int loop_attach(const char *state_dir, int img_fd, bool read_only, int *ret_fd, sbx_error *err)
{
    _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return sbx_error_set(err, -errno, "open /dev/loop-control: %m");
    struct loop_config lc = {
        .fd = (uint32_t)img_fd,
        .info = {.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO | (read_only ? LO_FLAGS_READ_ONLY : 0)},
    };
    snprintf((char *)lc.info.lo_file_name, sizeof(lc.info.lo_file_name), "sbx-disk");
    int r = -EBUSY;
    /* Another process may take the device GET_FREE named before we configure it: try the next one. */
    for (int tries = 0; tries < LOOP_ATTACH_TRIES; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0)
            return sbx_error_set(err, -errno, "LOOP_CTL_GET_FREE: %m");
        char dev[32];
        snprintf(dev, sizeof(dev), "/dev/loop%d", n);
        int fd = open(dev, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (fd < 0) {
            r = -errno;
            if (errno == ENOENT || errno == ENXIO || errno == EBUSY)
                continue;
            return sbx_error_set(err, r, "open %s: %s", dev, strerror(-r));
        }
        if ((r = write_loop_record(state_dir, n)) < 0) {
            close(fd);
            return sbx_error_set(err, r, "record the loop device: %s", strerror(-r));
        }
        if (ioctl(fd, LOOP_CONFIGURE, &lc) == 0) {
            *ret_fd = fd;
            return n;
        }
        r = -errno;
        close(fd);
        if (r != -EBUSY)
            return sbx_error_set(err, r, "LOOP_CONFIGURE %s: %s", dev, strerror(-r));
    }
    return sbx_error_set(err, r, "no free loop device after %d tries: %s", LOOP_ATTACH_TRIES, strerror(-r));
}

int disk_attach(const struct runtime_config *cfg, sbx_error *err)
{
    char img[PATH_MAX], mnt[PATH_MAX], upper[PATH_MAX + 8], work[PATH_MAX + 8], link[PATH_MAX];
    int r;
    if ((r = state_path(cfg->state_dir, "disk.img", img)) < 0 ||
        (r = state_path(cfg->state_dir, "disk", mnt)) < 0 ||
        (r = state_path(cfg->state_dir, "upper", link)) < 0)
        return sbx_error_set(err, r, "state dir %s: %s", cfg->state_dir, strerror(-r));
    /* Whatever an earlier run left mounted goes first, and its loop device must be gone. */
    if ((r = disk_detach(cfg->state_dir, 2000)) < 0)
        return sbx_error_set(err, r, "the sandbox's disk from its previous run is still in use: %s",
                             strerror(-r));
    if ((r = image_ensure(cfg->disk_template_dir, cfg->disk_source, img, cfg->disk_bytes, err)) < 0)
        return r;
    if (mkdir(mnt, 0700) < 0 && errno != EEXIST)
        return sbx_error_set(err, -errno, "mkdir %s: %m", mnt);

    _cleanup_close_ int img_fd = open(img, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (img_fd < 0)
        return sbx_error_set(err, -errno, "open %s: %m", img);
    _cleanup_close_ int loop_fd = -1;
    int n = loop_attach(cfg->state_dir, img_fd, false, &loop_fd, err);
    if (n < 0)
        return n;
    char dev[32];
    snprintf(dev, sizeof(dev), "/dev/loop%d", n);
    /* noinit_itable: the image is sparse, its inode tables read as zeroes already. */
    if (mount(dev, mnt, "ext4", MS_NOSUID | MS_NODEV, "discard,noinit_itable") < 0)
        return sbx_error_set(err, -errno, "mount %s (%s) at %s: %m", dev, img, mnt);
    /* From here the mount holds the device; closing our fd (cleanup) leaves autoclear to the unmount. */
    if ((r = shift_disk_ids(cfg, mnt, err)) < 0) {
        disk_detach(cfg->state_dir, 0);
        return r;
    }

    snprintf(upper, sizeof(upper), "%s/upper", mnt);
    snprintf(work, sizeof(work), "%s/work", mnt);
    /* upper/'s root is the merged root's: owned by root inside. */
    if ((r = mkdir_owned(upper, 0755, cfg->uid_base)) < 0 || (r = mkdir_owned(work, 0700, 0)) < 0) {
        disk_detach(cfg->state_dir, 0);
        return sbx_error_set(err, r, "create %s/{upper,work}: %s", mnt, strerror(-r));
    }
    if (symlink("disk/upper", link) < 0 && errno != EEXIST) {
        r = -errno;
        disk_detach(cfg->state_dir, 0);
        return sbx_error_set(err, r, "symlink %s: %s", link, strerror(-r));
    }
    return 0;
}

int disk_detach(const char *state_dir, int wait_ms)
{
    char mnt[PATH_MAX];
    int r = state_path(state_dir, "disk", mnt);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    for (int i = 0;; i++) {
        if (umount2(mnt, MNT_DETACH | UMOUNT_NOFOLLOW) < 0) {
            if (errno == EINVAL || errno == ENOENT)
                break;
            return -errno;
        }
        if (i == 16)
            return -EBUSY;
    }
    return wait_loop_released(state_dir, wait_ms);
}

int runtime_disk_mount_ro(const char *state_dir, const char *mnt, sbx_error *err)
{
    char img[PATH_MAX];
    int r = state_path(state_dir, "disk.img", img);
    if (r < 0)
        return sbx_error_set(err, r, "state dir %s: %s", state_dir, strerror(-r));
    /* Never two ext4 instances on one image: the last run's must be gone. */
    if ((r = wait_loop_released(state_dir, 2000)) < 0)
        return sbx_error_set(err, r, "the sandbox's disk is still in use");
    _cleanup_close_ int img_fd = open(img, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (img_fd < 0)
        return sbx_error_set(err, -errno, "open %s: %m", img);
    _cleanup_close_ int loop_fd = -1;
    int n = loop_attach(state_dir, img_fd, true, &loop_fd, err);
    if (n < 0)
        return n;
    char dev[32];
    snprintf(dev, sizeof(dev), "/dev/loop%d", n);
    /* noload: no journal replay (the image was unmounted cleanly; a read-only view must not write). */
    if (mount(dev, mnt, "ext4", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "noload") < 0)
        return sbx_error_set(err, -errno, "mount %s (%s) read-only at %s: %m", dev, img, mnt);
    return 0;
}

int runtime_disk_unmount_ro(const char *state_dir, const char *mnt)
{
    if (umount2(mnt, UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
        return -errno;
    return wait_loop_released(state_dir, 2000);
}

int runtime_volume_mount(const char *dir, uint64_t bytes, const char *template_dir, sbx_error *err)
{
    char mnt[PATH_MAX + 8];
    snprintf(mnt, sizeof(mnt), "%s/disk", dir);
    struct stat dir_st, mnt_st;
    if (stat(dir, &dir_st) == 0 && stat(mnt, &mnt_st) == 0 && dir_st.st_dev != mnt_st.st_dev)
        return 0;
    struct runtime_config cfg = {.id = "volume",
                                 .state_dir = dir,
                                 .disk_bytes = bytes,
                                 .disk_template_dir = template_dir,
                                 .uid_base = 0};
    return disk_attach(&cfg, err);
}

int runtime_volume_unmount(const char *dir)
{
    return disk_detach(dir, 2000);
}

int runtime_disk_metrics(const char *state_dir, struct runtime_disk_metrics *ret)
{
    *ret = (struct runtime_disk_metrics){0};
    char mnt[PATH_MAX + 8];
    snprintf(mnt, sizeof(mnt), "%s/disk", state_dir);
    struct stat dir_st, mnt_st;
    if (stat(state_dir, &dir_st) < 0 || stat(mnt, &mnt_st) < 0)
        return -ENOENT;
    if (dir_st.st_dev == mnt_st.st_dev) /* nothing mounted: no disk of its own, or not running */
        return -ENOENT;
    struct statfs sf;
    if (statfs(mnt, &sf) < 0)
        return -errno;
    ret->size_bytes = (uint64_t)sf.f_blocks * (uint64_t)sf.f_bsize;
    ret->used_bytes = (uint64_t)(sf.f_blocks - sf.f_bfree) * (uint64_t)sf.f_bsize;
    ret->free_bytes = (uint64_t)sf.f_bavail * (uint64_t)sf.f_bsize;

    /* The loop device is the sandbox's own: its counters are the sandbox's disk I/O (in 512-byte
     * sectors: reads are field 3, writes field 7 of the block stat file). */
    char path[96], buf[512];
    snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/stat", major(mnt_st.st_dev), minor(mnt_st.st_dev));
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        if (n > 0) {
            buf[n] = '\0';
            unsigned long long f[7] = {0};
            if (sscanf(buf, "%llu %llu %llu %llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5],
                       &f[6]) == 7) {
                ret->io_read_bytes = f[2] * 512;
                ret->io_write_bytes = f[6] * 512;
                ret->io_stats = true;
            }
        }
    }
    return 0;
}
