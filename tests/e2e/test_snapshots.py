"""Snapshots from image tarballs: import (docker save and OCI layout; gzip and zstd layers), the shared
layer store, create from a snapshot, whiteouts and opaque dirs, Env/WorkingDir, delete and GC, CLI."""
import json
import os
import statistics
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imagebuild as ib  # noqa: E402
from sbxtest import BIN, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(ib.BUSYBOX), reason="busybox-static is not installed")


def three_layers():
    base = ib.busybox_layer().bytes()
    mid = (ib.Layer().dir("data").file("data/keep", "keep\n").file("data/gone", "gone")
           .dir("data/sub").file("data/sub/old", "old").file("etc/motd", "from the image\n").bytes())
    top = (ib.Layer().dir("data").whiteout("data/gone").dir("data/sub").opaque("data/sub")
           .file("data/sub/new", "new").bytes())
    return [base, mid, top]


CFG = dict(env=["PATH=/bin:/usr/bin", "GREETING=hello image"], workdir="/data", cmd=["sh"])


def import_image(daemon, path, name, expect="ready"):
    with open(path, "rb") as f:
        r = daemon.request("POST", f"/v1/snapshots?name={name}", body=f.read())
    assert r.status == 202, r
    sn = r.json()
    assert sn["status"] == "building" and sn["name"] == name

    def done():
        j = daemon.request("GET", f"/v1/snapshots/{sn['id']}").json()
        return j if j["status"] != "building" else None

    sn = wait_for(done, timeout=60, what=f"import of {name}")
    assert sn["status"] == expect, sn
    return sn


def layer_dirs(daemon):
    return sorted(os.listdir(os.path.join(daemon.data_dir, "layers")))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    layers = three_layers()
    paths = {"docker": str(d / "docker.tar"), "oci": str(d / "oci.tar"), "oci-zstd": str(d / "oci-zstd.tar")}
    ib.docker_save(paths["docker"], layers, **CFG)
    ib.oci_layout(paths["oci"], layers, compression="gzip", **CFG)
    ib.oci_layout(paths["oci-zstd"], layers, compression=["zstd", "gzip", None], **CFG)
    return paths


def cleanup_snapshot(daemon, name):
    daemon.request("DELETE", f"/v1/snapshots/{name}")


@pytest.mark.parametrize("fmt", ["docker", "oci", "oci-zstd"])
def test_import_and_run(daemon, images, fmt):
    name = f"img-{fmt}"
    sn = import_image(daemon, images[fmt], name)
    try:
        assert len(sn["layers"]) == 3 and all(l.startswith("sha256:") for l in sn["layers"])
        assert sn["size_bytes"] > os.path.getsize(ib.BUSYBOX)
        assert sn["config"]["WorkingDir"] == "/data"
        assert sn["config"]["Env"] == CFG["env"]
        sid = daemon.create(snapshot=name)
        try:
            sb = daemon.request("GET", f"/v1/sandboxes/{sid}").json()
            assert sb["snapshot"] == sn["id"]
            out = daemon.run(sid, ["sh", "-c", "pwd; echo \"$GREETING\"; ls /data; echo ---; ls /data/sub; "
                                   "cat /etc/motd; cat /etc/hostname; id -u"])
            assert out["exit_code"] == 0, out
            lines = out["stdout"].split("\n")
            assert lines[0] == "/data"                          # WorkingDir
            assert lines[1] == "hello image"                    # Env
            sep = lines.index("---")
            assert sorted(lines[2:sep]) == ["keep", "sub"]      # whiteout hid data/gone
            assert lines[sep + 1] == "new"                      # opaque hid data/sub/old
            assert lines[sep + 2] == "from the image"
            assert lines[sep + 3] == sid                        # its own /etc/hostname
            assert lines[sep + 4] == "0"
            # Image files belong to root inside (idmapped layers), and copy-up works.
            out = daemon.run(sid, ["sh", "-c", "stat -c '%u %g' /bin/busybox /data/keep; echo more >> /data/keep;"
                                   " cat /data/keep; rm /data/sub/new; ls /data/sub | wc -l"])
            assert out["stdout"].split("\n")[:5] == ["0 0", "0 0", "keep", "more", "0"], out
            # The command's own cwd and env still win.
            out = daemon.run(sid, ["sh", "-c", "pwd; echo $GREETING"], cwd="/tmp", env={"GREETING": "x"})
            assert out["stdout"] == "/tmp\nx\n"
        finally:
            daemon.delete(sid)
    finally:
        cleanup_snapshot(daemon, name)


def test_layers_are_shared_and_collected(daemon, images):
    before = layer_dirs(daemon)
    a = import_image(daemon, images["docker"], "share-a")
    b = import_image(daemon, images["oci"], "share-b")
    # Same diff_ids whatever the format and compression: one copy on disk.
    assert a["layers"] == b["layers"]
    hexes = {l.split(":")[1] for l in a["layers"]}
    assert hexes <= set(layer_dirs(daemon))
    layers = daemon.request("GET", "/v1/layers").json()
    refs = {l["digest"]: l["refs"] for l in layers["layers"]}
    assert all(refs[l] == 2 for l in a["layers"])
    assert layers["total_bytes"] >= a["size_bytes"]

    sid = daemon.create(snapshot="share-a")
    r = daemon.request("DELETE", "/v1/snapshots/share-a")
    assert r.status == 409 and r.error_code() == "conflict", r
    daemon.delete(sid)
    assert daemon.request("DELETE", "/v1/snapshots/share-a").status == 204
    assert daemon.request("GET", "/v1/snapshots/share-a").status == 404
    assert hexes <= set(layer_dirs(daemon))  # still used by share-b
    assert daemon.request("DELETE", "/v1/snapshots/share-b").status == 204
    assert not (hexes & set(layer_dirs(daemon)))  # collected
    assert layer_dirs(daemon) == before
    assert os.listdir(os.path.join(daemon.data_dir, "uploads")) == []


def test_list_get_and_errors(daemon, images):
    r = daemon.request("GET", "/v1/snapshots")
    assert r.status == 200
    host = r.json()["snapshots"][0]
    assert host["id"] == "host" and host["status"] == "ready"
    assert daemon.request("GET", "/v1/snapshots/host").json()["name"] == "host"
    assert daemon.request("DELETE", "/v1/snapshots/host").status == 403
    assert daemon.request("GET", "/v1/snapshots/nope").status == 404
    r = daemon.request("POST", "/v1/sandboxes", {"snapshot": "nope"})
    assert r.status == 404, r
    assert daemon.request("POST", "/v1/snapshots", body=b"x").status == 400  # no name
    assert daemon.request("POST", "/v1/snapshots?name=bad/name", body=b"x").status in (400, 404)
    import_image(daemon, images["docker"], "dup")
    try:
        with open(images["docker"], "rb") as f:
            r = daemon.request("POST", "/v1/snapshots?name=dup", body=f.read())
        assert r.status == 409, r
        # A sandbox created by name and by id both work; the host snapshot still gives host binds.
        sn = daemon.request("GET", "/v1/snapshots/dup").json()
        sid = daemon.create(snapshot=sn["id"])
        daemon.delete(sid)
        hid = daemon.create(snapshot="host")
        assert daemon.run(hid, "test -x /usr/bin/python3 && echo ok")["stdout"] == "ok\n"
        daemon.delete(hid)
    finally:
        cleanup_snapshot(daemon, "dup")


def test_failed_import_is_reported(daemon, tmp_path):
    p = tmp_path / "arch.tar"
    ib.docker_save(str(p), [ib.busybox_layer().bytes()], arch="s390x")
    sn = import_image(daemon, str(p), "wrong-arch", expect="failed")
    assert "architecture" in sn["reason"]
    r = daemon.request("POST", "/v1/sandboxes", {"snapshot": "wrong-arch"})
    assert r.status == 409, r
    assert daemon.request("DELETE", "/v1/snapshots/wrong-arch").status == 204


def test_stop_start_keeps_image_rootfs(daemon, images):
    import_image(daemon, images["oci"], "restart")
    try:
        sid = daemon.create(snapshot="restart")
        daemon.run(sid, "echo kept > /data/new")
        assert daemon.request("POST", f"/v1/sandboxes/{sid}/stop").status == 200
        assert daemon.request("POST", f"/v1/sandboxes/{sid}/start").status == 200
        assert daemon.run(sid, "cat /data/new /data/keep")["stdout"] == "kept\nkeep\n"
        daemon.delete(sid)
    finally:
        cleanup_snapshot(daemon, "restart")


def test_cli_snapshot(daemon, images):
    env = dict(os.environ, SBX_URL=daemon.url)
    sbx = os.path.join(BIN, "sbx")

    def run(*args, check=True):
        p = subprocess.run([sbx, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=120)
        if check:
            assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p

    p = run("snapshot", "import", images["docker"], "--name", "cli-img")
    assert "ready" in p.stdout + p.stderr
    ls = run("snapshot", "ls").stdout
    assert "cli-img" in ls and "host" in ls
    sid = run("create", "--snapshot", "cli-img").stdout.strip()
    assert run("exec", sid, "--", "cat", "/etc/motd").stdout == "from the image\n"
    assert run("snapshot", "rm", "cli-img", check=False).returncode != 0  # in use
    run("rm", sid)
    run("snapshot", "rm", "cli-img")
    assert "cli-img" not in run("snapshot", "ls").stdout


def test_bench_create_from_image_vs_host(daemon, images):
    """Named creates are always built (no warm pool): image (3 layers) vs host."""
    import_image(daemon, images["docker"], "bench")
    try:
        def timed(**kw):
            t = []
            for i in range(5):
                t0 = time.monotonic()
                r = daemon.request("POST", "/v1/sandboxes", dict(kw, name=f"b{i}-{time.monotonic_ns()}"))
                t.append(time.monotonic() - t0)
                assert r.status == 201, r
                daemon.delete(r.json()["id"])
            return statistics.median(t)
        host = timed(snapshot="host")
        image = timed(snapshot="bench")
        print(f"\ncreate median: host {host * 1000:.1f} ms, 3-layer image {image * 1000:.1f} ms, "
              f"ratio {image / host:.2f}")
        assert image < host * 2.0 + 0.005, (host, image)
    finally:
        cleanup_snapshot(daemon, "bench")


def test_image_user_is_the_default(daemon, tmp_path):
    """An image's User is who commands run as unless they name another; `root` overrides it."""
    p = tmp_path / "user.tar"
    ib.docker_save(str(p), [ib.busybox_layer().bytes()], user="nobody:nogroup")
    import_image(daemon, str(p), "img-user")
    try:
        sid = daemon.create(snapshot="img-user")
        try:
            assert daemon.run(sid, ["sh", "-c", "id -u; pwd; echo $HOME"])["stdout"] == "65534\n/\n/\n"
            assert daemon.run(sid, ["id", "-u"], user="root")["stdout"] == "0\n"
        finally:
            daemon.delete(sid)
    finally:
        cleanup_snapshot(daemon, "img-user")
