/*
 * bench_pool.c - the pool and futures against Python's Pool and
 * ProcessPoolExecutor, measured as ../shared/anchors/py_pool_map.py and
 * py_pool.py measure them: a pool of 2 workers, started and warmed up
 * before any timing; fixed workloads; the median of the trials; results
 * checked.
 *
 *   mproc_pool_map_task_overhead_us_default     Pool(2).map(square, 200000 items), wall
 *                                               time / items, chunksize as Python picks
 *                                               vs py_pool_map_task_overhead_us_default
 *   mproc_pool_map_task_overhead_us_range       the same with a function over ranges
 *                                               (the C way to write a trivial map)
 *   mproc_pool_map_task_overhead_us_chunksize1  the same with chunksize 1
 *                                               vs py_pool_map_task_overhead_us_chunksize1
 *   mproc_pool_map_bytes_task_overhead_us_default
 *                                               map_bytes over 200000 short strings (i in
 *                                               decimal) giving i*i in decimal, wall time /
 *                                               items, default chunksize; Python's map over
 *                                               ints is the nearest anchor
 *                                               vs py_pool_map_task_overhead_us_default
 *   mproc_pool_apply_async_per_s                10000 apply_async(square, i), then get all
 *                                               in order; vs py_pool_apply_async_per_s
 *   mproc_executor_submit_per_s                 10000 submit(square, i), then each future's
 *                                               result in order; vs py_executor_submit_per_s
 *   mproc_pool_map_cpu_efficiency               200 calls of a fixed ~5 ms loop: sequential
 *                                               time / (parallel time x 2 workers)
 *                                               vs py_pool_map_cpu_efficiency
 *   mproc_pool_map_1e7_ints_GBps                map of 10^7 uint32 -> uint32 from and to
 *                                               ordinary arrays (copied through shared
 *                                               memory): input bytes per second
 *                                               vs limit_memcpy_GBps
 *   mproc_pool_map_1e7_ints_GBps_shared         the same on arrays from
 *                                               mp_pool_shared_alloc (used in place)
 *   ..._range                                   the same two with a function over
 *                                               ranges: the memory-bound case
 */
#include "bench_util.h"

#include <mproc.h>
#include <stdint.h>

#define TRIALS    5
#define MAP_N     200000
#define APPLY_N   10000
#define CPU_ITEMS 200
#define BURN_N    3000000
#define BIG_N     10000000

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_pool: %s: %s\n", what, mp_strerror(rc));
    exit(1);
}

/* Python's range(200000) holds small ints, its squares need 64 bits:
 * int32 in, int64 out. */
static int square(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    int64_t v = *(const int32_t *)in;
    *(int64_t *)out = v * v;
    return 0;
}

static int square_range(const void *in, void *out, size_t n, const void *ctx)
{
    (void)ctx;
    const int32_t *a = in;
    int64_t *b = out;
    for (size_t i = 0; i < n; i++)
        b[i] = (int64_t)a[i] * a[i];
    return 0;
}

static int square_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    int64_t v = *(const int64_t *)arg;
    v *= v;
    return mp_buf_append(out, &v, sizeof v);
}

static double map_overhead(mp_pool *p, const int32_t *in, int64_t *out, size_t chunksize,
                           bool range)
{
    mp_map_spec s = MP_MAP_SPEC_INIT;
    if (range)
        s.range_fn = square_range;
    else
        s.fn = square;
    s.in = in;
    s.n = MAP_N;
    s.in_size = sizeof *in;
    s.out = out;
    s.out_size = sizeof *out;
    s.chunksize = chunksize;
    double t0 = bench_now();
    int rc = mp_pool_map_ex(p, &s);
    double dt = bench_now() - t0;
    if (rc != 0)
        die("map", rc);
    if (out[MAP_N - 1] != (int64_t)(MAP_N - 1) * (MAP_N - 1) || out[12345] != 12345LL * 12345)
        die("map: wrong results", MP_EIO);
    return dt / MAP_N * 1e6;
}

/* The square of a decimal number, in decimal (digits by hand: printf
 * would cost more than the map). */
static int square_str(const void *in, size_t len, mp_buf *out)
{
    const char *s = in;
    if (len == 0 || len > 9)
        return 1;
    long long v = 0;
    for (size_t i = 0; i < len; i++)
        v = v * 10 + (s[i] - '0');
    v *= v;
    char res[24];
    size_t n = sizeof res;
    do {
        res[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return mp_buf_append(out, res + n, sizeof res - n);
}

/* One map_bytes over the strings at in (MAP_N of them); checks two
 * results.  Returns the wall time per item in microseconds. */
static double map_bytes_overhead(mp_pool *p, const mp_bytes *in)
{
    mp_results *r = NULL;
    double t0 = bench_now();
    int rc = mp_pool_map_bytes(p, square_str, in, MAP_N, 0, &r);
    double dt = bench_now() - t0;
    if (rc != 0)
        die("map_bytes", rc);
    size_t len = 0;
    const char *last = mp_results_item(r, MAP_N - 1, &len);
    const char *mid = mp_results_item(r, 12345, NULL);
    if (!last || len != 11 || memcmp(last, "39999600001", 11) != 0 || !mid ||
        memcmp(mid, "152399025", 9) != 0)
        die("map_bytes: wrong results", MP_EIO);
    mp_results_free(r);
    return dt / MAP_N * 1e6;
}

static double apply_rate(mp_pool *p, mp_future **fs, bool executor)
{
    double t0 = bench_now();
    for (int64_t i = 0; i < APPLY_N; i++)
        fs[i] = executor ? mp_pool_submit(p, square_task, &i, sizeof i)
                         : mp_pool_apply_async(p, square_task, &i, sizeof i);
    int64_t total = 0;
    for (int i = 0; i < APPLY_N; i++) {
        int64_t v = 0;
        int rc = mp_future_get(fs[i], &v, sizeof v, NULL, 60.0);
        if (rc != 0)
            die("get", rc);
        total += v;
        mp_future_free(fs[i]);
    }
    double dt = bench_now() - t0;
    if (total != (int64_t)(APPLY_N - 1) * APPLY_N * (2 * APPLY_N - 1) / 6)
        die("apply_async: wrong results", MP_EIO);
    return APPLY_N / dt;
}

/* A fixed loop of about 5 ms on the reference machine: a dependent chain
 * the compiler can neither vectorise nor shorten. */
static uint64_t burn(uint64_t n)
{
    uint64_t x = n, s = 0;
    for (uint64_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        s ^= x >> 29;
    }
    return s;
}

static int burn_item(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    *(uint64_t *)out = burn(*(const uint64_t *)in);
    return 0;
}

/* Unsigned, so that squares past 2^32 wrap as defined. */
static int square32(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    uint32_t v = *(const uint32_t *)in;
    *(uint32_t *)out = v * v;
    return 0;
}

static int square32_range(const void *in, void *out, size_t n, const void *ctx)
{
    (void)ctx;
    const uint32_t *a = in;
    uint32_t *b = out;
    for (size_t i = 0; i < n; i++)
        b[i] = a[i] * a[i];
    return 0;
}

static double big_map(mp_pool *p, const uint32_t *in, uint32_t *out, bool range)
{
    mp_map_spec s = MP_MAP_SPEC_INIT;
    if (range)
        s.range_fn = square32_range;
    else
        s.fn = square32;
    s.in = in;
    s.n = BIG_N;
    s.in_size = sizeof *in;
    s.out = out;
    s.out_size = sizeof *out;
    double t0 = bench_now();
    int rc = mp_pool_map_ex(p, &s);
    double dt = bench_now() - t0;
    if (rc != 0)
        die("map 1e7", rc);
    if (out[BIG_N - 1] != (uint32_t)(BIG_N - 1) * (uint32_t)(BIG_N - 1) || out[777] != 777 * 777)
        die("map 1e7: wrong results", MP_EIO);
    return (double)BIG_N * sizeof *in / dt / 1e9;
}

int main(void)
{
    printf("# bench_pool: mproc %s, %d CPUs, pools of 2 workers (fork)\n", mp_version_string(),
           mp_cpu_count());
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    mp_pool *p = NULL;
    int err = mp_pool_new(&o, &p);
    if (err < 0)
        die("mp_pool_new", err);

    int32_t *in = malloc(MAP_N * sizeof *in);
    int64_t *out = malloc(MAP_N * sizeof *out);
    for (int i = 0; i < MAP_N; i++)
        in[i] = i;
    double v[TRIALS];
    /* Warm-up: workers started and hot, shared memory faulted in. */
    map_overhead(p, in, out, 1, false);
    map_overhead(p, in, out, 0, false);
    for (int t = 0; t < TRIALS; t++)
        v[t] = map_overhead(p, in, out, 0, false);
    bench_report("mproc_pool_map_task_overhead_us_default", v, TRIALS, "us",
                 "py_pool_map_task_overhead_us_default");
    map_overhead(p, in, out, 0, true);
    for (int t = 0; t < TRIALS; t++)
        v[t] = map_overhead(p, in, out, 0, true);
    bench_report("mproc_pool_map_task_overhead_us_range", v, TRIALS, "us",
                 "py_pool_map_task_overhead_us_default");
    for (int t = 0; t < TRIALS; t++)
        v[t] = map_overhead(p, in, out, 1, false);
    bench_report("mproc_pool_map_task_overhead_us_chunksize1", v, TRIALS, "us",
                 "py_pool_map_task_overhead_us_chunksize1");

    /* Short strings, copied into shared memory and back. */
    char *text = malloc((size_t)MAP_N * 8);
    mp_bytes *items = malloc(MAP_N * sizeof *items);
    for (int i = 0; i < MAP_N; i++) {
        int n = snprintf(text + (size_t)i * 8, 8, "%d", i);
        items[i] = (mp_bytes){text + (size_t)i * 8, (size_t)n};
    }
    map_bytes_overhead(p, items);
    for (int t = 0; t < TRIALS; t++)
        v[t] = map_bytes_overhead(p, items);
    bench_report("mproc_pool_map_bytes_task_overhead_us_default", v, TRIALS, "us",
                 "py_pool_map_task_overhead_us_default");
    free(items);
    free(text);

    mp_future **fs = malloc(APPLY_N * sizeof *fs);
    double r[7];
    apply_rate(p, fs, false);
    for (int t = 0; t < 7; t++)
        r[t] = apply_rate(p, fs, false);
    bench_report("mproc_pool_apply_async_per_s", r, 7, "tasks/s", "py_pool_apply_async_per_s");
    apply_rate(p, fs, true);
    for (int t = 0; t < 7; t++)
        r[t] = apply_rate(p, fs, true);
    bench_report("mproc_executor_submit_per_s", r, 7, "tasks/s", "py_executor_submit_per_s");

    /* CPU-bound: sequential in the parent, then the pool's map with the
     * default chunksize, as a pair per trial. */
    uint64_t cin[CPU_ITEMS], cout[CPU_ITEMS], seq[CPU_ITEMS];
    for (int i = 0; i < CPU_ITEMS; i++)
        cin[i] = BURN_N;
    uint64_t expect = burn(BURN_N);
    int rc = mp_pool_map(p, burn_item, cin, 4, sizeof cin[0], cout, sizeof cout[0], 0);
    if (rc != 0)
        die("burn warm-up", rc);
    double eff[TRIALS], ms = 0;
    for (int t = 0; t < TRIALS; t++) {
        double t0 = bench_now();
        for (int i = 0; i < CPU_ITEMS; i++)
            seq[i] = burn(cin[i]);
        double t_seq = bench_now() - t0;
        t0 = bench_now();
        rc = mp_pool_map(p, burn_item, cin, CPU_ITEMS, sizeof cin[0], cout, sizeof cout[0], 0);
        double t_par = bench_now() - t0;
        if (rc != 0)
            die("burn map", rc);
        for (int i = 0; i < CPU_ITEMS; i++)
            if (seq[i] != expect || cout[i] != expect)
                die("burn: wrong results", MP_EIO);
        eff[t] = t_seq / (t_par * 2);
        ms += t_seq / CPU_ITEMS * 1e3 / TRIALS;
    }
    printf("# burn(): %.2f ms per call sequential\n", ms);
    bench_report("mproc_pool_map_cpu_efficiency", eff, TRIALS, "ratio",
                 "py_pool_map_cpu_efficiency");

    /* 10^7 ints, from and to ordinary memory, then in place. */
    uint32_t *bin = malloc(BIG_N * sizeof *bin), *bout = malloc(BIG_N * sizeof *bout);
    for (uint32_t i = 0; i < BIG_N; i++)
        bin[i] = i;
    memset(bout, 0, BIG_N * sizeof *bout);
    big_map(p, bin, bout, false);
    for (int t = 0; t < TRIALS; t++)
        v[t] = big_map(p, bin, bout, false);
    bench_report("mproc_pool_map_1e7_ints_GBps", v, TRIALS, "GB/s", "limit_memcpy_GBps");
    for (int t = 0; t < TRIALS; t++)
        v[t] = big_map(p, bin, bout, true);
    bench_report("mproc_pool_map_1e7_ints_GBps_range", v, TRIALS, "GB/s", "limit_memcpy_GBps");
    uint32_t *sin = mp_pool_shared_alloc(p, BIG_N * sizeof *sin);
    uint32_t *sout = mp_pool_shared_alloc(p, BIG_N * sizeof *sout);
    if (!sin || !sout)
        die("mp_pool_shared_alloc", MP_ENOMEM);
    memcpy(sin, bin, BIG_N * sizeof *sin);
    memset(sout, 0, BIG_N * sizeof *sout);
    big_map(p, sin, sout, false);
    for (int t = 0; t < TRIALS; t++)
        v[t] = big_map(p, sin, sout, false);
    bench_report("mproc_pool_map_1e7_ints_GBps_shared", v, TRIALS, "GB/s", "limit_memcpy_GBps");
    for (int t = 0; t < TRIALS; t++)
        v[t] = big_map(p, sin, sout, true);
    bench_report("mproc_pool_map_1e7_ints_GBps_shared_range", v, TRIALS, "GB/s",
                 "limit_memcpy_GBps");

    mp_pool_shared_free(p, sin);
    mp_pool_shared_free(p, sout);
    mp_pool_free(p);
    free(in);
    free(out);
    free(fs);
    free(bin);
    free(bout);
    return 0;
}
