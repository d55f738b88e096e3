// /upload, /download (GET, HEAD, Range), /glob, /grep and download links through the unmodified SDK.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { SandboxClient, LangSmithResourceNotFoundError } from "langsmith/sandbox";
import { startSbxd } from "./helpers.mjs";

let sbxd, client, sb;
before(async () => {
  sbxd = await startSbxd();
  client = new SandboxClient();
  sb = await client.createSandbox();
});
after(async () => {
  await sb?.delete();
  await sbxd?.stop();
});

test("write and read text and binary, parents created, relative paths", async () => {
  await sb.write("/srv/app/a b.txt", "hello");
  assert.equal(new TextDecoder().decode(await sb.read("/srv/app/a b.txt")), "hello");
  const bin = randomBytes(100000);
  await sb.write("/tmp/bin.dat", bin);
  assert.deepEqual(Buffer.from(await sb.read("/tmp/bin.dat")), bin);
  await sb.write("rel.txt", "relative");
  const r = await sb.run("cat /root/rel.txt");
  assert.equal(r.stdout, "relative");
});

test("large file round trip", async () => {
  const big = randomBytes(24 * 1024 * 1024);
  await sb.write("/tmp/big.bin", big);
  const back = Buffer.from(await sb.read("/tmp/big.bin"));
  assert.equal(back.length, big.length);
  assert.ok(back.equals(big));
});

test("missing file raises ResourceNotFound", async () => {
  await assert.rejects(sb.read("/nope/missing"), LangSmithResourceNotFoundError);
  await assert.rejects(sb.stat("/nope/missing"), LangSmithResourceNotFoundError);
});

test("stat and readRange", async () => {
  await sb.write("/tmp/range.txt", "0123456789");
  const st = await sb.stat("/tmp/range.txt");
  assert.equal(st.size_bytes ?? st.sizeBytes, 10);
  assert.ok(st.etag);
  const c = await sb.readRange("/tmp/range.txt", { start: 2, end: 5 });
  assert.equal(new TextDecoder().decode(c.content ?? c.data), "2345");
  const tail = await sb.readRange("/tmp/range.txt", { start: 8 });
  assert.equal(new TextDecoder().decode(tail.content ?? tail.data), "89");
});

test("readRange with ifRange: a current ETag gives the range, a stale one the whole file", async () => {
  await sb.write("/tmp/ifrange.txt", "0123456789");
  const { etag } = await sb.stat("/tmp/ifrange.txt");
  const part = await sb.readRange("/tmp/ifrange.txt", { start: 2, end: 4, ifRange: etag });
  assert.equal(part.partial, true);
  assert.equal(part.start, 2);
  assert.equal(new TextDecoder().decode(part.content), "234");
  await sb.write("/tmp/ifrange.txt", "abcdefghijklmnop"); // changed: the client's ETag is stale
  const whole = await sb.readRange("/tmp/ifrange.txt", { start: 2, end: 4, ifRange: etag });
  assert.equal(whole.partial, false);
  assert.equal(whole.start, 0);
  assert.equal(new TextDecoder().decode(whole.content), "abcdefghijklmnop");
  assert.notEqual(whole.etag, etag);
  const same = await sb.readRange("/tmp/ifrange.txt", { start: 0, end: 0, ifNoneMatch: whole.etag });
  assert.equal(same.unchanged, true);
});

test("glob, ls and grep", async () => {
  await sb.write("/proj/src/a.py", "import os\nprint('needle')\n");
  await sb.write("/proj/src/b.txt", "no match\nneedle here\n");
  await sb.write("/proj/c.py", "x = 1\n");
  const g = await sb.glob("**/*.py", "/proj");
  assert.deepEqual(g.matches.map((m) => m.path).sort(), ["/proj/c.py", "/proj/src/a.py"]);
  assert.equal(g.truncated, false);
  const ls = await sb.ls("/proj");
  assert.deepEqual(ls.matches.map((m) => [m.path, m.is_dir]).sort(), [["/proj/c.py", false], ["/proj/src", true]]);
  const gr = await sb.grep("needle", "/proj");
  assert.deepEqual(gr.matches.map((m) => [m.path, m.line]).sort(), [["/proj/src/a.py", 2], ["/proj/src/b.txt", 2]]);
  const only = await sb.grep("needle", "/proj", { glob: "*.py" });
  assert.deepEqual(only.matches.map((m) => m.text), ["print('needle')"]);
});

test("download links need no credentials", async () => {
  await sb.write("/tmp/link.txt", "linked");
  const link = await sb.generateDownloadURL("/tmp/link.txt", { expiresInSeconds: 60 });
  const r = await fetch(link.download_url);
  assert.equal(r.status, 200);
  assert.equal(await r.text(), "linked");
  const forged = await fetch(link.download_url.replace("link.txt", "other.txt"));
  assert.equal(forged.status, 403);
});
