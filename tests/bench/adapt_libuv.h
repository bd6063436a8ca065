/* libuv 1.44 adapter. An fd with a timeout is a uv_poll_t plus a uv_timer_t
   (libuv has no fd event with a timeout). A poll handle cannot be re-assigned
   while open, so re-arming is uv_poll_stop + uv_poll_start (and
   uv_timer_stop + uv_timer_start, whose resolution is a millisecond); the
   poll callback restarts the timeout with uv_timer_again. The handles are
   initialized once, outside any timed region. */
#include <uv.h>

#define AD_NAME        "libuv"
#define AD_IO_TIMEOUTS 1

static uv_loop_t ad_loop;

static inline void ad_init(void)
{
    if (uv_loop_init(&ad_loop) != 0) die("uv_loop_init");
}

static inline void ad__close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static inline void ad_fini(void)
{
    uv_walk(&ad_loop, ad__close_walk, NULL);
    uv_run(&ad_loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&ad_loop) != 0) fprintf(stderr, "bench: uv_loop_close: busy\n");
}

/* An open uv_async_t keeps the loop alive by itself. */
static inline void ad_run(int keepalive)
{
    (void)keepalive;
    uv_run(&ad_loop, UV_RUN_DEFAULT);
}

static inline void ad_run_nowait(void)
{
    uv_run(&ad_loop, UV_RUN_NOWAIT);
}

static inline void ad_stop(void)
{
    uv_stop(&ad_loop);
}

#ifdef BENCH_IO
typedef struct {
    uv_poll_t p; /* first: the poll callback gets a pointer to this struct */
    uv_timer_t t;
    int fd;
} ad_io;

static void ad__io_cb(uv_poll_t *h, int status, int events)
{
    ad_io *e = (ad_io *)h;
    (void)status;
    (void)events;
    if (uv_is_active((uv_handle_t *)&e->t)) uv_timer_again(&e->t);
    on_io(e->fd, (int)(intptr_t)h->data);
}

static void ad__io_timeout_cb(uv_timer_t *t)
{
    (void)t;
}

static inline void ad_io_init(ad_io *e, int fd, int idx)
{
    if (uv_poll_init(&ad_loop, &e->p, fd) != 0) die("uv_poll_init");
    if (uv_timer_init(&ad_loop, &e->t) != 0) die("uv_timer_init");
    e->p.data = (void *)(intptr_t)idx;
    e->fd = fd;
}

static inline void ad_io_rearm(ad_io *e, int fd, int idx, int64_t timeout_us)
{
    (void)fd;
    uv_poll_stop(&e->p);
    e->p.data = (void *)(intptr_t)idx;
    if (uv_poll_start(&e->p, UV_READABLE, ad__io_cb) != 0) die("uv_poll_start");
    if (timeout_us >= 0) {
        uint64_t ms = (uint64_t)timeout_us / 1000;
        uv_timer_stop(&e->t);
        uv_timer_start(&e->t, ad__io_timeout_cb, ms, ms);
    }
}

static inline void ad_io_stop(ad_io *e)
{
    uv_poll_stop(&e->p);
    uv_timer_stop(&e->t);
}
#endif

#ifdef BENCH_TIMER
typedef uv_timer_t ad_timer;

static void ad__timer_cb(uv_timer_t *t)
{
    on_timer((int)(intptr_t)t->data);
}

static inline void ad_timer_start(ad_timer *t, int idx, int64_t ms)
{
    uv_timer_init(&ad_loop, t);
    t->data = (void *)(intptr_t)idx;
    if (uv_timer_start(t, ad__timer_cb, (uint64_t)ms, 0) != 0) die("uv_timer_start");
}
#endif

#ifdef BENCH_ASYNC
static uv_async_t ad__async;

static void ad__async_cb(uv_async_t *a)
{
    (void)a;
    on_async();
}

static inline void ad_async_init(void)
{
    if (uv_async_init(&ad_loop, &ad__async, ad__async_cb) != 0) die("uv_async_init");
}

/* Thread-safe; sends before the callback ran coalesce into one call. */
static inline void ad_async_send(void)
{
    uv_async_send(&ad__async);
}

static inline void ad_async_close(void)
{
    uv_close((uv_handle_t *)&ad__async, NULL);
}
#endif
