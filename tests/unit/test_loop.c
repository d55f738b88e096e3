/* The epoll loop: timers, stop inside callbacks, IO readiness, deferred calls, signals. */
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "harness.h"
#include "loop/loop.h"

struct tt {
    struct loop_timer t;
    struct loop *loop;
    int id;
    int *order;
    int *n;
    struct tt *victim;
};

static void timer_cb(struct loop_timer *t)
{
    struct tt *x = container_of(t, struct tt, t);
    x->order[(*x->n)++] = x->id;
    if (x->victim)
        loop_timer_stop(x->loop, &x->victim->t);
    if (*x->n >= 3)
        loop_stop(x->loop);
}

static int test_timers_order(void)
{
    /* Timers count from the loop's cached now (taken in loop_new), so measure from before it. */
    usec_t start = now_usec(CLOCK_MONOTONIC);
    struct loop *loop;
    ASSERT_OK(loop_new(&loop));
    int order[8], n = 0;
    struct tt a = {.loop = loop, .id = 1, .order = order, .n = &n};
    struct tt b = {.loop = loop, .id = 2, .order = order, .n = &n};
    struct tt c = {.loop = loop, .id = 3, .order = order, .n = &n};
    struct tt d = {.loop = loop, .id = 4, .order = order, .n = &n};
    loop_timer_start(loop, &c.t, 30 * USEC_PER_MSEC, timer_cb);
    loop_timer_start(loop, &a.t, 10 * USEC_PER_MSEC, timer_cb);
    loop_timer_start(loop, &d.t, 20 * USEC_PER_MSEC, timer_cb);
    loop_timer_start(loop, &b.t, 20 * USEC_PER_MSEC, timer_cb); /* same deadline as d, started later */
    ASSERT_OK(loop_run(loop));
    ASSERT_EQ(n, 3);
    ASSERT_EQ(order[0], 1);
    ASSERT_EQ(order[1], 4);
    ASSERT_EQ(order[2], 2);
    ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) - start >= 20 * USEC_PER_MSEC);
    loop_free(loop);
    return 0;
}

static int test_timer_stop_in_callback(void)
{
    struct loop *loop;
    ASSERT_OK(loop_new(&loop));
    int order[8], n = 0;
    struct tt a = {.loop = loop, .id = 1, .order = order, .n = &n};
    struct tt b = {.loop = loop, .id = 2, .order = order, .n = &n};
    struct tt c = {.loop = loop, .id = 3, .order = order, .n = &n};
    struct tt d = {.loop = loop, .id = 4, .order = order, .n = &n};
    a.victim = &b; /* a and b are due together; a stops b */
    loop_timer_start(loop, &a.t, 5 * USEC_PER_MSEC, timer_cb);
    loop_timer_start(loop, &b.t, 5 * USEC_PER_MSEC, timer_cb);
    loop_timer_start(loop, &c.t, 15 * USEC_PER_MSEC, timer_cb);
    loop_timer_start(loop, &d.t, 25 * USEC_PER_MSEC, timer_cb);
    ASSERT_OK(loop_run(loop));
    ASSERT_EQ(n, 3);
    ASSERT_EQ(order[0], 1);
    ASSERT_EQ(order[1], 3);
    ASSERT_EQ(order[2], 4);
    ASSERT_TRUE(!b.t.active);
    loop_free(loop);
    return 0;
}

struct iot {
    struct loop_io io;
    struct loop *loop;
    struct iot *other;
    int fired;
    char got[16];
};

static void io_cb(struct loop_io *io, uint32_t revents)
{
    struct iot *x = container_of(io, struct iot, io);
    x->fired++;
    if (revents & EPOLLIN) {
        ssize_t n = read(io->fd, x->got, sizeof(x->got) - 1);
        if (n > 0)
            x->got[n] = '\0';
    }
    /* Stopping the other watcher must suppress its pending event of this iteration. */
    if (x->other)
        loop_io_stop(x->loop, &x->other->io);
    loop_stop(x->loop);
}

static int test_io_readiness_and_stop(void)
{
    struct loop *loop;
    ASSERT_OK(loop_new(&loop));
    int p1[2], p2[2];
    ASSERT_OK(pipe2(p1, O_CLOEXEC | O_NONBLOCK));
    ASSERT_OK(pipe2(p2, O_CLOEXEC | O_NONBLOCK));
    struct iot a = {.loop = loop}, b = {.loop = loop};
    a.other = &b;
    b.other = &a;
    ASSERT_OK(loop_io_start(loop, &a.io, p1[0], EPOLLIN, io_cb));
    ASSERT_OK(loop_io_start(loop, &b.io, p2[0], EPOLLIN, io_cb));
    ASSERT_EQ(write(p1[1], "hi", 2), 2);
    ASSERT_EQ(write(p2[1], "yo", 2), 2);
    ASSERT_OK(loop_run(loop));
    /* Both were ready in the same iteration; whichever ran first stopped the other. */
    ASSERT_EQ(a.fired + b.fired, 1);
    ASSERT_TRUE(strcmp(a.got, "hi") == 0 || strcmp(b.got, "yo") == 0);

    /* Writable readiness and update. */
    struct iot w = {.loop = loop};
    ASSERT_OK(loop_io_start(loop, &w.io, p1[1], 0, io_cb));
    ASSERT_EQ(loop_run_once(loop, 10 * USEC_PER_MSEC), 0);
    ASSERT_OK(loop_io_update(loop, &w.io, EPOLLOUT));
    ASSERT_OK(loop_run(loop));
    ASSERT_EQ(w.fired, 1);
    loop_io_stop(loop, &w.io);
    loop_io_stop(loop, &a.io);
    loop_io_stop(loop, &b.io);
    loop_free(loop);
    return 0;
}

struct dt {
    struct loop_defer d;
    struct loop *loop;
    int *log;
    int *n;
    int id;
    struct dt *requeue;
};

static void defer_cb(struct loop_defer *d)
{
    struct dt *x = container_of(d, struct dt, d);
    x->log[(*x->n)++] = x->id;
    if (x->requeue) {
        loop_defer(x->loop, &x->requeue->d, defer_cb);
        x->requeue = NULL;
    }
}

static void stop_timer_cb(struct loop_timer *t)
{
    (void)t;
}

static int test_defer(void)
{
    struct loop *loop;
    ASSERT_OK(loop_new(&loop));
    int log[8], n = 0;
    struct dt a = {.loop = loop, .log = log, .n = &n, .id = 1};
    struct dt b = {.loop = loop, .log = log, .n = &n, .id = 2};
    struct dt c = {.loop = loop, .log = log, .n = &n, .id = 3};
    a.requeue = &c;
    loop_defer(loop, &a.d, defer_cb);
    loop_defer(loop, &a.d, defer_cb); /* already pending: no-op */
    loop_defer(loop, &b.d, defer_cb);
    loop_defer_cancel(loop, &b.d);
    /* The first iteration must not block even though nothing is ready. */
    ASSERT_OK(loop_run_once(loop, 5 * USEC_PER_SEC));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(log[0], 1);
    struct loop_timer t = {0};
    loop_timer_start(loop, &t, USEC_PER_SEC, stop_timer_cb);
    usec_t start = now_usec(CLOCK_MONOTONIC);
    ASSERT_OK(loop_run_once(loop, -1));
    ASSERT_TRUE(now_usec(CLOCK_MONOTONIC) - start < 500 * USEC_PER_MSEC);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(log[1], 3);
    loop_timer_stop(loop, &t);
    loop_free(loop);
    return 0;
}

static int got_signal;

static void sig_cb(struct loop *loop, int signo)
{
    got_signal = signo;
    loop_stop(loop);
}

static int test_signalfd(void)
{
    struct loop *loop;
    ASSERT_OK(loop_new(&loop));
    ASSERT_OK(loop_signal(loop, SIGUSR1, sig_cb));
    ASSERT_OK(loop_signal(loop, SIGUSR2, sig_cb));
    ASSERT_OK(kill(getpid(), SIGUSR2));
    ASSERT_OK(loop_run(loop));
    ASSERT_EQ(got_signal, SIGUSR2);
    ASSERT_OK(kill(getpid(), SIGUSR1));
    ASSERT_OK(loop_run(loop));
    ASSERT_EQ(got_signal, SIGUSR1);
    loop_free(loop);
    return 0;
}

TESTS(TEST(test_timers_order) TEST(test_timer_stop_in_callback) TEST(test_io_readiness_and_stop)
          TEST(test_defer) TEST(test_signalfd))
