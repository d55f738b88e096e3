/* Encodings shared by the API handlers: UTF-8 checks, base64, signal names, and the translation of the
 * shim's command status into the public command object of docs/api.md. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool utf8_valid(const void *data, size_t len);

/* Returns a NUL-terminated new string (xmalloc'd). */
char *base64_encode(const void *data, size_t len);
/* Decodes standard base64 (padding optional); returns bytes written or -EINVAL. out needs len*3/4+3. */
long base64_decode(const char *in, size_t len, uint8_t *out);

/* "SIGTERM", "TERM", "term", "15" → 15; -EINVAL otherwise. Also accepts a JSON integer or string. */
int signal_from_string(const char *s);
int signal_from_json(json_t *v);

/* Sets obj[key] to the bytes as a string, or as base64 with obj[encoding_key] = "base64" when they are
 * not valid UTF-8. */
void json_set_bytes(json_t *obj, const char *key, const char *encoding_key, const void *data, size_t len);

/* {"type"?: "output", "stream": "stdout"|"stderr", "offset": N, "data": ..., "encoding"?: "base64"} */
json_t *output_event_json(int stream, uint64_t offset, const void *data, size_t len, bool with_type);

/* The public command object for a shim status; a new reference. */
json_t *command_json_from_shim(const char *sandbox_id, json_t *status);
