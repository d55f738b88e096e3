"""Claim: deleting a sandbox leaves nothing behind on the host, even after it tried to outlive its
deletion: no process, no mount, no cgroup, no state dir."""
import glob
import os
import time

from sbxtest import host_mounts_under, processes_with_cmdline, sandbox_state_dir, sh, wait_for


def pids_in_cgroups_of(sid):
    """Host pids whose cgroup path names the sandbox, with their start times (to detect pid reuse)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                if sid not in f.read():
                    continue
            with open(f"/proc/{pid}/stat") as f:
                out[int(pid)] = f.read().rsplit(")", 1)[1].split()[19]
        except OSError:
            pass
    return out


def cgroup_dirs_of(sid):
    hits = []
    for base in glob.glob("/sys/fs/cgroup/*") + ["/sys/fs/cgroup"]:
        for depth in ("*", "*/*", "*/*/*"):
            hits += [p for p in glob.glob(os.path.join(base, depth)) if sid in os.path.basename(p) and os.path.isdir(p)]
    return sorted(set(hits))


def still_alive(pids):
    alive = []
    for pid, start in pids.items():
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[19] == start:
                    alive.append(pid)
        except OSError:
            pass
    return alive


SURVIVORS = """
H={helper}
$H sleep 300 {tok}-bg >/dev/null 2>&1 &
setsid sh -c 'trap "" TERM HUP INT; exec {helper} sleep 300 {tok}-daemon' </dev/null >/dev/null 2>&1 &
sh -c 'trap "" TERM HUP INT; {helper} sleep 300 {tok}-noterm' </dev/null >/dev/null 2>&1 &
$H sleep 300 {tok}-stopped >/dev/null 2>&1 & kill -STOP $!
$H forkbomb 20 >/dev/null 2>&1
$H try-mount /tmp >/dev/null 2>&1
echo started
"""


def test_delete_leaves_nothing(daemon, th, token):
    sid = daemon.create(resources={"pids": 128})
    state = sandbox_state_dir(daemon, sid)
    helper = th.path(sid)
    res = sh(daemon, sid, SURVIVORS.format(helper=helper, tok=token))
    assert "started" in res["stdout"], res
    wait_for(lambda: len(processes_with_cmdline(token)) >= 4, timeout=10, what="the survivors")
    pids = pids_in_cgroups_of(sid)
    # Positive controls: what we will check for is really there before the delete.
    assert len(pids) >= 5, f"expected init + 4 survivors in the sandbox's cgroups, found {pids}"
    cgroups = cgroup_dirs_of(sid)
    assert cgroups, "no cgroup directory names the sandbox"
    assert host_mounts_under(state) or host_mounts_under(sid), "no mount under the sandbox's state dir"
    assert os.path.isdir(state)

    t = time.monotonic()
    r = daemon.request("DELETE", f"/v1/sandboxes/{sid}")
    assert r.status == 204, r
    took = time.monotonic() - t
    assert took < 15, f"delete took {took:.1f}s"

    # DELETE is synchronous; a short grace covers zombies not yet reaped by their host parent.
    try:
        wait_for(lambda: not still_alive(pids) and not processes_with_cmdline(token), timeout=2)
    except TimeoutError:
        pass
    assert still_alive(pids) == [], f"processes of the deleted sandbox survive: {still_alive(pids)}"
    assert processes_with_cmdline(token) == [], processes_with_cmdline(token)
    assert host_mounts_under(state) == [] and host_mounts_under(sid) == [], host_mounts_under(sid)
    assert [c for c in cgroups if os.path.exists(c)] == [], f"cgroups left: {cgroups}"
    assert cgroup_dirs_of(sid) == [], cgroup_dirs_of(sid)
    assert not os.path.exists(state), f"state dir left: {os.listdir(state)}"
    assert daemon.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "deleted"
    assert daemon.request("GET", f"/v1/sandboxes/{sid}/commands").status == 404


def test_delete_during_fork_bomb(daemon, token):
    """A sandbox in the middle of a fork bomb (pids limit saturated) is still deleted completely."""
    sid = daemon.create(resources={"pids": 64})
    state = sandbox_state_dir(daemon, sid)
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                       {"command": f"b() {{ b | b & }}; b; sleep 300 # {token}", "timeout": 60})
    assert r.status == 201, r
    wait_for(lambda: len(pids_in_cgroups_of(sid)) >= 32, timeout=10, what="the fork bomb")
    pids = pids_in_cgroups_of(sid)
    cgroups = cgroup_dirs_of(sid)
    r = daemon.request("DELETE", f"/v1/sandboxes/{sid}")
    assert r.status == 204, r
    assert wait_for(lambda: not still_alive(pids) and not pids_in_cgroups_of(sid), timeout=5,
                    what="fork bomb processes to be gone") is True
    assert host_mounts_under(state) == [] and host_mounts_under(sid) == []
    assert [c for c in cgroups if os.path.exists(c)] == [], cgroups
    assert not os.path.exists(state)


def test_no_leftovers_after_module(daemon):
    """After the sandboxes of this module are gone the data dir's sandboxes/ has no mounts at all."""
    sid = daemon.create()
    sh(daemon, sid, "true")
    daemon.delete(sid)
    # Only the warm pool's pre-created sandboxes (no owner yet) may remain: wait until it is full again
    # (default size 2), so that no pre-create is half-way while we look.
    wait_for(lambda: len(daemon.warm_ids()) == 2, timeout=30, what="the warm pool to refill")
    warm = daemon.warm_ids()
    mounts = [m for m in host_mounts_under(os.path.join(daemon.data_dir, "sandboxes"))
              if not any(f"/sandboxes/{w}/" in m for w in warm)]
    assert mounts == []
    left = os.listdir(os.path.join(daemon.data_dir, "sandboxes")) if os.path.isdir(
        os.path.join(daemon.data_dir, "sandboxes")) else []
    assert set(left) <= warm, f"state dirs left in {daemon.data_dir}/sandboxes: {set(left) - warm}"
