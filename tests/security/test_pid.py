"""Claim: sandbox code cannot see or signal host processes (own PID namespace, sbx-init is PID 1)."""
import os
from sbxtest import kv, processes_with_cmdline, sh

# Lists every process the sandbox can see as "pid<TAB>comm<TAB>cmdline" lines.
LIST_PROCS = r"""
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  c=$(cat $d/comm 2>/dev/null) || continue
  a=$(tr '\0\n\t' '   ' < $d/cmdline 2>/dev/null)
  printf '%s\t%s\t%s\n' "$p" "$c" "$a"
done
"""


def procs_inside(daemon, sid):
    res = sh(daemon, sid, LIST_PROCS)
    assert res["exit_code"] == 0, res
    out = {}
    for line in res["stdout"].splitlines():
        pid, comm, cmdline = (line.split("\t") + ["", ""])[:3]
        out[int(pid)] = (comm, cmdline)
    return out


def host_cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace").strip()


def test_only_sandbox_processes_visible(daemon, sandbox):
    procs = procs_inside(daemon, sandbox)
    # Positive control: the listing works and sees the sandbox's own init and the listing shell.
    assert 1 in procs, procs
    assert procs[1][0] == "sbx-init", f"PID 1 inside is {procs[1]!r}, not sbx-init"
    assert any(c in ("sh", "dash", "bash") for c, _ in procs.values()), procs
    # A fresh sandbox runs init, the shell and its short-lived children: nothing else.
    assert len(procs) <= 6, f"sandbox sees {len(procs)} processes: {procs}"
    for pid, (comm, cmdline) in procs.items():
        assert "sbxd" not in comm and "pytest" not in cmdline and "sbx-shim" not in comm, (pid, comm, cmdline)


def test_ps_shows_only_sandbox(daemon, sandbox):
    res = sh(daemon, sandbox, "ps -e -o pid=,comm=")
    assert res["exit_code"] == 0, res
    rows = [l.split(None, 1) for l in res["stdout"].splitlines() if l.strip()]
    comms = {int(p): c.strip() for p, c in rows}
    assert comms.get(1) == "sbx-init", comms
    assert "ps" in comms.values(), comms  # positive control
    assert len(comms) <= 6, comms
    host_names = {"sbxd", "sbx-shim", "python3", "pytest", "systemd", "init"}
    assert not host_names & set(comms.values()), comms


def test_host_pids_invisible_and_unkillable(daemon, sandbox):
    me = os.getpid()
    targets = {me: host_cmdline(me), daemon.proc.pid: host_cmdline(daemon.proc.pid)}
    # Also the host-side processes that run this sandbox (shim, init's host pid), when findable.
    for pid in processes_with_cmdline(sandbox):
        try:
            targets[pid] = host_cmdline(pid)
        except OSError:
            pass
    for pid, cmdline in targets.items():
        res = sh(daemon, sandbox,
                 f"if [ -e /proc/{pid} ]; then printf 'present\\t'; tr '\\0' ' ' < /proc/{pid}/cmdline; "
                 f"else echo absent; fi")
        assert res["exit_code"] == 0, res
        out = res["stdout"].strip()
        if out != "absent":
            # Same number, different process: it must be a sandbox process, never the host's.
            inside_cmd = out.partition("\t")[2].strip()
            assert inside_cmd != cmdline, f"host process {pid} ({cmdline}) is visible inside"
            continue
        res = sh(daemon, sandbox, f"kill -9 {pid}; echo rc=$?")
        assert "rc=0" not in res["stdout"], f"kill -9 {pid} from inside succeeded: {res}"
    # Every targeted host process is still alive.
    for pid, cmdline in targets.items():
        assert os.path.exists(f"/proc/{pid}") and host_cmdline(pid) == cmdline, f"host process {pid} died"
    assert daemon.request("GET", "/healthz").status == 200


def test_ptrace_host_pid_fails(daemon, sandbox, th):
    res = th(sandbox, "try-ptrace", daemon.proc.pid)
    d = kv(res["stdout"])
    # Inside, that pid either does not exist (ESRCH) or is a sandbox process; never the host's sbxd.
    procs = procs_inside(daemon, sandbox)
    if daemon.proc.pid not in procs:
        assert d["status"] == "error" and d["errno"] == "ESRCH", res
    assert daemon.request("GET", "/healthz").status == 200


def test_kill_all_from_inside_spares_host(daemon, new_sandbox, th):
    """`kill -9 -1` as sandbox root signals every process it can see: only its own must die."""
    victim = new_sandbox()
    bystander = new_sandbox()
    # A long-running command in the bystander sandbox must survive.
    r = daemon.request("POST", f"/v1/sandboxes/{bystander}/commands",
                       {"command": "sleep 30", "timeout": 40})
    assert r.status == 201, r
    by_cmd = r.json()["id"]
    alive_before = daemon.request("GET", f"/v1/sandboxes/{bystander}/commands/{by_cmd}").json()
    assert alive_before["state"] == "running"
    res = sh(daemon, victim, "sleep 30 & s=$!; kill -9 -1; wait $s; echo sleep_status=$?", timeout=20)
    # kill(-1) spares the caller: the shell survives and sees its sleep killed (positive control).
    assert "sleep_status=137" in res["stdout"], res
    assert daemon.proc.poll() is None, "sbxd died"
    assert daemon.request("GET", "/healthz").status == 200
    st = daemon.request("GET", f"/v1/sandboxes/{bystander}/commands/{by_cmd}").json()
    assert st["state"] == "running", f"a command in another sandbox died: {st}"
    # The victim sandbox itself survives (init ignores signals from inside) and still runs commands.
    assert sh(daemon, victim, "echo alive")["stdout"] == "alive\n"
    daemon.request("POST", f"/v1/sandboxes/{bystander}/commands/{by_cmd}/kill")


def test_pid1_is_sandbox_init_not_host_init(daemon, sandbox):
    res = sh(daemon, sandbox, "cat /proc/1/comm")
    assert res["exit_code"] == 0, res
    lines = res["stdout"].split("\n")
    assert lines[0] == "sbx-init", res
    with open("/proc/1/comm") as f:
        host_init = f.read().strip()
    assert host_init != "sbx-init"
