#include "harness.h"

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

static int test_open_bad_path(void)
{
    struct store *s = NULL;
    sbx_error err = {0};
    ASSERT_TRUE(store_open("/nonexistent-dir/x/sbx.db", &s, &err) < 0);
    ASSERT_TRUE(strstr(err.msg, "/nonexistent-dir/x/sbx.db") != NULL);
    return 0;
}

TESTS(TEST(test_insert_list_delete) TEST(test_open_bad_path))
