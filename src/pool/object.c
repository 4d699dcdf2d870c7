/*
 * object.c - the pool object: creation, close, terminate, join, shutdown,
 * free, references, shared allocations and the small getters.
 *
 * DESIGN
 * Role.  mp_pool_new() builds the shared memory (the control region laid
 * out here, the data region through region.c, one result file per worker
 * slot), the eventfd the supervisor sleeps on, and starts the supervisor
 * thread, which starts the workers; the call does not wait for them.
 * close and terminate only record an order and wake the supervisor,
 * which carries it out (supervisor.c); join and terminate wait for it to
 * say that the workers are gone.  shutdown is close, a cancel of what no
 * worker took (settle.c), then join.  mp_pool_shared_alloc()
 * hands out blocks of the data region (region.c) under p->lock.
 *
 * Threads.  Any thread of the owning process calls these.  The exit
 * handler (pools_at_exit) runs in whatever thread calls exit().
 *
 * Lifetime.  The pool is reference-counted: the caller's reference, one
 * per unfinished future (mp__future_ops.hold) and one per iterator.
 * mp_pool_free() ends the workers and both threads, then drops the
 * caller's reference; the memory goes with the last one, so futures and
 * iterators outlive the pool's free.
 *
 * Locks.  p->lock for the state fields; live_lock (this file's) for the
 * list of live pools, never held together with a pool's lock.
 */
#define _GNU_SOURCE
#include "pool_int.h"
#include "ranks.h"
#include "shutdown.h"
#include "startmethod.h"

#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

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

void mp__pool_live_add(mp_pool *p)
{
    live_add(p);
}

void mp__pool_live_remove(mp_pool *p)
{
    live_remove(p);
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

void mp__pool_register_exit(void)
{
    pthread_once(&exit_once, register_exit_handler);
}

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

bool mp__pool_ours(const mp_pool *p)
{
    pthread_once(&self_pid_once, self_pid_init);
    return p && p->owner == self_pid;
}

char *mp__pool_printf(const char *fmt, ...)
{
    /* Measured first, then written: portable C, and reports are rare. */
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started just above */
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, fmt);
        /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started just above */
        (void)vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

static void pool_destroy(mp_pool *p);

void mp__pool_hold(void *owner)
{
    atomic_fetch_add(&((mp_pool *)owner)->refs, 1);
}

void mp__pool_release(void *owner)
{
    mp_pool *p = owner;
    if (atomic_fetch_sub(&p->refs, 1) == 1)
        pool_destroy(p);
}

/* Places the header, the dispatch order, the function table, the job
 * table and the worker slots in the control region, each on its own
 * pages, and returns the region's size. */
static size_t ctrl_layout(mp__pool_hdr *h, uint32_t nworkers)
{
    size_t off = mp__pool_align_up(sizeof(mp__pool_hdr), 4096);
    h->order_off = off;
    off = mp__pool_align_up(off + MP__POOL_ORDER * sizeof(uint32_t), 4096);
    h->fns_off = off;
    off = mp__pool_align_up(off + MP__POOL_FNS * sizeof(mp__fnent), 4096);
    h->jobs_off = off;
    off = mp__pool_align_up(off + MP__POOL_JOBS * sizeof(mp__job), 4096);
    h->slots_off = off;
    return mp__pool_align_up(off + nworkers * sizeof(mp__wslot), 4096);
}

/* Workers find out whether they may use this process's memory in place
 * (see MP__JOB_RIN) by reading this value at this address; MPROC_POOL_VM=0
 * forbids it, and so copies everything. */
static void vm_probe_init(mp_pool *p, mp__pool_hdr *h)
{
    p->vm_probe = (mp__now_ns() ^ (uint64_t)(uintptr_t)p) | 1;
    h->vm_pid = (int32_t)getpid();
    h->vm_probe_addr = (uint64_t)(uintptr_t)&p->vm_probe;
    h->vm_probe_val = p->vm_probe;
    const char *vm = getenv("MPROC_POOL_VM");
    atomic_init(&h->vm, vm && strcmp(vm, "0") == 0 ? MP__VM_DENIED : MP__VM_UNKNOWN);
}

/* Creates and maps the control region and fills its header; every job
 * entry starts retired and free, every dispatch position empty. */
static int ctrl_setup(mp_pool *p)
{
    mp__pool_hdr layout = {0};
    size_t size = ctrl_layout(&layout, p->nworkers);
    p->ctrl_size = size;
    int fd = mp__memfd_new("pool-ctrl", size);
    if (fd < 0)
        return fd;
    void *m = NULL;
    int rc = mp__map_fd(fd, size, NULL, &m);
    if (rc < 0) {
        mp__close(fd);
        return rc;
    }
    p->ctrl_fd = fd;
    p->hdr = m;
    mp__pool_hdr *h = p->hdr;
    h->magic = MP__POOL_MAGIC;
    h->nworkers = p->nworkers;
    h->ctrl_size = size;
    h->data_reserve = DATA_RESERVE;
    h->order_off = layout.order_off;
    h->fns_off = layout.fns_off;
    h->jobs_off = layout.jobs_off;
    h->slots_off = layout.slots_off;
    vm_probe_init(p, h);
    p->vm_initial = atomic_load(&h->vm);
    p->hdr_fixed = (hdr_fixed){h->magic,     h->nworkers,      h->ctrl_size,   h->data_reserve,
                               h->order_off, h->fns_off,       h->jobs_off,    h->slots_off,
                               h->vm_pid,    h->vm_probe_addr, h->vm_probe_val};
    p->order = mp__pool_order(h);
    p->fns = mp__pool_fns(h);
    p->jobs = mp__pool_jobs(h);
    p->slots = mp__pool_slot(h, 0);
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        atomic_store(&p->jobs[e].seq, MP__SEQ_RETIRED);
        p->free_entries[p->nfree++] = MP__POOL_JOBS - 1 - e;
    }
    for (uint32_t i = 0; i < MP__POOL_ORDER; i++)
        p->order[i] = UINT32_MAX;
    return 0;
}

static void pool_destroy(mp_pool *p)
{
    if (p->hdr)
        munmap(p->hdr, p->ctrl_size);
    mp__region_destroy(&p->region);
    mp__close(p->ctrl_fd);
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
    free(p->initarg_copy);
    free(p->broken_report);
    free(p->reset_report);
    mp__rpool_destroy(p->ranks);
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++)
        mp__pool_pjob_free(&p->pjobs[e]);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->ev_lock);
    pthread_cond_destroy(&p->ev_cond);
    free(p);
}

/* What is wrong with the options (naming the field), or NULL. */
static const char *opts_check(const mp_pool_opts *o)
{
    if (o->processes < 0 || o->processes > MP__POOL_MAX_WORKERS)
        return "opts.processes out of range (0 to 1024)";
    if (o->start_method < MP_START_DEFAULT || o->start_method > MP_START_AUTO)
        return "opts.start_method unknown";
    if (o->initarg_size > MP__MAX_ARG || (o->initarg_size && !o->initarg))
        return "opts.initarg_size over 16 MiB, or without opts.initarg";
    if (mp__duration_check(o->progress_interval) < 0 ||
        mp__duration_check(o->terminate_grace) < 0 || mp__timeout_check(o->task_timeout) < 0)
        return "opts.progress_interval or terminate_grace negative or NaN, or task_timeout NaN";
    return NULL;
}

/* The pool's lock.  Adaptive where the platform has it: the supervisor
 * and submitters hold it briefly, and a short spin beats sleeping in the
 * kernel and being woken. */
static void lock_init_adaptive(pthread_mutex_t *m)
{
    if (mp__local_mutex_init(m) < 0)
        pthread_mutex_init(m, NULL);
}

/* A pool object with its options, locks and lists, and no resources yet:
 * every descriptor -1, so that pool_destroy() can take it at any step. */
mp_pool *mp__pool_alloc(const mp_pool_opts *o)
{
    mp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_once(&self_pid_once, self_pid_init);
    p->owner = getpid();
    atomic_init(&p->refs, 1);
    p->opts = *o;
    p->ctrl_fd = p->region.fd = p->ev_fd = -1;
    p->nworkers = (uint32_t)(o->processes ? o->processes : mp_cpu_count());
    snprintf(p->name, sizeof p->name, "%s", o->name ? o->name : "Pool");
    p->opts.name = NULL;
    if (p->opts.progress_interval <= 0)
        p->opts.progress_interval = 0.1;
    lock_init_adaptive(&p->lock);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->ev_lock, NULL);
    pthread_cond_init(&p->ev_cond, NULL);
    p->ev_tail = &p->ev_head;
    p->pend_tail = &p->pend_head;
    return p;
}

/* The per-worker records, and the copy of the initializer's argument
 * that fresh images receive. */
static int pool_tables(mp_pool *p)
{
    p->ws = calloc(p->nworkers, sizeof *p->ws);
    p->boots = calloc(p->nworkers, sizeof *p->boots);
    p->res_fds = malloc(p->nworkers * sizeof *p->res_fds);
    if (!p->ws || !p->boots || !p->res_fds)
        return MP_ENOMEM;
    for (uint32_t w = 0; w < p->nworkers; w++) {
        p->res_fds[w] = -1;
        p->ws[w].wait_fd = -1;
    }
    const mp_pool_opts *o = &p->opts;
    if (o->initarg_size && o->start_method != MP_START_FORK) {
        p->initarg_copy = malloc(o->initarg_size);
        if (!p->initarg_copy)
            return MP_ENOMEM;
        memcpy(p->initarg_copy, o->initarg, o->initarg_size);
    }
    return 0;
}

/* The shared memory and the eventfd.  *what names the step that failed. */
static int pool_shared(mp_pool *p, const char **what)
{
    int rc;
    *what = "the shared control region";
    if ((rc = ctrl_setup(p)) < 0)
        return rc;
    *what = "the shared data region";
    mp__region_limits lim = {DATA_RESERVE, DATA_INITIAL, DATA_RELEASE, DATA_RETAIN};
    if ((rc = mp__region_init(&p->region, &lim, &p->hdr->data_size)) < 0)
        return rc;
    *what = "result files";
    for (uint32_t w = 0; w < p->nworkers; w++)
        if ((rc = p->res_fds[w] = mp__memfd_new("pool-res", 0)) < 0)
            return rc;
    *what = "an eventfd";
    if ((rc = p->ev_fd = mp__eventfd_new()) < 0)
        return rc;
    return 0;
}

/* What each worker starts from (mp__wboot). */
static int boots_fill(mp_pool *p, const char **what)
{
    const mp_pool_opts *o = &p->opts;
    for (uint32_t w = 0; w < p->nworkers; w++) {
        mp__wboot *b = &p->boots[w];
        b->slot = w;
        b->method = (uint32_t)o->start_method;
        b->ctrl_size = p->ctrl_size;
        b->data_reserve = DATA_RESERVE;
        b->maxtasks = o->maxtasksperchild;
        b->initarg_size = p->initarg_copy ? o->initarg_size : 0;
        b->has_init = o->initializer != NULL;
        b->ctrl = p->hdr;
        b->data = p->region.base;
        b->data_mapped = &p->region.mapped;
        b->data_fd = p->region.fd;
        b->res_fd = p->res_fds[w];
        b->ev_fd = p->ev_fd;
        b->init = o->initializer;
        b->initarg = o->initarg;
        if (o->initializer && o->start_method != MP_START_FORK) {
            *what = "a reference to the initializer";
            int rc = mp__fnref_from_ptr((const void *)o->initializer, &b->init_ref);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* The forkserver, if the pool uses it, and the supervisor thread, which
 * starts the workers. */
static int pool_start(mp_pool *p, const char **what)
{
    int rc;
    if (p->opts.start_method == MP_START_FORKSERVER) {
        *what = "the forkserver";
        if ((rc = mp_forkserver_start()) < 0)
            return rc;
    }
    *what = "the supervisor thread";
    if ((rc = mp__pool_thread_start(&p->sup, "mproc-pool-sup", mp__pool_supervisor, p)) < 0)
        return rc;
    p->sup_started = true;
    return 0;
}

/* What a program's shutdown (mp_shutdown) does to a live pool: close it,
 * then, past its timeout, terminate it.  Neither waits: called under the
 * registry's lock, they only ask the supervisor. */
static void closer_close(void *obj)
{
    (void)mp_pool_close(obj);
}

static void closer_terminate(void *obj)
{
    mp_pool *p = obj;
    pthread_mutex_lock(&p->lock);
    if (p->sup_started && !p->sup_quit)
        p->terminate_req = true;
    pthread_mutex_unlock(&p->lock);
    mp__pool_kick_supervisor(p);
}

static const mp__closer_ops closer_ops = {"pool", closer_close, closer_terminate, NULL};

int mp_pool_new(const mp_pool_opts *opts, mp_pool **out)
{
    MP__NONNULL(out);
    *out = NULL;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    if (opts)
        o = *opts;
    const char *bad = opts_check(&o);
    if (bad)
        return mp__fail(MP_EINVAL, "mp_pool_new: %s", bad);
    if (o.comm)
        return mp__rpool_new(&o, out);
    /* Decided once for every worker: fork while the program has no other
     * thread, else (default, auto) the forkserver; fork asked for in a
     * threaded program is refused.  Fork hands initarg over as it is, the
     * others copy initarg_size bytes of it. */
    bool copyable = !o.initializer || !o.initarg || o.initarg_size;
    int rc = mp__start_method_resolve(o.start_method, copyable, "pool", &o.start_method);
    if (rc < 0)
        return rc;
    mp_pool *p = mp__pool_alloc(&o);
    if (!p)
        return MP_ENOMEM;
    const char *what = "memory";
    rc = pool_tables(p);
    if (rc == 0)
        rc = pool_shared(p, &what);
    if (rc == 0)
        rc = boots_fill(p, &what);
    if (rc == 0)
        rc = pool_start(p, &what);
    if (rc == 0) {
        what = "the shutdown's registration";
        rc = mp__shutdown_register(&closer_ops, p, &p->closer);
    }
    if (rc < 0) {
        /* The code says what; the line says which resource. */
        mp_log(MP_LOG_ERROR, "mp_pool_new: cannot create %s: %s", what, mp_strerror(rc));
        pool_destroy(p);
        return rc;
    }
    live_add(p);
    *out = p;
    return 0;
}

int mp_pool_size(const mp_pool *p)
{
    return p ? (int)p->nworkers : mp__fail(MP_EINVAL, "mp_pool_size: p must not be NULL");
}

int mp_pool_error(const mp_pool *p)
{
    MP__NONNULL(p);
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

int mp_pool_close(mp_pool *p)
{
    MP__NONNULL(p);
    if (!mp__pool_ours(p))
        return mp__fail(MP_ESTATE, "mp_pool_close: p was made by another process");
    if (p->ranks)
        return mp__rpool_close(p);
    pthread_mutex_lock(&p->lock);
    if (p->state == ST_OPEN)
        p->state = ST_CLOSED;
    pthread_mutex_unlock(&p->lock);
    mp__pool_kick_supervisor(p);
    return 0;
}

int mp_pool_terminate(mp_pool *p)
{
    MP__NONNULL(p);
    if (!mp__pool_ours(p))
        return mp__fail(MP_ESTATE, "mp_pool_terminate: p was made by another process");
    if (p->ranks)
        return mp__rpool_terminate(p);
    pthread_mutex_lock(&p->lock);
    if (!p->sup_started || p->sup_quit) {
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    p->terminate_req = true;
    mp__pool_kick_supervisor(p);
    while (p->state != ST_TERMINATED)
        pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int mp_pool_join(mp_pool *p, double timeout)
{
    MP__NONNULL(p);
    if (mp__timeout_check(timeout) < 0)
        return mp__fail(
            MP_EINVAL, "mp_pool_join: timeout must be a number, < 0 for forever (got %g)", timeout);
    if (!mp__pool_ours(p))
        return mp__fail(MP_ESTATE, "mp_pool_join: p was made by another process");
    if (mp__pool_in_callback_thread(p))
        return mp__fail(MP_EDEADLK, "mp_pool_join: called from p's own callback thread");
    int64_t deadline = mp__deadline(timeout);
    pthread_mutex_lock(&p->lock);
    if (p->state == ST_OPEN && !p->broken) {
        pthread_mutex_unlock(&p->lock);
        return mp__fail(MP_ESTATE, "mp_pool_join: p must be closed or terminated first");
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
    if (mp__timeout_check(timeout) < 0)
        return mp__fail(MP_EINVAL,
                        "mp_pool_shutdown: timeout must be a number, < 0 for forever (got %g)",
                        timeout);
    MP__NONNULL(p);
    if (p->ranks && mp__pool_ours(p))
        return mp__rpool_shutdown(p, cancel_pending, timeout);
    int rc = mp_pool_close(p);
    if (rc < 0)
        return rc;
    if (cancel_pending) {
        pthread_mutex_lock(&p->lock);
        mp__pool_cancel_queued(p, MP_ECANCELED, NULL);
        pthread_mutex_unlock(&p->lock);
        mp__pool_kick_supervisor(p);
    }
    return mp_pool_join(p, timeout);
}

void mp_pool_free(mp_pool *p)
{
    if (!p)
        return;
    if (!mp__pool_ours(p)) {
        /* A copy inherited through fork: its threads and workers are the
         * parent's; release this process's memory only. */
        mp__shutdown_unregister(p->closer);
        p->closer = NULL;
        if (p->hdr)
            munmap(p->hdr, p->ctrl_size);
        mp__region_unmap(&p->region);
        return;
    }
    if (mp__pool_in_callback_thread(p)) {
        mp_log(MP_LOG_ERROR, "mp_pool_free called from the pool's own callback thread: ignored");
        return;
    }
    if (p->ranks) {
        mp__rpool_free(p);
        return;
    }
    mp__shutdown_unregister(p->closer);
    p->closer = NULL;
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
        mp__pool_kick_supervisor(p);
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
    mp__pool_callbacks_end(p);
    mp__pool_release(p);
}

void *mp_pool_shared_alloc(mp_pool *p, size_t size)
{
    if (p && p->ranks) {
        (void)mp__fail(MP_ENOTSUP, "mp_pool_shared_alloc: the workers of a pool of ranks share "
                                   "no memory with the root");
        return NULL;
    }
    if (!p || !size || !mp__pool_ours(p)) {
        (void)mp__fail(MP_EINVAL, "mp_pool_shared_alloc: %s",
                       !p      ? "p must not be NULL"
                       : !size ? "size must be > 0 (got 0)"
                               : "p must be made by this process");
        return NULL;
    }
    pthread_mutex_lock(&p->lock);
    size_t off = 0;
    /* A closed pool takes no more work, so it hands out no more memory for
     * it either (as pool.h says). */
    int rc = p->state == ST_OPEN ? mp__region_alloc(&p->region, size, &off) : MP_ECLOSED;
    pthread_mutex_unlock(&p->lock);
    return rc < 0 ? NULL : p->region.base + off;
}

void mp_pool_shared_free(mp_pool *p, void *ptr)
{
    if (!p || !ptr || !mp__pool_ours(p))
        return;
    pthread_mutex_lock(&p->lock);
    unsigned char *c = ptr;
    if (c >= p->region.base && c < p->region.base + p->region.size)
        mp__region_release(&p->region, (size_t)(c - p->region.base));
    pthread_mutex_unlock(&p->lock);
}

int mp_pool_stats_get(mp_pool *p, mp_pool_stats *st)
{
    MP__NONNULL(p);
    MP__NONNULL(st);
    pthread_mutex_lock(&p->lock);
    *st = p->stats;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int mp_pool_worker_pids(mp_pool *p, pid_t *pids, size_t cap)
{
    MP__NONNULL(p);
    if (cap && !pids)
        return mp__fail(MP_EINVAL,
                        "mp_pool_worker_pids: pids must not be NULL when cap > 0 (got cap %zu)",
                        cap);
    if (p->ranks)
        return 0; /* its workers are ranks, not this process's children */
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
