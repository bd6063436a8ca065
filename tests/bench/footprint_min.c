/* footprint: the smallest useful program, the same for every library: one
   read event on a pipe and one timer, run until both fired. Built -Os; its
   .text minus that of the same program built with -DLIB_NONE (which does
   the pipe work but calls no event library) is the event library's code
   that the program carries. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fired;

#if defined(LIB_EVLOOP)
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

static void cb(evloop_socket_t fd, short what, void *arg)
{
    char c;
    (void)arg;
    if (what & EVLOOP_READ) (void)!read(fd, &c, 1);
    fired++;
}

static int run(int fd)
{
    evloop *loop = evloop_new();
    evloop_event io, tm;
    struct timeval tv = {0, 1000};
    if (!loop) return 1;
    evloop_event_assign(&io, loop, fd, EVLOOP_READ, cb, NULL);
    evloop_timer_assign(&tm, loop, cb, NULL);
    evloop_event_add(&io, NULL);
    evloop_timer_add(&tm, &tv);
    evloop_dispatch(loop);
    evloop_free(loop);
    return 0;
}
#elif defined(LIB_LIBEVENT)
#include <event2/event.h>

static void cb(evutil_socket_t fd, short what, void *arg)
{
    char c;
    (void)arg;
    if (what & EV_READ) (void)!read(fd, &c, 1);
    fired++;
}

static int run(int fd)
{
    struct event_base *base = event_base_new();
    struct event *io, *tm;
    struct timeval tv = {0, 1000};
    if (!base) return 1;
    io = event_new(base, fd, EV_READ, cb, NULL);
    tm = evtimer_new(base, cb, NULL);
    event_add(io, NULL);
    evtimer_add(tm, &tv);
    event_base_dispatch(base);
    event_free(io);
    event_free(tm);
    event_base_free(base);
    return 0;
}
#elif defined(LIB_LIBEV)
#include <ev.h>

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    char c;
    (void)revents;
    (void)!read(w->fd, &c, 1);
    ev_io_stop(loop, w);
    fired++;
}

static void tm_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    fired++;
}

static int run(int fd)
{
    struct ev_loop *loop = ev_loop_new(EVBACKEND_EPOLL);
    ev_io io;
    ev_timer tm;
    if (!loop) return 1;
    ev_io_init(&io, io_cb, fd, EV_READ);
    ev_timer_init(&tm, tm_cb, 0.001, 0.);
    ev_io_start(loop, &io);
    ev_timer_start(loop, &tm);
    ev_run(loop, 0);
    ev_loop_destroy(loop);
    return 0;
}
#elif defined(LIB_LIBUV)
#include <uv.h>

static int the_fd;

static void io_cb(uv_poll_t *h, int status, int events)
{
    char c;
    (void)status;
    (void)events;
    (void)!read(the_fd, &c, 1);
    uv_poll_stop(h);
    fired++;
}

static void tm_cb(uv_timer_t *t)
{
    (void)t;
    fired++;
}

static int run(int fd)
{
    uv_loop_t loop;
    uv_poll_t io;
    uv_timer_t tm;
    the_fd = fd;
    if (uv_loop_init(&loop) != 0) return 1;
    uv_poll_init(&loop, &io, fd);
    uv_timer_init(&loop, &tm);
    uv_poll_start(&io, UV_READABLE, io_cb);
    uv_timer_start(&tm, tm_cb, 1, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&io, NULL);
    uv_close((uv_handle_t *)&tm, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}
#elif defined(LIB_NONE)
static int run(int fd)
{
    char c;
    (void)!read(fd, &c, 1);
    fired += 2;
    return 0;
}
#else
#error "footprint_min: define LIB_EVLOOP, LIB_LIBEVENT, LIB_LIBEV, LIB_LIBUV or LIB_NONE"
#endif

int main(void)
{
    int p[2];
    if (pipe(p) < 0 || write(p[1], "x", 1) != 1) return 1;
    if (run(p[0]) != 0 || fired != 2) {
        fprintf(stderr, "footprint_min: %d of 2 callbacks\n", fired);
        return 1;
    }
    close(p[0]);
    close(p[1]);
    return 0;
}
