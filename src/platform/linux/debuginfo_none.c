/*
 * debuginfo_none.c - source lines for a build without libdw
 * (MPROC_WITH_DW=OFF, or libdw not found): there are none, and crash
 * reports name functions only (symbol.c).
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

int mp__debuginfo_open(const char *path, mp__debuginfo **out)
{
    (void)path;
    *out = NULL;
    return MP_ENOSYS;
}

int mp__debuginfo_line(mp__debuginfo *d, uint64_t offset, char *file, size_t cap, int *line)
{
    (void)d;
    (void)offset;
    (void)file;
    (void)cap;
    (void)line;
    return MP_ENOSYS;
}

void mp__debuginfo_close(mp__debuginfo *d)
{
    (void)d;
}
