/** Agent sessions (sb.agent, attachAgent) against a real sbxd, with tests/helpers/fake_agent.py standing in
 * for the Claude Code CLI: events, follow-ups, interrupt, live configuration, replay from an offset, kill,
 * typed errors. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { CommandNotFoundError, ConflictError, NotFoundError, SandboxClient } from "@sbx/sdk";
import type { AgentEvent, Sandbox } from "@sbx/sdk";
import { Daemon, SOURCE_DIR, waitFor } from "./helpers.js";

const COMMAND = ["python3", "/root/fake_agent.py"];
let d: Daemon;
let sb: Sandbox;

before(async () => {
  d = await new Daemon(undefined, ["--warm", "1"]).start();
  sb = await new SandboxClient({ url: d.url }).createSandbox();
  await sb.write("/root/fake_agent.py", readFileSync(join(SOURCE_DIR, "tests", "helpers", "fake_agent.py")));
});

after(async () => {
  await sb?.delete();
  assert.equal(await d.stop(), 0, "sbxd exits 0 on SIGTERM");
});

test("a session: events, follow-up, live update, interrupt, replay, kill", async () => {
  const s = await sb.agent("hello", { command: COMMAND, model: "m1", env: { ANTHROPIC_API_KEY: "sk-ts-secret" } });
  assert.match(s.id, /^agt_/);
  const evs: AgentEvent[] = [];
  for await (const ev of s) {
    evs.push(ev);
    if (ev.isResult) break;
  }
  assert.deepEqual(evs.map((e) => e.type), ["system", "assistant", "result"]);
  assert.equal(evs[0].data.model, "m1");
  assert.equal(evs[1].assistantText, "echo: hello");
  assert.equal(s.offset, evs[2].nextOffset);

  await s.send("again");
  assert.equal((await s.result()).data.result, "echo: again");

  const info = await s.update({ model: "m2", permissionMode: "plan" });
  assert.equal(info.model, "m2");
  assert.equal(info.permissionMode, "plan");
  await s.send("config");
  assert.match((await s.result()).data.result, /"model": "m2"/);

  await s.send("slow");
  for await (const ev of s) if (ev.type === "assistant") break;
  await s.interrupt();
  assert.equal((await s.result()).subtype, "interrupted");

  const other = await sb.attachAgent(s.id, { fromOffset: evs[1].offset });
  for await (const ev of other) {
    assert.equal(ev.offset, evs[1].offset);
    assert.equal(ev.assistantText, "echo: hello");
    break;
  }

  const listed = await sb.agents();
  assert.deepEqual(listed.map((a) => a.id), [s.id]);
  assert.deepEqual(listed[0].envKeys, ["ANTHROPIC_API_KEY"]);
  assert.ok(!JSON.stringify(listed[0].raw).includes("sk-ts-secret"));
  await waitFor(async () => (await s.refresh()).turns === 4, 10_000, "four turns");

  await s.kill();
  const final = await s.wait();
  assert.equal(final.state, "exited");
  assert.equal(final.exitCode, 137);
  await assert.rejects(s.send("late"), ConflictError);
});

test("typed errors", async () => {
  await assert.rejects(sb.agent("x", { command: ["/nonexistent/agent"] }), CommandNotFoundError);
  await assert.rejects(sb.attachAgent("agt_missing"), NotFoundError);
});
