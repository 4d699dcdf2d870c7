/*
 * 08_producer_consumer.c - one producer, three consumers, a queue between.
 *
 * The seeds' producer-consumer example (7_adv_prod_consumer.py): the
 * producer puts "item_0" .. "item_9", then one END message per consumer;
 * each consumer processes items until it gets an END.  The work queue is
 * joinable: consumers call task_done() for each item and the main process
 * waits in join() until every item has been dealt with.  Consumers report
 * what they processed on a second queue; the main process checks that each
 * item was processed exactly once.
 *
 * Python:  q = JoinableQueue(); ... item = q.get(); ...; q.task_done()
 */
#define _POSIX_C_SOURCE 200809L
#include <mproc.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { ITEMS = 10, CONSUMERS = 3 };

struct queues {
    mp_queue *work, *done;
};

static int producer(void *arg)
{
    struct queues *qs = arg;
    for (int i = 0; i < ITEMS; i++) {
        char item[32];
        int n = snprintf(item, sizeof item, "item_%d", i);
        int rc = mp_queue_put(qs->work, item, (size_t)n, 10.0);
        if (rc < 0)
            return rc;
    }
    for (int c = 0; c < CONSUMERS; c++) {
        int rc = mp_queue_put(qs->work, "END", 3, 10.0);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int consumer(void *arg)
{
    struct queues *qs = arg;
    for (;;) {
        char item[32];
        size_t len;
        int rc = mp_queue_get(qs->work, item, sizeof item - 1, &len, 10.0);
        if (rc < 0)
            return rc;
        item[len] = '\0';
        if (strcmp(item, "END") == 0) {
            mp_queue_task_done(qs->work);
            return 0;
        }
        printf("  %s processing: %s\n", mp_process_current_name(), item);
        fflush(stdout);
        struct timespec work = {0, 20000000}; /* the work itself (the seed sleeps 0.2 s) */
        nanosleep(&work, NULL);
        if ((rc = mp_queue_put(qs->done, item, len, 10.0)) < 0)
            return rc;
        mp_queue_task_done(qs->work);
    }
}

/* Whether p ends within timeout seconds with exit code 0. */
static bool ended_cleanly(mp_process *p, double timeout)
{
    int code = -1;
    return mp_process_join(p, timeout) == 0 && mp_process_exitcode(p, &code) == 0 && code == 0;
}

int main(void)
{
    mp_queue_opts o = MP_QUEUE_OPTS_INIT;
    o.capacity = 4096;
    o.joinable = true;
    struct queues qs;
    int rc = mp_queue_new_opts(&o, &qs.work);
    if (rc == 0)
        rc = mp_queue_new(4096, &qs.done);
    if (rc < 0) {
        fprintf(stderr, "mp_queue_new: %s\n", mp_strerror(rc));
        return 1;
    }
    mp_process *procs[1 + CONSUMERS];
    for (int i = 0; i <= CONSUMERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "Consumer-%d", i - 1);
        rc = i == 0 ? mp_process_new(producer, &qs, "Producer", &procs[0])
                    : mp_process_new(consumer, &qs, name, &procs[i]);
        if (rc < 0 || mp_process_start(procs[i]) < 0) {
            fprintf(stderr, "could not start the processes\n");
            return 1;
        }
    }
    /* Every item and every END taken and marked done. */
    rc = mp_queue_join(qs.work, 30.0);
    printf("join: %s\n", rc == 0 ? "every item was processed" : mp_err_name(rc));
    int ok = rc == 0;
    for (int i = 0; i <= CONSUMERS; i++) {
        ok &= ended_cleanly(procs[i], 30.0);
        mp_process_free(procs[i]);
    }
    int seen[ITEMS] = {0};
    char item[32];
    size_t len;
    while (mp_queue_get(qs.done, item, sizeof item - 1, &len, 0) == 0) {
        item[len] = '\0';
        int i = -1;
        if (sscanf(item, "item_%d", &i) == 1 && i >= 0 && i < ITEMS)
            seen[i]++;
        else
            ok = 0;
    }
    for (int i = 0; i < ITEMS; i++)
        ok &= seen[i] == 1;
    printf("%s\n",
           ok ? "10 items, each processed exactly once" : "AN ITEM WAS LOST OR PROCESSED TWICE");
    mp_queue_free(qs.work);
    mp_queue_free(qs.done);
    return ok ? 0 : 1;
}
