// node examples/interactive.mjs: a background command, its stdin, its output as an async iterable,
// and reconnecting to it by id.
import { SandboxClient } from "@sbx/sdk";

const client = new SandboxClient();
const sb = await client.createSandbox();
try {
  const h = await sb.run("python3 -i -q", { wait: false }); // stdin stays open with wait: false
  await h.sendInput("print(6 * 7)\n");
  await h.closeStdin();
  for await (const { stream, data } of h) process.stdout.write(`${stream}: ${data}`);
  console.log("exit code", (await h.result).exitCode);

  // Any client can attach to a command by id later and replay its output from the start.
  const again = await sb.reconnect(h.id);
  console.log("replayed:", JSON.stringify((await again.result).stdout));

  // Polling instead of streaming: the combined log, page by page.
  let cursor = 0;
  for (;;) {
    const page = await sb.logs(h.id, { cursor });
    for (const c of page.chunks) console.log("log", c.stream, JSON.stringify(c.data));
    cursor = page.nextCursor;
    if (page.eof) break;
  }
} finally {
  await sb.delete();
}
