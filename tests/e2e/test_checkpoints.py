"""Checkpoints, restore, create from a checkpoint and fork: copies of a sandbox's disk taken with its
filesystem frozen (docs/design/snapshots.md, "Checkpoints and fork")."""
import json
import os
import random
import signal
import tempfile

from sbxtest import Daemon, cli, processes_with_cmdline, wait_for

# Regular files, an owner other than root, a set-uid bit, a symlink, a whiteout (/home is a directory of
# the lower layer: removing it leaves a whiteout in the sandbox's upper layer) and 3 MiB of data.
MARK_SCRIPT = (
    "mkdir -p /srv/app && echo v1 > /srv/app/state && "
    "echo owned > /srv/app/owned && chown 1234:1234 /srv/app/owned && chmod 644 /srv/app/owned && "
    "cp /bin/true /srv/app/suid && chmod 4755 /srv/app/suid && "
    "ln -s /srv/app/state /srv/app/link && rmdir /home && "
    "dd if=/dev/urandom of=/srv/app/blob bs=1M count=3 status=none && sha256sum /srv/app/blob | cut -c1-64"
)

CHECK_SCRIPT = (
    "cat /srv/app/state; stat -c '%u:%g %a' /srv/app/owned /srv/app/suid; readlink /srv/app/link; "
    "test -e /home && echo home-back || echo home-gone; sha256sum /srv/app/blob | cut -c1-64"
)


def checkpoint(d, sid, name=None, expect=201):
    r = d.request("POST", f"/v1/sandboxes/{sid}/checkpoints", {"name": name} if name else {})
    assert r.status == expect, r
    return r.json()


def expected_check(blob_sha, state="v1"):
    return f"{state}\n1234:1234 644\n0:0 4755\n/srv/app/state\nhome-gone\n{blob_sha}\n"


def test_checkpoint_restore_in_place(daemon):
    sid = daemon.create()
    res = daemon.run(sid, MARK_SCRIPT)
    assert res["exit_code"] == 0, res
    blob = res["stdout"].strip()
    ck = checkpoint(daemon, sid, "before")
    assert ck["name"] == "before" and ck["sandbox_id"] == sid and ck["id"].startswith("ckp_"), ck
    assert ck["snapshot"] == "host" and ck["disk_mb"] > 0
    assert ck["size_bytes"] >= 3 << 20, ck  # the blob's data is in the copy
    assert os.path.exists(os.path.join(daemon.data_dir, "checkpoints", ck["id"] + ".img"))

    # Typed errors: same name, bad name, unknown checkpoint.
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/checkpoints", {"name": "before"})
    assert r.status == 409 and r.error_code() == "conflict", r
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/checkpoints", {"name": "../x"})
    assert r.status == 400 and r.error_code() == "invalid_argument", r
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/checkpoints/nope/restore")
    assert r.status == 404 and r.error_code() == "not_found", r
    assert daemon.request("GET", f"/v1/sandboxes/{sid}/checkpoints/nope").status == 404

    # Change everything the checkpoint holds, and start a process that a restore must end.
    res = daemon.run(sid, "echo v2 > /srv/app/state; chown 0:0 /srv/app/owned; chmod 755 /srv/app/suid; "
                          "rm /srv/app/link /srv/app/blob; mkdir /home")
    assert res["exit_code"] == 0, res
    marker = f"sleep {7000 + random.randrange(1000)}"
    daemon.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": marker})
    wait_for(lambda: processes_with_cmdline(marker), what="the sleep to start")

    r = daemon.request("POST", f"/v1/sandboxes/{sid}/checkpoints/before/restore")
    assert r.status == 200 and r.json()["state"] == "running" and r.json()["id"] == sid, r
    assert processes_with_cmdline(marker) == [], "a restore restarts the sandbox's processes"
    assert daemon.run(sid, CHECK_SCRIPT)["stdout"] == expected_check(blob)

    # Listing, a second checkpoint, delete.
    checkpoint(daemon, sid, "after")
    names = [c["name"] for c in daemon.request("GET", f"/v1/sandboxes/{sid}/checkpoints").json()["checkpoints"]]
    assert names == ["before", "after"]
    assert daemon.request("DELETE", f"/v1/sandboxes/{sid}/checkpoints/after").status == 204
    assert daemon.request("DELETE", f"/v1/sandboxes/{sid}/checkpoints/after").status == 404
    daemon.delete(sid)
    # A sandbox's checkpoints go with it.
    assert os.listdir(os.path.join(daemon.data_dir, "checkpoints")) == []


def test_checkpoint_of_a_paused_and_a_stopped_sandbox(daemon):
    sid = daemon.create()
    daemon.run(sid, "echo one > /root/f")
    assert daemon.request("POST", f"/v1/sandboxes/{sid}/pause").status == 200
    checkpoint(daemon, sid, "paused")
    assert daemon.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "paused"
    assert daemon.request("POST", f"/v1/sandboxes/{sid}/stop").status == 200
    daemon.request("POST", f"/v1/sandboxes/{sid}/start")
    daemon.run(sid, "echo two > /root/f")
    assert daemon.request("POST", f"/v1/sandboxes/{sid}/stop").status == 200
    checkpoint(daemon, sid, "stopped")
    # Restoring a stopped sandbox leaves it stopped.
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/checkpoints/paused/restore")
    assert r.status == 200 and r.json()["state"] == "stopped", r
    daemon.request("POST", f"/v1/sandboxes/{sid}/start")
    assert daemon.run(sid, "cat /root/f")["stdout"] == "one\n"
    daemon.request("POST", f"/v1/sandboxes/{sid}/checkpoints/stopped/restore")
    assert daemon.run(sid, "cat /root/f")["stdout"] == "two\n"
    daemon.delete(sid)


def test_create_from_checkpoint_moves_owners_into_the_new_sandbox(daemon):
    src = daemon.create(name="ck-src", env={"FROM": "src"})
    res = daemon.run(src, MARK_SCRIPT)
    blob = res["stdout"].strip()
    ck = checkpoint(daemon, src, "base")
    for ref in (ck["id"], "ck-src:base", f"{src}:base"):
        r = daemon.request("POST", "/v1/sandboxes", {"checkpoint": ref})
        assert r.status == 201, (ref, r)
        new = r.json()["id"]
        # Same files, owners, modes (set-uid kept across the owner change), links and whiteouts; the
        # sandbox's own uid range (a different one on the host) makes root root and 1234 1234 inside.
        assert daemon.run(new, CHECK_SCRIPT)["stdout"] == expected_check(blob)
        assert daemon.run(new, "echo mine > /srv/app/state && id -u")["stdout"] == "0\n"
        daemon.delete(new)
    assert daemon.run(src, "cat /srv/app/state")["stdout"] == "v1\n"  # independent

    bad = [
        ({"checkpoint": "ckp_doesnotexist"}, 404, "not_found"),
        ({"checkpoint": "ck-src:nope"}, 404, "not_found"),
        ({"checkpoint": "no-colon"}, 400, "invalid_argument"),
        ({"checkpoint": ck["id"], "snapshot": "host"}, 400, "invalid_argument"),
        ({"checkpoint": ck["id"], "resources": {"disk_mb": ck["disk_mb"] + 64}}, 400, "invalid_argument"),
    ]
    for body, status, code in bad:
        r = daemon.request("POST", "/v1/sandboxes", body)
        assert r.status == status and r.error_code() == code, (body, r)
    daemon.delete(src)


def test_fork_makes_independent_copies(daemon):
    src = daemon.create(env={"ROLE": "parent"}, metadata={"team": "forks"})
    daemon.run(src, "echo shared > /root/state; mkdir /root/d; touch /root/d/x")
    marker = f"sleep {8000 + random.randrange(1000)}"
    daemon.request("POST", f"/v1/sandboxes/{src}/commands", {"command": marker})
    r = daemon.request("POST", f"/v1/sandboxes/{src}/fork", {"count": 3})
    assert r.status == 201, r
    forks = r.json()["sandboxes"]
    assert len(forks) == 3 and len({f["id"] for f in forks}) == 3 and src not in {f["id"] for f in forks}
    for i, f in enumerate(forks):
        assert f["state"] == "running" and f["metadata"] == {"team": "forks"}, f
        out = daemon.run(f["id"], f"cat /root/state; ls /root/d; echo $ROLE; echo fork-{i} > /root/state")
        assert out["stdout"] == "shared\nx\nparent\n", out
    for i, f in enumerate(forks):
        assert daemon.run(f["id"], "cat /root/state")["stdout"] == f"fork-{i}\n"
    assert daemon.run(src, "cat /root/state")["stdout"] == "shared\n"
    # The parent's processes keep running: a fork copies files, not processes.
    assert processes_with_cmdline(marker)
    # The temporary image is gone once the forks have their own copies.
    assert os.listdir(os.path.join(daemon.data_dir, "checkpoints")) == []
    # One fork takes the copy as its disk (moved, not copied again): same files, owners moved over.
    daemon.run(src, "chown 1234:1234 /root/d/x")
    r = daemon.request("POST", f"/v1/sandboxes/{src}/fork", {})
    assert r.status == 201 and len(r.json()["sandboxes"]) == 1, r
    one = r.json()["sandboxes"][0]["id"]
    assert daemon.run(one, "cat /root/state; stat -c %u:%g /root/d/x")["stdout"] == "shared\n1234:1234\n"
    daemon.delete(one)
    assert os.listdir(os.path.join(daemon.data_dir, "checkpoints")) == []
    for body in ({"count": 0}, {"count": 17}, {"count": "2"}):
        r = daemon.request("POST", f"/v1/sandboxes/{src}/fork", body)
        assert r.status == 400 and r.error_code() == "invalid_argument", (body, r)
    assert daemon.request("POST", "/v1/sandboxes/sbx_nope/fork", {}).status == 404
    for f in forks:
        daemon.delete(f["id"])
    daemon.delete(src)


def test_tenants_cannot_use_each_others_checkpoints():
    with Daemon(api_key="admin-secret") as d:
        keys = []
        for name in ("a", "b"):
            r = d.request("POST", "/v1/keys", {"name": name})
            assert r.status == 201, r
            keys.append(r.json()["key"])

        def as_key(key, method, path, body=None):
            return d.request(method, path, body, headers={"Authorization": f"Bearer {key}"}, auth=False)

        r = as_key(keys[0], "POST", "/v1/sandboxes", {"name": "mine"})
        sid = r.json()["id"]
        r = as_key(keys[0], "POST", f"/v1/sandboxes/{sid}/checkpoints", {"name": "c"})
        assert r.status == 201, r
        ckid = r.json()["id"]
        for ref in (ckid, f"{sid}:c"):
            r = as_key(keys[1], "POST", "/v1/sandboxes", {"checkpoint": ref})
            assert r.status == 404 and r.error_code() == "not_found", r
        assert as_key(keys[1], "GET", f"/v1/sandboxes/{sid}/checkpoints").status == 404
        assert as_key(keys[1], "POST", f"/v1/sandboxes/{sid}/fork", {}).status == 404
        r = as_key(keys[0], "POST", "/v1/sandboxes", {"checkpoint": ckid})
        assert r.status == 201, r
        assert d.stop() == 0, d.read_log()


def test_checkpoints_survive_a_restart_and_strays_are_removed():
    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-ckpt-", dir="/var/tmp")
    d = Daemon(ephemeral=False, data_dir=data_dir).start()
    sid = d.create()
    d.run(sid, "echo kept > /root/k")
    ck = checkpoint(d, sid, "k")
    assert d.stop(signal.SIGTERM) == 0
    stray = os.path.join(data_dir, "checkpoints", "fork_leftover.img")
    open(stray, "wb").close()
    d2 = Daemon(ephemeral=True, data_dir=data_dir)
    d2.port = d.port
    d2.start()
    try:
        got = d2.request("GET", f"/v1/sandboxes/{sid}/checkpoints/k")
        assert got.status == 200 and got.json()["id"] == ck["id"], got
        assert not os.path.exists(stray)
        d2.run(sid, "echo changed > /root/k")
        assert d2.request("POST", f"/v1/sandboxes/{sid}/checkpoints/k/restore").status == 200
        assert d2.run(sid, "cat /root/k")["stdout"] == "kept\n"
    finally:
        assert d2.stop() == 0, d2.read_log()
        os.system(f"rm -rf --one-file-system {data_dir}")


def test_cli_checkpoint_and_fork(daemon):
    def sbx(*args, check=True):
        return cli(daemon, *args, check=check)

    sid = daemon.create(name="cli-ck")
    daemon.run(sid, "echo first > /root/v")
    ckid, name = sbx("checkpoint", "create", "cli-ck", "first").stdout.decode().split()
    assert name == "first" and ckid.startswith("ckp_")
    unnamed = sbx("checkpoint", "create", sid).stdout.decode().split()
    assert unnamed[0] == unnamed[1]  # named by its id
    listed = json.loads(sbx("checkpoint", "ls", sid, "--json").stdout)
    assert [c["name"] for c in listed] == ["first", unnamed[0]]
    assert "first" in sbx("checkpoint", "ls", "cli-ck").stdout.decode()
    assert json.loads(sbx("checkpoint", "get", sid, "first").stdout)["id"] == ckid
    daemon.run(sid, "echo second > /root/v")
    sbx("checkpoint", "restore", "cli-ck", "first")
    assert daemon.run(sid, "cat /root/v")["stdout"] == "first\n"
    sbx("checkpoint", "rm", sid, unnamed[0])
    assert daemon.request("GET", f"/v1/sandboxes/{sid}/checkpoints/{unnamed[0]}").status == 404
    p = sbx("checkpoint", "restore", sid, "nope", check=False)
    assert p.returncode == 1 and b"not_found" in p.stderr, p
    p = sbx("checkpoint", "get", sid, "../x", check=False)
    assert p.returncode == 2, p

    created = sbx("create", "--checkpoint", "cli-ck:first").stdout.decode().strip()
    assert daemon.run(created, "cat /root/v")["stdout"] == "first\n"
    forks = sbx("fork", "cli-ck", "--count", "2").stdout.decode().split()
    assert len(forks) == 2
    for f in forks:
        assert daemon.run(f, "cat /root/v")["stdout"] == "first\n"
    for s in forks + [created, sid]:
        daemon.delete(s)


def test_recovery_thaws_a_disk_left_frozen():
    """A checkpoint's freeze outlives sbxd: killed mid-copy, it leaves the disk frozen (simulated here with
    fsfreeze, which is the same FIFREEZE). The next sbxd thaws it, so writes inside go on."""
    import subprocess
    import threading

    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-thaw-", dir="/var/tmp")
    d = Daemon(ephemeral=False, data_dir=data_dir).start()
    sid = d.create()
    disk = os.path.join(data_dir, "sandboxes", sid, "disk")
    subprocess.run(["fsfreeze", "-f", disk], check=True)
    d.stop(signal.SIGKILL)
    d2 = Daemon(ephemeral=True, data_dir=data_dir)
    d2.port = d.port
    try:
        # Positive control: while frozen, a write inside does not finish.
        done = threading.Event()
        writer = subprocess.Popen(["sh", "-c", f"echo x > {disk}/upper/probe"])
        threading.Thread(target=lambda: (writer.wait(), done.set()), daemon=True).start()
        assert not done.wait(0.5), "the disk was not frozen"
        d2.start()
        assert done.wait(10), "recovery did not thaw the disk"
        assert d2.run(sid, "echo after > /root/a && cat /root/a", timeout=10)["stdout"] == "after\n"
    finally:
        subprocess.run(["fsfreeze", "-u", disk], check=False)
        assert d2.stop() == 0, d2.read_log()
        os.system(f"rm -rf --one-file-system {data_dir}")
