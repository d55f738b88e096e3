/* The warm pool: sandboxes created ahead of demand (snapshot `host`, default resources, no name), so
 * that a create without a name is a hand-over (its resources applied by rewriting the cgroup limits) instead
 * of ~10 ms of namespaces, mounts and process starts. The pool refills in the background through the event
 * loop, one sandbox at a time, shortly after each hand-over. Warm sandboxes are in the store (state "warm",
 * so their uid range stays reserved and a crash leaves nothing untracked) but not in the registry: nobody
 * sees them until they are handed out. */
#pragma once

#include <stddef.h>

struct daemon;
struct sandbox;
struct sandbox_create_opts;

/* Starts filling the pool up to `target` sandboxes (0 = no pool). */
void warm_start(struct daemon *d, unsigned target);
/* A ready warm sandbox, with opts' resources applied, when opts can be served from the pool (snapshot
 * `host`, no name); the caller owns the returned reference. NULL otherwise. */
struct sandbox *warm_take(struct daemon *d, const struct sandbox_create_opts *opts);
/* Destroys every warm sandbox and stops refilling (at exit). */
void warm_stop(struct daemon *d);
/* Ready and in-progress warm sandboxes, for logs and tests. */
size_t warm_count(const struct daemon *d);
