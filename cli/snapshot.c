/* sbx snapshot import|pull|capture|ls|get|rm: snapshots from image tarballs, registries and sandboxes
 * (/v1/snapshots, /v1/sandboxes/{id}/capture). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Polls the snapshot until its import ends; prints progress on stderr. Returns 0 when ready. */
static int wait_ready(struct sbx_client *c, const char *id)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/snapshots/%s", id);
    for (int i = 0;; i++) {
        char *body = NULL;
        struct sbx_err err = {0};
        int r = sbx_request(c, "GET", path, NULL, &body, &err);
        if (r < 0) {
            cli_print_err(&err, r);
            return 1;
        }
        json_t *o = json_loads(body, 0, NULL);
        free(body);
        const char *status = cli_json_str(o, "status");
        if (strcmp(status, "building") != 0) {
            int ok = strcmp(status, "ready") == 0;
            if (ok)
                printf("%s %s ready: %zu layers, %lld bytes\n", cli_json_str(o, "id"),
                       cli_json_str(o, "name"), json_array_size(json_object_get(o, "layers")),
                       (long long)json_integer_value(json_object_get(o, "size_bytes")));
            else
                fprintf(stderr, "sbx: snapshot %s failed: %s\n", cli_json_str(o, "name"),
                        cli_json_str(o, "reason"));
            json_decref(o);
            return ok ? 0 : 1;
        }
        json_t *pg = json_object_get(o, "progress");
        if (pg && i % 5 == 0) {
            /* A pull: bytes downloaded so far. */
            double done = (double)json_integer_value(json_object_get(pg, "bytes_done")) / (1 << 20);
            double total = (double)json_integer_value(json_object_get(pg, "bytes_total")) / (1 << 20);
            fprintf(stderr, "pulling %s: %.1f / %.1f MiB\n", cli_json_str(o, "name"), done, total);
        } else if (!pg && isatty(2) && i % 10 == 0) {
            fprintf(stderr, "%s...\n",
                    strcmp(cli_json_str(o, "source"), "capture") == 0 ? "capturing" : "importing");
        }
        json_decref(o);
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static int snap_import(int argc, char **argv)
{
    const char *file = NULL, *name = NULL;
    bool no_wait = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strncmp(argv[i], "--name=", 7) == 0)
            name = argv[i] + 7;
        else if (strcmp(argv[i], "--no-wait") == 0)
            no_wait = true;
        else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else
            return cli_usage_error(&cli_cmd_snapshot, "usage: sbx snapshot import FILE --name NAME", 2);
    }
    if (!file || !name)
        return cli_usage_error(&cli_cmd_snapshot, "usage: sbx snapshot import FILE --name NAME", 2);
    int fd = strcmp(file, "-") == 0 ? 0 : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "sbx: open `%s`: %s\n", file, strerror(errno));
        return 1;
    }
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    char *body = NULL;
    struct sbx_err err = {0};
    int r = sbx_snapshot_import(c, name, fd, &body, &err);
    if (fd > 0)
        close(fd);
    int status = 0;
    if (r < 0) {
        cli_print_err(&err, r);
        status = 1;
    } else {
        json_t *o = json_loads(body, 0, NULL);
        if (no_wait)
            printf("%s\n", cli_json_str(o, "id"));
        else
            status = wait_ready(c, cli_json_str(o, "id"));
        json_decref(o);
    }
    free(body);
    sbx_client_free(c);
    return status;
}

/* Sends a JSON body that starts a snapshot, then waits for it (or prints its id with no_wait). */
static int start_and_wait(const char *path, json_t *req, bool no_wait)
{
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    char *text = json_dumps(req, JSON_COMPACT);
    char *body = NULL;
    struct sbx_err err = {0};
    int r = sbx_request(c, "POST", path, text, &body, &err);
    if (text) {
        explicit_bzero(text, strlen(text)); /* may hold a password */
        free(text);
    }
    int status = 0;
    if (r < 0) {
        cli_print_err(&err, r);
        status = 1;
    } else {
        json_t *o = json_loads(body, 0, NULL);
        if (no_wait)
            printf("%s\n", cli_json_str(o, "id"));
        else
            status = wait_ready(c, cli_json_str(o, "id"));
        json_decref(o);
    }
    free(body);
    sbx_client_free(c);
    return status;
}

#define PULL_USAGE                                                                                           \
    "usage: sbx snapshot pull REF --name NAME [--insecure] [--username USER --password-stdin | "             \
    "--token-stdin] [--no-wait]"

/* One line of stdin, without its newline (a secret: not echoed, not in argv). */
static char *read_secret(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    return line;
}

static int snap_pull(int argc, char **argv)
{
    const char *ref = NULL, *name = NULL, *user = NULL;
    bool no_wait = false, insecure = false, pw_stdin = false, token_stdin = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strncmp(argv[i], "--name=", 7) == 0)
            name = argv[i] + 7;
        else if (strcmp(argv[i], "--username") == 0 && i + 1 < argc)
            user = argv[++i];
        else if (strcmp(argv[i], "--password-stdin") == 0)
            pw_stdin = true;
        else if (strcmp(argv[i], "--token-stdin") == 0)
            token_stdin = true;
        else if (strcmp(argv[i], "--insecure") == 0)
            insecure = true;
        else if (strcmp(argv[i], "--no-wait") == 0)
            no_wait = true;
        else if (argv[i][0] != '-' && !ref)
            ref = argv[i];
        else
            return cli_usage_error(&cli_cmd_snapshot, PULL_USAGE, 2);
    }
    if (!ref || !name || (pw_stdin && !user) || (user && !pw_stdin) || (token_stdin && user))
        return cli_usage_error(&cli_cmd_snapshot, PULL_USAGE, 2);
    json_t *req = json_pack("{s:s, s:s, s:b}", "name", name, "image", ref, "insecure", insecure);
    if (pw_stdin || token_stdin) {
        char *secret = read_secret();
        if (!secret) {
            fprintf(stderr, "sbx: no %s on stdin\n", pw_stdin ? "password" : "token");
            json_decref(req);
            return 1;
        }
        json_object_set_new(req, "auth",
                            pw_stdin ? json_pack("{s:s, s:s}", "username", user, "password", secret)
                                     : json_pack("{s:s}", "token", secret));
        explicit_bzero(secret, strlen(secret));
        free(secret);
    }
    int status = start_and_wait("/v1/snapshots", req, no_wait);
    json_decref(req);
    return status;
}

static int snap_capture(int argc, char **argv)
{
    const char *id = NULL, *name = NULL;
    bool no_wait = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strncmp(argv[i], "--name=", 7) == 0)
            name = argv[i] + 7;
        else if (strcmp(argv[i], "--no-wait") == 0)
            no_wait = true;
        else if (argv[i][0] != '-' && !id)
            id = argv[i];
        else
            return cli_usage_error(&cli_cmd_snapshot, "usage: sbx snapshot capture SANDBOX --name NAME", 2);
    }
    if (!id || !name || strchr(id, '/') || strchr(id, '?') || strlen(id) > 100)
        return cli_usage_error(&cli_cmd_snapshot, "usage: sbx snapshot capture SANDBOX --name NAME", 2);
    char path[160];
    snprintf(path, sizeof(path), "/v1/sandboxes/%s/capture", id);
    json_t *req = json_pack("{s:s}", "name", name);
    int status = start_and_wait(path, req, no_wait);
    json_decref(req);
    return status;
}

static int snap_ls(int argc, char **argv)
{
    bool json = argc > 1 && strcmp(argv[1], "--json") == 0;
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    char *body = NULL;
    struct sbx_err err = {0};
    int r = sbx_request(c, "GET", "/v1/snapshots", NULL, &body, &err);
    sbx_client_free(c);
    if (r < 0) {
        cli_print_err(&err, r);
        return 1;
    }
    json_t *o = json_loads(body, 0, NULL);
    if (json) {
        char *s = json_dumps(json_object_get(o, "snapshots"), JSON_INDENT(2));
        printf("%s\n", s ? s : "[]");
        free(s);
    } else {
        printf("%-26s %-24s %-9s %6s %12s  %s\n", "ID", "NAME", "STATUS", "LAYERS", "SIZE", "REASON");
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(o, "snapshots"), i, s)
        {
            printf("%-26s %-24s %-9s %6zu %12lld  %s\n", cli_json_str(s, "id"), cli_json_str(s, "name"),
                   cli_json_str(s, "status"), json_array_size(json_object_get(s, "layers")),
                   (long long)json_integer_value(json_object_get(s, "size_bytes")),
                   cli_json_str(s, "reason"));
        }
    }
    json_decref(o);
    free(body);
    return 0;
}

static int snap_get_or_rm(int argc, char **argv, bool rm)
{
    if (argc < 2)
        return cli_usage_error(&cli_cmd_snapshot, "expected a snapshot id or name", 2);
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        return 1;
    int status = 0;
    for (int i = 1; i < argc; i++) {
        char path[256];
        if (strchr(argv[i], '/') || strchr(argv[i], '?') || strlen(argv[i]) > 100) {
            fprintf(stderr, "sbx: bad snapshot name `%s`\n", argv[i]);
            status = 1;
            continue;
        }
        snprintf(path, sizeof(path), "/v1/snapshots/%s", argv[i]);
        char *body = NULL;
        struct sbx_err err = {0};
        int r = sbx_request(c, rm ? "DELETE" : "GET", path, NULL, &body, &err);
        if (r < 0) {
            cli_print_err(&err, r);
            status = 1;
        } else if (!rm) {
            cli_print_json(body);
        }
        free(body);
    }
    sbx_client_free(c);
    return status;
}

static int snapshot_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return argc < 2
                   ? cli_usage_error(&cli_cmd_snapshot, "expected import, pull, capture, ls, get or rm", 2)
                   : cli_help(&cli_cmd_snapshot);
    const char *sub = argv[1];
    if (strcmp(sub, "import") == 0)
        return snap_import(argc - 1, argv + 1);
    if (strcmp(sub, "pull") == 0)
        return snap_pull(argc - 1, argv + 1);
    if (strcmp(sub, "capture") == 0)
        return snap_capture(argc - 1, argv + 1);
    if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
        return snap_ls(argc - 1, argv + 1);
    if (strcmp(sub, "get") == 0)
        return snap_get_or_rm(argc - 1, argv + 1, false);
    if (strcmp(sub, "rm") == 0)
        return snap_get_or_rm(argc - 1, argv + 1, true);
    return cli_usage_error(&cli_cmd_snapshot, "expected import, pull, capture, ls, get or rm", 2);
}

const struct cli_command cli_cmd_snapshot = {
    .name = "snapshot",
    .run = snapshot_main,
    .summary = "import, pull, capture, list and remove snapshots (root filesystems)",
    .usage =
        "Usage: sbx snapshot import FILE --name NAME [--no-wait]\n"
        "       sbx snapshot pull REF --name NAME [--insecure] [--username USER --password-stdin | "
        "--token-stdin]\n"
        "                         [--no-wait]\n"
        "       sbx snapshot capture SANDBOX --name NAME [--no-wait]\n"
        "       sbx snapshot ls [--json]\n"
        "       sbx snapshot get ID|NAME...\n"
        "       sbx snapshot rm ID|NAME...\n"
        "\n"
        "import uploads an image tarball (`docker save` output or an OCI image layout as a tar, `-` for\n"
        "stdin) and waits until sbxd has unpacked it (--no-wait prints the new id at once). Sandboxes\n"
        "are created from it with `sbx create --snapshot NAME`. rm fails while a sandbox uses it.\n"
        "\n"
        "pull fetches REF (host[:port]/name[:tag] or host[:port]/name@sha256:...) from a registry over "
        "HTTPS\n"
        "(--insecure: plain HTTP), with the password or token read from stdin, showing the download's\n"
        "progress. capture makes a snapshot of a sandbox's files: its changes become one new layer over\n"
        "its snapshot (the sandbox's disk is frozen meanwhile; it keeps running). Both wait until the\n"
        "snapshot is ready and exit non-zero with the reason when it failed.\n",
};
