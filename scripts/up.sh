#!/bin/sh
# Sets up and runs sbx on a fresh Debian 12 machine: installs the Debian packages it needs, builds it,
# and runs sbxd in the foreground on 127.0.0.1:7070 with its state in /var/lib/sbx.
# Environment: SBX_LISTEN (default 127.0.0.1:7070), SBX_DATA_DIR (default /var/lib/sbx), SBX_API_KEY.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "sbx needs root (namespaces, mounts, cgroups): run with sudo" >&2
    exit 1
fi
scripts/install-deps.sh
make
# The web console (web/, served by sbxd at /console/) is built into build/console when Node.js 20+ and npm
# are present; sbxd runs fine without it.
if command -v npm >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -ge 20 ]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error && npx vite build --logLevel warn --outDir ../build/console --emptyOutDir) ||
        echo "sbx: building the web console failed; sbxd runs without it" >&2
else
    echo "sbx: no Node.js 20+ and npm: the web console (/console/) is not built" >&2
fi
echo "sbxd: try 'build/bin/sbx run -- uname -a' in another shell, or open http://${SBX_LISTEN:-127.0.0.1:7070}/console/" >&2
exec build/bin/sbxd --listen "${SBX_LISTEN:-127.0.0.1:7070}" --data-dir "${SBX_DATA_DIR:-/var/lib/sbx}"
