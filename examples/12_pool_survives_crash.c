/*
 * 12_pool_survives_crash.c - tasks that segfault or hang, and a pool that
 * finishes all the others.
 *
 * Python's Pool hangs forever when a worker dies in the middle of a task
 * (cpython #96062), and ProcessPoolExecutor breaks the whole pool
 * (BrokenProcessPool).  Here a dead worker fails its task alone: the
 * future reports MP_EWORKER with the signal and a crash report naming the
 * function, the worker is replaced, and every other task completes.  A
 * task that runs past the pool's time limit has its worker killed and
 * fails with MP_ETIMELIMIT.  In a map, only the item being run fails.
 *
 * Python:  with Pool(2) as pool:
 *              pool.map(parse, records)   # one record segfaults: hangs forever
 */
#include <mproc.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct record {
    int id;
    int kind; /* 0: fine, 1: a NULL field, 2: a loop that never ends */
} record;

static volatile uintptr_t null_field = 0;

/* A parser that trusts its input a little too much. */
__attribute__((noinline, no_sanitize("undefined"))) static long parse(const record *r)
{
    if (r->kind == 1)
        return *(volatile long *)null_field;
    volatile int spin = r->kind == 2;
    while (spin) {
    }
    return r->id * 100L;
}

static int parse_task(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    long v = parse(arg);
    return mp_buf_append(out, &v, sizeof v);
}

static int parse_item(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    *(long *)out = parse(in);
    return 0;
}

int main(void)
{
    /* The pool logs crash reports as they happen; this example prints them
     * itself. */
    mp_log_set_level(MP_LOG_OFF);
    mp_pool_opts opts = MP_POOL_OPTS_INIT;
    opts.processes = 2;
    opts.task_timeout = 1.0;
    mp_pool *pool = NULL;
    int err = mp_pool_new(&opts, &pool);
    if (err < 0) {
        fprintf(stderr, "mp_pool_new: %s\n", mp_strerror(err));
        return 1;
    }

    enum { N = 10 };
    record recs[N];
    for (int i = 0; i < N; i++)
        recs[i] = (record){i, i == 3 ? 1 : i == 7 ? 2 : 0};
    mp_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = mp_pool_apply_async(pool, parse_task, &recs[i], sizeof recs[i]);

    int succeeded = 0, crashed = 0, timed_out = 0;
    for (int i = 0; i < N; i++) {
        long v = 0;
        int rc = mp_future_get(fs[i], &v, sizeof v, NULL, 30.0);
        if (rc == 0) {
            printf("record %d: %ld\n", i, v);
            succeeded += v == i * 100L;
        } else {
            printf("record %d: %s, exit code %d\n  %s\n", i, mp_err_name(rc),
                   mp_future_exitcode(fs[i]), mp_future_report(fs[i]));
            crashed += rc == MP_EWORKER && strstr(mp_future_report(fs[i]), "parse") != NULL;
            timed_out += rc == MP_ETIMELIMIT;
        }
        mp_future_free(fs[i]);
    }

    /* The same records through map: the crashing and the hanging items
     * fail, the items around them in their chunk do not. */
    long out[N];
    int errors[N];
    mp_map_spec s = MP_MAP_SPEC_INIT;
    s.fn = parse_item;
    s.in = recs;
    s.n = N;
    s.in_size = sizeof recs[0];
    s.out = out;
    s.out_size = sizeof out[0];
    s.errors = errors;
    s.chunksize = 5;
    int rc = mp_pool_map_ex(pool, &s);
    int map_ok = rc == MP_EWORKER;
    printf("map -> %s (the first failed item's error); per item:", mp_err_name(rc));
    for (int i = 0; i < N; i++) {
        printf(" %s", errors[i] ? mp_err_name(errors[i]) : "ok");
        map_ok &= errors[i] == (i == 3 ? MP_EWORKER : i == 7 ? MP_ETIMELIMIT : 0);
        map_ok &= errors[i] || out[i] == i * 100L;
    }
    printf("\n");

    mp_pool_stats st;
    mp_pool_stats_get(pool, &st);
    printf("workers started %llu, died %llu; tasks timed out %llu\n",
           (unsigned long long)st.workers_started, (unsigned long long)st.workers_died,
           (unsigned long long)st.tasks_timed_out);
    mp_pool_free(pool);
    int ok = succeeded == N - 2 && crashed == 1 && timed_out == 1 && map_ok;
    printf("%d tasks succeeded, 1 crash and 1 hang reported: %s\n", succeeded,
           ok ? "as expected" : "UNEXPECTED");
    return ok ? 0 : 1;
}
