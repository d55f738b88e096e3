/* multipart/form-data bodies (RFC 7578, delimiters per RFC 2046 §5.1.1), parsed as they stream: a part's
 * content is handed on as it arrives and never held whole, so uploads of any size use bounded memory.
 * One parser for every upload route (the E2B, LangSmith and OpenSandbox file uploads).
 *
 * Delimiters split across chunks are found by holding back a delimiter's length of content. Part headers
 * are bounded (MULTIPART_HEAD_MAX), as are the parts of one body (MULTIPART_PARTS_MAX); the preamble
 * before the first delimiter and the epilogue after the last are ignored, as the RFC says. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"

#define MULTIPART_BOUNDARY_MAX 70 /* RFC 2046 */
#define MULTIPART_HEAD_MAX (16 * 1024)
#define MULTIPART_PARTS_MAX 1024

/* One part's headers, as far as uploads need them. */
struct multipart_part {
    char name[256];          /* Content-Disposition's name ("" when absent) */
    char filename[PATH_MAX]; /* its filename ("" when absent or empty: see has_filename) */
    bool has_filename;
    char content_type[256]; /* "" when absent */
    unsigned index;         /* 0 for the first part */
};

/* Each returns 0, or a negative errno with err filled to stop the parse (multipart_feed returns it). */
struct multipart_callbacks {
    int (*part_begin)(void *userdata, const struct multipart_part *part, sbx_error *err);
    int (*part_data)(void *userdata, const char *data, size_t len, sbx_error *err);
    int (*part_end)(void *userdata, sbx_error *err);
};

struct multipart {
    const struct multipart_callbacks *cb;
    void *userdata;
    char delim[MULTIPART_BOUNDARY_MAX + 5]; /* "\r\n--" boundary */
    size_t delim_len;
    struct sbx_buf held; /* bytes not yet parsed */
    int state;
    unsigned parts;
    int error; /* the first error, sticky */
};

/* The boundary of a `multipart/form-data; boundary=...` Content-Type (quoted or not) into ret (at least
 * MULTIPART_BOUNDARY_MAX + 1 bytes). false when the type is another or the boundary is missing, empty or
 * longer than 70. */
bool multipart_boundary(const char *content_type, char ret[static MULTIPART_BOUNDARY_MAX + 1]);

void multipart_init(struct multipart *m, const char *boundary, const struct multipart_callbacks *cb,
                    void *userdata);
/* Parses more of the body. 0, or a negative errno with err filled: -EINVAL for a malformed body ("malformed
 * multipart body: ..."), -E2BIG for limits, or what a callback returned. After an error, or after the
 * closing delimiter, further bytes are ignored (and the error is returned again). */
int multipart_feed(struct multipart *m, const char *data, size_t len, sbx_error *err);
/* The body ended: -EINVAL unless the closing delimiter was seen (a part cut short is never ended). */
int multipart_finish(struct multipart *m, sbx_error *err);
void multipart_done(struct multipart *m);
