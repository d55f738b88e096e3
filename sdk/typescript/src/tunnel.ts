/**
 * TCP tunnels: a local `net.Server` whose connections are carried to a port inside the sandbox over one
 * WebSocket (`GET /v1/sandboxes/{id}/tunnel`) holding a yamux session (docs/api.md, "TCP tunnels").
 */
import net from "node:net";
import WebSocket from "ws";
import { ConnectionError, SandboxError, errorFromResponse } from "./errors.js";
import type { Transport } from "./http.js";

const asyncDispose: typeof Symbol.asyncDispose =
  (Symbol as { asyncDispose?: typeof Symbol.asyncDispose }).asyncDispose ??
  (Symbol.for("Symbol.asyncDispose") as typeof Symbol.asyncDispose);

// yamux (version 0): 12-byte big-endian header {version, type, flags, stream id, length}.
const T_DATA = 0;
const T_WINDOW = 1;
const T_PING = 2;
const T_GO_AWAY = 3;
const F_SYN = 1;
const F_ACK = 2;
const F_FIN = 4;
const F_RST = 8;
const WINDOW = 256 * 1024;

function frame(type: number, flags: number, id: number, length: number, payload?: Uint8Array): Buffer {
  const b = Buffer.alloc(12 + (payload?.length ?? 0));
  b[0] = 0;
  b[1] = type;
  b.writeUInt16BE(flags, 2);
  b.writeUInt32BE(id, 4);
  b.writeUInt32BE(length >>> 0, 8);
  if (payload) b.set(payload, 12);
  return b;
}

export interface TunnelOptions {
  /** Local port to listen on (default 0: any free port; read `tunnel.localPort`). */
  localPort?: number;
  /** Local address to listen on (default `127.0.0.1`). */
  host?: string;
}

interface YStream {
  id: number;
  sock: net.Socket;
  sendWindow: number;
  /** Bytes received (status byte included) not yet credited back. */
  unacked: number;
  connected: boolean;
  /** The local side ended (a FIN is due once `pending` is sent). */
  finWanted: boolean;
  finSent: boolean;
  closed: boolean;
  pending: Buffer[];
}

/** One yamux session over one WebSocket. */
class Session {
  readonly #ws: WebSocket;
  readonly #streams = new Map<number, YStream>();
  #nextId = 1;
  #buf: Buffer = Buffer.alloc(0);
  dead = false;
  readonly opened: Promise<void>;

  constructor(t: Transport, path: string, onDead: () => void) {
    this.#ws = new WebSocket(t.wsUrl(path), {
      headers: t.headers(),
      handshakeTimeout: t.requestTimeoutMs > 0 ? t.requestTimeoutMs : 30000,
      perMessageDeflate: false,
    });
    this.opened = new Promise<void>((resolve, reject) => {
      this.#ws.once("open", () => resolve());
      this.#ws.once("unexpected-response", (_req, res) => {
        const parts: Buffer[] = [];
        res.on("data", (d: Buffer) => parts.push(d));
        res.on("end", () => reject(errorFromResponse(res.statusCode ?? 0, Buffer.concat(parts).toString())));
        res.on("error", (e) => reject(new ConnectionError(`tunnel: ${e.message}`, { cause: e })));
      });
      this.#ws.once("error", (e) => reject(new ConnectionError(`tunnel: ${e.message}`, { cause: e })));
    });
    this.opened.catch(() => {});
    this.#ws.on("error", () => {});
    this.#ws.on("message", (data: Buffer | ArrayBuffer | Buffer[]) => {
      const d = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      this.#onBytes(d);
    });
    this.#ws.on("close", () => {
      this.dead = true;
      for (const s of this.#streams.values()) s.sock.destroy();
      this.#streams.clear();
      onDead();
    });
  }

  #send(b: Buffer): void {
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(b, { binary: true });
  }

  close(): void {
    if (this.#ws.readyState === WebSocket.OPEN) {
      this.#send(frame(T_GO_AWAY, 0, 0, 0));
      this.#ws.close(1000);
    } else this.#ws.terminate();
  }

  get streams(): number {
    return this.#streams.size;
  }

  /** Carries one local connection to `port` inside the sandbox. */
  open(sock: net.Socket, port: number): void {
    const id = this.#nextId;
    this.#nextId += 2;
    const s: YStream = { id, sock, sendWindow: WINDOW, unacked: 0, connected: false, finWanted: false, finSent: false, closed: false, pending: [] };
    this.#streams.set(id, s);
    const hello = Buffer.from([1, (port >> 8) & 0xff, port & 0xff]);
    this.#send(frame(T_DATA, F_SYN, id, hello.length, hello));
    s.sendWindow -= hello.length;
    sock.pause(); // nothing flows before sbxd's status byte
    sock.on("data", (d: Buffer) => this.#write(s, d));
    sock.on("end", () => {
      if (s.closed || s.finWanted) return;
      s.finWanted = true;
      this.#flush(s);
    });
    const gone = () => {
      if (s.closed) return;
      s.closed = true;
      this.#streams.delete(id);
      if (!s.finSent || s.pending.length) this.#send(frame(T_WINDOW, F_RST, id, 0));
    };
    sock.on("error", gone);
    sock.on("close", gone);
  }

  #write(s: YStream, d: Buffer): void {
    s.pending.push(d);
    this.#flush(s);
  }

  #flush(s: YStream): void {
    while (s.pending.length && s.sendWindow > 0) {
      let d = s.pending[0]!;
      if (d.length > s.sendWindow) {
        s.pending[0] = d.subarray(s.sendWindow);
        d = d.subarray(0, s.sendWindow);
      } else s.pending.shift();
      s.sendWindow -= d.length;
      this.#send(frame(T_DATA, 0, s.id, d.length, d));
    }
    if (s.pending.length) s.sock.pause();
    else {
      if (s.connected && !s.closed && !s.finWanted) s.sock.resume();
      if (s.finWanted && !s.finSent && !s.closed) {
        s.finSent = true;
        this.#send(frame(T_WINDOW, F_FIN, s.id, 0));
      }
    }
  }

  #credit(s: YStream, n: number): void {
    s.unacked += n;
    if (s.unacked >= WINDOW / 2) {
      this.#send(frame(T_WINDOW, 0, s.id, s.unacked));
      s.unacked = 0;
    }
  }

  #onBytes(d: Buffer): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
    for (;;) {
      if (this.#buf.length < 12) return;
      const type = this.#buf[1]!;
      const flags = this.#buf.readUInt16BE(2);
      const id = this.#buf.readUInt32BE(4);
      const length = this.#buf.readUInt32BE(8);
      if (this.#buf[0] !== 0 || type > T_GO_AWAY) {
        this.close();
        return;
      }
      const need = type === T_DATA ? 12 + length : 12;
      if (this.#buf.length < need) return;
      const payload = type === T_DATA ? this.#buf.subarray(12, need) : undefined;
      this.#buf = this.#buf.subarray(need);
      this.#onFrame(type, flags, id, length, payload);
    }
  }

  #onFrame(type: number, flags: number, id: number, length: number, payload?: Buffer): void {
    if (type === T_PING) {
      if (flags & F_SYN) this.#send(frame(T_PING, F_ACK, 0, length));
      return;
    }
    if (type === T_GO_AWAY) {
      this.close();
      return;
    }
    const s = this.#streams.get(id);
    if (!s) return;
    if (type === T_WINDOW && length > 0) {
      s.sendWindow += length;
      this.#flush(s);
    }
    if (payload && payload.length) {
      let data = payload;
      if (!s.connected) {
        const status = data[0];
        if (status !== 0) {
          s.closed = true;
          this.#streams.delete(id);
          this.#send(frame(T_WINDOW, F_RST, id, 0));
          s.sock.destroy();
          return;
        }
        s.connected = true;
        data = data.subarray(1);
        this.#credit(s, 1);
        if (!s.pending.length) s.sock.resume();
      }
      if (data.length) {
        const n = data.length;
        if (s.sock.write(data)) this.#credit(s, n);
        else s.sock.once("drain", () => this.#credit(s, n));
      }
    }
    if (flags & F_RST) {
      s.closed = true;
      this.#streams.delete(id);
      s.sock.destroy();
    } else if (flags & F_FIN) {
      s.sock.end();
      if (s.finSent) {
        s.closed = true;
        this.#streams.delete(id);
      }
    }
  }
}

/**
 * A local TCP listener forwarding each connection to `remotePort` inside a sandbox. Made by
 * `sb.tunnel(port)`; `await using t = await sb.tunnel(port)` closes it at scope end.
 */
export class Tunnel implements AsyncDisposable {
  readonly server: net.Server;
  readonly remotePort: number;
  readonly #t: Transport;
  readonly #path: string;
  #session: Session | null = null;
  #closed = false;
  readonly #socks = new Set<net.Socket>();

  /** @internal Use `sb.tunnel(port)`. */
  constructor(t: Transport, path: string, remotePort: number) {
    this.#t = t;
    this.#path = path;
    this.remotePort = remotePort;
    // allowHalfOpen: a client's FIN travels to the service, whose answer can still come back.
    this.server = net.createServer({ allowHalfOpen: true }, (sock) => void this.#accept(sock));
  }

  /** The local port connections go to. */
  get localPort(): number {
    return (this.server.address() as net.AddressInfo).port;
  }
  /** The local address listened on. */
  get host(): string {
    return (this.server.address() as net.AddressInfo).address;
  }

  /** @internal Opens the session (errors like `NotFoundError` / `NotRunningError` surface here) and listens. */
  async start(o: TunnelOptions): Promise<this> {
    await this.#sessionNow();
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(o.localPort ?? 0, o.host ?? "127.0.0.1", () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    return this;
  }

  async #sessionNow(): Promise<Session> {
    if (this.#session && !this.#session.dead) return this.#session;
    const s = new Session(this.#t, this.#path, () => {
      if (this.#session === s) this.#session = null;
    });
    this.#session = s;
    try {
      await s.opened;
    } catch (e) {
      if (this.#session === s) this.#session = null;
      throw e;
    }
    return s;
  }

  async #accept(sock: net.Socket): Promise<void> {
    sock.pause();
    sock.on("error", () => {});
    this.#socks.add(sock);
    sock.on("close", () => this.#socks.delete(sock));
    try {
      if (this.#closed) throw new SandboxError("tunnel closed", "closed");
      (await this.#sessionNow()).open(sock, this.remotePort);
    } catch {
      sock.destroy();
    }
  }

  /** Stops listening and ends every connection and the WebSocket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const done = new Promise<void>((r) => this.server.close(() => r()));
    this.#session?.close();
    this.#session = null;
    for (const s of this.#socks) s.destroy();
    if (this.server.listening) await done;
  }

  async [asyncDispose](): Promise<void> {
    await this.close();
  }
}
