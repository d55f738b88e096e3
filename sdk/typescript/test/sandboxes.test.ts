/** Client construction, sandboxes and their lifecycle, `await using`, typed errors. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  ConflictError,
  ConnectionError,
  InvalidArgumentError,
  NotFoundError,
  NotRunningError,
  Sandbox,
  SandboxClient,
  SandboxError,
} from "@sbx/sdk";
import { Daemon, freePort } from "./helpers.js";

let d: Daemon;
let client: SandboxClient;

before(async () => {
  d = await new Daemon().start();
  client = new SandboxClient({ url: d.url });
});

after(async () => {
  assert.equal(await d.stop(), 0, "sbxd exits 0 on SIGTERM");
});

describe("SandboxClient", () => {
  test("url and key default to SBX_URL and SBX_API_KEY", async () => {
    const old = { u: process.env.SBX_URL, k: process.env.SBX_API_KEY };
    process.env.SBX_URL = d.url + "/";
    delete process.env.SBX_API_KEY;
    try {
      const c = new SandboxClient();
      assert.equal(c.url, d.url);
      assert.equal((await c.health()).status, "ok");
    } finally {
      if (old.u === undefined) delete process.env.SBX_URL;
      else process.env.SBX_URL = old.u;
      if (old.k !== undefined) process.env.SBX_API_KEY = old.k;
    }
  });

  test("health", async () => {
    const h = await client.health();
    assert.equal(h.status, "ok");
    assert.match(h.version, /^\d+\.\d+/);
  });

  test("an unreachable daemon is a ConnectionError after reconnectTimeout", async () => {
    const port = await freePort();
    const c = new SandboxClient({ url: `http://127.0.0.1:${port}`, reconnectTimeout: 200 });
    const t0 = Date.now();
    await assert.rejects(c.listSandboxes(), ConnectionError);
    assert.ok(Date.now() - t0 < 5000);
  });
});

describe("sandboxes", () => {
  test("createSandbox with every option, getSandbox by id and name", async () => {
    const sb = await client.createSandbox({
      name: "ts-full",
      snapshot: "host",
      env: { GREETING: "hi" },
      metadata: { suite: "ts", kind: "full" },
      resources: { cpus: 0.5, memoryMb: 256, pids: 128, diskMb: 128 },
      idleTtlSeconds: 120,
      deleteAfterStopSeconds: 3600,
      timeoutSeconds: 600,
    });
    try {
      assert.ok(sb instanceof Sandbox);
      assert.match(sb.id, /^sbx_/);
      assert.equal(sb.name, "ts-full");
      assert.equal(sb.state, "running");
      assert.deepEqual(sb.info.resources, { cpus: 0.5, memoryMb: 256, pids: 128, diskMb: 128 });
      assert.equal(sb.info.idleTtlSeconds, 120);
      assert.equal(sb.info.deleteAfterStopSeconds, 3600);
      assert.equal(sb.info.timeoutSeconds, 600);
      assert.ok(sb.info.expiresAt);
      assert.deepEqual(sb.info.env, { GREETING: "hi" });
      const r = await sb.run("echo $GREETING");
      assert.equal(r.stdout, "hi\n");
      const byId = await client.getSandbox(sb.id);
      assert.equal(byId.id, sb.id);
      assert.deepEqual(byId.info.metadata, { suite: "ts", kind: "full" });
      const byName = await client.getSandbox("ts-full");
      assert.equal(byName.id, sb.id);
      await assert.rejects(client.createSandbox({ name: "ts-full" }), ConflictError);
      assert.deepEqual(JSON.parse(JSON.stringify(sb)).id, sb.id);
    } finally {
      await sb.delete();
    }
    assert.equal(sb.state, "deleted");
    const tomb = await client.getSandbox(sb.id);
    assert.equal(tomb.state, "deleted");
    assert.ok(tomb.info.deletedAt);
    assert.equal(tomb.info.stateReason !== null, true);
  });

  test("listSandboxes filters by state and metadata", async () => {
    const a = await client.createSandbox({ metadata: { suite: "list", role: "a" } });
    const b = await client.createSandbox({ metadata: { suite: "list", role: "b" } });
    try {
      await b.stop();
      const all = await client.listSandboxes({ metadata: { suite: "list" } });
      assert.deepEqual(all.map((s) => s.id), [a.id, b.id]);
      const onlyA = await client.listSandboxes({ metadata: { suite: "list", role: "a" } });
      assert.deepEqual(onlyA.map((s) => s.id), [a.id]);
      const stopped = await client.listSandboxes({ state: "stopped", metadata: { suite: "list" } });
      assert.deepEqual(stopped.map((s) => s.id), [b.id]);
      const everything = await client.listSandboxes();
      assert.ok(everything.some((s) => s.id === a.id));
      await assert.rejects(client.listSandboxes({ state: "bogus" as never }), InvalidArgumentError);
    } finally {
      await a.delete();
      await client.deleteSandbox(b.id);
    }
    const deleted = await client.listSandboxes({ state: "deleted", metadata: { suite: "list" } });
    assert.deepEqual(deleted.map((s) => s.id).sort(), [a.id, b.id].sort());
  });

  test("updateSandbox and sb.update", async () => {
    const sb = await client.createSandbox({ metadata: { v: "1" } });
    try {
      const i = await client.updateSandbox(sb.id, { idleTtlSeconds: 300, metadata: { v: "2" } });
      assert.equal(i.idleTtlSeconds, 300);
      assert.deepEqual(i.metadata, { v: "2" });
      const j = await sb.update({ timeoutSeconds: 900, deleteAfterStopSeconds: 60 });
      assert.equal(j.timeoutSeconds, 900);
      assert.equal(j.deleteAfterStopSeconds, 60);
      assert.ok(j.expiresAt);
      assert.equal(sb.info.timeoutSeconds, 900);
      await assert.rejects(sb.update({ idleTtlSeconds: -5 }), InvalidArgumentError);
    } finally {
      await sb.delete();
    }
  });

  test("stop, start, pause, resume, renew, metrics, refresh", async () => {
    const sb = await client.createSandbox();
    try {
      await sb.write("/root/keep.txt", "kept");
      const bg = await sb.run("sleep 60", { wait: false });
      bg.close();
      assert.equal((await sb.pause()).state, "paused");
      assert.equal((await sb.pause()).state, "paused", "idempotent");
      assert.equal((await sb.metrics()).state, "paused");
      assert.equal((await sb.resume()).state, "running");
      const m = await sb.metrics();
      assert.equal(m.state, "running");
      assert.ok(m.pids >= 1);
      assert.ok(m.memoryBytes > 0);
      assert.ok(m.limits.memoryBytes > 0);
      assert.equal(typeof m.cpuUsageSeconds, "number");

      const stopped = await sb.stop();
      assert.equal(stopped.state, "stopped");
      assert.equal(stopped.stateReason, "stopped by request");
      assert.ok(stopped.stoppedAt);
      await assert.rejects(sb.run("true"), NotRunningError);
      await assert.rejects(sb.metrics(), (e: unknown) => e instanceof NotRunningError && e.code === "not_running" && e.status === 409);
      await assert.rejects(sb.read("/root/keep.txt"), NotRunningError);
      assert.equal((await sb.start()).state, "running");
      assert.equal(await sb.readText("/root/keep.txt"), "kept");
      assert.equal(sb.state, "running");

      await assert.rejects(sb.renew(), InvalidArgumentError, "no timeout to renew");
      const r = await sb.renew({ timeoutSeconds: 3600 });
      assert.equal(r.timeoutSeconds, 3600);
      const exp = Date.parse(r.expiresAt!);
      assert.ok(exp > Date.now() + 3500_000 && exp < Date.now() + 3700_000);
      const r2 = await sb.renew();
      assert.ok(Date.parse(r2.expiresAt!) >= exp);
      assert.equal((await sb.refresh()).id, sb.id);
    } finally {
      await sb.delete();
    }
  });

  test("await using deletes the sandbox at scope end", async () => {
    let id: string;
    {
      await using sb = await client.createSandbox();
      id = sb.id;
      assert.equal((await sb.run("echo in-scope")).stdout, "in-scope\n");
    }
    assert.equal((await client.getSandbox(id)).state, "deleted");
    {
      await using sb2 = await client.createSandbox();
      await sb2.delete(); // disposing an already deleted sandbox is fine
    }
  });

  test("typed errors carry code, status and message", async () => {
    const err = await client.getSandbox("sbx_doesnotexist").catch((e) => e);
    assert.ok(err instanceof NotFoundError);
    assert.ok(err instanceof SandboxError);
    assert.ok(err instanceof Error);
    assert.equal(err.code, "not_found");
    assert.equal(err.status, 404);
    assert.equal(err.name, "NotFoundError");
    assert.match(err.message, /sbx_doesnotexist/);
    await assert.rejects(client.deleteSandbox("sbx_doesnotexist"), NotFoundError);
    await assert.rejects(client.updateSandbox("sbx_doesnotexist", { idleTtlSeconds: 1 }), NotFoundError);
    await assert.rejects(client.createSandbox({ name: "bad name!" }), (e: unknown) => e instanceof InvalidArgumentError && e.code === "invalid_argument");
    await assert.rejects(client.createSandbox({ resources: { memoryMb: 1 } }), InvalidArgumentError);
  });
});
