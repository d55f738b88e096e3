/** Named volumes (create, list, get, delete), mounting them into sandboxes, typed errors. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { BusyError, ConflictError, InvalidArgumentError, NotFoundError, SandboxClient } from "@sbx/sdk";
import type { Sandbox, VolumeInfo, VolumeMount, VolumeMountInfo } from "@sbx/sdk";
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

const uniq = (prefix: string) => `${prefix}-${randomBytes(4).toString("hex")}`;

function checkVolume(v: VolumeInfo, name: string, sizeMb: number): void {
  assert.match(v.id, /^vol_/);
  assert.equal(v.name, name);
  assert.equal(v.sizeMb, sizeMb);
  assert.ok(v.usedBytes === null || (typeof v.usedBytes === "number" && v.usedBytes >= 0));
  assert.ok(v.createdAt);
}

test("a volume shared by two sandboxes, one read-only; busy while mounted, gone once deleted", async () => {
  const name = uniq("ts-vol");
  const vol = await client.createVolume(name, { sizeMb: 64 });
  const made: Sandbox[] = [];
  try {
    checkVolume(vol, name, 64);
    assert.equal((await client.getVolume(name)).id, vol.id);
    assert.equal((await client.getVolume(vol.id)).name, name);
    assert.equal((await client.getVolume(vol)).id, vol.id);
    assert.ok((await client.listVolumes()).some((v) => v.id === vol.id));

    const mounts: VolumeMount[] = [{ volume: name, path: "/data" }];
    const writer = await client.createSandbox({ volumes: mounts });
    made.push(writer);
    const reader = await client.createSandbox({ volumes: [{ volume: vol, path: "/mnt/shared", readOnly: true }] });
    made.push(reader);
    const expected: VolumeMountInfo[] = [{ volume: vol.id, path: "/data", readOnly: false }];
    assert.deepEqual(writer.volumes, expected);
    assert.deepEqual(reader.volumes, [{ volume: vol.id, path: "/mnt/shared", readOnly: true }]);
    assert.deepEqual((await client.getSandbox(reader.id)).volumes, reader.volumes);

    const w = await writer.run("echo from-writer > /data/hello.txt && mkdir -p /data/d && chown 1000:1000 /data/d");
    assert.equal(w.exitCode, 0, w.stderr);
    assert.equal((await reader.run("cat /mnt/shared/hello.txt")).stdout, "from-writer\n");
    assert.equal((await reader.run("stat -c %u:%g /mnt/shared/d")).stdout, "1000:1000\n", "same owners everywhere");

    // The read-only mount refuses writes; nothing reaches the volume.
    const ro = await reader.run("echo nope > /mnt/shared/nope.txt");
    assert.notEqual(ro.exitCode, 0);
    assert.match(ro.stderr, /read-only/i);
    assert.equal((await writer.run("test -e /data/nope.txt")).exitCode, 1);

    // Deleting a mounted volume is a BusyError (a ConflictError), also while its sandboxes are stopped.
    const err = await client.deleteVolume(name).catch((e) => e);
    assert.ok(err instanceof BusyError);
    assert.ok(err instanceof ConflictError);
    assert.equal(err.code, "busy");
    assert.equal(err.status, 409);
    await writer.stop();
    await reader.stop();
    await assert.rejects(client.deleteVolume(vol), BusyError);

    // The volume outlives its sandboxes: a new one sees the files.
    for (const s of made) await s.delete();
    {
      await using again = await client.createSandbox({ volumes: [{ volume: vol.id, path: "/srv/data" }] });
      assert.deepEqual(again.volumes, [{ volume: vol.id, path: "/srv/data", readOnly: false }]);
      assert.equal((await again.run("cat /srv/data/hello.txt")).stdout, "from-writer\n");
    }
    const used = (await client.getVolume(vol)).usedBytes;
    assert.ok(used === null || used > 0);

    // No sandbox mounts it any more: it can be deleted, and then it is gone.
    await client.deleteVolume(name);
    const isNotFound = (e: unknown) => e instanceof NotFoundError && e.code === "not_found" && e.status === 404;
    await assert.rejects(client.getVolume(vol.id), isNotFound);
    await assert.rejects(client.getVolume(name), isNotFound);
    await assert.rejects(client.deleteVolume(vol), isNotFound);
    assert.ok(!(await client.listVolumes()).some((v) => v.id === vol.id));
  } finally {
    for (const s of made) await s.delete().catch(() => {});
    await client.deleteVolume(vol).catch(() => {});
  }
});

test("a taken volume name is a ConflictError; bad input an InvalidArgumentError; unknown a NotFoundError", async () => {
  const name = uniq("ts-vol-dup");
  const vol = await client.createVolume(name);
  try {
    checkVolume(vol, name, 1024); // the default size
    const err = await client.createVolume(name).catch((e) => e);
    assert.ok(err instanceof ConflictError);
    assert.ok(!(err instanceof BusyError));
    assert.equal(err.code, "conflict");
    assert.equal(err.status, 409);
    await assert.rejects(client.createVolume("bad name!"), InvalidArgumentError);
    await assert.rejects(client.createVolume(uniq("ts-vol-small"), { sizeMb: 8 }), InvalidArgumentError);

    await assert.rejects(client.createSandbox({ volumes: [{ volume: "ts-vol-doesnotexist", path: "/data" }] }), NotFoundError);
    for (const path of ["data", "/", "/proc/x", "/a/../b"])
      await assert.rejects(client.createSandbox({ volumes: [{ volume: vol, path }] }), InvalidArgumentError, path);
    await assert.rejects(
      client.createSandbox({
        volumes: [
          { volume: vol, path: "/a" },
          { volume: name, path: "/a", readOnly: true },
        ],
      }),
      InvalidArgumentError,
      "one volume per path",
    );
    {
      await using plain = await client.createSandbox();
      assert.deepEqual(plain.volumes, []);
      assert.deepEqual(plain.info.volumes, []);
    }
    await assert.rejects(client.getVolume(""), (e: unknown) => e instanceof InvalidArgumentError && e.status === 0);
    await client.deleteVolume(vol); // the failed creates left nothing mounting it
  } finally {
    await client.deleteVolume(vol).catch(() => {});
  }
});
