/*
 * platform.h - what the platform layer must provide to the rest of mproc.
 *
 * The modules above src/platform/ use the operating system only through
 * these calls and through portable POSIX.1-2008 (read, write, close, open,
 * poll, mmap of a descriptor, sockets and SCM_RIGHTS, fork, posix_spawn,
 * waitpid/waitid, kill, sigaction, sigaltstack, shm_open, dlopen, pthreads).
 * src/platform/linux/ implements this file for Linux with glibc; a port
 * implements this file and nothing else.  scripts/check_platform.sh (run by
 * `make lint`) keeps it true: above this layer, no file includes
 * sys/prctl.h, sys/signalfd.h, sys/auxv.h, sys/syscall.h, ucontext.h,
 * link.h, execinfo.h or stdio_ext.h, or calls what they declare.
 *
 * Contract, for every call here:
 *   - errors come back as negative MP_E* codes (-errno), never through errno;
 *   - EINTR is retried inside, except where a call says it returns it;
 *   - every descriptor created is close-on-exec, so that a concurrent exec
 *     in another thread never leaks it;
 *   - time is CLOCK_MONOTONIC nanoseconds; a deadline is absolute, with
 *     MP__NO_DEADLINE for "forever";
 *   - a call marked async-signal-safe may be made in a signal handler and
 *     between fork() and exec() in a program with threads; no other may.
 *
 * What a port must preserve beyond the signatures is said at each call:
 * robust mutexes (a dead holder is noticed), a death signal from the
 * parent, descriptors that become readable when a child ends, memory given
 * back through any mapping, and an address namespace for local sockets
 * that leaves nothing behind.
 */
#ifndef MPROC_PLATFORM_H
#define MPROC_PLATFORM_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>

/* ---- time (time.c) ------------------------------------------------------ */

#define MP__NO_DEADLINE INT64_MAX

/* CLOCK_MONOTONIC, in nanoseconds. */
int64_t mp__now_ns(void);

/* The rule of include/mproc/common.h for the times the API takes, in one
 * place.  Every public call that takes a timeout checks it with
 * mp__timeout_check() before anything else, and every duration (a grace
 * period, a limit, an interval) with mp__duration_check(); both return 0,
 * or MP_EINVAL for NaN (and for a duration below 0).  Inline: the queue's
 * put and get pay one comparison for it. */
static inline int mp__timeout_check(double seconds)
{
    return seconds != seconds ? -EINVAL : 0;
}

static inline int mp__duration_check(double seconds)
{
    return seconds != seconds || seconds < 0 ? -EINVAL : 0;
}

/* Seconds as nanoseconds by that rule: rounded to the nearest; INT64_MAX
 * (no limit) for +INFINITY and for anything the clock cannot count; 0 for
 * 0, for values below 0 and for NaN (which callers refused already). */
int64_t mp__seconds_ns(double seconds);

/* start + ns, a time ns nanoseconds after start, saturating: never wraps
 * around, MP__NO_DEADLINE when it is past what the clock can count (or ns
 * is INT64_MAX, "no limit"). */
int64_t mp__time_after(int64_t start, int64_t ns);

/* The absolute deadline for a timeout in seconds, by the same rule:
 * MP__NO_DEADLINE for a negative timeout (MP_FOREVER), +INFINITY and
 * anything too large; now for 0 (and for NaN, which callers refused). */
int64_t mp__deadline(double timeout);

/* Whether a wait cuts its sleep into re-check slices.  Several waits sleep
 * at most a slice (100 ms) at a time and look at their condition again,
 * because a process may die between changing what a sleeper waits for and
 * waking it (or between being woken and acting on it, where the wake-up
 * was meant for it), and nobody else would ever wake that sleeper: the
 * slice bounds what such a death costs the others.  In the library users
 * get this is always true.  In the test build (MPROC_TESTING) the
 * environment variable MPROC_TEST_NO_RECHECK=1 makes it false, so that a
 * wait sleeps until it is woken or its deadline passes and a lost wake-up
 * hangs the test instead of costing a slice; the variable is read at each
 * call, so a wait asks once, when it begins, and a test can change it. */
bool mp__recheck_slices(void);

/* The end of the next sleep of a wait that began with slices = the result
 * of mp__recheck_slices(): deadline, or at most slice_ns from now. */
int64_t mp__slice_end(bool slices, int64_t deadline, int64_t slice_ns);

/* Nanoseconds left until deadline: <= 0 once it passed, INT64_MAX for none. */
int64_t mp__remaining_ns(int64_t deadline);

/* A deadline as a timespec for FUTEX_WAIT_BITSET / ppoll-style calls.
 * Returns false for MP__NO_DEADLINE (no timespec needed). */
bool mp__deadline_timespec(int64_t deadline, struct timespec *abs);

/* Sleeps ns nanoseconds, retrying on EINTR.  For back-off only, never for
 * synchronisation. */
void mp__sleep_ns(int64_t ns);

/* CPU hint for spin loops. */
static inline void mp__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Asks for the line at p in a state this CPU may write, ahead of a store
 * to it.  A plain prefetch fetches it shared, and the store would then
 * still have to take it from every other cache that holds it. */
static inline void mp__prefetch_write(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
    /* PREFETCHW: a CPU without it executes a NOP. */
    __asm__("prefetchw %0" ::"m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

/* ---- futex (futex.c) ---------------------------------------------------- */
/* Futexes here are always process-shared (never FUTEX_PRIVATE_FLAG): the
 * words they wait on live in memory shared between processes. */

/* Sleeps while *word == expected, until woken or the deadline passes.
 * Returns 0 when woken, when *word differed, or on a spurious wake-up (the
 * caller re-checks its condition); MP_ETIMEDOUT at the deadline; MP_EINTR
 * when a signal handler ran (so callers can check cancellation). */
int mp__futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t deadline);

/* Wakes up to n waiters (INT32_MAX: all).  Returns the number woken. */
int mp__futex_wake(_Atomic uint32_t *word, int n);

/* The most words one mp__futex_waitv() call sleeps on. */
#define MP__FUTEX_WAITV_MAX 128

/* Sleeps until any of the n words (1..MP__FUTEX_WAITV_MAX) is woken, or one
 * differs from its expected value, or the deadline passes: one sleep on many
 * words, which a port without such a call can only emulate with threads.
 * Returns >= 0 when woken or when a word differed (the caller re-checks
 * every condition), MP_ETIMEDOUT, MP_EINTR when a signal handler ran,
 * MP_ENOSYS where the kernel lacks the call (Linux before 5.16), or
 * MP_EINVAL for n out of range. */
int mp__futex_waitv(_Atomic uint32_t *const *words, const uint32_t *expected, size_t n,
                    int64_t deadline);

/* ---- robust process-shared mutex (mutex.c) ------------------------------ */
/* A mutex that lives in shared memory and survives the death of its
 * holder: the next locker gets it with MP_EOWNERDEAD and decides whether
 * the state it protects can be repaired.  The kernel does the bookkeeping
 * (robust futex lists), so a SIGKILLed holder is noticed too. */

typedef struct mp__mutex {
    pthread_mutex_t m;
} mp__mutex;

/* Initialises a mutex placed by the caller (in shared memory, zeroed or
 * not).  Returns 0 or -errno. */
int mp__mutex_init(mp__mutex *m);

/* Locks, spinning briefly before sleeping, until the deadline.  Returns 0;
 * MP_EOWNERDEAD when the previous holder died holding it (the caller now
 * holds it and must call mp__mutex_consistent() once the protected state
 * is repaired, or unlock without that to make it unrecoverable);
 * MP_ENOTRECOVERABLE; MP_ETIMEDOUT; MP_EDEADLK if the caller holds it. */
int mp__mutex_lock(mp__mutex *m, int64_t deadline);

/* One attempt.  Returns 0, MP_EOWNERDEAD, MP_EBUSY or MP_ENOTRECOVERABLE. */
int mp__mutex_trylock(mp__mutex *m);

/* Unlocks.  Returns 0, or MP_EPERM when the caller does not hold it. */
int mp__mutex_unlock(mp__mutex *m);

/* Marks the state consistent after MP_EOWNERDEAD.  Returns 0 or -errno. */
int mp__mutex_consistent(mp__mutex *m);

void mp__mutex_destroy(mp__mutex *m);

/* As mp__mutex_init(), for a recursive mutex: its holder may lock it again
 * (each lock needs an unlock) instead of getting MP_EDEADLK. */
int mp__mutex_init_recursive(mp__mutex *m);

/* The thread id of the holder, 0 when free (also once the kernel has
 * marked a dead holder's mutex).  A snapshot: exact only for the holder. */
pid_t mp__mutex_owner_tid(const mp__mutex *m);

/* Whether the calling thread holds the mutex.  No system call. */
bool mp__mutex_is_mine(const mp__mutex *m);

/* How many times the calling thread holds the mutex: 0 when it does not,
 * 1 for a non-recursive mutex it holds, the depth for a recursive one. */
unsigned mp__mutex_depth(const mp__mutex *m);

/* For tests of a recursive mutex's overflow, which four billion
 * acquisitions would take minutes to reach: sets the depth of a recursive
 * mutex the calling thread holds.  Returns 0, or MP_EPERM when it does not
 * hold it. */
int mp__mutex_set_depth(mp__mutex *m, unsigned depth);

/* Initialises a process-private pthread mutex for a lock that many threads
 * take for short moments: it spins briefly before sleeping where the
 * system can (glibc's adaptive mutex).  Returns 0 or -errno. */
int mp__local_mutex_init(pthread_mutex_t *m);

/* ---- thread and process ids, names, spinning (thread.c) ----------------- */

/* The calling thread's id and process's id, cached (no system call after
 * the first) and correct in a child after fork(). */
pid_t mp__self_tid(void);
pid_t mp__self_pid(void);

/* Names the calling thread (what ps, top and gdb show for it); in a
 * process's only thread, that is the process's name.  Longer names are
 * cut to what the system keeps (15 bytes on Linux).  Returns 0 or -errno. */
int mp__thread_set_name(const char *name);

/* Starts a thread running fn(arg), with every signal blocked (signals
 * meant for the program go to the program's own threads) and named name
 * before this returns, so that mp__threads_count() never sees it unnamed.
 * Returns 0 or -errno. */
int mp__thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg);

/* The calling thread's name (what mp__thread_set_name set, or the one it
 * inherited from the thread that created it), NUL-terminated, cut to cap
 * bytes.  Returns 0 or -errno. */
int mp__thread_get_name(char *buf, size_t cap);

/* Counts the threads of this process: *total, and *named, those whose name
 * starts with prefix; *self_named says whether the calling thread is one of
 * them.  No system call while the process has never had a second thread
 * (then *total is 1 and nothing is named: there is nothing to tell apart);
 * otherwise it reads the process's thread list, tens of microseconds.
 * Returns 0 or -errno (then *total is 1 and the others 0). */
int mp__threads_count(const char *prefix, int *total, int *named, bool *self_named);

/* How many times a wait polls its condition before it sleeps in the
 * kernel (each poll followed by a short CPU pause).  Process-wide; set
 * returns the previous value, and a negative value restores the default. */
int mp__spin_get(void);
int mp__spin_set(int polls);

/* ---- descriptors (fd.c) ------------------------------------------------- */

/* pipe2(O_CLOEXEC | flags).  Returns 0 or -errno. */
int mp__pipe(int fds[2], int flags);

/* socketpair(AF_UNIX, type | SOCK_CLOEXEC | flags).  Returns 0 or -errno. */
int mp__socketpair(int type, int fds[2]);

/* Writes all len bytes, retrying on EINTR and short writes; waits in poll()
 * on EAGAIN (for non-blocking descriptors).  Returns 0 or -errno (MP_EPIPE
 * for a closed reader; SIGPIPE is never raised for sockets, and callers
 * writing to pipes must block SIGPIPE or ignore it). */
int mp__write_all(int fd, const void *buf, size_t len);

/* Reads exactly len bytes.  Returns 0, MP_EOF when the stream ends before
 * the first byte, MP_EPROTO when it ends midway, or -errno. */
int mp__read_all(int fd, void *buf, size_t len);

/* Waits until fd is ready for events (POLLIN / POLLOUT) or the deadline
 * passes.  Returns the revents (> 0), MP_ETIMEDOUT, or -errno. */
int mp__poll_fd(int fd, short events, int64_t deadline);

/* O_NONBLOCK on or off.  Returns 0 or -errno. */
int mp__set_nonblock(int fd, bool on);

/* FD_CLOEXEC on or off.  Returns 0 or -errno. */
int mp__set_cloexec(int fd, bool on);

/* Duplicates fd to a descriptor >= min_fd, close-on-exec.  Returns it or
 * -errno. */
int mp__dup_cloexec(int fd, int min_fd);

/* Duplicates fd onto the number to (closing what to was), close-on-exec,
 * atomically: a thread that writes to to meanwhile writes to one file or
 * the other, never to a closed or reused descriptor.  Returns 0 or -errno. */
int mp__dup2_cloexec(int fd, int to);

/* Closes every descriptor numbered lowfd or above.  For a process that must
 * start clean of whatever it inherited.  Cannot fail. */
void mp__close_from(int lowfd);

/* Closes every descriptor from 3 up except those in keep (entries below 3
 * ignored; at most 16 are kept).  For a process that must hold nothing it
 * inherited but what it was given.  Cannot fail. */
void mp__close_fds_except(const int *keep, size_t n);

/* close() that keeps errno and ignores EINTR (on Linux the descriptor is
 * gone even then; retrying could close a descriptor another thread just
 * opened).  Negative fds are ignored. */
void mp__close(int fd);

/* Sends len bytes and up to nfds descriptors in one message over a Unix
 * socket (SCM_RIGHTS).  Returns 0 or -errno.  MSG_NOSIGNAL is always set. */
int mp__send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds);

/* Receives one message of at most cap bytes and up to *nfds descriptors
 * (close-on-exec).  On return *nfds holds how many arrived.  Returns the
 * byte count (0 means the peer closed), or -errno.  Descriptors beyond
 * *nfds that arrived anyway are closed, never leaked. */
ssize_t mp__recv_fds(int sock, void *buf, size_t cap, int *fds, size_t *nfds);

/* recvmsg() that makes every descriptor received with the message
 * close-on-exec as it arrives.  Returns the byte count (0: the peer
 * closed), or -errno; MP_EINTR is returned, not retried, so that the caller
 * can check for cancellation. */
ssize_t mp__recvmsg(int sock, struct msghdr *msg, int flags);

/* A Unix socket of type (SOCK_STREAM, SOCK_SEQPACKET), close-on-exec.
 * Returns it or -errno. */
int mp__unix_socket(int type);

/* Accepts one connection on the listening socket lfd, as a non-blocking,
 * close-on-exec socket.  Blocks while none waits, unless lfd is
 * non-blocking.  Returns it, or -errno (MP_EAGAIN: none waits on a
 * non-blocking lfd). */
int mp__accept(int lfd);

/* The process id and user id of the process at the other end of the
 * connected Unix socket sock, as the kernel vouches for them (either
 * pointer may be NULL).  Returns 0 or -errno. */
int mp__peer_cred(int sock, pid_t *pid, uid_t *uid);

/* The address for name in a namespace of local socket addresses that
 * belongs to no file system: nothing to unlink, and the address is free
 * again once the last socket bound to it is closed, even when its owner was
 * killed (Linux's abstract namespace).  Returns 0, or MP_ENAMETOOLONG. */
int mp__local_address(const char *name, struct sockaddr_un *sa, socklen_t *len);

/* ---- shared memory (shm.c) ---------------------------------------------- */

/* An anonymous memory file of size bytes (memfd_create, close-on-exec,
 * sealable).  name only shows in /proc/<pid>/fd and maps; it is prefixed
 * "mproc-".  Returns the descriptor or -errno. */
int mp__memfd_new(const char *name, size_t size);

/* Maps size bytes of fd shared and read-write.  With hint non-NULL the
 * mapping is placed exactly there or fails (MAP_FIXED_NOREPLACE).  Returns
 * 0 and sets *addr, or -errno. */
int mp__map_fd(int fd, size_t size, void *hint, void **addr);

/* Maps size bytes of anonymous shared memory, zero-filled, inherited by
 * fork.  Returns 0 and sets *addr, or -errno. */
int mp__map_anon_shared(size_t size, void **addr);

/* munmap; NULL is ignored. */
void mp__unmap(void *addr, size_t size);

/* The page size. */
size_t mp__page_size(void);

/* The device and inode of the named segment name ("/name", as for
 * shm_open), without opening it: which segment a name denotes now.
 * Returns 0, or -errno (MP_ENOENT when the name does not exist). */
int mp__shm_identity(const char *name, uint64_t *dev, uint64_t *ino);

/* ---- memory files (memfile.c) ------------------------------------------- */

/* Forbids any later change of a memfd's size (F_SEAL_SHRINK and
 * F_SEAL_GROW), so that no process holding it can make the others' mappings
 * fault by truncating it.  Returns 0 or -errno. */
int mp__memfd_seal_size(int fd);

/* The size of the file behind fd (fstat).  Returns 0 or -errno. */
int mp__fd_size(int fd, size_t *size);

/* ---- processes and signals (proc.c) ------------------------------------- */

/* A pidfd for pid (pidfd_open), close-on-exec.  Returns it or -errno
 * (MP_ENOSYS on kernels before 5.3). */
int mp__pidfd_open(pid_t pid);

/* Sends signo through a pidfd, so a recycled pid is never hit.  Returns 0,
 * MP_ESRCH once the process is gone, or -errno. */
int mp__pidfd_send_signal(int pidfd, int signo);

/* The calling thread's id. */
pid_t mp__gettid(void);

/* Thread identities another process can check.  A thread id alone names a
 * thread only while it lives (ids are reused); with the thread's start time
 * it names one thread for good.  mp__thread_start_time() is the calling
 * thread's start time (clock ticks since boot), cached per thread (one read
 * of /proc the first time, and again in a child after fork); 0 when it
 * cannot be read.  mp__thread_check(tid, &start) says whether thread tid is
 * alive: 0 and its start time in *start; MP_ESRCH when no such thread
 * exists any more or it is dead (a zombie); another -errno when it cannot
 * tell (the thread may well live). */
uint64_t mp__thread_start_time(void);
int mp__thread_check(pid_t tid, uint64_t *start);

/* Makes the calling process receive signo (SIGKILL for children, SIGTERM
 * for a server that cleans up) when parent, its parent, dies - strictly,
 * when the thread that forked it ends.  Returns 0, MP_ESRCH when the parent
 * is already gone (no signal would ever come), or -errno. */
int mp__die_with_parent(int signo, pid_t parent);

/* A non-blocking descriptor that becomes readable while a signal of set is
 * pending; the caller blocks those signals first (or they are delivered
 * the usual way instead).  For single-threaded servers that poll one set of
 * descriptors, children's ends (SIGCHLD) included.  Returns it or -errno. */
int mp__sigfd_new(const sigset_t *set);

/* Consumes what a descriptor of mp__sigfd_new() has pending. */
void mp__sigfd_drain(int fd);

/* Blocks every signal in the calling thread; *old receives the previous
 * mask for mp__signals_restore(). */
void mp__signals_block_all(sigset_t *old);
void mp__signals_restore(const sigset_t *old);

/* The name of a signal ("SIGSEGV") and of a si_code for it ("address not
 * mapped to object"); never NULL. */
const char *mp__signal_name(int signo);
const char *mp__signal_code_text(int signo, int code);

/* ---- lifetime (lifetime.c) --------------------------------------------- */

/* ---- CPUs (cpu.c) ------------------------------------------------------- */

int mp__cpu_count(void);
int mp__physical_cores(void);

/* ---- asymmetric barriers (membarrier.c) ---------------------------------- */

/* Registers the calling process as one whose stores mp__membarrier()
 * makes visible.  Returns 0, or MP_ENOSYS (or -errno) where the kernel
 * has no global expedited membarrier: then both sides must fence. */
int mp__membarrier_register(void);

/* The heavy side of an asymmetric fence: returns once every registered
 * process has passed a full barrier.  Returns 0 or -errno. */
int mp__membarrier(void);

/* ---- binding to a CPU (bind.c) ----------------------------------------- */

/* Binds the calling process (its calling thread, and what it starts
 * afterwards) to the k-th CPU of its affinity mask, counting modulo the
 * mask's size.  Returns 0 or -errno. */
int mp__cpu_bind_nth(int k);

/* Whether the calling thread may run on one CPU only. */
bool mp__cpu_bound(void);

/* ---- symbols (symbol.c) ------------------------------------------------- */

/* Finds the function containing offset (an address minus its module's load
 * bias) in the ELF file at path, from .symtab or else .dynsym.  Writes the
 * name to buf and the distance from its start to *delta.  Returns 0 or
 * MP_ENOENT.  Reads the file; not async-signal-safe. */
int mp__symbolize(const char *path, uint64_t offset, char *buf, size_t cap, uint64_t *delta);

/* ---- source lines (debuginfo.c with libdw, debuginfo_none.c without) --- */

/* The debugging information of one ELF file, opened for many lookups. */
typedef struct mp__debuginfo mp__debuginfo;

/* Opens the DWARF of the ELF file at path: its own sections, or the
 * separate debug file the system keeps for it (found by build id).
 * Returns 0 and sets *out, or MP_ENOENT (no such file, or not ELF),
 * MP_ENOMEM, MP_ENOSYS in a build without a DWARF reader.  Reads files and
 * allocates; not async-signal-safe.  Close with mp__debuginfo_close(). */
int mp__debuginfo_open(const char *path, mp__debuginfo **out);

/* The source file (absolute when the DWARF says where the compilation
 * ran) and line of offset (an address minus its module's load bias, as
 * for mp__symbolize).  Returns 0, MP_ENOENT when the file has no line for
 * it (no debugging information), MP_ENAMETOOLONG when the name does not
 * fit in cap bytes, MP_ENOSYS without a DWARF reader. */
int mp__debuginfo_line(mp__debuginfo *d, uint64_t offset, char *file, size_t cap, int *line);

/* Releases d; NULL is a no-op. */
void mp__debuginfo_close(mp__debuginfo *d);

/* ---- reservations and growable shared files (vm.c) ---------------------- */
/* A shared file that grows while processes map it: address space is
 * reserved once (nothing is committed), and each process maps the file's
 * new parts into its reservation when it needs them, so that addresses
 * handed out never move. */

/* Reserves size bytes of address space, inaccessible and uncommitted.
 * Returns 0 and sets *addr, or -errno. */
int mp__vm_reserve(size_t size, void **addr);

/* Maps len bytes of fd from offset off, shared and read-write, exactly at
 * addr (inside a reservation of the caller's).  Returns 0 or -errno. */
int mp__vm_map_fixed(int fd, size_t off, size_t len, void *addr);

/* Sets the size of the file behind fd (ftruncate).  Returns 0 or -errno. */
int mp__file_resize(int fd, size_t size);

/* Gives the memory behind [off, off + len) of a memory file back to the
 * system; the range reads as zeros afterwards and the file keeps its size,
 * so mappings of it stay valid.  Returns 0 or -errno. */
int mp__file_release(int fd, size_t off, size_t len);

/* Gives the memory behind [addr, addr + len) of a shared mapping of a
 * memory file back to the system, for every process that maps the file:
 * the range reads as zeros afterwards and stays mapped.  addr and len are
 * page-aligned.  Returns 0 or -errno. */
int mp__vm_release(void *addr, size_t len);

/* Maps size bytes of private memory suitable for a stack (a signal
 * handler's alternate stack).  Returns 0 and sets *addr, or -errno. */
int mp__map_stack(size_t size, void **addr);

/* Copies len bytes between the address space of process pid (at the
 * address remote there) and ours, in one kernel copy (process_vm_readv /
 * process_vm_writev).  The kernel allows it as it would allow ptrace: the
 * same credentials, a dumpable target, and whatever Yama and the security
 * modules add.  Returns 0, or -errno (EPERM, ESRCH, EFAULT, ENOSYS). */
int mp__vm_read(pid_t pid, uint64_t remote, void *local, size_t len);
int mp__vm_write(pid_t pid, uint64_t remote, const void *local, size_t len);

/* ---- ptrace permission (ptrace.c) --------------------------------------- */

/* Lets process ancestor and its descendants read and write this process's
 * memory with mp__vm_read / mp__vm_write where a security module (Yama's
 * ptrace_scope 1) would otherwise allow only this process's ancestors.
 * Returns 0, or -errno (MP_EINVAL where no such module runs, when there
 * is nothing to allow). */
int mp__ptrace_allow(pid_t ancestor);

/* ---- eventfd (event.c) -------------------------------------------------- */

/* A non-blocking, close-on-exec eventfd starting at 0.  Returns it or
 * -errno. */
int mp__eventfd_new(void);

/* Adds 1 to the counter: wakes whoever polls it.  Async-signal-safe.
 * Errors are ignored: a full counter is already readable. */
void mp__eventfd_signal(int fd);

/* Resets the counter to 0 without blocking. */
void mp__eventfd_drain(int fd);

/* ---- this program's image (image.c) ------------------------------------- */

/* Whether the program runs with privileges its invoker does not have
 * (set-user-ID, set-group-ID, file capabilities): then it must not let its
 * environment choose code to run. */
bool mp__secure_exec(void);

/* The path of the executable file this process runs, NUL-terminated and
 * cut to cap bytes.  Returns its length or -errno. */
int mp__exe_path(char *buf, size_t cap);

/* The number keep_fd has in an image started by mp__spawn_self(). */
#define MP__SPAWN_FD 3

/* Starts a fresh image of this program - the very file this process runs,
 * even if it was renamed or replaced since - with the environment env,
 * argv[0] the name the program was invoked by, no signal blocked and every
 * signal at its default action.  The image receives descriptors 0, 1 and 2
 * as they are here, keep_fd (when >= 0) as descriptor MP__SPAWN_FD, and
 * nothing else: whatever else this process has open, close-on-exec or not,
 * never reaches it.  Returns 0 and sets *pid, or -errno. */
int mp__spawn_self(char *const env[], int keep_fd, pid_t *pid);

/* Replaces the calling process with a fresh image of this program, as
 * above, with the caller's argv and env.  Async-signal-safe (for the child
 * of a fork in a program with threads).  Returns only on failure: -errno. */
int mp__exec_self(char *const argv[], char *const env[]);

/* The modules loaded in this process: the program and its shared
 * libraries, each with its load bias (a segment's address minus its address
 * in the file, so that an address minus the bias is the same in every
 * image) and its loaded segments. */
#define MP__MODULE_MAX_SEGS 16
typedef struct mp__module {
    const char *path; /* "" for the main program */
    uintptr_t bias;
    size_t nsegs;
    struct {
        uintptr_t lo, hi; /* [lo, hi) */
        bool exec;
    } seg[MP__MODULE_MAX_SEGS];
} mp__module;

/* Calls fn for each loaded module, the main program first, until fn returns
 * nonzero; returns that value (0 when every module was seen).  The module
 * record lives only during the call. */
int mp__modules_each(int (*fn)(const mp__module *m, void *ctx), void *ctx);

/* A number that changes whenever a module is loaded or unloaded: a table
 * built from mp__modules_each() is current while this stays the same. */
uint64_t mp__modules_generation(void);

/* ---- backtraces (unwind.c) ---------------------------------------------- */

/* Loads what mp__backtrace() needs, so that it is async-signal-safe
 * afterwards.  Call it before any crash can happen (in a parent, so that
 * forked children inherit it ready).  Thread-safe; cheap after the first. */
void mp__backtrace_prepare(void);

/* Writes the return addresses of the calling thread's stack to frames, the
 * innermost first, at most max.  Returns how many.  Async-signal-safe after
 * mp__backtrace_prepare(). */
int mp__backtrace(void **frames, int max);

/* The instruction address a signal interrupted, from the third argument of
 * an SA_SIGINFO handler; 0 where the platform does not say.
 * Async-signal-safe. */
uintptr_t mp__context_pc(const void *uctx);

/* ---- the C library (libc.c) --------------------------------------------- */

/* The text and the symbolic name ("ENOENT") of a positive errno value, or
 * NULL for a number the C library does not know.  Never allocate. */
const char *mp__errno_text(int err);
const char *mp__errno_name(int err);

/* Drops what f holds buffered for output, without writing it: for a forked
 * child whose stdio buffers hold another thread's unfinished output. */
void mp__stdio_discard(FILE *f);

#endif /* MPROC_PLATFORM_H */
