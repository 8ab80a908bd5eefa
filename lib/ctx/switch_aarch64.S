/*
 * lib/ctx/switch_aarch64.S — the context switch for AArch64, AAPCS64.
 *
 * void *async__ctx_swap(void **save_sp, void *load_sp, void *transfer)
 *   Saves the callee-saved registers x19-x28, the frame pointer x29, the
 *   link register x30, the low halves d8-d15 of v8-v15 and FPCR in a
 *   176-byte frame on the current stack, stores sp in *save_sp, loads
 *   load_sp, restores the same frame from there and returns through its x30
 *   with transfer in x0.
 *
 * async__ctx_entry: where a new context starts: x19 holds the entry
 *   function, x0 the transfer; it calls entry(transfer), which never
 *   returns.
 *
 * Frame at save_sp: x19..x30 at 0..88, d8..d15 at 96..152, FPCR at 160.
 */
    .text
    .globl  async__ctx_swap
    .hidden async__ctx_swap
    .type   async__ctx_swap, %function
    .p2align 4
async__ctx_swap:
    .cfi_startproc
    sub     sp, sp, #176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8,  d9,  [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x9, fpcr
    str     x9, [sp, #160]
    mov     x9, sp
    str     x9, [x0]
    mov     sp, x1
    ldr     x9, [sp, #160]
    msr     fpcr, x9
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8,  d9,  [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #176
    mov     x0, x2
    ret
    .cfi_endproc
    .size   async__ctx_swap, .-async__ctx_swap

    .globl  async__ctx_entry
    .hidden async__ctx_entry
    .type   async__ctx_entry, %function
    .p2align 4
async__ctx_entry:
    .cfi_startproc
    .cfi_undefined x30
    blr     x19
    brk     #0
    .cfi_endproc
    .size   async__ctx_entry, .-async__ctx_entry

    .section .note.GNU-stack, "", %progbits
