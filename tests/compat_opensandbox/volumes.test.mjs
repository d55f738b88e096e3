// Volumes through the unmodified OpenSandbox SDK: a `pvc` is an sbx named volume of the caller's (made
// when missing, kept when the sandbox goes, shared between sandboxes, read-only on request); host paths,
// ossfs, subPath and deleteOnSandboxTermination are refused with their error codes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Sandbox } from "@alibaba-group/opensandbox";
import { startSbxd, API_KEY } from "./helpers.mjs";

let sbxd;
before(async () => {
  sbxd = await startSbxd();
});
after(async () => {
  await sbxd.stop();
});

const native = (path, init = {}) =>
  fetch(`${sbxd.url}${path}`, { ...init, headers: { Authorization: `Bearer ${API_KEY}`, ...(init.headers ?? {}) } });

test("a pvc is an sbx named volume: made when missing, kept, shared, read-only on request", async () => {
  const a = await Sandbox.create({
    image: "host",
    volumes: [{ name: "data", pvc: { claimName: "osb-shared", storage: "64Mi" }, mountPath: "/data" }],
  });
  try {
    await a.files.writeFiles([{ path: "/data/kept.txt", data: "from a\n" }]);
    const df = await a.commands.run("df -m /data | tail -1 | awk '{print $2}'");
    const size = Number(df.logs.stdout[0].text);
    assert.ok(size > 40 && size <= 64, `a 64Mi volume: ${size} MiB`);
  } finally {
    await a.kill();
  }
  // The volume outlives the sandbox and is listed by the native API with the size asked for.
  const vol = await (await native("/v1/volumes/osb-shared")).json();
  assert.equal(vol.name, "osb-shared");
  assert.equal(vol.size_mb, 64);

  const b = await Sandbox.create({
    image: "host",
    volumes: [{ name: "ro", pvc: { claimName: "osb-shared", createIfNotExists: false }, mountPath: "/mnt/ro", readOnly: true }],
  });
  try {
    assert.equal(await b.files.readFile("/mnt/ro/kept.txt"), "from a\n");
    const w = await b.commands.run("(echo x > /mnt/ro/new.txt) 2>&1; echo rc=$?");
    const out = w.logs.stdout.map((m) => m.text).join("\n");
    assert.match(out, /Read-only file system/);
    assert.match(out, /rc=1/);
    // In use: the native API refuses to delete it.
    assert.equal((await native("/v1/volumes/osb-shared", { method: "DELETE" })).status, 409);
  } finally {
    await b.kill();
  }
  assert.equal((await native("/v1/volumes/osb-shared", { method: "DELETE" })).status, 204);
});

test("volumes sbx does not mount are refused before anything is made", async () => {
  const base = `${sbxd.url}/opensandbox/v1`;
  const h = { "OPEN-SANDBOX-API-KEY": API_KEY, "Content-Type": "application/json" };
  const cases = [
    [{ name: "h", host: { path: "/etc" }, mountPath: "/m" }, 400, "VOLUME::HOST_PATH_NOT_ALLOWED"],
    [{ name: "o", ossfs: { bucket: "b", endpoint: "e" }, mountPath: "/m" }, 400, "SANDBOX::API_NOT_SUPPORTED"],
    [{ name: "s", pvc: { claimName: "osb-sub" }, mountPath: "/m", subPath: "x" }, 400, "SANDBOX::API_NOT_SUPPORTED"],
    [{ name: "d", pvc: { claimName: "osb-del", deleteOnSandboxTermination: true }, mountPath: "/m" }, 400, "SANDBOX::API_NOT_SUPPORTED"],
    [{ name: "Bad_Name", pvc: { claimName: "osb-x" }, mountPath: "/m" }, 400, "SANDBOX::INVALID_PARAMETER"],
    [{ name: "r", pvc: { claimName: "osb-x" }, mountPath: "rel" }, 400, "SANDBOX::INVALID_PARAMETER"],
    [{ name: "t", pvc: { claimName: "osb-x" }, host: { path: "/" }, mountPath: "/m" }, 400, "SANDBOX::INVALID_PARAMETER"],
    [{ name: "z", pvc: { claimName: "osb-x", storage: "1Ki" }, mountPath: "/m" }, 400, "SANDBOX::INVALID_PARAMETER"],
    [{ name: "p", pvc: { claimName: "osb-x" }, mountPath: "/proc/x" }, 400, "SANDBOX::INVALID_PARAMETER"],
    [{ name: "n", pvc: { claimName: "osb-missing", createIfNotExists: false }, mountPath: "/m" }, 404, "SANDBOX::NOT_FOUND"],
  ];
  for (const [vol, status, code] of cases) {
    const res = await fetch(`${base}/sandboxes`, {
      method: "POST",
      headers: h,
      body: JSON.stringify({ image: { uri: "host" }, entrypoint: ["sleep", "inf"], volumes: [vol] }),
    });
    const j = await res.json();
    assert.equal(res.status, status, JSON.stringify([vol, j]));
    assert.equal(j.code, code, JSON.stringify([vol, j]));
    assert.ok(j.message.length > 0);
  }
  // Nothing was made: no sandbox and no volume (the /proc case is checked before any volume is created).
  const sandboxes = await (await native("/v1/sandboxes")).json();
  assert.equal(sandboxes.sandboxes.length, 0, JSON.stringify(sandboxes));
  const vols = await (await native("/v1/volumes")).json();
  assert.deepEqual(vols.volumes.map((v) => v.name).filter((n) => n !== "osb-shared"), []);
  // The SDK surfaces the refusal.
  await assert.rejects(
    Sandbox.create({ image: "host", volumes: [{ name: "h", host: { path: "/etc" }, mountPath: "/m" }] }),
    (e) => e.statusCode === 400 && e.error.code === "VOLUME::HOST_PATH_NOT_ALLOWED",
  );
});
