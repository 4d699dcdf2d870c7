/*
 * self.c - who this process is: its name, its place in the tree of
 * processes mproc started, its session, the descriptors it was handed; and
 * what the library does when it is loaded.
 *
 * After fork, a child inherits all of this from its parent; the child side
 * (mp__self_enter_child) replaces it before the target runs.
 *
 * At load, a fresh image that mproc started for the spawn or forkserver
 * start method is recognised by a socket named in its environment, and
 * serves before main() ever runs (forkserver.c).  The constructor lives in
 * this file because every part of the library uses it, so that a program
 * linked against the static library always carries it.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

static char self_name[MP__MAX_NAME] = "MainProcess";
static char self_ident[MP__MAX_NAME] = ""; /* "" in the main process, "1:2" in a grandchild */
static _Atomic unsigned child_counter;
static pid_t session;
static int inherited[MP__MAX_FDS];
static size_t ninherited;
static bool is_child;

const char *mp__self_name(void)
{
    return self_name;
}

const char *mp_process_current_name(void)
{
    return self_name;
}

void mp__self_next_child_name(char *buf, size_t cap, char *ident, size_t ident_cap)
{
    unsigned n = atomic_fetch_add(&child_counter, 1) + 1;
    if (self_ident[0])
        snprintf(ident, ident_cap, "%s:%u", self_ident, n);
    else
        snprintf(ident, ident_cap, "%u", n);
    snprintf(buf, cap, "Process-%s", ident);
}

void mp__self_enter_child(const char *name, const char *ident, pid_t sess)
{
    snprintf(self_name, sizeof self_name, "%s", name ? name : "Process");
    snprintf(self_ident, sizeof self_ident, "%s", ident ? ident : "");
    atomic_store(&child_counter, 0);
    session = sess;
    is_child = true;
}

pid_t mp__session(void)
{
    if (session == 0)
        session = getpid();
    return session;
}

void mp__self_set_inherited_fds(const int *fds, size_t n)
{
    ninherited = n < MP__MAX_FDS ? n : MP__MAX_FDS;
    if (ninherited)
        memcpy(inherited, fds, ninherited * sizeof(int));
}

int mp_process_inherited_fd(size_t i)
{
    if (!is_child || i >= ninherited)
        return MP_EBADF;
    return inherited[i];
}

/* ---- at load -------------------------------------------------------------- */

/* The descriptor an environment variable names, if it is a socket; the
 * variable is removed so that programs this image starts do not see it. */
static int take_socket(const char *name)
{
    const char *v = getenv(name);
    if (!v)
        return -1;
    char *end;
    long fd = strtol(v, &end, 10);
    unsetenv(name);
    struct stat st;
    if (*end != '\0' || fd < 0 || fd > INT_MAX || fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode))
        return -1;
    /* Close-on-exec again, as every descriptor of the library is. */
    (void)mp__set_cloexec((int)fd, true);
    return (int)fd;
}

__attribute__((constructor)) static void mp__boot(void)
{
    (void)mp__session();
    /* A set-user-ID program must not let its environment choose code to
     * run. */
    if (getauxval(AT_SECURE))
        return;
    int fd = take_socket("MPROC_SPAWN");
    if (fd >= 0)
        mp__spawn_serve(fd);
    fd = take_socket("MPROC_FORKSERVER");
    if (fd >= 0)
        mp__forkserver_serve(fd);
}
