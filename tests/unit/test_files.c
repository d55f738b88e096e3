/* src/files: real syscalls against a temporary directory used as a fake sandbox root, with a sentinel
 * directory outside it that no operation may touch. */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cleanup.h"
#include "base/util.h"
#include "files/files.h"
#include "harness.h"

#define SENTINEL "sentinel-content\n"

struct fixture {
    char root[64];    /* host path of the fake sandbox root */
    char outside[64]; /* host dir outside the root, holding only "sentinel" */
    int rootfd;
};

static int fixture_init(struct fixture *f)
{
    snprintf(f->root, sizeof(f->root), "/tmp/sbx-files-root-XXXXXX");
    snprintf(f->outside, sizeof(f->outside), "/tmp/sbx-files-out-XXXXXX");
    if (!mkdtemp(f->root) || !mkdtemp(f->outside))
        return -1;
    char p[128];
    snprintf(p, sizeof(p), "%s/sentinel", f->outside);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || write_all(fd, SENTINEL, strlen(SENTINEL)) < 0)
        return -1;
    close(fd);
    f->rootfd = open(f->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return f->rootfd < 0 ? -1 : 0;
}

static void fixture_done(struct fixture *f)
{
    close(f->rootfd);
    rm_rf(f->root);
    rm_rf(f->outside);
}

/* 0 when `outside` holds exactly the untouched sentinel. */
static int outside_untouched(struct fixture *f)
{
    _cleanup_closedir_ DIR *d = opendir(f->outside);
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "sentinel")) {
            fprintf(stderr, "# unexpected `%s` outside the root\n", de->d_name);
            return -1;
        }
    char p[128], buf[64];
    snprintf(p, sizeof(p), "%s/sentinel", f->outside);
    _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t n = read_full(fd, buf, sizeof(buf));
    struct stat st;
    if (n != (ssize_t)strlen(SENTINEL) || memcmp(buf, SENTINEL, (size_t)n) != 0 || fstat(fd, &st) < 0 ||
        (st.st_mode & 07777) != 0644 || st.st_uid != 0) {
        fprintf(stderr, "# the sentinel was modified\n");
        return -1;
    }
    return 0;
}

static int host_path(struct fixture *f, const char *inside, char *ret, size_t size)
{
    snprintf(ret, size, "%s%s", f->root, inside);
    return 0;
}

static int put(int rootfd, const char *path, const void *data, size_t len)
{
    struct files_writer w;
    sbx_error err = {0};
    int r = files_writer_open(rootfd, path, 0644, 0, 0, &w, &err);
    if (r < 0)
        return r;
    r = files_writer_write(&w, data, len, &err);
    if (r < 0) {
        files_writer_abort(&w);
        return r;
    }
    return files_writer_commit(&w, &err);
}

/* Reads a whole file through the files API into buf; returns its length or -errno. */
static ssize_t get(int rootfd, const char *path, void *buf, size_t size)
{
    int fd;
    uint64_t len;
    int r = files_open_read(rootfd, path, &fd, &len, NULL);
    if (r < 0)
        return r;
    ssize_t n = read_full(fd, buf, size);
    close(fd);
    return n;
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)((i * 7 + 3) % 251);
}

static int test_roundtrip_binary(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    const size_t total = 3 * 1024 * 1024 + 17;
    _cleanup_free_ uint8_t *data = xmalloc(total), *back = xmalloc(total + 1);
    for (size_t i = 0; i < total; i++)
        data[i] = i % 5 == 0 ? 0 : pattern(i); /* plenty of NULs */

    struct files_writer w;
    sbx_error err = {0};
    ASSERT_OK(files_writer_open(f.rootfd, "/root/deep/er/a.bin", 0640, 4242, 4343, &w, &err));
    for (size_t off = 0, chunk = 1; off < total; chunk = chunk * 3 + 1) {
        size_t n = chunk < total - off ? chunk : total - off;
        ASSERT_OK(files_writer_write(&w, data + off, n, &err));
        off += n;
    }
    ASSERT_OK(files_writer_commit(&w, &err));
    files_writer_abort(&w); /* idempotent after commit */

    int fd;
    uint64_t size;
    ASSERT_OK(files_open_read(f.rootfd, "/root/deep/er/a.bin", &fd, &size, &err));
    ASSERT_EQ(size, total);
    ASSERT_EQ(read_full(fd, back, total + 1), (ssize_t)total);
    close(fd);
    ASSERT_TRUE(memcmp(data, back, total) == 0);

    char hp[256];
    struct stat st;
    host_path(&f, "/root/deep/er/a.bin", hp, sizeof(hp));
    ASSERT_OK(lstat(hp, &st));
    ASSERT_EQ(st.st_mode & 07777, 0640);
    ASSERT_EQ(st.st_uid, 4242);
    ASSERT_EQ(st.st_gid, 4343);
    host_path(&f, "/root/deep", hp, sizeof(hp));
    ASSERT_OK(lstat(hp, &st));
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    ASSERT_EQ(st.st_mode & 07777, 0755);
    ASSERT_EQ(st.st_uid, 4242);

    /* No temporary file is left next to it. */
    struct files_entry *v = NULL;
    size_t n = 0;
    ASSERT_OK(files_list(f.rootfd, "/root/deep/er", &v, &n, 100, &err));
    ASSERT_EQ(n, 1);
    ASSERT_STREQ(v[0].name, "a.bin");
    free(v);

    /* An empty file. */
    ASSERT_OK(files_writer_open(f.rootfd, "/empty", 0600, 0, 0, &w, &err));
    ASSERT_OK(files_writer_commit(&w, &err));
    ASSERT_OK(files_open_read(f.rootfd, "/empty", &fd, &size, &err));
    ASSERT_EQ(size, 0);
    close(fd);
    fixture_done(&f);
    return 0;
}

static int test_atomic_replace(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    char buf[64];
    ASSERT_OK(put(f.rootfd, "/f", "old", 3));
    int oldfd;
    uint64_t size;
    ASSERT_OK(files_open_read(f.rootfd, "/f", &oldfd, &size, NULL));

    struct files_writer w;
    sbx_error err = {0};
    ASSERT_OK(files_writer_open(f.rootfd, "/f", 0644, 0, 0, &w, &err));
    ASSERT_OK(files_writer_write(&w, "brand new", 9, &err));
    ASSERT_EQ(get(f.rootfd, "/f", buf, sizeof(buf)), 3); /* readers still see the old file */
    ASSERT_OK(files_writer_commit(&w, &err));
    ASSERT_EQ(get(f.rootfd, "/f", buf, sizeof(buf)), 9);
    ASSERT_TRUE(memcmp(buf, "brand new", 9) == 0);
    ASSERT_EQ(read_full(oldfd, buf, sizeof(buf)), 3); /* an open reader keeps the old contents */
    ASSERT_TRUE(memcmp(buf, "old", 3) == 0);
    close(oldfd);

    /* Aborted writes leave the old file and no temporary. */
    ASSERT_OK(files_writer_open(f.rootfd, "/f", 0644, 0, 0, &w, &err));
    ASSERT_OK(files_writer_write(&w, "zzz", 3, &err));
    files_writer_abort(&w);
    files_writer_abort(&w);
    ASSERT_EQ(get(f.rootfd, "/f", buf, sizeof(buf)), 9);
    struct files_entry *v = NULL;
    size_t n = 0;
    ASSERT_OK(files_list(f.rootfd, "/", &v, &n, 100, &err));
    ASSERT_EQ(n, 1);
    free(v);

    /* A directory is never replaced: at open, and when one appears before commit. */
    ASSERT_OK(files_mkdir_p(f.rootfd, "/d", 0755, 0, 0, &err));
    ASSERT_ERRNO(files_writer_open(f.rootfd, "/d", 0644, 0, 0, &w, &err), EISDIR);
    ASSERT_STREQ(sbx_error_kind(&err), "invalid_argument");
    ASSERT_ERRNO(files_writer_open(f.rootfd, "/", 0644, 0, 0, &w, &err), EISDIR);
    ASSERT_OK(files_writer_open(f.rootfd, "/late", 0644, 0, 0, &w, &err));
    ASSERT_OK(files_mkdir_p(f.rootfd, "/late/x", 0755, 0, 0, &err));
    ASSERT_ERRNO(files_writer_commit(&w, &err), EISDIR);
    ASSERT_OK(files_list(f.rootfd, "/", &v, &n, 100, &err));
    ASSERT_EQ(n, 3); /* d f late */
    free(v);

    /* A file where a parent directory should be. */
    ASSERT_ERRNO(files_writer_open(f.rootfd, "/f/child", 0644, 0, 0, &w, &err), ENOTDIR);
    fixture_done(&f);
    return 0;
}

static int test_roundtrip_named_tmp(void)
{
    files_disable_o_tmpfile = true;
    return test_roundtrip_binary();
}

static int test_atomic_replace_named_tmp(void)
{
    files_disable_o_tmpfile = true;
    return test_atomic_replace();
}

static int test_mkdir_p(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    ASSERT_OK(files_mkdir_p(f.rootfd, "/a/b/c", 0750, 1000, 1001, &err));
    ASSERT_OK(files_mkdir_p(f.rootfd, "/a/b/c", 0750, 1000, 1001, &err)); /* exists: fine */
    ASSERT_OK(files_mkdir_p(f.rootfd, "/", 0750, 1000, 1001, &err));
    struct files_entry e;
    ASSERT_OK(files_stat(f.rootfd, "/a/b/c", &e, &err));
    ASSERT_EQ(e.type, FILES_TYPE_DIR);
    ASSERT_EQ(e.mode, 0750);
    ASSERT_OK(files_stat(f.rootfd, "/a", &e, &err));
    ASSERT_EQ(e.mode, 0750);
    char hp[256];
    struct stat st;
    host_path(&f, "/a/b", hp, sizeof(hp));
    ASSERT_OK(stat(hp, &st));
    ASSERT_EQ(st.st_uid, 1000);
    ASSERT_EQ(st.st_gid, 1001);

    ASSERT_OK(put(f.rootfd, "/a/file", "x", 1));
    ASSERT_ERRNO(files_mkdir_p(f.rootfd, "/a/file", 0755, 0, 0, &err), ENOTDIR);
    ASSERT_ERRNO(files_mkdir_p(f.rootfd, "/a/file/sub", 0755, 0, 0, &err), ENOTDIR);
    ASSERT_STREQ(sbx_error_kind(&err), "invalid_argument");
    /* Through a symlink to a directory inside the root. */
    host_path(&f, "/lnk", hp, sizeof(hp));
    ASSERT_OK(symlink("a/b", hp));
    ASSERT_OK(files_mkdir_p(f.rootfd, "/lnk/d2", 0755, 0, 0, &err));
    ASSERT_OK(files_stat(f.rootfd, "/a/b/d2", &e, &err));
    fixture_done(&f);
    return 0;
}

static int test_list_sorted(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    const char *names[] = {"zeta", "alpha", "Mid", "beta", "_under", "0num"};
    char p[64];
    for (size_t i = 0; i < ELEMENTSOF(names); i++) {
        snprintf(p, sizeof(p), "/dir/%s", names[i]);
        ASSERT_OK(put(f.rootfd, p, "abcdefgh", i));
    }
    ASSERT_OK(files_mkdir_p(f.rootfd, "/dir/sub", 0755, 0, 0, &err));
    char hp[256];
    host_path(&f, "/dir/link", hp, sizeof(hp));
    ASSERT_OK(symlink("/nowhere", hp));

    struct files_entry *v = NULL;
    size_t n = 0;
    ASSERT_OK(files_list(f.rootfd, "/dir", &v, &n, 100, &err));
    ASSERT_EQ(n, 8);
    const char *want[] = {"0num", "Mid", "_under", "alpha", "beta", "link", "sub", "zeta"};
    for (size_t i = 0; i < n; i++)
        ASSERT_STREQ(v[i].name, want[i]);
    ASSERT_STREQ(v[0].path, "/dir/0num");
    ASSERT_EQ(v[0].size, 5);
    ASSERT_EQ(v[5].type, FILES_TYPE_SYMLINK);
    ASSERT_STREQ(v[5].link_target, "/nowhere");
    ASSERT_EQ(v[6].type, FILES_TYPE_DIR);
    free(v);

    ASSERT_ERRNO(files_list(f.rootfd, "/dir", &v, &n, 7, &err), E2BIG);
    ASSERT_STREQ(sbx_error_kind(&err), "too_large");

    /* A name that is not UTF-8 still lists; the JSON carries U+FFFD for the bad byte. */
    ASSERT_OK(put(f.rootfd,
                  "/odd/a\xff\xc3\xa9"
                  "b",
                  "x", 1));
    ASSERT_OK(files_list(f.rootfd, "/odd", &v, &n, 100, &err));
    ASSERT_EQ(n, 1);
    json_t *j = files_entry_to_json(&v[0]);
    ASSERT_STREQ(json_string_value(json_object_get(j, "name")), "a\xef\xbf\xbd\xc3\xa9"
                                                                "b");
    ASSERT_STREQ(json_string_value(json_object_get(j, "path")), "/odd/a\xef\xbf\xbd\xc3\xa9"
                                                                "b");
    char *dump = json_dumps(j, 0);
    ASSERT_TRUE(dump != NULL);
    free(dump);
    json_decref(j);
    free(v);
    ASSERT_STREQ(sbx_error_kind(&err), "too_large");
    ASSERT_ERRNO(files_list(f.rootfd, "/dir/alpha", &v, &n, 100, &err), ENOTDIR);
    ASSERT_ERRNO(files_list(f.rootfd, "/nope", &v, &n, 100, &err), ENOENT);
    ASSERT_STREQ(sbx_error_kind(&err), "not_found");
    ASSERT_OK(files_list(f.rootfd, "/dir/sub", &v, &n, 100, &err));
    ASSERT_EQ(n, 0);
    ASSERT_TRUE(v == NULL);
    ASSERT_OK(files_list(f.rootfd, "/", &v, &n, 100, &err));
    ASSERT_EQ(n, 2);
    ASSERT_STREQ(v[0].path, "/dir");
    ASSERT_STREQ(v[1].path, "/odd");
    free(v);
    fixture_done(&f);
    return 0;
}

static int test_stat_types_json(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    ASSERT_OK(put(f.rootfd, "/r/a.bin", "abc", 3));
    ASSERT_OK(files_mkdir_p(f.rootfd, "/r/d", 0700, 0, 0, &err));
    char hp[256];
    host_path(&f, "/r/l", hp, sizeof(hp));
    ASSERT_OK(symlink("a.bin", hp));
    host_path(&f, "/r/fifo", hp, sizeof(hp));
    ASSERT_OK(mkfifo(hp, 0600));

    struct files_entry e;
    ASSERT_OK(files_stat(f.rootfd, "/r/a.bin", &e, &err));
    ASSERT_EQ(e.type, FILES_TYPE_FILE);
    ASSERT_EQ(e.size, 3);
    ASSERT_STREQ(e.name, "a.bin");
    ASSERT_STREQ(e.path, "/r/a.bin");
    e.mtime_sec = 1795359600; /* 2026-11-22T15:00:00Z */
    json_t *j = files_entry_to_json(&e);
    char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    ASSERT_STREQ(
        s, "{\"link_target\":null,\"mode\":\"0644\",\"mtime\":\"2026-11-22T15:00:00Z\",\"name\":\"a.bin\","
           "\"path\":\"/r/a.bin\",\"size\":3,\"type\":\"file\"}");
    free(s);
    json_decref(j);

    ASSERT_OK(files_stat(f.rootfd, "/r/l", &e, &err)); /* lstat semantics */
    ASSERT_EQ(e.type, FILES_TYPE_SYMLINK);
    ASSERT_STREQ(e.link_target, "a.bin");
    j = files_entry_to_json(&e);
    ASSERT_STREQ(json_string_value(json_object_get(j, "link_target")), "a.bin");
    ASSERT_STREQ(json_string_value(json_object_get(j, "type")), "symlink");
    json_decref(j);
    ASSERT_OK(files_stat(f.rootfd, "/r/d", &e, &err));
    ASSERT_EQ(e.type, FILES_TYPE_DIR);
    ASSERT_EQ(e.mode, 0700);
    ASSERT_OK(files_stat(f.rootfd, "/r/fifo", &e, &err));
    ASSERT_EQ(e.type, FILES_TYPE_OTHER);
    ASSERT_OK(files_stat(f.rootfd, "/", &e, &err));
    ASSERT_EQ(e.type, FILES_TYPE_DIR);
    ASSERT_STREQ(e.name, "/");
    ASSERT_STREQ(e.path, "/");
    ASSERT_ERRNO(files_stat(f.rootfd, "/r/missing", &e, &err), ENOENT);
    ASSERT_ERRNO(files_stat(f.rootfd, "/r/a.bin/x", &e, &err), ENOTDIR);

    /* Reads: a directory, a FIFO (must not block), a symlink followed inside the root. */
    int fd;
    uint64_t size;
    ASSERT_ERRNO(files_open_read(f.rootfd, "/r/d", &fd, &size, &err), EISDIR);
    ASSERT_ERRNO(files_open_read(f.rootfd, "/r/fifo", &fd, &size, &err), EINVAL);
    ASSERT_OK(files_open_read(f.rootfd, "/r/l", &fd, &size, &err));
    ASSERT_EQ(size, 3);
    ASSERT_EQ(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    close(fd);
    fixture_done(&f);
    return 0;
}

static int test_move(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    char buf[16];
    ASSERT_OK(put(f.rootfd, "/a", "AAA", 3));
    ASSERT_OK(put(f.rootfd, "/b", "BB", 2));
    ASSERT_ERRNO(files_move(f.rootfd, "/a", "/b", false, 0, 0, &err), EEXIST);
    ASSERT_STREQ(sbx_error_kind(&err), "conflict");
    ASSERT_EQ(get(f.rootfd, "/b", buf, sizeof(buf)), 2);
    ASSERT_OK(files_move(f.rootfd, "/a", "/b", true, 0, 0, &err));
    ASSERT_EQ(get(f.rootfd, "/b", buf, sizeof(buf)), 3);
    ASSERT_ERRNO(get(f.rootfd, "/a", buf, sizeof(buf)), ENOENT);
    ASSERT_ERRNO(files_move(f.rootfd, "/a", "/c", false, 0, 0, &err), ENOENT);
    ASSERT_STREQ(sbx_error_kind(&err), "not_found");

    /* Missing parents of the destination are created. */
    ASSERT_OK(files_move(f.rootfd, "/b", "/x/y/z", false, 77, 77, &err));
    ASSERT_EQ(get(f.rootfd, "/x/y/z", buf, sizeof(buf)), 3);
    struct files_entry e;
    ASSERT_OK(files_stat(f.rootfd, "/x/y", &e, &err));
    ASSERT_EQ(e.type, FILES_TYPE_DIR);

    /* Directories. */
    ASSERT_OK(files_move(f.rootfd, "/x", "/w", false, 0, 0, &err));
    ASSERT_OK(files_stat(f.rootfd, "/w/y/z", &e, &err));
    ASSERT_ERRNO(files_move(f.rootfd, "/w", "/w/y/inner", false, 0, 0, &err), EINVAL);
    ASSERT_ERRNO(files_move(f.rootfd, "/", "/elsewhere", false, 0, 0, &err), EINVAL);
    ASSERT_ERRNO(files_move(f.rootfd, "/w", "/", true, 0, 0, &err), EINVAL);
    ASSERT_ERRNO(files_move(f.rootfd, "/w", "/../..", true, 0, 0, &err), EINVAL);
    ASSERT_OK(files_mkdir_p(f.rootfd, "/full/x", 0755, 0, 0, &err));
    ASSERT_ERRNO(files_move(f.rootfd, "/w", "/full", true, 0, 0, &err), ENOTEMPTY);
    ASSERT_STREQ(sbx_error_kind(&err), "conflict");
    fixture_done(&f);
    return 0;
}

static int test_remove(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    ASSERT_OK(put(f.rootfd, "/t/a/b/c/file", "1", 1));
    ASSERT_OK(put(f.rootfd, "/t/a/other", "2", 1));
    ASSERT_OK(files_mkdir_p(f.rootfd, "/t/empty", 0755, 0, 0, &err));
    char hp[256];
    host_path(&f, "/t/a/link-to-keep", hp, sizeof(hp));
    ASSERT_OK(symlink("/keep", hp));
    ASSERT_OK(put(f.rootfd, "/keep/precious", "3", 1));

    ASSERT_ERRNO(files_remove(f.rootfd, "/t/a", false, &err), ENOTEMPTY);
    ASSERT_STREQ(sbx_error_kind(&err), "conflict");
    ASSERT_OK(files_remove(f.rootfd, "/t/empty", false, &err));
    ASSERT_OK(files_remove(f.rootfd, "/t/a", true, &err));
    struct files_entry e;
    ASSERT_ERRNO(files_stat(f.rootfd, "/t/a", &e, &err), ENOENT);
    ASSERT_OK(files_stat(f.rootfd, "/keep/precious", &e, &err)); /* symlinks are removed, not followed */
    ASSERT_ERRNO(files_remove(f.rootfd, "/t/a", false, &err), ENOENT);
    ASSERT_ERRNO(files_remove(f.rootfd, "/", true, &err), EINVAL);
    ASSERT_ERRNO(files_remove(f.rootfd, "/t/..", true, &err), EINVAL);
    ASSERT_OK(files_stat(f.rootfd, "/keep", &e, &err));

    /* A symlink to a directory: only the link goes. */
    host_path(&f, "/lk", hp, sizeof(hp));
    ASSERT_OK(symlink("keep", hp));
    ASSERT_OK(files_remove(f.rootfd, "/lk", false, &err));
    ASSERT_OK(files_stat(f.rootfd, "/keep/precious", &e, &err));
    ASSERT_OK(files_remove(f.rootfd, "/keep/precious", false, &err));
    ASSERT_OK(files_remove(f.rootfd, "/keep", false, &err));
    fixture_done(&f);
    return 0;
}

static int test_escape_dotdot(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    char buf[64], hp[256];
    struct files_entry e;
    /* The host has /etc/passwd; the root has no /etc. */
    ASSERT_ERRNO(get(f.rootfd, "../../etc/passwd", buf, sizeof(buf)), EINVAL); /* not absolute */
    ASSERT_ERRNO(get(f.rootfd, "/../../etc/passwd", buf, sizeof(buf)), ENOENT);
    ASSERT_ERRNO(files_stat(f.rootfd, "/../../etc", &e, &err), ENOENT);
    ASSERT_ERRNO(files_stat(f.rootfd, "/a/../../../etc/passwd", &e, &err), ENOENT);
    /* Writes land inside. */
    ASSERT_OK(put(f.rootfd, "/../../etc/sbx-test-file", "in", 2));
    host_path(&f, "/etc/sbx-test-file", hp, sizeof(hp));
    ASSERT_OK(access(hp, F_OK));
    ASSERT_TRUE(access("/etc/sbx-test-file", F_OK) < 0);
    /* `..` at the root of an outside-relative path. */
    char p[256];
    snprintf(p, sizeof(p), "/../../../..%s/sentinel", f.outside);
    ASSERT_ERRNO(get(f.rootfd, p, buf, sizeof(buf)), ENOENT);
    ASSERT_OK(put(f.rootfd, p, "x", 1));
    ASSERT_OK(outside_untouched(&f));
    fixture_done(&f);
    return 0;
}

static int test_escape_absolute_symlink(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    char hp[256], buf[64];
    ASSERT_OK(put(f.rootfd, "/etc/inside-only", "mine", 4));
    host_path(&f, "/etc-link", hp, sizeof(hp));
    ASSERT_OK(symlink("/etc", hp));

    struct files_entry *v = NULL;
    size_t n = 0;
    ASSERT_OK(files_list(f.rootfd, "/etc-link", &v, &n, 100, &err)); /* <root>/etc, not host /etc */
    ASSERT_EQ(n, 1);
    ASSERT_STREQ(v[0].name, "inside-only");
    free(v);
    ASSERT_EQ(get(f.rootfd, "/etc-link/inside-only", buf, sizeof(buf)), 4);
    ASSERT_ERRNO(get(f.rootfd, "/etc-link/passwd", buf, sizeof(buf)), ENOENT);
    struct files_entry e;
    ASSERT_ERRNO(files_stat(f.rootfd, "/etc-link/passwd", &e, &err), ENOENT);

    /* A file symlink to an absolute host file is resolved in the root too. */
    host_path(&f, "/pw", hp, sizeof(hp));
    ASSERT_OK(symlink("/etc/passwd", hp));
    ASSERT_ERRNO(get(f.rootfd, "/pw", buf, sizeof(buf)), ENOENT);
    fixture_done(&f);
    return 0;
}

static int test_escape_relative_chain(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    char hp[256], p[256], buf[64];
    ASSERT_OK(files_mkdir_p(f.rootfd, "/a/b", 0755, 0, 0, &err));
    host_path(&f, "/a/b/up", hp, sizeof(hp));
    ASSERT_OK(symlink("../../../../../../../../", hp));
    host_path(&f, "/a/b/up2", hp, sizeof(hp));
    ASSERT_OK(symlink("up/../../../..", hp)); /* a chain through another link */

    ASSERT_ERRNO(get(f.rootfd, "/a/b/up/etc/passwd", buf, sizeof(buf)), ENOENT);
    ASSERT_ERRNO(get(f.rootfd, "/a/b/up2/etc/passwd", buf, sizeof(buf)), ENOENT);
    struct files_entry *v = NULL;
    size_t n = 0;
    ASSERT_OK(files_list(f.rootfd, "/a/b/up2", &v, &n, 100, &err)); /* the root itself */
    ASSERT_EQ(n, 1);
    ASSERT_STREQ(v[0].name, "a");
    free(v);
    snprintf(p, sizeof(p), "/a/b/up%s/sentinel", f.outside);
    ASSERT_ERRNO(get(f.rootfd, p, buf, sizeof(buf)), ENOENT);
    snprintf(p, sizeof(p), "/a/b/up2%s/pwned", f.outside);
    ASSERT_OK(put(f.rootfd, p, "x", 1));
    snprintf(p, sizeof(p), "%s/pwned", f.outside);
    ASSERT_OK(files_stat(f.rootfd, p, &(struct files_entry){0}, &err)); /* landed inside */
    ASSERT_OK(outside_untouched(&f));

    /* A self-loop. */
    host_path(&f, "/loop", hp, sizeof(hp));
    ASSERT_OK(symlink("loop", hp));
    ASSERT_ERRNO(get(f.rootfd, "/loop", buf, sizeof(buf)), ELOOP);
    ASSERT_ERRNO(files_list(f.rootfd, "/loop", &v, &n, 100, &err), ELOOP);
    ASSERT_STREQ(sbx_error_kind(&err), "invalid_argument");
    ASSERT_TRUE(strstr(err.msg, "escapes or loops") != NULL);
    fixture_done(&f);
    return 0;
}

static int test_escape_write_through_symlink(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    char hp[256], target[256], buf[64];
    struct files_entry e;

    /* A directory symlink to the outside dir, and a file symlink to the sentinel itself. */
    host_path(&f, "/evil", hp, sizeof(hp));
    ASSERT_OK(symlink(f.outside, hp));
    host_path(&f, "/evilfile", hp, sizeof(hp));
    snprintf(target, sizeof(target), "%s/sentinel", f.outside);
    ASSERT_OK(symlink(target, hp));

    /* Dangling inside the root: a link where a directory should be is not a directory. */
    ASSERT_ERRNO(put(f.rootfd, "/evil/pwned", "x", 1), ENOTDIR);
    ASSERT_ERRNO(files_mkdir_p(f.rootfd, "/evil/newdir", 0755, 0, 0, &err), ENOTDIR);
    ASSERT_OK(outside_untouched(&f));
    /* Once <root><outside> exists, writes through the link land there. */
    ASSERT_OK(files_mkdir_p(f.rootfd, f.outside, 0755, 0, 0, &err));
    ASSERT_OK(put(f.rootfd, "/evil/pwned", "x", 1));
    ASSERT_OK(put(f.rootfd, "/evil/sentinel", "overwritten", 11));
    ASSERT_OK(files_mkdir_p(f.rootfd, "/evil/newdir", 0755, 0, 0, &err));
    ASSERT_OK(outside_untouched(&f));
    ASSERT_EQ(get(f.rootfd, "/evil/sentinel", buf, sizeof(buf)), 11); /* <root><outside>/sentinel */

    ASSERT_OK(files_move(f.rootfd, "/evil/pwned", "/evil/moved", true, 0, 0, &err));
    ASSERT_OK(files_remove(f.rootfd, "/evil/sentinel", false, &err));
    ASSERT_OK(outside_untouched(&f));

    /* Writing to the file symlink replaces the link; the target outside is untouched. */
    ASSERT_OK(put(f.rootfd, "/evilfile", "replaced", 8));
    ASSERT_OK(files_stat(f.rootfd, "/evilfile", &e, &err));
    ASSERT_EQ(e.type, FILES_TYPE_FILE);
    ASSERT_OK(outside_untouched(&f));

    /* Removing the directory symlink recursively removes only the link. */
    ASSERT_OK(files_remove(f.rootfd, "/evil", true, &err));
    ASSERT_OK(outside_untouched(&f));
    /* Moving things onto a symlink replaces the link. */
    host_path(&f, "/evil2", hp, sizeof(hp));
    ASSERT_OK(symlink(target, hp));
    ASSERT_OK(files_move(f.rootfd, "/evilfile", "/evil2", true, 0, 0, &err));
    ASSERT_OK(outside_untouched(&f));
    fixture_done(&f);
    return 0;
}

struct race {
    struct fixture *f;
    atomic_bool stop;
    atomic_long flips;
};

/* Flips <root>/d between a real directory and a symlink to the outside dir, atomically. */
static void *flipper(void *arg)
{
    struct race *r = arg;
    char d[256], dd[256], l[256];
    snprintf(d, sizeof(d), "%s/d", r->f->root);
    snprintf(dd, sizeof(dd), "%s/d-dir", r->f->root);
    snprintf(l, sizeof(l), "%s/d-link", r->f->root);
    (void)mkdir(dd, 0755);
    (void)symlink(r->f->outside, l);
    (void)rename(dd, d); /* d is the dir, d-link the link */
    while (!atomic_load(&r->stop)) {
        (void)renameat2(AT_FDCWD, d, AT_FDCWD, l, RENAME_EXCHANGE);
        atomic_fetch_add(&r->flips, 1);
    }
    return NULL;
}

static int test_symlink_swap_race(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    struct race r = {.f = &f};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, flipper, &r), 0);
    usec_t end = now_usec(CLOCK_MONOTONIC) + 500 * USEC_PER_MSEC;
    long ops = 0, ok = 0;
    sbx_error err;
    char buf[64];
    while (now_usec(CLOCK_MONOTONIC) < end) {
        ok += put(f.rootfd, "/d/file", "race", 4) == 0;
        ok += put(f.rootfd, "/d/sub/file2", "race", 4) == 0;
        ok += files_mkdir_p(f.rootfd, "/d/newdir/x", 0755, 0, 0, &err) == 0;
        ok += files_move(f.rootfd, "/d/file", "/d/file3", true, 0, 0, &err) == 0;
        ok += get(f.rootfd, "/d/sentinel", buf, sizeof(buf)) >= 0 && memcmp(buf, SENTINEL, 8) == 0;
        struct files_entry *v = NULL;
        size_t n = 0;
        if (files_list(f.rootfd, "/d", &v, &n, 100, &err) == 0) {
            for (size_t i = 0; i < n; i++)
                ASSERT_TRUE(strcmp(v[i].name, "sentinel") != 0); /* never lists the outside dir */
            free(v);
        }
        ok += files_remove(f.rootfd, "/d/sub", true, &err) == 0;
        ok += files_remove(f.rootfd, "/d/sentinel", false, &err) == 0;
        ops += 8;
    }
    atomic_store(&r.stop, true);
    pthread_join(t, NULL);
    fprintf(stderr, "# %ld operations (%ld succeeded), %ld flips\n", ops, ok, atomic_load(&r.flips));
    ASSERT_TRUE(ok > 0);
    ASSERT_TRUE(atomic_load(&r.flips) > 100);
    ASSERT_OK(outside_untouched(&f));
    fixture_done(&f);
    return 0;
}

static int test_invalid_paths(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    char out[PATH_MAX];
    struct files_entry e;

    ASSERT_ERRNO(files_path_normalize("/a\0b", 4, out, &err), EINVAL);
    ASSERT_STREQ(sbx_error_kind(&err), "invalid_argument");
    ASSERT_ERRNO(files_path_normalize("", 0, out, &err), EINVAL);
    ASSERT_ERRNO(files_path_normalize("a/b", 3, out, &err), EINVAL);
    ASSERT_ERRNO(files_stat(f.rootfd, "relative", &e, &err), EINVAL);
    ASSERT_ERRNO(files_stat(f.rootfd, "", &e, &err), EINVAL);
    ASSERT_ERRNO(files_stat(f.rootfd, NULL, &e, &err), EINVAL);

    _cleanup_free_ char *lng = xmalloc(PATH_MAX + 10);
    lng[0] = '/';
    memset(lng + 1, 'a', PATH_MAX + 8);
    lng[PATH_MAX + 9] = '\0';
    ASSERT_ERRNO(files_stat(f.rootfd, lng, &e, &err), ENAMETOOLONG);
    ASSERT_STREQ(sbx_error_kind(&err), "invalid_argument");
    ASSERT_ERRNO(put(f.rootfd, lng, "x", 1), ENAMETOOLONG);
    lng[300] = '\0'; /* one 299-byte component */
    ASSERT_ERRNO(files_stat(f.rootfd, lng, &e, &err), ENAMETOOLONG);
    /* Long but fine: many short components. */
    for (int i = 1; i < 4000; i += 2)
        lng[i] = 'a', lng[i + 1] = '/';
    lng[4001] = '\0';
    ASSERT_OK(files_path_normalize(lng, strlen(lng), out, &err));

    const struct {
        const char *in, *want;
    } cases[] = {
        {"/", "/"},
        {"//", "/"},
        {"/..", "/"},
        {"/../../etc", "/etc"},
        {"/a//b/./c/../d/", "/a/b/d"},
        {"/a/b/../../..", "/"},
        {"/.hidden/..x/...", "/.hidden/..x/..."},
        {"/a/.", "/a"},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        ASSERT_OK(files_path_normalize(cases[i].in, strlen(cases[i].in), out, &err));
        ASSERT_STREQ(out, cases[i].want);
    }
    fixture_done(&f);
    return 0;
}

static int test_parse_range(void)
{
    const struct {
        const char *h;
        uint64_t size;
        int r;
        uint64_t start, len;
    } cases[] = {
        {"bytes=0-9", 100, 0, 0, 10},
        {"bytes=10-", 100, 0, 10, 90},
        {"bytes=-10", 100, 0, 90, 10},
        {"bytes=-1000", 100, 0, 0, 100},
        {"bytes=90-1000", 100, 0, 90, 10},
        {"bytes=99-99", 100, 0, 99, 1},
        {"bytes=0-0", 1, 0, 0, 1},
        {"Bytes = 5-6", 100, 0, 5, 2},
        {"bytes=100-", 100, -ERANGE, 0, 0},
        {"bytes=100-200", 100, -ERANGE, 0, 0},
        {"bytes=0-", 0, -ERANGE, 0, 0},
        {"bytes=-0", 100, -ERANGE, 0, 0},
        {"bytes=-5", 0, -ERANGE, 0, 0},
        {"bytes=9-3", 100, -EINVAL, 0, 0},
        {"bytes=-", 100, -EINVAL, 0, 0},
        {"bytes=", 100, -EINVAL, 0, 0},
        {"bytes=a-b", 100, -EINVAL, 0, 0},
        {"bytes=0-1,5-6", 100, -EINVAL, 0, 0},
        {"items=0-1", 100, -EINVAL, 0, 0},
        {"bytes 0-1", 100, -EINVAL, 0, 0},
        {"bytes=1-2x", 100, -EINVAL, 0, 0},
        {"bytes=99999999999999999999999-", 100, -EINVAL, 0, 0},
        {"bytes=18446744073709551616-", 100, -EINVAL, 0, 0},
        {"bytes=18446744073709551615-", 100, -ERANGE, 0, 0},
        {"", 100, -EINVAL, 0, 0},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        uint64_t s = 0, l = 0;
        int r = files_parse_range(cases[i].h, cases[i].size, &s, &l);
        if (r != cases[i].r)
            FAILF("`%s` size %llu: got %d, want %d", cases[i].h, (unsigned long long)cases[i].size, r,
                  cases[i].r);
        if (r == 0 && (s != cases[i].start || l != cases[i].len))
            FAILF("`%s`: got %llu+%llu", cases[i].h, (unsigned long long)s, (unsigned long long)l);
    }
    ASSERT_ERRNO(files_parse_range(NULL, 10, &(uint64_t){0}, &(uint64_t){0}), EINVAL);
    return 0;
}

/* files_open_dir (what E2B's watchDir watches through /proc/self/fd): an absolute symlink to a directory
 * resolves inside the root, never to the host's; files are refused. */
static int test_open_dir_confined(void)
{
    struct fixture f;
    ASSERT_OK(fixture_init(&f));
    sbx_error err = {0};
    char hp[256];
    ASSERT_OK(put(f.rootfd, "/data/file", "x", 1));
    host_path(&f, "/out-link", hp, sizeof(hp));
    ASSERT_OK(symlink(f.outside, hp)); /* the host path of the outside dir, which is not in the root */
    int fd = -1;
    ASSERT_OK(files_open_dir(f.rootfd, "/data", &fd, &err));
    struct stat a, b;
    char data[256];
    host_path(&f, "/data", data, sizeof(data));
    ASSERT_OK(fstat(fd, &a));
    ASSERT_OK(stat(data, &b));
    ASSERT_EQ(a.st_ino, b.st_ino);
    close(fd);
    ASSERT_ERRNO(files_open_dir(f.rootfd, "/out-link", &fd, &err), ENOENT);
    ASSERT_ERRNO(files_open_dir(f.rootfd, "/data/file", &fd, &err), ENOTDIR);
    ASSERT_ERRNO(files_open_dir(f.rootfd, "/nothing", &fd, &err), ENOENT);
    fixture_done(&f);
    return 0;
}

TESTS(TEST(test_roundtrip_binary) TEST(test_atomic_replace) TEST(test_roundtrip_named_tmp)
          TEST(test_atomic_replace_named_tmp) TEST(test_mkdir_p) TEST(test_list_sorted)
              TEST(test_stat_types_json) TEST(test_move) TEST(test_remove) TEST(test_escape_dotdot)
                  TEST(test_escape_absolute_symlink) TEST(test_escape_relative_chain)
                      TEST(test_escape_write_through_symlink) TEST(test_symlink_swap_race)
                          TEST(test_invalid_paths) TEST(test_parse_range) TEST(test_open_dir_confined))
