/* sbx-testhelper: a static multi-call binary that tests copy into sandboxes, so that they depend on
 * nothing the host or the snapshot has (crun tests/init.c). Run `sbx-testhelper help` for the list.
 *
 * Output contract: data commands (echo, cat, write) print only their data. Every other command prints
 * one line "<command> ok key=value..." or "<command> error errno=NAME code=N [key=value...]" on stdout
 * and exits 0 on success, 1 on failure, 2 on bad usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int usage(const char *msg)
{
    fprintf(stderr, "sbx-testhelper: %s (try `sbx-testhelper help`)\n", msg);
    return 2;
}

static const char *errname(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "UNKNOWN";
}

static int report_errno(const char *cmd, int e, const char *extra)
{
    printf("%s error errno=%s code=%d%s%s\n", cmd, errname(e), e, extra && *extra ? " " : "",
           extra ? extra : "");
    fflush(stdout);
    return 1;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static bool parse_ll(const char *s, long long *ret)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || end == s || *end)
        return false;
    *ret = v;
    return true;
}

static int parse_signal(const char *s)
{
    static const struct {
        const char *name;
        int sig;
    } table[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"ILL", SIGILL},
                 {"TRAP", SIGTRAP}, {"ABRT", SIGABRT}, {"BUS", SIGBUS},   {"FPE", SIGFPE},
                 {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
                 {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"CHLD", SIGCHLD},
                 {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"XCPU", SIGXCPU},
                 {"XFSZ", SIGXFSZ}, {"SYS", SIGSYS}};
    long long n;
    if (parse_ll(s, &n))
        return n > 0 && n < NSIG ? (int)n : -1;
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcasecmp(s, table[i].name) == 0)
            return table[i].sig;
    return -1;
}

/* --- data commands ------------------------------------------------------------------------------- */

static int cmd_echo(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        printf("%s%s", i > 1 ? " " : "", argv[i]);
    printf("\n");
    return 0;
}

static int cmd_cat(int argc, char **argv)
{
    static char buf[65536];
    for (;;) {
        ssize_t n = read(0, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "cat: read: %s\n", strerror(errno));
            return 1;
        }
        if (n == 0)
            return 0;
        if (write_all(1, buf, (size_t)n) < 0)
            return 1;
    }
}

/* N bytes where byte i is (i * 7 + 3) % 251, so a receiver can verify order and completeness. */
static int cmd_write(int argc, char **argv)
{
    long long n;
    if (argc < 2 || !parse_ll(argv[1], &n) || n < 0)
        return usage("write N [stdout|stderr|both]");
    const char *where = argc > 2 ? argv[2] : "stdout";
    int fds[2] = {1, -1};
    if (strcmp(where, "stderr") == 0)
        fds[0] = 2;
    else if (strcmp(where, "both") == 0)
        fds[1] = 2;
    else if (strcmp(where, "stdout") != 0)
        return usage("write: stream must be stdout, stderr or both");
    static unsigned char buf[251 * 256];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)((i * 7 + 3) % 251);
    /* sizeof(buf) is a multiple of 251, so every chunk starts the pattern at i % 251 == 0. */
    for (long long off = 0; off < n;) {
        size_t len = (size_t)(n - off < (long long)sizeof(buf) ? n - off : (long long)sizeof(buf));
        for (int k = 0; k < 2 && fds[k] >= 0; k++)
            if (write_all(fds[k], buf, len) < 0)
                return 1;
        off += (long long)len;
    }
    return 0;
}

static int cmd_sleep(int argc, char **argv)
{
    char *end;
    double s = argc > 1 ? strtod(argv[1], &end) : -1;
    if (argc < 2 || *end || s < 0)
        return usage("sleep SECONDS");
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    printf("sleep ok seconds=%s\n", argv[1]);
    return 0;
}

static int cmd_exit(int argc, char **argv)
{
    long long code;
    if (argc < 2 || !parse_ll(argv[1], &code))
        return usage("exit CODE");
    fflush(stdout);
    _exit((int)(code & 0xff));
}

static int cmd_kill_self(int argc, char **argv)
{
    int sig = argc > 1 ? parse_signal(argv[1]) : -1;
    if (sig < 0)
        return usage("kill-self SIGNAL");
    fflush(stdout);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    kill(getpid(), sig);
    if (sig == SIGSTOP || sig == SIGTSTP) {
        printf("kill-self ok continued=1\n");
        return 0;
    }
    /* Signals whose default action is to ignore, or a blocked/ignored one: still alive. */
    printf("kill-self error errno=ESRCH code=%d survived=1 signal=%d\n", ESRCH, sig);
    return 1;
}

/* --- process and terminal ------------------------------------------------------------------------ */

static int cmd_isatty(int argc, char **argv)
{
    int in = isatty(0), out = isatty(1), err = isatty(2);
    struct winsize ws = {0};
    int fd = out ? 1 : in ? 0 : err ? 2 : -1;
    if (fd >= 0)
        (void)ioctl(fd, TIOCGWINSZ, &ws);
    printf("isatty ok stdin=%d stdout=%d stderr=%d rows=%u cols=%u\n", in, out, err, ws.ws_row, ws.ws_col);
    return 0;
}

static int cmd_pause(int argc, char **argv)
{
    printf("pause ok pid=%d\n", (int)getpid());
    fflush(stdout);
    while (pause() < 0)
        ;
    return 0;
}

static int cmd_getpid(int argc, char **argv)
{
    printf("getpid ok pid=%d ppid=%d pgid=%d sid=%d\n", (int)getpid(), (int)getppid(), (int)getpgrp(),
           (int)getsid(0));
    return 0;
}

static int cmd_getuid(int argc, char **argv)
{
    gid_t groups[64];
    int n = getgroups(64, groups);
    printf("getuid ok uid=%u gid=%u euid=%u egid=%u groups=", (unsigned)getuid(), (unsigned)getgid(),
           (unsigned)geteuid(), (unsigned)getegid());
    for (int i = 0; i < n; i++)
        printf("%s%u", i ? "," : "", (unsigned)groups[i]);
    printf("\n");
    return 0;
}

static int cmd_caps(int argc, char **argv)
{
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return report_errno("caps", errno, NULL);
    char line[512];
    static const char *keys[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"};
    printf("caps ok");
    while (fgets(line, sizeof(line), f)) {
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            size_t k = strlen(keys[i]);
            if (strncmp(line, keys[i], k) == 0 && line[k] == ':') {
                char *v = line + k + 1;
                v += strspn(v, " \t");
                v[strcspn(v, "\n")] = '\0';
                printf(" %s=%s", keys[i], v);
            }
        }
    }
    fclose(f);
    printf("\n");
    return 0;
}

static int cmd_env(int argc, char **argv)
{
    for (char **e = environ; *e; e++)
        printf("%s\n", *e);
    return 0;
}

static int cmd_pwd(int argc, char **argv)
{
    char buf[4096];
    if (!getcwd(buf, sizeof(buf)))
        return report_errno("pwd", errno, NULL);
    printf("pwd ok cwd=%s\n", buf);
    return 0;
}

static int cmd_hostname(int argc, char **argv)
{
    char buf[256];
    if (gethostname(buf, sizeof(buf)) < 0)
        return report_errno("hostname", errno, NULL);
    printf("hostname ok name=%s\n", buf);
    return 0;
}

/* --- resource limits ----------------------------------------------------------------------------- */

/* Forks children that sleep until killed, until fork fails or MAX is reached; reports the count. */
static int cmd_forkbomb(int argc, char **argv)
{
    long long max = 10000;
    if (argc > 1 && (!parse_ll(argv[1], &max) || max < 0))
        return usage("forkbomb [MAX]");
    pid_t *pids = calloc((size_t)max + 1, sizeof(pid_t));
    if (!pids)
        return report_errno("forkbomb", ENOMEM, NULL);
    long long n = 0;
    int e = 0;
    fflush(stdout);
    while (n < max) {
        pid_t p = fork();
        if (p < 0) {
            e = errno;
            break;
        }
        if (p == 0) {
            for (;;)
                pause();
        }
        pids[n++] = p;
    }
    for (long long i = 0; i < n; i++)
        kill(pids[i], SIGKILL);
    for (long long i = 0; i < n; i++)
        while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
            ;
    free(pids);
    printf("forkbomb ok forks=%lld stopped_by=%s\n", n, e ? errname(e) : "max");
    return 0;
}

/* Allocates and touches MB mebibytes; with `hold`, then waits to be killed. */
static int cmd_memhog(int argc, char **argv)
{
    long long mb;
    if (argc < 2 || !parse_ll(argv[1], &mb) || mb < 0)
        return usage("memhog MB [hold]");
    size_t chunk = 1 << 20;
    long long done = 0;
    for (; done < mb; done++) {
        char *p = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            char extra[64];
            snprintf(extra, sizeof(extra), "touched_mb=%lld", done);
            return report_errno("memhog", errno, extra);
        }
        for (size_t i = 0; i < chunk; i += 4096)
            p[i] = (char)(i + 1);
    }
    printf("memhog ok touched_mb=%lld\n", done);
    fflush(stdout);
    if (argc > 2 && strcmp(argv[2], "hold") == 0)
        for (;;)
            pause();
    return 0;
}

/* --- privileged operations that a sandbox should refuse ------------------------------------------ */

static int cmd_try_mount(int argc, char **argv)
{
    char dir[] = "/tmp/sbx-testhelper-mnt-XXXXXX";
    const char *target = argc > 1 ? argv[1] : mkdtemp(dir) ? dir : "/mnt";
    int r = mount("sbx-testhelper", target, "tmpfs", 0, "size=1m");
    int e = errno;
    if (r == 0)
        umount2(target, MNT_DETACH);
    if (target == dir)
        rmdir(dir);
    if (r < 0)
        return report_errno("try-mount", e, NULL);
    printf("try-mount ok target=%s\n", target);
    return 0;
}

/* Tries each namespace in a child so that one success does not change the next attempt. Exits 0 only
 * when every requested unshare succeeded. */
static int cmd_try_unshare(int argc, char **argv)
{
    static const struct {
        const char *name;
        int flag;
    } ns[] = {{"user", CLONE_NEWUSER},    {"mount", CLONE_NEWNS}, {"net", CLONE_NEWNET},
              {"pid", CLONE_NEWPID},      {"uts", CLONE_NEWUTS},  {"ipc", CLONE_NEWIPC},
              {"cgroup", CLONE_NEWCGROUP}};
    const char *want = argc > 1 ? argv[1] : "all";
    bool all_ok = true, any = false;
    printf("try-unshare");
    for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        if (strcmp(want, "all") != 0 && strcmp(want, ns[i].name) != 0)
            continue;
        any = true;
        fflush(stdout);
        pid_t p = fork();
        if (p == 0)
            _exit(unshare(ns[i].flag) < 0 ? errno : 0);
        int st = 0;
        while (p > 0 && waitpid(p, &st, 0) < 0 && errno == EINTR)
            ;
        int e = p < 0 ? errno : WIFEXITED(st) ? WEXITSTATUS(st) : EIO;
        printf(" %s=%s", ns[i].name, e ? errname(e) : "ok");
        all_ok &= e == 0;
    }
    if (!any) {
        printf("\n");
        return usage("try-unshare [all|user|mount|net|pid|uts|ipc|cgroup]");
    }
    printf(" result=%s\n", all_ok ? "ok" : "denied");
    return all_ok ? 0 : 1;
}

static int cmd_try_ptrace(int argc, char **argv)
{
    long long pid;
    if (argc < 2 || !parse_ll(argv[1], &pid) || pid <= 0)
        return usage("try-ptrace PID");
    if (ptrace(PTRACE_SEIZE, (pid_t)pid, NULL, NULL) < 0)
        return report_errno("try-ptrace", errno, NULL);
    ptrace(PTRACE_DETACH, (pid_t)pid, NULL, NULL);
    printf("try-ptrace ok pid=%lld\n", pid);
    return 0;
}

/* --- network and files --------------------------------------------------------------------------- */

static int cmd_connect(int argc, char **argv)
{
    if (argc < 3)
        return usage("connect HOST PORT [TIMEOUT_SEC]");
    double timeout = argc > 3 ? strtod(argv[3], NULL) : 5.0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *res = NULL;
    int r = getaddrinfo(argv[1], argv[2], &hints, &res);
    if (r == EAI_NONAME) {
        hints.ai_flags = 0;
        r = getaddrinfo(argv[1], argv[2], &hints, &res);
    }
    if (r != 0) {
        printf("connect error errno=EAI code=%d resolve=%s\n", r, gai_strerror(r));
        return 1;
    }
    int e = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            e = errno;
            close(fd);
            continue;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n = poll(&pfd, 1, (int)(timeout * 1000));
        socklen_t len = sizeof(e);
        if (n == 0)
            e = ETIMEDOUT;
        else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
            e = errno;
        close(fd);
        if (e == 0) {
            char host[INET6_ADDRSTRLEN] = "?";
            void *a = ai->ai_family == AF_INET ? (void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                                               : (void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
            inet_ntop(ai->ai_family, a, host, sizeof(host));
            printf("connect ok address=%s port=%s\n", host, argv[2]);
            freeaddrinfo(res);
            return 0;
        }
    }
    freeaddrinfo(res);
    return report_errno("connect", e, NULL);
}

static int cmd_readfile(int argc, char **argv)
{
    if (argc < 2)
        return usage("readfile PATH");
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return report_errno("readfile", errno, NULL);
    static char buf[65536];
    long long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return report_errno("readfile", e, NULL);
        }
        if (n == 0)
            break;
        total += n;
    }
    close(fd);
    printf("readfile ok size=%lld\n", total);
    return 0;
}

static int cmd_writefile(int argc, char **argv)
{
    if (argc < 2)
        return usage("writefile PATH [DATA]");
    const char *data = argc > 2 ? argv[2] : "sbx-testhelper\n";
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return report_errno("writefile", errno, NULL);
    int r = write_all(fd, data, strlen(data));
    if (r == 0 && close(fd) < 0)
        r = -errno;
    else if (r < 0)
        close(fd);
    if (r < 0)
        return report_errno("writefile", -r, NULL);
    printf("writefile ok size=%zu\n", strlen(data));
    return 0;
}

static int cmd_help(int argc, char **argv);

static const struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
} commands[] = {
    {"echo", cmd_echo, "echo ARGS...            print ARGS joined by spaces"},
    {"cat", cmd_cat, "cat                     copy stdin to stdout"},
    {"write", cmd_write, "write N [stdout|stderr|both]  N bytes, byte i = (i*7+3) % 251"},
    {"sleep", cmd_sleep, "sleep SECONDS           fractions allowed"},
    {"exit", cmd_exit, "exit CODE"},
    {"kill-self", cmd_kill_self, "kill-self SIGNAL        name (TERM, SIGKILL) or number"},
    {"isatty", cmd_isatty, "isatty                  stdin/stdout/stderr ttys and window size"},
    {"pause", cmd_pause, "pause                   print the pid and wait for a signal"},
    {"getpid", cmd_getpid, "getpid"},
    {"getuid", cmd_getuid, "getuid"},
    {"caps", cmd_caps, "caps                    Cap*/NoNewPrivs/Seccomp from /proc/self/status"},
    {"env", cmd_env, "env                     the environment, one per line"},
    {"pwd", cmd_pwd, "pwd"},
    {"hostname", cmd_hostname, "hostname"},
    {"forkbomb", cmd_forkbomb, "forkbomb [MAX=10000]    fork until failure, report the count"},
    {"memhog", cmd_memhog, "memhog MB [hold]        allocate and touch MB MiB"},
    {"try-mount", cmd_try_mount, "try-mount [TARGET]      mount a tmpfs"},
    {"try-unshare", cmd_try_unshare, "try-unshare [all|user|mount|net|pid|uts|ipc|cgroup]"},
    {"try-ptrace", cmd_try_ptrace, "try-ptrace PID          PTRACE_SEIZE then detach"},
    {"connect", cmd_connect, "connect HOST PORT [TIMEOUT_SEC=5]"},
    {"readfile", cmd_readfile, "readfile PATH"},
    {"writefile", cmd_writefile, "writefile PATH [DATA]"},
    {"help", cmd_help, "help"},
};

static int cmd_help(int argc, char **argv)
{
    printf("usage: sbx-testhelper COMMAND [ARGS...]\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        printf("  %s\n", commands[i].usage);
    printf("Commands other than echo/cat/write/env print `<command> ok key=value...` or\n"
           "`<command> error errno=NAME code=N` and exit 0 / 1 (2 = usage).\n");
    return 0;
}

int main(int argc, char **argv)
{
    /* Also callable through a symlink named after the command (busybox style). */
    const char *self = strrchr(argv[0], '/');
    self = self ? self + 1 : argv[0];
    if (strcmp(self, "sbx-testhelper") != 0) {
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
            if (strcmp(self, commands[i].name) == 0)
                return commands[i].fn(argc, argv);
    }
    if (argc < 2)
        return usage("missing command");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            int r = commands[i].fn(argc - 1, argv + 1);
            fflush(stdout);
            return r;
        }
    return usage("unknown command");
}
