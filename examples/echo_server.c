/* echo_server.c - a TCP echo server that drops idle connections.

   Shows:
     - events embedded in your own structs (evloop_event_assign, no extra malloc);
     - a persistent read event with a timeout as an idle timer: a persistent
       event's timeout restarts every time it fires, so any input resets it;
     - a common timeout (evloop_init_common_timeout): thousands of connections
       with the same idle time share one O(1) queue instead of the timer heap;
     - partial writes done right: when the socket buffer is full the rest waits
       for a write event, and reading stops until that backlog is gone, so a
       fast sender cannot make the server buffer without bound;
     - running out of file descriptors without spinning: accept pauses on a
       one-shot timer instead of retrying at once (see pause_accepting).

   Build:  cc -std=c99 -Wall -Wextra -pthread -I. examples/echo_server.c -o echo_server
   Run:    ./echo_server [PORT] [IDLE_SECONDS]      (defaults 40714 and 10; 127.0.0.1 only)
   Try:    nc 127.0.0.1 40714      type lines and see them echoed; stay silent
                                   for IDLE_SECONDS and the server hangs up.
           Ctrl-C (SIGINT) or SIGTERM stops the server cleanly. */

/* evloop.h first: it also turns on the POSIX declarations (sigaction,
   clock_gettime, ...) that a strict -std=c99 hides from the headers below. */
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_PORT         40714
#define DEFAULT_IDLE_SECONDS 10
#define ECHO_BUFFER_SIZE     16384
#define ACCEPT_PAUSE_MS      100 /* rest after accept ran out of descriptors or memory */

struct server;

struct connection {
    struct server *server;
    struct connection *prev, *next; /* the server's list, so shutdown can free everyone */
    evloop_event read_event;        /* persistent, carries the idle timeout */
    evloop_event write_event;       /* added only while a backlog is waiting */
    evloop_socket_t fd;
    size_t pending; /* buf[sent..pending) still has to be written */
    size_t sent;
    char buf[ECHO_BUFFER_SIZE];
};

struct server {
    evloop *loop;
    const struct timeval *idle; /* a common timeout of this loop */
    evloop_socket_t listen_fd;
    evloop_event accept_event;
    evloop_event resume_event; /* one-shot timer: ends a pause in accepting */
    evloop_event sigint_event;
    evloop_event sigterm_event;
    struct connection *connections;
    int accept_failing; /* out of resources, already said so: quiet until an accept works */
};

static int would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

static void connection_free(struct connection *c)
{
    struct server *s = c->server;

    if (c->prev)
        c->prev->next = c->next;
    else
        s->connections = c->next;
    if (c->next) c->next->prev = c->prev;
    /* The events live inside *c: delete them before the memory goes. This is
       allowed from their own callbacks; the loop never touches them again. */
    evloop_event_del(&c->read_event);
    evloop_event_del(&c->write_event);
    close(c->fd);
    free(c);
}

/* Writes what it can of the backlog. Returns 1 when all of it went out,
   0 when some must wait for a write event, -1 on a socket error. */
static int flush_backlog(struct connection *c)
{
    while (c->sent < c->pending) {
        ssize_t n = send(c->fd, c->buf + c->sent, c->pending - c->sent, 0);

        if (n < 0) return would_block(errno) ? 0 : -1;
        c->sent += (size_t)n;
    }
    c->sent = c->pending = 0;
    return 1;
}

/* Swaps which event is armed: with a backlog we wait for the socket to take
   more instead of reading input we could not echo yet. */
static int wait_for(struct connection *c, int writable)
{
    evloop_event *on = writable ? &c->write_event : &c->read_event;
    evloop_event *off = writable ? &c->read_event : &c->write_event;

    /* Adding restarts the idle timeout, so waiting on the other side starts fresh. */
    return evloop_event_del(off) || evloop_event_add(on, c->server->idle) ? -1 : 0;
}

static void close_with_error(struct connection *c, const char *what)
{
    if (errno != ECONNRESET && errno != EPIPE) perror(what);
    connection_free(c);
}

static void on_readable(evloop_socket_t fd, short what, void *arg)
{
    struct connection *c = arg;
    ssize_t n;
    int flushed;

    if (what & EVLOOP_TIMEOUT) {
        printf("closing idle connection\n");
        connection_free(c);
        return;
    }
    n = recv(fd, c->buf, sizeof c->buf, 0);
    if (n < 0 && would_block(errno)) return;
    if (n < 0) {
        close_with_error(c, "echo_server: recv");
        return;
    }
    if (n == 0) { /* the client closed its side; everything it sent was echoed */
        connection_free(c);
        return;
    }
    c->pending = (size_t)n;
    flushed = flush_backlog(c);
    if (flushed < 0)
        close_with_error(c, "echo_server: send");
    else if (flushed == 0 && wait_for(c, 1) < 0)
        close_with_error(c, "echo_server: event");
}

static void on_writable(evloop_socket_t fd, short what, void *arg)
{
    struct connection *c = arg;
    int flushed;

    (void)fd;
    if (what & EVLOOP_TIMEOUT) {
        printf("closing stalled connection (peer stopped reading)\n");
        connection_free(c);
        return;
    }
    flushed = flush_backlog(c);
    if (flushed < 0)
        close_with_error(c, "echo_server: send");
    else if (flushed == 1 && wait_for(c, 0) < 0)
        close_with_error(c, "echo_server: event");
}

static int make_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -1;
    /* Close-on-exec, so a child we might spawn never inherits client sockets. */
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static struct connection *connection_new(struct server *s, evloop_socket_t fd)
{
    struct connection *c = calloc(1, sizeof *c);

    if (!c) return NULL;
    c->server = s;
    c->fd = fd;
    if (evloop_event_assign(&c->read_event, s->loop, fd, EVLOOP_READ | EVLOOP_PERSIST, on_readable,
                            c) ||
        evloop_event_assign(&c->write_event, s->loop, fd, EVLOOP_WRITE | EVLOOP_PERSIST,
                            on_writable, c) ||
        evloop_event_add(&c->read_event, s->idle)) {
        free(c);
        return NULL;
    }
    c->next = s->connections;
    if (c->next) c->next->prev = c;
    s->connections = c;
    return c;
}

/* accept failed for want of something that may come back: descriptors
   (EMFILE for this process, ENFILE for the whole system) or kernel memory. */
static int out_of_resources(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

/* When accept runs out of resources, the client it could not take stays in
   the listen backlog, so the listening socket stays readable. The accept
   event is level-triggered: it would fire again at once, fail again, and the
   server would spin at full CPU, printing an error per try. So stop watching
   the listener and look again after ACCEPT_PAUSE_MS (on_resume_accepting):
   by then a client may have left (or idled out) and freed a descriptor. The
   error is printed once, not at every pause, until an accept works again.
   This is what evloop_listener does by itself (see echo_stream.c). */
static void pause_accepting(struct server *s, int err)
{
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};

    if (!s->accept_failing)
        fprintf(stderr, "echo_server: accept: %s (pausing new connections, retrying every %d ms)\n",
                strerror(err), ACCEPT_PAUSE_MS);
    s->accept_failing = 1;
    if (evloop_event_del(&s->accept_event) || evloop_event_add(&s->resume_event, &pause)) {
        perror("echo_server: cannot pause accepting");
        evloop_exit(s->loop, NULL); /* without the timer we would never accept again */
    }
}

/* The pause is over: watch the listener again. If descriptors are still
   short, the next accept fails and pauses once more. */
static void on_resume_accepting(evloop_socket_t fd, short what, void *arg)
{
    struct server *s = arg;

    (void)fd, (void)what;
    if (evloop_event_add(&s->accept_event, NULL)) {
        perror("echo_server: cannot resume accepting");
        evloop_exit(s->loop, NULL);
    }
}

/* Level-triggered listener: accept until the backlog is empty, so one wakeup
   serves a burst of clients. */
static void on_acceptable(evloop_socket_t listen_fd, short what, void *arg)
{
    struct server *s = arg;

    (void)what;
    for (;;) {
        evloop_socket_t fd = accept(listen_fd, NULL, NULL);

        if (fd < 0) {
            if (out_of_resources(errno))
                pause_accepting(s, errno);
            else if (!would_block(errno) && errno != ECONNABORTED)
                perror("echo_server: accept"); /* that client is gone; the next round goes on */
            return;
        }
        if (s->accept_failing) {
            fprintf(stderr, "echo_server: accepting new connections again\n");
            s->accept_failing = 0;
        }
        if (make_nonblocking(fd) < 0 || !connection_new(s, fd)) {
            perror("echo_server: new connection");
            close(fd);
        }
    }
}

static void on_signal(evloop_socket_t signum, short what, void *arg)
{
    struct server *s = arg;

    (void)what;
    printf("got %s, shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    evloop_exit(s->loop, NULL);
}

static evloop_socket_t open_listener(int port)
{
    struct sockaddr_in sin;
    int one = 1;
    evloop_socket_t fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        perror("echo_server: socket");
        return -1;
    }
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* SO_REUSEADDR: restarting must not fail on the last run's TIME_WAIT sockets. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(fd, SOMAXCONN) < 0 ||
        make_nonblocking(fd) < 0) {
        fprintf(stderr, "echo_server: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int server_start(struct server *s, int port, int idle_seconds)
{
    struct timeval idle = {0, 0};

    idle.tv_sec = idle_seconds;
    s->loop = evloop_new();
    if (!s->loop) {
        perror("echo_server: evloop_new");
        return -1;
    }
    s->idle = evloop_init_common_timeout(s->loop, &idle);
    s->listen_fd = open_listener(port);
    if (!s->idle || s->listen_fd < 0) return -1;
    if (evloop_event_assign(&s->accept_event, s->loop, s->listen_fd, EVLOOP_READ | EVLOOP_PERSIST,
                            on_acceptable, s) ||
        evloop_timer_assign(&s->resume_event, s->loop, on_resume_accepting, s) ||
        evloop_signal_assign(&s->sigint_event, s->loop, SIGINT, on_signal, s) ||
        evloop_signal_assign(&s->sigterm_event, s->loop, SIGTERM, on_signal, s) ||
        evloop_event_add(&s->accept_event, NULL) || evloop_signal_add(&s->sigint_event, NULL) ||
        evloop_signal_add(&s->sigterm_event, NULL)) {
        perror("echo_server: cannot set up events");
        return -1;
    }
    return 0;
}

/* Frees whatever server_start managed to create. Every event must be deleted
   before the loop is freed; evloop_event_initialized skips any that setup
   never reached (the struct started zeroed). */
static void server_stop(struct server *s)
{
    evloop_event *own[4];
    size_t i;

    own[0] = &s->accept_event;
    own[1] = &s->resume_event;
    own[2] = &s->sigint_event;
    own[3] = &s->sigterm_event;
    while (s->connections) connection_free(s->connections);
    for (i = 0; i < sizeof own / sizeof own[0]; i++)
        if (evloop_event_initialized(own[i])) evloop_event_del(own[i]);
    if (s->listen_fd >= 0) close(s->listen_fd);
    evloop_free(s->loop);
}

static long parse_number(const char *arg, long min, long max)
{
    char *end;
    long value = strtol(arg, &end, 10);

    if (end == arg || *end != '\0' || value < min || value > max) return -1;
    return value;
}

int main(int argc, char **argv)
{
    struct server server;
    long port = argc > 1 ? parse_number(argv[1], 1, 65535) : DEFAULT_PORT;
    long idle = argc > 2 ? parse_number(argv[2], 1, 86400) : DEFAULT_IDLE_SECONDS;
    int status = 0;

    if (argc > 3 || port < 0 || idle < 0) {
        fprintf(stderr, "usage: %s [PORT] [IDLE_SECONDS]   (defaults %d and %d)\n", argv[0],
                DEFAULT_PORT, DEFAULT_IDLE_SECONDS);
        return 2;
    }
    /* A client that disconnects while we write must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    /* Line-buffered even into a pipe, so whoever waits for our lines sees them. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    memset(&server, 0, sizeof server);
    server.listen_fd = -1;
    if (server_start(&server, (int)port, (int)idle) < 0) {
        server_stop(&server);
        return 1;
    }
    printf("listening on 127.0.0.1:%ld (idle timeout %ld s)\n", port, idle);
    if (evloop_dispatch(server.loop) < 0) {
        perror("echo_server: evloop_dispatch");
        status = 1;
    }
    server_stop(&server);
    return status;
}
