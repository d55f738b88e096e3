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


def test_files_api_reaches_volumes(daemon):
    """The files API sees a volume at its mount point (the host's view of the rootfs holds the idmapped
    mount, where host root cannot create): writes, directories and moves land in the volume, owned by
    the sandbox's root; a read-only volume refuses writes with 403."""
    make_volume(daemon, "files")
    sid = daemon.create(volumes=[{"volume": "files", "path": "/data"}])
    r = daemon.request("PUT", f"/v1/sandboxes/{sid}/files?path=/data/sub/a.txt", body=b"through the api\n")
    assert r.status in (200, 201), r
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/files/move",
                       {"from": "/data/sub/a.txt", "to": "/data/moved/b.txt"})
    assert r.status == 200, r
    res = daemon.run(sid, "cat /data/moved/b.txt; stat -c '%u:%g %a' /data/sub /data/moved /data/moved/b.txt")
    assert res["stdout"] == "through the api\n0:0 755\n0:0 755\n0:0 644\n", res
    assert daemon.request("GET", f"/v1/sandboxes/{sid}/files?path=/data/moved/b.txt").body == b"through the api\n"
    # Out of the volume is another filesystem: refused, nothing moved.
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/files/move", {"from": "/data/moved/b.txt", "to": "/root/b.txt"})
    assert r.status == 400 and b"crosses a mount point" in r.body, r
    r = daemon.request("PUT", f"/v1/sandboxes/{sid}/files?path=/data/gone.txt", body=b"x")
    assert r.status in (200, 201), r
    assert daemon.request("DELETE", f"/v1/sandboxes/{sid}/files?path=/data/gone.txt").status in (200, 204)
    # The mount point itself cannot be removed, even recursively, and nothing inside is touched.
    r = daemon.request("DELETE", f"/v1/sandboxes/{sid}/files?path=/data&recursive=true")
    assert r.status in (400, 409) and b"mount point" in r.body, r
    res = daemon.run(sid, "test -f /data/moved/b.txt && test -d /data/sub && test ! -e /data/gone.txt && echo kept")
    assert res["stdout"] == "kept\n", res
    daemon.delete(sid)
    # Another sandbox sees what the API wrote; mounted read-only, the API cannot write there.
    ro = daemon.create(volumes=[{"volume": "files", "path": "/ro", "read_only": True}])
    assert daemon.run(ro, "cat /ro/moved/b.txt")["stdout"] == "through the api\n"
    r = daemon.request("PUT", f"/v1/sandboxes/{ro}/files?path=/ro/new.txt", body=b"x")
    assert r.status == 403, r
    daemon.delete(ro)
