/* sbx run: create a sandbox, run one command in it with live output, always remove the sandbox. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int run_main(int argc, char **argv)
{
    struct cli_args a;
    char errbuf[256];
    int r = cli_parse_args(argc, argv, ARGS_CREATE | ARGS_EXEC, &a, errbuf, sizeof(errbuf));
    if (r < 0)
        return cli_usage_error(&cli_cmd_run, r == -EINVAL ? errbuf : "out of memory", EXIT_SBX);
    if (a.help) {
        cli_args_done(&a);
        return cli_help(&cli_cmd_run);
    }
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0) {
        cli_args_done(&a);
        return EXIT_SBX;
    }
    int status = EXIT_SBX;
    r = cli_session_begin(sbx_client_url(c), true);
    if (r < 0) {
        fprintf(stderr, "sbx: start signal thread: %s\n", strerror(-r));
        goto out;
    }
    struct sbx_create_opts co = {
        .snapshot = a.snapshot,
        .name = a.name,
        .cpus = a.cpus,
        .memory_mb = a.memory_mb,
        .pids = a.pids,
        .env = a.env,
        .metadata = a.metadata,
        .idle_ttl_s = cli_lib_seconds(a.idle_ttl_s),
        .delete_after_stop_s = cli_lib_seconds(a.delete_after_stop_s),
        .timeout_s = cli_lib_seconds(a.lifetime_s),
    };
    struct sbx_sandbox s = {0};
    struct sbx_err err = {0};
    r = sbx_sandbox_create(c, &co, &s, &err);
    if (r < 0) {
        cli_print_err(&err, r);
        goto out;
    }
    cli_session_set_sandbox(s.id);
    int sig = cli_session_signal();
    if (sig) {
        status = 128 + sig;
    } else {
        struct sbx_exec_opts o = {
            .argv = (const char *const *)a.cmd,
            .cwd = a.cwd,
            .user = a.user,
            .timeout = a.timeout,
            .stdin_open = a.interactive,
        };
        status = cli_run_command(c, s.id, &o);
    }
    err = (struct sbx_err){0};
    r = sbx_sandbox_delete(c, s.id, &err);
    if (r < 0 && r != -ENOENT) {
        cli_print_err(&err, r);
        fprintf(stderr, "sbx: sandbox %s was not removed\n", s.id);
        if (status == 0)
            status = EXIT_SBX;
    }
    sbx_sandbox_done(&s);
out:
    sbx_client_free(c);
    cli_args_done(&a);
    return status;
}

const struct cli_command cli_cmd_run = {
    .name = "run",
    .run = run_main,
    .summary = "create a sandbox, run a command in it, remove it",
    .usage = "Usage: sbx run [OPTIONS] [--] CMD [ARG...]\n"
             "\n"
             "Creates a sandbox, runs CMD in it like `sbx exec` (live output, same exit statuses) and "
             "removes the\n"
             "sandbox afterwards, also on failure or Ctrl-C (a third Ctrl-C removes it at once).\n"
             "\n"
             "Options:\n"
             "  --snapshot NAME, --name NAME, -m/--memory SIZE, --cpus N, --pids N, --metadata K=V,\n"
             "  --idle-ttl DUR, --lifetime DUR, --delete-after-stop DUR\n"
             "                      as for `sbx create` (--lifetime is the sandbox's, --timeout the "
             "command's)\n"
             "  -e, --env K=V       environment variable of the sandbox (repeatable)\n"
             "  -w, --cwd DIR       working directory (default /root, or the user's home with --user)\n"
             "  -u, --user USER     run as USER: a name from the sandbox's /etc/passwd, UID or UID:GID\n"
             "  -t, --timeout SECS  kill the command after SECS\n"
             "  -i, --stdin         forward our stdin to the command\n",
};
