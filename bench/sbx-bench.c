/* sbx-bench: latency benchmarks (libuv test/benchmark-*.c style). bench/run.sh drives it.
 *
 *   sbx-bench spawn NAME N CMD ARGS...        fork+exec+wait CMD N times ("{i}" in ARGS becomes the
 *                                             iteration number, "{p}" the bench's pid)
 *   sbx-bench health HOST:PORT [TIMEOUT_SEC]  wait until GET /healthz answers 200
 *   sbx-bench sbx HOST:PORT NCREATE NEXEC     the sbx API over one keep-alive TCP connection:
 *       sbx-create-first-output  POST /v1/sandboxes {} → POST .../commands echo hi (wait) → response
 *       sbx-exec                 POST .../commands ["true"] (wait) on one sandbox
 *
 * Every measurement prints one line:
 *   RESULT NAME n=N median_ms=X p90_ms=Y mean_ms=Z min_ms=W max_ms=V
 * or, when it cannot run:
 *   RESULT NAME n/a reason=...
 * The HTTP client is a minimal HTTP/1.1 one on a raw socket (no libcurl), so client overhead stays small.
 * SBX_API_KEY in the environment is sent as a bearer token. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 3

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, double *v, size_t n)
{
    if (n == 0) {
        printf("RESULT %s n/a reason=no-successful-iterations\n", name);
        return;
    }
    qsort(v, n, sizeof(*v), cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    size_t p90 = (size_t)((double)n * 0.9 + 0.999999);
    if (p90 < 1)
        p90 = 1;
    printf("RESULT %s n=%zu median_ms=%.3f p90_ms=%.3f mean_ms=%.3f min_ms=%.3f max_ms=%.3f\n", name, n,
           median, v[p90 - 1], sum / (double)n, v[0], v[n - 1]);
    fflush(stdout);
}

static void na(const char *name, const char *reason)
{
    printf("RESULT %s n/a reason=%s\n", name, reason);
    fflush(stdout);
}

/* --- spawn ---------------------------------------------------------------------------------------- */

static char *subst(const char *arg, long i)
{
    char num[32], pid[32];
    snprintf(num, sizeof(num), "%ld", i);
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    size_t cap = strlen(arg) * 4 + 64;
    char *out = malloc(cap), *o = out;
    if (!out)
        abort();
    for (const char *p = arg; *p;) {
        if (strncmp(p, "{i}", 3) == 0) {
            o = stpcpy(o, num);
            p += 3;
        } else if (strncmp(p, "{p}", 3) == 0) {
            o = stpcpy(o, pid);
            p += 3;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/* Runs argv once with stdio on /dev/null; returns its wait status or -1. */
static int run_once(char **argv, int devnull)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        if (!getenv("SBX_BENCH_STDERR"))
            dup2(devnull, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return st;
}

static int cmd_spawn(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: sbx-bench spawn NAME N CMD ARGS...\n");
        return 2;
    }
    const char *name = argv[1];
    long n = atol(argv[2]);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int cargc = argc - 3;
    char **cargv = calloc((size_t)cargc + 1, sizeof(char *));
    double *v = calloc((size_t)n + 1, sizeof(double));
    size_t ok = 0;
    int last_status = 0;
    for (long i = -WARMUP; i < n; i++) {
        for (int k = 0; k < cargc; k++)
            cargv[k] = subst(argv[3 + k], i + WARMUP);
        double t0 = now_ms();
        int st = run_once(cargv, devnull);
        double t1 = now_ms();
        for (int k = 0; k < cargc; k++)
            free(cargv[k]);
        if (st != 0) {
            last_status = st;
            if (i < 0) { /* a failing warm-up: the command does not work here */
                char reason[64];
                snprintf(reason, sizeof(reason), "command-failed-status-%d", st);
                na(name, reason);
                return 1;
            }
            continue;
        }
        if (i >= 0)
            v[ok++] = t1 - t0;
    }
    if (ok < (size_t)n)
        fprintf(stderr, "sbx-bench: %s: %zu of %ld iterations failed (last status %d)\n", name,
                (size_t)n - ok, n, last_status);
    report(name, v, ok);
    return 0;
}

/* --- minimal HTTP/1.1 client ---------------------------------------------------------------------- */

struct conn {
    int fd;
    char host[128];
    const char *api_key;
    char *in; /* received, not yet consumed */
    size_t in_len, in_cap;
};

struct response {
    int status;
    char *body;
    size_t len;
};

static int conn_open(struct conn *c, const char *hostport)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    snprintf(c->host, sizeof(c->host), "%s", hostport);
    char host[128];
    snprintf(host, sizeof(host), "%s", hostport);
    char *colon = strrchr(host, ':');
    if (!colon)
        return -EINVAL;
    *colon = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return -EHOSTUNREACH;
    int r = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            c->fd = fd;
            r = 0;
            break;
        }
        r = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    c->api_key = getenv("SBX_API_KEY");
    return r;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

/* Reads more bytes into c->in; 0 on EOF, -errno on error, else bytes read. */
static ssize_t fill(struct conn *c)
{
    if (c->in_cap - c->in_len < 65536) {
        c->in_cap = c->in_cap * 2 + 65536;
        c->in = realloc(c->in, c->in_cap);
        if (!c->in)
            abort();
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        c->in_len += (size_t)n;
        return n;
    }
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Index just past the first CRLF at or after `from`, or 0. */
static size_t find_crlf(struct conn *c, size_t from)
{
    for (size_t i = from; i + 1 < c->in_len; i++)
        if (c->in[i] == '\r' && c->in[i + 1] == '\n')
            return i + 2;
    return 0;
}

static int need(struct conn *c, size_t n)
{
    while (c->in_len < n) {
        ssize_t r = fill(c);
        if (r <= 0)
            return r == 0 ? -ECONNRESET : (int)r;
    }
    return 0;
}

static void body_append(struct response *res, const char *p, size_t n)
{
    res->body = realloc(res->body, res->len + n + 1);
    if (!res->body)
        abort();
    memcpy(res->body + res->len, p, n);
    res->len += n;
    res->body[res->len] = '\0';
}

static int http_do(struct conn *c, const char *method, const char *path, const char *body,
                   struct response *res)
{
    memset(res, 0, sizeof(*res));
    char head[1024];
    size_t blen = body ? strlen(body) : 0;
    int hl = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive\r\n%s%s%s"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      method, path, c->host, c->api_key ? "Authorization: Bearer " : "",
                      c->api_key ? c->api_key : "", c->api_key ? "\r\n" : "", blen);
    struct iovec iov[2] = {{head, (size_t)hl}, {(void *)body, blen}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = blen ? 2 : 1};
    size_t total = (size_t)hl + blen;
    while (total > 0) {
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        total -= (size_t)n;
        while (n > 0 && msg.msg_iovlen > 0) {
            size_t k = (size_t)n < msg.msg_iov[0].iov_len ? (size_t)n : msg.msg_iov[0].iov_len;
            msg.msg_iov[0].iov_base = (char *)msg.msg_iov[0].iov_base + k;
            msg.msg_iov[0].iov_len -= k;
            n -= (ssize_t)k;
            if (msg.msg_iov[0].iov_len == 0) {
                msg.msg_iov++;
                msg.msg_iovlen--;
            }
        }
    }

    /* Status line and headers. */
    size_t end;
    for (;;) {
        end = 0;
        for (size_t i = 0; i + 3 < c->in_len; i++)
            if (memcmp(c->in + i, "\r\n\r\n", 4) == 0) {
                end = i + 4;
                break;
            }
        if (end)
            break;
        ssize_t r = fill(c);
        if (r <= 0)
            return r == 0 ? -ECONNRESET : (int)r;
    }
    if (c->in_len < 12 || strncmp(c->in, "HTTP/1.", 7) != 0)
        return -EPROTO;
    res->status = atoi(c->in + 9);
    long long clen = -1;
    bool chunked = false;
    for (size_t i = find_crlf(c, 0); i && i < end - 2;) {
        size_t next = find_crlf(c, i);
        char *line = c->in + i;
        size_t len = next - i - 2;
        if (len > 15 && strncasecmp(line, "Content-Length:", 15) == 0)
            clen = atoll(line + 15);
        else if (len > 18 && strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
                 memmem(line, len, "chunked", 7))
            chunked = true;
        i = next;
    }
    consume(c, end);
    if (res->status == 204 || res->status == 304 || (res->status >= 100 && res->status < 200))
        return 0;
    if (chunked) {
        for (;;) {
            size_t eol;
            while (!(eol = find_crlf(c, 0)))
                if (fill(c) <= 0)
                    return -ECONNRESET;
            size_t sz = strtoul(c->in, NULL, 16);
            consume(c, eol);
            if (sz == 0) { /* trailers until an empty line */
                for (;;) {
                    while (!(eol = find_crlf(c, 0)))
                        if (fill(c) <= 0)
                            return -ECONNRESET;
                    consume(c, eol);
                    if (eol == 2)
                        return 0;
                }
            }
            int r = need(c, sz + 2);
            if (r < 0)
                return r;
            body_append(res, c->in, sz);
            consume(c, sz + 2);
        }
    }
    if (clen < 0)
        return -EPROTO; /* read-until-close bodies are not used by sbxd */
    int r = need(c, (size_t)clen);
    if (r < 0)
        return r;
    body_append(res, c->in, (size_t)clen);
    consume(c, (size_t)clen);
    return 0;
}

/* --- sbx ------------------------------------------------------------------------------------------ */

static int cmd_health(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    double timeout = argc > 2 ? atof(argv[2]) : 10;
    double deadline = now_ms() + timeout * 1000;
    do {
        struct conn c;
        struct response res;
        if (conn_open(&c, argv[1]) == 0 && http_do(&c, "GET", "/healthz", NULL, &res) == 0 &&
            res.status == 200) {
            free(res.body);
            conn_close(&c);
            return 0;
        }
        conn_close(&c);
        usleep(20000);
    } while (now_ms() < deadline);
    return 1;
}

static void report_http_error(const char *what, int r, const struct response *res)
{
    if (r < 0)
        fprintf(stderr, "sbx-bench: %s: %s\n", what, strerror(-r));
    else
        fprintf(stderr, "sbx-bench: %s: HTTP %d %.*s\n", what, res->status,
                (int)(res->len > 300 ? 300 : res->len), res->body ? res->body : "");
}

/* POST /v1/sandboxes; returns a new id or NULL. */
static char *create_sandbox(struct conn *c)
{
    struct response res;
    int r = http_do(c, "POST", "/v1/sandboxes", "{}", &res);
    char *id = NULL;
    if (r == 0 && res.status == 201) {
        json_t *j = json_loadb(res.body, res.len, 0, NULL);
        const char *s = json_string_value(json_object_get(j, "id"));
        if (s)
            id = strdup(s);
        json_decref(j);
    }
    if (!id)
        report_http_error("create sandbox", r, &res);
    free(res.body);
    return id;
}

/* Runs argv (a JSON array literal) with wait; checks exit 0 and, if given, the stdout. */
static int run_command(struct conn *c, const char *id, const char *argv_json, const char *want_stdout)
{
    char path[256], body[512];
    snprintf(path, sizeof(path), "/v1/sandboxes/%s/commands", id);
    snprintf(body, sizeof(body), "{\"command\":%s,\"wait\":true}", argv_json);
    struct response res;
    int r = http_do(c, "POST", path, body, &res);
    int ok = -1;
    if (r == 0 && res.status == 200) {
        json_t *j = json_loadb(res.body, res.len, 0, NULL);
        json_t *code = json_object_get(j, "exit_code");
        const char *out = json_string_value(json_object_get(j, "stdout"));
        if (json_is_integer(code) && json_integer_value(code) == 0 &&
            (!want_stdout || (out && strcmp(out, want_stdout) == 0)))
            ok = 0;
        json_decref(j);
    }
    if (ok < 0)
        report_http_error("run command", r, &res);
    free(res.body);
    return ok;
}

static void delete_sandbox(struct conn *c, const char *id)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
    struct response res;
    int r = http_do(c, "DELETE", path, NULL, &res);
    if (r < 0 || res.status != 204)
        report_http_error("delete sandbox", r, &res);
    free(res.body);
}

static int cmd_sbx(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: sbx-bench sbx HOST:PORT NCREATE NEXEC [PACE_MS [SUFFIX]]\n");
        return 2;
    }
    long ncreate = atol(argv[2]), nexec = atol(argv[3]);
    /* PACE_MS: idle time between creates, outside the timings, as an agent that makes one sandbox at a
     * time leaves sbxd (its warm pool refills meanwhile). SUFFIX tells runs apart ("-cold"). */
    long pace_ms = argc > 4 ? atol(argv[4]) : 0;
    const char *suffix = argc > 5 ? argv[5] : "";
    char name_first[64], name_create[64], name_exec[64];
    snprintf(name_first, sizeof(name_first), "sbx-create-first-output%s", suffix);
    snprintf(name_create, sizeof(name_create), "sbx-create-only%s", suffix);
    snprintf(name_exec, sizeof(name_exec), "sbx-exec%s", suffix);
    struct conn c;
    int r = conn_open(&c, argv[1]);
    if (r < 0) {
        na(name_first, "cannot-connect");
        na(name_exec, "cannot-connect");
        return 1;
    }
    double *v = calloc((size_t)(ncreate > nexec ? ncreate : nexec) + 1, sizeof(double));
    double *vc = calloc((size_t)ncreate + 1, sizeof(double));
    size_t n = 0, nc = 0;
    int failures = 0;

    /* (a) create → first output. */
    for (long i = -1; i < ncreate && failures < 3; i++) {
        if (pace_ms > 0)
            usleep((useconds_t)pace_ms * 1000);
        double t0 = now_ms();
        char *id = create_sandbox(&c);
        double t1 = now_ms();
        if (!id) {
            failures++;
            continue;
        }
        int ok = run_command(&c, id, "[\"echo\",\"hi\"]", "hi\n");
        double t2 = now_ms();
        delete_sandbox(&c, id);
        free(id);
        if (ok < 0) {
            failures++;
            continue;
        }
        if (i >= 0) { /* the first one warms caches */
            v[n++] = t2 - t0;
            vc[nc++] = t1 - t0;
        }
    }
    if (n)
        report(name_first, v, n);
    else
        na(name_first, "create-or-command-failed");
    if (nc)
        report(name_create, vc, nc);

    /* (b) exec round trip on one sandbox. */
    n = 0;
    failures = 0;
    char *id = create_sandbox(&c);
    if (!id) {
        na(name_exec, "create-failed");
        conn_close(&c);
        return 1;
    }
    for (long i = -WARMUP; i < nexec && failures < 3; i++) {
        double t0 = now_ms();
        int ok = run_command(&c, id, "[\"true\"]", NULL);
        double t1 = now_ms();
        if (ok < 0) {
            failures++;
            continue;
        }
        if (i >= 0)
            v[n++] = t1 - t0;
    }
    if (n)
        report(name_exec, v, n);
    else
        na(name_exec, "command-failed");

    /* (c) pause and resume of that sandbox, with a process in it. */
    char path[256], name_pause[64], name_resume[64];
    snprintf(name_pause, sizeof(name_pause), "sbx-pause%s", suffix);
    snprintf(name_resume, sizeof(name_resume), "sbx-resume%s", suffix);
    double *vr = calloc((size_t)nexec + 1, sizeof(double));
    size_t np = 0, nr = 0;
    long ncycles = nexec / 5 > 0 ? nexec / 5 : 1;
    for (long i = 0; i < ncycles; i++) {
        struct response res;
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/pause", id);
        double t0 = now_ms();
        int rp = http_do(&c, "POST", path, NULL, &res);
        double t1 = now_ms();
        free(res.body);
        if (rp < 0 || res.status != 200)
            break;
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/resume", id);
        rp = http_do(&c, "POST", path, NULL, &res);
        double t2 = now_ms();
        free(res.body);
        if (rp < 0 || res.status != 200)
            break;
        v[np++] = t1 - t0;
        vr[nr++] = t2 - t1;
    }
    if (np)
        report(name_pause, v, np);
    else
        na(name_pause, "pause-failed");
    if (nr)
        report(name_resume, vr, nr);
    free(vr);
    delete_sandbox(&c, id);
    free(id);
    conn_close(&c);
    free(v);
    free(vc);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "spawn") == 0)
        return cmd_spawn(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "health") == 0)
        return cmd_health(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "sbx") == 0)
        return cmd_sbx(argc - 1, argv + 1);
    fprintf(stderr, "usage: sbx-bench spawn NAME N CMD ARGS... | health HOST:PORT [SEC] | sbx HOST:PORT "
                    "NCREATE NEXEC [PACE_MS [SUFFIX]]\n");
    return 2;
}
