/*
 * mpi_world.c - the Open MPI engine: its entry point and table, joining
 * and leaving the world, communicators, types, waiting with a deadline,
 * and the progress thread that finishes the futures of isend and irecv.
 * (The lock, the two ways to wait and the communicators: mpi_int.h.)
 *
 * DESIGN
 * The progress thread exists only once a request has not finished at
 * once.  It tests every pending request under the lock, finishes the
 * futures of the completed ones outside it, and sleeps on a condition
 * variable while nothing is pending.  While requests pend it tests them
 * in a loop that backs off (yields, then sleeps 50 us): MPI gives no
 * descriptor to sleep on, and a thread that spun here would take a CPU
 * from the ranks of an oversubscribed machine.
 */
#define _GNU_SOURCE
#include "mpi_int.h"

#include <sched.h>
#include <time.h>

mpe_state mpe = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* ---- errors and types -------------------------------------------------------------- */

int mpe_err(int mpi_rc)
{
    if (mpi_rc == MPI_SUCCESS)
        return 0;
    int cls = MPI_ERR_OTHER;
    MPI_Error_class(mpi_rc, &cls);
    switch (cls) {
    case MPI_ERR_TRUNCATE:
        return MP_EMSGSIZE;
    case MPI_ERR_NO_MEM:
        return MP_ENOMEM;
    case MPI_ERR_TAG:
    case MPI_ERR_COUNT:
    case MPI_ERR_RANK:
    case MPI_ERR_ARG:
        return MP_EINVAL;
    default:
        return MP_EIO;
    }
}

MPI_Datatype mpe_type(mp_type t)
{
    switch (t) {
    case MP_TYPE_b:
        return MPI_SIGNED_CHAR;
    case MP_TYPE_B:
        return MPI_UNSIGNED_CHAR;
    case MP_TYPE_h:
        return MPI_SHORT;
    case MP_TYPE_H:
        return MPI_UNSIGNED_SHORT;
    case MP_TYPE_i:
        return MPI_INT;
    case MP_TYPE_I:
        return MPI_UNSIGNED;
    case MP_TYPE_l:
        return MPI_LONG;
    case MP_TYPE_L:
        return MPI_UNSIGNED_LONG;
    case MP_TYPE_q:
        return MPI_LONG_LONG;
    case MP_TYPE_Q:
        return MPI_UNSIGNED_LONG_LONG;
    case MP_TYPE_f:
        return MPI_FLOAT;
    case MP_TYPE_d:
        return MPI_DOUBLE;
    case MP_TYPE_c:
        /* MPI_CHAR is for text and takes no arithmetic; char is reduced as
         * the signed or unsigned char it is. */
        return CHAR_MIN < 0 ? MPI_SIGNED_CHAR : MPI_UNSIGNED_CHAR;
    case MP_TYPE_FLOAT_INT:
        return MPI_FLOAT_INT;
    case MP_TYPE_DOUBLE_INT:
        return MPI_DOUBLE_INT;
    case MP_TYPE_LONG_INT:
        return MPI_LONG_INT;
    case MP_TYPE_2INT:
        return MPI_2INT;
    case MP_TYPE_SHORT_INT:
        return MPI_SHORT_INT;
    }
    return MPI_DATATYPE_NULL;
}

mp_type mpe_type_back(MPI_Datatype dt)
{
    static const mp_type all[] = {
        MP_TYPE_b,    MP_TYPE_B,        MP_TYPE_h,         MP_TYPE_H,          MP_TYPE_i,
        MP_TYPE_I,    MP_TYPE_l,        MP_TYPE_L,         MP_TYPE_q,          MP_TYPE_Q,
        MP_TYPE_f,    MP_TYPE_d,        MP_TYPE_FLOAT_INT, MP_TYPE_DOUBLE_INT, MP_TYPE_LONG_INT,
        MP_TYPE_2INT, MP_TYPE_SHORT_INT};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (mpe_type(all[i]) == dt)
            return all[i];
    return MP_TYPE_B;
}

/* ---- waiting ------------------------------------------------------------------------ */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One pause between tries: nothing at first (MPI completes most requests
 * within microseconds), then a yield, then 50 us of sleep once the wait
 * has lasted 2 ms, so that a long wait costs its CPU little. */
static void backoff(unsigned tries, int64_t start)
{
    if (tries < 64)
        return;
    if (now_ns() - start < 2000000) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
}

bool mpe_abandon_seen(mp_comm *c)
{
    mcomm *m = c->impl;
    int flag = 0;
    MPI_Status st;
    if (!m->abandoned &&
        MPI_Iprobe(MPI_ANY_SOURCE, MPE_TAG_ABANDON, m->lib, &flag, &st) == MPI_SUCCESS && flag)
        m->abandoned = true;
    return m->abandoned;
}

int mpe_wait(MPI_Request *rq, MPI_Status *st, int64_t deadline, mp_comm *abandon_of)
{
    int64_t start = now_ns();
    for (unsigned tries = 0;; tries++) {
        int flag = 0;
        int rc = MPI_Test(rq, &flag, st);
        if (rc != MPI_SUCCESS)
            return mpe_err(rc);
        if (flag)
            return 0;
        if (abandon_of && (tries & 15) == 0 && mpe_abandon_seen(abandon_of))
            return MP_EABANDONED;
        if (deadline != MP__NO_DEADLINE && now_ns() >= deadline)
            return MP_ETIMEDOUT;
        pthread_mutex_unlock(&mpe.lock);
        backoff(tries, start);
        pthread_mutex_lock(&mpe.lock);
    }
}

/* ---- the progress thread ----------------------------------------------------------- */

/* Tests every pending request once; moves the completed ones to *done
 * with their outcome (a receive whose head came goes on to its body).
 * Lock held. */
static void progress_pass(mreq **done, int *rcs, int *ndone, int cap)
{
    mreq **link = &mpe.pending;
    while (*link && *ndone < cap) {
        mreq *r = *link;
        int flag = 0;
        MPI_Status st;
        int rc = MPI_Test(&r->rq, &flag, &st);
        if (!flag && rc == MPI_SUCCESS) {
            link = &r->next;
            continue;
        }
        rc = mpe_err(rc);
        if (r->recv && !mpe_recv_step(r, &st, &rc)) {
            link = &r->next; /* its body is on its way */
            continue;
        }
        *link = r->next;
        done[*ndone] = r;
        rcs[*ndone] = rc;
        (*ndone)++;
    }
}

static void *progress_main(void *arg)
{
    (void)arg;
    enum { BATCH = 64 };
    mreq *done[BATCH];
    int rcs[BATCH];
    unsigned idle = 0;
    int64_t since = now_ns();
    pthread_mutex_lock(&mpe.lock);
    while (!mpe.stop) {
        if (!mpe.pending) {
            pthread_cond_wait(&mpe.wake, &mpe.lock);
            idle = 0;
            since = now_ns();
            continue;
        }
        int n = 0;
        progress_pass(done, rcs, &n, BATCH);
        pthread_mutex_unlock(&mpe.lock);
        for (int i = 0; i < n; i++)
            mpe_req_done(done[i], rcs[i]);
        if (n) {
            idle = 0;
            since = now_ns();
        } else {
            backoff(idle++, since);
        }
        pthread_mutex_lock(&mpe.lock);
    }
    pthread_mutex_unlock(&mpe.lock);
    return NULL;
}

int mpe_pending_add(mreq *r)
{
    if (!mpe.thread_on) {
        /* Locking first: the thread calls MPI as soon as it runs. */
        atomic_store_explicit(&mpe.locking, true, memory_order_release);
        int rc = pthread_create(&mpe.thread, NULL, progress_main, NULL);
        if (rc != 0)
            return -rc;
        mpe.thread_on = true;
    }
    r->next = mpe.pending;
    mpe.pending = r;
    pthread_cond_signal(&mpe.wake);
    return 0;
}

void mpe_orphan(MPI_Request rq, void *owned)
{
    mreq *r = calloc(1, sizeof *r);
    if (r) {
        r->rq = rq;
        r->owned = owned;
        if (mpe_pending_add(r) == 0)
            return; // NOLINT(clang-analyzer-unix.Malloc): r is on mpe.pending now
        free(r);
    }
    /* No memory to track it: MPI finishes it on its own; what it owns is
     * left to the end of the program. */
    if (rq != MPI_REQUEST_NULL)
        MPI_Request_free(&rq);
}

/* ---- communicators -------------------------------------------------------------------- */

/* One MPI communicator over the members of group, from parent: created
 * with MPI_Comm_create_group, not MPI_Comm_dup or MPI_Comm_split (see
 * "Communicators" in mpi_int.h).  Collective over the group's members. */
static int twin(MPI_Comm parent, MPI_Group group, int tag, MPI_Comm *out)
{
    int rc = MPI_Comm_create_group(parent, group, tag, out);
    if (rc == MPI_SUCCESS)
        MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN);
    return rc;
}

/* Frees one of a communicator's MPI communicators (MPI_COMM_WORLD is
 * MPI's own). */
static void comm_drop(MPI_Comm *mc)
{
    if (*mc != MPI_COMM_WORLD)
        MPI_Comm_free(mc);
}

/* A new communicator's engine part: the members of group, agreed on
 * parent (group MPI_GROUP_EMPTY, or one this rank is not in: none); user,
 * when not MPI_COMM_NULL, is its user communicator, else one is made. */
static int mcomm_make(MPI_Comm parent, MPI_Group group, MPI_Comm user, mp_comm *out)
{
    int me = MPI_UNDEFINED;
    out->impl = NULL;
    if (group != MPI_GROUP_EMPTY)
        MPI_Group_rank(group, &me);
    if (me == MPI_UNDEFINED)
        return 0;
    mcomm *m = calloc(1, sizeof *m);
    if (!m)
        return MP_ENOMEM;
    /* lib first, so that user is made over lib: parent only ever carries
     * the library's own tags, never a receive of any tag. */
    m->user = user;
    int rc = twin(parent, group, MPE_TAG_CREATE, &m->lib);
    if (rc == MPI_SUCCESS && user == MPI_COMM_NULL) {
        rc = twin(m->lib, group, MPE_TAG_CREATE, &m->user);
        if (rc != MPI_SUCCESS)
            MPI_Comm_free(&m->lib);
    }
    if (rc != MPI_SUCCESS) {
        free(m);
        return mpe_err(rc);
    }
    MPI_Comm_rank(m->user, &out->rank);
    MPI_Comm_size(m->user, &out->size);
    m->seq = calloc((size_t)out->size, sizeof *m->seq);
    if (!m->seq) {
        comm_drop(&m->user);
        MPI_Comm_free(&m->lib);
        free(m);
        return MP_ENOMEM;
    }
    out->impl = m;
    return 0;
}

/* mcomm_make over every member of comm (the world, a dup). */
static int mcomm_whole(MPI_Comm parent, MPI_Comm of, MPI_Comm user, mp_comm *out)
{
    MPI_Group g;
    int rc = MPI_Comm_group(of, &g);
    if (rc != MPI_SUCCESS)
        return mpe_err(rc);
    rc = mcomm_make(parent, g, user, out);
    MPI_Group_free(&g);
    return rc;
}

static void mcomm_free(mcomm *m)
{
    mpe_held_drop(m);
    comm_drop(&m->user);
    MPI_Comm_free(&m->lib);
    free(m->seq);
    free(m);
}

/* The thread level the engine asks of MPI when it initializes MPI (see
 * "One lock" in mpi_int.h): MPI_THREAD_SINGLE, unless MPROC_MPI_THREAD
 * says "serialized".  Every MPI call the engine makes is already made
 * under its mutex, one at a time, and the mutex orders them in memory;
 * Open MPI 4.1 switches on its own locking for every level above SINGLE
 * (FUNNELED included), which takes a mutex in each shared-memory send and
 * a condition variable in each blocking wait and cost the 8-byte
 * ping-pong more than half of its time.  Stacks that tie SINGLE to the
 * thread that initialized MPI (UCX's single mode, on some clusters) are
 * asked for SERIALIZED with MPROC_MPI_THREAD=serialized. */
static int thread_level(void)
{
    const char *v = getenv("MPROC_MPI_THREAD");
    if (v && strcmp(v, "serialized") == 0)
        return MPI_THREAD_SERIALIZED;
    if (v && *v && strcmp(v, "single") != 0)
        mp_log(MP_LOG_WARNING, "comm: MPROC_MPI_THREAD=%s: want single or serialized", v);
    return MPI_THREAD_SINGLE;
}

static int world_init(mp_comm *w)
{
    pthread_mutex_lock(&mpe.lock);
    int flag = 0, rc = MPI_SUCCESS;
    MPI_Initialized(&flag);
    if (!flag) {
        int want = thread_level(), provided = MPI_THREAD_SINGLE;
        rc = MPI_Init_thread(NULL, NULL, want, &provided);
        mpe.inited_mpi = rc == MPI_SUCCESS;
        mpe.level_want = want;
        if (rc == MPI_SUCCESS && provided < want)
            mp_log(MP_LOG_WARNING,
                   "comm: MPI gives thread level %d, not %d: do not "
                   "wait for isend/irecv futures from other threads",
                   provided, want);
    }
    int ret = rc == MPI_SUCCESS ? 0 : MP_EIO;
    if (ret == 0)
        MPI_Query_thread(&mpe.level_got);
    if (ret == 0) {
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        int *ub = NULL, has = 0;
        MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &has);
        mpe.tag_ub = has && ub ? *ub : 32767;
        /* MPI_COMM_WORLD itself carries the world's user tags when MPI is
         * ours (see "Communicators" in mpi_int.h). */
        MPI_Comm user = mpe.inited_mpi ? MPI_COMM_WORLD : MPI_COMM_NULL;
        ret = mcomm_whole(MPI_COMM_WORLD, MPI_COMM_WORLD, user, w);
    }
    mpe.closed = ret < 0;
    pthread_mutex_unlock(&mpe.lock);
    return ret;
}

/* Fails what still pends at the end: futures with MP_ECLOSED (a receive
 * is cancelled first), orphans left to MPI. */
static void fail_pending(void)
{
    pthread_mutex_lock(&mpe.lock);
    mreq *list = mpe.pending;
    mpe.pending = NULL;
    for (mreq *r = list; r; r = r->next) {
        if (r->recv) {
            MPI_Cancel(&r->rq);
            MPI_Wait(&r->rq, MPI_STATUS_IGNORE);
        } else if (r->rq != MPI_REQUEST_NULL) {
            /* A send MPI cannot cancel; freeing the request lets MPI
             * finish it on its own (collectives' requests cannot be
             * freed: they stay with MPI). */
            if (r->fut)
                MPI_Request_free(&r->rq);
        }
    }
    pthread_mutex_unlock(&mpe.lock);
    while (list) {
        mreq *r = list;
        list = r->next;
        if (r->fut)
            mpe.host->future_finish(r->fut, MP_ECLOSED, NULL, 0, 0, 0, NULL, -1);
        /* An orphan's copy may still be read by MPI until MPI_Finalize:
         * it is left to the end of the program.  A receive's bounce
         * buffer is done with (cancelled or complete). */
        if (r->recv)
            free(r->bounce);
        free(r);
    }
}

static void world_fini(mp_comm *w)
{
    pthread_mutex_lock(&mpe.lock);
    mpe.stop = true;
    pthread_cond_signal(&mpe.wake);
    bool joined = mpe.thread_on;
    pthread_mutex_unlock(&mpe.lock);
    if (joined)
        pthread_join(mpe.thread, NULL);
    fail_pending();
    pthread_mutex_lock(&mpe.lock);
    mpe.closed = true;
    if (w->impl)
        mcomm_free(w->impl);
    w->impl = NULL;
    int fin = 0;
    MPI_Finalized(&fin);
    if (mpe.inited_mpi && !fin)
        MPI_Finalize();
    pthread_mutex_unlock(&mpe.lock);
}

static void engine_abort(mp_comm *c, int code)
{
    (void)c;
    /* Not under the lock: another thread may hold it in a blocking call,
     * and an abort must not wait for that. */
    MPI_Abort(MPI_COMM_WORLD, code & 255 ? code & 255 : 1);
    _exit(code & 255 ? code & 255 : 1);
}

static int engine_dup(mp_comm *c, mp_comm *out, int64_t deadline)
{
    (void)deadline; /* MPI_Comm_dup has no nonblocking form in MPI 3.1 */
    pthread_mutex_lock(&mpe.lock);
    const mcomm *m = c->impl;
    int rc = mpe_abandon_seen(c) ? MP_EABANDONED : mcomm_whole(m->lib, m->user, MPI_COMM_NULL, out);
    pthread_mutex_unlock(&mpe.lock);
    return rc;
}

/* The group of the ranks of c with color, in the order of (key, rank):
 * MPI_Comm_split's rule, from an allgather of every rank's pair. */
static int split_group(mp_comm *c, int color, int key, MPI_Group *out)
{
    const mcomm *m = c->impl;
    *out = MPI_GROUP_EMPTY;
    int mine[2] = {color, key}, *all = malloc(sizeof(int) * 2 * (size_t)c->size);
    int *ranks = malloc(sizeof(int) * (size_t)c->size);
    int rc = all && ranks ? mpe_err(MPI_Allgather(mine, 2, MPI_INT, all, 2, MPI_INT, m->lib))
                          : MP_ENOMEM;
    int n = 0;
    for (int r = 0; rc == 0 && color != MP_UNDEFINED && r < c->size; r++) {
        const int *pair = all + 2 * (size_t)r;
        if (pair[0] != color)
            continue;
        /* Insertion by key, stable in rank order: n stays small enough. */
        int at = n++;
        while (at > 0 && all[2 * (size_t)ranks[at - 1] + 1] > pair[1]) {
            ranks[at] = ranks[at - 1];
            at--;
        }
        ranks[at] = r;
    }
    if (rc == 0 && n > 0) {
        MPI_Group whole;
        rc = mpe_err(MPI_Comm_group(m->lib, &whole));
        if (rc == 0) {
            rc = mpe_err(MPI_Group_incl(whole, n, ranks, out));
            MPI_Group_free(&whole);
        }
    }
    free(all);
    free(ranks);
    return rc;
}

static int engine_split(mp_comm *c, int color, int key, mp_comm *out, int64_t deadline)
{
    (void)deadline;
    pthread_mutex_lock(&mpe.lock);
    MPI_Group g = MPI_GROUP_EMPTY;
    int rc = mpe_abandon_seen(c) ? MP_EABANDONED : split_group(c, color, key, &g);
    if (rc == 0)
        rc = mcomm_make(((mcomm *)c->impl)->lib, g, MPI_COMM_NULL, out);
    if (g != MPI_GROUP_EMPTY)
        MPI_Group_free(&g);
    pthread_mutex_unlock(&mpe.lock);
    return rc;
}

static void engine_free(mp_comm *c)
{
    pthread_mutex_lock(&mpe.lock);
    /* MPI keeps a freed communicator until its pending operations end. */
    if (c->impl && !mpe.closed)
        mcomm_free(c->impl);
    c->impl = NULL;
    pthread_mutex_unlock(&mpe.lock);
}

/* A collective timed out here: mark c, and tell every other rank, whose
 * collectives on c with a deadline then return MP_EABANDONED too. */
static void engine_abandon(mp_comm *c)
{
    pthread_mutex_lock(&mpe.lock);
    mcomm *m = c->impl;
    if (!m->abandoned) {
        m->abandoned = true;
        for (int r = 0; r < c->size; r++) {
            MPI_Request rq;
            if (r != c->rank &&
                MPI_Isend(NULL, 0, MPI_BYTE, r, MPE_TAG_ABANDON, m->lib, &rq) == MPI_SUCCESS)
                mpe_orphan(rq, NULL);
        }
    }
    pthread_mutex_unlock(&mpe.lock);
}

/* Several threads call from now on (engine.h): every call takes the lock.
 * They can when MPI serves serialized calls from any thread: at
 * MPI_THREAD_SERIALIZED or above, or at the MPI_THREAD_SINGLE the engine
 * chose itself (see thread_level).  A program that initialized MPI
 * at SINGLE or FUNNELED promised MPI that one thread calls it. */
static int engine_threaded(mp_comm *c)
{
    (void)c;
    pthread_mutex_lock(&mpe.lock);
    bool can =
        mpe.inited_mpi ? mpe.level_got >= mpe.level_want : mpe.level_got >= MPI_THREAD_SERIALIZED;
    if (can)
        atomic_store_explicit(&mpe.locking, true, memory_order_release);
    pthread_mutex_unlock(&mpe.lock);
    if (can)
        return 0;
    mp_log(MP_LOG_ERROR,
           "comm: MPI runs at thread level %d (%s), which lets one thread call it; "
           "several threads need MPI_THREAD_SERIALIZED (%d) or more",
           mpe.level_got, mpe.inited_mpi ? "as MPI gave it" : "as the program initialized it",
           MPI_THREAD_SERIALIZED);
    return MP_ENOTSUP;
}

static const mp__comm_ops mpi_ops = {
    .version = MP__COMM_OPS_VERSION,
    .size = sizeof(mp__comm_ops),
    .name = "mpi",
    /* No MP__COMM_CAP_FORK: Open MPI's memory registrations and
     * connections do not survive fork after MPI_Init.  No MP__COMM_CAP_RUN
     * either: mp_run forks its ranks. */
    .caps = 0,
    .world_init = world_init,
    .world_fini = world_fini,
    .abort = engine_abort,
    .dup = engine_dup,
    .split = engine_split,
    .free = engine_free,
    .abandon = engine_abandon,
    .send = mpe_send,
    .recv = mpe_recv,
    .sendrecv = mpe_sendrecv,
    .isend = mpe_isend,
    .irecv = mpe_irecv,
    .probe = mpe_probe,
    .barrier = mpe_barrier,
    .bcast = mpe_bcast,
    .scatter = mpe_scatter,
    .scatterv = mpe_scatterv,
    .gather = mpe_gather,
    .gatherv = mpe_gatherv,
    .allgather = mpe_allgather,
    .allgatherv = mpe_allgatherv,
    .alltoall = mpe_alltoall,
    .reduce = mpe_reduce,
    .allreduce = mpe_allreduce,
    .scan = mpe_scan,
    .threaded = engine_threaded,
};

/* The entry point comm.c's loader calls (engine.h). */
__attribute__((visibility("default"))) const mp__comm_ops *
mp__comm_engine(const mp__comm_host *host);

const mp__comm_ops *mp__comm_engine(const mp__comm_host *host)
{
    if (!host || host->version != MP__COMM_HOST_VERSION || host->size < sizeof *host)
        return NULL;
    mpe.host = host;
    return &mpi_ops;
}
