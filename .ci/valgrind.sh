#!/usr/bin/env bash
# .ci/valgrind.sh — the stress suite (plain programs: the race scenarios,
# the soak, the fault-injection programs, the fuzzer's regression replay)
# under valgrind's memcheck, through the `valgrind` test setup of
# test/meson.build, at small sizes so that CI stays fast:
#   STRESS_SCALE  the stress programs' scale (the setup sets 0.05)
#   SOAK_SECONDS  the soak's duration (default here 2)
#   FAULT_ROUNDS  fault_eintr's rounds (default here 1)
#   VALGRIND_BUILD  build directory (default build-ci-valgrind; no sanitizer)
#
# The suite 'not-valgrind' is left out: stress_registry, a race test for
# ThreadSanitizer whose thousands of threads valgrind, running one thread at
# a time, takes minutes over (test/stress/meson.build).
#
# Extra arguments go to `meson test`. Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

dir=${VALGRIND_BUILD:-build-ci-valgrind}
export SOAK_SECONDS=${SOAK_SECONDS:-2}
export FAULT_ROUNDS=${FAULT_ROUNDS:-1}

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind.sh: valgrind is not installed" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" -Db_sanitize=none -Dsamples=false -Dbench=false >/dev/null || exit 1
else
    meson setup "$dir" -Db_sanitize=none -Dsamples=false -Dbench=false >/dev/null || exit 1
fi
ninja -C "$dir" || exit 1

rc=0
meson test -C "$dir" --setup valgrind --suite stress --no-suite not-valgrind \
    --print-errorlogs "$@" || rc=1

log="$dir/meson-logs/testlog-valgrind.json"
[ -f "$log" ] || log="$dir/meson-logs/testlog.json"
python3 - "$log" <<'PY' || rc=1
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    r = json.loads(line).get("result", "")
    if r in ("OK", "EXPECTEDFAIL"):
        ok += 1
    elif r != "SKIP":
        bad += 1
print(f"{ok} passed, {bad} failed")
sys.exit(1 if bad else 0)
PY
exit $rc
