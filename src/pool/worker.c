/*
 * worker.c - a pool's worker process: its entry point and its loop, which
 * finds work in shared memory, claims it and reports completions,
 * following the protocol in records.h.
 *
 * DESIGN
 * The worker keeps no state that matters outside its slot: whatever it
 * holds is named there (intent) before it is taken, and whatever it
 * finished is in its unit's state and its completion ring.  So it can die
 * at any instruction - inside the task, or inside these files - and the
 * supervisor still knows what it held.
 *
 * Its loop: announce the job entry it looks at (hazard), check the entry
 * still holds the job published at that position, write its intent, claim
 * a unit by CAS, run it (worker_run.c), mark the unit DONE, push a
 * completion record, and wake the supervisor only if it sleeps.  When
 * there is nothing to do it spins a little (work often comes in bursts),
 * then sleeps on a futex.
 *
 * Threads.  A worker process is single-threaded (tasks may start threads
 * of their own; the pool's code runs in the main one).
 *
 * Signals.  Workers start from the supervisor thread, which blocks every
 * signal; a worker unblocks them all at once (a blocked SIGSEGV would kill
 * it without a crash report) and ignores SIGINT, which belongs to the
 * parent.  SIGTERM keeps its default action, so terminate works.
 */
#define _GNU_SOURCE
#include "worker.h"

#include "hooks.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

int mp__pool_fd_check(int fd, dev_t dev, ino_t ino)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_dev != dev || st.st_ino != ino)
        return MP_EBADF;
    return 0;
}

_Noreturn void mp__pool_worker_cut_off(wctx *c, const char *what, int err)
{
    atomic_store(&c->slot->state, MP__W_CUT_OFF);
    mp_log(MP_LOG_WARNING, "pool worker: %s is gone (%s): a task closed it; the worker leaves",
           what, mp_err_name(err));
    /* What the task printed is its own: flushed, as at any exit. */
    fflush(NULL);
    _exit(MP__WORKER_CUT_OFF_STATUS);
}

/* Wakes the supervisor if it sleeps or is about to (records.h, Sleeping):
 * the eventfd it polls.  A write that fails means a task closed it; the
 * worker can then never wake the supervisor again, and leaves - its exit
 * wakes it instead (the record written before this is collected then). */
static void kick(wctx *c)
{
    mp__pool_hdr *h = c->hdr;
    if (!atomic_load(&h->sup_sleeping) || !atomic_exchange(&h->sup_sleeping, 0))
        return;
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(c->ev_fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is full, so readable already. */
    if (n < 0 && errno != EAGAIN)
        mp__pool_worker_cut_off(c, "the supervisor's eventfd", -errno);
}

int mp__pool_map_more(wctx *c, uint64_t need)
{
    size_t size = (size_t)atomic_load(&c->hdr->data_size);
    if (need > size)
        return MP_EPROTO;
    /* Rare (the region grew): check the descriptor still names the data
     * file before mapping whatever it names now. */
    int rc = mp__pool_fd_check(c->data_fd, c->data_dev, c->data_ino);
    if (rc < 0)
        return rc;
    rc = mp__vm_map_fixed(c->data_fd, c->data_mapped, size - c->data_mapped,
                          c->data + c->data_mapped);
    if (rc < 0)
        return rc;
    c->data_mapped = size;
    return 0;
}

/* Waits, for at most a short while, until the supervisor has freed ring or
 * result space - done() says when - waking it first.  Callers loop. */
void mp__pool_wait_supervisor(wctx *c, bool (*done)(wctx *))
{
    mp__wslot *s = c->slot;
    /* waiting, then the wake count, then a last look: the supervisor frees
     * space, then reads `waiting`, so either we see the space here or it
     * sees us waiting and bumps `wake` past `seen`. */
    atomic_store(&s->waiting, 1);
    uint32_t seen = atomic_load(&s->wake);
    if (!done(c)) {
        kick(c);
        /* Bounded: should the supervisor be gone, the parent is gone too
         * and the death signal ends this process; the bound (a re-check
         * slice, mp__pool_recheck) only keeps a lost wake-up - a task that
         * wrote over `wake` or `waiting` - from ever being more than a
         * delay. */
        (void)mp__futex_wait(&s->wake, seen,
                             mp__pool_recheck() ? mp__deadline(0.1) : MP__NO_DEADLINE);
    }
    atomic_store(&s->waiting, 0);
}

static bool ring_has_room(wctx *c)
{
    return c->done_head - atomic_load(&c->slot->done_tail) < MP__POOL_DONE;
}

/* Appends a completion record and wakes the supervisor if it sleeps. */
/* Appends a record (see mp__pool_push_rec) with a message at msg_off. */
static void push_rec_msg(wctx *c, uint32_t kind, uint32_t entry, uint64_t unit, uint64_t item,
                         int64_t code, uint64_t msg_off, uint64_t msg_len)
{
    mp__wslot *s = c->slot;
    while (!ring_has_room(c))
        mp__pool_wait_supervisor(c, ring_has_room);
    mp__rec *r = &s->ring[c->done_head & (MP__POOL_DONE - 1)];
    r->entry = entry;
    r->kind = kind;
    r->unit = unit;
    r->item = item;
    r->code = code;
    r->msg_off = msg_off;
    r->msg_len = msg_len;
    /* seq_cst: the record is published before sup_sleeping is read (the
     * supervisor stores sup_sleeping before it looks at the rings). */
    atomic_store(&s->done_head, ++c->done_head);
    kick(c);
}

void mp__pool_push_rec(wctx *c, uint32_t kind, uint32_t entry, uint64_t unit, uint64_t item,
                       int64_t code)
{
    push_rec_msg(c, kind, entry, unit, item, code, 0, 0);
}

wctx *mp__pool_worker_self;

/* The message of the item running now (mp_item_fail): which unit run and
 * item it belongs to, so that a message left by another item is never
 * taken for this one's. */
static struct {
    uint64_t claims, item;
    size_t len;
    char text[MP__POOL_MSG_MAX];
} item_msg = {UINT64_MAX, UINT64_MAX, 0, {0}};

int mp_item_fail(const char *fmt, ...)
{
    wctx *c = mp__pool_worker_self;
    if (!c || !fmt)
        return MP_ETASK;
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started just above */
    int n = vsnprintf(item_msg.text, sizeof item_msg.text, fmt, ap);
    va_end(ap);
    item_msg.len = n < 0                              ? 0
                   : (size_t)n < sizeof item_msg.text ? (size_t)n
                                                      : sizeof item_msg.text - 1;
    item_msg.claims = c->claims;
    item_msg.item = atomic_load_explicit(&c->slot->item, memory_order_relaxed);
    return MP_ETASK;
}

size_t mp__pool_item_msg_take(wctx *c, const char **text)
{
    size_t len = item_msg.claims == c->claims ? item_msg.len : 0;
    item_msg.claims = UINT64_MAX;
    *text = item_msg.text;
    return len;
}

void mp__pool_push_item_error(wctx *c, uint32_t e, uint64_t u, uint64_t item, int64_t code)
{
    uint64_t off = 0, len = 0;
    if (item_msg.claims == c->claims && item_msg.item == item && item_msg.len &&
        mp__pool_ring_put(c, item_msg.text, item_msg.len, &off) == 0)
        len = item_msg.len;
    item_msg.claims = UINT64_MAX;
    push_rec_msg(c, MP__REC_ITEM_ERROR, e, u, item, code, off, len);
}

void *mp__pool_resolve_fn(wctx *c, uint32_t id)
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
             * unit RUNNING by this worker sees the intent too.  `item`
             * says how far the task got (MP__APPLY_*): not begun. */
            atomic_store_explicit(&s->intent_unit, 0, memory_order_relaxed);
            atomic_store_explicit(&s->item, MP__APPLY_UNSTARTED, memory_order_relaxed);
            /* Release: whoever reads this intent sees the unit before
             * finished (the supervisor's audit, check.c). */
            atomic_store_explicit(&s->intent_job, e + 1, memory_order_release);
            uint32_t expect = MP__U_QUEUED;
            bool ok = atomic_compare_exchange_strong(&j->state, &expect, MP__U_RUNNING_BY(c->w));
            advance_head(h, head);
            if (ok) {
                mp__pool_fault_point(MP__PP_CLAIMED);
                *entry = e;
                *unit = 0;
                return 1;
            }
            continue;
        }
        if (!mp__pool_map_job_valid(j))
            return MP_EPROTO;
        uint64_t nunits = j->u.map.nunits;
        int rc = mp__pool_ensure_data(c, j->u.map.units_off + nunits * sizeof(mp__unit));
        if (rc < 0)
            return rc;
        mp__unit *units = (mp__unit *)(c->data + j->u.map.units_off);
        uint64_t u = atomic_fetch_add(&j->next_unit, 1);
        if (u >= nunits) {
            advance_head(h, head);
            continue;
        }
        mp__pool_fault_point(MP__PP_CHUNK_FETCHED);
        /* Relaxed, as above: published by the CAS that follows. */
        atomic_store_explicit(&s->intent_unit, u, memory_order_relaxed);
        /* No item of this unit has begun: the supervisor must not take an
         * index left from an earlier unit for this one's. */
        atomic_store_explicit(&s->item, UINT64_MAX, memory_order_relaxed);
        /* Release, as above. */
        atomic_store_explicit(&s->intent_job, e + 1, memory_order_release);
        uint32_t expect = MP__U_QUEUED;
        if (atomic_compare_exchange_strong(&units[u].state, &expect, MP__U_RUNNING_BY(c->w))) {
            mp__pool_fault_point(MP__PP_CLAIMED);
            *entry = e;
            *unit = u;
            return 1;
        }
        /* Lost to another worker (a re-queued unit) or cancelled. */
    }
}

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
        if (rc == MP_EBADF)
            mp__pool_worker_cut_off(c, "the data region's descriptor", rc);
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
            if (c->res_cap > RES_KEEP_CAP && mp__pool_res_empty(c))
                (void)mp__pool_res_resize(c, RES_MIN_CAP); /* give a huge result's memory back */
            if (c->cut_off) /* the task has not begun: it runs again elsewhere */
                mp__pool_worker_cut_off(c, "the result file's descriptor", MP_EBADF);
            mp__pool_run_apply(c, e);
            /* A task that closed the worker's descriptors may not have
             * needed one (its result fitted inline): one fstat per task
             * finds out before the next task would fail for it. */
            if (mp__pool_fd_check(c->res_fd, c->res_dev, c->res_ino) < 0)
                c->cut_off = true;
        } else if (!mp__pool_run_map(c, e, u)) {
            atomic_store(&s->state, MP__W_EXITING);
            return 0;
        }
        /* A task closed a descriptor the worker needs: the unit is done
         * (or failed for it), and the next one is better run elsewhere. */
        if (c->cut_off)
            mp__pool_worker_cut_off(c, "a descriptor of the pool's", MP_EBADF);
        atomic_store_explicit(&s->state, MP__W_READY, memory_order_relaxed);
        if (c->maxtasks && ++c->tasks >= c->maxtasks) {
            atomic_store(&s->state, MP__W_RECYCLE);
            return 0;
        }
    }
}

/* Workers start from the supervisor thread, which blocks every signal:
 * unblock them all at once (a blocked SIGSEGV would kill the worker
 * without a crash report), and leave SIGINT to the parent.  SIGINT is
 * ignored first: a Ctrl-C that reached the process group while the worker
 * was starting is pending, and would kill it the moment it is unblocked
 * (ignoring a pending signal discards it). */
static void signals_setup(void)
{
    signal(SIGINT, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
}

/* A fork of the supervisor thread: bytes another thread of the parent had
 * buffered in stdout at that instant are the parent's to print, not ours.
 */
static void stdout_forget(void)
{
    mp__stdio_discard(stdout);
}

/* A fork worker: the parent's mappings and descriptors are here already;
 * the data region as far as the parent had mapped it at the fork. */
static void attach_forked(wctx *c, const mp__wboot *b, mp_init_fn *init, void **initarg)
{
    stdout_forget();
    c->hdr = b->ctrl;
    c->data = b->data;
    c->data_mapped = (size_t)atomic_load(b->data_mapped);
    c->data_fd = b->data_fd;
    c->res_fd = b->res_fd;
    c->ev_fd = b->ev_fd;
    *init = b->init;
    *initarg = b->initarg;
}

/* A fresh image (forkserver, spawn): maps the control region from the
 * descriptors handed over, reserves the data region's address space, and
 * finds the initializer again by its reference. */
static int attach_fresh(wctx *c, const mp__wboot *b, mp_init_fn *init, void **initarg)
{
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
    c->hdr = ctrl;
    void *data = NULL;
    rc = mp__vm_reserve((size_t)b->data_reserve, &data);
    if (rc < 0)
        return rc;
    c->data = data;
    c->data_fd = fds[MP__WFD_DATA];
    c->res_fd = fds[MP__WFD_RES];
    c->ev_fd = fds[MP__WFD_EV];
    if (b->has_init) {
        void *fn = NULL;
        rc = mp__fnref_resolve(&b->init_ref, &fn);
        if (rc < 0)
            return rc;
        *init = (mp_init_fn)fn;
        *initarg = b->initarg_size ? (void *)(b + 1) : NULL;
    }
    return 0;
}

/* The first worker to start finds out whether workers may read and write
 * the parent's memory (records.h, hdr.vm). */
static void probe_vm(mp__pool_hdr *h)
{
    if (atomic_load(&h->vm) != MP__VM_UNKNOWN)
        return;
    uint64_t v = 0;
    int rc = mp__vm_read(h->vm_pid, h->vm_probe_addr, &v, sizeof v);
    uint32_t expect = MP__VM_UNKNOWN;
    (void)atomic_compare_exchange_strong(
        &h->vm, &expect, rc == 0 && v == h->vm_probe_val ? MP__VM_OK : MP__VM_DENIED);
}

/* Checks the control region and finds this worker's slot and tables;
 * notes which files the memory descriptors name (mp__pool_fd_check). */
static int attach_control(wctx *c, const mp__wboot *b)
{
    mp__pool_hdr *h = c->hdr;
    if (!mp__pool_hdr_valid(h, b->ctrl_size) || c->w >= h->nworkers)
        return MP_EPROTO;
    struct stat ds, rs;
    if (fstat(c->data_fd, &ds) != 0 || fstat(c->res_fd, &rs) != 0)
        return MP_EBADF;
    c->data_dev = ds.st_dev;
    c->data_ino = ds.st_ino;
    c->res_dev = rs.st_dev;
    c->res_ino = rs.st_ino;
    c->slot = mp__pool_slot(h, c->w);
    c->order = mp__pool_order(h);
    c->fns = mp__pool_fns(h);
    c->jobs = mp__pool_jobs(h);
    c->done_head = atomic_load(&c->slot->done_head);
    probe_vm(h);
    return 0;
}

int mp__pool_worker_main(void *arg)
{
    const mp__wboot *b = arg;
    signals_setup();
    wctx c;
    memset(&c, 0, sizeof c);
    c.w = b->slot;
    c.maxtasks = b->maxtasks;
    c.fresh = b->method != MP_START_FORK;
    mp_init_fn init = NULL;
    void *initarg = NULL;
    int rc = 0;
    if (c.fresh)
        rc = attach_fresh(&c, b, &init, &initarg);
    else
        attach_forked(&c, b, &init, &initarg);
    if (rc == 0)
        rc = attach_control(&c, b);
    if (rc < 0)
        return rc;
    if (init) {
        atomic_store(&c.slot->state, MP__W_INIT);
        rc = init(initarg);
        if (rc != 0) {
            atomic_store(&c.slot->init_error, rc);
            atomic_store(&c.slot->state, MP__W_INIT_FAILED);
            return 1;
        }
    }
    atomic_store(&c.slot->state, MP__W_READY);
    mp__pool_worker_self = &c;
    rc = serve(&c);
    mp__pool_worker_self = NULL;
    free(c.scratch);
    return rc;
}
