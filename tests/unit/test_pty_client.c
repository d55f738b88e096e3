/* PTY pieces of libsbx and the CLI that need no daemon: the exec request body with `pty`, `cols` and
 * `rows`, and `sbx exec --tty` argument parsing (sbx shell itself is covered end to end in
 * tests/e2e/test_pty.py). Sources are included directly (STYLE.md I: the include trick). */
#include "../../cli/args.c"
#include "../../lib/client.c"
#include "../../lib/commands.c"
#include "../../lib/encode.c"
#include "../../lib/sse.c"
#include "harness.h"

static char *body_text(const struct sbx_exec_opts *o)
{
    json_t *b = NULL;
    struct sbx_err err = {0};
    if (exec_body(o, false, &b, &err) < 0)
        return NULL;
    char *s = json_dumps(b, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(b);
    return s;
}

static int test_exec_body_pty(void)
{
    const char *argv[] = {"sh", NULL};
    struct sbx_exec_opts o = {.argv = argv, .stdin_open = true, .pty = true, .cols = 132, .rows = 43};
    char *s = body_text(&o);
    ASSERT_STREQ(s, "{\"cols\":132,\"command\":[\"sh\"],\"pty\":true,\"rows\":43,\"stdin_open\":true}");
    free(s);
    /* No size: the daemon's default 80x24. */
    struct sbx_exec_opts d = {.argv = argv, .pty = true};
    s = body_text(&d);
    ASSERT_STREQ(s, "{\"command\":[\"sh\"],\"pty\":true}");
    free(s);
    /* cols/rows mean nothing without a pty and are not sent. */
    struct sbx_exec_opts n = {.argv = argv, .cols = 10, .rows = 10};
    s = body_text(&n);
    ASSERT_STREQ(s, "{\"command\":[\"sh\"]}");
    free(s);
    return 0;
}

static int parse(unsigned flags, struct cli_args *a, char *errbuf, char **words)
{
    int argc = 0;
    while (words[argc])
        argc++;
    return cli_parse_args(argc, words, flags, a, errbuf, 256);
}

static int test_exec_tty_args(void)
{
    struct cli_args a;
    char e[256];
    char *w1[] = {"exec", "--tty", "-t", "5", "sbx_1", "--", "top", "-b", NULL};
    ASSERT_OK(parse(ARGS_EXEC | ARGS_SANDBOX, &a, e, w1));
    ASSERT_TRUE(a.tty && a.timeout == 5); /* -t stays --timeout */
    ASSERT_STREQ(a.sandbox, "sbx_1");
    ASSERT_STREQ(a.cmd[0], "top");
    ASSERT_STREQ(a.cmd[1], "-b");
    cli_args_done(&a);
    char *w2[] = {"exec", "sbx_1", "true", NULL};
    ASSERT_OK(parse(ARGS_EXEC | ARGS_SANDBOX, &a, e, w2));
    ASSERT_TRUE(!a.tty);
    cli_args_done(&a);
    /* run has no terminal mode. */
    char *w3[] = {"run", "--tty", "--", "true", NULL};
    ASSERT_ERRNO(parse(ARGS_CREATE | ARGS_EXEC, &a, e, w3), EINVAL);
    return 0;
}

TESTS(TEST(test_exec_body_pty) TEST(test_exec_tty_args))
