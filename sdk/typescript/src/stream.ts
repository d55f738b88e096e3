/** @internal One attachment to a command's output stream, over WebSocket (`ws`) or Server-Sent Events. */
import WebSocket from "ws";
import { errorFromResponse } from "./errors.js";
import type { Transport } from "./http.js";

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface StreamEvents {
  /** An `output` event: `{stream, offset, data, encoding?}`. */
  output(j: Json): void;
  /** The `exit` event: the final command object. */
  exit(j: Json): void;
  /**
   * WebSocket only: called with a sender of text frames once the socket is open, and with null once it
   * is gone. The sender answers false when the socket was not open.
   */
  socket?(send: ((text: string) => boolean) | null): void;
}

/** `"exit"` once the exit event arrived; `"dropped"` when the connection ended before it. */
export type StreamEnd = "exit" | "dropped";

export type StreamTransport = "websocket" | "sse";

export function attach(
  t: Transport,
  kind: StreamTransport,
  path: string,
  offsets: { stdout: number; stderr: number },
  ev: StreamEvents,
  signal: AbortSignal,
): Promise<StreamEnd> {
  const query = { stdout_offset: offsets.stdout, stderr_offset: offsets.stderr };
  return kind === "sse" ? attachSse(t, path, query, ev, signal) : attachWs(t, path, query, ev, signal);
}

function attachWs(
  t: Transport,
  path: string,
  query: Record<string, number>,
  ev: StreamEvents,
  signal: AbortSignal,
): Promise<StreamEnd> {
  return new Promise<StreamEnd>((resolve, reject) => {
    let settled = false;
    const ws = new WebSocket(t.wsUrl(path, query), {
      headers: t.headers(),
      handshakeTimeout: t.requestTimeoutMs > 0 ? t.requestTimeoutMs : 30000,
      perMessageDeflate: false,
    });
    const finish = (how: StreamEnd | Error) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      ev.socket?.(null);
      if (how instanceof Error) reject(how);
      else resolve(how);
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
        if (how === "exit") ws.close(1000);
        else ws.terminate();
      }
    };
    const onAbort = () => finish("dropped");
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort);
    ws.on("unexpected-response", (_req, res) => {
      const parts: Buffer[] = [];
      res.on("data", (d: Buffer) => parts.push(d));
      res.on("end", () => finish(errorFromResponse(res.statusCode ?? 0, Buffer.concat(parts).toString())));
      res.on("error", () => finish("dropped"));
    });
    ws.on("open", () => {
      if (settled) return;
      ev.socket?.((text) => {
        if (settled || ws.readyState !== WebSocket.OPEN) return false;
        ws.send(text);
        return true;
      });
    });
    ws.on("message", (data, isBinary) => {
      if (settled || isBinary) return;
      let j: Json;
      try {
        j = JSON.parse(data.toString());
      } catch {
        return;
      }
      try {
        if (j.type === "output") ev.output(j);
        else if (j.type === "exit") {
          ev.exit(j);
          finish("exit");
        }
      } catch (e) {
        finish(e as Error);
      }
    });
    ws.on("error", () => finish("dropped"));
    ws.on("close", () => finish("dropped"));
  });
}

async function attachSse(
  t: Transport,
  path: string,
  query: Record<string, number>,
  ev: StreamEvents,
  signal: AbortSignal,
): Promise<StreamEnd> {
  const ctl = new AbortController();
  const onAbort = () => ctl.abort();
  signal.addEventListener("abort", onAbort);
  try {
    let res: Response;
    try {
      res = await fetch(t.url(path, query), {
        headers: t.headers({ Accept: "text/event-stream" }),
        signal: ctl.signal,
      });
    } catch {
      return "dropped";
    }
    if (!res.ok) throw errorFromResponse(res.status, await res.text().catch(() => ""));
    if (!res.body) return "dropped";
    const decoder = new TextDecoder();
    let buf = "";
    try {
      for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(piece, { stream: true });
        let sep: number;
        while ((sep = findBlockEnd(buf)) >= 0) {
          const block = buf.slice(0, sep);
          buf = buf.slice(sep).replace(/^(\r?\n){2}/, "");
          const e = parseBlock(block);
          if (!e) continue;
          if (e.event === "output") ev.output(JSON.parse(e.data));
          else if (e.event === "exit") {
            ev.exit(JSON.parse(e.data));
            ctl.abort();
            return "exit";
          }
        }
      }
    } catch (e) {
      if (e instanceof SyntaxError || !(e instanceof Error) || isUserError(e)) throw e;
      return "dropped";
    }
    return "dropped";
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** Errors thrown by the caller's callbacks must propagate; socket errors must not. */
function isUserError(e: Error): boolean {
  return (e as { __sbxUser?: boolean }).__sbxUser === true;
}

function findBlockEnd(s: string): number {
  const a = s.indexOf("\n\n");
  const b = s.indexOf("\r\n\r\n");
  if (a < 0) return b;
  if (b < 0) return a;
  return Math.min(a, b);
}

function parseBlock(block: string): { event: string; data: string } | null {
  let event = "message";
  const data: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const k = i < 0 ? line : line.slice(0, i);
    let v = i < 0 ? "" : line.slice(i + 1);
    if (v.startsWith(" ")) v = v.slice(1);
    if (k === "event") event = v;
    else if (k === "data") data.push(v);
  }
  return data.length ? { event, data: data.join("\n") } : null;
}

/** Marks an error thrown by user code so the stream layer rethrows it instead of reconnecting. */
export function markUserError(e: unknown): unknown {
  if (e && typeof e === "object") (e as { __sbxUser?: boolean }).__sbxUser = true;
  return e;
}
