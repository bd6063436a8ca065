/* Allocator hooks: every allocation of the library goes through them. */
#include <stdlib.h>
static long live_blocks;
static void *count_malloc(size_t n)
{
    live_blocks++;
    return malloc(n);
}
static void *count_realloc(void *p, size_t n)
{
    if (!p) live_blocks++;
    return realloc(p, n);
}
static void count_free(void *p)
{
    if (p) live_blocks--;
    free(p);
}
#define EVLOOP_MALLOC(n)     count_malloc(n)
#define EVLOOP_REALLOC(p, n) count_realloc((p), (n))
#define EVLOOP_FREE(p)       count_free(p)
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

static void on_timer(evloop_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

int main(void)
{
    struct timeval tv = {0, 1000};
    evloop *loop = evloop_new();
    if (!loop || live_blocks == 0) return 1;
    evloop_once(loop, -1, 0, on_timer, NULL, &tv);
    evloop_dispatch(loop);
    evloop_free(loop);
    return live_blocks == 0 ? 0 : 1;
}
