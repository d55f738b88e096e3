#include "base/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

char *sbx_buf_reserve(struct sbx_buf *b, size_t extra)
{
    if (b->cap - b->len < extra) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < extra)
            cap *= 2;
        b->base = xrealloc(b->base, cap);
        b->cap = cap;
    }
    return b->base + b->len;
}

void sbx_buf_append(struct sbx_buf *b, const void *data, size_t len)
{
    if (!len)
        return;
    memcpy(sbx_buf_reserve(b, len), data, len);
    b->len += len;
}

void sbx_buf_appendf(struct sbx_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    char *p = sbx_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sbx_buf_consume(struct sbx_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->base, b->base + n, b->len - n);
    b->len -= n;
}

void sbx_buf_reset(struct sbx_buf *b)
{
    b->len = 0;
}

char *sbx_buf_cstr(struct sbx_buf *b)
{
    sbx_buf_reserve(b, 1);
    b->base[b->len] = '\0';
    return b->base;
}

void sbx_buf_done(struct sbx_buf *b)
{
    free(b->base);
    b->base = NULL;
    b->len = b->cap = 0;
}
