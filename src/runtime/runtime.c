/* Sandbox creation, commands through sbx-init, and teardown (the contract is runtime.h).
 *
 * runtime_create, step by step (the shim runs it as host root):
 *   1. the sandbox's own disk (disk.c) mounted at <state_dir>/disk when it has one, overlay root at
 *      <state_dir>/rootfs with its upper layer on that disk, cgroup "sbx/<id>" with its limits;
 *   2. clone3 the sandbox's first process into new user, PID, UTS, IPC and network namespaces; it
 *      waits on a pipe while we write its uid/gid maps (root inside = uid_base outside), mount the
 *      host's system directories into the rootfs through an idmapped mount of its user namespace, and
 *      move it into the cgroup;
 *   3. released, it takes new mount and cgroup namespaces, becomes root inside, mounts /proc, /sys and
 *      /dev, pivots into the rootfs, bounds its capabilities to Docker's set, sets no_new_privs, loads
 *      the seccomp BPF and execs sbx-init from an fd opened before any of this;
 *   4. sbx-init says READY on the control socket.
 * A failure at any step reaches the caller as text through a CLOEXEC pipe, and everything made so far
 * is undone. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "init/init_protocol.h"
#include "runtime/internal.h"

#define DOCKER_CAPS 0x00000000a80425fbULL /* Docker's default capability set */
#define CREATE_TIMEOUT_MS 10000
#define EXEC_TIMEOUT_MS 10000
#define DISK_RELEASE_WAIT_MS 2000 /* a detached disk's loop device goes within ms; a holder may delay it */
#define SECCOMP_MAX_BYTES (4096 * sizeof(struct sock_filter))

struct child_args {
    const struct runtime_config *cfg;
    int sync_r;    /* one byte: the host side is done, go */
    int err_w;     /* CLOEXEC: text of the failed step; EOF at exec means success */
    int ctl;       /* our end of the control socket, INIT_CTL_FD in sbx-init */
    int init_fd;   /* O_PATH fd of the sbx-init binary */
    int rootfs_fd; /* the path to it crosses host directories we may not enter once we are not host root */
    const struct sock_fprog *seccomp;
};

static _Noreturn void child_fail(const struct child_args *a, const sbx_error *err)
{
    (void)write_all(a->err_w, err->msg, strlen(err->msg));
    _exit(127);
}

static int drop_capabilities(void)
{
    for (int cap = 0; cap <= 63; cap++) {
        if (DOCKER_CAPS & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) /* EINVAL: past cap_last_cap */
            return -errno;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return -errno;
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2] = {
        {.effective = (uint32_t)DOCKER_CAPS, .permitted = (uint32_t)DOCKER_CAPS},
        {.effective = (uint32_t)(DOCKER_CAPS >> 32), .permitted = (uint32_t)(DOCKER_CAPS >> 32)},
    };
    return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

/* The sandbox's first process, until it becomes sbx-init. Never returns. */
static _Noreturn void child_main(struct child_args *a)
{
    sbx_error err = {0};
    char c;
    if (read(a->sync_r, &c, 1) != 1)
        _exit(1); /* the host side gave up */
    close(a->sync_r);

    /* sbx-init and every command inherit ignored signals and the mask through exec: start clean, as
     * sbx-init only resets what it changes itself. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &dfl, NULL); /* fails for SIGKILL, SIGSTOP and libc's reserved ones */
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);

    /* Before unshare: the working directory is carried into the new mount namespace, an fd is not. */
    if (fchdir(a->rootfs_fd) < 0) {
        sbx_error_set(&err, -errno, "enter the rootfs: %m");
        child_fail(a, &err);
    }
    if (unshare(CLONE_NEWNS | CLONE_NEWCGROUP) < 0) {
        sbx_error_set(&err, -errno, "unshare mount and cgroup namespaces: %m");
        child_fail(a, &err);
    }
    /* Until now our ids were host root's, unmapped here: become the namespace's root (uid_base). */
    if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0) {
        sbx_error_set(&err, -errno, "become root in the user namespace: %m");
        child_fail(a, &err);
    }
    if (rootfs_enter(".", &err) < 0)
        child_fail(a, &err);
    const char *hostname = a->cfg->hostname ? a->cfg->hostname : a->cfg->id;
    if (sethostname(hostname, strlen(hostname)) < 0) {
        sbx_error_set(&err, -errno, "sethostname: %m");
        child_fail(a, &err);
    }
    /* sbx-init holds nothing of the host: stdio is the sandbox's /dev/null. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) {
        sbx_error_set(&err, -errno, "stdio to /dev/null: %m");
        child_fail(a, &err);
    }
    int r = drop_capabilities();
    if (r < 0) {
        sbx_error_set(&err, r, "bound capabilities: %s", strerror(-r));
        child_fail(a, &err);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        sbx_error_set(&err, -errno, "no_new_privs: %m");
        child_fail(a, &err);
    }
    if (a->seccomp && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, a->seccomp, 0, 0) < 0) {
        sbx_error_set(&err, -errno, "load seccomp filter: %m");
        child_fail(a, &err);
    }
    /* a->ctl, err_w and init_fd were moved above fd 10 by the parent's dup, so fd 3 is free to take. */
    if (dup2(a->ctl, INIT_CTL_FD) < 0) {
        sbx_error_set(&err, -errno, "dup2 control socket: %m");
        child_fail(a, &err);
    }
    (void)close_range(INIT_CTL_FD + 1, ~0u, CLOSE_RANGE_CLOEXEC);
    char *const argv[] = {"sbx-init", NULL};
    char *const envp[] = {NULL};
    syscall(SYS_execveat, a->init_fd, "", argv, envp, AT_EMPTY_PATH);
    sbx_error_set(&err, -errno, "execute sbx-init: %m");
    child_fail(a, &err);
}

static int read_seccomp(const char *path, struct sock_fprog *prog, sbx_error *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_set(err, -errno, "open seccomp profile %s: %m", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return sbx_error_set(err, -errno, "stat %s: %m", path);
    if (st.st_size <= 0 || (size_t)st.st_size > SECCOMP_MAX_BYTES || st.st_size % sizeof(struct sock_filter))
        return sbx_error_set(err, -EINVAL, "seccomp profile %s: bad size %lld", path, (long long)st.st_size);
    struct sock_filter *f = xmalloc((size_t)st.st_size);
    if (read_full(fd, f, (size_t)st.st_size) != st.st_size) {
        free(f);
        return sbx_error_set(err, -EIO, "read seccomp profile %s: short read", path);
    }
    prog->len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
    prog->filter = f;
    return 0;
}

static int write_id_map(pid_t pid, const char *file, uid_t base)
{
    char path[64], line[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    snprintf(line, sizeof(line), "0 %u %u\n", (unsigned)base, RUNTIME_UID_RANGE);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return write(fd, line, strlen(line)) == (ssize_t)strlen(line) ? 0 : -errno;
}

/* Moves fd above 10 (CLOEXEC) so the child can put the control socket at fd 3 without clobbering it. */
static int fd_move_high(int *fd)
{
    int n = fcntl(*fd, F_DUPFD_CLOEXEC, 10);
    if (n < 0)
        return -errno;
    close(*fd);
    *fd = n;
    return 0;
}

/* Waits for one packet on the control socket; also returns when init dies. */
static int ctl_wait(int ctl_fd, int pidfd, int timeout_ms)
{
    struct pollfd p[2] = {{.fd = ctl_fd, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, pidfd >= 0 ? 2 : 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ETIMEDOUT;
        if (p[0].revents & POLLIN)
            return 0;
        if (p[0].revents & (POLLHUP | POLLERR) || p[1].revents)
            return -EPIPE;
    }
}

/* The one place that names a sandbox's cgroup ("sbx/<id>" under each hierarchy). */
#define CGROUP_NAME_MAX 128
static void cgroup_name_of(const char *id, char ret[CGROUP_NAME_MAX])
{
    snprintf(ret, CGROUP_NAME_MAX, "sbx/%s", id);
}

static void sandbox_reset(struct runtime_sandbox *sb)
{
    *sb = (struct runtime_sandbox){.init_pid = 0, .init_pidfd = -1, .ctl_fd = -1, .rootfs_fd = -1};
}

int runtime_create(const struct runtime_config *cfg, struct runtime_sandbox *ret, sbx_error *err)
{
    sandbox_reset(ret);
    ret->uid_base = cfg->uid_base;
    ret->state_dir = xstrdup(cfg->state_dir);
    cgroup_name_of(cfg->id, ret->cgroup_name);

    /* Where creation time goes, for `SBX_SHIM_DEBUG=1` (bench/ reads it to explain its figures). */
    uint64_t t[8] = {now_usec(CLOCK_MONOTONIC)}, t_disk = 0;
    struct sock_fprog seccomp = {0};
    _cleanup_close_ int init_fd = -1, userns_fd = -1;
    int sv[2] = {-1, -1}, sync_p[2] = {-1, -1}, err_p[2] = {-1, -1};
    int pidfd = -1, r;
    bool disk = false, mounted = false, cgroup = false;
    pid_t pid = -1;

    if (cfg->seccomp_path && (r = read_seccomp(cfg->seccomp_path, &seccomp, err)) < 0)
        goto fail;
    init_fd = open(cfg->init_path, O_PATH | O_CLOEXEC);
    if (init_fd < 0) {
        r = sbx_error_set(err, -errno, "open sbx-init %s: %m", cfg->init_path);
        goto fail;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(sync_p, O_CLOEXEC) < 0 ||
        pipe2(err_p, O_CLOEXEC) < 0) {
        r = sbx_error_set(err, -errno, "socketpair/pipe: %m");
        goto fail;
    }
    /* An EXEC packet may be up to INIT_MSG_MAX: make room beyond the default socket buffer. */
    for (int i = 0; i < 2; i++) {
        int sz = (int)INIT_SOCKBUF;
        (void)setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz));
        (void)setsockopt(sv[i], SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz));
    }
    if ((r = fd_move_high(&sv[1])) < 0 || (r = fd_move_high(&err_p[1])) < 0 ||
        (r = fd_move_high(&init_fd)) < 0) {
        sbx_error_set(err, r, "fcntl: %s", strerror(-r));
        goto fail;
    }

    if (cfg->disk_bytes) {
        uint64_t t_start = now_usec(CLOCK_MONOTONIC);
        if ((r = disk_attach(cfg, err)) < 0)
            goto fail;
        disk = true;
        t_disk = now_usec(CLOCK_MONOTONIC) - t_start;
    }
    if ((r = rootfs_mount_overlay(cfg, err)) < 0)
        goto fail;
    mounted = true;
    t[1] = now_usec(CLOCK_MONOTONIC);
    char rootfs[PATH_MAX];
    snprintf(rootfs, sizeof(rootfs), "%s/rootfs", cfg->state_dir);
    ret->rootfs_fd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ret->rootfs_fd < 0) {
        r = sbx_error_set(err, -errno, "open %s: %m", rootfs);
        goto fail;
    }
    if ((r = cgroup_create(ret->cgroup_name, cfg, err)) < 0)
        goto fail;
    cgroup = true;
    t[2] = now_usec(CLOCK_MONOTONIC);

    struct clone_args ca = {
        .flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_PIDFD,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = SIGCHLD,
    };
    pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid < 0) {
        r = sbx_error_set(err, -errno, "clone3 into new namespaces: %m");
        goto fail;
    }
    if (pid == 0) {
        close(sync_p[1]);
        close(err_p[0]);
        close(sv[0]);
        struct child_args a = {
            cfg, sync_p[0], err_p[1], sv[1], init_fd, ret->rootfs_fd, cfg->seccomp_path ? &seccomp : NULL};
        child_main(&a);
    }
    close(sync_p[0]);
    close(err_p[1]);
    close(sv[1]);
    sync_p[0] = err_p[1] = sv[1] = -1;
    t[3] = now_usec(CLOCK_MONOTONIC);

    if ((r = write_id_map(pid, "uid_map", cfg->uid_base)) < 0 ||
        (r = write_id_map(pid, "gid_map", cfg->uid_base)) < 0) {
        sbx_error_set(err, r, "write uid/gid map: %s", strerror(-r));
        goto fail;
    }
    char ns[64];
    snprintf(ns, sizeof(ns), "/proc/%d/ns/user", (int)pid);
    userns_fd = open(ns, O_RDONLY | O_CLOEXEC);
    if (userns_fd < 0) {
        r = sbx_error_set(err, -errno, "open %s: %m", ns);
        goto fail;
    }
    if ((!cfg->lower_dirs || cfg->host_base) && (r = rootfs_mount_system(cfg, userns_fd, err)) < 0)
        goto fail;
    if ((r = rootfs_mount_volumes(cfg, userns_fd, err)) < 0)
        goto fail;
    t[4] = now_usec(CLOCK_MONOTONIC);
    if ((r = cgroup_attach(ret->cgroup_name, pid, err)) < 0)
        goto fail;
    t[5] = now_usec(CLOCK_MONOTONIC);
    if (write(sync_p[1], "x", 1) != 1) {
        r = sbx_error_set(err, -errno, "release the sandbox process: %m");
        goto fail;
    }
    char msg[sizeof(err->msg)];
    ssize_t n = read_full(err_p[0], msg, sizeof(msg) - 1);
    if (n > 0) {
        msg[n] = '\0';
        r = sbx_error_set(err, -EIO, "sandbox setup: %s", msg);
        goto fail;
    }
    if ((r = ctl_wait(sv[0], pidfd, CREATE_TIMEOUT_MS)) < 0) {
        sbx_error_set(err, r, "sbx-init did not start: %s", strerror(-r));
        goto fail;
    }
    struct init_msg_ready ready;
    n = recv(sv[0], &ready, sizeof(ready), MSG_DONTWAIT);
    if (n != (ssize_t)sizeof(ready) || ready.h.type != INIT_MSG_READY) {
        r = sbx_error_set(err, -EPROTO, "sbx-init: unexpected first message");
        goto fail;
    }
    t[6] = now_usec(CLOCK_MONOTONIC);
    log_debug("create %s: disk %lluus, overlay (disk included) %lluus, cgroup %lluus, clone %lluus, "
              "maps+system mounts %lluus, "
              "cgroup attach %lluus, sandbox setup until init ready %lluus, total %lluus",
              cfg->id, (unsigned long long)t_disk, (unsigned long long)(t[1] - t[0]),
              (unsigned long long)(t[2] - t[1]), (unsigned long long)(t[3] - t[2]),
              (unsigned long long)(t[4] - t[3]), (unsigned long long)(t[5] - t[4]),
              (unsigned long long)(t[6] - t[5]), (unsigned long long)(t[6] - t[0]));
    ret->init_pid = pid;
    ret->init_pidfd = pidfd;
    ret->ctl_fd = sv[0];
    free(seccomp.filter);
    close(sync_p[1]);
    close(err_p[0]);
    return 0;

fail:
    if (pid > 0) {
        (void)pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        (void)waitid(P_PIDFD, (id_t)pidfd, &(siginfo_t){0}, WEXITED);
    }
    if (cgroup)
        cgroup_destroy(ret->cgroup_name);
    if (mounted)
        rootfs_unmount(cfg->state_dir);
    int fds[] = {sv[0], sv[1], sync_p[0], sync_p[1], err_p[0], err_p[1], pidfd, ret->rootfs_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (disk) /* after the rootfs fd, which holds the overlay and so the disk */
        disk_detach(cfg->state_dir, DISK_RELEASE_WAIT_MS);
    free(seccomp.filter);
    free(ret->state_dir);
    sandbox_reset(ret);
    return r;
}

/* --- commands ------------------------------------------------------------------------------------ */

static void pending_push(struct runtime_sandbox *sb, pid_t pid, int status)
{
    if (sb->n_pending == sb->cap_pending) {
        sb->cap_pending = sb->cap_pending ? sb->cap_pending * 2 : 16;
        sb->pending = xrealloc(sb->pending, sb->cap_pending * sizeof(*sb->pending));
    }
    sb->pending[sb->n_pending++] = (struct runtime_exit_event){pid, status};
}

/* Receives one packet (up to sizeof(struct init_msg_exec_reply)) and at most one fd. */
union init_reply {
    struct init_msg_header h;
    struct init_msg_exec_reply reply;
    struct init_msg_exit exit;
};

static ssize_t ctl_recv(int fd, union init_reply *m, int *ret_fd, int flags)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {m, sizeof(*m)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    *ret_fd = -1;
    ssize_t n;
    do
        n = recvmsg(fd, &mh, flags | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
    if (n == 0)
        return -EPIPE;
    if ((size_t)n < sizeof(m->h) || m->h.len != (uint32_t)n || mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        if (*ret_fd >= 0)
            close(*ret_fd);
        *ret_fd = -1;
        return -EPROTO;
    }
    return n;
}

int runtime_exec(struct runtime_sandbox *sb, const struct runtime_exec_spec *spec, const int fds[3],
                 int *ret_pidfd, pid_t *ret_pid, sbx_error *err)
{
    if (sb->ctl_fd < 0)
        return sbx_error_set(err, -EPIPE, "the sandbox is not running");
    uint32_t argc = 0, envc = 0;
    size_t len = sizeof(struct init_msg_exec);
    for (; spec->argv[argc]; argc++)
        len += strlen(spec->argv[argc]) + 1;
    for (; spec->env && spec->env[envc]; envc++)
        len += strlen(spec->env[envc]) + 1;
    const char *cwd = spec->cwd ? spec->cwd : ""; /* init: the user's home, else / */
    len += strlen(cwd) + 1;
    if (spec->user)
        len += strlen(spec->user) + 1;
    if (argc == 0)
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400, "empty command");
    if (len > INIT_MSG_MAX)
        return sbx_error_setk(err, -E2BIG, "invalid_argument", 400,
                              "command, environment and cwd take %zu bytes, over the limit of %u", len,
                              INIT_MSG_MAX);
    _cleanup_free_ char *buf = xmalloc(len);
    struct init_msg_exec *m = (struct init_msg_exec *)buf;
    *m = (struct init_msg_exec){
        .h = {INIT_MSG_EXEC, (uint32_t)len},
        .flags = (spec->new_session ? INIT_EXEC_NEW_SESSION : 0) |
                 (spec->new_session && spec->ctty ? INIT_EXEC_CTTY : 0) | (spec->user ? INIT_EXEC_USER : 0),
        .argc = argc,
        .envc = envc,
        .strings_len = (uint32_t)(len - sizeof(*m)),
    };
    char *p = buf + sizeof(*m);
    for (uint32_t i = 0; i < argc; i++)
        p = stpcpy(p, spec->argv[i]) + 1;
    for (uint32_t i = 0; i < envc; i++)
        p = stpcpy(p, spec->env[i]) + 1;
    p = stpcpy(p, cwd) + 1;
    if (spec->user)
        p = stpcpy(p, spec->user) + 1;
    assert((size_t)(p - buf) == len);

    char cbuf[CMSG_SPACE(3 * sizeof(int))] = {0};
    struct iovec iov = {buf, len};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(3 * sizeof(int));
    memcpy(CMSG_DATA(c), fds, 3 * sizeof(int));
    ssize_t n;
    do
        n = sendmsg(sb->ctl_fd, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return sbx_error_set(err, -errno, "send to sbx-init: %m");

    uint64_t deadline = now_usec(CLOCK_MONOTONIC) + EXEC_TIMEOUT_MS * 1000ULL;
    for (;;) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        int left = now >= deadline ? 0 : (int)((deadline - now) / 1000) + 1;
        int r = ctl_wait(sb->ctl_fd, sb->init_pidfd, left);
        if (r < 0)
            return sbx_error_set(err, r, "waiting for sbx-init: %s", strerror(-r));
        union init_reply rep;
        int fd;
        n = ctl_recv(sb->ctl_fd, &rep, &fd, MSG_DONTWAIT);
        if (n == -EAGAIN)
            continue;
        if (n < 0)
            return sbx_error_set(err, (int)n, "reading from sbx-init: %s", strerror((int)-n));
        if (rep.h.type == INIT_MSG_EXIT && n == sizeof(rep.exit)) {
            pending_push(sb, rep.exit.pid, rep.exit.status);
            continue;
        }
        if (rep.h.type != INIT_MSG_EXEC_REPLY || n != sizeof(rep.reply)) {
            if (fd >= 0)
                close(fd);
            return sbx_error_set(err, -EPROTO, "sbx-init sent an unexpected message (type %u)", rep.h.type);
        }
        rep.reply.message[sizeof(rep.reply.message) - 1] = '\0';
        if (rep.reply.error != 0) {
            if (fd >= 0)
                close(fd);
            int e = rep.reply.error;
            if (e == ENOENT || e == EACCES || e == ENOEXEC || e == ENOTDIR)
                return sbx_error_setk(err, -e, "command_not_found", 400, "%s", rep.reply.message);
            if (e == ESRCH || e == EINVAL) /* a `user` that is not in the sandbox, or malformed */
                return sbx_error_setk(err, -e, "invalid_argument", 400, "%s", rep.reply.message);
            return sbx_error_set(err, -e, "start command: %s", rep.reply.message);
        }
        *ret_pidfd = fd;
        *ret_pid = rep.reply.pid;
        return 0;
    }
}

int runtime_read_event(struct runtime_sandbox *sb, struct runtime_exit_event *ret)
{
    if (sb->n_pending > 0) {
        *ret = sb->pending[0];
        memmove(sb->pending, sb->pending + 1, --sb->n_pending * sizeof(*sb->pending));
        return 1;
    }
    if (sb->ctl_fd < 0)
        return -EPIPE;
    for (;;) {
        union init_reply rep;
        int fd;
        ssize_t n = ctl_recv(sb->ctl_fd, &rep, &fd, MSG_DONTWAIT);
        if (fd >= 0)
            close(fd); /* only a late EXEC_REPLY carries one; nobody waits for it any more */
        if (n == -EAGAIN || n == -EWOULDBLOCK)
            return 0;
        if (n < 0)
            return (int)n;
        if (rep.h.type == INIT_MSG_EXIT && n == sizeof(rep.exit)) {
            *ret = (struct runtime_exit_event){rep.exit.pid, rep.exit.status};
            return 1;
        }
        /* A reply to an exec that timed out: drop it and look at the next packet. */
    }
}

/* --- teardown ------------------------------------------------------------------------------------ */

int runtime_destroy(struct runtime_sandbox *sb)
{
    int ret = 0;
    if (sb->init_pidfd >= 0) {
        /* A frozen process cannot die: thaw a paused sandbox first. */
        if (sb->state_dir) {
            sbx_error ignored = {0};
            (void)cgroup_freeze(sb->cgroup_name, false, &ignored);
        }
        /* PID 1 dying takes every process of its namespace with it; waitid returns once they are gone. */
        (void)pidfd_send_signal(sb->init_pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        while (waitid(P_PIDFD, (id_t)sb->init_pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        /* ECHILD: the shim's own SIGCHLD handling reaped it first. */
        close(sb->init_pidfd);
    }
    if (sb->state_dir) {
        int r = cgroup_destroy(sb->cgroup_name);
        if (r < 0)
            ret = r;
        r = rootfs_unmount(sb->state_dir);
        if (r < 0 && ret == 0)
            ret = r;
    }
    if (sb->ctl_fd >= 0)
        close(sb->ctl_fd);
    if (sb->rootfs_fd >= 0)
        close(sb->rootfs_fd);
    if (sb->state_dir) { /* after the rootfs fd, which holds the overlay and so the disk */
        int r = disk_detach(sb->state_dir, DISK_RELEASE_WAIT_MS);
        if (r < 0 && ret == 0)
            ret = r;
    }
    free(sb->pending);
    free(sb->state_dir);
    uid_t uid_base = sb->uid_base;
    sandbox_reset(sb);
    sb->uid_base = uid_base;
    return ret;
}

int runtime_cleanup(const char *id, const char *state_dir)
{
    char name[CGROUP_NAME_MAX];
    cgroup_name_of(id, name);
    int r = cgroup_destroy(name);
    int u = rootfs_unmount(state_dir);
    int k = disk_detach(state_dir, DISK_RELEASE_WAIT_MS);
    return r < 0 ? r : u < 0 ? u : k;
}

int runtime_set_limits(const char *id, uint64_t memory_bytes, double cpus, uint64_t pids_max, sbx_error *err)
{
    char name[CGROUP_NAME_MAX];
    cgroup_name_of(id, name);
    struct runtime_config cfg = {.id = id, .memory_bytes = memory_bytes, .cpus = cpus, .pids_max = pids_max};
    return cgroup_set_limits(name, &cfg, err);
}

int runtime_freeze(const char *id, bool frozen, sbx_error *err)
{
    char name[CGROUP_NAME_MAX];
    cgroup_name_of(id, name);
    return cgroup_freeze(name, frozen, err);
}

int runtime_metrics(const char *id, struct runtime_metrics *ret)
{
    char name[CGROUP_NAME_MAX];
    cgroup_name_of(id, name);
    return cgroup_metrics(name, ret);
}

int runtime_sandbox_metrics(const struct runtime_sandbox *sb, struct runtime_metrics *ret)
{
    return cgroup_metrics(sb->cgroup_name, ret);
}

int runtime_probe_host(struct runtime_host_info *ret)
{
    ret->cgroup_v2 = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
    /* open_tree/mount_setattr exist from 5.12; overlayfs takes idmapped layers from 5.19. */
    int fd = open_tree(AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    ret->idmapped_mounts = fd >= 0;
    if (fd >= 0)
        close(fd);
    return 0;
}
