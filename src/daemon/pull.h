/* Registry pull (docs/design/snapshots.md, "Registry pull"): an image is fetched from an OCI registry
 * (Distribution API v2, HTTP or HTTPS, anonymous, basic or bearer-token auth) by a thread, every digest
 * verified, and written as an OCI image-layout tarball that then goes through the same confined import as an
 * upload (sbx-unpack). Layers the store holds already (by diff_id) are not downloaded. */
#pragma once

#include <stdbool.h>

#include "base/error.h"

struct daemon;
struct snapshot;

struct pull_request {
    const char *name;     /* the snapshot's */
    const char *image;    /* host[:port]/repo[:tag|@sha256:hex] */
    bool insecure;        /* plain HTTP */
    const char *username; /* basic credentials (also sent to a token service), may be NULL */
    const char *password;
    const char *token; /* a bearer token to send as is, may be NULL */
};

/* Checks the request, makes the `building` snapshot and starts its download; returns it (borrowed) with
 * 0, or a negative errno with err (400 for a bad reference, 409 name taken, 429 too many running). */
int pull_start(struct daemon *d, const struct pull_request *req, struct snapshot **ret, sbx_error *err);

/* Stops every download in progress and waits for its thread (sbxd is exiting); their snapshots stay
 * `building` in the store and are marked failed at the next start. */
void pull_abort_all(struct daemon *d);
