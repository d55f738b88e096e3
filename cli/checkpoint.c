/* sbx checkpoint create|ls|get|restore|rm and sbx fork: /v1/sandboxes/{id}/checkpoints and .../fork. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void print_table(json_t *list)
{
    printf("%-26s %-24s %12s  %s\n", "ID", "NAME", "SIZE", "CREATED");
    size_t i;
    json_t *ck;
    json_array_foreach(list, i, ck)
    {
        printf("%-26s %-24s %12lld  %s\n", cli_json_str(ck, "id"), cli_json_str(ck, "name"),
               (long long)json_integer_value(json_object_get(ck, "size_bytes")),
               cli_json_str(ck, "created_at"));
    }
}

static int checkpoint_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return argc < 2 ? cli_usage_error(&cli_cmd_checkpoint, "expected create, ls, get, restore or rm", 2)
                        : cli_help(&cli_cmd_checkpoint);
    const char *sub = argv[1];
    bool json = argc > 2 && strcmp(argv[argc - 1], "--json") == 0;
    int nargs = argc - 2 - json; /* positional arguments after the subcommand */
    char **args = argv + 2;
    for (int i = 0; i < nargs; i++)
        if (!cli_name_safe(args[i])) {
            fprintf(stderr, "sbx: bad sandbox or checkpoint name `%s`\n", args[i]);
            return 2;
        }
    char path[512], *body = NULL;
    int status;
    if (strcmp(sub, "create") == 0 && (nargs == 1 || nargs == 2)) {
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/checkpoints", args[0]);
        json_t *req = nargs == 2 ? json_pack("{s:s}", "name", args[1]) : json_object();
        if ((status = cli_call("POST", path, req, &body)) == 0) {
            json_t *o = json_loads(body, 0, NULL);
            if (json)
                cli_print_json(body);
            else
                printf("%s %s\n", cli_json_str(o, "id"), cli_json_str(o, "name"));
            json_decref(o);
        }
    } else if ((strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0) && nargs == 1) {
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/checkpoints", args[0]);
        if ((status = cli_call("GET", path, NULL, &body)) == 0) {
            json_t *o = json_loads(body, 0, NULL);
            if (json) {
                char *s = json_dumps(json_object_get(o, "checkpoints"), JSON_INDENT(2));
                printf("%s\n", s ? s : "[]");
                free(s);
            } else
                print_table(json_object_get(o, "checkpoints"));
            json_decref(o);
        }
    } else if (strcmp(sub, "get") == 0 && nargs == 2) {
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/checkpoints/%s", args[0], args[1]);
        if ((status = cli_call("GET", path, NULL, &body)) == 0)
            cli_print_json(body);
    } else if (strcmp(sub, "restore") == 0 && nargs == 2) {
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/checkpoints/%s/restore", args[0], args[1]);
        if ((status = cli_call("POST", path, NULL, &body)) == 0 && json)
            cli_print_json(body);
    } else if (strcmp(sub, "rm") == 0 && nargs >= 2) {
        status = 0;
        for (int i = 1; i < nargs; i++) {
            snprintf(path, sizeof(path), "/v1/sandboxes/%s/checkpoints/%s", args[0], args[i]);
            status |= cli_call("DELETE", path, NULL, NULL);
        }
    } else {
        return cli_usage_error(&cli_cmd_checkpoint, "bad arguments (see --help)", 2);
    }
    free(body);
    return status;
}

const struct cli_command cli_cmd_checkpoint = {
    .name = "checkpoint",
    .run = checkpoint_main,
    .summary = "take, list, restore and remove checkpoints of a sandbox's files",
    .usage =
        "Usage: sbx checkpoint create SANDBOX [NAME] [--json]\n"
        "       sbx checkpoint ls SANDBOX [--json]\n"
        "       sbx checkpoint get SANDBOX NAME\n"
        "       sbx checkpoint restore SANDBOX NAME [--json]\n"
        "       sbx checkpoint rm SANDBOX NAME...\n"
        "\n"
        "A checkpoint is a copy of everything the sandbox wrote (its disk), taken with its filesystem\n"
        "frozen for the length of the copy; processes and memory are not part of it. create prints the\n"
        "new checkpoint's id and name (unnamed ones are named by their id). restore puts the files back\n"
        "as they were and restarts the sandbox (its processes end). Start a new sandbox from one with\n"
        "`sbx create --checkpoint SANDBOX:NAME`. Checkpoints go with their sandbox when it is deleted.\n",
};

static int fork_main(int argc, char **argv)
{
    const char *sid = NULL;
    long count = 1;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return cli_help(&cli_cmd_fork);
        if ((strcmp(argv[i], "--count") == 0 || strcmp(argv[i], "-n") == 0) && i + 1 < argc) {
            char *end;
            count = strtol(argv[++i], &end, 10);
            if (*end || count < 1)
                return cli_usage_error(&cli_cmd_fork, "--count wants a positive number", 2);
        } else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (argv[i][0] != '-' && !sid)
            sid = argv[i];
        else
            return cli_usage_error(&cli_cmd_fork, "usage: sbx fork SANDBOX [--count N] [--json]", 2);
    }
    if (!sid || !cli_name_safe(sid))
        return cli_usage_error(&cli_cmd_fork, "expected a sandbox id or name", 2);
    char path[256], *body = NULL;
    snprintf(path, sizeof(path), "/v1/sandboxes/%s/fork", sid);
    int status = cli_call("POST", path, json_pack("{s:I}", "count", (json_int_t)count), &body);
    if (status == 0) {
        json_t *o = json_loads(body, 0, NULL);
        json_t *list = json_object_get(o, "sandboxes");
        if (json) {
            char *s = json_dumps(list, JSON_INDENT(2));
            printf("%s\n", s ? s : "[]");
            free(s);
        } else {
            size_t i;
            json_t *sb;
            json_array_foreach(list, i, sb) printf("%s\n", cli_json_str(sb, "id"));
        }
        json_decref(o);
    }
    free(body);
    return status;
}

const struct cli_command cli_cmd_fork = {
    .name = "fork",
    .run = fork_main,
    .summary = "start new sandboxes from a copy of a sandbox's files",
    .usage = "Usage: sbx fork SANDBOX [--count N] [--json]\n"
             "\n"
             "Copies the sandbox's files (its filesystem frozen for the length of the copy) into N new\n"
             "sandboxes (default 1, at most 16) with its snapshot, env, metadata, resources and lifecycle,\n"
             "and prints their ids, one per line. Each is independent; processes are not copied (they\n"
             "start with nothing running). All or nothing: if one cannot be made, none is kept.\n",
};
