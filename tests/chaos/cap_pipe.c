/*
 * cap_pipe.c - pipes: a writer killed at a random point or closing its end
 * early, and a process out of descriptors.
 *
 * Ledger: the writer counts each message before its send (attempted) and
 * after the send returned 0 (acked).  A pipe keeps what was written after
 * the writer dies, so the reader must get every acked message, in order,
 * whole, and then MP_EOF - never a hang, never a torn message.
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

/* With 3 descriptors to spare at most, what needs more must say so. */
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
    return n == 64 ? 0 : rc;
}

static void nofile(void)
{
    chaos_fault(CHAOS_F_NOFILE);
    chaos_expose();
    int rc = chaos_limited(RLIMIT_NOFILE, 16, false, open_many, NULL, 10);
    if (rc == MP_EMFILE)
        chaos_reported();
    else
        chaos_fail("mp_pipe out of descriptors returned %d %s", rc, mp_err_name(rc));
}

void chaos_pipe_round(chaos_rng *r)
{
    pl = chaos_shared(sizeof *pl);
    if (chaos_below(r, 5) == 0)
        nofile();
    else
        writer_round(r);
}
