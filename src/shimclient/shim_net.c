/* sbxd's side of the shim's "connect" op: the answer frame carries the socket as SCM_RIGHTS. */
#include "shimclient/shim_net.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "shimclient/shim_client.h"
#include "shimclient/shim_protocol.h"

/* Reads one RESPONSE frame, collecting a passed fd (the first one; any other is closed). */
static int read_answer(int sock, int64_t deadline, json_t **ret, int *ret_fd)
{
    _cleanup_(sbx_buf_done) struct sbx_buf in = SBX_BUF_INIT;
    for (;;) {
        struct shim_frame f;
        long used = in.len ? shim_frame_parse((const uint8_t *)in.base, in.len, &f) : 0;
        if (used < 0)
            return (int)used;
        if (used > 0) {
            if (f.type != SHIM_FRAME_RESPONSE)
                return -EBADMSG;
            json_error_t je;
            json_t *j = json_loadb((const char *)f.payload, f.len, 0, &je);
            if (!j)
                return -EBADMSG;
            *ret = j;
            return 0;
        }
        char *p = sbx_buf_reserve(&in, 4096);
        struct iovec iov = {.iov_base = p, .iov_len = 4096};
        union {
            char buf[CMSG_SPACE(sizeof(int) * 4)];
            struct cmsghdr align;
        } ctl;
        struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
        ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            int r = shim_wait_fd(sock, POLLIN, deadline);
            if (r < 0)
                return r;
            continue;
        }
        if (n < 0)
            return -errno;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfds; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                if (*ret_fd < 0)
                    *ret_fd = fd;
                else
                    close(fd);
            }
        }
        if (n == 0)
            return -ECONNRESET;
        in.len += (size_t)n;
    }
}

int shim_connect_port(const char *state_dir, int port, int timeout_ms, int *ret_fd, sbx_error *err)
{
    int64_t deadline = shim_deadline(timeout_ms);
    _cleanup_close_ int sock = -1;
    int r = shim_socket_connect(state_dir, &sock);
    if (r < 0)
        return sbx_error_set(err, r, "connect to the sandbox's shim: %s", strerror(-r));
    json_t *req = json_pack("{s:s, s:i}", "op", "connect", "port", port);
    size_t len;
    _cleanup_free_ uint8_t *frame = shim_frame_build_json(SHIM_FRAME_REQUEST, req, &len);
    json_decref(req);
    if (!frame)
        return sbx_error_set(err, -ENOMEM, "out of memory");
    for (size_t off = 0; off < len;) {
        ssize_t n = send(sock, frame + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && (r = shim_wait_fd(sock, POLLOUT, deadline)) >= 0)
            continue;
        r = n < 0 ? (errno == EAGAIN ? r : -errno) : -EPIPE;
        return sbx_error_set(err, r, "send to the sandbox's shim: %s", strerror(-r));
    }
    _cleanup_close_ int fd = -1;
    json_t *resp = NULL;
    r = read_answer(sock, deadline, &resp, &fd);
    if (r < 0)
        return sbx_error_set(err, r, "the sandbox's shim: %s",
                             r == -ETIMEDOUT ? "no answer in time" : strerror(-r));
    if (json_object_get(resp, "error")) {
        r = shim_error_from_json(resp, err);
        json_decref(resp);
        return r;
    }
    json_decref(resp);
    if (fd < 0)
        return sbx_error_set(err, -EPROTO, "the shim answered connect without a socket");
    *ret_fd = TAKE_FD(fd);
    return 0;
}
