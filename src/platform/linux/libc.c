/*
 * libc.c - what mproc uses of the C library beyond ISO C and POSIX
 * (glibc's extensions), so that a port to another C library finds it in
 * one place.
 */
#define _GNU_SOURCE
#include "../platform.h"

#include <stdio_ext.h>
#include <string.h>

const char *mp__errno_text(int err)
{
    /* strerrordesc_np, unlike strerror, neither allocates nor depends on
     * the locale, and answers NULL for a number it does not know. */
    return err > 0 ? strerrordesc_np(err) : NULL;
}

const char *mp__errno_name(int err)
{
    return err > 0 ? strerrorname_np(err) : NULL;
}

void mp__stdio_discard(FILE *f)
{
    __fpurge(f);
}
