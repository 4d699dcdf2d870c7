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
 * ones.  Fast paths: the calls a latency-bound program makes in a loop
 * (send, recv, bcast, barrier) first test all their conditions at once,
 * inline, for the common case - valid arguments and no deadline - and
 * call the engine straight away; only when that test fails do they run
 * the checks one by one, which name what they refuse.  (Each function
 * the call passes through is another cache line of code, and after a
 * wait those are often cold.)  A collective that fails part-way on one rank (a timeout, a
 * resource error) breaks the communicator's collectives for every rank
 * (the engine's abandon), since the others cannot finish it without this
 * rank; a dead peer or a collective another rank abandoned already need
 * no such step.
 */
#define _GNU_SOURCE
#include "engine.h"

#include "fork_guard.h"
#include "log.h"

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
    /* joined, not closed, and this is the process that joined: what the
     * fast paths test (a fork's child clears it, see comm_forked). */
    bool live;
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

/* In a child of fork: not a rank (the checks that name why compare the
 * pids). */
static void comm_forked(void)
{
    g.live = false;
}

static void comm_atfork(void)
{
    (void)pthread_atfork(NULL, NULL, comm_forked);
}

/* This process joined: it is a rank (g.lock held). */
static void comm_joined(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, comm_atfork);
    g.joined = g.live = true;
    g.pid = mp__self_pid();
}

int mp_comm_world(mp_comm **out)
{
    static _Atomic bool atexit_set;
    MP__NONNULL(out);
    pthread_mutex_lock(&g.lock);
    int rc = 0;
    const char *why = NULL;
    if (g.joined && g.pid != mp__self_pid()) {
        rc = MP_ESTATE; /* a forked copy of a rank */
        why = "a forked copy of a rank must not join its world";
    } else if (g.closed) {
        rc = MP_ECLOSED;
        why = "the world is finalized";
    } else if (!g.joined) {
        const mp__comm_ops *ops = engine_select(&rc);
        if (ops) {
            g.world = (mp_comm){
                .magic = MP__COMM_MAGIC, .epoch = ++g.epoch, .is_world = true, .ops = ops};
            rc = ops->world_init(&g.world);
        }
        if (rc == 0) {
            comm_joined();
            mp__comm_fork_set(ops->caps & MP__COMM_CAP_FORK);
        }
    }
    pthread_mutex_unlock(&g.lock);
    if (why)
        return mp__fail(rc, "mp_comm_world: %s", why);
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
    g.joined = g.closed = g.live = false;
    g.dl = NULL;
    g.world = (mp_comm){
        .magic = MP__COMM_MAGIC, .epoch = ++g.epoch, .is_world = true, .ops = &mp__comm_local_ops};
    int rc = mp__local_world_forked(&g.world, base, size, rank);
    if (rc < 0)
        return rc;
    comm_joined();
    *out = &g.world;
    return 0;
}

int mp_comm_finalize(void)
{
    pthread_mutex_lock(&g.lock);
    if (g.joined && !g.closed && g.pid == mp__self_pid()) {
        g.closed = true;
        g.live = false;
        g.world.ops->world_fini(&g.world);
        mp__comm_fork_set(true);
    }
    pthread_mutex_unlock(&g.lock);
    return 0;
}

/* ---- checks ------------------------------------------------------------------------ */

/* Each check records what it refuses (mp_last_error_detail) under call,
 * the public call's name. */
static int check_comm(const char *call, const mp_comm *c)
{
    if (!c || c->magic != MP__COMM_MAGIC)
        return mp__fail(MP_EINVAL, "%s: c must be a communicator (got %p)", call, (const void *)c);
    if (!g.joined || c->epoch != g.epoch || g.pid != mp__self_pid())
        return mp__fail(MP_ESTATE, "%s: c must belong to this process's current world", call);
    if (g.closed)
        return mp__fail(MP_ECLOSED, "%s: the world is finalized", call);
    return 0;
}

/* check_comm's test alone, inline, for the fast paths below: a look at
 * c and at one flag of the world, no call. */
static inline bool comm_live(const mp_comm *c)
{
    return c && c->magic == MP__COMM_MAGIC && c->epoch == g.epoch && g.live;
}

static int check_rank(const char *call, const char *what, const mp_comm *c, int r)
{
    if (r >= 0 && r < c->size)
        return 0;
    return mp__fail(MP_EINVAL, "%s: %s must be 0 to %d (got %d)", call, what, c->size - 1, r);
}

static int check_source(const char *call, const mp_comm *c, int r)
{
    return r == MP_ANY_SOURCE ? 0 : check_rank(call, "source", c, r);
}

static int check_tag(const char *call, const char *what, int tag, bool any)
{
    if (tag >= 0 || (any && tag == MP_ANY_TAG))
        return 0;
    return mp__fail(MP_EINVAL, "%s: %s must be >= 0%s (got %d)", call, what,
                    any ? " or MP_ANY_TAG" : "", tag);
}

static int check_buf(const char *call, const char *what, const void *buf, size_t len)
{
    if (buf || len == 0)
        return 0;
    return mp__fail(MP_EINVAL, "%s: %s must not be NULL for %zu bytes", call, what, len);
}

static bool overlap(const void *a, size_t alen, const void *b, size_t blen);

static int check_apart(const char *call, const void *a, size_t alen, const void *b, size_t blen)
{
    if (!overlap(a, alen, b, blen))
        return 0;
    return mp__fail(MP_EINVAL, "%s: the send and receive buffers must not overlap", call);
}

static int check_out(const char *call, const void *out)
{
    return out ? 0 : mp__fail(MP_EINVAL, "%s: out must not be NULL", call);
}

static int check_timeout(const char *call, double timeout, int64_t *deadline)
{
    if (isnan(timeout))
        return mp__fail(MP_EINVAL, "%s: timeout must be a number, < 0 for forever (got %g)", call,
                        timeout);
    /* No clock read for MP_FOREVER: a call that never waits pays none. */
    *deadline = mp__deadline(timeout);
    return 0;
}

/* The bytes of count elements of type in *bytes (times mult). */
static int check_count(const char *call, mp_type type, size_t count, size_t mult, size_t *bytes)
{
    size_t es;
    if (mp__comm_type_size(type, &es) < 0)
        return mp__fail(MP_EINVAL, "%s: type must be an mp_type (got %d)", call, (int)type);
    if (mult && count > SIZE_MAX / es / mult)
        return mp__fail(MP_EOVERFLOW, "%s: count's bytes must fit a size_t (got count %zu)", call,
                        count);
    *bytes = count * es;
    return 0;
}

/* What a collective's outcome means for the communicator (see DESIGN). */
static inline int coll_done(mp_comm *c, int rc)
{
    if (__builtin_expect(rc < 0, 0) && rc != MP_EPEERDEAD && rc != MP_EABANDONED &&
        SLOT(c->ops, abandon))
        c->ops->abandon(c);
    return rc;
}

/* ---- ranks and communicators --------------------------------------------------------- */

int mp_comm_rank(const mp_comm *c)
{
    return c && c->magic == MP__COMM_MAGIC ? c->rank : check_comm(__func__, c);
}

int mp_comm_size(const mp_comm *c)
{
    return c && c->magic == MP__COMM_MAGIC ? c->size : check_comm(__func__, c);
}

const char *mp_comm_engine(const mp_comm *c)
{
    return c && c->magic == MP__COMM_MAGIC ? c->ops->name : NULL;
}

int mp_comm_processor_name(char *buf, size_t cap)
{
    MP__NONNULL(buf);
    if (cap == 0)
        return mp__fail(MP_EINVAL, "mp_comm_processor_name: cap must be > 0 (got 0)");
    char name[256];
    if (gethostname(name, sizeof name) != 0)
        return -errno;
    name[sizeof name - 1] = '\0';
    size_t len = strlen(name);
    if (len >= cap)
        return mp__fail(MP_ERANGE, "mp_comm_processor_name: cap must be over %zu (got %zu)", len,
                        cap);
    memcpy(buf, name, len + 1);
    return (int)len;
}

static int comm_make(mp_comm *c, double timeout, mp_comm **out, int color, int key, bool split)
{
    const char *call = split ? "mp_comm_split" : "mp_comm_dup";
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(call, c);
    if (rc == 0)
        rc = check_out(call, out);
    if (rc == 0)
        rc = check_timeout(call, timeout, &dl);
    if (rc == 0 && split && color < 0 && color != MP_UNDEFINED)
        rc = mp__fail(MP_EINVAL, "%s: color must be >= 0 or MP_UNDEFINED (got %d)", call, color);
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
    if (check_comm(__func__, c) == 0 && SLOT(c->ops, abort))
        c->ops->abort(c, code);
    _exit(code & 255 ? code & 255 : 1);
}

/* The way engines without the threaded slot turn their lock on: their
 * progress thread, started by a receive nothing matches (nothing is ever
 * sent on MP__TAG_THREADED), withdrawn at once - a receive left pending
 * would keep that thread polling. */
static int threaded_by_receive(mp_comm *c)
{
    mp_future *f = NULL;
    int rc = c->ops->irecv(c, NULL, 0, 0, MP__TAG_THREADED, &f);
    if (rc < 0)
        return rc;
    (void)mp_future_cancel(f);
    /* A cancelled receive finishes at once; one that does not is left to
     * its engine rather than waited for (its buffer is empty). */
    if (mp_future_wait(f, 10.0) == 0)
        mp_future_free(f);
    return 0;
}

int mp__comm_threaded(mp_comm *c)
{
    int rc = check_comm("mp__comm_threaded", c);
    if (rc < 0)
        return rc;
    int (*fn)(mp_comm *) = SLOT(c->ops, threaded);
    rc = fn ? fn(c) : threaded_by_receive(c);
    if (rc == MP_ENOTSUP)
        return mp__fail(rc, "the %s engine cannot serve several threads (see the log)",
                        c->ops->name);
    return rc;
}

/* ---- point to point ------------------------------------------------------------------- */

/* The checks of mp_comm_send, each with its error (the fast path's
 * test failed). */
static MP__COLD int send_checked(mp_comm *c, const void *buf, size_t len, int dest, int tag,
                                 double timeout)
{
    const char *call = "mp_comm_send";
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(call, c);
    if (rc == 0 && (check_rank(call, "dest", c, dest) < 0 ||
                    check_tag(call, "tag", tag, false) < 0 || check_buf(call, "buf", buf, len) < 0))
        rc = MP_EINVAL;
    if (rc == 0)
        rc = check_timeout(call, timeout, &dl);
    return rc < 0 ? rc : c->ops->send(c, buf, len, dest, tag, dl);
}

int mp_comm_send(mp_comm *c, const void *buf, size_t len, int dest, int tag, double timeout)
{
    /* The blocking send with valid arguments goes straight to the engine
     * (see "Fast paths" above); anything else gets every check and its
     * error. */
    if (__builtin_expect(comm_live(c) && (unsigned)dest < (unsigned)c->size && tag >= 0 &&
                             (buf || !len) && timeout < 0,
                         1))
        return c->ops->send(c, buf, len, dest, tag, MP__NO_DEADLINE);
    return send_checked(c, buf, len, dest, tag, timeout);
}

static int check_recv(const char *call, const mp_comm *c, const void *buf, size_t cap, int source,
                      int tag)
{
    if (check_source(call, c, source) < 0 || check_tag(call, "tag", tag, true) < 0 ||
        check_buf(call, "buf", buf, cap) < 0)
        return MP_EINVAL;
    return 0;
}

static MP__COLD int recv_checked(mp_comm *c, void *buf, size_t cap, int source, int tag,
                                 mp_comm_status *st, double timeout)
{
    const char *call = "mp_comm_recv";
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(call, c);
    if (rc == 0)
        rc = check_recv(call, c, buf, cap, source, tag);
    if (rc == 0)
        rc = check_timeout(call, timeout, &dl);
    return rc < 0 ? rc : c->ops->recv(c, buf, cap, source, tag, st, dl);
}

int mp_comm_recv(mp_comm *c, void *buf, size_t cap, int source, int tag, mp_comm_status *st,
                 double timeout)
{
    if (__builtin_expect(comm_live(c) &&
                             ((unsigned)source < (unsigned)c->size || source == MP_ANY_SOURCE) &&
                             (tag >= 0 || tag == MP_ANY_TAG) && (buf || !cap) && timeout < 0,
                         1))
        return c->ops->recv(c, buf, cap, source, tag, st, MP__NO_DEADLINE);
    return recv_checked(c, buf, cap, source, tag, st, timeout);
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
    int rc = check_comm(__func__, c);
    if (rc == 0 && (check_rank(__func__, "dest", c, dest) < 0 ||
                    check_tag(__func__, "stag", stag, false) < 0 ||
                    check_buf(__func__, "sbuf", sbuf, slen) < 0 ||
                    check_apart(__func__, sbuf, slen, rbuf, rcap) < 0))
        rc = MP_EINVAL;
    if (rc == 0)
        rc = check_recv(__func__, c, rbuf, rcap, source, rtag);
    if (rc == 0)
        rc = check_timeout(__func__, timeout, &dl);
    if (rc < 0)
        return rc;
    if (SLOT(c->ops, sendrecv))
        return c->ops->sendrecv(c, sbuf, slen, dest, stag, rbuf, rcap, source, rtag, st, dl);
    return mp__p2p_sendrecv(c, sbuf, slen, dest, stag, rbuf, rcap, source, rtag, st, dl);
}

int mp_comm_isend(mp_comm *c, const void *buf, size_t len, int dest, int tag, mp_future **out)
{
    int rc = check_comm(__func__, c);
    if (rc == 0 &&
        (check_out(__func__, out) < 0 || check_rank(__func__, "dest", c, dest) < 0 ||
         check_tag(__func__, "tag", tag, false) < 0 || check_buf(__func__, "buf", buf, len) < 0))
        rc = MP_EINVAL;
    if (out)
        *out = NULL;
    return rc < 0 ? rc : c->ops->isend(c, buf, len, dest, tag, out);
}

int mp_comm_irecv(mp_comm *c, void *buf, size_t cap, int source, int tag, mp_future **out)
{
    int rc = check_comm(__func__, c);
    if (rc == 0)
        rc = check_out(__func__, out);
    if (rc == 0)
        rc = check_recv(__func__, c, buf, cap, source, tag);
    if (out)
        *out = NULL;
    return rc < 0 ? rc : c->ops->irecv(c, buf, cap, source, tag, out);
}

int mp_comm_probe(mp_comm *c, int source, int tag, mp_comm_status *st, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(__func__, c);
    if (rc == 0)
        rc = check_recv(__func__, c, NULL, 0, source, tag);
    if (rc == 0)
        rc = check_timeout(__func__, timeout, &dl);
    return rc < 0 ? rc : c->ops->probe(c, source, tag, st, dl);
}

/* ---- collectives ----------------------------------------------------------------------- */

/* The checks every collective starts with. */
static int coll_begin(const char *call, mp_comm *c, double timeout, int64_t *dl)
{
    int rc = check_comm(call, c);
    return rc < 0 ? rc : check_timeout(call, timeout, dl);
}

int mp_comm_barrier(mp_comm *c, double timeout)
{
    if (__builtin_expect(comm_live(c) && timeout < 0 && SLOT(c->ops, barrier), 1))
        return coll_done(c, c->ops->barrier(c, MP__NO_DEADLINE));
    int64_t dl = MP__NO_DEADLINE;
    int rc = coll_begin(__func__, c, timeout, &dl);
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, barrier) ? c->ops->barrier(c, dl) : mp__coll_barrier(c, dl);
    return coll_done(c, rc);
}

int mp_comm_bcast(mp_comm *c, void *buf, size_t len, int root, double timeout)
{
    if (__builtin_expect(comm_live(c) && (unsigned)root < (unsigned)c->size && (buf || !len) &&
                             timeout < 0 && SLOT(c->ops, bcast),
                         1))
        return coll_done(c, c->ops->bcast(c, buf, len, root, MP__NO_DEADLINE));
    int64_t dl = MP__NO_DEADLINE;
    int rc = coll_begin(__func__, c, timeout, &dl);
    if (rc == 0 &&
        (check_rank(__func__, "root", c, root) < 0 || check_buf(__func__, "buf", buf, len) < 0))
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
    int rc = coll_begin(__func__, c, timeout, &dl);
    if (rc == 0)
        rc = check_rank(__func__, "root", c, root);
    if (rc == 0)
        rc = check_count(__func__, type, count, 1, &bytes);
    if (rc == 0)
        rc = check_count(__func__, type, count, (size_t)c->size, &all);
    if (rc == 0 && (check_buf(__func__, "recv", recv, bytes) < 0 ||
                    (c->rank == root && check_buf(__func__, "send", send, all) < 0)))
        rc = MP_EINVAL;
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, scatter) ? c->ops->scatter(c, send, recv, count, type, root, dl)
                               : mp__coll_scatter(c, send, recv, count, type, root, dl);
    return coll_done(c, rc);
}

/* counts and displs on a rank that reads them: every block must fit. */
static int check_blocks(const char *call, const char *what, const mp_comm *c, mp_type type,
                        const size_t *counts, const size_t *displs, const void *buf)
{
    if (!counts || !displs)
        return mp__fail(MP_EINVAL, "%s: counts and displs must not be NULL", call);
    for (int i = 0; i < c->size; i++) {
        size_t bytes = 0;
        if (displs[i] > SIZE_MAX - counts[i] ||
            check_count(call, type, displs[i] + counts[i], 1, &bytes) < 0)
            return mp__fail(MP_EOVERFLOW, "%s: displs[%d] + counts[%d] must fit a size_t in bytes",
                            call, i, i);
        if (check_buf(call, what, buf, bytes) < 0)
            return MP_EINVAL;
    }
    return 0;
}

int mp_comm_scatterv(mp_comm *c, const void *send, const size_t *counts, const size_t *displs,
                     void *recv, size_t recv_count, mp_type type, int root, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    size_t bytes = 0;
    int rc = coll_begin(__func__, c, timeout, &dl);
    if (rc == 0)
        rc = check_rank(__func__, "root", c, root);
    if (rc == 0)
        rc = check_count(__func__, type, recv_count, 1, &bytes);
    if (rc == 0)
        rc = check_buf(__func__, "recv", recv, bytes);
    if (rc == 0 && c->rank == root)
        rc = check_blocks(__func__, "send", c, type, counts, displs, send);
    if (rc == 0 && c->rank == root && counts[root] > recv_count)
        rc = mp__fail(MP_EMSGSIZE, "%s: counts[root] must be at most recv_count %zu (got %zu)",
                      __func__, recv_count, counts[root]);
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
    int rc = coll_begin(__func__, c, timeout, &dl);
    if (rc == 0)
        rc = check_rank(__func__, "root", c, root);
    if (rc == 0)
        rc = check_count(__func__, type, count, 1, &bytes);
    if (rc == 0)
        rc = check_count(__func__, type, count, (size_t)c->size, &all);
    if (rc == 0 && (check_buf(__func__, "send", send, bytes) < 0 ||
                    (c->rank == root && check_buf(__func__, "recv", recv, all) < 0)))
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
    int rc = coll_begin(__func__, c, timeout, &dl);
    if (rc == 0)
        rc = check_rank(__func__, "root", c, root);
    if (rc == 0)
        rc = check_count(__func__, type, send_count, 1, &bytes);
    if (rc == 0)
        rc = check_buf(__func__, "send", send, bytes);
    if (rc == 0 && c->rank == root)
        rc = check_blocks(__func__, "recv", c, type, counts, displs, recv);
    if (rc == 0 && c->rank == root && counts[root] != send_count)
        rc = mp__fail(MP_EMSGSIZE, "%s: counts[root] must equal send_count %zu (got %zu)", __func__,
                      send_count, counts[root]);
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
    int rc = coll_begin(__func__, c, timeout, &dl);
    if (rc == 0)
        rc = check_count(__func__, type, count, 1, &bytes);
    if (rc == 0)
        rc = check_count(__func__, type, count, (size_t)c->size, &all);
    if (rc == 0 && (check_buf(__func__, "send", send, bytes) < 0 ||
                    check_buf(__func__, "recv", recv, all) < 0))
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
    int rc = coll_begin(__func__, c, timeout, &dl);
    if (rc == 0)
        rc = check_count(__func__, type, send_count, 1, &bytes);
    if (rc == 0)
        rc = check_buf(__func__, "send", send, bytes);
    if (rc == 0)
        rc = check_blocks(__func__, "recv", c, type, counts, displs, recv);
    if (rc == 0 && counts[c->rank] != send_count)
        rc = mp__fail(MP_EMSGSIZE, "%s: counts[rank] must equal send_count %zu (got %zu)", __func__,
                      send_count, counts[c->rank]);
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
    int rc = coll_begin(__func__, c, timeout, &dl);
    if (rc == 0)
        rc = check_count(__func__, type, count, (size_t)c->size, &all);
    if (rc == 0 &&
        (check_buf(__func__, "send", send, all) < 0 || check_buf(__func__, "recv", recv, all) < 0))
        rc = MP_EINVAL;
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, alltoall) ? c->ops->alltoall(c, send, recv, count, type, dl)
                                : mp__coll_alltoall(c, send, recv, count, type, dl);
    return coll_done(c, rc);
}

/* The checks of the reductions; recv is checked where it is written. */
static int check_reduce(const char *call, mp_comm *c, const void *send, const void *recv,
                        size_t count, mp_type type, mp_op op, bool writes, double timeout,
                        int64_t *dl)
{
    size_t bytes = 0;
    int rc = coll_begin(call, c, timeout, dl);
    if (rc == 0)
        rc = check_count(call, type, count, 1, &bytes);
    if (rc == 0 && (rc = mp__op_check(op, type)) < 0)
        rc = mp__fail(rc, "%s: op must apply to type (got op %d, type %d)", call, (int)op,
                      (int)type);
    if (rc == 0 && (check_buf(call, "send", send, bytes) < 0 ||
                    (writes && check_buf(call, "recv", recv, bytes) < 0) ||
                    (writes && check_apart(call, send, bytes, recv, bytes) < 0)))
        rc = MP_EINVAL;
    return rc;
}

int mp_comm_reduce(mp_comm *c, const void *send, void *recv, size_t count, mp_type type, mp_op op,
                   int root, double timeout)
{
    int64_t dl = MP__NO_DEADLINE;
    int rc = check_comm(__func__, c);
    if (rc == 0)
        rc = check_rank(__func__, "root", c, root);
    if (rc == 0)
        rc = check_reduce(__func__, c, send, recv, count, type, op, c->rank == root, timeout, &dl);
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
    int rc = check_reduce(__func__, c, send, recv, count, type, op, true, timeout, &dl);
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
    int rc = check_reduce(__func__, c, send, recv, count, type, op, true, timeout, &dl);
    if (rc < 0)
        return rc;
    rc = SLOT(c->ops, scan) ? c->ops->scan(c, send, recv, count, type, op, dl)
                            : mp__coll_scan(c, send, recv, count, type, op, dl);
    return coll_done(c, rc);
}
