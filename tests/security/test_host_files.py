"""Claim: sandbox code cannot see or change host files. Its root is an overlay of the host's /usr, /etc
(without secrets), /opt; /root, /home, /tmp, /var are its own; sbx's data dir is never visible."""
import glob
import json
import os
import shlex
import stat

from sbxtest import SOURCE_DIR, sh, sha256_file

FIND_TOKEN = r"find / \( -path /proc -o -path /sys -o -path /usr -o -path /dev \) -prune -o -name '*{tok}*' -print"

# Runs inside with the host's python3: for each path prints {"path": ..., "sha256"|"errno": ...}.
PROBE = r"""
import hashlib, json, sys
for p in json.loads(sys.argv[1]):
    try:
        with open(p, "rb") as f:
            print(json.dumps({"path": p, "sha256": hashlib.sha256(f.read()).hexdigest()}))
    except OSError as e:
        print(json.dumps({"path": p, "errno": e.errno}))
"""


def probe_read(daemon, sid, paths):
    res = daemon.run(sid, ["python3", "-c", PROBE, json.dumps(paths)], timeout=60)
    assert res["exit_code"] == 0, res
    return {d["path"]: d for d in map(json.loads, res["stdout"].splitlines())}


def test_host_markers_invisible(daemon, sandbox, host_markers, token):
    # Positive control: a marker made inside the sandbox is found by the same search.
    assert sh(daemon, sandbox, f"echo inside > /tmp/{token}-inside")["exit_code"] == 0
    res = sh(daemon, sandbox, FIND_TOKEN.format(tok=token) + " 2>/dev/null; true")
    found = set(res["stdout"].split())
    assert f"/tmp/{token}-inside" in found, res
    assert found == {f"/tmp/{token}-inside"}, f"host markers visible inside: {found}"
    for path, content in host_markers.items():
        r = sh(daemon, sandbox, f"cat {shlex.quote(path)}")
        assert content not in r["stdout"], f"host file {path} readable inside"


def test_host_private_dirs_not_shared(daemon, sandbox):
    """/root, /home, /tmp, /var/tmp inside are the sandbox's own (empty at start), and the sbx source tree
    and /work are absent."""
    host_entries = {d: set(os.listdir(d)) for d in ("/root", "/home", "/tmp", "/var/tmp") if os.path.isdir(d)}
    for d, entries in host_entries.items():
        res = sh(daemon, sandbox, f"ls -A {d}")
        inside = set(res["stdout"].split())
        leaked = {e for e in entries & inside if not e.startswith(".")} - {"lost+found"}
        assert not leaked, f"host {d} entries visible inside: {sorted(leaked)}"
    for p in (SOURCE_DIR, os.path.join(SOURCE_DIR, "CMakeLists.txt"), "/work", "/work/shared/DESIGN.md"):
        res = sh(daemon, sandbox, f"test -e {shlex.quote(p)} && echo present || echo absent")
        assert res["stdout"].strip() == "absent", f"{p} visible inside"


def test_host_secrets_unreadable(daemon, sandbox):
    """Every host file under /etc that is not world-readable (shadow, gshadow, ssh host keys, TLS private
    keys...) is absent or unreadable inside, or at least not the host's content."""
    secrets = []
    for root, dirs, files in os.walk("/etc"):
        for name in files:
            p = os.path.join(root, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and not st.st_mode & stat.S_IROTH and st.st_size > 0:
                secrets.append(p)
    secrets += glob.glob("/etc/ssh/ssh_host_*_key")
    for must in ("/etc/shadow", "/etc/gshadow"):
        if os.path.exists(must):
            assert must in secrets
    # Positive control: a world-readable host file is readable inside with the host's content.
    control = "/etc/os-release" if os.path.exists("/etc/os-release") else "/etc/hostname"
    got = probe_read(daemon, sandbox, sorted(set(secrets)) + [control])
    assert got[control].get("sha256") == sha256_file(control), got[control]
    leaked = [p for p in secrets if got[p].get("sha256") == sha256_file(p)]
    assert not leaked, f"host secrets readable inside with the host's content: {leaked}"


def test_writes_to_system_dirs_fail(daemon, sandbox, token):
    """The brief: /usr and /etc are read-only inside; writing /usr/bin/x or /etc/passwd fails."""
    res = sh(daemon, sandbox, f"echo pwned > /usr/bin/{token}; echo usr=$?; echo pwned >> /etc/passwd; "
                              f"echo etc=$?; echo ok > /tmp/{token}; echo tmp=$?")
    out = res["stdout"]
    assert "tmp=0" in out, res  # positive control: the sandbox's own /tmp is writable
    assert "usr=0" not in out, f"writing /usr/bin inside succeeded: {res}"
    assert "etc=0" not in out, f"appending to /etc/passwd inside succeeded: {res}"
    assert "Read-only file system" in res["stderr"] or "Permission denied" in res["stderr"], res


def test_host_system_files_unchanged(daemon, sandbox, token):
    """Whatever the sandbox does to its /usr and /etc, the host's files stay as they were."""
    watched = ["/etc/passwd", "/etc/group", "/etc/hostname", "/usr/bin/env"]
    before = {p: (sha256_file(p), os.stat(p).st_mode, os.stat(p).st_mtime_ns) for p in watched}
    script = (f"echo 'pwned:x:0:0::/:/bin/sh' >> /etc/passwd; echo pwned >> /etc/group; "
              f"echo pwned > /etc/hostname; chmod 4777 /usr/bin/env; echo pwned > /usr/bin/env; "
              f"echo pwned > /usr/bin/{token}; echo pwned > /etc/{token}; mkdir -p /opt/{token}; "
              f"echo done")
    res = sh(daemon, sandbox, script)
    assert "done" in res["stdout"], res
    after = {p: (sha256_file(p), os.stat(p).st_mode, os.stat(p).st_mtime_ns) for p in watched}
    assert after == before, "host system files changed by sandbox writes"
    for p in (f"/usr/bin/{token}", f"/etc/{token}", f"/opt/{token}"):
        assert not os.path.exists(p), f"{p} created on the host by the sandbox"


def test_data_dir_invisible(daemon, sandbox, token):
    canary = os.path.join(daemon.data_dir, f"{token}-canary")
    with open(canary, "w") as f:
        f.write("data dir canary\n")
    try:
        for p in (daemon.data_dir, canary, os.path.join(daemon.data_dir, "sandboxes"), "/var/lib/sbx/sbx.db"):
            res = sh(daemon, sandbox, f"test -e {shlex.quote(p)} && echo present || echo absent")
            assert res["stdout"].strip() == "absent", f"{p} visible inside"
        res = sh(daemon, sandbox, "ls -A /var/tmp")
        assert os.path.basename(daemon.data_dir) not in res["stdout"], res
        res = sh(daemon, sandbox, r"find / \( -path /proc -o -path /sys -o -path /usr -o -path /dev \) -prune -o "
                 r"\( -name sbx.db -o -name shim.sock -o -name sbxd.log \) -print 2>/dev/null; true")
        assert res["stdout"].strip() == "", f"sbx state files visible inside: {res['stdout']}"
    finally:
        os.unlink(canary)


def test_proc_root_links_stay_inside(daemon, sandbox, host_markers, token):
    """/proc/1/root, /proc/self/root and /proc/<pid>/cwd lead to the sandbox's root, never the host's."""
    assert sh(daemon, sandbox, f"echo inside > /tmp/{token}-root-inside")["exit_code"] == 0
    marker = f"/{token}-host-marker"
    res = sh(daemon, sandbox,
             f"ls -A / | sort > /tmp/a; ls -A /proc/1/root/ | sort > /tmp/b; cmp /tmp/a /tmp/b && echo same; "
             f"cat /proc/1/root/tmp/{token}-root-inside; "
             f"cat /proc/1/root{marker} /proc/self/root{marker} /proc/self/root/../../..{marker} "
             f"/proc/1/cwd/../../..{marker} 2>/dev/null; "
             f"ls /proc/1/root/work /proc/self/root/work 2>/dev/null; true")
    assert "same" in res["stdout"], res
    assert "inside" in res["stdout"], res  # positive control
    assert "HOST-SECRET" not in res["stdout"], f"host root reachable through /proc: {res}"
    assert "main" not in res["stdout"].split(), res


def test_no_host_fds_inside(daemon, sandbox):
    """No process inside (init, a command) holds an fd to a host directory or host file: an inherited
    directory fd is a classic escape (openat(fd, "..") walks out of the sandbox)."""
    script = r"""
import os, stat, json
bad = []
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        continue
    for fd in fds:
        p = f"/proc/{pid}/fd/{fd}"
        try:
            st = os.stat(p)
            target = os.readlink(p)
        except OSError:
            continue
        if pid == str(os.getpid()) and fd in ("0", "1", "2"):
            continue
        if stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and not target.startswith("/proc/")):
            bad.append((pid, fd, target))
print(json.dumps(bad))
"""
    res = daemon.run(sandbox, ["python3", "-c", script])
    assert res["exit_code"] == 0, res
    bad = json.loads(res["stdout"])
    # python's own listdir fds are closed by the time it prints; anything left is inherited.
    assert bad == [], f"processes inside hold directory/regular-file fds: {bad}"
