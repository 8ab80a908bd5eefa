# tools/libasync-gdb.py — libasync's tasks seen from gdb, in a live process or
# a core file.
#
#   gdb -p PID -x tools/libasync-gdb.py          (or: source it at the prompt)
#   gdb PROGRAM CORE -x tools/libasync-gdb.py
#
# Commands:
#   async tasks        every task that has started and not finished (queued
#                      tasks are not listed: async_dump lists them), one line each,
#                      as async_dump writes them: pool, task id (the record's
#                      address, its future_t *), function, state, and what a
#                      blocked task waits on.
#   async bt TASKID    goroutine mode: the backtrace of a parked task, from the
#                      context its stack fiber saved when it switched away
#                      (struct async_ctx's sp; the frame layout is that of
#                      lib/ctx/switch_x86_64.S or switch_aarch64.S).
#   async bt all       the same for every parked task.
# A task that runs, or is blocked in thread mode, is on a thread of its own:
# gdb's `thread apply all bt` shows it (worker threads are named
# POOLNAME-N, see `info threads`).
#
# It needs libasync's debug information (a debug or debugoptimized build, or
# the -dbgsym package): it reads the library's own tables, the registry of
# wake targets (lib/park.c: every stack fiber) and the list of threads that
# ran a task (lib/tls.c), never the task records. To show a parked task's
# backtrace it points the selected thread's registers at the saved context,
# runs `bt`, and puts them back: that needs a live process (gdb cannot write
# a core file's registers, and a core written by gdb's generate-core-file
# lacks the task stacks, which share a mapping with their guard pages);
# `async tasks` works on a core file as well.

import gdb

CHUNK_BITS = 12                  # lib/park.c
TARGET_FIBER = 1                 # lib/internal.h: ASYNC_TARGET_FIBER

# lib/internal.h: fiber states and wait kinds
F_STATES = {0: "free", 1: "running", 2: "parked", 3: "parked", 4: "runnable",
            5: "runnable", 6: "blocked"}
W_KINDS = {1: "future", 2: "promise", 3: "any", 4: "chan", 5: "select",
           6: "sleep"}


def _static(name, filename):
    """A static variable of the library, found through its debug info."""
    try:
        return gdb.parse_and_eval("'%s'::%s" % (filename, name))
    except gdb.error:
        sym = gdb.lookup_static_symbol(name)
        if sym is None:
            raise gdb.GdbError("libasync: no symbol %s (%s): is the library built "
                               "with debug information?" % (name, filename))
        return sym.value()


def _atomic(v):
    return int(v)


def _fiber_type():
    return gdb.lookup_type("struct async_fiber")


def stack_fibers():
    """Every stack fiber: the registry's targets with the fiber bit."""
    registry = _static("registry", "park.c")
    n = int(_static("registry_next", "park.c"))
    ftype = _fiber_type().pointer()
    chunk_n = 1 << CHUNK_BITS
    for cid in range(0, (n + chunk_n - 1) // chunk_n):
        chunk = registry[cid]
        if int(chunk) == 0:
            continue
        for i in range(chunk_n):
            ident = cid * chunk_n + i
            if ident == 0:
                continue
            if ident >= n:
                return
            t = int(chunk[i])
            if t & TARGET_FIBER:
                yield gdb.Value(t & ~TARGET_FIBER).cast(ftype)


def thread_fibers():
    """The own fibers of the threads that ran a task (lib/tls.c's list)."""
    t = _static("list_head", "tls.c")
    while int(t) != 0:
        yield t["self"].address
        t = t["list_next"]


def pool_name(pool):
    if int(pool) == 0:
        return "-"
    head = pool.cast(gdb.lookup_type("struct async_pool_head").pointer())
    name = head["name"].string()
    return "".join("_" if c <= " " or c == "\x7f" else c for c in name) or "_"


def symbol(addr):
    if addr == 0:
        return "0x0"
    block = gdb.block_for_pc(addr)
    while block is not None and block.function is None:
        block = block.superblock
    if block is not None and block.function is not None:
        return block.function.name
    try:
        s = gdb.execute("info symbol %d" % addr, to_string=True).split()
        if s and s[0] != "No":
            return s[0]
    except gdb.error:
        pass
    return "0x%x" % addr


def fiber_tasks(f, stack):
    """(task id, fn, pool, state, wait text, fiber) for each run on f."""
    depth = _atomic(f["depth"])
    if depth == 0:
        return
    fstate = _atomic(f["state"]) if stack else 1
    if stack and fstate == 0:
        return
    kind = _atomic(f["wait"]["kind"])
    runs = f["runs"]
    nest = runs.type.sizeof // runs[0].type.sizeof
    kept = min(depth, nest)
    for i in range(kept):
        r = runs[i]
        task, fn, pool = int(r["task"]), int(r["fn"]), r["pool"]
        if task == 0:
            continue
        if i + 1 < depth:
            nxt = int(runs[i + 1]["task"]) if i + 1 < kept else 0
            yield task, fn, pool, "running", "wait inline 0x%x" % nxt, f
            continue
        if stack and fstate != 1:
            state = F_STATES.get(fstate, "?")
        elif kind:
            state = "parked" if stack else "blocked"
        else:
            state = "running"
        wait = ""
        if kind:
            w = f["wait"]
            obj, arg = int(w["obj"]), int(w["arg"])
            name = W_KINDS.get(kind, "?")
            if name in ("future", "promise"):
                wait = "wait %s 0x%x" % (name, obj)
            elif name == "chan":
                wait = "wait chan 0x%x %s" % (obj, "send" if arg == 1 else "recv")
            elif name in ("any", "select"):
                wait = "wait %s %d" % (name, arg)
            else:
                wait = "wait " + name
            d = int(w["deadline"])
            wait += " deadline " + ("none" if d == -1 else "at %d ns" % d)
        yield task, fn, pool, state, wait, f


def all_tasks():
    for f in stack_fibers():
        for t in fiber_tasks(f, True):
            yield t
    for f in thread_fibers():
        for t in fiber_tasks(f, False):
            yield t


def describe(t):
    task, fn, pool, state, wait, _ = t
    line = "pool %s task 0x%x fn %s state %s" % (pool_name(pool), task, symbol(fn), state)
    return line + (" " + wait if wait else "")


# ------------------------------------------------ a parked task's backtrace

def _saved_registers(sp):
    """The registers a switch saved at sp, as {name: value}, and the pc."""
    arch = gdb.selected_inferior().architecture().name()
    word = gdb.lookup_type("unsigned long").pointer()
    p = gdb.Value(sp).cast(word)
    if "x86-64" in arch:
        # MXCSR, x87 CW, pad (16 bytes), r15, r14, r13, r12, rbx, rbp, ret
        regs = {"r15": int(p[2]), "r14": int(p[3]), "r13": int(p[4]),
                "r12": int(p[5]), "rbx": int(p[6]), "rbp": int(p[7])}
        regs["rip"] = int(p[8])
        regs["rsp"] = sp + 72
        return regs
    if "aarch64" in arch:
        # see switch_aarch64.S: x19..x28, x29, x30, d8..d15, FPCR (176 bytes)
        regs = {"x%d" % (19 + i): int(p[i]) for i in range(10)}
        regs["x29"] = int(p[10])
        regs["x30"] = int(p[11])
        regs["pc"] = int(p[11])
        regs["sp"] = sp + 176
        return regs
    raise gdb.GdbError("libasync: no saved-context layout for %s" % arch)


def parked_backtrace(f):
    """Point the selected thread's registers at the fiber's saved context,
    print `bt`, and put them back. A core file's registers cannot be
    written: there, only `async tasks` works."""
    sp = int(f["ctx"]["sp"])
    if sp == 0:
        raise gdb.GdbError("libasync: the fiber has no saved context")
    regs = _saved_registers(sp)
    gdb.execute("frame 0", to_string=True)
    saved = {r: int(gdb.parse_and_eval("$" + r)) for r in regs}
    try:
        for r, v in regs.items():
            gdb.execute("set $%s = %d" % (r, v), to_string=True)
    except gdb.error as e:
        raise gdb.GdbError("libasync: cannot load the task's registers (%s); "
                           "`async bt` needs a live process" % e)
    try:
        gdb.execute("bt")
    finally:
        for r, v in saved.items():
            gdb.execute("set $%s = %d" % (r, v), to_string=True)


class AsyncPrefix(gdb.Command):
    """libasync: `async tasks`, `async bt TASKID`, `async bt all`."""

    def __init__(self):
        super().__init__("async", gdb.COMMAND_STACK, prefix=True)


class AsyncTasks(gdb.Command):
    """List every unfinished libasync task, as async_dump does."""

    def __init__(self):
        super().__init__("async tasks", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        n = 0
        for t in all_tasks():
            print(describe(t))
            n += 1
        print("libasync: %d tasks" % n)


class AsyncBt(gdb.Command):
    """Backtrace of a parked libasync task: async bt TASKID | all."""

    def __init__(self):
        super().__init__("async bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        arg = arg.strip()
        if not arg:
            raise gdb.GdbError("usage: async bt TASKID | all")
        want = None if arg == "all" else int(gdb.parse_and_eval(arg))
        shown = 0
        for t in all_tasks():
            task, _, _, state, _, f = t
            if want is not None and task != want:
                continue
            print(describe(t))
            if state in ("parked", "runnable") and f["is_stack"]:
                try:
                    parked_backtrace(f)
                except gdb.GdbError as e:
                    print("  " + str(e))
                shown += 1
            else:
                print("  (not parked: its thread's own backtrace is in "
                      "`thread apply all bt`)")
            print()
        if want is not None and shown == 0:
            print("libasync: no parked task 0x%x" % want)


AsyncPrefix()
AsyncTasks()
AsyncBt()
