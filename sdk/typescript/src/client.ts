/** The entry point: `new SandboxClient({url, apiKey})`. */
import { Transport } from "./http.js";
import { Sandbox } from "./sandbox.js";
import type { SandboxContext } from "./sandbox.js";
import type { StreamTransport } from "./stream.js";
import { lifecycleBody, toKeyInfo, toSandboxInfo } from "./types.js";
import type {
  ApiKeyInfo,
  CreateSandboxOptions,
  KeyQuotas,
  ListSandboxesOptions,
  SandboxInfo,
  UpdateSandboxOptions,
} from "./types.js";

export interface SandboxClientOptions {
  /** The daemon's address. Default: `SBX_URL`, else `http://127.0.0.1:7070`. */
  url?: string;
  /** API key (admin or tenant), sent as `Authorization: Bearer`. Default: `SBX_API_KEY`, else none. */
  apiKey?: string;
  /** Milliseconds one non-streaming request may take (default 60 000; 0 = no limit). */
  requestTimeout?: number;
  /**
   * Milliseconds to keep retrying when the daemon cannot be reached (a dropped stream, a refused
   * connection, a daemon restarting) before giving up with `ConnectionError` (default 30 000).
   */
  reconnectTimeout?: number;
  /** How command output is streamed: `"websocket"` (default, through `ws`) or `"sse"` (Server-Sent Events). */
  streamTransport?: StreamTransport;
}

/** A client of one sbx daemon. Holds no connection of its own: there is nothing to close. */
export class SandboxClient {
  readonly url: string;
  readonly #ctx: SandboxContext;

  constructor(options: SandboxClientOptions = {}) {
    const url = options.url ?? process.env.SBX_URL ?? "http://127.0.0.1:7070";
    const apiKey = options.apiKey ?? process.env.SBX_API_KEY;
    this.url = url.replace(/\/+$/, "");
    this.#ctx = {
      transport: new Transport({
        url: this.url,
        apiKey,
        requestTimeoutMs: options.requestTimeout ?? 60_000,
        reconnectTimeoutMs: options.reconnectTimeout ?? 30_000,
      }),
      streamTransport: options.streamTransport ?? "websocket",
    };
  }

  get #t(): Transport {
    return this.#ctx.transport;
  }

  /** `GET /healthz`: `{status: "ok", version}`. */
  async health(): Promise<{ status: string; version: string }> {
    return this.#t.json("GET", "/healthz");
  }

  /** Creates a sandbox (from the warm pool when it has no name: well under a millisecond). */
  async createSandbox(options: CreateSandboxOptions = {}): Promise<Sandbox> {
    const body: Record<string, unknown> = lifecycleBody(options);
    if (options.snapshot !== undefined) body.snapshot = options.snapshot;
    if (options.name !== undefined) body.name = options.name;
    if (options.env !== undefined) body.env = options.env;
    if (options.resources) {
      const r = options.resources;
      const rb: Record<string, number> = {};
      if (r.cpus !== undefined) rb.cpus = r.cpus;
      if (r.memoryMb !== undefined) rb.memory_mb = r.memoryMb;
      if (r.pids !== undefined) rb.pids = r.pids;
      if (r.diskMb !== undefined) rb.disk_mb = r.diskMb;
      body.resources = rb;
    }
    // Not retried after the request may have reached the daemon: an unnamed create is not idempotent.
    return new Sandbox(this.#ctx, toSandboxInfo(await this.#t.json("POST", "/v1/sandboxes", { json: body })));
  }

  /** A sandbox by id or name. Throws `NotFoundError` when unknown (or another tenant's). */
  async getSandbox(idOrName: string): Promise<Sandbox> {
    return new Sandbox(this.#ctx, toSandboxInfo(await this.#t.json("GET", `/v1/sandboxes/${encodeURIComponent(idOrName)}`)));
  }

  /** Sandboxes visible to this key, oldest first, optionally filtered by state and metadata. */
  async listSandboxes(options: ListSandboxesOptions = {}): Promise<Sandbox[]> {
    const query: Record<string, string> = {};
    if (options.state) query.state = options.state;
    for (const [k, v] of Object.entries(options.metadata ?? {})) query[`metadata.${k}`] = v;
    const j = await this.#t.json("GET", "/v1/sandboxes", { query });
    return (j.sandboxes ?? []).map((s: Record<string, unknown>) => new Sandbox(this.#ctx, toSandboxInfo(s)));
  }

  /** Changes a sandbox's lifecycle settings and/or metadata by id or name. */
  async updateSandbox(idOrName: string, options: UpdateSandboxOptions): Promise<SandboxInfo> {
    return toSandboxInfo(
      await this.#t.json("PATCH", `/v1/sandboxes/${encodeURIComponent(idOrName)}`, {
        json: lifecycleBody(options),
        retry: "always",
      }),
    );
  }

  /** Deletes a sandbox by id or name. */
  async deleteSandbox(idOrName: string): Promise<void> {
    await this.#t.request("DELETE", `/v1/sandboxes/${encodeURIComponent(idOrName)}`);
  }

  /** Admin: makes a tenant key. The secret is in the answer's `key`, and only there. */
  async createKey(options: { name?: string; quotas?: KeyQuotas } = {}): Promise<ApiKeyInfo> {
    const body: Record<string, unknown> = {};
    if (options.name !== undefined) body.name = options.name;
    if (options.quotas) {
      const q: Record<string, number> = {};
      if (options.quotas.maxSandboxes !== undefined) q.max_sandboxes = options.quotas.maxSandboxes;
      if (options.quotas.maxMemoryMb !== undefined) q.max_memory_mb = options.quotas.maxMemoryMb;
      body.quotas = q;
    }
    return toKeyInfo(await this.#t.json("POST", "/v1/keys", { json: body }));
  }

  /** Admin: every key (never with secrets). */
  async listKeys(): Promise<ApiKeyInfo[]> {
    const j = await this.#t.json("GET", "/v1/keys");
    return (j.keys ?? []).map(toKeyInfo);
  }

  /** Admin: revokes a key at once (its sandboxes are kept). */
  async deleteKey(keyId: string): Promise<void> {
    await this.#t.request("DELETE", `/v1/keys/${encodeURIComponent(keyId)}`);
  }
}
