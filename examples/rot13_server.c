/* rot13_server.c - the classic libevent ROT13 server, written on evloop's event API.

   Shows:
     - a non-blocking listening socket watched by one persistent read event,
       accepting every pending connection each time it fires;
     - per-connection state with its own read and write events on one fd;
     - line-based output: a line goes back once its '\n' has arrived;
     - backpressure: with a full output buffer the server stops reading from
       that client (deletes its read event) until the write side drains it,
       so a line longer than the buffer still comes back whole and in order;
     - running out of file descriptors without spinning: accept pauses on a
       one-shot timer instead of retrying at once (see pause_accepting);
     - clean shutdown on SIGINT/SIGTERM through signal events.

   Build:  cc -std=c99 -Wall -Wextra -pthread -I. examples/rot13_server.c -o rot13_server
   Run:    ./rot13_server [PORT]        (default 40713; listens on 127.0.0.1 only)
   Try:    nc 127.0.0.1 40713           then type "Hello, World" -> "Uryyb, Jbeyq"
           (several nc sessions at once work too; Ctrl-C stops the server) */

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

#define DEFAULT_PORT       40713
#define OUTPUT_BUFFER_SIZE 16384 /* per connection; longer lines are sent in pieces */
#define ACCEPT_PAUSE_MS    100   /* rest after accept ran out of descriptors or memory */

struct server;

struct connection {
    struct server *server;
    struct connection *prev, *next; /* the server's list, so shutdown can free everyone */
    evloop_event *read_event;
    evloop_event *write_event;
    evloop_socket_t fd;
    size_t used;  /* bytes in buf, already rot13'd */
    size_t ready; /* buf[0..ready) may be sent: complete lines, or everything when full */
    size_t sent;  /* buf[0..sent) has been sent */
    int reading;  /* read_event is added */
    int got_eof;  /* the client finished sending; close once buf is flushed */
    char buf[OUTPUT_BUFFER_SIZE];
};

struct server {
    evloop *loop;
    evloop_socket_t listen_fd;
    evloop_event *accept_event;
    evloop_event *resume_event; /* one-shot timer: ends a pause in accepting */
    evloop_event *sigint_event;
    evloop_event *sigterm_event;
    struct connection *connections;
    int accept_failing; /* out of resources, already said so: quiet until an accept works */
};

/* Not isalpha(): the locale must not change which bytes are letters. */
static char rot13_char(char c)
{
    if ((c >= 'a' && c <= 'm') || (c >= 'A' && c <= 'M')) return (char)(c + 13);
    if ((c >= 'n' && c <= 'z') || (c >= 'N' && c <= 'Z')) return (char)(c - 13);
    return c;
}

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
    /* Freeing the events deletes them first; safe even from their own callback. */
    evloop_event_free(c->read_event);
    evloop_event_free(c->write_event);
    close(c->fd);
    free(c);
}

/* Starts or stops reading from the client. Returns -1 if the connection was freed. */
static int set_reading(struct connection *c, int on)
{
    if (on == c->reading) return 0;
    if (on ? evloop_event_add(c->read_event, NULL) : evloop_event_del(c->read_event)) {
        perror("rot13_server: read event");
        connection_free(c);
        return -1;
    }
    c->reading = on;
    return 0;
}

/* Called after new bytes were appended at buf[used - n .. used): rot13 them and
   decide how much may be sent. Returns -1 if the connection was freed. */
static int queue_input(struct connection *c, size_t n)
{
    size_t i;

    for (i = c->used; i < c->used + n; i++) {
        c->buf[i] = rot13_char(c->buf[i]);
        if (c->buf[i] == '\n') c->ready = i + 1;
    }
    c->used += n;
    if (c->used == sizeof c->buf) {
        /* No room left and no end of line: send the partial line rather than
           drop bytes, and stop reading until the write side made room. */
        c->ready = c->used;
        if (set_reading(c, 0) < 0) return -1;
    }
    if (c->ready > c->sent && evloop_event_add(c->write_event, NULL)) {
        perror("rot13_server: write event");
        connection_free(c);
        return -1;
    }
    return 0;
}

static void handle_eof(struct connection *c)
{
    c->got_eof = 1;
    c->ready = c->used; /* the last line may lack its '\n'; send it anyway */
    if (c->ready == c->sent) {
        connection_free(c);
        return;
    }
    if (evloop_event_del(c->read_event) || evloop_event_add(c->write_event, NULL)) {
        perror("rot13_server: eof");
        connection_free(c);
        return;
    }
    c->reading = 0;
}

static void on_readable(evloop_socket_t fd, short what, void *arg)
{
    struct connection *c = arg;
    ssize_t n;

    (void)what;
    n = recv(fd, c->buf + c->used, sizeof c->buf - c->used, 0);
    if (n > 0) {
        queue_input(c, (size_t)n);
    } else if (n == 0) {
        handle_eof(c);
    } else if (!would_block(errno)) {
        if (errno != ECONNRESET) perror("rot13_server: recv");
        connection_free(c);
    }
}

/* Everything ready went out: move the unfinished line to the front, and read
   again if we had stopped for lack of room. */
static void output_drained(struct connection *c)
{
    memmove(c->buf, c->buf + c->ready, c->used - c->ready);
    c->used -= c->ready;
    c->ready = c->sent = 0;
    if (c->got_eof && c->used == 0) {
        connection_free(c);
        return;
    }
    if (evloop_event_del(c->write_event)) {
        perror("rot13_server: write event");
        connection_free(c);
        return;
    }
    if (!c->got_eof) set_reading(c, 1);
}

static void on_writable(evloop_socket_t fd, short what, void *arg)
{
    struct connection *c = arg;
    ssize_t n;

    (void)what;
    n = send(fd, c->buf + c->sent, c->ready - c->sent, 0);
    if (n < 0) {
        if (would_block(errno)) return;
        if (errno != EPIPE && errno != ECONNRESET) perror("rot13_server: send");
        connection_free(c);
        return;
    }
    c->sent += (size_t)n;
    if (c->sent == c->ready) output_drained(c);
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
    c->read_event = evloop_event_new(s->loop, fd, EVLOOP_READ | EVLOOP_PERSIST, on_readable, c);
    c->write_event = evloop_event_new(s->loop, fd, EVLOOP_WRITE | EVLOOP_PERSIST, on_writable, c);
    if (!c->read_event || !c->write_event || evloop_event_add(c->read_event, NULL)) {
        evloop_event_free(c->read_event);
        evloop_event_free(c->write_event);
        free(c);
        return NULL;
    }
    c->reading = 1;
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
   by then a client may have left and freed a descriptor. The error is
   printed once, not at every pause, until an accept works again. This is
   what evloop_listener does by itself (see rot13_stream.c). */
static void pause_accepting(struct server *s, int err)
{
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};

    if (!s->accept_failing)
        fprintf(stderr,
                "rot13_server: accept: %s (pausing new connections, retrying every %d ms)\n",
                strerror(err), ACCEPT_PAUSE_MS);
    s->accept_failing = 1;
    if (evloop_event_del(s->accept_event) || evloop_event_add(s->resume_event, &pause)) {
        perror("rot13_server: cannot pause accepting");
        evloop_exit(s->loop, NULL); /* without the timer we would never accept again */
    }
}

/* The pause is over: watch the listener again. If descriptors are still
   short, the next accept fails and pauses once more. */
static void on_resume_accepting(evloop_socket_t fd, short what, void *arg)
{
    struct server *s = arg;

    (void)fd, (void)what;
    if (evloop_event_add(s->accept_event, NULL)) {
        perror("rot13_server: cannot resume accepting");
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
                perror("rot13_server: accept"); /* that client is gone; the next round goes on */
            return;
        }
        if (s->accept_failing) {
            fprintf(stderr, "rot13_server: accepting new connections again\n");
            s->accept_failing = 0;
        }
        if (make_nonblocking(fd) < 0 || !connection_new(s, fd)) {
            perror("rot13_server: new connection");
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
        perror("rot13_server: socket");
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
        fprintf(stderr, "rot13_server: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int server_start(struct server *s, int port)
{
    s->loop = evloop_new();
    if (!s->loop) {
        perror("rot13_server: evloop_new");
        return -1;
    }
    s->listen_fd = open_listener(port);
    if (s->listen_fd < 0) return -1;
    s->accept_event =
        evloop_event_new(s->loop, s->listen_fd, EVLOOP_READ | EVLOOP_PERSIST, on_acceptable, s);
    s->resume_event = evloop_timer_new(s->loop, on_resume_accepting, s);
    s->sigint_event = evloop_signal_new(s->loop, SIGINT, on_signal, s);
    s->sigterm_event = evloop_signal_new(s->loop, SIGTERM, on_signal, s);
    if (!s->accept_event || !s->resume_event || !s->sigint_event || !s->sigterm_event ||
        evloop_event_add(s->accept_event, NULL) || evloop_signal_add(s->sigint_event, NULL) ||
        evloop_signal_add(s->sigterm_event, NULL)) {
        perror("rot13_server: cannot set up events");
        return -1;
    }
    return 0;
}

/* Frees whatever server_start managed to create; events before their loop. */
static void server_stop(struct server *s)
{
    while (s->connections) connection_free(s->connections);
    evloop_event_free(s->accept_event);
    evloop_event_free(s->resume_event);
    evloop_event_free(s->sigint_event);
    evloop_event_free(s->sigterm_event);
    if (s->listen_fd >= 0) close(s->listen_fd);
    evloop_free(s->loop);
}

static int parse_port(const char *arg)
{
    char *end;
    long port = strtol(arg, &end, 10);

    if (end == arg || *end != '\0' || port < 1 || port > 65535) return -1;
    return (int)port;
}

int main(int argc, char **argv)
{
    struct server server = {NULL, -1, NULL, NULL, NULL, NULL, NULL, 0};
    int port = argc > 1 ? parse_port(argv[1]) : DEFAULT_PORT;
    int status = 0;

    if (argc > 2 || port < 0) {
        fprintf(stderr, "usage: %s [PORT]   (default %d)\n", argv[0], DEFAULT_PORT);
        return 2;
    }
    /* A client that disconnects while we write must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    /* Line-buffered even into a pipe, so whoever waits for our lines sees them. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (server_start(&server, port) < 0) {
        server_stop(&server);
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", port);
    if (evloop_dispatch(server.loop) < 0) {
        perror("rot13_server: evloop_dispatch");
        status = 1;
    }
    server_stop(&server);
    return status;
}
