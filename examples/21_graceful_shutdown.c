/*
 * 21_graceful_shutdown.c - workers loop on the shutdown event; a Ctrl-C
 * stops them all within the timeout, and the log shows every step and
 * every child's stack.
 *
 * The seeds' tips: one "shutdown-requested" Event passed to every
 * subprocess, whose loops check it; the main process makes sure each one
 * really ended; always handle TERM and INT, and INT prints a stack trace;
 * never wait forever.  Here the example sends itself the Ctrl-C (SIGINT)
 * once its three workers run, then checks that they all ended by
 * themselves, in time, and that the log holds each stack.
 *
 * Python:  stop = Event(); Process(target=work, args=(stop,)) ...
 *          signal.signal(SIGINT, lambda *a: stop.set()); p.join(timeout)
 */
#define _POSIX_C_SOURCE 200809L
#include <mproc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WORKERS 3
#define TIMEOUT 2.0

struct job {
    mp_queue *progress;
    int id;
};

/* One unit of pretend work. */
static unsigned long work_unit(unsigned long x)
{
    for (int i = 0; i < 1000; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    return x;
}

static int worker(void *arg)
{
    const struct job *job = arg;
    mp_event *stop;
    int rc = mp_shutdown_event(&stop);
    if (rc < 0)
        return rc;
    int hello = job->id;
    if ((rc = mp_queue_put(job->progress, &hello, sizeof hello, 5.0)) < 0)
        return rc;
    unsigned long x = (unsigned long)job->id;
    /* The loop the seeds describe: work until the event says stop.  The
     * wait paces the loop and ends at once when the event is set. */
    while (!mp_event_is_set(stop)) {
        x = work_unit(x);
        (void)mp_event_wait(stop, 0.01);
    }
    return x == 42 ? 1 : 0; /* use x, so that the work is not optimized away */
}

/* Waits until every worker said it runs. */
static int await_workers(mp_queue *progress)
{
    for (int seen = 0; seen < WORKERS;) {
        int id;
        size_t len;
        int rc = mp_queue_get(progress, &id, sizeof id, &len, 10.0);
        if (rc < 0)
            return rc;
        seen++;
    }
    return 0;
}

/* Prints the log; counts the lines that hold a child's stack, and those
 * that hold the main process's. */
static void print_log(FILE *log, int *children, int *main_stack)
{
    char line[512];
    *children = *main_stack = 0;
    rewind(log);
    printf("---- the log ----\n");
    while (fgets(line, sizeof line, log)) {
        fputs(line, stdout);
        *children += strstr(line, "asked for its stack") != NULL;
        *main_stack += strstr(line, "the main process") != NULL;
    }
    printf("-----------------\n");
}

static bool check(bool ok, const char *what)
{
    printf("%s %s\n", ok ? "ok:  " : "FAIL:", what);
    return ok;
}

int main(void)
{
    FILE *log = tmpfile();
    if (!log)
        return 1;
    mp_log_set_fd(fileno(log));
    mp_log_set_level(MP_LOG_INFO);

    /* SIGINT and SIGTERM now start a shutdown with a 2 s timeout; the
     * program goes on afterwards (exit = false), so that it can check. */
    mp_signals_opts so = MP_SIGNALS_OPTS_INIT;
    so.shutdown.timeout = TIMEOUT;
    so.shutdown.grace = 0.5;
    so.exit = false;
    if (mp_signals_install(&so) < 0)
        return 1;

    mp_queue *progress;
    if (mp_queue_new(0, &progress) < 0)
        return 1;
    struct job jobs[WORKERS];
    mp_process *p[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        jobs[i] = (struct job){progress, i + 1};
        char name[32];
        snprintf(name, sizeof name, "Worker-%d", i + 1);
        if (mp_process_new(worker, &jobs[i], name, &p[i]) < 0 || mp_process_start(p[i]) < 0)
            return 1;
    }
    if (await_workers(progress) < 0)
        return 1;
    printf("%d workers run; pressing Ctrl-C (SIGINT to ourselves)\n", WORKERS);
    kill(getpid(), SIGINT);

    /* The main loop would wait for results here; it learns of the
     * shutdown through the same event. */
    mp_event *stop;
    mp_shutdown_event(&stop);
    mp_waitable set[] = {mp_waitable_event(stop)};
    int rc = mp_wait_any(set, 1, 10.0);

    /* The shutdown runs in the library's thread; this waits for it. */
    mp_shutdown_report r;
    mp_shutdown_ex(&so.shutdown, &r);
    printf("shutdown: %d children: %d ended by themselves, %d terminated, %d killed, "
           "in %.3f s\n",
           r.children, r.exited, r.terminated, r.killed, r.seconds);

    bool ok = check(rc == 1 && set[0].ready, "the main loop saw the shutdown event");
    ok &= check(r.signo == SIGINT, "the shutdown was started by SIGINT");
    ok &= check(r.children == WORKERS && r.exited == WORKERS, "every worker ended by itself");
    ok &= check(r.terminated == 0 && r.killed == 0, "nobody had to be signalled");
    ok &= check(r.seconds < TIMEOUT, "within the timeout");
    for (int i = 0; i < WORKERS; i++) {
        int code = -1;
        ok &= check(mp_process_exitcode(p[i], &code) == 0 && code == 0, mp_process_name(p[i]));
        mp_process_free(p[i]);
    }
    mp_queue_free(progress);
    int stacks, mains;
    print_log(log, &stacks, &mains);
    ok &= check(mains == 1, "the log holds the main process's stack");
    ok &= check(stacks == WORKERS, "the log holds every worker's stack");
    fclose(log);
    return ok ? 0 : 1;
}
