#!/bin/sh
# tap.sh PROGRAM [ARGS...] — run a Criterion program with its TAP report, and
# nothing else, on stdout, for meson's TAP parser: what the tests themselves
# print on stdout goes to stderr instead, where it cannot be taken for TAP.
exec 3>&1 1>&2
exec "$@" --tap=/dev/fd/3
