/* /v1/sandboxes/{id}/agents: agent sessions. An agent session is an sbx command (id agt_…) whose stdin
 * stays open, running a coding agent that speaks the Claude Code CLI's stream-JSON protocol: user
 * messages as JSON lines on stdin, events as JSON lines on stdout. Its process, output log, offsets and
 * replay are the command model's (the shim's); this file only adds the agent's shape on top:
 *
 * - the command line, built from a configured agent command (sbxd --agent-command, default `claude`)
 *   plus the stream-JSON flags and the session's options;
 * - a record per session in <state_dir>/agents/<aid>.json (host side, never inside the sandbox, removed
 *   with the sandbox) holding its configuration (never its env values) and counters, so a restarted
 *   sbxd still knows its sessions;
 * - a watcher per running session (a shim attach stream kept by sbxd) that counts turns (result
 *   events), notes the agent's session id, the time of the last event, and keeps the sandbox from
 *   going idle while the agent works with no client attached;
 * - client streams (SSE, WebSocket) that cut stdout into one message per line, each with its byte
 *   offset, from any offset: a second client replays from where it asks, then follows live.
 *
 * Follow-up prompts, interrupts (a control_request on stdin) and live configuration changes (the
 * control protocol's set_model and set_permission_mode) are lines written to the command's stdin. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/codec.h"
#include "api/internal.h"
#include "api/jsonreq.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "loop/loop.h"
#include "shimclient/shim_client.h"
#include "shimclient/shim_protocol.h"

#define AGENT_ID_PREFIX "agt_"
#define PROMPT_MAX (256u * 1024)         /* one prompt's text */
#define SYSTEM_PROMPT_MAX (64u * 1024)   /* system_prompt */
#define OPTION_MAX 256                   /* model, permission_mode, resume, one tool pattern */
#define TOOLS_MAX 128                    /* allowed_tools entries */
#define MCP_MAX (64u * 1024)             /* mcp_servers, serialized */
#define MCP_SERVERS_MAX 32               /* mcp_servers entries */
#define MAX_TURNS_MAX 100000             /* max_turns */
#define COMMAND_ENTRIES_MAX 64           /* the agent command's own words */
#define COMMAND_BYTES_MAX (16u * 1024)   /* ... and their total length */
#define AGENT_ENV_MAX 64                 /* env entries per session */
#define AGENT_ENV_ENTRY_MAX (32u * 1024) /* one env key + value */
#define AGENTS_RUNNING_MAX 8             /* running sessions per sandbox */
#define AGENTS_KEPT_MAX 32               /* records per sandbox (the oldest exited one makes room) */
#define LINE_MAX_BYTES (1u << 20)        /* an event line longer than this is cut (sent as text) */
#define SHIM_READ_CHUNK (64 * 1024)
#define SHIM_WRITE_MAX (2u << 20)         /* WebSocket prompts queued to the shim */
#define SSE_KEEPALIVE_USEC (15 * 1000000) /* agents think quietly; proxies drop silent streams */
#define TOUCH_EVERY_MS 1000               /* how often an agent's events count as sandbox activity */

/* --- the configured agent command ---------------------------------------------------------------- */

static json_t *default_command; /* array of strings; NULL = ["claude"] */

/* Splits s on blanks into a JSON array of words (no quoting: a path with spaces needs a wrapper
 * script). Returns NULL when s has no word or too many. */
static json_t *split_words(const char *s)
{
    json_t *arr = json_array();
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *start = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (p > start)
            json_array_append_new(arr, json_stringn(start, (size_t)(p - start)));
    }
    if (json_array_size(arr) == 0 || json_array_size(arr) > COMMAND_ENTRIES_MAX ||
        strlen(s) > COMMAND_BYTES_MAX) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

int api_agents_set_command(const char *cmd)
{
    json_t *arr = split_words(cmd);
    if (!arr)
        return -EINVAL;
    json_decref(default_command);
    default_command = arr;
    return 0;
}

static json_t *configured_command(void)
{
    if (!default_command)
        default_command = json_pack("[s]", "claude");
    return default_command;
}

/* --- records ------------------------------------------------------------------------------------- */

static char *record_path(const char *state_dir, const char *aid)
{
    return xasprintf("%s/agents/%s.json", state_dir, aid);
}

/* The record of session aid, a new reference, or NULL when there is none. */
static json_t *record_load(const char *state_dir, const char *aid)
{
    if (!id_is_valid(aid) || strncmp(aid, AGENT_ID_PREFIX, strlen(AGENT_ID_PREFIX)) != 0)
        return NULL;
    _cleanup_free_ char *path = record_path(state_dir, aid);
    json_t *rec = json_load_file(path, 0, NULL);
    if (rec && !json_is_object(rec)) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}

/* Replaces the record atomically (0600: it names the session's env keys, never their values). */
static int record_save(const char *state_dir, const char *aid, json_t *rec)
{
    _cleanup_free_ char *dir = xasprintf("%s/agents", state_dir);
    _cleanup_free_ char *tmp = xasprintf("%s/%s.json.tmp", dir, aid);
    _cleanup_free_ char *path = record_path(state_dir, aid);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    _cleanup_free_ char *text = json_dumps(rec, JSON_COMPACT);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, text, strlen(text)) < 0 || rename(tmp, path) < 0) {
        int r = -errno;
        (void)unlink(tmp);
        return r;
    }
    return 0;
}

/* The ids of the sandbox's sessions (a new array of strings). */
static json_t *record_ids(const char *state_dir)
{
    json_t *ids = json_array();
    _cleanup_free_ char *dir = xasprintf("%s/agents", state_dir);
    _cleanup_(closedirp) DIR *dp = opendir(dir);
    if (!dp)
        return ids;
    struct dirent *de;
    while ((de = readdir(dp))) {
        size_t n = strlen(de->d_name);
        if (n <= 5 || n > SBX_ID_MAX + 5 || strcmp(de->d_name + n - 5, ".json") != 0 ||
            strncmp(de->d_name, AGENT_ID_PREFIX, strlen(AGENT_ID_PREFIX)) != 0)
            continue;
        json_array_append_new(ids, json_stringn(de->d_name, n - 5));
    }
    return ids;
}

static void record_remove(const char *state_dir, const char *aid)
{
    _cleanup_free_ char *path = record_path(state_dir, aid);
    (void)unlink(path);
}

/* --- watchers: sbxd's own stream per running session --------------------------------------------- */

enum stream_mode {
    STREAM_WATCH, /* counts turns, notes the session id and the last event; sends nothing */
    STREAM_SSE,
    STREAM_WS,
};

struct agent_stream {
    struct loop_io io;
    struct daemon *d;
    enum stream_mode mode;
    int fd;
    int watched;
    char sandbox_id[SBX_ID_MAX + 1];
    char aid[SBX_ID_MAX + 1];
    char *state_dir;
    struct http_request *req; /* SSE */
    struct http_ws *ws;       /* WS */
    struct sandbox *sb;       /* SSE and WS: a ref, attached (it is not idle while a client streams) */
    struct sbx_buf in;        /* bytes from the shim not yet parsed */
    struct sbx_buf out;       /* frames to the shim not yet written (WebSocket prompts) */
    struct sbx_buf line;      /* the stdout line being assembled */
    uint64_t line_off;        /* stdout offset of its first byte */
    bool line_cut;            /* longer than LINE_MAX_BYTES: the rest is dropped */
    bool with_stderr;
    bool paused, finished;
    /* STREAM_WATCH */
    struct agent_stream *next;
    json_int_t turns;
    int64_t last_event_ms, last_touch_ms;
};

static struct agent_stream *watchers;

static void stream_on_io(struct loop_io *io, uint32_t revents);

static struct agent_stream *watcher_find(const char *sandbox_id, const char *aid)
{
    for (struct agent_stream *w = watchers; w; w = w->next)
        if (strcmp(w->sandbox_id, sandbox_id) == 0 && strcmp(w->aid, aid) == 0)
            return w;
    return NULL;
}

static void stream_free(struct agent_stream *s)
{
    if (s->mode == STREAM_WATCH)
        for (struct agent_stream **p = &watchers; *p; p = &(*p)->next)
            if (*p == s) {
                *p = s->next;
                break;
            }
    if (s->watched)
        loop_io_stop(s->d->loop, &s->io);
    if (s->fd >= 0)
        close(s->fd);
    sbx_buf_done(&s->in);
    sbx_buf_done(&s->out);
    sbx_buf_done(&s->line);
    free(s->state_dir);
    if (s->sb) {
        sandbox_detach(s->sb);
        sandbox_unref(s->sb);
    }
    free(s);
}

void api_agents_close_all(void)
{
    while (watchers)
        stream_free(watchers);
}

static void stream_update_watch(struct agent_stream *s)
{
    int want = 0;
    if (!s->paused && !s->finished)
        want |= EPOLLIN;
    if (s->out.len > 0 && !s->finished)
        want |= EPOLLOUT;
    if (want == s->watched)
        return;
    if (s->watched && want)
        loop_io_update(s->d->loop, &s->io, (uint32_t)want);
    else if (want)
        loop_io_start(s->d->loop, &s->io, s->fd, (uint32_t)want, NULL);
    else
        loop_io_stop(s->d->loop, &s->io);
    s->watched = want;
}

/* The watcher learned something worth keeping across an sbxd restart: turns, the agent's session id,
 * how far it has counted (a restarted watcher goes on from there), or the exit. */
static void watcher_persist(struct agent_stream *w, uint64_t offset, const char *session_id,
                            json_t *exit_status)
{
    json_t *rec = record_load(w->state_dir, w->aid);
    if (!rec)
        return;
    json_object_set_new(rec, "turns", json_integer(w->turns));
    json_object_set_new(rec, "watched_offset", json_integer((json_int_t)offset));
    json_object_set_new(rec, "last_event_ms",
                        w->last_event_ms ? json_integer(w->last_event_ms) : json_null());
    if (session_id)
        json_object_set_new(rec, "session_id", json_string(session_id));
    if (exit_status)
        json_object_set(rec, "exit", exit_status);
    int r = record_save(w->state_dir, w->aid, rec);
    if (r < 0)
        log_debug("save agent record `%s`: %s, ignoring", w->aid, strerror(-r));
    json_decref(rec);
}

/* One event line as the watcher sees it. */
static void watch_event(struct agent_stream *w, json_t *ev, uint64_t next_off)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    w->last_event_ms = now_ms();
    if (w->last_event_ms - w->last_touch_ms >= TOUCH_EVERY_MS) {
        /* An agent at work is activity: its sandbox must not stop as idle under it. */
        struct sandbox *sb = sandbox_lookup(w->d, w->sandbox_id, NULL);
        if (sb) {
            sandbox_touch(sb);
            sandbox_unref(sb);
        }
        w->last_touch_ms = w->last_event_ms;
    }
    if (!type)
        return;
    if (strcmp(type, "result") == 0) {
        w->turns++;
        watcher_persist(w, next_off, NULL, NULL);
    } else if (strcmp(type, "system") == 0) {
        const char *subtype = json_string_value(json_object_get(ev, "subtype"));
        const char *sid = json_string_value(json_object_get(ev, "session_id"));
        if (subtype && strcmp(subtype, "init") == 0 && sid && strlen(sid) <= OPTION_MAX)
            watcher_persist(w, next_off, sid, NULL);
    }
}

/* --- the agent object ---------------------------------------------------------------------------- */

/* The public agent object (docs/api.md) from its record and, when the shim still knows the command, its
 * status (borrowed; NULL = forgotten or the sandbox is down). A new reference. */
static json_t *agent_json(const char *sandbox_id, json_t *rec, json_t *status)
{
    json_t *cfg = json_object_get(rec, "config");
    json_t *a = json_pack("{s:O, s:s}", "id", json_object_get(rec, "id"), "sandbox_id", sandbox_id);
    static const char *const keys[] = {
        "command",   "model", "permission_mode", "system_prompt", "allowed_tools",
        "max_turns", "cwd",   "mcp_servers",     "resume",        "env_keys"};
    for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
        json_t *v = json_object_get(cfg, keys[i]);
        json_object_set(a, keys[i], v ? v : json_null());
    }
    json_t *st = status ? status : json_object_get(rec, "exit");
    json_t *cmd = json_is_object(st) ? command_json_from_shim(sandbox_id, st) : NULL;
    const char *state = "exited";
    if (cmd) {
        state = json_string_value(json_object_get(cmd, "state")) ?: "exited";
        static const char *const pass[] = {"pid",        "exit_code",   "signal",      "error",
                                           "started_at", "finished_at", "stderr_bytes"};
        for (size_t i = 0; i < ELEMENTSOF(pass); i++)
            json_object_set(a, pass[i], json_object_get(cmd, pass[i]) ?: json_null());
        /* Where the next event will start: a client resumes or follows from here. */
        json_object_set(a, "events_offset", json_object_get(cmd, "stdout_bytes") ?: json_null());
        json_decref(cmd);
    } else {
        /* The shim no longer knows it: its sandbox was stopped (or restarted) under it. */
        static const char *const nulls[] = {"pid",         "exit_code",    "signal",
                                            "finished_at", "stderr_bytes", "events_offset"};
        for (size_t i = 0; i < ELEMENTSOF(nulls); i++)
            json_object_set_new(a, nulls[i], json_null());
        char buf[40];
        format_time_ms(buf, sizeof(buf), json_integer_value(json_object_get(rec, "created_ms")));
        json_object_set_new(a, "started_at", json_string(buf));
        json_object_set_new(a, "error",
                            json_pack("{s:s, s:s}", "code", "lost", "message",
                                      "the session's process ended with its sandbox"));
    }
    json_object_set_new(a, "state", json_string(state));
    struct agent_stream *w = watcher_find(sandbox_id, json_string_value(json_object_get(rec, "id")));
    json_int_t turns = w ? w->turns : json_integer_value(json_object_get(rec, "turns"));
    int64_t last =
        w && w->last_event_ms ? w->last_event_ms : json_integer_value(json_object_get(rec, "last_event_ms"));
    json_int_t prompts = json_integer_value(json_object_get(rec, "prompts"));
    json_object_set_new(a, "turns", json_integer(turns));
    json_object_set_new(a, "prompts", json_integer(prompts));
    /* Busy: a prompt is waiting for its result (each user message ends in one result event). */
    json_object_set_new(a, "busy", json_boolean(strcmp(state, "running") == 0 && prompts > turns));
    json_object_set(a, "session_id", json_object_get(rec, "session_id") ?: json_null());
    if (last > 0) {
        char buf[40];
        format_time_ms(buf, sizeof(buf), last);
        json_object_set_new(a, "last_event_at", json_string(buf));
    } else {
        json_object_set_new(a, "last_event_at", json_null());
    }
    return a;
}

/* --- event lines → client messages --------------------------------------------------------------- */

/* One line of stdout [off, next_off). Returns true when the client wants us to slow down. */
static bool emit_line(struct agent_stream *s, uint64_t off, uint64_t next_off, const char *data, size_t len,
                      bool cut)
{
    size_t n = len;
    while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == ' ' || data[n - 1] == '\t'))
        n--;
    if (n == 0)
        return false;
    json_t *ev = cut ? NULL : json_loadb(data, n, 0, NULL);
    if (ev && !json_is_object(ev)) {
        json_decref(ev);
        ev = NULL;
    }
    if (s->mode == STREAM_WATCH) {
        if (ev)
            watch_event(s, ev, next_off);
        json_decref(ev);
        return false;
    }
    json_t *m = json_pack("{s:I, s:I}", "offset", (json_int_t)off, "next_offset", (json_int_t)next_off);
    const char *kind = "event";
    if (ev) {
        json_object_set_new(m, "event", ev);
    } else {
        /* Not a JSON object (a stray print, or a line cut at LINE_MAX_BYTES): passed on as text. */
        kind = "text";
        json_set_bytes(m, "text", "encoding", data, n);
        if (cut)
            json_object_set_new(m, "truncated", json_true());
    }
    int r;
    if (s->mode == STREAM_WS) {
        json_object_set_new(m, "type", json_string(kind));
        _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);
        r = http_ws_send_text(s->ws, text, strlen(text));
    } else {
        _cleanup_free_ char *text = json_dumps(m, JSON_COMPACT);
        r = http_sse_send(s->req, kind, text, strlen(text));
    }
    json_decref(m);
    return r > 0;
}

/* Cuts a chunk of stdout into lines. Returns true when the client wants us to slow down. */
static bool stdout_chunk(struct agent_stream *s, uint64_t off, const uint8_t *data, size_t len)
{
    bool slow = false;
    size_t pos = 0;
    while (pos < len) {
        const uint8_t *nl = memchr(data + pos, '\n', len - pos);
        size_t take = nl ? (size_t)(nl - (data + pos)) : len - pos;
        size_t room = s->line.len < LINE_MAX_BYTES ? LINE_MAX_BYTES - s->line.len : 0;
        if (take > room)
            s->line_cut = true;
        sbx_buf_append(&s->line, data + pos, take < room ? take : room);
        pos += take;
        if (!nl)
            break;
        pos++; /* the newline */
        uint64_t next = off + pos;
        if (emit_line(s, s->line_off, next, s->line.base, s->line.len, s->line_cut))
            slow = true;
        s->line.len = 0;
        s->line_cut = false;
        s->line_off = next;
    }
    return slow;
}

static bool stderr_chunk(struct agent_stream *s, uint64_t off, const uint8_t *data, size_t len)
{
    if (s->mode == STREAM_WATCH || !s->with_stderr)
        return false;
    json_t *ev = output_event_json(SHIM_STREAM_STDERR, off, data, len, s->mode == STREAM_WS);
    if (s->mode == STREAM_WS)
        json_object_set_new(ev, "type", json_string("stderr"));
    _cleanup_free_ char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    int r = s->mode == STREAM_WS ? http_ws_send_text(s->ws, text, strlen(text))
                                 : http_sse_send(s->req, "stderr", text, strlen(text));
    return r > 0;
}

static void send_exit(struct agent_stream *s, json_t *status)
{
    /* A last line without its newline is still an event. */
    if (s->line.len > 0 || s->line_cut) {
        emit_line(s, s->line_off, s->line_off + s->line.len, s->line.base, s->line.len, s->line_cut);
        s->line.len = 0;
    }
    if (s->mode == STREAM_WATCH) {
        watcher_persist(s, s->line_off, NULL, status);
        return;
    }
    json_t *rec = record_load(s->state_dir, s->aid);
    if (!rec)
        rec = json_pack("{s:s}", "id", s->aid);
    json_t *a = agent_json(s->sandbox_id, rec, status);
    json_decref(rec);
    if (s->mode == STREAM_WS) {
        json_object_set_new(a, "type", json_string("exit"));
        _cleanup_free_ char *text = json_dumps(a, JSON_COMPACT);
        http_ws_send_text(s->ws, text, strlen(text));
        http_ws_close(s->ws, 1000, "agent exited");
    } else {
        _cleanup_free_ char *text = json_dumps(a, JSON_COMPACT);
        http_sse_send(s->req, "exit", text, strlen(text));
        http_response_end(s->req);
    }
    json_decref(a);
}

static void send_failure(struct agent_stream *s, const char *why)
{
    if (s->mode == STREAM_WATCH) {
        log_debug("agent watcher `%s`: %s", s->aid, why);
    } else if (s->mode == STREAM_WS) {
        http_ws_close(s->ws, 1011, why);
    } else {
        json_t *e = json_pack("{s:s, s:s}", "code", "unavailable", "message", why);
        _cleanup_free_ char *text = json_dumps(e, JSON_COMPACT);
        json_decref(e);
        http_sse_send(s->req, "error", text, strlen(text));
        http_response_end(s->req);
    }
}

static void process_frames(struct agent_stream *s)
{
    size_t pos = 0;
    while (!s->finished && !s->paused) {
        struct shim_frame f;
        long n = shim_frame_parse((const uint8_t *)s->in.base + pos, s->in.len - pos, &f);
        if (n == 0)
            break;
        if (n < 0) {
            s->finished = true;
            send_failure(s, "malformed frame from shim");
            break;
        }
        pos += (size_t)n;
        if (f.type == SHIM_FRAME_DATA && f.len >= 9) {
            uint64_t off = 0;
            for (int i = 0; i < 8; i++)
                off |= (uint64_t)f.payload[1 + i] << (8 * i);
            bool slow = f.payload[0] == SHIM_STREAM_STDERR ? stderr_chunk(s, off, f.payload + 9, f.len - 9)
                                                           : stdout_chunk(s, off, f.payload + 9, f.len - 9);
            if (slow)
                s->paused = true;
        } else if (f.type == SHIM_FRAME_EXIT) {
            json_t *status = json_loadb((const char *)f.payload, f.len, 0, NULL);
            s->finished = true;
            if (status)
                send_exit(s, status);
            else
                send_failure(s, "malformed exit from shim");
            json_decref(status);
        } else if (f.type == SHIM_FRAME_RESPONSE) {
            s->finished = true;
            send_failure(s, "the session's output could not be attached");
        }
    }
    sbx_buf_consume(&s->in, pos);
}

/* Writes and reads what it can; may free s. */
static void stream_pump(struct agent_stream *s)
{
    if (s->out.len > 0) {
        ssize_t n = write(s->fd, s->out.base, s->out.len);
        if (n > 0)
            sbx_buf_consume(&s->out, (size_t)n);
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            s->out.len = 0; /* the shim is gone; reading will tell */
    }
    process_frames(s);
    if (s->finished && s->mode != STREAM_WS) {
        /* SSE: the response is complete; WATCH: nothing more to learn. A WebSocket ends in on_close. */
        stream_free(s);
        return;
    }
    stream_update_watch(s);
}

static void stream_on_io(struct loop_io *io, uint32_t revents)
{
    struct agent_stream *s = container_of(io, struct agent_stream, io);
    if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (int i = 0; i < 16 && !s->paused && !s->finished; i++) {
            char *p = sbx_buf_reserve(&s->in, SHIM_READ_CHUNK);
            ssize_t n = read(s->fd, p, SHIM_READ_CHUNK);
            if (n > 0) {
                s->in.len += (size_t)n;
                process_frames(s);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            process_frames(s);
            if (!s->finished) {
                s->finished = true;
                send_failure(s, "the sandbox's shim closed the stream");
            }
            break;
        }
    }
    stream_pump(s);
}

/* A new stream on session aid of sb from stdout offset off (stderr from 0 when with_stderr). */
static int stream_open(struct daemon *d, struct sandbox *sb, const char *aid, enum stream_mode mode,
                       uint64_t off, bool with_stderr, struct agent_stream **ret, sbx_error *err)
{
    int fd;
    int r = shim_attach(sb->state_dir, aid, off, with_stderr ? 0 : (uint64_t)INT64_MAX, &fd, err);
    if (r < 0)
        return r;
    struct agent_stream *s = xcalloc(1, sizeof(*s));
    s->d = d;
    s->mode = mode;
    s->fd = fd;
    s->io.cb = stream_on_io;
    s->with_stderr = with_stderr;
    s->line_off = off;
    snprintf(s->sandbox_id, sizeof(s->sandbox_id), "%s", sb->id);
    snprintf(s->aid, sizeof(s->aid), "%s", aid);
    s->state_dir = xstrdup(sb->state_dir);
    *ret = s;
    return 0;
}

/* Starts the watcher of a running session unless it has one (after an sbxd restart, from where the
 * last one had counted to). */
static void watcher_ensure(struct daemon *d, struct sandbox *sb, json_t *rec)
{
    const char *aid = json_string_value(json_object_get(rec, "id"));
    if (!aid || watcher_find(sb->id, aid) || json_is_object(json_object_get(rec, "exit")))
        return;
    sbx_error err = {0};
    struct agent_stream *w;
    uint64_t off = (uint64_t)json_integer_value(json_object_get(rec, "watched_offset"));
    if (stream_open(d, sb, aid, STREAM_WATCH, off, false, &w, &err) < 0) {
        log_debug("watch agent `%s`: %s, ignoring", aid, err.msg);
        return;
    }
    w->turns = json_integer_value(json_object_get(rec, "turns"));
    w->last_event_ms = json_integer_value(json_object_get(rec, "last_event_ms"));
    w->next = watchers;
    watchers = w;
    stream_update_watch(w);
}

/* --- stdin lines --------------------------------------------------------------------------------- */

/* A user message line in the stream-JSON input format; a new string ending in '\n'. */
static char *user_line(const char *prompt)
{
    json_t *m = json_pack("{s:s, s:{s:s, s:[{s:s, s:s}]}}", "type", "user", "message", "role", "user",
                          "content", "type", "text", "text", prompt);
    _cleanup_free_ char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return xasprintf("%s\n", s);
}

/* A control request line (interrupt, set_model, set_permission_mode); takes ownership of request. */
static char *control_line(json_t *request, char ret_request_id[SBX_ID_MAX + 1])
{
    id_generate(ret_request_id, SBX_ID_MAX + 1, "req_");
    json_t *m = json_pack("{s:s, s:s, s:o}", "type", "control_request", "request_id", ret_request_id,
                          "request", request);
    _cleanup_free_ char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return xasprintf("%s\n", s);
}

static int write_stdin(struct sandbox *sb, const char *aid, const char *line, sbx_error *err)
{
    _cleanup_free_ char *b64 = base64_encode(line, strlen(line));
    json_t *req = json_pack("{s:s, s:s, s:s}", "op", "stdin", "id", aid, "data_b64", b64), *resp = NULL;
    int r = sandbox_shim_call(sb, req, &resp, err);
    json_decref(req);
    json_decref(resp);
    return r;
}

static int bump_prompts(struct sandbox *sb, json_t *rec)
{
    json_object_set_new(rec, "prompts",
                        json_integer(json_integer_value(json_object_get(rec, "prompts")) + 1));
    return record_save(sb->state_dir, json_string_value(json_object_get(rec, "id")), rec);
}

/* --- request validation -------------------------------------------------------------------------- */

static int string_option(json_t *body, const char *key, size_t max, const char **ret, sbx_error *err)
{
    int r = jsonreq_string(body, key, max, ret, err);
    if (r > 0 && (!**ret || strlen(*ret) != json_string_length(json_object_get(body, key))))
        return sbx_error_set(err, -EINVAL, "`%s` must be a non-empty string without NUL characters", key);
    /* A value the agent's option parser could take for a flag of its own. */
    if (r > 0 && **ret == '-' && strcmp(key, "system_prompt") != 0)
        return sbx_error_set(err, -EINVAL, "`%s` must not start with `-`", key);
    return r;
}

/* A prompt: a non-empty string of at most PROMPT_MAX bytes (413 beyond). Returns 0 when absent. */
static int prompt_field(json_t *body, const char **ret, sbx_error *err)
{
    json_t *v = json_object_get(body, "prompt");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return sbx_error_set(err, -EINVAL, "`prompt` must be a string");
    if (json_string_length(v) > PROMPT_MAX)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`prompt` is longer than %u bytes", PROMPT_MAX);
    if (json_string_length(v) == 0)
        return sbx_error_set(err, -EINVAL, "`prompt` must not be empty");
    *ret = json_string_value(v);
    return 1;
}

static int string_array(json_t *body, const char *key, size_t max_entries, size_t max_len, json_t **ret,
                        sbx_error *err)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return sbx_error_set(err, -EINVAL, "`%s` must be an array of strings", key);
    if (json_array_size(v) > max_entries)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`%s` has more than %zu entries", key,
                              max_entries);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > max_len ||
            strlen(json_string_value(e)) != json_string_length(e))
            return sbx_error_set(err, -EINVAL, "`%s[%zu]` must be a non-empty string of at most %zu bytes",
                                 key, i, max_len);
    }
    *ret = v;
    return 1;
}

/* The agent command: the request's `command` (a string of words or an array) or the configured one. */
static int command_field(json_t *body, json_t **ret, sbx_error *err)
{
    json_t *v = json_object_get(body, "command");
    if (!v || json_is_null(v)) {
        *ret = json_incref(configured_command());
        return 0;
    }
    if (json_is_string(v)) {
        if (json_string_length(v) > COMMAND_BYTES_MAX ||
            strlen(json_string_value(v)) != json_string_length(v))
            return sbx_error_set(err, -EINVAL, "`command` must be at most %u bytes without NUL characters",
                                 COMMAND_BYTES_MAX);
        *ret = split_words(json_string_value(v));
        if (!*ret)
            return sbx_error_set(err, -EINVAL, "`command` must have 1 to %d words", COMMAND_ENTRIES_MAX);
        return 1;
    }
    json_t *arr = NULL;
    int r = string_array(body, "command", COMMAND_ENTRIES_MAX, COMMAND_BYTES_MAX, &arr, err);
    if (r < 0)
        return r;
    if (!arr || json_array_size(arr) == 0)
        return sbx_error_set(err, -EINVAL, "`command` must be a string or a non-empty array of strings");
    *ret = json_incref(arr);
    return 1;
}

/* mcp_servers: an object name → server config, passed as --mcp-config {"mcpServers": …}. */
static int mcp_field(json_t *body, json_t **ret, sbx_error *err)
{
    json_t *v = json_object_get(body, "mcp_servers");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return sbx_error_set(err, -EINVAL, "`mcp_servers` must be an object of server name → config");
    if (json_object_size(v) > MCP_SERVERS_MAX)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`mcp_servers` has more than %d entries",
                              MCP_SERVERS_MAX);
    _cleanup_free_ char *s = json_dumps(v, JSON_COMPACT);
    if (!s || strlen(s) > MCP_MAX)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`mcp_servers` is larger than %u bytes",
                              MCP_MAX);
    *ret = v;
    return 1;
}

/* The configuration of a start request, as kept in the record (no env values, MCP server names only). */
struct agent_opts {
    const char *prompt, *model, *system_prompt, *permission_mode, *cwd, *resume;
    json_t *allowed_tools, *mcp, *env, *command;
    int64_t max_turns;
};

static int parse_opts(json_t *body, struct agent_opts *o, sbx_error *err)
{
    static const char *const known[] = {"prompt",          "model",     "system_prompt", "allowed_tools",
                                        "permission_mode", "max_turns", "cwd",           "mcp_servers",
                                        "resume",          "env",       "command"};
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        bool ok = false;
        for (size_t i = 0; i < ELEMENTSOF(known); i++)
            ok = ok || strcmp(k, known[i]) == 0;
        if (!ok)
            return sbx_error_set(err, -EINVAL, "unknown field `%.64s`", k);
    }
    if (prompt_field(body, &o->prompt, err) < 0 ||
        string_option(body, "model", OPTION_MAX, &o->model, err) < 0 ||
        string_option(body, "system_prompt", SYSTEM_PROMPT_MAX, &o->system_prompt, err) < 0 ||
        string_option(body, "permission_mode", OPTION_MAX, &o->permission_mode, err) < 0 ||
        string_option(body, "resume", OPTION_MAX, &o->resume, err) < 0 ||
        jsonreq_string(body, "cwd", PATH_MAX, &o->cwd, err) < 0 ||
        jsonreq_integer(body, "max_turns", 1, MAX_TURNS_MAX, &o->max_turns, err) < 0 ||
        string_array(body, "allowed_tools", TOOLS_MAX, OPTION_MAX, &o->allowed_tools, err) < 0 ||
        mcp_field(body, &o->mcp, err) < 0 ||
        jsonreq_string_map(body, "env", AGENT_ENV_MAX, AGENT_ENV_ENTRY_MAX, &o->env, err) < 0 ||
        command_field(body, &o->command, err) < 0)
        return err->code;
    size_t i;
    json_t *t;
    json_array_foreach(o->allowed_tools, i, t)
    {
        /* --allowedTools takes every word up to the next flag: a "-…" entry would be one. */
        if (json_string_value(t)[0] == '-')
            return sbx_error_set(err, -EINVAL, "`allowed_tools[%zu]` must not start with `-`", i);
    }
    if (o->cwd && o->cwd[0] != '/')
        return sbx_error_set(err, -EINVAL, "`cwd` must be an absolute path");
    return 0;
}

/* The full command line: the agent command, the stream-JSON flags, then the session's options. */
static json_t *build_argv(const struct agent_opts *o)
{
    json_t *argv = json_deep_copy(o->command);
    static const char *const stream_flags[] = {
        "-p", "--output-format", "stream-json", "--input-format", "stream-json", "--verbose"};
    for (size_t i = 0; i < ELEMENTSOF(stream_flags); i++)
        json_array_append_new(argv, json_string(stream_flags[i]));
#define FLAG(name, value)                                                                                    \
    do {                                                                                                     \
        json_array_append_new(argv, json_string(name));                                                      \
        json_array_append_new(argv, json_string(value));                                                     \
    } while (0)
    if (o->model)
        FLAG("--model", o->model);
    if (o->system_prompt)
        FLAG("--system-prompt", o->system_prompt);
    if (o->permission_mode)
        FLAG("--permission-mode", o->permission_mode);
    if (o->max_turns) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%lld", (long long)o->max_turns);
        FLAG("--max-turns", buf);
    }
    if (o->mcp) {
        json_t *cfg = json_pack("{s:O}", "mcpServers", o->mcp);
        _cleanup_free_ char *s = json_dumps(cfg, JSON_COMPACT);
        json_decref(cfg);
        FLAG("--mcp-config", s);
    }
    if (o->resume)
        FLAG("--resume", o->resume);
#undef FLAG
    /* Last: the CLI's --allowedTools takes every following word up to the next flag. */
    if (o->allowed_tools && json_array_size(o->allowed_tools) > 0) {
        json_array_append_new(argv, json_string("--allowedTools"));
        json_array_extend(argv, o->allowed_tools);
    }
    return argv;
}

static json_t *config_json(const struct agent_opts *o, const char *cwd)
{
    json_t *cfg = json_pack("{s:O}", "command", o->command);
    json_object_set_new(cfg, "model", o->model ? json_string(o->model) : json_null());
    json_object_set_new(cfg, "permission_mode",
                        o->permission_mode ? json_string(o->permission_mode) : json_null());
    json_object_set_new(cfg, "system_prompt", o->system_prompt ? json_string(o->system_prompt) : json_null());
    json_object_set_new(cfg, "allowed_tools", o->allowed_tools ? json_incref(o->allowed_tools) : json_null());
    json_object_set_new(cfg, "max_turns", o->max_turns ? json_integer(o->max_turns) : json_null());
    json_object_set_new(cfg, "cwd", cwd ? json_string(cwd) : json_null());
    json_object_set_new(cfg, "resume", o->resume ? json_string(o->resume) : json_null());
    /* MCP server configs may carry credentials: the record keeps only their names. */
    json_t *names = json_array(), *keys = json_array(), *v;
    const char *k;
    if (o->mcp)
        json_object_foreach(o->mcp, k, v) json_array_append_new(names, json_string(k));
    json_object_set_new(cfg, "mcp_servers", names);
    /* Env values are secrets (API keys): only their names are ever kept or shown. */
    if (o->env)
        json_object_foreach(o->env, k, v) json_array_append_new(keys, json_string(k));
    json_object_set_new(cfg, "env_keys", keys);
    return cfg;
}

/* --- helpers shared by the handlers -------------------------------------------------------------- */

/* The shim's statuses of every command of sb by id (a new object; empty when the shim cannot say). */
static json_t *shim_statuses(struct sandbox *sb)
{
    json_t *by_id = json_object(), *req = json_pack("{s:s}", "op", "list"), *resp = NULL, *v;
    sbx_error err = {0};
    size_t i;
    if (sandbox_shim_call(sb, req, &resp, &err) >= 0)
        json_array_foreach(json_object_get(resp, "commands"), i, v)
        {
            const char *id = json_string_value(json_object_get(v, "id"));
            if (id)
                json_object_set(by_id, id, v);
        }
    json_decref(req);
    json_decref(resp);
    return by_id;
}

/* The status of session aid: a new reference, NULL when the shim does not know it (or is down). */
static json_t *shim_status(struct sandbox *sb, const char *aid)
{
    json_t *req = json_pack("{s:s, s:s}", "op", "status", "id", aid), *resp = NULL, *st = NULL;
    sbx_error err = {0};
    if (sandbox_shim_call(sb, req, &resp, &err) >= 0)
        st = json_incref(json_object_get(resp, "command"));
    json_decref(req);
    json_decref(resp);
    return st;
}

static bool status_running(json_t *st)
{
    const char *s = json_string_value(json_object_get(st, "state"));
    return s && strcmp(s, "running") == 0;
}

/* Counts running sessions and makes room for one more record (removing the oldest exited one). */
static int make_room(struct sandbox *sb, sbx_error *err)
{
    json_t *ids = record_ids(sb->state_dir), *st = shim_statuses(sb), *v;
    size_t i, running = 0;
    const char *oldest = NULL;
    json_int_t oldest_ms = INT64_MAX;
    json_array_foreach(ids, i, v)
    {
        const char *aid = json_string_value(v);
        if (status_running(json_object_get(st, aid))) {
            running++;
            continue;
        }
        json_t *rec = record_load(sb->state_dir, aid);
        json_int_t ms = json_integer_value(json_object_get(rec, "created_ms"));
        json_decref(rec);
        if (ms < oldest_ms) {
            oldest_ms = ms;
            oldest = aid;
        }
    }
    int r = 0;
    if (running >= AGENTS_RUNNING_MAX)
        r = sbx_error_setk(err, -EAGAIN, "resource_exhausted", 429,
                           "sandbox `%s` already runs %d agent sessions (the limit)", sb->id,
                           AGENTS_RUNNING_MAX);
    else if (json_array_size(ids) >= AGENTS_KEPT_MAX && oldest)
        record_remove(sb->state_dir, oldest);
    json_decref(ids);
    json_decref(st);
    return r;
}

/* The sandbox and the record of session {aid}, or an answered 404. */
static json_t *lookup(struct api_ctx *c, struct sandbox **ret_sb)
{
    struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return NULL;
    json_t *rec = record_load(sb->state_dir, c->command_id);
    if (!rec) {
        http_respond_error(c->req, 404, "not_found", "agent session `%s` not found in sandbox `%s`",
                           c->command_id, sb->id);
        sandbox_unref(sb);
        return NULL;
    }
    *ret_sb = sb;
    return rec;
}

/* Like lookup, for a request that needs the session's process: 409 when it has exited. */
static json_t *lookup_running(struct api_ctx *c, struct sandbox **ret_sb, json_t **ret_status)
{
    struct sandbox *sb;
    json_t *rec = lookup(c, &sb);
    if (!rec)
        return NULL;
    sbx_error err = {0};
    json_t *st = NULL;
    if (sandbox_need_up(sb, &err) < 0 || !status_running(st = shim_status(sb, c->command_id))) {
        if (!err.code)
            sbx_error_setk(&err, -EBUSY, "conflict", 409, "agent session `%s` has exited", c->command_id);
        api_reply_error(c->req, &err);
        json_decref(st);
        json_decref(rec);
        sandbox_unref(sb);
        return NULL;
    }
    *ret_sb = sb;
    *ret_status = st;
    return rec;
}

/* --- handlers ------------------------------------------------------------------------------------ */

static void start_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    struct agent_opts o = {0};
    if (parse_opts(body, &o, &err) < 0) {
        json_decref(o.command);
        return api_reply_error(c->req, &err);
    }
    struct sandbox *sb = api_sandbox_awake(c);
    json_t *cmd = NULL, *req = NULL, *resp = NULL, *rec = NULL;
    if (!sb)
        goto out;
    if (sandbox_need_up(sb, &err) < 0 || make_room(sb, &err) < 0) {
        api_reply_error(c->req, &err);
        goto out;
    }
    char aid[SBX_ID_MAX + 1];
    id_generate(aid, sizeof(aid), AGENT_ID_PREFIX);
    /* A native command body (docs/api.md), so the agent runs exactly as any command does. It lives until
     * it exits or is killed, not until nobody watches (idle_timeout -1); its log stays an hour after. */
    cmd = json_pack("{s:s, s:o, s:b, s:i, s:i}", "id", aid, "command", build_argv(&o), "stdin_open", 1,
                    "idle_timeout", -1, "ttl_seconds", 3600);
    if (o.cwd)
        json_object_set_new(cmd, "cwd", json_string(o.cwd));
    if (o.env)
        json_object_set(cmd, "env", o.env);
    if (o.prompt) {
        _cleanup_free_ char *line = user_line(o.prompt);
        json_object_set_new(cmd, "stdin", json_string(line));
    }
    bool wait = false;
    if (api_command_exec_request(sb, cmd, &req, &wait, &err) < 0 ||
        sandbox_shim_call(sb, req, &resp, &err) < 0) {
        api_reply_error(c->req, &err);
        goto out;
    }
    json_t *status = json_object_get(resp, "command");
    const char *ecode = json_string_value(json_object_get(json_object_get(status, "error"), "code"));
    if (ecode && strcmp(ecode, "command_not_found") == 0) {
        /* The shim reports an exec that found no program as a command that exited 127. */
        _cleanup_free_ char *words = json_dumps(o.command, JSON_COMPACT);
        sbx_error_setk(&err, -ENOENT, "command_not_found", 422,
                       "the agent command %s is not installed in sandbox `%s` (pass `command`, or use a "
                       "snapshot with the claude CLI)",
                       words, sb->id);
        api_reply_error(c->req, &err);
        goto out;
    }
    rec = json_pack("{s:s, s:I, s:o, s:i, s:i, s:i, s:n, s:n, s:n}", "id", aid, "created_ms",
                    (json_int_t)now_ms(), "config",
                    config_json(&o, json_string_value(json_object_get(req, "cwd"))), "prompts",
                    o.prompt ? 1 : 0, "turns", 0, "watched_offset", 0, "session_id", "last_event_ms", "exit");
    int r = record_save(sb->state_dir, aid, rec);
    if (r < 0) {
        /* Without its record the session could not be found again: end it. */
        json_t *kill = json_pack("{s:s, s:s}", "op", "kill", "id", aid), *kresp = NULL;
        sbx_error kerr = {0};
        (void)sandbox_shim_call(sb, kill, &kresp, &kerr);
        json_decref(kill);
        json_decref(kresp);
        sbx_error_set(&err, r, "save the agent session's record: %s", strerror(-r));
        api_reply_error(c->req, &err);
        goto out;
    }
    log_info("agent session %s started in %s", aid, sb->id);
    watcher_ensure(c->d, sb, rec);
    api_reply_json(c->req, 201, agent_json(sb->id, rec, status));
out:
    json_decref(o.command);
    json_decref(cmd);
    json_decref(req);
    json_decref(resp);
    json_decref(rec);
    sandbox_unref(sb);
}

void api_agents_create(struct api_ctx *c)
{
    api_read_json(c, start_with_body);
}

void api_agents_list(struct api_ctx *c)
{
    struct sandbox *sb = api_sandbox_awake(c);
    if (!sb)
        return;
    json_t *ids = record_ids(sb->state_dir), *st = shim_statuses(sb), *out = json_array(), *v;
    size_t i;
    json_array_foreach(ids, i, v)
    {
        json_t *rec = record_load(sb->state_dir, json_string_value(v));
        if (!rec)
            continue;
        json_t *status = json_object_get(st, json_string_value(v));
        if (status_running(status))
            watcher_ensure(c->d, sb, rec);
        json_array_append_new(out, agent_json(sb->id, rec, status));
        json_decref(rec);
    }
    /* Oldest first, as sessions were started (readdir has no order). */
    size_t n = json_array_size(out);
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0; b--) {
            const char *x =
                json_string_value(json_object_get(json_array_get(out, b - 1), "started_at")) ?: "";
            const char *y = json_string_value(json_object_get(json_array_get(out, b), "started_at")) ?: "";
            if (strcmp(x, y) <= 0)
                break;
            json_t *t = json_incref(json_array_get(out, b));
            json_array_remove(out, b);
            json_array_insert_new(out, b - 1, t);
        }
    api_reply_json(c->req, 200, json_pack("{s:o}", "agents", out));
    json_decref(ids);
    json_decref(st);
    sandbox_unref(sb);
}

void api_agents_get(struct api_ctx *c)
{
    struct sandbox *sb;
    json_t *rec = lookup(c, &sb);
    if (!rec)
        return;
    json_t *st = shim_status(sb, c->command_id);
    if (status_running(st))
        watcher_ensure(c->d, sb, rec);
    api_reply_json(c->req, 200, agent_json(sb->id, rec, st));
    json_decref(st);
    json_decref(rec);
    sandbox_unref(sb);
}

static void prompt_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    const char *prompt = NULL;
    if (prompt_field(body, &prompt, &err) < 0)
        return api_reply_error(c->req, &err);
    if (!prompt) {
        sbx_error_set(&err, -EINVAL, "`prompt` is required");
        return api_reply_error(c->req, &err);
    }
    struct sandbox *sb;
    json_t *st;
    json_t *rec = lookup_running(c, &sb, &st);
    if (!rec)
        return;
    _cleanup_free_ char *line = user_line(prompt);
    json_int_t offset = json_integer_value(json_object_get(st, "stdout_bytes"));
    if (write_stdin(sb, c->command_id, line, &err) < 0) {
        api_reply_error(c->req, &err);
    } else {
        (void)bump_prompts(sb, rec);
        json_t *a = agent_json(sb->id, rec, st);
        /* The events of this turn start at or after here. */
        json_object_set_new(a, "offset", json_integer(offset));
        api_reply_json(c->req, 200, a);
    }
    json_decref(st);
    json_decref(rec);
    sandbox_unref(sb);
}

void api_agents_prompt(struct api_ctx *c)
{
    api_read_json(c, prompt_with_body);
}

static void interrupt_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    const char *method = "control";
    if (jsonreq_string(body, "method", 16, &method, &err) < 0)
        return api_reply_error(c->req, &err);
    bool by_signal = strcmp(method, "signal") == 0;
    if (!by_signal && strcmp(method, "control") != 0) {
        sbx_error_set(&err, -EINVAL, "`method` must be `control` or `signal`");
        return api_reply_error(c->req, &err);
    }
    struct sandbox *sb;
    json_t *st;
    json_t *rec = lookup_running(c, &sb, &st);
    if (!rec)
        return;
    char rid[SBX_ID_MAX + 1] = "";
    int r;
    if (by_signal) {
        json_t *req = json_pack("{s:s, s:s, s:i}", "op", "signal", "id", c->command_id, "signal", SIGINT),
               *resp = NULL;
        r = sandbox_shim_call(sb, req, &resp, &err);
        json_decref(req);
        json_decref(resp);
    } else {
        _cleanup_free_ char *line = control_line(json_pack("{s:s}", "subtype", "interrupt"), rid);
        r = write_stdin(sb, c->command_id, line, &err);
    }
    if (r < 0)
        api_reply_error(c->req, &err);
    else
        api_reply_json(c->req, 202,
                       json_pack("{s:s, s:s?, s:I}", "method", by_signal ? "signal" : "control", "request_id",
                                 rid[0] ? rid : NULL, "offset",
                                 json_integer_value(json_object_get(st, "stdout_bytes"))));
    json_decref(st);
    json_decref(rec);
    sandbox_unref(sb);
}

void api_agents_interrupt(struct api_ctx *c)
{
    api_read_json(c, interrupt_with_body);
}

/* PATCH: model and permission_mode change live through the control protocol (set_model,
 * set_permission_mode); the other options are fixed for a session's life (start a new one with
 * `resume`). */
static void patch_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    const char *model = NULL, *mode = NULL, *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "model") != 0 && strcmp(k, "permission_mode") != 0) {
            sbx_error_set(&err, -EINVAL,
                          "`%.64s` cannot change during a session (only `model` and `permission_mode` can); "
                          "start a new session with `resume`",
                          k);
            return api_reply_error(c->req, &err);
        }
    }
    if (string_option(body, "model", OPTION_MAX, &model, &err) < 0 ||
        string_option(body, "permission_mode", OPTION_MAX, &mode, &err) < 0)
        return api_reply_error(c->req, &err);
    struct sandbox *sb;
    json_t *st;
    json_t *rec = lookup_running(c, &sb, &st);
    if (!rec)
        return;
    json_t *cfg = json_object_get(rec, "config");
    char rid[SBX_ID_MAX + 1];
    if (model) {
        _cleanup_free_ char *line =
            control_line(json_pack("{s:s, s:s}", "subtype", "set_model", "model", model), rid);
        if (write_stdin(sb, c->command_id, line, &err) < 0)
            goto fail;
        json_object_set_new(cfg, "model", json_string(model));
    }
    if (mode) {
        _cleanup_free_ char *line =
            control_line(json_pack("{s:s, s:s}", "subtype", "set_permission_mode", "mode", mode), rid);
        if (write_stdin(sb, c->command_id, line, &err) < 0)
            goto fail;
        json_object_set_new(cfg, "permission_mode", json_string(mode));
    }
    int r = record_save(sb->state_dir, c->command_id, rec);
    if (r < 0) {
        sbx_error_set(&err, r, "save the agent session's record: %s", strerror(-r));
        goto fail;
    }
    api_reply_json(c->req, 200, agent_json(sb->id, rec, st));
    goto out;
fail:
    api_reply_error(c->req, &err);
out:
    json_decref(st);
    json_decref(rec);
    sandbox_unref(sb);
}

void api_agents_patch(struct api_ctx *c)
{
    api_read_json(c, patch_with_body);
}

/* DELETE: kills the session (SIGKILL to its process group); its record stays, as exited. */
void api_agents_delete(struct api_ctx *c)
{
    struct sandbox *sb;
    json_t *rec = lookup(c, &sb);
    if (!rec)
        return;
    json_t *st = shim_status(sb, c->command_id);
    sbx_error err = {0};
    if (status_running(st)) {
        json_t *req = json_pack("{s:s, s:s}", "op", "kill", "id", c->command_id), *resp = NULL;
        int r = sandbox_shim_call(sb, req, &resp, &err);
        json_decref(req);
        json_decref(resp);
        if (r < 0) {
            api_reply_error(c->req, &err);
            goto out;
        }
    }
    api_reply_json(c->req, 204, NULL);
out:
    json_decref(st);
    json_decref(rec);
    sandbox_unref(sb);
}

/* --- client streams ------------------------------------------------------------------------------ */

static void sse_on_abort(struct http_request *req, void *userdata)
{
    stream_free(userdata);
}

static void sse_on_drain(struct http_request *req, void *userdata)
{
    struct agent_stream *s = userdata;
    s->paused = false;
    stream_pump(s);
}

static void queue_stdin(struct agent_stream *s, const char *line)
{
    size_t len = strlen(line);
    if (s->out.len + len > SHIM_WRITE_MAX) {
        http_ws_close(s->ws, 1009, "prompt backlog too large");
        return;
    }
    uint8_t hdr[SHIM_FRAME_HEADER];
    shim_frame_header(hdr, SHIM_FRAME_STDIN, (uint32_t)len);
    sbx_buf_append(&s->out, hdr, sizeof(hdr));
    sbx_buf_append(&s->out, line, len);
    stream_pump(s);
}

/* Client messages on a session's WebSocket: {"type":"prompt","prompt":"…"} and {"type":"interrupt"}. */
static void ws_on_text(struct http_ws *ws, const char *data, size_t len, void *userdata)
{
    struct agent_stream *s = userdata;
    json_t *m = json_loadb(data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    sbx_error err = {0};
    const char *prompt = NULL;
    if (!type) {
        http_ws_close(ws, 1003, "expected a JSON object with a type");
    } else if (strcmp(type, "prompt") == 0) {
        if (prompt_field(m, &prompt, &err) <= 0) {
            http_ws_close(ws, err.http == 413 ? 1009 : 1003, "prompt needs a non-empty `prompt` string");
        } else {
            _cleanup_free_ char *line = user_line(prompt);
            json_t *rec = record_load(s->state_dir, s->aid);
            if (rec) {
                json_object_set_new(rec, "prompts",
                                    json_integer(json_integer_value(json_object_get(rec, "prompts")) + 1));
                (void)record_save(s->state_dir, s->aid, rec);
                json_decref(rec);
            }
            queue_stdin(s, line);
        }
    } else if (strcmp(type, "interrupt") == 0) {
        char rid[SBX_ID_MAX + 1];
        _cleanup_free_ char *line = control_line(json_pack("{s:s}", "subtype", "interrupt"), rid);
        queue_stdin(s, line);
    } else {
        http_ws_close(ws, 1003, "unknown message type");
    }
    json_decref(m);
}

static void ws_on_drain(struct http_ws *ws, void *userdata)
{
    struct agent_stream *s = userdata;
    s->paused = false;
    stream_pump(s);
}

static void ws_on_close(struct http_ws *ws, int code, void *userdata)
{
    stream_free(userdata);
}

static const struct http_ws_callbacks ws_callbacks = {
    .on_text = ws_on_text,
    .on_drain = ws_on_drain,
    .on_close = ws_on_close,
};

/* GET …/agents/{aid}/stream?offset=N&stderr=true: SSE or WebSocket, events from stdout offset N (an
 * event's next_offset resumes right after it). */
void api_agents_stream(struct api_ctx *c)
{
    sbx_error err = {0};
    const char *q = http_query_get(c->req, "offset");
    uint64_t off = 0;
    if (q && *q) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(q, &end, 10);
        if (errno || *end || q[0] == '-' || n > INT64_MAX) {
            sbx_error_set(&err, -EINVAL, "`offset` must be a non-negative integer");
            return api_reply_error(c->req, &err);
        }
        off = n;
    }
    const char *se = http_query_get(c->req, "stderr");
    bool with_stderr = se && (strcmp(se, "true") == 0 || strcmp(se, "1") == 0);
    struct sandbox *sb;
    json_t *rec = lookup(c, &sb);
    if (!rec)
        return;
    json_t *st = NULL;
    struct agent_stream *s = NULL;
    if (sandbox_need_up(sb, &err) < 0) {
        api_reply_error(c->req, &err);
        goto out;
    }
    st = shim_status(sb, c->command_id);
    if (!st) {
        sbx_error_setk(&err, -ENOENT, "expired", 410, "the events of agent session `%s` are no longer kept",
                       c->command_id);
        api_reply_error(c->req, &err);
        goto out;
    }
    bool ws = http_request_is_websocket(c->req);
    if (stream_open(c->d, sb, c->command_id, ws ? STREAM_WS : STREAM_SSE, off, with_stderr, &s, &err) < 0) {
        api_reply_error(c->req, &err);
        goto out;
    }
    s->sb = sandbox_ref(sb);
    sandbox_attach(sb);
    if (ws) {
        if (http_websocket_accept(c->req, &ws_callbacks, s, &s->ws) < 0) {
            stream_free(s);
            goto out; /* the server answered the failed handshake */
        }
    } else {
        s->req = c->req;
        http_request_on_abort(c->req, sse_on_abort, s);
        http_request_on_drain(c->req, sse_on_drain, s);
        http_sse_begin(c->req);
        http_sse_keepalive(c->req, SSE_KEEPALIVE_USEC);
    }
    stream_update_watch(s);
out:
    json_decref(st);
    json_decref(rec);
    sandbox_unref(sb);
}
