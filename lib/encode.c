/* libsbx internals: growable buffer, URL escaping, base64 decoding and UTF-8 validation. */
#include "encode.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lbuf_reserve(struct lbuf *b, size_t extra)
{
    if (extra >= SIZE_MAX - b->len - 1)
        return -ENOMEM;
    size_t need = b->len + extra + 1; /* room for the trailing NUL */
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->base, cap);
    if (!p)
        return -ENOMEM;
    b->base = p;
    b->cap = cap;
    return 0;
}

int lbuf_append(struct lbuf *b, const void *data, size_t len)
{
    int r = lbuf_reserve(b, len);
    if (r < 0)
        return r;
    if (len)
        memcpy(b->base + b->len, data, len);
    b->len += len;
    b->base[b->len] = 0;
    return 0;
}

int lbuf_appends(struct lbuf *b, const char *s)
{
    return lbuf_append(b, s, strlen(s));
}

int lbuf_printf(struct lbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    int r = lbuf_reserve(b, (size_t)n);
    if (r < 0)
        return r;
    va_start(ap, fmt);
    vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void lbuf_reset(struct lbuf *b)
{
    b->len = 0;
    if (b->base)
        b->base[0] = 0;
}

void lbuf_done(struct lbuf *b)
{
    free(b->base);
    *b = (struct lbuf)LBUF_INIT;
}

char *lbuf_steal(struct lbuf *b)
{
    if (!b->base && lbuf_reserve(b, 0) < 0)
        return NULL;
    b->base[b->len] = 0;
    char *p = b->base;
    *b = (struct lbuf)LBUF_INIT;
    return p;
}

int url_escape(struct lbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    int r = lbuf_reserve(b, n * 3);
    if (r < 0)
        return r;
    char *o = b->base + b->len;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '.' || ch == '_' || ch == '~') {
            *o++ = (char)ch;
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    b->len = (size_t)(o - b->base);
    b->base[b->len] = 0;
    return 0;
}

static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

int base64_decode_append(struct lbuf *out, const char *in, size_t len)
{
    while (len > 0 && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -EINVAL;
    int r = lbuf_reserve(out, len / 4 * 3 + 3);
    if (r < 0)
        return r;
    unsigned char *o = (unsigned char *)out->base + out->len;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (unsigned char)(acc >> bits);
        }
    }
    out->len = (size_t)((char *)o - out->base);
    out->base[out->len] = 0;
    return 0;
}

bool utf8_text_valid(const void *data, size_t len)
{
    const unsigned char *p = data, *end = p + len;
    while (p < end) {
        unsigned char c = *p;
        if (c == 0)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if ((size_t)(end - p) <= n)
            return false;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}
