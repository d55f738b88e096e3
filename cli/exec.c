/* sbx exec: run a command in an existing sandbox with live output; exits with the command's status. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int exec_main(int argc, char **argv)
{
    struct cli_args a;
    char errbuf[256];
    int r = cli_parse_args(argc, argv, ARGS_EXEC | ARGS_SANDBOX, &a, errbuf, sizeof(errbuf));
    if (r < 0)
        return cli_usage_error(&cli_cmd_exec, r == -EINVAL ? errbuf : "out of memory", EXIT_SBX);
    if (a.help) {
        cli_args_done(&a);
        return cli_help(&cli_cmd_exec);
    }
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0) {
        cli_args_done(&a);
        return EXIT_SBX;
    }
    int status = EXIT_SBX;
    if (a.tty) {
        status = cli_run_shell(c, a.sandbox, (const char *const *)a.cmd, a.env, a.cwd, a.user, a.timeout);
        sbx_client_free(c);
        cli_args_done(&a);
        return status;
    }
    r = cli_session_begin(sbx_client_url(c), false);
    if (r < 0) {
        fprintf(stderr, "sbx: start signal thread: %s\n", strerror(-r));
    } else {
        struct sbx_exec_opts o = {
            .argv = (const char *const *)a.cmd,
            .env = a.env,
            .cwd = a.cwd,
            .user = a.user,
            .timeout = a.timeout,
            .stdin_open = a.interactive,
        };
        status = cli_run_command(c, a.sandbox, &o);
    }
    sbx_client_free(c);
    cli_args_done(&a);
    return status;
}

const struct cli_command cli_cmd_exec = {
    .name = "exec",
    .run = exec_main,
    .summary = "run a command in a sandbox",
    .usage =
        "Usage: sbx exec [OPTIONS] ID [OPTIONS] [--] CMD [ARG...]\n"
        "\n"
        "Runs CMD (an argv, resolved with the sandbox's PATH; use `sh -c '...'` for shell syntax) in "
        "sandbox\n"
        "ID, streaming its stdout and stderr live. Exits with the command's status: 128+N when killed by\n"
        "signal N, 124 on --timeout, 127 when CMD is not found, 125 when sbx itself failed.\n"
        "SIGINT/SIGTERM/SIGHUP are forwarded to the command; a third one kills it.\n"
        "\n"
        "Options:\n"
        "  -e, --env K=V       environment variable (repeatable)\n"
        "  -w, --cwd DIR       working directory (default /root, or the user's home with --user)\n"
        "  -u, --user USER     run as USER: a name from the sandbox's /etc/passwd, UID or UID:GID\n"
        "  -t, --timeout SECS  kill the command after SECS (s/m/h suffixes allowed)\n"
        "  -i, --stdin         forward our stdin to the command (closed at EOF)\n"
        "      --tty           run it on a pseudo-terminal, our terminal in raw mode (as `sbx shell`)\n",
};
