/*
 * map.c - map, map_async and starmap: one function over an array, run by
 * chunks (units) that workers claim.
 *
 * DESIGN
 * Role.  A map is one job of n items in nunits chunks.  Its block in the
 * data region holds the inputs' watermark (mp__map_ready), the unit
 * records, the ctx bytes, the copied inputs and the outputs; inputs or
 * outputs already in the region (mp_pool_shared_alloc) are used in place,
 * and a map the caller waits for may leave its arrays where they are for
 * the workers to read and write themselves (RIN, ROUT).  A large map is
 * published after its first slice of inputs and copied the rest of the
 * way while the workers compute.  Results come back through settle.c into
 * the caller's out array, the future, or an iterator (imap.c).
 *
 * Threads.  Any thread of the owning process.
 *
 * Locks.  p->lock to allocate and to submit; the block is filled between
 * the two without it, since nobody else sees it yet.
 */
#define _GNU_SOURCE
#include "pool_int.h"
#include "ranks.h"

#define MAX_CTX ((size_t)16 << 20)

/* Maps with more input bytes than this are published after their first
 * slice, and copied in the rest of the way in slices of this size. */
#ifndef PIPELINE_MIN
#define PIPELINE_MIN ((size_t)256 << 10)
#endif

#define PIPELINE_SLICE ((size_t)128 << 10)

/* Workers use a waiting caller's arrays in place when their chunks move
 * at least this many bytes: below it, the two system calls a chunk costs
 * them exceed what copying it through shared memory does. */
#define DIRECT_MIN ((size_t)4 << 10)

static uint64_t default_chunk(mp_pool *p, uint64_t n)
{
    uint64_t d = (uint64_t)p->nworkers * 4;
    uint64_t c = n / d + (n % d ? 1 : 0);
    return c ? c : 1;
}

/* Items per unit and units of a map of n items. */
void mp__pool_map_geometry(mp_pool *p, uint64_t n, uint64_t chunksize, uint64_t *chunk,
                           uint64_t *nunits)
{
    uint64_t c = chunksize ? chunksize : default_chunk(p, n);
    if (c > UINT32_MAX)
        c = UINT32_MAX; /* a unit's resume point is 32 bits */
    *chunk = c;
    *nunits = n / c + (n % c ? 1 : 0);
}

int mp__pool_map_check(const char *call, const mp_map_spec *s, int mode)
{
    if (!s)
        return mp__fail(MP_EINVAL, "%s: s must not be NULL", call);
    if (!s->fn == !s->range_fn)
        return mp__fail(MP_EINVAL, "%s: exactly one of s->fn and s->range_fn must be set", call);
    if (s->n && s->in_size && !s->in)
        return mp__fail(MP_EINVAL, "%s: s->in must not be NULL when s->n and s->in_size are > 0",
                        call);
    if (mode != MODE_IMAP && s->n && s->out_size && !s->out)
        return mp__fail(MP_EINVAL, "%s: s->out must not be NULL when s->n and s->out_size are > 0",
                        call);
    if (s->ctx_size > MAX_CTX || (s->ctx_size && !s->ctx))
        return mp__fail(MP_EINVAL,
                        "%s: s->ctx_size must be at most %zu bytes, with s->ctx set (got %zu)",
                        call, (size_t)MAX_CTX, s->ctx_size);
    if ((s->in_size && s->n > SIZE_MAX / s->in_size) ||
        (s->out_size && s->n > SIZE_MAX / s->out_size) || s->n > ((uint64_t)1 << 48))
        return mp__fail(MP_EINVAL,
                        "%s: s->n must be at most 2^48, its arrays within the address space "
                        "(got %zu)",
                        call, s->n);
    return 0;
}

/* A map on its way to the dispatch queue: the job and the parent's record
 * of it, and where its parts go in its block of the data region. */
typedef struct map_build {
    const mp_map_spec *s;
    int mode;
    mp__job job;
    pjob pj;
    uint64_t n, chunk, nunits;
    size_t in_off, out_off; /* arrays already in the region (in/out_place) */
    bool in_place, out_place;
    bool out_direct; /* ROUT range map: outputs need no space in the block */
    size_t units_len, ctx_len, in_len, out_len;
    size_t base, total; /* the block */
    mp__map_ready *ready;
    uint64_t copied; /* inputs in the block so far (the watermark) */
} map_build;

/* The job and the parent's record from the spec: geometry, sizes, where
 * results and progress go. */
static void map_describe(mp_pool *p, map_build *b, mp_future *f, struct mp_imap *it)
{
    const mp_map_spec *s = b->s;
    b->n = s->n;
    mp__pool_map_geometry(p, b->n, s->chunksize, &b->chunk, &b->nunits);
    mp__job *job = &b->job;
    job->kind = MP__JOB_MAP;
    job->flags = s->range_fn ? MP__JOB_RANGE : 0;
    job->u.map.n = b->n;
    job->u.map.nunits = b->nunits;
    job->u.map.chunk = b->chunk;
    job->u.map.in_size = s->in_size;
    job->u.map.out_size = s->out_size;
    job->u.map.ctx_len = s->ctx_size;
    pjob *pj = &b->pj;
    pj->kind = MP__JOB_MAP;
    pj->fut = f;
    pj->it = it;
    pj->keep_data = it != NULL;
    pj->errors = b->mode != MODE_IMAP ? s->errors : NULL;
    pj->n = b->n;
    pj->chunk = b->chunk;
    pj->nunits = b->nunits;
    pj->in_size = s->in_size;
    pj->out_size = s->out_size;
    pj->progress = s->progress ? s->progress : p->opts.progress;
    pj->progress_ctx = s->progress ? s->progress_ctx : p->opts.progress_ctx;
    pj->bar = p->opts.progress_bar;
    pj->started_ns = mp__now_ns();
    if (pj->errors)
        memset(pj->errors, 0, (size_t)b->n * sizeof(int));
}

/* Where the inputs and outputs are read and written: in place in the
 * region, in the caller's memory (RIN, ROUT), or copied through the
 * block.  Under p->lock. */
static void map_choose_paths(mp_pool *p, map_build *b)
{
    const mp_map_spec *s = b->s;
    mp__region *r = &p->region;
    b->in_place =
        s->in_size && mp__region_contains(r, s->in, (size_t)(b->n * s->in_size), &b->in_off);
    b->out_place = b->mode != MODE_IMAP && s->out_size &&
                   mp__region_contains(r, s->out, (size_t)(b->n * s->out_size), &b->out_off);
    /* A map the caller waits for leaves its arrays where they are, when
     * the workers can reach them there: each reads and writes its own
     * share, in parallel, in one kernel copy each way, instead of this
     * thread copying everything in and the supervisor everything out. */
    bool vm = b->mode == MODE_SYNC && atomic_load(&p->hdr->vm) == MP__VM_OK &&
              b->chunk * (s->in_size + s->out_size) >= DIRECT_MIN;
    if (vm && s->in_size && !b->in_place)
        b->job.flags |= MP__JOB_RIN;
    if (vm && s->out_size && !b->out_place)
        b->job.flags |= MP__JOB_ROUT;
    /* A range function's outputs go straight to the caller; an item
     * function's also through the data region, where a worker that dies
     * leaves those it finished. */
    b->out_direct = (b->job.flags & MP__JOB_ROUT) && (b->job.flags & MP__JOB_RANGE);
}

/* The sizes of the block's parts: the watermark, the unit records, ctx,
 * the inputs and the outputs (the last two when they are copied). */
static void map_size_block(map_build *b)
{
    const mp_map_spec *s = b->s;
    b->units_len = mp__pool_align_up((size_t)b->nunits * sizeof(mp__unit), MP__REGION_ALIGN);
    b->ctx_len = mp__pool_align_up(s->ctx_size, MP__REGION_ALIGN);
    b->in_len = b->in_place || (b->job.flags & MP__JOB_RIN)
                    ? 0
                    : mp__pool_align_up((size_t)(b->n * s->in_size), MP__REGION_ALIGN);
    b->out_len = b->out_place || b->out_direct
                     ? 0
                     : mp__pool_align_up((size_t)(b->n * s->out_size), MP__REGION_ALIGN);
    b->total = sizeof(mp__map_ready) + b->units_len + b->ctx_len + b->in_len + b->out_len;
}

/* Allocates the block and places the parts in it. */
static int map_place(mp_pool *p, map_build *b)
{
    const mp_map_spec *s = b->s;
    pthread_mutex_lock(&p->lock);
    int rc = mp__pool_refusal(p);
    if (rc == 0)
        rc = mp__pool_fn_id(p, s->fn ? (const void *)s->fn : (const void *)s->range_fn, &b->job.fn);
    if (rc == 0) {
        map_choose_paths(p, b);
        map_size_block(b);
        rc = mp__region_alloc(&p->region, b->total, &b->base);
    }
    pthread_mutex_unlock(&p->lock);
    if (rc < 0)
        return rc;
    size_t units_off = b->base + sizeof(mp__map_ready);
    size_t ctx_off = units_off + b->units_len;
    size_t in_off = ctx_off + b->ctx_len;
    b->pj.data_off = b->base;
    b->pj.data_len = b->total;
    b->job.u.map.ready_off = b->base;
    b->job.u.map.units_off = units_off;
    b->job.u.map.ctx_off = ctx_off;
    b->job.u.map.in_off = b->in_place ? b->in_off : in_off;
    b->job.u.map.out_off = b->out_place ? b->out_off : in_off + b->in_len;
    if (b->mode != MODE_IMAP && !b->out_place && !b->out_direct && s->out_size)
        b->pj.user_out = s->out;
    b->pj.out_remote = b->job.flags & MP__JOB_ROUT;
    return 0;
}

/* Fills the block, which is this thread's alone until published: unit
 * records, ctx, the watermark, and the inputs - whole for a small map; a
 * large one is published after its first slice, and the rest is copied
 * while the workers compute (map_copy_rest). */
static void map_fill(mp_pool *p, map_build *b, struct mp_imap *it)
{
    const mp_map_spec *s = b->s;
    unsigned char *data = p->region.base;
    mp__unit *units = (mp__unit *)(data + b->job.u.map.units_off);
    for (uint64_t u = 0; u < b->nunits; u++) {
        atomic_init(&units[u].state, MP__U_QUEUED);
        units[u].resume = 0;
    }
    if (s->ctx_size)
        memcpy(data + b->job.u.map.ctx_off, s->ctx, s->ctx_size);
    b->ready = (mp__map_ready *)(data + b->base);
    b->ready->rin = (uint64_t)(uintptr_t)s->in;
    b->ready->rout = (uint64_t)(uintptr_t)s->out;
    b->ready->rpid = p->hdr_fixed.vm_pid;
    size_t in_bytes = b->in_place || !s->in_size || (b->job.flags & MP__JOB_RIN)
                          ? 0
                          : (size_t)(b->n * s->in_size);
    b->copied = b->n;
    if (in_bytes > PIPELINE_MIN) {
        b->copied = PIPELINE_SLICE / s->in_size + 1;
        memcpy(data + b->job.u.map.in_off, s->in, (size_t)(b->copied * s->in_size));
    } else if (in_bytes) {
        memcpy(data + b->job.u.map.in_off, s->in, in_bytes);
    }
    atomic_init(&b->ready->items, b->copied);
    if (it) {
        it->outs = data + b->job.u.map.out_off;
        it->data_off = b->base;
        it->data_len = b->total;
        it->chunk = b->chunk;
        it->nunits = b->nunits;
    }
}

/* Submits the filled job; the block is freed if the pool refuses it. */
static int map_publish(mp_pool *p, map_build *b)
{
    pthread_mutex_lock(&p->lock);
    int rc = mp__pool_refusal(p);
    if (rc == 0) {
        rc = mp__pool_submit_job(p, &b->job, &b->pj);
        if (rc == 0 && (b->pj.progress || b->pj.bar))
            p->has_progress_jobs = true;
        if (rc == 0 && (b->job.flags & (MP__JOB_RIN | MP__JOB_ROUT)))
            p->stats.maps_direct++;
    }
    if (rc < 0)
        mp__region_release(&p->region, b->base);
    else if (b->copied < b->n)
        mp__region_retain(&p->region, b->base); /* the block outlives a cancel while we copy */
    pthread_mutex_unlock(&p->lock);
    if (rc == 0 && (b->pj.progress || b->pj.bar))
        mp__pool_kick_supervisor(p);
    return rc;
}

/* Copies the rest of a large map's inputs, raising the watermark the
 * workers wait on, then drops this thread's reference on the block. */
static void map_copy_rest(mp_pool *p, map_build *b)
{
    const size_t isz = b->s->in_size;
    const unsigned char *src = b->s->in;
    unsigned char *dst = p->region.base + b->job.u.map.in_off;
    uint64_t step = PIPELINE_SLICE / isz + 1;
    while (b->copied < b->n) {
        uint64_t k = b->n - b->copied < step ? b->n - b->copied : step;
        memcpy(dst + b->copied * isz, src + b->copied * isz, (size_t)(k * isz));
        b->copied += k;
        /* seq_cst, so release: the bytes before the count. */
        atomic_store(&b->ready->items, b->copied);
    }
    pthread_mutex_lock(&p->lock);
    mp__region_release(&p->region, b->base);
    pthread_mutex_unlock(&p->lock);
}

/* Prepares and submits a map.  For MODE_IMAP, it receives the staging
 * block; for MODE_ASYNC, f is finished or submitted. */
int mp__pool_map_submit(mp_pool *p, const mp_map_spec *s, int mode, mp_future *f,
                        struct mp_imap *it)
{
    map_build b;
    memset(&b, 0, sizeof b);
    b.s = s;
    b.mode = mode;
    map_describe(p, &b, f, it);
    /* The parent's own record of which units are final (check.c). */
    b.pj.ufinal = calloc((size_t)(b.nunits + 63) / 64, sizeof *b.pj.ufinal);
    if (!b.pj.ufinal)
        return MP_ENOMEM;
    int rc = map_place(p, &b);
    if (rc < 0) {
        free(b.pj.ufinal);
        return rc;
    }
    map_fill(p, &b, it);
    rc = map_publish(p, &b);
    if (rc < 0)
        free(b.pj.ufinal); /* the pool did not take the job */
    if (rc == 0 && b.copied < b.n)
        map_copy_rest(p, &b);
    /* The job's record in the pool owns ufinal now (or it was freed). */
    return rc; // NOLINT(clang-analyzer-unix.Malloc)
}

static mp_future *map_start(mp_pool *p, const mp_map_spec *s, int mode)
{
    const char *call = mode == MODE_SYNC ? "mp_pool_map_ex" : "mp_pool_map_async_ex";
    if (!p) {
        (void)mp__fail(MP_EINVAL, "%s: p must not be NULL", call);
        return mp__future_new_failed(MP_EINVAL, NULL);
    }
    if (mp__pool_map_check(call, s, mode) < 0)
        return mp__future_new_failed(MP_EINVAL, NULL);
    if (!mp__pool_ours(p))
        return mp__future_new_failed(MP_ESTATE, NULL);
    if (s->n == 0) {
        pthread_mutex_lock(&p->lock);
        int rc = mp__pool_refusal(p);
        pthread_mutex_unlock(&p->lock);
        return mp__future_new_failed(rc, NULL);
    }
    mp_future *f = mp__future_new(p->ranks ? &mp__rpool_future_ops : &mp__pool_future_ops, p);
    if (!f)
        return NULL;
    int rc =
        p->ranks ? mp__rpool_map_submit(p, s, f, NULL) : mp__pool_map_submit(p, s, mode, f, NULL);
    if (rc < 0) {
        pthread_mutex_lock(&p->lock);
        const char *rep = p->broken ? p->broken_report : NULL;
        char *r = rep ? strdup(rep) : NULL;
        pthread_mutex_unlock(&p->lock);
        mp__future_finish(f, rc, NULL, 0, 0, 0, r, -1);
    }
    return f;
}

mp_future *mp_pool_map_async_ex(mp_pool *p, const mp_map_spec *s)
{
    return map_start(p, s, MODE_ASYNC);
}

int mp_pool_map_ex(mp_pool *p, const mp_map_spec *s)
{
    mp_future *f = map_start(p, s, MODE_SYNC);
    if (!f)
        return MP_ENOMEM;
    int rc = mp_future_get(f, NULL, 0, NULL, MP_FOREVER);
    mp_future_free(f);
    return rc;
}

mp_map_spec mp__pool_map_spec(mp_map_fn fn, const void *in, size_t n, size_t in_size, void *out,
                              size_t out_size, size_t chunksize)
{
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = fn;
    s.in = in;
    s.n = n;
    s.in_size = in_size;
    s.out = out;
    s.out_size = out_size;
    s.chunksize = chunksize;
    return s;
}

int mp_pool_map(mp_pool *p, mp_map_fn fn, const void *in, size_t n, size_t in_size, void *out,
                size_t out_size, size_t chunksize)
{
    mp_map_spec s = mp__pool_map_spec(fn, in, n, in_size, out, out_size, chunksize);
    return mp_pool_map_ex(p, &s);
}

mp_future *mp_pool_map_async(mp_pool *p, mp_map_fn fn, const void *in, size_t n, size_t in_size,
                             void *out, size_t out_size, size_t chunksize)
{
    mp_map_spec s = mp__pool_map_spec(fn, in, n, in_size, out, out_size, chunksize);
    return mp_pool_map_async_ex(p, &s);
}

int mp_pool_starmap(mp_pool *p, mp_map_fn fn, const void *args, size_t n, size_t args_size,
                    void *out, size_t out_size, size_t chunksize)
{
    return mp_pool_map(p, fn, args, n, args_size, out, out_size, chunksize);
}

mp_future *mp_pool_starmap_async(mp_pool *p, mp_map_fn fn, const void *args, size_t n,
                                 size_t args_size, void *out, size_t out_size, size_t chunksize)
{
    return mp_pool_map_async(p, fn, args, n, args_size, out, out_size, chunksize);
}
