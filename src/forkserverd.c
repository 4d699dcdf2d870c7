/*
 * forkserverd.c - the forkserver: a fresh image of the program that forks
 * one child per request, so that a program full of threads can start
 * children from a process that has none.
 *
 * DESIGN
 * The server is single-threaded and polls two descriptors: the request
 * socket from its client and a signal descriptor for SIGCHLD.  For each
 * request it forks; the child runs the request (request.c), the server
 * answers on the request's channel with the child's pid and a pidfd for it,
 * and keeps the channel until it has reaped the child, when it sends the
 * wait status and closes it (the protocol is in forkserverd.h; the client
 * side is forkserver.c).
 *
 * Lifetime.  The server dies with its client: end-of-file (or a corrupt
 * stream) on the request socket means the client process is gone, or
 * stopped the server.  The server then kills the children still running,
 * reaps them, reports their status and exits.  Its children have the
 * server as parent for the death signal, so even a SIGKILLed server takes
 * them along.
 *
 * Signals.  The signals meant for the program - SIGINT and SIGQUIT from
 * the terminal, which reach the whole foreground process group, SIGTERM
 * and SIGHUP from a service manager or a closing terminal - are ignored:
 * the server's life is its client's, and the client coordinates what
 * happens to the children (mp_signals_install() lets them finish).  Were
 * the server to die of a Ctrl-C, every child it started would die with it
 * at once.  Its children get the default actions back before they run.
 *
 * Why its children die with it, unlike Python's.  A Python forkserver's
 * children outlive the server, orphaned.  Here every child dies with its
 * parent (DESIGN, "nothing leaks"), and to the kernel the server is the
 * parent: Linux can tie a process's life to its parent only, never to a
 * grandparent, so a child that outlived the server would outlive the
 * program too.  Since the server ignores the program's signals, that only
 * happens when the program ends or when something SIGKILLs the server;
 * the client then sees those children killed by SIGKILL and starts a new
 * server for the next child.
 */
#define _GNU_SOURCE
#include "forkserverd.h"

#include "child.h"
#include "request.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct served {
    pid_t pid;
    int chan;
} served;

typedef struct server {
    int sock; /* requests from the client */
    int sfd;  /* SIGCHLD, -1 without signal descriptors */
    served *kids;
    size_t nkids, cap;
} server;

static void send_status(int chan, int wstatus)
{
    mp__fs_msg m = {MP__FS_ENDED, wstatus};
    (void)send(chan, &m, sizeof m, MSG_NOSIGNAL | MSG_DONTWAIT);
    mp__close(chan);
}

/* Reaps ended children and reports each on its channel; with block, until
 * none is left. */
static void reap_served(server *s, bool block)
{
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, block ? 0 : WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            return;
        for (size_t i = 0; i < s->nkids; i++) {
            if (s->kids[i].pid == pid) {
                send_status(s->kids[i].chan, st);
                s->kids[i] = s->kids[--s->nkids];
                break;
            }
        }
    }
}

/* Room for one more child in the table.  Returns false when memory ran
 * out. */
static bool make_room(server *s)
{
    if (s->nkids < s->cap)
        return true;
    size_t ncap = s->cap ? s->cap * 2 : 16;
    served *nk = realloc(s->kids, ncap * sizeof *nk);
    if (!nk)
        return false;
    memset(nk + s->cap, 0, (ncap - s->cap) * sizeof *nk);
    s->kids = nk;
    s->cap = ncap;
    return true;
}

/* The signals meant for the program, which the server ignores. */
static const int program_signals[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP};

/* In the forked child: drops everything of the server's, then runs the
 * request.  Never returns. */
static _Noreturn void run_child(server *s, mp__request *req)
{
    mp__close(s->sock);
    mp__close(s->sfd);
    for (size_t i = 0; i < s->nkids; i++)
        mp__close(s->kids[i].chan);
    mp__close(req->chan_fd);
    req->chan_fd = -1;
    for (size_t i = 0; i < MP__ARRAY_SIZE(program_signals); i++)
        signal(program_signals[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    mp__request_run(req);
}

/* Forks a child for req, answers on its channel with the pid (or the fork
 * error) and a pidfd, and keeps the channel for the wait status.  Consumes
 * req. */
static void start_child(server *s, mp__request *req)
{
    if (!make_room(s)) {
        mp__fs_msg m = {MP__FS_STARTED, MP_ENOMEM};
        (void)send(req->chan_fd, &m, sizeof m, MSG_NOSIGNAL);
        mp__request_release(req);
        return;
    }
    req->parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        run_child(s, req);
    mp__fs_msg m = {MP__FS_STARTED, pid < 0 ? -errno : (int32_t)pid};
    int pidfd = pid > 0 ? mp__pidfd_open(pid) : -1;
    (void)mp__send_fds(req->chan_fd, &m, sizeof m, &pidfd, pidfd >= 0 ? 1 : 0);
    mp__close(pidfd);
    if (pid > 0) {
        s->kids[s->nkids].pid = pid;
        s->kids[s->nkids].chan = req->chan_fd;
        s->nkids++;
        req->chan_fd = -1;
    }
    mp__request_release(req);
}

/* Waits for a request or a child's end.  Returns 1 when the request
 * socket has something (data, or its end), 0 when only children ended (or
 * a signal interrupted the wait), -1 when the wait failed. */
static int wait_events(server *s)
{
    struct pollfd pfd[2] = {{.fd = s->sock, .events = POLLIN}, {.fd = s->sfd, .events = POLLIN}};
    /* Without a signal descriptor, children's ends are polled for every
     * 100 ms instead. */
    int np = poll(pfd, s->sfd >= 0 ? 2 : 1, s->sfd >= 0 ? -1 : 100);
    if (np < 0 && errno != EINTR)
        return -1;
    if (s->sfd >= 0 && (pfd[1].revents & POLLIN))
        mp__sigfd_drain(s->sfd);
    return np > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}

_Noreturn void mp__forkserver_serve(int sock)
{
    (void)mp__thread_set_name("mproc-forksrv");
    /* Ignored, and blocked too: Linux keeps a blocked signal pending even
     * when its action is to ignore it, so one that reaches a child between
     * its fork and the reset of its actions is delivered then, at the
     * default action, instead of being lost. */
    sigset_t prog;
    sigemptyset(&prog);
    for (size_t i = 0; i < MP__ARRAY_SIZE(program_signals); i++) {
        signal(program_signals[i], SIG_IGN);
        sigaddset(&prog, program_signals[i]);
    }
    pthread_sigmask(SIG_BLOCK, &prog, NULL);
    server s = {.sock = sock};
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, NULL);
    s.sfd = mp__sigfd_new(&chld);
    if (s.sfd < 0)
        s.sfd = -1;
    mp__crash_prepare();
    if (!make_room(&s))
        _exit(127);
    for (;;) {
        int ready = wait_events(&s);
        if (ready < 0)
            break;
        reap_served(&s, false);
        if (!ready)
            continue;
        mp__request req;
        int rc = mp__request_recv(sock, &req);
        if (rc == MP_EOF || rc == MP_EPROTO || rc == MP_ECONNRESET)
            break; /* the client is gone, or the stream cannot be trusted */
        if (rc == 0)
            start_child(&s, &req);
    }
    /* The client is gone: take the children along, report, and go. */
    for (size_t i = 0; i < s.nkids; i++)
        kill(s.kids[i].pid, SIGKILL);
    while (s.nkids > 0) {
        size_t before = s.nkids;
        reap_served(&s, true);
        if (s.nkids == before)
            break; /* ECHILD: nothing left to reap */
    }
    _exit(0);
}
