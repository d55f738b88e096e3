/* /v1/sandboxes/{id}/files: streamed upload and download (with ranges), stat, list, mkdir, move,
 * remove. Every path resolves inside the sandbox's root (src/files, openat2 RESOLVE_IN_ROOT). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "base/cleanup.h"
#include "base/util.h"
#include "daemon/checkpoint.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "files/files.h"
#include "loop/loop.h"
#include "runtime/runtime.h"

#define LIST_MAX_ENTRIES 10000
#define DOWNLOAD_CHUNK (256 * 1024)
/* Paths in JSON bodies are taken up to this size so that an over-long one is judged by the path rules
 * (400 invalid_argument, like in a query string) rather than as an oversized field. */
#define PATH_FIELD_MAX (64 * 1024)

int api_files_ready(struct sandbox *sb, sbx_error *err)
{
    if (sb->rootfs_fd < 0)
        return sbx_error_setk(err, -EBUSY, "not_running", 409,
                              "sandbox `%s` is %s: start it to reach its files", sb->id,
                              sandbox_state_to_string(sb->state));
    /* A checkpoint or fork freezes the sandbox's disk while it copies it: a write from sbxd's loop would
     * wait for the thaw with every other request behind it. */
    return sandbox_refuse_busy(sb, err);
}

/* The sandbox and its root dirfd, or an answered error. */
static struct sandbox *files_sandbox(struct api_ctx *c)
{
    struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return NULL;
    sbx_error err = {0};
    if (api_files_ready(sb, &err) < 0) {
        api_reply_error(c->req, &err);
        return sandbox_unref(sb);
    }
    return sb;
}

static const char *path_param(struct api_ctx *c, sbx_error *err)
{
    const char *p = http_query_get(c->req, "path");
    if (!p) {
        sbx_error_set(err, -EINVAL, "query parameter `path` is required");
        return NULL;
    }
    return p;
}

static int parse_mode(const char *s, mode_t def, mode_t *ret, sbx_error *err)
{
    if (!s || !*s) {
        *ret = def;
        return 0;
    }
    char *end;
    unsigned long m = strtoul(s, &end, 8);
    if (*end || m > 07777)
        return sbx_error_set(err, -EINVAL, "`mode` must be octal like 0644");
    *ret = (mode_t)m;
    return 0;
}

/* --- upload: the body is streamed into a temporary file renamed into place at the end ------------ */

struct upload {
    struct api_ctx *c;
    struct sandbox *sb;
    struct files_writer w;
    bool failed;
    sbx_error err;
};

/* A transfer in progress is activity: the sandbox is attached (not idle) until it ends. */
static void upload_free(struct upload *u)
{
    sandbox_detach(u->sb);
    sandbox_unref(u->sb);
    free(u);
}

static int upload_chunk(struct http_request *req, const char *data, size_t len, void *userdata)
{
    struct upload *u = userdata;
    if (u->failed)
        return 0; /* keep draining the body; the error is answered at the end */
    if (files_writer_write(&u->w, data, len, &u->err) < 0) {
        u->failed = true;
        files_writer_abort(&u->w);
    }
    return 0;
}

static void upload_end(struct http_request *req, void *userdata)
{
    struct upload *u = userdata;
    struct files_entry e;
    if (!u->failed && files_writer_commit(&u->w, &u->err) < 0)
        u->failed = true;
    if (u->failed)
        api_reply_error(req, &u->err);
    else if (files_stat(u->sb->rootfs_fd, u->w.path, &e, &u->err) < 0)
        api_reply_error(req, &u->err);
    else
        api_reply_json(req, 200, files_entry_to_json(&e));
    upload_free(u);
}

static void upload_abort(struct http_request *req, void *userdata)
{
    struct upload *u = userdata;
    if (!u->failed)
        files_writer_abort(&u->w);
    upload_free(u);
}

void api_files_put(struct api_ctx *c)
{
    sbx_error err = {0};
    const char *path = path_param(c, &err);
    mode_t mode;
    if (!path || parse_mode(http_query_get(c->req, "mode"), 0644, &mode, &err) < 0)
        return api_reply_error(c->req, &err);
    struct sandbox *sb = files_sandbox(c);
    if (!sb)
        return;
    struct upload *u = xcalloc(1, sizeof(*u));
    u->c = c;
    u->sb = sb;
    sandbox_attach(sb);
    if (files_writer_open(sb->rootfs_fd, path, mode, sb->uid_base, sb->uid_base, &u->w, &err) < 0) {
        api_reply_error(c->req, &err);
        return upload_free(u);
    }
    http_request_on_abort(c->req, upload_abort, u);
    http_request_stream_body(c->req, upload_chunk, upload_end, u);
}

/* --- download: the file is sent in chunks as the client drains them ---------------------------- */

struct download {
    struct http_request *req;
    struct sandbox *sb; /* attached while the file is sent */
    int fd;
    uint64_t pos, end; /* [pos, end) left to send */
};

static void download_free(struct download *dl)
{
    if (dl->fd >= 0)
        close(dl->fd);
    sandbox_detach(dl->sb);
    sandbox_unref(dl->sb);
    free(dl);
}

static void download_pump(struct http_request *req, void *userdata)
{
    struct download *dl = userdata;
    char buf[DOWNLOAD_CHUNK];
    while (dl->pos < dl->end) {
        size_t want = dl->end - dl->pos < sizeof(buf) ? (size_t)(dl->end - dl->pos) : sizeof(buf);
        ssize_t n = pread(dl->fd, buf, want, (off_t)dl->pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* The file shrank or failed under us: the length was promised, so the connection must close. */
            http_response_abort(req);
            return download_free(dl);
        }
        dl->pos += (uint64_t)n;
        if (http_response_write(req, buf, (size_t)n) > 0 && dl->pos < dl->end)
            return; /* over the soft limit: continue on drain */
    }
    http_response_end(req);
    download_free(dl);
}

/* sbxd reads as host root, but may hand out only what root inside the sandbox could read: host files
 * under the read-only system directories (/etc/shadow, TLS keys) belong to ids that are not mapped into
 * the sandbox, and there only their "other" permission bits apply. */
static bool readable_by_sandbox_root(int fd, uid_t uid_base)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return false;
    bool uid_mapped = st.st_uid >= uid_base && st.st_uid - uid_base < RUNTIME_UID_RANGE;
    bool gid_mapped = st.st_gid >= uid_base && st.st_gid - uid_base < RUNTIME_UID_RANGE;
    if (uid_mapped && gid_mapped)
        return true; /* CAP_DAC_OVERRIDE inside covers it */
    if (uid_mapped)
        return st.st_mode & S_IRUSR;
    return st.st_mode & S_IROTH;
}

static void download_abort(struct http_request *req, void *userdata)
{
    download_free(userdata);
}

int api_files_open_download(struct sandbox *sb, const char *path, int *ret_fd, uint64_t *ret_size,
                            sbx_error *err)
{
    int fd;
    int r = files_open_read(sb->rootfs_fd, path, &fd, ret_size, err);
    if (r >= 0 && !readable_by_sandbox_root(fd, sb->uid_base)) {
        close(fd);
        r = sbx_error_set(err, -EACCES, "read `%s`: permission denied", path);
    }
    if (r >= 0)
        *ret_fd = fd;
    return r;
}

void api_files_get(struct api_ctx *c)
{
    sbx_error err = {0};
    const char *path = path_param(c, &err);
    if (!path)
        return api_reply_error(c->req, &err);
    struct sandbox *sb = files_sandbox(c);
    if (!sb)
        return;
    int fd;
    uint64_t size;
    if (api_files_open_download(sb, path, &fd, &size, &err) < 0) {
        sandbox_unref(sb);
        return api_reply_error(c->req, &err);
    }
    api_files_send(c->req, sb, fd, size);
}

void api_files_send(struct http_request *req, struct sandbox *sb, int fd, uint64_t size)
{
    sbx_error err = {0};
    uint64_t start = 0, len = size;
    int status = 200;
    char content_range[96] = "";
    const char *range = http_header_get(req, "Range");
    if (range) {
        int r = files_parse_range(range, size, &start, &len);
        if (r == -ERANGE) {
            close(fd);
            sandbox_unref(sb);
            snprintf(content_range, sizeof(content_range), "bytes */%llu", (unsigned long long)size);
            sbx_error_setk(&err, -ERANGE, "range_not_satisfiable", 416,
                           "range `%s` is outside the file's %llu bytes", range, (unsigned long long)size);
            http_response_header(req, "Content-Range", content_range);
            return api_reply_error(req, &err);
        }
        if (r == 0) {
            status = 206;
            snprintf(content_range, sizeof(content_range), "bytes %llu-%llu/%llu", (unsigned long long)start,
                     (unsigned long long)(start + len - 1), (unsigned long long)size);
        } else {
            start = 0, len = size; /* a malformed Range is ignored (RFC 9110 14.2) */
        }
    }
    struct download *dl = xcalloc(1, sizeof(*dl));
    dl->req = req;
    dl->sb = sb; /* the caller's reference */
    sandbox_attach(sb);
    dl->fd = fd;
    dl->pos = start;
    dl->end = start + len;
    if (content_range[0])
        http_response_header(req, "Content-Range", content_range);
    http_response_header(req, "Accept-Ranges", "bytes");
    http_request_on_abort(req, download_abort, dl);
    http_request_on_drain(req, download_pump, dl);
    http_response_begin(req, status, "application/octet-stream", (int64_t)len);
    download_pump(req, dl);
}

/* --- metadata calls ----------------------------------------------------------------------------- */

void api_files_stat(struct api_ctx *c)
{
    sbx_error err = {0};
    const char *path = path_param(c, &err);
    if (!path)
        return api_reply_error(c->req, &err);
    struct sandbox *sb = files_sandbox(c);
    if (!sb)
        return;
    struct files_entry e;
    if (files_stat(sb->rootfs_fd, path, &e, &err) < 0)
        api_reply_error(c->req, &err);
    else
        api_reply_json(c->req, 200, files_entry_to_json(&e));
    sandbox_unref(sb);
}

void api_files_list(struct api_ctx *c)
{
    sbx_error err = {0};
    const char *path = path_param(c, &err);
    if (!path)
        return api_reply_error(c->req, &err);
    struct sandbox *sb = files_sandbox(c);
    if (!sb)
        return;
    struct files_entry *entries = NULL;
    size_t n = 0;
    if (files_list(sb->rootfs_fd, path, &entries, &n, LIST_MAX_ENTRIES, &err) < 0) {
        api_reply_error(c->req, &err);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, files_entry_to_json(&entries[i]));
        api_reply_json(c->req, 200, json_pack("{s:o}", "entries", arr));
    }
    free(entries);
    sandbox_unref(sb);
}

void api_files_delete(struct api_ctx *c)
{
    sbx_error err = {0};
    const char *path = path_param(c, &err);
    if (!path)
        return api_reply_error(c->req, &err);
    const char *rec = http_query_get(c->req, "recursive");
    bool recursive = rec && (strcmp(rec, "true") == 0 || strcmp(rec, "1") == 0);
    struct sandbox *sb = files_sandbox(c);
    if (!sb)
        return;
    if (files_remove(sb->rootfs_fd, path, recursive, &err) < 0)
        api_reply_error(c->req, &err);
    else
        api_reply_json(c->req, 204, NULL);
    sandbox_unref(sb);
}

static void mkdir_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    const char *path = NULL, *mode_s = NULL;
    mode_t mode;
    if (jsonreq_string(body, "path", PATH_FIELD_MAX, &path, &err) < 0 ||
        jsonreq_string(body, "mode", 8, &mode_s, &err) < 0 || parse_mode(mode_s, 0755, &mode, &err) < 0)
        return api_reply_error(c->req, &err);
    if (!path) {
        sbx_error_set(&err, -EINVAL, "`path` is required");
        return api_reply_error(c->req, &err);
    }
    struct sandbox *sb = files_sandbox(c);
    if (!sb)
        return;
    struct files_entry e;
    if (files_mkdir_p(sb->rootfs_fd, path, mode, sb->uid_base, sb->uid_base, &err) < 0 ||
        files_stat(sb->rootfs_fd, path, &e, &err) < 0)
        api_reply_error(c->req, &err);
    else
        api_reply_json(c->req, 200, files_entry_to_json(&e));
    sandbox_unref(sb);
}

void api_files_mkdir(struct api_ctx *c)
{
    api_read_json(c, mkdir_with_body);
}

static void move_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    const char *from = NULL, *to = NULL;
    bool overwrite = false;
    if (jsonreq_string(body, "from", PATH_FIELD_MAX, &from, &err) < 0 ||
        jsonreq_string(body, "to", PATH_FIELD_MAX, &to, &err) < 0 ||
        jsonreq_bool(body, "overwrite", &overwrite, &err) < 0)
        return api_reply_error(c->req, &err);
    if (!from || !to) {
        sbx_error_set(&err, -EINVAL, "`from` and `to` are required");
        return api_reply_error(c->req, &err);
    }
    struct sandbox *sb = files_sandbox(c);
    if (!sb)
        return;
    struct files_entry e;
    if (files_move(sb->rootfs_fd, from, to, overwrite, sb->uid_base, sb->uid_base, &err) < 0 ||
        files_stat(sb->rootfs_fd, to, &e, &err) < 0)
        api_reply_error(c->req, &err);
    else
        api_reply_json(c->req, 200, files_entry_to_json(&e));
    sandbox_unref(sb);
}

void api_files_move(struct api_ctx *c)
{
    api_read_json(c, move_with_body);
}
