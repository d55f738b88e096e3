/* sbx shell: an interactive terminal in a sandbox. The command runs on a pseudo-terminal in the sandbox
 * (`"pty": true`); our terminal is put in raw mode so every key (^C, ^D, arrows) travels as bytes and
 * the sandbox's line discipline interprets them.
 *
 * Threads: the main thread streams the output over SSE (reconnecting from its offset if the stream
 * drops); a stdin thread reads our stdin and POSTs each read as it comes; a signal thread sigwait()s for
 * SIGWINCH (forwarded as a resize) and SIGTERM/SIGHUP/SIGINT/SIGQUIT (the remote command gets SIGHUP,
 * our terminal is restored, we exit 128+N). A struct sbx_client is single-threaded, so each thread has
 * its own. The terminal mode is restored on every exit path: atexit() for returns and exit(), and the
 * signal thread before _exit(). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "cli.h"

#define DEFAULT_SHELL "if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l"

static struct {
    pthread_mutex_t lock;
    char url[1024];
    char sid[256];
    char cid[256];        /* "" until the command started */
    unsigned cols, rows;  /* the size the command has (as far as we sent it) */
    struct termios saved; /* our terminal's mode before raw */
    bool raw;             /* saved is valid and the terminal is in raw mode */
} shell = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const struct cli_option shell_options[] = {
    {"env", 'e', true, OPT_ENV},
    {"cwd", 'w', true, OPT_CWD},
    {"help", 'h', false, OPT_HELP},
    {0},
};

/* Puts the terminal back as we found it. Safe to call more than once and from any thread. */
static void term_restore(void)
{
    pthread_mutex_lock(&shell.lock);
    if (shell.raw) {
        (void)tcsetattr(STDIN_FILENO, TCSADRAIN, &shell.saved);
        shell.raw = false;
    }
    pthread_mutex_unlock(&shell.lock);
}

static int term_raw(void)
{
    if (!isatty(STDIN_FILENO))
        return 0;
    struct termios t;
    if (tcgetattr(STDIN_FILENO, &t) < 0)
        return -errno;
    shell.saved = t;
    cfmakeraw(&t);
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &t) < 0)
        return -errno;
    shell.raw = true;
    return 0;
}

/* Our terminal's size, or 0x0 when we have none (the daemon's default 80x24 applies). */
static void term_size(unsigned *ret_cols, unsigned *ret_rows)
{
    struct winsize ws = {0};
    *ret_cols = *ret_rows = 0;
    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) < 0 && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0)
        return;
    if (ws.ws_col > 0 && ws.ws_row > 0) {
        *ret_cols = ws.ws_col > 1000 ? 1000 : ws.ws_col;
        *ret_rows = ws.ws_row > 1000 ? 1000 : ws.ws_row;
    }
}

/* Sends our current size if it differs from what the command has (no-op before it started). */
static void sync_size(struct sbx_client *c)
{
    unsigned cols, rows;
    term_size(&cols, &rows);
    char sid[sizeof(shell.sid)], cid[sizeof(shell.cid)];
    pthread_mutex_lock(&shell.lock);
    bool send = shell.cid[0] && cols && (cols != shell.cols || rows != shell.rows);
    if (send) {
        shell.cols = cols;
        shell.rows = rows;
    }
    memcpy(sid, shell.sid, sizeof(sid));
    memcpy(cid, shell.cid, sizeof(cid));
    pthread_mutex_unlock(&shell.lock);
    if (send)
        (void)sbx_exec_resize(c, sid, cid, cols, rows, NULL);
}

static void shell_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGWINCH);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGQUIT);
}

static void *signal_thread(void *arg)
{
    sigset_t set;
    shell_signals(&set);
    struct sbx_client *c = NULL;
    if (sbx_client_new(shell.url, NULL, &c) < 0)
        c = NULL;
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGWINCH) {
            if (c)
                sync_size(c);
            continue;
        }
        /* Someone wants us gone (our terminal hung up, kill(1)): hang up the remote side like a closing
         * terminal would, give the terminal back and leave. */
        pthread_mutex_lock(&shell.lock);
        char sid[sizeof(shell.sid)], cid[sizeof(shell.cid)];
        memcpy(sid, shell.sid, sizeof(sid));
        memcpy(cid, shell.cid, sizeof(cid));
        pthread_mutex_unlock(&shell.lock);
        if (c && cid[0])
            (void)sbx_exec_signal(c, sid, cid, SIGHUP, NULL);
        term_restore();
        _exit(128 + sig);
    }
    return NULL;
}

static void *stdin_thread(void *arg)
{
    struct sbx_client *c = NULL;
    if (sbx_client_new(shell.url, NULL, &c) < 0)
        return NULL;
    static char buf[64 * 1024];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        /* EOF of a non-terminal stdin: stop sending. Closing a pty's input would not end the shell
         * (that is what ^D is for), so the command keeps running until it exits by itself. */
        if (n <= 0)
            break;
        if (sbx_exec_stdin(c, shell.sid, shell.cid, buf, (size_t)n, false, NULL) < 0)
            break; /* the command is gone; its exit arrives on the stream */
    }
    sbx_client_free(c);
    return NULL;
}

struct output_state {
    uint64_t offset; /* next stdout byte we have not written */
    bool exited;
    int exit_code;
    char error_code[32];
};

static int on_output(enum sbx_stream stream, uint64_t offset, const void *data, size_t len, void *userdata)
{
    struct output_state *s = userdata;
    if (stream != SBX_STREAM_STDOUT || offset + len <= s->offset)
        return 0; /* a pty has no stderr; bytes before our offset were written already */
    size_t skip = offset < s->offset ? (size_t)(s->offset - offset) : 0;
    int r = write_all(STDOUT_FILENO, (const char *)data + skip, len - skip);
    if (r < 0)
        return r;
    s->offset = offset + len;
    return 0;
}

static int on_exit_cb(int exit_code, int sig, const char *error_code, void *userdata)
{
    struct output_state *s = userdata;
    s->exited = true;
    s->exit_code = exit_code;
    snprintf(s->error_code, sizeof(s->error_code), "%s", error_code ? error_code : "");
    return 0;
}

/* Starts the command on a pty and follows it to its end; returns our exit status. */
static int run_shell(struct sbx_client *c, const char *sid, const char *const *cmd, const char *const *env,
                     const char *cwd, const char *user, double timeout)
{
    static const char *const default_argv[] = {"/bin/sh", "-c", DEFAULT_SHELL, NULL};
    unsigned cols, rows;
    term_size(&cols, &rows);
    struct sbx_exec_opts o = {
        .argv = cmd ? cmd : default_argv,
        .env = env,
        .cwd = cwd,
        .user = user,
        .timeout = timeout,
        .stdin_open = true,
        .pty = true,
        .cols = cols,
        .rows = rows,
    };
    struct sbx_err err = {0};
    char *cid = NULL;
    int r = sbx_exec_start(c, sid, &o, &cid, &err);
    if (r < 0) {
        cli_print_err(&err, r);
        return EXIT_SBX;
    }
    pthread_mutex_lock(&shell.lock);
    snprintf(shell.sid, sizeof(shell.sid), "%s", sid);
    snprintf(shell.cid, sizeof(shell.cid), "%s", cid);
    shell.cols = cols ? cols : 80;
    shell.rows = rows ? rows : 24;
    pthread_mutex_unlock(&shell.lock);
    sync_size(c); /* the window may have changed while the command started */

    r = term_raw();
    if (r < 0) {
        fprintf(stderr, "sbx: cannot put the terminal in raw mode: %s\n", strerror(-r));
        sbx_exec_kill(c, sid, cid, NULL);
        free(cid);
        return EXIT_SBX;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, stdin_thread, NULL) == 0)
        pthread_detach(t);

    struct output_state st = {.exit_code = -1};
    struct sbx_exec_callbacks cb = {.on_output = on_output, .on_exit = on_exit_cb, .userdata = &st};
    for (int attempt = 0;; attempt++) {
        err = (struct sbx_err){0};
        r = sbx_exec_stream(c, sid, cid, st.offset, 0, &cb, &err);
        if (r >= 0 || st.exited)
            break;
        bool transient = strcmp(err.code, "unavailable") == 0 || r == -ECONNRESET;
        if (r == -EPIPE || !transient || attempt >= 5) {
            term_restore();
            if (r != -EPIPE)
                cli_print_err(&err, r);
            sbx_exec_signal(c, sid, cid, SIGHUP, NULL);
            free(cid);
            return EXIT_SBX;
        }
        struct timespec ts = {0, 100000000L << attempt / 2}; /* 0.1 s, growing */
        nanosleep(&ts, NULL);
    }
    free(cid);
    term_restore();
    if (strcmp(st.error_code, "timeout") == 0)
        return EXIT_TIMEOUT;
    if (st.exit_code < 0)
        return EXIT_SBX;
    return st.exit_code > 255 ? 255 : st.exit_code;
}

static int shell_main(int argc, char **argv)
{
    char errbuf[256];
    const char *sid = NULL, *cwd = NULL;
    const char **env = calloc((size_t)argc + 1, sizeof(char *));
    size_t n_env = 0;
    char **cmd = NULL;
    if (!env) {
        fprintf(stderr, "sbx: out of memory\n");
        return EXIT_SBX;
    }
    for (int i = 1;;) {
        int id;
        const char *value = NULL;
        int k = cli_next_arg(shell_options, argc, argv, &i, &id, &value, errbuf, sizeof(errbuf));
        if (k < 0) {
            free(env);
            return cli_usage_error(&cli_cmd_shell, errbuf, EXIT_SBX);
        }
        if (k == CLI_ARG_END)
            break;
        if (k == CLI_ARG_OPTION) {
            if (id == OPT_HELP) {
                free(env);
                return cli_help(&cli_cmd_shell);
            }
            if (id == OPT_ENV) {
                if (!strchr(value, '=') || value[0] == '=') {
                    free(env);
                    return cli_usage_error(&cli_cmd_shell, "--env takes K=V", EXIT_SBX);
                }
                env[n_env++] = value;
            } else if (id == OPT_CWD) {
                cwd = value;
            }
            continue;
        }
        /* The sandbox id, then (after it, or after "--") the command. */
        if (k == CLI_ARG_POSITIONAL && !sid) {
            sid = argv[i++];
            continue;
        }
        if (!sid && i < argc) {
            sid = argv[i++];
        }
        if (i < argc)
            cmd = argv + i;
        break;
    }
    if (!sid) {
        free(env);
        return cli_usage_error(&cli_cmd_shell, "missing sandbox id", EXIT_SBX);
    }

    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0) {
        free(env);
        return EXIT_SBX;
    }
    int status = cli_run_shell(c, sid, (const char *const *)cmd, n_env ? env : NULL, cwd, NULL, 0);
    sbx_client_free(c);
    free(env);
    return status;
}

int cli_run_shell(struct sbx_client *c, const char *sid, const char *const *cmd, const char *const *env,
                  const char *cwd, const char *user, double timeout)
{
    snprintf(shell.url, sizeof(shell.url), "%s", sbx_client_url(c));
    /* Every thread blocks these; the signal thread takes them with sigwait(). */
    sigset_t set;
    shell_signals(&set);
    int status = EXIT_SBX;
    pthread_t t;
    int r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (r == 0)
        r = pthread_create(&t, NULL, signal_thread, NULL);
    if (r != 0) {
        fprintf(stderr, "sbx: start signal thread: %s\n", strerror(r));
    } else {
        pthread_detach(t);
        atexit(term_restore);
        status = run_shell(c, sid, cmd, env, cwd, user, timeout);
    }
    return status;
}

const struct cli_command cli_cmd_shell = {
    .name = "shell",
    .run = shell_main,
    .summary = "an interactive terminal in a sandbox",
    .usage =
        "Usage: sbx shell [OPTIONS] ID [--] [CMD [ARG...]]\n"
        "\n"
        "Runs CMD (default: a login shell, /bin/bash if the sandbox has it, else /bin/sh) in sandbox ID on\n"
        "a pseudo-terminal sized like ours, with our terminal in raw mode: keys, ^C, ^D and window-size\n"
        "changes go to the command, its output comes back as it is written. Exits with the command's\n"
        "status (125 when sbx itself failed). SIGTERM/SIGHUP hang up the command and restore the\n"
        "terminal. TERM is xterm-256color unless --env sets it.\n"
        "\n"
        "Options:\n"
        "  -e, --env K=V       environment variable (repeatable)\n"
        "  -w, --cwd DIR       working directory (default /root)\n",
};
