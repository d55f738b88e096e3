// A command's output over the API's WebSocket stream, kept whole across network drops: every chunk
// carries its byte offset in its stream, the client remembers how far it got and reconnects with
// ?stdout_offset=N&stderr_offset=M, so the server sends each byte exactly once (docs/api.md, "stream").
import { chunkBytes, Command, enc, openSocket } from "./api";

export type StreamStatus = "connecting" | "open" | "reconnecting" | "exited" | "failed";

export interface StreamHandlers {
  data(stream: "stdout" | "stderr", bytes: Uint8Array): void;
  exit?(cmd: Command): void;
  status?(s: StreamStatus, detail?: string): void;
}

export class CommandStream {
  private ws: WebSocket | null = null;
  private offsets = { stdout: 0, stderr: 0 };
  private closed = false;
  private retries = 0;
  private timer: number | undefined;
  private pending: (string | Uint8Array)[] = [];

  constructor(
    private sandbox: string,
    private command: string,
    private h: StreamHandlers,
  ) {
    this.connect();
  }

  private connect(): void {
    const path =
      `/v1/sandboxes/${enc(this.sandbox)}/commands/${enc(this.command)}/stream` +
      `?stdout_offset=${this.offsets.stdout}&stderr_offset=${this.offsets.stderr}`;
    this.h.status?.(this.retries ? "reconnecting" : "connecting");
    const ws = openSocket(path);
    this.ws = ws;
    let gotExit = false;
    ws.onopen = () => {
      this.retries = 0;
      this.h.status?.("open");
      for (const m of this.pending.splice(0)) ws.send(m);
    };
    ws.onmessage = (m) => {
      if (typeof m.data !== "string") return;
      const ev = JSON.parse(m.data);
      if (ev.type === "output") {
        const s = ev.stream === "stderr" ? "stderr" : "stdout";
        const b = chunkBytes(ev);
        // A chunk that starts before what we have (a replay overlap) is trimmed, never shown twice.
        const skip = Math.max(0, this.offsets[s] - ev.offset);
        if (skip < b.length) {
          this.offsets[s] = ev.offset + b.length;
          this.h.data(s, skip ? b.subarray(skip) : b);
        }
      } else if (ev.type === "exit") {
        gotExit = true;
        this.closed = true;
        this.h.status?.("exited");
        this.h.exit?.(ev as Command);
      }
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closed || gotExit) return;
      // 4xxx/1008 and an upgrade refused before opening (auth, not found) after a few tries: give up.
      if (this.retries >= 30) {
        this.h.status?.("failed", `connection lost (${e.code})`);
        return;
      }
      const delay = Math.min(5000, 250 * 2 ** this.retries++);
      this.h.status?.("reconnecting", `retrying in ${(delay / 1000).toFixed(1)} s`);
      this.timer = window.setTimeout(() => this.connect(), delay);
    };
  }

  private sendRaw(m: string | Uint8Array): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(m);
    else if (!this.closed) this.pending.push(m);
  }

  /** Keystrokes or stdin bytes, as a binary frame. */
  input(data: string): void {
    this.sendRaw(new TextEncoder().encode(data));
  }

  resize(cols: number, rows: number): void {
    const m = JSON.stringify({ type: "resize", cols, rows });
    // Only the latest size matters while disconnected.
    this.pending = this.pending.filter((p) => typeof p !== "string" || !p.includes('"resize"'));
    this.sendRaw(m);
  }

  /** Simulates a network drop (tests, and the "reconnect" button): the socket closes, we reconnect. */
  drop(): void {
    this.ws?.close();
  }

  get bytesSeen(): number {
    return this.offsets.stdout + this.offsets.stderr;
  }

  close(): void {
    this.closed = true;
    window.clearTimeout(this.timer);
    this.ws?.close();
    this.ws = null;
  }
}
