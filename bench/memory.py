#!/usr/bin/python3
"""Host memory of one sbxd and its sandboxes, from /proc and the cgroup tree (bench/run.sh's density hook).

    bench/memory.py --data-dir DIR --sbxd-pid PID --state FILE LEVEL

Prints one line for bench/run.sh's summary:

    RESULT mem@LEVEL live=N sbxd_rss_kib=.. sbxd_pss_kib=.. shim_pss_kib=.. init_pss_kib=.. cgroup_kib=..
           per_sandbox_kib=.. meminfo_per_sandbox_kib=..

- sbxd_*: sbxd itself (smaps_rollup); shim_pss_kib / init_pss_kib: mean PSS of one sbx-shim (found by its
  command line naming DIR) and of its child sbx-init; cgroup_kib: mean memory charged to one sandbox's
  cgroup (memory.current or memory.usage_in_bytes: init's pages, its page cache and kernel memory).
- per_sandbox_kib: the host overhead of one idle sandbox = (sbxd PSS now - sbxd PSS at the first call)
  / live + shim PSS + cgroup memory (which already holds init's own pages).
- meminfo_per_sandbox_kib: the drop of MemAvailable since the first call, per live sandbox. System wide,
  so other work on the machine makes it noisy; a cross-check only.
The first call (LEVEL 0, before any sandbox is kept) writes the baseline to FILE.
"""
import argparse
import json
import os


def rollup(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0] in ("Rss:", "Pss:"):
                    out[parts[0][:-1].lower()] = int(parts[1])
    except OSError:
        pass
    return out


def meminfo_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def cgroup_bytes(sid):
    for path in (f"/sys/fs/cgroup/sbx/{sid}/memory.current", f"/sys/fs/cgroup/unified/sbx/{sid}/memory.current",
                 f"/sys/fs/cgroup/memory/sbx/{sid}/memory.usage_in_bytes"):
        try:
            with open(path) as f:
                return int(f.read())
        except (OSError, ValueError):
            continue
    return None


def shims(data_dir):
    """{sandbox id: (shim pid, [child pids])} of the shims whose state dir is under data_dir."""
    prefix = os.path.join(os.path.realpath(data_dir), "sandboxes") + "/"
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                if f.read().strip() != "sbx-shim":
                    continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{d}/task/{d}/children") as f:
                children = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for a in args[1:]:
            a = a.decode(errors="replace")
            if a.startswith(prefix):
                found[a[len(prefix):].split("/")[0]] = (int(d), children)
                break
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--sbxd-pid", type=int, required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("level", type=int)
    a = ap.parse_args()

    sbxd = rollup(a.sbxd_pid)
    avail = meminfo_available()
    if a.level == 0 or not os.path.exists(a.state):
        with open(a.state, "w") as f:
            json.dump({"sbxd_pss": sbxd.get("pss", 0), "avail": avail, "live": len(shims(a.data_dir))}, f)
    with open(a.state) as f:
        base = json.load(f)

    sh = shims(a.data_dir)
    shim_pss, init_pss, cg = [], [], []
    for sid, (pid, children) in sh.items():
        shim_pss.append(rollup(pid).get("pss", 0))
        init_pss.append(sum(rollup(c).get("pss", 0) for c in children))
        b = cgroup_bytes(sid)
        if b is not None:
            cg.append(b // 1024)

    def mean(v):
        return sum(v) / len(v) if v else 0.0

    live = len(sh)
    added = live - base["live"]  # sandboxes kept since the baseline (the warm pool's are in both)
    sbxd_delta = (sbxd.get("pss", 0) - base["sbxd_pss"]) / added if added > 0 else 0.0
    per = sbxd_delta + mean(shim_pss) + mean(cg)
    meminfo_per = (base["avail"] - avail) / added if added > 0 else 0.0
    print(f"RESULT mem@{a.level} live={live} sbxd_rss_kib={sbxd.get('rss', 0)} sbxd_pss_kib={sbxd.get('pss', 0)} "
          f"sbxd_pss_delta_per_sandbox_kib={sbxd_delta:.0f} shim_pss_kib={mean(shim_pss):.0f} "
          f"init_pss_kib={mean(init_pss):.0f} cgroup_kib={mean(cg):.0f} per_sandbox_kib={per:.0f} "
          f"meminfo_per_sandbox_kib={meminfo_per:.0f}", flush=True)


if __name__ == "__main__":
    main()
