#!/usr/bin/env bash
# tools/setup.sh: install what evbus needs on Debian 12 and build it.
#
# Idempotent: packages already installed are left alone (checked with
# dpkg-query), and `apt-get update` runs only when something is missing.
# Then configures and builds into ./build (or $EVBUS_BUILD) with all cores.
# Runs as root, or through sudo when not root. Never reads stdin.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: tools/setup.sh [--no-build] [--help]

Installs the Debian 12 packages evbus needs (only the missing ones), then
configures and builds evbus with CMake.

  --no-build   install packages only; do not configure or build
  --help       show this text

Environment:
  EVBUS_BUILD        build directory (default: build, under the repo root)
  EVBUS_CMAKE_ARGS   extra arguments for the cmake configure step
USAGE
}

build=1
for arg in "$@"; do
    case "$arg" in
    --no-build) build=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "setup: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'setup: %s\n' "$*"; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# build-essential .. libcmocka-dev build and test the library. libsnappy-dev:
# Debian 12's libleveldb-dev does not depend on it, yet its CMake package
# (leveldbTargets.cmake) links "snappy", so without it linking fails with
# "cannot find -lsnappy". python3 runs
# the CLI test; clang + libclang-rt-14-dev give libFuzzer (libclang_rt.fuzzer
# lives in libclang-rt-14-dev on Debian 12); iproute2 and tmux serve the LAN
# tests and the services demo; nftables (packet loss) and tcpdump (captures on
# the bridge) serve the LAN tests.
pkgs=(build-essential cmake pkg-config libzmq3-dev libczmq-dev libmsgpack-dev
      libleveldb-dev libsnappy-dev libcmocka-dev python3 clang libclang-rt-14-dev iproute2 tmux
      nftables tcpdump)

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
# shellcheck disable=SC2206 # word splitting of the extra args is intended
extra=(${EVBUS_CMAKE_ARGS:-})
say "cmake -S $repo -B $bdir ${extra[*]}"
cmake -S "$repo" -B "$bdir" "${extra[@]}"
say "cmake --build $bdir -j$(nproc)"
cmake --build "$bdir" -j"$(nproc)"
say "built into $bdir"
