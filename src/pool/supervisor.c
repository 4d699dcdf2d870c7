/*
 * supervisor.c - the supervisor thread: a loop of named phases.
 *
 * DESIGN
 * Role.  One thread of the pool does everything that is not submission:
 * it drains the workers' completion rings, reaps dead workers, kills those
 * past the time limit, starts missing ones, publishes work that waited,
 * reports progress, and carries out close and terminate.  Waiting for
 * completions in the callers' threads instead would leave crashes and
 * timeouts unnoticed while nobody waits, which is exactly when a pool must
 * still notice them.
 *
 * The loop, as libuv's uv_run: one round is a list of phases, each a
 * function with one job, in an order that matters only where said:
 *
 *   run_orders         terminate asked for: begin it; its grace ran out: SIGKILL
 *   drain_completions  the workers' completion rings (before reaping, so
 *                      that a dead worker's last records count)
 *   reap_exited        workers whose exit descriptor polled readable in the
 *                      last sleep: settle what they held
 *   publish_waiting    retired entries recycled, work owed a position or
 *                      waiting for an entry published
 *   advance_shutdown   terminate or close carried forward once possible
 *   start_workers      empty slots refilled (with back-off)
 *   run_watchdog       workers past the time limit killed
 *   report_progress    progress of running maps handed to the callback thread
 *   audit_shared       while work is outstanding, every RECHECK_NS: shared
 *                      memory checked against the parent's records
 *                      (check.c), idle workers woken if published work waits
 *   sleep_until_next   poll() until a worker writes the eventfd or exits,
 *                      or the earliest deadline a phase asked for; not at
 *                      all when the round did something
 *
 * Threads.  The supervisor thread, started by mp_pool_new() with every
 * signal blocked and ended by mp_pool_free().
 *
 * Locks.  The loop holds p->lock through each round and lets go of it only
 * to sleep (and, inside settle.c, around large copies).  It sleeps in
 * poll() on the eventfd and the workers' exit descriptors; the store -
 * fence - load on hdr.sup_sleeping (records.h, Sleeping) keeps a worker's
 * wake-up from being lost.
 */
#define _GNU_SOURCE
#include "pool_int.h"

#include <poll.h>

/* While work is outstanding the supervisor wakes at least this often, even
 * with no deadline of its own.  The protocol loses no wake-up, so this is
 * not for speed: a task can write over shared memory (sup_sleeping, a
 * worker's idle registration, the dispatch queue), and then a wake-up
 * can be lost, or work never published where workers look.  The periodic
 * look (audit_shared) bounds how long such damage goes unseen. */
#define RECHECK_NS ((int64_t)100 * 1000000)

/* One sup_round of the loop: when it began, the earliest deadline a phase
 * asked to be woken at, and whether it did anything (then the next sup_round
 * comes at once). */
typedef struct sup_round {
    int64_t now;
    int64_t next_wake;
    bool did;
} sup_round;

/* What the supervisor polls, kept from a sup_round's sleep to the next
 * sup_round's reap: [0] the eventfd, then one entry per live worker, who[i]
 * naming its slot.  pfd is NULL when memory ran out (the pool is then
 * broken and the loop sleeps in short steps). */
typedef struct pollset {
    struct pollfd *pfd;
    uint32_t *who;
    nfds_t n;
} pollset;

static void due_at(sup_round *r, int64_t t)
{
    if (t < r->next_wake)
        r->next_wake = t;
}

static void wake_joiners(mp_pool *p)
{
    for (waitword *w = p->joiners; w; w = w->next)
        mp__waiter_wake(w->word);
}

/* Tells every worker to stop (MP__STOP_DRAIN: once the queue is empty;
 * MP__STOP_NOW: at once) and wakes the sleeping ones to read it. */
static void stop_workers(mp_pool *p, uint32_t how)
{
    mp__pool_hdr *h = p->hdr;
    p->stop_sent = how;
    atomic_store(&h->stop, how);
    atomic_fetch_add(&h->work_seq, 1);
    (void)mp__futex_wake(&h->work_seq, INT32_MAX);
}

static void begin_terminate(mp_pool *p, int64_t now)
{
    p->state = ST_TERMINATING;
    stop_workers(p, MP__STOP_NOW);
    mp__pool_cancel_queued(p, MP_ECANCELED, NULL);
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
    p->term_deadline = mp__time_after(now, mp__seconds_ns(p->opts.terminate_grace));
}

/* Once no worker is left after a terminate: whatever still runs (nothing
 * should) is cancelled, and waiters are told. */
static void end_terminate(mp_pool *p)
{
    mp__pool_fail_all(p, MP_ECANCELED, NULL);
    p->state = ST_TERMINATED;
    p->workers_gone = true;
    pthread_cond_broadcast(&p->cond);
    wake_joiners(p);
}

/* ---- the phases ------------------------------------------------------------ */

/* Orders from the API: a terminate to begin, or to escalate to SIGKILL
 * once its grace period is over. */
static void run_orders(mp_pool *p, sup_round *r)
{
    if (p->terminate_req && p->state < ST_TERMINATING) {
        begin_terminate(p, r->now);
        r->did = true;
    }
    if (p->state != ST_TERMINATING || p->term_killed)
        return;
    if (r->now < p->term_deadline) {
        due_at(r, p->term_deadline);
        return;
    }
    for (uint32_t w = 0; w < p->nworkers; w++)
        if (p->ws[w].proc)
            mp_process_kill(p->ws[w].proc);
    p->term_killed = true;
}

static void drain_completions(mp_pool *p, sup_round *r)
{
    for (uint32_t w = 0; w < p->nworkers && !p->resetting; w++)
        r->did |= mp__pool_drain_slot(p, w);
}

/* Workers whose exit descriptor the last sleep saw readable.  The slot
 * must still hold the process polled: a descriptor number may have been
 * reused by a replacement since. */
static void reap_exited(mp_pool *p, pollset *ps, sup_round *r)
{
    if (!ps->pfd)
        return;
    for (uint32_t i = 1; i < p->nworkers + 1; i++) {
        struct pollfd *pf = &ps->pfd[i];
        if (pf->fd < 0 || !pf->revents)
            continue;
        uint32_t w = ps->who[i];
        pf->revents = 0;
        if (p->ws[w].proc && p->ws[w].wait_fd == pf->fd) {
            mp__pool_on_worker_exit(p, w);
            r->did = true;
        }
    }
}

static void publish_waiting(mp_pool *p)
{
    if (p->resetting)
        return;
    if (p->nretired)
        mp__pool_retry_retired(p);
    mp__pool_republish(p);
    mp__pool_publish_pending(p);
}

/* Terminate ends once no worker is left.  Close (or a broken pool) tells
 * the workers to leave once no work is active, and is over once they all
 * have - and once every slot has had its first worker, whose initializer
 * runs even in a pool closed at once; join and terminate wait for
 * workers_gone. */
static void advance_shutdown(mp_pool *p)
{
    if (p->resetting && p->nlive == 0)
        mp__pool_reset_finish(p);
    if (p->state == ST_TERMINATING && p->nlive == 0)
        end_terminate(p);
    bool closing = p->state == ST_CLOSED || p->broken;
    if (closing && p->nactive == 0 && !p->closing_done && p->state < ST_TERMINATING) {
        stop_workers(p, MP__STOP_DRAIN);
        p->closing_done = true;
    }
    bool launched = p->nlaunched == p->nworkers || p->broken;
    if (closing && p->closing_done && p->nlive == 0 && launched && !p->workers_gone) {
        p->workers_gone = true;
        pthread_cond_broadcast(&p->cond);
        wake_joiners(p);
    }
}

static void start_workers(mp_pool *p, sup_round *r)
{
    mp__pool_start_missing(p, r->now, &r->next_wake);
}

static void run_watchdog(mp_pool *p, sup_round *r)
{
    if (!p->resetting)
        due_at(r, mp__pool_watchdog(p, r->now));
}

static void report_progress(mp_pool *p, sup_round *r)
{
    due_at(r, mp__pool_progress_tick(p, r->now));
}

/* Wakes the workers asleep for work, when published work waits. */
static void wake_idle_workers(mp_pool *p)
{
    mp__pool_hdr *h = p->hdr;
    if (atomic_load(&h->job_head) >= p->pub_tail)
        return;
    atomic_fetch_add(&h->work_seq, 1);
    (void)mp__futex_wake(&h->work_seq, INT32_MAX);
}

static void audit_shared(mp_pool *p, sup_round *r)
{
    if (p->resetting || p->state >= ST_TERMINATING || p->nactive == 0)
        return;
    if (r->now >= p->next_audit) {
        char why[200];
        if (!mp__pool_audit(p, why, sizeof why)) {
            mp__pool_corrupt(p, why);
            r->did = true;
            return;
        }
        wake_idle_workers(p);
        p->next_audit = r->now + RECHECK_NS;
    }
    if (mp__pool_recheck())
        due_at(r, p->next_audit);
}

/* ---- sleeping ---------------------------------------------------------------- */

static void pollset_init(mp_pool *p, pollset *ps)
{
    ps->pfd = calloc(p->nworkers + 1, sizeof *ps->pfd);
    ps->who = calloc(p->nworkers + 1, sizeof *ps->who);
    ps->n = 0;
    if (ps->pfd && ps->who)
        return;
    free(ps->pfd);
    free(ps->who);
    ps->pfd = NULL;
    ps->who = NULL;
    pthread_mutex_lock(&p->lock);
    mp__pool_break(p, MP_ENOMEM, mp__pool_printf("the supervisor ran out of memory"));
    pthread_mutex_unlock(&p->lock);
}

/* The eventfd and every live worker's exit descriptor. */
static void pollset_fill(mp_pool *p, pollset *ps)
{
    ps->n = 0;
    if (!ps->pfd)
        return;
    ps->pfd[ps->n++] = (struct pollfd){.fd = p->ev_fd, .events = POLLIN};
    for (uint32_t w = 0; w < p->nworkers; w++) {
        if (p->ws[w].proc) {
            ps->who[ps->n] = w;
            ps->pfd[ps->n++] = (struct pollfd){.fd = p->ws[w].wait_fd, .events = POLLIN};
        }
    }
    for (uint32_t i = (uint32_t)ps->n; i < p->nworkers + 1; i++)
        ps->pfd[i].fd = -1;
}

/* About to sleep: say so, then look at the rings once more (records.h,
 * Sleeping).  Returns the poll timeout in ms: 0 when a record came in
 * meanwhile, -1 for none.  Without p->lock. */
static int announce_sleep(mp_pool *p, int64_t next_wake)
{
    mp__pool_hdr *h = p->hdr;
    atomic_store(&h->sup_sleeping, 1);
    for (uint32_t w = 0; w < p->nworkers; w++) {
        mp__wslot *s = mp__pool_wslot(p, w);
        if (atomic_load(&s->done_head) != atomic_load(&s->done_tail)) {
            atomic_store(&h->sup_sleeping, 0);
            return 0;
        }
    }
    if (next_wake == MP__NO_DEADLINE)
        return -1;
    int64_t left = next_wake - mp__now_ns();
    return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

/* Sleeps, without p->lock, until a worker writes the eventfd or exits, or
 * the sup_round's next deadline; only looks when the sup_round did something.
 * Exit events stay in the poll set for the next sup_round's reap. */
static void sleep_until_next(mp_pool *p, pollset *ps, sup_round *r)
{
    pollset_fill(p, ps);
    if (p->nretired || p->nrepublish)
        due_at(r, r->now + 1000000); /* hazards clear, the queue drains: soon */
    p->sup_unbounded = !r->did && r->next_wake == MP__NO_DEADLINE;
    pthread_mutex_unlock(&p->lock);
    int timeout_ms = r->did ? 0 : announce_sleep(p, r->next_wake);
    if (ps->n > 0) {
        int n = poll(ps->pfd, ps->n, timeout_ms);
        if (n > 0 && (ps->pfd[0].revents & POLLIN))
            mp__eventfd_drain(p->ev_fd);
        if (n <= 0)
            for (nfds_t i = 0; i < ps->n; i++)
                ps->pfd[i].revents = 0;
    } else if (timeout_ms != 0) {
        mp__sleep_ns(1000000);
    }
    atomic_store(&p->hdr->sup_sleeping, 0);
    pthread_mutex_lock(&p->lock);
}

/* ---- the loop ------------------------------------------------------------------ */

void *mp__pool_supervisor(void *arg)
{
    mp_pool *p = arg;
    pollset ps;
    pollset_init(p, &ps);
    pthread_mutex_lock(&p->lock);
    while (!p->sup_quit) {
        sup_round r = {mp__now_ns(), MP__NO_DEADLINE, false};
        run_orders(p, &r);
        drain_completions(p, &r);
        reap_exited(p, &ps, &r);
        publish_waiting(p);
        advance_shutdown(p);
        start_workers(p, &r);
        run_watchdog(p, &r);
        report_progress(p, &r);
        audit_shared(p, &r);
        sleep_until_next(p, &ps, &r);
    }
    pthread_mutex_unlock(&p->lock);
    free(ps.pfd);
    free(ps.who);
    return NULL;
}
