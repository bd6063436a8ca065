/* test_stream_examples.c - runs the networking examples (the ones written on
   evloop streams) and checks what they do.

   Usage: test_stream_examples BINDIR [EXAMPLE...]

   Same approach as test_examples.c: start each binary from BINDIR with its
   stdout on a pipe, wait for its ready line, talk to it over 127.0.0.1,
   compare byte for byte, stop it with SIGTERM (it must exit 0 by itself) and
   reap it. tcp_client is run against fake servers made here. Needs nothing
   but a C compiler: no python, nc or curl. Naming examples after BINDIR runs
   only those (for example just threaded_server under TSan).

   Checks: rot13_stream with 50 clients, a 100 KiB line and 20 random texts
   (any bytes, sent in random pieces, then EOF); echo_stream with
   1,000 concurrent clients of 64 KiB each and a client that sends 100 MB
   without reading (the server's VmRSS must stay under 64 MB, or
   STREAM_EXAMPLES_RSS_MB; sanitizer builds need more); chat_server broadcast,
   a stalled client disconnected while the others keep receiving, four
   clients talking at once in random pieces; http_hello
   pipelining, keep-alive, 400, 431, HTTP/1.0, the Host header rules, 60
   random request streams (bodies, HEAD, POST, blank lines, a closing or
   malformed last request) sent in random pieces, the cap on lingering after
   an error answer (with -l 1), and with -t 2 (two threads,
   SO_REUSEPORT) 40 concurrent pipelining keep-alive connections and the same
   checks; tcp_client reply, refused,
   timed out, reset; threaded_server in both modes with 100 clients.

   Each check prints "ok   NAME" or "FAIL NAME: REASON"; the last line is
   "stream-examples: N passed, N failed" and the exit status is 1 on any
   failure. Every path stops its child; a watchdog (and SIGINT/SIGTERM to
   this program) kills whatever is left.

   Set EXAMPLES_WRAPPER to run every example under a tool (see test_examples.c). */

#define DRIVER_NAME "test_stream_examples"
#include "driver.h"

#include <netinet/tcp.h>

/*== STARTING SERVERS ==*/

/* Starts BINDIR/name with args (NULL-terminated, at most 4) followed by the
   port, and waits for "listening on 127.0.0.1:PORT". Returns 0, -1 if it ran
   but never became ready, -2 if it could not be run at all. */
static int start_server(struct child *c, const char *name, int port, const char *const *pre)
{
    char port_arg[16], want[64];
    const char *args[8];
    int n = 0;

    snprintf(port_arg, sizeof port_arg, "%d", port);
    snprintf(want, sizeof want, "listening on 127.0.0.1:%d", port);
    while (pre && pre[n] && n < 4) {
        args[n] = pre[n];
        n++;
    }
    args[n++] = port_arg;
    args[n] = NULL;
    if (spawn(c, name, args) < 0) return -2;
    if (expect_line(c, want, 1, READY_TIMEOUT_MS) == 0) return 0;
    kill_child(c);
    return -1;
}

/* Starts a server on *port (0: any free port), retrying on other free ports
   if that one was taken meanwhile. Returns 0, or -1 with reason set. */
static int start_server_on_some_port(struct child *c, const char *name, int *port,
                                     const char *const *pre)
{
    int attempt, rc = -1;

    for (attempt = 0; attempt < 4 && rc < 0; attempt++) {
        int want = *port;

        if (attempt > 0 || want == 0 || !port_is_free(want)) *port = free_port();
        if (want && *port != want) note("port %d is busy; starting %s on %d", want, name, *port);
        if (*port <= 0) return why("no free port");
        rc = start_server(c, name, *port, pre);
        if (rc == -2) return -1;
    }
    return rc;
}

/* Starts name; reports "NAME starts and prints its ready line". Returns 0 when running. */
static int start_reported(struct child *c, const char *name, int *port, const char *const *pre)
{
    char title[128], args[64] = "";
    int i, rc = start_server_on_some_port(c, name, port, pre);

    for (i = 0; pre && pre[i] && i < 4; i++)
        snprintf(args + strlen(args), sizeof args - strlen(args), " %s", pre[i]);
    snprintf(title, sizeof title, "%s%s starts and prints its ready line", name, args);
    report(title, rc);
    return rc;
}

static void stop_reported(struct child *c, const char *name)
{
    char title[128];

    snprintf(title, sizeof title, "%s exits 0 on SIGTERM", name);
    finish_child(c, SIGTERM, title, "got SIGTERM, shutting down");
}

/*== ROT13 STREAM ==*/

static void test_rot13(void)
{
    struct child c;
    int port = 40713;

    if (start_reported(&c, "rot13_stream", &port, NULL) < 0) return;
    report("rot13_stream holds a line until its newline", check_partial_line(port));
    report("rot13_stream 50 concurrent clients, 8 lines each", check_concurrent_clients(port));
    report("rot13_stream 100 KiB line (past its 16 KiB limit) intact", check_long_line(port));
    report("rot13_stream 20 random texts in random pieces, then EOF: every byte back",
           check_rot13_random(port, 20));
    stop_reported(&c, "rot13_stream");
}

/*== ECHO STREAM ==*/

#define ECHO_CLIENTS      1000
#define ECHO_CLIENT_BYTES (64 * 1024)
#define FLOOD_BYTES       ((size_t)100 << 20)
#define FLOOD_CHUNK       65536
#define DEFAULT_RSS_MB    64
#define GROWTH_MB         32

/* n clients at once, each sending its own bytes slice of a random pattern
   (every byte value), half-closing, and checking its echo byte for byte. */
static int check_echo_clients(int port, size_t n, size_t bytes, int timeout_ms)
{
    struct transfer *t = calloc(n, sizeof *t);
    char *pattern = malloc(bytes + 8192);
    unsigned state = 2463534242u;
    size_t i;
    int rc = 0;

    if (!t || !pattern) {
        free(t);
        free(pattern);
        return why("out of memory");
    }
    for (i = 0; i < bytes + 8192; i++) {
        state ^= state << 13, state ^= state >> 17, state ^= state << 5;
        pattern[i] = (char)state;
    }
    for (i = 0; i < n; i++) t[i].fd = -1;
    for (i = 0; rc == 0 && i < n; i++) {
        t[i].out = pattern + (i * 37) % 8192; /* a different slice for each client */
        t[i].out_len = bytes;
        t[i].in_max = 2 * bytes > 131072 ? 2 * bytes : 131072; /* first read buffer: 64 KiB */
        t[i].fd = connect_local(port, 0);
        if (t[i].fd < 0) rc = why("client %zu: %s", i, reason);
    }
    if (rc == 0) rc = run_transfers(t, n, timeout_ms, 0);
    for (i = 0; rc == 0 && i < n; i++) {
        char who[32];

        snprintf(who, sizeof who, "client %zu", i);
        rc = compare_bytes(who, t[i].in, t[i].in_len, t[i].out, t[i].out_len);
    }
    free_transfers(t, n, 0);
    free(t);
    free(pattern);
    return rc;
}

/* Resident set size of pid in KiB, from /proc/PID/status; -1 if unknown. */
static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static unsigned char flood_byte(size_t i)
{
    return (unsigned char)((i * 131u) ^ (i >> 9) ^ (i >> 17));
}

struct flood {
    int fd;
    size_t sent, got;
    int shut, eof;
    char out[FLOOD_CHUNK], in[FLOOD_CHUNK];
};

/* Sends the next piece of the flood; returns 1 on progress, 0 on EAGAIN, -1 on error. */
static int flood_send(struct flood *f)
{
    size_t i, n = FLOOD_BYTES - f->sent < FLOOD_CHUNK ? FLOOD_BYTES - f->sent : FLOOD_CHUNK;
    ssize_t w;

    for (i = 0; i < n; i++) f->out[i] = (char)flood_byte(f->sent + i);
    w = send(f->fd, f->out, n, 0);
    if (w > 0) {
        f->sent += (size_t)w;
        return 1;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    return why("send after %zu bytes: %s", f->sent, strerror(errno));
}

/* Receives and verifies; returns 1 on progress, 0 on EAGAIN, -1 on error. */
static int flood_recv(struct flood *f)
{
    ssize_t r = recv(f->fd, f->in, sizeof f->in, 0), i;

    if (r == 0) {
        f->eof = 1;
        return 1;
    }
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                   ? 0
                   : why("recv after %zu bytes: %s", f->got, strerror(errno));
    for (i = 0; i < r; i++)
        if ((unsigned char)f->in[i] != flood_byte(f->got + (size_t)i))
            return why("echo byte %zu differs", f->got + (size_t)i);
    f->got += (size_t)r;
    if (f->got > FLOOD_BYTES) return why("more echoed than sent");
    return 1;
}

/* Phase 1: write without reading until the server stops taking data (no
   progress for 500 ms) or 100 MB went; the server's RSS must stay bounded.
   Phase 2: read everything back (verified) while sending the rest. */
static int check_echo_flood(pid_t pid, int port)
{
    struct flood *f = calloc(1, sizeof *f);
    const char *env = getenv("STREAM_EXAMPLES_RSS_MB");
    long limit_kb = (env ? atol(env) : DEFAULT_RSS_MB) * 1024L, before = rss_kb(pid), peak = 0;
    double idle_since = now_ms(), deadline = now_ms() + 25000;
    int rc = 0;

    if (!f) return why("out of memory");
    f->fd = connect_local(port, 0);
    if (f->fd < 0) {
        free(f);
        return -1;
    }
    while (rc == 0 && f->sent < FLOOD_BYTES && now_ms() - idle_since < 500) {
        struct pollfd pfd = {f->fd, POLLOUT, 0};
        int r;

        poll(&pfd, 1, 100);
        r = flood_send(f);
        if (r > 0) idle_since = now_ms();
        if (r < 0) rc = -1;
    }
    if (rc == 0) {
        peak = rss_kb(pid);
        note("echo_stream: client sent %zu MB without reading before the server stopped taking "
             "data (or all of it); server RSS %ld kB (%ld kB at start)",
             f->sent >> 20, peak, before);
        if (peak < 0) rc = why("cannot read VmRSS of %ld", (long)pid);
        if (peak > limit_kb) rc = why("server RSS %ld kB > %ld kB", peak, limit_kb);
    }
    while (rc == 0 && !f->eof && now_ms() < deadline) {
        struct pollfd pfd = {f->fd, POLLIN, 0};
        long kb;

        if (f->sent < FLOOD_BYTES) pfd.events |= POLLOUT;
        if (f->sent == FLOOD_BYTES && !f->shut) {
            shutdown(f->fd, SHUT_WR);
            f->shut = 1;
        }
        poll(&pfd, 1, 200);
        if ((pfd.revents & POLLOUT) && flood_send(f) < 0) rc = -1;
        if (rc == 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) && flood_recv(f) < 0) rc = -1;
        kb = (f->got & ((8u << 20) - 1)) < FLOOD_CHUNK ? rss_kb(pid) : 0;
        if (kb > peak) peak = kb;
    }
    if (rc == 0 && peak > limit_kb) rc = why("server RSS reached %ld kB > %ld kB", peak, limit_kb);
    /* Also relative, so a sanitizer's larger baseline does not hide growth. */
    if (rc == 0 && before > 0 && peak - before > GROWTH_MB * 1024L)
        rc = why("server RSS grew by %ld kB (> %d MB) during the flood", peak - before, GROWTH_MB);
    if (rc == 0 && !f->eof) rc = why("no EOF within 25 s (sent %zu, got %zu)", f->sent, f->got);
    if (rc == 0 && f->got != FLOOD_BYTES) rc = why("got %zu of %zu bytes", f->got, FLOOD_BYTES);
    close(f->fd);
    free(f);
    return rc;
}

static void test_echo(void)
{
    struct child c;
    int port = 0;

    if (start_reported(&c, "echo_stream", &port, NULL) < 0) return;
    report("echo_stream 1,000 concurrent clients x 64 KiB, every byte verified",
           check_echo_clients(port, ECHO_CLIENTS, ECHO_CLIENT_BYTES, 20000));
    report("echo_stream 100 MB from a client that does not read: RSS bounded, echo intact",
           check_echo_flood(c.pid, port));
    stop_reported(&c, "echo_stream");
}

/*== CHAT SERVER ==*/

#define CHAT_LINE   1000
#define CHAT_LINES  16384 /* 16 MB from one client, so a stalled one passes 1 MiB */
#define CHAT_SLOW   3     /* index of the client that never reads */
#define CHAT_CLIENT 4

/* Every one of the first n fds must receive exactly want. */
static int chat_expect(const int *fds, int n, const char *want)
{
    char got[256];
    size_t len = strlen(want), gotn;
    int i;

    for (i = 0; i < n; i++) {
        if (recv_some(fds[i], got, len, &gotn, 3000) < 0) return why("client %d: %s", i, reason);
        if (compare_bytes("chat", got, gotn, want, len) < 0) return -1;
    }
    return 0;
}

static char *chat_flood_text(size_t *len)
{
    char *text = malloc((size_t)CHAT_LINES * CHAT_LINE);
    size_t k;

    if (!text) return NULL;
    for (k = 0; k < CHAT_LINES; k++) {
        char *line = text + k * CHAT_LINE;
        int n = sprintf(line, "line %06zu ", k);

        memset(line + n, 'a' + (int)(k % 26), CHAT_LINE - 1 - (size_t)n);
        line[CHAT_LINE - 1] = '\n';
    }
    *len = (size_t)CHAT_LINES * CHAT_LINE;
    return text;
}

/* Client 0 sends the flood; clients 0..2 read it all; client 3 never reads. */
static int chat_flood(const int *fds, const char *text, size_t len)
{
    size_t sent = 0, got[3] = {0, 0, 0};
    double deadline = now_ms() + 20000;
    char buf[65536];
    int i;

    while (got[0] < len || got[1] < len || got[2] < len) {
        struct pollfd pfd[3];

        if (now_ms() > deadline)
            return why("after 20 s: sent %zu, received %zu/%zu/%zu of %zu", sent, got[0], got[1],
                       got[2], len);
        for (i = 0; i < 3; i++) {
            pfd[i].fd = fds[i];
            pfd[i].events = POLLIN;
        }
        if (sent < len) pfd[0].events |= POLLOUT;
        poll(pfd, 3, 200);
        if ((pfd[0].revents & POLLOUT) && sent < len) {
            ssize_t n = send(fds[0], text + sent, len - sent < 65536 ? len - sent : 65536, 0);

            if (n > 0) sent += (size_t)n;
        }
        for (i = 0; i < 3; i++) {
            ssize_t n;

            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            n = recv(fds[i], buf, sizeof buf, 0);
            if (n == 0) return why("client %d disconnected after %zu bytes", i, got[i]);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return why("client %d: %s", i, strerror(errno));
            if (n < 0) continue;
            if (got[i] + (size_t)n > len || memcmp(buf, text + got[i], (size_t)n) != 0)
                return why("client %d: wrong data at byte %zu", i, got[i]);
            got[i] += (size_t)n;
        }
    }
    return 0;
}

/* The stalled client must be cut off: EOF (or reset) once its backlog is read. */
static int chat_expect_dropped(int fd, size_t flood_len)
{
    double deadline = now_ms() + 5000;
    size_t total = 0;
    char buf[65536];

    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t n;

        if (now_ms() > deadline) return why("still connected 5 s later (%zu bytes read)", total);
        if (poll(&pfd, 1, 200) <= 0) continue;
        n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) break;
        if (n > 0) total += (size_t)n;
    }
    if (total >= flood_len) return why("it received everything (%zu bytes): never dropped", total);
    return 0;
}

#define CHAT_RAND_CLIENTS 4
#define CHAT_RAND_LINES   25
#define CHAT_RAND_MAX     (CHAT_RAND_LINES * 320)

/* Receiver got: every line is whole and is the next line of its sender
   (named by the line's first byte); at the end every sender's lines came. */
static int chat_check_received(int who, const char *got, size_t len, char *const *out,
                               const size_t *out_len)
{
    size_t next[CHAT_RAND_CLIENTS] = {0}, at = 0;
    int i;

    while (at < len) {
        const char *nl = memchr(got + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (got + at)) + 1 : len - at;

        i = got[at] - '0';
        if (!nl || i < 0 || i >= CHAT_RAND_CLIENTS)
            return why("client %d: a line that no client sent at byte %zu", who, at);
        if (next[i] + n > out_len[i] || memcmp(got + at, out[i] + next[i], n) != 0)
            return why("client %d: the line at byte %zu is not client %d's next line", who, at, i);
        next[i] += n;
        at += n;
    }
    for (i = 0; i < CHAT_RAND_CLIENTS; i++)
        if (next[i] != out_len[i])
            return why("client %d got %zu of client %d's %zu bytes", who, next[i], i, out_len[i]);
    return 0;
}

/* Four clients talk at once, lines of random bytes sent in random pieces:
   every client receives every line (its own included) whole, each sender's
   lines in the order sent. */
static int check_chat_random(int port, int nseeds)
{
    char *out[CHAT_RAND_CLIENTS], *in[CHAT_RAND_CLIENTS];
    int fds[CHAT_RAND_CLIENTS], i, seed_no, rc = 0;

    for (i = 0; i < CHAT_RAND_CLIENTS; i++) {
        out[i] = malloc(CHAT_RAND_MAX);
        in[i] = malloc(CHAT_RAND_CLIENTS * CHAT_RAND_MAX);
        if (!out[i] || !in[i]) rc = why("out of memory");
    }
    for (seed_no = 1; rc == 0 && seed_no <= nseeds; seed_no++) {
        unsigned seed = (unsigned)seed_no * 2654435761u;
        size_t out_len[CHAT_RAND_CLIENTS], sent[CHAT_RAND_CLIENTS], in_len[CHAT_RAND_CLIENTS];
        size_t total = 0;
        double deadline = now_ms() + 10000, last_progress = now_ms();
        int k, busy;

        for (i = 0; i < CHAT_RAND_CLIENTS; i++) fds[i] = -1;
        /* One at a time, each joins and sees its own join line: then it is
           on the server's list before anyone says more. */
        for (i = 0; rc == 0 && i < CHAT_RAND_CLIENTS; i++) {
            char join[16];

            snprintf(join, sizeof join, "join %d\n", i);
            fds[i] = connect_local(port, 0);
            rc = fds[i] < 0 ? -1 : send_all(fds[i], join, strlen(join));
            if (rc == 0) rc = chat_expect(fds, i + 1, join);
        }
        for (i = 0; i < CHAT_RAND_CLIENTS; i++) {
            out_len[i] = sent[i] = in_len[i] = 0;
            for (k = 0; k < CHAT_RAND_LINES; k++) {
                size_t j, n = (size_t)sprintf(out[i] + out_len[i], "%d %02d ", i, k);

                for (j = driver_rand(&seed, 300); j > 0; j--, n++) {
                    out[i][out_len[i] + n] = (char)driver_rand(&seed, 256);
                    if (out[i][out_len[i] + n] == '\n') out[i][out_len[i] + n] = '\r';
                }
                out[i][out_len[i] + n++] = '\n';
                out_len[i] += n;
            }
            total += out_len[i];
        }
        for (busy = 1; rc == 0 && busy;) {
            struct pollfd pfd[CHAT_RAND_CLIENTS];
            int all_sent = 1;

            if (now_ms() > deadline) {
                rc = why("seed %d: not everything arrived within 10 s", seed_no);
                break;
            }
            if (now_ms() - last_progress > 1000) break; /* silent for 1 s: check what came */
            i = (int)driver_rand(&seed, CHAT_RAND_CLIENTS);
            if (sent[i] < out_len[i]) {
                size_t piece = 1 + driver_rand(&seed, 200);
                ssize_t n;

                if (piece > out_len[i] - sent[i]) piece = out_len[i] - sent[i];
                n = send(fds[i], out[i] + sent[i], piece, 0);
                if (n > 0) sent[i] += (size_t)n, last_progress = now_ms();
                if (driver_rand(&seed, 16) == 0) sleep_ms(1);
            }
            for (i = 0; i < CHAT_RAND_CLIENTS; i++) {
                pfd[i].fd = fds[i], pfd[i].events = POLLIN;
                if (sent[i] < out_len[i]) all_sent = 0;
            }
            poll(pfd, CHAT_RAND_CLIENTS, all_sent ? 10 : 0); /* only reading left: wait for it */
            for (busy = 0, i = 0; i < CHAT_RAND_CLIENTS; i++) {
                ssize_t n = 0;

                if (pfd[i].revents)
                    n = recv(fds[i], in[i] + in_len[i],
                             CHAT_RAND_CLIENTS * CHAT_RAND_MAX - in_len[i], 0);
                if (n > 0) in_len[i] += (size_t)n, last_progress = now_ms();
                if (n == 0 && pfd[i].revents)
                    rc = why("seed %d: client %d disconnected", seed_no, i);
                if (sent[i] < out_len[i] || in_len[i] < total) busy = 1;
            }
        }
        for (i = 0; rc == 0 && i < CHAT_RAND_CLIENTS; i++)
            if (chat_check_received(i, in[i], in_len[i], out, out_len) < 0)
                rc = why("seed %d: %s", seed_no, reason);
        for (i = 0; i < CHAT_RAND_CLIENTS; i++)
            if (fds[i] >= 0) close(fds[i]);
    }
    for (i = 0; i < CHAT_RAND_CLIENTS; i++) {
        free(out[i]);
        free(in[i]);
    }
    return rc;
}

static void test_chat(void)
{
    struct child c;
    int fds[CHAT_CLIENT], i, port = 0, rc = 0;
    char want[128];
    size_t len = 0;
    char *text = chat_flood_text(&len);

    for (i = 0; i < CHAT_CLIENT; i++) fds[i] = -1;
    if (!text || start_reported(&c, "chat_server", &port, NULL) < 0) {
        free(text);
        return;
    }
    for (i = 0; rc == 0 && i < CHAT_CLIENT; i++) {
        /* The stalled client gets a tiny receive buffer, so the server's
           output for it fills quickly. */
        fds[i] = connect_local(port, i == CHAT_SLOW ? 4096 : 0);
        if (fds[i] < 0) rc = -1;
    }
    sleep_ms(200); /* let the server accept all four before anyone talks */
    if (rc == 0) rc = send_all(fds[1], "hello from client 1\n", 20);
    if (rc == 0) rc = chat_expect(fds, CHAT_CLIENT, "hello from client 1\n");
    report("chat_server broadcasts a line to every client, the sender included", rc);
    if (rc == 0) {
        rc = chat_flood(fds, text, len);
        report("chat_server 16 MB of lines reach three readers intact while one client stalls", rc);
        snprintf(want, sizeof want, "client %d: more than %d bytes pending, disconnecting",
                 CHAT_SLOW + 1, 1 << 20);
        if (rc == 0) rc = skip_to_line(&c, want, 3000);
        if (rc == 0) rc = chat_expect_dropped(fds[CHAT_SLOW], len);
        report("chat_server disconnects the stalled client past 1 MiB pending", rc);
        if (rc == 0) rc = send_all(fds[2], "still here\n", 11);
        if (rc == 0) rc = chat_expect(fds, 3, "still here\n");
        report("chat_server the others keep talking afterwards", rc);
    }
    for (i = 0; i < CHAT_CLIENT; i++)
        if (fds[i] >= 0) close(fds[i]);
    free(text);
    if (rc == 0)
        report("chat_server 10 rounds of 4 clients talking at once in random pieces: every line "
               "whole, to everyone, in each sender's order",
               check_chat_random(port, 10));
    stop_reported(&c, "chat_server");
}

/*== HTTP HELLO ==*/

#define HTTP_BODY "Hello, World!"

struct http_conn {
    int fd;
    size_t len;
    char buf[1 << 16];
};

struct http_response {
    int status;
    int close;      /* "Connection: close" */
    int keep_alive; /* "Connection: keep-alive" */
    long content_length;
    size_t body_len;
    char body[256];
    char date[64];
    char type[64];
};

static char *find_bytes(char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle), i;

    for (i = 0; i + n <= len; i++)
        if (memcmp(hay + i, needle, n) == 0) return hay + i;
    return NULL;
}

/* Reads until n bytes are buffered (or EOF/timeout). Returns 0, or -1 with reason. */
static int http_fill(struct http_conn *h, size_t n)
{
    double deadline = now_ms() + 3000;

    while (h->len < n) {
        struct pollfd pfd = {h->fd, POLLIN, 0};
        int left = (int)(deadline - now_ms());
        ssize_t r;

        if (left <= 0 || poll(&pfd, 1, left) == 0) return why("timed out waiting for an answer");
        r = recv(h->fd, h->buf + h->len, sizeof h->buf - h->len, 0);
        if (r == 0) return why("EOF while waiting for an answer");
        if (r < 0 && errno != EAGAIN && errno != EINTR) return why("recv: %s", strerror(errno));
        if (r > 0) h->len += (size_t)r;
    }
    return 0;
}

static void header_value(const char *head, const char *name, char *out, size_t size)
{
    const char *p = strstr(head, name);
    size_t n;

    out[0] = '\0';
    if (!p) return;
    p += strlen(name);
    n = strcspn(p, "\r");
    if (n >= size) n = size - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Reads one response (no body when head). Returns 0, or -1 with reason. */
static int http_read(struct http_conn *h, int head, struct http_response *rs)
{
    char *end;
    char hdr[4096], cl[32], conn[64];
    size_t hlen, need;

    memset(rs, 0, sizeof *rs);
    for (;;) {
        end = find_bytes(h->buf, h->len, "\r\n\r\n");
        if (end) break;
        if (http_fill(h, h->len + 1) < 0) return -1;
    }
    hlen = (size_t)(end - h->buf) + 4;
    if (hlen >= sizeof hdr) return why("response head of %zu bytes", hlen);
    memcpy(hdr, h->buf, hlen - 2);
    hdr[hlen - 2] = '\0';
    if (sscanf(hdr, "HTTP/1.1 %d ", &rs->status) != 1) return why("bad status line in %.40s", hdr);
    header_value(hdr, "\r\nContent-Length: ", cl, sizeof cl);
    header_value(hdr, "\r\nDate: ", rs->date, sizeof rs->date);
    header_value(hdr, "\r\nContent-Type: ", rs->type, sizeof rs->type);
    header_value(hdr, "\r\nConnection: ", conn, sizeof conn);
    rs->close = strcmp(conn, "close") == 0;
    rs->keep_alive = strcmp(conn, "keep-alive") == 0;
    if (!cl[0]) return why("no Content-Length in the answer");
    rs->content_length = atol(cl);
    if (rs->content_length < 0 || rs->content_length >= (long)sizeof rs->body)
        return why("Content-Length %ld", rs->content_length);
    rs->body_len = head ? 0 : (size_t)rs->content_length;
    need = hlen + rs->body_len;
    if (http_fill(h, need) < 0) return -1;
    memcpy(rs->body, h->buf + hlen, rs->body_len);
    rs->body[rs->body_len] = '\0';
    memmove(h->buf, h->buf + need, h->len - need);
    h->len -= need;
    return 0;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT", this year (RFC 7231 IMF-fixdate). */
static int date_ok(const char *d)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char day[4], mon[4];
    int dd, yyyy, hh, mm, ss, n = 0;
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    if (strlen(d) != 29 ||
        sscanf(d, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", day, &dd, mon, &yyyy, &hh,
               &mm, &ss, &n) != 7 ||
        n != 29)
        return 0;
    if (!strstr(days, day) || strlen(day) != 3 || (strstr(days, day) - days) % 3) return 0;
    if (!strstr(months, mon) || strlen(mon) != 3 || (strstr(months, mon) - months) % 3) return 0;
    return dd >= 1 && dd <= 31 && hh < 24 && mm < 60 && ss < 61 && d[4] == ' ' && d[7] == ' ' &&
           yyyy >= tm.tm_year + 1900 - 1 && yyyy <= tm.tm_year + 1900 + 1;
}

/* A 200 with the hello body (or none for HEAD) and the usual headers. */
static int http_expect_hello(struct http_conn *h, int head, struct http_response *rs)
{
    if (http_read(h, head, rs) < 0) return -1;
    if (rs->status != 200) return why("status %d, want 200", rs->status);
    if (rs->content_length != (long)strlen(HTTP_BODY))
        return why("Content-Length %ld, want %zu", rs->content_length, strlen(HTTP_BODY));
    if (!head && strcmp(rs->body, HTTP_BODY) != 0) return why("body \"%s\"", rs->body);
    if (strcmp(rs->type, "text/plain") != 0) return why("Content-Type \"%s\"", rs->type);
    if (!date_ok(rs->date)) return why("Date \"%s\" is not an RFC 7231 date", rs->date);
    return 0;
}

/* Nothing more arrives within ms, and the connection is still open. */
static int http_expect_quiet(struct http_conn *h, int ms)
{
    struct pollfd pfd = {h->fd, POLLIN, 0};

    if (h->len) return why("%zu unexpected bytes after the answers", h->len);
    if (poll(&pfd, 1, ms) > 0) return why("unexpected data or EOF");
    return 0;
}

static int http_expect_eof(struct http_conn *h)
{
    size_t got;
    char c;

    if (h->len) return why("%zu unexpected bytes after the answer", h->len);
    return recv_some(h->fd, &c, 0, &got, 3000) < 0 ? why("want EOF: %s", reason) : 0;
}

static int http_open(struct http_conn *h, int port)
{
    h->len = 0;
    h->fd = connect_local(port, 0);
    return h->fd < 0 ? -1 : 0;
}

static int check_http_pipelined(int port)
{
    static const char *const paths[] = {"/", "/a", "/b/c", "/?q=1", "/x",
                                        "/", "/y", "/z",   "/",     "/last"};
    char req[4096];
    size_t len = 0;
    struct http_response rs;
    struct http_conn *h = malloc(sizeof *h);
    int i, rc;

    if (!h) return why("out of memory");
    for (i = 0; i < 10; i++)
        len +=
            (size_t)sprintf(req + len, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: t\r\n\r\n",
                            i == 4 ? "HEAD" : "GET", paths[i]);
    rc = http_open(h, port);
    if (rc == 0) rc = send_all(h->fd, req, len); /* all ten in one write */
    for (i = 0; rc == 0 && i < 10; i++)
        if (http_expect_hello(h, i == 4, &rs) < 0) rc = why("answer %d: %s", i, reason);
    if (rc == 0) rc = http_expect_quiet(h, 100);
    /* Keep-alive: the same connection takes another request. */
    if (rc == 0) rc = send_all(h->fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    if (rc == 0) rc = http_expect_hello(h, 0, &rs);
    if (rc == 0 && rs.close) rc = why("HTTP/1.1 answer says Connection: close");
    /* And a request split across three writes. */
    if (rc == 0) rc = send_all(h->fd, "GET / HT", 8);
    if (rc == 0 && (sleep_ms(50), 1)) rc = send_all(h->fd, "TP/1.1\r\nHost: x\r", 16);
    if (rc == 0 && (sleep_ms(50), 1)) rc = send_all(h->fd, "\n\r\n", 3);
    if (rc == 0) rc = http_expect_hello(h, 0, &rs);
    /* Connection: close ends it after the answer. */
    if (rc == 0) rc = send_all(h->fd, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 46);
    if (rc == 0) rc = http_expect_hello(h, 0, &rs);
    if (rc == 0 && !rs.close) rc = why("no Connection: close in the last answer");
    if (rc == 0) rc = http_expect_eof(h);
    if (h->fd >= 0) close(h->fd);
    free(h);
    return rc;
}

static int check_http_status(int port, const char *req, size_t len, int want)
{
    struct http_response rs;
    struct http_conn *h = malloc(sizeof *h);
    int rc;

    if (!h) return why("out of memory");
    rc = http_open(h, port);
    if (rc == 0) rc = send_all(h->fd, req, len);
    if (rc == 0) rc = http_read(h, 0, &rs);
    if (rc == 0 && rs.status != want) rc = why("status %d, want %d", rs.status, want);
    if (rc == 0 && !rs.close) rc = why("no Connection: close with status %d", want);
    if (rc == 0) rc = http_expect_eof(h);
    if (h->fd >= 0) close(h->fd);
    free(h);
    return rc;
}

/* One request a case, each on a new connection: its answer's status. */
struct status_case {
    const char *req, *what;
    int status;
};

static int check_http_statuses(int port, const struct status_case *c, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (check_http_status(port, c[i].req, strlen(c[i].req), c[i].status) < 0)
            return why("%s: %s", c[i].what, reason);
    return 0;
}

static int check_http_400(int port)
{
    static const struct status_case cases[] = {
        {"GARBAGE\r\n\r\n", "\"GARBAGE\"", 400},
        {"GET / HTTP/1.1\r\nno colon here\r\n\r\n", "header without a colon", 400},
        {"GET / HTTP/9.9\r\n\r\n", "HTTP/9.9", 400},
    };
    return check_http_statuses(port, cases, sizeof cases / sizeof cases[0]);
}

static int check_http_431(int port)
{
    size_t size = 64 * 1024, len;
    char *req = malloc(size + 64);
    int rc;

    if (!req) return why("out of memory");
    len = (size_t)sprintf(req, "GET / HTTP/1.1\r\nX-Big: ");
    memset(req + len, 'a', size);
    len += size;
    memcpy(req + len, "\r\n\r\n", 4);
    rc = check_http_status(port, req, len + 4, 431);
    free(req);
    return rc;
}

static int check_http10(int port)
{
    static const char plain[] = "GET / HTTP/1.0\r\n\r\n";
    static const char keep[] = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    struct http_response rs;
    struct http_conn *h = malloc(sizeof *h);
    int rc;

    if (!h) return why("out of memory");
    rc = http_open(h, port);
    if (rc == 0) rc = send_all(h->fd, plain, sizeof plain - 1);
    if (rc == 0) rc = http_expect_hello(h, 0, &rs);
    if (rc == 0 && !rs.close) rc = why("HTTP/1.0 answer lacks Connection: close");
    if (rc == 0) rc = http_expect_eof(h);
    if (h->fd >= 0) close(h->fd);
    if (rc == 0) rc = http_open(h, port);
    if (rc == 0) rc = send_all(h->fd, keep, sizeof keep - 1);
    if (rc == 0) rc = http_expect_hello(h, 0, &rs);
    if (rc == 0 && !rs.keep_alive)
        rc = why("HTTP/1.0 keep-alive answer lacks Connection: keep-alive");
    if (rc == 0) rc = send_all(h->fd, keep, sizeof keep - 1);
    if (rc == 0) rc = http_expect_hello(h, 0, &rs);
    if (h->fd >= 0) close(h->fd);
    free(h);
    return rc;
}

/* RFC 9112, 3.2: an HTTP/1.1 request needs exactly one Host header, and no
   request may have two (400, then close); HTTP/1.0 may go without. The 200s
   close too: HTTP/1.0 by default, the other with Connection: close. */
static int check_http_host(int port)
{
    static const struct status_case cases[] = {
        {"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", "HTTP/1.1 without Host", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nhost: b\r\n\r\n",
         "HTTP/1.1 with two Host headers", 400},
        {"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", "HTTP/1.0 with two Host headers", 400},
        {"GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", "HTTP/1.0 without Host", 200},
        {"GET / HTTP/1.1\r\nHOST: x\r\nConnection: close\r\n\r\n",
         "\"HOST: x\" (names are case-insensitive)", 200},
    };
    return check_http_statuses(port, cases, sizeof cases / sizeof cases[0]);
}

/* Sends a byte every 200 ms until a send fails because the server closed
   the connection (its kernel answers our bytes with a reset), for at most
   give_up_ms. Returns the milliseconds that took, or -1 with reason set. */
static double trickle_until_closed(int fd, int give_up_ms)
{
    double start = now_ms();

    while (now_ms() - start < give_up_ms) {
        if (send(fd, "x", 1, 0) < 0) {
            if (errno == ECONNRESET || errno == EPIPE) return now_ms() - start;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return why("send: %s", strerror(errno));
        }
        sleep_ms(200);
    }
    return why("still open after %d ms of sending a byte every 200 ms", give_up_ms);
}

/* After an error answer http_hello lingers: it shuts down its sending side
   (we see EOF after the 400) and discards what we still send, until we are
   quiet for 2 s (LINGER_SECONDS) or the linger lasted -l seconds in all. A
   byte every 200 ms keeps restarting the 2 s read timeout, so only the total
   cap can end this one: with -l 1 the connection must go within about 1 s. */
static int check_http_linger_cap(int port)
{
    static const char bad[] = "BAD\r\n\r\n";
    struct http_response rs;
    struct http_conn *h = malloc(sizeof *h);
    double ms = 0;
    int rc;

    if (!h) return why("out of memory");
    rc = http_open(h, port);
    if (rc == 0) rc = send_all(h->fd, bad, sizeof bad - 1);
    if (rc == 0) rc = http_read(h, 0, &rs);
    if (rc == 0 && rs.status != 400) rc = why("status %d, want 400", rs.status);
    if (rc == 0) rc = http_expect_eof(h); /* the server shut down its side: lingering began */
    if (rc == 0) ms = trickle_until_closed(h->fd, 4000);
    if (rc == 0 && ms < 0) rc = -1;
    /* The cap is 1 s; noticing the close takes up to two sends (400 ms) more. */
    if (rc == 0 && (ms < 700 || ms > 3000))
        rc = why("closed %.0f ms into the linger, want 700 .. 3000 ms", ms);
    if (h->fd >= 0) close(h->fd);
    free(h);
    return rc;
}

/* Threads of a running process, from /proc (0 if it cannot tell). */
static int thread_count(pid_t pid)
{
    char path[64], line[256];
    int n = 0;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    return n;
}

/* What the server must answer to one request of a random stream. */
struct http_want {
    int status;
    int head;  /* HEAD: no body in the answer */
    int close; /* the answer ends the connection */
};

/* Appends n random bytes from set (or any byte when set is NULL). */
static size_t http_rand_bytes(unsigned *seed, char *out, size_t n, const char *set)
{
    size_t i, m = set ? strlen(set) : 256;

    for (i = 0; i < n; i++)
        out[i] = set ? set[driver_rand(seed, (unsigned)m)] : (char)driver_rand(seed, 256);
    return n;
}

/* Appends one random request to out and says what it must get. Only the
   last request of a stream may end the connection (Connection: close, a
   malformed request, chunked encoding). Every HTTP/1.1 request has exactly
   one Host header, somewhere among the others; an HTTP/1.0 one at most one. */
static size_t http_rand_request(unsigned *seed, char *out, int last, struct http_want *w)
{
    static const char *const names[] = {"User-Agent", "Accept", "X-Long-Header-Name",
                                        "Cache-Control"};
    static const char *const bad[] = {"GET / HTTP/1.1\r\nno colon\r\n\r\n",
                                      "GET  / HTTP/1.1\r\n\r\n",
                                      "GET / HTTP/1.1\nHost: x\n\n",
                                      "GET / HTTP/2.0\r\n\r\n",
                                      "G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
                                      "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
                                      "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"};
    static const char value_chars[] = "abcXYZ019 \t;,=/.-";
    unsigned kind = driver_rand(seed, last ? 10 : 7), i, nh = driver_rand(seed, 4), host_at;
    size_t n = 0, body = 0;
    int ten = kind < 7 && driver_rand(seed, 6) == 0; /* HTTP/1.0 that asks for keep-alive */

    w->status = 200, w->head = 0, w->close = 0;
    if (kind == 9) { /* malformed: 400, then the server closes */
        const char *b = bad[driver_rand(seed, sizeof bad / sizeof *bad)];
        w->status = 400, w->close = 1;
        memcpy(out, b, strlen(b));
        return strlen(b);
    }
    while (driver_rand(seed, 4) == 0)
        n += (size_t)sprintf(out + n, "\r\n"); /* allowed before a request */
    if (kind == 4) w->head = 1;
    if (kind == 5) w->status = 405;
    n += (size_t)sprintf(out + n, "%s /", kind == 4 ? "HEAD" : kind == 5 ? "POST" : "GET");
    n += http_rand_bytes(seed, out + n, driver_rand(seed, 20), "abc/?=&%09");
    n += (size_t)sprintf(out + n, " HTTP/1.%d\r\n", ten ? 0 : 1);
    if (ten) n += (size_t)sprintf(out + n, "connection: Keep-Alive\r\n");
    /* Host goes before header host_at (nh: after them all, nh + 1: nowhere). */
    host_at = driver_rand(seed, ten ? nh + 2 : nh + 1);
    for (i = 0; i <= nh; i++) {
        if (i == host_at) {
            n += (size_t)sprintf(out + n, "%s:", driver_rand(seed, 2) ? "Host" : "host");
            n += http_rand_bytes(seed, out + n, driver_rand(seed, 20), value_chars);
            n += (size_t)sprintf(out + n, "\r\n");
        }
        if (i == nh) break;
        n +=
            (size_t)sprintf(out + n, "%s:", names[driver_rand(seed, sizeof names / sizeof *names)]);
        n += http_rand_bytes(seed, out + n, driver_rand(seed, 40), value_chars);
        n += (size_t)sprintf(out + n, "\r\n");
    }
    if (kind == 5 || kind == 6) { /* a body, read and ignored: any bytes, CR and LF too */
        body = driver_rand(seed, 300);
        n += (size_t)sprintf(out + n, "%s: %zu\r\n",
                             driver_rand(seed, 2) ? "Content-Length" : "content-length", body);
    }
    if (kind == 7) n += (size_t)sprintf(out + n, "Connection: close\r\n"), w->close = 1;
    if (kind == 8)
        n += (size_t)sprintf(out + n, "Transfer-Encoding: chunked\r\n"), w->status = 501,
                                                                         w->close = 1;
    n += (size_t)sprintf(out + n, "\r\n");
    return n + http_rand_bytes(seed, out + n, body, NULL);
}

/* Random streams of pipelined requests (bodies, HEAD, POST, HTTP/1.0
   keep-alive, blank lines between requests, a closing or malformed request
   at the end), each sent in random pieces with short pauses so the server
   reads them split anywhere: every request gets its answer, in order, and
   the connection ends exactly where the model says. */
static int check_http_random_splits(int port, int nseeds)
{
    struct http_conn *h = malloc(sizeof *h);
    char *req = malloc(16 * 1024);
    int seed_no, rc = 0, one = 1;

    if (!h || !req) rc = why("out of memory");
    for (seed_no = 1; rc == 0 && seed_no <= nseeds; seed_no++) {
        struct http_want want[8];
        struct http_response rs;
        unsigned seed = (unsigned)seed_no * 2654435761u;
        int i, nreq = 1 + (int)driver_rand(&seed, 8);
        size_t len = 0, sent = 0;

        for (i = 0; i < nreq; i++)
            len += http_rand_request(&seed, req + len, i == nreq - 1, &want[i]);
        if (http_open(h, port) < 0) {
            rc = -1;
            break;
        }
        setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        while (rc == 0 && sent < len) {
            size_t piece = 1 + driver_rand(&seed, driver_rand(&seed, 4) ? 40 : 2000);

            if (piece > len - sent) piece = len - sent;
            rc = send_all(h->fd, req + sent, piece);
            sent += piece;
            if (driver_rand(&seed, 3) == 0) sleep_ms(1);
        }
        for (i = 0; rc == 0 && i < nreq; i++) {
            if (http_read(h, want[i].head, &rs) < 0)
                rc = why("seed %d, answer %d of %d: %s", seed_no, i + 1, nreq, reason);
            else if (rs.status != want[i].status)
                rc = why("seed %d, answer %d of %d: status %d, want %d", seed_no, i + 1, nreq,
                         rs.status, want[i].status);
            else if (rs.status == 200 && !want[i].head && strcmp(rs.body, HTTP_BODY) != 0)
                rc = why("seed %d, answer %d: body \"%s\"", seed_no, i + 1, rs.body);
            else if (rs.close != want[i].close)
                rc = why("seed %d, answer %d of %d: Connection: close %s", seed_no, i + 1, nreq,
                         rs.close ? "unexpected" : "missing");
        }
        if (rc == 0) rc = want[nreq - 1].close ? http_expect_eof(h) : http_expect_quiet(h, 20);
        if (rc < 0 && !strstr(reason, "seed")) rc = why("seed %d: %s", seed_no, reason);
        close(h->fd);
    }
    free(req);
    free(h);
    return rc;
}

/* nconn connections at once, each sending `rounds` batches of `batch`
   pipelined requests on the same connection (keep-alive) and reading every
   answer. With SO_REUSEPORT the kernel spreads them over the workers. */
static int check_http_many(int port, int nconn, int rounds, int batch)
{
    struct http_conn *h = calloc((size_t)nconn, sizeof *h);
    struct http_response rs;
    char req[2048];
    size_t len = 0;
    int i, r, k, rc = 0;

    if (!h) return why("out of memory");
    for (k = 0; k < batch; k++)
        len += (size_t)sprintf(req + len, "GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", k);
    for (i = 0; i < nconn; i++) h[i].fd = -1;
    for (i = 0; rc == 0 && i < nconn; i++)
        if (http_open(&h[i], port) < 0) rc = why("connection %d: %s", i, reason);
    for (r = 0; rc == 0 && r < rounds; r++) {
        for (i = 0; rc == 0 && i < nconn; i++) /* every connection's batch in flight at once */
            if (send_all(h[i].fd, req, len) < 0) rc = why("connection %d: %s", i, reason);
        for (i = 0; rc == 0 && i < nconn; i++)
            for (k = 0; rc == 0 && k < batch; k++)
                if (http_expect_hello(&h[i], 0, &rs) < 0)
                    rc = why("connection %d, round %d, answer %d: %s", i, r, k, reason);
                else if (rs.close)
                    rc = why("connection %d: Connection: close on keep-alive", i);
    }
    for (i = 0; rc == 0 && i < nconn; i++) rc = http_expect_quiet(&h[i], 0);
    for (i = 0; i < nconn; i++)
        if (h[i].fd >= 0) close(h[i].fd);
    free(h);
    return rc;
}

static void test_http(void)
{
    static const char *const two_threads[] = {"-t", "2", NULL};
    static const char *const short_linger[] = {"-l", "1", NULL};
    struct child c;
    int port = 0, n;

    if (start_reported(&c, "http_hello", &port, NULL) < 0) return;
    report("http_hello 10 pipelined requests answered in order, keep-alive, split request, "
           "Connection: close",
           check_http_pipelined(port));
    report("http_hello 400 for malformed requests, then close", check_http_400(port));
    report("http_hello 431 for a 64 KiB header, then close", check_http_431(port));
    report("http_hello HTTP/1.0 closes, HTTP/1.0 keep-alive stays open", check_http10(port));
    report("http_hello 400 for HTTP/1.1 without Host and for two Host headers; HTTP/1.0 without "
           "Host gets 200",
           check_http_host(port));
    report("http_hello answers 60 random pipelined streams sent in random pieces, in order",
           check_http_random_splits(port, 60));
    stop_reported(&c, "http_hello");

    /* A short total linger time, so the check does not wait the default 30 s. */
    port = 0;
    if (start_reported(&c, "http_hello", &port, short_linger) < 0) return;
    report("http_hello -l 1 ends the linger after a 400 within the cap, though the client keeps "
           "sending",
           check_http_linger_cap(port));
    stop_reported(&c, "http_hello -l 1");

    /* One loop per thread, each with its own SO_REUSEPORT listener. */
    port = 0;
    if (start_reported(&c, "http_hello", &port, two_threads) < 0) return;
    n = thread_count(c.pid); /* a sanitizer's runtime may add its own */
    report("http_hello -t 2 runs two threads",
           n == 0 || n >= 2 ? 0 : why("%d thread(s) in /proc/%d/status", n, (int)c.pid));
    report("http_hello -t 2: 40 connections x 3 rounds of 5 pipelined requests, keep-alive",
           check_http_many(port, 40, 3, 5));
    report("http_hello -t 2 10 pipelined requests answered in order, keep-alive, split request, "
           "Connection: close",
           check_http_pipelined(port));
    report("http_hello -t 2 400 for malformed requests, then close", check_http_400(port));
    report("http_hello -t 2 HTTP/1.0 closes, HTTP/1.0 keep-alive stays open", check_http10(port));
    stop_reported(&c, "http_hello -t 2");
}

/*== TCP CLIENT ==*/

/* A listening socket on 127.0.0.1 (port chosen by the kernel) for the fake servers. */
static int fake_server(int *port, int backlog)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    int fd = tcp_listen_probe(0);

    if (fd < 0) return why("socket: %s", strerror(errno));
    if (listen(fd, backlog) < 0 || getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        close(fd);
        return why("listen: %s", strerror(errno));
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

static int accept_within(int lfd, int ms)
{
    struct pollfd pfd = {lfd, POLLIN, 0};
    int fd;

    if (poll(&pfd, 1, ms) <= 0) return why("tcp_client did not connect within %d ms", ms);
    fd = accept(lfd, NULL, NULL);
    return fd < 0 ? why("accept: %s", strerror(errno)) : fd;
}

/* Runs tcp_client with args, collects its stdout+stderr until it exits, and
   checks the exit status. Output goes to out (NUL-terminated). */
static int run_client(struct child *c, char *out, size_t size, int want_status)
{
    char line[1024];
    size_t used = 0;
    int r, status = 0;

    out[0] = '\0';
    while ((r = read_line(c, line, sizeof line, 5000)) > 0) {
        used += (size_t)snprintf(out + used, size - used, "%s\n", line);
        if (used >= size) used = size - 1;
    }
    if (r < 0) {
        kill_child(c);
        return why("tcp_client still running after 5 s");
    }
    if (!reap(c, &status, STOP_TIMEOUT_MS)) {
        kill_child(c);
        return why("tcp_client did not exit");
    }
    live_pid = -1;
    c->pid = -1;
    close(c->out_fd);
    c->out_fd = -1;
    if (!WIFEXITED(status)) return why("tcp_client killed by signal %d", WTERMSIG(status));
    if (WEXITSTATUS(status) != want_status)
        return why("exit status %d, want %d; output \"%s\"", WEXITSTATUS(status), want_status, out);
    return 0;
}

static int spawn_client(struct child *c, int port, const char *msg, const char *timeout_ms)
{
    char port_arg[16];
    const char *args[5];

    snprintf(port_arg, sizeof port_arg, "%d", port);
    args[0] = "127.0.0.1";
    args[1] = port_arg;
    args[2] = msg;
    args[3] = timeout_ms;
    args[4] = NULL;
    merge_stderr = 1;
    if (spawn(c, "tcp_client", args) < 0) {
        merge_stderr = 0;
        return -1;
    }
    merge_stderr = 0;
    return 0;
}

/* mode 0: reply and close; 1: never reply; 2: read, then reset */
static int check_client(int mode)
{
    static const char *const timeouts[] = {"5000", "300", "5000"};
    static const int statuses[] = {0, 4, 5};
    static const char *const outputs[] = {"pong 1\npong 2\n", NULL, NULL};
    static const char *const messages[] = {NULL, "timed out", "connection reset"};
    struct child c;
    char out[4096], got[64];
    size_t n;
    int port, rc, fd = -1, lfd = fake_server(&port, 8);
    double start = now_ms();

    if (lfd < 0) return -1;
    rc = spawn_client(&c, port, "ping\\n", timeouts[mode]);
    if (rc == 0 && (fd = accept_within(lfd, 5000)) < 0) rc = -1;
    /* The client sends "ping\n" and half-closes: read up to its EOF. */
    if (rc == 0) {
        double deadline = now_ms() + 3000;

        n = 0;
        while (rc == 0) {
            struct pollfd pfd = {fd, POLLIN, 0};
            ssize_t r;

            if (now_ms() > deadline || poll(&pfd, 1, 3000) <= 0) {
                rc = why("no message and EOF from tcp_client");
                break;
            }
            r = recv(fd, got + n, sizeof got - 1 - n, 0);
            if (r <= 0) break;
            n += (size_t)r;
        }
        if (rc == 0) rc = compare_bytes("message", got, n, "ping\n", 5);
    }
    if (rc == 0 && mode == 0) {
        rc = send_all(fd, "pong 1\n", 7);
        if (rc == 0 && (sleep_ms(50), 1)) rc = send_all(fd, "pong 2\n", 7);
        close(fd);
        fd = -1;
    } else if (rc == 0 && mode == 2) {
        struct linger lg = {1, 0}; /* close with a reset */

        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
        fd = -1;
    }
    if (c.pid > 0) {
        if (rc == 0)
            rc = run_client(&c, out, sizeof out, statuses[mode]);
        else
            kill_child(&c);
    }
    if (rc == 0 && outputs[mode] && strcmp(out, outputs[mode]) != 0)
        rc = why("printed \"%s\", want \"%s\"", out, outputs[mode]);
    if (rc == 0 && messages[mode] && !strstr(out, messages[mode]))
        rc = why("output \"%s\" lacks \"%s\"", out, messages[mode]);
    if (rc == 0 && mode == 1 && (now_ms() - start < 300 || now_ms() - start > 4000))
        rc = why("gave up after %.0f ms, want 300 ms .. 4 s", now_ms() - start);
    if (fd >= 0) close(fd);
    close(lfd);
    return rc;
}

static int check_client_refused(void)
{
    struct child c;
    char out[4096];
    int port = free_port();

    if (port <= 0) return why("no free port");
    if (spawn_client(&c, port, "ping\\n", "2000") < 0) return -1;
    if (run_client(&c, out, sizeof out, 3) < 0) return -1;
    if (!strstr(out, "connection refused")) return why("output \"%s\"", out);
    return 0;
}

/* Linux drops SYNs to a listener whose accept queue is full, so a connect
   there stays in progress: a connect timeout without leaving 127.0.0.1.
   Returns 1 if this setup was made (fds[] holds what to close), 0 if not. */
static int fill_backlog(int lfd, int port, int *fds, int max)
{
    int i;

    for (i = 0; i < max; i++) {
        struct sockaddr_in sin;
        struct pollfd pfd;
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        fds[i] = fd;
        if (fd < 0) return 0;
        fcntl(fd, F_SETFL, O_NONBLOCK);
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_port = htons((unsigned short)port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0) continue;
        if (errno != EINPROGRESS) return 0;
        pfd.fd = fd;
        pfd.events = POLLOUT;
        if (poll(&pfd, 1, 300) == 0) return 1; /* this one hangs: the queue is full */
    }
    (void)lfd;
    return 0;
}

static void test_client(void)
{
    int fds[16], i, port, lfd;
    struct child c;
    char out[4096];
    double start;

    report("tcp_client prints the reply until EOF, exit 0", check_client(0));
    report("tcp_client reports \"connection refused\" for a closed port, exit 3",
           check_client_refused());
    /* The read timeout: a server that accepts and never replies. */
    report("tcp_client reports \"timed out\" when the reply does not come (read timeout), exit 4",
           check_client(1));
    report("tcp_client reports \"connection reset\", exit 5", check_client(2));
    for (i = 0; i < 16; i++) fds[i] = -1;
    lfd = fake_server(&port, 0);
    if (lfd >= 0 && fill_backlog(lfd, port, fds, 16)) {
        int rc = spawn_client(&c, port, "ping\\n", "300");

        start = now_ms();
        if (rc == 0) rc = run_client(&c, out, sizeof out, 4);
        if (rc == 0 && !strstr(out, "timed out")) rc = why("output \"%s\"", out);
        if (rc == 0 && (now_ms() - start < 250 || now_ms() - start > 4000))
            rc = why("gave up after %.0f ms, want 300 ms .. 4 s", now_ms() - start);
        report("tcp_client reports \"timed out\" for a connect that never completes, exit 4", rc);
    } else {
        note("skipped the connect-timeout check: could not make a connect hang on loopback");
    }
    for (i = 0; i < 16; i++)
        if (fds[i] >= 0) close(fds[i]);
    if (lfd >= 0) close(lfd);
}

/*== THREADED SERVER ==*/

static void test_threaded(const char *mode)
{
    const char *pre[4] = {NULL, NULL, NULL, NULL};
    char title[128];
    struct child c;
    int port = 0;

    if (mode) pre[0] = mode;
    if (start_reported(&c, "threaded_server", &port, pre) < 0) return;
    snprintf(title, sizeof title, "threaded_server%s%s 100 concurrent clients x 16 KiB echoed",
             mode ? " " : "", mode ? mode : "");
    report(title, check_echo_clients(port, 100, 16 * 1024, 15000));
    snprintf(title, sizeof title, "threaded_server%s%s", mode ? " " : "", mode ? mode : "");
    stop_reported(&c, title);
}

/*== MAIN ==*/

/* 1,000 clients and the server's 1,000 ends need more than the usual 1,024 fds. */
static void raise_fd_limit(rlim_t want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return;
    if (rl.rlim_cur >= want) return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur < want)
        note("fd limit %ld: the 1,000-client check may fail", (long)rl.rlim_cur);
}

static int selected(int argc, char **argv, const char *name)
{
    int i;

    if (argc <= 2) return 1;
    for (i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    struct stat st;

    if (argc < 2 || stat(argv[1], &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr,
                "usage: %s BINDIR [EXAMPLE...]   (BINDIR holds the built examples; the names "
                "pick some)\n",
                argv[0]);
        return 2;
    }
    bindir = argv[1];
    install_emergency_handlers();
    raise_fd_limit(4096);
    if (selected(argc, argv, "rot13_stream")) test_rot13();
    if (selected(argc, argv, "echo_stream")) test_echo();
    if (selected(argc, argv, "chat_server")) test_chat();
    if (selected(argc, argv, "http_hello")) test_http();
    if (selected(argc, argv, "tcp_client")) test_client();
    if (selected(argc, argv, "threaded_server")) {
        test_threaded(NULL);
        test_threaded("-r");
    }
    printf("stream-examples: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
