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
        rc = mp__pool_span_ok(j->u.apply.arg_off, len, UINT64_MAX)
                 ? mp__pool_ensure_data(c, j->u.apply.arg_off + len)
                 : MP_EPROTO;
        if (rc == MP_EBADF) /* not begun: it runs again elsewhere */
            mp__pool_worker_cut_off(c, "the data region's descriptor", rc);
        arg = c->data + j->u.apply.arg_off;
    } else if (len) {
        arg = j->arg;
    }
    mp_buf b = {.c = c, .data = j->res, .cap = MP__POOL_INLINE, .where = MP__RES_INLINE};
    /* BUSY while the task's own code runs: what the time limit measures
     * (read by the watchdog, for which a late view is harmless).  From
     * here on the task has begun: a death fails it. */
    atomic_store_explicit(&c->slot->state, MP__W_BUSY, memory_order_relaxed);
    atomic_store_explicit(&c->slot->item, MP__APPLY_RUNNING, memory_order_release);
    if (rc == 0)
        rc = fn ? fn(arg, len, &b) : MP_ENOENT;
    if (rc == 0 && b.err)
        rc = b.err;
    if (b.where == MP__RES_RING && b.len == 0)
        b.where = MP__RES_INLINE; /* nothing to read: keep the ring's count exact */
    j->u.apply.status = rc;
    j->u.apply.res_len = b.len;
    j->u.apply.res_where = (uint32_t)b.where;
    j->u.apply.res_off = b.off;
    j->u.apply.runner = c->w;
    if (b.where == MP__RES_RING)
        mp__pool_res_publish(c, b.off, b.len);
    /* Result first, then WRITTEN and DONE (release), then the record. */
    atomic_store_explicit(&c->slot->item, MP__APPLY_WRITTEN, memory_order_release);
    mp__pool_fault_point(MP__PP_RESULT_WRITTEN);
    atomic_store_explicit(&j->state, MP__U_DONE, memory_order_release);
    mp__pool_fault_point(MP__PP_DONE);
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

void (*mp__pool_fault)(mp__pool_point where);

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

/* A unit of a map being run: where its items are and what runs them. */
typedef struct unit_run {
    wctx *c;
    uint32_t e;
    uint64_t u;
    mp__job *j;
    uint64_t base, start, end; /* the chunk's first item, this run's, the end */
    const unsigned char *in;   /* inputs in the data region, or NULL */
    unsigned char *out;        /* outputs in the data region, or NULL */
    const void *ctx;
    const mp__map_ready *ready;
} unit_run;

/* Runs item function fn over items [i, end), reading from ip and writing to
 * op (each NULL, or the item i's place), and reports each item that fails;
 * with err set, fails every one of them with err instead. */
static void run_item_span(const unit_run *ur, mp_map_fn fn, const unsigned char *ip,
                          unsigned char *op, uint64_t i, uint64_t end, int err)
{
    /* With no input (or output) every item gets NULL, through a stride of
     * 0 from a NULL base. */
    const uint64_t istep = ip ? ur->j->u.map.in_size : 0;
    const uint64_t ostep = op ? ur->j->u.map.out_size : 0;
    _Atomic uint64_t *item = &ur->c->slot->item;
    while (i < end) {
        int r = err;
        uint64_t stop = err ? i : run_items(fn, ip, istep, op, ostep, ur->ctx, item, i, end, &r);
        if (stop == end)
            break;
        mp__pool_push_item_error(ur->c, ur->e, ur->u, stop, r);
        ip = ip ? ip + (stop + 1 - i) * istep : NULL;
        op = op ? op + (stop + 1 - i) * ostep : NULL;
        i = stop + 1;
    }
}

/* The slices a RIN or ROUT run moves: items per slice, and the scratch
 * buffer that holds a slice's inputs (RIN) and a range function's
 * outputs (ROUT). */
typedef struct slices {
    uint64_t step;
    unsigned char *buf;
    size_t in_len;
} slices;

static int slices_init(const unit_run *ur, slices *sl)
{
    const mp__job *j = ur->j;
    const uint64_t isz = j->u.map.in_size, osz = j->u.map.out_size;
    const bool range_out = (j->flags & MP__JOB_RANGE) && (j->flags & MP__JOB_ROUT);
    uint64_t big = isz > osz ? isz : osz;
    sl->step = big ? SLICE_BYTES / big : 0;
    if (sl->step == 0)
        sl->step = 1;
    if (sl->step > ur->end - ur->start)
        sl->step = ur->end - ur->start;
    sl->in_len = j->flags & MP__JOB_RIN ? (size_t)(sl->step * isz) : 0;
    size_t out_len = range_out ? (size_t)(sl->step * osz) : 0;
    sl->buf = scratch(ur->c, sl->in_len + out_len + 1);
    return sl->buf ? 0 : MP_ENOMEM;
}

/* Runs the k items of the slice from item i: reads their inputs from the
 * caller (RIN), runs the function, writes their outputs to the caller
 * (ROUT).  Returns 0, an error of the copies (< 0), or 1 when a range
 * function failed (reported here: the unit ends). */
static int run_slice(const unit_run *ur, void *fn, const slices *sl, uint64_t i, uint64_t k)
{
    const mp__job *j = ur->j;
    const uint64_t isz = j->u.map.in_size, osz = j->u.map.out_size;
    const bool range = j->flags & MP__JOB_RANGE, rout = j->flags & MP__JOB_ROUT;
    const mp__map_ready *r = ur->ready;
    /* The slice's first item is in progress from here: a worker killed
     * while reading it fails it (a range: the slice). */
    atomic_store_explicit(&ur->c->slot->item, i, memory_order_release);
    const unsigned char *ip = NULL;
    if (j->flags & MP__JOB_RIN) {
        int rc = vm_copy(r, r->rin + i * isz, sl->buf, (size_t)(k * isz), false);
        if (rc < 0)
            return rc;
        ip = sl->buf;
    } else if (isz) {
        ip = ur->c->data + j->u.map.in_off + i * isz;
    }
    unsigned char *op = NULL;
    if (osz)
        op = range && rout ? sl->buf + sl->in_len : ur->out + i * osz;
    if (range) {
        int r2 = ((mp_map_range_fn)fn)(ip, op, (size_t)k, ur->ctx);
        if (r2 != 0) {
            mp__pool_push_item_error(ur->c, ur->e, ur->u, i, r2);
            return 1;
        }
    } else {
        run_item_span(ur, (mp_map_fn)fn, ip, op, i, i + k, 0);
    }
    if (rout && osz)
        return vm_copy(r, r->rout + i * osz, op, (size_t)(k * osz), true);
    return 0;
}

/* Runs the unit's items of a RIN or ROUT map, a slice at a time.  An item
 * function writes into the data region (out, item by item, as for any
 * map), so that what a dying worker finished is still there for the
 * supervisor; a range function, which fails as a whole, into scratch.
 * When the caller's memory cannot be reached, the rest of the unit fails
 * with the reason, as if the function had returned it. */
static void run_remote(const unit_run *ur)
{
    const mp__job *j = ur->j;
    const uint64_t osz = j->u.map.out_size;
    const mp__map_ready *r = ur->ready;
    slices sl;
    int rc = slices_init(ur, &sl);
    void *fn = mp__pool_resolve_fn(ur->c, j->fn);
    if (rc == 0 && !fn)
        rc = MP_ENOENT;
    /* A run resumed after a death: the items before start finished in
     * out, in the data region, and may not have reached the caller. */
    uint64_t i = ur->start;
    if (rc == 0 && (j->flags & MP__JOB_ROUT) && !(j->flags & MP__JOB_RANGE) && i > ur->base) {
        rc = vm_copy(r, r->rout + ur->base * osz, ur->out + ur->base * osz,
                     (size_t)((i - ur->base) * osz), true);
        if (rc < 0)
            i = ur->base; /* those outputs are lost too */
    }
    atomic_store_explicit(&ur->c->slot->state, MP__W_BUSY, memory_order_relaxed);
    while (rc == 0 && i < ur->end) {
        uint64_t k = ur->end - i < sl.step ? ur->end - i : sl.step;
        rc = run_slice(ur, fn, &sl, i, k);
        if (rc > 0)
            return;
        if (rc == 0)
            i += k;
    }
    if (rc < 0 && i < ur->end) {
        vm_refused(ur->c, rc);
        mp__pool_push_rec(ur->c, MP__REC_REST_ERROR, ur->e, ur->u, i, rc);
    }
}

/* Runs the unit with a range function, in one call; err set: fails it
 * with err instead. */
static void run_range_unit(const unit_run *ur, int err)
{
    const mp__job *j = ur->j;
    const uint64_t isz = j->u.map.in_size, osz = j->u.map.out_size;
    mp_map_range_fn fn = (mp_map_range_fn)mp__pool_resolve_fn(ur->c, j->fn);
    atomic_store_explicit(&ur->c->slot->item, ur->start, memory_order_release);
    if (ur->start >= ur->end)
        return;
    int rc = err;
    if (rc == 0)
        rc = fn ? fn(ur->in ? ur->in + ur->start * isz : NULL,
                     ur->out ? ur->out + ur->start * osz : NULL, (size_t)(ur->end - ur->start),
                     ur->ctx)
                : MP_ENOENT;
    if (rc != 0)
        mp__pool_push_item_error(ur->c, ur->e, ur->u, ur->start, rc);
}

/* The end of the data region's part the job's pieces reach. */
static uint64_t map_extent(const mp__job *j, bool shm_out)
{
    const uint64_t n = j->u.map.n, isz = j->u.map.in_size, osz = j->u.map.out_size;
    uint64_t need = j->u.map.units_off + j->u.map.nunits * sizeof(mp__unit);
    if (j->u.map.ready_off + sizeof(mp__map_ready) > need)
        need = j->u.map.ready_off + sizeof(mp__map_ready);
    if (isz && !(j->flags & MP__JOB_RIN) && j->u.map.in_off + n * isz > need)
        need = j->u.map.in_off + n * isz;
    if (shm_out && j->u.map.out_off + n * osz > need)
        need = j->u.map.out_off + n * osz;
    if (j->u.map.ctx_len && j->u.map.ctx_off + j->u.map.ctx_len > need)
        need = j->u.map.ctx_off + j->u.map.ctx_len;
    return need;
}

/* Maps the job's parts and points the run at them.  Returns 0, or the
 * error of mapping them. */
static int unit_open(wctx *c, uint32_t e, uint64_t u, unit_run *ur)
{
    mp__job *j = &c->jobs[e];
    const uint64_t n = j->u.map.n, chunk = j->u.map.chunk;
    const bool shm_out =
        j->u.map.out_size && !((j->flags & MP__JOB_ROUT) && (j->flags & MP__JOB_RANGE));
    ur->c = c;
    ur->e = e;
    ur->u = u;
    ur->j = j;
    ur->base = u * chunk;
    ur->start = ur->base + ((mp__unit *)(c->data + j->u.map.units_off))[u].resume;
    ur->end = (u + 1) * chunk < n ? (u + 1) * chunk : n;
    int rc = mp__pool_ensure_data(c, map_extent(j, shm_out));
    ur->in = j->u.map.in_size && !(j->flags & MP__JOB_RIN) ? c->data + j->u.map.in_off : NULL;
    ur->out = shm_out ? c->data + j->u.map.out_off : NULL;
    ur->ctx = j->u.map.ctx_len ? c->data + j->u.map.ctx_off : NULL;
    ur->ready = (const mp__map_ready *)(c->data + j->u.map.ready_off);
    return rc;
}

/* Runs unit u of map job e.  Returns false when the pool stopped before
 * the unit's inputs were all there: the unit is left unfinished, for the
 * supervisor to cancel. */
bool mp__pool_run_map(wctx *c, uint32_t e, uint64_t u)
{
    unit_run ur;
    int rc = unit_open(c, e, u, &ur);
    if (rc == MP_EBADF) /* no item begun: the unit runs again elsewhere */
        mp__pool_worker_cut_off(c, "the data region's descriptor", rc);
    mp__job *j = ur.j;
    if (rc == 0 && ur.in && !wait_inputs(c, (mp__map_ready *)ur.ready, ur.end))
        return false;
    if (rc == 0 && (j->flags & (MP__JOB_RIN | MP__JOB_ROUT))) {
        run_remote(&ur);
    } else {
        /* BUSY from the first item on: waiting for the inputs is not the
         * items' time. */
        atomic_store_explicit(&c->slot->state, MP__W_BUSY, memory_order_relaxed);
        if (j->flags & MP__JOB_RANGE) {
            run_range_unit(&ur, rc);
        } else {
            mp_map_fn fn = (mp_map_fn)mp__pool_resolve_fn(c, j->fn);
            if (rc == 0 && !fn)
                rc = MP_ENOENT;
            const uint64_t isz = j->u.map.in_size, osz = j->u.map.out_size;
            run_item_span(&ur, fn, ur.in ? ur.in + ur.start * isz : NULL,
                          ur.out ? ur.out + ur.start * osz : NULL, ur.start, ur.end, rc);
        }
    }
    /* Every item is done or reported: a death from here on fails nothing
     * (release: after the outputs and the records). */
    atomic_store_explicit(&c->slot->item, ur.end, memory_order_release);
    mp__pool_fault_point(MP__PP_LAST_ITEM);
    /* Release: the outputs before DONE. */
    mp__unit *unit = (mp__unit *)(c->data + j->u.map.units_off) + u;
    atomic_store_explicit(&unit->state, MP__U_DONE, memory_order_release);
    mp__pool_fault_point(MP__PP_DONE);
    mp__pool_push_rec(c, MP__REC_DONE, e, u, 0, 0);
    return true;
}
