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
#include "fnref.h"

#include <dlfcn.h>

struct find_addr {
    uintptr_t addr;
    char name[PATH_MAX];
    uintptr_t bias;
    bool exec; /* the segment holding addr is executable */
    bool found;
};

static int find_addr_cb(const mp__module *m, void *data)
{
    struct find_addr *f = data;
    for (size_t i = 0; i < m->nsegs; i++) {
        if (f->addr >= m->seg[i].lo && f->addr < m->seg[i].hi) {
            /* The main program has the empty name. */
            snprintf(f->name, sizeof f->name, "%s", m->path);
            f->bias = m->bias;
            f->exec = m->seg[i].exec;
            f->found = true;
            return 1;
        }
    }
    return 0;
}

int mp__fnref_from_ptr(const void *fn, mp__fnref *ref)
{
    struct find_addr f = {.addr = (uintptr_t)fn};
    (void)mp__modules_each(find_addr_cb, &f);
    if (!f.found || !f.exec)
        return MP_EINVAL;
    ref->offset = f.addr - f.bias;
    snprintf(ref->path, sizeof ref->path, "%s", f.name);
    return 0;
}

struct find_mod {
    const char *path; /* "": the main program */
    uint64_t offset;
    uintptr_t addr;
    bool exec;
    bool found;
};

static int find_mod_cb(const mp__module *mod, void *data)
{
    struct find_mod *m = data;
    if (strcmp(mod->path, m->path) != 0)
        return 0;
    /* Only an offset inside an executable segment of the module counts:
     * a corrupt request must not send the child to jump into data. */
    m->found = true;
    if (m->offset > UINTPTR_MAX - mod->bias)
        return 1; /* beyond the address space: in no segment */
    uintptr_t addr = mod->bias + (uintptr_t)m->offset;
    for (size_t i = 0; i < mod->nsegs; i++) {
        if (addr >= mod->seg[i].lo && addr < mod->seg[i].hi) {
            m->addr = addr;
            m->exec = mod->seg[i].exec;
            break;
        }
    }
    return 1;
}

int mp__fnref_resolve(const mp__fnref *ref, void **fn)
{
    struct find_mod m = {.path = ref->path, .offset = ref->offset};
    (void)mp__modules_each(find_mod_cb, &m);
    if (!m.found && m.path[0]) {
        /* A module the parent loaded with dlopen(): load it here too.  The
         * handle is kept for the life of the process on purpose. */
        if (!dlopen(m.path, RTLD_NOW | RTLD_GLOBAL))
            return MP_ENOENT;
        (void)mp__modules_each(find_mod_cb, &m);
    }
    if (!m.found)
        return MP_ENOENT;
    if (!m.exec)
        return MP_EINVAL;
    *fn = (void *)m.addr;
    return 0;
}
