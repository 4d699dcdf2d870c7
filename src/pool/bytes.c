/*
 * bytes.c - maps over byte strings (variable-size items): the chunk task a
 * worker runs, submission, the results object and the iterators.
 *
 * DESIGN
 * Role.  A map over byte strings is a set of apply tasks, one per chunk:
 * each chunk's items are gathered straight into the task's argument in
 * shared memory (one copy in), the worker runs the function over every
 * item into one result buffer (one header and the output per item), and
 * that buffer comes back as the task's result through the worker's result
 * file (one copy out).  The parent points each item's entry into it; it
 * never copies an item again, and no message travels per item.  Being
 * apply tasks, chunks have the apply path's fault isolation as they are:
 * a worker that dies in a chunk fails that chunk's items with MP_EWORKER
 * (or the chunk runs again, with opts.retries), a chunk past
 * opts.task_timeout fails with MP_ETIMELIMIT, a terminate cancels them.
 *
 * Argument layout (untrusted in the worker, checked before use):
 *   vs_arg header, then n + 1 uint64_t offsets into the bytes that follow
 *   (item i is [offs[i], offs[i + 1])), then the bytes.
 * Result layout (untrusted in the parent, checked before use), per item:
 *   vs_item header, then len bytes (the output; for a failed item its
 *   message and a NUL), padded to 8 bytes.
 *
 * The results object (mp_results) is reference-counted: the caller holds
 * one, the chunks' done callbacks one between them.  A chunk is settled
 * (its items' entries written) once, by whichever comes first: its done
 * callback, in the pool's callback thread, or an iterator that waited for
 * it.  The map's future finishes when the last chunk has settled.
 *
 * Locks.  r->lock around the entries; never held while waiting.
 */
#define _GNU_SOURCE
#include "pool_int.h"
#include "worker.h"

#define VS_MAGIC 0x6d7076733031ull /* "mpvs01" */

/* A chunk task's argument header. */
typedef struct vs_arg {
    uint64_t magic;
    uint64_t fn;   /* the function, in a fork worker */
    uint64_t n;    /* items in the chunk */
    mp__fnref ref; /* the function, in a forkserver or spawn worker */
} vs_arg;

/* One item's header in a chunk's result. */
typedef struct vs_item {
    uint64_t len; /* bytes that follow (a failure's message: without its NUL) */
    int64_t code; /* what the function returned: 0, or nonzero */
} vs_item;

static size_t pad8(size_t n)
{
    return (8 - n % 8) % 8;
}

/* ---- in the worker ------------------------------------------------------------- */

/* The function a chunk names, as this worker reaches it. */
static mp_bytes_fn chunk_fn(const vs_arg *h)
{
    wctx *c = mp__pool_worker_self;
    if (!c || !c->fresh)
        return (mp_bytes_fn)(uintptr_t)h->fn;
    /* A fresh image: found again by place; the last one is kept, since a
     * map sends the same function in every chunk. */
    static mp__fnref last;
    static void *last_fn;
    if (!last_fn || memcmp(&last, &h->ref, sizeof last) != 0) {
        void *fn = NULL;
        if (mp__fnref_resolve(&h->ref, &fn) < 0)
            return NULL;
        memcpy(&last, &h->ref, sizeof last);
        last_fn = fn;
    }
    return (mp_bytes_fn)last_fn;
}

/* Runs fn over one item into out: header, output (the function sees only
 * its own, through out->base), padding.  Returns 0, or the error that
 * left out unable to grow. */
static int run_item(mp_bytes_fn fn, const unsigned char *in, size_t len, mp_buf *out)
{
    wctx *c = mp__pool_worker_self;
    const char *text = NULL;
    if (!mp_buf_alloc(out, sizeof(vs_item)))
        return out->err ? out->err : MP_ENOMEM;
    size_t hdr = out->len - sizeof(vs_item);
    out->base = out->len;
    if (c)
        (void)mp__pool_item_msg_take(c, &text); /* none from an earlier item */
    int rc = fn(len ? in : NULL, len, out);
    if (rc == 0 && out->err)
        rc = out->err;
    /* mp_item_fail's text, when it left one, is the message, as
     * mp_task_fail's replaces what the item appended. */
    size_t mlen = c && rc != 0 ? mp__pool_item_msg_take(c, &text) : 0;
    if (mlen) {
        mp_buf_truncate(out, 0);
        (void)mp_buf_append(out, text, mlen);
    }
    /* A message is at most what an apply task's can be. */
    if (rc != 0 && out->len - out->base >= MP__POOL_MSG_MAX)
        mp_buf_truncate(out, MP__POOL_MSG_MAX - 1);
    vs_item h = {out->len - out->base, rc};
    out->base = 0;
    /* A failure's message ends with a NUL, so the parent hands it out in
     * place. */
    if (rc != 0 && !mp_buf_alloc(out, 1))
        return out->err ? out->err : MP_ENOMEM;
    if (rc != 0)
        out->data[out->len - 1] = '\0';
    size_t pad = pad8(out->len - hdr);
    if (pad && !mp_buf_alloc(out, pad))
        return out->err ? out->err : MP_ENOMEM;
    memcpy(out->data + hdr, &h, sizeof h); /* data may have moved */
    return 0;
}

/* The apply task of one chunk (the argument layout above). */
static int vs_chunk_task(const void *arg, size_t len, mp_buf *out)
{
    vs_arg h;
    if (len < sizeof h)
        return MP_EPROTO;
    memcpy(&h, arg, sizeof h);
    /* n + 1 offsets must fit in what follows the header. */
    if (h.magic != VS_MAGIC || h.n == 0 || h.n >= (len - sizeof h) / sizeof(uint64_t))
        return MP_EPROTO;
    const unsigned char *base = arg;
    const unsigned char *offs = base + sizeof h;
    const unsigned char *bytes = offs + (h.n + 1) * sizeof(uint64_t);
    size_t total = len - (size_t)(bytes - base);
    mp_bytes_fn fn = chunk_fn(&h);
    if (!fn)
        return MP_ENOENT;
    for (uint64_t i = 0; i < h.n; i++) {
        uint64_t lo, hi;
        memcpy(&lo, offs + i * sizeof lo, sizeof lo);
        memcpy(&hi, offs + (i + 1) * sizeof hi, sizeof hi);
        if (lo > hi || hi > total)
            return MP_EPROTO;
        int rc = run_item(fn, bytes + lo, (size_t)(hi - lo), out);
        if (rc < 0) {
            /* No room for the outputs: the chunk fails as a whole. */
            out->base = 0;
            mp_buf_truncate(out, 0);
            return rc;
        }
    }
    return 0;
}

/* ---- the results object ----------------------------------------------------------- */

typedef struct ritem {
    const char *data; /* output, or message (NUL-terminated), or NULL */
    size_t len;
    int err; /* MP_ESTATE until settled */
} ritem;

struct mp_results;

typedef struct vchunk {
    struct mp_results *r;
    mp_future *f;
    size_t first, n;
    bool settled;
} vchunk;

struct mp_results {
    _Atomic int refs;
    pthread_mutex_t lock;
    size_t n, nchunks;
    ritem *items;
    vchunk *chunks;
    _Atomic size_t left; /* chunks not settled by their callback */
    mp_future *whole;    /* map_async's future, or NULL */
};

static mp_results *results_new(size_t n, size_t nchunks)
{
    mp_results *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->items = calloc(n, sizeof *r->items);
    r->chunks = calloc(nchunks, sizeof *r->chunks);
    if (!r->items || !r->chunks) {
        free(r->items);
        free(r->chunks);
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        r->items[i].err = MP_ESTATE;
    atomic_init(&r->refs, 1);
    atomic_init(&r->left, nchunks);
    pthread_mutex_init(&r->lock, NULL);
    r->n = n;
    r->nchunks = nchunks;
    return r;
}

void mp_results_free(mp_results *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    for (size_t k = 0; k < r->nchunks; k++)
        mp_future_free(r->chunks[k].f);
    pthread_mutex_destroy(&r->lock);
    free(r->chunks);
    free(r->items);
    free(r);
}

/* Every item of chunk ch fails with err and message msg (may be NULL). */
static void chunk_fail(mp_results *r, const vchunk *ch, int err, const char *msg)
{
    for (size_t i = ch->first; i < ch->first + ch->n; i++)
        r->items[i] = (ritem){msg, msg ? strlen(msg) : 0, err};
}

/* Points chunk ch's items into its result (layout above).  Returns false
 * when the result is not what a worker writes. */
static bool chunk_parse(mp_results *r, const vchunk *ch, const char *res, size_t len)
{
    size_t pos = 0;
    for (size_t i = ch->first; i < ch->first + ch->n; i++) {
        vs_item h;
        if (len - pos < sizeof h)
            return false;
        memcpy(&h, res + pos, sizeof h);
        pos += sizeof h;
        size_t need = (size_t)h.len + (h.code != 0);
        if (h.len > len - pos || need > len - pos || (h.code != 0 && res[pos + h.len] != '\0'))
            return false;
        int err = h.code == 0 ? 0 : MP_ETASK;
        r->items[i] = (ritem){h.len || err ? res + pos : NULL, (size_t)h.len, err};
        pos += need + pad8(need);
        if (pos > len)
            return false;
    }
    return true;
}

/* Writes chunk k's items' entries, once; its future is finished. */
static void chunk_settle(mp_results *r, size_t k)
{
    vchunk *ch = &r->chunks[k];
    pthread_mutex_lock(&r->lock);
    if (!ch->settled) {
        int st = mp_future_status(ch->f);
        size_t len = 0;
        const char *res = st == 0 ? mp_future_result(ch->f, &len) : NULL;
        if (st == 0 && (!res || !chunk_parse(r, ch, res, len)))
            chunk_fail(r, ch, MP_EPROTO, "a chunk's outputs are not what a worker writes");
        else if (st == MP_ETASK)
            chunk_fail(r, ch, mp_future_task_error(ch->f), mp_future_report(ch->f));
        else if (st < 0)
            chunk_fail(r, ch, st, mp_future_report(ch->f));
        ch->settled = true;
    }
    pthread_mutex_unlock(&r->lock);
}

/* Finishes the map's future: the first failed item's error, index and
 * message, as a map over fixed-size elements reports them. */
static void whole_finish(mp_results *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const ritem *it = &r->items[i];
        if (it->err == 0)
            continue;
        char *rep = it->data ? strdup(it->data) : NULL;
        mp__future_finish(r->whole, it->err, NULL, 0, it->err == MP_ETASK ? MP_ETASK : 0, 0, rep,
                          (long long)i);
        return;
    }
    mp__future_finish(r->whole, 0, NULL, 0, 0, 0, NULL, -1);
}

/* A chunk's done callback (the pool's callback thread). */
static void chunk_done(mp_future *f, void *arg)
{
    (void)f;
    vchunk *ch = arg;
    mp_results *r = ch->r;
    chunk_settle(r, (size_t)(ch - r->chunks));
    if (atomic_fetch_sub(&r->left, 1) != 1)
        return;
    if (r->whole) {
        pthread_mutex_lock(&r->lock);
        whole_finish(r);
        pthread_mutex_unlock(&r->lock);
        mp_future_free(r->whole);
        r->whole = NULL;
    }
    mp_results_free(r); /* the callbacks' reference */
}

/* Reads item i under the lock.  Returns false for NULL or out of range. */
static bool item_get(const mp_results *r, size_t i, ritem *it)
{
    if (!r || i >= r->n)
        return false;
    mp_results *m = (mp_results *)r;
    pthread_mutex_lock(&m->lock);
    *it = m->items[i];
    pthread_mutex_unlock(&m->lock);
    return true;
}

size_t mp_results_count(const mp_results *r)
{
    return r ? r->n : 0;
}

const void *mp_results_item(const mp_results *r, size_t i, size_t *len)
{
    ritem it;
    bool ok = item_get(r, i, &it) && it.err == 0 && it.len;
    if (len)
        *len = ok ? it.len : 0;
    return ok ? it.data : NULL;
}

int mp_results_error(const mp_results *r, size_t i)
{
    ritem it;
    return item_get(r, i, &it) ? it.err : MP_EINVAL;
}

const char *mp_results_message(const mp_results *r, size_t i)
{
    ritem it;
    if (!item_get(r, i, &it) || it.err == 0 || it.err == MP_ESTATE)
        return NULL;
    return it.data;
}

/* ---- submission --------------------------------------------------------------------- */

/* Checks the arguments.  Returns 0 or MP_EINVAL. */
static int args_check(const char *call, mp_pool *p, mp_bytes_fn fn, const mp_bytes *in, size_t n)
{
    if (!p || !fn || !in)
        return mp__fail(MP_EINVAL, "%s: %s must not be NULL", call, !p ? "p" : !fn ? "fn" : "in");
    if (n == 0 || n > ((size_t)1 << 40))
        return mp__fail(MP_EINVAL, "%s: n must be 1 to 2^40 (got %zu)", call, n);
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i].len && !in[i].data)
            return mp__fail(MP_EINVAL, "%s: in[%zu].data must not be NULL when its len is > 0",
                            call, i);
        if (__builtin_add_overflow(t, (uint64_t)in[i].len, &t))
            return mp__fail(MP_EINVAL, "%s: the items' total length overflows at in[%zu]", call, i);
    }
    /* The items and their offsets must fit the data region. */
    if (t > DATA_RESERVE / 2 || n > DATA_RESERVE / 2 / sizeof(uint64_t))
        return mp__fail(MP_EINVAL, "%s: the items must total at most %zu bytes (got %llu)", call,
                        DATA_RESERVE / 2, (unsigned long long)t);
    return 0;
}

/* What fill_chunk gathers from. */
typedef struct gather {
    const mp_bytes *in;
    size_t n;
    vs_arg hdr;
} gather;

/* Writes one chunk's argument (layout above) straight to dst. */
static void fill_chunk(void *dst, size_t len, const void *src)
{
    const gather *g = src;
    unsigned char *d = dst;
    memcpy(d, &g->hdr, sizeof g->hdr);
    unsigned char *offs = d + sizeof g->hdr;
    unsigned char *bytes = offs + (g->n + 1) * sizeof(uint64_t);
    uint64_t at = 0;
    for (size_t i = 0; i < g->n; i++) {
        memcpy(offs + i * sizeof at, &at, sizeof at);
        if (g->in[i].len)
            memcpy(bytes + at, g->in[i].data, g->in[i].len);
        at += g->in[i].len;
    }
    memcpy(offs + g->n * sizeof at, &at, sizeof at);
    (void)len;
}

/* Submits chunk k.  Returns 0, or MP_ENOMEM (its future could not be made;
 * the chunk then fails alone). */
static int chunk_submit(mp_pool *p, mp_results *r, size_t k, const mp_bytes *in, const vs_arg *hdr)
{
    vchunk *ch = &r->chunks[k];
    gather g = {in + ch->first, ch->n, *hdr};
    g.hdr.n = ch->n;
    size_t len = sizeof g.hdr + (ch->n + 1) * sizeof(uint64_t);
    for (size_t i = 0; i < ch->n; i++)
        len += g.in[i].len;
    ch->f = mp__pool_apply_fill(p, vs_chunk_task, len, fill_chunk, &g);
    if (!ch->f)
        ch->f = mp__future_new_failed(MP_ENOMEM, NULL);
    if (!ch->f || mp_future_add_done_callback(ch->f, chunk_done, ch) < 0)
        return MP_ENOMEM;
    return 0;
}

/* Starts the map: the results object (*out) and every chunk.  Returns 0
 * or the error that kept it from starting (then *out is NULL). */
static int map_start(const char *call, mp_pool *p, mp_bytes_fn fn, const mp_bytes *in, size_t n,
                     size_t chunksize, mp_future *whole, mp_results **out)
{
    *out = NULL;
    int rc = args_check(call, p, fn, in, n);
    if (rc < 0)
        return rc;
    if (!mp__pool_ours(p)) {
        /* The code itself returned, so that *out stays NULL on every path
         * an analyser follows. */
        (void)mp__fail(MP_ESTATE, "%s: p was made by another process", call);
        return MP_ESTATE;
    }
    size_t workers = (size_t)mp_pool_size(p);
    size_t chunk = chunksize ? chunksize : (n + 4 * workers - 1) / (4 * workers);
    if (chunk == 0)
        chunk = 1;
    size_t nchunks = n / chunk + (n % chunk != 0);
    vs_arg hdr = {VS_MAGIC, (uint64_t)(uintptr_t)fn, 0, {0}};
    if (mp__fnref_from_ptr((const void *)fn, &hdr.ref) < 0)
        hdr.ref.offset = UINT64_MAX; /* found only in a fork worker */
    mp_results *r = results_new(n, nchunks);
    if (!r)
        return MP_ENOMEM;
    r->whole = whole;
    for (size_t k = 0; k < nchunks; k++) {
        r->chunks[k].r = r;
        r->chunks[k].first = k * chunk;
        r->chunks[k].n = k + 1 < nchunks ? chunk : n - k * chunk;
    }
    atomic_fetch_add(&r->refs, 1); /* the callbacks' */
    for (size_t k = 0; k < nchunks; k++) {
        if (chunk_submit(p, r, k, in, &hdr) < 0) {
            /* Nothing will settle this chunk: do it here. */
            chunk_fail(r, &r->chunks[k], MP_ENOMEM, NULL);
            r->chunks[k].settled = true;
            chunk_done(NULL, &r->chunks[k]);
        }
    }
    *out = r;
    return 0;
}

mp_future *mp_pool_map_bytes_async(mp_pool *p, mp_bytes_fn fn, const mp_bytes *in, size_t n,
                                   size_t chunksize, mp_results **out)
{
    if (!out) {
        (void)mp__fail(MP_EINVAL, "mp_pool_map_bytes_async: out must not be NULL");
        return mp__future_new_failed(MP_EINVAL, NULL);
    }
    *out = NULL;
    if (!p) {
        (void)mp__fail(MP_EINVAL, "mp_pool_map_bytes_async: p must not be NULL");
        return mp__future_new_failed(MP_EINVAL, NULL);
    }
    mp_future *f = mp__future_new(&mp__pool_future_ops, p);
    if (!f)
        return NULL;
    mp__future_ref(f); /* the map's own, dropped when it finishes */
    int rc = map_start("mp_pool_map_bytes_async", p, fn, in, n, chunksize, f, out);
    if (rc < 0) {
        mp__future_finish(f, rc, NULL, 0, 0, 0, NULL, -1);
        mp_future_free(f);
    }
    return f;
}

int mp_pool_map_bytes(mp_pool *p, mp_bytes_fn fn, const mp_bytes *in, size_t n, size_t chunksize,
                      mp_results **out)
{
    MP__NONNULL(out);
    mp_future *f = mp_pool_map_bytes_async(p, fn, in, n, chunksize, out);
    if (!f)
        return MP_ENOMEM;
    int rc = mp_future_get(f, NULL, 0, NULL, MP_FOREVER);
    mp_future_free(f);
    return rc;
}

/* ---- iterators ------------------------------------------------------------------------ */

struct mp_imap_bytes {
    mp_results *r;
    bool ordered;
    mp_as_completed *ac; /* unordered: the chunks as they finish */
    size_t *by_fut;      /* unordered: chunk indexes sorted by future */
    size_t chunk;        /* the chunk being handed out, or nchunks */
    size_t pos;          /* its next item */
    size_t taken;        /* chunks begun */
};

static int cmp_fut(const void *a, const void *b, void *arg)
{
    const mp_results *r = arg;
    uintptr_t x = (uintptr_t)r->chunks[*(const size_t *)a].f;
    uintptr_t y = (uintptr_t)r->chunks[*(const size_t *)b].f;
    return (x > y) - (x < y);
}

/* The chunk whose future is f (unordered). */
static size_t chunk_of(const mp_imap_bytes *it, const mp_future *f)
{
    size_t lo = 0, hi = it->r->nchunks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const mp_future *g = it->r->chunks[it->by_fut[mid]].f;
        if (g == f)
            return it->by_fut[mid];
        if ((uintptr_t)g < (uintptr_t)f)
            lo = mid + 1;
        else
            hi = mid;
    }
    return it->r->nchunks;
}

/* Sets up an unordered iterator's view of its chunks.  Returns 0 or an
 * error. */
static int unordered_init(mp_imap_bytes *it)
{
    mp_results *r = it->r;
    mp_future **fs = calloc(r->nchunks, sizeof(mp_future *));
    it->by_fut = malloc(r->nchunks * sizeof *it->by_fut);
    if (!fs || !it->by_fut) {
        free(fs);
        return MP_ENOMEM;
    }
    for (size_t k = 0; k < r->nchunks; k++) {
        fs[k] = r->chunks[k].f;
        it->by_fut[k] = k;
    }
    qsort_r(it->by_fut, r->nchunks, sizeof *it->by_fut, cmp_fut, r);
    int rc = mp_as_completed_new(fs, r->nchunks, &it->ac);
    free(fs);
    return rc;
}

static int imap_start(mp_pool *p, mp_bytes_fn fn, const mp_bytes *in, size_t n, size_t chunksize,
                      bool ordered, mp_imap_bytes **out)
{
    const char *call = ordered ? "mp_pool_imap_bytes" : "mp_pool_imap_bytes_unordered";
    if (!out)
        return mp__fail(MP_EINVAL, "%s: out must not be NULL", call);
    *out = NULL;
    mp_imap_bytes *it = calloc(1, sizeof *it);
    if (!it)
        return MP_ENOMEM;
    it->ordered = ordered;
    int rc = map_start(call, p, fn, in, n, chunksize, NULL, &it->r);
    if (rc == 0 && !ordered)
        rc = unordered_init(it);
    if (rc < 0) {
        mp_imap_bytes_free(it);
        return rc;
    }
    it->chunk = it->r->nchunks;
    *out = it;
    return 0;
}

int mp_pool_imap_bytes(mp_pool *p, mp_bytes_fn fn, const mp_bytes *in, size_t n, size_t chunksize,
                       mp_imap_bytes **out)
{
    return imap_start(p, fn, in, n, chunksize, true, out);
}

int mp_pool_imap_bytes_unordered(mp_pool *p, mp_bytes_fn fn, const mp_bytes *in, size_t n,
                                 size_t chunksize, mp_imap_bytes **out)
{
    return imap_start(p, fn, in, n, chunksize, false, out);
}

/* Waits for the next chunk to hand out.  Returns 0 (it->chunk set),
 * MP_EOF, MP_ETIMEDOUT, MP_ECANCELED. */
static int next_chunk(mp_imap_bytes *it, double timeout)
{
    mp_results *r = it->r;
    if (it->taken == r->nchunks)
        return MP_EOF;
    size_t k = it->taken;
    if (it->ordered) {
        int rc = mp_future_wait(r->chunks[k].f, timeout);
        if (rc < 0)
            return rc;
    } else {
        mp_future *f = NULL;
        int rc = mp_as_completed_next(it->ac, &f, timeout);
        if (rc < 0)
            return rc == MP_EOF ? MP_EPROTO : rc;
        k = chunk_of(it, f);
        if (k == r->nchunks)
            return MP_EPROTO;
    }
    chunk_settle(r, k);
    it->taken++;
    it->chunk = k;
    it->pos = r->chunks[k].first;
    return 0;
}

int mp_imap_bytes_next(mp_imap_bytes *it, const void **data, size_t *len, size_t *index,
                       double timeout)
{
    MP__NONNULL(it);
    if (mp__timeout_check(timeout) < 0)
        return mp__fail(MP_EINVAL,
                        "mp_imap_bytes_next: timeout must be a number, < 0 for forever (got %g)",
                        timeout);
    mp_results *r = it->r;
    /* it->chunk is nchunks before the first chunk. */
    bool more =
        it->chunk < r->nchunks && it->pos < r->chunks[it->chunk].first + r->chunks[it->chunk].n;
    if (!more) {
        int rc = next_chunk(it, timeout);
        if (rc < 0)
            return rc;
    }
    size_t i = it->pos++;
    ritem e = {NULL, 0, MP_EPROTO};
    (void)item_get(r, i, &e);
    if (data)
        *data = e.data;
    if (len)
        *len = e.data ? e.len : 0;
    if (index)
        *index = i;
    return e.err;
}

void mp_imap_bytes_free(mp_imap_bytes *it)
{
    if (!it)
        return;
    mp_as_completed_free(it->ac);
    free(it->by_fut);
    mp_results_free(it->r);
    free(it);
}
