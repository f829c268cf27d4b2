#!/usr/bin/env bash
# verify_units.sh: `systemd-analyze verify` on every evbus unit installed
# under a root or prefix (services/systemd/; services/README.md, "Running
# under systemd"). A unit fails on a non-zero exit or on ANY output on
# stderr: a misspelt key (ProtectSystm=) or a value systemd cannot parse is
# only a warning there, with exit code 0, and the unit then runs without
# that setting. Templates (NAME@.service) are verified as an instance,
# NAME@demo.service, so that their %i expand. ExecStart='s program must
# exist: verify after the install, not before.
#
# usage: verify_units.sh [--man] DIR...
#        verify_units.sh [--man] --install BUILD_DIR
#        verify_units.sh --self-test (DIR... | --install BUILD_DIR)
#
#   DIR         a root or prefix: its evbus*.service files in DIR,
#               DIR/lib/systemd/system, DIR/usr/lib/systemd/system,
#               DIR/usr/local/lib/systemd/system and DIR/etc/systemd/system
#               are verified (after `dpkg -i`: verify_units.sh /)
#   --install   `cmake --install BUILD_DIR` into a temporary prefix (the
#               units then name the programs installed there), verify that
#   --man       also check that the man pages of Documentation= exist
#               (man evbus-reservation.8 ...); off by default
#   --self-test also show that the check catches what it must: a copy of
#               each unit with a misspelt key must fail
#
# Exit code: 0 all verified, 1 a unit failed (or no unit was found), 2 bad
# usage, 77 systemd-analyze is not installed (apt-get install systemd).
set -uo pipefail

man=no self_test=0 build="" dirs=()
while (($#)); do
    case "$1" in
    --man) man=yes ;;
    --self-test) self_test=1 ;;
    --install)
        [[ $# -ge 2 ]] || { echo "verify_units: --install needs BUILD_DIR" >&2; exit 2; }
        build=$2
        shift ;;
    -h | --help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "verify_units: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) dirs+=("$1") ;;
    esac
    shift
done
if [[ -n "$build" && ${#dirs[@]} -gt 0 ]] || [[ -z "$build" && ${#dirs[@]} -eq 0 ]]; then
    echo "verify_units: give DIR... or --install BUILD_DIR (try --help)" >&2
    exit 2
fi
if ! command -v systemd-analyze >/dev/null; then
    echo "verify_units: systemd-analyze not found (apt-get install systemd): skipped"
    exit 77
fi

tmp=$(mktemp -d "${EVB_TEST_TMP:-${TMPDIR:-/tmp}}/verify-units.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

if [[ -n "$build" ]]; then
    echo "installing $build into $tmp/prefix"
    if ! cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1; then
        cat "$tmp/install.log"
        echo "FAIL: cmake --install $build"
        exit 1
    fi
    dirs=("$tmp/prefix")
fi

# The units under the roots, each directory once (on a merged /usr,
# /lib/systemd/system and /usr/lib/systemd/system are one).
units=()
declare -A seen=()
for d in "${dirs[@]}"; do
    for sub in "" lib/systemd/system usr/lib/systemd/system usr/local/lib/systemd/system \
               etc/systemd/system; do
        dir="$d/$sub"
        [[ -d "$dir" ]] || continue
        real=$(realpath "$dir")
        [[ -z "${seen[$real]:-}" ]] || continue
        seen[$real]=1
        for f in "$real"/evbus*.service; do
            [[ -f "$f" ]] && units+=("$f")
        done
    done
done
if ((${#units[@]} == 0)); then
    echo "FAIL: no evbus*.service under ${dirs[*]}"
    exit 1
fi

# verify FILE: 0 when systemd-analyze exits 0 and says nothing on stderr.
verify() {
    local f=$1 name path
    name=$(basename "$f")
    path=$f
    if [[ "$name" == *@.service ]]; then # a template: verify an instance of it
        name=${name%@.service}@demo.service
        mkdir -p "$tmp/instances"
        path="$tmp/instances/$name"
        ln -sf "$f" "$path"
    fi
    local out="$tmp/out" err="$tmp/err" rc=0
    systemd-analyze verify --man="$man" "$path" >"$out" 2>"$err" || rc=$?
    if ((rc != 0)) || [[ -s "$err" ]]; then
        echo "FAIL $name ($f): systemd-analyze verify exit $rc"
        sed 's/^/    /' "$err" "$out"
        return 1
    fi
    echo "ok   $name"
}

failures=0
for f in "${units[@]}"; do
    verify "$f" || failures=$((failures + 1))
done

if ((self_test)); then
    # The same check must refuse each unit with one key misspelt, though
    # systemd-analyze only warns about it and exits 0.
    mkdir -p "$tmp/broken"
    for f in "${units[@]}"; do
        b="$tmp/broken/$(basename "$f")"
        sed 's/^ProtectSystem=/ProtectSystm=/' "$f" >"$b"
        if ! grep -q '^ProtectSystm=' "$b"; then
            echo "FAIL self-test: $(basename "$f") has no ProtectSystem= to misspell"
            failures=$((failures + 1))
        elif verify "$b" >"$tmp/broken.log"; then
            echo "FAIL self-test: $(basename "$f") with ProtectSystm= passed"
            failures=$((failures + 1))
        elif ! grep -q "Unknown key 'ProtectSystm'" "$tmp/broken.log"; then
            echo "FAIL self-test: $(basename "$f") with ProtectSystm= failed for another reason:"
            cat "$tmp/broken.log"
            failures=$((failures + 1))
        else
            echo "ok   self-test: $(basename "$f") with ProtectSystm= refused"
        fi
    done
fi

if ((failures)); then
    echo "verify_units: $failures failed of ${#units[@]} units"
    exit 1
fi
echo "verify_units: ${#units[@]} units verified"
exit 0
