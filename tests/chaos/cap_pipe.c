/*
 * cap_pipe.c - pipes: a writer killed at a random point or closing its end
 * early, and a process out of descriptors.
 *
 * Ledger: the writer counts each message before its send (attempted) and
 * after the send returned 0 (acked).  A pipe keeps what was written after
 * the writer dies, so the reader must get every acked message, in order,
 * whole, and then MP_EOF - never a hang, never a torn message.
 *
 * Readers in turn: a first reader receives some messages and is killed
 * while idle between receives; the parent then reads the rest from the
 * same end (one user at a time, as pipe.h allows).  A message the first
 * reader's receives did not return must still be in the pipe: every
 * acked message is received exactly once by one of the two.
 */
#include "chaos.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define NMSG   200
#define MAXLEN 6000

typedef struct pipe_ledger {
    volatile int attempted, acked;
    uint32_t got[NMSG];
} pipe_ledger;

static pipe_ledger *pl;
static mp_conn *rd, *wr;
static int close_after; /* the writer closes its end after this many; -1: never */

static size_t msg_len(int i)
{
    return 8 + (size_t)((unsigned)i * 2654435761u % (MAXLEN - 8));
}

/* Message i: its number, then bytes that follow from it. */
static void fill(unsigned char *b, int i)
{
    size_t n = msg_len(i);
    memcpy(b, &i, sizeof i);
    for (size_t k = sizeof i; k < n; k++)
        b[k] = (unsigned char)(i * 31 + (int)k);
}

static int writer(void *arg)
{
    (void)arg;
    static unsigned char b[MAXLEN];
    mp_conn_close(rd);
    for (int i = 0; i < NMSG; i++) {
        if (i == close_after) {
            mp_conn_close(wr);
            return 0;
        }
        fill(b, i);
        pl->attempted = i + 1;
        if (mp_conn_send(wr, b, msg_len(i)) != 0)
            return 1;
        pl->acked = i + 1;
    }
    return 0;
}

/* Reads until the end; returns how many came, checking order and bytes. */
static int read_all(void)
{
    static unsigned char b[MAXLEN], want[MAXLEN];
    int got = 0, rc;
    size_t len;
    while ((rc = mp_conn_recv(rd, b, sizeof b, &len, 10)) == 0) {
        int i;
        memcpy(&i, b, sizeof i);
        if (i < got) {
            __atomic_fetch_add(&chaos_t->dup, 1, __ATOMIC_RELAXED);
            continue;
        }
        fill(want, got);
        if (i != got || len != msg_len(got) || memcmp(b, want, len) != 0) {
            __atomic_fetch_add(&chaos_t->corrupt, 1, __ATOMIC_RELAXED);
            chaos_fail("message %d: got number %d, %zu bytes", got, i, len);
            return got;
        }
        got++;
    }
    /* A writer killed inside a send leaves a torn message: MP_EPROTO drops
     * it, then the end comes. */
    if (rc == MP_EPROTO)
        rc = mp_conn_recv(rd, b, sizeof b, &len, 10);
    CHAOS_CHECK(rc == MP_EOF, "the reader ended with %s, not MP_EOF", mp_err_name(rc));
    return got;
}

static void writer_round(chaos_rng *r)
{
    mp_process *p;
    bool kill_it = chaos_below(r, 3) != 0;
    close_after = kill_it ? -1 : (int)chaos_below(r, NMSG);
    CHAOS_CHECK(mp_pipe(&rd, &wr, false) == 0, "mp_pipe");
    CHAOS_CHECK(mp_process_new(writer, NULL, "chaos-writer", &p) == 0, "new");
    CHAOS_CHECK(mp_process_start(p) == 0, "start");
    mp_conn_close(wr);
    enum chaos_fault k = chaos_signal_kind(r);
    if (kill_it) {
        chaos_sleep_us(chaos_below(r, 3000));
        chaos_signal(mp_process_pid(p), k, r);
    } else {
        chaos_fault(CHAOS_F_PIPE_CLOSED);
    }
    chaos_expose(); /* the reader must see the end: MP_EOF */
    int got = read_all();
    if (got >= pl->acked && got <= pl->attempted)
        chaos_reported();
    else if (got < pl->acked)
        __atomic_fetch_add(&chaos_t->lost, (uint64_t)(pl->acked - got), __ATOMIC_RELAXED);
    else
        chaos_fail("%d messages came, only %d were sent", got, pl->attempted);
    int code = -1;
    CHAOS_CHECK(mp_process_join(p, 10) == 0, "join");
    mp_process_exitcode(p, &code);
    CHAOS_CHECK(code == (kill_it ? chaos_signal_code(k) : 0), "writer exit code %d", code);
    mp_process_free(p);
    mp_conn_free(rd);
    mp_conn_free(wr);
}

static int ready_fd;

/* Receives k messages, says so, and waits between receives to be killed:
 * the end is then the parent's, as pipe.h allows (one user at a time). */
static int first_reader(void *arg)
{
    static unsigned char b[MAXLEN];
    size_t len;
    mp_conn_close(wr);
    for (int i = 0; i < (int)(intptr_t)arg; i++) {
        if (mp_conn_recv(rd, b, sizeof b, &len, 20) != 0)
            break;
        int m;
        memcpy(&m, b, sizeof m);
        if (m >= 0 && m < NMSG)
            __atomic_fetch_add(&pl->got[m], 1, __ATOMIC_RELAXED);
    }
    chaos_put_int(ready_fd, 1);
    for (;;)
        pause();
    return 0; /* not reached */
}

/* Every acked message received exactly once, by one reader or the next. */
static void audit_readers(void)
{
    int missing = 0;
    for (int i = 0; i < NMSG; i++) {
        if (pl->got[i] > 1)
            __atomic_fetch_add(&chaos_t->dup, pl->got[i] - 1, __ATOMIC_RELAXED);
        if (i < pl->acked && pl->got[i] == 0)
            missing++;
    }
    if (missing) {
        __atomic_fetch_add(&chaos_t->lost, (uint64_t)missing, __ATOMIC_RELAXED);
        chaos_fail("%d messages vanished with a reader killed between its receives", missing);
    }
}

/* The parent reads what the first reader left, recording each message. */
static void read_rest(void)
{
    static unsigned char b[MAXLEN];
    size_t len;
    int rc, m;
    while ((rc = mp_conn_recv(rd, b, sizeof b, &len, 20)) == 0) {
        memcpy(&m, b, sizeof m);
        if (m >= 0 && m < NMSG)
            pl->got[m]++;
    }
    CHAOS_CHECK(rc == MP_EOF, "the second reader ended with %s", mp_err_name(rc));
}

/* Two readers in turn: the first killed while idle between receives. */
static void readers_round(chaos_rng *r)
{
    mp_process *w, *a;
    int fds[2], v;
    close_after = -1;
    chaos_pipe(fds);
    ready_fd = fds[1];
    CHAOS_CHECK(mp_pipe(&rd, &wr, false) == 0, "mp_pipe");
    CHAOS_CHECK(mp_process_new(writer, NULL, "chaos-writer", &w) == 0, "new");
    CHAOS_CHECK(mp_process_start(w) == 0, "start");
    intptr_t k = 1 + (intptr_t)chaos_below(r, NMSG / 2);
    CHAOS_CHECK(mp_process_new(first_reader, (void *)k, "chaos-reader", &a) == 0, "new");
    CHAOS_CHECK(mp_process_start(a) == 0, "start");
    mp_conn_close(wr);
    CHAOS_CHECK(chaos_get_int(fds[0], &v, 20) == 0, "the first reader never said done");
    enum chaos_fault kind = chaos_signal_kind(r);
    chaos_signal(mp_process_pid(a), kind, r);
    int code = 0;
    chaos_expose();
    if (mp_process_join(a, 10) == 0 && mp_process_exitcode(a, &code) == 0 &&
        code == chaos_signal_code(kind))
        chaos_reported();
    read_rest();
    CHAOS_CHECK(mp_process_join(w, 20) == 0, "the writer did not end");
    audit_readers();
    mp_process_free(a);
    mp_process_free(w);
    mp_conn_free(rd);
    mp_conn_free(wr);
    close(fds[0]);
    close(fds[1]);
}

/* With 16 descriptors at most, pipes and then queues must say when they
 * run out: MP_EMFILE. */
static int open_many(void *arg)
{
    (void)arg;
    mp_conn *a[64], *b[64];
    int n = 0, rc = 0;
    while (n < 64 && (rc = mp_pipe(&a[n], &b[n], chaos_below(&(chaos_rng){(uint64_t)n}, 2))) == 0)
        n++;
    for (int i = 0; i < n; i++) {
        mp_conn_free(a[i]);
        mp_conn_free(b[i]);
    }
    if (rc != MP_EMFILE)
        return n == 64 ? 0 : rc;
    /* A queue's memory file, at the limit too. */
    mp_queue *q[64];
    int m = 0;
    while (m < 64 && (rc = mp_queue_new(4096, &q[m])) == 0)
        m++;
    for (int i = 0; i < m; i++)
        mp_queue_free(q[i]);
    return m == 64 ? 0 : rc;
}

static void nofile(void)
{
    chaos_fault(CHAOS_F_NOFILE);
    chaos_expose();
    int rc = chaos_limited(RLIMIT_NOFILE, 16, false, open_many, NULL, 10);
    if (rc == MP_EMFILE)
        chaos_reported();
    else
        chaos_fail("out of descriptors: %d %s", rc, mp_err_name(rc));
}

void chaos_pipe_round(chaos_rng *r)
{
    pl = chaos_shared(sizeof *pl);
    unsigned v = chaos_below(r, 5);
    if (v == 0)
        nofile();
    else if (v == 1 && chaos_bug_enabled("pipe-readahead"))
        readers_round(r);
    else
        writer_round(r);
}
