/** @internal The HTTP side: one place that adds the key, maps errors and retries what is safe to retry. */
import { Readable } from "node:stream";
import { ConnectionError, TimeoutError, errorFromResponse } from "./errors.js";

type BodyInit = NonNullable<RequestInit["body"]>;

export type Query = Record<string, string | number | boolean | undefined | null>;

/** How a request may be retried after a network failure. */
export type RetryMode =
  /** Only when the connection was refused (the request never reached the daemon). */
  | "connect"
  /** After any network failure: the request is idempotent (GET, file PUT, a command POST with its id, ...). */
  | "always";

export interface RequestOptions {
  query?: Query;
  json?: unknown;
  body?: BodyInit | Uint8Array | Readable | AsyncIterable<Uint8Array>;
  headers?: Record<string, string>;
  retry?: RetryMode;
  /** Milliseconds; 0 disables the request timeout. */
  timeoutMs?: number;
  /** Statuses answered without throwing (besides 2xx). */
  okStatuses?: number[];
}

export interface TransportOptions {
  url: string;
  apiKey?: string | undefined;
  requestTimeoutMs: number;
  reconnectTimeoutMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Network error codes that mean the request never reached the daemon. */
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"]);

function causeCode(e: unknown): string | undefined {
  let c: any = e; // eslint-disable-line @typescript-eslint/no-explicit-any
  for (let i = 0; i < 4 && c; i++) {
    if (typeof c.code === "string" && c.code !== "UND_ERR") return c.code;
    if (Array.isArray(c.errors) && c.errors[0]?.code) return c.errors[0].code;
    c = c.cause;
  }
  return undefined;
}

/** True when `e` proves the request never reached the daemon. */
export function wasNotSent(e: unknown): boolean {
  const c = causeCode(e);
  return c !== undefined && NOT_SENT.has(c);
}

export class Transport {
  readonly baseUrl: string;
  readonly apiKey: string | undefined;
  readonly requestTimeoutMs: number;
  readonly reconnectTimeoutMs: number;

  constructor(o: TransportOptions) {
    this.baseUrl = o.url.replace(/\/+$/, "");
    this.apiKey = o.apiKey || undefined;
    this.requestTimeoutMs = o.requestTimeoutMs;
    this.reconnectTimeoutMs = o.reconnectTimeoutMs;
  }

  headers(extra?: Record<string, string>): Record<string, string> {
    const h: Record<string, string> = { "User-Agent": "sbx-typescript/0.1.0" };
    if (this.apiKey) h.Authorization = `Bearer ${this.apiKey}`;
    return Object.assign(h, extra);
  }

  url(path: string, query?: Query): string {
    let u = this.baseUrl + path;
    if (query) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) qs.append(k, String(v));
      const s = qs.toString();
      if (s) u += (u.includes("?") ? "&" : "?") + s;
    }
    return u;
  }

  /** Sends one request; answers the Response (2xx or okStatuses) or throws a SandboxError. */
  async request(method: string, path: string, o: RequestOptions = {}): Promise<Response> {
    const retry = o.retry ?? (method === "GET" || method === "HEAD" ? "always" : "connect");
    const streaming = o.body instanceof Readable || (o.body !== undefined && isAsyncIterable(o.body));
    const deadline = Date.now() + this.reconnectTimeoutMs;
    let delay = 50;
    for (;;) {
      const headers = this.headers(o.headers);
      let body: BodyInit | undefined;
      if (o.json !== undefined) {
        body = JSON.stringify(o.json);
        headers["Content-Type"] = "application/json";
      } else if (streaming) {
        const r = o.body instanceof Readable ? o.body : Readable.from(o.body as AsyncIterable<Uint8Array>);
        body = Readable.toWeb(r) as unknown as BodyInit;
      } else {
        body = o.body as BodyInit | undefined;
      }
      const timeoutMs = o.timeoutMs ?? this.requestTimeoutMs;
      const init: RequestInit & { duplex?: string } = { method, headers, body };
      if (streaming) init.duplex = "half";
      if (timeoutMs > 0) init.signal = AbortSignal.timeout(timeoutMs);
      let res: Response;
      try {
        res = await fetch(this.url(path, o.query), init);
      } catch (e) {
        if ((e as Error)?.name === "TimeoutError" || (e as Error)?.name === "AbortError")
          throw new TimeoutError(`${method} ${path}: no answer within ${timeoutMs} ms`, "timeout", 0, undefined);
        const retryable = !streaming && (retry === "always" || wasNotSent(e));
        if (!retryable || Date.now() + delay > deadline)
          throw new ConnectionError(`${method} ${this.url(path)}: ${describe(e)}`, { cause: e });
        await sleep(delay);
        delay = Math.min(delay * 2, 1000);
        continue;
      }
      if (res.ok || o.okStatuses?.includes(res.status)) return res;
      const text = await res.text().catch(() => "");
      throw errorFromResponse(res.status, text);
    }
  }

  async json<T = any>(method: string, path: string, o: RequestOptions = {}): Promise<T> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const res = await this.request(method, path, o);
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** ws:// or wss:// URL for a path. */
  wsUrl(path: string, query?: Query): string {
    return this.url(path, query).replace(/^http/, "ws");
  }
}

function isAsyncIterable(v: unknown): v is AsyncIterable<Uint8Array> {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === "function" &&
    !(v instanceof Uint8Array) &&
    typeof (v as { getReader?: unknown }).getReader !== "function"
  );
}

export function describe(e: unknown): string {
  const code = causeCode(e);
  const msg = (e as { cause?: { message?: string } })?.cause?.message ?? (e as Error)?.message ?? String(e);
  return code && !msg.includes(code) ? `${code}: ${msg}` : msg;
}
