#!/usr/bin/python3
"""The full leak check of issue 3 §6: 1,000 create → exec → delete cycles against a real sbxd, then the
same checks as tests/e2e/test_leaks.py (no mounts, cgroups, processes, loop devices or files left; sbxd's
fd count back to its baseline) plus sbxd's RSS baseline/after, its growth per cycle and the cycle rate.

    bench/leaks.py                          # after `make`; BUILD=build by default
    BUILD=build-leak bench/leaks.py --cycles 1000 --warm 0
    bench/leaks.py --cycles 200 --warm 2 --sample 50

Each cycle is sbxtest.leak_cycle: create; a command with output on stdout and stderr, read again over SSE;
a command leaving a background child running; a 5 KiB file written and read back; a command left
running; pause, resume, metrics; delete. The
baseline is taken after --warmup cycles. sbxd runs with --ephemeral on its own data dir under /var/tmp,
which is removed at the end. Exit status: 0 if every check passed, 1 otherwise.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SBX_SOURCE_DIR", ROOT)
os.environ.setdefault("SBX_BUILD_DIR", os.path.join(ROOT, os.environ.get("BUILD", "build")))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from sbxtest import (BIN, Daemon, fd_kinds, is_sanitized, leak_cycle, leftovers,  # noqa: E402
                     processes_with_cmdline, rss_allowance_kib, rss_kib, settle_fds, sqlite_kib, wait_warm_full,
                     zombie_children)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=int(os.environ.get("SBX_LEAK_CYCLES", 1000)))
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--warm", type=int, default=None, help="sbxd --warm N (default: sbxd's default, 2)")
    ap.add_argument("--sample", type=int, default=100, help="print RSS and fds every N cycles")
    ap.add_argument("--rss-tolerance-kib", type=int, default=None,
                    help="allowed RSS growth beyond SQLite's page cache (default 512, see tests/e2e/test_leaks.py)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("leaks.py: needs root (namespaces, cgroups, mounts)")
    if not os.path.exists(os.path.join(BIN, "sbxd")):
        sys.exit(f"leaks.py: {BIN}/sbxd is missing; build first (make BUILD=...)")
    tol = args.rss_tolerance_kib if args.rss_tolerance_kib is not None else 512
    n_warm = args.warm if args.warm is not None else 2
    extra = ["--warm", str(args.warm)] if args.warm is not None else []
    token = "sbxleak" + uuid.uuid4().hex[:10]

    d = Daemon(extra_args=extra).start()
    pid = d.proc.pid
    print(f"# sbx leak bench: {time.strftime('%FT%TZ', time.gmtime())}, {os.uname().release}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; sbxd {BIN}/sbxd pid {pid}, data dir {d.data_dir}, "
          f"warm pool {n_warm}, {args.cycles} cycles after {args.warmup} warm-up")
    ids, failures, keep, rc = [], [], set(), None
    try:
        t0 = time.monotonic()
        controls = {}
        for i in range(args.warmup):
            ids.append(leak_cycle(d, i, token, controls if i == 0 else None))
        wait_warm_full(d, n_warm)
        base_fds = settle_fds(pid)
        base_rss, base_db = rss_kib(pid), sqlite_kib(d.data_dir)
        print(f"{'cycle':>7} {'RSS KiB':>9} {'fds':>5} {'db KiB':>7} {'cycles/s':>9}")
        print(f"{'base':>7} {base_rss:>9} {len(base_fds):>5} {base_db:>7} {'':>9}")
        t1 = tl = time.monotonic()
        for n in range(1, args.cycles + 1):
            ids.append(leak_cycle(d, args.warmup + n, token))
            if n % args.sample == 0 or n == args.cycles:
                now = time.monotonic()
                rate = (args.sample if n % args.sample == 0 else n % args.sample) / (now - tl)
                tl = now
                print(f"{n:>7} {rss_kib(pid):>9} {len(open_fds_quick(pid)):>5} {sqlite_kib(d.data_dir):>7} "
                      f"{rate:>9.1f}", flush=True)
        elapsed = time.monotonic() - t1
        wait_warm_full(d, n_warm)
        keep = d.warm_ids()

        def check(name, ok, detail=""):
            print(f"CHECK {name:<42} {'ok' if ok else 'FAIL'} {detail}")
            if not ok:
                failures.append(name)

        left = leftovers(d.data_dir, ids, keep_ids=keep)
        for kind in ("mounts", "cgroups", "processes", "loop_devices", "files"):
            items = left.get(kind, [])
            check(f"no {kind} left (sbxd running)", not items, f"{len(items)} {items[:5]}" if items else "")
        stray = processes_with_cmdline(token)
        check("no sandbox process outlived its box", not stray, str(stray) if stray else "")
        deadline = time.monotonic() + 5
        while zombie_children(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        z = zombie_children(pid)
        check("sbxd has no unreaped children", not z, str(z) if z else "")
        fds = settle_fds(pid, len(base_fds))
        check("sbxd fds back to baseline", len(fds) == len(base_fds),
              f"{len(base_fds)} -> {len(fds)}" + ("" if len(fds) == len(base_fds) else
                                                   f" before {fd_kinds(base_fds)} after {fd_kinds(fds)}"))
        rss, db = rss_kib(pid), sqlite_kib(d.data_dir)
        allowed = rss_allowance_kib(base_db, db, tol)
        asan = is_sanitized(pid)
        check(f"sbxd RSS growth <= {allowed} KiB" + (" (ASan: n/a)" if asan else ""),
              rss - base_rss <= allowed or asan,
              f"{base_rss} -> {rss} KiB ({rss - base_rss:+d} KiB, {(rss - base_rss) * 1024 / args.cycles:+.0f} "
              f"B/cycle); allowed = {tol} + SQLite cache of db growth {base_db} -> {db} KiB")
        summary = (f"\n{len(ids)} cycles in {time.monotonic() - t0:.1f} s; measured part: {args.cycles / elapsed:.1f} "
                   f"cycles/s, {elapsed * 1000 / args.cycles:.1f} ms/cycle; RSS {base_rss} -> {rss} KiB; "
                   f"fds {len(base_fds)} -> {len(fds)}")
    except Exception:
        traceback.print_exc()
        failures.append("exception")
        summary = f"\nstopped by an exception after {len(ids)} cycles"
    finally:
        rc = d.stop(signal.SIGTERM)
    print(f"CHECK {'sbxd exits cleanly on SIGTERM':<42} {'ok' if rc == 0 else 'FAIL'} rc={rc}")
    if rc != 0:
        failures.append("exit")
    left = leftovers(d.data_dir, ids + sorted(keep))
    print(f"CHECK {'nothing left after sbxd --ephemeral exit':<42} {'ok' if not left else 'FAIL'} "
          f"{left if left else ''}")
    if left:
        failures.append("after-exit")
    subprocess.run(["rm", "-rf", "--one-file-system", d.data_dir], check=False)
    print(summary)
    print("RESULT leaks " + ("ok" if not failures else "FAIL " + ",".join(failures)))
    return 0 if not failures else 1


def open_fds_quick(pid):
    return os.listdir(f"/proc/{pid}/fd")


if __name__ == "__main__":
    sys.exit(main())
