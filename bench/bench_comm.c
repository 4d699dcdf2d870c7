/*
 * bench_comm.c - ranks on the local engine, measured as the anchors
 * measure Open MPI (../shared/anchors/mpi_bench.c) and ZeroMQ
 * (peers_zmq.c): the same workloads, counts, trials and statistics.
 *
 * The ranks are started with mp_run (2 ranks, or 4 for the oversubscribed
 * figures: 4 ranks on 2 CPUs); rank 0 prints.
 *
 *   mproc_comm_pingpong_us            8-byte send/recv ping-pong, half round
 *                                     trip                vs mpi_c_pingpong_us
 *   mproc_comm_bandwidth_MBps         1 MiB messages one way, blocking
 *                                     send/recv of one cache-hot buffer, a
 *                                     1-byte ack at the end (single copy)
 *                                                         vs mpi_c_bandwidth_MBps
 *   mproc_comm_bandwidth_MBps_pipeline  the same with single-copy reads off
 *                                     (the pipelined two-copy path)
 *                                                         vs mpi_c_bandwidth_MBps_copyinout
 *                                     (Open MPI's two-copy path: the anchor
 *                                     run with vader's single copy off, by
 *                                     scripts/bench.sh)
 *   mproc_comm_bcast_8B_us, _1MiB_us  a barrier before each bcast, only the
 *                                     bcast timed, mean over iterations,
 *                                     averaged over ranks (osu_bcast)
 *                                                         vs mpi_c_bcast_*_us
 *   ..._loop                          N back-to-back bcasts between two
 *                                     barriers, / N       vs mpi_c_bcast_*_us_loop
 *   ..._np4_oversub[_loop]            the four above with 4 ranks on 2 CPUs
 *   mproc_comm_msgs_per_s_1p1c        64-byte messages rank 0 -> rank 1,
 *                                     1 000 000 of them, counted at the
 *                                     receiver from its first to its last
 *                                                         vs peer_zmq_ipc_msgs_per_s_1p1c
 *   mproc_comm_roundtrip_us           8-byte full round trip
 *                                                         vs peer_zmq_ipc_roundtrip_us
 *   mproc_rank_pool_map_task_overhead_us_np4
 *                                     a pool whose workers are ranks (4 ranks
 *                                     on 2 CPUs: rank 0 maps, 3 serve):
 *                                     map(square, 200000 int32 items), default
 *                                     chunks, wall time / items - the workload
 *                                     of Python's Pool(2).map
 *                                                         vs py_pool_map_task_overhead_us_default
 *   mproc_rank_pool_map_items_per_s_np4  the same as items per second  (no anchor)
 *   mproc_rank_pool_apply_async_per_s_np4  10000 apply_async(square), then
 *                                     every result in order
 *                                                         vs py_pool_apply_async_per_s
 *
 * With --mpi, under mpiexec (launched as the anchors launch Open MPI:
 * anchors/mpi_run.sh, btl self,vader), the MPI engine's mproc_mpi_pingpong_us,
 * _bandwidth_MBps, _bcast_* (2 ranks) and _bcast_*_np4_oversub (4 ranks),
 * against the same mpi_c_* figures of raw Open MPI: the engine's overhead.
 */
#include "bench_util.h"

#include <mproc.h>
#include <stdint.h>

#define TRIALS         5
#define PP_ITERS       50000
#define PP_WARM        2000
#define BIG            ((size_t)1 << 20)
#define BLK_MSGS       640
#define BC_SMALL_ITERS 20000
#define BC_BIG_ITERS   1000
#define MSGS           1000000L
#define RT_ROUNDS      20000L

/* The figures' prefix: mproc_comm (the local engine, ranks from mp_run) or
 * mproc_mpi (the MPI engine, ranks from mpiexec: --mpi). */
static const char *pfx = "mproc_comm";

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_comm: %s: %s\n", what, mp_strerror(rc));
    fflush(NULL);
    exit(1);
}

#define CK(what, expr)        \
    do {                      \
        int rc_ = (expr);     \
        if (rc_ < 0)          \
            die((what), rc_); \
    } while (0)

static int pingpong(mp_comm *w, void *arg)
{
    (void)arg;
    int r = mp_comm_rank(w);
    char buf[8] = {0};
    double us[TRIALS];
    for (int t = -1; t < TRIALS; t++) {
        int iters = t < 0 ? PP_WARM : PP_ITERS;
        CK("barrier", mp_comm_barrier(w, MP_FOREVER));
        double t0 = bench_now();
        for (int i = 0; i < iters; i++) {
            if (r == 0) {
                CK("send", mp_comm_send(w, buf, 8, 1, 1, MP_FOREVER));
                CK("recv", mp_comm_recv(w, buf, 8, 1, 1, NULL, MP_FOREVER));
            } else {
                CK("recv", mp_comm_recv(w, buf, 8, 0, 1, NULL, MP_FOREVER));
                CK("send", mp_comm_send(w, buf, 8, 0, 1, MP_FOREVER));
            }
        }
        double dt = bench_now() - t0;
        if (t >= 0)
            us[t] = dt * 1e6 / (2.0 * iters);
    }
    char name[96];
    snprintf(name, sizeof name, "%s_pingpong_us", pfx);
    if (r == 0)
        bench_report(name, us, TRIALS, "us", "mpi_c_pingpong_us");
    return 0;
}

static int bandwidth(mp_comm *w, void *arg)
{
    char name[96];
    snprintf(name, sizeof name, "%s_bandwidth_MBps%s", pfx, (const char *)arg);
    int r = mp_comm_rank(w);
    char *buf = malloc(BIG);
    if (!buf)
        die("malloc", MP_ENOMEM);
    memset(buf, r + 1, BIG);
    char ack = 0;
    double mbps[TRIALS];
    for (int t = -1; t < TRIALS; t++) {
        int msgs = t < 0 ? 64 : BLK_MSGS;
        CK("barrier", mp_comm_barrier(w, MP_FOREVER));
        double t0 = bench_now();
        for (int i = 0; i < msgs; i++) {
            if (r == 0)
                CK("send", mp_comm_send(w, buf, BIG, 1, 4, MP_FOREVER));
            else
                CK("recv", mp_comm_recv(w, buf, BIG, 0, 4, NULL, MP_FOREVER));
        }
        if (r == 0)
            CK("ack", mp_comm_recv(w, &ack, 1, 1, 5, NULL, MP_FOREVER));
        else
            CK("ack", mp_comm_send(w, &ack, 1, 0, 5, MP_FOREVER));
        double dt = bench_now() - t0;
        if (t >= 0)
            mbps[t] = (double)msgs * BIG / dt / 1e6;
    }
    /* Two copies are held against two copies (see the top). */
    if (r == 0)
        bench_report(name, mbps, TRIALS, "MB/s",
                     *(const char *)arg ? "mpi_c_bandwidth_MBps_copyinout" : "mpi_c_bandwidth_MBps");
    free(buf);
    return 0;
}

/* osu_bcast and the back-to-back loop, as mpi_bench.c's bcast(). */
static void bcast_figs(mp_comm *w, size_t bytes, int iters, const char *base, const char *sfx)
{
    int r = mp_comm_rank(w), n = mp_comm_size(w);
    char *buf = malloc(bytes);
    if (!buf)
        die("malloc", MP_ENOMEM);
    memset(buf, r == 0 ? 7 : 0, bytes);
    double us[TRIALS];
    char name[128], anchor[128];
    for (int t = -1; t < TRIALS; t++) {
        int m = t < 0 ? (iters / 10 > 0 ? iters / 10 : 1) : iters;
        double sum = 0;
        for (int i = 0; i < m; i++) {
            CK("barrier", mp_comm_barrier(w, MP_FOREVER));
            double t0 = bench_now();
            CK("bcast", mp_comm_bcast(w, buf, bytes, 0, MP_FOREVER));
            sum += bench_now() - t0;
        }
        double mine = sum / m, total = 0;
        CK("reduce", mp_comm_reduce(w, &mine, &total, 1, MP_TYPE_d, MP_OP_SUM, 0, MP_FOREVER));
        if (t >= 0)
            us[t] = total / n * 1e6;
    }
    if (buf[bytes - 1] != 7)
        die("bcast verification", MP_EPROTO);
    snprintf(name, sizeof name, "%s_%s_us%s", pfx, base, sfx);
    snprintf(anchor, sizeof anchor, "mpi_c_%s_us%s", base, sfx);
    if (r == 0)
        bench_report(name, us, TRIALS, "us", anchor);
    for (int t = -1; t < TRIALS; t++) {
        int m = t < 0 ? (iters / 10 > 0 ? iters / 10 : 1) : iters;
        CK("barrier", mp_comm_barrier(w, MP_FOREVER));
        double t0 = bench_now();
        for (int i = 0; i < m; i++)
            CK("bcast", mp_comm_bcast(w, buf, bytes, 0, MP_FOREVER));
        CK("barrier", mp_comm_barrier(w, MP_FOREVER));
        if (t >= 0)
            us[t] = (bench_now() - t0) / m * 1e6;
    }
    snprintf(name, sizeof name, "%s_%s_us%s_loop", pfx, base, sfx);
    snprintf(anchor, sizeof anchor, "mpi_c_%s_us%s_loop", base, sfx);
    if (r == 0)
        bench_report(name, us, TRIALS, "us", anchor);
    free(buf);
}

static int bcasts(mp_comm *w, void *arg)
{
    const char *sfx = arg;
    int n = mp_comm_size(w);
    bcast_figs(w, 8, n > 2 ? BC_SMALL_ITERS / 10 : BC_SMALL_ITERS, "bcast_8B", sfx);
    bcast_figs(w, BIG, n > 2 ? BC_BIG_ITERS / 4 : BC_BIG_ITERS, "bcast_1MiB", sfx);
    return 0;
}

/* One streaming trial of count 64-byte messages: the rate the receiver
 * sees from its first message to its last. */
static double stream_trial(mp_comm *w, long count)
{
    char buf[64] = {0};
    double rate = 0;
    CK("barrier", mp_comm_barrier(w, MP_FOREVER));
    if (mp_comm_rank(w) == 0) {
        for (long i = 0; i < count; i++)
            CK("send", mp_comm_send(w, buf, sizeof buf, 1, 1, MP_FOREVER));
        CK("rate", mp_comm_recv(w, &rate, sizeof rate, 1, 2, NULL, MP_FOREVER));
    } else {
        double t0 = 0;
        for (long i = 0; i < count; i++) {
            CK("recv", mp_comm_recv(w, buf, sizeof buf, 0, 1, NULL, MP_FOREVER));
            if (i == 0)
                t0 = bench_now();
        }
        rate = (double)(count - 1) / (bench_now() - t0);
        CK("rate", mp_comm_send(w, &rate, sizeof rate, 0, 2, MP_FOREVER));
    }
    return rate;
}

static int msgrate(mp_comm *w, void *arg)
{
    (void)arg;
    double v[TRIALS];
    stream_trial(w, MSGS / 10);
    for (int t = 0; t < TRIALS; t++)
        v[t] = stream_trial(w, MSGS);
    if (mp_comm_rank(w) == 0)
        bench_report("mproc_comm_msgs_per_s_1p1c", v, TRIALS, "msgs/s",
                     "peer_zmq_ipc_msgs_per_s_1p1c");
    return 0;
}

static int roundtrip(mp_comm *w, void *arg)
{
    (void)arg;
    int r = mp_comm_rank(w);
    char buf[8] = {0};
    double v[TRIALS];
    for (int t = -1; t < TRIALS; t++) {
        long rounds = t < 0 ? RT_ROUNDS / 10 : RT_ROUNDS;
        CK("barrier", mp_comm_barrier(w, MP_FOREVER));
        double t0 = bench_now();
        for (long i = 0; i < rounds; i++) {
            if (r == 0) {
                CK("send", mp_comm_send(w, buf, 8, 1, 3, MP_FOREVER));
                CK("recv", mp_comm_recv(w, buf, 8, 1, 3, NULL, MP_FOREVER));
            } else {
                CK("recv", mp_comm_recv(w, buf, 8, 0, 3, NULL, MP_FOREVER));
                CK("send", mp_comm_send(w, buf, 8, 0, 3, MP_FOREVER));
            }
        }
        if (t >= 0)
            v[t] = (bench_now() - t0) / rounds * 1e6;
    }
    if (r == 0)
        bench_report("mproc_comm_roundtrip_us", v, TRIALS, "us", "peer_zmq_ipc_roundtrip_us");
    return 0;
}

static void run(int n, mp_rank_fn fn, void *arg, const char *what)
{
    fflush(stdout);
    /* Bound as mpiexec binds (a CPU each while there are enough). */
    mp_run_opts o = MP_RUN_OPTS_INIT;
    o.bind = true;
    int rc = mp_run_with_opts(n, fn, arg, &o);
    if (rc != 0)
        die(what, rc < 0 ? rc : MP_EWORKER);
}

/* ---- a pool whose workers are ranks ---------------------------------------------- */

#define RP_MAP_N   200000
#define RP_APPLY_N 10000

static int rp_square(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    int64_t v = *(const int32_t *)in;
    *(int64_t *)out = v * v;
    return 0;
}

static int rp_square_task(const void *arg, size_t len, mp_buf *out)
{
    int64_t v = 0;
    if (len == sizeof(int32_t))
        v = *(const int32_t *)arg;
    v *= v;
    return mp_buf_append(out, &v, sizeof v);
}

static void rp_maps(mp_pool *p)
{
    static int32_t in[RP_MAP_N];
    static int64_t out[RP_MAP_N];
    for (int i = 0; i < RP_MAP_N; i++)
        in[i] = i;
    double us[TRIALS], rate[TRIALS];
    for (int t = -1; t < TRIALS; t++) {
        double t0 = bench_now();
        CK("map", mp_pool_map(p, rp_square, in, RP_MAP_N, sizeof in[0], out, sizeof out[0], 0));
        double dt = bench_now() - t0;
        for (int i = 0; i < RP_MAP_N; i++)
            if (out[i] != (int64_t)i * i)
                die("map result", MP_EPROTO);
        if (t >= 0) {
            us[t] = dt * 1e6 / RP_MAP_N;
            rate[t] = RP_MAP_N / dt;
        }
    }
    bench_report("mproc_rank_pool_map_task_overhead_us_np4", us, TRIALS, "us",
                 "py_pool_map_task_overhead_us_default");
    bench_report("mproc_rank_pool_map_items_per_s_np4", rate, TRIALS, "items/s", NULL);
}

static void rp_applies(mp_pool *p)
{
    static mp_future *fs[RP_APPLY_N];
    double rate[TRIALS];
    for (int t = -1; t < TRIALS; t++) {
        double t0 = bench_now();
        for (int32_t i = 0; i < RP_APPLY_N; i++)
            if (!(fs[i] = mp_pool_apply_async(p, rp_square_task, &i, sizeof i)))
                die("apply_async", MP_ENOMEM);
        for (int i = 0; i < RP_APPLY_N; i++) {
            int64_t v = -1;
            CK("get", mp_future_get(fs[i], &v, sizeof v, NULL, MP_FOREVER));
            if (v != (int64_t)i * i)
                die("apply result", MP_EPROTO);
            mp_future_free(fs[i]);
        }
        if (t >= 0)
            rate[t] = RP_APPLY_N / (bench_now() - t0);
    }
    bench_report("mproc_rank_pool_apply_async_per_s_np4", rate, TRIALS, "tasks/s",
                 "py_pool_apply_async_per_s");
}

static int rank_pool(mp_comm *w, void *arg)
{
    (void)arg;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.comm = w;
    mp_pool *p;
    CK("pool", mp_pool_new(&o, &p));
    if (!p)
        return 0;
    rp_maps(p);
    rp_applies(p);
    CK("close", mp_pool_close(p));
    CK("join", mp_pool_join(p, MP_FOREVER));
    mp_pool_free(p);
    return 0;
}

/* Under mpiexec (bench.sh runs `mpi_run.sh 2 bench_comm --mpi` and
 * `mpi_run.sh 4 bench_comm --mpi bcast`): the same figures on the MPI
 * engine, held against raw Open MPI run the same way. */
static int mpi_main(const char *only)
{
    mp_comm *w;
    CK("world", mp_comm_world(&w));
    pfx = "mproc_mpi";
    int n = mp_comm_size(w);
    if (mp_comm_rank(w) == 0)
        printf("# mproc %s, %s engine, %d ranks\n", mp_version_string(), mp_comm_engine(w), n);
    if (n == 2 && (!only || strcmp(only, "pingpong") == 0))
        pingpong(w, NULL);
    if (n == 2 && (!only || strcmp(only, "bandwidth") == 0))
        bandwidth(w, "");
    if (!only || strcmp(only, "bcast") == 0)
        bcasts(w, n > 2 ? "_np4_oversub" : "");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--mpi") == 0)
        return mpi_main(argc > 2 ? argv[2] : NULL);
    const char *only = argc > 1 ? argv[1] : NULL;
#define WANT(x) (!only || strcmp(only, (x)) == 0)
    printf("# mproc %s, local engine, %d CPUs\n", mp_version_string(), mp_cpu_count());
    if (WANT("pingpong"))
        run(2, pingpong, NULL, "pingpong");
    if (WANT("bandwidth")) {
        run(2, bandwidth, "", "bandwidth");
        setenv("MPROC_COMM_CMA", "0", 1);
        run(2, bandwidth, "_pipeline", "bandwidth");
        unsetenv("MPROC_COMM_CMA");
    }
    if (WANT("bcast")) {
        run(2, bcasts, "", "bcast");
        run(4, bcasts, "_np4_oversub", "bcast np4");
    }
    if (WANT("msgrate"))
        run(2, msgrate, NULL, "msgrate");
    if (WANT("roundtrip"))
        run(2, roundtrip, NULL, "roundtrip");
    if (WANT("rankpool")) {
        /* Not bound: rank 0's pool thread and the workers share 2 CPUs. */
        fflush(stdout);
        int rc = mp_run(4, rank_pool, NULL);
        if (rc != 0)
            die("rank pool", rc < 0 ? rc : MP_EWORKER);
    }
    return 0;
}
