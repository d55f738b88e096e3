#!/usr/bin/python3
"""Checkpoint, restore, create-from-checkpoint and fork latency for a sandbox with 100 MiB of changes.

    bench/checkpoint.py                 # after `make`; BUILD=build by default
    bench/checkpoint.py --mib 100 --runs 5

A sandbox gets MIB MiB of random data in one file plus 1000 small files (its disk's data). Then, each a
client round trip on one keep-alive connection, median (min-max) of RUNS:
- checkpoint: POST .../checkpoints (freeze, sparse copy of the disk image, fsync, thaw);
- baseline: `cp --sparse=always` of the same (stopped, so consistent) disk image plus `sync` of the copy,
  the same work done by coreutils: the ratio says what sbx adds around the copy;
- restore: POST .../checkpoints/{name}/restore of a running sandbox (stop, copy back, start);
- create from checkpoint vs a plain built create (both named, so neither comes from the warm pool);
- fork with count 1 and 4.
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

from sbxtest import Daemon  # noqa: E402


class Client:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data else {}
        t0 = time.perf_counter()
        self.c.request(method, path, body=data, headers=hdrs)
        r = self.c.getresponse()
        raw = r.read()
        dt = (time.perf_counter() - t0) * 1000
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {raw[:300]!r}")
        return (json.loads(raw) if raw else None), dt


def fmt(ms):
    return f"{statistics.median(ms):8.1f} ms ({min(ms):.1f}-{max(ms):.1f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with Daemon(extra_args=["--warm", "0"]) as d:
        c = Client(d.port)
        sb, _ = c.call("POST", "/v1/sandboxes", {"name": "bench-src"})
        sid = sb["id"]
        script = (f"dd if=/dev/urandom of=/root/blob bs=1M count={a.mib} status=none && mkdir /root/small && "
                  "for i in $(seq 1 1000); do echo $i > /root/small/f$i; done && sync")
        res, _ = c.call("POST", f"/v1/sandboxes/{sid}/commands", {"command": script, "wait": True})
        assert res["exit_code"] == 0, res

        ck_ms, sizes = [], []
        for i in range(a.runs):
            ck, dt = c.call("POST", f"/v1/sandboxes/{sid}/checkpoints", {"name": f"b{i}"})
            ck_ms.append(dt)
            sizes.append(ck["size_bytes"])
        for i in range(1, a.runs):
            c.call("DELETE", f"/v1/sandboxes/{sid}/checkpoints/b{i}")

        # The same copy by coreutils, of the stopped sandbox's image (consistent without a freeze).
        c.call("POST", f"/v1/sandboxes/{sid}/stop")
        img = os.path.join(d.data_dir, "sandboxes", sid, "disk.img")
        dst = os.path.join(d.data_dir, "bench-copy.img")
        cp_ms = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            subprocess.run(["cp", "--sparse=always", img, dst], check=True)
            subprocess.run(["sync", dst], check=True)
            cp_ms.append((time.perf_counter() - t0) * 1000)
            os.unlink(dst)
        c.call("POST", f"/v1/sandboxes/{sid}/start")

        restore_ms = []
        for _ in range(a.runs):
            _, dt = c.call("POST", f"/v1/sandboxes/{sid}/checkpoints/b0/restore")
            restore_ms.append(dt)

        from_ck, plain = [], []
        for i in range(a.runs):
            s, dt = c.call("POST", "/v1/sandboxes", {"name": f"from-{i}", "checkpoint": f"{sid}:b0"})
            from_ck.append(dt)
            c.call("DELETE", f"/v1/sandboxes/{s['id']}")
            s, dt = c.call("POST", "/v1/sandboxes", {"name": f"plain-{i}"})
            plain.append(dt)
            c.call("DELETE", f"/v1/sandboxes/{s['id']}")

        forks = {}
        for n in (1, 4):
            forks[n] = []
            for _ in range(a.runs):
                out, dt = c.call("POST", f"/v1/sandboxes/{sid}/fork", {"count": n})
                forks[n].append(dt)
                for s in out["sandboxes"]:
                    c.call("DELETE", f"/v1/sandboxes/{s['id']}")
        c.call("DELETE", f"/v1/sandboxes/{sid}")

    print(f"sandbox with {a.mib} MiB + 1000 files; checkpoint data {statistics.median(sizes) / 2**20:.1f} MiB; "
          f"median (min-max) of {a.runs}")
    print(f"checkpoint                 {fmt(ck_ms)}")
    print(f"cp --sparse + sync (base)  {fmt(cp_ms)}   ratio {statistics.median(ck_ms) / statistics.median(cp_ms):.2f}")
    print(f"restore (running)          {fmt(restore_ms)}")
    print(f"create from checkpoint     {fmt(from_ck)}")
    print(f"create (built, plain)      {fmt(plain)}   ratio {statistics.median(from_ck) / statistics.median(plain):.2f}")
    for n, ms in forks.items():
        print(f"fork --count {n}             {fmt(ms)}")


if __name__ == "__main__":
    main()
