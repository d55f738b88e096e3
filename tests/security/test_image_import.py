"""Image imports are untrusted input (docs/design/snapshots.md): tar escapes, links, device nodes, digest
mismatches, truncated or corrupt archives, oversized layers and foreign architectures must end in a
`failed` snapshot with a clear reason, with nothing written outside the layer store and nothing left
half-written in it."""
import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import imagebuild as ib  # noqa: E402
from sbxtest import Daemon, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(ib.BUSYBOX), reason="busybox-static is not installed")


def post_image(daemon, data, name):
    r = daemon.request("POST", f"/v1/snapshots?name={name}", body=data)
    assert r.status == 202, r
    sid = r.json()["id"]

    def done():
        j = daemon.request("GET", f"/v1/snapshots/{sid}").json()
        return j if j["status"] != "building" else None

    return wait_for(done, timeout=60, what=f"import of {name}")


def store_state(daemon):
    layers = os.path.join(daemon.data_dir, "layers")
    return sorted(os.listdir(layers)), sorted(os.listdir(os.path.join(daemon.data_dir, "uploads")))


def expect_failure(daemon, tmp_path, layers, reason_part, fmt="docker", **kw):
    """Packs layers (tar bytes), imports them and checks the failure and that nothing was left behind."""
    before = store_state(daemon)
    path = tmp_path / f"img-{uuid.uuid4().hex[:8]}.tar"
    if fmt == "docker":
        ib.docker_save(str(path), layers, **kw)
    else:
        ib.oci_layout(str(path), layers, **kw)
    name = f"bad-{uuid.uuid4().hex[:10]}"
    sn = post_image(daemon, path.read_bytes(), name)
    try:
        assert sn["status"] == "failed", sn
        assert reason_part.lower() in sn["reason"].lower(), sn["reason"]
        assert sn["layers"] == []
        # No staging dir, no upload, no new layer: the failed import left nothing.
        wait_for(lambda: store_state(daemon) == before, timeout=10, what="import cleanup")
        r = daemon.request("POST", "/v1/sandboxes", {"snapshot": name})
        assert r.status == 409, r
    finally:
        assert daemon.request("DELETE", f"/v1/snapshots/{name}").status == 204
    return sn


@pytest.fixture
def outside(tmp_path):
    """A host path the image tries to reach; must never appear."""
    p = f"/tmp/sbx-escape-{uuid.uuid4().hex}"
    yield p
    assert not os.path.lexists(p), f"the import wrote {p} on the host"


def base():
    return ib.busybox_layer().bytes()


def test_absolute_path(daemon, tmp_path, outside):
    evil = ib.Layer().file(outside.lstrip("/") + "-rel", "x").file(outside, "pwned").bytes()
    expect_failure(daemon, tmp_path, [base(), evil], "absolute path")


def test_dotdot(daemon, tmp_path, outside):
    evil = ib.Layer().file("a/../../../../../.." + outside, "pwned").bytes()
    expect_failure(daemon, tmp_path, [base(), evil], "`..`")


def test_symlink_then_write_through(daemon, tmp_path, outside):
    os.makedirs(outside)
    try:
        evil = ib.Layer().symlink("link", outside).file("link/pwned", "pwned").bytes()
        expect_failure(daemon, tmp_path, [base(), evil], "symlink")
        assert os.listdir(outside) == []
    finally:
        os.rmdir(outside)


def test_symlink_to_parent_then_write(daemon, tmp_path):
    evil = ib.Layer().symlink("up", "..").file("up/up/escaped", "pwned").bytes()
    expect_failure(daemon, tmp_path, [base(), evil], "symlink")


def test_symlink_in_lower_layer_is_not_followed(daemon, tmp_path, outside):
    """A symlink in one layer and a write through it in the next: each layer is unpacked on its own, so
    the second layer's `link/pwned` creates a real directory `link` in that layer."""
    os.makedirs(outside)
    try:
        l1 = ib.Layer().symlink("link", outside).bytes()
        l2 = ib.Layer().file("link/pwned", "pwned").bytes()
        path = tmp_path / "two.tar"
        ib.docker_save(str(path), [base(), l1, l2])
        sn = post_image(daemon, path.read_bytes(), "two-layer-link")
        assert sn["status"] == "ready", sn
        assert os.listdir(outside) == []
        sid = daemon.create(snapshot="two-layer-link")
        out = daemon.run(sid, ["sh", "-c", "cat /link/pwned; test -L /link && echo link || echo dir"])
        assert out["stdout"] == "pwneddir\n", out
        daemon.delete(sid)
        assert os.listdir(outside) == []
    finally:
        daemon.request("DELETE", "/v1/snapshots/two-layer-link")
        os.rmdir(outside)


def test_hardlink_to_host_file(daemon, tmp_path):
    evil = ib.Layer().hardlink("shadow", "/etc/shadow").bytes()
    expect_failure(daemon, tmp_path, [base(), evil], "absolute path")
    evil = ib.Layer().hardlink("shadow", "../../../../../../etc/shadow").bytes()
    expect_failure(daemon, tmp_path, [base(), evil], "`..`")


def test_hardlink_through_symlink(daemon, tmp_path):
    evil = ib.Layer().symlink("etc2", "/etc").hardlink("shadow", "etc2/shadow").bytes()
    expect_failure(daemon, tmp_path, [base(), evil], "symlink")


def test_hardlink_to_other_layer(daemon, tmp_path):
    evil = ib.Layer().hardlink("sh2", "bin/busybox").bytes()
    expect_failure(daemon, tmp_path, [base(), evil], "not in this layer")


def test_device_node(daemon, tmp_path):
    evil = ib.Layer().dir("dev2").device("dev2/sda", 8, 0, kind=ib.tarfile.BLKTYPE).bytes()
    expect_failure(daemon, tmp_path, [base(), evil], "device node")
    evil = ib.Layer().device("mem", 1, 1).bytes()
    expect_failure(daemon, tmp_path, [base(), evil], "device node")


def test_foreign_owner(daemon, tmp_path):
    evil = ib.Layer().file("x", "x", uid=100000).bytes()
    expect_failure(daemon, tmp_path, [base(), evil], "outside 0..65535")


def test_layer_digest_mismatch(daemon, tmp_path):
    layers = [base(), ib.Layer().file("a", "a").bytes()]
    # docker save: the config's diff_ids name other content.
    cfg = ib.image_config([ib.sha256(layers[0]), ib.sha256(b"something else")])
    expect_failure(daemon, tmp_path, layers, "digest mismatch", config=cfg)
    # OCI: a blob whose bytes do not match its digest.
    expect_failure(daemon, tmp_path, layers, "digest mismatch", fmt="oci", corrupt_blob=1, compression=None)


def test_config_digest_mismatch(daemon, tmp_path):
    layers = [base()]
    path = tmp_path / "cfg.tar"
    ib.docker_save(str(path), layers)
    # Rewrite the config member's content while keeping its digest name.
    import io
    import tarfile
    src = tarfile.open(str(path))
    out_path = tmp_path / "cfg2.tar"
    with tarfile.open(str(out_path), "w") as out:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name.endswith(".json") and m.name != "manifest.json":
                data = data.replace(b'"os": "linux"', b'"os": "linux", "x": 1')
                m.size = len(data)
            out.addfile(m, io.BytesIO(data) if data is not None else None)
    sn = post_image(daemon, out_path.read_bytes(), "cfg-mismatch")
    assert sn["status"] == "failed" and "digest mismatch" in sn["reason"], sn
    daemon.request("DELETE", "/v1/snapshots/cfg-mismatch")


def test_truncated_and_corrupt(daemon, tmp_path):
    before = store_state(daemon)
    path = tmp_path / "ok.tar"
    ib.oci_layout(str(path), [base(), ib.Layer().file("a", "a" * 100000).bytes()], compression="gzip")
    data = path.read_bytes()
    for i, body in enumerate([data[: len(data) // 2], data[:-30000], b"\x1f\x8b" + os.urandom(5000),
                              os.urandom(20000)]):
        sn = post_image(daemon, body, f"trunc{i}")
        assert sn["status"] == "failed", sn
        assert sn["reason"], sn
        daemon.request("DELETE", f"/v1/snapshots/trunc{i}")
    assert store_state(daemon) == before
    # A gzip layer cut short inside an otherwise intact archive.
    layers = [base(), ib.Layer().file("big", os.urandom(200000)).bytes()]
    gz, _ = ib.compress(layers[1], "gzip")
    cut = tmp_path / "cutlayer.tar"
    ib.oci_layout(str(cut), layers, compression="gzip")
    import io
    import tarfile
    src = tarfile.open(str(cut))
    bad = tmp_path / "cutlayer2.tar"
    with tarfile.open(str(bad), "w") as out:
        for m in src.getmembers():
            d = src.extractfile(m).read()
            if d == gz:
                d = d[: len(d) // 2]
                m.size = len(d)
            out.addfile(m, io.BytesIO(d))
    sn = post_image(daemon, bad.read_bytes(), "cutlayer")
    assert sn["status"] == "failed", sn
    daemon.request("DELETE", "/v1/snapshots/cutlayer")
    assert store_state(daemon) == before


def test_wrong_architecture(daemon, tmp_path):
    other = "arm64" if ib.HOST_ARCH == "amd64" else "amd64"
    expect_failure(daemon, tmp_path, [base()], "architecture", arch=other)
    expect_failure(daemon, tmp_path, [base()], "no manifest for linux", fmt="oci", manifest_arch=other,
                   compression=None)


def test_image_proc_symlink_refused_at_create(daemon, tmp_path):
    layers = [base(), ib.Layer().symlink("proc", "/").bytes()]
    path = tmp_path / "proc.tar"
    ib.docker_save(str(path), layers)
    sn = post_image(daemon, path.read_bytes(), "proc-link")
    assert sn["status"] == "ready", sn
    r = daemon.request("POST", "/v1/sandboxes", {"snapshot": "proc-link"})
    assert r.status >= 400, r
    assert "not a directory" in r.body.decode(), r
    assert daemon.request("DELETE", "/v1/snapshots/proc-link").status == 204


def test_limits(tmp_path):
    """Oversized layers (unpacked) and oversized uploads, with small limits."""
    with Daemon(extra_args=["--max-layer-mb", "1", "--max-image-mb", "3", "--warm", "0"]) as d:
        before = store_state(d)
        big = ib.Layer().file("big", b"\0" * (2 << 20)).bytes()
        path = tmp_path / "big.tar"
        # Compressed, the upload is small; unpacked, the layer is over the limit.
        ib.oci_layout(str(path), [big], compression="gzip")
        sn = post_image(d, path.read_bytes(), "biglayer")
        assert sn["status"] == "failed" and "larger than the limit" in sn["reason"], sn
        assert store_state(d) == before
        r = d.request("POST", "/v1/snapshots?name=bigupload", body=os.urandom(4 << 20))
        assert r.status == 413, r
        assert d.request("GET", "/v1/snapshots/bigupload").status == 404
        assert store_state(d) == before
        assert d.stop() == 0
