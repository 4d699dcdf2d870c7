/*
 * pool.c - the parent's side of a pool: submission, the supervisor that
 * keeps the workers alive and collects their work, maps and imap
 * iterators, the data-region allocator and the callback thread.
 *
 * DESIGN
 * Who does what.  API calls (any thread) prepare jobs - argument bytes and
 * map inputs are copied into the data region outside the pool's lock -
 * and publish them to the dispatch queue, waking idle workers only when
 * some sleep.  The workers take units on their own (worker.c); the parent
 * is not involved per unit.  The supervisor, a thread of the pool, does
 * everything else: it drains the workers' completion rings, turns them
 * into finished futures, map outputs and imap items, reaps dead workers,
 * fails or re-queues exactly what they held, kills workers that run past
 * the time limit, starts replacements, and carries out close and
 * terminate.  One thread owning the processes makes every decision about
 * a worker in one place and in order, and it is the thread workers are
 * tied to by PR_SET_PDEATHSIG.  Waiting for completions in the callers'
 * threads instead would leave crashes and timeouts unnoticed while nobody
 * waits, which is exactly when a pool must still notice them.
 *
 * User callbacks never run in the supervisor: it hands them to a callback
 * thread, started on first use, so a slow or blocking callback cannot delay
 * crash detection or a timeout.
 *
 * Locking.  p->lock guards the parent's bookkeeping (jobs, the pending
 * queue, the allocator, the function table, worker records, state).  The
 * supervisor takes it for each round and lets go of it around large copies
 * (map outputs, big results), which touch only memory no one else changes
 * meanwhile.  Order: p->lock, then a future's lock, then an iterator's or
 * the callback queue's lock.
 *
 * Failure semantics (see pool.h): a unit held by a dead worker is found
 * through the worker's intent (records.h).  An apply task fails with
 * MP_EWORKER, or MP_ETIMEDOUT when the supervisor killed it, or is
 * re-queued while it has retries left.  A map chunk is split at the item
 * that was running: the items before it are done, that item fails (or is
 * retried), the rest of the chunk is re-queued from the next item (the
 * unit's `resume`).  A worker that died between claiming a chunk and
 * starting its first item leaves nothing failed: the chunk is simply
 * re-queued.
 *
 * Memory.  The data region is allocated by the parent alone, first fit
 * over a sorted free list, grown by doubling (workers map the new part when
 * they meet an offset beyond what they mapped).  A map's block holds its
 * unit records, ctx bytes, the copied inputs and the outputs; it is freed
 * when the map is done (or when its iterator is).  Freed blocks of 256 MiB
 * or more are given back to the system at once; smaller ones stay, so that
 * repeated maps run on memory that is already faulted in - up to 256 MiB
 * in all, beyond which every free block is given back.
 *
 * After fork, in a child: a pool belongs to the process that created it;
 * in any other process every call returns MP_ESTATE (or does nothing), and
 * mp_pool_free() only releases the child's copy of the memory.
 */
#define _GNU_SOURCE
#include "records.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#define DATA_RESERVE  ((size_t)256 << 30)
#define DATA_INITIAL  ((size_t)1 << 20)
#define DATA_ALIGN    ((size_t)64)
#define DATA_RELEASE  ((size_t)256 << 20)
#define DATA_RETAIN   ((size_t)256 << 20)
#define COPY_UNLOCKED ((size_t)64 << 10)
#define MAX_CTX       ((size_t)16 << 20)
/* Maps with more input bytes than this are published after their first
 * slice, and copied in the rest of the way in slices of this size. */
#ifndef PIPELINE_MIN
#define PIPELINE_MIN ((size_t)256 << 10)
#endif
#define PIPELINE_SLICE ((size_t)128 << 10)
/* Workers use a waiting caller's arrays in place when their chunks move
 * at least this many bytes: below it, the two system calls a chunk costs
 * them exceed what copying it through shared memory does. */
#define DIRECT_MIN ((size_t)4 << 10)

enum { ST_OPEN, ST_CLOSED, ST_TERMINATING, ST_TERMINATED };

/* Tokens that tie a future to its job (mp__future_token). */
#define TOK_PENDING  1u
#define TOK_ENTRY(e) ((uint64_t)((e) + 1) << 1)

/* ---- the parent's records ------------------------------------------------ */

/* A run of failed map items. */
typedef struct failure {
    uint64_t first, count;
    int err, task_error, exitcode;
} failure;

typedef struct pjob {
    int kind; /* 0: entry free */
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
    uint64_t key_claims, key_item; /* watchdog: what it ran when last seen */
    int64_t key_since;
    bool timed_out;
    bool doomed; /* terminate killed it */
    int64_t next_start;
    int64_t backoff;
    void *arg; /* the copied start argument (forkserver, spawn) */
} wstate;

typedef struct blk {
    size_t off, len;
    unsigned refs; /* live blocks: a map's job and the thread copying into it */
} blk;

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
    uint32_t *order;
    mp__fnent *fns;
    mp__job *jobs;
    int data_fd;
    unsigned char *data;
    size_t data_size;
    _Atomic uint64_t data_mapped;
    int *res_fds;
    int ev_fd;
    mp__wboot *boots;

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
    blk *freel;
    size_t nfreel, capfreel;
    blk *used;
    size_t nused, capused;
    size_t top;
    size_t retained;   /* freed bytes kept in memory since the last purge */
    uint64_t vm_probe; /* what a worker must read here to use our memory */
    wstate *ws;
    uint32_t nlive;
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
    bool sup_quit;

    /* the callback thread */
    pthread_mutex_t ev_lock;
    pthread_cond_t ev_cond;
    ev *ev_head, **ev_tail;
    bool ev_started, ev_quit, ev_closed;
    pthread_t ev_tid;

    struct mp_pool *next_live; /* the list the exit handler walks */
};

struct mp_imap {
    mp_pool *pool;
    pthread_mutex_t lock;
    bool ordered;
    int submit_err;
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

static const mp__future_ops pool_future_ops;

/* ---- live pools, for the exit handler ------------------------------------ */

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static mp_pool *live_pools;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void live_add(mp_pool *p)
{
    pthread_mutex_lock(&live_lock);
    p->next_live = live_pools;
    live_pools = p;
    pthread_mutex_unlock(&live_lock);
}

static void live_remove(mp_pool *p)
{
    pthread_mutex_lock(&live_lock);
    for (mp_pool **pp = &live_pools; *pp; pp = &(*pp)->next_live) {
        if (*pp == p) {
            *pp = p->next_live;
            break;
        }
    }
    pthread_mutex_unlock(&live_lock);
}

/* At exit, pools that were never freed are terminated before the process
 * registry's own exit handler stops the remaining children: otherwise a
 * supervisor would replace each worker that handler ends, forever.  This
 * handler is registered by the supervisor after its first start of a
 * worker - after the registry's - so it runs first. */
static void pools_at_exit(void)
{
    for (;;) {
        pthread_mutex_lock(&live_lock);
        mp_pool *p = live_pools;
        while (p && p->owner != getpid())
            p = p->next_live;
        if (p)
            atomic_fetch_add(&p->refs, 1);
        pthread_mutex_unlock(&live_lock);
        if (!p)
            return;
        mp_pool_terminate(p);
        live_remove(p);
        if (atomic_fetch_sub(&p->refs, 1) == 1)
            return; /* freed meanwhile by another thread; nothing to do */
    }
}

static void register_exit_handler(void)
{
    atexit(pools_at_exit);
}

/* ---- helpers ------------------------------------------------------------- */

/* This process's pid, kept here because every call checks it and
 * getpid() is a system call; a forked child refreshes it. */
static pid_t self_pid;
static pthread_once_t self_pid_once = PTHREAD_ONCE_INIT;

static void self_pid_refresh(void)
{
    self_pid = getpid();
}

static void self_pid_init(void)
{
    self_pid = getpid();
    pthread_atfork(NULL, NULL, self_pid_refresh);
}

static bool ours(const mp_pool *p)
{
    pthread_once(&self_pid_once, self_pid_init);
    return p && p->owner == self_pid;
}

static size_t align_up(size_t v, size_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static mp__unit *units_of(mp_pool *p, uint32_t e)
{
    return (mp__unit *)(p->data + p->jobs[e].u.map.units_off);
}

static char *str_printf(const char *fmt, ...) MP__PRINTF(1, 2);

static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

static void wake_joiners(mp_pool *p)
{
    for (waitword *w = p->joiners; w; w = w->next)
        mp__waiter_wake(w->word);
}

/* ---- the data region (under lock) ---------------------------------------- */

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
static bool used_contains(mp_pool *p, const void *ptr, size_t len, size_t *off)
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
static int data_alloc(mp_pool *p, size_t len, size_t *off)
{
    if (len == 0 || len > DATA_RESERVE)
        return MP_ENOMEM;
    len = align_up(len, DATA_ALIGN);
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
static void data_ref(mp_pool *p, size_t off)
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

static void data_free(mp_pool *p, size_t off)
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

/* ---- functions ----------------------------------------------------------- */

static int fn_id(mp_pool *p, const void *fn, uint32_t *id)
{
    for (uint32_t i = p->nfns; i-- > 0;) {
        if (p->fnptr[i] == fn) {
            *id = i;
            return 0;
        }
    }
    if (p->nfns == MP__POOL_FNS)
        return MP_ENOSPC;
    mp__fnent *ent = &p->fns[p->nfns];
    ent->ptr = (uint64_t)(uintptr_t)fn;
    if (p->opts.start_method != MP_START_FORK) {
        int rc = mp__fnref_from_ptr(fn, &ent->ref);
        if (rc < 0)
            return rc;
    }
    p->fnptr[p->nfns] = fn;
    *id = p->nfns++;
    return 0;
}

/* ---- dispatch (under lock) ----------------------------------------------- */

static bool can_publish(mp_pool *p)
{
    mp__pool_hdr *h = p->hdr;
    return atomic_load(&h->job_tail) - atomic_load(&h->job_head) < MP__POOL_ORDER - 1;
}

/* Publishes entry e at the next position and wakes up to `wake` idle
 * workers. */
static bool publish(mp_pool *p, uint32_t e, uint32_t wake)
{
    mp__pool_hdr *h = p->hdr;
    if (!can_publish(p)) {
        if (!p->pjobs[e].republish)
            p->nrepublish++;
        p->pjobs[e].republish = true;
        return false;
    }
    uint64_t pos = atomic_load(&h->job_tail);
    p->order[pos & (MP__POOL_ORDER - 1)] = e;
    atomic_store(&p->jobs[e].seq, pos);
    if (p->pjobs[e].republish)
        p->nrepublish--;
    p->pjobs[e].republish = false;
    /* seq_cst: the entry, its position and the tail are visible before
     * idle is read; idle workers sample work_seq before they look. */
    atomic_store(&h->job_tail, pos + 1);
    atomic_fetch_add(&h->work_seq, 1);
    /* Wake sleepers only, and take their registrations as we do: a worker
     * woken but not yet running is not woken again (see Sleeping in
     * records.h). */
    uint32_t idle = atomic_load(&h->idle);
    while (idle > 0) {
        uint32_t k = idle < wake ? idle : wake;
        if (atomic_compare_exchange_weak(&h->idle, &idle, idle - k)) {
            (void)mp__futex_wake(&h->work_seq, (int)k);
            break;
        }
    }
    return true;
}

/* Takes a free entry and fills it from a prepared job.  Returns the entry
 * or -1 when none is free. */
static long entry_take(mp_pool *p)
{
    if (p->nfree == 0)
        return -1;
    return p->free_entries[--p->nfree];
}

static void entry_install(mp_pool *p, uint32_t e, const mp__job *job, const pjob *pj)
{
    mp__job *j = &p->jobs[e];
    /* The entry is retired (seq) and no worker holds a hazard on it: its
     * fields may be rewritten. */
    j->kind = job->kind;
    j->fn = job->fn;
    j->flags = job->flags;
    j->u = job->u;
    if (job->kind == MP__JOB_APPLY && job->u.apply.arg_len &&
        job->u.apply.arg_len <= MP__POOL_INLINE)
        memcpy(j->arg, job->arg, (size_t)job->u.apply.arg_len);
    atomic_store(&j->next_unit, 0);
    atomic_store(&j->state, job->kind == MP__JOB_APPLY ? MP__U_QUEUED : MP__U_FREE);
    p->pjobs[e] = *pj;
    if (pj->fut)
        mp__future_set_token(pj->fut, TOK_ENTRY(e));
}

static uint32_t wake_count(mp_pool *p, const mp__job *job)
{
    if (job->kind == MP__JOB_APPLY)
        return 1;
    return job->u.map.nunits < p->nworkers ? (uint32_t)job->u.map.nunits : p->nworkers;
}

/* Moves pending work into free entries, in order. */
static void publish_pending(mp_pool *p)
{
    while (p->pend_head && p->nfree > 0 && can_publish(p)) {
        pending *n = p->pend_head;
        p->pend_head = n->next;
        if (!p->pend_head)
            p->pend_tail = &p->pend_head;
        uint32_t e = (uint32_t)entry_take(p);
        entry_install(p, e, &n->job, &n->pj);
        publish(p, e, wake_count(p, &n->job));
        free(n);
    }
}

/* Submits a prepared job: straight into an entry when one is free and
 * nothing waits before it, else to the pending queue.  Returns 0 or
 * MP_ENOMEM (the caller still owns what the job refers to). */
static int submit_job(mp_pool *p, const mp__job *job, const pjob *pj)
{
    p->nactive++;
    if (p->sup_unbounded && p->opts.task_timeout > 0) {
        /* Its watchdog must start ticking. */
        p->sup_unbounded = false;
        mp__eventfd_signal(p->ev_fd);
    }
    if (!p->pend_head && p->nfree > 0 && can_publish(p)) {
        uint32_t e = (uint32_t)entry_take(p);
        entry_install(p, e, job, pj);
        publish(p, e, wake_count(p, job));
        return 0;
    }
    pending *n = malloc(sizeof *n);
    if (!n) {
        p->nactive--;
        return MP_ENOMEM;
    }
    n->next = NULL;
    n->job = *job;
    n->pj = *pj;
    *p->pend_tail = n;
    p->pend_tail = &n->next;
    if (pj->fut)
        mp__future_set_token(pj->fut, (uint64_t)(uintptr_t)n | TOK_PENDING);
    return 0;
}

/* Recycles entry e once no worker looks at it. */
static void entry_release(mp_pool *p, uint32_t e)
{
    /* seq first, then the hazards (both seq_cst): a worker announces its
     * hazard, then reads seq; one of us sees the other. */
    atomic_store(&p->jobs[e].seq, MP__SEQ_RETIRED);
    atomic_store(&p->jobs[e].state, MP__U_FREE);
    pjob *pj = &p->pjobs[e];
    if (pj->republish)
        p->nrepublish--;
    free(pj->fails);
    free(pj->first_report);
    free(pj->uattempts);
    free(pj->ufailed);
    memset(pj, 0, sizeof *pj);
    for (uint32_t w = 0; w < p->nworkers; w++) {
        if (atomic_load(&mp__pool_slot(p->hdr, w)->hazard) == e + 1) {
            p->retired[p->nretired++] = e;
            return;
        }
    }
    p->free_entries[p->nfree++] = e;
}

static void retry_retired(mp_pool *p)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < p->nretired; i++) {
        uint32_t e = p->retired[i];
        bool held = false;
        for (uint32_t w = 0; w < p->nworkers && !held; w++)
            held = atomic_load(&mp__pool_slot(p->hdr, w)->hazard) == e + 1;
        if (held)
            p->retired[k++] = e;
        else
            p->free_entries[p->nfree++] = e;
    }
    p->nretired = k;
}

/* ---- the callback thread ------------------------------------------------- */

static void *ev_main(void *arg)
{
    mp_pool *p = arg;
    (void)prctl(PR_SET_NAME, "mproc-pool-cb", 0, 0, 0);
    pthread_mutex_lock(&p->ev_lock);
    for (;;) {
        while (!p->ev_head && !p->ev_quit)
            pthread_cond_wait(&p->ev_cond, &p->ev_lock);
        ev *e = p->ev_head;
        if (!e)
            break; /* quit, and nothing is left */
        p->ev_head = e->next;
        if (!p->ev_head)
            p->ev_tail = &p->ev_head;
        pthread_mutex_unlock(&p->ev_lock);
        e->fn(e->arg);
        free(e);
        pthread_mutex_lock(&p->ev_lock);
    }
    pthread_mutex_unlock(&p->ev_lock);
    return NULL;
}

/* Creates a thread with every signal blocked, so that process-directed
 * signals (SIGINT above all) go to the program's own threads. */
static int thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t old;
    mp__signals_block_all(&old);
    int rc = pthread_create(t, NULL, fn, arg);
    mp__signals_restore(&old);
    return -rc;
}

static int ev_post(mp_pool *p, void (*fn)(void *), void *arg)
{
    ev *e = malloc(sizeof *e);
    if (!e)
        return MP_ENOMEM;
    e->next = NULL;
    e->fn = fn;
    e->arg = arg;
    pthread_mutex_lock(&p->ev_lock);
    if (p->ev_closed) {
        pthread_mutex_unlock(&p->ev_lock);
        free(e);
        return MP_ECLOSED;
    }
    if (!p->ev_started) {
        int rc = thread_start(&p->ev_tid, ev_main, p);
        if (rc < 0) {
            pthread_mutex_unlock(&p->ev_lock);
            free(e);
            return rc;
        }
        p->ev_started = true;
    }
    *p->ev_tail = e;
    p->ev_tail = &e->next;
    pthread_cond_signal(&p->ev_cond);
    pthread_mutex_unlock(&p->ev_lock);
    return 0;
}

static bool in_callback_thread(mp_pool *p)
{
    pthread_mutex_lock(&p->ev_lock);
    bool r = p->ev_started && pthread_equal(pthread_self(), p->ev_tid);
    pthread_mutex_unlock(&p->ev_lock);
    return r;
}

/* ---- progress ------------------------------------------------------------ */

typedef struct progress_ev {
    mp_progress_fn fn;
    void *ctx;
    bool bar;
    bool final;
    size_t done, total;
    double elapsed;
} progress_ev;

static void fmt_duration(char *buf, size_t cap, double s)
{
    if (!(s >= 0) || s > 359999)
        snprintf(buf, cap, "--:--");
    else if (s >= 3600)
        snprintf(buf, cap, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(buf, cap, "%02d:%02d", (int)s / 60, (int)s % 60);
}

static void draw_bar(const progress_ev *e)
{
    static _Atomic int64_t last_line_ns;
    bool tty = isatty(STDERR_FILENO);
    int64_t now = mp__now_ns();
    /* A log or a pipe gets a line a second, not a redraw per tenth. */
    if (!tty && !e->final && now - atomic_load(&last_line_ns) < 1000000000)
        return;
    atomic_store(&last_line_ns, now);
    double frac = e->total ? (double)e->done / (double)e->total : 1.0;
    char bar[41];
    int fill = (int)(frac * 40.0);
    for (int i = 0; i < 40; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[40] = '\0';
    double rate = e->elapsed > 0 ? (double)e->done / e->elapsed : 0;
    char el[16], eta[16], rbuf[32];
    fmt_duration(el, sizeof el, e->elapsed);
    fmt_duration(eta, sizeof eta, rate > 0 ? (double)(e->total - e->done) / rate : -1);
    if (rate >= 1e6)
        snprintf(rbuf, sizeof rbuf, "%.2fM", rate / 1e6);
    else if (rate >= 1e3)
        snprintf(rbuf, sizeof rbuf, "%.1fk", rate / 1e3);
    else
        snprintf(rbuf, sizeof rbuf, "%.1f", rate);
    char line[256];
    int len =
        snprintf(line, sizeof line, "%s%3.0f%%|%s| %zu/%zu [%s<%s, %s it/s]%s", tty ? "\r" : "",
                 frac * 100.0, bar, e->done, e->total, el, eta, rbuf, tty && !e->final ? "" : "\n");
    if (len > 0)
        (void)mp__write_all(STDERR_FILENO, line,
                            (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
}

static void run_progress(void *arg)
{
    progress_ev *e = arg;
    if (e->fn)
        e->fn(e->done, e->total, e->ctx);
    if (e->bar)
        draw_bar(e);
    free(e);
}

/* Items of map job e finished so far, counting the items running units
 * have passed. */
static size_t items_done(mp_pool *p, uint32_t e)
{
    pjob *pj = &p->pjobs[e];
    size_t done = pj->items_final;
    for (uint32_t w = 0; w < p->nworkers; w++) {
        mp__wslot *s = mp__pool_slot(p->hdr, w);
        if (!p->ws[w].proc || atomic_load(&s->state) != MP__W_BUSY ||
            atomic_load(&s->intent_job) != e + 1)
            continue;
        uint64_t u = atomic_load(&s->intent_unit), item = atomic_load(&s->item);
        uint64_t base = u * pj->chunk;
        /* Only a unit still running counts here: one its worker finished
         * is in items_final already, though the worker may still name it. */
        if (u < pj->nunits && item != UINT64_MAX && item >= base && item < base + pj->chunk &&
            atomic_load(&units_of(p, e)[u].state) == MP__U_RUNNING_BY(w))
            done += (size_t)(item - base);
    }
    return done < pj->n ? done : (size_t)pj->n;
}

static void progress_emit(mp_pool *p, uint32_t e, bool final)
{
    pjob *pj = &p->pjobs[e];
    if (!pj->progress && !pj->bar)
        return;
    int64_t now = mp__now_ns();
    size_t done = final ? (size_t)pj->n : items_done(p, e);
    /* A dead worker's partial chunk drops out of the count until another
     * resumes it; reports never go backwards. */
    if (done < pj->progress_done)
        done = pj->progress_done;
    if (!final && (now - pj->progress_ns < (int64_t)(p->opts.progress_interval * 1e9) ||
                   done == pj->progress_done))
        return;
    pj->progress_ns = now;
    pj->progress_done = done;
    progress_ev *pe = malloc(sizeof *pe);
    if (!pe)
        return;
    *pe = (progress_ev){pj->progress,
                        pj->progress_ctx,
                        pj->bar,
                        final,
                        done,
                        (size_t)pj->n,
                        (double)(now - pj->started_ns) / 1e9};
    if (ev_post(p, run_progress, pe) < 0)
        free(pe);
}

/* ---- finishing work (supervisor, under lock) ----------------------------- */

static void imap_unit_final(mp_pool *p, struct mp_imap *it, uint64_t u);
static void imap_add_failure(struct mp_imap *it, const failure *f);
static void imap_job_done(mp_pool *p, struct mp_imap *it);

static void job_done_common(mp_pool *p, uint32_t e)
{
    pjob *pj = &p->pjobs[e];
    if (pj->data_len && !pj->keep_data)
        data_free(p, pj->data_off);
    p->nactive--;
    entry_release(p, e);
}

static void finish_apply(mp_pool *p, uint32_t e, int status, void *res, size_t len, int task_error,
                         int exitcode, char *report)
{
    pjob *pj = &p->pjobs[e];
    mp_future *f = pj->fut;
    atomic_store(&p->jobs[e].state, MP__U_FINAL);
    job_done_common(p, e);
    if (f)
        mp__future_finish(f, status, res, len, task_error, exitcode, report, -1);
    else {
        free(res);
        free(report);
    }
}

/* Reads the result of a DONE apply job run by slot w and finishes it. */
static void collect_apply(mp_pool *p, uint32_t e)
{
    mp__job *j = &p->jobs[e];
    int64_t status = j->u.apply.status;
    size_t len = (size_t)j->u.apply.res_len;
    void *res = NULL;
    int rc = 0;
    if (j->u.apply.res_where == MP__RES_RING) {
        uint32_t w = j->u.apply.runner;
        mp__wslot *s = mp__pool_slot(p->hdr, w);
        size_t off = (size_t)j->u.apply.res_off;
        if (len && status == 0) {
            res = malloc(len);
            if (!res)
                rc = MP_ENOMEM;
            size_t got = 0;
            bool unlock = len >= COPY_UNLOCKED;
            if (unlock)
                pthread_mutex_unlock(&p->lock);
            while (res && got < len) {
                ssize_t n = pread(p->res_fds[w], (char *)res + got, len - got, (off_t)(off + got));
                if (n > 0) {
                    got += (size_t)n;
                } else if (n < 0 && errno == EINTR) {
                    continue;
                } else {
                    rc = n < 0 ? -errno : MP_EPROTO;
                    break;
                }
            }
            if (unlock)
                pthread_mutex_lock(&p->lock);
        }
        /* Release the space, in order, and wake the worker if it waits
         * for it. */
        atomic_store(&s->res_tail, off + len);
        atomic_fetch_add(&s->res_consumed, 1);
        if (atomic_load(&s->waiting)) {
            atomic_fetch_add(&s->wake, 1);
            (void)mp__futex_wake(&s->wake, 1);
        }
    } else if (len && status == 0) {
        res = malloc(len);
        if (res)
            memcpy(res, j->res, len);
        else
            rc = MP_ENOMEM;
    }
    p->stats.tasks_done++;
    if (rc < 0) {
        free(res);
        finish_apply(p, e, rc, NULL, 0, 0, 0, NULL);
    } else if (status != 0) {
        free(res);
        finish_apply(p, e, MP_ETASK, NULL, 0, (int)status, 0, NULL);
    } else {
        finish_apply(p, e, 0, res, len, 0, 0, NULL);
    }
}

static int failure_cmp(const failure *a, uint64_t first)
{
    return a->first < first ? -1 : a->first > first;
}

static void fails_insert(failure **arr, size_t *n, size_t *cap, const failure *f)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        failure *na = realloc(*arr, c * sizeof *na);
        if (!na)
            return; /* the item still counts as failed in errors[] and the status */
        *arr = na;
        *cap = c;
    }
    size_t i = *n;
    while (i > 0 && failure_cmp(&(*arr)[i - 1], f->first) > 0) {
        (*arr)[i] = (*arr)[i - 1];
        i--;
    }
    (*arr)[i] = *f;
    (*n)++;
}

/* Records that count items from first failed. */
static void map_fail_items(mp_pool *p, uint32_t e, uint64_t first, uint64_t count, int err,
                           int task_error, int exitcode, const char *report)
{
    pjob *pj = &p->pjobs[e];
    if (count == 0)
        return;
    failure f = {first, count, err, task_error, exitcode};
    fails_insert(&pj->fails, &pj->nfails, &pj->capfails, &f);
    if (pj->errors)
        for (uint64_t i = 0; i < count; i++)
            pj->errors[first + i] = err;
    if (pj->first.count == 0 || first < pj->first.first) {
        pj->first = f;
        free(pj->first_report);
        pj->first_report = report ? strdup(report) : NULL;
    }
    if (pj->it)
        imap_add_failure(pj->it, &f);
}

static void map_job_done(mp_pool *p, uint32_t e)
{
    pjob *pj = &p->pjobs[e];
    mp_future *f = pj->fut;
    struct mp_imap *it = pj->it;
    int status = pj->first.count ? pj->first.err : 0;
    long long idx = pj->first.count ? (long long)pj->first.first : -1;
    int task_error = pj->first.task_error, exitcode = pj->first.exitcode;
    char *report = pj->first_report;
    pj->first_report = NULL;
    progress_emit(p, e, true);
    job_done_common(p, e);
    if (it)
        imap_job_done(p, it);
    if (f)
        mp__future_finish(f, status, NULL, 0, task_error, exitcode, report, idx);
    else
        free(report);
}

/* Unit u of map job e is final (done, failed or cancelled). */
static void map_unit_final(mp_pool *p, uint32_t e, uint64_t u, bool copy)
{
    pjob *pj = &p->pjobs[e];
    mp__unit *unit = &units_of(p, e)[u];
    /* Relaxed: FINAL only tells workers' CASes to fail, which they do for
     * DONE alike. */
    atomic_store_explicit(&unit->state, MP__U_FINAL, memory_order_relaxed);
    uint64_t base = u * pj->chunk;
    uint64_t end = base + pj->chunk < pj->n ? base + pj->chunk : pj->n;
    if (copy && pj->user_out && pj->out_size) {
        size_t len = (size_t)((end - base) * pj->out_size);
        unsigned char *dst = pj->user_out + base * pj->out_size;
        const unsigned char *src = p->data + p->jobs[e].u.map.out_off + base * pj->out_size;
        if (len >= COPY_UNLOCKED) {
            /* Nobody else touches these bytes: the unit is final, and the
             * job (hence its block) ends only by this thread. */
            pthread_mutex_unlock(&p->lock);
            memcpy(dst, src, len);
            pthread_mutex_lock(&p->lock);
        } else {
            memcpy(dst, src, len);
        }
    }
    pj->units_final++;
    pj->items_final += end - base;
    if (pj->it)
        imap_unit_final(p, pj->it, u);
    if (pj->units_final == pj->nunits)
        map_job_done(p, e);
    else
        progress_emit(p, e, false);
}

/* A DONE unit: collect it (the DONE -> FINAL step happens once). */
static void collect_unit(mp_pool *p, uint32_t e, uint64_t u)
{
    if (p->pjobs[e].kind != MP__JOB_MAP || u >= p->pjobs[e].nunits)
        return;
    mp__unit *unit = &units_of(p, e)[u];
    if (atomic_load(&unit->state) != MP__U_DONE)
        return;
    p->stats.tasks_done++;
    /* A worker that wrote its outputs to the caller finished the unit
     * only after they were all there. */
    map_unit_final(p, e, u, !p->pjobs[e].out_remote);
}

static void handle_rec(mp_pool *p, const mp__rec *r)
{
    uint32_t e = r->entry;
    if (e >= MP__POOL_JOBS)
        return;
    pjob *pj = &p->pjobs[e];
    if (r->kind == MP__REC_DONE) {
        if (pj->kind == MP__JOB_APPLY) {
            if (atomic_load(&p->jobs[e].state) == MP__U_DONE)
                collect_apply(p, e);
        } else if (pj->kind == MP__JOB_MAP) {
            collect_unit(p, e, r->unit);
        }
    } else if ((r->kind == MP__REC_ITEM_ERROR || r->kind == MP__REC_REST_ERROR) &&
               pj->kind == MP__JOB_MAP && r->unit < pj->nunits) {
        uint64_t base = r->unit * pj->chunk;
        uint64_t end = base + pj->chunk < pj->n ? base + pj->chunk : pj->n;
        if (r->item < base || r->item >= end)
            return;
        /* A range function fails its whole remaining range at once. */
        bool rest = r->kind == MP__REC_REST_ERROR || (p->jobs[e].flags & MP__JOB_RANGE);
        uint64_t count = rest ? end - r->item : 1;
        /* REST_ERROR: the worker could not reach the caller's arrays; the
         * items fail with that reason itself. */
        if (r->kind == MP__REC_REST_ERROR)
            map_fail_items(p, e, r->item, count, (int)r->code, 0, 0, NULL);
        else
            map_fail_items(p, e, r->item, count, MP_ETASK, (int)r->code, 0, NULL);
    }
}

/* Drains slot w's completion ring.  Returns whether anything was there. */
static bool drain_slot(mp_pool *p, uint32_t w)
{
    mp__wslot *s = mp__pool_slot(p->hdr, w);
    uint32_t tail = atomic_load(&s->done_tail);
    uint32_t head = atomic_load(&s->done_head);
    if (tail == head)
        return false;
    while (tail != head) {
        mp__rec r = s->ring[tail & (MP__POOL_DONE - 1)];
        handle_rec(p, &r);
        tail++;
        if ((tail & 63) == 0 || tail == head) {
            atomic_store(&s->done_tail, tail);
            if (atomic_load(&s->waiting)) {
                atomic_fetch_add(&s->wake, 1);
                (void)mp__futex_wake(&s->wake, 1);
            }
        }
        if (tail == head)
            head = atomic_load(&s->done_head);
    }
    atomic_store(&s->done_tail, tail);
    return true;
}

/* ---- failures (supervisor, under lock) ----------------------------------- */

/* Gives a unit back to the queue: lowers the claim cursor to it and
 * publishes the job again. */
static void map_requeue(mp_pool *p, uint32_t e, uint64_t u)
{
    mp__job *j = &p->jobs[e];
    mp__unit *unit = &units_of(p, e)[u];
    atomic_store(&unit->state, MP__U_QUEUED);
    uint64_t cur = atomic_load(&j->next_unit);
    while (cur > u && !atomic_compare_exchange_weak(&j->next_unit, &cur, u)) {
    }
    publish(p, e, 1);
}

static bool retryable(mp_pool *p, int err)
{
    return (err == MP_EWORKER || err == MP_ETIMEDOUT) && p->state == ST_OPEN && !p->broken;
}

static void fail_apply(mp_pool *p, uint32_t e, int err, int exitcode, const char *report)
{
    pjob *pj = &p->pjobs[e];
    if (retryable(p, err) && pj->attempts < p->opts.retries) {
        pj->attempts++;
        p->stats.tasks_retried++;
        atomic_store(&p->jobs[e].state, MP__U_QUEUED);
        publish(p, e, 1);
        return;
    }
    if (err != MP_ECANCELED)
        p->stats.tasks_failed++;
    finish_apply(p, e, err, NULL, 0, 0, exitcode, report ? strdup(report) : NULL);
}

/* The worker running unit u of map job e died with item `item` (UINT64_MAX:
 * before its first) in progress. */
static void fail_map_unit(mp_pool *p, uint32_t e, uint64_t u, uint64_t item, int err, int exitcode,
                          const char *report)
{
    pjob *pj = &p->pjobs[e];
    mp__unit *unit = &units_of(p, e)[u];
    uint64_t base = u * pj->chunk;
    uint64_t end = base + pj->chunk < pj->n ? base + pj->chunk : pj->n;
    uint64_t start = base + unit->resume;
    bool range = p->jobs[e].flags & MP__JOB_RANGE;
    if (item == UINT64_MAX || item < start || item >= end) {
        /* No item of this run had begun: nothing failed, run it again. */
        if (err == MP_ECANCELED || p->state != ST_OPEN) {
            map_fail_items(p, e, start, end - start, MP_ECANCELED, 0, 0, NULL);
            map_unit_final(p, e, u, true);
        } else {
            map_requeue(p, e, u);
        }
        return;
    }
    if (!pj->uattempts) {
        pj->uattempts = calloc((size_t)pj->nunits, sizeof *pj->uattempts);
        pj->ufailed = calloc((size_t)pj->nunits, sizeof *pj->ufailed);
    }
    uint32_t tries = 0;
    if (pj->uattempts && pj->ufailed) {
        if (pj->ufailed[u] != item + 1) {
            pj->ufailed[u] = item + 1;
            pj->uattempts[u] = 0;
        }
        tries = pj->uattempts[u];
    }
    if (retryable(p, err) && tries < p->opts.retries) {
        if (pj->uattempts)
            pj->uattempts[u]++;
        p->stats.tasks_retried++;
        unit->resume = (uint32_t)(item - base);
        map_requeue(p, e, u);
        return;
    }
    uint64_t count = range ? end - item : 1;
    if (err != MP_ECANCELED)
        p->stats.tasks_failed++;
    map_fail_items(p, e, item, count, err, 0, exitcode, report);
    uint64_t next = item + count;
    if (next >= end) {
        map_unit_final(p, e, u, true);
    } else if (err == MP_ECANCELED || p->state != ST_OPEN) {
        map_fail_items(p, e, next, end - next, MP_ECANCELED, 0, 0, NULL);
        map_unit_final(p, e, u, true);
    } else {
        unit->resume = (uint32_t)(next - base);
        map_requeue(p, e, u);
    }
}

/* After a death: units of maps below their claim cursor that nobody
 * claimed (a worker died between fetch-add and CAS) go back to the
 * queue. */
static void requeue_orphans(mp_pool *p)
{
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        pjob *pj = &p->pjobs[e];
        if (pj->kind != MP__JOB_MAP || atomic_load(&p->jobs[e].seq) == MP__SEQ_RETIRED)
            continue;
        mp__job *j = &p->jobs[e];
        uint64_t cur = atomic_load(&j->next_unit);
        uint64_t lim = cur < pj->nunits ? cur : pj->nunits;
        mp__unit *units = units_of(p, e);
        uint64_t low = UINT64_MAX;
        for (uint64_t u = 0; u < lim; u++) {
            if (atomic_load(&units[u].state) == MP__U_QUEUED) {
                low = u;
                break;
            }
        }
        if (low == UINT64_MAX)
            continue;
        while (cur > low && !atomic_compare_exchange_weak(&j->next_unit, &cur, low)) {
        }
        publish(p, e, p->nworkers);
    }
}

/* Cancels what no worker took: pending work and queued units.  status is
 * MP_ECANCELED, or MP_EINIT for a broken pool. */
static void cancel_queued(mp_pool *p, int status, const char *report)
{
    while (p->pend_head) {
        pending *n = p->pend_head;
        p->pend_head = n->next;
        p->nactive--;
        if (n->pj.data_len)
            data_free(p, n->pj.data_off);
        if (n->pj.errors)
            for (uint64_t i = 0; i < n->pj.n; i++)
                n->pj.errors[i] = status;
        if (n->pj.fut)
            mp__future_finish(n->pj.fut, status, NULL, 0, 0, 0, report ? strdup(report) : NULL,
                              n->pj.kind == MP__JOB_MAP ? 0 : -1);
        if (n->pj.it) {
            struct mp_imap *it = n->pj.it;
            pthread_mutex_lock(&it->lock);
            it->submit_err = status;
            it->job_active = false;
            mp__waiter_wake(it->word);
            pthread_mutex_unlock(&it->lock);
            if (n->pj.data_len) {
                it->data_len = 0; /* freed above */
            }
        }
        free(n->pj.fails);
        free(n);
    }
    p->pend_tail = &p->pend_head;
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        pjob *pj = &p->pjobs[e];
        if (pj->kind == MP__JOB_APPLY) {
            uint32_t expect = MP__U_QUEUED;
            if (atomic_compare_exchange_strong(&p->jobs[e].state, &expect, MP__U_FINAL))
                finish_apply(p, e, status, NULL, 0, 0, 0, report ? strdup(report) : NULL);
        } else if (pj->kind == MP__JOB_MAP) {
            mp__job *j = &p->jobs[e];
            atomic_store(&j->next_unit, pj->nunits);
            mp__unit *units = units_of(p, e);
            uint64_t nunits = pj->nunits;
            for (uint64_t u = 0; u < nunits && p->pjobs[e].kind == MP__JOB_MAP; u++) {
                uint32_t expect = MP__U_QUEUED;
                if (atomic_compare_exchange_strong(&units[u].state, &expect, MP__U_CANCELLED)) {
                    uint64_t base = u * pj->chunk + units[u].resume;
                    uint64_t end = (u + 1) * pj->chunk < pj->n ? (u + 1) * pj->chunk : pj->n;
                    map_fail_items(p, e, base, end - base, status, 0, 0, report);
                    map_unit_final(p, e, u, false);
                }
            }
        }
    }
}

/* ---- workers (supervisor, under lock) ------------------------------------ */

static void reset_slot(mp_pool *p, uint32_t w)
{
    mp__wslot *s = mp__pool_slot(p->hdr, w);
    atomic_store(&s->state, MP__W_STARTING);
    atomic_store(&s->hazard, 0);
    atomic_store(&s->intent_job, 0);
    atomic_store(&s->intent_unit, 0);
    atomic_store(&s->waiting, 0);
    atomic_store(&s->claims, 0);
    atomic_store(&s->item, UINT64_MAX);
    atomic_store(&s->init_error, 0);
    atomic_store(&s->done_head, 0);
    atomic_store(&s->done_tail, 0);
    atomic_store(&s->res_consumed, 0);
    atomic_store(&s->res_tail, 0);
}

static int start_worker(mp_pool *p, uint32_t w)
{
    wstate *ws = &p->ws[w];
    reset_slot(p, w);
    char name[MP__MAX_NAME];
    snprintf(name, sizeof name, "%sWorker-%u", p->name, ++p->worker_counter);
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.name = name;
    o.daemon = true;
    o.start_method = p->opts.start_method;
    void *arg = &p->boots[w];
    int fds[MP__WFD_COUNT];
    if (p->opts.start_method != MP_START_FORK) {
        size_t extra = p->initarg_copy ? p->opts.initarg_size : 0;
        free(ws->arg);
        ws->arg = malloc(sizeof(mp__wboot) + extra);
        if (!ws->arg)
            return MP_ENOMEM;
        memcpy(ws->arg, &p->boots[w], sizeof(mp__wboot));
        if (extra)
            memcpy((char *)ws->arg + sizeof(mp__wboot), p->initarg_copy, extra);
        arg = ws->arg;
        o.arg_size = sizeof(mp__wboot) + extra;
        fds[MP__WFD_CTRL] = p->ctrl_fd;
        fds[MP__WFD_DATA] = p->data_fd;
        fds[MP__WFD_RES] = p->res_fds[w];
        fds[MP__WFD_EV] = p->ev_fd;
        o.fds = fds;
        o.nfds = MP__WFD_COUNT;
    }
    mp_process *proc = mp_process_new_opts(mp__pool_worker_main, arg, &o);
    if (!proc)
        return MP_ENOMEM;
    int rc = mp_process_start(proc);
    if (rc < 0) {
        mp_process_free(proc);
        return rc;
    }
    pthread_once(&exit_once, register_exit_handler);
    int fd = mp__process_wait_fd(proc);
    if (fd < 0) {
        mp_process_kill(proc);
        mp_process_join(proc, MP_FOREVER);
        mp_process_free(proc);
        return fd;
    }
    ws->proc = proc;
    ws->wait_fd = fd;
    ws->timed_out = false;
    ws->doomed = false;
    ws->key_claims = UINT64_MAX;
    p->nlive++;
    p->stats.workers_started++;
    if (p->state == ST_TERMINATING)
        mp_process_kill(proc); /* started just before terminate: end it too */
    return 0;
}

static void break_pool(mp_pool *p, int err, char *report)
{
    if (p->broken) {
        free(report);
        return;
    }
    p->broken = err;
    p->broken_report = report;
    mp_log(MP_LOG_ERROR, "pool: %s", report ? report : mp_strerror(err));
    cancel_queued(p, err, report);
}

/* A worker's exit descriptor became readable: reap it and settle what it
 * held. */
static void on_worker_exit(mp_pool *p, uint32_t w)
{
    wstate *ws = &p->ws[w];
    mp_process *proc = ws->proc;
    if (mp_process_join(proc, 0) != 0)
        return; /* not ended after all */
    mp__wslot *s = mp__pool_slot(p->hdr, w);
    int code = mp_process_exitcode(proc);
    int perr = mp_process_error(proc);
    const char *report = mp_process_report(proc);
    drain_slot(p, w);
    uint32_t state = atomic_load(&s->state);
    bool clean = code == 0 && (state == MP__W_RECYCLE || state == MP__W_EXITING);
    if (clean && state == MP__W_RECYCLE)
        p->stats.workers_recycled++;
    if (!clean && !ws->doomed)
        p->stats.workers_died++;

    /* A SIGKILL during the initializer came from outside (the OOM killer,
     * an operator): replace the worker - but three in a row is the
     * initializer's doing, and breaks the pool rather than loop. */
    bool killed_in_init = state == MP__W_INIT && code == -SIGKILL && !ws->doomed;
    if (killed_in_init && ++p->init_kills < 3) {
        state = MP__W_STARTING;
    } else if (state >= MP__W_READY) {
        p->init_kills = 0;
    }
    if (state == MP__W_INIT_FAILED || state == MP__W_INIT) {
        int ie = atomic_load(&s->init_error);
        char *text;
        if (state == MP__W_INIT_FAILED)
            text =
                str_printf("the initializer of worker '%s' (pid %d) returned %d (%s); no "
                           "worker will be started again",
                           mp_process_name(proc), (int)mp_process_pid(proc), ie, mp_err_name(ie));
        else
            text = str_printf("the initializer of worker '%s' failed: %s; no worker will be "
                              "started again",
                              mp_process_name(proc), report ? report : "it died");
        if (!ws->doomed)
            break_pool(p, MP_EINIT, text);
        else
            free(text);
    } else if (state == MP__W_STARTING && perr < 0 && !ws->doomed) {
        break_pool(p, perr,
                   str_printf("worker '%s' could not set up: %s (%s)", mp_process_name(proc),
                              mp_err_name(perr), mp_strerror(perr)));
    }

    /* What it held. */
    uint32_t ij = atomic_load(&s->intent_job);
    if (ij && ij <= MP__POOL_JOBS) {
        uint32_t e = ij - 1;
        uint64_t u = atomic_load(&s->intent_unit);
        int err = ws->doomed || p->state >= ST_TERMINATING ? MP_ECANCELED
                  : ws->timed_out                          ? MP_ETIMEDOUT
                                                           : MP_EWORKER;
        char *why = NULL;
        if (err == MP_ETIMEDOUT)
            why =
                str_printf("the task ran past the pool's time limit of %g s; its worker '%s' "
                           "(pid %d) was killed",
                           p->opts.task_timeout, mp_process_name(proc), (int)mp_process_pid(proc));
        const char *rep = why ? why : report;
        if (!rep && err == MP_EWORKER)
            rep = why = str_printf("process '%s' (pid %d) exited with status %d",
                                   mp_process_name(proc), (int)mp_process_pid(proc), code);
        if (p->pjobs[e].kind == MP__JOB_APPLY) {
            uint32_t st = atomic_load(&p->jobs[e].state);
            if (st == MP__U_RUNNING_BY(w))
                fail_apply(p, e, err, code, rep);
            else if (st == MP__U_DONE && p->jobs[e].u.apply.runner == w)
                collect_apply(p, e);
        } else if (p->pjobs[e].kind == MP__JOB_MAP && u < p->pjobs[e].nunits) {
            uint32_t st = atomic_load(&units_of(p, e)[u].state);
            if (st == MP__U_RUNNING_BY(w))
                fail_map_unit(p, e, u, atomic_load(&s->item), err, code, rep);
            else if (st == MP__U_DONE)
                collect_unit(p, e, u);
        }
        free(why);
    }
    if (!clean)
        requeue_orphans(p);
    reset_slot(p, w);
    mp_process_free(proc);
    ws->proc = NULL;
    ws->wait_fd = -1;
    p->nlive--;
}

/* Whether slot w should have a worker now. */
static bool wants_worker(mp_pool *p)
{
    if (p->broken || p->state >= ST_TERMINATING)
        return false;
    if (p->state == ST_CLOSED && p->nactive == 0)
        return false;
    return true;
}

static void start_missing(mp_pool *p, int64_t now, int64_t *next_wake)
{
    if (!wants_worker(p))
        return;
    for (uint32_t w = 0; w < p->nworkers && wants_worker(p); w++) {
        wstate *ws = &p->ws[w];
        if (ws->proc)
            continue;
        if (ws->next_start > now) {
            if (ws->next_start < *next_wake)
                *next_wake = ws->next_start;
            continue;
        }
        int rc = start_worker(p, w);
        if (rc == 0) {
            ws->backoff = 0;
            p->start_failures = 0;
            continue;
        }
        /* Out of processes or memory: try again later, and give up once
         * no worker runs and several attempts failed. */
        ws->backoff =
            ws->backoff ? (ws->backoff * 2 > 1000000000 ? 1000000000 : ws->backoff * 2) : 10000000;
        ws->next_start = now + ws->backoff;
        if (ws->next_start < *next_wake)
            *next_wake = ws->next_start;
        if (++p->start_failures >= 8 && p->nlive == 0)
            break_pool(p, rc,
                       str_printf("no worker could be started: %s (%s)", mp_err_name(rc),
                                  mp_strerror(rc)));
    }
}

/* Kills workers whose unit (or map item) ran past the time limit.
 * Returns the time of the next check. */
static int64_t watchdog(mp_pool *p, int64_t now)
{
    if (!(p->opts.task_timeout > 0))
        return MP__NO_DEADLINE;
    int64_t limit = (int64_t)(p->opts.task_timeout * 1e9);
    int64_t next = MP__NO_DEADLINE;
    bool busy = false;
    for (uint32_t w = 0; w < p->nworkers; w++) {
        wstate *ws = &p->ws[w];
        if (!ws->proc || ws->timed_out || ws->doomed)
            continue;
        mp__wslot *s = mp__pool_slot(p->hdr, w);
        if (atomic_load(&s->state) != MP__W_BUSY) {
            ws->key_claims = UINT64_MAX;
            continue;
        }
        busy = true;
        uint64_t c = atomic_load(&s->claims), it = atomic_load(&s->item);
        if (c != ws->key_claims || it != ws->key_item) {
            /* First seen now: the unit began no later than this. */
            ws->key_claims = c;
            ws->key_item = it;
            ws->key_since = now;
        }
        int64_t due = ws->key_since + limit;
        if (now >= due) {
            ws->timed_out = true;
            p->stats.tasks_timed_out++;
            mp_process_kill(ws->proc);
        } else if (due < next) {
            next = due;
        }
    }
    /* Work can start without the supervisor hearing of it: look again
     * within a quarter of the limit while anything is active. */
    if (busy || p->nactive) {
        int64_t tick = now + (limit / 4 > 1000000 ? limit / 4 : 1000000);
        if (tick < next)
            next = tick;
    }
    return next;
}

/* ---- terminate and close (supervisor, under lock) ------------------------ */

static void stop_workers_now(mp_pool *p)
{
    mp__pool_hdr *h = p->hdr;
    atomic_store(&h->stop, MP__STOP_NOW);
    atomic_fetch_add(&h->work_seq, 1);
    (void)mp__futex_wake(&h->work_seq, INT32_MAX);
}

static void begin_terminate(mp_pool *p, int64_t now)
{
    p->state = ST_TERMINATING;
    stop_workers_now(p);
    cancel_queued(p, MP_ECANCELED, NULL);
    bool kill = !(p->opts.terminate_grace > 0);
    for (uint32_t w = 0; w < p->nworkers; w++) {
        wstate *ws = &p->ws[w];
        if (!ws->proc)
            continue;
        ws->doomed = true;
        if (kill)
            mp_process_kill(ws->proc);
        else
            mp_process_terminate(ws->proc);
    }
    p->term_killed = kill;
    p->term_deadline = now + (kill ? 0 : (int64_t)(p->opts.terminate_grace * 1e9));
}

/* Once no worker is left after a terminate: whatever still runs (nothing
 * should) is cancelled, and waiters are told. */
static void end_terminate(mp_pool *p)
{
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        pjob *pj = &p->pjobs[e];
        if (pj->kind == MP__JOB_APPLY) {
            finish_apply(p, e, MP_ECANCELED, NULL, 0, 0, 0, NULL);
        } else if (pj->kind == MP__JOB_MAP) {
            mp__unit *units = units_of(p, e);
            for (uint64_t u = 0; u < pj->nunits && p->pjobs[e].kind == MP__JOB_MAP; u++) {
                uint32_t st = atomic_load(&units[u].state);
                if (st == MP__U_FINAL || st == MP__U_CANCELLED)
                    continue;
                uint64_t base = u * pj->chunk + units[u].resume;
                uint64_t end = (u + 1) * pj->chunk < pj->n ? (u + 1) * pj->chunk : pj->n;
                map_fail_items(p, e, base, end - base, MP_ECANCELED, 0, 0, NULL);
                map_unit_final(p, e, u, false);
            }
        }
    }
    p->state = ST_TERMINATED;
    p->workers_gone = true;
    pthread_cond_broadcast(&p->cond);
    wake_joiners(p);
}

/* ---- the supervisor ------------------------------------------------------ */

static void *supervisor(void *arg)
{
    mp_pool *p = arg;
    (void)prctl(PR_SET_NAME, "mproc-pool-sup", 0, 0, 0);
    mp__pool_hdr *h = p->hdr;
    struct pollfd *pfd = calloc(p->nworkers + 1, sizeof *pfd);
    uint32_t *who = calloc(p->nworkers + 1, sizeof *who);
    if (!pfd || !who) {
        pthread_mutex_lock(&p->lock);
        break_pool(p, MP_ENOMEM, str_printf("the supervisor ran out of memory"));
        pthread_mutex_unlock(&p->lock);
    }
    bool busy = true;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (p->sup_quit)
            break;
        int64_t now = mp__now_ns();
        int64_t next_wake = MP__NO_DEADLINE;
        bool did = false;

        /* Orders from the API. */
        if (p->terminate_req && p->state < ST_TERMINATING) {
            begin_terminate(p, now);
            did = true;
        }
        if (p->state == ST_TERMINATING) {
            if (!p->term_killed && now >= p->term_deadline) {
                for (uint32_t w = 0; w < p->nworkers; w++)
                    if (p->ws[w].proc)
                        mp_process_kill(p->ws[w].proc);
                p->term_killed = true;
            } else if (!p->term_killed && p->term_deadline < next_wake) {
                next_wake = p->term_deadline;
            }
        }

        /* Completions. */
        for (uint32_t w = 0; w < p->nworkers; w++)
            did |= drain_slot(p, w);

        /* Deaths seen by the last poll. */
        if (pfd && who) {
            for (uint32_t i = 1; i < p->nworkers + 1; i++) {
                if (pfd[i].fd >= 0 && pfd[i].revents) {
                    uint32_t w = who[i];
                    pfd[i].revents = 0;
                    if (p->ws[w].proc && p->ws[w].wait_fd == pfd[i].fd) {
                        on_worker_exit(p, w);
                        did = true;
                    }
                }
            }
        }

        if (p->nretired)
            retry_retired(p);
        for (uint32_t e = 0; e < MP__POOL_JOBS && p->nrepublish; e++)
            if (p->pjobs[e].kind && p->pjobs[e].republish)
                publish(p, e, 1);
        publish_pending(p);

        if (p->state == ST_TERMINATING && p->nlive == 0)
            end_terminate(p);
        if ((p->state == ST_CLOSED || p->broken) && p->nactive == 0 && !p->closing_done &&
            p->state < ST_TERMINATING) {
            atomic_store(&h->stop, MP__STOP_DRAIN);
            atomic_fetch_add(&h->work_seq, 1);
            (void)mp__futex_wake(&h->work_seq, INT32_MAX);
            p->closing_done = true;
        }
        if ((p->state == ST_CLOSED || p->broken) && p->closing_done && p->nlive == 0 &&
            !p->workers_gone) {
            p->workers_gone = true;
            pthread_cond_broadcast(&p->cond);
            wake_joiners(p);
        }

        start_missing(p, now, &next_wake);
        int64_t wd = watchdog(p, now);
        if (wd < next_wake)
            next_wake = wd;

        /* Progress of maps that run. */
        if (p->has_progress_jobs) {
            bool any = false;
            for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
                pjob *pj = &p->pjobs[e];
                if (pj->kind == MP__JOB_MAP && (pj->progress || pj->bar)) {
                    any = true;
                    progress_emit(p, e, false);
                }
            }
            p->has_progress_jobs = any || p->pend_head;
            if (any) {
                int64_t t = now + (int64_t)(p->opts.progress_interval * 1e9);
                if (t < next_wake)
                    next_wake = t;
            }
        }

        /* The poll set: the eventfd and every live worker. */
        nfds_t n = 0;
        if (pfd && who) {
            pfd[n++] = (struct pollfd){.fd = p->ev_fd, .events = POLLIN};
            for (uint32_t w = 0; w < p->nworkers; w++) {
                if (p->ws[w].proc) {
                    who[n] = w;
                    pfd[n++] = (struct pollfd){.fd = p->ws[w].wait_fd, .events = POLLIN};
                }
            }
            for (uint32_t i = (uint32_t)n; i < p->nworkers + 1; i++)
                pfd[i].fd = -1;
        }
        if (p->nretired || p->nrepublish) {
            int64_t t = now + 1000000; /* hazards clear, the queue drains: soon */
            if (t < next_wake)
                next_wake = t;
        }
        busy = did;
        p->sup_unbounded = !busy && next_wake == MP__NO_DEADLINE;
        pthread_mutex_unlock(&p->lock);

        int timeout_ms = 0;
        if (!busy) {
            /* About to sleep: say so, then look at the rings once more
             * (see Sleeping in records.h). */
            atomic_store(&h->sup_sleeping, 1);
            bool pending_recs = false;
            for (uint32_t w = 0; w < p->nworkers && !pending_recs; w++) {
                mp__wslot *s = mp__pool_slot(h, w);
                pending_recs = atomic_load(&s->done_head) != atomic_load(&s->done_tail);
            }
            if (pending_recs) {
                atomic_store(&h->sup_sleeping, 0);
            } else if (next_wake == MP__NO_DEADLINE) {
                timeout_ms = -1;
            } else {
                int64_t left = next_wake - mp__now_ns();
                timeout_ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
            }
        }
        if (n > 0) {
            int r = poll(pfd, n, timeout_ms);
            if (r > 0 && (pfd[0].revents & POLLIN))
                mp__eventfd_drain(p->ev_fd);
            if (r <= 0)
                for (nfds_t i = 0; i < n; i++)
                    pfd[i].revents = 0;
        } else if (timeout_ms != 0) {
            mp__sleep_ns(1000000);
        }
        atomic_store(&h->sup_sleeping, 0);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    free(pfd);
    free(who);
    return NULL;
}

static void sup_kick(mp_pool *p)
{
    mp__eventfd_signal(p->ev_fd);
}

/* ---- references ---------------------------------------------------------- */

static void pool_destroy(mp_pool *p);

static void pool_hold(void *owner)
{
    atomic_fetch_add(&((mp_pool *)owner)->refs, 1);
}

static void pool_release(void *owner)
{
    mp_pool *p = owner;
    if (atomic_fetch_sub(&p->refs, 1) == 1)
        pool_destroy(p);
}

/* ---- creation ------------------------------------------------------------ */

static int layout(mp_pool *p)
{
    size_t off = align_up(sizeof(mp__pool_hdr), 4096);
    size_t order_off = off;
    off = align_up(off + MP__POOL_ORDER * sizeof(uint32_t), 4096);
    size_t fns_off = off;
    off = align_up(off + MP__POOL_FNS * sizeof(mp__fnent), 4096);
    size_t jobs_off = off;
    off = align_up(off + MP__POOL_JOBS * sizeof(mp__job), 4096);
    size_t slots_off = off;
    off = align_up(off + p->nworkers * sizeof(mp__wslot), 4096);
    p->ctrl_size = off;
    int fd = mp__memfd_new("pool-ctrl", off);
    if (fd < 0)
        return fd;
    void *m = NULL;
    int rc = mp__map_fd(fd, off, NULL, &m);
    if (rc < 0) {
        mp__close(fd);
        return rc;
    }
    p->ctrl_fd = fd;
    p->hdr = m;
    mp__pool_hdr *h = p->hdr;
    h->magic = MP__POOL_MAGIC;
    h->nworkers = p->nworkers;
    h->ctrl_size = off;
    h->data_reserve = DATA_RESERVE;
    h->order_off = order_off;
    h->fns_off = fns_off;
    h->jobs_off = jobs_off;
    h->slots_off = slots_off;
    /* Workers find out whether they may use this process's memory in
     * place (see MP__JOB_RIN) by reading this value at this address;
     * MPROC_POOL_VM=0 forbids it, and so copies everything. */
    p->vm_probe = (mp__now_ns() ^ (uint64_t)(uintptr_t)p) | 1;
    h->vm_pid = (int32_t)getpid();
    h->vm_probe_addr = (uint64_t)(uintptr_t)&p->vm_probe;
    h->vm_probe_val = p->vm_probe;
    const char *vm = getenv("MPROC_POOL_VM");
    atomic_init(&h->vm, vm && strcmp(vm, "0") == 0 ? MP__VM_DENIED : MP__VM_UNKNOWN);
    p->order = mp__pool_order(h);
    p->fns = mp__pool_fns(h);
    p->jobs = mp__pool_jobs(h);
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        atomic_store(&p->jobs[e].seq, MP__SEQ_RETIRED);
        p->free_entries[p->nfree++] = MP__POOL_JOBS - 1 - e;
    }
    for (uint32_t i = 0; i < MP__POOL_ORDER; i++)
        p->order[i] = UINT32_MAX;
    return 0;
}

static int data_setup(mp_pool *p)
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

static void pool_destroy(mp_pool *p)
{
    if (p->hdr)
        munmap(p->hdr, p->ctrl_size);
    if (p->data)
        munmap(p->data, DATA_RESERVE);
    mp__close(p->ctrl_fd);
    mp__close(p->data_fd);
    mp__close(p->ev_fd);
    if (p->res_fds)
        for (uint32_t w = 0; w < p->nworkers; w++)
            mp__close(p->res_fds[w]);
    free(p->res_fds);
    if (p->ws)
        for (uint32_t w = 0; w < p->nworkers; w++)
            free(p->ws[w].arg);
    free(p->ws);
    free(p->boots);
    free(p->freel);
    free(p->used);
    free(p->initarg_copy);
    free(p->broken_report);
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        free(p->pjobs[e].fails);
        free(p->pjobs[e].first_report);
        free(p->pjobs[e].uattempts);
        free(p->pjobs[e].ufailed);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->ev_lock);
    pthread_cond_destroy(&p->ev_cond);
    free(p);
}

mp_pool *mp_pool_new(const mp_pool_opts *opts)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    if (opts)
        o = *opts;
    const char *bad = NULL;
    if (o.processes < 0 || o.processes > MP__POOL_MAX_WORKERS)
        bad = "processes out of range";
    else if (o.start_method != MP_START_FORK && o.start_method != MP_START_FORKSERVER &&
             o.start_method != MP_START_SPAWN)
        bad = "unknown start method";
    else if (o.initarg_size > MP__MAX_ARG || (o.initarg_size && !o.initarg))
        bad = "bad initarg_size";
    else if (o.progress_interval < 0 || o.terminate_grace < 0 || o.task_timeout != o.task_timeout)
        bad = "negative interval";
    if (bad) {
        mp_log(MP_LOG_ERROR, "mp_pool_new: %s", bad);
        return NULL;
    }
    mp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_once(&self_pid_once, self_pid_init);
    p->owner = getpid();
    atomic_init(&p->refs, 1);
    p->opts = o;
    p->ctrl_fd = p->data_fd = p->ev_fd = -1;
    p->nworkers = (uint32_t)(o.processes ? o.processes : mp_cpu_count());
    snprintf(p->name, sizeof p->name, "%s", o.name ? o.name : "Pool");
    p->opts.name = NULL;
    if (p->opts.progress_interval <= 0)
        p->opts.progress_interval = 0.1;
    /* Adaptive: the supervisor and submitters hold the lock briefly, and
     * a short spin beats sleeping in the kernel and being woken. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&p->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->ev_lock, NULL);
    pthread_cond_init(&p->ev_cond, NULL);
    p->ev_tail = &p->ev_head;
    p->pend_tail = &p->pend_head;

    int rc = 0;
    const char *what = "memory";
    p->ws = calloc(p->nworkers, sizeof *p->ws);
    p->boots = calloc(p->nworkers, sizeof *p->boots);
    p->res_fds = malloc(p->nworkers * sizeof *p->res_fds);
    if (!p->ws || !p->boots || !p->res_fds) {
        rc = MP_ENOMEM;
        goto fail;
    }
    for (uint32_t w = 0; w < p->nworkers; w++)
        p->res_fds[w] = -1;
    if (o.initarg_size && o.start_method != MP_START_FORK) {
        p->initarg_copy = malloc(o.initarg_size);
        if (!p->initarg_copy) {
            rc = MP_ENOMEM;
            goto fail;
        }
        memcpy(p->initarg_copy, o.initarg, o.initarg_size);
    }
    what = "the shared control region";
    if ((rc = layout(p)) < 0)
        goto fail;
    what = "the shared data region";
    if ((rc = data_setup(p)) < 0)
        goto fail;
    what = "result files";
    for (uint32_t w = 0; w < p->nworkers; w++) {
        rc = p->res_fds[w] = mp__memfd_new("pool-res", 0);
        if (rc < 0)
            goto fail;
    }
    what = "an eventfd";
    if ((rc = p->ev_fd = mp__eventfd_new()) < 0)
        goto fail;
    for (uint32_t w = 0; w < p->nworkers; w++) {
        mp__wboot *b = &p->boots[w];
        b->slot = w;
        b->method = (uint32_t)o.start_method;
        b->ctrl_size = p->ctrl_size;
        b->data_reserve = DATA_RESERVE;
        b->maxtasks = o.maxtasksperchild;
        b->initarg_size = p->initarg_copy ? o.initarg_size : 0;
        b->has_init = o.initializer != NULL;
        b->ctrl = p->hdr;
        b->data = p->data;
        b->data_mapped = &p->data_mapped;
        b->data_fd = p->data_fd;
        b->res_fd = p->res_fds[w];
        b->ev_fd = p->ev_fd;
        b->init = o.initializer;
        b->initarg = o.initarg;
        if (o.initializer && o.start_method != MP_START_FORK) {
            what = "a reference to the initializer";
            if ((rc = mp__fnref_from_ptr((const void *)o.initializer, &b->init_ref)) < 0)
                goto fail;
        }
        p->ws[w].wait_fd = -1;
    }
    if (o.start_method == MP_START_FORKSERVER) {
        what = "the forkserver";
        if ((rc = mp_forkserver_start()) < 0)
            goto fail;
    }
    what = "the supervisor thread";
    if ((rc = thread_start(&p->sup, supervisor, p)) < 0)
        goto fail;
    p->sup_started = true;
    live_add(p);
    return p;
fail:
    mp_log(MP_LOG_ERROR, "mp_pool_new: cannot create %s: %s", what, mp_strerror(rc));
    pool_destroy(p);
    return NULL;
}

int mp_pool_size(const mp_pool *p)
{
    return p ? (int)p->nworkers : MP_EINVAL;
}

int mp_pool_error(const mp_pool *p)
{
    if (!p)
        return MP_EINVAL;
    mp_pool *mp = (mp_pool *)p;
    pthread_mutex_lock(&mp->lock);
    int rc = mp->broken;
    pthread_mutex_unlock(&mp->lock);
    return rc;
}

const char *mp_pool_report(const mp_pool *p)
{
    if (!p)
        return NULL;
    mp_pool *mp = (mp_pool *)p;
    pthread_mutex_lock(&mp->lock);
    const char *r = mp->broken_report;
    pthread_mutex_unlock(&mp->lock);
    return r;
}

/* ---- close, terminate, join, free ---------------------------------------- */

int mp_pool_close(mp_pool *p)
{
    if (!p)
        return MP_EINVAL;
    if (!ours(p))
        return MP_ESTATE;
    pthread_mutex_lock(&p->lock);
    if (p->state == ST_OPEN)
        p->state = ST_CLOSED;
    pthread_mutex_unlock(&p->lock);
    sup_kick(p);
    return 0;
}

int mp_pool_terminate(mp_pool *p)
{
    if (!p)
        return MP_EINVAL;
    if (!ours(p))
        return MP_ESTATE;
    pthread_mutex_lock(&p->lock);
    if (!p->sup_started || p->sup_quit) {
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    p->terminate_req = true;
    sup_kick(p);
    while (p->state != ST_TERMINATED)
        pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int mp_pool_join(mp_pool *p, double timeout)
{
    if (!p)
        return MP_EINVAL;
    if (!ours(p))
        return MP_ESTATE;
    if (in_callback_thread(p))
        return MP_EDEADLK;
    int64_t deadline = mp__deadline(timeout);
    pthread_mutex_lock(&p->lock);
    if (p->state == ST_OPEN && !p->broken) {
        pthread_mutex_unlock(&p->lock);
        return MP_ESTATE;
    }
    if (p->workers_gone) {
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    mp__waiter w;
    mp__waiter_begin(&w);
    waitword ww = {p->joiners, w.word};
    /* On this thread's stack only while it waits: unlinked below, under
     * the same lock, before the function returns. */
    // cppcheck-suppress autoVariables
    p->joiners = &ww;
    int rc = 0;
    for (;;) {
        uint32_t seen = w.word ? atomic_load(w.word) : 0;
        if (p->workers_gone)
            break;
        if (mp__waiter_interrupted(&w)) {
            rc = MP_ECANCELED;
            break;
        }
        pthread_mutex_unlock(&p->lock);
        int r = w.word ? mp__futex_wait(w.word, seen, deadline) : MP_ETIMEDOUT;
        if (!w.word && mp__remaining_ns(deadline) > 0) {
            mp__sleep_ns(1000000);
            r = 0;
        }
        pthread_mutex_lock(&p->lock);
        if (r == MP_ETIMEDOUT) {
            rc = p->workers_gone ? 0 : MP_ETIMEDOUT;
            break;
        }
    }
    for (waitword **pp = &p->joiners; *pp; pp = &(*pp)->next) {
        if (*pp == &ww) {
            *pp = ww.next;
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    mp__waiter_end(&w);
    if (rc == MP_ECANCELED)
        mp_pool_terminate(p);
    return rc;
}

int mp_pool_shutdown(mp_pool *p, bool cancel_pending, double timeout)
{
    int rc = mp_pool_close(p);
    if (rc < 0)
        return rc;
    if (cancel_pending) {
        pthread_mutex_lock(&p->lock);
        cancel_queued(p, MP_ECANCELED, NULL);
        pthread_mutex_unlock(&p->lock);
        sup_kick(p);
    }
    return mp_pool_join(p, timeout);
}

void mp_pool_free(mp_pool *p)
{
    if (!p)
        return;
    if (!ours(p)) {
        /* A copy inherited through fork: its threads and workers are the
         * parent's; release this process's memory only. */
        if (p->hdr)
            munmap(p->hdr, p->ctrl_size);
        if (p->data)
            munmap(p->data, DATA_RESERVE);
        return;
    }
    if (in_callback_thread(p)) {
        mp_log(MP_LOG_ERROR, "mp_pool_free called from the pool's own callback thread: ignored");
        return;
    }
    live_remove(p);
    pthread_mutex_lock(&p->lock);
    bool done = p->workers_gone && p->nactive == 0;
    pthread_mutex_unlock(&p->lock);
    if (!done)
        mp_pool_terminate(p);
    if (p->sup_started) {
        pthread_mutex_lock(&p->lock);
        p->sup_quit = true;
        pthread_mutex_unlock(&p->lock);
        sup_kick(p);
        pthread_join(p->sup, NULL);
    }
    /* Workers still alive here (a join that gave up, or none was
     * started): end them.  Then run what callbacks remain. */
    for (uint32_t w = 0; w < p->nworkers; w++) {
        if (p->ws[w].proc) {
            mp_process_kill(p->ws[w].proc);
            mp_process_join(p->ws[w].proc, MP_FOREVER);
            mp_process_free(p->ws[w].proc);
            p->ws[w].proc = NULL;
        }
    }
    pthread_mutex_lock(&p->ev_lock);
    p->ev_quit = true;
    bool started = p->ev_started;
    pthread_cond_signal(&p->ev_cond);
    pthread_mutex_unlock(&p->ev_lock);
    if (started)
        pthread_join(p->ev_tid, NULL);
    pthread_mutex_lock(&p->ev_lock);
    p->ev_closed = true;
    pthread_mutex_unlock(&p->ev_lock);
    pool_release(p);
}

/* ---- the future's operations --------------------------------------------- */

static int op_cancel(void *owner, mp_future *f)
{
    mp_pool *p = owner;
    pthread_mutex_lock(&p->lock);
    uint64_t tok = mp__future_token(f);
    int rc = MP_EBUSY;
    if (tok & TOK_PENDING) {
        pending *n = (pending *)(uintptr_t)(tok & ~(uint64_t)TOK_PENDING);
        for (pending **pp = &p->pend_head; *pp; pp = &(*pp)->next) {
            if (*pp != n)
                continue;
            *pp = n->next;
            if (p->pend_tail == &n->next)
                p->pend_tail = pp;
            p->nactive--;
            if (n->pj.data_len)
                data_free(p, n->pj.data_off);
            free(n);
            mp__future_finish(f, MP_ECANCELED, NULL, 0, 0, 0, NULL, -1);
            rc = 0;
            break;
        }
    } else if (tok) {
        uint32_t e = (uint32_t)(tok >> 1) - 1;
        pjob *pj = &p->pjobs[e];
        if (e < MP__POOL_JOBS && pj->fut == f) {
            if (pj->kind == MP__JOB_APPLY) {
                uint32_t expect = MP__U_QUEUED;
                if (atomic_compare_exchange_strong(&p->jobs[e].state, &expect, MP__U_FINAL)) {
                    finish_apply(p, e, MP_ECANCELED, NULL, 0, 0, 0, NULL);
                    rc = 0;
                }
            } else if (pj->kind == MP__JOB_MAP) {
                /* Items no worker has started are cancelled; the map is
                 * cancelled as a whole only if none had. */
                mp__job *j = &p->jobs[e];
                atomic_store(&j->next_unit, pj->nunits);
                mp__unit *units = units_of(p, e);
                bool started = false;
                uint64_t nunits = pj->nunits;
                for (uint64_t u = 0; u < nunits && p->pjobs[e].kind == MP__JOB_MAP; u++) {
                    uint32_t expect = MP__U_QUEUED;
                    if (atomic_compare_exchange_strong(&units[u].state, &expect, MP__U_CANCELLED)) {
                        started |= units[u].resume != 0;
                        uint64_t base = u * pj->chunk + units[u].resume;
                        uint64_t end = (u + 1) * pj->chunk < pj->n ? (u + 1) * pj->chunk : pj->n;
                        map_fail_items(p, e, base, end - base, MP_ECANCELED, 0, 0, NULL);
                        map_unit_final(p, e, u, false);
                    } else {
                        started = true;
                    }
                }
                rc = started ? MP_EBUSY : 0;
            }
        }
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static bool op_running(void *owner, const mp_future *f)
{
    mp_pool *p = owner;
    pthread_mutex_lock(&p->lock);
    uint64_t tok = mp__future_token(f);
    bool r = false;
    if (tok && !(tok & TOK_PENDING)) {
        uint32_t e = (uint32_t)(tok >> 1) - 1;
        if (e < MP__POOL_JOBS && p->pjobs[e].fut == f) {
            if (p->pjobs[e].kind == MP__JOB_APPLY)
                r = MP__U_KIND(atomic_load(&p->jobs[e].state)) == MP__U_RUNNING;
            else
                r = atomic_load(&p->jobs[e].next_unit) > 0;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return r;
}

static void op_interrupt(void *owner)
{
    mp_pool_terminate(owner);
}

static int op_dispatch(void *owner, void (*fn)(void *), void *arg)
{
    return ev_post(owner, fn, arg);
}

static const mp__future_ops pool_future_ops = {pool_hold,  pool_release, op_cancel,
                                               op_running, op_interrupt, op_dispatch};

/* ---- apply --------------------------------------------------------------- */

/* The error a submission gets from the pool's state, or 0. */
static int refusal(mp_pool *p)
{
    if (p->broken)
        return p->broken;
    return p->state != ST_OPEN ? MP_ECLOSED : 0;
}

typedef struct apply_cbs {
    mp_future_cb ok, err;
    void *ctx;
} apply_cbs;

static void apply_cb_trampoline(mp_future *f, void *arg)
{
    apply_cbs *c = arg;
    if (mp_future_status(f) == 0) {
        if (c->ok)
            c->ok(f, c->ctx);
    } else if (c->err) {
        c->err(f, c->ctx);
    }
    free(c);
}

static mp_future *apply_submit(mp_pool *p, mp_task_fn fn, const void *arg, size_t len,
                               apply_cbs *cbs)
{
    if (!p || !fn || (len && !arg) || len > DATA_RESERVE) {
        free(cbs);
        return mp__future_new_failed(MP_EINVAL, NULL);
    }
    if (!ours(p)) {
        free(cbs);
        return mp__future_new_failed(MP_ESTATE, NULL);
    }
    mp_future *f = mp__future_new(&pool_future_ops, p);
    if (!f) {
        free(cbs);
        return NULL;
    }
    if (cbs && mp_future_add_done_callback(f, apply_cb_trampoline, cbs) < 0)
        free(cbs);
    mp__job job;
    memset(&job, 0, sizeof job);
    job.kind = MP__JOB_APPLY;
    job.u.apply.arg_len = len;
    pjob pj;
    memset(&pj, 0, sizeof pj);
    pj.kind = MP__JOB_APPLY;
    pj.fut = f;
    pthread_mutex_lock(&p->lock);
    int rc = refusal(p);
    if (rc == 0)
        rc = fn_id(p, (const void *)fn, &job.fn);
    if (rc == 0 && len > MP__POOL_INLINE) {
        size_t off;
        rc = data_alloc(p, len, &off);
        if (rc == 0) {
            job.u.apply.arg_off = off;
            pj.data_off = off;
            pj.data_len = len;
            if (len >= COPY_UNLOCKED) {
                /* The block is ours alone until published. */
                pthread_mutex_unlock(&p->lock);
                memcpy(p->data + off, arg, len);
                pthread_mutex_lock(&p->lock);
                rc = refusal(p);
                if (rc < 0)
                    data_free(p, off);
            } else {
                memcpy(p->data + off, arg, len);
            }
        }
    } else if (len) {
        memcpy(job.arg, arg, len);
    }
    if (rc == 0) {
        rc = submit_job(p, &job, &pj);
        if (rc < 0 && pj.data_len)
            data_free(p, pj.data_off);
    }
    if (rc < 0) {
        const char *rep = p->broken ? p->broken_report : NULL;
        mp__future_finish(f, rc, NULL, 0, 0, 0, rep ? strdup(rep) : NULL, -1);
    }
    pthread_mutex_unlock(&p->lock);
    return f;
}

mp_future *mp_pool_apply_async(mp_pool *p, mp_task_fn fn, const void *arg, size_t len)
{
    return apply_submit(p, fn, arg, len, NULL);
}

mp_future *mp_pool_submit(mp_pool *p, mp_task_fn fn, const void *arg, size_t len)
{
    return apply_submit(p, fn, arg, len, NULL);
}

mp_future *mp_pool_apply_async_cb(mp_pool *p, mp_task_fn fn, const void *arg, size_t len,
                                  mp_future_cb callback, mp_future_cb error_callback, void *ctx)
{
    apply_cbs *c = NULL;
    if (callback || error_callback) {
        c = malloc(sizeof *c);
        if (!c)
            return NULL;
        *c = (apply_cbs){callback, error_callback, ctx};
    }
    return apply_submit(p, fn, arg, len, c);
}

int mp_pool_apply(mp_pool *p, mp_task_fn fn, const void *arg, size_t len, void *out, size_t cap,
                  size_t *out_len, double timeout)
{
    if (!p || !fn || (cap && !out))
        return MP_EINVAL;
    mp_future *f = mp_pool_apply_async(p, fn, arg, len);
    if (!f)
        return MP_ENOMEM;
    int rc = mp_future_get(f, out, cap, out_len, timeout);
    if (rc == MP_ETIMEDOUT && !mp_future_done(f))
        (void)mp_future_cancel(f);
    mp_future_free(f);
    return rc;
}

/* ---- map ----------------------------------------------------------------- */

/* MODE_SYNC: the caller waits for the map (its arrays are valid until the
 * map is final, so workers may use them in place); MODE_ASYNC: it does
 * not; MODE_IMAP: the results stay in shared memory. */
enum { MODE_SYNC, MODE_ASYNC, MODE_IMAP };

static uint64_t default_chunk(mp_pool *p, uint64_t n)
{
    uint64_t d = (uint64_t)p->nworkers * 4;
    uint64_t c = n / d + (n % d ? 1 : 0);
    return c ? c : 1;
}

/* Items per unit and units of a map of n items. */
static void map_geometry(mp_pool *p, uint64_t n, uint64_t chunksize, uint64_t *chunk,
                         uint64_t *nunits)
{
    uint64_t c = chunksize ? chunksize : default_chunk(p, n);
    if (c > UINT32_MAX)
        c = UINT32_MAX; /* a unit's resume point is 32 bits */
    *chunk = c;
    *nunits = n / c + (n % c ? 1 : 0);
}

static int check_spec(const mp_map_spec *s, int mode)
{
    if (!s || (!s->fn == !s->range_fn))
        return MP_EINVAL;
    if (s->n && s->in_size && !s->in)
        return MP_EINVAL;
    if (mode != MODE_IMAP && s->n && s->out_size && !s->out)
        return MP_EINVAL;
    if (s->ctx_size > MAX_CTX || (s->ctx_size && !s->ctx))
        return MP_EINVAL;
    if ((s->in_size && s->n > SIZE_MAX / s->in_size) ||
        (s->out_size && s->n > SIZE_MAX / s->out_size) || s->n > ((uint64_t)1 << 48))
        return MP_EINVAL;
    return 0;
}

/* Prepares and submits a map.  For MODE_IMAP, it receives the staging
 * block; for MODE_ASYNC, f is finished or submitted. */
static int map_submit(mp_pool *p, const mp_map_spec *s, int mode, mp_future *f, struct mp_imap *it)
{
    uint64_t n = s->n, chunk, nunits;
    map_geometry(p, n, s->chunksize, &chunk, &nunits);
    mp__job job;
    memset(&job, 0, sizeof job);
    job.kind = MP__JOB_MAP;
    job.flags = s->range_fn ? MP__JOB_RANGE : 0;
    job.u.map.n = n;
    job.u.map.nunits = nunits;
    job.u.map.chunk = chunk;
    job.u.map.in_size = s->in_size;
    job.u.map.out_size = s->out_size;
    job.u.map.ctx_len = s->ctx_size;
    pjob pj;
    memset(&pj, 0, sizeof pj);
    pj.kind = MP__JOB_MAP;
    pj.fut = f;
    pj.it = it;
    pj.keep_data = it != NULL;
    pj.errors = mode != MODE_IMAP ? s->errors : NULL;
    pj.n = n;
    pj.chunk = chunk;
    pj.nunits = nunits;
    pj.in_size = s->in_size;
    pj.out_size = s->out_size;
    pj.progress = s->progress ? s->progress : p->opts.progress;
    pj.progress_ctx = s->progress ? s->progress_ctx : p->opts.progress_ctx;
    pj.bar = p->opts.progress_bar;
    pj.started_ns = mp__now_ns();
    if (pj.errors)
        memset(pj.errors, 0, (size_t)n * sizeof(int));

    pthread_mutex_lock(&p->lock);
    int rc = refusal(p);
    if (rc == 0)
        rc = fn_id(p, s->fn ? (const void *)s->fn : (const void *)s->range_fn, &job.fn);
    size_t in_off = 0, out_off = 0;
    bool in_place =
        rc == 0 && s->in_size && used_contains(p, s->in, (size_t)(n * s->in_size), &in_off);
    bool out_place = rc == 0 && mode != MODE_IMAP && s->out_size &&
                     used_contains(p, s->out, (size_t)(n * s->out_size), &out_off);
    /* A map the caller waits for leaves its arrays where they are, when
     * the workers can reach them there: each reads and writes its own
     * share, in parallel, in one kernel copy each way, instead of this
     * thread copying everything in and the supervisor everything out. */
    bool vm = rc == 0 && mode == MODE_SYNC && atomic_load(&p->hdr->vm) == MP__VM_OK &&
              chunk * (s->in_size + s->out_size) >= DIRECT_MIN;
    if (vm && s->in_size && !in_place)
        job.flags |= MP__JOB_RIN;
    if (vm && s->out_size && !out_place)
        job.flags |= MP__JOB_ROUT;
    /* A range function's outputs go straight to the caller; an item
     * function's also through the data region, where a worker that dies
     * leaves those it finished. */
    bool out_direct = (job.flags & MP__JOB_ROUT) && (job.flags & MP__JOB_RANGE);
    size_t ready_len = sizeof(mp__map_ready);
    size_t units_len = align_up((size_t)nunits * sizeof(mp__unit), DATA_ALIGN);
    size_t ctx_len = align_up(s->ctx_size, DATA_ALIGN);
    size_t in_len =
        in_place || (job.flags & MP__JOB_RIN) ? 0 : align_up((size_t)(n * s->in_size), DATA_ALIGN);
    size_t out_len = out_place || out_direct ? 0 : align_up((size_t)(n * s->out_size), DATA_ALIGN);
    size_t total = ready_len + units_len + ctx_len + in_len + out_len, base = 0;
    if (rc == 0)
        rc = data_alloc(p, total, &base);
    pthread_mutex_unlock(&p->lock);
    if (rc < 0)
        return rc;
    pj.data_off = base;
    pj.data_len = total;
    job.u.map.ready_off = base;
    job.u.map.units_off = base + ready_len;
    job.u.map.ctx_off = base + ready_len + units_len;
    job.u.map.in_off = in_place ? in_off : base + ready_len + units_len + ctx_len;
    job.u.map.out_off = out_place ? out_off : base + ready_len + units_len + ctx_len + in_len;
    if (mode != MODE_IMAP && !out_place && !out_direct && s->out_size)
        pj.user_out = s->out;
    pj.out_remote = job.flags & MP__JOB_ROUT;

    /* The block is ours alone until published: fill it without the lock. */
    mp__unit *units = (mp__unit *)(p->data + job.u.map.units_off);
    for (uint64_t u = 0; u < nunits; u++) {
        atomic_init(&units[u].state, MP__U_QUEUED);
        units[u].resume = 0;
    }
    if (s->ctx_size)
        memcpy(p->data + job.u.map.ctx_off, s->ctx, s->ctx_size);
    /* Inputs: a small map is copied whole before it is published; a large
     * one is published after its first slice, and the rest is copied while
     * the workers compute, behind the watermark they wait on. */
    mp__map_ready *ready = (mp__map_ready *)(p->data + base);
    ready->rin = (uint64_t)(uintptr_t)s->in;
    ready->rout = (uint64_t)(uintptr_t)s->out;
    ready->rpid = p->hdr->vm_pid;
    size_t in_bytes =
        in_place || !s->in_size || (job.flags & MP__JOB_RIN) ? 0 : (size_t)(n * s->in_size);
    uint64_t copied = n;
    if (in_bytes > PIPELINE_MIN) {
        copied = PIPELINE_SLICE / s->in_size + 1;
        memcpy(p->data + job.u.map.in_off, s->in, (size_t)(copied * s->in_size));
    } else if (in_bytes) {
        memcpy(p->data + job.u.map.in_off, s->in, in_bytes);
    }
    atomic_init(&ready->items, copied);
    if (it) {
        it->outs = p->data + job.u.map.out_off;
        it->data_off = base;
        it->data_len = total;
        it->chunk = chunk;
        it->nunits = nunits;
    }

    pthread_mutex_lock(&p->lock);
    rc = refusal(p);
    if (rc == 0) {
        rc = submit_job(p, &job, &pj);
        if (rc == 0 && (pj.progress || pj.bar))
            p->has_progress_jobs = true;
        if (rc == 0 && (job.flags & (MP__JOB_RIN | MP__JOB_ROUT)))
            p->stats.maps_direct++;
    }
    if (rc < 0)
        data_free(p, base);
    else if (copied < n)
        data_ref(p, base); /* the block outlives a cancel while we copy */
    pthread_mutex_unlock(&p->lock);
    if (rc == 0 && (pj.progress || pj.bar))
        sup_kick(p);
    if (rc == 0 && copied < n) {
        const unsigned char *src = s->in;
        unsigned char *dst = p->data + job.u.map.in_off;
        uint64_t step = PIPELINE_SLICE / s->in_size + 1;
        while (copied < n) {
            uint64_t k = n - copied < step ? n - copied : step;
            memcpy(dst + copied * s->in_size, src + copied * s->in_size, (size_t)(k * s->in_size));
            copied += k;
            /* seq_cst, so release: the bytes before the count. */
            atomic_store(&ready->items, copied);
        }
        pthread_mutex_lock(&p->lock);
        data_free(p, base);
        pthread_mutex_unlock(&p->lock);
    }
    return rc;
}

static mp_future *map_start(mp_pool *p, const mp_map_spec *s, int mode)
{
    if (!p || check_spec(s, mode) < 0)
        return mp__future_new_failed(MP_EINVAL, NULL);
    if (!ours(p))
        return mp__future_new_failed(MP_ESTATE, NULL);
    if (s->n == 0) {
        pthread_mutex_lock(&p->lock);
        int rc = refusal(p);
        pthread_mutex_unlock(&p->lock);
        return mp__future_new_failed(rc, NULL);
    }
    mp_future *f = mp__future_new(&pool_future_ops, p);
    if (!f)
        return NULL;
    int rc = map_submit(p, s, mode, f, NULL);
    if (rc < 0) {
        pthread_mutex_lock(&p->lock);
        const char *rep = p->broken ? p->broken_report : NULL;
        char *r = rep ? strdup(rep) : NULL;
        pthread_mutex_unlock(&p->lock);
        mp__future_finish(f, rc, NULL, 0, 0, 0, r, -1);
    }
    return f;
}

mp_future *mp_pool_map_async_ex(mp_pool *p, const mp_map_spec *s)
{
    return map_start(p, s, MODE_ASYNC);
}

int mp_pool_map_ex(mp_pool *p, const mp_map_spec *s)
{
    mp_future *f = map_start(p, s, MODE_SYNC);
    if (!f)
        return MP_ENOMEM;
    int rc = mp_future_get(f, NULL, 0, NULL, MP_FOREVER);
    mp_future_free(f);
    return rc;
}

static mp_map_spec simple_spec(mp_map_fn fn, const void *in, size_t n, size_t in_size, void *out,
                               size_t out_size, size_t chunksize)
{
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = fn;
    s.in = in;
    s.n = n;
    s.in_size = in_size;
    s.out = out;
    s.out_size = out_size;
    s.chunksize = chunksize;
    return s;
}

int mp_pool_map(mp_pool *p, mp_map_fn fn, const void *in, size_t n, size_t in_size, void *out,
                size_t out_size, size_t chunksize)
{
    mp_map_spec s = simple_spec(fn, in, n, in_size, out, out_size, chunksize);
    return mp_pool_map_ex(p, &s);
}

mp_future *mp_pool_map_async(mp_pool *p, mp_map_fn fn, const void *in, size_t n, size_t in_size,
                             void *out, size_t out_size, size_t chunksize)
{
    mp_map_spec s = simple_spec(fn, in, n, in_size, out, out_size, chunksize);
    return mp_pool_map_async_ex(p, &s);
}

int mp_pool_starmap(mp_pool *p, mp_map_fn fn, const void *args, size_t n, size_t args_size,
                    void *out, size_t out_size, size_t chunksize)
{
    return mp_pool_map(p, fn, args, n, args_size, out, out_size, chunksize);
}

mp_future *mp_pool_starmap_async(mp_pool *p, mp_map_fn fn, const void *args, size_t n,
                                 size_t args_size, void *out, size_t out_size, size_t chunksize)
{
    return mp_pool_map_async(p, fn, args, n, args_size, out, out_size, chunksize);
}

/* ---- imap ---------------------------------------------------------------- */

/* Called by the supervisor under p->lock. */
static void imap_unit_final(mp_pool *p, struct mp_imap *it, uint64_t u)
{
    (void)p;
    pthread_mutex_lock(&it->lock);
    it->unit_final[u] = 1;
    it->uq[it->uq_tail++] = u;
    mp__waiter_wake(it->word);
    pthread_mutex_unlock(&it->lock);
}

static void imap_add_failure(struct mp_imap *it, const failure *f)
{
    pthread_mutex_lock(&it->lock);
    fails_insert(&it->fails, &it->nfails, &it->capfails, f);
    pthread_mutex_unlock(&it->lock);
}

static void imap_job_done(mp_pool *p, struct mp_imap *it)
{
    (void)p;
    pthread_mutex_lock(&it->lock);
    it->job_active = false;
    mp__waiter_wake(it->word);
    pthread_mutex_unlock(&it->lock);
}

/* The error of item i, or 0 (under it->lock). */
static int imap_item_error(struct mp_imap *it, uint64_t i)
{
    size_t lo = 0, hi = it->nfails;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (it->fails[mid].first <= i)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Runs may overlap only when an item failed in a run and again on its
     * own; any run covering i names its error. */
    for (size_t k = lo; k-- > 0;) {
        const failure *f = &it->fails[k];
        if (i < f->first + f->count)
            return f->err;
        if (lo - k > 64)
            break;
    }
    return 0;
}

mp_imap *mp_pool_imap_ex(mp_pool *p, const mp_map_spec *s, bool ordered)
{
    mp_imap *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    pthread_mutex_init(&it->lock, NULL);
    it->ordered = ordered;
    int rc = !p || check_spec(s, MODE_IMAP) < 0 ? MP_EINVAL : 0;
    if (rc == 0 && !ours(p))
        rc = MP_ESTATE;
    if (rc == 0) {
        it->n = s->n;
        it->out_size = s->out_size;
        uint64_t chunk, nunits;
        map_geometry(p, s->n, s->chunksize, &chunk, &nunits);
        it->unit_final = calloc((size_t)nunits + 1, 1);
        it->uq = calloc((size_t)nunits + 1, sizeof *it->uq);
        if (!it->unit_final || !it->uq)
            rc = MP_ENOMEM;
    }
    if (rc == 0) {
        it->pool = p;
        pool_hold(p);
        if (s->n) {
            it->job_active = true;
            rc = map_submit(p, s, MODE_IMAP, NULL, it);
            if (rc < 0) {
                it->job_active = false;
                it->data_len = 0;
            }
        } else {
            pthread_mutex_lock(&p->lock);
            rc = refusal(p);
            pthread_mutex_unlock(&p->lock);
        }
    }
    it->submit_err = rc;
    return it;
}

mp_imap *mp_pool_imap(mp_pool *p, mp_map_fn fn, const void *in, size_t n, size_t in_size,
                      size_t out_size, size_t chunksize)
{
    mp_map_spec s = simple_spec(fn, in, n, in_size, NULL, out_size, chunksize);
    return mp_pool_imap_ex(p, &s, true);
}

mp_imap *mp_pool_imap_unordered(mp_pool *p, mp_map_fn fn, const void *in, size_t n, size_t in_size,
                                size_t out_size, size_t chunksize)
{
    mp_map_spec s = simple_spec(fn, in, n, in_size, NULL, out_size, chunksize);
    return mp_pool_imap_ex(p, &s, false);
}

/* Takes the next ready item (under it->lock).  Returns 1 and sets *item
 * when there is one, 0 when none is ready yet. */
static int imap_take(mp_imap *it, uint64_t *item)
{
    if (it->ordered) {
        uint64_t i = it->next_index;
        if (!it->unit_final[i / it->chunk])
            return 0;
        it->next_index++;
        *item = i;
        return 1;
    }
    for (;;) {
        if (it->in_unit && it->cur < it->cur_end) {
            *item = it->cur++;
            return 1;
        }
        if (it->uq_head == it->uq_tail)
            return 0;
        uint64_t u = it->uq[it->uq_head++];
        it->cur = u * it->chunk;
        it->cur_end = it->cur + it->chunk < it->n ? it->cur + it->chunk : it->n;
        it->in_unit = true;
    }
}

int mp_imap_next(mp_imap *it, void *out, size_t *index, double timeout)
{
    if (!it)
        return MP_EINVAL;
    if (it->submit_err < 0)
        return it->submit_err;
    int64_t deadline = mp__deadline(timeout);
    mp__waiter w = {.slot = -1};
    bool waiting = false;
    int rc;
    pthread_mutex_lock(&it->lock);
    for (;;) {
        if (it->yielded == it->n) {
            rc = MP_EOF;
            break;
        }
        uint64_t i;
        if (imap_take(it, &i)) {
            it->yielded++;
            if (index)
                *index = (size_t)i;
            rc = imap_item_error(it, i);
            if (out && it->out_size)
                memcpy(out, it->outs + i * it->out_size, (size_t)it->out_size);
            break;
        }
        if (it->submit_err < 0) {
            rc = it->submit_err;
            break;
        }
        if (!waiting) {
            if (mp__remaining_ns(deadline) <= 0) {
                rc = MP_ETIMEDOUT;
                break;
            }
            pthread_mutex_unlock(&it->lock);
            mp__waiter_begin(&w);
            waiting = true;
            pthread_mutex_lock(&it->lock);
            it->word = w.word;
            continue;
        }
        uint32_t seen = w.word ? atomic_load(w.word) : 0;
        pthread_mutex_unlock(&it->lock);
        if (mp__waiter_interrupted(&w)) {
            pthread_mutex_lock(&it->lock);
            rc = MP_ECANCELED;
            break;
        }
        int r = w.word ? mp__futex_wait(w.word, seen, deadline) : 0;
        if (!w.word)
            mp__sleep_ns(1000000);
        pthread_mutex_lock(&it->lock);
        if (r == MP_ETIMEDOUT || (!w.word && mp__remaining_ns(deadline) <= 0)) {
            uint64_t j;
            if (it->yielded < it->n && imap_take(it, &j)) {
                it->yielded++;
                if (index)
                    *index = (size_t)j;
                rc = imap_item_error(it, j);
                if (out && it->out_size)
                    memcpy(out, it->outs + j * it->out_size, (size_t)it->out_size);
            } else {
                rc = MP_ETIMEDOUT;
            }
            break;
        }
    }
    it->word = NULL;
    pthread_mutex_unlock(&it->lock);
    if (waiting)
        mp__waiter_end(&w);
    if (rc == MP_ECANCELED && it->pool)
        mp_pool_terminate(it->pool);
    return rc;
}

void mp_imap_free(mp_imap *it)
{
    if (!it)
        return;
    mp_pool *p = it->pool;
    if (p) {
        pthread_mutex_lock(&p->lock);
        pthread_mutex_lock(&it->lock);
        bool active = it->job_active;
        pthread_mutex_unlock(&it->lock);
        if (active) {
            /* The map still runs: its job frees the block when it ends. */
            for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
                if (p->pjobs[e].it == it) {
                    p->pjobs[e].it = NULL;
                    p->pjobs[e].keep_data = false;
                }
            }
            for (pending *n = p->pend_head; n; n = n->next) {
                if (n->pj.it == it) {
                    n->pj.it = NULL;
                    n->pj.keep_data = false;
                }
            }
        } else if (it->data_len && p->hdr) {
            data_free(p, it->data_off);
        }
        pthread_mutex_unlock(&p->lock);
        pool_release(p);
    }
    pthread_mutex_destroy(&it->lock);
    free(it->unit_final);
    free(it->uq);
    free(it->fails);
    free(it);
}

/* ---- shared memory, inspection ------------------------------------------- */

void *mp_pool_shared_alloc(mp_pool *p, size_t size)
{
    if (!p || !size || !ours(p))
        return NULL;
    pthread_mutex_lock(&p->lock);
    size_t off = 0;
    int rc = p->state < ST_TERMINATING ? data_alloc(p, size, &off) : MP_ECLOSED;
    pthread_mutex_unlock(&p->lock);
    return rc < 0 ? NULL : p->data + off;
}

void mp_pool_shared_free(mp_pool *p, void *ptr)
{
    if (!p || !ptr || !ours(p))
        return;
    pthread_mutex_lock(&p->lock);
    unsigned char *c = ptr;
    if (c >= p->data && c < p->data + p->data_size)
        data_free(p, (size_t)(c - p->data));
    pthread_mutex_unlock(&p->lock);
}

int mp_pool_stats_get(mp_pool *p, mp_pool_stats *st)
{
    if (!p || !st)
        return MP_EINVAL;
    pthread_mutex_lock(&p->lock);
    *st = p->stats;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int mp_pool_worker_pids(mp_pool *p, pid_t *pids, size_t cap)
{
    if (!p || (cap && !pids))
        return MP_EINVAL;
    pthread_mutex_lock(&p->lock);
    int n = 0;
    for (uint32_t w = 0; w < p->nworkers; w++) {
        if (p->ws[w].proc) {
            if ((size_t)n < cap)
                pids[n] = mp_process_pid(p->ws[w].proc);
            n++;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}
