"""Command lifecycle end to end against a real sbxd: ttl_seconds, idle_timeout, kill_on_disconnect (and its
grace period across a kill -9 of sbxd), the per-sandbox session list, and the combined log read from a
byte cursor (docs/api.md, "Commands")."""
import base64
import datetime
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from sbxtest import Daemon, wait_for


def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def start(d, sid, command, **kw):
    r = d.request("POST", f"/v1/sandboxes/{sid}/commands", dict(kw, command=command))
    assert r.status == 201, r
    return r.json()


def get(d, sid, cid):
    return d.request("GET", f"/v1/sandboxes/{sid}/commands/{cid}")


def status(d, sid, cid):
    r = get(d, sid, cid)
    assert r.status == 200, r
    return r.json()


def wait_exited(d, sid, cid, timeout=15):
    return wait_for(lambda: (lambda c: c if c["state"] == "exited" else None)(status(d, sid, cid)),
                    timeout=timeout, what=f"command {cid} to exit")


def logs(d, sid, cid, **q):
    query = "&".join(f"{k}={v}" for k, v in q.items())
    return d.request("GET", f"/v1/sandboxes/{sid}/commands/{cid}/logs" + (f"?{query}" if query else ""))


class Attach:
    """An SSE stream of a command held open on a raw socket until close() (a client that goes away)."""

    def __init__(self, d, sid, cid):
        self.sock = socket.create_connection(("127.0.0.1", d.port), timeout=30)
        self.sock.sendall(f"GET /v1/sandboxes/{sid}/commands/{cid}/stream HTTP/1.1\r\nHost: t\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            assert chunk, "closed before the headers"
            buf += chunk
        assert b" 200 " in buf.split(b"\r\n")[0], buf

    def read_until(self, marker):
        """Reads until marker and the end of its event; returns the last bytes read."""
        buf = b""
        while marker not in buf or not buf.split(marker, 1)[1].count(b"\n\n"):
            chunk = self.sock.recv(1 << 16)
            assert chunk, "stream closed early"
            buf = buf[-4096:] + chunk
        return buf

    def close(self):
        self.sock.close()


def attached(d, sid, cid, n):
    return wait_for(lambda: status(d, sid, cid)["attached"] == n, what=f"{n} attached to {cid}")


# --- the session list and the command object --------------------------------------------------------

def test_list_shows_lifecycle_fields(daemon, sandbox):
    c = start(daemon, sandbox, "exec sleep 30", id="lister")
    assert (c["ttl_seconds"], c["idle_timeout"], c["kill_on_disconnect"]) == (600, 300, False)
    assert c["disconnect_grace"] == 10 and c["attached"] == 0 and c["expires_at"] is None
    start(daemon, sandbox, "echo done", id="lister-2", ttl_seconds=-1, idle_timeout=-1, kill_on_disconnect=True,
          disconnect_grace=2.5)
    wait_exited(daemon, sandbox, "lister-2")
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/commands")
    assert r.status == 200, r
    by_id = {c["id"]: c for c in r.json()["commands"]}
    run, done = by_id["lister"], by_id["lister-2"]
    assert run["state"] == "running" and isinstance(run["pid"], int) and run["pid"] > 0
    assert run["exit_code"] is None and run["finished_at"] is None and run["started_at"]
    assert done["state"] == "exited" and done["exit_code"] == 0 and done["finished_at"]
    assert ts(done["finished_at"]) >= ts(done["started_at"])
    assert (done["ttl_seconds"], done["idle_timeout"], done["kill_on_disconnect"], done["disconnect_grace"]) == \
        (-1, -1, True, 2.5)
    assert done["expires_at"] is None  # kept forever
    assert done["log_bytes"] == 5
    daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/lister/kill")
    killed = wait_exited(daemon, sandbox, "lister")
    assert killed["expires_at"] is not None
    assert 590 < ts(killed["expires_at"]) - ts(killed["finished_at"]) < 610


@pytest.mark.parametrize("field,value", [
    ("ttl_seconds", -2), ("ttl_seconds", "60"), ("ttl_seconds", 1e12), ("ttl_seconds", -0.5),
    ("ttl_seconds", 0.0001),
    ("idle_timeout", 0), ("idle_timeout", -3), ("idle_timeout", "300"), ("idle_timeout", 1e12),
    ("kill_on_disconnect", "yes"), ("kill_on_disconnect", 1),
    ("disconnect_grace", -1), ("disconnect_grace", 301), ("disconnect_grace", [1]),
])
def test_bad_lifecycle_fields(daemon, sandbox, field, value):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", {"command": "true", "id": "bad", field: value})
    assert r.status == 400, r
    assert r.error_code() == "invalid_argument"
    assert field in r.json()["error"]["message"]
    assert get(daemon, sandbox, "bad").status == 404  # nothing was started


# --- idle_timeout -----------------------------------------------------------------------------------

def test_idle_timeout_kills_unattached_command(daemon, sandbox):
    start(daemon, sandbox, "exec sleep 30", id="idle", idle_timeout=0.5)
    start(daemon, sandbox, "exec sleep 30", id="never-idle", idle_timeout=-1)
    c = wait_exited(daemon, sandbox, "idle")
    assert c["error"]["code"] == "idle_timeout", c
    assert c["signal"] == 9 and c["exit_code"] == 137
    assert ts(c["finished_at"]) - ts(c["started_at"]) >= 0.45
    assert status(daemon, sandbox, "never-idle")["state"] == "running"


def test_idle_clock_stops_while_attached_and_restarts_on_detach(daemon, sandbox):
    start(daemon, sandbox, "exec sleep 30", id="watched", idle_timeout=0.5)
    a = Attach(daemon, sandbox, "watched")
    attached(daemon, sandbox, "watched", 1)
    time.sleep(1.5)  # three idle periods while a client is attached
    assert status(daemon, sandbox, "watched")["state"] == "running"
    detached_at = time.time()
    a.close()
    c = wait_exited(daemon, sandbox, "watched")
    assert c["error"]["code"] == "idle_timeout"
    assert ts(c["finished_at"]) - detached_at >= 0.4


def test_wait_request_counts_as_attached(daemon, sandbox):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                       {"command": "sleep 1.2; echo survived", "wait": True, "idle_timeout": 0.3})
    assert r.status == 200, r
    res = r.json()
    assert res["stdout"] == "survived\n" and res["exit_code"] == 0 and res["error"] is None
    # Even a 1 ms idle timeout cannot beat sbxd's own attach for the wait: the shim holds the clock for it.
    for i in range(5):
        r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                           {"command": "sleep 0.05; echo ok", "wait": True, "idle_timeout": 0.001})
        assert r.status == 200 and r.json()["error"] is None and r.json()["stdout"] == "ok\n", r


def test_logs_reads_restart_the_idle_clock(daemon, sandbox):
    start(daemon, sandbox, "exec sleep 30", id="polled", idle_timeout=0.6)
    until = time.monotonic() + 1.8
    while time.monotonic() < until:
        assert logs(daemon, sandbox, "polled").status == 200
        time.sleep(0.15)
    assert status(daemon, sandbox, "polled")["state"] == "running"
    assert wait_exited(daemon, sandbox, "polled")["error"]["code"] == "idle_timeout"


# --- kill_on_disconnect -----------------------------------------------------------------------------

def test_kill_on_disconnect_after_grace(daemon, sandbox):
    start(daemon, sandbox, "exec sleep 30", id="kod", kill_on_disconnect=True, disconnect_grace=0.3)
    start(daemon, sandbox, "exec sleep 30", id="no-kod", disconnect_grace=0.3)
    time.sleep(0.8)
    # Never attached: nothing disconnected, so it runs (idle_timeout is the guard for that case).
    assert status(daemon, sandbox, "kod")["state"] == "running"
    streams = [Attach(daemon, sandbox, "kod"), Attach(daemon, sandbox, "kod"), Attach(daemon, sandbox, "no-kod")]
    attached(daemon, sandbox, "kod", 2)
    streams[0].close()
    time.sleep(0.8)  # one of two clients left: not the last one
    assert status(daemon, sandbox, "kod")["state"] == "running"
    gone = time.time()
    streams[1].close()
    streams[2].close()
    c = wait_exited(daemon, sandbox, "kod")
    assert c["error"]["code"] == "disconnected", c
    assert c["signal"] == 9
    assert ts(c["finished_at"]) - gone >= 0.25
    assert status(daemon, sandbox, "no-kod")["state"] == "running"


def test_reattach_within_grace_cancels_the_kill(daemon, sandbox):
    start(daemon, sandbox, "exec sleep 30", id="flaky", kill_on_disconnect=True, disconnect_grace=1.0)
    a = Attach(daemon, sandbox, "flaky")
    attached(daemon, sandbox, "flaky", 1)
    a.close()
    attached(daemon, sandbox, "flaky", 0)
    b = Attach(daemon, sandbox, "flaky")  # back within the grace period
    time.sleep(2.0)
    assert status(daemon, sandbox, "flaky")["state"] == "running"
    b.close()
    assert wait_exited(daemon, sandbox, "flaky")["error"]["code"] == "disconnected"


def test_kill_on_disconnect_survives_sbxd_kill9_with_reattach():
    """sbxd dying drops every stream at once, like a disconnect of all clients: a command whose client
    re-attaches to the restarted sbxd within disconnect_grace keeps running; one nobody comes back for is
    killed when the grace runs out; the defaults kill nothing."""
    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-cmdlife-", dir="/var/tmp")
    d = Daemon(ephemeral=False, data_dir=data_dir, extra_args=["--warm", "0"]).start()
    try:
        sid = d.create()
        start(d, sid, "exec sleep 60", id="back", kill_on_disconnect=True, disconnect_grace=4)
        start(d, sid, "exec sleep 60", id="abandoned", kill_on_disconnect=True, disconnect_grace=0.5)
        start(d, sid, "exec sleep 60", id="default")
        streams = [Attach(d, sid, "back"), Attach(d, sid, "abandoned"), Attach(d, sid, "default")]
        for cid in ("back", "abandoned", "default"):
            attached(d, sid, cid, 1)
        d.stop(signal.SIGKILL)
        for s in streams:
            s.close()
        d2 = Daemon(ephemeral=False, data_dir=data_dir, extra_args=["--warm", "0"])
        d2.port = d.port
        d2.start()
        try:
            b = Attach(d2, sid, "back")
            c = wait_exited(d2, sid, "abandoned")
            assert c["error"]["code"] == "disconnected"
            time.sleep(4.5)  # past "back"'s grace, counted from the crash
            assert status(d2, sid, "back")["state"] == "running"
            assert status(d2, sid, "default")["state"] == "running"
            b.close()
        finally:
            d2.request("DELETE", f"/v1/sandboxes/{sid}")  # also after a failure: no shim left behind
            assert d2.stop() == 0, d2.read_log()
    finally:
        if d.proc.poll() is None:
            d.stop(signal.SIGKILL)
        subprocess.run(["rm", "-rf", "--one-file-system", data_dir])


# --- ttl_seconds ------------------------------------------------------------------------------------

def log_files(d, sid, cid):
    logs_dir = os.path.join(d.data_dir, "sandboxes", sid, "logs")
    return sorted(f for f in os.listdir(logs_dir) if f.startswith(cid + "."))


def test_ttl_expiry_forgets_the_command_and_its_files(daemon, sandbox):
    big = 300 * 1024  # outgrows the shim's ring: the per-stream log files exist too
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                       {"id": "short", "command": f"head -c {big} /dev/zero; head -c {big} /dev/zero >&2", "wait": True,
                        "ttl_seconds": 1})
    assert r.status == 200, r
    start(daemon, sandbox, "echo kept", id="long", ttl_seconds=60)
    start(daemon, sandbox, "echo forever", id="forever", ttl_seconds=-1)
    assert log_files(daemon, sandbox, "short") == ["short.idx", "short.json", "short.log", "short.stderr",
                                                   "short.stdout"]
    wait_for(lambda: get(daemon, sandbox, "short").status == 404, what="the ttl to run out")
    for r in (get(daemon, sandbox, "short"), logs(daemon, sandbox, "short"),
              daemon.request("GET", f"/v1/sandboxes/{sandbox}/commands/short/stream")):
        assert r.status == 404 and r.error_code() == "expired", r
        assert "expired" in r.json()["error"]["message"]
    assert log_files(daemon, sandbox, "short") == []
    ids = [c["id"] for c in daemon.request("GET", f"/v1/sandboxes/{sandbox}/commands").json()["commands"]]
    assert "short" not in ids and "long" in ids and "forever" in ids
    assert get(daemon, sandbox, "never-was").error_code() == "not_found"
    assert status(daemon, sandbox, "long")["state"] == "exited"
    # The id can be used again: a new command.
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands", {"id": "short", "command": "echo again",
                                                                     "wait": True})
    assert r.status == 200 and r.json()["stdout"] == "again\n", r


def test_ttl_zero_with_wait_still_answers(daemon, sandbox):
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands",
                       {"id": "zero", "command": "echo quick", "wait": True, "ttl_seconds": 0})
    assert r.status == 200 and r.json()["stdout"] == "quick\n", r
    wait_for(lambda: get(daemon, sandbox, "zero").status == 404, what="ttl 0 expiry")
    assert get(daemon, sandbox, "zero").error_code() == "expired"


def test_output_accounting_survives_expiry(daemon):
    """Regression: a command's per-stream logs (made once it outgrows the shim's ring) were not counted
    in the shim's output total when made, so forgetting the command subtracted more than was added; the
    total wrapped around, read as a full quota, and every later command's output stopped."""
    sid = daemon.create()
    try:
        for i in range(2):
            r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                               {"id": f"big{i}", "command": "head -c 400000 /dev/zero; head -c 400000 /dev/zero >&2",
                                "wait": True, "ttl_seconds": 0})
            assert r.status == 200 and r.json()["stdout_bytes"] == 400000, r
            wait_for(lambda: get(daemon, sid, f"big{i}").status == 404, what="ttl 0 expiry")
        r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands", {"command": "echo after", "wait": True},
                           timeout=15)
        assert r.status == 200 and r.json()["stdout"] == "after\n", r
    finally:
        daemon.delete(sid)


def test_ttl_waits_for_a_slow_stream(daemon, sandbox):
    """A finished command is not forgotten under a client still reading it: a reader that stalls on 4 MiB
    of output keeps its stream attached past the ttl and still gets every byte and the exit."""
    start(daemon, sandbox, "yes | head -c 4194304", id="held", ttl_seconds=0.2)
    a = Attach(daemon, sandbox, "held")
    wait_for(lambda: status(daemon, sandbox, "held")["state"] == "exited", what="exit")
    time.sleep(1.0)  # five ttls
    assert status(daemon, sandbox, "held")["attached"] == 1
    tail = a.read_until(b"event: exit")
    assert b'"exit_code":0' in tail
    a.close()
    wait_for(lambda: get(daemon, sandbox, "held").status == 404, what="expiry after the stream")


# --- the combined log ---------------------------------------------------------------------------------

INTERLEAVED = "for i in 1 2 3; do printf o$i-; sleep 0.05; printf E$i- >&2; sleep 0.05; done; printf end"


def read_all(d, sid, cid, limit):
    cursor, chunks, pages = 0, [], 0
    while True:
        r = logs(d, sid, cid, cursor=cursor, limit=limit)
        assert r.status == 200, r
        page = r.json()
        assert page["cursor"] == cursor
        assert page["next_cursor"] - cursor == sum(len(c["data"]) for c in page["chunks"]) <= limit
        for c in page["chunks"]:
            assert c["cursor"] == cursor, (c, cursor)
            cursor += len(c["data"])
            chunks.append(c)
        pages += 1
        if page["eof"]:
            assert page["finished"] and page["next_cursor"] == page["log_bytes"]
            return chunks, pages, page
        assert page["chunks"], "no progress before eof"


def test_logs_interleaved_in_arrival_order_with_paging(daemon, sandbox):
    res = daemon.run(sandbox, INTERLEAVED, id="inter")
    assert res["stdout"] == "o1-o2-o3-end" and res["stderr"] == "E1-E2-E3-"
    chunks, pages, last = read_all(daemon, sandbox, "inter", limit=4)
    text = "".join(c["data"] for c in chunks)
    assert text == "o1-E1-o2-E2-o3-E3-end"
    assert pages == 6  # 21 bytes, 4 per page
    assert last["command"]["exit_code"] == 0 and last["log_bytes"] == 21
    # Each chunk carries its stream and its offset within that stream.
    per = {"stdout": b"", "stderr": b""}
    for c in chunks:
        assert c["offset"] == len(per[c["stream"]]), c
        per[c["stream"]] += c["data"].encode()
    assert per == {"stdout": b"o1-o2-o3-end", "stderr": b"E1-E2-E3-"}
    # A cursor in the middle of a segment.
    r = logs(daemon, sandbox, "inter", cursor=7, limit=100).json()
    assert "".join(c["data"] for c in r["chunks"]) == "o1-E1-o2-E2-o3-E3-end"[7:]
    assert r["chunks"][0] == {"stream": "stdout", "offset": 4, "cursor": 7, "data": "2-"}


def test_logs_at_the_end_and_past_it(daemon, sandbox):
    daemon.run(sandbox, "printf abc", id="tiny")
    r = logs(daemon, sandbox, "tiny", cursor=3).json()
    assert r["chunks"] == [] and r["next_cursor"] == 3 and r["eof"] is True
    r = logs(daemon, sandbox, "tiny", cursor=4)
    assert r.status == 400 and r.error_code() == "invalid_argument" and "past the end" in r.json()["error"]["message"]


def test_logs_of_a_running_command_grow(daemon, sandbox):
    start(daemon, sandbox, "printf first; exec cat", id="live", stdin_open=True)
    wait_for(lambda: logs(daemon, sandbox, "live").json()["next_cursor"] == 5, what="first output")
    page = logs(daemon, sandbox, "live", cursor=5).json()
    assert page["chunks"] == [] and page["finished"] is False and page["eof"] is False
    r = daemon.request("POST", f"/v1/sandboxes/{sandbox}/commands/live/stdin?close=true", body=b"second")
    assert r.status == 204, r
    wait_exited(daemon, sandbox, "live")
    page = logs(daemon, sandbox, "live", cursor=5).json()
    assert "".join(c["data"] for c in page["chunks"]) == "second" and page["eof"] is True


def test_logs_large_binary_output_and_raw_format(daemon, sandbox):
    n = 3 * 1024 * 1024 + 17
    daemon.run(sandbox, f"head -c {n} /dev/urandom | tee /root/out.bin >/dev/null; cat /root/out.bin; "
                        "echo tail >&2", id="big")
    want = daemon.request("GET", f"/v1/sandboxes/{sandbox}/files?path=/root/out.bin").body
    assert len(want) == n
    got, cursor = b"", 0
    while True:
        r = logs(daemon, sandbox, "big", cursor=cursor, limit=1 << 20, format="raw")
        assert r.status == 200 and r.headers["content-type"] == "application/octet-stream", r
        assert int(r.headers["sbx-cursor"]) == cursor
        got += r.body
        cursor = int(r.headers["sbx-next-cursor"])
        assert cursor == len(got)
        if r.headers["sbx-eof"] == "true":
            break
        assert r.body
    assert got == want + b"tail\n"
    assert r.headers["sbx-finished"] == "true" and r.headers["sbx-exit-code"] == "0"
    assert int(r.headers["sbx-log-bytes"]) == n + 5
    # JSON pages carry binary as base64.
    page = logs(daemon, sandbox, "big", cursor=0, limit=1000).json()
    data = b"".join(base64.b64decode(c["data"]) if c.get("encoding") == "base64" else c["data"].encode()
                    for c in page["chunks"])
    assert data == want[:1000]


@pytest.mark.parametrize("query", ["cursor=-1", "cursor=abc", "limit=0", "limit=1048577", "limit=x",
                                   "format=xml"])
def test_logs_bad_queries(daemon, sandbox, query):
    daemon.run(sandbox, "echo x", id="q")
    r = daemon.request("GET", f"/v1/sandboxes/{sandbox}/commands/q/logs?{query}")
    assert r.status == 400 and r.error_code() == "invalid_argument", (query, r)


def test_logs_unknown_command(daemon, sandbox):
    r = logs(daemon, sandbox, "nope")
    assert r.status == 404 and r.error_code() == "not_found"


def test_commands_run_as_a_user(daemon):
    """`user`: a name from the sandbox's /etc/passwd (its HOME, USER and LOGNAME with it), a UID or UID:GID;
    no supplementary groups; root by default. Unknown or malformed users are a typed 400."""
    sid = daemon.create()
    try:
        def run(user, cmd="id -u; id -g; id -G; echo $HOME $USER"):
            r = daemon.request("POST", f"/v1/sandboxes/{sid}/commands",
                               {"command": cmd, "wait": True, "user": user})
            return r
        r = run("daemon")
        assert r.status == 200, r
        assert r.json()["stdout"] == "1\n1\n1\n/usr/sbin daemon\n", r.json()
        r = run("1234:5678", "id -u; id -g; touch /tmp/mine; stat -c %u:%g /tmp/mine")
        assert r.json()["stdout"] == "1234\n5678\n1234:5678\n", r.json()
        r = run("65534", "id -u; touch /root/x 2>/dev/null || echo denied")
        assert r.json()["stdout"] == "65534\ndenied\n", r.json()
        assert daemon.run(sid, "id -u")["stdout"] == "0\n"  # the default stays root
        for bad, code in (("no-such-user", "invalid_argument"), ("70000", "invalid_argument"),
                          ("a b", "invalid_argument"), ("-x", "invalid_argument"), ("", "invalid_argument")):
            r = run(bad)
            assert r.status == 400 and r.error_code() == code, (bad, r)
    finally:
        daemon.delete(sid)


def test_cli_exec_as_a_user(daemon):
    from sbxtest import cli

    sid = daemon.create()
    try:
        p = cli(daemon, "exec", "--user", "daemon", sid, "--", "sh", "-c", "id -u; pwd")
        assert p.stdout == b"1\n/usr/sbin\n", p
        p = cli(daemon, "exec", "-u", "no-such-user", sid, "--", "true", check=False)
        assert p.returncode != 0 and b"not in the sandbox's /etc/passwd" in p.stderr, p
    finally:
        daemon.delete(sid)
