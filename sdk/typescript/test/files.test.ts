/** write / read / readText / ls / stat / exists / mkdir / remove / move. */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { ConflictError, InvalidArgumentError, NotFoundError, PermissionDeniedError, SandboxClient } from "@sbx/sdk";
import type { Sandbox } from "@sbx/sdk";
import { Daemon } from "./helpers.js";

let d: Daemon;
let sb: Sandbox;

before(async () => {
  d = await new Daemon().start();
  sb = await new SandboxClient({ url: d.url }).createSandbox();
});

after(async () => {
  await sb?.delete();
  assert.equal(await d.stop(), 0, "sbxd exits 0 on SIGTERM");
});

test("write and read text, bytes, ranges; the command sees the file", async () => {
  const e = await sb.write("/root/app/a.py", "print(6*7)\n");
  assert.equal(e.type, "file");
  assert.equal(e.path, "/root/app/a.py");
  assert.equal(e.name, "a.py");
  assert.equal(e.size, 11);
  assert.equal(e.mode, "0644");
  assert.equal(await sb.readText("/root/app/a.py"), "print(6*7)\n");
  assert.equal((await sb.run("python3 /root/app/a.py")).stdout, "42\n");

  const bin = Buffer.from([0, 1, 2, 253, 254, 255]);
  await sb.write("/root/bin.dat", bin);
  assert.deepEqual(await sb.read("/root/bin.dat"), bin);
  assert.deepEqual(await sb.read("/root/bin.dat", { offset: 2, length: 3 }), Buffer.from([2, 253, 254]));
  assert.deepEqual(await sb.read("/root/bin.dat", { offset: 4 }), Buffer.from([254, 255]));
  await sb.write("/root/ab.bin", new Uint8Array([7, 8]).buffer);
  assert.deepEqual([...(await sb.read("/root/ab.bin"))], [7, 8]);
  await sb.write("/root/blob.txt", new Blob(["bl", "ob"]));
  assert.equal(await sb.readText("/root/blob.txt"), "blob");
});

test("streamed upload from a Readable and an async iterable", async () => {
  const big = Buffer.alloc(3 * 1024 * 1024, 97);
  await sb.write("/root/stream.bin", Readable.from([big.subarray(0, 1000), big.subarray(1000)]));
  const back = await sb.read("/root/stream.bin");
  assert.equal(back.length, big.length);
  assert.ok(back.equals(big));
  async function* gen() {
    yield Buffer.from("a");
    yield Buffer.from("b");
  }
  const e = await sb.write("/root/gen.txt", gen());
  assert.equal(e.size, 2);
});

test("mode, mkdir, ls, stat, exists", async () => {
  const x = await sb.write("/root/run.sh", "#!/bin/sh\necho ran\n", { mode: 0o755 });
  assert.equal(x.mode, "0755");
  assert.equal((await sb.run("/root/run.sh")).stdout, "ran\n");
  const dir = await sb.mkdir("/root/d1/d2/d3");
  assert.equal(dir.type, "dir");
  const d700 = await sb.mkdir("/root/private", { mode: "0700" });
  assert.equal(d700.mode, "0700");
  await sb.write("/root/d1/f.txt", "x");
  const entries = await sb.ls("/root/d1");
  assert.deepEqual(entries.map((e) => [e.name, e.type]).sort(), [["d2", "dir"], ["f.txt", "file"]]);
  const st = await sb.stat("/root/d1/f.txt");
  assert.equal(st.size, 1);
  assert.ok(Date.parse(st.mtime) > 0);
  await sb.run("ln -s /root/d1/f.txt /root/link");
  const ln = await sb.stat("/root/link");
  assert.equal(ln.type, "symlink");
  assert.equal(ln.linkTarget, "/root/d1/f.txt");
  assert.equal(await sb.exists("/root/d1/f.txt"), true);
  assert.equal(await sb.exists("/root/nope"), false);
  await assert.rejects(sb.stat("/root/nope"), NotFoundError);
  await assert.rejects(sb.read("/root/nope"), NotFoundError);
  await assert.rejects(sb.ls("/root/nope"), NotFoundError);
  await assert.rejects(sb.stat("relative"), InvalidArgumentError);
});

test("remove and move", async () => {
  await sb.write("/root/m/a.txt", "A");
  await sb.write("/root/m/b.txt", "B");
  const moved = await sb.move("/root/m/a.txt", "/root/m/c.txt");
  assert.equal(moved.path, "/root/m/c.txt");
  assert.equal(await sb.exists("/root/m/a.txt"), false);
  await assert.rejects(sb.move("/root/m/c.txt", "/root/m/b.txt"), ConflictError);
  await sb.move("/root/m/c.txt", "/root/m/b.txt", { overwrite: true });
  assert.equal(await sb.readText("/root/m/b.txt"), "A");
  await assert.rejects(sb.remove("/root/m"), ConflictError, "non-empty dir without recursive");
  await sb.remove("/root/m/b.txt");
  assert.equal(await sb.exists("/root/m/b.txt"), false);
  await sb.write("/root/m/deep/x.txt", "x");
  await sb.remove("/root/m", { recursive: true });
  assert.equal(await sb.exists("/root/m"), false);
  await assert.rejects(sb.remove("/root/m"), NotFoundError);
});

test("paths stay inside the sandbox; read-only paths are refused", async () => {
  await assert.rejects(sb.write("/usr/bin/evil", "x"), (e: unknown) => e instanceof PermissionDeniedError || (e as { status?: number }).status! >= 400);
  const hostShadow = await sb.read("/etc/shadow").catch((e) => e);
  assert.ok(hostShadow instanceof Error, "the host's /etc/shadow is not readable");
  await sb.write("/root/../../root/inside.txt", "in");
  assert.equal(await sb.readText("/root/inside.txt"), "in");
});
