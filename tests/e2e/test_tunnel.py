"""TCP tunnels: GET /v1/sandboxes/{id}/tunnel is a WebSocket carrying yamux (version 0) with the LangSmith
per-stream connect header (0x01, port u16; one status byte back). The client here behaves like the
LangSmith Python client: odd stream ids, WINDOW_UPDATE|SYN then data at once, 256 KiB windows, credits
after consuming. 50 concurrent streams to an echo server inside a sandbox with no network."""
import hashlib
import os
import select
import struct

import pytest

from sbxtest import WebSocket, wait_for
from svcurl import ports

ECHO = r"""
import socket, sys, threading
def serve(c):
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    c.shutdown(socket.SHUT_WR)
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(256)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
PORT = 7001
WINDOW = 256 * 1024
DATA, WUPD, PING, GOAWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8


def frame(t, flags, sid, length, payload=b""):
    return struct.pack(">BBHII", 0, t, flags, sid, length) + payload


class Session:
    def __init__(self, daemon, sid):
        self.ws = WebSocket(daemon, f"/v1/sandboxes/{sid}/tunnel")
        self.buf = b""
        self.streams = {}
        self.next_id = 1

    def open(self, port, version=1):
        sid = self.next_id
        self.next_id += 2
        self.streams[sid] = {"send_window": WINDOW, "got": bytearray(), "fin": False, "consumed": 0,
                             "status": None, "rst": False}
        self.ws.send(frame(WUPD, SYN, sid, 0) + frame(DATA, 0, sid, 3, struct.pack(">BH", version, port)),
                     opcode=2)
        self.streams[sid]["send_window"] -= 3
        return sid

    def send(self, sid, data, fin=False):
        st = self.streams[sid]
        n = min(len(data), st["send_window"])
        if n:
            self.ws.send(frame(DATA, FIN if fin and n == len(data) else 0, sid, n, data[:n]), opcode=2)
            st["send_window"] -= n
        elif fin and not data:
            self.ws.send(frame(DATA, FIN, sid, 0), opcode=2)
        return n

    def pump(self, timeout=10):
        """Reads one WebSocket message and handles the yamux frames in it."""
        op, payload = self.ws.recv()
        assert op in (1, 2), (op, payload)
        self.buf += payload
        while len(self.buf) >= 12:
            ver, t, flags, sid, length = struct.unpack(">BBHII", self.buf[:12])
            assert ver == 0
            need = 12 + (length if t == DATA else 0)
            if len(self.buf) < need:
                break
            body, self.buf = self.buf[12:need], self.buf[need:]
            if t == PING:
                continue
            st = self.streams.get(sid)
            if st is None:
                continue
            if flags & RST:
                st["rst"] = True
            if t == WUPD:
                st["send_window"] += length
            elif t == DATA and body:
                if st["status"] is None:
                    st["status"], body = body[0], body[1:]
                st["got"] += body
                st["consumed"] += len(body) + (1 if st["status"] is not None and st["consumed"] == 0 else 0)
                if st["consumed"] >= 128 * 1024:
                    self.ws.send(frame(WUPD, 0, sid, st["consumed"]), opcode=2)
                    st["consumed"] = 0
            if flags & FIN:
                st["fin"] = True

    def close(self):
        self.ws.send(frame(GOAWAY, 0, 0, 0), opcode=2)
        self.ws.sock.close()


@pytest.fixture(scope="module")
def echo_sandbox(daemon):
    sid = daemon.create()
    r = daemon.request("PUT", f"/v1/sandboxes/{sid}/files?path=/root/echo.py", body=ECHO.encode())
    assert r.status == 200, r
    r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": f"exec python3 /root/echo.py {PORT}"})
    assert r.status == 201, r
    wait_for(lambda: PORT in {p["port"] for p in ports(daemon, sid)}, timeout=20, what="the echo server")
    yield sid
    daemon.request("DELETE", f"/v1/sandboxes/{sid}")


def test_fifty_concurrent_streams_with_flow_control(daemon, echo_sandbox):
    s = Session(daemon, echo_sandbox)
    size = 600 * 1024  # more than two windows each way
    payloads = {}
    for _ in range(50):
        sid = s.open(PORT)
        payloads[sid] = os.urandom(size)
    sent = {sid: 0 for sid in payloads}
    while not all(st["fin"] for st in s.streams.values()):
        for sid, data in payloads.items():
            if sent[sid] < size:
                sent[sid] += s.send(sid, data[sent[sid]:sent[sid] + 65536], fin=sent[sid] + 65536 >= size)
        s.pump()
    for sid, data in payloads.items():
        st = s.streams[sid]
        assert st["status"] == 0 and not st["rst"]
        assert hashlib.sha256(st["got"]).hexdigest() == hashlib.sha256(data).hexdigest(), sid
    # The session stays usable: a PING is answered.
    s.ws.send(frame(PING, SYN, 0, 42), opcode=2)
    op, payload = s.ws.recv()
    assert struct.unpack(">BBHII", payload[:12]) == (0, PING, ACK, 0, 42)
    s.close()


def test_closed_port_and_bad_version_get_a_status(daemon, echo_sandbox):
    s = Session(daemon, echo_sandbox)
    a = s.open(PORT + 1)
    b = s.open(PORT, version=7)
    while not (s.streams[a]["fin"] and s.streams[b]["fin"]):
        s.pump()
    assert s.streams[a]["status"] == 2, "dial failed: nothing listens"
    assert s.streams[b]["status"] == 3, "unsupported version"
    c = s.open(PORT)  # the session still works
    s.send(c, b"ping", fin=True)
    while not s.streams[c]["fin"]:
        s.pump()
    assert s.streams[c]["status"] == 0 and bytes(s.streams[c]["got"]) == b"ping"
    s.close()


def test_tunnel_needs_a_running_visible_sandbox(daemon):
    with pytest.raises(ConnectionError, match="404"):
        WebSocket(daemon, "/v1/sandboxes/sbx_nope/tunnel")
    r = daemon.request("GET", "/v1/sandboxes/sbx_nope/tunnel")
    assert r.status == 400 or r.status == 404


def test_cli_tunnel_fifty_concurrent_connections(daemon, echo_sandbox):
    import concurrent.futures
    import socket
    import subprocess

    from sbxtest import BIN
    sbx = os.path.join(BIN, "sbx")
    p = subprocess.Popen([sbx, "tunnel", echo_sandbox, str(PORT), "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=dict(os.environ, SBX_URL=daemon.url))
    try:
        addr = p.stdout.readline().strip()
        host, port = addr.rsplit(":", 1)
        assert host == "127.0.0.1", (addr, p.stderr.read() if p.poll() is not None else "")

        def one(i):
            data = os.urandom(300 * 1024 + i)
            with socket.create_connection((host, int(port)), timeout=60) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                got = bytearray()
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    got += b
            return hashlib.sha256(got).digest() == hashlib.sha256(data).digest()

        with concurrent.futures.ThreadPoolExecutor(50) as ex:
            assert all(ex.map(one, range(50)))
        # A connection to a closed port is closed at once; the tunnel lives on.
        q = subprocess.Popen([sbx, "tunnel", echo_sandbox, str(PORT + 5), "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, SBX_URL=daemon.url))
        try:
            h2, p2 = q.stdout.readline().strip().rsplit(":", 1)
            with socket.create_connection((h2, int(p2)), timeout=30) as s:
                s.sendall(b"x")
                assert s.recv(10) == b""
            assert q.poll() is None
        finally:
            q.terminate()
            q.wait()
        assert one(1)
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_cli_tunnel_unknown_sandbox(daemon):
    import subprocess

    from sbxtest import BIN
    out = subprocess.run([os.path.join(BIN, "sbx"), "tunnel", "sbx_nope", "80", "0"], capture_output=True,
                         text=True, timeout=30, env=dict(os.environ, SBX_URL=daemon.url))
    assert out.returncode == 1 and "404" in out.stderr, out.stderr
