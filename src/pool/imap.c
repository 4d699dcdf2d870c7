/*
 * imap.c - imap and imap_unordered: a map whose results are taken one by
 * one.
 *
 * DESIGN
 * Role.  The map runs as any other (map.c) with its outputs left in the
 * data region; the supervisor tells the iterator which units are final
 * (mp__pool_imap_unit_final) and which items failed, and mp_imap_next()
 * hands them out, in index order or as they come.  The iterator keeps the
 * map's block alive until it is freed.
 *
 * Threads.  The supervisor calls the mp__pool_imap_* functions; one
 * caller thread at a time uses an iterator.
 *
 * Locks.  it->lock guards the iterator; the supervisor takes it inside
 * p->lock.  mp_imap_next() waits without any lock, on a futex word the
 * supervisor bumps.
 */
#define _GNU_SOURCE
#include "pool_int.h"
#include "ranks.h"

/* Called by the supervisor under p->lock. */
void mp__pool_imap_unit_final(mp_pool *p, struct mp_imap *it, uint64_t u)
{
    (void)p;
    pthread_mutex_lock(&it->lock);
    it->unit_final[u] = 1;
    it->uq[it->uq_tail++] = u;
    mp__waiter_wake(it->word);
    pthread_mutex_unlock(&it->lock);
}

void mp__pool_imap_add_failure(struct mp_imap *it, const failure *f)
{
    pthread_mutex_lock(&it->lock);
    mp__pool_fails_insert(&it->fails, &it->nfails, &it->capfails, f);
    pthread_mutex_unlock(&it->lock);
}

void mp__pool_imap_job_done(mp_pool *p, struct mp_imap *it)
{
    (void)p;
    pthread_mutex_lock(&it->lock);
    it->job_active = false;
    mp__waiter_wake(it->word);
    pthread_mutex_unlock(&it->lock);
}

/* The error of item i, or 0 (under it->lock). */
static int imap_item_error(struct mp_imap *it, uint64_t i)
{
    size_t lo = 0, hi = it->nfails;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (it->fails[mid].first <= i)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Runs may overlap only when an item failed in a run and again on its
     * own; any run covering i names its error. */
    for (size_t k = lo; k-- > 0;) {
        const failure *f = &it->fails[k];
        if (i < f->first + f->count)
            return f->err;
        if (lo - k > 64)
            break;
    }
    return 0;
}

/* An iterator for a map of s->n items, holding a reference on p.  NULL
 * when memory runs out. */
static mp_imap *imap_alloc(mp_pool *p, const mp_map_spec *s, bool ordered)
{
    mp_imap *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    uint64_t chunk, nunits;
    mp__pool_map_geometry(p, s->n, s->chunksize, &chunk, &nunits);
    it->unit_final = calloc((size_t)nunits + 1, 1);
    it->uq = calloc((size_t)nunits + 1, sizeof *it->uq);
    if (!it->unit_final || !it->uq) {
        free(it->unit_final);
        free(it->uq);
        free(it);
        return NULL;
    }
    pthread_mutex_init(&it->lock, NULL);
    it->ordered = ordered;
    it->n = s->n;
    it->out_size = s->out_size;
    it->pool = p;
    mp__pool_hold(p);
    return it;
}

int mp_pool_imap_ex(mp_pool *p, const mp_map_spec *s, bool ordered, mp_imap **out)
{
    MP__NONNULL(out);
    *out = NULL;
    MP__NONNULL(p);
    int bad = mp__pool_map_check("mp_pool_imap_ex", s, MODE_IMAP);
    if (bad < 0)
        return bad;
    if (!mp__pool_ours(p))
        return mp__fail(MP_ESTATE, "mp_pool_imap_ex: p was made by another process");
    mp_imap *it = imap_alloc(p, s, ordered);
    if (!it)
        return MP_ENOMEM;
    int rc;
    if (s->n) {
        it->job_active = true;
        rc = p->ranks ? mp__rpool_map_submit(p, s, NULL, it)
                      : mp__pool_map_submit(p, s, MODE_IMAP, NULL, it);
        if (rc < 0) {
            it->job_active = false;
            it->data_len = 0; /* freed by the failed submission */
        }
    } else {
        pthread_mutex_lock(&p->lock);
        rc = mp__pool_refusal(p);
        pthread_mutex_unlock(&p->lock);
    }
    if (rc < 0) {
        mp_imap_free(it);
        return rc;
    }
    *out = it;
    return 0;
}

int mp_pool_imap(mp_pool *p, mp_map_fn fn, const void *in, size_t n, size_t in_size,
                 size_t out_size, size_t chunksize, mp_imap **out)
{
    mp_map_spec s = mp__pool_map_spec(fn, in, n, in_size, NULL, out_size, chunksize);
    return mp_pool_imap_ex(p, &s, true, out);
}

int mp_pool_imap_unordered(mp_pool *p, mp_map_fn fn, const void *in, size_t n, size_t in_size,
                           size_t out_size, size_t chunksize, mp_imap **out)
{
    mp_map_spec s = mp__pool_map_spec(fn, in, n, in_size, NULL, out_size, chunksize);
    return mp_pool_imap_ex(p, &s, false, out);
}

/* Takes the next ready item (under it->lock).  Returns 1 and sets *item
 * when there is one, 0 when none is ready yet. */
static int imap_take(mp_imap *it, uint64_t *item)
{
    if (it->ordered) {
        uint64_t i = it->next_index;
        if (!it->unit_final[i / it->chunk])
            return 0;
        it->next_index++;
        *item = i;
        return 1;
    }
    for (;;) {
        if (it->in_unit && it->cur < it->cur_end) {
            *item = it->cur++;
            return 1;
        }
        if (it->uq_head == it->uq_tail)
            return 0;
        uint64_t u = it->uq[it->uq_head++];
        it->cur = u * it->chunk;
        it->cur_end = it->cur + it->chunk < it->n ? it->cur + it->chunk : it->n;
        it->in_unit = true;
    }
}

/* Hands out item i: its output to out, its index to *index.  Returns the
 * item's outcome. */
static int imap_yield(mp_imap *it, uint64_t i, void *out, size_t *index)
{
    it->yielded++;
    if (index)
        *index = (size_t)i;
    if (out && it->out_size)
        memcpy(out, it->outs + i * it->out_size, (size_t)it->out_size);
    return imap_item_error(it, i);
}

/* The next answer, when there is one without waiting: an item's outcome,
 * MP_EOF, or the error that cancelled the map.  Under it->lock. */
static bool imap_ready(mp_imap *it, void *out, size_t *index, int *rc)
{
    uint64_t i;
    if (it->yielded == it->n)
        *rc = MP_EOF;
    else if (imap_take(it, &i))
        *rc = imap_yield(it, i, out, index);
    else if (it->cancel_err < 0)
        *rc = it->cancel_err;
    else
        return false;
    return true;
}

/* Sleeps, without it->lock, until the supervisor bumps the waiter's word,
 * a SIGINT, or the deadline.  Returns true when the wait is over, with *rc:
 * MP_ECANCELED on SIGINT; at the deadline, an item that came just then or
 * MP_ETIMEDOUT. */
static bool imap_sleep(mp_imap *it, mp__waiter *w, int64_t deadline, void *out, size_t *index,
                       int *rc)
{
    uint32_t seen = w->word ? atomic_load(w->word) : 0;
    pthread_mutex_unlock(&it->lock);
    if (mp__waiter_interrupted(w)) {
        pthread_mutex_lock(&it->lock);
        *rc = MP_ECANCELED;
        return true;
    }
    int r = w->word ? mp__futex_wait(w->word, seen, deadline) : 0;
    if (!w->word)
        mp__sleep_ns(1000000);
    pthread_mutex_lock(&it->lock);
    if (r != MP_ETIMEDOUT && (w->word || mp__remaining_ns(deadline) > 0))
        return false;
    uint64_t j;
    bool got = it->yielded < it->n && imap_take(it, &j);
    *rc = got ? imap_yield(it, j, out, index) : MP_ETIMEDOUT;
    return true;
}

int mp_imap_next(mp_imap *it, void *out, size_t *index, double timeout)
{
    MP__NONNULL(it);
    if (mp__timeout_check(timeout) < 0)
        return mp__fail(
            MP_EINVAL, "mp_imap_next: timeout must be a number, < 0 for forever (got %g)", timeout);
    int64_t deadline = mp__deadline(timeout);
    mp__waiter w = {.slot = -1};
    bool waiting = false;
    int rc;
    pthread_mutex_lock(&it->lock);
    while (!imap_ready(it, out, index, &rc)) {
        if (waiting) {
            if (imap_sleep(it, &w, deadline, out, index, &rc))
                break;
            continue;
        }
        if (mp__remaining_ns(deadline) <= 0) {
            rc = MP_ETIMEDOUT;
            break;
        }
        /* A waiter, then its word where the supervisor finds it. */
        pthread_mutex_unlock(&it->lock);
        mp__waiter_begin(&w);
        waiting = true;
        pthread_mutex_lock(&it->lock);
        it->word = w.word;
    }
    it->word = NULL;
    pthread_mutex_unlock(&it->lock);
    if (waiting)
        mp__waiter_end(&w);
    if (rc == MP_ECANCELED && it->pool)
        mp_pool_terminate(it->pool);
    return rc;
}

void mp_imap_free(mp_imap *it)
{
    if (!it)
        return;
    mp_pool *p = it->pool;
    if (p && p->ranks)
        mp__rpool_imap_detach(p, it);
    if (p) {
        pthread_mutex_lock(&p->lock);
        pthread_mutex_lock(&it->lock);
        bool active = it->job_active;
        pthread_mutex_unlock(&it->lock);
        if (active) {
            /* The map still runs: its job frees the block when it ends. */
            for (uint32_t e = 0; e < MP__POOL_JOBS; e++) {
                if (p->pjobs[e].it == it) {
                    p->pjobs[e].it = NULL;
                    p->pjobs[e].keep_data = false;
                }
            }
            for (pending *n = p->pend_head; n; n = n->next) {
                if (n->pj.it == it) {
                    n->pj.it = NULL;
                    n->pj.keep_data = false;
                }
            }
        } else if (it->data_len && p->hdr) {
            mp__region_release(&p->region, it->data_off);
        }
        pthread_mutex_unlock(&p->lock);
        mp__pool_release(p);
    }
    pthread_mutex_destroy(&it->lock);
    free(it->unit_final);
    free(it->uq);
    free(it->fails);
    free(it);
}
