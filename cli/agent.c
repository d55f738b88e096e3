/* sbx agent: run a coding agent session in a sandbox (docs/api.md, "Agent sessions"). An agent session is
 * a command whose stdout is JSON lines, so its events are followed with the command stream (libsbx's
 * sbx_exec_stream, which reconnects from byte offsets) and cut into lines here. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define LINE_MAX_BYTES (4u << 20) /* an event line longer than this is cut */
#define FOLLOW_ATTEMPTS 20        /* stream reconnects without progress before giving up */

enum {
    AOPT_HELP = 'h',
    AOPT_ENV = 'e',
    AOPT_CWD = 'w',
    AOPT_JSON = 1000,
    AOPT_MODEL,
    AOPT_SYSTEM_PROMPT,
    AOPT_PERMISSION_MODE,
    AOPT_MAX_TURNS,
    AOPT_ALLOWED_TOOL,
    AOPT_RESUME,
    AOPT_COMMAND,
    AOPT_KEEP,
    AOPT_SESSION,
    AOPT_FROM,
    AOPT_INTERRUPT,
    AOPT_KILL,
    AOPT_LIST,
};

static const struct cli_option options[] = {
    {"help", 'h', false, AOPT_HELP},
    {"json", 0, false, AOPT_JSON},
    {"env", 'e', true, AOPT_ENV},
    {"cwd", 'w', true, AOPT_CWD},
    {"model", 0, true, AOPT_MODEL},
    {"system-prompt", 0, true, AOPT_SYSTEM_PROMPT},
    {"permission-mode", 0, true, AOPT_PERMISSION_MODE},
    {"max-turns", 0, true, AOPT_MAX_TURNS},
    {"allowed-tool", 0, true, AOPT_ALLOWED_TOOL},
    {"resume", 0, true, AOPT_RESUME},
    {"command", 0, true, AOPT_COMMAND},
    {"keep", 0, false, AOPT_KEEP},
    {"session", 0, true, AOPT_SESSION},
    {"from", 0, true, AOPT_FROM},
    {"interrupt", 0, false, AOPT_INTERRUPT},
    {"kill", 0, false, AOPT_KILL},
    {"list", 0, false, AOPT_LIST},
    {NULL, 0, false, 0},
};

/* What the follower saw. */
struct follow {
    bool json;
    bool until_result; /* stop at the next result event (else at the exit) */
    struct {
        char *base;
        size_t len, cap;
        bool cut;
    } line;
    uint64_t line_off; /* stdout offset of the line being assembled */
    uint64_t next_off; /* where a reconnect resumes (the end of the last complete line) */
    bool got_result;
    bool result_error; /* its is_error */
    bool exited;
    int exit_code;
    bool printed_text; /* assistant text went out without a final newline yet */
};

/* A complete event line: printed raw (--json) or as its assistant text. Returns 1 at a result. */
static int on_line(struct follow *f, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    json_t *ev = f->line.cut ? NULL : json_loadb(data, len, 0, NULL);
    if (f->json) {
        fwrite(data, 1, len, stdout);
        fputc('\n', stdout);
    } else if (!ev) {
        fprintf(stderr, "%.*s\n", (int)(len > 4096 ? 4096 : len), data);
    } else {
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (type && strcmp(type, "assistant") == 0) {
            size_t i;
            json_t *c;
            json_array_foreach(json_object_get(json_object_get(ev, "message"), "content"), i, c)
            {
                const char *ct = json_string_value(json_object_get(c, "type"));
                if (ct && strcmp(ct, "text") == 0) {
                    fputs(json_string_value(json_object_get(c, "text")) ?: "", stdout);
                    fputc('\n', stdout);
                } else if (ct && strcmp(ct, "tool_use") == 0) {
                    fprintf(stderr, "[tool %s]\n", cli_json_str(c, "name"));
                }
            }
        } else if (type && strcmp(type, "result") == 0 && json_is_true(json_object_get(ev, "is_error"))) {
            fprintf(stderr, "sbx agent: turn ended: %s\n", cli_json_str(ev, "subtype"));
        }
    }
    fflush(stdout);
    int r = 0;
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (type && strcmp(type, "result") == 0) {
        f->got_result = true;
        f->result_error = json_is_true(json_object_get(ev, "is_error"));
        r = 1;
    }
    json_decref(ev);
    return r;
}

static int on_output(enum sbx_stream stream, uint64_t offset, const void *data, size_t len, void *userdata)
{
    struct follow *f = userdata;
    if (stream != SBX_STREAM_STDOUT) {
        if (!f->json)
            fwrite(data, 1, len, stderr);
        return 0;
    }
    const char *p = data;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(p + pos, '\n', len - pos);
        size_t take = nl ? (size_t)(nl - (p + pos)) : len - pos;
        if (f->line.len + take > LINE_MAX_BYTES) {
            take = f->line.len < LINE_MAX_BYTES ? LINE_MAX_BYTES - f->line.len : 0;
            f->line.cut = true;
        }
        if (f->line.len + take > f->line.cap) {
            size_t cap = (f->line.len + take) * 2;
            char *nb = realloc(f->line.base, cap);
            if (!nb)
                return -ENOMEM;
            f->line.base = nb;
            f->line.cap = cap;
        }
        memcpy(f->line.base + f->line.len, p + pos, take);
        f->line.len += take;
        if (!nl)
            break;
        pos = (size_t)(nl - p) + 1;
        f->next_off = offset + pos;
        int r = on_line(f, f->line.base, f->line.len);
        f->line.len = 0;
        f->line.cut = false;
        if (r > 0 && f->until_result)
            return -ECANCELED; /* the turn is over: stop following */
    }
    return 0;
}

static int on_agent_exit(int exit_code, int signal, const char *error_code, void *userdata)
{
    struct follow *f = userdata;
    f->exited = true;
    f->exit_code = exit_code;
    if (!f->json && !f->got_result)
        fprintf(stderr, "sbx agent: the agent exited with status %d%s%s\n", exit_code, error_code ? ": " : "",
                error_code ?: "");
    return 0;
}

/* Follows session aid from stdout offset `from` until a result (or its exit). Returns 0, or 1 after
 * printing an error. */
static int follow(struct sbx_client *c, const char *sid, const char *aid, uint64_t from, struct follow *f)
{
    struct sbx_exec_callbacks cb = {.on_output = on_output, .on_exit = on_agent_exit, .userdata = f};
    f->next_off = from;
    for (int attempt = 0; attempt < FOLLOW_ATTEMPTS; attempt++) {
        struct sbx_err err = {0};
        uint64_t before = f->next_off;
        f->line.len = 0;
        f->line.cut = false;
        /* stderr from its end: the agent's diagnostics are not replayed. */
        int r = sbx_exec_stream(c, sid, aid, f->next_off, UINT64_C(1) << 62, &cb, &err);
        if (r == -ECANCELED || r == 0)
            return 0;
        if (r != -ECONNRESET) {
            cli_print_err(&err, r);
            return 1;
        }
        if (f->next_off != before)
            attempt = 0;
    }
    fprintf(stderr, "sbx agent: the event stream kept failing\n");
    return 1;
}

static int list_sessions(const char *sid, bool json)
{
    char path[256], *body = NULL;
    snprintf(path, sizeof(path), "/v1/sandboxes/%s/agents", sid);
    if (cli_call("GET", path, NULL, &body) != 0)
        return 1;
    json_t *d = json_loads(body, 0, NULL);
    if (json) {
        cli_print_json(body);
    } else {
        printf("%-26s %-8s %-6s %-6s %s\n", "ID", "STATE", "TURNS", "EXIT", "MODEL");
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(d, "agents"), i, a)
        {
            json_t *code = json_object_get(a, "exit_code");
            char ec[16] = "-";
            if (json_is_integer(code))
                snprintf(ec, sizeof(ec), "%lld", (long long)json_integer_value(code));
            printf("%-26s %-8s %-6lld %-6s %s\n", cli_json_str(a, "id"), cli_json_str(a, "state"),
                   (long long)json_integer_value(json_object_get(a, "turns")), ec, cli_json_str(a, "model"));
        }
    }
    json_decref(d);
    free(body);
    return 0;
}

static int agent_main(int argc, char **argv)
{
    json_t *body = json_object(), *env = json_object(), *tools = json_array();
    const char *session = NULL, *from_s = NULL, *positional[2] = {0};
    bool json = false, keep = false, do_interrupt = false, do_kill = false, do_list = false;
    int npos = 0, status = 2;
    char errbuf[256];
    for (int i = 1;;) {
        int id;
        const char *v = NULL;
        int r = cli_next_arg(options, argc, argv, &i, &id, &v, errbuf, sizeof(errbuf));
        if (r < 0) {
            status = cli_usage_error(&cli_cmd_agent, errbuf, 2);
            goto out;
        }
        if (r == CLI_ARG_END)
            break;
        if (r == CLI_ARG_POSITIONAL || r == CLI_ARG_DASHDASH) {
            int end = r == CLI_ARG_DASHDASH ? argc : i + 1;
            for (; i < end; i++) {
                if (npos == 2) {
                    status = cli_usage_error(&cli_cmd_agent, "expected a sandbox id and one prompt", 2);
                    goto out;
                }
                positional[npos++] = argv[i];
            }
            continue;
        }
        switch (id) {
        case AOPT_HELP:
            status = cli_help(&cli_cmd_agent);
            goto out;
        case AOPT_JSON:
            json = true;
            break;
        case AOPT_ENV: {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                status = cli_usage_error(&cli_cmd_agent, "--env needs K=V", 2);
                goto out;
            }
            char *k = strndup(v, (size_t)(eq - v));
            json_object_set_new(env, k, json_string(eq + 1));
            free(k);
            break;
        }
        case AOPT_CWD:
            json_object_set_new(body, "cwd", json_string(v));
            break;
        case AOPT_MODEL:
            json_object_set_new(body, "model", json_string(v));
            break;
        case AOPT_SYSTEM_PROMPT:
            json_object_set_new(body, "system_prompt", json_string(v));
            break;
        case AOPT_PERMISSION_MODE:
            json_object_set_new(body, "permission_mode", json_string(v));
            break;
        case AOPT_MAX_TURNS: {
            int64_t n;
            if (cli_parse_positive_int(v, &n) < 0) {
                status = cli_usage_error(&cli_cmd_agent, "--max-turns needs a positive integer", 2);
                goto out;
            }
            json_object_set_new(body, "max_turns", json_integer(n));
            break;
        }
        case AOPT_ALLOWED_TOOL:
            json_array_append_new(tools, json_string(v));
            break;
        case AOPT_RESUME:
            json_object_set_new(body, "resume", json_string(v));
            break;
        case AOPT_COMMAND:
            json_object_set_new(body, "command", json_string(v));
            break;
        case AOPT_KEEP:
            keep = true;
            break;
        case AOPT_SESSION:
            session = v;
            break;
        case AOPT_FROM:
            from_s = v;
            break;
        case AOPT_INTERRUPT:
            do_interrupt = true;
            break;
        case AOPT_KILL:
            do_kill = true;
            break;
        case AOPT_LIST:
            do_list = true;
            break;
        default:
            break;
        }
    }
    const char *sid = positional[0], *prompt = positional[1];
    if (!sid) {
        status = cli_usage_error(&cli_cmd_agent, "missing sandbox id", 2);
        goto out;
    }
    if (!cli_name_safe(sid) || (session && !cli_name_safe(session))) {
        status = cli_usage_error(&cli_cmd_agent, "ids are [A-Za-z0-9_.-]", 2);
        goto out;
    }
    if (do_list) {
        status = list_sessions(sid, json);
        goto out;
    }
    if ((do_interrupt || do_kill || from_s) && !session) {
        status = cli_usage_error(&cli_cmd_agent, "--interrupt, --kill and --from need --session", 2);
        goto out;
    }
    if (!session && !prompt) {
        status = cli_usage_error(&cli_cmd_agent, "missing PROMPT", 2);
        goto out;
    }
    uint64_t from = 0;
    if (from_s) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(from_s, &end, 10);
        if (errno || *end || from_s[0] == '-') {
            status = cli_usage_error(&cli_cmd_agent, "--from needs a byte offset", 2);
            goto out;
        }
        from = n;
    }
    char path[256];
    char *answer = NULL;
    status = 1;
    if (session && (do_interrupt || do_kill)) {
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/agents/%s%s", sid, session,
                 do_kill ? "" : "/interrupt");
        status = cli_call(do_kill ? "DELETE" : "POST", path, do_kill ? NULL : json_object(), NULL);
        goto out;
    }
    char aid[128];
    uint64_t start_off = from;
    if (!session) {
        if (json_object_size(env) > 0)
            json_object_set(body, "env", env);
        if (json_array_size(tools) > 0)
            json_object_set(body, "allowed_tools", tools);
        json_object_set_new(body, "prompt", json_string(prompt));
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/agents", sid);
        if (cli_call("POST", path, json_incref(body), &answer) != 0)
            goto out;
        json_t *a = json_loads(answer, 0, NULL);
        snprintf(aid, sizeof(aid), "%s", cli_json_str(a, "id"));
        json_decref(a);
        free(answer);
        answer = NULL;
        if (keep)
            fprintf(stderr, "sbx agent: session %s\n", aid);
    } else {
        snprintf(aid, sizeof(aid), "%s", session);
        if (prompt) {
            snprintf(path, sizeof(path), "/v1/sandboxes/%s/agents/%s/prompt", sid, session);
            if (cli_call("POST", path, json_pack("{s:s}", "prompt", prompt), &answer) != 0)
                goto out;
            json_t *a = json_loads(answer, 0, NULL);
            start_off = (uint64_t)json_integer_value(json_object_get(a, "offset"));
            json_decref(a);
            free(answer);
            answer = NULL;
        }
    }
    struct sbx_client *c = NULL;
    if (cli_client(&c) < 0)
        goto out;
    /* A new or prompted session is followed to the end of its turn; a bare --session to its exit. */
    struct follow f = {.json = json, .until_result = prompt != NULL};
    int r = follow(c, sid, aid, start_off, &f);
    free(f.line.base);
    if (r == 0)
        status = f.until_result && f.got_result ? (f.result_error ? 1 : 0) : f.exited ? f.exit_code : 0;
    if (!session && !keep) {
        /* A one-shot run: the session ends with its answer. */
        struct sbx_err err = {0};
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/agents/%s", sid, aid);
        if (sbx_request(c, "DELETE", path, NULL, NULL, &err) < 0)
            cli_print_err(&err, -1);
    }
    sbx_client_free(c);
out:
    json_decref(body);
    json_decref(env);
    json_decref(tools);
    return status;
}

const struct cli_command cli_cmd_agent = {
    .name = "agent",
    .run = agent_main,
    .summary = "run a coding agent session in a sandbox",
    .usage =
        "Usage: sbx agent [OPTIONS] ID PROMPT\n"
        "       sbx agent --session AID [--json] ID [PROMPT]\n"
        "       sbx agent --session AID --from OFFSET | --interrupt | --kill ID\n"
        "       sbx agent --list [--json] ID\n"
        "\n"
        "Starts an agent session in sandbox ID (sbxd's --agent-command, by default the claude CLI in\n"
        "stream-JSON mode) with PROMPT, prints the agent's answer as it comes and exits at the end of\n"
        "the turn: 0 when it succeeded, 1 when it ended in an error. The session is then killed unless\n"
        "--keep (its id goes to stderr); --session AID sends PROMPT to such a session, or without a\n"
        "PROMPT follows its events from --from (a byte offset, default 0: all of them) until it exits.\n"
        "--json prints the agent's events as JSON lines, as it wrote them.\n"
        "\n"
        "Options:\n"
        "  -e, --env K=V             environment of the agent only, e.g. ANTHROPIC_API_KEY (repeatable;\n"
        "                            never shown back)\n"
        "  -w, --cwd DIR             working directory inside the sandbox\n"
        "      --model M             model\n"
        "      --system-prompt S     system prompt\n"
        "      --permission-mode M   default, acceptEdits, plan, bypassPermissions\n"
        "      --max-turns N         agentic turns per prompt\n"
        "      --allowed-tool T      a tool the agent may use without asking (repeatable)\n"
        "      --resume SESSION      continue an earlier conversation of the agent\n"
        "      --command CMD         the agent program instead of sbxd's (words split on blanks)\n"
        "      --keep                leave the session running after the turn\n"
        "      --json                raw JSON lines\n",
};
