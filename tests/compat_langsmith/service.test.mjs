// Service URLs through the unmodified SDK: client.serviceUrl() mints sbx's own signed, expiring URL; the
// SDK's fetch() sends the token as X-Langsmith-Sandbox-Service-Token and sbxd proxies into the sandbox.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { SandboxClient, LangSmithValidationError } from "langsmith/sandbox";
import { startSbxd } from "./helpers.mjs";

let sbxd, client, sb;
before(async () => {
  sbxd = await startSbxd();
  client = new SandboxClient();
  sb = await client.createSandbox();
  await sb.run("mkdir -p /tmp/www && echo hello-from-the-box > /tmp/www/index.html");
  await sb.run("cd /tmp/www && exec python3 -m http.server 8000 --bind 127.0.0.1", { wait: false });
  // Up once it answers from inside.
  for (let i = 0; ; i++) {
    const r = await sb.run("python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/')\"");
    if (r.exit_code === 0) break;
    if (i > 100) throw new Error("the http server did not come up");
    await new Promise((ok) => setTimeout(ok, 100));
  }
});
after(async () => {
  await sb?.delete();
  await sbxd?.stop();
});

test("serviceUrl: the SDK's fetch reaches the port inside with its token", async () => {
  const su = await client.serviceUrl(sb.name, { port: 8000, expiresInSeconds: 120 });
  const base = await su.serviceUrl();
  assert.ok(!base.endsWith("/"), base);
  assert.ok(await su.token());
  const expires = Date.parse(await su.expiresAt());
  assert.ok(expires > Date.now() + 100_000 && expires < Date.now() + 130_000, await su.expiresAt());
  const r = await su.fetch("/index.html");
  assert.equal(r.status, 200);
  assert.equal(await r.text(), "hello-from-the-box\n");
  // The browser URL carries the token as a query parameter that becomes a cookie (sbx answers with a
  // redirect to the same URL without it, as LangSmith's does).
  const b = await fetch(await su.browserUrl(), { redirect: "manual" });
  assert.ok([200, 302].includes(b.status), String(b.status));
  assert.match(b.headers.get("set-cookie") ?? "", /sbx_service_token=/);
});

test("without the token, or with another port's, nothing is proxied", async () => {
  const su = await client.serviceUrl(sb.name, { port: 8000 });
  const base = await su.serviceUrl();
  assert.equal((await fetch(`${base}/index.html`)).status, 401);
  const other = await client.serviceUrl(sb.name, { port: 8001 });
  const r = await fetch(`${base}/index.html`, {
    headers: { "X-Langsmith-Sandbox-Service-Token": await other.token() },
  });
  assert.equal(r.status, 401);
});

test("bad requests are validation errors", async () => {
  await assert.rejects(client.serviceUrl(sb.name, { port: 70000 }), LangSmithValidationError);
  await assert.rejects(client.serviceUrl(sb.name, { port: 8000, access: "workspace" }), LangSmithValidationError);
});
