/* The copy of a sandbox's upper dir into a layer (capture.h). Entries are visited in a fixed order (names
 * sorted bytewise, a directory before what it holds) and each is written twice: as a node of the layer
 * directory and as an entry of a pax tar whose bytes only feed a sha256, so equal trees give equal
 * diff_ids. The tar uses the OCI whiteout names: `.wh.NAME` for a whiteout, `DIR/.wh..wh..opq` for an
 * opaque directory. */
#include "daemon/capture.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"

#define ID_RANGE 65536u
#define DEPTH_MAX 256
#define CHUNK (256 * 1024)

struct hardlink {
    dev_t dev;
    ino_t ino;
    char *path; /* relative to the layer's root */
};

struct cap {
    uid_t base;
    const struct capture_limits *lim;
    struct capture_result *res;
    sbx_error *err;
    int dst_root;
    struct archive *ar;
    EVP_MD_CTX *md;
    struct hardlink *links;
    size_t n_links;
    char *buf;
};

static la_ssize_t hash_write(struct archive *a, void *ud, const void *buf, size_t n)
{
    struct cap *c = ud;
    EVP_DigestUpdate(c->md, buf, n);
    return (la_ssize_t)n;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The names in the directory fd, sorted. */
static int list_dir(int fd, char ***ret, size_t *ret_n)
{
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup_fd < 0)
        return -errno;
    DIR *dir = fdopendir(dup_fd);
    if (!dir) {
        int r = -errno;
        close(dup_fd);
        return r;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        names = xrealloc(names, (n + 1) * sizeof(char *));
        names[n++] = xstrdup(de->d_name);
        errno = 0;
    }
    int r = errno ? -errno : 0;
    closedir(dir);
    if (r < 0) {
        free_names(names, n);
        return r;
    }
    if (n)
        qsort(names, n, sizeof(char *), cmp_names);
    *ret = names;
    *ret_n = n;
    return 0;
}

static int shift_ids(struct cap *c, const struct stat *st, const char *path, uid_t *uid, gid_t *gid)
{
    if (st->st_uid < c->base || st->st_uid - c->base >= ID_RANGE || st->st_gid < c->base ||
        st->st_gid - c->base >= ID_RANGE)
        return sbx_error_set(c->err, -EPERM, "`/%s` is owned by host ids %u:%u, outside the sandbox's range",
                             path, (unsigned)st->st_uid, (unsigned)st->st_gid);
    *uid = st->st_uid - c->base;
    *gid = st->st_gid - c->base;
    return 0;
}

static int tar_header(struct cap *c, const char *path, mode_t type, mode_t perm, uid_t uid, gid_t gid,
                      const struct stat *st, int64_t size, const char *symlink, const char *hardlink)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_uid(e, uid);
    archive_entry_set_gid(e, gid);
    archive_entry_set_mtime(e, st ? st->st_mtim.tv_sec : 0, 0);
    archive_entry_set_size(e, size);
    if (symlink)
        archive_entry_set_symlink(e, symlink);
    if (hardlink) {
        archive_entry_set_hardlink(e, hardlink);
        archive_entry_set_size(e, 0);
    }
    int r = archive_write_header(c->ar, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK)
        return sbx_error_set(c->err, -EIO, "hash `/%s`: %s", path, archive_error_string(c->ar));
    return 0;
}

static int set_meta(struct cap *c, int fd, const char *path, uid_t uid, gid_t gid, const struct stat *st)
{
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    /* chown clears set-id bits: the mode goes second. */
    if (fchown(fd, uid, gid) < 0 || fchmod(fd, st->st_mode & 07777) < 0 || futimens(fd, ts) < 0)
        return sbx_error_set(c->err, -errno, "set owner and mode of `/%s`: %m", path);
    return 0;
}

static int check_overlay_xattrs(struct cap *c, int fd, const char *path)
{
    char v[8];
    if (fgetxattr(fd, "trusted.overlay.metacopy", v, sizeof(v)) >= 0)
        return sbx_error_set(c->err, -EOPNOTSUPP, "`/%s` is an overlay metacopy entry (not supported)", path);
    if (fgetxattr(fd, "trusted.overlay.redirect", v, sizeof(v)) >= 0 || errno == ERANGE)
        return sbx_error_set(c->err, -EOPNOTSUPP, "`/%s` is a renamed lower directory (overlay redirect)",
                             path);
    return 0;
}

static int count_entry(struct cap *c, const char *path)
{
    if (++c->res->entries > c->lim->max_entries)
        return sbx_error_setk(c->err, -EFBIG, "too_large", 413,
                              "the sandbox's changes hold more than %llu entries",
                              (unsigned long long)c->lim->max_entries);
    return 0;
}

static int copy_file(struct cap *c, int src_dir, int dst_dir, const char *name, const char *path,
                     const struct stat *st, uid_t uid, gid_t gid)
{
    if (st->st_nlink > 1)
        for (size_t i = 0; i < c->n_links; i++)
            if (c->links[i].dev == st->st_dev && c->links[i].ino == st->st_ino) {
                if (linkat(c->dst_root, c->links[i].path, dst_dir, name, 0) < 0)
                    return sbx_error_set(c->err, -errno, "link `/%s`: %m", path);
                return tar_header(c, path, AE_IFREG, st->st_mode & 07777, uid, gid, st, 0, NULL,
                                  c->links[i].path);
            }
    _cleanup_close_ int sfd = openat(src_dir, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if (sfd < 0)
        return sbx_error_set(c->err, -errno, "open `/%s`: %m", path);
    int r = check_overlay_xattrs(c, sfd, path);
    if (r < 0)
        return r;
    if (c->res->bytes + (uint64_t)st->st_size > c->lim->max_bytes)
        return sbx_error_setk(c->err, -EFBIG, "too_large", 413,
                              "the sandbox's changes are over the layer limit of %llu MiB (--max-layer-mb)",
                              (unsigned long long)(c->lim->max_bytes >> 20));
    _cleanup_close_ int dfd =
        openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (dfd < 0)
        return sbx_error_set(c->err, -errno, "create `/%s` in the layer: %m", path);
    if ((r = tar_header(c, path, AE_IFREG, st->st_mode & 07777, uid, gid, st, st->st_size, NULL, NULL)) < 0)
        return r;
    off_t left = st->st_size;
    while (left > 0) {
        ssize_t n = read(sfd, c->buf, (size_t)(left < CHUNK ? left : CHUNK));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sbx_error_set(c->err, -errno, "read `/%s`: %m", path);
        if (n == 0)
            return sbx_error_set(c->err, -EAGAIN, "`/%s` shrank while it was captured", path);
        if (write_all(dfd, c->buf, (size_t)n) < 0)
            return sbx_error_set(c->err, -errno, "write `/%s` into the layer: %m", path);
        if (archive_write_data(c->ar, c->buf, (size_t)n) != n)
            return sbx_error_set(c->err, -EIO, "hash `/%s`: %s", path, archive_error_string(c->ar));
        left -= n;
    }
    c->res->bytes += (uint64_t)st->st_size;
    if ((r = set_meta(c, dfd, path, uid, gid, st)) < 0)
        return r;
    if (st->st_nlink > 1) {
        c->links = xrealloc(c->links, (c->n_links + 1) * sizeof(*c->links));
        c->links[c->n_links++] = (struct hardlink){st->st_dev, st->st_ino, xstrdup(path)};
    }
    return 0;
}

static int copy_dir(struct cap *c, int src, int dst, const char *prefix, int depth);

static int copy_entry(struct cap *c, int src, int dst, const char *name, const char *prefix, int depth)
{
    _cleanup_free_ char *path = prefix[0] ? xasprintf("%s/%s", prefix, name) : xstrdup(name);
    if (strlen(path) >= PATH_MAX - 16)
        return sbx_error_set(c->err, -ENAMETOOLONG, "a path in the sandbox's changes is too long");
    if (strncmp(name, ".wh.", 4) == 0)
        return sbx_error_set(c->err, -EINVAL, "`/%s`: names starting with `.wh.` are reserved in layers",
                             path);
    struct stat st;
    if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return sbx_error_set(c->err, -errno, "stat `/%s`: %m", path);
    if (S_ISSOCK(st.st_mode) ||
        ((S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) &&
         !(S_ISCHR(st.st_mode) && major(st.st_rdev) == 0 && minor(st.st_rdev) == 0))) {
        c->res->skipped++; /* device nodes cannot be made inside anyway; sockets are not content */
        return 0;
    }
    int r = count_entry(c, path);
    if (r < 0)
        return r;
    uid_t uid;
    gid_t gid;
    if (S_ISCHR(st.st_mode)) {
        /* A whiteout: the name is deleted from the layers below. Its owner does not matter. */
        if (mknodat(dst, name, S_IFCHR | 0600, makedev(0, 0)) < 0)
            return sbx_error_set(c->err, -errno, "whiteout `/%s`: %m", path);
        _cleanup_free_ char *wh =
            prefix[0] ? xasprintf("%s/.wh.%s", prefix, name) : xasprintf(".wh.%s", name);
        return tar_header(c, wh, AE_IFREG, 0, 0, 0, NULL, 0, NULL, NULL);
    }
    if ((r = shift_ids(c, &st, path, &uid, &gid)) < 0)
        return r;
    if (S_ISREG(st.st_mode))
        return copy_file(c, src, dst, name, path, &st, uid, gid);
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(src, name, target, sizeof(target) - 1);
        if (n < 0)
            return sbx_error_set(c->err, -errno, "read link `/%s`: %m", path);
        target[n] = '\0';
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        if (symlinkat(target, dst, name) < 0 || fchownat(dst, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ||
            utimensat(dst, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
            return sbx_error_set(c->err, -errno, "symlink `/%s`: %m", path);
        return tar_header(c, path, AE_IFLNK, 0777, uid, gid, &st, 0, target, NULL);
    }
    if (S_ISFIFO(st.st_mode)) {
        if (mknodat(dst, name, S_IFIFO | 0600, 0) < 0)
            return sbx_error_set(c->err, -errno, "fifo `/%s`: %m", path);
        _cleanup_close_ int fd = openat(dst, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        if (fd < 0 || fchownat(dst, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ||
            fchmodat(dst, name, st.st_mode & 07777, 0) < 0 ||
            utimensat(dst, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
            return sbx_error_set(c->err, -errno, "fifo `/%s`: %m", path);
        return tar_header(c, path, AE_IFIFO, st.st_mode & 07777, uid, gid, &st, 0, NULL, NULL);
    }
    if (!S_ISDIR(st.st_mode))
        return sbx_error_set(c->err, -EINVAL, "`/%s` has an unknown file type", path);
    if (depth >= DEPTH_MAX)
        return sbx_error_set(c->err, -ELOOP, "the sandbox's changes nest deeper than %d directories",
                             DEPTH_MAX);
    _cleanup_close_ int sfd = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0)
        return sbx_error_set(c->err, -errno, "open `/%s`: %m", path);
    if ((r = check_overlay_xattrs(c, sfd, path)) < 0)
        return r;
    if (mkdirat(dst, name, 0700) < 0)
        return sbx_error_set(c->err, -errno, "create `/%s` in the layer: %m", path);
    _cleanup_close_ int dfd = openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return sbx_error_set(c->err, -errno, "open `/%s` in the layer: %m", path);
    _cleanup_free_ char *dir_name = xasprintf("%s/", path);
    if ((r = tar_header(c, dir_name, AE_IFDIR, st.st_mode & 07777, uid, gid, &st, 0, NULL, NULL)) < 0)
        return r;
    char v[4];
    ssize_t vn = fgetxattr(sfd, "trusted.overlay.opaque", v, sizeof(v));
    if (vn == 1 && v[0] == 'y') {
        if (fsetxattr(dfd, "trusted.overlay.opaque", "y", 1, 0) < 0)
            return sbx_error_set(c->err, -errno, "mark `/%s` opaque: %m", path);
        _cleanup_free_ char *opq = xasprintf("%s/.wh..wh..opq", path);
        if ((r = tar_header(c, opq, AE_IFREG, 0, 0, 0, NULL, 0, NULL, NULL)) < 0)
            return r;
    }
    if ((r = copy_dir(c, sfd, dfd, path, depth + 1)) < 0)
        return r;
    return set_meta(c, dfd, path, uid, gid, &st); /* after its entries: their creation changed its mtime */
}

static int copy_dir(struct cap *c, int src, int dst, const char *prefix, int depth)
{
    char **names = NULL;
    size_t n = 0;
    int r = list_dir(src, &names, &n);
    if (r < 0)
        return sbx_error_set(c->err, r, "list `/%s`: %s", prefix, strerror(-r));
    for (size_t i = 0; i < n && r >= 0; i++)
        r = copy_entry(c, src, dst, names[i], prefix, depth);
    free_names(names, n);
    return r;
}

int capture_copy_layer(int src_fd, int dst_fd, uid_t uid_base, const struct capture_limits *lim,
                       struct capture_result *ret, sbx_error *err)
{
    *ret = (struct capture_result){0};
    struct cap c = {.base = uid_base, .lim = lim, .res = ret, .err = err, .dst_root = dst_fd};
    c.buf = xmalloc(CHUNK);
    c.md = EVP_MD_CTX_new();
    c.ar = archive_write_new();
    int r = 0;
    if (!c.md || !c.ar || EVP_DigestInit_ex(c.md, EVP_sha256(), NULL) != 1)
        r = sbx_error_set(err, -ENOMEM, "set up the layer hash");
    else if (archive_write_set_format_pax_restricted(c.ar) != ARCHIVE_OK ||
             archive_write_open(c.ar, &c, NULL, hash_write, NULL) != ARCHIVE_OK)
        r = sbx_error_set(err, -EIO, "set up the layer tar: %s", archive_error_string(c.ar));
    struct stat st;
    if (r == 0 && fstat(src_fd, &st) < 0)
        r = sbx_error_set(err, -errno, "stat the upper dir: %m");
    uid_t uid;
    gid_t gid;
    if (r == 0 && (r = shift_ids(&c, &st, "", &uid, &gid)) == 0 &&
        (r = copy_dir(&c, src_fd, dst_fd, "", 0)) == 0) {
        /* The layer's root is the merged root: its owner and mode are the sandbox's root dir's. */
        if (fchown(dst_fd, uid, gid) < 0 || fchmod(dst_fd, st.st_mode & 07777) < 0)
            r = sbx_error_set(err, -errno, "set the layer root's owner: %m");
    }
    if (r == 0 && archive_write_close(c.ar) != ARCHIVE_OK)
        r = sbx_error_set(err, -EIO, "finish the layer tar: %s", archive_error_string(c.ar));
    if (r == 0) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        EVP_DigestFinal_ex(c.md, md, &len);
        int off = snprintf(ret->diff_id, sizeof(ret->diff_id), "sha256:");
        for (unsigned i = 0; i < len && off < (int)sizeof(ret->diff_id) - 2; i++)
            off += snprintf(ret->diff_id + off, sizeof(ret->diff_id) - (size_t)off, "%02x", md[i]);
    }
    if (c.ar)
        archive_write_free(c.ar);
    EVP_MD_CTX_free(c.md);
    for (size_t i = 0; i < c.n_links; i++)
        free(c.links[i].path);
    free(c.links);
    free(c.buf);
    return r;
}
