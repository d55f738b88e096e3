/**
 * Code contexts: persistent `python`, `node` or `bash` interpreters in a sandbox that run code cell by cell,
 * keeping variables, imports and the working directory between runs (docs/api.md, "Code contexts").
 *
 * ```ts
 * const ctx = await sb.createContext("python");
 * await ctx.run("import math\nr = 2");
 * const ex = await ctx.run("math.pi * r ** 2", { onStdout: (s) => process.stdout.write(s) });
 * ex.text; // '12.566370614359172'
 * ```
 *
 * A cell that raises is a normal result ({@link Execution.error}), not a thrown error; the SDK throws only
 * for requests that fail (unknown context: {@link NotFoundError}; busy or ended: {@link ConflictError}).
 */
import { SandboxError } from "./errors.js";
import type { Transport } from "./http.js";

export type ContextLanguage = "python" | "node" | "bash";

export interface ContextInfo {
  id: string;
  language: string;
  cwd: string;
  /** `idle`, `busy` (a cell runs) or `ended` (the interpreter exited, or the sandbox stopped). */
  state: string;
  createdAt: string | null;
}

export interface CreateContextOptions {
  /** The interpreter's working directory (an existing directory); default the snapshot's (`/root`). */
  cwd?: string;
  /** Environment of the interpreter, over the sandbox's. */
  env?: Record<string, string>;
}

/** A mime bundle: `{"text/plain": ..., "image/png": "<base64>", "text/html": ..., "application/json": {...}}`. */
export type MimeBundle = Record<string, unknown>;

export interface ExecutionError {
  /** `ValueError`, `TypeError`, ...; `KeyboardInterrupt` after an interrupt (every language); `CommandExecError`
   * for a bash cell with a non-zero status; `ContextEnded` when the interpreter itself exited. */
  name: string;
  value: string;
  traceback: string[];
}

export interface Execution {
  executionCount: number | null;
  /** The last expression's value as `text/plain` (python repr, node util.inspect). */
  text?: string;
  /** Every representation of the last value. */
  data: MimeBundle;
  /** Rich outputs the cell displayed (`display(...)`, `display_file(...)`), in order. */
  outputs: MimeBundle[];
  stdout: string;
  stderr: string;
  error?: ExecutionError;
  exitCode?: number;
  durationMs: number;
  timedOut: boolean;
  contextEnded: boolean;
  /** Every PNG the run produced (outputs, then the value's), decoded. */
  images: Buffer[];
}

export interface RunCodeOptions {
  /** Seconds after which the cell is interrupted (`timedOut` is then set). Default: none. */
  timeout?: number;
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
  onDisplay?: (bundle: MimeBundle) => void;
}

export function toContextInfo(j: Record<string, any>): ContextInfo { // eslint-disable-line @typescript-eslint/no-explicit-any
  return { id: j.id, language: j.language, cwd: j.cwd ?? "", state: j.state ?? "", createdAt: j.created_at ?? null };
}

/** Splits a text/event-stream body into (event, data) pairs. */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<[string, string]> {
  const dec = new TextDecoder();
  let buf = "";
  let event = "message";
  let data: string[] = [];
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      let line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (data.length) yield [event, data.join("\n")];
        event = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const c = line.indexOf(":");
      const k = c < 0 ? line : line.slice(0, c);
      let v = c < 0 ? "" : line.slice(c + 1);
      if (v.startsWith(" ")) v = v.slice(1);
      if (k === "event") event = v;
      else if (k === "data") data.push(v);
    }
  }
}

export class CodeContext {
  readonly #t: Transport;
  readonly #path: string;
  info: ContextInfo;

  /** @internal Use `sandbox.createContext` / `sandbox.getContext`. */
  constructor(t: Transport, sandboxPath: string, info: ContextInfo) {
    this.#t = t;
    this.#path = `${sandboxPath}/contexts/${encodeURIComponent(info.id)}`;
    this.info = info;
  }

  get id(): string {
    return this.info.id;
  }

  get language(): string {
    return this.info.language;
  }

  async refresh(): Promise<ContextInfo> {
    this.info = toContextInfo(await this.#t.json("GET", this.#path));
    return this.info;
  }

  /**
   * Runs `code` and resolves with its {@link Execution} once the cell ends; output reaches the callbacks
   * as it comes. Throws {@link NotFoundError} (no such context), {@link ConflictError} (`context_busy`,
   * `context_ended`), {@link NotRunningError} (the sandbox is stopped).
   */
  async run(code: string, options: RunCodeOptions = {}): Promise<Execution> {
    const body: Record<string, unknown> = { code, stream: true };
    if (options.timeout !== undefined) body.timeout = options.timeout;
    const res = await this.#t.request("POST", this.#path + "/run", {
      json: body,
      headers: { Accept: "text/event-stream" },
      timeoutMs: 0,
    });
    if (!res.body) throw new SandboxError("the run's answer has no body", "stream_error");
    const decoders = [new TextDecoder(), new TextDecoder()];
    const text = ["", ""];
    const outputs: MimeBundle[] = [];
    const cbs = [options.onStdout, options.onStderr];
    for await (const [event, data] of sseEvents(res.body)) {
      const j = JSON.parse(data);
      if (event === "output") {
        const s = j.stream === "stderr" ? 1 : 0;
        const bytes = j.encoding === "base64" ? Buffer.from(j.data, "base64") : Buffer.from(j.data, "utf8");
        const t = decoders[s].decode(bytes, { stream: true });
        if (t) {
          text[s] += t;
          cbs[s]?.(t);
        }
      } else if (event === "display") {
        outputs.push(j.data ?? {});
        options.onDisplay?.(j.data ?? {});
      } else if (event === "result") {
        for (const s of [0, 1]) {
          const t = decoders[s].decode();
          if (t) {
            text[s] += t;
            cbs[s]?.(t);
          }
        }
        await res.body.cancel().catch(() => undefined);
        return toExecution(j, text[0], text[1], outputs);
      } else if (event === "error") {
        throw new SandboxError(String(j.message ?? data), j.code ?? "stream_error");
      }
    }
    throw new SandboxError(
      "the run's stream ended before its result (the cell may still be running: interrupt the context or wait)",
      "stream_error",
    );
  }

  /** SIGINT to the interpreter and its children: the running cell ends with a `KeyboardInterrupt` error, the
   * context stays. Resolves with whether a cell was running. */
  async interrupt(): Promise<boolean> {
    const j = await this.#t.json("POST", this.#path + "/interrupt");
    return Boolean(j?.interrupted);
  }

  /** Ends the interpreter and forgets the context. */
  async delete(options: { missingOk?: boolean } = {}): Promise<void> {
    await this.#t.request("DELETE", this.#path, { okStatuses: options.missingOk ? [404] : [] });
  }
}

function toExecution(j: Record<string, any>, stdout: string, stderr: string, outputs: MimeBundle[]): Execution { // eslint-disable-line @typescript-eslint/no-explicit-any
  const data: MimeBundle = j.data ?? {};
  const images: Buffer[] = [];
  for (const b of [...outputs, data]) if (typeof b["image/png"] === "string") images.push(Buffer.from(b["image/png"] as string, "base64"));
  const ex: Execution = {
    executionCount: j.execution_count ?? null,
    data,
    outputs,
    stdout,
    stderr,
    durationMs: j.duration_ms ?? 0,
    timedOut: Boolean(j.timed_out),
    contextEnded: Boolean(j.context_ended),
    images,
  };
  if (typeof j.text === "string") ex.text = j.text;
  if (j.error) ex.error = { name: j.error.name, value: j.error.value, traceback: j.error.traceback ?? [] };
  if (typeof j.exit_code === "number") ex.exitCode = j.exit_code;
  return ex;
}
