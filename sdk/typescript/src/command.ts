/** Running commands: the handle returned by `sb.run(cmd, {wait: false})` and `sb.reconnect(id)`. */
import { CommandTimeoutError, ConnectionError, InvalidArgumentError, SandboxError } from "./errors.js";
import type { Transport } from "./http.js";
import { attach, markUserError } from "./stream.js";
import type { Json, StreamTransport } from "./stream.js";
import { chunkBytes, toCommandInfo } from "./types.js";
import type { CommandInfo, ExecutionResult, LogPage, OutputChunk, StreamName } from "./types.js";

/** @internal What a handle needs from its sandbox. */
export interface CommandContext {
  transport: Transport;
  streamTransport: StreamTransport;
  sandboxId: string;
}

export interface HandleOptions {
  /** Called with each piece of stdout, in order, exactly once. */
  onStdout?: (data: string, chunk: OutputChunk) => void;
  /** Called with each piece of stderr, in order, exactly once. */
  onStderr?: (data: string, chunk: OutputChunk) => void;
  /** Start from these byte offsets (default 0: the whole output is replayed). */
  stdoutOffset?: number;
  stderrOffset?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A command running (or finished) in a sandbox. It streams the command's output as soon as it is made,
 * reconnecting from the last byte offsets it saw whenever the connection drops, so every byte arrives
 * exactly once.
 *
 * - `for await (const {stream, data} of handle)` yields the output chunks (one consumer);
 * - `await handle.result` is the {@link ExecutionResult} once the command exits (with the whole output);
 * - `sendInput`, `closeStdin`, `signal`, `kill` act on the process.
 */
export class CommandHandle implements AsyncIterable<OutputChunk> {
  /** The command's id (client-chosen or server-generated). */
  readonly id: string;
  /** The sandbox the command runs in. */
  readonly sandboxId: string;
  /** The command object as last seen (refreshed on exit and by `refresh()`). */
  info: CommandInfo;

  readonly #ctx: CommandContext;
  readonly #opts: HandleOptions;
  readonly #offsets: { stdout: number; stderr: number };
  readonly #decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  readonly #text: { stdout: string[]; stderr: string[] } = { stdout: [], stderr: [] };
  readonly #queue: OutputChunk[] = [];
  #wake: (() => void) | null = null;
  #ended = false;
  #failure: unknown = null;
  #iterating = false;
  readonly #abort = new AbortController();
  readonly #result: Promise<ExecutionResult>;
  #reconnects = 0;
  #send: ((text: string) => boolean) | null = null;

  /** @internal Use `sandbox.run(..., {wait: false})` or `sandbox.reconnect(id)`. */
  constructor(ctx: CommandContext, info: CommandInfo, opts: HandleOptions = {}) {
    this.#ctx = ctx;
    this.#opts = opts;
    this.id = info.id;
    this.sandboxId = ctx.sandboxId;
    this.info = info;
    this.#offsets = { stdout: opts.stdoutOffset ?? 0, stderr: opts.stderrOffset ?? 0 };
    this.#result = this.#pump();
    this.#result.catch(() => {}); // surfaced through `result` and the iterator, never as an unhandled rejection
  }

  /** Alias of `id`. */
  get commandId(): string {
    return this.id;
  }

  /** The process id inside the sandbox. */
  get pid(): number | null {
    return this.info.pid;
  }

  /** Bytes of stdout and stderr received so far (the offsets a reconnect would start from). */
  get offsets(): { stdout: number; stderr: number } {
    return { ...this.#offsets };
  }

  /** How many times the output stream was re-attached after a dropped connection. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /**
   * The result once the command has exited: exit code, signal and the output received by this handle.
   * Rejects with {@link CommandTimeoutError} when the command was killed by its `timeout`, with
   * {@link ConnectionError} when the daemon stayed unreachable longer than `reconnectTimeout`.
   */
  get result(): Promise<ExecutionResult> {
    return this.#result;
  }

  /** Same as `await handle.result`. */
  wait(): Promise<ExecutionResult> {
    return this.#result;
  }

  #path(suffix = ""): string {
    return `/v1/sandboxes/${encodeURIComponent(this.sandboxId)}/commands/${encodeURIComponent(this.id)}${suffix}`;
  }

  /** Writes to the command's stdin (it must have been started with stdin open, the default for `wait: false`). */
  async sendInput(data: string | Uint8Array): Promise<void> {
    await this.#ctx.transport.request("POST", this.#path("/stdin"), {
      body: typeof data === "string" ? Buffer.from(data) : data,
      headers: { "Content-Type": "application/octet-stream" },
    });
  }

  /** Closes the command's stdin (it sees end of file). */
  async closeStdin(): Promise<void> {
    await this.#ctx.transport.request("POST", this.#path("/stdin"), {
      query: { close: "true" },
      body: new Uint8Array(0),
      headers: { "Content-Type": "application/octet-stream" },
      retry: "always",
    });
  }

  /** Sends a signal (name like `"SIGINT"` or number) to the command's process. */
  async signal(signal: string | number = "SIGTERM"): Promise<void> {
    await this.#ctx.transport.request("POST", this.#path("/signal"), { json: { signal }, retry: "always" });
  }

  /**
   * Sets a pty command's window size (`cols` × `rows`, integers 1–1000); the program gets SIGWINCH.
   * Sent over the output WebSocket when that is open, else with `POST .../resize` (which throws
   * {@link ConflictError} for a command without a pty). A command that has exited: nothing happens.
   */
  async resize(cols: number, rows: number): Promise<void> {
    for (const [k, v] of [["cols", cols], ["rows", rows]] as const)
      if (!Number.isInteger(v) || v < 1 || v > 1000)
        throw new InvalidArgumentError(`${k} must be an integer 1-1000, not ${v}`, "invalid_argument", 0);
    if (this.info.pty && this.#send?.(JSON.stringify({ type: "resize", cols, rows }))) return;
    await this.#ctx.transport.request("POST", this.#path("/resize"), { json: { cols, rows }, retry: "always" });
  }

  /** SIGKILL to the command's process group; its result's `error.code` becomes `killed`. */
  async kill(): Promise<void> {
    await this.#ctx.transport.request("POST", this.#path("/kill"), { retry: "always" });
  }

  /** Fetches the command object again. */
  async refresh(): Promise<CommandInfo> {
    this.info = toCommandInfo(await this.#ctx.transport.json("GET", this.#path()));
    return this.info;
  }

  /** One page of the combined log (see {@link Sandbox.logs}). */
  logs(options: { cursor?: number; limit?: number } = {}): Promise<LogPage> {
    return fetchLogs(this.#ctx.transport, this.sandboxId, this.id, options);
  }

  /** Stops streaming (the command keeps running; `result` rejects if it had not exited yet). */
  close(): void {
    this.#abort.abort();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<OutputChunk> {
    if (this.#iterating) throw new Error("a CommandHandle can be iterated by one consumer at a time");
    this.#iterating = true;
    try {
      for (;;) {
        const c = this.#queue.shift();
        if (c) {
          yield c;
          continue;
        }
        if (this.#ended) {
          if (this.#failure && !(this.#failure instanceof CommandTimeoutError)) throw this.#failure;
          return;
        }
        await new Promise<void>((r) => (this.#wake = r));
      }
    } finally {
      this.#iterating = false;
    }
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  #onOutput(j: Json): void {
    const stream: StreamName = j.stream === "stderr" ? "stderr" : "stdout";
    let bytes = chunkBytes(j);
    let offset = typeof j.offset === "number" ? j.offset : this.#offsets[stream];
    const have = this.#offsets[stream];
    if (offset + bytes.length <= have) return; // already seen (a replay after reconnecting)
    if (offset < have) {
      bytes = bytes.subarray(have - offset);
      offset = have;
    }
    this.#offsets[stream] = offset + bytes.length;
    const data = this.#decoders[stream].decode(bytes, { stream: true });
    this.#text[stream].push(data);
    const chunk: OutputChunk = { stream, data, bytes, offset };
    this.#queue.push(chunk);
    this.#notify();
    const cb = stream === "stdout" ? this.#opts.onStdout : this.#opts.onStderr;
    if (cb) {
      try {
        cb(data, chunk);
      } catch (e) {
        throw markUserError(e);
      }
    }
  }

  async #pump(): Promise<ExecutionResult> {
    const t = this.#ctx.transport;
    let exitJson: Json | null = null;
    let delay = 50;
    let lastProgress = Date.now();
    try {
      for (;;) {
        if (this.#abort.signal.aborted) throw new SandboxError("stream closed by close()", "closed");
        const before = this.#offsets.stdout + this.#offsets.stderr;
        let end;
        try {
          end = await attach(
            t,
            this.#ctx.streamTransport,
            this.#path("/stream"),
            this.#offsets,
            {
              output: (j) => this.#onOutput(j),
              exit: (j) => {
                exitJson = j;
              },
              socket: (send) => {
                this.#send = send;
              },
            },
            this.#abort.signal,
          );
        } catch (e) {
          if (e instanceof SandboxError && e.status >= 500 && e.status !== 501) end = "dropped" as const;
          else throw e;
        }
        if (end === "exit" && exitJson) break;
        if (this.#abort.signal.aborted) throw new SandboxError("stream closed by close()", "closed");
        // Dropped: reconnect from the offsets, with backoff, while the daemon answers within reconnectTimeout.
        if (this.#offsets.stdout + this.#offsets.stderr > before) {
          lastProgress = Date.now();
          delay = 50;
        }
        if (Date.now() - lastProgress > t.reconnectTimeoutMs)
          throw new ConnectionError(
            `stream of command ${this.id} dropped and the daemon did not answer again within ${t.reconnectTimeoutMs} ms`,
          );
        this.#reconnects++;
        await sleep(delay);
        delay = Math.min(delay * 2, 1000);
      }
      const ej = exitJson as Json;
      for (const s of ["stdout", "stderr"] as const) this.#text[s].push(this.#decoders[s].decode());
      this.info = toCommandInfo(ej);
      const result: ExecutionResult = {
        commandId: this.id,
        exitCode: this.info.exitCode ?? -1,
        signal: this.info.signal,
        error: this.info.error,
        stdout: this.#text.stdout.join(""),
        stderr: this.#text.stderr.join(""),
        success: this.info.exitCode === 0,
        info: this.info,
      };
      if (result.error?.code === "timeout") throw new CommandTimeoutError(result);
      return result;
    } catch (e) {
      if (e && typeof e === "object") delete (e as { __sbxUser?: boolean }).__sbxUser;
      this.#failure = e;
      throw e;
    } finally {
      this.#ended = true;
      this.#notify();
    }
  }
}

/** @internal */
export async function fetchLogs(
  t: Transport,
  sandboxId: string,
  commandId: string,
  o: { cursor?: number; limit?: number },
): Promise<LogPage> {
  const j: Json = await t.json(
    "GET",
    `/v1/sandboxes/${encodeURIComponent(sandboxId)}/commands/${encodeURIComponent(commandId)}/logs`,
    { query: { cursor: o.cursor, limit: o.limit } },
  );
  return {
    cursor: j.cursor,
    nextCursor: j.next_cursor,
    logBytes: j.log_bytes,
    finished: !!j.finished,
    eof: !!j.eof,
    chunks: (j.chunks ?? []).map((c: Json) => {
      const bytes = chunkBytes(c);
      return { stream: c.stream, offset: c.offset, cursor: c.cursor, data: Buffer.from(bytes).toString("utf8"), bytes };
    }),
    command: toCommandInfo(j.command),
  };
}
