// files.*: write/read/list/exists/getInfo/remove/rename/makeDir, several files at once, bytes, missing
// files, and signed upload/download URLs, through the unmodified E2B SDK.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Sandbox, FileNotFoundError } from "e2b";
import { startSbxd } from "./helpers.mjs";

let d, sbx;
before(async () => {
  d = await startSbxd();
  sbx = await Sandbox.create();
});
after(async () => {
  await sbx?.kill();
  await d?.stop();
});

test("write then read text, and the entry it returns", async () => {
  const info = await sbx.files.write("/tmp/e2b/hello.txt", "hello world\n");
  assert.equal(info.path, "/tmp/e2b/hello.txt");
  assert.equal(info.name, "hello.txt");
  assert.equal(info.type, "file");
  assert.equal(await sbx.files.read("/tmp/e2b/hello.txt"), "hello world\n");
  const r = await sbx.commands.run("cat /tmp/e2b/hello.txt");
  assert.equal(r.stdout, "hello world\n");
});

test("relative paths resolve against the user's home", async () => {
  await sbx.files.write("notes.txt", "in home");
  assert.equal(await sbx.files.read("/root/notes.txt"), "in home");
  assert.equal(await sbx.files.read("notes.txt"), "in home");
});

test("bytes round-trip, and an empty file", async () => {
  const data = new Uint8Array(70000).map((_, i) => (i * 7) & 0xff);
  await sbx.files.write("/tmp/bin.dat", data.buffer);
  const back = await sbx.files.read("/tmp/bin.dat", { format: "bytes" });
  assert.deepEqual(Buffer.from(back), Buffer.from(data));
  await sbx.files.write("/tmp/empty", "");
  assert.equal(await sbx.files.read("/tmp/empty"), "");
});

test("several files in one write", async () => {
  const infos = await sbx.files.write([
    { path: "/tmp/multi/a.txt", data: "A" },
    { path: "/tmp/multi/b.txt", data: "B" },
  ]);
  assert.deepEqual(infos.map((i) => i.path).sort(), ["/tmp/multi/a.txt", "/tmp/multi/b.txt"]);
  assert.equal(await sbx.files.read("/tmp/multi/b.txt"), "B");
});

test("list, with depth, and getInfo", async () => {
  await sbx.files.makeDir("/tmp/tree/sub");
  await sbx.files.write("/tmp/tree/top.txt", "1234");
  await sbx.files.write("/tmp/tree/sub/deep.txt", "x");
  const one = await sbx.files.list("/tmp/tree");
  assert.deepEqual(one.map((e) => e.name).sort(), ["sub", "top.txt"]);
  const top = one.find((e) => e.name === "top.txt");
  assert.equal(top.type, "file");
  assert.equal(top.size, 4);
  assert.equal(top.mode, 0o644);
  assert.equal(top.permissions, "-rw-r--r--");
  assert.equal(one.find((e) => e.name === "sub").type, "dir");
  const two = await sbx.files.list("/tmp/tree", { depth: 2 });
  assert.ok(two.some((e) => e.path === "/tmp/tree/sub/deep.txt"), JSON.stringify(two));
  const info = await sbx.files.getInfo("/tmp/tree/sub");
  assert.equal(info.type, "dir");
  assert.equal(info.permissions, "drwxr-xr-x");
  assert.ok(info.modifiedTime instanceof Date);
});

test("exists, makeDir, rename, remove", async () => {
  assert.equal(await sbx.files.exists("/tmp/nothing-here"), false);
  assert.equal(await sbx.files.makeDir("/tmp/newdir/a/b"), true);
  assert.equal(await sbx.files.makeDir("/tmp/newdir/a/b"), false);
  assert.equal(await sbx.files.exists("/tmp/newdir/a/b"), true);
  await sbx.files.write("/tmp/newdir/f.txt", "move me");
  const moved = await sbx.files.rename("/tmp/newdir/f.txt", "/tmp/newdir/a/g.txt");
  assert.equal(moved.path, "/tmp/newdir/a/g.txt");
  assert.equal(await sbx.files.exists("/tmp/newdir/f.txt"), false);
  assert.equal(await sbx.files.read("/tmp/newdir/a/g.txt"), "move me");
  await sbx.files.remove("/tmp/newdir");
  assert.equal(await sbx.files.exists("/tmp/newdir"), false);
});

test("reading a missing file raises FileNotFoundError", async () => {
  await assert.rejects(sbx.files.read("/tmp/does/not/exist"), (e) => e instanceof FileNotFoundError);
  await assert.rejects(sbx.files.getInfo("/tmp/does/not/exist"), (e) => e instanceof FileNotFoundError);
});

test("signed upload and download URLs work without any header", async () => {
  const up = await sbx.uploadUrl("/tmp/signed.txt", { useSignatureExpiration: 60_000 });
  const form = new FormData();
  form.append("file", new Blob(["signed upload"]), "signed.txt");
  const r = await fetch(up, { method: "POST", body: form });
  assert.equal(r.status, 200, await r.clone().text());
  const down = await sbx.downloadUrl("/tmp/signed.txt");
  const g = await fetch(down);
  assert.equal(g.status, 200);
  assert.equal(await g.text(), "signed upload");
  const bad = new URL(down);
  bad.searchParams.set("signature", "v1_bogus");
  assert.equal((await fetch(bad)).status, 401);
});

test("watchDir reports creates, writes and removes, recursively", async () => {
  await sbx.files.makeDir("/tmp/watched/sub");
  const events = [];
  const h = await sbx.files.watchDir("/tmp/watched", (e) => events.push(e), { recursive: true });
  try {
    await sbx.files.write("/tmp/watched/new.txt", "x");
    await sbx.commands.run("echo more >> /tmp/watched/new.txt; mkdir /tmp/watched/sub/d2; sleep 0.1; touch /tmp/watched/sub/d2/deep; rm /tmp/watched/new.txt");
    const end = Date.now() + 10000;
    const has = (name, type) => events.some((e) => e.name === name && e.type === type);
    while (!(has("new.txt", "create") && has("new.txt", "write") && has("new.txt", "remove") && has("sub/d2/deep", "create"))) {
      assert.ok(Date.now() < end, JSON.stringify(events));
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await h.stop();
  }
  await assert.rejects(sbx.files.watchDir("/tmp/not-there", () => {}), (e) => e instanceof FileNotFoundError);
});
