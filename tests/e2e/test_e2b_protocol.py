"""E2B compatibility on the wire (docs/compat/e2b.md): error shapes the E2B SDKs turn into their typed
errors, both create/connect route generations, envd routing and auth, Connect unary and streaming framing
(envelopes, end-of-stream, Connect JSON errors), and the Connect-Timeout-Ms deadline. The SDK itself is
driven in tests/compat_e2b."""
import base64
import json
import os
import struct
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sbxtest import Daemon  # noqa: E402

KEY = "e2b_" + "ab" * 16


@pytest.fixture(scope="module")
def d():
    with Daemon(api_key=KEY) as daemon:
        yield daemon
        assert daemon.stop() == 0, daemon.read_log()


def api(d, method, path, body=None, key=KEY, headers=None):
    h = {"X-API-Key": key} if key else {}
    h.update(headers or {})
    return d.request(method, path, body=body, headers=h, auth=False)


@pytest.fixture
def sb(d):
    r = api(d, "POST", "/v2/sandboxes", {"templateID": "base", "timeout": 120, "metadata": {"k": "v"}})
    assert r.status == 201, r
    j = r.json()
    yield j
    api(d, "DELETE", f"/sandboxes/{j['sandboxID']}")


def envd(d, sb, method, path, body=b"", headers=None, token=True):
    h = {"E2b-Sandbox-Id": sb["sandboxID"], "E2b-Sandbox-Port": "49983"}
    if token:
        h["X-Access-Token"] = sb["envdAccessToken"]
    h.update(headers or {})
    return d.request(method, path, body=body, headers=h, auth=False)


def unary(d, sb, path, msg, **kw):
    return envd(d, sb, "POST", path, json.dumps(msg).encode(),
                {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}, **kw)


def envelope(msg, flags=0):
    b = json.dumps(msg).encode()
    return struct.pack(">BI", flags, len(b)) + b


def stream(d, sb, path, msg, headers=None, raw=None):
    h = {"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1"}
    h.update(headers or {})
    return envd(d, sb, "POST", path, raw if raw is not None else envelope(msg), h)


def frames(body):
    out, pos = [], 0
    while pos < len(body):
        flags, n = struct.unpack(">BI", body[pos:pos + 5])
        out.append((flags, json.loads(body[pos + 5:pos + 5 + n])))
        pos += 5 + n
    return out


def test_missing_and_wrong_api_key_are_401_in_e2b_shape(d):
    for key in (None, "e2b_" + "0" * 32):
        r = api(d, "GET", "/v2/sandboxes", key=key)
        assert r.status == 401, r
        j = r.json()
        assert j["code"] == 401 and isinstance(j["message"], str), j


def test_missing_sandbox_is_404_in_e2b_shape(d):
    for method, path in (("GET", "/sandboxes/sbx_nothere"), ("DELETE", "/sandboxes/sbx_nothere"),
                         ("POST", "/sandboxes/sbx_nothere/timeout"), ("POST", "/v2/sandboxes/sbx_nothere/connect")):
        r = api(d, method, path, {"timeout": 10} if method == "POST" else None)
        assert r.status == 404, (path, r)
        assert r.json()["code"] == 404


def test_unknown_control_plane_route_and_bad_body(d):
    r = api(d, "GET", "/templates/nothing/files/x")
    assert r.status == 404 and r.json()["code"] == 404
    r = api(d, "POST", "/v2/sandboxes", {"templateID": 7})
    assert r.status == 400, r


def test_v1_create_and_connect_routes(d):
    r = api(d, "POST", "/sandboxes", {"templateID": "base", "timeout": 60})
    assert r.status == 201, r
    j = r.json()
    assert j["envdVersion"] == "0.6.13" and j["envdAccessToken"] and j["clientID"]
    r = api(d, "POST", f"/sandboxes/{j['sandboxID']}/connect", {"timeout": 60})
    assert r.status == 200 and r.json()["sandboxID"] == j["sandboxID"]
    assert api(d, "POST", f"/sandboxes/{j['sandboxID']}/pause", {}).status == 204
    assert api(d, "POST", f"/sandboxes/{j['sandboxID']}/pause", {}).status == 409
    r = api(d, "POST", f"/sandboxes/{j['sandboxID']}/resume", {"timeout": 60})
    assert r.status == 201, r
    assert api(d, "DELETE", f"/sandboxes/{j['sandboxID']}").status == 204


def test_native_api_is_untouched(d):
    r = d.request("GET", "/v1/sandboxes", headers={"Authorization": f"Bearer {KEY}"}, auth=False)
    assert r.status == 200 and "sandboxes" in r.json()


def test_envd_unknown_sandbox_is_502(d):
    r = d.request("GET", "/health", headers={"E2b-Sandbox-Id": "sbx_nothere"}, auth=False)
    assert r.status == 502
    assert r.json() == {"sandboxId": "sbx_nothere", "message": "The sandbox was not found", "code": 502}


def test_envd_access_token_is_required(d, sb):
    assert envd(d, sb, "GET", "/health", token=False).status == 204
    r = unary(d, sb, "/filesystem.Filesystem/Stat", {"path": "/"}, token=False)
    assert r.status == 401 and r.json()["code"] == 401
    r = envd(d, sb, "POST", "/filesystem.Filesystem/Stat", b'{"path":"/"}',
             {"Content-Type": "application/json", "X-Access-Token": "nope"}, token=False)
    assert r.status == 401
    other = dict(sb, envdAccessToken=sb["envdAccessToken"][::-1])
    assert unary(d, other, "/filesystem.Filesystem/Stat", {"path": "/"}).status == 401


def test_connect_unary_errors_are_connect_json(d, sb):
    r = unary(d, sb, "/filesystem.Filesystem/Stat", {"path": "/no/such/file"})
    assert r.status == 404 and r.json()["code"] == "not_found", r
    r = unary(d, sb, "/filesystem.Filesystem/MakeDir", {"path": "/tmp"})
    assert r.status == 409 and r.json()["code"] == "already_exists", r
    r = envd(d, sb, "POST", "/filesystem.Filesystem/Stat", b"{not json",
             {"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["code"] == "invalid_argument", r
    r = unary(d, sb, "/process.Process/SendSignal", {"process": {"pid": 999999}, "signal": "SIGNAL_SIGKILL"})
    assert r.status == 404 and r.json()["code"] == "not_found"
    r = unary(d, sb, "/process.Process/Nope", {})
    assert r.status == 404


def test_bad_envelope_ends_the_stream_with_a_connect_error(d, sb):
    for raw in (b"\x00\x00", b"\x01" + struct.pack(">I", 2) + b"{}", struct.pack(">BI", 0, 99) + b"{}"):
        r = stream(d, sb, "/process.Process/Start", None, raw=raw)
        assert r.status == 200, r
        assert r.headers["content-type"].startswith("application/connect+json")
        fs = frames(r.body)
        assert len(fs) == 1 and fs[0][0] == 2, fs
        assert fs[0][1]["error"]["code"] == "invalid_argument"


def test_start_streams_start_data_end_and_end_of_stream(d, sb):
    r = stream(d, sb, "/process.Process/Start",
               {"process": {"cmd": "/bin/sh", "args": ["-c", "echo out; echo err >&2; exit 4"]}, "stdin": False})
    assert r.status == 200, r
    fs = frames(r.body)
    assert all(f == 0 for f, _ in fs[:-1]) and fs[-1] == (2, {}), fs
    events = [m["event"] for _, m in fs[:-1]]
    assert "start" in events[0] and events[0]["start"]["pid"] > 0
    out = b"".join(base64.b64decode(e["data"].get("stdout", "")) for e in events if "data" in e)
    err = b"".join(base64.b64decode(e["data"].get("stderr", "")) for e in events if "data" in e)
    assert out == b"out\n" and err == b"err\n"
    assert events[-1]["end"] == {"exitCode": 4, "exited": True, "status": "exit status 4", "error": "exit status 4"}


def test_connect_timeout_ms_is_the_process_deadline(d, sb):
    r = stream(d, sb, "/process.Process/Start", {"process": {"cmd": "/bin/sleep", "args": ["30"]}},
               headers={"Connect-Timeout-Ms": "500"})
    fs = frames(r.body)
    assert fs[-1][0] == 2 and fs[-1][1]["error"]["code"] == "deadline_exceeded", fs
    r = unary(d, sb, "/process.Process/List", {})
    assert r.status == 200
    assert all(p["config"]["args"] != ["30"] for p in r.json().get("processes", []))


def test_unknown_pid_connect_is_not_found_in_stream(d, sb):
    r = stream(d, sb, "/process.Process/Connect", {"process": {"pid": 999999}})
    fs = frames(r.body)
    assert fs == [(2, {"error": {"code": "not_found", "message": "process with pid 999999 not found"}})]


def test_files_errors_are_json(d, sb):
    r = envd(d, sb, "GET", "/files?path=/no/such")
    assert r.status == 404 and r.json()["code"] == 404
    r = envd(d, sb, "GET", "/files?path=/tmp")
    assert r.status == 400 and r.json()["code"] == 400
    r = envd(d, sb, "POST", "/files", b"raw", {"Content-Type": "application/octet-stream"})
    assert r.status == 400
    r = envd(d, sb, "POST", "/files?path=/tmp/raw.bin", b"\x00raw", {"Content-Type": "application/octet-stream"})
    assert r.status == 200 and r.json()[0]["path"] == "/tmp/raw.bin"
    r = envd(d, sb, "GET", "/files?path=/tmp/raw.bin")
    assert r.status == 200 and r.body == b"\x00raw"


def test_signed_url_with_bad_signature(d, sb):
    r = d.request("GET", "/files?path=/etc/hostname&signature=v1_nope", auth=False)
    assert r.status == 401 and r.json()["code"] == 401


def test_keepalive_events_at_the_requested_interval(d, sb):
    r = stream(d, sb, "/process.Process/Start", {"process": {"cmd": "/bin/sleep", "args": ["2.5"]}},
               headers={"Keepalive-Ping-Interval": "1"})
    events = [m["event"] for f, m in frames(r.body) if f == 0]
    assert sum(1 for e in events if "keepalive" in e) >= 2, events
    assert events[-1]["end"]["exitCode"] == 0 and events[-1]["end"]["status"] == "exit status 0"


def test_watch_dir_stream_starts_with_a_start_event(d, sb):
    r = stream(d, sb, "/filesystem.Filesystem/WatchDir", {"path": "/tmp"}, headers={"Connect-Timeout-Ms": "300"})
    fs = frames(r.body)
    assert fs[0] == (0, {"start": {}}), fs
    assert fs[-1][0] == 2 and fs[-1][1]["error"]["code"] == "deadline_exceeded", fs
    r = stream(d, sb, "/filesystem.Filesystem/WatchDir", {"path": "/no/such/dir"})
    assert frames(r.body) == [(2, {"error": {"code": "not_found",
                                             "message": "open directory `/no/such/dir`: no such file or directory"}})]
