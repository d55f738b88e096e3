/* sbx rm: DELETE /v1/sandboxes/{id} for each id. */
#include <stdio.h>

#include "cli.h"

static int rm_main(int argc, char **argv)
{
    int first;
    int r = cli_simple_args(&cli_cmd_rm, argc, argv, NULL, &first);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (first == argc)
        return cli_usage_error(&cli_cmd_rm, "missing sandbox id", 2);
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    int status = 0;
    for (int i = first; i < argc; i++) {
        struct sbx_err err = {0};
        r = sbx_sandbox_delete(c, argv[i], &err);
        if (r < 0) {
            cli_print_err(&err, r);
            status = 1;
        }
    }
    sbx_client_free(c);
    return status;
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
