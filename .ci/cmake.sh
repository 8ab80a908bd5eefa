#!/usr/bin/env bash
# .ci/cmake.sh — libasync from CMake: build and install the library into a
# temporary prefix, then build and run two small CMake consumers of it
# (test/cmake/): one with find_package(async 0.2 CONFIG REQUIRED) and the
# target async::async, one with pkg_check_modules. Only CMAKE_PREFIX_PATH
# points at the prefix; the multiarch libdir must be found from there.
#
#   CMAKE_BUILD_DIR  where to build libasync (default build-ci-cmake)
#
# Needs cmake, pkg-config and ninja (.ci/run installs them). Ends with
# "N passed, M failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

dir=${CMAKE_BUILD_DIR:-build-ci-cmake}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
passed=0
failed=0

opts=(--prefix="$prefix" -Dtests=false -Dsamples=false -Dbench=false -Dman=false)
if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "${opts[@]}" >/dev/null || exit 1
else
    meson setup "$dir" "${opts[@]}" >/dev/null || exit 1
fi
ninja -C "$dir" >/dev/null || { echo "cmake: building libasync FAILED"; echo "0 passed, 1 failed"; exit 1; }
meson install -C "$dir" --quiet || { echo "cmake: install FAILED"; echo "0 passed, 1 failed"; exit 1; }

for consumer in find_package pkg_config; do
    out=$tmp/build-$consumer
    if cmake -S "test/cmake/$consumer" -B "$out" -G Ninja \
            -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/log" 2>&1 &&
        cmake --build "$out" >>"$tmp/log" 2>&1 &&
        "$out/app" >"$tmp/run" 2>&1 && grep -qx Done "$tmp/run"; then
        echo "cmake: $consumer: built and ran ($(tail -n 1 "$tmp/run"))"
        passed=$((passed + 1))
    else
        echo "cmake: $consumer: FAILED"
        cat "$tmp/log" "$tmp/run" 2>/dev/null | tail -n 40
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
