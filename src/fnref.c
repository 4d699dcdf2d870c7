/*
 * fnref.c - naming a function so that another image of the program finds it.
 *
 * Spawn and forkserver children run in a fresh image of the same program,
 * where address space layout randomisation put every module somewhere
 * else.  A function's offset from its module's load bias is the same in
 * every image, so (module file, offset) names it portably - static
 * functions included, with no registry to keep.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <dlfcn.h>
#include <link.h>

struct find_addr {
    uintptr_t addr;
    const char *name;
    uintptr_t bias;
    bool is_main;
    bool exec; /* the segment holding addr is executable */
    bool found;
};

static int find_addr_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct find_addr *f = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (f->addr >= lo && f->addr < lo + ph->p_memsz) {
            f->name = info->dlpi_name;
            f->bias = info->dlpi_addr;
            f->exec = (ph->p_flags & PF_X) != 0;
            /* The main program is reported first, with an empty name. */
            f->is_main = info->dlpi_name == NULL || info->dlpi_name[0] == '\0';
            f->found = true;
            return 1;
        }
    }
    return 0;
}

int mp__fnref_from_ptr(const void *fn, mp__fnref *ref)
{
    struct find_addr f = {.addr = (uintptr_t)fn};
    dl_iterate_phdr(find_addr_cb, &f);
    if (!f.found || !f.exec)
        return MP_EINVAL;
    ref->offset = f.addr - f.bias;
    if (f.is_main)
        ref->path[0] = '\0';
    else
        snprintf(ref->path, sizeof ref->path, "%s", f.name);
    return 0;
}

struct find_mod {
    const char *path; /* NULL: the main program */
    uint64_t offset;
    uintptr_t addr;
    bool exec;
    bool found;
};

static int find_mod_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct find_mod *m = data;
    bool is_main = info->dlpi_name == NULL || info->dlpi_name[0] == '\0';
    if (m->path ? (is_main || strcmp(info->dlpi_name, m->path) != 0) : !is_main)
        return 0;
    /* Only an offset inside an executable segment of the module counts:
     * a corrupt request must not send the child to jump into data. */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && m->offset >= ph->p_vaddr &&
            m->offset < ph->p_vaddr + ph->p_memsz) {
            m->addr = info->dlpi_addr + m->offset;
            m->exec = (ph->p_flags & PF_X) != 0;
            break;
        }
    }
    m->found = true;
    return 1;
}

int mp__fnref_resolve(const mp__fnref *ref, void **fn)
{
    struct find_mod m = {.path = ref->path[0] ? ref->path : NULL, .offset = ref->offset};
    dl_iterate_phdr(find_mod_cb, &m);
    if (!m.found && m.path) {
        /* A module the parent loaded with dlopen(): load it here too.  The
         * handle is kept for the life of the process on purpose. */
        if (!dlopen(m.path, RTLD_NOW | RTLD_GLOBAL))
            return MP_ENOENT;
        dl_iterate_phdr(find_mod_cb, &m);
    }
    if (!m.found)
        return MP_ENOENT;
    if (!m.exec)
        return MP_EINVAL;
    *fn = (void *)m.addr;
    return 0;
}
