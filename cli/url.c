/* sbx url: mint a service URL for a port inside a sandbox and print it with its token. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int url_main(int argc, char **argv)
{
    int first;
    bool json = false;
    int r = cli_simple_args(&cli_cmd_url, argc, argv, &json, &first);
    if (r != 0)
        return r > 0 ? 0 : 2;
    int n = argc - first;
    if (n != 2 && n != 3)
        return cli_usage_error(&cli_cmd_url, "expected a sandbox id and a port", 2);
    char *end;
    long port = strtol(argv[first + 1], &end, 10);
    if (*end || port < 1 || port > 65535)
        return cli_usage_error(&cli_cmd_url, "the port must be an integer in 1..65535", 2);
    long long expires = 0;
    if (n == 3) {
        expires = strtoll(argv[first + 2], &end, 10);
        if (*end || expires < 1)
            return cli_usage_error(&cli_cmd_url, "SECONDS must be a positive integer", 2);
    }
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    struct sbx_service_url u = {0};
    struct sbx_err err = {0};
    r = sbx_service_url(c, argv[first], (int)port, expires, &u, &err);
    if (r < 0)
        cli_print_err(&err, r);
    else if (json)
        cli_print_json(u.json);
    else
        printf("%s%ssbx_token=%s\n", u.url, strchr(u.url, '?') ? "&" : "?", u.token);
    sbx_service_url_done(&u);
    sbx_client_free(c);
    return r < 0 ? 1 : 0;
}

const struct cli_command cli_cmd_url = {
    .name = "url",
    .run = url_main,
    .summary = "print a signed URL that reaches a port inside a sandbox",
    .usage = "Usage: sbx url [--json] ID PORT [SECONDS]\n"
             "\n"
             "Asks sbxd for a service URL to TCP port PORT inside the sandbox (HTTP and WebSocket are\n"
             "proxied to 127.0.0.1:PORT or [::1]:PORT there; the sandbox needs no network) and prints it\n"
             "with its token as ?sbx_token=, ready for a browser (sbxd turns it into a cookie) or curl -L.\n"
             "The token expires after SECONDS (default 3600, at most 7 days). --json prints the whole\n"
             "answer ({\"url\", \"token\", \"expires_at\", ...}); send the token as the header\n"
             "X-Sbx-Service-Token from programs.\n",
};
