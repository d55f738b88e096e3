/* sbx pause|resume|stop|start: POST /v1/sandboxes/{id}/<verb> for each id. */
#include <stdio.h>

#include "cli.h"

static int for_each_id(const struct cli_command *cmd, int argc, char **argv,
                       int (*action)(struct sbx_client *, const char *, struct sbx_err *))
{
    int first;
    int r = cli_simple_args(cmd, argc, argv, NULL, &first);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (first == argc)
        return cli_usage_error(cmd, "missing sandbox id", 2);
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    int status = 0;
    for (int i = first; i < argc; i++) {
        struct sbx_err err = {0};
        if ((r = action(c, argv[i], &err)) < 0) {
            cli_print_err(&err, r);
            status = 1;
        }
    }
    sbx_client_free(c);
    return status;
}

static int pause_main(int argc, char **argv)
{
    return for_each_id(&cli_cmd_pause, argc, argv, sbx_sandbox_pause);
}

static int resume_main(int argc, char **argv)
{
    return for_each_id(&cli_cmd_resume, argc, argv, sbx_sandbox_resume);
}

static int stop_main(int argc, char **argv)
{
    return for_each_id(&cli_cmd_stop, argc, argv, sbx_sandbox_stop);
}

static int start_main(int argc, char **argv)
{
    return for_each_id(&cli_cmd_start, argc, argv, sbx_sandbox_start);
}

const struct cli_command cli_cmd_pause = {
    .name = "pause",
    .run = pause_main,
    .summary = "freeze sandboxes (no CPU, memory kept)",
    .usage = "Usage: sbx pause ID...\n"
             "\n"
             "Freezes every process of each sandbox. A command or file operation resumes it by itself.\n",
};

const struct cli_command cli_cmd_resume = {
    .name = "resume",
    .run = resume_main,
    .summary = "let paused sandboxes run again",
    .usage = "Usage: sbx resume ID...\n",
};

const struct cli_command cli_cmd_stop = {
    .name = "stop",
    .run = stop_main,
    .summary = "end sandboxes' processes, keeping their files",
    .usage =
        "Usage: sbx stop ID...\n"
        "\n"
        "Kills every process of each sandbox and unmounts it; its files stay. `sbx start` brings it back.\n",
};

const struct cli_command cli_cmd_start = {
    .name = "start",
    .run = start_main,
    .summary = "start stopped sandboxes again (same id, same files)",
    .usage = "Usage: sbx start ID...\n",
};
