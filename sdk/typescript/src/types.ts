/** Public data types and the converters from the server's snake_case JSON. */
import { InvalidArgumentError } from "./errors.js";

/** A sandbox's state (docs/api.md, "Sandbox object"). */
export type SandboxState = "creating" | "running" | "paused" | "stopped" | "failed" | "deleted";

export interface Resources {
  /** CPUs (0.01–64, default 1). */
  cpus?: number;
  /** Memory limit in MiB (16–1048576, default 512). */
  memoryMb?: number;
  /** Process limit (16–65536, default 512). */
  pids?: number;
  /** Size of the sandbox's own disk in MiB (64–1048576, default 10240). */
  diskMb?: number;
}

/** Lifecycle settings, in seconds; `0` means never (docs/api.md, "Lifecycle settings and timers"). */
export interface LifecycleSettings {
  /** Stops (files kept) a sandbox idle for that long. Default 600. */
  idleTtlSeconds?: number;
  /** Deletes a sandbox that has been stopped or failed for that long. Default 0. */
  deleteAfterStopSeconds?: number;
  /** Lifetime: the sandbox is deleted at `expiresAt` (create or last renew + timeout). Default 0. */
  timeoutSeconds?: number;
}

export interface CreateSandboxOptions extends LifecycleSettings {
  /**
   * Root filesystem to start from: `"host"` (the default) or a snapshot's name or id
   * (`client.importSnapshot`, `client.pullSnapshot`, `sb.captureSnapshot`).
   */
  snapshot?: string;
  /**
   * Start with the files of a checkpoint (`sb.checkpoint()`): the {@link CheckpointInfo}, its id
   * (`"ckp_..."`) or `"SANDBOX:NAME"` (SANDBOX an id or a name). The snapshot and the disk size are the
   * checkpoint's: not with `snapshot`, and `resources.diskMb`, if given, must match.
   */
  checkpoint?: string | CheckpointInfo;
  /** Unique name, `[A-Za-z0-9_.-]{1,64}`; usable instead of the id. A named sandbox is built, not taken from the warm pool. */
  name?: string;
  /** Environment every command gets (merged under the command's own `env`). */
  env?: Record<string, string>;
  /** String key/values, filterable with `listSandboxes({metadata})`. */
  metadata?: Record<string, string>;
  resources?: Resources;
  /**
   * Volumes to mount (up to 16; `client.createVolume()`), e.g. `[{volume: "data", path: "/data"}]`.
   * Listed in `sb.volumes`. A sandbox with volumes is built, not taken from the warm pool.
   */
  volumes?: VolumeMount[];
  /**
   * The sandbox's network (docs/api.md, "Network"); default `{mode: "none"}` (loopback only).
   * `{mode: "egress", egress: {allow: ["pypi.org"]}}` gives it an `eth0` and lets it connect out to what
   * the policy allows (no `egress`: deny everything). The mode is fixed at create; the policy can change
   * later (`sb.update({network: {egress}})`). Read it back from `sb.network`.
   */
  network?: NetworkOptions;
}

/**
 * What a sandbox with network mode `egress` may connect to. Entries are IPv4 addresses, CIDRs
 * (`"140.82.112.0/20"`), domains (`"pypi.org"`) and wildcards (`"*.pythonhosted.org"`: names below it,
 * not the name itself); at most 256 per list. Domains are enforced through the sandbox's DNS.
 */
export interface EgressPolicy {
  /**
   * What happens to a destination neither list names (default `"deny"`). `"allow"` means the internet:
   * private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, 198.18/15) still need an allow entry.
   */
  default?: "allow" | "deny";
  allow?: string[];
  /** Checked first: a deny entry always wins. */
  deny?: string[];
}

/** A new sandbox's network (`createSandbox({network})`). */
export type NetworkOptions = { mode: "none" } | { mode: "egress"; egress?: EgressPolicy };

/** A sandbox's network as sbxd reports it (`sb.network`, `SandboxInfo.network`). */
export interface NetworkInfo {
  mode: "none" | "egress";
  /** The policy in force (every field filled in), or null for mode `none`. */
  egress: Required<EgressPolicy> | null;
  /** The sandbox's IPv4 address on `eth0` (mode `egress`, while it runs), else null. */
  address: string | null;
}

export interface UpdateSandboxOptions extends LifecycleSettings {
  /** Replaces the whole metadata map. */
  metadata?: Record<string, string>;
  /**
   * `{egress}` replaces the whole egress policy of a sandbox with network mode `egress`, effective at
   * once for new connections. The mode cannot change: on a sandbox with mode `none` this is an
   * `InvalidArgumentError`.
   */
  network?: { egress: EgressPolicy };
}

export interface ListSandboxesOptions {
  state?: SandboxState;
  /** Keeps sandboxes whose metadata has every one of these string values. */
  metadata?: Record<string, string>;
}

/** What the server says about a sandbox. */
export interface SandboxInfo {
  id: string;
  name: string | null;
  snapshot: string;
  state: SandboxState;
  createdAt: string;
  env: Record<string, string>;
  metadata: Record<string, string>;
  resources: Required<Resources>;
  idleTtlSeconds: number;
  deleteAfterStopSeconds: number;
  timeoutSeconds: number;
  lastActiveAt: string | null;
  stoppedAt: string | null;
  expiresAt: string | null;
  deletedAt: string | null;
  /** Why it is stopped, failed or deleted ("stopped by request", "idle for 600 s (idle_ttl_seconds)", ...). */
  stateReason: string | null;
  /** The volumes mounted in it (`[]` for none). */
  volumes: VolumeMountInfo[];
  /** Its network: mode, egress policy, address. */
  network: NetworkInfo;
}

export interface SandboxMetrics {
  state: SandboxState;
  cpuUsageSeconds: number;
  memoryBytes: number;
  memoryPeakBytes: number;
  pids: number;
  diskUsedBytes: number | null;
  diskFreeBytes: number | null;
  ioReadBytes: number | null;
  ioWriteBytes: number | null;
  limits: { cpus: number; memoryBytes: number; pids: number; diskBytes: number | null };
}

export type StreamName = "stdout" | "stderr";

/** One piece of a command's output. */
export interface OutputChunk {
  stream: StreamName;
  /** The text (UTF-8 decoded; a multi-byte character split between chunks is joined, invalid bytes become U+FFFD). */
  data: string;
  /** The raw bytes of this chunk. */
  bytes: Uint8Array;
  /** Byte offset of the chunk's first byte within its stream. */
  offset: number;
}

export interface CommandError {
  /** `timeout`, `killed`, `idle_timeout`, `disconnected` or `command_not_found`. */
  code: string;
  message: string;
}

/** What the server says about a command (docs/api.md, "Command object"). */
export interface CommandInfo {
  id: string;
  sandboxId: string;
  command: string[];
  state: "running" | "exited";
  pid: number | null;
  exitCode: number | null;
  signal: number | null;
  error: CommandError | null;
  stdoutBytes: number;
  stderrBytes: number;
  logBytes: number;
  startedAt: string | null;
  finishedAt: string | null;
  ttlSeconds: number;
  idleTimeout: number;
  killOnDisconnect: boolean;
  disconnectGrace: number;
  attached: number;
  /** Whether the command runs on a pseudo-terminal (`run(cmd, {pty: true})`). */
  pty: boolean;
  expiresAt: string | null;
}

/** The outcome of a finished command. A non-zero `exitCode` is not an exception. */
export interface ExecutionResult {
  commandId: string;
  /** Exit status; `128 + signal` when a signal ended it. */
  exitCode: number;
  /** The signal number that ended it, or null. */
  signal: number | null;
  /** Why sbxd ended it (`timeout`, `killed`, ...), or null when it exited by itself. */
  error: CommandError | null;
  stdout: string;
  stderr: string;
  /** `exitCode === 0`. */
  success: boolean;
  /** The final command object. */
  info: CommandInfo;
}

/** A file or directory entry. */
export interface FileEntry {
  name: string;
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  /** Octal string, e.g. `"0644"`. */
  mode: string;
  mtime: string;
  linkTarget: string | null;
}

/** One page of a command's combined log (`logs` route). */
export interface LogPage {
  cursor: number;
  nextCursor: number;
  logBytes: number;
  finished: boolean;
  /** The command has exited and nothing follows `nextCursor`: polling can stop. */
  eof: boolean;
  chunks: Array<{ stream: StreamName; offset: number; cursor: number; data: string; bytes: Uint8Array }>;
  command: CommandInfo;
}

export interface KeyQuotas {
  /** Sandboxes not deleted; 0 = unlimited. */
  maxSandboxes?: number;
  /** Sum of `memoryMb` over creating, running and paused sandboxes; 0 = unlimited. */
  maxMemoryMb?: number;
}

export interface ApiKeyInfo {
  id: string;
  name: string | null;
  createdAt: string;
  quotas: Required<KeyQuotas>;
  /** The secret, only in the answer to `createKey`. */
  key?: string;
}

/* ---------------------------------------------------------------- converters (internal) */

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const num = (v: unknown, d = 0): number => (typeof v === "number" ? v : d);
const numOrNull = (v: unknown): number | null => (typeof v === "number" ? v : null);
const strOrNull = (v: unknown): string | null => (typeof v === "string" ? v : null);

/** @internal */
export function toSandboxInfo(j: Json): SandboxInfo {
  const r = (j.resources ?? {}) as Json;
  return {
    id: j.id,
    name: strOrNull(j.name),
    snapshot: j.snapshot ?? "host",
    state: j.state,
    createdAt: j.created_at,
    env: j.env ?? {},
    metadata: j.metadata ?? {},
    resources: { cpus: num(r.cpus), memoryMb: num(r.memory_mb), pids: num(r.pids), diskMb: num(r.disk_mb) },
    idleTtlSeconds: num(j.idle_ttl_seconds),
    deleteAfterStopSeconds: num(j.delete_after_stop_seconds),
    timeoutSeconds: num(j.timeout_seconds),
    lastActiveAt: strOrNull(j.last_active_at),
    stoppedAt: strOrNull(j.stopped_at),
    expiresAt: strOrNull(j.expires_at),
    deletedAt: strOrNull(j.deleted_at),
    stateReason: strOrNull(j.state_reason),
    volumes: Array.isArray(j.volumes) ? j.volumes.map(toVolumeMountInfo) : [],
    network: toNetworkInfo(j.network),
  };
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);

/** @internal */
export function toNetworkInfo(j: unknown): NetworkInfo {
  const n = (j && typeof j === "object" ? j : {}) as Json;
  const e = n.egress && typeof n.egress === "object" ? (n.egress as Json) : null;
  return {
    mode: n.mode === "egress" ? "egress" : "none",
    egress: e
      ? { default: e.default === "allow" ? "allow" : "deny", allow: strings(e.allow), deny: strings(e.deny) }
      : null,
    address: strOrNull(n.address),
  };
}

/** A mistake caught before any request: the same error class sbxd's `400` would give, with status 0. */
const badArg = (msg: string) => new InvalidArgumentError(msg, "invalid_argument", 0);

/** @internal The `egress` object of a create or PATCH; checks what TypeScript cannot (plain JS callers). */
export function egressBody(p: EgressPolicy): Json {
  if (!p || typeof p !== "object") throw badArg("an egress policy is an object {default?, allow?, deny?}");
  for (const k of Object.keys(p))
    if (k !== "default" && k !== "allow" && k !== "deny")
      throw badArg(`unknown egress policy field "${k}" (default, allow, deny)`);
  if (p.default !== undefined && p.default !== "allow" && p.default !== "deny")
    throw badArg(`egress.default is "allow" or "deny", not ${JSON.stringify(p.default)}`);
  const list = (v: unknown, what: string): string[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string"))
      throw badArg(`egress.${what} is an array of strings, not ${JSON.stringify(v)}`);
    return v;
  };
  return { default: p.default ?? "deny", allow: list(p.allow, "allow"), deny: list(p.deny, "deny") };
}

/** @internal The `network` field of a create. */
export function networkBody(n: NetworkOptions): Json {
  if (!n || typeof n !== "object" || (n.mode !== "none" && n.mode !== "egress"))
    throw badArg(`network is {mode: "none"} or {mode: "egress", egress?}, not ${JSON.stringify(n)}`);
  for (const k of Object.keys(n))
    if (k !== "mode" && k !== "egress") throw badArg(`unknown network field "${k}" (mode, egress)`);
  const egress = (n as { egress?: EgressPolicy }).egress;
  if (n.mode === "none") {
    if (egress !== undefined) throw badArg('an egress policy needs network mode "egress"');
    return { mode: "none" };
  }
  return egress === undefined ? { mode: "egress" } : { mode: "egress", egress: egressBody(egress) };
}

/** @internal */
export function toMetrics(j: Json): SandboxMetrics {
  const l = (j.limits ?? {}) as Json;
  return {
    state: j.state,
    cpuUsageSeconds: num(j.cpu_usage_seconds),
    memoryBytes: num(j.memory_bytes),
    memoryPeakBytes: num(j.memory_peak_bytes),
    pids: num(j.pids),
    diskUsedBytes: numOrNull(j.disk_used_bytes),
    diskFreeBytes: numOrNull(j.disk_free_bytes),
    ioReadBytes: numOrNull(j.io_read_bytes),
    ioWriteBytes: numOrNull(j.io_write_bytes),
    limits: { cpus: num(l.cpus), memoryBytes: num(l.memory_bytes), pids: num(l.pids), diskBytes: numOrNull(l.disk_bytes) },
  };
}

/** @internal */
export function toCommandInfo(j: Json): CommandInfo {
  return {
    id: j.id,
    sandboxId: j.sandbox_id,
    command: j.command ?? [],
    state: j.state,
    pid: numOrNull(j.pid),
    exitCode: numOrNull(j.exit_code),
    signal: numOrNull(j.signal),
    error: j.error ? { code: String(j.error.code), message: String(j.error.message ?? "") } : null,
    stdoutBytes: num(j.stdout_bytes),
    stderrBytes: num(j.stderr_bytes),
    logBytes: num(j.log_bytes),
    startedAt: strOrNull(j.started_at),
    finishedAt: strOrNull(j.finished_at),
    ttlSeconds: num(j.ttl_seconds),
    idleTimeout: num(j.idle_timeout),
    killOnDisconnect: !!j.kill_on_disconnect,
    disconnectGrace: num(j.disconnect_grace),
    attached: num(j.attached),
    pty: !!j.pty,
    expiresAt: strOrNull(j.expires_at),
  };
}

/** @internal */
export function toFileEntry(j: Json): FileEntry {
  return {
    name: j.name,
    path: j.path,
    type: j.type,
    size: num(j.size),
    mode: j.mode,
    mtime: j.mtime,
    linkTarget: strOrNull(j.link_target),
  };
}

/** @internal */
export function toKeyInfo(j: Json): ApiKeyInfo {
  const q = (j.quotas ?? {}) as Json;
  const k: ApiKeyInfo = {
    id: j.id,
    name: strOrNull(j.name),
    createdAt: j.created_at,
    quotas: { maxSandboxes: num(q.max_sandboxes), maxMemoryMb: num(q.max_memory_mb) },
  };
  if (typeof j.key === "string") k.key = j.key;
  return k;
}

/** @internal Decodes a chunk's `data` (text, or base64 with `encoding: "base64"`). */
export function chunkBytes(j: Json): Uint8Array {
  return j.encoding === "base64" ? Buffer.from(String(j.data), "base64") : Buffer.from(String(j.data), "utf8");
}

/** @internal */
export function lifecycleBody(o: LifecycleSettings & { metadata?: Record<string, string> }): Json {
  const b: Json = {};
  if (o.idleTtlSeconds !== undefined) b.idle_ttl_seconds = o.idleTtlSeconds;
  if (o.deleteAfterStopSeconds !== undefined) b.delete_after_stop_seconds = o.deleteAfterStopSeconds;
  if (o.timeoutSeconds !== undefined) b.timeout_seconds = o.timeoutSeconds;
  if (o.metadata !== undefined) b.metadata = o.metadata;
  return b;
}

/** @internal The body of a PATCH: lifecycle settings, metadata and the egress policy. */
export function updateBody(o: UpdateSandboxOptions): Json {
  const b = lifecycleBody(o);
  if (o.network !== undefined) {
    const n = o.network;
    if (!n || typeof n !== "object" || Object.keys(n).some((k) => k !== "egress") || n.egress === undefined)
      throw badArg("update's network is {egress: {...}}: only the egress policy can change");
    b.network = { egress: egressBody(n.egress) };
  }
  return b;
}

/** How far a registry pull's download is (`SnapshotInfo.progress`, `pullSnapshot({onProgress})`). */
export interface SnapshotProgress {
  bytesDone: number;
  /** The manifest, the config and the layers not already stored; 0 until the manifest is read. */
  bytesTotal: number;
}

/**
 * What a sandbox's root filesystem is made from: `host`, an imported image tarball, a registry pull or
 * a capture of a sandbox.
 */
export interface SnapshotInfo {
  id: string;
  name: string | null;
  /** `"host"`, `"image"` (an uploaded tarball), `"registry"` (a pull) or `"capture"`. */
  source: string;
  /** `building` while an import, pull or capture runs, then `ready` or `failed`. */
  status: "building" | "ready" | "failed";
  /** Why it failed (`status: "failed"`), else null. */
  reason: string | null;
  /** The layers' diff_ids, bottom first. */
  layers: string[];
  sizeBytes: number;
  createdAt: string | null;
  /** The image config's `Env`, `WorkingDir`, `User`, `Entrypoint`, `Cmd` (as sbxd returns them). */
  config: Record<string, unknown> | null;
  /**
   * `"host"` for a capture of a host-based sandbox (its layers go over the host's system directories),
   * else `"image"`; null for `host` itself.
   */
  base: string | null;
  /** The id of the tenant key that captured it; null: made with the admin key (visible to every key). */
  owner: string | null;
  /** While a pull is `building`: its download's progress; else null. */
  progress: SnapshotProgress | null;
}

/** @internal */
export function toSnapshotProgress(j: Json): SnapshotProgress | null {
  if (!j || typeof j !== "object") return null;
  return { bytesDone: num(j.bytes_done), bytesTotal: num(j.bytes_total) };
}

/** @internal */
export function toSnapshotInfo(j: Json): SnapshotInfo {
  return {
    id: j.id,
    name: strOrNull(j.name),
    source: String(j.source ?? ""),
    status: j.status,
    reason: strOrNull(j.reason),
    layers: Array.isArray(j.layers) ? j.layers : [],
    sizeBytes: num(j.size_bytes),
    createdAt: strOrNull(j.created_at),
    config: j.config && typeof j.config === "object" ? j.config : null,
    base: strOrNull(j.base),
    owner: strOrNull(j.owner),
    progress: toSnapshotProgress(j.progress),
  };
}

/** How long and how often a snapshot is waited for (`waitForSnapshot`, and the snapshot calls with `wait`). */
export interface WaitForSnapshotOptions {
  /** Milliseconds between polls (default 200). */
  pollInterval?: number;
  /** Milliseconds to wait for `ready` (default 600 000; 0 = no limit); then `TimeoutError`. */
  timeout?: number;
  /**
   * Called with a pull's download progress each time it changes while waiting (a promise it returns
   * is awaited). Only pulls have progress.
   */
  onProgress?: (progress: SnapshotProgress, snapshot: SnapshotInfo) => void | Promise<void>;
}

/** `sb.captureSnapshot(name, options)`. */
export interface CaptureSnapshotOptions extends Omit<WaitForSnapshotOptions, "onProgress"> {
  /**
   * `true` (default): poll until the capture is `ready` (resolve) or `failed` (reject with
   * {@link SnapshotFailedError}). `false`: resolve at once with the `building` snapshot.
   */
  wait?: boolean;
}

/** Registry credentials for `pullSnapshot`: basic auth (also sent to a bearer token service) or a token. */
export type RegistryAuth = { username: string; password: string } | { token: string };

/** `client.pullSnapshot(image, options)`. */
export interface PullSnapshotOptions extends WaitForSnapshotOptions {
  /** The snapshot's name, `[A-Za-z0-9_.-]{1,64}`, unique (`host` is reserved). */
  name: string;
  /** Talk plain HTTP to the registry (default false: HTTPS, verified against the system CAs). */
  insecure?: boolean;
  /** `{username, password}` or `{token}` (sent as `Authorization: Bearer`). */
  auth?: RegistryAuth;
  /**
   * `true` (default): poll until the pull is `ready` (resolve) or `failed` (reject with
   * {@link SnapshotFailedError}). `false`: resolve at once with the `building` snapshot (its
   * `progress` set); `onProgress` then needs `waitForSnapshot`.
   */
  wait?: boolean;
}

/** @internal The JSON body of a registry pull (`POST /v1/snapshots`); checks what the types cannot. */
export function pullBody(image: string, o: PullSnapshotOptions): Record<string, unknown> {
  if (typeof image !== "string" || !image)
    throw badArg("image is a reference like \"registry.example:5000/library/alpine:3.19\"");
  if (!o || typeof o.name !== "string" || !o.name) throw badArg("a pulled snapshot needs a name");
  const body: Record<string, unknown> = { name: o.name, image, insecure: o.insecure ?? false };
  if (o.auth !== undefined) {
    const a = o.auth as Record<string, unknown>;
    const keys = a && typeof a === "object" ? Object.keys(a).filter((k) => a[k] !== undefined).sort().join(",") : "";
    if (keys === "token" && typeof a.token === "string") body.auth = { token: a.token };
    else if (keys === "password,username" && typeof a.username === "string" && typeof a.password === "string")
      body.auth = { username: a.username, password: a.password };
    else throw badArg("auth is {username, password} or {token}");
  }
  return body;
}

/** A TCP socket listening inside a sandbox (`sb.ports()`). */
export interface ListeningPort {
  port: number;
  /** The bound address: `127.0.0.1`, `::1`, `0.0.0.0`, `::`, ... */
  address: string;
}

/**
 * A checkpoint of a sandbox (`sb.checkpoint()`): a copy of everything the sandbox wrote (its disk over
 * `snapshot`), without processes or memory. It goes with its sandbox when that is deleted.
 */
export interface CheckpointInfo {
  /** `ckp_...`. */
  id: string;
  sandboxId: string;
  /** Unique per sandbox; the id when none was given. */
  name: string;
  /** The snapshot id the sandbox's disk lies over (`"host"`). */
  snapshot: string;
  /** The disk's size in MiB (a sandbox created from the checkpoint gets the same). */
  diskMb: number;
  /** What the copy holds on the host (not the disk's size). */
  sizeBytes: number;
  createdAt: string;
}

/** @internal */
export function toCheckpointInfo(j: Json): CheckpointInfo {
  return {
    id: j.id,
    sandboxId: String(j.sandbox_id ?? ""),
    name: typeof j.name === "string" ? j.name : j.id,
    snapshot: String(j.snapshot ?? ""),
    diskMb: num(j.disk_mb),
    sizeBytes: num(j.size_bytes),
    createdAt: j.created_at,
  };
}

/**
 * A named volume (`client.createVolume()`): a sized disk of its own that outlives sandboxes and can be
 * mounted into several at once (`createSandbox({volumes})`). Its files have the same owners in every
 * sandbox that mounts it.
 */
export interface VolumeInfo {
  /** `vol_...`. */
  id: string;
  /** Unique per API key. */
  name: string;
  /** Its size in MiB; a write past it fails with `ENOSPC` inside the sandbox. */
  sizeMb: number;
  /** What its files take now, or null when sbxd could not tell. */
  usedBytes: number | null;
  createdAt: string;
}

/** A volume to mount in a new sandbox (`createSandbox({volumes: [...]})`). */
export interface VolumeMount {
  /** The volume: its name, its id (`vol_...`) or its {@link VolumeInfo}. */
  volume: string | VolumeInfo;
  /** Where it appears in the sandbox: absolute, not `/`, not under `/proc`, `/sys` or `/dev`; made if missing. */
  path: string;
  /** Mount it read-only (default false): writes fail with `EROFS` inside the sandbox. */
  readOnly?: boolean;
}

/** A volume mounted in a sandbox, as `sb.volumes` (`SandboxInfo.volumes`) lists it. */
export interface VolumeMountInfo {
  /** The volume's id (`vol_...`). */
  volume: string;
  path: string;
  readOnly: boolean;
}

/** @internal */
export function toVolumeInfo(j: Json): VolumeInfo {
  return {
    id: j.id,
    name: String(j.name ?? ""),
    sizeMb: num(j.size_mb),
    usedBytes: numOrNull(j.used_bytes),
    createdAt: j.created_at,
  };
}

/** @internal */
export function toVolumeMountInfo(j: Json): VolumeMountInfo {
  return { volume: String(j.volume ?? ""), path: String(j.path ?? ""), readOnly: !!j.read_only };
}

/** @internal The `volumes` field of a create. */
export function volumeMountsBody(mounts: VolumeMount[]): Json[] {
  return mounts.map((m) => ({
    volume: typeof m.volume === "string" ? m.volume : m.volume.id,
    path: m.path,
    read_only: m.readOnly ?? false,
  }));
}
