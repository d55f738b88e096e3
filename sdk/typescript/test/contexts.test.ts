/** Code contexts (sb.createContext, CodeContext.run / interrupt / delete) against a real sbxd: state between
 * runs, streamed output, values, rich outputs, errors, interrupt of an endless loop, typed errors. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ConflictError, InvalidArgumentError, NotFoundError, SandboxClient } from "@sbx/sdk";
import type { Execution, Sandbox } from "@sbx/sdk";
import { Daemon, waitFor } from "./helpers.js";

let d: Daemon;
let sb: Sandbox;

before(async () => {
  d = await new Daemon(undefined, ["--warm", "1"]).start();
  sb = await new SandboxClient({ url: d.url }).createSandbox();
});

after(async () => {
  await sb?.delete();
  assert.equal(await d.stop(), 0, "sbxd exits 0 on SIGTERM");
});

test("python: state, streamed output, values, rich outputs, errors", async () => {
  const ctx = await sb.createContext("python", { cwd: "/tmp", env: { WHO: "ts" } });
  assert.match(ctx.id, /^ctx_/);
  assert.equal(ctx.language, "python");
  let out = "";
  let ex = await ctx.run("import os\nx = 40\nprint('hi', os.environ['WHO'])", { onStdout: (s) => (out += s) });
  assert.equal(ex.stdout, "hi ts\n");
  assert.equal(out, "hi ts\n");
  assert.equal(ex.executionCount, 1);
  ex = await ctx.run("x + 2");
  assert.equal(ex.text, "42");
  assert.equal((await ctx.run("os.getcwd()")).text, "'/tmp'");
  const shown: unknown[] = [];
  ex = await ctx.run("display({'image/png': b'\\x89PNG\\r\\n\\x1a\\n'})\ndisplay({'text/html': '<b>x</b>'})", {
    onDisplay: (b) => shown.push(b),
  });
  assert.equal(shown.length, 2);
  assert.deepEqual(ex.images, [Buffer.from("\x89PNG\r\n\x1a\n", "latin1")]);
  assert.deepEqual(ex.outputs[1], { "text/html": "<b>x</b>" });
  ex = await ctx.run("def f():\n    raise ValueError('bad')\nf()");
  assert.equal(ex.error?.name, "ValueError");
  assert.equal(ex.error?.value, "bad");
  assert.ok(ex.error?.traceback.some((l) => l.includes("<cell-")));
  assert.deepEqual((await sb.contexts()).map((c) => c.id), [ctx.id]);
  assert.equal((await sb.getContext(ctx.id)).info.state, "idle");
  await ctx.delete();
  await ctx.delete({ missingOk: true });
  await assert.rejects(ctx.run("1"), NotFoundError);
});

test("node: interrupt an endless loop, the state stays; timeout", async () => {
  const ctx = await sb.createContext("node");
  await ctx.run("let n = 1");
  const running: Promise<Execution> = ctx.run("while (true) { n++ }");
  await waitFor(async () => (await ctx.refresh()).state === "busy", 10_000, "the cell to run");
  await assert.rejects(ctx.run("1"), (e: unknown) => e instanceof ConflictError && e.code === "context_busy");
  assert.equal(await ctx.interrupt(), true);
  const ex = await running;
  assert.equal(ex.error?.name, "KeyboardInterrupt");
  assert.ok(Number((await ctx.run("n")).text) > 1);
  const t = await ctx.run("while (true) {}", { timeout: 1 });
  assert.equal(t.timedOut, true);
  assert.equal(t.error?.name, "KeyboardInterrupt");
});

test("bash, runCode and typed errors", async () => {
  const ctx = await sb.createContext("bash");
  await ctx.run("cd /tmp; A=1");
  const ex = await ctx.run("echo $A $(pwd); false");
  assert.equal(ex.stdout, "1 /tmp\n");
  assert.equal(ex.exitCode, 1);
  assert.equal(ex.error?.name, "CommandExecError");
  assert.equal((await sb.runCode("print(6 * 7)")).stdout, "42\n");
  assert.equal((await sb.runCode("[1, 2].map((x) => x * 2)", { language: "node" })).text, "[ 2, 4 ]");
  await assert.rejects(sb.createContext("cobol"), InvalidArgumentError);
  await assert.rejects(sb.getContext("ctx_nope"), NotFoundError);
});
