#!/usr/bin/env bash
# .ci/fuzz.sh — build the libFuzzer target (test/fuzz/fuzz_api.c) with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer, and run it for a bounded
# time from the committed seeds (test/fuzz/corpus) and the minimized findings
# (test/fuzz/regressions). Any finding — a disagreement with the model, a
# sanitizer report, a leak, a crash or a hang (-timeout) — fails the script;
# libFuzzer writes the input to $FUZZ_BUILD/artifacts/, ready to be minimized
# (fuzz_api -minimize_crash=1 -runs=100000 FILE) and committed under
# test/fuzz/regressions/.
#
#   FUZZ_SECONDS  how long to fuzz each mode, goroutine and thread (default 60)
#   FUZZ_BUILD    build and work directory (default build-ci-fuzz)
#   CC            clang to use (default clang; must support -fsanitize=fuzzer)
#   FUZZ_CFLAGS   extra compiler flags, e.g. -DFUZZ_ACCEPT_LATE_CANCEL to
#                 accept a known open deviation (test/fuzz/known/README)
#
# The library is built checked (-DASYNC_CHECKS=1: its invariant asserts on, as
# in the sanitizer builds of .ci/run), so a broken invariant is a finding too.
#
# The corpus grown by a run stays in $FUZZ_BUILD/corpus; the committed seeds
# are never written to.
#
# A long campaign (10^7 executions or more) is this script with a large
# FUZZ_SECONDS, or shards of it, summing stat::number_of_executed_units over
# the runs; each run resumes the corpus in $FUZZ_BUILD/corpus. The rate is
# bounded less by CPU than by hand-offs between the fuzzing thread and the
# pool's worker (each blocker is submitted, started by the woken worker and
# reported back: two thread wake-ups, which a busy or niced machine makes
# slow); on CPU, libFuzzer's own feature bookkeeping and comparison tracing
# take about half. Expect about 1,000 executions per second per idle core,
# and a tenth of that at nice 19 on a loaded one.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_BUILD=${FUZZ_BUILD:-build-ci-fuzz}
FUZZ_CFLAGS=${FUZZ_CFLAGS:-}
CC=${CC:-clang}
case "$CC" in
*clang*) ;;
*) CC=clang ;;   # libFuzzer exists only in clang
esac

mkdir -p "$FUZZ_BUILD/corpus" "$FUZZ_BUILD/artifacts" || exit 1
bin="$FUZZ_BUILD/fuzz_api"

echo "fuzz: building $bin with $CC"
tools/version_h.sh "$FUZZ_BUILD/include" || exit 1   # async/version.h, as meson makes it
read -r -a extra_flags <<<"$FUZZ_CFLAGS"
# The context switch, as lib/meson.build picks it.
case "$(uname -m)" in
x86_64) ctx=(-DASYNC_CTX_UCONTEXT=0 lib/ctx/switch_x86_64.S) ;;
aarch64) ctx=(-DASYNC_CTX_UCONTEXT=0 lib/ctx/switch_aarch64.S) ;;
*) ctx=(-DASYNC_CTX_UCONTEXT=1) ;;
esac
"$CC" -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Wall -Wextra -Werror -DASYNC_CHECKS=1 "${extra_flags[@]}" \
    -Iinclude -I"$FUZZ_BUILD/include" -Ilib lib/*.c "${ctx[@]}" test/fuzz/fuzz_api.c \
    -o "$bin" -lpthread -ldl || { echo "fuzz: build FAILED"; exit 1; }

# fuzz_mode MODE: one campaign with $ASYNC_STACK_SIZE=MODE ("" goroutine
# mode, "thread" thread mode); 0 when it found nothing.
fuzz_mode() {
    local mode=$1 name=${1:-goroutine} rc
    rm -f "$FUZZ_BUILD"/artifacts/*
    local log="$FUZZ_BUILD/fuzz-$name.log"
    echo "fuzz: $name mode for ${FUZZ_SECONDS} s (log: $log)"
    ASYNC_STACK_SIZE=$mode \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
            -artifact_prefix="$FUZZ_BUILD/artifacts/" \
            "$FUZZ_BUILD/corpus" test/fuzz/corpus test/fuzz/regressions >"$log" 2>&1
    rc=$?
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log"
    grep -E '#[0-9]+ +DONE' "$log" | tail -n 1
    if [ $rc -ne 0 ] || ls "$FUZZ_BUILD"/artifacts/* >/dev/null 2>&1; then
        echo "fuzz: FINDING in $name mode (exit status $rc); the end of the log:" >&2
        tail -n 80 "$log" >&2
        ls -l "$FUZZ_BUILD"/artifacts/ >&2
        return 1
    fi
    echo "fuzz: no finding in $name mode"
    return 0
}

passed=0
failed=0
for mode in "" thread; do
    if fuzz_mode "$mode"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
