"""Claim: the file API (run by sbxd as host root) resolves every path inside the sandbox's root: `..`,
URL-encoded dots, absolute and relative symlinks, /proc magic links and symlinks swapped in during a call
all stay inside; malformed paths are 400."""
import base64
import json
import os
import shutil
import threading
import time
import urllib.parse

import pytest

from sbxtest import sandbox_state_dir, sh

UP = "/.." * 12  # enough `..` to climb from <data-dir>/sandboxes/<id>/rootfs to the host's /


def q(path):
    return urllib.parse.quote(path, safe="/")


def get(daemon, sid, path=None, raw=None, op=""):
    query = raw if raw is not None else "path=" + q(path)
    return daemon.request("GET", f"/v1/sandboxes/{sid}/files{op}?{query}")


def put(daemon, sid, path=None, body=b"x", raw=None):
    query = raw if raw is not None else "path=" + q(path)
    return daemon.request("PUT", f"/v1/sandboxes/{sid}/files?{query}", body=body)


def delete(daemon, sid, path=None, raw=None, recursive=False):
    query = raw if raw is not None else "path=" + q(path)
    if recursive:
        query += "&recursive=true"
    return daemon.request("DELETE", f"/v1/sandboxes/{sid}/files?{query}")


@pytest.fixture
def canaries(daemon, token, host_markers):
    """Host files an escaping file operation would hit: markers in /, /tmp, /var/tmp, /root, /home and a
    canary file and directory in sbxd's data dir. Returns {host path: content}."""
    made = dict(host_markers)
    f = os.path.join(daemon.data_dir, f"{token}-canary")
    with open(f, "w") as fh:
        fh.write(f"CANARY-{token}\n")
    made[f] = f"CANARY-{token}\n"
    d = os.path.join(daemon.data_dir, f"{token}-cdir")
    os.mkdir(d)
    with open(os.path.join(d, "inner"), "w") as fh:
        fh.write(f"CANARY-{token}-inner\n")
    made[os.path.join(d, "inner")] = f"CANARY-{token}-inner\n"
    yield made
    for p in (f,):
        if os.path.exists(p):
            os.unlink(p)
    shutil.rmtree(d, ignore_errors=True)


def assert_canaries_intact(canaries):
    for p, content in canaries.items():
        assert os.path.exists(p), f"host file {p} was removed through the file API"
        with open(p) as f:
            assert f.read() == content, f"host file {p} was changed through the file API"


def assert_no_host_secret(r, token, what):
    if r.status == 200 or r.status == 206:
        assert b"HOST-SECRET" not in r.body and f"CANARY-{token}".encode() not in r.body, \
            f"{what} returned a host file: {r}"


def host_pwned(daemon, token, sid=None):
    """Every host path outside the sandbox's own dirs whose name contains `<token>-pwned`."""
    hits = []
    skip = {os.path.realpath(sandbox_state_dir(daemon, sid))} if sid else set()
    for top in ("/", "/tmp", "/var/tmp", "/etc", "/root", "/home", "/usr/bin", "/usr/local/bin", "/opt",
                "/tmp/tmp", "/etc/tmp", "/tmp/etc", "/tmp/root", "/etc/root", "/root/root"):
        try:
            names = os.listdir(top)
        except OSError:
            continue
        hits += [os.path.join(top, n) for n in names if f"{token}-pwned" in n]
    for root, dirs, files in os.walk(daemon.data_dir):
        if os.path.realpath(root) in skip:
            dirs[:] = []
            continue
        hits += [os.path.join(root, n) for n in files + dirs if f"{token}-pwned" in n]
    return hits


def test_dotdot_reads_stay_inside(daemon, sandbox, token, canaries):
    marker_tmp = f"/tmp/{token}-host-marker"
    canary = f"{token}-canary"
    # Positive control: a file in the sandbox is readable through the same API.
    assert put(daemon, sandbox, f"/tmp/{token}-inside", b"inside").status == 200
    assert get(daemon, sandbox, f"/tmp/../tmp/./{token}-inside").body == b"inside"
    paths = [f"/../../../{canary}", f"{UP}/tmp/{token}-host-marker", f"/tmp/../../../../{canary}",
             f"//../../../{canary}", f"/./.././../../{canary}", f"{UP}{daemon.data_dir}/{canary}",
             f"{UP}{marker_tmp}", f"/..\\..\\..\\{canary}"]
    raws = [f"path=/%2e%2e/%2e%2e/%2e%2e/{canary}", f"path=%2F..%2F..%2F..%2F{canary}",
            f"path=/%252e%252e/%252e%252e/%252e%252e/{canary}", f"path=..%2f..%2f..%2f{canary}",
            f"path=/%2E%2E%2F%2E%2E%2F%2E%2E%2F{canary}", f"path={q(UP)}%2Ftmp%2F{token}-host-marker"]
    for p in paths:
        for op in ("", "/stat"):
            r = get(daemon, sandbox, p, op=op)
            assert r.status in (400, 404), f"GET files{op} {p!r}: {r}"
    for raw in raws:
        for op in ("", "/stat"):
            r = get(daemon, sandbox, raw=raw, op=op)
            assert r.status in (400, 404), f"GET files{op}?{raw}: {r}"
    # A listing of `/../../..` is the sandbox's root, never the data dir or the host's root.
    for p in ("/../../..", UP, "/%2e%2e/%2e%2e"):
        r = get(daemon, sandbox, raw="path=" + p, op="/list")
        if r.status == 200:
            names = {e["name"] for e in r.json()["entries"]}
            assert "usr" in names, r  # it is a root directory...
            assert not names & {canary, "sandboxes", "sbx.db", f"{token}-host-marker", "work"}, names
    assert_canaries_intact(canaries)


def test_dotdot_writes_stay_inside(daemon, sandbox, token, canaries):
    canary = f"{token}-canary"
    accepted = 0
    for p in (f"/../../../{token}-pwned1", f"{UP}/{token}-pwned2", f"{UP}/tmp/{token}-pwned3",
              f"{UP}{daemon.data_dir}/{token}-pwned4", f"/../../../{canary}"):
        r = put(daemon, sandbox, p, f"pwned-{token}".encode())
        assert r.status in (200, 400, 403, 404), (p, r)
        accepted += r.status == 200
    for raw in (f"path=/%2e%2e/%2e%2e/%2e%2e/{token}-pwned5", f"path=/%2e%2e/%2e%2e/%2e%2e/{canary}"):
        r = put(daemon, sandbox, raw=raw, body=f"pwned-{token}".encode())
        assert r.status in (200, 400, 403, 404), (raw, r)
    for p in (f"/../../../{token}-pwned6", f"{UP}/etc/{token}-pwned7"):
        r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/mkdir", {"path": p})
        assert r.status in (200, 400, 403, 404), (p, r)
    assert put(daemon, sandbox, "/root/src", b"src").status == 200
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/move",
                       {"from": "/root/src", "to": f"{UP}/etc/{token}-pwned8"})
    assert r.status in (200, 400, 403, 404), r
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/move",
                       {"from": f"/../../../{canary}", "to": f"/tmp/{token}-stolen"})
    if r.status == 200:
        assert get(daemon, sandbox, f"/tmp/{token}-stolen").body != f"CANARY-{token}\n".encode()
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/move",
                       {"from": f"{UP}/tmp/{token}-host-marker", "to": f"/tmp/{token}-stolen2"})
    assert r.status in (400, 404), r
    for p, rec in ((f"/../../../{canary}", False), (f"/../../../{token}-cdir", True),
                   (f"{UP}/tmp/{token}-host-marker", False), (f"{UP}/{token}-host-marker", False)):
        r = delete(daemon, sandbox, p, recursive=rec)
        assert r.status in (204, 400, 404), (p, r)
    # Deleting `/` (however spelled) is refused.
    for p in ("/../../..", "/"):
        r = delete(daemon, sandbox, p)
        assert r.status in (400, 403, 409), (p, r)
    assert_canaries_intact(canaries)
    assert host_pwned(daemon, token, sandbox) == [], "a write through `..` landed on the host"
    # Where writes were accepted they landed inside the sandbox (`..` at the root stays at the root).
    if accepted:
        inside = sh(daemon, sandbox, f"ls / /tmp /etc | grep -c {token}-pwned")
        assert int(inside["stdout"].strip() or 0) >= 1, inside


SYMLINKS = """
set -e
ln -s / /root/hostroot
ln -s /etc /root/etc
ln -s ../../../../../../../../.. /root/rel
ln -s {data} /root/dd
ln -s {state}/upper /root/up
ln -s {state}/rootfs /root/rf
ln -s /proc/self/root /root/pr
ln -s /proc/1/root /root/p1
ln -s /proc/self/cwd /root/pc
ln -s /root/{tok}-host-marker /root/m
ln -s {data}/{tok}-canary /root/c
mkdir -p /root/sub
echo inside > /root/{tok}-inside
echo ok
"""


def test_symlinks_stay_inside(daemon, sandbox, token, canaries):
    state = sandbox_state_dir(daemon, sandbox)
    res = sh(daemon, sandbox, SYMLINKS.format(data=daemon.data_dir, state=state, tok=token))
    assert res["stdout"].strip() == "ok", res
    reads = [f"/root/hostroot/root/{token}-host-marker", f"/root/hostroot/{token}-host-marker",
             f"/root/hostroot{daemon.data_dir}/{token}-canary", f"/root/dd/{token}-canary",
             f"/root/rel/root/{token}-host-marker", f"/root/pr/root/{token}-host-marker",
             f"/root/p1/root/{token}-host-marker", f"/root/pc/{token}-canary",
             f"/proc/self/root/root/{token}-host-marker", f"/proc/1/root/root/{token}-host-marker",
             f"/proc/self/cwd/{token}-canary", "/root/m", "/root/c", f"/root/dd/{token}-cdir/inner",
             # these only exist if a symlink is followed on the host: <state>/upper/root/<tok>-inside
             f"/root/up/root/{token}-inside", f"/root/rf/root/{token}-inside"]
    for p in reads:
        for op in ("", "/stat"):
            r = get(daemon, sandbox, p, op=op)
            assert_no_host_secret(r, token, f"GET{op} {p}")
            if op == "/stat" and r.status == 200 and r.json().get("type") == "symlink":
                continue  # stat describes the link itself (lstat), which is the sandbox's own data
            if p.startswith(("/root/up/", "/root/rf/")):
                assert r.status != 200, f"{p}: a symlink was followed on the host: {r}"
            else:
                assert r.status in (400, 404), f"GET files{op} {p}: {r}"
    # Positive control: a symlink inside resolves inside (hostroot -> the sandbox's own /).
    r = get(daemon, sandbox, f"/root/hostroot/root/{token}-inside")
    assert r.status == 200 and r.body == b"inside\n", r
    # The sandbox's /etc/shadow through a symlink is the sandbox's own file (what `cat` inside sees).
    r = get(daemon, sandbox, "/root/etc/shadow")
    inside = daemon.run(sandbox, ["sh", "-c", "base64 -w0 /etc/shadow"])
    if r.status == 200:
        assert inside["exit_code"] == 0 and base64.b64decode(inside["stdout"]) == r.body, \
            "GET /root/etc/shadow returned something other than the sandbox's own /etc/shadow"
    for p in ("/root/hostroot/tmp", "/root/dd", "/root/pr/tmp", "/root/rel/tmp", "/root/hostroot" + daemon.data_dir):
        r = get(daemon, sandbox, p, op="/list")
        if r.status == 200:
            names = {e["name"] for e in r.json()["entries"]}
            assert not names & {f"{token}-host-marker", f"{token}-canary", f"{token}-cdir", "sandboxes"}, (p, names)
    # Writes through the same symlinks.
    writes = [f"/root/hostroot/root/{token}-pwned1", f"/root/hostroot/{token}-pwned2", f"/root/etc/{token}-pwned3",
              f"/root/dd/{token}-pwned4", f"/root/rel/root/{token}-pwned5", f"/root/pr/root/{token}-pwned6",
              f"/root/p1/root/{token}-pwned7", f"/proc/self/root/root/{token}-pwned8",
              f"/root/up/{token}-pwned9", "/root/c", "/root/m"]
    for p in writes:
        r = put(daemon, sandbox, p, f"pwned-{token}".encode())
        assert r.status in (200, 400, 403, 404), (p, r)
    for p in (f"/root/hostroot/root/{token}-pwned10", f"/root/dd/{token}-pwned11", f"/root/pr/{token}-pwned12"):
        r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/mkdir", {"path": p})
        assert r.status in (200, 400, 403, 404), (p, r)
    assert put(daemon, sandbox, "/root/src", b"src").status == 200
    for to in (f"/root/hostroot/etc/{token}-pwned13", f"/root/dd/{token}-pwned14", f"/root/pr/root/{token}-pwned15"):
        r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/move", {"from": "/root/src", "to": to})
        assert r.status in (200, 400, 403, 404), (to, r)
        if r.status == 200:
            r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/move", {"from": to, "to": "/root/src"})
    for frm in (f"/root/dd/{token}-canary", f"/root/hostroot/root/{token}-host-marker", "/root/c/.."):
        r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/move",
                           {"from": frm, "to": f"/root/{token}-stolen"})
        assert r.status in (400, 404, 409), (frm, r)
    for p, rec in ((f"/root/hostroot/root/{token}-host-marker", False), (f"/root/dd/{token}-canary", False),
                   (f"/root/dd/{token}-cdir", True), (f"/root/pr/root/{token}-host-marker", False)):
        r = delete(daemon, sandbox, p, recursive=rec)
        assert r.status in (204, 400, 404), (p, r)
    # Deleting the symlinks themselves removes the links, not their targets.
    for p in ("/root/c", "/root/m", "/root/dd"):
        assert delete(daemon, sandbox, p).status == 204
    assert_canaries_intact(canaries)
    assert host_pwned(daemon, token, sandbox) == [], "a write through a symlink landed on the host"


SWAPPER = r"""
import ctypes, os, shutil, sys, time
libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE = 2
pairs = [("/root/x", "/root/xl", "/tmp"), ("/root/u", "/root/ul", "/"), ("/root/e", "/root/el", "/etc")]
for d, l, target in pairs:
    os.makedirs(d + "/tmp", exist_ok=True)
    open(d + "/" + sys.argv[1], "w").write("inside\n")
    os.symlink(target, l)
print("ready", flush=True)
swaps, end = 0, time.monotonic() + float(sys.argv[2])
exchange = True
while time.monotonic() < end:
    for d, l, target in pairs:
        if exchange and libc.renameat2(-100, d.encode(), -100, l.encode(), RENAME_EXCHANGE) == 0:
            swaps += 1
            continue
        exchange = False
        # Fallback without renameat2: remove and recreate (non-atomic, still racy).
        try:
            if os.path.islink(d):
                os.unlink(d); os.mkdir(d)
            else:
                shutil.rmtree(d, ignore_errors=True); os.symlink(target, d)
            swaps += 1
        except OSError:
            pass
print("swaps", swaps, "exchange", exchange, flush=True)
"""


def test_symlink_swap_race(daemon, sandbox, token, canaries):
    """A loop inside flips /root/x, /root/u, /root/e between a directory and a symlink (to /tmp, /, /etc)
    while the test PUTs and GETs through them: nothing may land on or come from the host."""
    marker = f"{token}-host-marker"
    duration = 6.0
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                       {"command": ["python3", "-c", SWAPPER, marker, str(duration)], "timeout": 30})
    assert r.status == 201, r
    cid = r.json()["id"]
    time.sleep(0.5)
    statuses, leaked = {}, []
    end = time.monotonic() + duration - 1
    i = 0
    while time.monotonic() < end:
        i += 1
        for d in ("/root/x", "/root/u", "/root/e"):
            rp = put(daemon, sandbox, f"{d}/{token}-pwned-{i % 4}", f"pwned-{token}".encode())
            statuses[rp.status] = statuses.get(rp.status, 0) + 1
            rp = put(daemon, sandbox, f"{d}/root/{token}-pwned-d{i % 4}", f"pwned-{token}".encode())
            statuses[rp.status] = statuses.get(rp.status, 0) + 1
            rg = get(daemon, sandbox, f"{d}/{marker}")
            if rg.status == 200 and b"HOST-SECRET" in rg.body:
                leaked.append((d, rg.body))
            if i % 8 == 0:
                daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/mkdir", {"path": f"{d}/{token}-pwned-m"})
                delete(daemon, sandbox, f"{d}/{marker}")
    res = daemon.request("GET", f"/v1/sandboxes/{sandbox}/commands/{cid}").json()
    deadline = time.monotonic() + 15
    while res["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        res = daemon.request("GET", f"/v1/sandboxes/{sandbox}/commands/{cid}").json()
    out = daemon.sse(sandbox, cid)
    text = "".join(ev.get("data", "") for name, ev in out if name == "output" and ev.get("stream") == "stdout")
    assert "swaps" in text, text
    swaps = int(text.split("swaps")[1].split()[0])
    assert swaps > 100, f"the swapper barely ran: {text}"
    assert statuses.get(200, 0) > 0, f"no PUT succeeded during the race: {statuses}"  # positive control
    assert all(s in (200, 400, 403, 404, 409) for s in statuses), statuses
    assert not leaked, f"GET during the race returned a host file: {leaked[:2]}"
    assert host_pwned(daemon, token, sandbox) == [], "a PUT during the symlink race landed on the host"
    assert_canaries_intact(canaries)


def test_api_cannot_read_host_secrets(daemon, sandbox):
    """sbxd reads files as host root: it must not hand out host secrets that the sandbox's /etc still has
    (e.g. /etc/shadow owned by an unmapped host root, unreadable inside but readable by sbxd)."""
    secrets = []
    for root, dirs, files in os.walk("/etc"):
        for name in files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            if os.path.isfile(p) and not os.path.islink(p) and not st.st_mode & 0o004 and st.st_size > 0:
                secrets.append(p)
    assert "/etc/shadow" in secrets or not os.path.exists("/etc/shadow")
    leaked = []
    for p in secrets:
        r = get(daemon, sandbox, p)
        with open(p, "rb") as f:
            if r.status == 200 and r.body == f.read():
                leaked.append(p)
    # Positive control: a world-readable host /etc file is served.
    r = get(daemon, sandbox, "/etc/passwd")
    assert r.status == 200 and b"root:" in r.body, r
    assert not leaked, f"the file API serves host secrets: {leaked}"


def test_malformed_paths_rejected(daemon, sandbox):
    bad = ["path=/root/a%00b", "path=%00", "path=/root/%00/../etc/passwd", "path=tmp/relative", "path=",
           "path=/" + "a" * 300, "path=" + "/a" * 2100, "path=" + "/" + "b" * 5000]
    for raw in bad:
        for method, op in (("GET", ""), ("GET", "/stat"), ("GET", "/list"), ("PUT", ""), ("DELETE", "")):
            r = daemon.request(method, f"/v1/sandboxes/{sandbox}/files{op}?{raw}", body=b"x" if method == "PUT" else None)
            assert r.status == 400, f"{method} files{op}?{raw[:60]}: {r}"
            assert r.error_code() == "invalid_argument", r
    for p in ("/root/a\0b", "relative", "", "/" + "a" * 300, "/a" * 2100):
        r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/mkdir", {"path": p})
        assert r.status == 400, (p[:40], r)
        r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/files/move", {"from": "/tmp", "to": p})
        assert r.status == 400, (p[:40], r)
    # Positive control: a well-formed path works.
    assert daemon.request("GET", f"/v1/sandboxes/{sandbox}/files/stat?path=/tmp").status == 200


def test_route_traversal(daemon, sandbox):
    """`..` in the URL path itself does not reach another sandbox's files or the host."""
    for path in (f"/v1/sandboxes/{sandbox}/../../../etc/passwd", "/v1/sandboxes/%2e%2e/files?path=/etc/hostname",
                 f"/v1/sandboxes/{sandbox}/files/..%2f..%2fstat?path=/etc/hostname", "/../../etc/passwd",
                 f"/v1/sandboxes/{sandbox}%2f..%2f..%2f/files?path=/etc/hostname"):
        r = daemon.request("GET", path)
        assert r.status in (400, 404, 405), (path, r)
        assert b"root:x:0:0" not in r.body, (path, r)
