/** Terminals: run(cmd, {pty: true}), resize over WebSocket and HTTP, shell(). */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ConflictError, InvalidArgumentError, SandboxClient } from "@sbx/sdk";
import type { Sandbox, StreamTransport } from "@sbx/sdk";
import { Daemon, sleep } from "./helpers.js";

let d: Daemon;
let sbId: string;
let root: Sandbox;

before(async () => {
  d = await new Daemon().start();
  root = await new SandboxClient({ url: d.url }).createSandbox();
  sbId = root.id;
});

after(async () => {
  await root?.delete();
  assert.equal(await d.stop(), 0);
});

for (const transport of ["websocket", "sse"] as StreamTransport[]) {
  describe(`pty over ${transport}`, () => {
    let sb: Sandbox;
    before(async () => {
      sb = await new SandboxClient({ url: d.url, streamTransport: transport }).getSandbox(sbId);
    });

    test("a terminal: tty, size, TERM, \\r\\n; wait: true", async () => {
      const r = await sb.run("test -t 0 && echo TTY; stty size; echo $TERM; echo err >&2", {
        pty: true,
        cols: 100,
        rows: 30,
      });
      assert.equal(r.exitCode, 0);
      assert.equal(r.stdout, "TTY\r\n30 100\r\nxterm-256color\r\nerr\r\n");
      assert.equal(r.stderr, "");
      assert.equal(r.info.pty, true);
    });

    test("resize(cols, rows) reaches the program", async () => {
      const h = await sb.run('while read l; do [ "$l" = q ] && exit 0; stty size; done', {
        pty: true,
        cols: 80,
        rows: 24,
        wait: false,
      });
      assert.equal(h.info.pty, true);
      let out = "";
      const reader = (async () => {
        for await (const c of h) out += c.data;
      })();
      await h.sendInput("\n");
      for (let i = 0; !out.includes("24 80") && i < 200; i++) await sleep(10);
      assert.match(out, /24 80/);
      // Over the output WebSocket when that is the transport, else POST .../resize.
      const realFetch = globalThis.fetch;
      const resizePosts: string[] = [];
      globalThis.fetch = ((input: string | URL | Request, init?: RequestInit) => {
        if (String(input instanceof Request ? input.url : input).includes("/resize")) resizePosts.push(String(input));
        return realFetch(input, init);
      }) as typeof fetch;
      try {
        await h.resize(132, 43);
      } finally {
        globalThis.fetch = realFetch;
      }
      assert.equal(resizePosts.length, transport === "websocket" ? 0 : 1);
      for (let i = 0; !out.includes("43 132") && i < 100; i++) {
        await h.sendInput("\n");
        await sleep(30);
      }
      assert.match(out, /43 132/);
      await assert.rejects(h.resize(0, 10), InvalidArgumentError);
      await assert.rejects(h.resize(80, 1001), InvalidArgumentError);
      await h.sendInput("q\n");
      const r = await h.result;
      await reader;
      assert.equal(r.exitCode, 0);
      await h.resize(90, 20); // exited: nothing happens
    });

    test("resize of a command without a pty is a ConflictError", async () => {
      const h = await sb.run("read x", { wait: false });
      await assert.rejects(h.resize(100, 40), ConflictError);
      await h.kill();
      await h.result;
    });

    test("shell(): type commands, ^C, exit", async () => {
      const h = await sb.shell({ cols: 90, rows: 20 });
      await h.sendInput("stty size; echo $((6 * 7))\n");
      await h.sendInput("sleep 30\n");
      await sleep(200);
      await h.sendInput("\x03"); // ^C ends the sleep, not the shell
      await h.sendInput("echo after-int\nexit 5\n");
      const r = await h.result;
      assert.equal(r.exitCode, 5);
      assert.match(r.stdout, /20 90/);
      assert.match(r.stdout, /\r\n42\r\n/);
      assert.match(r.stdout, /after-int/);
    });
  });
}
