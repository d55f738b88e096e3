/* libsbx: /v1/snapshots (image imports). Listing, lookup and deletion go through sbx_request. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static size_t read_fd(char *buf, size_t size, size_t n, void *userdata)
{
    int fd = *(int *)userdata;
    for (;;) {
        ssize_t r = read(fd, buf, size * n);
        if (r >= 0)
            return (size_t)r;
        if (errno != EINTR)
            return CURL_READFUNC_ABORT;
    }
}

static bool name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-' || *s == '.'))
            return false;
    return true;
}

SBX_PUBLIC int sbx_snapshot_import(struct sbx_client *c, const char *name, int fd, char **ret_json,
                                   struct sbx_err *err)
{
    if (!c || !name_ok(name))
        return client_err(err, -EINVAL, 0, "invalid_argument", "name must match [A-Za-z0-9_.-]{1,64}");
    if (fd < 0)
        return client_err(err, -EBADF, 0, "invalid_argument", "bad file descriptor");
    curl_off_t size = -1;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t pos = lseek(fd, 0, SEEK_CUR);
        if (pos >= 0 && pos <= st.st_size)
            size = (curl_off_t)(st.st_size - pos);
    }
    struct lbuf path = {0};
    if (lbuf_printf(&path, "/v1/snapshots?name=%s", name) < 0)
        return client_err(err, -ENOMEM, 0, "internal", "out of memory");
    struct http_req req = {.method = "POST",
                           .path = path.base,
                           .body_kind = HTTP_BODY_STREAM,
                           .read_fn = read_fd,
                           .read_data = &fd,
                           .upload_size = size};
    struct http_resp resp = {0};
    int r = client_request(c, &req, &resp, err);
    lbuf_done(&path);
    if (r >= 0 && ret_json) {
        *ret_json = strndup(resp.body.base ? resp.body.base : "", resp.body.len);
        if (!*ret_json)
            r = client_err(err, -ENOMEM, 0, "internal", "out of memory");
    }
    lbuf_done(&resp.body);
    return r;
}
