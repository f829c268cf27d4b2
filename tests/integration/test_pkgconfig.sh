#!/usr/bin/env bash
# test_pkgconfig.sh: install evbus into a temporary prefix and build
# examples/append_and_print.c outside the tree the way a user does, with
# pkg-config: once against the shared library, once with --static against
# libevbus.a only. Run both programs and check what they print. Also: the
# installed evbus programs start without LD_LIBRARY_PATH.
#
#   usage: test_pkgconfig.sh CMAKE BUILD_DIR SOURCE_DIR CC [EXTRA_CFLAGS...]
# EXTRA_CFLAGS: e.g. the sanitizer flags the library was built with.
set -euo pipefail

cmake_cmd=$1 bdir=$2 src=$3 cc=$4
shift 4
extra=("$@")
failures=0 passes=0
base=${EVB_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$base"
tmp=$(mktemp -d "$base/pkgconfig.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

check() { # name, command...
    local name=$1
    shift
    if "$@"; then
        echo "ok   $name"
        passes=$((passes + 1))
    else
        echo "FAIL $name"
        failures=$((failures + 1))
    fi
}

echo "installing into $tmp/prefix"
"$cmake_cmd" --install "$bdir" --prefix "$tmp/prefix" >"$tmp/install.log"
pcdir=$(dirname "$(find "$tmp/prefix" -name evbus.pc | head -n1)")
[[ -f "$pcdir/evbus.pc" ]] || { echo "FAIL: no evbus.pc installed"; exit 1; }
libdir=$(dirname "$pcdir")
export PKG_CONFIG_PATH=$pcdir

run_example() { # binary, log dir
    [[ -x "$1" ]] || { echo "  $1 was not built"; return 1; }
    local out rc=0
    out=$("$1" "$2") || rc=$?
    if ((rc != 0)); then echo "$out"; echo "  $1 exited with status $rc"; return 1; fi
    grep -q '^retry: duplicate=true seq 1\.\.2$' <<<"$out" || { echo "$out"; return 1; }
    [[ $(grep -c '^log {' <<<"$out") == 3 ]] || { echo "$out"; return 1; }
    python3 -c '
import json, sys
evs = [json.loads(l.split(" ", 1)[1]) for l in sys.stdin if l.startswith("log {")]
assert [e["seq"] for e in evs] == [1, 2, 3], evs
assert [e["stream"] for e in evs] == ["show-42", "show-42", "booking-7"], evs
assert evs[0]["payload"] == {"customer": "ann", "seats": 2}, evs[0]
' <<<"$out"
}

flags_ok() {
    pkg-config --cflags --libs evbus msgpack >"$tmp/flags" &&
        grep -q -- "-I$tmp/prefix" "$tmp/flags" ||
        { echo "  pkg-config gives: $(cat "$tmp/flags") (not under $tmp/prefix)"; return 1; }
}
check "pkg-config points into the install prefix" flags_ok

# shellcheck disable=SC2046 # pkg-config output is meant to be split
build_shared() {
    "$cc" -std=c11 -Wall -Wextra -Werror "${extra[@]}" -o "$tmp/ex_shared" \
        "$src/examples/append_and_print.c" $(pkg-config --cflags --libs evbus msgpack)
}
check "build against the shared library" build_shared
run_shared() { (export LD_LIBRARY_PATH=$libdir; run_example "$tmp/ex_shared" "$tmp/log1"); }
check "shared: runs" run_shared
# shellcheck disable=SC2046
build_service() {
    "$cc" -std=c11 -Wall -Wextra -Werror "${extra[@]}" -o "$tmp/counter_service" \
        "$src/examples/counter_service.c" $(pkg-config --cflags --libs evbus msgpack)
}
check "a service written on the runtime builds outside the tree" build_service
service_help() {
    (export LD_LIBRARY_PATH=$libdir; "$tmp/counter_service" --help | grep -q -- '--store DIR')
}
check "the service answers --help" service_help

# The installed programs find the installed libevbus.so by themselves.
installed_programs_run() {
    "$tmp/prefix/bin/evbus" --version | grep -q '^evbus ' &&
        "$tmp/prefix/bin/evbus-reservation" --help | grep -q -- '--store' ||
        { echo "  installed programs do not start without LD_LIBRARY_PATH"; return 1; }
}
check "installed evbus and evbus-reservation start (no LD_LIBRARY_PATH)" installed_programs_run

# Static: a user who installed only libevbus.a. Remove the .so so the linker
# cannot pick it, then link with what `pkg-config --static` says.
rm -f "$libdir"/libevbus.so*
# shellcheck disable=SC2046
build_static() {
    "$cc" -std=c11 -Wall -Wextra -Werror "${extra[@]}" -o "$tmp/ex_static" \
        "$src/examples/append_and_print.c" $(pkg-config --static --cflags --libs evbus msgpack)
}
check "build with pkg-config --static" build_static
not_shared() { [[ -x "$tmp/ex_static" ]] && ! readelf -d "$tmp/ex_static" | grep -q 'libevbus\.so'; }
check "static: no libevbus.so needed" not_shared
check "static: runs" run_example "$tmp/ex_static" "$tmp/log2"

echo "$passes passed, $failures failed"
((failures == 0))
