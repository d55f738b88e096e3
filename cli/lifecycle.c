/* sbx pause|resume|stop|start: POST /v1/sandboxes/{id}/<verb> for each id. */
#include "cli.h"

static int pause_main(int argc, char **argv)
{
    return cli_for_each_id(&cli_cmd_pause, "sandbox", argc, argv, sbx_sandbox_pause);
}

static int resume_main(int argc, char **argv)
{
    return cli_for_each_id(&cli_cmd_resume, "sandbox", argc, argv, sbx_sandbox_resume);
}

static int stop_main(int argc, char **argv)
{
    return cli_for_each_id(&cli_cmd_stop, "sandbox", argc, argv, sbx_sandbox_stop);
}

static int start_main(int argc, char **argv)
{
    return cli_for_each_id(&cli_cmd_start, "sandbox", argc, argv, sbx_sandbox_start);
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
