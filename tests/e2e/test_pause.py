"""Pause and resume through the cgroup freezer: a paused sandbox's processes do not advance, resume
picks up where they were, a command or file call resumes by itself, and a paused sandbox deletes."""
import os
import subprocess
import time

from sbxtest import BIN, sandbox_state_dir, wait_for

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done"


def count(daemon, sid):
    """The counter as the host sees it in the sandbox's upper dir (reading it does not resume)."""
    with open(os.path.join(sandbox_state_dir(daemon, sid), "upper", "tmp", "count")) as f:
        return int(f.read().strip() or 0)


def frozen_on_host(sid):
    for path, want in ((f"/sys/fs/cgroup/freezer/sbx/{sid}/freezer.state", "FROZEN"),
                       (f"/sys/fs/cgroup/sbx/{sid}/cgroup.events", "frozen 1")):
        if os.path.exists(path):
            with open(path) as f:
                return want in f.read()
    raise AssertionError(f"no freezer for {sid}")


def state(daemon, sid):
    return daemon.request("GET", f"/v1/sandboxes/{sid}").json()["state"]


def test_pause_stops_the_clock_and_resume_restarts_it(daemon, sandbox):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", {"id": "counter", "command": COUNTER})
    assert r.status == 201, r
    wait_for(lambda: os.path.exists(os.path.join(sandbox_state_dir(daemon, sandbox), "upper", "tmp", "count"))
             and count(daemon, sandbox) > 3, what="the counter to run")

    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/pause")
    assert r.status == 200 and r.json()["state"] == "paused", r
    assert frozen_on_host(sandbox)
    before = count(daemon, sandbox)
    time.sleep(0.5)
    assert count(daemon, sandbox) == before, "a paused sandbox kept running"
    assert state(daemon, sandbox) == "paused"
    # Pausing twice is fine.
    assert daemon.request("POST", f"/v1/sandboxes/{sandbox}/pause").status == 200

    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/resume")
    assert r.status == 200 and r.json()["state"] == "running", r
    assert not frozen_on_host(sandbox)
    wait_for(lambda: count(daemon, sandbox) > before + 3, what="the counter to advance after resume")
    # The command that ran across the pause is the same process, still running.
    got = daemon.request("GET", f"/v1/sandboxes/{sandbox}/commands/counter").json()
    assert got["state"] == "running", got


def test_calls_resume_a_paused_sandbox(daemon, sandbox):
    assert daemon.request("POST", f"/v1/sandboxes/{sandbox}/pause").status == 200
    res = daemon.run(sandbox, "echo awake")
    assert res["stdout"] == "awake\n", res
    assert state(daemon, sandbox) == "running"

    assert daemon.request("POST", f"/v1/sandboxes/{sandbox}/pause").status == 200
    r = daemon.request("PUT", f"/v1/sandboxes/{sandbox}/files?path=/root/f", body=b"x")
    assert r.status == 200, r
    assert state(daemon, sandbox) == "running"


def test_paused_sandbox_deletes_cleanly(daemon):
    sid = daemon.create()
    daemon.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": "sleep 600"})
    assert daemon.request("POST", f"/v1/sandboxes/{sid}/pause").status == 200
    t0 = time.monotonic()
    daemon.delete(sid)
    assert time.monotonic() - t0 < 5, "deleting a paused sandbox waited for a timeout"
    assert not os.path.exists(f"/sys/fs/cgroup/freezer/sbx/{sid}") and not os.path.exists(f"/sys/fs/cgroup/sbx/{sid}")


def test_pause_errors_and_cli(daemon, sandbox):
    r = daemon.request("POST", "/v1/sandboxes/sbx_doesnotexist/pause")
    assert r.status == 404 and r.error_code() == "not_found", r
    env = dict(os.environ, SBX_URL=daemon.url)
    env.pop("SBX_API_KEY", None)
    for verb, want in (("pause", "paused"), ("resume", "running")):
        p = subprocess.run([os.path.join(BIN, "sbx"), verb, sandbox], env=env, capture_output=True, timeout=60)
        assert p.returncode == 0, p
        assert state(daemon, sandbox) == want
    p = subprocess.run([os.path.join(BIN, "sbx"), "pause", "sbx_doesnotexist"], env=env, capture_output=True,
                       timeout=60)
    assert p.returncode != 0 and b"not_found" in p.stderr, p
