// execd files through the unmodified OpenSandbox SDK: multipart upload with metadata (small, > 1 MiB and
// streamed), download with Range, info, search, replace, permissions (decimal-written octal modes, owner
// names), move, delete, directories.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Sandbox } from "@alibaba-group/opensandbox";
import { startSbxd, API_KEY } from "./helpers.mjs";

let sbxd, sbx;
before(async () => {
  sbxd = await startSbxd();
  sbx = await Sandbox.create({ image: "host" });
});
after(async () => {
  await sbx.kill();
  await sbx.close();
  await sbxd.stop();
});

test("write and read: small, large (> 1 MiB), streamed, ranges", async () => {
  await sbx.files.writeFiles([
    { path: "/tmp/a/hello.txt", data: "hello world\n", mode: 600 },
    { path: "/tmp/a/b.bin", data: new Uint8Array([0, 1, 2, 255]) },
  ]);
  assert.equal(await sbx.files.readFile("/tmp/a/hello.txt"), "hello world\n");
  assert.deepEqual([...(await sbx.files.readBytes("/tmp/a/b.bin"))], [0, 1, 2, 255]);
  assert.equal(await sbx.files.readFile("/tmp/a/hello.txt", { range: "bytes=6-10" }), "world");

  const big = randomBytes(3 * 1024 * 1024 + 17);
  await sbx.files.writeFiles([{ path: "/root/big.bin", data: big }]);
  const back = await sbx.files.readBytes("/root/big.bin");
  assert.equal(Buffer.compare(Buffer.from(back), big), 0);
  const mid = await sbx.files.readBytes("/root/big.bin", { range: "bytes=1048576-1048585" });
  assert.equal(Buffer.compare(Buffer.from(mid), big.subarray(1048576, 1048586)), 0);

  // A streamed upload (the SDK builds the multipart body itself, chunked).
  async function* chunks() {
    for (let i = 0; i < 40; i++) yield new Uint8Array(64 * 1024).fill(i);
  }
  await sbx.files.writeFiles([{ path: "/tmp/streamed.bin", data: chunks() }]);
  const s = await sbx.files.readBytes("/tmp/streamed.bin");
  assert.equal(s.length, 40 * 64 * 1024);
  assert.equal(s[39 * 64 * 1024], 39);

  const r = await sbx.commands.run("cat /tmp/a/hello.txt; stat -c %a /tmp/a/hello.txt; wc -c < /root/big.bin");
  assert.deepEqual(r.logs.stdout.map((m) => m.text), ["hello world", "600", String(big.length)]);
  await assert.rejects(sbx.files.readFile("/tmp/nope"), (e) => e.statusCode === 404);
  await assert.rejects(sbx.files.readFile("/tmp/a/hello.txt", { range: "bytes=100-200" }), (e) => e.statusCode === 416);
});

test("info, permissions, owners, directories, list, search", async () => {
  await sbx.files.createDirectories([{ path: "/tmp/d/e/f", mode: 750 }]);
  await sbx.files.writeFiles([
    { path: "/tmp/d/one.py", data: "print(1)\n" },
    { path: "/tmp/d/e/two.py", data: "print(2)\n" },
    { path: "/tmp/d/e/f/three.txt", data: "3\n" },
  ]);
  const info = await sbx.files.getFileInfo(["/tmp/d/one.py", "/tmp/d/e/f"]);
  assert.equal(info["/tmp/d/one.py"].type, "file");
  assert.equal(info["/tmp/d/one.py"].size, 9);
  assert.equal(info["/tmp/d/one.py"].mode, 644);
  assert.equal(info["/tmp/d/one.py"].owner, "root");
  assert.equal(info["/tmp/d/one.py"].group, "root");
  assert.ok(info["/tmp/d/one.py"].modifiedAt instanceof Date);
  assert.equal(info["/tmp/d/e/f"].type, "directory");
  assert.equal(info["/tmp/d/e/f"].mode, 750);
  await assert.rejects(sbx.files.getFileInfo(["/tmp/d/missing"]), (e) => e.statusCode === 404);

  await sbx.files.setPermissions([{ path: "/tmp/d/one.py", mode: 755, owner: "nobody", group: "nogroup" }]);
  const after = (await sbx.files.getFileInfo(["/tmp/d/one.py"]))["/tmp/d/one.py"];
  assert.equal(after.mode, 755);
  assert.equal(after.owner, "nobody");
  assert.equal(after.group, "nogroup");
  const ls = await sbx.commands.run("stat -c '%a %U %G' /tmp/d/one.py");
  assert.deepEqual(ls.logs.stdout.map((m) => m.text), ["755 nobody nogroup"]);
  await assert.rejects(sbx.files.setPermissions([{ path: "/tmp/d/one.py", mode: 789 }]), (e) => e.statusCode === 400);
  await assert.rejects(sbx.files.setPermissions([{ path: "/tmp/d/one.py", mode: 644, owner: "no-such-user" }]), (e) => e.statusCode === 400);

  const top = await sbx.files.listDirectory({ path: "/tmp/d" });
  assert.deepEqual(top.map((f) => f.path), ["/tmp/d/e", "/tmp/d/one.py"]);
  const deep = await sbx.files.listDirectory({ path: "/tmp/d", depth: 3 });
  assert.equal(deep.length, 5);

  const found = await sbx.files.search({ path: "/tmp/d", pattern: "*.py" });
  assert.deepEqual(found.map((f) => f.path).sort(), ["/tmp/d/e/two.py", "/tmp/d/one.py"]);
  const every = await sbx.files.search({ path: "/tmp/d" });
  assert.equal(every.length, 3);
});

test("replace, move, delete", async () => {
  await sbx.files.writeFiles([{ path: "/tmp/r/x.txt", data: "a-b-a-b-a\n", mode: 640 }]);
  await sbx.files.replaceContents([{ path: "/tmp/r/x.txt", oldContent: "a", newContent: "AA" }]);
  assert.equal(await sbx.files.readFile("/tmp/r/x.txt"), "AA-b-AA-b-AA\n");
  const detail = await sbx.files.replaceContentsDetailed([{ path: "/tmp/r/x.txt", oldContent: "b", newContent: "" }]);
  assert.deepEqual(detail, [{ path: "/tmp/r/x.txt", replacedCount: 2 }]);
  assert.equal(await sbx.files.readFile("/tmp/r/x.txt"), "AA--AA--AA\n");
  assert.equal((await sbx.files.getFileInfo(["/tmp/r/x.txt"]))["/tmp/r/x.txt"].mode, 640);

  await sbx.files.moveFiles([{ src: "/tmp/r/x.txt", dest: "/tmp/r2/y.txt" }]);
  assert.equal(await sbx.files.readFile("/tmp/r2/y.txt"), "AA--AA--AA\n");
  await assert.rejects(sbx.files.readFile("/tmp/r/x.txt"), (e) => e.statusCode === 404);
  await assert.rejects(sbx.files.moveFiles([{ src: "/tmp/r/x.txt", dest: "/tmp/z" }]), (e) => e.statusCode === 404);

  await sbx.files.deleteFiles(["/tmp/r2/y.txt", "/tmp/r2/never-existed"]);
  await assert.rejects(sbx.files.readFile("/tmp/r2/y.txt"), (e) => e.statusCode === 404);
  await assert.rejects(sbx.files.deleteFiles(["/tmp/r2"]), (e) => e.statusCode === 400);
  await sbx.files.deleteDirectories(["/tmp/r2", "/tmp/d"]);
  await assert.rejects(sbx.files.getFileInfo(["/tmp/r2"]), (e) => e.statusCode === 404);
});

test("paths stay inside the sandbox; malformed uploads are typed errors", async () => {
  await sbx.commands.run("ln -sf / /tmp/rootlink");
  const info = await sbx.files.getFileInfo(["/tmp/rootlink"]);
  assert.equal(info["/tmp/rootlink"].type, "symlink");
  await assert.rejects(sbx.files.setPermissions([{ path: "/tmp/rootlink", mode: 777 }]), (e) => e.statusCode === 400);
  await assert.rejects(sbx.files.readFile("/../../etc/shadow"), (e) => e.statusCode === 403 || e.statusCode === 404);
  const ep = await sbx.getEndpoint(44772);
  const post = (ct, body) =>
    fetch(`http://${ep.endpoint}/files/upload`, {
      method: "POST",
      headers: { "OPEN-SANDBOX-API-KEY": API_KEY, "content-type": ct },
      body,
    });
  let res = await post("text/plain", "x");
  assert.equal(res.status, 400);
  assert.equal((await res.json()).code, "INVALID_FILE");
  res = await post("multipart/form-data; boundary=XX", '--XX\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\ndata\r\n--XX--\r\n');
  assert.equal(res.status, 400);
  assert.equal((await res.json()).code, "INVALID_FILE_METADATA");
  res = await post("multipart/form-data; boundary=XX", '--XX\r\nContent-Disposition: form-data; name="metadata"; filename="metadata"\r\n\r\n{"path":"/tmp/m.txt"}\r\n--XX\r\nContent-Disposition: form-data; name="file"; filename="m.txt"\r\n\r\nmanual\r\n--XX--\r\n');
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-length"), "0");
  assert.equal(await sbx.files.readFile("/tmp/m.txt"), "manual");
});
