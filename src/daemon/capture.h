/* Capture of a sandbox's writable layer (docs/design/snapshots.md, "Capture"): its overlay upper dir is
 * copied into a new layer directory of the layer store, owners moved from the sandbox's uid range back to
 * 0..65535, overlay whiteouts and opaque dirs kept, and hashed as a deterministic OCI layer tar (so the
 * layer's content address is a real diff_id). Used from a thread: no loop, no logging. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

struct capture_limits {
    uint64_t max_bytes;   /* file content of the layer */
    uint64_t max_entries; /* entries of the layer */
};

struct capture_result {
    char diff_id[72]; /* "sha256:<hex>" of the layer tar */
    uint64_t bytes;   /* file content copied */
    uint64_t entries; /* entries copied */
    uint64_t skipped; /* device nodes (other than whiteouts) and sockets left out */
};

/* Copies the upper dir open at src_fd into the empty directory dst_fd. Every name is opened relative to
 * its parent with O_NOFOLLOW or an AT_SYMLINK_NOFOLLOW call: a symlink is copied as a symlink, never
 * followed. Owners outside uid_base..uid_base+65535 are refused, as are names starting with `.wh.` (they
 * would read as whiteouts) and overlay metacopy/redirect entries. Returns 0 or a negative errno with
 * err filled. */
int capture_copy_layer(int src_fd, int dst_fd, uid_t uid_base, const struct capture_limits *lim,
                       struct capture_result *ret, sbx_error *err);
