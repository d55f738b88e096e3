#!/usr/bin/python3
"""Restart-reattach with N live sandboxes (issue 3 §5 "Measure"), plus pause/resume and stop/start latency.

    bench/reattach.py                       # after `make`; BUILD=build by default, N=100
    BUILD=build-leak bench/reattach.py --sandboxes 100

1. sbxd (not --ephemeral, its own data dir under /var/tmp, --warm 0, --max-sandboxes N+16) gets N
   sandboxes, each with a running command (`sleep 3600`).
2. pause/resume latency over every sandbox ("fresh").
3. kill -9 sbxd; start it again on the same data dir and measure, from the exec of the new sbxd:
   - healthz: until GET /healthz answers 200 (polled every 1 ms);
   - listed:  until GET /v1/sandboxes lists all N as running;
   - exec-all: until a command (`echo ok`, wait) has run in every sandbox, one after the other on one
     keep-alive connection (so it includes N command round trips; the per-command figure is printed too).
   It also checks that every sandbox's `sleep 3600` is still running.
4. pause/resume again ("re-attached"), then stop/start over every sandbox, each a client round trip on one
   keep-alive HTTP connection (POST .../pause etc. return once the change has taken effect).
5. Cleanup: every sandbox deleted, sbxd stopped, data dir removed. If anything fails on the way, an
   `sbxd --ephemeral` started on the data dir destroys whatever is left before the dir is removed.
"""
import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SBX_SOURCE_DIR", ROOT)
os.environ.setdefault("SBX_BUILD_DIR", os.path.join(ROOT, os.environ.get("BUILD", "build")))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from sbxtest import BIN, Daemon, free_port, host_mounts_under, processes_with_cmdline  # noqa: E402


class Client:
    """One keep-alive HTTP connection to sbxd (reconnects if sbxd closed it)."""

    def __init__(self, port):
        self.port = port
        self.c = None

    def call(self, method, path, body=None, timeout=60):
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                data = json.dumps(body).encode() if body is not None else None
                hdrs = {"Content-Type": "application/json"} if data else {}
                self.c.request(method, path, body=data, headers=hdrs)
                r = self.c.getresponse()
                raw = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, (json.loads(raw) if raw else None)
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.c:
            self.c.close()
            self.c = None


def timed(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def stats(xs):
    xs = sorted(xs)
    return {"n": len(xs), "mean": statistics.fmean(xs), "median": statistics.median(xs),
            "p90": xs[int(0.9 * (len(xs) - 1))], "max": xs[-1]}


def expect(status_body, status, what):
    st, body = status_body
    if st != status:
        raise RuntimeError(f"{what}: HTTP {st} {body}")
    return body


def start_sbxd(port, data_dir, extra, log):
    """Starts sbxd and returns (proc, t_exec): t_exec is time.monotonic() right before the exec."""
    args = [os.path.join(BIN, "sbxd"), "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir] + extra
    env = dict(os.environ)
    env.pop("SBX_API_KEY", None)
    t = time.monotonic()
    p = subprocess.Popen(args, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    return p, t


def healthz_ok(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/healthz")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


def until(cond, timeout, interval, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(interval)
    return time.monotonic()


def exec_pass(cl, ids, what):
    out = []
    for sid in ids:
        t = time.perf_counter()
        res = expect(cl.call("POST", f"/v1/sandboxes/{sid}/commands", {"command": "echo ok", "wait": True}), 200, what)
        out.append((time.perf_counter() - t) * 1000)
        if res["stdout"] != "ok\n" or res["exit_code"] != 0:
            raise RuntimeError(f"{sid}: {what}: {res}")
    return out


def latency_pairs(cl, ids, a, b, rows, label):
    ta, tb = [], []
    for sid in ids:
        ta.append(timed(lambda: expect(cl.call("POST", f"/v1/sandboxes/{sid}/{a}"), 200, a)))
        tb.append(timed(lambda: expect(cl.call("POST", f"/v1/sandboxes/{sid}/{b}"), 200, b)))
    rows.append((f"{a} ({label})", stats(ta)))
    rows.append((f"{b} ({label})", stats(tb)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sandboxes", type=int, default=100)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("reattach.py: needs root")
    if not os.path.exists(os.path.join(BIN, "sbxd")):
        sys.exit(f"reattach.py: {BIN}/sbxd is missing; build first (make BUILD=...)")
    n = args.sandboxes
    data_dir = tempfile.mkdtemp(prefix="sbx-reattach-", dir="/var/tmp")
    port = free_port()
    extra = ["--warm", "0", "--max-sandboxes", str(n + 16)]
    log = open(os.path.join(data_dir, "sbxd.log"), "ab")
    print(f"# sbx reattach bench: {time.strftime('%FT%TZ', time.gmtime())}, {os.uname().release}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {BIN}/sbxd, data dir {data_dir}, {n} sandboxes")
    proc, ids, ok = None, [], False
    try:
        proc, t0 = start_sbxd(port, data_dir, extra, log)
        t_health0 = until(lambda: healthz_ok(port), 15, 0.001, "sbxd /healthz")
        cl = Client(port)
        t = time.monotonic()
        for i in range(n):
            sid = expect(cl.call("POST", "/v1/sandboxes", {"name": f"reattach-{i}"}), 201, "create")["id"]
            ids.append(sid)
            expect(cl.call("POST", f"/v1/sandboxes/{sid}/commands", {"id": "sleeper", "command": "sleep 3600"}),
                   201, "command")
        print(f"# created {n} sandboxes with a running command in {time.monotonic() - t:.2f} s")
        rows = [("exec echo ok, wait (fresh)", stats(exec_pass(cl, ids, "command")))]
        latency_pairs(cl, ids, "pause", "resume", rows, "fresh")
        cl.close()

        proc.send_signal(signal.SIGKILL)
        proc.wait()
        shims = [p for p in processes_with_cmdline(data_dir)]
        print(f"# sbxd killed with SIGKILL; {len(shims)} processes still mention the data dir (shims)")

        proc, t_exec = start_sbxd(port, data_dir, extra, log)
        t_health = until(lambda: healthz_ok(port), 30, 0.001, "sbxd /healthz after restart")
        cl = Client(port)
        want = set(ids)

        def all_listed():
            st, body = cl.call("GET", "/v1/sandboxes")
            return st == 200 and want <= {s["id"] for s in body["sandboxes"] if s["state"] == "running"}

        t_listed = until(all_listed, 60, 0.001, f"all {n} sandboxes listed as running")
        per_cmd = exec_pass(cl, ids, "command after restart")
        t_exec_all = time.monotonic()
        rows.append(("exec echo ok, wait (1st after restart)", stats(per_cmd)))
        rows.append(("exec echo ok, wait (2nd after restart)", stats(exec_pass(cl, ids, "2nd command"))))
        still = sum(expect(cl.call("GET", f"/v1/sandboxes/{sid}/commands/sleeper"), 200, "get")["state"] == "running"
                    for sid in ids)
        with open(f"/proc/{proc.pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

        latency_pairs(cl, ids, "pause", "resume", rows, "re-attached")
        latency_pairs(cl, ids, "stop", "start", rows, "re-attached")
        # start gives a new init: a command works again
        for sid in ids[:: max(1, n // 10)]:
            res = expect(cl.call("POST", f"/v1/sandboxes/{sid}/commands", {"command": "echo ok", "wait": True}),
                         200, "command after start")
            assert res["stdout"] == "ok\n", res
        dels = []
        for sid in list(ids):
            dels.append(timed(lambda: expect(cl.call("DELETE", f"/v1/sandboxes/{sid}"), 204, "delete")))
            ids.remove(sid)
        rows.append(("delete", stats(dels)))
        cl.close()

        print(f"\nrestart with {n} live sandboxes (from the exec of the new sbxd; sbxd RSS after: {rss} KiB)")
        print(f"{'milestone':<44} {'ms':>9}")
        print(f"{'/healthz answers (empty data dir: %.1f)' % ((t_health0 - t0) * 1000):<44} "
              f"{(t_health - t_exec) * 1000:>9.1f}")
        print(f"{f'GET /v1/sandboxes lists all {n} running':<44} {(t_listed - t_exec) * 1000:>9.1f}")
        print(f"{f'a command has run in each of the {n}':<44} {(t_exec_all - t_exec) * 1000:>9.1f}")
        s = stats(per_cmd)
        print(f"{'  (per command, sequential, keep-alive)':<44} {s['mean']:>9.2f}   median {s['median']:.2f}, "
              f"max {s['max']:.2f}")
        print(f"{'sleep 3600 still running after the restart':<44} {still:>6}/{n}")
        print(f"\n{'operation (client round trip, ms)':<40} {'n':>4} {'mean':>8} {'median':>8} {'p90':>8} {'max':>8}")
        for name, s in rows:
            print(f"{name:<40} {s['n']:>4} {s['mean']:>8.2f} {s['median']:>8.2f} {s['p90']:>8.2f} {s['max']:>8.2f}")
        ok = still == n
    finally:
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        if ids or host_mounts_under(data_dir) or processes_with_cmdline(data_dir):
            print(f"# cleaning up {len(ids)} sandboxes left (ephemeral sbxd on the data dir)", file=sys.stderr)
            with Daemon(data_dir=data_dir, extra_args=["--warm", "0", "--max-sandboxes", str(n + 16)]):
                pass
        log.close()
        left = (host_mounts_under(data_dir), processes_with_cmdline(data_dir))
        if any(left):
            print(f"# WARNING: left behind: {left}", file=sys.stderr)
            ok = False
        subprocess.run(["rm", "-rf", "--one-file-system", data_dir], check=False)
    print("RESULT reattach " + ("ok" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
