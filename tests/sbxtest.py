"""Shared helpers for sbx's end-to-end and security tests: start a real sbxd on a temporary data dir and
talk to it over real HTTP, SSE and WebSocket (standard library only)."""
import base64
import contextlib
import hashlib
import http.client
import json
import os
import socket
import struct
import subprocess
import tempfile
import time

SOURCE_DIR = os.environ.get("SBX_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("SBX_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
BIN = os.path.join(BUILD_DIR, "bin")


def wait_for(cond, timeout=10.0, interval=0.01, what="condition"):
    """Polls cond() until it returns a truthy value (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def error_code(self):
        return self.json()["error"]["code"]

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class Daemon:
    """A real sbxd process. Use as a context manager; stop() sends SIGTERM and waits."""

    def __init__(self, api_key=None, ephemeral=True, data_dir=None, extra_args=()):
        self.port = free_port()
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="sbx-e2e-", dir="/var/tmp")
        self.api_key = api_key
        self.ephemeral = ephemeral
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(self.data_dir, "sbxd.log")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        env = dict(os.environ)
        env.pop("SBX_API_KEY", None)
        if self.api_key:
            env["SBX_API_KEY"] = self.api_key
        args = [os.path.join(BIN, "sbxd"), "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir]
        if self.ephemeral:
            args.append("--ephemeral")
        args += self.extra_args
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"sbxd exited with {self.proc.returncode}: {self.read_log()}")
            try:
                return self.request("GET", "/healthz").status == 200
            except OSError:
                return False

        wait_for(up, timeout=15, what="sbxd /healthz")
        return self

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self, sig=15, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self.own_dir and self.ephemeral:
            subprocess.run(["rm", "-rf", "--one-file-system", self.data_dir], check=False)

    def headers(self, extra=None, auth=True):
        h = {}
        if auth and self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        if extra:
            h.update(extra)
        return h

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, auth=True, timeout=60):
        c = self.conn(timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = dict(headers or {}, **{"Content-Type": "application/json"})
            c.request(method, path, body=body, headers=self.headers(headers, auth))
            r = c.getresponse()
            return Response(r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read())
        finally:
            c.close()

    def warm_ids(self):
        """Ids of the ready pre-created sandboxes of the warm pool (their shim reported ready, so the row
        has its pid), read from sbxd's own SQLite store."""
        import sqlite3
        db = sqlite3.connect(f"file:{os.path.join(self.data_dir, 'sbx.db')}?mode=ro", uri=True, timeout=5)
        try:
            return {r[0] for r in db.execute("SELECT id FROM sandboxes WHERE state = 'warm' AND shim_pid > 0")}
        finally:
            db.close()

    # Convenience wrappers over the native API.
    def create(self, **kw):
        r = self.request("POST", "/v1/sandboxes", kw)
        assert r.status == 201, r
        return r.json()["id"]

    def delete(self, sid):
        r = self.request("DELETE", f"/v1/sandboxes/{sid}")
        assert r.status == 204, r

    def run(self, sid, command, **kw):
        kw["command"] = command
        kw["wait"] = True
        r = self.request("POST", f"/v1/sandboxes/{sid}/commands", kw)
        assert r.status == 200, r
        return r.json()

    def sse(self, sid, cid, stdout_offset=0, stderr_offset=0, timeout=60):
        """Returns (events, raw) where events is a list of (event, data-dict)."""
        c = self.conn(timeout)
        try:
            c.request("GET", f"/v1/sandboxes/{sid}/commands/{cid}/stream?stdout_offset={stdout_offset}"
                      f"&stderr_offset={stderr_offset}", headers=self.headers({"Accept": "text/event-stream"}))
            r = c.getresponse()
            assert r.status == 200, (r.status, r.read())
            assert r.getheader("Content-Type", "").startswith("text/event-stream")
            return parse_sse(r.read().decode())
        finally:
            c.close()


def parse_sse(text):
    events = []
    for block in text.split("\n\n"):
        ev, data = "message", []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "event":
                ev = v
            elif k == "data":
                data.append(v)
        if data:
            events.append((ev, json.loads("\n".join(data))))
    return events


def chunk_bytes(ev):
    d = ev["data"]
    return base64.b64decode(d) if ev.get("encoding") == "base64" else d.encode()


def collect(events):
    """Joins output events into per-stream bytes, checking offsets are contiguous; returns (out, err, exit)."""
    streams = {"stdout": b"", "stderr": b""}
    start = {}
    exit_ev = None
    for name, ev in events:
        if name == "output":
            s = ev["stream"]
            start.setdefault(s, ev["offset"])
            assert ev["offset"] == start[s] + len(streams[s]), (s, ev["offset"], len(streams[s]))
            streams[s] += chunk_bytes(ev)
        elif name == "exit":
            assert exit_ev is None
            exit_ev = ev
    return streams["stdout"], streams["stderr"], exit_ev


class WebSocket:
    """A minimal RFC 6455 client (masking, fragmentation on receive, close handshake)."""

    def __init__(self, daemon, path, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        hdrs = "".join(f"{k}: {v}\r\n" for k, v in daemon.headers().items())
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{hdrs}\r\n")
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        self.status_line = head.split(b"\r\n")[0].decode()
        if " 101 " not in self.status_line:
            raise ConnectionError(self.status_line)
        want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        assert want in head, head

    def send(self, data, opcode=None):
        if isinstance(data, (dict, list)):
            data = json.dumps(data)
        if isinstance(data, str):
            data, opcode = data.encode(), opcode or 1
        opcode = opcode or 2
        mask = os.urandom(4)
        n = len(data)
        hdr = bytes([0x80 | opcode])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(hdr + mask + masked)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """Returns (opcode, payload) of the next complete message; control frames are returned too."""
        msg, first_op = b"", None
        while True:
            b0, b1 = self._read(2)
            op, fin, n = b0 & 0x0F, b0 & 0x80, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if op >= 8:
                return op, payload
            first_op = first_op or op
            msg += payload
            if fin:
                return first_op, msg

    def messages(self):
        """Yields decoded JSON messages until the exit message or a close frame."""
        while True:
            op, payload = self.recv()
            if op == 8:
                return
            if op == 1:
                m = json.loads(payload)
                yield m
                if m.get("type") == "exit":
                    return

    def close(self):
        with contextlib.suppress(OSError):
            self.send(struct.pack(">H", 1000), opcode=8)
        self.sock.close()


def host_mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [l for l in f if path in l.split()[4]]


def processes_with_cmdline(fragment):
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if fragment.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


# --- Helpers for the security tests (tests/security) ---------------------------------------------------

def cli(daemon, *args, key=None, check=True, timeout=120):
    """Runs the sbx CLI against daemon (SBX_URL; SBX_API_KEY = key, or the daemon's own); with check, a
    non-zero exit fails the test. Returns the CompletedProcess (stdout and stderr as bytes)."""
    env = dict(os.environ, SBX_URL=daemon.url)
    env.pop("SBX_API_KEY", None)
    if key or daemon.api_key:
        env["SBX_API_KEY"] = key or daemon.api_key
    p = subprocess.run([os.path.join(BIN, "sbx"), *args], env=env, capture_output=True, timeout=timeout)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def sh(daemon, sid, script, timeout=60, **kw):
    """Runs `script` with /bin/sh -c in the sandbox and waits; returns the command object with stdout and
    stderr (decoded to str). `timeout` is the command's own timeout in seconds."""
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                       dict(kw, command=script, wait=True, timeout=timeout), timeout=timeout + 30)
    assert r.status == 200, r
    res = r.json()
    for s in ("stdout", "stderr"):
        if res.get(f"{s}_encoding") == "base64":
            res[s] = base64.b64decode(res[s]).decode(errors="replace")
    return res


def kv(text):
    """Parses the first `<command> ok|error key=value...` line of sbx-testhelper's output into a dict
    with "status" set to "ok" or "error"."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] in ("ok", "error"):
            d = {"status": parts[1]}
            for p in parts[2:]:
                k, _, v = p.partition("=")
                d[k] = v
            return d
    raise AssertionError(f"no helper status line in {text!r}")


def sandbox_state_dir(daemon, sid):
    return os.path.join(daemon.data_dir, "sandboxes", sid)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- Helpers for the leak and crash-safety checks (tests/e2e/test_leaks.py, test_crash_safety.py, bench/) ---

def cgroup_dirs_named(names, root="/sys/fs/cgroup"):
    """Every cgroup directory, in any v1 hierarchy or the v2 one under `root`, whose name is one of
    `names` (e.g. sandbox ids): one walk for all names. Hierarchies that are symlinks (cpu -> cpu,cpuacct)
    are followed once."""
    names = set(names)
    found, seen = [], set()
    try:
        tops = [os.path.join(root, e) for e in os.listdir(root)]
    except OSError:
        return found
    for top in tops:
        real = os.path.realpath(top)
        if real in seen or not os.path.isdir(real):
            continue
        seen.add(real)
        for dirpath, dirs, _ in os.walk(real):
            for d in dirs:
                if d in names:
                    found.append(os.path.join(dirpath, d))
    return found


def loop_devices_backed_under(path):
    """Loop devices whose backing file is under `path`: [(device, backing file)], from
    /sys/block/loop*/loop/backing_file and, as a cross-check, `losetup -a` when it exists."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    out = {}
    try:
        devs = [d for d in os.listdir("/sys/block") if d.startswith("loop")]
    except OSError:
        devs = []
    for dev in devs:
        try:
            with open(f"/sys/block/{dev}/loop/backing_file") as f:
                backing = f.read().strip()
        except OSError:
            continue  # not attached
        if backing.startswith(prefix) or backing.startswith(path.rstrip("/") + "/"):
            out[f"/dev/{dev}"] = backing
    try:
        r = subprocess.run(["losetup", "-a"], capture_output=True, text=True, timeout=10)
        for line in r.stdout.splitlines():
            dev, _, rest = line.partition(":")
            if prefix in rest or path.rstrip("/") + "/" in rest:
                out.setdefault(dev, rest.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return sorted(out.items())


def open_fds(pid):
    """{fd number: link target} of a process."""
    out = {}
    base = f"/proc/{pid}/fd"
    for fd in os.listdir(base):
        try:
            out[int(fd)] = os.readlink(os.path.join(base, fd))
        except OSError:
            pass
    return out


def rss_kib(pid):
    """VmRSS of a process in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def files_under(path, skip=()):
    """Every file, dir and symlink below `path` (not `path` itself), relative; [] if it does not exist.
    Top-level entries named in `skip` are left out, and mount points are listed but not entered (a live
    sandbox's rootfs holds the host's /usr)."""
    out = []
    for dirpath, dirs, files in os.walk(path):
        if dirpath == path:
            dirs[:] = [x for x in dirs if x not in skip]
            files = [x for x in files if x not in skip]
        out += [os.path.relpath(os.path.join(dirpath, n), path) for n in dirs + files]
        dirs[:] = [x for x in dirs if not os.path.ismount(os.path.join(dirpath, x))]
    return sorted(out)


def leftovers(data_dir, ids, keep_ids=()):
    """What is left on the host of the sandboxes `ids` of the sbxd on `data_dir`, ignoring the sandboxes
    `keep_ids` that are meant to be alive (e.g. the warm pool): {kind: [items]} with only non-empty kinds.
    Kinds: mounts (under data_dir), cgroups (named after an id), processes (cmdline mentions data_dir),
    loop devices (backing file under data_dir), files (under data_dir/sandboxes)."""
    keep_dirs = [os.path.join(data_dir, "sandboxes", k) for k in keep_ids]

    def kept(text):
        return any(k in text for k in keep_dirs)

    found = {}
    found["mounts"] = [l.split()[4] for l in host_mounts_under(data_dir) if not kept(l.split()[4])]
    found["cgroups"] = cgroup_dirs_named(set(ids) - set(keep_ids))
    procs = []
    for pid in processes_with_cmdline(data_dir):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if pid != os.getpid() and not kept(cmd) and not cmd.split(" ")[0].endswith("/sbxd"):
            procs.append(f"{pid}: {cmd}")
    found["processes"] = procs
    found["loop_devices"] = [f"{d} -> {b}" for d, b in loop_devices_backed_under(data_dir) if not kept(b)]
    sbdir = os.path.join(data_dir, "sandboxes")
    found["files"] = files_under(sbdir, skip=set(keep_ids))
    return {k: v for k, v in found.items() if v}


def fd_kinds(fds):
    """fd targets with inode numbers and pids taken out, sorted: comparable across time."""
    import re
    return sorted(re.sub(r"\[\d+\]|\d+", "N", t) for t in fds.values())


def leak_cycle(d, i, token, controls=None):
    """One create → exec → delete cycle (tests/e2e/test_leaks.py, bench/leaks.py): create; a command with
    output on both streams, read again over SSE; a command leaving a background child; a file written
    and read back; a command left running; pause, resume, metrics; delete. With `controls` (a
    dict), checks that each leak detector sees the live sandbox, so that an empty answer at the end means
    something, and sets controls["loop_devices"] to the loop devices seen backed under the data dir.
    Processes started inside carry `token` in their argv. Returns the sandbox id."""
    sid = d.create()
    res = d.run(sid, f"echo out-{i}; echo err-{i} >&2; exit 3")
    assert (res["stdout"], res["stderr"], res["exit_code"]) == (f"out-{i}\n", f"err-{i}\n", 3), res
    out, err, ex = collect(d.sse(sid, res["id"]))  # the stream path too, from a finished command
    assert (out, err, ex["exit_code"]) == (f"out-{i}\n".encode(), f"err-{i}\n".encode(), 3)
    res = d.run(sid, f"bash -c 'exec -a {token}-bg-{i} sleep 600' </dev/null >/dev/null 2>&1 & echo started")
    assert res["stdout"] == "started\n" and res["exit_code"] == 0, res
    body = f"file-{i}-".encode() * 512
    r = d.request("PUT", f"/v1/sandboxes/{sid}/files?path=/root/dir/f{i}.txt", body=body)
    assert r.status == 200, r
    assert d.request("GET", f"/v1/sandboxes/{sid}/files?path=/root/dir/f{i}.txt").body == body
    r = d.request("POST", f"/v1/sandboxes/{sid}/commands",
                  {"command": f"exec bash -c 'exec -a {token}-fg-{i} sleep 600'"})
    assert r.status == 201, r
    for op in ("pause", "resume"):
        r = d.request("POST", f"/v1/sandboxes/{sid}/{op}")
        assert r.status == 200, r
    r = d.request("GET", f"/v1/sandboxes/{sid}/metrics")
    assert r.status == 200 and r.json()["pids"] >= 2, r
    if controls is not None:
        state_dir = os.path.join(d.data_dir, "sandboxes", sid)
        wait_for(lambda: len(processes_with_cmdline(f"{token}-fg-{i}")) == 1, what="the running command")
        assert len(processes_with_cmdline(f"{token}-bg-{i}")) == 1, "the background child runs"
        assert host_mounts_under(state_dir), "positive control: the sandbox's mounts are seen"
        assert cgroup_dirs_named([sid]), "positive control: the sandbox's cgroups are seen"
        assert processes_with_cmdline(state_dir), "positive control: its shim is seen"
        assert os.listdir(state_dir), "positive control: its files are seen"
        # Loop devices exist only once sandboxes get disk images; nothing to check against until then.
        controls["loop_devices"] = loop_devices_backed_under(d.data_dir)
    d.delete(sid)
    return sid


def wait_warm_full(d, n):
    if n:
        wait_for(lambda: len(d.warm_ids()) >= n, timeout=20, what=f"{n} warm sandboxes")


def settle_fds(pid, want=None, timeout=10):
    """Waits for a process's fd count to come back to `want` (closing an HTTP connection or reaping a
    shim takes sbxd a loop iteration), or with want=None for it to stay the same over 3 reads 50 ms
    apart; returns the fds as they are at the end (also on timeout)."""
    deadline = time.monotonic() + timeout
    counts = []
    while True:
        fds = open_fds(pid)
        counts = (counts + [len(fds)])[-3:]
        done = len(fds) == want if want is not None else len(counts) == 3 and len(set(counts)) == 1
        if done or time.monotonic() > deadline:
            return fds
        time.sleep(0.05)


def is_sanitized(pid):
    """Whether a process runs with AddressSanitizer (its RSS then grows with ASan's quarantine of freed
    memory, so RSS says nothing about leaks; LeakSanitizer's exit status does)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def sqlite_kib(data_dir):
    """KiB of pages in sbxd's SQLite database (all tables and indexes, from the dbstat table): an upper
    bound for what SQLite's page cache in sbxd can hold of it (the cache itself is capped at 2000 KiB,
    SQLite's default cache_size). Its growth explains sbxd RSS growth that is not a leak, e.g. rows of
    deleted sandboxes kept as tombstones."""
    import sqlite3
    db = sqlite3.connect(f"file:{os.path.join(data_dir, 'sbx.db')}?mode=ro", uri=True, timeout=5)
    try:
        return (db.execute("SELECT sum(pgsize) FROM dbstat").fetchone()[0] or 0) // 1024
    finally:
        db.close()


def rss_allowance_kib(base_db_kib, db_kib, tolerance_kib=512, sqlite_cache_kib=2000):
    """The RSS growth accepted as not a leak: `tolerance_kib` of allocator noise plus what SQLite's page
    cache may have taken of the database's growth."""
    return tolerance_kib + min(sqlite_cache_kib, max(0, db_kib - base_db_kib))


def zombie_children(pid):
    """Children of a process that exited and were not reaped (state Z): [(pid, comm)]."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = f.read().split()
        except OSError:
            continue
        for k in kids:
            try:
                with open(f"/proc/{k}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            comm = st[st.index("(") + 1:st.rindex(")")]
            if st[st.rindex(")") + 2] == "Z":
                out.append((int(k), comm))
    return out


def force_cleanup(data_dir):
    """Last resort for a test that failed half-way through a non-ephemeral run: kills every process
    whose command line names data_dir (shims and their sandboxes), unmounts everything under it (deepest
    first; loop devices go with their last unmount) and removes it. Only ever under a test's own dir."""
    for pid in processes_with_cmdline(data_dir):
        if pid in (os.getpid(), os.getppid()):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    for _ in range(3):
        mounts = sorted({line.split()[4] for line in host_mounts_under(data_dir)}, key=len, reverse=True)
        for m in mounts:
            subprocess.run(["umount", "-l", m], check=False, stderr=subprocess.DEVNULL)
        if not mounts:
            break
    subprocess.run(["rm", "-rf", "--one-file-system", data_dir], check=False)
