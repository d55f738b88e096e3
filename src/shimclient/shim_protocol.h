/* Wire protocol between sbxd and sbx-shim over <state_dir>/shim.sock (SOCK_STREAM unix socket).
 *
 * Every message is a frame: 4-byte little-endian payload length, 1-byte type, payload.
 *   SHIM_FRAME_REQUEST  (client → shim)  payload: one JSON object {"op": ..., ...}
 *   SHIM_FRAME_RESPONSE (shim → client)  payload: one JSON object, {"ok": true, ...} or
 *                                        {"error": {"code": "...", "message": "...", "errno": N}}
 *   SHIM_FRAME_DATA     (shim → client)  payload: 1 byte stream (1 stdout, 2 stderr), 8-byte LE offset,
 *                                        then the bytes
 *   SHIM_FRAME_EXIT     (shim → client)  payload: JSON command status object (see below)
 *   SHIM_FRAME_STDIN    (client → shim)  payload: raw stdin bytes, only on an attached connection
 *
 * A connection carries request/response pairs in order, until it sends {"op":"attach",...}; from then
 * on it only streams DATA frames (every byte from the requested offsets exactly once, in order per
 * stream) and one final EXIT frame, after which the shim closes it. A client may send STDIN frames
 * and REQUEST frames {"op":"close_stdin"} / {"op":"signal","signal":N} on an attached connection;
 * they get no response.
 *
 * Requests:
 *   {"op":"ping"} → {"ok":true,"pid":<shim pid>,"init_pid":N}
 *   {"op":"exec","id":"cmd_..","argv":[..],"env":["K=V",..],"cwd":"/root","timeout_ms":N,
 *    "stdin_b64":"..", "stdin_open":false}
 *        → {"ok":true,"created":true|false,"command":<status>}   (existing id: created=false)
 *   {"op":"status","id":".."}        → {"ok":true,"command":<status>}
 *   {"op":"list"}                    → {"ok":true,"commands":[<status>..]}
 *   {"op":"stdin","id":"..","data_b64":"..","close":false} → {"ok":true}
 *   {"op":"signal","id":"..","signal":N} → {"ok":true}
 *   {"op":"kill","id":".."}          → {"ok":true}   (SIGKILL to the process group, error "killed")
 *   {"op":"attach","id":"..","stdout_offset":N,"stderr_offset":M} → stream as described above
 *   {"op":"shutdown"} → {"ok":true}, then the shim destroys the sandbox and exits
 *
 * <status> = {"id","argv":[..],"state":"running"|"exited","pid":N,"exit_code":N|null,"signal":N|null,
 *             "error":null|{"code":"timeout"|"killed"|"command_not_found","message":".."},
 *             "stdout_bytes":N,"stderr_bytes":N,"started_at_ms":N,"finished_at_ms":N|null}
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

enum shim_frame_type {
    SHIM_FRAME_REQUEST = 1,
    SHIM_FRAME_RESPONSE = 2,
    SHIM_FRAME_DATA = 3,
    SHIM_FRAME_EXIT = 4,
    SHIM_FRAME_STDIN = 5,
};

#define SHIM_FRAME_HEADER 5u
#define SHIM_FRAME_MAX (4u << 20) /* largest payload either side accepts */
#define SHIM_STREAM_STDOUT 1
#define SHIM_STREAM_STDERR 2

struct shim_frame {
    uint8_t type;
    const uint8_t *payload; /* borrowed from the input buffer */
    uint32_t len;
};

/* Parses one frame from the front of buf. Returns the bytes it used (> 0) with *ret filled, 0 if buf
 * holds an incomplete frame, or -EMSGSIZE/-EBADMSG for a frame that can never be valid. */
long shim_frame_parse(const uint8_t *buf, size_t len, struct shim_frame *ret);

/* Writes a frame header for a payload of len bytes into hdr[SHIM_FRAME_HEADER]. */
void shim_frame_header(uint8_t hdr[SHIM_FRAME_HEADER], uint8_t type, uint32_t len);
