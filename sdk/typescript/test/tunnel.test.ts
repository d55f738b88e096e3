/** TCP tunnels: sb.tunnel(port) → a local net.Server carried over the WebSocket yamux endpoint. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { after, before, test } from "node:test";
import { NotFoundError, SandboxClient } from "@sbx/sdk";
import type { CommandHandle, Sandbox } from "@sbx/sdk";
import { Daemon, waitFor } from "./helpers.js";

const ECHO = `
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9000))
s.listen(64)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

let d: Daemon;
let client: SandboxClient;
let sb: Sandbox;
const servers: CommandHandle[] = [];

before(async () => {
  d = await new Daemon().start();
  client = new SandboxClient({ url: d.url });
  sb = await client.createSandbox();
  await sb.write("/root/www/hello.txt", "hello through the tunnel\n");
  servers.push(
    await sb.run(["python3", "-m", "http.server", "8000", "--bind", "127.0.0.1"], { wait: false, cwd: "/root/www", idleTimeout: -1 }),
    await sb.run(["python3", "-c", ECHO], { wait: false, idleTimeout: -1 }),
  );
  await waitFor(async () => {
    const p = (await sb.ports()).map((x) => x.port);
    return p.includes(8000) && p.includes(9000);
  }, 15_000, "ports 8000 and 9000");
});

after(async () => {
  for (const s of servers) await s.kill().catch(() => {});
  await sb?.delete();
  assert.equal(await d.stop(), 0);
});

/** Sends `data` through a connection to 127.0.0.1:port, half-closes, answers everything read until the end. */
function roundTrip(port: number, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const c = net.connect(port, "127.0.0.1", () => c.end(data));
    c.on("data", (b) => parts.push(b));
    c.on("end", () => resolve(Buffer.concat(parts)));
    c.on("error", reject);
  });
}

test("HTTP through a tunnel, several requests at once; await using closes it", async () => {
  let port = 0;
  {
    await using t = await sb.tunnel(8000);
    port = t.localPort;
    assert.ok(port > 0);
    assert.equal(t.remotePort, 8000);
    const answers = await Promise.all(
      [1, 2, 3, 4].map(async () => {
        const r = await fetch(`http://127.0.0.1:${port}/hello.txt`);
        return [r.status, await r.text()];
      }),
    );
    for (const a of answers) assert.deepEqual(a, [200, "hello through the tunnel\n"]);
  }
  await assert.rejects(fetch(`http://127.0.0.1:${port}/hello.txt`), "closed at scope end");
});

test("a few MiB both ways, half-close, with flow control; a chosen local port", async () => {
  const want = await new Promise<number>((res) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
  const t = await sb.tunnel(9000, { localPort: want });
  try {
    assert.equal(t.localPort, want);
    const big = randomBytes(3 * 1024 * 1024 + 17);
    const [a, b] = await Promise.all([roundTrip(want, big), roundTrip(want, Buffer.from("small"))]);
    assert.equal(a.length, big.length);
    assert.ok(a.equals(big), "echoed bytes are the same");
    assert.equal(b.toString(), "small");
  } finally {
    await t.close();
  }
});

test("nothing listening inside: the local connection ends; unknown sandbox: NotFoundError", async () => {
  await using t = await sb.tunnel(8002);
  const got = await new Promise<string>((resolve) => {
    const c = net.connect(t.localPort, "127.0.0.1");
    const parts: Buffer[] = [];
    c.on("data", (x) => parts.push(x));
    c.on("close", () => resolve(Buffer.concat(parts).toString()));
    c.on("error", () => {});
  });
  assert.equal(got, "");
  const ghost = await client.createSandbox();
  await ghost.delete();
  await assert.rejects(ghost.tunnel(8000), NotFoundError);
});
