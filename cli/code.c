/* sbx code: run code in a sandbox's code context (a persistent python, node or bash interpreter) and print
 * its output and result (docs/api.md, "Code contexts"). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define CODE_MAX (512u * 1024) /* sbxd's limit on one cell */

/* Reads all of stdin (at most CODE_MAX bytes); NULL with errno set on failure or when too long. */
static char *read_stdin(void)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > CODE_MAX) {
                free(buf);
                errno = E2BIG;
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return NULL;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* While the cell runs, SIGINT (Ctrl-C) interrupts it: a thread waits for the signal and asks sbxd. */
struct interrupter {
    char path[512];
    sigset_t set;
};

static void *interrupt_thread(void *arg)
{
    struct interrupter *it = arg;
    for (;;) {
        int sig = 0;
        if (sigwait(&it->set, &sig) != 0)
            return NULL;
        if (sig == SIGINT)
            cli_call("POST", it->path, NULL, NULL);
        else
            _exit(128 + sig);
    }
}

/* Writes a JSON string field as bytes (base64 when the answer says so) to f. */
static void print_bytes(FILE *f, json_t *res, const char *key)
{
    json_t *v = json_object_get(res, key);
    char enc[32];
    snprintf(enc, sizeof(enc), "%s_encoding", key);
    if (!json_is_string(v))
        return;
    if (json_is_string(json_object_get(res, enc))) {
        fprintf(f, "[%s: %zu bytes of binary output, base64]\n%s\n", key, json_string_length(v),
                json_string_value(v));
        return;
    }
    fwrite(json_string_value(v), 1, json_string_length(v), f);
    fflush(f);
}

static int code_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"lang", required_argument, NULL, 'l'},    {"code", required_argument, NULL, 'c'},
        {"context", required_argument, NULL, 'x'}, {"keep", no_argument, NULL, 'k'},
        {"timeout", required_argument, NULL, 't'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {0},
    };
    const char *lang = "python", *code_arg = NULL, *ctx_arg = NULL;
    bool keep = false, json_out = false;
    double timeout = 0;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "l:c:x:kt:jh", opts, NULL)) != -1) {
        switch (o) {
        case 'l':
            lang = optarg;
            break;
        case 'c':
            code_arg = optarg;
            break;
        case 'x':
            ctx_arg = optarg;
            break;
        case 'k':
            keep = true;
            break;
        case 't': {
            char *end;
            timeout = strtod(optarg, &end);
            if (*end || timeout <= 0)
                return cli_usage_error(&cli_cmd_code, "--timeout takes a positive number of seconds", 2);
            break;
        }
        case 'j':
            json_out = true;
            break;
        case 'h':
            return cli_help(&cli_cmd_code);
        default:
            return cli_usage_error(&cli_cmd_code, "unknown option", 2);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(&cli_cmd_code, "expected one sandbox id", 2);
    const char *sid = argv[optind];
    if (!cli_name_safe(sid) || (ctx_arg && !cli_name_safe(ctx_arg)))
        return cli_usage_error(&cli_cmd_code, "malformed sandbox or context id", 2);
    char *code = code_arg ? strdup(code_arg) : read_stdin();
    if (!code) {
        fprintf(stderr, "sbx code: read the code from stdin: %s\n",
                errno == E2BIG ? "longer than 512 KiB" : strerror(errno));
        return 1;
    }

    char path[512], *answer = NULL;
    char ctx[128];
    int status = 1;
    if (ctx_arg) {
        snprintf(ctx, sizeof(ctx), "%s", ctx_arg);
    } else {
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/contexts", sid);
        if (cli_call("POST", path, json_pack("{s:s}", "language", lang), &answer) != 0) {
            free(code);
            return 1;
        }
        json_t *j = json_loads(answer ? answer : "", 0, NULL);
        snprintf(ctx, sizeof(ctx), "%s", json_string_value(json_object_get(j, "id")) ?: "");
        json_decref(j);
        free(answer);
        answer = NULL;
        if (keep)
            fprintf(stderr, "sbx code: context %s (run more with --context %s)\n", ctx, ctx);
    }

    /* Ctrl-C interrupts the cell instead of killing us; SIGTERM/SIGHUP end sbx as usual. */
    struct interrupter it;
    snprintf(it.path, sizeof(it.path), "/v1/sandboxes/%s/contexts/%s/interrupt", sid, ctx);
    sigemptyset(&it.set);
    sigaddset(&it.set, SIGINT);
    sigaddset(&it.set, SIGTERM);
    sigaddset(&it.set, SIGHUP);
    pthread_t th;
    bool threaded = pthread_sigmask(SIG_BLOCK, &it.set, NULL) == 0 &&
                    pthread_create(&th, NULL, interrupt_thread, &it) == 0;

    json_t *body = json_pack("{s:s}", "code", code);
    free(code);
    if (timeout > 0)
        json_object_set_new(body, "timeout", json_real(timeout));
    snprintf(path, sizeof(path), "/v1/sandboxes/%s/contexts/%s/run", sid, ctx);
    if (cli_call("POST", path, body, &answer) == 0) {
        json_t *res = json_loads(answer ? answer : "", 0, NULL);
        if (json_out) {
            cli_print_json(answer ? answer : "null");
        } else {
            print_bytes(stdout, res, "stdout");
            print_bytes(stderr, res, "stderr");
            json_t *out;
            size_t i;
            json_array_foreach(json_object_get(res, "outputs"), i, out)
            {
                const char *mime;
                json_t *v;
                json_object_foreach(out, mime, v) if (strcmp(mime, "text/plain") != 0)
                {
                    fprintf(stderr, "[output %zu: %s, %zu bytes; --json has it]\n", i + 1, mime,
                            json_is_string(v) ? json_string_length(v) : 0);
                    break;
                }
                if (json_is_string(json_object_get(out, "text/plain")))
                    printf("%s\n", json_string_value(json_object_get(out, "text/plain")));
            }
            const char *text = json_string_value(json_object_get(res, "text"));
            if (text)
                printf("%s\n", text);
        }
        json_t *e = json_object_get(res, "error");
        if (e && !json_out) {
            json_t *line;
            size_t i;
            json_array_foreach(json_object_get(e, "traceback"), i, line)
                fprintf(stderr, "%s\n", json_string_value(line) ?: "");
            if (json_array_size(json_object_get(e, "traceback")) == 0)
                fprintf(stderr, "%s: %s\n", json_string_value(json_object_get(e, "name")) ?: "Error",
                        json_string_value(json_object_get(e, "value")) ?: "");
        }
        status = res && !e ? 0 : 1;
        json_decref(res);
        free(answer);
    }
    if (!ctx_arg && !keep) {
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/contexts/%s", sid, ctx);
        cli_call("DELETE", path, NULL, NULL);
    }
    (void)threaded; /* the thread ends with the process */
    return status;
}

const struct cli_command cli_cmd_code = {
    .name = "code",
    .run = code_main,
    .summary = "run code in a persistent python, node or bash interpreter in a sandbox",
    .usage = "Usage: sbx code [OPTIONS] ID\n"
             "\n"
             "Runs code (from -c, else read from stdin) in a code context of sandbox ID and prints, once it\n"
             "ends, its stdout and stderr, then the value of its last expression (python, node). Without\n"
             "--context a new context is made for this run and deleted after it (kept with --keep, its id\n"
             "printed to stderr); with --context the run sees the variables, imports and working directory\n"
             "that earlier runs left. Ctrl-C interrupts the running code (KeyboardInterrupt); the context\n"
             "stays. Exits 0, or 1 when the code raised (its traceback goes to stderr) or sbx failed.\n"
             "\n"
             "Options:\n"
             "  -l, --lang LANG       python (default), node or bash\n"
             "  -c, --code CODE       the code to run (default: stdin, at most 512 KiB)\n"
             "  -x, --context CTX     run in this existing context\n"
             "  -k, --keep            keep the new context\n"
             "  -t, --timeout SECS    interrupt the code after SECS\n"
             "      --json            print the whole result object (outputs with their images too)\n",
};
