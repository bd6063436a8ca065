/* Common helpers for the evloop benchmarks, and the adapter selection.

   A benchmark program is written once. Before including this header it
   defines which callbacks it implements:
     BENCH_IO     static void on_io(int fd, int idx);  read-ready on an fd
     BENCH_TIMER  static void on_timer(int idx);       a one-shot timer fired
     BENCH_ASYNC  static void on_async(void);          a cross-thread wakeup
   Then the adapter of the library chosen at build time (-DLIB_EVLOOP,
   -DLIB_LIBEVENT, -DLIB_LIBEV, -DLIB_LIBUV or -DLIB_RAWEPOLL) is included: it
   wraps the library's native callbacks around those functions, which the
   compiler sees and can inline, so every library pays the same for the
   program's own work. See README.md for the adapter contract.

   Each measurement is printed as one line:
     R <bench> <lib> <config> <metric> <value>
   which run.sh collects and turns into tables. */
#ifndef BENCH_H
#define BENCH_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#ifdef BENCH_CALLGRIND
#include <valgrind/callgrind.h>
/* Collection starts off (--collect-atstart=no); a region toggles it on and
   off, and a dump closes the region into its own output file. */
#define CG_ON()        CALLGRIND_TOGGLE_COLLECT
#define CG_OFF()       CALLGRIND_TOGGLE_COLLECT
#define CG_DUMP(label) CALLGRIND_DUMP_STATS_AT(label)
#else
#define CG_ON()        ((void)0)
#define CG_OFF()       ((void)0)
#define CG_DUMP(label) ((void)0)
#endif

/* Keep the program's callback a function of its own so callgrind can tell
   its instructions from the library's. */
#if defined(__GNUC__)
#define BENCH_NOINLINE __attribute__((noinline))
#else
#define BENCH_NOINLINE
#endif

static void die(const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static inline int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static inline int64_t cpu_ns(void)
{
    return clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static inline long env_long(const char *name, long def)
{
    const char *s = getenv(name);
    return s && *s ? strtol(s, NULL, 10) : def;
}

/* The soft descriptor limit up to `need` (at most the hard limit). */
static inline void raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) die("getrlimit");
    if ((long)rl.rlim_cur >= need) return;
    rl.rlim_cur =
        rl.rlim_max == RLIM_INFINITY || (long)rl.rlim_max > need ? (rlim_t)need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) die("setrlimit");
    if ((long)rl.rlim_cur < need) {
        fprintf(stderr, "bench: need %ld descriptors, the hard limit is %ld\n", need,
                (long)rl.rlim_cur);
        exit(1);
    }
}

static inline long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Fault in every page of a fresh block now, so that a later timed region
   does not pay for it. A memset would not do: the compiler knows calloc's
   memory is zero and drops the memset. */
static inline void touch_pages(void *p, size_t n)
{
    volatile char *c = (volatile char *)p;
    size_t i;
    for (i = 0; i < n; i += 4096) c[i] = 0;
}

#if defined(BENCH_IO)
static void on_io(int fd, int idx);
#endif
#if defined(BENCH_TIMER)
static void on_timer(int idx);
#endif
#if defined(BENCH_ASYNC) && !defined(LIB_EVLOOP) /* evloop posts functions itself */
static void on_async(void);
#endif

#if defined(LIB_EVLOOP)
#include "adapt_evloop.h"
#elif defined(LIB_LIBEVENT)
#include "adapt_libevent.h"
#elif defined(LIB_LIBEV)
#include "adapt_libev.h"
#elif defined(LIB_LIBUV)
#include "adapt_libuv.h"
#elif defined(LIB_RAWEPOLL)
#include "adapt_rawepoll.h"
#else
#error "bench: define one of LIB_EVLOOP LIB_LIBEVENT LIB_LIBEV LIB_LIBUV LIB_RAWEPOLL"
#endif

static inline void report(const char *bench, const char *config, const char *metric, double value)
{
    printf("R %s %s %s %s %.3f\n", bench, AD_NAME, config, metric, value);
    fflush(stdout);
}

#endif
