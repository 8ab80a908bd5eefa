/*
 * test/scope_scenarios.h — the scope scenarios, written once and run twice:
 * small by Criterion (test_scope.c) and large by a plain program
 * (stress/stress_scope.c), which is what ThreadSanitizer runs. Like race.h,
 * a scenario records its checks in a tally on the calling thread and never
 * asserts. `thread_mode` picks the pool's mode.
 */
#ifndef SCOPE_SCENARIOS_H
#define SCOPE_SCENARIOS_H

#include "race.h"

#include <stdint.h>

/* A tree of scopes 3 levels deep (fanout^3 leaves blocked half in a channel
 * receive, half in a sleep): one async_scope_cancel at the root ends them
 * all, each with ECANCELED from its blocked call. *latency gets the time
 * from the cancel to the last leaf's end. */
void scope_tree_cancel(struct tally *t, bool thread_mode, unsigned fanout, int64_t *latency);

/* A scope whose deadline passes while its tasks are blocked forever: close
 * returns ECANCELED no earlier than the deadline; a deadline already passed
 * opens the scope cancelled. */
void scope_deadline(struct tally *t, bool thread_mode, unsigned ntasks);

/* ASYNC_SCOPE_FAIL_FAST: n tasks, the one at index bad panics once the others
 * are blocked; the others end with ECANCELED, close returns the panic's code.
 * Without the flag the others go on and close still returns that code. */
void scope_fail_fast(struct tally *t, bool thread_mode, unsigned n, unsigned bad);

/* A task of a 1-thread pool opens a scope, starts tasks that hand values to
 * each other through a channel, and closes it: no deadlock. */
void scope_close_in_task(struct tally *t, bool thread_mode, unsigned ntasks);

/* future_cancel of a task reaches the grandchildren blocked in the scopes
 * that it and its child opened. */
void scope_parent_cancel(struct tally *t, bool thread_mode, unsigned rounds);

/* async_pool_destroy(ASYNC_CANCEL) ends every scoped task of a tree opened
 * inside a task; the opener's close returns ECANCELED. */
void scope_pool_cancel(struct tally *t, bool thread_mode, unsigned fanout);

/* A task on one pool closes a scope on another pool whose task blocks; the
 * first pool's ASYNC_CANCEL shutdown reaches that task through the close
 * (the scope's pool is the other mode's). */
void scope_cross_pool_cancel(struct tally *t, bool thread_mode);

/* While close waits, the scope's tasks add tasks to it (a recursive
 * spawn); close waits for all of them. Handles freed at once. */
void scope_grow_while_closing(struct tally *t, bool thread_mode, unsigned depth);

/* Races: async_scope_cancel against submissions from several threads, and
 * future_cancel of a task against its opening a child scope. Every task
 * ends; close returns; nothing leaks. */
void scope_races(struct tally *t, bool thread_mode, unsigned rounds);

#endif /* SCOPE_SCENARIOS_H */
