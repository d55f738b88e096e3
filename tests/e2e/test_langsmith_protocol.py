"""LangSmith sandbox protocol on the wire (docs/compat/langsmith.md): the error envelope the SDKs map to
typed errors, and /execute/ws as the Python client speaks it, which the npm SDK in tests/compat_langsmith
does not cover: 32-hex command ids, `kill` followed at once by a close, a connection dropped mid-command
and resumed with byte offsets, WebSocket pings, and the yamux /tunnel with X-Api-Key only. Also what no
SDK test reaches: the SSE exec transport (/execute/stream/*), multipart uploads that are not the one part
the SDKs send, If-Range, and wait_for_ready's timeout on a cold create."""
import base64
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


# --- uploads: the SDKs send exactly one part, `file` -------------------------------------------------

def multipart(parts, boundary="sbxBoundary42", close=True):
    body = b""
    for name, data in parts:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    if close:
        body += f"--{boundary}--\r\n".encode()
    return body, {"X-Api-Key": KEY, "Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(d, dp, path, parts, **kw):
    body, headers = multipart(parts, **kw)
    return d.request("POST", f"{dp}/upload?path={path}", body=body, headers=headers, auth=False)


def test_upload_one_part_and_a_second_part_is_refused(d, box):
    _, dp = box
    r = upload(d, dp, "/tmp/up1.bin", [("file", b"one\r\n--not-the-boundary\x00\xff")])
    assert r.status == 200, r
    r = api(d, "GET", f"{dp}/download?path=/tmp/up1.bin")
    assert r.status == 200 and r.body == b"one\r\n--not-the-boundary\x00\xff", r
    # A second part: refused as the SDK's write error, and nothing is written (not even the first part).
    r = upload(d, dp, "/tmp/up2.bin", [("file", b"first"), ("file", b"second")])
    assert r.status == 400 and r.json()["detail"]["error"] == "WriteError", r
    assert "more than one part" in r.json()["detail"]["message"]
    assert api(d, "GET", f"{dp}/download?path=/tmp/up2.bin").status == 404
    # ... nor over an existing file.
    r = upload(d, dp, "/tmp/up1.bin", [("file", b"x"), ("other", b"y")])
    assert r.status == 400 and r.json()["detail"]["error"] == "WriteError", r
    assert api(d, "GET", f"{dp}/download?path=/tmp/up1.bin").body.startswith(b"one")
    # No closing delimiter, or garbage after the delimiter: malformed.
    r = upload(d, dp, "/tmp/up3.bin", [("file", b"abc")], close=False)
    assert r.status == 400 and r.json()["detail"]["error"] == "WriteError", r
    body, headers = multipart([("file", b"abc")], close=False)
    r = d.request("POST", f"{dp}/upload?path=/tmp/up3.bin", body=body + b"--sbxBoundary42xx",
                  headers=headers, auth=False)
    assert r.status == 400 and "malformed" in r.json()["detail"]["message"], r
    # Transport padding after the close delimiter and an epilogue are fine.
    body, headers = multipart([("file", b"pad")], close=False)
    r = d.request("POST", f"{dp}/upload?path=/tmp/up4.bin", body=body + b"--sbxBoundary42--  \r\nepilogue",
                  headers=headers, auth=False)
    assert r.status == 200, r
    assert api(d, "GET", f"{dp}/download?path=/tmp/up4.bin").body == b"pad"


# --- If-Range (RFC 9110 13.1.5) ----------------------------------------------------------------------

def test_if_range(d, box):
    _, dp = box
    r = api(d, "POST", f"{dp}/execute", {"command": "printf 0123456789 > /tmp/ir; touch -d 2020-01-02 /tmp/ir"})
    assert r.json()["exit_code"] == 0, r
    h = api(d, "HEAD", f"{dp}/download?path=/tmp/ir")
    etag, lm = h.headers["etag"], h.headers["last-modified"]

    def get(**hdrs):
        return d.request("GET", f"{dp}/download?path=/tmp/ir", headers=dict({"X-Api-Key": KEY}, **hdrs),
                         auth=False)

    r = get(Range="bytes=2-4", **{"If-Range": etag})
    assert r.status == 206 and r.body == b"234" and r.headers["content-range"] == "bytes 2-4/10", r
    r = get(Range="bytes=2-4", **{"If-Range": lm})
    assert r.status == 206 and r.body == b"234", r
    for stale in ('"0-0-0"', "W/" + etag, "Mon, 01 Jan 2001 00:00:00 GMT", "garbage"):
        r = get(Range="bytes=2-4", **{"If-Range": stale})
        assert r.status == 200 and r.body == b"0123456789" and "content-range" not in r.headers, (stale, r)
        assert r.headers["etag"] == etag
    # Without Range, If-Range is ignored; a matching If-Range keeps a bad range a 416.
    r = get(**{"If-Range": '"0-0-0"'})
    assert r.status == 200 and r.body == b"0123456789", r
    r = get(Range="bytes=50-", **{"If-Range": etag})
    assert r.status == 416, r
    # A file changed within the last second has no strong date: only its ETag can match.
    r = api(d, "POST", f"{dp}/execute", {"command": "printf abcdef > /tmp/ir2"})
    h = api(d, "HEAD", f"{dp}/download?path=/tmp/ir2")
    r = d.request("GET", f"{dp}/download?path=/tmp/ir2", auth=False,
                  headers={"X-Api-Key": KEY, "Range": "bytes=0-1", "If-Range": h.headers["last-modified"]})
    assert r.status == 200 and r.body == b"abcdef", r


# --- wait_for_ready's timeout ------------------------------------------------------------------------

def test_create_wait_for_ready_timeout_is_408():
    with Daemon(api_key=KEY, extra_args=["--warm", "0"]) as cold:
        r = api(cold, "POST", f"{BASE}/boxes", {"wait_for_ready": True, "timeout": 0, "name": "slowbox"})
        # 408 is what the SDKs raise as ResourceTimeoutError("sandbox").
        assert r.status == 408 and r.json()["detail"]["error"] == "Timeout", r
        # The create failed for the client: the sandbox is not kept, so the name comes free again.
        def free():
            return api(cold, "GET", f"{BASE}/boxes/slowbox").status == 404
        wait_for(free, what="the timed-out box to be discarded")
        r = api(cold, "POST", f"{BASE}/boxes", {"wait_for_ready": True, "timeout": 30, "name": "slowbox"})
        assert r.status == 200 and r.json()["status"] == "ready", r
        # wait_for_ready false has no timeout: the answer still comes when the box is built.
        r2 = api(cold, "POST", f"{BASE}/boxes", {"wait_for_ready": False, "timeout": 0, "name": "nowait"})
        assert r2.status == 200, r2
        for n in ("slowbox", "nowait"):
            assert api(cold, "DELETE", f"{BASE}/boxes/{n}").status == 204
        assert cold.stop() == 0, cold.read_log()


# --- SSE exec (/execute/stream/start, /execute/stream/resume) -----------------------------------------

class SSE:
    """One POST answered with text/event-stream, read event by event."""

    def __init__(self, d, path, body, timeout=30):
        self.c = d.conn(timeout)
        self.c.request("POST", path, body=json.dumps(body).encode(),
                       headers={"X-Api-Key": KEY, "Content-Type": "application/json"})
        self.r = self.c.getresponse()
        self.status = self.r.status
        self.comments = 0

    def json(self):
        return json.loads(self.r.read())

    def events(self):
        event, data = "", []
        while True:
            line = self.r.readline()
            if not line:
                return
            line = line.decode().rstrip("\r\n")
            if not line:
                if event:
                    yield event, json.loads("\n".join(data))
                event, data = "", []
            elif line.startswith(":"):
                self.comments += 1
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))

    def all(self):
        out = list(self.events())
        self.c.close()
        return out

    def drop(self):
        self.c.sock.shutdown(socket.SHUT_RDWR)
        self.c.close()


def raw(evs, stream="stdout"):
    return b"".join(base64.b64decode(e["data"]) for n, e in evs if n == stream)


def test_sse_start_streams_and_exits(d, box):
    _, dp = box
    cid = uuid.uuid4().hex
    s = SSE(d, f"{dp}/execute/stream/start", {
        "command": "printf 'a\\xffb\\xe2\\x82'; printf '\\xac' ; echo err >&2; exit 3", "command_id": cid,
        "shell": "/bin/bash", "timeout_seconds": 30, "idle_timeout_seconds": 300, "ttl_seconds": 600})
    assert s.status == 200 and s.r.getheader("Content-Type").startswith("text/event-stream")
    evs = s.all()
    assert evs[0] == ("started", {"command_id": cid, "pid": evs[0][1]["pid"]}) and evs[0][1]["pid"] > 0
    assert raw(evs) == b"a\xffb\xe2\x82\xac" and raw(evs, "stderr") == b"err\n"  # raw bytes, not UTF-8 fixed
    offs = [e for n, e in evs if n == "stdout"]
    assert offs[0]["offset"] == 0
    for i in range(1, len(offs)):
        assert offs[i]["offset"] == offs[i - 1]["offset"] + len(base64.b64decode(offs[i - 1]["data"]))
    ends = {e["stream"]: e["offset"] for n, e in evs if n == "stream_end"}
    assert ends == {"stdout": 6, "stderr": 4}
    assert evs[-1] == ("exit", {"exit_code": 3})


def test_sse_dropped_then_resumed_from_offsets(d, box):
    _, dp = box
    cid = uuid.uuid4().hex
    s = SSE(d, f"{dp}/execute/stream/start", {
        "command": "echo one; sleep 1; echo two; echo e >&2", "command_id": cid, "timeout_seconds": 30})
    it = s.events()
    assert next(it)[0] == "started"
    name, ev = next(it)
    assert (name, ev["offset"], base64.b64decode(ev["data"])) == ("stdout", 0, b"one\n")
    s.drop()  # the command keeps running: SSE has no kill_on_disconnect
    r = SSE(d, f"{dp}/execute/stream/resume", {"command_id": cid, "stdout_offset": 4, "stderr_offset": 0})
    assert r.status == 200
    evs = r.all()
    assert evs[0][0] != "started"  # a resume is acknowledged by its offsets, not a new `started`
    assert raw(evs) == b"two\n" and raw(evs, "stderr") == b"e\n"
    assert [e for n, e in evs if n == "stdout"][0]["offset"] == 4
    assert evs[-1] == ("exit", {"exit_code": 0})
    # Resuming a finished command from its end gives just the end; from 0 gives everything again.
    evs = SSE(d, f"{dp}/execute/stream/resume", {"command_id": cid, "stdout_offset": 8, "stderr_offset": 2}).all()
    assert raw(evs) == b"" and evs[-1] == ("exit", {"exit_code": 0})
    evs = SSE(d, f"{dp}/execute/stream/resume", {"command_id": cid, "stdout_offset": 0, "stderr_offset": 0}).all()
    assert raw(evs) == b"one\ntwo\n"
    # A start that reuses the id reattaches (from 0) instead of running the command again.
    evs = SSE(d, f"{dp}/execute/stream/start", {"command": "echo never", "command_id": cid}).all()
    assert evs[0][0] == "started" and raw(evs) == b"one\ntwo\n"


def test_sse_errors(d, box):
    _, dp = box
    # Unknown command on resume: 404, which the client raises as CommandNotFound.
    r = SSE(d, f"{dp}/execute/stream/resume", {"command_id": "f" * 32, "stdout_offset": 0, "stderr_offset": 0})
    assert r.status == 404 and r.json()["detail"]["error"] == "CommandNotFound"
    # Bad input: the data plane's typed command error, before any event.
    for body in ({"command": ""}, {"command": "true", "timeout_seconds": -1}, {"command": "true", "pty": True},
                 {"command": "true", "kill_on_disconnect": True}, {"command": "true", "command_id": "bad id!"},
                 {"command": "true", "env": {"A": 1}}):
        r = SSE(d, f"{dp}/execute/stream/start", body)
        assert r.status == 400 and r.json()["detail"]["error"] == "CommandError", (body, r.status)
    for body in ({"command_id": "x", "stdout_offset": -1}, {"stdout_offset": 0}):
        r = SSE(d, f"{dp}/execute/stream/resume", body)
        assert r.status == 400 and r.json()["detail"]["error"] == "CommandError", body
    r = d.request("POST", f"{dp}/execute/stream/start", body=b"{nope", auth=False,
                  headers={"X-Api-Key": KEY, "Content-Type": "application/json"})
    assert r.status == 422, r
    r = d.request("GET", f"{dp}/execute/stream/start", headers={"X-Api-Key": KEY}, auth=False)
    assert r.status == 405, r
    r = SSE(d, "/langsmith/dp/nope/execute/stream/start", {"command": "true"})
    assert r.status == 404 and r.json()["detail"]["error"] == "NotFound"
    # A timeout is an `error` event, as over the WebSocket.
    evs = SSE(d, f"{dp}/execute/stream/start", {"command": "echo x; sleep 5", "timeout_seconds": 1,
                                                 "command_id": uuid.uuid4().hex}).all()
    assert evs[0][0] == "started" and raw(evs) == b"x\n"
    assert evs[-1][0] == "error" and evs[-1][1]["error_type"] == "CommandTimeout", evs
    # stdin is closed at spawn: a command reading it sees EOF at once.
    evs = SSE(d, f"{dp}/execute/stream/start", {"command": "cat; echo done", "timeout_seconds": 10}).all()
    assert raw(evs) == b"done\n" and evs[-1] == ("exit", {"exit_code": 0})


def test_sse_large_output_with_a_slow_reader(d, box):
    _, dp = box
    s = SSE(d, f"{dp}/execute/stream/start", {"command": "head -c 20000000 /dev/zero | tr '\\0' 'z'",
                                               "timeout_seconds": 60}, timeout=60)
    total, it = 0, s.events()
    name, _ = next(it)
    assert name == "started"
    time.sleep(1)  # let sbxd hit the connection's soft limit and pause the shim's stream
    last = None
    for name, ev in it:
        if name == "stdout":
            assert ev["offset"] == total
            total += len(base64.b64decode(ev["data"]))
        last = (name, ev)
    assert total == 20000000 and last == ("exit", {"exit_code": 0})


def test_registries_crud_tenants_and_private_pull(d):
    """Registries (the generated client's `client.registries`): credentials kept per tenant, the password
    never answered back, and used by a snapshot create's registry_id for a pull from a registry that
    needs them (Debian's docker-registry with htpasswd, as in test_registry_pull.py)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import imagebuild as ib
    from test_registry_pull import Registry

    reg = Registry(htpasswd=True)
    try:
        reg.push_image("sbx/private", "v1", [ib.busybox_layer().bytes()])
        url = f"http://{reg.host}"
        for base in (BASE, "/langsmith/api/v2/sandboxes"):
            r = api(d, "POST", f"{base}/registries", {"name": "r0", "url": url})
            assert r.status == 201, r
            assert api(d, "DELETE", f"{base}/registries/r0").status == 204
        r = api(d, "POST", f"{BASE}/registries",
                {"name": "priv", "url": url, "username": "alice", "password": "wrong"})
        assert r.status == 201, r
        g = r.json()
        assert g["id"].startswith("reg_") and g["url"] == url and g["auth_type"] == "basic"
        assert "password" not in json.dumps(g).replace("has_password", "")
        assert api(d, "POST", f"{BASE}/registries", {"name": "priv", "url": url}).status == 409
        for bad in ({"name": "x", "url": "ftp://h"}, {"name": "x", "url": "http://u:p@h"}, {"url": url},
                    {"name": "x", "url": url, "auth_type": "aws"}, {"name": "x" * 65, "url": url}):
            r = api(d, "POST", f"{BASE}/registries", bad)
            assert r.status in (400, 413, 422), (bad, r)
        lst = api(d, "GET", f"{BASE}/registries").json()
        assert [x["name"] for x in lst["items"]] == ["priv"] and lst["registries"] == lst["items"]
        # Another tenant sees none of it.
        k = d.request("POST", "/v1/keys", {"name": "reg-tenant"}).json()
        assert api(d, "GET", f"{BASE}/registries/priv", key=k["key"]).status == 404
        assert api(d, "GET", f"{BASE}/registries", key=k["key"]).json()["items"] == []

        def pull(name, registry_id, image=f"{reg.host}/sbx/private:v1", key=KEY):
            r = api(d, "POST", f"{BASE}/snapshots", {"name": name, "docker_image": image,
                                                     "registry_id": registry_id}, key=key)
            if r.status != 200:
                return r
            sid = r.json()["id"]

            def done():
                j = api(d, "GET", f"{BASE}/snapshots/{sid}").json()
                return j if j["status"] not in ("building", "provisioning") else None
            return wait_for(done, timeout=120, what="pull")

        # Wrong password: the registry refuses; fixed with PATCH, the same registry_id pulls.
        sn = pull("priv-a", g["id"])
        assert sn["status"] == "failed", sn
        r = api(d, "PATCH", f"{BASE}/registries/priv", {"password": "s3cret"})
        assert r.status == 200 and r.json()["id"] == g["id"], r
        sn = pull("priv-b", g["id"])
        assert sn["status"] == "ready", sn
        assert "s3cret" not in d.read_log()
        # The credentials go only to their own registry; another tenant cannot use them.
        r = pull("priv-c", g["id"], image="example.invalid/sbx/private:v1")
        assert r.status in (400, 422), r
        r = pull("priv-d", g["id"], key=k["key"])
        assert r.status == 404, r
        assert api(d, "DELETE", f"{BASE}/registries/{g['id']}").status == 204
        assert api(d, "GET", f"{BASE}/registries/priv").status == 404
        for s in ("priv-a", "priv-b"):
            api(d, "DELETE", f"{BASE}/snapshots/{s}")
    finally:
        reg.stop()


def test_create_without_wait_for_ready_answers_provisioning_at_once(d):
    name = "nowait-" + uuid.uuid4().hex[:8]  # named: built, not taken from the warm pool
    r = api(d, "POST", f"{BASE}/boxes", {"name": name, "wait_for_ready": False})
    assert r.status == 200, r
    assert r.json()["status"] == "provisioning", r.json()

    def ready():
        j = api(d, "GET", f"{BASE}/boxes/{name}/status").json()
        return j if j["status"] != "provisioning" else None

    st = wait_for(ready, timeout=30, what="the box")
    assert st["status"] == "ready", st
    box = api(d, "GET", f"{BASE}/boxes/{name}").json()
    dp = urlparse(box["dataplane_url"]).path
    r = api(d, "POST", f"{dp}/execute", {"command": "echo built"})
    assert r.status == 200 and r.json()["stdout"] == "built\n", r
    assert api(d, "DELETE", f"{BASE}/boxes/{name}").status in (200, 204)
