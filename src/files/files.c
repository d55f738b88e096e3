/* Safe file operations inside a sandbox root. See files.h for the resolution rules.
 *
 * Shape of every operation: normalise the path lexically, split it into parent + last component,
 * resolve the parent with openat2(RESOLVE_IN_ROOT) to a pinned O_PATH dir_fd, then act on the last
 * component with a *at() call that does not follow it. A symlink swapped in afterwards can only change
 * what the last component is, never where the parent is. */
#include "files/files.h"

#include <assert.h>
#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/util.h"

#define FILES_SPACE_MARGIN (16u << 20)

bool files_disable_o_tmpfile = false;
int files_space_fd = -1;

/* A sandbox's disk is a sparse image on the data dir: its blocks are taken from the host when written
 * back, after the write(2)s succeeded. When the host's filesystem could not take `bytes` more (with a
 * margin), a write fails now with ENOSPC instead of answering 200 and losing the data at writeback.
 * (Writes racing for the last megabytes can still lose that race; the margin makes it unlikely.) */
static int check_space(uint64_t bytes)
{
    struct statfs st;
    if (files_space_fd < 0 || fstatfs(files_space_fd, &st) < 0)
        return 0;
    uint64_t avail = (uint64_t)st.f_bavail * (uint64_t)st.f_bsize;
    return avail < bytes + FILES_SPACE_MARGIN ? -ENOSPC : 0;
}

#define RESOLVE_SANDBOX (RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
#define OPENAT2_RETRIES 32

/* --- errors --------------------------------------------------------------------------------------- */

static int fail(sbx_error *err, int r, const char *op, const char *path)
{
    switch (-r) {
    case ENOENT:
        return sbx_error_set(err, r, "%s `%s`: no such file or directory", op, path);
    case ELOOP:
    case EXDEV:
        return sbx_error_set(err, r, "%s `%s`: path escapes or loops", op, path);
    case ENOTDIR:
        return sbx_error_set(err, r, "%s `%s`: a path component is not a directory", op, path);
    default:
        return sbx_error_set(err, r, "%s `%s`: %s", op, path, strerror(-r));
    }
}

/* --- paths ---------------------------------------------------------------------------------------- */

int files_path_normalize(const char *path, size_t len, char ret[PATH_MAX], sbx_error *err)
{
    if (!path || len == 0)
        return sbx_error_set(err, -EINVAL, "path is empty");
    if (memchr(path, '\0', len))
        return sbx_error_set(err, -EINVAL, "path contains a NUL byte");
    if (len >= PATH_MAX)
        return sbx_error_set(err, -ENAMETOOLONG, "path is longer than %d bytes", PATH_MAX - 1);
    if (path[0] != '/')
        return sbx_error_set(err, -EINVAL, "path `%.*s` is not absolute", (int)len, path);

    size_t out = 0; /* ret[0..out) is "" or "/a/b" (no trailing slash) */
    size_t i = 0;
    while (i < len) {
        while (i < len && path[i] == '/')
            i++;
        size_t start = i;
        while (i < len && path[i] != '/')
            i++;
        size_t clen = i - start;
        if (clen == 0 || (clen == 1 && path[start] == '.'))
            continue;
        if (clen == 2 && path[start] == '.' && path[start + 1] == '.') {
            while (out > 0 && ret[out - 1] != '/')
                out--;
            if (out > 0)
                out--; /* drop the slash too; ".." at the root stays at the root */
            continue;
        }
        if (clen > NAME_MAX)
            return sbx_error_set(err, -ENAMETOOLONG, "a component of path `%.*s` is longer than %d bytes",
                                 (int)len, path, NAME_MAX);
        ret[out++] = '/';
        memcpy(ret + out, path + start, clen);
        out += clen;
    }
    if (out == 0)
        ret[out++] = '/';
    ret[out] = '\0';
    return 0;
}

static int normalize(const char *path, char ret[PATH_MAX], sbx_error *err)
{
    if (!path)
        return sbx_error_set(err, -EINVAL, "path is missing");
    return files_path_normalize(path, strnlen(path, PATH_MAX), ret, err);
}

/* Splits a normalised path other than "/" into its parent (in place) and last component. */
static void split(char *norm, char ret_name[256])
{
    char *slash = strrchr(norm, '/');
    assert(slash && slash[1]);
    snprintf(ret_name, 256, "%s", slash + 1);
    if (slash == norm)
        norm[1] = '\0';
    else
        *slash = '\0';
}

static bool is_root(const char *norm)
{
    return norm[0] == '/' && norm[1] == '\0';
}

/* --- resolution ----------------------------------------------------------------------------------- */

/* openat2 inside the root; returns an fd or -errno. Retries the -EAGAIN that RESOLVE_IN_ROOT returns
 * when a concurrent rename could have let ".." escape. */
static int resolve(int rootfd, const char *path, int flags, uint64_t extra)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = RESOLVE_SANDBOX | extra};
    for (int i = 0; i < OPENAT2_RETRIES; i++) {
        int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
        if (fd >= 0)
            return fd;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
    }
    return -EAGAIN;
}

/* A volume is bound into the sandbox's tree through an idmapped mount, and the host sees that mount in
 * the rootfs too. Host root (fsuid 0) is outside such a mount's ids, so the kernel refuses it every
 * create there (mkdir, open O_CREAT/O_TMPFILE, link, rename to a new name) with EOVERFLOW. Those calls are
 * made again as the sandbox's root: fsuid/fsgid uid:gid (per thread, restored at once), which the mount
 * maps; the new entry then belongs to the sandbox's root, as the chown that follows makes it anyway. */
#define AS_OWNER_ON_EOVERFLOW(uid, gid, call)                                                                \
    ({                                                                                                       \
        __typeof__(call) _r = (call);                                                                        \
        if (_r < 0 && errno == EOVERFLOW) {                                                                  \
            int _old_gid = setfsgid(gid), _old_uid = setfsuid(uid);                                          \
            _r = (call);                                                                                     \
            int _saved = errno;                                                                              \
            setfsuid((uid_t)_old_uid);                                                                       \
            setfsgid((gid_t)_old_gid);                                                                       \
            errno = _saved;                                                                                  \
        }                                                                                                    \
        _r;                                                                                                  \
    })

/* Opens one direct child of dir_fd without following it, for chown/chmod/readdir. */
static int open_child_dir(int dir_fd, const char *name, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC),
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV};
    int fd = (int)RETRY_EINTR(syscall(SYS_openat2, dir_fd, name, &how, sizeof(how)));
    return fd < 0 ? -errno : fd;
}

static int set_owner_mode(int fd, mode_t mode, uid_t uid, gid_t gid)
{
    if (fchown(fd, uid, gid) < 0)
        return -errno;
    if (fchmod(fd, mode & 07777) < 0) /* after chown, which clears set-id bits */
        return -errno;
    return 0;
}

/* mkdir -p of a normalised path; returns an O_PATH fd of the directory or -errno. */
static int mkdir_p_fd(int rootfd, const char *norm, mode_t mode, uid_t uid, gid_t gid)
{
    int fd = resolve(rootfd, norm, O_PATH | O_DIRECTORY, 0);
    if (fd != -ENOENT)
        return fd; /* exists, or a failure mkdir cannot fix (ENOTDIR, ELOOP, ...) */

    _cleanup_close_ int cur = resolve(rootfd, "/", O_PATH | O_DIRECTORY, 0);
    if (cur < 0)
        return cur;
    char prefix[PATH_MAX];
    size_t i = 0, n = strlen(norm);
    while (i < n) {
        size_t start = ++i; /* skip the slash */
        while (i < n && norm[i] != '/')
            i++;
        memcpy(prefix, norm, i);
        prefix[i] = '\0';
        char name[NAME_MAX + 1];
        memcpy(name, norm + start, i - start);
        name[i - start] = '\0';

        int next = resolve(rootfd, prefix, O_PATH | O_DIRECTORY, 0);
        if (next == -ENOENT) {
            if (AS_OWNER_ON_EOVERFLOW(uid, gid, mkdirat(cur, name, 0700)) == 0) {
                /* Ours: open it without following (it may have been swapped for a symlink already) and
                 * give it its owner and mode. */
                _cleanup_close_ int dfd = open_child_dir(cur, name, O_RDONLY);
                if (dfd < 0)
                    return dfd;
                int r = set_owner_mode(dfd, mode, uid, gid);
                if (r < 0)
                    return r;
                next = resolve(dfd, "/", O_PATH | O_DIRECTORY, 0);
            } else if (errno == EEXIST) {
                /* Raced with another creator, or a dangling symlink: look once more. */
                next = resolve(rootfd, prefix, O_PATH | O_DIRECTORY, 0);
                if (next == -ENOENT)
                    next = -ENOTDIR; /* a dangling symlink where a directory should be */
            } else {
                next = -errno;
            }
        }
        if (next < 0)
            return next;
        closep(&cur);
        cur = next;
    }
    return TAKE_FD(cur);
}

/* --- entries -------------------------------------------------------------------------------------- */

const char *files_type_to_string(enum files_type t)
{
    switch (t) {
    case FILES_TYPE_FILE:
        return "file";
    case FILES_TYPE_DIR:
        return "dir";
    case FILES_TYPE_SYMLINK:
        return "symlink";
    case FILES_TYPE_OTHER:
    default:
        return "other";
    }
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when the byte at s does not start one. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* A JSON string of a file name or path. Names are bytes, JSON strings are UTF-8: each byte that is not
 * part of valid UTF-8 becomes U+FFFD, so listing a directory a sandbox filled with odd names still works. */
static json_t *name_json(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    struct sbx_buf b = SBX_BUF_INIT;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq(p);
        if (n) {
            sbx_buf_append(&b, p, n);
            p += n;
        } else {
            sbx_buf_append(&b, "\xef\xbf\xbd", 3);
            p++;
        }
    }
    j = json_stringn(b.base ? b.base : "", b.len);
    sbx_buf_done(&b);
    if (!j)
        abort(); /* OOM */
    return j;
}

json_t *files_entry_to_json(const struct files_entry *e)
{
    char mode[8], mtime[32];
    snprintf(mode, sizeof(mode), "%04o", (unsigned)(e->mode & 07777));
    time_t t = (time_t)e->mtime_sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(mtime, sizeof(mtime), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(mtime, sizeof(mtime), "1970-01-01T00:00:00Z");
    json_t *o = json_pack("{s:o, s:o, s:s, s:I, s:s, s:s, s:o}", "name", name_json(e->name), "path",
                          name_json(e->path), "type", files_type_to_string(e->type), "size",
                          (json_int_t)e->size, "mode", mode, "mtime", mtime, "link_target",
                          e->type == FILES_TYPE_SYMLINK ? name_json(e->link_target) : json_null());
    if (!o)
        abort(); /* OOM */
    return o;
}

/* Fills ret for `name` in dir_fd (lstat semantics); path is the entry's normalised sandbox path. */
static int entry_at(int dir_fd, const char *name, const char *path, struct files_entry *ret)
{
    struct stat st;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW | (name[0] ? 0 : AT_EMPTY_PATH)) < 0)
        return -errno;
    ret->link_target[0] = '\0';
    const char *slash = strrchr(path, '/');
    snprintf(ret->name, sizeof(ret->name), "%s", slash && slash[1] ? slash + 1 : "/");
    snprintf(ret->path, sizeof(ret->path), "%s", path);
    ret->type = S_ISREG(st.st_mode)   ? FILES_TYPE_FILE
                : S_ISDIR(st.st_mode) ? FILES_TYPE_DIR
                : S_ISLNK(st.st_mode) ? FILES_TYPE_SYMLINK
                                      : FILES_TYPE_OTHER;
    ret->size = (uint64_t)st.st_size;
    ret->mode = st.st_mode & 07777;
    ret->mtime_sec = (int64_t)st.st_mtim.tv_sec;
    if (ret->type == FILES_TYPE_SYMLINK) {
        ssize_t n = readlinkat(dir_fd, name, ret->link_target, sizeof(ret->link_target) - 1);
        ret->link_target[n > 0 ? n : 0] = '\0';
    }
    return 0;
}

int files_stat(int rootfd, const char *path, struct files_entry *ret, sbx_error *err)
{
    char norm[PATH_MAX], name[256];
    int r = normalize(path, norm, err);
    if (r < 0)
        return r;
    if (is_root(norm)) {
        r = entry_at(rootfd, "", "/", ret);
        return r < 0 ? fail(err, r, "stat", norm) : 0;
    }
    char parent[PATH_MAX];
    memcpy(parent, norm, sizeof(parent));
    split(parent, name);
    _cleanup_close_ int dir_fd = resolve(rootfd, parent, O_PATH | O_DIRECTORY, 0);
    if (dir_fd < 0)
        return fail(err, dir_fd, "stat", norm);
    r = entry_at(dir_fd, name, norm, ret);
    return r < 0 ? fail(err, r, "stat", norm) : 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct files_entry *)a)->name, ((const struct files_entry *)b)->name);
}

int files_list(int rootfd, const char *path, struct files_entry **ret_entries, size_t *ret_n,
               size_t max_entries, sbx_error *err)
{
    char norm[PATH_MAX];
    int r = normalize(path, norm, err);
    if (r < 0)
        return r;
    int fd = resolve(rootfd, norm, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fail(err, fd, "list", norm);
    _cleanup_closedir_ DIR *d = fdopendir(fd);
    if (!d) {
        r = -errno;
        close(fd);
        return fail(err, r, "list", norm);
    }
    _cleanup_free_ struct files_entry *v = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                return fail(err, -errno, "list", norm);
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n >= max_entries)
            return sbx_error_set(err, -E2BIG, "list `%s`: more than %zu entries", norm, max_entries);
        char child[PATH_MAX];
        int k = snprintf(child, sizeof(child), "%s/%s", is_root(norm) ? "" : norm, de->d_name);
        if (k < 0 || (size_t)k >= sizeof(child))
            continue; /* cannot be named by a client path either */
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            if (cap > max_entries)
                cap = max_entries;
            v = xrealloc(v, cap * sizeof(*v));
        }
        r = entry_at(dirfd(d), de->d_name, child, &v[n]);
        if (r == -ENOENT)
            continue; /* removed while we listed */
        if (r < 0)
            return fail(err, r, "list", child);
        n++;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), entry_cmp);
    *ret_entries = n ? TAKE_PTR(v) : NULL;
    *ret_n = n;
    return 0;
}

/* --- mkdir, remove, move -------------------------------------------------------------------------- */

int files_mkdir_p(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, sbx_error *err)
{
    char norm[PATH_MAX];
    int r = normalize(path, norm, err);
    if (r < 0)
        return r;
    int fd = mkdir_p_fd(rootfd, norm, mode, uid, gid);
    if (fd < 0)
        return fd == -ENOTDIR ? sbx_error_set(err, fd, "mkdir `%s`: exists and is not a directory", norm)
                              : fail(err, fd, "mkdir", norm);
    close(fd);
    return 0;
}

/* rm -rf of `name` in dir_fd: never follows symlinks and never enters another mount (-EXDEV). */
static int rm_rf_at(int dir_fd, const char *name)
{
    if (unlinkat(dir_fd, name, 0) == 0)
        return 0;
    if (errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int fd = open_child_dir(dir_fd, name, O_RDONLY);
    if (fd < 0)
        return fd;
    _cleanup_closedir_ DIR *d = fdopendir(fd);
    if (!d) {
        int r = -errno;
        close(fd);
        return r;
    }
    int r = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno && r == 0)
                r = -errno;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int k = rm_rf_at(dirfd(d), de->d_name);
        if (k < 0 && r == 0)
            r = k;
    }
    if (r < 0)
        return r;
    if (unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int files_remove(int rootfd, const char *path, bool recursive, sbx_error *err)
{
    char norm[PATH_MAX], name[256];
    int r = normalize(path, norm, err);
    if (r < 0)
        return r;
    if (is_root(norm))
        return sbx_error_set(err, -EINVAL, "remove `/`: refusing to remove the sandbox root");
    char parent[PATH_MAX];
    memcpy(parent, norm, sizeof(parent));
    split(parent, name);
    /* The parent may be inside a volume's mount; what it removes may not be a mount point (EBUSY) nor
     * reach into one (rm_rf_at stays on one mount). */
    _cleanup_close_ int dir_fd = resolve(rootfd, parent, O_PATH | O_DIRECTORY, 0);
    if (dir_fd < 0)
        return fail(err, dir_fd, "remove", norm);
    struct stat st;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return fail(err, -errno, "remove", norm);
    if (!S_ISDIR(st.st_mode))
        r = unlinkat(dir_fd, name, 0) < 0 ? -errno : 0;
    else if (!recursive)
        r = unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
    else
        r = rm_rf_at(dir_fd, name);
    if (r == -EEXIST)
        r = -ENOTEMPTY;
    if (r == -ENOTEMPTY)
        return sbx_error_set(err, r, "remove `%s`: directory not empty (use recursive)", norm);
    if (r == -EBUSY || r == -EXDEV)
        return sbx_error_set(err, r, "remove `%s`: is or contains a mount point", norm);
    return r < 0 ? fail(err, r, "remove", norm) : 0;
}

int files_move(int rootfd, const char *from, const char *to, bool overwrite, uid_t uid, gid_t gid,
               sbx_error *err)
{
    char fnorm[PATH_MAX], tnorm[PATH_MAX], fname[256], tname[256];
    int r = normalize(from, fnorm, err);
    if (r < 0)
        return r;
    r = normalize(to, tnorm, err);
    if (r < 0)
        return r;
    if (is_root(fnorm) || is_root(tnorm))
        return sbx_error_set(err, -EINVAL, "move `%s` to `%s`: cannot move the sandbox root", fnorm, tnorm);
    if (strcmp(fnorm, tnorm) == 0)
        return 0;
    size_t flen = strlen(fnorm);
    if (strncmp(tnorm, fnorm, flen) == 0 && tnorm[flen] == '/')
        return sbx_error_set(err, -EINVAL, "move `%s` to `%s`: cannot move a directory into itself", fnorm,
                             tnorm);

    char fparent[PATH_MAX], tparent[PATH_MAX];
    memcpy(fparent, fnorm, sizeof(fparent));
    memcpy(tparent, tnorm, sizeof(tparent));
    split(fparent, fname);
    split(tparent, tname);
    /* Either end may be inside a volume's mount; renameat2 refuses a move between mounts (EXDEV). */
    _cleanup_close_ int fdir = resolve(rootfd, fparent, O_PATH | O_DIRECTORY, 0);
    if (fdir < 0)
        return fail(err, fdir, "move", fnorm);
    struct stat st;
    if (fstatat(fdir, fname, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return fail(err, -errno, "move", fnorm);
    _cleanup_close_ int tdir = mkdir_p_fd(rootfd, tparent, 0755, uid, gid);
    if (tdir < 0)
        return fail(err, tdir, "move: create parent of", tnorm);
    if (AS_OWNER_ON_EOVERFLOW(uid, gid,
                              renameat2(fdir, fname, tdir, tname, overwrite ? 0 : RENAME_NOREPLACE)) < 0) {
        r = -errno;
        if (r == -EEXIST)
            return sbx_error_set(err, r, "move `%s` to `%s`: destination exists", fnorm, tnorm);
        if (r == -ENOTEMPTY)
            return sbx_error_set(err, r, "move `%s` to `%s`: destination is a non-empty directory", fnorm,
                                 tnorm);
        if (r == -EXDEV)
            return sbx_error_set(err, r, "move `%s` to `%s`: crosses a mount point", fnorm, tnorm);
        return fail(err, r, "move", fnorm);
    }
    return 0;
}

/* --- streaming writes ----------------------------------------------------------------------------- */

static void writer_release(struct files_writer *w)
{
    closep(&w->fd);
    w->fd = -1;
    if (w->linked)
        (void)unlinkat(w->dirfd, w->tmpname, 0);
    w->linked = false;
    closep(&w->dirfd);
    w->dirfd = -1;
}

static int random_tmpname(char ret[64])
{
    uint64_t rnd;
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) {
        errno = EIO;
        return -EIO;
    }
    snprintf(ret, 64, ".sbx-upload-%016llx", (unsigned long long)rnd);
    return 0;
}

int files_writer_open(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, struct files_writer *w,
                      sbx_error *err)
{
    memset(w, 0, offsetof(struct files_writer, path));
    w->dirfd = w->fd = -1;
    w->path[0] = '\0';
    w->uid = uid;
    w->gid = gid;
    w->written = 0;
    char norm[PATH_MAX], parent[PATH_MAX];
    int r = normalize(path, norm, err);
    if (r < 0)
        return r;
    if (is_root(norm))
        return sbx_error_set(err, -EISDIR, "write `/`: is a directory");
    memcpy(parent, norm, sizeof(parent));
    split(parent, w->name);
    memcpy(w->path, norm, sizeof(w->path));

    w->dirfd = mkdir_p_fd(rootfd, parent, 0755, uid, gid);
    if (w->dirfd < 0) {
        r = w->dirfd;
        w->dirfd = -1;
        return fail(err, r, "write: create parent of", norm);
    }
    struct stat st;
    if (fstatat(w->dirfd, w->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
        writer_release(w);
        return sbx_error_set(err, -EISDIR, "write `%s`: is a directory", norm);
    }

    w->fd =
        files_disable_o_tmpfile
            ? (errno = EOPNOTSUPP, -1)
            : AS_OWNER_ON_EOVERFLOW(uid, gid, openat(w->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
    if (w->fd >= 0) {
        w->o_tmpfile = true;
    } else if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
        for (int i = 0; i < 8 && w->fd < 0; i++) {
            r = random_tmpname(w->tmpname);
            if (r < 0)
                break;
            w->fd = AS_OWNER_ON_EOVERFLOW(
                uid, gid,
                openat(w->dirfd, w->tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
            if (w->fd < 0 && errno != EEXIST)
                break;
        }
        w->linked = w->fd >= 0;
    }
    if (w->fd < 0) {
        r = -errno;
        writer_release(w);
        return fail(err, r, "write: create temporary file for", norm);
    }
    r = set_owner_mode(w->fd, mode, uid, gid);
    if (r < 0) {
        writer_release(w);
        return fail(err, r, "write: set owner and mode of", norm);
    }
    return 0;
}

int files_writer_write(struct files_writer *w, const void *data, size_t len, sbx_error *err)
{
    if (w->fd < 0)
        return sbx_error_set(err, -EBADF, "write `%s`: writer is closed", w->path);
    int r = write_all(w->fd, data, len);
    if (r < 0)
        return fail(err, r, "write", w->path);
    w->written += len;
    return 0;
}

int files_writer_commit(struct files_writer *w, sbx_error *err)
{
    int r;
    if (w->fd < 0)
        return sbx_error_set(err, -EBADF, "write `%s`: writer is closed", w->path);
    r = check_space(w->written);
    if (r < 0) {
        writer_release(w);
        return fail(err, r, "write", w->path);
    }
    if (w->o_tmpfile) {
        for (int i = 0; i < 8 && !w->linked; i++) {
            r = random_tmpname(w->tmpname);
            if (r < 0)
                break;
            if (AS_OWNER_ON_EOVERFLOW(w->uid, w->gid,
                                      linkat(w->fd, "", w->dirfd, w->tmpname, AT_EMPTY_PATH)) == 0) {
                w->linked = true;
            } else if (errno == EPERM || errno == ENOENT) { /* no CAP_DAC_READ_SEARCH: go through /proc */
                char proc[64];
                snprintf(proc, sizeof(proc), "/proc/self/fd/%d", w->fd);
                if (AS_OWNER_ON_EOVERFLOW(
                        w->uid, w->gid, linkat(AT_FDCWD, proc, w->dirfd, w->tmpname, AT_SYMLINK_FOLLOW)) == 0)
                    w->linked = true;
                else if (errno != EEXIST)
                    break;
            } else if (errno != EEXIST) {
                break;
            }
        }
        if (!w->linked) {
            r = -errno;
            writer_release(w);
            return fail(err, r ? r : -EIO, "write: link temporary file for", w->path);
        }
    }
    /* rename(2) replaces a file or symlink atomically and fails with EISDIR on a directory. */
    if (AS_OWNER_ON_EOVERFLOW(w->uid, w->gid, renameat(w->dirfd, w->tmpname, w->dirfd, w->name)) < 0) {
        r = -errno;
        writer_release(w);
        if (r == -EISDIR || r == -ENOTEMPTY || r == -EEXIST)
            return sbx_error_set(err, -EISDIR, "write `%s`: is a directory", w->path);
        return fail(err, r, "write: rename into place", w->path);
    }
    w->linked = false;
    writer_release(w);
    return 0;
}

void files_writer_abort(struct files_writer *w)
{
    writer_release(w);
}

/* --- reads ---------------------------------------------------------------------------------------- */

int files_open_read(int rootfd, const char *path, int *ret_fd, uint64_t *ret_size, sbx_error *err)
{
    char norm[PATH_MAX];
    int r = normalize(path, norm, err);
    if (r < 0)
        return r;
    /* O_NONBLOCK so that a FIFO cannot block the daemon; checked and cleared below. */
    _cleanup_close_ int fd = resolve(rootfd, norm, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
    if (fd < 0)
        return fail(err, fd, "read", norm);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return fail(err, -errno, "read", norm);
    if (S_ISDIR(st.st_mode))
        return sbx_error_set(err, -EISDIR, "read `%s`: is a directory", norm);
    if (!S_ISREG(st.st_mode))
        return sbx_error_set(err, -EINVAL, "read `%s`: not a regular file", norm);
    r = fd_set_nonblock(fd, false);
    if (r < 0)
        return fail(err, r, "read", norm);
    *ret_fd = TAKE_FD(fd);
    *ret_size = (uint64_t)st.st_size;
    return 0;
}

int files_open_dir(int rootfd, const char *path, int *ret_fd, sbx_error *err)
{
    char norm[PATH_MAX];
    int r = normalize(path, norm, err);
    if (r < 0)
        return r;
    int fd = resolve(rootfd, norm, O_PATH | O_DIRECTORY, 0);
    if (fd < 0)
        return fail(err, fd, "open directory", norm);
    *ret_fd = fd;
    return 0;
}

/* --- ranges --------------------------------------------------------------------------------------- */

/* Parses decimal digits at *p; -EINVAL when there are none or on overflow. */
static int parse_u64(const char **p, uint64_t *ret)
{
    const char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    for (; *s >= '0' && *s <= '9'; s++) {
        uint64_t digit = (uint64_t)(*s - '0');
        if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && digit > UINT64_MAX % 10))
            return -EINVAL;
        v = v * 10 + digit;
    }
    *p = s;
    *ret = v;
    return 0;
}

int files_parse_range(const char *range, uint64_t size, uint64_t *ret_start, uint64_t *ret_len)
{
    if (!range)
        return -EINVAL;
    const char *p = range;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "bytes", 5) != 0)
        return -EINVAL;
    p += 5;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p++ != '=')
        return -EINVAL;
    while (*p == ' ' || *p == '\t')
        p++;

    uint64_t a = 0, b = 0;
    bool has_a = false, has_b = false;
    if (*p != '-') {
        if (parse_u64(&p, &a) < 0)
            return -EINVAL;
        has_a = true;
    }
    if (*p++ != '-')
        return -EINVAL;
    if (*p >= '0' && *p <= '9') {
        if (parse_u64(&p, &b) < 0)
            return -EINVAL;
        has_b = true;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0')
        return -EINVAL; /* trailing garbage or several ranges: ignore the header */
    if (!has_a && !has_b)
        return -EINVAL;

    if (!has_a) { /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return -ERANGE;
        uint64_t n = b < size ? b : size;
        *ret_start = size - n;
        *ret_len = n;
        return 0;
    }
    if (has_b && b < a)
        return -EINVAL;
    if (a >= size)
        return -ERANGE;
    uint64_t last = has_b && b < size - 1 ? b : size - 1;
    *ret_start = a;
    *ret_len = last - a + 1;
    return 0;
}
