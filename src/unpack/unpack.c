/* sbx-unpack: turns an image tarball (`docker save` or OCI image layout, optionally gzip/zstd-compressed)
 * into unpacked overlayfs lower layers. Run by sbxd, one process per import, confined before it reads a
 * byte of input (docs/design/snapshots.md):
 *
 *   stdin   the image tarball (a regular file, read twice: once for the JSON, once for the layers)
 *   cwd     the staging directory: it becomes this process's whole filesystem (pivot_root)
 *   stdout  one JSON object: {"layers": [...], "config": {...}} or {"error": "..."}
 *
 *   sbx-unpack --max-layer-bytes N --max-entries N [--skip HEX]... [--absent-ok]
 *
 * Layers are unpacked into <staging>/<diff_id hex>/ (bottom first); a layer named by --skip is already in
 * sbxd's layer store and is only verified (hashed), not written; with --absent-ok (a registry pull, which
 * does not download layers the store has) such a layer may also be missing from the archive. Exit 0 on
 * success, 1 with {"error"} on a bad image, 2 on bad usage. Every path is resolved component by component
 * with openat2 (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): no entry
 * lands outside its layer, whatever its name or the links before it. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <jansson.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <sched.h>
#include <signal.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define JSON_ENTRY_MAX (4u << 20)          /* manifest, index, config: bigger is not an image */
#define KEPT_TOTAL_MAX (64u << 20)         /* small entries kept in memory from the first pass */
#define LAYERS_MAX 120                     /* overlayfs and the shim's lower_dirs limit, with room */
#define LINK_DEPTH_MAX 8                   /* symlinks between archive entries (old docker save) */
#define ID_MAX 65535u                      /* uids/gids an image may use: the sandbox's mapped range */
#define UNPACK_UID ((uid_t)(1u << 28) - 2) /* below every sandbox's range, never a real user */
#define IO_CHUNK (128 * 1024)

static char error_msg[512];

static _Noreturn void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_msg, sizeof(error_msg), fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:s}", "error", error_msg);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s) {
        size_t n = strlen(s);
        (void)!write(1, s, n);
        (void)!write(1, "\n", 1);
    }
    _exit(1);
}

/* --- confinement ------------------------------------------------------------------------------------ */

/* New mount, network, IPC and UTS namespaces; the staging directory (cwd) becomes /. */
static void confine_filesystem(void)
{
    if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
        fail("confine: unshare: %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        fail("confine: make / private: %s", strerror(errno));
    if (mount(".", ".", NULL, MS_BIND, NULL) < 0)
        fail("confine: bind the staging dir: %s", strerror(errno));
    /* The bind is on top of the cwd's old inode: re-enter through the path to stand on the new mount. */
    char cwd[4096];
    if (!getcwd(cwd, sizeof(cwd)) || chdir(cwd) < 0)
        fail("confine: enter the staging dir: %s", strerror(errno));
    if (mount(NULL, ".", NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        fail("confine: remount the staging dir: %s", strerror(errno));
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        fail("confine: pivot_root: %s", strerror(errno));
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        fail("confine: detach the host root: %s", strerror(errno));
}

/* Capabilities an unpacker needs: set any owner (CHOWN), write into directories whatever their modes
 * (DAC_OVERRIDE), set modes, times and setgid bits on files it does not own (FOWNER, FSETID), and set
 * trusted.overlay.opaque (SYS_ADMIN: trusted.* xattrs need it in the initial user namespace). */
#define KEPT_CAPS                                                                                            \
    ((1ULL << CAP_CHOWN) | (1ULL << CAP_DAC_OVERRIDE) | (1ULL << CAP_FOWNER) | (1ULL << CAP_FSETID) |        \
     (1ULL << CAP_SYS_ADMIN))

static void drop_privileges(uint64_t max_file)
{
    for (int cap = 0; cap <= 63; cap++)
        if (!(KEPT_CAPS & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            fail("confine: drop capability %d: %s", cap, strerror(errno));
    /* Not host root: kill(), ptrace() and files of root's own are out of reach even without seccomp. */
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 ||
        setresgid(UNPACK_UID, UNPACK_UID, UNPACK_UID) < 0 ||
        setresuid(UNPACK_UID, UNPACK_UID, UNPACK_UID) < 0)
        fail("confine: change ids: %s", strerror(errno));
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct cd[2] = {
        {.effective = (uint32_t)KEPT_CAPS, .permitted = (uint32_t)KEPT_CAPS},
        {.effective = (uint32_t)(KEPT_CAPS >> 32), .permitted = (uint32_t)(KEPT_CAPS >> 32)},
    };
    if (syscall(SYS_capset, &h, cd) < 0)
        fail("confine: capset: %s", strerror(errno));
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail("confine: no_new_privs: %s", strerror(errno));
    struct rlimit core = {0, 0}, files = {64, 64}, fsize = {max_file, max_file};
    if (setrlimit(RLIMIT_CORE, &core) < 0 || setrlimit(RLIMIT_NOFILE, &files) < 0 ||
        setrlimit(RLIMIT_FSIZE, &fsize) < 0)
        fail("confine: rlimits: %s", strerror(errno));
}

/* Everything else (mount, exec, fork, kill, ptrace, sockets, ioctl, namespaces, BPF...) fails EPERM. */
static const char *const allowed_syscalls[] = {
    "read",         "write",     "readv",       "writev",        "pread64",
    "pwrite64",     "lseek",     "close",       "fstat",         "newfstatat",
    "statx",        "openat",    "openat2",     "mkdirat",       "mknodat",
    "symlinkat",    "linkat",    "unlinkat",    "renameat",      "renameat2",
    "fchownat",     "fchown",    "fchmod",      "fchmodat",      "fchmodat2",
    "utimensat",    "fsetxattr", "fgetxattr",   "flistxattr",    "getdents64",
    "readlinkat",   "fcntl",     "dup",         "dup3",          "brk",
    "mmap",         "munmap",    "mremap",      "madvise",       "mprotect",
    "futex",        "exit",      "exit_group",  "rt_sigaction",  "rt_sigprocmask",
    "rt_sigreturn", "getpid",    "gettid",      "clock_gettime", "getrandom",
    "ftruncate",    "fallocate", "sched_yield", "getuid",        "geteuid",
    "getgid",       "getegid",   "umask",       "fsync",         "fdatasync",
    "sysinfo",      "uname",     "prlimit64",   "sigaltstack",   "restart_syscall",
    "getcwd",
};

static void install_seccomp(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx)
        fail("confine: seccomp_init failed");
    for (size_t i = 0; i < sizeof(allowed_syscalls) / sizeof(allowed_syscalls[0]); i++) {
        int nr = seccomp_syscall_resolve_name(allowed_syscalls[i]);
        if (nr != __NR_SCMP_ERROR && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0)
            fail("confine: seccomp rule for %s", allowed_syscalls[i]);
    }
    int r = seccomp_load(ctx);
    seccomp_release(ctx);
    if (r < 0)
        fail("confine: load seccomp filter: %s", strerror(-r));
}

/* --- helpers ------------------------------------------------------------------------------------------ */

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    static const char x[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = x[d[i] >> 4];
        out[2 * i + 1] = x[d[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char d[32];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) || !EVP_DigestUpdate(ctx, data, len) ||
        !EVP_DigestFinal_ex(ctx, d, &n))
        fail("sha256 failed");
    EVP_MD_CTX_free(ctx);
    hex_of(d, 32, out);
}

static bool is_hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* "sha256:<64 hex>" -> the hex, or fail naming what. */
static const char *digest_hex(const char *digest, const char *what)
{
    if (!digest || strncmp(digest, "sha256:", 7) != 0 || !is_hex64(digest + 7))
        fail("%s: unsupported or malformed digest `%.80s` (only sha256 is accepted)", what,
             digest ? digest : "(none)");
    return digest + 7;
}

/* Normalizes an archive member name into out (no "./", no "//", no trailing "/"); ".." components are
 * resolved lexically for lookups inside the image archive only (never used as a filesystem path). */
static void archive_path_normalize(const char *in, char *out, size_t size)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", in);
    size_t len = 0;
    out[0] = '\0';
    char *save = NULL;
    for (char *c = strtok_r(tmp, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            char *slash = strrchr(out, '/');
            len = slash ? (size_t)(slash - out) : 0;
            out[len] = '\0';
            continue;
        }
        int n = snprintf(out + len, size - len, "%s%s", len ? "/" : "", c);
        if (n < 0 || (size_t)n >= size - len)
            break;
        len += (size_t)n;
    }
}

/* --- first pass: the small members (manifests, configs, index) and links between members --------- */

struct member {
    struct member *next;
    char *name;
    char *data; /* NULL for a symlink */
    size_t len;
    char *link; /* symlink target, resolved to a member name */
};

static struct member *members;

static struct member *member_find(const char *name)
{
    for (struct member *m = members; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

/* The member a name finally designates, following symlinks between members. */
static const char *member_resolve(const char *name)
{
    for (int i = 0; i < LINK_DEPTH_MAX; i++) {
        struct member *m = member_find(name);
        if (!m || !m->link)
            return name;
        name = m->link;
    }
    fail("image archive: too many levels of links at `%.200s`", name);
}

static struct archive *outer_open(int fd)
{
    if (lseek(fd, 0, SEEK_SET) < 0)
        fail("image: the input must be a regular file: %s", strerror(errno));
    struct archive *a = archive_read_new();
    if (!a)
        fail("out of memory");
    archive_read_support_format_tar(a);
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    if (archive_read_open_fd(a, fd, IO_CHUNK) != ARCHIVE_OK)
        fail("image archive: %s", archive_error_string(a));
    return a;
}

static const char *entry_name(struct archive_entry *e)
{
    const char *n = archive_entry_pathname_utf8(e);
    return n ? n : archive_entry_pathname(e);
}

static void first_pass(int fd)
{
    struct archive *a = outer_open(fd);
    struct archive_entry *e;
    size_t kept = 0;
    int r;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
        const char *raw = entry_name(e);
        if (!raw)
            fail("image archive: a member has no name");
        char name[4096];
        archive_path_normalize(raw, name, sizeof(name));
        mode_t type = archive_entry_filetype(e);
        if (type == AE_IFLNK && archive_entry_symlink(e)) {
            char target[8192], resolved[4096];
            const char *t = archive_entry_symlink(e);
            const char *slash = strrchr(name, '/');
            if (t[0] == '/')
                snprintf(target, sizeof(target), "%s", t);
            else
                snprintf(target, sizeof(target), "%.*s/%s", slash ? (int)(slash - name) : 0, name, t);
            archive_path_normalize(target, resolved, sizeof(resolved));
            struct member *m = calloc(1, sizeof(*m));
            m->name = strdup(name);
            m->link = strdup(resolved);
            m->next = members;
            members = m;
        } else if (type == AE_IFREG && archive_entry_size(e) >= 0 &&
                   (uint64_t)archive_entry_size(e) <= JSON_ENTRY_MAX &&
                   kept + (size_t)archive_entry_size(e) <= KEPT_TOTAL_MAX) {
            size_t len = (size_t)archive_entry_size(e);
            struct member *m = calloc(1, sizeof(*m));
            m->name = strdup(name);
            m->data = malloc(len + 1);
            if (!m->name || !m->data)
                fail("out of memory");
            la_ssize_t n = archive_read_data(a, m->data, len);
            if (n < 0 || (size_t)n != len)
                fail("image archive: read `%.200s`: %s", name, n < 0 ? archive_error_string(a) : "short");
            m->data[len] = '\0';
            m->len = len;
            kept += len;
            m->next = members;
            members = m;
        }
    }
    if (r != ARCHIVE_EOF)
        fail("image archive is corrupt or truncated: %s", archive_error_string(a));
    archive_read_free(a);
}

/* --- the image's structure ----------------------------------------------------------------------- */

struct layer {
    char path[4096];   /* member holding the blob */
    char diff_hex[65]; /* sha256 of the uncompressed tar (rootfs.diff_ids) */
    char blob_hex[65]; /* sha256 of the blob as stored, "" when the format names none */
    bool skip;         /* already in sbxd's store: verify only */
    bool done;
    bool absent;         /* skipped and not in the archive (--absent-ok) */
    uint64_t size_bytes; /* file content unpacked */
};

static struct layer layers[LAYERS_MAX];
static size_t n_layers;
static json_t *image_config;

static json_t *member_json(const char *name, const char *expect_hex, const char *what)
{
    struct member *m = member_find(member_resolve(name));
    if (!m || !m->data)
        fail("%s `%.200s` is missing from the archive", what, name);
    if (expect_hex) {
        char got[65];
        sha256_hex(m->data, m->len, got);
        if (strcmp(got, expect_hex) != 0)
            fail("digest mismatch for %s: expected sha256:%s, got sha256:%s", what, expect_hex, got);
    }
    json_error_t je;
    json_t *j = json_loadb(m->data, m->len, JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_object(j))
        fail("%s `%.200s` is not a JSON object%s%s", what, name, j ? "" : ": ", j ? "" : je.text);
    return j;
}

static const char *host_arch(void)
{
#if defined(__x86_64__)
    return "amd64";
#elif defined(__aarch64__)
    return "arm64";
#else
    return "unknown";
#endif
}

/* Sets image_config after checking the platform, and each layer's diff id. */
static void use_config(json_t *config)
{
    const char *os = json_string_value(json_object_get(config, "os"));
    const char *arch = json_string_value(json_object_get(config, "architecture"));
    if (os && strcmp(os, "linux") != 0)
        fail("image is for os `%.40s`, this host runs linux", os);
    if (!arch)
        fail("image config names no architecture");
    if (strcmp(arch, host_arch()) != 0)
        fail("image is for architecture `%.40s`, this host is %s", arch, host_arch());
    json_t *diff_ids = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
    if (!json_is_array(diff_ids) || json_array_size(diff_ids) != n_layers)
        fail("image config lists %zu diff_ids for %zu layers", json_array_size(diff_ids), n_layers);
    for (size_t i = 0; i < n_layers; i++)
        snprintf(layers[i].diff_hex, sizeof(layers[i].diff_hex), "%s",
                 digest_hex(json_string_value(json_array_get(diff_ids, i)), "rootfs.diff_ids"));
    image_config = config;
}

static void add_layer(const char *path, const char *blob_hex)
{
    if (n_layers == LAYERS_MAX)
        fail("image has more than %d layers", LAYERS_MAX);
    struct layer *l = &layers[n_layers++];
    char norm[4096];
    archive_path_normalize(path, norm, sizeof(norm));
    snprintf(l->path, sizeof(l->path), "%s", member_resolve(norm));
    snprintf(l->blob_hex, sizeof(l->blob_hex), "%s", blob_hex ? blob_hex : "");
}

static void parse_docker_save(void)
{
    json_error_t je;
    struct member *m = member_find("manifest.json");
    json_t *man = json_loadb(m->data, m->len, 0, &je);
    if (!json_is_array(man) || json_array_size(man) != 1)
        fail("manifest.json must list exactly one image (it lists %zu)",
             json_is_array(man) ? json_array_size(man) : 0);
    json_t *img = json_array_get(man, 0);
    const char *config_path = json_string_value(json_object_get(img, "Config"));
    json_t *ls = json_object_get(img, "Layers");
    if (!config_path || !json_is_array(ls))
        fail("manifest.json: `Config` or `Layers` missing");
    /* The config is named by its digest: "<hex>.json" (docker < 25) or "blobs/sha256/<hex>". */
    char norm[4096], hex[65] = "";
    archive_path_normalize(config_path, norm, sizeof(norm));
    const char *base = strrchr(norm, '/') ? strrchr(norm, '/') + 1 : norm;
    if (strlen(base) >= 64) {
        char head[65];
        snprintf(head, sizeof(head), "%.64s", base);
        if (is_hex64(head) && (base[64] == '\0' || strcmp(base + 64, ".json") == 0))
            snprintf(hex, sizeof(hex), "%s", head);
    }
    json_t *config = member_json(norm, hex[0] ? hex : NULL, "image config");
    size_t i;
    json_t *v;
    json_array_foreach(ls, i, v)
    {
        const char *p = json_string_value(v);
        if (!p)
            fail("manifest.json: `Layers` must be strings");
        char lp[4096];
        archive_path_normalize(p, lp, sizeof(lp));
        const char *b = NULL;
        if (strncmp(lp, "blobs/sha256/", 13) == 0 && is_hex64(lp + 13))
            b = lp + 13;
        add_layer(lp, b);
    }
    use_config(config);
    json_decref(man);
}

static bool platform_matches(json_t *desc)
{
    json_t *p = json_object_get(desc, "platform");
    if (!p)
        return true;
    const char *os = json_string_value(json_object_get(p, "os"));
    const char *arch = json_string_value(json_object_get(p, "architecture"));
    return (!os || strcmp(os, "linux") == 0) && (!arch || strcmp(arch, host_arch()) == 0);
}

static bool is_index_type(const char *mt)
{
    return mt && (strcmp(mt, "application/vnd.oci.image.index.v1+json") == 0 ||
                  strcmp(mt, "application/vnd.docker.distribution.manifest.list.v2+json") == 0);
}

static void parse_oci_layout(void)
{
    json_t *index = member_json("index.json", NULL, "index.json");
    for (int depth = 0; depth < 4; depth++) {
        json_t *manifests = json_object_get(index, "manifests");
        if (!json_is_array(manifests) || json_array_size(manifests) == 0)
            fail("OCI index lists no manifests");
        json_t *pick = NULL, *d;
        size_t i;
        json_array_foreach(manifests, i, d)
        {
            if (platform_matches(d)) {
                pick = d;
                break;
            }
        }
        if (!pick)
            fail("the image has no manifest for linux/%s", host_arch());
        const char *hex = digest_hex(json_string_value(json_object_get(pick, "digest")), "manifest");
        char path[128];
        snprintf(path, sizeof(path), "blobs/sha256/%s", hex);
        json_t *m = member_json(path, hex, "manifest");
        const char *mt = json_string_value(json_object_get(m, "mediaType"));
        if (!mt)
            mt = json_string_value(json_object_get(pick, "mediaType"));
        json_decref(index);
        if (is_index_type(mt)) {
            index = m;
            continue;
        }
        json_t *cd = json_object_get(m, "config"), *ls = json_object_get(m, "layers");
        if (!json_is_object(cd) || !json_is_array(ls))
            fail("manifest: `config` or `layers` missing");
        const char *chex = digest_hex(json_string_value(json_object_get(cd, "digest")), "config");
        snprintf(path, sizeof(path), "blobs/sha256/%s", chex);
        json_t *config = member_json(path, chex, "image config");
        json_array_foreach(ls, i, d)
        {
            const char *lmt = json_string_value(json_object_get(d, "mediaType"));
            if (lmt && (strstr(lmt, "nondistributable") || strstr(lmt, "foreign")))
                fail("layer media type `%.100s` is not supported", lmt);
            const char *lhex = digest_hex(json_string_value(json_object_get(d, "digest")), "layer");
            snprintf(path, sizeof(path), "blobs/sha256/%s", lhex);
            add_layer(path, lhex);
        }
        use_config(config);
        json_decref(m);
        return;
    }
    fail("OCI index nests too deeply");
}

/* --- second pass: each layer blob -> decompress -> tar -> files ------------------------------------ */

struct blob_stream {
    struct archive *outer;
    EVP_MD_CTX *md;
    char buf[IO_CHUNK];
};

static la_ssize_t blob_read(struct archive *a, void *ud, const void **ret)
{
    struct blob_stream *s = ud;
    la_ssize_t n = archive_read_data(s->outer, s->buf, sizeof(s->buf));
    if (n < 0) {
        archive_set_error(a, EIO, "image archive: %s", archive_error_string(s->outer));
        return -1;
    }
    if (n > 0)
        EVP_DigestUpdate(s->md, s->buf, (size_t)n);
    *ret = s->buf;
    return n;
}

struct tar_stream {
    struct archive *raw;
    bool raw_eof;
    EVP_MD_CTX *md;
    uint64_t bytes, max;
    char buf[IO_CHUNK];
};

static la_ssize_t tar_read(struct archive *a, void *ud, const void **ret)
{
    struct tar_stream *s = ud;
    if (s->raw_eof)
        return 0;
    la_ssize_t n = archive_read_data(s->raw, s->buf, sizeof(s->buf));
    if (n < 0) {
        archive_set_error(a, EIO, "decompress: %s", archive_error_string(s->raw));
        return -1;
    }
    if (n == 0)
        s->raw_eof = true;
    s->bytes += (uint64_t)n;
    if (s->bytes > s->max) {
        archive_set_error(a, EFBIG, "layer is larger than the limit of %llu bytes uncompressed",
                          (unsigned long long)s->max);
        return -1;
    }
    EVP_DigestUpdate(s->md, s->buf, (size_t)n);
    *ret = s->buf;
    return n;
}

struct extract {
    int layer_fd; /* -1: verify only */
    uint64_t entries, max_entries, content, max_bytes;
    const char *layer; /* for messages */
};

#define RESOLVE_STRICT (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)

static int open_strict(int dirfd, const char *path, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = RESOLVE_STRICT};
    int fd;
    do
        fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* Checks an entry name and splits it into dir components and a base name; returns the count of
 * components in comps (the last one is the base), 0 for the layer's root. */
static size_t split_entry(const char *name, char *buf, size_t size, char **comps, size_t max)
{
    if (name[0] == '/')
        fail("entry `%.200s` has an absolute path", name);
    if (strlen(name) >= size)
        fail("entry name too long: `%.100s...`", name);
    snprintf(buf, size, "%s", name);
    size_t n = 0;
    char *save = NULL;
    for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0)
            fail("entry `%.200s` has a `..` component", name);
        if (strlen(c) > 255)
            fail("entry `%.200s` has a component longer than 255 bytes", name);
        if (n == max)
            fail("entry `%.200s` is nested too deeply", name);
        comps[n++] = c;
    }
    return n;
}

/* The directory holding comps[0..n-1] under the layer's root, made (0755, root) where missing. */
static int open_dir_chain(struct extract *x, char **comps, size_t n, const char *name)
{
    int fd = open_strict(x->layer_fd, ".", O_PATH | O_DIRECTORY);
    if (fd < 0)
        fail("open the layer dir: %s", strerror(errno));
    for (size_t i = 0; i < n; i++) {
        int next = open_strict(fd, comps[i], O_PATH | O_DIRECTORY);
        if (next < 0 && errno == ENOENT) {
            if (mkdirat(fd, comps[i], 0755) < 0 && errno != EEXIST)
                fail("entry `%.200s`: create its parent: %s", name, strerror(errno));
            (void)fchownat(fd, comps[i], 0, 0, AT_SYMLINK_NOFOLLOW);
            next = open_strict(fd, comps[i], O_PATH | O_DIRECTORY);
        }
        if (next < 0) {
            if (errno == ELOOP || errno == EXDEV)
                fail("entry `%.200s` goes through a symlink (`%.100s`): refused", name, comps[i]);
            if (errno == ENOTDIR)
                fail("entry `%.200s`: `%.100s` is not a directory", name, comps[i]);
            fail("entry `%.200s`: open `%.100s`: %s", name, comps[i], strerror(errno));
        }
        close(fd);
        fd = next;
    }
    return fd;
}

/* Removes what the layer already has at base (an earlier entry of the same name). Returns 1 when an
 * existing directory is kept because the new entry is a directory too. */
static int replace_existing(int dirfd, const char *base, bool new_is_dir, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        if (new_is_dir)
            return 1;
        if (unlinkat(dirfd, base, AT_REMOVEDIR) < 0)
            fail("entry `%.200s` replaces a non-empty directory of the same layer", name);
        return 0;
    }
    if (unlinkat(dirfd, base, 0) < 0)
        fail("entry `%.200s`: remove the earlier entry: %s", name, strerror(errno));
    return 0;
}

static void check_ids(struct archive_entry *e, const char *name)
{
    la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
    if (uid < 0 || gid < 0 || uid > ID_MAX || gid > ID_MAX)
        fail("entry `%.200s` is owned by %lld:%lld, outside 0..%u", name, (long long)uid, (long long)gid,
             ID_MAX);
}

static void set_meta(int dirfd, const char *base, struct archive_entry *e, bool is_link, const char *name)
{
    if (fchownat(dirfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) <
        0)
        fail("entry `%.200s`: chown: %s", name, strerror(errno));
    if (!is_link && fchmodat(dirfd, base, archive_entry_perm(e) & 07777, 0) < 0)
        fail("entry `%.200s`: chmod: %s", name, strerror(errno));
    struct timespec ts[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                             {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
    (void)utimensat(dirfd, base, ts, AT_SYMLINK_NOFOLLOW);
}

static void write_file(struct archive *tar, int dirfd, const char *base, struct archive_entry *e,
                       struct extract *x, const char *name)
{
    la_int64_t size = archive_entry_size(e);
    if (size < 0 || (uint64_t)size > x->max_bytes || x->content + (uint64_t)size > x->max_bytes)
        fail("layer %s is larger than the limit of %llu bytes", x->layer, (unsigned long long)x->max_bytes);
    x->content += (uint64_t)size;
    int fd = openat(dirfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        fail("entry `%.200s`: create: %s", name, strerror(errno));
    const void *buf;
    size_t len;
    la_int64_t off;
    int r;
    while ((r = archive_read_data_block(tar, &buf, &len, &off)) == ARCHIVE_OK) {
        if (off < 0 || (uint64_t)off + len > (uint64_t)size)
            fail("entry `%.200s`: data beyond its size", name);
        for (size_t done = 0; done < len;) {
            ssize_t n = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                fail("entry `%.200s`: write: %s", name, n < 0 ? strerror(errno) : "short write");
            done += (size_t)n;
        }
    }
    if (r != ARCHIVE_EOF)
        fail("layer %s is corrupt or truncated at `%.200s`: %s", x->layer, name, archive_error_string(tar));
    if (ftruncate(fd, size) < 0)
        fail("entry `%.200s`: size: %s", name, strerror(errno));
    close(fd);
}

static void apply_entry(struct archive *tar, struct archive_entry *e, struct extract *x)
{
    const char *name = entry_name(e);
    if (!name)
        fail("layer %s: an entry has no name", x->layer);
    char buf[4096], *comps[256];
    size_t n = split_entry(name, buf, sizeof(buf), comps, 256);
    if (++x->entries > x->max_entries)
        fail("layer %s has more than %llu entries", x->layer, (unsigned long long)x->max_entries);
    if (n == 0)
        return; /* the layer's root: its metadata is ours */
    check_ids(e, name);
    mode_t type = archive_entry_filetype(e);
    const char *hardlink =
        archive_entry_hardlink_utf8(e) ? archive_entry_hardlink_utf8(e) : archive_entry_hardlink(e);
    const char *base = comps[n - 1];
    if (x->layer_fd < 0) {
        /* Verify only: the names are still checked, so an image is judged the same either way. */
        if (type == AE_IFCHR || type == AE_IFBLK)
            fail("entry `%.200s` is a device node: refused", name);
        if (type == AE_IFREG && !hardlink) {
            la_int64_t size = archive_entry_size(e);
            if (size < 0 || x->content + (uint64_t)size > x->max_bytes)
                fail("layer %s is larger than the limit of %llu bytes", x->layer,
                     (unsigned long long)x->max_bytes);
            x->content += (uint64_t)size;
        }
        return;
    }
    int dirfd = open_dir_chain(x, comps, n - 1, name);

    if (strncmp(base, ".wh.", 4) == 0) {
        if (strcmp(base, ".wh..wh..opq") == 0) {
            int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0 || fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0) < 0)
                fail("entry `%.200s`: mark the directory opaque: %s", name, strerror(errno));
            close(fd);
        } else if (strncmp(base, ".wh..wh.", 8) == 0) {
            /* aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless here */
        } else {
            const char *target = base + 4;
            if (!*target || strcmp(target, ".") == 0 || strcmp(target, "..") == 0)
                fail("entry `%.200s` is a malformed whiteout", name);
            replace_existing(dirfd, target, false, name);
            if (mknodat(dirfd, target, S_IFCHR | 0000, makedev(0, 0)) < 0 ||
                fchownat(dirfd, target, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
                fail("entry `%.200s`: create the whiteout: %s", name, strerror(errno));
        }
        close(dirfd);
        return;
    }

    if (hardlink) {
        char tbuf[4096], *tcomps[256];
        size_t tn = split_entry(hardlink, tbuf, sizeof(tbuf), tcomps, 256);
        if (tn == 0)
            fail("entry `%.200s` is a hard link to the layer's root", name);
        int tdir = open_dir_chain(x, tcomps, tn - 1, hardlink);
        struct stat st;
        if (fstatat(tdir, tcomps[tn - 1], &st, AT_SYMLINK_NOFOLLOW) < 0)
            fail("entry `%.200s` links to `%.200s`, which is not in this layer", name, hardlink);
        if (S_ISDIR(st.st_mode))
            fail("entry `%.200s` is a hard link to a directory", name);
        replace_existing(dirfd, base, false, name);
        if (linkat(tdir, tcomps[tn - 1], dirfd, base, 0) < 0)
            fail("entry `%.200s`: link to `%.200s`: %s", name, hardlink, strerror(errno));
        close(tdir);
        close(dirfd);
        return;
    }

    switch (type) {
    case AE_IFDIR:
        if (!replace_existing(dirfd, base, true, name) && mkdirat(dirfd, base, 0700) < 0)
            fail("entry `%.200s`: mkdir: %s", name, strerror(errno));
        set_meta(dirfd, base, e, false, name);
        break;
    case AE_IFREG:
        replace_existing(dirfd, base, false, name);
        write_file(tar, dirfd, base, e, x, name);
        set_meta(dirfd, base, e, false, name);
        break;
    case AE_IFLNK: {
        const char *target =
            archive_entry_symlink_utf8(e) ? archive_entry_symlink_utf8(e) : archive_entry_symlink(e);
        if (!target || !*target)
            fail("entry `%.200s` is a symlink without a target", name);
        replace_existing(dirfd, base, false, name);
        /* The target is only text: nothing here ever follows it (every lookup refuses symlinks). */
        if (symlinkat(target, dirfd, base) < 0)
            fail("entry `%.200s`: symlink: %s", name, strerror(errno));
        set_meta(dirfd, base, e, true, name);
        break;
    }
    case AE_IFIFO:
        replace_existing(dirfd, base, false, name);
        if (mknodat(dirfd, base, S_IFIFO | 0600, 0) < 0)
            fail("entry `%.200s`: mkfifo: %s", name, strerror(errno));
        set_meta(dirfd, base, e, false, name);
        break;
    case AE_IFCHR:
    case AE_IFBLK:
        fail("entry `%.200s` is a device node: refused", name);
    case AE_IFSOCK:
        break; /* sockets are not content */
    default:
        fail("entry `%.200s` has an unknown type", name);
    }
    close(dirfd);
}

static void finish_md(EVP_MD_CTX *md, char out[65])
{
    unsigned char d[32];
    unsigned int n = 0;
    if (!EVP_DigestFinal_ex(md, d, &n))
        fail("sha256 failed");
    hex_of(d, 32, out);
}

static void process_layer(struct archive *outer, struct layer *l, bool extract, uint64_t max_bytes,
                          uint64_t max_entries)
{
    struct blob_stream *bs = calloc(1, sizeof(*bs));
    struct tar_stream *ts = calloc(1, sizeof(*ts));
    if (!bs || !ts)
        fail("out of memory");
    bs->outer = outer;
    bs->md = EVP_MD_CTX_new();
    ts->md = EVP_MD_CTX_new();
    ts->max = max_bytes + (max_bytes >> 4) + (1u << 20); /* tar headers and padding on top of content */
    if (!bs->md || !ts->md || !EVP_DigestInit_ex(bs->md, EVP_sha256(), NULL) ||
        !EVP_DigestInit_ex(ts->md, EVP_sha256(), NULL))
        fail("sha256 init failed");

    struct archive *raw = archive_read_new();
    archive_read_support_filter_gzip(raw);
    archive_read_support_filter_zstd(raw);
    archive_read_support_format_raw(raw);
    if (archive_read_open(raw, bs, NULL, blob_read, NULL) != ARCHIVE_OK)
        fail("layer sha256:%s: %s", l->diff_hex, archive_error_string(raw));
    struct archive_entry *e;
    int r = archive_read_next_header(raw, &e);
    if (r == ARCHIVE_EOF)
        ts->raw_eof = true; /* an empty blob */
    else if (r != ARCHIVE_OK)
        fail("layer sha256:%s: %s", l->diff_hex, archive_error_string(raw));
    ts->raw = raw;

    char partname[80];
    snprintf(partname, sizeof(partname), "%s.part", l->diff_hex);
    struct extract x = {.layer_fd = -1, .max_entries = max_entries, .max_bytes = max_bytes, .layer = l->path};
    if (extract) {
        if (mkdirat(AT_FDCWD, partname, 0755) < 0)
            fail("create the layer dir: %s", strerror(errno));
        x.layer_fd = open_strict(AT_FDCWD, partname, O_RDONLY | O_DIRECTORY);
        if (x.layer_fd < 0)
            fail("open the layer dir: %s", strerror(errno));
        if (fchown(x.layer_fd, 0, 0) < 0)
            fail("chown the layer dir: %s", strerror(errno));
    }
    {
        struct archive *tar = archive_read_new();
        archive_read_support_format_tar(tar);
        if (archive_read_open(tar, ts, NULL, tar_read, NULL) != ARCHIVE_OK)
            fail("layer %s: %s", l->path, archive_error_string(tar));
        while ((r = archive_read_next_header(tar, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN)
            apply_entry(tar, e, &x);
        if (r != ARCHIVE_EOF && !(r == ARCHIVE_FATAL && ts->bytes == 0 && ts->raw_eof))
            fail("layer %s is corrupt or truncated: %s", l->path, archive_error_string(tar));
        archive_read_free(tar);
    }
    /* The digests cover the whole streams, padding after the tar's end included. */
    const void *p;
    while (tar_read(raw, ts, &p) > 0)
        ;
    archive_read_free(raw);
    while (blob_read(outer, bs, &p) > 0)
        ;
    char diff[65], blob[65];
    finish_md(ts->md, diff);
    finish_md(bs->md, blob);
    if (l->blob_hex[0] && strcmp(blob, l->blob_hex) != 0)
        fail("digest mismatch for layer blob: expected sha256:%s, got sha256:%s", l->blob_hex, blob);
    if (strcmp(diff, l->diff_hex) != 0)
        fail("digest mismatch for layer (diff_id): expected sha256:%s, got sha256:%s", l->diff_hex, diff);
    if (extract) {
        close(x.layer_fd);
        if (renameat(AT_FDCWD, partname, AT_FDCWD, l->diff_hex) < 0)
            fail("move the layer into place: %s", strerror(errno));
    }
    l->size_bytes = x.content;
    EVP_MD_CTX_free(bs->md);
    EVP_MD_CTX_free(ts->md);
    free(bs);
    free(ts);
}

static bool present(const char *hex)
{
    struct stat st;
    return fstatat(AT_FDCWD, hex, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void second_pass(int fd, char **skip, size_t n_skip, bool absent_ok, uint64_t max_bytes,
                        uint64_t max_entries)
{
    for (size_t i = 0; i < n_layers; i++)
        for (size_t k = 0; k < n_skip; k++)
            if (strcmp(layers[i].diff_hex, skip[k]) == 0)
                layers[i].skip = true;
    struct archive *a = outer_open(fd);
    struct archive_entry *e;
    int r;
    size_t left = n_layers;
    while (left && ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN)) {
        char name[4096];
        archive_path_normalize(entry_name(e) ? entry_name(e) : "", name, sizeof(name));
        if (archive_entry_filetype(e) != AE_IFREG)
            continue;
        struct layer *first = NULL;
        for (size_t i = 0; i < n_layers; i++) {
            if (layers[i].done || strcmp(layers[i].path, name) != 0)
                continue;
            if (!first) {
                first = &layers[i];
                bool extract = !layers[i].skip && !present(layers[i].diff_hex);
                process_layer(a, first, extract, max_bytes, max_entries);
            } else if (strcmp(layers[i].diff_hex, first->diff_hex) != 0 ||
                       strcmp(layers[i].blob_hex, first->blob_hex) != 0) {
                fail("layer `%.200s` is listed with two different digests", name);
            }
            layers[i].size_bytes = first->size_bytes;
            layers[i].done = true;
            left--;
        }
    }
    if (left) {
        for (size_t i = 0; i < n_layers; i++)
            if (!layers[i].done && layers[i].skip && absent_ok)
                layers[i].done = layers[i].absent = true;
        for (size_t i = 0; i < n_layers; i++)
            if (!layers[i].done)
                fail("layer `%.200s` is missing from the archive%s%s", layers[i].path,
                     archive_errno(a) ? ": " : "", archive_errno(a) ? archive_error_string(a) : "");
    }
    archive_read_free(a);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"max-layer-bytes", required_argument, NULL, 'b'},
        {"max-entries", required_argument, NULL, 'n'},
        {"skip", required_argument, NULL, 's'},
        {"absent-ok", no_argument, NULL, 'a'},
        {},
    };
    uint64_t max_bytes = 8ULL << 30, max_entries = 1000000;
    char **skip = calloc((size_t)argc, sizeof(char *));
    size_t n_skip = 0;
    bool absent_ok = false;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
        switch (c) {
        case 'b':
            max_bytes = strtoull(optarg, NULL, 10);
            break;
        case 'n':
            max_entries = strtoull(optarg, NULL, 10);
            break;
        case 'a':
            absent_ok = true;
            break;
        case 's':
            if (!is_hex64(optarg))
                return 2;
            skip[n_skip++] = optarg;
            break;
        default:
            return 2;
        }
    }
    if (optind != argc || max_bytes == 0 || max_entries == 0)
        return 2;

    /* Before the first byte of input is parsed. A file over RLIMIT_FSIZE then fails with EFBIG. */
    signal(SIGXFSZ, SIG_IGN);
    confine_filesystem();
    drop_privileges(max_bytes + 1);
    install_seccomp();

    first_pass(0);
    if (member_find("manifest.json") && member_find("manifest.json")->data)
        parse_docker_save();
    else if (member_find("index.json") && member_find("index.json")->data)
        parse_oci_layout();
    else
        fail("not an image: the archive has neither manifest.json (docker save) nor index.json (OCI layout)");
    second_pass(0, skip, n_skip, absent_ok, max_bytes, max_entries);

    json_t *ls = json_array();
    for (size_t i = 0; i < n_layers; i++) {
        char digest[80];
        snprintf(digest, sizeof(digest), "sha256:%s", layers[i].diff_hex);
        json_array_append_new(ls, json_pack("{s:s, s:I, s:b}", "diff_id", digest, "size_bytes",
                                            (json_int_t)layers[i].size_bytes, "absent", layers[i].absent));
    }
    json_t *cfg = json_object_get(image_config, "config");
    json_t *out = json_pack("{s:o, s:o, s:s?}", "layers", ls, "config",
                            json_is_object(cfg) ? json_incref(cfg) : json_object(), "architecture",
                            json_string_value(json_object_get(image_config, "architecture")));
    char *s = json_dumps(out, JSON_COMPACT);
    if (!s)
        fail("out of memory");
    size_t len = strlen(s);
    for (size_t done = 0; done < len;) {
        ssize_t n = write(1, s + done, len - done);
        if (n <= 0)
            _exit(1);
        done += (size_t)n;
    }
    (void)!write(1, "\n", 1);
    _exit(0);
}
