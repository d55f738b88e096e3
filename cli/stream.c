/* sbx CLI: running one command with live output, stdin forwarding and signal forwarding.
 *
 * Threads: the main thread runs the SSE stream (a blocking curl transfer). With -i a stdin thread reads
 * our stdin and POSTs it; a signal thread sigwait()s for SIGINT/SIGTERM/SIGHUP/SIGQUIT and forwards them.
 * A struct sbx_client is single-threaded, so each thread has its own. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "cli.h"

static struct {
    pthread_mutex_t lock;
    char url[1024];
    char sid[256];
    char cid[256];
    bool delete_sandbox;
    int count;
    int last_signal;
    bool started;
} session = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void signal_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGQUIT);
}

static void *signal_thread(void *arg)
{
    sigset_t set;
    signal_set(&set);
    struct sbx_client *c = NULL;
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        char sid[sizeof(session.sid)], cid[sizeof(session.cid)];
        pthread_mutex_lock(&session.lock);
        int n = ++session.count;
        session.last_signal = sig;
        memcpy(sid, session.sid, sizeof(sid));
        memcpy(cid, session.cid, sizeof(cid));
        bool delete_sandbox = session.delete_sandbox;
        pthread_mutex_unlock(&session.lock);
        if (!c && sbx_client_new(session.url, NULL, &c) < 0)
            _exit(128 + sig);
        if (n >= 3) {
            /* The user insists: stop waiting for the command. */
            if (delete_sandbox && sid[0]) {
                fprintf(stderr, "sbx: interrupted, removing sandbox %s\n", sid);
                sbx_sandbox_delete(c, sid, NULL);
            } else if (sid[0] && cid[0]) {
                sbx_exec_kill(c, sid, cid, NULL);
            }
            _exit(128 + sig);
        }
        /* Without a command yet, the main thread checks cli_session_signal() once its call returns. */
        if (sid[0] && cid[0])
            sbx_exec_signal(c, sid, cid, sig, NULL);
    }
    return NULL;
}

int cli_session_begin(const char *url, bool delete_sandbox)
{
    snprintf(session.url, sizeof(session.url), "%s", url);
    session.delete_sandbox = delete_sandbox;
    sigset_t set;
    signal_set(&set);
    int r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (r != 0)
        return -r;
    pthread_t t;
    r = pthread_create(&t, NULL, signal_thread, NULL);
    if (r != 0)
        return -r;
    pthread_detach(t);
    session.started = true;
    return 0;
}

void cli_session_set_sandbox(const char *sid)
{
    pthread_mutex_lock(&session.lock);
    snprintf(session.sid, sizeof(session.sid), "%s", sid);
    pthread_mutex_unlock(&session.lock);
}

static int session_set_command(const char *sid, const char *cid)
{
    pthread_mutex_lock(&session.lock);
    snprintf(session.sid, sizeof(session.sid), "%s", sid);
    snprintf(session.cid, sizeof(session.cid), "%s", cid);
    int sig = session.last_signal;
    pthread_mutex_unlock(&session.lock);
    return sig;
}

int cli_session_signal(void)
{
    pthread_mutex_lock(&session.lock);
    int sig = session.last_signal;
    pthread_mutex_unlock(&session.lock);
    return sig;
}

struct stdin_fwd {
    char url[1024];
    char sid[256];
    char cid[256];
};

static void *stdin_thread(void *arg)
{
    struct stdin_fwd *f = arg;
    struct sbx_client *c = NULL;
    if (sbx_client_new(f->url, NULL, &c) < 0)
        return NULL;
    static char buf[256 * 1024];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            sbx_exec_stdin(c, f->sid, f->cid, NULL, 0, true, NULL);
            break;
        }
        /* A failure here means the command is gone; its exit arrives on the stream. */
        if (sbx_exec_stdin(c, f->sid, f->cid, buf, (size_t)n, false, NULL) < 0)
            break;
    }
    sbx_client_free(c);
    return NULL;
}

struct output_state {
    uint64_t offset[3]; /* next expected byte offset per stream (index: enum sbx_stream) */
    bool exited;
    int exit_code;
    int signal;
    char error_code[32];
};

static int on_output(enum sbx_stream stream, uint64_t offset, const void *data, size_t len, void *userdata)
{
    struct output_state *s = userdata;
    int idx = stream == SBX_STREAM_STDERR ? 2 : 1;
    /* After a reconnect the daemon resumes at our offsets; skip anything already written just in case. */
    if (offset + len <= s->offset[idx])
        return 0;
    if (offset < s->offset[idx]) {
        size_t skip = (size_t)(s->offset[idx] - offset);
        data = (const char *)data + skip;
        len -= skip;
        offset += skip;
    }
    int r = write_all(idx == 2 ? STDERR_FILENO : STDOUT_FILENO, data, len);
    if (r < 0)
        return r;
    s->offset[idx] = offset + len;
    return 0;
}

static int on_exit_cb(int exit_code, int sig, const char *error_code, void *userdata)
{
    struct output_state *s = userdata;
    s->exited = true;
    s->exit_code = exit_code;
    s->signal = sig;
    snprintf(s->error_code, sizeof(s->error_code), "%s", error_code ? error_code : "");
    return 0;
}

static bool transient(int r, const struct sbx_err *err)
{
    return strcmp(err->code, "unavailable") == 0 || r == -ECONNRESET;
}

int cli_run_command(struct sbx_client *c, const char *sid, const struct sbx_exec_opts *opts)
{
    struct sbx_err err = {0};
    char *cid = NULL;
    int r = sbx_exec_start(c, sid, opts, &cid, &err);
    if (r < 0) {
        cli_print_err(&err, r);
        return EXIT_SBX;
    }
    int sig = session_set_command(sid, cid);
    if (sig)
        sbx_exec_signal(c, sid, cid, sig, NULL);

    if (opts->stdin_open) {
        static struct stdin_fwd fwd;
        snprintf(fwd.url, sizeof(fwd.url), "%s", sbx_client_url(c));
        snprintf(fwd.sid, sizeof(fwd.sid), "%s", sid);
        snprintf(fwd.cid, sizeof(fwd.cid), "%s", cid);
        pthread_t t;
        if (pthread_create(&t, NULL, stdin_thread, &fwd) == 0)
            pthread_detach(t);
        else
            sbx_exec_stdin(c, sid, cid, NULL, 0, true, NULL);
    }

    struct output_state st = {.exit_code = -1};
    struct sbx_exec_callbacks cb = {.on_output = on_output, .on_exit = on_exit_cb, .userdata = &st};
    for (int attempt = 0;; attempt++) {
        err = (struct sbx_err){0};
        r = sbx_exec_stream(c, sid, cid, st.offset[1], st.offset[2], &cb, &err);
        if (r >= 0 || st.exited)
            break;
        if (r == -EPIPE) {
            /* Our stdout or stderr is gone (e.g. `| head`): stop the command and go like SIGPIPE would. */
            sbx_exec_kill(c, sid, cid, NULL);
            free(cid);
            return 128 + SIGPIPE;
        }
        if (!transient(r, &err) || attempt >= 5) {
            cli_print_err(&err, r);
            free(cid);
            return EXIT_SBX;
        }
        struct timespec ts = {0, 100000000L << attempt / 2}; /* 0.1 s, growing */
        nanosleep(&ts, NULL);
    }
    free(cid);
    if (strcmp(st.error_code, "timeout") == 0)
        return EXIT_TIMEOUT;
    if (st.exit_code < 0)
        return EXIT_SBX;
    return st.exit_code > 255 ? 255 : st.exit_code;
}
