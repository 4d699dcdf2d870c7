/*
 * chaos.c - the driver of the fault-injection suite.
 *
 *   chaos                 CHAOS_ROUNDS rounds (default 16) over every
 *                         capability in turn, from CHAOS_SEED (default: the
 *                         clock; printed either way)
 *   CHAOS_ONLY=queue,pool only the capabilities named
 *   CHAOS_TIME_SCALE=4    the watchdog's budgets times 4 (sanitizers)
 *   CHAOS_VERBOSE=1       the library's log, and why variants were skipped
 *
 * Each round runs in a process of its own with a watchdog; after it the
 * driver checks that nothing hung, nothing was left running, no /dev/shm
 * entry of the run and no socket file was left, and adds the round's tally
 * to the totals.  The totals are printed as one block at the end; the run
 * fails (exit 1) when any figure that must be zero is not.  A failing round
 * prints its own seed: CHAOS_SEED=<round seed> CHAOS_ROUNDS=1
 * CHAOS_ONLY=<capability> plays it again.
 */
#include "chaos.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const chaos_cap caps[] = {
    {"process", chaos_proc_round, 30},    {"pipe", chaos_pipe_round, 30},
    {"queue", chaos_queue_round, 40},     {"joinable", chaos_joinable_round, 40},
    {"sync", chaos_sync_round, 30},       {"pool", chaos_pool_round, 60},
    {"manager", chaos_manager_round, 40}, {"ranks", chaos_ranks_round, 40},
};
#define NCAPS (sizeof caps / sizeof caps[0])

static const char *const fault_names[] = {
#define CHAOS__NAME(name, text) text,
    CHAOS_FAULTS(CHAOS__NAME)
#undef CHAOS__NAME
};

/* The run's totals. */
static struct {
    uint64_t rounds, failed_rounds, hangs, leaked_procs, leaked_shm, leaked_sockets;
    chaos_tally sum;
} tot;

#define MAX_SHM 1024
static char shm_before[MAX_SHM][256];

/* Whether a /dev/shm name carries this driver's pid as a number of its
 * own: the library names segments by session (the driver's pid, which
 * every round inherits), so entries of other programs on the machine are
 * not mistaken for ours. */
static bool shm_is_ours(const char *name)
{
    char pid[24];
    int len = snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (const char *p = strstr(name, pid); p; p = strstr(p + 1, pid)) {
        if ((p == name || !isdigit((unsigned char)p[-1])) && !isdigit((unsigned char)p[len]))
            return true;
    }
    return false;
}

static int shm_list(char names[][256], int cap)
{
    DIR *d = opendir("/dev/shm");
    int n = 0;
    struct dirent *e;
    if (!d)
        return 0;
    while ((e = readdir(d)) && n < cap) {
        if (strstr(e->d_name, "mproc") && shm_is_ours(e->d_name))
            snprintf(names[n++], 256, "%s", e->d_name);
    }
    closedir(d);
    return n;
}

/* Entries of ours that appeared during the round: reported and removed. */
static int shm_leaks(int nbefore)
{
    static char after[MAX_SHM][256];
    int n = shm_list(after, MAX_SHM), left = 0;
    for (int i = 0; i < n; i++) {
        bool old = false;
        for (int j = 0; j < nbefore && !old; j++)
            old = strcmp(after[i], shm_before[j]) == 0;
        if (!old) {
            char path[300];
            snprintf(path, sizeof path, "/dev/shm/%.255s", after[i]);
            fprintf(stderr, "  leaked /dev/shm/%s\n", after[i]);
            unlink(path);
            left++;
        }
    }
    return left;
}

/* Files left in the round's socket directory (then removed with it). */
static int socket_leaks(void)
{
    DIR *d = opendir(chaos_dir);
    int n = 0;
    struct dirent *e;
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", chaos_dir, e->d_name);
        fprintf(stderr, "  leaked %s\n", path);
        unlink(path);
        n++;
    }
    closedir(d);
    rmdir(chaos_dir);
    return n;
}

/* The driver's children by /proc (it is a subreaper: the round's orphans
 * are among them). */
static int children(pid_t *out, int cap)
{
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *e;
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        char path[300], buf[512];
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%.255s/stat", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')');
        char st;
        int pp;
        if (rp && sscanf(rp + 1, " %c %d", &st, &pp) == 2 && pp == getpid() && n < cap)
            out[n++] = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return n;
}

static double scale(void)
{
    const char *s = getenv("CHAOS_TIME_SCALE");
    double f = s ? atof(s) : 1.0;
    return f > 0 ? f : 1.0;
}

/* Reaps what the round left; processes still alive after a grace period
 * (a death signal takes a moment to arrive) are leaks: named, killed. */
static int process_leaks(void)
{
    /* Children die with their parent at once (PR_SET_PDEATHSIG); the
     * tracker of named segments within about a second of its last client. */
    double end = chaos_now() + 2.5 * scale();
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        pid_t kids[64];
        int n = children(kids, 64);
        if (n == 0)
            return 0;
        if (chaos_now() >= end) {
            for (int i = 0; i < n; i++) {
                char comm[64] = "?", path[64];
                snprintf(path, sizeof path, "/proc/%d/comm", (int)kids[i]);
                FILE *f = fopen(path, "re");
                if (f) {
                    if (fgets(comm, sizeof comm, f))
                        comm[strcspn(comm, "\n")] = '\0';
                    fclose(f);
                }
                fprintf(stderr, "  left running: %d (%s)\n", (int)kids[i], comm);
                kill(kids[i], SIGKILL);
            }
            while (waitpid(-1, NULL, 0) > 0) {
            }
            return n;
        }
        chaos_sleep_us(2000); /* bounded polling for dying orphans */
    }
}

/* Waits for the round until its budget; kills its session past it. */
static bool watch(pid_t pid, double budget, int *status)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    bool hung = false;
    if (fd >= 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        double end = chaos_now() + budget;
        int n;
        do {
            double left = end - chaos_now();
            n = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
        } while (n < 0 && errno == EINTR);
        if (n == 0) {
            hung = true;
            kill(-pid, SIGKILL); /* the round's session (its process group) */
            kill(pid, SIGKILL);
        }
        close(fd);
    }
    while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
    }
    return hung;
}

static void play(const chaos_cap *cap, uint64_t seed)
{
    chaos_rng r = {seed};
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    cap->round(&r);
    /* The library's own view first; the driver's /proc scan follows. */
    int left = mp_active_children(NULL, 0);
    CHAOS_CHECK(left == 0, "%d children still active after the round", left);
    fflush(NULL);
    exit(0); /* through exit: the library's own clean-up at exit runs */
}

static void add_tally(const chaos_tally *t)
{
    for (int k = 0; k < CHAOS_NFAULTS; k++)
        tot.sum.faults[k] += t->faults[k];
    tot.sum.exposed += t->exposed;
    tot.sum.reported += t->reported;
    tot.sum.lost += t->lost;
    tot.sum.dup += t->dup;
    tot.sum.corrupt += t->corrupt;
    tot.sum.failed += t->failed;
    tot.sum.skipped += t->skipped;
    tot.sum.findings += t->findings;
}

/* One round of cap with its own seed: play it, then check what is left. */
static void round_run(const chaos_cap *cap, uint64_t seed, chaos_tally *t)
{
    memset(t, 0, sizeof *t);
    snprintf(chaos_dir, sizeof chaos_dir, "/tmp/mproc-chaos-%d-%" PRIu64, (int)getpid(),
             tot.rounds);
    mkdir(chaos_dir, 0777); /* 0777: the rounds that drop root use it too */
    chmod(chaos_dir, 0777);
    int nbefore = shm_list(shm_before, MAX_SHM);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("chaos: fork");
        exit(3);
    }
    if (pid == 0)
        play(cap, seed);
    int st = 0;
    bool hung = watch(pid, cap->budget * scale(), &st);
    int procs = process_leaks(), shm = shm_leaks(nbefore), socks = socket_leaks();
    bool died = !hung && !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    bool bad = hung || died || procs || shm || socks || t->failed || t->lost || t->dup ||
               t->corrupt || t->reported < t->exposed;
    tot.rounds++;
    tot.hangs += hung;
    tot.leaked_procs += (uint64_t)procs;
    tot.leaked_shm += (uint64_t)shm;
    tot.leaked_sockets += (uint64_t)socks;
    if (died)
        t->failed++;
    add_tally(t);
    if (bad) {
        tot.failed_rounds++;
        printf("FAILED %s round (CHAOS_SEED=%" PRIu64 " CHAOS_ROUNDS=1 CHAOS_ONLY=%s):%s%s "
               "procs %d shm %d sockets %d lost %" PRIu64 " dup %" PRIu64 " unreported %" PRId64
               " status 0x%x: %s\n",
               cap->name, seed, cap->name, hung ? " HUNG" : "", died ? " DIED" : "", procs, shm,
               socks, t->lost, t->dup, (int64_t)(t->exposed - t->reported), st, t->note);
    } else if ((t->skipped || t->findings) && getenv("CHAOS_VERBOSE")) {
        printf("note: %s round: %s\n", cap->name, t->note);
    }
    fflush(stdout);
}

static bool wanted(const char *name)
{
    const char *only = getenv("CHAOS_ONLY");
    if (!only || !*only)
        return true;
    size_t len = strlen(name);
    for (const char *p = strstr(only, name); p; p = strstr(p + 1, name)) {
        if ((p == only || p[-1] == ',') && (p[len] == '\0' || p[len] == ','))
            return true;
    }
    return false;
}

static void print_totals(uint64_t seed)
{
    uint64_t faults = 0, unrep = tot.sum.exposed - tot.sum.reported;
    for (int k = 0; k < CHAOS_NFAULTS; k++)
        faults += tot.sum.faults[k];
    printf("---- chaos totals ----\n");
    printf("seed             %" PRIu64 "\n", seed);
    printf("rounds           %" PRIu64 " (%" PRIu64 " failed)\n", tot.rounds, tot.failed_rounds);
    printf("faults injected  %" PRIu64 "\n", faults);
    for (int k = 0; k < CHAOS_NFAULTS; k++)
        printf("  %-28s %" PRIu64 "\n", fault_names[k], tot.sum.faults[k]);
    printf("failures exposed %" PRIu64 ", reported %" PRIu64 ", unreported %" PRIu64 "\n",
           tot.sum.exposed, tot.sum.reported, tot.sum.reported > tot.sum.exposed ? 0 : unrep);
    printf("hangs            %" PRIu64 "\n", tot.hangs);
    printf("leaks            %" PRIu64 " (processes %" PRIu64 ", /dev/shm %" PRIu64
           ", sockets %" PRIu64 ")\n",
           tot.leaked_procs + tot.leaked_shm + tot.leaked_sockets, tot.leaked_procs, tot.leaked_shm,
           tot.leaked_sockets);
    printf("lost messages    %" PRIu64 "\n", tot.sum.lost);
    printf("duplicates       %" PRIu64 "\n", tot.sum.dup);
    printf("corrupt          %" PRIu64 "\n", tot.sum.corrupt);
    printf("failed checks    %" PRIu64 "\n", tot.sum.failed);
    printf("variants skipped %" PRIu64 ", limits met %" PRIu64 " (CHAOS_VERBOSE=1 says which)\n",
           tot.sum.skipped, tot.sum.findings);
    printf("----------------------\n");
}

/* "chaos --program-shm NAME": a program of its own (the sync round's
 * "program killed" variant execs it), which creates a named segment, says
 * so on stdout and waits to be killed. */
__attribute__((noreturn)) static int program_shm(const char *name)
{
    mp_shm *s;
    int rc = mp_shm_create(name, 4096, &s);
    printf("%d\n", rc);
    fflush(stdout);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--program-shm") == 0)
        return program_shm(argv[2]);
    const char *s = getenv("CHAOS_SEED"), *n = getenv("CHAOS_ROUNDS");
    uint64_t seed = s && *s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    long rounds = n && *n ? atol(n) : 16;
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The crash reports of the children a round kills on purpose would
     * bury the figures; MPROC_LOG=warning (or CHAOS_VERBOSE) shows them. */
    if (!getenv("CHAOS_VERBOSE"))
        setenv("MPROC_LOG", "critical", 0);
    printf("chaos: seed %" PRIu64 ", %ld rounds (CHAOS_SEED=%" PRIu64 " reproduces)\n", seed,
           rounds, seed);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    chaos_driver = getpid();
    chaos_t = chaos_shared(sizeof *chaos_t);
    chaos_rng master = {seed};
    size_t idx[NCAPS], m = 0;
    for (size_t i = 0; i < NCAPS; i++)
        if (wanted(caps[i].name))
            idx[m++] = i;
    if (m == 0) {
        fprintf(stderr, "chaos: CHAOS_ONLY names no capability\n");
        return 2;
    }
    /* With one round of one capability the round's seed is the run's, so a
     * failing round's printed seed replays it alone. */
    for (long i = 0; i < rounds; i++) {
        uint64_t rs = rounds == 1 ? seed : chaos_next(&master);
        round_run(&caps[idx[(size_t)i % m]], rs, chaos_t);
    }
    print_totals(seed);
    bool bad = tot.failed_rounds || tot.hangs || tot.leaked_procs || tot.leaked_shm ||
               tot.leaked_sockets || tot.sum.lost || tot.sum.dup || tot.sum.corrupt ||
               tot.sum.failed || tot.sum.reported < tot.sum.exposed;
    return bad ? 1 : 0;
}
