/*
 * 03_pipe.c - two processes talking through a pipe.
 *
 * The seeds' pipe example (5_adv_pipe.py): a sender sends a few items and
 * then "DONE", a receiver prints what it gets until "DONE".  Each child
 * closes the end it does not use, so that once the sender exits, the
 * receiver sees the end of the stream (MP_EOF) - here it checks that too.
 *
 * Python:  parent_conn, child_conn = Pipe()
 *          Process(target=sender, args=(parent_conn, data)).start()
 *          Process(target=receiver, args=(child_conn,)).start()
 */
#include <mproc.h>
#include <stdio.h>
#include <string.h>

static const char *const items[] = {"Hello", "World", "From", "Multiprocessing"};
enum { NITEMS = sizeof items / sizeof items[0] };

struct ends {
    mp_conn *sender_end, *receiver_end;
};

static int sender(void *arg)
{
    struct ends *e = arg;
    mp_conn_close(e->receiver_end); /* not ours: close it, as in Python */
    for (int i = 0; i < NITEMS; i++) {
        int rc = mp_conn_send(e->sender_end, items[i], strlen(items[i]));
        if (rc < 0)
            return rc;
        printf("  sender:   sent \"%s\"\n", items[i]);
        fflush(stdout);
    }
    return mp_conn_send(e->sender_end, "DONE", 4);
}

static int receiver(void *arg)
{
    struct ends *e = arg;
    mp_conn_close(e->sender_end);
    char buf[64];
    size_t len;
    int n = 0;
    for (;;) {
        int rc = mp_conn_recv(e->receiver_end, buf, sizeof buf - 1, &len, 10.0);
        if (rc < 0)
            return rc;
        buf[len] = '\0';
        if (strcmp(buf, "DONE") == 0)
            break;
        printf("  receiver: got  \"%s\"\n", buf);
        fflush(stdout);
        if (n >= NITEMS || strcmp(buf, items[n]) != 0)
            return 1;
        n++;
    }
    /* Every holder of the sender's end is gone once the sender exits. */
    int rc = mp_conn_recv(e->receiver_end, buf, sizeof buf, &len, 10.0);
    printf("  receiver: after DONE, recv returns %s\n", mp_err_name(rc));
    return n == NITEMS && rc == MP_EOF ? 0 : 2;
}

int main(void)
{
    struct ends e;
    int rc = mp_pipe(&e.sender_end, &e.receiver_end, true);
    if (rc < 0) {
        fprintf(stderr, "mp_pipe: %s\n", mp_strerror(rc));
        return 1;
    }
    mp_process *s, *r;
    if (mp_process_new(sender, &e, "sender", &s) < 0 ||
        mp_process_new(receiver, &e, "receiver", &r) < 0 || mp_process_start(s) < 0 ||
        mp_process_start(r) < 0) {
        fprintf(stderr, "could not start the processes\n");
        return 1;
    }
    /* The parent uses neither end. */
    mp_conn_free(e.sender_end);
    mp_conn_free(e.receiver_end);
    int scode = -1, rcode = -1;
    int ok = mp_process_join(s, 30.0) == 0 && mp_process_join(r, 30.0) == 0 &&
             mp_process_exitcode(s, &scode) == 0 && mp_process_exitcode(r, &rcode) == 0 &&
             scode == 0 && rcode == 0;
    printf("sender exit code %d, receiver exit code %d: %s\n", scode, rcode,
           ok ? "all items arrived in order" : "SOMETHING WENT WRONG");
    mp_process_free(s);
    mp_process_free(r);
    return ok ? 0 : 1;
}
