#!/bin/sh
# Installs the Debian 12 packages sbx builds, runs and tests with. Idempotent.
set -eu
PKGS="build-essential cmake pkg-config libjansson-dev libsqlite3-dev libseccomp-dev libwslay-dev
libcurl4-openssl-dev libssl-dev node-llhttp python3 python3-pytest curl bubblewrap crun iproute2 clang-format
e2fsprogs libarchive-dev busybox-static python3-websockets clang libclang-rt-14-dev"
# egress: libnftables (sbxd programs its firewall rules in-process); nftables (nft) for tests and operators
PKGS="$PKGS libnftables-dev nftables"
# registry pull tests: a real registry on loopback; htpasswd (bcrypt) for its basic auth
PKGS="$PKGS docker-registry apache2-utils"
# web console tests (tests/web): a real headless browser driven by playwright-core from npm
PKGS="$PKGS chromium"
# make bench: wrk for the API throughput part (bench/run.sh)
PKGS="$PKGS wrk"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
fi
