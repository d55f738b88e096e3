"""LangSmith sandbox protocol on the wire (docs/compat/langsmith.md): the error envelope the SDKs map to
typed errors, and /execute/ws as the Python client speaks it, which the npm SDK in tests/compat_langsmith
does not cover: 32-hex command ids, `kill` followed at once by a close, a connection dropped mid-command
and resumed with byte offsets, WebSocket pings, and the yamux /tunnel with X-Api-Key only."""
import json
import os
import socket
import struct
import sys
import time
import uuid
from urllib.parse import urlparse

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sbxtest import Daemon, WebSocket, wait_for  # noqa: E402

KEY = "lsv2_" + "ab" * 16
BASE = "/langsmith/v2/sandboxes"


@pytest.fixture(scope="module")
def d():
    with Daemon(api_key=KEY) as daemon:
        yield daemon
        assert daemon.stop() == 0, daemon.read_log()


def api(d, method, path, body=None, key=KEY):
    return d.request(method, path, body=body, headers={"X-Api-Key": key} if key else {}, auth=False)


class PyClient:
    """What the Python client sends on an upgrade: X-Api-Key, no Authorization."""

    def __init__(self, d, key=KEY):
        self.port = d.port
        self.key = key

    def headers(self):
        return {"X-Api-Key": self.key}


def ws(d, path):
    return WebSocket(PyClient(d), path)


@pytest.fixture(scope="module")
def box(d):
    r = api(d, "POST", f"{BASE}/boxes", {"wait_for_ready": True, "timeout": 30})
    assert r.status == 200, r
    j = r.json()
    yield j, urlparse(j["dataplane_url"]).path
    api(d, "DELETE", f"{BASE}/boxes/{j['name']}")


def frames(w, until=("exit", "error")):
    out = []
    while True:
        op, payload = w.recv()
        if op == 8:
            out.append({"type": "close", "code": struct.unpack(">H", payload[:2])[0] if payload else 1005})
            return out
        if op == 9:
            continue
        if op == 1:
            m = json.loads(payload)
            out.append(m)
            if m["type"] in until:
                return out


def output(fs, stream="stdout"):
    return "".join(f["data"] for f in fs if f["type"] == stream)


def test_error_envelopes(d):
    r = api(d, "GET", f"{BASE}/boxes/nope")
    assert r.status == 404 and r.json()["detail"]["error"] == "NotFound", r
    r = api(d, "GET", f"{BASE}/boxes", key="wrong")
    assert r.status == 401 and r.json()["detail"]["error"] == "Unauthorized", r
    r = api(d, "POST", f"{BASE}/boxes", {"wait_for_ready": True, "vcpus": 1000})
    assert r.status == 422, r
    assert r.json()["detail"][0]["loc"] == ["body", "vcpus"] and r.json()["detail"][0]["type"] == "value_error"
    r = api(d, "POST", f"{BASE}/boxes", {"wait_for_ready": True, "mem_bytes": "x"})
    assert r.status == 422, r
    r = api(d, "GET", "/langsmith/api/v2/sandboxes/nothing-here")
    assert r.status == 404 and r.json()["detail"]["error"] == "NotFound", r
    r = api(d, "POST", f"{BASE}/boxes", body=b"{not json")
    assert r.status in (400, 422) and "detail" in r.json(), r


def test_quota_message_names_the_sandbox_count(d):
    r = d.request("POST", "/v1/keys", {"name": "q", "quotas": {"max_sandboxes": 1}})
    assert r.status in (200, 201), r
    key = r.json()["key"]
    r = api(d, "POST", f"{BASE}/boxes", {"wait_for_ready": True}, key=key)
    assert r.status == 200, r
    r2 = api(d, "POST", f"{BASE}/boxes", {"wait_for_ready": True}, key=key)
    assert r2.status == 429, r2
    msg = r2.json()["detail"]["message"].lower()
    assert r2.json()["detail"]["error"] == "QuotaExceeded" and "sandbox" in msg and "limit" in msg
    api(d, "DELETE", f"{BASE}/boxes/{r.json()['name']}", key=key)


def test_status_and_dataplane_not_found(d, box):
    j, dp = box
    r = api(d, "GET", f"{BASE}/boxes/{j['name']}/status")
    assert r.json() == {"status": "ready"}, r
    r = api(d, "POST", "/langsmith/dp/nope/execute", {"command": "true"})
    assert r.status == 404, r


def test_http_execute(d, box):
    _, dp = box
    r = api(d, "POST", f"{dp}/execute", {"command": "echo hi; echo no >&2; exit 4", "timeout": 5})
    assert r.status == 200, r
    assert r.json() == {"stdout": "hi\n", "stderr": "no\n", "exit_code": 4}


def test_hex_command_id_drop_and_resume_with_offsets(d, box):
    _, dp = box
    cid = uuid.uuid4().hex  # Python's uuid7().hex: 32 hex digits, no dashes
    w = ws(d, f"{dp}/execute/ws")
    w.send({"type": "execute", "command": "echo one; sleep 1; echo two; echo err >&2", "timeout_seconds": 30,
            "shell": "/bin/bash", "idle_timeout_seconds": 300, "kill_on_disconnect": False, "ttl_seconds": 600,
            "command_id": cid})
    started = json.loads(w.recv()[1])
    assert started["type"] == "started" and started["command_id"] == cid and started["pid"] > 0
    first = json.loads(w.recv()[1])
    assert first == {"type": "stdout", "data": "one\n", "offset": 0}
    w.sock.close()  # dropped without a close frame
    w = ws(d, f"{dp}/execute/ws")
    w.send({"type": "reconnect", "command_id": cid, "stdout_offset": 4, "stderr_offset": 0})
    fs = frames(w)
    assert fs[0] == {"type": "started", "command_id": cid, "pid": started["pid"]}
    assert output(fs) == "two\n" and output(fs, "stderr") == "err\n"
    assert [f["offset"] for f in fs if f["type"] == "stdout"][0] == 4
    assert fs[-1] == {"type": "exit", "exit_code": 0}
    assert frames(w)[-1] == {"type": "close", "code": 1000}


def test_execute_with_a_known_id_reattaches(d, box):
    _, dp = box
    cid = uuid.uuid4().hex
    msg = {"type": "execute", "command": "echo $$ >> /tmp/runs; echo ran", "command_id": cid}
    for _ in range(2):
        w = ws(d, f"{dp}/execute/ws")
        w.send(msg)
        fs = frames(w)
        assert fs[0]["type"] == "started" and output(fs) == "ran\n" and fs[-1]["exit_code"] == 0
    r = api(d, "POST", f"{dp}/execute", {"command": "wc -l < /tmp/runs"})
    assert r.json()["stdout"] == "1\n"


def test_kill_then_immediate_close(d, box):
    _, dp = box
    cid = uuid.uuid4().hex
    w = ws(d, f"{dp}/execute/ws")
    w.send({"type": "execute", "command": "sleep 60", "command_id": cid})
    assert json.loads(w.recv()[1])["type"] == "started"
    w.send({"type": "kill"})
    w.sock.close()  # Python: close_timeout 0, right after kill
    w = ws(d, f"{dp}/execute/ws")
    w.send({"type": "reconnect", "command_id": cid, "stdout_offset": 0, "stderr_offset": 0})
    t0 = time.monotonic()
    fs = frames(w)
    assert fs[-1] == {"type": "exit", "exit_code": 137}, fs
    assert time.monotonic() - t0 < 10


def test_stdin_input_stays_open_without_close_stdin(d, box):
    _, dp = box
    w = ws(d, f"{dp}/execute/ws")
    w.send({"type": "execute", "command": "head -n 2", "command_id": uuid.uuid4().hex})
    assert json.loads(w.recv()[1])["type"] == "started"
    w.send({"type": "input", "data": "a\n"})
    w.send({"type": "input", "data": "b\nc\n"})
    fs = frames(w)
    assert output(fs) == "a\nb\n" and fs[-1]["exit_code"] == 0


def test_errors_on_the_socket(d, box):
    _, dp = box
    w = ws(d, f"{dp}/execute/ws")
    w.send({"type": "reconnect", "command_id": "f" * 32, "stdout_offset": 0, "stderr_offset": 0})
    fs = frames(w)
    assert fs[0]["type"] == "error" and fs[0]["error_type"] == "CommandNotFound"
    assert frames(w)[-1] == {"type": "close", "code": 1000}
    w = ws(d, f"{dp}/execute/ws")
    w.send({"type": "execute", "command": "sleep 5", "timeout_seconds": 1, "command_id": uuid.uuid4().hex})
    fs = frames(w)
    assert fs[0]["type"] == "started" and fs[-1]["type"] == "error" and fs[-1]["error_type"] == "CommandTimeout"
    w = ws(d, f"{dp}/execute/ws")
    w.send({"type": "bogus"})
    fs = frames(w)
    assert fs[0]["type"] == "error" and fs[0]["error_type"] == "InvalidRequest"
    w = ws(d, f"{dp}/execute/ws")
    w.send({"type": "execute", "command": "true", "command_id": "bad id!"})
    assert frames(w)[0]["type"] == "error"


def test_utf8_split_and_invalid_bytes_keep_offsets(d, box):
    _, dp = box
    script = ("import sys,time; o=sys.stdout.buffer; o.write(b'\\xe2\\x82'); o.flush(); time.sleep(0.3); "
              "o.write(b'\\xac!\\xff.'); o.flush()")
    w = ws(d, f"{dp}/execute/ws")
    w.send({"type": "execute", "command": f'python3 -c "{script}"', "command_id": uuid.uuid4().hex})
    fs = frames(w)
    outs = [f for f in fs if f["type"] == "stdout"]
    assert "".join(f["data"] for f in outs) == "\u20ac!?."
    for f in outs:  # each frame's offset is the byte count of everything before it
        before = "".join(g["data"] for g in outs[: outs.index(f)])
        assert f["offset"] == len(before.encode())


def test_ping_gets_pong(d, box):
    _, dp = box
    w = ws(d, f"{dp}/execute/ws")
    w.send(b"hb", opcode=9)
    op, payload = w.recv()
    assert (op, payload) == (10, b"hb")
    w.close()


def test_tunnel_with_api_key_only(d, box):
    _, dp = box
    port = 7011
    r = api(d, "POST", f"{dp}/execute", {
        "command": f"nohup python3 -c \"import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
                   f"socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port})); s.listen(1); c,_=s.accept(); "
                   f"c.sendall(c.recv(100).upper())\" > /dev/null 2>&1 &", "timeout": 5})
    assert r.status == 200, r
    wait_for(lambda: api(d, "POST", f"{dp}/execute", {"command": f"ss -ltn | grep -q :{port}"}).json()
             ["exit_code"] == 0, what="echo server")
    w = ws(d, f"{dp}/tunnel")
    hdr = lambda t, f, sid, n: struct.pack(">BBHII", 0, t, f, sid, n)  # noqa: E731
    w.send(hdr(1, 1, 1, 0) + hdr(0, 0, 1, 3) + struct.pack(">BH", 1, port) + hdr(0, 0, 1, 5) + b"hello",
           opcode=2)
    buf = b""
    deadline = time.monotonic() + 10
    got = b""
    while b"HELLO" not in got and time.monotonic() < deadline:
        op, payload = w.recv()
        buf += payload
        while len(buf) >= 12:
            _, t, _, sid, n = struct.unpack(">BBHII", buf[:12])
            need = 12 + (n if t == 0 else 0)
            if len(buf) < need:
                break
            if t == 0:
                got += buf[12:need]
            buf = buf[need:]
    assert got[:1] == b"\x00" and got[1:] == b"HELLO", got
    w.close()
