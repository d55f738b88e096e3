#!/usr/bin/python3
"""Create from a 3-layer image snapshot vs the `host` snapshot (issue 4's measure: within 1.5x of host).

    bench/image_create.py               # after `make`; BUILD=build by default
    bench/image_create.py --runs 50 --format oci

A 3-layer image is built with tests/imagebuild.py (busybox-static with its applets; a layer of files and
directories; a layer with a whiteout and an opaque directory over the second one), as `docker save` or as
an OCI layout with gzip layers, and imported (POST /v1/snapshots?name=..., polled until ready). sbxd runs
with --warm 0, so every create builds its sandbox; each create is named (a fresh name every time), which
would bypass a warm pool anyway. Each run, alternately from the image and from `host` (so drift in the
machine's load hits both alike):

    create   POST /v1/sandboxes {"name", "snapshot"} -> 201 (the sandbox is up: its shim, overlay, init)
    command  POST /v1/sandboxes/{id}/commands {"command": ["true"], "wait": true} -> 200, the first one
    delete   DELETE /v1/sandboxes/{id}, not timed

A few untimed warm-up rounds come first. Medians with min-max, and the ratio image/host of the medians.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SBX_SOURCE_DIR", ROOT)
os.environ.setdefault("SBX_BUILD_DIR", os.path.join(ROOT, os.environ.get("BUILD", "build")))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import imagebuild as ib  # noqa: E402
from sbxtest import Daemon  # noqa: E402


class Client:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def call(self, method, path, body=None, raw=None):
        data = json.dumps(body).encode() if body is not None else raw
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        self.c.request(method, path, body=data, headers=hdrs)
        r = self.c.getresponse()
        out = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {out[:300]!r}")
        return json.loads(out) if out else None


def three_layers():
    base = ib.busybox_layer().bytes()
    mid = ib.Layer().dir("data").dir("data/sub").file("etc/motd", "from the image\n")
    for i in range(50):
        mid.file(f"data/f{i}", f"file {i}\n" * 20)
        mid.file(f"data/sub/g{i}", f"sub {i}\n")
    mid.file("data/gone", "gone\n")
    top = (ib.Layer().dir("data").whiteout("data/gone").dir("data/sub").opaque("data/sub")
           .file("data/sub/new", "new\n").file("data/top", "top\n"))
    return [base, mid.bytes(), top.bytes()]


def import_image(c, path, name):
    with open(path, "rb") as f:
        sn = c.call("POST", f"/v1/snapshots?name={name}", raw=f.read())
    while sn["status"] == "building":
        time.sleep(0.01)
        sn = c.call("GET", f"/v1/snapshots/{sn['id']}")
    if sn["status"] != "ready":
        raise RuntimeError(f"import failed: {sn}")
    return sn


def one(c, name, snapshot):
    t0 = time.perf_counter()
    sid = c.call("POST", "/v1/sandboxes", {"name": name, "snapshot": snapshot})["id"]
    t1 = time.perf_counter()
    res = c.call("POST", f"/v1/sandboxes/{sid}/commands", {"command": ["true"], "wait": True})
    t2 = time.perf_counter()
    if res["exit_code"] != 0:
        raise RuntimeError(f"`true` in a sandbox of {snapshot}: {res}")
    c.call("DELETE", f"/v1/sandboxes/{sid}")
    return (t1 - t0) * 1000, (t2 - t1) * 1000


def fmt(ms):
    return f"{statistics.median(ms):7.2f} ms median ({min(ms):.2f}-{max(ms):.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--format", choices=["docker", "oci"], default="docker")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sbx-bench-img-") as tmp:
        path = os.path.join(tmp, "image.tar")
        cfg = dict(env=["PATH=/bin:/usr/bin"], workdir="/data", cmd=["sh"])
        if a.format == "docker":
            ib.docker_save(path, three_layers(), **cfg)
        else:
            ib.oci_layout(path, three_layers(), compression="gzip", **cfg)
        res = {"image": ([], []), "host": ([], [])}
        with Daemon(extra_args=["--warm", "0"]) as d:
            c = Client(d.port)
            sn = import_image(c, path, "bench-3layer")
            assert len(sn["layers"]) == 3, sn
            snaps = {"image": "bench-3layer", "host": "host"}
            for i in range(a.warmup):
                for k, s in snaps.items():
                    one(c, f"warm-{k}-{i}", s)
            for i in range(a.runs):
                order = ("image", "host") if i % 2 == 0 else ("host", "image")
                for k in order:
                    cr, cmd = one(c, f"b-{k}-{i}-{time.monotonic_ns()}", snaps[k])
                    res[k][0].append(cr)
                    res[k][1].append(cmd)
            c.call("DELETE", "/v1/snapshots/bench-3layer")

    img, host = res["image"], res["host"]
    both = {k: [x + y for x, y in zip(*v)] for k, v in res.items()}
    print(f"3-layer image ({a.format}) vs host, sbxd --warm 0, {a.runs} named creates each "
          f"({a.warmup} warm-up), median (min-max)")
    print(f"create, host              {fmt(host[0])}")
    print(f"create, 3-layer image     {fmt(img[0])}")
    print(f"first `true`, host        {fmt(host[1])}")
    print(f"first `true`, image       {fmt(img[1])}")
    print(f"create + `true`, host     {fmt(both['host'])}")
    print(f"create + `true`, image    {fmt(both['image'])}")
    print(f"ratio image/host: create {statistics.median(img[0]) / statistics.median(host[0]):.2f}, "
          f"create + `true` {statistics.median(both['image']) / statistics.median(both['host']):.2f} "
          f"(target <= 1.5)")


if __name__ == "__main__":
    main()
