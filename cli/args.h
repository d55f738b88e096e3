/* sbx CLI argument parsing, free of I/O and of libsbx so the unit tests can include args.c directly. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Option ids: the short letter when there is one, else >= 256. */
enum {
    OPT_ENV = 'e',
    OPT_HELP = 'h',
    OPT_STDIN = 'i',
    OPT_MEMORY = 'm',
    OPT_TIMEOUT = 't',
    OPT_CWD = 'w',
    OPT_SNAPSHOT = 256,
    OPT_CPUS,
    OPT_PIDS,
    OPT_NAME,
    OPT_METADATA,
    OPT_JSON,
    OPT_IDLE_TTL,
    OPT_LIFETIME,
    OPT_DELETE_AFTER_STOP,
    OPT_STATE,
    OPT_MAX_SANDBOXES,
    OPT_MAX_MEMORY,
    OPT_TTY,
    OPT_CHECKPOINT,
    OPT_VOLUME,
    OPT_USER,
    OPT_NETWORK,
    OPT_ALLOW,
    OPT_DENY,
    OPT_EGRESS_DEFAULT,
};

struct cli_option {
    const char *long_name; /* without "--" */
    char short_name;       /* 0: none */
    bool has_arg;
    int id;
};

enum {
    CLI_ARG_OPTION = 0,     /* *ret_id (and *ret_value if the option has one) are set */
    CLI_ARG_POSITIONAL = 1, /* argv[*i] is not an option; *i is not advanced */
    CLI_ARG_DASHDASH = 2,   /* "--" was consumed; everything after it is positional */
    CLI_ARG_END = 3,        /* no arguments left */
};

/* Looks at argv[*i] and advances *i past an option (and its value, given as "--opt V", "--opt=V" or
 * "-o V"). "-" alone is positional. Returns a CLI_ARG_* value or -EINVAL with a message in errbuf. */
int cli_next_arg(const struct cli_option *opts, int argc, char **argv, int *i, int *ret_id,
                 const char **ret_value, char *errbuf, size_t errlen);

/* "512M", "1G", "1.5g", "2048K", "1024" (plain numbers are MiB), "536870912B" → MiB, rounded up.
 * Returns 0 or -EINVAL. */
int cli_parse_memory_mb(const char *s, int64_t *ret);
/* Seconds with an optional s/m/h suffix ("30", "1.5", "2m"). Returns 0 or -EINVAL (also for <= 0). */
int cli_parse_duration(const char *s, double *ret);
/* A positive decimal number (cpus). */
int cli_parse_positive_double(const char *s, double *ret);
/* A positive integer (pids). */
int cli_parse_positive_int(const char *s, int64_t *ret);
/* A sandbox lifecycle setting: whole seconds with an optional s/m/h suffix ("600", "10m", "1.5h"); 0 is
 * allowed (never). The result must be a whole number of seconds. Returns 0 or -EINVAL. */
int cli_parse_lifetime(const char *s, int64_t *ret);

/* What a subcommand accepts (cli_parse_args flags). */
#define ARGS_CREATE                                                                                          \
    1u                  /* --snapshot --checkpoint --memory --cpus --pids --name --metadata (and --env for   \
                         * the sandbox),                                                                     \
                         * --idle-ttl --lifetime --delete-after-stop, --network --allow --deny               \
                         * --egress-default */
#define ARGS_EXEC 2u    /* --cwd --timeout -i/--stdin (and --env for the command); a command follows */
#define ARGS_SANDBOX 4u /* the first positional argument is the sandbox id */
#define ARGS_UPDATE                                                                                          \
    8u                 /* --idle-ttl --lifetime --delete-after-stop --metadata --json; at least one change   \
                        */
#define ARGS_RENEW 16u /* --lifetime (> 0) --json */

struct cli_args {
    /* Sandbox creation. */
    const char *snapshot;
    const char *checkpoint;
    const char *name;
    double cpus;
    int64_t memory_mb;
    int64_t pids;
    const char **metadata; /* NULL-terminated, entries borrowed from argv */
    const char **volumes;  /* NULL-terminated "VOLUME:/path[:ro]", entries borrowed from argv */
    /* Network: --network (NULL: none, or egress when --allow/--deny/--egress-default are given). */
    const char *network;
    const char *egress_default;
    const char **allow, **deny; /* NULL-terminated, entries borrowed from argv */
    /* Lifecycle in seconds: -1 when not given, 0 for "never" (--lifetime is the sandbox's timeout). */
    int64_t idle_ttl_s;
    int64_t lifetime_s;
    int64_t delete_after_stop_s;
    /* Both: the sandbox's env with ARGS_CREATE alone, else the command's. */
    const char **env; /* NULL-terminated, entries borrowed from argv */
    /* Command execution. */
    const char *sandbox;
    const char *cwd;
    const char *user; /* --user (exec, run) */
    double timeout;
    bool interactive;
    bool tty;   /* --tty (exec): on a pseudo-terminal, our terminal in raw mode */
    char **cmd; /* NULL-terminated tail of argv (the command), NULL if none */
    bool json;  /* --json (update, renew) */
    bool help;
};

/* Parses argv[1..argc-1] (argv[0] is the subcommand name; argv[argc] must be NULL) for create, exec, run,
 * update or renew.
 * The command starts after "--" or at the first positional argument that is not the sandbox id, so
 * options after the command belong to the command. Returns 0, -EINVAL with a message in errbuf, or
 * -ENOMEM. Release with cli_args_done(). With --help, returns 0 with help set and nothing else checked. */
int cli_parse_args(int argc, char **argv, unsigned flags, struct cli_args *ret, char *errbuf, size_t errlen);
void cli_args_done(struct cli_args *a);

/* Splits "ID:/path" into the sandbox id and the remote path. Returns true for a remote spec: a ':' that is
 * preceded by a non-empty part without '/'. *ret_id is a new string (caller frees) or NULL on OOM. */
bool cli_split_remote(const char *spec, char **ret_id, const char **ret_path);
