/* evloop adapter: the libevent-style API, used as bench.c uses libevent
   (del + assign + add to re-arm; a persistent event's timeout restarts inside
   the library each time it fires). Cross-thread work uses evloop_post. */
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

#define AD_NAME        "evloop"
#define AD_IO_TIMEOUTS 1 /* can give an fd event a timeout */
#define AD_HAS_POST    1 /* posts functions itself: no queue needed */

static evloop *ad_loop;

static inline void ad_init(void)
{
    ad_loop = evloop_new();
    if (!ad_loop) die("evloop_new");
}

static inline void ad_fini(void)
{
    evloop_free(ad_loop);
}

static inline void ad_run(int keepalive)
{
    evloop_run(ad_loop, keepalive ? EVLOOP_NO_EXIT_ON_EMPTY : 0);
}

static inline void ad_run_nowait(void)
{
    evloop_run(ad_loop, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static inline void ad_stop(void)
{
    evloop_break(ad_loop);
}

#ifdef BENCH_IO
typedef evloop_event ad_io;

static void ad__io_cb(evloop_socket_t fd, short what, void *arg)
{
    (void)what;
    on_io(fd, (int)(intptr_t)arg);
}

static inline void ad_io_init(ad_io *e, int fd, int idx)
{
    if (evloop_event_assign(e, ad_loop, fd, EVLOOP_READ | EVLOOP_PERSIST, ad__io_cb,
                            (void *)(intptr_t)idx) < 0)
        die("evloop_event_assign");
}

/* timeout_us < 0: no timeout */
static inline void ad_io_rearm(ad_io *e, int fd, int idx, int64_t timeout_us)
{
    struct timeval tv;
    evloop_event_del(e);
    evloop_event_assign(e, ad_loop, fd, EVLOOP_READ | EVLOOP_PERSIST, ad__io_cb,
                        (void *)(intptr_t)idx);
    tv.tv_sec = (time_t)(timeout_us / 1000000);
    tv.tv_usec = (suseconds_t)(timeout_us % 1000000);
    if (evloop_event_add(e, timeout_us < 0 ? NULL : &tv) < 0) die("evloop_event_add");
}

static inline void ad_io_stop(ad_io *e)
{
    evloop_event_del(e);
}
#endif

#ifdef BENCH_TIMER
typedef evloop_event ad_timer;

static void ad__timer_cb(evloop_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    on_timer((int)(intptr_t)arg);
}

static inline void ad_timer_start(ad_timer *t, int idx, int64_t ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000 * 1000);
    evloop_timer_assign(t, ad_loop, ad__timer_cb, (void *)(intptr_t)idx);
    if (evloop_timer_add(t, &tv) < 0) die("evloop_timer_add");
}
#endif

#ifdef BENCH_ASYNC
static inline void ad_post(void (*fn)(void *), void *arg)
{
    if (evloop_post(ad_loop, fn, arg) < 0) die("evloop_post");
}
#endif
