/* libsbx: /v1/sandboxes/{id}/commands — start, wait, SSE stream, stdin, signals. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sse.h"

#define OOM(err) client_err(err, -ENOMEM, 0, "internal", "out of memory")
#define STDIN_CHUNK_MAX ((size_t)1 << 20) /* the daemon takes up to 2 MiB per stdin body */
#define STDIN_FIELD_MAX ((size_t)1 << 20) /* the `stdin` JSON field limit */

/* Stdin that cannot travel as the JSON `stdin` string (binary, NUL bytes or too long) is written through
 * the stdin endpoint right after the start. */
static bool stdin_inline(const struct sbx_exec_opts *o)
{
    return o->stdin_len == 0 ||
           (o->stdin_len <= STDIN_FIELD_MAX && utf8_text_valid(o->stdin_data, o->stdin_len));
}

static int exec_body(const struct sbx_exec_opts *o, bool wait, json_t **ret, struct sbx_err *err)
{
    if (!o || (!o->argv && !o->command) || (o->argv && !o->argv[0]))
        return client_err(err, -EINVAL, 0, "invalid_argument", "no command given");
    json_t *b = json_object();
    if (!b)
        return OOM(err);
    int r = 0;
    if (o->argv) {
        json_t *a = json_array();
        r = a ? json_object_set_new(b, "command", a) : -1;
        for (size_t i = 0; r >= 0 && o->argv[i]; i++) {
            json_t *s = json_string(o->argv[i]);
            if (!s) {
                json_decref(b);
                return client_err(err, -EINVAL, 0, "invalid_argument", "argv[%zu] is not valid UTF-8", i);
            }
            r = json_array_append_new(a, s);
        }
    } else {
        json_t *s = json_string(o->command);
        if (!s) {
            json_decref(b);
            return client_err(err, -EINVAL, 0, "invalid_argument", "command is not valid UTF-8");
        }
        r = json_object_set_new(b, "command", s);
    }
    bool inline_stdin = stdin_inline(o);
    if (r >= 0 && o->cwd)
        r = json_object_set_new(b, "cwd", json_string(o->cwd));
    if (r >= 0 && o->user)
        r = json_object_set_new(b, "user", json_string(o->user));
    if (r >= 0 && o->timeout > 0)
        r = json_object_set_new(b, "timeout", json_real(o->timeout));
    if (r >= 0 && o->id)
        r = json_object_set_new(b, "id", json_string(o->id));
    if (r >= 0 && o->stdin_len > 0 && inline_stdin)
        r = json_object_set_new(b, "stdin", json_stringn(o->stdin_data, o->stdin_len));
    if (r >= 0 && (o->stdin_open || !inline_stdin))
        r = json_object_set_new(b, "stdin_open", json_true());
    if (r >= 0 && wait)
        r = json_object_set_new(b, "wait", json_true());
    if (r >= 0 && o->pty)
        r = json_object_set_new(b, "pty", json_true());
    if (r >= 0 && o->pty && o->cols)
        r = json_object_set_new(b, "cols", json_integer(o->cols));
    if (r >= 0 && o->pty && o->rows)
        r = json_object_set_new(b, "rows", json_integer(o->rows));
    if (r < 0) {
        json_decref(b);
        return OOM(err);
    }
    r = json_set_kv_object(b, "env", o->env);
    if (r < 0) {
        json_decref(b);
        return r == -ENOMEM ? OOM(err) : client_err(err, r, 0, "invalid_argument", "env entries must be K=V");
    }
    *ret = b;
    return 0;
}

static int command_path(struct lbuf *b, const char *sid, const char *cid, const char *suffix)
{
    int r = client_sandbox_path(b, sid, "/commands");
    if (r >= 0 && cid) {
        r = lbuf_appends(b, "/");
        if (r >= 0)
            r = url_escape(b, cid);
    }
    if (r >= 0 && suffix)
        r = lbuf_appends(b, suffix);
    return r;
}

/* Exit details of a command object. */
static void exit_info(json_t *cmd, int *ret_code, int *ret_signal, const char **ret_error)
{
    json_t *code = json_object_get(cmd, "exit_code");
    *ret_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
    *ret_signal = (int)json_integer_value(json_object_get(cmd, "signal"));
    *ret_error = json_string_value(json_object_get(json_object_get(cmd, "error"), "code"));
}

static int start(struct sbx_client *c, const char *sid, const struct sbx_exec_opts *o, bool wait,
                 json_t **ret_doc, struct sbx_err *err)
{
    if (!c || !sid)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    json_t *body = NULL;
    int r = exec_body(o, wait, &body, err);
    if (r < 0)
        return r;
    struct lbuf path = LBUF_INIT;
    if (command_path(&path, sid, NULL, NULL) < 0) {
        json_decref(body);
        return OOM(err);
    }
    json_t *doc = NULL;
    r = client_json(c, "POST", path.base, body, &doc, err);
    lbuf_done(&path);
    json_decref(body);
    if (r < 0)
        return r;
    if (!json_string_value(json_object_get(doc, "id"))) {
        json_decref(doc);
        return client_err(err, -EPROTO, 0, "bad_response", "command without an id");
    }
    if (!stdin_inline(o)) {
        r = sbx_exec_stdin(c, sid, json_string_value(json_object_get(doc, "id")), o->stdin_data, o->stdin_len,
                           !o->stdin_open, err);
        if (r < 0) {
            json_decref(doc);
            return r;
        }
    }
    *ret_doc = doc;
    return 0;
}

SBX_PUBLIC int sbx_exec_start(struct sbx_client *c, const char *sandbox_id, const struct sbx_exec_opts *opts,
                              char **ret_cmd_id, struct sbx_err *err)
{
    json_t *doc = NULL;
    int r = start(c, sandbox_id, opts, false, &doc, err);
    if (r < 0)
        return r;
    if (ret_cmd_id) {
        *ret_cmd_id = strdup(json_string_value(json_object_get(doc, "id")));
        if (!*ret_cmd_id)
            r = OOM(err);
    }
    json_decref(doc);
    return r;
}

struct stream_state {
    const struct sbx_exec_callbacks *cb;
    struct sse_parser parser;
    struct lbuf chunk;
    bool exited;
    struct sbx_err *err;
};

static int on_event(const char *event, const char *data, size_t len, void *userdata)
{
    struct stream_state *s = userdata;
    bool output = strcmp(event, "output") == 0;
    if (!output && strcmp(event, "exit") != 0)
        return 0;
    json_error_t jerr;
    json_t *doc = json_loadb(data, len, 0, &jerr);
    if (!doc)
        return json_error_code(&jerr) == json_error_out_of_memory
                   ? OOM(s->err)
                   : client_err(s->err, -EPROTO, 200, "bad_response", "bad SSE event: %s", jerr.text);
    int r = 0;
    if (output) {
        const char *stream = json_string_value(json_object_get(doc, "stream"));
        json_t *d = json_object_get(doc, "data");
        const char *enc = json_string_value(json_object_get(doc, "encoding"));
        enum sbx_stream st = stream && strcmp(stream, "stderr") == 0 ? SBX_STREAM_STDERR : SBX_STREAM_STDOUT;
        uint64_t offset = (uint64_t)json_integer_value(json_object_get(doc, "offset"));
        if (!json_is_string(d)) {
            r = client_err(s->err, -EPROTO, 200, "bad_response", "output event without data");
        } else if (enc && strcmp(enc, "base64") == 0) {
            lbuf_reset(&s->chunk);
            r = base64_decode_append(&s->chunk, json_string_value(d), json_string_length(d));
            if (r == -ENOMEM)
                r = OOM(s->err);
            else if (r < 0)
                r = client_err(s->err, -EPROTO, 200, "bad_response", "bad base64 in output event");
            else if (s->cb->on_output)
                r = s->cb->on_output(st, offset, s->chunk.base, s->chunk.len, s->cb->userdata);
        } else if (s->cb->on_output) {
            r = s->cb->on_output(st, offset, json_string_value(d), json_string_length(d), s->cb->userdata);
        }
    } else if (!s->exited) {
        int code, sig;
        const char *error;
        exit_info(doc, &code, &sig, &error);
        s->exited = true;
        if (s->cb->on_exit)
            r = s->cb->on_exit(code, sig, error, s->cb->userdata);
    }
    json_decref(doc);
    return r;
}

static int stream_sink(const char *data, size_t len, void *userdata)
{
    struct stream_state *s = userdata;
    int r = sse_parser_feed(&s->parser, data, len);
    if (r == -ENOMEM && !s->err->code[0])
        return OOM(s->err);
    if (r == -E2BIG && !s->err->code[0])
        return client_err(s->err, r, 200, "bad_response", "SSE line too long");
    return r;
}

SBX_PUBLIC int sbx_exec_stream(struct sbx_client *c, const char *sandbox_id, const char *cmd_id,
                               uint64_t stdout_offset, uint64_t stderr_offset,
                               const struct sbx_exec_callbacks *cb, struct sbx_err *err)
{
    static const struct sbx_exec_callbacks no_callbacks = {0};
    if (!c || !sandbox_id || !cmd_id)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    struct lbuf path = LBUF_INIT;
    if (command_path(&path, sandbox_id, cmd_id, NULL) < 0 ||
        lbuf_printf(&path, "/stream?stdout_offset=%llu&stderr_offset=%llu", (unsigned long long)stdout_offset,
                    (unsigned long long)stderr_offset) < 0) {
        lbuf_done(&path);
        return OOM(err);
    }
    /* Errors found while parsing go to cb_err: client_request() would overwrite them with "aborted". */
    struct sbx_err cb_err = {0};
    struct stream_state s = {.cb = cb ? cb : &no_callbacks, .chunk = LBUF_INIT, .err = &cb_err};
    sse_parser_init(&s.parser, on_event, &s);
    struct http_req req = {
        .method = "GET", .path = path.base, .sse = true, .sink = stream_sink, .sink_data = &s};
    struct http_resp resp = {.body = LBUF_INIT};
    int r = client_request(c, &req, &resp, err);
    if (r < 0 && cb_err.code[0] && err)
        *err = cb_err;
    lbuf_done(&resp.body);
    lbuf_done(&path);
    lbuf_done(&s.chunk);
    sse_parser_done(&s.parser);
    if (r < 0)
        return r;
    if (!s.exited)
        return client_err(err, -ECONNRESET, (int)resp.status, "unavailable",
                          "the output stream ended before the command's exit");
    return 0;
}

SBX_PUBLIC void sbx_exec_result_done(struct sbx_exec_result *r)
{
    if (!r)
        return;
    free(r->id);
    free(r->stdout_data);
    free(r->stderr_data);
    *r = (struct sbx_exec_result){0};
}

struct collect {
    struct lbuf out, err;
    int exit_code, signal;
    char error_code[32];
};

static int collect_output(enum sbx_stream stream, uint64_t offset, const void *data, size_t len,
                          void *userdata)
{
    struct collect *col = userdata;
    return lbuf_append(stream == SBX_STREAM_STDERR ? &col->err : &col->out, data, len);
}

static int collect_exit(int exit_code, int sig, const char *error_code, void *userdata)
{
    struct collect *col = userdata;
    col->exit_code = exit_code;
    col->signal = sig;
    snprintf(col->error_code, sizeof(col->error_code), "%s", error_code ? error_code : "");
    return 0;
}

/* Decodes the "stdout"/"stderr" member of a waited-for command object (text or base64). */
static int wait_output(json_t *doc, const char *key, char **ret, size_t *ret_len, bool *ret_truncated)
{
    char enc_key[32], trunc_key[32];
    snprintf(enc_key, sizeof(enc_key), "%s_encoding", key);
    snprintf(trunc_key, sizeof(trunc_key), "%s_truncated", key);
    json_t *v = json_object_get(doc, key);
    const char *enc = json_string_value(json_object_get(doc, enc_key));
    *ret_truncated = json_is_true(json_object_get(doc, trunc_key));
    struct lbuf b = LBUF_INIT;
    int r = 0;
    if (json_is_string(v)) {
        if (enc && strcmp(enc, "base64") == 0)
            r = base64_decode_append(&b, json_string_value(v), json_string_length(v));
        else
            r = lbuf_append(&b, json_string_value(v), json_string_length(v));
    }
    if (r < 0) {
        lbuf_done(&b);
        return r;
    }
    *ret_len = b.len;
    *ret = lbuf_steal(&b);
    return *ret ? 0 : -ENOMEM;
}

SBX_PUBLIC int sbx_exec_run(struct sbx_client *c, const char *sandbox_id, const struct sbx_exec_opts *opts,
                            struct sbx_exec_result *ret, struct sbx_err *err)
{
    if (!ret || !opts)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    struct sbx_exec_result res = {0};
    int r;
    if (opts->stdin_open || !stdin_inline(opts)) {
        /* Stdin goes through the stdin endpoint, so the start cannot block: start, then stream. */
        r = sbx_exec_start(c, sandbox_id, opts, &res.id, err);
        if (r < 0)
            return r;
        struct collect col = {.out = LBUF_INIT, .err = LBUF_INIT, .exit_code = -1};
        struct sbx_exec_callbacks cb = {
            .on_output = collect_output, .on_exit = collect_exit, .userdata = &col};
        r = sbx_exec_stream(c, sandbox_id, res.id, 0, 0, &cb, err);
        res.exit_code = col.exit_code;
        res.signal = col.signal;
        memcpy(res.error_code, col.error_code, sizeof(res.error_code));
        res.stdout_len = col.out.len;
        res.stderr_len = col.err.len;
        res.stdout_data = lbuf_steal(&col.out);
        res.stderr_data = lbuf_steal(&col.err);
        lbuf_done(&col.out);
        lbuf_done(&col.err);
        if (r >= 0 && (!res.stdout_data || !res.stderr_data))
            r = OOM(err);
    } else {
        json_t *doc = NULL;
        r = start(c, sandbox_id, opts, true, &doc, err);
        if (r < 0)
            return r;
        const char *error;
        exit_info(doc, &res.exit_code, &res.signal, &error);
        snprintf(res.error_code, sizeof(res.error_code), "%s", error ? error : "");
        res.id = strdup(json_string_value(json_object_get(doc, "id")));
        r = res.id ? 0 : -ENOMEM;
        if (r >= 0)
            r = wait_output(doc, "stdout", &res.stdout_data, &res.stdout_len, &res.stdout_truncated);
        if (r >= 0)
            r = wait_output(doc, "stderr", &res.stderr_data, &res.stderr_len, &res.stderr_truncated);
        json_decref(doc);
        if (r == -ENOMEM)
            r = OOM(err);
        else if (r < 0)
            r = client_err(err, -EPROTO, 200, "bad_response", "bad base64 output in the answer");
    }
    if (r < 0) {
        sbx_exec_result_done(&res);
        return r;
    }
    *ret = res;
    return 0;
}

SBX_PUBLIC int sbx_exec_stdin(struct sbx_client *c, const char *sandbox_id, const char *cmd_id,
                              const void *data, size_t len, bool close, struct sbx_err *err)
{
    if (!c || !sandbox_id || !cmd_id || (len && !data))
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    struct lbuf path = LBUF_INIT;
    if (command_path(&path, sandbox_id, cmd_id, "/stdin") < 0)
        return OOM(err);
    size_t base_len = path.len;
    const char *p = data;
    int r = 0;
    for (;;) {
        size_t n = len > STDIN_CHUNK_MAX ? STDIN_CHUNK_MAX : len;
        bool last = n == len;
        if (n == 0 && !close)
            break;
        path.len = base_len;
        path.base[base_len] = 0;
        if (last && close && lbuf_appends(&path, "?close=true") < 0) {
            r = OOM(err);
            break;
        }
        struct http_req req = {
            .method = "POST", .path = path.base, .body_kind = HTTP_BODY_OCTET, .body = p, .body_len = n};
        struct http_resp resp = {.body = LBUF_INIT};
        r = client_request(c, &req, &resp, err);
        lbuf_done(&resp.body);
        if (r < 0 || last)
            break;
        p += n;
        len -= n;
    }
    lbuf_done(&path);
    return r < 0 ? r : 0;
}

static int command_post(struct sbx_client *c, const char *sid, const char *cid, const char *suffix,
                        json_t *body, struct sbx_err *err)
{
    if (!c || !sid || !cid) {
        json_decref(body);
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    }
    struct lbuf path = LBUF_INIT;
    if (command_path(&path, sid, cid, suffix) < 0) {
        json_decref(body);
        return OOM(err);
    }
    int r = client_json(c, "POST", path.base, body, NULL, err);
    lbuf_done(&path);
    json_decref(body);
    return r < 0 ? r : 0;
}

SBX_PUBLIC int sbx_exec_signal(struct sbx_client *c, const char *sandbox_id, const char *cmd_id, int signal,
                               struct sbx_err *err)
{
    json_t *body = json_pack("{s:i}", "signal", signal);
    if (!body)
        return OOM(err);
    return command_post(c, sandbox_id, cmd_id, "/signal", body, err);
}

SBX_PUBLIC int sbx_exec_resize(struct sbx_client *c, const char *sandbox_id, const char *cmd_id,
                               unsigned cols, unsigned rows, struct sbx_err *err)
{
    json_t *body = json_pack("{s:I, s:I}", "cols", (json_int_t)cols, "rows", (json_int_t)rows);
    if (!body)
        return OOM(err);
    return command_post(c, sandbox_id, cmd_id, "/resize", body, err);
}

SBX_PUBLIC int sbx_exec_kill(struct sbx_client *c, const char *sandbox_id, const char *cmd_id,
                             struct sbx_err *err)
{
    return command_post(c, sandbox_id, cmd_id, "/kill", NULL, err);
}

SBX_PUBLIC int sbx_exec_get(struct sbx_client *c, const char *sandbox_id, const char *cmd_id, char **ret_json,
                            struct sbx_err *err)
{
    if (!c || !sandbox_id || !cmd_id || !ret_json)
        return client_err(err, -EINVAL, 0, "invalid_argument", "missing argument");
    struct lbuf path = LBUF_INIT;
    if (command_path(&path, sandbox_id, cmd_id, NULL) < 0)
        return OOM(err);
    int r = sbx_request(c, "GET", path.base, NULL, ret_json, err);
    lbuf_done(&path);
    return r < 0 ? r : 0;
}
