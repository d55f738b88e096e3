/* sbx: command-line client of sbxd. Subcommands are dispatched from a table; each lives in its own file. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct cli_command *const commands[] = {
    &cli_cmd_create, &cli_cmd_ls,    &cli_cmd_exec,  &cli_cmd_run,      &cli_cmd_cp,         &cli_cmd_rm,
    &cli_cmd_get,    &cli_cmd_info,  &cli_cmd_pause, &cli_cmd_resume,   &cli_cmd_stop,       &cli_cmd_start,
    &cli_cmd_update, &cli_cmd_renew, &cli_cmd_keys,  &cli_cmd_snapshot, &cli_cmd_checkpoint, &cli_cmd_fork,
    &cli_cmd_volume, &cli_cmd_shell, &cli_cmd_url,   &cli_cmd_tunnel,   &cli_cmd_agent,      &cli_cmd_code,
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: sbx COMMAND [OPTIONS]\n"
               "\n"
               "Client of the sbx sandbox daemon at $SBX_URL (default " SBX_DEFAULT_URL "),\n"
               "authenticating with $SBX_API_KEY when set.\n"
               "\n"
               "Commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\nRun `sbx COMMAND --help` for a command's options. `sbx --version` prints the version.\n");
}

static const struct cli_command *find(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    /* Writes to a closed pipe return EPIPE and are handled where they happen. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("sbx %s\n", sbx_version());
        return 0;
    }
    if (strcmp(name, "help") == 0) {
        const struct cli_command *cmd = argc > 2 ? find(argv[2]) : NULL;
        if (cmd)
            return cli_help(cmd);
        usage(stdout);
        return argc > 2 ? 2 : 0;
    }
    const struct cli_command *cmd = find(name);
    if (!cmd) {
        fprintf(stderr, "sbx: unknown command `%s`\n", name);
        usage(stderr);
        return 2;
    }
    int status = cmd->run(argc - 1, argv + 1);
    if (fflush(stdout) != 0 && status == 0)
        status = 1;
    return status;
}
