#include "base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int max_level = LOG_INFO;
static int as_json;
static const char *ident = "sbx";

void log_set_level(int level)
{
    max_level = level;
}

int log_get_level(void)
{
    return max_level;
}

void log_set_json(int json)
{
    as_json = json;
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

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line_buf[1400];
    int n;
    if (as_json) {
        char esc[1200];
        size_t j = 0;
        for (const char *p = msg; *p && j + 7 < sizeof(esc); p++) {
            unsigned char c = (unsigned char)*p;
            if (c == '"' || c == '\\') {
                esc[j++] = '\\';
                esc[j++] = (char)c;
            } else if (c < 0x20) {
                j += (size_t)snprintf(esc + j, sizeof(esc) - j, "\\u%04x", c);
            } else {
                esc[j++] = (char)c;
            }
        }
        esc[j] = '\0';
        n = snprintf(
            line_buf, sizeof(line_buf),
            "{\"ts\":%lld.%03ld,\"level\":\"%s\",\"ident\":\"%s\",\"src\":\"%s:%d\",\"msg\":\"%s\"}\n",
            (long long)ts.tv_sec, ts.tv_nsec / 1000000, level_name(level), ident, file, line, esc);
    } else {
        n = snprintf(line_buf, sizeof(line_buf), "%s[%d] %s: %s\n", ident, (int)getpid(), level_name(level),
                     msg);
    }
    if (n > (int)sizeof(line_buf))
        n = sizeof(line_buf);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, line_buf, (size_t)n);
        (void)w;
    }
    return error;
}
