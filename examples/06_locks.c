/*
 * 06_locks.c - four workers update a shared value and array under a lock;
 * then one dies holding the lock, and nobody deadlocks.
 *
 * The seeds' 6_adv_shared_mem.py, 1000 times per worker so that a lost
 * update would show: the counter must end at exactly 4000.  Python would
 * hang forever on a lock whose holder was killed; mproc hands it to the
 * next process with MP_EOWNERDEAD, which repairs the state and goes on.
 *
 * Python:  with lock:
 *              shared_value.value += 1
 *              shared_array[worker_id] = shared_value.value
 */
#include <mproc.h>
#include <stdio.h>

enum { WORKERS = 4, ROUNDS = 1000 };

typedef struct shared {
    mp_lock *lock;
    mp_value *value;   /* 'i', raw: the lock above protects it */
    mp_array *array;   /* 'i' x WORKERS, raw */
    mp_event *holding; /* set by the worker that will die holding the lock */
    mp_event *never;   /* what it then waits for, until it is killed */
    mp_barrier *start; /* so that the workers really compete */
} shared;

typedef struct job {
    shared *s;
    int id;
} job;

static int worker(void *arg)
{
    job *j = arg;
    shared *s = j->s;
    if (mp_barrier_wait(s->start, 10.0) < 0)
        return 1;
    for (int r = 0; r < ROUNDS; r++) {
        int rc = mp_lock_acquire(s->lock, 10.0);
        if (rc < 0)
            return rc;
        int64_t v;
        mp_value_get_i64(s->value, &v);
        mp_value_set_i64(s->value, v + 1);
        mp_array_set_i64(s->array, (size_t)j->id, v + 1);
        mp_lock_release(s->lock);
    }
    return 0;
}

static int die_holding_the_lock(void *arg)
{
    shared *s = arg;
    mp_lock_acquire(s->lock, 10.0);
    mp_value_set_i64(s->value, -1); /* half an update: the state is now wrong */
    mp_event_set(s->holding);
    mp_event_wait(s->never, 60.0); /* killed long before the time is up */
    return 2;
}

static int run(mp_target_fn fn, void *arg)
{
    mp_process *p;
    int code = -1;
    int rc = mp_process_new(fn, arg, NULL, &p);
    if (rc < 0)
        return rc;
    rc = mp_process_start(p);
    if (rc == 0)
        rc = mp_process_join(p, 30.0);
    if (rc == 0)
        rc = mp_process_exitcode(p, &code);
    if (rc == 0 && code != 0)
        rc = MP_EWORKER;
    mp_process_free(p);
    return rc;
}

int main(void)
{
    /* Each constructor says why it failed; the first failure is enough. */
    shared s;
    int rc = mp_lock_new(&s.lock);
    if (rc == 0)
        rc = mp_value_new(MP_TYPE_i, NULL, false, &s.value);
    if (rc == 0)
        rc = mp_array_new(MP_TYPE_i, WORKERS, NULL, false, &s.array);
    if (rc == 0)
        rc = mp_event_new(&s.holding);
    if (rc == 0)
        rc = mp_event_new(&s.never);
    if (rc == 0)
        rc = mp_barrier_new(WORKERS, &s.start);
    if (rc < 0) {
        fprintf(stderr, "no shared memory: %s\n", mp_strerror(rc));
        return 1;
    }

    /* Part 1: the seed. */
    job jobs[WORKERS];
    mp_process *procs[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        jobs[i] = (job){&s, i};
        if (mp_process_new(worker, &jobs[i], NULL, &procs[i]) < 0 ||
            mp_process_start(procs[i]) < 0) {
            fprintf(stderr, "cannot start a worker\n");
            return 1;
        }
    }
    int ok = 1;
    for (int i = 0; i < WORKERS; i++) {
        int code = -1;
        ok &= mp_process_join(procs[i], 30.0) == 0 && mp_process_exitcode(procs[i], &code) == 0 &&
              code == 0;
        mp_process_free(procs[i]);
    }
    int64_t total, last[WORKERS];
    mp_value_get_i64(s.value, &total);
    printf("shared_value = %lld (expected %d)\n", (long long)total, WORKERS * ROUNDS);
    printf("shared_array = [");
    int saw_total = 0;
    for (int i = 0; i < WORKERS; i++) {
        mp_array_get_i64(s.array, (size_t)i, &last[i]);
        printf("%s%lld", i ? ", " : "", (long long)last[i]);
        ok &= last[i] >= ROUNDS && last[i] <= total;
        saw_total |= last[i] == total;
    }
    printf("]  (what each worker saw at its last update)\n");
    ok &= total == WORKERS * ROUNDS && saw_total;

    /* Part 2: a worker dies holding the lock. */
    mp_process *dying;
    if (mp_process_new(die_holding_the_lock, &s, "doomed", &dying) < 0 ||
        mp_process_start(dying) < 0 || mp_event_wait(s.holding, 10.0) < 0) {
        fprintf(stderr, "cannot start the doomed worker\n");
        return 1;
    }
    mp_process_kill(dying);
    mp_process_join(dying, 10.0);
    printf("%s was killed by SIGKILL while holding the lock\n", mp_process_name(dying));
    mp_process_free(dying);
    rc = mp_lock_acquire(s.lock, 10.0);
    printf("next acquire: %s (%s)\n", mp_err_name(rc), mp_strerror(rc));
    ok &= rc == MP_EOWNERDEAD;
    if (rc == MP_EOWNERDEAD) {
        /* Repair what the lock protects, then declare it consistent. */
        mp_value_set_i64(s.value, total);
        mp_lock_consistent(s.lock);
        printf("repaired shared_value to %lld; the lock works again\n", (long long)total);
    }
    mp_lock_release(s.lock);
    mp_barrier_free(s.start);
    ok &= mp_barrier_new(1, &s.start) == 0 && run(worker, &jobs[0]) == 0;
    mp_value_get_i64(s.value, &total);
    printf("one more worker ran: shared_value = %lld\n", (long long)total);
    ok &= total == (WORKERS + 1) * ROUNDS;

    mp_lock_free(s.lock);
    mp_value_free(s.value);
    mp_array_free(s.array);
    mp_event_free(s.holding);
    mp_event_free(s.never);
    mp_barrier_free(s.start);
    printf("%s\n",
           ok ? "no update was lost, and the dead holder did not deadlock anyone" : "WRONG RESULT");
    return ok ? 0 : 1;
}
