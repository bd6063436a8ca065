/* timers: the method of libuv's million-timers benchmark. Start COUNT
   one-shot timers whose timeout grows by 1 ms every 1000 timers (1 ms for
   the first thousand, COUNT/1000 ms for the last), then run the loop until
   all fired.

   usage: bench_timers [COUNT]   (default 1000000)
   prints the CPU time to start them, the CPU time to dispatch them (process
   CPU clock: the loop's idle waits do not count), how late the last-started
   timer fired (its deadline taken as the monotonic clock just before it was
   started plus its timeout; negative means early), and the peak RSS of the
   process. The callgrind build dumps the start and the dispatch regions to
   their own files. */
#define BENCH_TIMER
#include "bench.h"

static int ntimers;
static long nfired;
static int64_t last_fired_ns;

static BENCH_NOINLINE void on_timer(int idx)
{
    nfired++;
    if (idx == ntimers - 1) last_fired_ns = now_ns();
}

int main(int argc, char **argv)
{
    ad_timer *timers;
    int i;
    int64_t timeout = 0, c0, c1, c2, last_deadline = 0;

    ntimers = argc > 1 ? atoi(argv[1]) : 1000000;
    if (ntimers < 1) {
        fprintf(stderr, "usage: bench_timers [COUNT]\n");
        return 2;
    }
    timers = calloc((size_t)ntimers, sizeof *timers);
    if (!timers) die("calloc");
    /* Touch the program's own array first: its page faults are not the
       library's work (the library's own allocations still count). */
    touch_pages(timers, (size_t)ntimers * sizeof *timers);
    ad_init();

    CG_ON();
    c0 = cpu_ns();
    for (i = 0; i < ntimers; i++) {
        if (i % 1000 == 0) timeout++;
        if (i == ntimers - 1) last_deadline = now_ns() + timeout * 1000000;
        ad_timer_start(&timers[i], i, timeout);
    }
    c1 = cpu_ns();
    CG_OFF();
    CG_DUMP("start");

    CG_ON();
    ad_run(0);
    c2 = cpu_ns();
    CG_OFF();
    CG_DUMP("dispatch");

    if (nfired != ntimers) {
        fprintf(stderr, "bench_timers %s: %ld of %d timers fired\n", AD_NAME, nfired, ntimers);
        return 1;
    }
#ifdef BENCH_CALLGRIND
    report("timers-cg", "timers", "events", (double)ntimers);
    (void)c0, (void)c1, (void)c2, (void)last_deadline;
#else
    {
        char config[32];
        snprintf(config, sizeof config, "%dk", ntimers / 1000);
        report("timers", config, "start_ms", (double)(c1 - c0) / 1e6);
        report("timers", config, "dispatch_ms", (double)(c2 - c1) / 1e6);
        report("timers", config, "late_ms", (double)(last_fired_ns - last_deadline) / 1e6);
        report("timers", config, "rss_mb", (double)peak_rss_kb() / 1024);
    }
#endif
    ad_fini();
    free(timers);
    return 0;
}
