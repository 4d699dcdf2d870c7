/*
 * comm.c - the comm API: the world and its engine, argument checks, and
 * the dispatch to the engine's operations table (see engine.h).
 *
 * DESIGN
 * Which engine runs is decided once, when the world is joined:
 *   - started by mprun (MPROC_COMM_FD in the environment at load): local;
 *   - started by an MPI launcher (OMPI_COMM_WORLD_SIZE, PMI_SIZE or
 *     PMIX_RANK set): the MPI engine, a library of its own loaded with
 *     dlopen (MPROC_MPI_ENGINE names another file) so that libmproc never
 *     links MPI and one binary runs under both launchers.  RTLD_GLOBAL,
 *     because Open MPI's own plugins expect libmpi's symbols to be global.
 *     Its entry point gets the host table and returns its ops, which must
 *     be of this version and hold at least the point-to-point slots;
 *   - otherwise: local, a world of one.
 * A child forked by mp_run joins its launcher's world instead
 * (mp__comm_enter_forked), which replaces whatever world the parent had:
 * every object of that one is then refused (epoch), never used.
 *
 * Every call checks its arguments here, so that engines see only valid
 * ones.  A collective that fails part-way on one rank (a timeout, a
 * resource error) breaks the communicator's collectives for every rank
 * (the engine's abandon), since the others cannot finish it without this
 * rank; a dead peer or a collective another rank abandoned already need
 * no such step.
 */
#define _GNU_SOURCE
#include "engine.h"

#include "fork_guard.h"

#include <dlfcn.h>
#include <math.h>
#include <unistd.h>

#define MPI_ENGINE_FILE "libmproc_mpi.so." MP__STR(MP_VERSION_MAJOR)
#define MP__STR(x)      MP__STR2(x)
#define MP__STR2(x)     #x

#define SLOT MP__COMM_SLOT

static struct {
    pthread_mutex_t lock;
    bool joined, closed;
    pid_t pid;      /* the process that joined */
    uint32_t epoch; /* bumped at each join */
    void *dl;       /* the MPI engine's library */
    mp_comm world;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const mp__comm_host host = {
    MP__COMM_HOST_VERSION, sizeof(mp__comm_host), mp__future_new,
    mp__future_new_failed, mp__future_finish,     mp__comm_type_size,
    mp__op_check,          mp__op_apply,          mp__op_user,
};

__attribute__((constructor)) static void comm_boot(void)
{
    mp__local_boot();
}

/* ---- the engine ---------------------------------------------------------------- */

static bool mpi_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

/* Opens the MPI engine: $MPROC_MPI_ENGINE, else libmproc_mpi.so.<major> in
 * the directory libmproc itself was loaded from (where it is installed,
 * whether or not that directory is on the loader's path), else wherever
 * the dynamic loader finds it. */
static void *engine_open(const char **path)
{
    static char beside[PATH_MAX];
    const char *env = getenv("MPROC_MPI_ENGINE");
    if (env && *env) {
        *path = env;
        return dlopen(env, RTLD_NOW | RTLD_GLOBAL);
    }
    Dl_info info;
    void *self = (void *)(uintptr_t)&mp_comm_world;
    if (dladdr(self, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        int dir = slash ? (int)(slash - info.dli_fname) : 0;
        int n = snprintf(beside, sizeof beside, "%.*s/%s", dir, info.dli_fname, MPI_ENGINE_FILE);
        if (slash && n > 0 && (size_t)n < sizeof beside) {
            void *h = dlopen(beside, RTLD_NOW | RTLD_GLOBAL);
            if (h) {
                *path = beside;
                return h;
            }
        }
    }
    *path = MPI_ENGINE_FILE;
    return dlopen(MPI_ENGINE_FILE, RTLD_NOW | RTLD_GLOBAL);
}

static const mp__comm_ops *engine_load(int *rc)
{
    const char *path;
    void *h = engine_open(&path);
    if (!h) {
        mp_log(MP_LOG_ERROR,
               "comm: running under an MPI launcher, but the MPI engine %s "
               "cannot be loaded: %s",
               path, dlerror());
        *rc = MP_ENOTSUP;
        return NULL;
    }
    /* dlsym returns an object pointer; the entry is a function. */
    void *sym = dlsym(h, MP__COMM_ENGINE_ENTRY);
    mp__comm_engine_fn entry = NULL;
    if (sym)
        memcpy(&entry, &sym, sizeof entry);
    const mp__comm_ops *ops = entry ? entry(&host) : NULL;
    size_t need = offsetof(mp__comm_ops, probe) + sizeof ops->probe;
    if (!ops || ops->version != MP__COMM_OPS_VERSION || ops->size < need) {
        mp_log(MP_LOG_ERROR,
               "comm: the MPI engine %s is not one this library can use "
               "(version %u, want %u)",
               path, ops ? ops->version : 0, MP__COMM_OPS_VERSION);
        dlclose(h);
        *rc = MP_ENOTSUP;
        return NULL;
    }
    g.dl = h;
    return ops;
}

static const mp__comm_ops *engine_select(int *rc)
{
    if (!mp__local_launched() && mpi_launched())
        return engine_load(rc);
    return &mp__comm_local_ops;
}

static void comm_atexit(void)
{
    (void)mp_comm_finalize();
}

int mp_comm_world(mp_comm **out)
{
    static _Atomic bool atexit_set;
    if (!out)
        return MP_EINVAL;
    pthread_mutex_lock(&g.lock);
    int rc = 0;
    if (g.joined && g.pid != mp__self_pid()) {
        rc = MP_ESTATE; /* a forked copy of a rank */
    } else if (g.closed) {
        rc = MP_ECLOSED;
    } else if (!g.joined) {
        const mp__comm_ops *ops = engine_select(&rc);
        if (ops) {
            g.world = (mp_comm){
                .magic = MP__COMM_MAGIC, .epoch = ++g.epoch, .is_world = true, .ops = ops};
            rc = ops->world_init(&g.world);
        }
        if (rc == 0) {
            g.joined = true;
            g.pid = mp__self_pid();
            mp__comm_fork_set(ops->caps & MP__COMM_CAP_FORK);
        }
    }
    pthread_mutex_unlock(&g.lock);
    if (rc < 0)
        return rc;
    /* Leaving at exit tells the other ranks this one is done (and under
     * MPI, MPI_Finalize must run before exit). */
    if (!atomic_exchange(&atexit_set, true))
        atexit(comm_atexit);
    *out = &g.world;
    return 0;
}

int mp__comm_enter_forked(void *base, size_t size, int rank, mp_comm **out)
{
    /* This child is a fresh rank.  A world its parent had joined was
     * copied by fork with the parent's memory but without its threads:
     * forget it without touching it (its objects now fail the epoch
     * check).  The lock may have been copied held by a parent thread. */
    pthread_mutex_init(&g.lock, NULL);
    g.joined = g.closed = false;
    g.dl = NULL;
    g.world = (mp_comm){
        .magic = MP__COMM_MAGIC, .epoch = ++g.epoch, .is_world = true, .ops = &mp__comm_local_ops};
    int rc = mp__local_world_forked(&g.world, base, size, rank);
    if (rc < 0)
        return rc;
    g.joined = true;
    g.pid = mp__self_pid();
    *out = &g.world;
    return 0;
}

int mp_comm_finalize(void)
{
    pthread_mutex_lock(&g.lock);
    if (g.joined && !g.closed && g.pid == mp__self_pid()) {
        g.closed = true;
        g.world.ops->world_fini(&g.world);
        mp__comm_fork_set(true);
    }
    pthread_mutex_unlock(&g.lock);
    return 0;
}

/* ---- checks ------------------------------------------------------------------------ */

static int check_comm(const mp_comm *c)
{
    if (!c || c->magic != MP__COMM_MAGIC)
        return MP_EINVAL;
    if (!g.joined || c->epoch != g.epoch || g.pid != mp__self_pid())
        return MP_ESTATE;
    if (g.closed)
        return MP_ECLOSED;
    return 0;
}

static int check_rank(const mp_comm *c, int r)
{
    return r >= 0 && r < c->size ? 0 : MP_EINVAL;
}

static int check_source(const mp_comm *c, int r)
{
    return r == MP_ANY_SOURCE ? 0 : check_rank(c, r);
}

static int check_buf(const void *buf, size_t len)
{
    return buf || len == 0 ? 0 : MP_EINVAL;
}

static int check_timeout(double timeout, int64_t *deadline)
{
    if (isnan(timeout))
        return MP_EINVAL;
    /* No clock read for MP_FOREVER: a call that never waits pays none. */
    *deadline = mp__deadline(timeout);
    return 0;
}

/* The bytes of count elements of type in *bytes (times mult). */
static int check_count(mp_type type, size_t count, size_t mult, size_t *bytes)
{
    size_t es;
    if (mp__comm_type_size(type, &es) < 0)
        return MP_EINVAL;
    if (mult && count > SIZE_MAX / es / mult)
        return MP_EOVERFLOW;
    *bytes = count * es;
    return 0;
}

/* What a collective's outcome means for the communicator (see DESIGN). */
static int coll_done(mp_comm *c, int rc)
{
    if (rc < 0 && rc != MP_EPEERDEAD && rc != MP_EABANDONED && SLOT(c->ops, abandon))
        c->ops->abandon(c);
    return rc;
}

/* ---- ranks and communicators --------------------------------------------------------- */

int mp_comm_rank(const mp_comm *c)
{
    return c && c->magic == MP__COMM_MAGIC ? c->rank : MP_EINVAL;
}

int mp_comm_size(const mp_comm *c)
{
    return c && c->magic == MP__COMM_MAGIC ? c->size : MP_EINVAL;
}

const char *mp_comm_engine(const mp_comm *c)
{
    return c && c->magic == MP__COMM_MAGIC ? c->ops->name : NULL;
}

int mp_comm_processor_name(char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return MP_EINVAL;
    char name[256];
    if (gethostname(name, sizeof name) != 0)
        return -errno;
    name[sizeof name - 1] = '\0';
    size_t len = strlen(name);
    if (len >= cap)
        return MP_ERANGE;
    memcpy(buf, name, len + 1);
    return (int)len;
}

static int comm_make(mp_comm *c, double timeout, mp_comm **out, int color, int key, bool split)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(c);
    if (rc == 0)
        rc = out ? check_timeout(timeout, &dl) : MP_EINVAL;
    if (rc == 0 && split && color < 0 && color != MP_UNDEFINED)
        rc = MP_EINVAL;
    if (rc < 0)
        return rc;
    *out = NULL;
    mp_comm *nc = calloc(1, sizeof *nc);
    if (!nc)
        return MP_ENOMEM;
    *nc = (mp_comm){.magic = MP__COMM_MAGIC, .epoch = c->epoch, .ops = c->ops};
    rc = split ? c->ops->split(c, color, key, nc, dl) : c->ops->dup(c, nc, dl);
    if (rc < 0 || !nc->impl) {
        free(nc);
        return coll_done(c, rc);
    }
    *out = nc;
    return 0;
}

int mp_comm_dup(mp_comm *c, double timeout, mp_comm **out)
{
    return comm_make(c, timeout, out, 0, 0, false);
}

int mp_comm_split(mp_comm *c, int color, int key, double timeout, mp_comm **out)
{
    return comm_make(c, timeout, out, color, key, true);
}

void mp_comm_free(mp_comm *c)
{
    if (!c || c->magic != MP__COMM_MAGIC || c->is_world)
        return;
    /* A communicator of a world this process no longer is in (a forked
     * rank's parent's) is only forgotten. */
    if (c->epoch == g.epoch && g.pid == mp__self_pid())
        c->ops->free(c);
    c->magic = 0;
    free(c);
}

void mp_comm_abort(mp_comm *c, int code)
{
    fflush(NULL);
    if (check_comm(c) == 0 && SLOT(c->ops, abort))
        c->ops->abort(c, code);
    _exit(code & 255 ? code & 255 : 1);
}

/* ---- point to point ------------------------------------------------------------------- */

int mp_comm_send(mp_comm *c, const void *buf, size_t len, int dest, int tag, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(c);
    if (rc == 0 && (check_rank(c, dest) < 0 || tag < 0 || check_buf(buf, len) < 0))
        rc = MP_EINVAL;
    if (rc == 0)
        rc = check_timeout(timeout, &dl);
    return rc < 0 ? rc : c->ops->send(c, buf, len, dest, tag, dl);
}

static int check_recv(const mp_comm *c, const void *buf, size_t cap, int source, int tag)
{
    if (check_source(c, source) < 0 || (tag < 0 && tag != MP_ANY_TAG) || check_buf(buf, cap) < 0)
        return MP_EINVAL;
    return 0;
}

int mp_comm_recv(mp_comm *c, void *buf, size_t cap, int source, int tag, mp_comm_status *st,
                 double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(c);
    if (rc == 0)
        rc = check_recv(c, buf, cap, source, tag);
    if (rc == 0)
        rc = check_timeout(timeout, &dl);
    return rc < 0 ? rc : c->ops->recv(c, buf, cap, source, tag, st, dl);
}

static bool overlap(const void *a, size_t alen, const void *b, size_t blen)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return alen && blen && x < y + blen && y < x + alen;
}

int mp_comm_sendrecv(mp_comm *c, const void *sbuf, size_t slen, int dest, int stag, void *rbuf,
                     size_t rcap, int source, int rtag, mp_comm_status *st, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(c);
    if (rc == 0 && (check_rank(c, dest) < 0 || stag < 0 || check_buf(sbuf, slen) < 0 ||
                    overlap(sbuf, slen, rbuf, rcap)))
        rc = MP_EINVAL;
    if (rc == 0)
        rc = check_recv(c, rbuf, rcap, source, rtag);
    if (rc == 0)
        rc = check_timeout(timeout, &dl);
    if (rc < 0)
        return rc;
    if (SLOT(c->ops, sendrecv))
        return c->ops->sendrecv(c, sbuf, slen, dest, stag, rbuf, rcap, source, rtag, st, dl);
    return mp__p2p_sendrecv(c, sbuf, slen, dest, stag, rbuf, rcap, source, rtag, st, dl);
}

int mp_comm_isend(mp_comm *c, const void *buf, size_t len, int dest, int tag, mp_future **out)
{
    int rc = check_comm(c);
    if (rc == 0 && (!out || check_rank(c, dest) < 0 || tag < 0 || check_buf(buf, len) < 0))
        rc = MP_EINVAL;
    if (out)
        *out = NULL;
    return rc < 0 ? rc : c->ops->isend(c, buf, len, dest, tag, out);
}

int mp_comm_irecv(mp_comm *c, void *buf, size_t cap, int source, int tag, mp_future **out)
{
    int rc = check_comm(c);
    if (rc == 0)
        rc = out ? check_recv(c, buf, cap, source, tag) : MP_EINVAL;
    if (out)
        *out = NULL;
    return rc < 0 ? rc : c->ops->irecv(c, buf, cap, source, tag, out);
}

int mp_comm_probe(mp_comm *c, int source, int tag, mp_comm_status *st, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(c);
    if (rc == 0)
        rc = check_recv(c, NULL, 0, source, tag);
    if (rc == 0)
        rc = check_timeout(timeout, &dl);
    return rc < 0 ? rc : c->ops->probe(c, source, tag, st, dl);
}

/* ---- collectives ----------------------------------------------------------------------- */

/* The checks every collective starts with. */
static int coll_begin(mp_comm *c, double timeout, int64_t *dl)
{
    int rc = check_comm(c);
    return rc < 0 ? rc : check_timeout(timeout, dl);
}

int mp_comm_barrier(mp_comm *c, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = coll_begin(c, timeout, &dl);
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, barrier) ? c->ops->barrier(c, dl) : mp__coll_barrier(c, dl);
    return coll_done(c, rc);
}

int mp_comm_bcast(mp_comm *c, void *buf, size_t len, int root, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = coll_begin(c, timeout, &dl);
    if (rc == 0 && (check_rank(c, root) < 0 || check_buf(buf, len) < 0))
        rc = MP_EINVAL;
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, bcast) ? c->ops->bcast(c, buf, len, root, dl)
                             : mp__coll_bcast(c, buf, len, root, dl);
    return coll_done(c, rc);
}

int mp_comm_scatter(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
                    double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    size_t bytes = 0, all = 0;
    int rc = coll_begin(c, timeout, &dl);
    if (rc == 0)
        rc = check_rank(c, root);
    if (rc == 0)
        rc = check_count(type, count, 1, &bytes);
    if (rc == 0)
        rc = check_count(type, count, (size_t)c->size, &all);
    if (rc == 0 && (check_buf(recv, bytes) < 0 || (c->rank == root && check_buf(send, all) < 0)))
        rc = MP_EINVAL;
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, scatter) ? c->ops->scatter(c, send, recv, count, type, root, dl)
                               : mp__coll_scatter(c, send, recv, count, type, root, dl);
    return coll_done(c, rc);
}

/* counts and displs on a rank that reads them: every block must fit. */
static int check_blocks(const mp_comm *c, mp_type type, const size_t *counts, const size_t *displs,
                        const void *buf)
{
    if (!counts || !displs)
        return MP_EINVAL;
    for (int i = 0; i < c->size; i++) {
        size_t bytes;
        if (displs[i] > SIZE_MAX - counts[i] ||
            check_count(type, displs[i] + counts[i], 1, &bytes) < 0)
            return MP_EOVERFLOW;
        if (check_buf(buf, bytes) < 0)
            return MP_EINVAL;
    }
    return 0;
}

int mp_comm_scatterv(mp_comm *c, const void *send, const size_t *counts, const size_t *displs,
                     void *recv, size_t recv_count, mp_type type, int root, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    size_t bytes = 0;
    int rc = coll_begin(c, timeout, &dl);
    if (rc == 0)
        rc = check_rank(c, root);
    if (rc == 0)
        rc = check_count(type, recv_count, 1, &bytes);
    if (rc == 0)
        rc = check_buf(recv, bytes);
    if (rc == 0 && c->rank == root)
        rc = check_blocks(c, type, counts, displs, send);
    if (rc == 0 && c->rank == root && counts[root] > recv_count)
        rc = MP_EMSGSIZE;
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, scatterv)
             ? c->ops->scatterv(c, send, counts, displs, recv, recv_count, type, root, dl)
             : mp__coll_scatterv(c, send, counts, displs, recv, recv_count, type, root, dl);
    return coll_done(c, rc);
}

int mp_comm_gather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, int root,
                   double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    size_t bytes = 0, all = 0;
    int rc = coll_begin(c, timeout, &dl);
    if (rc == 0)
        rc = check_rank(c, root);
    if (rc == 0)
        rc = check_count(type, count, 1, &bytes);
    if (rc == 0)
        rc = check_count(type, count, (size_t)c->size, &all);
    if (rc == 0 && (check_buf(send, bytes) < 0 || (c->rank == root && check_buf(recv, all) < 0)))
        rc = MP_EINVAL;
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, gather) ? c->ops->gather(c, send, recv, count, type, root, dl)
                              : mp__coll_gather(c, send, recv, count, type, root, dl);
    return coll_done(c, rc);
}

int mp_comm_gatherv(mp_comm *c, const void *send, size_t send_count, void *recv,
                    const size_t *counts, const size_t *displs, mp_type type, int root,
                    double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    size_t bytes = 0;
    int rc = coll_begin(c, timeout, &dl);
    if (rc == 0)
        rc = check_rank(c, root);
    if (rc == 0)
        rc = check_count(type, send_count, 1, &bytes);
    if (rc == 0)
        rc = check_buf(send, bytes);
    if (rc == 0 && c->rank == root)
        rc = check_blocks(c, type, counts, displs, recv);
    if (rc == 0 && c->rank == root && counts[root] != send_count)
        rc = MP_EMSGSIZE;
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, gatherv)
             ? c->ops->gatherv(c, send, send_count, recv, counts, displs, type, root, dl)
             : mp__coll_gatherv(c, send, send_count, recv, counts, displs, type, root, dl);
    return coll_done(c, rc);
}

int mp_comm_allgather(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                      double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    size_t bytes = 0, all = 0;
    int rc = coll_begin(c, timeout, &dl);
    if (rc == 0)
        rc = check_count(type, count, 1, &bytes);
    if (rc == 0)
        rc = check_count(type, count, (size_t)c->size, &all);
    if (rc == 0 && (check_buf(send, bytes) < 0 || check_buf(recv, all) < 0))
        rc = MP_EINVAL;
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, allgather) ? c->ops->allgather(c, send, recv, count, type, dl)
                                 : mp__coll_allgather(c, send, recv, count, type, dl);
    return coll_done(c, rc);
}

int mp_comm_allgatherv(mp_comm *c, const void *send, size_t send_count, void *recv,
                       const size_t *counts, const size_t *displs, mp_type type, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    size_t bytes = 0;
    int rc = coll_begin(c, timeout, &dl);
    if (rc == 0)
        rc = check_count(type, send_count, 1, &bytes);
    if (rc == 0)
        rc = check_buf(send, bytes);
    if (rc == 0)
        rc = check_blocks(c, type, counts, displs, recv);
    if (rc == 0 && counts[c->rank] != send_count)
        rc = MP_EMSGSIZE;
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, allgatherv)
             ? c->ops->allgatherv(c, send, send_count, recv, counts, displs, type, dl)
             : mp__coll_allgatherv(c, send, send_count, recv, counts, displs, type, dl);
    return coll_done(c, rc);
}

int mp_comm_alltoall(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                     double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    size_t all = 0;
    int rc = coll_begin(c, timeout, &dl);
    if (rc == 0)
        rc = check_count(type, count, (size_t)c->size, &all);
    if (rc == 0 && (check_buf(send, all) < 0 || check_buf(recv, all) < 0))
        rc = MP_EINVAL;
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, alltoall) ? c->ops->alltoall(c, send, recv, count, type, dl)
                                : mp__coll_alltoall(c, send, recv, count, type, dl);
    return coll_done(c, rc);
}

/* The checks of the reductions; recv is checked where it is written. */
static int check_reduce(mp_comm *c, const void *send, const void *recv, size_t count, mp_type type,
                        mp_op op, bool writes, double timeout, int64_t *dl)
{
    size_t bytes = 0;
    int rc = coll_begin(c, timeout, dl);
    if (rc == 0)
        rc = check_count(type, count, 1, &bytes);
    if (rc == 0)
        rc = mp__op_check(op, type);
    if (rc == 0 && (check_buf(send, bytes) < 0 || (writes && check_buf(recv, bytes) < 0) ||
                    (writes && overlap(send, bytes, recv, bytes))))
        rc = MP_EINVAL;
    return rc;
}

int mp_comm_reduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                   int root, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(c);
    if (rc == 0)
        rc = check_rank(c, root);
    if (rc == 0)
        rc = check_reduce(c, send, recv, count, type, op, c->rank == root, timeout, &dl);
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, reduce) ? c->ops->reduce(c, send, recv, count, type, op, root, dl)
                              : mp__coll_reduce(c, send, recv, count, type, op, root, dl);
    return coll_done(c, rc);
}

int mp_comm_allreduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type,
                      mp_op op, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_reduce(c, send, recv, count, type, op, true, timeout, &dl);
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, allreduce) ? c->ops->allreduce(c, send, recv, count, type, op, dl)
                                 : mp__coll_allreduce(c, send, recv, count, type, op, dl);
    return coll_done(c, rc);
}

int mp_comm_scan(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                 double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_reduce(c, send, recv, count, type, op, true, timeout, &dl);
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, scan) ? c->ops->scan(c, send, recv, count, type, op, dl)
                            : mp__coll_scan(c, send, recv, count, type, op, dl);
    return coll_done(c, rc);
}
