/* sbx keys create|ls|rm: the tenant API keys of /v1/keys (admin only). */
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static int keys_create(int argc, char **argv)
{
    static const struct cli_option opts[] = {
        {"help", 'h', false, OPT_HELP},
        {"name", 0, true, OPT_NAME},
        {"max-sandboxes", 0, true, OPT_MAX_SANDBOXES},
        {"max-memory", 0, true, OPT_MAX_MEMORY},
        {"json", 0, false, OPT_JSON},
        {NULL, 0, false, 0},
    };
    struct sbx_key_opts o = {0};
    bool json = false;
    char errbuf[256];
    int i = 1;
    for (;;) {
        int id;
        const char *v;
        int r = cli_next_arg(opts, argc, argv, &i, &id, &v, errbuf, sizeof(errbuf));
        if (r < 0)
            return cli_usage_error(&cli_cmd_keys, errbuf, 2);
        if (r == CLI_ARG_END)
            break;
        if (r != CLI_ARG_OPTION) {
            snprintf(errbuf, sizeof(errbuf), "unexpected argument `%s`", i < argc ? argv[i] : "--");
            return cli_usage_error(&cli_cmd_keys, errbuf, 2);
        }
        switch (id) {
        case OPT_HELP:
            return cli_help(&cli_cmd_keys);
        case OPT_NAME:
            o.name = v;
            break;
        case OPT_MAX_SANDBOXES:
            if (cli_parse_positive_int(v, &o.max_sandboxes) < 0) {
                snprintf(errbuf, sizeof(errbuf), "bad --max-sandboxes `%s` (a positive integer)", v);
                return cli_usage_error(&cli_cmd_keys, errbuf, 2);
            }
            break;
        case OPT_MAX_MEMORY:
            if (cli_parse_memory_mb(v, &o.max_memory_mb) < 0) {
                snprintf(errbuf, sizeof(errbuf), "bad --max-memory `%s` (examples: 512M, 16G, 1024)", v);
                return cli_usage_error(&cli_cmd_keys, errbuf, 2);
            }
            break;
        case OPT_JSON:
            json = true;
            break;
        default:
            return cli_usage_error(&cli_cmd_keys, "unhandled option", 2);
        }
    }
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    struct sbx_key k = {0};
    struct sbx_err err = {0};
    int r = sbx_key_create(c, &o, &k, &err);
    if (r < 0) {
        cli_print_err(&err, r);
    } else if (json) {
        cli_print_json(k.json);
    } else {
        printf("id:     %s\n", k.id);
        printf("secret: %s\n", or_dash(k.secret));
    }
    if (r >= 0)
        fprintf(stderr, "sbx: the secret is shown only this once (sbxd keeps only its hash): save it now, "
                        "then use it as SBX_API_KEY\n");
    sbx_key_done(&k);
    sbx_client_free(c);
    return r < 0 ? 1 : 0;
}

/* "sandboxes=20 memory=16G", the quotas that are set, or "unlimited". */
static void format_quotas(const struct sbx_key *k, char *buf, size_t size)
{
    int n = 0;
    buf[0] = 0;
    if (k->max_sandboxes > 0)
        n += snprintf(buf, size, "sandboxes=%lld", (long long)k->max_sandboxes);
    if (k->max_memory_mb > 0 && n >= 0 && (size_t)n < size) {
        const char *sep = n ? " " : "";
        if (k->max_memory_mb % 1024 == 0)
            snprintf(buf + n, size - (size_t)n, "%smemory=%lldG", sep, (long long)(k->max_memory_mb / 1024));
        else
            snprintf(buf + n, size - (size_t)n, "%smemory=%lldM", sep, (long long)k->max_memory_mb);
    }
    if (!buf[0])
        snprintf(buf, size, "unlimited");
}

static int keys_ls(int argc, char **argv)
{
    bool json = false;
    int first;
    int r = cli_simple_args(&cli_cmd_keys, argc, argv, &json, &first);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (first < argc)
        return cli_usage_error(&cli_cmd_keys, "unexpected argument", 2);
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    struct sbx_key *list = NULL;
    size_t n = 0;
    struct sbx_err err = {0};
    r = sbx_key_list(c, &list, &n, &err);
    if (r < 0) {
        cli_print_err(&err, r);
        sbx_client_free(c);
        return 1;
    }
    if (json) {
        cli_print_json_array(list, n, sizeof(*list), offsetof(struct sbx_key, json));
    } else {
        int w[3] = {(int)strlen("ID"), (int)strlen("NAME"), (int)strlen("CREATED")};
        for (size_t i = 0; i < n; i++) {
            const char *cols[3] = {or_dash(list[i].id), or_dash(list[i].name), or_dash(list[i].created_at)};
            for (int k = 0; k < 3; k++)
                if ((int)strlen(cols[k]) > w[k])
                    w[k] = (int)strlen(cols[k]);
        }
        printf("%-*s  %-*s  %-*s  %s\n", w[0], "ID", w[1], "NAME", w[2], "CREATED", "QUOTAS");
        for (size_t i = 0; i < n; i++) {
            char quotas[96];
            format_quotas(&list[i], quotas, sizeof(quotas));
            printf("%-*s  %-*s  %-*s  %s\n", w[0], or_dash(list[i].id), w[1], or_dash(list[i].name), w[2],
                   or_dash(list[i].created_at), quotas);
        }
    }
    sbx_key_list_free(list, n);
    sbx_client_free(c);
    return 0;
}

static int keys_rm(int argc, char **argv)
{
    return cli_for_each_id(&cli_cmd_keys, "key", argc, argv, sbx_key_delete);
}

static int keys_main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } verbs[] = {{"create", keys_create}, {"ls", keys_ls}, {"rm", keys_rm}};
    if (argc < 2)
        return cli_usage_error(&cli_cmd_keys, "missing subcommand (create, ls or rm)", 2);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cli_help(&cli_cmd_keys);
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(argv[1], verbs[i].name) == 0)
            return verbs[i].run(argc - 1, argv + 1);
    char msg[128];
    snprintf(msg, sizeof(msg), "unknown subcommand `%.64s` (create, ls or rm)", argv[1]);
    return cli_usage_error(&cli_cmd_keys, msg, 2);
}

const struct cli_command cli_cmd_keys = {
    .name = "keys",
    .run = keys_main,
    .summary = "manage tenant API keys (admin key only)",
    .usage = "Usage: sbx keys create [--name NAME] [--max-sandboxes N] [--max-memory SIZE] [--json]\n"
             "       sbx keys ls [--json]\n"
             "       sbx keys rm KEY_ID...\n"
             "\n"
             "Tenant API keys (needs the admin key as SBX_API_KEY). A tenant key sees and manages only the\n"
             "sandboxes created with it.\n"
             "\n"
             "  create   makes a key and prints its id and secret. The secret is shown only this once:\n"
             "           sbxd keeps only its hash. --json prints the whole key object (secret in \"key\").\n"
             "           --max-sandboxes N    at most N sandboxes that are not deleted (default unlimited)\n"
             "           --max-memory SIZE    at most SIZE of memory over its creating, running and paused\n"
             "                                sandboxes: 512M, 16G, or MiB (default unlimited)\n"
             "  ls       lists the keys: ID NAME CREATED QUOTAS (never the secrets); --json for objects\n"
             "  rm       revokes keys at once; their sandboxes are kept (exits 1 if any removal failed)\n",
};
