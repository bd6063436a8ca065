/* ping-pong: one TCP connection over 127.0.0.1 (TCP_NODELAY), both ends in
   the same loop, as libuv's tcp ping-pong benchmark does. The client sends a
   5-byte message; the server echoes it back; the client sends the next one
   when the whole echo arrived. Latency-bound: every round trip costs two
   wake-ups of the loop, so this shows the per-round overhead.

   usage: bench_pingpong [ROUNDTRIPS]   (default 100000)
   prints round trips per second (wall clock) and the process CPU time per
   round trip (steadier when the machine is shared). The callgrind build
   (-DBENCH_CALLGRIND) collects the round trips only, in one dump, and
   prints their count. */
#define BENCH_IO
#include "bench.h"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#define MSG    "PING\n"
#define MSGLEN 5

enum { CLIENT, SERVER };

static ad_io evs[2];
static int fds[2];
static long rounds, target;
static size_t client_got; /* bytes of the current echo received so far */
static int done, failed;

static void finish(int ok)
{
    done = 1;
    failed = !ok;
    ad_io_stop(&evs[CLIENT]);
    ad_io_stop(&evs[SERVER]);
}

static BENCH_NOINLINE void on_io(int fd, int idx)
{
    char buf[256];
    ssize_t n;
    if (done) return;
    n = read(fd, buf, sizeof buf);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN) return;
        finish(0);
        return;
    }
    if (idx == SERVER) {
        if (write(fd, buf, (size_t)n) != n) finish(0);
        return;
    }
    client_got += (size_t)n;
    while (client_got >= MSGLEN) {
        client_got -= MSGLEN;
        if (++rounds == target) {
            finish(1);
            return;
        }
        if (write(fd, MSG, MSGLEN) != MSGLEN) {
            finish(0);
            return;
        }
    }
}

static void tcp_pair(int out[2])
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) die("socket");
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, 1) < 0) die("listen");
    if (getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) die("getsockname");
    out[CLIENT] = socket(AF_INET, SOCK_STREAM, 0);
    if (out[CLIENT] < 0) die("socket");
    if (connect(out[CLIENT], (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
    out[SERVER] = accept(lfd, NULL, NULL);
    if (out[SERVER] < 0) die("accept");
    close(lfd);
    setsockopt(out[CLIENT], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(out[SERVER], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int main(int argc, char **argv)
{
    int64_t t0, t1, c0, c1;
    target = argc > 1 ? atol(argv[1]) : 100000;
    if (target < 1) {
        fprintf(stderr, "usage: bench_pingpong [ROUNDTRIPS]\n");
        return 2;
    }
    tcp_pair(fds);
    ad_init();
    ad_io_init(&evs[CLIENT], fds[CLIENT], CLIENT);
    ad_io_init(&evs[SERVER], fds[SERVER], SERVER);
    ad_io_rearm(&evs[CLIENT], fds[CLIENT], CLIENT, -1);
    ad_io_rearm(&evs[SERVER], fds[SERVER], SERVER, -1);

    t0 = now_ns();
    c0 = cpu_ns();
    CG_ON();
    if (write(fds[CLIENT], MSG, MSGLEN) != MSGLEN) die("write");
    ad_run(0);
    CG_OFF();
    t1 = now_ns();
    c1 = cpu_ns();
    CG_DUMP("run");

    if (failed || rounds != target) {
        fprintf(stderr, "bench_pingpong %s: %ld of %ld round trips\n", AD_NAME, rounds, target);
        return 1;
    }
#ifdef BENCH_CALLGRIND
    report("pingpong-cg", "tcp", "roundtrips", (double)rounds);
#endif
    report("pingpong", "tcp", "roundtrips_per_s", (double)rounds / ((double)(t1 - t0) / 1e9));
    report("pingpong", "tcp", "cpu_us_per_rt", (double)(c1 - c0) / 1e3 / (double)rounds);
    ad_fini();
    close(fds[CLIENT]);
    close(fds[SERVER]);
    return 0;
}
