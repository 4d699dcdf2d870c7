/*
 * self.c - who this process is: its name, its place in the tree of
 * processes mproc started, its session, the descriptors it was handed.
 *
 * After fork, a child inherits all of this from its parent; the child side
 * (mp__self_enter_child) replaces it before the target runs.  What a fresh
 * image does at load (the start-up roles) is boot.c's business.
 */
#define _GNU_SOURCE
#include "self.h"

#include <unistd.h>

static char self_name[MP__MAX_NAME] = "MainProcess";
static char self_ident[MP__MAX_NAME] = ""; /* "" in the main process, "1:2" in a grandchild */
static _Atomic unsigned child_counter;
static pid_t session;
static int inherited[MP__MAX_FDS];
static size_t ninherited;
static bool is_child;
static pid_t parent_pid;

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

void mp__self_enter_child(const char *name, const char *ident, pid_t sess, pid_t parent)
{
    parent_pid = parent;
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

pid_t mp_parent_process(void)
{
    return is_child ? parent_pid : 0;
}

int mp_process_inherited_fd(size_t i)
{
    if (!is_child || i >= ninherited)
        return MP_EBADF;
    return inherited[i];
}

/* The session is the process the program was started as: fixed at load,
 * so that a child forked before its parent asked for it still inherits the
 * parent's, not its own pid. */
__attribute__((constructor)) static void self_at_load(void)
{
    (void)mp__session();
}
