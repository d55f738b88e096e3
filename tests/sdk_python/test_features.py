"""Snapshots (import/list/get/delete, a failed import), service URLs and listening ports, and PTY
commands (shell, resize), sync and asyncio, against the same real sbxd as the other SDK tests."""
import asyncio
import functools
import http.client
import os
import sys
import time
import uuid

import pytest

import sbx
from conftest import ADMIN_KEY, SOURCE
from sbx import errors

sys.path.insert(0, os.path.join(SOURCE, "tests"))
import imagebuild  # noqa: E402


def arun(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 120))
    return wrapper


def aclient(url):
    return sbx.AsyncSandboxClient(url, api_key=ADMIN_KEY, transport="sse")


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A good busybox image (docker save) and a broken one (OCI layout with a corrupt layer blob)."""
    if not os.path.exists(imagebuild.BUSYBOX):
        pytest.skip("busybox-static is not installed")
    d = tmp_path_factory.mktemp("images")
    good, bad = str(d / "busybox.tar"), str(d / "bad.tar")
    layer = imagebuild.busybox_layer().bytes()
    imagebuild.docker_save(good, [layer], env=["PATH=/bin", "IMG=busybox"], workdir="/tmp")
    imagebuild.oci_layout(bad, [layer], corrupt_blob=0)
    return good, bad


# --- snapshots --------------------------------------------------------------------------------------


def test_snapshots_sync(client, images):
    good, bad = images
    name = uniq("sdk-bb")
    snap = client.import_snapshot(good, name=name)              # a path: streamed, then polled
    assert isinstance(snap, sbx.Snapshot) and snap.ready and snap.name == name and snap.id.startswith("snap_")
    assert snap.source == "image" and len(snap.layers) == 1 and snap.size_bytes > 0
    assert snap.config.get("WorkingDir") == "/tmp" and "IMG=busybox" in snap.config.get("Env", [])
    snaps = client.list_snapshots()
    assert snaps[0].name == "host" and snaps[0].source == "host"
    assert name in [s.name for s in snaps]
    assert client.get_snapshot(name).id == snap.id == client.get_snapshot(snap.id).id
    with pytest.raises(errors.ConflictError):                   # names are unique
        client.import_snapshot(good, name=name)

    with client.sandbox(snapshot=name) as s:
        assert s.snapshot == snap.id
        r = s.run("echo $IMG; pwd; ls /bin/busybox")
        assert r.success and r.stdout == "busybox\n/tmp\n/bin/busybox\n", r
        with pytest.raises(errors.ConflictError):               # in use
            client.delete_snapshot(name)
    client.delete_snapshot(name)
    with pytest.raises(errors.NotFoundError):
        client.get_snapshot(name)
    client.delete_snapshot(name, missing_ok=True)
    with pytest.raises(errors.NotFoundError):
        client.delete_snapshot(name)
    with pytest.raises(errors.PermissionDeniedError):
        client.delete_snapshot("host")

    # A broken image: wait=False returns it building; waiting raises the typed error with the reason.
    bname = uniq("sdk-bad")
    with open(bad, "rb") as f:
        b = client.import_snapshot(f, name=bname, wait=False)   # a file object
    assert b.name == bname and b.status in ("building", "failed")
    with pytest.raises(sbx.SnapshotImportError) as ei:
        client.wait_snapshot(bname, timeout=60)
    assert ei.value.reason and "digest" in ei.value.reason, ei.value.reason
    assert ei.value.snapshot.failed and isinstance(ei.value, errors.CreationError)
    with pytest.raises(sbx.SnapshotImportError):
        with open(bad, "rb") as f:
            client.import_snapshot(f.read(), name=uniq("sdk-bad2"))   # bytes; wait=True raises
    client.delete_snapshot(bname)
    for s in client.list_snapshots():
        if s.name.startswith("sdk-bad2-"):
            client.delete_snapshot(s.id)


@arun
async def test_snapshots_async(daemon, images):
    good, bad = images
    name = uniq("sdk-abb")
    async with aclient(daemon.url) as ac:
        with open(good, "rb") as f:
            snap = await ac.import_snapshot(f, name=name)
        assert snap.ready and snap.name == name
        assert name in [s.name for s in await ac.list_snapshots()]
        assert (await ac.get_snapshot(snap.id)).name == name
        async with ac.sandbox(snapshot=name) as s:
            assert (await s.run("echo $IMG")).stdout == "busybox\n"
        await ac.delete_snapshot(name)
        with pytest.raises(errors.NotFoundError):
            await ac.get_snapshot(name)
        await ac.delete_snapshot(name, missing_ok=True)

        bname = uniq("sdk-abad")
        with pytest.raises(sbx.SnapshotImportError) as ei:
            await ac.import_snapshot(bad, name=bname)           # a path
        assert "digest" in (ei.value.reason or "")
        await ac.delete_snapshot(bname)


# --- service URLs and ports -------------------------------------------------------------------------

SERVER = r'''
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def _answer(self, body):
        b = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def do_GET(self):
        self._answer({"path": self.path, "token": self.headers.get("X-Sbx-Service-Token"),
                      "auth": self.headers.get("Authorization"), "x": self.headers.get("X-Test")})
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self._answer({"path": self.path, "body": self.rfile.read(n).decode(),
                      "type": self.headers.get("Content-Type")})
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def start_server(sb, port):
    sb.write("/root/srv.py", SERVER)
    return sb.run(["python3", "/root/srv.py", str(port)], wait=False, idle_timeout=-1)


def wait_port(ports_fn, port):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ports = ports_fn()
        if port in [p.port for p in ports]:
            return ports
        time.sleep(0.05)
    raise AssertionError(f"port {port} never listened")


def test_service_and_ports_sync(sb):
    assert 8000 not in [p.port for p in sb.ports()]
    svc = sb.service(8000, expires_in=120)                       # nothing listens yet: fine
    assert isinstance(svc, sbx.ServiceURL) and svc.port == 8000 and svc.sandbox_id == sb.id
    assert svc.token and svc.expires_at and f"/s/{sb.id}/8000/" in svc.path_url
    assert svc.browser_url.startswith(svc.url + "?sbx_token=")
    r = svc.get("/")
    assert r.status == 502 and not r.ok
    with pytest.raises(errors.SandboxError) as ei:
        r.raise_for_status()
    assert ei.value.code == "port_closed"

    h = start_server(sb, 8000)
    try:
        ports = wait_port(sb.ports, 8000)
        assert all(isinstance(p, sbx.ListeningPort) for p in ports)
        assert [p for p in ports if p.port == 8000][0].address == "127.0.0.1"
        r = svc.get("/hello?x=1", headers={"X-Test": "t"})
        assert r.ok and r.headers["content-type"] == "application/json"
        assert r.json() == {"path": "/hello?x=1", "token": None, "auth": None, "x": "t"}   # token stripped, no key
        assert svc.post("echo", b"raw bytes").json()["body"] == "raw bytes"
        j = svc.post("/j", {"a": [1, 2]}).json()
        assert j["type"] == "application/json" and j["body"] == '{"a": [1, 2]}'
        assert svc.post("/t", "text").json()["body"] == "text"

        # Without the token: 401 from sbxd, nothing reaches the service.
        _, host, port, target = svc.target("/hello")
        c = http.client.HTTPConnection(host, port, timeout=10)
        c.request("GET", target)
        assert c.getresponse().status == 401
        c.close()
    finally:
        h.kill()
    sb.stop()
    with pytest.raises(errors.NotRunningError):
        sb.ports()


# --- TCP tunnels ---------------------------------------------------------------------------------------

ECHO = r'''
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
def serve(c):
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    c.close()
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
'''


def echo_roundtrip(port, payload):
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=15) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            b = c.recv(65536)
            if not b:
                return got
            got += b


needs_ws = pytest.mark.skipif(not sbx.aio.HAVE_WEBSOCKETS, reason="the websockets package is not installed")


@needs_ws
def test_tunnel_sync(sb):
    sb.write("/root/echo.py", ECHO)
    h = sb.run(["python3", "/root/echo.py", "9000"], wait=False, idle_timeout=-1)
    wait_port(sb.ports, 9000)
    big = os.urandom(1 << 20)                                   # > the 256 KiB yamux window, both ways
    with sb.tunnel(9000) as t:
        assert isinstance(t, sbx.Tunnel) and t.local_port > 0 and t.remote_port == 9000
        assert echo_roundtrip(t.local_port, b"hello") == b"hello"
        assert echo_roundtrip(t.local_port, big) == big
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(lambda i: echo_roundtrip(t.local_port, b"x%d" % i * 1000), range(8)))
        assert outs == [b"x%d" % i * 1000 for i in range(8)]
    with sb.tunnel(9001) as t:                                  # nothing listens there: closed at once
        assert echo_roundtrip(t.local_port, b"nobody") == b""
    h.kill()


@needs_ws
@arun
async def test_tunnel_async(daemon):
    async with aclient(daemon.url) as ac:
        async with ac.sandbox() as s:
            await s.write("/root/echo.py", ECHO)
            h = await s.run(["python3", "/root/echo.py", "9002"], wait=False, idle_timeout=-1)
            deadline = time.monotonic() + 15
            while 9002 not in [p.port for p in await s.ports()]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            async with s.tunnel(9002) as t:
                assert isinstance(t, sbx.AsyncTunnel)

                async def one(payload):
                    r, w = await asyncio.open_connection("127.0.0.1", t.local_port)
                    w.write(payload)
                    await w.drain()
                    w.write_eof()
                    got = await r.read()
                    w.close()
                    return got
                big = os.urandom(600_000)
                outs = await asyncio.gather(one(big), one(b"abc"), one(b"def" * 10000))
                assert outs == [big, b"abc", b"def" * 10000]
            await h.kill()
        with pytest.raises(errors.NotFoundError):
            async with ac.sandbox() as s2:
                sid = s2.id
            await (await ac.get_sandbox(sid)).tunnel(1).start()


@arun
async def test_service_and_ports_async(daemon):
    async with aclient(daemon.url) as ac:
        async with ac.sandbox() as s:
            svc = await s.service(8001)
            assert isinstance(svc, sbx.AsyncServiceURL) and svc.port == 8001 and svc.token
            assert (await svc.get("/")).status == 502
            await s.write("/root/srv.py", SERVER)
            h = await s.run(["python3", "/root/srv.py", "8001"], wait=False, idle_timeout=-1)
            deadline = time.monotonic() + 15
            while 8001 not in [p.port for p in await s.ports()]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            r = await svc.get("/a/b?c=d", headers={"X-Test": "y"})
            assert r.ok and r.json() == {"path": "/a/b?c=d", "token": None, "auth": None, "x": "y"}
            assert (await svc.post("/p", b"xyz")).json()["body"] == "xyz"
            assert (await svc.post("/p", {"k": 1})).json()["body"] == '{"k": 1}'
            rs = await asyncio.gather(*(svc.get(f"/{i}") for i in range(4)))
            assert [x.json()["path"] for x in rs] == [f"/{i}" for i in range(4)]
            await h.kill()


# --- PTY ----------------------------------------------------------------------------------------------


def read_until(it, needle, deadline_s=15):
    """Reads chunks from a (sync) handle iterator until `needle` is in the accumulated output."""
    out = ""
    deadline = time.monotonic() + deadline_s
    for c in it:
        assert c.stream == "stdout"
        out += c.data
        if needle in out or time.monotonic() > deadline:
            break
    return out


def test_pty_sync(sb):
    r = sb.run("test -t 0 && test -t 1 && echo is-a-tty; stty size; echo $TERM", pty=True, cols=100, rows=30)
    assert r.success and r.stderr == ""
    assert r.stdout == "is-a-tty\r\n30 100\r\nxterm-256color\r\n", repr(r.stdout)
    assert "is-a-tty" not in sb.run("test -t 0 && echo is-a-tty").stdout      # pipes without pty
    with pytest.raises(ValueError):
        sb.run("true", cols=10)

    nh0 = sb.run("true", wait=False)
    h = sb.shell(cols=90, rows=20)
    assert isinstance(h, sbx.CommandHandle) and sb.command(h.command_id).pty and not sb.command(nh0.command_id).pty
    it = iter(h)
    h.send_input("stty size; echo M1-$((1+1))\n")
    assert "20 90" in read_until(it, "M1-2")
    h.resize(132, 43)
    h.send_input("stty size; echo M2-$((2+2))\n")
    assert "43 132" in read_until(it, "M2-4")
    h.send_input("sleep 30\n")
    time.sleep(0.3)
    h.send_input("\x03")                                       # ^C interrupts the foreground sleep
    h.send_input("echo M3-$((3+3)); exit 7\n")
    out = read_until(it, "M3-6")
    res = h.wait()
    assert res.exit_code == 7 and "M3-6" in res.stdout, (out, res)
    h.resize(10, 10)                                           # exited: no-op

    nh = sb.run("sleep 5", wait=False)
    with pytest.raises(errors.ConflictError):                  # not a pty
        nh.resize(80, 24)
    nh.kill()

    # Replay after reconnecting works the same for terminal output.
    h2 = sb.reconnect(h.command_id)
    assert h2.wait().stdout == res.stdout


@arun
async def test_pty_async(daemon):
    async with aclient(daemon.url) as ac:
        async with ac.sandbox() as s:
            r = await s.run("stty size", pty=True, cols=61, rows=17)
            assert r.stdout == "17 61\r\n"
            h = await s.shell(cols=70, rows=21)
            assert isinstance(h, sbx.AsyncCommandHandle)
            await h.send_input("stty size; echo A-$((1+1))\n")
            out = ""
            async for c in h:
                out += c.data
                if "A-2" in out:
                    break
            assert "21 70" in out
            await h.resize(111, 33)
            await h.send_input("stty size; exit 3\n")
            res = await h.wait()
            assert res.exit_code == 3
            assert res.stdout.index("21 70") < res.stdout.index("A-2") < res.stdout.index("33 111"), repr(res.stdout)
            with pytest.raises(errors.ConflictError):
                await (await s.run("sleep 5", wait=False)).resize(1, 1)
