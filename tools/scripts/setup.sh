#!/usr/bin/env bash
# tools/scripts/setup.sh, run as tools/setup.sh: install what evbus needs on
# Debian 12 and build it.
#
# Idempotent: packages already installed are left alone (checked with
# dpkg-query), and `apt-get update` runs only when something is missing.
# Then configures and builds into ./build (or $EVBUS_BUILD) with all cores.
# Runs as root, or through sudo when not root. Never reads stdin.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: tools/setup.sh [--test] [--no-build] [--help]

Installs the Debian 12 packages evbus needs (only the missing ones), then
configures and builds evbus with CMake (warnings are errors: EVBUS_WERROR).

  --test       also install what only the tests need (cmocka, clang and
               libFuzzer, network-namespace tools) and build the test suite
  --no-build   install packages only; do not configure or build
  --help       show this text

Environment:
  EVBUS_BUILD        build directory (default: build, under the repo root)
  EVBUS_CMAKE_ARGS   extra arguments for the cmake configure step
USAGE
}

build=1
test=0
for arg in "$@"; do
    case "$arg" in
    --no-build) build=0 ;;
    --test) test=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "setup: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'setup: %s\n' "$*"; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# What building and the demo need. libsnappy-dev: Debian 12's libleveldb-dev
# does not depend on it, yet its CMake package (leveldbTargets.cmake) links
# "snappy", so without it linking fails with "cannot find -lsnappy"; and
# salvage decompresses table blocks itself (store/rawtable.c, snappy-c.h). python3
# runs the demo's checks (booking_check.py). libnats-dev builds evbus-bridge
# (services/bridge/; the evbus CLI does not link it). help2man and python3
# make the man pages from the programs' --help (tools/man/; without them
# configure with -DEVBUS_MAN=OFF, and get no man pages). libsystemd-dev: the
# daemons, evbus serve and evbus mirror tell systemd they are ready, their
# status and that they live (sd_notify; services/README.md, "Running under
# systemd"; without it configure with -DEVBUS_SYSTEMD=OFF).
pkgs=(build-essential cmake pkg-config libzmq3-dev libczmq-dev libmsgpack-dev
      libleveldb-dev libsnappy-dev libmicrohttpd-dev libnats-dev libsystemd-dev python3
      help2man)
# What only the tests need (--test): cmocka for the unit tests; clang and
# libclang-rt-14-dev for libFuzzer (libclang_rt.fuzzer lives there on Debian
# 12) and the clang builds; iproute2 (network namespaces), nftables (packet
# loss) and tcpdump (captures on the bridge) for the LAN tests; dpkg-dev for
# dpkg-buildflags (CI's packager build); prometheus (its promtool checks
# the /metrics output; the test runs its own server, never the package's
# service); chromium and python3-websocket (the live bus page is driven in
# a real headless browser over its DevTools protocol, by /usr/bin/python3);
# nats-server (the bridge's tests run a 3-node JetStream cluster of their
# own); git (compat_3c467a6 builds an earlier release from the history);
# man-db (man_pages renders the built pages with `man -l`).
test_pkgs=(libcmocka-dev clang libclang-rt-14-dev iproute2 nftables tcpdump dpkg-dev
           prometheus chromium python3-websocket nats-server git man-db)
# The packaging check (CI's `package` phase, tools/scripts/package.sh):
# file (CPack's dpkg-shlibdeps step sorts the files with it) and systemd
# (systemd-analyze verifies the installed units: systemd_units and the
# package phase; nothing is started).
pkg_test_pkgs=(file systemd)
if ((test)); then pkgs+=("${test_pkgs[@]}" "${pkg_test_pkgs[@]}"); fi

missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    say "all ${#pkgs[@]} packages already installed"
else
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null; then
            echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
            exit 1
        fi
        # Ask for a password only when someone can type it.
        if [[ -t 0 ]]; then sudo=(sudo); else sudo=(sudo -n); fi
    fi
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    say "apt-get update"
    "${sudo[@]}" apt-get update -q
    say "apt-get install -y --no-install-recommends ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ((build == 0)); then
    say "--no-build: done"
    exit 0
fi

bdir=${EVBUS_BUILD:-$repo/build}
# Our own builds treat warnings as errors; a packager's build does not.
extra=(-DEVBUS_WERROR=ON)
if ((test)); then
    extra+=(-DEVBUS_TESTS=ON)
elif ! pkg-config --exists cmocka; then
    say "tests not built: libcmocka-dev is missing (tools/setup.sh --test installs it)"
    extra+=(-DEVBUS_TESTS=OFF)
fi
# shellcheck disable=SC2206 # word splitting of the extra args is intended
extra+=(${EVBUS_CMAKE_ARGS:-})
say "cmake -S $repo -B $bdir ${extra[*]}"
cmake -S "$repo" -B "$bdir" "${extra[@]}"
say "cmake --build $bdir -j$(nproc)"
cmake --build "$bdir" -j"$(nproc)"
say "built into $bdir"
