/* The web console's static files at /console/ and the WebSocket subprotocol that carries a browser's API
 * key. The files are read from one directory (sbxd --console-dir) with openat2(RESOLVE_BENEATH): a path
 * with a dot segment, a hidden name or a symlink out of the directory never reaches a file outside it. */
#include "api/console.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api/codec.h"
#include "base/buf.h"
#include "base/cleanup.h"
#include "base/util.h"

#define CONSOLE_PREFIX "/console/"
#define CONSOLE_FILE_MAX (64u << 20) /* larger than any bundle the console builds */
#define CONSOLE_PATH_MAX 512
#define WS_KEY_PROTOCOL "sbx.key."

static char *console_dir; /* NULL: the default, resolved on each request (cheap, and follows a rebuild) */

void api_console_set_dir(const char *dir)
{
    free(console_dir);
    console_dir = dir ? xstrdup(dir) : NULL;
}

/* The directory the files come from: --console-dir, else <dir of sbxd>/../console. */
static char *resolve_dir(void)
{
    if (console_dir)
        return xstrdup(console_dir);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0)
        return NULL;
    self[n] = '\0';
    return xasprintf("%s/../console", dirname(self));
}

static const struct {
    const char *ext;
    const char *type;
} content_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"ico", "image/x-icon"},
    {"txt", "text/plain; charset=utf-8"},
    {"woff2", "font/woff2"},
    {"woff", "font/woff"},
    {"wasm", "application/wasm"},
};

static const char *content_type_of(const char *path)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < ELEMENTSOF(content_types); i++)
            if (strcmp(dot + 1, content_types[i].ext) == 0)
                return content_types[i].type;
    return "application/octet-stream";
}

/* A relative path of plain segments: no empty, "." or ".." segment, no hidden name, no backslash or
 * control byte. (openat2 below would keep even those inside the directory; refusing them early gives a
 * clear answer and keeps dot files such as .vite/ private.) */
static bool path_is_plain(const char *rel)
{
    size_t len = strlen(rel);
    if (len == 0 || len > CONSOLE_PATH_MAX)
        return false;
    const char *seg = rel;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 || seg[0] == '.')
            return false;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)seg[i] < 0x20 || seg[i] == 0x7f || seg[i] == '\\')
                return false;
        if (!end)
            return true;
        seg = end + 1;
    }
}

static void respond_not_built(struct http_request *req, const char *dir)
{
    http_respond_error(req, 404, "not_found",
                       "the web console is not built: `%s` has no index.html (run `npm ci && npm run build` "
                       "in web/, or start sbxd with --console-dir DIR)",
                       dir);
}

static void serve(struct http_request *req, const char *rel)
{
    _cleanup_free_ char *dir = resolve_dir();
    if (!dir)
        return http_respond_error(req, 500, "internal", "cannot find sbxd's own path");
    _cleanup_close_ int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || faccessat(dfd, "index.html", R_OK, 0) < 0)
        return respond_not_built(req, dir);

    struct open_how how = {
        .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    _cleanup_close_ int fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return http_respond_error(req, 404, "not_found", "no console file `%s`", rel);
    if ((uint64_t)st.st_size > CONSOLE_FILE_MAX)
        return http_respond_error(req, 500, "internal", "console file `%s` is too large", rel);

    /* Vite names everything under assets/ by its content hash: cache it for good. index.html (and the
     * rest) is revalidated each time, cheaply, against its ETag. */
    char etag[64];
    snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.st_size,
             (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec);
    http_response_header(req, "ETag", etag);
    http_response_header(req, "Cache-Control",
                         strncmp(rel, "assets/", 7) == 0 ? "public, max-age=31536000, immutable"
                                                         : "no-cache");
    http_response_header(req, "X-Content-Type-Options", "nosniff");
    const char *type = content_type_of(rel);
    if (strncmp(type, "text/html", 9) == 0) {
        /* xterm.js adds <style> elements and style attributes, hence 'unsafe-inline' for styles only. */
        http_response_header(req, "Content-Security-Policy",
                             "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                             "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                             "base-uri 'none'; form-action 'self'");
        http_response_header(req, "X-Frame-Options", "DENY");
        http_response_header(req, "Referrer-Policy", "no-referrer");
    }
    const char *inm = http_header_get(req, "If-None-Match");
    if (inm && strcmp(inm, etag) == 0)
        return http_respond(req, 304, NULL, NULL, 0);

    _cleanup_free_ char *body = xmalloc((size_t)st.st_size + 1);
    ssize_t n = read_full(fd, body, (size_t)st.st_size);
    if (n < 0 || n != st.st_size)
        return http_respond_error(req, 500, "internal", "read console file `%s`", rel);
    http_respond(req, 200, type, body, (size_t)n);
}

bool api_console_dispatch(struct http_request *req)
{
    const char *path = http_request_path(req);
    if (strcmp(path, "/console") != 0 && strncmp(path, CONSOLE_PREFIX, strlen(CONSOLE_PREFIX)) != 0)
        return false;
    enum http_method m = http_request_method_id(req);
    if (m != HTTP_METHOD_GET && m != HTTP_METHOD_HEAD) {
        http_response_header(req, "Allow", "GET, HEAD");
        http_respond_error(req, 405, "method_not_allowed", "use GET");
        return true;
    }
    if (strcmp(path, "/console") == 0) {
        http_response_header(req, "Location", CONSOLE_PREFIX);
        http_respond(req, 301, NULL, NULL, 0);
        return true;
    }
    const char *rel = path + strlen(CONSOLE_PREFIX);
    if (*rel == '\0')
        rel = "index.html";
    if (!path_is_plain(rel))
        http_respond_error(req, 400, "invalid_argument",
                           "bad console path: no `.`, `..`, empty or hidden segments");
    else
        serve(req, rel);
    return true;
}

/* The comma-separated entries of a Sec-WebSocket-Protocol header, surrounding blanks trimmed. */
static bool next_protocol(const char **p, const char **ret, size_t *ret_len)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == ',')
        s++;
    if (!*s)
        return false;
    const char *e = s;
    while (*e && *e != ',')
        e++;
    *p = e;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *ret = s;
    *ret_len = (size_t)(e - s);
    return true;
}

const char *api_console_ws_key(struct http_request *req)
{
    const char *h = http_header_get(req, "Sec-WebSocket-Protocol");
    if (!h || !http_request_is_websocket(req))
        return NULL;
    bool offers_sbx = false;
    const char *enc = NULL, *p = h, *s;
    size_t enc_len = 0, n;
    while (next_protocol(&p, &s, &n)) {
        if (n == 3 && memcmp(s, "sbx", 3) == 0)
            offers_sbx = true;
        else if (n > strlen(WS_KEY_PROTOCOL) && memcmp(s, WS_KEY_PROTOCOL, strlen(WS_KEY_PROTOCOL)) == 0) {
            enc = s + strlen(WS_KEY_PROTOCOL);
            enc_len = n - strlen(WS_KEY_PROTOCOL);
        }
    }
    if (!offers_sbx || !enc || enc_len > 1024)
        return NULL;
    /* base64url to the standard alphabet, then decode. */
    char *std = http_request_alloc(req, enc_len + 1);
    for (size_t i = 0; i < enc_len; i++)
        std[i] = enc[i] == '-' ? '+' : enc[i] == '_' ? '/' : enc[i];
    std[enc_len] = '\0';
    uint8_t *key = http_request_alloc(req, enc_len * 3 / 4 + 4);
    long len = base64_decode(std, enc_len, key);
    if (len <= 0 || memchr(key, '\0', (size_t)len))
        return NULL;
    key[len] = '\0';
    http_response_header(req, "Sec-WebSocket-Protocol", "sbx");
    return (const char *)key;
}
