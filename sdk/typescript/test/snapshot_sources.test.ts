/**
 * Snapshot sources beyond tarball imports: `sb.captureSnapshot` (files written in a sandbox come back in a
 * new sandbox made from the capture; unknown sandbox, taken name, a capture that fails) and
 * `client.pullSnapshot` from real registries on loopback (tests/sdk_typescript/registry_helper.py:
 * Debian's docker-registry, a throttled front for progress, basic auth, a bearer token).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import {
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  SandboxClient,
  SnapshotFailedError,
} from "@sbx/sdk";
import type { SnapshotInfo, SnapshotProgress } from "@sbx/sdk";
import { Daemon, Registries } from "./helpers.js";

const ADMIN = "ts-snapshot-sources-admin";
const HAVE_BUSYBOX = existsSync("/bin/busybox") && existsSync("/usr/bin/python3");
let d: Daemon;
let client: SandboxClient;
let reg: Registries | undefined;

before(async () => {
  d = await new Daemon(ADMIN).start();
  client = new SandboxClient({ url: d.url, apiKey: ADMIN });
  if (HAVE_BUSYBOX) reg = await new Registries().start();
});

after(async () => {
  try {
    assert.equal(await d.stop(), 0, "sbxd exits 0 on SIGTERM");
  } finally {
    await reg?.close();
  }
});

const names = async () => (await client.listSnapshots()).map((s) => s.name);

/* ------------------------------------------------------------ capture */

test("captureSnapshot: files written in a sandbox come back in a new sandbox made from it", async () => {
  const sb = await client.createSandbox({ env: { WHO: "capture" } });
  let snap: SnapshotInfo;
  try {
    await sb.write("/root/data/hello.txt", "hello from the first sandbox\n");
    await sb.write("/root/data/blob.bin", Buffer.alloc(20000, 7), { mode: 0o640 });
    await sb.mkdir("/srv/app/sub");
    const r = await sb.run("echo by-command > /srv/app/sub/cmd.txt && ln -s /root/data/hello.txt /root/link && echo $WHO > /root/who");
    assert.equal(r.exitCode, 0, r.stderr);
    snap = await sb.captureSnapshot("ts-cap");
    assert.equal(snap.status, "ready");
    assert.equal(snap.name, "ts-cap");
    assert.equal(snap.source, "capture");
    assert.equal(snap.base, "host");
    assert.equal(snap.owner, null);
    assert.equal(snap.progress, null);
    assert.match(snap.id, /^snap_/);
    assert.equal(snap.layers.length, 1);
    assert.ok(snap.sizeBytes > 0);
    assert.equal((await client.getSnapshot("ts-cap")).id, snap.id);
    assert.ok((await names()).includes("ts-cap"));
    await sb.write("/root/after.txt", "after"); // not busy any more
  } finally {
    await sb.delete();
  }

  const sb2 = await client.createSandbox({ snapshot: "ts-cap" });
  try {
    assert.equal(sb2.info.snapshot, snap.id);
    assert.equal(await sb2.readText("/root/data/hello.txt"), "hello from the first sandbox\n");
    assert.deepEqual(await sb2.read("/root/data/blob.bin"), Buffer.alloc(20000, 7));
    assert.equal((await sb2.stat("/root/data/blob.bin")).mode, "0640");
    assert.equal(await sb2.readText("/srv/app/sub/cmd.txt"), "by-command\n");
    assert.equal(await sb2.readText("/root/who"), "capture\n");
    assert.equal(await sb2.exists("/root/after.txt"), false);
    assert.equal((await sb2.run("readlink /root/link")).stdout, "/root/data/hello.txt\n");
    // A second generation shares the first capture's layer.
    await sb2.remove("/root/data/blob.bin");
    const snap2 = await sb2.captureSnapshot("ts-cap2");
    assert.deepEqual(snap2.layers.slice(0, 1), snap.layers);
    assert.equal(snap2.layers.length, 2);
    await assert.rejects(client.deleteSnapshot("ts-cap"), ConflictError, "in use");
  } finally {
    await sb2.delete();
  }
  const sb3 = await client.createSandbox({ snapshot: "ts-cap2" });
  try {
    assert.equal(await sb3.exists("/root/data/blob.bin"), false);
    assert.equal(await sb3.readText("/root/data/hello.txt"), "hello from the first sandbox\n");
  } finally {
    await sb3.delete();
  }
  await client.deleteSnapshot("ts-cap2");
  await client.deleteSnapshot("ts-cap");
});

test("captureSnapshot: wait false, taken and bad names, a failed capture, an unknown sandbox", async () => {
  const sb = await client.createSandbox();
  try {
    await sb.write("/root/f", "x");
    const building = await sb.captureSnapshot("ts-cap-nw", { wait: false });
    assert.equal(building.source, "capture");
    assert.ok(["building", "ready"].includes(building.status));
    assert.equal((await client.waitForSnapshot(building.id, { pollInterval: 50 })).status, "ready");

    await assert.rejects(sb.captureSnapshot("ts-cap-nw"), (e) => e instanceof ConflictError && e.status === 409);
    assert.equal((await names()).filter((n) => n === "ts-cap-nw").length, 1);
    for (const bad of ["bad/name", "host", ""])
      await assert.rejects(sb.captureSnapshot(bad), (e) => e instanceof InvalidArgumentError && e.status === 400, bad);

    // A name the layer format reserves: the capture ends failed, with sbxd's reason.
    await sb.write("/root/.wh.reserved", "no");
    await assert.rejects(sb.captureSnapshot("ts-cap-failed"), (e) => {
      assert.ok(e instanceof SnapshotFailedError);
      assert.equal(e.code, "snapshot_failed");
      assert.match(e.reason, /\.wh\./);
      assert.match(e.message, /failed to capture/);
      assert.equal(e.snapshot.status, "failed");
      assert.equal(e.snapshot.source, "capture");
      assert.equal(e.snapshot.name, "ts-cap-failed");
      return true;
    });
    await assert.rejects(client.createSandbox({ snapshot: "ts-cap-failed" }), ConflictError);
    await client.deleteSnapshot("ts-cap-failed");
  } finally {
    await sb.delete();
  }
  // The sandbox is gone now: capturing it is NotFoundError.
  await assert.rejects(sb.captureSnapshot("ts-cap-gone"), NotFoundError);
  assert.ok(!(await names()).includes("ts-cap-gone"));
  await client.deleteSnapshot("ts-cap-nw");
});

/* ------------------------------------------------------------ registry pull */

const skipPull = !HAVE_BUSYBOX && "no busybox";

test("pullSnapshot: progress while it downloads, then a sandbox from it", { skip: skipPull }, async () => {
  const r = reg!;
  const seen: SnapshotProgress[] = [];
  const snap = await client.pullSnapshot(`${r.slowHost}/sdk/app:v1`, {
    name: "ts-pulled",
    insecure: true,
    pollInterval: 100,
    onProgress: (p, s) => {
      assert.equal(s.status, "building");
      seen.push(p);
    },
  });
  assert.equal(snap.status, "ready");
  assert.equal(snap.source, "registry");
  assert.equal(snap.progress, null);
  assert.deepEqual(snap.layers, r.appLayers);
  assert.equal((snap.config as { WorkingDir?: string }).WorkingDir, "/app");
  // Several reports, each within its total, never going back, one in the middle of the download.
  assert.ok(seen.length >= 3, JSON.stringify(seen));
  for (let i = 1; i < seen.length; i++) {
    assert.notDeepEqual(seen[i], seen[i - 1], "only changes are reported");
    assert.ok(seen[i]!.bytesDone >= seen[i - 1]!.bytesDone && seen[i]!.bytesTotal >= seen[i - 1]!.bytesTotal);
  }
  assert.ok(seen.every((p) => p.bytesTotal === 0 || p.bytesDone <= p.bytesTotal), JSON.stringify(seen));
  assert.ok(seen.some((p) => p.bytesDone > 0 && p.bytesDone < p.bytesTotal), JSON.stringify(seen));
  assert.ok(seen.at(-1)!.bytesTotal >= r.noise);

  const sb = await client.createSandbox({ snapshot: "ts-pulled" });
  try {
    const out = await sb.run("pwd; cat hello; echo $WHO; wc -c < noise");
    assert.equal(out.stdout, `/app\nhello from the registry\npulled\n${r.noise}\n`, out.stderr);
  } finally {
    await sb.delete();
  }

  // wait: false answers the building snapshot (with its progress); waitForSnapshot finishes it.
  const b = await client.pullSnapshot(`${r.host}/sdk/small@${r.smallDigest}`, { name: "ts-pulled-nw", insecure: true, wait: false });
  assert.equal(b.source, "registry");
  if (b.status === "building") assert.ok(b.progress && typeof b.progress.bytesDone === "number");
  const ready = await client.waitForSnapshot("ts-pulled-nw", { pollInterval: 50, onProgress: async () => {} });
  assert.equal(ready.layers.length, 2);
  const sb2 = await client.createSandbox({ snapshot: "ts-pulled-nw" });
  try {
    assert.equal(await sb2.readText("/etc/motd"), "by digest\n");
  } finally {
    await sb2.delete();
  }
  await client.deleteSnapshot("ts-pulled-nw");
  await client.deleteSnapshot("ts-pulled");
});

test("pullSnapshot: refusals, failures with the registry's reason, admin only", { skip: skipPull }, async () => {
  const r = reg!;
  const ref = `${r.host}/sdk/small:v1`;
  await client.pullSnapshot(ref, { name: "ts-pull-taken", insecure: true });
  await assert.rejects(client.pullSnapshot(ref, { name: "ts-pull-taken", insecure: true }), ConflictError);
  for (const bad of ["no-registry", `${r.host}/UPPER:v1`, `${r.host}/a@sha256:12`])
    await assert.rejects(
      client.pullSnapshot(bad, { name: "ts-pull-bad", insecure: true }),
      (e) => e instanceof InvalidArgumentError && e.status === 400,
      bad,
    );
  // Caught before any request (status 0): what the types would have caught, and onProgress without wait.
  const local = (p: Promise<unknown>) =>
    assert.rejects(p, (e) => e instanceof InvalidArgumentError && e.status === 0);
  await local(client.pullSnapshot(ref, { name: "ts-x", auth: { username: "alice" } as never }));
  await local(client.pullSnapshot(ref, { name: "ts-x", auth: { username: "a", password: "p", token: "t" } as never }));
  await local(client.pullSnapshot(ref, { name: "ts-x", auth: { token: 5 } as never }));
  await local(client.pullSnapshot(ref, {} as never));
  await local(client.pullSnapshot("", { name: "ts-x" }));
  await local(client.pullSnapshot(ref, { name: "ts-x", wait: false, onProgress: () => {} }));
  assert.ok(!(await names()).some((n) => n === "ts-x" || n === "ts-pull-bad"));

  await assert.rejects(client.pullSnapshot(`${r.host}/sdk/small:nope`, { name: "ts-pull-missing", insecure: true }), (e) => {
    assert.ok(e instanceof SnapshotFailedError);
    assert.equal(e.code, "snapshot_failed");
    assert.match(e.reason, /not found/);
    assert.match(e.reason, /MANIFEST_UNKNOWN/);
    assert.match(e.message, /failed to pull/);
    assert.equal(e.snapshot.source, "registry");
    assert.equal(e.snapshot.status, "failed");
    return true;
  });
  await client.deleteSnapshot("ts-pull-missing");
  // HTTPS (the default) against a plain-HTTP registry.
  await assert.rejects(client.pullSnapshot(ref, { name: "ts-pull-tls" }), (e) => {
    assert.ok(e instanceof SnapshotFailedError);
    assert.match(e.reason, /GET https:\/\//);
    return true;
  });
  await client.deleteSnapshot("ts-pull-tls");

  const k = await client.createKey({ name: "ts-pull-tenant" });
  try {
    const tenant = new SandboxClient({ url: d.url, apiKey: k.key! });
    await assert.rejects(tenant.pullSnapshot(ref, { name: "ts-pull-t", insecure: true }), PermissionDeniedError);
  } finally {
    await client.deleteKey(k.id);
  }
  await client.deleteSnapshot("ts-pull-taken");
});

test("pullSnapshot: basic auth and a bearer token", { skip: skipPull }, async () => {
  const r = reg!;
  const priv = `${r.privateHost}/sdk/private:v1`;
  await assert.rejects(client.pullSnapshot(priv, { name: "ts-pull-noauth", insecure: true }), SnapshotFailedError);
  await assert.rejects(
    client.pullSnapshot(priv, { name: "ts-pull-wrong", insecure: true, auth: { username: r.user, password: "wrong" } }),
    (e) => e instanceof SnapshotFailedError && /refused/.test(e.reason),
  );
  const snap = await client.pullSnapshot(priv, { name: "ts-pull-basic", insecure: true, auth: { username: r.user, password: r.password } });
  assert.equal(snap.status, "ready");
  const tok = `${r.tokenHost}/sbx/tok:v1`;
  await assert.rejects(
    client.pullSnapshot(tok, { name: "ts-pull-badtok", insecure: true, auth: { token: "not-the-token" } }),
    SnapshotFailedError,
  );
  await client.pullSnapshot(tok, { name: "ts-pull-tok", insecure: true, auth: { token: r.token } });
  const sb = await client.createSandbox({ snapshot: "ts-pull-basic" });
  const sb2 = await client.createSandbox({ snapshot: "ts-pull-tok" });
  try {
    assert.equal(await sb.readText("/private"), "basic\n");
    assert.equal(await sb2.readText("/tok"), "bearer\n");
  } finally {
    await sb.delete();
    await sb2.delete();
  }
  for (const n of ["ts-pull-noauth", "ts-pull-wrong", "ts-pull-basic", "ts-pull-badtok", "ts-pull-tok"])
    await client.deleteSnapshot(n);
});
