/**
 * Agent sessions: a coding agent (the Claude Code CLI in stream-JSON mode, or any program speaking its
 * protocol) running inside a sandbox as a session you talk to (docs/api.md, "Agent sessions").
 *
 * ```ts
 * const s = await sb.agent("list the files in /root", { env: { ANTHROPIC_API_KEY: key } });
 * for await (const ev of s) {                 // events until the first result
 *   if (ev.type === "assistant") console.log(ev.assistantText);
 *   if (ev.isResult) break;
 * }
 * await s.send("now count them");
 * console.log((await s.result()).data.result);
 * await s.kill();
 * ```
 *
 * Events are the agent's own JSON lines (`ev.data`) with the byte range of its stdout they came from
 * (`offset`, `nextOffset`). A session remembers where it stopped reading: iterating again, or another
 * client's `sb.attachAgent(id, { fromOffset })`, resumes exactly there; a dropped connection is bridged
 * by reconnecting from that offset.
 */
import { ConflictError, ConnectionError, errorFromResponse } from "./errors.js";
import { describe } from "./http.js";
import type { Transport } from "./http.js";
import type { Json } from "./stream.js";

/** The body of `POST .../agents` (docs/api.md). */
export interface AgentOptions {
  model?: string;
  systemPrompt?: string;
  allowedTools?: string[];
  permissionMode?: string;
  maxTurns?: number;
  cwd?: string;
  /** MCP servers by name, as the CLI's `--mcp-config {"mcpServers": ...}` takes them. */
  mcpServers?: Record<string, unknown>;
  /** Continue an earlier conversation of the agent (its `session_id`). */
  resume?: string;
  /** The agent's own environment, e.g. `ANTHROPIC_API_KEY`; never echoed back. */
  env?: Record<string, string>;
  /** The agent program instead of the daemon's `--agent-command` (words, or one string split on blanks). */
  command?: string | string[];
  /** Also stream the agent's stderr (`kind: "stderr"` events). */
  stderr?: boolean;
}

/** One message of a session's stream. */
export class AgentEvent {
  constructor(
    /** `"event"` (a JSON line, in `data`), `"text"` (a line that is not JSON, in `text`) or `"stderr"`. */
    readonly kind: "event" | "text" | "stderr",
    readonly offset: number,
    readonly nextOffset: number,
    readonly data: Json = {},
    readonly text: string | null = null,
  ) {}

  /** The agent event's type: `system`, `assistant`, `user`, `result`, `control_response`. */
  get type(): string | undefined {
    return this.data.type;
  }
  get subtype(): string | undefined {
    return this.data.subtype;
  }
  /** A `result` event ends a turn (`subtype` `success`, `interrupted`, ...). */
  get isResult(): boolean {
    return this.kind === "event" && this.data.type === "result";
  }
  /** The text blocks of an `assistant` message, joined; null otherwise. */
  get assistantText(): string | null {
    if (this.data.type !== "assistant") return null;
    const parts = ((this.data.message?.content ?? []) as Json[]).filter((c) => c?.type === "text").map((c) => c.text);
    return parts.length ? parts.join("") : null;
  }
}

/** A session's status (docs/api.md, "Agent object"). `envKeys` names its env; values are never sent back. */
export interface AgentInfo {
  id: string;
  sandboxId: string;
  state: "running" | "exited";
  busy: boolean;
  turns: number;
  prompts: number;
  model: string | null;
  permissionMode: string | null;
  exitCode: number | null;
  sessionId: string | null;
  eventsOffset: number | null;
  lastEventAt: string | null;
  envKeys: string[];
  raw: Json;
}

export function toAgentInfo(j: Json): AgentInfo {
  return {
    id: j.id,
    sandboxId: j.sandbox_id,
    state: j.state,
    busy: !!j.busy,
    turns: j.turns ?? 0,
    prompts: j.prompts ?? 0,
    model: j.model ?? null,
    permissionMode: j.permission_mode ?? null,
    exitCode: j.exit_code ?? null,
    sessionId: j.session_id ?? null,
    eventsOffset: j.events_offset ?? null,
    lastEventAt: j.last_event_at ?? null,
    envKeys: j.env_keys ?? [],
    raw: j,
  };
}

export function agentBody(prompt: string | undefined, o: AgentOptions): Json {
  const body: Json = {
    prompt,
    model: o.model,
    system_prompt: o.systemPrompt,
    allowed_tools: o.allowedTools,
    permission_mode: o.permissionMode,
    max_turns: o.maxTurns,
    cwd: o.cwd,
    mcp_servers: o.mcpServers,
    resume: o.resume,
    env: o.env,
    command: o.command,
  };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return body;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A session: iterate it for events; `send`, `interrupt`, `update`, `kill` act on it. */
export class AgentSession implements AsyncIterable<AgentEvent> {
  readonly id: string;
  readonly sandboxId: string;
  /** The session object as last seen (the start answer, `refresh()`, or the exit). */
  info: AgentInfo;
  #offset: number;
  #exit: Json | null = null;
  readonly #t: Transport;
  readonly #stderr: boolean;

  /** @internal Use `sandbox.agent()` or `sandbox.attachAgent()`. */
  constructor(t: Transport, info: AgentInfo, fromOffset = 0, stderr = false) {
    this.#t = t;
    this.id = info.id;
    this.sandboxId = info.sandboxId;
    this.info = info;
    this.#offset = fromOffset;
    this.#stderr = stderr;
  }

  /** Where this handle resumes reading (give it to `attachAgent` elsewhere). */
  get offset(): number {
    return this.#offset;
  }
  /** Whether this handle has seen the session's exit. */
  get done(): boolean {
    return this.#exit !== null;
  }

  #path(suffix = ""): string {
    return `/v1/sandboxes/${encodeURIComponent(this.sandboxId)}/agents/${encodeURIComponent(this.id)}${suffix}`;
  }

  [Symbol.asyncIterator](): AsyncIterator<AgentEvent> {
    return this.events();
  }

  /** Events from this handle's offset, live, until the session exits (reconnecting when dropped). */
  async *events(): AsyncGenerator<AgentEvent> {
    let delay = 50;
    let since = Date.now();
    while (!this.#exit) {
      let res: Response;
      const ctl = new AbortController();
      try {
        const query: Record<string, string | number> = { offset: this.#offset };
        if (this.#stderr) query.stderr = "true";
        res = await fetch(this.#t.url(this.#path("/stream"), query), {
          headers: this.#t.headers({ Accept: "text/event-stream" }),
          signal: ctl.signal,
        });
      } catch (e) {
        ({ delay, since } = await this.#pause(delay, since, e));
        continue;
      }
      if (!res.ok) throw errorFromResponse(res.status, await res.text().catch(() => ""));
      const decoder = new TextDecoder();
      let buf = "";
      try {
        for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += decoder.decode(piece, { stream: true });
          let sep: number;
          while ((sep = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, sep);
            buf = buf.slice(sep + 2);
            const ev = this.#onBlock(block);
            if (ev) {
              delay = 50;
              since = Date.now();
              yield ev;
            }
            if (this.#exit) break;
          }
          if (this.#exit) break;
        }
      } catch (e) {
        if (e instanceof SyntaxError) throw e;
        ({ delay, since } = await this.#pause(delay, since, e));
        continue;
      } finally {
        ctl.abort();
      }
      if (!this.#exit) ({ delay, since } = await this.#pause(delay, since, new Error("stream ended before exit")));
    }
  }

  async #pause(delay: number, since: number, e: unknown): Promise<{ delay: number; since: number }> {
    if (Date.now() - since > this.#t.reconnectTimeoutMs)
      throw new ConnectionError(`events of agent session ${this.id}: could not reconnect: ${describe(e)}`, {
        cause: e,
      });
    await sleep(delay);
    return { delay: Math.min(delay * 2, 2000), since };
  }

  #onBlock(block: string): AgentEvent | null {
    let name = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const k = i < 0 ? line : line.slice(0, i);
      let v = i < 0 ? "" : line.slice(i + 1);
      if (v.startsWith(" ")) v = v.slice(1);
      if (k === "event") name = v;
      else if (k === "data") data.push(v);
    }
    if (!data.length) return null;
    const m = JSON.parse(data.join("\n"));
    if (name === "exit") {
      this.#exit = m;
      this.info = toAgentInfo(m);
      return null;
    }
    if (name === "error") throw new Error(m.message ?? "stream error");
    if (name === "stderr") return new AgentEvent("stderr", m.offset, m.offset, {}, m.data ?? null);
    if (name !== "event" && name !== "text") return null;
    if (m.next_offset <= this.#offset) return null; // already delivered (a resend after reconnecting)
    this.#offset = m.next_offset;
    return name === "text"
      ? new AgentEvent("text", m.offset, m.next_offset, {}, m.text ?? null)
      : new AgentEvent("event", m.offset, m.next_offset, m.event ?? {});
  }

  /** Reads until the next `result` event (the end of the current turn) and returns it. */
  async result(): Promise<AgentEvent> {
    for await (const ev of this.events()) if (ev.isResult) return ev;
    throw new ConflictError(`agent session ${this.id} exited before a result`, "conflict", 409);
  }

  /** Reads until the session exits; answers its final status. */
  async wait(): Promise<AgentInfo> {
    for await (const _ of this.events()); // eslint-disable-line @typescript-eslint/no-unused-vars
    return this.info;
  }

  /** Sends a follow-up prompt; answers the stdout offset its events start at or after. */
  async send(prompt: string): Promise<number> {
    const j = await this.#t.json("POST", this.#path("/prompt"), { json: { prompt } });
    this.info = toAgentInfo(j);
    return j.offset ?? 0;
  }

  /** Interrupts the current turn: an interrupt control request (default) or SIGINT (`"signal"`). */
  async interrupt(method: "control" | "signal" = "control"): Promise<void> {
    await this.#t.request("POST", this.#path("/interrupt"), { json: { method } });
  }

  /** Changes the model and/or permission mode live (control requests set_model, set_permission_mode). */
  async update(o: { model?: string; permissionMode?: string }): Promise<AgentInfo> {
    const json: Json = {};
    if (o.model !== undefined) json.model = o.model;
    if (o.permissionMode !== undefined) json.permission_mode = o.permissionMode;
    this.info = toAgentInfo(await this.#t.json("PATCH", this.#path(), { json }));
    return this.info;
  }

  /** Kills the agent's process (SIGKILL); the session stays listed as exited. */
  async kill(): Promise<void> {
    await this.#t.request("DELETE", this.#path(), { retry: "always" });
  }

  /** Fetches the session object again. */
  async refresh(): Promise<AgentInfo> {
    this.info = toAgentInfo(await this.#t.json("GET", this.#path()));
    return this.info;
  }
}
