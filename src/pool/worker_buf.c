/*
 * worker_buf.c - an apply task's result in a worker (mp_buf), and the
 * worker's result ring.
 *
 * DESIGN
 * Results of apply tasks stay in the job's inline space while they are
 * small, and otherwise go into the worker's own result file, a ring the
 * supervisor reads with pread() and releases in order (res_tail,
 * res_consumed in the slot).  A result that outgrows the free space waits
 * until the supervisor has read everything before it, then has the whole
 * file, grown if need be.
 *
 * Threads.  The worker's one thread; the supervisor only reads the file.
 * Locks: none.
 */
#define _GNU_SOURCE
#include "worker.h"

#include <stdarg.h>
#include <sys/mman.h>

bool mp__pool_res_empty(wctx *c)
{
    return atomic_load(&c->slot->res_consumed) == c->res_produced;
}

/* Sets the file's capacity to cap bytes and maps it.  Only while the ring
 * is empty of unread results (the current, unpublished one excepted,
 * whose bytes the file keeps). */
int mp__pool_res_resize(wctx *c, size_t cap)
{
    /* Rare (the file grows or shrinks): check the descriptor still names
     * the result file; a task may have closed it. */
    int rc = mp__pool_fd_check(c->res_fd, c->res_dev, c->res_ino);
    if (rc < 0) {
        c->cut_off = true;
        return rc;
    }
    rc = mp__file_resize(c->res_fd, cap);
    if (rc < 0)
        return rc;
    void *p = NULL;
    rc = mp__map_fd(c->res_fd, cap, NULL, &p);
    if (rc < 0)
        return rc;
    if (c->res)
        munmap(c->res, c->res_cap);
    c->res = p;
    c->res_cap = cap;
    return 0;
}

/* Where the unread results begin.  The supervisor's res_tail is the end
 * of the last result it read, which is where the next one begins unless
 * that one went to offset 0: into the empty ring, or wrapped around.  A
 * result at 0 may then reach past the older results' end (it grew once
 * they were read), and until the supervisor has read it, res_tail points
 * inside it, whose start would then look free.  The worker knows better
 * meanwhile (res_fresh).  Only the latest result at 0 needs remembering:
 * another goes to 0 only once that one is read.  (res_consumed is stored
 * after res_tail: once it has moved on, res_tail is at least as new.) */
static size_t res_tail(wctx *c)
{
    if (c->res_fresh && atomic_load(&c->slot->res_consumed) == c->res_fresh_at)
        return 0;
    return (size_t)atomic_load(&c->slot->res_tail);
}

/* The end of the free space that starts at off == res_head (or at 0 in an
 * empty ring). */
static size_t res_limit(wctx *c, size_t off)
{
    if (mp__pool_res_empty(c))
        return c->res_cap;
    size_t tail = res_tail(c);
    if (off > tail)
        return c->res_cap;
    if (off == tail)
        return off; /* wrapped around and full */
    return tail;
}

/* A wait condition: the supervisor has read a result since res_seen. */
static bool res_progress(wctx *c)
{
    return atomic_load(&c->slot->res_consumed) != c->res_seen;
}

/* Finds room for a result of need bytes whose first len bytes currently
 * lie at *off (len may be 0), moves them there and updates *off.  Waits
 * for the supervisor when the ring is full.  Returns 0 or an error. */
static int res_place(wctx *c, size_t need, size_t len, size_t *off, bool placed)
{
    for (;;) {
        c->res_seen = atomic_load(&c->slot->res_consumed);
        size_t tail = res_tail(c);
        size_t head = c->res_head;
        size_t to = SIZE_MAX;
        if (mp__pool_res_empty(c)) {
            if (need > c->res_cap) {
                size_t cap = c->res_cap ? c->res_cap : RES_MIN_CAP;
                while (cap < need) {
                    if (cap > SIZE_MAX / 2)
                        return MP_ENOMEM;
                    cap *= 2;
                }
                int rc = mp__pool_res_resize(c, cap);
                if (rc < 0)
                    return rc == MP_ENOSPC ? MP_ENOMEM : rc;
            }
            to = 0;
        } else if (head > tail) {
            if (c->res_cap - head >= need)
                to = head;
            else if (tail >= need)
                to = 0;
        } else if (head < tail && tail - head >= need) {
            to = head;
        }
        if (to != SIZE_MAX) {
            if (placed && len && to != *off)
                memmove(c->res + to, c->res + *off, len);
            *off = to;
            return 0;
        }
        mp__pool_wait_supervisor(c, res_progress);
    }
}

/* Makes room for newlen bytes of result. */
static int buf_grow(mp_buf *b, size_t newlen)
{
    wctx *c = b->c;
    bool placed = b->where == MP__RES_RING;
    if (placed) {
        /* Room right after it: grow in place. */
        size_t limit = res_limit(c, b->off);
        if (limit >= b->off && limit - b->off >= newlen) {
            b->cap = limit - b->off;
            return 0;
        }
    }
    size_t off = b->off;
    int rc = res_place(c, newlen, placed ? b->len : 0, &off, placed);
    if (rc < 0)
        return rc;
    if (!placed && b->len)
        memcpy(c->res + off, b->data, b->len);
    b->where = MP__RES_RING;
    b->off = off;
    b->data = c->res + off;
    size_t limit = res_limit(c, off);
    b->cap = limit > off ? limit - off : 0;
    if (b->cap < newlen)
        b->cap = newlen; /* res_place found room for newlen there */
    return 0;
}

void *mp_buf_alloc(mp_buf *b, size_t len)
{
    if (!b || b->err || len > SIZE_MAX - b->len)
        return NULL;
    size_t newlen = b->len + len;
    int rc = newlen > b->cap ? buf_grow(b, newlen) : 0;
    if (rc < 0) {
        b->err = rc;
        return NULL;
    }
    void *p = b->data + b->len;
    b->len = newlen;
    return p;
}

int mp_buf_append(mp_buf *b, const void *data, size_t len)
{
    MP__NONNULL(b);
    if (len && !data)
        return mp__fail(MP_EINVAL, "mp_buf_append: data must not be NULL when len > 0 (got %zu)",
                        len);
    void *p = mp_buf_alloc(b, len);
    if (!p)
        return len ? (b->err ? b->err : MP_ENOMEM) : 0;
    if (len)
        memcpy(p, data, len);
    return 0;
}

int mp__pool_ring_put(wctx *c, const void *data, size_t len, uint64_t *off)
{
    mp_buf b = {.c = c, .where = MP__RES_INLINE};
    int rc = mp_buf_append(&b, data, len);
    if (rc < 0 || b.where != MP__RES_RING)
        return rc < 0 ? rc : MP_EINVAL;
    mp__pool_res_publish(c, b.off, b.len);
    *off = b.off;
    return 0;
}

void mp__pool_res_publish(wctx *c, size_t off, size_t len)
{
    if (off == 0) {
        c->res_fresh = true;
        c->res_fresh_at = c->res_produced;
    }
    c->res_produced++;
    c->res_head = off + len;
}

int mp_task_fail(mp_buf *out, const char *fmt, ...)
{
    if (!out || !fmt)
        return MP_ETASK;
    mp_buf_truncate(out, 0);
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started just above */
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < MP__POOL_MSG_MAX ? (size_t)n : MP__POOL_MSG_MAX - 1;
    char *p = len ? mp_buf_alloc(out, len + 1) : NULL;
    if (p) {
        va_start(ap, fmt);
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started just above */
        (void)vsnprintf(p, len + 1, fmt, ap);
        va_end(ap);
        mp_buf_truncate(out, len); /* the message, without its NUL */
    }
    return MP_ETASK;
}

void *mp_buf_data(mp_buf *b)
{
    return b && b->data ? b->data + b->base : NULL;
}

size_t mp_buf_len(const mp_buf *b)
{
    return b ? b->len - b->base : 0;
}

void mp_buf_truncate(mp_buf *b, size_t len)
{
    if (b && len < b->len - b->base)
        b->len = b->base + len;
}
