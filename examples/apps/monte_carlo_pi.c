/*
 * monte_carlo_pi.c - pi by Monte Carlo on a pool, with a progress bar and
 * a task that crashes.
 *
 * 64 batches of random points are mapped over the pool's workers, with the
 * pool's progress bar on stderr.  Batch 13 hits a bug - a segfault, as C
 * code does - and fails alone: its worker is replaced, the other batches
 * complete, the crash report says where it happened, and pi comes out of
 * the 63 good batches.  The pool then runs another map as if nothing
 * happened.
 *
 * Python twin: examples/python/monte_carlo_pi.py.  There the bad batch
 * raises an exception instead: a real segfault in a worker would hang
 * multiprocessing.Pool, and break a ProcessPoolExecutor for every batch
 * not yet done.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <mproc.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define BATCHES 64
#define SAMPLES 250000 /* per batch */
#define BAD     13

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct batch {
    uint64_t seed;
    uint64_t samples;
    int index;
} batch;

/* The bug: a record whose pointer nobody set. */
struct sample_log {
    uint64_t *hits;
};

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* One batch: how many of its points fall inside the quarter circle. */
static int count_hits(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    const batch *b = in;
    uint64_t s = b->seed, hits = 0;
    for (uint64_t i = 0; i < b->samples; i++) {
        double x = (double)(xorshift(&s) >> 11) / 9007199254740992.0;
        double y = (double)(xorshift(&s) >> 11) / 9007199254740992.0;
        hits += x * x + y * y <= 1.0;
    }
    volatile struct sample_log log = {b->index == BAD ? NULL : &hits};
    *(uint64_t *)out = *log.hits; /* batch 13 dereferences NULL */
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    static batch in[BATCHES];
    static uint64_t hits[BATCHES];
    static int errors[BATCHES];
    for (int i = 0; i < BATCHES; i++)
        in[i] = (batch){0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1), SAMPLES, i};

    mp_log_set_level(MP_LOG_CRITICAL); /* the crash is printed below */
    double t0 = now();
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.progress_bar = true;
    mp_pool *pool = NULL;
    if (mp_pool_new(&o, &pool) < 0)
        return 1;
    mp_map_spec spec = MP_MAP_SPEC_INIT;
    spec.fn = count_hits;
    spec.in = in;
    spec.n = BATCHES;
    spec.in_size = sizeof in[0];
    spec.out = hits;
    spec.out_size = sizeof hits[0];
    spec.chunksize = 1;
    spec.errors = errors;
    mp_future *f = mp_pool_map_async_ex(pool, &spec);
    int rc = f ? mp_future_wait(f, 120.0) : MP_ENOMEM;
    if (rc == 0)
        rc = mp_future_status(f);
    double elapsed = now() - t0;

    uint64_t inside = 0, total = 0;
    int failed = 0;
    for (int i = 0; i < BATCHES; i++) {
        if (errors[i]) {
            failed++;
            printf("batch %d failed: %s\n", i, mp_err_name(errors[i]));
            continue;
        }
        inside += hits[i];
        total += SAMPLES;
    }
    printf("the map: %s (the first failed item's error), item %lld; its report:\n%s\n",
           mp_err_name(rc), f ? mp_future_failed_index(f) : -1LL,
           f && mp_future_report(f) ? mp_future_report(f) : "(none)");
    mp_future_free(f);
    double pi = 4.0 * (double)inside / (double)total;
    printf("pi is about %.6f from %d batches (error %.6f)\n", pi, BATCHES - failed,
           fabs(pi - 3.14159265358979));

    /* The pool goes on: a second map, small, all good. */
    batch again[4];
    uint64_t again_hits[4];
    for (int i = 0; i < 4; i++)
        again[i] = (batch){(uint64_t)(i + 100), 1000, i};
    int rc2 = mp_pool_map(pool, count_hits, again, 4, sizeof again[0], again_hits,
                          sizeof again_hits[0], 1);
    mp_pool_stats st;
    mp_pool_stats_get(pool, &st);
    printf("afterwards: another map -> %s; workers started %llu, died %llu\n", mp_err_name(rc2),
           (unsigned long long)st.workers_started, (unsigned long long)st.workers_died);
    mp_pool_free(pool);
    printf("time: %.3f s\n", elapsed);

    bool ok = rc == MP_EWORKER && failed == 1 && errors[BAD] == MP_EWORKER &&
              fabs(pi - 3.14159265358979) < 0.01 && rc2 == 0 && st.workers_died == 1;
    return ok ? 0 : 1;
}
