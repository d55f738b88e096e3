/* multipart/form-data parsed as it streams (see multipart.h). */
#include "http/multipart.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define PADDING_MAX 64 /* transport padding (spaces, tabs) allowed after a delimiter */

enum {
    MP_PREAMBLE, /* before the first delimiter */
    MP_AFTER,    /* after a delimiter: "--" closes the body, CRLF starts a part */
    MP_HEAD,     /* a part's header lines */
    MP_CONTENT,  /* a part's content, up to the next delimiter */
    MP_DONE,     /* after the closing delimiter: the epilogue, ignored */
};

bool multipart_boundary(const char *ct, char ret[static MULTIPART_BOUNDARY_MAX + 1])
{
    if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0 || (ct[19] && ct[19] != ';' && ct[19] != ' '))
        return false;
    for (const char *p = ct + 19; (p = strcasestr(p, "boundary=")); p++) {
        if (p[-1] != ';' && p[-1] != ' ' && p[-1] != '\t')
            continue;
        p += 9;
        bool quoted = *p == '"';
        if (quoted)
            p++;
        size_t n = strcspn(p, quoted ? "\"" : "; \t");
        if (n == 0 || n > MULTIPART_BOUNDARY_MAX || (quoted && p[n] != '"') || memchr(p, '\r', n) ||
            memchr(p, '\n', n))
            return false;
        memcpy(ret, p, n);
        ret[n] = 0;
        return true;
    }
    return false;
}

void multipart_init(struct multipart *m, const char *boundary, const struct multipart_callbacks *cb,
                    void *userdata)
{
    *m = (struct multipart){.cb = cb, .userdata = userdata, .state = MP_PREAMBLE, .held = SBX_BUF_INIT};
    size_t n = strnlen(boundary, MULTIPART_BOUNDARY_MAX);
    memcpy(m->delim, "\r\n--", 4);
    memcpy(m->delim + 4, boundary, n);
    m->delim_len = 4 + n;
    m->delim[m->delim_len] = 0;
    /* The first delimiter may open the body, without the CRLF before it: pretend it had one. */
    sbx_buf_append(&m->held, "\r\n", 2);
}

void multipart_done(struct multipart *m)
{
    sbx_buf_done(&m->held);
}

static int fail(struct multipart *m, int code, sbx_error *err, const char *msg)
{
    m->error = code;
    return sbx_error_set(err, code, "%s", msg);
}

/* A parameter of a header value (`; name="value"` or `; name=value`), unquoted into ret. A quoted value
 * may hold `;` and backslash escapes. Returns whether it was there. Parameter names match whole, so
 * `name` does not find `filename`. */
static bool header_param(const char *v, const char *name, char *ret, size_t size)
{
    size_t nl = strlen(name);
    const char *p = v;
    for (;;) {
        /* to the next ';' outside quotes */
        bool q = false;
        for (; *p && (q || *p != ';'); p++) {
            if (q && *p == '\\' && p[1])
                p++;
            else if (*p == '"')
                q = !q;
        }
        if (!*p)
            return false;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, name, nl) != 0)
            continue;
        const char *e = p + nl;
        while (*e == ' ' || *e == '\t')
            e++;
        if (*e != '=')
            continue;
        e++;
        while (*e == ' ' || *e == '\t')
            e++;
        size_t n = 0;
        if (*e == '"') {
            for (e++; *e && *e != '"'; e++) {
                if (*e == '\\' && e[1])
                    e++;
                if (n + 1 < size)
                    ret[n++] = *e;
                else
                    return false; /* too long: refused rather than cut */
            }
            if (*e != '"')
                return false;
        } else {
            for (; *e && *e != ';' && *e != ' ' && *e != '\t'; e++) {
                if (n + 1 < size)
                    ret[n++] = *e;
                else
                    return false;
            }
        }
        ret[n] = 0;
        return true;
    }
}

/* The header block of a part (lines without the final empty one; len may be 0) into *part. */
static int parse_head(struct multipart *m, const char *head, size_t len, struct multipart_part *part,
                      sbx_error *err)
{
    *part = (struct multipart_part){.index = m->parts};
    const char *end = head + len;
    for (const char *line = head; line < end;) {
        const char *nl = memmem(line, (size_t)(end - line), "\r\n", 2);
        size_t n = (size_t)((nl ? nl : end) - line);
        if (memchr(line, '\0', n))
            return fail(m, -EINVAL, err, "malformed multipart body: a NUL byte in part headers");
        char buf[MULTIPART_HEAD_MAX + 1];
        memcpy(buf, line, n);
        buf[n] = 0;
        if (strncasecmp(buf, "Content-Disposition:", 20) == 0) {
            char *v = buf + 20;
            while (*v == ' ' || *v == '\t')
                v++;
            if (strncasecmp(v, "form-data", 9) != 0)
                return fail(m, -EINVAL, err, "malformed multipart body: a part is not form-data");
            if (!header_param(v, "name", part->name, sizeof(part->name)))
                part->name[0] = 0;
            part->has_filename = header_param(v, "filename", part->filename, sizeof(part->filename));
            if (!part->has_filename)
                part->filename[0] = 0;
        } else if (strncasecmp(buf, "Content-Type:", 13) == 0) {
            const char *v = buf + 13;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(part->content_type, sizeof(part->content_type), "%s", v);
        }
        line = nl ? nl + 2 : end;
    }
    return 0;
}

static int call(struct multipart *m, int r)
{
    if (r < 0)
        m->error = r;
    return r;
}

int multipart_feed(struct multipart *m, const char *data, size_t len, sbx_error *err)
{
    if (m->error)
        return m->error; /* err was filled when it happened */
    if (m->state == MP_DONE)
        return 0;
    sbx_buf_append(&m->held, data, len);
    for (;;) {
        if (m->state == MP_PREAMBLE || m->state == MP_CONTENT) {
            const char *d = memmem(m->held.base, m->held.len, m->delim, m->delim_len);
            size_t n = d                            ? (size_t)(d - m->held.base)
                       : m->held.len > m->delim_len ? m->held.len - m->delim_len
                                                    : 0;
            if (m->state == MP_CONTENT && n > 0 && m->cb->part_data &&
                call(m, m->cb->part_data(m->userdata, m->held.base, n, err)) < 0)
                return m->error;
            if (!d) {
                sbx_buf_consume(&m->held, n); /* preamble bytes are dropped */
                return 0;
            }
            if (m->state == MP_CONTENT && m->cb->part_end && call(m, m->cb->part_end(m->userdata, err)) < 0)
                return m->error;
            sbx_buf_consume(&m->held, n + m->delim_len);
            m->state = MP_AFTER;
        }
        if (m->state == MP_AFTER) {
            size_t i = 0;
            while (i < m->held.len && (m->held.base[i] == ' ' || m->held.base[i] == '\t'))
                i++;
            if (i > PADDING_MAX)
                return fail(m, -EINVAL, err, "malformed multipart body: bad delimiter line");
            if (m->held.len - i < 2)
                return 0;
            if (memcmp(m->held.base + i, "--", 2) == 0) {
                m->state = MP_DONE;
                sbx_buf_consume(&m->held, m->held.len);
                return 0;
            }
            if (memcmp(m->held.base + i, "\r\n", 2) != 0)
                return fail(m, -EINVAL, err, "malformed multipart body: bad delimiter line");
            sbx_buf_consume(&m->held, i + 2);
            m->state = MP_HEAD;
        }
        if (m->state == MP_HEAD) {
            size_t hlen;
            if (m->held.len >= 2 && memcmp(m->held.base, "\r\n", 2) == 0) {
                hlen = 0; /* a part without headers */
            } else {
                const char *end = memmem(m->held.base, m->held.len, "\r\n\r\n", 4);
                if (!end && m->held.len > MULTIPART_HEAD_MAX)
                    return fail(m, -EINVAL, err, "malformed multipart body: part headers too long");
                if (!end)
                    return 0;
                hlen = (size_t)(end - m->held.base) + 2;
                if (hlen > MULTIPART_HEAD_MAX)
                    return fail(m, -EINVAL, err, "malformed multipart body: part headers too long");
            }
            if (m->parts >= MULTIPART_PARTS_MAX)
                return fail(m, -E2BIG, err, "too many parts in the multipart body");
            struct multipart_part part;
            if (parse_head(m, m->held.base, hlen ? hlen - 2 : 0, &part, err) < 0)
                return m->error;
            m->parts++;
            sbx_buf_consume(&m->held, hlen + 2);
            m->state = MP_CONTENT;
            if (m->cb->part_begin && call(m, m->cb->part_begin(m->userdata, &part, err)) < 0)
                return m->error;
        }
        if (m->state == MP_DONE)
            return 0;
    }
}

int multipart_finish(struct multipart *m, sbx_error *err)
{
    if (m->error)
        return m->error;
    if (m->state != MP_DONE)
        return fail(m, -EINVAL, err, "malformed multipart body: no closing boundary");
    return 0;
}
