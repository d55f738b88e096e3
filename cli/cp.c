/* sbx cp: copy one file into or out of a sandbox (streaming, any size, binary-safe). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char *base_name(const char *path)
{
    const char *end = path + strlen(path);
    while (end > path && end[-1] == '/')
        end--;
    const char *p = end;
    while (p > path && p[-1] != '/')
        p--;
    return p;
}

static int upload(struct sbx_client *c, const char *local, const char *sid, const char *remote)
{
    struct sbx_err err = {0};
    int fd = STDIN_FILENO, mode = -1;
    if (strcmp(local, "-") != 0) {
        fd = open(local, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "sbx: open `%s`: %m\n", local);
            return 1;
        }
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
            fprintf(stderr, "sbx: `%s` is a directory; only files can be copied\n", local);
            close(fd);
            return 1;
        }
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            mode = (int)(st.st_mode & 0777);
    }
    /* "ID:/dir/" means "into that directory, under the local file's name". */
    char *target = NULL;
    size_t n = strlen(remote);
    if ((n == 0 || remote[n - 1] == '/') && strcmp(local, "-") != 0) {
        if (asprintf(&target, "%s%s%s", n ? remote : "/root", n ? "" : "/", base_name(local)) < 0)
            target = NULL;
    }
    int r = sbx_file_upload(c, sid, target ? target : remote, fd, mode, NULL, &err);
    if (r < 0)
        cli_print_err(&err, r);
    free(target);
    if (fd != STDIN_FILENO)
        close(fd);
    return r < 0 ? 1 : 0;
}

static int download(struct sbx_client *c, const char *sid, const char *remote, const char *local)
{
    struct sbx_err err = {0};
    if (strcmp(local, "-") == 0) {
        int r = sbx_file_download(c, sid, remote, STDOUT_FILENO, &err);
        if (r < 0)
            cli_print_err(&err, r);
        return r < 0 ? 1 : 0;
    }
    char *target = NULL;
    struct stat st;
    if (stat(local, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (asprintf(&target, "%s/%s", local, base_name(remote)) < 0) {
            fprintf(stderr, "sbx: out of memory\n");
            return 1;
        }
        local = target;
    }
    /* Download next to the target and rename into place: a failure never leaves a partial file. */
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.sbx-XXXXXX", local) < 0) {
        free(target);
        fprintf(stderr, "sbx: out of memory\n");
        return 1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "sbx: create `%s`: %m\n", tmp);
        free(tmp);
        free(target);
        return 1;
    }
    int r = sbx_file_download(c, sid, remote, fd, &err);
    if (r < 0)
        cli_print_err(&err, r);
    if (r >= 0) {
        mode_t um = umask(0);
        umask(um);
        fchmod(fd, 0666 & ~um);
    }
    if (close(fd) < 0 && r >= 0) {
        fprintf(stderr, "sbx: write `%s`: %m\n", local);
        r = -EIO;
    }
    if (r >= 0 && rename(tmp, local) < 0) {
        fprintf(stderr, "sbx: rename to `%s`: %m\n", local);
        r = -EIO;
    }
    if (r < 0)
        unlink(tmp);
    free(tmp);
    free(target);
    return r < 0 ? 1 : 0;
}

static int cp_main(int argc, char **argv)
{
    int first;
    int r = cli_simple_args(&cli_cmd_cp, argc, argv, NULL, &first);
    if (r != 0)
        return r > 0 ? 0 : 2;
    if (argc - first != 2)
        return cli_usage_error(&cli_cmd_cp, "expected SRC and DST", 2);
    const char *src = argv[first], *dst = argv[first + 1], *src_path, *dst_path;
    char *src_id = NULL, *dst_id = NULL;
    bool src_remote = cli_split_remote(src, &src_id, &src_path);
    bool dst_remote = cli_split_remote(dst, &dst_id, &dst_path);
    int status = 2;
    if ((src_remote && !src_id) || (dst_remote && !dst_id))
        fprintf(stderr, "sbx: out of memory\n");
    else if (src_remote == dst_remote)
        status = cli_usage_error(&cli_cmd_cp, "exactly one of SRC and DST must be ID:PATH", 2);
    else {
        struct sbx_client *c = NULL;
        status = 1;
        if (cli_client(&c) >= 0)
            status = src_remote ? download(c, src_id, src_path, dst) : upload(c, src, dst_id, dst_path);
        sbx_client_free(c);
    }
    free(src_id);
    free(dst_id);
    return status;
}

const struct cli_command cli_cmd_cp = {
    .name = "cp",
    .run = cp_main,
    .summary = "copy a file into or out of a sandbox",
    .usage =
        "Usage: sbx cp LOCAL ID:/PATH\n"
        "       sbx cp ID:/PATH LOCAL\n"
        "\n"
        "Copies one file (any size, streamed). LOCAL `-` is stdin or stdout. A remote path ending in `/` or\n"
        "a local directory receives the file under its own name. Uploads keep the local permission bits;\n"
        "missing remote parent directories are created.\n",
};
