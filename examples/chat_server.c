/* chat_server.c - line-based chat: every line a client sends goes to every
   connected client (the sender included), on evloop streams.

   Shows:
     - fan-out: one input line appended to many output buffers;
     - a write high watermark as a per-client memory limit: with
       evloop_stream_setwatermark(EVLOOP_WRITE, 0, OUTPUT_LIMIT),
       evloop_stream_write refuses (-1, ENOBUFS) a line that would take that
       client's pending output past OUTPUT_LIMIT. A client that stopped
       reading would otherwise make the server buffer everything everybody
       says, forever; here it is disconnected and the others keep flowing;
     - freeing other connections from inside a callback (and not the one
       whose callback is running until it is done with its input);
     - a line length limit with the read high watermark (MAX_LINE).

   Build:  cc -std=c99 -Wall -Wextra -pthread -I. examples/chat_server.c -o chat_server
   Run:    ./chat_server [PORT]        (default 40716; listens on 127.0.0.1 only)
   Try:    nc 127.0.0.1 40716          in two terminals, and type */

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

#define DEFAULT_PORT 40716
#define MAX_LINE     4096      /* longest chat line, '\n' included */
#define OUTPUT_LIMIT (1 << 20) /* pending output at which a client is dropped */

struct server;

struct connection {
    struct server *server;
    struct connection *prev, *next; /* everyone connected, for the broadcast */
    evloop_stream *stream;
    int id;
    int too_slow; /* set while its own callback runs; freed when it returns */
};

struct server {
    evloop *loop;
    evloop_listener *listener;
    evloop_event *sigint_event, *sigterm_event;
    struct connection *connections;
    int next_id;
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

/* Appends line (with its '\n') to every client's output. A client whose
   output would pass OUTPUT_LIMIT is dropped, except the sender, which its
   caller drops once it has finished with the sender's input. */
static void broadcast(struct server *s, struct connection *sender, const char *line, size_t len)
{
    struct connection *c, *next;

    for (c = s->connections; c; c = next) {
        next = c->next; /* c may be freed below */
        if (c->too_slow || evloop_stream_write(c->stream, line, len) == 0) continue;
        if (errno == ENOBUFS)
            printf("client %d: more than %d bytes pending, disconnecting\n", c->id, OUTPUT_LIMIT);
        else
            perror("chat_server: write");
        if (c == sender)
            c->too_slow = 1;
        else
            connection_free(c);
    }
}

static void on_read(evloop_stream *stream, void *arg)
{
    struct connection *c = arg;
    evloop_buffer *input = evloop_stream_get_input(stream);
    char *line;
    size_t n;

    while (!c->too_slow && (line = evloop_buffer_readln(input, &n, EVLOOP_EOL_LF)) != NULL) {
        line[n] = '\n'; /* readln's NUL terminator becomes the line end again */
        broadcast(c->server, c, line, n + 1);
        evloop_mem_free(line);
    }
    if (c->too_slow) {
        connection_free(c);
        return;
    }
    /* Reading pauses at MAX_LINE bytes; no '\n' in that much is not chat. */
    if (evloop_buffer_get_length(input) >= MAX_LINE) {
        printf("client %d: line longer than %d bytes, disconnecting\n", c->id, MAX_LINE);
        connection_free(c);
    }
}

static void on_event(evloop_stream *stream, short what, void *arg)
{
    struct connection *c = arg;

    (void)stream;
    if ((what & EVLOOP_STREAM_ERROR) && errno != ECONNRESET && errno != EPIPE)
        perror("chat_server: connection");
    /* EOF: the client left. A last line without '\n' is not a chat line. */
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
        perror("chat_server: new connection");
        free(c);
        close(fd);
        return;
    }
    c->server = s;
    c->id = ++s->next_id;
    c->next = s->connections;
    if (c->next) c->next->prev = c;
    s->connections = c;
    evloop_stream_setcb(c->stream, on_read, NULL, on_event, c);
    evloop_stream_setwatermark(c->stream, EVLOOP_READ, 0, MAX_LINE);
    evloop_stream_setwatermark(c->stream, EVLOOP_WRITE, 0, OUTPUT_LIMIT);
    if (evloop_stream_enable(c->stream, EVLOOP_READ | EVLOOP_WRITE) < 0) {
        perror("chat_server: enable");
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
        perror("chat_server: evloop_new");
        return -1;
    }
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->listener = evloop_listener_new_bind(
        s->loop, on_accept, s, EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_REUSEABLE, -1,
        (struct sockaddr *)&sin, sizeof sin);
    if (!s->listener) {
        fprintf(stderr, "chat_server: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return -1;
    }
    s->sigint_event = evloop_signal_new(s->loop, SIGINT, on_signal, s);
    s->sigterm_event = evloop_signal_new(s->loop, SIGTERM, on_signal, s);
    if (!s->sigint_event || !s->sigterm_event || evloop_signal_add(s->sigint_event, NULL) ||
        evloop_signal_add(s->sigterm_event, NULL)) {
        perror("chat_server: signal events");
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
        perror("chat_server: evloop_dispatch");
        status = 1;
    }
    server_stop(&server);
    return status;
}
