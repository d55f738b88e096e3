/* Small self-contained helpers: SHA-1 and base64 for the WebSocket handshake, %-decoding, the router. */
#include <errno.h>
#include <string.h>

#include "http/http_internal.h"

/* --- SHA-1 (FIPS 180-4); only used for Sec-WebSocket-Accept, not for security --------------------- */

struct sha1 {
    uint32_t h[5];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
};

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(struct sha1 *s, const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)
            f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40)
            f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60)
            f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else
            f = b ^ c ^ d, k = 0xCA62C1D6;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e;
}

static void sha1_init(struct sha1 *s)
{
    *s = (struct sha1){.h = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}};
}

static void sha1_update(struct sha1 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->len += len;
    while (len > 0) {
        size_t take = 64 - s->n < len ? 64 - s->n : len;
        memcpy(s->buf + s->n, p, take);
        s->n += take, p += take, len -= take;
        if (s->n == 64) {
            sha1_block(s, s->buf);
            s->n = 0;
        }
    }
}

static void sha1_final(struct sha1 *s, uint8_t out[20])
{
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80;
    sha1_update(s, &pad, 1);
    pad = 0;
    while (s->n != 56)
        sha1_update(s, &pad, 1);
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(s, lenb, 8);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
}

void http_ws_accept_key(const char *key, char ret[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    struct sha1 s;
    uint8_t d[21] = {0};
    sha1_init(&s);
    sha1_update(&s, key, strlen(key));
    sha1_update(&s, guid, sizeof(guid) - 1);
    sha1_final(&s, d);
    /* 20 bytes -> 28 base64 characters, the last group padded with one '='. */
    char *o = ret;
    for (int i = 0; i < 21; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *o++ = b64[(v >> 18) & 63];
        *o++ = b64[(v >> 12) & 63];
        *o++ = b64[(v >> 6) & 63];
        *o++ = b64[v & 63];
    }
    ret[27] = '=';
    ret[28] = '\0';
}

/* --- %-decoding ----------------------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long http_percent_decode(const char *src, size_t len, char *dst, bool plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = src[i];
        if (ch == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -EINVAL;
            hi = hexval(src[i + 1]);
            lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            ch = (char)(hi << 4 | lo);
            i += 2;
        } else if (ch == '+' && plus_is_space)
            ch = ' ';
        if (ch == '\0')
            return -EINVAL;
        dst[o++] = ch;
    }
    dst[o] = '\0';
    return (long)o;
}

/* --- router ----------------------------------------------------------------------------------------- */

/* Matches path against pattern; fills caps (arena strings). */
static bool route_match(struct http_request *req, const char *pattern, const char *path, const char **caps,
                        size_t *n_caps)
{
    const char *p = pattern, *s = path;
    *n_caps = 0;
    for (;;) {
        if (*p == '/' && *s == '/') {
            p++, s++;
            continue;
        }
        if (p[0] == '*' && p[1] == '*' && p[2] == '\0') {
            if (*n_caps < HTTP_ROUTE_MAX_CAPTURES)
                caps[(*n_caps)++] = http_request_strdup(req, s);
            return true;
        }
        if (*p == '*') {
            const char *e = strchrnul(s, '/');
            if (e == s || *n_caps >= HTTP_ROUTE_MAX_CAPTURES)
                return false;
            char *cap = http_request_alloc(req, (size_t)(e - s) + 1);
            memcpy(cap, s, (size_t)(e - s));
            cap[e - s] = '\0';
            caps[(*n_caps)++] = cap;
            p++, s = e;
            continue;
        }
        const char *pe = strchrnul(p, '/'), *se = strchrnul(s, '/');
        if (pe - p != se - s || memcmp(p, s, (size_t)(pe - p)) != 0)
            return false;
        p = pe, s = se;
        if (!*p && !*s)
            return true;
        if (!*p || !*s)
            return false;
    }
}

int http_route_dispatch(struct http_request *req, const struct http_route *routes, size_t n, void *userdata)
{
    const char *path = http_request_path(req), *method = http_request_method(req);
    struct sbx_buf allow = SBX_BUF_INIT;
    bool known = false;
    for (size_t i = 0; i < n; i++) {
        const char *caps[HTTP_ROUTE_MAX_CAPTURES + 1] = {0};
        size_t nc;
        if (!route_match(req, routes[i].pattern, path, caps, &nc))
            continue;
        if (routes[i].method && strcmp(routes[i].method, method) != 0) {
            sbx_buf_appendf(&allow, "%s%s", known ? ", " : "", routes[i].method);
            known = true;
            continue;
        }
        const char **kept = http_request_alloc(req, sizeof(caps));
        memcpy(kept, caps, sizeof(caps));
        sbx_buf_done(&allow);
        routes[i].handler(req, kept, userdata);
        return (int)i;
    }
    if (known) {
        http_response_header(req, "Allow", sbx_buf_cstr(&allow));
        sbx_buf_done(&allow);
        http_respond_error(req, 405, "method_not_allowed", "%s is not allowed on %s", method, path);
        return -EPERM;
    }
    sbx_buf_done(&allow);
    http_respond_error(req, 404, "not_found", "no route for %s %s", method, path);
    return -ENOENT;
}
