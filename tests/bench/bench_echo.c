/* Echo throughput through each library's buffered stream API (libuv's
   "pump" method, issue 4).

   One process. The main thread runs the library's loop with the server side
   of NCONN TCP connections over 127.0.0.1; a second thread, the same plain
   epoll code for every library, is the client: it pumps 8 KiB writes into
   every connection and reads the echoes back. The server echoes with the
   library's buffered stream, the way its documentation suggests:
     evloop    evloop_stream; read callback: evloop_buffer_add_buffer(output, input)
     libevent  bufferevent;   read callback: evbuffer_add_buffer(output, input)
     libuv     uv_tcp_t;      uv_read_start, and uv_write of the buffer just read
               (freed in the write callback)
   No library gets a listener in the timed part: the connections are made and
   accepted with plain sockets before the loop starts, then handed over.

   The client keeps at most WINDOW bytes in flight per connection (sent, not
   yet echoed), so no server buffers grow without bound, whatever the
   library. It checks that every echoed byte is the one it sent (a pattern of
   period 251, compared in full) and fails otherwise.
   Figure: bytes echoed back to the client per second of wall time, after a
   warm-up of WARMUP_MS, over `seconds` (MB = 10^6 bytes). Also the process
   CPU time (both threads) per MB.

   usage: bench_echo_<lib> [seconds]   (default 5; BENCH_ECHO_CONNS overrides 100) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>

#include "bench.h"

#if defined(LIB_LIBEVENT)
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#elif defined(LIB_LIBEV) || defined(LIB_RAWEPOLL)
#error "bench_echo: evloop, libevent and libuv only (libev and the floor have no buffered streams)"
#endif

#define CHUNK     8192         /* the client's write size */
#define WINDOW    (256 * 1024) /* bytes in flight per connection */
#define PERIOD    251          /* period of the byte pattern */
#define READSZ    (64 * 1024)  /* the client's read size */
#define WARMUP_MS 250

static int nconn = 100;
static double seconds = 5;
static int *client_fds;

/* Results of the client thread. */
static double echoed_bytes, measured_s, cpu_s;
static int client_failed;

/*== THE CLIENT (same for every library) ==*/

struct conn {
    int fd;
    uint64_t sent, recvd;
};

static unsigned char pattern[READSZ + PERIOD]; /* byte i of a stream is i % PERIOD */

static void *client(void *arg)
{
    struct conn *cs = calloc((size_t)nconn, sizeof *cs);
    struct epoll_event ev, evs[128];
    static unsigned char rbuf[READSZ];
    int ep = epoll_create1(EPOLL_CLOEXEC), i, n, started = 0;
    int64_t t_start, t_end, t0 = now_ns(), cpu0 = 0;
    uint64_t base = 0, total = 0;

    (void)arg;
    if (!cs || ep < 0) die("client setup");
    for (i = 0; i < nconn; i++) {
        cs[i].fd = client_fds[i];
        ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
        ev.data.u32 = (uint32_t)i;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0) die("epoll_ctl");
    }
    t_start = t0 + (int64_t)WARMUP_MS * 1000000;
    t_end = t_start + (int64_t)(seconds * 1e9);
    for (;;) {
        int64_t now = now_ns();

        if (!started && now >= t_start) {
            started = 1;
            base = total;
            t_start = now;
            cpu0 = cpu_ns();
        }
        if (now >= t_end) {
            echoed_bytes = (double)(total - base);
            measured_s = (double)(now - t_start) / 1e9;
            cpu_s = (double)(cpu_ns() - cpu0) / 1e9;
            break;
        }
        n = epoll_wait(ep, evs, 128, 10);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (i = 0; i < n; i++) {
            struct conn *c = &cs[evs[i].data.u32];
            ssize_t r;

            /* Read everything the server echoed (edge-triggered: until EAGAIN). */
            for (;;) {
                r = read(c->fd, rbuf, sizeof rbuf);
                if (r > 0) {
                    if (c->recvd + (uint64_t)r > c->sent ||
                        memcmp(rbuf, pattern + c->recvd % PERIOD, (size_t)r) != 0) {
                        fprintf(stderr, "bench_echo: wrong bytes echoed on connection %d\n",
                                (int)(c - cs));
                        client_failed = 1;
                        goto out;
                    }
                    c->recvd += (uint64_t)r;
                    total += (uint64_t)r;
                    continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    fprintf(stderr, "bench_echo: connection %d: %s\n", (int)(c - cs),
                            r == 0 ? "closed by the server" : strerror(errno));
                    client_failed = 1;
                    goto out;
                }
                if (errno == EAGAIN) break;
            }
            /* Then write 8 KiB chunks while the window allows and the socket takes them. */
            while (c->sent - c->recvd + CHUNK <= WINDOW) {
                r = write(c->fd, pattern + c->sent % PERIOD, CHUNK);
                if (r > 0) {
                    c->sent += (uint64_t)r;
                    continue;
                }
                if (r < 0 && errno == EINTR) continue;
                if (r < 0 && errno == EAGAIN) break;
                fprintf(stderr, "bench_echo: write: %s\n", strerror(errno));
                client_failed = 1;
                goto out;
            }
        }
    }
out:
    /* Closing every connection ends the server's streams, and so its loop. */
    for (i = 0; i < nconn; i++) close(cs[i].fd);
    close(ep);
    free(cs);
    return NULL;
}

/*== THE SERVER, per library ==*/

#if defined(LIB_EVLOOP)
static void echo_read(evloop_stream *s, void *arg)
{
    (void)arg;
    if (evloop_buffer_add_buffer(evloop_stream_get_output(s), evloop_stream_get_input(s)) < 0)
        evloop_stream_free(s);
}

static void echo_event(evloop_stream *s, short what, void *arg)
{
    (void)what, (void)arg;
    evloop_stream_free(s); /* EOF or error: the client is gone */
}

static void serve(int fd)
{
    evloop_stream *s = evloop_stream_new(ad_loop, fd, EVLOOP_STREAM_CLOSE_ON_FREE);

    if (!s) die("evloop_stream_new");
    evloop_stream_setcb(s, echo_read, NULL, echo_event, NULL);
    if (evloop_stream_enable(s, EVLOOP_READ | EVLOOP_WRITE) < 0) die("evloop_stream_enable");
}

#elif defined(LIB_LIBEVENT)
static void echo_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev)) < 0)
        bufferevent_free(bev);
}

static void echo_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what, (void)arg;
    bufferevent_free(bev);
}

static void serve(int fd)
{
    struct bufferevent *bev = bufferevent_socket_new(ad_base, fd, BEV_OPT_CLOSE_ON_FREE);

    if (!bev) die("bufferevent_socket_new");
    bufferevent_setcb(bev, echo_read, NULL, echo_event, NULL);
    if (bufferevent_enable(bev, EV_READ | EV_WRITE) < 0) die("bufferevent_enable");
}

#elif defined(LIB_LIBUV)
typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} write_req;

static void echo_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void echo_close(uv_handle_t *h)
{
    free(h);
}

static void echo_written(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;

    free(w->buf.base);
    if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, echo_close);
    free(w);
}

static void echo_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    write_req *w;

    if (nread <= 0) {
        free(buf->base);
        if (nread < 0 && !uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, echo_close);
        return;
    }
    w = malloc(sizeof *w);
    if (!w) die("malloc");
    w->buf = uv_buf_init(buf->base, (unsigned)nread);
    if (uv_write(&w->req, s, &w->buf, 1, echo_written) != 0) {
        free(buf->base);
        free(w);
        if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, echo_close);
    }
}

static void serve(int fd)
{
    uv_tcp_t *t = malloc(sizeof *t);

    if (!t || uv_tcp_init(&ad_loop, t) != 0 || uv_tcp_open(t, fd) != 0) die("uv_tcp_open");
    if (uv_read_start((uv_stream_t *)t, echo_alloc, echo_read) != 0) die("uv_read_start");
}
#endif

/*== MAIN ==*/

int main(int argc, char **argv)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    pthread_t th;
    int lfd, i, one = 1;
    char config[32];

    if (argc > 1) seconds = strtod(argv[1], NULL);
    nconn = (int)env_long("BENCH_ECHO_CONNS", 100);
    if (seconds <= 0 || nconn < 1) {
        fprintf(stderr, "usage: %s [seconds]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* libuv writes without MSG_NOSIGNAL */
    raise_nofile(2L * nconn + 64);
    for (i = 0; i < (int)sizeof pattern; i++) pattern[i] = (unsigned char)(i % PERIOD);
    client_fds = calloc((size_t)nconn, sizeof *client_fds);
    if (!client_fds) die("calloc");

    /* The connections, made before the loop runs. */
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
        listen(lfd, nconn + 16) < 0 || getsockname(lfd, (struct sockaddr *)&sin, &len) < 0)
        die("listen");
    ad_init();
    for (i = 0; i < nconn; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), s;

        if (c < 0 || connect(c, (struct sockaddr *)&sin, sizeof sin) < 0) die("connect");
        s = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (s < 0) die("accept");
        if (setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
            setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
            die("TCP_NODELAY");
        if (fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
        client_fds[i] = c;
        serve(s);
    }
    close(lfd);

    if (pthread_create(&th, NULL, client, NULL) != 0) die("pthread_create");
    ad_run(0); /* returns once the client closed every connection */
    pthread_join(th, NULL);
    ad_fini();
    if (client_failed || measured_s <= 0) return 1;
    snprintf(config, sizeof config, "%dx8KiB", nconn);
    report("echo", config, "MB_per_s", echoed_bytes / measured_s / 1e6);
    report("echo", config, "cpu_ms_per_MB", cpu_s * 1e3 / (echoed_bytes / 1e6));
    free(client_fds);
    return 0;
}
