/** Service URLs (sb.service, its fetch) and listening ports (sb.ports). */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { AuthenticationError, InvalidArgumentError, NotFoundError, SandboxClient } from "@sbx/sdk";
import type { CommandHandle, Sandbox } from "@sbx/sdk";
import { Daemon, waitFor } from "./helpers.js";

let d: Daemon;
let client: SandboxClient;
let sb: Sandbox;
let server: CommandHandle;

before(async () => {
  d = await new Daemon().start();
  client = new SandboxClient({ url: d.url });
  sb = await client.createSandbox();
  await sb.write("/root/www/hello.txt", "hello from the sandbox\n");
  server = await sb.run(["python3", "-m", "http.server", "8000", "--bind", "127.0.0.1"], {
    wait: false,
    cwd: "/root/www",
    idleTimeout: -1,
  });
});

after(async () => {
  await server?.kill().catch(() => {});
  await sb?.delete();
  assert.equal(await d.stop(), 0);
});

test("ports() lists what listens inside", async () => {
  const ports = await waitFor(async () => {
    const p = await sb.ports();
    return p.some((x) => x.port === 8000) ? p : null;
  }, 15_000, "port 8000 to listen");
  assert.deepEqual(ports!.find((x) => x.port === 8000), { port: 8000, address: "127.0.0.1" });
});

test("service(): URL, token, expiry; fetch sends the token; no token is 401", async () => {
  await waitFor(async () => (await sb.ports()).some((x) => x.port === 8000), 15_000, "port 8000");
  const svc = await sb.service(8000, { expiresIn: 120 });
  assert.equal(svc.port, 8000);
  assert.equal(svc.sandboxId, sb.id);
  assert.equal(svc.url, `${d.url}/s/${sb.id}/8000/`);
  assert.equal(svc.pathUrl, svc.url);
  assert.match(svc.token, /^\d+\.[A-Za-z0-9_-]+$/);
  const left = Date.parse(svc.expiresAt) - Date.now();
  assert.ok(left > 100_000 && left <= 121_000, `expires in ${left} ms`);
  assert.ok(svc.browserUrl.startsWith(svc.url + "?sbx_token="));

  const r = await svc.fetch("/hello.txt");
  assert.equal(r.status, 200);
  assert.equal(await r.text(), "hello from the sandbox\n");
  const r2 = await svc.fetch("hello.txt", { method: "HEAD", headers: { "X-Other": "1" } });
  assert.equal(r2.status, 200);
  const missing = await svc.fetch("/nope");
  assert.equal(missing.status, 404);
  await missing.text();

  const bare = await fetch(svc.url + "hello.txt");
  assert.equal(bare.status, 401);
  await bare.text();
  const other = await (await sb.service(8001)).fetch("/");
  assert.equal(other.status, 502, "nothing listens on 8001");
  await other.text();
});

test("service(): bad arguments and unknown sandboxes are typed errors", async () => {
  await assert.rejects(sb.service(0), InvalidArgumentError);
  await assert.rejects(sb.service(8000, { expiresIn: 0 }), InvalidArgumentError);
  const ghost = await client.createSandbox();
  await ghost.delete();
  await assert.rejects(ghost.service(8000), NotFoundError);
  void AuthenticationError;
});
