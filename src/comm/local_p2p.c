/*
 * local_p2p.c - the local engine's point to point: rings, matching,
 * rendezvous, requests with futures, and the progress thread.
 *
 * DESIGN
 * One matching engine per rank, as in MPI implementations.  Receives wait
 * in `posted`, in the order they were started; messages that arrived
 * before any receive wanted them wait in `unex`, in arrival order.  A new
 * receive first looks through unex, then joins posted.  Draining a ring
 * (progress) takes its records in order and gives each to the first
 * posted receive it matches, or appends it to unex (copying an eager
 * payload out of the ring).  That keeps MPI's rules: messages of one
 * sender on one communicator are received in the order sent, and
 * receives are matched in the order they were started.
 *
 * Sends to one peer leave in the order they were made: a send joins the
 * peer's sendq when an earlier one still waits there (ring full, or no
 * free rendezvous slot), else it writes its record at once.
 *
 * Blocking calls put a request on their own stack into these lists and
 * run progress passes until it is done, pausing in between (local_seg.c).
 * Non-blocking calls put a heap request there with a future; when it does
 * not finish in the first pass, the progress thread (started at the first
 * such request) runs passes while requests are pending, sleeping on the
 * rank's doorbell between them.  From then on every call takes the
 * engine's lock; before that there is one thread per rank by the API's
 * contract, and no lock is taken (a lock pair costs a fifth of a message).
 * Futures are finished after the lock is dropped (their callbacks may call
 * back into the engine).
 *
 * Timeouts.  A request that times out is withdrawn if nothing has matched
 * it yet.  Once a receiver has claimed a rendezvous the transfer runs to
 * its end, deadline or not (it ends unless the peer dies, which the health
 * checks report).
 */
#define _GNU_SOURCE
#include "local.h"

#include <signal.h>

enum { RQ_SEND = 1, RQ_RECV = 2 };
enum {
    PH_NEW = 0,    /* in no list yet */
    PH_QUEUED = 1, /* send in sendq, receive in posted */
    PH_RDV,        /* send: request sent, waiting for the receiver */
    PH_PIPE_IN,    /* receive: pipelined transfer under way */
    PH_HELP_IN,    /* receive: the sender copies the rest */
    PH_DONE
};

struct lreq {
    lreq *next, *prev;
    uint8_t kind, phase;
    bool async;
    int rc;
    lcomm *comm;
    uint32_t ctx;
    int peer; /* world rank; -1: any (receives) */
    int tag;
    const void *sbuf;
    void *rbuf;
    size_t len;        /* send: its length; receive: the room in rbuf */
    mp_comm_status st; /* receive: st.source is a world rank until finished */
    int slot;          /* rendezvous slot (ours for sends, the sender's for receives) */
    uint32_t gen;
    uint64_t moved; /* pipeline bytes; PH_HELP_IN: where the sender's part starts */
    mp_future *fut;
};

struct lmsg {
    lmsg *next, *prev;
    int src; /* world rank */
    int tag;
    uint32_t ctx;
    uint16_t kind;
    uint64_t len;
    uint32_t slot, gen;
    unsigned char data[];
};

/* A rendezvous whose slot the sender took back: the message never was. */
#define RDV_GONE 1

static bool cma_default = true;

void mp__lp_set_cma(bool on)
{
    cma_default = on;
}

/* A call on a broken world fails at once, even one that would not wait:
 * what it does could not matter any more. */
static bool broken(const lworld *w)
{
    return atomic_load_explicit(&w->hdr->broken, memory_order_relaxed) != 0;
}

static void lock(lworld *w)
{
    if (w->threaded)
        pthread_mutex_lock(&w->lock);
}

static void unlock(lworld *w)
{
    if (w->threaded)
        pthread_mutex_unlock(&w->lock);
}

/* ---- lists ------------------------------------------------------------------------ */

static void rq_push(lreq_list *l, lreq *q)
{
    q->next = NULL;
    q->prev = l->tail;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
}

static void rq_remove(lreq_list *l, lreq *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        l->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        l->tail = q->prev;
    q->next = q->prev = NULL;
}

static void msg_push(lmsg_list *l, lmsg *m)
{
    m->next = NULL;
    m->prev = l->tail;
    if (l->tail)
        l->tail->next = m;
    else
        l->head = m;
    l->tail = m;
}

static void msg_remove(lmsg_list *l, lmsg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        l->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        l->tail = m->prev;
}

static bool matches(const lreq *q, uint32_t ctx, int src, int tag)
{
    return q->ctx == ctx && (q->peer < 0 || q->peer == src) &&
           (q->tag == MP_ANY_TAG ? tag >= 0 : q->tag == tag);
}

static void posted_add(lworld *w, lreq *q)
{
    rq_push(&w->posted, q);
    if (q->peer < 0)
        w->posted_any++;
    else
        w->peers[q->peer].posted_from++;
}

static void posted_remove(lworld *w, lreq *q)
{
    rq_remove(&w->posted, q);
    if (q->peer < 0)
        w->posted_any--;
    else
        w->peers[q->peer].posted_from--;
}

/* Takes q out of whichever list its phase puts it in. */
static void unlink_req(lworld *w, lreq *q)
{
    if (q->phase == PH_QUEUED && q->kind == RQ_RECV) {
        posted_remove(w, q);
    } else if (q->phase == PH_QUEUED) {
        lpeer *pe = &w->peers[q->peer];
        rq_remove(&pe->sendq, q);
        if (!pe->sendq.head)
            w->nsendq--;
    } else if (q->phase == PH_RDV) {
        rq_remove(&w->rdv_out, q);
    } else if (q->phase == PH_PIPE_IN || q->phase == PH_HELP_IN) {
        rq_remove(&w->rdv_in, q);
    }
}

static void finish(lworld *w, lreq *q, int rc)
{
    if (q->phase == PH_DONE)
        return;
    unlink_req(w, q);
    q->phase = PH_DONE;
    q->rc = rc;
    if (q->async) {
        w->npending--;
        rq_push(&w->finished, q);
    }
}

/* ---- rings ------------------------------------------------------------------------ */

static uint64_t rec_bytes(uint64_t payload)
{
    return (sizeof(mp__lrec) + payload + MP__L_LINE - 1) & ~(uint64_t)(MP__L_LINE - 1);
}

/* A receiver tells its head once per this many bytes read, at least
 * (local.h, "Telling the head"); a power of two. */
static uint64_t tell_every(const lworld *w)
{
    return w->lay.ring_bytes / 16;
}

/* Lines a sender asks for ahead of its tail. */
#define OWN_AHEAD ((uint64_t)16)

/* The longest payload copied by copy_short: a record of two lines. */
#define SHORT_MAX ((size_t)2 * MP__L_LINE - sizeof(mp__lrec))

/* Copies n <= SHORT_MAX bytes without a call: 16-byte moves, the last
 * one overlapping, as a library memcpy makes of a short copy after its
 * call and its dispatch on the length. */
static inline void copy_short(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (n >= 16) {
        for (size_t i = 0; i + 16 < n; i += 16)
            memcpy(d + i, s + i, 16);
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 8) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else if (n) {
        d[0] = s[0];
        d[n / 2] = s[n / 2];
        d[n - 1] = s[n - 1];
    }
}

/* Copies len bytes between a ring's data and flat memory, from the ring
 * position pos, wrapping at the end.  A short payload that does not wrap
 * (every small message) is copied inline. */
static inline void ring_read(const lworld *w, const unsigned char *data, uint64_t pos, void *dst,
                             size_t len)
{
    uint64_t mask = w->lay.ring_bytes - 1, at = pos & mask;
    if (len <= SHORT_MAX && at + len <= w->lay.ring_bytes) {
        copy_short(dst, data + at, len);
        return;
    }
    size_t first = len < w->lay.ring_bytes - at ? len : (size_t)(w->lay.ring_bytes - at);
    memcpy(dst, data + at, first);
    if (first < len)
        memcpy((char *)dst + first, data, len - first);
}

static inline void ring_write(const lworld *w, unsigned char *data, uint64_t pos, const void *src,
                              size_t len)
{
    uint64_t mask = w->lay.ring_bytes - 1, at = pos & mask;
    if (len <= SHORT_MAX && at + len <= w->lay.ring_bytes) {
        copy_short(data + at, src, len);
        return;
    }
    size_t first = len < w->lay.ring_bytes - at ? len : (size_t)(w->lay.ring_bytes - at);
    memcpy(data + at, src, first);
    if (first < len)
        memcpy(data, (const char *)src + first, len - first);
}

/* The first word of the ring line at pos, where a record's stamp goes. */
static _Atomic uint32_t *stamp_at(const lworld *w, unsigned char *data, uint64_t pos)
{
    return (_Atomic uint32_t *)(void *)(data + (pos & (w->lay.ring_bytes - 1)));
}

/* Asks for the lines of the next records to write, up to OWN_AHEAD lines
 * past the tail and never past what the receiver told us it read: in a
 * stream each line then comes from the receiver's cache while earlier
 * ones are still on their way, instead of each stalling its own stores. */
static inline void ring_own_ahead(const lworld *w, lpeer *pe)
{
    uint64_t room = w->lay.ring_bytes;
    uint64_t from = pe->out_owned > pe->out_tail ? pe->out_owned : pe->out_tail;
    uint64_t to = pe->out_tail + OWN_AHEAD * MP__L_LINE;
    if (to > pe->out_head + room)
        to = pe->out_head + room;
    for (; from < to; from += MP__L_LINE)
        mp__prefetch_write(pe->out_data + (from & (room - 1)));
    pe->out_owned = from;
}

/* Writes one record to dest's ring if it fits.  Returns 1 when written,
 * 0 when the ring is full, MP_EPROTO when the peer's head is impossible. */
static inline int ring_put(lworld *w, int dest, uint16_t kind, uint32_t ctx, int tag, const void *p,
                           size_t n)
{
    lpeer *pe = &w->peers[dest];
    uint64_t need = rec_bytes(n), room = w->lay.ring_bytes;
    if (pe->out_tail + need - pe->out_head > room) {
        uint64_t head = atomic_load_explicit(&pe->out->head, memory_order_acquire);
        if (head > pe->out_tail || pe->out_tail - head > room)
            return MP_EPROTO;
        pe->out_head = head;
        if (pe->out_tail + need - head > room) {
            /* Full: ask the receiver to ring when it makes room.  The wait
             * that follows fences before it sleeps and looks again. */
            if (!atomic_load_explicit(&pe->out->want_space, memory_order_relaxed))
                atomic_store(&pe->out->want_space, 1);
            return 0;
        }
    }
    /* Records start on a line, and the ring is a whole number of lines:
     * the header never wraps.  Everything but the stamp first, then the
     * stamp, released: it tells the receiver the record is whole.  The
     * header's fields are stored one by one: a header built on the stack
     * and copied over would be read back across its fields' stores, which
     * the CPU cannot forward - a stall on every message. */
    unsigned char *at = pe->out_data + (pe->out_tail & (room - 1));
    mp__lrec *h = (mp__lrec *)(void *)at;
    h->kind = kind;
    h->len = (uint16_t)n;
    h->tag = tag;
    h->ctx = ctx;
    ring_write(w, pe->out_data, pe->out_tail + sizeof *h, p, n);
    atomic_store_explicit(stamp_at(w, pe->out_data, pe->out_tail), mp__lrec_stamp(pe->out_tail),
                          memory_order_release);
    pe->out_tail += need;
    ring_own_ahead(w, pe);
    mp__lw_notify(w, dest);
    return 1;
}

/* Tells src's sender our head, and wakes it if it waits for room.
 * Store - fence - load against the sender's want_space - fence - head
 * (ring_put, then its wait). */
static void ring_tell(lworld *w, int src)
{
    lpeer *pe = &w->peers[src];
    pe->in_told = pe->in_head;
    atomic_store_explicit(&pe->in->head, pe->in_head, memory_order_release);
    mp__lw_fence(w);
    if (atomic_load_explicit(&pe->in->want_space, memory_order_relaxed)) {
        atomic_store_explicit(&pe->in->want_space, 0, memory_order_relaxed);
        mp__lw_notify(w, src);
    }
}

void mp__lp_tell_all(lworld *w)
{
    lock(w);
    for (int i = 0; i < w->nuntold; i++) {
        int src = w->untold[i];
        w->peers[src].in_listed = false;
        if (w->peers[src].in_head != w->peers[src].in_told)
            ring_tell(w, src);
    }
    w->nuntold = 0;
    unlock(w);
}

/* The record at the head of src's ring.  Returns 1 with *rec, 0 when the
 * ring is empty (the line holds zero or the stamp of the lap before),
 * MP_EPROTO for anything but a valid record.  An empty ring's sender is
 * told our head: it may be waiting for room. */
static int ring_peek(lworld *w, int src, mp__lrec *rec)
{
    lpeer *pe = &w->peers[src];
    _Atomic uint32_t *sp = stamp_at(w, pe->in_data, pe->in_head);
    uint32_t stamp = atomic_load_explicit(sp, memory_order_acquire);
    if (stamp != mp__lrec_stamp(pe->in_head)) {
        if (pe->in_head != pe->in_told)
            ring_tell(w, src);
        uint64_t lap = w->lay.ring_bytes;
        bool empty =
            stamp == 0 || (pe->in_head >= lap && stamp == mp__lrec_stamp(pe->in_head - lap));
        return empty ? 0 : MP_EPROTO;
    }
    memcpy(rec, (const void *)sp, sizeof *rec);
    bool ok = (rec->kind == MP__REC_EAGER && rec->len <= w->lay.eager) ||
              (rec->kind == MP__REC_RTS && rec->len == sizeof(mp__lrts));
    return ok ? 1 : MP_EPROTO;
}

/* Drops the head record of src's ring.  The first word of each line
 * after the header held message bytes: zeroed, so that it cannot pass for
 * a stamp when a record starts there in the next lap (the sender writes
 * there only after it is told our head moved past, so the zero comes
 * first).  The sender is told the new head only once per tell_every
 * bytes (local.h, "Telling the head"); else src joins the untold list. */
static inline void ring_pop(lworld *w, int src, const mp__lrec *rec)
{
    lpeer *pe = &w->peers[src];
    uint64_t need = rec_bytes(rec->len), was = pe->in_head;
    for (uint64_t off = MP__L_LINE; off < need; off += MP__L_LINE)
        atomic_store_explicit(stamp_at(w, pe->in_data, was + off), 0, memory_order_relaxed);
    pe->in_head = was + need;
    if ((was ^ pe->in_head) >= tell_every(w)) {
        ring_tell(w, src);
    } else if (!pe->in_listed) {
        pe->in_listed = true;
        w->untold[w->nuntold++] = src;
    }
}

/* ---- rendezvous slots ------------------------------------------------------------ */

static mp__lrdv *rdv_of(lworld *w, int rank, uint32_t slot)
{
    return (mp__lrdv *)(w->base + w->lay.off_rdv) + (size_t)rank * MP__L_RDV_SLOTS + slot;
}

static mp__lbulk *bulk_of(lworld *w, int rank)
{
    return (mp__lbulk *)(w->base + w->lay.off_bulk + (uint64_t)rank * w->lay.bulk_stride);
}

static unsigned char *bulk_data(lworld *w, int rank)
{
    return (unsigned char *)bulk_of(w, rank) + (w->lay.bulk_stride - MP__L_BULK);
}

static void slot_free(lworld *w, int slot)
{
    w->rdv_gen[slot] = (w->rdv_gen[slot] + 1) & 0xffffffu;
    atomic_store_explicit(&rdv_of(w, w->me, (uint32_t)slot)->state,
                          MP__RDV(w->rdv_gen[slot], MP__RDV_FREE), memory_order_release);
    w->rdv_free |= (uint64_t)1 << slot;
    if (w->bulk_slot == slot)
        w->bulk_slot = -1;
}

/* Claims the slot an RTS names.  Returns 0 with *out, RDV_GONE when the
 * sender took it back, MP_EPROTO for a slot that does not say what the
 * request said. */
static int rdv_claim(lworld *w, int src, const mp__lrts *rts, mp__lrdv **out)
{
    if (rts->slot >= MP__L_RDV_SLOTS || rts->gen > 0xffffffu)
        return MP_EPROTO;
    mp__lrdv *r = rdv_of(w, src, rts->slot);
    uint32_t expect = MP__RDV(rts->gen, MP__RDV_POSTED);
    if (!atomic_compare_exchange_strong(&r->state, &expect, MP__RDV(rts->gen, MP__RDV_CLAIMED)))
        return RDV_GONE;
    if (r->len != rts->len) {
        atomic_store(&r->state, MP__RDV(rts->gen, MP__RDV_FAILED));
        mp__lw_notify(w, src);
        return MP_EPROTO;
    }
    *out = r;
    return 0;
}

/* Ends claimed rendezvous q with rc: tells its sender, and finishes q. */
static void rdv_end(lworld *w, lreq *q, int src, mp__lrdv *r, int rc)
{
    atomic_store_explicit(&r->state, MP__RDV(q->gen, rc == 0 ? MP__RDV_DONE : MP__RDV_FAILED),
                          memory_order_release);
    mp__lw_notify(w, src);
    finish(w, q, rc == MP_ESRCH ? MP_EPEERDEAD : rc);
}

enum { TAKE_PIPE = 1, TAKE_HELPED = 2 };

/* Copies the part of claimed rendezvous r from cut to len that the
 * receiver was to leave its sender, into rbuf. */
static int rdv_read_rest(lworld *w, int src, const mp__lrdv *r, void *rbuf, uint64_t cut,
                         uint64_t len)
{
    pid_t pid = (pid_t)atomic_load(&w->ranks[src].pid);
    return mp__vm_read(pid, r->addr + cut, (char *)rbuf + cut, (size_t)(len - cut));
}

/* Copies claimed rendezvous q of len bytes from src's memory, offering
 * src its second half once a single-copy read has worked.  Returns 0 when
 * q has it all, TAKE_HELPED when the sender took that part (q's own
 * outcome in q->rc: the sender's copy must end before q does, even after
 * an error of ours), or an error. */
static int rdv_read(lworld *w, lreq *q, int src, mp__lrdv *r, uint64_t len)
{
    pid_t pid = (pid_t)atomic_load(&w->ranks[src].pid);
    uint64_t cut = w->cma_seen ? mp__lh_cut(w, len, 2) : len;
    if (cut < len)
        mp__lh_offer(w, &r->help, src, q->rbuf, cut, q->gen);
    int rc = mp__vm_read(pid, r->addr, q->rbuf, (size_t)cut);
    if (rc == 0)
        w->cma_seen = true;
    if (cut == len)
        return rc;
    if (mp__lh_reclaim(&r->help))
        return rc < 0 ? rc : rdv_read_rest(w, src, r, q->rbuf, cut, len);
    q->moved = cut;
    q->rc = rc;
    return TAKE_HELPED;
}

/* Receives a claimed rendezvous into q: in one copy when the kernel lets
 * us read the sender's memory (shared with the sender for a long one),
 * else by asking for the pipeline.  Returns 0 (q is done, or the rest is
 * under way) or an error. */
static int rdv_take(lworld *w, lreq *q, int src, mp__lrdv *r, const mp__lrts *rts)
{
    q->slot = (int)rts->slot;
    q->gen = rts->gen;
    int rc = 0;
    if (rts->len == 0) {
        rc = 0;
    } else if (src == w->me) {
        memcpy(q->rbuf, (const void *)(uintptr_t)r->addr, (size_t)rts->len);
    } else if (w->cma) {
        rc = rdv_read(w, q, src, r, rts->len);
        if (rc == MP_EPERM || rc == MP_ENOSYS || rc == -EACCES) {
            w->cma = false; /* refused: pipelines from now on */
            rc = TAKE_PIPE;
        }
    } else {
        rc = TAKE_PIPE;
    }
    if (rc == TAKE_PIPE || rc == TAKE_HELPED) {
        unlink_req(w, q);
        q->phase = rc == TAKE_PIPE ? PH_PIPE_IN : PH_HELP_IN;
        rq_push(&w->rdv_in, q);
        if (rc == TAKE_PIPE) {
            q->moved = 0;
            atomic_store_explicit(&r->state, MP__RDV(rts->gen, MP__RDV_PIPE), memory_order_release);
            mp__lw_notify(w, src);
        }
        return 0;
    }
    rdv_end(w, q, src, r, rc);
    return 0;
}

/* ---- matching -------------------------------------------------------------------- */

static lreq *find_posted(lworld *w, uint32_t ctx, int src, int tag)
{
    for (lreq *q = w->posted.head; q; q = q->next)
        if (matches(q, ctx, src, tag))
            return q;
    return NULL;
}

/* Moves the head record of src's ring to unex. */
static int to_unex(lworld *w, int src, const mp__lrec *rec)
{
    lmsg *m = malloc(sizeof *m + (rec->kind == MP__REC_EAGER ? rec->len : 0));
    if (!m)
        return MP_ENOMEM;
    lpeer *pe = &w->peers[src];
    m->src = src;
    m->tag = rec->tag;
    m->ctx = rec->ctx;
    m->kind = rec->kind;
    m->slot = m->gen = 0;
    if (rec->kind == MP__REC_EAGER) {
        m->len = rec->len;
        ring_read(w, pe->in_data, pe->in_head + sizeof *rec, m->data, rec->len);
    } else {
        mp__lrts rts;
        ring_read(w, pe->in_data, pe->in_head + sizeof *rec, &rts, sizeof rts);
        m->len = rts.len;
        m->slot = rts.slot;
        m->gen = rts.gen;
    }
    msg_push(&w->unex, m);
    ring_pop(w, src, rec);
    return 0;
}

/* Gives the head record of src's ring to the posted receive q. */
static int to_posted(lworld *w, lreq *q, int src, const mp__lrec *rec)
{
    lpeer *pe = &w->peers[src];
    uint64_t len = rec->len;
    mp__lrts rts = {0, 0, 0};
    if (rec->kind == MP__REC_RTS) {
        ring_read(w, pe->in_data, pe->in_head + sizeof *rec, &rts, sizeof rts);
        len = rts.len;
    }
    q->st.source = src;
    q->st.tag = rec->tag;
    q->st.count = (size_t)len;
    if (len > q->len) {
        int rc = to_unex(w, src, rec); /* it stays first in line */
        finish(w, q, rc < 0 ? rc : MP_EMSGSIZE);
        return 0;
    }
    if (rec->kind == MP__REC_EAGER) {
        ring_read(w, pe->in_data, pe->in_head + sizeof *rec, q->rbuf, rec->len);
        ring_pop(w, src, rec);
        finish(w, q, 0);
        return 0;
    }
    ring_pop(w, src, rec);
    mp__lrdv *r;
    int rc = rdv_claim(w, src, &rts, &r);
    if (rc == RDV_GONE)
        return 0; /* q stays posted */
    if (rc < 0) {
        finish(w, q, rc);
        return 0;
    }
    return rdv_take(w, q, src, r, &rts);
}

/* Takes what src's ring holds, in order, while posted receives may want
 * it (or all of it with all).  Returns 0 or an error. */
static int drain(lworld *w, int src, bool all)
{
    uint64_t budget = w->lay.ring_bytes / MP__L_LINE;
    while (budget-- > 0 && (all || w->posted_any || w->peers[src].posted_from)) {
        mp__lrec rec;
        int rc = ring_peek(w, src, &rec);
        if (rc <= 0)
            return rc;
        lreq *q = find_posted(w, rec.ctx, src, rec.tag);
        rc = q ? to_posted(w, q, src, &rec) : to_unex(w, src, &rec);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Looks for q's message in unex.  Returns 1 when q is done or under way,
 * 0 when nothing there matches, or an error. */
static int match_unex(lworld *w, lreq *q)
{
    for (lmsg *m = w->unex.head, *next; m; m = next) {
        next = m->next;
        if (!matches(q, m->ctx, m->src, m->tag))
            continue;
        q->st.source = m->src;
        q->st.tag = m->tag;
        q->st.count = (size_t)m->len;
        if (m->len > q->len) {
            finish(w, q, MP_EMSGSIZE);
            return 1;
        }
        msg_remove(&w->unex, m);
        if (m->kind == MP__REC_EAGER) {
            if (m->len)
                memcpy(q->rbuf, m->data, (size_t)m->len);
            free(m);
            finish(w, q, 0);
            return 1;
        }
        mp__lrts rts = {m->len, m->slot, m->gen};
        int src = m->src;
        free(m);
        mp__lrdv *r;
        int rc = rdv_claim(w, src, &rts, &r);
        if (rc == RDV_GONE)
            continue;
        if (rc < 0) {
            finish(w, q, rc);
            return 1;
        }
        rc = rdv_take(w, q, src, r, &rts);
        return rc < 0 ? rc : 1;
    }
    return 0;
}

/* Starts receive q: from unex if its message is there, else posted. */
static int post_recv(lworld *w, lreq *q)
{
    q->phase = PH_NEW;
    int rc = match_unex(w, q);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    q->phase = PH_QUEUED;
    posted_add(w, q);
    return 0;
}

/* ---- sends ------------------------------------------------------------------------ */

static void sendq_add(lworld *w, lreq *q)
{
    lpeer *pe = &w->peers[q->peer];
    if (!pe->sendq.head)
        w->nsendq++;
    q->phase = PH_QUEUED;
    rq_push(&pe->sendq, q);
}

/* One step of q, the first send of its peer's queue.  Returns 1 once it
 * left the queue (sent, or its rendezvous request is out), 0 when it must
 * wait (ring full, no free slot), or an error. */
static int send_step(lworld *w, lreq *q)
{
    if (q->len <= w->lay.eager) {
        int rc = ring_put(w, q->peer, MP__REC_EAGER, q->ctx, q->tag, q->sbuf, q->len);
        if (rc == 1)
            finish(w, q, 0);
        return rc;
    }
    if (!w->rdv_free)
        return 0;
    int slot = __builtin_ctzll(w->rdv_free);
    uint32_t gen = w->rdv_gen[slot];
    mp__lrdv *r = rdv_of(w, w->me, (uint32_t)slot);
    r->addr = (uint64_t)(uintptr_t)q->sbuf;
    r->len = q->len;
    atomic_store_explicit(&r->help.state, MP__HELP_NONE, memory_order_relaxed);
    /* Release: the address and length are visible before the state that
     * offers them (a receiver reads them after its acquiring claim). */
    atomic_store_explicit(&r->state, MP__RDV(gen, MP__RDV_POSTED), memory_order_release);
    mp__lrts rts = {q->len, (uint32_t)slot, gen};
    int rc = ring_put(w, q->peer, MP__REC_RTS, q->ctx, q->tag, &rts, sizeof rts);
    if (rc != 1) {
        /* No receiver can name the slot yet: it is still ours. */
        atomic_store_explicit(&r->state, MP__RDV(gen, MP__RDV_FREE), memory_order_relaxed);
        return rc;
    }
    w->rdv_free &= ~((uint64_t)1 << slot);
    q->slot = slot;
    q->gen = gen;
    unlink_req(w, q);
    q->phase = PH_RDV;
    rq_push(&w->rdv_out, q);
    return 1;
}

/* Streams what fits of q's message into our bulk area. */
static int push(lworld *w, lreq *q)
{
    mp__lbulk *b = bulk_of(w, w->me);
    unsigned char *data = bulk_data(w, w->me);
    uint64_t taken = atomic_load_explicit(&b->taken, memory_order_acquire);
    if (taken > q->moved)
        return MP_EPROTO;
    bool moved = false;
    while (q->moved < q->len && q->moved - taken < MP__L_BULK) {
        uint64_t pos = q->moved % MP__L_BULK, k = MP__L_PIECE;
        if (k > q->len - q->moved)
            k = q->len - q->moved;
        if (k > MP__L_BULK - pos)
            k = MP__L_BULK - pos;
        if (k > MP__L_BULK - (q->moved - taken))
            k = MP__L_BULK - (q->moved - taken);
        memcpy(data + pos, (const char *)q->sbuf + q->moved, (size_t)k);
        q->moved += k;
        atomic_store_explicit(&b->filled, q->moved, memory_order_release);
        moved = true;
    }
    if (moved)
        mp__lw_notify(w, q->peer);
    return 0;
}

/* One step of our rendezvous send q.  Returns 1 when it finished, 0 while
 * it goes on, or an error. */
static int rdv_send_step(lworld *w, lreq *q)
{
    mp__lrdv *r = rdv_of(w, w->me, (uint32_t)q->slot);
    uint32_t s = atomic_load_explicit(&r->state, memory_order_acquire);
    if (MP__RDV_GEN(s) != q->gen)
        return MP_EPROTO;
    switch (MP__RDV_KIND(s)) {
    case MP__RDV_POSTED:
        return 0;
    case MP__RDV_CLAIMED:
        /* The receiver may offer us part of the copy (local.h, "Messages"). */
        if (mp__lh_serve(&r->help, q->gen, (pid_t)atomic_load(&w->ranks[q->peer].pid), q->sbuf,
                         q->len))
            mp__lw_notify(w, q->peer);
        return 0;
    case MP__RDV_DONE:
    case MP__RDV_FAILED:
        slot_free(w, q->slot);
        finish(w, q, MP__RDV_KIND(s) == MP__RDV_DONE ? 0 : MP_EPROTO);
        return 1;
    case MP__RDV_PIPE:
        if (w->bulk_slot >= 0)
            return 0; /* another transfer holds the bulk area */
        atomic_store(&bulk_of(w, w->me)->filled, 0);
        atomic_store(&bulk_of(w, w->me)->taken, 0);
        w->bulk_slot = q->slot;
        q->moved = 0;
        atomic_store_explicit(&r->state, MP__RDV(q->gen, MP__RDV_PUSHING), memory_order_release);
        return push(w, q);
    case MP__RDV_PUSHING:
        return push(w, q);
    default:
        return MP_EPROTO;
    }
}

/* One step of pipelined receive q.  Returns 1 when it finished, 0 while it
 * goes on, or an error. */
static int pipe_step(lworld *w, lreq *q)
{
    int src = q->st.source;
    mp__lrdv *r = rdv_of(w, src, (uint32_t)q->slot);
    uint32_t s = atomic_load_explicit(&r->state, memory_order_acquire);
    if (s == MP__RDV(q->gen, MP__RDV_PIPE))
        return 0;
    if (s != MP__RDV(q->gen, MP__RDV_PUSHING))
        return MP_EPROTO;
    mp__lbulk *b = bulk_of(w, src);
    const unsigned char *data = bulk_data(w, src);
    uint64_t filled = atomic_load_explicit(&b->filled, memory_order_acquire);
    if (filled > q->st.count || filled < q->moved || filled - q->moved > MP__L_BULK)
        return MP_EPROTO;
    if (filled == q->moved)
        return 0;
    while (q->moved < filled) {
        uint64_t pos = q->moved % MP__L_BULK, k = filled - q->moved;
        if (k > MP__L_BULK - pos)
            k = MP__L_BULK - pos;
        memcpy((char *)q->rbuf + q->moved, data + pos, (size_t)k);
        q->moved += k;
    }
    atomic_store_explicit(&b->taken, q->moved, memory_order_release);
    if (q->moved == q->st.count) {
        atomic_store_explicit(&r->state, MP__RDV(q->gen, MP__RDV_DONE), memory_order_release);
        finish(w, q, 0);
    }
    mp__lw_notify(w, src);
    return q->phase == PH_DONE;
}

/* One step of receive q while its sender copies the rest of the message
 * (PH_HELP_IN).  Returns 1 when it finished, 0 while it goes on. */
static int help_step(lworld *w, lreq *q)
{
    int src = q->st.source;
    mp__lrdv *r = rdv_of(w, src, (uint32_t)q->slot);
    uint32_t h = atomic_load_explicit(&r->help.state, memory_order_acquire);
    if (h == MP__HELP_TAKEN)
        return 0;
    int rc = q->rc;
    if (h == MP__HELP_FAILED && rc == 0) {
        rc = rdv_read_rest(w, src, r, q->rbuf, q->moved, q->st.count);
    } else if (h != MP__HELP_DONE && h != MP__HELP_FAILED) {
        rc = MP_EPROTO;
    }
    rdv_end(w, q, src, r, rc);
    return 1;
}

/* ---- progress ---------------------------------------------------------------------- */

/* One pass over everything pending: queued sends, rendezvous in both
 * directions, and the rings that posted receives (or with all, anyone)
 * may want.  Returns 0 or the first error met (the request it concerned
 * is finished with it). */
static int progress(lworld *w, bool all)
{
    int err = 0;
    for (int p = 0; w->nsendq && p < w->n; p++) {
        lpeer *pe = &w->peers[p];
        while (pe->sendq.head) {
            lreq *q = pe->sendq.head;
            int rc = send_step(w, q);
            if (rc == 0)
                break;
            if (rc < 0)
                finish(w, q, err = rc);
        }
    }
    for (lreq *q = w->rdv_out.head, *next; q; q = next) {
        next = q->next;
        int rc = rdv_send_step(w, q);
        if (rc < 0)
            finish(w, q, err = rc);
    }
    for (lreq *q = w->rdv_in.head, *next; q; q = next) {
        next = q->next;
        int rc = q->phase == PH_HELP_IN ? help_step(w, q) : pipe_step(w, q);
        if (rc < 0)
            finish(w, q, err = rc);
    }
    if (!all && !w->posted.head)
        return err;
    for (int p = 0; p < w->n; p++) {
        if (all || w->posted_any || w->peers[p].posted_from) {
            int rc = drain(w, p, all);
            if (rc < 0)
                err = rc;
        }
    }
    return err;
}

/* Withdraws q if nothing has matched it yet, finishing it with rc.
 * Returns true when q is finished (now or before). */
static bool withdraw(lworld *w, lreq *q, int rc)
{
    if (q->phase == PH_DONE)
        return true;
    if (q->phase == PH_QUEUED || q->phase == PH_NEW) {
        finish(w, q, rc);
        return true;
    }
    if (q->phase == PH_RDV) {
        mp__lrdv *r = rdv_of(w, w->me, (uint32_t)q->slot);
        uint32_t expect = MP__RDV(q->gen, MP__RDV_POSTED);
        if (atomic_compare_exchange_strong(&r->state, &expect,
                                           MP__RDV(q->gen, MP__RDV_CANCELLED))) {
            slot_free(w, q->slot);
            finish(w, q, rc);
            return true;
        }
    }
    return false;
}

/* Ends q because its peer is gone or the world broke.  A slot a dead
 * receiver had claimed is never reused; a sender still copying into a
 * receive's buffer is let finish first. */
static void abandon(lworld *w, lreq *q, int rc)
{
    if (q->phase == PH_HELP_IN)
        (void)mp__lh_settle(w, &rdv_of(w, q->st.source, (uint32_t)q->slot)->help, q->st.source);
    if (!withdraw(w, q, rc))
        finish(w, q, rc);
}

static bool done(const lreq *q)
{
    return !q || q->phase == PH_DONE;
}

/* Runs passes until q1 and q2 (may be NULL) are done.  Called and returns
 * with the lock held.  Returns q1's outcome, else q2's. */
static int run(lworld *w, lcomm *c, lreq *q1, lreq *q2, int64_t deadline)
{
    lwait wt = LWAIT_INIT(deadline);
    /* Collective traffic stops when the communicator's collectives break. */
    const lcomm *health = q1->tag < MP_ANY_TAG ? c : NULL;
    for (;;) {
        bool sending =
            (q1->kind == RQ_SEND && !done(q1)) || (q2 && q2->kind == RQ_SEND && !done(q2));
        int rc = progress(w, sending);
        if (done(q1) && done(q2))
            break;
        const lreq *waiting = done(q1) ? q2 : q1;
        unlock(w);
        if (rc == 0)
            rc = mp__lw_pause(w, &wt, health, waiting->peer < 0 ? LW_ANY : waiting->peer);
        lock(w);
        if (rc == MP_ETIMEDOUT) {
            /* Withdraw what nothing matched; what a receiver has claimed
             * runs to its end. */
            bool w1 = withdraw(w, q1, rc), w2 = !q2 || withdraw(w, q2, rc);
            if (w1 && w2)
                break;
            wt.deadline = MP__NO_DEADLINE;
        } else if (rc < 0) {
            abandon(w, q1, rc);
            if (q2)
                abandon(w, q2, rc);
            break;
        }
    }
    mp__lw_end(w, &wt);
    return q1->rc < 0 ? q1->rc : q2 ? q2->rc : 0;
}

/* ---- finishing futures ---------------------------------------------------------------- */

/* Finishes the futures of requests that finished, outside the lock. */
static void run_finished(lworld *w)
{
    lock(w);
    lreq *q = w->finished.head;
    w->finished.head = w->finished.tail = NULL;
    unlock(w);
    while (q) {
        lreq *next = q->next;
        void *res = NULL;
        size_t len = 0;
        int rc = q->rc;
        if (q->kind == RQ_RECV && rc == 0) {
            mp_comm_status *st = malloc(sizeof *st);
            if (st) {
                *st = q->st;
                st->source = q->comm->inv[q->st.source];
                res = st;
                len = sizeof *st;
            } else {
                rc = MP_ENOMEM; /* the bytes are in place; what came is lost */
            }
        }
        mp__future_finish(q->fut, rc, res, len, 0, 0, NULL, -1);
        mp__lc_unref(q->comm);
        free(q);
        q = next;
    }
}

/* ---- blocking calls ------------------------------------------------------------------ */

/* A blocking send that waits its turn: behind other sends to the peer,
 * too long for the ring, or the ring full.  Called with the lock held. */
static MP__COLD int send_queued(lcomm *c, const void *buf, size_t len, int wd, int tag,
                                int64_t deadline)
{
    lworld *w = c->w;
    lreq q = {
        .kind = RQ_SEND, .comm = c, .ctx = c->ctx, .peer = wd, .tag = tag, .sbuf = buf, .len = len};
    sendq_add(w, &q);
    int rc = run(w, c, &q, NULL, deadline);
    unlock(w);
    run_finished(w);
    return rc;
}

int mp__lp_send(lcomm *c, const void *buf, size_t len, int dest, int tag, int64_t deadline)
{
    lworld *w = c->w;
    if (broken(w))
        return MP_EPEERDEAD;
    int wd = c->group[dest];
    lock(w);
    if (!w->peers[wd].sendq.head && len <= w->lay.eager) {
        int rc = ring_put(w, wd, MP__REC_EAGER, c->ctx, tag, buf, len);
        if (rc != 0) {
            unlock(w);
            return rc < 0 ? rc : 0;
        }
    }
    return send_queued(c, buf, len, wd, tag, deadline);
}

static void status_out(const lcomm *c, const lreq *q, mp_comm_status *st)
{
    if (st) {
        *st = q->st;
        st->source = c->inv[q->st.source];
    }
}

/* Whether a message waiting in unex would answer a receive of tag from
 * world rank src on ctx. */
static bool unex_has(const lworld *w, uint32_t ctx, int src, int tag)
{
    const lreq q = {.ctx = ctx, .peer = src, .tag = tag};
    for (const lmsg *m = w->unex.head; m; m = m->next)
        if (matches(&q, m->ctx, m->src, m->tag))
            return true;
    return false;
}

/* A blocking receive from a known source when nothing else could claim
 * that source's next message first (no receive posted before it, nothing
 * unexpected that it would take, no other thread): it waits on the line
 * where that ring's next record starts - one line, not every ring - and
 * takes the message from there.  Returns 1 when it received, 0 to send the
 * call down the general path (what came is not for it: another tag or
 * communicator, a rendezvous, too long), or an error of the wait. */
static inline int recv_direct(lcomm *c, void *buf, size_t cap, int src, int tag, mp_comm_status *st,
                              int64_t deadline)
{
    lworld *w = c->w;
    if (w->threaded || w->posted.head || src < 0)
        return 0;
    int wsrc = c->group[src];
    if (w->unex.head && unex_has(w, c->ctx, wsrc, tag))
        return 0;
    /* Collective traffic stops when the communicator's collectives break. */
    const lcomm *health = tag < MP_ANY_TAG ? c : NULL;
    lwait wt = LWAIT_INIT(deadline);
    mp__lrec rec;
    int rc;
    while ((rc = ring_peek(w, wsrc, &rec)) == 0) {
        rc = mp__lw_pause(w, &wt, health, wsrc);
        if (rc < 0)
            break;
    }
    mp__lw_end(w, &wt);
    if (rc != 1)
        return rc;
    if (rec.kind != MP__REC_EAGER || rec.ctx != c->ctx || rec.len > cap ||
        (tag == MP_ANY_TAG ? rec.tag < 0 : rec.tag != tag))
        return 0;
    ring_read(w, w->peers[wsrc].in_data, w->peers[wsrc].in_head + sizeof rec, buf, rec.len);
    ring_pop(w, wsrc, &rec);
    if (st)
        *st = (mp_comm_status){src, rec.tag, rec.len};
    return 1;
}

/* A blocking receive through the posted list: what recv_direct cannot
 * take from one ring. */
static MP__COLD int recv_posted(lcomm *c, void *buf, size_t cap, int src, int tag,
                                mp_comm_status *st, int64_t deadline)
{
    lworld *w = c->w;
    lreq q = {.kind = RQ_RECV,
              .comm = c,
              .ctx = c->ctx,
              .peer = src < 0 ? -1 : c->group[src],
              .tag = tag,
              .rbuf = buf,
              .len = cap};
    lock(w);
    int rc = post_recv(w, &q);
    if (rc == 0)
        rc = q.phase == PH_DONE ? q.rc : run(w, c, &q, NULL, deadline);
    unlock(w);
    run_finished(w);
    if (rc == 0 || rc == MP_EMSGSIZE)
        status_out(c, &q, st);
    return rc;
}

int mp__lp_recv(lcomm *c, void *buf, size_t cap, int src, int tag, mp_comm_status *st,
                int64_t deadline)
{
    if (broken(c->w))
        return MP_EPEERDEAD;
    int rc = recv_direct(c, buf, cap, src, tag, st, deadline);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    return recv_posted(c, buf, cap, src, tag, st, deadline);
}

int mp__lp_sendrecv(lcomm *c, const void *sbuf, size_t slen, int dest, int stag, void *rbuf,
                    size_t rcap, int src, int rtag, mp_comm_status *st, int64_t deadline)
{
    lworld *w = c->w;
    if (broken(w))
        return MP_EPEERDEAD;
    lreq rq = {.kind = RQ_RECV,
               .comm = c,
               .ctx = c->ctx,
               .peer = src < 0 ? -1 : c->group[src],
               .tag = rtag,
               .rbuf = rbuf,
               .len = rcap};
    lreq sq = {.kind = RQ_SEND,
               .comm = c,
               .ctx = c->ctx,
               .peer = c->group[dest],
               .tag = stag,
               .sbuf = sbuf,
               .len = slen};
    lock(w);
    /* The receive first, so that a peer's large message to us is taken
     * while our own send waits for that peer. */
    int rc = post_recv(w, &rq);
    if (rc == 0) {
        sendq_add(w, &sq);
        rc = run(w, c, &sq, &rq, deadline);
    }
    unlock(w);
    run_finished(w);
    if (rq.phase == PH_DONE && (rq.rc == 0 || rq.rc == MP_EMSGSIZE))
        status_out(c, &rq, st);
    return rc;
}

/* Whether the sender still offers the rendezvous an unexpected request
 * names. */
static bool rts_offered(lworld *w, const lmsg *m)
{
    if (m->slot >= MP__L_RDV_SLOTS)
        return false;
    uint32_t s = atomic_load_explicit(&rdv_of(w, m->src, m->slot)->state, memory_order_acquire);
    return s == MP__RDV(m->gen, MP__RDV_POSTED);
}

/* The first message in unex that a receive like q would take.  Requests
 * for rendezvous their senders took back are dropped on the way: those
 * messages never were. */
static const lmsg *find_unex(lworld *w, const lreq *q)
{
    for (lmsg *m = w->unex.head, *next; m; m = next) {
        next = m->next;
        if (!matches(q, m->ctx, m->src, m->tag))
            continue;
        if (m->kind == MP__REC_RTS && !rts_offered(w, m)) {
            msg_remove(&w->unex, m);
            free(m);
            continue;
        }
        return m;
    }
    return NULL;
}

int mp__lp_probe(lcomm *c, int src, int tag, mp_comm_status *st, int64_t deadline)
{
    lworld *w = c->w;
    if (broken(w))
        return MP_EPEERDEAD;
    lreq q = {.kind = RQ_RECV, .ctx = c->ctx, .peer = src < 0 ? -1 : c->group[src], .tag = tag};
    lwait wt = LWAIT_INIT(deadline);
    int rc;
    lock(w);
    for (;;) {
        rc = progress(w, false);
        for (int p = 0; rc == 0 && p < w->n; p++)
            if (q.peer < 0 || q.peer == p)
                rc = drain(w, p, true);
        const lmsg *m = find_unex(w, &q);
        if (m) {
            if (st)
                *st = (mp_comm_status){c->inv[m->src], m->tag, (size_t)m->len};
            rc = 0;
            break;
        }
        unlock(w);
        if (rc == 0)
            rc = mp__lw_pause(w, &wt, NULL, q.peer < 0 ? LW_ANY : q.peer);
        lock(w);
        if (rc < 0)
            break;
    }
    mp__lw_end(w, &wt);
    unlock(w);
    run_finished(w);
    return rc;
}

/* ---- non-blocking calls and the progress thread -------------------------------------- */

static void *progress_main(void *arg);

static int ensure_thread(lworld *w)
{
    if (w->threaded) {
        atomic_fetch_add(&w->kick, 1);
        (void)mp__futex_wake(&w->kick, 1);
        return 0;
    }
    /* The thread takes the lock before touching anything, and this thread
     * takes it from now on: no call is in the engine meanwhile (one
     * thread at a time, by the API's contract). */
    w->threaded = true;
    /* Signals stay with the program's own threads. */
    sigset_t old;
    mp__signals_block_all(&old);
    int rc = pthread_create(&w->thread, NULL, progress_main, w);
    mp__signals_restore(&old);
    if (rc != 0) {
        w->threaded = false;
        return -rc;
    }
    return 0;
}

/* Fails every pending request with rc (the world broke, or it closes). */
static void fail_all(lworld *w, int rc)
{
    lreq_list *lists[] = {&w->posted, &w->rdv_out, &w->rdv_in};
    for (size_t i = 0; i < MP__ARRAY_SIZE(lists); i++)
        while (lists[i]->head)
            abandon(w, lists[i]->head, rc);
    for (int p = 0; p < w->n; p++)
        while (w->peers[p].sendq.head)
            abandon(w, w->peers[p].sendq.head, rc);
}

static bool peer_gone(const lworld *w, int r)
{
    return r >= 0 && atomic_load(&w->ranks[r].state) >= MP__LR_DONE;
}

/* Fails the requests whose peer has ended, once its ring holds nothing
 * more for them (it may have sent just before it ended). */
static void expire(lworld *w)
{
    lreq_list *lists[] = {&w->posted, &w->rdv_out, &w->rdv_in};
    for (size_t i = 0; i < MP__ARRAY_SIZE(lists); i++) {
        for (lreq *q = lists[i]->head, *next; q; q = next) {
            next = q->next;
            if (!peer_gone(w, q->peer))
                continue;
            if (q->phase == PH_QUEUED)
                (void)drain(w, q->peer, false);
            if (q->phase != PH_DONE)
                abandon(w, q, MP_EPEERDEAD);
            next = lists[i]->head; /* the lists may have changed */
            if (next == q)
                break;
        }
    }
    for (int p = 0; p < w->n; p++)
        while (peer_gone(w, p) && w->peers[p].sendq.head)
            abandon(w, w->peers[p].sendq.head, MP_EPEERDEAD);
}

static void *progress_main(void *arg)
{
    lworld *w = arg;
    lwait wt = LWAIT_INIT(MP__NO_DEADLINE);
    while (!atomic_load(&w->stop)) {
        uint32_t kick = atomic_load(&w->kick);
        lock(w);
        int before = w->npending;
        int rc = progress(w, false);
        if (rc == 0 && w->npending)
            rc = mp__lw_health(w, NULL, LW_ANY);
        if (rc < 0)
            fail_all(w, rc);
        else if (w->npending && wt.sleeping)
            expire(w);
        int pending = w->npending;
        unlock(w);
        run_finished(w);
        if (pending != before || pending == 0) {
            mp__lw_end(w, &wt);
            wt = (lwait)LWAIT_INIT(MP__NO_DEADLINE);
        }
        if (pending == 0)
            (void)mp__futex_wait(&w->kick, kick, MP__NO_DEADLINE);
        else if (mp__lw_pause(w, &wt, NULL, LW_ANY) < 0)
            wt.gone = false; /* the next pass fails what pends */
    }
    mp__lw_end(w, &wt);
    return NULL;
}

static void fut_hold(void *owner)
{
    mp__lw_ref(owner);
}

static void fut_release(void *owner)
{
    mp__lw_unref(owner);
}

/* The pending request of future f, or NULL (finished, or being so). */
static lreq *find_async(lworld *w, const mp_future *f)
{
    if (w->closed)
        return NULL;
    lreq_list *lists[] = {&w->posted, &w->rdv_out, &w->rdv_in};
    for (size_t i = 0; i < MP__ARRAY_SIZE(lists); i++)
        for (lreq *q = lists[i]->head; q; q = q->next)
            if (q->fut == f)
                return q;
    for (int p = 0; p < w->n; p++)
        for (lreq *q = w->peers[p].sendq.head; q; q = q->next)
            if (q->fut == f)
                return q;
    return NULL;
}

static int fut_cancel(void *owner, mp_future *f)
{
    lworld *w = owner;
    lock(w);
    lreq *q = find_async(w, f);
    int rc = q && withdraw(w, q, MP_ECANCELED) ? 0 : MP_EBUSY;
    unlock(w);
    run_finished(w);
    return rc;
}

static bool fut_running(void *owner, const mp_future *f)
{
    lworld *w = owner;
    lock(w);
    const lreq *q = find_async(w, f);
    bool r = q && (q->phase == PH_RDV || q->phase == PH_PIPE_IN || q->phase == PH_HELP_IN);
    unlock(w);
    return r;
}

static void fut_interrupt(void *owner)
{
    /* A Ctrl-C ends the wait; the transfers themselves go on. */
    (void)owner;
}

static const mp__future_ops fut_ops = {fut_hold,    fut_release,   fut_cancel,
                                       fut_running, fut_interrupt, NULL};

/* A request with a future, for the non-blocking calls; it counts as
 * pending from here on. */
static lreq *async_new(lworld *w, lcomm *c)
{
    lreq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->fut = mp__future_new(&fut_ops, w);
    if (!q->fut) {
        free(q);
        return NULL;
    }
    q->async = true;
    q->comm = c;
    q->ctx = c->ctx;
    mp__lc_ref(c);
    w->npending++;
    return q;
}

/* Runs a first pass for new request q, and starts the thread if q is
 * still pending.  Called with the lock held; returns without it. */
static int async_start(lworld *w, lreq *q, mp_future **out)
{
    mp_future *f = q->fut;
    (void)progress(w, false);
    bool pending = q->phase != PH_DONE;
    unlock(w);
    if (pending) {
        /* ensure_thread fails only when no thread ran before, so nothing
         * else can have touched q meanwhile. */
        int rc = ensure_thread(w);
        if (rc < 0) {
            lock(w);
            finish(w, q, rc);
            unlock(w);
        }
    }
    run_finished(w);
    *out = f;
    return 0;
}

int mp__lp_isend(lcomm *c, const void *buf, size_t len, int dest, int tag, mp_future **out)
{
    lworld *w = c->w;
    if (broken(w))
        return MP_EPEERDEAD;
    int wd = c->group[dest];
    lock(w);
    if (!w->peers[wd].sendq.head && len <= w->lay.eager) {
        /* Born finished (status 0) when the message fits the ring now. */
        mp_future *f = mp__future_new_failed(0, NULL);
        int rc = f ? ring_put(w, wd, MP__REC_EAGER, c->ctx, tag, buf, len) : MP_ENOMEM;
        if (rc != 0) {
            unlock(w);
            if (rc < 0) {
                mp_future_free(f);
                return rc;
            }
            *out = f;
            return 0;
        }
        mp_future_free(f);
    }
    lreq *q = async_new(w, c);
    if (!q) {
        unlock(w);
        return MP_ENOMEM;
    }
    q->kind = RQ_SEND;
    q->peer = wd;
    q->tag = tag;
    q->sbuf = buf;
    q->len = len;
    sendq_add(w, q);
    return async_start(w, q, out);
}

int mp__lp_irecv(lcomm *c, void *buf, size_t cap, int src, int tag, mp_future **out)
{
    lworld *w = c->w;
    if (broken(w))
        return MP_EPEERDEAD;
    lock(w);
    lreq *q = async_new(w, c);
    if (!q) {
        unlock(w);
        return MP_ENOMEM;
    }
    q->kind = RQ_RECV;
    q->peer = src < 0 ? -1 : c->group[src];
    q->tag = tag;
    q->rbuf = buf;
    q->len = cap;
    int rc = post_recv(w, q);
    if (rc < 0)
        finish(w, q, rc);
    return async_start(w, q, out);
}

/* ---- set-up and tear-down ----------------------------------------------------------- */

int mp__lp_init(lworld *w)
{
    int rc = pthread_mutex_init(&w->lock, NULL);
    if (rc != 0)
        return -rc;
    w->rdv_free = ~(uint64_t)0;
    w->bulk_slot = -1;
    const char *env = getenv("MPROC_COMM_CMA");
    w->cma = cma_default && !(env && strcmp(env, "0") == 0);
    return 0;
}

void mp__lp_fini(lworld *w)
{
    mp__lp_tell_all(w);
    if (w->threaded) {
        atomic_store(&w->stop, true);
        atomic_fetch_add(&w->kick, 1);
        (void)mp__futex_wake(&w->kick, 1);
        mp__lrank *rk = &w->ranks[w->me];
        atomic_fetch_add(&rk->bell, 1);
        (void)mp__futex_wake(&rk->bell, INT32_MAX);
        pthread_join(w->thread, NULL);
    }
    /* The lock stays in use: a future may still be cancelled from another
     * thread, and finds nothing once closed. */
    lock(w);
    fail_all(w, MP_ECLOSED);
    w->closed = true;
    for (lmsg *m = w->unex.head, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    w->unex.head = w->unex.tail = NULL;
    unlock(w);
    run_finished(w);
}
