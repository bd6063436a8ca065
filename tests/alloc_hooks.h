/* alloc_hooks.h - counting allocator hooks shared by the test programs.

   Include before evloop.h (with EVLOOP_IMPLEMENTATION): every allocation of
   the library then goes through these, so a test can count live blocks
   (leaks fail a test even without LeakSanitizer), count allocator calls (the
   steady state must make none), refuse absurd sizes the way a real allocator
   fails, inject ENOMEM, and slow down one thread's allocations (to open a
   race window on purpose). A 16-byte header in front of every block makes
   memory from these hooks handed to libc free() (or the reverse) crash
   instead of passing silently. */
#ifndef EVLOOP_TEST_ALLOC_HOOKS_H
#define EVLOOP_TEST_ALLOC_HOOKS_H

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define EVLOOP_MALLOC(n)     test_malloc(n)
#define EVLOOP_REALLOC(p, n) test_realloc((p), (n))
#define EVLOOP_FREE(p)       test_free(p)

#define TEST_ALLOC_HDR 16
/* Larger requests fail, as they would for real: 4 GiB, or 1 GiB with a
   32-bit size_t. */
#define TEST_ALLOC_MAX (SIZE_MAX / 4 < 0xffffffffu ? SIZE_MAX / 4 : (size_t)0xffffffffu)
static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static long alloc_live;  /* blocks the library holds now */
static long alloc_calls; /* malloc/realloc calls so far */
static int alloc_fail;   /* when set, every allocation fails */
static int alloc_slow;   /* when set, alloc_slow_thread's allocations first sleep 300 ms */
static pthread_t alloc_slow_thread;

static void alloc_maybe_sleep(void)
{
    struct timespec ts = {0, 300000000};
    int slow;
    pthread_mutex_lock(&alloc_lock);
    slow = alloc_slow && pthread_equal(alloc_slow_thread, pthread_self());
    pthread_mutex_unlock(&alloc_lock);
    if (slow) nanosleep(&ts, NULL);
}

static void *test_malloc(size_t n)
{
    unsigned char *p = NULL;
    alloc_maybe_sleep();
    pthread_mutex_lock(&alloc_lock);
    if (!alloc_fail && n <= TEST_ALLOC_MAX) {
        alloc_calls++;
        p = (unsigned char *)malloc(n + TEST_ALLOC_HDR);
        if (p) alloc_live++;
    }
    pthread_mutex_unlock(&alloc_lock);
    if (!p) errno = ENOMEM;
    return p ? p + TEST_ALLOC_HDR : NULL;
}

static void *test_realloc(void *p, size_t n)
{
    unsigned char *q = NULL;
    if (!p) return test_malloc(n);
    alloc_maybe_sleep();
    pthread_mutex_lock(&alloc_lock);
    if (!alloc_fail && n <= TEST_ALLOC_MAX) {
        alloc_calls++;
        q = (unsigned char *)realloc((unsigned char *)p - TEST_ALLOC_HDR, n + TEST_ALLOC_HDR);
    }
    pthread_mutex_unlock(&alloc_lock);
    if (!q) errno = ENOMEM;
    return q ? q + TEST_ALLOC_HDR : NULL;
}

static void test_free(void *p)
{
    if (!p) return;
    pthread_mutex_lock(&alloc_lock);
    alloc_live--;
    pthread_mutex_unlock(&alloc_lock);
    free((unsigned char *)p - TEST_ALLOC_HDR);
}

static long live_blocks(void)
{
    long n;
    pthread_mutex_lock(&alloc_lock);
    n = alloc_live;
    pthread_mutex_unlock(&alloc_lock);
    return n;
}

static long alloc_count(void)
{
    long n;
    pthread_mutex_lock(&alloc_lock);
    n = alloc_calls;
    pthread_mutex_unlock(&alloc_lock);
    return n;
}

/* From now on the calling thread's allocations are slow (on), or none are. */
static inline void set_alloc_slow(int on)
{
    pthread_mutex_lock(&alloc_lock);
    alloc_slow = on;
    alloc_slow_thread = pthread_self();
    pthread_mutex_unlock(&alloc_lock);
}

static void set_alloc_fail(int on)
{
    pthread_mutex_lock(&alloc_lock);
    alloc_fail = on;
    pthread_mutex_unlock(&alloc_lock);
}

#endif
