/*
 * shutdown_event.c - the program-wide shutdown event: one Event in a page
 * of shared memory that every process of the program maps, for the
 * pattern where workers loop until a shutdown is requested.
 *
 * DESIGN
 * The page is a memfd, made the first time something needs it - at the
 * latest just before the first child starts (process.c), so that every
 * child of the program can reach it:
 *   - a fork child inherits the mapping (same address) and the descriptor;
 *   - a spawn or forkserver child receives the descriptor with its start
 *     request (request.c) and maps it before its target runs.
 * Every process keeps the descriptor (close-on-exec), so that it can hand
 * the page on to children of its own: the whole tree shares one event.
 * Nothing in the page is trusted beyond what mp_event checks: a process
 * that maps a page with the wrong size or magic ignores it.
 *
 * Setting the event is an atomic exchange and a futex wake: safe in a
 * signal handler, which is where mp_signals_install() sets it.
 */
#define _GNU_SOURCE
#include "shutdown_event.h"
#include "log.h"

#define PAGE_MAGIC 0x6d707364u /* "mpsd" */
#define PAGE_SIZE  4096u

typedef struct sdpage {
    mp_event event; /* first: 8-byte aligned */
    _Atomic uint32_t magic;
} sdpage;

_Static_assert(sizeof(sdpage) <= PAGE_SIZE, "the page holds the event");

static struct {
    pthread_mutex_t lock;
    sdpage *_Atomic page;
    int fd;
} sd = {PTHREAD_MUTEX_INITIALIZER, NULL, -1};

/* Maps fd's page; with init, lays it out first.  Returns the page or
 * NULL. */
static sdpage *map_page(int fd, bool init, int *err)
{
    void *addr = NULL;
    *err = mp__map_fd(fd, PAGE_SIZE, NULL, &addr);
    if (*err < 0)
        return NULL;
    sdpage *p = addr;
    if (init) {
        *err = mp_event_init(&p->event);
        atomic_store_explicit(&p->magic, PAGE_MAGIC, memory_order_release);
    } else if (atomic_load_explicit(&p->magic, memory_order_acquire) != PAGE_MAGIC) {
        *err = MP_EINVAL;
    }
    if (*err < 0) {
        mp__unmap(addr, PAGE_SIZE);
        return NULL;
    }
    return p;
}

int mp__sdev_get(mp_event **ev)
{
    sdpage *p = atomic_load_explicit(&sd.page, memory_order_acquire);
    if (p) {
        *ev = &p->event;
        return 0;
    }
    int rc = 0;
    pthread_mutex_lock(&sd.lock);
    p = atomic_load(&sd.page);
    if (!p) {
        int fd = mp__memfd_new("shutdown", PAGE_SIZE);
        rc = fd;
        if (fd >= 0 && (rc = mp__memfd_seal_size(fd)) == 0 && (p = map_page(fd, true, &rc))) {
            sd.fd = fd;
            atomic_store_explicit(&sd.page, p, memory_order_release);
        } else if (fd >= 0) {
            mp__close(fd);
        }
    }
    pthread_mutex_unlock(&sd.lock);
    *ev = p ? &p->event : NULL;
    return p ? 0 : rc;
}

int mp__sdev_fd(void)
{
    return atomic_load(&sd.page) ? sd.fd : -1;
}

void mp__sdev_adopt(int fd)
{
    if (fd < 0)
        return;
    size_t size = 0;
    int err = mp__fd_size(fd, &size);
    sdpage *p = err == 0 && size == PAGE_SIZE ? map_page(fd, false, &err) : NULL;
    pthread_mutex_lock(&sd.lock);
    if (p && !atomic_load(&sd.page)) {
        sd.fd = fd;
        atomic_store_explicit(&sd.page, p, memory_order_release);
        p = NULL;
        fd = -1;
    }
    pthread_mutex_unlock(&sd.lock);
    if (p)
        mp__unmap(p, PAGE_SIZE);
    mp__close(fd);
}

void mp__sdev_set(void)
{
    sdpage *p = atomic_load_explicit(&sd.page, memory_order_acquire);
    if (p)
        (void)mp_event_set(&p->event);
}

/* ---- the API -------------------------------------------------------------- */

int mp_shutdown_event(mp_event **out)
{
    MP__NONNULL(out);
    return mp__sdev_get(out);
}

bool mp_shutdown_requested(void)
{
    sdpage *p = atomic_load_explicit(&sd.page, memory_order_acquire);
    return p && mp_event_is_set(&p->event);
}
