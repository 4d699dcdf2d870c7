/* A shared module for tests/test_report.c, which loads it by a path with
 * ".." in it: a function of it crashes in a child, and the report must
 * name the module by its canonical path. */
#include <stdint.h>

int mpt_module_crash(void *arg);

/* An address the compiler cannot see through. */
static volatile uintptr_t module_bad_address = 24;

__attribute__((noinline)) int mpt_module_crash(void *arg)
{
    (void)arg;
    return *(volatile int *)module_bad_address;
}
