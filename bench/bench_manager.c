/*
 * bench_manager.c - the manager: a dict shared through a server process,
 * measured as ../shared/anchors measures Python's Manager().dict() and a
 * Redis server through hiredis (py_manager.py, peers_redis.c): a separate
 * client process does PAIRS x { d[k] = i ; d[k] } with k = i % 64, every
 * call synchronous; ops = set + get = 2 per pair; the client times its own
 * loop, started after a barrier; TRIALS trials after an untimed warm-up,
 * the median reported; the final contents checked.
 *
 *   mproc_manager_dict_ops_per_s              a local client: the fast path
 *                                             (the store mapped)
 *                                             vs py_manager_dict_ops_per_s,
 *                                                peer_redis_unix_ops_per_s
 *   mproc_manager_dict_ops_per_s_unix_socket  a local client sending every
 *                                             call over the Unix socket
 *                                             vs peer_redis_unix_ops_per_s
 *   mproc_manager_dict_ops_per_s_tcp          a client over TCP loopback,
 *                                             every frame encrypted
 *                                             vs peer_redis_tcp_ops_per_s
 *   mproc_manager_locked_incr_per_s           2 local clients each do
 *                                             LOCKED x { acquire a manager
 *                                             Lock; get; set; release }
 *                                             vs py_value_locked_incr_per_s
 *                                             (Python's Value, not even a
 *                                             manager: for scale)
 *   mproc_manager_dict_incr_per_s             the same job with the atomic
 *                                             dict increment, no lock
 *   mproc_manager_ops_per_s_8clients_tcp      8 clients over TCP at once,
 *                                             each PAIRS_MANY pairs: the
 *                                             server's throughput (total
 *                                             ops / span of all loops)
 *                                             vs peer_redis_tcp_ops_per_s
 *   mproc_manager_ops_per_s_8clients_local    the same with 8 local clients
 *   mproc_manager_tcp_floor_ops_per_s         no manager at all: one
 *                                             64-byte frame echoed back
 *                                             over TCP loopback per op, by
 *                                             a second process, the same
 *                                             loop, with blocking reads -
 *                                             the floor of a server whose
 *                                             reads sleep in the kernel
 *                                             (the manager's look first)
 *                                             vs peer_redis_tcp_ops_per_s
 */
#define _GNU_SOURCE
#include "bench_util.h"

#include <mproc.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TRIALS     5
#define PAIRS      10000
#define PAIRS_MANY 2000
#define KEYS       64
#define LOCKED     20000
#define MAXC       8

enum { LOCAL, UNIX_SOCKET, TCP };

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_manager: %s: %s\n", what, mp_strerror(rc));
    exit(1);
}

typedef struct server {
    mp_manager *m;
    char addr[300];
    char key[32];
} server;

static void server_start(server *s, bool tcp)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.address = tcp ? "tcp://127.0.0.1:0" : NULL;
    int rc = mp_manager_start(&o, &s->m);
    if (rc < 0)
        die("start", rc);
    snprintf(s->addr, sizeof s->addr, "%s", mp_manager_address(s->m));
    mp_manager_authkey(s->m, s->key, sizeof s->key);
}

/* In a client process: a handle of the kind asked for. */
static mp_manager *client_of(const server *s, int kind)
{
    if (kind == LOCAL)
        return s->m; /* inherited: connects anew, with the fast path */
    mp_manager_client_opts o = MP_MANAGER_CLIENT_OPTS_INIT;
    o.address = s->addr;
    o.authkey = s->key;
    o.authkey_len = sizeof s->key;
    o.no_fastpath = true;
    mp_manager *m;
    int rc = mp_manager_connect_opts(&o, &m);
    if (rc < 0)
        die("connect", rc);
    return m;
}

/* What a client reports: when its loop began and ended. */
typedef struct span {
    double t0, t1;
} span;

typedef enum job { DICT_PAIRS, LOCKED_INCR, DICT_INCR } job;

/* Client `who` does the job n times; pairs use keys of its own. */
static int run_job(mp_manager *m, job what, int n, const char *dict, int who)
{
    mp_mdict *d;
    mp_mlock *l;
    int rc = mp_mdict_new(m, dict, &d);
    if (rc == 0)
        rc = mp_mlock_new(m, "bench-lock", &l);
    if (rc < 0)
        return rc;
    char key[32];
    for (int i = 0; i < n && rc >= 0; i++) {
        int64_t v = -1;
        switch (what) {
        case DICT_PAIRS:
            snprintf(key, sizeof key, "c%d-k%d", who, i % KEYS);
            rc = mp_mdict_set_i64(d, key, i);
            if (rc == 0)
                rc = mp_mdict_get_i64(d, key, &v);
            if (rc == 0 && v != i)
                rc = MP_EPROTO;
            break;
        case LOCKED_INCR:
            rc = mp_mlock_acquire(l, MP_FOREVER);
            if (rc == 0 && (rc = mp_mdict_get_i64(d, "counter", &v)) == MP_ENOKEY)
                v = 0, rc = 0;
            if (rc == 0)
                rc = mp_mdict_set_i64(d, "counter", v + 1);
            if (rc == 0)
                rc = mp_mlock_release(l);
            break;
        case DICT_INCR:
            rc = mp_mdict_incr(d, "counter", 1, NULL);
            break;
        }
    }
    mp_mdict_free(d);
    mp_mlock_free(l);
    return rc;
}

typedef struct trial {
    server *s;
    int kind, clients, n;
    job what;
    char dict[32];
} trial;

static void client_main(const trial *t, mp_mbarrier *start, int out, int who)
{
    mp_manager *m = client_of(t->s, t->kind);
    mp_mbarrier *b = start;
    if (t->kind != LOCAL) {
        int rc = mp_mbarrier_new(m, "bench-start", (unsigned)t->clients + 1, &b);
        if (rc < 0)
            die("barrier", rc);
    }
    /* Connected and warmed before the clock starts. */
    if (run_job(m, t->what, 1, "bench-warm", who) < 0 || mp_mbarrier_wait(b, 120) < 0)
        _exit(2);
    span sp = {bench_now(), 0};
    int rc = run_job(m, t->what, t->n, t->dict, who);
    sp.t1 = bench_now();
    if (rc < 0) {
        fprintf(stderr, "bench_manager: client: %s\n", mp_strerror(rc));
        _exit(3);
    }
    _exit(write(out, &sp, sizeof sp) == (ssize_t)sizeof sp ? 0 : 4);
}

/* One trial: clients processes do the job; returns ops per second over
 * the span from the first loop's start to the last one's end. */
static double run_trial(trial *t)
{
    static unsigned counter;
    snprintf(t->dict, sizeof t->dict, "bench-%u", counter++);
    mp_mbarrier *start;
    mp_manager_remove(t->s->m, "bench-start");
    int rc = mp_mbarrier_new(t->s->m, "bench-start", (unsigned)t->clients + 1, &start);
    if (rc < 0)
        die("barrier", rc);
    int fds[2];
    if (pipe(fds) != 0)
        die("pipe", -errno);
    pid_t pids[MAXC];
    for (int i = 0; i < t->clients; i++) {
        fflush(NULL);
        pids[i] = fork();
        if (pids[i] == 0)
            client_main(t, start, fds[1], i);
        if (pids[i] < 0)
            die("fork", -errno);
    }
    close(fds[1]);
    if ((rc = mp_mbarrier_wait(start, 120)) < 0)
        die("barrier wait", rc);
    double first = 1e300, last = 0;
    for (int i = 0; i < t->clients; i++) {
        span sp;
        if (read(fds[0], &sp, sizeof sp) != (ssize_t)sizeof sp)
            die("a client failed", MP_EPROTO);
        first = sp.t0 < first ? sp.t0 : first;
        last = sp.t1 > last ? sp.t1 : last;
    }
    close(fds[0]);
    for (int i = 0; i < t->clients; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("a client failed", MP_EWORKER);
    }
    mp_mbarrier_free(start);
    /* The contents: a counter's exact count, or the pairs' last values. */
    mp_mdict *d;
    int64_t x = -1;
    if ((rc = mp_mdict_new(t->s->m, t->dict, &d)) < 0)
        die("check", rc);
    if (t->what == DICT_PAIRS) {
        int len = mp_mdict_len(d);
        rc = mp_mdict_get_i64(d, "c0-k63", &x);
        if (len != KEYS * t->clients || rc < 0 || x % KEYS != 63)
            die("the dict has wrong contents", MP_EPROTO);
    } else if (mp_mdict_get_i64(d, "counter", &x) < 0 || x != (int64_t)t->clients * t->n) {
        die("the counter has a wrong value", MP_EPROTO);
    }
    mp_mdict_free(d);
    mp_manager_remove(t->s->m, t->dict);
    double ops = (double)t->clients * t->n * (t->what == DICT_PAIRS ? 2 : 1);
    return ops / (last - first);
}

static void figure(const char *name, trial t, const char *unit, const char *anchors)
{
    double v[TRIALS];
    run_trial(&t); /* warm-up */
    for (int i = 0; i < TRIALS; i++)
        v[i] = run_trial(&t);
    bench_report(name, v, TRIALS, unit, anchors);
}

/* ---- the TCP floor ------------------------------------------------------------------ */

enum { FRAME = 64 };

static void tcp_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        die("setsockopt TCP_NODELAY", -errno);
}

static bool io_all(int fd, unsigned char *b, bool out)
{
    for (size_t done = 0; done < FRAME;) {
        ssize_t n = out ? send(fd, b + done, FRAME - done, MSG_NOSIGNAL)
                        : recv(fd, b + done, FRAME - done, 0);
        if (n <= 0 && !(n < 0 && errno == EINTR))
            return false;
        done += n > 0 ? (size_t)n : 0;
    }
    return true;
}

/* The echo side, in a child: every frame back as it came, until EOF. */
static _Noreturn void tcp_echo(int lfd)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        _exit(1);
    tcp_nodelay(fd);
    unsigned char b[FRAME];
    while (io_all(fd, b, false) && io_all(fd, b, true)) {
    }
    _exit(0);
}

static double tcp_floor_trial(int fd)
{
    unsigned char b[FRAME];
    memset(b, 7, sizeof b);
    double t0 = bench_now();
    for (long i = 0; i < 2L * PAIRS; i++)
        if (!io_all(fd, b, true) || !io_all(fd, b, false))
            die("the TCP floor's echo", MP_ECONNRESET);
    return 2.0 * PAIRS / (bench_now() - t0);
}

static void tcp_floor(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 1) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) < 0)
        die("the TCP floor's listener", -errno);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", -errno);
    if (pid == 0)
        tcp_echo(lfd);
    close(lfd);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("the TCP floor's connect", -errno);
    tcp_nodelay(fd);
    double v[TRIALS];
    tcp_floor_trial(fd); /* warm-up */
    for (int i = 0; i < TRIALS; i++)
        v[i] = tcp_floor_trial(fd);
    close(fd);
    int status = 0;
    (void)waitpid(pid, &status, 0);
    bench_report("mproc_manager_tcp_floor_ops_per_s", v, TRIALS, "ops/s",
                 "peer_redis_tcp_ops_per_s");
}

int main(void)
{
    if (!mp_manager_available()) {
        printf("# bench_manager: this build has no manager (libsodium)\n");
        return 0;
    }
    server local, tcp;
    server_start(&local, false);
    server_start(&tcp, true);
    printf("# manager servers: %s (pid %d) and %s (pid %d); %d set+get pairs per trial\n",
           local.addr, (int)mp_manager_pid(local.m), tcp.addr, (int)mp_manager_pid(tcp.m), PAIRS);
    fflush(stdout);
    figure("mproc_manager_dict_ops_per_s", (trial){&local, LOCAL, 1, PAIRS, DICT_PAIRS, ""},
           "ops/s", "py_manager_dict_ops_per_s,peer_redis_unix_ops_per_s");
    figure("mproc_manager_dict_ops_per_s_unix_socket",
           (trial){&local, UNIX_SOCKET, 1, PAIRS, DICT_PAIRS, ""}, "ops/s",
           "peer_redis_unix_ops_per_s,py_manager_dict_ops_per_s");
    figure("mproc_manager_dict_ops_per_s_tcp", (trial){&tcp, TCP, 1, PAIRS, DICT_PAIRS, ""},
           "ops/s", "peer_redis_tcp_ops_per_s");
    figure("mproc_manager_locked_incr_per_s", (trial){&local, LOCAL, 2, LOCKED, LOCKED_INCR, ""},
           "incr/s", "py_value_locked_incr_per_s");
    figure("mproc_manager_dict_incr_per_s", (trial){&local, LOCAL, 2, LOCKED, DICT_INCR, ""},
           "incr/s", "py_value_locked_incr_per_s");
    figure("mproc_manager_ops_per_s_8clients_tcp",
           (trial){&tcp, TCP, MAXC, PAIRS_MANY, DICT_PAIRS, ""}, "ops/s",
           "peer_redis_tcp_ops_per_s");
    figure("mproc_manager_ops_per_s_8clients_local",
           (trial){&local, LOCAL, MAXC, PAIRS_MANY, DICT_PAIRS, ""}, "ops/s",
           "py_manager_dict_ops_per_s");
    tcp_floor();
    int rc = mp_manager_shutdown(local.m, 10);
    if (rc == 0)
        rc = mp_manager_shutdown(tcp.m, 10);
    mp_manager_free(local.m);
    mp_manager_free(tcp.m);
    return rc == 0 ? 0 : 1;
}
