/* sbx rm: DELETE /v1/sandboxes/{id} for each id. */
#include "cli.h"

static int rm_main(int argc, char **argv)
{
    return cli_for_each_id(&cli_cmd_rm, "sandbox", argc, argv, sbx_sandbox_delete);
}

const struct cli_command cli_cmd_rm = {
    .name = "rm",
    .run = rm_main,
    .summary = "remove sandboxes",
    .usage =
        "Usage: sbx rm ID...\n"
        "\n"
        "Removes each sandbox (by id or name), killing its processes. Exits nonzero if any removal failed.\n",
};
