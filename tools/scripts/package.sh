#!/usr/bin/env bash
# tools/scripts/package.sh: build evbus's Debian packages as a packager
# would, and (--check, as root) install them, use them, and purge them.
# CI's `package` phase is `tools/scripts/package.sh --check` (.ci/run).
#
#  build: configure $EVBUS_PKG_BUILD (default build-pkg) with GCC, prefix
#     /usr, /etc, CMAKE_BUILD_TYPE=None and dpkg-buildflags' flags (as
#     dh_auto_configure does), no tests, no -Werror; build; `cpack -G DEB`
#     into $EVBUS_PKG_BUILD/deb/; show each package's size and Depends; fail
#     when an install() rule has no COMPONENT (it would be in no package).
#  --check: refuse if any evbus package is installed; `dpkg -i` every .deb
#     (missing dependencies fail: nothing is fetched); check the programs
#     have no RUNPATH and a program builds against libevbus-dev with
#     pkg-config; run `tools/demo.sh --installed` on the installed programs;
#     `systemd-analyze verify` every installed unit (a template as
#     NAME@demo.service): exit 0 and nothing on stderr. Then, in an EXIT trap
#     (also on failure or Ctrl-C): `dpkg --purge` the packages and check
#     nothing of evbus is left (dpkg -S evbus, /etc/evbus, units, state,
#     systemd links, users).
# Last line: "package: OK ..." only when everything held.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: tools/scripts/package.sh [--check] [--no-build] [--help]

  (none)      build the Debian packages into $EVBUS_PKG_BUILD/deb/ (default
              build-pkg/deb/) and show their sizes and dependencies
  --check     then install them (root), run the demo against the installed
              programs, verify the systemd units, and purge them again
  --no-build  use the packages already in $EVBUS_PKG_BUILD/deb/
  --help      show this text

Environment:
  EVBUS_PKG_BUILD       build directory (default: build-pkg, under the repo root)
  EVBUS_PKG_CMAKE_ARGS  extra configure arguments (e.g. -DEVBUS_DEB_MAINTAINER=...)
USAGE
}

check=0 build=1
for arg in "$@"; do
    case "$arg" in
    --check) check=1 ;;
    --no-build) build=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "package: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bdir=${EVBUS_PKG_BUILD:-$repo/build-pkg}
say() { printf 'package: %s\n' "$*"; }
fail() { printf 'package: FAILED: %s\n' "$*" >&2; exit 1; }

if ((build)); then
    # shellcheck disable=SC2206 # word splitting of the extra args is intended
    extra=(${EVBUS_PKG_CMAKE_ARGS:-})
    # dpkg-buildflags: -O2 -g, hardening (-fstack-protector-strong,
    # _FORTIFY_SOURCE, relro, now). CPack strips the installed binaries.
    say "configure $bdir (None + dpkg-buildflags, prefix /usr, no tests, no -Werror)"
    CC=gcc CXX=g++ \
        CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)" \
        CXXFLAGS="$(dpkg-buildflags --get CXXFLAGS) $(dpkg-buildflags --get CPPFLAGS)" \
        LDFLAGS="$(dpkg-buildflags --get LDFLAGS)" \
        cmake -S "$repo" -B "$bdir" -DCMAKE_BUILD_TYPE=None -DCMAKE_INSTALL_PREFIX=/usr \
        -DCMAKE_INSTALL_SYSCONFDIR=/etc -DCMAKE_INSTALL_LOCALSTATEDIR=/var \
        -DEVBUS_WERROR=OFF -DEVBUS_TESTS=OFF "${extra[@]}" >"$bdir.configure.log" 2>&1 ||
        { cat "$bdir.configure.log"; fail "configure"; }
    rm -f "$bdir.configure.log"
    say "build"
    cmake --build "$bdir" -j"$(nproc)" >/dev/null || cmake --build "$bdir" -j1
    # Every install() rule must name a component, or its files are in no package.
    stray=$(mktemp -d "${TMPDIR:-/tmp}/evbus-stray.XXXXXX")
    cmake --install "$bdir" --component Unspecified --prefix "$stray" >/dev/null
    left=$(find "$stray" -mindepth 1 | sed "s|^$stray||")
    rm -rf -- "$stray"
    [[ -z "$left" ]] || fail "installed without a COMPONENT (in no package): $left"
    rm -rf -- "$bdir/deb"
    say "cpack -G DEB"
    (cd "$bdir" && cpack -G DEB --config CPackConfig.cmake) >"$bdir/cpack.log" 2>&1 ||
        { cat "$bdir/cpack.log"; fail "cpack"; }
fi

mapfile -t debs < <(find "$bdir/deb" -maxdepth 1 -name '*.deb' | sort)
((${#debs[@]} > 0)) || fail "no .deb in $bdir/deb/"
pkgs=()
printf '%-16s %-10s %10s %10s  %s\n' package version installed deb Depends
for d in "${debs[@]}"; do
    name=$(dpkg-deb -f "$d" Package)
    pkgs+=("$name")
    printf '%-16s %-10s %7s KiB %6s KiB  %s\n' "$name" "$(dpkg-deb -f "$d" Version)" \
        "$(dpkg-deb -f "$d" Installed-Size)" "$(($(stat -c %s "$d") / 1024))" \
        "$(dpkg-deb -f "$d" Depends)"
    # Nothing bundled: no shared library but our own in any package.
    if dpkg-deb -c "$d" | awk '{print $6}' | grep -E '\.so(\.|$)' | grep -v '/libevbus\.so'; then
        fail "$name bundles a shared library"
    fi
    if dpkg-deb -c "$d" | awk '{print $6}' | grep -E '^\./usr/(local|etc)/'; then
        fail "$name installs under /usr/local or /usr/etc"
    fi
    # Every file under /etc is a conffile (cmake/deb_control.cmake).
    etc=$(dpkg-deb -c "$d" | awk '$1 !~ /^d/ {print $6}' | sed -n 's|^\./etc/|/etc/|p' | sort)
    conf=$( (dpkg-deb -I "$d" conffiles 2>/dev/null || true) | sort)
    [[ "$etc" == "$conf" ]] || fail "$name: files under /etc [$etc] but conffiles [$conf]"
done
if ((check == 0)); then
    say "OK ${#debs[@]} packages in $bdir/deb/"
    exit 0
fi

# ---------------------------------------------------------------- --check
[[ $(id -u) == 0 ]] || fail "--check installs packages: run as root"
already=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' '*evbus*' 2>/dev/null |
    awk '$2 != "un" && $2 != "pn"' || true)
[[ -z "$already" ]] || fail "evbus packages are already on this machine; purge them first: $already"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evbus-package.XXXXXX")
summary= # set when every check held; printed after the purge
leftovers() { # prints what is left of evbus after the purge
    dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' '*evbus*' 2>/dev/null |
        awk '$2 != "un" && $2 != "pn" {print "package " $0}' || true
    dpkg -S evbus 2>/dev/null | sed 's/^/dpkg -S: /' || true
    local p
    for p in /etc/evbus /usr/lib/systemd/system/evbus* /lib/systemd/system/evbus* \
        /etc/systemd/system/evbus* /etc/systemd/system/*/evbus* \
        /var/lib/systemd/deb-systemd-helper-enabled/evbus* \
        /var/lib/systemd/deb-systemd-helper-enabled/*/evbus* \
        /var/lib/systemd/deb-systemd-helper-masked/evbus* \
        /var/lib/evbus /var/lib/private/evbus /usr/bin/evbus* /usr/include/evbus \
        /usr/lib/*/libevbus* /usr/lib/*/pkgconfig/evbus.pc /usr/share/man/man1/evbus* \
        /usr/share/bash-completion/completions/evbus; do
        if [[ -e "$p" || -L "$p" ]]; then echo "file $p"; fi
    done
    getent passwd | grep -i evbus | sed 's/^/user /' || true
    getent group | grep -i evbus | sed 's/^/group /' || true
}
purge_all() {
    local rc=$? left
    trap - EXIT INT TERM
    say "dpkg --purge ${pkgs[*]}"
    dpkg --purge "${pkgs[@]}" >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; rc=1; }
    left=$(leftovers)
    if [[ -n "$left" ]]; then
        printf 'package: left after the purge: %s\n' "$left" >&2
        rc=1
    else
        say "purged: no evbus package, file, unit, state or user left"
    fi
    rm -rf -- "$tmp"
    if ((rc != 0)); then
        echo "package: FAILED (exit $rc)" >&2
    elif [[ -n "$summary" ]]; then
        say "OK $summary"
    fi
    exit "$rc"
}
trap purge_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "dpkg -i ${debs[*]##*/}"
dpkg -i "${debs[@]}" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "dpkg -i"; }
for p in "${pkgs[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p")
    [[ $st == "ii " ]] || fail "$p is '$st' after dpkg -i, not installed"
done

# The installed programs use the installed library, with no RUNPATH.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
for p in $(dpkg -L "${pkgs[@]}" | grep -E '^/usr/s?bin/'); do
    # (Into files first: grep -q closing the pipe early fails it under pipefail.)
    readelf -d "$p" >"$tmp/dyn"
    if grep -qE 'RUNPATH|RPATH' "$tmp/dyn"; then fail "$p has a RUNPATH"; fi
    ldd "$p" >"$tmp/ldd"
    grep -qE "libevbus\.so\.1 => (/usr)?/lib/" "$tmp/ldd" ||
        { cat "$tmp/ldd"; fail "$p does not use the installed libevbus"; }
done
say "installed programs: $(dpkg -L "${pkgs[@]}" | grep -E '^/usr/s?bin/' | xargs -n1 basename | paste -sd' ')"

# libevbus-dev: a program builds with pkg-config against /usr and runs.
if [[ " ${pkgs[*]} " == *" libevbus-dev "* ]]; then
    # shellcheck disable=SC2046 # pkg-config output is meant to be split
    gcc -std=c11 -Wall -Wextra -o "$tmp/append_and_print" "$repo/examples/append_and_print.c" \
        $(pkg-config --cflags --libs evbus msgpack) || fail "examples/append_and_print.c does not build against libevbus-dev"
    if ! "$tmp/append_and_print" "$tmp/log" >"$tmp/example.out" ||
        ! grep -q '^retry: duplicate=true' "$tmp/example.out"; then
        cat "$tmp/example.out"
        fail "append_and_print built against libevbus-dev does not run"
    fi
    say "libevbus-dev: examples/append_and_print.c builds with pkg-config and runs"
fi

say "tools/demo.sh --installed"
"$repo/tools/demo.sh" --installed >"$tmp/demo.log" 2>&1 || { cat "$tmp/demo.log"; fail "demo"; }
tail -n 1 "$tmp/demo.log"

# Every unit the packages installed: systemd-analyze verify exits 0 and
# says nothing on stderr. A template is verified as one instance.
mapfile -t units < <(dpkg -L "${pkgs[@]}" |
    grep -E '^(/usr)?/lib/systemd/system/[^/]+\.(service|socket|timer|path|target)$' | sort -u)
if ((${#units[@]} == 0)); then
    # Units are required once the source tree has any.
    tree_units=$(git -C "$repo" ls-files 2>/dev/null | grep -E '\.(service|socket|timer)(\.in)?$' || true)
    if [[ -n "$tree_units" ]]; then
        fail "the tree has systemd units but no package installs one"
    fi
    say "no systemd units in the packages"
fi
for u in "${units[@]}"; do
    name=${u##*/}
    if [[ $name == *@.* ]]; then name=${name%@.*}@demo.${name##*.}; fi
    rc=0
    systemd-analyze verify "$name" >"$tmp/verify.out" 2>"$tmp/verify.err" || rc=$?
    if ((rc != 0)) || [[ -s "$tmp/verify.err" ]]; then
        cat "$tmp/verify.out" "$tmp/verify.err"
        fail "systemd-analyze verify $name: exit $rc$([[ -s $tmp/verify.err ]] && echo ', output on stderr')"
    fi
    say "systemd-analyze verify $name: OK"
done

summary="${#pkgs[@]} packages installed, demo passed, ${#units[@]} units verified, all purged"
