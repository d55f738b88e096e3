/* sbx update: PATCH /v1/sandboxes/{id} (lifecycle settings, metadata); sbx renew: POST …/renew. Silent on
 * success like the other verbs on one sandbox (pause, stop, ...); --json prints the sandbox afterwards. */
#include <errno.h>

#include "cli.h"

/* Parses the arguments with `flags`, then runs update or renew. Returns the exit status. */
static int change_main(const struct cli_command *cmd, unsigned flags, int argc, char **argv)
{
    struct cli_args a;
    char errbuf[256];
    int r = cli_parse_args(argc, argv, flags | ARGS_SANDBOX, &a, errbuf, sizeof(errbuf));
    if (r < 0)
        return cli_usage_error(cmd, r == -EINVAL ? errbuf : "out of memory", 2);
    if (a.help) {
        cli_args_done(&a);
        return cli_help(cmd);
    }
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0) {
        cli_args_done(&a);
        return 1;
    }
    struct sbx_sandbox s = {0};
    struct sbx_err err = {0};
    if (flags & ARGS_UPDATE) {
        struct sbx_update_opts o = {
            .idle_ttl_s = cli_lib_seconds(a.idle_ttl_s),
            .delete_after_stop_s = cli_lib_seconds(a.delete_after_stop_s),
            .timeout_s = cli_lib_seconds(a.lifetime_s),
            .metadata = a.metadata[0] ? a.metadata : NULL,
        };
        r = sbx_sandbox_update(c, a.sandbox, &o, a.json ? &s : NULL, &err);
    } else {
        r = sbx_sandbox_renew(c, a.sandbox, a.lifetime_s > 0 ? a.lifetime_s : 0, a.json ? &s : NULL, &err);
    }
    if (r < 0)
        cli_print_err(&err, r);
    else if (a.json)
        cli_print_json(s.json);
    sbx_sandbox_done(&s);
    sbx_client_free(c);
    cli_args_done(&a);
    return r < 0 ? 1 : 0;
}

static int update_main(int argc, char **argv)
{
    return change_main(&cli_cmd_update, ARGS_UPDATE, argc, argv);
}

static int renew_main(int argc, char **argv)
{
    return change_main(&cli_cmd_renew, ARGS_RENEW, argc, argv);
}

const struct cli_command cli_cmd_update = {
    .name = "update",
    .run = update_main,
    .summary = "change a sandbox's lifecycle settings or metadata",
    .usage = "Usage: sbx update ID [--idle-ttl DUR] [--lifetime DUR] [--delete-after-stop DUR]\n"
             "                  [--metadata K=V]... [--json]\n"
             "\n"
             "Changes the settings of a sandbox (by id or name) while it exists; give at least one.\n"
             "\n"
             "Options:\n"
             "  --idle-ttl DUR      stop it after DUR without activity (0: never)\n"
             "  --lifetime DUR      a lifetime other than the current one: delete it DUR from now (0: no\n"
             "                      lifetime); to restart the current one, use `sbx renew`\n"
             "  --delete-after-stop DUR\n"
             "                      delete it DUR after it stopped (0: never)\n"
             "  --metadata K=V      replaces all of its metadata with these entries (repeatable)\n"
             "  --json              print the updated sandbox as JSON (default: print nothing)\n"
             "\n"
             "DUR is whole seconds or a number with s, m or h (90, 10m, 1.5h).\n",
};

const struct cli_command cli_cmd_renew = {
    .name = "renew",
    .run = renew_main,
    .summary = "push back a sandbox's end of life (expires_at)",
    .usage = "Usage: sbx renew ID [--lifetime DUR] [--json]\n"
             "\n"
             "Sets the sandbox's expires_at to now + its lifetime (timeout_seconds), so it is not deleted\n"
             "for another lifetime. A sandbox created without --lifetime needs one here.\n"
             "\n"
             "Options:\n"
             "  --lifetime DUR      the new lifetime, kept for later renewals (> 0)\n"
             "  --json              print the renewed sandbox as JSON (default: print nothing)\n"
             "\n"
             "DUR is whole seconds or a number with s, m or h (90, 10m, 1.5h).\n",
};
