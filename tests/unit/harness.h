/* Tiny TAP test harness (libuv task.h/runner.c, systemd tests.h). Each test is `static int name(void)`
 * returning 0 (pass), -1 (fail) or 77 (skip); the runner forks each one with a timeout so a crash or hang
 * fails one test, not the suite. Usage:
 *
 *     static int test_foo(void) { ASSERT_EQ(1 + 1, 2); return 0; }
 *     TESTS(TEST(test_foo))
 *
 * Run with `--single NAME` to run one test in-process (for gdb). */
#pragma once

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_SKIP 77

#define FAILF(...)                                                                                           \
    do {                                                                                                     \
        fprintf(stderr, "# %s:%d: ", __FILE__, __LINE__);                                                    \
        fprintf(stderr, __VA_ARGS__);                                                                        \
        fprintf(stderr, "\n");                                                                               \
        return -1;                                                                                           \
    } while (0)

#define ASSERT_TRUE(e)                                                                                       \
    do {                                                                                                     \
        if (!(e))                                                                                            \
            FAILF("assertion failed: %s", #e);                                                               \
    } while (0)

#define ASSERT_EQ(a, b)                                                                                      \
    do {                                                                                                     \
        long long _a = (long long)(a), _b = (long long)(b);                                                  \
        if (_a != _b)                                                                                        \
            FAILF("%s == %s: %lld != %lld", #a, #b, _a, _b);                                                 \
    } while (0)

#define ASSERT_OK(e)                                                                                         \
    do {                                                                                                     \
        long long _r = (long long)(e);                                                                       \
        if (_r < 0)                                                                                          \
            FAILF("%s failed: %lld (%s)", #e, _r, strerror((int)-_r));                                       \
    } while (0)

#define ASSERT_ERRNO(e, err)                                                                                 \
    do {                                                                                                     \
        long long _r = (long long)(e);                                                                       \
        if (_r != -(long long)(err))                                                                         \
            FAILF("%s: expected -%s, got %lld (%s)", #e, #err, _r, _r < 0 ? strerror((int)-_r) : "ok");      \
    } while (0)

#define ASSERT_STREQ(a, b)                                                                                   \
    do {                                                                                                     \
        const char *_a = (a), *_b = (b);                                                                     \
        if (!_a || !_b || strcmp(_a, _b) != 0)                                                               \
            FAILF("%s == %s: \"%s\" != \"%s\"", #a, #b, _a ? _a : "(null)", _b ? _b : "(null)");             \
    } while (0)

struct test_entry {
    const char *name;
    int (*fn)(void);
};

#define TEST(f) {#f, f},

#ifndef TEST_TIMEOUT_SEC
#define TEST_TIMEOUT_SEC 60
#endif

static inline int harness_run_one(const struct test_entry *t)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        alarm(TEST_TIMEOUT_SEC);
        _exit(t->fn() & 0xff);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "# %s: killed by signal %d%s\n", t->name, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
        return -1;
    }
    int code = WEXITSTATUS(status);
    return code == 0 ? 0 : code == TEST_SKIP ? TEST_SKIP : -1;
}

static inline int harness_main(int argc, char **argv, const struct test_entry *tests, size_t n)
{
    if (argc == 3 && strcmp(argv[1], "--single") == 0) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(tests[i].name, argv[2]) == 0) {
                int r = tests[i].fn();
                printf("%s: %s\n", tests[i].name, r == 0 ? "ok" : r == TEST_SKIP ? "skip" : "FAIL");
                return r == 0 || r == TEST_SKIP ? 0 : 1;
            }
        fprintf(stderr, "no test named %s\n", argv[2]);
        return 2;
    }
    printf("1..%zu\n", n);
    size_t failed = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        int r = harness_run_one(&tests[i]);
        if (r == 0)
            printf("ok %zu - %s\n", i + 1, tests[i].name);
        else if (r == TEST_SKIP) {
            printf("ok %zu - %s # SKIP\n", i + 1, tests[i].name);
            skipped++;
        } else {
            printf("not ok %zu - %s\n", i + 1, tests[i].name);
            failed++;
        }
    }
    printf("# %zu passed, %zu failed, %zu skipped\n", n - failed - skipped, failed, skipped);
    return failed ? 1 : 0;
}

#define TESTS(...)                                                                                           \
    int main(int argc, char **argv)                                                                          \
    {                                                                                                        \
        static const struct test_entry tests[] = {__VA_ARGS__};                                              \
        return harness_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));                            \
    }
