/*
 * check.c - the supervisor's audit of the shared memory against its own
 * records, and the fresh start when the two disagree.
 *
 * DESIGN
 * Role.  Workers run user code with the control and data regions mapped,
 * so a task can write over them.  The parent never depends on what is
 * there for its own decisions: it keeps in its own memory what it
 * published (pool_int.h: jdesc, the position, which units are final,
 * where each resumes; the header's fixed fields, the function table, the
 * publication count, the stop order; per slot what it last wrote there),
 * and every value it reads from shared memory is checked before use.
 * This file compares the two wholesale:
 *
 *   - after a worker ended abnormally (a task that scribbled, then
 *     crashed), before what it held is settled;
 *   - every RECHECK_NS while work is outstanding (a task that scribbled
 *     and went on);
 *   - whenever settle.c meets a record that cannot be (mp__pool_corrupt).
 *
 * What workers write is judged by its range and its consistency (a unit
 * RUNNING by a worker is the one that worker's intent names); what only
 * the parent writes must equal the parent's copy.  Reads race with live
 * workers only where a worker may legitimately move on, and there a value
 * is judged only if it did not move meanwhile.
 *
 * A disagreement cannot be repaired in place: the damage may reach further
 * than what is looked at, inputs and outputs included.  So the pool starts
 * afresh: every worker is killed; once all are reaped, every job in
 * progress, and every waiting job whose data lies in the data region,
 * fails with MP_EPROTO (by the parent's records alone); the control
 * region is rewritten from the parent's records; then new workers start
 * and the other waiting work runs.  A task that corrupts shared memory
 * thus fails other tasks, but every future finishes and the pool goes on
 * (pool.h says so).
 *
 * Threads.  The supervisor; mp__pool_corrupt from settle.c, also in the
 * supervisor.  Locks: p->lock throughout.
 */
#define _GNU_SOURCE
#include "pool_int.h"

#include <stdarg.h>

/* What is wrong, written once into the caller's buffer. */
typedef struct finding {
    char *buf;
    size_t cap;
} finding;

static bool bad(finding *f, const char *fmt, ...) MP__PRINTF(2, 3);

static bool bad(finding *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started just above */
    (void)vsnprintf(f->buf, f->cap, fmt, ap);
    va_end(ap);
    return false;
}

/* Whether worker w, alive, holds what a state word `st` at *state says it
 * holds: its intent names entry e, unit u.  A worker may finish the unit
 * and claim another between the reads: judged only if the state did not
 * move meanwhile (and it cannot come back without the supervisor). */
static bool held_as_said(mp_pool *p, uint32_t w, uint32_t e, uint64_t u,
                         const _Atomic uint32_t *state, uint32_t st)
{
    if (w >= p->nworkers || !p->ws[w].proc)
        return false;
    mp__wslot *s = mp__pool_wslot(p, w);
    /* The intent's job first (its store is a release, after the unit
     * before was finished), then its unit, then the state again. */
    uint32_t ij = atomic_load_explicit(&s->intent_job, memory_order_acquire);
    uint64_t iu = atomic_load(&s->intent_unit);
    if (atomic_load(state) != st)
        return true;
    return ij == e + 1 && iu == u;
}

/* A unit state a worker may have left: queued, running by a live worker
 * that says so, or done. */
static bool state_ok(mp_pool *p, uint32_t e, uint64_t u, const _Atomic uint32_t *state)
{
    uint32_t st = atomic_load(state);
    if (st == MP__U_QUEUED || st == MP__U_DONE)
        return true;
    if (MP__U_KIND(st) != MP__U_RUNNING)
        return false;
    return held_as_said(p, (st >> 8) - 1, e, u, state, st);
}

static bool audit_hdr(mp_pool *p, finding *f)
{
    mp__pool_hdr *h = p->hdr;
    const hdr_fixed *x = &p->hdr_fixed;
    if (h->magic != x->magic || h->nworkers != x->nworkers || h->ctrl_size != x->ctrl_size ||
        h->data_reserve != x->data_reserve || h->order_off != x->order_off ||
        h->fns_off != x->fns_off || h->jobs_off != x->jobs_off || h->slots_off != x->slots_off ||
        h->vm_pid != x->vm_pid || h->vm_probe_addr != x->vm_probe_addr ||
        h->vm_probe_val != x->vm_probe_val)
        return bad(f, "the control region's header changed");
    uint64_t head = atomic_load(&h->job_head), tail = atomic_load(&h->job_tail);
    if (tail != p->pub_tail || head > tail)
        return bad(f, "the dispatch queue's positions are %llu..%llu, published %llu",
                   (unsigned long long)head, (unsigned long long)tail,
                   (unsigned long long)p->pub_tail);
    if (atomic_load(&h->stop) != p->stop_sent || atomic_load(&h->data_size) != p->region.size ||
        atomic_load(&h->vm) > MP__VM_DENIED)
        return bad(f, "the control region's header changed");
    for (uint32_t i = 0; i < p->nfns; i++)
        if (memcmp(&p->fns[i], &p->fns_copy[i], sizeof p->fns_copy[i]) != 0)
            return bad(f, "entry %u of the function table changed", i);
    return true;
}

/* An entry in use: what the parent published, unchanged; its units in
 * states workers may have left. */
static bool audit_job(mp_pool *p, uint32_t e, uint64_t head, finding *f)
{
    const pjob *pj = &p->pjobs[e];
    mp__job *j = &p->jobs[e];
    const jdesc *d = &pj->desc;
    if (atomic_load(&j->seq) != pj->pos || j->kind != d->kind || j->fn != d->fn ||
        j->flags != d->flags)
        return bad(f, "job entry %u changed", e);
    if (!pj->republish && pj->pos >= head && p->order[pj->pos & (MP__POOL_ORDER - 1)] != e)
        return bad(f, "dispatch position %llu no longer names job entry %u",
                   (unsigned long long)pj->pos, e);
    if (d->kind == MP__JOB_APPLY) {
        uint64_t len = d->u.apply.arg_len;
        if (j->u.apply.arg_len != len || j->u.apply.arg_off != d->u.apply.arg_off ||
            (len <= MP__POOL_INLINE && memcmp(j->arg, d->arg, (size_t)len) != 0))
            return bad(f, "the argument of job entry %u changed", e);
        if (!state_ok(p, e, 0, &j->state))
            return bad(f, "job entry %u is in state %#x", e, atomic_load(&j->state));
        return true;
    }
    if (memcmp(&j->u.map, &d->u.map, sizeof d->u.map) != 0)
        return bad(f, "the map in job entry %u changed", e);
    mp__unit *units = mp__pool_units(p, e);
    for (uint64_t u = 0; u < pj->nunits; u++) {
        bool ok = mp__pool_unit_is_final(pj, u) ? atomic_load(&units[u].state) == MP__U_FINAL
                                                : units[u].resume == mp__pool_unit_resume(pj, u) &&
                                                      state_ok(p, e, u, &units[u].state);
        if (!ok)
            return bad(f, "unit %llu of the map in job entry %u is in state %#x",
                       (unsigned long long)u, e, atomic_load(&units[u].state));
    }
    return true;
}

static bool audit_jobs(mp_pool *p, finding *f)
{
    uint64_t head = atomic_load(&p->hdr->job_head);
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        if (p->pjobs[e].kind) {
            if (!audit_job(p, e, head, f))
                return false;
        } else if (atomic_load(&p->jobs[e].seq) != MP__SEQ_RETIRED) {
            return bad(f, "job entry %u, not in use, was published", e);
        }
    }
    return true;
}

/* The slots of live workers: what the supervisor wrote there unchanged,
 * what the worker wrote within range. */
static bool audit_slots(mp_pool *p, finding *f)
{
    for (uint32_t w = 0; w < p->nworkers; w++) {
        const wstate *ws = &p->ws[w];
        if (!ws->proc)
            continue;
        mp__wslot *s = mp__pool_wslot(p, w);
        uint32_t tail = atomic_load(&s->done_tail), head = atomic_load(&s->done_head);
        if (tail != ws->done_tail || head - tail > MP__POOL_DONE ||
            atomic_load(&s->res_consumed) != ws->res_consumed ||
            atomic_load(&s->res_tail) != ws->res_tail || atomic_load(&s->hazard) > MP__POOL_JOBS ||
            atomic_load(&s->intent_job) > MP__POOL_JOBS || atomic_load(&s->state) > MP__W_CUT_OFF)
            return bad(f, "the slot of worker %u changed", w);
    }
    return true;
}

bool mp__pool_audit(mp_pool *p, char *why, size_t cap)
{
    finding f = {why, cap};
    return audit_hdr(p, &f) && audit_slots(p, &f) && audit_jobs(p, &f);
}

void mp__pool_corrupt(mp_pool *p, const char *why)
{
    if (p->resetting || p->state >= ST_TERMINATING)
        return;
    p->resetting = true;
    p->stats.pool_resets++;
    free(p->reset_report);
    p->reset_report = mp__pool_printf(
        "the pool's shared memory was overwritten, most likely by a task writing where it "
        "should not (%s): the work in progress fails and the pool starts afresh",
        why);
    mp_log(MP_LOG_ERROR, "pool: %s", p->reset_report ? p->reset_report : why);
    for (uint32_t w = 0; w < p->nworkers; w++) {
        wstate *ws = &p->ws[w];
        if (!ws->proc)
            continue;
        ws->doomed = true; /* what it held is failed below, not settled */
        mp_process_kill(ws->proc);
    }
}

/* The control region as mp_pool_new() laid it out, with nothing published
 * and the function table from the parent's copy.  No worker is alive. */
static void ctrl_rebuild(mp_pool *p)
{
    mp__pool_hdr *h = p->hdr;
    const hdr_fixed *x = &p->hdr_fixed;
    h->magic = x->magic;
    h->nworkers = x->nworkers;
    h->ctrl_size = x->ctrl_size;
    h->data_reserve = x->data_reserve;
    h->order_off = x->order_off;
    h->fns_off = x->fns_off;
    h->jobs_off = x->jobs_off;
    h->slots_off = x->slots_off;
    h->vm_pid = x->vm_pid;
    h->vm_probe_addr = x->vm_probe_addr;
    h->vm_probe_val = x->vm_probe_val;
    atomic_store(&h->vm, p->vm_initial);
    atomic_store(&h->job_head, 0);
    atomic_store(&h->job_tail, 0);
    p->pub_tail = 0;
    atomic_store(&h->work_seq, 0);
    atomic_store(&h->idle, 0);
    atomic_store(&h->stop, p->stop_sent);
    atomic_store(&h->sup_sleeping, 0);
    atomic_store(&h->data_size, p->region.size);
    for (uint32_t i = 0; i < MP__POOL_ORDER; i++)
        p->order[i] = UINT32_MAX;
    memcpy(p->fns, p->fns_copy, sizeof p->fns_copy);
    p->nfree = 0;
    for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
        mp__job *j = &p->jobs[e];
        atomic_store(&j->seq, MP__SEQ_RETIRED);
        atomic_store(&j->state, MP__U_FREE);
        atomic_store(&j->next_unit, 0);
        p->free_entries[p->nfree++] = MP__POOL_JOBS - 1 - e;
    }
    p->nretired = 0;
    p->nrepublish = 0;
}

void mp__pool_reset_finish(mp_pool *p)
{
    p->resetting = false;
    if (p->state >= ST_TERMINATING)
        return; /* terminate fails what remains */
    const char *rep = p->reset_report;
    mp__pool_fail_all(p, MP_EPROTO, rep);
    mp__pool_fail_pending_data(p, MP_EPROTO, rep);
    ctrl_rebuild(p);
    free(p->reset_report);
    p->reset_report = NULL;
}
