/*
 * vm.c - address space reservations and memory files that grow while
 * several processes map them.
 *
 * A pool hands out pointers into a shared file that grows on demand.  A
 * mapping that moved when the file grew (mremap) would invalidate them, so
 * each process reserves a large range of address space once - PROT_NONE,
 * MAP_NORESERVE: no memory is committed and no page table is filled - and
 * maps the file's new parts into it with MAP_FIXED as they appear.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int mp__vm_reserve(size_t size, void **addr)
{
    void *p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    *addr = p;
    return 0;
}

int mp__vm_map_fixed(int fd, size_t off, size_t len, void *addr)
{
    /* MAP_FIXED is safe here: addr lies inside a reservation the caller
     * owns, so nothing else can live there. */
    void *p = mmap(addr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)off);
    return p == MAP_FAILED ? -errno : 0;
}

int mp__file_resize(int fd, size_t size)
{
    int rc;
    do {
        rc = ftruncate(fd, (off_t)size);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : -errno;
}

int mp__file_release(int fd, size_t off, size_t len)
{
    if (len == 0)
        return 0;
    int rc = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
    return rc == 0 ? 0 : -errno;
}
