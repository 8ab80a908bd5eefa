#!/usr/bin/env bash
# .ci/man.sh — the man pages: every header comment follows the template
# (tools/mkman.py --check); meson builds and installs a page for every
# function the library exports and libasync(7); each page equals what the
# headers generate now (a stale page fails); mandoc -Tlint finds nothing of
# warning level or worse; `man -l` renders every page without a complaint.
#
#   MAN_BUILD  build directory (default build-ci-man)
#
# Needs mandoc and man (.ci/run installs them). Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

dir=${MAN_BUILD:-build-ci-man}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
pass() { echo "man: $1: ok"; passed=$((passed + 1)); }
fail() { echo "man: $1: FAILED"; failed=$((failed + 1)); }

if python3 tools/mkman.py --check >"$tmp/check" 2>&1; then
    pass "every comment follows the template ($(tail -n 1 "$tmp/check"))"
else
    cat "$tmp/check"
    fail "header comments"
fi

opts=(--prefix=/usr -Dtests=false -Dsamples=false -Dbench=false -Dman=true)
if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "${opts[@]}" >/dev/null
else
    meson setup "$dir" "${opts[@]}" >/dev/null
fi && ninja -C "$dir" >/dev/null && meson install -C "$dir" --destdir "$tmp/dest" --quiet >/dev/null
if [ $? -ne 0 ]; then
    fail "build and install"
    echo "$passed passed, $failed failed"
    exit 1
fi
mandir=$tmp/dest/usr/share/man

# A page for every exported function, and libasync(7).
lib=$(find "$tmp/dest" -name 'libasync.so.*.*' | head -n 1)
missing=0
for sym in $(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }'); do
    if [ ! -f "$mandir/man3/$sym.3" ]; then
        echo "man: no page for the exported function $sym"
        missing=$((missing + 1))
    fi
done
[ -f "$mandir/man7/libasync.7" ] || { echo "man: no libasync(7)"; missing=$((missing + 1)); }
if [ "$missing" -eq 0 ]; then
    pass "a page for each of the $(ls "$mandir/man3" | wc -l) exported functions, and libasync(7)"
else
    fail "pages missing"
fi

# Installed pages equal the pages the headers make now.
python3 tools/mkman.py --outdir "$tmp/fresh" --version "$(meson introspect --projectinfo "$dir" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')" 2>/dev/null
stale=0
for page in "$tmp"/fresh/*; do
    name=$(basename "$page")
    installed="$mandir/man${name##*.}/$name"
    if ! diff -q <(sed 1d "$page") <(sed 1d "$installed") >/dev/null 2>&1; then
        echo "man: $name is stale or missing (regenerate: ninja -C BUILD)"
        stale=$((stale + 1))
    fi
done
[ "$stale" -eq 0 ] && pass "no stale page" || fail "stale pages"

if mandoc -Tlint -W warning "$mandir"/man3/*.3 "$mandir"/man7/*.7 >"$tmp/lint" 2>&1; then
    pass "mandoc -Tlint"
else
    head -n 40 "$tmp/lint"
    fail "mandoc -Tlint"
fi

bad=0
for page in "$mandir"/man3/*.3 "$mandir"/man7/*.7; do
    if ! MANWIDTH=80 man -l "$page" >/dev/null 2>"$tmp/err" || [ -s "$tmp/err" ]; then
        echo "man: man -l $(basename "$page"):"
        head -n 5 "$tmp/err"
        bad=$((bad + 1))
    fi
done
[ "$bad" -eq 0 ] && pass "man -l renders every page" || fail "man -l"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
