/* Single-threaded epoll event loop: IO watchers, timers (min-heap), signals (signalfd) and deferred calls.
 *
 * Handles are embedded in their owner's struct; callbacks get the handle back and find the owner with
 * container_of (h2o, STYLE.md E). Every stop function is safe to call from inside any callback: a handle
 * stopped during an iteration gets no further callback in that iteration, so its owner may be freed right
 * after stopping it.
 *
 * Process watching: a pidfd (pidfd_open(2)) becomes readable when the process exits, so watching a child is
 * just loop_io_start(loop, io, pidfd, EPOLLIN, cb); reap it with waitid(P_PIDFD, ...) in the callback. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "base/util.h"

struct loop;

struct loop_io;
typedef void (*loop_io_cb)(struct loop_io *io, uint32_t revents);

struct loop_io {
    int fd;          /* read-only for the owner */
    uint32_t events; /* EPOLLIN/EPOLLOUT/...; read-only for the owner */
    loop_io_cb cb;   /* may be preset by the owner and passed as NULL to loop_io_start */
    bool active;
};

struct loop_timer;
typedef void (*loop_timer_cb)(struct loop_timer *t);

struct loop_timer {
    usec_t when; /* absolute, loop_now() clock */
    loop_timer_cb cb;
    uint64_t seq;      /* private */
    size_t heap_index; /* private; valid while active */
    bool active;
};

struct loop_defer;
typedef void (*loop_defer_cb)(struct loop_defer *d);

struct loop_defer {
    struct loop_defer *next; /* private */
    loop_defer_cb cb;
    bool pending;
};

typedef void (*loop_signal_cb)(struct loop *loop, int signo);

/* Creates a loop. Returns 0 or -errno (ret untouched on failure). */
int loop_new(struct loop **ret);
/* Frees the loop (NULL is fine) and returns NULL. Handles still registered are forgotten, not called; signals
 * registered with loop_signal stay blocked. */
struct loop *loop_free(struct loop *loop);

/* Runs until loop_stop() is called. Returns 0, or -errno if epoll_wait fails. */
int loop_run(struct loop *loop);
/* Runs one iteration: waits up to timeout_usec (-1 = forever, 0 = poll) for events, dispatches them, runs
 * expired timers and deferred calls. Returns the number of callbacks run, or -errno. */
int loop_run_once(struct loop *loop, int64_t timeout_usec);
/* Makes loop_run return after the current iteration. Safe from any callback. */
void loop_stop(struct loop *loop);
/* CLOCK_MONOTONIC in usec, cached once per iteration (after the wait). */
usec_t loop_now(struct loop *loop);

/* Watches fd for events (EPOLLIN, EPOLLOUT, ... level-triggered). cb NULL keeps io->cb. The loop borrows fd:
 * it never closes it; stop the watcher before closing the fd. Returns 0 or -errno (then cb is never called).
 */
int loop_io_start(struct loop *loop, struct loop_io *io, int fd, uint32_t events, loop_io_cb cb);
/* Changes the watched events (no syscall when unchanged). Returns 0 or -errno. */
int loop_io_update(struct loop *loop, struct loop_io *io, uint32_t events);
/* Stops watching; no-op when not active. No callback for io after this returns, even if an event for it was
 * already fetched in the current iteration. */
void loop_io_stop(struct loop *loop, struct loop_io *io);

/* Fires cb once, `after` usec from loop_now(). Restarting an active timer reschedules it. Timers due at the
 * same time fire in start order. */
void loop_timer_start(struct loop *loop, struct loop_timer *t, usec_t after, loop_timer_cb cb);
void loop_timer_stop(struct loop *loop, struct loop_timer *t);

/* Delivers signo through a signalfd: the signal is blocked in the calling thread's mask (do this before
 * starting threads) and cb runs from the loop. One callback per signal; a second call replaces it.
 * Returns 0 or -errno. */
int loop_signal(struct loop *loop, int signo, loop_signal_cb cb);

/* Runs cb once after the current iteration's events and timers (or in the next iteration when queued from a
 * deferred call). Queuing an already pending d is a no-op. Use it to free objects outside the callback that
 * decided to free them (libuv uv_close rule). */
void loop_defer(struct loop *loop, struct loop_defer *d, loop_defer_cb cb);
/* Cancels a pending deferred call; no-op when not pending. */
void loop_defer_cancel(struct loop *loop, struct loop_defer *d);
