"""Capture of a sandbox into a snapshot (POST /v1/sandboxes/{id}/capture, `sbx snapshot capture`): its
writable layer becomes one new layer over its snapshot's; whiteouts and opaque dirs survive; owners are
moved back to the 0-based range; layers are shared; running, paused-by-freeze and stopped sandboxes."""
import json
import os
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imagebuild as ib  # noqa: E402
from sbxtest import BIN, wait_for  # noqa: E402


def capture(daemon, sid, name, expect="ready", headers=None):
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/capture", {"name": name}, headers=headers)
    assert r.status == 202, r
    sn = r.json()
    assert sn["name"] == name and sn["source"] == "capture"

    def done():
        j = daemon.request("GET", f"/v1/snapshots/{sn['id']}", headers=headers).json()
        return j if j["status"] != "building" else None

    sn = wait_for(done, timeout=120, what=f"capture {name}")
    assert sn["status"] == expect, sn
    return sn


def sh(daemon, sid, script, **kw):
    out = daemon.run(sid, ["sh", "-c", script], **kw)
    assert out["exit_code"] == 0, out
    return out["stdout"]


def test_capture_host_sandbox_files_whiteouts_opaque(daemon):
    a = daemon.create()
    try:
        sh(daemon, a, "mkdir -p /srv/old /root/work && echo one > /root/work/f && echo gone > /srv/old/x && "
                      "ln -s /root/work/f /root/link && ln /root/work/f /root/work/hard && "
                      "chmod 4755 /root/work/f && mkfifo /root/fifo && rmdir /media")
        s1 = capture(daemon, a, "cap-host-1")
        assert s1["base"] == "host" and len(s1["layers"]) == 1
    finally:
        daemon.delete(a)
    b = daemon.create(snapshot="cap-host-1")
    try:
        out = sh(daemon, b, "cat /root/work/f; readlink /root/link; stat -c '%a %h' /root/work/f; "
                            "test -p /root/fifo && echo fifo; test -e /media || echo no-media; "
                            "test -x /usr/bin/python3 && echo host-usr; cat /etc/hostname; ls /srv/old")
        lines = out.split("\n")
        assert lines[0] == "one" and lines[1] == "/root/work/f", out
        assert lines[2] == "4755 2", out  # set-id bit and the hard link kept
        assert "fifo" in lines and "no-media" in lines and "host-usr" in lines, out
        assert b in out  # its own hostname over the host's /etc
        assert "x" in lines
        # A second generation: a file deleted from the first capture (whiteout) and a dir replaced (opaque).
        sh(daemon, b, "rm /root/work/hard && rm -rf /srv/old && mkdir /srv/old && echo new > /srv/old/y")
        s2 = capture(daemon, b, "cap-host-2")
        assert s2["layers"][0] == s1["layers"][0] and len(s2["layers"]) == 2
    finally:
        daemon.delete(b)
    c = daemon.create(snapshot="cap-host-2")
    try:
        out = sh(daemon, c, "ls /srv/old; test -e /root/work/hard || echo no-hard; cat /root/work/f")
        assert out.split("\n")[:3] == ["y", "no-hard", "one"], out
        sh(daemon, c, "echo writable > /root/new && cat /root/new")
    finally:
        daemon.delete(c)
    for n in ("cap-host-2", "cap-host-1"):
        assert daemon.request("DELETE", f"/v1/snapshots/{n}").status == 204


def test_capture_image_sandbox_shares_layers_and_keeps_owners(daemon, tmp_path):
    p = tmp_path / "img.tar"
    ib.oci_layout(str(p), [ib.busybox_layer().bytes(), ib.Layer().dir("data").file("data/a", "a\n").bytes()],
                  env=["PATH=/bin", "X=from-image"], workdir="/data")
    with open(p, "rb") as f:
        r = daemon.request("POST", "/v1/snapshots?name=cap-base", body=f.read())
    assert r.status == 202
    wait_for(lambda: daemon.request("GET", "/v1/snapshots/cap-base").json()["status"] == "ready", timeout=60)
    base = daemon.request("GET", "/v1/snapshots/cap-base").json()
    sid = daemon.create(snapshot="cap-base")
    try:
        sh(daemon, sid, "echo b > /data/b && mkdir /data/u && rm /data/a")
        sh(daemon, sid, "echo mine > /tmp/owned && mkdir /tmp/od", user="1000:1000")
        sh(daemon, sid, "echo n > /tmp/nobody", user="65534:65534")
        sn = capture(daemon, sid, "cap-img")
    finally:
        daemon.delete(sid)
    assert sn["layers"][:2] == base["layers"] and len(sn["layers"]) == 3 and sn["base"] == "image"
    assert sn["config"]["WorkingDir"] == "/data"
    refs = {l["digest"]: l["refs"] for l in daemon.request("GET", "/v1/layers").json()["layers"]}
    assert all(refs[d] == 2 for d in base["layers"]) and refs[sn["layers"][2]] == 1
    # On disk, the new layer holds 0-based owners.
    top = os.path.join(daemon.data_dir, "layers", sn["layers"][2].split(":")[1])
    st = os.lstat(os.path.join(top, "tmp", "owned"))
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert os.lstat(os.path.join(top, "data", "a")).st_rdev == 0  # a whiteout
    sid = daemon.create(snapshot="cap-img")
    try:
        out = sh(daemon, sid, "pwd; echo $X; ls /data; stat -c '%u:%g' /tmp/owned /tmp/od /tmp/nobody")
        assert out.split("\n")[:7] == ["/data", "from-image", "b", "u", "1000:1000", "1000:1000", "65534:65534"], out
        assert sh(daemon, sid, "cat /tmp/owned", user="1000:1000") == "mine\n"
    finally:
        daemon.delete(sid)
    assert daemon.request("DELETE", "/v1/snapshots/cap-img").status == 204
    refs = {l["digest"]: l["refs"] for l in daemon.request("GET", "/v1/layers").json()["layers"]}
    assert sn["layers"][2] not in refs and all(refs[d] == 1 for d in base["layers"])
    assert daemon.request("DELETE", "/v1/snapshots/cap-base").status == 204


def test_capture_while_writing_and_stopped(daemon):
    sid = daemon.create()
    try:
        # A writer that keeps appending while the capture freezes the disk; it must go on afterwards.
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                           {"command": ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo $i >> /root/log; "
                                        "i=$((i+1)); done; echo done"]})
        assert r.status in (200, 201, 202), r
        cid = r.json()["id"]
        wait_for(lambda: daemon.run(sid, ["sh", "-c", "test -s /root/log"])["exit_code"] == 0, what="the log")
        sn = capture(daemon, sid, "cap-live")
        def finished():
            j = daemon.request("GET", f"/v1/sandboxes/{sid}/commands/{cid}").json()
            return j if j.get("state", j.get("status")) in ("exited", "finished", "done") or \
                j.get("exit_code") is not None else None
        wait_for(finished, timeout=60, what="the writer")
        assert sh(daemon, sid, "wc -l < /root/log").strip() == "20000"
        assert daemon.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "running"
        # Paused (its cgroup frozen): the disk freezes all the same; it stays paused.
        r = daemon.request("PUT", f"/v1/sandboxes/{sid}/files?path=/root/put.txt", body=b"via the file API\n")
        assert r.status == 200, r
        assert daemon.request("POST", f"/v1/sandboxes/{sid}/pause").status == 200
        sn3 = capture(daemon, sid, "cap-paused")
        assert daemon.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "paused"
        assert daemon.request("POST", f"/v1/sandboxes/{sid}/resume").status == 200
        assert daemon.request("DELETE", f"/v1/snapshots/{sn3['id']}").status == 204
        # Stopped: the disk is mounted read-only for the copy.
        assert daemon.request("POST", f"/v1/sandboxes/{sid}/stop").status == 200
        sn2 = capture(daemon, sid, "cap-stopped")
        assert daemon.request("POST", f"/v1/sandboxes/{sid}/start").status == 200
        assert sh(daemon, sid, "wc -l < /root/log").strip() == "20000"
    finally:
        daemon.delete(sid)
    c = daemon.create(snapshot="cap-stopped")
    try:
        assert sh(daemon, c, "wc -l < /root/log").strip() == "20000"
        assert sh(daemon, c, "cat /root/put.txt; stat -c %u:%g /root/put.txt") == "via the file API\n0:0\n"
    finally:
        daemon.delete(c)
    # The live capture holds a prefix of the log, every line whole.
    c = daemon.create(snapshot="cap-live")
    try:
        lines = sh(daemon, c, "cat /root/log").split()
        assert lines == [str(i) for i in range(len(lines))]
    finally:
        daemon.delete(c)
    for n in ("cap-live", "cap-stopped"):
        assert daemon.request("DELETE", f"/v1/snapshots/{n}").status == 204
    del sn, sn2


def test_capture_errors_and_cli(daemon):
    sid = daemon.create()
    try:
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/capture", {})
        assert r.status == 400 and r.error_code() == "invalid_argument", r
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/capture", {"name": "bad/name"})
        assert r.status == 400, r
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/capture", {"name": "host"})
        assert r.status == 400, r
        r = daemon.request("POST", "/v1/sandboxes/sbx_nope/capture", {"name": "x1"})
        assert r.status == 404 and r.error_code() == "not_found", r
        sh(daemon, sid, "echo cli > /root/c")
        env = dict(os.environ, SBX_URL=daemon.url)
        out = subprocess.run([os.path.join(BIN, "sbx"), "snapshot", "capture", sid, "--name", "cap-cli"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out
        assert "cap-cli ready" in out.stdout
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/capture", {"name": "cap-cli"})
        assert r.status == 409 and r.error_code() == "conflict", r
        # A failed name check leaves no snapshot behind.
        names = [s["name"] for s in daemon.request("GET", "/v1/snapshots").json()["snapshots"]]
        assert names.count("cap-cli") == 1 and "x1" not in names
        out = subprocess.run([os.path.join(BIN, "sbx"), "snapshot", "capture", "sbx_nope", "--name", "zz"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "not found" in out.stderr, out
    finally:
        daemon.delete(sid)
    assert daemon.request("DELETE", "/v1/snapshots/cap-cli").status == 204


def test_capture_busy_during_copy(daemon):
    """Operations that would touch the disk answer 409 busy while the copy runs."""
    sid = daemon.create()
    try:
        sh(daemon, sid, "head -c 67108864 /dev/urandom > /root/big")
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/capture", {"name": "cap-busy"})
        assert r.status == 202
        seen = daemon.request("POST", f"/v1/sandboxes/{sid}/stop")
        assert seen.status in (200, 409), seen
        if seen.status == 409:
            assert seen.error_code() == "busy"
        wait_for(lambda: daemon.request("GET", "/v1/snapshots/cap-busy").json()["status"] != "building",
                 timeout=120)
        assert daemon.request("GET", "/v1/snapshots/cap-busy").json()["status"] == "ready"
    finally:
        daemon.delete(sid)
    assert daemon.request("DELETE", "/v1/snapshots/cap-busy").status == 204
