/*
 * mproc-manager - a standalone manager server, for clients on this machine
 * and on others: Python's BaseManager(...).get_server().serve_forever().
 *
 *   mproc-manager --listen tcp://0.0.0.0:PORT --authkey-file FILE
 *                 [--memory BYTES] [--max-clients N]
 *
 * The key is the file's contents (one trailing newline removed), 1 to
 * MP_MANAGER_MAX_AUTHKEY bytes; keep the file private (mode 0600): anyone
 * who reads it can use the server.  Once listening the server prints
 * "mproc-manager: listening on ADDRESS" on standard output (with the port
 * picked when PORT is 0).  It runs until a client calls
 * mp_manager_shutdown() or it receives SIGTERM or SIGINT; refused
 * connections are logged (mp_log, MPROC_LOG / MPROC_LOG_FILE).
 */
#define _POSIX_C_SOURCE 200809L
#include <mproc.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(void)
{
    fprintf(stderr, "usage: mproc-manager --listen ADDRESS --authkey-file FILE"
                    " [--memory BYTES] [--max-clients N]\n"
                    "  ADDRESS: tcp://HOST:PORT, unix:/PATH or unix:@NAME\n");
}

/* Reads the key file into buf; returns its length, or -1. */
static long read_key(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "mproc-manager: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        fprintf(stderr, "mproc-manager: warning: %s is readable by others\n", path);
    size_t n = fread(buf, 1, cap, f);
    int err = ferror(f);
    fclose(f);
    if (err || n == cap) {
        fprintf(stderr, "mproc-manager: %s: unreadable or longer than %d bytes\n", path,
                MP_MANAGER_MAX_AUTHKEY);
        return -1;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n == 0) {
        fprintf(stderr, "mproc-manager: %s: the key is empty\n", path);
        return -1;
    }
    return (long)n;
}

static void on_ready(const char *address, void *arg)
{
    (void)arg;
    printf("mproc-manager: listening on %s\n", address);
    fflush(stdout);
}

static int number(const char *s, unsigned long long *v)
{
    char *end;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return s[0] != '\0' && *end == '\0' && errno == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    const char *keyfile = NULL;
    unsigned long long v;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--listen") == 0 && next) {
            o.address = argv[++i];
        } else if (strcmp(argv[i], "--authkey-file") == 0 && next) {
            keyfile = argv[++i];
        } else if (strcmp(argv[i], "--memory") == 0 && next && number(next, &v) == 0) {
            o.memory = (size_t)v;
            i++;
        } else if (strcmp(argv[i], "--max-clients") == 0 && next && number(next, &v) == 0 &&
                   v <= 65536) {
            o.max_clients = (int)v;
            i++;
        } else {
            usage();
            return 2;
        }
    }
    if (!o.address || !keyfile) {
        usage();
        return 2;
    }
    if (!mp_manager_available()) {
        fprintf(stderr, "mproc-manager: this build of mproc has no manager (libsodium)\n");
        return 1;
    }
    static unsigned char key[MP_MANAGER_MAX_AUTHKEY + 1];
    long n = read_key(keyfile, key, sizeof key);
    if (n < 0)
        return 1;
    o.authkey = key;
    o.authkey_len = (size_t)n;
    int rc = mp_manager_serve_notify(&o, on_ready, NULL);
    memset(key, 0, sizeof key);
    if (rc < 0) {
        fprintf(stderr, "mproc-manager: %s: %s\n", o.address, mp_strerror(rc));
        return 1;
    }
    return 0;
}
