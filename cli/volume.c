/* sbx volume create|ls|get|rm: named persistent volumes (/v1/volumes). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int vol_create(int argc, char **argv)
{
    const char *name = NULL;
    int64_t size_mb = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--size") == 0 || strcmp(argv[i], "-s") == 0) && i + 1 < argc) {
            if (cli_parse_memory_mb(argv[++i], &size_mb) < 0)
                return cli_usage_error(&cli_cmd_volume, "bad --size (examples: 512M, 10G, 1024)", 2);
        } else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else
            return cli_usage_error(&cli_cmd_volume, "usage: sbx volume create NAME [--size SIZE]", 2);
    }
    if (!name)
        return cli_usage_error(&cli_cmd_volume, "usage: sbx volume create NAME [--size SIZE]", 2);
    json_t *req = json_pack("{s:s}", "name", name);
    if (size_mb)
        json_object_set_new(req, "size_mb", json_integer(size_mb));
    char *body = NULL;
    int status = cli_call("POST", "/v1/volumes", req, &body);
    if (status == 0) {
        json_t *o = json_loads(body, 0, NULL);
        if (json)
            cli_print_json(body);
        else
            printf("%s\n", cli_json_str(o, "id"));
        json_decref(o);
    }
    free(body);
    return status;
}

static int vol_ls(int argc, char **argv)
{
    bool json = argc > 1 && strcmp(argv[1], "--json") == 0;
    char *body = NULL;
    if (cli_call("GET", "/v1/volumes", NULL, &body))
        return 1;
    json_t *o = json_loads(body, 0, NULL);
    json_t *list = json_object_get(o, "volumes");
    if (json) {
        char *s = json_dumps(list, JSON_INDENT(2));
        printf("%s\n", s ? s : "[]");
        free(s);
    } else {
        printf("%-26s %-24s %10s %14s  %s\n", "ID", "NAME", "SIZE_MB", "USED_BYTES", "CREATED");
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v)
        {
            printf("%-26s %-24s %10lld %14lld  %s\n", cli_json_str(v, "id"), cli_json_str(v, "name"),
                   (long long)json_integer_value(json_object_get(v, "size_mb")),
                   (long long)json_integer_value(json_object_get(v, "used_bytes")),
                   cli_json_str(v, "created_at"));
        }
    }
    json_decref(o);
    free(body);
    return 0;
}

static int vol_get_or_rm(int argc, char **argv, bool rm)
{
    if (argc < 2)
        return cli_usage_error(&cli_cmd_volume, "expected a volume name or id", 2);
    int status = 0;
    for (int i = 1; i < argc; i++) {
        if (!cli_name_safe(argv[i])) {
            fprintf(stderr, "sbx: bad volume name `%s`\n", argv[i]);
            status = 1;
            continue;
        }
        char path[160], *body = NULL;
        snprintf(path, sizeof(path), "/v1/volumes/%s", argv[i]);
        if (cli_call(rm ? "DELETE" : "GET", path, NULL, &body))
            status = 1;
        else if (!rm)
            cli_print_json(body);
        free(body);
    }
    return status;
}

static int volume_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return argc < 2 ? cli_usage_error(&cli_cmd_volume, "expected create, ls, get or rm", 2)
                        : cli_help(&cli_cmd_volume);
    const char *sub = argv[1];
    if (strcmp(sub, "create") == 0)
        return vol_create(argc - 1, argv + 1);
    if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
        return vol_ls(argc - 1, argv + 1);
    if (strcmp(sub, "get") == 0)
        return vol_get_or_rm(argc - 1, argv + 1, false);
    if (strcmp(sub, "rm") == 0)
        return vol_get_or_rm(argc - 1, argv + 1, true);
    return cli_usage_error(&cli_cmd_volume, "expected create, ls, get or rm", 2);
}

const struct cli_command cli_cmd_volume = {
    .name = "volume",
    .run = volume_main,
    .summary = "create, list and remove named volumes (persistent disks shared by sandboxes)",
    .usage =
        "Usage: sbx volume create NAME [--size SIZE] [--json]\n"
        "       sbx volume ls [--json]\n"
        "       sbx volume get NAME...\n"
        "       sbx volume rm NAME...\n"
        "\n"
        "A volume is a disk of its own (SIZE: 512M, 10G or MiB as a plain number; default 1G) that\n"
        "outlives sandboxes. Mount it with `sbx create --volume NAME:/path[:ro]`; several sandboxes can\n"
        "mount it at once and see the same files with the same owners. rm fails while a sandbox\n"
        "(running or stopped) mounts it. create prints the new volume's id.\n",
};
