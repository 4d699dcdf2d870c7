/*
 * mpi_p2p.c - point to point on Open MPI: send, recv, sendrecv, probe,
 * and isend/irecv completing mp_futures.
 *
 * DESIGN
 * Receives are posted before their message comes, as a plain MPI_Recv
 * is: MPI then matches the message on arrival and copies it straight
 * into the buffer.  Probing first (MPI_Mprobe, then MPI_Mrecv) would make
 * every message an unexpected one - copied into a fragment of MPI's own,
 * matched a second time, copied out - at half the ping-pong's speed.  But
 * a receive posted with a buffer shorter than its message truncates it
 * and loses the rest, where mproc returns MP_EMSGSIZE and keeps the
 * message first in line.  So no message longer than MPE_HEAD bytes ever
 * travels on a tag a receive may match: a longer one is a head and a body
 * (mpi_int.h, "Messages"), and a receive posts MPE_HEAD bytes - into the
 * caller's buffer when it has room for them, else into a bounce buffer
 * and copied (a buffer that short only takes messages that short).  A
 * head whose message fits is followed at once by a receive of its body
 * (by source and its own tag) after the head's bytes.
 *
 * Held messages.  A message a receive took from MPI but could not hand
 * over - longer than the buffer (a short one whole, a long one as its head
 * with its body left in MPI), or a body that did not come before the
 * deadline - is *held*: kept in the communicator's held list, which every
 * later receive, probe and irecv on the communicator looks at before MPI.
 * A held message from a source came before anything MPI still has from
 * it, so looking there first keeps MPI's order.
 *
 * Deadlines.  A receive with one is MPI_Irecv, tested until it completes
 * or the deadline passes; then MPI_Cancel withdraws it (MPI can cancel a
 * receive nothing matched yet, and one that matched meanwhile is simply
 * received).  A probe polls MPI_Iprobe, which takes nothing.
 *
 * A send with a deadline sends a copy: MPI cannot cancel a send (Open
 * MPI's ob1 ignores MPI_Cancel on one), so a send that times out stays in
 * flight and is delivered if the receiver ever asks for it; the copy lets
 * the caller reuse its buffer all the same.  A send without a deadline is
 * MPI_Send on the caller's buffer.
 */
#define _GNU_SOURCE
#include "mpi_int.h"

static int fits_int(size_t n)
{
    return n <= (size_t)INT_MAX ? 0 : MP_EOVERFLOW;
}

static int check_tag(int tag)
{
    return tag > mpe.tag_ub ? MP_EINVAL : 0;
}

static void status_set(int source, int mtag, bool lib, size_t len, mp_comm_status *st)
{
    if (!st)
        return;
    st->source = source;
    st->tag = lib ? -mtag : mtag;
    st->count = len;
}

/* The bytes a receive of MPI_BYTE took.  Open MPI keeps them in the
 * status it hands back (its public _ucount field), where MPI_Get_count
 * would cost a call, its argument checks and a division: a few percent of
 * a small message's hop. */
static int bytes_of(const MPI_Status *ms)
{
#if defined(OPEN_MPI) && OPEN_MPI
    return ms->_ucount <= (size_t)INT_MAX ? (int)ms->_ucount : MPI_UNDEFINED;
#else
    int count = 0;
    return MPI_Get_count(ms, MPI_BYTE, &count) == MPI_SUCCESS ? count : MPI_UNDEFINED;
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- sends ---------------------------------------------------------------------------- */

/* The head of a message longer than MPE_SMALL, to dest, into head: its
 * first bytes and the trailer naming its body's tag. */
static void head_make(mcomm *m, const void *buf, size_t len, int dest, unsigned char *head)
{
    int32_t span = mpe.tag_ub - MPE_TAG_BODY + 1;
    mtrail t = {.len = len,
                .btag = MPE_TAG_BODY + (int32_t)(m->seq[dest]++ % (uint32_t)span),
                .magic = MPE_TRAIL_MAG};
    memcpy(head, buf, MPE_HEAD_DATA);
    memcpy(head + MPE_HEAD_DATA, &t, sizeof t);
}

static int32_t head_btag(const unsigned char *head)
{
    mtrail t;
    memcpy(&t, head + MPE_HEAD_DATA, sizeof t);
    return t.btag;
}

/* A send in flight: one or two requests, each with what it owns. */
typedef struct msend {
    MPI_Request rq[2];
    void *owned[2];
} msend;

/* Starts a send of buf: rq[0] its only message, or its head and rq[1]
 * its body.  copy: send copies (a deadline may leave them in flight). */
static int send_start(mp_comm *c, MPI_Comm comm, const void *buf, size_t len, int dest, int mtag,
                      bool copy, msend *s)
{
    mcomm *m = c->impl;
    *s = (msend){{MPI_REQUEST_NULL, MPI_REQUEST_NULL}, {NULL, NULL}};
    const void *first = buf;
    int n0 = (int)len;
    if (len > MPE_SMALL) {
        unsigned char *head = malloc(MPE_HEAD);
        if (!head)
            return MP_ENOMEM;
        head_make(m, buf, len, dest, head);
        s->owned[0] = head;
        first = head;
        n0 = MPE_HEAD;
    } else if (copy && len) {
        s->owned[0] = malloc(len);
        if (!s->owned[0])
            return MP_ENOMEM;
        first = memcpy(s->owned[0], buf, len);
    }
    /* What first and body point to is owned by s (freed by send_finish,
     * or by the orphan a timeout leaves). */
    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
    int rc = mpe_err(MPI_Isend(first, n0, MPI_BYTE, dest, mtag, comm, &s->rq[0]));
    if (rc == 0 && len > MPE_SMALL) {
        const unsigned char *body = (const unsigned char *)buf + MPE_HEAD_DATA;
        size_t blen = len - MPE_HEAD_DATA;
        if (copy && !(s->owned[1] = malloc(blen))) {
            rc = MP_ENOMEM;
        } else {
            if (copy)
                body = memcpy(s->owned[1], body, blen);
            // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
            rc = mpe_err(MPI_Isend(body, (int)blen, MPI_BYTE, dest, head_btag(s->owned[0]), m->lib,
                                   &s->rq[1]));
        }
    }
    if (rc < 0) {
        /* A head already sent cannot be taken back: MPI finishes it. */
        if (s->rq[0] != MPI_REQUEST_NULL)
            mpe_orphan(s->rq[0], s->owned[0]);
        else
            free(s->owned[0]);
        free(s->owned[1]);
    }
    return rc;
}

/* Waits for a send send_start began; what times out stays in flight. */
static int send_finish(msend *s, int64_t deadline)
{
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (s->rq[i] == MPI_REQUEST_NULL) {
            free(s->owned[i]);
            continue;
        }
        int one = rc == 0 ? mpe_wait(&s->rq[i], MPI_STATUS_IGNORE, deadline, NULL) : rc;
        if (one == MP_ETIMEDOUT)
            mpe_orphan(s->rq[i], s->owned[i]);
        else
            free(s->owned[i]);
        if (rc == 0)
            rc = one;
    }
    return rc;
}

/* A send without a deadline: MPI_Send of the message, or of its head and
 * its body. */
static int send_now(mp_comm *c, MPI_Comm comm, const void *buf, size_t len, int dest, int mtag)
{
    if (len <= MPE_SMALL)
        return mpe_err(MPI_Send(buf, (int)len, MPI_BYTE, dest, mtag, comm));
    mcomm *m = c->impl;
    unsigned char head[MPE_HEAD];
    head_make(m, buf, len, dest, head);
    int rc = mpe_err(MPI_Send(head, MPE_HEAD, MPI_BYTE, dest, mtag, comm));
    if (rc == 0)
        rc = mpe_err(MPI_Send((const unsigned char *)buf + MPE_HEAD_DATA,
                              (int)(len - MPE_HEAD_DATA), MPI_BYTE, dest, head_btag(head), m->lib));
    return rc;
}

int mpe_send(mp_comm *c, const void *buf, size_t len, int dest, int tag, int64_t deadline)
{
    int mtag, rc = fits_int(len);
    if (rc == 0)
        rc = check_tag(tag);
    if (rc < 0)
        return rc;
    MPI_Comm comm = mpe_comm_of(c, tag, &mtag);
    bool locked = mpe_enter(deadline);
    if (deadline == MP__NO_DEADLINE) {
        rc = send_now(c, comm, buf, len, dest, mtag);
    } else {
        msend s;
        rc = send_start(c, comm, buf, len, dest, mtag, true, &s);
        if (rc == 0)
            rc = send_finish(&s, deadline);
    }
    mpe_leave(locked);
    return rc;
}

/* ---- held messages -------------------------------------------------------------------- */

/* The first held message of c that a receive of (src, mtag) on comm
 * matches, as the link that points to it, or NULL. */
static mheld **held_find(mcomm *m, MPI_Comm comm, int src, int mtag)
{
    for (mheld **link = &m->held; *link; link = &(*link)->next) {
        const mheld *h = *link;
        if (h->comm == comm && (src == MPI_ANY_SOURCE || h->source == src) &&
            (mtag == MPI_ANY_TAG || h->tag == mtag))
            return link;
    }
    return NULL;
}

/* Holds a message taken from MPI at the end of m's held list: ndata
 * bytes of data, and (btag >= 0) a body still in MPI.  Without memory the
 * message is lost: MP_ENOMEM. */
static int held_add(mcomm *m, MPI_Comm comm, int source, int tag, size_t len, int btag,
                    const void *data, size_t ndata)
{
    mheld *h = malloc(sizeof *h + ndata), **link = &m->held;
    if (!h)
        return MP_ENOMEM;
    *h = (mheld){
        .comm = comm, .source = source, .tag = tag, .len = len, .btag = btag, .ndata = ndata};
    memcpy(h->data, data, ndata);
    while (*link)
        link = &(*link)->next;
    *link = h;
    return 0;
}

/* A body that will never be received: taken from MPI and dropped, by
 * the progress thread (its sender may still be sending it). */
static void body_drop(MPI_Comm lib, int source, int btag, size_t blen)
{
    void *scratch = blen ? malloc(blen) : NULL;
    MPI_Request rq;
    /* Without memory, a receive of 0 bytes still takes it (MPI reports
     * the truncation). */
    if (MPI_Irecv(scratch, scratch ? (int)blen : 0, MPI_BYTE, source, btag, lib, &rq) ==
        MPI_SUCCESS)
        mpe_orphan(rq, scratch);
    else
        free(scratch);
}

void mpe_held_drop(mcomm *m)
{
    while (m->held) {
        mheld *h = m->held;
        m->held = h->next;
        if (h->btag >= 0)
            body_drop(m->lib, h->source, h->btag, h->len - MPE_HEAD_DATA);
        free(h);
    }
}

/* ---- receives --------------------------------------------------------------------------- */

/* Receives into buf (n bytes) from (src, mtag) on comm: MPI_Recv, or
 * with a deadline MPI_Irecv tested until then and withdrawn after.
 * Lock held for a deadline.  Returns 0, MP_ETIMEDOUT (nothing taken) or
 * an error. */
static int recv_one(void *buf, int n, int src, int mtag, MPI_Comm comm, MPI_Status *ms,
                    int64_t deadline)
{
    if (deadline == MP__NO_DEADLINE)
        return mpe_err(MPI_Recv(buf, n, MPI_BYTE, src, mtag, comm, ms));
    MPI_Request rq;
    int rc = mpe_err(MPI_Irecv(buf, n, MPI_BYTE, src, mtag, comm, &rq));
    if (rc == 0)
        rc = mpe_wait(&rq, ms, deadline, NULL);
    if (rc != MP_ETIMEDOUT)
        return rc;
    int cancelled = 0;
    MPI_Cancel(&rq);
    rc = mpe_err(MPI_Wait(&rq, ms));
    MPI_Test_cancelled(ms, &cancelled);
    return cancelled ? MP_ETIMEDOUT : rc;
}

/* The length a head announces (mpi_int.h), or 0 when it is no head. */
static size_t head_len(const unsigned char *head, int *btag)
{
    mtrail t;
    memcpy(&t, head + MPE_HEAD_DATA, sizeof t);
    if (t.magic != MPE_TRAIL_MAG || t.len <= MPE_SMALL ||
        t.len - MPE_HEAD_DATA > (uint64_t)INT_MAX || t.btag < MPE_TAG_BODY || t.btag > mpe.tag_ub)
        return 0;
    *btag = t.btag;
    return (size_t)t.len;
}

/* Receives the body of a message of len bytes, after the head's data
 * already in buf.  MP_ETIMEDOUT: nothing taken, the caller holds it. */
static int body_recv(mcomm *m, int source, unsigned char *buf, size_t len, int btag,
                     int64_t deadline)
{
    MPI_Status bs;
    int blen = (int)(len - MPE_HEAD_DATA);
    int rc = recv_one(buf + MPE_HEAD_DATA, blen, source, btag, m->lib, &bs, deadline);
    if (rc == 0 && bytes_of(&bs) != blen)
        rc = MP_EPROTO;
    return rc;
}

/* A held message into buf (cap bytes), or MP_EMSGSIZE with it kept (or
 * MP_ETIMEDOUT, kept in its place: its body did not come in time). */
static int held_recv(mcomm *m, mheld **link, bool lib, void *buf, size_t cap, mp_comm_status *st,
                     int64_t deadline)
{
    mheld *h = *link;
    status_set(h->source, h->tag, lib, h->len, st);
    if (h->len > cap)
        return MP_EMSGSIZE;
    memcpy(buf, h->data, h->ndata);
    int rc = h->btag >= 0 ? body_recv(m, h->source, buf, h->len, h->btag, deadline) : 0;
    if (rc == MP_ETIMEDOUT)
        return rc;
    *link = h->next;
    free(h);
    return rc;
}

/* Receives a message posted first (see DESIGN).  Lock held for a
 * deadline. */
static int recv_posted(mcomm *m, MPI_Comm comm, bool lib, void *buf, size_t cap, int src, int mtag,
                       mp_comm_status *st, int64_t deadline)
{
    unsigned char bounce[MPE_HEAD];
    unsigned char *into = cap >= MPE_HEAD ? buf : bounce;
    MPI_Status ms = {0};
    int count = 0, btag = -1;
    int rc = recv_one(into, MPE_HEAD, src, mtag, comm, &ms, deadline);
    if (rc < 0)
        return rc == MP_EMSGSIZE ? MP_EPROTO : rc; /* a message over MPE_HEAD */
    count = bytes_of(&ms);
    if (count < 0)
        return MP_EPROTO;
    size_t len = count < MPE_HEAD ? (size_t)count : head_len(into, &btag);
    if (len == 0 && count == MPE_HEAD)
        return MP_EPROTO;
    status_set(ms.MPI_SOURCE, ms.MPI_TAG, lib, len, st);
    if (len > cap) {
        int held = held_add(m, comm, ms.MPI_SOURCE, ms.MPI_TAG, len, btag, into,
                            btag < 0 ? len : MPE_HEAD_DATA);
        return held < 0 ? held : MP_EMSGSIZE;
    }
    if (btag < 0) {
        if (into != buf)
            memcpy(buf, into, len);
        return 0;
    }
    /* A message this long fits only a buffer that took its head. */
    rc = body_recv(m, ms.MPI_SOURCE, buf, len, btag, deadline);
    if (rc == MP_ETIMEDOUT) {
        int held = held_add(m, comm, ms.MPI_SOURCE, ms.MPI_TAG, len, btag, buf, MPE_HEAD_DATA);
        rc = held < 0 ? held : rc;
    }
    return rc;
}

static int recv_locked(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_comm_status *st,
                       int64_t deadline)
{
    int mtag;
    MPI_Comm comm = mpe_comm_of(c, tag, &mtag);
    mcomm *m = c->impl;
    bool lib = tag < MP_ANY_TAG;
    src = src < 0 ? MPI_ANY_SOURCE : src;
    mheld **held = m->held ? held_find(m, comm, src, mtag) : NULL;
    if (held)
        return held_recv(m, held, lib, buf, cap, st, deadline);
    return recv_posted(m, comm, lib, buf, cap, src, mtag, st, deadline);
}

int mpe_recv(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_comm_status *st,
             int64_t deadline)
{
    if (cap > (size_t)INT_MAX + MPE_HEAD_DATA)
        cap = (size_t)INT_MAX + MPE_HEAD_DATA; /* no message is longer */
    bool locked = mpe_enter(deadline);
    int rc = recv_locked(c, buf, cap, src, tag, st, deadline);
    mpe_leave(locked);
    return rc;
}

int mpe_sendrecv(mp_comm *c, const void *sbuf, size_t slen, int dest, int stag, void *rbuf,
                 size_t rcap, int src, int rtag, mp_comm_status *st, int64_t deadline)
{
    int mtag, rc = fits_int(slen);
    if (rc == 0)
        rc = check_tag(stag);
    if (rc < 0)
        return rc;
    if (rcap > (size_t)INT_MAX + MPE_HEAD_DATA)
        rcap = (size_t)INT_MAX + MPE_HEAD_DATA;
    MPI_Comm comm = mpe_comm_of(c, stag, &mtag);
    msend s;
    pthread_mutex_lock(&mpe.lock);
    rc = send_start(c, comm, sbuf, slen, dest, mtag, deadline != MP__NO_DEADLINE, &s);
    if (rc == 0) {
        rc = recv_locked(c, rbuf, rcap, src, rtag, st, deadline);
        int src_rc = send_finish(&s, deadline);
        if (rc == 0)
            rc = src_rc;
    }
    pthread_mutex_unlock(&mpe.lock);
    return rc;
}

/* Waits for a message (src, tag) on comm without taking it.  Lock held
 * for a deadline. */
static int probe_wait(MPI_Comm comm, int src, int mtag, MPI_Status *ms, int64_t deadline)
{
    if (deadline == MP__NO_DEADLINE)
        return mpe_err(MPI_Probe(src, mtag, comm, ms));
    int64_t start = 0;
    for (unsigned tries = 0;; tries++) {
        int flag = 0;
        int rc = MPI_Iprobe(src, mtag, comm, &flag, ms);
        if (rc != MPI_SUCCESS)
            return mpe_err(rc);
        if (flag)
            return 0;
        int64_t now = now_ns();
        if (now >= deadline)
            return MP_ETIMEDOUT;
        if (!start)
            start = now;
        pthread_mutex_unlock(&mpe.lock);
        if (tries >= 64) {
            /* Yield at first, then sleep 50 us: as mpe_wait does. */
            struct timespec nap = {0, now - start < 2000000 ? 0 : 50000};
            if (nap.tv_nsec)
                nanosleep(&nap, NULL);
            else
                sched_yield();
        }
        pthread_mutex_lock(&mpe.lock);
    }
}

/* A probe that found a head: takes it (the exact message probed: nothing
 * else can match it first, see mpe_probe) and holds it, to learn the
 * message's length. */
static int probe_head(mcomm *m, MPI_Comm comm, MPI_Status *ms, size_t *len)
{
    unsigned char head[MPE_HEAD];
    int btag = -1;
    int rc = mpe_err(
        MPI_Recv(head, MPE_HEAD, MPI_BYTE, ms->MPI_SOURCE, ms->MPI_TAG, comm, MPI_STATUS_IGNORE));
    if (rc < 0)
        return rc;
    *len = head_len(head, &btag);
    if (!*len)
        return MP_EPROTO;
    return held_add(m, comm, ms->MPI_SOURCE, ms->MPI_TAG, *len, btag, head, MPE_HEAD_DATA);
}

int mpe_probe(mp_comm *c, int src, int tag, mp_comm_status *st, int64_t deadline)
{
    int mtag, count = 0;
    MPI_Comm comm = mpe_comm_of(c, tag, &mtag);
    mcomm *m = c->impl;
    MPI_Status ms;
    size_t len = 0;
    src = src < 0 ? MPI_ANY_SOURCE : src;
    bool locked = mpe_enter(deadline);
    mheld **held = m->held ? held_find(m, comm, src, mtag) : NULL;
    int rc = 0;
    if (held) {
        status_set((*held)->source, (*held)->tag, tag < MP_ANY_TAG, (*held)->len, st);
    } else {
        /* From the probe to the receive of a head the lock is held (or
         * this is the only thread): no receive can take the message in
         * between, and one posted earlier would have matched it. */
        rc = probe_wait(comm, src, mtag, &ms, deadline);
        if (rc == 0)
            MPI_Get_count(&ms, MPI_BYTE, &count);
        len = (size_t)count;
        if (rc == 0 && count >= MPE_HEAD)
            rc = probe_head(m, comm, &ms, &len);
        if (rc == 0)
            status_set(ms.MPI_SOURCE, ms.MPI_TAG, tag < MP_ANY_TAG, len, st);
    }
    mpe_leave(locked);
    return rc;
}

/* ---- requests with futures ------------------------------------------------------------ */

static void fut_hold(void *owner)
{
    (void)owner; /* the engine's state lives as long as the process */
}

static void fut_release(void *owner)
{
    (void)owner;
}

/* Withdraws a receive nothing matched yet (MPI_Cancel works on receives;
 * a body is on its way once its head came); a send cannot be withdrawn. */
static int fut_cancel(void *owner, mp_future *f)
{
    (void)owner;
    pthread_mutex_lock(&mpe.lock);
    mreq **link = &mpe.pending;
    while (*link && (*link)->fut != f)
        link = &(*link)->next;
    mreq *r = *link;
    if (!r || !r->recv || r->stage != MPE_R_HEAD) {
        pthread_mutex_unlock(&mpe.lock);
        return MP_EBUSY;
    }
    *link = r->next;
    MPI_Status ms;
    int cancelled = 0;
    MPI_Cancel(&r->rq);
    int rc = mpe_err(MPI_Wait(&r->rq, &ms));
    MPI_Test_cancelled(&ms, &cancelled);
    bool done = true;
    if (cancelled)
        rc = MP_ECANCELED;
    else if (!mpe_recv_step(r, &ms, &rc))
        done = mpe_pending_add(r) < 0; /* its body comes: it goes on */
    if (!done) {
        pthread_mutex_unlock(&mpe.lock);
        return MP_EBUSY;
    }
    if (rc == 0 && r->stage == MPE_R_BODY) /* no thread: receive the body here */
        rc = mpe_err(MPI_Wait(&r->rq, MPI_STATUS_IGNORE));
    pthread_mutex_unlock(&mpe.lock);
    mpe_req_done(r, rc);
    return cancelled ? 0 : MP_EBUSY;
}

static bool fut_running(void *owner, const mp_future *f)
{
    (void)owner;
    (void)f;
    return false;
}

static void fut_interrupt(void *owner)
{
    (void)owner; /* a Ctrl-C ends the wait; MPI's transfer goes on */
}

const mp__future_ops mpe_future_ops = {fut_hold,    fut_release,   fut_cancel,
                                       fut_running, fut_interrupt, NULL};

/* A head a receive request got: the whole message's length, and its body
 * posted into the buffer (or, too long for it, dropped).  Lock held. */
static bool recv_head(mreq *r, int *rc)
{
    int btag = -1;
    const unsigned char *head = r->bounce ? r->bounce : r->buf;
    r->len = head_len(head, &btag);
    if (!r->len) {
        *rc = MP_EPROTO;
        return true;
    }
    size_t blen = r->len - MPE_HEAD_DATA;
    if (r->len > r->cap) {
        /* An irecv's message too long for it is lost (docs/comm.md). */
        body_drop(r->lib, r->source, btag, blen);
        *rc = MP_EMSGSIZE;
        return true;
    }
    r->stage = MPE_R_BODY;
    *rc = mpe_err(
        MPI_Irecv(r->buf + MPE_HEAD_DATA, (int)blen, MPI_BYTE, r->source, btag, r->lib, &r->rq));
    return *rc < 0;
}

bool mpe_recv_step(mreq *r, const MPI_Status *st, int *rc)
{
    int count = 0;
    if (*rc < 0)
        return true;
    MPI_Get_count(st, MPI_BYTE, &count);
    if (r->stage == MPE_R_BODY) {
        if ((size_t)count != r->len - MPE_HEAD_DATA)
            *rc = MP_EPROTO;
        return true;
    }
    r->source = st->MPI_SOURCE;
    r->tag = st->MPI_TAG;
    if (count >= MPE_HEAD)
        return recv_head(r, rc);
    r->len = (size_t)count;
    if (r->len > r->cap)
        *rc = MP_EMSGSIZE; /* lost, as a longer one is */
    else if (r->bounce)
        memcpy(r->buf, r->bounce, r->len);
    return true;
}

void mpe_req_done(mreq *r, int rc)
{
    if (r->fut) {
        mp_comm_status *res = NULL;
        size_t len = 0;
        if (r->recv && rc == 0) {
            res = malloc(sizeof *res);
            if (res) {
                status_set(r->source, r->tag, r->lib_tag, r->len, res);
                len = sizeof *res;
            } else {
                rc = MP_ENOMEM;
            }
        }
        mpe.host->future_finish(r->fut, rc, res, len, 0, 0, NULL, -1);
    }
    free(r->bounce);
    free(r->owned);
    free(r);
}

/* Makes r's future and tries r's request once: a finished one makes a
 * future born finished, a pending one a request the progress thread
 * finishes.  Lock held.  On failure r is freed (its request left to
 * MPI). */
static int async_start(mreq *r, mp_future **out)
{
    mp_future *f = mpe.host->future_new(&mpe_future_ops, NULL);
    if (!f) {
        mpe_orphan(r->rq, r->bounce);
        r->bounce = NULL;
        free(r->owned);
        free(r);
        return MP_ENOMEM;
    }
    r->fut = f;
    *out = f;
    for (;;) {
        int flag = 0;
        MPI_Status ms;
        int rc = mpe_err(MPI_Test(&r->rq, &flag, &ms));
        if (!flag && rc == 0) {
            if (mpe_pending_add(r) == 0)
                return 0;
            /* No thread to finish it: wait here (the request is started). */
            rc = mpe_err(MPI_Wait(&r->rq, &ms));
        }
        if (r->recv && !mpe_recv_step(r, &ms, &rc))
            continue; /* a body to receive next */
        pthread_mutex_unlock(&mpe.lock);
        mpe_req_done(r, rc);
        pthread_mutex_lock(&mpe.lock);
        return 0;
    }
}

int mpe_isend(mp_comm *c, const void *buf, size_t len, int dest, int tag, mp_future **out)
{
    int mtag, rc = fits_int(len);
    if (rc == 0)
        rc = check_tag(tag);
    if (rc < 0)
        return rc;
    MPI_Comm comm = mpe_comm_of(c, tag, &mtag);
    mreq *r = calloc(1, sizeof *r);
    if (!r)
        return MP_ENOMEM;
    msend s;
    pthread_mutex_lock(&mpe.lock);
    rc = send_start(c, comm, buf, len, dest, mtag, false, &s);
    if (rc == 0) {
        /* The future follows the message, or its body; a head is the
         * engine's own copy, finished on its own. */
        int last = s.rq[1] != MPI_REQUEST_NULL, flag = 0;
        if (last && MPI_Test(&s.rq[0], &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag)
            free(s.owned[0]);
        else if (last)
            mpe_orphan(s.rq[0], s.owned[0]);
        r->rq = s.rq[last];
        rc = async_start(r, out);
        r = NULL;
    }
    pthread_mutex_unlock(&mpe.lock);
    free(r);
    return rc;
}

/* An irecv of a held message: born finished when it is whole, else with
 * its body's receive started. */
static int irecv_held(mcomm *m, mheld **link, mreq *r, mp_future **out)
{
    mheld *h = *link;
    if (h->len > r->cap) {
        /* Still too long: the future fails and the message stays held. */
        free(r);
        *out = mpe.host->future_new_failed(MP_EMSGSIZE, NULL);
        return *out ? 0 : MP_ENOMEM;
    }
    r->fut = mpe.host->future_new(&mpe_future_ops, NULL);
    if (!r->fut) {
        free(r);
        return MP_ENOMEM;
    }
    *out = r->fut;
    *link = h->next;
    memcpy(r->buf, h->data, h->ndata);
    r->source = h->source;
    r->tag = h->tag;
    r->len = h->len;
    int rc = 0;
    if (h->btag >= 0) {
        r->stage = MPE_R_BODY;
        rc = mpe_err(MPI_Irecv(r->buf + MPE_HEAD_DATA, (int)(h->len - MPE_HEAD_DATA), MPI_BYTE,
                               h->source, h->btag, m->lib, &r->rq));
        if (rc == 0 && mpe_pending_add(r) == 0) {
            free(h);
            return 0;
        }
        if (rc == 0) /* no thread to finish it: wait here */
            rc = mpe_err(MPI_Wait(&r->rq, MPI_STATUS_IGNORE));
    }
    free(h);
    pthread_mutex_unlock(&mpe.lock);
    mpe_req_done(r, rc);
    pthread_mutex_lock(&mpe.lock);
    return 0;
}

int mpe_irecv(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_future **out)
{
    int mtag;
    if (cap > (size_t)INT_MAX + MPE_HEAD_DATA)
        cap = (size_t)INT_MAX + MPE_HEAD_DATA;
    MPI_Comm comm = mpe_comm_of(c, tag, &mtag);
    mcomm *m = c->impl;
    src = src < 0 ? MPI_ANY_SOURCE : src;
    mreq *r = calloc(1, sizeof *r);
    if (!r)
        return MP_ENOMEM;
    *r = (mreq){.recv = true,
                .lib_tag = tag < MP_ANY_TAG,
                .buf = buf,
                .cap = cap,
                .lib = m->lib,
                .stage = MPE_R_HEAD};
    pthread_mutex_lock(&mpe.lock);
    int rc;
    mheld **link = m->held ? held_find(m, comm, src, mtag) : NULL;
    if (link) {
        rc = irecv_held(m, link, r, out);
    } else {
        if (cap < MPE_HEAD && !(r->bounce = malloc(MPE_HEAD)))
            rc = MP_ENOMEM;
        else
            rc = mpe_err(MPI_Irecv(r->bounce ? r->bounce : r->buf, MPE_HEAD, MPI_BYTE, src, mtag,
                                   comm, &r->rq));
        if (rc == 0) {
            rc = async_start(r, out);
        } else {
            free(r->bounce);
            free(r);
        }
    }
    pthread_mutex_unlock(&mpe.lock);
    return rc;
}
