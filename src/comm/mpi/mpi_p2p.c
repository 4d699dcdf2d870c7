/*
 * mpi_p2p.c - point to point on Open MPI: send, recv, sendrecv, probe,
 * and isend/irecv completing mp_futures.
 *
 * DESIGN
 * A receive never hands MPI a buffer that may be too short: MPI_Recv
 * alone would truncate a longer message and lose the rest, where mproc
 * returns MP_EMSGSIZE and keeps the message first in line (as the local
 * engine does).  Without a deadline a receive is MPI_Mprobe, which takes
 * the message out of MPI's matching, then MPI_Mrecv of exactly that
 * message: one matching pass.  A message longer than the buffer is then
 * *held*: kept, matched, in the communicator's held list, which every
 * later receive, probe and irecv on the communicator looks at before MPI.
 * A held message from a source came before anything MPI still has from
 * it, so looking there first keeps MPI's order.  With a deadline a
 * receive polls with MPI_Iprobe (which takes nothing, so a timeout leaves
 * nothing behind) and then receives exactly the message probed (its
 * source and tag), with the lock held from one to the other: nothing can
 * take it in between, since a receive posted earlier (irecv) would have
 * matched it when it arrived.  irecv is MPI_Irecv itself, whose message MPI
 * matches on arrival: a longer one fails the future with MP_EMSGSIZE and
 * is lost (see docs/comm.md).
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

static void status_of(const MPI_Status *ms, bool lib, size_t count, mp_comm_status *st)
{
    if (!st)
        return;
    st->source = ms->MPI_SOURCE;
    st->tag = lib ? -ms->MPI_TAG : ms->MPI_TAG;
    st->count = count;
}

/* ---- blocking calls -------------------------------------------------------------------- */

/* Starts a send of buf; with a deadline, of a copy (in *copy). */
static int isend_start(MPI_Comm comm, const void *buf, size_t len, int dest, int mtag,
                       int64_t deadline, MPI_Request *rq, void **copy)
{
    *copy = NULL;
    if (deadline != MP__NO_DEADLINE && len) {
        *copy = malloc(len);
        if (!*copy)
            return MP_ENOMEM;
        memcpy(*copy, buf, len);
        buf = *copy;
    }
    int rc = mpe_err(MPI_Isend(buf, (int)len, MPI_BYTE, dest, mtag, comm, rq));
    if (rc < 0) {
        free(*copy);
        *copy = NULL;
    }
    return rc;
}

/* Waits for a send isend_start began; on a timeout it stays in flight. */
static int isend_finish(MPI_Request *rq, void *copy, int64_t deadline)
{
    int rc = mpe_wait(rq, MPI_STATUS_IGNORE, deadline, NULL);
    if (rc == MP_ETIMEDOUT)
        mpe_orphan(*rq, copy);
    else
        free(copy);
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
        rc = mpe_err(MPI_Send(buf, (int)len, MPI_BYTE, dest, mtag, comm));
    } else {
        MPI_Request rq;
        void *copy;
        rc = isend_start(comm, buf, len, dest, mtag, deadline, &rq, &copy);
        if (rc == 0)
            rc = isend_finish(&rq, copy, deadline);
    }
    /* copy is freed, or owned by an orphan request (isend_finish). */
    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
    mpe_leave(locked);
    return rc;
}

/* Waits for a message (src, tag) on comm.  Lock held; returns with it. */
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
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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

/* ---- held messages -------------------------------------------------------------------- */

/* The first held message of c that a receive of (src, mtag) on comm
 * matches, as the link that points to it, or NULL. */
static mheld **held_find(mcomm *m, MPI_Comm comm, int src, int mtag)
{
    for (mheld **link = &m->held; *link; link = &(*link)->next) {
        const mheld *h = *link;
        if (h->comm == comm && (src == MPI_ANY_SOURCE || h->st.MPI_SOURCE == src) &&
            (mtag == MPI_ANY_TAG || h->st.MPI_TAG == mtag))
            return link;
    }
    return NULL;
}

/* Keeps a matched message nobody could take (longer than the buffer) at
 * the end of c's held list, in the record mpe.spare. */
static void held_add(mcomm *m, MPI_Comm comm, MPI_Message msg, const MPI_Status *ms, int count)
{
    mheld *h = mpe.spare, **link = &m->held;
    mpe.spare = NULL;
    *h = (mheld){.msg = msg, .comm = comm, .st = *ms, .count = count};
    while (*link)
        link = &(*link)->next;
    *link = h;
}

/* A held message into buf (cap bytes), or MP_EMSGSIZE with it kept. */
static int held_recv(mheld **link, bool lib, void *buf, size_t cap, mp_comm_status *st)
{
    mheld *h = *link;
    status_of(&h->st, lib, (size_t)h->count, st);
    if ((size_t)h->count > cap)
        return MP_EMSGSIZE;
    *link = h->next;
    int rc = mpe_err(MPI_Mrecv(buf, h->count, MPI_BYTE, &h->msg, MPI_STATUS_IGNORE));
    free(h);
    return rc;
}

void mpe_held_drop(mcomm *m)
{
    while (m->held) {
        mheld *h = m->held;
        m->held = h->next;
        void *scratch = h->count ? malloc((size_t)h->count) : NULL;
        /* Without memory, a receive of 0 bytes still takes the message
         * (MPI reports the truncation). */
        MPI_Mrecv(scratch, scratch ? h->count : 0, MPI_BYTE, &h->msg, MPI_STATUS_IGNORE);
        free(scratch);
        free(h);
    }
}

/* A blocking receive without a deadline: MPI_Mprobe, which takes the
 * message out of MPI's matching, then MPI_Mrecv of exactly it - one
 * matching pass.  One longer than the buffer is held (see DESIGN). */
static int recv_matched(mcomm *m, MPI_Comm comm, bool lib, void *buf, size_t cap, int src, int mtag,
                        mp_comm_status *st)
{
    if (!mpe.spare && !(mpe.spare = malloc(sizeof *mpe.spare)))
        return MP_ENOMEM; /* nothing taken yet */
    MPI_Message msg;
    MPI_Status ms;
    int count = 0;
    int rc = mpe_err(MPI_Mprobe(src, mtag, comm, &msg, &ms));
    if (rc < 0)
        return rc;
    MPI_Get_count(&ms, MPI_BYTE, &count);
    status_of(&ms, lib, (size_t)count, st);
    if ((size_t)count > cap) {
        held_add(m, comm, msg, &ms, count);
        return MP_EMSGSIZE;
    }
    return mpe_err(MPI_Mrecv(buf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE));
}

/* Receives under the lock (see DESIGN). */
static int recv_locked(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_comm_status *st,
                       int64_t deadline)
{
    int mtag, count = 0;
    MPI_Comm comm = mpe_comm_of(c, tag, &mtag);
    mcomm *m = c->impl;
    bool lib = tag < MP_ANY_TAG;
    src = src < 0 ? MPI_ANY_SOURCE : src;
    mheld **held = m->held ? held_find(m, comm, src, mtag) : NULL;
    if (held)
        return held_recv(held, lib, buf, cap, st);
    if (deadline == MP__NO_DEADLINE)
        return recv_matched(m, comm, lib, buf, cap, src, mtag, st);
    MPI_Status ms;
    int rc = probe_wait(comm, src, mtag, &ms, deadline);
    if (rc < 0)
        return rc;
    MPI_Get_count(&ms, MPI_BYTE, &count);
    status_of(&ms, lib, (size_t)count, st);
    if ((size_t)count > cap)
        return MP_EMSGSIZE;
    return mpe_err(
        MPI_Recv(buf, count, MPI_BYTE, ms.MPI_SOURCE, ms.MPI_TAG, comm, MPI_STATUS_IGNORE));
}

int mpe_recv(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_comm_status *st,
             int64_t deadline)
{
    if (cap > (size_t)INT_MAX)
        cap = (size_t)INT_MAX; /* no MPI message is longer */
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
    if (rcap > (size_t)INT_MAX)
        rcap = (size_t)INT_MAX;
    MPI_Comm comm = mpe_comm_of(c, stag, &mtag);
    MPI_Request rq;
    void *copy;
    pthread_mutex_lock(&mpe.lock);
    rc = isend_start(comm, sbuf, slen, dest, mtag, deadline, &rq, &copy);
    if (rc == 0) {
        rc = recv_locked(c, rbuf, rcap, src, rtag, st, deadline);
        int src_rc = isend_finish(&rq, copy, deadline);
        if (rc == 0)
            rc = src_rc;
    }
    /* copy is freed, or owned by an orphan request (isend_finish). */
    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
    pthread_mutex_unlock(&mpe.lock);
    return rc;
}

int mpe_probe(mp_comm *c, int src, int tag, mp_comm_status *st, int64_t deadline)
{
    int mtag, count = 0;
    MPI_Comm comm = mpe_comm_of(c, tag, &mtag);
    mcomm *m = c->impl;
    MPI_Status ms;
    src = src < 0 ? MPI_ANY_SOURCE : src;
    bool locked = mpe_enter(deadline);
    mheld **held = m->held ? held_find(m, comm, src, mtag) : NULL;
    int rc = 0;
    if (held)
        ms = (*held)->st;
    else
        rc = probe_wait(comm, src, mtag, &ms, deadline);
    mpe_leave(locked);
    if (rc < 0)
        return rc;
    MPI_Get_count(&ms, MPI_BYTE, &count);
    status_of(&ms, tag < MP_ANY_TAG, (size_t)count, st);
    return 0;
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

/* Withdraws a receive nobody matched (MPI_Cancel works on receives); a
 * send cannot be withdrawn. */
static int fut_cancel(void *owner, mp_future *f)
{
    (void)owner;
    pthread_mutex_lock(&mpe.lock);
    mreq **link = &mpe.pending;
    while (*link && (*link)->fut != f)
        link = &(*link)->next;
    mreq *r = *link;
    if (!r || !r->recv) {
        pthread_mutex_unlock(&mpe.lock);
        return MP_EBUSY;
    }
    *link = r->next;
    MPI_Status ms;
    int cancelled = 0;
    MPI_Cancel(&r->rq);
    int rc = mpe_err(MPI_Wait(&r->rq, &ms));
    MPI_Test_cancelled(&ms, &cancelled);
    pthread_mutex_unlock(&mpe.lock);
    if (cancelled)
        rc = MP_ECANCELED;
    mpe_req_done(r, &ms, rc);
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

void mpe_req_done(mreq *r, const MPI_Status *st, int rc)
{
    if (r->fut) {
        mp_comm_status *res = NULL;
        size_t len = 0;
        if (r->recv && rc == 0) {
            int count = 0;
            MPI_Get_count(st, MPI_BYTE, &count);
            res = malloc(sizeof *res);
            if (res) {
                status_of(st, r->lib_tag, (size_t)count, res);
                len = sizeof *res;
            } else {
                rc = MP_ENOMEM;
            }
        }
        mpe.host->future_finish(r->fut, rc, res, len, 0, 0, NULL, -1);
    }
    free(r->owned);
    free(r);
}

/* Tries rq once; a finished one makes a future born finished, a pending
 * one a request the progress thread finishes.  Lock held. */
static int async_start(MPI_Request rq, bool recv, bool lib, mp_future **out)
{
    int flag = 0;
    MPI_Status ms;
    int rc = mpe_err(MPI_Test(&rq, &flag, &ms));
    mreq *r = calloc(1, sizeof *r);
    mp_future *f = r ? mpe.host->future_new(&mpe_future_ops, NULL) : NULL;
    if (!f) {
        free(r);
        mpe_orphan(rq, NULL);
        return MP_ENOMEM;
    }
    *r = (mreq){.rq = rq, .fut = f, .recv = recv, .lib_tag = lib};
    if (flag || rc < 0) {
        pthread_mutex_unlock(&mpe.lock);
        mpe_req_done(r, &ms, rc);
        pthread_mutex_lock(&mpe.lock);
    } else if (mpe_pending_add(r) < 0) {
        /* No thread to finish it: wait here (the request is started). */
        rc = mpe_err(MPI_Wait(&r->rq, &ms));
        pthread_mutex_unlock(&mpe.lock);
        mpe_req_done(r, &ms, rc);
        pthread_mutex_lock(&mpe.lock);
    }
    *out = f;
    return 0;
}

int mpe_isend(mp_comm *c, const void *buf, size_t len, int dest, int tag, mp_future **out)
{
    int mtag, rc = fits_int(len);
    if (rc == 0)
        rc = check_tag(tag);
    if (rc < 0)
        return rc;
    MPI_Comm comm = mpe_comm_of(c, tag, &mtag);
    MPI_Request rq;
    pthread_mutex_lock(&mpe.lock);
    rc = mpe_err(MPI_Isend(buf, (int)len, MPI_BYTE, dest, mtag, comm, &rq));
    if (rc == 0)
        rc = async_start(rq, false, false, out);
    pthread_mutex_unlock(&mpe.lock);
    return rc;
}

int mpe_irecv(mp_comm *c, void *buf, size_t cap, int src, int tag, mp_future **out)
{
    int mtag;
    if (cap > (size_t)INT_MAX)
        cap = (size_t)INT_MAX;
    MPI_Comm comm = mpe_comm_of(c, tag, &mtag);
    mcomm *m = c->impl;
    MPI_Request rq;
    src = src < 0 ? MPI_ANY_SOURCE : src;
    pthread_mutex_lock(&mpe.lock);
    int rc;
    /* A held message comes first; one still too long fails the future
     * and stays held. */
    mheld **link = m->held ? held_find(m, comm, src, mtag) : NULL;
    mheld *h = link ? *link : NULL;
    if (h && (size_t)h->count > cap) {
        *out = mpe.host->future_new_failed(MP_EMSGSIZE, NULL);
        rc = *out ? 0 : MP_ENOMEM;
    } else if (h) {
        rc = mpe_err(MPI_Imrecv(buf, h->count, MPI_BYTE, &h->msg, &rq));
        if (rc == 0) {
            *link = h->next;
            free(h);
            rc = async_start(rq, true, tag < MP_ANY_TAG, out);
        }
    } else {
        rc = mpe_err(MPI_Irecv(buf, (int)cap, MPI_BYTE, src, mtag, comm, &rq));
        if (rc == 0)
            rc = async_start(rq, true, tag < MP_ANY_TAG, out);
    }
    pthread_mutex_unlock(&mpe.lock);
    return rc;
}
