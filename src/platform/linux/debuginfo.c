/*
 * debuginfo.c - source files and lines for addresses, from DWARF, through
 * elfutils' libdw.
 *
 * Crash reports say where each frame was in the source.  The parent reads
 * the DWARF after the child died, from the file on disk (or from the
 * separate debug file a distribution installs for it, found by build id
 * under /usr/lib/debug), as mp__symbolize() reads the symbol table.  Built
 * only when the build found libdw (MPROC_WITH_DW); debuginfo_none.c stands
 * in otherwise.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <elfutils/libdwfl.h>
#include <stdlib.h>

struct mp__debuginfo {
    Dwfl *dwfl;
    Dwfl_Module *mod;
};

/* Where libdw looks for separate debug files: its default path. */
static char *debuginfo_path;

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

int mp__debuginfo_open(const char *path, mp__debuginfo **out)
{
    *out = NULL;
    mp__debuginfo *d = calloc(1, sizeof *d);
    if (!d)
        return MP_ENOMEM;
    d->dwfl = dwfl_begin(&callbacks);
    if (!d->dwfl) {
        free(d);
        return MP_ENOMEM;
    }
    /* Placed at its own link-time addresses (base 0, plus the first
     * segment's p_vaddr), so that an address minus its load bias - what
     * a crash record holds - is an address in this module as it is. */
    d->mod = dwfl_report_elf(d->dwfl, path, path, -1, 0, true);
    if (!d->mod || dwfl_report_end(d->dwfl, NULL, NULL) != 0) {
        mp__debuginfo_close(d);
        return MP_ENOENT;
    }
    *out = d;
    return 0;
}

int mp__debuginfo_line(mp__debuginfo *d, uint64_t offset, char *file, size_t cap, int *line)
{
    if (!d || !file || cap == 0 || !line)
        return MP_EINVAL;
    Dwarf_Addr bias = 0;
    /* Loads the DWARF (its own or a separate file's) on first use. */
    if (!dwfl_module_getdwarf(d->mod, &bias))
        return MP_ENOENT;
    Dwfl_Line *l = dwfl_module_getsrc(d->mod, offset + bias);
    int lineno = 0;
    const char *name = l ? dwfl_lineinfo(l, NULL, &lineno, NULL, NULL, NULL) : NULL;
    if (!name || lineno <= 0)
        return MP_ENOENT;
    /* A relative name is relative to the compilation's directory. */
    const char *dir = name[0] != '/' ? dwfl_line_comp_dir(l) : NULL;
    int n = dir ? snprintf(file, cap, "%s/%s", dir, name) : snprintf(file, cap, "%s", name);
    if (n < 0 || (size_t)n >= cap)
        return MP_ENAMETOOLONG;
    *line = lineno;
    return 0;
}

void mp__debuginfo_close(mp__debuginfo *d)
{
    if (!d)
        return;
    dwfl_end(d->dwfl);
    free(d);
}
