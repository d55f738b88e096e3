/* Tenants: API keys created by the admin. A request made with a tenant's key sees only that tenant's
 * sandboxes; the admin key (SBX_API_KEY) sees everything. Secrets are never stored: only their SHA-256,
 * which is enough because they are 200-bit random strings (no password stretching needed). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"

struct daemon;

#define KEY_ID_MAX 40

struct api_key {
    char id[KEY_ID_MAX + 1];
    char *name; /* NULL if none */
    char hash[65];
    int64_t created_ms;
    int64_t max_sandboxes; /* 0 = unlimited */
    int64_t max_memory_mb; /* 0 = unlimited: the sum of memory_mb over its sandboxes that run */
};

/* Loads the keys from the store into d->keys. Returns 0 or a negative errno with err filled. */
int keys_load(struct daemon *d, sbx_error *err);
void keys_free(struct daemon *d);

/* The tenant key whose secret is `secret`, or NULL. */
const struct api_key *keys_find(struct daemon *d, const char *secret);
const struct api_key *keys_get(struct daemon *d, const char *id);

/* Checks owner's quotas before it gets new_sandboxes more sandboxes and/or memory_mb more running
 * memory. NULL owner (the admin) or a key without quotas always passes. -EDQUOT with a 429
 * "quota_exceeded" error naming the quota otherwise. */
int keys_check_quota(struct daemon *d, const char *owner, unsigned new_sandboxes, uint64_t memory_mb,
                     sbx_error *err);
