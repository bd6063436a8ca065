/* Must NOT compile: only one of the three allocator hooks is given. */
#define EVLOOP_MALLOC(n) malloc(n)
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"
int main(void)
{
    return 0;
}
