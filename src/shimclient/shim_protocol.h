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
 * STDIN frames and REQUEST frames {"op":"close_stdin"} / {"op":"signal","signal":N} / {"op":"kill"} /
 * {"op":"resize","cols":N,"rows":M} on an attached connection; they get no response. While the command's
 * stdin queue is full the shim stops reading the attached connection (back-pressure). A client that reads
 * slowly is fed at its own pace from the ring or the log file; the shim's memory does not grow with it.
 *
 * Requests:
 *   {"op":"ping"} → {"ok":true,"pid":<shim pid>,"init_pid":N,"init_alive":bool,"running":N,"commands":N}
 *   {"op":"exec","id":"cmd_..","argv":[..],"env":["K=V",..],"cwd":"/root","timeout_ms":N,
 *    "stdin_b64":"..", "stdin_open":false, "ttl_ms":N, "idle_timeout_ms":N, "kill_on_disconnect":false,
 *    "disconnect_grace_ms":N, "will_attach":false, "pty":false, "cols":80, "rows":24}
 *        → {"ok":true,"created":true|false,"command":<status>}   (existing id: created=false, the rest
 *          of the request is ignored). argv[0] without '/' is looked up in env's PATH. env is complete
 *          (nothing inherited). stdin_b64 is written first; stdin is then closed unless stdin_open.
 *          An argv[0] that cannot be executed still creates the command: state "exited",
 *          exit_code 127, error {"code":"command_not_found"}.
 *          pty:true runs it on a pseudo-terminal of cols x rows (1..1000, default 80x24): the shim opens
 *          the sandbox's /dev/pts/ptmx (through /proc/<init>/root, confined with RESOLVE_IN_ROOT, checked to
 *          be a devpts char device; the host's /dev/ptmx if that fails), opens the slave with TIOCGPTPEER,
 *          chowns it to the sandbox's root:tty and passes it to sbx-init as fds 0-2 with INIT_EXEC_CTTY
 *          (setsid + TIOCSCTTY). Output is the master, as stream 1 (stdout); stream 2 stays empty. stdin
 *          is written to the master (close_stdin only closes our write side: the terminal's input does
 *          not end; ^D does). EOF of the master (EIO once every slave fd is closed) ends the output.
 *          Limits: ≤4096 argv entries, ≤4096 env entries, ≤2 MiB of argv+env strings, ≤256 running
 *          commands (resource_exhausted), ≤4096 kept in memory (beyond that the oldest finished ones
 *          nobody streams expire early, as below). The lifecycle fields are described under "Lifecycle
 *          timers"; absent or null fields take the defaults.
 *   {"op":"status","id":".."}        → {"ok":true,"command":<status>}
 *   {"op":"list"}                    → {"ok":true,"commands":[<status>..]}   (oldest first)
 *   {"op":"stdin","id":"..","data_b64":"..","close":false} → {"ok":true}
 *        (conflict if stdin is closed, resource_exhausted above 8 MiB queued)
 *   {"op":"signal","id":"..","signal":N} → {"ok":true}   (to the command's leader process only)
 *   {"op":"kill","id":".."}          → {"ok":true}   (SIGKILL to the command's session, error "killed")
 *   {"op":"resize","id":"..","cols":N,"rows":M} → {"ok":true}   (1..1000 each; TIOCSWINSZ on a pty command's
 *        master, the kernel sends SIGWINCH; conflict (ENOTTY) without a pty; ok and nothing once its
 *        terminal is gone)
 *   {"op":"attach","id":"..","stdout_offset":N,"stderr_offset":M} → stream as described above
 *   {"op":"logs","id":"..","cursor":N,"limit":B}   (cursor default 0, limit 1..1 MiB, default 64 KiB)
 *        → {"ok":true,"cursor":N,"next_cursor":M,"log_bytes":T,"data_b64":"..",
 *           "chunks":[{"stream":1|2,"offset":O,"cursor":C,"len":L}..],"command":<status>}
 *        The combined log: stdout and stderr bytes in the order the shim read them from the pipes; a
 *        cursor counts bytes of both streams together (T = stdout_bytes + stderr_bytes). data_b64 is the
 *        bytes [N, M): at most B of them and at most 1024 chunks (one per run of one stream; offset is
 *        the chunk's first byte's offset within its own stream). M == N when nothing new is there yet.
 *        A cursor past T is invalid_argument. A logs read restarts a running command's idle clock.
 *   {"op":"connect","port":N}  (1..65535)
 *        → {"ok":true} with the connected TCP socket attached to the RESPONSE frame as SCM_RIGHTS (one fd;
 *          nonblocking, TCP_NODELAY; in the rare case of a full accept backlog still connecting). The
 *          shim makes the socket inside the sandbox's network namespace (setns to the namespace it opened
 *          at start, socket(), setns back: a socket belongs to the namespace it was created in) and
 *          connects it to 127.0.0.1:N, else [::1]:N. Nothing listening on either: error
 *          "connection_refused" (errno ECONNREFUSED). The connection must have nothing else queued
 *          (conflict otherwise); sbxd uses a connection of its own per call (shim_net.h).
 *   {"op":"ports"} → {"ok":true,"ports":[{"port":N,"address":"127.0.0.1"|"::"|..}..]}  TCP sockets in
 *        LISTEN state inside the sandbox (/proc/<init pid>/net/tcp and tcp6), sorted by port.
 *   {"op":"net_attach","host_if":"sbx…","host_addr":"10.231.0.5","sandbox_addr":"10.231.0.6","prefix":30}
 *        → {"ok":true,"ifindex":N}  network mode egress: a veth pair, host end host_if, eth0 inside with a
 *        default route via host_addr (runtime_net_attach). sbxd's nftables rules do the rest.
 *   {"op":"shutdown"} → the shim destroys the sandbox, answers {"ok":true} and exits
 * signal/kill on a command that has exited are no-ops answering ok.
 * status/logs/attach/signal/kill/stdin of an expired command answer the error code "expired" (errno ENOENT),
 * for the last 1024 expired ids; other unknown ids answer "not_found". exec with an expired id starts
 * a new command.
 *
 * Lifecycle timers (enforced in the shim's loop, so they hold while sbxd is down). Durations in ms,
 * at most 366 days; "attached" means an attach connection is open (sbxd holds one per SSE/WebSocket
 * stream and per wait:true request).
 *   ttl_ms (default 600000; -1 forever; 0 allowed): a finished command is forgotten ttl_ms after it
 *     finished: removed from memory and its files in logs/ deleted. Not while a stream is attached
 *     (a slow reader still gets every byte and the EXIT): then as soon as the last one detaches.
 *   idle_timeout_ms (default 300000; -1 never; 0 invalid): a running command is killed with error
 *     "idle_timeout" once nothing has been attached to it for that long. The clock runs from the start
 *     (nothing is attached yet), stops while anything is attached, restarts from zero at the last
 *     detach and at every logs request.
 *   kill_on_disconnect (default false) with disconnect_grace_ms (default 10000; 0 = at once): when the
 *     last attached client detaches, the command is killed with error "disconnected" after the grace
 *     period unless something attaches again before. A command nobody ever attached to is not killed by
 *     this (idle_timeout covers it). sbxd being killed closes all its attach connections, which looks
 *     the same as every client disconnecting: the grace period is what lets clients re-attach through a
 *     restarted sbxd.
 *   will_attach (default false): the caller attaches right after the answer (sbxd's wait:true). Until
 *     the first attach, but at most 30 s, the idle clock and the ttl wait for it, so a short ttl or idle
 *     timeout cannot beat the caller's attach.
 *
 * <status> = {"id","argv":[..],"state":"running"|"exited","pid":N|null,"exit_code":N|null,"signal":N|null,
 *             "error":null|{"code":"timeout"|"killed"|"command_not_found"|"idle_timeout"|"disconnected",
 *                           "message":".."},
 *             "stdout_bytes":N,"stderr_bytes":N,"started_at_ms":N,"finished_at_ms":N|null,
 *             "ttl_ms":N,"idle_timeout_ms":N,"kill_on_disconnect":bool,"disconnect_grace_ms":N,
 *             "attached":N (open attach connections),"log_bytes":N (combined log size),"pty":bool,
 *             "expires_at_ms":N|null (when a finished command will be forgotten, Unix ms)}
 * pid is inside the sandbox. A command killed by a signal has signal=N and exit_code=128+N. A command
 * is "exited" only once its exit is known and both output pipes reached EOF (or 2 s after the exit if
 * background processes hold them), so no DATA follows its EXIT. Timestamps are Unix ms.
 *
 * Files in <state_dir>/logs/ (kept after the shim is gone, for post-mortem; deleted when the command
 * expires): <cid>.stdout, <cid>.stderr (every byte; offset = file position; created only once the
 * stream outgrows the 256 KiB ring), <cid>.json (the last <status>, replaced atomically on start and on
 * exit; a command still "running" there when no shim is alive was lost), <cid>.log (the combined log,
 * every byte of both streams in arrival order; file position = cursor; created at the first output
 * byte) and <cid>.idx (16-byte records, one at each switch of stream in <cid>.log: u64 LE cursor, then
 * u64 LE stream offset | stream << 56). The combined log holds the same bytes as the two stream logs, so
 * a command's output takes up to twice its size on the host disk (plus 16 bytes per switch), for as
 * long as the command is kept; output itself is not capped.
 *
 * Error codes ("code" in errors): invalid_argument, too_large, not_found, expired, conflict,
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
