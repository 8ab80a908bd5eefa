/*
 * test/stress/stress_alloc.c — out of memory at every allocation site: for
 * n = 1, 2, ... the nth allocation fails while a scenario runs pools,
 * copied-argument submits, a task submitting 320 subtasks (deque growth),
 * promises, defers, panics with messages and wait_any over many futures;
 * every call succeeds or answers ENOMEM, nothing hangs; leaks are caught by
 * the valgrind setup or LeakSanitizer.
 *
 * A plain program, so the sanitizer builds run it. $STRESS_ALLOC_STRIDE
 * (default 1) samples every stride-th allocation on very slow builds.
 * Prints what it checked and "N passed, M failed".
 */
#include <stdlib.h>

#include "stressmain.h"

int main(void)
{
    const char *s = getenv("STRESS_ALLOC_STRIDE");
    long stride = s && *s ? strtol(s, NULL, 10) : 1;
    struct tally t;
    tally_init(&t, true);
    race_alloc_failure(&t, 320, stride > 0 ? stride : 1);
    return stress_finish(&t);
}
