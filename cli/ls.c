/* sbx ls: GET /v1/sandboxes as a table or JSON. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

/* "45s", "12m", "3h", "2d" since an RFC 3339 UTC time, or "-". */
static void format_age(const char *rfc3339, char *buf, size_t size)
{
    struct tm tm = {0};
    const char *end = rfc3339 ? strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!end) {
        snprintf(buf, size, "-");
        return;
    }
    long long age = (long long)(time(NULL) - timegm(&tm));
    if (age < 0)
        age = 0;
    if (age < 120)
        snprintf(buf, size, "%llds", age);
    else if (age < 7200)
        snprintf(buf, size, "%lldm", age / 60);
    else if (age < 172800)
        snprintf(buf, size, "%lldh", age / 3600);
    else
        snprintf(buf, size, "%lldd", age / 86400);
}

static int ls_main(int argc, char **argv)
{
    bool json = false;
    int first;
    int r = cli_simple_args(&cli_cmd_ls, argc, argv, &json, &first);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (first < argc)
        return cli_usage_error(&cli_cmd_ls, "unexpected argument", 2);
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    struct sbx_sandbox *list = NULL;
    size_t n = 0;
    struct sbx_err err = {0};
    r = sbx_sandbox_list(c, &list, &n, &err);
    if (r < 0) {
        cli_print_err(&err, r);
        sbx_client_free(c);
        return 1;
    }
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < n; i++)
            json_array_append_new(arr, json_loads(list[i].json, 0, NULL));
        char *text = arr ? json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        puts(text ? text : "[]");
        free(text);
        json_decref(arr);
    } else {
        int w[4] = {(int)strlen("ID"), (int)strlen("NAME"), (int)strlen("STATE"), (int)strlen("SNAPSHOT")};
        for (size_t i = 0; i < n; i++) {
            const char *cols[4] = {or_dash(list[i].id), or_dash(list[i].name), or_dash(list[i].state),
                                   or_dash(list[i].snapshot)};
            for (int k = 0; k < 4; k++)
                if ((int)strlen(cols[k]) > w[k])
                    w[k] = (int)strlen(cols[k]);
        }
        printf("%-*s  %-*s  %-*s  %-*s  %-5s  %s\n", w[0], "ID", w[1], "NAME", w[2], "STATE", w[3],
               "SNAPSHOT", "AGE", "CREATED");
        for (size_t i = 0; i < n; i++) {
            char age[16];
            format_age(list[i].created_at, age, sizeof(age));
            printf("%-*s  %-*s  %-*s  %-*s  %-5s  %s\n", w[0], or_dash(list[i].id), w[1],
                   or_dash(list[i].name), w[2], or_dash(list[i].state), w[3], or_dash(list[i].snapshot), age,
                   or_dash(list[i].created_at));
        }
    }
    sbx_sandbox_list_free(list, n);
    sbx_client_free(c);
    return 0;
}

const struct cli_command cli_cmd_ls = {
    .name = "ls",
    .run = ls_main,
    .summary = "list sandboxes",
    .usage = "Usage: sbx ls [--json]\n"
             "\n"
             "Lists sandboxes as a table (ID NAME STATE SNAPSHOT AGE CREATED) or, with --json, as a JSON "
             "array of\n"
             "sandbox objects.\n",
};
