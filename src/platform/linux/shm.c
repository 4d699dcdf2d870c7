/*
 * shm.c - shared mappings, and where named segments live.
 *
 * mproc prefers anonymous shared memory to named objects: a memfd or a
 * MAP_SHARED|MAP_ANONYMOUS mapping vanishes with the last process that maps
 * it, so nothing is left in /dev/shm even when every process is killed.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

int mp__memfd_new(const char *name, size_t size)
{
    char full[64];
    snprintf(full, sizeof full, "mproc-%s", name ? name : "anon");
    int fd = memfd_create(full, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    if (size > 0 && ftruncate(fd, (off_t)size) != 0) {
        int e = -errno;
        mp__close(fd);
        return e;
    }
    return fd;
}

int mp__map_fd(int fd, size_t size, void *hint, void **addr)
{
    int flags = MAP_SHARED | (hint ? MAP_FIXED_NOREPLACE : 0);
    void *p = mmap(hint, size, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    if (hint && p != hint) {
        /* Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the
         * address as a hint. */
        munmap(p, size);
        return MP_EEXIST;
    }
    *addr = p;
    return 0;
}

int mp__map_anon_shared(size_t size, void **addr)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    *addr = p;
    return 0;
}

void mp__unmap(void *addr, size_t size)
{
    if (addr)
        munmap(addr, size);
}

size_t mp__page_size(void)
{
    static size_t page;
    if (!page)
        page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

int mp__shm_identity(const char *name, uint64_t *dev, uint64_t *ino)
{
    /* glibc's shm_open() creates "/name" as /dev/shm/name. */
    char full[PATH_MAX];
    int n = snprintf(full, sizeof full, "/dev/shm%s", name);
    if (n < 0 || (size_t)n >= sizeof full)
        return MP_ENAMETOOLONG;
    struct stat st;
    if (stat(full, &st) != 0)
        return -errno;
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return 0;
}
