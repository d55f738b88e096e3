/** sbxd killed with SIGKILL and restarted mid-stream: handles re-attach through the new sbxd. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { SandboxClient } from "@sbx/sdk";
import type { Sandbox } from "@sbx/sdk";
import { Daemon } from "./helpers.js";

let d: Daemon;
let sb: Sandbox;

before(async () => {
  d = await new Daemon().start();
  sb = await new SandboxClient({ url: d.url }).createSandbox();
});

after(async () => {
  await sb?.delete();
  assert.equal(await d.stop(), 0, "the restarted sbxd exits 0 on SIGTERM");
});

test("a running command's output continues exactly once across a sbxd crash and restart", async () => {
  const expected = Array.from({ length: 50 }, (_, i) => `n${i + 1}\n`).join("");
  const h = await sb.run("for i in $(seq 1 50); do echo n$i; sleep 0.03; done", { wait: false, id: "ts-restart" });
  let out = "";
  let restarted: Promise<void> | null = null;
  for await (const c of h) {
    out += c.data;
    if (!restarted && out.includes("n8\n")) restarted = d.crashAndRestart();
  }
  await restarted;
  assert.ok(h.reconnects >= 1);
  assert.equal(out, expected);
  const r = await h.result;
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, expected);
  assert.equal((await sb.refresh()).state, "running");
  assert.equal((await sb.run("echo after")).stdout, "after\n");
});
