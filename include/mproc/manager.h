/**
 * @file
 * mproc/manager.h - a server process holding shared objects (Python's
 * multiprocessing.Manager and BaseManager), for related and unrelated
 * processes, on this machine and across the network.
 *
 * Included by <mproc.h>.
 *
 * A manager is a server process that owns a store of named objects - dict,
 * list, Namespace, Lock, RLock, Semaphore, BoundedSemaphore, Condition,
 * Event, Barrier, Queue, Value and Array - and clients that reach them
 * through handles.  mp_manager_start() starts a server (a child of the
 * caller that dies with it, unless started detached) and connects to it;
 * mp_manager_connect() connects any process - a child, an unrelated
 * program, a program on another host - to a running server, given its
 * address and its authentication key.  `mproc-manager --listen ADDRESS
 * --authkey-file FILE` is the standalone server (mp_manager_serve()).
 *
 * Addresses.
 *   NULL (mp_manager_start only)  a private Unix socket in the abstract
 *                          namespace: nothing on the file system
 *   "unix:@NAME"           a Unix socket in the abstract namespace
 *   "unix:/PATH"           a Unix socket at PATH, removed when the server
 *                          stops
 *   "tcp://HOST:PORT"      TCP, for other machines; HOST is an IPv4 or IPv6
 *                          address or a host name, PORT 0 picks a free port
 *                          (mp_manager_address() tells which)
 *
 * Security.  Every connection starts with a mutual challenge-response on
 * the authentication key (keyed BLAKE2b over fresh nonces of both sides,
 * compared in constant time, libsodium): a client without the key gets
 * MP_EAUTH and the server logs the attempt; a server without it is
 * refused by the client the same way.  Over TCP every later frame is
 * encrypted and authenticated (ChaCha20-Poly1305 with keys derived from
 * the key and both nonces, and a frame counter), so that a man in the
 * middle can neither read, alter, reorder nor replay requests.  Nothing a
 * client sends is ever executed: requests are plain data (an operation
 * code and byte strings) checked against hard limits (MP_MANAGER_MAX_*).
 * Without libsodium at build time mp_manager_available() is false and
 * the calls that start or connect return MP_ENOTSUP.
 *
 * Speed.  A client on the same machine connected over a Unix socket maps
 * the server's store (a memory file the server hands it after
 * authentication) and performs every operation on it directly, under the
 * store's lock: no message, no context switch, and so about as fast as the
 * process-shared objects of mproc/sync.h.  Other clients - TCP, or
 * mp_manager_client_opts.no_fastpath - send each operation to the server,
 * which performs the same code on their behalf.  A local client killed at
 * any instant, even inside an operation, leaves the store consistent: the
 * next operation rolls back whatever the dead one had half done.
 *
 * Objects.  Every object has a name (at most MP_MANAGER_MAX_NAME bytes);
 * mp_X_new(m, name, ..., &h) attaches to the object of that name or
 * creates it (the creation arguments count only then), so that unrelated
 * processes meet at a name.  A NULL name makes a new anonymous object,
 * reachable only through the handle and its copies in forked children.
 * Objects live until removed (mp_manager_remove) or until the server
 * stops; a handle is only the client's reference and is freed with
 * mp_X_free, which never touches the object.  A name held by an object of
 * another type gives MP_ETYPE; a handle to a removed object, MP_ENOOBJ.
 *
 * Locks held by a client are released by the server when the client's
 * connection ends - when it calls mp_manager_free, exits, or is killed -
 * so that a dead holder deadlocks nobody; the next acquirer gets the lock
 * normally.  Semaphore units are not owned and are not given back (as in
 * Python).
 *
 * Timeouts and failures.  Calls that wait for a state (acquire, wait, a
 * queue's get and put) take a timeout in seconds (MP_FOREVER, 0 polls);
 * every other call of a remote client is bounded by the connection's
 * rpc_timeout.  When the server dies, every client gets MP_ECONNRESET at
 * its next call, and a call waiting in the store returns it within 50 ms.
 *
 * Processes and threads.  A handle may be used from several threads; a
 * remote connection carries one call at a time, so threads that wait on
 * objects at the same time should each use their own mp_manager_connect.
 * After fork, a child using its parent's handles connects again on its
 * first call, as a client of its own (the server must see each process's
 * end apart).  Children started by spawn or forkserver connect themselves
 * with the address and key.
 */
#ifndef MPROC_MANAGER_H
#define MPROC_MANAGER_H

#include <sys/types.h>

#include "common.h"
#include "process.h"
#include "value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits (the server enforces them on every request) ------------------ */

/** Longest object name, in bytes (without the terminating NUL). */
#define MP_MANAGER_MAX_NAME 63
/** Longest dict key or Namespace field, in bytes (without the NUL). */
#define MP_MANAGER_MAX_KEY 4096
/** Largest value: dict value, list item, queue message, in bytes. */
#define MP_MANAGER_MAX_VALUE ((size_t)8 << 20)
/** Largest frame on the wire, in bytes, header included. */
#define MP_MANAGER_MAX_FRAME ((size_t)16 << 20)
/** Most pairs or items in one update, extend, or list of results. */
#define MP_MANAGER_MAX_BATCH 256
/** Most operations in one dict transaction (transactions do not nest). */
#define MP_MANAGER_MAX_TXN 16
/** Most objects a server holds at once. */
#define MP_MANAGER_MAX_OBJECTS 4096
/** Most items a keys / items / slice answer carries (MP_E2BIG beyond). */
#define MP_MANAGER_MAX_ITEMS 65536
/** Longest authentication key, in bytes. */
#define MP_MANAGER_MAX_AUTHKEY 1024

/** A handle on a manager server: the process that started it, or a client connected to it. */
typedef struct mp_manager mp_manager;

/** Options for mp_manager_start() and mp_manager_serve().  Always start
 * from MP_MANAGER_OPTS_INIT. */
typedef struct mp_manager_opts {
    /** Where to listen (see Addresses above).  NULL: a private abstract
     * Unix socket.  With a TCP address the server also listens on a
     * private Unix socket, through which the starter and its forked
     * children reach the store directly. */
    const char *address;
    /** The authentication key, copied.  NULL: 32 random bytes
     * (mp_manager_authkey() hands them out).  1 to MP_MANAGER_MAX_AUTHKEY
     * bytes; use at least 16 random ones. */
    const void *authkey;
    size_t authkey_len; /**< the length of authkey in bytes; 0 with a NULL authkey */
    /** Bytes of shared memory for the store: its ceiling, not its use
     * (pages are taken as they are written).  0: 256 MiB. */
    size_t memory;
    /** Most clients connected at once; more are refused.  0: 256. */
    int max_clients;
    /** Not tied to the starter: the server keeps running when the process
     * that started it exits, until mp_manager_shutdown() or SIGTERM. */
    bool detached;
    /** How long mp_manager_start() waits for the server to be ready. */
    double timeout;
    /** How mp_manager_start() starts the server.  MP_START_FORK forks the
     * caller (the fastest start; refused with MP_ETHREADS while another
     * thread runs, MP_ENOTSUP under an MPI engine that forbids fork);
     * MP_START_SPAWN and MP_START_FORKSERVER run it in a fresh image of the
     * program, which is safe from any thread; MP_START_AUTO forks when
     * that is safe, else takes a fresh image; MP_START_DEFAULT (what
     * MP_MANAGER_OPTS_INIT sets) follows mp_get_start_method().  A fresh
     * image receives its key and options over a socket, never in its
     * command line or environment. */
    mp_start_method start_method;
} mp_manager_opts;

/** The defaults of mp_manager_opts: a private Unix socket, a random key, 256 MiB, 256 clients, tied
 * to the starter, 30 s to start, the program's start method. */
#define MP_MANAGER_OPTS_INIT                               \
    {                                                      \
        NULL, NULL, 0, 0, 0, false, 30.0, MP_START_DEFAULT \
    }

/** Options for mp_manager_connect_opts().  Start from
 * MP_MANAGER_CLIENT_OPTS_INIT. */
typedef struct mp_manager_client_opts {
    const char *address; /**< where the server listens (required): as mp_manager_connect() */
    const void *authkey; /**< the server's authentication key (required) */
    size_t authkey_len;  /**< its length in bytes, 1 to MP_MANAGER_MAX_AUTHKEY */
    /** Limit for connecting and authenticating, in seconds. */
    double timeout;
    /** Limit for the answer to a call that does not wait for a state, in
     * seconds, on a remote connection; MP_FOREVER for none. */
    double rpc_timeout;
    /** Send every operation to the server even over a local Unix socket
     * (the store is not mapped). */
    bool no_fastpath;
    /** Encrypt over a Unix socket too (TCP always is); implies
     * no_fastpath. */
    bool encrypt;
} mp_manager_client_opts;

/** The defaults of mp_manager_client_opts: 30 s to connect and for each call, the fast path where
 * it can be had, encryption over TCP only. */
#define MP_MANAGER_CLIENT_OPTS_INIT             \
    {                                           \
        NULL, NULL, 0, 30.0, 30.0, false, false \
    }

/** Whether this build of the library has the manager (it needs libsodium). */
MP_EXTERN bool mp_manager_available(void);

/**
 * Starts a manager server process and connects to it.  opts may be NULL
 * (the defaults).  The server is a child of the caller that ends when the
 * caller ends (even by SIGKILL) unless opts->detached; it ignores SIGINT
 * (a Ctrl-C is the program's to handle) and stops on SIGTERM.  Linux ties
 * "ends with the caller" to the calling thread: start it from a thread
 * that outlives it.  A fork of the caller or a fresh image of the program,
 * as opts->start_method says (a fresh image whenever another thread runs,
 * by default).  Blocks until the server is ready, at most opts->timeout.
 * Returns 0 and sets *out; MP_EINVAL (a bad address or option),
 * MP_EADDRINUSE, MP_ETIMEDOUT (the server did not answer in time: it is
 * killed), MP_ECHILD (the server ended before it was ready),
 * MP_ETHREADS or MP_ENOTSUP (MP_START_FORK refused, see start_method),
 * MP_ENOTSUP (no libsodium), or the error that stopped the server.
 */
MP_EXTERN int mp_manager_start(const mp_manager_opts *opts, mp_manager **out);

/**
 * Runs a manager server in the calling process until it is shut down
 * (mp_manager_shutdown from a client, SIGTERM or SIGINT): Python's
 * serve_forever.  opts->address is required; opts->authkey too.  Prints
 * nothing; logs (mp_log) each refused connection.  Returns 0 after an
 * orderly shutdown, or the error that kept it from serving.  Installs
 * handlers for SIGTERM and SIGINT while it runs.
 */
MP_EXTERN int mp_manager_serve(const mp_manager_opts *opts);

/** As mp_manager_serve(), telling ready(address, arg) - the address as
 * bound, with the port picked - once the server listens. */
MP_EXTERN int mp_manager_serve_notify(const mp_manager_opts *opts,
                                      void (*ready)(const char *address, void *arg), void *arg);

/**
 * Connects to the server at address with the key (keylen bytes), within
 * 30 seconds.  Returns 0 and sets *out; MP_EAUTH when the key is wrong
 * (either side's), MP_ECONNREFUSED when nobody listens, MP_EPROTO for
 * something that is not an mproc manager, MP_ETIMEDOUT, MP_EINVAL.
 */
MP_EXTERN int mp_manager_connect(const char *address, const void *authkey, size_t keylen,
                                 mp_manager **out);

/** As mp_manager_connect(), with options. */
MP_EXTERN int mp_manager_connect_opts(const mp_manager_client_opts *opts, mp_manager **out);

/**
 * Asks the server to stop: it refuses new calls, ends every connection
 * (their clients get MP_ECONNRESET), removes its socket file, and exits.
 * From the process that started it, also waits for it to exit, at most
 * timeout seconds (MP_ETIMEDOUT; it is then killed).  Any authenticated
 * client may ask.  Returns 0 or an error; the handle stays to be freed.
 */
MP_EXTERN int mp_manager_shutdown(mp_manager *m, double timeout);

/**
 * Disconnects and frees the handle (handles of its objects must be freed
 * too, before or after).  In the process that started a server that is
 * not detached, also stops the server at once (SIGKILL) and reaps it.
 * Never waits otherwise.  NULL is a no-op.
 */
MP_EXTERN void mp_manager_free(mp_manager *m);

/** The address clients connect to (with the port the kernel picked); the
 * string belongs to the handle. */
MP_EXTERN const char *mp_manager_address(const mp_manager *m);

/** Copies the authentication key into buf (up to cap bytes).  Returns its
 * length (which may exceed cap), or MP_EINVAL. */
MP_EXTERN int mp_manager_authkey(const mp_manager *m, void *buf, size_t cap);

/** The server's pid, for a manager this process started; 0 otherwise. */
MP_EXTERN pid_t mp_manager_pid(const mp_manager *m);

/** Whether this handle reaches the store directly (the local fast path). */
MP_EXTERN bool mp_manager_is_local(const mp_manager *m);

/** The kinds of object, as mp_manager_type() reports them. */
typedef enum mp_mtype {
    MP_MDICT = 1,
    MP_MLIST,
    MP_MNAMESPACE,
    MP_MLOCK,
    MP_MRLOCK,
    MP_MSEM,
    MP_MBOUNDEDSEM,
    MP_MCOND,
    MP_MEVENT,
    MP_MBARRIER,
    MP_MQUEUE,
    MP_MVALUE,
    MP_MARRAY
} mp_mtype;

/** The type of the object called name (an mp_mtype), or MP_ENOOBJ. */
MP_EXTERN int mp_manager_type(mp_manager *m, const char *name);

/**
 * Removes the object called name: its memory is freed, handles to it get
 * MP_ENOOBJ, and calls waiting on it return MP_ENOOBJ.  Returns 0 or
 * MP_ENOOBJ.
 */
MP_EXTERN int mp_manager_remove(mp_manager *m, const char *name);

/* ---- results with many items -------------------------------------------- */

/** One item: a dict key and value, or a list item (key NULL). */
typedef struct mp_mitem {
    const char *key;   /**< the dict key (NUL-terminated), or NULL for a list item */
    const void *value; /**< the value bytes (followed by a NUL byte in results) */
    size_t len;        /**< the value's length in bytes */
} mp_mitem;

/** What keys, items and slice return: n items, in one allocation that
 * mp_mitems_free releases.  Keys are NUL-terminated; values are followed
 * by a NUL byte too (not counted in len), for text. */
typedef struct mp_mitems {
    size_t n;        /**< the number of items */
    mp_mitem item[]; /**< the items */
} mp_mitems;

/** Frees a result of keys, items or slice.  NULL is a no-op. */
MP_EXTERN void mp_mitems_free(mp_mitems *items);

/** The manager's dict: string keys, byte values.
 *
 * Every operation is atomic.  get copies the value into buf (cap bytes)
 * and sets *len; a buffer too small gets MP_EMSGSIZE with *len the size
 * needed (nothing is removed then).  An absent key gets MP_ENOKEY.  Keys
 * are NUL-terminated strings of 1 to MP_MANAGER_MAX_KEY bytes.
 */
typedef struct mp_mdict mp_mdict;

/** Opens the dict called name on the server, creating it empty if it does not exist (NULL: a new
 * anonymous one); MP_ETYPE when name is another kind of object.  Sets *out. */
MP_EXTERN int mp_mdict_new(mp_manager *m, const char *name, mp_mdict **out);
/** Frees the handle; the dict stays on the server (mp_manager_remove() deletes it).  NULL is a no-
 * op. */
MP_EXTERN void mp_mdict_free(mp_mdict *d);
/** Sets key to len bytes at val (at most MP_MANAGER_MAX_VALUE), replacing any value. */
MP_EXTERN int mp_mdict_set(mp_mdict *d, const char *key, const void *val, size_t len);
/** Copies the value of key into buf (cap bytes) and its size into *len; MP_ENOKEY, or MP_EMSGSIZE
 * with *len the size needed. */
MP_EXTERN int mp_mdict_get(mp_mdict *d, const char *key, void *buf, size_t cap, size_t *len);
/** As get, into a malloc'ed buffer (NUL-terminated, not counted in *len)
 * that the caller frees. */
MP_EXTERN int mp_mdict_get_alloc(mp_mdict *d, const char *key, void **val, size_t *len);
/** Removes key; MP_ENOKEY if absent. */
MP_EXTERN int mp_mdict_del(mp_mdict *d, const char *key);
/** 1 if key is present, 0 if not, or an error. */
MP_EXTERN int mp_mdict_contains(mp_mdict *d, const char *key);
/** The number of keys, or an error. */
MP_EXTERN int mp_mdict_len(mp_mdict *d);
/** Removes key and hands its value back (as get); MP_ENOKEY if absent. */
MP_EXTERN int mp_mdict_pop(mp_mdict *d, const char *key, void *buf, size_t cap, size_t *len);
/** get-or-set: inserts key with dflt when absent; copies the value now
 * held into buf (as get; buf may be NULL).  Returns 1 when it inserted, 0
 * when the key was there. */
MP_EXTERN int mp_mdict_setdefault(mp_mdict *d, const char *key, const void *dflt, size_t dlen,
                                  void *buf, size_t cap, size_t *len);
/** Sets n pairs (items[i].key, .value, .len) atomically, n at most
 * MP_MANAGER_MAX_BATCH. */
MP_EXTERN int mp_mdict_update(mp_mdict *d, const mp_mitem *items, size_t n);
/** Removes every key. */
MP_EXTERN int mp_mdict_clear(mp_mdict *d);
/** The keys (values NULL) or the pairs, in no particular order; at most
 * MP_MANAGER_MAX_ITEMS (MP_E2BIG beyond).  Returns the count. */
MP_EXTERN int mp_mdict_keys(mp_mdict *d, mp_mitems **out);
/** The pairs, in no particular order, as mp_mdict_keys(); returns the count. */
MP_EXTERN int mp_mdict_items(mp_mdict *d, mp_mitems **out);

/** Counters: values of exactly 8 bytes, a little-endian int64.  incr adds
 * delta (an absent key counts as 0) and hands back the new value; a value
 * of another size gets MP_EINVAL; overflow gets MP_EOVERFLOW.  Atomic:
 * no lock needed around it, unlike `d[k] += 1` in Python. */
MP_EXTERN int mp_mdict_incr(mp_mdict *d, const char *key, int64_t delta, int64_t *result);
/** Sets key to the 8-byte counter x. */
MP_EXTERN int mp_mdict_set_i64(mp_mdict *d, const char *key, int64_t x);
/** Reads the 8-byte counter at key into *x; MP_ENOKEY, or MP_EINVAL for a value of another size. */
MP_EXTERN int mp_mdict_get_i64(mp_mdict *d, const char *key, int64_t *x);

/** Compare-and-set: sets key to desired only if it holds exactly expected
 * (elen bytes; expected NULL: only if key is absent).  Returns 1 when it
 * set, 0 when the value differed. */
MP_EXTERN int mp_mdict_cas(mp_mdict *d, const char *key, const void *expected, size_t elen,
                           const void *desired, size_t dlen);

/** A short transaction over several keys of one dict: the operations run in
 * order, atomically, and either all take effect or none does. */
typedef enum mp_mdict_txn_kind {
    MP_MTXN_SET = 1, /**< key = value */
    MP_MTXN_DEL,     /**< remove key (absent: status MP_ENOKEY, not a failure) */
    MP_MTXN_INCR,    /**< counter += delta; the new value in result */
    MP_MTXN_CHECK,   /**< key holds exactly value (value NULL: key absent) */
    MP_MTXN_GET      /**< value into buf (cap bytes), its size in out_len */
} mp_mdict_txn_kind;

/** One operation of mp_mdict_txn(): what to do (kind, key, value, delta) and, after the call, what
 * it gave (buf, out_len, result, status). */
typedef struct mp_mdict_op {
    int kind;          /**< mp_mdict_txn_kind */
    const char *key;   /**< the key it works on */
    const void *value; /**< SET: the new value; CHECK: the value expected (NULL: absent) */
    size_t len;        /**< the length of value in bytes */
    int64_t delta;     /**< INCR: what to add */
    void *buf;         /**< GET: where the value is copied */
    size_t cap;        /**< GET: the size of buf */
    size_t out_len;    /**< GET: the value's size (the size needed when buf is too small) */
    int64_t result;    /**< INCR: the new value */
    int status;        /**< 0, or this operation's error */
} mp_mdict_op;

/**
 * Runs n (1 to MP_MANAGER_MAX_TXN) operations as one.  Returns 1 when they
 * took effect; 0 when a CHECK failed (its status is MP_ECANCELED) and
 * nothing changed; or an error (MP_EINVAL for a bad operation, whose
 * status says why; MP_ENOSPC) and nothing changed.
 */
MP_EXTERN int mp_mdict_txn(mp_mdict *d, mp_mdict_op *ops, size_t n);

/** The manager's list: byte items.
 *
 * Indexes are Python's: negative ones count from the end; out of range
 * gets MP_ERANGE (insert clamps, as Python's does).
 */
typedef struct mp_mlist mp_mlist;

/** Opens the list called name on the server, creating it empty if it does not exist (NULL: a new
 * anonymous one); MP_ETYPE when name is another kind of object.  Sets *out. */
MP_EXTERN int mp_mlist_new(mp_manager *m, const char *name, mp_mlist **out);
/** Frees the handle; the list stays on the server.  NULL is a no-op. */
MP_EXTERN void mp_mlist_free(mp_mlist *l);
/** Appends; returns the new length (atomically: no other append between). */
MP_EXTERN int mp_mlist_append(mp_mlist *l, const void *val, size_t len);
/** Appends n items (items[i].value, .len); returns the new length. */
MP_EXTERN int mp_mlist_extend(mp_mlist *l, const mp_mitem *items, size_t n);
/** Copies the item at index into buf (cap bytes), its size into *len; MP_ERANGE, or MP_EMSGSIZE
 * with *len the size needed. */
MP_EXTERN int mp_mlist_get(mp_mlist *l, int64_t index, void *buf, size_t cap, size_t *len);
/** As mp_mlist_get(), into a malloc'ed buffer (NUL-terminated, not counted in *len) that the caller
 * frees. */
MP_EXTERN int mp_mlist_get_alloc(mp_mlist *l, int64_t index, void **val, size_t *len);
/** Replaces the item at index; MP_ERANGE out of range. */
MP_EXTERN int mp_mlist_set(mp_mlist *l, int64_t index, const void *val, size_t len);
/** Inserts before index (clamped to the list, as Python does); returns the new length. */
MP_EXTERN int mp_mlist_insert(mp_mlist *l, int64_t index, const void *val, size_t len);
/** Removes the item at index (-1: the last) and hands it back. */
MP_EXTERN int mp_mlist_pop(mp_mlist *l, int64_t index, void *buf, size_t cap, size_t *len);
/** Removes the first item equal to val; MP_ENOKEY if none is. */
MP_EXTERN int mp_mlist_remove(mp_mlist *l, const void *val, size_t len);
/** The number of items, or an error. */
MP_EXTERN int mp_mlist_len(mp_mlist *l);
/** Removes every item. */
MP_EXTERN int mp_mlist_clear(mp_mlist *l);
/** Items [start, stop) with Python's slice rules (no step); returns the
 * count, at most MP_MANAGER_MAX_ITEMS. */
MP_EXTERN int mp_mlist_slice(mp_mlist *l, int64_t start, int64_t stop, mp_mitems **out);

/** The manager's Namespace: named fields. */
typedef struct mp_mnamespace mp_mnamespace;

/** Opens the Namespace called name on the server, creating it empty if it does not exist (NULL: a
 * new anonymous one); MP_ETYPE when name is another kind of object.  Sets *out. */
MP_EXTERN int mp_mnamespace_new(mp_manager *m, const char *name, mp_mnamespace **out);
/** Frees the handle; the Namespace stays on the server.  NULL is a no-op. */
MP_EXTERN void mp_mnamespace_free(mp_mnamespace *ns);
/** Sets field (a NUL-terminated name) to len bytes at val. */
MP_EXTERN int mp_mnamespace_set(mp_mnamespace *ns, const char *field, const void *val, size_t len);
/** Copies the value of field into buf (cap bytes), its size into *len; MP_ENOKEY, or MP_EMSGSIZE
 * with *len the size needed. */
MP_EXTERN int mp_mnamespace_get(mp_mnamespace *ns, const char *field, void *buf, size_t cap,
                                size_t *len);
/** Removes field; MP_ENOKEY if absent. */
MP_EXTERN int mp_mnamespace_del(mp_mnamespace *ns, const char *field);
/** The fields and their values, as mp_mdict_items. */
MP_EXTERN int mp_mnamespace_items(mp_mnamespace *ns, mp_mitems **out);

/** The manager's Lock and RLock.
 *
 * Owned by the calling thread of the calling client.  acquire returns 0,
 * MP_ETIMEDOUT, or MP_EDEADLK when a Lock's holder asks again; an RLock
 * counts.  release by anyone but the holder gets MP_EPERM.  A holder's
 * death releases the lock (see the top of this file).
 */
typedef struct mp_mlock mp_mlock;

/** Opens the Lock called name, creating it if it does not exist; MP_ETYPE for another kind.  Sets
 * *out. */
MP_EXTERN int mp_mlock_new(mp_manager *m, const char *name, mp_mlock **out);
/** Opens the RLock called name (the holder may take it again; it counts), creating it if it does
 * not exist.  Sets *out. */
MP_EXTERN int mp_mrlock_new(mp_manager *m, const char *name, mp_mlock **out);
/** Frees the handle; the lock stays on the server (a holder releases it when its connection ends).
 * NULL is a no-op. */
MP_EXTERN void mp_mlock_free(mp_mlock *l);
/** Takes the lock, waiting up to timeout: 0, MP_ETIMEDOUT, MP_EDEADLK (a Lock's holder asking
 * again). */
MP_EXTERN int mp_mlock_acquire(mp_mlock *l, double timeout);
/** Releases the lock (an RLock one level); MP_EPERM when the caller does not hold it. */
MP_EXTERN int mp_mlock_release(mp_mlock *l);

/** The manager's Semaphore and BoundedSemaphore. */
typedef struct mp_msem mp_msem;

/** value: the initial count (at most INT32_MAX).  A bounded semaphore
 * refuses a release above it with MP_EOVERFLOW. */
MP_EXTERN int mp_msem_new(mp_manager *m, const char *name, unsigned value, mp_msem **out);
/** As mp_msem_new(), for a BoundedSemaphore: a release above the initial value gets
 * MP_EOVERFLOW. */
MP_EXTERN int mp_msem_new_bounded(mp_manager *m, const char *name, unsigned value, mp_msem **out);
/** Frees the handle.  NULL is a no-op. */
MP_EXTERN void mp_msem_free(mp_msem *s);
/** Takes one unit, waiting up to timeout: 0 or MP_ETIMEDOUT. */
MP_EXTERN int mp_msem_acquire(mp_msem *s, double timeout);
/** Gives one unit back; MP_EOVERFLOW above a bounded semaphore's initial value. */
MP_EXTERN int mp_msem_release(mp_msem *s);
/** The current count, or an error. */
MP_EXTERN int mp_msem_value(mp_msem *s);

/** The manager's Condition (with its own RLock).
 *
 * wait and notify need the lock (MP_EPERM otherwise).  wait releases it
 * fully, sleeps until notified or the timeout, and takes it back (waiting
 * as long as that takes) before it returns 0 or MP_ETIMEDOUT.  notify(n)
 * wakes n waiters (fewer if fewer wait; rarely, a waiter that came later
 * takes the place of an earlier one); notify_all wakes every waiter.
 */
typedef struct mp_mcond mp_mcond;

/** Opens the Condition called name, creating it (with its own RLock) if it does not exist.  Sets
 * *out. */
MP_EXTERN int mp_mcond_new(mp_manager *m, const char *name, mp_mcond **out);
/** Frees the handle.  NULL is a no-op. */
MP_EXTERN void mp_mcond_free(mp_mcond *c);
/** Takes the condition's lock, waiting up to timeout: 0 or MP_ETIMEDOUT. */
MP_EXTERN int mp_mcond_acquire(mp_mcond *c, double timeout);
/** Releases the condition's lock; MP_EPERM when the caller does not hold it. */
MP_EXTERN int mp_mcond_release(mp_mcond *c);
/** Releases the lock, waits to be notified (up to timeout), takes the lock back: 0 or MP_ETIMEDOUT;
 * MP_EPERM without the lock. */
MP_EXTERN int mp_mcond_wait(mp_mcond *c, double timeout);
/** Wakes up to n waiters; MP_EPERM without the lock. */
MP_EXTERN int mp_mcond_notify(mp_mcond *c, int n);
/** Wakes every waiter; MP_EPERM without the lock. */
MP_EXTERN int mp_mcond_notify_all(mp_mcond *c);

/** The manager's Event. */
typedef struct mp_mevent mp_mevent;

/** Opens the Event called name, creating it (not set) if it does not exist.  Sets *out. */
MP_EXTERN int mp_mevent_new(mp_manager *m, const char *name, mp_mevent **out);
/** Frees the handle.  NULL is a no-op. */
MP_EXTERN void mp_mevent_free(mp_mevent *e);
/** Sets the event, waking every waiter. */
MP_EXTERN int mp_mevent_set(mp_mevent *e);
/** Clears the event. */
MP_EXTERN int mp_mevent_clear(mp_mevent *e);
/** 1 if set, 0 if not, or an error. */
MP_EXTERN int mp_mevent_is_set(mp_mevent *e);
/** 0 once set, MP_ETIMEDOUT. */
MP_EXTERN int mp_mevent_wait(mp_mevent *e, double timeout);

/** The manager's Barrier.
 *
 * wait returns this party's arrival index (0 .. parties-1) when all have
 * arrived; MP_EBROKEN when the barrier is or becomes broken (abort, reset
 * during the wait, or a waiter's timeout, which breaks it for all, as in
 * Python); MP_ETIMEDOUT to the waiter whose time ran out.
 */
typedef struct mp_mbarrier mp_mbarrier;

/** Opens the Barrier called name for parties parties (1 or more), creating it if it does not exist.
 * Sets *out. */
MP_EXTERN int mp_mbarrier_new(mp_manager *m, const char *name, unsigned parties, mp_mbarrier **out);
/** Frees the handle.  NULL is a no-op. */
MP_EXTERN void mp_mbarrier_free(mp_mbarrier *b);
/** Waits for all parties, up to timeout: this party's arrival index, MP_EBROKEN or MP_ETIMEDOUT
 * (see above). */
MP_EXTERN int mp_mbarrier_wait(mp_mbarrier *b, double timeout);
/** Breaks the barrier: current and later waiters get MP_EBROKEN until a reset. */
MP_EXTERN int mp_mbarrier_abort(mp_mbarrier *b);
/** Returns the barrier to its initial state; current waiters get MP_EBROKEN. */
MP_EXTERN int mp_mbarrier_reset(mp_mbarrier *b);
/** 1 if broken, 0 if not, or an error. */
MP_EXTERN int mp_mbarrier_broken(mp_mbarrier *b);

/** The manager's Queue: byte messages, first in first out. */
typedef struct mp_mqueue mp_mqueue;

/** maxsize: the most messages it holds (0: no limit but memory). */
MP_EXTERN int mp_mqueue_new(mp_manager *m, const char *name, unsigned maxsize, mp_mqueue **out);
/** Frees the handle; the queue and its messages stay on the server.  NULL is a no-op. */
MP_EXTERN void mp_mqueue_free(mp_mqueue *q);
/** Waits for room up to timeout: 0, MP_ETIMEDOUT (full). */
MP_EXTERN int mp_mqueue_put(mp_mqueue *q, const void *buf, size_t len, double timeout);
/** Waits for a message up to timeout: 0, MP_ETIMEDOUT (empty), MP_EMSGSIZE
 * (buffer too small: *len is the size needed and the message stays). */
MP_EXTERN int mp_mqueue_get(mp_mqueue *q, void *buf, size_t cap, size_t *len, double timeout);
/** As mp_mqueue_get(), into a malloc'ed buffer that the caller frees. */
MP_EXTERN int mp_mqueue_get_alloc(mp_mqueue *q, void **buf, size_t *len, double timeout);
/** The number of messages, or an error. */
MP_EXTERN int mp_mqueue_qsize(mp_mqueue *q);

/** The manager's Value and Array of numbers (Python's typecodes, mproc/value.h).
 *
 * Integers are held as int64, floating-point as double; a set outside the
 * type's range gets MP_ERANGE, a double into an integer type (or the
 * reverse) MP_EINVAL.  MP_TYPE_c is an integer 0..255.
 */
typedef struct mp_mvalue mp_mvalue;

/** Opens the Value called name of type, creating it (zero) if it does not exist.  Sets *out. */
MP_EXTERN int mp_mvalue_new(mp_manager *m, const char *name, mp_type type, mp_mvalue **out);
/** Frees the handle.  NULL is a no-op. */
MP_EXTERN void mp_mvalue_free(mp_mvalue *v);
/** Reads an integer value into *x; MP_EINVAL for a floating-point type. */
MP_EXTERN int mp_mvalue_get_i64(mp_mvalue *v, int64_t *x);
/** Sets an integer value; MP_ERANGE outside the type's range. */
MP_EXTERN int mp_mvalue_set_i64(mp_mvalue *v, int64_t x);
/** Reads a floating-point value into *x; MP_EINVAL for an integer type. */
MP_EXTERN int mp_mvalue_get_double(mp_mvalue *v, double *x);
/** Sets a floating-point value; MP_EINVAL for an integer type. */
MP_EXTERN int mp_mvalue_set_double(mp_mvalue *v, double x);
/** Adds delta to an integer value atomically; *old (may be NULL) gets the
 * value before.  MP_ERANGE if the result leaves the type's range. */
MP_EXTERN int mp_mvalue_fetch_add(mp_mvalue *v, int64_t delta, int64_t *old);

/** A handle on an Array of numbers held by a manager. */
typedef struct mp_marray mp_marray;

/** n elements (1 to 1 << 20), zero. */
MP_EXTERN int mp_marray_new(mp_manager *m, const char *name, mp_type type, size_t n,
                            mp_marray **out);
/** Frees the handle.  NULL is a no-op. */
MP_EXTERN void mp_marray_free(mp_marray *a);
/** The number of elements, or an error. */
MP_EXTERN int mp_marray_len(mp_marray *a);
/** Reads element i of an integer array into *x; MP_ERANGE when i is out of range. */
MP_EXTERN int mp_marray_get_i64(mp_marray *a, size_t i, int64_t *x);
/** Sets element i of an integer array; MP_ERANGE out of range or outside the type's range. */
MP_EXTERN int mp_marray_set_i64(mp_marray *a, size_t i, int64_t x);
/** Reads element i of a floating-point array into *x; MP_ERANGE when i is out of range. */
MP_EXTERN int mp_marray_get_double(mp_marray *a, size_t i, double *x);
/** Sets element i of a floating-point array; MP_ERANGE when i is out of range. */
MP_EXTERN int mp_marray_set_double(mp_marray *a, size_t i, double x);
/** n elements from start; atomically when n is at most 8192, in atomic
 * chunks of 8192 beyond. */
MP_EXTERN int mp_marray_read_i64(mp_marray *a, size_t start, size_t n, int64_t *out);
/** Writes n elements from start, as mp_marray_read_i64() reads them. */
MP_EXTERN int mp_marray_write_i64(mp_marray *a, size_t start, size_t n, const int64_t *in);
/** Reads n elements from start, as mp_marray_read_i64(). */
MP_EXTERN int mp_marray_read_double(mp_marray *a, size_t start, size_t n, double *out);
/** Writes n elements from start, as mp_marray_read_i64(). */
MP_EXTERN int mp_marray_write_double(mp_marray *a, size_t start, size_t n, const double *in);

#ifdef __cplusplus
}
#endif

#endif /* MPROC_MANAGER_H */
