// Control plane through the unmodified SDK: create/get/list/update/status/stop/start/delete, and the
// typed errors the SDK raises from sbxd's error envelopes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  SandboxClient,
  LangSmithResourceNotFoundError,
  LangSmithQuotaExceededError,
  LangSmithValidationError,
  LangSmithSandboxAuthenticationError,
  LangSmithSandboxError,
  LangSmithResourceTimeoutError,
} from "langsmith/sandbox";
import { startSbxd } from "./helpers.mjs";

let sbxd, client;
before(async () => {
  sbxd = await startSbxd();
  client = new SandboxClient();
});
after(async () => {
  await sbxd?.stop();
});

test("create with options, get, list, status, update, delete", async () => {
  const sb = await client.createSandbox({
    name: "my-box",
    idleTtlSeconds: 600,
    deleteAfterStopSeconds: 120,
    vCpus: 2,
    memBytes: 256 * 1024 * 1024,
    fsCapacityBytes: 1024 * 1024 * 1024,
    labels: { team: "agents" },
  });
  assert.equal(sb.name, "my-box");
  assert.equal(sb.status, "ready");
  assert.match(sb.dataplane_url, /\/langsmith\/dp\/[^/]+$/);
  assert.equal(sb.vCpus, 2);
  assert.deepEqual(sb.labels, { team: "agents" });
  assert.equal(sb.mem_bytes, 256 * 1024 * 1024);
  assert.equal(sb.fs_capacity_bytes, 1024 * 1024 * 1024);
  assert.equal(sb.idle_ttl_seconds, 600);
  assert.equal(sb.delete_after_stop_seconds, 120);

  const got = await client.getSandbox("my-box");
  assert.equal(got.id, sb.id);
  const byId = await client.getSandbox(sb.id);
  assert.equal(byId.name, "my-box");
  const list = await client.listSandboxes();
  assert.ok(list.some((s) => s.id === sb.id));
  const st = await client.getSandboxStatus("my-box");
  assert.equal(st.status, "ready");

  const upd = await client.updateSandbox("my-box", { idleTtlSeconds: 1200, deleteAfterStopSeconds: 0 });
  assert.equal(upd.idle_ttl_seconds, 1200);
  assert.equal(upd.delete_after_stop_seconds, 0);

  const r = await sb.run("echo hi");
  assert.equal(r.stdout, "hi\n");
  await sb.delete();
  await assert.rejects(client.getSandbox("my-box"), LangSmithResourceNotFoundError);
});

test("stop keeps files; start brings the box back; the data plane wakes a stopped box", async () => {
  const sb = await client.createSandbox();
  await sb.write("/root/keep.txt", "kept");
  await sb.stop();
  assert.equal((await client.getSandboxStatus(sb.name)).status, "stopped");
  await sb.start();
  assert.equal(sb.status, "ready");
  assert.equal(new TextDecoder().decode(await sb.read("/root/keep.txt")), "kept");
  await client.stopSandbox(sb.name);
  // The SDK keeps the dataplane_url after stop; using it starts the box again.
  const r = await sb.run("cat /root/keep.txt");
  assert.equal(r.stdout, "kept");
  assert.equal((await client.getSandboxStatus(sb.name)).status, "ready");
  await sb.delete();
});

test("missing boxes raise ResourceNotFound for every operation", async () => {
  for (const op of [
    () => client.getSandbox("nope"),
    () => client.getSandboxStatus("nope"),
    () => client.deleteSandbox("nope"),
    () => client.stopSandbox("nope"),
    () => client.startSandbox("nope"),
    () => client.updateSandbox("nope", { idleTtlSeconds: 60 }),
  ]) {
    await assert.rejects(op(), LangSmithResourceNotFoundError);
  }
  await assert.rejects(client.createSandbox("no-such-snapshot"), LangSmithResourceNotFoundError);
});

test("bad input raises ValidationError; name conflicts and unsupported options are typed", async () => {
  await assert.rejects(client.createSandbox({ vCpus: 1000 }), (e) => {
    assert.ok(e instanceof LangSmithValidationError, e.constructor.name);
    assert.equal(e.field, "vcpus");
    return true;
  });
  await assert.rejects(client.createSandbox({ preserveMemoryOnStop: true }), LangSmithValidationError);
  const a = await client.createSandbox({ name: "taken" });
  await assert.rejects(client.createSandbox({ name: "taken" }), LangSmithSandboxError);
  await a.delete();
});

test("quota: a tenant key over its sandbox count gets QuotaExceeded(sandbox_count)", async () => {
  const key = await sbxd.native("POST", "/v1/keys", { name: "t1", quotas: { max_sandboxes: 1 } });
  const tenant = new SandboxClient({ apiKey: key.key });
  const one = await tenant.createSandbox();
  await assert.rejects(tenant.createSandbox(), (e) => {
    assert.ok(e instanceof LangSmithQuotaExceededError, e.constructor.name);
    assert.equal(e.quotaType, "sandbox_count");
    return true;
  });
  // Tenants see only their own boxes.
  const admins = await client.createSandbox();
  await assert.rejects(tenant.getSandbox(admins.name), LangSmithResourceNotFoundError);
  await one.delete();
  await admins.delete();
});

test("a wrong key raises the authentication error", async () => {
  const bad = new SandboxClient({ apiKey: "wrong" });
  await assert.rejects(bad.listSandboxes(), LangSmithSandboxAuthenticationError);
});

test("both API bases work (JS /api/v2/sandboxes and Python's /v2/sandboxes)", async () => {
  const py = new SandboxClient({ apiEndpoint: `${sbxd.url}/langsmith/v2/sandboxes` });
  const sb = await py.createSandbox();
  const r = await sb.run("echo py");
  assert.equal(r.stdout, "py\n");
  await py.deleteSandbox(sb.name);
});

test("wait_for_ready's timeout: a box not ready in time raises ResourceTimeoutError", async () => {
  // A named box is never handed out from the warm pool, so it is built cold: not ready within 0 s.
  await assert.rejects(client.createSandbox({ name: "too-slow", timeout: 0 }), (e) => {
    assert.ok(e instanceof LangSmithResourceTimeoutError, String(e));
    assert.equal(e.resourceType, "sandbox");
    return true;
  });
  // The create failed for the client, so sbx does not keep the box: the name comes free again.
  const deadline = Date.now() + 15000;
  for (;;) {
    try {
      await client.getSandbox("too-slow");
    } catch (e) {
      if (e instanceof LangSmithResourceNotFoundError) break;
      throw e;
    }
    assert.ok(Date.now() < deadline, "the timed-out box was not discarded");
    await new Promise((r) => setTimeout(r, 100));
  }
  const sb = await client.createSandbox({ name: "too-slow", timeout: 30 });
  assert.equal(sb.status, "ready");
  await sb.delete();
});
