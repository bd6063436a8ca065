/* The floor: what a hand-written epoll loop does for the same work, with no
   abstraction. An fd is registered once and stays registered (re-arming it
   with the same interest needs nothing from the kernel); the ready list
   points straight at the caller's record. No timers: an fd "with a timeout"
   has no floor here. Wake-ups from another thread: an eventfd plus a flag so
   that sends coalesce, as in libuv and libev.

   Built with -DRAWEPOLL_CTL it is the floor that still tells the kernel at
   every re-arm (one EPOLL_CTL_MOD, as a library must when an event was
   re-assigned and the fd may name another file): it shows what that kernel
   work costs, including the cache it evicts before the processing starts. */
#include <sys/epoll.h>
#include <sys/eventfd.h>

#ifdef RAWEPOLL_CTL
#define AD_NAME "rawepoll-ctl"
#else
#define AD_NAME "rawepoll"
#endif
#define AD_IO_TIMEOUTS 0
#define AD__MAXEV      1024

static int ad__epfd = -1;
static int ad__live; /* registered fds (and the eventfd): 0 ends ad_run */
static int ad__stop;
static struct epoll_event ad__out[AD__MAXEV];

typedef struct {
    int fd, idx, registered;
} ad__rec;

static inline void ad_init(void)
{
    ad__epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ad__epfd < 0) die("epoll_create1");
}

static inline void ad_fini(void)
{
    close(ad__epfd);
}

static inline void ad__ready(ad__rec *r);

static inline void ad__poll(int timeout_ms)
{
    int i, n = epoll_wait(ad__epfd, ad__out, AD__MAXEV, timeout_ms);
    for (i = 0; i < n; i++) ad__ready((ad__rec *)ad__out[i].data.ptr);
}

static inline void ad_run(int keepalive)
{
    ad__stop = 0;
    while (!ad__stop && (ad__live > 0 || keepalive)) ad__poll(-1);
}

static inline void ad_run_nowait(void)
{
    ad__poll(0);
}

static inline void ad_stop(void)
{
    ad__stop = 1;
}

static inline void ad__register(ad__rec *r)
{
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = EPOLLIN;
    e.data.ptr = r;
    if (epoll_ctl(ad__epfd, EPOLL_CTL_ADD, r->fd, &e) < 0) die("epoll_ctl");
    r->registered = 1;
    ad__live++;
}

static inline void ad__unregister(ad__rec *r)
{
    if (!r->registered) return;
    epoll_ctl(ad__epfd, EPOLL_CTL_DEL, r->fd, NULL);
    r->registered = 0;
    ad__live--;
}

#ifdef BENCH_IO
typedef ad__rec ad_io;

static inline void ad_io_init(ad_io *e, int fd, int idx)
{
    e->fd = fd;
    e->idx = idx;
    e->registered = 0;
}

static inline void ad_io_rearm(ad_io *e, int fd, int idx, int64_t timeout_us)
{
    (void)timeout_us;
    e->fd = fd;
    e->idx = idx;
    if (!e->registered) {
        ad__register(e);
    } else {
#ifdef RAWEPOLL_CTL
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.ptr = e;
        if (epoll_ctl(ad__epfd, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl");
#endif
    }
}

static inline void ad_io_stop(ad_io *e)
{
    ad__unregister(e);
}
#endif

#ifdef BENCH_ASYNC
static ad__rec ad__async = {-1, -1, 0};
static int ad__async_pending;

static inline void ad_async_init(void)
{
    ad__async.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ad__async.fd < 0) die("eventfd");
    ad__register(&ad__async);
}

static inline void ad_async_send(void)
{
    uint64_t one = 1;
    if (__atomic_exchange_n(&ad__async_pending, 1, __ATOMIC_ACQ_REL)) return;
    if (write(ad__async.fd, &one, sizeof one) < 0) die("write eventfd");
}

static inline void ad_async_close(void)
{
    ad__unregister(&ad__async);
    close(ad__async.fd);
}
#endif

static inline void ad__ready(ad__rec *r)
{
#ifdef BENCH_ASYNC
    if (r == &ad__async) {
        uint64_t v;
        if (read(r->fd, &v, sizeof v) < 0 && errno != EAGAIN) die("read eventfd");
        __atomic_store_n(&ad__async_pending, 0, __ATOMIC_RELEASE);
        on_async();
        return;
    }
#endif
#ifdef BENCH_IO
    if (r->registered) on_io(r->fd, r->idx);
#else
    (void)r;
#endif
}
