/*
 * settle.c - finishing work: results collected from the workers, failures
 * recorded, units given back to the queue, work cancelled.
 *
 * DESIGN
 * Role.  The supervisor drains each worker's completion ring (records.h,
 * Completion) and turns records into finished futures, map outputs and
 * imap items; when a worker dies, what it held is settled here too.
 * Every step from DONE to FINAL happens here, once.
 *
 * Failure semantics (see pool.h): a unit held by a dead worker is found
 * through the worker's intent (records.h).  An apply task fails with
 * MP_EWORKER, or MP_ETIMELIMIT when the supervisor killed it, or is
 * re-queued while it has retries left.  A map chunk is split at the item
 * that was running: the items before it are done, that item fails (or is
 * retried), the rest of the chunk is re-queued from the next item (the
 * unit's `resume`).  A worker that died between claiming a chunk and
 * starting its first item leaves nothing failed: the chunk is simply
 * re-queued.
 *
 * Threads.  The supervisor; cancel_queued and the cancel of one future
 * also run in API threads (shutdown, mp_future_cancel).
 *
 * Locks.  Everything here runs under p->lock, which is let go only around
 * large copies (map outputs, big results) that touch memory no one else
 * changes meanwhile.  A future's lock and an iterator's lock are taken
 * inside p->lock.
 */
#define _GNU_SOURCE
#include "pool_int.h"

#include <errno.h>
#include <unistd.h>

static void job_done_common(mp_pool *p, uint32_t e)
{
    pjob *pj = &p->pjobs[e];
    if (pj->data_len && !pj->keep_data)
        mp__region_release(&p->region, pj->data_off);
    p->nactive--;
    mp__pool_entry_release(p, e);
}

void mp__pool_finish_apply(mp_pool *p, uint32_t e, int status, void *res, size_t len,
                           int task_error, int exitcode, char *report)
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

/* Reads len bytes at off of a result file. */
static int pread_all(int fd, void *buf, size_t len, size_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else
            return n < 0 ? -errno : MP_EPROTO;
    }
    return 0;
}

int mp__pool_ring_take(mp_pool *p, uint32_t w, uint64_t off, uint64_t len, size_t want, void **out)
{
    mp__wslot *s = mp__pool_wslot(p, w);
    size_t take = len < want ? (size_t)len : want;
    int rc = 0;
    if (out && take) {
        /* One more byte, a NUL: messages are read as text. */
        *out = take < SIZE_MAX ? malloc(take + 1) : NULL;
        bool unlock = take >= COPY_UNLOCKED;
        if (unlock)
            pthread_mutex_unlock(&p->lock);
        rc = *out ? pread_all(p->res_fds[w], *out, take, (size_t)off) : MP_ENOMEM;
        if (unlock)
            pthread_mutex_lock(&p->lock);
        if (*out)
            ((char *)*out)[take] = '\0';
    }
    p->ws[w].res_tail = off + len;
    p->ws[w].res_consumed++;
    atomic_store(&s->res_tail, p->ws[w].res_tail);
    atomic_store(&s->res_consumed, p->ws[w].res_consumed);
    if (atomic_load(&s->waiting)) {
        atomic_fetch_add(&s->wake, 1);
        (void)mp__futex_wake(&s->wake, 1);
    }
    return rc;
}

/* A failed task's message, as the log line carries it (its start: a line
 * stays within what one write(2) keeps whole).  Returns msg. */
static char *log_failure(char *msg, int code)
{
    if (msg && *msg)
        mp_log(MP_LOG_INFO, "pool: a task failed (it returned %d): %.512s%s", code, msg,
               strlen(msg) > 512 ? "..." : "");
    return msg;
}

/* Reads what worker w left for DONE apply job e - its result, or on
 * failure the message it appended - and finishes it. */
void mp__pool_collect_apply(mp_pool *p, uint32_t e, uint32_t w)
{
    mp__job *j = &p->jobs[e];
    int64_t status = j->u.apply.status;
    size_t len = (size_t)j->u.apply.res_len;
    /* A failure's bytes are its message: read as text, and at most so much. */
    size_t want = status == 0 ? SIZE_MAX : MP__POOL_MSG_MAX;
    void *res = NULL;
    int rc = 0;
    if (!mp__pool_apply_result_valid(j, p->nworkers) || j->u.apply.runner != w) {
        rc = MP_EPROTO;
        mp__pool_corrupt(p, "a task's result was described beyond the worker's means");
    } else if (j->u.apply.res_where == MP__RES_RING) {
        rc = mp__pool_ring_take(p, w, j->u.apply.res_off, len, want, &res);
    } else if (len) {
        res = malloc(len + 1);
        if (res) {
            memcpy(res, j->res, len);
            ((char *)res)[len] = '\0';
        } else {
            rc = MP_ENOMEM;
        }
    }
    p->stats.tasks_done++;
    if (rc < 0) {
        free(res);
        mp__pool_finish_apply(p, e, rc, NULL, 0, 0, 0, NULL);
    } else if (status != 0) {
        mp__pool_finish_apply(p, e, MP_ETASK, NULL, 0, (int)status, 0,
                              log_failure(res, (int)status));
    } else {
        mp__pool_finish_apply(p, e, 0, res, len, 0, 0, NULL);
    }
}

static int failure_cmp(const failure *a, uint64_t first)
{
    return a->first < first ? -1 : a->first > first;
}

void mp__pool_fails_insert(failure **arr, size_t *n, size_t *cap, const failure *f)
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
void mp__pool_map_fail_items(mp_pool *p, uint32_t e, uint64_t first, uint64_t count, int err,
                             int task_error, int exitcode, const char *report)
{
    pjob *pj = &p->pjobs[e];
    if (count == 0)
        return;
    failure f = {first, count, err, task_error, exitcode};
    mp__pool_fails_insert(&pj->fails, &pj->nfails, &pj->capfails, &f);
    if (pj->errors)
        for (uint64_t i = 0; i < count; i++)
            pj->errors[first + i] = err;
    if (pj->first.count == 0 || first < pj->first.first) {
        pj->first = f;
        free(pj->first_report);
        pj->first_report = report ? strdup(report) : NULL;
    }
    if (pj->it)
        mp__pool_imap_add_failure(pj->it, &f);
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
    mp__pool_progress_emit(p, e, true);
    job_done_common(p, e);
    if (it)
        mp__pool_imap_job_done(p, it);
    if (f)
        mp__future_finish(f, status, NULL, 0, task_error, exitcode, report, idx);
    else
        free(report);
}

/* Unit u of map job e is final (done, failed or cancelled). */
void mp__pool_map_unit_final(mp_pool *p, uint32_t e, uint64_t u, bool copy)
{
    pjob *pj = &p->pjobs[e];
    /* Once, by the parent's own record: the unit's state in shared memory
     * only tells workers. */
    if (mp__pool_unit_is_final(pj, u))
        return;
    pj->ufinal[u / 64] |= (uint64_t)1 << (u % 64);
    mp__unit *unit = &mp__pool_units(p, e)[u];
    /* Relaxed: FINAL only tells workers' CASes to fail, which they do for
     * DONE alike. */
    atomic_store_explicit(&unit->state, MP__U_FINAL, memory_order_relaxed);
    uint64_t base = u * pj->chunk;
    uint64_t end = base + pj->chunk < pj->n ? base + pj->chunk : pj->n;
    if (copy && pj->user_out && pj->out_size) {
        size_t len = (size_t)((end - base) * pj->out_size);
        unsigned char *dst = pj->user_out + base * pj->out_size;
        const unsigned char *src = p->region.base + pj->desc.u.map.out_off + base * pj->out_size;
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
        mp__pool_imap_unit_final(p, pj->it, u);
    if (pj->units_final == pj->nunits)
        map_job_done(p, e);
    else if (pj->progress || pj->bar)
        mp__pool_progress_emit(p, e, false);
}

/* A DONE unit: collect it (the DONE -> FINAL step happens once). */
void mp__pool_collect_unit(mp_pool *p, uint32_t e, uint64_t u)
{
    if (p->pjobs[e].kind != MP__JOB_MAP || u >= p->pjobs[e].nunits ||
        mp__pool_unit_is_final(&p->pjobs[e], u))
        return;
    mp__unit *unit = &mp__pool_units(p, e)[u];
    if (atomic_load(&unit->state) != MP__U_DONE)
        return;
    p->stats.tasks_done++;
    /* A worker that wrote its outputs to the caller finished the unit
     * only after they were all there. */
    mp__pool_map_unit_final(p, e, u, !p->pjobs[e].out_remote);
}

/* A failure record of map job e: the items it names fail. */
static void handle_failure(mp_pool *p, uint32_t e, const mp__rec *r, char *msg)
{
    pjob *pj = &p->pjobs[e];
    uint64_t base = r->unit * pj->chunk;
    uint64_t end = base + pj->chunk < pj->n ? base + pj->chunk : pj->n;
    if (r->item < base || r->item >= end) {
        mp__pool_corrupt(p, "a completion record names an item outside its unit");
        return;
    }
    /* A range function fails its whole remaining range at once. */
    bool rest = r->kind == MP__REC_REST_ERROR || (pj->desc.flags & MP__JOB_RANGE);
    uint64_t count = rest ? end - r->item : 1;
    /* REST_ERROR: the worker could not reach the caller's arrays; the items
     * fail with that reason itself. */
    if (r->kind == MP__REC_REST_ERROR)
        mp__pool_map_fail_items(p, e, r->item, count, (int)r->code, 0, 0, NULL);
    else
        mp__pool_map_fail_items(p, e, r->item, count, MP_ETASK, (int)r->code, 0,
                                log_failure(msg, (int)r->code));
}

/* A record from worker w's ring.  One that cannot be (no such entry,
 * unit or item) means the ring was written over. */
static void handle_rec(mp_pool *p, uint32_t w, const mp__rec *r)
{
    if (!mp__pool_rec_valid(r)) {
        mp__pool_corrupt(p, "a completion record names nothing that exists");
        return;
    }
    /* A message is a result in the ring: taken in order, whatever else. */
    char *msg = NULL;
    if (r->msg_len &&
        mp__pool_ring_take(p, w, r->msg_off, r->msg_len, MP__POOL_MSG_MAX, (void **)&msg) < 0) {
        free(msg);
        msg = NULL;
    }
    uint32_t e = r->entry;
    pjob *pj = &p->pjobs[e];
    if (r->kind == MP__REC_DONE) {
        if (pj->kind == MP__JOB_APPLY) {
            if (atomic_load(&p->jobs[e].state) == MP__U_DONE)
                mp__pool_collect_apply(p, e, w);
        } else if (pj->kind == MP__JOB_MAP) {
            mp__pool_collect_unit(p, e, r->unit);
        }
    } else if (pj->kind == MP__JOB_MAP && r->unit < pj->nunits) {
        handle_failure(p, e, r, msg);
    }
    free(msg);
}

/* Drains slot w's completion ring.  Returns whether anything was there. */
/* Gives back ring space up to tail, and wakes the worker if it waits. */
static void ring_release(mp_pool *p, uint32_t w, mp__wslot *s, uint32_t tail)
{
    p->ws[w].done_tail = tail;
    atomic_store(&s->done_tail, tail);
    if (atomic_load(&s->waiting)) {
        atomic_fetch_add(&s->wake, 1);
        (void)mp__futex_wake(&s->wake, 1);
    }
}

bool mp__pool_drain_slot(mp_pool *p, uint32_t w)
{
    mp__wslot *s = mp__pool_wslot(p, w);
    /* The tail is the parent's own; the head is the worker's, and can be
     * at most a ringful ahead (anything else is a scribble: not followed). */
    uint32_t tail = p->ws[w].done_tail;
    uint32_t head = atomic_load(&s->done_head);
    if (tail == head)
        return false;
    while (tail != head && !p->resetting) {
        if (head - tail > MP__POOL_DONE) {
            mp__pool_corrupt(p, "a completion ring's head is past its end");
            break;
        }
        mp__rec r = s->ring[tail & (MP__POOL_DONE - 1)];
        p->ws[w].past_init = true;
        handle_rec(p, w, &r);
        tail++;
        if ((tail & 63) == 0 || tail == head)
            ring_release(p, w, s, tail);
        if (tail == head)
            head = atomic_load(&s->done_head);
    }
    if (!p->resetting)
        ring_release(p, w, s, tail);
    return true;
}

/* Gives a unit back to the queue: lowers the claim cursor to it and
 * publishes the job again. */
static void map_requeue(mp_pool *p, uint32_t e, uint64_t u)
{
    mp__job *j = &p->jobs[e];
    mp__unit *unit = &mp__pool_units(p, e)[u];
    atomic_store(&unit->state, MP__U_QUEUED);
    uint64_t cur = atomic_load(&j->next_unit);
    while (cur > u && !atomic_compare_exchange_weak(&j->next_unit, &cur, u)) {
    }
    mp__pool_publish(p, e, 1);
}

static bool retryable(mp_pool *p, int err)
{
    return (err == MP_EWORKER || err == MP_ETIMELIMIT) && p->state == ST_OPEN && !p->broken;
}

void mp__pool_fail_apply(mp_pool *p, uint32_t e, int err, int exitcode, const char *report)
{
    pjob *pj = &p->pjobs[e];
    if (retryable(p, err) && pj->attempts < p->opts.retries) {
        pj->attempts++;
        p->stats.tasks_retried++;
        atomic_store(&p->jobs[e].state, MP__U_QUEUED);
        mp__pool_publish(p, e, 1);
        return;
    }
    if (err != MP_ECANCELED)
        p->stats.tasks_failed++;
    mp__pool_finish_apply(p, e, err, NULL, 0, 0, exitcode, report ? strdup(report) : NULL);
}

void mp__pool_apply_died(mp_pool *p, uint32_t e, uint32_t w, uint64_t item, int err, int exitcode,
                         const char *report)
{
    if (item == MP__APPLY_WRITTEN) {
        /* Its result and status are there, only DONE is missing. */
        mp__pool_collect_apply(p, e, w);
    } else if (item == MP__APPLY_UNSTARTED && err != MP_ECANCELED && p->state == ST_OPEN &&
               !p->broken) {
        /* Claimed but never begun: nothing failed, run it again. */
        atomic_store(&p->jobs[e].state, MP__U_QUEUED);
        mp__pool_publish(p, e, 1);
    } else {
        mp__pool_fail_apply(p, e, err, exitcode, report);
    }
}

/* Runs of `item` of unit u so far, counting from its first failure.  The
 * per-unit records are made on the first failure of the map. */
static uint32_t item_tries(pjob *pj, uint64_t u, uint64_t item)
{
    if (!pj->uattempts) {
        pj->uattempts = calloc((size_t)pj->nunits, sizeof *pj->uattempts);
        pj->ufailed = calloc((size_t)pj->nunits, sizeof *pj->ufailed);
    }
    if (!pj->uattempts || !pj->ufailed)
        return 0;
    if (pj->ufailed[u] != item + 1) {
        pj->ufailed[u] = item + 1;
        pj->uattempts[u] = 0;
    }
    return pj->uattempts[u];
}

/* Unit u of map job e runs again from its item `from`: recorded in the
 * parent (the truth) and in the unit (what workers read).  Returns false
 * when memory for the parent's record runs out. */
static bool unit_resume_at(mp_pool *p, uint32_t e, uint64_t u, uint64_t from)
{
    pjob *pj = &p->pjobs[e];
    if (!pj->uresume)
        pj->uresume = calloc((size_t)pj->nunits, sizeof *pj->uresume);
    if (!pj->uresume)
        return false;
    pj->uresume[u] = (uint32_t)(from - u * pj->chunk);
    mp__pool_units(p, e)[u].resume = pj->uresume[u];
    return true;
}

/* The worker running unit u of map job e died with item `item` (UINT64_MAX:
 * before its first; end: after its last) in progress. */
void mp__pool_fail_map_unit(mp_pool *p, uint32_t e, uint64_t u, uint64_t item, int err,
                            int exitcode, const char *report)
{
    pjob *pj = &p->pjobs[e];
    uint64_t base = u * pj->chunk;
    uint64_t end = base + pj->chunk < pj->n ? base + pj->chunk : pj->n;
    uint64_t start = base + mp__pool_unit_resume(pj, u);
    bool range = pj->desc.flags & MP__JOB_RANGE;
    if (item == end) {
        /* Every item done or reported (the records were drained before):
         * only DONE is missing. */
        p->stats.tasks_done++;
        mp__pool_map_unit_final(p, e, u, !pj->out_remote);
        return;
    }
    if (item == UINT64_MAX || item < start || item >= end) {
        /* No item of this run had begun: nothing failed, run it again. */
        if (err == MP_ECANCELED || p->state != ST_OPEN) {
            mp__pool_map_fail_items(p, e, start, end - start, MP_ECANCELED, 0, 0, NULL);
            mp__pool_map_unit_final(p, e, u, true);
        } else {
            map_requeue(p, e, u);
        }
        return;
    }
    uint32_t tries = item_tries(pj, u, item);
    if (retryable(p, err) && tries < p->opts.retries && unit_resume_at(p, e, u, item)) {
        if (pj->uattempts)
            pj->uattempts[u]++;
        p->stats.tasks_retried++;
        map_requeue(p, e, u);
        return;
    }
    uint64_t count = range ? end - item : 1;
    if (err != MP_ECANCELED)
        p->stats.tasks_failed++;
    mp__pool_map_fail_items(p, e, item, count, err, 0, exitcode, report);
    uint64_t next = item + count;
    if (next >= end) {
        mp__pool_map_unit_final(p, e, u, true);
    } else if (err != MP_ECANCELED && p->state == ST_OPEN && unit_resume_at(p, e, u, next)) {
        map_requeue(p, e, u);
    } else {
        /* Stopping, or no memory to record where to resume. */
        int why = err == MP_ECANCELED || p->state != ST_OPEN ? MP_ECANCELED : MP_ENOMEM;
        mp__pool_map_fail_items(p, e, next, end - next, why, 0, 0, NULL);
        mp__pool_map_unit_final(p, e, u, true);
    }
}

/* After a death: units of maps below their claim cursor that nobody
 * claimed (a worker died between fetch-add and CAS) go back to the
 * queue. */
void mp__pool_requeue_orphans(mp_pool *p)
{
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        pjob *pj = &p->pjobs[e];
        if (pj->kind != MP__JOB_MAP || atomic_load(&p->jobs[e].seq) == MP__SEQ_RETIRED)
            continue;
        mp__job *j = &p->jobs[e];
        uint64_t cur = atomic_load(&j->next_unit);
        uint64_t lim = cur < pj->nunits ? cur : pj->nunits;
        mp__unit *units = mp__pool_units(p, e);
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
        mp__pool_publish(p, e, p->nworkers);
    }
}

/* Fails the items of unit u of map job e that no run has finished (from
 * its resume point on; all of them when whole) with status, and makes the
 * unit final. */
static void cancel_unit(mp_pool *p, uint32_t e, uint64_t u, int status, const char *report,
                        bool whole)
{
    pjob *pj = &p->pjobs[e];
    uint64_t base = u * pj->chunk + (whole ? 0 : mp__pool_unit_resume(pj, u));
    uint64_t end = (u + 1) * pj->chunk < pj->n ? (u + 1) * pj->chunk : pj->n;
    mp__pool_map_fail_items(p, e, base, end - base, status, 0, 0, report);
    mp__pool_map_unit_final(p, e, u, false);
}

bool mp__pool_apply_cancel_queued(mp_pool *p, uint32_t e, int status, const char *report)
{
    uint32_t expect = MP__U_QUEUED;
    if (!atomic_compare_exchange_strong(&p->jobs[e].state, &expect, MP__U_FINAL))
        return false;
    mp__pool_finish_apply(p, e, status, NULL, 0, 0, 0, report ? strdup(report) : NULL);
    return true;
}

bool mp__pool_map_cancel_queued(mp_pool *p, uint32_t e, int status, const char *report)
{
    pjob *pj = &p->pjobs[e];
    atomic_store(&p->jobs[e].next_unit, pj->nunits);
    mp__unit *units = mp__pool_units(p, e);
    uint64_t nunits = pj->nunits;
    bool started = false;
    /* The last unit made final ends the job and clears its entry. */
    for (uint64_t u = 0; u < nunits && p->pjobs[e].kind == MP__JOB_MAP; u++) {
        uint32_t expect = MP__U_QUEUED;
        if (!mp__pool_unit_is_final(pj, u) &&
            atomic_compare_exchange_strong(&units[u].state, &expect, MP__U_CANCELLED)) {
            started |= mp__pool_unit_resume(pj, u) != 0;
            cancel_unit(p, e, u, status, report, false);
        } else {
            started = true;
        }
    }
    return started;
}

/* Finishes pending work n, taken off the queue, with status. */
static void cancel_one_pending(mp_pool *p, pending *n, int status, const char *report)
{
    p->nactive--;
    if (n->pj.data_len)
        mp__region_release(&p->region, n->pj.data_off);
    if (n->pj.errors)
        for (uint64_t i = 0; i < n->pj.n; i++)
            n->pj.errors[i] = status;
    if (n->pj.fut)
        mp__future_finish(n->pj.fut, status, NULL, 0, 0, 0, report ? strdup(report) : NULL,
                          n->pj.kind == MP__JOB_MAP ? 0 : -1);
    if (n->pj.it) {
        struct mp_imap *it = n->pj.it;
        pthread_mutex_lock(&it->lock);
        it->cancel_err = status;
        it->job_active = false;
        mp__waiter_wake(it->word);
        pthread_mutex_unlock(&it->lock);
        if (n->pj.data_len)
            it->data_len = 0; /* freed above */
    }
    mp__pool_pjob_free(&n->pj);
    free(n);
}

/* Finishes every piece of work waiting in the parent with status. */
static void cancel_pending(mp_pool *p, int status, const char *report)
{
    while (p->pend_head) {
        pending *n = p->pend_head;
        p->pend_head = n->next;
        cancel_one_pending(p, n, status, report);
    }
    p->pend_tail = &p->pend_head;
}

void mp__pool_fail_pending_data(mp_pool *p, int status, const char *report)
{
    pending **pp = &p->pend_head;
    p->pend_tail = &p->pend_head;
    while (*pp) {
        pending *n = *pp;
        if (n->pj.data_len) {
            *pp = n->next;
            cancel_one_pending(p, n, status, report);
        } else {
            pp = &n->next;
            p->pend_tail = pp;
        }
    }
}

/* Cancels what no worker took: pending work and queued units.  status is
 * MP_ECANCELED, or MP_EINIT for a broken pool. */
void mp__pool_cancel_queued(mp_pool *p, int status, const char *report)
{
    cancel_pending(p, status, report);
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        if (p->pjobs[e].kind == MP__JOB_APPLY)
            (void)mp__pool_apply_cancel_queued(p, e, status, report);
        else if (p->pjobs[e].kind == MP__JOB_MAP)
            (void)mp__pool_map_cancel_queued(p, e, status, report);
    }
}

void mp__pool_fail_all(mp_pool *p, int status, const char *report)
{
    /* With no worker left, by the parent's records alone: what shared
     * memory says no longer matters (and may be scribbled over). */
    bool whole = status != MP_ECANCELED;
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        pjob *pj = &p->pjobs[e];
        if (pj->kind == MP__JOB_APPLY) {
            if (status != MP_ECANCELED)
                p->stats.tasks_failed++;
            mp__pool_finish_apply(p, e, status, NULL, 0, 0, 0, report ? strdup(report) : NULL);
        } else if (pj->kind == MP__JOB_MAP) {
            for (uint64_t u = 0; u < pj->nunits && p->pjobs[e].kind == MP__JOB_MAP; u++)
                if (!mp__pool_unit_is_final(pj, u))
                    cancel_unit(p, e, u, status, report, whole);
        }
    }
}
