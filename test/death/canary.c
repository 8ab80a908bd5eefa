/*
 * test/death/canary.c — the other overflow check: a stack with no guard page
 * gets a canary word at its lowest address, checked at every switch away
 * from it, and a task that overwrote it aborts the process with "stack
 * overflow" on stderr.
 *
 * Stacks get canaries only once guards cannot be had (no MADV_GUARD_INSTALL
 * and the mprotect budget spent). A child process forces that: it installs
 * a seccomp filter under which madvise(MADV_GUARD_INSTALL) and
 * process_madvise (a slab's guards at once) fail with EINVAL, as on a
 * kernel older than 6.13, and mprotect(PROT_NONE) with ENOMEM, and only
 * then creates its pool (the filter leaves thread creation alone), so that
 * every stack the pool carves has a canary. Not the other way round: a new
 * slab installs all its regions' guards at once, and a pool created before
 * the filter could have its worker carve the slab, guards and all, before
 * the filter took effect; the next stack, from that slab, was then guarded,
 * and the overflow a SIGSEGV instead of the canary's abort (8 runs in 60).
 * A task parks, so the worker goes on on another stack; the next task runs
 * on that stack, writes over its lowest bytes (and into the unguarded page
 * below, which is still its own region: nothing else is touched), returns
 * from that frame, and blocks. The parent checks the child died of SIGABRT
 * with the message.
 *
 * Exit: 0 passed, 1 failed, 77 skipped (no seccomp here, or a sanitizer
 * build, whose runtime owns the stack bounds).
 */
#include <async.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define STACK ((size_t)64 * 1024)
#define SKIP 77

static int no_guards(void)
{
    struct sock_filter f[] = {
        /*  0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /*  1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_madvise, 0, 1), /* 2 : 3 */
        /*  2 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
        /*  3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_madvise, 0, 3),         /* 4 : 7 */
        /*  4 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        /*  5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_GUARD_INSTALL, 0, 5),   /* 6 : 11 */
        /*  6 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
        /*  7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mprotect, 0, 3),        /* 8 : 11 */
        /*  8 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        /*  9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_NONE, 0, 1),           /* 10 : 11 */
        /* 10 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOMEM),
        /* 11 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    /* Every thread, the pool's worker included. */
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
}

/* Overwrites from (about) 64 bytes below the lowest byte of the 64 KiB stack
 * this frame is on up to here. The top of a task stack is page-aligned (a
 * region is a guard page then the usable stack), and the frames above the
 * task's are well under a page. */
__attribute__((noinline)) static void scribble(void)
{
    char here;
    uintptr_t top = ((uintptr_t)&here + 4095) & ~(uintptr_t)4095;
    uintptr_t lo = top - STACK;
    size_t n = (uintptr_t)&here - (lo - 64);   /* buf lies a little lower still */
    volatile char buf[n];
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)0xa5;
    __asm__ __volatile__("" : : "r"(buf) : "memory");
}

static void *park(void *arg)
{
    return (void *)(intptr_t)chan_recv(arg, NULL);
}

static void *overflow_then_block(void *arg)
{
    scribble();
    /* Blocking switches away from this stack: the canary is checked. */
    return (void *)(intptr_t)chan_recv(arg, NULL);
}

static int child(void)
{
    if (no_guards() != 0) {
        fprintf(stderr, "canary: no seccomp filter: %s\n", strerror(errno));
        return SKIP;
    }
    async_pool_config_t cfg = { .threads = 1, .stack_size = STACK };
    async_pool_t *pool = async_pool_create(&cfg);
    if (!pool)
        return 2;
    chan_t *c = chan_make(0, 0);
    if (!async_run_on(pool, park, c))   /* left to the child's end */
        return 2;
    async_pool_stats_t st;   /* until it has parked */
    int64_t until = async_now() + 30 * ASYNC_SECOND;
    while (async_pool_stats(pool, &st) == 0 && st.parked == 0 && async_now() < until)
        sched_yield();
    if (st.parked != 1)
        return 4;
    future_t *b = async_run_on(pool, overflow_then_block, c);
    future_get_until(b, NULL, async_now() + 2 * ASYNC_SECOND);
    fprintf(stderr, "canary: the overwritten canary went unnoticed\n");
    return 3;
}

int main(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return SKIP;
#endif
#if defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return SKIP;
#  endif
#endif
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        _exit(child());
    }
    close(fds[1]);
    char out[4096];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof out - 1 && (r = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    int st = 0;
    waitpid(pid, &st, 0);
    fputs(out, stderr);
    if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP)
        return SKIP;
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT) {
        fprintf(stderr, "canary: the child did not abort (status %#x)\n", st);
        return 1;
    }
    if (!strstr(out, "stack overflow (canary overwritten)")) {
        fprintf(stderr, "canary: no \"stack overflow (canary overwritten)\" message\n");
        return 1;
    }
    printf("canary: aborted with the message, as it should\n");
    return 0;
}
