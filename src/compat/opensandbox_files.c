/* OpenSandbox's execd files API (/files/..., /directories...) on src/files: every path is resolved inside
 * the sandbox's root (openat2 RESOLVE_IN_ROOT), owners are the sandbox's own uids and names (its
 * /etc/passwd and /etc/group), and modes are octal written as decimal digits (755 is 0755), as execd
 * does. Shapes only; docs/compat/opensandbox.md. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api/internal.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "compat/opensandbox_internal.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "daemon/snapshot.h"
#include "files/files.h"
#include "http/multipart.h"
#include "runtime/runtime.h"

#define ENTRIES_MAX 1000 /* paths in one request */
#define WALK_DEPTH_MAX 64
#define WALK_VISIT_MAX 100000
#define RESULTS_MAX 10000
#define LIST_DEPTH_MAX 32
#define NAMES_FILE_MAX (4u << 20) /* /etc/passwd, /etc/group */
#define REPLACE_FILE_MAX (64u << 20)
#define UPLOAD_FILE_MAX (4ull << 30)
#define UPLOAD_META_MAX (64u * 1024)
#define PATTERN_MAX 4096

/* --- paths, modes, owners ------------------------------------------------------------------------- */

/* A client path: "~" is /root, relative paths start in the snapshot's working directory. */
static int resolve(struct sandbox *sb, const char *path, char ret[PATH_MAX], sbx_error *err)
{
    char buf[PATH_MAX];
    int n;
    if (!path || !*path)
        return sbx_error_set(err, -EINVAL, "`path` is required");
    if (path[0] == '~' && (path[1] == '/' || !path[1]))
        n = snprintf(buf, sizeof(buf), "/root%s", path + 1);
    else if (path[0] != '/')
        n = snprintf(buf, sizeof(buf), "%s/%s", snapshot_default_cwd(sb->d, sb->snapshot), path);
    else
        n = snprintf(buf, sizeof(buf), "%s", path);
    if (n < 0 || n >= PATH_MAX)
        return sbx_error_setk(err, -ENAMETOOLONG, "invalid_argument", 400, "`path` is too long");
    return files_path_normalize(buf, strlen(buf), ret, err);
}

/* An O_PATH fd of the final component itself (a symlink is not followed), resolved inside the root. */
static int open_path(struct sandbox *sb, const char *norm, int *ret_fd, sbx_error *err)
{
    struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, sb->rootfs_fd, norm, &how, sizeof(how));
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return sbx_error_setk(err, -ENOENT, "not_found", 404, "`%s` does not exist", norm);
        return sbx_error_set(err, -e, "`%s`: %s", norm, strerror(e));
    }
    *ret_fd = fd;
    return 0;
}

/* Octal permission bits written as decimal digits (755) into a mode; 0 = leave alone. */
static int parse_mode(json_t *v, mode_t *ret, sbx_error *err)
{
    *ret = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 7777)
        return sbx_error_set(err, -EINVAL, "`mode` must be octal digits written in decimal (755)");
    json_int_t d = json_integer_value(v);
    mode_t m = 0;
    for (json_int_t scale = 1; d > 0; d /= 10, scale *= 8) {
        if (d % 10 > 7)
            return sbx_error_set(err, -EINVAL, "`mode` %lld has a digit above 7",
                                 (long long)json_integer_value(v));
        m += (mode_t)(d % 10 * scale);
    }
    *ret = m;
    return 0;
}

static json_int_t mode_json(mode_t m)
{
    json_int_t out = 0, scale = 1;
    for (m &= 07777; m; m >>= 3, scale *= 10)
        out += (json_int_t)(m & 7) * scale;
    return out;
}

/* The sandbox's /etc/passwd and /etc/group, read once per request. */
struct names {
    char *passwd, *group;
    bool loaded;
};

static void names_done(struct names *n)
{
    free(n->passwd);
    free(n->group);
}

static char *read_small(struct sandbox *sb, const char *path)
{
    int fd;
    uint64_t size;
    if (files_open_read(sb->rootfs_fd, path, &fd, &size, NULL) < 0)
        return NULL;
    if (size > NAMES_FILE_MAX) {
        close(fd);
        return NULL;
    }
    char *buf = xmalloc(size + 1);
    ssize_t n = read_full(fd, buf, size);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

static void names_load(struct sandbox *sb, struct names *n)
{
    if (n->loaded)
        return;
    n->loaded = true;
    n->passwd = read_small(sb, "/etc/passwd");
    n->group = read_small(sb, "/etc/group");
}

/* The name of id in db (name:x:id:...), into ret; the number when there is none. */
static const char *name_of(const char *db, unsigned id, char *ret, size_t size)
{
    for (const char *line = db; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        const char *c1 = memchr(line, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c2 && strtoul(c2 + 1, NULL, 10) == id && (size_t)(c1 - line) < size && c2[1] >= '0' &&
            c2[1] <= '9') {
            memcpy(ret, line, (size_t)(c1 - line));
            ret[c1 - line] = 0;
            return ret;
        }
        line = nl ? nl + 1 : NULL;
    }
    snprintf(ret, size, "%u", id);
    return ret;
}

/* The id of name (or a decimal id) in db; -1 when unknown. */
static long id_of(const char *db, const char *name)
{
    char *end;
    long v = strtol(name, &end, 10);
    if (*name && !*end)
        return v >= 0 && v < (long)RUNTIME_UID_RANGE ? v : -1;
    size_t nl = strlen(name);
    for (const char *line = db; line && *line;) {
        const char *eol = strchr(line, '\n');
        const char *c1 = strchr(line, ':');
        if (c1 && (size_t)(c1 - line) == nl && memcmp(line, name, nl) == 0) {
            const char *c2 = strchr(c1 + 1, ':');
            if (c2 && (!eol || c2 < eol)) {
                v = strtol(c2 + 1, NULL, 10);
                return v >= 0 && v < (long)RUNTIME_UID_RANGE ? v : -1;
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    return -1;
}

/* A host id as the sandbox sees it (ids outside its range are nobody's). */
static unsigned inside_id(struct sandbox *sb, unsigned host)
{
    return host >= sb->uid_base && host - sb->uid_base < RUNTIME_UID_RANGE ? host - sb->uid_base : 65534;
}

/* FileInfo {path, type, size, modified_at, created_at, owner, group, mode} of norm; NULL with err. */
static json_t *file_info(struct sandbox *sb, struct names *n, const char *norm, sbx_error *err)
{
    int fd;
    if (open_path(sb, norm, &fd, err) < 0)
        return NULL;
    struct stat st;
    int r = fstat(fd, &st);
    close(fd);
    if (r < 0) {
        sbx_error_set(err, -errno, "stat `%s`: %m", norm);
        return NULL;
    }
    names_load(sb, n);
    char owner[64], group[64], mt[40], ct[40];
    const char *type = S_ISREG(st.st_mode)   ? "file"
                       : S_ISDIR(st.st_mode) ? "directory"
                       : S_ISLNK(st.st_mode) ? "symlink"
                                             : "other";
    format_time_ms(mt, sizeof(mt), (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000);
    format_time_ms(ct, sizeof(ct), (int64_t)st.st_ctim.tv_sec * 1000 + st.st_ctim.tv_nsec / 1000000);
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:I}", "path", norm, "type", type, "size",
                     (json_int_t)st.st_size, "modified_at", mt, "created_at", ct, "owner",
                     name_of(n->passwd, inside_id(sb, st.st_uid), owner, sizeof(owner)), "group",
                     name_of(n->group, inside_id(sb, st.st_gid), group, sizeof(group)), "mode",
                     mode_json(st.st_mode));
}

/* chmod (mode != 0) and chown (owner/group names or ids, NULL = unchanged) of norm, never through a
 * symlink. */
static int apply_perms(struct sandbox *sb, struct names *n, const char *norm, mode_t mode, const char *owner,
                       const char *group, sbx_error *err)
{
    int fd;
    if (open_path(sb, norm, &fd, err) < 0)
        return err->code;
    _cleanup_close_ int cfd = fd;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return sbx_error_set(err, -errno, "stat `%s`: %m", norm);
    if (S_ISLNK(st.st_mode))
        return sbx_error_set(err, -EINVAL, "`%s` is a symlink: permissions apply to its target's path", norm);
    if (owner || group) {
        names_load(sb, n);
        long uid = owner ? id_of(n->passwd, owner) : -1, gid = group ? id_of(n->group, group) : -1;
        if ((owner && uid < 0) || (group && gid < 0))
            return sbx_error_set(err, -EINVAL, "unknown %s `%s` in the sandbox",
                                 owner && uid < 0 ? "owner" : "group", owner && uid < 0 ? owner : group);
        if (fchownat(fd, "", uid < 0 ? (uid_t)-1 : sb->uid_base + (uid_t)uid,
                     gid < 0 ? (gid_t)-1 : sb->uid_base + (gid_t)gid, AT_EMPTY_PATH) < 0)
            return sbx_error_set(err, -errno, "chown `%s`: %m", norm);
    }
    if (mode) {
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        if (fchmodat(AT_FDCWD, proc, mode, 0) < 0)
            return sbx_error_set(err, -errno, "chmod `%s`: %m", norm);
    }
    return 0;
}

/* Every ?path= of the request, resolved (at least one). */
static int query_paths(struct api_ctx *c, struct sandbox *sb, char (**ret)[PATH_MAX], int *ret_n,
                       sbx_error *err)
{
    const char *raw[OS_QUERY_VALUES_MAX];
    int n = os_query_all(c->req, "path", raw, OS_QUERY_VALUES_MAX);
    if (n < 0)
        return sbx_error_set(err, -E2BIG, "at most %d `path` parameters", OS_QUERY_VALUES_MAX);
    if (n == 0)
        return sbx_error_set(err, -EINVAL, "`path` is required");
    char(*paths)[PATH_MAX] = http_request_alloc(c->req, sizeof(*paths) * (size_t)n);
    for (int i = 0; i < n; i++)
        if (resolve(sb, raw[i], paths[i], err) < 0)
            return err->code;
    *ret = paths;
    *ret_n = n;
    return 0;
}

/* --- info, delete, move, permissions, directories --------------------------------------------------- */

static void files_info(struct api_ctx *c, struct sandbox *sb)
{
    sbx_error err = {0};
    char(*paths)[PATH_MAX];
    int n;
    const char *raw[OS_QUERY_VALUES_MAX];
    os_query_all(c->req, "path", raw, OS_QUERY_VALUES_MAX);
    if (query_paths(c, sb, &paths, &n, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_FILES);
    _cleanup_(names_done) struct names names = {0};
    json_auto_t *o = json_object();
    for (int i = 0; i < n; i++) {
        json_t *fi = file_info(sb, &names, paths[i], &err);
        if (!fi)
            return os_reply_sbx(c->req, &err, OS_FILES);
        json_object_set_new(o, raw[i], fi);
    }
    http_respond_json(c->req, 200, json_incref(o));
}

static void files_delete(struct api_ctx *c, struct sandbox *sb, bool dirs)
{
    sbx_error err = {0};
    char(*paths)[PATH_MAX];
    int n;
    if (query_paths(c, sb, &paths, &n, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_FILES);
    for (int i = 0; i < n; i++) {
        struct files_entry e;
        if (files_stat(sb->rootfs_fd, paths[i], &e, &err) < 0) {
            if (err.code == -ENOENT)
                continue;
            return os_reply_sbx(c->req, &err, OS_FILES);
        }
        if (!dirs && e.type == FILES_TYPE_DIR)
            return os_reply(c->req, 400, "INVALID_REQUEST_BODY",
                            "`%s` is a directory: use DELETE /directories", paths[i]);
        if (dirs && e.type != FILES_TYPE_DIR)
            return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`%s` is not a directory: use DELETE /files",
                            paths[i]);
        if (files_remove(sb->rootfs_fd, paths[i], dirs, &err) < 0)
            return os_reply_sbx(c->req, &err, OS_FILES);
    }
    os_reply_empty(c->req, 200);
}

static void move_with_body(struct api_ctx *c, json_t *body)
{
    if (!json_is_array(body) || json_array_size(body) > ENTRIES_MAX)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY",
                        "the body must be an array of at most %d {src, dest}", ENTRIES_MAX);
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    sbx_error err = {0};
    size_t i;
    json_t *m;
    json_array_foreach(body, i, m)
    {
        char src[PATH_MAX], dest[PATH_MAX];
        if (resolve(sb, json_string_value(json_object_get(m, "src")), src, &err) < 0 ||
            resolve(sb, json_string_value(json_object_get(m, "dest")), dest, &err) < 0 ||
            files_move(sb->rootfs_fd, src, dest, false, sb->uid_base, sb->uid_base, &err) < 0)
            return os_reply_sbx(c->req, &err, OS_FILES);
    }
    os_reply_empty(c->req, 200);
}

/* {"<path>": {"mode", "owner"?, "group"?}} for /files/permissions and POST /directories. */
static void perms_body(struct api_ctx *c, json_t *body, bool mkdir)
{
    if (!json_is_object(body) || json_object_size(body) > ENTRIES_MAX)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "the body must be an object of at most %d paths",
                        ENTRIES_MAX);
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    _cleanup_(names_done) struct names names = {0};
    sbx_error err = {0};
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        char path[PATH_MAX];
        mode_t mode;
        json_t *ow = json_object_get(v, "owner"), *gr = json_object_get(v, "group");
        if (!json_is_object(v) || (ow && !json_is_string(ow) && !json_is_null(ow)) ||
            (gr && !json_is_string(gr) && !json_is_null(gr)))
            return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`%s` must be {mode, owner?, group?}", k);
        const char *owner = json_string_value(ow), *group = json_string_value(gr);
        if (resolve(sb, k, path, &err) < 0 || parse_mode(json_object_get(v, "mode"), &mode, &err) < 0)
            return os_reply_sbx(c->req, &err, OS_FILES);
        if (owner && !*owner)
            owner = NULL;
        if (group && !*group)
            group = NULL;
        if (mkdir) {
            struct files_entry e;
            bool existed = files_stat(sb->rootfs_fd, path, &e, NULL) == 0;
            if (files_mkdir_p(sb->rootfs_fd, path, mode ? mode : 0755, sb->uid_base, sb->uid_base, &err) < 0)
                return os_reply_sbx(c->req, &err, OS_FILES);
            if (existed)
                continue; /* an existing directory keeps its mode and owner, as newer execd does */
            mode = 0;
        }
        if (apply_perms(sb, &names, path, mode, owner, group, &err) < 0)
            return os_reply_sbx(c->req, &err, OS_FILES);
    }
    os_reply_empty(c->req, 200);
}

static void permissions_with_body(struct api_ctx *c, json_t *body)
{
    perms_body(c, body, false);
}

static void mkdir_with_body(struct api_ctx *c, json_t *body)
{
    perms_body(c, body, true);
}

/* --- list and search ---------------------------------------------------------------------------------- */

struct walk {
    struct sandbox *sb;
    struct names names;
    json_t *out;
    const char *pattern; /* search: matched against base names of regular files */
    unsigned max_depth;
    size_t visited;
};

static void walk(struct walk *w, const char *dir, unsigned depth)
{
    if (depth >= w->max_depth || depth >= WALK_DEPTH_MAX || json_array_size(w->out) >= RESULTS_MAX)
        return;
    struct files_entry *ents = NULL;
    size_t n = 0;
    if (files_list(w->sb->rootfs_fd, dir, &ents, &n, WALK_VISIT_MAX, NULL) < 0)
        return;
    for (size_t i = 0; i < n && json_array_size(w->out) < RESULTS_MAX && w->visited < WALK_VISIT_MAX; i++) {
        w->visited++;
        bool take =
            !w->pattern || (ents[i].type == FILES_TYPE_FILE && fnmatch(w->pattern, ents[i].name, 0) == 0);
        if (take) {
            json_t *fi = file_info(w->sb, &w->names, ents[i].path, NULL);
            if (fi)
                json_array_append_new(w->out, fi);
        }
        if (ents[i].type == FILES_TYPE_DIR)
            walk(w, ents[i].path, depth + 1);
    }
    free(ents);
}

static void walk_answer(struct api_ctx *c, struct sandbox *sb, const char *pattern, unsigned depth)
{
    sbx_error err = {0};
    char dir[PATH_MAX];
    struct files_entry top;
    if (resolve(sb, http_query_get(c->req, "path"), dir, &err) < 0 ||
        files_stat(sb->rootfs_fd, dir, &top, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_FILES);
    if (top.type == FILES_TYPE_SYMLINK)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`%s` is a symlink", dir);
    if (top.type != FILES_TYPE_DIR)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`%s` is not a directory", dir);
    struct walk w = {.sb = sb, .out = json_array(), .pattern = pattern, .max_depth = depth};
    walk(&w, dir, 0);
    names_done(&w.names);
    http_respond_json(c->req, 200, w.out);
}

static void files_search(struct api_ctx *c, struct sandbox *sb)
{
    const char *pattern = http_query_get(c->req, "pattern");
    if (!pattern || !*pattern)
        pattern = "*";
    if (strlen(pattern) > PATTERN_MAX)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`pattern` is longer than %d bytes",
                        PATTERN_MAX);
    if (strcmp(pattern, "**") == 0)
        pattern = "*";
    walk_answer(c, sb, pattern, WALK_DEPTH_MAX);
}

static void dirs_list(struct api_ctx *c, struct sandbox *sb)
{
    const char *ds = http_query_get(c->req, "depth");
    long depth = 1;
    if (ds && *ds) {
        char *end;
        depth = strtol(ds, &end, 10);
        if (*end || depth < 1 || depth > LIST_DEPTH_MAX)
            return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "`depth` must be 1 to %d", LIST_DEPTH_MAX);
    }
    walk_answer(c, sb, NULL, (unsigned)depth);
}

/* --- replace ---------------------------------------------------------------------------------------- */

static int replace_one(struct sandbox *sb, const char *path, const char *old, size_t old_len, const char *new,
                       size_t new_len, size_t *ret_count, sbx_error *err)
{
    int fd;
    uint64_t size;
    if (files_open_read(sb->rootfs_fd, path, &fd, &size, err) < 0)
        return err->code;
    _cleanup_close_ int cfd = fd;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return sbx_error_set(err, -errno, "stat `%s`: %m", path);
    if (size > REPLACE_FILE_MAX)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`%s` is larger than %u MiB", path,
                              REPLACE_FILE_MAX >> 20);
    _cleanup_free_ char *buf = xmalloc(size + 1);
    ssize_t got = read_full(fd, buf, size);
    if (got < 0)
        return sbx_error_set(err, -errno, "read `%s`: %m", path);
    struct sbx_buf out = SBX_BUF_INIT;
    size_t count = 0;
    const char *p = buf, *end = buf + got;
    for (const char *hit; (hit = memmem(p, (size_t)(end - p), old, old_len)); p = hit + old_len, count++) {
        sbx_buf_append(&out, p, (size_t)(hit - p));
        sbx_buf_append(&out, new, new_len);
        if (out.len > REPLACE_FILE_MAX) {
            sbx_buf_done(&out);
            return sbx_error_setk(err, -E2BIG, "too_large", 413, "`%s` would grow past %u MiB", path,
                                  REPLACE_FILE_MAX >> 20);
        }
    }
    sbx_buf_append(&out, p, (size_t)(end - p));
    int r = 0;
    if (count > 0) {
        struct files_writer w;
        r = files_writer_open(sb->rootfs_fd, path, st.st_mode & 07777, st.st_uid, st.st_gid, &w, err);
        if (r >= 0 && (r = files_writer_write(&w, out.base, out.len, err)) < 0)
            files_writer_abort(&w);
        else if (r >= 0)
            r = files_writer_commit(&w, err);
    }
    sbx_buf_done(&out);
    *ret_count = count;
    return r;
}

static void replace_with_body(struct api_ctx *c, json_t *body)
{
    if (!json_is_object(body) || json_object_size(body) > ENTRIES_MAX)
        return os_reply(c->req, 400, "INVALID_REQUEST_BODY", "the body must be an object of at most %d paths",
                        ENTRIES_MAX);
    const char *verbose = http_query_get(c->req, "verbose");
    _cleanup_(sandbox_unrefp) struct sandbox *sb = os_execd_sandbox(c);
    if (!sb)
        return;
    json_auto_t *counts = json_object();
    sbx_error err = {0};
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        json_t *o = json_object_get(v, "old"), *n = json_object_get(v, "new");
        char path[PATH_MAX];
        size_t count = 0;
        if (!json_is_string(o) || json_string_length(o) == 0 || (n && !json_is_string(n)))
            return os_reply(c->req, 400, "INVALID_REQUEST_BODY",
                            "`%s` needs a non-empty string `old` and a string `new`", k);
        if (resolve(sb, k, path, &err) < 0 ||
            replace_one(sb, path, json_string_value(o), json_string_length(o), n ? json_string_value(n) : "",
                        n ? json_string_length(n) : 0, &count, &err) < 0)
            return os_reply_sbx(c->req, &err, OS_FILES);
        json_object_set_new(counts, k, json_pack("{s:I}", "replacedCount", (json_int_t)count));
    }
    if (verbose && strcmp(verbose, "true") == 0)
        return http_respond_json(c->req, 200, json_incref(counts));
    os_reply_empty(c->req, 200);
}

/* --- download --------------------------------------------------------------------------------------- */

static void files_download(struct api_ctx *c, struct sandbox *sb)
{
    sbx_error err = {0};
    char path[PATH_MAX];
    if (http_query_get(c->req, "offset") || http_query_get(c->req, "limit"))
        return os_reply(c->req, 400, "NOT_SUPPORTED",
                        "line ranges (`offset`, `limit`) are not supported: use Range");
    int fd;
    uint64_t size;
    if (resolve(sb, http_query_get(c->req, "path"), path, &err) < 0 ||
        api_files_open_download(sb, path, &fd, &size, &err) < 0)
        return os_reply_sbx(c->req, &err, OS_FILES);
    const char *base = strrchr(path, '/');
    char cd[NAME_MAX + 64];
    snprintf(cd, sizeof(cd), "attachment; filename=\"%s\"", base && base[1] ? base + 1 : "file");
    for (char *q = cd + 22; *q && q[1]; q++)
        if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20)
            *q = '_';
    http_response_header(c->req, "Content-Disposition", cd);
    api_files_send(c->req, sandbox_ref(sb), fd, size); /* takes fd and a reference */
}

/* --- upload ----------------------------------------------------------------------------------------- */

/* The multipart body is parsed as it streams (http/multipart): parts named `metadata` ({path, owner?,
 * group?, mode?}) each followed by a part named `file`, whose content goes to that path (atomically, then
 * chmod/chown). */

struct upload {
    struct api_ctx *c;
    struct sandbox *sb;
    struct names names;
    struct multipart mp;
    bool is_file; /* the current part is `file` (else metadata or ignored) */
    bool is_meta;
    struct sbx_buf meta; /* the current metadata part's content */
    json_t *pending;     /* the parsed metadata waiting for its file */
    struct files_writer w;
    bool open;
    unsigned parts;
    bool failed;
    int status;
    const char *code;
    sbx_error err;
};

static void upload_free(struct upload *u)
{
    if (u->open)
        files_writer_abort(&u->w);
    multipart_done(&u->mp);
    sbx_buf_done(&u->meta);
    json_decref(u->pending);
    names_done(&u->names);
    sandbox_detach(u->sb);
    sandbox_unref(u->sb);
    free(u);
}

static void up_fail(struct upload *u, const char *code, int errcode, const char *msg)
{
    if (u->failed)
        return;
    u->failed = true;
    u->code = code;
    sbx_error_set(&u->err, errcode, "%s", msg);
}

static void up_fail_err(struct upload *u)
{
    u->failed = true;
    u->code = NULL;
}

static void part_begin(struct upload *u, const struct multipart_part *part)
{
    u->is_meta = strcmp(part->name, "metadata") == 0;
    u->is_file = strcmp(part->name, "file") == 0;
    u->parts++;
    u->meta.len = 0;
    if (u->is_file) {
        if (!u->pending)
            return up_fail(u, "INVALID_FILE_METADATA", -EINVAL,
                           "a `file` part must follow its `metadata` part");
        char path[PATH_MAX];
        mode_t mode;
        if (resolve(u->sb, json_string_value(json_object_get(u->pending, "path")), path, &u->err) < 0 ||
            parse_mode(json_object_get(u->pending, "mode"), &mode, &u->err) < 0 ||
            files_writer_open(u->sb->rootfs_fd, path, mode ? mode : 0644, u->sb->uid_base, u->sb->uid_base,
                              &u->w, &u->err) < 0)
            return up_fail_err(u);
        u->open = true;
    }
}

static void part_data(struct upload *u, const char *p, size_t n)
{
    if (u->failed || n == 0)
        return;
    if (u->is_meta) {
        if (u->meta.len + n > UPLOAD_META_MAX)
            return up_fail(u, "INVALID_FILE_METADATA", -E2BIG, "a metadata part is larger than 64 KiB");
        sbx_buf_append(&u->meta, p, n);
    } else if (u->is_file && u->open) {
        if (u->w.written + n > UPLOAD_FILE_MAX)
            return up_fail(u, "INVALID_FILE", -E2BIG, "a file is larger than 4 GiB");
        if (files_writer_write(&u->w, p, n, &u->err) < 0)
            up_fail_err(u);
    }
}

static void part_end(struct upload *u)
{
    if (u->failed)
        return;
    if (u->is_meta) {
        json_decref(u->pending);
        u->pending = json_loadb(u->meta.base ? u->meta.base : "", u->meta.len, 0, NULL);
        if (!json_is_object(u->pending) || !json_is_string(json_object_get(u->pending, "path")))
            return up_fail(u, "INVALID_FILE_METADATA", -EINVAL,
                           "a metadata part must be JSON {path, owner?, group?, mode?}");
    } else if (u->is_file && u->open) {
        u->open = false;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s", u->w.path);
        if (files_writer_commit(&u->w, &u->err) < 0)
            return up_fail_err(u);
        const char *owner = json_string_value(json_object_get(u->pending, "owner"));
        const char *group = json_string_value(json_object_get(u->pending, "group"));
        mode_t mode = 0;
        parse_mode(json_object_get(u->pending, "mode"), &mode, NULL);
        if ((owner && *owner) || (group && *group) || mode) {
            if (apply_perms(u->sb, &u->names, path, mode, owner && *owner ? owner : NULL,
                            group && *group ? group : NULL, &u->err) < 0)
                return up_fail_err(u);
        }
        json_decref(u->pending);
        u->pending = NULL;
    }
}

/* The parser's callbacks: the part functions record failures in u (with their codes), which stop it. */
static int on_part_begin(void *userdata, const struct multipart_part *part, sbx_error *err)
{
    struct upload *u = userdata;
    part_begin(u, part);
    return u->failed ? -ECANCELED : 0;
}

static int on_part_data(void *userdata, const char *data, size_t len, sbx_error *err)
{
    struct upload *u = userdata;
    part_data(u, data, len);
    return u->failed ? -ECANCELED : 0;
}

static int on_part_end(void *userdata, sbx_error *err)
{
    struct upload *u = userdata;
    part_end(u);
    return u->failed ? -ECANCELED : 0;
}

static const struct multipart_callbacks upload_callbacks = {
    .part_begin = on_part_begin,
    .part_data = on_part_data,
    .part_end = on_part_end,
};

/* A malformed body (or too many parts): the parser filled u->err. */
static void up_fail_parse(struct upload *u)
{
    if (u->failed)
        return;
    u->failed = true;
    u->code = "INVALID_FILE";
}

static int upload_chunk(struct http_request *req, const char *data, size_t len, void *userdata)
{
    struct upload *u = userdata;
    if (!u->failed && multipart_feed(&u->mp, data, len, &u->err) < 0)
        up_fail_parse(u);
    return 0;
}

static void upload_end(struct http_request *req, void *userdata)
{
    struct upload *u = userdata;
    if (!u->failed && multipart_finish(&u->mp, &u->err) < 0)
        up_fail_parse(u);
    if (!u->failed && u->pending)
        up_fail(u, "INVALID_FILE", -EINVAL, "a `metadata` part has no `file` part after it");
    if (!u->failed && u->parts == 0)
        up_fail(u, "INVALID_FILE", -EINVAL, "the upload has no parts");
    if (u->failed && u->code)
        os_reply(req, 400, u->code, "%s", u->err.msg);
    else if (u->failed)
        os_reply_sbx(req, &u->err, OS_FILES);
    else
        os_reply_empty(req, 200);
    upload_free(u);
}

static void upload_aborted(struct http_request *req, void *userdata)
{
    upload_free(userdata);
}

static void files_upload(struct api_ctx *c, struct sandbox *sb)
{
    char boundary[MULTIPART_BOUNDARY_MAX + 1];
    if (!multipart_boundary(http_header_get(c->req, "Content-Type"), boundary))
        return os_reply(c->req, 400, "INVALID_FILE", "the body must be multipart/form-data with a boundary");
    struct upload *u = xcalloc(1, sizeof(*u));
    u->c = c;
    u->sb = sandbox_ref(sb);
    sandbox_attach(sb);
    multipart_init(&u->mp, boundary, &upload_callbacks, u);
    http_request_on_abort(c->req, upload_aborted, u);
    http_request_stream_body(c->req, upload_chunk, upload_end, u);
}

/* --- routing ---------------------------------------------------------------------------------------- */

bool os_files_handle(struct api_ctx *c, const char *method, const char *rest)
{
    static const struct {
        const char *method, *path;
        void (*with_sandbox)(struct api_ctx *c, struct sandbox *sb);
        void (*with_body)(struct api_ctx *c, json_t *body);
        bool dirs;
    } routes[] = {
        {"GET", "/files/info", files_info, NULL, false},
        {"DELETE", "/files", NULL, NULL, false},
        {"POST", "/files/mv", NULL, move_with_body, false},
        {"POST", "/files/permissions", NULL, permissions_with_body, false},
        {"GET", "/files/search", files_search, NULL, false},
        {"POST", "/files/replace", NULL, replace_with_body, false},
        {"POST", "/files/upload", files_upload, NULL, false},
        {"GET", "/files/download", files_download, NULL, false},
        {"GET", "/directories/list", dirs_list, NULL, false},
        {"POST", "/directories", NULL, mkdir_with_body, false},
        {"DELETE", "/directories", NULL, NULL, true},
    };
    bool path_known = false;
    for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
        if (strcmp(routes[i].path, rest) != 0)
            continue;
        path_known = true;
        if (strcmp(routes[i].method, method) != 0)
            continue;
        if (routes[i].with_body) {
            os_read_json(c, routes[i].with_body);
            return true;
        }
        struct sandbox *sb = os_execd_sandbox(c);
        if (!sb)
            return true;
        if (routes[i].with_sandbox)
            routes[i].with_sandbox(c, sb);
        else
            files_delete(c, sb, routes[i].dirs);
        sandbox_unref(sb);
        return true;
    }
    if (path_known)
        os_reply(c->req, 405, "METHOD_NOT_ALLOWED", "%s is not allowed on %s", method, rest);
    return path_known;
}
