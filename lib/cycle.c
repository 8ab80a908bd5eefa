/*
 * lib/cycle.c — wait cycles: a task about to wait for a future whose task,
 * directly or through a chain of waits, waits for it, gets EDEADLK at once.
 *
 * Owns: publishing what a waiting task waits for (the record's `awaiting`
 * link, and the links of the tasks its fiber runs inline under it) and the
 * walk that looks for the waiter on the chain.
 *
 * The graph. `t->awaiting == u` says "task t cannot finish before u does".
 * A task that waits sets it on its own record; a task that runs another one
 * inline (future.c) is waiting for it just as much, and that nesting is the
 * fiber's frame chain, so a waiter also publishes, for every frame under its
 * own on its fiber, outer->awaiting = inner. A task's links are set and
 * cleared only by the fiber it runs on, which is in at most one wait at a
 * time; every write and every read of a link is under its record's lock.
 *
 * Closing a cycle concurrently. A waiter first publishes all its links, then
 * walks from the awaited task, reading each link under its record's lock.
 * Suppose several waiters close one cycle at the same time and each walk
 * misses some link: a walk can miss only a link not yet published, i.e. its
 * read of that record's lock came before the publisher's write. That
 * publisher's walk then starts after (lock order, then program order) the
 * first walker's publication and sees it. Following the "missed" relation
 * around a finite cycle, the waiter whose publication is last in it sees
 * every link: at least one of them gets EDEADLK (both may).
 *
 * No false positive: a link exists only while its task is in a wait (or runs
 * its inner task inline), so a chain of links is a chain of tasks each
 * blocked on the next; a long chain that ends in a task that runs or in a
 * promise ends the walk with no cycle, however long it is. A link that is
 * being cleared (its wait just returned) was true a moment ago; a cycle read
 * through it was a real cycle then, since each task on it was blocked on the
 * next — the one exception is a cycle whose closing wait has a finite
 * deadline, which would have ended anyway: EDEADLK there is still right, the
 * wait could only have timed out.
 *
 * Memory: the walk pins every record it stands on with a reference, taken
 * under the lock of the record whose link named it (the owner of a link
 * holds a handle on its target while the link exists: it is in a wait on it
 * or running it), and dropped once it has moved on — the help walk in
 * future.c does the same. A cycle that does not contain the waiter (other
 * tasks closed it; one of them is about to get EDEADLK) would keep the walk
 * going round: Brent's cycle finding stops it (a pinned mark, moved at
 * powers of two).
 *
 * Not seen: a future_wait_any on several futures publishes nothing (one link
 * cannot say "any of these"); it gets EDEADLK only when each of its futures
 * closes a cycle as the walk sees it then.
 */
#include "internal.h"

/* Is g a task running on the caller's fiber (the waiter, or one that runs
 * it inline)? */
static bool on_my_fiber(const struct future *g)
{
    for (struct async_frame *fr = async__fiber_self()->frame; fr; fr = fr->prev)
        if (fr->task == g)
            return true;
    return false;
}

static void set_link(struct future *t, struct future *to)
{
    async__lock(&t->lock);
    t->awaiting = to;
    async__unlock(&t->lock);
}

/* Each frame's task waits for the one nested in it. */
static void publish_frames(struct future *to)
{
    for (struct async_frame *fr = async__fiber_self()->frame; fr; fr = fr->prev) {
        set_link(fr->task, to);
        to = fr->task;
    }
}

bool async__cycle_closes(struct future *f)
{
    struct future *cur = f, *mark = NULL;
    unsigned steps = 0, power = 1;
    bool found = false;
    async__record_retain(cur);
    for (;;) {
        if (on_my_fiber(cur)) {
            found = true;
            break;
        }
        async__lock(&cur->lock);
        struct future *next = cur->awaiting;
        if (next)
            async__record_retain(next);
        async__unlock(&cur->lock);
        if (++steps == power) {   /* Brent: the mark moves here */
            if (mark)
                async__record_release(mark);
            mark = cur;
            async__record_retain(mark);
            power *= 2;
            steps = 0;
        }
        async__record_release(cur);
        cur = next;
        if (!cur || cur == mark)
            break;   /* the chain ends, or a cycle without us */
    }
    if (cur)
        async__record_release(cur);
    if (mark)
        async__record_release(mark);
    return found;
}

int async__cycle_enter(struct future *f)
{
    if (!async__current_task())
        return 0;   /* no task waits: no cycle can go through the caller */
    publish_frames(f);
    if (!async__cycle_closes(f))
        return 0;
    async__cycle_leave();
    return EDEADLK;
}

void async__cycle_leave(void)
{
    for (struct async_frame *fr = async__fiber_self()->frame; fr; fr = fr->prev)
        set_link(fr->task, NULL);
}
