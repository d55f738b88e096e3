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
echo "sbxd: try 'build/bin/sbx run -- uname -a' in another shell" >&2
exec build/bin/sbxd --listen "${SBX_LISTEN:-127.0.0.1:7070}" --data-dir "${SBX_DATA_DIR:-/var/lib/sbx}"
