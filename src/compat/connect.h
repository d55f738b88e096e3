/* The Connect protocol (connectrpc.com, protocol version 1) with the JSON codec, as the E2B SDKs speak it
 * over HTTP/1.1 (docs/compat/e2b.md):
 *
 * - unary: POST application/json, the body is the request message; the answer is 200 application/json
 *   with the response message, or an error status with {"code":"<snake_case>","message":"..."};
 * - server streaming: POST application/connect+json whose body is one envelope (1 flag byte, 4-byte
 *   big-endian length, the JSON message); the answer is 200 application/connect+json, chunked, a
 *   sequence of envelopes with flag 0, then one end-of-stream envelope (flag 0x02) holding {} or
 *   {"error":{"code","message"}}.
 *
 * Shape only: nothing here knows about sandboxes. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "http/http.h"

#define CONNECT_FLAG_COMPRESSED 0x01
#define CONNECT_FLAG_END_STREAM 0x02
#define CONNECT_MESSAGE_MAX (4u << 20) /* largest request message accepted */

/* The Connect code for an sbx error ("not_found", "invalid_argument", ...). */
const char *connect_code_for(const sbx_error *err);
/* The HTTP status a unary error with that Connect code is answered with. */
int connect_code_http_status(const char *code);

/* Whether the request is a streaming call (Content-Type application/connect+json). */
bool connect_is_stream(const struct http_request *req);

/* Decodes a request body: the JSON message itself for a unary call, the single envelope of a streaming
 * call. Returns 0 with a new reference in *ret (an object), or -EINVAL with err filled (invalid_argument:
 * bad envelope, compressed flag, not JSON, not an object). */
int connect_decode_request(const struct http_request *req, const char *body, size_t len, json_t **ret,
                           sbx_error *err);

/* The request's Connect-Timeout-Ms in ms, 0 when absent or malformed. */
int64_t connect_timeout_ms(const struct http_request *req);

/* Unary answers. connect_reply takes ownership of msg (NULL = {}). */
void connect_reply(struct http_request *req, json_t *msg);
void connect_reply_error(struct http_request *req, const char *code, const char *message);
void connect_reply_sbx_error(struct http_request *req, const sbx_error *err);

/* Streaming answers: begin sends the 200 head; send writes one message envelope (takes ownership of msg;
 * returns like http_response_write: 1 = slow down); end writes the end-of-stream envelope (code NULL =
 * success) and completes the response. */
void connect_stream_begin(struct http_request *req);
int connect_stream_send(struct http_request *req, json_t *msg);
void connect_stream_end(struct http_request *req, const char *code, const char *message);

/* A streaming call that fails before its first message: 200, then only the end-of-stream envelope with
 * the error (how Connect servers answer streams). */
void connect_stream_error(struct http_request *req, const char *code, const char *message);
