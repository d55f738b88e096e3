/**
 * Dropped connections: a TCP proxy between the SDK and sbxd cuts the stream mid-command; the handle
 * re-attaches from its offsets (every byte exactly once), and a lost answer to a command start is
 * retried with the same id (never a duplicate command).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ConnectionError, SandboxClient } from "@sbx/sdk";
import type { Sandbox, StreamTransport } from "@sbx/sdk";
import { Daemon, Proxy, sleep, waitFor } from "./helpers.js";

let d: Daemon;
let proxy: Proxy;
let direct: Sandbox;

// 60 numbered lines on stdout and 20 on stderr over ~1.5 s.
const NOISY = "for i in $(seq 1 60); do echo line$i; [ $((i % 3)) = 0 ] && echo err$i >&2; sleep 0.025; done";
const expectedOut = Array.from({ length: 60 }, (_, i) => `line${i + 1}\n`).join("");
const expectedErr = Array.from({ length: 20 }, (_, i) => `err${3 * (i + 1)}\n`).join("");

before(async () => {
  d = await new Daemon().start();
  proxy = await new Proxy(d.port).start();
  direct = await new SandboxClient({ url: d.url }).createSandbox({ metadata: { suite: "reconnect" } });
});

after(async () => {
  await proxy?.stop();
  await direct?.delete();
  assert.equal(await d.stop(), 0, "sbxd exits 0 on SIGTERM");
});

for (const transport of ["websocket", "sse"] as StreamTransport[]) {
  describe(`over ${transport}`, () => {
    let sb: Sandbox;
    before(async () => {
      sb = await new SandboxClient({ url: proxy.url, streamTransport: transport }).getSandbox(direct.id);
    });

    test("handle: connection cut mid-stream, iteration continues with no byte lost or repeated", async () => {
      const h = await sb.run(NOISY, { wait: false });
      let out = "";
      let err = "";
      let cuts = 0;
      for await (const c of h) {
        if (c.stream === "stdout") out += c.data;
        else err += c.data;
        if ((out.includes("line10\n") && cuts === 0) || (out.includes("line40\n") && cuts === 1)) {
          proxy.dropAll();
          cuts++;
        }
      }
      assert.equal(cuts, 2);
      assert.ok(h.reconnects >= 2, `reconnects: ${h.reconnects}`);
      assert.equal(out, expectedOut);
      assert.equal(err, expectedErr);
      const r = await h.result;
      assert.equal(r.stdout, expectedOut);
      assert.equal(r.stderr, expectedErr);
      assert.equal(r.exitCode, 0);
    });

    test("run with callbacks: cut mid-stream, and the daemon unreachable for a while", async () => {
      let out = "";
      let paused = false;
      const r = await sb.run(NOISY, {
        onStdout: (data) => {
          out += data;
          if (!paused && out.includes("line5\n")) {
            paused = true;
            // Refuse connections for 400 ms: the SDK retries with backoff until it gets through.
            void proxy.pause().then(() => sleep(400)).then(() => proxy.unpause());
          }
        },
      });
      assert.ok(paused);
      assert.equal(out, expectedOut);
      assert.equal(r.stdout, expectedOut);
      assert.equal(r.stderr, expectedErr);
    });
  });
}

test("a lost answer to the command start is retried with the same id: the command runs once", async () => {
  const sb = await new SandboxClient({ url: proxy.url }).getSandbox(direct.id);
  const before = (await direct.listCommands()).length;
  proxy.dropNextResponse();
  const r = await sb.run("echo ran >> /root/once.txt; echo ok");
  assert.equal(r.stdout, "ok\n");
  assert.equal(await direct.readText("/root/once.txt"), "ran\n");
  assert.equal((await direct.listCommands()).length, before + 1);
});

test("a lost answer to wait: false start, too", async () => {
  const sb = await new SandboxClient({ url: proxy.url }).getSandbox(direct.id);
  proxy.dropNextResponse();
  const h = await sb.run("echo x >> /root/once2.txt; cat", { wait: false, id: "ts-lost-answer" });
  await h.closeStdin();
  await h.result;
  assert.equal(await direct.readText("/root/once2.txt"), "x\n");
  const cmds = (await direct.listCommands()).filter((c) => c.id === "ts-lost-answer");
  assert.equal(cmds.length, 1);
});

test("the daemon gone for longer than reconnectTimeout: result rejects with ConnectionError", async () => {
  const sb = await new SandboxClient({ url: proxy.url, reconnectTimeout: 300 }).getSandbox(direct.id);
  const h = await sb.run("echo start; sleep 5; echo late", { wait: false, id: "ts-gone" });
  await waitFor(() => h.offsets.stdout > 0, 10_000, "first output");
  await proxy.pause();
  try {
    await assert.rejects(h.result, ConnectionError);
    const iter = h[Symbol.asyncIterator]();
    assert.equal((await iter.next()).value.data, "start\n"); // what was received stays readable
    await assert.rejects(iter.next(), ConnectionError);
  } finally {
    await proxy.unpause();
  }
  // The command itself is unaffected: reconnect and read it to the end.
  const h2 = await direct.reconnect("ts-gone");
  await h2.kill();
  assert.equal((await h2.result).stdout, "start\n");
});
