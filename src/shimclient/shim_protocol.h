/* Wire protocol between sbxd and sbx-shim over <state_dir>/shim.sock (SOCK_STREAM unix socket, 0600).
 *
 * Start-up: sbxd runs `sbx-shim <state_dir>` with fd 3 = the write end of a "ready pipe" (see
 * shim_spawn). The shim reads <state_dir>/config.json
 *   {"id","uid_base","hostname","memory_bytes","cpus","pids_max","init_path","seccomp_path",
 *    "lower_dirs":null|[..]}
 * creates the sandbox, listens, writes <state_dir>/shim.pid, and writes one line to fd 3:
 *   {"ok":true,"pid":<shim pid>,"init_pid":<sbx-init host pid>}   or
 *   {"ok":false,"error":{"code":"..","message":"..","errno":N}}
 * Its log is <state_dir>/shim.log (SBX_SHIM_DEBUG=1 in its environment for debug level).
 *
 * Every message is a frame: 4-byte little-endian payload length, 1-byte type, payload.
 *   SHIM_FRAME_REQUEST  (client → shim)  payload: one JSON object {"op": ..., ...}
 *   SHIM_FRAME_RESPONSE (shim → client)  payload: one JSON object, {"ok": true, ...} or
 *                                        {"error": {"code": "...", "message": "...", "errno": N}}
 *   SHIM_FRAME_DATA     (shim → client)  payload: 1 byte stream (1 stdout, 2 stderr), 8-byte LE offset,
 *                                        then the bytes (at most 64 KiB per frame)
 *   SHIM_FRAME_EXIT     (shim → client)  payload: JSON command status object (see below)
 *   SHIM_FRAME_STDIN    (client → shim)  payload: raw stdin bytes, only on an attached connection
 * Payloads are at most SHIM_FRAME_MAX. A frame that can never be valid (oversized, unknown type) gets
 * an error RESPONSE and the connection is closed; a bad request gets an error RESPONSE and the
 * connection stays usable.
 *
 * A connection carries request/response pairs in order, until it sends {"op":"attach",...}; from then
 * on it only streams DATA frames (every byte from the requested offsets exactly once, in order per
 * stream; offsets are byte counts since the command started) and one final EXIT frame, after which
 * the shim closes it. A successful attach gets no RESPONSE; a failed one (unknown id, too many
 * attachers, bad offsets) gets one error RESPONSE and the shim closes the stream. A client may send
 * STDIN frames and REQUEST frames {"op":"close_stdin"} / {"op":"signal","signal":N} / {"op":"kill"}
 * on an attached connection; they get no response. While the command's stdin queue is full the shim
 * stops reading the attached connection (back-pressure). A client that reads slowly is fed at its own
 * pace from the ring or the log file; the shim's memory does not grow with it.
 *
 * Requests:
 *   {"op":"ping"} → {"ok":true,"pid":<shim pid>,"init_pid":N,"init_alive":bool,"running":N,"commands":N}
 *   {"op":"exec","id":"cmd_..","argv":[..],"env":["K=V",..],"cwd":"/root","timeout_ms":N,
 *    "stdin_b64":"..", "stdin_open":false}
 *        → {"ok":true,"created":true|false,"command":<status>}   (existing id: created=false, the rest
 *          of the request is ignored). argv[0] without '/' is looked up in env's PATH. env is complete
 *          (nothing inherited). stdin_b64 is written first; stdin is then closed unless stdin_open.
 *          An argv[0] that cannot be executed still creates the command: state "exited",
 *          exit_code 127, error {"code":"command_not_found"}.
 *          Limits: ≤4096 argv entries, ≤4096 env entries, ≤2 MiB of argv+env strings, ≤256 running
 *          commands (resource_exhausted), ≤4096 kept in memory (the oldest finished are forgotten;
 *          their files stay).
 *   {"op":"status","id":".."}        → {"ok":true,"command":<status>}
 *   {"op":"list"}                    → {"ok":true,"commands":[<status>..]}   (oldest first)
 *   {"op":"stdin","id":"..","data_b64":"..","close":false} → {"ok":true}
 *        (conflict if stdin is closed, resource_exhausted above 8 MiB queued)
 *   {"op":"signal","id":"..","signal":N} → {"ok":true}   (to the command's leader process only)
 *   {"op":"kill","id":".."}          → {"ok":true}   (SIGKILL to the command's session, error "killed")
 *   {"op":"attach","id":"..","stdout_offset":N,"stderr_offset":M} → stream as described above
 *   {"op":"shutdown"} → the shim destroys the sandbox, answers {"ok":true} and exits
 * signal/kill on a command that has exited are no-ops answering ok.
 *
 * <status> = {"id","argv":[..],"state":"running"|"exited","pid":N|null,"exit_code":N|null,"signal":N|null,
 *             "error":null|{"code":"timeout"|"killed"|"command_not_found","message":".."},
 *             "stdout_bytes":N,"stderr_bytes":N,"started_at_ms":N,"finished_at_ms":N|null}
 * pid is inside the sandbox. A command killed by a signal has signal=N and exit_code=128+N. A command
 * is "exited" only once its exit is known and both output pipes reached EOF (or 2 s after the exit if
 * background processes hold them), so no DATA follows its EXIT. Timestamps are Unix ms.
 *
 * Files in <state_dir>/logs/ (kept after the shim is gone, for post-mortem): <cid>.stdout,
 * <cid>.stderr (every byte; offset = file position), <cid>.json (the last <status>, replaced
 * atomically on start and on exit; a command still "running" there when no shim is alive was lost).
 *
 * Error codes ("code" in errors): invalid_argument, too_large, not_found, conflict,
 * resource_exhausted, internal, and the runtime's kinds. "errno" is a positive errno value.
 */
#pragma once

#include <stdbool.h>
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
#define SHIM_DATA_HEADER 9u       /* stream byte + 8-byte LE offset at the front of a DATA payload */
#define SHIM_STREAM_STDOUT 1
#define SHIM_STREAM_STDERR 2

struct shim_frame {
    uint8_t type;
    const uint8_t *payload; /* borrowed from the input buffer */
    uint32_t len;
};

/* Parses one frame from the front of buf. Returns the bytes it used (> 0) with *ret filled, 0 if buf
 * holds an incomplete frame, or -EMSGSIZE (payload over SHIM_FRAME_MAX) / -EBADMSG (unknown type, a
 * DATA frame shorter than its header or with a bad stream byte) for a frame that can never be valid.
 * Never reads past buf + len. */
long shim_frame_parse(const uint8_t *buf, size_t len, struct shim_frame *ret);

/* Writes a frame header for a payload of len bytes into hdr[SHIM_FRAME_HEADER]. */
void shim_frame_header(uint8_t hdr[SHIM_FRAME_HEADER], uint8_t type, uint32_t len);

/* Writes the frame header plus the DATA sub-header for len data bytes of stream at offset:
 * SHIM_FRAME_HEADER + SHIM_DATA_HEADER bytes. */
void shim_frame_data_header(uint8_t hdr[SHIM_FRAME_HEADER + SHIM_DATA_HEADER], uint8_t stream,
                            uint64_t offset, uint32_t len);

/* Splits a parsed DATA frame into stream, offset and bytes. Returns 0, or -EBADMSG when f is not a valid
 * DATA frame. */
int shim_frame_data_parse(const struct shim_frame *f, uint8_t *ret_stream, uint64_t *ret_offset,
                          const uint8_t **ret_data, size_t *ret_len);

/* Encodes a JSON object as a complete frame of the given type (header + compact JSON). Returns a malloc'd
 * buffer (caller frees) and its size in *ret_len, or NULL on OOM or a payload over SHIM_FRAME_MAX.
 * json is borrowed. */
struct json_t;
uint8_t *shim_frame_build_json(uint8_t type, struct json_t *json, size_t *ret_len);
