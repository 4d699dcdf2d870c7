/*
 * local_seg.c - the local engine's shared segment (see local.h): its
 * layout, creation and checks, a rank joining and leaving it, the
 * doorbells, and the one wait loop every blocking call of the engine uses.
 */
#define _GNU_SOURCE
#include "local.h"
#include "../testhooks.h"

#include <poll.h>
#include <sched.h>
#include <unistd.h>

/* Polling, then yielding, then sleeping.  50 us of polling covers every
 * hand-off between running ranks (a few hundred ns) and the copy of a
 * 1 MiB message (40-80 us), which would otherwise pay a kernel wake-up
 * (5-7 us here); after that the wait yields its CPU until 200 us, so that
 * a rank sharing the CPU gets it at once, then sleeps on its doorbell.  A
 * rank blocked for long costs no CPU.
 *
 * A rank bound to a CPU of its own (ranks no more than CPUs, as mpiexec
 * and mprun bind them) polls for 1 ms and yields until 2 ms: a collective
 * on large data keeps a rank waiting for hundreds of microseconds, and a
 * yield hands the CPU to whatever else runs there, which on a busy
 * machine keeps it for a whole time slice.
 *
 * A rank not bound may share a CPU with the very peer it waits for, which
 * then runs only when this rank gives the CPU up: such a rank yields every
 * YIELD_EVERY_NS while it polls (a yield with nobody else to run returns
 * at once), and with more ranks than CPUs it yields at every poll. */
#define SPIN_NS        50000
#define YIELD_NS       200000
#define OWN_SPIN_NS    1000000
#define OWN_YIELD_NS   2000000
#define YIELD_EVERY_NS 2000
/* Sleeps are cut into slices: at the end of each the rank checks its
 * peers itself (their pidfds), in case no launcher marks a dead one. */
#define SLICE_NS 10000000

#define PAGE ((uint64_t)4096)

static uint64_t round_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

int mp__lseg_layout(int n, mp__llayout *lay)
{
    if (n < 1 || n > MP__L_MAX_RANKS)
        return MP_EINVAL;
    memset(lay, 0, sizeof *lay);
    /* Rings shrink as pairs multiply (n * n of them); the eager limit is
     * a quarter of a ring, so that several messages are in flight. */
    uint64_t ring = n <= 4    ? (256u << 10)
                    : n <= 8  ? (64u << 10)
                    : n <= 32 ? (16u << 10)
                              : (4u << 10);
    lay->ring_bytes = ring;
    lay->eager = ring / 4 < (16u << 10) ? ring / 4 : (16u << 10);
    /* A record's length is 16 bits (local.h). */
    _Static_assert((16u << 10) <= UINT16_MAX, "eager length fits mp__lrec.len");
    uint64_t off = round_up(sizeof(mp__lhdr), PAGE);
    lay->off_ranks = off;
    off = round_up(off + (uint64_t)n * sizeof(mp__lrank), PAGE);
    lay->off_rdv = off;
    off = round_up(off + (uint64_t)n * MP__L_RDV_SLOTS * sizeof(mp__lrdv), PAGE);
    lay->bulk_stride = round_up(sizeof(mp__lbulk), PAGE) + MP__L_BULK;
    lay->off_bulk = off;
    off += (uint64_t)n * lay->bulk_stride;
    lay->comm_stride = mp__lcomm_head((uint64_t)n) + MP__L_BC_SLOTS * MP__L_BC_CHUNK +
                       ((uint64_t)n + 1) * MP__L_RED_CHUNK;
    lay->off_comms = off;
    off += MP__L_COMMS * lay->comm_stride;
    lay->ring_stride = MP__LRING_HDR + ring;
    lay->off_rings = off;
    off += (uint64_t)n * (uint64_t)n * lay->ring_stride;
    lay->size = round_up(off, PAGE);
    return 0;
}

static mp__lrank *rank_blk(void *base, int r)
{
    const mp__lhdr *h = base;
    return (mp__lrank *)((unsigned char *)base + h->layout.off_ranks) + r;
}

int mp__lseg_create(int n, pid_t launcher, int *fd, void **base, size_t *size)
{
    mp__llayout lay;
    int rc = mp__lseg_layout(n, &lay);
    if (rc < 0)
        return rc;
    int f = mp__memfd_new("comm", (size_t)lay.size);
    if (f < 0)
        return f;
    void *b = NULL;
    rc = mp__memfd_seal_size(f);
    if (rc == 0)
        rc = mp__map_fd(f, (size_t)lay.size, NULL, &b);
    if (rc < 0 || !b) {
        mp__close(f);
        return rc < 0 ? rc : MP_ENOMEM;
    }
    /* The file is new, so every byte reads zero: only the header and the
     * world's communicator block need values. */
    mp__lhdr *h = b;
    h->magic = MP__L_MAGIC;
    h->version = MP__L_VERSION;
    h->n = (uint32_t)n;
    h->layout = lay;
    h->launcher = launcher;
    h->cpus = mp_cpu_count();
    atomic_store(&h->next_ctx, 1); /* 0 is the world's */
    mp__lcomm *world = (mp__lcomm *)((unsigned char *)b + lay.off_comms);
    world->ctx = 0;
    atomic_store(&world->refs, (uint32_t)n);
    *fd = f;
    *base = b;
    *size = (size_t)lay.size;
    return 0;
}

int mp__lseg_check(const void *base, size_t size)
{
    const mp__lhdr *h = base;
    if (!base || size < sizeof *h || h->magic != MP__L_MAGIC || h->version != MP__L_VERSION)
        return MP_EPROTO;
    mp__llayout lay;
    if (h->n > MP__L_MAX_RANKS || mp__lseg_layout((int)h->n, &lay) < 0)
        return MP_EPROTO;
    if (memcmp(&lay, &h->layout, sizeof lay) != 0 || lay.size != size)
        return MP_EPROTO;
    return 0;
}

static void ring_all(void *base)
{
    const mp__lhdr *h = base;
    for (uint32_t r = 0; r < h->n; r++) {
        mp__lrank *rk = rank_blk(base, (int)r);
        atomic_fetch_add(&rk->bell, 1);
        (void)mp__futex_wake(&rk->bell, INT32_MAX);
    }
}

void mp__lseg_mark(void *base, int r, bool dead)
{
    mp__lhdr *h = base;
    mp__lrank *rk = rank_blk(base, r);
    if (dead) {
        atomic_store(&rk->state, MP__LR_DEAD);
        uint32_t expect = 0;
        (void)atomic_compare_exchange_strong(&h->broken, &expect, (uint32_t)r + 1);
    } else {
        uint32_t expect = MP__LR_ALIVE;
        (void)atomic_compare_exchange_strong(&rk->state, &expect, MP__LR_DONE);
        expect = MP__LR_NEW;
        (void)atomic_compare_exchange_strong(&rk->state, &expect, MP__LR_DONE);
    }
    ring_all(base);
}

void mp__lseg_abort(void *base, int me, int code)
{
    mp__lhdr *h = base;
    atomic_store(&h->aborted, 1u + (uint32_t)(code & 255));
    uint32_t expect = 0;
    (void)atomic_compare_exchange_strong(&h->broken, &expect, (uint32_t)me + 1);
    ring_all(base);
}

int mp__lseg_aborted(const void *base)
{
    const mp__lhdr *h = base;
    uint32_t a = atomic_load(&h->aborted);
    return a ? (int)(a - 1) : -1;
}

/* ---- joining and leaving ------------------------------------------------------ */

static void peer_init(lworld *w, int p)
{
    lpeer *pe = &w->peers[p];
    unsigned char *rings = w->base + w->lay.off_rings;
    uint64_t stride = w->lay.ring_stride;
    pe->out = (mp__lring *)(rings + ((uint64_t)w->me * (uint64_t)w->n + (uint64_t)p) * stride);
    pe->in = (mp__lring *)(rings + ((uint64_t)p * (uint64_t)w->n + (uint64_t)w->me) * stride);
    pe->out_data = (unsigned char *)pe->out + MP__LRING_HDR;
    pe->in_data = (unsigned char *)pe->in + MP__LRING_HDR;
    /* A rank attaches once, to a new segment: every ring starts empty, at
     * position 0, and a peer may have sent already. */
    pe->out_tail = 0;
    pe->out_head = 0;
    pe->in_head = 0;
    pe->pidfd = -1;
}

int mp__lw_attach(void *base, size_t size, bool owns, int me, lworld **out)
{
    int rc = mp__lseg_check(base, size);
    if (rc < 0)
        return rc;
    mp__lhdr *h = base;
    if (me < 0 || (uint32_t)me >= h->n)
        return MP_EPROTO;
    mp__lrank *rk = rank_blk(base, me);
    if (atomic_load(&rk->state) != MP__LR_NEW)
        return MP_ESTATE;
    lworld *w = calloc(1, sizeof *w);
    if (!w)
        return MP_ENOMEM;
    atomic_init(&w->refs, 1);
    w->hdr = h;
    w->base = base;
    w->size = size;
    w->n = (int)h->n;
    w->me = me;
    w->pid = getpid();
    w->lay = h->layout;
    w->ranks = rank_blk(base, 0);
    w->peers = calloc((size_t)w->n, sizeof *w->peers);
    w->untold = calloc((size_t)w->n, sizeof *w->untold);
    if (!w->peers || !w->untold) {
        free(w->peers);
        free(w->untold);
        free(w);
        return MP_ENOMEM;
    }
    for (int p = 0; p < w->n; p++)
        peer_init(w, p);
    /* The launcher's count: a rank bound to one CPU sees only that one. */
    w->oversub = w->n > h->cpus;
    w->own_cpu = mp__cpu_bound();
    w->asym = mp__membarrier_register() == 0;
    rc = mp__lp_init(w);
    if (rc == 0)
        rc = mp__lc_world(w, &w->world);
    if (rc < 0) {
        mp__lp_fini(w);
        free(w->peers);
        free(w->untold);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return rc;
    }
    w->owns_map = owns;
    /* Siblings may read this rank's memory with process_vm_readv when the
     * kernel's ptrace rules let descendants of the launcher in (Yama's
     * ptrace_scope 1 needs this; without Yama it is not needed and fails
     * harmlessly). */
    if (h->launcher > 0)
        (void)mp__ptrace_allow(h->launcher);
    atomic_store(&rk->pid, (int32_t)w->pid);
    atomic_store(&rk->state, MP__LR_ALIVE);
    *out = w;
    return 0;
}

void mp__lw_ref(lworld *w)
{
    atomic_fetch_add(&w->refs, 1);
}

void mp__lw_unref(lworld *w)
{
    if (w && atomic_fetch_sub(&w->refs, 1) == 1) {
        pthread_mutex_destroy(&w->lock);
        free(w);
    }
}

void mp__lw_detach(lworld *w)
{
    if (!w)
        return;
    mp__lp_fini(w);
    mp__lc_unref(w->world);
    w->world = NULL;
    mp__lrank *rk = &w->ranks[w->me];
    uint32_t expect = MP__LR_ALIVE;
    (void)atomic_compare_exchange_strong(&rk->state, &expect, MP__LR_DONE);
    /* Peers waiting for this rank re-check and find it done. */
    ring_all(w->base);
    for (int p = 0; p < w->n; p++)
        mp__close(w->peers[p].pidfd);
    free(w->peers);
    w->peers = NULL;
    free(w->untold);
    w->untold = NULL;
    w->nuntold = 0;
    if (w->owns_map)
        mp__unmap(w->base, w->size);
    w->base = NULL;
    /* What is left (the lock, the closed engine) lives while a future
     * holds it. */
    mp__lw_unref(w);
}

/* ---- long copies shared by both sides --------------------------------------------- */

int (*mp__comm_fault)(mp__comm_point where, _Atomic uint32_t *help);

uint64_t mp__lh_cut(const lworld *w, uint64_t len, int n)
{
    if (len < MP__L_HELP_MIN || w->oversub || n < 2)
        return len;
    return (len - len / (uint64_t)n) & ~(uint64_t)4095;
}

void mp__lh_offer(lworld *w, mp__lhelp *h, int server, void *buf, uint64_t cut, uint64_t tag)
{
    h->tag = tag;
    h->raddr = (uint64_t)(uintptr_t)buf;
    h->cut = cut;
    atomic_store_explicit(&h->state, MP__HELP_OFFERED, memory_order_release);
    mp__lw_notify(w, server);
    if (mp__comm_fault)
        (void)mp__comm_fault(MP__CP_HELP_OFFERED, &h->state);
}

bool mp__lh_reclaim(mp__lhelp *h)
{
    uint32_t offered = MP__HELP_OFFERED;
    return atomic_compare_exchange_strong(&h->state, &offered, MP__HELP_SELF);
}

uint32_t mp__lh_settle(lworld *w, mp__lhelp *h, int server)
{
    int64_t until = mp__now_ns() + 1000000000;
    uint32_t state;
    while ((state = atomic_load_explicit(&h->state, memory_order_acquire)) == MP__HELP_TAKEN &&
           atomic_load(&w->ranks[server].state) < MP__LR_DONE && mp__now_ns() < until)
        sched_yield();
    return state;
}

bool mp__lh_serve(mp__lhelp *h, uint64_t tag, pid_t pid, const void *buf, uint64_t len)
{
    uint32_t offered = MP__HELP_OFFERED;
    if (atomic_load_explicit(&h->state, memory_order_relaxed) != offered ||
        (mp__comm_fault && mp__comm_fault(MP__CP_HELP_TAKE, &h->state)) ||
        !atomic_compare_exchange_strong(&h->state, &offered, MP__HELP_TAKEN))
        return false;
    /* The offer comes from shared memory: its tag and cut are checked;
     * the buffer's address only the receiver can judge (a wrong one fails
     * the write, which hands the part back, or lands in the receiver's
     * own memory, where its offer put it). */
    uint64_t cut = h->cut;
    int rc = MP_EPROTO;
    if (mp__comm_fault && mp__comm_fault(MP__CP_HELP_WRITE, &h->state))
        rc = MP_EIO;
    else if (h->tag == tag && cut > 0 && cut < len)
        rc = mp__vm_write(pid, h->raddr + cut, (const char *)buf + cut, (size_t)(len - cut));
    atomic_store_explicit(&h->state, rc == 0 ? MP__HELP_DONE : MP__HELP_FAILED,
                          memory_order_release);
    return true;
}

/* ---- waking ------------------------------------------------------------------------ */

void mp__lw_ring(lworld *w, int r)
{
    mp__lrank *rk = &w->ranks[r];
    atomic_fetch_add(&rk->bell, 1);
    (void)mp__futex_wake(&rk->bell, INT32_MAX);
}

void mp__lw_fence_heavy(const lworld *w)
{
    /* A failed membarrier (it cannot, once registered) would leave a
     * publisher's store unseen until the end of the sleep slice. */
    if (!w->asym || mp__membarrier() < 0)
        atomic_thread_fence(memory_order_seq_cst);
}

void mp__lw_notify_members(lworld *w, const lcomm *c)
{
    mp__lw_fence(w);
    for (int i = 0; i < c->size; i++) {
        mp__lrank *rk = &w->ranks[c->group[i]];
        if (atomic_load_explicit(&rk->sleepers, memory_order_relaxed) != 0) {
            atomic_fetch_add(&rk->bell, 1);
            (void)mp__futex_wake(&rk->bell, INT32_MAX);
        }
    }
}

/* ---- health ---------------------------------------------------------------------- */

static bool gone(const lworld *w, int r)
{
    return atomic_load_explicit(&w->ranks[r].state, memory_order_acquire) >= MP__LR_DONE;
}

int mp__lw_health(lworld *w, const lcomm *c, int need)
{
    if (atomic_load_explicit(&w->hdr->broken, memory_order_acquire) != 0)
        return MP_EPEERDEAD;
    if (c && c->shm && atomic_load_explicit(&c->shm->abandoned, memory_order_acquire) != 0)
        return MP_EABANDONED;
    if (need >= 0)
        return gone(w, need) ? MP_EPEERDEAD : 0;
    if (need == LW_ALL && c) {
        for (int i = 0; i < c->size; i++)
            if (gone(w, c->group[i]))
                return MP_EPEERDEAD;
    }
    return 0;
}

/* Looks at peer r's pidfd: a process that ended without saying it was
 * done is dead, which breaks the world. */
static void check_peer(lworld *w, int r)
{
    lpeer *pe = &w->peers[r];
    mp__lrank *rk = &w->ranks[r];
    if (r == w->me || atomic_load(&rk->state) != MP__LR_ALIVE)
        return;
    if (pe->pidfd < 0) {
        pid_t pid = (pid_t)atomic_load(&rk->pid);
        if (pid <= 0)
            return;
        int fd = mp__pidfd_open(pid);
        if (fd == MP_ESRCH) {
            /* Gone and reaped, yet still marked alive: it died in a way
             * its launcher did not report (or there is none). */
            if (atomic_load(&rk->state) == MP__LR_ALIVE)
                mp__lseg_mark(w->base, r, true);
            return;
        }
        if (fd < 0)
            return;
        /* A launcher marks a rank before reaping it, so a pid read while
         * the rank is still marked alive cannot have been reused yet. */
        if (atomic_load(&rk->state) != MP__LR_ALIVE) {
            mp__close(fd);
            return;
        }
        pe->pidfd = fd;
    }
    struct pollfd p = {.fd = pe->pidfd, .events = POLLIN};
    if (poll(&p, 1, 0) > 0 && atomic_load(&rk->state) == MP__LR_ALIVE)
        mp__lseg_mark(w->base, r, true);
}

static void check_peers(lworld *w, const lcomm *c, int need)
{
    if (need >= 0) {
        check_peer(w, need);
    } else if (need == LW_ALL && c) {
        for (int i = 0; i < c->size; i++)
            check_peer(w, c->group[i]);
    } else {
        for (int r = 0; r < w->n; r++)
            check_peer(w, r);
    }
}

/* ---- the wait loop ---------------------------------------------------------------- */

/* Sleeps on our bell (registered by the previous pause), one slice at
 * most, then checks the peers if a slice has passed. */
static int sleep_once(lworld *w, lwait *wt, const lcomm *c, int need)
{
    mp__lrank *rk = &w->ranks[w->me];
    int64_t now = mp__now_ns();
    int64_t until = wt->deadline;
    if (until - now > SLICE_NS)
        until = now + SLICE_NS;
    if (until > now)
        (void)mp__futex_wait(&rk->bell, wt->seen, until);
    atomic_fetch_sub(&rk->sleepers, 1);
    wt->sleeping = false;
    now = mp__now_ns();
    if (now >= wt->next_check) {
        check_peers(w, c, need);
        wt->next_check = now + SLICE_NS;
    }
    return now >= wt->deadline ? MP_ETIMEDOUT : 0;
}

int mp__lw_pause(lworld *w, lwait *wt, const lcomm *c, int need)
{
    if (wt->gone)
        return MP_EPEERDEAD;
    if (wt->sleeping) {
        int rc = sleep_once(w, wt, c, need);
        int h = mp__lw_health(w, c, need);
        if (h == MP_EPEERDEAD) {
            wt->gone = true; /* one last try first */
            return 0;
        }
        return h < 0 ? h : rc;
    }
    /* The clock and the peers' health every 16 looks.  A wait without a
     * deadline skips the first look's: most waits end within a few looks,
     * and a clock read (30 ns here) is a good part of a hand-off. */
    unsigned poll = wt->polls++;
    /* Room this rank made in its rings is told before it waits (local.h,
     * "Telling the head"), and again now and then: the wait's own
     * progress may have taken more. */
    if ((poll & 15) == 0 && (w->threaded || w->nuntold))
        mp__lp_tell_all(w);
    if ((poll & 15) == 0 && (poll || wt->deadline != MP__NO_DEADLINE)) {
        int64_t now = mp__now_ns();
        if (wt->start == 0) {
            wt->start = now;
            wt->next_check = now + SLICE_NS;
        }
        wt->elapsed = now - wt->start;
        if (now >= wt->deadline)
            return MP_ETIMEDOUT;
        int h = mp__lw_health(w, c, need);
        if (h == MP_EPEERDEAD) {
            wt->gone = true;
            return 0;
        }
        if (h < 0)
            return h;
    }
    if (wt->elapsed < (w->own_cpu ? OWN_SPIN_NS : SPIN_NS) && !w->oversub) {
        if (!w->own_cpu && wt->elapsed - wt->yielded >= YIELD_EVERY_NS) {
            wt->yielded = wt->elapsed;
            sched_yield();
            return 0;
        }
        /* One pause between looks, not more: a PAUSE takes 40 ns on the
         * reference VM's Zen 3 (up to 140 on some Intel cores), and every
         * hand-off waits half the gap between two looks on average - with
         * eight, 160 ns of a 400 ns ping-pong hop. */
        mp__cpu_relax();
        return 0;
    }
    if (wt->elapsed < (w->own_cpu ? OWN_YIELD_NS : YIELD_NS)) {
        sched_yield();
        return 0;
    }
    /* Register as a sleeper, then let the caller look once more before
     * the next call sleeps (see local.h, "Waiting and waking"). */
    mp__lrank *rk = &w->ranks[w->me];
    if (w->threaded || w->nuntold)
        mp__lp_tell_all(w);
    wt->seen = atomic_load(&rk->bell);
    atomic_fetch_add(&rk->sleepers, 1);
    mp__lw_fence_heavy(w);
    wt->sleeping = true;
    return 0;
}
