/* sbx CLI: helpers shared by the subcommands. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_print_err(const struct sbx_err *err, int r)
{
    if (err && err->code[0])
        fprintf(stderr, "sbx: %s (%s)\n", err->message, err->code);
    else
        fprintf(stderr, "sbx: %s\n", strerror(r < 0 ? -r : r));
}

int cli_usage_error(const struct cli_command *cmd, const char *msg, int status)
{
    fprintf(stderr, "sbx %s: %s\nTry `sbx %s --help`.\n", cmd->name, msg, cmd->name);
    return status;
}

int cli_help(const struct cli_command *cmd)
{
    fputs(cmd->usage, stdout);
    return 0;
}

int cli_client(struct sbx_client **ret)
{
    int r = sbx_client_new(NULL, NULL, ret);
    if (r == -EINVAL)
        fprintf(stderr, "sbx: SBX_URL must start with http:// or https:// (invalid_argument)\n");
    else if (r < 0)
        fprintf(stderr, "sbx: %s\n", strerror(-r));
    return r;
}

void cli_print_json_array(const void *list, size_t n, size_t stride, size_t json_offset)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        const char *text = *(char *const *)((const char *)list + i * stride + json_offset);
        json_array_append_new(arr, text ? json_loads(text, 0, NULL) : json_null());
    }
    char *out = arr ? json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    puts(out ? out : "[]");
    free(out);
    json_decref(arr);
}

void cli_print_json(const char *text)
{
    json_t *doc = json_loads(text, 0, NULL);
    char *pretty = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    puts(pretty ? pretty : text);
    free(pretty);
    json_decref(doc);
}

int cli_simple_args(const struct cli_command *cmd, int argc, char **argv, bool *ret_json, int *ret_first)
{
    static const struct cli_option opts[] = {
        {"help", 'h', false, OPT_HELP}, {"json", 0, false, OPT_JSON}, {NULL, 0, false, 0}};
    char errbuf[256];
    int i = 1, first = -1;
    /* Options may come before or between positional arguments (until "--"). */
    char **pos = calloc((size_t)argc + 1, sizeof(char *));
    if (!pos)
        return -ENOMEM;
    int n = 0;
    for (;;) {
        int id;
        const char *v;
        int r = cli_next_arg(opts, argc, argv, &i, &id, &v, errbuf, sizeof(errbuf));
        if (r < 0) {
            free(pos);
            return cli_usage_error(cmd, errbuf, -EINVAL);
        }
        if (r == CLI_ARG_END)
            break;
        if (r == CLI_ARG_DASHDASH) {
            while (i < argc)
                pos[n++] = argv[i++];
            break;
        }
        if (r == CLI_ARG_POSITIONAL) {
            pos[n++] = argv[i++];
            continue;
        }
        if (id == OPT_HELP) {
            free(pos);
            cli_help(cmd);
            return 1;
        }
        if (id != OPT_JSON || !ret_json) {
            free(pos);
            return cli_usage_error(cmd, "--json is not valid here", -EINVAL);
        }
        *ret_json = true;
    }
    /* Move the positional arguments to the end of argv, in order, so callers index them simply. */
    first = argc - n;
    memcpy(&argv[first], pos, (size_t)n * sizeof(char *));
    free(pos);
    *ret_first = first;
    return 0;
}

int cli_for_each_id(const struct cli_command *cmd, const char *what, int argc, char **argv,
                    int (*action)(struct sbx_client *, const char *, struct sbx_err *))
{
    int first;
    int r = cli_simple_args(cmd, argc, argv, NULL, &first);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (first == argc) {
        char msg[64];
        snprintf(msg, sizeof(msg), "missing %s id", what);
        return cli_usage_error(cmd, msg, 2);
    }
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

const char *cli_json_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : "-";
}

/* Sandbox ids and names and checkpoint names are [A-Za-z0-9_.-]: anything else would change the path. */
bool cli_name_safe(const char *s)
{
    if (!*s || strlen(s) > 100)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '.' || *p == '-'))
            return false;
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* One request; prints the error and returns 1 on failure. *ret_body (may be NULL) is the answer. */
int cli_call(const char *method, const char *path, json_t *body, char **ret_body)
{
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0) {
        json_decref(body);
        return 1;
    }
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct sbx_err err = {0};
    int r = sbx_request(c, method, path, text, ret_body, &err);
    free(text);
    sbx_client_free(c);
    if (r < 0) {
        cli_print_err(&err, r);
        return 1;
    }
    return 0;
}
