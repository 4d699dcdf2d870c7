/*
 * worker_run.c - running a claimed unit in a worker: an apply task, or a
 * chunk of a map, in shared memory or (RIN, ROUT) with the caller's arrays
 * where they are.
 *
 * DESIGN
 * Order of stores, the same for every kind of unit: outputs, then the
 * unit's state DONE (release), then the completion record.  While an item
 * runs, the slot's `item` names it (release, so that the outputs of the
 * items before are visible to whoever reads it), and `state` is BUSY,
 * which is what the watchdog measures.  A failed item is reported at once
 * (ITEM_ERROR) and the chunk goes on.
 *
 * Threads.  The worker's one thread.  Locks: none; only the atomics of
 * records.h.
 */
#define _GNU_SOURCE
#include "hooks.h"
#include "worker.h"

#include <errno.h>
#include <sched.h>

/* A RIN/ROUT map moves its items between the parent's memory and the
 * worker's in slices of about this many bytes: small enough that a slice
 * read is still in the cache when the function runs over it, and written
 * back while it still is. */
#define SLICE_BYTES ((size_t)64 << 10)

void mp__pool_run_apply(wctx *c, uint32_t e)
{
    mp__job *j = &c->jobs[e];
    mp_task_fn fn = (mp_task_fn)mp__pool_resolve_fn(c, j->fn);
    size_t len = (size_t)j->u.apply.arg_len;
    const void *arg = NULL;
    int rc = 0;
    if (len > MP__POOL_INLINE) {
        rc = mp__pool_ensure_data(c, j->u.apply.arg_off + len);
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
    mp__pool_push_rec(c, MP__REC_DONE, e, 0, 0, 0);
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
    void *fn = mp__pool_resolve_fn(c, j->fn);
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
                mp__pool_push_rec(c, MP__REC_ITEM_ERROR, e, u, i, r2);
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
                mp__pool_push_rec(c, MP__REC_ITEM_ERROR, e, u, stop, r2);
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
        mp__pool_push_rec(c, MP__REC_REST_ERROR, e, u, i, rc);
    }
    return rc;
}

/* Runs unit u of map job e.  Returns false when the pool stopped before
 * the unit's inputs were all there: the unit is left unfinished, for the
 * supervisor to cancel. */
bool mp__pool_run_map(wctx *c, uint32_t e, uint64_t u)
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
    int rc = mp__pool_ensure_data(c, need);
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
        mp_map_range_fn fn = (mp_map_range_fn)mp__pool_resolve_fn(c, j->fn);
        atomic_store_explicit(&s->item, start, memory_order_release);
        if (rc == 0 && start < end)
            rc = fn ? fn(in ? in + start * isz : NULL, out ? out + start * osz : NULL,
                         (size_t)(end - start), ctx)
                    : MP_ENOENT;
        if (rc != 0 && start < end)
            mp__pool_push_rec(c, MP__REC_ITEM_ERROR, e, u, start, rc == 0 ? MP_EPROTO : rc);
    } else {
        atomic_store_explicit(&s->state, MP__W_BUSY, memory_order_relaxed);
        mp_map_fn fn = (mp_map_fn)mp__pool_resolve_fn(c, j->fn);
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
            mp__pool_push_rec(c, MP__REC_ITEM_ERROR, e, u, stop, r);
            ip += (stop + 1 - i) * istep;
            op += (stop + 1 - i) * ostep;
            i = stop + 1;
        }
    }
    /* Release: the outputs before DONE. */
    atomic_store_explicit(&unit->state, MP__U_DONE, memory_order_release);
    mp__pool_push_rec(c, MP__REC_DONE, e, u, 0, 0);
    return true;
}
