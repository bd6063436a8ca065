/* footprint: the bytes a program spends per "fd with a timeout" in each
   library: evloop_event; struct event; ev_io + ev_timer; uv_poll_t +
   uv_timer_t. Prints "R footprint <lib> <types> bytes <n>". */
#include <stdio.h>

#if defined(LIB_EVLOOP)
#include "evloop.h"
#define NAME  "evloop"
#define TYPES "evloop_event"
#define SIZE  sizeof(evloop_event)
#elif defined(LIB_LIBEVENT)
#include <event2/event_struct.h>
#define NAME  "libevent"
#define TYPES "struct_event"
#define SIZE  sizeof(struct event)
#elif defined(LIB_LIBEV)
#include <ev.h>
#define NAME  "libev"
#define TYPES "ev_io+ev_timer"
#define SIZE  (sizeof(ev_io) + sizeof(ev_timer))
#elif defined(LIB_LIBUV)
#include <uv.h>
#define NAME  "libuv"
#define TYPES "uv_poll_t+uv_timer_t"
#define SIZE  (sizeof(uv_poll_t) + sizeof(uv_timer_t))
#else
#error "footprint_sizeof: define LIB_EVLOOP, LIB_LIBEVENT, LIB_LIBEV or LIB_LIBUV"
#endif

int main(void)
{
    printf("R footprint %s sizeof:%s bytes %zu\n", NAME, TYPES, (size_t)SIZE);
    return 0;
}
