/*
 * region.c - the data region's allocator (region.h).
 *
 * DESIGN
 * Role.  The data region holds map inputs, outputs and unit records,
 * large task arguments, ctx bytes and what mp_pool_shared_alloc() hands
 * out.  The parent alone allocates in it: first fit over a sorted free
 * list, grown by doubling (workers map the new part when they meet an
 * offset beyond what they mapped).  A map's block holds its unit records,
 * ctx bytes, the copied inputs and the outputs; it is freed when the map
 * is done (or when its iterator is).  Freed blocks of lim.release_min
 * bytes or more are given back to the system at once; smaller ones stay,
 * so that repeated maps run on memory that is already faulted in - up to
 * lim.retain_max bytes in all, beyond which every free block is given
 * back.  The pool uses 256 MiB for both.
 *
 * Two sorted arrays: the live blocks (binary search by offset, for
 * references and for finding which block holds a caller's pointer) and
 * the free blocks below the top (coalesced on insertion; the last one
 * touching the top goes back to it).
 *
 * Threads.  Submitting threads and the supervisor of the pool that owns
 * the region.
 *
 * Locks.  None of its own: every call runs under the owner's lock
 * (p->lock).  The bytes of a block are not guarded by it: a block belongs
 * to whoever allocated it until it is published, then to the workers and
 * the supervisor as records.h says.
 */
#define _GNU_SOURCE
#include "region.h"

#include <sys/mman.h>

static size_t align_up(size_t v, size_t a)
{
    return (v + a - 1) & ~(a - 1);
}

int mp__region_init(mp__region *r, const mp__region_limits *lim, _Atomic uint64_t *published)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->lim = *lim;
    r->published = published;
    int fd = mp__memfd_new("pool-data", lim->initial);
    if (fd < 0)
        return fd;
    r->fd = fd;
    void *base = NULL;
    int rc = mp__vm_reserve(lim->reserve, &base);
    if (rc < 0)
        return rc;
    r->base = base;
    rc = mp__vm_map_fixed(fd, 0, lim->initial, base);
    if (rc < 0)
        return rc;
    r->size = lim->initial;
    atomic_store(&r->mapped, lim->initial);
    if (published)
        atomic_store(published, lim->initial);
    return 0;
}

void mp__region_unmap(mp__region *r)
{
    if (r->base)
        munmap(r->base, r->lim.reserve);
    r->base = NULL;
}

void mp__region_destroy(mp__region *r)
{
    mp__region_unmap(r);
    mp__close(r->fd);
    r->fd = -1;
    free(r->freel);
    free(r->used);
    r->freel = r->used = NULL;
    r->nfreel = r->capfreel = r->nused = r->capused = 0;
}

/* Grows the file and its mapping to the first doubling of the size that
 * holds need bytes. */
static int grow(mp__region *r, size_t need)
{
    if (need <= r->size)
        return 0;
    size_t size = r->size;
    while (size < need) {
        if (size > r->lim.reserve / 2)
            return MP_ENOMEM;
        size *= 2;
    }
    int rc = mp__file_resize(r->fd, size);
    if (rc == 0)
        rc = mp__vm_map_fixed(r->fd, r->size, size - r->size, r->base + r->size);
    if (rc < 0) {
        (void)mp__file_resize(r->fd, r->size);
        return rc == MP_ENOSPC ? MP_ENOMEM : rc;
    }
    /* Mapped here before published there: a worker forked in between
     * inherits at least what the count it reads says (see mp__wboot). */
    r->size = size;
    atomic_store(&r->mapped, size);
    if (r->published)
        atomic_store(r->published, size);
    return 0;
}

/* Makes room for one more entry in a block array. */
static int blk_reserve(mp__region_blk **arr, size_t n, size_t *cap)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 64;
    mp__region_blk *na = realloc(*arr, c * sizeof *na);
    if (!na)
        return MP_ENOMEM;
    *arr = na;
    *cap = c;
    return 0;
}

static int used_insert(mp__region *r, size_t off, size_t len)
{
    int rc = blk_reserve(&r->used, r->nused, &r->capused);
    if (rc < 0)
        return rc;
    size_t i = r->nused;
    while (i > 0 && r->used[i - 1].off > off) {
        r->used[i] = r->used[i - 1];
        i--;
    }
    r->used[i] = (mp__region_blk){off, len, 1};
    r->nused++;
    return 0;
}

/* Finds the live block that starts at off; returns its index or -1. */
static long used_find(const mp__region *r, size_t off)
{
    size_t lo = 0, hi = r->nused;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->used[mid].off < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->nused && r->used[lo].off == off ? (long)lo : -1;
}

bool mp__region_contains(const mp__region *r, const void *ptr, size_t len, size_t *off)
{
    const unsigned char *c = ptr;
    if (!ptr || !r->base || c < r->base || c >= r->base + r->size)
        return false;
    size_t o = (size_t)(c - r->base);
    size_t lo = 0, hi = r->nused;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->used[mid].off <= o)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    mp__region_blk b = r->used[lo - 1];
    if (o < b.off || o - b.off > b.len || len > b.len - (o - b.off))
        return false;
    *off = o;
    return true;
}

/* Takes len bytes from free block i. */
static int take_free(mp__region *r, size_t i, size_t len, size_t *off)
{
    size_t o = r->freel[i].off;
    int rc = used_insert(r, o, len);
    if (rc < 0)
        return rc;
    r->freel[i].off += len;
    r->freel[i].len -= len;
    r->retained -= r->retained < len ? r->retained : len;
    if (r->freel[i].len == 0) {
        memmove(&r->freel[i], &r->freel[i + 1], (r->nfreel - i - 1) * sizeof *r->freel);
        r->nfreel--;
    }
    *off = o;
    return 0;
}

int mp__region_alloc(mp__region *r, size_t len, size_t *off)
{
    if (len == 0 || len > r->lim.reserve)
        return MP_ENOMEM;
    len = align_up(len, MP__REGION_ALIGN);
    for (size_t i = 0; i < r->nfreel; i++)
        if (r->freel[i].len >= len)
            return take_free(r, i, len, off);
    size_t o = r->top;
    int rc = grow(r, o + len);
    if (rc < 0)
        return rc;
    rc = used_insert(r, o, len);
    if (rc < 0)
        return rc;
    r->top = o + len;
    *off = o;
    return 0;
}

void mp__region_retain(mp__region *r, size_t off)
{
    long i = used_find(r, off);
    if (i >= 0)
        r->used[i].refs++;
}

/* Gives the memory of every free block, and of the region beyond the
 * top, back to the system; the mappings stay, reading zeros. */
static void purge(mp__region *r)
{
    for (size_t i = 0; i < r->nfreel; i++)
        (void)mp__file_release(r->fd, r->freel[i].off, r->freel[i].len);
    (void)mp__file_release(r->fd, r->top, r->size - r->top);
    r->retained = 0;
}

/* Inserts [off, off + len) into the sorted free list, merging it with its
 * neighbours. */
static void free_insert(mp__region *r, size_t off, size_t len)
{
    size_t k = 0;
    while (k < r->nfreel && r->freel[k].off < off)
        k++;
    mp__region_blk *fl = r->freel;
    if (k > 0 && fl[k - 1].off + fl[k - 1].len == off) {
        fl[k - 1].len += len;
        if (k < r->nfreel && off + len == fl[k].off) {
            fl[k - 1].len += fl[k].len;
            memmove(&fl[k], &fl[k + 1], (r->nfreel - k - 1) * sizeof *fl);
            r->nfreel--;
        }
        return;
    }
    if (k < r->nfreel && off + len == fl[k].off) {
        fl[k].off = off;
        fl[k].len += len;
        return;
    }
    if (blk_reserve(&r->freel, r->nfreel, &r->capfreel) < 0)
        return; /* the block is lost to reuse, not to correctness */
    fl = r->freel;
    memmove(&fl[k + 1], &fl[k], (r->nfreel - k) * sizeof *fl);
    fl[k] = (mp__region_blk){off, len, 0};
    r->nfreel++;
}

void mp__region_release(mp__region *r, size_t off)
{
    long i = used_find(r, off);
    if (i < 0 || --r->used[i].refs > 0)
        return;
    size_t len = r->used[i].len;
    memmove(&r->used[i], &r->used[i + 1], (r->nused - (size_t)i - 1) * sizeof *r->used);
    r->nused--;
    if (len >= r->lim.release_min)
        (void)mp__file_release(r->fd, off, len);
    else
        r->retained += len;
    free_insert(r, off, len);
    /* The last free block touching the top goes back to the top. */
    if (r->nfreel && r->freel[r->nfreel - 1].off + r->freel[r->nfreel - 1].len == r->top) {
        r->top = r->freel[r->nfreel - 1].off;
        r->nfreel--;
    }
    /* Memory freed and kept warm for the next maps, up to a bound. */
    if (r->retained > r->lim.retain_max)
        purge(r);
}
