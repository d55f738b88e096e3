/* Safe file operations inside a sandbox's root filesystem, done from the host as root.
 *
 * Every path is a client-controlled absolute path inside the sandbox. It is validated and normalised
 * lexically (".", "..", repeated slashes; ".." at the root stays at the root), then resolved with
 * openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) relative to an O_PATH dirfd of the rootfs, so `..`,
 * absolute symlinks and symlinks swapped in during the call all stay inside the root. No host path is
 * ever built by concatenation.
 *
 * Symlinks: intermediate components follow symlinks (inside the root). The final component is taken
 * literally by stat, remove, move and write (a write replaces a symlink with a regular file, as an
 * atomic rename does); list and read follow a final symlink (inside the root).
 *
 * Every function that can fail returns 0 or a negative errno and fills `reterr` (which may be NULL):
 * -ENOENT not found, -EEXIST/-ENOTEMPTY conflict, -EINVAL/-EISDIR/-ENOTDIR/-ENAMETOOLONG/-ELOOP/-EXDEV
 * invalid argument, -E2BIG too large. The HTTP mapping is sbx_error_http_status(). */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

enum files_type {
    FILES_TYPE_FILE,
    FILES_TYPE_DIR,
    FILES_TYPE_SYMLINK,
    FILES_TYPE_OTHER,
    _FILES_TYPE_MAX,
    _FILES_TYPE_INVALID = -EINVAL,
};

struct files_entry {
    char name[256];      /* last component; "/" for the root */
    char path[PATH_MAX]; /* normalised absolute path inside the sandbox */
    enum files_type type;
    uint64_t size;
    mode_t mode; /* permission bits (07777) */
    int64_t mtime_sec;
    char link_target[PATH_MAX]; /* symlinks only, "" otherwise */
};

const char *files_type_to_string(enum files_type t);

/* The docs/api.md entry object: {"name","path","type","size","mode":"0644","mtime":RFC 3339 UTC,
 * "link_target": string|null}. Returns a new reference. */
json_t *files_entry_to_json(const struct files_entry *e);

/* Validates and normalises a client path of `len` bytes (embedded NULs are rejected) into ret
 * (PATH_MAX bytes). It must be absolute, shorter than PATH_MAX, each component at most NAME_MAX. */
int files_path_normalize(const char *path, size_t len, char ret[PATH_MAX], sbx_error *reterr);

/* lstat semantics for the final component. */
int files_stat(int rootfd, const char *path, struct files_entry *ret, sbx_error *reterr);

/* Lists a directory (following a final symlink inside the root), sorted by name, without "." and "..".
 * More than max_entries entries is -E2BIG. *ret_entries is a new array the caller frees (NULL when
 * empty). */
int files_list(int rootfd, const char *path, struct files_entry **ret_entries, size_t *ret_n,
               size_t max_entries, sbx_error *reterr);

/* mkdir -p. Directories created get owner uid:gid and exactly `mode` (no umask). An existing directory
 * is success; an existing non-directory is -ENOTDIR. */
int files_mkdir_p(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, sbx_error *reterr);

/* Removes a file, symlink or empty directory; with recursive, a whole tree. Never crosses mount points
 * (-EXDEV) and never follows symlinks. A non-empty directory without recursive is -ENOTEMPTY. "/" is
 * -EINVAL. */
int files_remove(int rootfd, const char *path, bool recursive, sbx_error *reterr);

/* Renames from → to (renameat2 RENAME_NOREPLACE unless overwrite), creating missing parents of `to`
 * owned by uid:gid with mode 0755. Moving "/" or onto "/" is -EINVAL; an existing `to` without
 * overwrite is -EEXIST. */
int files_move(int rootfd, const char *from, const char *to, bool overwrite, uid_t uid, gid_t gid,
               sbx_error *reterr);

/* A streaming, atomic file write. Embedded by the caller; the fields are private. */
struct files_writer {
    int dirfd;      /* O_PATH fd of the target's parent directory */
    int fd;         /* the temporary file being written */
    bool linked;    /* the temporary file has a name (tmpname) in dirfd */
    bool o_tmpfile; /* opened with O_TMPFILE: linked only at commit */
    char tmpname[64];
    char name[256];      /* the target's last component */
    char path[PATH_MAX]; /* the normalised target path (for messages and a later files_stat) */
    uint64_t written;
    uid_t uid; /* the owner of what it creates */
    gid_t gid;
};

/* Creates missing parents (0755, uid:gid) and a hidden temporary file in the target directory (O_TMPFILE
 * where the filesystem allows it, else a random ".sbx-upload-*" name), owned by uid:gid with `mode`.
 * An existing directory at the target is -EISDIR. On failure nothing is left behind and w needs no
 * cleanup. */
int files_writer_open(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, struct files_writer *w,
                      sbx_error *reterr);
/* Appends len bytes. On failure the caller still calls files_writer_abort(). */
int files_writer_write(struct files_writer *w, const void *data, size_t len, sbx_error *reterr);
/* Atomically puts the file in place (replacing a file or symlink, refusing a directory with -EISDIR) and
 * releases the writer, on success and on failure alike: no abort is needed afterwards. */
int files_writer_commit(struct files_writer *w, sbx_error *reterr);
/* Removes the temporary file and releases the writer. Idempotent. */
void files_writer_abort(struct files_writer *w);

/* Tests only: skip O_TMPFILE and use the named temporary file fallback. */
extern bool files_disable_o_tmpfile;
/* An fd (O_PATH will do) on the host filesystem that holds the sandboxes' disk images (sbxd's data dir),
 * or -1. When set, a write whose bytes that filesystem could not take (with a 16 MiB margin) fails with
 * ENOSPC at commit. */
extern int files_space_fd;

/* Opens a regular file for reading (following a final symlink inside the root); a directory is -EISDIR,
 * any other non-regular file -EINVAL. Returns a new O_RDONLY|O_CLOEXEC fd and the file's size. */
int files_open_read(int rootfd, const char *path, int *ret_fd, uint64_t *ret_size, sbx_error *reterr);

/* Opens a directory (following a final symlink inside the root) as an O_PATH|O_DIRECTORY fd, for watching
 * it with inotify through /proc/self/fd/N: the watch is on exactly the directory resolved inside the root. */
int files_open_dir(int rootfd, const char *path, int *ret_fd, sbx_error *reterr);

/* Parses one HTTP byte range ("bytes=A-B", "bytes=A-", "bytes=-N") against a file of `size` bytes.
 * Returns 0 with [*ret_start, *ret_start + *ret_len) clamped to the file, -ERANGE when unsatisfiable
 * (answer 416), -EINVAL when malformed or multi-range (ignore the header and answer 200). */
int files_parse_range(const char *range, uint64_t size, uint64_t *ret_start, uint64_t *ret_len);
