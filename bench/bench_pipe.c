/*
 * bench_pipe.c - connections between two processes: round trip, message
 * rate and bandwidth.
 *
 * Measured as ../shared/anchors/py_pipe.py measures Python's Pipe(): a
 * duplex pipe, the peer a forked process; each trial uses a fresh peer,
 * started before timing, with an untimed warm-up inside the trial; the
 * median of TRIALS trials.
 *
 *   mproc_pipe_roundtrip_us     full round trip of 8 bytes (send, receive the
 *                               echo)                  vs py_pipe_roundtrip_us
 *   mproc_pipe_pingpong_us      half of it, one way    vs limit_pipe_pingpong_us_socketpair
 *   mproc_pipe_msgs_per_s       one-way stream of 64-byte messages child ->
 *                               parent: a 1-byte "go", N messages, the clock
 *                               stops at the N-th      vs py_pipe_msgs_per_s
 *   mproc_pipe_bandwidth_MBps   the same with 1 MiB messages, MB = 1e6 bytes,
 *                               received into one buffer
 *                                   vs py_pipe_bandwidth_MBps,
 *                                      limit_pipe_bandwidth_MBps_socketpair
 */
#include "bench_util.h"

#include <errno.h>
#include <mproc.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define TRIALS     7
#define RT_ROUNDS  10000
#define RT_WARM    500
#define SMALL_MSGS 200000
#define BIG_MSGS   400
#define BIG        ((size_t)1 << 20)

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_pipe: %s: %s\n", what, mp_strerror(rc));
    exit(1);
}

static void reap(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("peer failed", MP_EWORKER);
}

/* The peer: echoes total messages back. */
static void echo(mp_conn *c, int total)
{
    char buf[64];
    for (int i = 0; i < total; i++) {
        size_t len;
        int rc = mp_conn_recv(c, buf, sizeof buf, &len, MP_FOREVER);
        if (rc == 0)
            rc = mp_conn_send(c, buf, len);
        if (rc < 0)
            die("echo", rc);
    }
    _exit(0);
}

static void roundtrip(void)
{
    double rt[TRIALS], half[TRIALS];
    const char msg[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int t = 0; t < TRIALS; t++) {
        mp_conn *parent, *child;
        int rc = mp_pipe(&parent, &child, true);
        if (rc < 0)
            die("mp_pipe", rc);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            mp_conn_close(parent);
            echo(child, RT_WARM + RT_ROUNDS);
        }
        mp_conn_close(child);
        char buf[8];
        size_t len;
        double t0 = 0;
        for (int i = 0; i < RT_WARM + RT_ROUNDS; i++) {
            if (i == RT_WARM)
                t0 = bench_now();
            rc = mp_conn_send(parent, msg, sizeof msg);
            if (rc == 0)
                rc = mp_conn_recv(parent, buf, sizeof buf, &len, MP_FOREVER);
            if (rc < 0)
                die("round trip", rc);
        }
        rt[t] = (bench_now() - t0) * 1e6 / RT_ROUNDS;
        half[t] = rt[t] / 2;
        reap(pid);
        mp_conn_free(parent);
        mp_conn_free(child);
    }
    bench_report("mproc_pipe_roundtrip_us", rt, TRIALS, "us", "py_pipe_roundtrip_us");
    bench_report("mproc_pipe_pingpong_us", half, TRIALS, "us", "limit_pipe_pingpong_us_socketpair");
}

/* The peer of a stream: for each batch, waits for "go", then sends n
 * messages of size bytes. */
static void streamer(mp_conn *c, const int *batches, int nbatches, size_t size)
{
    unsigned char *payload = malloc(size);
    if (!payload)
        die("malloc", MP_ENOMEM);
    for (size_t i = 0; i < size; i++)
        payload[i] = (unsigned char)i;
    for (int b = 0; b < nbatches; b++) {
        char go;
        size_t len;
        int rc = mp_conn_recv(c, &go, 1, &len, MP_FOREVER);
        for (int i = 0; rc == 0 && i < batches[b]; i++)
            rc = mp_conn_send(c, payload, size);
        if (rc < 0)
            die("stream", rc);
    }
    _exit(0);
}

/* Receives n messages of size bytes; returns the bytes received. */
static size_t receive(mp_conn *c, unsigned char *buf, int n, size_t size)
{
    size_t got = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        int rc = mp_conn_recv(c, buf, size, &len, MP_FOREVER);
        if (rc < 0)
            die("receive", rc);
        got += len;
    }
    return got;
}

/* Per-trial seconds to receive n messages of size bytes. */
static void stream(int n, size_t size, double *secs)
{
    int batches[2] = {n / 10 > 0 ? n / 10 : 1, n};
    unsigned char *buf = malloc(size);
    if (!buf)
        die("malloc", MP_ENOMEM);
    for (int t = 0; t < TRIALS; t++) {
        mp_conn *parent, *child;
        int rc = mp_pipe(&parent, &child, true);
        if (rc < 0)
            die("mp_pipe", rc);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            mp_conn_close(parent);
            streamer(child, batches, 2, size);
        }
        mp_conn_close(child);
        if ((rc = mp_conn_send(parent, "g", 1)) < 0)
            die("go", rc);
        receive(parent, buf, batches[0], size); /* untimed warm-up */
        double t0 = bench_now();
        if ((rc = mp_conn_send(parent, "g", 1)) < 0)
            die("go", rc);
        size_t got = receive(parent, buf, n, size);
        secs[t] = bench_now() - t0;
        if (got != (size_t)n * size)
            die("short stream", MP_EPROTO);
        reap(pid);
        mp_conn_free(parent);
        mp_conn_free(child);
    }
    free(buf);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    printf("# bench_pipe: mproc %s, %d CPUs; round trips: %d per trial; 64 B stream: %d msgs "
           "per trial; 1 MiB stream: %d msgs per trial\n",
           mp_version_string(), mp_cpu_count(), RT_ROUNDS, SMALL_MSGS, BIG_MSGS);
    roundtrip();
    double secs[TRIALS], v[TRIALS];
    stream(SMALL_MSGS, 64, secs);
    for (int t = 0; t < TRIALS; t++)
        v[t] = SMALL_MSGS / secs[t];
    bench_report("mproc_pipe_msgs_per_s", v, TRIALS, "msgs/s", "py_pipe_msgs_per_s");
    stream(BIG_MSGS, BIG, secs);
    for (int t = 0; t < TRIALS; t++)
        v[t] = (double)BIG_MSGS * (double)BIG / secs[t] / 1e6;
    bench_report("mproc_pipe_bandwidth_MBps", v, TRIALS, "MB/s",
                 "py_pipe_bandwidth_MBps,limit_pipe_bandwidth_MBps_socketpair");
    return 0;
}
