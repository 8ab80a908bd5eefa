/*
 * lib/describe.c — how the library names a pool and a task in what it
 * writes: every log line, the dump, the watchdog.
 *
 * Owns: the prefix every library log line starts with,
 *   "pool NAME"                       a line about a pool, or
 *   "pool NAME task 0xID fn SYMBOL"   a line about one of its tasks,
 * followed by ": " and the message. NAME is the pool's configured name
 * ("async" by default, "-" for no pool: a promise), with blanks and control
 * characters turned into '_' so that every line splits on blanks. The task
 * id is the address of the task's record, the future_t * its submitter
 * holds: unique among tasks that have not finished (a record is reused only
 * once its task is done and its last handle freed), and free to print (a
 * record has no room for a sequence number: 72 bytes, and a pending task
 * must stay under 100). SYMBOL is the function's name as dladdr(3) finds
 * it: exported functions of shared objects, and those of the program when
 * it is linked with -rdynamic (else dladdr knows only the dynamic symbol
 * table, and a static function is never named): otherwise the address,
 * which `addr2line -f -e PROGRAM` or gdb's `info symbol` turns into a name.
 *
 * Nothing here is shared or locked; dladdr takes the dynamic linker's own
 * lock, so none of this runs in a signal handler (the signal dump hands
 * its work to a thread, dump.c).
 */
#include "internal.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>

void async__symbol(char *buf, size_t size, uintptr_t fn)
{
    Dl_info info;
    if (fn && dladdr((void *)fn, &info) && info.dli_sname && info.dli_saddr == (void *)fn)
        snprintf(buf, size, "%s", info.dli_sname);
    else if (fn && dladdr((void *)fn, &info) && info.dli_sname)
        snprintf(buf, size, "%s+0x%zx", info.dli_sname,
                 (size_t)(fn - (uintptr_t)info.dli_saddr));
    else
        snprintf(buf, size, "0x%" PRIxPTR, fn);
}

int async__describe_named(char *buf, size_t size, const char *pool_name, uintptr_t task,
                          uintptr_t fn)
{
    char name[16];
    snprintf(name, sizeof name, "%s", pool_name ? (pool_name[0] ? pool_name : "_") : "-");
    for (char *c = name; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            *c = '_';
    if (!task)
        return snprintf(buf, size, "pool %s", name);
    char sym[128];
    async__symbol(sym, sizeof sym, fn);
    return snprintf(buf, size, "pool %s task 0x%" PRIxPTR " fn %s", name, task, sym);
}

int async__describe(char *buf, size_t size, const struct async_pool *pool,
                    uintptr_t task, uintptr_t fn)
{
    const struct async_pool_head *h = (const struct async_pool_head *)(const void *)pool;
    return async__describe_named(buf, size, h ? h->name : NULL, task, fn);
}

void async__log_task(struct async_pool *pool, uintptr_t task, uintptr_t fn,
                     const char *fmt, ...)
{
    char line[768];
    int n = async__describe(line, sizeof line, pool, task, fn);
    if (n < 0)
        n = 0;
    if ((size_t)n < sizeof line - 2) {
        line[n++] = ':';
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
    }
    async__pool_log(pool, line);
}

void async__pool_log(struct async_pool *pool, const char *line)
{
    struct async_pool_head *h = (struct async_pool_head *)(void *)pool;
    if (h && h->log)
        h->log(h->log_ctx, line);
    else
        fprintf(stderr, "libasync: %s\n", line);
}
