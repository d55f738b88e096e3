/* libsbx and sbx CLI internals that need no daemon: URL escaping, base64, UTF-8 checks, the incremental
 * SSE parser (every split point, CR/LF variants, multi-line data), request bodies and paths (lifecycle,
 * PATCH, list filters, keys), size/duration parsing, `sbx exec`/`run`/`update`/`renew` argument parsing,
 * and transport errors against a closed port. The library and CLI sources are included
 * directly (STYLE.md I: the include trick), so their static helpers are reachable. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "../../cli/args.c"
#include "../../cli/cli.h"
#include "../../lib/client.c"
#include "../../lib/commands.c"
#include "../../lib/encode.c"
#include "../../lib/files.c"
#include "../../lib/keys.c"
#include "../../lib/sandboxes.c"
#include "../../lib/sse.c"
#include "harness.h"

/* ---- encode.c ---- */

static int test_url_escape(void)
{
    struct lbuf b = LBUF_INIT;
    ASSERT_OK(url_escape(&b, "AZaz09-._~"));
    ASSERT_STREQ(b.base, "AZaz09-._~");
    lbuf_reset(&b);
    ASSERT_OK(url_escape(&b, "/root/my file%?#&=+é"));
    ASSERT_STREQ(b.base, "%2Froot%2Fmy%20file%25%3F%23%26%3D%2B%C3%A9");
    lbuf_reset(&b);
    ASSERT_OK(url_escape(&b, ""));
    ASSERT_STREQ(b.base, "");
    lbuf_done(&b);
    return 0;
}

static int test_paths(void)
{
    struct lbuf b = LBUF_INIT;
    ASSERT_OK(command_path(&b, "my box", "c/1", "/stream"));
    ASSERT_STREQ(b.base, "/v1/sandboxes/my%20box/commands/c%2F1/stream");
    lbuf_reset(&b);
    ASSERT_OK(files_path(&b, "sbx_a", "/stat", "/tmp/a b?c#d%e", "&recursive=true"));
    ASSERT_STREQ(b.base, "/v1/sandboxes/sbx_a/files/stat?path=%2Ftmp%2Fa%20b%3Fc%23d%25e&recursive=true");
    lbuf_done(&b);
    return 0;
}

static int test_base64(void)
{
    struct lbuf b = LBUF_INIT;
    ASSERT_OK(base64_decode_append(&b, "aGk=", 4));
    ASSERT_EQ(b.len, 2);
    ASSERT_STREQ(b.base, "hi");
    lbuf_reset(&b);
    ASSERT_OK(base64_decode_append(&b, "AAEC/w", 6)); /* unpadded */
    ASSERT_EQ(b.len, 4);
    ASSERT_TRUE(memcmp(b.base, "\x00\x01\x02\xff", 4) == 0);
    lbuf_reset(&b);
    ASSERT_OK(base64_decode_append(&b, "", 0));
    ASSERT_EQ(b.len, 0);
    ASSERT_ERRNO(base64_decode_append(&b, "a", 1), EINVAL);
    ASSERT_ERRNO(base64_decode_append(&b, "a*==", 4), EINVAL);
    lbuf_done(&b);
    return 0;
}

static int test_utf8(void)
{
    ASSERT_TRUE(utf8_text_valid("hello\n", 6));
    ASSERT_TRUE(utf8_text_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    ASSERT_TRUE(!utf8_text_valid("a\0b", 3));
    ASSERT_TRUE(!utf8_text_valid("\xff", 1));
    ASSERT_TRUE(!utf8_text_valid("\xc3", 1));             /* truncated */
    ASSERT_TRUE(!utf8_text_valid("\xc0\xaf", 2));         /* overlong */
    ASSERT_TRUE(!utf8_text_valid("\xed\xa0\x80", 3));     /* surrogate */
    ASSERT_TRUE(!utf8_text_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    return 0;
}

/* ---- sse.c ---- */

struct events {
    struct lbuf log; /* "event=data|" per event */
    int n;
    int fail_at; /* return -EPIPE at this event (1-based), 0: never */
};

static int record(const char *event, const char *data, size_t len, void *userdata)
{
    struct events *e = userdata;
    e->n++;
    if (e->fail_at && e->n == e->fail_at)
        return -EPIPE;
    ASSERT_EQ(strlen(data), len);
    lbuf_printf(&e->log, "%s=%s|", event, data);
    return 0;
}

/* Feeds `text` in pieces of `step` bytes (0: split at `split` into two pieces) and returns the log. */
static char *parse_in_pieces(const char *text, size_t step, size_t split)
{
    struct events e = {.log = LBUF_INIT};
    struct sse_parser p;
    sse_parser_init(&p, record, &e);
    size_t len = strlen(text);
    if (step == 0) {
        if (sse_parser_feed(&p, text, split) < 0 || sse_parser_feed(&p, text + split, len - split) < 0)
            return NULL;
    } else {
        for (size_t i = 0; i < len; i += step)
            if (sse_parser_feed(&p, text + i, len - i < step ? len - i : step) < 0)
                return NULL;
    }
    sse_parser_done(&p);
    return lbuf_steal(&e.log);
}

static const char sse_sample[] = ": comment\n"
                                 "event: output\n"
                                 "data: {\"stream\":\"stdout\",\"offset\":0,\"data\":\"hi\\n\"}\n"
                                 "\n"
                                 "event: output\r\n"
                                 "data:first\r\n"
                                 "data:  second\r\n"
                                 "data\r\n"
                                 "id: 7\r\n"
                                 "retry: 10\r\n"
                                 "\r\n"
                                 "event:exit\r"
                                 "data: {}\r"
                                 "\r"
                                 "event: lonely\n"
                                 "\n"
                                 "data: no event name\n"
                                 "\n"
                                 "event: incomplete\n"
                                 "data: never dispatched\n";

static const char sse_expected[] = "output={\"stream\":\"stdout\",\"offset\":0,\"data\":\"hi\\n\"}|"
                                   "output=first\n second\n|"
                                   "exit={}|"
                                   "message=no event name|";

static int test_sse_whole(void)
{
    char *log = parse_in_pieces(sse_sample, strlen(sse_sample), 0);
    ASSERT_STREQ(log, sse_expected);
    free(log);
    return 0;
}

static int test_sse_byte_by_byte(void)
{
    char *log = parse_in_pieces(sse_sample, 1, 0);
    ASSERT_STREQ(log, sse_expected);
    free(log);
    for (size_t step = 2; step < 40; step++) {
        log = parse_in_pieces(sse_sample, step, 0);
        ASSERT_STREQ(log, sse_expected);
        free(log);
    }
    return 0;
}

static int test_sse_every_split(void)
{
    for (size_t split = 0; split <= strlen(sse_sample); split++) {
        char *log = parse_in_pieces(sse_sample, 0, split);
        if (!log || strcmp(log, sse_expected) != 0)
            FAILF("split at %zu: %s", split, log ? log : "(error)");
        free(log);
    }
    return 0;
}

static int test_sse_crlf_split(void)
{
    /* CR at the end of one feed, LF at the start of the next: one line ending, not two. */
    struct events e = {.log = LBUF_INIT};
    struct sse_parser p;
    sse_parser_init(&p, record, &e);
    ASSERT_OK(sse_parser_feed(&p, "data: a\r", 8));
    ASSERT_OK(sse_parser_feed(&p, "\ndata: b\r", 9));
    ASSERT_OK(sse_parser_feed(&p, "\n\r", 2));
    ASSERT_OK(sse_parser_feed(&p, "\n", 1));
    ASSERT_STREQ(e.log.base, "message=a\nb|");
    ASSERT_EQ(e.n, 1);
    sse_parser_done(&p);
    lbuf_done(&e.log);
    return 0;
}

static int test_sse_empty_data_and_error(void)
{
    struct events e = {.log = LBUF_INIT, .fail_at = 2};
    struct sse_parser p;
    sse_parser_init(&p, record, &e);
    static const char s[] = "data:\n\ndata: x\n\ndata: y\n\n";
    ASSERT_ERRNO(sse_parser_feed(&p, s, strlen(s)), EPIPE);
    ASSERT_STREQ(e.log.base, "message=|"); /* one empty data line is an event with empty data */
    ASSERT_EQ(e.n, 2);
    sse_parser_done(&p);
    lbuf_done(&e.log);
    return 0;
}

/* The stream layer on top of the parser: output decoding (text and base64) and the exit event. */
struct seen {
    struct lbuf out, err;
    uint64_t last_offset;
    int exit_code, signal;
    char error[32];
    int exits;
};

static int seen_output(enum sbx_stream stream, uint64_t offset, const void *data, size_t len, void *userdata)
{
    struct seen *s = userdata;
    s->last_offset = offset;
    return lbuf_append(stream == SBX_STREAM_STDERR ? &s->err : &s->out, data, len);
}

static int seen_exit(int exit_code, int sig, const char *error_code, void *userdata)
{
    struct seen *s = userdata;
    s->exits++;
    s->exit_code = exit_code;
    s->signal = sig;
    snprintf(s->error, sizeof(s->error), "%s", error_code ? error_code : "");
    return 0;
}

static int test_stream_events(void)
{
    static const char text[] =
        "event: output\ndata: {\"stream\":\"stdout\",\"offset\":0,\"data\":\"hi\\n\"}\n\n"
        "event: output\ndata: "
        "{\"stream\":\"stderr\",\"offset\":0,\"data\":\"AAEC\",\"encoding\":\"base64\"}\n\n"
        "event: output\ndata: {\"stream\":\"stdout\",\"offset\":3,\"data\":\"\\u00e9\"}\n\n"
        "event: exit\ndata: {\"id\":\"cmd_1\",\"state\":\"exited\",\"exit_code\":137,\"signal\":9,\n"
        "data: \"error\":{\"code\":\"timeout\",\"message\":\"x\"}}\n\n";
    for (size_t step = 1; step <= sizeof(text); step += 7) {
        struct seen s = {.out = LBUF_INIT, .err = LBUF_INIT};
        struct sbx_exec_callbacks cb = {.on_output = seen_output, .on_exit = seen_exit, .userdata = &s};
        struct sbx_err cb_err = {0};
        struct stream_state st = {.cb = &cb, .chunk = LBUF_INIT, .err = &cb_err};
        sse_parser_init(&st.parser, on_event, &st);
        for (size_t i = 0; i < sizeof(text) - 1; i += step)
            ASSERT_OK(stream_sink(text + i, sizeof(text) - 1 - i < step ? sizeof(text) - 1 - i : step, &st));
        ASSERT_TRUE(st.exited);
        ASSERT_EQ(s.exits, 1);
        ASSERT_EQ(s.out.len, 5);
        ASSERT_TRUE(memcmp(s.out.base, "hi\n\xc3\xa9", 5) == 0);
        ASSERT_EQ(s.err.len, 3);
        ASSERT_TRUE(memcmp(s.err.base, "\x00\x01\x02", 3) == 0);
        ASSERT_EQ(s.last_offset, 3);
        ASSERT_EQ(s.exit_code, 137);
        ASSERT_EQ(s.signal, 9);
        ASSERT_STREQ(s.error, "timeout");
        sse_parser_done(&st.parser);
        lbuf_done(&st.chunk);
        lbuf_done(&s.out);
        lbuf_done(&s.err);
    }
    return 0;
}

static int test_exec_body(void)
{
    const char *argv[] = {"sh", "-c", "echo hi", NULL};
    const char *env[] = {"A=1", "B=x=y", NULL};
    struct sbx_exec_opts o = {.argv = argv,
                              .env = env,
                              .cwd = "/tmp",
                              .timeout = 1.5,
                              .stdin_data = "in",
                              .stdin_len = 2,
                              .id = "c1"};
    json_t *b = NULL;
    struct sbx_err err = {0};
    ASSERT_OK(exec_body(&o, true, &b, &err));
    char *s = json_dumps(b, JSON_SORT_KEYS | JSON_COMPACT);
    ASSERT_STREQ(
        s, "{\"command\":[\"sh\",\"-c\",\"echo hi\"],\"cwd\":\"/tmp\",\"env\":{\"A\":\"1\",\"B\":\"x=y\"},"
           "\"id\":\"c1\",\"stdin\":\"in\",\"timeout\":1.5,\"wait\":true}");
    free(s);
    json_decref(b);
    /* Binary stdin cannot be a JSON string: it goes through the stdin endpoint, so stdin stays open. */
    struct sbx_exec_opts bin = {.command = "cat", .stdin_data = "\x00\xff", .stdin_len = 2};
    ASSERT_OK(exec_body(&bin, false, &b, &err));
    s = json_dumps(b, JSON_SORT_KEYS | JSON_COMPACT);
    ASSERT_STREQ(s, "{\"command\":\"cat\",\"stdin_open\":true}");
    free(s);
    json_decref(b);
    struct sbx_exec_opts none = {0};
    ASSERT_ERRNO(exec_body(&none, false, &b, &err), EINVAL);
    ASSERT_STREQ(err.code, "invalid_argument");
    const char *bad_env[] = {"NOEQUALS", NULL};
    struct sbx_exec_opts be = {.command = "true", .env = bad_env};
    ASSERT_ERRNO(exec_body(&be, false, &b, &err), EINVAL);
    return 0;
}

/* ---- sandboxes.c and keys.c: bodies, paths, parsing ---- */

static char *dump_sorted(json_t *j)
{
    return json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
}

static int test_lifecycle_fields(void)
{
    json_t *b = json_object();
    ASSERT_OK(set_lifecycle_fields(b, 0, SBX_NEVER, 30)); /* 0: left out; SBX_NEVER: sent as 0 */
    char *s = dump_sorted(b);
    ASSERT_STREQ(s, "{\"delete_after_stop_seconds\":0,\"timeout_seconds\":30}");
    free(s);
    ASSERT_ERRNO(set_lifecycle_fields(b, -5, 0, 0), EINVAL);
    json_decref(b);

    /* A create body carries them next to the rest. */
    struct sbx_create_opts o = {.idle_ttl_s = SBX_NEVER, .timeout_s = 3600};
    b = json_object();
    ASSERT_OK(set_lifecycle_fields(b, o.idle_ttl_s, o.delete_after_stop_s, o.timeout_s));
    s = dump_sorted(b);
    ASSERT_STREQ(s, "{\"idle_ttl_seconds\":0,\"timeout_seconds\":3600}");
    free(s);
    json_decref(b);
    return 0;
}

static int test_update_body(void)
{
    struct sbx_err err = {0};
    json_t *b = NULL;
    const char *meta[] = {"a=1", "b=x=y", NULL};
    struct sbx_update_opts o = {.idle_ttl_s = 60, .delete_after_stop_s = SBX_NEVER, .metadata = meta};
    ASSERT_OK(update_body(&o, &b, &err));
    char *s = dump_sorted(b);
    ASSERT_STREQ(s, "{\"delete_after_stop_seconds\":0,\"idle_ttl_seconds\":60,\"metadata\":{\"a\":\"1\","
                    "\"b\":\"x=y\"}}");
    free(s);
    json_decref(b);
    /* An empty metadata array clears it; a zeroed struct changes nothing. */
    const char *empty[] = {NULL};
    struct sbx_update_opts clear = {.metadata = empty}, none = {0};
    ASSERT_OK(update_body(&clear, &b, &err));
    s = dump_sorted(b);
    ASSERT_STREQ(s, "{\"metadata\":{}}");
    free(s);
    json_decref(b);
    ASSERT_OK(update_body(&none, &b, &err));
    s = dump_sorted(b);
    ASSERT_STREQ(s, "{}");
    free(s);
    json_decref(b);
    const char *bad[] = {"novalue", NULL};
    struct sbx_update_opts be = {.metadata = bad};
    ASSERT_ERRNO(update_body(&be, &b, &err), EINVAL);
    ASSERT_STREQ(err.code, "invalid_argument");
    struct sbx_update_opts neg = {.timeout_s = -7};
    ASSERT_ERRNO(update_body(&neg, &b, &err), EINVAL);
    return 0;
}

static int test_list_path(void)
{
    struct lbuf b = LBUF_INIT;
    ASSERT_OK(list_path(&b, NULL));
    ASSERT_STREQ(b.base, "/v1/sandboxes");
    lbuf_reset(&b);
    const char *meta[] = {"team=a b", "k&=v=w", NULL};
    struct sbx_list_opts o = {.state = "deleted", .metadata = meta};
    ASSERT_OK(list_path(&b, &o));
    ASSERT_STREQ(b.base, "/v1/sandboxes?state=deleted&metadata.team=a%20b&metadata.k%26=v%3Dw");
    lbuf_reset(&b);
    struct sbx_list_opts only_meta = {.metadata = meta + 1};
    ASSERT_OK(list_path(&b, &only_meta));
    ASSERT_STREQ(b.base, "/v1/sandboxes?metadata.k%26=v%3Dw");
    lbuf_reset(&b);
    const char *bad[] = {"=v", NULL};
    struct sbx_list_opts be = {.metadata = bad};
    ASSERT_ERRNO(list_path(&b, &be), EINVAL);
    lbuf_done(&b);
    return 0;
}

static int test_sandbox_from_json(void)
{
    json_t *o = json_loads("{\"id\":\"sbx_a\",\"state\":\"deleted\",\"idle_ttl_seconds\":600,"
                           "\"delete_after_stop_seconds\":0,\"timeout_seconds\":60,"
                           "\"last_active_at\":\"2026-12-04T16:00:00.000Z\",\"stopped_at\":null,"
                           "\"expires_at\":\"2026-12-04T16:01:00.000Z\",\"state_reason\":\"deleted by x\"}",
                           0, NULL);
    ASSERT_TRUE(o != NULL);
    struct sbx_sandbox s = {0};
    struct sbx_err err = {0};
    ASSERT_OK(sandbox_from_json(o, &s, &err));
    ASSERT_STREQ(s.state, "deleted");
    ASSERT_EQ(s.idle_ttl_s, 600);
    ASSERT_EQ(s.delete_after_stop_s, 0);
    ASSERT_EQ(s.timeout_s, 60);
    ASSERT_STREQ(s.expires_at, "2026-12-04T16:01:00.000Z");
    ASSERT_TRUE(s.stopped_at == NULL);
    ASSERT_STREQ(s.state_reason, "deleted by x");
    sbx_sandbox_done(&s);
    json_decref(o);
    /* An older daemon without the fields: -1 and NULL. */
    o = json_loads("{\"id\":\"sbx_b\",\"state\":\"running\"}", 0, NULL);
    ASSERT_OK(sandbox_from_json(o, &s, &err));
    ASSERT_EQ(s.idle_ttl_s, -1);
    ASSERT_TRUE(s.last_active_at == NULL && s.expires_at == NULL);
    sbx_sandbox_done(&s);
    json_decref(o);
    return 0;
}

static int test_keys_json(void)
{
    struct sbx_err err = {0};
    json_t *b = NULL;
    struct sbx_key_opts o = {.name = "fleet", .max_sandboxes = 20, .max_memory_mb = 16384};
    ASSERT_OK(key_body(&o, &b, &err));
    char *s = dump_sorted(b);
    ASSERT_STREQ(s, "{\"name\":\"fleet\",\"quotas\":{\"max_memory_mb\":16384,\"max_sandboxes\":20}}");
    free(s);
    json_decref(b);
    struct sbx_key_opts none = {0};
    ASSERT_OK(key_body(&none, &b, &err));
    s = dump_sorted(b);
    ASSERT_STREQ(s, "{}");
    free(s);
    json_decref(b);
    struct sbx_key_opts neg = {.max_sandboxes = -1};
    ASSERT_ERRNO(key_body(&neg, &b, &err), EINVAL);

    json_t *k = json_loads("{\"id\":\"key_1\",\"name\":null,\"created_at\":\"2026-12-04T16:00:00.000Z\","
                           "\"quotas\":{\"max_sandboxes\":2,\"max_memory_mb\":0},\"key\":\"sbxk_s\"}",
                           0, NULL);
    struct sbx_key key = {0};
    ASSERT_OK(key_from_json(k, &key, &err));
    ASSERT_STREQ(key.id, "key_1");
    ASSERT_TRUE(key.name == NULL);
    ASSERT_EQ(key.max_sandboxes, 2);
    ASSERT_EQ(key.max_memory_mb, 0);
    ASSERT_STREQ(key.secret, "sbxk_s");
    sbx_key_done(&key);
    ASSERT_TRUE(key.secret == NULL && key.json == NULL);
    json_decref(k);
    k = json_loads("{\"name\":\"x\"}", 0, NULL);
    ASSERT_ERRNO(key_from_json(k, &key, &err), EPROTO);
    json_decref(k);
    return 0;
}

/* ---- client.c against a port nobody listens on ---- */

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    close(fd); /* bound but never listening: connecting is refused */
    return ntohs(a.sin_port);
}

static int test_client_new(void)
{
    struct sbx_client *c = NULL;
    ASSERT_ERRNO(sbx_client_new("ftp://x", NULL, &c), EINVAL);
    int port = closed_port();
    ASSERT_TRUE(port > 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    ASSERT_OK(sbx_client_new(url, "secret", &c));
    url[strlen(url) - 1] = 0; /* the trailing slash is dropped */
    ASSERT_STREQ(sbx_client_url(c), url);
    ASSERT_STREQ(c->hdr_json->data, "Authorization: Bearer secret");
    sbx_client_free(c);
    ASSERT_TRUE(sbx_client_free(NULL) == NULL);
    return 0;
}

static int test_client_refused(void)
{
    int port = closed_port();
    ASSERT_TRUE(port > 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    struct sbx_client *c = NULL;
    ASSERT_OK(sbx_client_new(url, NULL, &c));
    ASSERT_STREQ(sbx_client_url(c), url);
    struct sbx_sandbox *list = NULL;
    size_t n = 0;
    struct sbx_err err = {0};
    ASSERT_ERRNO(sbx_sandbox_list(c, &list, &n, &err), ECONNREFUSED);
    ASSERT_STREQ(err.code, "unavailable");
    ASSERT_EQ(err.http_status, 0);
    ASSERT_TRUE(err.message[0] != 0);
    err = (struct sbx_err){0};
    ASSERT_ERRNO(sbx_exec_stream(c, "sbx_a", "cmd_b", 0, 0, NULL, &err), ECONNREFUSED);
    ASSERT_STREQ(err.code, "unavailable");
    ASSERT_ERRNO(sbx_file_download(c, "sbx_a", "/x", 1, NULL), ECONNREFUSED); /* err may be NULL */
    ASSERT_ERRNO(sbx_sandbox_renew(c, "sbx_a", 60, NULL, NULL), ECONNREFUSED);
    ASSERT_ERRNO(sbx_sandbox_update(c, "sbx_a", NULL, NULL, NULL), ECONNREFUSED);
    ASSERT_ERRNO(sbx_sandbox_renew(c, "sbx_a", -1, NULL, &err), EINVAL); /* refused before sending */
    struct sbx_key *keys = NULL;
    ASSERT_ERRNO(sbx_key_list(c, &keys, &n, &err), ECONNREFUSED);
    ASSERT_ERRNO(sbx_key_delete(c, "key_a", &err), ECONNREFUSED);
    sbx_client_free(c);
    return 0;
}

/* ---- cli/args.c ---- */

static int test_memory(void)
{
    int64_t mb;
    ASSERT_OK(cli_parse_memory_mb("512M", &mb));
    ASSERT_EQ(mb, 512);
    ASSERT_OK(cli_parse_memory_mb("1G", &mb));
    ASSERT_EQ(mb, 1024);
    ASSERT_OK(cli_parse_memory_mb("1gib", &mb));
    ASSERT_EQ(mb, 1024);
    ASSERT_OK(cli_parse_memory_mb("1024", &mb));
    ASSERT_EQ(mb, 1024);
    ASSERT_OK(cli_parse_memory_mb("1.5G", &mb));
    ASSERT_EQ(mb, 1536);
    ASSERT_OK(cli_parse_memory_mb("2048K", &mb));
    ASSERT_EQ(mb, 2);
    ASSERT_OK(cli_parse_memory_mb("1K", &mb)); /* rounded up */
    ASSERT_EQ(mb, 1);
    ASSERT_OK(cli_parse_memory_mb("536870912B", &mb));
    ASSERT_EQ(mb, 512);
    ASSERT_OK(cli_parse_memory_mb("1T", &mb));
    ASSERT_EQ(mb, 1048576);
    const char *bad[] = {"", "M", "abc", "-1", "0", "5X", "1GG", "nan", "inf", "1e30"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (cli_parse_memory_mb(bad[i], &mb) != -EINVAL)
            FAILF("`%s` accepted", bad[i]);
    return 0;
}

static int test_durations(void)
{
    double d;
    ASSERT_OK(cli_parse_duration("30", &d));
    ASSERT_TRUE(d == 30);
    ASSERT_OK(cli_parse_duration("0.5s", &d));
    ASSERT_TRUE(d == 0.5);
    ASSERT_OK(cli_parse_duration("2m", &d));
    ASSERT_TRUE(d == 120);
    ASSERT_OK(cli_parse_duration("1h", &d));
    ASSERT_TRUE(d == 3600);
    ASSERT_ERRNO(cli_parse_duration("0", &d), EINVAL);
    ASSERT_ERRNO(cli_parse_duration("5d", &d), EINVAL);
    ASSERT_ERRNO(cli_parse_positive_double("1.5x", &d), EINVAL);
    int64_t n;
    ASSERT_OK(cli_parse_positive_int("256", &n));
    ASSERT_EQ(n, 256);
    ASSERT_ERRNO(cli_parse_positive_int("25.6", &n), EINVAL);
    return 0;
}

/* Parses a NULL-terminated word list (argv[0] is the subcommand). */
static int parse(unsigned flags, struct cli_args *a, char *errbuf, char **words)
{
    int argc = 0;
    while (words[argc])
        argc++;
    return cli_parse_args(argc, words, flags, a, errbuf, 256);
}

#define EXEC (ARGS_EXEC | ARGS_SANDBOX)

static int test_exec_args(void)
{
    struct cli_args a;
    char e[256];
    char *w1[] = {"exec", "sbx_1", "--", "sh", "-c", "echo hi", NULL};
    ASSERT_OK(parse(EXEC, &a, e, w1));
    ASSERT_STREQ(a.sandbox, "sbx_1");
    ASSERT_STREQ(a.cmd[0], "sh");
    ASSERT_STREQ(a.cmd[1], "-c");
    ASSERT_STREQ(a.cmd[2], "echo hi");
    ASSERT_TRUE(a.cmd[3] == NULL);
    ASSERT_TRUE(!a.interactive && !a.cwd && a.timeout == 0 && a.env[0] == NULL);
    cli_args_done(&a);

    char *w2[] = {"exec", "-i", "sbx_1", "--env", "X=42",      "--cwd=/tmp", "-t",
                  "1.5",  "-e", "Y=a=b", "--",    "sha256sum", NULL};
    ASSERT_OK(parse(EXEC, &a, e, w2));
    ASSERT_TRUE(a.interactive);
    ASSERT_STREQ(a.sandbox, "sbx_1");
    ASSERT_STREQ(a.cwd, "/tmp");
    ASSERT_TRUE(a.timeout == 1.5);
    ASSERT_STREQ(a.env[0], "X=42");
    ASSERT_STREQ(a.env[1], "Y=a=b");
    ASSERT_TRUE(a.env[2] == NULL);
    ASSERT_STREQ(a.cmd[0], "sha256sum");
    cli_args_done(&a);

    /* Without "--" the command starts at the first word after the id; its options stay its own. */
    char *w3[] = {"exec", "box", "ls", "-la", "--env", "Z=1", NULL};
    ASSERT_OK(parse(EXEC, &a, e, w3));
    ASSERT_STREQ(a.sandbox, "box");
    ASSERT_STREQ(a.cmd[0], "ls");
    ASSERT_STREQ(a.cmd[1], "-la");
    ASSERT_STREQ(a.cmd[2], "--env");
    ASSERT_TRUE(a.env[0] == NULL);
    cli_args_done(&a);

    char *w4[] = {"exec", "--help", NULL};
    ASSERT_OK(parse(EXEC, &a, e, w4));
    ASSERT_TRUE(a.help);
    cli_args_done(&a);
    return 0;
}

static int test_exec_args_errors(void)
{
    struct cli_args a;
    char e[256];
    char *missing_id[] = {"exec", NULL};
    ASSERT_ERRNO(parse(EXEC, &a, e, missing_id), EINVAL);
    ASSERT_STREQ(e, "missing sandbox id");
    char *missing_cmd[] = {"exec", "sbx_1", "--", NULL};
    ASSERT_ERRNO(parse(EXEC, &a, e, missing_cmd), EINVAL);
    char *bad_env[] = {"exec", "sbx_1", "--env", "NOVALUE", "--", "true", NULL};
    ASSERT_ERRNO(parse(EXEC, &a, e, bad_env), EINVAL);
    char *no_value[] = {"exec", "sbx_1", "--cwd", NULL};
    ASSERT_ERRNO(parse(EXEC, &a, e, no_value), EINVAL);
    char *unknown[] = {"exec", "--bogus", "sbx_1", "--", "true", NULL};
    ASSERT_ERRNO(parse(EXEC, &a, e, unknown), EINVAL);
    ASSERT_STREQ(e, "unknown option `--bogus`");
    char *create_only[] = {"exec", "--memory", "1G", "sbx_1", "--", "true", NULL};
    ASSERT_ERRNO(parse(EXEC, &a, e, create_only), EINVAL);
    ASSERT_STREQ(e, "option `--memory` is not valid here");
    char *bad_timeout[] = {"exec", "sbx_1", "--timeout", "soon", "--", "true", NULL};
    ASSERT_ERRNO(parse(EXEC, &a, e, bad_timeout), EINVAL);
    char *flag_value[] = {"exec", "--stdin=yes", "sbx_1", "--", "true", NULL};
    ASSERT_ERRNO(parse(EXEC, &a, e, flag_value), EINVAL);
    return 0;
}

static int test_create_and_run_args(void)
{
    struct cli_args a;
    char e[256];
    char *run[] = {"run",  "--memory",   "256M", "--cpus", "0.5",    "--pids",     "64",       "--name",
                   "n",    "--snapshot", "host", "--env",  "A=B",    "--metadata", "owner=me", "-w",
                   "/tmp", "--",         "sh",   "-c",     "exit 7", NULL};
    ASSERT_OK(parse(ARGS_CREATE | ARGS_EXEC, &a, e, run));
    ASSERT_EQ(a.memory_mb, 256);
    ASSERT_TRUE(a.cpus == 0.5);
    ASSERT_EQ(a.pids, 64);
    ASSERT_STREQ(a.name, "n");
    ASSERT_STREQ(a.snapshot, "host");
    ASSERT_STREQ(a.env[0], "A=B");
    ASSERT_STREQ(a.metadata[0], "owner=me");
    ASSERT_STREQ(a.cwd, "/tmp");
    ASSERT_TRUE(a.sandbox == NULL);
    ASSERT_STREQ(a.cmd[2], "exit 7");
    cli_args_done(&a);

    char *create[] = {"create", "--memory", "1G", NULL};
    ASSERT_OK(parse(ARGS_CREATE, &a, e, create));
    ASSERT_EQ(a.memory_mb, 1024);
    ASSERT_TRUE(a.cmd == NULL);
    cli_args_done(&a);

    char *stray[] = {"create", "extra", NULL};
    ASSERT_ERRNO(parse(ARGS_CREATE, &a, e, stray), EINVAL);
    char *exec_only[] = {"create", "--cwd", "/", NULL};
    ASSERT_ERRNO(parse(ARGS_CREATE, &a, e, exec_only), EINVAL);
    char *bad_mem[] = {"create", "--memory", "lots", NULL};
    ASSERT_ERRNO(parse(ARGS_CREATE, &a, e, bad_mem), EINVAL);
    return 0;
}

static int test_lifetimes(void)
{
    int64_t v;
    ASSERT_OK(cli_parse_lifetime("0", &v));
    ASSERT_EQ(v, 0);
    ASSERT_OK(cli_parse_lifetime("600", &v));
    ASSERT_EQ(v, 600);
    ASSERT_OK(cli_parse_lifetime("90s", &v));
    ASSERT_EQ(v, 90);
    ASSERT_OK(cli_parse_lifetime("10m", &v));
    ASSERT_EQ(v, 600);
    ASSERT_OK(cli_parse_lifetime("1.5h", &v));
    ASSERT_EQ(v, 5400);
    ASSERT_OK(cli_parse_lifetime("0m", &v));
    ASSERT_EQ(v, 0);
    ASSERT_OK(cli_parse_lifetime("0.7m", &v));
    ASSERT_EQ(v, 42);
    ASSERT_OK(cli_parse_lifetime("0.1h", &v));
    ASSERT_EQ(v, 360);
    const char *bad[] = {"", "-1", "1.5", "0.5", "2d", "m", "abc", "1e30", "nan", "10 m"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (cli_parse_lifetime(bad[i], &v) != -EINVAL)
            FAILF("`%s` accepted", bad[i]);
    return 0;
}

static int test_lifecycle_args(void)
{
    struct cli_args a;
    char e[256];
    char *create[] = {"create", "--idle-ttl", "0", "--lifetime=1h", "--delete-after-stop", "90", NULL};
    ASSERT_OK(parse(ARGS_CREATE, &a, e, create));
    ASSERT_EQ(a.idle_ttl_s, 0);
    ASSERT_EQ(a.lifetime_s, 3600);
    ASSERT_EQ(a.delete_after_stop_s, 90);
    cli_args_done(&a);
    char *plain[] = {"create", NULL};
    ASSERT_OK(parse(ARGS_CREATE, &a, e, plain));
    ASSERT_TRUE(a.idle_ttl_s == -1 && a.lifetime_s == -1 && a.delete_after_stop_s == -1);
    cli_args_done(&a);

    char *update[] = {"update", "--metadata", "k=v", "box", "--idle-ttl", "5m", "--json", NULL};
    ASSERT_OK(parse(ARGS_UPDATE | ARGS_SANDBOX, &a, e, update));
    ASSERT_STREQ(a.sandbox, "box");
    ASSERT_EQ(a.idle_ttl_s, 300);
    ASSERT_EQ(a.lifetime_s, -1);
    ASSERT_STREQ(a.metadata[0], "k=v");
    ASSERT_TRUE(a.json);
    cli_args_done(&a);
    char *nothing[] = {"update", "box", "--json", NULL};
    ASSERT_ERRNO(parse(ARGS_UPDATE | ARGS_SANDBOX, &a, e, nothing), EINVAL);
    ASSERT_TRUE(strstr(e, "nothing to update") != NULL);
    char *env[] = {"update", "box", "--env", "A=B", NULL};
    ASSERT_ERRNO(parse(ARGS_UPDATE | ARGS_SANDBOX, &a, e, env), EINVAL);
    ASSERT_STREQ(e, "option `--env` is not valid here");
    char *extra[] = {"update", "box", "more", "--idle-ttl", "1", NULL};
    ASSERT_ERRNO(parse(ARGS_UPDATE | ARGS_SANDBOX, &a, e, extra), EINVAL);

    char *renew[] = {"renew", "box", NULL};
    ASSERT_OK(parse(ARGS_RENEW | ARGS_SANDBOX, &a, e, renew));
    ASSERT_EQ(a.lifetime_s, -1);
    cli_args_done(&a);
    char *renew0[] = {"renew", "box", "--lifetime", "0", NULL};
    ASSERT_ERRNO(parse(ARGS_RENEW | ARGS_SANDBOX, &a, e, renew0), EINVAL);
    char *renew_idle[] = {"renew", "box", "--idle-ttl", "1", NULL};
    ASSERT_ERRNO(parse(ARGS_RENEW | ARGS_SANDBOX, &a, e, renew_idle), EINVAL);
    /* exec keeps its own --timeout; the sandbox's lifetime is not an exec option. */
    char *exec_life[] = {"exec", "box", "--lifetime", "1", "--", "true", NULL};
    ASSERT_ERRNO(parse(EXEC, &a, e, exec_life), EINVAL);
    char *json_create[] = {"create", "--json", NULL};
    ASSERT_ERRNO(parse(ARGS_CREATE, &a, e, json_create), EINVAL);

    ASSERT_EQ(cli_lib_seconds(-1), 0);
    ASSERT_EQ(cli_lib_seconds(0), SBX_NEVER);
    ASSERT_EQ(cli_lib_seconds(30), 30);
    return 0;
}

static int test_split_remote(void)
{
    char *id = NULL;
    const char *path = NULL;
    ASSERT_TRUE(cli_split_remote("sbx_abc:/root/a b", &id, &path));
    ASSERT_STREQ(id, "sbx_abc");
    ASSERT_STREQ(path, "/root/a b");
    free(id);
    ASSERT_TRUE(cli_split_remote("box:rel", &id, &path));
    ASSERT_STREQ(path, "rel");
    free(id);
    ASSERT_TRUE(!cli_split_remote("./a:b", &id, &path));
    ASSERT_TRUE(!cli_split_remote("/tmp/x", &id, &path));
    ASSERT_TRUE(!cli_split_remote(":x", &id, &path));
    ASSERT_TRUE(!cli_split_remote("-", &id, &path));
    return 0;
}

TESTS(TEST(test_url_escape) TEST(test_paths) TEST(test_base64) TEST(test_utf8) TEST(test_sse_whole)
          TEST(test_sse_byte_by_byte) TEST(test_sse_every_split) TEST(test_sse_crlf_split)
              TEST(test_sse_empty_data_and_error) TEST(test_stream_events) TEST(test_exec_body)
                  TEST(test_lifecycle_fields) TEST(test_update_body) TEST(test_list_path)
                      TEST(test_sandbox_from_json) TEST(test_keys_json) TEST(test_client_new)
                          TEST(test_client_refused) TEST(test_memory) TEST(test_durations)
                              TEST(test_lifetimes) TEST(test_exec_args) TEST(test_exec_args_errors)
                                  TEST(test_create_and_run_args) TEST(test_lifecycle_args)
                                      TEST(test_split_remote))
