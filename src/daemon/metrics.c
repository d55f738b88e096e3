/* Daemon metrics (metrics.h). */
#include "daemon/metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "daemon/warm.h"

/* Upper bounds of the request duration histogram, 100 µs to 10 s (+Inf is implicit). */
static const usec_t bucket_usec[] = {100,   250,    500,    1000,   2500,    5000,    10000,   25000,
                                     50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
#define N_BUCKETS ELEMENTSOF(bucket_usec)

#define MAX_ROUTES 64 /* route labels, the last one is "other" */
#define ROUTE_LABEL_MAX 64
#define MAX_ERRORS 48 /* error code labels, the last one is "other" */
#define ERROR_LABEL_MAX 32
#define REQUEST_SLOTS 2048 /* (method, route, status) series, open addressing; a power of two */

struct route_stats {
    char name[ROUTE_LABEL_MAX];
    uint64_t buckets[N_BUCKETS + 1]; /* per bucket, not cumulative; the last is +Inf */
    uint64_t count, sum_usec;
};

struct error_stats {
    char name[ERROR_LABEL_MAX];
    uint64_t count;
};

struct request_slot {
    uint32_t key; /* 0 = empty, else 1 + (method << 16 | route << 10 | status) */
    uint64_t count;
};

static uint64_t counters[_METRICS_COUNTER_MAX];
static struct route_stats routes[MAX_ROUTES];
static size_t n_routes;
static struct error_stats errors[MAX_ERRORS];
static size_t n_errors;
static struct request_slot requests[REQUEST_SLOTS];
static size_t n_requests;
static uint64_t requests_unrecorded; /* the series table was full (cannot happen with bounded labels) */

static const char *const method_names[_HTTP_METHOD_MAX] = {
    [HTTP_METHOD_GET] = "GET",         [HTTP_METHOD_HEAD] = "HEAD",     [HTTP_METHOD_POST] = "POST",
    [HTTP_METHOD_PUT] = "PUT",         [HTTP_METHOD_DELETE] = "DELETE", [HTTP_METHOD_PATCH] = "PATCH",
    [HTTP_METHOD_OPTIONS] = "OPTIONS", [HTTP_METHOD_OTHER] = "OTHER",
};

void metrics_count(enum metrics_counter which)
{
    if (which >= 0 && which < _METRICS_COUNTER_MAX)
        counters[which]++;
}

void metrics_reset(void)
{
    memset(counters, 0, sizeof(counters));
    memset(routes, 0, sizeof(routes));
    memset(errors, 0, sizeof(errors));
    memset(requests, 0, sizeof(requests));
    n_routes = n_errors = n_requests = 0;
    requests_unrecorded = 0;
}

/* The index of label s in a table of n entries of `width` bytes each (name first), adding it when new;
 * the table's last entry is "other", for everything beyond it. */
static size_t intern(void *table, size_t stride, size_t *n, size_t max, size_t width, const char *s)
{
    char *base = table;
    for (size_t i = 0; i < *n; i++)
        if (strncmp(base + i * stride, s, width - 1) == 0)
            return i;
    size_t i = *n < max - 1 ? (*n)++ : max - 1;
    char *name = base + i * stride;
    if (i == max - 1) {
        if (!*name)
            snprintf(name, width, "other");
        *n = max;
        return i;
    }
    snprintf(name, width, "%s", s);
    return i;
}

void metrics_http_request(enum http_method method, const char *route, int status, const char *error_code,
                          usec_t duration)
{
    if (method < 0 || method >= _HTTP_METHOD_MAX)
        method = HTTP_METHOD_OTHER;
    if (status < 0 || status > 999)
        status = 0;
    size_t r = intern(routes, sizeof(routes[0]), &n_routes, MAX_ROUTES, ROUTE_LABEL_MAX, route ? route : "");

    struct route_stats *rs = &routes[r];
    size_t b = 0;
    while (b < N_BUCKETS && duration > bucket_usec[b])
        b++;
    rs->buckets[b]++;
    rs->count++;
    rs->sum_usec += duration;

    uint32_t key = 1 + ((uint32_t)method << 16 | (uint32_t)r << 10 | (uint32_t)status);
    size_t h = (key * 2654435761u) & (REQUEST_SLOTS - 1);
    for (size_t probe = 0; probe < REQUEST_SLOTS; probe++, h = (h + 1) & (REQUEST_SLOTS - 1)) {
        if (requests[h].key == key) {
            requests[h].count++;
            break;
        }
        if (requests[h].key == 0) {
            if (n_requests + 1 >= REQUEST_SLOTS) { /* keep one slot free so lookups end */
                requests_unrecorded++;
                break;
            }
            requests[h].key = key;
            requests[h].count = 1;
            n_requests++;
            break;
        }
    }

    if (error_code)
        errors[intern(errors, sizeof(errors[0]), &n_errors, MAX_ERRORS, ERROR_LABEL_MAX, error_code)].count++;
}

/* --- formatting ----------------------------------------------------------------------------------- */

void metrics_append_label_value(struct sbx_buf *b, const char *v)
{
    sbx_buf_append(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '\\')
            sbx_buf_append(b, "\\\\", 2);
        else if (*p == '"')
            sbx_buf_append(b, "\\\"", 2);
        else if (*p == '\n')
            sbx_buf_append(b, "\\n", 2);
        else
            sbx_buf_append(b, p, 1);
    }
    sbx_buf_append(b, "\"", 1);
}

void metrics_append_help(struct sbx_buf *b, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == '\\')
            sbx_buf_append(b, "\\\\", 2);
        else if (*p == '\n')
            sbx_buf_append(b, "\\n", 2);
        else
            sbx_buf_append(b, p, 1);
    }
}

void metrics_format_value(double v, char buf[32])
{
    if (isnan(v)) {
        snprintf(buf, 32, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, 32, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v > -1e15 && v < 1e15 && v == (double)(long long)v) {
        snprintf(buf, 32, "%.0f", v); /* "10", not "1e+01" */
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void header(struct sbx_buf *b, const char *name, const char *type, const char *help)
{
    sbx_buf_appendf(b, "# HELP %s ", name);
    metrics_append_help(b, help);
    sbx_buf_appendf(b, "\n# TYPE %s %s\n", name, type);
}

static void sample_u64(struct sbx_buf *b, const char *name, uint64_t v)
{
    sbx_buf_appendf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void sample_double(struct sbx_buf *b, const char *name, double v)
{
    char val[32];
    metrics_format_value(v, val);
    sbx_buf_appendf(b, "%s %s\n", name, val);
}

/* --- the process ------------------------------------------------------------------------------------ */

/* Reads a small /proc file into buf (NUL-terminated); returns its length or -errno. */
static ssize_t read_proc(const char *path, char *buf, size_t size)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read_full(fd, buf, size - 1);
    if (n < 0)
        return n;
    buf[n] = '\0';
    return n;
}

struct process_stats {
    double cpu_seconds, start_time;
    uint64_t resident_bytes, virtual_bytes;
    long open_fds, max_fds;
};

/* The boot time in seconds since the epoch (/proc/stat btime), 0 when unknown; it never changes. */
static double boot_time(void)
{
    static double btime;
    if (btime > 0)
        return btime;
    _cleanup_fclose_ FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (sscanf(line, "btime %llu", &v) == 1) {
            btime = (double)v;
            break;
        }
    }
    return btime;
}

static void process_stats(struct process_stats *ps)
{
    *ps = (struct process_stats){.open_fds = -1, .max_fds = -1};
    char stat[1024];
    if (read_proc("/proc/self/stat", stat, sizeof(stat)) > 0) {
        /* Fields after the command name (which may hold spaces), counted from 3 (`state`) as in proc(5). */
        char *p = strrchr(stat, ')');
        unsigned long long f[25] = {0};
        char *save = NULL;
        int field = 3;
        for (char *t = p ? strtok_r(p + 1, " ", &save) : NULL; t && field < 25;
             t = strtok_r(NULL, " ", &save), field++)
            f[field] = strtoull(t, NULL, 10);
        long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
        if (ticks > 0) {
            ps->cpu_seconds = (double)(f[14] + f[15]) / (double)ticks;
            double bt = boot_time();
            if (bt > 0)
                ps->start_time = bt + (double)f[22] / (double)ticks;
        }
        ps->virtual_bytes = f[23];
        ps->resident_bytes = f[24] * (uint64_t)(page > 0 ? page : 4096);
    }
    _cleanup_closedir_ DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        long n = 0;
        for (struct dirent *de; (de = readdir(dir));)
            if (de->d_name[0] != '.')
                n++;
        ps->open_fds = n - 1; /* not the one reading the directory */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        ps->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}

/* --- the exposition --------------------------------------------------------------------------------- */

static int cmp_slot(const void *a, const void *b)
{
    const struct request_slot *x = a, *y = b;
    uint32_t kx = x->key - 1, ky = y->key - 1;
    int rx = (int)(kx >> 10 & 0x3f), ry = (int)(ky >> 10 & 0x3f);
    int c = strcmp(routes[rx].name, routes[ry].name);
    if (c)
        return c;
    return kx < ky ? -1 : kx > ky;
}

static void render_requests(struct sbx_buf *b)
{
    header(b, "sbx_http_requests_total", "counter",
           "HTTP requests by method, route pattern and status code (0: the connection ended first).");
    struct request_slot *sorted = xmalloc((n_requests ? n_requests : 1) * sizeof(*sorted));
    size_t n = 0;
    for (size_t i = 0; i < REQUEST_SLOTS; i++)
        if (requests[i].key)
            sorted[n++] = requests[i];
    qsort(sorted, n, sizeof(*sorted), cmp_slot);
    for (size_t i = 0; i < n; i++) {
        uint32_t k = sorted[i].key - 1;
        sbx_buf_appendf(b, "sbx_http_requests_total{method=\"%s\",route=", method_names[k >> 16 & 0x7]);
        metrics_append_label_value(b, routes[k >> 10 & 0x3f].name);
        sbx_buf_appendf(b, ",code=\"%u\"} %llu\n", k & 0x3ff, (unsigned long long)sorted[i].count);
    }
    if (requests_unrecorded)
        sbx_buf_appendf(b, "sbx_http_requests_total{method=\"OTHER\",route=\"other\",code=\"0\"} %llu\n",
                        (unsigned long long)requests_unrecorded);
    free(sorted);
}

static void render_durations(struct sbx_buf *b)
{
    header(b, "sbx_http_request_duration_seconds", "histogram",
           "Time from a request's first byte until its response was completed, by route pattern.");
    for (size_t r = 0; r < n_routes; r++) {
        const struct route_stats *rs = &routes[r];
        if (!rs->count)
            continue;
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= N_BUCKETS; i++) {
            char le[32];
            cumulative += rs->buckets[i];
            metrics_format_value(i < N_BUCKETS ? (double)bucket_usec[i] / 1e6 : INFINITY, le);
            sbx_buf_appendf(b, "sbx_http_request_duration_seconds_bucket{route=");
            metrics_append_label_value(b, rs->name);
            sbx_buf_appendf(b, ",le=\"%s\"} %llu\n", le, (unsigned long long)cumulative);
        }
        char sum[32];
        metrics_format_value((double)rs->sum_usec / 1e6, sum);
        sbx_buf_appendf(b, "sbx_http_request_duration_seconds_sum{route=");
        metrics_append_label_value(b, rs->name);
        sbx_buf_appendf(b, "} %s\nsbx_http_request_duration_seconds_count{route=", sum);
        metrics_append_label_value(b, rs->name);
        sbx_buf_appendf(b, "} %llu\n", (unsigned long long)rs->count);
    }
}

void metrics_render(struct daemon *d, struct sbx_buf *b)
{
    size_t by_state[_SANDBOX_STATE_MAX] = {0};
    for (const struct sandbox *sb = d->sandboxes; sb; sb = sb->next)
        if (sb->state >= 0 && sb->state < _SANDBOX_STATE_MAX)
            by_state[sb->state]++;
    header(b, "sbx_sandboxes", "gauge", "Sandboxes in the registry by state.");
    for (int s = 0; s < _SANDBOX_STATE_MAX; s++) {
        sbx_buf_appendf(b, "sbx_sandboxes{state=");
        metrics_append_label_value(b, sandbox_state_to_string((enum sandbox_state)s));
        sbx_buf_appendf(b, "} %zu\n", by_state[s]);
    }
    header(b, "sbx_warm_pool_sandboxes", "gauge",
           "Sandboxes in the warm pool (ready or starting), not handed out yet.");
    sample_u64(b, "sbx_warm_pool_sandboxes", warm_count(d));
    header(b, "sbx_sandboxes_created_total", "counter", "Sandboxes created for create requests.");
    sample_u64(b, "sbx_sandboxes_created_total", counters[METRICS_SANDBOXES_CREATED]);
    header(b, "sbx_sandboxes_deleted_total", "counter", "Sandboxes deleted.");
    sample_u64(b, "sbx_sandboxes_deleted_total", counters[METRICS_SANDBOXES_DELETED]);
    header(b, "sbx_commands_started_total", "counter", "Commands started through the API.");
    sample_u64(b, "sbx_commands_started_total", counters[METRICS_COMMANDS_STARTED]);

    header(b, "sbx_http_connections", "gauge", "Open HTTP connections.");
    sample_u64(b, "sbx_http_connections", d->http ? http_server_connections(d->http) : 0);
    render_requests(b);
    render_durations(b);
    header(b, "sbx_errors_total", "counter", "Error responses by their JSON error code.");
    for (size_t i = 0; i < n_errors; i++) {
        if (!errors[i].count)
            continue;
        sbx_buf_appendf(b, "sbx_errors_total{code=");
        metrics_append_label_value(b, errors[i].name);
        sbx_buf_appendf(b, "} %llu\n", (unsigned long long)errors[i].count);
    }

    struct process_stats ps;
    process_stats(&ps);
    header(b, "sbx_process_cpu_seconds_total", "counter", "User and system CPU time spent by sbxd.");
    sample_double(b, "sbx_process_cpu_seconds_total", ps.cpu_seconds);
    header(b, "sbx_process_resident_memory_bytes", "gauge", "Resident memory of sbxd.");
    sample_u64(b, "sbx_process_resident_memory_bytes", ps.resident_bytes);
    header(b, "sbx_process_virtual_memory_bytes", "gauge", "Virtual memory of sbxd.");
    sample_u64(b, "sbx_process_virtual_memory_bytes", ps.virtual_bytes);
    if (ps.open_fds >= 0) {
        header(b, "sbx_process_open_fds", "gauge", "Open file descriptors of sbxd.");
        sample_u64(b, "sbx_process_open_fds", (uint64_t)ps.open_fds);
    }
    if (ps.max_fds >= 0) {
        header(b, "sbx_process_max_fds", "gauge", "The file descriptor limit of sbxd.");
        sample_u64(b, "sbx_process_max_fds", (uint64_t)ps.max_fds);
    }
    if (ps.start_time > 0) {
        header(b, "sbx_process_start_time_seconds", "gauge",
               "When sbxd started, in seconds since the epoch.");
        sample_double(b, "sbx_process_start_time_seconds", ps.start_time);
    }
}
