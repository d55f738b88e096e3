// Starts a real `sbxd --ephemeral` (SBX_BUILD_DIR/bin/sbxd) on a free loopback port and points the
// unmodified E2B SDK at it the way a user would: E2B_API_URL and E2B_SANDBOX_URL set to the same
// http://127.0.0.1:PORT, E2B_API_KEY set to an sbx API key (the admin key here).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const build = process.env.SBX_BUILD_DIR ?? resolve(here, "../../build");

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

export const API_KEY = "e2b_" + "0123456789abcdef".repeat(2);

export async function startSbxd(extraArgs = []) {
  const port = await freePort();
  const dataDir = mkdtempSync("/var/tmp/sbx-e2b-");
  const log = join(dataDir, "sbxd.log");
  const fd = openSync(log, "a");
  const proc = spawn(join(build, "bin", "sbxd"), ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--ephemeral", ...extraArgs], {
    env: { ...process.env, SBX_API_KEY: API_KEY },
    stdio: ["ignore", fd, fd],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`sbxd exited: ${readFileSync(log, "utf8").slice(-2000)}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error("sbxd did not come up");
    await new Promise((r) => setTimeout(r, 50));
  }
  process.env.E2B_API_URL = url;
  process.env.E2B_SANDBOX_URL = url;
  process.env.E2B_API_KEY = API_KEY;
  return {
    url,
    port,
    log: () => readFileSync(log, "utf8"),
    async stop() {
      if (proc.exitCode === null) {
        const done = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await done;
      }
      // A clean exit; under ASan this is also where LeakSanitizer reports.
      const text = readFileSync(log, "utf8");
      rmSync(dataDir, { recursive: true, force: true });
      if (proc.exitCode !== 0) throw new Error(`sbxd exited with ${proc.exitCode}: ${text.slice(-4000)}`);
    },
  };
}

// Egress targets (tests/nettarget.py through nettarget_helper.py): a network namespace whose `addrs`
// answer TCP on `port` with "hello from ADDR", a fake upstream resolver answering `names` (name → index
// into addrs), `sbxdArgs` for a sbxd using them, and `probe`, a Python script printing
// {"host:port": "hello from ADDR" | "resolve: ..." | "connect: ..."}. Needs root.
export async function startNetTarget(names = {}) {
  const script = join(here, "..", "nettarget_helper.py");
  const proc = spawn("python3", [script, ...Object.entries(names).map(([n, i]) => `${n}=${i}`)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exited = new Promise((r) => proc.once("exit", r));
  const line = await new Promise((ok, fail) => {
    let buf = "";
    proc.stdout.on("data", (b) => {
      buf += b;
      const nl = buf.indexOf("\n");
      if (nl >= 0) ok(buf.slice(0, nl));
    });
    proc.once("exit", (code) => fail(new Error(`${script} exited with ${code} before it was ready`)));
  });
  const j = JSON.parse(line);
  return {
    net: j.net,
    addrs: j.addrs,
    port: j.port,
    sbxdArgs: j.sbxd_args,
    probe: j.probe,
    async close() {
      proc.stdin.end();
      await exited;
    },
  };
}
