/*
 * cap_manager.c - the manager: clients killed in the middle of their
 * calls, and the server itself killed under its clients.
 *
 * Ledger: client i counts each increment of its counter before the call
 * (attempted) and after the call returned 0 (acked); while the server
 * lives, its counter must end between the two.  Clients that talk to the
 * server over the socket (no_fastpath) must get an error code, not a hang,
 * once the server is gone.
 */
#include "chaos.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define NCL 3

typedef struct mgr_shared {
    volatile long attempted[NCL], acked[NCL];
    volatile int err[NCL], stop, ready;
    volatile bool no_fastpath[NCL];
} mgr_shared;

static mgr_shared *MS;
static char address[300];
static unsigned char key[64];
static int keylen;

static int client(void *arg)
{
    int i = (int)(intptr_t)arg;
    mp_manager_client_opts o = MP_MANAGER_CLIENT_OPTS_INIT;
    mp_manager *m;
    mp_mdict *d;
    char k[16];
    o.address = address;
    o.authkey = key;
    o.authkey_len = (size_t)keylen;
    o.timeout = 10;
    o.rpc_timeout = 10;
    o.no_fastpath = MS->no_fastpath[i];
    int rc = mp_manager_connect_opts(&o, &m);
    if (rc == 0 && (rc = mp_mdict_new(m, "chaos", &d)) != 0)
        mp_manager_free(m);
    if (rc != 0) {
        MS->err[i] = rc;
        __atomic_fetch_add(&MS->ready, 1, __ATOMIC_RELAXED);
        return 0;
    }
    __atomic_fetch_add(&MS->ready, 1, __ATOMIC_RELAXED);
    snprintf(k, sizeof k, "c%d", i);
    while (!MS->stop) {
        MS->attempted[i]++;
        rc = mp_mdict_incr(d, k, 1, NULL);
        if (rc != 0) {
            MS->err[i] = rc;
            break;
        }
        MS->acked[i]++;
    }
    mp_mdict_free(d);
    mp_manager_free(m);
    return 0;
}

/* Each counter between its acked and attempted increments. */
static void audit(mp_manager *m, int n)
{
    mp_mdict *d;
    CHAOS_CHECK(mp_mdict_new(m, "chaos", &d) == 0, "dict");
    for (int i = 0; i < n; i++) {
        char k[16];
        int64_t v = 0;
        snprintf(k, sizeof k, "c%d", i);
        int rc = mp_mdict_get_i64(d, k, &v);
        if (rc != 0 && MS->acked[i] == 0)
            continue; /* it never counted */
        CHAOS_CHECK(rc == 0, "reading c%d: %s", i, mp_err_name(rc));
        if (v < MS->acked[i])
            __atomic_fetch_add(&chaos_t->lost, (uint64_t)(MS->acked[i] - v), __ATOMIC_RELAXED);
        if (v > MS->attempted[i])
            __atomic_fetch_add(&chaos_t->dup, (uint64_t)(v - MS->attempted[i]), __ATOMIC_RELAXED);
    }
    mp_mdict_free(d);
}

static mp_manager *start_server(chaos_rng *r)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    mp_manager *m = NULL;
    char path[300];
    snprintf(path, sizeof path, "unix:%s/mgr.sock", chaos_dir);
    o.address = chaos_below(r, 2) ? path : NULL;
    o.memory = (size_t)4 << 20;
    /* Either way of starting a server: the program's method (a fork here)
     * or a fresh image in the manager role. */
    o.start_method = chaos_below(r, 2) ? MP_START_SPAWN : MP_START_DEFAULT;
    int rc = mp_manager_start(&o, &m);
    CHAOS_CHECK(rc == 0, "mp_manager_start: %s", mp_err_name(rc));
    if (rc != 0)
        return NULL;
    snprintf(address, sizeof address, "%s", mp_manager_address(m));
    keylen = mp_manager_authkey(m, key, sizeof key);
    return m;
}

/* Waits (bounded) until every client connected or failed to. */
static void wait_ready(int n)
{
    double end = chaos_now() + 20;
    while (MS->ready < n && chaos_now() < end)
        chaos_sleep_us(1000); /* bounded polling of a shared counter */
}

/* Kills the server, then gives its socket clients (bounded) time to
 * learn of it by themselves; clients that map the store may go on. */
static void strike_server(mp_manager *m, chaos_rng *r, int n, const enum chaos_fault *fate)
{
    enum chaos_fault k = chaos_signal_kind(r);
    chaos_fault(CHAOS_F_SERVER_KILLED);
    chaos_signal(mp_manager_pid(m), k, r);
    double end = chaos_now() + 15;
    for (int i = 0; i < n; i++)
        while (fate[i] == CHAOS_NFAULTS && MS->no_fastpath[i] && MS->err[i] == 0 &&
               chaos_now() < end)
            chaos_sleep_us(1000); /* bounded polling of a shared word */
    MS->stop = 1;
}

void chaos_manager_round(chaos_rng *r)
{
    if (!mp_manager_available()) {
        chaos_skip("the manager is not in this build");
        return;
    }
    MS = chaos_shared(sizeof *MS);
    mp_manager *m = start_server(r);
    mp_process *c[NCL];
    enum chaos_fault fate[NCL];
    int n = 1 + (int)chaos_below(r, NCL);
    bool server_dies = chaos_below(r, 3) == 0;
    if (!m)
        return;
    for (int i = 0; i < n; i++) {
        fate[i] = CHAOS_NFAULTS;
        MS->no_fastpath[i] = chaos_below(r, 2);
        CHAOS_CHECK(mp_process_new(client, (void *)(intptr_t)i, "chaos-client", &c[i]) == 0, "new");
        CHAOS_CHECK(mp_process_start(c[i]) == 0, "start");
    }
    wait_ready(n);
    for (int k = (int)chaos_below(r, 3); k > 0; k--) {
        int v = (int)chaos_below(r, (unsigned)n);
        chaos_sleep_us(chaos_below(r, 20000));
        if (fate[v] == CHAOS_NFAULTS) {
            fate[v] = chaos_signal_kind(r);
            chaos_signal(mp_process_pid(c[v]), fate[v], r);
        }
    }
    chaos_sleep_us(chaos_below(r, 10000));
    if (server_dies)
        strike_server(m, r, n, fate);
    else
        MS->stop = 1;
    for (int i = 0; i < n; i++) {
        CHAOS_CHECK(mp_process_join(c[i], 30) == 0, "a client did not end");
        if (server_dies && fate[i] == CHAOS_NFAULTS && MS->no_fastpath[i]) {
            chaos_expose(); /* a socket client of a dead server */
            if (MS->err[i] < 0)
                chaos_reported();
        } else if (fate[i] == CHAOS_NFAULTS && !server_dies) {
            /* (A client that maps the store may go on after the server
             * died, or learn of it: either is right.) */
            CHAOS_CHECK(MS->err[i] == 0, "client %d: %s", i, mp_err_name(MS->err[i]));
        }
        mp_process_free(c[i]);
    }
    MS->stop = 1;
    if (!server_dies) {
        audit(m, n);
        int rc = mp_manager_shutdown(m, 10);
        CHAOS_CHECK(rc == 0, "shutdown: %s", mp_err_name(rc));
    }
    mp_manager_free(m);
}
