/*
 * worker.c - a pool's worker process: finds work in shared memory, runs
 * it, and reports completions, following the protocol in records.h.
 *
 * DESIGN
 * The worker keeps no state that matters outside its slot: whatever it
 * holds is named there (intent) before it is taken, and whatever it
 * finished is in its unit's state and its completion ring.  So it can die
 * at any instruction - inside the task, or inside this file - and the
 * supervisor still knows what it held.
 *
 * Its loop: announce the job entry it looks at (hazard), check the entry
 * still holds the job published at that position, write its intent, claim
 * a unit by CAS, run it, mark the unit DONE, push a completion record, and
 * wake the supervisor only if it sleeps.  When there is nothing to do it
 * spins a little (work often comes in bursts), then sleeps on a futex.
 *
 * Results of apply tasks stay in the job's inline space while they are
 * small, and otherwise go into the worker's own result file, a ring the
 * supervisor reads with pread() and releases in order.  A result that
 * outgrows the free space waits until the supervisor has read everything
 * before it, then has the whole file, grown if need be.
 *
 * Signals.  Workers start from the supervisor thread, which blocks every
 * signal; a worker unblocks them all at once (a blocked SIGSEGV would kill
 * it without a crash report) and ignores SIGINT, which belongs to the
 * parent.  SIGTERM keeps its default action, so terminate works.
 */
#define _GNU_SOURCE
#include "records.h"

#include <sched.h>
#include <signal.h>
#include <stdio_ext.h>
#include <sys/mman.h>
#include <unistd.h>

#define SPIN_ROUNDS  200
#define RES_MIN_CAP  ((size_t)64 << 10)
#define RES_KEEP_CAP ((size_t)16 << 20)
/* A RIN/ROUT map moves its items between the parent's memory and the
 * worker's in slices of about this many bytes: small enough that a slice
 * read is still in the cache when the function runs over it, and written
 * back while it still is. */
#define SLICE_BYTES ((size_t)64 << 10)

typedef struct wctx {
    mp__pool_hdr *hdr;
    mp__wslot *slot;
    uint32_t w;
    uint32_t *order;
    mp__job *jobs;
    mp__fnent *fns;
    unsigned char *data;
    size_t data_mapped;
    int data_fd;
    int res_fd;
    unsigned char *res;
    size_t res_cap;
    uint64_t res_produced;
    size_t res_head;
    int ev_fd;
    bool fresh; /* forkserver or spawn: functions are found by reference */
    void *fn_cache[MP__POOL_FNS];
    uint64_t maxtasks, tasks;
    uint32_t done_head;
    uint64_t claims;
    uint64_t res_seen;      /* res_consumed when a wait for result space began */
    unsigned char *scratch; /* a RIN/ROUT map's slice buffers */
    size_t scratch_cap;
} wctx;

struct mp_buf {
    wctx *c;
    unsigned char *data;
    size_t len, cap;
    size_t off; /* in the result file, when where == MP__RES_RING */
    int where;
    bool failed;
};

/* ---- shared memory ------------------------------------------------------- */

/* Maps what the parent added to the data region, so that [0, need) is
 * mapped.  Returns 0, or an error when the parent never published that
 * much (a broken protocol) or the mapping fails. */
static int ensure_data(wctx *c, uint64_t need)
{
    if (need <= c->data_mapped)
        return 0;
    size_t size = (size_t)atomic_load(&c->hdr->data_size);
    if (need > size)
        return MP_EPROTO;
    int rc = mp__vm_map_fixed(c->data_fd, c->data_mapped, size - c->data_mapped,
                              c->data + c->data_mapped);
    if (rc < 0)
        return rc;
    c->data_mapped = size;
    return 0;
}

/* Waits, for at most a short while, until the supervisor has freed ring or
 * result space - done() says when - waking it first.  Callers loop. */
static void wait_supervisor(wctx *c, bool (*done)(wctx *))
{
    mp__wslot *s = c->slot;
    /* waiting, then the wake count, then a last look: the supervisor frees
     * space, then reads `waiting`, so either we see the space here or it
     * sees us waiting and bumps `wake` past `seen`. */
    atomic_store(&s->waiting, 1);
    uint32_t seen = atomic_load(&s->wake);
    if (!done(c)) {
        mp__pool_kick(c->hdr, c->ev_fd);
        /* Bounded: should the supervisor be gone, the parent is gone too
         * and the death signal ends this process; the bound only keeps a
         * lost wake-up from ever being more than a delay. */
        (void)mp__futex_wait(&s->wake, seen, mp__deadline(0.1));
    }
    atomic_store(&s->waiting, 0);
}

static bool ring_has_room(wctx *c)
{
    return c->done_head - atomic_load(&c->slot->done_tail) < MP__POOL_DONE;
}

/* Appends a completion record and wakes the supervisor if it sleeps. */
static void push_rec(wctx *c, uint32_t kind, uint32_t entry, uint64_t unit, uint64_t item,
                     int64_t code)
{
    mp__wslot *s = c->slot;
    while (!ring_has_room(c))
        wait_supervisor(c, ring_has_room);
    mp__rec *r = &s->ring[c->done_head & (MP__POOL_DONE - 1)];
    r->entry = entry;
    r->kind = kind;
    r->unit = unit;
    r->item = item;
    r->code = code;
    /* seq_cst: the record is published before sup_sleeping is read (the
     * supervisor stores sup_sleeping before it looks at the rings). */
    atomic_store(&s->done_head, ++c->done_head);
    mp__pool_kick(c->hdr, c->ev_fd);
}

/* ---- the result ring ------------------------------------------------------ */

static bool res_empty(wctx *c)
{
    return atomic_load(&c->slot->res_consumed) == c->res_produced;
}

/* Sets the file's capacity to cap bytes and maps it.  Only while the ring
 * is empty of unread results (the current, unpublished one excepted,
 * whose bytes the file keeps). */
static int res_resize(wctx *c, size_t cap)
{
    int rc = mp__file_resize(c->res_fd, cap);
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

/* The end of the free space that starts at off == res_head (or at 0 in an
 * empty ring). */
static size_t res_limit(wctx *c, size_t off)
{
    if (res_empty(c))
        return c->res_cap;
    size_t tail = (size_t)atomic_load(&c->slot->res_tail);
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
        size_t tail = (size_t)atomic_load(&c->slot->res_tail);
        size_t head = c->res_head;
        size_t to = SIZE_MAX;
        if (res_empty(c)) {
            if (need > c->res_cap) {
                size_t cap = c->res_cap ? c->res_cap : RES_MIN_CAP;
                while (cap < need) {
                    if (cap > SIZE_MAX / 2)
                        return MP_ENOMEM;
                    cap *= 2;
                }
                int rc = res_resize(c, cap);
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
        wait_supervisor(c, res_progress);
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
    if (!b || b->failed || len > SIZE_MAX - b->len)
        return NULL;
    size_t newlen = b->len + len;
    if (newlen > b->cap && buf_grow(b, newlen) < 0) {
        b->failed = true;
        return NULL;
    }
    void *p = b->data + b->len;
    b->len = newlen;
    return p;
}

int mp_buf_append(mp_buf *b, const void *data, size_t len)
{
    if (!b || (len && !data))
        return MP_EINVAL;
    void *p = mp_buf_alloc(b, len);
    if (!p)
        return len ? MP_ENOMEM : 0;
    if (len)
        memcpy(p, data, len);
    return 0;
}

void *mp_buf_data(mp_buf *b)
{
    return b ? b->data : NULL;
}

size_t mp_buf_len(const mp_buf *b)
{
    return b ? b->len : 0;
}

void mp_buf_truncate(mp_buf *b, size_t len)
{
    if (b && len < b->len)
        b->len = len;
}

/* ---- finding work ---------------------------------------------------------- */

static void *resolve_fn(wctx *c, uint32_t id)
{
    if (id >= MP__POOL_FNS)
        return NULL;
    if (!c->fresh)
        return (void *)(uintptr_t)c->fns[id].ptr;
    if (!c->fn_cache[id]) {
        void *fn = NULL;
        if (mp__fnref_resolve(&c->fns[id].ref, &fn) == 0)
            c->fn_cache[id] = fn;
    }
    return c->fn_cache[id];
}

static void advance_head(mp__pool_hdr *h, uint64_t head)
{
    /* Someone else may have moved it already; either way it is past. */
    atomic_compare_exchange_strong(&h->job_head, &head, head + 1);
}

static bool has_work(mp__pool_hdr *h)
{
    return atomic_load(&h->job_head) < atomic_load(&h->job_tail);
}

/* Claims the next unit.  Returns 1 with *entry and *unit set, 0 when there
 * is nothing to claim, or an error. */
static int claim(wctx *c, uint32_t *entry, uint64_t *unit)
{
    mp__pool_hdr *h = c->hdr;
    mp__wslot *s = c->slot;
    for (;;) {
        uint64_t head = atomic_load(&h->job_head);
        if (head >= atomic_load(&h->job_tail))
            return 0;
        /* The parent wrote order[] before it published job_tail, which was
         * read above. */
        uint32_t e = c->order[head & (MP__POOL_ORDER - 1)];
        if (e >= MP__POOL_JOBS) {
            advance_head(h, head);
            continue;
        }
        /* The hazard first, then the check of seq (both seq_cst): the
         * parent retires an entry in the opposite order, so it cannot
         * reuse what is read below. */
        atomic_store(&s->hazard, e + 1);
        mp__job *j = &c->jobs[e];
        if (atomic_load(&j->seq) != head) {
            advance_head(h, head);
            continue;
        }
        if (j->kind == MP__JOB_APPLY) {
            /* Relaxed: the CAS below is a release, so whoever sees the
             * unit RUNNING by this worker sees the intent too. */
            atomic_store_explicit(&s->intent_unit, 0, memory_order_relaxed);
            atomic_store_explicit(&s->intent_job, e + 1, memory_order_relaxed);
            uint32_t expect = MP__U_QUEUED;
            bool ok = atomic_compare_exchange_strong(&j->state, &expect, MP__U_RUNNING_BY(c->w));
            advance_head(h, head);
            if (ok) {
                *entry = e;
                *unit = 0;
                return 1;
            }
            continue;
        }
        uint64_t nunits = j->u.map.nunits;
        int rc = ensure_data(c, j->u.map.units_off + nunits * sizeof(mp__unit));
        if (rc < 0)
            return rc;
        mp__unit *units = (mp__unit *)(c->data + j->u.map.units_off);
        uint64_t u = atomic_fetch_add(&j->next_unit, 1);
        if (u >= nunits) {
            advance_head(h, head);
            continue;
        }
        /* Relaxed, as above: published by the CAS that follows. */
        atomic_store_explicit(&s->intent_unit, u, memory_order_relaxed);
        atomic_store_explicit(&s->intent_job, e + 1, memory_order_relaxed);
        /* No item of this unit has begun: the supervisor must not take an
         * index left from an earlier unit for this one's. */
        atomic_store_explicit(&s->item, UINT64_MAX, memory_order_relaxed);
        uint32_t expect = MP__U_QUEUED;
        if (atomic_compare_exchange_strong(&units[u].state, &expect, MP__U_RUNNING_BY(c->w))) {
            *entry = e;
            *unit = u;
            return 1;
        }
        /* Lost to another worker (a re-queued unit) or cancelled. */
    }
}

/* ---- running ---------------------------------------------------------------- */

static void run_apply(wctx *c, uint32_t e)
{
    mp__job *j = &c->jobs[e];
    mp_task_fn fn = (mp_task_fn)resolve_fn(c, j->fn);
    size_t len = (size_t)j->u.apply.arg_len;
    const void *arg = NULL;
    int rc = 0;
    if (len > MP__POOL_INLINE) {
        rc = ensure_data(c, j->u.apply.arg_off + len);
        arg = c->data + j->u.apply.arg_off;
    } else if (len) {
        arg = j->arg;
    }
    mp_buf b = {.c = c, .data = j->res, .cap = MP__POOL_INLINE, .where = MP__RES_INLINE};
    /* BUSY while the task's own code runs: what the time limit measures
     * (read by the watchdog, for which a late view is harmless). */
    atomic_store_explicit(&c->slot->state, MP__W_BUSY, memory_order_relaxed);
    if (rc == 0)
        rc = fn ? fn(arg, len, &b) : MP_ENOENT;
    if (rc == 0 && b.failed)
        rc = MP_ENOMEM;
    if (b.where == MP__RES_RING && b.len == 0)
        b.where = MP__RES_INLINE; /* nothing to read: keep the ring's count exact */
    j->u.apply.status = rc;
    j->u.apply.res_len = b.len;
    j->u.apply.res_where = (uint32_t)b.where;
    j->u.apply.res_off = b.off;
    j->u.apply.runner = c->w;
    if (b.where == MP__RES_RING) {
        c->res_produced++;
        c->res_head = b.off + b.len;
    }
    /* Result first, then DONE (release), then the record. */
    atomic_store_explicit(&j->state, MP__U_DONE, memory_order_release);
    push_rec(c, MP__REC_DONE, e, 0, 0, 0);
}

/* Waits until the parent has copied the inputs up to item `end`.  It
 * copies at memory speed, ahead of the computing workers, so this rarely
 * waits, and briefly: yielding lets the copying thread have the CPU on a
 * machine with few cores; sleeps after a while bound the waste should it
 * be descheduled.  A worker killed here held the unit but began no item,
 * so its unit is simply run again. */
static bool wait_inputs(wctx *c, mp__map_ready *ready, uint64_t end)
{
    for (unsigned spins = 0; atomic_load(&ready->items) < end; spins++) {
        if (atomic_load(&c->hdr->stop) == MP__STOP_NOW)
            return false;
        if (spins < 64)
            sched_yield();
        else
            mp__sleep_ns(50000);
    }
    return true;
}

/* Runs fn over items [i, end) and returns end, or the first item whose
 * call failed, with what it returned in *rc.  A function of its own, kept
 * out of line, so that the loop's values stay in registers across the
 * calls: this loop is what a map of a trivial function costs. */
__attribute__((noinline)) static uint64_t
run_items(mp_map_fn fn, const unsigned char *ip, uint64_t istep, unsigned char *op, uint64_t ostep,
          const void *ctx, _Atomic uint64_t *item, uint64_t i, uint64_t end, int *rc)
{
    for (; i < end; i++, ip += istep, op += ostep) {
        /* Release: the outputs of the items before are written before
         * anyone can read that this one began. */
        atomic_store_explicit(item, i, memory_order_release);
        int r = fn(ip, op, ctx);
        if (__builtin_expect(r != 0, 0)) {
            *rc = r;
            return i;
        }
    }
    return end;
}

/* A scratch buffer of at least len bytes, or NULL. */
static unsigned char *scratch(wctx *c, size_t len)
{
    if (len > c->scratch_cap) {
        unsigned char *b = realloc(c->scratch, len);
        if (!b)
            return NULL;
        c->scratch = b;
        c->scratch_cap = len;
    }
    return c->scratch;
}

struct mp__pool_vm_fault mp__pool_vm_fault;

/* One copy from (write false) or to the caller's memory. */
static int vm_copy(const mp__map_ready *r, uint64_t remote, void *local, size_t len, bool write)
{
    if (__builtin_expect(mp__pool_vm_fault.err != 0, 0) && mp__pool_vm_fault.after-- == 0) {
        mp__pool_vm_fault.after = 0;
        return mp__pool_vm_fault.err;
    }
    return write ? mp__vm_write(r->rpid, remote, local, len)
                 : mp__vm_read(r->rpid, remote, local, len);
}

/* The parent's memory cannot be read or written: maps that follow are
 * copied through shared memory instead. */
static void vm_refused(wctx *c, int rc)
{
    if (rc == -EPERM || rc == -ENOSYS || rc == -EACCES)
        atomic_store(&c->hdr->vm, MP__VM_DENIED);
}

/* Runs items [start, end) of a RIN or ROUT map, a slice at a time: reads
 * the slice's inputs from the parent's memory (RIN), runs the function,
 * writes the slice's outputs there (ROUT).  An item function writes into
 * the data region (out, item by item, as for any map), so that what a
 * dying worker finished is still there for the supervisor; a range
 * function, which fails as a whole, into scratch.  Returns 0, or the
 * first failure, already reported. */
static int run_remote(wctx *c, uint32_t e, uint64_t u, const mp__map_ready *r, uint64_t base,
                      uint64_t start, uint64_t end, unsigned char *out, const void *ctx)
{
    mp__job *j = &c->jobs[e];
    const uint64_t isz = j->u.map.in_size, osz = j->u.map.out_size;
    const bool rin = j->flags & MP__JOB_RIN, rout = j->flags & MP__JOB_ROUT;
    const bool range = j->flags & MP__JOB_RANGE;
    mp__wslot *s = c->slot;
    uint64_t big = isz > osz ? isz : osz;
    uint64_t step = big ? SLICE_BYTES / big : 0;
    if (step == 0)
        step = 1;
    if (step > end - start)
        step = end - start;
    size_t in_len = rin ? (size_t)(step * isz) : 0;
    size_t out_len = range && rout ? (size_t)(step * osz) : 0;
    unsigned char *buf = scratch(c, in_len + out_len + 1);
    int rc = buf ? 0 : MP_ENOMEM;
    void *fn = resolve_fn(c, j->fn);
    if (rc == 0 && !fn)
        rc = MP_ENOENT;
    /* A run resumed after a death: the items before start finished in
     * out, in the data region, and may not have reached the caller. */
    uint64_t i = start;
    if (rc == 0 && rout && !range && start > base) {
        rc = vm_copy(r, r->rout + base * osz, out + base * osz, (size_t)((start - base) * osz),
                     true);
        if (rc < 0)
            i = base; /* those outputs are lost too */
    }
    atomic_store_explicit(&s->state, MP__W_BUSY, memory_order_relaxed);
    while (rc == 0 && i < end) {
        uint64_t k = end - i < step ? end - i : step;
        /* The slice's first item is in progress from here: a worker
         * killed while reading it fails it (a range: the slice). */
        atomic_store_explicit(&s->item, i, memory_order_release);
        const unsigned char *ip = NULL;
        if (rin) {
            rc = vm_copy(r, r->rin + i * isz, buf, (size_t)(k * isz), false);
            if (rc < 0)
                break;
            ip = buf;
        } else if (isz) {
            ip = c->data + j->u.map.in_off + i * isz;
        }
        unsigned char *op = NULL;
        if (osz)
            op = range && rout ? buf + in_len : out + i * osz;
        if (range) {
            int r2 = ((mp_map_range_fn)fn)(ip, op, (size_t)k, ctx);
            if (r2 != 0) {
                push_rec(c, MP__REC_ITEM_ERROR, e, u, i, r2);
                return r2;
            }
        } else {
            const uint64_t istep = ip ? isz : 0, ostep = op ? osz : 0;
            uint64_t at = i, lim = i + k;
            while (at < lim) {
                int r2 = 0;
                uint64_t stop =
                    run_items((mp_map_fn)fn, ip, istep, op, ostep, ctx, &s->item, at, lim, &r2);
                if (stop == lim)
                    break;
                push_rec(c, MP__REC_ITEM_ERROR, e, u, stop, r2);
                ip = ip ? ip + (stop + 1 - at) * istep : NULL;
                op = op ? op + (stop + 1 - at) * ostep : NULL;
                at = stop + 1;
            }
        }
        if (rout && osz) {
            rc = vm_copy(r, r->rout + i * osz, range ? buf + in_len : out + i * osz,
                         (size_t)(k * osz), true);
            if (rc < 0)
                break;
        }
        i += k;
    }
    if (rc < 0 && i < end) {
        /* The rest of the unit cannot be done here: its items fail with
         * the reason, as if the function had returned it. */
        vm_refused(c, rc);
        push_rec(c, MP__REC_REST_ERROR, e, u, i, rc);
    }
    return rc;
}

/* Runs unit u of map job e.  Returns false when the pool stopped before
 * the unit's inputs were all there: the unit is left unfinished, for the
 * supervisor to cancel. */
static bool run_map(wctx *c, uint32_t e, uint64_t u)
{
    mp__job *j = &c->jobs[e];
    const uint64_t n = j->u.map.n, chunk = j->u.map.chunk;
    const uint64_t isz = j->u.map.in_size, osz = j->u.map.out_size;
    const bool rin = j->flags & MP__JOB_RIN;
    const bool remote = j->flags & (MP__JOB_RIN | MP__JOB_ROUT);
    const bool shm_out = osz && !((j->flags & MP__JOB_ROUT) && (j->flags & MP__JOB_RANGE));
    mp__unit *unit = (mp__unit *)(c->data + j->u.map.units_off) + u;
    uint64_t base = u * chunk;
    uint64_t start = base + unit->resume;
    uint64_t end = (u + 1) * chunk < n ? (u + 1) * chunk : n;
    uint64_t need = j->u.map.units_off + j->u.map.nunits * sizeof(mp__unit);
    if (j->u.map.ready_off + sizeof(mp__map_ready) > need)
        need = j->u.map.ready_off + sizeof(mp__map_ready);
    if (isz && !rin && j->u.map.in_off + n * isz > need)
        need = j->u.map.in_off + n * isz;
    if (shm_out && j->u.map.out_off + n * osz > need)
        need = j->u.map.out_off + n * osz;
    if (j->u.map.ctx_len && j->u.map.ctx_off + j->u.map.ctx_len > need)
        need = j->u.map.ctx_off + j->u.map.ctx_len;
    int rc = ensure_data(c, need);
    const unsigned char *in = isz && !rin ? c->data + j->u.map.in_off : NULL;
    unsigned char *out = shm_out ? c->data + j->u.map.out_off : NULL;
    const void *ctx = j->u.map.ctx_len ? c->data + j->u.map.ctx_off : NULL;
    mp__wslot *s = c->slot;
    const mp__map_ready *ready = (const mp__map_ready *)(c->data + j->u.map.ready_off);
    if (rc == 0 && in && !wait_inputs(c, (mp__map_ready *)(c->data + j->u.map.ready_off), end))
        return false;
    if (rc == 0 && remote) {
        (void)run_remote(c, e, u, ready, base, start, end, out, ctx);
    } else if (j->flags & MP__JOB_RANGE) {
        /* BUSY from the first item on: waiting for the inputs is not the
         * items' time. */
        atomic_store_explicit(&s->state, MP__W_BUSY, memory_order_relaxed);
        mp_map_range_fn fn = (mp_map_range_fn)resolve_fn(c, j->fn);
        atomic_store_explicit(&s->item, start, memory_order_release);
        if (rc == 0 && start < end)
            rc = fn ? fn(in ? in + start * isz : NULL, out ? out + start * osz : NULL,
                         (size_t)(end - start), ctx)
                    : MP_ENOENT;
        if (rc != 0 && start < end)
            push_rec(c, MP__REC_ITEM_ERROR, e, u, start, rc == 0 ? MP_EPROTO : rc);
    } else {
        atomic_store_explicit(&s->state, MP__W_BUSY, memory_order_relaxed);
        mp_map_fn fn = (mp_map_fn)resolve_fn(c, j->fn);
        if (rc == 0 && !fn)
            rc = MP_ENOENT;
        /* With no input (or output) every item gets NULL, through a
         * stride of 0 from a NULL base. */
        const unsigned char *ip = in ? in + start * isz : NULL;
        unsigned char *op = out ? out + start * osz : NULL;
        const uint64_t istep = in ? isz : 0, ostep = out ? osz : 0;
        uint64_t i = start;
        while (i < end) {
            int r = rc;
            uint64_t stop = rc ? i : run_items(fn, ip, istep, op, ostep, ctx, &s->item, i, end, &r);
            if (stop == end)
                break;
            push_rec(c, MP__REC_ITEM_ERROR, e, u, stop, r);
            ip += (stop + 1 - i) * istep;
            op += (stop + 1 - i) * ostep;
            i = stop + 1;
        }
    }
    /* Release: the outputs before DONE. */
    atomic_store_explicit(&unit->state, MP__U_DONE, memory_order_release);
    push_rec(c, MP__REC_DONE, e, u, 0, 0);
    return true;
}

/* ---- the loop ------------------------------------------------------------------ */

static void wait_for_work(wctx *c)
{
    mp__pool_hdr *h = c->hdr;
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        if (has_work(h) || atomic_load_explicit(&h->stop, memory_order_relaxed))
            return;
        mp__cpu_relax();
    }
    atomic_store(&c->slot->hazard, 0);
    /* The sequence, then idle, then a last look; the parent publishes,
     * bumps the sequence, then reads idle (see records.h). */
    uint32_t seq = atomic_load(&h->work_seq);
    atomic_fetch_add(&h->idle, 1);
    if (!has_work(h) && !atomic_load(&h->stop)) {
        /* Whoever wakes us takes the registration. */
        (void)mp__futex_wait(&h->work_seq, seq, MP__NO_DEADLINE);
        return;
    }
    /* Never slept: withdraw the registration, unless a waker took one
     * meanwhile - then it stands for us, and its wake-up was wasted. */
    uint32_t idle = atomic_load(&h->idle);
    while (idle > 0 && !atomic_compare_exchange_weak(&h->idle, &idle, idle - 1)) {
    }
}

static int serve(wctx *c)
{
    mp__pool_hdr *h = c->hdr;
    mp__wslot *s = c->slot;
    for (;;) {
        uint32_t stop = atomic_load(&h->stop);
        if (stop == MP__STOP_NOW) {
            atomic_store(&s->state, MP__W_EXITING);
            return 0;
        }
        uint32_t e;
        uint64_t u;
        int rc = claim(c, &e, &u);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            if (stop == MP__STOP_DRAIN) {
                atomic_store(&s->state, MP__W_EXITING);
                return 0;
            }
            wait_for_work(c);
            continue;
        }
        /* The unit is ours now: its job cannot be retired under us.  The
         * watchdog's key needs no ordering: it only looks for a change. */
        atomic_store_explicit(&s->hazard, 0, memory_order_release);
        atomic_store_explicit(&s->claims, ++c->claims, memory_order_relaxed);
        if (c->jobs[e].kind == MP__JOB_APPLY) {
            if (c->res_cap > RES_KEEP_CAP && res_empty(c))
                (void)res_resize(c, RES_MIN_CAP); /* give a huge result's memory back */
            run_apply(c, e);
        } else if (!run_map(c, e, u)) {
            atomic_store(&s->state, MP__W_EXITING);
            return 0;
        }
        atomic_store_explicit(&s->state, MP__W_READY, memory_order_relaxed);
        if (c->maxtasks && ++c->tasks >= c->maxtasks) {
            atomic_store(&s->state, MP__W_RECYCLE);
            return 0;
        }
    }
}

int mp__pool_worker_main(void *arg)
{
    const mp__wboot *b = arg;
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_IGN);

    wctx c;
    memset(&c, 0, sizeof c);
    c.w = b->slot;
    c.maxtasks = b->maxtasks;
    c.fresh = b->method != MP_START_FORK;
    mp_init_fn init = NULL;
    void *initarg = NULL;
    if (!c.fresh) {
        /* A fork of the supervisor thread: bytes another thread of the
         * parent had buffered in stdout at that instant are the parent's
         * to print, not ours. */
        __fpurge(stdout);
        c.hdr = b->ctrl;
        c.data = b->data;
        c.data_mapped = (size_t)atomic_load(b->data_mapped);
        c.data_fd = b->data_fd;
        c.res_fd = b->res_fd;
        c.ev_fd = b->ev_fd;
        init = b->init;
        initarg = b->initarg;
    } else {
        int fds[MP__WFD_COUNT];
        for (int i = 0; i < MP__WFD_COUNT; i++) {
            fds[i] = mp_process_inherited_fd((size_t)i);
            if (fds[i] < 0)
                return MP_EBADF;
        }
        void *ctrl = NULL;
        int rc = mp__map_fd(fds[MP__WFD_CTRL], (size_t)b->ctrl_size, NULL, &ctrl);
        if (rc < 0)
            return rc;
        c.hdr = ctrl;
        void *data = NULL;
        rc = mp__vm_reserve((size_t)b->data_reserve, &data);
        if (rc < 0)
            return rc;
        c.data = data;
        c.data_fd = fds[MP__WFD_DATA];
        c.res_fd = fds[MP__WFD_RES];
        c.ev_fd = fds[MP__WFD_EV];
        if (b->has_init) {
            void *fn = NULL;
            rc = mp__fnref_resolve(&b->init_ref, &fn);
            if (rc < 0)
                return rc;
            init = (mp_init_fn)fn;
            initarg = b->initarg_size ? (void *)(b + 1) : NULL;
        }
    }
    mp__pool_hdr *h = c.hdr;
    if (h->magic != MP__POOL_MAGIC || c.w >= h->nworkers)
        return MP_EPROTO;
    c.slot = mp__pool_slot(h, c.w);
    c.order = mp__pool_order(h);
    c.fns = mp__pool_fns(h);
    c.jobs = mp__pool_jobs(h);
    c.done_head = atomic_load(&c.slot->done_head);
    if (atomic_load(&h->vm) == MP__VM_UNKNOWN) {
        uint64_t v = 0;
        int rc = mp__vm_read(h->vm_pid, h->vm_probe_addr, &v, sizeof v);
        uint32_t expect = MP__VM_UNKNOWN;
        (void)atomic_compare_exchange_strong(
            &h->vm, &expect, rc == 0 && v == h->vm_probe_val ? MP__VM_OK : MP__VM_DENIED);
    }

    if (init) {
        atomic_store(&c.slot->state, MP__W_INIT);
        int rc = init(initarg);
        if (rc != 0) {
            atomic_store(&c.slot->init_error, rc);
            atomic_store(&c.slot->state, MP__W_INIT_FAILED);
            return 1;
        }
    }
    atomic_store(&c.slot->state, MP__W_READY);
    int rc = serve(&c);
    free(c.scratch);
    return rc;
}
