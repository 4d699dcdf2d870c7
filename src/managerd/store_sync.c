/*
 * store_sync.c - Lock, RLock, Semaphore, BoundedSemaphore, Event,
 * Condition and Barrier in the store, the waits they need, and Value and
 * Array.
 *
 * DESIGN
 * State under the store lock.  Every transition (a lock taken, a unit
 * released, a barrier tripped) is a few logged words changed with the
 * store lock held, like any other operation: atomic, and rolled back if
 * its process dies halfway.  Only waiting happens outside the lock.
 *
 * Waiting.  Each object has a futex word, seq, and a count of sleepers,
 * nsleep.  A waiter, holding the store lock, finds it must wait, counts
 * itself in nsleep, reads seq, releases the lock and sleeps while seq is
 * unchanged.  Every transition that may end a wait bumps seq and wakes all
 * sleepers if nsleep says there are any, with the store lock held: since
 * the waiter read seq under the same lock, it either sees the new value
 * or is already asleep, and no wake-up is lost.  Woken, a waiter takes the
 * lock and checks its condition again.  Waking all rather than one keeps
 * it simple and safe when a woken waiter dies or gives up: nobody waits
 * for a wake-up that went to a dead process.
 *
 * Slices.  No sleep lasts more than MX_SLICE_NS (50 ms).  Between slices
 * the waiter asks its context whether to go on (mx_ctx.check): a local
 * client whether the server still lives, the server whether the remote
 * client is still connected and whether the server is stopping.  So a
 * wait ends within a slice when the server dies or the waiting client
 * hangs up, whatever its timeout.
 *
 * Owners.  A Lock, an RLock and a Condition's lock record their holder as
 * (client, thread): the client is the connection's number, which the
 * server assigns, so that when a connection ends (its process exited or
 * was killed) the server releases everything it held (mp__mss_forget).  A
 * Lock asked for again by its holder says MP_EDEADLK rather than hang.
 *
 * Condition: its lock is an RLock; waiters count themselves (w[3]) and
 * notify(n) hands out tokens (w[4]) up to that count, one per waiter that
 * wakes; a waiter that times out leaves, and takes back a token if there
 * are more tokens than waiters.  A waiter killed while waiting is not
 * counted out (its process did not get to), so a later notify may go to
 * it; the next wait then returns at once, as from a spurious wake-up.
 *
 * Barrier: w[0] parties, w[1] arrived, w[2] generation, w[3] broken, w[4]
 * a ring of 64 bits saying which recent generations ended broken (by
 * reset) rather than tripped, so that a waiter woken late learns how its
 * own generation ended.  A waiter whose time runs out breaks the barrier
 * for everyone, as in Python.
 *
 * Value and Array: numbers held as int64 or as double bits, range-checked
 * by their type on every write.
 */
#define _GNU_SOURCE
#include "mgr.h"

#include <math.h>

/* Most elements one Array read or write moves: a write is logged word by
 * word, and the undo log must hold it. */
#define ARRAY_CHUNK 8192
#define ARRAY_MAX   ((uint64_t)1 << 20)

int mp__mss_sleep(mx_ctx *c, ms_obj *o, uint32_t gen, int64_t deadline)
{
    int64_t now = mp__now_ns();
    if (deadline != MP__NO_DEADLINE && now >= deadline)
        return MP_ETIMEDOUT;
    uint32_t seq = atomic_load(&o->seq);
    atomic_fetch_add(&o->nsleep, 1);
    mp__mstore_unlock(c->s);
    int64_t until = now + MX_SLICE_NS;
    if (deadline < until)
        until = deadline;
    int rc = mp__futex_wait(&o->seq, seq, until);
    atomic_fetch_sub(&o->nsleep, 1);
    int stop = 0;
    if (rc == MP_ETIMEDOUT && c->check)
        stop = c->check(c->arg);
    int lrc = mp__mstore_lock(c->s);
    if (lrc < 0) {
        /* The store cannot be locked: the caller must not unlock it. */
        c->unlocked = true;
        return lrc;
    }
    if (stop)
        return stop;
    if (o->type == 0 || o->gen != gen)
        return MP_ENOOBJ;
    return 0;
}

void mp__mss_wake(ms_obj *o)
{
    atomic_fetch_add(&o->seq, 1);
    if (atomic_load(&o->nsleep) > 0)
        mp__futex_wake(&o->seq, INT32_MAX);
}

/* ---- locks ------------------------------------------------------------------ */

/* w[0] holder's client, w[1] its thread, w[2] depth. */
static bool held_by(const ms_obj *o, uint32_t client, uint32_t tid)
{
    return o->w[0] == client && o->w[1] == tid;
}

static int lock_acquire(mx_ctx *c, ms_obj *o, uint32_t tid, int64_t deadline)
{
    uint32_t gen = o->gen;
    bool recursive = o->type != MP_MLOCK;
    for (;;) {
        if (o->w[0] == 0) {
            mp__ms_set(c->s, &o->w[0], c->client);
            mp__ms_set(c->s, &o->w[1], tid);
            mp__ms_set(c->s, &o->w[2], 1);
            return 0;
        }
        if (held_by(o, c->client, tid)) {
            if (!recursive)
                return MP_EDEADLK;
            if (o->w[2] >= UINT32_MAX)
                return MP_EOVERFLOW;
            mp__ms_set(c->s, &o->w[2], o->w[2] + 1);
            return 0;
        }
        int rc = mp__mss_sleep(c, o, gen, deadline);
        if (rc < 0)
            return rc;
    }
}

static void lock_clear(ms_store *s, ms_obj *o)
{
    mp__ms_set(s, &o->w[0], 0);
    mp__ms_set(s, &o->w[1], 0);
    mp__ms_set(s, &o->w[2], 0);
    mp__mss_wake(o);
}

static int lock_release(mx_ctx *c, ms_obj *o, uint32_t tid)
{
    if (!held_by(o, c->client, tid))
        return MP_EPERM;
    if (o->w[2] > 1) {
        mp__ms_set(c->s, &o->w[2], o->w[2] - 1);
        return 0;
    }
    lock_clear(c->s, o);
    return 0;
}

/* ---- Condition ----------------------------------------------------------------- */

static int cond_wait(mx_ctx *c, ms_obj *o, uint32_t tid, int64_t deadline)
{
    if (!held_by(o, c->client, tid))
        return MP_EPERM;
    ms_store *s = c->s;
    uint32_t gen = o->gen;
    uint64_t depth = o->w[2];
    c->keep = true; /* the lock given up and taken back stay so */
    lock_clear(s, o);
    mp__ms_set(s, &o->w[3], o->w[3] + 1);
    int rc;
    for (;;) {
        rc = mp__mss_sleep(c, o, gen, deadline);
        if (rc == MP_ENOOBJ || (rc < 0 && rc != MP_ETIMEDOUT))
            break;
        if (o->w[4] > 0) {
            mp__ms_set(s, &o->w[4], o->w[4] - 1);
            rc = 0;
            break;
        }
        if (rc == MP_ETIMEDOUT)
            break;
    }
    if (rc == MP_ENOOBJ)
        return rc;
    if (o->w[3] > 0)
        mp__ms_set(s, &o->w[3], o->w[3] - 1);
    if (o->w[4] > o->w[3])
        mp__ms_set(s, &o->w[4], o->w[3]);
    if (rc < 0 && rc != MP_ETIMEDOUT)
        return rc; /* the client or the server is going away */
    /* Take the lock back, however long that takes (as Python does). */
    int lrc = lock_acquire(c, o, tid, MP__NO_DEADLINE);
    if (lrc < 0)
        return lrc;
    mp__ms_set(s, &o->w[2], depth);
    return rc;
}

static int cond_notify(mx_ctx *c, ms_obj *o, uint32_t tid, int64_t n)
{
    if (!held_by(o, c->client, tid))
        return MP_EPERM;
    uint64_t waiters = o->w[3], tokens = o->w[4];
    uint64_t want = n < 0 ? waiters : tokens + (uint64_t)n;
    if (want > waiters)
        want = waiters;
    if (want != tokens) {
        mp__ms_set(c->s, &o->w[4], want);
        mp__mss_wake(o);
    }
    return 0;
}

/* ---- Semaphore and Event ---------------------------------------------------- */

static int sem_acquire(mx_ctx *c, ms_obj *o, int64_t deadline)
{
    uint32_t gen = o->gen;
    while (o->w[0] == 0) {
        int rc = mp__mss_sleep(c, o, gen, deadline);
        if (rc < 0)
            return rc;
    }
    mp__ms_set(c->s, &o->w[0], o->w[0] - 1);
    return 0;
}

static int sem_release(mx_ctx *c, ms_obj *o)
{
    if (o->w[0] >= o->w[1])
        return MP_EOVERFLOW;
    mp__ms_set(c->s, &o->w[0], o->w[0] + 1);
    mp__mss_wake(o);
    return 0;
}

static int event_wait(mx_ctx *c, ms_obj *o, int64_t deadline)
{
    uint32_t gen = o->gen;
    while (o->w[0] == 0) {
        int rc = mp__mss_sleep(c, o, gen, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- Barrier --------------------------------------------------------------------- */

static void barrier_end(ms_store *s, ms_obj *o, bool broken)
{
    uint64_t bit = (uint64_t)1 << (o->w[2] % 64);
    mp__ms_set(s, &o->w[4], broken ? (o->w[4] | bit) : (o->w[4] & ~bit));
    mp__ms_set(s, &o->w[2], o->w[2] + 1);
    mp__ms_set(s, &o->w[1], 0);
    mp__mss_wake(o);
}

static int barrier_wait(mx_ctx *c, ms_obj *o, int64_t deadline, mp__mrep *rp)
{
    ms_store *s = c->s;
    if (o->w[3])
        return MP_EBROKEN;
    uint64_t parties = o->w[0], index = o->w[1], g = o->w[2];
    if (parties == 0 || index >= parties)
        return MP_EPROTO;
    rp->a = (int64_t)index;
    if (index + 1 == parties) {
        barrier_end(s, o, false);
        return 0;
    }
    mp__ms_set(s, &o->w[1], index + 1);
    uint32_t gen = o->gen;
    for (;;) {
        int rc = mp__mss_sleep(c, o, gen, deadline);
        if (o->w[2] != g && rc != MP_ENOOBJ)
            return (o->w[4] >> (g % 64)) & 1 ? MP_EBROKEN : 0;
        if (rc < 0 && rc != MP_ENOOBJ && !c->unlocked) {
            /* A party that leaves - its time ran out, its client hung up -
             * breaks the barrier for all, as a timeout does in Python. */
            c->keep = true;
            mp__ms_set(s, &o->w[3], 1);
            mp__mss_wake(o);
        }
        if (rc < 0)
            return rc;
        if (o->w[3])
            return MP_EBROKEN;
    }
}

/* ---- Value and Array ------------------------------------------------------------ */

static bool is_float(uint64_t t)
{
    return t == MP_TYPE_f || t == MP_TYPE_d;
}

/* The range of an integer type (stored as int64). */
static void int_range(uint64_t t, int64_t *lo, int64_t *hi)
{
    switch (t) {
    case MP_TYPE_b:
        *lo = INT8_MIN, *hi = INT8_MAX;
        return;
    case MP_TYPE_B:
    case MP_TYPE_c:
        *lo = 0, *hi = UINT8_MAX;
        return;
    case MP_TYPE_h:
        *lo = INT16_MIN, *hi = INT16_MAX;
        return;
    case MP_TYPE_H:
        *lo = 0, *hi = UINT16_MAX;
        return;
    case MP_TYPE_i:
        *lo = INT32_MIN, *hi = INT32_MAX;
        return;
    case MP_TYPE_I:
        *lo = 0, *hi = UINT32_MAX;
        return;
    case MP_TYPE_L:
    case MP_TYPE_Q:
        *lo = 0, *hi = INT64_MAX;
        return;
    default:
        *lo = INT64_MIN, *hi = INT64_MAX;
        return;
    }
}

/* A number for a slot of type t, as stored bits.  double_given says which
 * of i and x the caller means. */
static int number(uint64_t t, bool double_given, int64_t i, double x, uint64_t *bits)
{
    if (t < MP_TYPE_b || t > MP_TYPE_c)
        return MP_EPROTO;
    if (double_given != is_float(t))
        return MP_EINVAL;
    if (double_given) {
        if (t == MP_TYPE_f && isfinite(x) && fabs(x) > 3.4028234663852886e38)
            return MP_ERANGE;
        double v = t == MP_TYPE_f ? (double)(float)x : x;
        memcpy(bits, &v, 8);
        return 0;
    }
    int64_t lo, hi;
    int_range(t, &lo, &hi);
    if (i < lo || i > hi)
        return MP_ERANGE;
    *bits = (uint64_t)i;
    return 0;
}

/* A number back: in x for floating-point types, in a for integers; b
 * says the type. */
static void answer(uint64_t t, uint64_t bits, mp__mrep *rp)
{
    rp->b = (int64_t)t;
    if (is_float(t))
        memcpy(&rp->x, &bits, 8);
    else
        rp->a = (int64_t)bits;
}

static int value_add(ms_store *s, ms_obj *o, int64_t delta, mp__mrep *rp)
{
    if (is_float(o->w[0]))
        return MP_EINVAL;
    int64_t old = (int64_t)o->w[1], lo, hi;
    int_range(o->w[0], &lo, &hi);
    if ((delta > 0 && old > hi - delta) || (delta < 0 && old < lo - delta))
        return MP_ERANGE;
    mp__ms_set(s, &o->w[1], (uint64_t)(old + delta));
    rp->a = old;
    return 0;
}

static uint64_t *array_data(const ms_store *s, const ms_obj *o)
{
    if (o->w[1] == 0 || o->w[1] > ARRAY_MAX)
        return NULL;
    return mp__ms_at(s, o->w[2], o->w[1] * 8);
}

static int array_rw(ms_store *s, ms_obj *o, const mp__mreq *rq, mp__mrep *rp)
{
    uint64_t *data = array_data(s, o), n = o->w[1];
    if (!data)
        return MP_EPROTO;
    uint64_t start = (uint64_t)rq->a, cnt;
    if (rq->op == MX_A_READ)
        cnt = (uint64_t)rq->b;
    else if (rq->nstr == 1 && rq->str[0].len % 8 == 0)
        cnt = rq->str[0].len / 8;
    else
        return MP_EINVAL;
    if (rq->a < 0 || cnt > ARRAY_CHUNK || start > n || cnt > n - start)
        return MP_ERANGE;
    if (((rq->flags & MX_F_DOUBLE) != 0) != is_float(o->w[0]))
        return MP_EINVAL;
    if (rq->op == MX_A_READ) {
        uint8_t *p = mp__mrep_add(rp, cnt * 8);
        if (!p)
            return MP_ENOMEM;
        for (uint64_t i = 0; i < cnt; i++)
            mw_put64(p + 8 * i, data[start + i]);
        rp->a = (int64_t)cnt;
        return 0;
    }
    const uint8_t *in = rq->str[0].p;
    for (uint64_t i = 0; i < cnt; i++) { /* all or nothing: check first */
        uint64_t bits = mw_get64(in + 8 * i), out;
        double x;
        memcpy(&x, &bits, 8);
        if (number(o->w[0], is_float(o->w[0]), (int64_t)bits, x, &out) < 0)
            return MP_ERANGE;
    }
    for (uint64_t i = 0; i < cnt; i++) {
        uint64_t bits = mw_get64(in + 8 * i), out = bits;
        double x;
        memcpy(&x, &bits, 8);
        (void)number(o->w[0], is_float(o->w[0]), (int64_t)bits, x, &out);
        mp__ms_set(s, &data[start + i], out);
    }
    return 0;
}

static int array_op(ms_store *s, ms_obj *o, const mp__mreq *rq, mp__mrep *rp)
{
    uint64_t *data = array_data(s, o);
    if (!data)
        return MP_EPROTO;
    if (rq->op == MX_A_LEN) {
        rp->a = (int64_t)o->w[1];
        return 0;
    }
    if (rq->op == MX_A_READ || rq->op == MX_A_WRITE)
        return array_rw(s, o, rq, rp);
    if (rq->a < 0 || (uint64_t)rq->a >= o->w[1])
        return MP_ERANGE;
    uint64_t *slot = &data[rq->a], bits;
    if (rq->op == MX_A_GET) {
        answer(o->w[0], *slot, rp);
        return 0;
    }
    int rc = number(o->w[0], rq->flags & MX_F_DOUBLE, rq->b, rq->x, &bits);
    if (rc == 0)
        mp__ms_set(s, slot, bits);
    return rc;
}

/* ---- creation, removal, dead clients ---------------------------------------------- */

int mp__mss_init(ms_store *s, ms_obj *o, const mp__mreq *rq)
{
    int64_t p = rq->b;
    int elem = rq->flags >> 8;
    for (int i = 0; i < 5; i++)
        mp__ms_set(s, &o->w[i], 0);
    switch (o->type) {
    case MP_MSEM:
    case MP_MBOUNDEDSEM:
        if (p < 0 || p > INT32_MAX)
            return MP_EINVAL;
        mp__ms_set(s, &o->w[0], (uint64_t)p);
        mp__ms_set(s, &o->w[1], o->type == MP_MSEM ? INT32_MAX : (uint64_t)p);
        return 0;
    case MP_MBARRIER:
        if (p < 1 || p > INT32_MAX)
            return MP_EINVAL;
        mp__ms_set(s, &o->w[0], (uint64_t)p);
        return 0;
    case MP_MVALUE:
        if (elem < MP_TYPE_b || elem > MP_TYPE_c)
            return MP_EINVAL;
        mp__ms_set(s, &o->w[0], (uint64_t)elem);
        return 0;
    case MP_MARRAY: {
        if (elem < MP_TYPE_b || elem > MP_TYPE_c || p < 1 || (uint64_t)p > ARRAY_MAX)
            return MP_EINVAL;
        uint64_t off = mp__ms_alloc(s, (size_t)p * 8);
        if (!off)
            return MP_ENOSPC;
        memset(s->base + off, 0, (size_t)p * 8); /* 0 and 0.0 alike */
        mp__ms_set(s, &o->w[0], (uint64_t)elem);
        mp__ms_set(s, &o->w[1], (uint64_t)p);
        mp__ms_set(s, &o->w[2], off);
        return 0;
    }
    default:
        return 0;
    }
}

void mp__mss_destroy(ms_store *s, ms_obj *o)
{
    if (array_data(s, o))
        mp__ms_free(s, o->w[2]);
}

void mp__mss_forget(ms_store *s, ms_obj *o, uint32_t client)
{
    bool owned = o->type == MP_MLOCK || o->type == MP_MRLOCK || o->type == MP_MCOND;
    if (owned && client != 0 && o->w[0] == client)
        lock_clear(s, o);
}

int mp__mss_op(mx_ctx *c, ms_obj *o, const mp__mreq *rq, mp__mrep *rp)
{
    int64_t deadline = mp__deadline(rq->timeout);
    ms_store *s = c->s;
    switch (rq->op) {
    case MX_K_ACQUIRE:
        return lock_acquire(c, o, rq->tid, deadline);
    case MX_K_RELEASE:
        return lock_release(c, o, rq->tid);
    case MX_C_WAIT:
        return cond_wait(c, o, rq->tid, deadline);
    case MX_C_NOTIFY:
        return cond_notify(c, o, rq->tid, rq->a);
    case MX_S_ACQUIRE:
        return sem_acquire(c, o, deadline);
    case MX_S_RELEASE:
        return sem_release(c, o);
    case MX_S_VALUE:
        rp->a = (int64_t)o->w[0];
        return 0;
    case MX_E_SET:
        if (o->w[0] == 0) {
            mp__ms_set(s, &o->w[0], 1);
            mp__mss_wake(o);
        }
        return 0;
    case MX_E_CLEAR:
        if (o->w[0])
            mp__ms_set(s, &o->w[0], 0);
        return 0;
    case MX_E_ISSET:
        rp->a = o->w[0] != 0;
        return 0;
    case MX_E_WAIT:
        return event_wait(c, o, deadline);
    case MX_B_WAIT:
        return barrier_wait(c, o, deadline, rp);
    case MX_B_ABORT:
        mp__ms_set(s, &o->w[3], 1);
        mp__mss_wake(o);
        return 0;
    case MX_B_RESET:
        if (o->w[1] > 0)
            barrier_end(s, o, true);
        mp__ms_set(s, &o->w[3], 0);
        mp__mss_wake(o);
        return 0;
    case MX_B_BROKEN:
        rp->a = o->w[3] != 0;
        return 0;
    case MX_V_GET:
        answer(o->w[0], o->w[1], rp);
        return o->w[0] >= MP_TYPE_b && o->w[0] <= MP_TYPE_c ? 0 : MP_EPROTO;
    case MX_V_SET: {
        uint64_t bits;
        int rc = number(o->w[0], rq->flags & MX_F_DOUBLE, rq->b, rq->x, &bits);
        if (rc == 0)
            mp__ms_set(s, &o->w[1], bits);
        return rc;
    }
    case MX_V_ADD:
        return value_add(s, o, rq->a, rp);
    default:
        return array_op(s, o, rq, rp);
    }
}
