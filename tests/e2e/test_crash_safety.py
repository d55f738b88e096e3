"""Crash safety (issue 3 §5): `kill -9` of sbxd while a client streams a command's output over SSE. The
command keeps producing while no daemon runs; sbxd restarts on the same data dir and re-attaches; the
client reconnects from its last offsets and, over both connections, receives every byte of stdout and
stderr exactly once (no gap, no overlap: each chunk must start exactly where the client's copy ends),
including bytes that left the shim's in-memory ring (256 KiB) for its on-disk log meanwhile. Commands
that ended while sbxd was down report their exit code (or signal) and their output.

test_lifecycle.py::test_sandboxes_survive_sbxd_kill9 covers the simpler case (kill between streams).
"""
import http.client
import json
import os
import signal
import subprocess
import tempfile
import threading
import time

from sbxtest import Daemon, chunk_bytes, collect, leftovers, processes_with_cmdline, wait_for, wait_warm_full

LINES = 7000          # 7000 lines of 80 bytes: 560,000 bytes of stdout, past the shim's 256 KiB ring
STDERR_EVERY = 7      # and one stderr line per 7 stdout lines
RING = 256 << 10
# Slow for lines 0-999 (~1 s: sbxd is killed in there), a burst for 1000-4999 (while sbxd is down: the
# client's offset falls out of the ring, so the rest must come from the shim's on-disk log), slow again
# for 5000-6999 (~2 s: still producing when the client is back).
PRODUCER = f"""
import sys, time
for i in range({LINES}):
    sys.stdout.write(("out-%06d " % i).ljust(79, "x") + "\\n"); sys.stdout.flush()
    if i % {STDERR_EVERY} == 0:
        sys.stderr.write("err-%06d\\n" % i); sys.stderr.flush()
    if i % 10 == 9 and not 1000 <= i < 5000:
        time.sleep(0.01)
"""
EXPECTED_OUT = b"".join((("out-%06d " % i).ljust(79, "x") + "\n").encode() for i in range(LINES))
EXPECTED_ERR = b"".join(("err-%06d\n" % i).encode() for i in range(0, LINES, STDERR_EVERY))


class Follower:
    """An SSE client that keeps what it received per stream and reconnects from its offsets. Only
    complete events count (a connection cut mid-event loses that event, which the next connection must
    then send again). Every chunk must begin exactly at the client's current length: anything else is
    recorded in `problems` (a duplicate or a gap) instead of being patched over."""

    def __init__(self, sid, cid):
        self.sid, self.cid = sid, cid
        self.data = {"stdout": b"", "stderr": b""}
        self.exit = None
        self.problems = []
        self.connections = 0
        self.ended_by = []

    def follow(self, port, timeout=60):
        """One connection: reads events until the exit event or until the connection breaks."""
        self.connections += 1
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            c.request("GET", f"/v1/sandboxes/{self.sid}/commands/{self.cid}/stream"
                      f"?stdout_offset={len(self.data['stdout'])}&stderr_offset={len(self.data['stderr'])}",
                      headers={"Accept": "text/event-stream"})
            r = c.getresponse()
            if r.status != 200:
                self.ended_by.append(f"status {r.status}")
                return
            ev, data = "message", []
            while True:
                line = r.readline()
                if not line.endswith(b"\n"):  # EOF, possibly mid-line
                    self.ended_by.append("eof")
                    return
                line = line.rstrip(b"\r\n").decode()
                if line:
                    if line.startswith(":"):
                        continue
                    k, _, v = line.partition(":")
                    v = v[1:] if v.startswith(" ") else v
                    if k == "event":
                        ev = v
                    elif k == "data":
                        data.append(v)
                    continue
                if data:
                    self.event(ev, json.loads("\n".join(data)))
                    if self.exit is not None:
                        self.ended_by.append("exit")
                        return
                ev, data = "message", []
        except (OSError, http.client.HTTPException) as e:
            self.ended_by.append(type(e).__name__)
        finally:
            c.close()

    def event(self, name, ev):
        if name == "output":
            s, b = ev["stream"], chunk_bytes(ev)
            have = len(self.data[s])
            if ev["offset"] != have:
                self.problems.append(f"{s}: chunk at offset {ev['offset']} ({len(b)} bytes) while holding {have}")
                return
            self.data[s] += b
        elif name == "exit":
            if self.exit is not None:
                self.problems.append("a second exit event")
            self.exit = ev


def iso(t):
    """A time.time() as the API's timestamps ("2026-12-04T16:10:44.450Z"), comparable as strings."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int(t % 1 * 1000)


def iso_parse(s):
    import calendar
    return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + s[19:-1])


def restart(d, data_dir):
    d2 = Daemon(ephemeral=False, data_dir=data_dir)
    d2.port = d.port
    return d2.start()


def cleanup_data_dir(data_dir):
    """Whatever a failed test left: an ephemeral sbxd on the same data dir recovers every sandbox and
    destroys them on SIGTERM; then the dir goes, unless mounts or loop devices are still there (a leak:
    the dir and its logs stay for a post-mortem, and the leftovers are returned)."""
    try:
        # --warm 0: a SIGTERM while the warm pool is being filled can orphan a half-built sandbox.
        Daemon(ephemeral=True, data_dir=data_dir, extra_args=["--warm", "0"]).start().stop()
    finally:
        left = leftovers(data_dir, [])
        left.pop("files", None)
        if not left:
            subprocess.run(["rm", "-rf", "--one-file-system", data_dir], check=False)
    return left


def test_stream_survives_kill9_exactly_once():
    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-crash-", dir="/var/tmp")
    d = Daemon(ephemeral=False, data_dir=data_dir, extra_args=["--warm", "0"]).start()
    d2 = None
    try:
        sid = d.create(name="crashy")
        r = d.request("POST", f"/v1/sandboxes/{sid}/commands",
                      {"id": "producer", "command": ["python3", "-c", PRODUCER]})
        assert r.status == 201, r
        f = Follower(sid, "producer")
        t = threading.Thread(target=f.follow, args=(d.port,), daemon=True)
        t.start()
        wait_for(lambda: len(f.data["stdout"]) >= 32 << 10, timeout=30, what="32 KiB streamed")

        # Commands that end while sbxd is down: an exit code, a signal, output from both. Their shell's argv
        # carries a marker for the host to see them end.
        marker = f"sbxcrash{os.getpid()}x{int(time.time() * 1000)}"
        for cid, cmd in (("exits-7", f": {marker}; sleep 0.3; echo bye; echo bye-err >&2; exit 7"),
                         ("signalled", f": {marker}; sleep 0.3; kill -TERM $$")):
            r = d.request("POST", f"/v1/sandboxes/{sid}/commands", {"id": cid, "command": cmd})
            assert r.status == 201, r
        killed_at = time.time()
        d.stop(signal.SIGKILL)
        t.join(timeout=10)
        assert not t.is_alive(), "the client did not notice sbxd's death"
        got_before = {s: len(b) for s, b in f.data.items()}
        assert f.exit is None and 0 < got_before["stdout"] < len(EXPECTED_OUT), got_before
        # The producer goes on and the short commands end while no daemon is there. Wait (on the host,
        # through the shim's output log) until the client's offset has left the 256 KiB ring.
        log = os.path.join(data_dir, "sandboxes", sid, "logs", "producer.stdout")
        wait_for(lambda: os.path.exists(log) and os.path.getsize(log) >= got_before["stdout"] + RING + 8192,
                 timeout=30, what="the producer to write past the ring while sbxd is down")
        wait_for(lambda: not processes_with_cmdline(marker), timeout=30, what="the short commands to end")

        d2 = restart(d, data_dir)
        restarted_at = time.time()
        assert d2.request("GET", f"/v1/sandboxes/{sid}").json()["state"] == "running"
        f.follow(d2.port)
        assert f.exit is not None, f"no exit event after the reconnect: {f.ended_by}"
        assert f.problems == [], f.problems
        assert f.connections == 2, f.ended_by
        # The output arrived whole: compare the concatenation of both connections with what was written.
        assert len(f.data["stdout"]) == len(EXPECTED_OUT), (len(f.data["stdout"]), len(EXPECTED_OUT))
        assert f.data["stdout"] == EXPECTED_OUT
        assert f.data["stderr"] == EXPECTED_ERR
        assert f.exit["exit_code"] == 0 and f.exit["state"] == "exited", f.exit
        assert f.exit["finished_at"] > iso(restarted_at), "positive control: the producer ran on after the restart"
        assert f.exit["stdout_bytes"] == len(EXPECTED_OUT) and f.exit["stderr_bytes"] == len(EXPECTED_ERR), f.exit

        # A fresh stream from offset 0 (served from the on-disk log) gives the same bytes once more.
        out, err, ex = collect(d2.sse(sid, "producer"))
        assert (out, err) == (EXPECTED_OUT, EXPECTED_ERR)

        c7 = d2.request("GET", f"/v1/sandboxes/{sid}/commands/exits-7").json()
        assert (c7["state"], c7["exit_code"], c7["signal"]) == ("exited", 7, None), c7
        assert killed_at < iso_parse(c7["finished_at"]) < restarted_at, "positive control: it ended while down"
        cs = d2.request("GET", f"/v1/sandboxes/{sid}/commands/signalled").json()
        assert (cs["state"], cs["exit_code"], cs["signal"]) == ("exited", 128 + 15, 15), cs
        out, err, ex = collect(d2.sse(sid, "exits-7"))
        assert (out, err, ex["exit_code"]) == (b"bye\n", b"bye-err\n", 7)
        print(f"\nkill -9 after {got_before} bytes; down {restarted_at - killed_at:.2f} s; "
              f"ended by {f.ended_by}; {len(EXPECTED_OUT)} + {len(EXPECTED_ERR)} bytes exactly once")
        listed = {c["id"]: c for c in d2.request("GET", f"/v1/sandboxes/{sid}/commands").json()["commands"]}
        assert {"producer", "exits-7", "signalled"} <= set(listed), listed
        assert d2.run(sid, "echo after")["stdout"] == "after\n"
        d2.delete(sid)
        assert d2.stop() == 0
        left = leftovers(data_dir, [sid])
        assert left == {}, f"left after sbxd's exit (data dir {data_dir} kept): {left}"
    finally:
        for x in (d, d2):
            if x:
                x.stop()
        left = cleanup_data_dir(data_dir)
    assert not left, f"left behind even after an ephemeral sbxd's cleanup (data dir {data_dir} kept): {left}"


def _shim_of(data_dir, sid):
    state_dir = os.path.join(data_dir, "sandboxes", sid)
    return [p for p in processes_with_cmdline(state_dir)
            if open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0].endswith(b"sbx-shim")]


def test_restart_reconciles_state_and_reality():
    """kill -9 sbxd with the warm pool full, a live sandbox, and a sandbox whose shim is then killed while
    no daemon runs. The restarted sbxd keeps the live one (its command still running), discards the old
    warm sandboxes, and finds the one without a shim dead: not running, with nothing of it left running
    or mounted (its files kept). Nothing of any of them is left once they are deleted."""
    data_dir = tempfile.mkdtemp(prefix="sbx-e2e-reconcile-", dir="/var/tmp")
    d = Daemon(ephemeral=False, data_dir=data_dir).start()
    d2 = None
    try:
        live = d.create(name="live")
        r = d.request("POST", f"/v1/sandboxes/{live}/commands", {"id": "sleeper", "command": "sleep 600"})
        assert r.status == 201, r
        dead = d.create(name="dead")
        assert d.request("PUT", f"/v1/sandboxes/{dead}/files?path=/root/keep.txt", body=b"kept").status == 200
        wait_warm_full(d, 2)
        old_warm = d.warm_ids()
        d.stop(signal.SIGKILL)

        shim = _shim_of(data_dir, dead)
        assert len(shim) == 1, shim
        os.kill(shim[0], signal.SIGKILL)
        wait_for(lambda: not _shim_of(data_dir, dead), what="the shim to die")

        d2 = restart(d, data_dir)
        wait_warm_full(d2, 2)
        new_warm = d2.warm_ids()
        assert not new_warm & old_warm
        assert d2.request("GET", f"/v1/sandboxes/{live}").json()["state"] == "running"
        assert d2.request("GET", f"/v1/sandboxes/{live}/commands/sleeper").json()["state"] == "running"
        got = d2.request("GET", f"/v1/sandboxes/{dead}").json()
        assert got["state"] not in ("running", "paused", "creating"), got
        r = d2.request("POST", f"/v1/sandboxes/{dead}/commands", {"command": "true", "wait": True})
        assert r.status == 409 and r.error_code() == "not_running", r
        listed = {s["id"] for s in d2.request("GET", "/v1/sandboxes").json()["sandboxes"]}
        assert listed == {live, dead}, listed  # no ghost rows, no warm sandbox listed
        # The old warm sandboxes are gone entirely; of the dead one only its files are left.
        assert leftovers(data_dir, old_warm, keep_ids=new_warm | {live, dead}) == {}
        left = leftovers(data_dir, [dead], keep_ids=new_warm | {live})
        assert set(left) == {"files"}, left
        assert d2.request("POST", f"/v1/sandboxes/{dead}/start").status == 200
        assert d2.run(dead, "cat /root/keep.txt")["stdout"] == "kept"
        d2.delete(live)
        d2.delete(dead)
        assert leftovers(data_dir, [live, dead] + sorted(old_warm), keep_ids=new_warm) == {}
        assert d2.stop() == 0
        left = leftovers(data_dir, [live, dead] + sorted(old_warm | new_warm))
        assert left == {}, f"left after sbxd's exit (data dir {data_dir} kept): {left}"
    finally:
        for x in (d, d2):
            if x:
                x.stop()
        left = cleanup_data_dir(data_dir)
    assert not left, f"left behind even after an ephemeral sbxd's cleanup (data dir {data_dir} kept): {left}"
