// Lifecycle through the unmodified OpenSandbox SDK: create (image, env, metadata, resources, timeout),
// getInfo, list with filters and paging, endpoints, pause/resume, renew, patch metadata, kill, errors.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Sandbox, SandboxManager, ConnectionConfig } from "@alibaba-group/opensandbox";
import { startSbxd, API_KEY } from "./helpers.mjs";

let sbxd;
before(async () => {
  sbxd = await startSbxd();
});
after(async () => {
  await sbxd.stop();
});

test("create, getInfo, endpoints, renew, pause/resume, kill", async () => {
  const sbx = await Sandbox.create({
    image: "host",
    env: { GREETING: "hello" },
    metadata: { team: "a", purpose: "test" },
    resource: { cpu: "500m", memory: "512Mi" },
    timeoutSeconds: 300,
  });
  try {
    const info = await sbx.getInfo();
    assert.equal(info.id, sbx.id);
    assert.equal(info.status.state, "Running");
    assert.deepEqual(info.metadata, { team: "a", purpose: "test" });
    assert.ok(info.createdAt instanceof Date);
    assert.ok(info.expiresAt instanceof Date);
    const left = info.expiresAt.getTime() - Date.now();
    assert.ok(left > 250_000 && left <= 300_000, `expires in ${left} ms`);

    const r = await sbx.commands.run("echo $GREETING");
    assert.deepEqual(r.logs.stdout.map((m) => m.text), ["hello"]);

    // Endpoints: scheme-less, ending in /{port}; execd's is served by sbxd itself.
    const ep = await sbx.getEndpoint(44772);
    assert.match(ep.endpoint, new RegExp(`^127\\.0\\.0\\.1:${sbxd.port}/opensandbox/sandboxes/${sbx.id}/proxy/44772$`));
    const other = await sbx.getEndpoint(8080);
    assert.ok(other.endpoint.endsWith("/8080"), other.endpoint);
    assert.ok(!other.endpoint.includes("://"));
    assert.ok(other.headers["X-Sbx-Service-Token"]);
    // A service in the sandbox, reached through the endpoint with its headers.
    await sbx.commands.run("cd /tmp && echo served > index.html && python3 -m http.server 8080 >/dev/null 2>&1", { background: true });
    let body = "";
    for (let i = 0; i < 100 && body !== "served\n"; i++) {
      try {
        const res = await fetch(`http://${other.endpoint}/index.html`, { headers: other.headers });
        body = await res.text();
      } catch {}
      if (body !== "served\n") await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(body, "served\n");

    const renewed = await sbx.renew(3600);
    assert.ok(renewed.expiresAt.getTime() - Date.now() > 3500_000);
    assert.ok((await sbx.getInfo()).expiresAt.getTime() - Date.now() > 3500_000);

    await sbx.pause();
    assert.equal((await sbx.getInfo()).status.state, "Paused");
    await assert.rejects(sbx.pause(), (e) => e.statusCode === 409);
    const resumed = await sbx.resume();
    assert.equal((await resumed.getInfo()).status.state, "Running");
    const again = await resumed.commands.run("echo back");
    assert.deepEqual(again.logs.stdout.map((m) => m.text), ["back"]);

    const patched = await sbx.patchMetadata({ purpose: null, stage: "two" });
    assert.deepEqual(patched.metadata, { team: "a", stage: "two" });
  } finally {
    await sbx.kill();
    await sbx.close();
  }
  await assert.rejects(Sandbox.connect({ sandboxId: sbx.id }), (e) => e.statusCode === 404);
});

test("manual cleanup: no expiresAt, renew refused", async () => {
  const sbx = await Sandbox.create({ image: "host", timeoutSeconds: null });
  try {
    const info = await sbx.getInfo();
    assert.equal(info.expiresAt, null);
    await assert.rejects(sbx.renew(600), (e) => e.statusCode === 409);
  } finally {
    await sbx.kill();
    await sbx.close();
  }
});

test("list with state and metadata filters and paging", async () => {
  const a = await Sandbox.create({ image: "host", metadata: { group: "g1", n: "1" } });
  const b = await Sandbox.create({ image: "host", metadata: { group: "g1", n: "2" } });
  const c = await Sandbox.create({ image: "host", metadata: { group: "g2" } });
  const m = SandboxManager.create();
  try {
    await b.pause();
    let res = await m.listSandboxInfos({ metadata: { group: "g1" } });
    assert.deepEqual(res.items.map((x) => x.id).sort(), [a.id, b.id].sort());
    res = await m.listSandboxInfos({ metadata: { group: "g1", n: "2" } });
    assert.deepEqual(res.items.map((x) => x.id), [b.id]);
    res = await m.listSandboxInfos({ states: ["Paused"] });
    assert.deepEqual(res.items.map((x) => x.id), [b.id]);
    res = await m.listSandboxInfos({ states: ["Running", "Paused"], metadata: { group: "g1" } });
    assert.equal(res.items.length, 2);
    res = await m.listSandboxInfos({ page: 1, pageSize: 2 });
    assert.equal(res.items.length, 2);
    assert.equal(res.pagination.totalItems, 3);
    assert.equal(res.pagination.totalPages, 2);
    assert.equal(res.pagination.hasNextPage, true);
    res = await m.listSandboxInfos({ page: 2, pageSize: 2 });
    assert.equal(res.items.length, 1);
    assert.equal(res.pagination.hasNextPage, false);
  } finally {
    for (const s of [a, b, c]) {
      await s.kill();
      await s.close();
    }
    await m.close();
  }
});

test("errors: typed {code, message}, X-Request-ID echoed, bad input refused", async () => {
  const base = `${sbxd.url}/opensandbox/v1`;
  const h = { "OPEN-SANDBOX-API-KEY": API_KEY, "content-type": "application/json" };
  let res = await fetch(`${base}/sandboxes/nope`, { headers: { ...h, "X-Request-ID": "req-123" } });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get("x-request-id"), "req-123");
  assert.equal((await res.json()).code, "SANDBOX::NOT_FOUND");
  res = await fetch(`${base}/sandboxes`, { headers: { "OPEN-SANDBOX-API-KEY": "wrong" } });
  assert.equal(res.status, 401);
  assert.equal((await res.json()).code, "INVALID_API_KEY");
  res = await fetch(`${base}/sandboxes`);
  assert.equal(res.status, 401);
  assert.equal((await res.json()).code, "MISSING_API_KEY");
  for (const [body, field] of [
    [{ image: { uri: "host" }, timeout: 10 }, "timeout"],
    [{ image: { uri: "host" }, resourceLimits: { memory: "lots" } }, "memory"],
    [{ image: { uri: "host" }, resourceLimits: { cpu: "-1" } }, "cpu"],
    [{ image: { uri: "no-such-image:1" } }, "no-such-image"],
    [{}, "exactly one"],
    [{ image: { uri: "host" }, volumes: [{ name: "v", host: { path: "/" }, mountPath: "/m" }] }, "volumes"],
    [{ image: { uri: "host" }, metadata: { "opensandbox.io/x": "y" } }, "reserved"],
  ]) {
    res = await fetch(`${base}/sandboxes`, { method: "POST", headers: h, body: JSON.stringify(body) });
    assert.equal(res.status, 400, JSON.stringify(body));
    const j = await res.json();
    assert.ok(j.code && j.message.includes(field), JSON.stringify(j));
  }
  // The SDK surfaces the same errors.
  await assert.rejects(Sandbox.create({ image: "host", resource: { memory: "x" } }), (e) => e.statusCode === 400);
  const m = SandboxManager.create();
  await assert.rejects(m.getSandboxInfo("missing"), (e) => e.statusCode === 404 && e.error.code === "SANDBOX::NOT_FOUND");
  await assert.rejects(m.pauseSandbox("missing"), (e) => e.statusCode === 404);
  await assert.rejects(m.killSandbox("missing"), (e) => e.statusCode === 404);
  await m.close();
});
