/*
 * symbol.c - function names for addresses, read from ELF symbol tables.
 *
 * Crash reports name the functions of a backtrace.  dladdr() only sees the
 * dynamic symbol table, which holds exported functions and nothing static;
 * the full .symtab of an unstripped binary names every function.  The
 * parent does this work after the child died, from the file on disk, so the
 * crashing child only records module offsets (async-signal-safe).
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Looks for offset among the symbols of one table.  Returns true and fills
 * name/delta when a function covers it. */
static bool search_table(const unsigned char *base, size_t size, const Elf64_Shdr *sh,
                         const Elf64_Shdr *strsh, uint64_t offset, const char **name,
                         uint64_t *delta)
{
    if (sh->sh_entsize != sizeof(Elf64_Sym) || sh->sh_offset + sh->sh_size > size ||
        strsh->sh_offset + strsh->sh_size > size)
        return false;
    const Elf64_Sym *syms = (const Elf64_Sym *)(base + sh->sh_offset);
    size_t n = sh->sh_size / sizeof(Elf64_Sym);
    const char *strs = (const char *)(base + strsh->sh_offset);
    const Elf64_Sym *best = NULL;
    for (size_t i = 0; i < n; i++) {
        const Elf64_Sym *s = &syms[i];
        int type = ELF64_ST_TYPE(s->st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_value == 0 ||
            s->st_name >= strsh->sh_size)
            continue;
        if (offset < s->st_value)
            continue;
        uint64_t end = s->st_value + (s->st_size ? s->st_size : 1);
        if (offset < end) {
            best = s;
            break;
        }
    }
    if (!best)
        return false;
    *name = strs + best->st_name;
    *delta = offset - best->st_value;
    return true;
}

int mp__symbolize(const char *path, uint64_t offset, char *buf, size_t cap, uint64_t *delta)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        mp__close(fd);
        return MP_ENOENT;
    }
    size_t size = (size_t)st.st_size;
    const unsigned char *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    mp__close(fd);
    if (base == MAP_FAILED)
        return -errno;

    int rc = MP_ENOENT;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_shentsize != sizeof(Elf64_Shdr) ||
        eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) > size)
        goto out;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(base + eh->e_shoff);
    const char *name = NULL;
    /* .symtab first (all functions), then .dynsym (exported ones). */
    const unsigned types[] = {SHT_SYMTAB, SHT_DYNSYM};
    for (size_t t = 0; t < 2 && !name; t++) {
        for (unsigned i = 0; i < eh->e_shnum && !name; i++) {
            if (sh[i].sh_type != types[t] || sh[i].sh_link >= eh->e_shnum)
                continue;
            search_table(base, size, &sh[i], &sh[sh[i].sh_link], offset, &name, delta);
        }
    }
    if (name) {
        /* C names hold no dots: what follows one is a suffix GCC gives to
         * specialised copies (".constprop.0", ".isra.0", ".cold"). */
        size_t len = strnlen(name, cap - 1);
        const char *dot = memchr(name, '.', len);
        if (dot && dot != name)
            len = (size_t)(dot - name);
        memcpy(buf, name, len);
        buf[len] = '\0';
        rc = 0;
    }
out:
    munmap((void *)base, size);
    return rc;
}
