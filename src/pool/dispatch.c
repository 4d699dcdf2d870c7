/*
 * dispatch.c - job entries and the dispatch queue, on the parent's side:
 * where submitted work goes and how workers find it.
 *
 * DESIGN
 * Role.  A prepared job (an mp__job and the parent's pjob beside it) goes
 * into a free job entry and is published at the next position of the
 * dispatch queue (records.h, Dispatch), waking idle workers only when
 * some sleep; when no entry or no position is free it waits in the
 * parent's pending queue, in order.  An entry whose work is final is
 * retired, and reused once no worker's hazard names it.  The function
 * table (a task function's index, and its reference for fresh images)
 * lives here too.
 *
 * Threads.  Submitting threads (apply.c, map.c) and the supervisor.
 *
 * Locks.  Every function here runs under p->lock; none blocks.  What the
 * workers see is ordered by the atomics explained at each store.
 */
#define _GNU_SOURCE
#include "pool_int.h"

/* The error a submission gets from the pool's state, or 0. */
int mp__pool_refusal(mp_pool *p)
{
    if (p->broken)
        return mp__fail(p->broken, "pool: broken, it takes no more work: %s",
                        p->broken_report ? p->broken_report : "(no report)");
    if (p->state != ST_OPEN)
        return mp__fail(MP_ECLOSED, "pool: closed (or terminated), it takes no more work");
    return 0;
}

int mp__pool_fn_id(mp_pool *p, const void *fn, uint32_t *id)
{
    for (uint32_t i = p->nfns; i-- > 0;) {
        if (p->fnptr[i] == fn) {
            *id = i;
            return 0;
        }
    }
    if (p->nfns == MP__POOL_FNS)
        return mp__fail(MP_ENOSPC,
                        "pool: already %d distinct task functions, the most a pool takes",
                        MP__POOL_FNS);
    mp__fnent *ent = &p->fns_copy[p->nfns];
    ent->ptr = (uint64_t)(uintptr_t)fn;
    if (p->opts.start_method != MP_START_FORK) {
        int rc = mp__fnref_from_ptr(fn, &ent->ref);
        if (rc < 0)
            return mp__fail(rc,
                            "pool: the task function at %p cannot be found by name in a "
                            "fresh image (spawn, forkserver): is it in a loaded module?",
                            fn);
    }
    p->fns[p->nfns] = *ent;
    p->fnptr[p->nfns] = fn;
    *id = p->nfns++;
    return 0;
}

static bool can_publish(mp_pool *p)
{
    return p->pub_tail - atomic_load(&p->hdr->job_head) < MP__POOL_ORDER - 1;
}

/* Publishes entry e at the next position and wakes up to `wake` idle
 * workers. */
bool mp__pool_publish(mp_pool *p, uint32_t e, uint32_t wake)
{
    mp__pool_hdr *h = p->hdr;
    /* Starting afresh (check.c): nothing goes into the control region
     * until it is rewritten; then the entry is failed or published. */
    if (p->resetting || !can_publish(p)) {
        if (!p->pjobs[e].republish)
            p->nrepublish++;
        p->pjobs[e].republish = true;
        return false;
    }
    /* The parent's own count, not what shared memory says (check.c). */
    uint64_t pos = p->pub_tail++;
    p->order[pos & (MP__POOL_ORDER - 1)] = e;
    atomic_store(&p->jobs[e].seq, pos);
    p->pjobs[e].pos = pos;
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
    jdesc *d = &p->pjobs[e].desc;
    d->kind = job->kind;
    d->fn = job->fn;
    d->flags = job->flags;
    d->u = job->u;
    memcpy(d->arg, j->arg, sizeof d->arg);
    if (pj->fut)
        mp__future_set_token(pj->fut, TOK_ENTRY(e));
}

static uint32_t wake_count(mp_pool *p, const mp__job *job)
{
    if (job->kind == MP__JOB_APPLY)
        return 1;
    return job->u.map.nunits < p->nworkers ? (uint32_t)job->u.map.nunits : p->nworkers;
}

void mp__pool_republish(mp_pool *p)
{
    for (uint32_t e = 0; e < MP__POOL_JOBS && p->nrepublish; e++)
        if (p->pjobs[e].kind && p->pjobs[e].republish)
            mp__pool_publish(p, e, 1);
}

/* Moves pending work into free entries, in order. */
void mp__pool_publish_pending(mp_pool *p)
{
    while (p->pend_head && p->nfree > 0 && can_publish(p) && !p->resetting) {
        pending *n = p->pend_head;
        p->pend_head = n->next;
        if (!p->pend_head)
            p->pend_tail = &p->pend_head;
        uint32_t e = (uint32_t)entry_take(p);
        entry_install(p, e, &n->job, &n->pj);
        mp__pool_publish(p, e, wake_count(p, &n->job));
        free(n);
    }
}

/* Submits a prepared job: straight into an entry when one is free and
 * nothing waits before it, else to the pending queue.  Returns 0 or
 * MP_ENOMEM (the caller still owns what the job refers to). */
int mp__pool_submit_job(mp_pool *p, const mp__job *job, const pjob *pj)
{
    p->nactive++;
    if (p->sup_unbounded && p->opts.task_timeout > 0) {
        /* Its watchdog must start ticking. */
        p->sup_unbounded = false;
        mp__eventfd_signal(p->ev_fd);
    }
    if (!p->pend_head && p->nfree > 0 && can_publish(p) && !p->resetting) {
        uint32_t e = (uint32_t)entry_take(p);
        entry_install(p, e, job, pj);
        mp__pool_publish(p, e, wake_count(p, job));
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
void mp__pool_entry_release(mp_pool *p, uint32_t e)
{
    /* seq first, then the hazards (both seq_cst): a worker announces its
     * hazard, then reads seq; one of us sees the other. */
    atomic_store(&p->jobs[e].seq, MP__SEQ_RETIRED);
    atomic_store(&p->jobs[e].state, MP__U_FREE);
    pjob *pj = &p->pjobs[e];
    if (pj->republish)
        p->nrepublish--;
    mp__pool_pjob_free(pj);
    memset(pj, 0, sizeof *pj);
    for (uint32_t w = 0; w < p->nworkers; w++) {
        if (atomic_load(&mp__pool_wslot(p, w)->hazard) == e + 1) {
            p->retired[p->nretired++] = e;
            return;
        }
    }
    p->free_entries[p->nfree++] = e;
}

void mp__pool_pjob_free(pjob *pj)
{
    free(pj->fails);
    free(pj->first_report);
    free(pj->ufinal);
    free(pj->uresume);
    free(pj->uattempts);
    free(pj->ufailed);
}

void mp__pool_retry_retired(mp_pool *p)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < p->nretired; i++) {
        uint32_t e = p->retired[i];
        bool held = false;
        for (uint32_t w = 0; w < p->nworkers && !held; w++)
            held = atomic_load(&mp__pool_wslot(p, w)->hazard) == e + 1;
        if (held)
            p->retired[k++] = e;
        else
            p->free_entries[p->nfree++] = e;
    }
    p->nretired = k;
}
