#include "base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"

static int max_level = LOG_INFO;
static enum log_format format = LOG_FORMAT_TEXT;
static const char *ident = "sbx";

void log_set_level(int level)
{
    max_level = level;
}

int log_get_level(void)
{
    return max_level;
}

void log_set_format(enum log_format f)
{
    if (f >= 0 && f < _LOG_FORMAT_MAX)
        format = f;
}

void log_set_json(int json)
{
    log_set_format(json ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
}

enum log_format log_format_from_string(const char *s)
{
    if (s && strcmp(s, "text") == 0)
        return LOG_FORMAT_TEXT;
    if (s && strcmp(s, "json") == 0)
        return LOG_FORMAT_JSON;
    return _LOG_FORMAT_INVALID;
}

void log_set_ident(const char *name)
{
    ident = name;
}

static const char *level_name(int level)
{
    static const char *const names[] = {"emerg",   "alert",  "crit", "error",
                                        "warning", "notice", "info", "debug"};
    return level >= 0 && level <= LOG_DEBUG ? names[level] : "?";
}

/* The length of the valid UTF-8 sequence at p (1..4), or 0 when it is not one (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_sequence(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0; /* also stops at the NUL */
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

size_t log_json_escape(const char *s, char *dst, size_t size)
{
    size_t j = 0;
    if (size == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        char tmp[8];
        const char *piece = tmp;
        size_t len, advance = 1;
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            len = 2;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            tmp[0] = '\\';
            tmp[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            len = 2;
        } else if (c < 0x20 || c == 0x7f) {
            len = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", c);
        } else if (c < 0x80) {
            tmp[0] = (char)c;
            len = 1;
        } else if ((advance = utf8_sequence(p)) > 0) {
            piece = (const char *)p;
            len = advance;
        } else {
            piece = "\\ufffd";
            len = 6;
            advance = 1;
        }
        if (j + len >= size)
            break;
        memcpy(dst + j, piece, len);
        j += len;
        p += advance;
    }
    dst[j] = '\0';
    return j;
}

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...)
{
    if (level > max_level)
        return error;
    int saved = errno;
    errno = error < 0 ? -error : error; /* so %m in fmt prints the error */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    errno = saved;

    /* Every escape is at most 6 bytes per input byte, so the escaped message always fits whole. */
    char line_buf[6 * sizeof(msg) + 256];
    int n;
    if (format == LOG_FORMAT_JSON) {
        char when[32];
        format_time_ms(when, sizeof(when), (int64_t)(now_usec(CLOCK_REALTIME) / USEC_PER_MSEC));
        char esc[6 * sizeof(msg)];
        log_json_escape(msg, esc, sizeof(esc));
        const char *in_tree = strstr(file, "/src/"); /* __FILE__ is absolute under CMake */
        char src[128];
        log_json_escape(in_tree ? in_tree + 1 : file, src, sizeof(src));
        n = snprintf(line_buf, sizeof(line_buf),
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\",\"ident\":\"%s\",\"pid\":%d,"
                     "\"src\":\"%s:%d\"}\n",
                     when, level_name(level), esc, ident, (int)getpid(), src, line);
    } else {
        n = snprintf(line_buf, sizeof(line_buf), "%s[%d] %s: %s\n", ident, (int)getpid(), level_name(level),
                     msg);
    }
    if (n >= (int)sizeof(line_buf)) {
        n = sizeof(line_buf) - 1; /* cannot happen with the sizes above; keep the line a line */
        line_buf[n - 1] = '\n';
    }
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, line_buf, (size_t)n);
        (void)w;
    }
    return error;
}
