/** The README's examples (examples/*) run as they are against a real sbxd. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { Daemon } from "./helpers.js";

const run = promisify(execFile);
const dir = join(import.meta.dirname, "..", "examples");
let d: Daemon;

before(async () => {
  d = await new Daemon().start();
});

after(async () => {
  assert.equal(await d.stop(), 0);
});

async function example(name: string): Promise<string> {
  const { stdout } = await run(process.execPath, [join(dir, name)], {
    env: { ...process.env, SBX_URL: d.url, SBX_API_KEY: "" },
    timeout: 30_000,
  });
  return stdout;
}

test("examples/quickstart.mjs", async () => {
  const out = await example("quickstart.mjs");
  assert.match(out, /^3 "hello from .*\\n" "oops\\n"$/m);
  assert.match(out, /\[live\] tick 3/);
  assert.match(out, /^42$/m);
});

test("examples/interactive.mjs", async () => {
  const out = await example("interactive.mjs");
  assert.match(out, /stdout: 42/);
  assert.match(out, /exit code 0/);
  assert.match(out, /replayed: "42\\n"/);
});

test("examples/lifecycle.cjs", async () => {
  const out = await example("lifecycle.cjs");
  assert.match(out, /stopped: not_running 409/);
  assert.match(out, /^true true$/m);
  assert.match(out, /^1$/m);
  assert.match(out, /^true sandbox `sbx_nope` not found/m);
});
