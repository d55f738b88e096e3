"""Volumes never expose host paths: a mount point is resolved inside the sandbox's root without following
symlinks (a sandbox's own files, such as a checkpoint's, could otherwise aim a volume mount at a host
directory), and only sbxd's own volumes can be mounted (a `volume` is a name, never a path)."""


def make_volume(d, name):
    r = d.request("POST", "/v1/volumes", {"name": name, "size_mb": 64})
    assert r.status == 201, r
    return r.json()


def test_symlink_in_the_sandbox_cannot_redirect_a_volume_mount(daemon):
    """A sandbox's own files (here from a checkpoint) are not trusted when its volumes are mounted: a
    symlink at the mount point is refused, never followed to a host path."""
    make_volume(daemon, "redir")
    src = daemon.create()
    daemon.run(src, "ln -s /etc /root/mnt")
    r = daemon.request("POST", f"/v1/sandboxes/{src}/checkpoints", {"name": "link"})
    assert r.status == 201, r
    r = daemon.request("POST", "/v1/sandboxes",
                       {"checkpoint": f"{src}:link", "volumes": [{"volume": "redir", "path": "/root/mnt"}]})
    assert r.status >= 400 and "volume mount point /root/mnt" in r.json()["error"]["message"], r
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    assert not [p for p in points if p == "/etc" or p.startswith("/etc/")], points
    daemon.delete(src)
    assert daemon.request("DELETE", "/v1/volumes/redir").status == 204


def test_a_volume_is_a_name_not_a_host_path(daemon):
    for ref in ("/etc", "../../etc", "/var/tmp"):
        r = daemon.request("POST", "/v1/sandboxes", {"volumes": [{"volume": ref, "path": "/data"}]})
        assert r.status == 404 and r.error_code() == "not_found", (ref, r)


def test_tenants_cannot_see_or_mount_each_others_volumes():
    from sbxtest import Daemon

    with Daemon(api_key="admin-vol-secret") as d:
        keys = [d.request("POST", "/v1/keys", {"name": n}).json()["key"] for n in ("a", "b")]

        def as_key(key, method, path, body=None):
            return d.request(method, path, body, headers={"Authorization": f"Bearer {key}"}, auth=False)

        r = as_key(keys[0], "POST", "/v1/volumes", {"name": "private", "size_mb": 64})
        assert r.status == 201, r
        vid = r.json()["id"]
        # The same name is free for another tenant: names are per owner.
        assert as_key(keys[1], "POST", "/v1/volumes", {"name": "private", "size_mb": 64}).status == 201
        assert [v["id"] for v in as_key(keys[1], "GET", "/v1/volumes").json()["volumes"]] != [vid]
        for ref in (vid,):
            assert as_key(keys[1], "GET", f"/v1/volumes/{ref}").status == 404
            assert as_key(keys[1], "DELETE", f"/v1/volumes/{ref}").status == 404
            r = as_key(keys[1], "POST", "/v1/sandboxes", {"volumes": [{"volume": ref, "path": "/data"}]})
            assert r.status == 404, r
        r = as_key(keys[0], "POST", "/v1/sandboxes", {"volumes": [{"volume": "private", "path": "/data"}]})
        assert r.status == 201, r
        assert d.stop() == 0, d.read_log()


def test_files_api_in_a_volume_stays_in_the_sandbox(daemon):
    """The files API writes into volumes as the sandbox's root (the idmapped mount refuses host root):
    symlinks the sandbox plants in its volume still resolve inside the sandbox, a write through a final
    symlink replaces the link, and what the API creates is owned by the sandbox's root, never host root."""
    import os
    make_volume(daemon, "links")
    sid = daemon.create(volumes=[{"volume": "links", "path": "/data"}])
    canary = "/var/tmp/sbx-volume-canary"
    with open(canary, "w") as f:
        f.write("host\n")
    try:
        daemon.run(sid, f"ln -s {canary} /data/abs && ln -s ../../../../../../var/tmp /data/up && "
                        "mkdir -p /var/tmp")
        for path in ("/data/abs", "/data/up/sbx-volume-canary"):
            r = daemon.request("PUT", f"/v1/sandboxes/{sid}/files?path={path}", body=b"sandbox\n")
            assert r.status in (200, 201), (path, r)
        with open(canary) as f:
            assert f.read() == "host\n"
        res = daemon.run(sid, "test -L /data/abs || cat /data/abs; cat /var/tmp/sbx-volume-canary; "
                              "stat -c '%u:%g' /data/abs /var/tmp/sbx-volume-canary")
        assert res["stdout"] == "sandbox\nsandbox\n0:0\n0:0\n", res
    finally:
        os.unlink(canary)
        daemon.delete(sid)
        daemon.request("DELETE", "/v1/volumes/links")
