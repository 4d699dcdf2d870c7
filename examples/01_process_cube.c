/*
 * 01_process_cube.c - cubes of numbers, each computed in a child process.
 *
 * The seeds' first example ("multiprocessing cube"): start one process per
 * number, let each compute a cube, join them all.  A process's target
 * returns an int that becomes its exit code, so the small cubes come back
 * that way; for real results see the shared-memory and queue examples.
 *
 * Python:  p = Process(target=cube, args=(i,)); p.start(); p.join()
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>

static int cube(void *arg)
{
    int x = *(int *)arg;
    printf("  %s computes %d^3 = %d\n", mp_process_current_name(), x, x * x * x);
    return x * x * x; /* exit codes carry 0..255: 1, 8, 27, 64, 125, 216 */
}

int main(void)
{
    enum { N = 6 };
    int numbers[N];
    mp_process *procs[N];

    printf("mproc %s on %d CPUs (%d physical cores)\n", mp_version_string(), mp_cpu_count(),
           mp_physical_cores());
    for (int i = 0; i < N; i++) {
        numbers[i] = i + 1;
        int rc = mp_process_new(cube, &numbers[i], NULL, &procs[i]);
        if (rc == 0)
            rc = mp_process_start(procs[i]);
        if (rc < 0) {
            fprintf(stderr, "start: %s\n", mp_strerror(rc));
            return 1;
        }
    }
    int ok = 1;
    for (int i = 0; i < N; i++) {
        /* The exit code comes back through a pointer and the return value
         * says only whether the call worked, so a child killed by a signal
         * (code -SIGNUM) is never mistaken for a failed call. */
        int code = -1;
        int rc = mp_process_join(procs[i], 10.0);
        if (rc == 0)
            rc = mp_process_exitcode(procs[i], &code);
        printf("%s (pid %d): joined %s, exit code %d\n", mp_process_name(procs[i]),
               (int)mp_process_pid(procs[i]), rc == 0 ? "ok" : mp_err_name(rc), code);
        ok &= rc == 0 && code == numbers[i] * numbers[i] * numbers[i];
        mp_process_free(procs[i]);
    }
    printf("%s\n", ok ? "all cubes came back" : "SOME CUBES ARE WRONG");
    return ok ? 0 : 1;
}
