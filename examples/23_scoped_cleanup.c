/*
 * 23_scoped_cleanup.c - cleanup when a variable leaves its scope, as
 * Python's `with` block does (GCC and Clang).
 *
 * A function that starts a pool, a queue and a helper process, and has
 * three ways to fail half-way, would need the same cleanup code on each of
 * them.  Declared with MP_AUTO_POOL, MP_AUTO_QUEUE, MP_AUTO_PROCESS and
 * MP_AUTO_FUTURE, every way out of the function terminates the pool, stops
 * and reaps the process, closes the queue and frees the futures - in the
 * reverse order of the declarations.  The program runs the function once to
 * the end and once failing half-way, and checks that no worker is left.
 *
 * Python:  with Pool(2) as pool:
 *              futures = [pool.apply_async(cube, (n,)) for n in range(1, 6)]
 *              ...                              # pool.terminate() on the way out
 */
#define _POSIX_C_SOURCE 200809L /* kill */
#include <mproc.h>
#include <signal.h>
#include <stdio.h>

#ifdef MP_HAVE_SCOPE

static int cube(const void *arg, size_t len, mp_buf *out)
{
    (void)len;
    long n = *(const long *)arg;
    long c = n * n * n;
    return mp_buf_append(out, &c, sizeof c);
}

/* The helper process: sums what arrives on the queue until it closes. */
static int summer(void *arg)
{
    mp_queue *q = arg;
    long sum = 0, x;
    size_t len;
    while (mp_queue_get(q, &x, sizeof x, &len, 10.0) == 0)
        sum += x;
    printf("  summer: the queue closed; the cubes add up to %ld\n", sum);
    return 0;
}

/* Cubes 1..5 on a pool and sends them to the summer.  With fail_after,
 * gives up after that many cubes, without a line of cleanup code.
 * Stores the pool's workers in workers[2]. */
static int cubes_to_summer(int fail_after, pid_t workers[2])
{
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    MP_AUTO_POOL pool = NULL;
    int rc = mp_pool_new(&o, &pool);
    if (rc < 0)
        return rc;
    MP_AUTO_QUEUE q = NULL;
    if ((rc = mp_queue_new(4096, &q)) < 0)
        return rc;
    MP_AUTO_PROCESS helper = NULL;
    if ((rc = mp_process_new(summer, q, "summer", &helper)) < 0 ||
        (rc = mp_process_start(helper)) < 0)
        return rc;
    for (long n = 1; n <= 5; n++) {
        MP_AUTO_FUTURE f = mp_pool_apply_async(pool, cube, &n, sizeof n);
        long c;
        if ((rc = mp_future_get(f, &c, sizeof c, NULL, 10.0)) < 0)
            return rc;
        printf("  %ld cubed is %ld\n", n, c);
        if ((rc = mp_queue_put(q, &c, sizeof c, 10.0)) < 0)
            return rc;
        if (n == 1 && mp_pool_worker_pids(pool, workers, 2) < 1)
            return MP_ESTATE;
        if (n == fail_after) {
            printf("  giving up after %ld cubes\n", n);
            return MP_ECANCELED; /* f, then helper, q and pool are cleaned up */
        }
    }
    return 0; /* the same cleanups: the queue closes, so the summer ends */
}

static bool gone(const pid_t workers[2])
{
    for (int i = 0; i < 2; i++)
        if (workers[i] > 0 && kill(workers[i], 0) == 0)
            return false;
    return true;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines in the order they happen */
    pid_t workers[2] = {0, 0};
    printf("to the end:\n");
    int rc = cubes_to_summer(0, workers);
    printf("  -> %s; workers gone: %s\n", mp_err_name(rc), gone(workers) ? "yes" : "NO");
    bool ok = rc == 0 && gone(workers);

    printf("failing half-way:\n");
    workers[0] = workers[1] = 0;
    rc = cubes_to_summer(3, workers);
    printf("  -> %s; workers gone: %s\n", mp_err_name(rc), gone(workers) ? "yes" : "NO");
    ok &= rc == MP_ECANCELED && gone(workers);
    return ok ? 0 : 1;
}

#else /* a compiler without the cleanup attribute */

int main(void)
{
    printf("scoped cleanup needs GCC or Clang\n");
    return 0;
}

#endif
