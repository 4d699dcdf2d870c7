/*
 * region.h - a pool's data region: a shared memory file that grows in
 * place, and the parent's allocator over it.  Private to src/pool/ and
 * its tests.
 *
 * DESIGN
 * The region reserves address space once and maps the file into it as it
 * grows, so that offsets - and the parent's pointers - never move.  Only
 * the parent allocates; workers map new parts when they meet an offset
 * beyond what they mapped, after the parent published the size.
 *
 * Threads and locks: the parent's submitting threads and its supervisor
 * call it, always under the owner's lock (the pool's p->lock); the region
 * has no lock of its own.  Workers never call it: they only map what the
 * size published in the control region says.
 */
#ifndef MPROC_POOL_REGION_H
#define MPROC_POOL_REGION_H

#include "base.h"

/* Blocks are aligned to a cache line. */
#define MP__REGION_ALIGN ((size_t)64)

/* A block: free, or live with its references. */
typedef struct mp__region_blk {
    size_t off, len;
    unsigned refs;
} mp__region_blk;

/* How large a region may grow and how much freed memory it keeps. */
typedef struct mp__region_limits {
    size_t reserve; /* address space reserved: the most it grows to */
    size_t initial; /* mapped at the start */
    /* A freed block at least this large goes back to the system at once. */
    size_t release_min;
    /* Freed bytes kept in memory, for reuse without page faults; beyond
     * this, every free block goes back to the system. */
    size_t retain_max;
} mp__region_limits;

typedef struct mp__region {
    int fd;              /* the memory file; -1 before init */
    unsigned char *base; /* the reservation; NULL before init */
    mp__region_limits lim;
    size_t size; /* mapped here, and published */
    /* The size mapped here, read by fork children from their copy of the
     * parent's memory (see mp__wboot.data_mapped). */
    _Atomic uint64_t mapped;
    _Atomic uint64_t *published; /* where workers read the size; may be NULL */
    mp__region_blk *freel;       /* free blocks below top, sorted, coalesced */
    size_t nfreel, capfreel;
    mp__region_blk *used; /* live blocks, sorted by offset */
    size_t nused, capused;
    size_t top;      /* everything from here on is free */
    size_t retained; /* freed bytes kept in memory since the last purge */
} mp__region;

/*
 * Creates the region's file and reservation and maps lim->initial bytes;
 * the size is stored at *published too when it is not NULL.  Returns 0 or
 * an error; on error, mp__region_destroy() releases what was made.  r
 * must have fd -1 before the call (so that destroy after a failure before
 * init is safe).
 */
int mp__region_init(mp__region *r, const mp__region_limits *lim, _Atomic uint64_t *published);

/* Unmaps, closes and frees everything.  Safe on a region whose init failed
 * or never ran (fd -1, base NULL). */
void mp__region_destroy(mp__region *r);

/* Unmaps this process's view only: for a copy inherited through fork,
 * whose file and lists belong to the parent. */
void mp__region_unmap(mp__region *r);

/*
 * Allocates len bytes (MP__REGION_ALIGN-aligned), first fit, growing the
 * region by doubling when no free block fits.  The block has one
 * reference.  Returns 0 and *off, or MP_ENOMEM for len 0, a len beyond the
 * reservation, or a region that cannot grow further; another error when
 * the file cannot grow.
 */
int mp__region_alloc(mp__region *r, size_t len, size_t *off);

/* Takes another reference on the live block at off (nothing when no block
 * starts there). */
void mp__region_retain(mp__region *r, size_t off);

/* Drops a reference on the live block at off; the last one frees it
 * (nothing when no block starts there). */
void mp__region_release(mp__region *r, size_t off);

/* Whether [ptr, ptr + len) lies inside one live block; sets *off to
 * ptr's offset. */
bool mp__region_contains(const mp__region *r, const void *ptr, size_t len, size_t *off);

/* The address of offset off. */
static inline unsigned char *mp__region_at(const mp__region *r, size_t off)
{
    return r->base + off;
}

#endif /* MPROC_POOL_REGION_H */
