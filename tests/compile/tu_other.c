/* Compile check: a second translation unit that only includes the header.
   Its calls must link against the implementation in tu_impl.c. */
#include "evloop.h"

int tu_other(void)
{
    evloop *loop = evloop_new();
    evloop_event ev;
    if (!loop) return -1;
    evloop_timer_assign(&ev, loop, (evloop_event_cb)0, 0); /* NULL callback: EINVAL */
    evloop_free(loop);
    return 0;
}
