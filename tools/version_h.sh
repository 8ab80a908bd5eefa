#!/bin/sh
# tools/version_h.sh DIR — write DIR/async/version.h from
# include/async/version.h.in and meson.build's project version, as the meson
# build does (configure_file in include/async/meson.build), for the builds
# that compile the sources without meson (.ci/fuzz.sh, .ci/headers.sh). Add
# -IDIR next to -Iinclude.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n "s/^ *version : '\([0-9][0-9.]*\)'.*/\1/p" "$root/meson.build" | head -n 1)
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
patch=${rest#*.}
mkdir -p "$1/async"
sed -e "s/@ASYNC_VERSION@/$version/" -e "s/@ASYNC_VERSION_MAJOR@/$major/" \
    -e "s/@ASYNC_VERSION_MINOR@/$minor/" -e "s/@ASYNC_VERSION_PATCH@/$patch/" \
    "$root/include/async/version.h.in" >"$1/async/version.h.tmp"
mv "$1/async/version.h.tmp" "$1/async/version.h"
