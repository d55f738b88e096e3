/* sbx-bench: latency and throughput benchmarks (libuv test/benchmark-*.c style). bench/run.sh drives it.
 *
 *   sbx-bench spawn NAME N CMD ARGS...        fork+exec+wait CMD N times ("{i}" in ARGS becomes the
 *                                             iteration number, "{p}" the bench's pid)
 *   sbx-bench pipe NAME N BYTES               the stream workload (STREAM_CMD below) on the host, its
 *                                             stdout read through a plain pipe
 *   sbx-bench health HOST:PORT [TIMEOUT_SEC]  wait until GET /healthz answers 200
 *   sbx-bench sbx HOST:PORT NCREATE NEXEC     the sbx API over one keep-alive TCP connection:
 *       sbx-create-first-output  POST /v1/sandboxes {} → POST .../commands echo hi (wait) → response
 *       sbx-exec                 POST .../commands ["true"] (wait) on one sandbox
 *       sbx-pause, sbx-resume    POST .../pause, POST .../resume of that sandbox
 *   sbx-bench concurrent HOST:PORT N STAGGER_MS SUFFIX
 *       N clients (threads, one connection each) each do create → echo hi → first output, started
 *       STAGGER_MS apart (0: all at once, a burst); reports per-client latencies and the wall time for all
 *   sbx-bench stream HOST:PORT BYTES N        stdout of STREAM_CMD (BYTES) in a sandbox, read over
 *                                             WebSocket and over SSE, N times each
 *   sbx-bench files HOST:PORT BYTES N         PUT then GET of a BYTES file through the files API, N times
 *   sbx-bench density HOST:PORT N LEVELS M PACE_MS [HOOK]
 *       creates idle sandboxes one after another up to N; when LEVELS (comma list) live sandboxes exist,
 *       times M create → first output (each deleted again, PACE_MS apart) and runs `HOOK LEVEL`
 *
 * Every measurement prints one line:
 *   RESULT NAME n=N median_ms=X p90_ms=Y p95_ms=Z mean_ms=M min_ms=W max_ms=V [KEY=VALUE...]
 * (throughputs add bytes=B: B bytes per iteration), or, when it cannot run:
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
#include <pthread.h>
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

static double percentile(const double *sorted, size_t n, double p)
{
    size_t k = (size_t)((double)n * p + 0.999999);
    if (k < 1)
        k = 1;
    return sorted[k - 1];
}

/* Prints the RESULT line; extra (may be NULL) is appended as is ("bytes=... wall_ms=..."). */
static void report_x(const char *name, double *v, size_t n, const char *extra)
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
    printf(
        "RESULT %s n=%zu median_ms=%.3f p90_ms=%.3f p95_ms=%.3f mean_ms=%.3f min_ms=%.3f max_ms=%.3f%s%s\n",
        name, n, median, percentile(v, n, 0.9), percentile(v, n, 0.95), sum / (double)n, v[0], v[n - 1],
        extra ? " " : "", extra ? extra : "");
    fflush(stdout);
}

static void report(const char *name, double *v, size_t n)
{
    report_x(name, v, n, NULL);
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

static int send_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        p = (const char *)p + k;
        n -= (size_t)k;
    }
    return 0;
}

/* Sends a request head; extra (may be NULL) is more header lines, each ending in CRLF. clen < 0: no
 * Content-Length (a request without a body). */
static int send_head(struct conn *c, const char *method, const char *path, const char *extra, long long clen)
{
    char head[2048], len[64] = "";
    if (clen >= 0)
        snprintf(len, sizeof(len), "Content-Length: %lld\r\n", clen);
    int hl = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s%s\r\n", method, path,
                      c->host, c->api_key ? "Authorization: Bearer " : "", c->api_key ? c->api_key : "",
                      c->api_key ? "\r\n" : "", extra ? extra : "", len);
    if (hl < 0 || (size_t)hl >= sizeof(head))
        return -E2BIG;
    return send_all(c->fd, head, (size_t)hl);
}

/* How the body of a response is framed, and how far reading it has got. */
struct body {
    int status;
    bool chunked, in_chunk, eof;
    long long clen;           /* -1: none given */
    unsigned long long left;  /* Content-Length bytes still to read */
    unsigned long long chunk; /* bytes left in the current chunk */
};

/* Reads the status line and headers (consumed) of the next response. */
static int read_head(struct conn *c, struct body *b)
{
    memset(b, 0, sizeof(*b));
    b->clen = -1;
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
    b->status = atoi(c->in + 9);
    for (size_t i = find_crlf(c, 0); i && i < end - 2;) {
        size_t next = find_crlf(c, i);
        char *line = c->in + i;
        size_t len = next - i - 2;
        if (len > 15 && strncasecmp(line, "Content-Length:", 15) == 0)
            b->clen = atoll(line + 15);
        else if (len > 18 && strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
                 memmem(line, len, "chunked", 7))
            b->chunked = true;
        i = next;
    }
    consume(c, end);
    if (b->status == 204 || b->status == 304 || (b->status >= 100 && b->status < 200))
        b->eof = true;
    else if (!b->chunked && b->clen < 0)
        return -EPROTO; /* read-until-close bodies are not used by sbxd */
    else if (!b->chunked)
        b->left = (unsigned long long)b->clen;
    return 0;
}

/* Reads up to cap bytes of the body into buf: bytes read, 0 at its end, or -errno. Large unchunked bodies
 * are received straight into buf (no copy through c->in). */
static ssize_t body_read(struct conn *c, struct body *b, char *buf, size_t cap)
{
    for (;;) {
        if (b->eof)
            return 0;
        if (!b->chunked) {
            if (b->left == 0) {
                b->eof = true;
                return 0;
            }
            size_t want = cap < b->left ? cap : (size_t)b->left;
            if (c->in_len > 0) {
                size_t n = want < c->in_len ? want : c->in_len;
                memcpy(buf, c->in, n);
                consume(c, n);
                b->left -= n;
                return (ssize_t)n;
            }
            ssize_t n = recv(c->fd, buf, want, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return n == 0 ? -ECONNRESET : -errno;
            b->left -= (size_t)n;
            return n;
        }
        if (b->chunk == 0) {
            size_t eol;
            if (b->in_chunk) { /* the CRLF after a chunk's data */
                int r = need(c, 2);
                if (r < 0)
                    return r;
                consume(c, 2);
                b->in_chunk = false;
            }
            while (!(eol = find_crlf(c, 0)))
                if (fill(c) <= 0)
                    return -ECONNRESET;
            unsigned long long sz = strtoull(c->in, NULL, 16);
            consume(c, eol);
            if (sz == 0) { /* trailers until an empty line */
                for (;;) {
                    while (!(eol = find_crlf(c, 0)))
                        if (fill(c) <= 0)
                            return -ECONNRESET;
                    consume(c, eol);
                    if (eol == 2) {
                        b->eof = true;
                        return 0;
                    }
                }
            }
            b->chunk = sz;
            b->in_chunk = true;
        }
        if (c->in_len == 0 && fill(c) <= 0)
            return -ECONNRESET;
        size_t n = cap < b->chunk ? cap : (size_t)b->chunk;
        if (n > c->in_len)
            n = c->in_len;
        memcpy(buf, c->in, n);
        consume(c, n);
        b->chunk -= n;
        return (ssize_t)n;
    }
}

static int http_do(struct conn *c, const char *method, const char *path, const char *body,
                   struct response *res)
{
    memset(res, 0, sizeof(*res));
    size_t blen = body ? strlen(body) : 0;
    int r = send_head(c, method, path, "Connection: keep-alive\r\nContent-Type: application/json\r\n",
                      (long long)blen);
    if (r == 0 && blen)
        r = send_all(c->fd, body, blen);
    struct body b;
    if (r < 0 || (r = read_head(c, &b)) < 0)
        return r;
    res->status = b.status;
    char buf[65536];
    ssize_t n;
    while ((n = body_read(c, &b, buf, sizeof(buf))) > 0)
        body_append(res, buf, (size_t)n);
    return n < 0 ? (int)n : 0;
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

/* --- throughput workload -------------------------------------------------------------------------- */

/* The stream workload: a 1 MiB block of 'a's written, then (after a line on stdin, so that the clock
 * starts with the reader attached) `cat` of it BYTES/1 MiB times to stdout. cat is the fastest single
 * writer in a Debian base (128 KiB writes); not /dev/zero: NUL bytes are valid UTF-8, and JSON carries
 * each one as the six bytes "\u0000". */
#define STREAM_CMD                                                                                           \
    "b=/tmp/sbx-bench-blk.$$; head -c 1048576 /dev/zero | tr '\\0' a >$b; set --; i=0; "                     \
    "while [ $i -lt %llu ]; do set -- \"$@\" $b; i=$((i+1)); done; read x; cat \"$@\"; rm -f $b"
#define STREAM_UNIT (1ULL << 20)

static int cmd_pipe(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: sbx-bench pipe NAME N BYTES\n");
        return 2;
    }
    const char *name = argv[1];
    long n = atol(argv[2]);
    unsigned long long bytes = strtoull(argv[3], NULL, 10);
    bytes = bytes / STREAM_UNIT * STREAM_UNIT;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), STREAM_CMD, bytes / STREAM_UNIT);
    double *v = calloc((size_t)n + 1, sizeof(double));
    size_t ok = 0;
    static char buf[1 << 20];
    for (long i = 0; i < n; i++) {
        int p[2], in[2];
        if (pipe2(p, O_CLOEXEC) < 0 || pipe2(in, O_CLOEXEC) < 0)
            return 1;
        pid_t pid = fork();
        if (pid == 0) {
            dup2(p[1], 1);
            dup2(in[0], 0);
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        close(in[0]);
        double t0 = now_ms();
        if (write(in[1], "go\n", 3) != 3)
            return 1;
        close(in[1]);
        unsigned long long got = 0;
        ssize_t k;
        while ((k = read(p[0], buf, sizeof(buf))) > 0 || (k < 0 && errno == EINTR))
            if (k > 0)
                got += (unsigned long long)k;
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        double t1 = now_ms();
        if (got == bytes)
            v[ok++] = t1 - t0;
    }
    char extra[64];
    snprintf(extra, sizeof(extra), "bytes=%llu", bytes);
    report_x(name, v, ok, extra);
    free(v);
    return 0;
}

/* --- concurrent creates ---------------------------------------------------------------------------- */

struct client {
    const char *hostport;
    double start_at, t_start, t_created, t_done;
    char *id;
    int ok;
};

static void *client_main(void *arg)
{
    struct client *cl = arg;
    struct conn c;
    cl->ok = -1;
    if (conn_open(&c, cl->hostport) < 0)
        return NULL;
    double wait = cl->start_at - now_ms();
    if (wait > 0)
        usleep((useconds_t)(wait * 1000));
    cl->t_start = now_ms();
    cl->id = create_sandbox(&c);
    cl->t_created = now_ms();
    if (cl->id && run_command(&c, cl->id, "[\"echo\",\"hi\"]", "hi\n") == 0) {
        cl->t_done = now_ms();
        cl->ok = 0;
    }
    conn_close(&c);
    return NULL;
}

static int cmd_concurrent(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: sbx-bench concurrent HOST:PORT N STAGGER_MS NAME\n");
        return 2;
    }
    long n = atol(argv[2]);
    double stagger = atof(argv[3]);
    const char *name = argv[4];
    struct client *cl = calloc((size_t)n, sizeof(*cl));
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    double *v = calloc((size_t)n + 1, sizeof(double)), *vc = calloc((size_t)n + 1, sizeof(double));
    double epoch = now_ms() + 200; /* every thread connected and waiting before the first starts */
    for (long i = 0; i < n; i++) {
        cl[i].hostport = argv[1];
        cl[i].start_at = epoch + stagger * (double)i;
        if (pthread_create(&th[i], NULL, client_main, &cl[i]) != 0) {
            na(name, "pthread_create");
            return 1;
        }
    }
    size_t ok = 0;
    double first = 0, last = 0;
    for (long i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (cl[i].ok == 0) {
            vc[ok] = cl[i].t_created - cl[i].t_start;
            v[ok++] = cl[i].t_done - cl[i].t_start;
            if (first == 0 || cl[i].t_start < first)
                first = cl[i].t_start;
            if (cl[i].t_done > last)
                last = cl[i].t_done;
        }
    }
    qsort(vc, ok, sizeof(*vc), cmp_double);
    char extra[192];
    snprintf(extra, sizeof(extra),
             "wall_ms=%.1f failed=%zu stagger_ms=%g create_median_ms=%.3f create_p95_ms=%.3f", last - first,
             (size_t)n - ok, stagger, ok ? vc[ok / 2] : 0.0, ok ? percentile(vc, ok, 0.95) : 0.0);
    report_x(name, v, ok, extra);
    struct conn c;
    if (conn_open(&c, argv[1]) == 0) {
        for (long i = 0; i < n; i++)
            if (cl[i].id) {
                delete_sandbox(&c, cl[i].id);
                free(cl[i].id);
            }
        conn_close(&c);
    }
    free(cl);
    free(th);
    free(v);
    free(vc);
    return ok == (size_t)n ? 0 : 1;
}

/* --- streaming --------------------------------------------------------------------------------------- */

/* Starts a stdin_open command; returns its id or NULL. */
static char *start_command(struct conn *c, const char *sid, const char *cmd)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/sandboxes/%s/commands", sid);
    json_t *j = json_pack("{s:s, s:b}", "command", cmd, "stdin_open", 1);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct response res;
    int r = http_do(c, "POST", path, body, &res);
    free(body);
    char *id = NULL;
    if (r == 0 && res.status == 201) {
        json_t *o = json_loadb(res.body, res.len, 0, NULL);
        const char *s = json_string_value(json_object_get(o, "id"));
        id = s ? strdup(s) : NULL;
        json_decref(o);
    }
    if (!id)
        report_http_error("start command", r, &res);
    free(res.body);
    return id;
}

/* stdout_bytes of an exit event's command object, or -1. */
static long long exit_stdout_bytes(const char *json, size_t len)
{
    json_t *o = json_loadb(json, len, 0, NULL);
    json_t *cmd = json_is_object(json_object_get(o, "command")) ? json_object_get(o, "command") : o;
    json_t *v = json_object_get(cmd, "stdout_bytes");
    long long r = json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(o);
    return r;
}

/* Reads an SSE stream to its exit event; returns the exit event's stdout_bytes or -errno. */
static long long read_sse(struct conn *c, struct body *b, unsigned long long *ret_wire)
{
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    long long result = -EPROTO;
    ssize_t n;
    *ret_wire = 0;
    while ((n = body_read(c, b, buf + len, cap - len)) > 0) {
        *ret_wire += (unsigned long long)n;
        len += (size_t)n;
        size_t pos = 0;
        for (;;) { /* every complete event: skip output, parse exit */
            char *end = memmem(buf + pos, len - pos, "\n\n", 2);
            if (!end)
                break;
            char *ev = buf + pos;
            size_t evlen = (size_t)(end - ev);
            if (evlen > 11 && strncmp(ev, "event: exit", 11) == 0) {
                char *data = memmem(ev, evlen, "data: ", 6);
                result = data ? exit_stdout_bytes(data + 6, (size_t)(end - data - 6)) : -EPROTO;
                free(buf);
                return result;
            }
            if (evlen > 12 && strncmp(ev, "event: error", 12) == 0) {
                fprintf(stderr, "sbx-bench: sse error event: %.*s\n", (int)(evlen > 300 ? 300 : evlen), ev);
                free(buf);
                return -EIO;
            }
            pos += evlen + 2;
        }
        memmove(buf, buf + pos, len - pos);
        len -= pos;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf)
                abort();
        }
    }
    free(buf);
    return n < 0 ? n : result;
}

/* Discards n bytes of the connection (buffered first, then straight from the socket). */
static int skip(struct conn *c, unsigned long long n)
{
    static char scratch[1 << 16];
    size_t k = n < c->in_len ? (size_t)n : c->in_len;
    consume(c, k);
    n -= k;
    while (n > 0) {
        ssize_t r = recv(c->fd, scratch, n < sizeof(scratch) ? (size_t)n : sizeof(scratch), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? -ECONNRESET : -errno;
        n -= (unsigned long long)r;
    }
    return 0;
}

/* Reads WebSocket frames to the exit message; returns its stdout_bytes or -errno. Output messages are
 * recognised by their first bytes and skipped unparsed. */
static long long read_ws(struct conn *c, unsigned long long *ret_wire)
{
    *ret_wire = 0;
    for (;;) {
        int r = need(c, 2);
        if (r < 0)
            return r;
        unsigned char h0 = (unsigned char)c->in[0], h1 = (unsigned char)c->in[1];
        int op = h0 & 0x0f;
        size_t hl = 2;
        unsigned long long plen = h1 & 0x7f;
        if (plen == 126)
            hl = 4;
        else if (plen == 127)
            hl = 10;
        if (h1 & 0x80)
            hl += 4; /* a server never masks, but be tolerant */
        if ((r = need(c, hl)) < 0)
            return r;
        if (plen == 126)
            plen = ((unsigned long long)(unsigned char)c->in[2] << 8) | (unsigned char)c->in[3];
        else if (plen == 127) {
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | (unsigned char)c->in[2 + i];
        }
        consume(c, hl);
        *ret_wire += hl + plen;
        if (op == 0x8)
            return -ECONNRESET;
        size_t peek = plen < 64 ? (size_t)plen : 64;
        if ((r = need(c, peek)) < 0)
            return r;
        bool output = op == 0x0 || op == 0x2 || memmem(c->in, peek, "\"output\"", 8);
        if (op == 0x1 && !output) {
            if ((r = need(c, (size_t)plen)) < 0)
                return r;
            json_t *o = json_loadb(c->in, (size_t)plen, 0, NULL);
            const char *type = json_string_value(json_object_get(o, "type"));
            bool is_exit = type && strcmp(type, "exit") == 0;
            json_decref(o);
            if (is_exit)
                return exit_stdout_bytes(c->in, (size_t)plen);
        }
        if ((r = skip(c, plen)) < 0)
            return r;
    }
}

static int post_stdin(struct conn *c, const char *sid, const char *cid, const char *data)
{
    char path[512];
    snprintf(path, sizeof(path), "/v1/sandboxes/%s/commands/%s/stdin?close=true", sid, cid);
    struct response res;
    int r = http_do(c, "POST", path, data, &res);
    if (r < 0 || res.status != 204) {
        report_http_error("stdin", r, &res);
        r = -EIO;
    }
    free(res.body);
    return r;
}

/* One stream of BYTES over "ws" or "sse": the command waits for a line on stdin, so the clock starts when
 * the client is attached and the output is read live (not replayed from the log). */
static int stream_once(const char *hostport, const char *sid, unsigned long long bytes, bool ws,
                       double *ret_ms, unsigned long long *ret_wire)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), STREAM_CMD, bytes / STREAM_UNIT);
    /* A control connection of its own: sbxd closes keep-alive connections left idle for the length of a
     * long stream. */
    struct conn ctl_conn, *ctl = &ctl_conn, s;
    int r = conn_open(ctl, hostport);
    if (r < 0)
        return r;
    char *cid = start_command(ctl, sid, cmd);
    if (!cid) {
        conn_close(ctl);
        return -EIO;
    }
    r = conn_open(&s, hostport);
    if (r < 0) {
        conn_close(ctl);
        free(cid);
        return r;
    }
    char path[512];
    snprintf(path, sizeof(path), "/v1/sandboxes/%s/commands/%s/stream", sid, cid);
    r = send_head(&s, "GET", path,
                  ws ? "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     : "Accept: text/event-stream\r\n",
                  -1);
    struct body b;
    if (r == 0)
        r = read_head(&s, &b);
    if (r == 0 && b.status != (ws ? 101 : 200)) {
        fprintf(stderr, "sbx-bench: stream: HTTP %d\n", b.status);
        r = -EPROTO;
    }
    long long got = -1;
    double t0 = now_ms();
    if (r == 0)
        r = post_stdin(ctl, sid, cid, "go\n");
    if (r == 0) {
        got = ws ? read_ws(&s, ret_wire) : read_sse(&s, &b, ret_wire);
        *ret_ms = now_ms() - t0;
    }
    conn_close(&s);
    conn_close(ctl);
    free(cid);
    if (r < 0)
        return r;
    if (got != (long long)bytes) {
        fprintf(stderr, "sbx-bench: stream %s: got %lld of %llu bytes\n", ws ? "ws" : "sse", got, bytes);
        return -EIO;
    }
    return 0;
}

/* Each stream runs in a sandbox of its own, deleted afterwards: the shim keeps every finished command's
 * output on the host (twice: per stream and combined) until it expires, within the sandbox's disk size,
 * and a writer past that blocks; a few 1 GiB streams in one sandbox would reach it. */
static int cmd_stream(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: sbx-bench stream HOST:PORT BYTES N\n");
        return 2;
    }
    unsigned long long bytes = strtoull(argv[2], NULL, 10) / STREAM_UNIT * STREAM_UNIT;
    long n = atol(argv[3]);
    double *v = calloc((size_t)n + 1, sizeof(double));
    for (int ws = 1; ws >= 0; ws--) {
        size_t ok = 0;
        unsigned long long wire = 0;
        for (long i = 0; i < n; i++) {
            struct conn c;
            if (conn_open(&c, argv[1]) < 0)
                continue;
            char *sid = create_sandbox(&c);
            conn_close(&c); /* idle through the stream: sbxd may close it */
            if (!sid)
                continue;
            unsigned long long w = 0;
            if (stream_once(argv[1], sid, bytes, ws, &v[ok], &w) == 0) {
                ok++;
                wire += w;
            }
            if (conn_open(&c, argv[1]) == 0)
                delete_sandbox(&c, sid);
            conn_close(&c);
            free(sid);
        }
        char extra[96];
        snprintf(extra, sizeof(extra), "bytes=%llu wire_bytes=%llu", bytes, wire);
        report_x(ws ? "sbx-stream-ws" : "sbx-stream-sse", v, ok, extra);
    }
    free(v);
    return 0;
}

/* --- files ------------------------------------------------------------------------------------------- */

static int cmd_files(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: sbx-bench files HOST:PORT BYTES N\n");
        return 2;
    }
    unsigned long long bytes = strtoull(argv[2], NULL, 10);
    long n = atol(argv[3]);
    struct conn c;
    if (conn_open(&c, argv[1]) < 0) {
        na("sbx-file-upload", "cannot-connect");
        return 1;
    }
    char *sid = create_sandbox(&c);
    if (!sid) {
        na("sbx-file-upload", "create-failed");
        return 1;
    }
    size_t bufsz = 1 << 20;
    char *buf = malloc(bufsz);
    memset(buf, 'a', bufsz);
    double *up = calloc((size_t)n + 1, sizeof(double)), *down = calloc((size_t)n + 1, sizeof(double));
    size_t nup = 0, ndown = 0;
    char path[512];
    snprintf(path, sizeof(path), "/v1/sandboxes/%s/files?path=/root/bench.bin", sid);
    for (long i = 0; i < n; i++) {
        double t0 = now_ms();
        int r = send_head(&c, "PUT", path, "Content-Type: application/octet-stream\r\n", (long long)bytes);
        for (unsigned long long sent = 0; r == 0 && sent < bytes;) {
            size_t k = bytes - sent < bufsz ? (size_t)(bytes - sent) : bufsz;
            r = send_all(c.fd, buf, k);
            sent += k;
        }
        struct body b = {0};
        if (r == 0)
            r = read_head(&c, &b);
        ssize_t k = 0;
        while (r == 0 && (k = body_read(&c, &b, buf, bufsz)) > 0)
            ;
        if (r == 0 && k < 0)
            r = (int)k;
        if (r == 0 && b.status == 200)
            up[nup++] = now_ms() - t0;
        else {
            fprintf(stderr, "sbx-bench: upload: %s, HTTP %d\n", r < 0 ? strerror(-r) : "-", b.status);
            break;
        }
        memset(buf, 'a', bufsz);
        t0 = now_ms();
        r = send_head(&c, "GET", path, NULL, -1);
        memset(&b, 0, sizeof(b));
        if (r == 0)
            r = read_head(&c, &b);
        unsigned long long got = 0;
        while (r == 0 && (k = body_read(&c, &b, buf, bufsz)) > 0)
            got += (unsigned long long)k;
        if (r == 0 && k == 0 && b.status == 200 && got == bytes)
            down[ndown++] = now_ms() - t0;
        else {
            fprintf(stderr, "sbx-bench: download: HTTP %d, %llu of %llu bytes\n", b.status, got, bytes);
            break;
        }
        memset(buf, 'a', bufsz);
    }
    char extra[64];
    snprintf(extra, sizeof(extra), "bytes=%llu", bytes);
    report_x("sbx-file-upload", up, nup, extra);
    report_x("sbx-file-download", down, ndown, extra);
    free(up);
    free(down);
    free(buf);
    delete_sandbox(&c, sid);
    free(sid);
    conn_close(&c);
    return 0;
}

/* --- density ----------------------------------------------------------------------------------------- */

static int cmd_density(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: sbx-bench density HOST:PORT N LEVELS M PACE_MS [HOOK]\n");
        return 2;
    }
    long target = atol(argv[2]);
    long m = atol(argv[4]);
    long pace_ms = atol(argv[5]);
    const char *hook = argc > 6 ? argv[6] : NULL;
    struct conn c;
    if (conn_open(&c, argv[1]) < 0) {
        na("sbx-density", "cannot-connect");
        return 1;
    }
    long levels[32];
    int nlevels = 0;
    for (char *save = NULL, *t = strtok_r(argv[3], ",", &save); t && nlevels < 32;
         t = strtok_r(NULL, ",", &save))
        if (atol(t) <= target)
            levels[nlevels++] = atol(t);
    double *fill_ms = calloc((size_t)target + 1, sizeof(double));
    double *v = calloc((size_t)m + 1, sizeof(double));
    long live = 0;
    int level = 0;
    const char *why = "reached-N";
    double t_fill = now_ms();
    for (;;) {
        while (level < nlevels && levels[level] <= live) {
            size_t ok = 0;
            for (long i = 0; i < m; i++) {
                usleep((useconds_t)pace_ms * 1000);
                double t0 = now_ms();
                char *id = create_sandbox(&c);
                if (!id)
                    break;
                int r = run_command(&c, id, "[\"echo\",\"hi\"]", "hi\n");
                double t1 = now_ms();
                delete_sandbox(&c, id);
                free(id);
                if (r == 0)
                    v[ok++] = t1 - t0;
            }
            char name[64];
            snprintf(name, sizeof(name), "sbx-create-first-output@%ld", levels[level]);
            report_x(name, v, ok, NULL);
            if (hook) {
                char cmd[1024];
                snprintf(cmd, sizeof(cmd), "%s %ld", hook, live);
                fflush(stdout);
                if (system(cmd) != 0)
                    fprintf(stderr, "sbx-bench: hook `%s` failed\n", cmd);
            }
            level++;
        }
        if (live >= target)
            break;
        double t0 = now_ms();
        char *id = create_sandbox(&c); /* kept: an idle sandbox */
        if (!id) {
            why = "create-failed";
            break;
        }
        fill_ms[live++] = now_ms() - t0;
        free(id);
    }
    char extra[128];
    snprintf(extra, sizeof(extra), "live=%ld target=%ld stop=%s fill_total_ms=%.0f", live, target, why,
             now_ms() - t_fill);
    report_x("sbx-density-fill-create", fill_ms, (size_t)live, extra);
    free(fill_ms);
    free(v);
    conn_close(&c);
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
    if (argc >= 2 && strcmp(argv[1], "pipe") == 0)
        return cmd_pipe(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "concurrent") == 0)
        return cmd_concurrent(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "stream") == 0)
        return cmd_stream(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "files") == 0)
        return cmd_files(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "density") == 0)
        return cmd_density(argc - 1, argv + 1);
    fprintf(stderr, "usage: sbx-bench spawn|pipe|health|sbx|concurrent|stream|files|density ... (see the "
                    "comment at the top of bench/sbx-bench.c)\n");
    return 2;
}
