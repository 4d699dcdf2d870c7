/*
 * memfile.c - sizes of memory files.
 *
 * A memory file shared between processes is mapped by each of them; if one
 * could shrink it, the others would take SIGBUS on the pages that vanished.
 * Sealing the size when the file is made rules that out for good, whoever
 * gets hold of the descriptor later.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

int mp__memfd_seal_size(int fd)
{
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0 ? 0 : -errno;
}

int mp__fd_size(int fd, size_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (st.st_size < 0)
        return MP_EINVAL;
    *size = (size_t)st.st_size;
    return 0;
}
