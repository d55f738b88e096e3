// execd commands through the unmodified OpenSandbox SDK: foreground streaming (line-split events, init,
// execution_complete / error with the exit code), background commands with status and logs by byte
// cursor, interrupt, bash sessions, metrics, ping.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Sandbox } from "@alibaba-group/opensandbox";
import { startSbxd, API_KEY } from "./helpers.mjs";

let sbxd, sbx;
before(async () => {
  sbxd = await startSbxd();
  sbx = await Sandbox.create({ image: "host" });
});
after(async () => {
  await sbx.kill();
  await sbx.close();
  await sbxd.stop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("foreground: events, lines, exit codes, cwd, envs", async () => {
  const events = [];
  const r = await sbx.commands.run(
    "echo one; printf 'two\\r\\nthree\\rfour\\n\\nlast'; echo oops >&2",
    { workingDirectory: "/tmp", envs: { X: "y" } },
    { onEvent: (e) => events.push(e.type) }
  );
  assert.deepEqual(r.logs.stdout.map((m) => m.text), ["one", "two", "three", "four", "\n", "last"]);
  assert.deepEqual(r.logs.stderr.map((m) => m.text), ["oops"]);
  assert.equal(r.exitCode, 0);
  assert.ok(r.complete);
  assert.ok(r.id);
  assert.equal(events.filter((t) => t === "init").length, 1);
  assert.equal(events.filter((t) => t === "execution_complete").length, 1);

  const cwd = await sbx.commands.run("pwd; echo $X", { workingDirectory: "/tmp", envs: { X: "y" } });
  assert.deepEqual(cwd.logs.stdout.map((m) => m.text), ["/tmp", "y"]);

  const fail = await sbx.commands.run("echo bad >&2; exit 7");
  assert.equal(fail.exitCode, 7);
  assert.equal(fail.error.name, "CommandExecError");
  assert.equal(fail.error.value, "7");
  assert.equal(fail.complete, undefined);
  assert.deepEqual(fail.logs.stderr.map((m) => m.text), ["bad"]);

  const timedOut = await sbx.commands.run("sleep 10", { timeoutSeconds: 0.5 });
  assert.equal(timedOut.exitCode, -1);

  await assert.rejects(sbx.commands.run("true", { workingDirectory: "/no/such/dir" }), (e) => e.statusCode === 400);
  const big = await sbx.commands.run("head -c 300000 /dev/zero | tr '\\0' a; echo");
  assert.equal(big.logs.stdout.map((m) => m.text).join(""), "a".repeat(300000));
});

test("background: status, logs by cursor, interrupt", async () => {
  const t0 = Date.now();
  const bg = await sbx.commands.run("for i in 1 2 3; do echo line$i; sleep 0.2; done; echo done", { background: true });
  assert.ok(Date.now() - t0 < 5000);
  assert.ok(bg.exitCode == null);
  assert.ok(bg.id);
  let st = await sbx.commands.getCommandStatus(bg.id);
  assert.equal(st.id, bg.id);
  assert.match(st.content, /for i in/);
  for (let i = 0; i < 100 && st.running; i++) {
    await sleep(100);
    st = await sbx.commands.getCommandStatus(bg.id);
  }
  assert.equal(st.running, false);
  assert.equal(st.exitCode, 0);
  assert.ok(st.finishedAt instanceof Date);
  const all = await sbx.commands.getBackgroundCommandLogs(bg.id);
  assert.equal(all.content, "line1\nline2\nline3\ndone\n");
  assert.equal(all.cursor, all.content.length);
  const tail = await sbx.commands.getBackgroundCommandLogs(bg.id, 6);
  assert.equal(tail.content, "line2\nline3\ndone\n");
  const none = await sbx.commands.getBackgroundCommandLogs(bg.id, all.cursor);
  assert.equal(none.content, "");
  assert.equal(none.cursor, all.cursor);

  const long = await sbx.commands.run("trap 'echo got-term; exit 143' TERM; echo started; while :; do sleep 0.1; done", { background: true });
  await sleep(300);
  await sbx.commands.interrupt(long.id);
  st = await sbx.commands.getCommandStatus(long.id);
  assert.equal(st.running, false);
  assert.equal(st.exitCode, 143);
  await assert.rejects(sbx.commands.interrupt(long.id), (e) => e.statusCode === 409);
  await assert.rejects(sbx.commands.getCommandStatus("cmd_missing"), (e) => e.statusCode === 404);
  await assert.rejects(sbx.commands.getBackgroundCommandLogs("cmd_missing"), (e) => e.statusCode === 404);
});

test("bash sessions keep env and cwd", async () => {
  const sid = await sbx.commands.createSession({ workingDirectory: "/tmp" });
  let r = await sbx.commands.runInSession(sid, "pwd; export A=1; B=2; mkdir -p sub; cd sub");
  assert.deepEqual(r.logs.stdout.map((m) => m.text), ["/tmp"]);
  assert.equal(r.exitCode, 0);
  r = await sbx.commands.runInSession(sid, "pwd; echo A=$A");
  assert.deepEqual(r.logs.stdout.map((m) => m.text), ["/tmp/sub", "A=1"]);
  r = await sbx.commands.runInSession(sid, "pwd", { workingDirectory: "/" });
  assert.deepEqual(r.logs.stdout.map((m) => m.text), ["/"]);
  r = await sbx.commands.runInSession(sid, "false");
  assert.equal(r.exitCode, 1);
  r = await sbx.commands.runInSession(sid, "pwd; echo $A; exit 4");
  assert.deepEqual(r.logs.stdout.map((m) => m.text), ["/", "1"]);
  assert.equal(r.exitCode, 4);
  await sbx.commands.deleteSession(sid);
  await assert.rejects(sbx.commands.runInSession(sid, "true"), (e) => e.statusCode === 404);
  await assert.rejects(sbx.commands.deleteSession(sid), (e) => e.statusCode === 404);
});

test("metrics, ping, unsupported execd routes", async () => {
  const m = await sbx.getMetrics();
  assert.ok(m.cpuCount >= 1);
  assert.ok(m.memoryTotalMiB > 0);
  assert.ok(m.memoryUsedMiB >= 0);
  assert.ok(m.cpuUsedPercentage >= 0 && m.cpuUsedPercentage <= 100);
  assert.ok(Math.abs(m.timestamp - Date.now()) < 60000);
  assert.equal(await sbx.isHealthy(), true);
  const ep = await sbx.getEndpoint(44772);
  const res = await fetch(`http://${ep.endpoint}/code/context`, {
    method: "POST",
    headers: { "OPEN-SANDBOX-API-KEY": API_KEY, "content-type": "application/json" },
    body: JSON.stringify({ language: "java" }),
  });
  assert.equal(res.status, 501);
  assert.equal((await res.json()).code, "NOT_SUPPORTED");
  const pol = await sbx.getEgressPolicy();
  assert.equal(pol.defaultAction, "deny");
});
