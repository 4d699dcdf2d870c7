/*
 * ranks.c - a pool whose workers are ranks: the root's side.
 *
 * DESIGN
 * Role.  With opts.comm, mp_pool_new() is collective: every rank makes a
 * private duplicate of the communicator; rank 0 gets a pool object whose
 * p->ranks is set, the other ranks serve it (rank_serve.c) and return
 * with no pool.  The pool's public calls branch here at their top, and
 * complete the same futures, iterators and results as a process pool.
 *
 * Jobs.  An apply task is a job of one unit; a map is a job of nunits
 * chunks (the process pool's geometry).  Jobs wait in a FIFO queue until
 * every unit is sent; every unfinished job is also on the `all` list.  A
 * unit's result is final once (ufinal): a job finishes when every unit
 * is, and is freed once no unit is in flight either (a send may still
 * read its data).
 *
 * The pool's thread ("mproc-rpool") does all the talking: it sends each
 * worker rank up to two units at a time (the second hides the round trip
 * behind the first), receives every result (waiting in one probe for any
 * rank), and finishes what they complete.  A submitting thread queues its
 * job and wakes it with a message to rank 0 itself on the private
 * communicator (RT_WAKE, at most one on its way), so the thread has one
 * thing to wait on.  Results of units whose job already finished
 * (terminate, cancel) are received and dropped.
 *
 * Engines.  The thread calls the communicator while the program's threads
 * may call it too.  The engines skip their lock while one thread calls
 * them (the API allows one at a time), so mp_pool_new() tells them first,
 * from the caller's thread (mp__comm_threaded): from then on they lock.
 * An engine that cannot serve several threads (MPI initialized by the
 * program below MPI_THREAD_SERIALIZED) fails mp_pool_new with
 * MP_ENOTSUP.
 *
 * Failures.  A worker rank's death under the local engine breaks the
 * engine's world: every call of every rank returns MP_EPEERDEAD from
 * then on.  The thread then fails every unfinished unit with MP_EWORKER
 * and breaks the pool (new work fails with MP_EWORKER).  Under Open MPI
 * the launcher ends the whole job instead.
 *
 * Locks.  p->lock guards everything here; the thread lets go of it around
 * every call that may wait (probe, receive).  Order: p->lock, then a
 * future's or an iterator's lock, as in the process pool.
 */
#define _GNU_SOURCE
#include "ranks.h"
#include "comm/engine.h"
#include "fnref.h"
#include "shutdown.h"

enum { RS_NEW, RS_READY, RS_GONE };

typedef struct rjob rjob;

typedef struct rslot {
    bool busy;
    bool init;        /* the initializer, not a job's unit */
    bool timed_out;   /* failed past task_timeout: its result is dropped */
    int64_t deadline; /* task_timeout: when it fails (0: never) */
    rjob *job;
    uint64_t tid, unit;
    mp_future *sf[2]; /* the sends of the header and the data */
    void *hdr;
} rslot;

typedef struct rrank {
    int state;
    bool stop_sent;
    rslot slot[2];
} rrank;

struct rjob {
    rjob *next;          /* the queue */
    rjob *aprev, *anext; /* every unfinished job */
    int kind;            /* RK_APPLY, RK_MAP, RK_RANGE */
    mp_future *fut;      /* NULL for an iterator's */
    struct mp_imap *it;  /* the iterator, while it is there */
    mp__fnref ref;
    uint32_t path_len;
    unsigned char *data; /* apply: the argument; map: the inputs */
    size_t data_len;
    unsigned char *ctx;
    size_t ctx_len;
    uint64_t n, chunk, nunits, in_size, out_size;
    uint64_t next_unit;  /* the next one to send */
    uint64_t units_left; /* not final */
    unsigned inflight;   /* units sent and not answered */
    uint8_t *ufinal;
    unsigned char *out;
    bool own_out; /* out is the job's to free (its iterator left) */
    int *errors;
    bool queued, done;
    bool has_fail;
    failure first;
    char *first_msg;
    /* progress reports, as a process pool's, a chunk at a time */
    mp_progress_fn progress;
    void *progress_ctx;
    bool bar;
    int64_t started_ns, progress_ns;
    uint64_t items_done;
};

struct mp__rpool {
    mp_comm *dc;
    int size, nranks;
    rrank *rk; /* by rank; rk[0] is the root's and unused */
    rjob *qhead, **qtail;
    rjob *all;
    pthread_t thr;
    bool thr_started;
    bool term_req, quit, ended, stopping, started;
    bool one_each; /* opts.task_timeout: one task in flight per rank */
    _Atomic int wake_pending;
    uint64_t next_tid;
    unsigned rr;
    double wait_s; /* the next wait's limit: RP_WAIT, or the next deadline */
    mp__fnref init_ref;
    bool has_init;
    void *initarg;
    size_t initarg_len;
    unsigned char *rbuf, *scratch;
    size_t rbuf_cap, scratch_cap;
};

static const unsigned char wake_byte = 1;

/* ---- small helpers ------------------------------------------------------------ */

/* Wakes the pool's thread: a message to rank 0 on the private
 * communicator, unless one is on its way.  No lock needed. */
static void rp_wake(struct mp__rpool *rp)
{
    if (atomic_exchange(&rp->wake_pending, 1))
        return;
    mp_future *f = NULL;
    if (mp_comm_isend(rp->dc, &wake_byte, 1, 0, RT_WAKE, &f) == 0)
        mp_future_free(f); /* the byte is static: no need to wait */
    else
        atomic_store(&rp->wake_pending, 0);
}

static void wake_joiners(mp_pool *p)
{
    for (waitword *w = p->joiners; w; w = w->next)
        mp__waiter_wake(w->word);
}

static void job_free(rjob *j)
{
    free(j->data);
    free(j->ctx);
    free(j->ufinal);
    free(j->first_msg);
    if (j->own_out)
        free(j->out);
    free(j);
}

static void all_remove(struct mp__rpool *rp, rjob *j)
{
    if (j->aprev)
        j->aprev->anext = j->anext;
    else if (rp->all == j)
        rp->all = j->anext;
    if (j->anext)
        j->anext->aprev = j->aprev;
    j->aprev = j->anext = NULL;
}

static void queue_remove(struct mp__rpool *rp, rjob *j)
{
    if (!j->queued)
        return;
    rjob **pp = &rp->qhead;
    while (*pp && *pp != j)
        pp = &(*pp)->next;
    if (*pp)
        *pp = j->next;
    rp->qtail = &rp->qhead;
    while (*rp->qtail)
        rp->qtail = &(*rp->qtail)->next;
    j->next = NULL;
    j->queued = false;
}

/* ---- finishing jobs ------------------------------------------------------------ */

/* Records that item `first` .. first+count-1 of map job j failed. */
static void job_item_failed(mp_pool *p, rjob *j, uint64_t first, uint64_t count, int err,
                            int task_error, const char *msg)
{
    (void)p;
    if (j->errors)
        for (uint64_t i = first; i < first + count; i++)
            j->errors[i] = err;
    failure f = {first, count, err, task_error, 0};
    if (j->it)
        mp__pool_imap_add_failure(j->it, &f);
    if (!j->has_fail || first < j->first.first) {
        j->has_fail = true;
        j->first = f;
        free(j->first_msg);
        j->first_msg = msg ? strdup(msg) : NULL;
    }
}

/* Job j is over: tells its future or iterator, leaves the lists; freed
 * now or when its last unit in flight comes back.  For an apply job,
 * status, result (taken), len, task_error and report (taken) are its
 * outcome. */
static void job_finish(mp_pool *p, rjob *j, int status, void *res, size_t len, int task_error,
                       char *report)
{
    struct mp__rpool *rp = p->ranks;
    if (j->kind != RK_APPLY) {
        free(res);
        free(report);
        res = NULL;
        len = 0;
        status = j->has_fail ? j->first.err : 0;
        task_error = j->has_fail ? j->first.task_error : 0;
        report = j->has_fail && j->first_msg ? strdup(j->first_msg) : NULL;
    }
    if (j->fut) {
        mp__future_set_token(j->fut, 0);
        long long idx = j->kind != RK_APPLY && j->has_fail ? (long long)j->first.first : -1;
        mp__future_finish(j->fut, status, res, len, task_error, 0, report, idx);
        j->fut = NULL;
    } else {
        free(res);
        free(report);
    }
    if (j->it)
        mp__pool_imap_job_done(p, j->it);
    j->done = true;
    queue_remove(rp, j);
    all_remove(rp, j);
    p->nactive--;
    if (j->inflight == 0)
        job_free(j);
}

static uint64_t unit_count(const rjob *j, uint64_t u)
{
    uint64_t first = u * j->chunk;
    return first + j->chunk <= j->n ? j->chunk : j->n - first;
}

/* Reports map job j's progress when it is due (at most every
 * progress_interval, and at the end). */
static void progress_due(mp_pool *p, rjob *j)
{
    if (!j->progress && !j->bar)
        return;
    int64_t now = mp__now_ns();
    bool final = j->units_left == 0;
    if (!final && now - j->progress_ns < mp__seconds_ns(p->opts.progress_interval))
        return;
    j->progress_ns = now;
    mp__pool_progress_post(p, j->progress, j->progress_ctx, j->bar, (size_t)j->items_done,
                           (size_t)j->n, (double)(now - j->started_ns) / 1e9, final);
}

/* Unit u of map job j is final. */
static void unit_final(mp_pool *p, rjob *j, uint64_t u)
{
    if (j->ufinal[u])
        return;
    j->ufinal[u] = 1;
    j->units_left--;
    j->items_done += unit_count(j, u);
    if (j->it)
        mp__pool_imap_unit_final(p, j->it, u);
    progress_due(p, j);
}

/* Fails every unit of j not final yet (from unit `from`: the ones not
 * sent, or 0: all of them) with err, and finishes j when none is left. */
static void job_fail(mp_pool *p, rjob *j, uint64_t from, int err, const char *report)
{
    if (j->kind == RK_APPLY) {
        if (from == 0 || j->next_unit == 0)
            job_finish(p, j, err, NULL, 0, 0, report ? strdup(report) : NULL);
        return;
    }
    for (uint64_t u = from; u < j->nunits; u++) {
        if (j->ufinal[u])
            continue;
        job_item_failed(p, j, u * j->chunk, unit_count(j, u), err, 0, report);
        unit_final(p, j, u);
    }
    if (j->next_unit < j->nunits)
        j->next_unit = j->nunits; /* nothing more to send */
    queue_remove(p->ranks, j);
    if (j->units_left == 0)
        job_finish(p, j, 0, NULL, 0, 0, NULL);
}

/* Fails every unfinished job with err. */
static void fail_all(mp_pool *p, int err, const char *report)
{
    struct mp__rpool *rp = p->ranks;
    while (rp->all)
        job_fail(p, rp->all, 0, err, report);
}

/* ---- talking to the ranks ------------------------------------------------------------ */

/* Frees a slot's sends: the rank answered, so they are over (a send is
 * finished by the engine a moment after the rank received it). */
static void slot_release(rslot *s)
{
    bool kept = false;
    for (int k = 0; k < 2; k++) {
        mp_future *f = s->sf[k];
        if (!f)
            continue;
        if (!mp_future_done(f) && mp_future_cancel(f) != 0)
            (void)mp_future_wait(f, 10.0);
        if (mp_future_done(f)) {
            mp_future_free(f);
        } else {
            /* The engine may still read the buffers: they are kept. */
            mp_log(MP_LOG_ERROR, "rank pool: a send never finished; its buffers are kept");
            kept = true;
        }
    }
    rjob *j = s->job;
    if (!kept) {
        free(s->hdr);
        if (j && --j->inflight == 0 && j->done)
            job_free(j);
    }
    *s = (rslot){0};
}

/* Sends a task header (path and ctx after it) and its data to rank r in
 * slot s.  Returns 0 or the engine's error. */
static int send_task(struct mp__rpool *rp, int r, rslot *s, const rp_task *t, const char *path,
                     const void *ctx, const void *data)
{
    size_t len = sizeof *t + t->path_len + t->ctx_len;
    unsigned char *h = malloc(len);
    if (!h)
        return MP_ENOMEM;
    memcpy(h, t, sizeof *t);
    if (t->path_len)
        memcpy(h + sizeof *t, path, t->path_len);
    if (t->ctx_len)
        memcpy(h + sizeof *t + t->path_len, ctx, t->ctx_len);
    s->hdr = h;
    s->busy = true;
    s->tid = t->tid;
    int rc = mp_comm_isend(rp->dc, h, len, r, RT_TASK, &s->sf[0]);
    if (rc == 0 && t->data_len)
        rc = mp_comm_isend(rp->dc, data, (size_t)t->data_len, r, RT_TDATA, &s->sf[1]);
    return rc;
}

/* Sends job j's next unit to rank r. */
static int send_unit(mp_pool *p, int r, rslot *s, rjob *j)
{
    struct mp__rpool *rp = p->ranks;
    uint64_t u = j->next_unit++;
    rp_task t = {RP_MAGIC, (uint32_t)j->kind, ++rp->next_tid, 0, 1, 0, 0, 0, 0, 0, 0, 1};
    t.fn_off = j->ref.offset;
    t.path_len = j->path_len;
    const void *data = j->data;
    if (j->kind == RK_APPLY) {
        t.data_len = j->data_len;
    } else {
        t.first = u * j->chunk;
        t.count = unit_count(j, u);
        t.in_size = j->in_size;
        t.out_size = j->out_size;
        t.ctx_len = j->ctx_len;
        t.data_len = t.count * j->in_size;
        data = j->data + t.first * j->in_size;
    }
    s->job = j;
    s->unit = u;
    if (p->opts.task_timeout > 0)
        s->deadline = mp__time_after(mp__now_ns(), mp__seconds_ns(p->opts.task_timeout));
    j->inflight++;
    if (j->next_unit == j->nunits)
        queue_remove(rp, j);
    return send_task(rp, r, s, &t, j->ref.path, j->ctx, data);
}

/* A free slot of rank r when it may take a unit and has `busy` in flight. */
static rslot *free_slot(struct mp__rpool *rp, int r, int busy)
{
    rrank *k = &rp->rk[r];
    if (k->state != RS_READY || k->stop_sent)
        return NULL;
    int n = k->slot[0].busy + k->slot[1].busy;
    /* With a time limit, one task at a time: a second would wait behind a
     * task that may never end. */
    if (n != busy || (rp->one_each && n > 0))
        return NULL;
    return k->slot[0].busy ? &k->slot[1] : &k->slot[0];
}

/* Hands queued units to ranks: first to idle ones, then a second to
 * each.  Returns 0 or the engine's error. */
static int dispatch(mp_pool *p)
{
    struct mp__rpool *rp = p->ranks;
    if (rp->stopping || p->broken)
        return 0;
    for (int busy = 0; busy < 2; busy++) {
        for (int k = 0; k < rp->nranks && rp->qhead; k++) {
            int r = 1 + (int)((rp->rr + (unsigned)k) % (unsigned)rp->nranks);
            rslot *s = free_slot(rp, r, busy);
            if (!s)
                continue;
            int rc = send_unit(p, r, s, rp->qhead);
            if (rc < 0)
                return rc;
        }
    }
    rp->rr++;
    return 0;
}

static int send_stop(struct mp__rpool *rp, int r)
{
    rp->rk[r].stop_sent = true;
    mp_future *f = NULL;
    int rc = mp_comm_isend(rp->dc, NULL, 0, r, RT_STOP, &f);
    if (rc == 0)
        mp_future_free(f); /* no bytes to keep */
    return rc;
}

/* Tells every rank still serving to stop. */
static int stop_all(struct mp__rpool *rp)
{
    rp->stopping = true;
    for (int r = 1; r < rp->size; r++) {
        if (rp->rk[r].state != RS_GONE && !rp->rk[r].stop_sent) {
            int rc = send_stop(rp, r);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Sends the initializer to the ranks that serve, stop to the others. */
static int start_ranks(mp_pool *p)
{
    struct mp__rpool *rp = p->ranks;
    rp->started = true;
    for (int r = 1; r < rp->size; r++) {
        int rc;
        if (r > rp->nranks) {
            rc = send_stop(rp, r);
        } else {
            rslot *s = &rp->rk[r].slot[0];
            rp_task t = {RP_MAGIC, RK_INIT, ++rp->next_tid,  0, 0, 0,
                         0,        0,       rp->initarg_len, 0, 0, 0};
            t.has_fn = rp->has_init;
            if (rp->has_init) {
                t.fn_off = rp->init_ref.offset;
                t.path_len = (uint32_t)strlen(rp->init_ref.path);
            }
            s->init = true;
            rc = send_task(rp, r, s, &t, rp->init_ref.path, NULL, rp->initarg);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The world is lost (a rank died under the local engine, or the engine
 * failed): nothing can be sent or received any more. */
static void world_lost(mp_pool *p, int err)
{
    struct mp__rpool *rp = p->ranks;
    char *rep = mp__pool_printf("a worker rank is gone: the communicator failed with %s (%s); "
                                "every unfinished task fails",
                                mp_err_name(err), mp_strerror(err));
    if (!p->broken) {
        p->broken = MP_EWORKER;
        free(p->broken_report);
        p->broken_report = rep ? strdup(rep) : NULL;
    }
    mp_log(MP_LOG_ERROR, "rank pool: %s", rep ? rep : "a worker rank is gone");
    for (int r = 1; r < rp->size; r++) {
        for (int k = 0; k < 2; k++) {
            if (rp->rk[r].slot[k].busy && rp->rk[r].slot[k].job)
                p->stats.tasks_failed++;
        }
    }
    p->stats.workers_died++;
    fail_all(p, MP_EWORKER, rep);
    free(rep);
    for (int r = 1; r < rp->size; r++) {
        for (int k = 0; k < 2; k++)
            if (rp->rk[r].slot[k].busy)
                slot_release(&rp->rk[r].slot[k]);
        rp->rk[r].state = RS_GONE;
    }
}

/* Slot s of rank r ran past task_timeout: its task fails now; the rank
 * goes on with it (nothing stops a rank from here), gets no more work
 * until it answers, and that answer is dropped. */
static void slot_timed_out(mp_pool *p, int r, rslot *s)
{
    rjob *j = s->job;
    s->timed_out = true;
    p->stats.tasks_timed_out++;
    p->stats.tasks_failed++;
    if (!j || j->done)
        return;
    char *rep = mp__pool_printf("ran past task_timeout (%g s) on rank %d, which runs it to its end "
                                "and takes no other task meanwhile",
                                p->opts.task_timeout, r);
    if (j->kind == RK_APPLY) {
        job_finish(p, j, MP_ETIMELIMIT, NULL, 0, 0, rep);
        return;
    }
    job_item_failed(p, j, s->unit * j->chunk, unit_count(j, s->unit), MP_ETIMELIMIT, 0, rep);
    free(rep);
    unit_final(p, j, s->unit);
    if (j->units_left == 0)
        job_finish(p, j, 0, NULL, 0, 0, NULL);
}

/* Fails the tasks past their time limit; sets how long the next wait may
 * last. */
static void watchdog(mp_pool *p)
{
    struct mp__rpool *rp = p->ranks;
    rp->wait_s = RP_WAIT;
    if (!rp->one_each)
        return;
    int64_t now = mp__now_ns(), next = MP__NO_DEADLINE;
    for (int r = 1; r < rp->size; r++) {
        for (int k = 0; k < 2; k++) {
            rslot *s = &rp->rk[r].slot[k];
            if (!s->busy || s->timed_out || !s->deadline)
                continue;
            if (now >= s->deadline)
                slot_timed_out(p, r, s);
            else if (s->deadline < next)
                next = s->deadline;
        }
    }
    if (next != MP__NO_DEADLINE && (double)(next - now) / 1e9 < RP_WAIT)
        rp->wait_s = (double)(next - now) / 1e9 + 0.001;
}

/* ---- results ------------------------------------------------------------------ */

/* The slot of rank r waiting for task tid, or NULL. */
static rslot *slot_of(struct mp__rpool *rp, int r, uint64_t tid)
{
    for (int k = 0; k < 2; k++)
        if (rp->rk[r].slot[k].busy && rp->rk[r].slot[k].tid == tid)
            return &rp->rk[r].slot[k];
    return NULL;
}

/* Where a result's data goes: a chunk's outputs straight into the map's
 * array, an apply result into a fresh buffer (*owned), anything not
 * wanted any more into scratch. */
static unsigned char *data_dest(struct mp__rpool *rp, rslot *s, const rp_result *h, bool *owned)
{
    rjob *j = s->timed_out ? NULL : s->job;
    *owned = false;
    if (j && !j->done && j->kind != RK_APPLY && h->status == 0 && j->out &&
        h->data_len == unit_count(j, s->unit) * j->out_size)
        return j->out + s->unit * j->chunk * j->out_size;
    if (j && !j->done && j->kind == RK_APPLY && h->data_len < SIZE_MAX) {
        *owned = true;
        return malloc((size_t)h->data_len + 1);
    }
    if (h->data_len > rp->scratch_cap) {
        unsigned char *n = realloc(rp->scratch, (size_t)h->data_len);
        if (!n)
            return NULL;
        rp->scratch = n;
        rp->scratch_cap = (size_t)h->data_len;
    }
    return rp->scratch;
}

/* The initializer's answer from rank r. */
static void init_done(mp_pool *p, int r, const rp_result *h)
{
    struct mp__rpool *rp = p->ranks;
    if (h->status == 0) {
        rp->rk[r].state = RS_READY;
        p->stats.workers_started++;
        return;
    }
    if (!p->broken) {
        p->broken = MP_EINIT;
        free(p->broken_report);
        p->broken_report =
            h->status == MP_EINIT
                ? mp__pool_printf("the initializer failed on rank %d: it returned %lld", r,
                                  (long long)h->task_error)
                : mp__pool_printf("the initializer could not run on rank %d: %s", r,
                                  mp_strerror(h->status));
    }
    fail_all(p, MP_EINIT, p->broken_report);
    (void)stop_all(rp);
}

/* A chunk's answer: its failed items (fails, nfails) and outputs. */
static void chunk_done(mp_pool *p, rjob *j, uint64_t u, const rp_result *h, const rp_fail *fails,
                       const char *msg)
{
    uint64_t first = u * j->chunk, count = unit_count(j, u);
    if (j->errors)
        for (uint64_t i = first; i < first + count; i++)
            j->errors[i] = 0;
    if (h->status != 0) {
        job_item_failed(p, j, first, count, h->status, 0, NULL);
    } else {
        for (uint64_t k = 0; k < h->nfails; k++) {
            rp_fail f;
            memcpy(&f, fails + k, sizeof f);
            if (f.index >= count)
                continue;
            job_item_failed(p, j, first + f.index, 1, MP_ETASK, (int)f.code, k == 0 ? msg : NULL);
        }
    }
    unit_final(p, j, u);
    if (j->units_left == 0)
        job_finish(p, j, 0, NULL, 0, 0, NULL);
}

/* Settles slot s of rank r with the result h (its failures and message in
 * rest) and data.  Under p->lock. */
static void settle(mp_pool *p, int r, rslot *s, const rp_result *h, const unsigned char *rest,
                   unsigned char *data, bool owned)
{
    rjob *j = s->job;
    if (s->init) {
        init_done(p, r, h);
    } else if (j && !j->done && !s->timed_out) {
        p->stats.tasks_done++;
        if (j->kind == RK_APPLY) {
            char *report = NULL;
            if (h->status != 0 && owned && data) {
                data[h->data_len] = '\0';
                report = (char *)data;
                data = NULL;
            } else if (h->status != 0 && h->status != MP_ETASK) {
                report = mp__pool_printf("rank %d could not run the task: %s", r,
                                         mp_strerror(h->status));
            }
            int st = h->status;
            job_finish(p, j, st, owned ? data : NULL, owned && data ? (size_t)h->data_len : 0,
                       (int)h->task_error, report);
            data = NULL;
        } else {
            const char *msg = h->msg_len ? (const char *)rest + h->nfails * sizeof(rp_fail) : NULL;
            char *m = msg ? strndup(msg, (size_t)h->msg_len) : NULL;
            chunk_done(p, j, s->unit, h, (const rp_fail *)(const void *)rest, m);
            free(m);
        }
    }
    if (owned)
        free(data);
    slot_release(s);
}

/* A result header from rank r (len bytes in rp->rbuf): receives its data
 * and settles it.  Returns 0 or an error that loses the world. */
static int on_result(mp_pool *p, int r, size_t len)
{
    struct mp__rpool *rp = p->ranks;
    rp_result h;
    if (len < sizeof h)
        return MP_EPROTO;
    memcpy(&h, rp->rbuf, sizeof h);
    if (h.magic != RP_MAGIC || h.nfails > (len - sizeof h) / sizeof(rp_fail) ||
        h.msg_len != len - sizeof h - h.nfails * sizeof(rp_fail))
        return MP_EPROTO;
    pthread_mutex_lock(&p->lock);
    rslot *s = slot_of(rp, r, h.tid);
    bool owned = false;
    unsigned char *dst = s && h.data_len ? data_dest(rp, s, &h, &owned) : NULL;
    pthread_mutex_unlock(&p->lock);
    if (!s)
        return MP_EPROTO;
    if (h.data_len) {
        if (!dst)
            return MP_ENOMEM;
        mp_comm_status st;
        int rc = mp_comm_recv(rp->dc, dst, (size_t)h.data_len, r, RT_RDATA, &st, RP_WAIT);
        if (rc == 0 && st.count != h.data_len)
            rc = MP_EPROTO;
        if (rc < 0) {
            if (owned)
                free(dst);
            return rc;
        }
    }
    pthread_mutex_lock(&p->lock);
    settle(p, r, s, &h, rp->rbuf + sizeof h, dst, owned);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Waits for the next message and handles it.  No lock held.  Returns 0 or
 * an error that loses the world. */
static int receive(mp_pool *p)
{
    struct mp__rpool *rp = p->ranks;
    mp_comm_status st;
    int rc = mp_comm_probe(rp->dc, MP_ANY_SOURCE, MP_ANY_TAG, &st, rp->wait_s);
    if (rc == MP_ETIMEDOUT)
        return 0; /* a time limit to check, or nothing for an hour */
    if (rc < 0)
        return rc;
    if (st.count > RP_HDR_MAX)
        return MP_EPROTO;
    if (st.count > rp->rbuf_cap || !rp->rbuf) {
        size_t cap = st.count > 256 ? st.count : 256;
        unsigned char *n = realloc(rp->rbuf, cap);
        if (!n)
            return MP_ENOMEM;
        rp->rbuf = n;
        rp->rbuf_cap = cap;
    }
    int src = st.source, tag = st.tag;
    rc = mp_comm_recv(rp->dc, rp->rbuf, rp->rbuf_cap, src, tag, &st, RP_WAIT);
    if (rc < 0)
        return rc;
    if (tag == RT_WAKE && src == 0) {
        atomic_store(&rp->wake_pending, 0);
        return 0;
    }
    if (src < 1 || src >= rp->size)
        return MP_EPROTO;
    if (tag == RT_BYE) {
        pthread_mutex_lock(&p->lock);
        /* The rank received every task before its stop, and dropped those
         * it had not run: their sends are over. */
        for (int k = 0; k < 2; k++)
            if (rp->rk[src].slot[k].busy)
                slot_release(&rp->rk[src].slot[k]);
        rp->rk[src].state = RS_GONE;
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    if (tag == RT_RESULT)
        return on_result(p, src, st.count);
    return MP_EPROTO;
}

/* ---- the pool's thread ---------------------------------------------------------- */

static bool every_rank_gone(const struct mp__rpool *rp)
{
    for (int r = 1; r < rp->size; r++)
        if (rp->rk[r].state != RS_GONE)
            return false;
    return true;
}

/* One round under p->lock: orders, sends, the end.  Returns an error that
 * loses the world, or 0. */
static int round_locked(mp_pool *p)
{
    struct mp__rpool *rp = p->ranks;
    int rc = 0;
    if (!rp->started && (rc = start_ranks(p)) < 0)
        return rc;
    if (rp->term_req && !rp->stopping) {
        fail_all(p, MP_ECANCELED, NULL);
        if ((rc = stop_all(rp)) < 0)
            return rc;
    }
    if ((rc = dispatch(p)) < 0)
        return rc;
    watchdog(p); /* after dispatch: the units just sent have deadlines */
    if (!rp->stopping && (p->state != ST_OPEN || p->broken) && !rp->all)
        if ((rc = stop_all(rp)) < 0)
            return rc;
    if (!rp->ended && every_rank_gone(rp)) {
        rp->ended = true;
        p->workers_gone = true;
        wake_joiners(p);
        pthread_cond_broadcast(&p->cond);
    }
    return 0;
}

static void *rp_main(void *arg)
{
    mp_pool *p = arg;
    struct mp__rpool *rp = p->ranks;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        int rc = rp->ended ? 0 : round_locked(p);
        if (rc < 0) {
            world_lost(p, rc);
            continue;
        }
        if (rp->ended) {
            if (rp->quit)
                break;
            pthread_cond_wait(&p->cond, &p->lock);
            continue;
        }
        pthread_mutex_unlock(&p->lock);
        rc = receive(p);
        pthread_mutex_lock(&p->lock);
        if (rc < 0)
            world_lost(p, rc);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- submission ------------------------------------------------------------------ */

static int rp_future_cancel(void *owner, mp_future *f)
{
    mp_pool *p = owner;
    pthread_mutex_lock(&p->lock);
    rjob *j = (rjob *)(uintptr_t)mp__future_token(f);
    int rc = MP_EBUSY;
    if (j && !j->done && j->next_unit == 0) {
        job_fail(p, j, 0, MP_ECANCELED, NULL);
        rc = 0;
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static bool rp_future_running(void *owner, const mp_future *f)
{
    mp_pool *p = owner;
    pthread_mutex_lock(&p->lock);
    rjob *j = (rjob *)(uintptr_t)mp__future_token(f);
    bool r = j && !j->done && j->next_unit > 0;
    pthread_mutex_unlock(&p->lock);
    return r;
}

const mp__future_ops mp__rpool_future_ops = {mp__pool_hold,         mp__pool_release,
                                             rp_future_cancel,      rp_future_running,
                                             mp__pool_op_interrupt, mp__pool_op_dispatch};

/* Names fn for the worker ranks: its module and offset. */
static int job_ref(rjob *j, const void *fn, const char *call)
{
    int rc = mp__fnref_from_ptr(fn, &j->ref);
    if (rc < 0)
        return mp__fail(rc,
                        "%s: the function lies in no module's code (a pointer into data, or "
                        "generated code): worker ranks cannot find it",
                        call);
    size_t len = strlen(j->ref.path);
    if (len >= RP_PATH_MAX)
        return mp__fail(MP_ENAMETOOLONG, "%s: the function's module path is too long", call);
    j->path_len = (uint32_t)len;
    return 0;
}

/* Queues job j (under p->lock).  Returns 0 or the pool's refusal. */
static int job_queue(mp_pool *p, rjob *j)
{
    struct mp__rpool *rp = p->ranks;
    int rc = mp__pool_refusal(p);
    if (rc < 0)
        return rc;
    j->queued = true;
    *rp->qtail = j;
    rp->qtail = &j->next;
    j->anext = rp->all;
    if (rp->all)
        rp->all->aprev = j;
    rp->all = j;
    p->nactive++;
    return 0;
}

void mp__rpool_apply_submit(mp_pool *p, mp_future *f, mp_task_fn fn, size_t len,
                            mp__pool_arg_fill fill, const void *arg)
{
    rjob *j = calloc(1, sizeof *j);
    int rc = j ? 0 : MP_ENOMEM;
    if (rc == 0)
        rc = job_ref(j, (const void *)fn, "mp_pool_apply_async");
    if (rc == 0 && len) {
        j->data = malloc(len);
        rc = j->data ? 0 : MP_ENOMEM;
        if (rc == 0)
            fill(j->data, len, arg);
    }
    if (rc == 0) {
        j->kind = RK_APPLY;
        j->data_len = len;
        j->n = j->chunk = j->nunits = j->units_left = 1;
        j->fut = f;
        pthread_mutex_lock(&p->lock);
        rc = job_queue(p, j);
        if (rc == 0)
            mp__future_set_token(f, (uint64_t)(uintptr_t)j);
        pthread_mutex_unlock(&p->lock);
    }
    if (rc < 0) {
        if (j)
            job_free(j);
        pthread_mutex_lock(&p->lock);
        const char *rep = p->broken ? p->broken_report : NULL;
        mp__future_finish(f, rc, NULL, 0, 0, 0, rep ? strdup(rep) : NULL, -1);
        pthread_mutex_unlock(&p->lock);
        return;
    }
    rp_wake(p->ranks);
}

/* A map job's copies of the inputs and ctx, and its records. */
static int map_job_fill(mp_pool *p, rjob *j, const mp_map_spec *s)
{
    mp__pool_map_geometry(p, s->n, s->chunksize, &j->chunk, &j->nunits);
    j->kind = s->range_fn ? RK_RANGE : RK_MAP;
    j->n = s->n;
    j->in_size = s->in_size;
    j->out_size = s->out_size;
    j->units_left = j->nunits;
    j->errors = s->errors;
    j->progress = s->progress ? s->progress : p->opts.progress;
    j->progress_ctx = s->progress ? s->progress_ctx : p->opts.progress_ctx;
    j->bar = p->opts.progress_bar;
    j->started_ns = j->progress_ns = mp__now_ns();
    if (s->in_size && s->n > SIZE_MAX / s->in_size)
        return MP_EINVAL;
    if (s->out_size && s->n > SIZE_MAX / s->out_size)
        return MP_EINVAL;
    j->data_len = s->n * s->in_size;
    j->data = malloc(j->data_len ? j->data_len : 1);
    j->ufinal = calloc((size_t)j->nunits, 1);
    if (s->ctx_size) {
        j->ctx = malloc(s->ctx_size);
        if (j->ctx)
            memcpy(j->ctx, s->ctx, s->ctx_size);
        j->ctx_len = s->ctx_size;
    }
    if (!j->data || !j->ufinal || (s->ctx_size && !j->ctx))
        return MP_ENOMEM;
    if (j->data_len)
        memcpy(j->data, s->in, j->data_len);
    return 0;
}

int mp__rpool_map_submit(mp_pool *p, const mp_map_spec *s, mp_future *f, struct mp_imap *it)
{
    rjob *j = calloc(1, sizeof *j);
    if (!j)
        return MP_ENOMEM;
    const void *fn = s->fn ? (const void *)s->fn : (const void *)s->range_fn;
    int rc = job_ref(j, fn, "mp_pool_map");
    if (rc == 0)
        rc = map_job_fill(p, j, s);
    if (rc == 0 && it) {
        size_t outb = s->n * s->out_size;
        j->out = malloc(outb ? outb : 1);
        rc = j->out ? 0 : MP_ENOMEM;
        it->outs = j->out;
        it->chunk = j->chunk;
        it->nunits = j->nunits;
        j->it = it;
    } else if (rc == 0) {
        j->out = s->out;
        j->fut = f;
    }
    if (rc == 0) {
        pthread_mutex_lock(&p->lock);
        rc = job_queue(p, j);
        if (rc == 0 && f)
            mp__future_set_token(f, (uint64_t)(uintptr_t)j);
        pthread_mutex_unlock(&p->lock);
    }
    if (rc < 0) {
        if (it) {
            it->outs = NULL;
            j->own_out = true;
        }
        job_free(j);
        return rc;
    }
    rp_wake(p->ranks);
    return 0;
}

void mp__rpool_imap_detach(mp_pool *p, struct mp_imap *it)
{
    pthread_mutex_lock(&p->lock);
    bool found = false;
    for (rjob *j = p->ranks->all; j; j = j->anext) {
        if (j->it == it) {
            /* The map runs on: its outputs go to the job's buffer, freed
             * with the job. */
            j->it = NULL;
            j->own_out = true;
            found = true;
        }
    }
    if (!found)
        free((void *)it->outs);
    it->outs = NULL;
    pthread_mutex_unlock(&p->lock);
}

/* ---- close, terminate, free ------------------------------------------------------- */

int mp__rpool_close(mp_pool *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->state == ST_OPEN)
        p->state = ST_CLOSED;
    pthread_mutex_unlock(&p->lock);
    rp_wake(p->ranks);
    return 0;
}

/* Asks for a terminate without waiting for it. */
static void terminate_ask(mp_pool *p)
{
    struct mp__rpool *rp = p->ranks;
    pthread_mutex_lock(&p->lock);
    bool ask = !rp->ended && !rp->term_req;
    rp->term_req = true;
    pthread_mutex_unlock(&p->lock);
    if (ask)
        rp_wake(rp);
}

int mp__rpool_terminate(mp_pool *p)
{
    struct mp__rpool *rp = p->ranks;
    terminate_ask(p);
    pthread_mutex_lock(&p->lock);
    while (!rp->ended)
        pthread_cond_wait(&p->cond, &p->lock);
    if (p->state != ST_TERMINATED)
        p->state = ST_TERMINATED;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int mp__rpool_shutdown(mp_pool *p, bool cancel_pending, double timeout)
{
    (void)mp__rpool_close(p);
    if (cancel_pending) {
        pthread_mutex_lock(&p->lock);
        /* What no rank has started: whole jobs not begun, and the units of
         * begun maps not sent yet. */
        for (rjob *j = p->ranks->qhead, *next; j; j = next) {
            next = j->next;
            job_fail(p, j, j->next_unit, MP_ECANCELED, NULL);
        }
        pthread_mutex_unlock(&p->lock);
        rp_wake(p->ranks);
    }
    return mp_pool_join(p, timeout);
}

static void closer_close(void *obj)
{
    (void)mp_pool_close(obj);
}

static void closer_terminate(void *obj)
{
    terminate_ask(obj);
}

static const mp__closer_ops rp_closer_ops = {"pool", closer_close, closer_terminate, NULL};

void mp__rpool_free(mp_pool *p)
{
    struct mp__rpool *rp = p->ranks;
    mp__shutdown_unregister(p->closer);
    p->closer = NULL;
    mp__pool_live_remove(p);
    if (rp->thr_started) {
        (void)mp__rpool_terminate(p);
        pthread_mutex_lock(&p->lock);
        rp->quit = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        pthread_join(rp->thr, NULL);
        rp->thr_started = false;
    }
    mp__pool_callbacks_end(p);
    mp__pool_release(p);
}

void mp__rpool_destroy(struct mp__rpool *rp)
{
    if (!rp)
        return;
    mp_comm_free(rp->dc);
    free(rp->rk);
    free(rp->initarg);
    free(rp->rbuf);
    free(rp->scratch);
    free(rp);
}

/* ---- creation ------------------------------------------------------------------------ */

/* What the options ask that ranks cannot do, or NULL. */
static const char *opts_refused(const mp_pool_opts *o, int size)
{
    if (size < 2)
        return "opts.comm has a single rank: no rank is left to serve as a worker (start the "
               "program with mprun -n N or mpiexec -n N, N >= 2)";
    if (o->processes < 0 || o->processes > size - 1)
        return "opts.processes is more than the ranks of opts.comm but one";
    if (o->start_method != MP_START_DEFAULT && o->start_method != MP_START_AUTO)
        return "opts.start_method: worker ranks are started by their launcher";
    if (o->maxtasksperchild)
        return "opts.maxtasksperchild: a worker rank cannot be replaced";
    if (o->initarg_size > MP__MAX_ARG || (o->initarg_size && !o->initarg))
        return "opts.initarg_size over 16 MiB, or without opts.initarg";
    return NULL;
}

static int root_setup(mp_pool *p, const mp_pool_opts *o, const mp__fnref *init_ref)
{
    struct mp__rpool *rp = p->ranks;
    rp->rk = calloc((size_t)rp->size, sizeof *rp->rk);
    if (!rp->rk)
        return MP_ENOMEM;
    rp->has_init = o->initializer != NULL;
    if (rp->has_init)
        rp->init_ref = *init_ref;
    if (o->initarg_size) {
        rp->initarg = malloc(o->initarg_size);
        if (!rp->initarg)
            return MP_ENOMEM;
        memcpy(rp->initarg, o->initarg, o->initarg_size);
        rp->initarg_len = o->initarg_size;
    }
    rp->qtail = &rp->qhead;
    /* The engines skip their lock while one thread calls them: tell them
     * now, from the caller's thread, before the pool's own thread calls
     * too. */
    int rc = mp__comm_threaded(rp->dc);
    if (rc < 0)
        return rc;
    rc = mp__pool_thread_start(&rp->thr, "mproc-rpool", rp_main, p);
    if (rc < 0)
        return rc;
    rp->thr_started = true;
    return mp__shutdown_register(&rp_closer_ops, p, &p->closer);
}

/* The root's pool over dc. */
static int root_new(const mp_pool_opts *o, mp_comm *dc, int size, const mp__fnref *init_ref,
                    mp_pool **out)
{
    mp_pool *p = mp__pool_alloc(o);
    struct mp__rpool *rp = p ? calloc(1, sizeof *rp) : NULL;
    if (!rp) {
        free(p);
        mp_comm_free(dc);
        return MP_ENOMEM;
    }
    p->ranks = rp;
    rp->dc = dc;
    rp->size = size;
    rp->nranks = o->processes ? o->processes : size - 1;
    rp->one_each = o->task_timeout > 0;
    rp->wait_s = RP_WAIT;
    p->nworkers = (uint32_t)rp->nranks;
    int rc = root_setup(p, o, init_ref);
    if (rc < 0) {
        mp_log(MP_LOG_ERROR, "mp_pool_new: cannot start a pool of ranks: %s", mp_strerror(rc));
        if (rp->thr_started) {
            mp__rpool_free(p);
        } else {
            /* No thread ever spoke to the ranks: release them here. */
            for (int r = 1; r < size; r++)
                (void)mp_comm_send(dc, NULL, 0, r, RT_STOP, 5.0);
            mp__pool_release(p);
        }
        return rc;
    }
    mp__pool_live_add(p);
    mp__pool_register_exit();
    *out = p;
    return 0;
}

int mp__rpool_new(const mp_pool_opts *o, mp_pool **out)
{
    int size = mp_comm_size(o->comm);
    int me = mp_comm_rank(o->comm);
    if (size < 0 || me < 0)
        return mp__fail(MP_EINVAL, "mp_pool_new: opts.comm is not a valid communicator");
    const char *bad = opts_refused(o, size);
    if (bad)
        return mp__fail(MP_EINVAL, "mp_pool_new: %s", bad);
    mp__fnref init_ref;
    memset(&init_ref, 0, sizeof init_ref);
    if (o->initializer && mp__fnref_from_ptr((const void *)o->initializer, &init_ref) < 0)
        return mp__fail(MP_EINVAL, "mp_pool_new: opts.initializer lies in no module's code: "
                                   "worker ranks cannot find it");
    /* Checked alike on every rank (they pass the same options), so that
     * either every rank goes on to the collective duplicate or none. */
    mp_comm *dc = NULL;
    int rc = mp_comm_dup(o->comm, MP_FOREVER, &dc);
    if (rc < 0)
        return rc;
    if (me != 0) {
        rc = mp__rpool_serve(dc, o->initarg);
        mp_comm_free(dc);
        return rc < 0
                   ? mp__fail(rc, "mp_pool_new: rank %d stopped serving: %s", me, mp_strerror(rc))
                   : 0;
    }
    return root_new(o, dc, size, &init_ref, out);
}
