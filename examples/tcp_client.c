/* tcp_client.c - connect, send one message, print the reply until the
   server closes; on evloop streams.

   Shows:
     - evloop_stream_connect: a non-blocking connect whose outcome arrives in
       the event callback (CONNECTED, or ERROR with errno);
     - timeouts: the write timeout bounds the connect, the read timeout
       bounds each wait for the reply (the time allowed with no progress);
     - queueing data before the connection is up (it goes out once connected);
     - a half-close (shutdown SHUT_WR) once the message went out, so servers
       that answer at end of input (echo, rot13, HTTP/1.0) finish and close;
     - telling the user what went wrong, in words: connection refused, timed
       out, connection reset.

   Build:  cc -std=c99 -Wall -Wextra -pthread -I. examples/tcp_client.c -o tcp_client
   Run:    ./tcp_client HOST PORT [MESSAGE] [TIMEOUT_MS]
           MESSAGE understands the escapes \n \r \t \\ and is sent as is (no
           newline added); without it nothing is sent and the client just
           prints what the server says. TIMEOUT_MS defaults to 5000.
   Try:    ./tcp_client 127.0.0.1 40713 'Hello, World\n'       (with rot13_stream)
           ./tcp_client 127.0.0.1 8080 'GET / HTTP/1.0\r\n\r\n'  (with http_hello)
   Exit:   0 the server closed after replying; 1 other error; 2 usage;
           3 connection refused; 4 timed out; 5 connection reset. */

/* evloop.h first: it also turns on the POSIX declarations (getaddrinfo, ...)
   that a strict -std=c99 hides from the headers below. */
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DEFAULT_TIMEOUT_MS 5000

enum exit_status {
    STATUS_OK = 0,
    STATUS_ERROR = 1,
    STATUS_USAGE = 2,
    STATUS_REFUSED = 3,
    STATUS_TIMED_OUT = 4,
    STATUS_RESET = 5,
};

struct client {
    evloop *loop;
    evloop_stream *stream;
    const char *where; /* "HOST:PORT", for messages */
    int sent_all;      /* the message went out and we half-closed */
    int status;        /* an enum exit_status */
};

/* Stops the loop with a message (NULL: none) and an exit status. */
static void finish(struct client *cl, int status, const char *what)
{
    if (what) fprintf(stderr, "tcp_client: %s: %s\n", cl->where, what);
    cl->status = status;
    evloop_exit(cl->loop, NULL);
}

static void on_read(evloop_stream *stream, void *arg)
{
    struct client *cl = arg;
    evloop_buffer *input = evloop_stream_get_input(stream);
    size_t len = evloop_buffer_get_length(input);
    unsigned char *data = evloop_buffer_pullup(input, -1);

    /* Flush each piece at once: into a pipe or a file stdout is fully
       buffered, so without it the reply would reach whoever reads our output
       in blocks of several KiB (or only at exit), and be lost if we are
       killed meanwhile. */
    if (len && (!data || fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0)) {
        finish(cl, STATUS_ERROR, "cannot write the reply to stdout");
        return;
    }
    evloop_buffer_drain(input, len);
}

/* The output drained: the whole message went out, so tell the server we are
   done sending (it still may answer; we keep reading until its EOF). */
static void on_write(evloop_stream *stream, void *arg)
{
    struct client *cl = arg;

    if (cl->sent_all || evloop_buffer_get_length(evloop_stream_get_output(stream))) return;
    cl->sent_all = 1;
    if (shutdown(evloop_stream_get_fd(stream), SHUT_WR) < 0 && errno != ENOTCONN)
        finish(cl, STATUS_ERROR, strerror(errno));
}

static void on_event(evloop_stream *stream, short what, void *arg)
{
    struct client *cl = arg;
    int err = errno;

    (void)stream;
    if (what & EVLOOP_STREAM_CONNECTED) return; /* queued output starts flowing by itself */
    if (what & EVLOOP_STREAM_EOF) {
        finish(cl, STATUS_OK, NULL);
    } else if (what & EVLOOP_STREAM_TIMEOUT) {
        finish(cl, STATUS_TIMED_OUT, "timed out");
    } else if (err == ECONNREFUSED) {
        finish(cl, STATUS_REFUSED, "connection refused");
    } else if (err == ECONNRESET || err == EPIPE) {
        finish(cl, STATUS_RESET, "connection reset");
    } else if (err == ETIMEDOUT) {
        finish(cl, STATUS_TIMED_OUT, "timed out");
    } else {
        finish(cl, STATUS_ERROR, strerror(err));
    }
}

/* Turns the escapes \n \r \t \\ into their bytes, in place; returns the length. */
static size_t unescape(char *s)
{
    char *start = s, *out = s;

    for (; *s; s++) {
        if (*s != '\\' || !s[1]) {
            *out++ = *s;
            continue;
        }
        s++;
        *out++ = *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s == 't' ? '\t' : *s;
    }
    return (size_t)(out - start);
}

static int parse_timeout(const char *arg, long *ms)
{
    char *end;

    *ms = strtol(arg, &end, 10);
    return end != arg && *end == '\0' && *ms > 0 && *ms <= 3600L * 1000 ? 0 : -1;
}

/* Resolves host:port (numeric or a name; blocking, which is fine in a client
   that does nothing else meanwhile). */
static int resolve(const char *host, const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints, *res;
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "tcp_client: %s:%s: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int run(struct client *cl, const struct sockaddr_storage *ss, socklen_t sslen,
               const char *msg, size_t msg_len, long timeout_ms)
{
    struct timeval tv;

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    cl->loop = evloop_new();
    if (!cl->loop) return -1;
    cl->stream = evloop_stream_new(cl->loop, -1, EVLOOP_STREAM_CLOSE_ON_FREE);
    if (!cl->stream) return -1;
    evloop_stream_setcb(cl->stream, on_read, on_write, on_event, cl);
    /* Read timeout: the reply may not stall longer; write timeout: the
       connect (and any write) may not take longer. */
    if (evloop_stream_set_timeouts(cl->stream, &tv, &tv) < 0 ||
        evloop_stream_enable(cl->stream, EVLOOP_READ | EVLOOP_WRITE) < 0)
        return -1;
    if (msg && evloop_stream_write(cl->stream, msg, msg_len) < 0) return -1;
    if (evloop_stream_connect(cl->stream, (const struct sockaddr *)ss, (int)sslen) < 0) return -1;
    return evloop_dispatch(cl->loop) < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct client cl;
    struct sockaddr_storage ss;
    socklen_t sslen;
    char where[300];
    long timeout_ms = DEFAULT_TIMEOUT_MS;
    size_t msg_len = 0;

    if (argc < 3 || argc > 5 || (argc == 5 && parse_timeout(argv[4], &timeout_ms) < 0)) {
        fprintf(stderr, "usage: %s HOST PORT [MESSAGE] [TIMEOUT_MS]   (default timeout %d ms)\n",
                argv[0], DEFAULT_TIMEOUT_MS);
        return STATUS_USAGE;
    }
    if (resolve(argv[1], argv[2], &ss, &sslen) < 0) return STATUS_ERROR;
    if (argc > 3) msg_len = unescape(argv[3]);
    snprintf(where, sizeof where, "%s:%s", argv[1], argv[2]);
    memset(&cl, 0, sizeof cl);
    cl.where = where;
    cl.status = STATUS_ERROR; /* if the loop ends without telling us why */
    if (run(&cl, &ss, sslen, argc > 3 ? argv[3] : NULL, msg_len, timeout_ms) < 0)
        finish(&cl, STATUS_ERROR, strerror(errno));
    fflush(stdout);
    evloop_stream_free(cl.stream);
    evloop_free(cl.loop);
    return cl.status;
}
