#!/bin/bash
# Benchmarks sbx against plain fork/exec, bubblewrap, crun and nsenter in one run, on this machine, and
# prints one table (medians, p95, same-run ratios). `make bench` builds a release binary (build-release:
# -O2, no sanitizers) and runs this with BUILD=build-release.
#
#   bench/run.sh                      # the full suite (sizes of issue 10); ~10-20 min on 2 cores
#   BENCH_QUICK=1 bench/run.sh        # small sizes: < 3 min
#   bench/run.sh --write-results      # also rewrite bench/RESULTS.md (machine, load, table, targets)
#   DENSITY_N=1000 bench/run.sh       # density up to 1000 idle sandboxes (default 200)
#   BENCH_NICE=-10 bench/run.sh       # at a higher priority than the machine's other work
#   ONLY="create stream" bench/run.sh # only some sections: baselines create concurrent exec stream files
#                                     # api density crun
#
# Sizes (env; full default / BENCH_QUICK default): N_SPAWN 200/50 baseline iterations; N_CREATE 50/20
# sequential creates; N_EXEC 500/100 exec round trips; N_CONC 100/30 clients for the staggered and burst
# runs, STAGGER_MS 20 apart; STREAM_BYTES 1 GiB/64 MiB, STREAM_N 3/1; FILE_BYTES 1 GiB/64 MiB, FILE_N 3/1;
# DENSITY_N 200/40 idle sandboxes, DENSITY_LEVELS 10,100,500,1000 (those <= DENSITY_N; quick 10,30),
# DENSITY_M 10/5 timed creates at each level; WRK_SECONDS 10/3 per wrk run.
#
# Baselines (each iteration is fork + exec + wait of the tool, stdio on /dev/null):
#   fork-exec           /bin/true
#   fork-exec-static    busybox true (a static binary: no dynamic loader)
#   bwrap               bwrap --unshare-all ... /bin/true (the DESIGN.md reference command)
#   crun-run            crun run of a minimal bundle (rootfs = /usr bind-mounted read-only, /bin/true)
#   crun-run-nocgroup   the same with --cgroup-manager=disabled
#   crun-exec           crun exec /bin/true into a running container of that bundle
#   nsenter             nsenter -a into the namespaces (user, mount, pid, net, uts, ipc) of a sleep started
#                       by unshare, /bin/true
#   pipe                the stream workload on the host, read by sbx-bench through a plain pipe
# sbx, through its HTTP API (sbx-bench's own HTTP/1.1 client, keep-alive):
#   sbx-create-first-output  POST /v1/sandboxes {} → POST commands ["echo","hi"] wait → response
#   sbx-create-only          the create part of that
#   sbx-exec                 POST commands ["true"] wait, repeated on one sandbox
#   sbx-pause, sbx-resume    POST .../pause and .../resume of that sandbox
#   ...-staggered, -burst    N_CONC clients at once (one connection each), STAGGER_MS apart or all at once
#   sbx-stream-ws/-sse       STREAM_BYTES of stdout read live over WebSocket / SSE
#   sbx-file-upload/download PUT / GET of FILE_BYTES through the files API
#   api-get-c10, -c200       wrk: GET /v1/sandboxes/{id}, keep-alive, 10 and 200 connections
#   sbx-create-first-output@L create → first output with L idle sandboxes alive; mem@L their memory
# with sbxd's default warm pool (creates PACE_MS apart, so each is served from the pool) and with
# --warm 0 (suffix -cold: every create builds its sandbox)
#
# Every result line carries load1=, the 1-minute load average when it was printed: on a shared machine
# the numbers are only comparable between runs at similar load.
#
# crun 1.8 refuses hybrid cgroup hosts whose cgroup2 mount still has a controller ("cgroups in hybrid
# mode not supported, drop all controllers from cgroupv2"). Here that controller is hugetlb, so the crun
# part mounts hugetlb as its own v1 hierarchy first and unmounts it afterwards (also on exit). sbxd runs
# and is stopped before that, so it only ever sees the host as it is. Anything that cannot run is
# reported as n/a with the reason.
set -uo pipefail

cd "$(dirname "$0")/.."
WRITE_RESULTS=
for arg in "$@"; do
    case $arg in
    --write-results) WRITE_RESULTS=1 ;;
    *)
        echo "usage: bench/run.sh [--write-results]" >&2
        exit 2
        ;;
    esac
done
BUILD=${BUILD:-build-release}
if [ -n "${BENCH_QUICK:-}" ]; then q=1; else q=; fi
pick() { if [ -n "$q" ]; then echo "$2"; else echo "$1"; fi; }
N_SPAWN=${N_SPAWN:-$(pick 200 50)}
N_CREATE=${N_CREATE:-$(pick 50 20)}
N_EXEC=${N_EXEC:-$(pick 500 100)}
N_CONC=${N_CONC:-$(pick 100 30)}
STAGGER_MS=${STAGGER_MS:-20}
STREAM_BYTES=${STREAM_BYTES:-$(pick $((1 << 30)) $((64 << 20)))}
STREAM_N=${STREAM_N:-$(pick 3 1)}
FILE_BYTES=${FILE_BYTES:-$(pick $((1 << 30)) $((64 << 20)))}
FILE_N=${FILE_N:-$(pick 3 1)}
DENSITY_N=${DENSITY_N:-$(pick 200 40)}
DENSITY_LEVELS=${DENSITY_LEVELS:-$(pick 10,100,500,1000 10,30)}
DENSITY_M=${DENSITY_M:-$(pick 10 5)}
WRK_SECONDS=${WRK_SECONDS:-$(pick 10 3)}
PACE_MS=${PACE_MS:-100}
ONLY=${ONLY:-baselines create concurrent exec stream files api density crun}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
BENCH=$BUILD/bin/sbx-bench
SBXD=$BUILD/bin/sbxd
want() { [[ " $ONLY " == *" $1 "* ]]; }
# BENCH_NICE=-10: run everything (sbxd, its shims and sandboxes, the baselines) at that nice level, to see
# the costs of sbx itself rather than the wait for a CPU on a machine shared with other work.
if [ -n "${BENCH_NICE:-}" ]; then
    renice -n "$BENCH_NICE" -p $$ >/dev/null || echo "# renice $BENCH_NICE failed; running at normal priority"
fi

if [ ! -x "$BENCH" ]; then
    echo "run.sh: $BENCH is missing; \`make bench\` builds it (BENCH_BUILD=$BUILD)" >&2
    exit 1
fi

tmp=$(mktemp -d /tmp/sbx-bench-XXXXXX)
results=$tmp/results
meta=$tmp/meta
LAST=${BENCH_LAST:-/tmp/sbx-bench-last}
: >"$results"
sbxd_pid=
hugetlb_mounted=
crun_exec_id=
ns_pid=

# Unmounts the temporary hugetlb v1 hierarchy so that hugetlb goes back to cgroup2. The kernel destroys
# a v1 hierarchy only if it has no child cgroups at umount time (a container cgroup still dying keeps it
# alive, detached, forever), so wait for those and retry once through a fresh mount if needed.
undo_hugetlb() {
    local d=/sys/fs/cgroup/hugetlb i
    for i in $(seq 50); do
        find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
        [ -z "$(find "$d" -mindepth 1 -type d 2>/dev/null)" ] && break
        sleep 0.1
    done
    umount "$d" && rmdir "$d" || return 1
    hugetlb_mounted=
    for i in $(seq 20); do
        grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers && return 0
        sleep 0.1
    done
    local m
    m=$(mktemp -d /tmp/sbx-bench-hugetlb-XXXXXX)
    mount -t cgroup -o hugetlb cgroup "$m" && {
        find "$m" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
        umount "$m"
    }
    rmdir "$m"
    sleep 0.2
    grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers || {
        echo "# WARNING: hugetlb did not return to cgroup2 (see /proc/cgroups)" >&2
        return 1
    }
}

cleanup() {
    stop_sbxd
    if [ -n "$crun_exec_id" ]; then
        crun kill "$crun_exec_id" KILL >/dev/null 2>&1
        crun delete -f "$crun_exec_id" >/dev/null 2>&1
    fi
    if [ -n "$ns_pid" ]; then
        kill -KILL "$ns_pid" 2>/dev/null
        wait "$ns_pid" 2>/dev/null
    fi
    [ -n "$hugetlb_mounted" ] && undo_hugetlb
    # The raw lines outlive the run: bench/report.py $LAST.results $LAST.meta [--write bench/RESULTS.md]
    cp "$results" "$LAST.results" 2>/dev/null && cp "$meta" "$LAST.meta" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load1() { cut -d' ' -f1 /proc/loadavg; }
# Appends load1= (the load average when the line came out) to every RESULT line, into $results.
result() {
    local line
    while IFS= read -r line; do
        [[ $line == RESULT* && $line != *" n/a "* ]] && line="$line load1=$(load1)"
        printf '%s\n' "$line" | tee -a "$results"
    done
}
na() { echo "RESULT $1 n/a reason=$2" | result; }

# Starts sbxd (extra args) on $PORT with a fresh data dir; 1 when it did not become healthy.
start_sbxd() {
    rm -rf "$tmp/data" && mkdir -p "$tmp/data"
    "$SBXD" --listen "127.0.0.1:$PORT" --data-dir "$tmp/data" --ephemeral "$@" 2>"$tmp/sbxd.log" &
    sbxd_pid=$!
    if ! "$BENCH" health "127.0.0.1:$PORT" 15; then
        tail -5 "$tmp/sbxd.log" | sed 's/^/# sbxd: /'
        stop_sbxd
        return 1
    fi
    sleep 0.5 # let the warm pool fill
}
stop_sbxd() {
    [ -n "$sbxd_pid" ] || return 0
    kill -TERM "$sbxd_pid" 2>/dev/null
    wait "$sbxd_pid" 2>/dev/null
    sbxd_pid=
    grep -iE "error|warn" "$tmp/sbxd.log" | tail -5 | sed 's/^/# sbxd: /'
}

{
    echo "date=$(date -u +%FT%TZ)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores=$(nproc)"
    echo "ram=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "debian=$(cat /etc/debian_version 2>/dev/null || echo unknown)"
    echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo +dirty)"
    echo "build=$BUILD ($(grep -m1 CMAKE_BUILD_TYPE: "$BUILD/CMakeCache.txt" 2>/dev/null | cut -d= -f2))"
    echo "mode=$([ -n "$q" ] && echo quick || echo full)${BENCH_NICE:+, nice $BENCH_NICE}"
    echo "sizes=N_SPAWN=$N_SPAWN N_CREATE=$N_CREATE N_EXEC=$N_EXEC N_CONC=$N_CONC STAGGER_MS=$STAGGER_MS STREAM_BYTES=$STREAM_BYTES STREAM_N=$STREAM_N FILE_BYTES=$FILE_BYTES FILE_N=$FILE_N DENSITY_N=$DENSITY_N DENSITY_LEVELS=$DENSITY_LEVELS DENSITY_M=$DENSITY_M WRK_SECONDS=$WRK_SECONDS"
    echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$meta"
t_start=$(date +%s)
echo "# sbx bench: $(date -u +%FT%TZ), $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $(grep mode= "$meta")"
echo "# $(grep sizes= "$meta")"

# --- plain fork/exec, bubblewrap, nsenter, a pipe --------------------------------------------------
if want baselines; then
    "$BENCH" spawn fork-exec "$N_SPAWN" /bin/true | result
    # the same with a static binary (no dynamic loader), like sbx-init
    [ -x /bin/busybox ] && "$BENCH" spawn fork-exec-static "$N_SPAWN" /bin/busybox true | result
    if command -v bwrap >/dev/null; then
        "$BENCH" spawn bwrap "$N_SPAWN" bwrap --unshare-all --die-with-parent --ro-bind /usr /usr \
            --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
            --proc /proc --dev /dev /bin/true | result
    else
        na bwrap bwrap-not-installed
    fi
    # nsenter: a long-running process in new namespaces (unshare forks it: it is PID 1 of its pid
    # namespace), entered N times to run /bin/true.
    # (--kill-child: the sleep dies with unshare, else it would outlive the run holding our stdout)
    unshare --user --map-root-user --mount --pid --uts --ipc --net --fork --kill-child --mount-proc \
        sleep 3600 </dev/null >/dev/null 2>&1 &
    ns_pid=$!
    target=
    for _ in $(seq 50); do
        target=$(awk '{print $1}' "/proc/$ns_pid/task/$ns_pid/children" 2>/dev/null)
        [ -n "$target" ] && break
        sleep 0.05
    done
    if [ -n "$target" ]; then
        "$BENCH" spawn nsenter "$N_SPAWN" nsenter -t "$target" -a /bin/true | result
    else
        na nsenter unshare-failed
    fi
    kill -KILL "$ns_pid" 2>/dev/null
    wait "$ns_pid" 2>/dev/null
    ns_pid=
fi
# the streaming baseline: the same workload as sbx-stream-*, read through a plain pipe
want stream && "$BENCH" pipe pipe "$STREAM_N" "$STREAM_BYTES" | result

# --- sbx through its API (before any host change below) ---------------------------------------------
if [ ! -x "$SBXD" ]; then
    na sbx-create-first-output "sbxd-not-built-($SBXD)"
elif want create || want concurrent || want exec || want stream || want files || want api; then
    # Twice: with the default warm pool (creates paced by PACE_MS so it refills, as for an agent that
    # makes one sandbox at a time), and with --warm 0 (every create builds its sandbox: "-cold").
    for mode in warm cold; do
        if [ $mode = warm ]; then args=(); suffix=""; pace=$PACE_MS; else args=(--warm 0); suffix="-cold"; pace=0; fi
        [ $mode = cold ] && ! want create && ! want exec && ! want concurrent && continue
        if ! start_sbxd "${args[@]}"; then
            na "sbx-create-first-output$suffix" sbxd-did-not-become-healthy
            continue
        fi
        hp=127.0.0.1:$PORT
        if want create || want exec; then
            "$BENCH" sbx "$hp" "$N_CREATE" "$N_EXEC" "$pace" "$suffix" | result
        fi
        if want concurrent; then
            if [ $mode = warm ]; then
                "$BENCH" concurrent "$hp" "$N_CONC" "$STAGGER_MS" "sbx-create-first-output-staggered$N_CONC" | result
                sleep 1
            fi
            "$BENCH" concurrent "$hp" "$N_CONC" 0 "sbx-create-first-output-burst$N_CONC$suffix" | result
            sleep 1
        fi
        if [ $mode = warm ]; then
            want stream && "$BENCH" stream "$hp" "$STREAM_BYTES" "$STREAM_N" | result
            want files && "$BENCH" files "$hp" "$FILE_BYTES" "$FILE_N" | result
            if want api && ! command -v wrk >/dev/null; then
                na api-get-c10 wrk-not-installed-see-scripts/install-deps.sh
            elif want api; then
                id=$(curl -s -XPOST "$hp/v1/sandboxes" -d '{}' |
                    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
                # wrk's own percentiles, printed as a RESULT line (latencies are in microseconds)
                cat >"$tmp/report.lua" <<'EOF'
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT %s n=%d median_ms=%.3f p90_ms=%.3f p95_ms=%.3f mean_ms=%.3f min_ms=%.3f max_ms=%.3f p99_ms=%.3f rps=%.0f errors=%d\n",
        os.getenv("WRK_NAME"), summary.requests, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(95) / 1000, latency.mean / 1000, latency.min / 1000, latency.max / 1000,
        latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6),
        e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
                for c in 10 200; do
                    WRK_NAME=api-get-c$c wrk -t2 -c$c -d"${WRK_SECONDS}s" -s "$tmp/report.lua" \
                        "http://$hp/v1/sandboxes/$id" 2>&1 | grep '^RESULT' | result
                done
            fi
        fi
        stop_sbxd
    done
fi

# --- density: idle sandboxes kept alive, memory and create latency as they pile up -------------------
if want density && [ -x "$SBXD" ]; then
    if start_sbxd --max-sandboxes $((DENSITY_N + 64)); then
        mem="python3 bench/memory.py --data-dir $tmp/data --sbxd-pid $sbxd_pid --state $tmp/mem.json"
        $mem 0 | result
        "$BENCH" density "127.0.0.1:$PORT" "$DENSITY_N" "$DENSITY_LEVELS" "$DENSITY_M" "$PACE_MS" "$mem" | result
        $mem "$DENSITY_N" | sed "s/^RESULT mem@$DENSITY_N /RESULT mem@end /" | result
        t0=$(date +%s%N)
        stop_sbxd
        echo "# density: sbxd --ephemeral destroyed its sandboxes in $((($(date +%s%N) - t0) / 1000000)) ms"
    else
        na sbx-density-fill-create sbxd-did-not-become-healthy
    fi
fi

# --- crun ---------------------------------------------------------------------------------------------
make_bundle() { # DIR ARGS-JSON
    mkdir -p "$1"
    (cd "$1" && crun spec) || return 1
    python3 - "$1/config.json" "$tmp/rootfs" "$2" <<'EOF'
import json, sys
path, rootfs, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
c = json.load(open(path))
c["root"] = {"path": rootfs, "readonly": True}
c["process"]["args"] = args
c["process"]["terminal"] = False
c["mounts"].append({"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]})
json.dump(c, open(path, "w"), indent=1)
EOF
}

crun_works() { crun "$@" run --bundle "$tmp/bundle" "sbx-bench-probe-$$" >"$tmp/crun.err" 2>&1; }

if ! want crun; then
    :
elif ! command -v crun >/dev/null; then
    for n in crun-run crun-run-nocgroup crun-exec; do na "$n" crun-not-installed; done
else
    mkdir -p "$tmp/rootfs"/{usr,proc,dev,sys,tmp}
    ln -s usr/bin "$tmp/rootfs/bin"
    ln -s usr/lib "$tmp/rootfs/lib"
    ln -s usr/lib64 "$tmp/rootfs/lib64"
    make_bundle "$tmp/bundle" '["/bin/true"]' && make_bundle "$tmp/bundle-exec" '["/bin/sleep", "3600"]'

    if ! crun_works && grep -q "hybrid mode not supported" "$tmp/crun.err" &&
        grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null &&
        [ ! -e /sys/fs/cgroup/hugetlb ]; then
        echo "# crun: hybrid cgroups with hugetlb on cgroup2; mounting hugetlb as a v1 hierarchy for the crun runs"
        if mkdir /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb; then
            hugetlb_mounted=1
        else
            rmdir /sys/fs/cgroup/hugetlb 2>/dev/null
        fi
    fi
    if crun_works; then
        "$BENCH" spawn crun-run "$N_SPAWN" crun run --bundle "$tmp/bundle" "sbx-bench-{p}-{i}" | result
    else
        na crun-run "$(head -c 120 "$tmp/crun.err" | tr ' \n' '-_')"
    fi
    if crun_works --cgroup-manager=disabled; then
        "$BENCH" spawn crun-run-nocgroup "$N_SPAWN" crun --cgroup-manager=disabled run --bundle "$tmp/bundle" \
            "sbx-bench-nocg-{p}-{i}" | result
    else
        na crun-run-nocgroup "$(head -c 120 "$tmp/crun.err" | tr ' \n' '-_')"
    fi
    crun_exec_id="sbx-bench-exec-$$"
    for mgr in "" "--cgroup-manager=disabled"; do
        # shellcheck disable=SC2086
        if crun $mgr run -d --bundle "$tmp/bundle-exec" "$crun_exec_id" >"$tmp/crun.err" 2>&1 </dev/null; then
            "$BENCH" spawn "crun-exec${mgr:+-nocgroup}" "$N_SPAWN" crun $mgr exec "$crun_exec_id" /bin/true | result
            crun $mgr kill "$crun_exec_id" KILL >/dev/null 2>&1
            sleep 0.1
            crun $mgr delete -f "$crun_exec_id" >/dev/null 2>&1
            break
        fi
    done
    grep -q "crun-exec" "$results" || na crun-exec "$(head -c 120 "$tmp/crun.err" | tr ' \n' '-_')"
    crun_exec_id=
    if [ -n "$hugetlb_mounted" ] && undo_hugetlb; then
        echo "# crun: hugetlb v1 hierarchy removed again; cgroup2 controllers: $(cat /sys/fs/cgroup/unified/cgroup.controllers)"
    fi
fi

# --- summary ------------------------------------------------------------------------------------------
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$meta"
echo "duration_s=$(($(date +%s) - t_start))" >>"$meta"
echo
python3 bench/report.py "$results" "$meta" ${WRITE_RESULTS:+--write bench/RESULTS.md}
