/* libevent 2.1 adapter: the method of libevent's own test/bench.c (event_del,
   event_assign, event_add to re-arm; persistent events whose timeout the
   library restarts). Default event_base (epoll, no changelist flag). Threads
   are enabled (evthread_use_pthreads) only in the async benchmark, which
   needs them for event_active from another thread. */
#include <event2/event.h>
#include <event2/event_struct.h>
#ifdef BENCH_ASYNC
#include <event2/thread.h>
#endif

#define AD_NAME        "libevent"
#define AD_IO_TIMEOUTS 1

static struct event_base *ad_base;

static inline void ad_init(void)
{
#ifdef BENCH_ASYNC
    static int threads_on;
    if (!threads_on && evthread_use_pthreads() < 0) die("evthread_use_pthreads");
    threads_on = 1;
#endif
    ad_base = event_base_new();
    if (!ad_base) die("event_base_new");
}

static inline void ad_fini(void)
{
    event_base_free(ad_base);
}

static inline void ad_run(int keepalive)
{
    event_base_loop(ad_base, keepalive ? EVLOOP_NO_EXIT_ON_EMPTY : 0);
}

static inline void ad_run_nowait(void)
{
    event_base_loop(ad_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static inline void ad_stop(void)
{
    event_base_loopbreak(ad_base);
}

#ifdef BENCH_IO
typedef struct event ad_io;

static void ad__io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    on_io(fd, (int)(intptr_t)arg);
}

static inline void ad_io_init(ad_io *e, int fd, int idx)
{
    if (event_assign(e, ad_base, fd, EV_READ | EV_PERSIST, ad__io_cb, (void *)(intptr_t)idx) < 0)
        die("event_assign");
}

static inline void ad_io_rearm(ad_io *e, int fd, int idx, int64_t timeout_us)
{
    struct timeval tv;
    event_del(e);
    event_assign(e, ad_base, fd, EV_READ | EV_PERSIST, ad__io_cb, (void *)(intptr_t)idx);
    tv.tv_sec = (time_t)(timeout_us / 1000000);
    tv.tv_usec = (suseconds_t)(timeout_us % 1000000);
    if (event_add(e, timeout_us < 0 ? NULL : &tv) < 0) die("event_add");
}

static inline void ad_io_stop(ad_io *e)
{
    event_del(e);
}
#endif

#ifdef BENCH_TIMER
typedef struct event ad_timer;

static void ad__timer_cb(evutil_socket_t fd, short what, void *arg)
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
    evtimer_assign(t, ad_base, ad__timer_cb, (void *)(intptr_t)idx);
    if (evtimer_add(t, &tv) < 0) die("evtimer_add");
}
#endif

#ifdef BENCH_ASYNC
static struct event ad__async_ev;

static void ad__async_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    on_async();
}

static inline void ad_async_init(void)
{
    if (event_assign(&ad__async_ev, ad_base, -1, 0, ad__async_cb, NULL) < 0) die("event_assign");
}

/* Thread-safe with evthread_use_pthreads; an event already active is not
   activated again, so sends coalesce. */
static inline void ad_async_send(void)
{
    event_active(&ad__async_ev, EV_READ, 0);
}

static inline void ad_async_close(void)
{
    event_del(&ad__async_ev);
}
#endif
