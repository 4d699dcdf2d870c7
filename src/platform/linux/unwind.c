/*
 * unwind.c - raw backtraces and the interrupted pc, for crash handlers.
 *
 * glibc's backtrace() is async-signal-safe once its unwinder (libgcc_s) is
 * loaded; the first call loads it with dlopen(), which is not, so
 * mp__backtrace_prepare() makes that first call outside any handler.
 */
#define _GNU_SOURCE
#include "../platform.h"

#include <execinfo.h>
#include <ucontext.h>

static pthread_once_t unwinder_once = PTHREAD_ONCE_INIT;

static void load_unwinder(void)
{
    void *frames[2];
    (void)backtrace(frames, 2);
}

void mp__backtrace_prepare(void)
{
    pthread_once(&unwinder_once, load_unwinder);
}

int mp__backtrace(void **frames, int max)
{
    return max > 0 ? backtrace(frames, max) : 0;
}

uintptr_t mp__context_pc(const void *uctx)
{
    const ucontext_t *uc = uctx;
    if (!uc)
        return 0;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#elif defined(__i386__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_EIP];
#else
    return 0;
#endif
}
