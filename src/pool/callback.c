/*
 * callback.c - the pool's callback thread, and the progress reports it
 * runs.
 *
 * DESIGN
 * Role.  User code the parent runs on the pool's behalf - done callbacks
 * of futures, progress functions, the progress bar - runs here, in a
 * thread of its own started on first use, never in the supervisor: a slow
 * or blocking callback then cannot delay crash detection or a timeout.
 * The supervisor computes a map's progress (progress_emit, under
 * p->lock) and posts it; this thread reports it.
 *
 * Threads.  ev_main is the callback thread; ev_post is called by the
 * supervisor (progress, futures finished there) and by any thread that
 * finishes a future.
 *
 * Locks.  p->ev_lock guards the queue of events and the thread's state,
 * and is taken after p->lock, never before.  Events run without any lock.
 */
#define _GNU_SOURCE
#include "pool_int.h"

#include <signal.h>
#include <unistd.h>

static void *ev_main(void *arg)
{
    mp_pool *p = arg;
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

/* Every signal blocked, so that process-directed signals (SIGINT above
 * all) go to the program's own threads; named as the library's, so that a
 * fork decision does not count it among the program's threads. */
int mp__pool_thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg)
{
    return mp__thread_start(t, name, fn, arg);
}

int mp__pool_ev_post(mp_pool *p, void (*fn)(void *), void *arg)
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
        int rc = mp__pool_thread_start(&p->ev_tid, "mproc-pool-cb", ev_main, p);
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

void mp__pool_callbacks_end(mp_pool *p)
{
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
}

bool mp__pool_in_callback_thread(mp_pool *p)
{
    pthread_mutex_lock(&p->ev_lock);
    bool r = p->ev_started && pthread_equal(pthread_self(), p->ev_tid);
    pthread_mutex_unlock(&p->ev_lock);
    return r;
}

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
    /* Drawn through the log's status line, so that log lines go above it
     * instead of through it. */
    if (snprintf(line, sizeof line, "%3.0f%%|%s| %zu/%zu [%s<%s, %s it/s]", frac * 100.0, bar,
                 e->done, e->total, el, eta, rbuf) > 0)
        mp__log_status_set(line, e->final);
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

void mp__pool_progress_post(mp_pool *p, mp_progress_fn fn, void *ctx, bool bar, size_t done,
                            size_t total, double elapsed, bool final)
{
    progress_ev *pe = malloc(sizeof *pe);
    if (!pe)
        return;
    *pe = (progress_ev){fn, ctx, bar, final, done, total, elapsed};
    if (mp__pool_ev_post(p, run_progress, pe) < 0)
        free(pe);
}

/* Items of map job e finished so far, counting the items running units
 * have passed. */
static size_t items_done(mp_pool *p, uint32_t e)
{
    pjob *pj = &p->pjobs[e];
    size_t done = pj->items_final;
    for (uint32_t w = 0; w < p->nworkers; w++) {
        mp__wslot *s = mp__pool_wslot(p, w);
        if (!p->ws[w].proc || atomic_load(&s->state) != MP__W_BUSY ||
            atomic_load(&s->intent_job) != e + 1)
            continue;
        uint64_t u = atomic_load(&s->intent_unit), item = atomic_load(&s->item);
        uint64_t base = u * pj->chunk;
        /* Only a unit still running counts here: one its worker finished
         * is in items_final already, though the worker may still name it. */
        if (u < pj->nunits && item != UINT64_MAX && item >= base && item < base + pj->chunk &&
            atomic_load(&mp__pool_units(p, e)[u].state) == MP__U_RUNNING_BY(w))
            done += (size_t)(item - base);
    }
    return done < pj->n ? done : (size_t)pj->n;
}

void mp__pool_progress_emit(mp_pool *p, uint32_t e, bool final)
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
    if (!final && (now - pj->progress_ns < mp__seconds_ns(p->opts.progress_interval) ||
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
    if (mp__pool_ev_post(p, run_progress, pe) < 0)
        free(pe);
}

int64_t mp__pool_progress_tick(mp_pool *p, int64_t now)
{
    if (!p->has_progress_jobs)
        return MP__NO_DEADLINE;
    bool any = false;
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        pjob *pj = &p->pjobs[e];
        if (pj->kind == MP__JOB_MAP && (pj->progress || pj->bar)) {
            any = true;
            mp__pool_progress_emit(p, e, false);
        }
    }
    /* A map still pending may report once it runs. */
    p->has_progress_jobs = any || p->pend_head;
    return any ? mp__time_after(now, mp__seconds_ns(p->opts.progress_interval)) : MP__NO_DEADLINE;
}
