// Runs the compiled tests (dist-test/*.test.{js,cjs}) with node's test runner against a real sbxd
// (SBX_BUILD_DIR/bin/sbxd; default: the repository's build/). Extra arguments go to `node --test`.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const build = process.env.SBX_BUILD_DIR ?? resolve(root, "../../build");
if (!existsSync(join(build, "bin", "sbxd"))) {
  console.error(`run-tests: ${join(build, "bin", "sbxd")} not found: build sbxd first (make) or set SBX_BUILD_DIR`);
  process.exit(1);
}
const dir = join(root, "dist-test");
const files = readdirSync(dir)
  .filter((f) => /\.test\.c?js$/.test(f))
  .sort()
  .map((f) => join(dir, f));
// Each file runs its own sbxd and mostly waits on it: run several at once even on a 2-CPU machine
// (node's default is CPUs - 1). --test-concurrency exists from Node 20.10.
const [major, minor] = process.versions.node.split(".").map(Number);
const args = process.argv.slice(2);
if ((major > 20 || (major === 20 && minor >= 10)) && !args.some((a) => a.startsWith("--test-concurrency")))
  args.unshift(`--test-concurrency=${Math.max(4, availableParallelism())}`);
const r = spawnSync(process.execPath, ["--test", "--test-timeout=60000", ...args, ...files], {
  stdio: "inherit",
  env: { ...process.env, SBX_BUILD_DIR: build },
});
process.exit(r.status ?? 1);
