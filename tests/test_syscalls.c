/* test_syscalls.c - the change list, seen from the kernel's side.

   Built twice: with -DEVLOOP_BACKEND_EPOLL it counts epoll_ctl calls, with
   -DEVLOOP_BACKEND_KQUEUE (over the test double in tests/kqueue) it counts
   kevent calls. The counting wrapper replaces the system call's name before
   evloop.h is expanded, so every call the library makes goes through it.

   What must hold:
   - epoll: the first add of an fd registers it at once (one call); deleting
     and re-adding between two waits costs nothing; re-assigning an event
     (the fd may be a new file) costs one call; a delete that is still in
     force at the next wait costs one call then.
   - kqueue: changes ride in the kevent call that waits: one call a round. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static int sys_calls;

#if defined(EVLOOP_BACKEND_EPOLL)
#include <sys/epoll.h>
static int counting_epoll_ctl(int epfd, int op, int fd, struct epoll_event *e)
{
    sys_calls++;
    return epoll_ctl(epfd, op, fd, e);
}
#define epoll_ctl(epfd, op, fd, e) counting_epoll_ctl(epfd, op, fd, e)
#elif defined(EVLOOP_BACKEND_KQUEUE)
#include <sys/event.h>
static int counting_kevent(int kq, const struct kevent *ch, int nch, struct kevent *ev, int nev,
                           const struct timespec *ts)
{
    sys_calls++;
    return kevent(kq, ch, nch, ev, nev, ts);
}
/* Function-like, so `struct kevent` keeps its name. */
#define kevent(kq, ch, nch, ev, nev, ts) counting_kevent(kq, ch, nch, ev, nev, ts)
#else
#error "build with -DEVLOOP_BACKEND_EPOLL or -DEVLOOP_BACKEND_KQUEUE"
#endif

#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

static int passed, failed;

static void expect(int cond, const char *what, int calls)
{
    printf("%s %s (calls: %d)\n", cond ? "ok  " : "FAIL", what, calls);
    if (cond)
        passed++;
    else
        failed++;
}

static void on_read(evloop_socket_t fd, short what, void *arg)
{
    char c;
    (void)what;
    if (read(fd, &c, 1) == 1) ++*(int *)arg;
}

/* Run one non-blocking round and report how many calls it made. */
static int round_calls(evloop *loop)
{
    int before = sys_calls;
    evloop_run(loop, EVLOOP_NONBLOCK);
    return sys_calls - before;
}

static int calls_of(int before)
{
    return sys_calls - before;
}

int main(void)
{
    int sv[2], fired = 0, before, epoll = 0;
    evloop *loop = evloop_new();
    evloop_event ev, anchor;
    struct timeval ten_sec = {10, 0};
    if (!loop || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return 1;
    epoll = evloop_backend(loop)[0] == 'e';
    evloop_event_assign(&ev, loop, sv[0], EVLOOP_READ | EVLOOP_PERSIST, on_read, &fired);
    /* A far timer keeps the loop from being empty, so every round waits. */
    evloop_timer_assign(&anchor, loop, on_read, &fired);
    evloop_timer_add(&anchor, &ten_sec);

    before = sys_calls;
    evloop_event_add(&ev, NULL);
    if (epoll) {
        expect(calls_of(before) == 1, "first add registers the fd at once", calls_of(before));
    } else {
        expect(calls_of(before) == 0, "first add waits for the next kevent", calls_of(before));
        before = round_calls(loop);
        expect(before == 1, "the add rides in the waiting kevent call", before);
    }

    before = sys_calls;
    evloop_event_del(&ev);
    evloop_event_add(&ev, NULL);
    expect(calls_of(before) == 0, "delete + add makes no call", calls_of(before));
    before = round_calls(loop);
    expect(before == (epoll ? 0 : 1), "and the next round makes none beyond the wait", before);

    (void)!write(sv[1], "x", 1);
    before = round_calls(loop);
    expect(fired == 1, "the event still fires after delete + add", before);

    before = sys_calls;
    evloop_event_del(&ev);
    evloop_event_assign(&ev, loop, sv[0], EVLOOP_READ | EVLOOP_PERSIST, on_read, &fired);
    evloop_event_add(&ev, NULL);
    expect(calls_of(before) == (epoll ? 1 : 0), "delete + assign + add checks the fd once",
           calls_of(before));

    evloop_event_del(&ev);
    before = round_calls(loop);
    expect(before == 1, "a delete still in force at the wait costs one call then", before);

    (void)!write(sv[1], "y", 1);
    evloop_run(loop, EVLOOP_NONBLOCK);
    expect(fired == 1, "a deleted event does not fire", 0);

    evloop_free(loop);
    close(sv[0]);
    close(sv[1]);
    printf("%s: %d passed, %d failed\n", epoll ? "syscalls-epoll" : "syscalls-kqueue", passed,
           failed);
    return failed != 0;
}
