/* sbx-shim end to end: a real shim (and, with the real runtime, a real sandbox) on a temporary state
 * dir, driven through the shim client library. Needs root and the built sbx-shim and sbx-init. */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>

#include "base/buf.h"
#include "base/cleanup.h"
#include "base/error.h"
#include "base/util.h"
#include "harness.h"
#include "shimclient/shim_client.h"
#include "shimclient/shim_protocol.h"

struct fixture {
    char dir[256];
    char id[64];
    pid_t shim_pid, init_pid;
};

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *build_dir(void)
{
    const char *b = getenv("SBX_BUILD_DIR");
    return b ? b : ".";
}

static void shim_path(char *buf, size_t size)
{
    const char *p = getenv("SBX_SHIM_PATH"); /* a development override */
    if (p)
        snprintf(buf, size, "%s", p);
    else
        snprintf(buf, size, "%s/bin/sbx-shim", build_dir());
}

/* 0 = can run; TEST_SKIP with the reason printed. */
static int check_prereqs(void)
{
    char path[512];
    if (geteuid() != 0) {
        printf("# skip: needs root (namespaces, cgroups, mounts)\n");
        return TEST_SKIP;
    }
    shim_path(path, sizeof(path));
    if (access(path, X_OK) < 0) {
        printf("# skip: %s not built (the runtime library is missing)\n", path);
        return TEST_SKIP;
    }
    return 0;
}

static int fixture_start(struct fixture *fx)
{
    int r = check_prereqs();
    if (r)
        return r;
    static unsigned counter;
    snprintf(fx->id, sizeof(fx->id), "shimtest-%d-%u", (int)getpid(), counter++);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/sbx-shimtest-XXXXXX");
    if (!mkdtemp(fx->dir))
        FAILF("mkdtemp: %s", strerror(errno));
    char init[512], cfgpath[512], shim[512];
    snprintf(init, sizeof(init), "%s/bin/sbx-init", build_dir());
    snprintf(cfgpath, sizeof(cfgpath), "%s/config.json", fx->dir);
    shim_path(shim, sizeof(shim));
    json_t *cfg = json_pack("{s:s, s:I, s:s, s:I, s:f, s:I, s:s, s:n, s:n}", "id", fx->id, "uid_base",
                            (json_int_t)(1000000 + (getpid() % 1000) * 65536), "hostname", "shimtest",
                            "memory_bytes", (json_int_t)(512 << 20), "cpus", 1.0, "pids_max", (json_int_t)512,
                            "init_path", init, "seccomp_path", "lower_dirs");
    ASSERT_TRUE(cfg);
    ASSERT_OK(json_dump_file(cfg, cfgpath, JSON_COMPACT));
    json_decref(cfg);
    sbx_error err = {0};
    int64_t t0 = ms_now();
    r = shim_spawn(shim, fx->dir, 10000, &fx->shim_pid, &fx->init_pid, &err);
    if (r < 0)
        FAILF("shim_spawn: %s (%s)", err.msg, strerror(-r));
    printf("# shim %d up in %lld ms (init %d)\n", (int)fx->shim_pid, (long long)(ms_now() - t0),
           (int)fx->init_pid);
    return 0;
}

static bool pid_alive(pid_t pid)
{
    return pid > 0 && kill(pid, 0) == 0;
}

static void fixture_stop(struct fixture *fx)
{
    if (fx->shim_pid > 0 && pid_alive(fx->shim_pid)) {
        int r = shim_shutdown(fx->dir, 10000);
        if (r < 0)
            kill(fx->shim_pid, SIGKILL);
    }
    rm_rf(fx->dir);
}

static json_t *call(struct fixture *fx, json_t *req /* takes */, sbx_error *err)
{
    json_t *resp = NULL;
    int r = shim_call(fx->dir, req, 10000, &resp, err);
    json_decref(req);
    return r < 0 ? NULL : resp;
}

static json_t *exec_sh(struct fixture *fx, const char *id, const char *script, json_int_t timeout_ms,
                       sbx_error *err)
{
    return call(fx,
                json_pack("{s:s, s:s, s:[s,s,s], s:[s], s:s, s:I}", "op", "exec", "id", id, "argv", "/bin/sh",
                          "-c", script, "env", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "cwd",
                          "/", "timeout_ms", timeout_ms),
                err);
}

/* Attached stream reader: collects the bytes of both streams, checks offsets are contiguous. */
struct stream_result {
    struct sbx_buf data[2];
    uint64_t next_off[2];
    json_t *exit;  /* EXIT status */
    json_t *error; /* an error RESPONSE instead */
    bool eof;
    bool gap; /* offsets not contiguous */
};

static void result_done(struct stream_result *sr)
{
    sbx_buf_done(&sr->data[0]);
    sbx_buf_done(&sr->data[1]);
    json_decref(sr->exit);
    json_decref(sr->error);
}

/* Reads frames from fd until EXIT+EOF, until max_bytes data bytes arrived (then returns early), or
 * timeout. Returns 0, or -ETIMEDOUT. */
static int read_stream(int fd, struct stream_result *sr, size_t max_bytes, int timeout_ms)
{
    struct sbx_buf in = SBX_BUF_INIT;
    int64_t deadline = ms_now() + timeout_ms;
    int r = 0;
    for (;;) {
        size_t pos = 0;
        for (;;) {
            struct shim_frame f;
            long n = shim_frame_parse((const uint8_t *)in.base + pos, in.len - pos, &f);
            if (n <= 0)
                break;
            pos += (size_t)n;
            if (f.type == SHIM_FRAME_DATA) {
                uint8_t s;
                uint64_t off;
                const uint8_t *d;
                size_t len;
                if (shim_frame_data_parse(&f, &s, &off, &d, &len) < 0) {
                    sr->gap = true;
                    continue;
                }
                if (off != sr->next_off[s - 1])
                    sr->gap = true;
                sbx_buf_append(&sr->data[s - 1], d, len);
                sr->next_off[s - 1] = off + len;
            } else if (f.type == SHIM_FRAME_EXIT) {
                sr->exit = json_loadb((const char *)f.payload, f.len, 0, NULL);
            } else if (f.type == SHIM_FRAME_RESPONSE) {
                sr->error = json_loadb((const char *)f.payload, f.len, 0, NULL);
            }
        }
        sbx_buf_consume(&in, pos);
        if (max_bytes && sr->data[0].len + sr->data[1].len >= max_bytes)
            break;
        int left = (int)(deadline - ms_now());
        if (left <= 0) {
            r = -ETIMEDOUT;
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        char *b = sbx_buf_reserve(&in, 256 * 1024);
        ssize_t n = read(fd, b, 256 * 1024);
        if (n > 0) {
            in.len += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            sr->eof = true;
            break;
        }
    }
    sbx_buf_done(&in);
    return r;
}

/* Attaches from the given offsets and reads to the end. */
static int attach_all(struct fixture *fx, const char *id, uint64_t o1, uint64_t o2, struct stream_result *sr,
                      int timeout_ms)
{
    memset(sr, 0, sizeof(*sr));
    sr->next_off[0] = o1;
    sr->next_off[1] = o2;
    sbx_error err = {0};
    int fd;
    int r = shim_attach(fx->dir, id, o1, o2, &fd, &err);
    if (r < 0)
        FAILF("shim_attach: %s", err.msg);
    r = read_stream(fd, sr, 0, timeout_ms);
    close(fd);
    return r;
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1000;
}

static const char *jerrcode(json_t *status)
{
    return json_string_value(json_object_get(json_object_get(status, "error"), "code"));
}

#define BUF_EQ(buf, lit)                                                                                     \
    do {                                                                                                     \
        if ((buf).len != strlen(lit) || memcmp((buf).base, lit, (buf).len) != 0)                             \
            FAILF("%s: got %zu bytes \"%.*s\", expected \"%s\"", #buf, (buf).len,                            \
                  (int)((buf).len > 200 ? 200 : (buf).len), (buf).base ? (buf).base : "", lit);              \
    } while (0)

/* --- tests ---------------------------------------------------------------------------------------- */

static int test_spawn_ping(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    json_t *resp = call(&fx, json_pack("{s:s}", "op", "ping"), &err);
    if (!resp)
        FAILF("ping: %s", err.msg);
    ASSERT_EQ(jint(resp, "pid"), fx.shim_pid);
    ASSERT_EQ(jint(resp, "init_pid"), fx.init_pid);
    ASSERT_TRUE(json_is_true(json_object_get(resp, "init_alive")));
    json_decref(resp);
    /* The persistent connection variant, several calls in a row. */
    struct shim_conn *conn;
    ASSERT_OK(shim_conn_open(fx.dir, &conn, &err));
    for (int i = 0; i < 3; i++) {
        json_t *req = json_pack("{s:s}", "op", "ping");
        ASSERT_OK(shim_conn_call(conn, req, 5000, &resp, &err));
        json_decref(req);
        json_decref(resp);
    }
    json_t *req = json_pack("{s:s, s:s}", "op", "status", "id", "nope");
    ASSERT_ERRNO(shim_conn_call(conn, req, 5000, &resp, &err), ENOENT);
    ASSERT_STREQ(err.kind, "not_found");
    ASSERT_TRUE(!shim_conn_broken(conn));
    json_decref(req);
    shim_conn_close(conn);
    /* The shim is not our child: it was reparented. */
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)fx.shim_pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    ASSERT_TRUE(n > 0);
    buf[n] = 0;
    int ppid = 0;
    ASSERT_EQ(sscanf(strrchr(buf, ')') + 2, "%*c %d", &ppid), 1);
    ASSERT_TRUE(ppid != getpid());
    fixture_stop(&fx);
    return 0;
}

static int test_exec_attach_exit(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    int64_t t0 = ms_now();
    json_t *resp = exec_sh(&fx, "c1", "echo hello; echo err >&2; exit 3", 0, &err);
    if (!resp)
        FAILF("exec: %s", err.msg);
    ASSERT_TRUE(json_is_true(json_object_get(resp, "created")));
    json_t *st = json_object_get(resp, "command");
    ASSERT_STREQ(json_string_value(json_object_get(st, "id")), "c1");
    json_decref(resp);
    struct stream_result sr;
    ASSERT_OK(attach_all(&fx, "c1", 0, 0, &sr, 10000));
    printf("# exec → exit in %lld ms\n", (long long)(ms_now() - t0));
    BUF_EQ(sr.data[0], "hello\n");
    BUF_EQ(sr.data[1], "err\n");
    ASSERT_TRUE(!sr.gap);
    ASSERT_TRUE(sr.exit);
    ASSERT_STREQ(json_string_value(json_object_get(sr.exit, "state")), "exited");
    ASSERT_EQ(jint(sr.exit, "exit_code"), 3);
    ASSERT_EQ(jint(sr.exit, "stdout_bytes"), 6);
    ASSERT_EQ(jint(sr.exit, "stderr_bytes"), 4);
    ASSERT_TRUE(sr.eof);
    result_done(&sr);
    /* The log files and the persisted status are on disk. */
    char path[512];
    snprintf(path, sizeof(path), "%s/logs/c1.json", fx.dir);
    json_t *disk = json_load_file(path, 0, NULL);
    ASSERT_TRUE(disk);
    ASSERT_EQ(jint(disk, "exit_code"), 3);
    json_decref(disk);
    fixture_stop(&fx);
    return 0;
}

static int test_get_or_create(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    json_t *a = exec_sh(&fx, "same", "sleep 0.2; echo once", 0, &err);
    ASSERT_TRUE(a);
    json_t *b = exec_sh(&fx, "same", "echo twice", 0, &err);
    ASSERT_TRUE(b);
    ASSERT_TRUE(json_is_true(json_object_get(a, "created")));
    ASSERT_TRUE(json_is_false(json_object_get(b, "created")));
    json_decref(a);
    json_decref(b);
    struct stream_result sr;
    ASSERT_OK(attach_all(&fx, "same", 0, 0, &sr, 10000));
    BUF_EQ(sr.data[0], "once\n");
    result_done(&sr);
    /* Invalid ids are rejected. */
    ASSERT_TRUE(!exec_sh(&fx, "../x", "true", 0, &err));
    ASSERT_STREQ(err.kind, "invalid_argument");
    json_t *list = call(&fx, json_pack("{s:s}", "op", "list"), &err);
    ASSERT_TRUE(list);
    ASSERT_EQ(json_array_size(json_object_get(list, "commands")), 1);
    json_decref(list);
    fixture_stop(&fx);
    return 0;
}

static int test_attach_offsets(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    json_t *resp = exec_sh(
        &fx, "off", "printf 0123456789; printf abcdef >&2; sleep 0.5; printf XYZ; printf uvw >&2", 0, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    /* Wait until the first part is there, then attach mid-stream. */
    int64_t deadline = ms_now() + 5000;
    for (;;) {
        json_t *st = call(&fx, json_pack("{s:s, s:s}", "op", "status", "id", "off"), &err);
        ASSERT_TRUE(st);
        long long o = jint(json_object_get(st, "command"), "stdout_bytes");
        long long e = jint(json_object_get(st, "command"), "stderr_bytes");
        json_decref(st);
        if (o == 10 && e == 6)
            break;
        ASSERT_TRUE(ms_now() < deadline);
        usleep(10000);
    }
    struct stream_result sr;
    ASSERT_OK(attach_all(&fx, "off", 4, 5, &sr, 10000));
    BUF_EQ(sr.data[0], "456789XYZ");
    BUF_EQ(sr.data[1], "fuvw");
    ASSERT_TRUE(!sr.gap && sr.exit);
    result_done(&sr);
    /* After the exit: replay from offsets. */
    ASSERT_OK(attach_all(&fx, "off", 12, 6, &sr, 10000));
    BUF_EQ(sr.data[0], "Z");
    BUF_EQ(sr.data[1], "uvw");
    ASSERT_TRUE(sr.exit);
    result_done(&sr);
    /* Offsets at the end: just the exit. */
    ASSERT_OK(attach_all(&fx, "off", 13, 9, &sr, 10000));
    ASSERT_EQ(sr.data[0].len + sr.data[1].len, 0);
    ASSERT_TRUE(sr.exit);
    result_done(&sr);
    /* Unknown id: an error response. */
    ASSERT_OK(attach_all(&fx, "nope", 0, 0, &sr, 10000));
    ASSERT_TRUE(sr.error && !sr.exit);
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(sr.error, "error"), "code")), "not_found");
    result_done(&sr);
    fixture_stop(&fx);
    return 0;
}

static int test_large_output(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    int64_t t0 = ms_now();
    json_t *resp = exec_sh(&fx, "big", "head -c 20000000 /dev/zero; head -c 3000000 /dev/zero >&2", 0, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    struct stream_result sr;
    ASSERT_OK(attach_all(&fx, "big", 0, 0, &sr, 30000));
    printf("# 23 MB through the shim in %lld ms\n", (long long)(ms_now() - t0));
    ASSERT_EQ(sr.data[0].len, 20000000);
    ASSERT_EQ(sr.data[1].len, 3000000);
    ASSERT_TRUE(!sr.gap && sr.exit);
    for (size_t i = 0; i < sr.data[0].len; i++)
        if (sr.data[0].base[i] != 0)
            FAILF("byte %zu is not zero", i);
    ASSERT_EQ(jint(sr.exit, "stdout_bytes"), 20000000);
    result_done(&sr);
    /* A replay from the start comes from the file (the ring holds only the tail). */
    ASSERT_OK(attach_all(&fx, "big", 1000, 0, &sr, 30000));
    ASSERT_EQ(sr.data[0].len, 20000000 - 1000);
    ASSERT_TRUE(!sr.gap && sr.exit);
    result_done(&sr);
    fixture_stop(&fx);
    return 0;
}

static int test_timeout(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    int64_t t0 = ms_now();
    json_t *resp = exec_sh(&fx, "slow", "sleep 100 & sleep 100", 300, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    struct stream_result sr;
    ASSERT_OK(attach_all(&fx, "slow", 0, 0, &sr, 10000));
    int64_t took = ms_now() - t0;
    printf("# timed out after %lld ms\n", (long long)took);
    ASSERT_TRUE(sr.exit);
    ASSERT_STREQ(jerrcode(sr.exit), "timeout");
    ASSERT_EQ(jint(sr.exit, "signal"), SIGKILL);
    /* The background sleep was in the session and died too, so no EOF grace was needed. */
    ASSERT_TRUE(took < 1800);
    result_done(&sr);
    fixture_stop(&fx);
    return 0;
}

/* Polls status until the command has exited (or is gone); returns the status (caller frees) or NULL. */
static json_t *wait_exited(struct fixture *fx, const char *id, int timeout_ms)
{
    int64_t deadline = ms_now() + timeout_ms;
    while (ms_now() < deadline) {
        sbx_error err = {0};
        json_t *resp = call(fx, json_pack("{s:s, s:s}", "op", "status", "id", id), &err);
        json_t *st = resp ? json_incref(json_object_get(resp, "command")) : NULL;
        json_decref(resp);
        if (st && strcmp(json_string_value(json_object_get(st, "state")), "exited") == 0)
            return st;
        json_decref(st);
        usleep(20000);
    }
    return NULL;
}

static json_t *exec_life(struct fixture *fx, const char *id, const char *script, const char *k1,
                         json_int_t v1, const char *k2, json_int_t v2, sbx_error *err)
{
    json_t *req = json_pack("{s:s, s:s, s:[s,s,s], s:[s], s:s}", "op", "exec", "id", id, "argv", "/bin/sh",
                            "-c", script, "env", "PATH=/usr/bin:/bin", "cwd", "/");
    if (k1)
        json_object_set_new(req, k1,
                            strcmp(k1, "kill_on_disconnect") == 0 ? json_boolean(v1) : json_integer(v1));
    if (k2)
        json_object_set_new(req, k2, json_integer(v2));
    return call(fx, req, err);
}

/* The combined log: arrival order, stream offsets, paging, bounds; then ttl expiry removes it all. */
static int test_logs_and_expiry(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    json_t *resp = exec_life(&fx, "lg", "printf ab; sleep 0.1; printf CD >&2; sleep 0.1; printf e", "ttl_ms",
                             400, NULL, 0, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    json_t *st = wait_exited(&fx, "lg", 5000);
    ASSERT_TRUE(st);
    ASSERT_EQ(jint(st, "log_bytes"), 5);
    json_decref(st);

    resp =
        call(&fx, json_pack("{s:s, s:s, s:i, s:i}", "op", "logs", "id", "lg", "cursor", 1, "limit", 2), &err);
    if (!resp)
        FAILF("logs: %s", err.msg);
    ASSERT_STREQ(json_string_value(json_object_get(resp, "data_b64")), "YkM="); /* "bC" */
    ASSERT_EQ(jint(resp, "next_cursor"), 3);
    json_t *chunks = json_object_get(resp, "chunks");
    ASSERT_EQ(json_array_size(chunks), 2);
    json_t *c0 = json_array_get(chunks, 0), *c1 = json_array_get(chunks, 1);
    ASSERT_EQ(jint(c0, "stream"), 1);
    ASSERT_EQ(jint(c0, "offset"), 1);
    ASSERT_EQ(jint(c0, "len"), 1);
    ASSERT_EQ(jint(c1, "stream"), 2);
    ASSERT_EQ(jint(c1, "offset"), 0);
    ASSERT_EQ(jint(c1, "cursor"), 2);
    json_decref(resp);
    resp = call(&fx, json_pack("{s:s, s:s, s:i}", "op", "logs", "id", "lg", "cursor", 3), &err);
    ASSERT_TRUE(resp);
    ASSERT_STREQ(json_string_value(json_object_get(resp, "data_b64")), "RGU="); /* "De" */
    ASSERT_EQ(json_array_size(json_object_get(resp, "chunks")), 2);
    json_decref(resp);
    resp = call(&fx, json_pack("{s:s, s:s, s:i}", "op", "logs", "id", "lg", "cursor", 6), &err);
    ASSERT_TRUE(!resp);
    ASSERT_STREQ(err.kind, "invalid_argument");

    char path[512];
    snprintf(path, sizeof(path), "%s/logs/lg.log", fx.dir);
    ASSERT_OK(access(path, F_OK));
    int64_t deadline = ms_now() + 5000;
    for (;;) {
        sbx_error e2 = {0};
        resp = call(&fx, json_pack("{s:s, s:s}", "op", "status", "id", "lg"), &e2);
        json_decref(resp);
        if (!resp && strcmp(e2.kind, "expired") == 0)
            break;
        if (ms_now() > deadline)
            FAILF("not expired: %s", resp ? "still there" : e2.kind);
        usleep(20000);
    }
    ASSERT_TRUE(access(path, F_OK) < 0 && errno == ENOENT);
    snprintf(path, sizeof(path), "%s/logs/lg.json", fx.dir);
    ASSERT_TRUE(access(path, F_OK) < 0 && errno == ENOENT);
    resp = call(&fx, json_pack("{s:s, s:s}", "op", "status", "id", "never"), &err);
    ASSERT_TRUE(!resp);
    ASSERT_STREQ(err.kind, "not_found");

    /* Durations out of range are refused before anything starts. */
    ASSERT_TRUE(!exec_life(&fx, "bad", "true", "idle_timeout_ms", 0, NULL, 0, &err));
    ASSERT_STREQ(err.kind, "invalid_argument");
    ASSERT_TRUE(!exec_life(&fx, "bad", "true", "ttl_ms", -2, NULL, 0, &err));
    ASSERT_TRUE(!exec_life(&fx, "bad", "true", "disconnect_grace_ms", -1, NULL, 0, &err));
    fixture_stop(&fx);
    return 0;
}

/* idle_timeout with nobody attached, and kill_on_disconnect once the last attacher leaves. */
static int test_idle_and_disconnect(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    int64_t t0 = ms_now();
    json_t *resp = exec_life(&fx, "idle", "exec sleep 100", "idle_timeout_ms", 300, NULL, 0, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    resp = exec_life(&fx, "kod", "exec sleep 100", "kill_on_disconnect", 1, "disconnect_grace_ms", 100, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    json_t *st = wait_exited(&fx, "idle", 5000);
    ASSERT_TRUE(st);
    ASSERT_STREQ(jerrcode(st), "idle_timeout");
    ASSERT_TRUE(ms_now() - t0 >= 300);
    json_decref(st);

    int fd;
    ASSERT_OK(shim_attach(fx.dir, "kod", 0, 0, &fd, &err));
    usleep(300000); /* longer than the grace: attached, nothing happens */
    resp = call(&fx, json_pack("{s:s, s:s}", "op", "status", "id", "kod"), &err);
    ASSERT_TRUE(resp);
    ASSERT_STREQ(json_string_value(json_object_get(json_object_get(resp, "command"), "state")), "running");
    ASSERT_EQ(jint(json_object_get(resp, "command"), "attached"), 1);
    json_decref(resp);
    close(fd);
    st = wait_exited(&fx, "kod", 5000);
    ASSERT_TRUE(st);
    ASSERT_STREQ(jerrcode(st), "disconnected");
    json_decref(st);
    fixture_stop(&fx);
    return 0;
}

static int test_kill_and_background(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    json_t *resp = exec_sh(&fx, "k", "echo started; sleep 100", 0, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    usleep(100000);
    resp = call(&fx, json_pack("{s:s, s:s}", "op", "kill", "id", "k"), &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    struct stream_result sr;
    ASSERT_OK(attach_all(&fx, "k", 0, 0, &sr, 10000));
    ASSERT_TRUE(sr.exit);
    ASSERT_STREQ(jerrcode(sr.exit), "killed");
    BUF_EQ(sr.data[0], "started\n");
    result_done(&sr);

    /* A background child that escapes the session keeps the pipe open: the exit still comes (after the
     * EOF grace), with every byte before it. */
    int64_t t0 = ms_now();
    resp = exec_sh(&fx, "bg", "setsid sleep 30 & echo done", 0, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    ASSERT_OK(attach_all(&fx, "bg", 0, 0, &sr, 10000));
    ASSERT_TRUE(sr.exit);
    BUF_EQ(sr.data[0], "done\n");
    ASSERT_EQ(jint(sr.exit, "exit_code"), 0);
    ASSERT_TRUE(ms_now() - t0 < 5000);
    result_done(&sr);

    /* signal op: SIGTERM to the leader. */
    resp = call(&fx, json_pack("{s:s, s:s, s:[s,s]}", "op", "exec", "id", "sig", "argv", "/bin/sleep", "100"),
                &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    resp = call(&fx, json_pack("{s:s, s:s, s:i}", "op", "signal", "id", "sig", "signal", SIGTERM), &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    ASSERT_OK(attach_all(&fx, "sig", 0, 0, &sr, 10000));
    ASSERT_TRUE(sr.exit);
    ASSERT_EQ(jint(sr.exit, "signal"), SIGTERM);
    result_done(&sr);
    fixture_stop(&fx);
    return 0;
}

static int test_stdin(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    /* Initial stdin, then closed. */
    json_t *resp = call(&fx,
                        json_pack("{s:s, s:s, s:[s], s:s}", "op", "exec", "id", "cat1", "argv", "/bin/cat",
                                  "stdin_b64", "aGVsbG8gd29ybGQK"),
                        &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    struct stream_result sr;
    ASSERT_OK(attach_all(&fx, "cat1", 0, 0, &sr, 10000));
    BUF_EQ(sr.data[0], "hello world\n");
    ASSERT_EQ(jint(sr.exit, "exit_code"), 0);
    result_done(&sr);

    /* stdin_open + the stdin op. */
    resp = call(
        &fx,
        json_pack("{s:s, s:s, s:[s], s:b}", "op", "exec", "id", "cat2", "argv", "/bin/cat", "stdin_open", 1),
        &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    resp = call(&fx, json_pack("{s:s, s:s, s:s}", "op", "stdin", "id", "cat2", "data_b64", "b25lCg=="), &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    resp = call(
        &fx,
        json_pack("{s:s, s:s, s:s, s:b}", "op", "stdin", "id", "cat2", "data_b64", "dHdvCg==", "close", 1),
        &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    ASSERT_OK(attach_all(&fx, "cat2", 0, 0, &sr, 10000));
    BUF_EQ(sr.data[0], "one\ntwo\n");
    result_done(&sr);
    ASSERT_TRUE(
        !call(&fx, json_pack("{s:s, s:s, s:s}", "op", "stdin", "id", "cat2", "data_b64", "eA=="), &err));
    ASSERT_STREQ(err.kind, "conflict");

    /* STDIN frames and close_stdin on an attached connection. */
    resp = call(
        &fx,
        json_pack("{s:s, s:s, s:[s], s:b}", "op", "exec", "id", "cat3", "argv", "/bin/cat", "stdin_open", 1),
        &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    int fd;
    ASSERT_OK(shim_attach(fx.dir, "cat3", 0, 0, &fd, &err));
    uint8_t hdr[SHIM_FRAME_HEADER];
    shim_frame_header(hdr, SHIM_FRAME_STDIN, 4);
    ASSERT_EQ(write(fd, hdr, sizeof(hdr)), sizeof(hdr));
    ASSERT_EQ(write(fd, "ping", 4), 4);
    memset(&sr, 0, sizeof(sr));
    ASSERT_OK(read_stream(fd, &sr, 4, 5000));
    BUF_EQ(sr.data[0], "ping");
    const char *req = "{\"op\":\"close_stdin\"}";
    shim_frame_header(hdr, SHIM_FRAME_REQUEST, (uint32_t)strlen(req));
    ASSERT_EQ(write(fd, hdr, sizeof(hdr)), sizeof(hdr));
    ASSERT_EQ(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    ASSERT_OK(read_stream(fd, &sr, 0, 5000));
    ASSERT_TRUE(sr.exit && sr.eof);
    ASSERT_EQ(jint(sr.exit, "exit_code"), 0);
    result_done(&sr);
    close(fd);

    /* A command that does not read its stdin: the queue is bounded. */
    resp = call(&fx,
                json_pack("{s:s, s:s, s:[s,s], s:b}", "op", "exec", "id", "noread", "argv", "/bin/sleep",
                          "30", "stdin_open", 1),
                &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    size_t chunk = 1u << 20;
    char *b64 = malloc(chunk / 3 * 4 + 8);
    ASSERT_TRUE(b64);
    memset(b64, 'A', chunk / 3 * 4);
    b64[chunk / 3 * 4] = 0;
    bool refused = false;
    for (int i = 0; i < 12 && !refused; i++) {
        resp = call(&fx, json_pack("{s:s, s:s, s:s}", "op", "stdin", "id", "noread", "data_b64", b64), &err);
        if (!resp) {
            ASSERT_STREQ(err.kind, "resource_exhausted");
            refused = true;
        }
        json_decref(resp);
    }
    free(b64);
    ASSERT_TRUE(refused);
    resp = call(&fx, json_pack("{s:s, s:s}", "op", "kill", "id", "noread"), &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    fixture_stop(&fx);
    return 0;
}

static int test_reattach_nothing_lost(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    json_t *resp = exec_sh(&fx, "lines",
                           "i=0; while [ $i -lt 300 ]; do echo line $i; echo e$i >&2; i=$((i+1)); "
                           "[ $((i % 50)) -eq 0 ] && sleep 0.05; done",
                           0, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    struct sbx_buf all[2] = {SBX_BUF_INIT, SBX_BUF_INIT};
    uint64_t off[2] = {0, 0};
    json_t *exit_status = NULL;
    for (int round = 0; round < 100 && !exit_status; round++) {
        struct stream_result sr = {0};
        sr.next_off[0] = off[0];
        sr.next_off[1] = off[1];
        int fd;
        ASSERT_OK(shim_attach(fx.dir, "lines", off[0], off[1], &fd, &err));
        /* Read a little, then drop the connection mid-stream. */
        read_stream(fd, &sr, 100, 5000);
        close(fd);
        ASSERT_TRUE(!sr.gap);
        for (int i = 0; i < 2; i++) {
            sbx_buf_append(&all[i], sr.data[i].base, sr.data[i].len);
            off[i] = sr.next_off[i];
        }
        if (sr.exit)
            exit_status = json_incref(sr.exit);
        result_done(&sr);
    }
    ASSERT_TRUE(exit_status);
    struct sbx_buf want[2] = {SBX_BUF_INIT, SBX_BUF_INIT};
    for (int i = 0; i < 300; i++) {
        sbx_buf_appendf(&want[0], "line %d\n", i);
        sbx_buf_appendf(&want[1], "e%d\n", i);
    }
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(all[i].len, want[i].len);
        ASSERT_TRUE(memcmp(all[i].base, want[i].base, want[i].len) == 0);
        sbx_buf_done(&all[i]);
        sbx_buf_done(&want[i]);
    }
    json_decref(exit_status);
    fixture_stop(&fx);
    return 0;
}

static int test_command_not_found(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    json_t *resp =
        call(&fx, json_pack("{s:s, s:s, s:[s]}", "op", "exec", "id", "nf", "argv", "/no/such/command"), &err);
    if (!resp)
        FAILF("exec: %s (%s)", err.msg, err.kind);
    json_t *st = json_object_get(resp, "command");
    ASSERT_STREQ(json_string_value(json_object_get(st, "state")), "exited");
    ASSERT_EQ(jint(st, "exit_code"), 127);
    ASSERT_STREQ(jerrcode(st), "command_not_found");
    json_decref(resp);
    struct stream_result sr;
    ASSERT_OK(attach_all(&fx, "nf", 0, 0, &sr, 5000));
    ASSERT_TRUE(sr.exit);
    ASSERT_EQ(jint(sr.exit, "exit_code"), 127);
    result_done(&sr);
    fixture_stop(&fx);
    return 0;
}

static int send_raw(const char *dir, const void *data, size_t len, struct stream_result *sr)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/shim.sock", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    if (write(fd, data, len) != (ssize_t)len) {
        close(fd);
        return -EIO;
    }
    shutdown(fd, SHUT_WR);
    memset(sr, 0, sizeof(*sr));
    read_stream(fd, sr, 0, 5000);
    close(fd);
    return 0;
}

static int test_malformed_frames(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    struct stream_result sr;
    uint8_t buf[64];
    /* Not JSON. */
    shim_frame_header(buf, SHIM_FRAME_REQUEST, 5);
    memcpy(buf + 5, "{nope", 5);
    ASSERT_OK(send_raw(fx.dir, buf, 10, &sr));
    ASSERT_TRUE(sr.error);
    result_done(&sr);
    /* Oversized length, unknown type, a DATA frame from the client, JSON that is not an object. */
    const uint8_t bad1[] = {0xff, 0xff, 0xff, 0x7f, 1};
    ASSERT_OK(send_raw(fx.dir, bad1, sizeof(bad1), &sr));
    ASSERT_TRUE(sr.error);
    result_done(&sr);
    const uint8_t bad2[] = {0, 0, 0, 0, 99};
    ASSERT_OK(send_raw(fx.dir, bad2, sizeof(bad2), &sr));
    result_done(&sr);
    shim_frame_header(buf, SHIM_FRAME_REQUEST, 2);
    memcpy(buf + 5, "[]", 2);
    ASSERT_OK(send_raw(fx.dir, buf, 7, &sr));
    ASSERT_TRUE(sr.error);
    result_done(&sr);
    shim_frame_header(buf, SHIM_FRAME_REQUEST, 4);
    memcpy(buf + 5, "\"op\"", 4);
    ASSERT_OK(send_raw(fx.dir, buf, 9, &sr));
    result_done(&sr);
    /* Bad field types on exec. */
    sbx_error err = {0};
    const char *bad_reqs[] = {
        "{\"op\":\"exec\",\"id\":\"x\",\"argv\":\"ls\"}",
        "{\"op\":\"exec\",\"id\":\"x\",\"argv\":[1,2]}",
        "{\"op\":\"exec\",\"id\":\"x\",\"argv\":[]}",
        "{\"op\":\"exec\",\"id\":\"x\",\"argv\":[\"ls\"],\"env\":[\"NOEQ\"]}",
        "{\"op\":\"exec\",\"id\":\"x\",\"argv\":[\"ls\"],\"cwd\":\"rel\"}",
        "{\"op\":\"exec\",\"id\":\"x\",\"argv\":[\"ls\"],\"timeout_ms\":-1}",
        "{\"op\":\"exec\",\"id\":\"x\",\"argv\":[\"ls\"],\"stdin_b64\":\"!!!\"}",
        "{\"op\":\"exec\",\"id\":7,\"argv\":[\"ls\"]}",
        "{\"op\":\"signal\",\"id\":\"x\",\"signal\":\"KILL\"}",
        "{\"op\":\"frobnicate\"}",
        "{\"op\":\"attach\",\"id\":\"x\",\"stdout_offset\":-5}",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad_reqs); i++) {
        json_t *req = json_loads(bad_reqs[i], 0, NULL);
        ASSERT_TRUE(req);
        json_t *resp = call(&fx, req, &err);
        if (resp)
            FAILF("request %zu was accepted", i);
    }
    /* Still alive and well. */
    json_t *resp = call(&fx, json_pack("{s:s}", "op", "ping"), &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    fixture_stop(&fx);
    return 0;
}

/* Mount points under dir, from /proc/self/mountinfo. */
static int count_mounts_under(const char *dir)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -1;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, dir))
            n++;
    fclose(f);
    return n;
}

/* Cgroup directories named after the sandbox id anywhere two levels below /sys/fs/cgroup/<hier>. */
static int count_cgroups(const char *id)
{
    int n = 0;
    _cleanup_closedir_ DIR *root = opendir("/sys/fs/cgroup");
    if (!root)
        return 0;
    struct dirent *h;
    while ((h = readdir(root))) {
        if (h->d_name[0] == '.')
            continue;
        char p[1024];
        struct stat st;
        snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/%s", h->d_name, id);
        if (stat(p, &st) == 0)
            n++;
        snprintf(p, sizeof(p), "/sys/fs/cgroup/%s/sbx/%s", h->d_name, id);
        if (stat(p, &st) == 0)
            n++;
    }
    return n;
}

static int test_shutdown_cleans_up(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    json_t *resp = exec_sh(&fx, "s", "sleep 100", 0, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    ASSERT_TRUE(pid_alive(fx.init_pid));
    ASSERT_OK(shim_shutdown(fx.dir, 10000));
    /* The shim has exited (it is not our child; wait for the pid to vanish). */
    int64_t deadline = ms_now() + 5000;
    while (pid_alive(fx.shim_pid) && ms_now() < deadline)
        usleep(5000);
    ASSERT_TRUE(!pid_alive(fx.shim_pid));
    ASSERT_TRUE(!pid_alive(fx.init_pid));
    ASSERT_EQ(count_mounts_under(fx.dir), 0);
    ASSERT_EQ(count_cgroups(fx.id), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/shim.sock", fx.dir);
    ASSERT_TRUE(access(path, F_OK) < 0);
    /* The status of the killed command was kept for post-mortem reading. */
    snprintf(path, sizeof(path), "%s/logs/s.json", fx.dir);
    json_t *disk = json_load_file(path, 0, NULL);
    ASSERT_TRUE(disk);
    ASSERT_STREQ(jerrcode(disk), "killed");
    json_decref(disk);
    /* A second shutdown finds nobody. */
    ASSERT_TRUE(shim_shutdown(fx.dir, 1000) < 0);
    fx.shim_pid = 0;
    fixture_stop(&fx);
    return 0;
}

static int test_sigterm_and_init_death(void)
{
    struct fixture fx = {0};
    int r = fixture_start(&fx);
    if (r)
        return r;
    sbx_error err = {0};
    json_t *resp = exec_sh(&fx, "w", "sleep 100", 0, &err);
    ASSERT_TRUE(resp);
    json_decref(resp);
    /* sbx-init dies: running commands end with "killed", the shim keeps answering. */
    ASSERT_OK(kill(fx.init_pid, SIGKILL));
    struct stream_result sr;
    ASSERT_OK(attach_all(&fx, "w", 0, 0, &sr, 10000));
    ASSERT_TRUE(sr.exit);
    ASSERT_STREQ(jerrcode(sr.exit), "killed");
    result_done(&sr);
    resp = call(&fx, json_pack("{s:s}", "op", "ping"), &err);
    ASSERT_TRUE(resp);
    ASSERT_TRUE(json_is_false(json_object_get(resp, "init_alive")));
    json_decref(resp);
    ASSERT_TRUE(!exec_sh(&fx, "w2", "true", 0, &err));
    /* SIGTERM: the shim cleans up and exits. */
    ASSERT_OK(kill(fx.shim_pid, SIGTERM));
    int64_t deadline = ms_now() + 5000;
    while (pid_alive(fx.shim_pid) && ms_now() < deadline)
        usleep(5000);
    ASSERT_TRUE(!pid_alive(fx.shim_pid));
    ASSERT_EQ(count_mounts_under(fx.dir), 0);
    fx.shim_pid = 0;
    fixture_stop(&fx);
    return 0;
}

static int test_spawn_failure(void)
{
    int r = check_prereqs();
    if (r)
        return r;
    char dir[] = "/tmp/sbx-shimtest-XXXXXX", shim[512], path[600];
    ASSERT_TRUE(mkdtemp(dir));
    shim_path(shim, sizeof(shim));
    sbx_error err = {0};
    pid_t sp, ip;
    /* No config.json: a typed error, quickly, no process left. */
    ASSERT_TRUE(shim_spawn(shim, dir, 5000, &sp, &ip, &err) < 0);
    printf("# expected failure: %s\n", err.msg);
    ASSERT_TRUE(strstr(err.msg, "config") != NULL);
    snprintf(path, sizeof(path), "%s/shim.sock", dir);
    ASSERT_TRUE(access(path, F_OK) < 0);
    /* A missing binary. */
    ASSERT_TRUE(shim_spawn("/no/such/sbx-shim", dir, 5000, &sp, &ip, &err) < 0);
    rm_rf(dir);
    return 0;
}

TESTS(TEST(test_spawn_ping) TEST(test_exec_attach_exit) TEST(test_get_or_create) TEST(test_attach_offsets)
          TEST(test_large_output) TEST(test_timeout) TEST(test_kill_and_background) TEST(test_stdin)
              TEST(test_reattach_nothing_lost) TEST(test_command_not_found) TEST(test_malformed_frames)
                  TEST(test_shutdown_cleans_up) TEST(test_sigterm_and_init_death) TEST(test_spawn_failure)
                      TEST(test_logs_and_expiry) TEST(test_idle_and_disconnect))
