"""Faults (issue 10 §2): a full data dir, kill -9 of a shim and of a command's process group at random
moments, and 200 concurrent clients. Each asserts typed errors where something cannot be done, sbxd
staying up, no byte of output lost, and nothing leaked once the sandboxes are deleted.

kill -9 of sbxd itself mid-stream is tests/e2e/test_crash_safety.py; an exhausted memory cgroup is
tests/security/test_resources.py (OOM kill contained, with a clear record)."""
import http.client
import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time

from sbxtest import Daemon, collect, leftovers, parse_sse, processes_with_cmdline, wait_for

# Writes numbered 64-byte lines; each line number goes to a file in the sandbox *before* stdout, so after a
# kill the file says how far the writer got (stdout has that many lines, or one fewer).
PRODUCER = r"""
import os, sys, time
n = int(sys.argv[1]); pause = float(sys.argv[2])
f = open('/root/progress', 'w')
for i in range(n):
    f.write('%d\n' % i); f.flush()
    os.write(1, ('line-%08d ' % i).ljust(63, 'x').encode() + b'\n')
    if pause and i % 50 == 0:
        time.sleep(pause)
"""


def start_command(d, sid, command, **kw):
    r = d.request("POST", f"/v1/sandboxes/{sid}/commands", dict(kw, command=command))
    assert r.status in (200, 201), r
    return r.json()


def check_lines(out, n=None):
    """stdout of PRODUCER: whole, sequential lines from 0 (exactly n when given)."""
    lines = out.decode().split("\n")
    assert lines[-1] == "", ("a torn last line", lines[-1][:80])
    lines = lines[:-1]
    for i, line in enumerate(lines):
        assert line == ("line-%08d " % i).ljust(63, "x"), (i, line[:80])
    if n is not None:
        assert len(lines) == n, (len(lines), n)
    return len(lines)


def read_log(d, sid, cid):
    """The whole combined log of a finished command, page by page (raw format)."""
    got, cursor = b"", 0
    while True:
        r = d.request("GET", f"/v1/sandboxes/{sid}/commands/{cid}/logs?cursor={cursor}&limit=1048576&format=raw")
        assert r.status == 200, r
        got += r.body
        cursor = int(r.headers["sbx-next-cursor"])
        if r.headers["sbx-eof"] == "true":
            return got


def put_producer(d, sid):
    r = d.request("PUT", f"/v1/sandboxes/{sid}/files?path=/root/producer.py", body=PRODUCER.encode())
    assert r.status == 200, r


def test_full_data_dir_is_a_typed_error_and_nothing_is_lost():
    """The data dir on a 256 MiB tmpfs, filled up from the host: creates and uploads answer 507
    `no_space` (an upload is written back as it goes, so the loss is not silent after a 200) and sbxd
    stays up. A command's output has nowhere to be kept, so the shim stops reading it: the command blocks
    in write(2) instead of losing bytes, and once space is back it finishes and every byte of its output
    (far past the shim's 256 KiB memory ring) is served. Then everything works again and nothing is left
    behind."""
    top = tempfile.mkdtemp(prefix="sbx-full-", dir="/var/tmp")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", top], check=True)
    filler = os.path.join(top, "filler")
    data = os.path.join(top, "data")
    os.mkdir(data)
    d = Daemon(data_dir=data, extra_args=["--warm", "0"])
    ids = []
    try:
        d.start()
        a = d.create()
        ids.append(a)
        put_producer(d, a)
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)
        assert os.statvfs(top).f_bavail == 0, "positive control: the data dir is full"

        r = d.request("POST", "/v1/sandboxes", {})
        assert r.status == 507 and r.error_code() == "no_space", r
        assert "No space left" in r.json()["error"]["message"], r
        r = d.request("PUT", f"/v1/sandboxes/{a}/files?path=/root/big.bin", body=b"\x5a" * (12 << 20))
        assert r.status == 507 and r.error_code() == "no_space", r
        cmd = start_command(d, a, ["python3", "/root/producer.py", "10000", "0"])
        time.sleep(1.0)
        st = d.request("GET", f"/v1/sandboxes/{a}/commands/{cmd['id']}").json()
        assert st["state"] == "running" and st["stdout_bytes"] == 0, st
        assert d.request("GET", "/healthz").status == 200

        os.unlink(filler)
        res = wait_for(lambda: (lambda j: j if j["state"] == "exited" else None)(
            d.request("GET", f"/v1/sandboxes/{a}/commands/{cmd['id']}").json()), timeout=30,
            what="the blocked command to finish once space is back")
        assert res["exit_code"] == 0 and res["stdout_bytes"] == 640000, res
        out, _, exit_ev = collect(d.sse(a, cmd["id"]))
        check_lines(out, 10000)
        assert exit_ev["exit_code"] == 0
        assert read_log(d, a, cmd["id"]) == out

        b = d.create()
        ids.append(b)
        blob = os.urandom(12 << 20)
        r = d.request("PUT", f"/v1/sandboxes/{b}/files?path=/root/big.bin", body=blob)
        assert r.status == 200, r
        assert d.request("GET", f"/v1/sandboxes/{b}/files?path=/root/big.bin").body == blob
        for sid in ids:
            d.delete(sid)
        assert leftovers(data, ids) == {}
    finally:
        if os.path.exists(filler):
            os.unlink(filler)
        d.stop()
        subprocess.run(["umount", "-l", top], check=False)
        os.rmdir(top)


def shim_of(d, sid):
    state_dir = os.path.join(d.data_dir, "sandboxes", sid)
    pids = [p for p in processes_with_cmdline(state_dir)
            if b"sbx-shim" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert len(pids) == 1, pids
    return pids[0]


def stream_all(d, sid, cid, result):
    try:
        result["events"] = d.sse(sid, cid, timeout=120)
    except Exception as e:  # recorded: the main thread asserts on it
        result["error"] = repr(e)


def test_kill9_of_a_shim_at_random_moments():
    """Three sandboxes stream output; a random one's shim is killed with SIGKILL at a random moment. Its
    stream ends (never hangs), it is `failed`, its resources are cleaned up at once; the other two stream
    every byte to the end. Three rounds; then everything is deleted without a trace."""
    rng = random.Random(int(os.environ.get("SBX_FAULT_SEED", time.time())))
    with Daemon(extra_args=["--warm", "0"]) as d:
        all_ids = []
        for _ in range(3):
            ids = [d.create() for _ in range(3)]
            all_ids += ids
            for sid in ids:
                put_producer(d, sid)
            cmds = {sid: start_command(d, sid, ["python3", "/root/producer.py", "4000", "0.01"])["id"]
                    for sid in ids}
            results = {sid: {} for sid in ids}
            threads = [threading.Thread(target=stream_all, args=(d, sid, cmds[sid], results[sid])) for sid in ids]
            for t in threads:
                t.start()
            victim = rng.choice(ids)
            time.sleep(rng.uniform(0.05, 0.8))
            os.kill(shim_of(d, victim), signal.SIGKILL)
            for t in threads:
                t.join(timeout=120)
                assert not t.is_alive(), "a stream hung"
            wait_for(lambda: d.request("GET", f"/v1/sandboxes/{victim}").json()["state"] == "failed",
                     what="the victim to be failed")
            for sid in ids:
                if sid == victim:
                    continue
                assert "error" not in results[sid], results[sid]
                out, _, exit_ev = collect(results[sid]["events"])
                check_lines(out, 4000)
                assert exit_ev and exit_ev["exit_code"] == 0, exit_ev
            # The victim's stream delivered whole lines, contiguous, from 0, up to where its shim died.
            if "events" in results[victim]:
                out, _, _ = collect(results[victim]["events"])
                check_lines(out)
            left = leftovers(d.data_dir, [victim], keep_ids=[s for s in all_ids if s != victim])
            left.pop("files", None)  # its state dir stays until it is deleted
            assert left == {}, left
            assert d.request("GET", "/healthz").status == 200
        for sid in all_ids:
            d.delete(sid)
        assert leftovers(d.data_dir, all_ids) == {}


def test_kill9_of_a_command_process_group_loses_no_byte():
    """A command's whole process group is SIGKILLed (from another command, as a sandbox user can) at a
    random moment: the stream delivers every line the writer had written (the progress file says how far
    it got), the exit says signal 9, and the stored log holds the same bytes."""
    rng = random.Random(int(os.environ.get("SBX_FAULT_SEED", time.time())))
    with Daemon() as d:
        sid = d.create()
        put_producer(d, sid)
        for _ in range(4):
            cmd = start_command(d, sid, ["python3", "/root/producer.py", "100000", "0.002"])
            result = {}
            t = threading.Thread(target=stream_all, args=(d, sid, cmd["id"], result))
            t.start()
            time.sleep(rng.uniform(0.05, 1.0))
            k = d.run(sid, f"kill -9 -{cmd['pid']}")
            assert k["exit_code"] == 0, k
            t.join(timeout=60)
            assert not t.is_alive() and "error" not in result, result
            out, _, exit_ev = collect(result["events"])
            n = check_lines(out)
            progress = d.run(sid, "wc -l < /root/progress")["stdout"].strip()
            assert n in (int(progress), int(progress) - 1), (n, progress)
            assert exit_ev["signal"] in (9, "SIGKILL"), exit_ev
            assert read_log(d, sid, cmd["id"]) == out
        d.delete(sid)
        assert leftovers(d.data_dir, [sid], keep_ids=d.warm_ids()) == {}


def test_200_concurrent_clients():
    """200 clients at once for a bounded time: creating and deleting, running and streaming, uploading and
    downloading, reading state. Zero errors, every byte checked; afterwards sbxd's fds and the host are
    back to where they were."""
    seconds = float(os.environ.get("SBX_LOAD_SECONDS", "10"))
    with Daemon() as d:
        shared = [d.create() for _ in range(8)]
        base_fds = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
        stop = time.monotonic() + seconds
        errors, ops, lock = [], {"create": 0, "stream": 0, "file": 0, "read": 0}, threading.Lock()

        def note(kind, ok, what=""):
            with lock:
                if ok:
                    ops[kind] += 1
                else:
                    errors.append(f"{kind}: {what}"[:300])

        def request(conn, method, path, body=None):
            headers = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
            if isinstance(body, dict):
                body = json.dumps(body).encode()
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()

        def client(i):
            rng = random.Random(i)
            conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
            role = i % 10
            try:
                while time.monotonic() < stop:
                    if role == 0:
                        st, body = request(conn, "POST", "/v1/sandboxes", {})
                        if st != 201:
                            note("create", False, (st, body))
                            continue
                        sid = json.loads(body)["id"]
                        st, body = request(conn, "POST", f"/v1/sandboxes/{sid}/commands",
                                           {"command": ["echo", f"c{i}"], "wait": True})
                        ok = st == 200 and json.loads(body)["stdout"] == f"c{i}\n"
                        st2, _ = request(conn, "DELETE", f"/v1/sandboxes/{sid}")
                        note("create", ok and st2 == 204, (st, body[:200], st2))
                    elif role <= 4:
                        sid = rng.choice(shared)
                        n = rng.randint(1, 2000)
                        st, body = request(conn, "POST", f"/v1/sandboxes/{sid}/commands",
                                           {"command": ["sh", "-c", f"seq {n}"]})
                        if st not in (200, 201):
                            note("stream", False, (st, body))
                            continue
                        cid = json.loads(body)["id"]
                        conn.request("GET", f"/v1/sandboxes/{sid}/commands/{cid}/stream",
                                     headers={"Accept": "text/event-stream"})
                        r = conn.getresponse()
                        events = parse_sse(r.read().decode())
                        out, _, ex = collect(events)
                        want = "".join(f"{k}\n" for k in range(1, n + 1)).encode()
                        note("stream", r.status == 200 and out == want and ex and ex["exit_code"] == 0,
                             (r.status, len(out), len(want)))
                    elif role <= 7:
                        sid = rng.choice(shared)
                        blob = os.urandom(rng.randint(1, 256 << 10))
                        path = f"/root/f{i}.bin"
                        st, _ = request(conn, "PUT", f"/v1/sandboxes/{sid}/files?path={path}", blob)
                        st2, back = request(conn, "GET", f"/v1/sandboxes/{sid}/files?path={path}")
                        note("file", st == 200 and st2 == 200 and back == blob, (st, st2, len(back), len(blob)))
                    else:
                        sid = rng.choice(shared)
                        st, body = request(conn, "GET", f"/v1/sandboxes/{sid}")
                        st2, _ = request(conn, "GET", "/v1/sandboxes")
                        note("read", st == 200 and json.loads(body)["state"] == "running" and st2 == 200,
                             (st, st2))
            except Exception as e:
                note("client", False, repr(e))
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 300)
            assert not t.is_alive(), "a client hung"
        assert errors == [], (len(errors), errors[:10], ops)
        assert all(v > 0 for v in ops.values()), ops
        listed = {s["id"] for s in d.request("GET", "/v1/sandboxes").json()["sandboxes"]}
        assert listed == set(shared), listed - set(shared)
        for sid in shared:
            d.delete(sid)
        wait_for(lambda: len(os.listdir(f"/proc/{d.proc.pid}/fd")) <= base_fds, timeout=20,
                 what=f"sbxd's fds back to {base_fds}")
        print("load ops:", ops)
