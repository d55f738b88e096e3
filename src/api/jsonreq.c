#include "api/jsonreq.h"

#include <errno.h>
#include <math.h>
#include <string.h>

int jsonreq_parse(const char *body, size_t len, json_t **ret, sbx_error *err)
{
    if (len > JSONREQ_BODY_MAX)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "request body over %u bytes", JSONREQ_BODY_MAX);
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (i == len) {
        *ret = json_object();
        return 0;
    }
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return sbx_error_set(err, -EINVAL, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                             jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return sbx_error_set(err, -EINVAL, "request body must be a JSON object");
    }
    *ret = j;
    return 0;
}

static json_t *field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

int jsonreq_string(json_t *obj, const char *key, size_t max_len, const char **ret, sbx_error *err)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return sbx_error_set(err, -EINVAL, "`%s` must be a string", key);
    size_t n = json_string_length(v);
    if (n > max_len)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`%s` is longer than %zu bytes", key, max_len);
    if (strlen(json_string_value(v)) != n)
        return sbx_error_set(err, -EINVAL, "`%s` must not contain NUL characters", key);
    *ret = json_string_value(v);
    return 1;
}

int jsonreq_bool(json_t *obj, const char *key, bool *ret, sbx_error *err)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return sbx_error_set(err, -EINVAL, "`%s` must be true or false", key);
    *ret = json_is_true(v);
    return 1;
}

int jsonreq_number(json_t *obj, const char *key, double min, double max, double *ret, sbx_error *err)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return sbx_error_set(err, -EINVAL, "`%s` must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < min || d > max)
        return sbx_error_set(err, -EINVAL, "`%s` must be between %g and %g", key, min, max);
    *ret = d;
    return 1;
}

int jsonreq_integer(json_t *obj, const char *key, int64_t min, int64_t max, int64_t *ret, sbx_error *err)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return sbx_error_set(err, -EINVAL, "`%s` must be an integer", key);
    json_int_t i = json_integer_value(v);
    if (i < min || i > max)
        return sbx_error_set(err, -EINVAL, "`%s` must be between %lld and %lld", key, (long long)min,
                             (long long)max);
    *ret = i;
    return 1;
}

int jsonreq_string_map(json_t *obj, const char *key, size_t max_entries, size_t max_entry, json_t **ret,
                       sbx_error *err)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_object(v))
        return sbx_error_set(err, -EINVAL, "`%s` must be an object of strings", key);
    if (json_object_size(v) > max_entries)
        return sbx_error_setk(err, -E2BIG, "too_large", 413, "`%s` has more than %zu entries", key,
                              max_entries);
    const char *k;
    json_t *val;
    json_object_foreach(v, k, val)
    {
        if (!json_is_string(val))
            return sbx_error_set(err, -EINVAL, "`%s.%s` must be a string", key, k);
        size_t klen = strlen(k);
        if (klen == 0 || strchr(k, '='))
            return sbx_error_set(err, -EINVAL, "`%s` has an invalid key `%s`", key, k);
        size_t vlen = json_string_length(val);
        if (strlen(json_string_value(val)) != vlen)
            return sbx_error_set(err, -EINVAL, "`%s.%s` must not contain NUL characters", key, k);
        if (klen + vlen > max_entry)
            return sbx_error_setk(err, -E2BIG, "too_large", 413, "`%s.%s` is longer than %zu bytes", key, k,
                                  max_entry);
    }
    *ret = v;
    return 1;
}

int jsonreq_object(json_t *obj, const char *key, json_t **ret, sbx_error *err)
{
    json_t *v = field(obj, key);
    if (!v)
        return 0;
    if (!json_is_object(v))
        return sbx_error_set(err, -EINVAL, "`%s` must be an object", key);
    *ret = v;
    return 1;
}
