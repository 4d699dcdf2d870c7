/* Tests of a pool worker's result ring on its own (src/pool/worker_buf.c):
 * where results go as they grow, and that a result is never written over
 * before the supervisor has read it.  The test plays both sides in one
 * thread: the worker's mp_buf calls, and the supervisor's reads, which
 * only move the slot's res_tail and res_consumed as mp__pool_ring_take
 * does.  Every sequence here is one the ring must take without waiting
 * for the supervisor (a wait would hang the test, and the harness's time
 * limit would report it). */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "pool/worker.h"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define KiB ((size_t)1 << 10)

typedef struct ring {
    wctx c;
    mp__wslot *slot;
} ring;

static void ring_new(ring *r)
{
    memset(r, 0, sizeof *r);
    r->slot = aligned_alloc(MP__LINE, sizeof *r->slot);
    CHECK(r->slot != NULL);
    memset(r->slot, 0, sizeof *r->slot);
    r->c.slot = r->slot;
    r->c.res_fd = memfd_create("mproc-test-ring", MFD_CLOEXEC);
    CHECK(r->c.res_fd >= 0);
    struct stat st;
    CHECK_OK(fstat(r->c.res_fd, &st) == 0 ? 0 : -errno);
    r->c.res_dev = st.st_dev;
    r->c.res_ino = st.st_ino;
}

static void ring_free(ring *r)
{
    if (r->c.res)
        munmap(r->c.res, r->c.res_cap);
    close(r->c.res_fd);
    free(r->slot);
}

static unsigned char tag(unsigned id, size_t j)
{
    return (unsigned char)(id * 131 + j * 7 + j / 251);
}

/* A result of the worker's, as far as it is built. */
typedef struct result {
    mp_buf b;
    unsigned char inline_space[MP__POOL_INLINE];
    unsigned id;
} result;

static void result_begin(ring *r, result *res, unsigned id)
{
    memset(res, 0, sizeof *res);
    res->b = (mp_buf){.c = &r->c, .data = res->inline_space, .cap = MP__POOL_INLINE};
    res->id = id;
}

/* Appends the result's bytes up to len, in pieces of 1000 bytes, as a
 * task building its result does. */
static void result_grow(result *res, size_t len)
{
    unsigned char piece[1000];
    while (mp_buf_len(&res->b) < len) {
        size_t at = mp_buf_len(&res->b);
        size_t k = len - at < sizeof piece ? len - at : sizeof piece;
        for (size_t i = 0; i < k; i++)
            piece[i] = tag(res->id, at + i);
        CHECK_OK(mp_buf_append(&res->b, piece, k));
    }
}

typedef struct placed {
    size_t off, len;
    unsigned id;
} placed;

static placed result_publish(ring *r, result *res)
{
    CHECK_EQ(res->b.where, MP__RES_RING);
    mp__pool_res_publish(&r->c, res->b.off, res->b.len);
    return (placed){res->b.off, res->b.len, res->id};
}

/* The supervisor reads result p: its bytes must be its own. */
static void supervisor_take(ring *r, placed p)
{
    size_t wrong = 0;
    for (size_t j = 0; j < p.len; j++)
        wrong += r->c.res[p.off + j] != tag(p.id, j);
    CHECK_EQ(wrong, 0);
    atomic_store(&r->slot->res_tail, p.off + p.len);
    atomic_fetch_add(&r->slot->res_consumed, 1);
}

/* The worker's side of the last step below, in a thread of its own: it
 * may have to wait for the supervisor. */
typedef struct grower {
    result *res;
    size_t len;
    _Atomic bool done;
} grower;

static void *grower_main(void *arg)
{
    grower *g = arg;
    result_grow(g->res, g->len);
    atomic_store(&g->done, true);
    return NULL;
}

/* Fails if a result that wrapped to offset 0 and then grew past the end
 * of the results read before it (once the ring emptied) is not known to
 * sit at 0: the next result would take the supervisor's res_tail for the
 * start of the unread ones, wrap to 0 too and write over it. */
TEST(ring_result_wrapped_and_grown_is_not_written_over)
{
    ring r;
    ring_new(&r);
    mp__pool_hdr hdr;
    memset(&hdr, 0, sizeof hdr); /* no supervisor asleep: no kick */
    r.c.hdr = &hdr;
    result a, b, c, d;
    result_begin(&r, &a, 1);
    result_grow(&a, 40000);
    placed pa = result_publish(&r, &a);
    CHECK_EQ(pa.off, 0);
    CHECK_EQ(r.c.res_cap, 64 * KiB);
    result_begin(&r, &b, 2);
    result_grow(&b, 20000);
    placed pb = result_publish(&r, &b);
    CHECK_EQ(pb.off, 40000);
    supervisor_take(&r, pa); /* res_tail 40000; b unread */
    /* c starts at the end, finds no room there, and wraps to 0, below
     * the unread b. */
    result_begin(&r, &c, 3);
    result_grow(&c, 10000);
    CHECK_EQ(c.b.off, 0);
    supervisor_take(&r, pb); /* the ring is empty: c may grow past 60000 */
    result_grow(&c, 62000);
    CHECK_EQ(c.b.off, 0);
    placed pc = result_publish(&r, &c);
    /* d has room at the end only, 3536 bytes; growing past them it must
     * wait for c to be read, never wrap to 0 over it. */
    result_begin(&r, &d, 4);
    result_grow(&d, 3000);
    CHECK_EQ(d.b.off, 62000);
    grower g = {&d, 30000, false};
    pthread_t t;
    CHECK_OK(-pthread_create(&t, NULL, grower_main, &g));
    while (!atomic_load(&g.done) && !atomic_load(&r.slot->waiting))
        sched_yield();
    CHECK(!atomic_load(&g.done)); /* it waits */
    supervisor_take(&r, pc);      /* c intact; wakes d's grower */
    atomic_fetch_add(&r.slot->wake, 1);
    (void)mp__futex_wake(&r.slot->wake, 1);
    CHECK_OK(-pthread_join(t, NULL));
    placed pd = result_publish(&r, &d);
    supervisor_take(&r, pd);
    ring_free(&r);
}

/* Fails if a result put into the empty ring is not known to sit at 0
 * while the supervisor's res_tail still points past the older results
 * (inside the new one). */
TEST(ring_result_in_the_emptied_ring_is_not_written_over)
{
    ring r;
    ring_new(&r);
    result a, b, c;
    result_begin(&r, &a, 1);
    result_grow(&a, 10000);
    placed pa = result_publish(&r, &a);
    supervisor_take(&r, pa); /* res_tail 10000, the ring empty */
    result_begin(&r, &b, 2);
    result_grow(&b, 30000);
    placed pb = result_publish(&r, &b);
    CHECK_EQ(pb.off, 0);
    result_begin(&r, &c, 3);
    result_grow(&c, 30000);
    CHECK_EQ(c.b.off, 30000);
    supervisor_take(&r, pb);
    placed pc = result_publish(&r, &c);
    supervisor_take(&r, pc);
    ring_free(&r);
}

/* The supervisor's side of the concurrent case below: reads the
 * published results in order, each checked in place before its space is
 * given back (as mp__pool_ring_take copies it out first), and wakes the
 * worker should it wait for space. */
typedef struct sup {
    ring *r;
    placed *ps;
    size_t n;
    _Atomic size_t published;
    size_t wrong;
} sup;

static void *supervisor_main(void *arg)
{
    sup *s = arg;
    mp__wslot *slot = s->r->slot;
    for (size_t i = 0; i < s->n;) {
        /* As the pool's supervisor does: it wakes up late by 0 to 7
         * results (unless the worker waits for space), then reads all
         * there is - the ring empties under the result being built. */
        size_t lag = (i * 2654435761u >> 7) % 8, end;
        while ((end = atomic_load(&s->published)) <= i ||
               (end <= i + lag && end < s->n && !atomic_load(&slot->waiting)))
            sched_yield();
        for (; i < end; i++) {
            placed p = s->ps[i];
            for (size_t j = 0; j < p.len; j++)
                s->wrong += s->r->c.res[p.off + j] != tag(p.id, j);
            atomic_store(&slot->res_tail, p.off + p.len);
            atomic_fetch_add(&slot->res_consumed, 1);
            if (atomic_load(&slot->waiting)) {
                atomic_fetch_add(&slot->wake, 1);
                (void)mp__futex_wake(&slot->wake, 1);
            }
        }
    }
    return NULL;
}

/* Many results of 1 to 40 KB, mixed, built piece by piece while another
 * thread reads them as the supervisor does: each must hold its own bytes
 * when read.  The pool's mixed-size case in one process, where the ring
 * goes round thousands of times a second. */
TEST(ring_mixed_sizes_hold_their_own_bytes)
{
    enum { N = 8000 };
    ring r;
    ring_new(&r);
    mp__pool_hdr hdr;
    memset(&hdr, 0, sizeof hdr); /* the supervisor never sleeps here: no kick */
    r.c.hdr = &hdr;
    sup s = {.r = &r, .ps = calloc(N, sizeof(placed)), .n = N};
    CHECK(s.ps != NULL);
    pthread_t t;
    CHECK_OK(-pthread_create(&t, NULL, supervisor_main, &s));
    for (unsigned i = 0; i < N; i++) {
        result res;
        result_begin(&r, &res, i);
        result_grow(&res, 1000 + (size_t)(i * 7919u % 40) * 1000);
        s.ps[i] = result_publish(&r, &res);
        atomic_store(&s.published, i + 1);
    }
    CHECK_OK(-pthread_join(t, NULL));
    CHECK_EQ(s.wrong, 0);
    free(s.ps);
    ring_free(&r);
}

MPT_MAIN()
