"""Stop ends a sandbox's processes and mounts but keeps its files; start brings it back under the same
id; calls on a stopped sandbox answer a typed not_running error."""
import os
import random
import subprocess

from sbxtest import BIN, host_mounts_under, processes_with_cmdline, wait_for


def state(daemon, sid):
    return daemon.request("GET", f"/v1/sandboxes/{sid}").json()["state"]


def test_stop_keeps_files_and_start_brings_it_back(daemon):
    sid = daemon.create(name="stopper")
    assert daemon.run(sid, "echo kept > /root/keep.txt; mkdir -p /opt2; echo x > /tmp/t")["exit_code"] == 0
    marker = f"sleep {6000 + random.randrange(1000)}"
    daemon.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": marker})
    wait_for(lambda: processes_with_cmdline(marker), what="the sleep to start")  # positive control
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/stop")
    assert r.status == 200 and r.json()["state"] == "stopped", r
    assert state(daemon, sid) == "stopped"
    assert processes_with_cmdline(marker) == [], "a stopped sandbox's processes are still running"
    assert [m for m in host_mounts_under(daemon.data_dir) if f"/sandboxes/{sid}/" in m] == []
    # Typed errors while stopped; nothing is resumed behind the caller's back.
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": "true", "wait": True})
    assert r.status == 409 and r.error_code() == "not_running", r
    r = daemon.request("GET", f"/v1/sandboxes/{sid}/files?path=/root/keep.txt")
    assert r.status == 409 and r.error_code() == "not_running", r
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/pause")
    assert r.status == 409 and r.error_code() == "not_running", r
    assert daemon.request("POST", f"/v1/sandboxes/{sid}/stop").status == 200  # idempotent

    r = daemon.request("POST", f"/v1/sandboxes/{sid}/start")
    assert r.status == 200 and r.json()["state"] == "running" and r.json()["id"] == sid, r
    res = daemon.run(sid, "cat /root/keep.txt; hostname")
    assert res["stdout"] == "kept\nstopper\n", res
    assert daemon.request("GET", f"/v1/sandboxes/{sid}/files?path=/root/keep.txt").body == b"kept\n"
    assert daemon.request("POST", f"/v1/sandboxes/{sid}/start").status == 200  # idempotent

    # Stopped sandboxes delete cleanly too.
    assert daemon.request("POST", f"/v1/sandboxes/{sid}/stop").status == 200
    daemon.delete(sid)
    assert not os.path.exists(os.path.join(daemon.data_dir, "sandboxes", sid))


def test_cli_stop_start(daemon, sandbox):
    env = dict(os.environ, SBX_URL=daemon.url)
    env.pop("SBX_API_KEY", None)
    for verb, want in (("stop", "stopped"), ("start", "running")):
        p = subprocess.run([os.path.join(BIN, "sbx"), verb, sandbox], env=env, capture_output=True, timeout=60)
        assert p.returncode == 0, p
        assert state(daemon, sandbox) == want
    p = subprocess.run([os.path.join(BIN, "sbx"), "exec", sandbox, "--", "true"], env=env, capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p
