/** Checkpoints (create, list, get, delete, restore), sandboxes created from a checkpoint, fork; typed errors. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  BusyError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  NotRunningError,
  Sandbox,
  SandboxClient,
  errorFromResponse,
} from "@sbx/sdk";
import type { CheckpointInfo } from "@sbx/sdk";
import { Daemon } from "./helpers.js";

let d: Daemon;
let client: SandboxClient;

before(async () => {
  d = await new Daemon().start();
  client = new SandboxClient({ url: d.url });
});

after(async () => {
  assert.equal(await d.stop(), 0, "sbxd exits 0 on SIGTERM");
});

function checkCheckpoint(ck: CheckpointInfo, sb: Sandbox, name?: string): void {
  assert.match(ck.id, /^ckp_/);
  assert.equal(ck.sandboxId, sb.id);
  assert.equal(ck.name, name ?? ck.id, "an unnamed checkpoint is named by its id");
  assert.equal(ck.snapshot, "host");
  assert.equal(ck.diskMb, sb.info.resources.diskMb);
  assert.ok(ck.diskMb > 0);
  assert.equal(typeof ck.sizeBytes, "number");
  assert.ok(ck.createdAt);
}

test("checkpoint, change files, restore brings them back; list, get, delete", async () => {
  await using sb = await client.createSandbox();
  await sb.write("/root/state.txt", "v1");
  const ck = await sb.checkpoint({ name: "before" });
  checkCheckpoint(ck, sb, "before");
  const unnamed = await sb.checkpoint();
  checkCheckpoint(unnamed, sb);
  assert.deepEqual((await sb.listCheckpoints()).map((c) => c.id), [ck.id, unnamed.id], "oldest first");
  assert.deepEqual(await sb.getCheckpoint("before"), ck);
  assert.deepEqual(await sb.getCheckpoint(unnamed), unnamed);

  await sb.write("/root/state.txt", "v2");
  await sb.write("/root/new.txt", "new");
  const bg = await sb.run("sleep 300", { wait: false, idleTimeout: -1 });
  bg.close();
  const info = await sb.restore("before");
  assert.equal(info.state, "running");
  assert.equal(sb.info, info, "restore updates sb.info");
  assert.equal(await sb.readText("/root/state.txt"), "v1");
  assert.equal(await sb.exists("/root/new.txt"), false);
  assert.equal((await sb.run("pgrep -x sleep")).exitCode, 1, "processes do not survive a restore");

  // By the CheckpointInfo; a stopped sandbox stays stopped.
  await sb.write("/root/state.txt", "v3");
  await sb.stop();
  assert.equal((await sb.restore(ck)).state, "stopped");
  assert.equal((await sb.refresh()).state, "stopped");
  await assert.rejects(sb.readText("/root/state.txt"), NotRunningError);
  await sb.start();
  assert.equal(await sb.readText("/root/state.txt"), "v1");

  await sb.deleteCheckpoint(unnamed.name);
  assert.deepEqual((await sb.listCheckpoints()).map((c) => c.name), ["before"]);
  await assert.rejects(sb.deleteCheckpoint(unnamed), NotFoundError);
});

test("a duplicate name is a ConflictError; a bad name an InvalidArgumentError", async () => {
  await using sb = await client.createSandbox();
  await sb.checkpoint({ name: "dup" });
  const err = await sb.checkpoint({ name: "dup" }).catch((e) => e);
  assert.ok(err instanceof ConflictError);
  assert.ok(!(err instanceof BusyError));
  assert.equal(err.code, "conflict");
  assert.equal(err.status, 409);
  await assert.rejects(sb.checkpoint({ name: "bad name!" }), InvalidArgumentError);
  assert.equal((await sb.listCheckpoints()).length, 1);
});

test("unknown checkpoints are NotFoundError everywhere", async () => {
  await using sb = await client.createSandbox();
  const isNotFound = (e: unknown) => e instanceof NotFoundError && e.code === "not_found" && e.status === 404;
  await assert.rejects(sb.getCheckpoint("nope"), isNotFound);
  await assert.rejects(sb.restore("nope"), isNotFound);
  await assert.rejects(sb.deleteCheckpoint("nope"), isNotFound);
  await assert.rejects(client.createSandbox({ checkpoint: "ckp_doesnotexist" }), isNotFound);
  await assert.rejects(client.createSandbox({ checkpoint: `${sb.id}:nope` }), isNotFound);
  await assert.rejects(client.createSandbox({ checkpoint: "sbx_doesnotexist:nope" }), isNotFound);
  assert.deepEqual(await sb.listCheckpoints(), []);

  const ck = await sb.checkpoint();
  // The server refuses what cannot be: with a snapshot, another disk size, a malformed reference.
  await assert.rejects(client.createSandbox({ checkpoint: ck, snapshot: "host" }), InvalidArgumentError);
  await assert.rejects(
    client.createSandbox({ checkpoint: ck, resources: { diskMb: ck.diskMb / 2 } }),
    InvalidArgumentError,
  );
  await assert.rejects(client.createSandbox({ checkpoint: "nonsense" }), InvalidArgumentError);
  // A checkpoint of another sandbox is refused before anything is sent.
  await using other = await client.createSandbox();
  await assert.rejects(other.restore(ck), (e: unknown) => e instanceof InvalidArgumentError && e.status === 0);
});

test("createSandbox({checkpoint}) starts with the checkpoint's files", async () => {
  await using src = await client.createSandbox({ name: "ts-ckp-src", resources: { diskMb: 512 } });
  await src.write("/root/app/data.txt", "from the checkpoint");
  await src.run("chown 1234 /root/app/data.txt");
  const ck = await src.checkpoint({ name: "base" });
  await src.write("/root/app/data.txt", "changed after");
  for (const ref of [ck, ck.id, "ts-ckp-src:base", `${src.id}:base`]) {
    await using sb = await client.createSandbox({ checkpoint: ref, env: { K: "v" } });
    assert.notEqual(sb.id, src.id);
    assert.equal(sb.state, "running");
    assert.equal(sb.info.snapshot, src.info.snapshot);
    assert.equal(sb.info.resources.diskMb, 512);
    assert.equal(await sb.readText("/root/app/data.txt"), "from the checkpoint");
    assert.equal((await sb.run("stat -c %u /root/app/data.txt; echo $K")).stdout, "1234\nv\n");
    await sb.write("/root/app/data.txt", "mine");
  }
  assert.equal(await src.readText("/root/app/data.txt"), "changed after");
});

test("fork({count: 2}) gives two independent sandboxes", async () => {
  await using sb = await client.createSandbox({
    env: { FOO: "bar" },
    metadata: { suite: "ts-fork" },
    resources: { memoryMb: 256 },
  });
  await sb.write("/root/shared.txt", "parent");
  const forks = await sb.fork({ count: 2 });
  try {
    assert.equal(forks.length, 2);
    assert.ok(forks.every((f) => f instanceof Sandbox));
    assert.equal(new Set([sb.id, ...forks.map((f) => f.id)]).size, 3);
    for (const [i, f] of forks.entries()) {
      assert.equal(f.state, "running");
      assert.equal(f.name, null);
      assert.deepEqual(f.info.env, { FOO: "bar" });
      assert.deepEqual(f.info.metadata, { suite: "ts-fork" });
      assert.deepEqual(f.info.resources, sb.info.resources);
      assert.equal(await f.readText("/root/shared.txt"), "parent");
      await f.write("/root/shared.txt", `fork-${i}`);
    }
    assert.deepEqual(await Promise.all(forks.map((f) => f.readText("/root/shared.txt"))), ["fork-0", "fork-1"]);
    assert.equal(await sb.readText("/root/shared.txt"), "parent");
    const listed = await client.listSandboxes({ metadata: { suite: "ts-fork" } });
    assert.deepEqual(listed.map((s) => s.id).sort(), [sb.id, ...forks.map((f) => f.id)].sort());
    await assert.rejects(sb.fork({ count: 0 }), InvalidArgumentError);
    await assert.rejects(sb.fork({ count: 17 }), InvalidArgumentError);
    {
      const [one, ...rest] = await sb.fork();
      assert.equal(rest.length, 0);
      await using f = one!;
      assert.equal(await f.readText("/root/shared.txt"), "parent");
    }
  } finally {
    for (const f of forks) await f.delete().catch(() => {});
  }
  for (const f of forks) assert.equal((await client.getSandbox(f.id)).state, "deleted");
  assert.deepEqual(
    (await client.listSandboxes({ metadata: { suite: "ts-fork" } })).map((s) => s.id),
    [sb.id],
    "every fork is deleted",
  );
});

test("409 busy maps to BusyError, a ConflictError", () => {
  const e = errorFromResponse(409, JSON.stringify({ error: { code: "busy", message: "a fork of sandbox x is in progress" } }));
  assert.ok(e instanceof BusyError);
  assert.ok(e instanceof ConflictError);
  assert.equal(e.code, "busy");
  assert.equal(e.status, 409);
  assert.equal(e.name, "BusyError");
});
