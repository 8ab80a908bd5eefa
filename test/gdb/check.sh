#!/bin/sh
# test/gdb/check.sh GDB TARGET SCRIPT — tools/libasync-gdb.py on a live
# process: gdb runs gdb_target until it stops itself (SIGTRAP), then
# `async tasks` must list its four tasks with their waits and `async bt all`
# must show each parked task's own frames, down to its task function.
set -u
gdb=$1 target=$2 script=$3
out=$(timeout 120 "$gdb" -q -batch -nx -ex run -x "$script" \
      -ex 'async tasks' -ex 'async bt all' -ex kill "$target" 2>&1)
status=0
expect() {
    if ! printf '%s\n' "$out" | grep -Eq -- "$1"; then
        echo "check.sh: no line matching: $1"
        status=1
    fi
}
expect '^pool gdbpool task 0x[0-9a-f]+ fn gdb_recv_task state parked wait chan 0x[0-9a-f]+ recv deadline none$'
expect '^pool gdbpool task 0x[0-9a-f]+ fn gdb_wait_task state parked wait future 0x[0-9a-f]+ deadline none$'
expect '^pool gdbpool task 0x[0-9a-f]+ fn gdb_sleep_task state parked wait sleep deadline at [0-9]+ ns$'
expect '^pool gdbthr task 0x[0-9a-f]+ fn gdb_recv_task state blocked wait chan 0x[0-9a-f]+ recv deadline none$'
expect '^libasync: 4 tasks$'
# the parked tasks' own frames, from their saved contexts
expect '^#[0-9]+ .* in gdb_level2 '
expect '^#[0-9]+ .* in gdb_recv_task '
expect '^#[0-9]+ .* in gdb_wait_task '
expect '^#[0-9]+ .* in gdb_sleep_task '
expect '^#[0-9]+ .* in async__task_run '
if [ "$status" -ne 0 ]; then
    echo "check.sh: gdb said:"
    printf '%s\n' "$out"
else
    echo "check.sh: the four tasks and three parked backtraces found"
fi
exit "$status"
