// /execute/ws through the unmodified SDK: sync and streaming runs, stdin, kill, timeouts, reconnect by
// command id with byte offsets, and UTF-8 split across chunks.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { SandboxClient, LangSmithCommandTimeoutError, LangSmithSandboxOperationError } from "langsmith/sandbox";
import { startSbxd } from "./helpers.mjs";

let sbxd, client, sb;
before(async () => {
  sbxd = await startSbxd();
  client = new SandboxClient();
  sb = await client.createSandbox();
});
after(async () => {
  await sb?.delete();
  await sbxd?.stop();
});

test("run: stdout, stderr, exit code, env and cwd", async () => {
  const r = await sb.run("echo out; echo err >&2; exit 3");
  assert.equal(r.stdout, "out\n");
  assert.equal(r.stderr, "err\n");
  assert.equal(r.exit_code, 3);
  const e = await sb.run('echo "$A $PWD"', { env: { A: "1" }, cwd: "/tmp" });
  assert.equal(e.stdout, "1 /tmp\n");
  const rc = await sb.run('echo "$B $PWD"', { runConfig: { env_vars: { B: "2" }, work_dir: "/var" } });
  assert.equal(rc.stdout, "2 /var\n");
});

test("streaming with callbacks and wait:false", async () => {
  const chunks = [];
  const h = await sb.run("for i in 1 2 3; do echo line$i; sleep 0.1; done", {
    wait: false,
    onStdout: (d) => chunks.push(d),
  });
  assert.ok(h.commandId);
  const r = await h.result;
  assert.equal(r.stdout, "line1\nline2\nline3\n");
  assert.equal(chunks.join(""), r.stdout);
  assert.equal(r.exit_code, 0);
});

test("stdin: sendInput then closeInput", async () => {
  const h = await sb.run("cat; echo done", { wait: false, closeInput: false });
  h.sendInput("hello ");
  h.sendInput("world\n");
  h.closeInput();
  const r = await h.result;
  assert.equal(r.stdout, "hello world\ndone\n");
});

test("kill ends the command with a non-zero exit", async () => {
  const h = await sb.run("sleep 30", { wait: false });
  h.kill();
  const r = await h.result;
  assert.notEqual(r.exit_code, 0);
});

test("timeout raises CommandTimeoutError", async () => {
  await assert.rejects(sb.run("sleep 10", { timeout: 1 }), LangSmithCommandTimeoutError);
});

test("reconnect by command id from offsets; an unknown id is CommandNotFound", async () => {
  const h = await sb.run("echo abc; sleep 0.5; echo def", { wait: false });
  const r = await h.result;
  assert.equal(r.stdout, "abc\ndef\n");
  const again = await sb.reconnect(h.commandId, { stdoutOffset: 4 });
  const r2 = await again.result;
  assert.equal(r2.stdout, "def\n");
  assert.equal(r2.exit_code, 0);
  const gone = await sb.reconnect("no-such-command");
  await assert.rejects(gone.result, (e) => {
    assert.ok(e instanceof LangSmithSandboxOperationError, e.constructor.name);
    assert.equal(e.errorType ?? e.error_type, "CommandNotFound");
    return true;
  });
});

test("the same command_id reattaches instead of running twice", async () => {
  const id = "fixed-id-1";
  const a = await sb.run("echo x >> /tmp/count; cat /tmp/count | wc -l", { commandId: id });
  const b = await sb.run("echo x >> /tmp/count; cat /tmp/count | wc -l", { commandId: id });
  assert.equal(a.stdout, "1\n");
  assert.equal(b.stdout, "1\n");
});

test("multi-byte UTF-8 and large output keep byte offsets", async () => {
  const r = await sb.run("python3 -c \"import sys; [sys.stdout.write('é€😀' * 1000) for _ in range(100)]\"");
  assert.equal(r.stdout, "é€😀".repeat(100000));
  const big = await sb.run("head -c 5000000 /dev/zero | tr '\\0' a");
  assert.equal(big.stdout.length, 5000000);
});
