/* sbx ls: GET /v1/sandboxes as a table or JSON. */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
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

/* Parses ls's options into *lo (metadata filters in `metadata`, room for argc entries) and *json.
 * Returns 0, 1 after printing the help, or -EINVAL with a message in errbuf. */
static int ls_args(int argc, char **argv, struct sbx_list_opts *lo, const char **metadata, bool *json,
                   char *errbuf, size_t errlen)
{
    static const struct cli_option opts[] = {
        {"help", 'h', false, OPT_HELP},      {"json", 0, false, OPT_JSON}, {"state", 0, true, OPT_STATE},
        {"metadata", 0, true, OPT_METADATA}, {NULL, 0, false, 0},
    };
    size_t n_meta = 0;
    int i = 1;
    for (;;) {
        int id;
        const char *v;
        int r = cli_next_arg(opts, argc, argv, &i, &id, &v, errbuf, errlen);
        if (r < 0)
            return r;
        if (r == CLI_ARG_END)
            break;
        if (r != CLI_ARG_OPTION) {
            snprintf(errbuf, errlen, "unexpected argument `%s`", i < argc ? argv[i] : "--");
            return -EINVAL;
        }
        switch (id) {
        case OPT_HELP:
            cli_help(&cli_cmd_ls);
            return 1;
        case OPT_JSON:
            *json = true;
            break;
        case OPT_STATE:
            lo->state = v;
            break;
        case OPT_METADATA:
            if (!strchr(v, '=') || v[0] == '=') {
                snprintf(errbuf, errlen, "--metadata wants K=V, got `%s`", v);
                return -EINVAL;
            }
            metadata[n_meta++] = v;
            break;
        default:
            snprintf(errbuf, errlen, "unhandled option");
            return -EINVAL;
        }
    }
    lo->metadata = metadata;
    return 0;
}

static int ls_main(int argc, char **argv)
{
    bool json = false;
    struct sbx_list_opts lo = {0};
    const char **metadata = calloc((size_t)argc + 1, sizeof(char *));
    if (!metadata)
        return cli_usage_error(&cli_cmd_ls, "out of memory", 2);
    char errbuf[256];
    int r = ls_args(argc, argv, &lo, metadata, &json, errbuf, sizeof(errbuf));
    if (r != 0) {
        free(metadata);
        return r > 0 ? 0 : cli_usage_error(&cli_cmd_ls, errbuf, 2);
    }
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0) {
        free(metadata);
        return 1;
    }
    struct sbx_sandbox *list = NULL;
    size_t n = 0;
    struct sbx_err err = {0};
    r = sbx_sandbox_list_where(c, &lo, &list, &n, &err);
    free(metadata);
    if (r < 0) {
        cli_print_err(&err, r);
        sbx_client_free(c);
        return 1;
    }
    if (json) {
        cli_print_json_array(list, n, sizeof(*list), offsetof(struct sbx_sandbox, json));
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
    .usage =
        "Usage: sbx ls [--state STATE] [--metadata K=V]... [--json]\n"
        "\n"
        "Lists sandboxes, oldest first, as a table (ID NAME STATE SNAPSHOT AGE CREATED) or, with --json, "
        "as a\n"
        "JSON array of sandbox objects.\n"
        "\n"
        "Options:\n"
        "  --state STATE       only those in STATE: creating, running, paused, stopped, failed, or\n"
        "                      deleted (deleted sandboxes, kept for 24 h, are listed only this way)\n"
        "  --metadata K=V      only those whose metadata has K=V (repeatable: all must match)\n"
        "  --json              JSON array of the whole sandbox objects\n",
};
