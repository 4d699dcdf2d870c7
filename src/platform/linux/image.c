/*
 * image.c - this program's image: its executable file, starting it afresh,
 * whether it runs set-user-ID, and the modules loaded into it.
 *
 * Fresh images are started from /proc/self/exe, not from argv[0] or a path
 * found at start-up: it names the very file this process runs, even when
 * the program was started through a relative path from another directory,
 * renamed, or replaced by a new build since.
 */
#define _GNU_SOURCE
#include "../platform.h"
#include "mproc/common.h"

#include <errno.h>
#include <link.h>
#include <spawn.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#define SELF_EXE "/proc/self/exe"

bool mp__secure_exec(void)
{
    return getauxval(AT_SECURE) != 0;
}

int mp__exe_path(char *buf, size_t cap)
{
    if (cap == 0)
        return MP_EINVAL;
    ssize_t n = readlink(SELF_EXE, buf, cap - 1);
    if (n < 0) {
        buf[0] = '\0';
        return -errno;
    }
    buf[n] = '\0';
    return (int)n;
}

int mp__spawn_self(char *const env[], int keep_fd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* The image gets 0, 1, 2 and keep_fd as MP__SPAWN_FD, and nothing
     * else: a descriptor the program opened without close-on-exec (its own
     * files, or ones a library leaked) must not reach it, as a fork child
     * of a clean image would not have it either.  dup2 clears
     * close-on-exec on the copy (and, onto itself, on the descriptor);
     * closefrom runs in the new process before exec, so no other thread of
     * this one can be affected. */
    if (keep_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, keep_fd, MP__SPAWN_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, keep_fd >= 0 ? MP__SPAWN_FD + 1 : 3);
    /* The fresh image starts with no signal blocked and default actions,
     * whatever this thread's mask is. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {program_invocation_name, NULL};
    int rc = posix_spawn(pid, SELF_EXE, &fa, &attr, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return -rc;
}

int mp__exec_self(char *const argv[], char *const env[])
{
    execve(SELF_EXE, argv, env);
    return -errno;
}

/* ---- loaded modules ------------------------------------------------------ */

struct each {
    int (*fn)(const mp__module *m, void *ctx);
    void *ctx;
};

static int each_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    const struct each *e = data;
    mp__module m;
    memset(&m, 0, sizeof m);
    m.path = info->dlpi_name ? info->dlpi_name : "";
    m.bias = info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum && m.nsegs < MP__MODULE_MAX_SEGS; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        m.seg[m.nsegs].lo = info->dlpi_addr + ph->p_vaddr;
        m.seg[m.nsegs].hi = m.seg[m.nsegs].lo + ph->p_memsz;
        m.seg[m.nsegs].exec = (ph->p_flags & PF_X) != 0;
        m.nsegs++;
    }
    return e->fn(&m, e->ctx);
}

int mp__modules_each(int (*fn)(const mp__module *m, void *ctx), void *ctx)
{
    struct each e = {fn, ctx};
    return dl_iterate_phdr(each_cb, &e);
}

static int gen_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    *(uint64_t *)data = (uint64_t)info->dlpi_adds * 1000003u + (uint64_t)info->dlpi_subs;
    return 1; /* the counters are the same in every entry: one is enough */
}

uint64_t mp__modules_generation(void)
{
    uint64_t gen = 0;
    dl_iterate_phdr(gen_cb, &gen);
    return gen;
}
