/*
 * test_rank_pool.c - a pool whose workers are ranks (mp_pool_opts.comm):
 * the same pool calls, on ranks of mp_run (the local engine), and under
 * the launchers with `--ranks pool|die` (tests/CMakeLists.txt: mprun and
 * mpiexec, label mpi).
 */
#include "mp_test.h"

#include "comm_test.h"

#include <signal.h>
#include <stdatomic.h>

/* ---- task and map functions (found on the worker ranks by their place) ---- */

static int sq_task(const void *arg, size_t len, mp_buf *out)
{
    if (len != sizeof(long))
        return mp_task_fail(out, "want a long, got %zu bytes", len);
    long v;
    memcpy(&v, arg, sizeof v);
    v *= v;
    return mp_buf_append(out, &v, sizeof v);
}

static int spin_task(const void *arg, size_t len, mp_buf *out);

/* Answers with the rank it ran on, after spinning as spin_task does (so
 * that the work spreads over the ranks). */
static int rank_task(const void *arg, size_t len, mp_buf *out)
{
    (void)spin_task(arg, len, out);
    mp_comm *w;
    int rc = mp_comm_world(&w);
    if (rc < 0)
        return rc;
    int r = mp_comm_rank(w);
    return mp_buf_append(out, &r, sizeof r);
}

static int fail_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    return mp_task_fail(out, "no such file: %s", "x.txt");
}

/* A result larger than one message ring: 3 MiB of a pattern. */
static int big_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    size_t n = (size_t)3 << 20;
    unsigned char *p = mp_buf_alloc(out, n);
    if (!p)
        return MP_ENOMEM;
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + (i >> 12));
    return 0;
}

static int kill_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    (void)out;
    raise(SIGKILL);
    return 0;
}

/* Spins for about the given milliseconds (a task that takes a while). */
static int spin_task(const void *arg, size_t len, mp_buf *out)
{
    (void)out;
    int ms = 0;
    if (len == sizeof ms)
        memcpy(&ms, arg, sizeof ms);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 < ms);
    return 0;
}

static int sq_map(const void *in, void *out, const void *ctx)
{
    long add = ctx ? *(const long *)ctx : 0;
    long v = *(const long *)in;
    *(long *)out = v * v + add;
    return 0;
}

/* Fails the items that are multiples of 7 (with a message). */
static int sev_map(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    long v = *(const long *)in;
    if (v % 7 == 0)
        return mp_item_fail("item %ld is a multiple of 7", v);
    *(long *)out = v + 1;
    return 0;
}

static int range_map(const void *in, void *out, size_t n, const void *ctx)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        ((long *)out)[i] = 3 * ((const long *)in)[i];
    return 0;
}

static int upper_bytes(const void *in, size_t len, mp_buf *out)
{
    char *p = mp_buf_alloc(out, len + 1);
    if (!p)
        return MP_ENOMEM;
    for (size_t i = 0; i < len; i++) {
        char c = ((const char *)in)[i];
        p[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    p[len] = '!';
    return 0;
}

static long init_value;

static int set_init(void *arg)
{
    if (!arg)
        return 9;
    memcpy(&init_value, arg, sizeof init_value);
    return init_value < 0 ? 5 : 0;
}

static int init_task(const void *arg, size_t len, mp_buf *out)
{
    (void)arg;
    (void)len;
    return mp_buf_append(out, &init_value, sizeof init_value);
}

/* Not code: no worker rank can find it. */
static const int not_code = 1;

/* ---- the checks, on rank 0 of a pool ------------------------------------------ */

/* Waits until every worker rank of p has run its initializer. */
static int wait_ready(mp_pool *p, int workers)
{
    mp_pool_stats st;
    for (int i = 0; i < 10000; i++) {
        RK_OK(mp_pool_stats_get(p, &st));
        if (st.workers_started == (uint64_t)workers)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return rk_fail(__FILE__, __LINE__, "the worker ranks never got ready");
}

/* A pool over w: on rank 0 returns 1 with *p set; elsewhere serves and
 * returns 0 (or fails). */
static int pool_over(mp_comm *w, const mp_pool_opts *base, mp_pool **p)
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    if (base)
        o = *base;
    o.comm = w;
    *p = (mp_pool *)&o; /* must come back NULL on the workers */
    int rc = mp_pool_new(&o, p);
    if (rc < 0) {
        /* A worker rank whose root died says so; the callers expect it. */
        if (mp_comm_rank(w) == 0 || rc != MP_EPEERDEAD)
            rk_fail(__FILE__, __LINE__, "mp_pool_new: %s", mp_err_name(rc));
        return -1;
    }
    if (mp_comm_rank(w) != 0) {
        if (*p == NULL)
            return 0;
        rk_fail(__FILE__, __LINE__, "a worker rank got a pool");
        return -1;
    }
    if (*p)
        return 1;
    rk_fail(__FILE__, __LINE__, "rank 0 got no pool");
    return -1;
}

static int apply_checks(mp_pool *p, int size)
{
    RK_EQ(mp_pool_size(p), size - 1);
    long v = 12, got = 0;
    size_t len = 0;
    RK_OK(mp_pool_apply(p, sq_task, &v, sizeof v, &got, sizeof got, &len, 30));
    RK_EQ(len, sizeof got);
    RK_EQ(got, 144);
    /* Many at once, on every rank. */
    enum { N = 40 };
    mp_future *fs[N];
    long args[N];
    for (int i = 0; i < N; i++) {
        args[i] = i;
        fs[i] = i % 2 ? mp_pool_submit(p, sq_task, &args[i], sizeof args[i])
                      : mp_pool_apply_async(p, sq_task, &args[i], sizeof args[i]);
        RK_CHECK(fs[i] != NULL);
    }
    RK_EQ(mp_wait(fs, N, MP_ALL_COMPLETED, 30), N);
    mp_as_completed *ac;
    RK_OK(mp_as_completed_new(fs, N, &ac));
    int seen = 0;
    mp_future *f;
    while (mp_as_completed_next(ac, &f, 30) == 0) {
        RK_OK(mp_future_status(f));
        seen++;
    }
    RK_EQ(seen, N);
    mp_as_completed_free(ac);
    for (int i = 0; i < N; i++) {
        long r = -1;
        RK_OK(mp_future_get(fs[i], &r, sizeof r, NULL, 0));
        RK_EQ(r, (long)i * i);
        mp_future_free(fs[i]);
    }
    /* Every worker rank takes part (once each is ready: one that is late
     * to start would find the work done). */
    if (size > 2) {
        RK_PASS(wait_ready(p, size - 1));
        bool ran[8] = {false};
        mp_future *rf[32];
        int ms = 5;
        for (int i = 0; i < 32; i++)
            rf[i] = mp_pool_apply_async(p, rank_task, &ms, sizeof ms);
        for (int i = 0; i < 32; i++) {
            int r = -1;
            RK_OK(mp_future_get(rf[i], &r, sizeof r, NULL, 30));
            if (r > 0 && r < 8)
                ran[r] = true;
            mp_future_free(rf[i]);
        }
        for (int r = 1; r < size && r < 8; r++)
            RK_CHECK(ran[r]);
    }
    return 0;
}

typedef struct cb_count {
    _Atomic int ok, err;
} cb_count;

static void on_ok(mp_future *f, void *ctx)
{
    (void)f;
    atomic_fetch_add(&((cb_count *)ctx)->ok, 1);
}

static void on_err(mp_future *f, void *ctx)
{
    (void)f;
    atomic_fetch_add(&((cb_count *)ctx)->err, 1);
}

/* Callbacks run in the pool's callback thread, once each. */
static int callback_checks(mp_pool *p)
{
    cb_count c;
    atomic_init(&c.ok, 0);
    atomic_init(&c.err, 0);
    long v = 5;
    mp_future *a = mp_pool_apply_async_cb(p, sq_task, &v, sizeof v, on_ok, on_err, &c);
    mp_future *b = mp_pool_apply_async_cb(p, fail_task, NULL, 0, on_ok, on_err, &c);
    mp_future *fs[2] = {a, b};
    RK_EQ(mp_wait(fs, 2, MP_ALL_COMPLETED, 30), 2);
    /* Callbacks run after the futures finish: a task behind them says
     * when they have (one callback thread, in order). */
    for (int i = 0; i < 3000 && atomic_load(&c.ok) + atomic_load(&c.err) < 2; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    RK_EQ(atomic_load(&c.ok), 1);
    RK_EQ(atomic_load(&c.err), 1);
    mp_future_free(a);
    mp_future_free(b);
    return 0;
}

static int error_checks(mp_pool *p)
{
    /* A task's error comes back, the pool goes on. */
    mp_future *f = mp_pool_apply_async(p, fail_task, NULL, 0);
    RK_ERR(mp_future_wait(f, 30), 0);
    RK_ERR(mp_future_status(f), MP_ETASK);
    RK_ERR(mp_future_task_error(f), MP_ETASK);
    RK_CHECK(mp_future_report(f) && strstr(mp_future_report(f), "no such file: x.txt"));
    mp_future_free(f);
    long v = 3, got = 0;
    RK_OK(mp_pool_apply(p, sq_task, &v, sizeof v, &got, sizeof got, NULL, 30));
    RK_EQ(got, 9);
    RK_ERR(mp_pool_apply(p, sq_task, &v, 1, &got, sizeof got, NULL, 30), MP_ETASK);
    /* A function no rank can find: refused at once, as spawn refuses it. */
    mp_task_fn bad = (mp_task_fn)(uintptr_t)&not_code;
    f = mp_pool_apply_async(p, bad, NULL, 0);
    RK_ERR(mp_future_wait(f, 30), 0);
    RK_ERR(mp_future_status(f), MP_EINVAL);
    mp_future_free(f);
    long in[4] = {1, 2, 3, 4}, out[4];
    RK_ERR(
        mp_pool_map(p, (mp_map_fn)(uintptr_t)&not_code, in, 4, sizeof in[0], out, sizeof out[0], 0),
        MP_EINVAL);
    /* A result larger than a ring, whole. */
    f = mp_pool_apply_async(p, big_task, NULL, 0);
    RK_OK(mp_future_wait(f, 30));
    size_t len = 0;
    const unsigned char *r = mp_future_result(f, &len);
    RK_EQ(len, (size_t)3 << 20);
    for (size_t i = 0; i < len; i += 4093)
        RK_EQ(r[i], (unsigned char)(i * 7 + (i >> 12)));
    mp_future_free(f);
    /* Things a pool of ranks does not have. */
    RK_CHECK(mp_pool_shared_alloc(p, 64) == NULL);
    RK_EQ(mp_pool_worker_pids(p, NULL, 0), 0);
    return 0;
}

/* map of n items (chunksize cs) against the sequential answer. */
static int map_one(mp_pool *p, size_t n, size_t cs, bool with_ctx)
{
    long *in = malloc((n + 1) * sizeof *in), *out = malloc((n + 1) * sizeof *out);
    RK_CHECK(in && out);
    for (size_t i = 0; i < n; i++) {
        in[i] = (long)i - 50;
        out[i] = -1;
    }
    long add = 1000;
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = sq_map;
    s.in = in;
    s.n = n;
    s.in_size = sizeof *in;
    s.out = out;
    s.out_size = sizeof *out;
    s.chunksize = cs;
    if (with_ctx) {
        s.ctx = &add;
        s.ctx_size = sizeof add;
    }
    int rc = mp_pool_map_ex(p, &s);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (out[i] != in[i] * in[i] + (with_ctx ? add : 0)) {
            rc = rk_fail(__FILE__, __LINE__, "map n %zu chunk %zu: out[%zu] = %ld", n, cs, i,
                         out[i]);
            break;
        }
    }
    free(in);
    free(out);
    RK_OK(rc);
    return rc;
}

typedef struct prog {
    _Atomic size_t calls, last, total;
} prog;

static void on_progress(size_t done, size_t total, void *ctx)
{
    prog *g = ctx;
    atomic_fetch_add(&g->calls, 1);
    atomic_store(&g->last, done);
    atomic_store(&g->total, total);
}

/* A map's progress reaches n of n. */
static int progress_checks(mp_pool *p)
{
    enum { N = 3000 };
    static long in[N], out[N];
    prog g;
    atomic_init(&g.calls, 0);
    atomic_init(&g.last, 0);
    atomic_init(&g.total, 0);
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = sq_map;
    s.in = in;
    s.n = N;
    s.in_size = sizeof in[0];
    s.out = out;
    s.out_size = sizeof out[0];
    s.chunksize = 100;
    s.progress = on_progress;
    s.progress_ctx = &g;
    RK_OK(mp_pool_map_ex(p, &s));
    /* The last report runs in the callback thread, maybe just after. */
    for (int i = 0; i < 3000 && atomic_load(&g.last) != N; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    RK_EQ(atomic_load(&g.last), N);
    RK_EQ(atomic_load(&g.total), N);
    RK_CHECK(atomic_load(&g.calls) >= 1);
    return 0;
}

static int map_checks(mp_pool *p, int size)
{
    size_t w = (size_t)size - 1;
    size_t sizes[] = {0, 1, 2, 4 * w - 1, 4 * w, 4 * w + 1, 1000, 10000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        RK_PASS(map_one(p, sizes[k], 0, k % 2));
        RK_PASS(map_one(p, sizes[k], 7, false));
    }
    /* Failed items: their own errors, the others' outputs. */
    enum { N = 100 };
    long in[N], out[N];
    int errs[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = sev_map;
    s.in = in;
    s.n = N;
    s.in_size = sizeof in[0];
    s.out = out;
    s.out_size = sizeof out[0];
    s.chunksize = 9;
    s.errors = errs;
    mp_future *f = mp_pool_map_async_ex(p, &s);
    RK_OK(mp_future_wait(f, 30));
    RK_ERR(mp_future_status(f), MP_ETASK);
    RK_EQ(mp_future_failed_index(f), 0);
    RK_CHECK(mp_future_report(f) && strstr(mp_future_report(f), "item 0 is a multiple of 7"));
    mp_future_free(f);
    for (int i = 0; i < N; i++) {
        RK_EQ(errs[i], i % 7 ? 0 : MP_ETASK);
        if (i % 7)
            RK_EQ(out[i], i + 1);
    }
    /* A range function, and starmap. */
    s = (mp_map_spec)MP_MAP_SPEC_INIT;
    s.range_fn = range_map;
    s.in = in;
    s.n = N;
    s.in_size = sizeof in[0];
    s.out = out;
    s.out_size = sizeof out[0];
    RK_OK(mp_pool_map_ex(p, &s));
    for (int i = 0; i < N; i++)
        RK_EQ(out[i], 3 * i);
    RK_OK(mp_pool_starmap(p, sq_map, in, N, sizeof in[0], out, sizeof out[0], 3));
    for (int i = 0; i < N; i++)
        RK_EQ(out[i], (long)i * i);
    return 0;
}

static int imap_checks(mp_pool *p)
{
    enum { N = 500 };
    long in[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    for (int ordered = 0; ordered < 2; ordered++) {
        mp_imap *it;
        if (ordered)
            RK_OK(mp_pool_imap(p, sq_map, in, N, sizeof in[0], sizeof(long), 16, &it));
        else
            RK_OK(mp_pool_imap_unordered(p, sq_map, in, N, sizeof in[0], sizeof(long), 16, &it));
        bool seen[N] = {false};
        long v;
        size_t idx;
        int k = 0, rc;
        while ((rc = mp_imap_next(it, &v, &idx, 30)) == 0) {
            RK_CHECK(idx < N && !seen[idx]);
            if (ordered)
                RK_EQ(idx, (size_t)k);
            RK_EQ(v, (long)idx * (long)idx);
            seen[idx] = true;
            k++;
        }
        RK_ERR(rc, MP_EOF);
        RK_EQ(k, N);
        mp_imap_free(it);
    }
    /* An iterator freed before its map ends. */
    mp_imap *it;
    RK_OK(mp_pool_imap(p, sq_map, in, N, sizeof in[0], sizeof(long), 1, &it));
    mp_imap_free(it);
    /* Failed items come out as errors, in place. */
    RK_OK(mp_pool_imap(p, sev_map, in, 50, sizeof in[0], sizeof(long), 4, &it));
    for (int i = 0; i < 50; i++) {
        long v;
        size_t idx;
        RK_ERR(mp_imap_next(it, &v, &idx, 30), i % 7 ? 0 : MP_ETASK);
        RK_EQ(idx, (size_t)i);
    }
    RK_ERR(mp_imap_next(it, NULL, NULL, 30), MP_EOF);
    mp_imap_free(it);
    return 0;
}

static int bytes_checks(mp_pool *p)
{
    const char *words[] = {"alpha", "", "gamma delta", "x", "omega"};
    enum { N = 5 };
    mp_bytes in[N];
    for (int i = 0; i < N; i++)
        in[i] = (mp_bytes){words[i], strlen(words[i])};
    mp_results *r;
    RK_OK(mp_pool_map_bytes(p, upper_bytes, in, N, 2, &r));
    RK_EQ(mp_results_count(r), N);
    const char *want[] = {"ALPHA!", "!", "GAMMA DELTA!", "X!", "OMEGA!"};
    for (size_t i = 0; i < N; i++) {
        size_t len;
        const char *d = mp_results_item(r, i, &len);
        RK_EQ(len, strlen(want[i]));
        RK_CHECK(memcmp(d, want[i], len) == 0);
    }
    mp_results_free(r);
    mp_imap_bytes *it;
    RK_OK(mp_pool_imap_bytes_unordered(p, upper_bytes, in, N, 1, &it));
    int k = 0;
    const void *d;
    size_t len, idx;
    while (mp_imap_bytes_next(it, &d, &len, &idx, 30) == 0) {
        RK_EQ(len, strlen(want[idx]));
        k++;
    }
    RK_EQ(k, N);
    mp_imap_bytes_free(it);
    return 0;
}

static int stats_checks(mp_pool *p, int size)
{
    mp_pool_stats st;
    RK_OK(mp_pool_stats_get(p, &st));
    RK_EQ(st.workers_started, (uint64_t)size - 1);
    RK_CHECK(st.tasks_done > 0);
    RK_EQ(st.workers_died, 0);
    RK_EQ(mp_pool_error(p), 0);
    return 0;
}

/* Everything, then close and join: every rank returns. */
static int full_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    int size = mp_comm_size(w);
    mp_pool *p;
    int r = pool_over(w, NULL, &p);
    if (r <= 0)
        return r < 0;
    RK_PASS(apply_checks(p, size));
    RK_PASS(error_checks(p));
    RK_PASS(callback_checks(p));
    RK_PASS(map_checks(p, size));
    RK_PASS(progress_checks(p));
    RK_PASS(imap_checks(p));
    RK_PASS(bytes_checks(p));
    RK_PASS(stats_checks(p, size));
    RK_OK(mp_pool_close(p));
    mp_future *f = mp_pool_apply_async(p, sq_task, NULL, 0);
    RK_ERR(mp_future_status(f), MP_ECLOSED);
    mp_future_free(f);
    RK_OK(mp_pool_join(p, 30));
    mp_pool_free(p);
    return 0;
}

static int run_ranks(int n, mp_rank_fn fn, void *arg)
{
    mp_run_opts o = MP_RUN_OPTS_INIT;
    o.timeout = 50;
    return mp_run_with_opts(n, fn, arg, &o);
}

TEST_TIMEOUT(calls_2, 60)
{
    CHECK_EQ(run_ranks(2, full_rank, NULL), 0);
}

TEST_TIMEOUT(calls_3, 60)
{
    CHECK_EQ(run_ranks(3, full_rank, NULL), 0);
}

TEST_TIMEOUT(calls_4, 60)
{
    CHECK_EQ(run_ranks(4, full_rank, NULL), 0);
}

/* ---- options ---------------------------------------------------------------------- */

/* The initializer runs once on every worker rank with the root's bytes. */
static int init_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    long v = 4242;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.initializer = set_init;
    o.initarg = &v;
    o.initarg_size = sizeof v;
    /* processes 1: rank 2 (if any) is left out and returns at once. */
    o.processes = 1;
    mp_pool *p;
    int r = pool_over(w, &o, &p);
    if (r < 0)
        return 1;
    if (r > 0) {
        RK_EQ(mp_pool_size(p), 1);
        long got = 0;
        RK_OK(mp_pool_apply(p, init_task, NULL, 0, &got, sizeof got, NULL, 30));
        RK_EQ(got, 4242);
        mp_pool_free(p);
    }
    /* An initializer that fails breaks the pool with MP_EINIT. */
    v = -1;
    o.processes = 0;
    r = pool_over(w, &o, &p);
    if (r <= 0)
        return r < 0;
    mp_future *f = mp_pool_apply_async(p, init_task, NULL, 0);
    RK_OK(mp_future_wait(f, 30));
    RK_ERR(mp_future_status(f), MP_EINIT);
    mp_future_free(f);
    RK_ERR(mp_pool_error(p), MP_EINIT);
    RK_CHECK(mp_pool_report(p) && strstr(mp_pool_report(p), "initializer failed on rank"));
    RK_OK(mp_pool_close(p));
    RK_OK(mp_pool_join(p, 30));
    mp_pool_free(p);
    return 0;
}

TEST_TIMEOUT(initializer, 60)
{
    CHECK_EQ(run_ranks(3, init_rank, NULL), 0);
}

/* Bad input: refused on every rank alike, before anything collective. */
static int bad_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.comm = w;
    mp_pool *p = (mp_pool *)&o;
    o.processes = mp_comm_size(w);
    RK_ERR(mp_pool_new(&o, &p), MP_EINVAL);
    RK_CHECK(p == NULL);
    RK_CHECK(strstr(mp_last_error_detail(), "opts.processes") != NULL);
    o.processes = 0;
    o.maxtasksperchild = 3;
    RK_ERR(mp_pool_new(&o, &p), MP_EINVAL);
    o.maxtasksperchild = 0;
    o.initarg_size = 8; /* without initarg */
    RK_ERR(mp_pool_new(&o, &p), MP_EINVAL);
    o.initarg_size = 0;
    o.start_method = MP_START_FORK;
    RK_ERR(mp_pool_new(&o, &p), MP_EINVAL);
    o.start_method = MP_START_DEFAULT;
    RK_ERR(mp_pool_new(&o, NULL), MP_EINVAL);
    return mp_comm_barrier(w, 30);
}

TEST_TIMEOUT(bad_input, 60)
{
    CHECK_EQ(run_ranks(2, bad_rank, NULL), 0);
    /* A world of one: this process is no rank of any launcher. */
    mp_comm *w;
    CHECK_OK(mp_comm_world(&w));
    CHECK_EQ(mp_comm_size(w), 1);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.comm = w;
    mp_pool *p = (mp_pool *)&o;
    CHECK_ERR(mp_pool_new(&o, &p), MP_EINVAL);
    CHECK_NULL(p);
    CHECK_CONTAINS(mp_last_error_detail(), "single rank");
}

/* task_timeout: a task past it fails with MP_ETIMELIMIT at once; its rank
 * runs it to the end meanwhile and takes no other task, the other rank
 * does the rest; then the rank serves again. */
static int timeout_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.task_timeout = 0.2;
    mp_pool *p;
    int r = pool_over(w, &o, &p);
    if (r <= 0)
        return r < 0;
    RK_PASS(wait_ready(p, 2));
    int ms = 1500;
    mp_future *slow = mp_pool_apply_async(p, spin_task, &ms, sizeof ms);
    RK_OK(mp_future_wait(slow, 30));
    RK_ERR(mp_future_status(slow), MP_ETIMELIMIT);
    RK_CHECK(mp_future_report(slow) && strstr(mp_future_report(slow), "task_timeout"));
    mp_future_free(slow);
    /* The other rank answers meanwhile. */
    long v = 6, got = 0;
    RK_OK(mp_pool_apply(p, sq_task, &v, sizeof v, &got, sizeof got, NULL, 30));
    RK_EQ(got, 36);
    /* A map chunk past the limit fails its items alone. */
    long in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
    RK_OK(mp_pool_map(p, sq_map, in, 8, sizeof in[0], out, sizeof out[0], 2));
    RK_EQ(out[7], 64);
    mp_pool_stats st;
    RK_OK(mp_pool_stats_get(p, &st));
    RK_EQ(st.tasks_timed_out, 1);
    RK_OK(mp_pool_close(p));
    RK_OK(mp_pool_join(p, 30)); /* once the slow rank is done too */
    mp_pool_free(p);
    return 0;
}

TEST_TIMEOUT(task_timeout, 60)
{
    CHECK_EQ(run_ranks(3, timeout_rank, NULL), 0);
}

/* ---- ending ------------------------------------------------------------------------ */

/* The root frees the pool with tasks running and queued: they finish or
 * are cancelled, and every rank returns. */
static int free_busy_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    mp_pool *p;
    int r = pool_over(w, NULL, &p);
    if (r <= 0)
        return r < 0;
    enum { N = 30 };
    mp_future *fs[N];
    int ms = 30;
    for (int i = 0; i < N; i++)
        fs[i] = mp_pool_apply_async(p, spin_task, &ms, sizeof ms);
    long in[1000], out[1000];
    for (int i = 0; i < 1000; i++)
        in[i] = i;
    mp_future *mf = mp_pool_map_async(p, sq_map, in, 1000, sizeof in[0], out, sizeof out[0], 1);
    RK_OK(mp_future_wait(fs[0], 30));
    mp_pool_free(p);
    int cancelled = 0;
    for (int i = 0; i < N; i++) {
        RK_CHECK(mp_future_done(fs[i]));
        int st = mp_future_status(fs[i]);
        RK_CHECK(st == 0 || st == MP_ECANCELED);
        cancelled += st == MP_ECANCELED;
        mp_future_free(fs[i]);
    }
    RK_CHECK(cancelled > 0);
    RK_CHECK(mp_future_done(mf));
    RK_ERR(mp_future_status(mf), MP_ECANCELED);
    mp_future_free(mf);
    return 0;
}

/* shutdown(cancel_pending): what no rank started is cancelled, the rest
 * finishes, every rank returns. */
static int shutdown_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    mp_pool *p;
    int r = pool_over(w, NULL, &p);
    if (r <= 0)
        return r < 0;
    enum { N = 40 };
    mp_future *fs[N];
    int ms = 20;
    for (int i = 0; i < N; i++)
        fs[i] = mp_pool_apply_async(p, spin_task, &ms, sizeof ms);
    RK_OK(mp_future_wait(fs[0], 30));
    RK_OK(mp_pool_shutdown(p, true, 30));
    int done = 0, cancelled = 0;
    for (int i = 0; i < N; i++) {
        RK_CHECK(mp_future_done(fs[i]));
        int st = mp_future_status(fs[i]);
        done += st == 0;
        cancelled += st == MP_ECANCELED;
        mp_future_free(fs[i]);
    }
    RK_EQ(done + cancelled, N);
    RK_CHECK(cancelled > 0);
    RK_CHECK(done > 0);
    mp_pool_free(p);
    return 0;
}

TEST_TIMEOUT(shutdown_cancels, 60)
{
    CHECK_EQ(run_ranks(3, shutdown_rank, NULL), 0);
}

TEST_TIMEOUT(free_with_tasks, 60)
{
    CHECK_EQ(run_ranks(3, free_busy_rank, NULL), 0);
}

/* A worker rank dies in a task: that task fails with MP_EWORKER, and so
 * does everything else unfinished (the local engine's world is broken);
 * new work fails; nothing hangs.  The other worker ranks return with an
 * error. */
static int death_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    mp_pool *p;
    int r = pool_over(w, NULL, &p);
    if (r < 0 && rk_me != 0)
        return 7; /* a worker left the pool with an error: expected */
    if (r <= 0)
        return r < 0;
    /* Each task on a rank of its own: both ranks ready first. */
    RK_PASS(wait_ready(p, mp_comm_size(w) - 1));
    int ms = 2000;
    mp_future *slow = mp_pool_apply_async(p, spin_task, &ms, sizeof ms);
    mp_future *dead = mp_pool_apply_async(p, kill_task, NULL, 0);
    RK_OK(mp_future_wait(dead, 30));
    RK_ERR(mp_future_status(dead), MP_EWORKER);
    RK_OK(mp_future_wait(slow, 30));
    RK_ERR(mp_future_status(slow), MP_EWORKER);
    RK_ERR(mp_pool_error(p), MP_EWORKER);
    RK_CHECK(mp_pool_report(p) != NULL);
    mp_future *late = mp_pool_apply_async(p, sq_task, NULL, 0);
    RK_ERR(mp_future_status(late), MP_EWORKER);
    mp_future_free(late);
    mp_future_free(dead);
    mp_future_free(slow);
    mp_pool_stats st;
    RK_OK(mp_pool_stats_get(p, &st));
    RK_EQ(st.workers_died, 1);
    mp_pool_free(p);
    return 0;
}

TEST_TIMEOUT(worker_dies, 60)
{
    mp_run_opts o = MP_RUN_OPTS_INIT;
    o.timeout = 50;
    o.keep_going = true;
    int codes[3] = {-1, -1, -1};
    o.exitcodes = codes;
    CHECK_ERR(mp_run_with_opts(3, death_rank, NULL, &o), MP_EWORKER);
    CHECK_EQ(codes[0], 0);
    /* One worker was killed, the other left with an error. */
    CHECK((codes[1] == -SIGKILL && codes[2] == 7) || (codes[2] == -SIGKILL && codes[1] == 7));
}

/* The root dies with the pool open: the workers do not wait forever. */
static int root_death_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    mp_pool *p;
    int r = pool_over(w, NULL, &p);
    if (r < 0 && rk_me != 0)
        return 7;
    if (r <= 0)
        return r < 0;
    long v = 2, got;
    RK_OK(mp_pool_apply(p, sq_task, &v, sizeof v, &got, sizeof got, NULL, 30));
    raise(SIGKILL);
    return 0;
}

TEST_TIMEOUT(root_dies, 60)
{
    mp_run_opts o = MP_RUN_OPTS_INIT;
    o.timeout = 50;
    o.keep_going = true;
    int codes[3] = {-1, -1, -1};
    o.exitcodes = codes;
    CHECK_ERR(mp_run_with_opts(3, root_death_rank, NULL, &o), MP_EWORKER);
    CHECK_EQ(codes[0], -SIGKILL);
    CHECK_EQ(codes[1], 7);
    CHECK_EQ(codes[2], 7);
}

/* The root returns without freeing the pool: the exit handler stops the
 * workers, which return. */
static int root_exit_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    mp_pool *p;
    int r = pool_over(w, NULL, &p);
    if (r <= 0)
        return r < 0;
    long v = 2, got;
    RK_OK(mp_pool_apply(p, sq_task, &v, sizeof v, &got, sizeof got, NULL, 30));
    exit(0);
}

TEST_TIMEOUT(root_exits, 60)
{
    CHECK_EQ(run_ranks(3, root_exit_rank, NULL), 0);
}

/* ---- under the launchers --------------------------------------------------------------- */

static int ranks_main(const char *suite)
{
    mp_comm *w;
    int rc = mp_comm_world(&w);
    if (rc < 0) {
        fprintf(stderr, "test_rank_pool: no world: %s\n", mp_err_name(rc));
        return 100;
    }
    int st;
    if (strcmp(suite, "pool") == 0) {
        st = full_rank(w, NULL);
        if (st == 0)
            st = init_rank(w, NULL);
    } else if (strcmp(suite, "die") == 0) {
        st = death_rank(w, NULL);
    } else {
        fprintf(stderr, "test_rank_pool: no suite %s\n", suite);
        return 2;
    }
    printf("rank %d of %d (%s): %s %s\n", mp_comm_rank(w), mp_comm_size(w), mp_comm_engine(w),
           suite,
           st == 0   ? "ok"
           : st == 7 ? "stopped serving: a rank died"
                     : "FAILED");
    return st;
}

int main(int argc, char **argv)
{
    /* --ranks SUITE [marker]: the marker only names the job in `ps`. */
    if (argc >= 3 && strcmp(argv[1], "--ranks") == 0)
        return ranks_main(argv[2]);
    return mpt_run(argc, argv);
}
