/* timers.c - one-shot, persistent and common-timeout timers, and a delayed exit.

   Timeline (times multiplied by SCALE):
       every  50 ms  "tick N"      a persistent timer: stays pending after it fires
       at    100 ms  "one-shot"    a plain timer: fires once, then is no longer pending
       at    120 ms  "common A/B/C" three timers sharing one common timeout: they
                                   sit in one FIFO queue instead of the heap and
                                   fire in the order they were added
       at    400 ms  "exit"        evloop_exit with a delay ends evloop_dispatch

   Each line gives the milliseconds since start on CLOCK_MONOTONIC (the clock
   evloop's timers use too, so setting the wall clock changes nothing).
   Expect ticks 1..7 (an 8th may just beat the exit), exactly one "one-shot",
   A, B, C in that order, and "exit" last.

   Build:  cc -std=c99 -Wall -Wextra -pthread -I. examples/timers.c -o timers
   Run:    ./timers [SCALE]        (SCALE: whole number 1..100, default 1) */

/* evloop.h first: it also turns on the POSIX declarations (sigaction,
   clock_gettime, ...) that a strict -std=c99 hides from the headers below. */
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS       50
#define ONE_SHOT_MS   100
#define COMMON_MS     120
#define EXIT_MS       400
#define COMMON_TIMERS 3

struct demo {
    evloop *loop;
    struct timespec start;
    int scale;
    int ticks;
};

/* A timer with a name to print: the event is embedded, no allocation needed. */
struct named_timer {
    struct demo *demo;
    const char *name;
    evloop_event event;
};

static long elapsed_ms(const struct demo *d)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(now.tv_sec - d->start.tv_sec) * 1000 + (now.tv_nsec - d->start.tv_nsec) / 1000000;
}

static struct timeval scaled(const struct demo *d, long ms)
{
    struct timeval tv;

    ms *= d->scale;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

static void on_tick(evloop_socket_t fd, short what, void *arg)
{
    struct demo *d = arg;

    (void)fd;
    (void)what;
    d->ticks++;
    printf("tick %d at %ld ms\n", d->ticks, elapsed_ms(d));
}

static void on_named_timer(evloop_socket_t fd, short what, void *arg)
{
    struct named_timer *t = arg;

    (void)fd;
    (void)what;
    printf("%s at %ld ms\n", t->name, elapsed_ms(t->demo));
}

static int add_timer(evloop_event *ev, const struct timeval *tv)
{
    if (evloop_timer_add(ev, tv) < 0) {
        perror("timers: evloop_timer_add");
        return -1;
    }
    return 0;
}

/* All timers are added here, back to back, so their deadlines count from the
   same moment. */
static int start_timers(struct demo *d, evloop_event *tick, struct named_timer *one_shot,
                        struct named_timer *common)
{
    struct timeval tick_tv = scaled(d, TICK_MS);
    struct timeval one_shot_tv = scaled(d, ONE_SHOT_MS);
    struct timeval common_tv = scaled(d, COMMON_MS);
    struct timeval exit_tv = scaled(d, EXIT_MS);
    const struct timeval *shared = evloop_init_common_timeout(d->loop, &common_tv);
    int i;

    if (!shared) {
        perror("timers: evloop_init_common_timeout");
        return -1;
    }
    if (add_timer(tick, &tick_tv) < 0 || add_timer(&one_shot->event, &one_shot_tv) < 0) return -1;
    for (i = 0; i < COMMON_TIMERS; i++)
        if (add_timer(&common[i].event, shared) < 0) return -1;
    if (evloop_exit(d->loop, &exit_tv) < 0) {
        perror("timers: evloop_exit");
        return -1;
    }
    return 0;
}

/* Assigns every timer; all are embedded in structs, so nothing is allocated. */
static int assign_timers(struct demo *d, evloop_event *tick, struct named_timer *one_shot,
                         struct named_timer *common)
{
    static const char *const names[COMMON_TIMERS] = {"common A", "common B", "common C"};
    int i;

    /* A persistent timer is a timer event with EVLOOP_PERSIST: fd -1, no READ/WRITE. */
    if (evloop_event_assign(tick, d->loop, -1, EVLOOP_PERSIST, on_tick, d)) return -1;
    one_shot->demo = d;
    one_shot->name = "one-shot";
    if (evloop_timer_assign(&one_shot->event, d->loop, on_named_timer, one_shot)) return -1;
    for (i = 0; i < COMMON_TIMERS; i++) {
        common[i].demo = d;
        common[i].name = names[i];
        if (evloop_timer_assign(&common[i].event, d->loop, on_named_timer, &common[i])) return -1;
    }
    return 0;
}

static int run_demo(struct demo *d)
{
    struct named_timer one_shot;
    struct named_timer common[COMMON_TIMERS];
    evloop_event tick;
    int i, rc = 0;

    if (assign_timers(d, &tick, &one_shot, common) < 0) {
        perror("timers: assign");
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &d->start);
    if (start_timers(d, &tick, &one_shot, common) < 0) {
        rc = -1;
    } else if (evloop_dispatch(d->loop) < 0) {
        perror("timers: evloop_dispatch");
        rc = -1;
    } else {
        printf("exit at %ld ms after %d ticks\n", elapsed_ms(d), d->ticks);
    }
    /* The tick is still pending (persistent); the others fired already, and
       deleting an event that is not pending is a harmless no-op. */
    evloop_timer_del(&tick);
    evloop_timer_del(&one_shot.event);
    for (i = 0; i < COMMON_TIMERS; i++) evloop_timer_del(&common[i].event);
    return rc;
}

int main(int argc, char **argv)
{
    struct demo demo;
    char *end = NULL;
    long scale = argc > 1 ? strtol(argv[1], &end, 10) : 1;
    int rc;

    if (argc > 2 || (end && (end == argv[1] || *end != '\0')) || scale < 1 || scale > 100) {
        fprintf(stderr, "usage: %s [SCALE]   (whole number 1..100, default 1)\n", argv[0]);
        return 2;
    }
    /* Line-buffered even into a pipe, so whoever reads our lines gets them in time. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&demo, 0, sizeof demo);
    demo.scale = (int)scale;
    demo.loop = evloop_new();
    if (!demo.loop) {
        perror("timers: evloop_new");
        return 1;
    }
    rc = run_demo(&demo);
    evloop_free(demo.loop);
    return rc < 0 ? 1 : 0;
}
