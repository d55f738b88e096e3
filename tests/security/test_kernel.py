"""Claim: the kernel surface is reduced like Docker's default: no mount, no new namespaces, read-only
/proc/sys and /sys, masked /proc files, Docker's capability bounding set, no_new_privs, a seccomp filter
(keyctl, bpf, perf_event_open...), no host devices, setuid binaries gain nothing."""
import json
import os
import socket

import pytest

from sbxtest import kv, sh

DOCKER_CAPS = 0x00000000A80425FB


def test_mount_fails(daemon, sandbox, th):
    who = kv(th(sandbox, "getuid")["stdout"])
    assert who["uid"] == "0" and who["euid"] == "0", who  # we are root inside: the refusal is not uid-based
    res = th(sandbox, "try-mount", "/tmp")
    assert res["exit_code"] == 1 and kv(res["stdout"])["errno"] in ("EPERM", "EACCES"), res
    res = sh(daemon, sandbox, "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m; echo rc=$?; "
                              "mount -t proc proc /tmp/m; echo proc=$?; mount --bind / /tmp/m; echo bind=$?; "
                              "mount -o remount,rw /usr; echo remount=$?")
    for k in ("rc", "proc", "bind", "remount"):
        assert f"{k}=0" not in res["stdout"], f"mount ({k}) succeeded inside: {res}"


def test_unshare_fails(daemon, sandbox, th):
    res = th(sandbox, "try-unshare", "all")
    line = next(l for l in res["stdout"].splitlines() if l.startswith("try-unshare"))
    d = dict(p.split("=", 1) for p in line.split()[1:])
    assert d["result"] == "denied", res
    for ns in ("user", "mount", "net", "pid", "uts", "ipc", "cgroup"):
        assert d[ns] != "ok", f"unshare({ns}) succeeded inside: {res}"
    res = sh(daemon, sandbox, "unshare -U true; echo u=$?; unshare -m true; echo m=$?; unshare -Ur true; echo r=$?")
    for k in ("u", "m", "r"):
        assert f"{k}=0" not in res["stdout"], res


def test_proc_sys_read_only(daemon, sandbox):
    with open("/proc/sys/kernel/core_pattern") as f:
        core_pattern = f.read()
    # Writes the host's current values back: harmless even if the write were (wrongly) allowed.
    res = daemon.run(sandbox, ["python3", "-c", r"""
import sys
for p, v in (("/proc/sys/kernel/core_pattern", sys.argv[1]), ("/proc/sys/vm/overcommit_memory", None),
             ("/proc/sys/kernel/hostname", None), ("/proc/sys/net/ipv4/ip_forward", None)):
    try:
        cur = open(p).read() if v is None else v
        with open(p, "w") as f:
            f.write(cur)
        print("WROTE", p)
    except OSError as e:
        print("denied", p, e.errno)
print("read ostype:", open("/proc/sys/kernel/ostype").read().strip())
""", core_pattern])
    assert "read ostype: Linux" in res["stdout"], res  # positive control: /proc/sys is readable
    wrote = [l for l in res["stdout"].splitlines() if l.startswith("WROTE")]
    assert not wrote, f"/proc/sys writable inside: {wrote}"
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == core_pattern


def test_sysrq_trigger_not_writable(daemon, sandbox):
    res = daemon.run(sandbox, ["python3", "-c", r"""
import os, stat
try:
    fd = os.open("/proc/sysrq-trigger", os.O_WRONLY)
except OSError as e:
    print("denied", e.errno)
else:
    st = os.fstat(fd)
    # Masked with /dev/null (1:3) is fine; anything else is the real trigger: do not write to it.
    print("null" if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
          else "OPENED-REAL-TRIGGER")
"""])
    assert res["exit_code"] == 0, res
    assert "OPENED-REAL-TRIGGER" not in res["stdout"], res


MASKED_FILES = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
                "/proc/timer_stats", "/proc/kallsyms"]
MASKED_DIRS = ["/sys/firmware", "/proc/acpi", "/proc/scsi", "/proc/asound", "/sys/devices/virtual/powercap"]


def test_masked_paths(daemon, sandbox):
    res = daemon.run(sandbox, ["python3", "-c", r"""
import json, os, sys
out = {}
for p in json.loads(sys.argv[1]):
    try:
        with open(p, "rb") as f:
            data = f.read(1 << 16)
        out[p] = {"bytes": len(data), "nonzero_addr": p == "/proc/kallsyms" and
                  any(l.split()[0].strip(b"0") for l in data.splitlines() if l.split())}
    except OSError as e:
        out[p] = {"errno": e.errno}
for d in json.loads(sys.argv[2]):
    try:
        out[d] = {"entries": os.listdir(d)}
    except OSError as e:
        out[d] = {"errno": e.errno}
out["control"] = len(open("/proc/self/status").read())
print(json.dumps(out))
""", json.dumps(MASKED_FILES), json.dumps(MASKED_DIRS)])
    assert res["exit_code"] == 0, res
    out = json.loads(res["stdout"])
    assert out["control"] > 0  # positive control: /proc works
    for p in MASKED_FILES:
        if p == "/proc/kallsyms":
            assert not out[p].get("nonzero_addr"), "kernel symbol addresses visible inside"
            continue
        assert out[p].get("bytes", 0) == 0, f"{p} readable inside: {out[p]}"
    for d in MASKED_DIRS:
        assert not out[d].get("entries"), f"{d} not masked inside: {out[d]}"


def test_sys_read_only(daemon, sandbox):
    # Writes back the current value: harmless even if the write were (wrongly) allowed.
    res = sh(daemon, sandbox, "v=$(cat /sys/kernel/mm/ksm/run) && echo $v > /sys/kernel/mm/ksm/run; echo ksm=$?; "
                              "touch /sys/x; echo touch=$?; "
                              "grep -E ' /sys ' /proc/self/mountinfo")
    assert "ksm=0" not in res["stdout"] and "touch=0" not in res["stdout"], res
    mi = [l for l in res["stdout"].splitlines() if " /sys " in l]
    if mi:
        assert " ro," in mi[0] or " ro " in mi[0], f"/sys is mounted read-write: {mi}"


def test_cgroup_limits_not_writable_from_inside(daemon, sandbox):
    """The sandbox must not raise its own limits or set a release_agent (CVE-2022-0492)."""
    res = daemon.run(sandbox, ["python3", "-c", r"""
import os
hits = []
for root, dirs, files in os.walk("/sys/fs/cgroup"):
    for f in files:
        if f in ("memory.limit_in_bytes", "memory.max", "pids.max", "cpu.cfs_quota_us", "cpu.max",
                 "release_agent", "notify_on_release", "cgroup.procs", "devices.allow"):
            p = os.path.join(root, f)
            try:
                fd = os.open(p, os.O_WRONLY)
                os.close(fd)
                hits.append(p)
            except OSError:
                pass
print("WRITABLE", hits)
"""])
    assert res["exit_code"] == 0, res
    assert "WRITABLE []" in res["stdout"], res


SYSCALLS = r"""
import ctypes, ctypes.util, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return {"ret": r, "errno": ctypes.get_errno() if r == -1 else 0}
attr = ctypes.create_string_buffer(128)
keep = {n: ctypes.create_string_buffer(v) for n, v in
        (("user", b"user"), ("sbx", b"sbx"), ("x", b"x"), ("empty", b""), ("mod", b"sbx_none"), ("fh", b"\0" * 16))}
def buf(n):
    return ctypes.addressof(keep[n])
out = {
  # keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, create=1)
  "keyctl": call(250, 0, -3, 1),
  # add_key("user", "sbx", "x", 1, KEY_SPEC_PROCESS_KEYRING)
  "add_key": call(248, buf("user"), buf("sbx"), buf("x"), 1, -2),
  # bpf(BPF_MAP_CREATE, zeroed attr, size)
  "bpf": call(321, 0, ctypes.addressof(attr), 72),
  # perf_event_open(attr{type=SOFTWARE, size=112, config=CPU_CLOCK}, self, any cpu, -1, 0)
  "perf_event_open": None,
  # open_by_handle_at(AT_FDCWD, zeroed handle, O_RDONLY) -- the "shocker" escape
  "open_by_handle_at": call(304, -100, buf("fh"), 0),
  "init_module": call(175, 0, 0, buf("empty")),
  "delete_module": call(176, buf("mod"), 0),
  "kexec_load": call(246, 0, 0, 0, 0),
  "iopl": call(172, 3),
  "ioperm": call(173, 0x80, 1, 1),
  "userfaultfd": call(323, 0),
  "acct": call(163, 0),
  # control: getpid is allowed
  "getpid": call(39),
}
pa = ctypes.create_string_buffer(128)
ctypes.memmove(pa, (ctypes.c_uint32 * 2)(1, 112), 8)  # type=PERF_TYPE_SOFTWARE, size=112, config=CPU_CLOCK
ctypes.memmove(ctypes.addressof(pa) + 40, (ctypes.c_uint64 * 1)(0x61), 8)  # disabled, exclude_kernel, exclude_hv
out["perf_event_open"] = call(298, ctypes.addressof(pa), 0, -1, -1, 0)
print(json.dumps(out))
"""


def test_dangerous_syscalls_fail(daemon, sandbox):
    res = daemon.run(sandbox, ["python3", "-c", SYSCALLS])
    assert res["exit_code"] == 0, res
    out = json.loads(res["stdout"])
    assert out["getpid"]["ret"] > 0  # positive control: the syscall shim works
    for name in ("keyctl", "add_key", "bpf", "perf_event_open", "open_by_handle_at", "init_module",
                 "delete_module", "kexec_load", "iopl", "ioperm", "userfaultfd", "acct"):
        assert out[name]["ret"] == -1, f"{name} succeeded inside: {out[name]}"
    # keyctl, bpf, perf_event_open would work for an unprivileged process without a seccomp filter.
    for name in ("keyctl", "add_key", "perf_event_open"):
        assert out[name]["errno"] in (1, 38), f"{name} not blocked by seccomp: {out[name]}"


def test_no_new_privs_seccomp_and_caps(daemon, sandbox, th):
    d = kv(th(sandbox, "caps")["stdout"])
    assert d["NoNewPrivs"] == "1", d
    assert d["Seccomp"] == "2", d
    assert int(d["CapBnd"], 16) == DOCKER_CAPS, f"CapBnd={d['CapBnd']}, Docker's default is {DOCKER_CAPS:016x}"
    for k in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert int(d[k], 16) & ~DOCKER_CAPS == 0, f"{k}={d[k]} exceeds Docker's default set"
    # And for a plain shell command too (not only the helper).
    res = sh(daemon, sandbox, "grep -E '^(NoNewPrivs|CapBnd|Seccomp):' /proc/self/status")
    assert "NoNewPrivs:\t1" in res["stdout"] and "Seccomp:\t2" in res["stdout"], res


def test_setuid_gains_nothing(daemon, sandbox, th):
    """A setuid-root binary (the helper, chmod 4755 by sandbox root, and the host's su/passwd) run by an
    unprivileged user inside does not raise its uid or capabilities (no_new_privs)."""
    helper = th.path(sandbox)
    res = sh(daemon, sandbox, f"cp {helper} /tmp/suid && chown 0:0 /tmp/suid && chmod 4755 /tmp/suid && "
                              f"stat -c %a /tmp/suid")
    assert res["stdout"].strip() == "4755", res  # positive control: the bit is set
    res = daemon.run(sandbox, ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "/tmp/suid", "getuid"])
    assert res["exit_code"] == 0, f"could not run the setuid helper as uid 1000: {res}"
    d = kv(res["stdout"])
    assert d["status"] == "ok" and d["uid"] == "1000", res  # positive control: it ran as 1000
    assert d["euid"] == "1000", f"setuid binary raised euid inside: {res}"
    res = daemon.run(sandbox, ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "/tmp/suid", "caps"])
    d = kv(res["stdout"])
    assert int(d["CapEff"], 16) == 0 and int(d["CapPrm"], 16) == 0, f"setuid binary gained caps: {res}"
    for binary in ("/usr/bin/su", "/usr/bin/passwd"):
        if not os.path.exists(binary):
            continue
        res = daemon.run(sandbox, ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c",
                                   f"{binary} --help >/dev/null 2>&1 & p=$!; "
                                   f"grep -E '^(Uid|CapEff):' /proc/$p/status; wait $p"], stdin="")
        # Read before it exits may race; when it shows up, its effective uid stays 1000.
        for line in res["stdout"].splitlines():
            if line.startswith("Uid:"):
                assert line.split()[2] == "1000", f"{binary} gained euid: {line}"
            if line.startswith("CapEff:"):
                assert int(line.split()[1], 16) == 0, f"{binary} gained caps: {line}"


ALLOWED_DEV = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "fd", "stdin", "stdout",
               "stderr", "console", "mqueue", "core"}
CHAR_DEVS = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)}


def test_dev_is_minimal(daemon, sandbox):
    res = daemon.run(sandbox, ["python3", "-c", r"""
import json, os, stat
out = {"top": sorted(os.listdir("/dev")), "devs": []}
for root, dirs, files in os.walk("/dev"):
    for n in files + dirs:
        p = os.path.join(root, n)
        st = os.lstat(p)
        if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode):
            out["devs"].append([p, "b" if stat.S_ISBLK(st.st_mode) else "c", os.major(st.st_rdev), os.minor(st.st_rdev)])
out["core"] = os.readlink("/dev/core") if os.path.islink("/dev/core") else None
print(json.dumps(out))
"""])
    assert res["exit_code"] == 0, res
    out = json.loads(res["stdout"])
    for n in ("null", "zero", "urandom", "pts", "ptmx"):
        assert n in out["top"], out["top"]  # positive control: the minimal set exists
    assert set(out["top"]) <= ALLOWED_DEV, f"unexpected entries in /dev: {set(out['top']) - ALLOWED_DEV}"
    blk = [d for d in out["devs"] if d[1] == "b"]
    assert not blk, f"block devices inside: {blk}"
    for p, kind, ma, mi in out["devs"]:
        assert (ma, mi) in CHAR_DEVS or ma == 136, f"unexpected device {p} {kind} {ma}:{mi}"


def test_mknod_yields_no_usable_device(daemon, sandbox):
    # The block device that holds the host's root filesystem.
    dev = os.stat("/").st_dev
    res = sh(daemon, sandbox, "mknod /tmp/fifo p && echo fifo=ok; "
                              f"mknod /tmp/vda b {os.major(dev)} {os.minor(dev)} && head -c 512 /tmp/vda | wc -c | sed 's/^/vda_read=/'; "
                              "mknod /tmp/mem c 1 1 && head -c 16 /tmp/mem | wc -c | sed 's/^/mem_read=/'; "
                              "mknod /tmp/kmsg c 1 11 && head -c 16 /tmp/kmsg | wc -c | sed 's/^/kmsg_read=/'; "
                              "true")
    assert "fifo=ok" in res["stdout"], res  # positive control: mknod of a FIFO works
    for k in ("vda_read", "mem_read", "kmsg_read"):
        for line in res["stdout"].splitlines():
            if line.startswith(k + "="):
                assert line == f"{k}=0", f"device node created inside is usable: {res}"


def test_hostname_change_stays_inside(daemon, sandbox):
    host = socket.gethostname()
    res = sh(daemon, sandbox, "hostname sbx-sec-evil; echo rc=$?; hostname")
    assert socket.gethostname() == host, "sandbox changed the host's hostname"
    assert res["stdout"].splitlines()[-1] != host, "the sandbox shares the host's UTS namespace"
