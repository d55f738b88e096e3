"""E2B compatibility on the wire (docs/compat/e2b.md): error shapes the E2B SDKs turn into their typed
errors, both create/connect route generations, envd routing and auth, Connect unary and streaming framing
(envelopes, end-of-stream, Connect JSON errors), the Connect-Timeout-Ms deadline, the calls no JS SDK
makes (the polling watchers CreateWatcher/GetWatcherEvents/RemoveWatcher of the Python SDK's sync
watch_dir, the client stream StreamInput) and cpuUsedPct. The SDK itself is driven in tests/compat_e2b."""
import base64
import json
import os
import struct
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sbxtest import Daemon, open_fds, wait_for  # noqa: E402

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


# --- the polling watchers: CreateWatcher, GetWatcherEvents, RemoveWatcher (the Python SDK's sync watch_dir)

def inotify_fds(d):
    return sum(1 for t in open_fds(d.proc.pid).values() if "inotify" in t)


def run_sh(d, sb, script):
    r = stream(d, sb, "/process.Process/Start", {"process": {"cmd": "/bin/sh", "args": ["-c", script]}, "stdin": False})
    events = [m["event"] for f, m in frames(r.body) if f == 0]
    assert events[-1]["end"]["exitCode"] == 0, events
    return b"".join(base64.b64decode(e["data"].get("stdout", "")) for e in events if "data" in e)


def watcher_events(d, sb, wid):
    r = unary(d, sb, "/filesystem.Filesystem/GetWatcherEvents", {"watcherId": wid})
    assert r.status == 200, r
    return r.json().get("events", [])


def test_polling_watcher_queues_events_until_fetched(d, sb):
    assert unary(d, sb, "/filesystem.Filesystem/MakeDir", {"path": "/tmp/pw"}).status == 200
    r = unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp/pw"})
    assert r.status == 200, r
    wid = r.json()["watcherId"]
    assert wid and isinstance(wid, str)
    assert watcher_events(d, sb, wid) == []
    assert envd(d, sb, "POST", "/files?path=/tmp/pw/a.txt", b"one", {"Content-Type": "application/octet-stream"}).status == 200
    run_sh(d, sb, "echo two >> /tmp/pw/a.txt; chmod 600 /tmp/pw/a.txt; mv /tmp/pw/a.txt /tmp/pw/b.txt; rm /tmp/pw/b.txt")
    events = watcher_events(d, sb, wid)
    kinds = [(e["name"], e["type"]) for e in events]
    for want in (("a.txt", "EVENT_TYPE_CREATE"), ("a.txt", "EVENT_TYPE_WRITE"), ("a.txt", "EVENT_TYPE_CHMOD"),
                 ("a.txt", "EVENT_TYPE_RENAME"), ("b.txt", "EVENT_TYPE_CREATE"), ("b.txt", "EVENT_TYPE_REMOVE")):
        assert want in kinds, (want, kinds)
    assert all("entry" not in e for e in events), events
    # Fetched events are gone; the next call has only what happened since.
    assert watcher_events(d, sb, wid) == []
    run_sh(d, sb, "touch /tmp/pw/c")
    assert [(e["name"], e["type"]) for e in watcher_events(d, sb, wid)][0] == ("c", "EVENT_TYPE_CREATE")
    r = unary(d, sb, "/filesystem.Filesystem/RemoveWatcher", {"watcherId": wid})
    assert r.status == 200 and r.json() == {}, r
    for path in ("/filesystem.Filesystem/GetWatcherEvents", "/filesystem.Filesystem/RemoveWatcher"):
        r = unary(d, sb, path, {"watcherId": wid})
        assert r.status == 404 and r.json() == {"code": "not_found", "message": f"watcher with id {wid} not found"}, r


def test_polling_watcher_recursive_with_entries(d, sb):
    run_sh(d, sb, "mkdir -p /tmp/pr/old")
    r = unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp/pr", "recursive": True, "include_entry": True})
    assert r.status == 200, r
    wid = r.json()["watcherId"]
    run_sh(d, sb, "printf 12345 > /tmp/pr/old/f; mkdir /tmp/pr/new; sleep 0.2; printf xy > /tmp/pr/new/g")
    events = watcher_events(d, sb, wid)
    by = {(e["name"], e["type"]): e for e in events}
    assert ("old/f", "EVENT_TYPE_CREATE") in by, events
    assert ("new", "EVENT_TYPE_CREATE") in by and by[("new", "EVENT_TYPE_CREATE")]["entry"]["type"] == "FILE_TYPE_DIRECTORY"
    g = by[("new/g", "EVENT_TYPE_CREATE")]["entry"]
    assert g["path"] == "/tmp/pr/new/g" and g["type"] == "FILE_TYPE_FILE", g
    assert unary(d, sb, "/filesystem.Filesystem/RemoveWatcher", {"watcher_id": wid}).status == 200


def test_polling_watcher_errors(d, sb):
    r = unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/no/such/dir"})
    assert r.status == 404 and r.json()["code"] == "not_found", r
    r = unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/etc/hostname"})
    assert r.status == 400 and r.json() == {"code": "invalid_argument", "message": "path is not a directory"}, r
    r = unary(d, sb, "/filesystem.Filesystem/GetWatcherEvents", {})
    assert r.status == 400 and r.json()["code"] == "invalid_argument", r
    # A watcher belongs to its sandbox: another sandbox's envd does not know it.
    wid = unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"}).json()["watcherId"]
    other = api(d, "POST", "/v2/sandboxes", {"templateID": "base", "timeout": 60}).json()
    try:
        assert unary(d, other, "/filesystem.Filesystem/GetWatcherEvents", {"watcherId": wid}).status == 404
        assert unary(d, other, "/filesystem.Filesystem/RemoveWatcher", {"watcherId": wid}).status == 404
    finally:
        api(d, "DELETE", f"/sandboxes/{other['sandboxID']}")
    assert unary(d, sb, "/filesystem.Filesystem/GetWatcherEvents", {"watcherId": wid}).status == 200


def test_polling_watcher_queue_is_bounded(d, sb):
    run_sh(d, sb, "mkdir -p /tmp/pq")
    wid = unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp/pq"}).json()["watcherId"]
    run_sh(d, sb, "cd /tmp/pq && i=0; while [ $i -lt 4200 ]; do : > f$i; i=$((i+1)); done")
    r = unary(d, sb, "/filesystem.Filesystem/GetWatcherEvents", {"watcherId": wid})
    assert r.status == 429 and r.json()["code"] == "resource_exhausted", r
    assert "4096" in r.json()["message"]
    # The watcher stays broken (events were lost) until it is removed.
    assert unary(d, sb, "/filesystem.Filesystem/GetWatcherEvents", {"watcherId": wid}).status == 429
    assert unary(d, sb, "/filesystem.Filesystem/RemoveWatcher", {"watcherId": wid}).status == 200


def test_watchers_per_sandbox_are_bounded(d, sb):
    ids = []
    for _ in range(32):
        r = unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"})
        assert r.status == 200, r
        ids.append(r.json()["watcherId"])
    assert len(set(ids)) == 32
    r = unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"})
    assert r.status == 429 and r.json()["code"] == "resource_exhausted", r
    assert unary(d, sb, "/filesystem.Filesystem/RemoveWatcher", {"watcherId": ids.pop()}).status == 200
    assert unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"}).status == 200


def test_watchers_go_when_the_sandbox_stops_or_is_deleted(d, sb):
    # CreateWatcher first drops the watchers of sandboxes gone earlier (the sweep would, within 2 s).
    wid = unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"}).json()["watcherId"]
    assert unary(d, sb, "/filesystem.Filesystem/RemoveWatcher", {"watcherId": wid}).status == 200
    before = inotify_fds(d)
    wids = [unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"}).json()["watcherId"] for _ in range(3)]
    assert inotify_fds(d) == before + 3
    native = {"Authorization": f"Bearer {KEY}"}
    r = d.request("POST", f"/v1/sandboxes/{sb['sandboxID']}/stop", headers=native, auth=False)
    assert r.status == 200, r
    wait_for(lambda: inotify_fds(d) == before, timeout=10, what="watchers of a stopped sandbox removed")
    r = d.request("POST", f"/v1/sandboxes/{sb['sandboxID']}/start", headers=native, auth=False)
    assert r.status == 200, r
    for wid in wids:
        assert unary(d, sb, "/filesystem.Filesystem/GetWatcherEvents", {"watcherId": wid}).status == 404
    for _ in range(2):
        assert unary(d, sb, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"}).status == 200
    assert inotify_fds(d) == before + 2
    assert api(d, "DELETE", f"/sandboxes/{sb['sandboxID']}").status == 204
    wait_for(lambda: inotify_fds(d) == before, timeout=10, what="watchers of a deleted sandbox removed")


# --- StreamInput: a client-streaming call over a chunked HTTP/1.1 body

class StartedProcess:
    """A Start stream kept open: the pid from its start event, then its events as they come."""

    def __init__(self, d, sb, cmd, args):
        self.conn = d.conn(timeout=30)
        body = envelope({"process": {"cmd": cmd, "args": args}, "stdin": True})
        self.conn.request("POST", "/process.Process/Start", body=body, headers={
            "E2b-Sandbox-Id": sb["sandboxID"], "X-Access-Token": sb["envdAccessToken"],
            "Content-Type": "application/connect+json", "Connect-Protocol-Version": "1"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        flags, msg = self.next()
        self.pid = msg["event"]["start"]["pid"]

    def next(self):
        flags, n = struct.unpack(">BI", self.resp.read(5))
        return flags, json.loads(self.resp.read(n))

    def stdout_until(self, want):
        out = b""
        while len(out) < len(want):
            flags, msg = self.next()
            assert flags == 0, msg
            out += base64.b64decode(msg["event"].get("data", {}).get("stdout", ""))
        assert out == want, out
        return out

    def end(self):
        while True:
            flags, msg = self.next()
            if "end" in msg.get("event", {}):
                self.conn.close()
                return msg["event"]["end"]


class InputStream:
    """StreamInput with a chunked request body written envelope by envelope."""

    def __init__(self, d, sb, content_type="application/connect+json"):
        self.conn = d.conn(timeout=60)
        self.conn.putrequest("POST", "/process.Process/StreamInput")
        for k, v in {"E2b-Sandbox-Id": sb["sandboxID"], "X-Access-Token": sb["envdAccessToken"],
                     "Content-Type": content_type, "Connect-Protocol-Version": "1",
                     "Transfer-Encoding": "chunked"}.items():
            self.conn.putheader(k, v)
        self.conn.endheaders()

    def send(self, msg=None, raw=None):
        b = raw if raw is not None else envelope(msg)
        self.conn.send(b"%x\r\n%s\r\n" % (len(b), b))

    def data(self, b):
        self.send({"data": {"input": {"stdin": base64.b64encode(b).decode()}}})

    def finish(self):
        self.conn.send(b"0\r\n\r\n")
        r = self.conn.getresponse()
        body = r.read()
        self.conn.close()
        assert r.status == 200 and r.getheader("content-type").startswith("application/connect+json"), (r.status, body)
        return frames(body)


def test_stream_input_feeds_stdin_as_it_arrives(d, sb):
    p = StartedProcess(d, sb, "/bin/cat", [])
    s = InputStream(d, sb)
    s.send({"start": {"process": {"pid": p.pid}}})
    s.data(b"hello\n")
    # cat echoed it while the request body is still open.
    p.stdout_until(b"hello\n")
    s.send({"keepalive": {}})
    s.data(b"world\n")
    p.stdout_until(b"world\n")
    assert s.finish() == [(0, {}), (2, {})]
    # The stream's end does not close stdin (as envd): cat is still there until CloseStdin.
    assert unary(d, sb, "/process.Process/CloseStdin", {"process": {"pid": p.pid}}).status == 200
    assert p.end()["exitCode"] == 0


def test_stream_input_large_input_with_backpressure(d, sb):
    p = StartedProcess(d, sb, "/bin/sh", ["-c", "sleep 1; wc -c"])
    s = InputStream(d, sb)
    s.send({"start": {"process": {"pid": p.pid}}})
    chunk = os.urandom(1 << 20)
    for _ in range(24):
        s.data(chunk)
    assert s.finish() == [(0, {}), (2, {})]
    assert unary(d, sb, "/process.Process/CloseStdin", {"process": {"pid": p.pid}}).status == 200
    p.stdout_until(b"%d\n" % (24 << 20))
    assert p.end()["exitCode"] == 0


def test_stream_input_errors(d, sb):
    s = InputStream(d, sb)
    s.data(b"x")
    fs = s.finish()
    assert fs == [(2, {"error": {"code": "failed_precondition", "message": "a data message before the start message"}})], fs
    s = InputStream(d, sb)
    s.send({"start": {"process": {"pid": 999999}}})
    assert s.finish() == [(2, {"error": {"code": "not_found", "message": "process with pid 999999 not found"}})]
    s = InputStream(d, sb)
    s.send(raw=b"\x00\x00\x00")
    fs = s.finish()
    assert fs[0][1]["error"]["code"] == "invalid_argument", fs
    s = InputStream(d, sb)
    s.send({"nothing": {}})
    assert s.finish()[0][1]["error"]["code"] == "unimplemented"
    r = unary(d, sb, "/process.Process/StreamInput", {"start": {"process": {"pid": 1}}})
    assert r.status == 400 and r.json()["code"] == "invalid_argument", r
    # No messages at all is a successful (empty) call, as in envd.
    assert InputStream(d, sb).finish() == [(0, {}), (2, {})]
    # Input for a process that has exited is refused.
    r = stream(d, sb, "/process.Process/Start", {"process": {"cmd": "/bin/true"}, "stdin": True})
    pid = frames(r.body)[0][1]["event"]["start"]["pid"]
    s = InputStream(d, sb)
    s.send({"start": {"process": {"pid": pid}}})
    time.sleep(0.2)
    s.data(b"late")
    fs = s.finish()
    assert fs[0][1]["error"]["code"] == "failed_precondition" and "has exited" in fs[0][1]["error"]["message"], fs


# --- metrics: cpuUsedPct from the cgroup's CPU time over the sampling window

def test_metrics_cpu_used_pct(d, sb):
    r = api(d, "GET", f"/sandboxes/{sb['sandboxID']}/metrics")
    assert r.status == 200, r
    (m,) = r.json()
    assert m["cpuCount"] == 1 and 0 <= m["cpuUsedPct"] < 20, m
    busy = StartedProcess(d, sb, "/bin/sh", ["-c", "while :; do :; done"])
    try:
        time.sleep(0.3)
        (m,) = api(d, "GET", f"/sandboxes/{sb['sandboxID']}/metrics").json()
        assert 30 <= m["cpuUsedPct"] <= 100, m
    finally:
        assert unary(d, sb, "/process.Process/SendSignal", {"process": {"pid": busy.pid}, "signal": "SIGNAL_SIGKILL"}).status == 200
        busy.end()


def test_create_answers_traffic_token_and_no_domain_without_service_domain(d, sb):
    assert sb["trafficAccessToken"] and sb["trafficAccessToken"] != sb["envdAccessToken"]
    assert sb["domain"] is None
    r = api(d, "GET", f"/sandboxes/{sb['sandboxID']}")
    j = r.json()
    assert j["domain"] is None and j["allowInternetAccess"] is False, j
    assert j["network"] == {"allowOut": [], "denyOut": ["0.0.0.0/0"], "allowPublicTraffic": True}, j
    assert j["metadata"] == {"k": "v"}, j  # the public-traffic marker stays hidden


def test_snapshot_routes_on_the_wire(d, sb):
    sid = sb["sandboxID"]
    r = api(d, "POST", f"/sandboxes/{sid}/snapshots", {})  # the SDK's body when no name is given
    assert r.status == 201, r
    snap = r.json()
    assert snap["snapshotID"].startswith("snap") and len(snap["names"]) == 1, snap
    r = api(d, "GET", f"/snapshots?sandboxID={sid}")
    assert r.status == 200 and r.json() == [snap], r
    assert "X-Next-Token" not in r.headers
    for q in ("limit=0", "limit=101", "nextToken=-1"):
        r = api(d, "GET", f"/snapshots?{q}")
        assert r.status == 400 and r.json()["code"] == 400, (q, r)
    assert api(d, "POST", f"/sandboxes/{sid}/snapshots", {"name": 7}).status == 400
    assert api(d, "POST", "/sandboxes/sbx_nothere/snapshots", {}).status == 404
    assert api(d, "GET", f"/templates/{snap['snapshotID']}").status == 405
    assert api(d, "DELETE", f"/templates/{snap['snapshotID']}").status == 204
    r = api(d, "DELETE", f"/templates/{snap['snapshotID']}")
    assert r.status == 404 and r.json()["code"] == 404, r
    assert api(d, "GET", f"/snapshots?sandboxID={sid}").json() == []


def test_network_update_errors(d, sb):
    sid = sb["sandboxID"]
    for body in ({"rules": {"a.example": [{"transform": {"headers": {"x": "y"}}}]}},
                 {"egressProxy": {"address": "proxy:1080"}}, {"allow_internet_access": "no"},
                 {"allowOut": "1.2.3.4"}, {"denyOut": [7]}):
        r = api(d, "PUT", f"/sandboxes/{sid}/network", body)
        assert r.status == 400 and r.json()["code"] == 400, (body, r)
    # A sandbox created without network options has none: denying everything is a no-op, opening is 409.
    assert api(d, "PUT", f"/sandboxes/{sid}/network", {"allow_internet_access": False}).status == 204
    assert api(d, "PUT", f"/sandboxes/{sid}/network", {"denyOut": ["0.0.0.0/0"]}).status == 204
    r = api(d, "PUT", f"/sandboxes/{sid}/network", {})
    assert r.status == 409 and "without network" in r.json()["message"], r
    assert api(d, "PUT", "/sandboxes/sbx_nothere/network", {}).status == 404
    for net in ({"maskRequestHost": "x"}, {"httpsPorts": [8443]}, {"allowPublicTraffic": "yes"}):
        r = api(d, "POST", "/v2/sandboxes", {"templateID": "base", "network": net})
        assert r.status == 400, (net, r)


def test_fork_count_bounds(d, sb):
    for body in ({"count": 0}, {"count": 17}, {"timeout": 0}):
        r = api(d, "POST", f"/sandboxes/{sb['sandboxID']}/fork", body)
        assert r.status == 400 and r.json()["code"] == 400, (body, r)
    assert api(d, "POST", "/sandboxes/sbx_nothere/fork", {}).status == 404
