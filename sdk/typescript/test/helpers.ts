/** Test helpers: a real `sbxd --ephemeral` on a temporary data dir, and a TCP proxy that can cut connections. */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, closeSync } from "node:fs";
import net from "node:net";
import { join, resolve } from "node:path";

export const SOURCE_DIR = process.env.SBX_SOURCE_DIR ?? resolve(import.meta.dirname ?? ".", "../../..");
export const BUILD_DIR = process.env.SBX_BUILD_DIR ?? join(SOURCE_DIR, "build");

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor<T>(cond: () => Promise<T> | T, timeoutMs = 10_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
}

/** A real sbxd. `stop()` sends SIGTERM and answers its exit code. */
export class Daemon {
  port = 0;
  proc: ChildProcess | null = null;
  readonly dataDir: string;
  readonly logPath: string;
  #exit: Promise<number | null> | null = null;

  /** `extraArgs` go to sbxd after the usual ones (e.g. {@link NetTarget.sbxdArgs}). */
  constructor(
    readonly apiKey?: string,
    readonly extraArgs: string[] = [],
  ) {
    this.dataDir = mkdtempSync("/var/tmp/sbx-ts-");
    this.logPath = join(this.dataDir, "sbxd.log");
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  log(): string {
    try {
      return readFileSync(this.logPath, "utf8").slice(-4000);
    } catch {
      return "";
    }
  }

  async start(): Promise<this> {
    if (!this.port) this.port = await freePort();
    const env = { ...process.env };
    delete env.SBX_API_KEY;
    delete env.SBX_URL;
    if (this.apiKey) env.SBX_API_KEY = this.apiKey;
    const fd = openSync(this.logPath, "a");
    const bin = join(BUILD_DIR, "bin", "sbxd");
    const args = ["--listen", `127.0.0.1:${this.port}`, "--data-dir", this.dataDir, "--ephemeral", ...this.extraArgs];
    this.proc = spawn(bin, args, {
      env,
      stdio: ["ignore", fd, fd],
    });
    closeSync(fd);
    const proc = this.proc;
    this.#exit = new Promise((res) => proc.once("exit", (code, sig) => res(code ?? (sig ? -1 : null))));
    let exited = false;
    this.#exit.then(() => (exited = true));
    await waitFor(
      async () => {
        if (exited) throw new Error(`sbxd (${bin}) exited early: ${this.log()}`);
        try {
          return (await fetch(`${this.url}/healthz`)).status === 200;
        } catch {
          return false;
        }
      },
      15_000,
      "sbxd /healthz",
    );
    return this;
  }

  /** `kill -9` sbxd (its sandboxes' shims live on), then start it again on the same port and data dir. */
  async crashAndRestart(): Promise<void> {
    this.proc?.kill("SIGKILL");
    await this.#exit;
    await this.start();
  }

  /** SIGTERM, then the exit code (sbxd --ephemeral deletes its sandboxes and exits 0). */
  async stop(timeoutMs = 30_000): Promise<number | null> {
    if (!this.proc || !this.#exit) return null;
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGTERM");
    const t = setTimeout(() => this.proc?.kill("SIGKILL"), timeoutMs);
    const code = await this.#exit;
    clearTimeout(t);
    rmSync(this.dataDir, { recursive: true, force: true });
    return code;
  }
}

/**
 * A TCP proxy in front of sbxd. `dropAll()` cuts every connection at once (both ends reset);
 * `dropNextResponse()` forwards the next request but cuts its connection instead of passing the first
 * bytes of the answer back; `pause()`/`unpause()` stop and restart listening (connections refused).
 */
export class Proxy {
  port = 0;
  #server: net.Server | null = null;
  readonly #pairs = new Set<[net.Socket, net.Socket]>();
  #dropNext = false;
  connections = 0;

  constructor(readonly upstreamPort: number) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<this> {
    this.#server = net.createServer((client) => {
      this.connections++;
      const up = net.connect(this.upstreamPort, "127.0.0.1");
      const pair: [net.Socket, net.Socket] = [client, up];
      this.#pairs.add(pair);
      const end = () => {
        client.destroy();
        up.destroy();
        this.#pairs.delete(pair);
      };
      client.on("data", (d) => up.write(d));
      up.on("data", (d) => {
        if (this.#dropNext) {
          this.#dropNext = false;
          end();
          return;
        }
        client.write(d);
      });
      client.on("end", () => up.end());
      up.on("end", () => client.end());
      client.on("error", end);
      up.on("error", end);
      client.on("close", end);
      up.on("close", end);
    });
    await new Promise<void>((r) => this.#server!.listen(port, "127.0.0.1", r));
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this;
  }

  get open(): number {
    return this.#pairs.size;
  }

  dropAll(): void {
    for (const [a, b] of this.#pairs) {
      a.resetAndDestroy();
      b.destroy();
    }
    this.#pairs.clear();
  }

  dropNextResponse(): void {
    this.#dropNext = true;
  }

  /** Stops listening and cuts every connection: the daemon looks unreachable. */
  async pause(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    this.dropAll();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  async unpause(): Promise<void> {
    await this.start(this.port);
  }

  async stop(): Promise<void> {
    await this.pause();
  }
}

/**
 * Egress test targets from tests/nettarget.py, run by tests/nettarget_helper.py: a network
 * namespace whose `addrs` (two addresses in a documentation range, `net`.2 and `net`.3) answer TCP on
 * `port` with "hello from ADDR", and a fake upstream DNS resolver answering `names` (name → index into
 * `addrs`). `sbxdArgs` are the arguments that give a sbxd that resolver and an egress subnet of its own;
 * `probe` is a Python script to run in a sandbox: `python3 -c PROBE host:port...` prints
 * `{"host:port": "hello from ADDR" | "resolve: ..." | "connect: ..."}`. `close()` removes them all.
 */
export class NetTarget {
  net = "";
  addrs: string[] = [];
  port = 0;
  sbxdArgs: string[] = [];
  probe = "";
  #proc: ChildProcess | null = null;
  #exit: Promise<unknown> | null = null;

  async start(names: Record<string, number> = {}): Promise<this> {
    const script = join(SOURCE_DIR, "tests", "nettarget_helper.py");
    const args = [script, ...Object.entries(names).map(([n, i]) => `${n}=${i}`)];
    const proc = spawn("python3", args, { stdio: ["pipe", "pipe", "inherit"] });
    this.#proc = proc;
    this.#exit = new Promise((res) => proc.once("exit", res));
    const line = await new Promise<string>((res, rej) => {
      const rl = createInterface({ input: proc.stdout! });
      rl.once("line", (l) => {
        rl.close();
        res(l);
      });
      proc.once("exit", (code) => rej(new Error(`${script} exited with ${code} before it was ready`)));
    });
    const j = JSON.parse(line);
    Object.assign(this, { net: j.net, addrs: j.addrs, port: j.port, sbxdArgs: j.sbxd_args, probe: j.probe });
    return this;
  }

  /** The egress subnet sbxd was given (`"10.x.y.0/24"`). */
  get subnet(): string {
    return this.sbxdArgs[this.sbxdArgs.indexOf("--egress-subnet") + 1];
  }

  async close(): Promise<void> {
    if (!this.#proc) return;
    this.#proc.stdin?.end(); // the helper tears down the namespace and exits
    const t = setTimeout(() => this.#proc?.kill("SIGTERM"), 10_000);
    await this.#exit;
    clearTimeout(t);
    this.#proc = null;
  }
}

/**
 * Registries on loopback for the pull tests, run by tests/sdk_typescript/registry_helper.py (Debian's
 * docker-registry as tests/e2e/test_registry_pull.py runs it): `host` holds `sdk/app:v1` (busybox, then
 * `/app/hello` and `noise` random bytes in `/app/noise`; `WorkingDir` `/app`, env `WHO=pulled`; its
 * diff_ids in `appLayers`), `sdk/small:v1` (`/etc/motd`, also by `smallDigest`) and `sbx/tok:v1`;
 * `slowHost` is the same registry through a 2 MiB/s proxy; `privateHost` wants basic auth
 * (`user`/`password`, image `sdk/private:v1` with `/private`); `tokenHost` fronts `host` and accepts
 * only `Bearer token`. `close()` stops them all.
 */
export class Registries {
  host = "";
  slowHost = "";
  privateHost = "";
  user = "";
  password = "";
  tokenHost = "";
  token = "";
  appLayers: string[] = [];
  noise = 0;
  smallDigest = "";
  #proc: ChildProcess | null = null;
  #exit: Promise<unknown> | null = null;

  async start(): Promise<this> {
    const script = join(SOURCE_DIR, "tests", "sdk_typescript", "registry_helper.py");
    const proc = spawn("/usr/bin/python3", [script], { stdio: ["pipe", "pipe", "inherit"] });
    this.#proc = proc;
    this.#exit = new Promise((res) => proc.once("exit", res));
    const line = await new Promise<string>((res, rej) => {
      const rl = createInterface({ input: proc.stdout! });
      rl.once("line", (l) => {
        rl.close();
        res(l);
      });
      proc.once("exit", (code) => rej(new Error(`${script} exited with ${code} before it was ready`)));
    });
    const j = JSON.parse(line);
    Object.assign(this, {
      host: j.host,
      slowHost: j.slow_host,
      privateHost: j.private_host,
      user: j.user,
      password: j.password,
      tokenHost: j.token_host,
      token: j.token,
      appLayers: j.app_layers,
      noise: j.noise,
      smallDigest: j.small_digest,
    });
    return this;
  }

  async close(): Promise<void> {
    if (!this.#proc) return;
    this.#proc.stdin?.end(); // the helper stops the registries and exits
    const t = setTimeout(() => this.#proc?.kill("SIGTERM"), 10_000);
    await this.#exit;
    clearTimeout(t);
    this.#proc = null;
  }
}
