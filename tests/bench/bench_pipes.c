/* pipes: the method of libevent's test/bench.c, as libev's benchmark page
   used it. N socketpairs, each with a persistent read event; A of them get
   a byte; every read callback takes its byte and, while writes remain, sends
   one to the next pair, so A "tokens" circulate until W writes were made.
   Each iteration first re-arms all N events (delete + assign + add; with
   -t each gets a distinct timeout of 10-11 s, as libev's variant did), then
   runs the loop non-blocking until every byte written was read.

   usage: bench_pipes N [-t] [ITERATIONS [A [W]]]
   prints the medians of total (re-arm + processing) and processing-only
   microseconds, as CPU time of the process (on a shared machine wall time
   also counts the time spent waiting for a core) and as wall time. The callgrind build
   (-DBENCH_CALLGRIND) instead runs the iterations twice, once collecting the whole iteration and
   once the processing only, dumping each region to its own file. */
#define BENCH_IO
#include "bench.h"

static int npairs, nactive, nwrites;
static int (*pairs)[2];
static ad_io *evs;
static long count, fired, writes, failures;
static uint32_t rng = 2463534242u;

static int64_t next_timeout_us(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return 10000000 + (int64_t)(rng % 1000000);
}

static BENCH_NOINLINE void on_io(int fd, int idx)
{
    char ch;
    if (read(fd, &ch, 1) == 1)
        count++;
    else
        failures++;
    if (writes > 0) {
        int next = idx + 1 == npairs ? 0 : idx + 1;
        if (write(pairs[next][1], "e", 1) != 1) failures++;
        writes--;
        fired++;
    }
}

/* One iteration; returns its total and processing times in ns. */
static void run_once(int timeouts, int64_t *total, int64_t *proc, int64_t *total_wall,
                     int64_t *proc_wall)
{
    int i, space = npairs / nactive;
    int64_t t0, t1, t2, w0, w1, w2;

    w0 = now_ns();
    t0 = cpu_ns();
    for (i = 0; i < npairs; i++)
        ad_io_rearm(&evs[i], pairs[i][0], i, timeouts ? next_timeout_us() : -1);
    ad_run_nowait();

    fired = 0;
    for (i = 0; i < nactive; i++, fired++)
        if (write(pairs[i * space][1], "e", 1) != 1) failures++;
    count = 0;
    writes = nwrites;
    t1 = cpu_ns();
    w1 = now_ns();
    do ad_run_nowait();
    while (count != fired);
    t2 = cpu_ns();
    w2 = now_ns();

    if (failures || count != nactive + nwrites) {
        fprintf(stderr, "bench_pipes %s: %ld reads of %d, %ld failures\n", AD_NAME, count,
                nactive + nwrites, failures);
        exit(1);
    }
    *total = t2 - t0;
    *proc = t2 - t1;
    *total_wall = w2 - w0;
    *proc_wall = w2 - w1;
}

int main(int argc, char **argv)
{
    int i, timeouts = 0, iters = 25, argi = 1;
    double *tot, *prc, *wtot, *wprc;
    char config[64];
    int64_t t, p, wt, wp;

    if (argc < 2) {
        fprintf(stderr, "usage: bench_pipes N [-t] [ITERATIONS [A [W]]]\n");
        return 2;
    }
    npairs = atoi(argv[argi++]);
    if (argi < argc && strcmp(argv[argi], "-t") == 0) timeouts = 1, argi++;
    iters = argi < argc ? atoi(argv[argi++]) : 25;
    nactive = argi < argc ? atoi(argv[argi++]) : 100;
    nwrites = argi < argc ? atoi(argv[argi++]) : 1000;
    if (npairs < 1 || nactive < 1 || nactive > npairs || iters < 1 || nwrites < 0) {
        fprintf(stderr, "bench_pipes: bad arguments\n");
        return 2;
    }
    if (timeouts && !AD_IO_TIMEOUTS) {
        fprintf(stderr, "bench_pipes: %s has no fd events with timeouts\n", AD_NAME);
        return 2;
    }
    raise_nofile(2L * npairs + 64);

    pairs = calloc((size_t)npairs, sizeof *pairs);
    evs = calloc((size_t)npairs, sizeof *evs);
    tot = calloc((size_t)iters, sizeof *tot);
    prc = calloc((size_t)iters, sizeof *prc);
    wtot = calloc((size_t)iters, sizeof *wtot);
    wprc = calloc((size_t)iters, sizeof *wprc);
    if (!pairs || !evs || !tot || !prc || !wtot || !wprc) die("calloc");
    for (i = 0; i < npairs; i++)
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]) < 0) die("socketpair");

    ad_init();
    for (i = 0; i < npairs; i++) ad_io_init(&evs[i], pairs[i][0], i);
    run_once(timeouts, &t, &p, &wt, &wp); /* warm-up: first registration, page faults */

#ifdef BENCH_CALLGRIND
    /* Region 1: whole iterations (re-arm + processing). */
    for (i = 0; i < iters; i++) {
        CG_ON();
        run_once(timeouts, &t, &p, &wt, &wp);
        CG_OFF();
    }
    CG_DUMP("total");
    report("pipes-cg", timeouts ? "timeouts" : "plain", "events_total",
           (double)iters * (nactive + nwrites));
    /* Region 2: processing only: everything after the writes that start it. */
    for (i = 0; i < iters; i++) {
        int j, space = npairs / nactive;
        for (j = 0; j < npairs; j++)
            ad_io_rearm(&evs[j], pairs[j][0], j, timeouts ? next_timeout_us() : -1);
        ad_run_nowait();
        fired = 0;
        for (j = 0; j < nactive; j++, fired++)
            if (write(pairs[j * space][1], "e", 1) != 1) failures++;
        count = 0;
        writes = nwrites;
        CG_ON();
        do ad_run_nowait();
        while (count != fired);
        CG_OFF();
    }
    CG_DUMP("proc");
    report("pipes-cg", timeouts ? "timeouts" : "plain", "events_proc",
           (double)iters * (nactive + nwrites));
#else
    for (i = 0; i < iters; i++) {
        run_once(timeouts, &t, &p, &wt, &wp);
        tot[i] = (double)t / 1e3;
        prc[i] = (double)p / 1e3;
        wtot[i] = (double)wt / 1e3;
        wprc[i] = (double)wp / 1e3;
    }
    snprintf(config, sizeof config, "N=%d", npairs);
    report(timeouts ? "pipes-timeouts" : "pipes", config, "total_us", median(tot, iters));
    report(timeouts ? "pipes-timeouts" : "pipes", config, "proc_us", median(prc, iters));
    report(timeouts ? "pipes-timeouts" : "pipes", config, "wall_total_us", median(wtot, iters));
    report(timeouts ? "pipes-timeouts" : "pipes", config, "wall_proc_us", median(wprc, iters));
#endif

    for (i = 0; i < npairs; i++) ad_io_stop(&evs[i]);
    ad_fini();
    for (i = 0; i < npairs; i++) close(pairs[i][0]), close(pairs[i][1]);
    free(pairs);
    free(evs);
    free(tot);
    free(prc);
    free(wtot);
    free(wprc);
    (void)config;
    return 0;
}
