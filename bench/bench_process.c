/*
 * bench_process.c - start + join of one child process, per start method.
 *
 * Measured as the anchors measure it (py_process.py, limits_fork.c): a
 * child whose target does nothing is started and joined, strictly one
 * after another; the exit code is checked; the figure is microseconds per
 * start+join, median of TRIALS trials after an untimed warm-up.
 *
 *   mproc_process_start_join_us_fork        vs py_process_spawn_join_us_fork,
 *                                              limit_fork_wait_us
 *   mproc_process_start_join_us_spawn       vs py_process_spawn_join_us_spawn,
 *                                              limit_fork_wait_us_posix_spawn
 *   mproc_process_start_join_us_forkserver  vs py_process_spawn_join_us_forkserver
 */
#include "bench_util.h"

#include <mproc.h>

#define TRIALS 5

static int noop(void *arg)
{
    (void)arg;
    return 0;
}

static double run(mp_start_method method, int n)
{
    mp_process_opts o = MP_PROCESS_OPTS_INIT;
    o.start_method = method;
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        mp_process *p;
        int code = -1;
        int rc = mp_process_new_opts(noop, NULL, &o, &p);
        if (rc == 0)
            rc = mp_process_start(p);
        if (rc == 0)
            rc = mp_process_join(p, 60.0);
        if (rc == 0)
            rc = mp_process_exitcode(p, &code);
        if (rc != 0 || code != 0) {
            fprintf(stderr, "bench_process: child failed: %s\n", mp_strerror(rc));
            exit(1);
        }
        mp_process_free(p);
    }
    return (bench_now() - t0) * 1e6 / n;
}

static void bench(const char *name, mp_start_method method, int n, const char *anchors)
{
    double us[TRIALS];
    run(method, 2); /* warm-up; starts the forkserver */
    for (int t = 0; t < TRIALS; t++)
        us[t] = run(method, n);
    bench_report(name, us, TRIALS, "us", anchors);
}

int main(void)
{
    printf("# bench_process: mproc %s, %d CPUs\n", mp_version_string(), mp_cpu_count());
    bench("mproc_process_start_join_us_fork", MP_START_FORK, 2000,
          "py_process_spawn_join_us_fork,limit_fork_wait_us");
    bench("mproc_process_start_join_us_spawn", MP_START_SPAWN, 300,
          "py_process_spawn_join_us_spawn,limit_fork_wait_us_posix_spawn");
    bench("mproc_process_start_join_us_forkserver", MP_START_FORKSERVER, 1000,
          "py_process_spawn_join_us_forkserver");
    return 0;
}
