"""No leaks (issue 3 §6): after N create → exec → delete cycles against a real sbxd nothing of the deleted
sandboxes is left on the host (mounts, cgroups, processes, loop devices, files) and sbxd itself is back
to where it was (open fds exactly, RSS within a tolerance).

Each cycle (sbxtest.leak_cycle): create; a command with output on both streams, read again over SSE; a
command that leaves a background child running inside; a file written and read back through the files
API; a command left running; pause, resume and metrics; delete.
N is SBX_LEAK_CYCLES (default 40 here; bench/leaks.py runs 1,000). Run with --warm 0 (every create
builds a sandbox) and with the default warm pool (creates are handed pre-built sandboxes, which must be
cleaned up exactly the same way, and the pool's refills must not leak either).

RSS tolerance: 512 KiB, plus what SQLite's page cache may hold of the database's growth since the
baseline (sbxtest.rss_allowance_kib). The baseline is taken after WARMUP cycles, so one-time allocations
(prepared statements, glibc arenas, the HTTP server's buffers) are in it. Without a leak, RSS still moves
by allocator noise (glibc keeping freed chunks) and by SQLite's page cache, which caches the pages the
cycles write: sbxd keeps each deleted sandbox as a ~0.5 KiB tombstone row for 24 h, so the database
grows with every cycle and the cache with it, up to SQLite's default cache_size of 2000 KiB. Measured
here: before tombstones, RSS (~4 MiB) moved by at most 12 KiB over 1,000 cycles and 8 KiB over 40; with
them, +492 KiB over 1,000 cycles, as much as the tombstones' pages. 512 KiB is 40 times the noise, room
for another glibc, and still fails a leak of 13 KiB per cycle at 40 cycles (an output ring, an HTTP
connection's buffers, a JSON document per cycle) and of 0.5 KiB per cycle in bench/leaks.py's 1,000.
Under ASan RSS grows with the quarantine of freed memory, so there it is only printed; LeakSanitizer's
verdict is sbxd's exit status at the end of each test.
"""
import os
import signal
import subprocess
import time
import uuid

import pytest

from sbxtest import (Daemon, fd_kinds, is_sanitized, leak_cycle, leftovers, processes_with_cmdline,
                     rss_allowance_kib, rss_kib, settle_fds, sqlite_kib, wait_for, wait_warm_full,
                     zombie_children)

CYCLES = int(os.environ.get("SBX_LEAK_CYCLES", "40"))
WARMUP = 3
RSS_TOLERANCE_KIB = 512


@pytest.mark.parametrize("warm", [0, None], ids=["warm0", "warm-default"])
def test_no_leaks_after_cycles(warm):
    token = "sbxleak" + uuid.uuid4().hex[:10]
    extra = ["--warm", str(warm)] if warm is not None else []
    n_warm = warm if warm is not None else 2  # sbxd's default pool size
    d = Daemon(extra_args=extra).start()
    ids, keep, controls = [], set(), {}
    try:
        pid = d.proc.pid
        t0 = time.monotonic()
        for i in range(WARMUP):
            ids.append(leak_cycle(d, i, token, controls if i == 0 else None))
        wait_warm_full(d, n_warm)
        base_fds = settle_fds(pid)  # in-flight closes done
        base_rss, base_db = rss_kib(pid), sqlite_kib(d.data_dir)
        for i in range(WARMUP, WARMUP + CYCLES):
            ids.append(leak_cycle(d, i, token))
        elapsed = time.monotonic() - t0
        wait_warm_full(d, n_warm)
        keep = d.warm_ids()
        assert len(keep) == n_warm, keep

        left = leftovers(d.data_dir, ids, keep_ids=keep)
        assert left == {}, f"left behind after {len(ids)} deleted sandboxes: {left}"
        assert processes_with_cmdline(token) == [], "a sandbox process outlived its sandbox"
        listed = d.request("GET", "/v1/sandboxes").json()["sandboxes"]
        assert not {s["id"] for s in listed} & set(ids), listed

        try:
            wait_for(lambda: not zombie_children(pid), timeout=5, what="sbxd to reap its children")
        except TimeoutError:
            raise AssertionError(f"sbxd does not reap its children: {zombie_children(pid)}")
        fds = settle_fds(pid, len(base_fds))
        assert len(fds) == len(base_fds), (
            f"sbxd holds {len(fds)} fds after {CYCLES} cycles, {len(base_fds)} before: "
            f"before {fd_kinds(base_fds)}, after {fd_kinds(fds)}")
        rss = rss_kib(pid)
        allowed = rss_allowance_kib(base_db, sqlite_kib(d.data_dir), RSS_TOLERANCE_KIB)
        loops = f"loop devices while live: {controls['loop_devices'] or 'none'}"
        print(f"\n{CYCLES} cycles (+{WARMUP} warm-up) warm={n_warm}: {len(ids) / elapsed:.1f} cycles/s, "
              f"RSS {base_rss} -> {rss} KiB ({rss - base_rss:+d}, allowed {allowed}), "
              f"fds {len(base_fds)} -> {len(fds)}, {loops}")
        assert rss - base_rss <= allowed or is_sanitized(pid), (
            f"sbxd's RSS grew from {base_rss} to {rss} KiB over {CYCLES} cycles")
    finally:
        rc = d.stop(signal.SIGTERM)
    # A clean exit (under ASan: LeakSanitizer found nothing), and with --ephemeral nothing at all is left,
    # the warm pool included.
    assert rc == 0, f"sbxd exited with {rc}: {d.read_log()}"
    left = leftovers(d.data_dir, ids + sorted(keep))
    assert left == {}, f"left behind after sbxd's exit: {left}"
    subprocess.run(["rm", "-rf", "--one-file-system", d.data_dir], check=False)
