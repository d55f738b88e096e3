// pty.*: create with a size, input, resize, kill, through the unmodified E2B SDK.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Sandbox } from "e2b";
import { startSbxd } from "./helpers.mjs";

let d, sbx;
before(async () => {
  d = await startSbxd();
  sbx = await Sandbox.create();
});
after(async () => {
  await sbx?.kill();
  await d?.stop();
});

async function until(cond, what, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("a terminal: input, resize, output, kill", async () => {
  let out = "";
  const dec = new TextDecoder();
  const h = await sbx.pty.create({ cols: 80, rows: 24, onData: (b) => (out += dec.decode(b)) });
  assert.ok(h.pid > 0);
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode("stty size; echo TERM=$TERM\n"));
  await until(() => out.includes("24 80") && out.includes("TERM=xterm-256color"), "stty output");
  await sbx.pty.resize(h.pid, { cols: 120, rows: 40 });
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode("stty size\n"));
  await until(() => out.includes("40 120"), "resized stty output");
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode("tty\n"));
  await until(() => /\/dev\/pts\/\d+/.test(out), "tty name");
  assert.equal(await sbx.pty.kill(h.pid), true);
  await assert.rejects(h.wait());
});

test("exit from the shell ends the terminal with its code", async () => {
  const h = await sbx.pty.create({ cols: 80, rows: 24, onData: () => {} });
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode("exit 0\n"));
  const r = await h.wait();
  assert.equal(r.exitCode, 0);
});
