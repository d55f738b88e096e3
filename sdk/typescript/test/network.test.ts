/**
 * Network mode egress: create with a policy, read it back (`sb.network`), change it on a live sandbox
 * (`sb.update({network: {egress}})`, `client.updateSandbox`), and check what the sandbox really reaches:
 * TCP servers in a network namespace on this machine, through a sbxd of this file's own started with a
 * fake upstream resolver and an egress subnet of its own (tests/nettarget_helper.py).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { InvalidArgumentError, SandboxClient } from "@sbx/sdk";
import type { CreateSandboxOptions, EgressPolicy, NetworkInfo, Sandbox } from "@sbx/sdk";
import { Daemon, NetTarget } from "./helpers.js";

let nt: NetTarget;
let d: Daemon;
let client: SandboxClient;
let a0: string, a1: string, t0: string, t1: string, one: string, two: string;

before(async () => {
  nt = await new NetTarget().start({ "one.test": 0, "two.test": 1 });
  [a0, a1] = nt.addrs;
  [t0, t1] = [`${a0}:${nt.port}`, `${a1}:${nt.port}`];
  [one, two] = [`one.test:${nt.port}`, `two.test:${nt.port}`];
  d = await new Daemon(undefined, nt.sbxdArgs).start();
  client = new SandboxClient({ url: d.url });
});

after(async () => {
  try {
    if (d) assert.equal(await d.stop(), 0, "sbxd exits 0 on SIGTERM");
  } finally {
    await nt?.close();
  }
});

const hello = (addr: string) => `hello from ${addr}`;
/** A denied connection fails at once (ICMP admin-prohibited), never by the probe's 3 s timeout. */
const refused = (r: string | undefined) => !!r && r.startsWith("connect:") && r !== "connect: timeout";

/** What each "host:port" gives from inside the sandbox. */
async function probe(sb: Sandbox, ...targets: string[]): Promise<Record<string, string>> {
  const r = await sb.run(["python3", "-c", nt.probe, ...targets], { timeout: 60 });
  assert.equal(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function withSandbox(options: CreateSandboxOptions, fn: (sb: Sandbox) => Promise<void>): Promise<void> {
  const sb = await client.createSandbox(options);
  try {
    await fn(sb);
  } finally {
    await sb.delete().catch(() => {});
  }
}

function inSubnet(address: string | null): boolean {
  const prefix = nt.subnet.split("/")[0].split(".").slice(0, 3).join(".") + "."; // a /24
  return !!address && address.startsWith(prefix);
}

test("the default network is none: loopback only, and its policy cannot be set", async () => {
  await withSandbox({}, async (sb) => {
    assert.deepEqual(sb.network, { mode: "none", egress: null, address: null } satisfies NetworkInfo);
    assert.deepEqual((await sb.run("ls /sys/class/net")).stdout.split(/\s+/).filter(Boolean), ["lo"]);
    await assert.rejects(sb.update({ network: { egress: { default: "allow" } } }), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError);
      assert.equal(e.status, 400);
      return true;
    });
    assert.equal((await sb.refresh()).network.mode, "none");
  });
  await withSandbox({ network: { mode: "none" }, name: "ts-net-none" }, async (sb) => {
    assert.equal(sb.network.mode, "none");
  });
});

test("create with a policy, then replace it on the live sandbox: reachability follows", async () => {
  await withSandbox({ network: { mode: "egress", egress: { allow: [a0] } } }, async (sb) => {
    const n = sb.network;
    assert.equal(n.mode, "egress");
    assert.deepEqual(n.egress, { default: "deny", allow: [a0], deny: [] });
    assert.ok(inSubnet(n.address), `${n.address} in ${nt.subnet}`);
    assert.deepEqual((await client.getSandbox(sb.id)).network, n);
    assert.deepEqual((await client.listSandboxes()).find((s) => s.id === sb.id)?.network, n);
    assert.deepEqual((await sb.run("ls /sys/class/net")).stdout.split(/\s+/).filter(Boolean), ["eth0", "lo"]);

    let res = await probe(sb, t0, t1, one);
    assert.equal(res[t0], hello(a0));
    assert.ok(refused(res[t1]), res[t1]);
    assert.match(res[one], /^resolve:/); // no name allowed: sbxd answers NXDOMAIN itself

    // Sandbox.update replaces the whole policy at once: a0 now denied, two.test allowed by name.
    const info = await sb.update({ network: { egress: { allow: ["two.test"], deny: [a0] } } });
    assert.deepEqual(info.network.egress, { default: "deny", allow: ["two.test"], deny: [a0] });
    assert.deepEqual(sb.network, info.network);
    assert.equal(sb.network.address, n.address);
    res = await probe(sb, t0, two, one);
    assert.ok(refused(res[t0]), res[t0]);
    assert.equal(res[two], hello(a1));
    assert.match(res[one], /^resolve:/);

    // SandboxClient.updateSandbox: default allow with one deny.
    const other = await client.updateSandbox(sb.id, { network: { egress: { default: "allow", deny: [`${a1}/32`] } } });
    assert.deepEqual(other.network.egress, { default: "allow", allow: [], deny: [a1] }); // a /32 reads back bare
    assert.deepEqual((await sb.refresh()).network, other.network);
    res = await probe(sb, t0, t1, one);
    assert.equal(res[t0], hello(a0));
    assert.equal(res[one], hello(a0));
    assert.ok(refused(res[t1]), res[t1]);

    // Lifecycle settings and the policy in one PATCH; an empty policy is deny-everything.
    await sb.update({ idleTtlSeconds: 321, network: { egress: {} } });
    assert.equal(sb.info.idleTtlSeconds, 321);
    assert.deepEqual(sb.network.egress, { default: "deny", allow: [], deny: [] });
    res = await probe(sb, t0, t1);
    assert.ok(refused(res[t0]) && refused(res[t1]), JSON.stringify(res));
  });
});

test("mode egress without a policy denies everything; default allow reaches both", async () => {
  await withSandbox({ network: { mode: "egress" } }, async (sb) => {
    assert.deepEqual(sb.network.egress, { default: "deny", allow: [], deny: [] });
    const res = await probe(sb, t0, t1);
    assert.ok(refused(res[t0]) && refused(res[t1]), JSON.stringify(res));
  });
  await withSandbox({ network: { mode: "egress", egress: { default: "allow" } } }, async (sb) => {
    assert.deepEqual(await probe(sb, t0, t1), { [t0]: hello(a0), [t1]: hello(a1) });
  });
});

test("bad policies: caught before any request (status 0) or by sbxd (400)", async () => {
  const local = async (p: Promise<unknown>) =>
    assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError, String(e));
      assert.equal(e.status, 0);
      return true;
    });
  // Plain-JS mistakes the types would have caught.
  const loose = (v: unknown) => v as CreateSandboxOptions["network"];
  await local(client.createSandbox({ network: loose({ egress: { allow: [a0] } }) }));
  await local(client.createSandbox({ network: loose({ mode: "none", egress: {} }) }));
  await local(client.createSandbox({ network: loose({ mode: "bridge" }) }));
  await local(client.createSandbox({ network: loose({ mode: "egress", policy: {} }) }));
  await local(client.createSandbox({ network: { mode: "egress", egress: { allow: a0 as unknown as string[] } } }));
  await local(client.createSandbox({ network: { mode: "egress", egress: { default: "open" as "allow" } } }));
  await local(client.createSandbox({ network: { mode: "egress", egress: { alow: [] } as unknown as EgressPolicy } }));
  await local(client.updateSandbox("whatever", { network: { mode: "egress" } as unknown as { egress: EgressPolicy } }));

  for (const entry of ["::1", "10.0.0.0/33", "not a domain!"]) {
    await assert.rejects(client.createSandbox({ network: { mode: "egress", egress: { allow: [entry] } } }), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError && e.status === 400, `${entry}: ${e}`);
      return true;
    });
  }
  await withSandbox({ network: { mode: "egress" } }, async (sb) => {
    await assert.rejects(sb.update({ network: { egress: { deny: ["fe80::1"] } } }), InvalidArgumentError);
    assert.deepEqual((await sb.refresh()).network.egress, { default: "deny", allow: [], deny: [] });
  });
});

test("the policy survives stop/start; a fork gets it with an address of its own", async () => {
  const policy = { default: "deny" as const, allow: [`${nt.net}.0/24`], deny: [a1] };
  await withSandbox({ network: { mode: "egress", egress: policy } }, async (sb) => {
    await sb.stop();
    assert.deepEqual(sb.network.egress, policy);
    assert.equal(sb.network.address, null); // an address only while it runs
    await sb.start();
    assert.deepEqual(sb.network.egress, policy);
    assert.ok(inSubnet(sb.network.address));
    let res = await probe(sb, t0, t1);
    assert.equal(res[t0], hello(a0));
    assert.ok(refused(res[t1]), res[t1]);

    const [fork] = await sb.fork();
    try {
      assert.deepEqual(fork.network.egress, policy);
      assert.ok(inSubnet(fork.network.address) && fork.network.address !== sb.network.address);
      res = await probe(fork, t0, t1);
      assert.equal(res[t0], hello(a0));
      assert.ok(refused(res[t1]), res[t1]);
      // Per sandbox: closing the fork leaves the original open.
      await fork.update({ network: { egress: {} } });
      assert.ok(refused((await probe(fork, t0))[t0]));
      assert.equal((await probe(sb, t0))[t0], hello(a0));
    } finally {
      await fork.delete().catch(() => {});
    }
  });
});
