/* async: another thread hands work to the loop.

   evloop posts functions itself (evloop_post: a FIFO, one call per post).
   The peers offer a wake-up that coalesces (uv_async_send, ev_async_send,
   event_active on a base with evthread_use_pthreads): several sends before
   the callback runs give one callback. To post functions with them, a
   program keeps its own queue under a mutex and sends a wake-up after each
   push; the wake-up callback runs everything queued. That is what this
   program does for every peer, so every library delivers the same thing:
   COUNT function calls, in order, on the loop's thread.

   Two measurements, each its own pass:
     flood      the other thread posts COUNT functions as fast as it can;
                function calls per second, from the first post to the last
                call (and, for the peers, how many wake-up callbacks that
                took: the coalescing);
     handshake  the other thread posts one function and waits (a semaphore)
                until it ran before posting the next, ROUNDS times: round
                trips per second, the latency of one cross-thread wake-up.

   Each also reports the CPU time of the process (both threads) per call or
   per round trip, steadier than the rates when the machine is shared.

   usage: bench_async [COUNT [ROUNDS]]   (default 1000000 and 100000) */
#define BENCH_ASYNC
#include "bench.h"
#include <pthread.h>
#include <semaphore.h>

typedef struct {
    void (*fn)(void *);
    void *arg;
} job;

static long count, rounds, ran, wakeups;
static int64_t t_first, t_last, cpu_used;
static sem_t hs_sem;

#ifndef AD_HAS_POST
/* The queue a program adds to a coalescing wake-up to post functions. */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static job *q_in, *q_run;
static int q_n, q_cap, q_run_cap;

static void q_post(void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&q_lock);
    if (q_n == q_cap) {
        int cap = q_cap ? q_cap * 2 : 1024;
        job *p = realloc(q_in, (size_t)cap * sizeof *p);
        if (!p) die("realloc");
        q_in = p;
        q_cap = cap;
    }
    q_in[q_n].fn = fn;
    q_in[q_n].arg = arg;
    q_n++;
    pthread_mutex_unlock(&q_lock);
    ad_async_send();
}

/* Swap the queue out under the lock, run it outside. */
static BENCH_NOINLINE void on_async(void)
{
    job *run;
    int i, n, cap;
    wakeups++;
    pthread_mutex_lock(&q_lock);
    run = q_in, n = q_n, cap = q_cap;
    q_in = q_run, q_cap = q_run_cap, q_n = 0;
    q_run = run, q_run_cap = cap;
    pthread_mutex_unlock(&q_lock);
    for (i = 0; i < n; i++) run[i].fn(run[i].arg);
}

#define POST(fn, arg) q_post(fn, arg)
#else
#define POST(fn, arg) ad_post(fn, arg)
#endif

static void job_flood(void *arg)
{
    (void)arg;
    if (++ran == count) {
        t_last = now_ns();
        ad_stop();
    }
}

static void job_handshake(void *arg)
{
    (void)arg;
    ran++;
    sem_post(&hs_sem);
}

static void job_stop(void *arg)
{
    (void)arg;
    t_last = now_ns();
    ad_stop();
}

static void *producer_flood(void *arg)
{
    long i;
    (void)arg;
    t_first = now_ns();
    for (i = 0; i < count; i++) POST(job_flood, NULL);
    return NULL;
}

static void *producer_handshake(void *arg)
{
    long i;
    (void)arg;
    t_first = now_ns();
    for (i = 0; i < rounds; i++) {
        POST(job_handshake, NULL);
        while (sem_wait(&hs_sem) < 0 && errno == EINTR) continue;
    }
    POST(job_stop, NULL);
    return NULL;
}

/* One pass on a fresh loop: the producer starts, the loop runs until the
   last function stops it. */
static void pass(void *(*producer)(void *))
{
    pthread_t th;
    int64_t c0;
    ad_init();
#ifndef AD_HAS_POST
    ad_async_init();
#endif
    ran = 0;
    wakeups = 0;
    c0 = cpu_ns();
    if (pthread_create(&th, NULL, producer, NULL) != 0) die("pthread_create");
    ad_run(1);
    pthread_join(th, NULL);
    cpu_used = cpu_ns() - c0;
#ifndef AD_HAS_POST
    ad_async_close();
#endif
    ad_fini();
}

int main(int argc, char **argv)
{
    char config[32];
    count = argc > 1 ? atol(argv[1]) : 1000000;
    rounds = argc > 2 ? atol(argv[2]) : 100000;
    if (count < 1 || rounds < 1) {
        fprintf(stderr, "usage: bench_async [COUNT [ROUNDS]]\n");
        return 2;
    }
    if (sem_init(&hs_sem, 0, 0) < 0) die("sem_init");

    pass(producer_flood);
    if (ran != count) {
        fprintf(stderr, "bench_async %s: %ld of %ld calls\n", AD_NAME, ran, count);
        return 1;
    }
    snprintf(config, sizeof config, "flood-%ldk", count / 1000);
    report("async", config, "calls_per_s", (double)count / ((double)(t_last - t_first) / 1e9));
    report("async", config, "cpu_ns_per_call", (double)cpu_used / (double)count);
#ifndef AD_HAS_POST
    report("async", config, "wakeup_callbacks", (double)wakeups);
#endif

    pass(producer_handshake);
    if (ran != rounds) {
        fprintf(stderr, "bench_async %s: %ld of %ld handshakes\n", AD_NAME, ran, rounds);
        return 1;
    }
    snprintf(config, sizeof config, "handshake-%ldk", rounds / 1000);
    report("async", config, "roundtrips_per_s",
           (double)rounds / ((double)(t_last - t_first) / 1e9));
    report("async", config, "cpu_us_per_rt", (double)cpu_used / 1e3 / (double)rounds);
    sem_destroy(&hs_sem);
#ifndef AD_HAS_POST
    free(q_in);
    free(q_run);
#endif
    return 0;
}
