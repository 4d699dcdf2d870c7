/*
 * test_comm.c - ranks on the local engine: the world, point to point,
 * non-blocking requests with futures, timeouts, bad arguments, mp_run's
 * outcomes, and ranks that die at the worst moment.  (Collectives:
 * test_comm_coll.c; the launcher: test_mprun.c.)
 */
#include "mp_test.h"

#include "comm/engine.h"
#include "comm/local.h"
#include "comm_test.h"
#include "mpt_helpers.h"
#include "testhooks.h"

#include <math.h>

/* The byte at i of a message of seed s. */
static unsigned char pat(unsigned s, size_t i)
{
    return (unsigned char)(s * 131u + i * 7u + (i >> 9));
}

static void fill(void *buf, size_t len, unsigned s)
{
    for (size_t i = 0; i < len; i++)
        ((unsigned char *)buf)[i] = pat(s, i);
}

/* 0, or the first index where buf differs from the pattern, plus one. */
static size_t differs(const void *buf, size_t len, unsigned s)
{
    for (size_t i = 0; i < len; i++)
        if (((const unsigned char *)buf)[i] != pat(s, i))
            return i + 1;
    return 0;
}

static int run_ok(int n, mp_rank_fn fn, void *arg)
{
    mp_run_opts o = MP_RUN_OPTS_INIT;
    o.timeout = 50;
    return mp_run_with_opts(n, fn, arg, &o);
}

/* Options for a run in which a rank is meant to die: the others go on,
 * and every rank's exit status lands in codes. */
static mp_run_opts opts_keep_going(int *codes)
{
    mp_run_opts o = MP_RUN_OPTS_INIT;
    o.keep_going = true;
    o.timeout = 40;
    o.exitcodes = codes;
    return o;
}

/* ---- the world ---------------------------------------------------------------------- */

TEST(world_of_one)
{
    mp_comm *w, *again;
    CHECK_OK(mp_comm_world(&w));
    CHECK_OK(mp_comm_world(&again));
    CHECK(w == again);
    CHECK_EQ(mp_comm_rank(w), 0);
    CHECK_EQ(mp_comm_size(w), 1);
    CHECK_STREQ(mp_comm_engine(w), "local");
    char name[256];
    CHECK_GE(mp_comm_processor_name(name, sizeof name), 1);
    CHECK_ERR(mp_comm_processor_name(name, 1), MP_ERANGE);
    /* Sending to oneself works for what fits the ring. */
    char msg[100], got[100];
    fill(msg, sizeof msg, 3);
    CHECK_OK(mp_comm_send(w, msg, sizeof msg, 0, 5, 1.0));
    mp_comm_status st;
    CHECK_OK(mp_comm_recv(w, got, sizeof got, MP_ANY_SOURCE, MP_ANY_TAG, &st, 1.0));
    CHECK_EQ(st.source, 0);
    CHECK_EQ(st.tag, 5);
    CHECK_EQ(st.count, sizeof msg);
    CHECK_EQ(differs(got, sizeof got, 3), 0);
    int x = 41, y = 0;
    CHECK_OK(mp_comm_allreduce(w, &x, &y, 1, MP_TYPE_i, MP_OP_SUM, 1.0));
    CHECK_EQ(y, 41);
    CHECK_OK(mp_comm_bcast(w, &x, sizeof x, 0, 1.0));
    CHECK_OK(mp_comm_barrier(w, 1.0));
    CHECK_OK(mp_comm_finalize());
    CHECK_ERR(mp_comm_barrier(w, 1.0), MP_ECLOSED);
    CHECK_ERR(mp_comm_world(&again), MP_ECLOSED);
    CHECK_OK(mp_comm_finalize()); /* twice is fine */
}

static int hello(mp_comm *w, void *arg)
{
    int *seen = arg;
    mp_comm *again;
    RK_OK(mp_comm_world(&again));
    RK_CHECK(again == w);
    RK_EQ(mp_comm_size(w), seen[0]);
    RK_CHECK(mp_comm_rank(w) >= 0 && mp_comm_rank(w) < seen[0]);
    RK_CHECK(strcmp(mp_comm_engine(w), "local") == 0);
    return 0;
}

TEST(run_gives_each_rank_its_world)
{
    int sizes[] = {1, 2, 3, 4, 7};
    for (size_t i = 0; i < MP__ARRAY_SIZE(sizes); i++) {
        int n = sizes[i];
        int codes[7];
        mp_run_opts o = MP_RUN_OPTS_INIT;
        o.exitcodes = codes;
        CHECK_EQ(mp_run_with_opts(n, hello, &n, &o), 0);
        for (int r = 0; r < n; r++)
            CHECK_EQ(codes[r], 0);
    }
}

/* ---- point to point ---------------------------------------------------------------- */

/* Sizes across every path: empty, small, the eager limit and around it,
 * pipeline pieces, 1 MiB and 16 MiB. */
static const size_t sizes[] = {
    0,        1,        8, 100, 4095, 16383, 16384, 16385, (64u << 10) + 3, (256u << 10) + 1,
    1u << 20, 16u << 20};

static int p2p_sizes_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    size_t max = (size_t)16 << 20;
    unsigned char *buf = malloc(max);
    RK_CHECK(buf);
    for (size_t k = 0; k < MP__ARRAY_SIZE(sizes); k++) {
        size_t len = sizes[k];
        for (int dir = 0; dir < 2; dir++) {
            int sender = dir, receiver = 1 - dir;
            if (rk_me == sender) {
                fill(buf, len, (unsigned)k);
                RK_OK(mp_comm_send(w, buf, len, receiver, (int)k, 30));
            } else {
                memset(buf, 0xee, len + 1 <= max ? len + 1 : len);
                mp_comm_status st;
                RK_OK(mp_comm_recv(w, buf, max, sender, (int)k, &st, 30));
                RK_EQ(st.count, len);
                RK_EQ(st.source, sender);
                RK_EQ(st.tag, (int)k);
                RK_EQ(differs(buf, len, (unsigned)k), 0);
                if (len < max)
                    RK_EQ(buf[len], 0xee); /* nothing beyond the message */
            }
        }
    }
    free(buf);
    return 0;
}

TEST_TIMEOUT(p2p_sizes, 120)
{
    CHECK_EQ(run_ok(2, p2p_sizes_rank, NULL), 0);
}

/* The same with single-copy reads refused: the pipeline carries them. */
TEST_TIMEOUT(p2p_sizes_pipeline, 120)
{
    mp__lp_set_cma(false);
    CHECK_EQ(run_ok(2, p2p_sizes_rank, NULL), 0);
}

static int any_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    int n = mp_comm_size(w);
    if (rk_me != 0) {
        /* Tags 10+rank, then 20+rank; a large one between, started
         * without waiting (a blocking send of it would wait for rank 0,
         * which first wants the 20s). */
        int v = rk_me;
        RK_OK(mp_comm_send(w, &v, sizeof v, 0, 10 + rk_me, 10));
        size_t big = 100000;
        unsigned char *b = malloc(big);
        RK_CHECK(b);
        fill(b, big, (unsigned)rk_me);
        mp_future *f;
        RK_OK(mp_comm_isend(w, b, big, 0, 30, &f));
        RK_OK(mp_comm_send(w, &v, sizeof v, 0, 20 + rk_me, 10));
        RK_OK(mp_future_get(f, NULL, 0, NULL, 10));
        mp_future_free(f);
        free(b);
        return mp_comm_barrier(w, 10);
    }
    /* The 20-tags first, by tag, from anyone: each sender's 10 and 30
     * wait (they do not match) and keep their order. */
    int seen = 0;
    for (int i = 1; i < n; i++) {
        int v;
        mp_comm_status st;
        RK_OK(mp_comm_recv(w, &v, sizeof v, MP_ANY_SOURCE, 20 + i, &st, 10));
        RK_EQ(v, i);
        RK_EQ(st.source, i);
        seen |= 1 << i;
    }
    RK_EQ(seen, (1 << n) - 2);
    for (int i = 1; i < n; i++) {
        int v;
        mp_comm_status st;
        /* From rank i, any tag: its first message, tag 10 + i. */
        RK_OK(mp_comm_recv(w, &v, sizeof v, i, MP_ANY_TAG, &st, 10));
        RK_EQ(st.tag, 10 + i);
        RK_EQ(v, i);
    }
    unsigned char *b = malloc(100000);
    RK_CHECK(b);
    for (int i = 1; i < n; i++) {
        mp_comm_status st;
        RK_OK(mp_comm_recv(w, b, 100000, MP_ANY_SOURCE, MP_ANY_TAG, &st, 10));
        RK_EQ(st.tag, 30);
        RK_EQ(st.count, 100000);
        RK_EQ(differs(b, 100000, (unsigned)st.source), 0);
    }
    free(b);
    /* Nothing else is there. */
    RK_ERR(mp_comm_probe(w, MP_ANY_SOURCE, MP_ANY_TAG, NULL, 0), MP_ETIMEDOUT);
    return mp_comm_barrier(w, 10);
}

TEST(p2p_any_source_any_tag)
{
    CHECK_EQ(run_ok(4, any_rank, NULL), 0);
    CHECK_EQ(run_ok(7, any_rank, NULL), 0);
}

static int order_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    enum { COUNT = 3000 };
    unsigned char *b = malloc(70000);
    RK_CHECK(b);
    for (unsigned i = 0; i < COUNT; i++) {
        /* Mostly small, every 97th large: eager records and rendezvous
         * requests interleave in one ring. */
        size_t len = i % 97 == 0 ? 70000 : 4 + i % 50;
        if (rk_me == 1) {
            fill(b, len, i);
            RK_OK(mp_comm_send(w, b, len, 0, (int)(i % 3), 10));
        } else {
            mp_comm_status st;
            RK_OK(mp_comm_recv(w, b, 70000, 1, MP_ANY_TAG, &st, 10));
            RK_EQ(st.count, len);
            RK_EQ(st.tag, (int)(i % 3));
            RK_EQ(differs(b, len, i), 0);
        }
    }
    free(b);
    return 0;
}

TEST(p2p_keeps_order)
{
    CHECK_EQ(run_ok(2, order_rank, NULL), 0);
}

/* Rank 1 floods rank 0 (more than its ring holds, so it waits for room)
 * while rank 0 takes rank 2's messages by name, one tag first: those
 * receives wait on rank 2's ring alone, meet records for the other tag
 * and a rendezvous there, and must leave everything else in order.  Every
 * message arrives once, in the order of its sender and tag. */
enum { FLOOD = 6000, NAMED = 3000 };

static size_t flood_len(unsigned i)
{
    return 8 + i % 120;
}

static size_t named_len(unsigned i)
{
    return i % 500 == 250 ? 70000 : 4 + i % 60;
}

static int named_tag(unsigned i)
{
    return i % 4 == 3 ? 3 : 2;
}

/* Takes rank 1's next flood message (number *next), by name or from any
 * source. */
static int flood_take(mp_comm *w, unsigned char *b, unsigned *next, bool any)
{
    mp_comm_status st;
    RK_OK(mp_comm_recv(w, b, 70000, any ? MP_ANY_SOURCE : 1, any ? MP_ANY_TAG : 1, &st, 20));
    RK_EQ(st.source, 1);
    RK_EQ(st.tag, 1);
    RK_EQ(st.count, flood_len(*next));
    RK_EQ(differs(b, st.count, *next), 0);
    ++*next;
    return 0;
}

/* Takes rank 2's messages of tag, in order, and every 100th a flood one. */
static int named_take(mp_comm *w, unsigned char *b, int tag, unsigned *flooded)
{
    for (unsigned i = 0; i < NAMED; i++) {
        if (named_tag(i) != tag)
            continue;
        mp_comm_status st;
        RK_OK(mp_comm_recv(w, b, 70000, 2, tag, &st, 20));
        RK_EQ(st.source, 2);
        RK_EQ(st.tag, tag);
        RK_EQ(st.count, named_len(i));
        RK_EQ(differs(b, st.count, 100000 + i), 0);
        if (i % 100 == 0 && *flooded < FLOOD)
            RK_PASS(flood_take(w, b, flooded, false));
    }
    return 0;
}

static int flood_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    unsigned char *b = malloc(70000);
    RK_CHECK(b);
    if (rk_me == 1) {
        for (unsigned i = 0; i < FLOOD; i++) {
            fill(b, flood_len(i), i);
            RK_OK(mp_comm_send(w, b, flood_len(i), 0, 1, 20));
        }
    } else if (rk_me == 2) {
        for (unsigned i = 0; i < NAMED; i++) {
            fill(b, named_len(i), 100000 + i);
            RK_OK(mp_comm_send(w, b, named_len(i), 0, named_tag(i), 20));
        }
    } else if (rk_me == 0) {
        unsigned flooded = 0;
        RK_PASS(named_take(w, b, 2, &flooded));
        RK_PASS(named_take(w, b, 3, &flooded));
        while (flooded < FLOOD)
            RK_PASS(flood_take(w, b, &flooded, flooded % 7 == 0));
        RK_ERR(mp_comm_probe(w, MP_ANY_SOURCE, MP_ANY_TAG, NULL, 0), MP_ETIMEDOUT);
    }
    free(b);
    return mp_comm_barrier(w, 20);
}

TEST_TIMEOUT(p2p_named_source_amid_a_flood, 120)
{
    CHECK_EQ(run_ok(3, flood_rank, NULL), 0);
    CHECK_EQ(run_ok(4, flood_rank, NULL), 0);
}

/* Bytes of a message that look like the stamp and header of the record to
 * come at their line in the ring's next lap are not taken for one: the
 * receiver zeroes them when it takes the message.  (The world's ring from
 * rank 0 to rank 1 starts empty, at position 0: the records' positions are
 * known.) */
static int forged_stamp_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    mp__llayout lay;
    RK_OK(mp__lseg_layout(2, &lay));
    /* Records of exactly eager bytes, ring_bytes / eager of them a lap. */
    size_t len = lay.eager - sizeof(mp__lrec);
    uint64_t per_lap = lay.ring_bytes / lay.eager;
    unsigned char *b = calloc(1, len);
    RK_CHECK(b);
    mp_comm_status st;
    if (rk_me == 0) {
        for (uint64_t i = 0; i < per_lap; i++) {
            uint64_t pos = i * lay.eager;
            for (uint64_t off = MP__L_LINE; off < lay.eager; off += MP__L_LINE) {
                mp__lrec fake = {mp__lrec_stamp(pos + off + lay.ring_bytes), MP__REC_EAGER, 8, 7,
                                 0};
                memcpy(b + off - sizeof fake, &fake, sizeof fake);
            }
            RK_OK(mp_comm_send(w, b, len, 1, 7, 10));
        }
        /* One line at the start of the next lap; the line after it held
         * the first forgery. */
        RK_OK(mp_comm_send(w, "first", 6, 1, 7, 10));
        RK_OK(mp_comm_recv(w, b, 1, 1, 8, NULL, 10));
        uint64_t v = 42;
        RK_OK(mp_comm_send(w, &v, sizeof v, 1, 7, 10));
    } else if (rk_me == 1) {
        for (uint64_t i = 0; i < per_lap; i++) {
            RK_OK(mp_comm_recv(w, b, len, 0, 7, &st, 10));
            RK_EQ(st.count, len);
        }
        RK_OK(mp_comm_recv(w, b, len, 0, 7, &st, 10));
        RK_EQ(st.count, 6);
        RK_CHECK(strcmp((const char *)b, "first") == 0);
        RK_ERR(mp_comm_recv(w, b, len, 0, 7, &st, 0.05), MP_ETIMEDOUT);
        RK_OK(mp_comm_send(w, "", 1, 0, 8, 10));
        uint64_t v = 0;
        RK_OK(mp_comm_recv(w, &v, sizeof v, 0, 7, &st, 10));
        RK_EQ(v, 42);
    }
    free(b);
    return mp_comm_barrier(w, 10);
}

TEST(p2p_message_bytes_never_pass_for_a_stamp)
{
    CHECK_EQ(run_ok(2, forged_stamp_rank, NULL), 0);
}

/* Every payload length from 0 to 130 bytes (the inline copies' branches:
 * under 4, 8 and 16 bytes, one line, two lines, and past them), sent in
 * turn for a few laps of the ring so that records land on every line,
 * the last one included (where a two-line record wraps), and received
 * from the named source into a buffer one byte off alignment, with guard
 * bytes on both sides. */
#define SHORT_LENS 131
#define SHORT_MSGS 20000

static int short_lens_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    unsigned char out[SHORT_LENS], in[SHORT_LENS + 2];
    for (unsigned i = 0; i < SHORT_MSGS; i++) {
        size_t len = i % SHORT_LENS;
        if (rk_me == 0) {
            fill(out, len, i);
            RK_OK(mp_comm_send(w, out, len, 1, 3, 30));
            continue;
        }
        memset(in, 0xa5, sizeof in);
        mp_comm_status st = {-1, -1, 0};
        RK_OK(mp_comm_recv(w, in + 1, SHORT_LENS, 0, 3, &st, 30));
        RK_EQ(st.count, len);
        RK_EQ(st.source, 0);
        RK_EQ(st.tag, 3);
        RK_EQ(differs(in + 1, len, i), 0);
        RK_EQ(in[0], 0xa5);
        RK_EQ(in[len + 1], 0xa5);
    }
    return mp_comm_barrier(w, 30);
}

TEST_TIMEOUT(p2p_short_payloads_every_length_and_place, 120)
{
    CHECK_EQ(run_ok(2, short_lens_rank, NULL), 0);
}

/* Room a receiver makes in its ring is told to the sender before the
 * receiver waits for anything (local.h, "Telling the head").  Rank 0
 * fills rank 1's ring (its next send times out), rank 1 takes a few
 * records - fewer than a sixteenth of the ring, so none of them is told
 * as it is taken - says so on the other ring, and waits in a barrier;
 * rank 0 must then fit as many records again.  Everything comes through
 * once, in order, and the send that timed out is not delivered. */
#define TOLD_TAKE 20

static int told_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    uint64_t msg[8] = {0};
    uint64_t sent = 0;
    if (rk_me == 0) {
        int rc;
        while ((rc = mp_comm_send(w, msg, sizeof msg, 1, 3, 0.05)) == 0)
            msg[0] = ++sent;
        RK_EQ(rc, MP_ETIMEDOUT);
        RK_CHECK(sent > TOLD_TAKE);
        RK_OK(mp_comm_barrier(w, 10));
        RK_OK(mp_comm_recv(w, NULL, 0, 1, 4, NULL, 10));
        for (int i = 0; i < TOLD_TAKE; i++) {
            RK_OK(mp_comm_send(w, msg, sizeof msg, 1, 3, 10));
            msg[0] = ++sent;
        }
        RK_OK(mp_comm_barrier(w, 10));
        RK_OK(mp_comm_send(w, &sent, sizeof sent, 1, 5, 10));
    } else {
        RK_OK(mp_comm_barrier(w, 10));
        uint64_t next = 0;
        for (; next < TOLD_TAKE; next++) {
            RK_OK(mp_comm_recv(w, msg, sizeof msg, 0, 3, NULL, 10));
            RK_EQ(msg[0], next);
        }
        RK_OK(mp_comm_send(w, NULL, 0, 0, 4, 10));
        RK_OK(mp_comm_barrier(w, 10));
        RK_OK(mp_comm_recv(w, &sent, sizeof sent, 0, 5, NULL, 10));
        for (; next < sent; next++) {
            RK_OK(mp_comm_recv(w, msg, sizeof msg, 0, 3, NULL, 10));
            RK_EQ(msg[0], next);
        }
        RK_ERR(mp_comm_recv(w, msg, sizeof msg, 0, 3, NULL, 0.05), MP_ETIMEDOUT);
    }
    return mp_comm_barrier(w, 10);
}

TEST(p2p_room_is_told_before_a_wait)
{
    CHECK_EQ(run_ok(2, told_rank, NULL), 0);
}

/* ---- long messages copied by both sides (local.h, "Messages") ---------------------- */

/* Which path a test drives a shared copy down, through the test hook. */
typedef enum help_path {
    HP_SHARED,     /* the sender copies the second half */
    HP_DECLINED,   /* the sender leaves the offer: the receiver copies it all */
    HP_WRITE_FAILS /* the sender's write fails: the receiver copies the rest */
} help_path;

static help_path hp;
static bool hp_hit; /* the sender wrote its half of this message */
static int hp_msgs; /* messages it wrote its half of */

/* Waits (10 s at most) until the sender answered the offer. */
static void help_wait_answer(_Atomic uint32_t *help)
{
    double t0 = mpt_now();
    while (atomic_load(help) == MP__HELP_OFFERED && mpt_now() - t0 < 10)
        sched_yield();
}

static int help_fault(mp__comm_point where, _Atomic uint32_t *help)
{
    if (where == MP__CP_HELP_OFFERED && hp != HP_DECLINED)
        help_wait_answer(help); /* the receiver: let the sender take it first */
    if (where == MP__CP_HELP_TAKE)
        return hp == HP_DECLINED;
    if (where == MP__CP_HELP_WRITE) {
        hp_hit = true;
        return hp == HP_WRITE_FAILS;
    }
    return 0;
}

/* Sizes around the threshold and the halves' page rounding, and long. */
static const size_t help_sizes[] = {(size_t)64 << 10,        ((size_t)64 << 10) + 1,
                                    ((size_t)128 << 10) + 4095, (size_t)1 << 20,
                                    ((size_t)3 << 20) + 17,      (size_t)16 << 20};

typedef struct help_case {
    help_path path;
    bool bcast; /* a broadcast from rank 0, else a message to rank 1 */
} help_case;

/* Moves n bytes at buf from rank 0 to rank 1, as hc says. */
static int help_move(mp_comm *w, const help_case *hc, void *buf, size_t n, mp_comm_status *st)
{
    st->count = n;
    if (hc->bcast)
        return mp_comm_bcast(w, buf, n, 0, 10);
    if (rk_me == 0)
        return mp_comm_send(w, buf, n, 1, 2, 10);
    return mp_comm_recv(w, buf, n, 0, 2, st, 10);
}

static int help_rank(mp_comm *w, void *arg)
{
    const help_case *hc = arg;
    hp = hc->path;
    rk_me = mp_comm_rank(w);
    size_t most = (size_t)16 << 20;
    unsigned char *b = malloc(most + 2);
    RK_CHECK(b);
    mp_comm_status st;
    /* The first long message shows single-copy reads work (the first
     * large broadcast, that the ranks may read each other's memory);
     * shared copies start with the next. */
    RK_OK(help_move(w, hc, b, (size_t)1 << 20, &st));
    mp__comm_fault = help_fault;
    for (size_t i = 0; i < MP__ARRAY_SIZE(help_sizes); i++) {
        size_t n = help_sizes[i];
        if (rk_me == 0) {
            fill(b, n, (unsigned)i);
            hp_hit = false;
            RK_OK(help_move(w, hc, b, n, &st));
            hp_msgs += hp_hit;
        } else {
            /* One byte off alignment, a guard byte on each side. */
            memset(b, 0xa5, n + 2);
            RK_OK(help_move(w, hc, b + 1, n, &st));
            RK_EQ(st.count, n);
            RK_EQ(differs(b + 1, n, (unsigned)i), 0);
            RK_EQ(b[0], 0xa5);
            RK_EQ(b[n + 1], 0xa5);
        }
    }
    mp__comm_fault = NULL;
    /* Every message took the path asked for: the receiver waited for the
     * sender to take its part, unless the sender left them all. */
    if (rk_me == 0)
        RK_EQ(hp_msgs, hp == HP_DECLINED ? 0 : (int)MP__ARRAY_SIZE(help_sizes));
    free(b);
    return mp_comm_barrier(w, 10);
}

static void help_paths(bool bcast)
{
    help_path paths[] = {HP_SHARED, HP_DECLINED, HP_WRITE_FAILS};
    for (size_t i = 0; i < MP__ARRAY_SIZE(paths); i++) {
        help_case hc = {paths[i], bcast};
        CHECK_EQ(run_ok(2, help_rank, &hc), 0);
    }
}

TEST_TIMEOUT(p2p_long_messages_copied_by_both_sides, 120)
{
    help_paths(false);
}

/* The same for a large broadcast, whose root (the sender here) helps its
 * reader copy it. */
TEST_TIMEOUT(coll_large_bcast_copied_by_root_and_reader, 120)
{
    help_paths(true);
}

/* A rank killed in the middle of a shared copy: the sender (or a
 * broadcast's root) once it took its part, or the receiver (a reader)
 * once its sender took it.  The other learns it (MP_EPEERDEAD) instead
 * of waiting for the part that never comes. */
static int help_victim;

static int help_die_fault(mp__comm_point where, _Atomic uint32_t *help)
{
    if (where == MP__CP_HELP_OFFERED) {
        help_wait_answer(help);
        if (help_victim == 1)
            raise(SIGKILL);
    }
    if (where == MP__CP_HELP_WRITE && help_victim == 0)
        raise(SIGKILL);
    return 0;
}

static int help_die_rank(mp_comm *w, void *arg)
{
    const char *how = arg; /* "p0": the sender dies, "b1": the reader of a broadcast... */
    help_victim = how[1] - '0';
    rk_me = mp_comm_rank(w);
    size_t n = (size_t)4 << 20;
    unsigned char *b = malloc(n);
    RK_CHECK(b);
    if (how[0] == 'b')
        RK_OK(mp_comm_bcast(w, b, n, 0, 10));
    else if (rk_me == 0)
        RK_OK(mp_comm_send(w, b, n, 1, 1, 10));
    else
        RK_OK(mp_comm_recv(w, b, n, 0, 1, NULL, 10));
    mp__comm_fault = help_die_fault;
    double t0 = mpt_now();
    if (*(const char *)arg == 'b')
        RK_ERR(mp_comm_bcast(w, b, n, 0, MP_FOREVER), MP_EPEERDEAD);
    else if (rk_me == 0)
        RK_ERR(mp_comm_send(w, b, n, 1, 1, MP_FOREVER), MP_EPEERDEAD);
    else
        RK_ERR(mp_comm_recv(w, b, n, 0, 1, NULL, MP_FOREVER), MP_EPEERDEAD);
    RK_CHECK(mpt_now() - t0 < 10);
    free(b);
    return 0;
}

TEST(rank_killed_in_a_shared_copy)
{
    /* A message's sender, its receiver, a broadcast's root, its reader. */
    const char *hows[] = {"p0", "p1", "b0", "b1"};
    for (size_t i = 0; i < MP__ARRAY_SIZE(hows); i++) {
        int codes[2], victim = hows[i][1] - '0';
        mp_run_opts o = opts_keep_going(codes);
        CHECK_ERR(mp_run_with_opts(2, help_die_rank, (void *)hows[i], &o), MP_EWORKER);
        CHECK_EQ(codes[victim], -SIGKILL);
        CHECK_EQ(codes[1 - victim], 0);
    }
}

static int msgsize_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    size_t lens[] = {100, 300000};
    if (rk_me == 1) {
        unsigned char *b = malloc(300000);
        RK_CHECK(b);
        for (int k = 0; k < 2; k++) {
            fill(b, lens[k], (unsigned)k);
            RK_OK(mp_comm_send(w, b, lens[k], 0, 1, 10));
        }
        free(b);
        return 0;
    }
    unsigned char small[50];
    unsigned char *b = malloc(300000);
    RK_CHECK(b);
    for (int k = 0; k < 2; k++) {
        mp_comm_status st = {0, 0, 0};
        /* Too small: nothing received, the message stays first in line. */
        RK_ERR(mp_comm_recv(w, small, sizeof small, 1, 1, &st, 10), MP_EMSGSIZE);
        RK_EQ(st.count, lens[k]);
        RK_OK(mp_comm_probe(w, 1, 1, &st, 10));
        RK_EQ(st.count, lens[k]);
        RK_OK(mp_comm_recv(w, b, st.count, 1, 1, &st, 10));
        RK_EQ(differs(b, lens[k], (unsigned)k), 0);
    }
    free(b);
    return 0;
}

TEST(p2p_message_too_long_stays)
{
    CHECK_EQ(run_ok(2, msgsize_rank, NULL), 0);
}

/* The same without deadlines (the MPI engine holds such a message aside):
 * a message too long for one receive stays first in line for its source
 * and tag, while other tags, probes and larger receives go on in order. */
static int msgsize_forever_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    /* (length, tag) in the order rank 1 sends them */
    static const size_t lens[] = {300, 20, 30, 400};
    static const int tags[] = {1, 1, 2, 1};
    unsigned char *b = malloc(1000), small[50];
    RK_CHECK(b);
    if (rk_me == 1) {
        for (int k = 0; k < 4; k++) {
            fill(b, lens[k], (unsigned)k);
            RK_OK(mp_comm_send(w, b, lens[k], 0, tags[k], MP_FOREVER));
        }
        free(b);
        return mp_comm_barrier(w, 10);
    }
    mp_comm_status st = {0, 0, 0};
    RK_ERR(mp_comm_recv(w, small, sizeof small, 1, 1, &st, MP_FOREVER), MP_EMSGSIZE);
    RK_EQ(st.count, lens[0]);
    /* Another tag passes the held message; a probe still sees it first. */
    RK_OK(mp_comm_recv(w, b, 1000, 1, 2, &st, MP_FOREVER));
    RK_EQ(st.count, lens[2]);
    RK_EQ(differs(b, lens[2], 2), 0);
    RK_OK(mp_comm_probe(w, MP_ANY_SOURCE, 1, &st, MP_FOREVER));
    RK_EQ(st.count, lens[0]);
    RK_EQ(st.source, 1);
    mp_future *f;
    RK_OK(mp_comm_irecv(w, b, 1000, 1, 1, &f));
    RK_OK(mp_future_wait(f, 10));
    RK_EQ(mp_future_status(f), 0);
    mp_future_free(f);
    RK_EQ(differs(b, lens[0], 0), 0);
    RK_OK(mp_comm_recv(w, b, 1000, 1, MP_ANY_TAG, &st, MP_FOREVER));
    RK_EQ(st.count, lens[1]);
    RK_EQ(differs(b, lens[1], 1), 0);
    RK_ERR(mp_comm_recv(w, small, sizeof small, MP_ANY_SOURCE, 1, &st, MP_FOREVER), MP_EMSGSIZE);
    RK_EQ(st.count, lens[3]);
    RK_OK(mp_comm_recv(w, b, 1000, MP_ANY_SOURCE, MP_ANY_TAG, &st, MP_FOREVER));
    RK_EQ(st.count, lens[3]);
    RK_EQ(st.tag, 1);
    RK_EQ(differs(b, lens[3], 3), 0);
    free(b);
    return mp_comm_barrier(w, 10);
}

TEST(p2p_message_too_long_stays_forever)
{
    CHECK_EQ(run_ok(2, msgsize_forever_rank, NULL), 0);
}

/* Lengths around the MPI engine's 4032-byte head (a message of up to 4031
 * bytes is one MPI message there, a longer one a head and a body): each
 * arrives whole; one too long for a receive - with a deadline or without,
 * with a buffer shorter than a head or longer - stays first in line, and
 * a probe, an irecv or a larger receive then gets it; a probe of a long
 * message nothing took yet tells its whole length. */
static int long_msgs_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    static const size_t lens[] = {4031, 4032, 4033, 9000, 70000, 9000};
    enum { N = 6, MAXLEN = 70000, MID = 5000 };
    unsigned char *b = malloc(MAXLEN), *mid = malloc(MID), small[100];
    RK_CHECK(b && mid);
    if (rk_me == 1) {
        for (int k = 0; k < N; k++) {
            fill(b, lens[k], (unsigned)k);
            RK_OK(mp_comm_send(w, b, lens[k], 0, k == N - 1 ? 4 : 3, k % 2 ? 10 : MP_FOREVER));
        }
        free(b);
        free(mid);
        return mp_comm_barrier(w, 10);
    }
    for (int k = 0; k < N - 1; k++) {
        double t = k % 2 ? 10 : MP_FOREVER;
        mp_comm_status st = {0, 0, 0};
        RK_ERR(mp_comm_recv(w, small, sizeof small, 1, 3, &st, t), MP_EMSGSIZE);
        RK_EQ(st.count, lens[k]);
        if (lens[k] > MID) {
            RK_ERR(mp_comm_recv(w, mid, MID, MP_ANY_SOURCE, 3, &st, t), MP_EMSGSIZE);
            RK_EQ(st.count, lens[k]);
        }
        RK_OK(mp_comm_probe(w, 1, 3, &st, 10));
        RK_EQ(st.count, lens[k]);
        memset(b, 0, MAXLEN);
        if (k == 3) {
            mp_future *f;
            RK_OK(mp_comm_irecv(w, b, MAXLEN, 1, 3, &f));
            RK_OK(mp_future_wait(f, 10));
            RK_EQ(mp_future_status(f), 0);
            mp_future_free(f);
        } else {
            RK_OK(mp_comm_recv(w, b, MAXLEN, 1, MP_ANY_TAG, &st, t));
            RK_EQ(st.count, lens[k]);
            RK_EQ(st.tag, 3);
        }
        RK_EQ(differs(b, lens[k], (unsigned)k), 0);
    }
    mp_comm_status st = {0, 0, 0};
    RK_OK(mp_comm_probe(w, MP_ANY_SOURCE, 4, &st, 10));
    RK_EQ(st.count, lens[N - 1]);
    RK_OK(mp_comm_recv(w, b, MAXLEN, 1, 4, &st, MP_FOREVER));
    RK_EQ(st.count, lens[N - 1]);
    RK_EQ(differs(b, lens[N - 1], N - 1), 0);
    free(b);
    free(mid);
    return mp_comm_barrier(w, 10);
}

TEST(p2p_long_messages_stay_first_in_line)
{
    CHECK_EQ(run_ok(2, long_msgs_rank, NULL), 0);
}

static int sendrecv_rank(mp_comm *w, void *arg)
{
    size_t len = *(size_t *)arg;
    rk_me = mp_comm_rank(w);
    int n = mp_comm_size(w);
    unsigned char *out = malloc(len), *in = malloc(len);
    RK_CHECK(out && in);
    fill(out, len, (unsigned)rk_me);
    /* Everyone sends right and receives from the left at once: plain
     * blocking sends of large messages would wait for each other. */
    int right = (rk_me + 1) % n, left = (rk_me + n - 1) % n;
    mp_comm_status st;
    RK_OK(mp_comm_sendrecv(w, out, len, right, 4, in, len, left, 4, &st, 30));
    RK_EQ(st.source, left);
    RK_EQ(st.count, len);
    RK_EQ(differs(in, len, (unsigned)left), 0);
    free(out);
    free(in);
    return 0;
}

TEST(p2p_sendrecv_ring)
{
    size_t lens[] = {10, (size_t)1 << 20};
    for (int k = 0; k < 2; k++) {
        CHECK_EQ(run_ok(2, sendrecv_rank, &lens[k]), 0);
        CHECK_EQ(run_ok(3, sendrecv_rank, &lens[k]), 0);
        CHECK_EQ(run_ok(4, sendrecv_rank, &lens[k]), 0);
    }
}

/* The ring above, then the world's sum of ones, which must be its size. */
static int most_rank(mp_comm *w, void *arg)
{
    RK_OK(sendrecv_rank(w, arg));
    int one = 1, sum = 0;
    RK_OK(mp_comm_allreduce(w, &one, &sum, 1, MP_TYPE_i, MP_OP_SUM, 30));
    RK_EQ(sum, mp_comm_size(w));
    return 0;
}

/* As many ranks as a world takes (each with its rings, rendezvous slots
 * and 4 MiB staging area in the segment): a long message round the ring,
 * by single-copy reads, then through the pipeline. */
TEST_TIMEOUT(the_most_ranks_a_world_takes, 120)
{
    size_t len = (size_t)100 << 10;
    CHECK_EQ(run_ok(MP__L_MAX_RANKS, most_rank, &len), 0);
    mp__lp_set_cma(false);
    CHECK_EQ(run_ok(MP__L_MAX_RANKS, most_rank, &len), 0);
}

static int self_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    size_t len = (size_t)1 << 20;
    unsigned char *out = malloc(len), *in = malloc(len);
    RK_CHECK(out && in);
    fill(out, len, 9);
    mp_future *f;
    RK_OK(mp_comm_isend(w, out, len, rk_me, 2, &f));
    RK_OK(mp_comm_recv(w, in, len, rk_me, 2, NULL, 10));
    RK_OK(mp_future_get(f, NULL, 0, NULL, 10));
    mp_future_free(f);
    RK_EQ(differs(in, len, 9), 0);
    free(out);
    free(in);
    return 0;
}

TEST(p2p_to_oneself)
{
    CHECK_EQ(run_ok(2, self_rank, NULL), 0);
}

/* ---- isend / irecv ------------------------------------------------------------------- */

enum { NREQ = 16 };

static int futures_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    size_t len = (size_t)1 << 20;
    unsigned char *bufs = malloc(NREQ * len);
    RK_CHECK(bufs);
    mp_future *fs[NREQ];
    if (rk_me == 0) {
        for (int i = 0; i < NREQ; i++) {
            size_t l = i % 2 ? len : 40; /* large and small mixed */
            fill(bufs + (size_t)i * len, l, (unsigned)i);
            RK_OK(mp_comm_isend(w, bufs + (size_t)i * len, l, 1, i, &fs[i]));
        }
        RK_EQ(mp_wait(fs, NREQ, MP_ALL_COMPLETED, 30), NREQ);
        for (int i = 0; i < NREQ; i++) {
            RK_EQ(mp_future_status(fs[i]), 0);
            mp_future_free(fs[i]);
        }
    } else {
        /* Posted in reverse tag order; each matches its own tag. */
        for (int i = NREQ - 1; i >= 0; i--)
            RK_OK(mp_comm_irecv(w, bufs + (size_t)i * len, len, 0, i, &fs[i]));
        mp_as_completed *it;
        RK_OK(mp_as_completed_new(fs, NREQ, &it));
        int done = 0;
        mp_future *f;
        while (mp_as_completed_next(it, &f, 30) == 0) {
            mp_comm_status st;
            size_t got = 0;
            RK_OK(mp_future_get(f, &st, sizeof st, &got, 0));
            RK_EQ(got, sizeof st);
            RK_EQ(st.source, 0);
            size_t l = st.tag % 2 ? len : 40;
            RK_EQ(st.count, l);
            RK_EQ(differs(bufs + (size_t)st.tag * len, l, (unsigned)st.tag), 0);
            done++;
        }
        mp_as_completed_free(it);
        RK_EQ(done, NREQ);
        for (int i = 0; i < NREQ; i++)
            mp_future_free(fs[i]);
    }
    free(bufs);
    return 0;
}

TEST_TIMEOUT(p2p_isend_irecv_futures, 120)
{
    CHECK_EQ(run_ok(2, futures_rank, NULL), 0);
    mp__lp_set_cma(false);
    CHECK_EQ(run_ok(2, futures_rank, NULL), 0);
}

static int cancel_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    char buf[16];
    if (rk_me == 0) {
        /* A receive nothing will match: cancelled, it finishes at once. */
        mp_future *f;
        RK_OK(mp_comm_irecv(w, buf, sizeof buf, 1, 99, &f));
        RK_CHECK(!mp_future_done(f));
        RK_ERR(mp_future_wait(f, 0.01), MP_ETIMEDOUT);
        RK_OK(mp_future_cancel(f));
        RK_CHECK(mp_future_cancelled(f));
        RK_EQ(mp_future_status(f), MP_ECANCELED);
        mp_future_free(f);
        /* A large send no receive matched: withdrawn. */
        size_t len = (size_t)1 << 20;
        char *big = calloc(1, len);
        RK_CHECK(big);
        RK_OK(mp_comm_isend(w, big, len, 1, 7, &f));
        RK_OK(mp_future_cancel(f));
        RK_EQ(mp_future_status(f), MP_ECANCELED);
        mp_future_free(f);
        free(big);
        RK_OK(mp_comm_send(w, "go", 3, 1, 8, 10));
        return mp_comm_barrier(w, 10);
    }
    RK_OK(mp_comm_recv(w, buf, sizeof buf, 0, 8, NULL, 10));
    /* The withdrawn send never arrives. */
    RK_ERR(mp_comm_probe(w, 0, 7, NULL, 0.05), MP_ETIMEDOUT);
    return mp_comm_barrier(w, 10);
}

TEST(p2p_cancel_withdraws)
{
    CHECK_EQ(run_ok(2, cancel_rank, NULL), 0);
}

/* ---- timeouts ---------------------------------------------------------------------- */

static int timeout_rank(mp_comm *w, void *arg)
{
    gate *g = arg;
    rk_me = mp_comm_rank(w);
    char buf[64];
    if (rk_me == 0) {
        RK_ERR(mp_comm_recv(w, buf, sizeof buf, 1, 1, NULL, 0), MP_ETIMEDOUT);
        double t0 = mpt_now();
        RK_ERR(mp_comm_recv(w, buf, sizeof buf, MP_ANY_SOURCE, 1, NULL, 0.05), MP_ETIMEDOUT);
        double dt = mpt_now() - t0;
        RK_CHECK(dt >= 0.05 && dt < 5);
        RK_ERR(mp_comm_probe(w, 1, MP_ANY_TAG, NULL, 0.02), MP_ETIMEDOUT);
        /* A large send nobody receives times out and is withdrawn. */
        size_t len = 200000;
        char *big = calloc(1, len);
        RK_CHECK(big);
        RK_ERR(mp_comm_send(w, big, len, 1, 2, 0.05), MP_ETIMEDOUT);
        free(big);
        RK_OK(mp_comm_send(w, "sync", 5, 1, 9, 10));
        /* Small sends fill the ring while rank 1 takes nothing, then time
         * out; each that returned 0 is there. */
        int sent = 0, rc;
        while ((rc = mp_comm_send(w, buf, sizeof buf, 1, 3, 0.01)) == 0)
            sent++;
        RK_ERR(rc, MP_ETIMEDOUT);
        RK_CHECK(sent > 10);
        gate_open(g);
        RK_OK(mp_comm_send(w, &sent, sizeof sent, 1, 4, MP_FOREVER));
        return mp_comm_barrier(w, 10);
    }
    RK_OK(mp_comm_recv(w, buf, sizeof buf, 0, 9, NULL, 10));
    RK_ERR(mp_comm_probe(w, 0, 2, NULL, 0), MP_ETIMEDOUT);
    RK_EQ(gate_wait(g, 10), 0);
    /* The small ones, then their count. */
    int got = 0;
    mp_comm_status st;
    for (;;) {
        RK_OK(mp_comm_recv(w, buf, sizeof buf, 0, MP_ANY_TAG, &st, 10));
        if (st.tag != 3)
            break;
        got++;
    }
    RK_EQ(st.tag, 4);
    int sent;
    memcpy(&sent, buf, sizeof sent);
    RK_EQ(got, sent);
    RK_ERR(mp_comm_probe(w, 0, MP_ANY_TAG, NULL, 0), MP_ETIMEDOUT);
    return mp_comm_barrier(w, 10);
}

TEST(p2p_timeouts)
{
    gate g;
    gate_init(&g);
    CHECK_EQ(run_ok(2, timeout_rank, &g), 0);
    gate_close(&g);
}

/* ---- bad arguments ------------------------------------------------------------------ */

static int bad_args_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    char b[8];
    mp_future *f = (mp_future *)1;
    RK_ERR(mp_comm_send(NULL, b, 1, 0, 0, 1), MP_EINVAL);
    RK_ERR(mp_comm_send(w, b, 1, 2, 0, 1), MP_EINVAL);
    RK_ERR(mp_comm_send(w, b, 1, -1, 0, 1), MP_EINVAL);
    RK_ERR(mp_comm_send(w, b, 1, 0, -1, 1), MP_EINVAL);
    RK_ERR(mp_comm_send(w, NULL, 1, 0, 0, 1), MP_EINVAL);
    RK_ERR(mp_comm_send(w, b, 1, 0, 0, NAN), MP_EINVAL);
    RK_ERR(mp_comm_recv(w, b, 1, 5, 0, NULL, 1), MP_EINVAL);
    RK_ERR(mp_comm_recv(w, b, 1, 0, -2, NULL, 1), MP_EINVAL);
    RK_ERR(mp_comm_recv(w, NULL, 4, 0, 0, NULL, 1), MP_EINVAL);
    RK_ERR(mp_comm_isend(w, b, 1, 0, 0, NULL), MP_EINVAL);
    RK_ERR(mp_comm_isend(w, b, 1, 9, 0, &f), MP_EINVAL);
    RK_CHECK(f == NULL);
    RK_ERR(mp_comm_irecv(w, b, 1, 0, -5, &f), MP_EINVAL);
    RK_ERR(mp_comm_probe(w, 3, 0, NULL, 1), MP_EINVAL);
    RK_ERR(mp_comm_sendrecv(w, b, 8, 0, 0, b + 4, 4, 0, 0, NULL, 1), MP_EINVAL); /* overlap */
    RK_ERR(mp_comm_rank(NULL), MP_EINVAL);
    RK_ERR(mp_comm_size(NULL), MP_EINVAL);
    RK_CHECK(mp_comm_engine(NULL) == NULL);
    RK_ERR(mp_comm_world(NULL), MP_EINVAL);
    RK_ERR(mp_comm_dup(w, 1, NULL), MP_EINVAL);
    mp_comm *c;
    RK_ERR(mp_comm_split(w, -5, 0, 1, &c), MP_EINVAL);
    mp_comm_free(NULL);
    mp_comm_free(w); /* the world is never freed */
    RK_EQ(mp_comm_size(w), 2);
    RK_OK(mp_comm_barrier(w, 10));
    return 0;
}

TEST(p2p_bad_arguments)
{
    CHECK_EQ(run_ok(2, bad_args_rank, NULL), 0);
}

/* ---- mp_run's outcomes ------------------------------------------------------------- */

typedef struct outcome_arg {
    int rank; /* the rank that misbehaves */
    int what; /* 1: return 3, 2: return MP_EPROTO, 3: crash, 4: wait forever */
} outcome_arg;

static int outcome_rank(mp_comm *w, void *arg)
{
    const outcome_arg *a = arg;
    if (mp_comm_rank(w) == a->rank) {
        if (a->what == 1)
            return 3;
        if (a->what == 2)
            return MP_EPROTO;
        if (a->what == 3)
            raise(SIGSEGV);
    }
    if (a->what == 4) {
        char b;
        return mp_comm_recv(w, &b, 1, MP_ANY_SOURCE, 77, NULL, MP_FOREVER);
    }
    /* The others wait for the misbehaving rank, which never comes. */
    return mp_comm_barrier(w, MP_FOREVER) == MP_EPEERDEAD ? 0 : 5;
}

TEST(run_outcomes)
{
    int codes[3];
    mp_run_opts o = MP_RUN_OPTS_INIT;
    o.exitcodes = codes;
    o.timeout = 30;
    outcome_arg a = {1, 1};
    CHECK_EQ(mp_run_with_opts(3, outcome_rank, &a, &o), 3);
    CHECK_EQ(codes[1], 3);
    a.what = 2;
    CHECK_ERR(mp_run_with_opts(3, outcome_rank, &a, &o), MP_EPROTO);
    CHECK_EQ(codes[1], 1);
    a.what = 3;
    CHECK_ERR(mp_run_with_opts(3, outcome_rank, &a, &o), MP_EWORKER);
    CHECK_EQ(codes[1], -SIGSEGV);
    /* With keep_going the others see the dead rank and finish. */
    o.keep_going = true;
    CHECK_ERR(mp_run_with_opts(3, outcome_rank, &a, &o), MP_EWORKER);
    CHECK_EQ(codes[0], 0);
    CHECK_EQ(codes[1], -SIGSEGV);
    CHECK_EQ(codes[2], 0);
    /* A time limit stops ranks that wait forever. */
    a.what = 4;
    o.keep_going = false;
    o.timeout = 0.2;
    double t0 = mpt_now();
    CHECK_ERR(mp_run_with_opts(2, outcome_rank, &a, &o), MP_ETIMEDOUT);
    CHECK(mpt_now() - t0 < 10);
    CHECK_EQ(codes[0], -SIGTERM);
}

TEST(run_bad_arguments)
{
    CHECK_ERR(mp_run(0, outcome_rank, NULL), MP_EINVAL);
    CHECK_ERR(mp_run(MP__L_MAX_RANKS + 1, outcome_rank, NULL), MP_EINVAL);
    CHECK_ERR(mp_run(2, NULL, NULL), MP_EINVAL);
    mp_run_opts o = MP_RUN_OPTS_INIT;
    o.timeout = NAN;
    CHECK_ERR(mp_run_with_opts(2, outcome_rank, NULL, &o), MP_EINVAL);
}

/* ---- ranks that die -------------------------------------------------------------------- */

typedef struct die_arg {
    int victim;
    int where; /* 1: before an allreduce, 2: before sending a large message */
} die_arg;

static int die_rank(mp_comm *w, void *arg)
{
    const die_arg *a = arg;
    rk_me = mp_comm_rank(w);
    RK_OK(mp_comm_barrier(w, 10));
    if (rk_me == a->victim)
        raise(SIGKILL);
    double t0 = mpt_now();
    if (a->where == 1) {
        double x = 1, y;
        RK_ERR(mp_comm_allreduce(w, &x, &y, 1, MP_TYPE_d, MP_OP_SUM, MP_FOREVER), MP_EPEERDEAD);
        /* The next call fails the same way, at once. */
        RK_ERR(mp_comm_barrier(w, MP_FOREVER), MP_EPEERDEAD);
    } else {
        size_t len = (size_t)1 << 20;
        char *b = malloc(len);
        RK_CHECK(b);
        RK_ERR(mp_comm_recv(w, b, len, a->victim, 1, NULL, MP_FOREVER), MP_EPEERDEAD);
        free(b);
    }
    RK_CHECK(mpt_now() - t0 < 10);
    return 0;
}

TEST(rank_killed_mid_collective)
{
    int codes[4];
    mp_run_opts o = opts_keep_going(codes);
    die_arg a = {2, 1};
    CHECK_ERR(mp_run_with_opts(4, die_rank, &a, &o), MP_EWORKER);
    CHECK_EQ(codes[0], 0);
    CHECK_EQ(codes[1], 0);
    CHECK_EQ(codes[2], -SIGKILL);
    CHECK_EQ(codes[3], 0);
    a.where = 2;
    a.victim = 0;
    CHECK_ERR(mp_run_with_opts(2, die_rank, &a, &o), MP_EWORKER);
    CHECK_EQ(codes[1], 0);
    /* Without keep_going the others are stopped at once. */
    o.keep_going = false;
    CHECK_ERR(mp_run_with_opts(4, die_rank, &a, &o), MP_EWORKER);
    CHECK_EQ(codes[0], -SIGKILL);
}

/* A rank waiting on the ring of the very peer that dies learns it within
 * its timeout, and the next receive, even from any source, fails at once. */
static int ring_death_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    char b[8] = "go";
    if (rk_me == 1) {
        RK_OK(mp_comm_recv(w, b, sizeof b, 0, 1, NULL, 10));
        raise(SIGKILL);
    }
    RK_OK(mp_comm_send(w, b, sizeof b, 1, 1, 10));
    double t0 = mpt_now();
    RK_ERR(mp_comm_recv(w, b, sizeof b, 1, 2, NULL, 20), MP_EPEERDEAD);
    RK_CHECK(mpt_now() - t0 < 10);
    t0 = mpt_now();
    RK_ERR(mp_comm_recv(w, b, sizeof b, MP_ANY_SOURCE, MP_ANY_TAG, NULL, 20), MP_EPEERDEAD);
    RK_CHECK(mpt_now() - t0 < 1);
    return 0;
}

TEST(rank_killed_while_a_peer_waits_on_its_ring)
{
    int codes[2];
    mp_run_opts o = opts_keep_going(codes);
    CHECK_ERR(mp_run_with_opts(2, ring_death_rank, NULL, &o), MP_EWORKER);
    CHECK_EQ(codes[0], 0);
    CHECK_EQ(codes[1], -SIGKILL);
}

/* Without any launcher watching, a waiting rank still finds its dead peer
 * itself (pidfds checked while it sleeps). */
TEST(rank_finds_dead_peer_itself)
{
    int fd;
    void *base;
    size_t size;
    CHECK_OK(mp__lseg_create(2, 0, &fd, &base, &size));
    gate ready;
    gate_init(&ready);
    fflush(NULL);
    pid_t victim = fork();
    if (victim == 0) {
        mp_comm *w;
        if (mp__comm_enter_forked(base, size, 1, &w) < 0)
            _exit(2);
        gate_open(&ready);
        _exit(3); /* gone without saying it is done */
    }
    pid_t waiter = fork();
    if (waiter == 0) {
        mp_comm *w;
        char b;
        if (mp__comm_enter_forked(base, size, 0, &w) < 0 || gate_wait(&ready, 10) < 0)
            _exit(2);
        double t0 = mpt_now();
        int rc = mp_comm_recv(w, &b, 1, 1, 0, NULL, 20);
        _exit(rc == MP_EPEERDEAD && mpt_now() - t0 < 5 ? 0 : 1);
    }
    /* The victim is not reaped (and so not marked) until the waiter is
     * done: only the waiter's own check can find it. */
    reap_ok(waiter);
    int st;
    CHECK_EQ(waitpid(victim, &st, 0), victim);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    gate_close(&ready);
    mp__unmap(base, size);
    mp__close(fd);
}

static int forked_copy_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        mp_comm *again;
        int a = mp_comm_barrier(w, 1), b = mp_comm_world(&again);
        _exit(a == MP_ESTATE && b == MP_ESTATE ? 0 : 1);
    }
    int st;
    RK_EQ(waitpid(pid, &st, 0), pid);
    RK_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return mp_comm_barrier(w, 10) == 0 ? 0 : 1;
}

TEST(forked_copy_is_not_a_rank)
{
    CHECK_EQ(run_ok(2, forked_copy_rank, NULL), 0);
}

static int finalize_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    RK_OK(mp_comm_barrier(w, 10));
    RK_OK(mp_comm_finalize());
    RK_ERR(mp_comm_send(w, "x", 1, 0, 0, 1), MP_ECLOSED);
    return 0;
}

TEST(finalize_closes)
{
    CHECK_EQ(run_ok(3, finalize_rank, NULL), 0);
}

/* ---- the engine's threaded slot ------------------------------------------------------- */

static int slot_calls, irecv_calls, irecv_tag;

static int fake_threaded(mp_comm *c)
{
    (void)c;
    slot_calls++;
    return 0;
}

static int fake_refuses(mp_comm *c)
{
    (void)c;
    return MP_ENOTSUP;
}

static int fake_irecv(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_future **out)
{
    (void)c, (void)buf, (void)cap, (void)src;
    irecv_calls++;
    irecv_tag = tag;
    *out = mp__future_new_failed(MP_ECANCELED, NULL);
    return *out ? 0 : MP_ENOMEM;
}

/* mp__comm_threaded calls the engine's slot and passes on its refusal; an
 * engine whose table ends before the slot (built before it) is switched
 * by the receive on MP__TAG_THREADED instead; the local engine, whose
 * slot is empty, goes on working after it. */
TEST(threaded_slot_is_called)
{
    mp_comm *w;
    CHECK_EQ(mp_comm_world(&w), 0);
    mp__comm_ops ops = *w->ops;
    ops.threaded = fake_threaded;
    ops.irecv = fake_irecv;
    mp_comm fake = *w;
    fake.ops = &ops;
    CHECK_EQ(mp__comm_threaded(&fake), 0);
    CHECK_EQ(slot_calls, 1);
    CHECK_EQ(irecv_calls, 0);
    ops.threaded = fake_refuses;
    CHECK_EQ(mp__comm_threaded(&fake), MP_ENOTSUP);
    ops.threaded = fake_threaded;
    ops.size = (uint32_t)offsetof(mp__comm_ops, threaded);
    CHECK_EQ(mp__comm_threaded(&fake), 0);
    CHECK_EQ(slot_calls, 1);
    CHECK_EQ(irecv_calls, 1);
    CHECK_EQ(irecv_tag, MP__TAG_THREADED);
    CHECK_EQ(mp__comm_threaded(NULL), MP_EINVAL);

    CHECK_EQ(mp__comm_threaded(w), 0);
    char out[4] = "abc", in[4] = "";
    CHECK_EQ(mp_comm_send(w, out, sizeof out, 0, 1, 10), 0);
    CHECK_EQ(mp_comm_recv(w, in, sizeof in, 0, 1, NULL, MP_FOREVER), 0);
    CHECK_EQ(memcmp(in, out, sizeof in), 0);
}

/* ---- the same checks under a launcher ----------------------------------------------- */

/* Runs fn on a communicator of world ranks 0 and 1 (the others wait), for
 * the checks written for two ranks. */
static int on_pair(mp_comm *w, mp_rank_fn fn, void *arg)
{
    mp_comm *pair;
    int r = mp_comm_rank(w), st = 0;
    RK_OK(mp_comm_split(w, r < 2 ? 0 : MP_UNDEFINED, r, 30, &pair));
    if (pair) {
        st = fn(pair, arg);
        mp_comm_free(pair);
    }
    RK_OK(mp_comm_barrier(w, 60));
    return st;
}

/* What every engine must do alike, with timeouts that only a receive or a
 * probe can take back (an MPI engine cannot withdraw a send). */
static int timeouts_alike_rank(mp_comm *w, void *arg)
{
    (void)arg;
    rk_me = mp_comm_rank(w);
    char buf[64];
    if (rk_me == 0) {
        RK_ERR(mp_comm_recv(w, buf, sizeof buf, 1, 1, NULL, 0), MP_ETIMEDOUT);
        double t0 = mpt_now();
        RK_ERR(mp_comm_recv(w, buf, sizeof buf, MP_ANY_SOURCE, 1, NULL, 0.05), MP_ETIMEDOUT);
        double dt = mpt_now() - t0;
        RK_CHECK(dt >= 0.05 && dt < 5);
        RK_ERR(mp_comm_probe(w, 1, MP_ANY_TAG, NULL, 0.02), MP_ETIMEDOUT);
        mp_future *f;
        RK_OK(mp_comm_irecv(w, buf, sizeof buf, 1, 99, &f));
        RK_ERR(mp_future_wait(f, 0.01), MP_ETIMEDOUT);
        RK_OK(mp_future_cancel(f));
        RK_EQ(mp_future_status(f), MP_ECANCELED);
        mp_future_free(f);
    }
    return mp_comm_barrier(w, 10);
}

/* The point-to-point checks, on whatever world this process is a rank of:
 * `mprun -n N test_comm --ranks p2p` or `mpiexec -n N ... --ranks p2p`. */
static int p2p_suite(mp_comm *w)
{
    rk_me = mp_comm_rank(w);
    int n = mp_comm_size(w);
    size_t small = 10, big = (size_t)1 << 20;
    RK_PASS(self_rank(w, NULL));
    RK_PASS(sendrecv_rank(w, &small));
    RK_PASS(sendrecv_rank(w, &big));
    if (n < 2)
        return 0;
    RK_PASS(any_rank(w, NULL));
    RK_PASS(on_pair(w, p2p_sizes_rank, NULL));
    RK_PASS(on_pair(w, order_rank, NULL));
    RK_PASS(on_pair(w, msgsize_rank, NULL));
    RK_PASS(on_pair(w, msgsize_forever_rank, NULL));
    RK_PASS(on_pair(w, long_msgs_rank, NULL));
    RK_PASS(on_pair(w, futures_rank, NULL));
    RK_PASS(on_pair(w, timeouts_alike_rank, NULL));
    if (n == 2) /* it frees its communicator, expecting the world of 2 */
        RK_PASS(bad_args_rank(w, NULL));
    return 0;
}

/* ---- starting processes from a rank -------------------------------------------------- */

static int child_exit(void *arg)
{
    return arg ? *(const int *)arg : 0;
}

static int square(const void *in, void *out, const void *ctx)
{
    (void)ctx;
    *(int *)out = *(const int *)in * *(const int *)in;
    return 0;
}

/* A process and a pool started from a rank: under an engine that forbids
 * fork (Open MPI) the default start method goes through the forkserver and
 * an explicit fork is refused; the local engine forks as usual. */
static int fork_suite(mp_comm *w)
{
    rk_me = mp_comm_rank(w);
    bool mpi = strcmp(mp_comm_engine(w), "mpi") == 0;
    int code = 40 + rk_me, got = -1;
    mp_process_opts po = MP_PROCESS_OPTS_INIT;
    po.arg_size = sizeof code;
    mp_process *p;
    RK_OK(mp_process_new_opts(child_exit, &code, &po, &p));
    RK_OK(mp_process_start(p));
    RK_EQ(mp_process_start_method(p), mpi ? MP_START_FORKSERVER : MP_START_FORK);
    RK_OK(mp_process_join(p, 30));
    RK_OK(mp_process_exitcode(p, &got));
    RK_EQ(got, code);
    mp_process_free(p);
    po.start_method = MP_START_FORK;
    RK_OK(mp_process_new_opts(child_exit, &code, &po, &p));
    if (mpi) {
        RK_ERR(mp_process_start(p), MP_ENOTSUP);
    } else {
        RK_OK(mp_process_start(p));
        RK_OK(mp_process_join(p, 30));
    }
    mp_process_free(p);
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = 2;
    o.start_method = MP_START_FORKSERVER;
    mp_pool *pool;
    RK_OK(mp_pool_new(&o, &pool));
    int in[16], out[16];
    for (int i = 0; i < 16; i++)
        in[i] = i + rk_me;
    RK_OK(mp_pool_map(pool, square, in, 16, sizeof in[0], out, sizeof out[0], 0));
    for (int i = 0; i < 16; i++)
        RK_EQ(out[i], in[i] * in[i]);
    RK_OK(mp_pool_close(pool));
    RK_OK(mp_pool_join(pool, 30));
    mp_pool_free(pool);
    return mp_comm_barrier(w, 60);
}

static int ranks_main(const char *suite)
{
    mp_comm *w;
    int rc = mp_comm_world(&w);
    if (rc < 0) {
        fprintf(stderr, "test_comm: no world: %s\n", mp_err_name(rc));
        return 100;
    }
    int st;
    if (strcmp(suite, "p2p") == 0) {
        st = p2p_suite(w);
    } else if (strcmp(suite, "fork") == 0) {
        st = fork_suite(w);
    } else {
        fprintf(stderr, "test_comm: no suite %s\n", suite);
        return 2;
    }
    printf("rank %d of %d (%s): %s %s\n", mp_comm_rank(w), mp_comm_size(w), mp_comm_engine(w),
           suite, st ? "FAILED" : "ok");
    return st;
}

int main(int argc, char **argv)
{
    /* --ranks SUITE [marker]: the marker only names the job in `ps`. */
    if (argc >= 3 && strcmp(argv[1], "--ranks") == 0)
        return ranks_main(argv[2]);
    return mpt_run(argc, argv);
}
