/* Tests of the start-up roles (boot.c) and of the environment that hands a
 * fresh image its descriptor (request.c): a role runs before main() only
 * for a descriptor of the right kind, every role variable is taken out of
 * the environment, and a spawn image runs the request it is sent. */
#define _GNU_SOURCE
#include "internal.h"
#include "mp_test.h"
#include "mpt_helpers.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>

extern char **environ;

#define REPORT_VAR "MPT_BOOT_REPORT"

/* Run in a fresh image by the tests below (and, harmlessly, on its own):
 * tells the image's starter which role variables main() still sees. */
TEST(probe_env)
{
    const char *v = getenv(REPORT_VAR);
    if (!v)
        return;
    int fd = atoi(v);
    char line[256];
    int n = snprintf(
        line, sizeof line, "main SPAWN=%s FORKSERVER=%s TRACKER=%s MANAGER=%s\n",
        getenv("MPROC_SPAWN") ? "set" : "unset", getenv("MPROC_FORKSERVER") ? "set" : "unset",
        getenv("MPROC_TRACKER") ? "set" : "unset", getenv("MPROC_MANAGER") ? "set" : "unset");
    CHECK_EQ(write(fd, line, (size_t)n), n);
}

/* Starts this program afresh, running only probe_env, with the variables
 * in vars added to the environment; descriptors in keep stay open in it.
 * Returns its pid; *report is where probe_env's report arrives. */
static pid_t start_image(const char *const *vars, size_t nvars, const int *keep, size_t nkeep,
                         int *report)
{
    int rp[2];
    CHECK_EQ(pipe(rp), 0); /* inherited: no close-on-exec */
    CHECK_OK(mp__set_cloexec(rp[0], true));
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + nvars + 2, sizeof *env);
    CHECK(env != NULL);
    memcpy(env, environ, n * sizeof *env);
    char var[64];
    snprintf(var, sizeof var, REPORT_VAR "=%d", rp[1]);
    env[n++] = var;
    for (size_t i = 0; i < nvars; i++)
        env[n++] = (char *)vars[i];
    env[n] = NULL;
    for (size_t i = 0; i < nkeep; i++)
        CHECK_OK(mp__set_cloexec(keep[i], false));

    char exe[PATH_MAX];
    CHECK(mp__exe_path(exe, sizeof exe) > 0);
    char *argv[] = {exe, (char *)"probe_env", NULL};
    /* The image's own test runner talks on stdout: not part of the test. */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    CHECK_EQ(posix_spawn(&pid, exe, &fa, NULL, argv, env), 0);
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    close(rp[1]);
    *report = rp[0];
    return pid;
}

/* Collects what the image writes to its report pipe into out, and returns
 * its wait status. */
static int finish_image(pid_t pid, int report, char *out, size_t cap)
{
    size_t got = 0;
    for (;;) {
        struct pollfd p = {.fd = report, .events = POLLIN};
        CHECK_EQ(poll(&p, 1, 30000), 1);
        ssize_t r = read(report, out + got, cap - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    out[got] = '\0';
    close(report);
    CHECK_EQ(mpt_wait_gone(pid, 30.0), 1);
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    return st;
}

static int run_image(const char *const *vars, size_t nvars, const int *keep, size_t nkeep,
                     char *out, size_t cap)
{
    int report;
    pid_t pid = start_image(vars, nvars, keep, nkeep, &report);
    return finish_image(pid, report, out, cap);
}

TEST(a_role_needs_a_descriptor_of_its_kind)
{
    /* A pipe is no socket, and a connected socket is no listener: main()
     * runs, and sees none of the variables. */
    int pp[2], sv[2];
    CHECK_EQ(pipe(pp), 0);
    CHECK_OK(mp__socketpair(SOCK_STREAM, sv));
    char spawn[64], fs[64], trk[64], mgr[64];
    snprintf(spawn, sizeof spawn, "MPROC_SPAWN=%d", pp[0]);
    snprintf(fs, sizeof fs, "MPROC_FORKSERVER=%d", pp[1]);
    snprintf(trk, sizeof trk, "MPROC_TRACKER=%d", sv[1]);
    snprintf(mgr, sizeof mgr, "MPROC_MANAGER=%d", pp[0]);
    const char *vars[] = {spawn, fs, trk, mgr};
    int keep[] = {pp[0], pp[1], sv[1]};
    char out[512];
    int st = run_image(vars, 4, keep, 3, out, sizeof out);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK_STREQ(out, "main SPAWN=unset FORKSERVER=unset TRACKER=unset MANAGER=unset\n");
    close(pp[0]);
    close(pp[1]);
    close(sv[0]);
    close(sv[1]);
}

TEST(a_variable_that_names_nothing_is_removed_too)
{
    const char *vars[] = {"MPROC_SPAWN=12x", "MPROC_FORKSERVER=-3", "MPROC_TRACKER=999999",
                          "MPROC_MANAGER="};
    char out[512];
    int st = run_image(vars, 4, NULL, 0, out, sizeof out);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK_STREQ(out, "main SPAWN=unset FORKSERVER=unset TRACKER=unset MANAGER=unset\n");
}

/* The manager role reads its configuration from its socket and trusts
 * nothing in it: a message that is not one is answered with an error and
 * the image exits, never running main() nor a server. */
TEST(the_manager_role_refuses_a_malformed_configuration)
{
    if (!mp_manager_available()) {
        printf("  skipped: built without libsodium\n");
        return;
    }
    int sv[2];
    CHECK_OK(mp__socketpair(SOCK_STREAM, sv));
    static const char junk[] = "not a configuration";
    CHECK_EQ(write(sv[0], junk, sizeof junk), (ssize_t)sizeof junk);
    char var[64];
    snprintf(var, sizeof var, "MPROC_MANAGER=%d", sv[1]);
    const char *vars[] = {var};
    int report;
    pid_t pid = start_image(vars, 1, &sv[1], 1, &report);
    close(sv[1]);
    char answer[64] = "", want[64], out[512];
    struct pollfd p = {.fd = sv[0], .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 30000), 1);
    CHECK(read(sv[0], answer, sizeof answer - 1) > 0);
    snprintf(want, sizeof want, "ERR %d\n", MP_EPROTO);
    CHECK_STREQ(answer, want);
    int st = finish_image(pid, report, out, sizeof out);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 1);
    CHECK_STREQ(out, ""); /* main() never ran */
    close(sv[0]);
}

/* The target a spawn image runs: writes its argument and its name to the
 * descriptor it was handed, and returns 7. */
static int spawned_target(void *arg)
{
    int fd = mp_process_inherited_fd(0);
    if (fd < 0)
        return 1;
    char line[128];
    int n = snprintf(line, sizeof line, "%s %s", (const char *)arg, mp_process_current_name());
    return write(fd, line, (size_t)n) == n ? 7 : 2;
}

TEST(the_spawn_role_runs_its_request_instead_of_main)
{
    int sv[2], pp[2];
    CHECK_OK(mp__socketpair(SOCK_STREAM, sv));
    CHECK_OK(mp__pipe(pp, 0));
    char var[64];
    snprintf(var, sizeof var, "MPROC_SPAWN=%d", sv[1]);
    const char *vars[] = {var};
    int report;
    pid_t pid = start_image(vars, 1, &sv[1], 1, &report);
    close(sv[1]);
    mp__request_out r = {
        .fn = spawned_target,
        .arg = "hello",
        .arg_len = 6,
        .name = "boot-child",
        .ident = "9",
        .report_fd = -1,
        .chan_fd = -1,
        .fds = &pp[1],
        .nfds = 1,
    };
    CHECK_OK(mp__request_send(sv[0], &r));
    close(sv[0]);
    close(pp[1]);
    char got[128] = "";
    struct pollfd p = {.fd = pp[0], .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 30000), 1);
    ssize_t n = read(pp[0], got, sizeof got - 1);
    CHECK(n > 0);
    got[n] = '\0';
    close(pp[0]);
    /* The target ran with its argument, under the name the request gave. */
    CHECK_STREQ(got, "hello boot-child");
    /* main() never ran: probe_env reported nothing; the exit status is the
     * target's. */
    char out[64];
    int st = finish_image(pid, report, out, sizeof out);
    CHECK_STREQ(out, "");
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 7);
}

TEST(env_take_fd_checks_and_removes)
{
    int sv[2], pp[2];
    CHECK_OK(mp__socketpair(SOCK_STREAM, sv));
    CHECK_OK(mp__pipe(pp, 0));
    CHECK_OK(mp__set_cloexec(sv[0], false));
    char v[32];

    /* A socket is taken, and made close-on-exec again. */
    snprintf(v, sizeof v, "%d", sv[0]);
    CHECK_EQ(setenv("MPT_FD", v, 1), 0);
    CHECK_EQ(mp__env_take_fd("MPT_FD", MP__ENV_SOCKET), sv[0]);
    CHECK(getenv("MPT_FD") == NULL);
    CHECK((fcntl(sv[0], F_GETFD) & FD_CLOEXEC) != 0);

    /* A pipe is not; neither is a connected socket as a listener, nor a
     * number with trailing text; the variable goes anyway. */
    snprintf(v, sizeof v, "%d", pp[0]);
    CHECK_EQ(setenv("MPT_FD", v, 1), 0);
    CHECK_EQ(mp__env_take_fd("MPT_FD", MP__ENV_SOCKET), -1);
    CHECK(getenv("MPT_FD") == NULL);
    snprintf(v, sizeof v, "%d", sv[1]);
    CHECK_EQ(setenv("MPT_FD", v, 1), 0);
    CHECK_EQ(mp__env_take_fd("MPT_FD", MP__ENV_LISTENER), -1);
    snprintf(v, sizeof v, "%dz", sv[1]);
    CHECK_EQ(setenv("MPT_FD", v, 1), 0);
    CHECK_EQ(mp__env_take_fd("MPT_FD", MP__ENV_SOCKET), -1);
    CHECK_EQ(mp__env_take_fd("MPT_FD", MP__ENV_SOCKET), -1); /* absent */

    /* A listening socket is a listener. */
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(l >= 0);
    struct sockaddr_un sa;
    socklen_t len;
    char name[64];
    CHECK_OK(mp__local_address(mpt_name(name, sizeof name, "boot"), &sa, &len));
    CHECK_EQ(bind(l, (struct sockaddr *)&sa, len), 0);
    CHECK_EQ(listen(l, 1), 0);
    snprintf(v, sizeof v, "%d", l);
    CHECK_EQ(setenv("MPT_FD", v, 1), 0);
    CHECK_EQ(mp__env_take_fd("MPT_FD", MP__ENV_LISTENER), l);
    close(l);
    close(sv[0]);
    close(sv[1]);
    close(pp[0]);
    close(pp[1]);
}

TEST(boot_env_names_the_role)
{
    char **env = mp__boot_env(MP__ROLE_FORKSERVER, 42);
    CHECK(env != NULL);
    size_t found = 0;
    for (char **e = env; *e; e++)
        found += strcmp(*e, "MPROC_FORKSERVER=42") == 0;
    CHECK_EQ(found, 1);
    mp__env_free(env);
    CHECK(mp__boot_env(MP__ROLE_COUNT, 3) == NULL);
    pid_t pid;
    CHECK_ERR(mp__boot_spawn(MP__ROLE_COUNT, 3, &pid), MP_EINVAL);
}

MPT_MAIN()
