/* sbx create: POST /v1/sandboxes, prints the new sandbox's id. */
#include <errno.h>
#include <stdio.h>

#include "cli.h"

static int create_main(int argc, char **argv)
{
    struct cli_args a;
    char errbuf[256];
    int r = cli_parse_args(argc, argv, ARGS_CREATE, &a, errbuf, sizeof(errbuf));
    if (r < 0)
        return cli_usage_error(&cli_cmd_create, r == -EINVAL ? errbuf : "out of memory", 2);
    if (a.help) {
        cli_args_done(&a);
        return cli_help(&cli_cmd_create);
    }
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0) {
        cli_args_done(&a);
        return 1;
    }
    struct sbx_create_opts o = {
        .snapshot = a.snapshot,
        .checkpoint = a.checkpoint,
        .volumes = a.volumes,
        .name = a.name,
        .cpus = a.cpus,
        .memory_mb = a.memory_mb,
        .pids = a.pids,
        .env = a.env,
        .metadata = a.metadata,
        .idle_ttl_s = cli_lib_seconds(a.idle_ttl_s),
        .delete_after_stop_s = cli_lib_seconds(a.delete_after_stop_s),
        .timeout_s = cli_lib_seconds(a.lifetime_s),
        .network = a.network,
        .egress_default = a.egress_default,
        .egress_allow = a.allow,
        .egress_deny = a.deny,
    };
    struct sbx_sandbox s = {0};
    struct sbx_err err = {0};
    r = sbx_sandbox_create(c, &o, &s, &err);
    if (r < 0)
        cli_print_err(&err, r);
    else
        printf("%s\n", s.id);
    sbx_sandbox_done(&s);
    sbx_client_free(c);
    cli_args_done(&a);
    return r < 0 ? 1 : 0;
}

const struct cli_command cli_cmd_create = {
    .name = "create",
    .run = create_main,
    .summary = "create a sandbox and print its id",
    .usage = "Usage: sbx create [OPTIONS]\n"
             "\n"
             "Creates a sandbox and prints its id.\n"
             "\n"
             "Options:\n"
             "  --snapshot NAME     root filesystem snapshot (default: host)\n"
             "  --checkpoint REF    start from a checkpoint's files: SANDBOX:NAME or its ckp_ id (its\n"
             "                      snapshot and disk size come with it)\n"
             "  -v, --volume VOL:/PATH[:ro]\n"
             "                      mount a volume (`sbx volume create`) at PATH (repeatable)\n"
             "  --name NAME         unique name ([A-Za-z0-9_.-], up to 64)\n"
             "  --network MODE      none (default: loopback only) or egress (outbound IPv4 through the\n"
             "                      policy below; deny by default)\n"
             "  --allow DEST        egress: allow an IPv4 CIDR, a domain or *.domain (repeatable)\n"
             "  --deny DEST         egress: deny one, before any allow (repeatable)\n"
             "  --egress-default allow|deny\n"
             "                      egress: what is neither allowed nor denied (default deny)\n"
             "  -m, --memory SIZE   memory limit: 512M, 1G, or MiB as a plain number (default 512M)\n"
             "  --cpus N            CPU limit, fractions allowed (default 1)\n"
             "  --pids N            process limit (default 512)\n"
             "  -e, --env K=V       environment for every command (repeatable)\n"
             "  --metadata K=V      free-form metadata (repeatable)\n"
             "  --idle-ttl DUR      stop it after DUR without activity (default 10m; 0: never)\n"
             "  --lifetime DUR      delete it DUR after creation or the last `sbx renew` (0: never, the\n"
             "                      default)\n"
             "  --delete-after-stop DUR\n"
             "                      delete it DUR after it stopped (0: never, the default)\n"
             "\n"
             "DUR is whole seconds or a number with s, m or h (90, 10m, 1.5h).\n",
};
