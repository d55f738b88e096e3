/* sbx CLI: shared declarations. One subcommand per file, each exporting a struct cli_command that
 * main.c dispatches from its table (crun src/crun.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "args.h"
#include "sbx.h"

/* Exit status for sbx's own failures while running a command (exec/run), as docker and timeout(1) do. */
#define EXIT_SBX 125
#define EXIT_TIMEOUT 124

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name; returns the exit status */
    const char *summary;
    const char *usage; /* full help text */
};

extern const struct cli_command cli_cmd_create, cli_cmd_ls, cli_cmd_exec, cli_cmd_run, cli_cmd_cp, cli_cmd_rm,
    cli_cmd_get, cli_cmd_info, cli_cmd_pause, cli_cmd_resume, cli_cmd_stop, cli_cmd_start, cli_cmd_update,
    cli_cmd_renew, cli_cmd_keys, cli_cmd_snapshot, cli_cmd_shell, cli_cmd_url, cli_cmd_tunnel,
    cli_cmd_checkpoint, cli_cmd_fork, cli_cmd_volume, cli_cmd_agent, cli_cmd_code;

/* A lifecycle value of struct cli_args (-1 not given, 0 never) as libsbx wants it (0 default/unchanged,
 * SBX_NEVER never). */
static inline int64_t cli_lib_seconds(int64_t v)
{
    return v < 0 ? 0 : v == 0 ? SBX_NEVER : v;
}

/* Prints "sbx: <message> (<code>)" for a failed library call. */
void cli_print_err(const struct sbx_err *err, int r);
/* Prints "sbx <cmd>: <msg>" and a hint to --help; returns `status`. */
int cli_usage_error(const struct cli_command *cmd, const char *msg, int status);
/* Prints the command's help to stdout; returns 0. */
int cli_help(const struct cli_command *cmd);
/* Creates a client from $SBX_URL / $SBX_API_KEY; prints the error on failure. */
int cli_client(struct sbx_client **ret);
/* o[key] as a string, "-" when absent or empty (for tables). */
const char *cli_json_str(json_t *o, const char *key);
/* Whether s can go into a request path as is: an id or name, [A-Za-z0-9_.-]{1,100}, not "." or "..". */
bool cli_name_safe(const char *s);
/* One request with an optional JSON body (taken); prints the error and returns 1 on failure, else 0 with
 * the answer in *ret_body (may be NULL; caller frees). */
int cli_call(const char *method, const char *path, json_t *body, char **ret_body);
/* Pretty-prints JSON text (falls back to the raw text). */
void cli_print_json(const char *text);
/* Prints a JSON array of the objects whose compact text is the `char *` at json_offset of each of the n
 * elements of list (stride bytes apart): `sbx ls --json` and friends. */
void cli_print_json_array(const void *list, size_t n, size_t stride, size_t json_offset);
/* Parses argv for a subcommand that takes only --help (and optionally --json) and positional arguments:
 * on success *ret_first is the index of the first positional one. Returns 0, 1 if help was printed, or
 * -EINVAL after printing a usage error. */
int cli_simple_args(const struct cli_command *cmd, int argc, char **argv, bool *ret_json, int *ret_first);
/* `sbx VERB ID...`: runs action on each id with one client; prints each failure and exits 1 if any
 * failed, 2 on a usage error. */
int cli_for_each_id(const struct cli_command *cmd, const char *what, int argc, char **argv,
                    int (*action)(struct sbx_client *, const char *, struct sbx_err *));

/* Run-time state shared with the signal thread (stream.c). */
/* Blocks SIGINT/SIGTERM/SIGHUP/SIGQUIT in every thread and starts a thread that forwards them to the
 * running command (after the third one: kills it, or with delete_sandbox removes the sandbox, and exits
 * with 128 + signal). Call before any other thread is created. */
int cli_session_begin(const char *url, bool delete_sandbox);
void cli_session_set_sandbox(const char *sid);
/* The last signal received so far (0: none). */
int cli_session_signal(void);

/* Starts the command in sandbox `sid`, streams its stdout/stderr to ours (reconnecting without loss if
 * the stream drops), forwards our stdin when opts->stdin_open and returns the exit status to use:
 * the command's status, 124 on its timeout, 125 on sbx's own error (printed). */
int cli_run_command(struct sbx_client *c, const char *sid, const struct sbx_exec_opts *opts);
/* Runs cmd (NULL: a login shell) in sandbox `sid` on a pseudo-terminal sized like ours, with our terminal
 * in raw mode (restored on every exit path), forwarding stdin and window-size changes (cli/shell.c).
 * Handles its own signals (do not call cli_session_begin). Returns the exit status to use. */
int cli_run_shell(struct sbx_client *c, const char *sid, const char *const *cmd, const char *const *env,
                  const char *cwd, const char *user, double timeout);
