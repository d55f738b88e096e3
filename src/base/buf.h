/* Growable byte buffer (h2o h2o_buffer_t, Valkey sds) and a borrowed byte span. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct sbx_iovec {
    char *base;
    size_t len;
} sbx_iovec;

struct sbx_buf {
    char *base;
    size_t len, cap;
};

#define SBX_BUF_INIT                                                                                         \
    {                                                                                                        \
        NULL, 0, 0                                                                                           \
    }

/* Makes room for at least `extra` more bytes; returns a pointer to the free space. Aborts on OOM. */
char *sbx_buf_reserve(struct sbx_buf *b, size_t extra);
void sbx_buf_append(struct sbx_buf *b, const void *data, size_t len);
void sbx_buf_appendf(struct sbx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void sbx_buf_consume(struct sbx_buf *b, size_t n);
void sbx_buf_reset(struct sbx_buf *b);
/* NUL-terminates without counting the NUL in len; returns base. */
char *sbx_buf_cstr(struct sbx_buf *b);
void sbx_buf_done(struct sbx_buf *b);
