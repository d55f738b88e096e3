#include "api/codec.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"
#include "shimclient/shim_protocol.h"

bool utf8_valid(const void *data, size_t len)
{
    const uint8_t *s = data;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        /* Reject overlong forms, surrogates and values past U+10FFFF (as JSON consumers do). */
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const void *data, size_t len)
{
    const uint8_t *in = data;
    char *out = xmalloc(4 * ((len + 2) / 3) + 1), *p = out;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *p++ = b64chars[v >> 18];
        *p++ = b64chars[(v >> 12) & 63];
        *p++ = b64chars[(v >> 6) & 63];
        *p++ = b64chars[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        *p++ = b64chars[v >> 18];
        *p++ = b64chars[(v >> 12) & 63];
        *p++ = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
        *p++ = '=';
    }
    *p = '\0';
    return out;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

long base64_decode(const char *in, size_t len, uint8_t *out)
{
    while (len > 0 && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -EINVAL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

static const struct {
    const char *name;
    int signo;
} signals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT}, {"ILL", SIGILL},   {"TRAP", SIGTRAP},
    {"ABRT", SIGABRT}, {"BUS", SIGBUS},     {"FPE", SIGFPE},   {"KILL", SIGKILL}, {"USR1", SIGUSR1},
    {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},   {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},   {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG},     {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM},
    {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},     {"SYS", SIGSYS},
};

int signal_from_string(const char *s)
{
    if (!s || !*s)
        return -EINVAL;
    if (isdigit((unsigned char)*s)) {
        char *end;
        long v = strtol(s, &end, 10);
        return *end || v < 1 || v > 64 ? -EINVAL : (int)v;
    }
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
        if (strcasecmp(s, signals[i].name) == 0)
            return signals[i].signo;
    return -EINVAL;
}

int signal_from_json(json_t *v)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        return i >= 1 && i <= 64 ? (int)i : -EINVAL;
    }
    if (json_is_string(v))
        return signal_from_string(json_string_value(v));
    return -EINVAL;
}

void json_set_bytes(json_t *obj, const char *key, const char *encoding_key, const void *data, size_t len)
{
    if (utf8_valid(data, len)) {
        json_object_set_new(obj, key, json_stringn(data ? data : "", len));
    } else {
        char *b = base64_encode(data, len);
        json_object_set_new(obj, key, json_string(b));
        json_object_set_new(obj, encoding_key, json_string("base64"));
        free(b);
    }
}

json_t *output_event_json(int stream, uint64_t offset, const void *data, size_t len, bool with_type)
{
    json_t *ev = json_object();
    if (with_type)
        json_object_set_new(ev, "type", json_string("output"));
    json_object_set_new(ev, "stream", json_string(stream == SHIM_STREAM_STDERR ? "stderr" : "stdout"));
    json_object_set_new(ev, "offset", json_integer((json_int_t)offset));
    json_set_bytes(ev, "data", "encoding", data, len);
    return ev;
}

static json_t *time_or_null(json_t *ms)
{
    if (!json_is_integer(ms))
        return json_null();
    char buf[40];
    format_time_ms(buf, sizeof(buf), json_integer_value(ms));
    return json_string(buf);
}

json_t *command_json_from_shim(const char *sandbox_id, json_t *st)
{
    json_t *c = json_object();
    json_object_set(c, "id", json_object_get(st, "id"));
    json_object_set_new(c, "sandbox_id", json_string(sandbox_id));
    json_t *argv = json_object_get(st, "argv");
    json_object_set_new(c, "command", argv ? json_incref(argv) : json_array());
    json_t *state = json_object_get(st, "state");
    json_object_set_new(c, "state", state ? json_incref(state) : json_string("running"));
    static const char *const passthrough[] = {"pid",   "exit_code",    "signal",
                                              "error", "stdout_bytes", "stderr_bytes"};
    for (size_t i = 0; i < sizeof(passthrough) / sizeof(passthrough[0]); i++) {
        json_t *v = json_object_get(st, passthrough[i]);
        json_object_set(c, passthrough[i], v ? v : json_null());
    }
    json_object_set_new(c, "started_at", time_or_null(json_object_get(st, "started_at_ms")));
    json_object_set_new(c, "finished_at", time_or_null(json_object_get(st, "finished_at_ms")));
    return c;
}
