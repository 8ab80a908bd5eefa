/*
 * test/stress/stress_scope.c — scopes at size, in both pool modes: a
 * cancellation tree of 1,000 blocked leaves, deadlines, fail-fast, close
 * inside a task of a 1-thread pool, a parent's future_cancel reaching its
 * grandchildren, an ASYNC_CANCEL shutdown, growth while closing, and the
 * cancel/submit and cancel/open races.
 *
 * A plain program (the ThreadSanitizer build runs it; Criterion cannot run
 * there). Scale: argv[1] or $STRESS_SCALE (default 1). Prints what it
 * checked and "N passed, M failed"; exits non-zero on any failure.
 *
 * The tree's latency is asserted loosely here (the tight bound is the plain
 * build's unit test). ThreadSanitizer's cost per synchronisation grows with
 * the number of threads alive, so under it the thread-mode trees (a thread
 * per blocked task) are smaller: 216 leaves instead of 1,000.
 */
#include "stressmain.h"

#include "internal.h"
#include "scope_scenarios.h"

#if defined(ASYNC_TSAN) || defined(ASYNC_ASAN)
#  define TREE_BOUND (20 * ASYNC_SECOND)
#else
#  define TREE_BOUND (2 * ASYNC_SECOND)
#endif
#ifdef ASYNC_TSAN
#  define THREAD_TREE_SHRINK 1
#else
#  define THREAD_TREE_SHRINK 0
#endif

int main(int argc, char **argv)
{
    double scale = stress_scale(argc, argv);
    struct tally t;
    tally_init(&t, true);
    for (int m = 0; m < 2; m++) {
        bool thread_mode = m == 1;
        bool small = scale < 1 || (thread_mode && THREAD_TREE_SHRINK);
        int64_t lat = 0;
        scope_tree_cancel(&t, thread_mode, small ? 6 : 10, &lat);
        tally_check(&t, lat < TREE_BOUND, "tree cancel took %lld ns", (long long)lat);
        scope_deadline(&t, thread_mode, stress_n(scale, 200));
        scope_fail_fast(&t, thread_mode, 100, 57);
        scope_close_in_task(&t, thread_mode, stress_n(scale, 100));
        scope_parent_cancel(&t, thread_mode, stress_n(scale, 50));
        scope_pool_cancel(&t, thread_mode, small ? 5 : 8);
        for (unsigned i = 0; i < stress_n(scale, 20); i++)
            scope_cross_pool_cancel(&t, thread_mode);
        scope_grow_while_closing(&t, thread_mode, scale < 1 ? 7 : 10);
        scope_races(&t, thread_mode, stress_n(scale, 20));
    }
    return stress_finish(&t);
}
