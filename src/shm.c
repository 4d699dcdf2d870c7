/*
 * shm.c - named shared-memory segments (Python's SharedMemory): create
 * with a size, attach by name from any process, close, unlink.
 *
 * A segment is a POSIX shared-memory object, "/mproc-<name>" (on Linux,
 * the file /dev/shm/mproc-<name>).
 * Creating one goes through the program's tracker (tracker.c), which
 * opens it and from then on unlinks it once no process of the program
 * holds it; attach and close report holds to the tracker.  A handle
 * remembers the segment's inode, so that every message names exactly the
 * segment this process mapped, even if the name has since been removed
 * and reused.
 *
 * Closing and freeing are apart, as for every handle of the library:
 * close gives up the mapping and the hold (once: a closed handle has no
 * mapping), free closes if needed and releases the handle's own memory.
 *
 * After fork, the child has the mapping and a copy of the handle, but the
 * hold is the parent's: the copy's close only unmaps (the handle records
 * the process that opened it).
 */
#define _GNU_SOURCE
#include "tracker.h"

#include "log.h"
#include "self.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX "/mproc-"

struct mp_shm {
    char name[MP_SHM_NAME_MAX + 1];
    char path[sizeof PREFIX + MP_SHM_NAME_MAX];
    void *addr;
    size_t size;
    uint64_t ino;
    pid_t owner; /* the process whose hold this handle stands for */
};

static _Atomic unsigned name_counter;

/* 0 for a name a segment may have, else the error, with a detail that
 * names fn, the call being checked. */
static int check_name(const char *fn, const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return mp__fail(
            MP_EINVAL,
            "%s: name must be non-empty, without '/', not \".\" or \"..\" (got \"%.*s\")", fn, 64,
            name);
    if (len > MP_SHM_NAME_MAX)
        return mp__fail(MP_ENAMETOOLONG, "%s: name must be at most %d bytes (got %zu)", fn,
                        MP_SHM_NAME_MAX, len);
    return 0;
}

static mp_shm *handle_new(const char *name)
{
    mp_shm *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->path, sizeof s->path, PREFIX "%s", name);
    s->owner = mp__self_pid();
    return s;
}

/* Maps fd whole; records size and inode.  Returns 0 or an error. */
static int map_segment(mp_shm *s, int fd, size_t size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (size == 0) {
        if (st.st_size <= 0)
            return MP_EAGAIN; /* being created: not sized yet */
        size = (size_t)st.st_size;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    s->addr = p;
    s->size = size;
    s->ino = (uint64_t)st.st_ino;
    return 0;
}

int mp_shm_create(const char *name, size_t size, mp_shm **out)
{
    MP__NONNULL(out);
    *out = NULL;
    char made[64];
    if (!name) {
        snprintf(made, sizeof made, "%d-%d-%u", (int)mp__session(), (int)mp__self_pid(),
                 atomic_fetch_add(&name_counter, 1) + 1);
        name = made;
    }
    int rc = check_name(__func__, name);
    if (rc < 0)
        return rc;
    if (size == 0 || size > (size_t)INT64_MAX)
        return mp__fail(MP_EINVAL, "mp_shm_create: size must be 1 to INT64_MAX bytes (got %zu)",
                        size);
    mp_shm *s = handle_new(name);
    if (!s)
        return MP_ENOMEM;
    int fd = -1;
    rc = mp__tracker_create(s->path, &fd);
    if (rc == 0) {
        do {
            rc = ftruncate(fd, (off_t)size) == 0 ? 0 : -errno;
        } while (rc == MP_EINTR);
        if (rc == 0)
            rc = map_segment(s, fd, size);
        if (rc < 0) {
            struct stat st;
            uint64_t ino = fstat(fd, &st) == 0 ? (uint64_t)st.st_ino : 0;
            (void)mp__tracker_unlink(s->path, ino);
        }
        mp__close(fd);
    }
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int mp_shm_attach(const char *name, mp_shm **out)
{
    MP__NONNULL(out);
    *out = NULL;
    MP__NONNULL(name);
    int rc = check_name(__func__, name);
    if (rc < 0)
        return rc;
    mp_shm *s = handle_new(name);
    if (!s)
        return MP_ENOMEM;
    int fd = shm_open(s->path, O_RDWR | O_CLOEXEC, 0);
    rc = fd < 0 ? -errno : map_segment(s, fd, 0);
    mp__close(fd);
    if (rc < 0) {
        free(s);
        return rc;
    }
    mp__tracker_attach(s->path, s->ino);
    *out = s;
    return 0;
}

void *mp_shm_addr(const mp_shm *s)
{
    return s ? s->addr : NULL;
}

size_t mp_shm_size(const mp_shm *s)
{
    return s ? s->size : 0;
}

const char *mp_shm_name(const mp_shm *s)
{
    return s ? s->name : NULL;
}

int mp_shm_unlink(mp_shm *s)
{
    MP__NONNULL(s);
    int rc = mp__tracker_unlink(s->path, s->ino);
    if (rc != MP_ESRCH)
        return rc;
    /* Not tracked by this program (another program made it): unlink it
     * directly, if the name still names this segment. */
    uint64_t dev, ino;
    if (mp__shm_identity(s->path, &dev, &ino) != 0 || ino != s->ino)
        return MP_ENOENT;
    return shm_unlink(s->path) == 0 ? 0 : -errno;
}

int mp_shm_close(mp_shm *s)
{
    MP__NONNULL(s);
    if (!s->addr)
        return 0; /* closed before */
    mp__unmap(s->addr, s->size);
    s->addr = NULL;
    s->size = 0;
    if (s->owner == mp__self_pid())
        mp__tracker_close(s->path, s->ino);
    return 0;
}

void mp_shm_free(mp_shm *s)
{
    if (!s)
        return;
    (void)mp_shm_close(s);
    free(s);
}
