/* The warm pool (warm.h). */
#include "daemon/warm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "loop/loop.h"
#include "runtime/runtime.h"
#include "shimclient/shim_client.h"
#include "store/store.h"

#define REFILL_DELAY_USEC (50 * 1000)      /* after a hand-over: let the new owner's first command run */
#define RETRY_DELAY_USEC (5 * 1000 * 1000) /* after a failed pre-create */

struct warm_slot {
    struct warm_slot *next;
    struct daemon *d;
    struct sandbox *sb;
    bool ready;
    struct shim_spawn spawn; /* while !ready; s.rd is watched by io */
    struct loop_io io;
};

struct warm_pool {
    unsigned target;
    struct warm_slot *slots; /* ready and starting */
    size_t n;
    struct loop_timer refill;
    struct daemon *d;
};

static void schedule(struct warm_pool *p, usec_t delay);

static void slot_unlink(struct warm_pool *p, struct warm_slot *s)
{
    for (struct warm_slot **pp = &p->slots; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            p->n--;
            return;
        }
}

static void slot_fail(struct warm_pool *p, struct warm_slot *s, const sbx_error *err)
{
    log_warning("warm pool: pre-creating %s failed: %s; retrying in %d s", s->sb->id, err->msg,
                (int)(RETRY_DELAY_USEC / 1000000));
    if (s->io.active)
        loop_io_stop(p->d->loop, &s->io);
    shim_spawn_close(&s->spawn);
    slot_unlink(p, s);
    sandbox_discard(p->d, s->sb); /* kills what the shim left, forgets the row, removes the files */
    free(s);
    schedule(p, RETRY_DELAY_USEC);
}

static void on_ready_pipe(struct loop_io *io, uint32_t revents)
{
    struct warm_slot *s = container_of(io, struct warm_slot, io);
    struct warm_pool *p = s->d->warm;
    sbx_error err = {0};
    int r = shim_spawn_poll(&s->spawn, s->sb->state_dir, &s->sb->shim_pid, &s->sb->init_pid, &err);
    if (r == 0)
        return;
    loop_io_stop(p->d->loop, &s->io);
    shim_spawn_close(&s->spawn);
    if (r < 0 || sandbox_started(p->d, s->sb, &err) < 0) {
        slot_fail(p, s, &err);
        return;
    }
    store_sandbox_set_state(p->d->store, s->sb->id, "warm", s->sb->shim_pid, s->sb->init_pid, NULL);
    s->ready = true;
    log_debug("warm pool: %s ready (%zu of %u)", s->sb->id, p->n, p->target);
    schedule(p, 0);
}

static void refill(struct loop_timer *t)
{
    struct warm_pool *p = container_of(t, struct warm_pool, refill);
    if (p->n >= p->target)
        return;
    for (struct warm_slot *s = p->slots; s; s = s->next)
        if (!s->ready)
            return; /* one at a time: a pre-create must not crowd out real work */
    struct sandbox_create_opts opts = {.res = SANDBOX_DEFAULT_RESOURCES};
    struct warm_slot *s = xcalloc(1, sizeof(*s));
    s->d = p->d;
    sbx_error err = {0};
    if (sandbox_prepare(p->d, &opts, "warm", &s->sb, &err) < 0) {
        log_warning("warm pool: %s; retrying in %d s", err.msg, (int)(RETRY_DELAY_USEC / 1000000));
        free(s);
        schedule(p, RETRY_DELAY_USEC);
        return;
    }
    s->sb->warm = true;
    s->next = p->slots;
    p->slots = s;
    p->n++;
    if (shim_spawn_start(p->d->shim_path, s->sb->state_dir, &s->spawn, &err) < 0 ||
        loop_io_start(p->d->loop, &s->io, s->spawn.rd, EPOLLIN, on_ready_pipe) < 0) {
        if (!err.msg[0])
            sbx_error_set(&err, -EIO, "watch the shim's ready pipe");
        if (s->spawn.rd >= 0)
            shim_spawn_abort(&s->spawn, s->sb->state_dir);
        slot_fail(p, s, &err);
    }
}

static void schedule(struct warm_pool *p, usec_t delay)
{
    if (p->target == 0 || (p->refill.active && p->refill.when <= loop_now(p->d->loop) + delay))
        return;
    if (p->refill.active)
        loop_timer_stop(p->d->loop, &p->refill);
    loop_timer_start(p->d->loop, &p->refill, delay, refill);
}

void warm_start(struct daemon *d, unsigned target)
{
    struct warm_pool *p = xcalloc(1, sizeof(*p));
    p->target = target;
    p->d = d;
    d->warm = p;
    schedule(p, 0);
}

static bool same_resources(const struct sandbox_resources *a, const struct sandbox_resources *b)
{
    return a->cpus == b->cpus && a->memory_mb == b->memory_mb && a->pids == b->pids;
}

struct sandbox *warm_take(struct daemon *d, const struct sandbox_create_opts *opts)
{
    struct warm_pool *p = d->warm;
    const struct sandbox_resources def = SANDBOX_DEFAULT_RESOURCES;
    /* The hostname is the id, set when the sandbox was made: a named sandbox is made to measure. */
    if (!p || opts->name || opts->disk_source || json_array_size(opts->volumes) ||
        (opts->snapshot && strcmp(opts->snapshot, "host") != 0))
        return NULL;
    for (struct warm_slot *s = p->slots, *next; s; s = next) {
        next = s->next;
        if (!s->ready)
            continue;
        struct sandbox *sb = s->sb;
        if (sb->state != SANDBOX_RUNNING) { /* its shim died while it waited */
            slot_unlink(p, s);
            free(s);
            sandbox_discard(d, sb);
            continue;
        }
        /* A disk's size is fixed when it is formatted: another size is made to measure. */
        if (opts->res.disk_mb != sb->res.disk_mb)
            break;
        if (!same_resources(&opts->res, &def)) {
            /* Other limits are a cgroup write away; if that fails, make one to measure instead. */
            sbx_error err = {0};
            if (runtime_set_limits(sb->id, opts->res.memory_mb << 20, opts->res.cpus, opts->res.pids, &err) <
                0) {
                log_debug("warm pool: cannot resize %s (%s), creating one to measure", sb->id, err.msg);
                (void)runtime_set_limits(sb->id, def.memory_mb << 20, def.cpus, def.pids, &err);
                return NULL;
            }
            sb->res = opts->res;
        }
        slot_unlink(p, s);
        free(s);
        schedule(p, REFILL_DELAY_USEC);
        return sb;
    }
    schedule(p, 0);
    return NULL;
}

void warm_stop(struct daemon *d)
{
    struct warm_pool *p = d->warm;
    if (!p)
        return;
    if (p->refill.active)
        loop_timer_stop(d->loop, &p->refill);
    while (p->slots) {
        struct warm_slot *s = p->slots;
        if (!s->ready) {
            loop_io_stop(d->loop, &s->io);
            shim_spawn_abort(&s->spawn, s->sb->state_dir);
            shim_spawn_close(&s->spawn);
        }
        slot_unlink(p, s);
        sandbox_discard(d, s->sb);
        free(s);
    }
    free(p);
    d->warm = NULL;
}

size_t warm_count(const struct daemon *d)
{
    return d->warm ? d->warm->n : 0;
}
