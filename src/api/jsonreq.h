/* Typed, bounded access to fields of a client's JSON request. Each getter returns 0 when the field is
 * absent (leaving *ret untouched), 1 when present and valid, or -EINVAL/-E2BIG with err naming the
 * field. Borrowed pointers stay valid as long as the json_t they came from. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"

#define JSONREQ_BODY_MAX (1u << 20)

/* Parses a request body that must be a JSON object (an empty body is an empty object). */
int jsonreq_parse(const char *body, size_t len, json_t **ret, sbx_error *err);

int jsonreq_string(json_t *obj, const char *key, size_t max_len, const char **ret, sbx_error *err);
int jsonreq_bool(json_t *obj, const char *key, bool *ret, sbx_error *err);
int jsonreq_number(json_t *obj, const char *key, double min, double max, double *ret, sbx_error *err);
int jsonreq_integer(json_t *obj, const char *key, int64_t min, int64_t max, int64_t *ret, sbx_error *err);
/* An object whose values are all strings: at most max_entries, each key+value ≤ max_entry bytes. Keys
 * must be non-empty and must not contain '=' or NUL (they become environment names). */
int jsonreq_string_map(json_t *obj, const char *key, size_t max_entries, size_t max_entry, json_t **ret,
                       sbx_error *err);
/* An object (any values). */
int jsonreq_object(json_t *obj, const char *key, json_t **ret, sbx_error *err);
