/* sbx-init: PID 1 inside a sandbox.
 *
 * The runtime starts it inside all namespaces, after pivot_root, with fd 0..2 on /dev/null and the
 * control socket at INIT_CTL_FD (see init_protocol.h). It forks and execs commands on request,
 * reports their exits, reaps orphans silently, and takes the whole sandbox down when the host goes
 * away (EOF on the socket) or sends it SIGTERM/SIGINT.
 *
 * It is deliberately tiny and self-contained: a static binary that links nothing of ours and is
 * never sanitized, because it runs in an arbitrary rootfs.
 *
 * Ordering rule: SIGCHLD is blocked and only looked at through a signalfd in the main loop, and an
 * EXEC request is handled to completion (fork, wait for execve, reply) before the loop looks at the
 * signalfd again. So a command is never reaped before its EXEC_REPLY was sent, and EXEC_REPLY
 * always precedes EXIT on the wire. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init_protocol.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MESSAGE_MAX sizeof(((struct init_msg_exec_reply *)0)->message)

/* What a child that failed before or in execve() writes to its error pipe. At most PIPE_BUF
 * bytes, so the write is atomic. */
struct exec_error {
    int32_t error;
    char message[MESSAGE_MAX];
};

/* A validated EXEC request; the strings point into msg_buf. */
struct exec_req {
    uint32_t flags;
    char **argv; /* argc entries + NULL */
    char **envp; /* envc entries + NULL */
    const char *cwd;
    const char *user; /* NULL = stay root */
    int fds[3];
};

static char *msg_buf; /* INIT_MSG_MAX bytes: one received packet */

/* Pids of running commands (not orphans). Live commands are bounded by the host, so a linear scan
 * per reap is cheap; entries are removed on reap, so the table does not grow over time. */
static pid_t *commands;
static size_t n_commands, cap_commands;

/* The host is gone or asked us to stop: kill everything in the pid namespace and leave. Exiting as
 * PID 1 would kill the namespace anyway; the explicit kill makes it immediate. */
static _Noreturn void shutdown_all(int code)
{
    (void)kill(-1, SIGKILL);
    _exit(code);
}

static int commands_reserve(void)
{
    if (n_commands < cap_commands)
        return 0;
    size_t cap = cap_commands ? cap_commands * 2 : 64;
    pid_t *p = realloc(commands, cap * sizeof(*p));
    if (!p)
        return -ENOMEM;
    commands = p;
    cap_commands = cap;
    return 0;
}

/* Returns 1 if pid was a command (and forgets it), 0 if it was an orphan. */
static int commands_remove(pid_t pid)
{
    for (size_t i = 0; i < n_commands; i++) {
        if (commands[i] == pid) {
            commands[i] = commands[--n_commands];
            return 1;
        }
    }
    return 0;
}

/* Sends one packet, with fd as SCM_RIGHTS when fd >= 0. Blocks until it is queued: messages are
 * never dropped. Any error other than a transient one means the host is gone. */
static void send_packet(const void *data, size_t len, int fd)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;

    if (fd >= 0) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    for (;;) {
        if (sendmsg(INIT_CTL_FD, &mh, MSG_NOSIGNAL) >= 0)
            return;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of socket buffer or kernel memory for the moment: wait and retry. */
            struct pollfd p = {.fd = INIT_CTL_FD, .events = POLLOUT};
            (void)poll(&p, 1, 10);
            continue;
        }
        shutdown_all(0);
    }
}

static void send_reply(int32_t error, int32_t pid, int pidfd, const char *message)
{
    struct init_msg_exec_reply r = {
        .h = {.type = INIT_MSG_EXEC_REPLY, .len = sizeof(r)}, .error = error, .pid = pid};
    if (message)
        snprintf(r.message, sizeof(r.message), "%s", message);
    send_packet(&r, sizeof(r), pidfd);
}

/* Replies with an error; returns -1 so that parse_exec() can `return reply_error(...)`. */
static int reply_error(int error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int reply_error(int error, const char *fmt, ...)
{
    char message[MESSAGE_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    send_reply(error ? error : EIO, 0, -1, message);
    return -1;
}

/* --- In the forked child: no return, every failure goes to the error pipe. --- */

static _Noreturn void child_fail(int err_fd, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static _Noreturn void child_fail(int err_fd, int error, const char *fmt, ...)
{
    struct exec_error e = {.error = error ? error : EIO};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    ssize_t r = write(err_fd, &e, sizeof(e));
    (void)r; /* nothing left to do if even this fails: the parent sees a short record */
    _exit(127);
}

/* Moves *fd above 2 so that dup2() onto 0..2 cannot clobber it. */
static void move_above_stdio(int *fd, int err_fd)
{
    if (*fd > 2)
        return;
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        child_fail(err_fd, errno, "dup: %s", strerror(errno));
    *fd = nfd;
}

/* execve() with a PATH search like execvpe(), but PATH comes from envp, not from our environ.
 * Returns the errno to report. Unlike execvpe() there is no /bin/sh retry on ENOEXEC. */
static int exec_command(const char *file, char **argv, char **envp)
{
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        return errno;
    }
    if (*file == '\0')
        return ENOENT;
    size_t flen = strlen(file);
    if (flen > NAME_MAX)
        return ENAMETOOLONG;

    const char *path = DEFAULT_PATH;
    for (char **e = envp; *e; e++) {
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
            break;
        }
    }

    char full[PATH_MAX];
    int saw_eacces = 0;
    for (const char *dir = path;;) {
        const char *end = strchrnul(dir, ':');
        size_t dlen = (size_t)(end - dir);
        if (dlen + 1 + flen < sizeof(full)) { /* directories too long to use are skipped */
            size_t off = 0;
            if (dlen > 0) { /* an empty element means the current directory */
                memcpy(full, dir, dlen);
                full[dlen] = '/';
                off = dlen + 1;
            }
            memcpy(full + off, file, flen + 1);
            execve(full, argv, envp);
            switch (errno) {
            case EACCES:
                saw_eacces = 1;
                break;
            case ENOENT:
            case ENOTDIR:
            case ESTALE:
            case ENODEV:
            case ETIMEDOUT:
                break; /* not here: keep looking */
            default:
                return errno; /* found but not runnable (ENOEXEC, E2BIG, ...) */
            }
        }
        if (*end == '\0')
            break;
        dir = end + 1;
    }
    return saw_eacces ? EACCES : ENOENT;
}

/* Finds name (or, when numeric, the uid) in the sandbox's /etc/passwd: fills uid, gid and home (a copy of
 * at most home_size - 1 bytes). A static init cannot use NSS, and inside a sandbox the files are all
 * there is. Returns 0, or -1 when there is no such user. */
static int passwd_lookup(const char *name, bool numeric, uid_t want, uid_t *uid, gid_t *gid, char *home,
                         size_t home_size)
{
    FILE *f = fopen("/etc/passwd", "re");
    if (!f)
        return -1;
    char line[1024];
    int found = -1;
    while (found < 0 && fgets(line, sizeof(line), f)) {
        char *fields[7] = {0}, *p = line;
        line[strcspn(line, "\n")] = '\0';
        for (int i = 0; i < 7; i++) { /* strsep keeps empty fields (a passwordless entry's) */
            fields[i] = strsep(&p, ":");
            if (!fields[i])
                break;
        }
        if (!fields[3])
            continue;
        char *end;
        unsigned long u = strtoul(fields[2], &end, 10), g;
        if (*end || !fields[2][0])
            continue;
        g = strtoul(fields[3], &end, 10);
        if (*end || !fields[3][0])
            continue;
        if (numeric ? u == want : strcmp(fields[0], name) == 0) {
            *uid = (uid_t)u;
            *gid = (gid_t)g;
            snprintf(home, home_size, "%s", fields[5] && fields[5][0] ? fields[5] : "/");
            found = 0;
        }
    }
    fclose(f);
    return found;
}

/* Drops to req->user: "NAME" (from /etc/passwd), "UID" (its passwd group, else gid = uid) or
 * "UID:GID". Supplementary groups are cleared. A user found in /etc/passwd also gets its HOME, USER and
 * LOGNAME, unless the command's env set HOME to something other than root's default. */
static char user_home[512]; /* the home become_user found, "" if none (in the child only) */

static void become_user(struct exec_req *req, int err_fd)
{
    const char *u = req->user;
    uid_t uid = 0;
    gid_t gid = 0;
    char *home = user_home;
    const size_t home_size = sizeof(user_home);
    char *end;
    unsigned long n = strtoul(u, &end, 10);
    bool numeric = u[0] >= '0' && u[0] <= '9';
    bool known = false;
    if (numeric && *end == ':') {
        unsigned long g = strtoul(end + 1, &end, 10);
        if (*end || n > 65535 || g > 65535)
            child_fail(err_fd, EINVAL, "user `%s`: UID:GID must be numbers in 0..65535", u);
        uid = (uid_t)n;
        gid = (gid_t)g;
    } else if (numeric) {
        if (*end || n > 65535)
            child_fail(err_fd, EINVAL, "user `%s`: a uid must be in 0..65535", u);
        known = passwd_lookup(NULL, true, (uid_t)n, &uid, &gid, home, home_size) == 0;
        if (!known) {
            uid = (uid_t)n;
            gid = (gid_t)n;
        }
    } else {
        /* "NAME:GROUP" (images say so): the user's passwd entry; the group part is not looked up. */
        char lookup[64];
        snprintf(lookup, sizeof(lookup), "%.*s", (int)strcspn(u, ":"), u);
        if (passwd_lookup(lookup, false, 0, &uid, &gid, home, home_size) < 0)
            child_fail(err_fd, ESRCH, "user `%s` is not in the sandbox's /etc/passwd", lookup);
        known = true;
    }
    if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
        child_fail(err_fd, errno, "become user `%s` (%u:%u): %s", u, (unsigned)uid, (unsigned)gid,
                   strerror(errno));
    if (!known || uid == 0)
        return;
    /* A new envp with HOME (when it was root's default), USER and LOGNAME set for the user. Its strings
     * live until exec in this child: leaking them is fine; out of memory leaves the env as it was. */
    char name_buf[64];
    snprintf(name_buf, sizeof(name_buf), "%.*s", (int)strcspn(u, ":"), u);
    const char *name = numeric ? NULL : name_buf;
    size_t n_env = 0;
    while (req->envp[n_env])
        n_env++;
    char **env = calloc(n_env + 3, sizeof(char *));
    if (!env)
        return;
    size_t k = 0;
    bool have_user = false, have_logname = false;
    for (size_t i = 0; i < n_env; i++) {
        char *e = req->envp[i];
        if (strcmp(e, "HOME=/root") == 0 && home[0] && asprintf(&e, "HOME=%s", home) < 0)
            e = req->envp[i];
        if (name && strncmp(e, "USER=", 5) == 0) {
            have_user = true;
            if (asprintf(&e, "USER=%s", name) < 0)
                e = req->envp[i];
        }
        if (name && strncmp(e, "LOGNAME=", 8) == 0) {
            have_logname = true;
            if (asprintf(&e, "LOGNAME=%s", name) < 0)
                e = req->envp[i];
        }
        env[k++] = e;
    }
    if (name && !have_user && asprintf(&env[k], "USER=%s", name) >= 0)
        k++;
    if (name && !have_logname && asprintf(&env[k], "LOGNAME=%s", name) >= 0)
        k++;
    env[k] = NULL;
    req->envp = env;
}

static _Noreturn void run_child(struct exec_req *req, int err_fd)
{
    /* The command must not inherit our blocked SIGCHLD/SIGTERM/SIGINT or ignored SIGPIPE. execve resets
     * handled signals itself and SIGPIPE is the only one init ignores, so one call is enough (this is on
     * every command's critical path). */
    struct sigaction sa = {.sa_handler = SIG_DFL};
    (void)sigaction(SIGPIPE, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);

    if ((req->flags & INIT_EXEC_NEW_SESSION) && setsid() < 0)
        child_fail(err_fd, errno, "setsid: %s", strerror(errno));

    move_above_stdio(&err_fd, err_fd);
    for (int i = 0; i < 3; i++)
        move_above_stdio(&req->fds[i], err_fd);
    for (int i = 0; i < 3; i++) /* dup2() clears CLOEXEC on the target */
        if (dup2(req->fds[i], i) < 0)
            child_fail(err_fd, errno, "dup2: %s", strerror(errno));
    /* A pty command: the new session takes its terminal (the shim opened the slave) as the
     * controlling tty, so the line discipline's ^C/^Z/SIGWINCH reach its foreground group. */
    if ((req->flags & INIT_EXEC_CTTY) && ioctl(0, TIOCSCTTY, 0) < 0)
        child_fail(err_fd, errno, "TIOCSCTTY: %s", strerror(errno));

    if (req->user)
        become_user(req, err_fd);

    /* No cwd: the user's home when it can go there, else /. */
    if (!req->cwd[0] && user_home[0] && chdir(user_home) == 0)
        goto exec;
    const char *cwd = req->cwd[0] ? req->cwd : "/";
    if (chdir(cwd) < 0)
        child_fail(err_fd, errno, "chdir %s: %s", cwd, strerror(errno));

exec:;
    int error = exec_command(req->argv[0], req->argv, req->envp);
    child_fail(err_fd, error, "execve %s: %s", req->argv[0], strerror(error));
}

/* --- In init. --- */

/* Checks the packet in msg_buf (n bytes) and fills req. Returns 0, or -1 after replying EINVAL. */
static int parse_exec(size_t n, int msg_flags, int nfds, struct exec_req *req)
{
    struct init_msg_exec m;

    if (msg_flags & MSG_TRUNC)
        return reply_error(EINVAL, "packet larger than %u bytes", INIT_MSG_MAX);
    if (msg_flags & MSG_CTRUNC)
        return reply_error(EINVAL, "too many fds or control data");
    if (n < sizeof(struct init_msg_header))
        return reply_error(EINVAL, "short packet (%zu bytes)", n);
    memcpy(&m.h, msg_buf, sizeof(m.h));
    if (m.h.len != n)
        return reply_error(EINVAL, "header length %u but packet is %zu bytes", m.h.len, n);
    if (m.h.type != INIT_MSG_EXEC)
        return reply_error(EINVAL, "unexpected message type %u", m.h.type);
    if (n < sizeof(m))
        return reply_error(EINVAL, "short exec packet (%zu bytes)", n);
    memcpy(&m, msg_buf, sizeof(m));
    if (m.strings_len != n - sizeof(m))
        return reply_error(EINVAL, "strings_len %u but %zu bytes follow", m.strings_len, n - sizeof(m));
    if (m.argc < 1)
        return reply_error(EINVAL, "argc is 0");
    if (nfds != 3)
        return reply_error(EINVAL, "expected 3 fds, got %d", nfds);

    /* Exactly argc + envc + 1 strings, the last one ending the packet. */
    char *s = msg_buf + sizeof(m);
    uint64_t want = (uint64_t)m.argc + m.envc + 1 + ((m.flags & INIT_EXEC_USER) ? 1 : 0), have = 0;
    for (uint32_t i = 0; i < m.strings_len; i++)
        have += s[i] == '\0';
    if (have != want || m.strings_len == 0 || s[m.strings_len - 1] != '\0')
        return reply_error(EINVAL, "expected %llu NUL-terminated strings filling %u bytes",
                           (unsigned long long)want, m.strings_len);

    char **ptrs = malloc((m.argc + m.envc + 2) * sizeof(char *)); /* argv + NULL + envp + NULL */
    if (!ptrs)
        return reply_error(ENOMEM, "out of memory");
    req->flags = m.flags;
    req->argv = ptrs;
    req->envp = ptrs + m.argc + 1;
    for (uint32_t i = 0; i < m.argc; i++, s += strlen(s) + 1)
        req->argv[i] = s;
    req->argv[m.argc] = NULL;
    for (uint32_t i = 0; i < m.envc; i++, s += strlen(s) + 1)
        req->envp[i] = s;
    req->envp[m.envc] = NULL;
    req->cwd = s;
    req->user = (m.flags & INIT_EXEC_USER) ? s + strlen(s) + 1 : NULL;
    return 0;
}

/* Forks and execs req, then answers with EXEC_REPLY. */
static void start_command(struct exec_req *req)
{
    int pipefd[2];

    if (commands_reserve() < 0) {
        reply_error(ENOMEM, "out of memory");
        return;
    }
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        reply_error(errno, "pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        reply_error(e, "fork: %s", strerror(e));
        return;
    }
    if (pid == 0) {
        close(pipefd[0]);
        run_child(req, pipefd[1]);
    }
    close(pipefd[1]);

    /* EOF without a record: execve() succeeded and closed the CLOEXEC write end. */
    struct exec_error e;
    size_t got = 0;
    while (got < sizeof(e)) {
        ssize_t r = read(pipefd[0], (char *)&e + got, sizeof(e) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(pipefd[0]);
    if (got > 0) {
        /* The child exited 127 right after writing; reap it here so no EXIT is ever sent. */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        if (got == sizeof(e)) {
            e.message[sizeof(e.message) - 1] = '\0';
            send_reply(e.error ? e.error : EIO, 0, -1, e.message);
        } else {
            reply_error(EIO, "short error record from the command");
        }
        return;
    }

    /* The command may already be a zombie here; pidfd_open() still works since we have not reaped
     * it. Without a pidfd the reply still goes out and the host copes. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    commands[n_commands++] = pid;
    send_reply(0, pid, pidfd, NULL);
    if (pidfd >= 0)
        close(pidfd);
}

/* Reads and handles one packet from the control socket. */
static void handle_ctl(void)
{
    struct iovec iov = {.iov_base = msg_buf, .iov_len = INIT_MSG_MAX};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(3 * sizeof(int))];
    } ctl;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};

    ssize_t n = recvmsg(INIT_CTL_FD, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0)
        shutdown_all(0); /* EOF or error: the host is gone */

    /* Collect every fd we were given, so that all of them get closed whatever happens. */
    int fds[3], nfds = 0, extra = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (nfds < 3) {
                fds[nfds++] = fd;
            } else {
                close(fd); /* CMSG_SPACE() rounding leaves room for a 4th fd */
                extra++;
            }
        }
    }

    struct exec_req req = {0};
    if (parse_exec((size_t)n, mh.msg_flags, nfds + extra, &req) == 0) {
        memcpy(req.fds, fds, sizeof(req.fds));
        start_command(&req);
        free(req.argv);
    }
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
}

/* Reaps every exited child; reports commands, drops orphans. */
static void reap_children(void)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            return; /* 0: others still running; ECHILD: none left */
        if (commands_remove(pid)) {
            struct init_msg_exit m = {
                .h = {.type = INIT_MSG_EXIT, .len = sizeof(m)}, .pid = pid, .status = status};
            send_packet(&m, sizeof(m), -1);
        }
    }
}

static void handle_signals(int sfd)
{
    struct signalfd_siginfo si;

    for (;;) {
        ssize_t n = read(sfd, &si, sizeof(si));
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(si))
            break; /* EAGAIN: drained */
        /* SIGTERM/SIGINT count only from outside the sandbox: the kernel reports pid 0 for a sender
         * in an ancestor pid namespace. Inside processes cannot take the sandbox down this way,
         * just as they could not signal an init without handlers. */
        if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && si.ssi_pid == 0)
            shutdown_all(0);
    }
    reap_children(); /* SIGCHLD coalesces, so always reap everything */
}

int main(void)
{
    /* Only 0..3 should be open; anything else the runtime leaked must not reach the commands. */
    (void)close_range(INIT_CTL_FD + 1, ~0u, 0);
    (void)fcntl(INIT_CTL_FD, F_SETFD, FD_CLOEXEC);
    /* Sends must block rather than fail; receives use MSG_DONTWAIT after poll(). */
    int fl = fcntl(INIT_CTL_FD, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK))
        (void)fcntl(INIT_CTL_FD, F_SETFL, fl & ~O_NONBLOCK);
    int sz = (int)INIT_SOCKBUF;
    (void)setsockopt(INIT_CTL_FD, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    (void)setsockopt(INIT_CTL_FD, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));

    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        shutdown_all(1);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        shutdown_all(1);

    msg_buf = malloc(INIT_MSG_MAX);
    if (!msg_buf)
        shutdown_all(1);

    /* One throwaway fork before saying ready: the first fork in a fresh sandbox (cgroup, pid namespace,
     * init's own copy-on-write pages) is the slowest, and it should not be the user's first command. */
    pid_t warm = fork();
    if (warm == 0)
        _exit(0);
    if (warm > 0)
        while (waitpid(warm, NULL, 0) < 0 && errno == EINTR)
            ;

    struct init_msg_ready ready = {.h = {.type = INIT_MSG_READY, .len = sizeof(ready)}, .pid = getpid()};
    send_packet(&ready, sizeof(ready), -1);

    for (;;) {
        struct pollfd p[2] = {
            {.fd = INIT_CTL_FD, .events = POLLIN},
            {.fd = sfd, .events = POLLIN},
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            shutdown_all(1);
        }
        if (p[1].revents)
            handle_signals(sfd);
        if (p[0].revents)
            handle_ctl();
    }
}
