/* threaded_server.c - a multi-threaded TCP echo server: one loop per thread.

   An evloop is used by one thread at a time, so a server that wants every
   core runs one loop per worker thread and gives each connection to exactly
   one of them. Two classic ways to spread the connections, both here:

     default: the memcached pattern. The main thread accepts (listener on its
       own loop) and hands each new fd to the next worker, round-robin, with
       evloop_post: the one thread-safe way into another thread's loop. The
       worker wraps the fd in a stream on its own loop.
     -r: SO_REUSEPORT. Every worker has its own listener on the same port
       (EVLOOP_LISTENER_REUSEABLE_PORT) and the kernel spreads the incoming
       connections; the main thread only waits for signals.

   Shutdown on SIGINT/SIGTERM: the signal event runs in the main thread's
   loop; main stops accepting, posts a "stop" function to every worker (it
   runs after every fd handed over before it: evloop_post is FIFO), joins
   them, and frees everything. Each worker frees its own connections in its
   own thread.

   Each connection is echoed with the same bounded-memory backpressure as
   echo_stream.c.

   Build:  cc -std=c99 -Wall -Wextra -O2 -pthread -I. examples/threaded_server.c -o threaded_server
   Run:    ./threaded_server [-r] [-t THREADS] [PORT]   (defaults: 2 workers, port 40717;
           listens on 127.0.0.1 only)
   Try:    nc 127.0.0.1 40717 */

/* evloop.h first: it also turns on the POSIX declarations that a strict
   -std=c99 hides from the headers below. */
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_PORT    40717
#define DEFAULT_THREADS 2
#define MAX_THREADS     64
#define READ_HIGH       (64 * 1024)  /* input bytes at which a stream stops reading */
#define OUTPUT_LIMIT    (256 * 1024) /* output bytes at which we stop reading */
#define OUTPUT_RESUME   (64 * 1024)  /* output bytes at which we read again */

struct worker;

struct connection {
    struct worker *worker;
    struct connection *prev, *next; /* the worker's list, so it can free everyone */
    evloop_stream *stream;
    int paused;  /* reading stopped: the client does not read its echo fast enough */
    int closing; /* the client sent EOF: free once the output drained */
};

/* Everything in a worker is touched only by its own thread while it runs. */
struct worker {
    int index;
    pthread_t thread;
    int started;
    evloop *loop;
    evloop_listener *listener; /* -r only */
    struct connection *connections;
};

/* A new fd on its way from the acceptor to a worker. */
struct handoff {
    struct worker *worker;
    evloop_socket_t fd;
};

struct server {
    evloop *loop; /* the main thread's: signals, and the listener without -r */
    evloop_listener *listener;
    evloop_event *sigint_event, *sigterm_event;
    struct worker workers[MAX_THREADS];
    int nworkers;
    int next_worker; /* round-robin position */
};

/*== CONNECTIONS (in a worker's thread) ==*/

static void connection_free(struct connection *c)
{
    struct worker *w = c->worker;

    if (c->prev)
        c->prev->next = c->next;
    else
        w->connections = c->next;
    if (c->next) c->next->prev = c->prev;
    evloop_stream_free(c->stream); /* safe inside its own callbacks; closes the socket */
    free(c);
}

static void on_read(evloop_stream *stream, void *arg)
{
    struct connection *c = arg;
    evloop_buffer *output = evloop_stream_get_output(stream);

    if (evloop_buffer_add_buffer(output, evloop_stream_get_input(stream)) < 0) {
        connection_free(c);
        return;
    }
    if (evloop_buffer_get_length(output) >= OUTPUT_LIMIT && !c->paused) {
        c->paused = 1;
        evloop_stream_disable(stream, EVLOOP_READ);
    }
}

static void on_write(evloop_stream *stream, void *arg)
{
    struct connection *c = arg;

    if (c->closing) {
        if (evloop_buffer_get_length(evloop_stream_get_output(stream)) == 0) connection_free(c);
        return;
    }
    if (c->paused) {
        c->paused = 0;
        if (evloop_stream_enable(stream, EVLOOP_READ) < 0) connection_free(c);
    }
}

static void on_event(evloop_stream *stream, short what, void *arg)
{
    struct connection *c = arg;

    if ((what & EVLOOP_STREAM_EOF) && evloop_buffer_get_length(evloop_stream_get_output(stream))) {
        c->closing = 1;
        return;
    }
    connection_free(c);
}

/* Wraps fd in a stream on the worker's loop. Runs in the worker's thread. */
static void worker_adopt(struct worker *w, evloop_socket_t fd)
{
    struct connection *c = calloc(1, sizeof *c);

    if (c) c->stream = evloop_stream_new(w->loop, fd, EVLOOP_STREAM_CLOSE_ON_FREE);
    if (!c || !c->stream) {
        perror("threaded_server: new connection");
        free(c);
        close(fd);
        return;
    }
    c->worker = w;
    c->next = w->connections;
    if (c->next) c->next->prev = c;
    w->connections = c;
    evloop_stream_setcb(c->stream, on_read, on_write, on_event, c);
    evloop_stream_setwatermark(c->stream, EVLOOP_READ, 0, READ_HIGH);
    evloop_stream_setwatermark(c->stream, EVLOOP_WRITE, OUTPUT_RESUME, 0);
    if (evloop_stream_enable(c->stream, EVLOOP_READ | EVLOOP_WRITE) < 0) connection_free(c);
}

/*== WORKERS ==*/

/* Posted by the acceptor; runs in the worker's thread. */
static void on_handoff(void *arg)
{
    struct handoff *h = arg;

    worker_adopt(h->worker, h->fd);
    free(h);
}

/* Posted by main at shutdown, after every handoff (posts run in order). */
static void on_stop(void *arg)
{
    struct worker *w = arg;

    evloop_exit(w->loop, NULL);
}

/* -r: this worker's own listener accepted fd, in this worker's thread. */
static void on_worker_accept(evloop_listener *listener, evloop_socket_t fd, struct sockaddr *addr,
                             int socklen, void *arg)
{
    (void)listener, (void)addr, (void)socklen;
    worker_adopt(arg, fd);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    /* NO_EXIT_ON_EMPTY: with no connection yet there is nothing pending, but
       fds will be posted; run until on_stop. */
    if (evloop_run(w->loop, EVLOOP_NO_EXIT_ON_EMPTY) < 0) perror("threaded_server: worker loop");
    while (w->connections) connection_free(w->connections);
    evloop_listener_free(w->listener);
    w->listener = NULL;
    return NULL;
}

/*== ACCEPTOR AND MAIN THREAD ==*/

/* Default mode: the main thread accepted fd; give it to the next worker. */
static void on_accept(evloop_listener *listener, evloop_socket_t fd, struct sockaddr *addr,
                      int socklen, void *arg)
{
    struct server *s = arg;
    struct handoff *h = malloc(sizeof *h);

    (void)listener, (void)addr, (void)socklen;
    if (h) {
        h->worker = &s->workers[s->next_worker];
        h->fd = fd;
        s->next_worker = (s->next_worker + 1) % s->nworkers;
        if (evloop_post(h->worker->loop, on_handoff, h) == 0) return;
    }
    perror("threaded_server: hand-off");
    free(h);
    close(fd);
}

static void on_signal(evloop_socket_t signum, short what, void *arg)
{
    struct server *s = arg;

    (void)what;
    printf("got %s, shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    evloop_exit(s->loop, NULL);
}

static evloop_listener *listen_on(evloop *loop, evloop_listener_cb cb, void *arg, int port,
                                  unsigned extra_flags)
{
    struct sockaddr_in sin;

    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return evloop_listener_new_bind(
        loop, cb, arg, EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_REUSEABLE | extra_flags,
        1024, (struct sockaddr *)&sin, sizeof sin);
}

/* Creates every loop and listener before any thread runs, so no loop is
   touched by two threads at once. */
static int server_setup(struct server *s, int port, int reuseport)
{
    int i;

    s->loop = evloop_new();
    if (!s->loop) return -1;
    for (i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];

        w->index = i;
        w->loop = evloop_new();
        if (!w->loop) return -1;
        if (reuseport) {
            w->listener =
                listen_on(w->loop, on_worker_accept, w, port, EVLOOP_LISTENER_REUSEABLE_PORT);
            if (!w->listener) return -1;
        }
    }
    if (!reuseport) {
        s->listener = listen_on(s->loop, on_accept, s, port, 0);
        if (!s->listener) return -1;
    }
    s->sigint_event = evloop_signal_new(s->loop, SIGINT, on_signal, s);
    s->sigterm_event = evloop_signal_new(s->loop, SIGTERM, on_signal, s);
    if (!s->sigint_event || !s->sigterm_event || evloop_signal_add(s->sigint_event, NULL) ||
        evloop_signal_add(s->sigterm_event, NULL))
        return -1;
    return 0;
}

/* Workers start with SIGINT/SIGTERM blocked: the main thread's loop handles them. */
static int start_workers(struct server *s)
{
    sigset_t block, old;
    int i, rc = 0;

    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (i = 0; i < s->nworkers && rc == 0; i++) {
        rc = pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
        if (rc == 0)
            s->workers[i].started = 1;
        else
            fprintf(stderr, "threaded_server: pthread_create: %s\n", strerror(rc));
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc ? -1 : 0;
}

/* Stops accepting, stops and joins the workers, frees everything. */
static void server_stop(struct server *s)
{
    int i;

    evloop_listener_free(s->listener);
    s->listener = NULL;
    for (i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];

        if (!w->started) continue;
        if (evloop_post(w->loop, on_stop, w) < 0) evloop_exit(w->loop, NULL);
        pthread_join(w->thread, NULL);
    }
    for (i = 0; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];

        evloop_listener_free(w->listener); /* set when its thread never started */
        evloop_free(w->loop);
    }
    evloop_event_free(s->sigint_event);
    evloop_event_free(s->sigterm_event);
    evloop_free(s->loop);
}

static int parse_int(const char *arg, int lo, int hi)
{
    char *end;
    long v = strtol(arg, &end, 10);

    if (end == arg || *end != '\0' || v < lo || v > hi) return -1;
    return (int)v;
}

static int parse_args(int argc, char **argv, int *port, int *reuseport, int *nworkers)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0) {
            *reuseport = 1;
        } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
            if ((*nworkers = parse_int(argv[++i], 1, MAX_THREADS)) < 0) return -1;
        } else if (argv[i][0] != '-' && i == argc - 1) {
            if ((*port = parse_int(argv[i], 1, 65535)) < 0) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct server server; /* big (MAX_THREADS workers): not on the stack */
    int port = DEFAULT_PORT, reuseport = 0, status = 0;

    server.nworkers = DEFAULT_THREADS;
    if (parse_args(argc, argv, &port, &reuseport, &server.nworkers) < 0) {
        fprintf(stderr, "usage: %s [-r] [-t THREADS] [PORT]   (defaults: %d threads, port %d)\n",
                argv[0], DEFAULT_THREADS, DEFAULT_PORT);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* the ready line must reach a pipe at once */
    if (server_setup(&server, port, reuseport) < 0) {
        fprintf(stderr, "threaded_server: cannot listen on 127.0.0.1:%d: %s\n", port,
                strerror(errno));
        server_stop(&server);
        return 1;
    }
    if (start_workers(&server) < 0) {
        server_stop(&server);
        return 1;
    }
    printf("listening on 127.0.0.1:%d (%d workers%s)\n", port, server.nworkers,
           reuseport ? ", SO_REUSEPORT" : "");
    if (evloop_dispatch(server.loop) < 0) {
        perror("threaded_server: evloop_dispatch");
        status = 1;
    }
    server_stop(&server);
    return status;
}
