/*
 * queue.c - a queue of variable-size messages in shared memory, for many
 * producers and consumers in many processes, that survives their deaths.
 *
 * DESIGN
 * Memory.  One memory file (memfd, size sealed) holds a control block and,
 * from offset QHDR_SIZE, the ring: a power-of-two number of bytes, then
 * the consumers' slots (SLOTS_SIZE bytes; below).  A
 * message is a record: an 8-byte length, the payload, padding to 8 bytes;
 * records are contiguous in ring order and wrap around the end (copies are
 * split in two there, still one copy).  A header never straddles the end,
 * because records and the ring are multiples of 8.  The control block holds
 * no pointers, only numbers: every process maps it where it likes.
 *
 * Positions.  Producers own one 64-bit word, `tail`; consumers own `head`.
 * Each packs a byte position (modulo 2^31) and a message count (modulo
 * 2^32); tail has the closed flag in bit 63.  Bytes in use are
 * tail.pos - head.pos, messages tail.count - head.count, both in modular
 * arithmetic; the capacity is at most 2^30, so the differences never wrap.
 * Packing matters: a message and its count are published by one atomic
 * write, so a process that dies between two writes can never leave the
 * count disagreeing with the ring.
 *
 * Locks.  Producers take `put.lock` and consumers `get.lock`: robust,
 * process-shared mutexes (mp__mutex).  One put and one get run at once, and
 * they share nothing but the two words, so 1 producer + 1 consumer run as a
 * classic single-producer single-consumer ring, each side keeping a cached
 * copy of the other's word (head_cache, tail_cache) and reading the real one
 * only when the cache says full or empty; every lock stays in its own
 * cache line on its own CPU.  Waiting for room or for data happens while
 * holding one's lock: so at most one process waits on each futex word, and
 * its "waiting" flag is exactly repairable (below).  The others queue on
 * the mutex, with their own deadlines.
 *
 * Commit points.  A put writes the record past tail, where no consumer
 * looks, then publishes it with one compare-and-swap of tail (position +
 * need, count + 1).  The CAS fails only if close() set the closed bit in
 * between: the put then reports MP_ECLOSED and the record is never seen, so
 * a close can never strand a message that a put reported as sent.  A get
 * copies the record out, then commits with one store of head.  Hence:
 *   - a producer killed before its CAS leaves nothing visible; after it,
 *     its message is whole in the queue.  No repair is needed for the ring.
 *   - a consumer killed before its store of head leaves the message first in
 *     the queue: the next get delivers it (once: the dead one never
 *     returned it).  Killed after the store and before its get returned,
 *     it took the message with it: lost, never duplicated - and counted.
 *
 * Consumer slots: every loss is counted.  A get that committed can still
 * die before it returns: before its unlock, inside it (glibc's wake-up of
 * a waiting consumer is a system call, where a SIGKILL lands readily), or
 * after it, when the lock word is free and no MP_EOWNERDEAD will ever tell
 * anyone.  So a consumer claims, for its whole get, one of NSLOTS slots in
 * the control block: a word {lost, start, tid, state} it claims with one
 * compare-and-swap from S_FREE and then writes with plain stores (no other
 * process writes a claimed slot while its owner lives), and head0.  The
 * state says where the get is: S_ACTIVE (inside a get, nothing taken),
 * S_TAKING (holding the get lock, head0 = the head it started from, about
 * to copy and commit), S_TAKEN (committed, not yet returned).  Writing
 * S_FREE back is the very last thing a get does: that store is the
 * delivery.  A slot that is not free names its owner by thread id and
 * start time, which another process can check (/proc: mp__thread_check),
 * so whoever finds a dead owner's slot - join, stats, a get that finds no
 * free slot, and for S_TAKING the repair after a dead holder of the get
 * lock - settles it: S_TAKEN is a loss; S_TAKING is a loss if head moved
 * past head0.  Settling is one compare-and-swap of the word (back to
 * S_FREE, lost + 1), so two settlers never both count, and one killed
 * halfway leaves the slot for the next.
 *   Why head0 can be trusted: a slot is S_TAKING only while its owner holds
 * the get lock, so a slot seen S_TAKING by the holder of the get lock is a
 * dead holder's (no liveness check needed), and a dead S_TAKING slot means
 * that the get lock comes back MP_EOWNERDEAD to whoever takes it next.
 * That repairer settles every S_TAKING slot before it moves head; a settler
 * elsewhere reads head and then swaps the word it read, which fails once
 * the repairer has settled it.  So a swap that succeeds compared head0 with
 * a head that had not moved since the death.
 *   Losses are counted per slot and summed when read; `lossy` marks the
 * slots that ever lost a message, so that task_done, which needs the sum,
 * reads no slot in a queue that never lost one.  Deaths are counted in
 * get.dead by the settler.  The fast path costs one uncontended
 * compare-and-swap and a few stores in a cache line the consumer keeps;
 * a robust mutex per slot, the kernel's own death notice, measured 20-30%
 * fewer messages per second.  A get that finds all NSLOTS slots claimed
 * by live consumers inside a get waits, in naps, for one to be free.
 *
 * Repairs of a dead holder of either lock also clear its waiting flag and
 * wake the other side, which the dead process may have owed a wake-up.
 *
 * Wake-ups.  Futex words with a waiting flag, so that an uncontended put or
 * get makes no system call:
 *   consumer:  data_wait = 1; s = data_seq; re-read tail; futex_wait(data_seq, s)
 *   producer:  CAS tail; if (data_wait) { data_seq++; futex_wake(data_seq) }
 * All four accesses are sequentially consistent: either the consumer's
 * re-read sees the new tail, or the producer's read of data_wait sees 1 and
 * bumps data_seq after the consumer read it, so the futex_wait returns at
 * once.  Space waits mirror this with space_wait/space_seq, head's store as
 * the consumer's barrier.  Before sleeping, a waiter polls for a few
 * microseconds, then yields for a few more (SPIN_NS, YIELD_NS), which is
 * what gives sub-microsecond hand-offs; a kernel wake-up costs about 5 us
 * here.  Sleeps are cut into slices of RECHECK_NS and the condition is
 * re-read after each: a process killed between its commit and its wake-up
 * call cannot leave anyone asleep for longer than that, and a join notices
 * a consumer that died after its unlock within a slice.  (The test build
 * switches the slices off - mp__recheck_slices() - so that a wake-up lost
 * any other way hangs a test.)
 *
 * Watchers.  A wait on many things (mp_wait_any, wait.c) watches for data
 * without taking the get lock: it raises data_watchers, reads data_seq,
 * re-reads tail, and sleeps on data_seq; a put that sees data_watchers
 * raised after its commit bumps data_seq and wakes everyone sleeping on it
 * (watchers and the get-lock holder alike).  The same sequentially
 * consistent pairs make it race-free; like every sleep here, a watcher's
 * is cut into slices (a producer may die between its commit and its
 * wake-up).  A watcher that is killed leaves the count raised, which costs
 * each later put one futex wake call and nothing else.  Every queue a
 * process makes or attaches is registered for its shutdown (shutdown.c),
 * which closes it.
 *
 * Close sets bit 63 of tail with one atomic OR, then wakes every waiter.
 * Consumers read "closed" and "empty" from the same word, so they return
 * MP_EOF only when nothing is left.
 *
 * Joinable queues count done messages in `ndone`; unfinished is
 * tail.count - ndone - lost (modulo 2^32): messages a dead consumer took
 * away count as done, so join is not blocked by a crash; join settles dead
 * slots when it starts and at each slice.  Joiners wait on done_seq with a
 * waiter count; a killed joiner leaves the count raised, which costs only a
 * spare wake-up call each time the queue becomes idle.
 *
 * After fork: the mapping and descriptor are inherited; a child uses the
 * parent's mp_queue as it is.  Locks are owned by threads (robust mutexes
 * record thread ids), so a lock held by a parent's thread during fork is
 * simply released later by that thread.
 */
#define _GNU_SOURCE
#include "queue.h"
#include "log.h"

#include "shutdown.h"
#include "testhooks.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdalign.h>
#include <unistd.h>

#define QMAGIC    0x3176717270706d00ULL /* "\0mpprqv1" */
#define QVERSION  2u
#define QHDR_SIZE 4096u
#define NSLOTS    64u
#define SLOT_SIZE 64u /* a slot is written by one consumer: a line each */
/* The slots come after the ring, which keeps the ring where it always was:
 * with them in front (a ring 8 KiB into the file) one producer and one
 * consumer moved 10-20% fewer messages, repeatably. */
#define SLOTS_SIZE  ((size_t)NSLOTS * SLOT_SIZE)
#define HDR         8u
#define MIN_CAP     ((uint64_t)256)
#define MAX_CAP     ((uint64_t)1 << 30)
#define DEFAULT_CAP ((uint64_t)1 << 20)
#define MAX_MSGS    ((uint64_t)1 << 30)
#define F_JOINABLE  1u

#define CLOSED_BIT ((uint64_t)1 << 63)
#define POS_MASK   0x7fffffffu

/* Waiting before sleeping.  A waiter first polls, with pauses that grow to
 * SPIN_PAUSE_MAX between polls: the first polls come quickly, so that a
 * hand-off takes a few hundred nanoseconds; later ones come less often,
 * because each poll takes the cache line the other side is writing away
 * from it, and the locked instructions of its next put or get then wait a
 * whole cross-CPU transfer (about 90 ns here) to get it back.  After
 * SPIN_NS it polls between sched_yield() calls, so that the other side runs
 * at once if it shares this CPU (more processes than CPUs), and after
 * YIELD_NS it sleeps in the kernel.  20 us of polling is about the cost of
 * the kernel sleep and wake-up it may save. */
#define SPIN_PAUSE_MAX 16u
#define SPIN_NS        5000
#define YIELD_NS       20000
/* Sleeps are cut into slices this long (see DESIGN: wake-ups owed by a
 * process that died). */
#define RECHECK_NS 100000000LL

/* Read-ahead.  The locked instructions of a get (mutex, commit) wait for
 * its loads, and the records were last written on another CPU: without
 * help every get would wait one cross-CPU miss.  So a get asks for the
 * cache lines of the next few records while it copies its own; prefetches
 * are not held up by locked instructions.  Never the line holding tail,
 * which the producer is still writing: taking it would stall the producer.
 * Measured: 4 lines ahead doubles 1P1C throughput on the reference machine
 * (6 to 12 M msgs/s); prefetching for writing on the producer's side helped
 * as much alone and hurt combined with this, so it is not done. */
#define READ_AHEAD_LINES 4

/* Intel CPUs fetch cache lines in adjacent pairs: 128 bytes keep apart
 * what different processes write. */
#define LINE 128

/* The padding is the point: what different processes write lives in
 * different cache-line pairs. */
typedef struct qshared { /* NOLINT(clang-analyzer-optin.performance.Padding) */
    /* Set by mp_queue_new_opts(), read-only afterwards. */
    _Atomic uint64_t magic; /* written last */
    uint32_t version;
    uint32_t flags;
    uint64_t cap; /* ring bytes, a power of two */
    uint64_t max_msgs;
    uint64_t map_size;

    /* {closed:1, pos:31, count:32}: written by the put-lock holder (and by
     * close's OR), read by consumers. */
    alignas(LINE) _Atomic uint64_t tail;
    /* {0:1, pos:31, count:32}: written by the get-lock holder. */
    alignas(LINE) _Atomic uint64_t head;

    alignas(LINE) struct {
        mp__mutex lock;
        uint64_t head_cache; /* last head seen */
        _Atomic uint64_t dead;
    } put;

    alignas(LINE) struct {
        mp__mutex lock;
        uint64_t tail_cache; /* last tail seen */
        /* Bit i: slot i has lost a message (see DESIGN: consumer slots). */
        _Atomic uint64_t lossy;
        _Atomic uint64_t dead; /* consumers that died inside a get */
    } get;

    /* Read by every put, written only when the get-lock holder sleeps. */
    alignas(LINE) _Atomic uint32_t data_wait;
    _Atomic uint32_t data_seq;
    _Atomic uint32_t data_watchers; /* waits outside the get lock (Watchers) */
    /* Read by every get, written only when the put-lock holder sleeps. */
    alignas(LINE) _Atomic uint32_t space_wait;
    _Atomic uint32_t space_seq;

    alignas(LINE) _Atomic uint32_t ndone;
    _Atomic uint32_t done_seq;
    _Atomic uint32_t done_waiters;
} qshared;

_Static_assert(sizeof(qshared) <= QHDR_SIZE, "control block larger than its page");

/* A consumer's slot (see DESIGN), NSLOTS of them after the ring. */
typedef struct gslot {
    /* {lost:25, start:14, tid:22, state:3}: lost counts modulo 2^25 the
     * messages the slot's dead owners took away (settled); start is the
     * owner's start time, modulo 2^14 clock ticks; tid and state are 0 in
     * a free slot.  Thread ids are below 2^22 (PID_MAX_LIMIT). */
    _Atomic uint64_t word;
    /* The head the owner started from, valid in S_TAKING. */
    _Atomic uint64_t head0;
} gslot;

_Static_assert(sizeof(gslot) <= SLOT_SIZE, "a slot fits its line");
_Static_assert(NSLOTS <= 64, "lossy has a bit per slot");

enum { S_FREE = 0, S_ACTIVE = 1, S_TAKING = 2, S_TAKEN = 3 };

struct mp_queue {
    qshared *s;
    char *ring;
    char *slots;
    uint64_t cap, mask;
    size_t map_size;
    int fd;
    mp__closer *closer;  /* the registration for shutdown */
    bool multi_cpu;      /* on one CPU, pausing only delays the other side: yield at once */
    int64_t get_delay;   /* before a waiting get's first poll (see STREAM_NS) */
    unsigned get_streak; /* waits in a row that ended at their first poll */
};

void (*mp__queue_fault)(mp__queue_point where);

static inline void fault_point(mp__queue_point where)
{
    if (__builtin_expect(mp__queue_fault != NULL, 0))
        mp__queue_fault(where);
}

static inline gslot *slot_at(const mp_queue *q, unsigned i)
{
    return (gslot *)(q->slots + (size_t)i * SLOT_SIZE);
}

static inline uint64_t sw_make(unsigned state, uint32_t tid, uint64_t start, uint32_t lost)
{
    return (uint64_t)(lost & 0x1ffffffu) << 39 | (start & 0x3fffu) << 25 |
           (uint64_t)(tid & 0x3fffffu) << 3 | state;
}

static inline unsigned sw_state(uint64_t w)
{
    return (unsigned)(w & 7u);
}

static inline pid_t sw_tid(uint64_t w)
{
    return (pid_t)((w >> 3) & 0x3fffffu);
}

static inline uint64_t sw_start(uint64_t w)
{
    return (w >> 25) & 0x3fffu;
}

static inline uint32_t sw_lost(uint64_t w)
{
    return (uint32_t)(w >> 39);
}

/* The same word in another state. */
static inline uint64_t sw_with(uint64_t w, unsigned state)
{
    return (w & ~(uint64_t)7u) | state;
}

/* ---- words ----------------------------------------------------------------- */

static inline uint32_t w_pos(uint64_t w)
{
    return (uint32_t)(w >> 32) & POS_MASK;
}

static inline uint32_t w_count(uint64_t w)
{
    return (uint32_t)w;
}

static inline uint64_t w_make(uint32_t pos, uint32_t count)
{
    return (uint64_t)(pos & POS_MASK) << 32 | count;
}

static inline uint64_t used_bytes(uint64_t t, uint64_t h)
{
    return (w_pos(t) - w_pos(h)) & POS_MASK;
}

static inline uint32_t used_msgs(uint64_t t, uint64_t h)
{
    return w_count(t) - w_count(h);
}

static inline uint64_t record_size(uint64_t len)
{
    return HDR + ((len + 7) & ~(uint64_t)7);
}

/* Whether a record of need bytes fits between head h and tail t. */
static inline bool room(const mp_queue *q, uint64_t t, uint64_t h, uint64_t need)
{
    if (used_bytes(t, h) + need > q->cap)
        return false;
    return q->s->max_msgs == 0 || used_msgs(t, h) < q->s->max_msgs;
}

static void ring_write(const mp_queue *q, uint32_t pos, const void *src, size_t n)
{
    size_t off = pos & q->mask, first = q->cap - off < n ? q->cap - off : n;
    memcpy(q->ring + off, src, first);
    if (n > first)
        memcpy(q->ring, (const char *)src + first, n - first);
}

static void ring_read(const mp_queue *q, uint32_t pos, void *dst, size_t n)
{
    size_t off = pos & q->mask, first = q->cap - off < n ? q->cap - off : n;
    memcpy(dst, q->ring + off, first);
    if (n > first)
        memcpy((char *)dst + first, q->ring, n - first);
}

/* Prefetches the lines from position next on, up to the line that holds
 * tail t (see READ_AHEAD_LINES). */
static inline void read_ahead(const mp_queue *q, uint32_t next, uint64_t t)
{
    uint32_t tline = w_pos(t) & ~63u;
    for (unsigned k = 0; k < READ_AHEAD_LINES; k++) {
        uint32_t a = (next & ~63u) + 64 * k;
        /* a must lie before tail's line, in modular positions. */
        if (a == tline || ((tline - a) & POS_MASK) > q->cap)
            break;
        __builtin_prefetch(q->ring + (a & q->mask), 0);
    }
}

/* ---- waiting --------------------------------------------------------------- */

/* A call's timeout.  The deadline is computed at the first wait, so that the
 * fast path never reads the clock. */
typedef struct qwait {
    double timeout;
    int64_t deadline;
    bool have;
    bool slices; /* mp__recheck_slices(), read when the wait began */
} qwait;

static bool qwait_nowait(const qwait *w)
{
    return !(w->timeout < 0) && !(w->timeout > 0);
}

static int64_t qwait_deadline(qwait *w)
{
    if (!w->have) {
        w->deadline = mp__deadline(w->timeout);
        w->slices = mp__recheck_slices();
        w->have = true;
    }
    return w->deadline;
}

/* The end of the next sleep slice. */
static int64_t qwait_slice(qwait *w)
{
    int64_t dl = qwait_deadline(w);
    return mp__slice_end(w->slices, dl, RECHECK_NS);
}

static bool qwait_expired(qwait *w)
{
    return mp__remaining_ns(qwait_deadline(w)) <= 0;
}

/* The error for a wait that ran out. */
static int qwait_error(const qwait *w)
{
    return qwait_nowait(w) ? MP_EAGAIN : MP_ETIMEDOUT;
}

/* One waiter's progress through the phases above. */
typedef struct spin {
    unsigned polls;
    unsigned pause;
    int64_t start;
    int64_t elapsed;
} spin;

/* Waits before the next poll.  Returns false once it is time to sleep. */
static bool spin_more(const mp_queue *q, spin *sp)
{
    if ((sp->polls++ & 7) == 0) {
        int64_t now = mp__now_ns();
        if (sp->start == 0)
            sp->start = now;
        sp->elapsed = now - sp->start;
        if (sp->elapsed >= YIELD_NS)
            return false;
    }
    if (!q->multi_cpu || sp->elapsed >= SPIN_NS) {
        sched_yield();
        return true;
    }
    unsigned n = sp->pause ? sp->pause * 2 : 1;
    sp->pause = n > SPIN_PAUSE_MAX ? SPIN_PAUSE_MAX : n;
    for (unsigned i = 0; i < sp->pause; i++)
        mp__cpu_relax();
    return true;
}

static void wake(_Atomic uint32_t *seq, int n)
{
    atomic_fetch_add(seq, 1);
    mp__futex_wake(seq, n);
}

/* ---- repairs --------------------------------------------------------------- */

static void repair_put(mp_queue *q)
{
    qshared *s = q->s;
    atomic_fetch_add(&s->put.dead, 1);
    atomic_store(&s->space_wait, 0);
    /* It may have published and died before waking a sleeping consumer. */
    wake(&s->data_seq, 1);
    mp_log(MP_LOG_WARNING, "queue: a producer died inside a put; its message is in the queue "
                           "whole or not at all");
}

/* Whether the owner named by slot word w is dead: gone, a zombie, or
 * another thread under a reused id.  When it cannot tell, it says alive:
 * a slot is settled only for sure. */
static bool owner_dead(uint64_t w)
{
    /* Without /proc every thread would look gone: then nobody is. */
    if (mp__thread_start_time() == 0)
        return false;
    uint64_t start;
    int rc = mp__thread_check(sw_tid(w), &start);
    if (rc == MP_ESRCH)
        return true;
    return rc == 0 && (start & 0x3fffu) != sw_start(w);
}

/* Settles slot i, whose word was w and whose owner is dead (see DESIGN:
 * consumer slots).  Returns true when this call settled it. */
static bool slot_settle(mp_queue *q, unsigned i, uint64_t w)
{
    qshared *s = q->s;
    gslot *g = slot_at(q, i);
    unsigned st = sw_state(w);
    bool gone =
        st == S_TAKEN || (st == S_TAKING && atomic_load(&s->head) != atomic_load(&g->head0));
    /* The mark first: a reader of the sum never misses a counted loss. */
    if (gone)
        atomic_fetch_or(&s->get.lossy, (uint64_t)1 << i);
    if (!atomic_compare_exchange_strong(&g->word, &w,
                                        sw_make(S_FREE, 0, 0, sw_lost(w) + (gone ? 1 : 0))))
        return false; /* settled by another */
    atomic_fetch_add(&s->get.dead, 1);
    /* It may have committed and died before waking a waiting producer. */
    wake(&s->space_seq, 1);
    if (gone && (s->flags & F_JOINABLE))
        wake(&s->done_seq, INT32_MAX);
    mp_log(MP_LOG_WARNING, "queue: a consumer died inside a get; %s",
           gone ? "the message it had taken is lost (counted, and done)"
                : "no message was taken from the queue");
    return true;
}

/* Settles every slot whose owner died; returns how many it settled.  The
 * repairer of the get lock (get_repair, holding the lock) settles every
 * S_TAKING slot, which can only be a dead holder's, without asking whether
 * its owner lives. */
static unsigned slots_reap(mp_queue *q, bool get_repair)
{
    unsigned n = 0;
    for (unsigned i = 0; i < NSLOTS; i++) {
        gslot *g = slot_at(q, i);
        uint64_t w = atomic_load(&g->word);
        while (sw_state(w) != S_FREE) {
            bool dead = get_repair && sw_state(w) == S_TAKING ? true : owner_dead(w);
            if (!dead)
                break;
            if (slot_settle(q, i, w)) {
                n++;
                break;
            }
            w = atomic_load(&g->word); /* changed meanwhile: look again */
        }
    }
    return n;
}

static void repair_get(mp_queue *q)
{
    atomic_store(&q->s->data_wait, 0);
    wake(&q->s->space_seq, 1);
    slots_reap(q, true);
}

/* Takes one side's lock, repairing after a dead holder.  Returns 0 with the
 * lock held, or an error without it. */
static int lock_side(mp_queue *q, mp__mutex *m, qwait *w, void (*repair)(mp_queue *))
{
    int rc = mp__mutex_trylock(m);
    if (rc == MP_EBUSY)
        rc = mp__mutex_lock(m, qwait_deadline(w));
    if (rc == MP_EOWNERDEAD) {
        repair(q);
        rc = mp__mutex_consistent(m);
        if (rc < 0) {
            mp__mutex_unlock(m);
            return rc;
        }
    }
    if (rc == MP_ETIMEDOUT)
        rc = qwait_error(w);
    return rc;
}

/* ---- put ------------------------------------------------------------------- */

/* A get that waits polls tail, and every poll takes the line holding it
 * away from the producer, whose next commit must wait to get it back: when
 * messages stream in just slower than a consumer takes them, that is one
 * cross-CPU transfer per message, and the producer's rate halves.  So a
 * consumer that sees messages streaming (STREAM_STREAK waits in a row
 * ended at their first poll) leaves tail alone for STREAM_NS before its
 * first poll, and the producer commits a run of messages undisturbed.  It
 * polls at once again as soon as such a wait brings a single message: then
 * the other side waits for it (a hand-off), and every pause is latency.
 * Measured with one producer and one consumer of 64-byte messages, side
 * by side: 4-8 M msgs/s without, 12 M with; with a producer that works a
 * few dozen nanoseconds per message, 2-3 M without, 4-9 M with. */
#define STREAM_NS     4000
#define STREAM_STREAK 4u

static void adapt_get_delay(mp_queue *q, unsigned polls, uint32_t avail)
{
    if (q->get_delay == 0) {
        q->get_streak = polls == 1 ? q->get_streak + 1 : 0;
        if (q->get_streak >= STREAM_STREAK) {
            q->get_delay = STREAM_NS;
            q->get_streak = 0;
        }
    } else if (polls != 1 || avail < 2) {
        q->get_delay = 0;
        q->get_streak = 0;
    }
}

/* Waits, holding one side's lock, until ready(q, arg) returns 1 (go on) or
 * an error; 0 means not yet.  Polls, the first time after delay_ns, then
 * sleeps on seq with *waiting raised (the protocol in DESIGN: ready's reads
 * are sequentially consistent, after the store of *waiting).  Returns 0,
 * ready's error, MP_EAGAIN or MP_ETIMEDOUT; *polls receives how many polls
 * it took (0 once it slept). */
static int await(mp_queue *q, _Atomic uint32_t *waiting, _Atomic uint32_t *seq,
                 int (*ready)(mp_queue *, void *), void *arg, mp__queue_point where, qwait *w,
                 int64_t delay_ns, unsigned *polls)
{
    spin sp = {0, 0, 0, 0};
    int rc = 0;
    *polls = 0;
    if (qwait_nowait(w))
        return (rc = ready(q, arg)) == 0 ? MP_EAGAIN : rc < 0 ? rc : 0;
    if (delay_ns > 0 && q->multi_cpu) {
        int64_t until = mp__now_ns() + delay_ns;
        do {
            for (int i = 0; i < 16; i++)
                mp__cpu_relax();
        } while (mp__now_ns() < until);
    }
    while (spin_more(q, &sp)) {
        if ((rc = ready(q, arg)) != 0) {
            *polls = sp.polls;
            return rc < 0 ? rc : 0;
        }
    }
    for (;;) {
        atomic_store(waiting, 1);
        uint32_t seen = atomic_load(seq);
        if ((rc = ready(q, arg)) != 0)
            break;
        if (qwait_expired(w)) {
            rc = MP_ETIMEDOUT;
            break;
        }
        fault_point(where);
        mp__futex_wait(seq, seen, qwait_slice(w));
    }
    atomic_store_explicit(waiting, 0, memory_order_relaxed);
    return rc < 0 ? rc : 0;
}

/* For a put waiting for room: *t receives the tail word. */
typedef struct space_arg {
    uint64_t *t;
    uint64_t need;
} space_arg;

static int space_ready(mp_queue *q, void *arg)
{
    space_arg *a = arg;
    uint64_t h = atomic_load(&q->s->head);
    *a->t = atomic_load(&q->s->tail);
    if (*a->t & CLOSED_BIT)
        return MP_ECLOSED;
    if (!room(q, *a->t, h, a->need))
        return 0;
    q->s->put.head_cache = h;
    return 1;
}

/* The detail of a refused put or get (mp_last_error_detail), out of line so
 * that the checks on the way to a message cost no more than before. */
__attribute__((cold, noinline)) static int refused(const char *call, const mp_queue *q,
                                                   bool buf_bad, const char *rule, double timeout)
{
    if (!q)
        return mp__fail(MP_EINVAL, "%s: q must not be NULL", call);
    if (buf_bad)
        return mp__fail(MP_EINVAL, "%s: buf %s", call, rule);
    return mp__fail(MP_EINVAL, "%s: timeout must be a number, < 0 for forever (got %g)", call,
                    timeout);
}

int mp_queue_put(mp_queue *q, const void *buf, size_t len, double timeout)
{
    if (!q || (!buf && len > 0) || mp__timeout_check(timeout) < 0)
        return refused("mp_queue_put", q, !buf && len > 0, "must not be NULL when len > 0",
                       timeout);
    if (len > q->cap - HDR)
        return mp__fail(MP_EMSGSIZE, "mp_queue_put: len must be at most %llu bytes (got %zu)",
                        (unsigned long long)(q->cap - HDR), len);
    qshared *s = q->s;
    uint64_t need = record_size(len);
    qwait w = {timeout, 0, false, true};
    int rc = lock_side(q, &s->put.lock, &w, repair_put);
    if (rc < 0)
        return rc;
    /* Only put-lock holders move tail; close may set its flag at any time,
     * which the CAS below catches. */
    uint64_t t = atomic_load_explicit(&s->tail, memory_order_relaxed);
    if (t & CLOSED_BIT) {
        rc = MP_ECLOSED;
    } else if (!room(q, t, s->put.head_cache, need)) {
        /* The cache says full: look at the real head before waiting. */
        s->put.head_cache = atomic_load_explicit(&s->head, memory_order_acquire);
        if (!room(q, t, s->put.head_cache, need)) {
            space_arg a = {&t, need};
            unsigned polls;
            rc = await(q, &s->space_wait, &s->space_seq, space_ready, &a, MP__QP_PUT_WAITING, &w, 0,
                       &polls);
        }
    }
    if (rc == 0) {
        uint64_t hdr = len;
        uint32_t pos = w_pos(t);
        memcpy(q->ring + (pos & q->mask), &hdr, HDR);
        if (len > 0)
            ring_write(q, pos + HDR, buf, len);
        fault_point(MP__QP_PUT_WRITTEN);
        /* The commit.  Sequentially consistent: it releases the record to
         * consumers and orders the read of data_wait below after it (the
         * wake-up protocol in DESIGN). */
        uint64_t nt = w_make(pos + (uint32_t)need, w_count(t) + 1);
        if (!atomic_compare_exchange_strong(&s->tail, &t, nt))
            rc = MP_ECLOSED; /* closed meanwhile: the record stays unseen */
        else if (atomic_load(&s->data_watchers))
            wake(&s->data_seq, INT32_MAX);
        else if (atomic_load(&s->data_wait))
            wake(&s->data_seq, 1);
        if (rc == 0)
            fault_point(MP__QP_PUT_PUBLISHED);
    }
    mp__mutex_unlock(&s->put.lock);
    return rc;
}

/* ---- get ------------------------------------------------------------------- */

/* For a get waiting for a message after head *arg: leaves the tail seen in
 * get.tail_cache. */
static int data_ready(mp_queue *q, void *arg)
{
    uint64_t h = *(const uint64_t *)arg;
    uint64_t t = atomic_load(&q->s->tail);
    if (w_pos(t) != w_pos(h)) {
        q->s->get.tail_cache = t;
        return 1;
    }
    return (t & CLOSED_BIT) ? MP_EOF : 0;
}

/* Claims a free consumer slot for this get (see DESIGN): first the one
 * this thread's id points at, then the next free one.  When every slot is
 * claimed, settles the slots of dead owners, then waits for a free one in
 * naps.  Returns 0 with *out claimed, or MP_EAGAIN / MP_ETIMEDOUT. */
static int slot_take(mp_queue *q, qwait *w, gslot **out)
{
    pid_t tid = mp__self_tid();
    uint64_t start = mp__thread_start_time();
    unsigned first = (unsigned)tid % NSLOTS;
    for (unsigned nap = 0;; nap++) {
        for (unsigned k = 0; k < NSLOTS; k++) {
            gslot *g = slot_at(q, (first + k) % NSLOTS);
            uint64_t sw = atomic_load_explicit(&g->word, memory_order_relaxed);
            if (sw_state(sw) == S_FREE &&
                atomic_compare_exchange_strong(
                    &g->word, &sw, sw_make(S_ACTIVE, (uint32_t)tid, start, sw_lost(sw)))) {
                *out = g;
                return 0;
            }
        }
        if (slots_reap(q, false) > 0)
            continue;
        if (qwait_nowait(w) || qwait_expired(w))
            return qwait_error(w);
        /* NSLOTS consumers inside a get at once: rare enough to poll for. */
        mp__sleep_ns(nap < 10 ? 100000 : 1000000);
    }
}

/* Copies the record at head h out and commits, holding the get lock and
 * slot g (see DESIGN: commit points, consumer slots). */
static void take_record(mp_queue *q, gslot *g, uint64_t h, uint64_t t, void *buf, uint64_t mlen)
{
    qshared *s = q->s;
    uint64_t w = atomic_load_explicit(&g->word, memory_order_relaxed);
    atomic_store_explicit(&g->head0, h, memory_order_relaxed);
    /* Release: a settler that reads S_TAKING reads head0 too. */
    atomic_store_explicit(&g->word, sw_with(w, S_TAKING), memory_order_release);
    uint32_t pos = w_pos(h);
    read_ahead(q, pos + (uint32_t)record_size(mlen), t);
    if (mlen > 0)
        ring_read(q, pos + HDR, buf, (size_t)mlen);
    fault_point(MP__QP_GET_COPIED);
    /* The commit.  Sequentially consistent: the reads above happen before
     * a producer may reuse the bytes, and the read of space_wait below
     * comes after it. */
    atomic_store(&s->head, w_make(pos + (uint32_t)record_size(mlen), w_count(h) + 1));
    fault_point(MP__QP_GET_COMMITTED);
    atomic_store_explicit(&g->word, sw_with(w, S_TAKEN), memory_order_release);
    if (atomic_load(&s->space_wait))
        wake(&s->space_seq, 1);
    fault_point(MP__QP_GET_TAKEN);
}

/* The part of a get under the get lock: waits for a record, checks it and
 * takes it.  Returns 0 with the message taken (*len and *abuf set), or an
 * error with nothing taken. */
static int get_locked(mp_queue *q, gslot *g, qwait *w, void *buf, size_t cap, size_t *len,
                      void **abuf)
{
    qshared *s = q->s;
    int rc = 0;
    uint64_t h = atomic_load_explicit(&s->head, memory_order_relaxed);
    uint64_t t = s->get.tail_cache;
    if (w_pos(t) == w_pos(h)) {
        /* The cache says empty: look at the real tail before waiting. */
        t = atomic_load_explicit(&s->tail, memory_order_acquire);
        s->get.tail_cache = t;
        if (w_pos(t) == w_pos(h)) {
            unsigned polls;
            rc = await(q, &s->data_wait, &s->data_seq, data_ready, &h, MP__QP_GET_WAITING, w,
                       q->get_delay, &polls);
            t = s->get.tail_cache;
            adapt_get_delay(q, polls, rc == 0 ? used_msgs(t, h) : 0);
        }
    }
    if (rc < 0)
        return rc;
    uint64_t mlen = 0;
    memcpy(&mlen, q->ring + (w_pos(h) & q->mask), HDR);
    if (mlen > q->cap - HDR || record_size(mlen) > used_bytes(t, h))
        return MP_EPROTO; /* only a stray write into the ring does this */
    if (len)
        *len = (size_t)mlen;
    if (abuf) {
        buf = malloc(mlen ? (size_t)mlen : 1);
        if (!buf)
            return MP_ENOMEM;
    } else if (mlen > cap) {
        return MP_EMSGSIZE;
    }
    take_record(q, g, h, t, buf, mlen);
    if (abuf)
        *abuf = buf;
    return 0;
}

static int get_impl(mp_queue *q, void *buf, size_t cap, size_t *len, void **abuf, double timeout)
{
    qshared *s = q->s;
    qwait w = {timeout, 0, false, true};
    gslot *g;
    int rc = slot_take(q, &w, &g);
    if (rc < 0)
        return rc;
    fault_point(MP__QP_GET_SLOTTED);
    rc = lock_side(q, &s->get.lock, &w, repair_get);
    if (rc == 0) {
        rc = get_locked(q, g, &w, buf, cap, len, abuf);
        mp__mutex_unlock(&s->get.lock);
    }
    if (rc == 0)
        fault_point(MP__QP_GET_UNLOCKED);
    /* The delivery (see DESIGN): from here on the message is the caller's.
     * Release: whoever claims the slot next sees it free after this get. */
    uint64_t sw = atomic_load_explicit(&g->word, memory_order_relaxed);
    atomic_store_explicit(&g->word, sw_make(S_FREE, 0, 0, sw_lost(sw)), memory_order_release);
    return rc;
}

int mp_queue_get(mp_queue *q, void *buf, size_t cap, size_t *len, double timeout)
{
    if (!q || (!buf && cap > 0) || mp__timeout_check(timeout) < 0)
        return refused("mp_queue_get", q, !buf && cap > 0, "must not be NULL when cap > 0",
                       timeout);
    return get_impl(q, buf, cap, len, NULL, timeout);
}

int mp_queue_get_alloc(mp_queue *q, void **buf, size_t *len, double timeout)
{
    if (!q || !buf || mp__timeout_check(timeout) < 0)
        return refused("mp_queue_get_alloc", q, !buf, "must not be NULL", timeout);
    return get_impl(q, NULL, 0, len, buf, timeout);
}

/* ---- state ----------------------------------------------------------------- */

int mp_queue_qsize(const mp_queue *q)
{
    MP__NONNULL(q);
    /* head first: tail is then at least as new, so the difference is not
     * negative. */
    uint64_t h = atomic_load(&q->s->head);
    uint64_t t = atomic_load(&q->s->tail);
    uint32_t n = used_msgs(t, h);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

bool mp_queue_empty(const mp_queue *q)
{
    if (!q)
        return true;
    uint64_t h = atomic_load(&q->s->head);
    return w_pos(atomic_load(&q->s->tail)) == w_pos(h);
}

bool mp_queue_full(const mp_queue *q)
{
    if (!q)
        return false;
    uint64_t h = atomic_load(&q->s->head);
    return !room(q, atomic_load(&q->s->tail), h, HDR);
}

size_t mp_queue_capacity(const mp_queue *q)
{
    return q ? (size_t)q->cap : 0;
}

size_t mp_queue_max_message(const mp_queue *q)
{
    return q ? (size_t)(q->cap - HDR) : 0;
}

int mp_queue_close(mp_queue *q)
{
    MP__NONNULL(q);
    qshared *s = q->s;
    atomic_fetch_or(&s->tail, CLOSED_BIT);
    /* After the flag: a waiter that read the old tail also read the old
     * sequence number, so its sleep ends at once. */
    wake(&s->data_seq, INT32_MAX);
    wake(&s->space_seq, INT32_MAX);
    return 0;
}

bool mp_queue_closed(const mp_queue *q)
{
    return !q || (atomic_load(&q->s->tail) & CLOSED_BIT) != 0;
}

/* Messages lost with dead consumers, modulo 2^32 (settled ones: see
 * slots_reap).  Reads only the slots that ever lost one. */
static uint32_t lost_count(const mp_queue *q)
{
    uint64_t m = atomic_load(&q->s->get.lossy);
    uint32_t n = 0;
    while (m) {
        unsigned i = (unsigned)__builtin_ctzll(m);
        n += sw_lost(atomic_load(&slot_at(q, i)->word));
        m &= m - 1;
    }
    return n;
}

/* Messages put and not yet done, for joinable queues. */
static uint32_t unfinished(const mp_queue *q)
{
    uint32_t done = atomic_load(&q->s->ndone);
    uint32_t lost = lost_count(q);
    return w_count(atomic_load(&q->s->tail)) - done - lost;
}

int mp_queue_task_done(mp_queue *q)
{
    MP__NONNULL(q);
    qshared *s = q->s;
    if (!(s->flags & F_JOINABLE))
        return mp__fail(MP_ENOTSUP, "mp_queue_task_done: q must be made with opts.joinable");
    uint32_t d = atomic_load(&s->ndone);
    for (;;) {
        uint32_t left = w_count(atomic_load(&s->tail)) - d - lost_count(q);
        if (left == 0 || left > INT32_MAX)
            return mp__fail(MP_ESTATE, "mp_queue_task_done: called more times than items were "
                                       "put");
        if (atomic_compare_exchange_weak(&s->ndone, &d, d + 1))
            break;
    }
    if (unfinished(q) == 0 && atomic_load(&s->done_waiters) > 0)
        wake(&s->done_seq, INT32_MAX);
    return 0;
}

int mp_queue_join(mp_queue *q, double timeout)
{
    MP__NONNULL(q);
    if (mp__timeout_check(timeout) < 0)
        return mp__fail(MP_EINVAL,
                        "mp_queue_join: timeout must be a number, < 0 for forever (got %g)",
                        timeout);
    qshared *s = q->s;
    if (!(s->flags & F_JOINABLE))
        return mp__fail(MP_ENOTSUP, "mp_queue_join: q must be made with opts.joinable");
    qwait w = {timeout, 0, false, true};
    for (;;) {
        /* A consumer that died after taking a message is counted once its
         * slot is settled: look for such slots at each turn. */
        slots_reap(q, false);
        if ((int32_t)unfinished(q) <= 0) /* below 0: task_done of a lost one */
            return 0;
        if (qwait_expired(&w))
            return MP_ETIMEDOUT;
        atomic_fetch_add(&s->done_waiters, 1);
        uint32_t seq = atomic_load(&s->done_seq);
        if (unfinished(q) != 0)
            mp__futex_wait(&s->done_seq, seq, qwait_slice(&w));
        atomic_fetch_sub(&s->done_waiters, 1);
    }
}

int mp_queue_stats_get(const mp_queue *q, mp_queue_stats *out)
{
    MP__NONNULL(q);
    MP__NONNULL(out);
    /* Settles dead consumers' slots first, so that the counts are current
     * (the shared state changes; the handle does not). */
    slots_reap((mp_queue *)q, false);
    const qshared *s = q->s;
    uint64_t h = atomic_load(&s->head);
    uint64_t t = atomic_load(&s->tail);
    out->messages = used_msgs(t, h);
    out->bytes = (size_t)used_bytes(t, h);
    out->dead_producers = atomic_load(&s->put.dead);
    out->dead_consumers = atomic_load(&s->get.dead);
    out->lost = lost_count(q);
    out->unfinished = (s->flags & F_JOINABLE) ? unfinished(q) : 0;
    return 0;
}

/* ---- lifetime -------------------------------------------------------------- */

static void queue_close_op(void *q)
{
    (void)mp_queue_close(q);
}

static const mp__closer_ops queue_closer = {.kind = "queue", .close = queue_close_op};

static mp_queue *handle_new(int fd, void *base, size_t map_size)
{
    mp_queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->s = base;
    q->ring = (char *)base + QHDR_SIZE;
    q->cap = q->s->cap;
    q->slots = q->ring + q->cap;
    q->mask = q->cap - 1;
    q->map_size = map_size;
    q->fd = fd;
    q->multi_cpu = mp_cpu_count() > 1;
    q->get_delay = 0;
    /* Not registered (out of memory): a shutdown does not close it. */
    (void)mp__shutdown_register(&queue_closer, q, &q->closer);
    return q;
}

/* Lays out a fresh ring of c bytes in the zero-filled memory at base.
 * Returns 0 or the error of the locks' set-up. */
static int ring_init(void *base, size_t map_size, uint64_t c, const mp_queue_opts *o)
{
    qshared *s = base;
    s->version = QVERSION;
    s->flags = o->joinable ? F_JOINABLE : 0;
    s->cap = c;
    s->max_msgs = o->max_messages;
    s->map_size = map_size;
    int rc = mp__mutex_init(&s->put.lock);
    if (rc == 0)
        rc = mp__mutex_init(&s->get.lock);
    if (rc < 0)
        return rc;
    /* Last, and with release: an attacher that sees the magic sees the
     * rest. */
    atomic_store_explicit(&s->magic, QMAGIC, memory_order_release);
    return 0;
}

int mp_queue_new_opts(const mp_queue_opts *opts, mp_queue **out)
{
    MP__NONNULL(out);
    *out = NULL;
    mp_queue_opts o = MP_QUEUE_OPTS_INIT;
    if (opts)
        o = *opts;
    uint64_t cap = o.capacity ? (uint64_t)o.capacity : DEFAULT_CAP;
    if (cap > MAX_CAP)
        return mp__fail(MP_EINVAL,
                        "mp_queue_new_opts: opts.capacity must be at most %llu bytes "
                        "(got %llu)",
                        (unsigned long long)MAX_CAP, (unsigned long long)cap);
    if (o.max_messages > MAX_MSGS)
        return mp__fail(MP_EINVAL,
                        "mp_queue_new_opts: opts.max_messages must be at most %llu "
                        "(got %llu)",
                        (unsigned long long)MAX_MSGS, (unsigned long long)o.max_messages);
    uint64_t c = MIN_CAP;
    while (c < cap)
        c <<= 1;
    size_t map_size = QHDR_SIZE + (size_t)c + SLOTS_SIZE;
    int fd = mp__memfd_new("queue", map_size);
    if (fd < 0)
        return fd;
    /* The file is fresh, so every byte is zero: counters, words and flags
     * start at zero. */
    void *base = NULL;
    int rc = mp__memfd_seal_size(fd);
    if (rc == 0)
        rc = mp__map_fd(fd, map_size, NULL, &base);
    if (rc == 0)
        rc = ring_init(base, map_size, c, &o);
    mp_queue *q = rc == 0 ? handle_new(fd, base, map_size) : NULL;
    if (!q) {
        if (base)
            mp__unmap(base, map_size);
        mp__close(fd);
        return rc < 0 ? rc : MP_ENOMEM;
    }
    *out = q;
    return 0;
}

int mp_queue_new(size_t capacity, mp_queue **out)
{
    mp_queue_opts o = MP_QUEUE_OPTS_INIT;
    o.capacity = capacity;
    return mp_queue_new_opts(&o, out);
}

int mp_queue_attach(int fd, mp_queue **out)
{
    MP__NONNULL(out);
    *out = NULL;
    if (fd < 0)
        return mp__fail(MP_EBADF, "mp_queue_attach: fd must be >= 0 (got %d)", fd);
    size_t size;
    int rc = mp__fd_size(fd, &size);
    if (rc < 0)
        return rc;
    if (size < QHDR_SIZE + MIN_CAP + SLOTS_SIZE)
        return mp__fail(MP_EINVAL, "mp_queue_attach: fd must be a queue's memory (got %zu bytes)",
                        size);
    int own = mp__dup_cloexec(fd, 0);
    if (own < 0)
        return own;
    void *base = NULL;
    rc = mp__map_fd(own, size, NULL, &base);
    if (rc < 0) {
        mp__close(own);
        return rc;
    }
    qshared *s = base;
    uint64_t magic = atomic_load_explicit(&s->magic, memory_order_acquire);
    uint64_t cap = s->cap;
    bool ok = magic == QMAGIC && s->version == QVERSION && s->map_size == size && cap >= MIN_CAP &&
              cap <= MAX_CAP && (cap & (cap - 1)) == 0 && QHDR_SIZE + cap + SLOTS_SIZE == size;
    if (!ok) {
        mp__unmap(base, size);
        mp__close(own);
        return MP_EINVAL;
    }
    mp_queue *q = handle_new(own, base, size);
    if (!q) {
        mp__unmap(base, size);
        mp__close(own);
        return MP_ENOMEM;
    }
    *out = q;
    return 0;
}

int mp_queue_fd(const mp_queue *q)
{
    return q ? q->fd : MP_EINVAL;
}

void mp_queue_free(mp_queue *q)
{
    if (!q)
        return;
    mp__shutdown_unregister(q->closer);
    mp__unmap(q->s, q->map_size);
    mp__close(q->fd);
    free(q);
}

/* ---- watchers (wait.c) ------------------------------------------------------- */

_Atomic uint32_t *mp__queue_watch(mp_queue *q)
{
    atomic_fetch_add(&q->s->data_watchers, 1);
    return &q->s->data_seq;
}

void mp__queue_unwatch(mp_queue *q)
{
    atomic_fetch_sub(&q->s->data_watchers, 1);
}

bool mp__queue_readable(const mp_queue *q)
{
    uint64_t t = atomic_load(&q->s->tail);
    return w_pos(t) != w_pos(atomic_load(&q->s->head)) || (t & CLOSED_BIT);
}
