/*
 * shared_barrier.c - processes that share a counter and an array and meet
 * at a barrier.
 *
 * Four processes smooth one shared array of doubles together, step after
 * step: each computes its quarter of the next array from the current one
 * (each point becomes the mean of itself and its two neighbours), and no
 * process starts a step before all have finished the previous one - a
 * barrier between steps, since a process reads its neighbours' points.
 * Each process also counts its steps in a shared counter (atomic adds,
 * no lock).  The parent checks the result, bit for bit, against the same
 * computation done alone, and the counter against 4 x the steps.
 *
 * Python twin: examples/python/shared_barrier.py (Array('d'), Value('q'),
 * Barrier).
 */
#define _POSIX_C_SOURCE 200809L
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROCS  4
#define POINTS 20000
#define STEPS  200

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct shared {
    mp_array *buf[2]; /* the current array and the next, swapped each step */
    mp_value *steps;  /* steps done, by all processes together */
    mp_barrier *barrier;
} shared;

typedef struct part {
    shared *sh;
    size_t lo, hi; /* this process's points */
} part;

/* One step on points [lo, hi): the ends of the array stay fixed. */
static void smooth(const double *cur, double *next, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++)
        next[i] = i == 0 || i == POINTS - 1 ? cur[i] : (cur[i - 1] + cur[i] + cur[i + 1]) / 3.0;
}

static int worker(void *arg)
{
    part *pt = arg;
    for (int s = 0; s < STEPS; s++) {
        const double *cur = mp_array_ptr(pt->sh->buf[s % 2]);
        double *next = mp_array_ptr(pt->sh->buf[(s + 1) % 2]);
        smooth(cur, next, pt->lo, pt->hi);
        mp_value_fetch_add(pt->sh->steps, 1, NULL);
        /* Nobody reads step s + 1's input before everyone wrote it. */
        if (mp_barrier_wait(pt->sh->barrier, 30.0) < 0)
            return 1;
    }
    return 0;
}

static void initial(double *a)
{
    for (size_t i = 0; i < POINTS; i++)
        a[i] = (double)((i * 7919) % 1000); /* something rough to smooth */
}

int main(void)
{
    shared sh;
    if (mp_array_new(MP_TYPE_d, POINTS, NULL, false, &sh.buf[0]) < 0 ||
        mp_array_new(MP_TYPE_d, POINTS, NULL, false, &sh.buf[1]) < 0 ||
        mp_value_new(MP_TYPE_q, NULL, false, &sh.steps) < 0 ||
        mp_barrier_new(PROCS, &sh.barrier) < 0)
        return 1;
    initial(mp_array_ptr(sh.buf[0]));

    double t0 = now();
    part parts[PROCS];
    mp_process *ps[PROCS];
    for (int i = 0; i < PROCS; i++) {
        parts[i] = (part){&sh, (size_t)i * POINTS / PROCS, (size_t)(i + 1) * POINTS / PROCS};
        if (mp_process_new(worker, &parts[i], NULL, &ps[i]) < 0 || mp_process_start(ps[i]) < 0)
            return 1;
    }
    int bad = 0;
    for (int i = 0; i < PROCS; i++) {
        int code = -1;
        if (mp_process_join(ps[i], 60.0) < 0 || mp_process_exitcode(ps[i], &code) < 0 || code)
            bad++;
        mp_process_free(ps[i]);
    }
    double elapsed = now() - t0;

    /* The same computation, alone. */
    double *a = malloc(POINTS * sizeof *a), *b = malloc(POINTS * sizeof *b);
    if (!a || !b)
        return 1;
    initial(a);
    for (int s = 0; s < STEPS; s++) {
        smooth(a, b, 0, POINTS);
        double *t = a;
        a = b;
        b = t;
    }
    const double *got = mp_array_ptr(sh.buf[STEPS % 2]);
    bool same = memcmp(got, a, POINTS * sizeof *a) == 0;
    int64_t steps = 0;
    mp_value_get_i64(sh.steps, &steps);
    printf("%d processes, %d steps over %d shared points, a barrier between steps\n", PROCS, STEPS,
           POINTS);
    printf("point %d: %.6f; the result %s the single-process one\n", POINTS / 2, got[POINTS / 2],
           same ? "is bit for bit" : "DIFFERS from");
    printf("shared step counter: %lld (want %d)\n", (long long)steps, PROCS * STEPS);
    printf("time: %.3f s\n", elapsed);
    free(a);
    free(b);
    mp_array_free(sh.buf[0]);
    mp_array_free(sh.buf[1]);
    mp_value_free(sh.steps);
    mp_barrier_free(sh.barrier);
    return bad == 0 && same && steps == PROCS * STEPS ? 0 : 1;
}
