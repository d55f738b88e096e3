#!/usr/bin/python3
"""What network mode egress adds to a sandbox's start (issue 5's measure: netns + egress setup).

    bench/egress.py                 # after `make`; BUILD=build by default
    bench/egress.py --runs 50

sbxd runs with --warm 0, so every create builds its sandbox. Each run creates a sandbox (POST
/v1/sandboxes, a fresh name so nothing is cached) with network mode none, then one with mode egress and a
small policy, and deletes both; the difference of the medians is what egress costs: the veth pair made by
the shim over rtnetlink, addresses and route inside the sandbox, the nftables chain, set and map element
through libnftables, and the resolv.conf write.

Baseline, the same plumbing done the usual way with iproute2 and nft(8) processes on a fresh network
namespace: `ip netns add`, `ip link add ... type veth peer ... netns`, the two `ip addr`/`ip link up`,
the route inside, and one `nft -f` adding the chain and map element, then teardown (not timed).
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SBX_SOURCE_DIR", ROOT)
os.environ.setdefault("SBX_BUILD_DIR", os.path.join(ROOT, os.environ.get("BUILD", "build")))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from nettarget import Resolver, egress_args  # noqa: E402
from sbxtest import Daemon  # noqa: E402


def call(c, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = c.getresponse()
    raw = r.read()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {raw[:300]!r}")
    return json.loads(raw) if raw else None


def timed_create(c, name, network):
    t0 = time.perf_counter()
    sb = call(c, "POST", "/v1/sandboxes", {"name": name, "network": network})
    ms = (time.perf_counter() - t0) * 1000
    call(c, "DELETE", f"/v1/sandboxes/{sb['id']}")
    return ms


def iproute_baseline(i):
    ns, host = f"sbxb{os.getpid() % 10000}x{i}", f"vb{os.getpid() % 10000}x{i}"
    rules = (f"table inet sbxbench {{ map ifaces {{ type ifname : verdict; }}; }}\n"
             f"add chain inet sbxbench c{i}\n"
             f"add rule inet sbxbench c{i} ip daddr 10.0.0.0/8 accept\n"
             f"add element inet sbxbench ifaces {{ \"{host}\" : jump c{i} }}\n")
    t0 = time.perf_counter()
    steps = [["ip", "netns", "add", ns],
             ["ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns],
             ["ip", "addr", "add", "10.199.0.1/30", "dev", host],
             ["ip", "link", "set", host, "up"],
             ["ip", "-n", ns, "addr", "add", "10.199.0.2/30", "dev", "eth0"],
             ["ip", "-n", ns, "link", "set", "eth0", "up"],
             ["ip", "-n", ns, "route", "add", "default", "via", "10.199.0.1"]]
    for s in steps:
        subprocess.run(s, check=True)
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    ms = (time.perf_counter() - t0) * 1000
    subprocess.run(["ip", "netns", "del", ns], check=True)
    subprocess.run(["nft", "delete", "table", "inet", "sbxbench"], check=True)
    return ms


def fmt(ms):
    return f"{statistics.median(ms):7.2f} ms median ({min(ms):.2f}-{max(ms):.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    none, egress, base = [], [], []
    policy = {"mode": "egress", "egress": {"default": "deny", "allow": ["10.0.0.0/8", "example.com"]}}
    with Resolver({}) as res, Daemon(extra_args=egress_args(res) + ["--warm", "0"]) as d:
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
        for i in range(3):  # warm-up: the table and resolver are made on first use
            timed_create(c, f"warm-{i}", policy)
        for i in range(args.runs):
            none.append(timed_create(c, f"none-{i}", {"mode": "none"}))
            egress.append(timed_create(c, f"egress-{i}", policy))
    for i in range(args.runs):
        base.append(iproute_baseline(i))
    added = statistics.median(egress) - statistics.median(none)
    print(f"create, mode none         {fmt(none)}")
    print(f"create, mode egress       {fmt(egress)}")
    print(f"egress adds               {added:7.2f} ms")
    print(f"iproute2 + nft baseline   {fmt(base)}")
    print(f"ratio egress-added / baseline: {added / statistics.median(base):.2f}")


if __name__ == "__main__":
    main()
