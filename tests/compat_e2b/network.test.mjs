// Network options through the unmodified E2B SDK, checked by real reachability: Sandbox.create with
// allowInternetAccess and network {allowOut, denyOut}, updateNetwork, getInfo's network, mapped onto sbx's
// egress policy. Targets are tests/nettarget.py's (a network namespace with TCP servers, a fake resolver).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Sandbox, SandboxError, SandboxNotFoundError, ALL_TRAFFIC } from "e2b";
import { startSbxd, startNetTarget } from "./helpers.mjs";

let d, t, A, B, hostA, hostB;
before(async () => {
  t = await startNetTarget({ "allowed.test": 0, "other.test": 1 });
  d = await startSbxd(t.sbxdArgs);
  A = `${t.addrs[0]}:${t.port}`;
  B = `${t.addrs[1]}:${t.port}`;
  hostA = `allowed.test:${t.port}`;
  hostB = `other.test:${t.port}`;
});
after(async () => {
  await d?.stop();
  await t?.close();
});

async function probe(sbx, ...targets) {
  await sbx.files.write("/tmp/probe.py", t.probe);
  const r = await sbx.commands.run(`/usr/bin/python3 /tmp/probe.py ${targets.join(" ")}`, { timeoutMs: 60_000 });
  return JSON.parse(r.stdout);
}

const ok = (res, target) => assert.equal(res[target], `hello from ${target.split(":")[0]}`, JSON.stringify(res));
const refused = (res, target) => assert.match(res[target], /^(connect|resolve): /, JSON.stringify(res));

test("no network options: sbx's default, no network at all", async () => {
  const s = await Sandbox.create();
  try {
    const r = await probe(s, A, B);
    refused(r, A);
    refused(r, B);
    const info = await s.getInfo();
    assert.equal(info.allowInternetAccess, false);
    // Denying everything on a sandbox without network is a no-op; opening it is refused.
    await s.updateNetwork({ allowInternetAccess: false });
    await assert.rejects(s.updateNetwork({ allowOut: [t.addrs[0]] }), (e) => e instanceof SandboxError && /409/.test(e.message));
  } finally {
    await s.kill();
  }
});

test("allowInternetAccess: true reaches everything public", async () => {
  const s = await Sandbox.create({ allowInternetAccess: true });
  try {
    const r = await probe(s, A, B, hostA);
    ok(r, A);
    ok(r, B);
    assert.equal(r[hostA], `hello from ${t.addrs[0]}`);
    const info = await s.getInfo();
    assert.equal(info.allowInternetAccess, true);
    assert.deepEqual(info.network.denyOut, []);
  } finally {
    await s.kill();
  }
});

test("denyOut alone: everything else stays allowed", async () => {
  const s = await Sandbox.create({ network: { denyOut: [t.addrs[1]] } });
  try {
    const r = await probe(s, A, B);
    ok(r, A);
    refused(r, B);
  } finally {
    await s.kill();
  }
});

test("allowOut with denyOut all traffic: an allow list; allowOut wins inside a denied range", async () => {
  const s = await Sandbox.create({ network: { allowOut: [t.addrs[0], "allowed.test"], denyOut: [ALL_TRAFFIC] } });
  try {
    const r = await probe(s, A, B, hostA, hostB);
    ok(r, A);
    refused(r, B);
    assert.equal(r[hostA], `hello from ${t.addrs[0]}`);
    refused(r, hostB);
    const info = await s.getInfo();
    assert.deepEqual(info.network.allowOut, [t.addrs[0], "allowed.test"]);
    assert.deepEqual(info.network.denyOut, [ALL_TRAFFIC]);
    assert.equal(info.allowInternetAccess, false);
  } finally {
    await s.kill();
  }
  const s2 = await Sandbox.create({ network: { allowOut: [t.addrs[0]], denyOut: [`${t.net}.0/24`] } });
  try {
    const r = await probe(s2, A, B);
    ok(r, A);
    refused(r, B);
  } finally {
    await s2.kill();
  }
});

test("updateNetwork replaces the policy; omitted fields are cleared", async () => {
  const s = await Sandbox.create({ allowInternetAccess: false });
  try {
    let r = await probe(s, A, B);
    refused(r, A);
    refused(r, B);
    await s.updateNetwork({ allowOut: ["allowed.test"], denyOut: [ALL_TRAFFIC] });
    r = await probe(s, hostA, hostB, B);
    assert.equal(r[hostA], `hello from ${t.addrs[0]}`);
    refused(r, hostB);
    refused(r, B);
    await s.updateNetwork({});
    r = await probe(s, A, B);
    ok(r, A);
    ok(r, B);
    await s.updateNetwork({ allowInternetAccess: false });
    r = await probe(s, A, B);
    refused(r, A);
    refused(r, B);
  } finally {
    await s.kill();
  }
  await assert.rejects(Sandbox.updateNetwork("sbx_missing", {}), (e) => e instanceof SandboxNotFoundError);
});

test("unsupported network options are refused", async () => {
  await assert.rejects(
    Sandbox.create({ network: { allowOut: ["api.example.com"], rules: { "api.example.com": [{ transform: { headers: { a: "b" } } }] } } }),
    (e) => e instanceof SandboxError && /400.*rules/.test(e.message),
  );
  await assert.rejects(
    Sandbox.create({ network: { denyOut: ["not-a-cidr/99"] } }),
    (e) => e instanceof SandboxError && /400/.test(e.message),
  );
});
