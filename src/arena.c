/*
 * arena.c - the shared arena: a memfd mapped at the same address in every
 * process that uses it, and an allocator inside it that is safe across
 * processes.
 *
 * DESIGN
 * Placement.  A pointer into the arena must mean the same object in every
 * process, so the arena is mapped at one address everywhere: inherited by
 * fork, and in a fresh image mapped with MAP_FIXED_NOREPLACE at the address
 * recorded in its header.  For that address to be free in a fresh image,
 * arenas are placed (on x86-64) in a band of the address space that
 * programs leave empty: above the sanitizers' shadow memory, below the
 * executable, its heap and the libraries (0x2000'0000'0000 and up), in
 * 64 GiB slots picked at random so that arenas made independently by
 * different processes rarely collide.  Elsewhere the kernel picks.
 *
 * Layout.  A header page, then blocks.  Every block starts with a 16-byte
 * header and is a multiple of 64 bytes long; headers sit at offsets 48
 * modulo 64, so every payload starts on a cache line.  A header holds the
 * block's length and its predecessor's (boundary tags, for coalescing with
 * both neighbours in constant time), a check word derived from its offset
 * (so a foreign or stale pointer is recognised), and an in-use flag.  Free
 * blocks are linked, by offsets, through their first payload bytes.  A
 * zero-length sentinel header ends the heap.  Allocation is first fit,
 * splitting the block found; freeing coalesces at once.  Large freed
 * blocks give their pages back to the system (mp__vm_release).
 *
 * Dying in the middle.  One robust mutex in the header serialises the
 * allocator.  If a process dies holding it, the next locker gets
 * MP_EOWNERDEAD and rebuilds everything but the lengths - the free list,
 * predecessor lengths, adjacent free blocks, the usage count - by walking
 * the blocks from the start.  So the lengths are the one thing that must
 * be right at every instant, and they are written in an order that keeps
 * the walk valid: a split writes the new tail block's header before it
 * shortens the block (one store); a merge lengthens the block in one
 * store, after which the absorbed header is just payload.  A block being
 * allocated is marked in use only after it left the free list, so a death
 * in between leaves a free block, which the rebuild puts back.  If the walk
 * finds a broken header, the arena is given up (MP_ENOTRECOVERABLE from
 * then on) rather than trusted.
 *
 * Handles.  An mp_arena is a small process-local record (address, size,
 * descriptor).  Every arena this process maps is on one list, which lets a
 * pointer be traced back to its arena (for mp_lock_free and friends) and a
 * second attach of the same arena return the first handle.  Closing takes
 * the handle off the list and gives up the mapping and the descriptor (a
 * closed handle has neither: h is NULL); freeing closes if needed and
 * releases the record.
 */
#define _GNU_SOURCE
#include "arena.h"

#include "log.h"

#include "testhooks.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARENA_MAGIC     0x31616e6572706d00ull /* "\0mprena1" */
#define ARENA_VERSION   1u
#define ARENA_F_DEFAULT 1u

#define UNIT     64u  /* block granularity and payload alignment */
#define HDR      16u  /* block header size */
#define HEAP0    4096 /* offset of the first payload: the header page before it */
#define MIN_SIZE ((size_t)64 << 10)
#define MAX_SIZE ((size_t)128 << 30)

#define BLK_INUSE    1u
#define BLK_SENTINEL 2u
#define CHECK_SEED   0xa110c8edu

/* Freed blocks at least this long give their inner pages back. */
#define PUNCH_MIN ((size_t)256 << 10)

/* The header at the start of the memory file.  Written once by the
 * creator, except for the second cache line, which the lock protects. */
typedef struct arena_hdr {
    uint64_t magic;
    uint32_t version;
    uint32_t flags;
    uint64_t size;     /* bytes mapped */
    uint64_t base;     /* the address every process maps it at */
    uint64_t heap_off; /* offset of the first block header */
    uint64_t end_off;  /* offset of the sentinel header */
    int32_t creator;
    uint32_t broken; /* a rebuild failed: nothing is allocated any more */
    uint8_t pad0[8];
    /* second cache line and on: the allocator's state */
    mp__mutex lock;
    uint64_t free_head; /* offset of the first free block's header, 0: none */
    uint64_t used;      /* bytes in blocks in use, headers included */
    uint64_t nblocks;   /* blocks in use */
} arena_hdr;

_Static_assert(offsetof(arena_hdr, lock) == 64, "allocator state starts a cache line");
_Static_assert(sizeof(arena_hdr) <= HEAP0 - HDR, "header fits its page");

typedef struct blk {
    uint32_t units;      /* length / UNIT, header included; 0 for the sentinel */
    uint32_t prev_units; /* the previous block's units, 0 for the first */
    uint32_t check;      /* CHECK_SEED ^ (offset / UNIT) */
    uint32_t flags;
} blk;

/* The free-list links, in a free block's payload. */
typedef struct free_links {
    uint64_t next, prev; /* header offsets, 0: none */
} free_links;

struct mp_arena {
    arena_hdr *h;
    size_t size;
    int fd;
    bool is_default;
    mp_arena *next;
};

/* ---- the list of arenas mapped here ------------------------------------------ */

static struct {
    pthread_mutex_t lock;
    mp_arena *head;
    mp_arena *deflt;
    size_t default_size;
    pthread_once_t once;
} reg = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, PTHREAD_ONCE_INIT};

static void reg_prepare(void)
{
    pthread_mutex_lock(&reg.lock);
}

static void reg_parent(void)
{
    pthread_mutex_unlock(&reg.lock);
}

static void reg_child(void)
{
    /* The mappings and the list are the parent's, copied: still right. */
    pthread_mutex_init(&reg.lock, NULL);
}

static void reg_init(void)
{
    pthread_atfork(reg_prepare, reg_parent, reg_child);
}

static void reg_lock(void)
{
    pthread_once(&reg.once, reg_init);
    pthread_mutex_lock(&reg.lock);
}

static void reg_unlock(void)
{
    pthread_mutex_unlock(&reg.lock);
}

mp_arena *mp__arena_find(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    reg_lock();
    mp_arena *r = reg.head;
    while (r && !(a >= (uintptr_t)r->h && a < (uintptr_t)r->h + r->size))
        r = r->next;
    reg_unlock();
    return r;
}

/* ---- blocks ------------------------------------------------------------------- */

static inline blk *blk_at(const mp_arena *a, uint64_t off)
{
    return (blk *)((char *)a->h + off);
}

static inline uint32_t check_of(uint64_t off)
{
    return CHECK_SEED ^ (uint32_t)(off / UNIT);
}

static inline free_links *links(const mp_arena *a, uint64_t off)
{
    return (free_links *)((char *)a->h + off + HDR);
}

static void set_units(blk *b, uint32_t units)
{
    /* The one store a concurrent death must see whole: the rebuild walks
     * the lengths. */
    __atomic_store_n(&b->units, units, __ATOMIC_RELEASE);
}

static void write_hdr(blk *b, uint64_t off, uint32_t units, uint32_t prev, uint32_t flags)
{
    b->prev_units = prev;
    b->check = check_of(off);
    b->flags = flags;
    set_units(b, units);
}

static void list_push(mp_arena *a, uint64_t off)
{
    arena_hdr *h = a->h;
    free_links *l = links(a, off);
    l->next = h->free_head;
    l->prev = 0;
    if (h->free_head)
        links(a, h->free_head)->prev = off;
    h->free_head = off;
}

static void list_remove(mp_arena *a, uint64_t off)
{
    arena_hdr *h = a->h;
    free_links *l = links(a, off);
    if (l->prev)
        links(a, l->prev)->next = l->next;
    else
        h->free_head = l->next;
    if (l->next)
        links(a, l->next)->prev = l->prev;
}

/* Rebuilds the free list, predecessor lengths and usage from the block
 * lengths alone, merging adjacent free blocks.  Returns 0, or
 * MP_ENOTRECOVERABLE if a header is broken. */
static int rebuild(mp_arena *a)
{
    arena_hdr *h = a->h;
    h->free_head = 0;
    h->used = 0;
    h->nblocks = 0;
    uint64_t off = h->heap_off, prev_off = 0;
    uint32_t prev_units = 0;
    bool prev_free = false;
    while (off < h->end_off) {
        blk *b = blk_at(a, off);
        uint32_t u = __atomic_load_n(&b->units, __ATOMIC_ACQUIRE);
        if (b->check != check_of(off) || u == 0 || off + (uint64_t)u * UNIT > h->end_off)
            return MP_ENOTRECOVERABLE;
        bool is_free = !(b->flags & BLK_INUSE);
        if (is_free && prev_free) {
            /* Merge into the previous free block, already on the list. */
            blk *p = blk_at(a, prev_off);
            prev_units += u;
            set_units(p, prev_units);
        } else {
            b->prev_units = prev_units;
            if (is_free) {
                list_push(a, off);
            } else {
                h->used += (uint64_t)u * UNIT;
                h->nblocks++;
            }
            prev_off = off;
            prev_units = u;
        }
        prev_free = is_free;
        off = prev_off + (uint64_t)prev_units * UNIT;
    }
    if (off != h->end_off)
        return MP_ENOTRECOVERABLE;
    blk *s = blk_at(a, h->end_off);
    if (s->check != check_of(h->end_off) || !(s->flags & BLK_SENTINEL))
        return MP_ENOTRECOVERABLE;
    s->prev_units = prev_units;
    return 0;
}

/* Takes the allocator's lock, repairing the state after a dead holder.
 * Returns 0 with the lock held, or an error without it. */
static int lock_heap(mp_arena *a)
{
    arena_hdr *h = a->h;
    int rc = mp__mutex_lock(&h->lock, MP__NO_DEADLINE);
    if (rc == MP_EOWNERDEAD) {
        if (rebuild(a) == 0) {
            mp_log(MP_LOG_WARNING, "shared arena: a process died while allocating; repaired");
            mp__mutex_consistent(&h->lock);
            return 0;
        }
        h->broken = 1;
        mp_log(MP_LOG_ERROR, "shared arena: a process died while allocating; arena is broken");
        mp__mutex_unlock(&h->lock); /* without consistent(): unrecoverable */
        return MP_ENOTRECOVERABLE;
    }
    if (rc == 0 && h->broken) {
        mp__mutex_unlock(&h->lock);
        return MP_ENOTRECOVERABLE;
    }
    return rc;
}

static void *alloc_locked(mp_arena *a, uint32_t need)
{
    arena_hdr *h = a->h;
    for (uint64_t off = h->free_head; off; off = links(a, off)->next) {
        blk *b = blk_at(a, off);
        uint32_t u = b->units;
        if (u < need)
            continue;
        list_remove(a, off);
        if (u > need) {
            /* Split: the tail becomes a free block of its own.  Its header
             * is written before this block shrinks, so a walk never meets
             * a half-made header. */
            uint64_t toff = off + (uint64_t)need * UNIT;
            write_hdr(blk_at(a, toff), toff, u - need, need, 0);
            blk_at(a, off + (uint64_t)u * UNIT)->prev_units = u - need;
            set_units(b, need);
            list_push(a, toff);
        }
        b->flags = BLK_INUSE;
        h->used += (uint64_t)need * UNIT;
        h->nblocks++;
        return (char *)b + HDR;
    }
    return NULL;
}

static void punch(mp_arena *a, uint64_t off, uint32_t units)
{
    size_t len = (size_t)units * UNIT;
    if (len < PUNCH_MIN)
        return;
    /* Keep the header and the free-list links; give back whole pages
     * strictly inside the block.  Freed pages read back as zeros. */
    size_t page = mp__page_size();
    uintptr_t lo = (uintptr_t)a->h + off + HDR + sizeof(free_links);
    uintptr_t hi = (uintptr_t)a->h + off + len;
    lo = (lo + page - 1) & ~(uintptr_t)(page - 1);
    hi &= ~(uintptr_t)(page - 1);
    if (hi > lo)
        (void)mp__vm_release((void *)lo, hi - lo);
}

/* Frees the block whose header is at off.  Caller holds the lock and has
 * checked the block. */
static void free_locked(mp_arena *a, uint64_t off)
{
    arena_hdr *h = a->h;
    blk *b = blk_at(a, off);
    uint32_t u = b->units;
    h->used -= (uint64_t)u * UNIT;
    h->nblocks--;
    b->flags = 0;
    uint64_t noff = off + (uint64_t)u * UNIT;
    blk *n = blk_at(a, noff);
    if (!(n->flags & (BLK_INUSE | BLK_SENTINEL))) {
        list_remove(a, noff);
        u += n->units;
        set_units(b, u);
        noff = off + (uint64_t)u * UNIT;
        blk_at(a, noff)->prev_units = u;
    }
    if (b->prev_units) {
        uint64_t poff = off - (uint64_t)b->prev_units * UNIT;
        blk *p = blk_at(a, poff);
        if (!(p->flags & BLK_INUSE)) {
            list_remove(a, poff);
            u += p->units;
            set_units(p, u);
            blk_at(a, noff)->prev_units = u;
            off = poff;
        }
    }
    list_push(a, off);
    punch(a, off, u);
}

/* The header offset of payload p if it is a live block of a, else 0. */
static uint64_t block_of(const mp_arena *a, const void *p)
{
    const arena_hdr *h = a->h;
    uintptr_t addr = (uintptr_t)p, base = (uintptr_t)h;
    if (addr < base + h->heap_off + HDR || addr >= base + h->end_off || (addr - base) % UNIT)
        return 0;
    uint64_t off = addr - base - HDR;
    const blk *b = blk_at(a, off);
    if (b->check != check_of(off) || !(b->flags & BLK_INUSE) || b->units == 0 ||
        off + (uint64_t)b->units * UNIT > h->end_off)
        return 0;
    return off;
}

void mp__arena_crash_in_alloc(mp_arena *a)
{
    /* What a process killed in the middle of alloc_locked() leaves: the
     * first free block off the list, a split half-made (the tail's header
     * written, the block not yet shortened), the lock held. */
    if (lock_heap(a) < 0)
        return;
    uint64_t off = a->h->free_head;
    if (!off)
        return;
    blk *b = blk_at(a, off);
    list_remove(a, off);
    if (b->units > 1) {
        uint64_t toff = off + UNIT;
        write_hdr(blk_at(a, toff), toff, b->units - 1, 1, 0);
    }
    /* Garbage where the list head was, for good measure. */
    a->h->free_head = 0xdeadbeefcafeull;
}

/* ---- creating and mapping -------------------------------------------------------- */

static size_t round_size(size_t size)
{
    size_t page = mp__page_size();
    return (size + page - 1) & ~(page - 1);
}

/* Maps fd at a free address in the arena band (see DESIGN). */
static int map_somewhere(int fd, size_t size, void **addr)
{
#if defined(__x86_64__)
    const uintptr_t band = (uintptr_t)0x200000000000ull;
    const uintptr_t slot = (uintptr_t)64 << 30;
    const unsigned nslots = 512;
    unsigned span = (unsigned)((size + slot - 1) / slot);
    unsigned start = (unsigned)(((uint64_t)mp__now_ns() * 0x9e3779b97f4a7c15ull ^
                                 (uint64_t)mp__self_pid() * 0xbf58476d1ce4e5b9ull) >>
                                40) %
                     nslots;
    for (unsigned i = 0; i < 32; i++) {
        unsigned s = (start + i * 37u) % nslots;
        if (s + span > nslots)
            continue;
        int rc = mp__map_fd(fd, size, (void *)(band + (uintptr_t)s * slot), addr);
        if (rc == 0)
            return 0;
        if (rc != MP_EEXIST)
            break;
    }
#endif
    return mp__map_fd(fd, size, NULL, addr);
}

static void reg_add_locked(mp_arena *a)
{
    a->next = reg.head;
    reg.head = a;
}

static int arena_create(size_t size, bool is_default, mp_arena **out)
{
    size = round_size(size);
    if (size < MIN_SIZE || size > MAX_SIZE)
        return MP_EINVAL;
    mp_arena *a = calloc(1, sizeof *a);
    if (!a)
        return MP_ENOMEM;
    int fd = mp__memfd_new("arena", size);
    if (fd < 0) {
        free(a);
        return fd;
    }
    void *p;
    int rc = map_somewhere(fd, size, &p);
    if (rc < 0) {
        mp__close(fd);
        free(a);
        return rc;
    }
    arena_hdr *h = p;
    rc = mp__mutex_init(&h->lock);
    if (rc < 0) {
        mp__unmap(p, size);
        mp__close(fd);
        free(a);
        return rc;
    }
    a->h = h;
    a->size = size;
    a->fd = fd;
    a->is_default = is_default;
    h->version = ARENA_VERSION;
    h->flags = is_default ? ARENA_F_DEFAULT : 0;
    h->size = size;
    h->base = (uint64_t)(uintptr_t)p;
    h->heap_off = HEAP0 - HDR;
    h->end_off = h->heap_off + ((size - h->heap_off - HDR) / UNIT) * UNIT;
    h->creator = mp__self_pid();
    uint32_t units = (uint32_t)((h->end_off - h->heap_off) / UNIT);
    write_hdr(blk_at(a, h->heap_off), h->heap_off, units, 0, 0);
    write_hdr(blk_at(a, h->end_off), h->end_off, 0, units, BLK_INUSE | BLK_SENTINEL);
    list_push(a, h->heap_off);
    /* Last: a reader of the header (attach) trusts nothing before this. */
    __atomic_store_n(&h->magic, ARENA_MAGIC, __ATOMIC_RELEASE);
    *out = a;
    return 0;
}

/* MP_EINVAL with a detail naming fn unless size rounds to an arena's size. */
static int check_size(const char *fn, size_t size)
{
    if (round_size(size) < MIN_SIZE || size > MAX_SIZE)
        return mp__fail(MP_EINVAL, "%s: size must be %zu to %zu bytes (got %zu)", fn,
                        (size_t)MIN_SIZE, (size_t)MAX_SIZE, size);
    return 0;
}

int mp_arena_new(size_t size, mp_arena **out)
{
    MP__NONNULL(out);
    *out = NULL;
    int err = check_size(__func__, size);
    if (err < 0)
        return err;
    mp_arena *a;
    int rc = arena_create(size, false, &a);
    if (rc < 0)
        return rc;
    reg_lock();
    reg_add_locked(a);
    reg_unlock();
    *out = a;
    return 0;
}

/* MPROC_ARENA_SIZE: bytes, with an optional K, M or G suffix. */
static size_t env_size(void)
{
    const char *v = getenv("MPROC_ARENA_SIZE");
    if (!v || !*v)
        return 0;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    switch (*end) {
    case 'k':
    case 'K':
        n <<= 10;
        end++;
        break;
    case 'm':
    case 'M':
        n <<= 20;
        end++;
        break;
    case 'g':
    case 'G':
        n <<= 30;
        end++;
        break;
    default:
        break;
    }
    return *end == '\0' ? (size_t)n : 0;
}

/* The default arena, created on first use.  Returns 0 and sets *out, or
 * the creation error. */
static int default_arena(mp_arena **out)
{
    reg_lock();
    int rc = 0;
    mp_arena *a = reg.deflt;
    if (!a) {
        size_t size = reg.default_size;
        if (!size)
            size = env_size();
        if (!size || round_size(size) < MIN_SIZE || size > MAX_SIZE)
            size = MP_ARENA_DEFAULT_SIZE;
        rc = arena_create(size, true, &a);
        if (rc == 0) {
            reg_add_locked(a);
            reg.deflt = a;
        }
    }
    reg_unlock();
    *out = rc == 0 ? a : NULL;
    return rc;
}

mp_arena *mp_arena_default(void)
{
    mp_arena *a;
    return default_arena(&a) == 0 ? a : NULL;
}

int mp_arena_set_default_size(size_t size)
{
    int rc = check_size(__func__, size);
    if (rc < 0)
        return rc;
    reg_lock();
    rc = reg.deflt ? MP_ESTATE : 0;
    if (rc == 0)
        reg.default_size = size;
    reg_unlock();
    if (rc < 0)
        return mp__fail(rc, "mp_arena_set_default_size: the default arena exists already");
    return rc;
}

int mp_arena_attach(int fd, mp_arena **out)
{
    MP__NONNULL(out);
    *out = NULL;
    if (fd < 0)
        return mp__fail(MP_EINVAL, "mp_arena_attach: fd must be >= 0 (got %d)", fd);
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    arena_hdr hd;
    if (!S_ISREG(st.st_mode) || pread(fd, &hd, sizeof hd, 0) != (ssize_t)sizeof hd ||
        hd.magic != ARENA_MAGIC || hd.version != ARENA_VERSION || hd.size != (uint64_t)st.st_size ||
        hd.size < MIN_SIZE || hd.size > MAX_SIZE || hd.base == 0)
        return mp__fail(MP_EINVAL, "mp_arena_attach: fd %d is not an arena of this version", fd);

    reg_lock();
    for (mp_arena *r = reg.head; r; r = r->next) {
        if ((uint64_t)(uintptr_t)r->h == hd.base) {
            struct stat mine;
            int rc =
                fstat(r->fd, &mine) == 0 && mine.st_ino == st.st_ino && mine.st_dev == st.st_dev
                    ? 0
                    : MP_EEXIST;
            if (rc == 0)
                *out = r;
            reg_unlock();
            return rc;
        }
    }
    int rc = MP_ENOMEM;
    mp_arena *a = calloc(1, sizeof *a);
    int dfd = a ? mp__dup_cloexec(fd, 3) : -1;
    void *p = NULL;
    if (a && dfd < 0)
        rc = dfd;
    if (dfd >= 0)
        rc = mp__map_fd(dfd, (size_t)hd.size, (void *)(uintptr_t)hd.base, &p);
    if (rc < 0) {
        mp__close(dfd);
        free(a);
        reg_unlock();
        return rc;
    }
    a->h = p;
    a->size = (size_t)hd.size;
    a->fd = dfd;
    if ((hd.flags & ARENA_F_DEFAULT) && !reg.deflt) {
        a->is_default = true;
        reg.deflt = a;
    }
    reg_add_locked(a);
    reg_unlock();
    *out = a;
    return 0;
}

int mp_arena_fd(const mp_arena *a)
{
    MP__NONNULL(a);
    return a->h ? a->fd : MP_ECLOSED;
}

size_t mp_arena_size(const mp_arena *a)
{
    return a ? a->size : 0;
}

int mp_arena_usage(mp_arena *a, size_t *used, size_t *largest)
{
    MP__NONNULL(a);
    if (!a->h)
        return MP_ECLOSED;
    int rc = lock_heap(a);
    if (rc < 0)
        return rc;
    size_t big = 0;
    for (uint64_t off = a->h->free_head; off; off = links(a, off)->next) {
        size_t len = (size_t)blk_at(a, off)->units * UNIT - HDR;
        if (len > big)
            big = len;
    }
    if (used)
        *used = (size_t)a->h->used;
    if (largest)
        *largest = big;
    mp__mutex_unlock(&a->h->lock);
    return 0;
}

int mp__arena_alloc(mp_arena *a, size_t size, void **out)
{
    *out = NULL;
    if (size == 0)
        return MP_EINVAL;
    int rc = a ? 0 : default_arena(&a);
    if (rc < 0)
        return rc;
    if (!a->h)
        return MP_ECLOSED;
    if (size > a->size)
        return MP_ENOMEM;
    uint32_t need = (uint32_t)((size + HDR + UNIT - 1) / UNIT);
    rc = lock_heap(a);
    if (rc < 0)
        return rc;
    void *p = alloc_locked(a, need);
    mp__mutex_unlock(&a->h->lock);
    if (!p)
        return MP_ENOMEM;
    memset(p, 0, (size_t)need * UNIT - HDR);
    *out = p;
    return 0;
}

void *mp_arena_alloc(mp_arena *a, size_t size)
{
    if (size == 0) {
        (void)mp__fail(MP_EINVAL, "mp_arena_alloc: size must be > 0");
        return NULL;
    }
    void *p;
    return mp__arena_alloc(a, size, &p) == 0 ? p : NULL;
}

int mp_arena_dealloc(mp_arena *a, void *p)
{
    if (!p)
        return 0;
    if (!a)
        a = mp__arena_find(p);
    if (!a)
        return mp__fail(MP_EINVAL, "mp_arena_dealloc: p is in no arena of this process");
    if (!a->h)
        return MP_ECLOSED;
    int rc = lock_heap(a);
    if (rc < 0)
        return rc;
    /* Checked under the lock, so that two frees of one block cannot both
     * pass. */
    uint64_t off = block_of(a, p);
    if (off)
        free_locked(a, off);
    mp__mutex_unlock(&a->h->lock);
    return off ? 0
               : mp__fail(MP_EINVAL, "mp_arena_dealloc: p is not a block of the arena (or was "
                                     "freed before)");
}

int mp_arena_close(mp_arena *a)
{
    MP__NONNULL(a);
    reg_lock();
    if (a->is_default) {
        reg_unlock();
        return mp__fail(MP_EPERM, "mp_arena_close: the default arena is never closed");
    }
    if (!a->h) {
        reg_unlock();
        return 0; /* closed before */
    }
    mp_arena **pp = &reg.head;
    while (*pp && *pp != a)
        pp = &(*pp)->next;
    if (*pp)
        *pp = a->next;
    reg_unlock();
    mp__unmap(a->h, a->size);
    mp__close(a->fd);
    a->h = NULL;
    a->fd = -1;
    a->size = 0;
    return 0;
}

void mp_arena_free(mp_arena *a)
{
    if (!a || a->is_default)
        return;
    (void)mp_arena_close(a);
    free(a);
}
