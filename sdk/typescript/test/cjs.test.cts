// The CommonJS build: require("@sbx/sdk") works and is the same API.
import assert = require("node:assert/strict");
import test = require("node:test");

test("require('@sbx/sdk') loads the CommonJS build", () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const sdk = require("@sbx/sdk");
  assert.equal(typeof sdk.SandboxClient, "function");
  assert.equal(typeof sdk.Sandbox.prototype[Symbol.asyncDispose], "function");
  assert.equal(require.resolve("@sbx/sdk").endsWith("/dist/cjs/index.js"), true);
  const e = new sdk.NotFoundError("x", "not_found", 404);
  assert.ok(e instanceof sdk.SandboxError);
  assert.equal(e.name, "NotFoundError");
  assert.ok(new sdk.BusyError("x", "busy", 409) instanceof sdk.ConflictError);
  for (const m of ["checkpoint", "listCheckpoints", "getCheckpoint", "deleteCheckpoint", "restore", "fork"])
    assert.equal(typeof sdk.Sandbox.prototype[m], "function", m);
  for (const m of ["createVolume", "listVolumes", "getVolume", "deleteVolume"])
    assert.equal(typeof sdk.SandboxClient.prototype[m], "function", m);
  assert.equal(typeof Object.getOwnPropertyDescriptor(sdk.Sandbox.prototype, "volumes")?.get, "function");
  const c = new sdk.SandboxClient({ url: "http://127.0.0.1:1/" });
  assert.equal(c.url, "http://127.0.0.1:1");
});
