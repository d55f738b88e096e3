/** Snapshots: importSnapshot from a path, bytes and a stream; list/get/delete; create from one; failures. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  SandboxClient,
  SnapshotFailedError,
} from "@sbx/sdk";
import { Daemon, SOURCE_DIR } from "./helpers.js";

const HAVE_BUSYBOX = existsSync("/bin/busybox") && existsSync("/usr/bin/python3");
let d: Daemon;
let client: SandboxClient;
let dir: string;

/** Writes image tarballs with tests/imagebuild.py (busybox-static as the one layer). */
function buildImages(out: string): void {
  const py = `
import sys
sys.path.insert(0, sys.argv[1])
import imagebuild as ib
out = sys.argv[2]
base = ib.busybox_layer().bytes()
cfg = dict(env=["PATH=/bin", "GREETING=hello image"], workdir="/root")
ib.docker_save(out + "/docker.tar", [base], **cfg)
ib.oci_layout(out + "/oci.tar", [base], compression="gzip", **cfg)
ib.oci_layout(out + "/bad.tar", [base], compression="gzip", corrupt_blob=0, **cfg)
`;
  execFileSync("/usr/bin/python3", ["-c", py, join(SOURCE_DIR, "tests"), out], { stdio: "inherit" });
}

before(async () => {
  if (!HAVE_BUSYBOX) return;
  dir = mkdtempSync("/var/tmp/sbx-ts-img-");
  buildImages(dir);
  d = await new Daemon().start();
  client = new SandboxClient({ url: d.url });
});

after(async () => {
  if (!HAVE_BUSYBOX) return;
  assert.equal(await d.stop(), 0);
  rmSync(dir, { recursive: true, force: true });
});

test("import from a path, list, get, create a sandbox from it, delete", { skip: !HAVE_BUSYBOX && "no busybox" }, async () => {
  const snap = await client.importSnapshot(join(dir, "docker.tar"), { name: "bb" });
  assert.equal(snap.status, "ready");
  assert.equal(snap.name, "bb");
  assert.equal(snap.source, "image");
  assert.match(snap.id, /^snap_/);
  assert.equal(snap.layers.length, 1);
  assert.match(snap.layers[0]!, /^sha256:/);
  assert.ok(snap.sizeBytes > 0);
  assert.deepEqual((snap.config as { Env?: string[] }).Env, ["PATH=/bin", "GREETING=hello image"]);

  const all = await client.listSnapshots();
  assert.equal(all[0]!.name, "host");
  assert.equal(all[0]!.source, "host");
  assert.ok(all.some((s) => s.id === snap.id));
  assert.equal((await client.getSnapshot("bb")).id, snap.id);
  assert.equal((await client.getSnapshot(snap.id)).name, "bb");

  const sb = await client.createSandbox({ snapshot: "bb" });
  try {
    assert.equal(sb.info.snapshot, snap.id);
    const r = await sb.run("echo $GREETING; pwd; readlink /bin/sh || ls /bin/sh");
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /^hello image\n\/root\n/);
    await assert.rejects(client.deleteSnapshot("bb"), ConflictError, "in use");
  } finally {
    await sb.delete();
  }
  await client.deleteSnapshot("bb");
  await assert.rejects(client.getSnapshot("bb"), NotFoundError);
});

test("import bytes without waiting, then waitForSnapshot; a stream; name conflicts", { skip: !HAVE_BUSYBOX && "no busybox" }, async () => {
  const building = await client.importSnapshot(readFileSync(join(dir, "oci.tar")), { name: "oci-bytes", wait: false });
  assert.ok(["building", "ready"].includes(building.status));
  const ready = await client.waitForSnapshot(building.id, { pollInterval: 50 });
  assert.equal(ready.status, "ready");

  async function* chunks() {
    for await (const c of createReadStream(join(dir, "oci.tar"), { highWaterMark: 16384 })) yield c as Buffer;
  }
  const streamed = await client.importSnapshot(chunks(), { name: "oci-stream" });
  assert.equal(streamed.status, "ready");
  assert.deepEqual(streamed.layers, ready.layers, "same layers, shared");

  await assert.rejects(
    client.importSnapshot(join(dir, "oci.tar"), { name: "oci-bytes" }),
    (e) => e instanceof ConflictError && e.status === 409,
  );
  await client.deleteSnapshot("oci-bytes");
  await client.deleteSnapshot(streamed.id);
});

test("a failed import rejects with SnapshotFailedError and its reason", { skip: !HAVE_BUSYBOX && "no busybox" }, async () => {
  await assert.rejects(client.importSnapshot(join(dir, "bad.tar"), { name: "bad" }), (e) => {
    assert.ok(e instanceof SnapshotFailedError);
    assert.equal(e.code, "snapshot_failed");
    assert.match(e.reason, /digest/);
    assert.equal(e.snapshot.status, "failed");
    assert.equal(e.snapshot.name, "bad");
    return true;
  });
  await assert.rejects(client.createSandbox({ snapshot: "bad" }), ConflictError);
  await client.deleteSnapshot("bad");
  await assert.rejects(client.createSandbox({ snapshot: "nope" }), NotFoundError);
  await assert.rejects(client.deleteSnapshot("host"), PermissionDeniedError);
});
