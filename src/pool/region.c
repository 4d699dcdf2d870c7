/*
 * region.c - the data region's allocator, on the parent's side.
 *
 * DESIGN
 * Role.  The data region holds map inputs, outputs and unit records,
 * large task arguments, ctx bytes and what mp_pool_shared_alloc() hands
 * out.  The parent alone allocates in it: first fit over a sorted free
 * list, grown by doubling (workers map the new part when they meet an
 * offset beyond what they mapped).  A map's block holds its unit records,
 * ctx bytes, the copied inputs and the outputs; it is freed when the map
 * is done (or when its iterator is).  Freed blocks of 256 MiB or more are
 * given back to the system at once; smaller ones stay, so that repeated
 * maps run on memory that is already faulted in - up to 256 MiB in all,
 * beyond which every free block is given back.
 *
 * Threads.  Submitting threads and the supervisor.
 *
 * Locks.  Every function runs under p->lock.  The bytes of a block are
 * not guarded by it: a block belongs to whoever allocated it until it is
 * published, then to the workers and the supervisor as records.h says.
 */
#define _GNU_SOURCE
#include "pool_int.h"

static int data_grow(mp_pool *p, size_t need)
{
    if (need <= p->data_size)
        return 0;
    size_t size = p->data_size;
    while (size < need) {
        if (size > DATA_RESERVE / 2)
            return MP_ENOMEM;
        size *= 2;
    }
    int rc = mp__file_resize(p->data_fd, size);
    if (rc == 0)
        rc =
            mp__vm_map_fixed(p->data_fd, p->data_size, size - p->data_size, p->data + p->data_size);
    if (rc < 0) {
        (void)mp__file_resize(p->data_fd, p->data_size);
        return rc == MP_ENOSPC ? MP_ENOMEM : rc;
    }
    /* Mapped here before published there: a worker forked in between
     * inherits at least what the count it reads says (see mp__wboot). */
    p->data_size = size;
    atomic_store(&p->data_mapped, size);
    atomic_store(&p->hdr->data_size, size);
    return 0;
}

static int used_insert(mp_pool *p, size_t off, size_t len)
{
    if (p->nused == p->capused) {
        size_t cap = p->capused ? p->capused * 2 : 64;
        blk *n = realloc(p->used, cap * sizeof *n);
        if (!n)
            return MP_ENOMEM;
        p->used = n;
        p->capused = cap;
    }
    size_t i = p->nused;
    while (i > 0 && p->used[i - 1].off > off) {
        p->used[i] = p->used[i - 1];
        i--;
    }
    p->used[i] = (blk){off, len, 1};
    p->nused++;
    return 0;
}

/* Finds the block that starts at off; returns its index or -1. */
static long used_find(mp_pool *p, size_t off)
{
    size_t lo = 0, hi = p->nused;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p->used[mid].off < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->nused && p->used[lo].off == off ? (long)lo : -1;
}

/* Whether [ptr, ptr + len) lies inside one live block. */
bool mp__pool_data_contains(mp_pool *p, const void *ptr, size_t len, size_t *off)
{
    const unsigned char *c = ptr;
    if (!ptr || c < p->data || c >= p->data + p->data_size)
        return false;
    size_t o = (size_t)(c - p->data);
    size_t lo = 0, hi = p->nused;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p->used[mid].off <= o)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    blk b = p->used[lo - 1];
    if (o < b.off || o - b.off > b.len || len > b.len - (o - b.off))
        return false;
    *off = o;
    return true;
}

/* Allocates len bytes (64-byte aligned).  Returns 0 and *off, or an error. */
int mp__pool_data_alloc(mp_pool *p, size_t len, size_t *off)
{
    if (len == 0 || len > DATA_RESERVE)
        return MP_ENOMEM;
    len = mp__pool_align_up(len, DATA_ALIGN);
    for (size_t i = 0; i < p->nfreel; i++) {
        if (p->freel[i].len >= len) {
            size_t o = p->freel[i].off;
            int rc = used_insert(p, o, len);
            if (rc < 0)
                return rc;
            p->freel[i].off += len;
            p->freel[i].len -= len;
            p->retained -= p->retained < len ? p->retained : len;
            if (p->freel[i].len == 0) {
                memmove(&p->freel[i], &p->freel[i + 1], (p->nfreel - i - 1) * sizeof(blk));
                p->nfreel--;
            }
            *off = o;
            return 0;
        }
    }
    size_t o = p->top;
    int rc = data_grow(p, o + len);
    if (rc < 0)
        return rc;
    rc = used_insert(p, o, len);
    if (rc < 0)
        return rc;
    p->top = o + len;
    *off = o;
    return 0;
}

/* Takes another reference on the block at off, so that it outlives its
 * job (a map whose inputs are still being copied in). */
void mp__pool_data_ref(mp_pool *p, size_t off)
{
    long i = used_find(p, off);
    if (i >= 0)
        p->used[i].refs++;
}

/* Drops a reference; the last one frees the block. */
/* Gives the memory of every free block, and of the region beyond the
 * top, back to the system; the mappings stay, reading zeros. */
static void data_purge(mp_pool *p)
{
    for (size_t i = 0; i < p->nfreel; i++)
        (void)mp__file_release(p->data_fd, p->freel[i].off, p->freel[i].len);
    (void)mp__file_release(p->data_fd, p->top, p->data_size - p->top);
    p->retained = 0;
}

void mp__pool_data_free(mp_pool *p, size_t off)
{
    long i = used_find(p, off);
    if (i < 0 || --p->used[i].refs > 0)
        return;
    size_t len = p->used[i].len;
    memmove(&p->used[i], &p->used[i + 1], (p->nused - (size_t)i - 1) * sizeof(blk));
    p->nused--;
    if (len >= DATA_RELEASE)
        (void)mp__file_release(p->data_fd, off, len);
    else
        p->retained += len;
    /* Insert into the sorted free list, merging with neighbours. */
    size_t k = 0;
    while (k < p->nfreel && p->freel[k].off < off)
        k++;
    bool merged = false;
    if (k > 0 && p->freel[k - 1].off + p->freel[k - 1].len == off) {
        p->freel[k - 1].len += len;
        merged = true;
        if (k < p->nfreel && off + len == p->freel[k].off) {
            p->freel[k - 1].len += p->freel[k].len;
            memmove(&p->freel[k], &p->freel[k + 1], (p->nfreel - k - 1) * sizeof(blk));
            p->nfreel--;
        }
    } else if (k < p->nfreel && off + len == p->freel[k].off) {
        p->freel[k].off = off;
        p->freel[k].len += len;
        merged = true;
    }
    if (!merged) {
        if (p->nfreel == p->capfreel) {
            size_t cap = p->capfreel ? p->capfreel * 2 : 64;
            blk *n = realloc(p->freel, cap * sizeof *n);
            if (!n)
                return; /* the block is lost to reuse, not to correctness */
            p->freel = n;
            p->capfreel = cap;
        }
        memmove(&p->freel[k + 1], &p->freel[k], (p->nfreel - k) * sizeof(blk));
        p->freel[k] = (blk){off, len, 0};
        p->nfreel++;
    }
    /* The last free block touching the top goes back to the top. */
    if (p->nfreel && p->freel[p->nfreel - 1].off + p->freel[p->nfreel - 1].len == p->top) {
        p->top = p->freel[p->nfreel - 1].off;
        p->nfreel--;
    }
    /* Memory freed and kept warm for the next maps, up to a bound. */
    if (p->retained > DATA_RETAIN)
        data_purge(p);
}

int mp__pool_data_setup(mp_pool *p)
{
    int fd = mp__memfd_new("pool-data", DATA_INITIAL);
    if (fd < 0)
        return fd;
    p->data_fd = fd;
    void *base = NULL;
    int rc = mp__vm_reserve(DATA_RESERVE, &base);
    if (rc < 0)
        return rc;
    p->data = base;
    rc = mp__vm_map_fixed(fd, 0, DATA_INITIAL, base);
    if (rc < 0)
        return rc;
    p->data_size = DATA_INITIAL;
    atomic_store(&p->data_mapped, DATA_INITIAL);
    atomic_store(&p->hdr->data_size, DATA_INITIAL);
    return 0;
}
