// Snapshots through the unmodified SDK: capture a box, create boxes from it by id and by name, list, get,
// delete.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { SandboxClient, LangSmithResourceNotFoundError } from "langsmith/sandbox";
import { startSbxd } from "./helpers.mjs";

let sbxd, client;
before(async () => {
  sbxd = await startSbxd();
  client = new SandboxClient();
});
after(async () => {
  await sbxd?.stop();
});

test("capture, create from id and name, list, get, delete", async () => {
  const base = await client.createSandbox();
  await base.write("/root/baked.txt", "baked");
  const snap = await base.captureSnapshot("baked");
  assert.equal(snap.status, "ready");
  await base.delete();

  const byId = await client.createSandbox(snap.id);
  assert.equal((await byId.run("cat /root/baked.txt")).stdout, "baked");
  const byName = await client.createSandbox({ snapshotName: "baked" });
  assert.equal((await byName.run("cat /root/baked.txt")).stdout, "baked");
  assert.equal(byName.snapshot_id, snap.id);
  await byId.delete();
  await byName.delete();

  const list = await client.listSnapshots();
  assert.ok(list.some((s) => s.id === snap.id));
  assert.ok(list.some((s) => s.name === "host"));
  const got = await client.getSnapshot(snap.id);
  assert.equal(got.name, "baked");
  await client.deleteSnapshot(snap.id);
  await assert.rejects(client.getSnapshot(snap.id), LangSmithResourceNotFoundError);
});
