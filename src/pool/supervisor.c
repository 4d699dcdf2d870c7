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

static void wake_joiners(mp_pool *p)
{
    for (waitword *w = p->joiners; w; w = w->next)
        mp__waiter_wake(w->word);
}

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
    p->term_deadline = now + (kill ? 0 : (int64_t)(p->opts.terminate_grace * 1e9));
}

/* Once no worker is left after a terminate: whatever still runs (nothing
 * should) is cancelled, and waiters are told. */
static void end_terminate(mp_pool *p)
{
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        pjob *pj = &p->pjobs[e];
        if (pj->kind == MP__JOB_APPLY) {
            mp__pool_finish_apply(p, e, MP_ECANCELED, NULL, 0, 0, 0, NULL);
        } else if (pj->kind == MP__JOB_MAP) {
            mp__unit *units = mp__pool_units(p, e);
            for (uint64_t u = 0; u < pj->nunits && p->pjobs[e].kind == MP__JOB_MAP; u++) {
                uint32_t st = atomic_load(&units[u].state);
                if (st == MP__U_FINAL || st == MP__U_CANCELLED)
                    continue;
                uint64_t base = u * pj->chunk + units[u].resume;
                uint64_t end = (u + 1) * pj->chunk < pj->n ? (u + 1) * pj->chunk : pj->n;
                mp__pool_map_fail_items(p, e, base, end - base, MP_ECANCELED, 0, 0, NULL);
                mp__pool_map_unit_final(p, e, u, false);
            }
        }
    }
    p->state = ST_TERMINATED;
    p->workers_gone = true;
    pthread_cond_broadcast(&p->cond);
    wake_joiners(p);
}

void *mp__pool_supervisor(void *arg)
{
    mp_pool *p = arg;
    mp__pool_thread_name("mproc-pool-sup");
    mp__pool_hdr *h = p->hdr;
    struct pollfd *pfd = calloc(p->nworkers + 1, sizeof *pfd);
    uint32_t *who = calloc(p->nworkers + 1, sizeof *who);
    if (!pfd || !who) {
        pthread_mutex_lock(&p->lock);
        mp__pool_break(p, MP_ENOMEM, mp__pool_printf("the supervisor ran out of memory"));
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
            did |= mp__pool_drain_slot(p, w);

        /* Deaths seen by the last poll. */
        if (pfd && who) {
            for (uint32_t i = 1; i < p->nworkers + 1; i++) {
                if (pfd[i].fd >= 0 && pfd[i].revents) {
                    uint32_t w = who[i];
                    pfd[i].revents = 0;
                    if (p->ws[w].proc && p->ws[w].wait_fd == pfd[i].fd) {
                        mp__pool_on_worker_exit(p, w);
                        did = true;
                    }
                }
            }
        }

        if (p->nretired)
            mp__pool_retry_retired(p);
        for (uint32_t e = 0; e < MP__POOL_JOBS && p->nrepublish; e++)
            if (p->pjobs[e].kind && p->pjobs[e].republish)
                mp__pool_publish(p, e, 1);
        mp__pool_publish_pending(p);

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

        mp__pool_start_missing(p, now, &next_wake);
        int64_t wd = mp__pool_watchdog(p, now);
        if (wd < next_wake)
            next_wake = wd;

        /* Progress of maps that run. */
        if (p->has_progress_jobs) {
            bool any = false;
            for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
                pjob *pj = &p->pjobs[e];
                if (pj->kind == MP__JOB_MAP && (pj->progress || pj->bar)) {
                    any = true;
                    mp__pool_progress_emit(p, e, false);
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
