/* sbx get: GET /v1/sandboxes/{id} as JSON. */
#include <stdio.h>

#include "cli.h"

static int get_main(int argc, char **argv)
{
    int first;
    int r = cli_simple_args(&cli_cmd_get, argc, argv, NULL, &first);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (argc - first != 1)
        return cli_usage_error(&cli_cmd_get, "expected one sandbox id", 2);
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    struct sbx_sandbox s = {0};
    struct sbx_err err = {0};
    r = sbx_sandbox_get(c, argv[first], &s, &err);
    if (r < 0)
        cli_print_err(&err, r);
    else
        cli_print_json(s.json);
    sbx_sandbox_done(&s);
    sbx_client_free(c);
    return r < 0 ? 1 : 0;
}

const struct cli_command cli_cmd_get = {
    .name = "get",
    .run = get_main,
    .summary = "show one sandbox as JSON",
    .usage = "Usage: sbx get ID\n"
             "\n"
             "Prints the sandbox object (by id or name) as JSON.\n",
};
