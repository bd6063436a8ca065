/* rot13_stream.c - the libevent book's final ROT13 server, on evloop streams.

   Compare with rot13_server.c: there every connection manages its own buffer,
   partial reads and partial writes. Here an evloop_stream does all of that;
   the server only says what to do with a complete line.

   Shows:
     - evloop_listener_new_bind: socket, bind, listen and an accept loop in one call;
     - one evloop_stream per connection: readln(EVLOOP_EOL_LF) takes complete
       lines out of the input buffer, evloop_buffer_add queues the answer;
     - a read high watermark (MAX_LINE) so one client cannot make its input
       buffer grow without bound, and what to do with a line longer than that:
       like the tutorial, rot13 and forward what has arrived so far (nothing
       is lost; unlike the tutorial, no '\n' is inserted, so the line comes
       back byte for byte, just in pieces);
     - closing politely: on EOF, answer what is left, then close once the
       output buffer has drained;
     - what it leaves out, as the tutorial does: a limit on the output. A
       client that sends without reading makes its output buffer grow;
       echo_stream.c shows the backpressure that bounds it;
     - clean shutdown on SIGINT/SIGTERM through signal events.

   Build:  cc -std=c99 -Wall -Wextra -pthread -I. examples/rot13_stream.c -o rot13_stream
   Run:    ./rot13_stream [PORT]        (default 40713; listens on 127.0.0.1 only)
   Try:    nc 127.0.0.1 40713           then type "Hello, World" -> "Uryyb, Jbeyq" */

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

#define DEFAULT_PORT 40713
#define MAX_LINE     16384 /* longest line kept whole; longer ones are forwarded in pieces */

struct server;

struct connection {
    struct server *server;
    struct connection *prev, *next; /* the server's list, so shutdown can free everyone */
    evloop_stream *stream;
    int closing; /* the client sent EOF: free once the output drained */
};

struct server {
    evloop *loop;
    evloop_listener *listener;
    evloop_event *sigint_event, *sigterm_event;
    struct connection *connections;
};

/* Not isalpha(): the locale must not change which bytes are letters. */
static char rot13_char(char c)
{
    if ((c >= 'a' && c <= 'm') || (c >= 'A' && c <= 'M')) return (char)(c + 13);
    if ((c >= 'n' && c <= 'z') || (c >= 'N' && c <= 'Z')) return (char)(c - 13);
    return c;
}

static void connection_free(struct connection *c)
{
    struct server *s = c->server;

    if (c->prev)
        c->prev->next = c->next;
    else
        s->connections = c->next;
    if (c->next) c->next->prev = c->prev;
    /* Safe inside the stream's own callbacks; CLOSE_ON_FREE closes the socket. */
    evloop_stream_free(c->stream);
    free(c);
}

/* Rot13s up to n bytes from the front of input (n == 0: all) into output. */
static int forward_rot13(evloop_buffer *input, evloop_buffer *output, size_t n)
{
    char buf[4096];

    if (n == 0) n = evloop_buffer_get_length(input);
    while (n > 0) {
        int i, got = evloop_buffer_remove(input, buf, n < sizeof buf ? n : sizeof buf);

        if (got <= 0) return -1;
        for (i = 0; i < got; i++) buf[i] = rot13_char(buf[i]);
        if (evloop_buffer_add(output, buf, (size_t)got) < 0) return -1;
        n -= (size_t)got;
    }
    return 0;
}

static void on_read(evloop_stream *stream, void *arg)
{
    struct connection *c = arg;
    evloop_buffer *input = evloop_stream_get_input(stream);
    evloop_buffer *output = evloop_stream_get_output(stream);
    size_t i, n;
    char *line;

    while ((line = evloop_buffer_readln(input, &n, EVLOOP_EOL_LF)) != NULL) {
        for (i = 0; i < n; i++) line[i] = rot13_char(line[i]);
        if (evloop_buffer_add(output, line, n) < 0 || evloop_buffer_add(output, "\n", 1) < 0) {
            evloop_mem_free(line);
            perror("rot13_stream: output");
            connection_free(c);
            return;
        }
        evloop_mem_free(line);
    }
    /* No '\n' in MAX_LINE bytes: reading is paused at the high watermark, so
       send what we have (the tutorial's way) to make room for the rest. */
    if (evloop_buffer_get_length(input) >= MAX_LINE && forward_rot13(input, output, 0) < 0) {
        perror("rot13_stream: output");
        connection_free(c);
    }
}

/* The output buffer drained: if the client is gone, we are done with it. */
static void on_write(evloop_stream *stream, void *arg)
{
    struct connection *c = arg;

    (void)stream;
    if (c->closing) connection_free(c);
}

static void on_event(evloop_stream *stream, short what, void *arg)
{
    struct connection *c = arg;
    evloop_buffer *input = evloop_stream_get_input(stream);

    if (what & EVLOOP_STREAM_EOF) {
        /* The last line may lack its '\n'; answer it anyway. */
        if (forward_rot13(input, evloop_stream_get_output(stream), 0) == 0 &&
            evloop_buffer_get_length(evloop_stream_get_output(stream)) > 0) {
            c->closing = 1; /* on_write frees it once everything went out */
            return;
        }
    } else if ((what & EVLOOP_STREAM_ERROR) && errno != ECONNRESET && errno != EPIPE) {
        perror("rot13_stream: connection");
    }
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
        perror("rot13_stream: new connection");
        evloop_stream_free(c ? c->stream : NULL);
        free(c);
        close(fd);
        return;
    }
    c->server = s;
    c->next = s->connections;
    if (c->next) c->next->prev = c;
    s->connections = c;
    evloop_stream_setcb(c->stream, on_read, on_write, on_event, c);
    /* Reading pauses while the input holds MAX_LINE bytes (see on_read). */
    evloop_stream_setwatermark(c->stream, EVLOOP_READ, 0, MAX_LINE);
    if (evloop_stream_enable(c->stream, EVLOOP_READ | EVLOOP_WRITE) < 0) {
        perror("rot13_stream: enable");
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
        perror("rot13_stream: evloop_new");
        return -1;
    }
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* REUSEABLE (SO_REUSEADDR): a restart must not fail on TIME_WAIT sockets. */
    s->listener = evloop_listener_new_bind(
        s->loop, on_accept, s, EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_REUSEABLE, -1,
        (struct sockaddr *)&sin, sizeof sin);
    if (!s->listener) {
        fprintf(stderr, "rot13_stream: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return -1;
    }
    s->sigint_event = evloop_signal_new(s->loop, SIGINT, on_signal, s);
    s->sigterm_event = evloop_signal_new(s->loop, SIGTERM, on_signal, s);
    if (!s->sigint_event || !s->sigterm_event || evloop_signal_add(s->sigint_event, NULL) ||
        evloop_signal_add(s->sigterm_event, NULL)) {
        perror("rot13_stream: signal events");
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
    /* Line-buffered even into a pipe, so whoever waits for our lines sees them.
       (No SIGPIPE handling needed: streams write with MSG_NOSIGNAL.) */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (server_start(&server, port) < 0) {
        server_stop(&server);
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", port);
    if (evloop_dispatch(server.loop) < 0) {
        perror("rot13_stream: evloop_dispatch");
        status = 1;
    }
    server_stop(&server);
    return status;
}
