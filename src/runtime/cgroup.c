/* Sandbox cgroups: "sbx/<id>" under the unified hierarchy (cgroup v2), or under each v1 controller we
 * use (memory, cpu, pids, freezer). Limits come from the create request; destroying kills whatever is
 * left inside first, so a cgroup never outlives its processes by accident. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "runtime/internal.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

static const char *const v1_controllers[] = {"pids", "memory", "cpu", "cpuacct", "freezer"};
#define N_V1 (sizeof(v1_controllers) / sizeof(v1_controllers[0]))

static bool is_v2(void)
{
    return access(CGROUP_ROOT "/cgroup.controllers", F_OK) == 0;
}

static int write_str(const char *dir, const char *file, const char *value)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

/* The directories of one sandbox's cgroup: one for v2, one per available controller for v1. */
static unsigned cgroup_dirs(const char *name, char dirs[][256])
{
    if (is_v2()) {
        snprintf(dirs[0], 256, CGROUP_ROOT "/%s", name);
        return 1;
    }
    unsigned n = 0;
    for (unsigned i = 0; i < N_V1; i++) {
        char ctl[128];
        snprintf(ctl, sizeof(ctl), CGROUP_ROOT "/%s", v1_controllers[i]);
        if (access(ctl, F_OK) == 0)
            snprintf(dirs[n++], 256, "%s/%s", ctl, name);
    }
    return n;
}

static int set_limits_v2(const char *dir, const struct runtime_config *cfg, sbx_error *err)
{
    char v[64];
    int r;
    /* 0 = no limit, written as "max" so that an update can lift a limit too. */
    if (cfg->memory_bytes)
        snprintf(v, sizeof(v), "%llu", (unsigned long long)cfg->memory_bytes);
    else
        snprintf(v, sizeof(v), "max");
    if ((r = write_str(dir, "memory.max", v)) < 0)
        return sbx_error_set(err, r, "cgroup memory.max: %s", strerror(-r));
    (void)write_str(dir, "memory.swap.max", cfg->memory_bytes ? "0" : "max"); /* absent without swap */
    if (cfg->cpus > 0)
        snprintf(v, sizeof(v), "%llu 100000", (unsigned long long)(cfg->cpus * 100000.0));
    else
        snprintf(v, sizeof(v), "max 100000");
    if ((r = write_str(dir, "cpu.max", v)) < 0)
        return sbx_error_set(err, r, "cgroup cpu.max: %s", strerror(-r));
    if (cfg->pids_max)
        snprintf(v, sizeof(v), "%llu", (unsigned long long)cfg->pids_max);
    else
        snprintf(v, sizeof(v), "max");
    if ((r = write_str(dir, "pids.max", v)) < 0)
        return sbx_error_set(err, r, "cgroup pids.max: %s", strerror(-r));
    return 0;
}

static int set_limit_v1(const char *dir, const struct runtime_config *cfg, sbx_error *err)
{
    char v[64];
    int r = 0;
    const char *file = NULL;
    if (strstr(dir, "/memory/")) {
        if (cfg->memory_bytes)
            snprintf(v, sizeof(v), "%llu", (unsigned long long)cfg->memory_bytes);
        else
            snprintf(v, sizeof(v), "-1");
        /* memsw (no swapping past the limit either) may never be below the limit: raising, it must go
         * first; lowering, it can only follow. Absent without swap accounting. */
        file = "memory.limit_in_bytes";
        (void)write_str(dir, "memory.memsw.limit_in_bytes", v);
        r = write_str(dir, file, v);
        if (r == 0)
            (void)write_str(dir, "memory.memsw.limit_in_bytes", v);
    } else if (strstr(dir, "/cpu/")) {
        if (cfg->cpus > 0)
            snprintf(v, sizeof(v), "%llu", (unsigned long long)(cfg->cpus * 100000.0));
        else
            snprintf(v, sizeof(v), "-1");
        file = "cpu.cfs_quota_us";
        r = write_str(dir, "cpu.cfs_period_us", "100000");
        if (r == 0)
            r = write_str(dir, file, v);
    } else if (strstr(dir, "/pids/")) {
        if (cfg->pids_max)
            snprintf(v, sizeof(v), "%llu", (unsigned long long)cfg->pids_max);
        else
            snprintf(v, sizeof(v), "max");
        file = "pids.max";
        r = write_str(dir, file, v);
    }
    if (r < 0)
        return sbx_error_set(err, r, "cgroup %s: %s", file, strerror(-r));
    return 0;
}

int cgroup_create(const char *name, const struct runtime_config *cfg, sbx_error *err)
{
    char dirs[N_V1][256];
    unsigned n = cgroup_dirs(name, dirs);
    if (n == 0)
        return sbx_error_set(err, -ENOENT, "no usable cgroup hierarchy under " CGROUP_ROOT);
    if (is_v2()) {
        /* Controllers must be enabled on the way down: root -> sbx -> sbx/<id>. */
        (void)write_str(CGROUP_ROOT, "cgroup.subtree_control", "+memory +cpu +pids");
        char parent[256];
        snprintf(parent, sizeof(parent), "%s", dirs[0]);
        char *slash = strrchr(parent, '/');
        *slash = '\0';
        if (mkdir(parent, 0755) < 0 && errno != EEXIST)
            return sbx_error_set(err, -errno, "cgroup mkdir %s: %m", parent);
        (void)write_str(parent, "cgroup.subtree_control", "+memory +cpu +pids");
    }
    for (unsigned i = 0; i < n; i++) {
        int r = mkdir_p(dirs[i], 0755);
        if (r < 0) {
            cgroup_destroy(name);
            return sbx_error_set(err, r, "cgroup mkdir %s: %s", dirs[i], strerror(-r));
        }
        r = is_v2() ? set_limits_v2(dirs[i], cfg, err) : set_limit_v1(dirs[i], cfg, err);
        if (r < 0) {
            cgroup_destroy(name);
            return r;
        }
    }
    return 0;
}

int cgroup_set_limits(const char *name, const struct runtime_config *cfg, sbx_error *err)
{
    char dirs[N_V1][256];
    unsigned n = cgroup_dirs(name, dirs);
    for (unsigned i = 0; i < n; i++) {
        if (access(dirs[i], F_OK) < 0)
            return sbx_error_set(err, -ENOENT, "cgroup %s does not exist", dirs[i]);
        int r = is_v2() ? set_limits_v2(dirs[i], cfg, err) : set_limit_v1(dirs[i], cfg, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static int read_str(const char *dir, const char *file, char *buf, size_t size)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, size - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

/* Whether the freeze (or thaw) asked for has taken effect on every process. */
static bool freeze_settled(const char *dir, bool frozen)
{
    char buf[512];
    if (is_v2()) {
        if (read_str(dir, "cgroup.events", buf, sizeof(buf)) < 0)
            return false;
        return strstr(buf, frozen ? "frozen 1" : "frozen 0") != NULL;
    }
    if (read_str(dir, "freezer.state", buf, sizeof(buf)) < 0)
        return false;
    return strncmp(buf, frozen ? "FROZEN" : "THAWED", 6) == 0;
}

int cgroup_freeze(const char *name, bool frozen, sbx_error *err)
{
    char dir[300];
    if (is_v2())
        snprintf(dir, sizeof(dir), CGROUP_ROOT "/%s", name);
    else
        snprintf(dir, sizeof(dir), CGROUP_ROOT "/freezer/%s", name);
    int r = is_v2() ? write_str(dir, "cgroup.freeze", frozen ? "1" : "0")
                    : write_str(dir, "freezer.state", frozen ? "FROZEN" : "THAWED");
    if (r < 0)
        return sbx_error_set(err, r, "%s %s: %s", frozen ? "freeze" : "thaw", dir, strerror(-r));
    /* Freezing is asynchronous: wait (bounded) until every task is stopped or running again. A v1
     * freeze can stay in FREEZING when a task was busy (in fork, say) at the time; writing FROZEN
     * again retries those, so do that every few milliseconds. */
    for (int i = 1; i <= 20000; i++) {
        if (freeze_settled(dir, frozen))
            return 0;
        if (i % 200 == 0)
            (void)(is_v2() ? write_str(dir, "cgroup.freeze", frozen ? "1" : "0")
                           : write_str(dir, "freezer.state", frozen ? "FROZEN" : "THAWED"));
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000}, NULL);
    }
    if (frozen) /* never leave a sandbox half frozen */
        (void)(is_v2() ? write_str(dir, "cgroup.freeze", "0") : write_str(dir, "freezer.state", "THAWED"));
    return sbx_error_set(err, -ETIMEDOUT, "%s %s: did not settle within 1 s", frozen ? "freeze" : "thaw",
                         dir);
}

static uint64_t read_u64(const char *dir, const char *file)
{
    char buf[64];
    if (read_str(dir, file, buf, sizeof(buf)) < 0)
        return 0;
    return strtoull(buf, NULL, 10);
}

/* The value after "key " in a flat-keyed file (cpu.stat). */
static uint64_t read_keyed(const char *dir, const char *file, const char *key)
{
    char buf[2048];
    if (read_str(dir, file, buf, sizeof(buf)) < 0)
        return 0;
    size_t klen = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return strtoull(line + klen + 1, NULL, 10);
    return 0;
}

int cgroup_metrics(const char *name, struct runtime_metrics *ret)
{
    char dir[300];
    *ret = (struct runtime_metrics){0};
    if (is_v2()) {
        snprintf(dir, sizeof(dir), CGROUP_ROOT "/%s", name);
        if (access(dir, F_OK) < 0)
            return -ENOENT;
        ret->cpu_usage_nsec = read_keyed(dir, "cpu.stat", "usage_usec") * 1000;
        ret->memory_bytes = read_u64(dir, "memory.current");
        ret->memory_peak_bytes = read_u64(dir, "memory.peak");
        ret->pids = read_u64(dir, "pids.current");
        ret->oom_kills = read_keyed(dir, "memory.events", "oom_kill");
        return 0;
    }
    snprintf(dir, sizeof(dir), CGROUP_ROOT "/memory/%s", name);
    if (access(dir, F_OK) < 0)
        return -ENOENT;
    ret->memory_bytes = read_u64(dir, "memory.usage_in_bytes");
    ret->memory_peak_bytes = read_u64(dir, "memory.max_usage_in_bytes");
    ret->oom_kills = read_keyed(dir, "memory.oom_control", "oom_kill");
    snprintf(dir, sizeof(dir), CGROUP_ROOT "/cpuacct/%s", name);
    ret->cpu_usage_nsec = read_u64(dir, "cpuacct.usage");
    snprintf(dir, sizeof(dir), CGROUP_ROOT "/pids/%s", name);
    ret->pids = read_u64(dir, "pids.current");
    return 0;
}

int cgroup_attach(const char *name, pid_t pid, sbx_error *err)
{
    char dirs[N_V1][256], v[32];
    unsigned n = cgroup_dirs(name, dirs);
    snprintf(v, sizeof(v), "%d", (int)pid);
    for (unsigned i = 0; i < n; i++) {
        int r = write_str(dirs[i], "cgroup.procs", v);
        if (r < 0)
            return sbx_error_set(err, r, "cgroup attach %s: %s", dirs[i], strerror(-r));
    }
    return 0;
}

/* Sends SIGKILL to every pid listed in dir/cgroup.procs; returns how many were listed. */
static int kill_listed(const char *dir)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int n = 0, pid;
    while (fscanf(f, "%d", &pid) == 1) {
        (void)kill(pid, SIGKILL);
        n++;
    }
    return n;
}

int cgroup_destroy(const char *name)
{
    char dirs[N_V1][256];
    unsigned n = cgroup_dirs(name, dirs);
    int ret = 0;
    for (unsigned i = 0; i < n; i++) {
        if (access(dirs[i], F_OK) < 0)
            continue;
        /* A frozen cgroup's processes cannot die; thaw it first (v1 freezer, v2 cgroup.freeze). */
        if (strstr(dirs[i], "/freezer/"))
            (void)write_str(dirs[i], "freezer.state", "THAWED");
        else if (is_v2())
            (void)write_str(dirs[i], "cgroup.freeze", "0");
        if (is_v2())
            (void)write_str(dirs[i], "cgroup.kill", "1");
        /* Killed processes leave the cgroup once the kernel has torn them down: a few ms, bounded. */
        for (int tries = 0; tries < 2000; tries++) {
            kill_listed(dirs[i]);
            if (rmdir(dirs[i]) == 0 || errno == ENOENT)
                break;
            if (errno != EBUSY) {
                ret = -errno;
                break;
            }
            nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
        }
        if (access(dirs[i], F_OK) == 0 && ret == 0)
            ret = -EBUSY;
    }
    return ret;
}
