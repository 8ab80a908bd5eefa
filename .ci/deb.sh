#!/usr/bin/env bash
# .ci/deb.sh — the Debian packages: build libasync0 and libasync-dev with
# `dpkg-buildpackage -b -us -uc` from a copy of the working tree (the .debs
# land next to the copy, not next to this tree), check them with lintian
# (errors fail), install them with dpkg -i, compile and run the README's
# example against them with plain `pkg-config`, no paths set, check that gdb
# auto-loads the gdb script with the library, and remove them
# again so the machine is left as it was. The packaging runs no test suite
# (DEB_BUILD_OPTIONS=nocheck; debian/rules skips dh_auto_test anyway).
#
# Needs root for dpkg -i (CI runs as root) and the build dependencies of
# debian/control plus lintian (.ci/run installs them). Ends with
# "N passed, M failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

tmp=$(mktemp -d) || exit 1
installed=0
cleanup() {
    if [ "$installed" -eq 1 ]; then
        dpkg -r libasync0-dbgsym libasync-dev libasync0 >/dev/null || echo "deb: could not remove the packages" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
passed=0
failed=0
pass() { echo "deb: $1: ok"; passed=$((passed + 1)); }
fail() { echo "deb: $1: FAILED"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

if dpkg-query -W -f='${Status}' libasync0 2>/dev/null | grep -q 'install ok installed'; then
    echo "deb: libasync0 is already installed; not touching it" >&2
    fail "clean machine"
    finish
fi

# The tree as it is (committed or not), without build directories.
mkdir -p "$tmp/src"
tar --exclude='./build*' --exclude='./.git' --exclude='./obj-*' -cf - . | tar -C "$tmp/src" -xf -

if (cd "$tmp/src" && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -b -us -uc) >"$tmp/build.log" 2>&1; then
    pass "dpkg-buildpackage"
else
    tail -n 60 "$tmp/build.log"
    fail "dpkg-buildpackage"
    finish
fi
grep -E 'dpkg-gensymbols: warning' -A30 "$tmp/build.log" | head -n 40

debs=("$tmp"/libasync0_*.deb "$tmp"/libasync-dev_*.deb)
for deb in "${debs[@]}"; do
    echo "deb: $(basename "$deb"): $(dpkg-deb -c "$deb" | wc -l) entries"
done

if command -v lintian >/dev/null 2>&1; then
    if lintian --fail-on error "$tmp"/*.changes >"$tmp/lintian.log" 2>&1; then
        pass "lintian (no errors)"
    else
        fail "lintian"
    fi
    sed 's/^/    /' "$tmp/lintian.log"
else
    fail "lintian (not installed)"
fi

if dpkg -i "${debs[@]}" >"$tmp/dpkg.log" 2>&1; then
    installed=1
    pass "dpkg -i"
else
    cat "$tmp/dpkg.log"
    fail "dpkg -i"
    finish
fi

# The README's example, compiled exactly as the README says.
awk '/^```c$/ { on = 1; next } on && /^```$/ { exit } on' README.md >"$tmp/app.c"
if (cd "$tmp" && cc -std=c11 app.c $(pkg-config --cflags --libs async) -o app) &&
    "$tmp/app" | tee "$tmp/app.out" && grep -qx Done "$tmp/app.out"; then
    pass "README example against the packages"
else
    fail "README example against the packages"
fi

# gdb auto-loads the package's script with the library: `async tasks` works
# in a program linked against it with nothing sourced by hand, once the
# library's debug information (libasync0-dbgsym, which dh_strip makes) is
# there too.
dbgsym=("$tmp"/libasync0-dbgsym_*.deb)
if [ -f "${dbgsym[0]}" ] && dpkg -i "${dbgsym[@]}" >"$tmp/dpkg-dbgsym.log" 2>&1; then
    pass "dpkg -i libasync0-dbgsym"
else
    cat "$tmp/dpkg-dbgsym.log" 2>/dev/null
    fail "dpkg -i libasync0-dbgsym"
fi
if gdb -nx -batch -ex start -ex 'async tasks' "$tmp/app" >"$tmp/gdb.out" 2>&1 &&
    grep -Eq '^libasync: [0-9]+ tasks$' "$tmp/gdb.out"; then
    pass "gdb auto-loads libasync-gdb.py"
else
    sed 's/^/    /' "$tmp/gdb.out"
    fail "gdb auto-loads libasync-gdb.py"
fi

if man -w future_get >/dev/null 2>&1 && man -w 7 libasync >/dev/null 2>&1; then
    pass "man future_get, man 7 libasync"
else
    fail "man pages installed"
fi

finish
