/*
 * event.c - eventfds: a counter a thread or process can poll, for waking a
 * thread that sleeps in poll() beside other descriptors.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

int mp__eventfd_new(void)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

void mp__eventfd_signal(int fd)
{
    /* Called from signal handlers too: errno is theirs to keep. */
    int saved = errno;
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    errno = saved;
}

void mp__eventfd_drain(int fd)
{
    uint64_t v;
    ssize_t n;
    do {
        n = read(fd, &v, sizeof v);
    } while (n < 0 && errno == EINTR);
}
