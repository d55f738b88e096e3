/* The daemon's shared context: one per sbxd process, owned by main(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct loop;
struct store;
struct http_server;
struct sandbox;
struct warm_pool;
struct create_op;
struct lifecycle;
struct key_table;
struct snapshot_state;

struct daemon {
    struct loop *loop;
    struct store *store;
    struct http_server *http;
    char *data_dir;
    char *sandboxes_dir;    /* <data_dir>/sandboxes */
    char *shim_path;        /* sbx-shim next to sbxd */
    char *init_path;        /* sbx-init next to sbxd */
    char *seccomp_path;     /* <data_dir>/seccomp.bpf, written at start */
    char *api_key;          /* the admin's; NULL = no auth (loopback only) */
    struct key_table *keys; /* tenants' API keys (api/keys.h) */
    bool ephemeral;
    size_t max_sandboxes;
    struct sandbox *sandboxes; /* registry, a doubly linked list */
    size_t n_sandboxes;
    struct warm_pool *warm;     /* NULL = no warm pool (warm.h) */
    struct create_op *creating; /* creates waiting for their shim */
    size_t n_creating;
    struct lifecycle *lifecycle;   /* lifecycle.h; NULL until started */
    struct snapshot_state *snap;   /* snapshot.h: image snapshots and the layer store */
    struct checkpoint_state *ckpt; /* checkpoint.h: checkpoints and the copies in progress */
    struct egress_state *egress;   /* egress.h: network mode egress */
    struct volume *volumes;        /* volume.h: named volumes, oldest first */
};
