/* sbx-shim's network operations (netops.h).
 *
 * Why setns in the shim: a socket belongs to the network namespace it was created in, for its whole life,
 * whatever namespace its owner moves to later. So the shim, single-threaded, enters the sandbox's
 * namespace just for socket(), returns to its own, and connects from there; the kernel routes the
 * connection over the sandbox's loopback. No route, veth or listening socket on the host is involved,
 * which is what lets service URLs work with network mode `none`. The shim (not sbxd) does it because it
 * owns the sandbox: it opened the namespace while sbx-init was known alive, so a restarted sbxd never has
 * to trust a pid that may have been recycled, and sbxd stays free of namespace switching. The socket then
 * travels to sbxd with SCM_RIGHTS. setns(CLONE_NEWNET) costs a few microseconds; a helper process per
 * connection would cost a fork. */
#include "shim/netops.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "runtime/runtime.h"

#define CONNECT_WAIT_MS 200 /* loopback handshakes finish in microseconds; only a full backlog waits */
#define PORTS_MAX 4096

static int sandbox_ns = -1, own_ns = -1;

int shim_net_init(pid_t init_pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)init_pid);
    sandbox_ns = open(path, O_RDONLY | O_CLOEXEC);
    if (sandbox_ns < 0)
        return -errno;
    own_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (own_ns < 0)
        return -errno;
    return 0;
}

/* A TCP socket of the sandbox's network namespace. */
static int socket_in_sandbox(int family)
{
    if (setns(sandbox_ns, CLONE_NEWNET) < 0)
        return -errno;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int saved = errno;
    if (setns(own_ns, CLONE_NEWNET) < 0) {
        /* Staying in the sandbox's namespace would make every later socket of ours one of its sockets. */
        log_error_errno(-errno, "setns back to the shim's network namespace: %m");
        abort();
    }
    return fd < 0 ? -saved : fd;
}

static int try_connect(int family, int port, int *ret_fd)
{
    _cleanup_close_ int fd = socket_in_sandbox(family);
    if (fd < 0)
        return fd;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        sl = sizeof(*a);
    }
    int r;
    do
        r = connect(fd, (struct sockaddr *)&ss, sl);
    while (r < 0 && errno == EINTR);
    if (r < 0 && errno != EINPROGRESS)
        return -errno;
    if (r < 0) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n;
        do
            n = poll(&p, 1, CONNECT_WAIT_MS);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            int e = 0;
            socklen_t el = sizeof(e);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
                return -errno;
            if (e)
                return -e;
        }
        /* n == 0: still connecting (accept backlog full); the caller sees the outcome on the socket. */
    }
    *ret_fd = TAKE_FD(fd);
    return 0;
}

int shim_net_connect(int port, int *ret_fd, sbx_error *err)
{
    if (sandbox_ns < 0 || own_ns < 0)
        return sbx_error_set(err, -ENOTCONN, "the sandbox's network namespace is not available");
    int r = try_connect(AF_INET, port, ret_fd);
    if (r == -ECONNREFUSED || r == -EADDRNOTAVAIL || r == -ENETUNREACH) {
        int r6 = try_connect(AF_INET6, port, ret_fd);
        if (r6 >= 0 || (r6 != -EAFNOSUPPORT && r6 != -EADDRNOTAVAIL && r6 != -ENETUNREACH))
            r = r6;
    }
    if (r == -ECONNREFUSED)
        return sbx_error_setk(err, r, "connection_refused", 502,
                              "nothing listens on port %d inside the sandbox (127.0.0.1 and ::1)", port);
    if (r < 0)
        return sbx_error_set(err, r, "connect to port %d inside the sandbox: %s", port, strerror(-r));
    return 0;
}

/* Parses one line of /proc/net/tcp{,6}; returns 1 with a listening socket's port and address. */
static int parse_line(const char *line, bool v6, int *ret_port, char *addr, size_t addr_size)
{
    char local[64];
    unsigned port, state;
    if (sscanf(line, " %*u: %63[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", local, &port, &state) != 3)
        return 0;
    if (state != 0x0A) /* TCP_LISTEN */
        return 0;
    if (!v6) {
        if (strlen(local) != 8)
            return 0;
        struct in_addr a = {.s_addr = (in_addr_t)strtoul(local, NULL, 16)}; /* already in network order */
        inet_ntop(AF_INET, &a, addr, (socklen_t)addr_size);
    } else {
        if (strlen(local) != 32)
            return 0;
        struct in6_addr a;
        for (int i = 0; i < 4; i++) {
            char word[9];
            memcpy(word, local + 8 * i, 8);
            word[8] = 0;
            uint32_t w = (uint32_t)strtoul(word, NULL, 16); /* each 32-bit word is printed in host order */
            memcpy(&a.s6_addr[4 * i], &w, 4);
        }
        inet_ntop(AF_INET6, &a, addr, (socklen_t)addr_size);
    }
    *ret_port = (int)port;
    return 1;
}

static int cmp_port(const void *a, const void *b)
{
    json_t *const *x = a, *const *y = b;
    json_int_t px = json_integer_value(json_object_get(*x, "port")),
               py = json_integer_value(json_object_get(*y, "port"));
    if (px != py)
        return px < py ? -1 : 1;
    return strcmp(json_string_value(json_object_get(*x, "address")),
                  json_string_value(json_object_get(*y, "address")));
}

json_t *shim_net_ports(pid_t init_pid, sbx_error *err)
{
    json_t *items[PORTS_MAX];
    size_t n = 0;
    for (int v6 = 0; v6 <= 1; v6++) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)init_pid, v6 ? "tcp6" : "tcp");
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f) {
            if (errno == ENOENT && v6)
                continue; /* no IPv6 in this kernel */
            sbx_error_set(err, -errno, "open `%s`: %m", path);
            while (n > 0)
                json_decref(items[--n]);
            return NULL;
        }
        char line[512];
        bool header = true;
        while (fgets(line, sizeof(line), f)) {
            if (header) {
                header = false;
                continue;
            }
            int port;
            char addr[INET6_ADDRSTRLEN];
            if (!parse_line(line, v6, &port, addr, sizeof(addr)) || n == PORTS_MAX)
                continue;
            bool dup = false;
            for (size_t i = 0; i < n && !dup; i++)
                dup = json_integer_value(json_object_get(items[i], "port")) == port &&
                      strcmp(json_string_value(json_object_get(items[i], "address")), addr) == 0;
            if (!dup)
                items[n++] = json_pack("{s:i, s:s}", "port", port, "address", addr);
        }
    }
    qsort(items, n, sizeof(items[0]), cmp_port);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, items[i]);
    return arr;
}

ssize_t shim_net_send_fd(int sock, const void *buf, size_t len, int fd)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    for (;;) {
        ssize_t n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

int shim_net_attach(json_t *req, int *ret_ifindex, sbx_error *err)
{
    const char *host_if = json_string_value(json_object_get(req, "host_if"));
    const char *host_addr = json_string_value(json_object_get(req, "host_addr"));
    const char *sandbox_addr = json_string_value(json_object_get(req, "sandbox_addr"));
    json_int_t prefix = json_integer_value(json_object_get(req, "prefix"));
    struct runtime_net_config cfg = {.host_if = host_if, .prefix = (unsigned)prefix};
    if (!host_if || strlen(host_if) >= IFNAMSIZ || !host_addr || !sandbox_addr || prefix < 8 || prefix > 30 ||
        inet_pton(AF_INET, host_addr, &cfg.host_addr) != 1 ||
        inet_pton(AF_INET, sandbox_addr, &cfg.sandbox_addr) != 1)
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "net_attach needs host_if, host_addr, sandbox_addr and prefix (8..30)");
    if (sandbox_ns < 0)
        return sbx_error_set(err, -EBADF, "the sandbox's network namespace is not open");
    int r = runtime_net_attach(sandbox_ns, own_ns, &cfg, err);
    if (r < 0)
        return r;
    *ret_ifindex = r;
    return 0;
}
