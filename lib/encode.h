/* libsbx internals: a growable byte buffer that reports OOM instead of aborting, URL escaping, base64 and
 * UTF-8 checks. Free of curl and jansson so the unit tests can include encode.c directly. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Growable byte buffer (the library's own: base/buf.h aborts on OOM, which a library must not). base is
 * always NUL-terminated once anything was appended; the NUL is not counted in len. */
struct lbuf {
    char *base;
    size_t len, cap;
};

#define LBUF_INIT                                                                                            \
    {                                                                                                        \
        NULL, 0, 0                                                                                           \
    }

/* All return 0 or -ENOMEM (leaving the buffer as it was). */
int lbuf_reserve(struct lbuf *b, size_t extra);
int lbuf_append(struct lbuf *b, const void *data, size_t len);
int lbuf_appends(struct lbuf *b, const char *s);
int lbuf_printf(struct lbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lbuf_reset(struct lbuf *b);
void lbuf_done(struct lbuf *b);
/* Hands the bytes out as a NUL-terminated string (never NULL on success: "" when empty); the buffer is
 * left empty. Returns NULL only on OOM. */
char *lbuf_steal(struct lbuf *b);

/* Appends `s` percent-encoded for use as one path segment or one query value: everything except the
 * RFC 3986 unreserved characters (ALPHA DIGIT - . _ ~) becomes %XX, byte by byte (so UTF-8 is kept). */
int url_escape(struct lbuf *b, const char *s);

/* Decodes standard base64 (padding optional, whitespace not allowed) and appends the bytes.
 * Returns 0, -EINVAL on malformed input or -ENOMEM. */
int base64_decode_append(struct lbuf *out, const char *in, size_t len);

/* True when the bytes are valid UTF-8 with no NUL byte, i.e. they can travel as a JSON string that the
 * daemon reads back unchanged. */
bool utf8_text_valid(const void *data, size_t len);
