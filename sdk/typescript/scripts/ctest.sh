#!/bin/sh
# The SDK's test step for CTest (`make test`): npm ci (from the lockfile; the npm cache is used first),
# build (ESM + CJS + .d.ts), compile the tests, run them with node's test runner against a real
# `sbxd --ephemeral` from SBX_BUILD_DIR. Runs of several build dirs at once take turns (they share
# node_modules/ and dist/ in this folder).
set -eu
cd "$(dirname "$0")/.."
fail() {
    echo "sdk/typescript: $*" >&2
    exit 1
}
command -v node >/dev/null 2>&1 || fail "node not found: the TypeScript SDK needs Node.js 20 or later (and npm) on PATH"
command -v npm >/dev/null 2>&1 || fail "npm not found: the TypeScript SDK's tests need npm to install typescript and ws"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || fail "Node.js $(node --version) is too old: the TypeScript SDK needs Node.js 20 or later"
[ -n "${SBX_BUILD_DIR:-}" ] || fail "SBX_BUILD_DIR is not set (the build dir holding bin/sbxd)"

run() {
    if ! npm ci --prefer-offline --no-audit --no-fund --loglevel=error; then
        fail "npm ci failed: it needs the npm registry, or an npm cache (~/.npm) that holds every package of package-lock.json"
    fi
    npm run --silent build || fail "build failed (tsc)"
    npm run --silent build:test || fail "compiling the tests failed (tsc)"
    node scripts/run-tests.mjs
}

if command -v flock >/dev/null 2>&1 && [ -z "${SBX_TS_LOCKED:-}" ]; then
    export SBX_TS_LOCKED=1
    exec flock "${TMPDIR:-/tmp}/sbx-sdk-typescript.lock" "$0" "$@"
fi
run
