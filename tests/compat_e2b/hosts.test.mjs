// Service ports through E2B's host form: with sbxd --service-domain, getHost(port) names
// "<port>-<id>.<domain>:<sbxd port>" and requests with that Host reach the port. E2B's semantics: public
// unless the create said network.allowPublicTraffic: false, then the sandbox's trafficAccessToken is
// needed in `e2b-traffic-access-token`. Sandboxes made with sbx's own API stay behind sbx's token.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { Sandbox } from "e2b";
import { startSbxd, API_KEY } from "./helpers.mjs";

const DOMAIN = "e2b.test";
const PORT = 8000;
let d;
before(async () => {
  d = await startSbxd(["--service-domain", DOMAIN]);
});
after(async () => {
  await d?.stop();
});

// A request to sbxd's listener with Host set (the names do not resolve here: no wildcard DNS).
function get(host, headers = {}, path = "/") {
  return new Promise((ok, fail) => {
    const req = request({ host: "127.0.0.1", port: d.port, path, headers: { Host: host, ...headers } }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => ok({ status: res.statusCode, body }));
    });
    req.on("error", fail);
    req.end();
  });
}

async function serve(sbx) {
  await sbx.files.write("/tmp/www/hello.txt", `hello from ${sbx.sandboxId}`);
  await sbx.commands.run(`cd /tmp/www && exec /usr/bin/python3 -m http.server ${PORT} --bind 127.0.0.1`, { background: true });
  const host = sbx.getHost(PORT);
  for (let i = 0; i < 100; i++) {
    const r = await get(host, { "e2b-traffic-access-token": sbx.trafficAccessToken ?? "" }, "/hello.txt");
    if (r.status === 200) return host;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the service did not come up");
}

test("public by default: getHost reaches the port with no credential", async () => {
  const s = await Sandbox.create({ metadata: { who: "public" } });
  try {
    const host = await serve(s);
    assert.equal(host, `${PORT}-${s.sandboxId}.${DOMAIN}:${d.port}`);
    const r = await get(host, {}, "/hello.txt");
    assert.equal(r.status, 200);
    assert.equal(r.body, `hello from ${s.sandboxId}`);
    const info = await s.getInfo();
    assert.equal(info.sandboxDomain, `${DOMAIN}:${d.port}`);
    assert.equal(info.network.allowPublicTraffic, true);
    assert.deepEqual(info.metadata, { who: "public" }); // sbxd's marker is not shown
    // The E2B marker names the host form only: the path form still needs sbx's token.
    assert.equal((await get(`127.0.0.1:${d.port}`, {}, `/s/${s.sandboxId}/${PORT}/hello.txt`)).status, 401);
  } finally {
    await s.kill();
  }
});

test("allowPublicTraffic: false needs the trafficAccessToken", async () => {
  const s = await Sandbox.create({ network: { allowPublicTraffic: false } });
  const other = await Sandbox.create({ network: { allowPublicTraffic: false } });
  try {
    assert.ok(s.trafficAccessToken);
    const host = await serve(s);
    assert.equal((await get(host, {}, "/hello.txt")).status, 401);
    assert.equal((await get(host, { "e2b-traffic-access-token": "wrong" }, "/hello.txt")).status, 401);
    assert.equal((await get(host, { "e2b-traffic-access-token": other.trafficAccessToken }, "/hello.txt")).status, 401);
    const r = await get(host, { "e2b-traffic-access-token": s.trafficAccessToken }, "/hello.txt");
    assert.equal(r.status, 200);
    assert.equal(r.body, `hello from ${s.sandboxId}`);
    assert.equal((await s.getInfo()).network.allowPublicTraffic, false);
    // A marker copied into metadata (sbx's own PATCH) does not open it: it names one sandbox only.
    const pub = await Sandbox.create();
    const meta = await (await fetch(`${d.url}/v1/sandboxes/${pub.sandboxId}`, { headers: { Authorization: `Bearer ${API_KEY}` } })).json();
    const marker = meta.metadata["e2b:publicTraffic"];
    assert.ok(marker);
    const p = await fetch(`${d.url}/v1/sandboxes/${s.sandboxId}`, {
      method: "PATCH",
      headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify({ metadata: { "e2b:publicTraffic": marker } }),
    });
    assert.equal(p.status, 200);
    assert.equal((await get(host, {}, "/hello.txt")).status, 401);
    await pub.kill();
  } finally {
    await s.kill();
    await other.kill();
  }
});

test("sandboxes made with sbx's own API are never public", async () => {
  const res = await fetch(`${d.url}/v1/sandboxes`, {
    method: "POST",
    headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ metadata: { "e2b:publicTraffic": "forged" } }),
  });
  assert.equal(res.status, 201);
  const id = (await res.json()).id;
  try {
    const s = await Sandbox.connect(id);
    const host = await serve(s); // its trafficAccessToken works (whoever may see it may mint sbx's token too)
    assert.equal((await get(host, {}, "/hello.txt")).status, 401);
    assert.equal((await get(host, { "e2b-traffic-access-token": "forged" }, "/hello.txt")).status, 401);
  } finally {
    await Sandbox.kill(id);
  }
});
