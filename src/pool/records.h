/*
 * records.h - what a pool's parent and its workers share: the layout of
 * the control region and the protocol on it.  Private to src/pool/.
 *
 * DESIGN
 * Three kinds of shared memory, all anonymous memory files:
 *
 *   control  fixed size, mapped by everyone: the header, the dispatch order,
 *            the function table, the job table and one slot per worker.
 *   data     grows on demand; the parent alone allocates in it: map inputs,
 *            outputs and unit records, large task arguments, ctx bytes, and
 *            what mp_pool_shared_alloc() hands out.  Every process reserves
 *            address space for it once and maps new parts as the parent
 *            publishes a larger size (hdr.data_size), so offsets - and the
 *            parent's pointers - never move.
 *   results  one file per worker slot, grown by its worker: a ring of the
 *            result bytes of apply tasks too large for the job's inline
 *            space.  The parent reads them with pread(), so it never maps
 *            them and never cares about their size.
 *
 * Nothing in shared memory is a pointer: offsets and indices only - but
 * one kind of address: a map whose caller waits for it may leave its
 * arrays in the caller's memory (RIN, ROUT), and workers copy their own
 * chunks' share from and to there with process_vm_readv/writev.  That is
 * safe because the caller's arrays outlive every worker's use of them: the
 * call returns only once every unit is final, and a unit is final only
 * when its worker finished it or is dead (see below).
 *
 * Jobs and units.  A job is one apply task (one unit) or one map (n items
 * in nunits chunks).  Each unit has a state word; a worker takes a unit by
 * compare-and-swap from QUEUED to RUNNING|worker, which makes the claim
 * and the record of who holds it one atomic step.  Just before that CAS
 * the worker writes the unit it is about to claim into its own slot
 * (intent), so that when it dies the supervisor knows exactly which unit
 * it held: the one named by intent, if that unit's state still says
 * RUNNING|worker.  A worker that dies before the CAS leaves the unit
 * QUEUED, free for another; one that dies after finishing (state DONE)
 * has its result collected as usual.  Only the supervisor moves a unit
 * out of RUNNING other than its worker (to QUEUED for a retry, or to a
 * final state), and only after that worker is reaped.
 *
 * Dispatch.  Jobs are published in order at positions of a circular queue
 * (order[pos % ORDER], naming a job entry); job_head is the oldest position
 * a worker may still find work at, job_tail the next to publish.  Workers
 * advance job_head by CAS once a position has nothing left to claim.  A
 * job entry is reused only after all its units are final and no worker
 * looks at it: a worker announces the entry it examines in its slot
 * (hazard) and then checks that the entry still holds the job published at
 * that position (seq); the parent retires an entry by changing seq first
 * and reuses it only once no hazard names it.  A job given back work (a
 * retry) is published again at a new position.
 *
 * Map chunks are claimed with fetch-add on the job's next_unit followed by
 * the CAS on the unit; a worker that dies between the two leaves a QUEUED
 * unit below next_unit, which the supervisor finds and re-queues whenever a
 * worker dies.
 *
 * Completion.  Each worker has its own single-producer ring of completion
 * records in its slot (unit done, item failed); the supervisor drains
 * them.  A worker writes its outputs, then its unit's state DONE, then the
 * record: whatever moment it dies at, the supervisor either finds the
 * record or finds DONE behind the intent, and collects a unit only on the
 * DONE -> FINAL transition, which it alone makes, so nothing is counted
 * twice.  Before DONE, the slot's `item` says how far the unit got (a
 * release store, after what it covers): for a map unit, the item running,
 * or the unit's end once every item is done or reported; for an apply
 * task, not begun, running, or its result written (MP__APPLY_*).  So a
 * worker that dies after claiming a unit but before beginning it, or
 * after finishing it but before DONE, fails nothing: the unit runs again,
 * or is collected as if DONE.
 *
 * Sleeping.  An idle worker registers in hdr.idle, then sleeps on the
 * futex hdr.work_seq.  Whoever publishes work wakes sleepers only while
 * registrations remain, and takes one per worker it wakes, so a worker
 * woken but not yet running is not woken again for every job that follows.
 * Registrations can only outnumber the sleepers (a worker that found work
 * after registering withdraws its own only when it never slept; one whose
 * futex wait ended for another reason leaves it behind), so a wake-up is
 * at worst wasted, never lost.  The
 * supervisor sleeps in poll() on an eventfd and the workers' exit
 * descriptors; a worker writes the eventfd only when hdr.sup_sleeping says
 * the supervisor is (about to be) asleep.  Both follow the store - fence -
 * load pattern on each side, so no wake-up is lost.
 *
 * Validation.  Workers run user code with these regions mapped, so a task
 * can scribble over them.  A record is checked by its _valid() function
 * below before its offsets, indices or lengths are followed; one that
 * fails is a protocol error (MP_EPROTO), never used.
 */
#ifndef MPROC_POOL_RECORDS_H
#define MPROC_POOL_RECORDS_H

#include "base.h"
#include "fnref.h"
#include "forkserver.h"
#include "future.h"
#include "log.h"
#include "process.h"
#include "self.h"

#include <stdalign.h>

#define MP__POOL_MAGIC       0x6d70706cu /* "mppl" */
#define MP__POOL_JOBS        4096u       /* job entries */
#define MP__POOL_ORDER       65536u      /* dispatch positions, a power of two */
#define MP__POOL_FNS         256u        /* distinct task functions per pool */
#define MP__POOL_DONE        1024u       /* completion records per worker, power of two */
#define MP__POOL_INLINE      64u         /* argument and result bytes kept in the job */
#define MP__POOL_MAX_WORKERS 1024
#define MP__LINE             64

/* Unit states (the low byte; RUNNING carries the worker's slot above it). */
enum {
    MP__U_FREE = 0,     /* entry not in use */
    MP__U_QUEUED = 1,   /* may be claimed */
    MP__U_RUNNING = 2,  /* | (slot + 1) << 8 */
    MP__U_DONE = 3,     /* the worker finished it; the supervisor has not */
    MP__U_FINAL = 4,    /* collected, failed or cancelled: parent's business */
    MP__U_CANCELLED = 5 /* cancelled before any worker took it */
};
#define MP__U_KIND(s)       ((s)&0xffu)
#define MP__U_RUNNING_BY(w) ((uint32_t)MP__U_RUNNING | ((uint32_t)(w) + 1u) << 8)

enum { MP__JOB_APPLY = 1, MP__JOB_MAP = 2 };
/* Job flags.  RANGE: range_fn instead of fn.  RIN, ROUT: the map's
 * inputs (outputs) stay in the caller's memory, and each worker reads
 * (writes) its own units' share there itself, with process_vm_readv
 * (writev), instead of the parent copying them through the data region. */
enum { MP__JOB_RANGE = 1, MP__JOB_RIN = 2, MP__JOB_ROUT = 4 };
enum { MP__RES_INLINE = 0, MP__RES_RING = 1 };
#define MP__SEQ_RETIRED UINT64_MAX

/* Worker states, written by the worker. */
enum {
    MP__W_STARTING = 0, /* set by the parent before the start */
    MP__W_INIT = 1,     /* running the initializer */
    MP__W_READY = 2,    /* looking for work, or waiting for it */
    MP__W_BUSY = 3,     /* running a unit's own code (what time limits measure) */
    MP__W_INIT_FAILED = 4,
    MP__W_RECYCLE = 5, /* done its maxtasksperchild: exits cleanly */
    MP__W_EXITING = 6, /* leaving because the pool closed */
    MP__W_CUT_OFF = 7  /* leaving because a task closed the pool's descriptors */
};

/* The exit status of a worker cut off from the pool (MP__W_CUT_OFF). */
#define MP__WORKER_CUT_OFF_STATUS 3

/* How far an apply task got, in its worker's slot.item: a worker that
 * dies before it began the task fails nothing (the task runs again), nor
 * one that dies after it wrote the result (the result is collected). */
#define MP__APPLY_UNSTARTED UINT64_MAX
#define MP__APPLY_RUNNING   0u
#define MP__APPLY_WRITTEN   1u

/* hdr.stop */
enum { MP__STOP_NONE = 0, MP__STOP_DRAIN = 1, MP__STOP_NOW = 2 };

/* How many of a map's inputs are in place, in the data region.  The
 * parent publishes a large map before its inputs are all copied, and
 * raises this as it copies, so that workers start on the first chunks
 * while it copies the rest.  For RIN and ROUT maps, where the caller's
 * arrays are, in the parent's address space. */
typedef struct mp__map_ready {
    alignas(MP__LINE) _Atomic uint64_t items;
    uint64_t rin, rout;
    int32_t rpid;
} mp__map_ready;

/* A unit of a map, in the data region. */
typedef struct mp__unit {
    _Atomic uint32_t state;
    uint32_t resume; /* items of the chunk already accounted for */
} mp__unit;

/* A completion record. */
/* REST_ERROR: every item of the unit from `item` on failed with `code`. */
enum { MP__REC_DONE = 1, MP__REC_ITEM_ERROR = 2, MP__REC_REST_ERROR = 3 };
typedef struct mp__rec {
    uint32_t entry;
    uint32_t kind;
    uint64_t unit;
    uint64_t item; /* ITEM_ERROR: the item's index */
    int64_t code;  /* ITEM_ERROR: what the function returned */
    /* ITEM_ERROR: the message the item failed with (mp_item_fail), in the
     * worker's result ring, as a result of its own; msg_len 0: none. */
    uint64_t msg_off, msg_len;
} mp__rec;

/* The longest message a failing task or item leaves (longer ones are cut
 * there). */
#define MP__POOL_MSG_MAX ((size_t)64 << 10)

typedef struct mp__fnent {
    uint64_t ptr; /* the parent's address: what fork children use */
    mp__fnref ref;
} mp__fnent;

typedef struct mp__job {
    _Atomic uint64_t seq;   /* the position it was last published at */
    _Atomic uint32_t state; /* APPLY: the one unit's state */
    uint32_t kind;
    uint32_t fn; /* index in the function table */
    uint32_t flags;
    _Atomic uint64_t next_unit; /* MAP: claim cursor */
    union mp__job_u {
        struct {
            uint64_t arg_off; /* in the data region, when arg_len > INLINE */
            uint64_t arg_len;
            int64_t status; /* what the task returned */
            uint64_t res_off;
            uint64_t res_len;
            uint32_t res_where;
            uint32_t runner; /* the slot that ran it: whose result ring */
        } apply;
        struct {
            uint64_t n, nunits, chunk;
            uint64_t units_off, in_off, out_off, ctx_off;
            uint64_t in_size, out_size, ctx_len;
            uint64_t ready_off; /* the inputs' watermark (mp__map_ready) */
        } map;
    } u;
    unsigned char pad[128 - 32 - sizeof(union mp__job_u)];
    unsigned char arg[MP__POOL_INLINE];
    unsigned char res[MP__POOL_INLINE];
} mp__job;

typedef struct mp__wslot {
    /* Written by the worker. */
    alignas(MP__LINE) _Atomic uint32_t state;
    _Atomic uint32_t hazard;     /* job entry + 1 being examined; 0 none */
    _Atomic uint32_t intent_job; /* job entry + 1 about to be / being run */
    _Atomic uint32_t waiting;    /* the worker sleeps on `wake` */
    _Atomic uint64_t intent_unit;
    _Atomic uint64_t claims; /* units claimed so far (watchdog key) */
    _Atomic int32_t init_error;
    _Atomic uint32_t done_head; /* completion ring: next record to write */
    /* Written once per map item: a line of its own, so that the
     * supervisor reading the fields above does not slow the stores.  A
     * map unit: the item being run (UINT64_MAX: none begun; the unit's
     * end: every item done or reported).  An apply task: MP__APPLY_*. */
    alignas(MP__LINE) _Atomic uint64_t item;
    /* Written by the supervisor. */
    alignas(MP__LINE) _Atomic uint32_t done_tail;
    _Atomic uint32_t wake;         /* futex: bumped when it frees ring or result space */
    _Atomic uint64_t res_consumed; /* results read from the result ring */
    _Atomic uint64_t res_tail;     /* offset just past the last result read */
    alignas(MP__LINE) mp__rec ring[MP__POOL_DONE];
} mp__wslot;

typedef struct mp__pool_hdr {
    uint32_t magic;
    uint32_t nworkers;
    uint64_t ctrl_size;
    uint64_t data_reserve;
    uint64_t order_off, fns_off, jobs_off, slots_off;
    alignas(MP__LINE) _Atomic uint64_t job_head;
    alignas(MP__LINE) _Atomic uint64_t job_tail;
    alignas(MP__LINE) _Atomic uint32_t work_seq; /* futex for idle workers */
    _Atomic uint32_t idle;                       /* sleepers' registrations, taken by wakers */
    _Atomic uint32_t stop;
    alignas(MP__LINE) _Atomic uint32_t sup_sleeping;
    alignas(MP__LINE) _Atomic uint64_t data_size; /* of the data region, published */
    /* Whether workers may read and write the parent's memory (MP__VM_*):
     * the first worker to start finds out by reading vm_probe_val at
     * vm_probe_addr in vm_pid, and any worker refused later says so. */
    alignas(MP__LINE) _Atomic uint32_t vm;
    int32_t vm_pid;
    uint64_t vm_probe_addr, vm_probe_val;
} mp__pool_hdr;

enum { MP__VM_UNKNOWN = 0, MP__VM_OK = 1, MP__VM_DENIED = 2 };

_Static_assert(sizeof(mp__job) == 256, "a job entry is four cache lines");

/* Where a worker finds everything (fork: a pointer into the parent's
 * memory as it was at fork; forkserver and spawn: these bytes, copied,
 * followed by initarg_size bytes of initializer argument). */
typedef struct mp__wboot {
    uint32_t slot;
    uint32_t method;
    uint64_t ctrl_size;
    uint64_t data_reserve;
    uint64_t maxtasks;
    uint64_t initarg_size;
    int has_init;
    /* fork only */
    void *ctrl;
    unsigned char *data;
    /* The parent's count of data bytes it has mapped; read in the child,
     * it gives the count at the instant of the fork, which is what the
     * child inherited. */
    const _Atomic uint64_t *data_mapped;
    int data_fd, res_fd, ev_fd;
    mp_init_fn init;
    void *initarg;
    /* forkserver and spawn */
    mp__fnref init_ref;
} mp__wboot;

/* Descriptors handed to forkserver and spawn workers, in this order. */
enum { MP__WFD_CTRL, MP__WFD_DATA, MP__WFD_RES, MP__WFD_EV, MP__WFD_COUNT };

static inline uint32_t *mp__pool_order(mp__pool_hdr *h)
{
    return (uint32_t *)((char *)h + h->order_off);
}

static inline mp__fnent *mp__pool_fns(mp__pool_hdr *h)
{
    return (mp__fnent *)((char *)h + h->fns_off);
}

static inline mp__job *mp__pool_jobs(mp__pool_hdr *h)
{
    return (mp__job *)((char *)h + h->jobs_off);
}

static inline mp__wslot *mp__pool_slot(mp__pool_hdr *h, uint32_t w)
{
    return (mp__wslot *)((char *)h + h->slots_off) + w;
}

/* ---- validation (see Validation above) ------------------------------------ */

/* Whether [off, off + len) lies within size bytes, without overflow. */
static inline bool mp__pool_span_ok(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
}

/* A control region's header, as the parent laid it out in size bytes. */
static inline bool mp__pool_hdr_valid(const mp__pool_hdr *h, uint64_t size)
{
    if (h->magic != MP__POOL_MAGIC || h->ctrl_size != size || h->nworkers == 0 ||
        h->nworkers > MP__POOL_MAX_WORKERS)
        return false;
    return mp__pool_span_ok(h->order_off, MP__POOL_ORDER * sizeof(uint32_t), size) &&
           mp__pool_span_ok(h->fns_off, MP__POOL_FNS * sizeof(mp__fnent), size) &&
           mp__pool_span_ok(h->jobs_off, MP__POOL_JOBS * sizeof(mp__job), size) &&
           mp__pool_span_ok(h->slots_off, (uint64_t)h->nworkers * sizeof(mp__wslot), size);
}

/* A completion record: an entry that exists and a kind that is known. */
static inline bool mp__pool_rec_valid(const mp__rec *r)
{
    return r->entry < MP__POOL_JOBS && r->kind >= MP__REC_DONE && r->kind <= MP__REC_REST_ERROR &&
           r->msg_len <= MP__POOL_MSG_MAX;
}

/* An apply job's result as its worker described it: inline, within the
 * job's space, or in the result ring of a slot that exists. */
static inline bool mp__pool_apply_result_valid(const mp__job *j, uint32_t nworkers)
{
    if (j->u.apply.res_where == MP__RES_INLINE)
        return j->u.apply.res_len <= MP__POOL_INLINE;
    return j->u.apply.res_where == MP__RES_RING && j->u.apply.runner < nworkers;
}

/* A map job's geometry: its units cover its items exactly, and no part
 * in the data region (watermark, units, ctx, inputs unless RIN, outputs
 * unless a RANGE map writes them to the caller) wraps around the address
 * space.  Whether the parts lie in the region is checked against its
 * published size when they are mapped. */
static inline bool mp__pool_map_job_valid(const mp__job *j)
{
    uint64_t n = j->u.map.n, chunk = j->u.map.chunk, nunits = j->u.map.nunits, t;
    if (chunk == 0 || n == 0 || n > ((uint64_t)1 << 48) || nunits == 0 ||
        __builtin_mul_overflow(nunits - 1, chunk, &t) || t >= n ||
        (!__builtin_mul_overflow(nunits, chunk, &t) && t < n))
        return false;
    uint64_t in_len, out_len;
    if (__builtin_mul_overflow(n, j->u.map.in_size, &in_len) ||
        __builtin_mul_overflow(n, j->u.map.out_size, &out_len))
        return false;
    return mp__pool_span_ok(j->u.map.ready_off, sizeof(mp__map_ready), UINT64_MAX) &&
           mp__pool_span_ok(j->u.map.units_off, nunits * sizeof(mp__unit), UINT64_MAX) &&
           mp__pool_span_ok(j->u.map.ctx_off, j->u.map.ctx_len, UINT64_MAX) &&
           ((j->flags & MP__JOB_RIN) || mp__pool_span_ok(j->u.map.in_off, in_len, UINT64_MAX)) &&
           ((j->flags & MP__JOB_ROUT && j->flags & MP__JOB_RANGE) ||
            mp__pool_span_ok(j->u.map.out_off, out_len, UINT64_MAX));
}

/* Whether a wait keeps its re-check slice: a bound on a sleep that a
 * wake-up ends anyway, there only to limit what a lost wake-up costs (in
 * the pool, one a task caused by writing over shared memory).  The test
 * build of the library (MPROC_TESTING) drops the slices when
 * MPROC_TEST_NO_RECHECK=1, so that a lost wake-up hangs and a test's time
 * limit catches it (tests/mp_test.h); read when a wait begins. */
static inline bool mp__pool_recheck(void)
{
#ifdef MPROC_TESTING
    const char *v = getenv("MPROC_TEST_NO_RECHECK");
    return !(v && strcmp(v, "1") == 0);
#else
    return true;
#endif
}

/* The worker's entry point (worker.c): the target of every worker process. */
int mp__pool_worker_main(void *arg);

#endif /* MPROC_POOL_RECORDS_H */
