#!/bin/bash
# Benchmarks sbx against plain fork/exec, bubblewrap and crun in one run, on this machine.
#
#   bench/run.sh                      # defaults below; `make bench` runs it with BUILD=build
#   N_SPAWN=100 N_CREATE=20 N_EXEC=200 BUILD=build-files bench/run.sh
#
# Baselines (each iteration is fork + exec + wait of the tool, stdio on /dev/null):
#   fork-exec           /bin/true
#   bwrap               bwrap --unshare-all ... /bin/true (the DESIGN.md reference command)
#   crun-run            crun run of a minimal bundle (rootfs = /usr bind-mounted read-only, /bin/true)
#   crun-run-nocgroup   the same with --cgroup-manager=disabled
#   crun-exec           crun exec /bin/true into a running container of that bundle
# sbx, through its HTTP API on one keep-alive TCP connection (sbx-bench's own HTTP/1.1 client):
#   sbx-create-first-output  POST /v1/sandboxes {} → POST commands ["echo","hi"] wait → response
#   sbx-create-only          the create part of that
#   sbx-exec                 POST commands ["true"] wait, repeated on one sandbox
# once with sbxd's default warm pool (creates PACE_MS apart, so each is served from the pool) and once
# with --warm 0 (suffix -cold: every create builds its sandbox)
#
# crun 1.8 refuses hybrid cgroup hosts whose cgroup2 mount still has a controller ("cgroups in hybrid
# mode not supported, drop all controllers from cgroupv2"). Here that controller is hugetlb, so the crun
# part mounts hugetlb as its own v1 hierarchy first and unmounts it afterwards (also on exit). sbxd runs
# and is stopped before that, so it only ever sees the host as it is. Anything that cannot run is
# reported as n/a with the reason.
set -uo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N_SPAWN=${N_SPAWN:-200}
N_CREATE=${N_CREATE:-50}
N_EXEC=${N_EXEC:-500}
PACE_MS=${PACE_MS:-100}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
BENCH=$BUILD/bin/sbx-bench
SBXD=$BUILD/bin/sbxd

if [ ! -x "$BENCH" ]; then
    echo "run.sh: $BENCH is missing; build first (make BUILD=$BUILD)" >&2
    exit 1
fi

tmp=$(mktemp -d /tmp/sbx-bench-XXXXXX)
results=$tmp/results
: >"$results"
sbxd_pid=
hugetlb_mounted=
crun_exec_id=

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
    if [ -n "$sbxd_pid" ]; then
        kill -TERM "$sbxd_pid" 2>/dev/null
        wait "$sbxd_pid" 2>/dev/null
    fi
    if [ -n "$crun_exec_id" ]; then
        crun kill "$crun_exec_id" KILL >/dev/null 2>&1
        crun delete -f "$crun_exec_id" >/dev/null 2>&1
    fi
    [ -n "$hugetlb_mounted" ] && undo_hugetlb
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

result() { tee -a "$results"; }
na() { echo "RESULT $1 n/a reason=$2" | result; }

echo "# sbx bench: $(date -u +%FT%TZ), $(uname -r), $(nproc) CPUs; N_SPAWN=$N_SPAWN N_CREATE=$N_CREATE N_EXEC=$N_EXEC"

# --- plain fork/exec and bubblewrap ---------------------------------------------------------------
"$BENCH" spawn fork-exec "$N_SPAWN" /bin/true | result
if command -v bwrap >/dev/null; then
    "$BENCH" spawn bwrap "$N_SPAWN" bwrap --unshare-all --die-with-parent --ro-bind /usr /usr \
        --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
        --proc /proc --dev /dev /bin/true | result
else
    na bwrap bwrap-not-installed
fi

# --- sbx through its API (before any host change below) ---------------------------------------------
if [ -x "$SBXD" ]; then
    # Twice: with the default warm pool (creates paced by PACE_MS so it refills, as for an agent that
    # makes one sandbox at a time), and with --warm 0 (every create builds its sandbox: "-cold").
    for mode in warm cold; do
        rm -rf "$tmp/data" && mkdir -p "$tmp/data"
        if [ $mode = warm ]; then args=(); suffix=""; pace=$PACE_MS; else args=(--warm 0); suffix="-cold"; pace=0; fi
        "$SBXD" --listen "127.0.0.1:$PORT" --data-dir "$tmp/data" --ephemeral "${args[@]}" 2>"$tmp/sbxd.log" &
        sbxd_pid=$!
        if "$BENCH" health "127.0.0.1:$PORT" 15; then
            sleep 0.5 # let the warm pool fill
            "$BENCH" sbx "127.0.0.1:$PORT" "$N_CREATE" "$N_EXEC" "$pace" "$suffix" | result
        else
            na "sbx-create-first-output$suffix" sbxd-did-not-become-healthy
            na "sbx-exec$suffix" sbxd-did-not-become-healthy
            tail -5 "$tmp/sbxd.log" | sed 's/^/# sbxd: /'
        fi
        kill -TERM "$sbxd_pid" 2>/dev/null
        wait "$sbxd_pid" 2>/dev/null
        sbxd_pid=
        grep -iE "error|warn" "$tmp/sbxd.log" | tail -5 | sed 's/^/# sbxd: /'
    done
else
    na sbx-create-first-output "sbxd-not-built-($SBXD)"
    na sbx-exec "sbxd-not-built-($SBXD)"
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

if ! command -v crun >/dev/null; then
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
echo
awk '
/^RESULT/ {
    name = $2
    order[++n] = name
    if ($3 == "n/a") { na[name] = $0; sub(/^.*reason=/, "", na[name]); next }
    for (i = 3; i <= NF; i++) { split($i, kv, "="); v[name, kv[1]] = kv[2] }
}
function ratio(a, b) { return ((a, "median_ms") in v && (b, "median_ms") in v && v[b, "median_ms"] > 0) ? sprintf("%.2fx", v[a, "median_ms"] / v[b, "median_ms"]) : "n/a" }
END {
    printf "%-26s %6s %11s %11s %10s %10s %10s\n", "benchmark", "n", "median ms", "p90 ms", "/fork-exec", "/bwrap", "/crun-run"
    for (k = 1; k <= n; k++) {
        x = order[k]
        if (x in na) { printf "%-26s %6s %11s %11s   (%s)\n", x, "-", "n/a", "n/a", na[x]; continue }
        printf "%-26s %6s %11.3f %11.3f %10s %10s %10s\n", x, v[x, "n"], v[x, "median_ms"], v[x, "p90_ms"],
            ratio(x, "fork-exec"), ratio(x, "bwrap"), ratio(x, "crun-run")
    }
    if (("sbx-exec", "median_ms") in v && ("crun-exec", "median_ms") in v)
        printf "\nsbx-exec / crun-exec = %s\n", ratio("sbx-exec", "crun-exec")
}' "$results"
