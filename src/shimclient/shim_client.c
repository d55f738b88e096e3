/* sbxd's side of the shim protocol: spawning sbx-shim, calls, attach streams. */
#include "shimclient/shim_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/util.h"
#include "shimclient/shim_protocol.h"

extern char **environ;

#define READY_LINE_MAX 4096

struct shim_conn {
    int fd;
    bool broken;
    struct sbx_buf in;
};

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t shim_deadline(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : monotonic_ms() + timeout_ms;
}

/* Milliseconds left until deadline for poll(); -1 = no deadline; 0 = expired. */
static int remaining(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - monotonic_ms();
    return left <= 0 ? 0 : left > 0x7fffffff ? 0x7fffffff : (int)left;
}

int shim_wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, remaining(deadline));
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

int shim_socket_connect(const char *state_dir, int *ret_fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    _cleanup_close_ int dirfd = -1;
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/shim.sock", state_dir);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
        /* Too long for sun_path: go through the directory's fd instead. */
        dirfd = open(state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
            return -errno;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/shim.sock", dirfd);
    }
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* Connecting a unix stream socket completes at once or fails with EAGAIN when the backlog is full. */
    for (int tries = 0;; tries++) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && tries < 200) {
            usleep(5000);
            continue;
        }
        return -errno;
    }
    *ret_fd = TAKE_FD(fd);
    return 0;
}

static int send_all(int fd, const void *buf, size_t len, int64_t deadline)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            int r = shim_wait_fd(fd, POLLOUT, deadline);
            if (r < 0)
                return r;
            continue;
        }
        return n < 0 ? -errno : -EPIPE;
    }
    return 0;
}

static int send_json_frame(int fd, uint8_t type, json_t *obj, int64_t deadline)
{
    size_t len;
    _cleanup_free_ uint8_t *frame = shim_frame_build_json(type, obj, &len);
    if (!frame)
        return -EMSGSIZE;
    return send_all(fd, frame, len, deadline);
}

/* Reads until one RESPONSE frame is complete in `in`; returns the parsed JSON. Frames of other types
 * are skipped. */
static int read_response(int fd, struct sbx_buf *in, int64_t deadline, json_t **ret)
{
    for (;;) {
        struct shim_frame f;
        long used = shim_frame_parse((const uint8_t *)in->base, in->len, &f);
        if (used < 0)
            return (int)used;
        if (used > 0) {
            json_t *j = NULL;
            if (f.type == SHIM_FRAME_RESPONSE)
                j = json_loadb((const char *)f.payload, f.len, 0, NULL);
            bool was_response = f.type == SHIM_FRAME_RESPONSE;
            sbx_buf_consume(in, (size_t)used);
            if (!was_response)
                continue;
            if (!json_is_object(j)) {
                json_decref(j);
                return -EBADMSG;
            }
            *ret = j;
            return 0;
        }
        char *p = sbx_buf_reserve(in, 64 * 1024);
        ssize_t n = read(fd, p, 64 * 1024);
        if (n > 0) {
            in->len += (size_t)n;
            continue;
        }
        if (n == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int r = shim_wait_fd(fd, POLLIN, deadline);
        if (r < 0)
            return r;
    }
}

/* The HTTP status for the shim's error kinds (0 = derive from errno). */
static int kind_http(const char *kind)
{
    static const struct {
        const char *kind;
        int http;
    } map[] = {
        {"invalid_argument", 400}, {"not_found", 404},          {"conflict", 409},
        {"too_large", 413},        {"resource_exhausted", 429}, {"timeout", 504},
    };
    for (size_t i = 0; i < ELEMENTSOF(map); i++)
        if (strcmp(kind, map[i].kind) == 0)
            return map[i].http;
    return 0;
}

int shim_error_from_json(json_t *resp, sbx_error *err)
{
    json_t *e = json_object_get(resp, "error");
    const char *kind = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    json_int_t eno = json_integer_value(json_object_get(e, "errno"));
    if (eno <= 0 || eno > 4095)
        eno = EIO;
    if (kind && *kind)
        return sbx_error_setk(err, (int)-eno, kind, kind_http(kind), "%s", msg ? msg : kind);
    return sbx_error_set(err, (int)-eno, "%s", msg ? msg : "shim error");
}

/* Converts a parsed response: {"ok":true} passes, {"error":...} becomes err. */
static int check_response(json_t *resp, json_t **ret_resp, sbx_error *err)
{
    if (json_object_get(resp, "error")) {
        int r = shim_error_from_json(resp, err);
        json_decref(resp);
        return r;
    }
    if (ret_resp)
        *ret_resp = resp;
    else
        json_decref(resp);
    return 0;
}

int shim_conn_open(const char *state_dir, struct shim_conn **ret, sbx_error *err)
{
    int fd = -1;
    int r = shim_socket_connect(state_dir, &fd);
    if (r < 0)
        return sbx_error_set(err, r, "connect to the shim of `%s`: %s", state_dir, strerror(-r));
    struct shim_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return sbx_error_set(err, -ENOMEM, "out of memory");
    }
    c->fd = fd;
    *ret = c;
    return 0;
}

int shim_conn_call(struct shim_conn *conn, json_t *req, int timeout_ms, json_t **ret_resp, sbx_error *err)
{
    if (conn->broken)
        return sbx_error_set(err, -EPIPE, "shim connection is broken");
    int64_t deadline = shim_deadline(timeout_ms);
    int r = send_json_frame(conn->fd, SHIM_FRAME_REQUEST, req, deadline);
    json_t *resp = NULL;
    if (r >= 0)
        r = read_response(conn->fd, &conn->in, deadline, &resp);
    if (r < 0) {
        conn->broken = true;
        return sbx_error_set(err, r == -ECONNRESET ? -EPIPE : r, "shim call: %s",
                             r == -ETIMEDOUT ? "no answer in time" : strerror(-r));
    }
    return check_response(resp, ret_resp, err);
}

bool shim_conn_broken(const struct shim_conn *conn)
{
    return conn->broken;
}

void shim_conn_close(struct shim_conn *conn)
{
    if (!conn)
        return;
    close(conn->fd);
    sbx_buf_done(&conn->in);
    free(conn);
}

int shim_call(const char *state_dir, json_t *req, int timeout_ms, json_t **ret_resp, sbx_error *err)
{
    struct shim_conn *c;
    int r = shim_conn_open(state_dir, &c, err);
    if (r < 0)
        return r;
    r = shim_conn_call(c, req, timeout_ms, ret_resp, err);
    shim_conn_close(c);
    return r;
}

int shim_shutdown(const char *state_dir, int timeout_ms)
{
    int64_t deadline = shim_deadline(timeout_ms);
    _cleanup_close_ int fd = -1;
    int r = shim_socket_connect(state_dir, &fd);
    if (r < 0)
        return r;
    json_t *req = json_pack("{s:s}", "op", "shutdown");
    r = send_json_frame(fd, SHIM_FRAME_REQUEST, req, deadline);
    json_decref(req);
    if (r < 0)
        return r;
    /* The shim answers once the sandbox is gone, then exits: wait for the end of the stream. */
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0)
            return 0;
        if (n > 0)
            continue;
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET)
            return 0;
        if (errno != EAGAIN)
            return -errno;
        if ((r = shim_wait_fd(fd, POLLIN, deadline)) < 0)
            return r;
    }
}

int shim_attach(const char *state_dir, const char *cid, uint64_t stdout_off, uint64_t stderr_off, int *ret_fd,
                sbx_error *err)
{
    _cleanup_close_ int fd = -1;
    int r = shim_socket_connect(state_dir, &fd);
    if (r < 0)
        return sbx_error_set(err, r, "connect to the shim of `%s`: %s", state_dir, strerror(-r));
    json_t *req = json_pack("{s:s, s:s, s:I, s:I}", "op", "attach", "id", cid, "stdout_offset",
                            (json_int_t)stdout_off, "stderr_offset", (json_int_t)stderr_off);
    if (!req)
        return sbx_error_set(err, -EINVAL, "attach: bad arguments");
    /* A fresh socket's buffer always takes a small request; the deadline only guards a stuck shim. */
    r = send_json_frame(fd, SHIM_FRAME_REQUEST, req, shim_deadline(5000));
    json_decref(req);
    if (r < 0)
        return sbx_error_set(err, r, "attach: send: %s", strerror(-r));
    *ret_fd = TAKE_FD(fd);
    return 0;
}

/* --- spawning ----------------------------------------------------------------------------------- */

/* Moves fd to a number >= 4 so the dup2 file actions cannot clobber it. */
static int fd_above_stdio(int fd)
{
    if (fd > 3)
        return fd;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, 4);
    int saved = errno;
    close(fd);
    errno = saved;
    return n;
}

static pid_t read_pid_file(const char *state_dir)
{
    char path[4096], buf[32];
    snprintf(path, sizeof(path), "%s/shim.pid", state_dir);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    long v = strtol(buf, NULL, 10);
    return v > 1 ? (pid_t)v : 0;
}

static void posix_spawn_file_actions_destroyp(posix_spawn_file_actions_t **p)
{
    if (*p)
        posix_spawn_file_actions_destroy(*p);
}

static void posix_spawnattr_destroyp(posix_spawnattr_t **p)
{
    if (*p)
        posix_spawnattr_destroy(*p);
}

int shim_spawn_start(const char *shim_path, const char *state_dir, struct shim_spawn *ret, sbx_error *err)
{
    *ret = (struct shim_spawn){.first = -1, .rd = -1};
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return sbx_error_set(err, -errno, "pipe: %m");
    _cleanup_close_ int rd = fd_above_stdio(p[0]);
    _cleanup_close_ int wr = fd_above_stdio(p[1]);
    _cleanup_close_ int devnull = fd_above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC));
    if (rd < 0 || wr < 0 || devnull < 0)
        return sbx_error_set(err, -errno, "spawn shim: %m");

    posix_spawn_file_actions_t fa_storage, *fa = NULL;
    posix_spawnattr_t at_storage, *at = NULL;
    _cleanup_(posix_spawn_file_actions_destroyp) posix_spawn_file_actions_t *fa_guard = NULL;
    _cleanup_(posix_spawnattr_destroyp) posix_spawnattr_t *at_guard = NULL;
    if (posix_spawn_file_actions_init(&fa_storage) != 0)
        return sbx_error_set(err, -ENOMEM, "spawn shim: out of memory");
    fa = fa_guard = &fa_storage;
    if (posix_spawnattr_init(&at_storage) != 0)
        return sbx_error_set(err, -ENOMEM, "spawn shim: out of memory");
    at = at_guard = &at_storage;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    if (posix_spawn_file_actions_adddup2(fa, devnull, 0) ||
        posix_spawn_file_actions_adddup2(fa, devnull, 1) ||
        posix_spawn_file_actions_adddup2(fa, devnull, 2) || posix_spawn_file_actions_adddup2(fa, wr, 3) ||
        posix_spawnattr_setsigmask(at, &none) || posix_spawnattr_setsigdefault(at, &all) ||
        posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        return sbx_error_set(err, -ENOMEM, "spawn shim: out of memory");

    char *const argv[] = {(char *)shim_path, (char *)state_dir, NULL};
    int r = posix_spawn(&ret->first, shim_path, fa, at, argv, environ);
    if (r != 0)
        return sbx_error_set(err, -r, "spawn `%s`: %s", shim_path, strerror(r));
    if (fd_set_nonblock(rd, true) < 0) {
        int saved = -errno;
        shim_spawn_abort(ret, state_dir);
        return sbx_error_set(err, saved, "spawn shim: %s", strerror(-saved));
    }
    ret->rd = TAKE_FD(rd);
    return 0;
}

/* The first process forks the real shim and exits at once; by the time the ready line or EOF has come
 * it is gone or about to be. */
static int reap_first(struct shim_spawn *s)
{
    int status = 0;
    if (s->first > 0) {
        while (waitpid(s->first, &status, 0) < 0 && errno == EINTR)
            ;
        s->first = -1;
    }
    return status;
}

/* The first process only forks the shim, writes its pid file and exits: give it a moment to do so
 * rather than killing it half-way, which could leave a shim nobody knows the pid of. */
static void reap_first_bounded(struct shim_spawn *s)
{
    for (int i = 0; s->first > 0 && i < 1000; i++) {
        pid_t r = waitpid(s->first, NULL, WNOHANG);
        if (r == s->first || (r < 0 && errno != EINTR))
            s->first = -1;
        else
            usleep(1000);
    }
    if (s->first > 0) {
        kill(s->first, SIGKILL);
        reap_first(s);
    }
}

void shim_spawn_abort(struct shim_spawn *s, const char *state_dir)
{
    reap_first_bounded(s);
    pid_t shim = read_pid_file(state_dir);
    /* Wait (bounded) until the shim is really gone: killed in the middle of a mount, it finishes that
     * mount first, and a cleanup that ran before would leave it (and its loop device) behind. */
    _cleanup_close_ int pidfd = shim > 0 ? (int)syscall(SYS_pidfd_open, shim, 0) : -1;
    if (pidfd >= 0)
        (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    else if (shim > 0)
        kill(shim, SIGKILL);
    if (pidfd >= 0) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        while (poll(&p, 1, 2000) < 0 && errno == EINTR)
            ;
    }
}

void shim_spawn_close(struct shim_spawn *s)
{
    if (s->rd >= 0)
        close(s->rd);
    s->rd = -1;
}

int shim_spawn_poll(struct shim_spawn *s, const char *state_dir, pid_t *ret_shim_pid, pid_t *ret_init_pid,
                    sbx_error *err)
{
    /* Read the ready line: one JSON object and '\n'; EOF before it means the shim died. */
    while (!memchr(s->line, '\n', s->len) && s->len < sizeof(s->line) - 1) {
        ssize_t n = read(s->rd, s->line + s->len, sizeof(s->line) - 1 - s->len);
        if (n > 0)
            s->len += (size_t)n;
        else if (n == 0)
            break;
        else if (errno == EAGAIN)
            return 0;
        else if (errno != EINTR) {
            int r = -errno;
            shim_spawn_abort(s, state_dir);
            return sbx_error_set(err, r, "read the shim's ready line: %s", strerror(-r));
        }
    }
    s->line[s->len] = '\0';
    json_t *ready = s->len > 0 ? json_loads(s->line, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    if (!json_is_object(ready)) {
        json_decref(ready);
        shim_spawn_abort(s, state_dir);
        return sbx_error_set(err, -EIO, "sbx-shim exited without reporting, see %s/shim.log", state_dir);
    }
    reap_first(s);
    int r;
    if (!json_is_true(json_object_get(ready, "ok"))) {
        r = shim_error_from_json(ready, err);
        json_decref(ready);
        return r;
    }
    json_int_t spid = json_integer_value(json_object_get(ready, "pid"));
    json_int_t ipid = json_integer_value(json_object_get(ready, "init_pid"));
    json_decref(ready);
    if (spid <= 1 || ipid <= 1)
        return sbx_error_set(err, -EBADMSG, "sbx-shim sent a malformed ready line");
    if (ret_shim_pid)
        *ret_shim_pid = (pid_t)spid;
    if (ret_init_pid)
        *ret_init_pid = (pid_t)ipid;
    return 1;
}

int shim_spawn(const char *shim_path, const char *state_dir, int timeout_ms, pid_t *ret_shim_pid,
               pid_t *ret_init_pid, sbx_error *err)
{
    int64_t deadline = shim_deadline(timeout_ms);
    struct shim_spawn s;
    int r = shim_spawn_start(shim_path, state_dir, &s, err);
    if (r < 0)
        return r;
    for (;;) {
        r = shim_spawn_poll(&s, state_dir, ret_shim_pid, ret_init_pid, err);
        if (r != 0)
            break;
        r = shim_wait_fd(s.rd, POLLIN, deadline);
        if (r == -ETIMEDOUT) {
            shim_spawn_abort(&s, state_dir);
            sbx_error_setk(err, -ETIMEDOUT, "timeout", 0, "sbx-shim did not become ready within %d ms",
                           timeout_ms);
            break;
        }
        if (r < 0) {
            shim_spawn_abort(&s, state_dir);
            sbx_error_set(err, r, "wait for the shim: %s", strerror(-r));
            break;
        }
    }
    shim_spawn_close(&s);
    return r < 0 ? r : 0;
}
