/*
 * apply.c - apply and submit, and the operations a pool's futures call
 * back into.
 *
 * DESIGN
 * Role.  An apply task is one unit: its argument bytes go inline in the
 * job entry when small, into the data region otherwise, and the job is
 * handed to dispatch.c.  Errors come back through the future (as Python's
 * apply_async does); NULL only when memory for the future runs out.  The
 * future operations (cancel, running, interrupt, dispatch) serve apply
 * tasks and maps alike.
 *
 * Threads.  Any thread of the owning process.
 *
 * Locks.  p->lock while the job is prepared and submitted, let go during
 * the copy of a large argument into a block nobody else sees yet.
 */
#define _GNU_SOURCE
#include "pool_int.h"
#include "ranks.h"

/* Cancels f while it waits in the parent as pending node n. */
static int cancel_pending(mp_pool *p, mp_future *f, pending *n)
{
    for (pending **pp = &p->pend_head; *pp; pp = &(*pp)->next) {
        if (*pp != n)
            continue;
        *pp = n->next;
        if (p->pend_tail == &n->next)
            p->pend_tail = pp;
        p->nactive--;
        if (n->pj.data_len)
            mp__region_release(&p->region, n->pj.data_off);
        mp__pool_pjob_free(&n->pj);
        free(n);
        mp__future_finish(f, MP_ECANCELED, NULL, 0, 0, 0, NULL, -1);
        return 0;
    }
    return MP_EBUSY;
}

/* Cancels f, published in entry e, if no worker took it. */
static int cancel_entry(mp_pool *p, mp_future *f, uint32_t e)
{
    if (e >= MP__POOL_JOBS || p->pjobs[e].fut != f)
        return MP_EBUSY;
    if (p->pjobs[e].kind == MP__JOB_APPLY)
        return mp__pool_apply_cancel_queued(p, e, MP_ECANCELED, NULL) ? 0 : MP_EBUSY;
    /* Items no worker has started are cancelled; the map is cancelled as a
     * whole only if none had. */
    if (p->pjobs[e].kind == MP__JOB_MAP)
        return mp__pool_map_cancel_queued(p, e, MP_ECANCELED, NULL) ? MP_EBUSY : 0;
    return MP_EBUSY;
}

static int op_cancel(void *owner, mp_future *f)
{
    mp_pool *p = owner;
    pthread_mutex_lock(&p->lock);
    uint64_t tok = mp__future_token(f);
    int rc = MP_EBUSY;
    if (tok & TOK_PENDING)
        rc = cancel_pending(p, f, (pending *)(uintptr_t)(tok & ~(uint64_t)TOK_PENDING));
    else if (tok)
        rc = cancel_entry(p, f, (uint32_t)(tok >> 1) - 1);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static bool op_running(void *owner, const mp_future *f)
{
    mp_pool *p = owner;
    pthread_mutex_lock(&p->lock);
    uint64_t tok = mp__future_token(f);
    bool r = false;
    if (tok && !(tok & TOK_PENDING)) {
        uint32_t e = (uint32_t)(tok >> 1) - 1;
        if (e < MP__POOL_JOBS && p->pjobs[e].fut == f) {
            if (p->pjobs[e].kind == MP__JOB_APPLY)
                r = MP__U_KIND(atomic_load(&p->jobs[e].state)) == MP__U_RUNNING;
            else
                r = atomic_load(&p->jobs[e].next_unit) > 0;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return r;
}

void mp__pool_op_interrupt(void *owner)
{
    mp_pool_terminate(owner);
}

int mp__pool_op_dispatch(void *owner, void (*fn)(void *), void *arg)
{
    return mp__pool_ev_post(owner, fn, arg);
}

const mp__future_ops mp__pool_future_ops = {
    mp__pool_hold, mp__pool_release,      op_cancel,
    op_running,    mp__pool_op_interrupt, mp__pool_op_dispatch};

typedef struct apply_cbs {
    mp_future_cb ok, err;
    void *ctx;
} apply_cbs;

static void apply_cb_trampoline(mp_future *f, void *arg)
{
    apply_cbs *c = arg;
    if (mp_future_status(f) == 0) {
        if (c->ok)
            c->ok(f, c->ctx);
    } else if (c->err) {
        c->err(f, c->ctx);
    }
    free(c);
}

/* Copies an apply task's argument bytes from src (the default filler). */
static void copy_arg(void *dst, size_t len, const void *src)
{
    memcpy(dst, src, len);
}

/* Why a submission is refused before it reaches the pool, said in
 * mp_last_error_detail() as well as in the failed future; or 0. */
static int submit_refusal(mp_pool *p, mp_task_fn fn, size_t len, const void *arg)
{
    if (!p || !fn)
        return mp__fail(MP_EINVAL, "pool submission: %s must not be NULL", !p ? "pool" : "fn");
    if (len && !arg)
        return mp__fail(MP_EINVAL,
                        "pool submission: arg must not be NULL when len > 0 (got len %zu)", len);
    if (len > DATA_RESERVE)
        return mp__fail(MP_EINVAL,
                        "pool submission: %zu argument bytes, more than the %zu a pool takes", len,
                        DATA_RESERVE);
    if (!mp__pool_ours(p))
        return mp__fail(MP_ESTATE, "pool submission: the pool belongs to process %d, not this one",
                        (int)p->owner);
    return 0;
}

/* Submits fn with len argument bytes that fill writes straight to their
 * place in shared memory (or the job entry), from src. */
static mp_future *apply_submit_fill(mp_pool *p, mp_task_fn fn, size_t len, mp__pool_arg_fill fill,
                                    const void *arg, apply_cbs *cbs)
{
    int bad = submit_refusal(p, fn, len, arg);
    if (bad < 0) {
        free(cbs);
        return mp__future_new_failed(bad, NULL);
    }
    mp_future *f = mp__future_new(p->ranks ? &mp__rpool_future_ops : &mp__pool_future_ops, p);
    if (!f) {
        free(cbs);
        return NULL;
    }
    if (cbs && mp_future_add_done_callback(f, apply_cb_trampoline, cbs) < 0)
        free(cbs);
    if (p->ranks) {
        mp__rpool_apply_submit(p, f, fn, len, fill, arg);
        return f;
    }
    mp__job job;
    memset(&job, 0, sizeof job);
    job.kind = MP__JOB_APPLY;
    job.u.apply.arg_len = len;
    pjob pj;
    memset(&pj, 0, sizeof pj);
    pj.kind = MP__JOB_APPLY;
    pj.fut = f;
    pthread_mutex_lock(&p->lock);
    int rc = mp__pool_refusal(p);
    if (rc == 0)
        rc = mp__pool_fn_id(p, (const void *)fn, &job.fn);
    if (rc == 0 && len > MP__POOL_INLINE) {
        size_t off;
        rc = mp__region_alloc(&p->region, len, &off);
        if (rc == 0) {
            job.u.apply.arg_off = off;
            pj.data_off = off;
            pj.data_len = len;
            if (len >= COPY_UNLOCKED) {
                /* The block is ours alone until published. */
                pthread_mutex_unlock(&p->lock);
                fill(p->region.base + off, len, arg);
                pthread_mutex_lock(&p->lock);
                rc = mp__pool_refusal(p);
                if (rc < 0)
                    mp__region_release(&p->region, off);
            } else {
                fill(p->region.base + off, len, arg);
            }
        }
    } else if (rc == 0 && len) {
        fill(job.arg, len, arg);
    }
    if (rc == 0) {
        rc = mp__pool_submit_job(p, &job, &pj);
        if (rc < 0 && pj.data_len)
            mp__region_release(&p->region, pj.data_off);
    }
    if (rc < 0) {
        const char *rep = p->broken ? p->broken_report : NULL;
        mp__future_finish(f, rc, NULL, 0, 0, 0, rep ? strdup(rep) : NULL, -1);
    }
    pthread_mutex_unlock(&p->lock);
    return f;
}

static mp_future *apply_submit(mp_pool *p, mp_task_fn fn, const void *arg, size_t len,
                               apply_cbs *cbs)
{
    return apply_submit_fill(p, fn, len, copy_arg, arg, cbs);
}

mp_future *mp__pool_apply_fill(mp_pool *p, mp_task_fn fn, size_t len, mp__pool_arg_fill fill,
                               const void *src)
{
    return apply_submit_fill(p, fn, len, fill, src, NULL);
}

mp_future *mp_pool_apply_async(mp_pool *p, mp_task_fn fn, const void *arg, size_t len)
{
    return apply_submit(p, fn, arg, len, NULL);
}

mp_future *mp_pool_submit(mp_pool *p, mp_task_fn fn, const void *arg, size_t len)
{
    return apply_submit(p, fn, arg, len, NULL);
}

mp_future *mp_pool_apply_async_cb(mp_pool *p, mp_task_fn fn, const void *arg, size_t len,
                                  mp_future_cb callback, mp_future_cb error_callback, void *ctx)
{
    apply_cbs *c = NULL;
    if (callback || error_callback) {
        c = malloc(sizeof *c);
        if (!c)
            return NULL;
        *c = (apply_cbs){callback, error_callback, ctx};
    }
    return apply_submit(p, fn, arg, len, c);
}

int mp_pool_apply(mp_pool *p, mp_task_fn fn, const void *arg, size_t len, void *out, size_t cap,
                  size_t *out_len, double timeout)
{
    MP__NONNULL(p);
    MP__NONNULL(fn);
    if (cap && !out)
        return mp__fail(MP_EINVAL, "mp_pool_apply: out must not be NULL when cap > 0 (got cap %zu)",
                        cap);
    if (mp__timeout_check(timeout) < 0)
        return mp__fail(MP_EINVAL,
                        "mp_pool_apply: timeout must be a number, < 0 for forever (got %g)",
                        timeout);
    mp_future *f = mp_pool_apply_async(p, fn, arg, len);
    if (!f)
        return MP_ENOMEM;
    int rc = mp_future_get(f, out, cap, out_len, timeout);
    if (rc == MP_ETIMEDOUT && !mp_future_done(f))
        (void)mp_future_cancel(f);
    mp_future_free(f);
    return rc;
}
