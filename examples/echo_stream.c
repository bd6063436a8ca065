/* echo_stream.c - a TCP echo server on evloop streams, with bounded memory.

   An echo server is the simplest place where a careless server grows without
   bound: a client that sends fast and never reads makes every byte pile up in
   the server's output buffer. This one caps what each connection can hold:

     - read high watermark (READ_HIGH): the stream stops reading from the
       socket while the input buffer holds that much, so the input never grows
       past READ_HIGH plus one read;
     - write backpressure: after moving the input to the output, if the output
       holds OUTPUT_LIMIT or more the server stops reading from that client
       (evloop_stream_disable(EVLOOP_READ)); the write callback, which runs
       when the output drains to the write low watermark (OUTPUT_RESUME),
       starts reading again. The client's own sends then block in the kernel,
       which is exactly the pressure we want to push back.

   So a connection costs at most about READ_HIGH + OUTPUT_LIMIT + one read of
   memory, whatever the client does (the test sends 100 MB without reading
   and watches the server's RSS).

   Also shows evloop_buffer_add_buffer (moves the bytes, no copy) and a polite
   close: on EOF the rest of the output is sent before the socket is closed.

   Build:  cc -std=c99 -Wall -Wextra -pthread -I. examples/echo_stream.c -o echo_stream
   Run:    ./echo_stream [PORT]        (default 40715; listens on 127.0.0.1 only)
   Try:    nc 127.0.0.1 40715          type lines and see them echoed */

/* evloop.h first: it also turns on the POSIX declarations that a strict
   -std=c99 hides from the headers below. */
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_PORT  40715
#define READ_HIGH     (64 * 1024)  /* input bytes at which the stream stops reading */
#define OUTPUT_LIMIT  (256 * 1024) /* output bytes at which we stop reading */
#define OUTPUT_RESUME (64 * 1024)  /* output bytes at which we read again */

struct server;

struct connection {
    struct server *server;
    struct connection *prev, *next; /* the server's list, so shutdown can free everyone */
    evloop_stream *stream;
    int paused;  /* we disabled reading because the output is full */
    int closing; /* the client sent EOF: free once the output drained */
};

struct server {
    evloop *loop;
    evloop_listener *listener;
    evloop_event *sigint_event, *sigterm_event;
    struct connection *connections;
};

static void connection_free(struct connection *c)
{
    struct server *s = c->server;

    if (c->prev)
        c->prev->next = c->next;
    else
        s->connections = c->next;
    if (c->next) c->next->prev = c->prev;
    evloop_stream_free(c->stream); /* safe inside its own callbacks; closes the socket */
    free(c);
}

static void on_read(evloop_stream *stream, void *arg)
{
    struct connection *c = arg;
    evloop_buffer *output = evloop_stream_get_output(stream);

    /* Moves the chunks from input to output: no copy. */
    if (evloop_buffer_add_buffer(output, evloop_stream_get_input(stream)) < 0) {
        perror("echo_stream: output");
        connection_free(c);
        return;
    }
    if (evloop_buffer_get_length(output) >= OUTPUT_LIMIT && !c->paused) {
        /* The client is not reading fast enough: stop taking more from it. */
        c->paused = 1;
        evloop_stream_disable(stream, EVLOOP_READ);
    }
}

/* The output drained to OUTPUT_RESUME (or, once closing, further). */
static void on_write(evloop_stream *stream, void *arg)
{
    struct connection *c = arg;

    if (c->closing) {
        if (evloop_buffer_get_length(evloop_stream_get_output(stream)) == 0) connection_free(c);
        return;
    }
    if (c->paused) {
        c->paused = 0;
        if (evloop_stream_enable(stream, EVLOOP_READ) < 0) {
            perror("echo_stream: enable");
            connection_free(c);
        }
    }
}

static void on_event(evloop_stream *stream, short what, void *arg)
{
    struct connection *c = arg;

    if ((what & EVLOOP_STREAM_EOF) && evloop_buffer_get_length(evloop_stream_get_output(stream))) {
        c->closing = 1; /* on_write frees it once everything went out */
        return;
    }
    if ((what & EVLOOP_STREAM_ERROR) && errno != ECONNRESET && errno != EPIPE)
        perror("echo_stream: connection");
    connection_free(c);
}

static void on_accept(evloop_listener *listener, evloop_socket_t fd, struct sockaddr *addr,
                      int socklen, void *arg)
{
    struct server *s = arg;
    struct connection *c = calloc(1, sizeof *c);

    (void)listener, (void)addr, (void)socklen;
    if (c) c->stream = evloop_stream_new(s->loop, fd, EVLOOP_STREAM_CLOSE_ON_FREE);
    if (!c || !c->stream) {
        perror("echo_stream: new connection");
        free(c);
        close(fd);
        return;
    }
    c->server = s;
    c->next = s->connections;
    if (c->next) c->next->prev = c;
    s->connections = c;
    evloop_stream_setcb(c->stream, on_read, on_write, on_event, c);
    evloop_stream_setwatermark(c->stream, EVLOOP_READ, 0, READ_HIGH);
    evloop_stream_setwatermark(c->stream, EVLOOP_WRITE, OUTPUT_RESUME, 0);
    if (evloop_stream_enable(c->stream, EVLOOP_READ | EVLOOP_WRITE) < 0) {
        perror("echo_stream: enable");
        connection_free(c);
    }
}

static void on_signal(evloop_socket_t signum, short what, void *arg)
{
    struct server *s = arg;

    (void)what;
    printf("got %s, shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    evloop_exit(s->loop, NULL);
}

static int server_start(struct server *s, int port)
{
    struct sockaddr_in sin;

    s->loop = evloop_new();
    if (!s->loop) {
        perror("echo_stream: evloop_new");
        return -1;
    }
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A large backlog: the test connects 1,000 clients at once. */
    s->listener = evloop_listener_new_bind(
        s->loop, on_accept, s, EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_REUSEABLE, 1024,
        (struct sockaddr *)&sin, sizeof sin);
    if (!s->listener) {
        fprintf(stderr, "echo_stream: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return -1;
    }
    s->sigint_event = evloop_signal_new(s->loop, SIGINT, on_signal, s);
    s->sigterm_event = evloop_signal_new(s->loop, SIGTERM, on_signal, s);
    if (!s->sigint_event || !s->sigterm_event || evloop_signal_add(s->sigint_event, NULL) ||
        evloop_signal_add(s->sigterm_event, NULL)) {
        perror("echo_stream: signal events");
        return -1;
    }
    return 0;
}

/* Frees whatever server_start managed to create; streams and events before their loop. */
static void server_stop(struct server *s)
{
    while (s->connections) connection_free(s->connections);
    evloop_listener_free(s->listener);
    evloop_event_free(s->sigint_event);
    evloop_event_free(s->sigterm_event);
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
    struct server server;
    int port = argc > 1 ? parse_port(argv[1]) : DEFAULT_PORT;
    int status = 0;

    if (argc > 2 || port < 0) {
        fprintf(stderr, "usage: %s [PORT]   (default %d)\n", argv[0], DEFAULT_PORT);
        return 2;
    }
    memset(&server, 0, sizeof server);
    setvbuf(stdout, NULL, _IOLBF, 0); /* the ready line must reach a pipe at once */
    if (server_start(&server, port) < 0) {
        server_stop(&server);
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", port);
    if (evloop_dispatch(server.loop) < 0) {
        perror("echo_stream: evloop_dispatch");
        status = 1;
    }
    server_stop(&server);
    return status;
}
