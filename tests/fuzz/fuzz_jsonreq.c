/* Fuzzes JSON request decoding (src/api/jsonreq.c) and the encodings of src/api/codec.c the handlers apply
 * to client input: the body is parsed with jsonreq_parse and every field the /v1 handlers read is taken
 * with the handlers' own getters and bounds; the string fields then go through base64_decode,
 * signal_from_string/json, utf8_valid and json_set_bytes, and so do the raw bytes. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/codec.h"
#include "api/jsonreq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_codecs(const char *s, size_t len)
{
    uint8_t *out = malloc(len * 3 / 4 + 3);
    long n = base64_decode(s, len, out);
    assert(n == -EINVAL || (n >= 0 && (size_t)n <= len * 3 / 4 + 3));
    if (n >= 0) {
        /* Round trip: what decodes re-encodes to something that decodes to the same bytes. */
        char *enc = base64_encode(out, (size_t)n);
        size_t el = strlen(enc);
        uint8_t *again = malloc(el * 3 / 4 + 3);
        long m = base64_decode(enc, el, again);
        assert(m == n && memcmp(again, out, (size_t)n) == 0);
        free(again);
        free(enc);
    }
    free(out);
    (void)utf8_valid(s, len);
    json_t *o = json_object();
    json_set_bytes(o, "data", "encoding", s, len);
    json_decref(o);
}

static void check_string(const char *s)
{
    check_codecs(s, strlen(s));
    int sig = signal_from_string(s);
    assert(sig == -EINVAL || (sig >= 1 && sig <= 64));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_codecs((const char *)data, size);

    sbx_error err = {0};
    json_t *body = NULL;
    if (jsonreq_parse((const char *)data, size, &body, &err) < 0)
        return 0;
    assert(json_is_object(body));

    static const char *const strings[] = {"command",  "cwd",   "from", "id",     "mode", "name",   "path",
                                          "snapshot", "stdin", "to",   "signal", "data", "content"};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        const char *s = NULL;
        if (jsonreq_string(body, strings[i], 4096, &s, &err) > 0)
            check_string(s);
    }
    bool b;
    (void)jsonreq_bool(body, "pty", &b, &err);
    (void)jsonreq_bool(body, "wait", &b, &err);
    int64_t i64;
    (void)jsonreq_integer(body, "cols", 1, 1000, &i64, &err);
    (void)jsonreq_integer(body, "memory_mb", 16, 1048576, &i64, &err);
    (void)jsonreq_integer(body, "max_memory_mb", 0, INT64_C(1) << 40, &i64, &err);
    (void)jsonreq_integer(body, "timeout_seconds", INT64_MIN, INT64_MAX, &i64, &err);
    double d;
    (void)jsonreq_number(body, "timeout", 0, 86400, &d, &err);
    (void)jsonreq_number(body, "cpus", 0.01, 64, &d, &err);
    (void)jsonreq_number(body, "idle_ttl_seconds", -1, 1e18, &d, &err);
    json_t *env = NULL;
    if (jsonreq_string_map(body, "env", 100, 4096, &env, &err) > 0) {
        const char *k;
        json_t *v;
        json_object_foreach(env, k, v)
        {
            assert(*k && !strchr(k, '='));
            assert(json_is_string(v));
        }
    }
    json_t *obj = NULL;
    if (jsonreq_object(body, "resources", &obj, &err) > 0) {
        (void)jsonreq_integer(obj, "disk_mb", 64, 1048576, &i64, &err);
        (void)jsonreq_integer(obj, "pids", 16, 65536, &i64, &err);
    }
    (void)jsonreq_object(body, "metadata", &obj, &err);
    json_t *sigv = json_object_get(body, "signal");
    if (sigv) {
        int sig = signal_from_json(sigv);
        assert(sig == -EINVAL || (sig >= 1 && sig <= 64));
    }
    /* The shim's status object goes through the same translation whatever it holds. */
    json_decref(command_json_from_shim("sbx-fuzz", body));
    json_decref(body);
    return 0;
}
