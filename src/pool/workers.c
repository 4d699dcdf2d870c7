/*
 * workers.c - the worker processes, seen from the parent: starting them,
 * reaping them, settling what a dead one held, and the time limit.
 *
 * DESIGN
 * Role.  Each worker slot has a record here (wstate) and one in shared
 * memory (mp__wslot).  The supervisor starts a worker into a free slot,
 * with a back-off when processes or memory run out; when the worker's exit
 * descriptor polls readable it reaps it, reads from its slot what it held
 * (its intent) and settles that unit through settle.c; a worker whose
 * initializer failed breaks the pool once.  The watchdog kills a worker
 * whose unit (or map item) ran past the time limit.
 *
 * Threads.  The supervisor alone: one thread owns the processes, so every
 * decision about a worker is made in one place and in order, and it is
 * the thread the workers are tied to by their death signal.
 *
 * Locks.  Everything here runs under p->lock.
 */
#define _GNU_SOURCE
#include "pool_int.h"

#include <signal.h>

static void reset_slot(mp_pool *p, uint32_t w)
{
    mp__wslot *s = mp__pool_wslot(p, w);
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
    p->ws[w].done_tail = 0;
    p->ws[w].res_consumed = 0;
    p->ws[w].res_tail = 0;
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
        fds[MP__WFD_DATA] = p->region.fd;
        fds[MP__WFD_RES] = p->res_fds[w];
        fds[MP__WFD_EV] = p->ev_fd;
        o.fds = fds;
        o.nfds = MP__WFD_COUNT;
    }
    mp_process *proc;
    int rc = mp_process_new_opts(mp__pool_worker_main, arg, &o, &proc);
    if (rc < 0)
        return rc;
    mp__process_mark_internal(proc); /* not one of mp_active_children() */
    rc = mp_process_start(proc);
    if (rc < 0) {
        mp_process_free(proc);
        return rc;
    }
    mp__pool_register_exit();
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
    ws->past_init = false;
    if (!ws->launched)
        p->nlaunched++;
    ws->launched = true;
    p->nlive++;
    p->stats.workers_started++;
    if (p->state == ST_TERMINATING)
        mp_process_kill(proc); /* started just before terminate: end it too */
    return 0;
}

void mp__pool_break(mp_pool *p, int err, char *report)
{
    if (p->broken) {
        free(report);
        return;
    }
    p->broken = err;
    p->broken_report = report;
    mp_log(MP_LOG_ERROR, "pool: %s", report ? report : mp_strerror(err));
    mp__pool_cancel_queued(p, err, report);
}

/* How a worker ended, read once it is reaped. */
typedef struct worker_end {
    mp_process *proc;
    int code;           /* exit status, or -SIGNUM */
    int perr;           /* the error its set-up reported, or 0 */
    const char *report; /* its crash or error report, or NULL */
    uint32_t state;     /* the last state it wrote in its slot */
} worker_end;

/* Counts the end in the stats; returns whether it was clean (a recycle,
 * or leaving a closing pool). */
static bool count_end(mp_pool *p, const wstate *ws, const worker_end *x)
{
    bool clean = x->code == 0 && (x->state == MP__W_RECYCLE || x->state == MP__W_EXITING);
    if (clean && x->state == MP__W_RECYCLE)
        p->stats.workers_recycled++;
    if (!clean && !ws->doomed)
        p->stats.workers_died++;
    return clean;
}

/* A worker that ended before it was ready: its initializer failed or
 * died, or it could not set up.  Breaks the pool, once. */
static void check_start(mp_pool *p, uint32_t w, worker_end *x)
{
    wstate *ws = &p->ws[w];
    /* A SIGKILL during the initializer came from outside (the OOM killer,
     * an operator): replace the worker - but three in a row is the
     * initializer's doing, and breaks the pool rather than loop. */
    bool killed_in_init = x->state == MP__W_INIT && x->code == -SIGKILL && !ws->doomed;
    if (killed_in_init && ++p->init_kills < 3)
        x->state = MP__W_STARTING;
    else if (x->state >= MP__W_READY)
        p->init_kills = 0;
    const char *name = mp_process_name(x->proc);
    if (x->state == MP__W_INIT_FAILED || x->state == MP__W_INIT) {
        int ie = atomic_load(&mp__pool_wslot(p, w)->init_error);
        char *text;
        if (x->state == MP__W_INIT_FAILED)
            text = mp__pool_printf("the initializer of worker '%s' (pid %d) returned %d (%s); no "
                                   "worker will be started again",
                                   name, (int)mp_process_pid(x->proc), ie, mp_err_name(ie));
        else
            text = mp__pool_printf("the initializer of worker '%s' failed: %s; no worker will be "
                                   "started again",
                                   name, x->report ? x->report : "it died");
        if (!ws->doomed)
            mp__pool_break(p, MP_EINIT, text);
        else
            free(text);
    } else if (x->state == MP__W_STARTING && x->perr < 0 && !ws->doomed) {
        mp__pool_break(p, x->perr,
                       mp__pool_printf("worker '%s' could not set up: %s (%s)", name,
                                       mp_err_name(x->perr), mp_strerror(x->perr)));
    }
}

/* Why the unit a dead worker held fails: a terminate cancelled it, the
 * watchdog killed it, or it died.  *why receives a report made here (to
 * free), or NULL when the worker's own report says it. */
static int held_error(mp_pool *p, const wstate *ws, const worker_end *x, char **why)
{
    int err = ws->doomed || p->state >= ST_TERMINATING ? MP_ECANCELED
              : ws->timed_out                          ? MP_ETIMELIMIT
                                                       : MP_EWORKER;
    const char *name = mp_process_name(x->proc);
    int pid = (int)mp_process_pid(x->proc);
    *why = NULL;
    if (err == MP_ETIMELIMIT)
        *why = mp__pool_printf("the task ran past the pool's time limit of %g s; its worker '%s' "
                               "(pid %d) was killed",
                               p->opts.task_timeout, name, pid);
    else if (err == MP_EWORKER && x->state == MP__W_CUT_OFF)
        *why = mp__pool_printf("worker '%s' (pid %d) left: a task closed the descriptors it "
                               "shares with the pool",
                               name, pid);
    else if (!x->report && err == MP_EWORKER)
        *why = mp__pool_printf("process '%s' (pid %d) exited with status %d", name, pid, x->code);
    return err;
}

/* Settles the unit worker w held when it died, named by its intent: a
 * unit still RUNNING by it is settled by how far it got (slot.item,
 * records.h: not begun, it runs again; finished, it is collected; begun,
 * it fails or is retried); one it finished (DONE) is collected, should
 * its record have been lost. */
static void settle_held(mp_pool *p, uint32_t w, const worker_end *x)
{
    mp__wslot *s = mp__pool_wslot(p, w);
    uint32_t ij = atomic_load(&s->intent_job);
    if (!ij || ij > MP__POOL_JOBS)
        return;
    uint32_t e = ij - 1;
    uint64_t u = atomic_load(&s->intent_unit);
    uint64_t item = atomic_load(&s->item);
    char *why;
    int err = held_error(p, &p->ws[w], x, &why);
    const char *rep = why ? why : x->report;
    if (p->pjobs[e].kind == MP__JOB_APPLY) {
        uint32_t st = atomic_load(&p->jobs[e].state);
        if (st == MP__U_RUNNING_BY(w))
            mp__pool_apply_died(p, e, w, item, err, x->code, rep);
        else if (st == MP__U_DONE && p->jobs[e].u.apply.runner == w)
            mp__pool_collect_apply(p, e, w);
    } else if (p->pjobs[e].kind == MP__JOB_MAP && u < p->pjobs[e].nunits) {
        uint32_t st = atomic_load(&mp__pool_units(p, e)[u].state);
        if (st == MP__U_RUNNING_BY(w))
            mp__pool_fail_map_unit(p, e, u, item, err, x->code, rep);
        else if (st == MP__U_DONE)
            mp__pool_collect_unit(p, e, u);
    }
    free(why);
}

/* After an abnormal end: whether the shared memory still agrees with the
 * parent's records (a task may have scribbled over it, then crashed).
 * When it does not, the pool starts afresh (check.c) instead of settling
 * anything by what the slot says. */
static bool memory_intact(mp_pool *p, uint32_t w, const worker_end *x)
{
    char why[200];
    if (p->ws[w].past_init && x->state < MP__W_READY)
        snprintf(why, sizeof why, "the state of worker %u went back to %u", w, x->state);
    else if (mp__pool_audit(p, why, sizeof why))
        return true;
    char what[320];
    snprintf(what, sizeof what, "%s, found after worker '%s' (pid %d) ended with %s %d", why,
             mp_process_name(x->proc), (int)mp_process_pid(x->proc),
             x->code < 0 ? "signal" : "status", x->code < 0 ? -x->code : x->code);
    mp__pool_corrupt(p, what);
    return false;
}

/* A worker's exit descriptor became readable: reap it, collect what its
 * ring still holds, settle what it held, and empty its slot for a
 * replacement.  While the pool starts afresh, nothing is settled: the
 * reset fails what it held. */
void mp__pool_on_worker_exit(mp_pool *p, uint32_t w)
{
    wstate *ws = &p->ws[w];
    worker_end x = {.proc = ws->proc};
    if (mp_process_join(x.proc, 0) != 0)
        return; /* not ended after all */
    /* Joined above, so both are set. */
    (void)mp_process_exitcode(x.proc, &x.code);
    (void)mp_process_error(x.proc, &x.perr);
    x.report = mp_process_report(x.proc);
    if (!p->resetting)
        mp__pool_drain_slot(p, w);
    x.state = atomic_load(&mp__pool_wslot(p, w)->state);
    bool clean = count_end(p, ws, &x);
    if (!p->resetting && (clean || memory_intact(p, w, &x))) {
        check_start(p, w, &x);
        settle_held(p, w, &x);
        if (!clean)
            mp__pool_requeue_orphans(p);
    }
    reset_slot(p, w);
    mp_process_free(x.proc);
    ws->proc = NULL;
    ws->wait_fd = -1;
    p->nlive--;
}

/* Whether slot ws should have a worker now.  Every slot gets its first
 * worker, closed pool or not: Python starts the workers when the pool is
 * created, so a pool closed at once still runs each worker's initializer.
 * Replacements come only while there is work. */
static bool wants_worker(mp_pool *p, const wstate *ws)
{
    if (p->broken || p->state >= ST_TERMINATING || p->resetting)
        return false;
    if (p->state == ST_CLOSED && p->nactive == 0)
        return !ws->launched;
    return true;
}

/* The program is shutting down and refuses new processes: the pool
 * closes, as mp_shutdown() would have it, and with no worker left the
 * work it still holds fails (MP_ESHUTDOWN) instead of waiting for one. */
static void refuse_for_shutdown(mp_pool *p)
{
    if (p->state == ST_OPEN)
        p->state = ST_CLOSED;
    if (p->nlive == 0 && !p->broken)
        mp__pool_break(p, MP_ESHUTDOWN,
                       mp__pool_printf("no worker can start: the program is shutting down"));
}

void mp__pool_start_missing(mp_pool *p, int64_t now, int64_t *next_wake)
{
    for (uint32_t w = 0; w < p->nworkers; w++) {
        wstate *ws = &p->ws[w];
        if (ws->proc || !wants_worker(p, ws))
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
        if (rc == MP_ESHUTDOWN) {
            refuse_for_shutdown(p);
            return;
        }
        /* Out of processes or memory: try again later, and give up once
         * no worker runs and several attempts failed. */
        ws->backoff =
            ws->backoff ? (ws->backoff * 2 > 1000000000 ? 1000000000 : ws->backoff * 2) : 10000000;
        ws->next_start = now + ws->backoff;
        if (ws->next_start < *next_wake)
            *next_wake = ws->next_start;
        if (++p->start_failures >= 8 && p->nlive == 0)
            mp__pool_break(p, rc,
                           mp__pool_printf("no worker could be started: %s (%s)", mp_err_name(rc),
                                           mp_strerror(rc)));
    }
}

/* Kills workers whose unit (or map item) ran past the time limit.
 * Returns the time of the next check. */
int64_t mp__pool_watchdog(mp_pool *p, int64_t now)
{
    /* <= 0, +INFINITY or too long for the clock: no limit. */
    int64_t limit = mp__seconds_ns(p->opts.task_timeout);
    if (limit == 0 || limit == INT64_MAX)
        return MP__NO_DEADLINE;
    int64_t next = MP__NO_DEADLINE;
    bool busy = false;
    for (uint32_t w = 0; w < p->nworkers; w++) {
        wstate *ws = &p->ws[w];
        if (!ws->proc || ws->timed_out || ws->doomed)
            continue;
        mp__wslot *s = mp__pool_wslot(p, w);
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
        int64_t due = mp__time_after(ws->key_since, limit);
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
        int64_t tick = mp__time_after(now, limit / 4 > 1000000 ? limit / 4 : 1000000);
        if (tick < next)
            next = tick;
    }
    return next;
}
