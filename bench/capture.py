#!/usr/bin/python3
"""Capture time for a sandbox with 100 MiB of changes (issue 4's measure).

    bench/capture.py                    # after `make`; BUILD=build by default
    bench/capture.py --mib 100 --runs 5

A running sandbox gets MIB MiB of random data in one file plus 1000 small files. Each run captures it
into a new snapshot: POST /v1/sandboxes/{id}/capture answers at once (202, building); the time measured
is from the request to the snapshot being `ready` (polled every 5 ms): freeze, copy of the upper dir
into a layer with owners shifted, sha256 of its tar, thaw, rename into the store and the SQLite commit.
The snapshot is deleted between runs (its layer goes with it, so every run copies for real). Baseline:
`cp -a` of the same upper dir (frozen state not needed: nothing writes) plus `sync`, and
`tar -c | sha256sum` of it: the two halves of what a capture does, done by coreutils.
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
        self.c.request(method, path, body=data, headers=hdrs)
        r = self.c.getresponse()
        raw = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {raw[:300]!r}")
        return json.loads(raw) if raw else None


def fmt(ms):
    return f"{statistics.median(ms):8.1f} ms ({min(ms):.1f}-{max(ms):.1f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with Daemon(extra_args=["--warm", "0"]) as d:
        c = Client(d.port)
        sid = c.call("POST", "/v1/sandboxes", {"name": "bench-capture"})["id"]
        script = (f"dd if=/dev/urandom of=/root/blob bs=1M count={a.mib} status=none && mkdir /root/small && "
                  "for i in $(seq 1 1000); do echo $i > /root/small/f$i; done && sync")
        res = c.call("POST", f"/v1/sandboxes/{sid}/commands", {"command": script, "wait": True})
        assert res["exit_code"] == 0, res

        cap_ms, sizes = [], []
        for i in range(a.runs):
            t0 = time.perf_counter()
            sn = c.call("POST", f"/v1/sandboxes/{sid}/capture", {"name": f"cap{i}"})
            while sn["status"] == "building":
                time.sleep(0.005)
                sn = c.call("GET", f"/v1/snapshots/{sn['id']}")
            cap_ms.append((time.perf_counter() - t0) * 1000)
            if sn["status"] != "ready":
                raise RuntimeError(f"capture failed: {sn}")
            sizes.append(sn["size_bytes"])
            c.call("DELETE", f"/v1/snapshots/{sn['id']}")

        upper = os.path.join(d.data_dir, "sandboxes", sid, "disk", "upper")
        dst = os.path.join(d.data_dir, "bench-copy")
        cp_ms, tar_ms = [], []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            subprocess.run(["cp", "-a", upper, dst], check=True)
            subprocess.run(["sync", "-f", dst], check=True)
            cp_ms.append((time.perf_counter() - t0) * 1000)
            subprocess.run(["rm", "-rf", dst], check=True)
            t0 = time.perf_counter()
            subprocess.run(f"tar -C {upper} -cf - . | sha256sum > /dev/null", shell=True, check=True)
            tar_ms.append((time.perf_counter() - t0) * 1000)
        c.call("DELETE", f"/v1/sandboxes/{sid}")

    print(f"sandbox with {a.mib} MiB + 1000 files of changes; layer {statistics.median(sizes) / 2**20:.1f} MiB; "
          f"median (min-max) of {a.runs}")
    print(f"capture (request -> ready)  {fmt(cap_ms)}")
    print(f"cp -a + sync (base)         {fmt(cp_ms)}")
    print(f"tar | sha256sum (base)      {fmt(tar_ms)}")
    print(f"ratio capture / (cp + tar)  {statistics.median(cap_ms) / (statistics.median(cp_ms) + statistics.median(tar_ms)):.2f}")


if __name__ == "__main__":
    main()
