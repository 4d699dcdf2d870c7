/*
 * 07_queue_cube_add.c - the cubes of 1..10, then +1 each, through queues.
 *
 * The seeds' queue example: one process computes the cubes of the first ten
 * natural numbers and puts them on a queue; a second takes them off, adds
 * 1, and puts the results on another queue, which the main process reads.
 * Each stage closes its output queue when it is done: the next stage drains
 * what is left and then gets MP_EOF, so no "None" sentinel is needed.  put
 * returns once the message is in the queue (there is no feeder thread), so
 * joining a producer before draining its queue cannot deadlock.
 *
 * Python:  q = Queue(); Process(target=cube, args=(q,)).start()
 *          ... q.put(x ** 3) ... q.get() + 1 ...
 */
#include <mproc.h>
#include <stdio.h>

struct stage {
    mp_queue *in, *out;
};

static int cube(void *arg)
{
    struct stage *st = arg;
    for (int x = 1; x <= 10; x++) {
        int c = x * x * x;
        int rc = mp_queue_put(st->out, &c, sizeof c, 10.0);
        if (rc < 0)
            return rc;
    }
    return mp_queue_close(st->out); /* no more: the reader drains, then sees the end */
}

static int add_one(void *arg)
{
    struct stage *st = arg;
    for (;;) {
        int v;
        size_t len;
        int rc = mp_queue_get(st->in, &v, sizeof v, &len, 10.0);
        if (rc == MP_EOF)
            break;
        if (rc < 0)
            return rc;
        v += 1;
        if ((rc = mp_queue_put(st->out, &v, sizeof v, 10.0)) < 0)
            return rc;
    }
    return mp_queue_close(st->out);
}

/* Whether p ends within timeout seconds with exit code 0. */
static bool ended_cleanly(mp_process *p, double timeout)
{
    int code = -1;
    return mp_process_join(p, timeout) == 0 && mp_process_exitcode(p, &code) == 0 && code == 0;
}

int main(void)
{
    mp_queue *cubes, *results;
    int rc = mp_queue_new(4096, &cubes);
    if (rc == 0)
        rc = mp_queue_new(4096, &results);
    if (rc < 0) {
        fprintf(stderr, "mp_queue_new: %s\n", mp_strerror(rc));
        return 1;
    }
    struct stage s1 = {NULL, cubes}, s2 = {cubes, results};
    mp_process *p1, *p2;
    if (mp_process_new(cube, &s1, "cube", &p1) < 0 ||
        mp_process_new(add_one, &s2, "add-one", &p2) < 0 || mp_process_start(p1) < 0 ||
        mp_process_start(p2) < 0) {
        fprintf(stderr, "could not start the processes\n");
        return 1;
    }
    /* Joining the producer first is safe: its messages are in the queue. */
    int ok = ended_cleanly(p1, 30.0);
    int x = 1;
    for (;; x++) {
        int v;
        size_t len;
        rc = mp_queue_get(results, &v, sizeof v, &len, 10.0);
        if (rc == MP_EOF)
            break;
        if (rc < 0) {
            fprintf(stderr, "get: %s\n", mp_strerror(rc));
            ok = 0;
            break;
        }
        int want = x * x * x + 1;
        printf("  %2d^3 + 1 = %4d%s\n", x, v, v == want ? "" : "   WRONG");
        ok &= v == want;
    }
    ok &= x == 11;
    ok &= ended_cleanly(p2, 30.0);
    printf("%s\n", ok ? "10 results, all correct, in order" : "SOME RESULTS ARE WRONG OR MISSING");
    mp_process_free(p1);
    mp_process_free(p2);
    mp_queue_free(cubes);
    mp_queue_free(results);
    return ok ? 0 : 1;
}
