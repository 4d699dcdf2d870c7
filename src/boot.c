/*
 * boot.c - what a fresh image of the program does at load: the roles it can
 * take, recognised once, before main() runs.
 *
 * DESIGN
 * mproc starts processes from a clean image of the program for the spawn
 * and forkserver start methods, for the tracker of named segments and for
 * a manager server (unless forking the caller is safe and chosen).
 * Such an image is the program itself, executed afresh with a descriptor
 * named in its environment (MPROC_<ROLE>=<fd>).  The library's one
 * start-up constructor, below, looks for each role's variable; when it
 * finds one naming a descriptor of the right kind, it runs the role's entry
 * function, which serves and exits: main() never runs in that image.
 * Starting an image in a role goes through this file too, so the names of
 * the variables live in one table, and a program linked against the static
 * library carries this constructor exactly when it can start such an image.
 *
 * A role is one entry in the table plus its entry function (a
 * `_Noreturn void serve(int fd)` in the module that owns the role) and its
 * name in mp__role (boot.h).
 *
 * Who this process is (its name, its session, the descriptors it was
 * handed) is not decided here: self.c keeps it, and a role's entry
 * function sets it from the request it reads.
 *
 * A set-user-ID program never takes a role: its environment is chosen by
 * a less privileged user and must not choose code to run.
 */
#define _GNU_SOURCE
#include "boot.h"

#include "forkserverd.h"
#include "managerd/role.h"
#include "request.h"
#include "trackerd.h"

#include <unistd.h>

typedef struct role_entry {
    const char *env;       /* the variable naming the descriptor */
    mp__env_fd_kind kind;  /* what the descriptor must be */
    void (*serve)(int fd); /* the entry point; never returns */
} role_entry;

static const role_entry roles[] = {
    [MP__ROLE_SPAWN] = {"MPROC_SPAWN", MP__ENV_SOCKET, mp__spawn_serve},
    [MP__ROLE_FORKSERVER] = {"MPROC_FORKSERVER", MP__ENV_SOCKET, mp__forkserver_serve},
    [MP__ROLE_TRACKER] = {"MPROC_TRACKER", MP__ENV_LISTENER, mp__tracker_serve},
    [MP__ROLE_MANAGER] = {"MPROC_MANAGER", MP__ENV_SOCKET, mp__manager_role_serve},
};

_Static_assert(MP__ARRAY_SIZE(roles) == MP__ROLE_COUNT, "every role has an entry");

/* The table's entry for role, or NULL for a role it does not have. */
static const role_entry *entry_of(mp__role role)
{
    if ((unsigned)role >= MP__ROLE_COUNT || !roles[role].env)
        return NULL;
    return &roles[role];
}

char **mp__boot_env(mp__role role, int fd)
{
    const role_entry *e = entry_of(role);
    return e ? mp__env_with(e->env, fd) : NULL;
}

int mp__boot_spawn(mp__role role, int fd, pid_t *pid)
{
    if (!entry_of(role))
        return MP_EINVAL;
    /* The image finds fd as MP__SPAWN_FD (see mp__spawn_self). */
    char **env = mp__boot_env(role, MP__SPAWN_FD);
    if (!env)
        return MP_ENOMEM;
    int rc = mp__spawn_self(env, fd, pid);
    mp__env_free(env);
    return rc;
}

/* The first priority a program may use: in a program linked against the
 * static library, the executable's own constructors (default priority) run
 * after this one, so a fresh image in a role never runs them, as
 * process.h promises; with the shared library they run after it anyway,
 * since a library's constructors come before those of what uses it. */
__attribute__((constructor(101))) static void boot(void)
{
    if (mp__secure_exec())
        return;
    /* Every variable is taken (and so removed) before any role runs: a
     * program this image starts must not see one, even if the environment
     * named several roles. */
    int fds[MP__ROLE_COUNT];
    for (size_t i = 0; i < MP__ROLE_COUNT; i++)
        fds[i] = entry_of((mp__role)i) ? mp__env_take_fd(roles[i].env, roles[i].kind) : -1;
    for (size_t i = 0; i < MP__ROLE_COUNT; i++) {
        if (fds[i] < 0)
            continue;
        for (size_t k = i + 1; k < MP__ROLE_COUNT; k++)
            mp__close(fds[k]);
        roles[i].serve(fds[i]);
        _exit(127); /* not reached: an entry point never returns */
    }
}
