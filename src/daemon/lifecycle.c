#include "daemon/lifecycle.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "loop/loop.h"
#include "store/store.h"

#define PRUNE_INTERVAL_MS (3600LL * 1000)
#define MIN_DELAY_MS 5 /* deadlines closer than this are handled together */

struct lifecycle {
    struct daemon *d;
    struct loop_timer timer;
    int64_t next_prune_ms;
};

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

enum action { ACT_NONE, ACT_STOP, ACT_DELETE_EXPIRED, ACT_DELETE_STOPPED };

/* What is due for sb at now, and otherwise (in *next) when something will be. */
static enum action due(const struct sandbox *sb, int64_t now, int64_t *next)
{
    int64_t at;
    if (sb->state == SANDBOX_CREATING || sb->busy) /* a busy one is looked at again when its copy ends */
        return ACT_NONE;
    if (sb->expires_ms) {
        if (now >= sb->expires_ms)
            return ACT_DELETE_EXPIRED;
        *next = min64(*next, sb->expires_ms);
    }
    bool up = sb->state == SANDBOX_RUNNING || sb->state == SANDBOX_PAUSED;
    if (up && sb->life.idle_ttl_s && sb->attached == 0) {
        at = sb->last_active_ms + sb->life.idle_ttl_s * 1000;
        if (now >= at)
            return ACT_STOP;
        *next = min64(*next, at);
    }
    if (!up && sb->life.delete_after_stop_s && sb->stopped_ms) {
        at = sb->stopped_ms + sb->life.delete_after_stop_s * 1000;
        if (now >= at)
            return ACT_DELETE_STOPPED;
        *next = min64(*next, at);
    }
    return ACT_NONE;
}

static void act(struct daemon *d, struct sandbox *sb, enum action a)
{
    char reason[128];
    sbx_error err = {0};
    int r = 0;
    switch (a) {
    case ACT_STOP:
        snprintf(reason, sizeof(reason), "idle for %lld s (idle_ttl_seconds)",
                 (long long)sb->life.idle_ttl_s);
        r = sandbox_stop_because(d, sb, reason, &err);
        break;
    case ACT_DELETE_EXPIRED:
        snprintf(reason, sizeof(reason), "its lifetime of %lld s ended (timeout_seconds)",
                 (long long)sb->life.timeout_s);
        r = sandbox_delete(d, sb, reason, &err);
        break;
    case ACT_DELETE_STOPPED:
        snprintf(reason, sizeof(reason), "stopped for %lld s (delete_after_stop_seconds)",
                 (long long)sb->life.delete_after_stop_s);
        r = sandbox_delete(d, sb, reason, &err);
        break;
    case ACT_NONE:
    default:
        break;
    }
    if (r < 0)
        log_warning("sandbox %s: %s", sb->id, err.msg);
}

static void arm(struct lifecycle *lc, int64_t now, int64_t next)
{
    int64_t delay = next - now < MIN_DELAY_MS ? MIN_DELAY_MS : next - now;
    loop_timer_start(lc->d->loop, &lc->timer, (usec_t)delay * 1000, NULL);
}

static void on_timer(struct loop_timer *t)
{
    struct lifecycle *lc = container_of(t, struct lifecycle, timer);
    struct daemon *d = lc->d;
    int64_t now = now_ms();
    /* An action may delete the sandbox (and only that one): hold the next one meanwhile. */
    struct sandbox *sb = d->sandboxes ? sandbox_ref(d->sandboxes) : NULL;
    while (sb) {
        struct sandbox *next = sb->next ? sandbox_ref(sb->next) : NULL;
        int64_t ignored = INT64_MAX;
        enum action a = due(sb, now, &ignored);
        if (a != ACT_NONE)
            act(d, sb, a);
        sandbox_unref(sb);
        sb = next;
    }
    if (now >= lc->next_prune_ms) {
        sbx_error err = {0};
        if (store_tombstone_prune(d->store, now - SANDBOX_TOMBSTONE_KEEP_MS, &err) < 0)
            log_warning("forget old tombstones: %s", err.msg);
        lc->next_prune_ms = now + PRUNE_INTERVAL_MS;
    }
    lifecycle_reschedule(d);
}

void lifecycle_reschedule(struct daemon *d)
{
    struct lifecycle *lc = d->lifecycle;
    if (!lc)
        return;
    int64_t now = now_ms(), next = lc->next_prune_ms;
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next)
        if (due(sb, now, &next) != ACT_NONE)
            next = now; /* due now: the timer acts on it */
    arm(lc, now, next);
}

void lifecycle_start(struct daemon *d)
{
    struct lifecycle *lc = xcalloc(1, sizeof(*lc));
    lc->d = d;
    lc->timer.cb = on_timer;
    lc->next_prune_ms = now_ms(); /* the first run forgets what expired while sbxd was down */
    d->lifecycle = lc;
    lifecycle_reschedule(d);
}

void lifecycle_stop(struct daemon *d)
{
    struct lifecycle *lc = d->lifecycle;
    if (!lc)
        return;
    loop_timer_stop(d->loop, &lc->timer);
    free(lc);
    d->lifecycle = NULL;
}
