/*
 * store.c - the manager's store: one memory file that the server and every
 * local client map, holding the objects, a lock, an undo log and an
 * allocator.
 *
 * DESIGN
 * Why a shared store.  A manager call from a local client could travel to
 * the server and back (a request ring, or a socket), but each hop costs a
 * cross-process wake-up of about 5 us on the reference machine, and a
 * round trip two: 100 k calls per second at best, with both processes
 * busy.  Performing the call in the client, on memory the server owns and
 * hands to authenticated clients, costs a lock and a hash lookup: a few
 * hundred nanoseconds, and it scales with the clients' own CPUs instead of
 * queueing behind one server thread.  The server runs the same code for
 * remote clients, so there is one implementation of every operation.
 *
 * The lock.  One robust process-shared mutex orders every operation on
 * every object.  Critical sections are short (no system call inside, no
 * waiting: waits release it, see store_sync.c), so one lock costs little
 * even with many clients, and one lock makes a transaction over several
 * keys, or the allocator and an object together, atomic without any
 * ordering rules.
 *
 * Dying inside.  A local client can be killed at any instruction,
 * including in the middle of an operation, with the lock held.  Every
 * write to memory that outlives the operation goes through mp__ms_set()
 * or mp__ms_write(), which first append the word's old value to an undo
 * log in the header.  The kernel marks the lock of a dead holder; the next
 * process to take it gets EOWNERDEAD and rolls the log back, newest entry
 * first, which restores every word the dead operation had changed - the
 * objects, the allocator's lists, the counts - exactly as they were before
 * it began.  Unlocking commits by emptying the log.  The same rollback
 * undoes an operation that fails halfway (a transaction whose check fails,
 * an update that runs out of memory), so every operation is all or
 * nothing.  Writes into a block allocated in the same operation need no
 * log: rolling back the allocation makes the block free again, and free
 * memory has no contents to restore (the allocator logs the one word of a
 * free block it keeps its list in).
 *
 * Ordering.  The log entry, the log count and the data word are written in
 * that order with compiler barriers between them.  That is enough: a
 * process dies between two instructions, never inside one, and another
 * process sees its memory only after taking the lock through the kernel,
 * which orders everything the dead process had stored.
 *
 * A stalled holder.  A client stopped (SIGSTOP, a debugger) in the few
 * hundred nanoseconds it holds the lock stops the others until it resumes;
 * a killed one stops nobody.
 *
 * Trust.  Local clients hold the authentication key and map the store
 * read-write, so they are trusted not to be hostile; but nothing read from
 * the store is used unchecked, so that a buggy client makes calls fail
 * (MP_EPROTO) rather than the server crash.  The layout (where the table
 * and the heap begin, their sizes) is computed, not read, and every
 * offset read from the store is checked against it before use.
 *
 * The allocator.  Blocks of 48 size classes (32, 48, 64, 96, ... bytes,
 * two per power of two), each with an 8-byte header naming its class, cut
 * from the top of the heap and kept on one free list per class when
 * freed.  No splitting and no merging: every change is a handful of logged
 * words, and the waste (a third on average) is the price of that.  Memory
 * once cut stays in the store; pages never written are never committed,
 * so a large store costs only what is used.
 *
 * The life lock.  The server's main thread holds a second robust mutex,
 * life, for as long as the server runs.  The kernel clears its holder when
 * the server dies, however it dies, so a local client learns that the
 * server is gone from one load, without a system call (mp__mstore_alive).
 */
#define _GNU_SOURCE
#include "mgr.h"

#include <stddef.h>
#include <sys/random.h>

#define MS_MAGIC        0x65726f74736d706dull /* "mpmstore" */
#define MS_VERSION      1
#define BLOCK_MAGIC     0x6d70626bull /* "mpbk" */
#define BLOCK_ALLOCATED 0x100ull
#define MS_MIN_HEAP     ((size_t)1 << 20)
#define MS_DEFAULT_SIZE ((size_t)256 << 20)
#define MS_MAX_SIZE     ((size_t)1 << 40)

_Static_assert(sizeof(ms_obj) == 128, "object slots are two cache lines");

static size_t round_up(size_t x, size_t to)
{
    return (x + to - 1) / to * to;
}

/* The layout, from the size alone: the header, the object table, the heap. */
static void layout(ms_store *s, size_t size)
{
    s->size = size;
    s->objs_off = round_up(sizeof(ms_header), 4096);
    s->max_objects = MP_MANAGER_MAX_OBJECTS;
    s->heap_off = round_up(s->objs_off + s->max_objects * sizeof(ms_obj), 4096);
}

static size_t class_size(unsigned c)
{
    size_t base = (c & 1) ? 48 : 32;
    return base << (c / 2);
}

int mp__mstore_create(size_t size, ms_store *s)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    if (size == 0)
        size = MS_DEFAULT_SIZE;
    layout(s, 0);
    if (size > MS_MAX_SIZE || size < s->heap_off + MS_MIN_HEAP)
        return MP_EINVAL;
    size = round_up(size, 4096);
    layout(s, size);
    int fd = mp__memfd_new("manager-store", size);
    if (fd < 0)
        return fd;
    void *p;
    int rc = mp__map_fd(fd, size, NULL, &p);
    if (rc < 0) {
        mp__close(fd);
        return rc;
    }
    /* A size that cannot change: no process holding the file can make the
     * others' mappings fault by truncating it. */
    (void)mp__memfd_seal_size(fd);
    s->fd = fd;
    s->base = p;
    s->h = p;
    s->objs = (ms_obj *)(s->base + s->objs_off);
    ms_header *h = s->h;
    h->magic = MS_MAGIC;
    h->version = MS_VERSION;
    h->size = size;
    h->objs_off = s->objs_off;
    h->heap_off = s->heap_off;
    h->max_objects = s->max_objects;
    if (getrandom(&h->seed, sizeof h->seed, 0) != (ssize_t)sizeof h->seed)
        h->seed = (uint64_t)mp__now_ns() * 0x9e3779b97f4a7c15ull;
    s->seed = h->seed;
    h->top = s->heap_off;
    if ((rc = mp__mutex_init(&h->life)) < 0 || (rc = mp__mutex_init(&h->lock)) < 0) {
        mp__mstore_detach(s);
        return rc;
    }
    return 0;
}

int mp__mstore_attach(int fd, ms_store *s)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    size_t size;
    int rc = mp__fd_size(fd, &size);
    if (rc < 0)
        return rc;
    layout(s, 0);
    if (size < s->heap_off + MS_MIN_HEAP || size > MS_MAX_SIZE || size % 4096)
        return MP_EPROTO;
    layout(s, size);
    void *p;
    if ((rc = mp__map_fd(fd, size, NULL, &p)) < 0)
        return rc;
    s->base = p;
    s->h = p;
    s->objs = (ms_obj *)(s->base + s->objs_off);
    const ms_header *h = s->h;
    if (h->magic != MS_MAGIC || h->version != MS_VERSION || h->size != size ||
        h->objs_off != s->objs_off || h->heap_off != s->heap_off ||
        h->max_objects != s->max_objects || h->server_tid <= 0) {
        mp__unmap(p, size);
        memset(s, 0, sizeof *s);
        s->fd = -1;
        return MP_EPROTO;
    }
    s->server_tid = h->server_tid;
    s->seed = h->seed;
    s->fd = fd;
    return 0;
}

void mp__mstore_detach(ms_store *s)
{
    if (s->base)
        mp__unmap(s->base, s->size);
    mp__close(s->fd);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}

int mp__mstore_live(ms_store *s)
{
    int rc = mp__mutex_lock(&s->h->life, MP__NO_DEADLINE);
    if (rc == MP_EOWNERDEAD)
        rc = mp__mutex_consistent(&s->h->life);
    if (rc < 0)
        return rc;
    s->server_tid = s->h->server_tid = mp__self_tid();
    return 0;
}

bool mp__mstore_alive(const ms_store *s)
{
    return s->base && mp__mutex_owner_tid(&s->h->life) == (pid_t)s->server_tid;
}

/* ---- the lock and the undo log -------------------------------------------- */

/* Whether off names a word that operations may write (and so the log may
 * restore): the allocator's words in the header, or anything from the
 * object table on. */
static bool loggable(const ms_store *s, uint64_t off)
{
    if (off % 8)
        return false;
    if (off >= offsetof(ms_header, top) && off < offsetof(ms_header, logged_end))
        return true;
    return off >= s->objs_off && off <= s->size - 8;
}

void mp__mstore_rollback(ms_store *s)
{
    ms_header *h = s->h;
    uint64_t n = h->log_n;
    if (n > MS_LOG_CAP)
        n = MS_LOG_CAP;
    while (n > 0) {
        n--;
        ms_undo e = h->log[n];
        if (loggable(s, e.off))
            *(uint64_t *)(s->base + e.off) = e.old;
    }
    /* The restored words before the empty log: a death here rolls back
     * again, which writes the same values. */
    atomic_signal_fence(memory_order_seq_cst);
    h->log_n = 0;
}

void mp__mstore_commit(ms_store *s)
{
    /* Every write of the operation before the log is emptied. */
    atomic_signal_fence(memory_order_seq_cst);
    s->h->log_n = 0;
    s->lost = false;
}

int mp__mstore_lock(ms_store *s)
{
    int rc = mp__mutex_lock(&s->h->lock, MP__NO_DEADLINE);
    if (rc == MP_EOWNERDEAD) {
        /* The holder died inside an operation: undo it (see DESIGN). */
        mp__mstore_rollback(s);
        rc = mp__mutex_consistent(&s->h->lock);
        if (rc < 0) {
            (void)mp__mutex_unlock(&s->h->lock);
            return rc;
        }
    }
    s->lost = false;
    return rc;
}

void mp__mstore_unlock(ms_store *s)
{
    mp__mstore_commit(s);
    (void)mp__mutex_unlock(&s->h->lock);
}

static void log_word(ms_store *s, uint64_t *w)
{
    ms_header *h = s->h;
    uint64_t n = h->log_n;
    if (n >= MS_LOG_CAP) {
        /* The limits keep every operation far below the log's size; if
         * one still got here it could not be rolled back. */
        s->lost = true;
        return;
    }
    h->log[n].off = mp__ms_off(s, w);
    h->log[n].old = *w;
    atomic_signal_fence(memory_order_seq_cst); /* the entry before the count */
    h->log_n = n + 1;
    atomic_signal_fence(memory_order_seq_cst); /* the count before the write */
}

void (*mp__mstore_fault)(uint64_t logged);

void mp__ms_set(ms_store *s, uint64_t *word, uint64_t v)
{
    log_word(s, word);
    *word = v;
    if (mp__mstore_fault)
        mp__mstore_fault(s->h->log_n);
}

void mp__ms_write(ms_store *s, void *dst, const void *src, size_t len)
{
    if (len == 0)
        return;
    uint64_t first = mp__ms_off(s, dst) & ~(uint64_t)7;
    uint64_t last = (mp__ms_off(s, dst) + len - 1) & ~(uint64_t)7;
    for (uint64_t off = first; off <= last; off += 8)
        log_word(s, (uint64_t *)(s->base + off));
    memcpy(dst, src, len);
    if (mp__mstore_fault)
        mp__mstore_fault(s->h->log_n);
}

void *mp__ms_at(const ms_store *s, uint64_t off, size_t len)
{
    if (off < s->heap_off || off > s->size || len > s->size - off)
        return NULL;
    return s->base + off;
}

/* ---- the allocator ------------------------------------------------------------ */

/* The header of the block whose payload is at off, if it is a block of
 * the heap with a sane header. */
static uint64_t *block_hdr(const ms_store *s, uint64_t off, unsigned *cls)
{
    if (off % 8 || off < s->heap_off + 8)
        return NULL;
    uint64_t *hdr = mp__ms_at(s, off - 8, 8);
    if (!hdr || *hdr >> 32 != BLOCK_MAGIC)
        return NULL;
    unsigned c = (unsigned)(*hdr & 0xff);
    if (c >= MS_NCLASS || !mp__ms_at(s, off - 8, class_size(c)))
        return NULL;
    *cls = c;
    return hdr;
}

uint64_t mp__ms_alloc(ms_store *s, size_t size)
{
    ms_header *h = s->h;
    unsigned c = 0;
    while (c < MS_NCLASS && class_size(c) < size + 8)
        c++;
    if (c == MS_NCLASS)
        return 0;
    uint64_t b = h->free_head[c];
    if (b) {
        unsigned bc = MS_NCLASS;
        uint64_t *hdr = block_hdr(s, b + 8, &bc);
        uint64_t *link = mp__ms_at(s, b + 8, 8);
        uint64_t next = link ? *link : 0;
        if (!hdr || !link || bc != c || (*hdr & BLOCK_ALLOCATED) ||
            (next && !mp__ms_at(s, next, 16))) {
            /* A damaged list: forget it (its blocks are lost, nothing
             * else is), and cut a fresh block instead. */
            mp__ms_set(s, &h->free_head[c], 0);
        } else {
            mp__ms_set(s, &h->free_head[c], next);
            mp__ms_set(s, link, 0);
            mp__ms_set(s, hdr, (BLOCK_MAGIC << 32) | BLOCK_ALLOCATED | c);
            mp__ms_set(s, &h->used, h->used + class_size(c));
            return b + 8;
        }
    }
    uint64_t top = h->top, need = class_size(c);
    if (top < s->heap_off || top > s->size || need > s->size - top)
        return 0;
    mp__ms_set(s, &h->top, top + need);
    mp__ms_set(s, &h->used, h->used + need);
    /* Fresh memory above the old top: restoring top frees it again. */
    *(uint64_t *)(s->base + top) = (BLOCK_MAGIC << 32) | BLOCK_ALLOCATED | c;
    return top + 8;
}

size_t mp__ms_block_size(const ms_store *s, uint64_t off)
{
    unsigned c;
    uint64_t *hdr = block_hdr(s, off, &c);
    if (!hdr || !(*hdr & BLOCK_ALLOCATED))
        return 0;
    return class_size(c) - 8;
}

void mp__ms_free(ms_store *s, uint64_t off)
{
    unsigned c;
    uint64_t *hdr = block_hdr(s, off, &c);
    if (!hdr || !(*hdr & BLOCK_ALLOCATED))
        return; /* not a live block: nothing to give back */
    ms_header *h = s->h;
    uint64_t *link = (uint64_t *)(s->base + off);
    mp__ms_set(s, hdr, (BLOCK_MAGIC << 32) | c);
    mp__ms_set(s, link, h->free_head[c]);
    mp__ms_set(s, &h->free_head[c], off - 8);
    mp__ms_set(s, &h->used, h->used >= class_size(c) ? h->used - class_size(c) : 0);
}

/* ---- keys and objects ------------------------------------------------------- */

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

/* Seeded per store, so that keys chosen to collide in one store do not
 * collide in another. */
uint64_t mp__ms_hash(const ms_store *s, const void *p, size_t len)
{
    const uint8_t *b = p;
    uint64_t h = s->seed ^ (len * 0x9e3779b97f4a7c15ull);
    while (len >= 8) {
        uint64_t k;
        memcpy(&k, b, 8);
        h = mix(h ^ k) + 0x632be59bd9b4e019ull;
        b += 8;
        len -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, b, len);
    return mix(h ^ k ^ ((uint64_t)len << 56));
}

ms_obj *mp__ms_obj(ms_store *s, uint32_t index, uint32_t gen)
{
    if (index >= s->max_objects)
        return NULL;
    ms_obj *o = &s->objs[index];
    if (o->type == 0 || o->gen != gen)
        return NULL;
    return o;
}
