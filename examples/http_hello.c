/* http_hello.c - a minimal HTTP/1.1 server on evloop streams that answers
   every GET with "Hello, World!", on one thread or several.

   Minimal, but it does what real clients (curl, browsers, wrk) rely on:
     - keep-alive: HTTP/1.1 connections stay open unless the client sends
       "Connection: close"; HTTP/1.0 ones close unless it sends
       "Connection: keep-alive";
     - pipelining: a client may send many requests before reading; every
       complete request in the input buffer is answered, in order, and a
       request split across reads waits for its end;
     - limits: headers larger than MAX_HEADER get 431, a malformed request
       line or header gets 400, and so does a request with two Host headers
       or an HTTP/1.1 one with none (RFC 9112, 3.2); each of these then
       closes the connection; a client that pipelines without reading is
       paused at OUTPUT_LIMIT bytes of pending answers (backpressure, as in
       echo_stream.c);
     - the headers a real server sends: Date (RFC 7231 format, computed from
       the loop's cached clock at most once a second), Content-Type,
       Content-Length, Connection when it matters;
     - a "lingering close": after an error answer the server shuts down its
       sending side and discards what the client still sends for a moment,
       so the client reads the answer instead of a connection reset; the
       moment ends LINGER_SECONDS after the client's last byte, and at the
       latest LINGER_TOTAL_SECONDS (or -l) after it began, so a client that
       never stops sending cannot hold the connection forever.

   Threads (-t): an evloop is used by one thread at a time, so using every
   core means one loop per thread. Each worker has its own loop, its own
   listener on the same port (SO_REUSEPORT: the kernel spreads the incoming
   connections over the listeners) and its own connections; workers share
   nothing, so the request path takes no lock. The main thread is worker 0:
   with -t 1 (the default) the server is one plain single-threaded loop. The
   main thread's loop also handles SIGINT/SIGTERM: it then posts a "stop" to
   every other worker with evloop_post (the one thread-safe way into another
   thread's loop), joins them and frees everything. threaded_server.c shows
   the other way to spread connections: one acceptor handing them out.

   Speed: the per-request path costs one read and one write system call per
   batch of pipelined requests (the stream writes what the read callback
   queued as soon as it returns), parses the bytes in place without copying,
   and builds each answer with memcpy rather than printf (the everyday answer,
   Date included, is made once a second).

   Build:  cc -std=c99 -Wall -Wextra -O2 -pthread -I. examples/http_hello.c -o http_hello
   Run:    ./http_hello [-t THREADS] [-l LINGER_TOTAL_SECONDS] [PORT]
           (defaults: 1 thread, 30 s, port 8080; listens on 127.0.0.1 only)
   Try:    curl -v http://127.0.0.1:8080/        wrk -c50 -d5s http://127.0.0.1:8080/ */

/* evloop.h first: it also turns on the POSIX declarations (gmtime_r, ...)
   that a strict -std=c99 hides from the headers below. */
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
#include <time.h>
#include <unistd.h>

#define DEFAULT_PORT   8080
#define MAX_THREADS    64
#define MAX_HEADER     8192         /* request line + headers + blank line */
#define MAX_BODY       (1 << 20)    /* request bodies are read and ignored, up to this */
#define READ_HIGH      (64 * 1024)  /* input at which the stream stops reading */
#define OUTPUT_LIMIT   (256 * 1024) /* pending answers at which we stop parsing */
#define OUTPUT_RESUME  (64 * 1024)  /* ... and resume */
#define IDLE_SECONDS   30           /* connections making no progress this long are closed */
#define LINGER_SECONDS 2            /* how long a closing connection waits for more input */
/* ... and how long it may drain in all, however steadily the client sends.
   The linger is there for clients still sending when our error answer went
   out (a large upload refused with 413, say): they need the time to notice
   the answer and stop. 30 s, as nginx's lingering_time, is plenty for that;
   -l changes it (the tests use 1 s so they do not wait 30). */
#define LINGER_TOTAL_SECONDS 30
#define MAX_LINGER_SECONDS   3600 /* the largest -l accepted */
#define HELLO                "Hello, World!"
#define ANSWER_MAX           512 /* bytes in the longest answer we send, and then some */

struct worker;

enum conn_state {
    CONN_OPEN,      /* parsing requests */
    CONN_CLOSING,   /* the last answer is queued: shut down once it went out */
    CONN_LINGERING, /* our side is shut down: discard input until EOF or a linger timeout */
};

struct connection {
    struct worker *worker;
    struct connection *prev, *next; /* the worker's list, so shutdown can free everyone */
    evloop_stream *stream;
    enum conn_state state;
    int paused;       /* reading stopped because too many answers are pending */
    int got_eof;      /* the client finished sending */
    size_t body_left; /* bytes of the current request's body still to skip */
    /* While lingering: a one-shot timer that ends the linger once it has
       lasted the worker's linger_total, in case the read timeout never does. */
    evloop_event linger_timer;
};

/* One thread's server. Everything in it is touched only by its own thread
   while that thread runs (the main thread sets it up before and frees it
   after). */
struct worker {
    pthread_t thread;
    int started; /* the thread runs and must be joined (workers 1 and up) */
    evloop *loop;
    evloop_listener *listener;
    struct connection *connections;
    time_t date_time;       /* second that date[] shows */
    char date[64];          /* "Sun, 06 Nov 1994 08:49:37 GMT" (room for what snprintf fears) */
    char hello[ANSWER_MAX]; /* the everyday answer, remade with date[] */
    size_t hello_len;
    struct timeval linger_total; /* the longest a connection may linger (-l) */
};

struct server {
    struct worker workers[MAX_THREADS]; /* workers[0] runs in the main thread */
    int nworkers;
    evloop_event *sigint_event, *sigterm_event; /* on workers[0]'s loop */
    int linger_total;                           /* seconds: LINGER_TOTAL_SECONDS or -l */
};

/* One parsed request: what the answer depends on. */
struct request {
    int minor;           /* HTTP/1.<minor> */
    int head;            /* HEAD: no body in the answer */
    int get;             /* GET or HEAD */
    int keep_alive;      /* the connection stays open after the answer */
    int chunked;         /* Transfer-Encoding present (not supported) */
    long content_length; /* -1 when absent */
    int hosts;           /* Host headers seen (exactly 1 is required, see host_count_ok) */
};

/*== CONNECTIONS ==*/

static void connection_free(struct connection *c)
{
    struct worker *w = c->worker;

    if (c->prev)
        c->prev->next = c->next;
    else
        w->connections = c->next;
    if (c->next) c->next->prev = c->prev;
    /* The timer lives inside *c: take it out of the loop before the memory
       goes (allowed from its own callback too). It is assigned only once the
       connection lingers; calloc left it zeroed, which "initialized" tells. */
    if (evloop_event_initialized(&c->linger_timer)) evloop_event_del(&c->linger_timer);
    evloop_stream_free(c->stream); /* safe inside its own callbacks; closes the socket */
    free(c);
}

/*== ANSWERS ==*/

/* Appends s to the answer being built in buf. */
static void put(char *buf, size_t *n, const char *s)
{
    size_t len = strlen(s);

    memcpy(buf + *n, s, len);
    *n += len;
}

/* Writes a whole answer into buf (ANSWER_MAX bytes: enough for every
   answer this program sends) and returns its length. */
static size_t format_answer(char *buf, const char *date, const char *status, const char *connection,
                            const char *body, int with_body)
{
    char length[24];
    size_t n = 0;

    snprintf(length, sizeof length, "%zu", strlen(body));
    put(buf, &n, "HTTP/1.1 ");
    put(buf, &n, status); /* "200 OK" */
    put(buf, &n, "\r\nServer: evloop-http_hello\r\nDate: ");
    put(buf, &n, date);
    put(buf, &n, "\r\nContent-Type: text/plain\r\nContent-Length: ");
    put(buf, &n, length);
    put(buf, &n, "\r\n");
    if (strncmp(status, "405", 3) == 0) put(buf, &n, "Allow: GET, HEAD\r\n");
    put(buf, &n, connection); /* "" or a whole "Connection: ...\r\n" line */
    put(buf, &n, "\r\n");
    if (with_body) put(buf, &n, body);
    return n;
}

/* The Date header changes once a second: format it only then, and with it
   the everyday answer (200 with HELLO, keep-alive, HTTP/1.1), which then
   costs one copy per request instead of being assembled each time. The
   loop's cached time costs no system call. */
static void update_date(struct worker *w)
{
    struct timeval tv = {0, 0}; /* evloop_gettimeofday_cached fails only without a loop */
    struct tm tm;
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

    evloop_gettimeofday_cached(w->loop, &tv);
    if (w->date[0] && tv.tv_sec == w->date_time) return;
    w->date_time = tv.tv_sec;
    gmtime_r(&w->date_time, &tm);
    /* By hand rather than strftime's %a/%b, which follow the locale. */
    snprintf(w->date, sizeof w->date, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    w->hello_len = format_answer(w->hello, w->date, "200 OK", "", HELLO, 1);
}

/* Queues one answer. Without a parsed request (rq NULL: an error in the
   request itself) the connection closes after it. The answer is assembled
   with memcpy and added to the output in one piece. */
static int respond(struct connection *c, const char *status, const struct request *rq,
                   const char *body)
{
    struct worker *w = c->worker;
    char buf[ANSWER_MAX];
    size_t n;
    int keep_alive = rq && rq->keep_alive; /* rq is NULL for malformed requests */

    update_date(w);
    n = format_answer(buf, w->date, status,
                      !keep_alive      ? "Connection: close\r\n"
                      : rq->minor == 0 ? "Connection: keep-alive\r\n"
                                       : "",
                      body, !(rq && rq->head));
    if (evloop_buffer_add(evloop_stream_get_output(c->stream), buf, n) < 0) return -1;
    if (!keep_alive) c->state = CONN_CLOSING;
    return 0;
}

/* 200 with HELLO. To a keep-alive HTTP/1.1 request, nearly every request a
   benchmark or a browser sends, that is the answer update_date made: one
   copy, where printf would cost more than all the rest of the request. */
static int respond_hello(struct connection *c, const struct request *rq)
{
    struct worker *w = c->worker;

    if (!rq->keep_alive || rq->minor != 1) return respond(c, "200 OK", rq, HELLO);
    update_date(w);
    return evloop_buffer_add(evloop_stream_get_output(c->stream), w->hello,
                             rq->head ? w->hello_len - strlen(HELLO) : w->hello_len);
}

/* An answer that ends the connection: "400 Bad Request" and the like. */
static int respond_error(struct connection *c, const char *status)
{
    char body[64];

    snprintf(body, sizeof body, "%s\n", status);
    return respond(c, status, NULL, body);
}

/*== PARSING ==*/

/* RFC 7230 token characters. Inline: called for every byte of every method
   and header name. */
static inline int is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch > ' ' && ch < 0x7f && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* What a header value may hold: no control character but tab. */
static inline int is_field_char(unsigned char ch)
{
    return (ch >= 0x20 && ch != 0x7f) || ch == '\t';
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
        if (!is_field_char((unsigned char)p[v])) return -1;
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
    } else if (name_is(p, n, "host")) {
        rq->hosts++; /* judged once the whole head is in: see host_count_ok */
    }
    return 0;
}

/* RFC 9112, 3.2: a server must answer 400 to a request with more than one
   Host header (which one would name the site?), and to an HTTP/1.1 request
   with none: HTTP/1.1 clients must send it. HTTP/1.0 predates Host, so
   there it may be missing. */
static int host_count_ok(const struct request *rq)
{
    return rq->hosts == 1 || (rq->hosts == 0 && rq->minor == 0);
}

enum head_result { HEAD_PARTIAL, HEAD_DONE, HEAD_BAD, HEAD_TOO_LARGE };

/* Parses the request head (request line, headers, empty line) at the start
   of p[0..len), a line at a time, each line checked as soon as it is
   complete: a broken request line is refused without waiting for the rest.
   HEAD_DONE sets *used to the head's length. An incomplete head is parsed
   again from its start when more bytes arrived; only a split request pays
   that. */
static enum head_result parse_head(const char *p, size_t len, struct request *rq, size_t *used)
{
    size_t limit = len < MAX_HEADER ? len : MAX_HEADER, line = 0;

    memset(rq, 0, sizeof *rq);
    rq->content_length = -1;
    for (;;) {
        const char *lf = memchr(p + line, '\n', limit - line);
        size_t end; /* of the line, without its CR LF */

        if (!lf) return len >= MAX_HEADER ? HEAD_TOO_LARGE : HEAD_PARTIAL;
        if (lf == p + line || lf[-1] != '\r') return HEAD_BAD; /* a bare LF */
        end = (size_t)(lf - p) - 1;
        if (line == 0) {
            if (parse_request_line(p, end, rq) < 0) return HEAD_BAD;
        } else if (end == line) { /* the empty line */
            *used = end + 2;
            return HEAD_DONE;
        } else if (parse_header(p + line, end - line, rq) < 0) {
            return HEAD_BAD;
        }
        line = end + 2;
    }
}

/* Handles the request at the start of p[0..len), if it is complete. Returns
   1 when one was answered, 0 when more input is needed, -1 to drop the
   connection. *used gets the bytes to drain. */
static int handle_one(struct connection *c, const char *p, size_t len, size_t *used)
{
    size_t skip = 0, head_len = 0;
    struct request rq;

    /* Empty lines before a request are allowed (RFC 7230, 3.5). */
    while (len - skip >= 2 && p[skip] == '\r' && p[skip + 1] == '\n') skip += 2;
    *used = skip;
    if (skip == len) return 0;
    switch (parse_head(p + skip, len - skip, &rq, &head_len)) {
    case HEAD_PARTIAL:
        return 0;
    case HEAD_BAD:
        return respond_error(c, "400 Bad Request") < 0 ? -1 : 1;
    case HEAD_TOO_LARGE:
        return respond_error(c, "431 Request Header Fields Too Large") < 0 ? -1 : 1;
    case HEAD_DONE:
        break;
    }
    *used = skip + head_len;
    if (!host_count_ok(&rq)) return respond_error(c, "400 Bad Request") < 0 ? -1 : 1;
    if (rq.chunked) return respond_error(c, "501 Not Implemented") < 0 ? -1 : 1;
    if (rq.content_length > MAX_BODY) return respond_error(c, "413 Content Too Large") < 0 ? -1 : 1;
    if (rq.content_length > 0) c->body_left = (size_t)rq.content_length; /* skipped by the caller */
    if (!rq.get)
        return respond(c, "405 Method Not Allowed", &rq, "405 Method Not Allowed\n") < 0 ? -1 : 1;
    return respond_hello(c, &rq) < 0 ? -1 : 1;
}

/* Answers every complete request in the input, in order, until the output
   is full. The input is looked at in place (one contiguous block) and
   drained once at the end. Returns -1 if the connection was freed. */
static int process_input(struct connection *c)
{
    evloop_stream *stream = c->stream;
    evloop_buffer *input = evloop_stream_get_input(stream);
    evloop_buffer *output = evloop_stream_get_output(stream);
    size_t len = evloop_buffer_get_length(input), done = 0;
    const char *p = len ? (const char *)evloop_buffer_pullup(input, -1) : NULL;

    if (len && !p) {
        perror("http_hello: pullup");
        connection_free(c);
        return -1;
    }
    while (c->state == CONN_OPEN && done < len) {
        size_t used;
        int rc;

        if (c->body_left) { /* the previous request's body: read and ignore */
            size_t n = len - done < c->body_left ? len - done : c->body_left;

            done += n;
            c->body_left -= n;
            if (c->body_left) break;
        }
        if (evloop_buffer_get_length(output) >= OUTPUT_LIMIT) {
            /* Pipelining faster than it reads: let the answers drain first. */
            c->paused = 1;
            evloop_stream_disable(stream, EVLOOP_READ);
            break;
        }
        rc = handle_one(c, p + done, len - done, &used);
        if (rc < 0) {
            perror("http_hello: answer");
            connection_free(c);
            return -1;
        }
        done += used;
        if (rc == 0) break;
    }
    evloop_buffer_drain(input, done);
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

/* The linger lasted the worker's linger_total: the client is still sending
   (each byte restarted the read timeout), so stop waiting for it. */
static void on_linger_expired(evloop_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    connection_free(arg);
}

/* Shut down our sending side and drain the client's data for a while: a
   close() with unread input would send a reset that can destroy the answer
   before the client read it. Two limits end the wait: the read timeout
   (LINGER_SECONDS with nothing received: the client has stopped) and the
   linger timer (linger_total in all). The read timeout alone would let a
   client that sends a byte now and then keep the connection forever; the
   timer alone would keep a client that already went quiet waiting for it. */
static void start_lingering(struct connection *c)
{
    struct worker *w = c->worker;
    struct timeval linger = {LINGER_SECONDS, 0};

    c->state = CONN_LINGERING;
    if (c->got_eof) { /* nothing more will come: close now */
        connection_free(c);
        return;
    }
    if (shutdown(evloop_stream_get_fd(c->stream), SHUT_WR) < 0 ||
        evloop_stream_set_timeouts(c->stream, &linger, NULL) < 0 ||
        evloop_stream_enable(c->stream, EVLOOP_READ) < 0 ||
        evloop_timer_assign(&c->linger_timer, w->loop, on_linger_expired, c) < 0 ||
        evloop_timer_add(&c->linger_timer, &w->linger_total) < 0)
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

/* A new connection, accepted by this worker's listener in its own thread. */
static void on_accept(evloop_listener *listener, evloop_socket_t fd, struct sockaddr *addr,
                      int socklen, void *arg)
{
    struct worker *w = arg;
    struct connection *c = calloc(1, sizeof *c);
    struct timeval idle = {IDLE_SECONDS, 0};

    (void)listener, (void)addr, (void)socklen;
    if (c) c->stream = evloop_stream_new(w->loop, fd, EVLOOP_STREAM_CLOSE_ON_FREE);
    if (!c || !c->stream) {
        perror("http_hello: new connection");
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
    /* Read timeout: an idle keep-alive connection goes away; write timeout:
       so does a client that stops reading its answers. */
    if (evloop_stream_set_timeouts(c->stream, &idle, &idle) < 0 ||
        evloop_stream_enable(c->stream, EVLOOP_READ | EVLOOP_WRITE) < 0) {
        perror("http_hello: enable");
        connection_free(c);
    }
}

/*== WORKERS ==*/

/* Makes the worker's loop and its listener (reuseport: one of several on
   the same port). Runs in the main thread, before any worker thread. */
static int worker_setup(struct worker *w, int port, int reuseport, int linger_total)
{
    struct sockaddr_in sin;
    unsigned flags = EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_REUSEABLE;

    w->linger_total.tv_sec = linger_total;
    w->linger_total.tv_usec = 0;
    w->loop = evloop_new();
    if (!w->loop) return -1;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (reuseport) flags |= EVLOOP_LISTENER_REUSEABLE_PORT;
    w->listener = evloop_listener_new_bind(w->loop, on_accept, w, flags, 1024,
                                           (struct sockaddr *)&sin, sizeof sin);
    return w->listener ? 0 : -1;
}

/* Frees the worker's connections and listener: in its own thread, once its
   loop stopped. */
static void worker_close(struct worker *w)
{
    while (w->connections) connection_free(w->connections);
    evloop_listener_free(w->listener);
    w->listener = NULL;
}

/* Posted by the main thread at shutdown; runs in the worker's thread. */
static void on_stop(void *arg)
{
    struct worker *w = arg;

    evloop_exit(w->loop, NULL);
}

/* Workers 1 and up: run the loop until on_stop. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;

    if (evloop_run(w->loop, EVLOOP_NO_EXIT_ON_EMPTY) < 0) perror("http_hello: worker loop");
    worker_close(w);
    return NULL;
}

/*== SERVER (main thread) ==*/

static void on_signal(evloop_socket_t signum, short what, void *arg)
{
    struct server *s = arg;

    (void)what;
    printf("got %s, shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    evloop_exit(s->workers[0].loop, NULL);
}

/* Creates every loop and listener before any thread runs, so no loop is
   touched by two threads at once, and a port in use is reported at once. */
static int server_setup(struct server *s, int port)
{
    evloop *main_loop;
    int i;

    for (i = 0; i < s->nworkers; i++) {
        if (worker_setup(&s->workers[i], port, s->nworkers > 1, s->linger_total) < 0) {
            fprintf(stderr, "http_hello: cannot listen on 127.0.0.1:%d: %s\n", port,
                    strerror(errno));
            return -1;
        }
    }
    main_loop = s->workers[0].loop;
    s->sigint_event = evloop_signal_new(main_loop, SIGINT, on_signal, s);
    s->sigterm_event = evloop_signal_new(main_loop, SIGTERM, on_signal, s);
    if (!s->sigint_event || !s->sigterm_event || evloop_signal_add(s->sigint_event, NULL) ||
        evloop_signal_add(s->sigterm_event, NULL)) {
        perror("http_hello: signal events");
        return -1;
    }
    return 0;
}

/* Starts workers 1 and up with SIGINT/SIGTERM blocked, so the signals reach
   the main thread, whose loop handles them. */
static int start_workers(struct server *s)
{
    sigset_t block, old;
    int i, rc = 0;

    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (i = 1; i < s->nworkers && rc == 0; i++) {
        rc = pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
        if (rc == 0)
            s->workers[i].started = 1;
        else
            fprintf(stderr, "http_hello: pthread_create: %s\n", strerror(rc));
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc ? -1 : 0;
}

/* Stops and joins the other workers, then frees everything, loops last:
   whatever server_setup and start_workers managed to create. */
static void server_stop(struct server *s)
{
    int i;

    for (i = 1; i < s->nworkers; i++) {
        struct worker *w = &s->workers[i];

        if (!w->started) continue;
        if (evloop_post(w->loop, on_stop, w) < 0) evloop_exit(w->loop, NULL);
        pthread_join(w->thread, NULL);
    }
    for (i = 0; i < s->nworkers; i++) worker_close(&s->workers[i]); /* the unstarted ones */
    evloop_event_free(s->sigint_event);
    evloop_event_free(s->sigterm_event);
    for (i = 0; i < s->nworkers; i++) evloop_free(s->workers[i].loop);
}

static int parse_int(const char *arg, int lo, int hi)
{
    char *end;
    long v = strtol(arg, &end, 10);

    if (end == arg || *end != '\0' || v < lo || v > hi) return -1;
    return (int)v;
}

static int parse_args(int argc, char **argv, int *port, struct server *s)
{
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
            if ((s->nworkers = parse_int(argv[++i], 1, MAX_THREADS)) < 0) return -1;
        } else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc) {
            if ((s->linger_total = parse_int(argv[++i], 1, MAX_LINGER_SECONDS)) < 0) return -1;
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
    int port = DEFAULT_PORT, status = 0;

    server.nworkers = 1;
    server.linger_total = LINGER_TOTAL_SECONDS;
    if (parse_args(argc, argv, &port, &server) < 0) {
        fprintf(stderr,
                "usage: %s [-t THREADS] [-l LINGER_TOTAL_SECONDS] [PORT]\n"
                "       (defaults: 1 thread, %d s, port %d)\n",
                argv[0], LINGER_TOTAL_SECONDS, DEFAULT_PORT);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* the ready line must reach a pipe at once */
    if (server_setup(&server, port) < 0 || start_workers(&server) < 0) {
        server_stop(&server);
        return 1;
    }
    if (server.nworkers == 1)
        printf("listening on 127.0.0.1:%d\n", port);
    else
        printf("listening on 127.0.0.1:%d (%d threads)\n", port, server.nworkers);
    /* The main thread is worker 0: it serves connections too. */
    if (evloop_dispatch(server.workers[0].loop) < 0) {
        perror("http_hello: evloop_dispatch");
        status = 1;
    }
    server_stop(&server);
    return status;
}
