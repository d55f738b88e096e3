#!/bin/sh
# The web console test step for CTest (`make test`): builds the console from web/ (npm ci from its
# lockfile, tsc, vite build) into $SBX_BUILD_DIR/console, installs playwright-core here (npm ci), then runs
# console.test.mjs: Debian's chromium, headless and kept off the network, against a real `sbxd --ephemeral`
# from SBX_BUILD_DIR. Screenshots: $SBX_WEB_OUT (default $SBX_BUILD_DIR/web-test-output). Runs that share
# this checkout take turns (they share web/node_modules and node_modules/ here).
set -eu
cd "$(dirname "$0")"
fail() {
    echo "web_console: $*" >&2
    exit 1
}
skip() {
    echo "web_console: SKIPPED: $*" >&2
    exit 77
}
CHROMIUM=${SBX_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
    # Skip only where it cannot be installed; on Debian it can: then its absence is a set-up error.
    if command -v apt-cache >/dev/null 2>&1 && apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        fail "$CHROMIUM not found: install it with scripts/install-deps.sh (apt-get install chromium)"
    fi
    skip "no $CHROMIUM and no chromium package for this system's apt: the browser tests need Debian's chromium"
fi
command -v node >/dev/null 2>&1 || fail "node not found: the console build and its tests need Node.js 20 or later (and npm)"
command -v npm >/dev/null 2>&1 || fail "npm not found: the console build and its tests need npm"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || fail "Node.js $(node --version) is too old: need 20 or later"
[ -n "${SBX_BUILD_DIR:-}" ] || fail "SBX_BUILD_DIR is not set (the build dir holding bin/sbxd)"
[ -x "$SBX_BUILD_DIR/bin/sbxd" ] || fail "$SBX_BUILD_DIR/bin/sbxd not found: build sbxd first (make)"

run() {
    npm_ci() {
        npm ci --prefer-offline --no-audit --no-fund --loglevel=error ||
            fail "npm ci failed in $PWD: it needs the npm registry, or an npm cache (~/.npm) holding package-lock.json's packages"
    }
    out="$SBX_BUILD_DIR/console"
    (cd ../../web && npm_ci && npx tsc --noEmit && npx vite build --logLevel warn --outDir "$out" --emptyOutDir) ||
        fail "building the console (web/) failed"
    npm_ci
    export SBX_WEB_OUT="${SBX_WEB_OUT:-$SBX_BUILD_DIR/web-test-output}"
    export SBX_CHROMIUM="$CHROMIUM"
    mkdir -p "$SBX_WEB_OUT"
    echo "web_console: screenshots in $SBX_WEB_OUT" >&2
    exec node --test --test-timeout=300000 ./console.test.mjs
}

if command -v flock >/dev/null 2>&1 && [ -z "${SBX_WEB_LOCKED:-}" ]; then
    export SBX_WEB_LOCKED=1
    exec flock "${TMPDIR:-/tmp}/sbx-web-console.lock" "$PWD/ctest.sh" "$@"
fi
run
