/* sbx-shim: owns one sandbox on the host. Started by sbxd as `sbx-shim <state_dir>` with fd 3 = ready
 * pipe; creates the sandbox (runtime_create), then serves the protocol of shimclient/shim_protocol.h on
 * <state_dir>/shim.sock until it is told to shut down. It survives sbxd restarts.
 *
 * Design notes (docs/design/shim.md has the long form):
 * - Single-threaded, one small epoll loop of its own. Level-triggered; every fd is CLOEXEC.
 * - Output of every command is drained as fast as it comes: appended to logs/<cid>.stdout|.stderr
 *   (complete) and to a 256 KiB ring per stream. Offsets are byte counts. Attached clients each keep
 *   their own read offsets and are fed from the ring or, when they lag behind it, by pread from the log
 *   file; a client whose socket is full is simply not fed, so a slow client costs no memory.
 * - A command becomes `exited` only when sbx-init reported its exit and both output pipes reached EOF
 *   (at most EOF_GRACE_MS after the exit, for background children holding the pipes), so no byte can
 *   follow the EXIT frame.
 * - Timeouts and kill: SIGKILL to every process of the sandbox whose session id (innermost NSsid in
 *   /proc/<pid>/status) is the command's pid. Commands run with new_session, so that is the command and
 *   everything it started that did not call setsid() itself. Processes are found by scanning /proc for
 *   members of the sandbox's pid namespace and signalled through a /proc/<pid> dirfd (a pidfd), so a
 *   recycled pid is never hit.
 * - Every output byte also goes to the combined log (logs/<cid>.log + .idx, see shim_protocol.h), read
 *   by the logs op from a byte cursor.
 * - Lifecycle timers (ttl, idle_timeout, kill_on_disconnect) are deadlines checked by run_timers like the
 *   command timeout; attach and detach only arm or disarm them, so nothing is killed or freed from
 *   inside a client callback. They live here, not in sbxd, so they keep running while sbxd is down. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/codec.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/error.h"
#include "base/log.h"
#include "base/util.h"
#include "runtime/runtime.h"
#include "shimclient/shim_protocol.h"
#include "shim/netops.h"

#define READY_FD 3
#define RING_SIZE (256u * 1024)      /* in-memory tail per stream */
#define READ_CHUNK (64u * 1024)      /* one read from a command pipe or a client */
#define DATA_CHUNK (64u * 1024)      /* largest DATA payload we send */
#define CLIENT_OUT_HIGH (1u << 20)   /* stop feeding/reading a client above this many queued bytes */
#define STDIN_PENDING_MAX (8u << 20) /* queued stdin bytes per command */
#define MAX_RUNNING 256
#define MAX_KEPT 4096
#define MAX_ATTACHERS 64
#define MAX_CLIENTS 1024
#define ARGV_MAX_ENTRIES 4096
#define ENV_MAX_ENTRIES 4096
#define ARGV_ENV_MAX_BYTES (2u << 20) /* argv + env strings together */
#define EOF_GRACE_MS 2000
#define EXITED_EVENTS_MAX 256  /* exits reported before their exec was registered */
#define DEFAULT_TTL_MS 600000  /* a finished command stays reconnectable this long */
#define DEFAULT_IDLE_MS 300000 /* a running command with no client attached is killed after this */
#define DEFAULT_GRACE_MS 10000 /* kill_on_disconnect waits this long for a re-attach */
#define TIMER_MAX_MS (366LL * 24 * 3600 * 1000)
#define PIN_MS 30000      /* how long an exec with will_attach waits for its first attach */
#define EXPIRED_KEPT 1024 /* ids of expired commands remembered (answered `expired`) */
#define LOGS_LIMIT_DEFAULT (64u * 1024)
#define LOGS_LIMIT_MAX (1u << 20) /* combined-log bytes per logs answer */
#define LOGS_CHUNKS_MAX 1024      /* segments per logs answer (alternating 1-byte writes stay bounded) */
#define PTY_SIZE_MAX 1000         /* largest cols/rows of a pty */
#define CLOG_REC 16               /* one <cid>.idx record: u64 cursor, u64 stream offset | stream << 56 */

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* --- loop ---------------------------------------------------------------------------------------- */

struct io {
    int fd;
    uint32_t events; /* currently registered; 0 = not in epoll */
    void (*cb)(struct io *io, uint32_t revents);
};

static int epfd = -1;

/* Registers, modifies or removes (events == 0) the watch on io->fd. */
static void io_watch(struct io *io, uint32_t events)
{
    if (io->fd < 0 || io->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    int op = events == 0 ? EPOLL_CTL_DEL : io->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(epfd, op, io->fd, &ev) < 0)
        log_warning_errno(-errno, "epoll_ctl(%d) on fd %d: %m", op, io->fd);
    io->events = events;
}

static void io_close(struct io *io)
{
    if (io->fd < 0)
        return;
    io_watch(io, 0);
    close(io->fd);
    io->fd = -1;
}

static int64_t mono_ms(void)
{
    return (int64_t)(now_usec(CLOCK_MONOTONIC) / USEC_PER_MSEC);
}

static int64_t wall_ms(void)
{
    return (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC);
}

static int pidfd_signal(int pidfd, int sig)
{
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

/* --- state --------------------------------------------------------------------------------------- */

struct command;

struct ostream {
    struct io io; /* our read end of the pipe; fd -1 after EOF */
    struct command *cmd;
    int idx;    /* 0 stdout, 1 stderr */
    int log_fd; /* logs/<cid>.stdout|stderr, O_RDWR|O_APPEND; -1 until the ring is outgrown */
    bool log_failed;
    bool space_wait;       /* not read: its logs have no room for another read (see output_room) */
    uint64_t log_reserved; /* bytes of log_fd's file that are allocated (fallocate) */
    uint64_t bytes;        /* total so far = next offset */
    uint8_t *ring;         /* RING_SIZE bytes; byte at offset o lives at ring[o % RING_SIZE] */
};

enum command_state { CMD_RUNNING, CMD_EXITED };

struct client;

struct command {
    char id[SBX_ID_MAX + 1];
    json_t *argv;
    enum command_state state;
    bool pty;  /* on a pseudo-terminal: out[0] reads the master, `in` writes a dup of it, out[1] unused */
    pid_t pid; /* inside the sandbox */
    int pidfd;
    bool have_status; /* sbx-init reported the exit */
    int wstatus;
    char err_code[32];           /* "" = no error */
    uint64_t oom_kills_at_start; /* the sandbox's OOM kill count when it started */
    char err_msg[256];
    int64_t started_ms, finished_ms;
    int64_t timeout_at;   /* monotonic ms; 0 = none */
    int64_t eof_deadline; /* monotonic ms; 0 = none */
    struct ostream out[2];
    struct io in; /* our write end of stdin; fd -1 once closed */
    struct sbx_buf in_pending;
    bool in_close_after; /* close stdin once in_pending is written */
    struct client *attachers;
    unsigned n_attachers;
    /* Lifecycle (see "Lifecycle timers" in shim_protocol.h). Durations in ms, -1 = never; deadlines are
     * monotonic ms, 0 = not armed. */
    int64_t ttl_ms, idle_ms, grace_ms;
    bool kill_on_disconnect;
    bool ever_attached;
    int64_t pin_until;    /* will_attach: timers wait for the first attach until then */
    int64_t idle_at;      /* kill: nobody attached for idle_ms */
    int64_t disc_kill_at; /* kill_on_disconnect: the last client left grace_ms ago */
    int64_t finished_mono;
    int64_t expire_at; /* forget the finished command and remove its files */
    /* The combined log: <cid>.log holds stdout and stderr bytes in arrival order (file position =
     * cursor), <cid>.idx one CLOG_REC record at every switch of stream. Created at the first byte. */
    int clog_fd, cidx_fd;
    bool clog_failed;
    uint64_t clog_reserved, cidx_reserved; /* allocated bytes of <cid>.log and <cid>.idx */
    uint64_t clog_bytes;
    uint64_t clog_recs;
    int clog_last;                       /* stream index of the last record, -1 before the first */
    struct command *next, *prev;         /* every kept command, oldest first */
    struct command *run_next, *run_prev; /* running commands */
    struct command *dead_next;           /* graveyard */
};

struct client {
    struct io io;
    struct sbx_buf in, out;
    bool closing; /* close once out is flushed */
    bool dead;
    struct command *cmd; /* attached to; NULL for a request/response connection */
    uint64_t off[2];
    bool exit_sent;
    bool stalled; /* frames left unprocessed in `in` while the command's stdin was full */
    struct client *att_next, *att_prev;
    struct client *next, *prev;
    struct client *dead_next;
};

struct exited_event {
    pid_t pid;
    int status;
};

static struct {
    const char *state_dir;
    int logs_fd;
    struct runtime_sandbox sb;
    bool sb_alive; /* runtime_destroy not yet called */
    bool init_alive;
    struct io listen_io, ctl_io, init_io, signal_io;
    dev_t pidns_dev;
    ino_t pidns_ino;
    struct command *cmds_head, *cmds_tail, *running;
    unsigned n_cmds, n_running;
    struct client *clients;
    unsigned n_clients;
    struct client *dead_clients;
    struct command *dead_cmds;
    struct exited_event early_exits[EXITED_EVENTS_MAX];
    unsigned n_early_exits;
    int64_t next_expire; /* earliest expire_at of a finished command (monotonic ms), 0 = none */
    char expired[EXPIRED_KEPT][SBX_ID_MAX + 1]; /* ring of forgotten ids */
    unsigned expired_next;
    /* Output kept on the host (logs/) is bounded by the sandbox's disk size (0 = unbounded): past it the
     * shim stops reading output pipes, so writers block and nothing is lost, until commands expire. */
    uint64_t log_quota, log_bytes;
    bool output_throttled;
    int64_t space_retry_at; /* monotonic ms: look again for room for streams in space_wait; 0 = none */
    bool space_warned;
} S = {.logs_fd = -1};

static void command_maybe_finish(struct command *c);
static void output_resume(void);
static uint64_t command_log_bytes(const struct command *c);
static void client_pump(struct client *cl);
static void client_update(struct client *cl);

/* --- errors and json ----------------------------------------------------------------------------- */

static json_t *error_json(const char *kind, int errno_pos, const char *msg)
{
    return json_pack("{s:{s:s, s:s, s:i}}", "error", "code", kind, "message", msg, "errno", errno_pos);
}

static json_t *sbx_error_json(const sbx_error *err)
{
    return error_json(sbx_error_kind(err), err->code < 0 ? -err->code : EIO, err->msg);
}

static json_t *command_status(const struct command *c)
{
    json_t *st = json_object();
    json_object_set_new(st, "id", json_string(c->id));
    json_object_set(st, "argv", c->argv);
    json_object_set_new(st, "state", json_string(c->state == CMD_RUNNING ? "running" : "exited"));
    json_object_set_new(st, "pid", c->pid > 0 ? json_integer(c->pid) : json_null());
    if (c->state == CMD_EXITED && c->have_status && WIFSIGNALED(c->wstatus)) {
        json_object_set_new(st, "exit_code", json_integer(128 + WTERMSIG(c->wstatus)));
        json_object_set_new(st, "signal", json_integer(WTERMSIG(c->wstatus)));
    } else if (c->state == CMD_EXITED && c->have_status) {
        json_object_set_new(st, "exit_code", json_integer(WEXITSTATUS(c->wstatus)));
        json_object_set_new(st, "signal", json_null());
    } else {
        json_object_set_new(st, "exit_code", json_null());
        json_object_set_new(st, "signal", json_null());
    }
    if (c->err_code[0])
        json_object_set_new(st, "error", json_pack("{s:s, s:s}", "code", c->err_code, "message", c->err_msg));
    else
        json_object_set_new(st, "error", json_null());
    json_object_set_new(st, "pty", json_boolean(c->pty));
    json_object_set_new(st, "stdout_bytes", json_integer((json_int_t)c->out[0].bytes));
    json_object_set_new(st, "stderr_bytes", json_integer((json_int_t)c->out[1].bytes));
    json_object_set_new(st, "started_at_ms", json_integer(c->started_ms));
    json_object_set_new(st, "finished_at_ms",
                        c->state == CMD_EXITED ? json_integer(c->finished_ms) : json_null());
    json_object_set_new(st, "ttl_ms", json_integer(c->ttl_ms));
    json_object_set_new(st, "idle_timeout_ms", json_integer(c->idle_ms));
    json_object_set_new(st, "kill_on_disconnect", json_boolean(c->kill_on_disconnect));
    json_object_set_new(st, "disconnect_grace_ms", json_integer(c->grace_ms));
    json_object_set_new(st, "attached", json_integer(c->n_attachers));
    json_object_set_new(st, "log_bytes", json_integer((json_int_t)c->clog_bytes));
    /* When a finished command will be forgotten (Unix ms); null while running or kept forever. An
     * attached stream postpones it. */
    json_object_set_new(st, "expires_at_ms",
                        c->expire_at ? json_integer(wall_ms() + (c->expire_at - mono_ms())) : json_null());
    return st;
}

/* logs/<cid>.json, replaced atomically, for post-mortem reading by sbxd. */
static void command_persist(const struct command *c)
{
    char tmp[SBX_ID_MAX + 16], path[SBX_ID_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.json.tmp", c->id);
    snprintf(path, sizeof(path), "%s.json", c->id);
    json_t *st = command_status(c);
    _cleanup_free_ char *s = json_dumps(st, JSON_COMPACT);
    json_decref(st);
    if (!s)
        return;
    _cleanup_close_ int fd = openat(S.logs_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, s, strlen(s)) < 0 || renameat(S.logs_fd, tmp, S.logs_fd, path) < 0)
        log_warning_errno(-errno, "persist status of `%s`: %m, ignoring", c->id);
}

static void set_error(struct command *c, const char *code, const char *msg)
{
    if (c->err_code[0])
        return; /* the first cause wins */
    snprintf(c->err_code, sizeof(c->err_code), "%s", code);
    snprintf(c->err_msg, sizeof(c->err_msg), "%s", msg);
}

/* --- base64 -------------------------------------------------------------------------------------- */

/* Decodes standard or URL-safe base64 (padding optional) into b, with the API's decoder. Returns 0 or
 * -EINVAL. */
static int b64_decode(const char *s, size_t len, struct sbx_buf *b)
{
    long n = base64_decode(s, len, (uint8_t *)sbx_buf_reserve(b, len / 4 * 3 + 3));
    if (n < 0)
        return (int)n;
    b->len += (size_t)n;
    return 0;
}

/* --- commands ------------------------------------------------------------------------------------ */

static struct command *command_find(const char *id)
{
    for (struct command *c = S.cmds_head; c; c = c->next)
        if (strcmp(c->id, id) == 0)
            return c;
    return NULL;
}

static void running_add(struct command *c)
{
    c->run_prev = NULL;
    c->run_next = S.running;
    if (S.running)
        S.running->run_prev = c;
    S.running = c;
    S.n_running++;
}

static void running_remove(struct command *c)
{
    if (c->run_prev)
        c->run_prev->run_next = c->run_next;
    else
        S.running = c->run_next;
    if (c->run_next)
        c->run_next->run_prev = c->run_prev;
    c->run_next = c->run_prev = NULL;
    S.n_running--;
}

static void stdin_close(struct command *c)
{
    io_close(&c->in);
    sbx_buf_done(&c->in_pending);
    c->in_close_after = false;
}

static const char *const log_suffixes[] = {"stdout", "stderr", "json", "log", "idx"};

/* Drops a finished command from memory and removes its files, and remembers its id so that requests for
 * it answer `expired` rather than `not_found` (for the last EXPIRED_KEPT such ids). Freed at the end of
 * the loop iteration. */
static void command_forget(struct command *c)
{
    assert(c->state == CMD_EXITED && !c->attachers);
    log_debug("command %s expired", c->id);
    uint64_t n = command_log_bytes(c);
    /* A miscount must not wrap around: that would read as a full quota and stop every command's output. */
    if (n > S.log_bytes)
        log_warning("output accounting: command %s holds %llu bytes, more than the %llu counted", c->id,
                    (unsigned long long)n, (unsigned long long)S.log_bytes);
    S.log_bytes -= n <= S.log_bytes ? n : S.log_bytes;
    for (size_t i = 0; i < ELEMENTSOF(log_suffixes); i++) {
        char name[SBX_ID_MAX + 16];
        snprintf(name, sizeof(name), "%s.%s", c->id, log_suffixes[i]);
        if (unlinkat(S.logs_fd, name, 0) < 0 && errno != ENOENT)
            log_warning_errno(-errno, "remove `%s`: %m, ignoring", name);
    }
    output_resume();
    snprintf(S.expired[S.expired_next], sizeof(S.expired[0]), "%s", c->id);
    S.expired_next = (S.expired_next + 1) % EXPIRED_KEPT;
    if (c->prev)
        c->prev->next = c->next;
    else
        S.cmds_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        S.cmds_tail = c->prev;
    S.n_cmds--;
    c->dead_next = S.dead_cmds;
    S.dead_cmds = c;
}

static void command_free(struct command *c)
{
    for (int i = 0; i < 2; i++) {
        io_close(&c->out[i].io);
        if (c->out[i].log_fd >= 0)
            close(c->out[i].log_fd);
        free(c->out[i].ring);
    }
    if (c->clog_fd >= 0)
        close(c->clog_fd);
    if (c->cidx_fd >= 0)
        close(c->cidx_fd);
    stdin_close(c);
    if (c->pidfd >= 0)
        close(c->pidfd);
    json_decref(c->argv);
    free(c);
}

static bool command_expired(const char *id)
{
    for (unsigned i = 0; i < EXPIRED_KEPT; i++)
        if (strcmp(S.expired[i], id) == 0)
            return true;
    return false;
}

/* Keeps at most MAX_KEPT commands in memory: drops the oldest finished ones nobody is attached to (as if
 * their ttl had run out). */
static void commands_prune(void)
{
    for (struct command *c = S.cmds_head, *next; c && S.n_cmds >= MAX_KEPT; c = next) {
        next = c->next;
        if (c->state == CMD_EXITED && !c->attachers)
            command_forget(c);
    }
}

static void notify_attachers(struct command *c)
{
    for (struct client *cl = c->attachers, *next; cl; cl = next) {
        next = cl->att_next;
        client_pump(cl);
    }
}

static int open_log(const char *id, const char *suffix);

static void clog_fail(struct command *c, const char *what)
{
    log_warning_errno(-errno, "%s the combined log of `%s`: %m; its logs will be unreadable", what, c->id);
    c->clog_failed = true;
}

/* Appends output of stream idx (whose own offset is stream_off) to the combined log: a record in
 * <cid>.idx when the stream differs from the previous bytes', then the bytes to <cid>.log. Both files are
 * written before the output is visible to anyone, so a logs read never sees a hole. */
static void clog_append(struct command *c, int idx, uint64_t stream_off, const uint8_t *data, size_t len)
{
    if (c->clog_failed || len == 0)
        return;
    if (c->clog_fd < 0) {
        c->clog_fd = open_log(c->id, "log");
        c->cidx_fd = c->clog_fd >= 0 ? open_log(c->id, "idx") : -1;
        if (c->cidx_fd < 0)
            return clog_fail(c, "create");
    }
    if (idx != c->clog_last) {
        uint8_t rec[CLOG_REC];
        uint64_t v[2] = {c->clog_bytes, stream_off | (uint64_t)(idx + 1) << 56};
        for (int i = 0; i < 16; i++)
            rec[i] = (uint8_t)(v[i / 8] >> (8 * (i % 8)));
        if (write_all(c->cidx_fd, rec, sizeof(rec)) < 0)
            return clog_fail(c, "append to");
        c->clog_recs++;
        c->clog_last = idx;
    }
    if (write_all(c->clog_fd, data, len) < 0)
        return clog_fail(c, "append to");
    c->clog_bytes += len;
}

/* The bytes a command's files hold in logs/ (its .json aside), as counted into S.log_bytes. */
static uint64_t command_log_bytes(const struct command *c)
{
    uint64_t n = c->clog_bytes + (uint64_t)c->clog_recs * CLOG_REC;
    for (int i = 0; i < 2; i++)
        if (c->out[i].log_fd >= 0)
            n += c->out[i].bytes;
    return n;
}

static bool logs_full(void)
{
    return S.log_quota && S.log_bytes >= S.log_quota;
}

/* --- room on the host for output ---------------------------------------------------------------- *
 *
 * Output is read from a command's pipe only when its logs have room for it: before each read, the log
 * files are allocated (fallocate, size kept) for what the pipe holds (FIONREAD), and a little ahead.
 * When the data dir is full the pipe is not read, so the command blocks in write(2) and no byte it wrote
 * is lost; the shim looks again every SPACE_RETRY_MS. (Without this, bytes read from the pipe but
 * refused by a full disk would be gone from every replay older than the in-memory ring.) */

#define SPACE_RETRY_MS 200
#define LOG_RESERVE_MAX (1u << 20) /* allocate ahead by the file's size, up to this */

/* Makes [0, need) of fd's file allocated; *reserved tracks how far it is. 0, or -ENOSPC/-EDQUOT (no
 * room: retry later). A filesystem without fallocate is written to as before, unreserved. */
static int log_reserve(int fd, uint64_t *reserved, uint64_t need)
{
    if (need <= *reserved)
        return 0;
    uint64_t ahead = *reserved < LOG_RESERVE_MAX ? *reserved : LOG_RESERVE_MAX;
    for (uint64_t to = need + ahead;; to = need) {
        if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)*reserved, (off_t)(to - *reserved)) == 0) {
            *reserved = to;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if ((errno == ENOSPC || errno == EDQUOT) && to > need)
            continue; /* at least what this read needs */
        if (errno == ENOSPC || errno == EDQUOT)
            return -errno;
        *reserved = UINT64_MAX; /* EOPNOTSUPP and the like: unreserved, as without this */
        return 0;
    }
}

/* Gives back what log_reserve allocated past the end of a file that will not grow any more (a finished
 * command's): growing and shrinking the size makes the kernel free the blocks past the new end. */
static void log_unreserve(int fd, uint64_t *reserved)
{
    struct stat st;
    if (fd < 0 || *reserved == 0 || *reserved == UINT64_MAX || fstat(fd, &st) < 0 ||
        (uint64_t)st.st_size >= *reserved)
        return;
    if (ftruncate(fd, st.st_size + 1) == 0)
        (void)ftruncate(fd, st.st_size);
    *reserved = (uint64_t)st.st_size;
}

/* Whether stream s's logs can take one more read of `want` bytes: the combined log and its index are
 * created and allocated ahead, and the stream's own log once the ring is about to be outgrown (created
 * holding the ring, as stream_append_data would). false: the room is not there now. */
static bool output_room(struct ostream *s, size_t want)
{
    struct command *c = s->cmd;
    if (!c->clog_failed) {
        if (c->clog_fd < 0) {
            c->clog_fd = open_log(c->id, "log");
            c->cidx_fd = c->clog_fd >= 0 ? open_log(c->id, "idx") : -1;
            if (c->cidx_fd < 0) {
                if (errno == ENOSPC || errno == EDQUOT) {
                    if (c->clog_fd >= 0)
                        close(c->clog_fd);
                    c->clog_fd = -1;
                    return false;
                }
                clog_fail(c, "create");
            }
        }
        if (c->clog_fd >= 0 &&
            (log_reserve(c->clog_fd, &c->clog_reserved, c->clog_bytes + want) < 0 ||
             log_reserve(c->cidx_fd, &c->cidx_reserved, (c->clog_recs + 1) * CLOG_REC) < 0))
            return false;
    }
    if (s->log_failed || s->bytes + want <= RING_SIZE)
        return true;
    if (s->log_fd < 0) {
        s->log_fd = open_log(c->id, s->idx == 0 ? "stdout" : "stderr");
        if (s->log_fd < 0)
            return errno != ENOSPC && errno != EDQUOT; /* otherwise stream_append_data reports it */
        s->log_reserved = 0;
        if (log_reserve(s->log_fd, &s->log_reserved, s->bytes + want) < 0) {
            close(s->log_fd);
            s->log_fd = -1;
            return false;
        }
        /* The ring still holds the whole stream (it is not outgrown yet): the file starts with it. Its
         * bytes count into S.log_bytes from now on (command_log_bytes counts an open stream log whole),
         * as stream_append counts them when it creates the file: forgetting the command subtracts them. */
        S.log_bytes += s->bytes;
        if (write_all(s->log_fd, s->ring, (size_t)s->bytes) < 0) {
            log_warning_errno(-errno,
                              "create output log of `%s`: %m; output older than the last %u bytes "
                              "will be unreadable",
                              c->id, (unsigned)RING_SIZE);
            s->log_failed = true;
        }
        return true;
    }
    return log_reserve(s->log_fd, &s->log_reserved, s->bytes + want) == 0;
}

/* No room for s's next read: stop reading it and look again in SPACE_RETRY_MS (run_timers). */
static void output_wait_for_space(struct ostream *s)
{
    if (!S.space_warned)
        log_warning("no space left for command output on the host: output pipes are not read (writers "
                    "block, nothing is lost) until there is");
    S.space_warned = true;
    s->space_wait = true;
    io_watch(&s->io, 0);
    if (!S.space_retry_at)
        S.space_retry_at = mono_ms() + SPACE_RETRY_MS;
}

static void output_retry_space(int64_t now)
{
    if (!S.space_retry_at || now < S.space_retry_at)
        return;
    S.space_retry_at = 0;
    S.space_warned = false;
    for (struct command *c = S.running; c; c = c->run_next)
        for (int i = 0; i < 2; i++)
            if (c->out[i].space_wait) {
                c->out[i].space_wait = false;
                if (c->out[i].io.fd >= 0 && !S.output_throttled)
                    io_watch(&c->out[i].io, EPOLLIN); /* on_output checks the room again */
            }
}

/* Appends output to the ring, and to the log file once the stream is bigger than the ring: then the
 * file is created holding everything from offset 0, so reads older than the ring come from it. */
static void stream_append_data(struct ostream *s, const uint8_t *data, size_t len)
{
    clog_append(s->cmd, s->idx, s->bytes, data, len);
    if (s->log_fd < 0 && !s->log_failed && s->bytes + len > RING_SIZE) {
        s->log_fd = open_log(s->cmd->id, s->idx == 0 ? "stdout" : "stderr");
        if (s->log_fd < 0 || write_all(s->log_fd, s->ring, (size_t)s->bytes) < 0) {
            log_warning_errno(-errno,
                              "create output log of `%s`: %m; output older than the last %u bytes "
                              "will be unreadable",
                              s->cmd->id, (unsigned)RING_SIZE);
            s->log_failed = true;
        }
    }
    if (s->log_fd >= 0 && write_all(s->log_fd, data, len) < 0)
        log_warning_errno(-errno, "append to log of `%s`: %m; the file misses bytes", s->cmd->id);
    size_t pos = (size_t)(s->bytes % RING_SIZE);
    if (len >= RING_SIZE) {
        /* Only the last RING_SIZE bytes matter; place them so offset o stays at o % RING_SIZE. */
        uint64_t off = s->bytes + len - RING_SIZE;
        data += len - RING_SIZE;
        len = RING_SIZE;
        pos = (size_t)(off % RING_SIZE);
        s->bytes = off;
    }
    size_t first = len < RING_SIZE - pos ? len : RING_SIZE - pos;
    memcpy(s->ring + pos, data, first);
    memcpy(s->ring, data + first, len - first);
    s->bytes += len;
}

static void stream_append(struct ostream *s, const uint8_t *data, size_t len)
{
    uint64_t before = command_log_bytes(s->cmd);
    stream_append_data(s, data, len);
    S.log_bytes += command_log_bytes(s->cmd) - before;
}

/* Copies up to max bytes of the stream from offset off into dst (from the ring, or the log file when
 * off is older than the ring). Returns the number of bytes (> 0), or a negative errno. */
static ssize_t stream_read_at(const struct ostream *s, uint64_t off, uint8_t *dst, size_t max)
{
    assert(off < s->bytes);
    uint64_t avail = s->bytes - off;
    size_t n = avail < max ? (size_t)avail : max;
    uint64_t ring_start = s->bytes > RING_SIZE ? s->bytes - RING_SIZE : 0;
    if (off >= ring_start) {
        size_t pos = (size_t)(off % RING_SIZE);
        size_t first = n < RING_SIZE - pos ? n : RING_SIZE - pos;
        memcpy(dst, s->ring + pos, first);
        memcpy(dst + first, s->ring, n - first);
        return (ssize_t)n;
    }
    if (s->log_fd < 0)
        return -EIO; /* the log could not be created */
    ssize_t r = RETRY_EINTR(pread(s->log_fd, dst, n, (off_t)off));
    if (r < 0)
        return -errno;
    if (r == 0)
        return -EIO; /* the log file lost bytes (disk full at write time) */
    return r;
}

static void stream_eof(struct ostream *s)
{
    io_close(&s->io);
    command_maybe_finish(s->cmd);
}

/* Stops reading this stream while the logs are at their quota (output_resume restarts every one). */
static bool output_throttle(struct ostream *s)
{
    if (!logs_full())
        return false;
    if (!S.output_throttled)
        log_warning("command output on the host reached %llu bytes (the sandbox's disk size): commands' "
                    "writes block until finished commands expire",
                    (unsigned long long)S.log_quota);
    S.output_throttled = true;
    io_watch(&s->io, 0);
    return true;
}

static void output_resume(void)
{
    if (!S.output_throttled || logs_full())
        return;
    S.output_throttled = false;
    for (struct command *c = S.running; c; c = c->run_next)
        for (int i = 0; i < 2; i++)
            if (c->out[i].io.fd >= 0 && !c->out[i].space_wait)
                io_watch(&c->out[i].io, EPOLLIN);
}

static void on_output(struct io *io, uint32_t revents)
{
    struct ostream *s = container_of(io, struct ostream, io);
    static uint8_t buf[READ_CHUNK];
    bool got = false;
    for (int i = 0; i < 16; i++) {
        if (output_throttle(s))
            break;
        /* Read only what the logs have room for. An empty pipe needs no room: with its writers gone
         * (HUP) the read sees EOF, otherwise there is nothing to read yet. */
        int avail = 0;
        if (ioctl(io->fd, FIONREAD, &avail) < 0 || avail < 0)
            avail = (int)sizeof(buf);
        size_t want = (size_t)avail < sizeof(buf) ? (size_t)avail : sizeof(buf);
        if (want == 0 && !(revents & (EPOLLHUP | EPOLLERR)))
            break;
        if (want > 0 && !output_room(s, want)) {
            output_wait_for_space(s);
            break;
        }
        ssize_t n = read(io->fd, buf, want > 0 ? want : sizeof(buf));
        if (n > 0) {
            stream_append(s, buf, (size_t)n);
            got = true;
            continue; /* FIONREAD says whether there is more */
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (got)
            notify_attachers(s->cmd);
        stream_eof(s); /* EOF or a read error */
        return;
    }
    if (got)
        notify_attachers(s->cmd);
}

/* Reads whatever is buffered in the pipe without waiting (used before a forced close). */
static void stream_drain(struct ostream *s)
{
    if (s->io.fd < 0)
        return;
    static uint8_t buf[READ_CHUNK];
    for (int i = 0; i < 64 && output_room(s, READ_CHUNK); i++) {
        ssize_t n = read(s->io.fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        stream_append(s, buf, (size_t)n);
    }
}

/* --- lifecycle timers ---------------------------------------------------------------------------- */

/* Arms the expiry of a finished command: ttl after it finished, but not before an announced attach
 * (will_attach) had its chance to collect the exit. run_timers forgets it once due and unattached. */
static void command_arm_expiry(struct command *c)
{
    c->expire_at = 0;
    if (c->state != CMD_EXITED || c->ttl_ms < 0)
        return;
    c->expire_at = c->finished_mono + c->ttl_ms;
    if (!c->ever_attached && c->pin_until > c->expire_at)
        c->expire_at = c->pin_until;
    if (c->expire_at <= 0)
        c->expire_at = 1; /* 0 means "not armed" */
    if (!S.next_expire || c->expire_at < S.next_expire)
        S.next_expire = c->expire_at;
}

/* A client attached a stream: the idle and disconnect clocks stop while anyone is attached. */
static void command_attached(struct command *c)
{
    c->idle_at = c->disc_kill_at = 0;
    if (!c->ever_attached) {
        c->ever_attached = true;
        c->pin_until = 0;
        command_arm_expiry(c);
    }
}

/* The last attached client left: start the idle clock and, with kill_on_disconnect, the grace period
 * (a re-attach within it cancels the kill). Kills happen in run_timers, never from here. */
static void command_detached(struct command *c)
{
    if (c->n_attachers > 0)
        return;
    int64_t now = mono_ms();
    if (c->state == CMD_EXITED) {
        if (c->expire_at && (!S.next_expire || c->expire_at < S.next_expire))
            S.next_expire = c->expire_at; /* it may have come due while streamed */
        return;
    }
    if (c->idle_ms > 0)
        c->idle_at = now + c->idle_ms;
    if (c->kill_on_disconnect)
        c->disc_kill_at = now + c->grace_ms > 0 ? now + c->grace_ms : 1;
}

/* A logs read is a client following the command too: it restarts the idle clock. */
static void command_touch(struct command *c)
{
    if (c->state == CMD_RUNNING && c->n_attachers == 0 && c->idle_ms > 0 && c->idle_at)
        c->idle_at = mono_ms() + c->idle_ms;
}

static void command_maybe_finish(struct command *c)
{
    if (c->state != CMD_RUNNING || !c->have_status || c->out[0].io.fd >= 0 || c->out[1].io.fd >= 0)
        return;
    c->state = CMD_EXITED;
    c->finished_ms = wall_ms();
    c->finished_mono = mono_ms();
    c->eof_deadline = c->timeout_at = c->idle_at = c->disc_kill_at = 0;
    command_arm_expiry(c);
    stdin_close(c);
    if (c->pidfd >= 0) {
        close(c->pidfd);
        c->pidfd = -1;
    }
    running_remove(c);
    log_unreserve(c->clog_fd, &c->clog_reserved);
    log_unreserve(c->cidx_fd, &c->cidx_reserved);
    for (int i = 0; i < 2; i++)
        log_unreserve(c->out[i].log_fd, &c->out[i].log_reserved);
    log_debug("command %s finished (status 0x%x%s%s)", c->id, (unsigned)c->wstatus,
              c->err_code[0] ? ", " : "", c->err_code);
    command_persist(c); /* before anyone hears of the exit: a reported status is on disk */
    notify_attachers(c);
}

/* The kernel's count of OOM kills in the sandbox's memory cgroup (0 when it cannot be read). */
static uint64_t sandbox_oom_kills(void)
{
    struct runtime_metrics m;
    return runtime_sandbox_metrics(&S.sb, &m) >= 0 ? m.oom_kills : 0;
}

static void command_exited(struct command *c, int wstatus)
{
    if (c->have_status)
        return;
    c->have_status = true;
    c->wstatus = wstatus;
    /* SIGKILL (or a shell reporting it as 137) while the kernel counted an OOM kill in the sandbox: the
     * memory limit ended it. Another command's process may have been the one killed at the same time;
     * the count cannot tell, so the record names the sandbox's limit, not this process. */
    bool sigkill = (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) ||
                   (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 128 + SIGKILL);
    if (sigkill && sandbox_oom_kills() > c->oom_kills_at_start)
        set_error(c, "oom_killed", "killed by the kernel: the sandbox reached its memory limit");
    if (c->out[0].io.fd >= 0 || c->out[1].io.fd >= 0)
        c->eof_deadline = mono_ms() + EOF_GRACE_MS;
    command_maybe_finish(c);
}

/* Sends sig to every process of the sandbox in the command's session (see the top of the file). */
static void command_kill_session(struct command *c, int sig)
{
    if (c->pidfd >= 0)
        (void)pidfd_signal(c->pidfd, sig);
    if (c->pid <= 0 || !S.pidns_ino)
        return;
    _cleanup_closedir_ DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        _cleanup_close_ int pfd = openat(dirfd(d), de->d_name, O_DIRECTORY | O_CLOEXEC);
        if (pfd < 0)
            continue;
        struct stat st;
        if (fstatat(pfd, "ns/pid", &st, 0) < 0 || st.st_ino != S.pidns_ino || st.st_dev != S.pidns_dev)
            continue;
        _cleanup_close_ int sfd = openat(pfd, "status", O_RDONLY | O_CLOEXEC);
        char buf[4096];
        ssize_t n = sfd >= 0 ? read(sfd, buf, sizeof(buf) - 1) : -1;
        if (n <= 0)
            continue;
        buf[n] = '\0';
        /* The command itself was signalled through its pidfd above: a second signal would reach it while
         * it handles the first (node's breakOnSigint then dies of it; python raises in its handler). */
        char *nspid = strstr(buf, "\nNSpid:");
        if (nspid) {
            char *end = strchr(nspid + 1, '\n');
            char saved = end ? *end : '\0';
            if (end)
                *end = '\0';
            char *last_pid = strrchr(nspid + 1, '\t');
            bool self = last_pid && strtol(last_pid + 1, NULL, 10) == c->pid;
            if (end)
                *end = saved;
            if (self)
                continue;
        }
        char *line = strstr(buf, "\nNSsid:");
        if (!line)
            continue;
        line += strlen("\nNSsid:");
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = '\0';
        char *last = strrchr(line, '\t');
        long sid = strtol(last ? last + 1 : line, NULL, 10);
        if (sid == c->pid)
            (void)pidfd_signal(pfd, sig);
    }
}

static void stdin_flush(struct command *c);

static void on_stdin(struct io *io, uint32_t revents)
{
    stdin_flush(container_of(io, struct command, in));
}

/* Writes queued stdin without blocking; closes stdin when asked and everything is written. */
static void stdin_flush(struct command *c)
{
    bool was_full = c->in_pending.len >= STDIN_PENDING_MAX;
    while (c->in.fd >= 0 && c->in_pending.len > 0) {
        ssize_t n = write(c->in.fd, c->in_pending.base, c->in_pending.len);
        if (n > 0) {
            sbx_buf_consume(&c->in_pending, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        /* EPIPE: the command closed its stdin; what is queued can never be delivered. */
        stdin_close(c);
        break;
    }
    if (c->in.fd >= 0 && c->in_pending.len == 0 && c->in_close_after)
        stdin_close(c);
    if (c->in.fd >= 0)
        io_watch(&c->in, c->in_pending.len > 0 ? EPOLLOUT : 0);
    if (was_full && c->in_pending.len < STDIN_PENDING_MAX)
        for (struct client *cl = c->attachers; cl; cl = cl->att_next)
            client_update(cl); /* attached writers paused on a full stdin may go on */
}

/* Queues stdin bytes. Returns 0, -EPIPE (stdin closed) or -EAGAIN (too much pending). */
static int stdin_write(struct command *c, const void *data, size_t len)
{
    if (c->in.fd < 0 || c->in_close_after)
        return len == 0 ? 0 : -EPIPE;
    if (c->in_pending.len + len > STDIN_PENDING_MAX)
        return -EAGAIN;
    sbx_buf_append(&c->in_pending, data, len);
    stdin_flush(c);
    return 0;
}

static void stdin_request_close(struct command *c)
{
    if (c->in.fd < 0)
        return;
    c->in_close_after = true;
    stdin_flush(c);
}

/* --- sandbox events ------------------------------------------------------------------------------ */

static struct command *running_by_pid(pid_t pid)
{
    for (struct command *c = S.running; c; c = c->run_next)
        if (c->pid == pid && !c->have_status)
            return c;
    return NULL;
}

static void on_ctl(struct io *io, uint32_t revents)
{
    for (int i = 0; i < 1024; i++) {
        struct runtime_exit_event ev;
        int r = runtime_read_event(&S.sb, &ev);
        if (r == 0)
            return;
        if (r < 0) {
            if (r != -EAGAIN && r != -EINTR) {
                log_warning_errno(r, "reading events from sbx-init: %m; waiting for its exit");
                io_watch(io, 0);
            }
            return;
        }
        struct command *c = running_by_pid(ev.pid);
        if (c) {
            command_exited(c, ev.status);
        } else if (S.n_early_exits < EXITED_EVENTS_MAX) {
            /* Not ours (yet): keep it in case runtime_exec has not returned this pid to us. */
            S.early_exits[S.n_early_exits++] = (struct exited_event){ev.pid, ev.status};
        }
    }
}

static void on_init_exit(struct io *io, uint32_t revents)
{
    siginfo_t si = {0};
    (void)waitid(P_PIDFD, (id_t)S.sb.init_pidfd, &si, WEXITED | WNOHANG);
    log_warning("sbx-init (pid %d) died unexpectedly (code %d, status %d)", (int)S.sb.init_pid, si.si_code,
                si.si_status);
    S.init_alive = false;
    io_watch(io, 0);
    io_watch(&S.ctl_io, 0);
    /* Every process of the sandbox died with its PID 1. */
    for (struct command *c = S.running, *next; c; c = next) {
        next = c->run_next;
        set_error(c, "killed", "the sandbox's init process died");
        command_exited(c, SIGKILL);
    }
}

/* --- clients ------------------------------------------------------------------------------------- */

static void client_close(struct client *cl)
{
    if (cl->dead)
        return;
    cl->dead = true;
    io_close(&cl->io);
    if (cl->cmd) {
        struct command *c = cl->cmd;
        if (cl->att_prev)
            cl->att_prev->att_next = cl->att_next;
        else
            c->attachers = cl->att_next;
        if (cl->att_next)
            cl->att_next->att_prev = cl->att_prev;
        c->n_attachers--;
        cl->cmd = NULL;
        command_detached(c);
    }
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        S.clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    S.n_clients--;
    cl->dead_next = S.dead_clients;
    S.dead_clients = cl;
}

static void client_free(struct client *cl)
{
    sbx_buf_done(&cl->in);
    sbx_buf_done(&cl->out);
    free(cl);
}

/* Recomputes what the client waits for: input while it is not closing, has room for answers and (when
 * attached) its command's stdin is not full; output while anything is queued. */
static void client_update(struct client *cl)
{
    if (cl->dead)
        return;
    uint32_t ev = 0;
    if (!cl->closing && cl->out.len < CLIENT_OUT_HIGH &&
        !(cl->cmd && cl->cmd->in_pending.len >= STDIN_PENDING_MAX))
        ev |= EPOLLIN;
    /* An attached client behind its command's output is fed again when its socket has room. */
    if (cl->out.len > 0 || (cl->cmd && !cl->exit_sent &&
                            (cl->off[0] < cl->cmd->out[0].bytes || cl->off[1] < cl->cmd->out[1].bytes ||
                             cl->cmd->state == CMD_EXITED)))
        ev |= EPOLLOUT;
    if (ev == 0 && cl->closing) {
        client_close(cl);
        return;
    }
    io_watch(&cl->io, ev);
}

/* Writes queued output without blocking. */
static void client_flush(struct client *cl)
{
    while (!cl->dead && cl->out.len > 0) {
        ssize_t n = send(cl->io.fd, cl->out.base, cl->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sbx_buf_consume(&cl->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        client_close(cl); /* the peer is gone */
        return;
    }
    client_update(cl);
}

static void client_send_json(struct client *cl, uint8_t type, json_t *obj /* takes */)
{
    size_t len;
    _cleanup_free_ uint8_t *frame = obj ? shim_frame_build_json(type, obj, &len) : NULL;
    json_decref(obj);
    if (!frame) {
        log_error("cannot encode a frame; closing the client");
        cl->closing = true;
        return;
    }
    sbx_buf_append(&cl->out, frame, len);
}

static void reply_error(struct client *cl, const char *kind, int errno_pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_error(struct client *cl, const char *kind, int errno_pos, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    client_send_json(cl, SHIM_FRAME_RESPONSE, error_json(kind, errno_pos, msg));
}

/* Feeds an attached client: DATA frames from its offsets while its queue has room, then EXIT once the
 * command has exited and everything was queued. */
static void client_pump(struct client *cl)
{
    struct command *c = cl->cmd;
    if (cl->dead || !c)
        return;
    while (cl->out.len < CLIENT_OUT_HIGH) {
        bool progress = false;
        for (int i = 0; i < 2; i++) {
            struct ostream *s = &c->out[i];
            if (cl->off[i] >= s->bytes)
                continue;
            uint8_t *p =
                (uint8_t *)sbx_buf_reserve(&cl->out, SHIM_FRAME_HEADER + SHIM_DATA_HEADER + DATA_CHUNK);
            ssize_t n = stream_read_at(s, cl->off[i], p + SHIM_FRAME_HEADER + SHIM_DATA_HEADER, DATA_CHUNK);
            if (n < 0) {
                log_warning_errno((int)n, "replay of `%s` from offset %llu: %m; closing the stream", c->id,
                                  (unsigned long long)cl->off[i]);
                client_close(cl);
                return;
            }
            shim_frame_data_header(p, (uint8_t)(i + 1), cl->off[i], (uint32_t)n);
            cl->out.len += SHIM_FRAME_HEADER + SHIM_DATA_HEADER + (size_t)n;
            cl->off[i] += (uint64_t)n;
            progress = true;
        }
        if (!progress)
            break;
    }
    if (c->state == CMD_EXITED && !cl->exit_sent && cl->off[0] >= c->out[0].bytes &&
        cl->off[1] >= c->out[1].bytes) {
        client_send_json(cl, SHIM_FRAME_EXIT, command_status(c));
        cl->exit_sent = true;
        cl->closing = true;
    }
    client_flush(cl);
}

/* --- requests ------------------------------------------------------------------------------------ */

static bool json_string_clean(json_t *v, size_t max)
{
    return json_is_string(v) && json_string_length(v) <= max &&
           strlen(json_string_value(v)) == json_string_length(v);
}

/* Validates a JSON array of strings into a NULL-terminated vector borrowing the strings. */
static int string_vector(json_t *arr, size_t max_entries, size_t *budget, const char ***ret)
{
    if (!json_is_array(arr) || json_array_size(arr) > max_entries)
        return -EINVAL;
    size_t n = json_array_size(arr);
    const char **v = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(arr, i);
        if (!json_string_clean(s, *budget)) {
            free(v);
            return json_is_string(s) && json_string_length(s) > *budget ? -E2BIG : -EINVAL;
        }
        *budget -= json_string_length(s);
        v[i] = json_string_value(s);
    }
    *ret = v;
    return 0;
}

static int open_log(const char *id, const char *suffix)
{
    char name[SBX_ID_MAX + 16];
    snprintf(name, sizeof(name), "%s.%s", id, suffix);
    return openat(S.logs_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
}

static struct command *command_new(const char *id, json_t *argv)
{
    struct command *c = xcalloc(1, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", id);
    c->argv = json_incref(argv);
    c->pidfd = -1;
    c->in.fd = -1;
    c->in.cb = on_stdin;
    c->clog_fd = c->cidx_fd = -1;
    c->clog_last = -1;
    for (int i = 0; i < 2; i++) {
        c->out[i].io.fd = -1;
        c->out[i].io.cb = on_output;
        c->out[i].cmd = c;
        c->out[i].idx = i;
        c->out[i].log_fd = -1;
    }
    c->started_ms = wall_ms();
    return c;
}

static void command_register(struct command *c)
{
    c->prev = S.cmds_tail;
    if (S.cmds_tail)
        S.cmds_tail->next = c;
    else
        S.cmds_head = c;
    S.cmds_tail = c;
    S.n_cmds++;
}

static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) {
            close(p[i]);
            p[i] = -1;
        }
}

/* A duration in ms: absent or null = def; -1 = never when never_ok; otherwise 0 (when zero_ok) or
 * 1..TIMER_MAX_MS. Returns 0 or -EINVAL. */
static int duration_arg(json_t *req, const char *key, int64_t def, bool never_ok, bool zero_ok, int64_t *ret)
{
    json_t *v = json_object_get(req, key);
    *ret = def;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return -EINVAL;
    json_int_t n = json_integer_value(v);
    if ((n == -1 && never_ok) || (n == 0 && zero_ok) || (n > 0 && n <= TIMER_MAX_MS)) {
        *ret = n;
        return 0;
    }
    return -EINVAL;
}

/* A pty's cols or rows: absent or null = def, else 1..PTY_SIZE_MAX. Returns 0 or -EINVAL. */
static int pty_size_arg(json_t *req, const char *key, unsigned short def, unsigned short *ret)
{
    json_t *v = json_object_get(req, key);
    *ret = def;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > PTY_SIZE_MAX)
        return -EINVAL;
    *ret = (unsigned short)json_integer_value(v);
    return 0;
}

/* Allocates a pseudo-terminal of the given size for a command. The pair comes from the sandbox's own
 * devpts instance (its /dev/pts/ptmx, reached through /proc/<init>/root, which resolves in init's mount
 * namespace), so inside the sandbox the slave is /dev/pts/N, listed there, and ttyname()/`tty` work.
 * The slave is opened with TIOCGPTPEER (no path lookup) and handed to sbx-init as fds 0-2. If the
 * sandbox has no devpts the host's /dev/ptmx is the fallback: the command still has a working terminal,
 * but its name does not resolve inside.
 * The sandbox controls that path (its root may unmount /dev/pts and put a symlink or a FIFO there), and we
 * are host root: the walk is confined to the sandbox's root (RESOLVE_IN_ROOT, no magic links), does not
 * block (O_NONBLOCK), and the result must be a character device on a devpts filesystem. */
static int sandbox_ptmx_open(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/root", (int)S.sb.init_pid);
    _cleanup_close_ int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -errno;
    struct open_how how = {
        .flags = O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    _cleanup_close_ int m = -1;
    for (int i = 0; i < 8 && m < 0; i++) { /* RESOLVE_IN_ROOT may answer EAGAIN on a concurrent rename */
        m = (int)syscall(SYS_openat2, root, "dev/pts/ptmx", &how, sizeof(how));
        if (m < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
    }
    if (m < 0)
        return -EAGAIN;
    struct stat st;
    struct statfs sfs;
    if (fstat(m, &st) < 0 || fstatfs(m, &sfs) < 0)
        return -errno;
    if (!S_ISCHR(st.st_mode) || sfs.f_type != DEVPTS_SUPER_MAGIC)
        return -ENOTTY;
    return TAKE_FD(m); /* still O_NONBLOCK: the shim reads the master non-blocking anyway */
}

static int pty_open(const struct winsize *ws, int *ret_master, int *ret_slave, sbx_error *err)
{
    _cleanup_close_ int m = sandbox_ptmx_open();
    if (m < 0) {
        log_debug("the sandbox's /dev/pts/ptmx: %s; using the host's /dev/ptmx", strerror(-m));
        m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m < 0)
            return sbx_error_set(err, -errno, "open /dev/ptmx: %m");
    }
    int unlock = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0)
        return sbx_error_set(err, -errno, "unlock pty: %m");
    if (ioctl(m, TIOCSWINSZ, ws) < 0)
        return sbx_error_set(err, -errno, "set pty size: %m");
    _cleanup_close_ int sl = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (sl < 0)
        return sbx_error_set(err, -errno, "open pty slave: %m");
    /* root:tty inside (gid 5, as the devpts mount's gid= option), not the host root's unmapped ids. */
    if (fchown(sl, S.sb.uid_base, S.sb.uid_base + 5) < 0)
        log_debug("chown pty slave: %m");
    *ret_master = TAKE_FD(m);
    *ret_slave = TAKE_FD(sl);
    return 0;
}

/* TIOCSWINSZ on a pty command's master; the kernel sends SIGWINCH to its foreground process group.
 * Returns 0 (also for a command whose terminal is already gone), -ENOTTY when it has no pty. */
static int command_resize(struct command *c, unsigned short cols, unsigned short rows)
{
    if (!c->pty)
        return -ENOTTY;
    int fd = c->out[0].io.fd >= 0 ? c->out[0].io.fd : c->in.fd;
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    if (fd >= 0 && ioctl(fd, TIOCSWINSZ, &ws) < 0)
        return -errno;
    return 0;
}

static void op_exec(struct client *cl, json_t *req)
{
    json_t *jid = json_object_get(req, "id");
    if (!json_string_clean(jid, SBX_ID_MAX) || !id_is_valid(json_string_value(jid)))
        return reply_error(cl, "invalid_argument", EINVAL, "`id` must match [A-Za-z0-9_.-]{1,64}");
    const char *id = json_string_value(jid);
    struct command *existing = command_find(id);
    if (existing) {
        client_send_json(
            cl, SHIM_FRAME_RESPONSE,
            json_pack("{s:b, s:b, s:o}", "ok", 1, "created", 0, "command", command_status(existing)));
        return;
    }

    json_t *argv = json_object_get(req, "argv"), *env = json_object_get(req, "env");
    json_t *cwd = json_object_get(req, "cwd"), *timeout = json_object_get(req, "timeout_ms");
    json_t *stdin_b64 = json_object_get(req, "stdin_b64"), *stdin_open = json_object_get(req, "stdin_open");
    size_t budget = ARGV_ENV_MAX_BYTES;
    _cleanup_free_ const char **av = NULL, **ev = NULL;
    int r = string_vector(argv, ARGV_MAX_ENTRIES, &budget, &av);
    if (r < 0 || json_array_size(argv) == 0 || !av[0][0])
        return reply_error(cl, r == -E2BIG ? "too_large" : "invalid_argument", r == -E2BIG ? E2BIG : EINVAL,
                           "`argv` must be a non-empty array of strings (at most %d entries, %u bytes)",
                           ARGV_MAX_ENTRIES, ARGV_ENV_MAX_BYTES);
    if (env && !json_is_null(env)) {
        r = string_vector(env, ENV_MAX_ENTRIES, &budget, &ev);
        if (r < 0)
            return reply_error(
                cl, r == -E2BIG ? "too_large" : "invalid_argument", r == -E2BIG ? E2BIG : EINVAL,
                "`env` must be an array of \"K=V\" strings (at most %d entries)", ENV_MAX_ENTRIES);
        for (size_t i = 0; ev[i]; i++)
            if (!strchr(ev[i], '=') || ev[i][0] == '=')
                return reply_error(cl, "invalid_argument", EINVAL, "`env[%zu]` is not \"K=V\"", i);
    } else {
        ev = xcalloc(1, sizeof(char *));
    }
    if (cwd && !json_is_null(cwd) &&
        (!json_string_clean(cwd, PATH_MAX - 1) || json_string_value(cwd)[0] != '/'))
        return reply_error(cl, "invalid_argument", EINVAL, "`cwd` must be an absolute path");
    if (timeout && !json_is_null(timeout) && (!json_is_integer(timeout) || json_integer_value(timeout) < 0))
        return reply_error(cl, "invalid_argument", EINVAL, "`timeout_ms` must be a non-negative integer");
    if (stdin_open && !json_is_null(stdin_open) && !json_is_boolean(stdin_open))
        return reply_error(cl, "invalid_argument", EINVAL, "`stdin_open` must be a boolean");
    int64_t ttl_ms, idle_ms, grace_ms;
    if (duration_arg(req, "ttl_ms", DEFAULT_TTL_MS, true, true, &ttl_ms) < 0)
        return reply_error(cl, "invalid_argument", EINVAL, "`ttl_ms` must be -1 or 0..%lld",
                           (long long)TIMER_MAX_MS);
    if (duration_arg(req, "idle_timeout_ms", DEFAULT_IDLE_MS, true, false, &idle_ms) < 0)
        return reply_error(cl, "invalid_argument", EINVAL, "`idle_timeout_ms` must be -1 or 1..%lld",
                           (long long)TIMER_MAX_MS);
    if (duration_arg(req, "disconnect_grace_ms", DEFAULT_GRACE_MS, false, true, &grace_ms) < 0)
        return reply_error(cl, "invalid_argument", EINVAL, "`disconnect_grace_ms` must be 0..%lld",
                           (long long)TIMER_MAX_MS);
    json_t *kod = json_object_get(req, "kill_on_disconnect"),
           *will_attach = json_object_get(req, "will_attach");
    if ((kod && !json_is_null(kod) && !json_is_boolean(kod)) ||
        (will_attach && !json_is_null(will_attach) && !json_is_boolean(will_attach)))
        return reply_error(cl, "invalid_argument", EINVAL,
                           "`kill_on_disconnect` and `will_attach` must be booleans");
    json_t *user = json_object_get(req, "user");
    if (user && !json_is_null(user) && (!json_string_clean(user, 32) || !json_string_length(user)))
        return reply_error(cl, "invalid_argument", EINVAL,
                           "`user` must be a non-empty string of at most 32 bytes");
    json_t *jpty = json_object_get(req, "pty");
    if (jpty && !json_is_null(jpty) && !json_is_boolean(jpty))
        return reply_error(cl, "invalid_argument", EINVAL, "`pty` must be a boolean");
    bool pty = json_is_true(jpty);
    struct winsize winsz = {0};
    if (pty_size_arg(req, "cols", 80, &winsz.ws_col) < 0 || pty_size_arg(req, "rows", 24, &winsz.ws_row) < 0)
        return reply_error(cl, "invalid_argument", EINVAL, "`cols` and `rows` must be integers in 1..%d",
                           PTY_SIZE_MAX);
    struct sbx_buf in_data = SBX_BUF_INIT;
    if (stdin_b64 && !json_is_null(stdin_b64)) {
        if (!json_is_string(stdin_b64) ||
            b64_decode(json_string_value(stdin_b64), json_string_length(stdin_b64), &in_data) < 0) {
            sbx_buf_done(&in_data);
            return reply_error(cl, "invalid_argument", EINVAL, "`stdin_b64` is not valid base64");
        }
    }
    if (!S.init_alive) {
        sbx_buf_done(&in_data);
        return reply_error(cl, "conflict", EBUSY, "the sandbox is not running (its init process is gone)");
    }
    if (S.n_running >= MAX_RUNNING) {
        sbx_buf_done(&in_data);
        return reply_error(cl, "resource_exhausted", EAGAIN, "too many running commands (limit %d)",
                           MAX_RUNNING);
    }
    commands_prune();

    struct command *c = command_new(id, argv);
    c->ttl_ms = ttl_ms;
    c->idle_ms = idle_ms;
    c->grace_ms = grace_ms;
    c->kill_on_disconnect = json_is_true(kod);
    if (json_is_true(will_attach))
        c->pin_until = mono_ms() + PIN_MS;
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    sbx_error err = {0};
    c->pty = pty;
    if (pty) {
        /* The slave (pin[0]) is the command's fds 0-2; we read the master (pout[0]) and write stdin to a
         * dup of it (pin[1]), so that each has its own epoll registration. No stderr. */
        if (pty_open(&winsz, &pout[0], &pin[0], &err) < 0)
            goto fail;
        pin[1] = fcntl(pout[0], F_DUPFD_CLOEXEC, 3);
        if (pin[1] < 0) {
            sbx_error_set(&err, -errno, "dup: %m");
            goto fail;
        }
    } else if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0) {
        sbx_error_set(&err, -errno, "pipe: %m");
        goto fail;
    }
    /* The log files are created when a stream first outgrows its ring (stream_append): most commands
     * never need them, and creating files is the slowest step of starting a command. */
    for (int i = 0; i < 2; i++)
        c->out[i].ring = xmalloc(RING_SIZE);
    struct runtime_exec_spec spec = {
        .argv = av,
        .env = ev,
        .cwd = cwd && !json_is_null(cwd) ? json_string_value(cwd) : NULL,
        .new_session = true,
        .ctty = pty,
        .user = user && !json_is_null(user) ? json_string_value(user) : NULL,
    };
    const int fds[3] = {pin[0], pty ? pin[0] : pout[1], pty ? pin[0] : perr[1]};
    c->oom_kills_at_start = sandbox_oom_kills(); /* before it can run, let alone be killed */
    r = runtime_exec(&S.sb, &spec, fds, &c->pidfd, &c->pid, &err);
    close(pin[0]);
    if (!pty) {
        close(pout[1]);
        close(perr[1]);
    }
    pin[0] = pout[1] = perr[1] = -1;
    if (r < 0 && strcmp(err.kind, "command_not_found") != 0)
        goto fail;

    command_register(c);
    running_add(c);
    if (r < 0) {
        /* Like a shell: the command exists, exited with 127, and says why. */
        close_pair(pin);
        close_pair(pout);
        close_pair(perr);
        set_error(c, "command_not_found", err.msg);
        c->pid = 0;
        command_exited(c, 127 << 8);
    } else {
        c->in.fd = pin[1];
        c->out[0].io.fd = pout[0];
        c->out[1].io.fd = perr[0];
        (void)fd_set_nonblock(c->in.fd, true);
        for (int i = 0; i < 2; i++) {
            if (c->out[i].io.fd < 0)
                continue; /* a pty's stderr */
            (void)fd_set_nonblock(c->out[i].io.fd, true);
            io_watch(&c->out[i].io, EPOLLIN);
        }
        if (timeout && json_integer_value(timeout) > 0)
            c->timeout_at = mono_ms() + json_integer_value(timeout);
        /* Nobody is attached yet: the idle clock runs from the start, but gives an announced attach
         * (will_attach) PIN_MS to arrive. */
        if (c->idle_ms > 0)
            c->idle_at = mono_ms() + (c->pin_until && c->idle_ms < PIN_MS ? PIN_MS : c->idle_ms);
        if (in_data.len > 0)
            sbx_buf_append(&c->in_pending, in_data.base, in_data.len);
        if (!json_is_true(stdin_open))
            c->in_close_after = true;
        stdin_flush(c);
        /* An exit that sbx-init reported before runtime_exec returned. */
        for (unsigned i = 0; i < S.n_early_exits; i++)
            if (S.early_exits[i].pid == c->pid) {
                int st = S.early_exits[i].status;
                S.early_exits[i] = S.early_exits[--S.n_early_exits];
                command_exited(c, st);
                break;
            }
    }
    sbx_buf_done(&in_data);
    log_debug("command %s started (pid %d)", c->id, (int)c->pid);
    /* runtime_exec may have read past exit events of other commands while waiting for its answer; they
     * are buffered in the runtime and ctl_fd may not turn readable again for them. */
    if (S.init_alive)
        on_ctl(&S.ctl_io, EPOLLIN);
    client_send_json(cl, SHIM_FRAME_RESPONSE,
                     json_pack("{s:b, s:b, s:o}", "ok", 1, "created", 1, "command", command_status(c)));
    return;

fail:
    close_pair(pin);
    close_pair(pout);
    close_pair(perr);
    sbx_buf_done(&in_data);
    for (int i = 0; i < 2; i++)
        if (c->out[i].log_fd >= 0) {
            char name[SBX_ID_MAX + 16];
            snprintf(name, sizeof(name), "%s.%s", id, i == 0 ? "stdout" : "stderr");
            unlinkat(S.logs_fd, name, 0);
        }
    command_free(c);
    client_send_json(cl, SHIM_FRAME_RESPONSE, sbx_error_json(&err));
}

static struct command *lookup_or_reply(struct client *cl, json_t *req)
{
    json_t *jid = json_object_get(req, "id");
    if (!json_string_clean(jid, SBX_ID_MAX) || !id_is_valid(json_string_value(jid))) {
        reply_error(cl, "invalid_argument", EINVAL, "`id` must match [A-Za-z0-9_.-]{1,64}");
        return NULL;
    }
    struct command *c = command_find(json_string_value(jid));
    if (!c && command_expired(json_string_value(jid)))
        reply_error(cl, "expired", ENOENT,
                    "command `%s` has expired (finished longer ago than its ttl, or pushed out by newer "
                    "commands); its status and output are gone",
                    json_string_value(jid));
    else if (!c)
        reply_error(cl, "not_found", ENOENT, "command `%s` not found", json_string_value(jid));
    return c;
}

static void reply_ok(struct client *cl)
{
    client_send_json(cl, SHIM_FRAME_RESPONSE, json_pack("{s:b}", "ok", 1));
}

static int signal_arg(json_t *req)
{
    json_t *s = json_object_get(req, "signal");
    if (!json_is_integer(s) || json_integer_value(s) < 1 || json_integer_value(s) > 64)
        return -EINVAL;
    return (int)json_integer_value(s);
}

static void command_signal(struct command *c, int sig)
{
    if (c->state == CMD_RUNNING && !c->have_status && c->pidfd >= 0)
        (void)pidfd_signal(c->pidfd, sig);
}

static void command_kill(struct command *c, const char *code, const char *msg)
{
    if (c->state != CMD_RUNNING || c->have_status)
        return;
    set_error(c, code, msg);
    command_kill_session(c, SIGKILL);
}

static void op_attach(struct client *cl, json_t *req)
{
    struct command *c = lookup_or_reply(cl, req);
    if (!c) {
        cl->closing = true;
        return;
    }
    json_t *o[2] = {json_object_get(req, "stdout_offset"), json_object_get(req, "stderr_offset")};
    uint64_t off[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        if (o[i] && !json_is_null(o[i])) {
            if (!json_is_integer(o[i]) || json_integer_value(o[i]) < 0) {
                reply_error(cl, "invalid_argument", EINVAL, "offsets must be non-negative integers");
                cl->closing = true;
                return;
            }
            off[i] = (uint64_t)json_integer_value(o[i]);
        }
    }
    if (c->n_attachers >= MAX_ATTACHERS) {
        reply_error(cl, "resource_exhausted", EAGAIN, "too many streams attached to `%s` (limit %d)", c->id,
                    MAX_ATTACHERS);
        cl->closing = true;
        return;
    }
    cl->cmd = c;
    cl->off[0] = off[0];
    cl->off[1] = off[1];
    cl->att_prev = NULL;
    cl->att_next = c->attachers;
    if (c->attachers)
        c->attachers->att_prev = cl;
    c->attachers = cl;
    c->n_attachers++;
    command_attached(c);
    client_pump(cl);
}

/* Reads record k of <cid>.idx. Returns 0 or a negative errno. */
static int clog_record(const struct command *c, uint64_t k, uint64_t *ret_cursor, int *ret_stream,
                       uint64_t *ret_off)
{
    uint8_t rec[CLOG_REC];
    ssize_t n = RETRY_EINTR(pread(c->cidx_fd, rec, sizeof(rec), (off_t)(k * CLOG_REC)));
    if (n != CLOG_REC)
        return n < 0 ? -errno : -EIO;
    uint64_t v[2] = {0, 0};
    for (int i = 0; i < CLOG_REC; i++)
        v[i / 8] |= (uint64_t)rec[i] << (8 * (i % 8));
    *ret_cursor = v[0];
    *ret_stream = (int)(v[1] >> 56);
    *ret_off = v[1] & ((UINT64_C(1) << 56) - 1);
    return 0;
}

/* Index of the record holding byte `cursor` (< clog_bytes): the last one starting at or before it. */
static int clog_find(const struct command *c, uint64_t cursor, uint64_t *ret_k)
{
    assert(c->clog_recs > 0); /* a record precedes every byte */
    uint64_t lo = 0, hi = c->clog_recs - 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2, at, off;
        int stream, r = clog_record(c, mid, &at, &stream, &off);
        if (r < 0)
            return r;
        if (at <= cursor)
            lo = mid;
        else
            hi = mid - 1;
    }
    *ret_k = lo;
    return 0;
}

/* Collects the combined log from cursor up to end (or LOGS_CHUNKS_MAX segments) into data and chunks.
 * Returns the cursor after the last byte collected, or a negative errno. */
static int64_t clog_read(const struct command *c, uint64_t cursor, uint64_t end, struct sbx_buf *data,
                         json_t *chunks)
{
    uint64_t k, at, off, pos = cursor;
    int stream, r = clog_find(c, cursor, &k);
    if (r < 0 || (r = clog_record(c, k, &at, &stream, &off)) < 0)
        return r;
    while (pos < end && json_array_size(chunks) < LOGS_CHUNKS_MAX) {
        uint64_t next_at = c->clog_bytes, next_off = 0;
        int next_stream = 0;
        if (k + 1 < c->clog_recs && (r = clog_record(c, k + 1, &next_at, &next_stream, &next_off)) < 0)
            return r;
        uint64_t seg_end = next_at < end ? next_at : end;
        if (seg_end > pos) {
            json_array_append_new(chunks, json_pack("{s:i, s:I, s:I, s:I}", "stream", stream, "offset",
                                                    (json_int_t)(off + (pos - at)), "cursor", (json_int_t)pos,
                                                    "len", (json_int_t)(seg_end - pos)));
            pos = seg_end;
        }
        k++, at = next_at, stream = next_stream, off = next_off;
    }
    size_t n = (size_t)(pos - cursor);
    uint8_t *p = (uint8_t *)sbx_buf_reserve(data, n);
    ssize_t got = n ? RETRY_EINTR(pread(c->clog_fd, p, n, (off_t)cursor)) : 0;
    if (got < 0)
        return -errno;
    if ((size_t)got != n)
        return -EIO;
    data->len += n;
    return (int64_t)pos;
}

static void op_logs(struct client *cl, json_t *req)
{
    struct command *c = lookup_or_reply(cl, req);
    if (!c)
        return;
    json_t *jc = json_object_get(req, "cursor"), *jl = json_object_get(req, "limit");
    if (jc && !json_is_null(jc) && (!json_is_integer(jc) || json_integer_value(jc) < 0))
        return reply_error(cl, "invalid_argument", EINVAL, "`cursor` must be a non-negative integer");
    if (jl && !json_is_null(jl) &&
        (!json_is_integer(jl) || json_integer_value(jl) < 1 || json_integer_value(jl) > LOGS_LIMIT_MAX))
        return reply_error(cl, "invalid_argument", EINVAL, "`limit` must be an integer in 1..%u",
                           LOGS_LIMIT_MAX);
    uint64_t cursor = (uint64_t)json_integer_value(jc); /* 0 when absent */
    uint64_t limit = json_is_integer(jl) ? (uint64_t)json_integer_value(jl) : LOGS_LIMIT_DEFAULT;
    if (cursor > c->clog_bytes)
        return reply_error(cl, "invalid_argument", EINVAL,
                           "`cursor` %llu is past the end of the log of `%s` (%llu bytes so far)",
                           (unsigned long long)cursor, c->id, (unsigned long long)c->clog_bytes);
    if (c->clog_failed)
        return reply_error(cl, "internal", EIO,
                           "the combined log of `%s` could not be written (see shim.log)", c->id);
    command_touch(c);
    uint64_t end = c->clog_bytes - cursor > limit ? cursor + limit : c->clog_bytes;
    struct sbx_buf data = SBX_BUF_INIT;
    json_t *chunks = json_array();
    int64_t next = cursor < end ? clog_read(c, cursor, end, &data, chunks) : (int64_t)cursor;
    if (next < 0) {
        sbx_buf_done(&data);
        json_decref(chunks);
        return reply_error(cl, "internal", (int)-next, "read the combined log of `%s`: %s", c->id,
                           strerror((int)-next));
    }
    _cleanup_free_ char *b64 = base64_encode(data.base, data.len);
    sbx_buf_done(&data);
    client_send_json(cl, SHIM_FRAME_RESPONSE,
                     json_pack("{s:b, s:I, s:I, s:I, s:s, s:o, s:o}", "ok", 1, "cursor", (json_int_t)cursor,
                               "next_cursor", (json_int_t)next, "log_bytes", (json_int_t)c->clog_bytes,
                               "data_b64", b64, "chunks", chunks, "command", command_status(c)));
}

static void shutdown_and_exit(struct client *cl);

/* {"op":"connect","port":N}: the socket travels with the response frame (SCM_RIGHTS), so this answer is
 * sent here directly rather than queued; the connection must have nothing else queued. See netops.c. */
static void op_connect(struct client *cl, json_t *req)
{
    json_t *jp = json_object_get(req, "port");
    json_int_t port = json_integer_value(jp);
    if (!json_is_integer(jp) || port < 1 || port > 65535)
        return reply_error(cl, "invalid_argument", EINVAL, "`port` must be an integer in 1..65535");
    client_flush(cl);
    if (cl->dead || cl->out.len > 0)
        return reply_error(cl, "conflict", EBUSY, "connect needs a connection with nothing queued");
    sbx_error err = {0};
    _cleanup_close_ int fd = -1;
    if (shim_net_connect((int)port, &fd, &err) < 0)
        return reply_error(cl, err.kind[0] ? err.kind : "internal", -err.code, "%s", err.msg);
    json_t *ok = json_pack("{s:b}", "ok", 1);
    size_t len;
    _cleanup_free_ uint8_t *frame = shim_frame_build_json(SHIM_FRAME_RESPONSE, ok, &len);
    json_decref(ok);
    ssize_t n = frame ? shim_net_send_fd(cl->io.fd, frame, len, fd) : -ENOMEM;
    if (n < 0)
        return reply_error(cl, "internal", (int)-n, "pass the socket: %s", strerror((int)-n));
    if ((size_t)n < len)
        sbx_buf_append(&cl->out, frame + n, len - (size_t)n);
}

static void handle_request(struct client *cl, json_t *req)
{
    const char *op = json_string_value(json_object_get(req, "op"));
    if (!json_is_object(req) || !op)
        return reply_error(cl, "invalid_argument", EINVAL, "a request is a JSON object with an `op`");
    if (strcmp(op, "connect") == 0) {
        op_connect(cl, req);
    } else if (strcmp(op, "ports") == 0) {
        sbx_error err = {0};
        json_t *ports = shim_net_ports(S.sb.init_pid, &err);
        if (!ports)
            return reply_error(cl, "internal", -err.code, "%s", err.msg);
        client_send_json(cl, SHIM_FRAME_RESPONSE, json_pack("{s:b, s:o}", "ok", 1, "ports", ports));
    } else if (strcmp(op, "net_attach") == 0) {
        sbx_error err = {0};
        int ifindex = 0;
        if (shim_net_attach(req, &ifindex, &err) < 0)
            return reply_error(cl, err.kind[0] ? err.kind : "internal", -err.code, "%s", err.msg);
        client_send_json(cl, SHIM_FRAME_RESPONSE, json_pack("{s:b, s:i}", "ok", 1, "ifindex", ifindex));
    } else if (strcmp(op, "ping") == 0) {
        client_send_json(cl, SHIM_FRAME_RESPONSE,
                         json_pack("{s:b, s:i, s:i, s:b, s:i, s:i}", "ok", 1, "pid", (int)getpid(),
                                   "init_pid", (int)S.sb.init_pid, "init_alive", S.init_alive, "running",
                                   (int)S.n_running, "commands", (int)S.n_cmds));
    } else if (strcmp(op, "exec") == 0) {
        op_exec(cl, req);
    } else if (strcmp(op, "status") == 0) {
        struct command *c = lookup_or_reply(cl, req);
        if (c)
            client_send_json(cl, SHIM_FRAME_RESPONSE,
                             json_pack("{s:b, s:o}", "ok", 1, "command", command_status(c)));
    } else if (strcmp(op, "list") == 0) {
        json_t *arr = json_array();
        for (struct command *c = S.cmds_head; c; c = c->next)
            json_array_append_new(arr, command_status(c));
        client_send_json(cl, SHIM_FRAME_RESPONSE, json_pack("{s:b, s:o}", "ok", 1, "commands", arr));
    } else if (strcmp(op, "stdin") == 0) {
        struct command *c = lookup_or_reply(cl, req);
        if (!c)
            return;
        json_t *data = json_object_get(req, "data_b64"), *close_it = json_object_get(req, "close");
        struct sbx_buf b = SBX_BUF_INIT;
        if (data && !json_is_null(data) &&
            (!json_is_string(data) ||
             b64_decode(json_string_value(data), json_string_length(data), &b) < 0)) {
            sbx_buf_done(&b);
            return reply_error(cl, "invalid_argument", EINVAL, "`data_b64` is not valid base64");
        }
        int r = stdin_write(c, b.base, b.len);
        sbx_buf_done(&b);
        if (r == -EPIPE)
            return reply_error(cl, "conflict", EPIPE, "stdin of `%s` is closed", c->id);
        if (r == -EAGAIN)
            return reply_error(cl, "resource_exhausted", EAGAIN, "stdin of `%s` has %u bytes pending", c->id,
                               STDIN_PENDING_MAX);
        if (json_is_true(close_it))
            stdin_request_close(c);
        reply_ok(cl);
    } else if (strcmp(op, "signal") == 0) {
        struct command *c = lookup_or_reply(cl, req);
        if (!c)
            return;
        int sig = signal_arg(req);
        if (sig < 0)
            return reply_error(cl, "invalid_argument", EINVAL, "`signal` must be an integer in 1..64");
        /* "session": every process of the command's session (a code context's interrupt reaches the
         * cell's foreground child as well as the interpreter). */
        if (json_is_true(json_object_get(req, "session")) && c->state == CMD_RUNNING && !c->have_status)
            command_kill_session(c, sig);
        else
            command_signal(c, sig);
        reply_ok(cl);
    } else if (strcmp(op, "kill") == 0) {
        struct command *c = lookup_or_reply(cl, req);
        if (!c)
            return;
        command_kill(c, "killed", "killed on request");
        reply_ok(cl);
    } else if (strcmp(op, "resize") == 0) {
        struct command *c = lookup_or_reply(cl, req);
        if (!c)
            return;
        unsigned short cols, rows;
        if (pty_size_arg(req, "cols", 0, &cols) < 0 || pty_size_arg(req, "rows", 0, &rows) < 0 || !cols ||
            !rows)
            return reply_error(cl, "invalid_argument", EINVAL, "`cols` and `rows` must be integers in 1..%d",
                               PTY_SIZE_MAX);
        int r = command_resize(c, cols, rows);
        if (r == -ENOTTY)
            return reply_error(cl, "conflict", ENOTTY, "command `%s` has no pty", c->id);
        if (r < 0)
            return reply_error(cl, "internal", -r, "resize: %s", strerror(-r));
        reply_ok(cl);
    } else if (strcmp(op, "attach") == 0) {
        op_attach(cl, req);
    } else if (strcmp(op, "logs") == 0) {
        op_logs(cl, req);
    } else if (strcmp(op, "shutdown") == 0) {
        shutdown_and_exit(cl);
    } else {
        reply_error(cl, "invalid_argument", EINVAL, "unknown op `%.64s`", op);
    }
}

/* A frame on an attached connection: stdin bytes or a small control request; no answers. */
static void handle_attached_frame(struct client *cl, const struct shim_frame *f)
{
    struct command *c = cl->cmd;
    if (f->type == SHIM_FRAME_STDIN) {
        int r = stdin_write(c, f->payload, f->len);
        if (r < 0)
            log_debug("stdin of `%s`: %d bytes dropped (%s)", c->id, (int)f->len, strerror(-r));
        return;
    }
    if (f->type != SHIM_FRAME_REQUEST)
        return;
    json_t *req = json_loadb((const char *)f->payload, f->len, 0, NULL);
    const char *op = json_string_value(json_object_get(req, "op"));
    if (op && strcmp(op, "close_stdin") == 0) {
        stdin_request_close(c);
    } else if (op && strcmp(op, "signal") == 0) {
        int sig = signal_arg(req);
        if (sig > 0)
            command_signal(c, sig);
    } else if (op && strcmp(op, "kill") == 0) {
        command_kill(c, "killed", "killed on request");
    } else if (op && strcmp(op, "resize") == 0) {
        unsigned short cols, rows;
        if (pty_size_arg(req, "cols", 0, &cols) == 0 && pty_size_arg(req, "rows", 0, &rows) == 0 && cols &&
            rows)
            (void)command_resize(c, cols, rows);
    }
    json_decref(req);
}

/* Handles every complete frame in cl->in (stops while an attached command's stdin is full). */
static void client_process(struct client *cl)
{
    size_t pos = 0;
    while (!cl->dead && !cl->closing) {
        if (cl->cmd && cl->cmd->in_pending.len >= STDIN_PENDING_MAX) {
            cl->stalled = true;
            break;
        }
        struct shim_frame f;
        long n = shim_frame_parse((const uint8_t *)cl->in.base + pos, cl->in.len - pos, &f);
        if (n == 0)
            break;
        if (n < 0) {
            if (!cl->cmd)
                reply_error(cl, "invalid_argument", -n, "malformed frame: %s", strerror((int)-n));
            cl->closing = true;
            break;
        }
        pos += (size_t)n;
        if (cl->cmd) {
            handle_attached_frame(cl, &f);
        } else if (f.type != SHIM_FRAME_REQUEST) {
            reply_error(cl, "invalid_argument", EBADMSG, "expected a request frame");
            cl->closing = true;
        } else {
            json_error_t jerr;
            json_t *req = json_loadb((const char *)f.payload, f.len, 0, &jerr);
            if (!req)
                reply_error(cl, "invalid_argument", EINVAL, "request is not JSON: %s", jerr.text);
            else
                handle_request(cl, req);
            json_decref(req);
        }
    }
    sbx_buf_consume(&cl->in, pos);
    if (!cl->dead)
        client_flush(cl);
}

static void on_client(struct io *io, uint32_t revents)
{
    struct client *cl = container_of(io, struct client, io);
    if (cl->dead)
        return;
    if (revents & EPOLLOUT) {
        client_flush(cl);
        if (cl->cmd)
            client_pump(cl);
        if (cl->dead)
            return;
    }
    if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (!(cl->io.events & EPOLLIN)) {
            if (revents & (EPOLLHUP | EPOLLERR))
                client_close(cl);
            return;
        }
        for (int i = 0; i < 16 && !cl->dead; i++) {
            /* Never buffer more than one maximal frame plus a read. */
            if (cl->in.len > SHIM_FRAME_MAX + SHIM_FRAME_HEADER)
                break;
            char *p = sbx_buf_reserve(&cl->in, READ_CHUNK);
            ssize_t n = read(cl->io.fd, p, READ_CHUNK);
            if (n > 0) {
                cl->in.len += (size_t)n;
                if ((size_t)n < READ_CHUNK)
                    break;
                continue;
            }
            if (n < 0 && (errno == EINTR))
                continue;
            if (n < 0 && errno == EAGAIN)
                break;
            client_process(cl);
            client_close(cl); /* EOF or error: the client is gone */
            return;
        }
        client_process(cl);
    }
}

static void on_listen(struct io *io, uint32_t revents)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_warning_errno(-errno, "accept: %m");
            return;
        }
        if (S.n_clients >= MAX_CLIENTS) {
            log_warning("too many connections (%d); refusing one", MAX_CLIENTS);
            close(fd);
            continue;
        }
        struct client *cl = xcalloc(1, sizeof(*cl));
        cl->io.fd = fd;
        cl->io.cb = on_client;
        cl->next = S.clients;
        if (S.clients)
            S.clients->prev = cl;
        S.clients = cl;
        S.n_clients++;
        client_update(cl);
    }
}

/* --- lifecycle ----------------------------------------------------------------------------------- */

static void destroy_sandbox(void)
{
    if (!S.sb_alive)
        return;
    int64_t now = wall_ms();
    for (struct command *c = S.running; c; c = c->run_next) {
        set_error(c, "killed", "the sandbox was shut down");
        c->state = CMD_EXITED;
        c->have_status = true;
        c->wstatus = c->wstatus ? c->wstatus : SIGKILL;
        c->finished_ms = now;
        command_persist(c);
    }
    int r = runtime_destroy(&S.sb);
    if (r < 0)
        log_warning_errno(r, "destroy sandbox: %m");
    S.sb_alive = false;
    S.init_alive = false;
}

static void remove_runtime_files(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/shim.sock", S.state_dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/shim.pid", S.state_dir);
    unlink(path);
}

static void shutdown_and_exit(struct client *cl)
{
    log_info("shutting down");
    remove_runtime_files();
    destroy_sandbox();
    if (cl) {
        reply_ok(cl);
        (void)fd_set_nonblock(cl->io.fd, false);
        (void)write_all(cl->io.fd, cl->out.base, cl->out.len);
    }
    exit(EXIT_SUCCESS);
}

static void on_signal(struct io *io, uint32_t revents)
{
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) {
            /* Reap helpers the runtime may leave; sbx-init is reaped here or in on_init_exit. */
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            log_info("signal %d received", (int)si.ssi_signo);
            shutdown_and_exit(NULL);
        }
    }
}

/* Forgets every finished command whose ttl ran out and that nobody streams; re-arms S.next_expire. */
static void expire_commands(int64_t now)
{
    S.next_expire = 0;
    for (struct command *c = S.cmds_head, *nx; c; c = nx) {
        nx = c->next;
        if (c->state != CMD_EXITED || !c->expire_at)
            continue;
        if (c->expire_at <= now && !c->attachers) {
            c->expire_at = 0;
            command_forget(c);
        } else if (c->expire_at > now && (!S.next_expire || c->expire_at < S.next_expire)) {
            S.next_expire = c->expire_at; /* due but attached ones re-arm in command_detached */
        }
    }
}

static void next_deadline(int64_t *next, int64_t at)
{
    if (at && (*next < 0 || at < *next))
        *next = at;
}

/* Deadlines: command timeouts, idle and disconnect kills, the EOF grace after an exit, and the expiry
 * of finished commands. Returns the epoll timeout in ms. */
static int run_timers(void)
{
    int64_t now = mono_ms(), next = -1;
    if (S.next_expire && now >= S.next_expire)
        expire_commands(now);
    output_retry_space(now);
    for (struct command *c = S.running, *nx; c; c = nx) {
        nx = c->run_next;
        if (c->timeout_at && now >= c->timeout_at) {
            c->timeout_at = 0;
            log_debug("command %s timed out", c->id);
            command_kill(c, "timeout", "the command exceeded its timeout");
        }
        if (c->idle_at && now >= c->idle_at) {
            c->idle_at = 0;
            char msg[128];
            snprintf(msg, sizeof(msg), "no client was attached for %.3g s (idle_timeout)",
                     c->idle_ms / 1000.0);
            log_debug("command %s idle", c->id);
            command_kill(c, "idle_timeout", msg);
        }
        if (c->disc_kill_at && now >= c->disc_kill_at) {
            c->disc_kill_at = 0;
            log_debug("command %s: last client gone (kill_on_disconnect)", c->id);
            command_kill(c, "disconnected", "the last attached client disconnected (kill_on_disconnect)");
        }
        if (c->eof_deadline && now >= c->eof_deadline && !c->out[0].space_wait && !c->out[1].space_wait) {
            c->eof_deadline = 0;
            /* Background processes still hold the pipes: keep what is there, then stop listening. */
            for (int i = 0; i < 2; i++) {
                stream_drain(&c->out[i]);
                io_close(&c->out[i].io);
            }
            notify_attachers(c);
            command_maybe_finish(c);
            continue;
        }
        next_deadline(&next, c->timeout_at);
        next_deadline(&next, c->eof_deadline);
        next_deadline(&next, c->idle_at);
        next_deadline(&next, c->disc_kill_at);
    }
    next_deadline(&next, S.next_expire); /* after the loop: a command may have finished in it */
    next_deadline(&next, S.space_retry_at);
    if (next < 0)
        return -1;
    if (next < now)
        return 0;
    return next - now > 60000 ? 60000 : (int)(next - now);
}

/* Attached clients whose frames waited for a full stdin queue to drain. */
static void resume_stalled(void)
{
    for (struct client *cl = S.clients; cl; cl = cl->next)
        if (cl->stalled && !cl->dead && cl->cmd && cl->cmd->in_pending.len < STDIN_PENDING_MAX) {
            cl->stalled = false;
            client_process(cl);
        }
}

static void collect_garbage(void)
{
    while (S.dead_clients) {
        struct client *cl = S.dead_clients;
        S.dead_clients = cl->dead_next;
        client_free(cl);
    }
    while (S.dead_cmds) {
        struct command *c = S.dead_cmds;
        S.dead_cmds = c->dead_next;
        command_free(c);
    }
}

static void ready_reply(int fd, json_t *msg /* takes */)
{
    if (fd < 0) {
        json_decref(msg);
        return;
    }
    _cleanup_free_ char *s = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (s) {
        (void)write_all(fd, s, strlen(s));
        (void)write_all(fd, "\n", 1);
    }
    close(fd);
}

static _Noreturn void fail_startup(int ready_fd, const sbx_error *err)
{
    log_error("start-up failed: %s", err->msg);
    json_t *e = sbx_error_json(err);
    json_object_set_new(e, "ok", json_false());
    ready_reply(ready_fd, e);
    remove_runtime_files();
    _exit(EXIT_FAILURE);
}

static int load_config(const char *state_dir, json_t **ret_json, struct runtime_config *cfg,
                       const char ***ret_lowers, sbx_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/config.json", state_dir);
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!json_is_object(j)) {
        json_decref(j);
        return sbx_error_set(err, -EINVAL, "read `%s`: %s", path, jerr.text);
    }
    *ret_json = j;
    const char *id = json_string_value(json_object_get(j, "id"));
    const char *init_path = json_string_value(json_object_get(j, "init_path"));
    json_t *uid = json_object_get(j, "uid_base");
    if (!id || !id_is_valid(id))
        return sbx_error_set(err, -EINVAL, "config: `id` missing or invalid");
    if (!init_path)
        return sbx_error_set(err, -EINVAL, "config: `init_path` missing");
    if (!json_is_integer(uid) || json_integer_value(uid) <= 0 ||
        json_integer_value(uid) > UINT32_MAX - RUNTIME_UID_RANGE)
        return sbx_error_set(err, -EINVAL, "config: `uid_base` missing or invalid");
    *cfg = (struct runtime_config){
        .id = id,
        .state_dir = state_dir,
        .uid_base = (uid_t)json_integer_value(uid),
        .hostname = json_string_value(json_object_get(j, "hostname")),
        .memory_bytes = (uint64_t)json_integer_value(json_object_get(j, "memory_bytes")),
        .disk_bytes = (uint64_t)json_integer_value(json_object_get(j, "disk_bytes")),
        .disk_template_dir = json_string_value(json_object_get(j, "disk_template_dir")),
        .disk_source = json_string_value(json_object_get(j, "disk_source")),
        .disk_source_uid_base = (uid_t)json_integer_value(json_object_get(j, "disk_source_uid_base")),
        .cpus = json_number_value(json_object_get(j, "cpus")),
        .pids_max = (uint64_t)json_integer_value(json_object_get(j, "pids_max")),
        .init_path = init_path,
        .seccomp_path = json_string_value(json_object_get(j, "seccomp_path")),
    };
    json_t *lowers = json_object_get(j, "lower_dirs");
    if (lowers && !json_is_null(lowers)) {
        size_t budget = SIZE_MAX;
        if (string_vector(lowers, 128, &budget, ret_lowers) < 0 || json_array_size(lowers) == 0)
            return sbx_error_set(err, -EINVAL, "config: `lower_dirs` must be null or an array of paths");
        cfg->lower_dirs = *ret_lowers;
        cfg->host_base = json_is_true(json_object_get(j, "host_base"));
    }
    /* Strings stay in the config's JSON, which lives as long as the shim. */
    static struct runtime_volume volumes[RUNTIME_VOLUMES_MAX];
    json_t *vols = json_object_get(j, "volumes"), *v;
    size_t i;
    if (vols && !json_is_array(vols))
        return sbx_error_set(err, -EINVAL, "config: `volumes` must be an array");
    if (json_array_size(vols) > RUNTIME_VOLUMES_MAX)
        return sbx_error_set(err, -EINVAL, "config: more than %d volumes", RUNTIME_VOLUMES_MAX);
    json_array_foreach(vols, i, v)
    {
        volumes[i] = (struct runtime_volume){
            .source = json_string_value(json_object_get(v, "source")),
            .target = json_string_value(json_object_get(v, "target")),
            .read_only = json_is_true(json_object_get(v, "read_only")),
        };
        if (!volumes[i].source || !volumes[i].target || volumes[i].target[0] != '/')
            return sbx_error_set(err, -EINVAL, "config: volume %zu needs `source` and an absolute `target`",
                                 i);
    }
    cfg->volumes = volumes;
    cfg->n_volumes = json_array_size(vols);
    return 0;
}

static int setup_socket(const char *state_dir, sbx_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/shim.sock", state_dir);
    _cleanup_close_ int dirfd = -1;
    if (strlen(path) < sizeof(sa.sun_path)) {
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    } else {
        dirfd = open(state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
            return sbx_error_set(err, -errno, "open `%s`: %m", state_dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/shim.sock", dirfd);
    }
    (void)unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return sbx_error_set(err, -errno, "socket: %m");
    /* umask is 077, so the socket is created 0600. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        int r = -errno;
        close(fd);
        return sbx_error_set(err, r, "listen on `%s`: %m", path);
    }
    return fd;
}

static void write_pid_file(const char *state_dir, pid_t pid)
{
    char path[PATH_MAX], tmp[PATH_MAX], buf[32];
    snprintf(path, sizeof(path), "%s/shim.pid", state_dir);
    snprintf(tmp, sizeof(tmp), "%s/shim.pid.tmp", state_dir);
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, buf, (size_t)n) < 0 || rename(tmp, path) < 0)
        log_warning_errno(-errno, "write `%s`: %m, ignoring", path);
}

static void add_watch(struct io *io, int fd, void (*cb)(struct io *, uint32_t))
{
    io->fd = fd;
    io->cb = cb;
    io->events = 0;
    io_watch(io, EPOLLIN);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: sbx-shim <state_dir>   (fd 3: ready pipe)\n");
        return 2;
    }
    int ready_fd = fcntl(READY_FD, F_GETFD) >= 0 ? READY_FD : -1;
    if (ready_fd >= 0)
        (void)fd_set_cloexec(ready_fd, true);
    /* Whatever else our parent left open (its parent's pipes, say) is not ours to keep alive for the
     * sandbox's lifetime: a held pipe keeps someone else waiting for EOF. */
    (void)close_range(READY_FD + 1, ~0u, 0);

    /* Detach: the process sbxd started exits now (sbxd reaps it), the shim lives on as an orphan. The
     * pid file is written here, before that exit, so that once sbxd has reaped this process it can always
     * find (and, when it gives up on a create, kill) the shim: never an orphan nobody knows about. */
    pid_t child = fork();
    if (child < 0) {
        sbx_error err = {0};
        sbx_error_set(&err, -errno, "fork: %m");
        fail_startup(ready_fd, &err);
    }
    if (child > 0) {
        write_pid_file(argv[1], child);
        _exit(EXIT_SUCCESS);
    }
    (void)setsid();
    umask(077);
    signal(SIGPIPE, SIG_IGN);
    S.state_dir = argv[1];

    log_set_ident("sbx-shim");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/shim.log", S.state_dir);
    int logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd >= 0) {
        dup2(logfd, STDERR_FILENO);
        close(logfd);
    }
    for (int fd = 0; fd <= 2; fd++)
        (void)fd_set_cloexec(fd, true); /* nothing of ours leaks into the sandbox */
    const char *lvl = getenv("SBX_SHIM_DEBUG");
    if (lvl && *lvl && strcmp(lvl, "0") != 0)
        log_set_level(LOG_DEBUG);

    sbx_error err = {0};
    json_t *config_json = NULL;
    _cleanup_free_ const char **lowers = NULL;
    struct runtime_config cfg;
    if (load_config(S.state_dir, &config_json, &cfg, &lowers, &err) < 0)
        fail_startup(ready_fd, &err);
    S.log_quota = cfg.disk_bytes;

    /* Signals go through a signalfd; block them before the sandbox exists so none is lost. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || epfd < 0) {
        sbx_error_set(&err, -errno, "signalfd/epoll: %m");
        fail_startup(ready_fd, &err);
    }

    int64_t t0 = mono_ms();
    if (runtime_create(&cfg, &S.sb, &err) < 0) {
        sbx_error_wrap(&err, "create sandbox");
        fail_startup(ready_fd, &err);
    }
    S.sb_alive = S.init_alive = true;
    log_info("sandbox %s created in %lld ms (init pid %d)", cfg.id, (long long)(mono_ms() - t0),
             (int)S.sb.init_pid);
    int net_r = shim_net_init(S.sb.init_pid);
    if (net_r < 0)
        log_warning_errno(net_r, "open the sandbox's network namespace: %m; service URLs will not work");
    {
        char nspath[64];
        struct stat st;
        snprintf(nspath, sizeof(nspath), "/proc/%d/ns/pid", (int)S.sb.init_pid);
        if (stat(nspath, &st) == 0) {
            S.pidns_dev = st.st_dev;
            S.pidns_ino = st.st_ino;
        } else {
            log_warning_errno(-errno, "stat `%s`: %m; timeouts will only kill the command itself", nspath);
        }
    }

    snprintf(path, sizeof(path), "%s/logs", S.state_dir);
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        sbx_error_set(&err, -errno, "mkdir `%s`: %m", path);
        goto fail_destroy;
    }
    S.logs_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (S.logs_fd < 0) {
        sbx_error_set(&err, -errno, "open `%s`: %m", path);
        goto fail_destroy;
    }
    int lfd = setup_socket(S.state_dir, &err);
    if (lfd < 0)
        goto fail_destroy;
    add_watch(&S.listen_io, lfd, on_listen);
    add_watch(&S.signal_io, sfd, on_signal);
    add_watch(&S.ctl_io, S.sb.ctl_fd, on_ctl);
    add_watch(&S.init_io, S.sb.init_pidfd, on_init_exit);

    ready_reply(ready_fd,
                json_pack("{s:b, s:i, s:i}", "ok", 1, "pid", (int)getpid(), "init_pid", (int)S.sb.init_pid));
    ready_fd = -1;

    struct epoll_event evs[64];
    for (;;) {
        resume_stalled();
        int timeout = run_timers();
        collect_garbage();
        int n = epoll_wait(epfd, evs, (int)ELEMENTSOF(evs), timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error_errno(-errno, "epoll_wait: %m");
            shutdown_and_exit(NULL);
        }
        for (int i = 0; i < n; i++) {
            struct io *io = evs[i].data.ptr;
            if (io->fd >= 0 && io->events)
                io->cb(io, evs[i].events);
        }
    }

fail_destroy:
    runtime_destroy(&S.sb);
    fail_startup(ready_fd, &err);
}
