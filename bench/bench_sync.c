/*
 * bench_sync.c - shared values, locks and events between processes.
 *
 * Measured as the anchors measure (../shared/anchors: py_value.py,
 * limits_ipc.c): fixed workloads, TRIALS trials after an untimed warm-up,
 * the median reported; processes are started before the clock and wait on
 * a barrier.
 *
 *   mproc_value_locked_incr_per_s   Value('i') with its lock; 2 processes
 *                                   each do 100000 times, as py_value.py's
 *                                   "with v.get_lock(): v.value += 1":
 *                                   acquire, get, set (the accessors take
 *                                   the RLock again, as Python's do),
 *                                   release.  Total / time from the
 *                                   barrier's release to both done.
 *                                   vs py_value_locked_incr_per_s
 *   mproc_value_fetch_add_per_s     the same job lock-free: 2 processes each
 *                                   1000000 mp_value_fetch_add(v, 1) on a
 *                                   raw 'q' value.  vs the same anchor
 *   mproc_lock_uncontended_ns       acquire + release of a free Lock, one
 *                                   process (no anchor)
 *   mproc_event_wake_us             two events ping-ponged between two
 *                                   processes, 20000 round trips; half a
 *                                   round trip = one cross-process wake-up,
 *                                   with the default brief spin
 *   mproc_event_wake_us_nospin      the same with spinning off, so every
 *                                   wake-up goes through the kernel like
 *                                   the anchors'
 *                                   vs limit_futex_wake_us,
 *                                      limit_eventfd_pingpong_us
 *
 * The anchors run minutes before or after, and this machine's wake-up
 * latency moves by several times with its load; so the event figures are
 * followed by a "# " line with the raw futex ping-pong of limits_ipc.c,
 * measured the same way in this run, for a ratio under equal conditions.
 */
#include "bench_util.h"

#include <mproc.h>

#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TRIALS 5

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_sync: %s: %s\n", what, mp_strerror(rc));
    exit(1);
}

/* Dies unless a constructor returned 0. */
static void made(const char *what, int rc)
{
    if (rc < 0)
        die(what, rc);
}

static mp_process *start(mp_target_fn fn, void *arg)
{
    mp_process *p;
    int rc = mp_process_new(fn, arg, NULL, &p);
    if (rc == 0)
        rc = mp_process_start(p);
    if (rc < 0)
        die("start", rc);
    return p;
}

static void finish(mp_process *p)
{
    int code = -1;
    int rc = mp_process_join(p, 120.0);
    if (rc == 0)
        rc = mp_process_exitcode(p, &code);
    if (rc < 0 || code != 0)
        die("worker", rc < 0 ? rc : MP_EWORKER);
    mp_process_free(p);
}

/* ---- increments --------------------------------------------------------- */

typedef struct incr_job {
    mp_value *v;
    mp_barrier *start;
    mp_sem *done;
    int n;
    bool locked;
} incr_job;

static int incr_worker(void *arg)
{
    incr_job *j = arg;
    mp_lock *l = mp_value_get_lock(j->v);
    if (mp_barrier_wait(j->start, 60.0) < 0)
        return 1;
    if (j->locked) {
        for (int i = 0; i < j->n; i++) {
            int64_t x;
            mp_lock_acquire(l, MP_FOREVER);
            mp_value_get_i64(j->v, &x);
            mp_value_set_i64(j->v, x + 1);
            mp_lock_release(l);
        }
    } else {
        for (int i = 0; i < j->n; i++)
            mp_value_fetch_add(j->v, 1, NULL);
    }
    mp_sem_release(j->done);
    return 0;
}

/* One trial: increments per second by 2 processes. */
static double incr_trial(bool locked, int n)
{
    enum { WORKERS = 2 };
    incr_job j = {.n = n, .locked = locked};
    made("mp_value_new", mp_value_new(locked ? MP_TYPE_i : MP_TYPE_q, NULL, locked, &j.v));
    made("mp_barrier_new", mp_barrier_new(WORKERS + 1, &j.start));
    made("mp_sem_new", mp_sem_new(0, &j.done));
    mp_process *ps[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        ps[i] = start(incr_worker, &j);
    if (mp_barrier_wait(j.start, 60.0) < 0)
        die("barrier", MP_EBROKEN);
    double t0 = bench_now();
    for (int i = 0; i < WORKERS; i++)
        mp_sem_acquire(j.done, MP_FOREVER);
    double dt = bench_now() - t0;
    for (int i = 0; i < WORKERS; i++)
        finish(ps[i]);
    int64_t total = 0;
    mp_value_get_i64(j.v, &total);
    if (total != (int64_t)WORKERS * n) {
        fprintf(stderr, "bench_sync: counter is %lld, expected %lld\n", (long long)total,
                (long long)WORKERS * n);
        exit(1);
    }
    mp_value_free(j.v);
    mp_barrier_free(j.start);
    mp_sem_free(j.done);
    return WORKERS * (double)n / dt;
}

static void bench_incr(const char *name, bool locked, int n, const char *anchors)
{
    double v[TRIALS];
    incr_trial(locked, n); /* warm-up */
    for (int t = 0; t < TRIALS; t++)
        v[t] = incr_trial(locked, n);
    bench_report(name, v, TRIALS, "incr/s", anchors);
}

/* ---- uncontended lock --------------------------------------------------------- */

static void bench_uncontended(void)
{
    enum { N = 5000000 };
    mp_lock *l;
    made("mp_lock_new", mp_lock_new(&l));
    double ns[TRIALS];
    for (int t = -1; t < TRIALS; t++) {
        double t0 = bench_now();
        for (int i = 0; i < N; i++) {
            mp_lock_acquire(l, MP_FOREVER);
            mp_lock_release(l);
        }
        double dt = bench_now() - t0;
        if (t >= 0)
            ns[t] = dt * 1e9 / N;
    }
    mp_lock_free(l);
    bench_report("mproc_lock_uncontended_ns", ns, TRIALS, "ns", "-");
}

/* ---- event ping-pong ------------------------------------------------------------- */

#define PP_ROUNDS 20000

typedef struct pingpong {
    mp_event *ping, *pong;
    int rounds;
    bool nospin;
} pingpong;

static int ponger(void *arg)
{
    pingpong *pp = arg;
    if (pp->nospin)
        mp_sync_set_spin(0);
    for (int i = 0; i < pp->rounds; i++) {
        if (mp_event_wait(pp->ping, 60.0) != 0)
            return 1;
        mp_event_clear(pp->ping);
        mp_event_set(pp->pong);
    }
    return 0;
}

static void bench_events(const char *name, bool nospin)
{
    pingpong pp = {.rounds = PP_ROUNDS * (TRIALS + 1), .nospin = nospin};
    made("mp_event_new", mp_event_new(&pp.ping));
    made("mp_event_new", mp_event_new(&pp.pong));
    int old = mp_sync_set_spin(nospin ? 0 : -1);
    mp_process *p = start(ponger, &pp);
    double us[TRIALS];
    for (int t = -1; t < TRIALS; t++) {
        double t0 = bench_now();
        for (int i = 0; i < PP_ROUNDS; i++) {
            mp_event_set(pp.ping);
            if (mp_event_wait(pp.pong, 60.0) != 0)
                die("ping-pong", MP_ETIMEDOUT);
            mp_event_clear(pp.pong);
        }
        double dt = bench_now() - t0;
        if (t >= 0)
            us[t] = dt * 1e6 / (2.0 * PP_ROUNDS);
    }
    finish(p);
    mp_sync_set_spin(old);
    mp_event_free(pp.ping);
    mp_event_free(pp.pong);
    bench_report(name, us, TRIALS, "us", "limit_futex_wake_us,limit_eventfd_pingpong_us");
}

/* ---- the raw futex reference (limits_ipc.c's futex_pingpong) ----------- */

static long futex_op(_Atomic uint32_t *word, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)word, op, val, NULL, NULL, 0);
}

typedef struct raw_pp {
    _Atomic uint32_t seq;
    uint32_t total;
} raw_pp;

static int raw_ponger(void *arg)
{
    raw_pp *r = arg;
    for (uint32_t g = 0; g < r->total; g++) {
        uint32_t idle = 2 * g;
        while (atomic_load_explicit(&r->seq, memory_order_acquire) == idle)
            futex_op(&r->seq, FUTEX_WAIT, idle);
        atomic_store_explicit(&r->seq, 2 * g + 2, memory_order_release);
        futex_op(&r->seq, FUTEX_WAKE, 1);
    }
    return 0;
}

static double raw_futex_us(void)
{
    raw_pp *r = mp_arena_alloc(NULL, sizeof *r);
    if (!r)
        die("allocate", MP_ENOMEM);
    r->total = PP_ROUNDS * (TRIALS + 1);
    mp_process *p = start(raw_ponger, r);
    double us[TRIALS];
    uint32_t g = 0;
    for (int t = -1; t < TRIALS; t++) {
        double t0 = bench_now();
        for (int i = 0; i < PP_ROUNDS; i++, g++) {
            uint32_t mine = 2 * g + 1;
            atomic_store_explicit(&r->seq, mine, memory_order_release);
            futex_op(&r->seq, FUTEX_WAKE, 1);
            while (atomic_load_explicit(&r->seq, memory_order_acquire) == mine)
                futex_op(&r->seq, FUTEX_WAIT, mine);
        }
        if (t >= 0)
            us[t] = (bench_now() - t0) * 1e6 / (2.0 * PP_ROUNDS);
    }
    finish(p);
    mp_arena_dealloc(NULL, r);
    return bench_median(us, TRIALS);
}

int main(void)
{
    printf("# bench_sync: mproc %s, %d CPUs\n", mp_version_string(), mp_cpu_count());
    if (!mp_arena_default())
        die("arena", MP_ENOMEM);
    bench_incr("mproc_value_locked_incr_per_s", true, 100000, "py_value_locked_incr_per_s");
    bench_incr("mproc_value_fetch_add_per_s", false, 1000000, "py_value_locked_incr_per_s");
    bench_uncontended();
    bench_events("mproc_event_wake_us", false);
    bench_events("mproc_event_wake_us_nospin", true);
    printf("# raw futex ping-pong in this run (limit_futex_wake_us's method): %.4g us\n",
           raw_futex_us());
    return 0;
}
