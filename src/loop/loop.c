/* Single-threaded epoll loop (see loop.h). */
#include "loop/loop.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "base/cleanup.h"

#define MAX_EVENTS 256
#define MAX_SIGNAL 65

struct loop {
    int epfd;
    bool stopped;
    usec_t now;

    /* Events fetched by the current epoll_wait; a stopped watcher is blanked out here so it gets no callback.
     */
    struct epoll_event events[MAX_EVENTS];
    int n_events, cur_event;

    struct loop_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;

    struct loop_defer *defer_head, **defer_tail;
    struct loop_defer *defer_running; /* the rest of the pass being run by run_defers */

    int sigfd;
    struct loop_io sig_io;
    sigset_t sigmask;
    loop_signal_cb sig_cbs[MAX_SIGNAL];
};

static void update_now(struct loop *loop)
{
    loop->now = now_usec(CLOCK_MONOTONIC);
}

int loop_new(struct loop **ret)
{
    struct loop *loop = calloc(1, sizeof(*loop));
    if (!loop)
        return -ENOMEM;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        int r = -errno;
        free(loop);
        return r;
    }
    loop->sigfd = -1;
    loop->defer_tail = &loop->defer_head;
    sigemptyset(&loop->sigmask);
    update_now(loop);
    *ret = loop;
    return 0;
}

struct loop *loop_free(struct loop *loop)
{
    if (!loop)
        return NULL;
    if (loop->sigfd >= 0)
        close(loop->sigfd);
    close(loop->epfd);
    free(loop->heap);
    free(loop);
    return NULL;
}

void loop_stop(struct loop *loop)
{
    loop->stopped = true;
}

usec_t loop_now(struct loop *loop)
{
    return loop->now;
}

/* --- IO ---------------------------------------------------------------------------------------- */

int loop_io_start(struct loop *loop, struct loop_io *io, int fd, uint32_t events, loop_io_cb cb)
{
    assert(fd >= 0);
    if (io->active)
        loop_io_stop(loop, io);
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    io->fd = fd;
    io->events = events;
    if (cb)
        io->cb = cb;
    assert(io->cb);
    io->active = true;
    return 0;
}

int loop_io_update(struct loop *loop, struct loop_io *io, uint32_t events)
{
    assert(io->active);
    if (io->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return -errno;
    io->events = events;
    return 0;
}

void loop_io_stop(struct loop *loop, struct loop_io *io)
{
    if (!io->active)
        return;
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->active = false;
    for (int i = loop->cur_event; i < loop->n_events; i++)
        if (loop->events[i].data.ptr == io)
            loop->events[i].data.ptr = NULL;
}

/* --- timers: a binary min-heap ordered by (when, start sequence) -------------------------------- */

static bool timer_less(const struct loop_timer *a, const struct loop_timer *b)
{
    /* The start sequence breaks ties so timers due together fire in start order. */
    if (a->when != b->when)
        return a->when < b->when;
    return a->seq < b->seq;
}

static void heap_swap(struct loop *loop, size_t i, size_t j)
{
    struct loop_timer *t = loop->heap[i];
    loop->heap[i] = loop->heap[j];
    loop->heap[j] = t;
    loop->heap[i]->heap_index = i;
    loop->heap[j]->heap_index = j;
}

static void heap_up(struct loop *loop, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!timer_less(loop->heap[i], loop->heap[p]))
            break;
        heap_swap(loop, i, p);
        i = p;
    }
}

static void heap_down(struct loop *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->heap_len && timer_less(loop->heap[l], loop->heap[m]))
            m = l;
        if (r < loop->heap_len && timer_less(loop->heap[r], loop->heap[m]))
            m = r;
        if (m == i)
            break;
        heap_swap(loop, i, m);
        i = m;
    }
}

void loop_timer_stop(struct loop *loop, struct loop_timer *t)
{
    if (!t->active)
        return;
    size_t i = t->heap_index;
    assert(i < loop->heap_len && loop->heap[i] == t);
    loop->heap_len--;
    if (i != loop->heap_len) {
        loop->heap[i] = loop->heap[loop->heap_len];
        loop->heap[i]->heap_index = i;
        heap_down(loop, i);
        heap_up(loop, i);
    }
    t->active = false;
}

void loop_timer_start(struct loop *loop, struct loop_timer *t, usec_t after, loop_timer_cb cb)
{
    loop_timer_stop(loop, t);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        loop->heap = xrealloc(loop->heap, cap * sizeof(*loop->heap));
        loop->heap_cap = cap;
    }
    t->when = loop->now + after;
    t->seq = loop->timer_seq++;
    if (cb)
        t->cb = cb;
    assert(t->cb);
    t->heap_index = loop->heap_len;
    loop->heap[loop->heap_len++] = t;
    t->active = true;
    heap_up(loop, t->heap_index);
}

static int run_timers(struct loop *loop)
{
    int n = 0;
    while (loop->heap_len > 0 && loop->heap[0]->when <= loop->now) {
        struct loop_timer *t = loop->heap[0];
        loop_timer_stop(loop, t);
        t->cb(t);
        n++;
    }
    return n;
}

/* --- deferred calls ------------------------------------------------------------------------------ */

void loop_defer(struct loop *loop, struct loop_defer *d, loop_defer_cb cb)
{
    if (d->pending)
        return;
    d->cb = cb;
    d->next = NULL;
    d->pending = true;
    *loop->defer_tail = d;
    loop->defer_tail = &d->next;
}

void loop_defer_cancel(struct loop *loop, struct loop_defer *d)
{
    if (!d->pending)
        return;
    bool found = false;
    for (struct loop_defer **p = &loop->defer_head; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            if (loop->defer_tail == &d->next)
                loop->defer_tail = p;
            found = true;
            break;
        }
    for (struct loop_defer **p = &loop->defer_running; !found && *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    d->pending = false;
    d->next = NULL;
}

static int run_defers(struct loop *loop)
{
    /* Only what was queued before this pass runs now; calls queued meanwhile wait for the next iteration. */
    int n = 0;
    loop->defer_running = loop->defer_head;
    loop->defer_head = NULL;
    loop->defer_tail = &loop->defer_head;
    while (loop->defer_running) {
        struct loop_defer *d = loop->defer_running;
        loop->defer_running = d->next;
        d->next = NULL;
        d->pending = false;
        d->cb(d);
        n++;
    }
    return n;
}

/* --- signals ------------------------------------------------------------------------------------ */

static void on_signal(struct loop_io *io, uint32_t revents)
{
    struct loop *loop = container_of(io, struct loop, sig_io);
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t n = read(loop->sigfd, &si, sizeof(si));
        if (n != (ssize_t)sizeof(si))
            break;
        if (si.ssi_signo < MAX_SIGNAL && loop->sig_cbs[si.ssi_signo])
            loop->sig_cbs[si.ssi_signo](loop, (int)si.ssi_signo);
    }
}

int loop_signal(struct loop *loop, int signo, loop_signal_cb cb)
{
    if (signo <= 0 || signo >= MAX_SIGNAL || !cb)
        return -EINVAL;
    sigset_t add;
    sigemptyset(&add);
    sigaddset(&add, signo);
    if (sigprocmask(SIG_BLOCK, &add, NULL) < 0)
        return -errno;
    sigaddset(&loop->sigmask, signo);
    int fd = signalfd(loop->sigfd, &loop->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (loop->sigfd < 0) {
        loop->sigfd = fd;
        int r = loop_io_start(loop, &loop->sig_io, fd, EPOLLIN, on_signal);
        if (r < 0) {
            close(fd);
            loop->sigfd = -1;
            return r;
        }
    }
    loop->sig_cbs[signo] = cb;
    return 0;
}

/* --- running ------------------------------------------------------------------------------------ */

int loop_run_once(struct loop *loop, int64_t timeout_usec)
{
    int timeout_ms = -1;
    if (loop->defer_head)
        timeout_ms = 0;
    else {
        int64_t t = timeout_usec;
        if (loop->heap_len > 0) {
            usec_t when = loop->heap[0]->when;
            int64_t d = when > loop->now ? (int64_t)(when - loop->now) : 0;
            if (t < 0 || d < t)
                t = d;
        }
        if (t >= 0)
            timeout_ms = (int)((t + 999) / 1000); /* round up so timers are never early */
    }
    int n = epoll_wait(loop->epfd, loop->events, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno != EINTR)
            return -errno;
        n = 0;
    }
    update_now(loop);
    int ran = 0;
    loop->n_events = n;
    for (loop->cur_event = 0; loop->cur_event < loop->n_events; loop->cur_event++) {
        struct epoll_event *ev = &loop->events[loop->cur_event];
        struct loop_io *io = ev->data.ptr;
        if (!io)
            continue;
        io->cb(io, ev->events);
        ran++;
    }
    loop->n_events = loop->cur_event = 0;
    ran += run_timers(loop);
    ran += run_defers(loop);
    return ran;
}

int loop_run(struct loop *loop)
{
    loop->stopped = false;
    while (!loop->stopped) {
        int r = loop_run_once(loop, -1);
        if (r < 0)
            return r;
    }
    return 0;
}
