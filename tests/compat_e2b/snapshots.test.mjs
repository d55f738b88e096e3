// Snapshots through the unmodified E2B SDK: createSnapshot (sbx's capture, answered once it is ready),
// Sandbox.create from a snapshot by id and by name, listSnapshots (filters, paging), deleteSnapshot, and
// fork (sbx's fork: a copy of the disk).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Sandbox, SandboxNotFoundError, SandboxError } from "e2b";
import { startSbxd } from "./helpers.mjs";

let d;
before(async () => {
  d = await startSbxd();
});
after(async () => {
  await d?.stop();
});

async function all(paginator) {
  const out = [];
  while (paginator.hasNext) out.push(...(await paginator.nextItems()));
  return out;
}

test("createSnapshot, create from it by id and by name, list, delete", async () => {
  const src = await Sandbox.create();
  try {
    await src.files.write("/root/state.txt", "captured");
    const snap = await src.createSnapshot({ name: "e2b-snap-a" });
    assert.match(snap.snapshotId, /^snap/);
    assert.deepEqual(snap.names, ["e2b-snap-a"]);

    for (const ref of [snap.snapshotId, "e2b-snap-a"]) {
      const s = await Sandbox.create(ref);
      try {
        assert.equal(await s.files.read("/root/state.txt"), "captured");
        assert.equal((await s.getInfo()).templateId, snap.snapshotId);
      } finally {
        await s.kill();
      }
    }

    const unnamed = await src.createSnapshot();
    assert.equal(unnamed.names.length, 1);
    assert.match(unnamed.names[0], /^e2b-snapshot-/);

    const mine = await all(src.listSnapshots());
    assert.deepEqual(mine.map((x) => x.snapshotId).sort(), [snap.snapshotId, unnamed.snapshotId].sort());
    const byName = await all(Sandbox.listSnapshots({ name: "e2b-snap-a" }));
    assert.deepEqual(byName, [snap]);
    const other = await all(Sandbox.listSnapshots({ sandboxId: "sbx_nobody" }));
    assert.deepEqual(other, []);
    const pager = Sandbox.listSnapshots({ sandboxId: src.sandboxId, limit: 1 });
    const first = await pager.nextItems();
    assert.equal(first.length, 1);
    assert.equal(pager.hasNext, true);
    const second = await pager.nextItems();
    assert.equal(second.length, 1);
    assert.equal(pager.hasNext, false);
    assert.notEqual(first[0].snapshotId, second[0].snapshotId);

    // In use by a sandbox: sbx refuses (409), the SDK raises SandboxError.
    const user = await Sandbox.create("e2b-snap-a");
    await assert.rejects(Sandbox.deleteSnapshot(snap.snapshotId), (e) => e instanceof SandboxError && /409/.test(e.message));
    await user.kill();

    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), true);
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), false);
    assert.equal(await Sandbox.deleteSnapshot(unnamed.names[0]), true);
    assert.deepEqual(await all(src.listSnapshots()), []);
    await assert.rejects(Sandbox.create("e2b-snap-a"), (e) => e instanceof SandboxError);
  } finally {
    await src.kill();
  }
});

test("createSnapshot errors: missing sandbox, taken name", async () => {
  await assert.rejects(Sandbox.createSnapshot("sbx_missing"), (e) => e instanceof SandboxNotFoundError);
  const s = await Sandbox.create();
  try {
    const snap = await s.createSnapshot({ name: "e2b-snap-taken" });
    await assert.rejects(s.createSnapshot({ name: "e2b-snap-taken" }), (e) => e instanceof SandboxError && /409/.test(e.message));
    await assert.rejects(s.createSnapshot({ name: "bad/name" }), (e) => e instanceof SandboxError && /400/.test(e.message));
    assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), true);
  } finally {
    await s.kill();
  }
});

test("fork copies the disk into new sandboxes", async () => {
  const src = await Sandbox.create();
  try {
    await src.files.write("/root/fork.txt", "before fork");
    const forks = await src.fork({ count: 2, timeoutMs: 120_000 });
    assert.equal(forks.length, 2);
    for (const f of forks) {
      assert.ok(f instanceof Sandbox, String(f));
      assert.notEqual(f.sandboxId, src.sandboxId);
      assert.equal(await f.files.read("/root/fork.txt"), "before fork");
      await f.files.write("/root/fork.txt", "changed in fork");
      const info = await f.getInfo();
      assert.ok(info.endAt - Date.now() <= 121_000 && info.endAt - Date.now() > 60_000);
    }
    assert.equal(await src.files.read("/root/fork.txt"), "before fork");
    for (const f of forks) await f.kill();
    await assert.rejects(Sandbox.fork("sbx_missing"), (e) => e instanceof SandboxNotFoundError || e instanceof SandboxError);
  } finally {
    await src.kill();
  }
});
