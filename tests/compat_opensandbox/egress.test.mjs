// The egress policy through the unmodified OpenSandbox SDK: networkPolicy on create, then
// getEgressPolicy / patchEgressRules / deleteEgressRules on the egress endpoint (18080), which change
// the sandbox's sbx egress policy (the same change as PATCHing its network with the native API).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Sandbox } from "@alibaba-group/opensandbox";
import { startSbxd, API_KEY } from "./helpers.mjs";

let sbxd;
before(async () => {
  sbxd = await startSbxd();
});
after(async () => {
  await sbxd.stop();
});

const rules = (p) => p.egress.map((r) => `${r.action}:${r.target}`).sort();

test("egress policy: get, patch (merge), delete, native view", async () => {
  const sbx = await Sandbox.create({
    image: "host",
    networkPolicy: { defaultAction: "deny", egress: [{ action: "allow", target: "example.com" }] },
  });
  try {
    let p = await sbx.getEgressPolicy();
    assert.equal(p.defaultAction, "deny");
    assert.deepEqual(rules(p), ["allow:example.com"]);

    await sbx.patchEgressRules([
      { action: "deny", target: "example.com" },
      { action: "allow", target: "*.pypi.org" },
    ]);
    p = await sbx.getEgressPolicy();
    assert.deepEqual(rules(p), ["allow:*.pypi.org", "deny:example.com"]);

    await sbx.deleteEgressRules(["example.com", "not-there.example"]);
    p = await sbx.getEgressPolicy();
    assert.deepEqual(rules(p), ["allow:*.pypi.org"]);

    // sbx's own view of the same sandbox changed too.
    const native = await fetch(`${sbxd.url}/v1/sandboxes/${sbx.id}`, { headers: { authorization: `Bearer ${API_KEY}` } });
    const nj = await native.json();
    assert.deepEqual(nj.network.egress.allow, ["*.pypi.org"]);
    assert.equal(nj.network.egress.default, "deny");

    await assert.rejects(sbx.patchEgressRules([{ action: "maybe", target: "x.example" }]), (e) => e.statusCode === 400);
    await assert.rejects(sbx.patchEgressRules([{ action: "allow", target: "bad name!" }]), (e) => e.statusCode === 400);
  } finally {
    await sbx.kill();
    await sbx.close();
  }
});

test("egress policy: a loopback-only sandbox cannot be changed", async () => {
  const sbx = await Sandbox.create({ image: "host" });
  try {
    assert.equal((await sbx.getEgressPolicy()).defaultAction, "deny");
    await assert.rejects(sbx.patchEgressRules([{ action: "allow", target: "example.com" }]), (e) => e.statusCode === 409);
  } finally {
    await sbx.kill();
    await sbx.close();
  }
});
