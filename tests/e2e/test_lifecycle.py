"""Daemon lifecycle: --ephemeral leaves nothing behind; without it sandboxes and running commands
survive sbxd being killed, and a restarted sbxd re-attaches with no byte of output lost."""
import os
import signal
import subprocess
import tempfile
import time

from sbxtest import Daemon, collect, host_mounts_under, processes_with_cmdline, wait_for


def cgroup_dirs(sid):
    found = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d == sid:
                found.append(os.path.join(root, d))
        if root.count("/") > 6:
            dirs[:] = []
    return found


def test_ephemeral_leaves_nothing():
    d = Daemon().start()
    sids = [d.create() for _ in range(3)]
    d.request("POST", f"/v1/sandboxes/{sids[0]}/commands", {"command": "sleep 600"})
    d.request("POST", f"/v1/sandboxes/{sids[1]}/commands", {"command": "sleep 600 & sleep 600"})
    assert host_mounts_under(d.data_dir)
    assert d.stop(signal.SIGTERM) == 0
    assert host_mounts_under(d.data_dir) == []
    for sid in sids:
        assert cgroup_dirs(sid) == [], sid
        assert processes_with_cmdline(sid) == []
        assert not os.path.exists(os.path.join(d.data_dir, "sandboxes", sid))
    subprocess.run(["rm", "-rf", "--one-file-system", d.data_dir])


def test_sandboxes_survive_sbxd_kill9():
    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-restart-", dir="/var/tmp")
    d = Daemon(ephemeral=False, data_dir=data_dir).start()
    try:
        sid = d.create(name="survivor")
        r = d.request("POST", f"/v1/sandboxes/{sid}/commands",
                      {"id": "ticker", "command": "for i in $(seq 1 30); do echo tick-$i; sleep 0.1; done"})
        assert r.status == 201
        d.request("PUT", f"/v1/sandboxes/{sid}/files?path=/root/keep.txt", body=b"kept")
        d.stop(signal.SIGKILL)
        time.sleep(0.5)  # the command keeps running while no daemon is there
        d2 = Daemon(ephemeral=False, data_dir=data_dir)
        d2.port = d.port
        d2.start()
        try:
            got = d2.request("GET", "/v1/sandboxes/survivor").json()
            assert got["id"] == sid and got["state"] == "running"
            out, _, ex = collect(d2.sse(sid, "ticker"))
            assert out == "".join(f"tick-{i}\n" for i in range(1, 31)).encode()
            assert ex["exit_code"] == 0
            assert d2.request("GET", f"/v1/sandboxes/{sid}/files?path=/root/keep.txt").body == b"kept"
            assert d2.run(sid, "echo still-works")["stdout"] == "still-works\n"
            d2.delete(sid)
        finally:
            d2.stop()
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", data_dir])
    assert host_mounts_under(data_dir) == []


def test_delete_kills_a_shim_that_does_not_answer():
    """A shim whose socket is gone cannot be asked to shut down: delete still leaves no process behind."""
    with Daemon(extra_args=["--warm", "0"]) as d:
        sid = d.create()
        state_dir = os.path.join(d.data_dir, "sandboxes", sid)
        shim = [p for p in processes_with_cmdline(state_dir) if b"sbx-shim" in open(f"/proc/{p}/cmdline", "rb").read()]
        assert shim, "positive control: the shim runs"
        os.unlink(os.path.join(state_dir, "shim.sock"))
        d.delete(sid)
        wait_for(lambda: all(not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split()[2] == "Z"
                             for p in shim), what="the lost shim to be killed")
        assert host_mounts_under(state_dir) == []
        assert "does not answer, killing it" in d.read_log()


def test_shim_death_marks_sandbox_failed_and_cleans_up():
    """A shim killed from outside takes its sandbox down; sbxd notices at once, cleans up what is left
    (mounts, cgroups) and reports the sandbox as `failed` with a reason; calls answer not_running; delete works."""
    with Daemon(extra_args=["--warm", "0"]) as d:
        sid = d.create()
        state_dir = os.path.join(d.data_dir, "sandboxes", sid)
        shim = [p for p in processes_with_cmdline(state_dir) if b"sbx-shim" in open(f"/proc/{p}/cmdline", "rb").read()]
        assert shim and host_mounts_under(state_dir), "positive control"
        os.kill(shim[0], signal.SIGKILL)
        wait_for(lambda: d.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "failed",
                 what="sbxd to notice the dead shim")
        assert host_mounts_under(state_dir) == []
        assert cgroup_dirs(sid) == []
        r = d.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": "true", "wait": True})
        assert r.status == 409 and r.error_code() == "not_running", r
        d.delete(sid)
        assert not os.path.exists(state_dir)
