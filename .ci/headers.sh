#!/usr/bin/env bash
# .ci/headers.sh — every public header compiles alone, as the first and only
# include of a translation unit, in every language standard a user may build
# with: C99, C11, C17 and C2x (C23) with gcc and clang, C++11, C++14, C++17
# and C++20 with g++ and clang++, each with -Werror -Wall -Wextra -pedantic.
# A compiler that is not installed is skipped (CI installs both).
#
# async/version.h is configured by the build from version.h.in; it is made
# here the same way (tools/version_h.sh).
#
# Ends with "N passed, M failed" (one count per header, compiler and standard).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

tools/version_h.sh "$tmp/include" || exit 1

headers=(async.h)
for h in include/async/*.h include/async/*.h.in; do
    [ -e "$h" ] || continue
    h=${h#include/}
    headers+=("${h%.in}")
done

flags=(-Werror -Wall -Wextra -pedantic -fsyntax-only -Iinclude -I"$tmp/include")
passed=0
failed=0

# check COMPILER LANG STD...: compile each header alone with each standard.
check() {
    local compiler=$1 lang=$2 std h ext
    shift 2
    if ! command -v "$compiler" >/dev/null 2>&1; then
        echo "headers: $compiler not installed, skipped"
        return
    fi
    ext=c
    [ "$lang" = c++ ] && ext=cpp
    for std in "$@"; do
        for h in "${headers[@]}"; do
            printf '#include <%s>\n' "$h" >"$tmp/t.$ext"
            if "$compiler" -x "$lang" -std="$std" "${flags[@]}" "$tmp/t.$ext" 2>"$tmp/err"; then
                passed=$((passed + 1))
            else
                failed=$((failed + 1))
                echo "headers: FAILED: $compiler -std=$std <$h>"
                sed 's/^/    /' "$tmp/err" | head -n 20
            fi
        done
        echo "headers: $compiler -std=$std: ${#headers[@]} headers checked"
    done
}

check gcc c c99 c11 c17 c2x
check g++ c++ c++11 c++14 c++17 c++20
check clang c c99 c11 c17 c2x
check clang++ c++ c++11 c++14 c++17 c++20

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
