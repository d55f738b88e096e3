// node examples/lifecycle.cjs: CommonJS, lifecycle calls and typed errors.
const { SandboxClient, NotRunningError, NotFoundError } = require("@sbx/sdk");

(async () => {
  const client = new SandboxClient();
  const sb = await client.createSandbox({ name: `lifecycle-${process.pid}`, idleTtlSeconds: 120 });
  try {
    await sb.pause(); // frozen: no CPU, memory kept
    await sb.resume();
    await sb.stop(); // processes end, files stay
    try {
      await sb.run("true");
    } catch (e) {
      if (e instanceof NotRunningError) console.log("stopped:", e.code, e.status);
    }
    await sb.start();
    await sb.update({ timeoutSeconds: 3600, metadata: { owner: "example" } });
    await sb.renew({ timeoutSeconds: 7200 });
    console.log((await sb.metrics()).memoryBytes > 0, sb.info.expiresAt !== null);
    console.log((await client.listSandboxes({ metadata: { owner: "example" } })).length);
  } finally {
    await sb.delete();
  }
  await client.getSandbox("sbx_nope").catch((e) => console.log(e instanceof NotFoundError, e.message));
})();
