/* libev 4.33 adapter: the native API on the epoll backend. An fd with a
   timeout is an ev_io plus an ev_timer. Re-arming is ev_io_stop, ev_io_set,
   ev_io_start (the equivalent of bench.c's del + assign + add) and, with a
   timeout, ev_timer_stop, ev_timer_set, ev_timer_start; the io callback
   restarts the timeout with ev_timer_again, the way libev's manual suggests
   for an inactivity timeout (and what libevent does inside for a persistent
   event with a timeout). */
#include <ev.h>

#define AD_NAME        "libev"
#define AD_IO_TIMEOUTS 1

static struct ev_loop *ad_loop;

static inline void ad_init(void)
{
    ad_loop = ev_loop_new(EVBACKEND_EPOLL);
    if (!ad_loop) die("ev_loop_new");
}

static inline void ad_fini(void)
{
    ev_loop_destroy(ad_loop);
}

/* An active ev_async keeps the loop alive by itself. */
static inline void ad_run(int keepalive)
{
    (void)keepalive;
    ev_run(ad_loop, 0);
}

static inline void ad_run_nowait(void)
{
    ev_run(ad_loop, EVRUN_NOWAIT);
}

static inline void ad_stop(void)
{
    ev_break(ad_loop, EVBREAK_ALL);
}

#ifdef BENCH_IO
typedef struct {
    ev_io io; /* first: the io callback gets a pointer to this struct */
    ev_timer tm;
} ad_io;

static void ad__io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    ad_io *e = (ad_io *)w;
    (void)revents;
    if (ev_is_active(&e->tm)) ev_timer_again(loop, &e->tm);
    on_io(w->fd, (int)(intptr_t)w->data);
}

static void ad__io_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static inline void ad_io_init(ad_io *e, int fd, int idx)
{
    ev_io_init(&e->io, ad__io_cb, fd, EV_READ);
    e->io.data = (void *)(intptr_t)idx;
    ev_timer_init(&e->tm, ad__io_timeout_cb, 0., 0.);
}

static inline void ad_io_rearm(ad_io *e, int fd, int idx, int64_t timeout_us)
{
    ev_io_stop(ad_loop, &e->io);
    ev_io_set(&e->io, fd, EV_READ);
    e->io.data = (void *)(intptr_t)idx;
    ev_io_start(ad_loop, &e->io);
    if (timeout_us >= 0) {
        ev_tstamp t = (ev_tstamp)timeout_us * 1e-6;
        ev_timer_stop(ad_loop, &e->tm);
        ev_timer_set(&e->tm, t, t);
        ev_timer_start(ad_loop, &e->tm);
    }
}

static inline void ad_io_stop(ad_io *e)
{
    ev_io_stop(ad_loop, &e->io);
    ev_timer_stop(ad_loop, &e->tm);
}
#endif

#ifdef BENCH_TIMER
typedef ev_timer ad_timer;

static void ad__timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    on_timer((int)(intptr_t)w->data);
}

static inline void ad_timer_start(ad_timer *t, int idx, int64_t ms)
{
    ev_timer_init(t, ad__timer_cb, (ev_tstamp)ms * 1e-3, 0.);
    t->data = (void *)(intptr_t)idx;
    ev_timer_start(ad_loop, t);
}
#endif

#ifdef BENCH_ASYNC
static ev_async ad__async;

static void ad__async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    on_async();
}

static inline void ad_async_init(void)
{
    ev_async_init(&ad__async, ad__async_cb);
    ev_async_start(ad_loop, &ad__async);
}

/* Thread-safe; sends before the callback ran coalesce into one call. */
static inline void ad_async_send(void)
{
    ev_async_send(ad_loop, &ad__async);
}

static inline void ad_async_close(void)
{
    ev_async_stop(ad_loop, &ad__async);
}
#endif
