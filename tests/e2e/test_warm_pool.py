"""The warm pool: sandboxes created ahead of demand are handed out whole, refilled in the background,
and never outlive sbxd's interest in them (exit, crash and restart)."""
import os
import signal
import subprocess
import tempfile

from sbxtest import Daemon, host_mounts_under, processes_with_cmdline, wait_for


def mounts_of(d, sid):
    return [m for m in host_mounts_under(d.data_dir) if f"/sandboxes/{sid}/" in m]


def test_default_create_comes_from_the_pool_and_refills():
    with Daemon(extra_args=["--warm", "2"]) as d:
        wait_for(lambda: len(d.warm_ids()) == 2, timeout=20, what="the warm pool to fill")
        warm = d.warm_ids()
        assert all(mounts_of(d, w) for w in warm)  # really created: rootfs mounted
        listed = {s["id"] for s in d.request("GET", "/v1/sandboxes").json()["sandboxes"]}
        assert not (warm & listed), "warm sandboxes must not be visible before they are handed out"

        sid = d.create(env={"GREETING": "hi"}, metadata={"owner": "test"})
        assert sid in warm, "a default-shaped create should be served from the pool"
        got = d.request("GET", f"/v1/sandboxes/{sid}").json()
        assert got["metadata"] == {"owner": "test"} and got["env"] == {"GREETING": "hi"}
        res = d.run(sid, ["sh", "-c", "echo $GREETING; hostname; id -u"])
        assert res["exit_code"] == 0 and res["stdout"] == f"hi\n{sid}\n0\n", res
        assert sid not in d.warm_ids()
        wait_for(lambda: len(d.warm_ids()) == 2, timeout=20, what="the warm pool to refill")

        # Other resources are applied to a warm sandbox's cgroup; a name (the hostname) is made to measure.
        warm = d.warm_ids()
        small = d.create(resources={"memory_mb": 256, "pids": 64})
        assert small in warm
        assert memory_limit(small) == 256 << 20
        res = d.run(small, ["sh", "-c", "for i in $(seq 1 100); do sleep 5 & done; wait"])
        assert res["exit_code"] != 0 or "fork" in res["stderr"] or "Resource" in res["stderr"], res
        named = d.create(name="made-to-measure")
        assert named not in warm
        assert d.run(named, ["hostname"])["stdout"] == "made-to-measure\n"
        for s in (sid, named, small):
            d.delete(s)


def memory_limit(sid):
    """The memory limit sbx set for a sandbox, read from its cgroup on the host (v2 or v1)."""
    for path in (f"/sys/fs/cgroup/sbx/{sid}/memory.max", f"/sys/fs/cgroup/memory/sbx/{sid}/memory.limit_in_bytes"):
        if os.path.exists(path):
            with open(path) as f:
                return int(f.read().strip())
    raise AssertionError(f"no memory cgroup for {sid}")


def test_warm_sandboxes_never_outlive_sbxd():
    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-warm-", dir="/var/tmp")
    try:
        # Not ephemeral: real sandboxes stay across a restart, warm ones do not.
        d = Daemon(ephemeral=False, data_dir=data_dir, extra_args=["--warm", "2"]).start()
        wait_for(lambda: len(d.warm_ids()) == 2, timeout=20, what="the warm pool to fill")
        kept = d.create(name="kept")
        wait_for(lambda: len(d.warm_ids()) == 2, timeout=20, what="the warm pool to refill")
        warm = d.warm_ids()
        assert d.stop(signal.SIGTERM) == 0
        for w in warm:
            assert mounts_of(d, w) == [] and processes_with_cmdline(w) == [], w
            assert not os.path.exists(os.path.join(data_dir, "sandboxes", w))
        assert mounts_of(d, kept), "a real sandbox must survive a non-ephemeral exit"

        # After a crash the next sbxd discards the warm sandboxes it finds and keeps the real one.
        d2 = Daemon(ephemeral=False, data_dir=data_dir, extra_args=["--warm", "1"]).start()
        wait_for(lambda: len(d2.warm_ids()) == 1, timeout=20, what="the warm pool to fill")
        crashed_warm = d2.warm_ids()
        d2.stop(signal.SIGKILL)
        d3 = Daemon(ephemeral=True, data_dir=data_dir, extra_args=["--warm", "0"]).start()
        for w in crashed_warm:
            assert mounts_of(d3, w) == [] and processes_with_cmdline(w) == [], w
        assert d3.warm_ids() == set()
        assert d3.run(kept, ["true"])["exit_code"] == 0
        assert d3.stop(signal.SIGTERM) == 0
        assert host_mounts_under(data_dir) == []
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", data_dir], check=False)
