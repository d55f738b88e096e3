// Starts a real `sbxd --ephemeral` (SBX_BUILD_DIR/bin/sbxd) on a free loopback port and points the
// unmodified OpenSandbox SDK at it the way a user would: OPEN_SANDBOX_DOMAIN set to
// 127.0.0.1:PORT/opensandbox (the SDK appends /v1) and OPEN_SANDBOX_API_KEY set to an sbx API key
// (the admin key here).
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

export const API_KEY = "osb_" + "0123456789abcdef".repeat(2);

export async function startSbxd() {
  const port = await freePort();
  const dataDir = mkdtempSync("/var/tmp/sbx-osb-");
  const log = join(dataDir, "sbxd.log");
  const fd = openSync(log, "a");
  const proc = spawn(join(build, "bin", "sbxd"), ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--ephemeral"], {
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
  process.env.OPEN_SANDBOX_DOMAIN = `127.0.0.1:${port}/opensandbox`;
  process.env.OPEN_SANDBOX_API_KEY = API_KEY;
  process.env.OPENSANDBOX_DISABLE_METRICS = "1";
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
