/** A sandbox: commands, files and lifecycle. */
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import { AgentSession, agentBody, toAgentInfo } from "./agent.js";
import type { AgentInfo, AgentOptions } from "./agent.js";
import { CommandHandle, fetchLogs } from "./command.js";
import { CodeContext, toContextInfo } from "./context.js";
import type { ContextInfo, ContextLanguage, CreateContextOptions, Execution, RunCodeOptions } from "./context.js";
import type { CommandContext, HandleOptions } from "./command.js";
import { InvalidArgumentError, NotFoundError } from "./errors.js";
import { Tunnel } from "./tunnel.js";
import type { TunnelOptions } from "./tunnel.js";
import type { Transport } from "./http.js";
import type { StreamTransport } from "./stream.js";
import { waitForSnapshot } from "./snapshot.js";
import {
  toCheckpointInfo,
  toCommandInfo,
  toFileEntry,
  toMetrics,
  toSandboxInfo,
  toSnapshotInfo,
  updateBody,
} from "./types.js";
import type {
  CaptureSnapshotOptions,
  CheckpointInfo,
  CommandInfo,
  ExecutionResult,
  FileEntry,
  ListeningPort,
  LogPage,
  NetworkInfo,
  SandboxInfo,
  SandboxMetrics,
  SandboxState,
  SnapshotInfo,
  UpdateSandboxOptions,
  VolumeMountInfo,
} from "./types.js";

// Node 20 has Symbol.asyncDispose; this keeps `await using` working on runtimes that lack it, the way
// TypeScript's own downlevel helpers look the symbol up.
const asyncDispose: typeof Symbol.asyncDispose =
  (Symbol as { asyncDispose?: typeof Symbol.asyncDispose }).asyncDispose ??
  (Symbol.for("Symbol.asyncDispose") as typeof Symbol.asyncDispose);

export interface RunOptions extends HandleOptions {
  /** `true` (default): resolve with the {@link ExecutionResult} once it exits. `false`: resolve with a {@link CommandHandle} at once. */
  wait?: boolean;
  /**
   * The command's id, `[A-Za-z0-9_.-]{1,64}`. Generated when absent. The server treats it as
   * get-or-create, which is what lets the SDK retry a start whose answer was lost without ever running
   * the command twice.
   */
  id?: string;
  /** Merged over the sandbox's env. */
  env?: Record<string, string>;
  /** Working directory (absolute), default `/root`. */
  cwd?: string;
  /**
   * Who the command runs as: a name from the sandbox's `/etc/passwd` (`"daemon"`), a uid (`"1000"`) or
   * `"UID:GID"`. Default root (or an image snapshot's `User`). Unknown or malformed: {@link InvalidArgumentError}.
   */
  user?: string;
  /** Seconds (fractions allowed) after which sbxd kills the command; `run` then throws {@link CommandTimeoutError}. */
  timeout?: number;
  /** Bytes written to stdin at start (UTF-8 string, ≤ 1 MiB). */
  stdin?: string;
  /**
   * Keep stdin open for `sendInput` / `closeStdin`. Default: `true` with `wait: false`, `false` otherwise
   * (stdin then reads end of file after `stdin`, if given).
   */
  stdinOpen?: boolean;
  /** Seconds a finished command stays reconnectable (default 600; -1 = forever). */
  ttlSeconds?: number;
  /** Seconds a running command may have no client attached before sbxd kills it (default 300; -1 = never). */
  idleTimeout?: number;
  /** Kill the command `disconnectGrace` seconds after its last attached client leaves (default false). */
  killOnDisconnect?: boolean;
  /** Seconds (0–300, default 10). */
  disconnectGrace?: number;
  /**
   * Run on a pseudo-terminal (default false): output is one stream (`stdout`, with `\r\n` and echo),
   * stdin is keystrokes (`\x03` is ^C), stdin stays open; resize with `handle.resize(cols, rows)`.
   */
  pty?: boolean;
  /** The terminal's columns, 1–1000 (default 80; with `pty` only). */
  cols?: number;
  /** The terminal's rows, 1–1000 (default 24; with `pty` only). */
  rows?: number;
}

/** A URL minted for a TCP port inside a sandbox (`sb.service(port)`). */
export interface ServiceUrl {
  /** The URL to give out (host form with `--service-domain`, else the path form). */
  url: string;
  /** The path form, `http://sbxd/s/{id}/{port}/`, which always works. */
  pathUrl: string;
  /** Sent as `X-Sbx-Service-Token` (or `?sbx_token=`); authorizes that port of that sandbox until `expiresAt`. */
  token: string;
  expiresAt: string;
  port: number;
  sandboxId: string;
  /** `url` with `?sbx_token=TOKEN` (for a browser or `curl -L`: sbxd answers 302 and sets a cookie). */
  browserUrl: string;
  /**
   * Node's `fetch` of `path` (relative to the service's root, e.g. `"/api?x=1"`) on the path form of the
   * URL, with the token header added. No API key is sent.
   */
  fetch(path?: string, init?: RequestInit): Promise<Response>;
}

export type FileData = string | Uint8Array | ArrayBuffer | Blob | Readable | AsyncIterable<Uint8Array>;

/** @internal What a Sandbox needs from its client. */
export interface SandboxContext {
  transport: Transport;
  streamTransport: StreamTransport;
}

/**
 * A sandbox on the daemon. Made by `client.createSandbox()`, `client.getSandbox()` or
 * `client.listSandboxes()`. `await using sb = await client.createSandbox()` deletes it at scope end.
 */
export class Sandbox implements AsyncDisposable {
  /** The sandbox as last seen; lifecycle calls and `refresh()` update it. */
  info: SandboxInfo;
  readonly #ctx: SandboxContext;

  /** @internal */
  constructor(ctx: SandboxContext, info: SandboxInfo) {
    this.#ctx = ctx;
    this.info = info;
  }

  get id(): string {
    return this.info.id;
  }
  get name(): string | null {
    return this.info.name;
  }
  /** The state as last seen (call `refresh()` for the current one). */
  get state(): SandboxState {
    return this.info.state;
  }
  /** The volumes mounted in the sandbox (`volume` is each one's id, `vol_...`); `[]` for none. */
  get volumes(): VolumeMountInfo[] {
    return this.info.volumes;
  }
  /** Its network as last seen: `mode`, `egress` (null for mode `none`), `address` (while running with egress). */
  get network(): NetworkInfo {
    return this.info.network;
  }

  #p(suffix = ""): string {
    return `/v1/sandboxes/${encodeURIComponent(this.info.id)}${suffix}`;
  }

  #cmdCtx(): CommandContext {
    return { transport: this.#ctx.transport, streamTransport: this.#ctx.streamTransport, sandboxId: this.info.id };
  }

  async #update(method: string, suffix: string, json?: unknown): Promise<SandboxInfo> {
    const t = this.#ctx.transport;
    // stop/start/pause/resume are idempotent on the server: safe to retry after a network failure.
    const o = json === undefined ? { retry: "always" as const } : { json, retry: "always" as const };
    this.info = toSandboxInfo(await t.json(method, this.#p(suffix), o));
    return this.info;
  }

  /* ------------------------------------------------------------ lifecycle */

  /** Fetches the sandbox again. */
  async refresh(): Promise<SandboxInfo> {
    this.info = toSandboxInfo(await this.#ctx.transport.json("GET", this.#p()));
    return this.info;
  }

  /** Kills every process and unmounts; files are kept. Idempotent. */
  stop(): Promise<SandboxInfo> {
    return this.#update("POST", "/stop");
  }
  /** Starts a stopped (or failed) sandbox again with the same files; resumes a paused one. Idempotent. */
  start(): Promise<SandboxInfo> {
    return this.#update("POST", "/start");
  }
  /** Freezes every process (no CPU, memory kept). Idempotent. */
  pause(): Promise<SandboxInfo> {
    return this.#update("POST", "/pause");
  }
  /** Thaws a paused sandbox. Idempotent. */
  resume(): Promise<SandboxInfo> {
    return this.#update("POST", "/resume");
  }
  /** Restarts the lifetime: `expiresAt` = now + `timeoutSeconds` (which also becomes the sandbox's). */
  renew(options: { timeoutSeconds?: number } = {}): Promise<SandboxInfo> {
    const body = options.timeoutSeconds === undefined ? {} : { timeout_seconds: options.timeoutSeconds };
    return this.#update("POST", "/renew", body);
  }
  /**
   * Changes lifecycle settings, replaces metadata and/or replaces the egress policy
   * (`{network: {egress: {allow: [...]}}}`: effective at once for new connections; mode `egress` only).
   */
  update(options: UpdateSandboxOptions): Promise<SandboxInfo> {
    return this.#update("PATCH", "", updateBody(options));
  }
  /** CPU, memory, pids and disk usage now. */
  async metrics(): Promise<SandboxMetrics> {
    return toMetrics(await this.#ctx.transport.json("GET", this.#p("/metrics")));
  }
  /** Deletes the sandbox and its files. */
  async delete(): Promise<void> {
    await this.#ctx.transport.request("DELETE", this.#p());
    this.info = { ...this.info, state: "deleted" };
  }

  /** `await using sb = ...`: deletes the sandbox at scope end (an already deleted one is fine). */
  async [asyncDispose](): Promise<void> {
    try {
      await this.delete();
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }

  /* ------------------------------------------------------------ checkpoints and fork */

  /** The path of a checkpoint of this sandbox, by name or by its {@link CheckpointInfo}. */
  #ckp(checkpoint: string | CheckpointInfo, suffix = ""): string {
    if (typeof checkpoint !== "string" && checkpoint.sandboxId && checkpoint.sandboxId !== this.info.id)
      throw new InvalidArgumentError(
        `checkpoint ${checkpoint.id} is of sandbox ${checkpoint.sandboxId}, not ${this.info.id}`,
        "invalid_argument",
        0,
      );
    const name = typeof checkpoint === "string" ? checkpoint : checkpoint.name;
    if (!name) throw new InvalidArgumentError("empty checkpoint name", "invalid_argument", 0);
    return this.#p(`/checkpoints/${encodeURIComponent(name)}${suffix}`);
  }

  /**
   * Copies everything the sandbox wrote (its disk) into a checkpoint, with its filesystem frozen for the
   * length of the copy (processes keep running; their writes wait). Processes and memory are not part of
   * it. Resolves when the copy is done. `name`: unique per sandbox, `[A-Za-z0-9_.-]{1,64}` (default: the
   * checkpoint's id). Throws {@link ConflictError} for a taken name, {@link BusyError} while another
   * checkpoint, restore or fork of the sandbox runs.
   */
  async checkpoint(options: { name?: string } = {}): Promise<CheckpointInfo> {
    const json = options.name === undefined ? {} : { name: options.name };
    // Not retried once sent (an unnamed one would be made twice); no request timeout: the copy takes
    // as long as the data written.
    return toCheckpointInfo(await this.#ctx.transport.json("POST", this.#p("/checkpoints"), { json, timeoutMs: 0 }));
  }

  /** The sandbox's checkpoints, oldest first. */
  async listCheckpoints(): Promise<CheckpointInfo[]> {
    const j = await this.#ctx.transport.json("GET", this.#p("/checkpoints"));
    return (j.checkpoints ?? []).map(toCheckpointInfo);
  }

  /** A checkpoint by name. Throws {@link NotFoundError} when unknown. */
  async getCheckpoint(name: string | CheckpointInfo): Promise<CheckpointInfo> {
    return toCheckpointInfo(await this.#ctx.transport.json("GET", this.#ckp(name)));
  }

  /** Deletes a checkpoint by name ({@link BusyError} while a sandbox is being created from it). */
  async deleteCheckpoint(name: string | CheckpointInfo): Promise<void> {
    await this.#ctx.transport.request("DELETE", this.#ckp(name));
  }

  /**
   * Puts the sandbox's files back as they were at a checkpoint (by name, or a {@link CheckpointInfo} of
   * this sandbox). Its processes end; a running or paused sandbox is started again (with no processes),
   * a stopped one stays stopped. Updates and resolves with `info`.
   */
  async restore(checkpoint: string | CheckpointInfo): Promise<SandboxInfo> {
    const path = this.#ckp(checkpoint, "/restore");
    this.info = toSandboxInfo(await this.#ctx.transport.json("POST", path, { timeoutMs: 0 }));
    return this.info;
  }

  /**
   * `count` (1–16, default 1) new sandboxes, each with a copy of this sandbox's files as they are now
   * and its snapshot, env, metadata, resources and lifecycle settings; no name, no processes. All or
   * nothing. Delete them when done (`await using` works on each).
   */
  async fork(options: { count?: number } = {}): Promise<Sandbox[]> {
    const json = options.count === undefined ? {} : { count: options.count };
    const j = await this.#ctx.transport.json("POST", this.#p("/fork"), { json, timeoutMs: 0 });
    return (j.sandboxes ?? []).map((s: Record<string, unknown>) => new Sandbox(this.#ctx, toSandboxInfo(s)));
  }

  /* ------------------------------------------------------------ snapshots */

  /**
   * Makes a snapshot of the sandbox's files: everything it wrote, deleted or replaced over its snapshot
   * becomes one new layer over that snapshot's layers (shared, not copied), with its config. New
   * sandboxes start from it with `client.createSandbox({snapshot: name})`; it outlives this sandbox
   * (unlike a checkpoint). Processes and memory are not part of it. A running or paused sandbox's disk is
   * frozen during the copy (writers wait; commands keep running); until it ends, stop, start, delete,
   * checkpoints, fork and file calls reject with {@link BusyError}.
   *
   * `name`: unique across all snapshots, `[A-Za-z0-9_.-]{1,64}` (`host` is reserved); the caller's key
   * owns the snapshot. With `wait` (default) resolves once it is `ready` and rejects with
   * {@link SnapshotFailedError} (`reason`: a file owned outside the sandbox's id range, a name starting
   * with `.wh.`, too much content) when the capture fails. Rejects at once with {@link NotFoundError}
   * for an unknown sandbox, {@link ConflictError} for a taken name, {@link InvalidArgumentError} for a
   * bad one, {@link BusyError} while another capture, checkpoint, restore or fork of it runs.
   */
  async captureSnapshot(name: string, options: CaptureSnapshotOptions = {}): Promise<SnapshotInfo> {
    const t = this.#ctx.transport;
    const snap = toSnapshotInfo(await t.json("POST", this.#p("/capture"), { json: { name } }));
    if (options.wait === false) return snap;
    return waitForSnapshot(t, snap, { pollInterval: options.pollInterval, timeout: options.timeout });
  }

  /* ------------------------------------------------------------ commands */

  /**
   * Runs a command: a string runs as `/bin/sh -c STRING`, an array is argv (resolved with `PATH`).
   * By default waits and resolves with its {@link ExecutionResult} (a non-zero exit is not an error);
   * with `{wait: false}` resolves at once with a {@link CommandHandle}. Output reaches `onStdout` /
   * `onStderr` live. A dropped connection is re-attached from the byte offsets already received.
   */
  run(command: string | string[], options?: RunOptions & { wait?: true }): Promise<ExecutionResult>;
  run(command: string | string[], options: RunOptions & { wait: false }): Promise<CommandHandle>;
  run(command: string | string[], options?: RunOptions): Promise<ExecutionResult | CommandHandle>;
  async run(command: string | string[], options: RunOptions = {}): Promise<ExecutionResult | CommandHandle> {
    const wait = options.wait ?? true;
    const body: Record<string, unknown> = {
      id: options.id ?? `cmd_${randomBytes(12).toString("hex")}`,
      command,
      stdin_open: options.stdinOpen ?? !wait,
    };
    if (options.env !== undefined) body.env = options.env;
    if (options.cwd !== undefined) body.cwd = options.cwd;
    if (options.user !== undefined) body.user = options.user;
    if (options.timeout !== undefined) body.timeout = options.timeout;
    if (options.stdin !== undefined) body.stdin = options.stdin;
    if (options.ttlSeconds !== undefined) body.ttl_seconds = options.ttlSeconds;
    if (options.idleTimeout !== undefined) body.idle_timeout = options.idleTimeout;
    if (options.killOnDisconnect !== undefined) body.kill_on_disconnect = options.killOnDisconnect;
    if (options.disconnectGrace !== undefined) body.disconnect_grace = options.disconnectGrace;
    if (options.pty) {
      body.pty = true;
      if (options.stdinOpen === undefined) body.stdin_open = true; // a terminal's default
      if (options.cols !== undefined) body.cols = options.cols;
      if (options.rows !== undefined) body.rows = options.rows;
    }
    // The id makes the start get-or-create: retrying after any network failure never runs it twice.
    const info = toCommandInfo(
      await this.#ctx.transport.json("POST", this.#p("/commands"), { json: body, retry: "always" }),
    );
    const h = new CommandHandle(this.#cmdCtx(), info, handleOptions(options));
    return wait ? h.result : h;
  }

  /**
   * An interactive shell on a pseudo-terminal: `run(["/bin/sh"], {pty: true, wait: false, ...})`.
   * Type with `sendInput` (`"exit\n"` or `"\x04"` ends it), read the handle, `resize` it.
   */
  shell(options: Omit<RunOptions, "wait" | "pty"> & { shell?: string | string[] } = {}): Promise<CommandHandle> {
    const { shell, ...rest } = options;
    const cmd = shell === undefined ? ["/bin/sh"] : typeof shell === "string" ? [shell] : shell;
    return this.run(cmd, { ...rest, pty: true, wait: false });
  }

  /* ------------------------------------------------------------ code contexts (context.ts) */

  /**
   * Starts a code context: a persistent `python`, `node` or `bash` interpreter whose variables, imports and
   * working directory persist between {@link CodeContext.run} calls. Throws {@link InvalidArgumentError} for
   * an unsupported language (or one not installed in the image), {@link ResourceExhaustedError} past 16
   * live contexts.
   */
  async createContext(language: ContextLanguage | string = "python", options: CreateContextOptions = {}): Promise<CodeContext> {
    const j = await this.#ctx.transport.json("POST", this.#p("/contexts"), {
      json: { language, cwd: options.cwd, env: options.env },
    });
    return new CodeContext(this.#ctx.transport, this.#p(), toContextInfo(j));
  }

  async getContext(contextId: string): Promise<CodeContext> {
    const j = await this.#ctx.transport.json("GET", this.#p(`/contexts/${encodeURIComponent(contextId)}`));
    return new CodeContext(this.#ctx.transport, this.#p(), toContextInfo(j));
  }

  /** Every code context of the sandbox (idle, busy or ended), oldest first. */
  async contexts(): Promise<ContextInfo[]> {
    const j = await this.#ctx.transport.json("GET", this.#p("/contexts"));
    return (j.contexts ?? []).map(toContextInfo);
  }

  /** Runs `code` once in a new context of `language` and deletes the context afterwards. */
  async runCode(code: string, options: RunCodeOptions & { language?: ContextLanguage | string } = {}): Promise<Execution> {
    const { language, ...rest } = options;
    const ctx = await this.createContext(language ?? "python");
    try {
      return await ctx.run(code, rest);
    } finally {
      await ctx.delete({ missingOk: true });
    }
  }

  /* ------------------------------------------------------------ agent sessions (agent.ts) */

  /**
   * Starts an agent session (the daemon's agent command, by default the `claude` CLI in stream-JSON
   * mode, or `options.command`) with a first prompt; iterate the session for its events. Throws
   * {@link CommandNotFoundError} when the agent program is not in the sandbox.
   */
  async agent(prompt?: string, options: AgentOptions = {}): Promise<AgentSession> {
    const j = await this.#ctx.transport.json("POST", this.#p("/agents"), { json: agentBody(prompt, options) });
    return new AgentSession(this.#ctx.transport, toAgentInfo(j), 0, options.stderr ?? false);
  }

  /** A handle on an existing session whose events start at `fromOffset` (0: all of them). */
  async attachAgent(agentId: string, options: { fromOffset?: number; stderr?: boolean } = {}): Promise<AgentSession> {
    const info = await this.getAgent(agentId);
    return new AgentSession(this.#ctx.transport, info, options.fromOffset ?? 0, options.stderr ?? false);
  }

  async getAgent(agentId: string): Promise<AgentInfo> {
    return toAgentInfo(await this.#ctx.transport.json("GET", this.#p(`/agents/${encodeURIComponent(agentId)}`)));
  }

  /** Every agent session of the sandbox (running and exited), oldest first. */
  async agents(): Promise<AgentInfo[]> {
    const j = await this.#ctx.transport.json("GET", this.#p("/agents"));
    return (j.agents ?? []).map(toAgentInfo);
  }

  /**
   * Attaches to an existing command by id: the handle replays its output from the start (or from the
   * given offsets) and then follows it live. Throws {@link NotFoundError} for an unknown id and
   * {@link ExpiredError} for one whose `ttlSeconds` ran out.
   */
  async reconnect(commandId: string, options: HandleOptions = {}): Promise<CommandHandle> {
    const info = await this.getCommand(commandId);
    return new CommandHandle(this.#cmdCtx(), info, handleOptions(options));
  }

  /** The command object. */
  async getCommand(commandId: string): Promise<CommandInfo> {
    return toCommandInfo(
      await this.#ctx.transport.json("GET", this.#p(`/commands/${encodeURIComponent(commandId)}`)),
    );
  }

  /** Every command the sandbox keeps (running, and finished ones not yet expired), oldest first. */
  async listCommands(): Promise<CommandInfo[]> {
    const j = await this.#ctx.transport.json("GET", this.#p("/commands"));
    return (j.commands ?? []).map(toCommandInfo);
  }

  /**
   * One page of a command's combined log (stdout and stderr interleaved), for polling a background
   * command without holding a stream open: ask again with `cursor = page.nextCursor` until `page.eof`.
   */
  logs(commandId: string, options: { cursor?: number; limit?: number } = {}): Promise<LogPage> {
    return fetchLogs(this.#ctx.transport, this.info.id, commandId, options);
  }

  /* ------------------------------------------------------------ services */

  /**
   * Mints a URL (and token) for a TCP port inside the sandbox: sbxd proxies HTTP and WebSocket to
   * `127.0.0.1:port` (or `[::1]:port`) inside. `expiresIn` in seconds (1–604800, default 3600). The
   * sandbox need not be running nor the port open yet.
   */
  async service(port: number, options: { expiresIn?: number } = {}): Promise<ServiceUrl> {
    const json = options.expiresIn === undefined ? {} : { expires_in_seconds: options.expiresIn };
    const j = await this.#ctx.transport.json("POST", this.#p(`/ports/${encodeURIComponent(String(port))}/url`), {
      json,
    });
    const url: string = j.url;
    const pathUrl: string = j.path_url ?? url;
    const token: string = j.token;
    const base = pathUrl.replace(/\/+$/, "");
    return {
      url,
      pathUrl,
      token,
      expiresAt: j.expires_at,
      port: j.port ?? port,
      sandboxId: j.sandbox_id ?? this.info.id,
      browserUrl: `${url}${url.includes("?") ? "&" : "?"}sbx_token=${encodeURIComponent(token)}`,
      fetch: (path = "/", init: RequestInit = {}) => {
        const headers = new Headers(init.headers);
        headers.set("X-Sbx-Service-Token", token);
        return fetch(base + (path.startsWith("/") ? path : `/${path}`), { ...init, headers });
      },
    };
  }

  /** TCP sockets listening inside the sandbox, sorted by port (`NotRunningError` when it is stopped). */
  async ports(): Promise<ListeningPort[]> {
    const j = await this.#ctx.transport.json("GET", this.#p("/ports"));
    return (j.ports ?? []).map((p: { port: number; address: string }) => ({ port: p.port, address: p.address }));
  }

  /**
   * A TCP tunnel: listens on a local port (`localPort`, default any free one, on `127.0.0.1`) and
   * carries each connection to `remotePort` inside the sandbox over one WebSocket (yamux). Errors such
   * as {@link NotFoundError} or {@link NotRunningError} surface here. `await using t = await
   * sb.tunnel(5432)` closes it at scope end; else call `t.close()`.
   */
  async tunnel(remotePort: number, options: TunnelOptions = {}): Promise<Tunnel> {
    return new Tunnel(this.#ctx.transport, this.#p("/tunnel"), remotePort).start(options);
  }

  /* ------------------------------------------------------------ files */

  /**
   * Writes a file (missing parent directories are made; readers never see it half-written).
   * `data` may be a string (UTF-8), bytes, a Blob, a Node Readable or an async iterable of bytes (streamed).
   */
  async write(path: string, data: FileData, options: { mode?: number | string } = {}): Promise<FileEntry> {
    const mode = typeof options.mode === "number" ? options.mode.toString(8).padStart(4, "0") : options.mode;
    const body = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    const res = await this.#ctx.transport.request("PUT", this.#p("/files"), {
      query: { path, mode },
      body: body as never,
      headers: { "Content-Type": "application/octet-stream" },
      retry: "always", // a PUT replaces the whole file: idempotent
    });
    return toFileEntry((await res.json()) as Record<string, unknown>);
  }

  /** Reads a file's bytes; `offset`/`length` read a range. */
  async read(path: string, options: { offset?: number; length?: number } = {}): Promise<Buffer> {
    const headers: Record<string, string> = {};
    if (options.offset !== undefined || options.length !== undefined) {
      const start = options.offset ?? 0;
      headers.Range =
        options.length !== undefined ? `bytes=${start}-${start + options.length - 1}` : `bytes=${start}-`;
    }
    const res = await this.#ctx.transport.request("GET", this.#p("/files"), { query: { path }, headers });
    return Buffer.from(await res.arrayBuffer());
  }

  /** Reads a file as UTF-8 text. */
  async readText(path: string): Promise<string> {
    return (await this.read(path)).toString("utf8");
  }

  /** The entries of a directory. */
  async ls(path: string): Promise<FileEntry[]> {
    const j = await this.#ctx.transport.json("GET", this.#p("/files/list"), { query: { path } });
    return (j.entries ?? []).map(toFileEntry);
  }

  /** One entry (a symlink itself, not its target). Throws {@link NotFoundError} when absent. */
  async stat(path: string): Promise<FileEntry> {
    return toFileEntry(await this.#ctx.transport.json("GET", this.#p("/files/stat"), { query: { path } }));
  }

  /** Whether a path exists. */
  async exists(path: string): Promise<boolean> {
    try {
      await this.stat(path);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }

  /** Makes a directory and its missing parents (like `mkdir -p`). */
  async mkdir(path: string, options: { mode?: number | string } = {}): Promise<FileEntry> {
    const mode = typeof options.mode === "number" ? options.mode.toString(8).padStart(4, "0") : options.mode;
    const json = mode === undefined ? { path } : { path, mode };
    return toFileEntry(await this.#ctx.transport.json("POST", this.#p("/files/mkdir"), { json, retry: "always" }));
  }

  /** Removes a file or an empty directory; `recursive: true` removes a tree ({@link ConflictError} without it). */
  async remove(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    await this.#ctx.transport.request("DELETE", this.#p("/files"), {
      query: { path, recursive: options.recursive ? "true" : undefined },
    });
  }

  /** Renames `from` to `to`; `overwrite: true` replaces an existing `to`. */
  async move(from: string, to: string, options: { overwrite?: boolean } = {}): Promise<FileEntry> {
    const json: Record<string, unknown> = { from, to };
    if (options.overwrite !== undefined) json.overwrite = options.overwrite;
    return toFileEntry(await this.#ctx.transport.json("POST", this.#p("/files/move"), { json }));
  }

  toJSON(): SandboxInfo {
    return this.info;
  }
}

function handleOptions(o: HandleOptions): HandleOptions {
  const h: HandleOptions = {};
  if (o.onStdout) h.onStdout = o.onStdout;
  if (o.onStderr) h.onStderr = o.onStderr;
  if (o.stdoutOffset !== undefined) h.stdoutOffset = o.stdoutOffset;
  if (o.stderrOffset !== undefined) h.stderrOffset = o.stderrOffset;
  return h;
}
