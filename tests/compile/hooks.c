/* Allocator hooks: every allocation of the library goes through them, all of
   it is given back by evloop_free, and the steady state allocates nothing:
   once tables have grown, adding, deleting and firing events (fd events,
   heap timers, common timeouts) makes no call to the allocator. */
/* This file includes a system header before evloop.h, so it asks for POSIX
   itself, as evloop.h's documentation says. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
static long live_blocks, calls;
static void *count_malloc(size_t n)
{
    live_blocks++, calls++;
    return malloc(n);
}
static void *count_realloc(void *p, size_t n)
{
    if (!p) live_blocks++;
    calls++;
    return realloc(p, n);
}
static void count_free(void *p)
{
    if (p) live_blocks--;
    free(p);
}
#define EVLOOP_MALLOC(n)     count_malloc(n)
#define EVLOOP_REALLOC(p, n) count_realloc((p), (n))
#define EVLOOP_FREE(p)       count_free(p)
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define NPIPES 64

static void on_event(evloop_socket_t fd, short what, void *arg)
{
    char c;
    if (what & EVLOOP_READ) (void)!read(fd, &c, 1);
    ++*(long *)arg;
}

/* One round of the pipes pattern: re-arm every event, make half of them
   readable, run until they fired. */
static int round_trip(evloop *loop, evloop_event *evs, int (*fds)[2], const struct timeval *common,
                      long *fired)
{
    static const struct timeval short_tv = {0, 500}, long_tv = {10, 0};
    int i;
    for (i = 0; i < NPIPES; i++) {
        evloop_event_del(&evs[i]);
        if (evloop_event_add(&evs[i], i % 3 == 0 ? common : i % 3 == 1 ? &long_tv : NULL) < 0)
            return -1;
    }
    for (i = 0; i < NPIPES; i += 2) (void)!write(fds[i][1], "x", 1);
    evloop_once(loop, -1, 0, on_event, fired, &short_tv);
    return evloop_run(loop, EVLOOP_NONBLOCK) < 0 ? -1 : 0;
}

int main(void)
{
    static const struct timeval ten_sec = {10, 0};
    evloop_event evs[NPIPES], anchor;
    int fds[NPIPES][2], i, r, rc = 0;
    long fired = 0, steady_calls;
    const struct timeval *common;
    evloop *loop = evloop_new();
    if (!loop || live_blocks == 0) return 1;
    common = evloop_init_common_timeout(loop, &ten_sec);
    for (i = 0; i < NPIPES; i++) {
        if (pipe(fds[i]) < 0) return 1;
        evloop_event_assign(&evs[i], loop, fds[i][0], EVLOOP_READ | EVLOOP_PERSIST, on_event,
                            &fired);
    }
    /* An event that stays first in the common queue while the others are
       re-armed behind it: their old slots become holes to reuse. */
    evloop_timer_assign(&anchor, loop, on_event, &fired);
    evloop_event_add(&anchor, common);
    /* Warm up: tables grow to their working size. */
    for (r = 0; r < 20; r++) rc |= round_trip(loop, evs, fds, common, &fired);
    {
        struct timespec two_ms = {0, 2000000};
        nanosleep(&two_ms, NULL); /* let the last short timers expire */
    }
    evloop_run(loop, EVLOOP_NONBLOCK);
    steady_calls = calls;
    for (r = 0; r < 200; r++) {
        for (i = 0; i < NPIPES; i++) {
            evloop_event_del(&evs[i]);
            rc |= evloop_event_add(&evs[i], i % 2 ? common : NULL);
        }
        for (i = 0; i < NPIPES; i += 2) (void)!write(fds[i][1], "x", 1);
        rc |= evloop_run(loop, EVLOOP_NONBLOCK) < 0;
    }
    if (calls != steady_calls) {
        fprintf(stderr, "steady state made %ld allocator calls\n", calls - steady_calls);
        rc = 1;
    }
    if (fired < 200 * NPIPES / 2) {
        fprintf(stderr, "only %ld callbacks ran\n", fired);
        rc = 1;
    }
    evloop_free(loop);
    for (i = 0; i < NPIPES; i++) close(fds[i][0]), close(fds[i][1]);
    if (live_blocks != 0) {
        fprintf(stderr, "%ld blocks not freed\n", live_blocks);
        rc = 1;
    }
    return rc;
}
