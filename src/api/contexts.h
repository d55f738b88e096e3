/* Code contexts: persistent python, node and bash interpreters inside a sandbox that run code cell by cell
 * (docs/api.md, "Code contexts"). One implementation serves the native /v1/sandboxes/{id}/contexts routes
 * (contexts.c) and OpenSandbox's execd /code routes (compat/opensandbox_execd.c, shapes only).
 *
 * A context is a driver program (src/api/drivers, carried in sbxd) run as an sbx command with stdin open,
 * whose command id is the context id; its record (language, cwd, the driver's marker token) is a JSON file
 * in the sandbox's host-side state directory, out of reach of the code it runs, kept across sbxd restarts
 * like the shim's commands. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

struct sandbox;
struct context_run;

#define CONTEXT_CODE_MAX (512u * 1024) /* bytes of one cell */
#define CONTEXTS_MAX 16                /* live contexts per sandbox (each is an interpreter) */

/* "python" ("python3"), "node" ("javascript", "js"), "bash": the canonical name, or NULL when unsupported. */
const char *context_language(const char *name);

/* Starts a context in sb (which must be up) for a canonical language, in cwd (NULL: the snapshot's
 * default) with env (an object of strings, borrowed, may be NULL) on top of the sandbox's. On success
 * *ret is the new context object (a new reference). */
int context_create(struct sandbox *sb, const char *language, const char *cwd, json_t *env, json_t **ret,
                   sbx_error *err);
/* The context object {id, language, cwd, state: idle|busy|ended, created_at, command_id}; a new reference.
 * A context whose interpreter exited (or whose sandbox stopped) is `ended`. 404 when there is none. */
int context_get(struct sandbox *sb, const char *id, json_t **ret, sbx_error *err);
/* Every context of sb as an array of context objects (a new reference), oldest first. */
json_t *context_list(struct sandbox *sb);
/* Ends the interpreter (a running cell ends with a ContextEnded error) and forgets the context. */
int context_delete(struct sandbox *sb, const char *id, sbx_error *err);
/* SIGINT to the context's driver and its children: the running cell ends with a KeyboardInterrupt error
 * and the context stays. *ret_running says whether a run was streaming. */
int context_interrupt(struct sandbox *sb, const char *id, bool *ret_running, sbx_error *err);

/* What a run reports. Every callback gets the caller's userdata. output and display return true when the
 * client is slow: the run stops reading the sandbox until context_run_resume. done is called exactly once
 * (unless the run is abandoned first) with the result object (borrowed), after which the run is freed:
 * {context_id, execution_count, text?, data?, error?: {name, value, traceback[]}, exit_code?, duration_ms,
 *  timed_out?, context_ended?}. */
struct context_run_ops {
    bool (*output)(void *userdata, int stream, const char *data, size_t len); /* stream 0 stdout, 1 stderr */
    bool (*display)(void *userdata, json_t *data); /* a mime bundle object, borrowed */
    void (*done)(void *userdata, json_t *result);
};

/* Runs code (NUL-terminated, at most CONTEXT_CODE_MAX bytes) in context id of sb; timeout_s > 0
 * interrupts the cell after that many seconds and ends the context if it still runs 10 s later. One run
 * per context at a time (409 context_busy); an ended context is 409 context_ended. On success the run
 * holds its own reference to sb and *ret (may be NULL) is the run until done. */
int context_run_start(struct sandbox *sb, const char *id, const char *code, double timeout_s,
                      const struct context_run_ops *ops, void *userdata, struct context_run **ret,
                      sbx_error *err);
/* Frees every run (sbxd's shutdown, after the HTTP server aborted their clients); the cells run on in the
 * sandboxes, whose shims outlive sbxd. */
void context_runs_close_all(void);
/* The client drained: read on. */
void context_run_resume(struct context_run *r);
/* The client is gone: no more callbacks. The cell runs on (the context stays busy until it ends, or is
 * interrupted), its output read and dropped. */
void context_run_abandon(struct context_run *r);
