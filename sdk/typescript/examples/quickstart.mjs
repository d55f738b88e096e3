// node examples/quickstart.mjs   (SBX_URL / SBX_API_KEY say where sbxd is; default http://127.0.0.1:7070)
import { SandboxClient } from "@sbx/sdk";

const client = new SandboxClient();
const sb = await client.createSandbox({ metadata: { example: "quickstart" }, resources: { memoryMb: 256 } });
try {
  // Wait for a command; a non-zero exit is not an exception.
  const r = await sb.run("echo hello from $(hostname); echo oops >&2; exit 3");
  console.log(r.exitCode, JSON.stringify(r.stdout), JSON.stringify(r.stderr));

  // Live output, env, cwd, timeout (seconds).
  await sb.run("for i in 1 2 3; do echo tick $i; sleep 0.1; done", {
    onStdout: (data) => process.stdout.write(`[live] ${data}`),
    env: { GREETING: "hi" },
    cwd: "/tmp",
    timeout: 30,
  });

  // Files.
  await sb.write("/root/app/main.py", "print(6 * 7)\n");
  console.log((await sb.run("python3 /root/app/main.py")).stdout.trim()); // 42
  console.log((await sb.ls("/root/app")).map((e) => `${e.name} ${e.size}`));
} finally {
  await sb.delete();
}
