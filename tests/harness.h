/* harness.h - a tiny test harness for evloop's tests (test-only, not part of the product).

   The test file defines its tests as plain `static void name(void)` functions
   (TEST(name) is a shorthand), lists them in a table at its bottom

       static const harness_test tests[] = { HARNESS_TEST(first), HARNESS_TEST(second) };

   and calls harness_main(argc, argv, tests, count, "suite-name") from main().

   Each test runs in its own forked child (own process group, stray fds closed,
   default signal dispositions, alarm() as the time limit), so a crash or a hang
   fails that test only. CHECK-style macros record the first failure (file:line
   and the expression) in memory shared with the runner and let the test go on;
   REQUIRE-style macros end the test at once.

   Output: one line a test, `ok   <name>` or `FAIL <name>: <reason>`, then
   `<suite>: N passed, N failed`. Exit status 1 if anything failed.
   Arguments: test names or substrings select tests, "!substring" leaves
   tests out; -l lists the names.
   EVLOOP_TEST_TIMEOUT=<seconds> overrides the default 10 s limit a test.
   EVLOOP_TEST_VERBOSE=1 also prints every failed check to stderr.
   The including file defines _GNU_SOURCE (or _DEFAULT_SOURCE) before any
   system header: the runner uses MAP_ANON, strsignal, dirfd, sigtimedwait. */
#ifndef EVLOOP_TEST_HARNESS_H
#define EVLOOP_TEST_HARNESS_H

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

typedef struct harness_test {
    const char *name;
    void (*fn)(void);
} harness_test;

#define TEST(name) static void name(void)
#define HARNESS_TEST(name)                                                                         \
    {                                                                                              \
#name, name                                                                                \
    }

#if defined(__GNUC__) || defined(__clang__)
#define HARNESS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define HARNESS_NORETURN     __attribute__((noreturn))
#define HARNESS_UNUSED       __attribute__((unused))
#else
#define HARNESS_UNUSED
#define HARNESS_PRINTF(a, b)
#define HARNESS_NORETURN
#endif

/* Lives in a MAP_SHARED page so the runner can read what the child recorded
   even when the child crashed afterwards. */
typedef struct harness_shared {
    int nfail;
    char first[480];
} harness_shared;

static harness_shared *harness__shared;
static pthread_mutex_t harness__lock = PTHREAD_MUTEX_INITIALIZER;

static HARNESS_UNUSED void harness_fail(const char *file, int line, const char *fmt, ...)
    HARNESS_PRINTF(3, 4);
static void harness_fail(const char *file, int line, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&harness__lock);
    if (harness__shared) {
        if (harness__shared->nfail++ == 0)
            snprintf(harness__shared->first, sizeof harness__shared->first, "%s:%d: %s", file, line,
                     msg);
    }
    if (!harness__shared || getenv("EVLOOP_TEST_VERBOSE"))
        fprintf(stderr, "  %s:%d: %s\n", file, line, msg);
    pthread_mutex_unlock(&harness__lock);
}

/* A small deterministic generator for tests that try many combinations:
   advances *state and returns a number in 0..n-1 (n > 0). */
static HARNESS_UNUSED unsigned harness_rand(unsigned *state, unsigned n)
{
    *state = *state * 1103515245u + 12345u;
    return (*state >> 8) % n;
}

/* Number of failed checks so far in this test (lets a test stop early). */
static HARNESS_UNUSED int harness_failed(void)
{
    int n;
    pthread_mutex_lock(&harness__lock);
    n = harness__shared ? harness__shared->nfail : 0;
    pthread_mutex_unlock(&harness__lock);
    return n;
}

/* End the current test now. exit() (not _exit) so LeakSanitizer still runs. */
static HARNESS_UNUSED HARNESS_NORETURN void harness_abort_test(void)
{
    exit(1);
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) harness_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);                  \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            harness_fail(__FILE__, __LINE__, "REQUIRE(%s) failed", #cond);                         \
            harness_abort_test();                                                                  \
        }                                                                                          \
    } while (0)

#define HARNESS__CMP_INT(a, op, b, fatal)                                                          \
    do {                                                                                           \
        long long harness_a_ = (long long)(a), harness_b_ = (long long)(b);                        \
        if (!(harness_a_ op harness_b_)) {                                                         \
            harness_fail(__FILE__, __LINE__, "%s %s %s failed (%lld vs %lld)", #a, #op, #b,        \
                         harness_a_, harness_b_);                                                  \
            if (fatal) harness_abort_test();                                                       \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)   HARNESS__CMP_INT(a, ==, b, 0)
#define CHECK_NE_INT(a, b)   HARNESS__CMP_INT(a, !=, b, 0)
#define CHECK_LT_INT(a, b)   HARNESS__CMP_INT(a, <, b, 0)
#define CHECK_LE_INT(a, b)   HARNESS__CMP_INT(a, <=, b, 0)
#define CHECK_GT_INT(a, b)   HARNESS__CMP_INT(a, >, b, 0)
#define CHECK_GE_INT(a, b)   HARNESS__CMP_INT(a, >=, b, 0)
#define REQUIRE_EQ_INT(a, b) HARNESS__CMP_INT(a, ==, b, 1)

#define CHECK_EQ_PTR(a, b)                                                                         \
    do {                                                                                           \
        const void *harness_a_ = (const void *)(a), *harness_b_ = (const void *)(b);               \
        if (harness_a_ != harness_b_)                                                              \
            harness_fail(__FILE__, __LINE__, "%s == %s failed (%p vs %p)", #a, #b, harness_a_,     \
                         harness_b_);                                                              \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *harness_a_ = (a), *harness_b_ = (b);                                           \
        if (!harness_a_ || !harness_b_ || strcmp(harness_a_, harness_b_) != 0)                     \
            harness_fail(__FILE__, __LINE__, "%s == %s failed (\"%s\" vs \"%s\")", #a, #b,         \
                         harness_a_ ? harness_a_ : "(null)", harness_b_ ? harness_b_ : "(null)");  \
    } while (0)

/* CHECK_ERR(call, E): the call returns -1 and sets errno to E. */
#define CHECK_ERR(call, err)                                                                       \
    do {                                                                                           \
        long long harness_r_;                                                                      \
        int harness_e_;                                                                            \
        errno = 0;                                                                                 \
        harness_r_ = (long long)(call);                                                            \
        harness_e_ = errno;                                                                        \
        if (harness_r_ != -1 || harness_e_ != (err))                                               \
            harness_fail(__FILE__, __LINE__, "%s: expected -1/%s, got %lld/%s", #call, #err,       \
                         harness_r_, strerror(harness_e_));                                        \
    } while (0)

/* CHECK_NULL_ERR(call, E): the call returns NULL and sets errno to E. */
#define CHECK_NULL_ERR(call, err)                                                                  \
    do {                                                                                           \
        const void *harness_p_;                                                                    \
        int harness_e_;                                                                            \
        errno = 0;                                                                                 \
        harness_p_ = (const void *)(call);                                                         \
        harness_e_ = errno;                                                                        \
        if (harness_p_ != NULL || harness_e_ != (err))                                             \
            harness_fail(__FILE__, __LINE__, "%s: expected NULL/%s, got %p/%s", #call, #err,       \
                         harness_p_, strerror(harness_e_));                                        \
    } while (0)

/*== runner ==*/

static void harness__close_stray_fds(void)
{
    int fds[1024], n = 0, i;
    long max;
#ifdef __linux__
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        int dfd = dirfd(d);
        while ((e = readdir(d)) != NULL && n < 1024) {
            int fd = atoi(e->d_name);
            if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd > 2 && fd != dfd) fds[n++] = fd;
        }
        closedir(d);
        for (i = 0; i < n; i++) close(fds[i]);
        if (n < 1024) return;
    }
#endif
    max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (i = 3; i < max; i++) close(i);
}

static void harness__reset_signals(void)
{
    sigset_t none;
    int s;
    for (s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        signal(s, SIG_DFL); /* fails harmlessly for the few that cannot be set */
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static HARNESS_NORETURN void harness__child(const harness_test *t, unsigned timeout)
{
    setpgid(0, 0);
    harness__close_stray_fds();
    harness__reset_signals();
    alarm(timeout);
    t->fn();
    exit(harness__shared->nfail ? 1 : 0);
}

/* Reap descendants left behind (re-parented to us as subreaper), quietly. */
static void harness__reap_strays(pid_t pgid)
{
    int tries;
    if (kill(-pgid, SIGKILL) != 0 && errno == ESRCH) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        return;
    }
    for (tries = 0; tries < 200; tries++) { /* at most ~2 s */
        struct timespec ts = {0, 10 * 1000 * 1000};
        pid_t r = waitpid(-1, NULL, WNOHANG);
        if (r < 0) return; /* ECHILD: none left */
        if (r == 0) nanosleep(&ts, NULL);
    }
}

/* Wait for the test child, killing its group if it outlives timeout + 3 s
   (alarm() in the child is the primary limit; this is the backstop). */
static int harness__wait(pid_t pid, unsigned timeout, int *status, int *killed)
{
    sigset_t chld;
    struct timespec start, now;
    int other;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    clock_gettime(CLOCK_MONOTONIC, &start);
    *killed = 0;
    for (;;) {
        struct timespec wait_ts = {0, 50 * 1000 * 1000};
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) return 0;
        if (r < 0 && errno != EINTR) return -1;
        /* Orphaned grandchildren; the test child may finish meanwhile and
           be reaped here, so keep its status rather than lose it. */
        while ((r = waitpid(-1, &other, WNOHANG)) > 0)
            if (r == pid) {
                *status = other;
                return 0;
            }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!*killed && now.tv_sec - start.tv_sec > (time_t)timeout + 3) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            *killed = 1;
        }
        sigtimedwait(&chld, NULL, &wait_ts);
    }
}

/* Selected: named by no "!substring" argument, and by a plain one if any. */
static int harness__selected(const char *name, int argc, char **argv)
{
    int i, any = 0, hit = 0;
    for (i = 1; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        if (argv[i][0] == '!') {
            if (strstr(name, argv[i] + 1)) return 0;
            continue;
        }
        any = 1;
        if (strstr(name, argv[i])) hit = 1;
    }
    return hit || !any;
}

static int harness_main(int argc, char **argv, const harness_test *tests, size_t ntests,
                        const char *suite)
{
    unsigned timeout = 10;
    const char *env = getenv("EVLOOP_TEST_TIMEOUT");
    size_t i;
    int passed = 0, failed = 0, a;
    sigset_t chld;

    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-l") == 0) {
            for (i = 0; i < ntests; i++) printf("%s\n", tests[i].name);
            return 0;
        }
        if (strcmp(argv[a], "-h") == 0 || strcmp(argv[a], "--help") == 0) {
            printf("usage: %s [-l] [name-or-substring...] [!substring...]\n"
                   "  EVLOOP_TEST_TIMEOUT=<s> per-test time limit (default 10)\n",
                   argv[0]);
            return 0;
        }
    }
    if (env && atoi(env) > 0) timeout = (unsigned)atoi(env);

    harness__shared = (harness_shared *)mmap(NULL, sizeof *harness__shared, PROT_READ | PROT_WRITE,
                                             MAP_SHARED | MAP_ANON, -1, 0);
    if (harness__shared == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
#ifdef __linux__
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); /* so stray grandchildren come back to us */
#endif
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL); /* for sigtimedwait; the child unblocks everything */

    for (i = 0; i < ntests; i++) {
        const harness_test *t = &tests[i];
        int status = 0, killed = 0;
        char reason[600];
        pid_t pid;
        reason[0] = 0;
        if (!harness__selected(t->name, argc, argv)) continue;
        memset(harness__shared, 0, sizeof *harness__shared);
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) harness__child(t, timeout);
        setpgid(pid, pid); /* also done by the child; whichever runs first wins */
        if (harness__wait(pid, timeout, &status, &killed) != 0) {
            snprintf(reason, sizeof reason, "waitpid: %s", strerror(errno));
            status = -1;
        }
        harness__reap_strays(pid);

        if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
            harness__shared->nfail == 0) {
            printf("ok   %s\n", t->name);
            passed++;
            continue;
        }
        if (harness__shared->nfail > 0 && status != -1) {
            if (harness__shared->nfail > 1)
                snprintf(reason, sizeof reason, "%s (+%d more)", harness__shared->first,
                         harness__shared->nfail - 1);
            else
                snprintf(reason, sizeof reason, "%s", harness__shared->first);
        }
        if (status != -1 && WIFSIGNALED(status)) {
            int sig = WTERMSIG(status);
            size_t len = strlen(reason);
            if (sig == SIGALRM || killed)
                snprintf(reason + len, sizeof reason - len, "%stimeout after %u s (signal %d, %s)",
                         len ? "; then " : "", timeout, sig, strsignal(sig));
            else
                snprintf(reason + len, sizeof reason - len, "%skilled by signal %d (%s)",
                         len ? "; then " : "", sig, strsignal(sig));
        } else if (status != -1 && WIFEXITED(status) && harness__shared->nfail == 0) {
            snprintf(reason, sizeof reason, "exited with status %d (see stderr)",
                     WEXITSTATUS(status));
        }
        printf("FAIL %s: %s\n", t->name, reason);
        failed++;
    }
    if (suite && *suite)
        printf("%s: %d passed, %d failed\n", suite, passed, failed);
    else
        printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    return failed ? 1 : 0;
}

#endif /* EVLOOP_TEST_HARNESS_H */
