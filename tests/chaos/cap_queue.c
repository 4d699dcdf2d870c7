/*
 * cap_queue.c - queues, plain and joinable: producers and consumers killed
 * at random points (inside a put or a get included), the queue filled, and
 * the guarantee of queue.h checked message by message.
 *
 * Ledger, in shared memory.  A producer counts each message before its put
 * (attempted) and after the put returned 0 (acked).  A consumer gets into
 * a slot in shared memory and marks where it is: GETTING before the get,
 * GOT once it returned, RECORDED once the message is counted in got[][].
 * After the round every acked message must have been got exactly once,
 * counting the message in the slot of a consumer killed in GOT (its get
 * had returned it).  A message whose get never returned to its consumer
 * must be back in the queue or counted by the queue itself
 * (mp_queue_stats.lost, and as done in a joinable queue): a missing
 * message the queue did not count is lost, even when it sits in the slot
 * of a consumer killed while GETTING - the queue had copied it out and
 * then forgot it.  (A consumer killed in the few instructions between its
 * get's return and its store of GOT would look the same; that window is
 * tiny beside the get's own.)  A message got twice is a duplicate
 * whatever the reason.
 */
#include "chaos.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define QP   4 /* producers; the last one is the round's parent filling the queue */
#define QM   256
#define QC   3
#define SLOT 256

enum { IDLE, GETTING, GOT, RECORDED };

typedef struct qmsg {
    uint32_t p, seq, sum;
} qmsg;

typedef struct qcons {
    volatile int state;
    size_t len;
    unsigned char slot[SLOT];
} qcons;

typedef struct qledger {
    volatile int attempted[QP], acked[QP];
    uint32_t got[QP][QM];
    qcons cs[QC];
} qledger;

static qledger *L;
static mp_queue *q;
static bool joinable;

static size_t qlen(uint32_t p, uint32_t seq)
{
    return sizeof(qmsg) + (p * 7919u + seq * 104729u) % (SLOT - sizeof(qmsg));
}

static uint32_t qsum(uint32_t p, uint32_t seq)
{
    return (p * 2654435761u) ^ (seq * 40503u) ^ 0x5a5a5a5au;
}

static void qfill(unsigned char *b, uint32_t p, uint32_t seq)
{
    qmsg m = {p, seq, qsum(p, seq)};
    memcpy(b, &m, sizeof m);
    for (size_t k = sizeof m; k < qlen(p, seq); k++)
        b[k] = (unsigned char)(p + seq + k);
}

/* Whether b (len bytes) is a whole, true message; *m is its header. */
static bool qvalid(const unsigned char *b, size_t len, qmsg *m)
{
    unsigned char want[SLOT];
    if (len < sizeof *m)
        return false;
    memcpy(m, b, sizeof *m);
    if (m->p >= QP || m->seq >= QM || len != qlen(m->p, m->seq))
        return false;
    qfill(want, m->p, m->seq);
    return memcmp(b, want, len) == 0;
}

static void record(const unsigned char *b, size_t len)
{
    qmsg m;
    if (!qvalid(b, len, &m)) {
        __atomic_fetch_add(&chaos_t->corrupt, 1, __ATOMIC_RELAXED);
        chaos_fail("a torn or false message of %zu bytes", len);
        return;
    }
    if ((int)m.seq >= L->attempted[m.p])
        chaos_fail("message %u/%u was never put", m.p, m.seq);
    __atomic_fetch_add(&L->got[m.p][m.seq], 1, __ATOMIC_RELAXED);
}

static int put_seq(int p, int seq, double timeout)
{
    unsigned char b[SLOT];
    qfill(b, (uint32_t)p, (uint32_t)seq);
    L->attempted[p] = seq + 1;
    int rc = mp_queue_put(q, b, qlen((uint32_t)p, (uint32_t)seq), timeout);
    if (rc == 0)
        L->acked[p] = seq + 1;
    return rc;
}

static int producer(void *arg)
{
    int p = (int)(intptr_t)arg;
    for (int seq = 0; seq < QM; seq++) {
        if (put_seq(p, seq, 2.0) != 0)
            break;
    }
    return 0;
}

static int consumer(void *arg)
{
    qcons *c = &L->cs[(intptr_t)arg];
    for (;;) {
        c->state = GETTING;
        memset(c->slot, 0xff, sizeof(qmsg));
        int rc = mp_queue_get(q, c->slot, SLOT, &c->len, 10);
        c->state = GOT;
        if (rc == MP_EOF)
            break;
        if (rc != 0) {
            chaos_fail("a consumer's get returned %s", mp_err_name(rc));
            return 1;
        }
        record(c->slot, c->len);
        c->state = RECORDED;
        if (joinable)
            mp_queue_task_done(q);
        c->state = IDLE;
    }
    c->state = IDLE;
    return 0;
}

/* The parent fills the queue until a put cannot wait: MP_EAGAIN. */
static void fill_up(void)
{
    for (int seq = 0; seq < QM; seq++) {
        int rc = put_seq(QP - 1, seq, 0);
        if (rc == 0)
            continue;
        chaos_fault(CHAOS_F_QUEUE_FILLED);
        chaos_expose();
        if (rc == MP_EAGAIN)
            chaos_reported();
        else
            chaos_fail("a put into a full queue returned %s", mp_err_name(rc));
        return;
    }
}

/* Whether a slot holds a whole message, judged by its own header (the
 * length a get stores may not have been written). */
static bool slot_msg(const unsigned char *slot, qmsg *m)
{
    memcpy(m, slot, sizeof *m);
    return m->p < QP && m->seq < QM && qvalid(slot, qlen(m->p, m->seq), m);
}

/* A dead consumer's slot: a message it got and had not counted is
 * counted now; one it was getting may be the one it took away. */
static void settle_consumer(int c, qmsg *taken, int *ntaken)
{
    qcons *cs = &L->cs[c];
    qmsg m;
    if (cs->state == GOT && qvalid(cs->slot, cs->len, &m))
        __atomic_fetch_add(&L->got[m.p][m.seq], 1, __ATOMIC_RELAXED);
    if (joinable && (cs->state == GOT || cs->state == RECORDED))
        mp_queue_task_done(q);
    if (cs->state == GETTING && slot_msg(cs->slot, &m))
        taken[(*ntaken)++] = m;
}

static void drain(void)
{
    unsigned char b[SLOT];
    size_t len;
    int rc;
    while ((rc = mp_queue_get(q, b, sizeof b, &len, 0)) == 0) {
        record(b, len);
        if (joinable)
            mp_queue_task_done(q);
    }
    CHAOS_CHECK(rc == MP_EOF, "draining a closed queue ended with %s", mp_err_name(rc));
}

static bool was_taken(const qmsg *taken, int n, int p, int seq)
{
    for (int i = 0; i < n; i++)
        if ((int)taken[i].p == p && (int)taken[i].seq == seq)
            return true;
    return false;
}

/* Every acked message got once, or taken away by a dead consumer and
 * counted as such (by its slot or by the queue's own counter). */
static void audit(const qmsg *taken, int ntaken, uint64_t *in_slots)
{
    mp_queue_stats st;
    uint64_t unexplained = 0;
    CHAOS_CHECK(mp_queue_stats_get(q, &st) == 0, "stats");
    for (int p = 0; p < QP; p++) {
        for (int seq = 0; seq < QM; seq++) {
            uint32_t g = L->got[p][seq];
            if (g > 1)
                __atomic_fetch_add(&chaos_t->dup, g - 1, __ATOMIC_RELAXED);
            if (g == 0 && seq < L->acked[p]) {
                unexplained++;
                if (was_taken(taken, ntaken, p, seq))
                    (*in_slots)++;
            }
        }
    }
    if (unexplained > st.lost) {
        __atomic_fetch_add(&chaos_t->lost, unexplained - st.lost, __ATOMIC_RELAXED);
        chaos_fail("%" PRIu64 " acked messages missing, %" PRIu64 " counted lost by the queue, "
                   "%" PRIu64 " of them copied out to a consumer killed inside its get",
                   unexplained, (uint64_t)st.lost, *in_slots);
    }
}

/* Joinable: once every message got is done (a dead consumer's taken
 * message counts as done by the queue itself), join returns at once. */
static void check_join(void)
{
    if (!joinable)
        return;
    int rc = mp_queue_join(q, 5);
    if (rc != 0) {
        mp_queue_stats st;
        mp_queue_stats_get(q, &st);
        chaos_fail("join after every task_done returned %s, %" PRIu64 " unfinished",
                   mp_err_name(rc), (uint64_t)st.unfinished);
    }
}

static void start_all(mp_process **pr, int n, mp_target_fn fn, const char *name)
{
    for (int i = 0; i < n; i++) {
        CHAOS_CHECK(mp_process_new(fn, (void *)(intptr_t)i, name, &pr[i]) == 0, "new");
        CHAOS_CHECK(mp_process_start(pr[i]) == 0, "start");
    }
}

/* Joins n processes; those in fate[] were struck and must say so. */
static void join_all(mp_process **pr, int n, const enum chaos_fault *fate)
{
    for (int i = 0; i < n; i++) {
        int code = 0, rc = mp_process_join(pr[i], 30);
        CHAOS_CHECK(rc == 0, "join: %s", mp_err_name(rc));
        mp_process_exitcode(pr[i], &code);
        if (fate[i] == CHAOS_NFAULTS) {
            CHAOS_CHECK(code == 0, "a process left alone exited %d", code);
            continue;
        }
        chaos_expose();
        if (code == chaos_signal_code(fate[i]) || code == 0)
            chaos_reported(); /* 0: it had finished before the signal came */
        else
            chaos_fail("a struck process exited %d", code);
    }
}

void chaos_queue_play(chaos_rng *r, bool join)
{
    static const size_t caps[] = {512, 1024, 4096, 65536};
    mp_queue_opts o = MP_QUEUE_OPTS_INIT;
    mp_process *pr[QP + QC];
    enum chaos_fault fate[QP + QC] = {0};
    int np = 1 + (int)chaos_below(r, QP - 1), nc = 1 + (int)chaos_below(r, QC), dead = 0;
    joinable = join;
    L = chaos_shared(sizeof *L);
    o.capacity = caps[chaos_below(r, 4)];
    o.max_messages = chaos_below(r, 2) ? 0 : 4 + chaos_below(r, 60);
    o.joinable = join;
    CHAOS_CHECK(mp_queue_new_opts(&o, &q) == 0, "queue");
    if (chaos_below(r, 3) == 0)
        fill_up();
    start_all(pr, np, producer, "chaos-producer");
    start_all(pr + np, nc, consumer, "chaos-consumer");
    for (int i = 0; i < np + nc; i++)
        fate[i] = CHAOS_NFAULTS;
    for (int k = 1 + (int)chaos_below(r, 2); k > 0; k--) {
        int v = (int)chaos_below(r, (unsigned)(np + nc));
        if (fate[v] != CHAOS_NFAULTS)
            continue;
        chaos_sleep_us(chaos_below(r, 20000));
        fate[v] = chaos_signal_kind(r);
        chaos_signal(mp_process_pid(pr[v]), fate[v], r);
    }
    join_all(pr, np, fate);
    mp_queue_close(q);
    join_all(pr + np, nc, fate + np);
    qmsg taken[QC];
    for (int c = 0; c < nc; c++)
        if (fate[np + c] != CHAOS_NFAULTS)
            settle_consumer(c, taken, &dead);
    drain();
    uint64_t in_slots = 0;
    audit(taken, dead, &in_slots);
    check_join();
    for (int i = 0; i < np + nc; i++)
        mp_process_free(pr[i]);
    mp_queue_free(q);
}

void chaos_queue_round(chaos_rng *r)
{
    chaos_queue_play(r, false);
}

void chaos_joinable_round(chaos_rng *r)
{
    chaos_queue_play(r, true);
}
