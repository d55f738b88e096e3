"""OpenSandbox compatibility on the wire (docs/compat/opensandbox.md), for what the JS SDK does not
exercise: the transport rules (empty successes as 204 or Content-Length: 0, {code, message} errors,
X-Request-ID echo), the raw event stream of execd's POST /command, GET /metrics/watch, PTY sessions over
WebSocket (channel-byte frames, replay, takeover, pipe mode), code-interpreter contexts (python and bash
drivers without Jupyter), egress policy writes and the typed errors of bad input. The SDK
itself is driven in tests/compat_opensandbox."""
import json
import os
import struct
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sbxtest import Daemon, WebSocket  # noqa: E402

KEY = "osb_" + "cd" * 16
HDR = {"OPEN-SANDBOX-API-KEY": KEY}


@pytest.fixture(scope="module")
def d():
    with Daemon(api_key=KEY) as daemon:
        yield daemon
        assert daemon.stop() == 0, daemon.read_log()


def api(d, method, path, body=None, headers=None, key=True):
    h = dict(HDR) if key else {}
    h.update(headers or {})
    return d.request(method, "/opensandbox" + path, body=body, headers=h, auth=False)


@pytest.fixture(scope="module")
def sb(d):
    r = api(d, "POST", "/v1/sandboxes", {"image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"],
                                          "timeout": 600})
    assert r.status == 202, r
    sid = r.json()["id"]
    yield sid
    api(d, "DELETE", f"/v1/sandboxes/{sid}")


def execd(sid):
    return f"/sandboxes/{sid}/proxy/44772"


def assert_error(r, status, code=None):
    assert r.status == status, r
    assert r.headers["content-type"].startswith("application/json"), r.headers
    j = r.json()
    assert isinstance(j.get("code"), str) and j["code"] and isinstance(j.get("message"), str), j
    if code:
        assert j["code"] == code, j
    return j


# --- transport ------------------------------------------------------------------------------------------

def test_request_id_echo(d, sb):
    r = api(d, "GET", f"/v1/sandboxes/{sb}", headers={"X-Request-ID": "req-abc.123"})
    assert r.status == 200 and r.headers["x-request-id"] == "req-abc.123"
    r = api(d, "GET", "/v1/sandboxes/nope", headers={"X-Request-ID": "req-err"})
    assert_error(r, 404, "SANDBOX::NOT_FOUND")
    assert r.headers["x-request-id"] == "req-err"
    r = api(d, "GET", execd(sb) + "/ping")
    assert r.headers.get("x-request-id")  # a new one when none was sent
    r = api(d, "GET", execd(sb) + "/ping", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers.get("x-request-id") and r.headers["x-request-id"] != "bad id\twith spaces"
    r = api(d, "GET", "/v1/sandboxes", key=False, headers={"X-Request-ID": "noauth"})
    assert_error(r, 401)
    assert r.headers["x-request-id"] == "noauth"


def test_empty_successes(d):
    r = api(d, "POST", "/v1/sandboxes", {"image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"]})
    assert r.status == 202, r
    sid = r.json()["id"]
    r = api(d, "GET", execd(sid) + "/ping")
    assert r.status == 200 and r.headers["content-length"] == "0" and r.body == b""
    r = api(d, "POST", f"/v1/sandboxes/{sid}/pause")
    assert r.status == 202 and r.headers["content-length"] == "0" and r.body == b""
    assert_error(api(d, "POST", f"/v1/sandboxes/{sid}/pause"), 409)
    r = api(d, "POST", f"/v1/sandboxes/{sid}/resume")
    assert r.status == 202 and r.headers["content-length"] == "0"
    r = api(d, "DELETE", f"/v1/sandboxes/{sid}")
    assert r.status == 204 and r.body == b""
    assert_error(api(d, "DELETE", f"/v1/sandboxes/{sid}"), 404, "SANDBOX::NOT_FOUND")
    assert_error(api(d, "GET", execd(sid) + "/ping"), 404)


def test_errors_are_typed(d, sb):
    assert_error(api(d, "POST", execd(sb) + "/command", b"{not json"), 400, "INVALID_REQUEST_BODY")
    assert_error(api(d, "POST", execd(sb) + "/command", {"command": ""}), 400, "INVALID_REQUEST_BODY")
    assert_error(api(d, "POST", execd(sb) + "/command", {"command": "x" * (129 * 1024)}), 413, "TOO_LARGE")
    assert_error(api(d, "GET", execd(sb) + "/command/status/cmd_nope"), 404, "COMMAND_NOT_FOUND")
    assert_error(api(d, "GET", execd(sb) + "/no/such/route"), 404)


# --- POST /command: the raw event stream ---------------------------------------------------------------

def command_events(d, sid, body):
    c = d.conn(60)
    try:
        c.request("POST", "/opensandbox" + execd(sid) + "/command", body=json.dumps(body),
                  headers=dict(HDR, **{"Content-Type": "application/json"}))
        r = c.getresponse()
        assert r.status == 200, (r.status, r.read())
        assert r.getheader("Content-Type", "").startswith("text/event-stream")
        raw = r.read().decode()
    finally:
        c.close()
    assert "data:" not in raw
    blocks = [b for b in raw.split("\n\n") if b]
    events = [json.loads(b) for b in blocks]
    for b in blocks:
        assert "\n" not in b  # one compact object per event
    return events


def test_command_stream_shapes(d, sb):
    ev = command_events(d, sb, {"command": "echo one; echo; printf 'a\\r\\nb\\rc'; echo err >&2"})
    assert ev[0]["type"] == "init" and ev[0]["text"].startswith("cmd_") and isinstance(ev[0]["timestamp"], int)
    out = [e["text"] for e in ev if e["type"] == "stdout"]
    assert out == ["one", "\n", "a", "b", "c"]
    assert [e["text"] for e in ev if e["type"] == "stderr"] == ["err"]
    assert ev[-1]["type"] == "execution_complete" and isinstance(ev[-1]["execution_time"], int)
    assert sum(e["type"] == "init" for e in ev) == 1 and sum(e["type"] == "error" for e in ev) == 0
    st = api(d, "GET", execd(sb) + f"/command/status/{ev[0]['text']}").json()
    assert st["running"] is False and st["exit_code"] == 0

    ev = command_events(d, sb, {"command": "exit 7"})
    assert [e["type"] for e in ev] == ["init", "error"]
    assert ev[1]["error"] == {"ename": "CommandExecError", "evalue": "7", "traceback": ["exit status 7"]}

    ev = command_events(d, sb, {"command": "sleep 5", "timeout": 300})
    assert ev[-1]["type"] == "error" and ev[-1]["error"]["evalue"] == "-1"

    ev = command_events(d, sb, {"command": "sleep 30", "background": True})
    assert [e["type"] for e in ev] == ["init", "execution_complete"]
    r = api(d, "DELETE", execd(sb) + f"/command?id={ev[0]['text']}")
    assert r.status == 200 and r.headers["content-length"] == "0"


def test_command_stream_pings(d, sb):
    ev = command_events(d, sb, {"command": "sleep 3.5; echo done"})
    assert any(e["type"] == "ping" and e["text"] == "pong" for e in ev)
    assert ev[-1]["type"] == "execution_complete"


# --- /metrics/watch ------------------------------------------------------------------------------------

def test_metrics_watch(d, sb):
    c = d.conn(30)
    try:
        c.request("GET", "/opensandbox" + execd(sb) + "/metrics/watch", headers=HDR)
        r = c.getresponse()
        assert r.status == 200
        samples = []
        while len(samples) < 3:
            line = r.fp.readline()
            if line.strip() in (b"",) or all(ch in b"0123456789abcdef\r\n" for ch in line):
                continue  # chunk framing
            samples.append((time.monotonic(), json.loads(line)))
    finally:
        c.close()
    for _, m in samples:
        assert set(m) == {"cpu_count", "cpu_used_pct", "mem_total_mib", "mem_used_mib", "timestamp"}, m
        assert 0 <= m["cpu_used_pct"] <= 100 and m["cpu_count"] >= 1 and m["mem_used_mib"] >= 0
    assert samples[2][1]["timestamp"] - samples[1][1]["timestamp"] >= 900
    assert samples[2][0] - samples[1][0] >= 0.8
    assert_error(api(d, "GET", execd("sbx_nope") + "/metrics/watch"), 404)
    # The daemon is still serving after the client went mid-stream.
    assert api(d, "GET", execd(sb) + "/ping").status == 200


# --- PTY over WebSocket --------------------------------------------------------------------------------

class Key:
    """Daemon stand-in for sbxtest.WebSocket: the OpenSandbox key header instead of a bearer token."""

    def __init__(self, d):
        self.port = d.port

    def headers(self):
        return dict(HDR)


def ws_open(d, sid, pid, query=""):
    ws = WebSocket(Key(d), "/opensandbox" + execd(sid) + f"/pty/{pid}/ws{query}")
    op, payload = ws.recv()
    assert op == 1, (op, payload)
    hello = json.loads(payload)
    assert hello["type"] == "connected" and hello["session_id"] == pid
    return ws, hello


def read_until(ws, needle, channels=(1,)):
    """Reads binary frames until needle appears in their payloads; returns {channel: bytes}, the exit
    message if any and the close code if the socket closed."""
    got = {}
    deadline = time.time() + 20
    while True:
        assert time.time() < deadline, got
        op, payload = ws.recv()
        if op == 2:
            ch = payload[0]
            data = payload[9:] if ch == 3 else payload[1:]
            if ch == 3:
                got.setdefault("replay_offsets", []).append(struct.unpack(">Q", payload[1:9])[0])
            got[ch] = got.get(ch, b"") + data
            if needle and any(needle in got.get(c, b"") for c in channels):
                return got
        elif op == 1:
            m = json.loads(payload)
            if m["type"] == "exit":
                got["exit"] = m
        elif op == 8:
            got["close"] = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
            return got


def new_pty(d, sid, **body):
    r = api(d, "POST", execd(sid) + "/pty", body)
    assert r.status == 200, r
    return r.json()["session_id"]


def test_pty_session(d, sb):
    pid = new_pty(d, sb, cwd="/tmp")
    st = api(d, "GET", execd(sb) + f"/pty/{pid}").json()
    assert st == {"session_id": pid, "running": False, "output_offset": 0}
    ws, hello = ws_open(d, sb, pid)
    assert hello["mode"] == "pty"
    ws.send(b"\x00" + b"echo pwd=$(pwd) sum=$((40+2))\n")
    read_until(ws, b"sum=42")
    ws.send({"type": "resize", "cols": 132, "rows": 50})
    ws.send(b"\x00stty size\n")
    read_until(ws, b"50 132")
    ws.send({"type": "ping"})
    op, payload = ws.recv()
    while op != 1:
        op, payload = ws.recv()
    assert json.loads(payload)["type"] == "pong"
    st = api(d, "GET", execd(sb) + f"/pty/{pid}").json()
    assert st["running"] is True and st["output_offset"] > 0

    # One client at a time: 409, then takeover closes the holder with 4001 and replays from since=0.
    from sbxtest import WebSocket as W
    with pytest.raises(ConnectionError, match="409"):
        W(Key(d), "/opensandbox" + execd(sb) + f"/pty/{pid}/ws")
    ws2, _ = ws_open(d, sb, pid, "?takeover=1&since=0")
    assert read_until(ws, None).get("close") == 4001
    ws.sock.close()
    got = read_until(ws2, b"50 132", channels=(3,))
    assert got["replay_offsets"][0] == 0 and b"sum=42" in got[3]

    # A signal reaches the foreground process through the pty; then the shell's exit ends the socket.
    ws2.send(b"\x00sleep 30\n")
    time.sleep(0.5)
    ws2.send({"type": "signal", "signal": "SIGINT"})
    ws2.send(b"\x00echo after-$((1+1))\n")
    read_until(ws2, b"after-2")
    ws2.send(b"\x00exit 5\n")
    got = read_until(ws2, None)
    assert got["exit"] == {"type": "exit", "exit_code": 5} and got["close"] == 1000
    ws2.sock.close()

    r = api(d, "DELETE", execd(sb) + f"/pty/{pid}")
    assert r.status == 200 and r.headers["content-length"] == "0"
    assert_error(api(d, "GET", execd(sb) + f"/pty/{pid}"), 404)


def test_pty_pipe_mode_and_command(d, sb):
    pid = new_pty(d, sb)
    ws, hello = ws_open(d, sb, pid, "?pty=0")
    assert hello["mode"] == "pipe"
    ws.send(b"\x00echo out-1; echo err-2 >&2; exit 3\n")
    got = read_until(ws, None)
    assert got[1] == b"out-1\n" and got[2] == b"err-2\n" and got["exit"]["exit_code"] == 3
    ws.sock.close()

    pid = new_pty(d, sb, command="echo from-command; read x; echo got-$x")
    ws, _ = ws_open(d, sb, pid)
    read_until(ws, b"from-command")
    ws.send(b"\x00hello\n")
    got = read_until(ws, b"got-hello")
    ws.close()
    ws.sock.close()
    api(d, "DELETE", execd(sb) + f"/pty/{pid}")


def test_pty_bad_input(d, sb):
    assert_error(api(d, "POST", execd(sb) + "/pty", {"cwd": "/no/such/dir"}), 400, "INVALID_REQUEST_BODY")
    assert_error(api(d, "POST", execd(sb) + "/pty", {"command": 5}), 400)
    assert_error(api(d, "POST", execd(sb) + "/pty", [1]), 400)
    assert_error(api(d, "GET", execd(sb) + "/pty/pty_nope"), 404)
    assert_error(api(d, "GET", execd(sb) + "/pty/..%2f..%2fetc"), 404)
    assert_error(api(d, "DELETE", execd(sb) + "/pty/pty_nope"), 404)
    pid = new_pty(d, sb)
    assert_error(api(d, "GET", execd(sb) + f"/pty/{pid}/ws"), 400)  # not an upgrade
    with pytest.raises(ConnectionError, match="400"):
        WebSocket(Key(d), "/opensandbox" + execd(sb) + f"/pty/{pid}/ws?since=-1")
    ws, _ = ws_open(d, sb, pid)
    ws.send(b"\x07junk")  # a binary frame without the stdin channel byte
    assert read_until(ws, None).get("close") == 1003
    ws.sock.close()
    api(d, "DELETE", execd(sb) + f"/pty/{pid}")


# --- egress /policy --------------------------------------------------------------------------------------

def egress(sid):
    return f"/sandboxes/{sid}/proxy/18080/policy"


def test_egress_policy_write(d, sb):
    # A loopback-only sandbox has nothing to change.
    assert api(d, "GET", egress(sb)).json()["policy"] == {"defaultAction": "deny", "egress": []}
    assert_error(api(d, "PATCH", egress(sb), [{"action": "allow", "target": "example.com"}]), 409, "CONFLICT")

    r = api(d, "POST", "/v1/sandboxes", {"image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"],
                                         "networkPolicy": {"defaultAction": "deny", "egress": []}})
    assert r.status == 202, r
    sid = r.json()["id"]
    try:
        r = api(d, "PUT", egress(sid), {"defaultAction": "allow", "egress": [{"action": "deny", "target": "bad.example"}]})
        assert r.status == 200 and r.json()["policy"] == {"defaultAction": "allow",
                                                           "egress": [{"action": "deny", "target": "bad.example"}]}
        r = api(d, "POST", egress(sid), {})  # empty: allow everything
        assert r.status == 200 and r.json()["policy"] == {"defaultAction": "allow", "egress": []}, r
        r = api(d, "POST", egress(sid), {"egress": [{"action": "allow", "target": "10.0.0.0/8"}]})
        assert r.status == 200 and r.json()["policy"]["defaultAction"] == "deny", r
        assert_error(api(d, "PATCH", egress(sid), {"action": "allow"}), 400, "INVALID_REQUEST_BODY")
        assert_error(api(d, "PATCH", egress(sid), [{"action": "allow", "target": "a.example"}] * 513), 413)
        assert_error(api(d, "DELETE", egress(sid), [5]), 400)
        assert_error(api(d, "POST", egress(sid), {"defaultAction": "maybe"}), 400)
        assert_error(api(d, "POST", egress(sid), {"egress": [{"action": "allow", "target": f"h{i}.example"}
                                                             for i in range(300)]}), 400)
        assert api(d, "GET", egress(sid)).json()["policy"]["egress"] == [{"action": "allow", "target": "10.0.0.0/8"}]
    finally:
        api(d, "DELETE", f"/v1/sandboxes/{sid}")


# --- code-interpreter contexts ----------------------------------------------------------------------------

def code_events(d, sid, ctx, code, language="python"):
    ev = command_events_at(d, sid, "/code", {"context": {"id": ctx, "language": language}, "code": code})
    return [e for e in ev if e["type"] != "ping"]


def command_events_at(d, sid, route, body):
    c = d.conn(60)
    try:
        c.request("POST", "/opensandbox" + execd(sid) + route, body=json.dumps(body),
                  headers=dict(HDR, **{"Content-Type": "application/json"}))
        r = c.getresponse()
        assert r.status == 200, (r.status, r.read())
        raw = r.read().decode()
    finally:
        c.close()
    return [json.loads(b) for b in raw.split("\n\n") if b]


def new_context(d, sid, language, **kw):
    r = api(d, "POST", execd(sid) + "/code/context", dict(kw, language=language))
    assert r.status == 200, r
    j = r.json()
    assert j["language"] == language and j["id"].startswith("ctx_")
    return j["id"]


def test_code_python_context(d, sb):
    ctx = new_context(d, sb, "python", cwd="/tmp")
    ev = code_events(d, sb, ctx, "import os, sys\nx = 40\nprint('hi'); print(); print('err', file=sys.stderr)")
    assert ev[0] == {"type": "init", "text": ctx, "timestamp": ev[0]["timestamp"]}
    assert [(e["type"], e.get("text")) for e in ev[1:4]] in (
        [("stdout", "hi"), ("stdout", "\n"), ("stderr", "err")], [("stdout", "hi"), ("stderr", "err"), ("stdout", "\n")],
        [("stderr", "err"), ("stdout", "hi"), ("stdout", "\n")])
    assert ev[-2] == {"type": "execution_count", "execution_count": 1, "timestamp": ev[-2]["timestamp"]}
    assert ev[-1]["type"] == "execution_complete"
    ev = code_events(d, sb, ctx, "x + 2")  # state kept; the last expression is the result
    assert [e["type"] for e in ev] == ["init", "execution_count", "result", "execution_complete"]
    assert ev[2]["results"] == {"text": "42"}
    assert code_events(d, sb, ctx, "os.getcwd()")[2]["results"] == {"text": "'/tmp'"}
    ev = code_events(d, sb, ctx, "print('before')\nraise ValueError('bad')")
    assert [e["type"] for e in ev] == ["init", "stdout", "execution_count", "error"]
    assert ev[-1]["error"]["ename"] == "ValueError" and ev[-1]["error"]["evalue"] == "bad"
    assert any("ValueError" in t for t in ev[-1]["error"]["traceback"])
    ev = code_events(d, sb, ctx, "print('no newline', end='')")
    assert [(e["type"], e.get("text")) for e in ev[:2]] == [("init", ctx), ("stdout", "no newline")]
    ev = code_events(d, sb, ctx, "input()")  # stdin is not the driver's
    assert ev[-1]["error"]["ename"] == "EOFError"
    assert code_events(d, sb, ctx, "def f(:")[-1]["error"]["ename"] == "SyntaxError"

    # A second run while one runs is a conflict; an interrupt is a KeyboardInterrupt in the cell.
    import threading
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("ev", code_events(d, sb, ctx, "import time\ntime.sleep(30)")))
    t.start()
    time.sleep(1)
    assert_error(api(d, "POST", execd(sb) + "/code", {"context": {"id": ctx}, "code": "1"}), 409, "CONFLICT")
    r = api(d, "DELETE", execd(sb) + f"/code?id={ctx}")
    assert r.status == 200 and r.headers["content-length"] == "0"
    t.join(20)
    assert box["ev"][-1]["error"]["ename"] == "KeyboardInterrupt"
    assert code_events(d, sb, ctx, "x")[2]["results"] == {"text": "40"}  # still alive, state kept

    r = api(d, "GET", execd(sb) + f"/code/contexts/{ctx}")
    assert r.json() == {"id": ctx, "language": "python", "cwd": "/tmp"}
    # The interpreter exiting ends the context.
    ev = code_events(d, sb, ctx, "import os; os._exit(3)")
    assert ev[-1]["type"] == "error" and ev[-1]["error"]["ename"] == "ContextEnded"
    assert_error(api(d, "POST", execd(sb) + "/code", {"context": {"id": ctx}, "code": "1"}), 404, "CONTEXT_NOT_FOUND")
    r = api(d, "DELETE", execd(sb) + f"/code/contexts/{ctx}")
    assert r.status == 200 and r.headers["content-length"] == "0"
    assert_error(api(d, "GET", execd(sb) + f"/code/contexts/{ctx}"), 404, "CONTEXT_NOT_FOUND")


def test_code_bash_context(d, sb):
    ctx = new_context(d, sb, "bash")
    ev = code_events(d, sb, ctx, "X=40; f() { echo f-$1; }; cd /tmp; echo hi; echo err >&2", "bash")
    assert [(e["type"], e.get("text")) for e in ev if e["type"] in ("stdout", "stderr")] in (
        [("stdout", "hi"), ("stderr", "err")], [("stderr", "err"), ("stdout", "hi")])
    assert ev[-1]["type"] == "execution_complete"
    ev = code_events(d, sb, ctx, "echo $((X+2)) $(pwd); f x; cat", "bash")  # vars, cwd, functions kept
    assert [e["text"] for e in ev if e["type"] == "stdout"] == ["42 /tmp", "f-x"]
    ev = code_events(d, sb, ctx, "echo out; (exit 3)", "bash")
    assert ev[-1]["error"] == {"ename": "CommandExecError", "evalue": "3", "traceback": ["exit status 3"]}
    # An interrupt ends bash's foreground command and the cell; the shell and its state stay.
    import threading
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("ev", code_events(d, sb, ctx, "sleep 30; echo no", "bash")))
    t.start()
    time.sleep(1)
    r = api(d, "DELETE", execd(sb) + f"/code?id={ctx}")
    assert r.status == 200 and r.headers["content-length"] == "0"
    t.join(20)
    assert box["ev"][-1]["error"]["ename"] == "KeyboardInterrupt"
    assert [e["text"] for e in code_events(d, sb, ctx, "echo $X", "bash") if e["type"] == "stdout"] == ["40"]
    ids = {c["id"]: c["language"] for c in api(d, "GET", execd(sb) + "/code/contexts").json()}
    assert ids.get(ctx) == "bash"
    assert [c["id"] for c in api(d, "GET", execd(sb) + "/code/contexts?language=bash").json()] == [ctx]
    r = api(d, "DELETE", execd(sb) + "/code/contexts?language=bash")
    assert r.status == 200 and r.headers["content-length"] == "0"
    assert api(d, "GET", execd(sb) + "/code/contexts?language=bash").json() == []


def test_code_javascript_context_and_display(d, sb):
    # execd's javascript is sbx's node context; the native API sees the same context.
    ctx = new_context(d, sb, "javascript")
    ev = code_events(d, sb, ctx, "let x = 40; console.log('hi')", "javascript")
    assert [(e["type"], e.get("text")) for e in ev if e["type"] == "stdout"] == [("stdout", "hi")]
    ev = code_events(d, sb, ctx, "x + 2", "javascript")
    assert [e["type"] for e in ev] == ["init", "execution_count", "result", "execution_complete"]
    assert ev[2]["results"] == {"text": "42"}
    assert [c["id"] for c in api(d, "GET", execd(sb) + "/code/contexts?language=javascript").json()] == [ctx]
    r = d.request("GET", f"/v1/sandboxes/{sb}/contexts/{ctx}")
    assert r.status == 200 and r.json()["language"] == "node", r
    # A displayed rich output is a result event with its mime bundle.
    py = new_context(d, sb, "python")
    ev = code_events(d, sb, py, "display({'text/html': '<b>x</b>'})")
    assert {"type": "result", "results": {"text/html": "<b>x</b>"}} in [
        {k: v for k, v in e.items() if k != "timestamp"} for e in ev]
    for c in (ctx, py):
        api(d, "DELETE", execd(sb) + f"/code/contexts/{c}")


def test_code_bad_input(d, sb):
    assert_error(api(d, "POST", execd(sb) + "/code/context", {"language": "java"}), 501, "NOT_SUPPORTED")
    assert_error(api(d, "POST", execd(sb) + "/code/context", {"language": "x" * 100}), 413, "TOO_LARGE")
    assert_error(api(d, "POST", execd(sb) + "/code/context", {"language": "python", "cwd": "/nope"}), 400)
    assert_error(api(d, "POST", execd(sb) + "/code/context", [1]), 400, "INVALID_REQUEST_BODY")
    assert_error(api(d, "POST", execd(sb) + "/code", {"code": "1"}), 400, "INVALID_REQUEST_BODY")
    assert_error(api(d, "POST", execd(sb) + "/code", {"context": {"id": "ctx_nope"}, "code": "1"}), 404,
                 "CONTEXT_NOT_FOUND")
    assert_error(api(d, "POST", execd(sb) + "/code", {"context": {"id": "../../etc/passwd"}, "code": "1"}), 404)
    assert_error(api(d, "POST", execd(sb) + "/code", {"context": "x", "code": "1"}), 400)
    ctx = new_context(d, sb, "python")
    assert_error(api(d, "POST", execd(sb) + "/code", {"context": {"id": ctx}, "code": "x" * (513 * 1024)}), 413)
    assert_error(api(d, "POST", execd(sb) + "/code", {"context": {"id": ctx}}), 400)
    assert_error(api(d, "DELETE", execd(sb) + "/code/contexts"), 400, "MISSING_QUERY")
    assert_error(api(d, "DELETE", execd(sb) + "/code"), 400, "MISSING_QUERY")
    api(d, "DELETE", execd(sb) + f"/code/contexts/{ctx}")
