/** The entry point: `new SandboxClient({url, apiKey})`. */
import { Transport } from "./http.js";
import { Sandbox } from "./sandbox.js";
import type { SandboxContext } from "./sandbox.js";
import type { StreamTransport } from "./stream.js";
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { InvalidArgumentError } from "./errors.js";
import { getSnapshot, waitForSnapshot } from "./snapshot.js";
import {
  lifecycleBody,
  networkBody,
  pullBody,
  toKeyInfo,
  toSandboxInfo,
  toSnapshotInfo,
  toVolumeInfo,
  updateBody,
  volumeMountsBody,
} from "./types.js";
import type {
  ApiKeyInfo,
  CreateSandboxOptions,
  KeyQuotas,
  ListSandboxesOptions,
  PullSnapshotOptions,
  SandboxInfo,
  SnapshotInfo,
  UpdateSandboxOptions,
  VolumeInfo,
  WaitForSnapshotOptions,
} from "./types.js";

/** An image tarball: a file path, bytes, a Node Readable or an async iterable of bytes (streamed). */
export type ImageSource = string | Uint8Array | ArrayBuffer | Blob | Readable | AsyncIterable<Uint8Array>;

export interface ImportSnapshotOptions {
  /** The snapshot's name, `[A-Za-z0-9_.-]{1,64}`, unique (`host` is reserved). */
  name?: string;
  /**
   * `true` (default): poll until the import is `ready` (resolve) or `failed` (reject with
   * {@link SnapshotFailedError}). `false`: resolve at once with the `building` snapshot.
   */
  wait?: boolean;
  /** Milliseconds between polls (default 200). */
  pollInterval?: number;
  /** Milliseconds to wait for `ready` after the upload (default 600 000; 0 = no limit); then `TimeoutError`. */
  timeout?: number;
}

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
    if (options.checkpoint !== undefined)
      body.checkpoint = typeof options.checkpoint === "string" ? options.checkpoint : options.checkpoint.id;
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
    if (options.volumes !== undefined) body.volumes = volumeMountsBody(options.volumes);
    if (options.network !== undefined) body.network = networkBody(options.network);
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

  /**
   * Changes a sandbox's lifecycle settings, metadata and/or egress policy (`{network: {egress}}`) by id
   * or name; only the given fields change.
   */
  async updateSandbox(idOrName: string, options: UpdateSandboxOptions): Promise<SandboxInfo> {
    return toSandboxInfo(
      await this.#t.json("PATCH", `/v1/sandboxes/${encodeURIComponent(idOrName)}`, {
        json: updateBody(options),
        retry: "always",
      }),
    );
  }

  /** Deletes a sandbox by id or name. */
  async deleteSandbox(idOrName: string): Promise<void> {
    await this.#t.request("DELETE", `/v1/sandboxes/${encodeURIComponent(idOrName)}`);
  }

  /* ------------------------------------------------------------ snapshots */

  /**
   * Admin: imports an image tarball (`docker save` output or an OCI layout as a tar; plain, gzip or
   * zstd) as a snapshot. A string is a path to a local file; every source is streamed, never buffered
   * whole. With `wait` (default) resolves once the snapshot is `ready` and rejects with
   * {@link SnapshotFailedError} (whose `reason` is sbxd's) when the import fails.
   */
  async importSnapshot(source: ImageSource, options: ImportSnapshotOptions = {}): Promise<SnapshotInfo> {
    let body: unknown = source;
    if (typeof source === "string") body = createReadStream(source);
    else if (source instanceof ArrayBuffer) body = new Uint8Array(source);
    const query = options.name !== undefined ? { name: options.name } : undefined;
    let snap: SnapshotInfo;
    try {
      snap = toSnapshotInfo(
        await this.#t.json("POST", "/v1/snapshots", {
          query,
          body: body as never,
          headers: { "Content-Type": "application/x-tar" },
          timeoutMs: 0, // an upload takes as long as it takes
        }),
      );
    } finally {
      if (body instanceof Readable && !body.destroyed && typeof source === "string") body.destroy();
    }
    if (options.wait === false) return snap;
    return waitForSnapshot(this.#t, snap, { pollInterval: options.pollInterval, timeout: options.timeout });
  }

  /**
   * Admin: pulls an image from a registry as a snapshot. `image` is `host[:port]/repository[:tag]` (tag
   * `latest` when none) or `host[:port]/repository@sha256:<hex>`: the registry is always named. sbxd
   * downloads it (Distribution API v2; a multi-arch index is followed to its own architecture; layers it
   * already stores are not downloaded again; every digest verified), then unpacks it as for an import.
   *
   * With `wait` (default) resolves once the snapshot is `ready`, calling `onProgress` with the download's
   * progress each time it changes, and rejects with {@link SnapshotFailedError} when the pull fails
   * (`reason`: refused credentials, an unknown manifest, a digest mismatch, a transport error...).
   * Rejects at once with {@link ConflictError} for a taken name, {@link InvalidArgumentError} for a bad
   * reference or name (status 0 for a malformed `auth`, caught before any request),
   * {@link PermissionDeniedError} for a tenant key.
   */
  async pullSnapshot(image: string, options: PullSnapshotOptions): Promise<SnapshotInfo> {
    const json = pullBody(image, options);
    if (options.wait === false && options.onProgress)
      throw new InvalidArgumentError("onProgress needs wait (or pass it to waitForSnapshot)", "invalid_argument", 0);
    const snap = toSnapshotInfo(await this.#t.json("POST", "/v1/snapshots", { json }));
    if (options.wait === false) return snap;
    return waitForSnapshot(this.#t, snap, options);
  }

  /**
   * Polls a snapshot until it is `ready` (resolves) or `failed` (rejects with {@link SnapshotFailedError}),
   * whatever made it (an import, a pull, a capture). `onProgress` gets a pull's progress as it changes.
   */
  async waitForSnapshot(idOrName: string, options: WaitForSnapshotOptions = {}): Promise<SnapshotInfo> {
    return waitForSnapshot(this.#t, idOrName, options);
  }

  /** Every snapshot (`host` first). */
  async listSnapshots(): Promise<SnapshotInfo[]> {
    const j = await this.#t.json("GET", "/v1/snapshots");
    return (j.snapshots ?? []).map(toSnapshotInfo);
  }

  /** A snapshot by id or name. Throws `NotFoundError` when unknown. */
  async getSnapshot(idOrName: string): Promise<SnapshotInfo> {
    return getSnapshot(this.#t, idOrName);
  }

  /**
   * Admin: deletes a snapshot by id or name (`ConflictError` while a sandbox uses it or it is building;
   * `PermissionDeniedError` for `host`).
   */
  async deleteSnapshot(idOrName: string): Promise<void> {
    await this.#t.request("DELETE", `/v1/snapshots/${encodeURIComponent(idOrName)}`);
  }

  /* ------------------------------------------------------------ volumes */

  /**
   * Creates a named volume: a disk of its own that outlives sandboxes and can be mounted into several at
   * once (`createSandbox({volumes: [{volume: name, path: "/data"}]})`). `name`: unique per key,
   * `[A-Za-z0-9_.-]{1,64}`. `sizeMb`: 16–1048576 (default 1024); space is taken as files are written.
   * Throws {@link ConflictError} for a taken name, {@link InvalidArgumentError} for a bad name or size,
   * {@link ResourceExhaustedError} past 256 volumes.
   */
  async createVolume(name: string, options: { sizeMb?: number } = {}): Promise<VolumeInfo> {
    const json: Record<string, unknown> = { name };
    if (options.sizeMb !== undefined) json.size_mb = options.sizeMb;
    return toVolumeInfo(await this.#t.json("POST", "/v1/volumes", { json }));
  }

  /** The key's volumes (the admin's: every one). */
  async listVolumes(): Promise<VolumeInfo[]> {
    const j = await this.#t.json("GET", "/v1/volumes");
    return (j.volumes ?? []).map(toVolumeInfo);
  }

  /** A volume by name or id (or a fresh copy of a {@link VolumeInfo}). Throws `NotFoundError` when unknown. */
  async getVolume(volume: string | VolumeInfo): Promise<VolumeInfo> {
    return toVolumeInfo(await this.#t.json("GET", volumePath(volume)));
  }

  /**
   * Deletes a volume (name, id or {@link VolumeInfo}) and its files. Throws {@link BusyError} while a
   * sandbox (running, paused or stopped) mounts it: delete those first.
   */
  async deleteVolume(volume: string | VolumeInfo): Promise<void> {
    await this.#t.request("DELETE", volumePath(volume));
  }

  /* ------------------------------------------------------------ keys */

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

function volumePath(volume: string | VolumeInfo): string {
  const ref = typeof volume === "string" ? volume : volume.id;
  if (!ref) throw new InvalidArgumentError("empty volume reference", "invalid_argument", 0);
  return `/v1/volumes/${encodeURIComponent(ref)}`;
}
