/*
 * queue_pipeline.c - a 3-stage pipeline of processes joined by queues,
 * stopped by Ctrl-C.
 *
 * A reader makes numbers, a squarer squares them, a writer adds them up;
 * two queues join the three processes.  The program stops the way a
 * Python program does on Ctrl-C: its SIGINT handler only notes the signal,
 * the main loop then sets a shutdown event, the reader stops and closes its
 * queue, and each stage drains what is left, closes its own output and
 * ends (a closed queue is the END sentinel: a get returns MP_EOF once it is
 * empty).  Nothing in flight is lost: the writer's count and sum are
 * checked against what the reader made.  The stages ignore SIGINT, as a
 * real Ctrl-C reaches the whole process group; for the demo the program
 * sends itself SIGINT once 100000 numbers went through.
 *
 * Python twin: examples/python/queue_pipeline.py (Process, Queue, Event,
 * and KeyboardInterrupt in the main process).
 */
#define _POSIX_C_SOURCE 200809L
#include <mproc.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define ENOUGH 100000 /* numbers through the pipeline before the "Ctrl-C" */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What the stages share: created before they start, so forked children
 * have it all. */
typedef struct pipeline {
    mp_queue *numbers, *squares;
    mp_event *shutdown; /* set by the main process on SIGINT */
    mp_value *made;     /* how many numbers the reader made */
    mp_value *through;  /* how many the writer has taken, updated as it goes */
    mp_value *count;    /* the writer's totals, at its end */
    mp_value *sum;
} pipeline;

static int reader(void *arg)
{
    pipeline *pl = arg;
    signal(SIGINT, SIG_IGN);
    long long n = 0;
    while (!mp_event_is_set(pl->shutdown)) {
        long long x = n + 1;
        if (mp_queue_put(pl->numbers, &x, sizeof x, 10.0) < 0)
            break;
        n = x;
    }
    mp_value_set_i64(pl->made, n);
    mp_queue_close(pl->numbers); /* the END for the next stage */
    return 0;
}

static int squarer(void *arg)
{
    pipeline *pl = arg;
    signal(SIGINT, SIG_IGN);
    long long x;
    size_t len;
    int rc;
    while ((rc = mp_queue_get(pl->numbers, &x, sizeof x, &len, 10.0)) == 0) {
        long long y = x * x;
        if ((rc = mp_queue_put(pl->squares, &y, sizeof y, 10.0)) < 0)
            break;
    }
    mp_queue_close(pl->squares);
    return rc == MP_EOF ? 0 : 1;
}

static int writer(void *arg)
{
    pipeline *pl = arg;
    signal(SIGINT, SIG_IGN);
    long long y, count = 0, sum = 0;
    size_t len;
    int rc;
    while ((rc = mp_queue_get(pl->squares, &y, sizeof y, &len, 10.0)) == 0) {
        sum += y;
        if (++count % 1024 == 0)
            mp_value_set_i64(pl->through, count);
    }
    mp_value_set_i64(pl->count, count);
    mp_value_set_i64(pl->sum, sum);
    return rc == MP_EOF ? 0 : 1;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int signo)
{
    (void)signo;
    interrupted = 1; /* only this: the main loop does the rest */
}

static int make_pipeline(pipeline *pl)
{
    int rc = 0;
    if (rc == 0)
        rc = mp_queue_new(1 << 16, &pl->numbers);
    if (rc == 0)
        rc = mp_queue_new(1 << 16, &pl->squares);
    if (rc == 0)
        rc = mp_event_new(&pl->shutdown);
    mp_value **vs[] = {&pl->made, &pl->through, &pl->count, &pl->sum};
    for (size_t i = 0; rc == 0 && i < sizeof vs / sizeof vs[0]; i++)
        rc = mp_value_new(MP_TYPE_q, NULL, false, vs[i]);
    return rc;
}

static long long get(mp_value *v)
{
    int64_t x = -1;
    mp_value_get_i64(v, &x);
    return x;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    pipeline pl = {0};
    if (make_pipeline(&pl) < 0)
        return 1;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    double t0 = now();
    mp_target_fn stages[] = {reader, squarer, writer};
    const char *names[] = {"reader", "squarer", "writer"};
    mp_process *ps[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++)
        if (mp_process_new(stages[i], &pl, names[i], &ps[i]) < 0 || mp_process_start(ps[i]) < 0)
            return 1;
    printf("3 stages running: reader -> squarer -> writer\n");

    /* The main loop: wait for a Ctrl-C - sent here by the program itself
     * once enough went through. */
    bool sent = false;
    while (!interrupted) {
        if (!sent && get(pl.through) >= ENOUGH) {
            printf("%lld numbers through: sending SIGINT to myself\n", get(pl.through));
            kill(getpid(), SIGINT);
            sent = true;
        }
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    }
    printf("SIGINT: shutting down\n");
    mp_event_set(pl.shutdown);

    int bad = 0;
    for (int i = 0; i < 3; i++) {
        int code = -1;
        if (mp_process_join(ps[i], 30.0) < 0 || mp_process_exitcode(ps[i], &code) < 0 || code)
            bad++;
        printf("  %s ended with %d\n", names[i], code);
        mp_process_free(ps[i]);
    }
    double elapsed = now() - t0;
    long long made = get(pl.made), count = get(pl.count), sum = get(pl.sum);
    /* 1^2 + ... + n^2 = n (n + 1) (2n + 1) / 6, well within 64 bits here */
    long long want = made * (made + 1) * (2 * made + 1) / 6;
    printf("reader made %lld, writer took %lld with sum %lld (%s)\n", made, count, sum,
           count == made && sum == want ? "nothing lost" : "LOST SOME");
    printf("%.0f numbers/s through 3 processes\n", (double)count / elapsed);
    printf("time: %.3f s\n", elapsed);
    return bad == 0 && made >= ENOUGH && count == made && sum == want ? 0 : 1;
}
