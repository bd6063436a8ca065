/* Compile check: the translation unit that expands the implementation. */
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

int tu_other(void);

int main(void)
{
    evloop *loop = evloop_new();
    int rc;
    if (!loop) return 1;
    rc = evloop_run(loop, EVLOOP_NONBLOCK) == 1 && tu_other() == 0 ? 0 : 1;
    evloop_free(loop);
    return rc;
}
