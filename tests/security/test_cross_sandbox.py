"""Claim: sandboxes are isolated from each other: processes, files, uid ranges, network, IPC."""
import shutil
import subprocess

import pytest

from sbxtest import processes_with_cmdline, sh, wait_for


def uid_map(daemon, sid):
    res = sh(daemon, sid, "cat /proc/self/uid_map")
    rows = [tuple(map(int, l.split())) for l in res["stdout"].splitlines()]
    assert rows, res
    return rows


def test_processes_and_files_invisible(daemon, new_sandbox, th, token):
    a, b = new_sandbox(), new_sandbox()
    r = daemon.request("POST", f"/v1/sandboxes/{b}/commands",
                       {"command": [th.path(b), "sleep", "30", f"{token}-Bproc"], "timeout": 40})
    assert r.status == 201, r
    cid = r.json()["id"]
    assert sh(daemon, b, f"echo secret-of-b > /tmp/{token}-B; echo x > /root/{token}-B")["exit_code"] == 0
    host_pids = wait_for(lambda: processes_with_cmdline(f"{token}-Bproc"), timeout=10, what="B's process")
    # The pattern goes through a file so that no process's own command line contains it.
    for sid in (a, b):
        assert daemon.request("PUT", f"/v1/sandboxes/{sid}/files?path=/pat", body=f"{token}-Bproc\n".encode()).status == 200
    count = "grep -l -F -f /pat /proc/[0-9]*/cmdline 2>/dev/null | wc -l"
    # Positive control: B sees its own process and files.
    res = sh(daemon, b, f"{count}; cat /tmp/{token}-B")
    assert int(res["stdout"].split()[0]) >= 1 and "secret-of-b" in res["stdout"], res
    # A sees neither.
    res = sh(daemon, a, f"{count}; "
                        f"cat /tmp/{token}-B /root/{token}-B 2>/dev/null; "
                        rf"find / \( -path /proc -o -path /sys -o -path /usr -o -path /dev \) -prune -o "
                        f"-name '*{token}*' -print 2>/dev/null; true")
    lines = res["stdout"].split()
    assert lines[0] == "0", f"A sees B's process: {res}"
    assert "secret-of-b" not in res["stdout"] and len(lines) == 1, f"A sees B's files: {res}"
    # Nor by B's host pid.
    for pid in host_pids:
        res = sh(daemon, a, f"cat /proc/{pid}/cmdline 2>/dev/null | tr '\\0' ' '; kill -9 {pid} 2>/dev/null; echo rc=$?")
        assert f"{token}-Bproc" not in res["stdout"], res
    st = daemon.request("GET", f"/v1/sandboxes/{b}/commands/{cid}").json()
    assert st["state"] == "running", f"A killed B's process: {st}"
    daemon.request("POST", f"/v1/sandboxes/{b}/commands/{cid}/kill")


def test_uid_ranges_disjoint(daemon, new_sandbox):
    a, b = new_sandbox(), new_sandbox()
    ma, mb = uid_map(daemon, a), uid_map(daemon, b)
    ra = [(o, o + c) for _, o, c in ma]
    rb = [(o, o + c) for _, o, c in mb]
    for s1, e1 in ra:
        for s2, e2 in rb:
            assert e1 <= s2 or e2 <= s1, f"A's host uid range {ma} overlaps B's {mb}"


def test_loopback_not_shared(daemon, new_sandbox, th):
    a, b = new_sandbox(), new_sandbox()
    port = 47123
    helper_b = th.path(b)
    r = daemon.request("POST", f"/v1/sandboxes/{b}/commands", {"command": [
        "python3", "-c", f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); "
        "print('listening', flush=True); time.sleep(30)"], "timeout": 40})
    assert r.status == 201, r
    cid = r.json()["id"]

    def listening():
        return "connect ok" in daemon.run(b, [helper_b, "connect", "127.0.0.1", str(port), "1"])["stdout"]

    wait_for(listening, timeout=10, interval=0.1, what="B's listener")  # positive control
    res = th(a, "connect", "127.0.0.1", port, 2)
    assert res["exit_code"] == 1, f"A reached B's loopback listener: {res}"
    daemon.request("POST", f"/v1/sandboxes/{b}/commands/{cid}/kill")


def host_shm_ids():
    out = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout
    return {l.split()[1] for l in out.splitlines() if l.startswith("0x")}


def test_ipc_not_shared(daemon, new_sandbox):
    if not shutil.which("ipcmk"):
        pytest.skip("ipcmk (util-linux) is not installed on the host, so not in the sandbox either")
    a, b = new_sandbox(), new_sandbox()
    before = host_shm_ids()
    res = sh(daemon, b, "ipcmk -M 4096 >/dev/null && ipcs -m | grep -c '^0x'")
    assert res["exit_code"] == 0 and res["stdout"].strip() == "1", res  # positive control
    res = sh(daemon, a, "ipcs -m | grep -c '^0x'; true")
    assert res["stdout"].strip() == "0", f"A sees B's SysV shared memory: {res}"
    assert host_shm_ids() == before, "a sandbox's SysV segment appeared in the host's IPC namespace"
