/* Compile check: EVLOOP_STATIC gives each translation unit a private copy,
   so two of them link together without clashing symbols. TU_NAME names the
   entry point of this copy. */
#define EVLOOP_STATIC
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

int TU_NAME(void);

int TU_NAME(void)
{
    evloop *loop = evloop_new();
    int rc;
    if (!loop) return 1;
    rc = evloop_run(loop, 0) == 1 ? 0 : 1;
    evloop_free(loop);
    return rc;
}
