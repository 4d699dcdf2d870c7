/*
 * vm.c - address space reservations, memory files that grow while several
 * processes map them, giving memory back, and private stacks.
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
#include <sys/uio.h>
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

int mp__vm_release(void *addr, size_t len)
{
    /* MADV_REMOVE frees the backing pages of the shared file itself (a
     * hole punched through the mapping), for every process that maps it;
     * MADV_DONTNEED would only drop this process's view of them. */
    return madvise(addr, len, MADV_REMOVE) == 0 ? 0 : -errno;
}

int mp__map_stack(size_t size, void **addr)
{
    void *p =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    *addr = p;
    return 0;
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

/* process_vm_readv/writev move at most what the kernel chooses per call
 * (a partial count at a page it could not reach, or after a signal): go on
 * until everything moved or an error stops it. */
static int vm_move(pid_t pid, void *local, uint64_t remote, size_t len, bool write)
{
    size_t done = 0;
    while (done < len) {
        struct iovec l = {(char *)local + done, len - done};
        struct iovec r = {(void *)(uintptr_t)(remote + done), len - done};
        ssize_t n = write ? process_vm_writev(pid, &l, 1, &r, 1, 0)
                          : process_vm_readv(pid, &l, 1, &r, 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EFAULT;
        done += (size_t)n;
    }
    return 0;
}

int mp__vm_read(pid_t pid, uint64_t remote, void *local, size_t len)
{
    return vm_move(pid, local, remote, len, false);
}

int mp__vm_write(pid_t pid, uint64_t remote, const void *local, size_t len)
{
    return vm_move(pid, (void *)(uintptr_t)local, remote, len, true);
}
