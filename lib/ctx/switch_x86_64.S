/*
 * lib/ctx/switch_x86_64.S — the context switch for x86-64, System V ABI.
 *
 * void *async__ctx_swap(void **save_sp, void *load_sp, void *transfer)
 *   Pushes the callee-saved registers (rbp, rbx, r12-r15) and the two
 *   floating-point control words the ABI makes callee-saved (MXCSR and the
 *   x87 control word) on the current stack, stores the stack pointer in
 *   *save_sp, loads load_sp, pops the same frame from there and returns into
 *   that context with transfer in rax: the value async__ctx_swap returns on
 *   the other side. Everything else is caller-saved, so the C compiler has
 *   already spilled it around the call.
 *
 * async__ctx_entry: where a new context starts (see async__ctx_make in
 *   lib/fiber.c, which lays out its first frame): r12 holds the entry
 *   function, rax the transfer; it calls entry(transfer), which never
 *   returns. The return address is undefined for unwinders, so backtraces
 *   stop here.
 *
 * Frame at save_sp, low to high: MXCSR (4 bytes), x87 CW (2), pad (10),
 * r15, r14, r13, r12, rbx, rbp, return address: 72 bytes.
 */
    .text
    .globl  async__ctx_swap
    .hidden async__ctx_swap
    .type   async__ctx_swap, @function
    .p2align 4
async__ctx_swap:
    .cfi_startproc
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    subq    $16, %rsp
    .cfi_adjust_cfa_offset 16
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $16, %rsp
    .cfi_adjust_cfa_offset -16
    popq    %r15
    .cfi_adjust_cfa_offset -8
    popq    %r14
    .cfi_adjust_cfa_offset -8
    popq    %r13
    .cfi_adjust_cfa_offset -8
    popq    %r12
    .cfi_adjust_cfa_offset -8
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    movq    %rdx, %rax
    ret
    .cfi_endproc
    .size   async__ctx_swap, .-async__ctx_swap

    .globl  async__ctx_entry
    .hidden async__ctx_entry
    .type   async__ctx_entry, @function
    .p2align 4
async__ctx_entry:
    .cfi_startproc
    .cfi_undefined rip
    movq    %rax, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   async__ctx_entry, .-async__ctx_entry

    .section .note.GNU-stack, "", @progbits
