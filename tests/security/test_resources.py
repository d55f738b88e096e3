"""Claim: resource bombs inside a sandbox are contained by its cgroup limits (pids, memory, cpu): the
daemon, the host and other sandboxes keep working."""
import os
import threading
import time

import pytest

from sbxtest import kv, processes_with_cmdline, sh, wait_for


class HealthProbe:
    """Polls /healthz in a thread while an attack runs; records failures and the worst latency."""

    def __init__(self, daemon):
        self.daemon, self.failures, self.worst, self.count = daemon, [], 0.0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                st = self.daemon.request("GET", "/healthz", timeout=10).status
                if st != 200:
                    self.failures.append(st)
            except OSError as e:
                self.failures.append(repr(e))
            self.worst = max(self.worst, time.monotonic() - t)
            self.count += 1
            self.stop.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def cgroup_dirs(daemon, sid, th, token):
    """{controller: host cgroup dir} of a sandbox, found from the host pid of a command inside."""
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                       {"command": [th.path(sid), "sleep", "30", token], "timeout": 40})
    assert r.status == 201, r
    cid = r.json()["id"]
    pids = wait_for(lambda: processes_with_cmdline(token), timeout=10, what="command's host pid")
    dirs = {}
    with open(f"/proc/{pids[0]}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls == "":
                dirs["unified"] = os.path.join("/sys/fs/cgroup", path.lstrip("/"))
                if os.path.exists("/sys/fs/cgroup/unified"):
                    dirs["unified"] = os.path.join("/sys/fs/cgroup/unified", path.lstrip("/"))
            for c in ctrls.split(","):
                if c and not c.startswith("name="):
                    dirs[c] = os.path.join("/sys/fs/cgroup", c if os.path.isdir(f"/sys/fs/cgroup/{c}") else ctrls,
                                           path.lstrip("/"))
    daemon.request("POST", f"/v1/sandboxes/{sid}/commands/{cid}/kill")
    return dirs


def read(path):
    with open(path) as f:
        return f.read().strip()


def test_limits_applied_on_host(daemon, new_sandbox, th, token):
    sid = new_sandbox(resources={"pids": 64, "memory_mb": 64, "cpus": 0.5})
    dirs = cgroup_dirs(daemon, sid, th, token)
    assert sid in " ".join(dirs.values()), f"sandbox is not in its own cgroup: {dirs}"
    if "memory" in dirs and os.path.exists(os.path.join(dirs["memory"], "memory.limit_in_bytes")):
        assert int(read(os.path.join(dirs["memory"], "memory.limit_in_bytes"))) == 64 << 20
        assert read(os.path.join(dirs["pids"], "pids.max")) == "64"
        quota = int(read(os.path.join(dirs["cpu"], "cpu.cfs_quota_us")))
        period = int(read(os.path.join(dirs["cpu"], "cpu.cfs_period_us")))
        assert abs(quota / period - 0.5) < 0.01, (quota, period)
    else:
        d = dirs["unified"]
        assert int(read(os.path.join(d, "memory.max"))) == 64 << 20
        assert read(os.path.join(d, "pids.max")) == "64"
        quota, period = read(os.path.join(d, "cpu.max")).split()
        assert abs(int(quota) / int(period) - 0.5) < 0.01


def test_forkbomb_contained(daemon, new_sandbox, th):
    bomb = new_sandbox(resources={"pids": 64})
    other = new_sandbox()
    th.path(bomb)
    with HealthProbe(daemon) as probe:
        res = th(bomb, "forkbomb", 10000, timeout=20)
    d = kv(res["stdout"])
    assert d["status"] == "ok", res
    forks = int(d["forks"])
    assert 8 <= forks < 64, f"forks={forks} with pids=64"  # positive control: fork itself works
    assert d["stopped_by"] == "EAGAIN", res
    assert not probe.failures and probe.count > 0, probe.failures
    assert probe.worst < 5, f"sbxd took {probe.worst:.1f}s to answer /healthz during the fork bomb"
    assert sh(daemon, other, "echo ok")["stdout"] == "ok\n"
    assert sh(daemon, bomb, "echo ok")["stdout"] == "ok\n"  # the helper killed its children


def test_shell_forkbomb_contained(daemon, new_sandbox):
    """A real fork bomb that never stops: the sandbox saturates its pids limit; the daemon and another
    sandbox are unaffected and the bomb dies with its sandbox."""
    bomb = new_sandbox(resources={"pids": 64})
    other = new_sandbox()
    with HealthProbe(daemon) as probe:
        r = daemon.request("POST", f"/v1/sandboxes/{bomb}/commands",
                           {"command": "b() { b | b & }; b; sleep 5", "timeout": 5})
        assert r.status == 201, r
        time.sleep(3)
        assert sh(daemon, other, "echo ok")["stdout"] == "ok\n"
    assert not probe.failures and probe.count > 0, probe.failures
    assert probe.worst < 5, probe.worst
    assert daemon.request("DELETE", f"/v1/sandboxes/{bomb}").status == 204
    assert sh(daemon, other, "echo ok")["stdout"] == "ok\n"


def test_memory_bomb_contained(daemon, new_sandbox, th):
    sid = new_sandbox(resources={"memory_mb": 64})
    ok = th(sid, "memhog", 16, timeout=20)
    assert kv(ok["stdout"])["status"] == "ok", ok  # positive control: allocation itself works
    with HealthProbe(daemon) as probe:
        res = th(sid, "memhog", 512, timeout=20)
    assert res["exit_code"] != 0, f"allocating 512 MiB with memory_mb=64 succeeded: {res}"
    assert res["signal"] == 9 or "error" in res["stdout"], res
    assert "memhog ok" not in res["stdout"], res
    assert not probe.failures, probe.failures
    assert daemon.proc.poll() is None
    assert sh(daemon, sid, "echo ok")["stdout"] == "ok\n"  # the sandbox survives its OOM kill


def test_cpu_limit_enforced(daemon, new_sandbox):
    """Two busy loops for 2 s of wall time with cpus=0.5 use about 1 s of CPU, not 4."""
    sid = new_sandbox(resources={"cpus": 0.5})
    script = r"""
import os, time
pids = []
for _ in range(2):
    p = os.fork()
    if p == 0:
        end = time.monotonic() + 2
        while time.monotonic() < end:
            pass
        os._exit(0)
    pids.append(p)
for p in pids:
    os.waitpid(p, 0)
t = os.times()
print(t.children_user + t.children_system)
"""
    res = daemon.run(sid, ["python3", "-c", script], timeout=30)
    assert res["exit_code"] == 0, res
    cpu = float(res["stdout"])
    assert 0.3 < cpu < 1.6, f"2 busy loops for 2 s used {cpu:.2f} s of CPU with cpus=0.5"


def _shim_and_init(daemon, sid):
    """(shim pid, sbx-init pid) of a sandbox, from the host's /proc."""
    from sbxtest import sandbox_state_dir
    state_dir = sandbox_state_dir(daemon, sid)
    shims = [p for p in processes_with_cmdline(state_dir)
             if open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0].endswith(b"sbx-shim")]
    assert len(shims) == 1, shims
    with open(f"/proc/{shims[0]}/task/{shims[0]}/children") as f:
        kids = [int(p) for p in f.read().split()]
    inits = [p for p in kids if open(f"/proc/{p}/comm").read().strip() == "sbx-init"]
    assert len(inits) == 1, kids
    return shims[0], inits[0]


def _oom_kills(memory_dir):
    """The kernel's count of OOM kills in a memory cgroup (v1 memory.oom_control, v2 memory.events)."""
    for name in ("memory.oom_control", "memory.events"):
        p = os.path.join(memory_dir, name)
        if os.path.exists(p):
            for line in read(p).splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
    return None


def test_oom_kill_contained(daemon, new_sandbox, th, token):
    """memory_mb=64 and a process that allocates and touches 1 GiB: the kernel's OOM killer kills that
    process (the command reports signal 9, exit code 137; the sandbox's memory cgroup counts one OOM
    kill), the sandbox's shim and init live on (same pids, a later command works, files kept), and a
    neighbour sandbox with memory of its own in use is untouched (its command still runs, no OOM kill)."""
    victim = new_sandbox(resources={"memory_mb": 64})
    neighbour = new_sandbox(resources={"memory_mb": 64})
    vdirs = cgroup_dirs(daemon, victim, th, token)
    ndirs = cgroup_dirs(daemon, neighbour, th, token + "n")
    vmem = vdirs.get("memory", vdirs.get("unified"))
    nmem = ndirs.get("memory", ndirs.get("unified"))
    assert _oom_kills(vmem) == 0 and _oom_kills(nmem) == 0, (vmem, nmem)
    assert daemon.request("PUT", f"/v1/sandboxes/{victim}/files?path=/root/keep.txt", body=b"kept").status == 200
    # The neighbour holds 32 MiB (half its limit) in a command that keeps running.
    r = daemon.request("POST", f"/v1/sandboxes/{neighbour}/commands",
                       {"id": "holder", "command": [th.path(neighbour), "memhog", "32", "hold"]})
    assert r.status == 201, r
    wait_for(lambda: int(read(os.path.join(nmem, "memory.usage_in_bytes" if "memory" in ndirs else
                                           "memory.current"))) >= 32 << 20, what="the neighbour's 32 MiB")
    before = {sid: _shim_and_init(daemon, sid) for sid in (victim, neighbour)}

    ok = th(victim, "memhog", 16, timeout=20)
    assert kv(ok["stdout"])["status"] == "ok", ok  # positive control: allocating under the limit works
    with HealthProbe(daemon) as probe:
        res = th(victim, "memhog", 1024, timeout=30)
    assert (res["exit_code"], res["signal"]) == (137, 9), f"not killed by SIGKILL: {res}"
    assert "memhog ok" not in res["stdout"], res
    assert _oom_kills(vmem) >= 1, "the kernel's OOM killer did not act in the sandbox's memory cgroup"
    assert res.get("error") in (None, {}) or res["error"].get("code") in ("oom_killed", "killed"), res
    assert not probe.failures, probe.failures

    after = {sid: _shim_and_init(daemon, sid) for sid in (victim, neighbour)}
    assert after == before, f"a shim or init was replaced: {before} -> {after}"
    assert sh(daemon, victim, "cat /root/keep.txt")["stdout"] == "kept"
    assert daemon.request("GET", f"/v1/sandboxes/{victim}").json()["state"] == "running"

    assert _oom_kills(nmem) == 0, "the neighbour saw an OOM kill"
    holder = daemon.request("GET", f"/v1/sandboxes/{neighbour}/commands/holder").json()
    assert holder["state"] == "running", holder
    assert sh(daemon, neighbour, "echo ok")["stdout"] == "ok\n"
    assert daemon.request("POST", f"/v1/sandboxes/{neighbour}/commands/holder/kill").status == 204
    assert daemon.proc.poll() is None


def test_oom_kill_has_a_clear_record(daemon, new_sandbox, th):
    """An OOM-killed command says so: error.code "oom_killed", and the sandbox's metrics count it
    (`oom_kills`, from memory.oom_control / memory.events oom_kill)."""
    sid = new_sandbox(resources={"memory_mb": 64})
    res = th(sid, "memhog", 1024, timeout=30)
    assert res["signal"] == 9, res
    m = daemon.request("GET", f"/v1/sandboxes/{sid}/metrics").json()
    assert m.get("oom_kills") == 1, m
    assert (res.get("error") or {}).get("code") == "oom_killed", res
    # Through a shell (exit 137, no signal) the record is the same; a plain SIGKILL is not an OOM kill.
    res = th(sid, "memhog", 1024, timeout=30)
    assert res["error"]["code"] == "oom_killed", res
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": "kill -9 $$", "wait": True}).json()
    assert r["signal"] == 9 and r["error"] is None, r
    sh = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                        {"command": "python3 -c 'b = bytearray(1 << 30); b[::4096] = b\"x\" * (1 << 18)'; exit $?",
                         "wait": True}).json()
    assert sh["exit_code"] == 137 and sh["error"]["code"] == "oom_killed", sh
