#!/usr/bin/env bash
# .ci/soak.sh — the soak (test/soak/soak.c) for longer than the stress
# suite's 15 s, under ThreadSanitizer and under AddressSanitizer +
# UndefinedBehaviorSanitizer (LeakSanitizer included).
#
#   SOAK_SECONDS  seconds per sanitizer in goroutine mode (default 60); a
#                 third of it under TSan in thread mode
#   SOAK_BUILD    prefix of the two build directories (default build-ci-soak:
#                 build-ci-soak-tsan and build-ci-soak-asan)
#   CC            compiler (clang by default: its sanitizers need
#                 -Db_lundef=false, added here)
#
# Fails on a failed check, a sanitizer report or a crash. Prints each run's
# operations per second and ends with "N passed, M failed" (runs).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

SOAK_SECONDS=${SOAK_SECONDS:-60}
SOAK_BUILD=${SOAK_BUILD:-build-ci-soak}
export CC=${CC:-clang}
extra=""
case "$CC" in
*clang*) extra="-Db_lundef=false" ;;
esac

passed=0
failed=0

# soak_one NAME "MESON OPTIONS" [prefix command...]
soak_one() {
    local name=$1 options=$2
    shift 2
    local dir="$SOAK_BUILD-$name" log="$SOAK_BUILD-$name.log"
    echo "==== soak under $name: ${SOAK_SECONDS} s"
    local -a opts
    read -r -a opts <<<"$options $extra -Dsamples=false -Dbench=false -Dtests=true"
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "${opts[@]}" >/dev/null || return 1
    else
        meson setup "$dir" "${opts[@]}" >/dev/null || return 1
    fi
    ninja -C "$dir" test/soak/soak || return 1
    local rc=0
    "$@" "$dir/test/soak/soak" --seconds "$SOAK_SECONDS" >"$log" 2>&1 || rc=1
    grep -v '^$' "$log" | tail -n 20
    if grep -Eq 'ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error: ' "$log"; then
        echo "soak: sanitizer report under $name (see $log)" >&2
        rc=1
    fi
    return $rc
}

run() {
    if soak_one "$@"; then
        passed=$((passed + 1))
    else
        echo "soak: FAILED under $1" >&2
        failed=$((failed + 1))
    fi
}

tsan_prefix=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
    tsan_prefix=(setarch "$(uname -m)" -R)   # TSan's fixed memory layout
fi
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    run tsan "-Db_sanitize=thread" "${tsan_prefix[@]}"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run asan "-Db_sanitize=address,undefined" env
# Both runs above are goroutine mode (the default); thread mode, shorter.
SOAK_SECONDS=$(( (SOAK_SECONDS + 2) / 3 )) TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    run tsan "-Db_sanitize=thread" "${tsan_prefix[@]}" env ASYNC_STACK_SIZE=thread

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
