// commands.*: foreground with callbacks, exit errors, background + wait, stdin, kill, connect by pid,
// list, and the Connect-Timeout-Ms deadline, through the unmodified E2B SDK.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Sandbox, CommandExitError, TimeoutError, NotFoundError } from "e2b";
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

test("run in the foreground with stdout and stderr callbacks", async () => {
  const out = [], err = [];
  const r = await sbx.commands.run("echo hello; echo oops >&2; printf 'no newline'", {
    onStdout: (s) => out.push(s),
    onStderr: (s) => err.push(s),
  });
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, "hello\nno newline");
  assert.equal(r.stderr, "oops\n");
  assert.equal(out.join(""), "hello\nno newline");
  assert.equal(err.join(""), "oops\n");
});

test("envs and cwd reach the process", async () => {
  const r = await sbx.commands.run('echo "$GREETING"; pwd', { envs: { GREETING: "hi e2b" }, cwd: "/tmp" });
  assert.equal(r.stdout, "hi e2b\n/tmp\n");
});

test("a non-zero exit raises CommandExitError", async () => {
  await assert.rejects(sbx.commands.run("echo bad >&2; exit 3"), (e) => {
    assert.ok(e instanceof CommandExitError, String(e));
    assert.equal(e.exitCode, 3);
    assert.equal(e.stderr, "bad\n");
    assert.match(e.error, /exit status 3/);
    return true;
  });
});

test("background command, then wait", async () => {
  const h = await sbx.commands.run("sleep 0.3; echo done", { background: true });
  assert.ok(h.pid > 0);
  const r = await h.wait();
  assert.equal(r.exitCode, 0);
  assert.equal(r.stdout, "done\n");
});

test("stdin: sendStdin then closeStdin", async () => {
  const h = await sbx.commands.run("cat", { background: true, stdin: true });
  await sbx.commands.sendStdin(h.pid, "line one\n");
  await sbx.commands.sendStdin(h.pid, "line two\n");
  await sbx.commands.closeStdin(h.pid);
  const r = await h.wait();
  assert.equal(r.stdout, "line one\nline two\n");
});

test("list shows a running command; kill ends it", async () => {
  const h = await sbx.commands.run("sleep 30", { background: true });
  const procs = await sbx.commands.list();
  const mine = procs.find((p) => p.pid === h.pid);
  assert.ok(mine, JSON.stringify(procs));
  assert.equal(mine.cmd, "/bin/bash");
  assert.deepEqual(mine.args, ["-l", "-c", "sleep 30"]);
  assert.equal(await sbx.commands.kill(h.pid), true);
  await assert.rejects(h.wait(), (e) => {
    assert.ok(e instanceof CommandExitError, String(e));
    assert.equal(e.exitCode, -1);
    assert.match(e.error, /signal: killed/);
    return true;
  });
  assert.equal(await sbx.commands.kill(999999), false);
});

test("connect to a running command by pid", async () => {
  const h = await sbx.commands.run("read x; echo got $x; sleep 0.2; echo bye", { background: true, stdin: true });
  await h.disconnect();
  const seen = [];
  const h2 = await sbx.commands.connect(h.pid, { onStdout: (s) => seen.push(s) });
  assert.equal(h2.pid, h.pid);
  await sbx.commands.sendStdin(h.pid, "it\n");
  const r = await h2.wait();
  assert.equal(r.exitCode, 0);
  assert.equal(seen.join(""), "got it\nbye\n");
  await assert.rejects(sbx.commands.connect(999999), (e) => e instanceof NotFoundError || /not found/.test(e.message));
});

test("timeoutMs kills the command and raises TimeoutError", async () => {
  const t0 = Date.now();
  await assert.rejects(sbx.commands.run("sleep 20", { timeoutMs: 700 }), (e) => {
    assert.ok(e instanceof TimeoutError, String(e));
    return true;
  });
  assert.ok(Date.now() - t0 < 10000);
});

test("larger output arrives whole", async () => {
  const r = await sbx.commands.run("head -c 300000 /dev/zero | tr '\\0' x");
  assert.equal(r.stdout.length, 300000);
});
