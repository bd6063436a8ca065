/* The smallest useful program: one fd event and one timer. Built with each
   EVLOOP_NO_* option to prove they compile, and with -Os to measure size. */
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"
#include <unistd.h>

static void on_event(evloop_socket_t fd, short what, void *arg)
{
    (void)fd;
    *(short *)arg |= what;
}

int main(void)
{
    int fds[2];
    short seen = 0;
    struct timeval tv = {0, 1000};
    evloop *loop = evloop_new();
    evloop_event io, timer;
    if (!loop || pipe(fds) < 0) return 1;
    evloop_event_assign(&io, loop, fds[1], EVLOOP_WRITE, on_event, &seen);
    evloop_timer_assign(&timer, loop, on_event, &seen);
    evloop_event_add(&io, NULL);
    evloop_timer_add(&timer, &tv);
    evloop_dispatch(loop);
    evloop_free(loop);
    close(fds[0]);
    close(fds[1]);
    return seen == (EVLOOP_WRITE | EVLOOP_TIMEOUT) ? 0 : 1;
}
