/*
 * test/stress/stress_fpregs.c — AArch64 only: the callee-saved d8-d15 and
 * the rounding mode in FPCR survive task switches (lib/ctx/switch_aarch64.S
 * saves and restores them), and a new task starts rounding to nearest.
 *
 * 16 tasks on 2 workers each set their own rounding mode, load d8-d15 with
 * their own values, yield 200 times and check both after every switch.
 * Prints "N passed, M failed"; exits non-zero on any failure.
 */
#include <async.h>
#include <fenv.h>
#include <stdio.h>
#include <stdatomic.h>

static atomic_int failures;

static int yield_keeping(double base)
{
    double in[8], out[8];
    for (int i = 0; i < 8; i++)
        in[i] = base + i, out[i] = 0;
    register double *pin __asm__("x19") = in;
    register double *pout __asm__("x20") = out;
    __asm__ volatile(
        "ldp d8, d9, [x19]\n\tldp d10, d11, [x19, #16]\n\t"
        "ldp d12, d13, [x19, #32]\n\tldp d14, d15, [x19, #48]\n\t"
        "bl async_yield\n\t"
        "stp d8, d9, [x20]\n\tstp d10, d11, [x20, #16]\n\t"
        "stp d12, d13, [x20, #32]\n\tstp d14, d15, [x20, #48]\n\t"
        : "+r"(pin), "+r"(pout) : : "x0","x1","x2","x3","x4","x5","x6","x7","x8","x9","x10",
          "x11","x12","x13","x14","x15","x16","x17","x18","x30",
          "v0","v1","v2","v3","v4","v5","v6","v7","v8","v9","v10","v11","v12","v13","v14","v15",
          "v16","v17","v18","v19","v20","v21","v22","v23","v24","v25","v26","v27","v28","v29",
          "v30","v31","cc","memory");
    int bad = 0;
    for (int i = 0; i < 8; i++)
        bad += out[i] != base + i;
    return bad;
}

static void *task(void *arg)
{
    int id = (int)(long)arg;
    static const int modes[] = { FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO, FE_TONEAREST };
    if (fegetround() != FE_TONEAREST) {
        printf("task %d: starts with rounding %d\n", id, fegetround());
        failures++;
    }
    fesetround(modes[id % 4]);
    for (int r = 0; r < 200; r++) {
        int bad = yield_keeping(id * 1000.0 + r);
        if (bad || fegetround() != modes[id % 4]) {
            printf("task %d round %d: %d of d8-d15 lost, rounding %d want %d\n", id, r, bad,
                   fegetround(), modes[id % 4]);
            failures++;
            break;
        }
    }
    fesetround(FE_TONEAREST);
    return NULL;
}

int main(void)
{
    async_pool_config_t cfg = { .threads = 2 };
    async_pool_t *pool = async_pool_create(&cfg);
    future_t *fs[16];
    for (int i = 0; i < 16; i++)
        fs[i] = async_run_on(pool, task, (void *)(long)i);
    for (int i = 0; i < 16; i++) {
        future_get(fs[i], NULL);
        future_free(fs[i]);
    }
    async_pool_destroy(pool, ASYNC_DRAIN);
    int f = atomic_load(&failures);
    printf("%d passed, %d failed\n", f ? 0 : 1, f ? 1 : 0);
    return f != 0;
}
