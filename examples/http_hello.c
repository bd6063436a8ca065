/* http_hello.c - a minimal HTTP/1.1 server on evloop streams that answers
   every GET with "Hello, World!".

   Minimal, but it does what real clients (curl, browsers, wrk) rely on:
     - keep-alive: HTTP/1.1 connections stay open unless the client sends
       "Connection: close"; HTTP/1.0 ones close unless it sends
       "Connection: keep-alive";
     - pipelining: a client may send many requests before reading; every
       complete request in the input buffer is answered, in order, and a
       request split across reads waits for its end;
     - limits: headers larger than MAX_HEADER get 431, a malformed request
       line or header gets 400 (both then close the connection), a client
       that pipelines without reading is paused at OUTPUT_LIMIT bytes of
       pending answers (backpressure, as in echo_stream.c);
     - the headers a real server sends: Date (RFC 7231 format, computed from
       the loop's cached clock at most once a second), Content-Type,
       Content-Length, Connection when it matters;
     - a "lingering close": after an error answer the server shuts down its
       sending side and discards what the client still sends for a moment,
       so the client reads the answer instead of a connection reset.

   Build:  cc -std=c99 -Wall -Wextra -O2 -pthread -I. examples/http_hello.c -o http_hello
   Run:    ./http_hello [PORT]        (default 8080; listens on 127.0.0.1 only)
   Try:    curl -v http://127.0.0.1:8080/        wrk -c50 -d5s http://127.0.0.1:8080/ */

/* evloop.h first: it also turns on the POSIX declarations (gmtime_r, ...)
   that a strict -std=c99 hides from the headers below. */
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
#include <time.h>
#include <unistd.h>

#define DEFAULT_PORT   8080
#define MAX_HEADER     8192         /* request line + headers + blank line */
#define MAX_BODY       (1 << 20)    /* request bodies are read and ignored, up to this */
#define READ_HIGH      (64 * 1024)  /* input at which the stream stops reading */
#define OUTPUT_LIMIT   (256 * 1024) /* pending answers at which we stop parsing */
#define OUTPUT_RESUME  (64 * 1024)  /* ... and resume */
#define IDLE_SECONDS   30           /* connections making no progress this long are closed */
#define LINGER_SECONDS 2            /* how long a closing connection drains its input */
#define HELLO          "Hello, World!"

struct server;

enum conn_state {
    CONN_OPEN,      /* parsing requests */
    CONN_CLOSING,   /* the last answer is queued: shut down once it went out */
    CONN_LINGERING, /* our side is shut down: discard input until EOF or LINGER_SECONDS */
};

struct connection {
    struct server *server;
    struct connection *prev, *next; /* the server's list, so shutdown can free everyone */
    evloop_stream *stream;
    enum conn_state state;
    int paused;       /* reading stopped because too many answers are pending */
    int got_eof;      /* the client finished sending */
    size_t body_left; /* bytes of the current request's body still to skip */
};

struct server {
    evloop *loop;
    evloop_listener *listener;
    evloop_event *sigint_event, *sigterm_event;
    struct connection *connections;
    time_t date_time; /* second that date[] shows */
    char date[64];    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
};

/* One parsed request: what the answer depends on. */
struct request {
    int minor;           /* HTTP/1.<minor> */
    int head;            /* HEAD: no body in the answer */
    int get;             /* GET or HEAD */
    int keep_alive;      /* the connection stays open after the answer */
    int chunked;         /* Transfer-Encoding present (not supported) */
    long content_length; /* -1 when absent */
};

/*== CONNECTIONS ==*/

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

/* The Date header changes once a second; format it only then. The loop's
   cached time costs no system call. */
static const char *http_date(struct server *s)
{
    struct timeval tv;
    struct tm tm;
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

    evloop_gettimeofday_cached(s->loop, &tv);
    if (s->date[0] && tv.tv_sec == s->date_time) return s->date;
    s->date_time = tv.tv_sec;
    gmtime_r(&s->date_time, &tm);
    /* By hand rather than strftime's %a/%b, which follow the locale. */
    snprintf(s->date, sizeof s->date, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    return s->date;
}

/* Queues one answer. Without a parsed request (rq NULL: an error in the
   request itself) the connection closes after it. */
static int respond(struct connection *c, int status, const char *reason, const struct request *rq,
                   const char *body)
{
    evloop_buffer *out = evloop_stream_get_output(c->stream);
    int keep_alive = rq && rq->keep_alive; /* rq is NULL for malformed requests */
    int with_body = !(rq && rq->head);

    if (evloop_buffer_add_printf(out,
                                 "HTTP/1.1 %d %s\r\n"
                                 "Server: evloop-http_hello\r\n"
                                 "Date: %s\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "Content-Length: %zu\r\n"
                                 "%s"
                                 "%s"
                                 "\r\n"
                                 "%s",
                                 status, reason, http_date(c->server), strlen(body),
                                 status == 405 ? "Allow: GET, HEAD\r\n" : "",
                                 !keep_alive            ? "Connection: close\r\n"
                                 : rq && rq->minor == 0 ? "Connection: keep-alive\r\n"
                                                        : "",
                                 with_body ? body : "") < 0)
        return -1;
    if (!keep_alive) c->state = CONN_CLOSING;
    return 0;
}

static int respond_error(struct connection *c, int status, const char *reason)
{
    char body[64];

    snprintf(body, sizeof body, "%d %s\n", status, reason);
    return respond(c, status, reason, NULL, body);
}

/*== PARSING ==*/

static int is_tchar(unsigned char ch)
{
    /* RFC 7230 token characters. */
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int ascii_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

static int name_is(const char *name, size_t len, const char *want)
{
    size_t i;

    if (strlen(want) != len) return 0;
    for (i = 0; i < len; i++)
        if (ascii_lower((unsigned char)name[i]) != want[i]) return 0;
    return 1;
}

/* Does the comma-separated value list contain token (case-insensitive)? */
static int has_token(const char *v, size_t len, const char *token)
{
    size_t i = 0;

    while (i < len) {
        size_t start, end;

        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        start = i;
        while (i < len && v[i] != ',') i++;
        end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
        if (name_is(v + start, end - start, token)) return 1;
    }
    return 0;
}

/* "METHOD SP TARGET SP HTTP/1.x": 0 if well formed, -1 if not. */
static int parse_request_line(const char *p, size_t len, struct request *rq)
{
    size_t i = 0, m;

    while (i < len && is_tchar((unsigned char)p[i])) i++;
    m = i;
    if (m == 0 || i >= len || p[i++] != ' ') return -1;
    if (i >= len || p[i] == ' ') return -1;
    while (i < len && p[i] != ' ') {
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f) return -1;
        i++;
    }
    if (i >= len || p[i++] != ' ') return -1;
    if (len - i != 8 || memcmp(p + i, "HTTP/1.", 7) != 0 || (p[i + 7] != '0' && p[i + 7] != '1'))
        return -1;
    rq->minor = p[i + 7] - '0';
    rq->head = m == 4 && memcmp(p, "HEAD", 4) == 0;
    rq->get = rq->head || (m == 3 && memcmp(p, "GET", 3) == 0);
    rq->keep_alive = rq->minor == 1;
    return 0;
}

/* One "Name: value" line. 0 if well formed, -1 if not. */
static int parse_header(const char *p, size_t len, struct request *rq)
{
    size_t n = 0, v;

    while (n < len && is_tchar((unsigned char)p[n])) n++;
    if (n == 0 || n >= len || p[n] != ':') return -1; /* also refuses obsolete line folding */
    for (v = n + 1; v < len; v++)
        if (((unsigned char)p[v] < 0x20 && p[v] != '\t') || p[v] == 0x7f) return -1;
    v = n + 1;
    while (v < len && (p[v] == ' ' || p[v] == '\t')) v++;
    while (len > v && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
    if (name_is(p, n, "connection")) {
        if (has_token(p + v, len - v, "close")) rq->keep_alive = 0;
        if (rq->minor == 0 && has_token(p + v, len - v, "keep-alive")) rq->keep_alive = 1;
    } else if (name_is(p, n, "content-length")) {
        long cl = 0;
        size_t i;

        if (v == len || rq->content_length >= 0) return -1; /* empty or repeated */
        for (i = v; i < len; i++) {
            if (p[i] < '0' || p[i] > '9') return -1;
            if (cl > MAX_BODY) continue; /* too large anyway: 413, and no overflow */
            cl = cl * 10 + (p[i] - '0');
        }
        rq->content_length = cl;
    } else if (name_is(p, n, "transfer-encoding")) {
        rq->chunked = 1;
    }
    return 0;
}

/* Parses the head (request line, headers, CRLF CRLF) held in p[0..len). */
static int parse_head(const char *p, size_t len, struct request *rq)
{
    const char *end = p + len - 2; /* the final CRLF */
    const char *line = p, *eol;

    memset(rq, 0, sizeof *rq);
    rq->content_length = -1;
    eol = memchr(line, '\r', (size_t)(end - line) + 1);
    if (!eol || eol[1] != '\n' || parse_request_line(line, (size_t)(eol - line), rq) < 0) return -1;
    for (line = eol + 2; line < end; line = eol + 2) {
        eol = memchr(line, '\r', (size_t)(end - line) + 1);
        if (!eol || eol[1] != '\n' || parse_header(line, (size_t)(eol - line), rq) < 0) return -1;
    }
    return 0;
}

/* Handles the request at the front of input, if it is complete. Returns 1
   when one was handled, 0 when more input is needed, -1 to drop the connection. */
static int handle_one(struct connection *c, evloop_buffer *input)
{
    size_t len = evloop_buffer_get_length(input);
    long eoh, eol;
    unsigned char *head;
    struct request rq;

    /* Empty lines before a request are allowed (RFC 7230, 3.5). */
    while (len >= 2 && evloop_buffer_find(input, "\r\n", 2) == 0) {
        evloop_buffer_drain(input, 2);
        len -= 2;
    }
    if (len == 0) return 0;
    eoh = evloop_buffer_find(input, "\r\n\r\n", 4);
    if (eoh < 0 || eoh + 4 > MAX_HEADER) {
        /* Refuse a broken request line now rather than wait for a whole head. */
        eol = evloop_buffer_find(input, "\n", 1);
        if (eol >= 0 && eol < MAX_HEADER) {
            head = evloop_buffer_pullup(input, eol + 1);
            if (!head) return -1;
            memset(&rq, 0, sizeof rq);
            if (eol == 0 || head[eol - 1] != '\r' ||
                parse_request_line((char *)head, (size_t)eol - 1, &rq) < 0)
                return respond_error(c, 400, "Bad Request") < 0 ? -1 : 1;
        }
        if (len < MAX_HEADER && eoh < 0) return 0;
        return respond_error(c, 431, "Request Header Fields Too Large") < 0 ? -1 : 1;
    }
    head = evloop_buffer_pullup(input, eoh + 4);
    if (!head) return -1;
    if (parse_head((char *)head, (size_t)eoh + 4, &rq) < 0)
        return respond_error(c, 400, "Bad Request") < 0 ? -1 : 1;
    evloop_buffer_drain(input, (size_t)eoh + 4);
    if (rq.chunked) return respond_error(c, 501, "Not Implemented") < 0 ? -1 : 1;
    if (rq.content_length > MAX_BODY)
        return respond_error(c, 413, "Content Too Large") < 0 ? -1 : 1;
    if (rq.content_length > 0) c->body_left = (size_t)rq.content_length; /* skipped below */
    if (!rq.get)
        return respond(c, 405, "Method Not Allowed", &rq, "405 Method Not Allowed\n") < 0 ? -1 : 1;
    return respond(c, 200, "OK", &rq, HELLO) < 0 ? -1 : 1;
}

/* Answers every complete request in the input, in order, until the output
   is full. Returns -1 if the connection was freed. */
static int process_input(struct connection *c)
{
    evloop_stream *stream = c->stream;
    evloop_buffer *input = evloop_stream_get_input(stream);
    evloop_buffer *output = evloop_stream_get_output(stream);

    while (c->state == CONN_OPEN) {
        int rc;

        if (c->body_left) { /* the previous request's body: read and ignore */
            size_t n = evloop_buffer_get_length(input);

            n = n < c->body_left ? n : c->body_left;
            evloop_buffer_drain(input, n);
            c->body_left -= n;
            if (c->body_left) return 0;
        }
        if (evloop_buffer_get_length(output) >= OUTPUT_LIMIT) {
            /* Pipelining faster than it reads: let the answers drain first. */
            c->paused = 1;
            evloop_stream_disable(stream, EVLOOP_READ);
            return 0;
        }
        rc = handle_one(c, input);
        if (rc < 0) {
            perror("http_hello: answer");
            connection_free(c);
            return -1;
        }
        if (rc == 0) break;
    }
    if (c->state != CONN_OPEN) evloop_stream_disable(stream, EVLOOP_READ);
    return 0;
}

/*== CALLBACKS ==*/

static void on_read(evloop_stream *stream, void *arg)
{
    struct connection *c = arg;

    if (c->state == CONN_LINGERING) {
        evloop_buffer_drain(evloop_stream_get_input(stream),
                            evloop_buffer_get_length(evloop_stream_get_input(stream)));
        return;
    }
    process_input(c);
}

/* Shut down our sending side and drain the client's data for a while: a
   close() with unread input would send a reset that can destroy the answer
   before the client read it. */
static void start_lingering(struct connection *c)
{
    struct timeval linger = {LINGER_SECONDS, 0};

    c->state = CONN_LINGERING;
    if (c->got_eof) { /* nothing more will come: close now */
        connection_free(c);
        return;
    }
    if (shutdown(evloop_stream_get_fd(c->stream), SHUT_WR) < 0 ||
        evloop_stream_set_timeouts(c->stream, &linger, NULL) < 0 ||
        evloop_stream_enable(c->stream, EVLOOP_READ) < 0)
        connection_free(c);
}

/* The output drained to OUTPUT_RESUME (or further, in later calls). */
static void on_write(evloop_stream *stream, void *arg)
{
    struct connection *c = arg;

    if (c->state == CONN_CLOSING) {
        if (evloop_buffer_get_length(evloop_stream_get_output(stream)) == 0) start_lingering(c);
        return;
    }
    if (c->paused && c->state == CONN_OPEN) {
        c->paused = 0;
        if (evloop_stream_enable(stream, EVLOOP_READ) < 0) {
            connection_free(c);
            return;
        }
        process_input(c); /* requests may be waiting in the input already */
    }
}

static void on_event(evloop_stream *stream, short what, void *arg)
{
    struct connection *c = arg;

    if (what & EVLOOP_STREAM_EOF) c->got_eof = 1;
    /* Half-closed by the client with answers still queued: send them first. */
    if ((what & EVLOOP_STREAM_EOF) && c->state != CONN_LINGERING &&
        evloop_buffer_get_length(evloop_stream_get_output(stream)) > 0) {
        c->state = CONN_CLOSING;
        return;
    }
    if ((what & EVLOOP_STREAM_ERROR) && errno != ECONNRESET && errno != EPIPE)
        perror("http_hello: connection");
    connection_free(c); /* EOF, error, or idle/linger timeout */
}

static void on_accept(evloop_listener *listener, evloop_socket_t fd, struct sockaddr *addr,
                      int socklen, void *arg)
{
    struct server *s = arg;
    struct connection *c = calloc(1, sizeof *c);
    struct timeval idle = {IDLE_SECONDS, 0};

    (void)listener, (void)addr, (void)socklen;
    if (c) c->stream = evloop_stream_new(s->loop, fd, EVLOOP_STREAM_CLOSE_ON_FREE);
    if (!c || !c->stream) {
        perror("http_hello: new connection");
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
    /* Read timeout: an idle keep-alive connection goes away; write timeout:
       so does a client that stops reading its answers. */
    if (evloop_stream_set_timeouts(c->stream, &idle, &idle) < 0 ||
        evloop_stream_enable(c->stream, EVLOOP_READ | EVLOOP_WRITE) < 0) {
        perror("http_hello: enable");
        connection_free(c);
    }
}

/*== SERVER ==*/

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
        perror("http_hello: evloop_new");
        return -1;
    }
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->listener = evloop_listener_new_bind(
        s->loop, on_accept, s, EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_REUSEABLE, 1024,
        (struct sockaddr *)&sin, sizeof sin);
    if (!s->listener) {
        fprintf(stderr, "http_hello: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return -1;
    }
    s->sigint_event = evloop_signal_new(s->loop, SIGINT, on_signal, s);
    s->sigterm_event = evloop_signal_new(s->loop, SIGTERM, on_signal, s);
    if (!s->sigint_event || !s->sigterm_event || evloop_signal_add(s->sigint_event, NULL) ||
        evloop_signal_add(s->sigterm_event, NULL)) {
        perror("http_hello: signal events");
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
        perror("http_hello: evloop_dispatch");
        status = 1;
    }
    server_stop(&server);
    return status;
}
