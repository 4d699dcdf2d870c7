/* Tests of the pool: every method and its result order, callbacks,
 * progress, shared memory, recycling, time limits, crashes of every kind,
 * workers killed at random moments, failing initializers, terminate,
 * close/join, Ctrl-C, and the forkserver and spawn start methods. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"
#include "pool/hooks.h"
#include "pool/pool_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* ---- helpers ------------------------------------------------------------ */

/* Shared counters workers increment: made before the pool, inherited. */
static _Atomic int *shared_ints(size_t n)
{
    void *m = NULL;
    CHECK_OK(mp__map_anon_shared(n * sizeof(int), &m));
    return m;
}

static mp_pool *pool_with(int workers)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = workers;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    CHECK(p != NULL);
    return p;
}

/* Waits until the pool has `want` live workers (replacements take a
 * moment); returns how many it has. */
static int wait_workers(mp_pool *p, int want, double secs)
{
    double end = mpt_now() + secs;
    int n;
    while ((n = mp_pool_worker_pids(p, NULL, 0)) != want && mpt_now() < end)
        mp__sleep_ns(1000000); /* bounded polling of a count, not a handshake */
    return n;
}

/* A map spec over n elements of in, to out. */
static mp_map_spec map_spec(const void *in, size_t n, size_t in_size, void *out, size_t out_size)
{
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.in = in;
    s.n = n;
    s.in_size = in_size;
    s.out = out;
    s.out_size = out_size;
    return s;
}

static int square_item(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    long v = *(const int *)in;
    *(long *)out = v * v;
    return 0;
}

static int square_task(const void *arg, size_t len, mp_buf *out)
{
    if (len != sizeof(long))
        return MP_EINVAL;
    long v = *(const long *)arg;
    v *= v;
    return mp_buf_append(out, &v, sizeof v);
}

static int pid_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    int pid = (int)getpid();
    return mp_buf_append(out, &pid, sizeof pid);
}

/* ---- map and friends ------------------------------------------------------ */

TEST(map_results_in_order_for_any_chunksize)
{
    mp_pool *p = pool_with(2);
    enum { N = 10007 };
    int *in = malloc(N * sizeof *in);
    long *out = malloc(N * sizeof *out);
    for (int i = 0; i < N; i++)
        in[i] = i - 500;
    size_t chunks[] = {0, 1, 3, 64, 5000, N, 2 * N};
    for (size_t k = 0; k < MP__ARRAY_SIZE(chunks); k++) {
        MPT_CONTEXT("chunksize %zu", chunks[k]);
        memset(out, 0xff, N * sizeof *out);
        CHECK_OK(mp_pool_map(p, square_item, in, N, sizeof *in, out, sizeof *out, chunks[k]));
        for (int i = 0; i < N; i++)
            CHECK_EQ(out[i], (long)(i - 500) * (i - 500));
    }
    MPT_CONTEXT_CLEAR();
    /* n == 0 is a success that runs nothing. */
    CHECK_OK(mp_pool_map(p, square_item, in, 0, sizeof *in, out, sizeof *out, 0));
    free(in);
    free(out);
    mp_pool_free(p);
}

typedef struct pow_args {
    int base, exp;
} pow_args;

static int ipow(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    const pow_args *a = in;
    long r = 1;
    for (int i = 0; i < a->exp; i++)
        r *= a->base;
    *(long *)out = r;
    return 0;
}

TEST(starmap_over_argument_structs)
{
    mp_pool *p = pool_with(2);
    pow_args pairs[] = {{2, 3}, {4, 5}, {6, 7}, {3, 0}, {-2, 5}};
    long out[5];
    CHECK_OK(mp_pool_starmap(p, ipow, pairs, 5, sizeof pairs[0], out, sizeof out[0], 0));
    CHECK_EQ(out[0], 8);
    CHECK_EQ(out[1], 1024);
    CHECK_EQ(out[2], 279936);
    CHECK_EQ(out[3], 1);
    CHECK_EQ(out[4], -32);
    mp_future *f = mp_pool_starmap_async(p, ipow, pairs, 3, sizeof pairs[0], out, sizeof out[0], 1);
    CHECK_OK(mp_future_get(f, NULL, 0, NULL, 30.0));
    CHECK_EQ(out[2], 279936);
    mp_future_free(f);
    mp_pool_free(p);
}

static int scaled(const void *in, void *out, const void *ctx)
{
    *(double *)out = *(const double *)in * *(const double *)ctx;
    return 0;
}

static int range_square(const void *in, void *out, size_t n, const void *ctx)
{
    (void)ctx;
    const int *a = in;
    long *b = out;
    for (size_t i = 0; i < n; i++)
        b[i] = (long)a[i] * a[i];
    return 0;
}

static int count_calls(const void *in, void *out, const void *ctx)
{
    (void)out;
    (void)ctx;
    (void)in;
    return 0;
}

TEST(map_ctx_range_functions_and_empty_elements)
{
    mp_pool *p = pool_with(2);
    double in[100], out[100], factor = 2.5;
    for (int i = 0; i < 100; i++)
        in[i] = i;
    mp_map_spec s = map_spec(in, 100, sizeof in[0], out, sizeof out[0]);
    s.fn = scaled;
    s.ctx = &factor;
    s.ctx_size = sizeof factor;
    s.chunksize = 7;
    CHECK_OK(mp_pool_map_ex(p, &s));
    for (int i = 0; i < 100; i++)
        CHECK_DBL_NEAR(out[i], i * 2.5, 1e-12);

    enum { N = 100000 };
    int *a = malloc(N * sizeof *a);
    long *b = malloc(N * sizeof *b);
    for (int i = 0; i < N; i++)
        a[i] = i;
    mp_map_spec r = MP_MAP_SPEC_INIT;
    r.range_fn = range_square;
    r.in = a;
    r.n = N;
    r.in_size = sizeof *a;
    r.out = b;
    r.out_size = sizeof *b;
    CHECK_OK(mp_pool_map_ex(p, &r));
    for (int i = 0; i < N; i++)
        CHECK_EQ(b[i], (long)i * i);

    /* No input and no output: the function runs n times for its effects. */
    mp_map_spec z = MP_MAP_SPEC_INIT;
    z.fn = count_calls;
    z.n = 1000;
    CHECK_OK(mp_pool_map_ex(p, &z));
    free(a);
    free(b);
    mp_pool_free(p);
}

TEST(map_bad_arguments)
{
    mp_pool *p = pool_with(1);
    int in[4] = {1, 2, 3, 4};
    long out[4];
    CHECK_ERR(mp_pool_map(NULL, square_item, in, 4, sizeof in[0], out, sizeof out[0], 0),
              MP_EINVAL);
    CHECK_ERR(mp_pool_map(p, NULL, in, 4, sizeof in[0], out, sizeof out[0], 0), MP_EINVAL);
    CHECK_ERR(mp_pool_map(p, square_item, NULL, 4, sizeof in[0], out, sizeof out[0], 0), MP_EINVAL);
    CHECK_ERR(mp_pool_map(p, square_item, in, 4, sizeof in[0], NULL, sizeof out[0], 0), MP_EINVAL);
    mp_map_spec s = map_spec(in, 4, sizeof in[0], out, sizeof out[0]);
    s.fn = square_item;
    s.range_fn = range_square; /* both */
    CHECK_ERR(mp_pool_map_ex(p, &s), MP_EINVAL);
    s.range_fn = NULL;
    s.ctx_size = 8; /* without ctx */
    CHECK_ERR(mp_pool_map_ex(p, &s), MP_EINVAL);
    CHECK_ERR(mp_pool_map_ex(p, NULL), MP_EINVAL);
    mp_future *f = mp_pool_apply_async(p, NULL, NULL, 0);
    CHECK(f != NULL);
    CHECK_ERR(mp_future_get(f, NULL, 0, NULL, 0), MP_EINVAL);
    mp_future_free(f);
    mp_pool_free(p);
}

/* Each option mp_pool_new() refuses, refused with MP_EINVAL and no pool;
 * fails if a bad option is accepted, or reported in a log line only. */
TEST(pool_new_returns_why_it_refuses)
{
    mp_pool *q = (mp_pool *)&q; /* not NULL: the call must clear it */
    CHECK_ERR(mp_pool_new(NULL, NULL), MP_EINVAL);
    CHECK_ERR(mp_pool_new(&(mp_pool_opts){.processes = -1}, &q), MP_EINVAL);
    CHECK(q == NULL);
    mp_pool_opts bad[6];
    for (int i = 0; i < 6; i++)
        bad[i] = (mp_pool_opts)MP_POOL_OPTS_INIT;
    bad[0].processes = 1025;
    bad[1].start_method = (mp_start_method)42;
    bad[2].initarg_size = 8; /* without initarg */
    bad[3].progress_interval = -1.0;
    bad[4].terminate_grace = -0.5;
    bad[5].task_timeout = NAN;
    for (int i = 0; i < 6; i++) {
        q = (mp_pool *)&q;
        int rc = mp_pool_new(&bad[i], &q);
        if (rc != MP_EINVAL || q != NULL)
            mpt_fail(__FILE__, __LINE__, "option %d: %s, pool %p", i, mp_err_name(rc), (void *)q);
    }
}

static int item_fails_on_multiples_of_7(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    int v = *(const int *)in;
    if (v % 7 == 0)
        return 100 + v;
    *(int *)out = v;
    return 0;
}

TEST(map_item_errors_fail_those_items_only)
{
    mp_pool *p = pool_with(2);
    enum { N = 500 };
    int in[N], out[N], errs[N];
    for (int i = 0; i < N; i++)
        in[i] = i + 1;
    mp_map_spec s = map_spec(in, N, sizeof in[0], out, sizeof out[0]);
    s.fn = item_fails_on_multiples_of_7;
    s.errors = errs;
    s.chunksize = 13;
    mp_future *f = mp_pool_map_async_ex(p, &s);
    CHECK_ERR(mp_future_get(f, NULL, 0, NULL, 30.0), MP_ETASK);
    CHECK_EQ(mp_future_failed_index(f), 6); /* value 7 */
    CHECK_EQ(mp_future_task_error(f), 107);
    for (int i = 0; i < N; i++) {
        if ((i + 1) % 7 == 0) {
            CHECK_ERR(errs[i], MP_ETASK);
        } else {
            CHECK_EQ(errs[i], 0);
            CHECK_EQ(out[i], i + 1);
        }
    }
    mp_future_free(f);
    mp_pool_free(p);
}

TEST(map_in_place_in_shared_memory)
{
    mp_pool *p = pool_with(2);
    enum { N = 300000 };
    int *in = mp_pool_shared_alloc(p, N * sizeof *in);
    long *out = mp_pool_shared_alloc(p, N * sizeof *out);
    CHECK(in && out);
    CHECK_EQ((uintptr_t)in % 64, 0);
    for (int i = 0; i < N; i++)
        in[i] = i;
    CHECK_OK(mp_pool_map(p, square_item, in, N, sizeof *in, out, sizeof *out, 0));
    for (int i = 0; i < N; i++)
        CHECK_EQ(out[i], (long)i * i);
    /* A part of a block works too, and growth keeps old pointers valid. */
    void *big = mp_pool_shared_alloc(p, (size_t)64 << 20);
    CHECK(big != NULL);
    CHECK_OK(mp_pool_map(p, square_item, in + 10, 100, sizeof *in, out + 10, sizeof *out, 3));
    CHECK_EQ(out[109], 109L * 109);
    CHECK_EQ(in[N - 1], N - 1);
    mp_pool_shared_free(p, big);
    mp_pool_shared_free(p, in);
    mp_pool_shared_free(p, out);
    mp_pool_shared_free(p, NULL);
    CHECK(mp_pool_shared_alloc(p, 0) == NULL);
    mp_pool_free(p);
}

/* pool.h: mp_pool_shared_alloc "Returns NULL for size 0, a closed pool, or
 * when memory runs out"; fails if a closed (or terminated) pool still hands
 * out memory.  Memory handed out before stays usable. */
TEST(shared_alloc_returns_null_on_a_closed_pool)
{
    mp_pool *p = pool_with(1);
    int *before = mp_pool_shared_alloc(p, 4096);
    CHECK_NOT_NULL(before);
    CHECK_OK(mp_pool_close(p));
    CHECK_NULL(mp_pool_shared_alloc(p, 64));
    CHECK_NULL(mp_pool_shared_alloc(NULL, 64));
    before[1023] = 7; /* still mapped */
    CHECK_EQ(before[1023], 7);
    mp_pool_shared_free(p, before);
    CHECK_OK(mp_pool_join(p, 30.0));
    CHECK_NULL(mp_pool_shared_alloc(p, 64));
    mp_pool *q = pool_with(1);
    CHECK_OK(mp_pool_terminate(q));
    CHECK_NULL(mp_pool_shared_alloc(q, 64));
    mp_pool_free(q);
    mp_pool_free(p);
}

/* Bytes of memory the pool's data file holds, found through /proc. */
static long long data_file_bytes(void)
{
    DIR *d = opendir("/proc/self/fd");
    long long bytes = -1;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%.255s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        struct stat st;
        if (strstr(target, "mproc-pool-data") && stat(path, &st) == 0)
            bytes = (long long)st.st_blocks * 512;
    }
    if (d)
        closedir(d);
    return bytes;
}

TEST(freed_shared_memory_goes_back_beyond_a_bound)
{
    mp_pool *p = pool_with(1);
    enum { K = 3 };
    size_t sz = (size_t)100 << 20;
    unsigned char *b[K];
    for (int k = 0; k < K; k++) {
        b[k] = mp_pool_shared_alloc(p, sz);
        CHECK(b[k] != NULL);
        memset(b[k], k + 1, sz);
    }
    CHECK_GE(data_file_bytes(), (long long)(K * sz));
    /* The first two stay warm (200 MiB); the third passes the bound. */
    mp_pool_shared_free(p, b[0]);
    mp_pool_shared_free(p, b[1]);
    CHECK_GE(data_file_bytes(), (long long)(K * sz));
    mp_pool_shared_free(p, b[2]);
    CHECK_LE(data_file_bytes(), (long long)(64 << 20));
    /* The region still works, and reads zeros where it was given back. */
    int *in = mp_pool_shared_alloc(p, 1000 * sizeof *in);
    long *out = mp_pool_shared_alloc(p, 1000 * sizeof *out);
    CHECK_EQ(in[999], 0);
    for (int i = 0; i < 1000; i++)
        in[i] = i;
    CHECK_OK(mp_pool_map(p, square_item, in, 1000, sizeof *in, out, sizeof *out, 0));
    CHECK_EQ(out[999], 999L * 999);
    mp_pool_free(p);
}

/* ---- imap ------------------------------------------------------------------- */

TEST(imap_yields_in_order)
{
    mp_pool *p = pool_with(2);
    enum { N = 3001 };
    int *in = malloc(N * sizeof *in);
    for (int i = 0; i < N; i++)
        in[i] = i;
    mp_imap *it = NULL;
    CHECK_OK(mp_pool_imap(p, square_item, in, N, sizeof *in, sizeof(long), 17, &it));
    CHECK(it != NULL);
    free(in); /* copied before imap returned */
    for (int i = 0; i < N; i++) {
        long v = -1;
        size_t idx = 99999;
        CHECK_OK(mp_imap_next(it, &v, &idx, 30.0));
        CHECK_EQ(idx, i);
        CHECK_EQ(v, (long)i * i);
    }
    CHECK_ERR(mp_imap_next(it, NULL, NULL, 0), MP_EOF);
    CHECK_ERR(mp_imap_next(it, NULL, NULL, 5.0), MP_EOF);
    mp_imap_free(it);
    mp_pool_free(p);
}

TEST(imap_unordered_yields_each_index_once)
{
    mp_pool *p = pool_with(3);
    enum { N = 5000 };
    int *in = malloc(N * sizeof *in);
    for (int i = 0; i < N; i++)
        in[i] = i;
    mp_imap *it = NULL;
    CHECK_OK(mp_pool_imap_unordered(p, square_item, in, N, sizeof *in, sizeof(long), 1, &it));
    char *seen = calloc(N, 1);
    for (int k = 0; k < N; k++) {
        long v;
        size_t idx;
        CHECK_OK(mp_imap_next(it, &v, &idx, 30.0));
        CHECK(idx < N);
        CHECK_EQ(seen[idx], 0);
        seen[idx] = 1;
        CHECK_EQ(v, (long)idx * (long)idx);
    }
    CHECK_ERR(mp_imap_next(it, NULL, NULL, 1.0), MP_EOF);
    free(seen);
    free(in);
    mp_imap_free(it);
    mp_pool_free(p);
}

static int wait_gate_item(const void *in, void *out, const void *ctx)
{
    int fd = *(const int *)ctx;
    if (latch_wait(fd, 30.0) < 0)
        return 1;
    *(int *)out = *(const int *)in;
    return 0;
}

TEST(imap_next_times_out_then_continues)
{
    latch g = latch_new();
    mp_pool *p = pool_with(2);
    int in[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = wait_gate_item;
    s.in = in;
    s.n = 8;
    s.in_size = sizeof in[0];
    s.out_size = sizeof(int);
    s.ctx = &g.r;
    s.ctx_size = sizeof g.r;
    mp_imap *it = NULL;
    CHECK_OK(mp_pool_imap_ex(p, &s, true, &it));
    double t0 = mpt_now();
    CHECK_ERR(mp_imap_next(it, NULL, NULL, 0.2), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.2);
    CHECK(mpt_now() - t0 < 10.0);
    latch_open(g);
    for (int i = 0; i < 8; i++) {
        int v;
        CHECK_OK(mp_imap_next(it, &v, NULL, 30.0));
        CHECK_EQ(v, i);
    }
    mp_imap_free(it);
    /* Freed before it is consumed: the map still ends cleanly. */
    CHECK_OK(mp_pool_imap(p, square_item, in, 8, sizeof in[0], sizeof(long), 1, &it));
    mp_imap_free(it);
    mp_pool_free(p);
    latch_close(g);
}

/* imap refuses at once what it cannot run, and hands back no iterator;
 * fails if an error waits for the first mp_imap_next(). */
TEST(imap_returns_its_errors_at_once)
{
    mp_pool *p = pool_with(1);
    int in[4] = {1, 2, 3, 4};
    mp_imap *it = (mp_imap *)&it;
    CHECK_ERR(mp_pool_imap(p, NULL, in, 4, sizeof in[0], sizeof(long), 0, &it), MP_EINVAL);
    CHECK(it == NULL);
    CHECK_ERR(mp_pool_imap(NULL, square_item, in, 4, sizeof in[0], sizeof(long), 0, &it),
              MP_EINVAL);
    CHECK_ERR(mp_pool_imap(p, square_item, NULL, 4, sizeof in[0], sizeof(long), 0, &it), MP_EINVAL);
    CHECK_ERR(mp_pool_imap(p, square_item, in, 4, sizeof in[0], sizeof(long), 0, NULL), MP_EINVAL);
    mp_map_spec s = map_spec(in, 4, sizeof in[0], NULL, sizeof(long));
    s.fn = square_item;
    s.range_fn = range_square; /* both */
    CHECK_ERR(mp_pool_imap_ex(p, &s, true, &it), MP_EINVAL);
    CHECK_ERR(mp_pool_imap_ex(p, NULL, false, &it), MP_EINVAL);
    /* An empty map runs: its iterator ends at once. */
    CHECK_OK(mp_pool_imap_unordered(p, square_item, in, 0, sizeof in[0], sizeof(long), 0, &it));
    CHECK_ERR(mp_imap_next(it, NULL, NULL, 0), MP_EOF);
    mp_imap_free(it);
    /* A closed pool refuses, empty maps too. */
    CHECK_OK(mp_pool_close(p));
    it = (mp_imap *)&it;
    CHECK_ERR(mp_pool_imap(p, square_item, in, 4, sizeof in[0], sizeof(long), 0, &it), MP_ECLOSED);
    CHECK(it == NULL);
    CHECK_ERR(mp_pool_imap(p, square_item, in, 0, sizeof in[0], sizeof(long), 0, &it), MP_ECLOSED);
    CHECK_OK(mp_pool_join(p, 30.0));
    mp_pool_free(p);
}

/* ---- apply and callbacks ---------------------------------------------------- */

static int echo_task(const void *arg, size_t len, mp_buf *out)
{
    return mp_buf_append(out, arg, len);
}

/* A closed pool refuses an apply task whatever its argument's size.
 * Fails (a stack overflow, under ASan) when a refused argument larger
 * than a job entry holds is still copied into the entry. */
TEST(apply_with_a_large_argument_on_a_closed_pool_is_refused)
{
    mp_pool *p = pool_with(1);
    CHECK_OK(mp_pool_close(p));
    static unsigned char arg[64 << 10];
    size_t sizes[] = {1, 64, 65, 4096, sizeof arg};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        mp_future *f = mp_pool_apply_async(p, echo_task, arg, sizes[i]);
        CHECK(f != NULL);
        CHECK_ERR(mp_future_status(f), MP_ECLOSED);
        mp_future_free(f);
    }
    CHECK_OK(mp_pool_join(p, 30.0));
    mp_pool_free(p);
}

/* A refused submission says why in mp_last_error_detail() as well as in
 * its failed future.  Fails if a check returns its code without the
 * detail, or the detail of an earlier refusal is left standing. */
TEST(refused_submissions_say_why)
{
    mp_pool *p = pool_with(1);
    static const struct {
        mp_task_fn fn;
        const void *arg;
        size_t len;
        const char *why;
    } bad[] = {
        {NULL, NULL, 0, "fn must not be NULL"},
        {echo_task, NULL, 8, "arg must not be NULL when len > 0"},
    };
    for (size_t i = 0; i < MP__ARRAY_SIZE(bad); i++) {
        MPT_CONTEXT("bad submission %zu", i);
        mp_future *f = mp_pool_submit(p, bad[i].fn, bad[i].arg, bad[i].len);
        CHECK(f != NULL);
        CHECK_ERR(mp_future_status(f), MP_EINVAL);
        CHECK(strstr(mp_last_error_detail(), bad[i].why) != NULL);
        mp_future_free(f);
    }
    MPT_CONTEXT_CLEAR();
    mp_future *f = mp_pool_apply_async(NULL, echo_task, "x", 1);
    CHECK_ERR(mp_future_status(f), MP_EINVAL);
    CHECK(strstr(mp_last_error_detail(), "pool must not be NULL") != NULL);
    mp_future_free(f);
    CHECK_OK(mp_pool_close(p));
    f = mp_pool_apply_async(p, echo_task, "x", 1);
    CHECK_ERR(mp_future_status(f), MP_ECLOSED);
    CHECK(strstr(mp_last_error_detail(), "closed") != NULL);
    mp_future_free(f);
    CHECK_OK(mp_pool_join(p, 30.0));
    mp_pool_free(p);
}

/* Builds a result of *arg bytes in small appends, a pattern of its index. */
static int pattern_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    size_t n = *(const size_t *)arg;
    for (size_t i = 0; i < n;) {
        size_t k = n - i < 1000 ? n - i : 1000;
        unsigned char *b = mp_buf_alloc(out, k);
        if (!b)
            return MP_ENOMEM;
        for (size_t j = 0; j < k; j++)
            b[j] = (unsigned char)((i + j) * 31 + 7);
        i += k;
    }
    if (mp_buf_len(out) != n)
        return 1;
    return 0;
}

TEST(apply_and_apply_async_return_bytes)
{
    mp_pool *p = pool_with(2);
    long x = 12, r = 0;
    size_t len = 0;
    CHECK_OK(mp_pool_apply(p, square_task, &x, sizeof x, &r, sizeof r, &len, 30.0));
    CHECK_EQ(r, 144);
    CHECK_EQ(len, sizeof r);
    /* A result larger than the buffer: nothing copied, the size told. */
    char big[300];
    memset(big, 'x', sizeof big);
    char small[10];
    CHECK_ERR(mp_pool_apply(p, echo_task, big, sizeof big, small, sizeof small, &len, 30.0),
              MP_EMSGSIZE);
    CHECK_EQ(len, sizeof big);

    /* Many results of every size, from inline to the worker's result file
     * growing several times; the ring wraps as results are read. */
    size_t sizes[] = {0, 1, 63, 64, 65, 4000, 70000, 300000, 5 << 20, 17, 100000};
    enum { ROUNDS = 4 };
    mp_future *fs[ROUNDS * MP__ARRAY_SIZE(sizes)];
    size_t nf = 0;
    for (int k = 0; k < ROUNDS; k++)
        for (size_t i = 0; i < MP__ARRAY_SIZE(sizes); i++)
            fs[nf++] = mp_pool_apply_async(p, pattern_task, &sizes[i], sizeof sizes[i]);
    for (size_t k = 0; k < nf; k++) {
        size_t want = sizes[k % MP__ARRAY_SIZE(sizes)];
        CHECK_OK(mp_future_wait(fs[k], 60.0));
        CHECK_OK(mp_future_status(fs[k]));
        const unsigned char *b = mp_future_result(fs[k], &len);
        CHECK_EQ(len, want);
        CHECK(want == 0 || b != NULL);
        for (size_t j = 0; j < len; j++)
            if (b[j] != (unsigned char)(j * 31 + 7))
                CHECK_EQ(b[j], (unsigned char)(j * 31 + 7));
        mp_future_free(fs[k]);
    }
    /* Large arguments go through the data region. */
    size_t alen = 3 << 20;
    unsigned char *arg = malloc(alen);
    for (size_t i = 0; i < alen; i++)
        arg[i] = (unsigned char)(i * 13);
    mp_future *f = mp_pool_apply_async(p, echo_task, arg, alen);
    free(arg);
    CHECK_OK(mp_future_wait(f, 60.0));
    const unsigned char *b = mp_future_result(f, &len);
    CHECK_EQ(len, alen);
    for (size_t i = 0; i < alen; i += 4099)
        CHECK_EQ(b[i], (unsigned char)(i * 13));
    mp_future_free(f);
    mp_pool_free(p);
}

/* A result of a size and a pattern its index chooses: {index, size}. */
typedef struct tagged_arg {
    size_t index, size;
} tagged_arg;

static unsigned char tag_byte(size_t index, size_t j)
{
    return (unsigned char)(index * 131 + j * 7 + j / 251);
}

static int tagged_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    const tagged_arg *a = arg;
    /* In appends of 1000 bytes, as a result built piece by piece: the
     * result grows in the ring. */
    unsigned char piece[1000];
    for (size_t j = 0; j < a->size; j += sizeof piece) {
        size_t k = a->size - j < sizeof piece ? a->size - j : sizeof piece;
        for (size_t i = 0; i < k; i++)
            piece[i] = tag_byte(a->index, j + i);
        int rc = mp_buf_append(out, piece, k);
        if (rc < 0)
            return rc;
    }
    return 0;
}

enum { TAGGED_MAX = 40960 };

static int tagged_item(const void *in, void *out, const void *ctx)
{
    size_t index = *(const size_t *)in, size = *(const size_t *)ctx;
    for (size_t j = 0; j < size; j++)
        ((unsigned char *)out)[j] = tag_byte(index, j);
    return 0;
}

/* How many of the n bytes at b are not result index's. */
static size_t tagged_wrong(const unsigned char *b, size_t n, size_t index)
{
    size_t wrong = 0;
    for (size_t j = 0; j < n; j++)
        wrong += b[j] != tag_byte(index, j);
    return wrong;
}

/* Each result is its own task's bytes, never a later result of the same
 * worker written over it in the result ring: 4 KB and 40 KB results, the
 * ring wrapping many times, over apply_async and map; and sizes mixed,
 * so that a result at offset 0 (put into an emptied ring, or wrapped)
 * reaches past where the older results ended (the supervisor's res_tail)
 * - the next ones must not take its start for free space.  The ring's
 * own cases (test_pool_ring.c) reach that state on purpose. */
TEST(every_result_holds_its_own_tasks_bytes)
{
    enum { N = 400 };
    /* 0: sizes from 1 KB to 40 KB mixed, result by result. */
    const size_t sizes[] = {4096, TAGGED_MAX, 0, 4096, TAGGED_MAX};
    size_t nsizes = MP__ARRAY_SIZE(sizes);
    mp_pool *p = pool_with(4);
    tagged_arg *args = malloc(N * sizeof *args);
    mp_future **fs = malloc(N * sizeof *fs);
    size_t *idx = malloc(N * sizeof *idx);
    unsigned char *outs = malloc((size_t)N * TAGGED_MAX);
    for (size_t s = 0; s < nsizes; s++) {
        if (sizes[s])
            MPT_CONTEXT("apply_async, %zu-byte results", sizes[s]);
        else
            MPT_CONTEXT("apply_async, results of 1 to 40 KB mixed");
        for (size_t i = 0; i < N; i++) {
            args[i] = (tagged_arg){i, sizes[s] ? sizes[s] : 1000 + (i * 7919 % 40) * 1000};
            fs[i] = mp_pool_apply_async(p, tagged_task, &args[i], sizeof args[i]);
            CHECK(fs[i] != NULL);
        }
        size_t wrong = 0;
        for (size_t i = 0; i < N; i++) {
            size_t len = 0;
            CHECK_OK(mp_future_wait(fs[i], 60.0));
            CHECK_OK(mp_future_status(fs[i]));
            const unsigned char *b = mp_future_result(fs[i], &len);
            CHECK_EQ(len, args[i].size);
            wrong += tagged_wrong(b, len, i) != 0;
            mp_future_free(fs[i]);
        }
        CHECK_EQ(wrong, 0);
        if (!sizes[s])
            continue;
        MPT_CONTEXT("map, %zu-byte outputs", sizes[s]);
        for (size_t i = 0; i < N; i++)
            idx[i] = i;
        mp_map_spec m = MP_MAP_SPEC_INIT;
        m.fn = tagged_item;
        m.in = idx;
        m.n = N;
        m.in_size = sizeof idx[0];
        m.out = outs;
        m.out_size = sizes[s];
        m.chunksize = 3;
        m.ctx = &sizes[s];
        m.ctx_size = sizeof sizes[s];
        CHECK_OK(mp_pool_map_ex(p, &m));
        wrong = 0;
        for (size_t i = 0; i < N; i++)
            wrong += tagged_wrong(outs + i * sizes[s], sizes[s], i) != 0;
        CHECK_EQ(wrong, 0);
    }
    MPT_CONTEXT_CLEAR();
    free(outs);
    free(idx);
    free(fs);
    free(args);
    mp_pool_free(p);
}

/* Builds "hello, world" in place, then cuts it back to "hello". */
static int buf_api_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    if (mp_buf_len(out) != 0 || mp_buf_append(out, "hello", 5) != 0)
        return 1;
    char *more = mp_buf_alloc(out, 7);
    if (!more)
        return 2;
    memcpy(more, ", world", 7);
    if (mp_buf_len(out) != 12 || memcmp(mp_buf_data(out), "hello, world", 12) != 0)
        return 3;
    /* Past the inline space and back. */
    if (!mp_buf_alloc(out, 5000))
        return 4;
    if (memcmp(mp_buf_data(out), "hello, world", 12) != 0)
        return 5;
    mp_buf_truncate(out, 5);
    mp_buf_truncate(out, 50); /* not longer: no effect */
    if (mp_buf_append(NULL, "x", 1) != MP_EINVAL || mp_buf_alloc(NULL, 1) != NULL)
        return 6;
    return mp_buf_len(out) == 5 ? 0 : 7;
}

TEST(result_buffer_api)
{
    mp_pool *p = pool_with(1);
    CHECK_EQ(mp_pool_size(p), 1);
    CHECK_ERR(mp_pool_size(NULL), MP_EINVAL);
    char out[16] = {0};
    size_t len = 0;
    CHECK_OK(mp_pool_apply(p, buf_api_task, NULL, 0, out, sizeof out, &len, 30.0));
    CHECK_EQ(len, 5);
    CHECK(memcmp(out, "hello", 5) == 0);
    mp_pool_free(p);
    /* The default size is the CPU count. */
    CHECK_OK(mp_pool_new(NULL, &p));
    CHECK(p != NULL);
    CHECK_EQ(mp_pool_size(p), mp_cpu_count());
    mp_pool_free(p);
}

TEST(many_more_tasks_than_slots_all_complete)
{
    mp_pool *p = pool_with(2);
    enum { N = 20000 };
    mp_future **fs = malloc(N * sizeof *fs);
    for (long i = 0; i < N; i++)
        fs[i] = mp_pool_submit(p, square_task, &i, sizeof i);
    for (long i = 0; i < N; i++) {
        long v = 0;
        CHECK_OK(mp_future_get(fs[i], &v, sizeof v, NULL, 60.0));
        CHECK_EQ(v, i * i);
        mp_future_free(fs[i]);
    }
    free(fs);
    mp_pool_free(p);
}

static _Atomic int cb_ok, cb_err;
static pthread_t cb_thread_seen;

static void on_ok(mp_future *f, void *ctx)
{
    long v = 0;
    CHECK_OK(mp_future_get(f, &v, sizeof v, NULL, 0));
    CHECK_EQ(v, *(long *)ctx * *(long *)ctx);
    cb_thread_seen = pthread_self();
    atomic_fetch_add(&cb_ok, 1);
}

static void on_err(mp_future *f, void *ctx)
{
    (void)ctx;
    CHECK_ERR(mp_future_status(f), MP_ETASK);
    atomic_fetch_add(&cb_err, 1);
}

static int fail_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    return -77;
}

TEST(apply_async_callbacks_run_in_the_parent)
{
    mp_pool *p = pool_with(2);
    enum { N = 200 };
    long xs[N];
    mp_future *fs[N];
    for (int i = 0; i < N; i++) {
        xs[i] = i;
        fs[i] = mp_pool_apply_async_cb(p, i % 4 ? square_task : fail_task, &xs[i], sizeof xs[i],
                                       on_ok, on_err, &xs[i]);
    }
    CHECK_EQ(mp_wait(fs, N, MP_ALL_COMPLETED, 60.0), N);
    /* Callbacks run on the pool's callback thread, after the future is
     * finished; free drains them. */
    mp_pool_close(p);
    CHECK_OK(mp_pool_join(p, 30.0));
    mp_pool_free(p);
    CHECK_EQ(atomic_load(&cb_ok), N - N / 4);
    CHECK_EQ(atomic_load(&cb_err), N / 4);
    CHECK(!pthread_equal(cb_thread_seen, pthread_self()));
    for (int i = 0; i < N; i++)
        mp_future_free(fs[i]);
}

static _Atomic int progress_calls;
static _Atomic size_t progress_last, progress_total;
static _Atomic int progress_backwards;

static void on_progress(size_t done, size_t total, void *ctx)
{
    (void)ctx;
    if (done < atomic_load(&progress_last))
        atomic_store(&progress_backwards, 1);
    atomic_store(&progress_last, done);
    atomic_store(&progress_total, total);
    atomic_fetch_add(&progress_calls, 1);
}

static int slow_item(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    /* ~0.2 ms of work, so the map lasts long enough for several reports. */
    volatile unsigned long x = 0;
    for (int i = 0; i < 100000; i++)
        x += (unsigned long)i * (unsigned)*(const int *)in;
    *(int *)out = *(const int *)in + (int)(x & 0);
    return 0;
}

TEST(progress_callback_and_bar)
{
    /* The bar goes to stderr: catch it in a pipe. */
    int pfd[2];
    CHECK_EQ(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), 0);
    int saved = dup(STDERR_FILENO);
    dup2(pfd[1], STDERR_FILENO);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.progress = on_progress;
    o.progress_bar = true;
    o.progress_interval = 0.01;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    enum { N = 1000 };
    int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    CHECK_OK(mp_pool_map(p, slow_item, in, N, sizeof in[0], out, sizeof out[0], 10));
    mp_pool_free(p); /* runs the reports still queued */
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[4096];
    ssize_t n = read(pfd[0], buf, sizeof buf - 1);
    close(pfd[0]);
    close(pfd[1]);
    CHECK(n > 0);
    buf[n] = '\0';
    CHECK_CONTAINS(buf, "100%|");
    CHECK_CONTAINS(buf, "1000/1000");
    CHECK_GE(atomic_load(&progress_calls), 2);
    CHECK_EQ(atomic_load(&progress_last), N);
    CHECK_EQ(atomic_load(&progress_total), N);
    CHECK_EQ(atomic_load(&progress_backwards), 0);
    for (int i = 0; i < N; i++)
        CHECK_EQ(out[i], i);
}

/* ---- worker lifecycle -------------------------------------------------------- */

TEST(maxtasksperchild_recycles_workers)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    o.maxtasksperchild = 2;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    int pids[6];
    for (int i = 0; i < 6; i++)
        CHECK_OK(mp_pool_apply(p, pid_task, NULL, 0, &pids[i], sizeof pids[i], NULL, 30.0));
    /* Two tasks per worker, then a fresh one. */
    CHECK_EQ(pids[0], pids[1]);
    CHECK_NE(pids[1], pids[2]);
    CHECK_EQ(pids[2], pids[3]);
    CHECK_NE(pids[3], pids[4]);
    CHECK_EQ(pids[4], pids[5]);
    CHECK_NE(pids[0], getpid());
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_GE(st.workers_recycled, 2);
    CHECK_EQ(st.workers_died, 0);
    mp_pool_free(p);
}

static int spin_forever(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    volatile int forever = 1;
    while (forever) {
    }
    return 0;
}

static int item_loops_on_negative(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    int v = *(const int *)in;
    while (v < 0) {
    }
    *(int *)out = v * 10;
    return 0;
}

TEST(task_timeout_kills_and_replaces)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.task_timeout = 0.3;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    double t0 = mpt_now();
    mp_future *hang = mp_pool_apply_async(p, spin_forever, NULL, 0);
    long x = 9;
    mp_future *ok = mp_pool_apply_async(p, square_task, &x, sizeof x);
    CHECK_ERR(mp_future_get(hang, NULL, 0, NULL, 30.0), MP_ETIMELIMIT);
    double dt = mpt_now() - t0;
    CHECK(mp_future_done(hang)); /* the task's limit, not the wait's */
    CHECK(dt >= 0.3);
    CHECK(dt < 10.0);
    CHECK_EQ(mp_future_exitcode(hang), -SIGKILL);
    CHECK_CONTAINS(mp_future_report(hang), "time limit");
    long v = 0;
    CHECK_OK(mp_future_get(ok, &v, sizeof v, NULL, 30.0));
    CHECK_EQ(v, 81);
    mp_future_free(hang);
    mp_future_free(ok);

    /* Map items are timed one by one: the looping item fails, the others
     * of its chunk, before and after it, succeed. */
    int in[6] = {1, 2, 3, -1, 5, 6};
    int out[6], errs[6];
    mp_map_spec s = map_spec(in, 6, sizeof in[0], out, sizeof out[0]);
    s.fn = item_loops_on_negative;
    s.errors = errs;
    s.chunksize = 6;
    t0 = mpt_now();
    CHECK_ERR(mp_pool_map_ex(p, &s), MP_ETIMELIMIT);
    CHECK(mpt_now() - t0 >= 0.3);
    for (int i = 0; i < 6; i++) {
        if (i == 3) {
            CHECK_ERR(errs[i], MP_ETIMELIMIT);
        } else {
            CHECK_EQ(errs[i], 0);
            CHECK_EQ(out[i], in[i] * 10);
        }
    }
    CHECK_EQ(wait_workers(p, 2, 10.0), 2);
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_EQ(st.tasks_timed_out, 2);
    mp_pool_free(p);
}

/* future.h, mp_future_get: "MP_ETIMEDOUT when the wait ran out while f is
 * not finished (a task that ran past the pool's time limit is
 * MP_ETIMELIMIT, so the two never mix)".  Fails when a task's time limit
 * and a caller's wait that ran out answer with the same code. */
TEST(get_tells_a_wait_that_ran_out_from_a_task_past_its_limit)
{
    mp_log_set_level(MP_LOG_OFF);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    o.task_timeout = 0.5;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    mp_future *f = mp_pool_apply_async(p, spin_forever, NULL, 0);
    /* The wait runs out first: the task still runs. */
    CHECK_ERR(mp_future_get(f, NULL, 0, NULL, 0.05), MP_ETIMEDOUT);
    CHECK(!mp_future_done(f));
    /* Then the task's limit: a different answer, and the future is done. */
    int rc = mp_future_get(f, NULL, 0, NULL, 30.0);
    CHECK_NE(rc, MP_ETIMEDOUT);
    CHECK_ERR(rc, MP_ETIMELIMIT);
    CHECK(mp_future_done(f));
    CHECK_ERR(mp_future_status(f), MP_ETIMELIMIT);
    CHECK_STREQ(mp_err_name(MP_ETIMELIMIT), "MP_ETIMELIMIT");
    mp_future_free(f);
    /* mp_pool_apply answers the same way. */
    CHECK_ERR(mp_pool_apply(p, spin_forever, NULL, 0, NULL, 0, NULL, 30.0), MP_ETIMELIMIT);
    mp_pool_free(p);
}

/* ---- crashes -------------------------------------------------------------------- */

/* An address the compiler cannot see through, so it emits the store
 * (and UndefinedBehaviorSanitizer, told to look away, lets it fault). */
static volatile uintptr_t bad_address = 16;

__attribute__((noinline, no_sanitize("undefined"))) static int crash_by(int how)
{
    switch (how) {
    case 1:
        *(volatile int *)bad_address = 1;
        break;
    case 2:
        abort();
    case 3:
        _exit(7);
    case 4:
        raise(SIGKILL);
        break;
    case 5:
        raise(SIGBUS);
        break;
    case 6:
        /* Not 1 / 0: some hypervisors do not trap integer division. */
        raise(SIGFPE);
        break;
    }
    return 0;
}

static int crash_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    int how = *(const int *)arg;
    int r = crash_by(how);
    return mp_buf_append(out, &r, sizeof r);
}

TEST(every_kind_of_crash_fails_one_task)
{
    mp_log_set_level(MP_LOG_OFF);
    mp_pool *p = pool_with(2);
    struct {
        int how, exitcode;
        const char *text;
    } kinds[] = {{1, -SIGSEGV, "SIGSEGV"}, {2, -SIGABRT, "SIGABRT"}, {3, 7, "status 7"},
                 {4, -SIGKILL, "SIGKILL"}, {5, -SIGBUS, "SIGBUS"},   {6, -SIGFPE, "SIGFPE"}};
    enum { K = MP__ARRAY_SIZE(kinds) };
    mp_future *bad[K], *good[3 * K];
    long xs[3 * K];
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < 3; j++) {
            xs[3 * k + j] = 3 * k + j;
            good[3 * k + j] = mp_pool_apply_async(p, square_task, &xs[3 * k + j], sizeof(long));
        }
        bad[k] = mp_pool_apply_async(p, crash_task, &kinds[k].how, sizeof(int));
    }
    for (int k = 0; k < K; k++) {
        MPT_CONTEXT("crash by %s", kinds[k].text);
        CHECK_ERR(mp_future_get(bad[k], NULL, 0, NULL, 30.0), MP_EWORKER);
        CHECK_EQ(mp_future_exitcode(bad[k]), kinds[k].exitcode);
        CHECK_CONTAINS(mp_future_report(bad[k]), kinds[k].text);
        mp_future_free(bad[k]);
    }
    MPT_CONTEXT_CLEAR();
    for (int i = 0; i < 3 * K; i++) {
        long v;
        CHECK_OK(mp_future_get(good[i], &v, sizeof v, NULL, 30.0));
        CHECK_EQ(v, xs[i] * xs[i]);
        mp_future_free(good[i]);
    }
    /* The segfault's report names the function that crashed. */
    int how = 1;
    mp_future *f = mp_pool_apply_async(p, crash_task, &how, sizeof how);
    CHECK_ERR(mp_future_wait(f, 30.0), 0);
    CHECK_CONTAINS(mp_future_report(f), "crash_by");
    CHECK_CONTAINS(mp_future_report(f), "address 0x10");
    mp_future_free(f);
    CHECK_EQ(wait_workers(p, 2, 10.0), 2);
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_EQ(st.workers_died, K + 1);
    CHECK_EQ(st.tasks_failed, K + 1);
    mp_pool_free(p);
}

/* Counts each item's runs in shared memory; crashes on the items that
 * ctx marks. */
typedef struct crash_ctx {
    _Atomic int *runs;
    int crash_every; /* 0: never */
} crash_ctx;

static int counted_item(const void *in, void *out, const void *ctx)
{
    const crash_ctx *c = ctx;
    int v = *(const int *)in;
    atomic_fetch_add(&c->runs[v], 1);
    if (c->crash_every && v % c->crash_every == c->crash_every - 1)
        crash_by(1);
    *(long *)out = (long)v * 3;
    return 0;
}

/* Whether a child may read its parent's memory here, found out as the
 * pool's workers find it out: a forked child reads a value of ours. */
static bool children_read_parent_memory(void)
{
    static volatile uint64_t probe = 0x5eed5eed5eed5eedu;
    pid_t parent = getpid();
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        uint64_t v = 0;
        int rc = mp__vm_read(parent, (uint64_t)(uintptr_t)&probe, &v, sizeof v);
        _exit(rc == 0 && v == probe ? 0 : 1);
    }
    int st = 0;
    CHECK_EQ(waitpid(c, &st, 0), c);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st) == 0;
}

/* A pool whose workers have started, so that whether they may use the
 * caller's memory in place is settled before the first map. */
static mp_pool *pool_settled(int workers, bool copy_only)
{
    if (copy_only)
        CHECK_EQ(setenv("MPROC_POOL_VM", "0", 1), 0);
    mp_pool *p = pool_with(workers);
    unsetenv("MPROC_POOL_VM");
    long v = 3, r = 0;
    CHECK_OK(mp_pool_apply(p, square_task, &v, sizeof v, &r, sizeof r, NULL, 60.0));
    CHECK_EQ(r, 9);
    return p;
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

TEST(map_uses_the_callers_arrays_in_place_where_allowed)
{
    enum { N = 300000 };
    bool allowed = children_read_parent_memory();
    printf("  children may read their parent's memory: %s\n", allowed ? "yes" : "no");
    uint32_t *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    int *iin = malloc(N * sizeof *iin);
    long *iout = malloc(N * sizeof *iout);
    for (uint32_t i = 0; i < N; i++) {
        in[i] = i;
        iin[i] = (int)i;
    }
    for (int copy_only = 0; copy_only < 2; copy_only++) {
        MPT_CONTEXT("%s", copy_only ? "copies forced" : "in place where allowed");
        mp_pool *p = pool_settled(2, copy_only);
        /* Chunks of a few KiB and more; small ones are always copied. */
        size_t chunks[] = {0, 5000, 99999};
        for (size_t k = 0; k < MP__ARRAY_SIZE(chunks); k++) {
            MPT_CONTEXT("%s, chunksize %zu", copy_only ? "copies forced" : "in place where allowed",
                        chunks[k]);
            memset(out, 0, N * sizeof *out);
            mp_map_spec s = map_spec(in, N, sizeof *in, out, sizeof *out);
            s.range_fn = square32_range;
            s.chunksize = chunks[k];
            CHECK_OK(mp_pool_map_ex(p, &s));
            for (uint32_t i = 0; i < N; i++)
                CHECK_EQ(out[i], i * i);
            memset(iout, 0, N * sizeof *iout);
            CHECK_OK(
                mp_pool_map(p, square_item, iin, N, sizeof *iin, iout, sizeof *iout, chunks[k]));
            for (long i = 0; i < N; i++)
                CHECK_EQ(iout[i], i * i);
        }
        CHECK_OK(mp_pool_map(p, square_item, iin, 5000, sizeof *iin, iout, sizeof *iout, 1));
        for (long i = 0; i < 5000; i++)
            CHECK_EQ(iout[i], i * i);
        /* pool.h, mp_pool_map_async: "Inputs are copied before the call
         * returns": the caller reuses its inputs at once, and the map
         * computes what they were.  Fails when an asynchronous map reads
         * the caller's array after the call. */
        memset(iout, 0, N * sizeof *iout);
        mp_future *f =
            mp_pool_map_async(p, square_item, iin, N, sizeof *iin, iout, sizeof *iout, 0);
        for (int i = 0; i < N; i++)
            iin[i] = -7;
        CHECK_OK(mp_future_get(f, NULL, 0, NULL, 60.0));
        mp_future_free(f);
        for (long i = 0; i < N; i++) {
            CHECK_EQ(iout[i], i * i);
            iin[i] = (int)i;
        }
        mp_pool_stats st;
        CHECK_OK(mp_pool_stats_get(p, &st));
        CHECK_EQ(st.maps_direct, allowed && !copy_only ? 2 * MP__ARRAY_SIZE(chunks) : 0);
        mp_pool_free(p);
    }
    MPT_CONTEXT_CLEAR();
    free(in);
    free(out);
    free(iin);
    free(iout);
}

TEST(map_in_place_refused_midway_fails_the_rest_then_copies)
{
    enum { N = 300000 };
    if (!children_read_parent_memory()) {
        printf("  skipped: children may not read their parent's memory here\n");
        return;
    }
    mp_log_set_level(MP_LOG_OFF);
    /* Each worker's third copy is refused, as a change of credentials or a
     * security module would refuse it. */
    mp__pool_vm_fault = (struct mp__pool_vm_fault){MP_EPERM, 2};
    mp_pool *p = pool_settled(2, false);
    uint32_t *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    int *errs = malloc(N * sizeof *errs);
    for (uint32_t i = 0; i < N; i++)
        in[i] = i;
    memset(out, 0, N * sizeof *out);
    mp_map_spec s = map_spec(in, N, sizeof *in, out, sizeof *out);
    s.range_fn = square32_range;
    s.errors = errs;
    s.chunksize = N / 2;
    CHECK_ERR(mp_pool_map_ex(p, &s), MP_EPERM);
    /* Each unit: done up to where its worker was refused, failed with the
     * reason from there on. */
    size_t failed = 0;
    for (uint32_t u = 0; u < 2; u++) {
        uint32_t i = u * (N / 2), end = i + N / 2;
        for (; i < end && errs[i] == 0; i++)
            CHECK_EQ(out[i], i * i);
        for (; i < end; i++, failed++)
            CHECK_ERR(errs[i], MP_EPERM);
    }
    CHECK(failed > 0);
    /* Later maps copy through shared memory, and succeed. */
    memset(out, 0, N * sizeof *out);
    CHECK_OK(mp_pool_map_ex(p, &s));
    for (uint32_t i = 0; i < N; i++)
        CHECK_EQ(out[i], i * i);
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_EQ(st.maps_direct, 1);
    mp_pool_free(p);
    free(in);
    free(out);
    free(errs);
}

TEST(map_chunk_with_a_crash_splits_at_the_item)
{
    mp_log_set_level(MP_LOG_OFF);
    enum { N = 1000 };
    _Atomic int *runs = shared_ints(N);
    int in[N], errs[N];
    long out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    crash_ctx c = {runs, 100};
    /* Waited for (the caller's arrays used in place where allowed) and
     * asynchronous (copied), then waited for with copies forced. */
    for (int mode = 0; mode < 3; mode++) {
        MPT_CONTEXT("mode %d (%s)", mode,
                    mode == 0   ? "waited for"
                    : mode == 1 ? "async"
                                : "waited for, copies forced");
        mp_pool *p = pool_settled(2, mode == 2);
        for (int i = 0; i < N; i++)
            atomic_store(&runs[i], 0);
        memset(out, 0, sizeof out);
        mp_map_spec s = map_spec(in, N, sizeof in[0], out, sizeof out[0]);
        s.fn = counted_item;
        s.errors = errs;
        s.ctx = &c;
        s.ctx_size = sizeof c;
        s.chunksize = 500;
        if (mode == 1) {
            mp_future *f = mp_pool_map_async_ex(p, &s);
            CHECK_ERR(mp_future_get(f, NULL, 0, NULL, 60.0), MP_EWORKER);
            CHECK_EQ(mp_future_failed_index(f), 99);
            CHECK_EQ(mp_future_exitcode(f), -SIGSEGV);
            CHECK_CONTAINS(mp_future_report(f), "SIGSEGV");
            mp_future_free(f);
        } else {
            CHECK_ERR(mp_pool_map_ex(p, &s), MP_EWORKER);
        }
        for (int i = 0; i < N; i++) {
            /* Every item ran exactly once: before the crash, the crashing
             * one, and after it on a fresh worker. */
            CHECK_EQ(atomic_load(&runs[i]), 1);
            if (i % 100 == 99) {
                CHECK_ERR(errs[i], MP_EWORKER);
            } else {
                CHECK_EQ(errs[i], 0);
                CHECK_EQ(out[i], 3L * i);
            }
        }
        mp_pool_free(p);
    }
    MPT_CONTEXT_CLEAR();
    mp__unmap((void *)runs, N * sizeof(int));
}

/* Squares a range; crashes once, at item *ctx, the first time it is run. */
static int crashing_range(const void *in, void *out, size_t n, const void *ctx)
{
    const uint32_t *a = in;
    _Atomic int *once = *(_Atomic int *const *)ctx;
    uint32_t at = (uint32_t)atomic_load(&once[1]);
    for (size_t i = 0; i < n; i++) {
        if (a[i] == at && atomic_fetch_add(&once[0], 1) == 0)
            crash_by(1);
        ((uint32_t *)out)[i] = a[i] * a[i];
    }
    return 0;
}

TEST(map_range_crash_fails_the_range_that_was_running)
{
    mp_log_set_level(MP_LOG_OFF);
    enum { N = 100000, CRASH = 70000 };
    _Atomic int *once = shared_ints(2);
    uint32_t *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    int *errs = malloc(N * sizeof *errs);
    for (uint32_t i = 0; i < N; i++)
        in[i] = i;
    for (int copy_only = 0; copy_only < 2; copy_only++) {
        MPT_CONTEXT("%s", copy_only ? "copies forced" : "in place where allowed");
        mp_pool *p = pool_settled(2, copy_only);
        atomic_store(&once[0], 0);
        atomic_store(&once[1], CRASH);
        memset(out, 0, N * sizeof *out);
        _Atomic int *ctx = once;
        mp_map_spec s = map_spec(in, N, sizeof *in, out, sizeof *out);
        s.range_fn = crashing_range;
        s.errors = errs;
        s.ctx = &ctx;
        s.ctx_size = sizeof ctx;
        s.chunksize = N / 2;
        CHECK_ERR(mp_pool_map_ex(p, &s), MP_EWORKER);
        /* The first unit whole; the second up to the start of the range
         * that crashed (the unit's start, or a slice of it), then failed
         * to its end. */
        uint32_t b = N / 2;
        while (b < N && errs[b] == 0)
            b++;
        CHECK(b <= CRASH);
        for (uint32_t i = 0; i < N; i++) {
            if (i < b) {
                CHECK_EQ(errs[i], 0);
                CHECK_EQ(out[i], i * i);
            } else {
                CHECK_ERR(errs[i], MP_EWORKER);
            }
        }
        printf("  %s: items %u..%d failed\n", copy_only ? "copied" : "in place", b, N - 1);
        mp_pool_free(p);
    }
    MPT_CONTEXT_CLEAR();
    free(in);
    free(out);
    free(errs);
    mp__unmap((void *)once, 2 * sizeof(int));
}

/* ---- failures with a message ------------------------------------------------------ */

static int fail_with_reason_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    int how = *(const int *)arg;
    if (how == 0)
        return mp_task_fail(out, "no such file: %s", "x.txt");
    if (how == 1) {
        (void)mp_buf_append(out, "half done", 9);
        return 3;
    }
    if (how == 2) {
        char big[100000];
        memset(big, 'm', sizeof big);
        (void)mp_buf_append(out, big, sizeof big);
        return 4;
    }
    return 5; /* no message */
}

static int odd_items_fail(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    int v = *(const int *)in;
    if (v % 2)
        return v == 3 ? 7 : mp_item_fail("item %d is odd", v);
    *(int *)out = v;
    return 0;
}

static int range_fails_with_reason(const void *in, void *out, size_t n, const void *ctx)
{
    (void)in;
    (void)out;
    (void)ctx;
    return mp_item_fail("a range of %zu failed", n);
}

/* pool.h, mp_task_fail and mp_task_fn: a failing task's message - from
 * mp_task_fail(), or what it appended before returning nonzero, at most
 * 64 KiB - is mp_future_report(), and a log line at MP_LOG_INFO carries
 * it; mp_item_fail() does the same for a map item, the map future's
 * report being its first failed item's.  Fails when the text is dropped,
 * cut wrong, or attached to an item that left none. */
TEST(a_failing_task_says_why)
{
    int logp[2];
    CHECK_EQ(pipe2(logp, O_CLOEXEC | O_NONBLOCK), 0);
    mp_log_set_level(MP_LOG_INFO);
    CHECK_OK(mp_log_set_fd(logp[1]));
    mp_pool *p = pool_with(2);
    const char *want[] = {"no such file: x.txt", "half done", NULL, NULL};
    int codes[] = {MP_ETASK, 3, 4, 5};
    for (int how = 0; how < 4; how++) {
        MPT_CONTEXT("task %d", how);
        mp_future *f = mp_pool_apply_async(p, fail_with_reason_task, &how, sizeof how);
        CHECK_ERR(mp_future_get(f, NULL, 0, NULL, 30.0), MP_ETASK);
        CHECK_EQ(mp_future_task_error(f), codes[how]);
        if (how == 2) {
            CHECK_NOT_NULL(mp_future_report(f));
            CHECK_EQ_U(strlen(mp_future_report(f)), 64u << 10);
        } else if (want[how]) {
            CHECK_STREQ(mp_future_report(f), want[how]);
        } else {
            CHECK_NULL(mp_future_report(f));
        }
        mp_future_free(f);
    }
    MPT_CONTEXT_CLEAR();
    /* Map items: each failed item's message, the first one the map's. */
    int in[8] = {0, 1, 2, 3, 4, 5, 6, 7}, out[8], errs[8];
    mp_map_spec s = map_spec(in, 8, sizeof in[0], out, sizeof out[0]);
    s.fn = odd_items_fail;
    s.errors = errs;
    s.chunksize = 3;
    mp_future *m = mp_pool_map_async_ex(p, &s);
    CHECK_ERR(mp_future_get(m, NULL, 0, NULL, 30.0), MP_ETASK);
    CHECK_EQ(mp_future_failed_index(m), 1);
    CHECK_STREQ(mp_future_report(m), "item 1 is odd");
    CHECK_ERR(errs[3], MP_ETASK);
    CHECK_EQ(errs[4], 0);
    mp_future_free(m);
    /* Item 3 left no message: a map whose first failure is it has none. */
    s.in = in + 3;
    s.n = 1;
    m = mp_pool_map_async_ex(p, &s);
    CHECK_ERR(mp_future_get(m, NULL, 0, NULL, 30.0), MP_ETASK);
    CHECK_NULL(mp_future_report(m));
    mp_future_free(m);
    mp_map_spec r = map_spec(in, 8, sizeof in[0], out, sizeof out[0]);
    r.range_fn = range_fails_with_reason;
    r.chunksize = 8;
    m = mp_pool_map_async_ex(p, &r);
    CHECK_ERR(mp_future_get(m, NULL, 0, NULL, 30.0), MP_ETASK);
    CHECK_STREQ(mp_future_report(m), "a range of 8 failed");
    mp_future_free(m);
    CHECK_ERR(mp_item_fail("outside a worker"), MP_ETASK);
    mp_pool_free(p);
    char logbuf[8192];
    ssize_t n = read(logp[0], logbuf, sizeof logbuf - 1);
    CHECK(n > 0);
    logbuf[n > 0 ? n : 0] = '\0';
    CHECK_CONTAINS(logbuf, "no such file: x.txt");
    CHECK_CONTAINS(logbuf, "item 5 is odd");
    close(logp[0]);
    close(logp[1]);
}

/* ---- stop points: a worker killed at each instant of the protocol ------------- */

/* Shared: [0] armed, [1] hits of the point, [2..] runs of each item. */
static _Atomic int *stop_state;
static mp__pool_point stop_at;

/* The pool's fault hook: the first worker to reach stop_at once armed
 * dies there. */
static void die_once_at(mp__pool_point where)
{
    if (where == stop_at && atomic_load(&stop_state[0]) && atomic_fetch_add(&stop_state[1], 1) == 0)
        raise(SIGKILL);
}

static int stop_counted_item(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    int v = *(const int *)in;
    atomic_fetch_add(&stop_state[2 + v], 1);
    *(long *)out = 3L * v;
    return 0;
}

static int stop_counted_range(const void *in, void *out, size_t n, const void *ctx)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        int v = ((const int *)in)[i];
        atomic_fetch_add(&stop_state[2 + v], 1);
        ((long *)out)[i] = 3L * v;
    }
    return 0;
}

/* Returns *arg bytes, a pattern, and counts its runs in stop_state[2]. */
static int stop_counted_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    atomic_fetch_add(&stop_state[2], 1);
    size_t n = *(const size_t *)arg;
    unsigned char *b = mp_buf_alloc(out, n);
    if (!b && n)
        return MP_ENOMEM;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 7 + 1);
    return 0;
}

enum { STOP_N = 4000 };

/* A pool of 2 settled workers whose first worker to reach `where` from
 * now on is SIGKILLed there. */
static mp_pool *pool_dying_at(mp__pool_point where, bool copy_only)
{
    if (!stop_state)
        stop_state = shared_ints(2 + STOP_N);
    stop_at = where;
    mp__pool_fault = die_once_at;
    mp_pool *p = pool_settled(2, copy_only);
    for (int i = 0; i < 2 + STOP_N; i++)
        atomic_store(&stop_state[i], 0);
    atomic_store(&stop_state[0], 1);
    return p;
}

/* Maps over STOP_N items with one worker killed at `where` in each mode
 * (waited for, the caller's arrays in place where allowed; asynchronous,
 * copied; each with an item and a range function) and requires what
 * pool.h promises there: every item run exactly once, none failed. */
static void check_map_stop_fails_nothing(mp__pool_point where)
{
    mp_log_set_level(MP_LOG_OFF);
    int *in = malloc(STOP_N * sizeof *in), *errs = malloc(STOP_N * sizeof *errs);
    long *out = malloc(STOP_N * sizeof *out);
    for (int i = 0; i < STOP_N; i++)
        in[i] = i;
    for (int mode = 0; mode < 4; mode++) {
        MPT_CONTEXT("mode %d (%s, %s function)", mode, mode % 2 ? "async" : "waited for",
                    mode < 2 ? "item" : "range");
        mp_pool *p = pool_dying_at(where, false);
        memset(out, 0, STOP_N * sizeof *out);
        mp_map_spec s = map_spec(in, STOP_N, sizeof *in, out, sizeof *out);
        if (mode < 2)
            s.fn = stop_counted_item;
        else
            s.range_fn = stop_counted_range;
        s.errors = errs;
        s.chunksize = 1000;
        int rc;
        if (mode % 2) {
            mp_future *f = mp_pool_map_async_ex(p, &s);
            rc = mp_future_get(f, NULL, 0, NULL, 60.0);
            mp_future_free(f);
        } else {
            rc = mp_pool_map_ex(p, &s);
        }
        CHECK_OK(rc);
        CHECK_EQ(atomic_load(&stop_state[1]) >= 1, 1); /* the point was reached */
        for (int i = 0; i < STOP_N; i++) {
            CHECK_EQ(atomic_load(&stop_state[2 + i]), 1);
            CHECK_EQ(errs[i], 0);
            CHECK_EQ(out[i], 3L * i);
        }
        mp_pool_stats st;
        CHECK_OK(mp_pool_stats_get(p, &st));
        CHECK_EQ_U(st.workers_died, 1);
        CHECK_EQ_U(st.tasks_failed, 0);
        mp_pool_free(p);
    }
    MPT_CONTEXT_CLEAR();
    mp__pool_fault = NULL;
    free(in);
    free(out);
    free(errs);
}

/* An apply task, with a small (inline) and a large (result file) result,
 * with its worker killed at `where`: it runs exactly once and succeeds. */
static void check_apply_stop_fails_nothing(mp__pool_point where)
{
    mp_log_set_level(MP_LOG_OFF);
    size_t sizes[] = {8, 100000};
    for (size_t k = 0; k < MP__ARRAY_SIZE(sizes); k++) {
        MPT_CONTEXT("result of %zu bytes", sizes[k]);
        mp_pool *p = pool_dying_at(where, false);
        mp_future *f = mp_pool_apply_async(p, stop_counted_task, &sizes[k], sizeof sizes[k]);
        CHECK_OK(mp_future_wait(f, 60.0));
        CHECK_OK(mp_future_status(f));
        size_t len = 0;
        const unsigned char *b = mp_future_result(f, &len);
        CHECK_EQ_U(len, sizes[k]);
        CHECK_NOT_NULL(b);
        for (size_t i = 0; i < len; i += 997)
            CHECK_EQ(b[i], (unsigned char)(i * 7 + 1));
        CHECK_EQ(atomic_load(&stop_state[1]) >= 1, 1);
        CHECK_EQ(atomic_load(&stop_state[2]), 1);
        mp_pool_stats st;
        CHECK_OK(mp_pool_stats_get(p, &st));
        CHECK_EQ_U(st.workers_died, 1);
        mp_future_free(f);
        mp_pool_free(p);
    }
    MPT_CONTEXT_CLEAR();
    mp__pool_fault = NULL;
}

/* pool.h: "a worker that dies after claiming a chunk but before starting
 * its first item fails nothing", here between the fetch-add on the claim
 * cursor and the CAS that claims the chunk. */
TEST(stop_after_chunk_fetch_fails_nothing)
{
    check_map_stop_fails_nothing(MP__PP_CHUNK_FETCHED);
}

/* The same, after the CAS; and pool.h: "an apply task whose worker dies
 * after taking it but before starting it runs again". */
TEST(stop_after_claim_fails_nothing)
{
    check_map_stop_fails_nothing(MP__PP_CLAIMED);
    check_apply_stop_fails_nothing(MP__PP_CLAIMED);
}

/* pool.h: "one that dies after the chunk's last item but before reporting
 * the chunk done fails nothing either, the chunk is collected". */
TEST(stop_after_last_item_fails_nothing)
{
    check_map_stop_fails_nothing(MP__PP_LAST_ITEM);
}

/* pool.h: "one whose worker dies after writing its result is collected". */
TEST(stop_after_result_written_fails_nothing)
{
    check_apply_stop_fails_nothing(MP__PP_RESULT_WRITTEN);
}

/* records.h, Completion: a unit DONE whose record was never written is
 * collected through the intent, once. */
TEST(stop_after_done_fails_nothing)
{
    check_map_stop_fails_nothing(MP__PP_DONE);
    check_apply_stop_fails_nothing(MP__PP_DONE);
}

static int crash_once_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    _Atomic int *tries = *(_Atomic int *const *)arg;
    if (atomic_fetch_add(tries, 1) == 0)
        crash_by(2);
    int ok = 42;
    return mp_buf_append(out, &ok, sizeof ok);
}

TEST(retries_run_a_crashed_task_again)
{
    mp_log_set_level(MP_LOG_OFF);
    _Atomic int *tries = shared_ints(2);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.retries = 1;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    int v = 0;
    CHECK_OK(mp_pool_apply(p, crash_once_task, &tries, sizeof tries, &v, sizeof v, NULL, 30.0));
    CHECK_EQ(v, 42);
    CHECK_EQ(atomic_load(tries), 2);
    /* A task that always crashes fails after 1 + retries runs. */
    atomic_store(&tries[1], 0);
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_EQ(st.tasks_retried, 1);
    int how = 1;
    CHECK_ERR(mp_pool_apply(p, crash_task, &how, sizeof how, NULL, 0, NULL, 30.0), MP_EWORKER);
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_EQ(st.tasks_retried, 2);
    mp_pool_free(p);
    mp__unmap((void *)tries, 2 * sizeof(int));
}

typedef struct killer_args {
    mp_pool *pool;
    _Atomic int stop;
    _Atomic int kills;
    unsigned seed;
} killer_args;

static void *killer(void *arg)
{
    killer_args *k = arg;
    while (!atomic_load(&k->stop)) {
        /* Random moments: anywhere from inside a task to the middle of the
         * pool's own bookkeeping.  This sleep is the stimulus, not a
         * synchronisation. */
        mp__sleep_ns((int64_t)(rand_r(&k->seed) % 3000) * 1000);
        pid_t pids[8];
        int n = mp_pool_worker_pids(k->pool, pids, 8);
        if (n > 0 && kill(pids[rand_r(&k->seed) % (unsigned)n], SIGKILL) == 0)
            atomic_fetch_add(&k->kills, 1);
    }
    return NULL;
}

static int busy_counted_item(const void *in, void *out, const void *ctx)
{
    const crash_ctx *c = ctx;
    int v = *(const int *)in;
    atomic_fetch_add(&c->runs[v], 1);
    volatile unsigned x = 0;
    for (int i = 0; i < 8000; i++)
        x += (unsigned)i;
    *(long *)out = (long)v * 7 + 1 + (long)(x & 0);
    return 0;
}

TEST_TIMEOUT(random_sigkills_lose_and_double_nothing, 120)
{
    mp_log_set_level(MP_LOG_OFF);
    enum { N = 6000, ROUNDS = 30 };
    _Atomic int *runs = shared_ints(N);
    mp_pool *p = pool_with(3);
    int *in = malloc(N * sizeof *in), *errs = malloc(N * sizeof *errs);
    long *out = malloc(N * sizeof *out);
    for (int i = 0; i < N; i++)
        in[i] = i;
    crash_ctx c = {runs, 0};
    size_t chunks[] = {1, 7, 0, 250, 2000};
    int total_failed = 0, total_kills = 0;
    for (int r = 0; r < ROUNDS; r++) {
        MPT_CONTEXT("round %d, chunksize %zu, %s", r, chunks[r % MP__ARRAY_SIZE(chunks)],
                    r % 2 ? "waited for" : "async");
        for (int i = 0; i < N; i++)
            atomic_store(&runs[i], 0);
        memset(out, 0, N * sizeof *out);
        mp_map_spec s = map_spec(in, N, sizeof *in, out, sizeof *out);
        s.fn = busy_counted_item;
        s.errors = errs;
        s.ctx = &c;
        s.ctx_size = sizeof c;
        s.chunksize = chunks[r % MP__ARRAY_SIZE(chunks)];
        killer_args k = {.pool = p, .seed = (unsigned)(r * 7919 + 1)};
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, killer, &k), 0);
        /* Odd rounds wait in the map: the caller's arrays are then used
         * in place where allowed.  Even rounds copy them. */
        mp_future *f = NULL;
        int rc, status;
        if (r % 2) {
            status = mp_pool_map_ex(p, &s);
            rc = 0;
        } else {
            f = mp_pool_map_async_ex(p, &s);
            rc = mp_future_wait(f, 90.0);
            status = mp_future_status(f);
        }
        atomic_store(&k.stop, 1);
        pthread_join(t, NULL);
        CHECK_OK(rc); /* no hang */
        int failed = 0;
        for (int i = 0; i < N; i++) {
            int n = atomic_load(&runs[i]);
            if (errs[i] == 0) {
                /* Exact, and computed exactly once. */
                CHECK_EQ(out[i], (long)i * 7 + 1);
                CHECK_EQ(n, 1);
            } else {
                CHECK_ERR(errs[i], MP_EWORKER);
                CHECK_LE(n, 1);
                failed++;
            }
        }
        CHECK_EQ(status, failed ? MP_EWORKER : 0);
        total_failed += failed;
        total_kills += atomic_load(&k.kills);
        mp_future_free(f);
    }
    MPT_CONTEXT_CLEAR();
    printf("  %d kills, %d items failed over %d rounds\n", total_kills, total_failed, ROUNDS);
    /* Kills land between items too; each failed item is one kill.  The
     * kills happened, hit items, and the pool saw them. */
    CHECK_LE(total_failed, total_kills);
    CHECK_GE(total_kills, ROUNDS);
    CHECK_GE(total_failed, 1);
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_GE_U(st.workers_died, ROUNDS);
    CHECK_LE_U(st.workers_died, (uint64_t)total_kills);
    /* The pool is still whole and correct afterwards. */
    CHECK_EQ(wait_workers(p, 3, 10.0), 3);
    CHECK_OK(mp_pool_map(p, square_item, in, N, sizeof *in, out, sizeof *out, 0));
    CHECK_EQ(out[N - 1], (long)(N - 1) * (N - 1));
    mp_pool_free(p);
    free(in);
    free(out);
    free(errs);
    mp__unmap((void *)runs, N * sizeof(int));
}

TEST_TIMEOUT(random_sigkills_during_apply_async, 120)
{
    mp_log_set_level(MP_LOG_OFF);
    mp_pool *p = pool_with(2);
    enum { N = 20000 };
    mp_future **fs = malloc(N * sizeof *fs);
    killer_args k = {.pool = p, .seed = 12345};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, killer, &k), 0);
    size_t sz[] = {8, 200, 9000};
    for (long i = 0; i < N; i++) {
        size_t n = sz[i % 3];
        fs[i] = mp_pool_apply_async(p, pattern_task, &n, sizeof n);
    }
    int failed = 0;
    for (long i = 0; i < N; i++) {
        CHECK_OK(mp_future_wait(fs[i], 60.0));
        int st = mp_future_status(fs[i]);
        if (st == 0) {
            size_t len;
            const unsigned char *b = mp_future_result(fs[i], &len);
            CHECK_EQ(len, sz[i % 3]);
            CHECK_EQ(b[len - 1], (unsigned char)((len - 1) * 31 + 7));
        } else {
            CHECK_ERR(st, MP_EWORKER);
            failed++;
        }
        mp_future_free(fs[i]);
    }
    atomic_store(&k.stop, 1);
    pthread_join(t, NULL);
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    printf("  %d kills, %llu deaths seen, %d tasks failed\n", atomic_load(&k.kills),
           (unsigned long long)st.workers_died, failed);
    CHECK_LE(failed, atomic_load(&k.kills));
    /* The kills happened, and the pool saw them. */
    CHECK_GE(atomic_load(&k.kills), 10);
    CHECK_GE_U(st.workers_died, 10);
    CHECK_LE_U(st.workers_died, (uint64_t)atomic_load(&k.kills));
    CHECK_GE(failed, 1);
    free(fs);
    mp_pool_free(p);
}

static int close_every_fd_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    for (int fd = 3; fd < 4096; fd++)
        close(fd);
    int v = 99;
    return mp_buf_append(out, &v, sizeof v);
}

/* pool.h, "Fault isolation": nothing a task does hangs the parent - here
 * a task that closes every descriptor, those its worker shares with the
 * pool included, with no task_timeout to fall back on.  Fails when the
 * worker, unable to wake the supervisor, leaves it asleep with work
 * outstanding (every later future waits for ever). */
TEST(a_task_closing_every_descriptor_wedges_nothing)
{
    mp_log_set_level(MP_LOG_OFF);
    mp_start_method methods[] = {MP_START_FORK, MP_START_FORKSERVER};
    for (size_t m = 0; m < MP__ARRAY_SIZE(methods); m++) {
        mp_pool_opts o = MP_POOL_OPTS_INIT;
        o.processes = 1;
        o.start_method = methods[m];
        mp_pool *p = NULL;
        CHECK_OK(mp_pool_new(&o, &p));
        for (int round = 0; round < 4; round++) {
            MPT_CONTEXT("start method %d, round %d", (int)methods[m], round);
            /* Queued behind it, so that the worker takes it at once: a
             * result that must grow the worker's result file.  The worker
             * whose descriptors are gone leaves before taking it, and it
             * succeeds on the worker that replaces it. */
            mp_future *c1 = mp_pool_apply_async(p, close_every_fd_task, NULL, 0);
            size_t big1 = 100000;
            mp_future *b1 = mp_pool_apply_async(p, pattern_task, &big1, sizeof big1);
            int v = 0;
            CHECK_OK(mp_future_get(c1, &v, sizeof v, NULL, 30.0));
            CHECK_EQ(v, 99);
            mp_future_free(c1);
            CHECK_OK(mp_future_wait(b1, 30.0));
            CHECK_OK(mp_future_status(b1));
            size_t len1 = 0;
            CHECK(mp_future_result(b1, &len1) != NULL);
            CHECK_EQ_U(len1, big1);
            mp_future_free(b1);
            /* Whatever the worker did next, later work completes. */
            for (long i = 0; i < 20; i++) {
                long r = 0;
                CHECK_OK(mp_pool_apply(p, square_task, &i, sizeof i, &r, sizeof r, NULL, 30.0));
                CHECK_EQ(r, i * i);
            }
            int in[1000];
            long out[1000];
            for (int i = 0; i < 1000; i++)
                in[i] = i;
            mp_future *mf =
                mp_pool_map_async(p, square_item, in, 1000, sizeof in[0], out, sizeof out[0], 10);
            CHECK_OK(mp_future_get(mf, NULL, 0, NULL, 30.0));
            mp_future_free(mf);
            CHECK_EQ(out[999], 999L * 999);
            size_t big = 100000, len = 0;
            CHECK_OK(mp_pool_apply(p, pattern_task, &big, sizeof big, NULL, 0, &len, 30.0));
            CHECK_EQ_U(len, big);
        }
        MPT_CONTEXT_CLEAR();
        mp_pool_stats st;
        CHECK_OK(mp_pool_stats_get(p, &st));
        CHECK_EQ_U(st.tasks_failed, 0);
        mp_pool_free(p);
    }
}

/* ---- wake-ups: a worker waiting for the supervisor -------------------------------- */

/* Waits (at most secs) until worker slot 0 of p says it waits for the
 * supervisor to free space. */
static bool slot0_waits(mp_pool *p, double secs)
{
    double end = mpt_now() + secs;
    while (!atomic_load(&mp__pool_wslot(p, 0)->waiting) && mpt_now() < end)
        mp__sleep_ns(1000000); /* polls a state, bounded */
    return atomic_load(&mp__pool_wslot(p, 0)->waiting);
}

static int gate_then_fail_item(const void *in, void *out, const void *ctx)
{
    (void)out;
    if (*(const int *)in == 0 && latch_wait(*(const int *)ctx, 30.0) < 0)
        return 2;
    return 1;
}

static int gate_then_big_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    const int *a = arg; /* gate, bytes */
    if (a[0] >= 0 && latch_wait(a[0], 30.0) < 0)
        return 2;
    return mp_buf_alloc(out, (size_t)a[1]) ? 0 : MP_ENOMEM;
}

/* A worker whose completion ring (records.h, Completion) or result file
 * is full waits for the supervisor to read it, and must be woken when it
 * has: the test holds the supervisor back (its lock) until the worker
 * waits, then lets it go.  With the re-check slices off (the test build's
 * MPROC_TEST_NO_RECHECK), a lost wake-up hangs here instead of costing
 * 100 ms: fails when the supervisor does not wake the worker. */
TEST(the_supervisor_wakes_a_worker_waiting_for_space)
{
    /* Both gates before the pool: its worker inherits them.  One made
     * later would reuse the first's descriptor number, which in the
     * worker still names the first gate, open by then. */
    latch g = latch_new(), g2 = latch_new();
    mp_pool *p = pool_with(1);
    long x = 2, r = 0;
    CHECK_OK(mp_pool_apply(p, square_task, &x, sizeof x, &r, sizeof r, NULL, 30.0));
    /* 3000 failing items: 3000 records for a ring of 1024. */
    enum { N = 3000 };
    static int in[N], errs[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    mp_map_spec s = map_spec(in, N, sizeof in[0], NULL, 0);
    s.fn = gate_then_fail_item;
    s.ctx = &g.r;
    s.ctx_size = sizeof g.r;
    s.errors = errs;
    s.chunksize = N;
    mp_future *f = mp_pool_map_async_ex(p, &s);
    pthread_mutex_lock(&p->lock);
    latch_open(g);
    bool waited = slot0_waits(p, 30.0);
    pthread_mutex_unlock(&p->lock);
    CHECK(waited);
    CHECK_ERR(mp_future_get(f, NULL, 0, NULL, 30.0), MP_ETASK);
    CHECK_ERR(errs[N - 1], MP_ETASK);
    mp_future_free(f);
    /* Two results of 4 MiB: the second waits until the first is read. */
    int a1[2] = {g2.r, 4 << 20}, a2[2] = {-1, 4 << 20};
    mp_future *b1 = mp_pool_apply_async(p, gate_then_big_task, a1, sizeof a1);
    mp_future *b2 = mp_pool_apply_async(p, gate_then_big_task, a2, sizeof a2);
    CHECK_ERR(mp_future_wait(b1, 0.05), MP_ETIMEDOUT); /* the gate holds it */
    pthread_mutex_lock(&p->lock);
    latch_open(g2);
    waited = slot0_waits(p, 30.0);
    pthread_mutex_unlock(&p->lock);
    CHECK(waited);
    size_t len = 0;
    CHECK_OK(mp_future_get(b1, NULL, 0, &len, 30.0));
    CHECK_EQ_U(len, 4u << 20);
    CHECK_OK(mp_future_get(b2, NULL, 0, &len, 30.0));
    mp_future_free(b1);
    mp_future_free(b2);
    mp_pool_free(p);
    latch_close(g);
    latch_close(g2);
}

/* ---- initializers ------------------------------------------------------------------ */

static _Atomic int *init_runs;

static int failing_init(void *arg)
{
    atomic_fetch_add(init_runs, 1);
    return *(int *)arg;
}

TEST(failing_initializer_is_reported_once)
{
    mp_log_set_level(MP_LOG_OFF);
    init_runs = shared_ints(1);
    int code = MP_ENOENT;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.initializer = failing_init;
    o.initarg = &code;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    CHECK(p != NULL);
    long x = 3;
    mp_future *f = mp_pool_apply_async(p, square_task, &x, sizeof x);
    CHECK_ERR(mp_future_get(f, NULL, 0, NULL, 30.0), MP_EINIT);
    CHECK_CONTAINS(mp_future_report(f), "initializer");
    mp_future_free(f);
    CHECK_ERR(mp_pool_error(p), MP_EINIT);
    CHECK_CONTAINS(mp_pool_report(p), "MP_ENOENT");
    /* Later work fails at once; no worker is started again. */
    CHECK_ERR(mp_pool_apply(p, square_task, &x, sizeof x, NULL, 0, NULL, 5.0), MP_EINIT);
    int in[3] = {1, 2, 3};
    long out[3];
    CHECK_ERR(mp_pool_map(p, square_item, in, 3, sizeof in[0], out, sizeof out[0], 0), MP_EINIT);
    CHECK_OK(mp_pool_join(p, 10.0)); /* a broken pool needs no close */
    CHECK_LE(atomic_load(init_runs), 2);
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_LE(st.workers_started, 2);
    mp_pool_free(p);
    mp__unmap((void *)init_runs, sizeof(int));
}

static int counting_init(void *arg)
{
    (void)arg;
    atomic_fetch_add(init_runs, 1);
    return 0;
}

/* Python starts a pool's workers when it is created, so each runs its
 * initializer even when the pool is closed at once (pool.h: mp_pool_new
 * "starts its workers").  Fails when a closed pool never starts them. */
TEST(initializer_runs_in_a_pool_closed_at_once)
{
    init_runs = shared_ints(1);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.initializer = counting_init;
    /* The close races the supervisor's first start: some rounds close
     * before it, which is the case that matters. */
    for (int round = 0; round < 20; round++) {
        MPT_CONTEXT("round %d", round);
        atomic_store(init_runs, 0);
        mp_pool *p = NULL;
        CHECK_OK(mp_pool_new(&o, &p));
        CHECK_OK(mp_pool_close(p));
        CHECK_OK(mp_pool_join(p, 30.0));
        CHECK_EQ(atomic_load(init_runs), 2);
        mp_pool_stats st;
        CHECK_OK(mp_pool_stats_get(p, &st));
        CHECK_EQ_U(st.workers_started, 2);
        CHECK_EQ_U(st.workers_died, 0);
        CHECK_EQ(mp_pool_worker_pids(p, NULL, 0), 0);
        mp_pool_free(p);
    }
    MPT_CONTEXT_CLEAR();
    mp__unmap((void *)init_runs, sizeof(int));
}

static int crashing_init(void *arg)
{
    (void)arg;
    return crash_by(1);
}

static int ok_init(void *arg)
{
    *(int *)arg = 1234; /* seen by tasks in this worker */
    return 0;
}

static int init_value;

static int read_init_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    return mp_buf_append(out, &init_value, sizeof init_value);
}

TEST(initializer_runs_before_tasks_and_crashes_break_the_pool)
{
    mp_log_set_level(MP_LOG_OFF);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.initializer = ok_init;
    o.initarg = &init_value;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    int v = 0;
    CHECK_OK(mp_pool_apply(p, read_init_task, NULL, 0, &v, sizeof v, NULL, 30.0));
    CHECK_EQ(v, 1234);
    CHECK_EQ(init_value, 0); /* the parent's copy is untouched */
    mp_pool_free(p);

    o.initializer = crashing_init;
    CHECK_OK(mp_pool_new(&o, &p));
    CHECK_ERR(mp_pool_apply(p, read_init_task, NULL, 0, &v, sizeof v, NULL, 30.0), MP_EINIT);
    CHECK_CONTAINS(mp_pool_report(p), "SIGSEGV");
    mp_pool_free(p);
}

static int init_kills_itself(void *arg)
{
    (void)arg;
    raise(SIGKILL);
    return 0;
}

static int init_pipe_fds[2];

static int init_waits_for_gate(void *arg)
{
    int me = (int)getpid();
    (void)!write(init_pipe_fds[1], &me, sizeof me);
    return latch_wait(*(int *)arg, 30.0) < 0 ? 1 : 0;
}

TEST(initializer_killed_from_outside_is_replaced_until_it_repeats)
{
    mp_log_set_level(MP_LOG_OFF);
    /* One SIGKILL in an initializer: the OOM killer's, say.  Replaced. */
    latch g = latch_new();
    CHECK_EQ(pipe2(init_pipe_fds, O_CLOEXEC), 0);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    o.initializer = init_waits_for_gate;
    o.initarg = &g.r;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    int pid;
    CHECK_OK(read_int(init_pipe_fds[0], &pid, 30.0));
    CHECK_EQ(kill(pid, SIGKILL), 0);
    latch_open(g);
    int v = 0;
    CHECK_OK(mp_pool_apply(p, pid_task, NULL, 0, &v, sizeof v, NULL, 30.0));
    CHECK_NE(v, pid);
    CHECK_EQ(mp_pool_error(p), 0);
    mp_pool_free(p);
    latch_close(g);
    close(init_pipe_fds[0]);
    close(init_pipe_fds[1]);

    /* Killed every time: the initializer's doing.  Reported, not looped. */
    o.processes = 2;
    o.initializer = init_kills_itself;
    o.initarg = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    CHECK_ERR(mp_pool_apply(p, pid_task, NULL, 0, &v, sizeof v, NULL, 30.0), MP_EINIT);
    CHECK_CONTAINS(mp_pool_report(p), "SIGKILL");
    CHECK_OK(mp_pool_join(p, 10.0));
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_LE(st.workers_started, 4);
    mp_pool_free(p);
}

/* ---- stopping -------------------------------------------------------------------------- */

static int gate_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    (void)out;
    const int *fds = arg; /* gate to wait on, pipe to say "started" on */
    int me = (int)getpid();
    (void)!write(fds[1], &me, sizeof me);
    return latch_wait(fds[0], 60.0) < 0 ? 1 : 0;
}

TEST(terminate_while_busy_is_prompt_and_leaves_nothing)
{
    latch g = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    mp_pool *p = pool_with(2);
    int fds[2] = {g.r, started[1]};
    mp_future *fs[6];
    for (int i = 0; i < 6; i++)
        fs[i] = mp_pool_apply_async(p, gate_task, fds, sizeof fds);
    int pid1, pid2;
    CHECK_OK(read_int(started[0], &pid1, 30.0));
    CHECK_OK(read_int(started[0], &pid2, 30.0));
    double t0 = mpt_now();
    CHECK_OK(mp_pool_terminate(p));
    CHECK(mpt_now() - t0 < 3.0);
    for (int i = 0; i < 6; i++) {
        CHECK(mp_future_done(fs[i]));
        CHECK_ERR(mp_future_status(fs[i]), MP_ECANCELED);
        CHECK(mp_future_cancelled(fs[i]));
    }
    CHECK_EQ(mp_pool_worker_pids(p, NULL, 0), 0);
    CHECK(mpt_wait_gone(pid1, 5.0));
    CHECK(mpt_wait_gone(pid2, 5.0));
    CHECK_OK(mp_pool_terminate(p)); /* idempotent */
    CHECK_OK(mp_pool_join(p, 1.0));
    mp_future *late = mp_pool_apply_async(p, pid_task, NULL, 0);
    CHECK_ERR(mp_future_get(late, NULL, 0, NULL, 1.0), MP_ECLOSED);
    mp_future_free(late);
    mp_pool_free(p);
    /* Futures outlive their pool. */
    for (int i = 0; i < 6; i++) {
        CHECK_ERR(mp_future_get(fs[i], NULL, 0, NULL, 0), MP_ECANCELED);
        mp_future_free(fs[i]);
    }
    latch_close(g);
    close(started[0]);
    close(started[1]);
}

static int ignore_term_task(const void *arg, size_t len, mp_buf *out)
{
    (void)out;
    (void)len;
    signal(SIGTERM, SIG_IGN);
    const int *fds = arg;
    int me = (int)getpid();
    (void)!write(fds[1], &me, sizeof me);
    return latch_wait(fds[0], 60.0) < 0 ? 1 : 0;
}

TEST(terminate_kills_what_ignores_sigterm_after_the_grace)
{
    latch g = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 1;
    o.terminate_grace = 0.3;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    int fds[2] = {g.r, started[1]};
    mp_future *f = mp_pool_apply_async(p, ignore_term_task, fds, sizeof fds);
    int pid;
    CHECK_OK(read_int(started[0], &pid, 30.0));
    double t0 = mpt_now();
    CHECK_OK(mp_pool_terminate(p));
    double dt = mpt_now() - t0;
    CHECK(dt >= 0.3);
    CHECK(dt < 5.0);
    CHECK_ERR(mp_future_status(f), MP_ECANCELED);
    CHECK(mpt_wait_gone(pid, 5.0));
    mp_future_free(f);
    mp_pool_free(p);
    latch_close(g);
    close(started[0]);
    close(started[1]);
}

TEST(close_then_join_finishes_the_work)
{
    mp_pool *p = pool_with(2);
    enum { N = 300 };
    mp_future *fs[N];
    for (long i = 0; i < N; i++)
        fs[i] = mp_pool_apply_async(p, square_task, &i, sizeof i);
    CHECK_ERR(mp_pool_join(p, 0.1), MP_ESTATE); /* not closed: as Python */
    CHECK_OK(mp_pool_close(p));
    CHECK_OK(mp_pool_close(p));
    mp_future *late = mp_pool_apply_async(p, square_task, &(long){1}, sizeof(long));
    CHECK_ERR(mp_future_get(late, NULL, 0, NULL, 1.0), MP_ECLOSED);
    mp_future_free(late);
    CHECK_OK(mp_pool_join(p, 30.0));
    CHECK_EQ(mp_pool_worker_pids(p, NULL, 0), 0);
    for (long i = 0; i < N; i++) {
        long v;
        CHECK_OK(mp_future_get(fs[i], &v, sizeof v, NULL, 0));
        CHECK_EQ(v, i * i);
        mp_future_free(fs[i]);
    }
    mp_pool_free(p);
}

TEST(join_times_out_while_work_runs)
{
    latch g = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    mp_pool *p = pool_with(1);
    int fds[2] = {g.r, started[1]};
    mp_future *f = mp_pool_apply_async(p, gate_task, fds, sizeof fds);
    int pid;
    CHECK_OK(read_int(started[0], &pid, 30.0));
    CHECK_OK(mp_pool_close(p));
    double t0 = mpt_now();
    CHECK_ERR(mp_pool_join(p, 0.2), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 >= 0.2);
    latch_open(g);
    CHECK_OK(mp_pool_join(p, 30.0));
    CHECK_OK(mp_future_status(f));
    mp_future_free(f);
    mp_pool_free(p);
    latch_close(g);
    close(started[0]);
    close(started[1]);
}

/* pool.h, mp_pool_shutdown: "cancels the work no worker has started when
 * cancel_pending is true".  The one worker is held by a task until after
 * the shutdown, so the queued tasks cannot have started: each must be
 * cancelled.  Fails when cancel_pending is ignored (they are then still
 * queued, and run once the gate opens). */
TEST(shutdown_cancels_pending_work)
{
    latch g = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    mp_pool *p = pool_with(1);
    int fds[2] = {g.r, started[1]};
    mp_future *running = mp_pool_apply_async(p, gate_task, fds, sizeof fds);
    mp_future *queued[5];
    for (int i = 0; i < 5; i++)
        queued[i] = mp_pool_apply_async(p, pid_task, NULL, 0);
    int in[50];
    long out[50];
    int errs[50];
    for (int i = 0; i < 50; i++)
        in[i] = i;
    mp_map_spec s = map_spec(in, 50, sizeof in[0], out, sizeof out[0]);
    s.fn = square_item;
    s.errors = errs;
    mp_future *map = mp_pool_map_async_ex(p, &s);
    int pid;
    CHECK_OK(read_int(started[0], &pid, 30.0));
    /* The running task holds the worker: the join part times out. */
    CHECK_ERR(mp_pool_shutdown(p, true, 0.2), MP_ETIMEDOUT);
    for (int i = 0; i < 5; i++) {
        CHECK(mp_future_done(queued[i]));
        CHECK_ERR(mp_future_status(queued[i]), MP_ECANCELED);
        mp_future_free(queued[i]);
    }
    CHECK(mp_future_done(map));
    CHECK_ERR(mp_future_status(map), MP_ECANCELED);
    CHECK_ERR(errs[0], MP_ECANCELED);
    CHECK_ERR(errs[49], MP_ECANCELED);
    mp_future_free(map);
    CHECK(!mp_future_done(running));
    latch_open(g);
    CHECK_OK(mp_pool_join(p, 30.0));
    CHECK_OK(mp_future_status(running));
    mp_future_free(running);
    mp_pool_free(p);
    latch_close(g);
    close(started[0]);
    close(started[1]);
}

TEST(free_with_work_pending_cancels_it)
{
    latch g = latch_new();
    mp_pool *p = pool_with(2);
    int fds[2] = {g.r, -1};
    int dummy[2];
    CHECK_EQ(pipe2(dummy, O_CLOEXEC), 0);
    fds[1] = dummy[1];
    mp_future *fs[10];
    for (int i = 0; i < 10; i++)
        fs[i] = mp_pool_apply_async(p, gate_task, fds, sizeof fds);
    mp_pool_free(p);
    for (int i = 0; i < 10; i++) {
        CHECK_ERR(mp_future_get(fs[i], NULL, 0, NULL, 0), MP_ECANCELED);
        mp_future_free(fs[i]);
    }
    latch_close(g);
    close(dummy[0]);
    close(dummy[1]);
}

/* How a scribbling task writes over the pool's shared memory. */
enum { SCRIBBLE_ZEROS, SCRIBBLE_ONES, SCRIBBLE_RANDOM, SCRIBBLE_NUDGE, SCRIBBLE_KINDS };

static void scribble(unsigned char *p, size_t len, int how, uint64_t *seed)
{
    for (size_t i = 0; i < len; i++) {
        if (how == SCRIBBLE_ZEROS) {
            p[i] = 0;
        } else if (how == SCRIBBLE_ONES) {
            p[i] = 0xff;
        } else if (how == SCRIBBLE_RANDOM) {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            p[i] = (unsigned char)*seed;
        } else if (i % 4 == 0) {
            p[i]++; /* small changes everywhere: counters, offsets, states */
        }
    }
}

typedef struct scribble_arg {
    int how;
    bool crash;
} scribble_arg;

/* Writes over every mapping of the pool's memory files this worker has
 * (the control region and the data region), then crashes, or returns. */
static int scribble_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    (void)out;
    /* The argument lies in shared memory too: read it before. */
    const scribble_arg a = *(const scribble_arg *)arg;
    uint64_t seed = 0x9e3779b97f4a7c15u;
    FILE *m = fopen("/proc/self/maps", "re");
    char line[512];
    while (m && fgets(line, sizeof line, m)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[1] != 'w')
            continue;
        if (strstr(line, "mproc-pool-ctrl") || strstr(line, "mproc-pool-data"))
            scribble((unsigned char *)lo, hi - lo, a.how, &seed);
    }
    if (m)
        fclose(m);
    if (a.crash)
        crash_by(1);
    return 0;
}

/* pool.h, "Fault isolation": "A task that writes over the pool's shared
 * memory may fail other tasks, but every future finishes, the pool goes
 * on and mp_pool_free() returns".  A task overwrites both shared regions
 * (zeros, ones, random bytes, or every fourth byte nudged) while other
 * work runs, waits and is queued, then crashes or returns.  Fails when a
 * future never finishes, when the pool takes no more work, or when
 * freeing it hangs. */
TEST_TIMEOUT(a_task_scribbling_over_shared_memory_fails_only_work_in_progress, 120)
{
    mp_log_set_level(MP_LOG_OFF);
    mpt_allow_recheck(); /* a task that scribbles and returns is found by the periodic look */
    latch g = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    int fds[2] = {g.r, started[1]};
    for (int how = 0; how < SCRIBBLE_KINDS; how++) {
        for (int crash = 1; crash >= 0; crash--) {
            MPT_CONTEXT("scribble %d, %s", how, crash ? "then crash" : "then return");
            mp_pool *p = pool_with(2);
            /* One task holding a worker, a map and tasks queued behind. */
            mp_future *held = mp_pool_apply_async(p, gate_task, fds, sizeof fds);
            int pid;
            CHECK_OK(read_int(started[0], &pid, 30.0));
            int in[500];
            long out[500];
            for (int i = 0; i < 500; i++)
                in[i] = i;
            mp_future *map =
                mp_pool_map_async(p, square_item, in, 500, sizeof in[0], out, sizeof out[0], 7);
            scribble_arg a = {how, crash};
            mp_future *bad = mp_pool_apply_async(p, scribble_task, &a, sizeof a);
            mp_future *after[20];
            for (long i = 0; i < 20; i++)
                after[i] = mp_pool_apply_async(p, square_task, &i, sizeof i);
            /* Every future finishes. */
            CHECK_OK(mp_future_wait(bad, 60.0));
            CHECK_OK(mp_future_wait(map, 60.0));
            for (int i = 0; i < 20; i++)
                CHECK_OK(mp_future_wait(after[i], 60.0));
            latch_open(g);
            CHECK_OK(mp_future_wait(held, 60.0));
            /* The pool goes on: new work runs, and is right. */
            for (long i = 0; i < 20; i++) {
                long r = 0;
                CHECK_OK(mp_pool_apply(p, square_task, &i, sizeof i, &r, sizeof r, NULL, 60.0));
                CHECK_EQ(r, i * i);
            }
            memset(out, 0, sizeof out);
            CHECK_OK(mp_pool_map(p, square_item, in, 500, sizeof in[0], out, sizeof out[0], 7));
            CHECK_EQ(out[499], 499L * 499);
            mp_pool_stats st;
            CHECK_OK(mp_pool_stats_get(p, &st));
            printf("  scribble %d, %s: bad %s, map %s, %llu resets\n", how,
                   crash ? "crash" : "return", mp_err_name(mp_future_status(bad)),
                   mp_err_name(mp_future_status(map)), (unsigned long long)st.pool_resets);
            CHECK_EQ_U(st.pool_resets, 1);
            if (crash)
                CHECK_NE(mp_future_status(bad), 0);
            mp_future_free(bad);
            mp_future_free(map);
            mp_future_free(held);
            for (int i = 0; i < 20; i++)
                mp_future_free(after[i]);
            mp_pool_free(p);
            /* The gate stays open: drain it for the next round. */
            latch_close(g);
            g = latch_new();
            fds[0] = g.r;
        }
    }
    MPT_CONTEXT_CLEAR();
    latch_close(g);
    close(started[0]);
    close(started[1]);
}

/* ---- Ctrl-C ----------------------------------------------------------------------------- */

typedef struct sigint_args {
    int started_fd;
} sigint_args;

static void *send_sigint_when_started(void *arg)
{
    sigint_args *a = arg;
    int v;
    if (read_int(a->started_fd, &v, 30.0) != 0)
        return NULL;
    /* The map waits under the library's handler once SIGINT is no longer
     * at its default. */
    double end = mpt_now() + 30.0;
    struct sigaction sa;
    while (sigaction(SIGINT, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL && mpt_now() < end)
        mp__sleep_ns(100000); /* polls a state, bounded */
    kill(getpid(), SIGINT);
    return NULL;
}

static int started_then_wait(const void *in, void *out, const void *ctx)
{
    const int *fds = ctx;
    int v = *(const int *)in;
    if (v == 0)
        (void)!write(fds[1], &v, sizeof v);
    *(int *)out = latch_wait(fds[0], 60.0);
    return 0;
}

static int pid_item(const void *in, void *out, const void *ctx)
{
    (void)in;
    (void)ctx;
    *(int *)out = (int)getpid();
    return 0;
}

/* pool.h: "Worker processes ignore SIGINT: a Ctrl-C reaches the parent,
 * which coordinates ... a SIGINT while a thread waits in map ...
 * terminates the pool and returns MP_ECANCELED".  Fails when the workers
 * die of the SIGINT a terminal sends the whole process group, or when the
 * parent's wait does not end the pool. */
TEST(sigint_during_map_cancels_and_stops_the_workers)
{
    latch g = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    mp_pool *p = pool_with(2);
    pid_t pids[2];
    CHECK_EQ(wait_workers(p, 2, 10.0), 2);
    CHECK_EQ(mp_pool_worker_pids(p, pids, 2), 2);
    /* A Ctrl-C reaches the whole process group: workers ignore it.  They
     * are the ones that run the next map, and none died. */
    kill(pids[0], SIGINT);
    kill(pids[1], SIGINT);
    int who[64];
    CHECK_OK(mp_pool_map(p, pid_item, NULL, 64, 0, who, sizeof who[0], 1));
    for (int i = 0; i < 64; i++)
        CHECK(who[i] == pids[0] || who[i] == pids[1]);
    mp_pool_stats st;
    CHECK_OK(mp_pool_stats_get(p, &st));
    CHECK_EQ_U(st.workers_died, 0);
    CHECK_EQ_U(st.workers_started, 2);
    int in[64], out[64];
    for (int i = 0; i < 64; i++)
        in[i] = i;
    int fds[2] = {g.r, started[1]};
    mp_map_spec s = map_spec(in, 64, sizeof in[0], out, sizeof out[0]);
    s.fn = started_then_wait;
    s.ctx = fds;
    s.ctx_size = sizeof fds;
    s.chunksize = 1;
    sigint_args a = {started[0]};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, send_sigint_when_started, &a), 0);
    double t0 = mpt_now();
    CHECK_ERR(mp_pool_map_ex(p, &s), MP_ECANCELED);
    CHECK(mpt_now() - t0 < 20.0);
    pthread_join(t, NULL);
    CHECK_EQ(mp_pool_worker_pids(p, NULL, 0), 0);
    CHECK(mpt_wait_gone(pids[0], 5.0));
    CHECK(mpt_wait_gone(pids[1], 5.0));
    /* The default action is back. */
    struct sigaction sa;
    CHECK_EQ(sigaction(SIGINT, NULL, &sa), 0);
    CHECK(sa.sa_handler == SIG_DFL);
    mp_pool_free(p);
    latch_close(g);
    close(started[0]);
    close(started[1]);
}

static _Atomic int user_sigints;

static void user_handler(int signo)
{
    (void)signo;
    atomic_fetch_add(&user_sigints, 1);
}

TEST(sigint_with_a_user_handler_is_left_to_it)
{
    latch g = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = user_handler;
    CHECK_EQ(sigaction(SIGINT, &sa, NULL), 0);
    mp_pool *p = pool_with(1);
    int fds[2] = {g.r, started[1]};
    mp_future *f = mp_pool_apply_async(p, gate_task, fds, sizeof fds);
    int pid;
    CHECK_OK(read_int(started[0], &pid, 30.0));
    kill(getpid(), SIGINT);
    /* The wait goes on: the program handles SIGINT its own way. */
    CHECK_ERR(mp_future_wait(f, 0.2), MP_ETIMEDOUT);
    CHECK_EQ(atomic_load(&user_sigints), 1);
    latch_open(g);
    CHECK_OK(mp_future_get(f, NULL, 0, NULL, 30.0));
    struct sigaction now;
    CHECK_EQ(sigaction(SIGINT, NULL, &now), 0);
    CHECK(now.sa_handler == user_handler);
    mp_future_free(f);
    mp_pool_free(p);
    latch_close(g);
    close(started[0]);
    close(started[1]);
}

/* ---- start methods ------------------------------------------------------------------------ */

static int fs_init(void *arg)
{
    /* A fresh image: the value comes from the copied argument only. */
    init_value = *(int *)arg;
    return 0;
}

static void check_fresh_image_pool(mp_start_method method)
{
    mp_log_set_level(MP_LOG_OFF);
    int seed = 77;
    init_value = 5;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.start_method = method;
    o.initializer = fs_init;
    o.initarg = &seed;
    o.initarg_size = sizeof seed;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    CHECK(p != NULL);
    int v = 0;
    CHECK_OK(mp_pool_apply(p, read_init_task, NULL, 0, &v, sizeof v, NULL, 30.0));
    CHECK_EQ(v, 77);
    enum { N = 20000 };
    int *in = malloc(N * sizeof *in);
    long *out = malloc(N * sizeof *out);
    for (int i = 0; i < N; i++)
        in[i] = i;
    CHECK_OK(mp_pool_map(p, square_item, in, N, sizeof *in, out, sizeof *out, 0));
    for (int i = 0; i < N; i++)
        CHECK_EQ(out[i], (long)i * i);
    /* Growth of the data region after the workers started. */
    size_t big = (size_t)8 << 20;
    unsigned char *arg = malloc(big);
    memset(arg, 0x5a, big);
    unsigned char res[16];
    size_t len = 0;
    CHECK_ERR(mp_pool_apply(p, echo_task, arg, big, res, sizeof res, &len, 30.0), MP_EMSGSIZE);
    CHECK_EQ(len, big);
    free(arg);
    int how = 1;
    CHECK_ERR(mp_pool_apply(p, crash_task, &how, sizeof how, NULL, 0, NULL, 30.0), MP_EWORKER);
    long x = 6, r = 0;
    CHECK_OK(mp_pool_apply(p, square_task, &x, sizeof x, &r, sizeof r, NULL, 30.0));
    CHECK_EQ(r, 36);
    free(in);
    free(out);
    mp_pool_free(p);
}

TEST(forkserver_workers)
{
    check_fresh_image_pool(MP_START_FORKSERVER);
}

TEST(spawn_workers)
{
    check_fresh_image_pool(MP_START_SPAWN);
}

/* ---- threads ------------------------------------------------------------------------------- */

static void *submitter(void *arg)
{
    mp_pool *p = arg;
    for (long i = 0; i < 2000; i++) {
        mp_future *f = mp_pool_apply_async(p, square_task, &i, sizeof i);
        long v = 0;
        if (mp_future_get(f, &v, sizeof v, NULL, 60.0) != 0 || v != i * i)
            return (void *)1;
        mp_future_free(f);
    }
    int in[500];
    long out[500];
    for (int i = 0; i < 500; i++)
        in[i] = i;
    for (int k = 0; k < 20; k++) {
        if (mp_pool_map(p, square_item, in, 500, sizeof in[0], out, sizeof out[0], 3) != 0 ||
            out[499] != 499L * 499)
            return (void *)1;
    }
    return NULL;
}

TEST(many_threads_share_one_pool)
{
    mp_pool *p = pool_with(2);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, submitter, p), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK(r == NULL);
    }
    mp_pool_free(p);
}

static int cb_done_pipe[2];

TEST(a_forked_child_cannot_use_its_parents_pool)
{
    mp_pool *p = pool_with(1);
    long x = 4, v = 0;
    CHECK_OK(mp_pool_apply(p, square_task, &x, sizeof x, &v, sizeof v, NULL, 30.0));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* The pool, its threads and its workers are the parent's. */
        mp_future *f = mp_pool_apply_async(p, square_task, &x, sizeof x);
        int ok = mp_future_get(f, NULL, 0, NULL, 1.0) == MP_ESTATE;
        mp_future_free(f);
        ok &= mp_pool_map(p, square_item, &x, 1, sizeof(int), &v, sizeof v, 0) == MP_ESTATE;
        mp_imap *it = (mp_imap *)&it;
        ok &= mp_pool_imap(p, square_item, &x, 1, sizeof(int), sizeof v, 0, &it) == MP_ESTATE;
        ok &= it == NULL;
        ok &= mp_pool_close(p) == MP_ESTATE && mp_pool_terminate(p) == MP_ESTATE;
        ok &= mp_pool_shared_alloc(p, 64) == NULL;
        mp_pool_free(p); /* releases the child's copy only */
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    /* The parent's pool is untouched. */
    x = 6;
    CHECK_OK(mp_pool_apply(p, square_task, &x, sizeof x, &v, sizeof v, NULL, 30.0));
    CHECK_EQ(v, 36);
    mp_pool_free(p);
}

static void resubmit_cb(mp_future *f, void *ctx)
{
    mp_pool *p = ctx;
    /* A callback may submit more work and wait for it; joining its own
     * pool is refused. */
    long x = 5, v = 0;
    mp_future *g = mp_pool_apply_async(p, square_task, &x, sizeof x);
    if (mp_future_get(g, &v, sizeof v, NULL, 30.0) == 0 && v == 25)
        atomic_fetch_add(&cb_ok, 100);
    mp_future_free(g);
    if (mp_pool_join(p, 0) == MP_EDEADLK)
        atomic_fetch_add(&cb_ok, 1000);
    (void)f;
    int one = 1;
    (void)!write(cb_done_pipe[1], &one, sizeof one);
}

TEST(callbacks_may_submit_work)
{
    atomic_store(&cb_ok, 0);
    CHECK_EQ(pipe2(cb_done_pipe, O_CLOEXEC), 0);
    mp_pool *p = pool_with(2);
    long x = 2;
    mp_future *f = mp_pool_apply_async_cb(p, square_task, &x, sizeof x, resubmit_cb, NULL, p);
    int one;
    CHECK_OK(read_int(cb_done_pipe[0], &one, 30.0));
    mp_future_free(f);
    close(cb_done_pipe[0]);
    close(cb_done_pipe[1]);
    mp_pool_close(p);
    CHECK_OK(mp_pool_join(p, 30.0));
    mp_pool_free(p);
    CHECK_EQ(atomic_load(&cb_ok), 1100);
}

/* ---- the program around the pool: threads, shutdown, children ------------------ */

static void *idle_thread(void *arg)
{
    const latch *g = arg;
    (void)latch_wait(g->r, 60.0);
    return NULL;
}

/* The parent of process pid, from /proc, or -1. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')'); /* the name may hold spaces */
    int ppid = -1;
    char state;
    if (!rp || sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
        return -1;
    return (pid_t)ppid;
}

/* A program with a thread of its own: the default start method is the
 * forkserver (the workers are not this process's forks), results are
 * right, and fork asked for explicitly is refused. */
TEST(pool_in_a_threaded_program_starts_workers_safely)
{
    latch g = latch_new();
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, idle_thread, &g), 0);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    mp_pool *p = NULL;
    CHECK_OK(mp_pool_new(&o, &p));
    int in[300];
    long out[300];
    for (int i = 0; i < 300; i++)
        in[i] = i;
    CHECK_OK(mp_pool_map(p, square_item, in, 300, sizeof in[0], out, sizeof out[0], 7));
    for (int i = 0; i < 300; i++)
        CHECK_EQ(out[i], (long)i * i);
    long x = 9, r = 0;
    CHECK_OK(mp_pool_apply(p, square_task, &x, sizeof x, &r, sizeof r, NULL, 30.0));
    CHECK_EQ(r, 81);
    pid_t pids[2];
    CHECK_EQ(mp_pool_worker_pids(p, pids, 2), 2);
    for (int i = 0; i < 2; i++)
        CHECK(parent_of(pids[i]) != getpid());
    mp_pool_free(p);
    o.start_method = MP_START_FORK;
    p = (mp_pool *)&p;
    CHECK_ERR(mp_pool_new(&o, &p), MP_ETHREADS);
    CHECK(p == NULL);
    latch_open(g);
    pthread_join(t, NULL);
    latch_close(g);
}

/* mp_shutdown with a pool whose task never ends: it closes the pool, then
 * terminates it past its timeout, and returns within its bounds; the
 * workers are gone, the task's future finished, the pool takes no more
 * work, and freeing it returns. */
TEST(shutdown_ends_a_live_pool)
{
    mp_log_set_level(MP_LOG_OFF);
    latch g = latch_new();
    int started[2];
    CHECK_EQ(pipe2(started, O_CLOEXEC), 0);
    mp_pool *p = pool_with(2);
    int fds[2] = {g.r, started[1]};
    mp_future *f = mp_pool_apply_async(p, gate_task, fds, sizeof fds);
    int busy = 0;
    CHECK_OK(read_int(started[0], &busy, 30.0));
    CHECK_EQ(wait_workers(p, 2, 30.0), 2);
    pid_t pids[2];
    CHECK_EQ(mp_pool_worker_pids(p, pids, 2), 2);
    mp_shutdown_opts so = MP_SHUTDOWN_OPTS_INIT;
    so.timeout = 0.5;
    so.grace = 0.5;
    mp_shutdown_report rep;
    double t0 = mpt_now();
    int rc = mp_shutdown_ex(&so, &rep);
    double took = mpt_now() - t0;
    CHECK(rc >= 0);
    CHECK(took < 10.0);
    CHECK(rep.closed >= 1);
    CHECK_OK(mp_future_wait(f, 30.0));
    CHECK(mp_future_status(f) < 0);
    CHECK_OK(mp_pool_join(p, 30.0));
    for (int i = 0; i < 2; i++)
        CHECK_ERR(kill(pids[i], 0) == 0 ? 0 : -errno, -ESRCH);
    long x = 3;
    mp_future *h = mp_pool_apply_async(p, square_task, &x, sizeof x);
    CHECK(mp_future_status(h) < 0);
    mp_future_free(h);
    mp_future_free(f);
    mp_pool_free(p);
    close(started[0]);
    close(started[1]);
    latch_close(g);
}

/* A pool's workers are the pool's: mp_active_children() lists the
 * program's own children only. */
TEST(active_children_does_not_list_pool_workers)
{
    mp_pool *p = pool_with(2);
    CHECK_EQ(wait_workers(p, 2, 30.0), 2);
    mp_process *kids[8];
    CHECK_EQ(mp_active_children(kids, 8), 0);
    long x = 5, r = 0;
    CHECK_OK(mp_pool_apply(p, square_task, &x, sizeof x, &r, sizeof r, NULL, 30.0));
    CHECK_EQ(mp_active_children(kids, 8), 0);
    mp_pool_free(p);
}

MPT_MAIN()
