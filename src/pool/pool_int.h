/*
 * pool_int.h - the pool's parent side: the object, its records of jobs and
 * workers, and the interface between the files of src/pool/.  Private to
 * src/pool/; what parent and workers share is in records.h.
 *
 * DESIGN
 * The files, by role (docs/internals.md draws the map):
 *
 *   object.c      new, close, terminate, join, shutdown, free, getters
 *   apply.c       apply and submit; the operations futures call back
 *   map.c         map, map_async, starmap
 *   imap.c        imap and imap_unordered iterators
 *   dispatch.c    job entries, the dispatch queue, pending work
 *   region.c      the data region's allocator (region.h)
 *   supervisor.c  the supervisor thread: a loop of named phases
 *   workers.c     worker processes seen from the parent; the watchdog
 *   settle.c      results collected, failures recorded, work cancelled
 *   callback.c    the callback thread and progress reports
 *   worker*.c     the worker process (worker.h)
 *   ranks.c       a pool whose workers are ranks (ranks.h): every public
 *                 call above branches there first when p->ranks is set
 *   rank_serve.c  a worker rank's serve loop
 *
 * Who does what.  API calls (any thread) prepare jobs - argument bytes and
 * map inputs are copied into the data region outside the pool's lock -
 * and publish them to the dispatch queue, waking idle workers only when
 * some sleep.  The workers take units on their own; the parent is not
 * involved per unit.  The supervisor thread does everything else, and
 * user callbacks run in the callback thread.
 *
 * Locking.  p->lock guards the parent's bookkeeping (jobs, the pending
 * queue, the allocator, the function table, worker records, state).  The
 * supervisor takes it for each round and lets go of it around large copies
 * (map outputs, big results), which touch only memory no one else changes
 * meanwhile.  Order: p->lock, then a future's lock, then an iterator's or
 * the callback queue's lock.  Functions declared here that take a pool run
 * under p->lock unless their comment says otherwise.
 *
 * After fork, in a child: a pool belongs to the process that created it;
 * in any other process every call returns MP_ESTATE (or does nothing), and
 * mp_pool_free() only releases the child's copy of the memory.
 */
#ifndef MPROC_POOL_INT_H
#define MPROC_POOL_INT_H

#include "records.h"
#include "region.h"

/* The data region: address space reserved, mapped at the start, and the
 * limits on what freed memory it keeps (region.h). */
#define DATA_RESERVE ((size_t)256 << 30)
#define DATA_INITIAL ((size_t)1 << 20)
#define DATA_RELEASE ((size_t)256 << 20)
#define DATA_RETAIN  ((size_t)256 << 20)
/* Copies of at least this many bytes are made with p->lock released. */
#define COPY_UNLOCKED ((size_t)64 << 10)

enum { ST_OPEN, ST_CLOSED, ST_TERMINATING, ST_TERMINATED };

/* Tokens that tie a future to its job (mp__future_token). */
#define TOK_PENDING  1u
#define TOK_ENTRY(e) ((uint64_t)((e) + 1) << 1)

/* MODE_SYNC: the caller waits for the map (its arrays are valid until the
 * map is final, so workers may use them in place); MODE_ASYNC: it does
 * not; MODE_IMAP: the results stay in shared memory. */
enum { MODE_SYNC, MODE_ASYNC, MODE_IMAP };

/* A run of failed map items. */
typedef struct failure {
    uint64_t first, count;
    int err, task_error, exitcode;
} failure;

/* What the parent published in a job entry and what workers never write:
 * kept in the parent's memory, so that the supervisor takes none of it
 * from shared memory a task may have scribbled over, and can check the
 * entry against it (check.c). */
typedef struct jdesc {
    uint32_t kind, fn, flags;
    union mp__job_u u; /* map: all of it; apply: arg_off and arg_len */
    unsigned char arg[MP__POOL_INLINE];
} jdesc;

typedef struct pjob {
    int kind;     /* 0: entry free */
    jdesc desc;   /* set when the job is installed in its entry */
    uint64_t pos; /* the dispatch position it was last published at */
    mp_future *fut;
    struct mp_imap *it;
    size_t data_off, data_len; /* block in the data region; data_len 0: none */
    bool keep_data;            /* an iterator frees the block */
    bool republish;            /* owes a new dispatch position */
    uint32_t attempts;         /* apply: runs after a worker death */
    /* map */
    unsigned char *user_out;
    bool out_remote; /* ROUT: workers deliver the outputs of finished units */
    int *errors;
    uint64_t n, chunk, nunits, in_size, out_size;
    uint64_t units_final, items_final;
    failure *fails;
    size_t nfails, capfails;
    failure first; /* the failure of the lowest index */
    char *first_report;
    uint64_t *ufinal;    /* per unit, a bit: final (the parent's record) */
    uint32_t *uresume;   /* per unit: items accounted for before a re-run */
    uint32_t *uattempts; /* per unit: runs of its failing item */
    uint64_t *ufailed;   /* per unit: which item that was */
    mp_progress_fn progress;
    void *progress_ctx;
    bool bar;
    int64_t started_ns, progress_ns;
    size_t progress_done;
} pjob;

/* Work that waits in the parent for a job entry. */
typedef struct pending {
    struct pending *next;
    mp__job job;
    pjob pj;
} pending;

typedef struct wstate {
    mp_process *proc;
    int wait_fd;
    /* What the supervisor last wrote in the worker's slot (check.c). */
    uint32_t done_tail;
    uint64_t res_consumed, res_tail;
    uint64_t key_claims, key_item; /* watchdog: what it ran when last seen */
    int64_t key_since;
    bool timed_out;
    bool doomed;    /* terminate killed it */
    bool past_init; /* it reported work: its initializer is behind it */
    bool launched;  /* the slot has had its first worker */
    int64_t next_start;
    int64_t backoff;
    void *arg; /* the copied start argument (forkserver, spawn) */
} wstate;

/* The control region header's fields that never change, as laid out. */
typedef struct hdr_fixed {
    uint32_t magic, nworkers;
    uint64_t ctrl_size, data_reserve;
    uint64_t order_off, fns_off, jobs_off, slots_off;
    int32_t vm_pid;
    uint64_t vm_probe_addr, vm_probe_val;
} hdr_fixed;

typedef struct ev {
    struct ev *next;
    void (*fn)(void *);
    void *arg;
} ev;

typedef struct waitword {
    struct waitword *next;
    _Atomic uint32_t *word;
} waitword;

/* One per pool, its fields grouped by purpose rather than packed. */
struct mp_pool { // NOLINT(clang-analyzer-optin.performance.Padding)
    pid_t owner;
    _Atomic int refs;
    mp_pool_opts opts;
    char name[48];
    void *initarg_copy;
    uint32_t nworkers;

    /* shared memory */
    int ctrl_fd;
    size_t ctrl_size;
    mp__pool_hdr *hdr;
    /* Where the control region's parts are, as laid out: never taken from
     * its header again, which a task may scribble over. */
    uint32_t *order;
    mp__fnent *fns;
    mp__job *jobs;
    mp__wslot *slots;
    mp__region region; /* the data region */
    int *res_fds;
    int ev_fd;
    mp__wboot *boots;
    /* The parent's copies of what it writes there (check.c). */
    hdr_fixed hdr_fixed;
    uint32_t vm_initial;
    uint64_t pub_tail;  /* positions published: hdr.job_tail */
    uint32_t stop_sent; /* hdr.stop */
    mp__fnent fns_copy[MP__POOL_FNS];
    bool resetting;     /* shared memory found overwritten: starting afresh */
    char *reset_report; /* why, for the work it fails */
    int64_t next_audit; /* when check.c looks again while work is outstanding */

    /* bookkeeping, under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state;
    bool closing_done; /* close seen by the supervisor, stop published */
    bool workers_gone;
    int broken;
    char *broken_report;
    pjob pjobs[MP__POOL_JOBS];
    uint32_t free_entries[MP__POOL_JOBS];
    uint32_t nfree;
    uint32_t retired[MP__POOL_JOBS];
    uint32_t nretired;
    size_t nactive;     /* jobs published or pending, not done */
    size_t nrepublish;  /* entries owed a new dispatch position */
    bool sup_unbounded; /* the supervisor sleeps with no time limit */
    pending *pend_head, **pend_tail;
    const void *fnptr[MP__POOL_FNS];
    uint32_t nfns;
    uint64_t vm_probe; /* what a worker must read here to use our memory */
    wstate *ws;
    uint32_t nlive;
    uint32_t nlaunched; /* slots that have had their first worker */
    unsigned worker_counter;
    int start_failures;
    int init_kills; /* workers SIGKILLed in their initializer, in a row */
    bool terminate_req;
    int64_t term_deadline;
    bool term_killed;
    mp_pool_stats stats;
    waitword *joiners;
    bool has_progress_jobs;

    /* the supervisor */
    pthread_t sup;
    bool sup_started;
    /* The pool's registration with the program's shutdown (mp_shutdown
     * closes it, then terminates it). */
    struct mp__closer *closer;
    bool sup_quit;

    /* the callback thread */
    pthread_mutex_t ev_lock;
    pthread_cond_t ev_cond;
    ev *ev_head, **ev_tail;
    bool ev_started, ev_quit, ev_closed;
    pthread_t ev_tid;

    struct mp_pool *next_live; /* the list the exit handler walks */

    /* Set for a pool whose workers are ranks (ranks.c): every public call
     * branches there first. */
    struct mp__rpool *ranks;
};

struct mp_imap {
    mp_pool *pool;
    pthread_mutex_t lock;
    bool ordered;
    int cancel_err; /* the map was cancelled before it was published */
    uint64_t n, chunk, nunits, out_size;
    const unsigned char *outs;
    size_t data_off, data_len;
    bool job_active; /* the pool still fills it */
    uint8_t *unit_final;
    failure *fails;
    size_t nfails, capfails;
    uint64_t *uq;
    size_t uq_head, uq_tail;
    bool in_unit;
    uint64_t cur, cur_end;
    uint64_t next_index, yielded;
    _Atomic uint32_t *word;
};

static inline size_t mp__pool_align_up(size_t v, size_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* Worker slot w of the control region, where the parent placed it. */
static inline mp__wslot *mp__pool_wslot(mp_pool *p, uint32_t w)
{
    return p->slots + w;
}

/* The unit records of map job e, where the parent placed them. */
static inline mp__unit *mp__pool_units(mp_pool *p, uint32_t e)
{
    return (mp__unit *)mp__region_at(&p->region, p->pjobs[e].desc.u.map.units_off);
}

/* Whether unit u of map job e is final, by the parent's own record. */
static inline bool mp__pool_unit_is_final(const pjob *pj, uint64_t u)
{
    return pj->ufinal[u / 64] >> (u % 64) & 1u;
}

/* Items of unit u of map job e accounted for before its current run. */
static inline uint64_t mp__pool_unit_resume(const pjob *pj, uint64_t u)
{
    return pj->uresume ? pj->uresume[u] : 0;
}

/* Wakes the supervisor from its sleep.  Any thread, any lock. */
static inline void mp__pool_kick_supervisor(mp_pool *p)
{
    mp__eventfd_signal(p->ev_fd);
}

/* ---- object.c ------------------------------------------------------------ */

/* Whether p belongs to this process (not a copy inherited by fork).  No
 * lock. */
bool mp__pool_ours(const mp_pool *p);

/* A malloc'ed string, or NULL when memory runs out. */
char *mp__pool_printf(const char *fmt, ...) MP__PRINTF(1, 2);

/* Registers, once per process, the exit handler that terminates pools
 * that were never freed.  Called after a worker first starts. */
void mp__pool_register_exit(void);

/* A pool object with its options, locks and lists, and no resources yet.
 * NULL when memory runs out. */
mp_pool *mp__pool_alloc(const mp_pool_opts *o);

/* Adds p to, or removes it from, the pools the exit handler ends. */
void mp__pool_live_add(mp_pool *p);
void mp__pool_live_remove(mp_pool *p);

/* References (see object.c): the last release frees the pool.  No lock. */
void mp__pool_hold(void *owner);
void mp__pool_release(void *owner);

/* ---- dispatch.c: entries and the dispatch queue ---------------------------- */

/* The error a submission gets from the pool's state, or 0. */
int mp__pool_refusal(mp_pool *p);

/* The index of fn in the function table, added if new.  Returns 0, or
 * MP_ENOSPC when the table is full, or the error of naming fn for a
 * fresh image. */
int mp__pool_fn_id(mp_pool *p, const void *fn, uint32_t *id);

/* Publishes entry e at the next position and wakes up to `wake` idle
 * workers.  Returns false when no position is free: the entry is then
 * marked to be published again. */
bool mp__pool_publish(mp_pool *p, uint32_t e, uint32_t wake);

/* Publishes the entries owed a new position (as far as positions allow). */
void mp__pool_republish(mp_pool *p);

/* Moves pending work into free entries, in order. */
void mp__pool_publish_pending(mp_pool *p);

/* Submits a prepared job.  Returns 0 or MP_ENOMEM (the caller still owns
 * what the job refers to). */
int mp__pool_submit_job(mp_pool *p, const mp__job *job, const pjob *pj);

/* Retires entry e, recycled once no worker looks at it. */
void mp__pool_entry_release(mp_pool *p, uint32_t e);

/* Frees what a job's parent record owns (not the record itself). */
void mp__pool_pjob_free(pjob *pj);

/* Recycles retired entries no worker looks at any more. */
void mp__pool_retry_retired(mp_pool *p);

/* ---- callback.c: the callback thread and progress -------------------------- */

/* Creates a thread of the library's, named name ("mproc-..."), with every
 * signal blocked.  Returns 0 or -errno. */
int mp__pool_thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg);

/* Runs fn(arg) in the callback thread, started on first use.  Returns 0,
 * MP_ECLOSED once the thread has ended, or an error.  Takes p->ev_lock
 * (so: p->lock may be held, or not). */
int mp__pool_ev_post(mp_pool *p, void (*fn)(void *), void *arg);

/* Ends the callback thread once the callbacks queued have run; later
 * posts fail.  Not under p->lock, not from the callback thread. */
void mp__pool_callbacks_end(mp_pool *p);

/* Whether the caller is the pool's callback thread.  Not under p->lock. */
bool mp__pool_in_callback_thread(mp_pool *p);

/* Hands one progress report (fn and ctx, the bar or not) to the callback
 * thread. */
void mp__pool_progress_post(mp_pool *p, mp_progress_fn fn, void *ctx, bool bar, size_t done,
                            size_t total, double elapsed, bool final);

/* Reports the progress of map job e when due (final: always, at n). */
void mp__pool_progress_emit(mp_pool *p, uint32_t e, bool final);

/* Reports the progress of every running map that has a reporter; returns
 * when to look again (MP__NO_DEADLINE: no map reports). */
int64_t mp__pool_progress_tick(mp_pool *p, int64_t now);

/* ---- settle.c: finishing work ---------------------------------------------- */

/* Finishes apply job e with its outcome (result and report are taken). */
void mp__pool_finish_apply(mp_pool *p, uint32_t e, int status, void *res, size_t len,
                           int task_error, int exitcode, char *report);

/* Takes len bytes at off of worker w's result ring (at most want of them,
 * into *out, malloc'ed and NUL-terminated; out may be NULL), then releases
 * their space, in order, and wakes the worker if it waits for it.
 * p->lock is let go during a large read.  Returns 0 or an error. */
int mp__pool_ring_take(mp_pool *p, uint32_t w, uint64_t off, uint64_t len, size_t want, void **out);

/* Reads the result worker w left for DONE apply job e and finishes it
 * (MP_EPROTO when w's description of it is not valid). */
void mp__pool_collect_apply(mp_pool *p, uint32_t e, uint32_t w);

/* Inserts f into a sorted array of failures (dropped when memory runs
 * out: the items still count as failed). */
void mp__pool_fails_insert(failure **arr, size_t *n, size_t *cap, const failure *f);

/* Records that count items of map job e from first failed. */
void mp__pool_map_fail_items(mp_pool *p, uint32_t e, uint64_t first, uint64_t count, int err,
                             int task_error, int exitcode, const char *report);

/* Unit u of map job e is final; copy: move its outputs to the caller. */
void mp__pool_map_unit_final(mp_pool *p, uint32_t e, uint64_t u, bool copy);

/* Collects unit u of map job e if DONE (the DONE -> FINAL step). */
void mp__pool_collect_unit(mp_pool *p, uint32_t e, uint64_t u);

/* Drains slot w's completion ring.  Returns whether anything was there. */
bool mp__pool_drain_slot(mp_pool *p, uint32_t w);

/* Apply job e's worker died (err: MP_EWORKER, MP_ETIMELIMIT,
 * MP_ECANCELED): retry or fail it. */
void mp__pool_fail_apply(mp_pool *p, uint32_t e, int err, int exitcode, const char *report);

/* Worker w died holding apply job e, which had got as far as `item`
 * (MP__APPLY_*): run it again, collect it, or fail it (err, as above). */
void mp__pool_apply_died(mp_pool *p, uint32_t e, uint32_t w, uint64_t item, int err, int exitcode,
                         const char *report);

/* The worker running unit u of map job e died with `item` (UINT64_MAX:
 * none; the unit's end: all done) in progress: fail, retry or re-queue
 * what it held, or collect it. */
void mp__pool_fail_map_unit(mp_pool *p, uint32_t e, uint64_t u, uint64_t item, int err,
                            int exitcode, const char *report);

/* Re-queues map units that were counted as claimed but never taken. */
void mp__pool_requeue_orphans(mp_pool *p);

/* Cancels apply job e if no worker took it (status; report copied).
 * Returns whether it did. */
bool mp__pool_apply_cancel_queued(mp_pool *p, uint32_t e, int status, const char *report);

/* Cancels the units of map job e no worker took, and stops further
 * claims.  Returns whether any unit had started. */
bool mp__pool_map_cancel_queued(mp_pool *p, uint32_t e, int status, const char *report);

/* Cancels what no worker took, with status (report is copied). */
void mp__pool_cancel_queued(mp_pool *p, int status, const char *report);

/* Fails the work waiting in the parent whose data is in the data region
 * (what a scribble may have reached) with status; report is copied. */
void mp__pool_fail_pending_data(mp_pool *p, int status, const char *report);

/* With no worker left (after a terminate, or to start afresh): fails
 * everything unfinished with status (MP_ECANCELED: the items not begun;
 * otherwise every item of an unfinished unit, whose outputs are not
 * trusted), by the parent's records alone.  report is copied. */
void mp__pool_fail_all(mp_pool *p, int status, const char *report);

/* ---- workers.c: worker processes ------------------------------------------- */

/* Breaks the pool with err (report is taken) and cancels queued work. */
void mp__pool_break(mp_pool *p, int err, char *report);

/* Reaps worker w, whose exit descriptor polled readable, and settles what
 * it held. */
void mp__pool_on_worker_exit(mp_pool *p, uint32_t w);

/* Starts workers in empty slots when the pool wants them; lowers
 * *next_wake to the next retry. */
void mp__pool_start_missing(mp_pool *p, int64_t now, int64_t *next_wake);

/* Kills workers past the time limit.  Returns the time of the next check. */
int64_t mp__pool_watchdog(mp_pool *p, int64_t now);

/* ---- check.c: the audit of shared memory ------------------------------------ */

/* Compares the shared memory with the parent's records.  Returns true
 * when they agree; otherwise false, with what differs in why. */
bool mp__pool_audit(mp_pool *p, char *why, size_t cap);

/* The shared memory was found overwritten (why): kills every worker, to
 * start afresh once they are all reaped.  Nothing while terminating or
 * starting afresh already. */
void mp__pool_corrupt(mp_pool *p, const char *why);

/* With every worker reaped after mp__pool_corrupt(): fails the work in
 * progress and what waits with data in shared memory (MP_EPROTO), and
 * rewrites the control region from the parent's records. */
void mp__pool_reset_finish(mp_pool *p);

/* ---- supervisor.c ---------------------------------------------------------- */

/* The supervisor thread's body; arg is the pool.  No lock on entry. */
void *mp__pool_supervisor(void *arg);

/* ---- apply.c, map.c, imap.c: submission -------------------------------------- */

/* The operations of the pool's futures. */
extern const mp__future_ops mp__pool_future_ops;
/* The operations a pool's futures share whatever the workers are: an
 * interrupt terminates the pool; callbacks go to its callback thread.
 * Any thread, without p->lock. */
void mp__pool_op_interrupt(void *owner);
int mp__pool_op_dispatch(void *owner, void (*fn)(void *), void *arg);

/* Writes an apply task's len argument bytes to dst, from src. */
typedef void (*mp__pool_arg_fill)(void *dst, size_t len, const void *src);

/* mp_pool_apply_async() whose argument bytes fill writes in place (one
 * copy, straight into shared memory), from src: maps over byte strings
 * (bytes.c) gather their items so. */
mp_future *mp__pool_apply_fill(mp_pool *p, mp_task_fn fn, size_t len, mp__pool_arg_fill fill,
                               const void *src);

/* Items per unit and units of a map of n items. */
void mp__pool_map_geometry(mp_pool *p, uint64_t n, uint64_t chunksize, uint64_t *chunk,
                           uint64_t *nunits);

/* Checks a map spec for mode.  Returns 0 or MP_EINVAL.  No lock. */
int mp__pool_map_check(const char *call, const mp_map_spec *s, int mode);

/* A spec from the arguments of the simple calls. */
mp_map_spec mp__pool_map_spec(mp_map_fn fn, const void *in, size_t n, size_t in_size, void *out,
                              size_t out_size, size_t chunksize);

/* Prepares and submits a map (MODE_IMAP: for iterator it; otherwise for
 * future f).  Returns 0 or an error.  Takes p->lock itself. */
int mp__pool_map_submit(mp_pool *p, const mp_map_spec *s, int mode, mp_future *f,
                        struct mp_imap *it);

/* The supervisor tells an iterator what happened (under p->lock; they
 * take it->lock). */
void mp__pool_imap_unit_final(mp_pool *p, struct mp_imap *it, uint64_t u);
void mp__pool_imap_add_failure(struct mp_imap *it, const failure *f);
void mp__pool_imap_job_done(mp_pool *p, struct mp_imap *it);

#endif /* MPROC_POOL_INT_H */
