/* libsbx: /v1/sandboxes/{id}/files — streaming upload/download and the small file operations. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define OOM(err) client_err(err, -ENOMEM, 0, "internal", "out of memory")

SBX_PUBLIC void sbx_file_entry_done(struct sbx_file_entry *e)
{
    if (!e)
        return;
    free(e->name);
    free(e->path);
    free(e->type);
    free(e->mtime);
    free(e->link_target);
    *e = (struct sbx_file_entry){0};
}

SBX_PUBLIC void sbx_file_entries_free(struct sbx_file_entry *entries, size_t n)
{
    if (!entries)
        return;
    for (size_t i = 0; i < n; i++)
        sbx_file_entry_done(&entries[i]);
    free(entries);
}

static int entry_from_json(json_t *o, struct sbx_file_entry *ret, struct sbx_err *err)
{
    if (!json_is_object(o))
        return client_err(err, -EPROTO, 0, "bad_response", "file entry is not a JSON object");
    bool oom = false;
    struct sbx_file_entry e = {
        .name = json_strdup_member(o, "name", &oom),
        .path = json_strdup_member(o, "path", &oom),
        .type = json_strdup_member(o, "type", &oom),
        .mtime = json_strdup_member(o, "mtime", &oom),
        .link_target = json_strdup_member(o, "link_target", &oom),
        .size = (uint64_t)json_integer_value(json_object_get(o, "size")),
    };
    const char *mode = json_string_value(json_object_get(o, "mode"));
    if (mode)
        e.mode = (unsigned)strtoul(mode, NULL, 8);
    else
        e.mode = (unsigned)json_integer_value(json_object_get(o, "mode"));
    if (oom) {
        sbx_file_entry_done(&e);
        return OOM(err);
    }
    *ret = e;
    return 0;
}

/* "/v1/sandboxes/{sid}/files{suffix}?path={path}{extra}" */
static int files_path(struct lbuf *b, const char *sid, const char *suffix, const char *path,
                      const char *extra)
{
    int r = client_sandbox_path(b, sid, "/files");
    if (r >= 0)
        r = lbuf_appends(b, suffix);
    if (r >= 0 && path) {
        r = lbuf_appends(b, "?path=");
        if (r >= 0)
            r = url_escape(b, path);
    }
    if (r >= 0 && extra)
        r = lbuf_appends(b, extra);
    return r;
}

static int check_args(struct sbx_client *c, const char *sid, const char *path, struct sbx_err *err)
{
    if (!c || !sid || !path)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    return 0;
}

struct upload {
    int fd;
    int error; /* -errno of a failed read */
    const char *mem;
    size_t mem_len;
};

static size_t upload_read(char *buf, size_t size, size_t nitems, void *userdata)
{
    struct upload *u = userdata;
    size_t want = size * nitems;
    if (u->fd < 0) {
        size_t n = u->mem_len < want ? u->mem_len : want;
        memcpy(buf, u->mem, n);
        u->mem += n;
        u->mem_len -= n;
        return n;
    }
    for (;;) {
        ssize_t n = read(u->fd, buf, want);
        if (n >= 0)
            return (size_t)n;
        if (errno != EINTR) {
            u->error = -errno;
            return CURL_READFUNC_ABORT;
        }
    }
}

static int upload(struct sbx_client *c, const char *sid, const char *remote_path, struct upload *u,
                  curl_off_t size, int mode, struct sbx_file_entry *ret_entry, struct sbx_err *err)
{
    if (mode > 07777)
        return client_err(err, -EINVAL, 0, "invalid_argument", "bad file mode %o", (unsigned)mode);
    char extra[32] = "";
    if (mode >= 0)
        snprintf(extra, sizeof(extra), "&mode=%04o", (unsigned)mode);
    struct lbuf path = LBUF_INIT;
    if (files_path(&path, sid, "", remote_path, extra) < 0)
        return OOM(err);
    struct http_req req = {.method = "PUT",
                           .path = path.base,
                           .body_kind = HTTP_BODY_STREAM,
                           .read_fn = upload_read,
                           .read_data = u,
                           .upload_size = size};
    struct http_resp resp = {.body = LBUF_INIT};
    int r = client_request(c, &req, &resp, err);
    lbuf_done(&path);
    if (u->error < 0)
        r = client_err(err, u->error, 0, "io_error", "read local data: %s", strerror(-u->error));
    if (r >= 0 && ret_entry) {
        json_t *doc = json_loadb(resp.body.base ? resp.body.base : "", resp.body.len, 0, NULL);
        r = entry_from_json(doc, ret_entry, err);
        json_decref(doc);
    }
    lbuf_done(&resp.body);
    return r < 0 ? r : 0;
}

SBX_PUBLIC int sbx_file_upload(struct sbx_client *c, const char *sandbox_id, const char *remote_path, int fd,
                               int mode, struct sbx_file_entry *ret_entry, struct sbx_err *err)
{
    int r = check_args(c, sandbox_id, remote_path, err);
    if (r < 0)
        return r;
    if (fd < 0)
        return client_err(err, -EBADF, 0, "invalid_argument", "bad file descriptor");
    curl_off_t size = -1;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t pos = lseek(fd, 0, SEEK_CUR);
        if (pos >= 0 && pos <= st.st_size)
            size = (curl_off_t)(st.st_size - pos);
    }
    struct upload u = {.fd = fd};
    return upload(c, sandbox_id, remote_path, &u, size, mode, ret_entry, err);
}

SBX_PUBLIC int sbx_file_write(struct sbx_client *c, const char *sandbox_id, const char *remote_path,
                              const void *data, size_t len, int mode, struct sbx_err *err)
{
    int r = check_args(c, sandbox_id, remote_path, err);
    if (r < 0)
        return r;
    if (len && !data)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing data");
    struct upload u = {.fd = -1, .mem = data, .mem_len = len};
    return upload(c, sandbox_id, remote_path, &u, (curl_off_t)len, mode, NULL, err);
}

struct download {
    int fd;
};

static int download_sink(const char *data, size_t len, void *userdata)
{
    struct download *d = userdata;
    while (len > 0) {
        ssize_t n = write(d->fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

SBX_PUBLIC int sbx_file_download(struct sbx_client *c, const char *sandbox_id, const char *remote_path,
                                 int out_fd, struct sbx_err *err)
{
    int r = check_args(c, sandbox_id, remote_path, err);
    if (r < 0)
        return r;
    struct lbuf path = LBUF_INIT;
    if (files_path(&path, sandbox_id, "", remote_path, NULL) < 0)
        return OOM(err);
    struct download d = {.fd = out_fd};
    struct http_req req = {.method = "GET", .path = path.base, .sink = download_sink, .sink_data = &d};
    struct http_resp resp = {.body = LBUF_INIT};
    r = client_request(c, &req, &resp, err);
    if (r < 0 && err && strcmp(err->code, "aborted") == 0)
        client_err(err, r, 0, "io_error", "write local file: %s", strerror(-r));
    lbuf_done(&path);
    lbuf_done(&resp.body);
    return r < 0 ? r : 0;
}

static int files_json(struct sbx_client *c, const char *method, const char *sid, const char *suffix,
                      const char *path_param, const char *extra, json_t *body, json_t **ret,
                      struct sbx_err *err)
{
    struct lbuf path = LBUF_INIT;
    if (files_path(&path, sid, suffix, path_param, extra) < 0) {
        json_decref(body);
        return OOM(err);
    }
    int r = client_json(c, method, path.base, body, ret, err);
    lbuf_done(&path);
    json_decref(body);
    return r < 0 ? r : 0;
}

SBX_PUBLIC int sbx_file_stat(struct sbx_client *c, const char *sandbox_id, const char *remote_path,
                             struct sbx_file_entry *ret, struct sbx_err *err)
{
    int r = check_args(c, sandbox_id, remote_path, err);
    if (r < 0 || !ret)
        return r < 0 ? r : client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    json_t *doc = NULL;
    r = files_json(c, "GET", sandbox_id, "/stat", remote_path, NULL, NULL, &doc, err);
    if (r >= 0)
        r = entry_from_json(doc, ret, err);
    json_decref(doc);
    return r;
}

SBX_PUBLIC int sbx_file_list(struct sbx_client *c, const char *sandbox_id, const char *remote_dir,
                             struct sbx_file_entry **ret_entries, size_t *ret_n, struct sbx_err *err)
{
    int r = check_args(c, sandbox_id, remote_dir, err);
    if (r < 0 || !ret_entries || !ret_n)
        return r < 0 ? r : client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    json_t *doc = NULL;
    r = files_json(c, "GET", sandbox_id, "/list", remote_dir, NULL, NULL, &doc, err);
    if (r < 0)
        return r;
    json_t *arr = json_object_get(doc, "entries");
    if (!json_is_array(arr)) {
        json_decref(doc);
        return client_err(err, -EPROTO, 0, "bad_response", "no `entries` array in the answer");
    }
    size_t n = json_array_size(arr);
    struct sbx_file_entry *v = calloc(n ? n : 1, sizeof(*v));
    if (!v) {
        json_decref(doc);
        return OOM(err);
    }
    for (size_t i = 0; i < n && r >= 0; i++)
        r = entry_from_json(json_array_get(arr, i), &v[i], err);
    json_decref(doc);
    if (r < 0) {
        sbx_file_entries_free(v, n);
        return r;
    }
    *ret_entries = v;
    *ret_n = n;
    return 0;
}

SBX_PUBLIC int sbx_file_mkdir(struct sbx_client *c, const char *sandbox_id, const char *remote_path, int mode,
                              struct sbx_err *err)
{
    int r = check_args(c, sandbox_id, remote_path, err);
    if (r < 0)
        return r;
    char m[8];
    snprintf(m, sizeof(m), "%04o", (unsigned)(mode & 07777));
    json_t *body = mode >= 0 ? json_pack("{s:s, s:s}", "path", remote_path, "mode", m)
                             : json_pack("{s:s}", "path", remote_path);
    if (!body)
        return client_err(err, -EINVAL, 0, "invalid_argument", "path is not valid UTF-8");
    return files_json(c, "POST", sandbox_id, "/mkdir", NULL, NULL, body, NULL, err);
}

SBX_PUBLIC int sbx_file_move(struct sbx_client *c, const char *sandbox_id, const char *from, const char *to,
                             bool overwrite, struct sbx_err *err)
{
    int r = check_args(c, sandbox_id, from, err);
    if (r < 0 || !to)
        return r < 0 ? r : client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    json_t *body = json_pack("{s:s, s:s, s:b}", "from", from, "to", to, "overwrite", overwrite);
    if (!body)
        return client_err(err, -EINVAL, 0, "invalid_argument", "path is not valid UTF-8");
    return files_json(c, "POST", sandbox_id, "/move", NULL, NULL, body, NULL, err);
}

SBX_PUBLIC int sbx_file_remove(struct sbx_client *c, const char *sandbox_id, const char *remote_path,
                               bool recursive, struct sbx_err *err)
{
    int r = check_args(c, sandbox_id, remote_path, err);
    if (r < 0)
        return r;
    return files_json(c, "DELETE", sandbox_id, "", remote_path, recursive ? "&recursive=true" : NULL, NULL,
                      NULL, err);
}
