"""Named volumes: sized disks of their own that outlive sandboxes, mounted into several at once with the
same owners in each (idmapped), read-only where asked, never a host path."""
import os
import signal
import tempfile

from sbxtest import Daemon, cli, host_mounts_under


def make_volume(d, name, size_mb=64, expect=201):
    r = d.request("POST", "/v1/volumes", {"name": name, "size_mb": size_mb})
    assert r.status == expect, r
    return r.json()


def test_volume_is_shared_persistent_and_typed(daemon):
    vol = make_volume(daemon, "shared")
    assert vol["id"].startswith("vol_") and vol["size_mb"] == 64 and vol["used_bytes"] >= 0, vol
    a = daemon.create(volumes=[{"volume": "shared", "path": "/data"}])
    got = daemon.request("GET", f"/v1/sandboxes/{a}").json()
    assert got["volumes"] == [{"volume": vol["id"], "path": "/data", "read_only": False}], got
    res = daemon.run(a, "echo hello > /data/f && mkdir /data/d && chown 1234:1234 /data/d && "
                        "stat -c '%u:%g' /data /data/f /data/d")
    assert res["stdout"] == "0:0\n0:0\n1234:1234\n", res
    # Another sandbox (another host id range) sees the same files with the same owners; read-only here.
    b = daemon.create(volumes=[{"volume": vol["id"], "path": "/mnt/ro", "read_only": True}])
    res = daemon.run(b, "cat /mnt/ro/f; stat -c '%u:%g' /mnt/ro/d; echo x > /mnt/ro/g || echo refused")
    assert res["stdout"] == "hello\n1234:1234\nrefused\n", res
    # The volume has its own size: filling it fails inside without touching the sandbox's disk.
    res = daemon.run(a, "dd if=/dev/zero of=/data/big bs=1M count=100 2>&1; rm -f /data/big; echo x > /root/ok")
    assert "No space left" in res["stdout"], res
    # In use: cannot be deleted.
    r = daemon.request("DELETE", "/v1/volumes/shared")
    assert r.status == 409 and r.error_code() == "busy", r
    daemon.delete(a)
    daemon.delete(b)
    # It outlives its sandboxes.
    c = daemon.create(volumes=[{"volume": "shared", "path": "/data"}])
    assert daemon.run(c, "cat /data/f")["stdout"] == "hello\n"
    daemon.delete(c)
    listed = daemon.request("GET", "/v1/volumes").json()["volumes"]
    assert [v["name"] for v in listed] == ["shared"]
    assert daemon.request("DELETE", f"/v1/volumes/{vol['id']}").status == 204
    assert daemon.request("GET", "/v1/volumes/shared").status == 404
    assert not [m for m in host_mounts_under(daemon.data_dir) if "/volumes/" in m]
    assert os.listdir(os.path.join(daemon.data_dir, "volumes")) == []


def test_bad_volume_requests(daemon):
    make_volume(daemon, "v1")
    make_volume(daemon, "v1", expect=409)
    for body in ({"name": "../x"}, {"name": "ok", "size_mb": 1}, {"name": "ok", "size_mb": "64"}, {}):
        r = daemon.request("POST", "/v1/volumes", body)
        assert r.status == 400 and r.error_code() == "invalid_argument", (body, r)
    bad_mounts = [
        ([{"volume": "nope", "path": "/data"}], 404),
        ([{"volume": "v1", "path": "data"}], 400),
        ([{"volume": "v1", "path": "/"}], 400),
        ([{"volume": "v1", "path": "/proc/x"}], 400),
        ([{"volume": "v1", "path": "/a/../etc"}], 400),
        ([{"volume": "v1", "path": "/a"}, {"volume": "v1", "path": "/a"}], 400),
        ([{"volume": "v1", "path": "/a", "read_only": "yes"}], 400),
        ({"volume": "v1"}, 400),
        ([{"volume": "v1", "path": "/x"}] * 17, 400),
    ]
    for mounts, status in bad_mounts:
        r = daemon.request("POST", "/v1/sandboxes", {"volumes": mounts})
        assert r.status == status, (mounts, r)
    assert daemon.request("DELETE", "/v1/volumes/v1").status == 204


def test_volumes_stay_mounted_for_kept_sandboxes_across_restart():
    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-vol-", dir="/var/tmp")
    d = Daemon(ephemeral=False, data_dir=data_dir).start()
    make_volume(d, "keep")
    sid = d.create(volumes=[{"volume": "keep", "path": "/data"}])
    d.run(sid, "echo 1 > /data/one")
    assert d.stop(signal.SIGTERM) == 0
    d2 = Daemon(ephemeral=True, data_dir=data_dir)
    d2.port = d.port
    d2.start()
    try:
        assert d2.run(sid, "cat /data/one; echo 2 > /data/two")["stdout"] == "1\n"
        d2.request("POST", f"/v1/sandboxes/{sid}/stop")
        d2.request("POST", f"/v1/sandboxes/{sid}/start")
        assert d2.run(sid, "cat /data/two")["stdout"] == "2\n"
    finally:
        assert d2.stop() == 0, d2.read_log()
    # Ephemeral exit: sandboxes deleted, then the volumes unmounted (their data stays on disk).
    assert not [m for m in host_mounts_under(data_dir) if "/volumes/" in m]
    os.system(f"rm -rf --one-file-system {data_dir}")


def test_cli_volume(daemon):
    import json

    def sbx(*args, check=True):
        return cli(daemon, *args, check=check)

    vid = sbx("volume", "create", "clivol", "--size", "128M").stdout.decode().strip()
    assert vid.startswith("vol_")
    assert json.loads(sbx("volume", "get", "clivol").stdout)["size_mb"] == 128
    assert [v["name"] for v in json.loads(sbx("volume", "ls", "--json").stdout)] == ["clivol"]
    sid = sbx("create", "--volume", "clivol:/work", "-v", "clivol:/ro:ro").stdout.decode().strip()
    assert daemon.run(sid, "echo hi > /work/x; cat /ro/x; touch /ro/y || echo refused")["stdout"] == "hi\nrefused\n"
    p = sbx("volume", "rm", "clivol", check=False)
    assert p.returncode == 1 and b"busy" in p.stderr, p
    p = sbx("create", "--volume", "clivol", check=False)
    assert p.returncode == 1 and b"invalid_argument" in p.stderr, p
    daemon.delete(sid)
    sbx("volume", "rm", "clivol")
    assert json.loads(sbx("volume", "ls", "--json").stdout) == []
