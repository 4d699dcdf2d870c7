/*
 * bench_queue.c - queue throughput and hand-off latency between processes.
 *
 * Throughput is measured as ../shared/anchors/py_queue.py measures
 * Python's multiprocessing.Queue: 64-byte messages; producers and consumers
 * are separate processes (fork), the parent only coordinates; every worker
 * waits at a start line, the clock starts when they are released and stops
 * when every consumer has reported its count; each producer ends with one
 * sentinel (an empty message) and a consumer stops at the first it gets, so
 * with P producers and P consumers each consumer gets one.  The counts are
 * checked.  A fresh queue and fresh processes per trial, one untimed
 * warm-up trial, the median of TRIALS.  Python moves 100000 messages per
 * trial; mproc moves more (the same fixed count every trial) so that a
 * trial lasts long enough to time.
 *
 *   mproc_queue_msgs_per_s_1p1c   vs py_queue_msgs_per_s_1p1c
 *   mproc_queue_msgs_per_s_2p2c   vs py_queue_msgs_per_s_2p2c
 *
 * Hand-off latency: two processes bounce an 8-byte message over two
 * queues; the figure is half the round trip, the time from a put to the
 * return of the get waiting for it in the other process.
 *
 *   mproc_queue_handoff_us        vs limit_futex_wake_us, mpi_c_pingpong_us
 *   mproc_queue_roundtrip_us      vs py_pipe_roundtrip_us (Python has no
 *                                 queue round-trip anchor; its Pipe is its
 *                                 fastest round trip)
 */
#include "bench_util.h"

#include <errno.h>
#include <mproc.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define TRIALS    5
#define MSGS      4000000L
#define MSG_SIZE  64
#define CAPACITY  ((size_t)1 << 20)
#define RT_ROUNDS 200000L
#define RT_WARM   20000L

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_queue: %s: %s\n", what, rc ? mp_strerror(rc) : strerror(errno));
    exit(1);
}

/* Reads exactly n bytes; returns 0, or -1 on end or error. */
static int read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void write_full(int fd, const void *buf, size_t n)
{
    if (write(fd, buf, n) != (ssize_t)n)
        die("write", 0);
}

/* The start line: a worker says it is ready, then waits for the go (the
 * parent closing its end of the go pipe). */
typedef struct start_line {
    int ready[2], go[2];
} start_line;

static void start_wait(start_line *sl)
{
    close(sl->go[1]);
    write_full(sl->ready[1], "r", 1);
    char c;
    if (read(sl->go[0], &c, 1) != 0)
        die("start line", 0);
}

static void producer(mp_queue *q, start_line *sl, long n)
{
    char payload[MSG_SIZE];
    for (int i = 0; i < MSG_SIZE; i++)
        payload[i] = (char)i;
    start_wait(sl);
    for (long i = 0; i < n; i++) {
        int rc = mp_queue_put(q, payload, sizeof payload, MP_FOREVER);
        if (rc < 0)
            die("put", rc);
    }
    int rc = mp_queue_put(q, NULL, 0, MP_FOREVER);
    if (rc < 0)
        die("put", rc);
    _exit(0);
}

static void consumer(mp_queue *q, start_line *sl, int result_fd)
{
    char buf[MSG_SIZE];
    long count = 0;
    start_wait(sl);
    for (;;) {
        size_t len;
        int rc = mp_queue_get(q, buf, sizeof buf, &len, MP_FOREVER);
        if (rc < 0)
            die("get", rc);
        if (len == 0)
            break;
        count++;
    }
    write_full(result_fd, &count, sizeof count);
    _exit(0);
}

static double one_trial(int producers, long total)
{
    mp_queue *q;
    int rc = mp_queue_new(CAPACITY, &q);
    if (rc < 0)
        die("mp_queue_new", rc);
    start_line sl;
    int results[2];
    if (pipe(sl.ready) != 0 || pipe(sl.go) != 0 || pipe(results) != 0)
        die("pipe", 0);
    long per = total / producers;
    pid_t pids[16];
    int n = 0;
    fflush(stdout);
    for (int i = 0; i < 2 * producers; i++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork", 0);
        if (pid == 0) {
            if (i < producers)
                producer(q, &sl, per);
            consumer(q, &sl, results[1]);
        }
        pids[n++] = pid;
    }
    close(sl.go[0]);
    for (int i = 0; i < n; i++) {
        char c;
        if (read_full(sl.ready[0], &c, 1) != 0)
            die("ready", 0);
    }
    double t0 = bench_now();
    close(sl.go[1]);
    long got = 0;
    for (int i = 0; i < producers; i++) {
        long c;
        if (read_full(results[0], &c, sizeof c) != 0)
            die("result", 0);
        got += c;
    }
    double dt = bench_now() - t0;
    for (int i = 0; i < n; i++) {
        int st;
        if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("worker failed", MP_EWORKER);
    }
    if (got != per * producers) {
        fprintf(stderr, "bench_queue: received %ld messages, expected %ld\n", got, per * producers);
        exit(1);
    }
    close(sl.ready[0]);
    close(sl.ready[1]);
    close(sl.go[0]);
    close(results[0]);
    close(results[1]);
    mp_queue_free(q);
    return (double)got / dt;
}

static void throughput(const char *name, int producers, const char *anchor)
{
    double v[TRIALS];
    one_trial(producers, MSGS / 4); /* warm-up */
    for (int t = 0; t < TRIALS; t++)
        v[t] = one_trial(producers, MSGS);
    bench_report(name, v, TRIALS, "msgs/s", anchor);
}

/* Bounces a message: get from a, put it to b, rounds times. */
static void echo(mp_queue *a, mp_queue *b, long rounds)
{
    char buf[8];
    for (long i = 0; i < rounds; i++) {
        size_t len;
        int rc = mp_queue_get(a, buf, sizeof buf, &len, MP_FOREVER);
        if (rc == 0)
            rc = mp_queue_put(b, buf, len, MP_FOREVER);
        if (rc < 0)
            die("echo", rc);
    }
    _exit(0);
}

static void roundtrip(void)
{
    double us[TRIALS];
    for (int t = 0; t < TRIALS; t++) {
        /* A fresh peer per trial, as py_pipe.py does: on 2 CPUs the result
         * depends on where the scheduler places the pair. */
        mp_queue *ping, *pong;
        int rc = mp_queue_new(4096, &ping);
        if (rc == 0)
            rc = mp_queue_new(4096, &pong);
        if (rc < 0)
            die("mp_queue_new", rc);
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            die("fork", 0);
        if (pid == 0)
            echo(ping, pong, RT_WARM + RT_ROUNDS);
        uint64_t msg = 1;
        char buf[8];
        size_t len;
        double t0 = 0;
        for (long i = 0; i < RT_WARM + RT_ROUNDS; i++) {
            if (i == RT_WARM)
                t0 = bench_now();
            rc = mp_queue_put(ping, &msg, sizeof msg, MP_FOREVER);
            if (rc == 0)
                rc = mp_queue_get(pong, buf, sizeof buf, &len, MP_FOREVER);
            if (rc < 0)
                die("round trip", rc);
        }
        us[t] = (bench_now() - t0) * 1e6 / RT_ROUNDS;
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("echo failed", MP_EWORKER);
        mp_queue_free(ping);
        mp_queue_free(pong);
    }
    double half[TRIALS];
    for (int t = 0; t < TRIALS; t++)
        half[t] = us[t] / 2;
    bench_report("mproc_queue_roundtrip_us", us, TRIALS, "us", "py_pipe_roundtrip_us");
    bench_report("mproc_queue_handoff_us", half, TRIALS, "us",
                 "limit_futex_wake_us,mpi_c_pingpong_us");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    printf("# bench_queue: mproc %s, %d CPUs, %ld messages of %d bytes per trial, "
           "ring %zu KiB\n",
           mp_version_string(), mp_cpu_count(), MSGS, MSG_SIZE, CAPACITY >> 10);
    throughput("mproc_queue_msgs_per_s_1p1c", 1, "py_queue_msgs_per_s_1p1c");
    throughput("mproc_queue_msgs_per_s_2p2c", 2, "py_queue_msgs_per_s_2p2c");
    roundtrip();
    return 0;
}
