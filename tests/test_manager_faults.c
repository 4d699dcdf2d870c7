/*
 * test_manager_faults.c - the manager when processes die at the worst
 * moment: a client killed holding a lock, a client killed in the middle of
 * an operation on the store, the server killed while clients wait, a
 * client that stalls or stops reading.
 */
#include "mp_test.h"
#include "mpt_helpers.h"
#include "mpt_manager.h"

#include "managerd/mgr.h"
#include "testhooks.h"

/* ---- a client killed holding a lock ------------------------------------------------ */

typedef struct holder {
    fx *f;
    int kind;
    gate held;
} holder;

static int hold_forever(void *arg)
{
    holder *h = arg;
    mp_manager *m = fx_connect(h->f, h->kind);
    mp_mlock *l;
    mp_mcond *c;
    if (mp_mlock_new(m, "l", &l) || mp_mlock_acquire(l, 10) || mp_mcond_new(m, "c", &c) ||
        mp_mcond_acquire(c, 10) || mp_mcond_acquire(c, 10))
        return 1;
    gate_open(&h->held);
    pause(); /* until killed */
    return 2;
}

static void killed_holder(int kind)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_LOCAL);
    holder h = {&f, kind, {-1, -1}};
    gate_init(&h.held);
    pid_t pid = fork_child(hold_forever, &h);
    CHECK_EQ(gate_wait(&h.held, 30), 0);
    mp_mlock *l;
    mp_mcond *c;
    CHECK_OK(mp_mlock_new(f.client, "l", &l));
    CHECK_OK(mp_mcond_new(f.client, "c", &c));
    CHECK_ERR(mp_mlock_acquire(l, 0.05), MP_ETIMEDOUT);
    CHECK_EQ(kill(pid, SIGKILL), 0);
    reap_within(pid, 10);
    /* The server saw the connection end and released both. */
    CHECK_OK(mp_mlock_acquire(l, 10));
    CHECK_OK(mp_mcond_acquire(c, 10));
    CHECK_OK(mp_mlock_release(l));
    CHECK_OK(mp_mcond_release(c));
    mp_mlock_free(l);
    mp_mcond_free(c);
    gate_close(&h.held);
    fx_stop(&f);
}

TEST(killed_holder_local)
{
    killed_holder(K_LOCAL);
}

TEST(killed_holder_unix)
{
    killed_holder(K_UNIX);
}

TEST(killed_holder_tcp)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_TCP);
    holder h = {&f, K_TCP, {-1, -1}};
    gate_init(&h.held);
    pid_t pid = fork_child(hold_forever, &h);
    CHECK_EQ(gate_wait(&h.held, 30), 0);
    mp_mlock *l;
    CHECK_OK(mp_mlock_new(f.owner, "l", &l));
    CHECK_EQ(kill(pid, SIGKILL), 0);
    reap_within(pid, 10);
    CHECK_OK(mp_mlock_acquire(l, 10));
    mp_mlock_free(l);
    gate_close(&h.held);
    fx_stop(&f);
}

/* A remote client killed while the server waits on its behalf: the
 * server thread notices, and the dead client ends up holding nothing. */
static int wait_for_lock(void *arg)
{
    holder *h = arg;
    mp_manager *m = fx_connect(h->f, K_UNIX);
    mp_mlock *l;
    if (mp_mlock_new(m, "l", &l))
        return 1;
    gate_open(&h->held);
    mp_mlock_acquire(l, MP_FOREVER);
    pause();
    return 2;
}

TEST(killed_waiter_holds_nothing)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_LOCAL);
    mp_mlock *l;
    CHECK_OK(mp_mlock_new(f.client, "l", &l));
    CHECK_OK(mp_mlock_acquire(l, 0));
    holder h = {&f, K_UNIX, {-1, -1}};
    gate_init(&h.held);
    pid_t pid = fork_child(wait_for_lock, &h);
    CHECK_EQ(gate_wait(&h.held, 30), 0);
    CHECK_EQ(kill(pid, SIGKILL), 0);
    reap_within(pid, 10);
    CHECK_OK(mp_mlock_release(l));
    /* Whether or not the dead client's thread took it in between, the
     * lock is free again within a slice or two. */
    mp_manager *other = fx_connect(&f, K_UNIX);
    mp_mlock *l2;
    CHECK_OK(mp_mlock_new(other, "l", &l2));
    CHECK_OK(mp_mlock_acquire(l2, 10));
    CHECK_OK(mp_mlock_release(l2));
    mp_mlock_free(l2);
    mp_manager_free(other);
    mp_mlock_free(l);
    gate_close(&h.held);
    fx_stop(&f);
}

/* ---- a client killed inside an operation --------------------------------------------- */

static uint64_t die_at;

static void die_here(uint64_t logged)
{
    if (logged >= die_at)
        raise(SIGKILL);
}

typedef struct victim {
    fx *f;
    uint64_t at;
    int round;
} victim;

#define KEYS 8

/* One transaction that sets KEYS keys to the same new value and grows a
 * list, killed at its at-th logged write. */
static int die_in_operation(void *arg)
{
    victim *v = arg;
    mp_mdict *d;
    mp_mlist *l;
    if (mp_mdict_new(v->f->owner, "atomic", &d) || mp_mlist_new(v->f->owner, "grow", &l))
        return 1;
    char keys[KEYS][8], big[300];
    memset(big, 'b', sizeof big);
    mp_mdict_op ops[KEYS + 1];
    for (int i = 0; i < KEYS; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        /* Values of changing sizes: new entries, freed ones, in-place writes. */
        ops[i] = (mp_mdict_op){.kind = MP_MTXN_SET,
                               .key = keys[i],
                               .value = big,
                               .len = (size_t)(8 + (v->round * 37 + i) % 280)};
    }
    char tag = (char)('A' + v->round % 26);
    memset(big, tag, sizeof big);
    ops[KEYS] = (mp_mdict_op){.kind = MP_MTXN_INCR, .key = "round", .delta = 1};
    die_at = v->at;
    mp__mstore_fault = die_here;
    mp_mdict_txn(d, ops, KEYS + 1);
    mp_mitem items[40];
    for (int i = 0; i < 40; i++)
        items[i] = (mp_mitem){NULL, big, (size_t)(1 + i * 7)};
    mp_mlist_extend(l, items, 40);
    mp__mstore_fault = NULL;
    return 0; /* at beyond the operation's writes: it completed */
}

/* All keys hold one value (the transaction happened wholly or not at
 * all), and round counts the transactions that happened. */
static void check_atomic(mp_manager *m, int64_t *rounds, int64_t *items)
{
    mp_mdict *d;
    mp_mlist *l;
    CHECK_OK(mp_mdict_new(m, "atomic", &d));
    CHECK_OK(mp_mlist_new(m, "grow", &l));
    void *first = NULL;
    size_t flen = 0;
    int rc = mp_mdict_get_alloc(d, "k0", &first, &flen);
    for (int i = 1; i < KEYS; i++) {
        char key[8];
        void *v = NULL;
        size_t len = 0;
        snprintf(key, sizeof key, "k%d", i);
        CHECK_EQ(mp_mdict_get_alloc(d, key, &v, &len), rc);
        if (rc == 0)
            CHECK_EQ(((char *)v)[0], ((char *)first)[0]);
        free(v);
    }
    free(first);
    *rounds = 0;
    rc = mp_mdict_get_i64(d, "round", rounds);
    CHECK(rc == 0 || rc == MP_ENOKEY);
    *items = mp_mlist_len(l);
    CHECK_EQ(*items % 40, 0);
    mp_mitems *it;
    CHECK_EQ(mp_mlist_slice(l, 0, INT64_MAX, &it), (int)*items);
    for (size_t i = 0; i < it->n; i++)
        CHECK_EQ(it->item[i].len, 1 + (i % 40) * 7);
    mp_mitems_free(it);
    mp_mdict_free(d);
    mp_mlist_free(l);
}

TEST_TIMEOUT(killed_inside_an_operation, 120)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_LOCAL);
    int64_t done = 0, rounds, items, killed = 0;
    for (uint64_t at = 1; at < 700; at += 9) {
        victim v = {&f, at, (int)at};
        pid_t pid = fork_child(die_in_operation, &v);
        int st = reap_within(pid, 30);
        if (WIFSIGNALED(st)) {
            CHECK_EQ(WTERMSIG(st), SIGKILL);
            killed++;
        } else {
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            done++;
        }
        /* The next operation rolls back whatever the dead one left. */
        check_atomic(f.client, &rounds, &items);
    }
    CHECK_GE(killed, 10);
    CHECK_GE(done, 1);
    CHECK_GE(rounds, done);
    CHECK_GE(items / 40, done);
    fx_stop(&f);
}

/* ---- the server killed ------------------------------------------------------------- */

typedef struct waiter {
    fx *f;
    int kind;
    gate ready;
} waiter;

/* Waits forever on a queue; the server's death must end the wait. */
static int wait_on_queue(void *arg)
{
    waiter *w = arg;
    mp_manager *m = fx_connect(w->f, w->kind);
    mp_mqueue *q;
    if (mp_mqueue_new(m, "q", 0, &q))
        return 1;
    gate_open(&w->ready);
    char buf[8];
    size_t len;
    double t0 = mpt_now();
    int rc = mp_mqueue_get(q, buf, sizeof buf, &len, MP_FOREVER);
    if (rc != MP_ECONNRESET)
        return 2;
    if (mpt_now() - t0 > 20)
        return 3;
    if (mp_mqueue_qsize(q) != MP_ECONNRESET)
        return 4; /* and every later call */
    mp_mqueue_free(q);
    if (m != w->f->owner)
        mp_manager_free(m);
    return 0;
}

/* A local client and a remote one of the given kind wait forever; the
 * server is killed; both get MP_ECONNRESET promptly. */
static void server_killed(int kind)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, kind);
    waiter w[2] = {{&f, K_LOCAL, {-1, -1}}, {&f, kind, {-1, -1}}};
    pid_t p[2];
    for (int i = 0; i < 2; i++) {
        gate_init(&w[i].ready);
        p[i] = fork_child(wait_on_queue, &w[i]);
        CHECK_EQ(gate_wait(&w[i].ready, 30), 0);
    }
    /* Let the waits begin (nothing to synchronise on: a wait in the
     * server or in the store sends no signal). */
    nanosleep(&(struct timespec){0, 100000000}, NULL);
    pid_t server = mp_manager_pid(f.owner);
    CHECK_EQ(kill(server, SIGKILL), 0);
    for (int i = 0; i < 2; i++) {
        int st = reap_within(p[i], 30);
        CHECK(WIFEXITED(st));
        CHECK_EQ(WEXITSTATUS(st), 0);
        gate_close(&w[i].ready);
    }
    mp_mdict *d;
    CHECK_ERR(mp_mdict_new(f.client, "after", &d), MP_ECONNRESET);
    if (f.client != f.owner)
        mp_manager_free(f.client);
    CHECK_ERR(mp_mdict_new(f.owner, "after", &d), MP_ECONNRESET);
    mp_manager_free(f.owner);
    CHECK(mpt_wait_gone(server, 5));
}

TEST_TIMEOUT(server_killed_unix, 60)
{
    server_killed(K_UNIX);
}

TEST_TIMEOUT(server_killed_tcp, 60)
{
    server_killed(K_TCP);
}

/* ---- stalled clients --------------------------------------------------------------------- */

/* A raw connection that authenticates, then misbehaves. */
static mp__mconn raw_client(fx *f, uint32_t want)
{
    mp__maddr a;
    CHECK_OK(mp__maddr_parse(f->addr, &a));
    int fd = mp__maddr_connect(&a, mp__deadline(10));
    CHECK_OK(fd);
    mp__mconn c;
    mp__mconn_init(&c, fd);
    uint8_t master[MC_KEY];
    mp__crypto_master(f->key, (size_t)f->keylen, master);
    mp__mwelcome w;
    CHECK_OK(mp__mconn_client_hello(&c, master, want, mp__deadline(10), &w));
    CHECK_EQ(w.store_fd, -1);
    return c;
}

/* Half a frame, then nothing; and a client that sends requests for big
 * values without ever reading the answers: neither slows the others. */
TEST_TIMEOUT(stalled_clients_stall_nobody, 60)
{
    SKIP_WITHOUT_MANAGER();
    fx f;
    fx_start(&f, K_UNIX);
    mp_mdict *d;
    CHECK_OK(mp_mdict_new(f.client, "d", &d));
    static uint8_t big[1 << 20];
    CHECK_OK(mp_mdict_set(d, "big", big, sizeof big));
    mp__mconn half = raw_client(&f, 0), deaf = raw_client(&f, 0);
    uint8_t part[6] = {100, 0, 0, 0, 1, 1};
    CHECK_EQ(write(half.fd, part, sizeof part), (ssize_t)sizeof part);
    mp__mbytes key = {"big", 3};
    mp__mreq rq = {0};
    rq.op = MX_D_GET;
    rq.gen = 1;
    rq.b = sizeof big;
    rq.str = &key;
    rq.nstr = 1;
    mp__mreq open = {0};
    /* The object's slot and generation, as the server numbers them. */
    mp__mbytes nm = {"d", 1};
    open.op = MX_OPEN;
    open.a = MP_MDICT;
    open.str = &nm;
    open.nstr = 1;
    int n = mp__wire_encode_req(&open, &deaf.tx, &deaf.tx_cap, MC_TAG);
    CHECK_OK(mp__mconn_send(&deaf, (size_t)n, mp__deadline(5)));
    const uint8_t *p;
    size_t len;
    CHECK_OK(mp__mconn_recv(&deaf, &p, &len, mp__deadline(5)));
    mp__mrep rp;
    mp__mrep_init(&rp);
    CHECK_OK(mp__wire_decode_rep(p, len, MX_OPEN, 0, &rp));
    rq.obj = (uint32_t)rp.a;
    rq.gen = (uint32_t)rp.b;
    mp__mrep_free(&rp);
    for (int i = 0; i < 64; i++) {
        n = mp__wire_encode_req(&rq, &deaf.tx, &deaf.tx_cap, MC_TAG);
        int rc = mp__mconn_send(&deaf, (size_t)n, mp__deadline(0.2));
        if (rc == MP_ETIMEDOUT)
            break; /* the server stopped reading: its thread is stuck sending */
        CHECK_OK(rc);
    }
    /* Everyone else goes on at full speed. */
    double t0 = mpt_now();
    for (int i = 0; i < 200; i++)
        CHECK_OK(mp_mdict_set_i64(d, "n", i));
    CHECK(mpt_now() - t0 < 10);
    mp__mconn_close(&half);
    mp__mconn_close(&deaf);
    mp_mdict_free(d);
    fx_stop(&f);
}

MPT_MAIN()

/* ---- a server that cannot start ---------------------------------------------------- */

/* Whether the calling process has no child left, zombie or running. */
static bool no_child_left(void)
{
    return waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD;
}

/* A fresh image that ends before it is ready is an error that says so,
 * at once: not a hang until the deadline, and no process left. */
TEST(server_image_that_ends_is_an_error)
{
    SKIP_WITHOUT_MANAGER();
    mp__manager_start_fault = MP__MF_EXIT;
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.start_method = MP_START_SPAWN;
    o.timeout = 60;
    mp_manager *m = mpt_not_null();
    double t0 = mpt_now();
    CHECK_ERR(mp_manager_start(&o, &m), MP_ECHILD);
    CHECK(mpt_now() - t0 < 30); /* the end was seen, not the deadline */
    CHECK(m == NULL);
    CHECK(strstr(mp_last_error_detail(), "ended before it was ready (exit 3)") != NULL);
    CHECK(no_child_left());
    /* Nothing was left half-done: the next start works. */
    mp__manager_start_fault = MP__MF_NONE;
    CHECK_OK(mp_manager_start(&o, &m));
    pid_t server = mp_manager_pid(m);
    CHECK_OK(mp_manager_shutdown(m, 10));
    mp_manager_free(m);
    CHECK(mpt_wait_gone(server, 10));
    CHECK(no_child_left());
}

/* A fresh image that never answers is killed at the deadline. */
TEST(server_image_that_stalls_times_out)
{
    SKIP_WITHOUT_MANAGER();
    mp__manager_start_fault = MP__MF_STALL;
    bool detached[] = {false, true};
    for (size_t i = 0; i < 2; i++) {
        mp_manager_opts o = MP_MANAGER_OPTS_INIT;
        o.start_method = MP_START_SPAWN;
        o.timeout = 0.5;
        o.detached = detached[i];
        mp_manager *m = mpt_not_null();
        CHECK_ERR(mp_manager_start(&o, &m), MP_ETIMEDOUT);
        CHECK(m == NULL);
        CHECK(strstr(mp_last_error_detail(), "not ready within") != NULL);
        CHECK(no_child_left());
    }
}
