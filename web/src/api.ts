// The native /v1 API, same origin. The key lives in sessionStorage only (gone with the tab); HTTP calls
// send it as a Bearer header, WebSockets as the subprotocol "sbx.key.<base64url(key)>" (browsers cannot
// set headers on a WebSocket, and a key in a URL would end up in logs).

const KEY_ITEM = "sbx.console.key";

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

export function getKey(): string | null {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setKey(key: string | null): void {
  if (key === null) sessionStorage.removeItem(KEY_ITEM);
  else sessionStorage.setItem(KEY_ITEM, key);
}

function authHeaders(): Record<string, string> {
  const k = getKey();
  return k ? { Authorization: `Bearer ${k}` } : {};
}

async function toError(r: Response): Promise<ApiError> {
  const text = await r.text().catch(() => "");
  try {
    const j = JSON.parse(text);
    if (j && j.error && typeof j.error.message === "string")
      return new ApiError(r.status, j.error.code ?? "error", j.error.message);
  } catch {
    /* not JSON: fall through */
  }
  return new ApiError(r.status, "http_" + r.status, text.trim() || `${r.status} ${r.statusText}`);
}

export async function call<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: authHeaders() };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  let r: Response;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach sbxd: ${(e as Error).message}`);
  }
  if (!r.ok) throw await toError(r);
  if (r.status === 204) return undefined as T;
  const text = await r.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export async function download(path: string): Promise<Blob> {
  const r = await fetch(path, { headers: authHeaders() });
  if (!r.ok) throw await toError(r);
  return r.blob();
}

/** PUT with upload progress (fetch has none): resolves with the JSON answer. */
export function upload(path: string, file: Blob, onProgress: (done: number, total: number) => void): Promise<any> {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("PUT", path);
    for (const [k, v] of Object.entries(authHeaders())) x.setRequestHeader(k, v);
    x.setRequestHeader("Content-Type", "application/octet-stream");
    x.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    x.onerror = () => reject(new ApiError(0, "network", "upload failed: connection lost"));
    x.onload = () => {
      let j: any = undefined;
      try {
        j = x.responseText ? JSON.parse(x.responseText) : undefined;
      } catch {
        /* keep undefined */
      }
      if (x.status >= 200 && x.status < 300) resolve(j);
      else
        reject(
          new ApiError(x.status, j?.error?.code ?? "http_" + x.status, j?.error?.message ?? x.responseText),
        );
    };
    x.send(file);
  });
}

function b64url(s: string): string {
  const bytes = new TextEncoder().encode(s);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function openSocket(path: string): WebSocket {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const k = getKey();
  const protocols = k ? ["sbx", "sbx.key." + b64url(k)] : ["sbx"];
  const ws = new WebSocket(`${proto}//${location.host}${path}`, protocols);
  ws.binaryType = "arraybuffer";
  return ws;
}

export function q(params: Record<string, string | number | boolean | undefined>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") u.set(k, String(v));
  const s = u.toString();
  return s ? "?" + s : "";
}

export const enc = encodeURIComponent;

// Shapes used by the console (docs/api.md has the full objects).
export interface Sandbox {
  id: string;
  name: string | null;
  snapshot: string;
  state: string;
  created_at: string;
  metadata: Record<string, string>;
  resources: { cpus: number; memory_mb: number; pids: number; disk_mb: number };
  timeout_seconds: number;
  idle_ttl_seconds: number;
  expires_at: string | null;
  state_reason: string | null;
  network?: { mode: string; address?: string };
}

export interface Metrics {
  cpu_usage_seconds: number;
  memory_bytes: number;
  limits: { memory_bytes: number; cpus: number };
}

export interface Command {
  id: string;
  command: string[];
  state: string;
  exit_code: number | null;
  signal: number | null;
  error: { code: string; message: string } | null;
  started_at: string;
  finished_at: string | null;
  pty: boolean;
  stdout_bytes: number;
  stderr_bytes: number;
}

/** Decodes an output event's data to bytes. */
export function chunkBytes(ev: { data: string; encoding?: string }): Uint8Array {
  if (ev.encoding === "base64") {
    const bin = atob(ev.data);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  return new TextEncoder().encode(ev.data);
}
