/** A daemon with an admin key: keys, tenants, AuthenticationError, PermissionDeniedError, QuotaExceededError. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  AuthenticationError,
  NotFoundError,
  PermissionDeniedError,
  QuotaExceededError,
  SandboxClient,
} from "@sbx/sdk";
import { Daemon } from "./helpers.js";

const ADMIN = "ts-admin-key-0123456789";
let d: Daemon;

before(async () => {
  d = await new Daemon(ADMIN).start();
});

after(async () => {
  assert.equal(await d.stop(), 0, "sbxd exits 0 on SIGTERM");
});

test("no key or a wrong key: AuthenticationError", async () => {
  const none = new SandboxClient({ url: d.url, apiKey: "" });
  const e = await none.listSandboxes().catch((x) => x);
  assert.ok(e instanceof AuthenticationError);
  assert.equal(e.code, "unauthenticated");
  assert.equal(e.status, 401);
  await assert.rejects(new SandboxClient({ url: d.url, apiKey: "wrong" }).createSandbox(), AuthenticationError);
  assert.equal((await none.health()).status, "ok", "healthz needs no key");
});

test("keys: create, list, tenant isolation, quotas, revoke", async () => {
  const admin = new SandboxClient({ url: d.url, apiKey: ADMIN });
  const k = await admin.createKey({ name: "ts-tenant", quotas: { maxSandboxes: 1, maxMemoryMb: 1024 } });
  assert.match(k.id, /^key_/);
  assert.equal(k.name, "ts-tenant");
  assert.deepEqual(k.quotas, { maxSandboxes: 1, maxMemoryMb: 1024 });
  assert.ok(k.key?.startsWith("sbxk_"));
  const listed = await admin.listKeys();
  const mine = listed.find((x) => x.id === k.id);
  assert.ok(mine);
  assert.equal(mine.key, undefined, "secrets are never listed");

  // SBX_API_KEY is the default key.
  process.env.SBX_API_KEY = k.key!;
  const tenant = new SandboxClient({ url: d.url });
  delete process.env.SBX_API_KEY;
  const adminBox = await admin.createSandbox();
  try {
    await assert.rejects(tenant.getSandbox(adminBox.id), NotFoundError, "another tenant's sandbox is not found");
    const tb = await tenant.createSandbox({ resources: { memoryMb: 256 } });
    const e = await tenant.createSandbox().catch((x) => x);
    assert.ok(e instanceof QuotaExceededError);
    assert.equal(e.code, "quota_exceeded");
    assert.equal(e.status, 429);
    assert.deepEqual((await tenant.listSandboxes()).map((s) => s.id), [tb.id]);
    await assert.rejects(tenant.listKeys(), PermissionDeniedError);
    await assert.rejects(tenant.createKey(), PermissionDeniedError);
    await tb.delete();

    await admin.deleteKey(k.id);
    await assert.rejects(tenant.listSandboxes(), AuthenticationError);
    await assert.rejects(admin.deleteKey(k.id), NotFoundError);
  } finally {
    await adminBox.delete();
  }
});
