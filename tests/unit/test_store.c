#include "harness.h"

#include <sqlite3.h>
#include <stdlib.h>

#include "base/util.h"
#include "store/store.h"

static char dbdir[] = "/tmp/sbx-test-store-XXXXXX";

static int open_fresh(struct store **s)
{
    if (!mkdtemp(dbdir))
        return -errno;
    char path[256];
    snprintf(path, sizeof(path), "%s/sbx.db", dbdir);
    sbx_error err = {0};
    int r = store_open(path, s, &err);
    if (r < 0)
        fprintf(stderr, "# %s\n", err.msg);
    return r;
}

struct count {
    int n;
    char last[64];
};

static int count_cb(const struct store_sandbox *sb, void *userdata)
{
    struct count *c = userdata;
    c->n++;
    snprintf(c->last, sizeof(c->last), "%s", sb->id);
    return 0;
}

static int test_insert_list_delete(void)
{
    struct store *s;
    ASSERT_OK(open_fresh(&s));
    sbx_error err = {0};
    int slot;
    ASSERT_OK(store_sandbox_free_uid_slot(s, &slot, &err));
    ASSERT_EQ(slot, 1);
    struct store_sandbox a = {.id = "sbx_a",
                              .name = "alpha",
                              .snapshot = "host",
                              .state = "running",
                              .created_ms = 1,
                              .uid_slot = 1};
    ASSERT_OK(store_sandbox_insert(s, &a, &err));
    struct store_sandbox b = {.id = "sbx_b",
                              .name = "alpha",
                              .snapshot = "host",
                              .state = "running",
                              .created_ms = 2,
                              .uid_slot = 2};
    ASSERT_ERRNO(store_sandbox_insert(s, &b, &err), EEXIST);
    ASSERT_STREQ(err.kind, "conflict");
    b.name = NULL;
    ASSERT_OK(store_sandbox_insert(s, &b, &err));
    struct store_sandbox c = {
        .id = "sbx_c", .snapshot = "host", .state = "running", .created_ms = 3, .uid_slot = 4};
    ASSERT_OK(store_sandbox_insert(s, &c, &err));
    ASSERT_OK(store_sandbox_free_uid_slot(s, &slot, &err));
    ASSERT_EQ(slot, 3);
    struct count cnt = {0};
    ASSERT_OK(store_sandbox_foreach(s, count_cb, &cnt, &err));
    ASSERT_EQ(cnt.n, 3);
    ASSERT_STREQ(cnt.last, "sbx_c");
    ASSERT_OK(store_sandbox_set_state(s, "sbx_a", "stopped", 10, 11, &err));
    ASSERT_OK(store_sandbox_delete(s, "sbx_b", &err));
    store_close(s);

    /* Reopening runs no migration twice and keeps the rows. */
    char path[256];
    snprintf(path, sizeof(path), "%s/sbx.db", dbdir);
    ASSERT_OK(store_open(path, &s, &err));
    cnt = (struct count){0};
    ASSERT_OK(store_sandbox_foreach(s, count_cb, &cnt, &err));
    ASSERT_EQ(cnt.n, 2);
    ASSERT_OK(store_sandbox_free_uid_slot(s, &slot, &err));
    ASSERT_EQ(slot, 2);
    store_close(s);
    rm_rf(dbdir);
    return 0;
}

struct row_seen {
    char owner[32], reason[64];
    int64_t idle, das, timeout, expires, stopped;
};

static int remember_row(const struct store_sandbox *sb, void *userdata)
{
    struct row_seen *r = userdata;
    snprintf(r->owner, sizeof(r->owner), "%s", sb->owner ? sb->owner : "(admin)");
    snprintf(r->reason, sizeof(r->reason), "%s", sb->reason ? sb->reason : "(none)");
    r->idle = sb->idle_ttl_s;
    r->das = sb->delete_after_stop_s;
    r->timeout = sb->timeout_s;
    r->expires = sb->expires_ms;
    r->stopped = sb->stopped_ms;
    return 0;
}

/* Lifecycle columns round-trip; names are unique per owner (the admin is an owner too). */
static int test_lifecycle_columns_and_owners(void)
{
    struct store *s;
    dbdir[strlen(dbdir) - 6] = '\0';
    strcat(dbdir, "XXXXXX");
    ASSERT_OK(open_fresh(&s));
    sbx_error err = {0};
    struct store_sandbox a = {.id = "sbx_a",
                              .name = "web",
                              .snapshot = "host",
                              .state = "stopped",
                              .created_ms = 1,
                              .uid_slot = 1,
                              .owner = "key_x",
                              .reason = "idle",
                              .idle_ttl_s = 600,
                              .delete_after_stop_s = 60,
                              .timeout_s = 3600,
                              .expires_ms = 12345,
                              .stopped_ms = 678};
    ASSERT_OK(store_sandbox_insert(s, &a, &err));
    struct store_sandbox b = {.id = "sbx_b",
                              .name = "web",
                              .snapshot = "host",
                              .state = "running",
                              .created_ms = 2,
                              .uid_slot = 2,
                              .owner = "key_y"};
    ASSERT_OK(store_sandbox_insert(s, &b, &err));
    struct store_sandbox c = {
        .id = "sbx_c", .name = "web", .snapshot = "host", .state = "running", .created_ms = 3, .uid_slot = 3};
    ASSERT_OK(store_sandbox_insert(s, &c, &err));
    struct store_sandbox c2 = {.id = "sbx_c2",
                               .name = "web",
                               .snapshot = "host",
                               .state = "running",
                               .created_ms = 4,
                               .uid_slot = 4};
    ASSERT_ERRNO(store_sandbox_insert(s, &c2, &err), EEXIST);
    struct store_sandbox a2 = {.id = "sbx_a2",
                               .name = "web",
                               .snapshot = "host",
                               .state = "running",
                               .created_ms = 4,
                               .uid_slot = 4,
                               .owner = "key_x"};
    ASSERT_ERRNO(store_sandbox_insert(s, &a2, &err), EEXIST);
    ASSERT_OK(store_sandbox_delete(s, "sbx_b", &err));
    ASSERT_OK(store_sandbox_delete(s, "sbx_c", &err));
    struct row_seen r = {0};
    ASSERT_OK(store_sandbox_foreach(s, remember_row, &r, &err));
    ASSERT_STREQ(r.owner, "key_x");
    ASSERT_STREQ(r.reason, "idle");
    ASSERT_EQ(r.idle, 600);
    ASSERT_EQ(r.das, 60);
    ASSERT_EQ(r.timeout, 3600);
    ASSERT_EQ(r.expires, 12345);
    ASSERT_EQ(r.stopped, 678);
    /* Update rewrites them; the admin's rows read back with no owner. */
    a.owner = NULL;
    a.reason = NULL;
    a.expires_ms = 0;
    ASSERT_OK(store_sandbox_update(s, &a, &err));
    ASSERT_OK(store_sandbox_foreach(s, remember_row, &r, &err));
    ASSERT_STREQ(r.owner, "(admin)");
    ASSERT_STREQ(r.reason, "(none)");
    ASSERT_EQ(r.expires, 0);
    store_close(s);
    rm_rf(dbdir);
    return 0;
}

static int count_tomb(const struct store_tombstone *t, void *userdata)
{
    (*(int *)userdata)++;
    return 0;
}

static int count_key(const struct store_key *k, void *userdata)
{
    (*(int *)userdata)++;
    return 0;
}

static int test_tombstones_and_keys(void)
{
    struct store *s;
    dbdir[strlen(dbdir) - 6] = '\0';
    strcat(dbdir, "XXXXXX");
    ASSERT_OK(open_fresh(&s));
    sbx_error err = {0};
    struct store_tombstone t1 = {
        .id = "sbx_1", .owner = "key_x", .deleted_ms = 100, .sandbox_json = "{\"a\":1}"};
    struct store_tombstone t2 = {.id = "sbx_2", .deleted_ms = 200, .sandbox_json = "{}"};
    ASSERT_OK(store_tombstone_insert(s, &t1, &err));
    ASSERT_OK(store_tombstone_insert(s, &t2, &err));
    char *json = NULL, *owner = NULL;
    ASSERT_OK(store_tombstone_get(s, "sbx_1", &json, &owner, &err));
    ASSERT_STREQ(json, "{\"a\":1}");
    ASSERT_STREQ(owner, "key_x");
    free(json);
    free(owner);
    ASSERT_ERRNO(store_tombstone_get(s, "sbx_none", &json, &owner, &err), ENOENT);
    ASSERT_OK(store_tombstone_prune(s, 150, &err));
    int n = 0;
    ASSERT_OK(store_tombstone_foreach(s, count_tomb, &n, &err));
    ASSERT_EQ(n, 1);

    struct store_key k = {.id = "key_1", .name = "n", .hash = "ab", .created_ms = 1, .quotas_json = "{}"};
    ASSERT_OK(store_key_insert(s, &k, &err));
    struct store_key dup = {.id = "key_2", .hash = "ab", .created_ms = 2};
    ASSERT_ERRNO(store_key_insert(s, &dup, &err), EEXIST);
    n = 0;
    ASSERT_OK(store_key_foreach(s, count_key, &n, &err));
    ASSERT_EQ(n, 1);
    ASSERT_OK(store_key_delete(s, "key_1", &err));
    ASSERT_ERRNO(store_key_delete(s, "key_1", &err), ENOENT);
    store_close(s);
    rm_rf(dbdir);
    return 0;
}

static int remember_state(const struct store_sandbox *sb, void *userdata)
{
    snprintf(userdata, 32, "%s/%s", sb->state, sb->owner ? sb->owner : "(admin)");
    return 0;
}

/* A database written by the first schema is migrated in place: rows kept, "error" becomes "failed". */
static int test_migrates_schema_1(void)
{
    dbdir[strlen(dbdir) - 6] = '\0';
    strcat(dbdir, "XXXXXX");
    ASSERT_TRUE(mkdtemp(dbdir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/sbx.db", dbdir);
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db,
                     "CREATE TABLE sandboxes (id TEXT PRIMARY KEY, name TEXT UNIQUE, snapshot TEXT NOT NULL,"
                     " state TEXT NOT NULL, created_ms INTEGER NOT NULL, env TEXT NOT NULL DEFAULT '{}',"
                     " metadata TEXT NOT NULL DEFAULT '{}', resources TEXT NOT NULL DEFAULT '{}',"
                     " uid_slot INTEGER NOT NULL UNIQUE, shim_pid INTEGER NOT NULL DEFAULT 0,"
                     " init_pid INTEGER NOT NULL DEFAULT 0);"
                     "INSERT INTO sandboxes (id, name, snapshot, state, created_ms, uid_slot)"
                     " VALUES ('sbx_old', 'old', 'host', 'error', 5, 1);"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    struct store *s;
    sbx_error err = {0};
    ASSERT_OK(store_open(path, &s, &err));
    char seen[32] = "";
    ASSERT_OK(store_sandbox_foreach(s, remember_state, seen, &err));
    ASSERT_STREQ(seen, "failed/(admin)");
    store_close(s);
    rm_rf(dbdir);
    return 0;
}

static int remember_checkpoint(const struct store_checkpoint *ck, void *userdata)
{
    char *seen = userdata;
    size_t n = strlen(seen);
    snprintf(seen + n, 128 - n, "%s%s:%s:%s:%lld:%lld", n ? "," : "", ck->sandbox_id, ck->name, ck->snapshot,
             (long long)ck->uid_base, (long long)ck->disk_mb);
    return 0;
}

/* Checkpoints: one name per sandbox (a second is a typed 409), listed oldest first, deleted by id. */
static int test_checkpoints(void)
{
    dbdir[strlen(dbdir) - 6] = '\0';
    strcat(dbdir, "XXXXXX");
    struct store *s;
    ASSERT_OK(open_fresh(&s));
    sbx_error err = {0};
    struct store_checkpoint a = {.id = "ckp_a",
                                 .sandbox_id = "sbx_1",
                                 .name = "before",
                                 .snapshot = "host",
                                 .disk_mb = 64,
                                 .uid_base = 268435456,
                                 .size_bytes = 4096,
                                 .created_ms = 1};
    struct store_checkpoint b = a;
    b.id = "ckp_b";
    b.created_ms = 2;
    ASSERT_OK(store_checkpoint_insert(s, &a, &err));
    ASSERT_EQ(store_checkpoint_insert(s, &b, &err), -EEXIST);
    ASSERT_EQ(err.http, 409);
    ASSERT_STREQ(err.kind, "conflict");
    b.sandbox_id = "sbx_2"; /* the same name on another sandbox is fine */
    ASSERT_OK(store_checkpoint_insert(s, &b, &err));
    char seen[128] = "";
    ASSERT_OK(store_checkpoint_foreach(s, remember_checkpoint, seen, &err));
    ASSERT_STREQ(seen, "sbx_1:before:host:268435456:64,sbx_2:before:host:268435456:64");
    ASSERT_OK(store_checkpoint_delete(s, "ckp_a", &err));
    seen[0] = '\0';
    ASSERT_OK(store_checkpoint_foreach(s, remember_checkpoint, seen, &err));
    ASSERT_STREQ(seen, "sbx_2:before:host:268435456:64");
    store_close(s);
    rm_rf(dbdir);
    return 0;
}

static int remember_volumes_json(const struct store_sandbox *sb, void *userdata)
{
    snprintf(userdata, 64, "%s", sb->volumes_json);
    return 0;
}

static int remember_volume(const struct store_volume *v, void *userdata)
{
    char *seen = userdata;
    size_t n = strlen(seen);
    snprintf(seen + n, 128 - n, "%s%s:%s:%lld", n ? "," : "", v->owner ? v->owner : "(admin)", v->name,
             (long long)v->size_mb);
    return 0;
}

/* Volume names are unique per owner (the admin being one owner), a sandbox row keeps its mounts. */
static int test_volumes(void)
{
    dbdir[strlen(dbdir) - 6] = '\0';
    strcat(dbdir, "XXXXXX");
    struct store *s;
    ASSERT_OK(open_fresh(&s));
    sbx_error err = {0};
    struct store_volume a = {.id = "vol_a", .name = "data", .size_mb = 64, .created_ms = 1};
    struct store_volume b = {
        .id = "vol_b", .name = "data", .owner = "key_t", .size_mb = 128, .created_ms = 2};
    struct store_volume c = {.id = "vol_c", .name = "data", .size_mb = 64, .created_ms = 3};
    ASSERT_OK(store_volume_insert(s, &a, &err));
    ASSERT_OK(store_volume_insert(s, &b, &err));
    ASSERT_EQ(store_volume_insert(s, &c, &err), -EEXIST);
    ASSERT_EQ(err.http, 409);
    char seen[128] = "";
    ASSERT_OK(store_volume_foreach(s, remember_volume, seen, &err));
    ASSERT_STREQ(seen, "(admin):data:64,key_t:data:128");
    ASSERT_OK(store_volume_delete(s, "vol_a", &err));
    seen[0] = '\0';
    ASSERT_OK(store_volume_foreach(s, remember_volume, seen, &err));
    ASSERT_STREQ(seen, "key_t:data:128");

    struct store_sandbox sb = {.id = "sbx_v",
                               .snapshot = "host",
                               .state = "running",
                               .created_ms = 1,
                               .uid_slot = 9,
                               .volumes_json = "[{\"volume\":\"vol_b\",\"path\":\"/d\"}]"};
    ASSERT_OK(store_sandbox_insert(s, &sb, &err));
    char got[64] = "";
    ASSERT_OK(store_sandbox_foreach(s, remember_volumes_json, got, &err));
    ASSERT_STREQ(got, "[{\"volume\":\"vol_b\",\"path\":\"/d\"}]");
    store_close(s);
    rm_rf(dbdir);
    return 0;
}

static int test_open_bad_path(void)
{
    struct store *s = NULL;
    sbx_error err = {0};
    ASSERT_TRUE(store_open("/nonexistent-dir/x/sbx.db", &s, &err) < 0);
    ASSERT_TRUE(strstr(err.msg, "/nonexistent-dir/x/sbx.db") != NULL);
    return 0;
}

TESTS(TEST(test_insert_list_delete) TEST(test_lifecycle_columns_and_owners) TEST(test_tombstones_and_keys)
          TEST(test_migrates_schema_1) TEST(test_checkpoints) TEST(test_volumes) TEST(test_open_bad_path))
