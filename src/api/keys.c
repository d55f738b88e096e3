/* /v1/keys (admin only) and the tenant key table behind authentication and quotas. */
#include "api/keys.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "base/cleanup.h"
#include "base/log.h"
#include "base/util.h"
#include "daemon/daemon.h"
#include "daemon/sandbox.h"
#include "store/store.h"

#define KEYS_MAX 1024
#define KEY_NAME_MAX 128
#define SECRET_PREFIX "sbxk_"

struct key_table {
    struct api_key *v;
    size_t n;
};

static void sha256_hex(const char *s, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    if (EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL) != 1 || len != sizeof(md))
        abort(); /* cannot happen with the default provider; a key must never match by accident */
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(md); i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

static struct key_table *table(struct daemon *d)
{
    if (!d->keys)
        d->keys = xcalloc(1, sizeof(*d->keys));
    return d->keys;
}

static void key_done(struct api_key *k)
{
    free(k->name);
}

static void add_key(struct key_table *t, const struct api_key *k)
{
    t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
    t->v[t->n++] = *k;
}

static void quotas_from_json(struct api_key *k, const char *text)
{
    json_t *q = text ? json_loads(text, 0, NULL) : NULL;
    k->max_sandboxes = json_integer_value(json_object_get(q, "max_sandboxes"));
    k->max_memory_mb = json_integer_value(json_object_get(q, "max_memory_mb"));
    json_decref(q);
}

static int load_one(const struct store_key *sk, void *userdata)
{
    struct api_key k = {.created_ms = sk->created_ms};
    snprintf(k.id, sizeof(k.id), "%s", sk->id);
    snprintf(k.hash, sizeof(k.hash), "%s", sk->hash);
    k.name = sk->name ? xstrdup(sk->name) : NULL;
    quotas_from_json(&k, sk->quotas_json);
    add_key(userdata, &k);
    return 0;
}

int keys_load(struct daemon *d, sbx_error *err)
{
    return store_key_foreach(d->store, load_one, table(d), err);
}

void keys_free(struct daemon *d)
{
    if (!d->keys)
        return;
    for (size_t i = 0; i < d->keys->n; i++)
        key_done(&d->keys->v[i]);
    free(d->keys->v);
    free(d->keys);
    d->keys = NULL;
}

const struct api_key *keys_find(struct daemon *d, const char *secret)
{
    if (!d->keys || strncmp(secret, SECRET_PREFIX, strlen(SECRET_PREFIX)) != 0)
        return NULL;
    char hash[65];
    sha256_hex(secret, hash);
    /* Hashes of high-entropy secrets: comparing them leaks nothing usable, but stay constant-time. */
    for (size_t i = 0; i < d->keys->n; i++)
        if (CRYPTO_memcmp(hash, d->keys->v[i].hash, 64) == 0)
            return &d->keys->v[i];
    return NULL;
}

const struct api_key *keys_get(struct daemon *d, const char *id)
{
    for (size_t i = 0; d->keys && i < d->keys->n; i++)
        if (strcmp(d->keys->v[i].id, id) == 0)
            return &d->keys->v[i];
    return NULL;
}

int keys_check_quota(struct daemon *d, const char *owner, unsigned new_sandboxes, uint64_t memory_mb,
                     sbx_error *err)
{
    const struct api_key *k = owner ? keys_get(d, owner) : NULL;
    if (!k || (k->max_sandboxes == 0 && k->max_memory_mb == 0))
        return 0;
    int64_t count = 0, memory = 0;
    for (struct sandbox *sb = d->sandboxes; sb; sb = sb->next) {
        if (!sb->owner || strcmp(sb->owner, owner) != 0)
            continue;
        count++;
        if (sb->state == SANDBOX_CREATING || sb->state == SANDBOX_RUNNING || sb->state == SANDBOX_PAUSED)
            memory += (int64_t)sb->res.memory_mb;
    }
    if (new_sandboxes && k->max_sandboxes && count + new_sandboxes > k->max_sandboxes)
        return sbx_error_setk(err, -EDQUOT, "quota_exceeded", 429,
                              "quota max_sandboxes (%lld) reached: the key has %lld sandboxes",
                              (long long)k->max_sandboxes, (long long)count);
    if (k->max_memory_mb && memory + (int64_t)memory_mb > k->max_memory_mb)
        return sbx_error_setk(err, -EDQUOT, "quota_exceeded", 429,
                              "quota max_memory_mb (%lld) exceeded: %lld MiB in use, %llu MiB more asked",
                              (long long)k->max_memory_mb, (long long)memory, (unsigned long long)memory_mb);
    return 0;
}

/* --- handlers ----------------------------------------------------------------------------------- */

static json_t *key_to_json(const struct api_key *k)
{
    char created[40];
    format_time_ms(created, sizeof(created), k->created_ms);
    return json_pack("{s:s, s:s?, s:s, s:{s:I, s:I}}", "id", k->id, "name", k->name, "created_at", created,
                     "quotas", "max_sandboxes", (json_int_t)k->max_sandboxes, "max_memory_mb",
                     (json_int_t)k->max_memory_mb);
}

static void create_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    struct key_table *t = table(c->d);
    const char *name = NULL;
    json_t *quotas = NULL;
    struct api_key k = {.created_ms = (int64_t)(now_usec(CLOCK_REALTIME) / 1000)};
    if (jsonreq_string(body, "name", KEY_NAME_MAX, &name, &err) < 0 ||
        jsonreq_object(body, "quotas", &quotas, &err) < 0 ||
        (quotas &&
         (jsonreq_integer(quotas, "max_sandboxes", 0, 1000000, &k.max_sandboxes, &err) < 0 ||
          jsonreq_integer(quotas, "max_memory_mb", 0, INT64_C(1) << 40, &k.max_memory_mb, &err) < 0)))
        return api_reply_error(c->req, &err);
    if (t->n >= KEYS_MAX) {
        sbx_error_setk(&err, -EAGAIN, "resource_exhausted", 429, "at most %d API keys", KEYS_MAX);
        return api_reply_error(c->req, &err);
    }
    char secret[80], a[SBX_ID_MAX + 1], b[SBX_ID_MAX + 1];
    id_generate(a, sizeof(a), "");
    id_generate(b, sizeof(b), "");
    snprintf(secret, sizeof(secret), SECRET_PREFIX "%s%s", a, b); /* 200 random bits */
    id_generate(k.id, sizeof(k.id), "key_");
    sha256_hex(secret, k.hash);
    k.name = name ? xstrdup(name) : NULL;
    json_t *qj = json_pack("{s:I, s:I}", "max_sandboxes", (json_int_t)k.max_sandboxes, "max_memory_mb",
                           (json_int_t)k.max_memory_mb);
    _cleanup_free_ char *qtext = json_dumps(qj, JSON_COMPACT);
    json_decref(qj);
    struct store_key sk = {
        .id = k.id, .name = k.name, .hash = k.hash, .created_ms = k.created_ms, .quotas_json = qtext};
    if (store_key_insert(c->d->store, &sk, &err) < 0) {
        key_done(&k);
        return api_reply_error(c->req, &err);
    }
    add_key(t, &k);
    log_info("API key %s created%s%s", k.id, k.name ? " for " : "", k.name ? k.name : "");
    json_t *o = key_to_json(&k);
    json_object_set_new(o, "key", json_string(secret)); /* the only time the secret is shown */
    api_reply_json(c->req, 201, o);
    OPENSSL_cleanse(secret, sizeof(secret));
}

void api_keys_create(struct api_ctx *c)
{
    api_read_json(c, create_with_body);
}

void api_keys_list(struct api_ctx *c)
{
    json_t *arr = json_array();
    for (size_t i = 0; c->d->keys && i < c->d->keys->n; i++)
        json_array_append_new(arr, key_to_json(&c->d->keys->v[i]));
    api_reply_json(c->req, 200, json_pack("{s:o}", "keys", arr));
}

/* Revoking a key stops its requests at once; its sandboxes stay (the admin sees and deletes them). */
void api_keys_delete(struct api_ctx *c)
{
    sbx_error err = {0};
    struct key_table *t = table(c->d);
    size_t i = 0;
    while (i < t->n && strcmp(t->v[i].id, c->sandbox_id) != 0)
        i++;
    if (i == t->n) {
        sbx_error_setk(&err, -ENOENT, "not_found", 404, "API key `%s` not found", c->sandbox_id);
        return api_reply_error(c->req, &err);
    }
    if (store_key_delete(c->d->store, t->v[i].id, &err) < 0)
        return api_reply_error(c->req, &err);
    log_info("API key %s revoked", t->v[i].id);
    key_done(&t->v[i]);
    memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
    t->n--;
    api_reply_json(c->req, 204, NULL);
}
