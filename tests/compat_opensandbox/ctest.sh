#!/bin/sh
# The OpenSandbox compatibility test step for CTest (`make test`): npm ci (from the committed lockfile; the
# npm cache is used first), then node's test runner on *.test.mjs, each file against its own real
# `sbxd --ephemeral` from SBX_BUILD_DIR. Runs of several build dirs at once take turns (they share
# node_modules/ in this folder).
set -eu
cd "$(dirname "$0")"
fail() {
    echo "compat_opensandbox: $*" >&2
    exit 1
}
command -v node >/dev/null 2>&1 || fail "node not found: the OpenSandbox SDK tests need Node.js 20 or later (and npm) on PATH"
command -v npm >/dev/null 2>&1 || fail "npm not found: the OpenSandbox SDK tests need npm to install the pinned \`@alibaba-group/opensandbox\` package"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || fail "Node.js $(node --version) is too old: the OpenSandbox SDK needs Node.js 20 or later"
[ -n "${SBX_BUILD_DIR:-}" ] || fail "SBX_BUILD_DIR is not set (the build dir holding bin/sbxd)"
[ -x "$SBX_BUILD_DIR/bin/sbxd" ] || fail "$SBX_BUILD_DIR/bin/sbxd not found: build sbxd first (make)"

run() {
    if ! npm ci --prefer-offline --no-audit --no-fund --loglevel=error; then
        fail "npm ci failed: it needs the npm registry, or an npm cache (~/.npm) that holds every package of package-lock.json"
    fi
    exec node --test --test-timeout=120000 ./*.test.mjs
}

if command -v flock >/dev/null 2>&1 && [ -z "${SBX_OPENSANDBOX_LOCKED:-}" ]; then
    export SBX_OPENSANDBOX_LOCKED=1
    exec flock "${TMPDIR:-/tmp}/sbx-compat-opensandbox.lock" "$PWD/ctest.sh" "$@"
fi
run
