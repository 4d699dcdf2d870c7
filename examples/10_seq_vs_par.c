/*
 * 10_seq_vs_par.c - the same CPU-bound work, sequentially and on a pool.
 *
 * The seeds' "3_basic_seq_par.py": a CPU-intensive function over a list of
 * inputs, first in a loop, then with the pool's map; both times are
 * printed, with the speed-up and the parallel efficiency (speed-up divided
 * by the workers).  On N cores the pool approaches N times faster.
 *
 * Python:  results = [cpu_intensive_task(n) for n in [1000000] * 4]
 *          with Pool(processes=4) as pool:
 *              results = pool.map(cpu_intensive_task, [1000000] * 4)
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime() under -std=c11 */
#include <mproc.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A sum of squares modulo a prime, with a dependency the compiler cannot
 * shorten: the same answer everywhere, in a fixed amount of work. */
static uint64_t cpu_intensive(uint64_t n)
{
    uint64_t s = 0, x = n;
    for (uint64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        s = (s + (x >> 33) * (x >> 33)) % 1000000007ULL;
    }
    return s;
}

static int cpu_intensive_task(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    *(uint64_t *)out = cpu_intensive(*(const uint64_t *)in);
    return 0;
}

int main(void)
{
    int workers = mp_cpu_count();
    enum { JOBS = 16 };
    uint64_t inputs[JOBS], seq[JOBS], par[JOBS];
    for (int i = 0; i < JOBS; i++)
        inputs[i] = 2000000;

    printf("%d jobs of cpu_intensive(2000000)\n", JOBS);
    double t0 = now();
    for (int i = 0; i < JOBS; i++)
        seq[i] = cpu_intensive(inputs[i]);
    double t_seq = now() - t0;
    printf("Sequential execution: %.3f s\n", t_seq);

    mp_pool_opts opts = MP_POOL_OPTS_INIT;
    opts.processes = workers;
    mp_pool *pool = NULL;
    int err = mp_pool_new(&opts, &pool);
    if (err < 0) {
        fprintf(stderr, "mp_pool_new: %s\n", mp_strerror(err));
        return 1;
    }
    t0 = now();
    int rc = mp_pool_map(pool, cpu_intensive_task, inputs, JOBS, sizeof inputs[0], par,
                         sizeof par[0], 1);
    double t_par = now() - t0;
    mp_pool_free(pool);
    printf("Parallel execution (%d workers): %.3f s -> %s\n", workers, t_par, mp_err_name(rc));

    int same = rc == 0;
    for (int i = 0; i < JOBS; i++)
        same &= seq[i] == par[i];
    double speedup = t_seq / t_par;
    printf("speed-up %.2fx, parallel efficiency %.2f; results %s\n", speedup, speedup / workers,
           same ? "identical" : "DIFFERENT");
    return same ? 0 : 1;
}
