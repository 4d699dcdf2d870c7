/*
 * local_coll.c - the local engine's communicators and collectives, and
 * its operations table.
 *
 * DESIGN
 * Each communicator owns one of the segment's 32 communicator blocks
 * (the world has block 0); one that finds none free works all the same
 * with the generic algorithms over point to point.  Its collectives work
 * in the block's shared memory instead of sending N messages from a root:
 *
 *   barrier    a counter and a generation: each rank adds one to the
 *              counter; the last (mp_comm_barrier: member 0, once all
 *              came) resets it and bumps the generation, which the others
 *              wait for.
 *   bcast      16 slots of 64 KiB: the root writes each chunk of the
 *              message once into the next slot (up to 24 bytes into the
 *              slot's own line), stamps it with its number and goes on;
 *              every other rank copies it out as soon as it is stamped, in
 *              parallel with the others and with the root's next chunk,
 *              and counts itself off on a line of its own.  A slot is
 *              written again only once all its readers counted off, so the
 *              root of a small broadcast returns at once, without waiting
 *              for anyone.
 *              From 32 KiB, where the kernel lets ranks read each other's
 *              memory, a slot only says where the message lies in the
 *              root's memory: every reader copies it from there at once
 *              (one process_vm_readv each) and the root waits for them.
 *              Measured on the 2-CPU reference VM: a reader copies data
 *              the root has just written into shared memory at 1.5-2.5
 *              GB/s (every cache line comes from the root's cache, one at
 *              a time), against 6-8 GB/s for the root's own buffer, which
 *              it wrote once - so the one copy beats two, even pipelined.
 *              Whether every member may read every other is probed once
 *              per communicator, collectively, so that all agree.
 *   reduce,    each rank copies a piece of its input (64 KiB) into its own
 *   allreduce  area; after a barrier, rank i combines slice i of the piece
 *              across every area, in rank order (so operations that do not
 *              commute come out right), into a shared result; after a
 *              second barrier the root (or everyone) copies the result out.
 *              Every rank reduces at once, each on 1/n of the data.
 *
 * Every rank counts broadcast chunks the same way (collectives are called
 * in the same order everywhere), so a chunk's stamp tells a reader that
 * the slot holds the chunk it expects; a stamp beyond it, or a length that
 * differs from the reader's own, is MP_EPROTO.
 *
 * The rest (scatter, gather, their v forms, allgather, alltoall, scan) use
 * the generic algorithms: with rendezvous they already copy each byte
 * once, straight between the ranks' buffers.
 */
#define _GNU_SOURCE
#include "local.h"

#include <sys/stat.h>
#include <unistd.h>

#define PAGE ((uint64_t)4096)

/* ---- communicators ---------------------------------------------------------------- */

static unsigned char *block_of(lworld *w, int slot)
{
    return w->base + w->lay.off_comms + (uint64_t)slot * w->lay.comm_stride;
}

static void lc_attach_block(lcomm *c, int slot)
{
    lworld *w = c->w;
    c->slot = slot;
    if (slot < 0)
        return;
    unsigned char *b = block_of(w, slot);
    c->shm = (mp__lcomm *)b;
    c->bc_done = (mp__lbdone *)(b + sizeof(mp__lcomm));
    c->bc_data = b + mp__lcomm_head((uint64_t)w->n);
    c->red_data = c->bc_data + MP__L_BC_SLOTS * MP__L_BC_CHUNK;
}

/* A communicator of size ranks, group[i] being the world rank of its rank
 * i, with context ctx and block slot (-1: none).  Takes group. */
static lcomm *lc_new(lworld *w, uint32_t ctx, int slot, int *group, int size)
{
    lcomm *c = calloc(1, sizeof *c);
    int *inv = c ? malloc((size_t)w->n * sizeof *inv) : NULL;
    if (!inv) {
        free(c);
        free(group);
        return NULL;
    }
    for (int r = 0; r < w->n; r++)
        inv[r] = -1;
    for (int i = 0; i < size; i++) {
        inv[group[i]] = i;
        if (group[i] == w->me)
            c->rank = i;
    }
    /* The process-local world outlives its communicators' objects. */
    mp__lw_ref(w);
    c->w = w;
    atomic_init(&c->refs, 1);
    c->ctx = ctx;
    c->size = size;
    c->group = group;
    c->inv = inv;
    lc_attach_block(c, slot);
    return c;
}

void mp__lc_ref(lcomm *c)
{
    atomic_fetch_add(&c->refs, 1);
}

void mp__lc_unref(lcomm *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    /* The last member to let go frees the block for another communicator
     * (while the world is joined: afterwards it no longer matters). */
    if (c->shm && c->w->base)
        atomic_fetch_sub(&c->shm->refs, 1);
    mp__lw_unref(c->w);
    free(c->group);
    free(c->inv);
    free(c);
}

int mp__lc_world(lworld *w, lcomm **out)
{
    int *group = malloc((size_t)w->n * sizeof *group);
    if (!group)
        return MP_ENOMEM;
    for (int i = 0; i < w->n; i++)
        group[i] = i;
    lcomm *c = lc_new(w, 0, 0, group, w->n);
    if (!c)
        return MP_ENOMEM;
    *out = c;
    return 0;
}

/* Takes a free communicator block for size members, cleared, with ctx.
 * Returns its number, or -1 when none is free. */
static int block_take(lworld *w, int size, uint32_t ctx)
{
    for (int s = 1; s < MP__L_COMMS; s++) {
        mp__lcomm *b = (mp__lcomm *)block_of(w, s);
        uint32_t expect = 0;
        if (atomic_load(&b->refs) != 0 ||
            !atomic_compare_exchange_strong(&b->refs, &expect, (uint32_t)size))
            continue;
        /* No member of the block's last communicator uses it any more:
         * clearing it races with no one. */
        b->ctx = ctx;
        atomic_store(&b->abandoned, 0);
        atomic_store(&b->bar_count, 0);
        atomic_store(&b->bar_gen, 0);
        for (int i = 0; i < MP__L_BC_SLOTS; i++)
            atomic_store(&b->bc[i].stamp, 0);
        mp__lbdone *done = (mp__lbdone *)(b + 1);
        for (int i = 0; i < w->n; i++)
            atomic_store(&done[i].done, 0);
        return s;
    }
    return -1;
}

/* What the leader of a new communicator tells its members. */
typedef struct lc_info {
    uint32_t ctx;
    int32_t slot;
} lc_info;

static lc_info leader_alloc(lworld *w, int size)
{
    lc_info in;
    in.ctx = atomic_fetch_add(&w->hdr->next_ctx, 1);
    in.slot = block_take(w, size, in.ctx);
    return in;
}

static void block_give_back(lworld *w, int slot)
{
    if (slot > 0)
        atomic_store(&((mp__lcomm *)block_of(w, slot))->refs, 0);
}

static int local_bcast(mp_comm *c, void *buf, size_t len, int root, int64_t deadline);

static int local_dup(mp_comm *c, mp_comm *out, int64_t deadline)
{
    lcomm *lc = c->impl;
    lworld *w = lc->w;
    lc_info in = {0, -1};
    if (lc->rank == 0)
        in = leader_alloc(w, lc->size);
    int rc = local_bcast(c, &in, sizeof in, 0, deadline);
    if (rc < 0) {
        if (lc->rank == 0)
            block_give_back(w, in.slot);
        return rc;
    }
    if (in.slot < -1 || in.slot >= MP__L_COMMS)
        return MP_EPROTO;
    int *group = malloc((size_t)lc->size * sizeof *group);
    if (!group)
        return MP_ENOMEM;
    memcpy(group, lc->group, (size_t)lc->size * sizeof *group);
    lcomm *nc = lc_new(w, in.ctx, in.slot, group, lc->size);
    if (!nc)
        return MP_ENOMEM;
    out->impl = nc;
    out->rank = nc->rank;
    out->size = nc->size;
    return 0;
}

typedef struct split_entry {
    int color, key;
} split_entry;

/* The members of color, in (key, rank) order: their ranks in c. */
static int split_members(const split_entry *all, int n, int color, int *members)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (all[i].color != color)
            continue;
        int j = m++;
        /* Insertion by (key, rank): ranks come in increasing order. */
        while (j > 0 && all[members[j - 1]].key > all[i].key) {
            members[j] = members[j - 1];
            j--;
        }
        members[j] = i;
    }
    return m;
}

/* The leader sends the new context to the other members; they receive
 * it.  Returns 0 with *in, or an error. */
static int split_announce(mp_comm *c, const int *members, int m, lc_info *in, int64_t deadline)
{
    lcomm *lc = c->impl;
    if (members[0] != lc->rank)
        return mp__lp_recv(lc, in, sizeof *in, members[0], MP__TAG_SPLIT, NULL, deadline);
    *in = leader_alloc(lc->w, m);
    for (int i = 1; i < m; i++) {
        int rc = mp__lp_send(lc, in, sizeof *in, members[i], MP__TAG_SPLIT, deadline);
        if (rc < 0) {
            block_give_back(lc->w, in->slot);
            return rc;
        }
    }
    return 0;
}

static int local_split(mp_comm *c, int color, int key, mp_comm *out, int64_t deadline)
{
    lcomm *lc = c->impl;
    split_entry mine = {color, key};
    split_entry *all = malloc((size_t)lc->size * sizeof *all);
    int *members = malloc((size_t)lc->size * sizeof *members);
    /* A rank out of memory here fails the collective, as in any other:
     * comm.c abandons the communicator's collectives for the others. */
    int rc = all && members ? 0 : MP_ENOMEM;
    if (rc == 0)
        rc = mp__coll_allgather(c, &mine, all, 2, MP_TYPE_i, deadline);
    out->impl = NULL;
    if (rc < 0 || color == MP_UNDEFINED) {
        free(all);
        free(members);
        return rc;
    }
    int m = split_members(all, lc->size, color, members);
    lc_info in;
    /* This rank is one of its color's members, unless the others' colors
     * came back wrong. */
    rc = m > 0 ? split_announce(c, members, m, &in, deadline) : MP_EPROTO;
    free(all);
    if (rc == 0 && (in.slot < -1 || in.slot >= MP__L_COMMS))
        rc = MP_EPROTO;
    if (rc < 0) {
        free(members);
        return rc;
    }
    for (int i = 0; i < m; i++)
        members[i] = lc->group[members[i]];
    lcomm *nc = lc_new(lc->w, in.ctx, in.slot, members, m);
    if (!nc)
        return MP_ENOMEM;
    out->impl = nc;
    out->rank = nc->rank;
    out->size = nc->size;
    return 0;
}

static void local_free(mp_comm *c)
{
    mp__lc_unref(c->impl);
    c->impl = NULL;
}

static void local_abandon(mp_comm *c)
{
    lcomm *lc = c->impl;
    if (!lc->shm)
        return;
    atomic_store(&lc->shm->abandoned, 1);
    mp__lw_notify_members(lc->w, lc);
}

/* ---- collectives in shared memory --------------------------------------------------- */

/* Waits until the barrier's generation moves past gen. */
static int bar_wait_gen(lcomm *c, uint32_t gen, lwait *wt)
{
    int rc = 0;
    while (atomic_load_explicit(&c->shm->bar_gen, memory_order_acquire) == gen) {
        rc = mp__lw_pause(c->w, wt, c, LW_ALL);
        if (rc < 0)
            break;
    }
    return rc;
}

static int lbarrier(lcomm *c, int64_t deadline)
{
    mp__lcomm *s = c->shm;
    uint32_t gen = atomic_load_explicit(&s->bar_gen, memory_order_acquire);
    if (atomic_fetch_add(&s->bar_count, 1) == (uint32_t)c->size - 1) {
        atomic_store_explicit(&s->bar_count, 0, memory_order_relaxed);
        atomic_fetch_add(&s->bar_gen, 1);
        mp__lw_notify_members(c->w, c);
        return 0;
    }
    lwait wt = LWAIT_INIT(deadline);
    int rc = bar_wait_gen(c, gen, &wt);
    mp__lw_end(c->w, &wt);
    return rc;
}

/* The barrier of mp_comm_barrier: member 0 releases the others once all
 * have arrived (internal barriers are released by the last to arrive,
 * which saves a hand-off when member 0 is not the last).  Member 0 leaves
 * first, and a collective rooted there that follows (the usual pattern) is
 * under way when the others arrive at it: with more ranks than CPUs they
 * find its data instead of waiting, yielding, for a root the scheduler has
 * not run yet.  Barrier and collective together take as long either way. */
static int lbarrier_led(lcomm *c, int64_t deadline)
{
    mp__lcomm *s = c->shm;
    uint32_t n = (uint32_t)c->size;
    uint32_t gen = atomic_load_explicit(&s->bar_gen, memory_order_acquire);
    if (atomic_fetch_add(&s->bar_count, 1) == n - 1 && c->rank != 0)
        mp__lw_notify(c->w, c->group[0]);
    lwait wt = LWAIT_INIT(deadline);
    int rc = 0;
    if (c->rank == 0) {
        while (atomic_load_explicit(&s->bar_count, memory_order_acquire) != n) {
            rc = mp__lw_pause(c->w, &wt, c, LW_ALL);
            if (rc < 0)
                break;
        }
        if (rc == 0) {
            atomic_store_explicit(&s->bar_count, 0, memory_order_relaxed);
            atomic_fetch_add(&s->bar_gen, 1);
            mp__lw_notify_members(c->w, c);
        }
    } else {
        rc = bar_wait_gen(c, gen, &wt);
    }
    mp__lw_end(c->w, &wt);
    return rc;
}

/* A collective does not start on a broken world, or once the
 * communicator's collectives were abandoned.  A member that has ended
 * cleanly may have finished this very collective already: only a wait
 * for it fails (after one last look). */
static int coll_health(const lcomm *c)
{
    return mp__lw_health(c->w, c, LW_ANY);
}

static int local_barrier(mp_comm *c, int64_t deadline)
{
    lcomm *lc = c->impl;
    int rc = coll_health(lc);
    if (rc < 0)
        return rc;
    if (!lc->shm)
        return mp__coll_barrier(c, deadline);
    return lbarrier_led(lc, deadline);
}

/* Waits until *word == want (a value beyond it is MP_EPROTO: the ranks
 * disagree on the sequence of broadcasts).  Returns 0 or an error. */
static int wait_u64(lcomm *c, _Atomic uint64_t *word, uint64_t want, int64_t deadline)
{
    lwait wt = LWAIT_INIT(deadline);
    int rc = 0;
    uint64_t v;
    while ((v = atomic_load_explicit(word, memory_order_acquire)) != want) {
        if (v > want) {
            rc = MP_EPROTO;
            break;
        }
        rc = mp__lw_pause(c->w, &wt, c, LW_ALL);
        if (rc < 0)
            break;
    }
    mp__lw_end(c->w, &wt);
    return rc;
}

/* The fewest broadcast chunks any member has finished. */
static uint64_t bc_least(const lcomm *c)
{
    uint64_t least = UINT64_MAX;
    for (int i = 0; i < c->size; i++) {
        uint64_t d = atomic_load_explicit(&c->bc_done[i].done, memory_order_acquire);
        if (d < least)
            least = d;
    }
    return least;
}

/* Copies into the buffer of each reader of remote broadcast k that
 * offers it the reader's last part (local.h, MP__BC_REMOTE).  Returns
 * whether it copied anything. */
static bool bc_help(lcomm *c, uint64_t k, const void *buf, size_t len)
{
    bool any = false;
    for (int i = 0; i < c->size; i++) {
        int wr = c->group[i];
        if (i != c->rank && mp__lh_serve(&c->bc_done[i].help, k + 1,
                                         (pid_t)atomic_load(&c->w->ranks[wr].pid), buf, len)) {
            mp__lw_notify(c->w, wr);
            any = true;
        }
    }
    return any;
}

/* Waits until every member has finished `want` broadcast chunks.  serve:
 * NULL, or the root's buffer (len bytes) of remote broadcast want - 1,
 * whose readers' offered parts it copies meanwhile.  Returns 0 or an
 * error. */
static int wait_past(lcomm *c, uint64_t want, const void *serve, size_t len, int64_t deadline)
{
    if (c->bc_past >= want)
        return 0;
    lwait wt = LWAIT_INIT(deadline);
    int rc = 0;
    while ((c->bc_past = bc_least(c)) < want) {
        if (serve && bc_help(c, want - 1, serve, len))
            continue;
        rc = mp__lw_pause(c->w, &wt, c, LW_ALL);
        if (rc < 0)
            break;
    }
    mp__lw_end(c->w, &wt);
    return rc;
}

/* This member has finished chunk k: counts itself off, and wakes a root
 * that may wait for that (to reuse the slot, or for its buffer back).
 * Only a member whose count was the last below k + 1 wakes anyone: what a
 * root waits for is every member past a chunk, and a wake-up before that
 * only puts it back to sleep (with more ranks than CPUs, where waits are
 * long enough to sleep, one per reader and broadcast). */
static void bc_finished(lcomm *c, uint64_t k)
{
    lworld *w = c->w;
    atomic_store_explicit(&c->bc_done[c->rank].done, k + 1, memory_order_release);
    mp__lw_fence(w);
    bool asleep = false;
    for (int i = 0; i < c->size && !asleep; i++)
        asleep = atomic_load_explicit(&w->ranks[c->group[i]].sleepers, memory_order_relaxed) != 0;
    if (!asleep)
        return;
    /* Two members finishing at once each read the other's count after
     * storing their own: with a full fence between, one of them sees
     * both. */
    atomic_thread_fence(memory_order_seq_cst);
    if (bc_least(c) > k)
        mp__lw_notify_members(w, c);
}

/* The root's wait before it writes chunk k: the readers of that slot's
 * chunk from MP__L_BC_SLOTS chunks ago are done with it. */
static int slot_wait_free(lcomm *c, uint64_t k, int64_t deadline)
{
    return k < MP__L_BC_SLOTS ? 0 : wait_past(c, k + 1 - MP__L_BC_SLOTS, NULL, 0, deadline);
}

/* The root publishes chunk k, written into slot: stamped, the root
 * counted off, the readers woken. */
static void slot_publish(lcomm *c, mp__lbslot *slot, uint64_t k)
{
    atomic_store_explicit(&slot->stamp, k + 1, memory_order_release);
    atomic_store_explicit(&c->bc_done[c->rank].done, k + 1, memory_order_relaxed);
    mp__lw_notify_members(c->w, c);
}

/* The word every rank's memory holds at a known place, for the probe. */
static const uint64_t probe_word = 0x6d70636f6d6d3031ULL;

static int lreduce(lcomm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                   int root, int64_t deadline);

/* Whether every member may read every other's memory (process_vm_readv):
 * each publishes where its probe word is, reads its neighbour's, and all
 * agree on the answer (a logical and).  Collective; done once per
 * communicator, at its first large broadcast.  Returns 0 or an error. */
static int remote_probe(lcomm *c, int64_t deadline)
{
    struct where {
        int32_t pid;
        uint64_t addr;
    } mine = {(int32_t)c->w->pid, (uint64_t)(uintptr_t)&probe_word}, peer;
    memcpy(c->red_data + (size_t)c->rank * MP__L_RED_CHUNK, &mine, sizeof mine);
    int rc = lbarrier(c, deadline);
    if (rc < 0)
        return rc;
    int next = (c->rank + 1) % c->size;
    memcpy(&peer, c->red_data + (size_t)next * MP__L_RED_CHUNK, sizeof peer);
    uint64_t v = 0;
    int ok = c->w->cma && mp__vm_read(peer.pid, peer.addr, &v, sizeof v) == 0 && v == probe_word;
    int all = 0;
    /* Everyone has read its neighbour before the areas serve the reduction. */
    rc = lbarrier(c, deadline);
    if (rc == 0)
        rc = lreduce(c, &ok, &all, 1, MP_TYPE_i, MP_OP_LAND, -1, deadline);
    if (rc == 0)
        c->remote = all ? 1 : -1;
    return rc;
}

/* A reader of remote broadcast k: copies its part of the root's buffer
 * and learns who copies the rest.  The root's copy into buf, once taken,
 * is waited out whatever happens (mp__lh_settle): buf is the caller's
 * again when this returns. */
static int bc_read(lcomm *c, uint64_t k, const mp__lbslot *slot, void *buf, size_t len, int root)
{
    mp__lhelp *h = &c->bc_done[c->rank].help;
    uint64_t cut = mp__lh_cut(c->w, len, c->size);
    if (cut < len)
        mp__lh_offer(c->w, h, c->group[root], buf, cut, k + 1);
    int rc = mp__vm_read(slot->pid, slot->addr, buf, (size_t)cut);
    if (cut == len)
        return rc;
    uint32_t state = MP__HELP_SELF;
    if (!mp__lh_reclaim(h)) {
        lwait wt = LWAIT_INIT(MP__NO_DEADLINE);
        while ((state = atomic_load_explicit(&h->state, memory_order_acquire)) == MP__HELP_TAKEN) {
            if (mp__lw_pause(c->w, &wt, c, LW_ALL) < 0) {
                state = mp__lh_settle(c->w, h, c->group[root]);
                break;
            }
        }
        mp__lw_end(c->w, &wt);
    }
    if (state == MP__HELP_TAKEN)
        return rc < 0 ? rc : MP_EPEERDEAD;
    if (state != MP__HELP_DONE && rc == 0) /* taken back, or the root's write failed */
        rc = mp__vm_read(slot->pid, slot->addr + cut, (char *)buf + cut, (size_t)(len - cut));
    return rc;
}

/* A large broadcast that readers copy straight from the root's buffer, one
 * copy each and all at once; the root waits until they have, copying the
 * parts they offer meanwhile. */
static int bcast_remote(lcomm *c, void *buf, size_t len, int root, int64_t deadline)
{
    uint64_t k = c->bc_next++;
    mp__lbslot *slot = &c->shm->bc[k % MP__L_BC_SLOTS];
    int rc;
    if (c->rank == root) {
        if ((rc = slot_wait_free(c, k, deadline)) < 0)
            return rc;
        slot->kind = MP__BC_REMOTE;
        slot->pid = (int32_t)c->w->pid;
        slot->addr = (uint64_t)(uintptr_t)buf;
        slot->rlen = len;
        slot_publish(c, slot, k);
        /* The buffer must stay as it is until every reader has it. */
        return wait_past(c, k + 1, buf, len, deadline);
    }
    rc = wait_u64(c, &slot->stamp, k + 1, deadline);
    if (rc < 0)
        return rc;
    if (slot->kind != MP__BC_REMOTE || slot->rlen != len || slot->pid <= 0)
        rc = MP_EPROTO;
    else
        rc = bc_read(c, k, slot, buf, len, root);
    bc_finished(c, k); /* even on failure: the root waits for it */
    return rc == MP_ESRCH ? MP_EPEERDEAD : rc;
}

/* One chunk of a broadcast: chunk number k, clen bytes at p.  A chunk of
 * up to MP__L_BC_INLINE bytes travels in the slot's line. */
static int bcast_chunk(lcomm *c, unsigned char *p, size_t clen, bool root, int64_t deadline)
{
    uint64_t k = c->bc_next++;
    mp__lbslot *slot = &c->shm->bc[k % MP__L_BC_SLOTS];
    unsigned char *data = c->bc_data + (k % MP__L_BC_SLOTS) * MP__L_BC_CHUNK;
    uint32_t kind = clen <= MP__L_BC_INLINE ? MP__BC_INLINE : MP__BC_DATA;
    int rc;
    if (root) {
        if ((rc = slot_wait_free(c, k, deadline)) < 0)
            return rc;
        slot->kind = kind;
        slot->len = (uint32_t)clen;
        memcpy(kind == MP__BC_INLINE ? slot->inl : data, p, clen);
        slot_publish(c, slot, k);
        return 0;
    }
    rc = wait_u64(c, &slot->stamp, k + 1, deadline);
    if (rc < 0)
        return rc;
    if (slot->kind != kind || slot->len != clen)
        return MP_EPROTO; /* the ranks disagree on the size */
    memcpy(p, kind == MP__BC_INLINE ? slot->inl : data, clen);
    bc_finished(c, k);
    return 0;
}

static int local_bcast(mp_comm *c, void *buf, size_t len, int root, int64_t deadline)
{
    lcomm *lc = c->impl;
    int rc = coll_health(lc);
    if (rc < 0)
        return rc;
    if (!lc->shm)
        return mp__coll_bcast(c, buf, len, root, deadline);
    if (lc->size == 1)
        return 0;
    if (len >= MP__L_BC_REMOTE_MIN) {
        if (lc->remote == 0 && (rc = remote_probe(lc, deadline)) < 0)
            return rc;
        if (lc->remote > 0)
            return bcast_remote(lc, buf, len, root, deadline);
    }
    for (size_t off = 0; off < len; off += MP__L_BC_CHUNK) {
        size_t clen = len - off < MP__L_BC_CHUNK ? len - off : (size_t)MP__L_BC_CHUNK;
        rc = bcast_chunk(lc, (unsigned char *)buf + off, clen, lc->rank == root, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reduction of count elements through the block (see DESIGN); the result
 * goes to root's recv, or everyone's when root is -1. */
static int lreduce(lcomm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                   int root, int64_t deadline)
{
    size_t es;
    (void)mp__comm_type_size(type, &es);
    size_t per = (size_t)MP__L_RED_CHUNK / es, n = (size_t)c->size;
    unsigned char *mine = c->red_data + (size_t)c->rank * MP__L_RED_CHUNK;
    unsigned char *result = c->red_data + n * MP__L_RED_CHUNK;
    for (size_t done = 0; done < count;) {
        size_t m = count - done < per ? count - done : per;
        memcpy(mine, (const unsigned char *)send + done * es, m * es);
        int rc = lbarrier(c, deadline);
        if (rc < 0)
            return rc;
        size_t lo = m * (size_t)c->rank / n, hi = m * ((size_t)c->rank + 1) / n;
        if (hi > lo) {
            size_t at = lo * es, bytes = (hi - lo) * es;
            memcpy(result + at, c->red_data + (n - 1) * MP__L_RED_CHUNK + at, bytes);
            for (size_t r = n - 1; r-- > 0;)
                mp__op_apply(op, type, c->red_data + r * MP__L_RED_CHUNK + at, result + at,
                             hi - lo);
        }
        rc = lbarrier(c, deadline);
        if (rc < 0)
            return rc;
        if (root < 0 || root == c->rank)
            memcpy((unsigned char *)recv + done * es, result, m * es);
        done += m;
    }
    return 0;
}

static int local_reduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                        mp_op op, int root, int64_t deadline)
{
    lcomm *lc = c->impl;
    int rc = coll_health(lc);
    if (rc < 0)
        return rc;
    if (!lc->shm)
        return mp__coll_reduce(c, send, recv, count, type, op, root, deadline);
    return lreduce(lc, send, recv, count, type, op, root, deadline);
}

static int local_allreduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                           mp_op op, int64_t deadline)
{
    lcomm *lc = c->impl;
    int rc = coll_health(lc);
    if (rc < 0)
        return rc;
    if (!lc->shm)
        return mp__coll_allreduce(c, send, recv, count, type, op, deadline);
    return lreduce(lc, send, recv, count, type, op, -1, deadline);
}

/* ---- point to point: the slots ---------------------------------------------------- */

static int local_send(mp_comm *c, const void *buf, size_t len, int dest, int tag, int64_t deadline)
{
    return mp__lp_send(c->impl, buf, len, dest, tag, deadline);
}

static int local_recv(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_comm_status *st,
                      int64_t deadline)
{
    return mp__lp_recv(c->impl, buf, cap, src, tag, st, deadline);
}

static int local_sendrecv(mp_comm *c, const void *sbuf, size_t slen, int dest, int stag, void *rbuf,
                          size_t rcap, int src, int rtag, mp_comm_status *st, int64_t deadline)
{
    return mp__lp_sendrecv(c->impl, sbuf, slen, dest, stag, rbuf, rcap, src, rtag, st, deadline);
}

static int local_isend(mp_comm *c, const void *buf, size_t len, int dest, int tag, mp_future **out)
{
    return mp__lp_isend(c->impl, buf, len, dest, tag, out);
}

static int local_irecv(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_future **out)
{
    return mp__lp_irecv(c->impl, buf, cap, src, tag, out);
}

static int local_probe(mp_comm *c, int src, int tag, mp_comm_status *st, int64_t deadline)
{
    return mp__lp_probe(c->impl, src, tag, st, deadline);
}

/* ---- the world -------------------------------------------------------------------- */

/* What mprun handed this process in its environment, taken at load. */
static struct {
    int fd;
    int rank, size;
} boot = {-1, -1, 0};

static int env_int(const char *name, int *out)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return MP_ENOENT;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end != '\0' || x < 0 || x > INT32_MAX)
        return MP_EINVAL;
    *out = (int)x;
    return 0;
}

void mp__local_boot(void)
{
    int fd;
    if (env_int("MPROC_COMM_FD", &fd) != 0)
        return;
    /* Programs this rank starts are not ranks: they must not see the
     * descriptor.  The rank and size stay, for scripts. */
    unsetenv("MPROC_COMM_FD");
    if (env_int("MPROC_COMM_RANK", &boot.rank) != 0 || env_int("MPROC_COMM_SIZE", &boot.size) != 0)
        return;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return;
    (void)mp__set_cloexec(fd, true);
    boot.fd = fd;
}

bool mp__local_launched(void)
{
    return boot.fd >= 0;
}

/* Maps the segment mprun handed over. */
static int map_boot(void **base, size_t *size)
{
    mp__llayout lay;
    size_t have = 0;
    int rc = mp__lseg_layout(boot.size, &lay);
    if (rc == 0)
        rc = mp__fd_size(boot.fd, &have);
    if (rc == 0 && have != lay.size)
        rc = MP_EPROTO;
    if (rc == 0)
        rc = mp__map_fd(boot.fd, (size_t)lay.size, NULL, base);
    /* The mapping keeps the memory; the descriptor is no longer needed. */
    mp__close(boot.fd);
    boot.fd = -1;
    *size = (size_t)lay.size;
    return rc < 0 ? (rc == MP_EINVAL ? MP_EPROTO : rc) : 0;
}

static int world_from(mp_comm *wc, void *base, size_t size, bool owns, int rank)
{
    lworld *w;
    int rc = mp__lw_attach(base, size, owns, rank, &w);
    if (rc < 0)
        return rc;
    wc->impl = w->world;
    wc->rank = w->me;
    wc->size = w->n;
    return 0;
}

static int local_world_init(mp_comm *wc)
{
    void *base = NULL;
    size_t size = 0;
    int rank = 0, rc;
    if (boot.fd >= 0) {
        rank = boot.rank;
        rc = map_boot(&base, &size);
    } else {
        int fd;
        rc = mp__lseg_create(1, 0, &fd, &base, &size);
        if (rc == 0)
            mp__close(fd);
    }
    if (rc < 0)
        return rc;
    rc = world_from(wc, base, size, true, rank);
    if (rc < 0)
        mp__unmap(base, size);
    return rc;
}

int mp__local_world_forked(mp_comm *wc, void *base, size_t size, int rank)
{
    /* The mapping was inherited: this process maps it as long as it
     * lives, and so does its launcher. */
    return world_from(wc, base, size, false, rank);
}

static void local_world_fini(mp_comm *wc)
{
    lcomm *lc = wc->impl;
    mp__lw_detach(lc->w);
    wc->impl = NULL;
}

static void local_abort(mp_comm *c, int code)
{
    lcomm *lc = c->impl;
    fflush(NULL);
    mp__lseg_abort(lc->w->base, lc->w->me, code);
    _exit(code & 255 ? code & 255 : 1);
}

const mp__comm_ops mp__comm_local_ops = {
    .version = MP__COMM_OPS_VERSION,
    .size = sizeof(mp__comm_ops),
    .name = "local",
    .caps = MP__COMM_CAP_FORK | MP__COMM_CAP_RUN,
    .world_init = local_world_init,
    .world_fini = local_world_fini,
    .abort = local_abort,
    .dup = local_dup,
    .split = local_split,
    .free = local_free,
    .abandon = local_abandon,
    .send = local_send,
    .recv = local_recv,
    .sendrecv = local_sendrecv,
    .isend = local_isend,
    .irecv = local_irecv,
    .probe = local_probe,
    .barrier = local_barrier,
    .bcast = local_bcast,
    .reduce = local_reduce,
    .allreduce = local_allreduce,
};
