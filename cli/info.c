/* sbx info: the daemon's health and version. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static int info_main(int argc, char **argv)
{
    int first;
    int r = cli_simple_args(&cli_cmd_info, argc, argv, NULL, &first);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (first != argc)
        return cli_usage_error(&cli_cmd_info, "unexpected argument", 2);
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    char *version = NULL;
    struct sbx_err err = {0};
    r = sbx_health(c, &version, &err);
    printf("url:            %s\n", sbx_client_url(c));
    printf("client version: %s\n", sbx_version());
    if (r < 0)
        cli_print_err(&err, r);
    else
        printf("daemon:         ok, version %s\n", version ? version : "unknown");
    free(version);
    sbx_client_free(c);
    return r < 0 ? 1 : 0;
}

const struct cli_command cli_cmd_info = {
    .name = "info",
    .run = info_main,
    .summary = "show the daemon's URL, health and version",
    .usage = "Usage: sbx info\n"
             "\n"
             "Checks GET /healthz on $SBX_URL and prints the client and daemon versions.\n",
};
