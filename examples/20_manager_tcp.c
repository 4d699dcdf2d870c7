/*
 * 20_manager_tcp.c - a manager serving over TCP, and a separate program
 * that connects to it with the key; a wrong key is refused.
 *
 * The parent starts a manager on 127.0.0.1 (a free port) with a random
 * key, fills a queue with jobs, and runs a second program - this one,
 * executed afresh - that gets the address on its command line and the key
 * on its standard input.  The client first tries a wrong key (MP_EAUTH,
 * and the server logs the attempt), then the right one, squares every job
 * it takes from the queue into a dict, and exits.  Over TCP every frame is
 * encrypted and authenticated.  Python:  BaseManager(address, authkey).
 */
#define _GNU_SOURCE
#include <mproc.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { JOBS = 10 };

extern char **environ;

static void hex(const unsigned char *k, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", k[i]);
}

/* ---- the separate program ---------------------------------------------------- */

static int client(const char *address)
{
    char line[200];
    unsigned char key[64];
    size_t n = 0;
    if (!fgets(line, sizeof line, stdin))
        return 2;
    for (; n < sizeof key && sscanf(line + 2 * n, "%2hhx", &key[n]) == 1; n++) {
    }
    mp_manager *m;
    int rc = mp_manager_connect(address, "not the key", 11, &m);
    printf("  client: connecting with a wrong key: %s (%s)\n", mp_err_name(rc), mp_strerror(rc));
    if (rc != MP_EAUTH)
        return 3;
    if ((rc = mp_manager_connect(address, key, n, &m)) < 0) {
        printf("  client: connect: %s\n", mp_strerror(rc));
        return 4;
    }
    printf("  client: connected to %s with the key\n", address);
    mp_mqueue *jobs;
    mp_mdict *results;
    if (mp_mqueue_new(m, "jobs", 0, &jobs) < 0 || mp_mdict_new(m, "results", &results) < 0)
        return 5;
    int64_t x;
    size_t len;
    while ((rc = mp_mqueue_get(jobs, &x, sizeof x, &len, 5.0)) == 0 && x >= 0) {
        char k[32];
        snprintf(k, sizeof k, "%lld", (long long)x);
        if (mp_mdict_set_i64(results, k, x * x) < 0)
            return 6;
    }
    printf("  client: done, %d results\n", mp_mdict_len(results));
    mp_mqueue_free(jobs);
    mp_mdict_free(results);
    mp_manager_free(m);
    return rc == 0 ? 0 : 7;
}

/* ---- the server's side ------------------------------------------------------ */

/* Runs this program again as the client, the key on its standard input. */
static int run_client(const char *address, const unsigned char *key, size_t n, pid_t *pid)
{
    int in[2];
    if (pipe(in) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    char *argv[] = {"20_manager_tcp", "client", (char *)address, NULL};
    int rc = posix_spawn(pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    char text[2 * 64 + 2];
    hex(key, n, text);
    strcat(text, "\n");
    if (rc == 0 && write(in[1], text, strlen(text)) != (ssize_t)strlen(text))
        rc = -1;
    close(in[1]);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "client") == 0)
        return client(argv[2]);

    mp_manager_opts opts = MP_MANAGER_OPTS_INIT;
    opts.address = "tcp://127.0.0.1:0";
    mp_manager *m;
    int rc = mp_manager_start(&opts, &m);
    if (rc == MP_ENOTSUP) {
        printf("this build of mproc has no manager (libsodium): nothing to show\n");
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "manager: %s\n", mp_strerror(rc));
        return 1;
    }
    unsigned char key[32];
    mp_manager_authkey(m, key, sizeof key);
    printf("manager serving at %s (a random 32-byte key)\n", mp_manager_address(m));
    mp_mqueue *jobs;
    mp_mdict *results;
    if (mp_mqueue_new(m, "jobs", 0, &jobs) < 0 || mp_mdict_new(m, "results", &results) < 0)
        return 1;
    for (int64_t i = 1; i <= JOBS; i++)
        mp_mqueue_put(jobs, &i, sizeof i, 1.0);
    int64_t end = -1;
    mp_mqueue_put(jobs, &end, sizeof end, 1.0);

    pid_t pid;
    fflush(stdout);
    if (run_client(mp_manager_address(m), key, sizeof key, &pid) != 0) {
        fprintf(stderr, "cannot run the client\n");
        return 1;
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
    }
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && mp_mdict_len(results) == JOBS;
    printf("results the client left in the manager:");
    for (int64_t i = 1; i <= JOBS; i++) {
        char k[32];
        int64_t sq = -1;
        snprintf(k, sizeof k, "%lld", (long long)i);
        ok = ok && mp_mdict_get_i64(results, k, &sq) == 0 && sq == i * i;
        printf(" %lld", (long long)sq);
    }
    printf("\n");
    mp_mqueue_free(jobs);
    mp_mdict_free(results);
    rc = mp_manager_shutdown(m, 10.0);
    mp_manager_free(m);
    printf("%s\n", ok && rc == 0 ? "the remote client did every job" : "WRONG RESULT");
    return ok && rc == 0 ? 0 : 1;
}
