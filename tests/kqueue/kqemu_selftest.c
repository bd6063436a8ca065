/*
 * Self-test of the kqueue TEST DOUBLE in tests/kqueue/sys/event.h (not part of evloop).
 * Build: cc -std=c99 -Wall -Wextra -Wpedantic -Itests/kqueue tests/kqueue/kqemu_selftest.c
 * Also builds as C++ (-x c++) and with -D_GNU_SOURCE (POLLRDHUP path).
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <sys/event.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);                     \
        }                                                                                          \
    } while (0)

static const struct timespec zero_ts = {0, 0};

static int change(int kq, int fd, int filter, int flags, void *udata)
{
    struct kevent kev;
    EV_SET(&kev, fd, filter, flags, 0, 0, udata);
    return kevent(kq, &kev, 1, NULL, 0, NULL);
}

static int poll_now(int kq, struct kevent *out, int n)
{
    return kevent(kq, NULL, 0, out, n, &zero_ts);
}

static const struct kevent *find(const struct kevent *ev, int n, int filter)
{
    int i;
    for (i = 0; i < n; i++)
        if (ev[i].filter == filter) return &ev[i];
    return NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void test_read_delete_udata(void)
{
    int sv[2], kq = kqueue(), tag = 42;
    struct kevent ev[4];
    CHECK(kq >= 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_ADD, &tag) == 0);
    CHECK(poll_now(kq, ev, 4) == 0);
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK(poll_now(kq, ev, 4) == 1);
    CHECK(ev[0].ident == (uintptr_t)sv[0] && ev[0].filter == EVFILT_READ);
    CHECK(ev[0].data == 1 && !(ev[0].flags & EV_EOF));
    CHECK(ev[0].udata == &tag);
    CHECK(poll_now(kq, ev, 4) == 1); /* level-triggered: still readable */
    CHECK(change(kq, sv[0], EVFILT_READ, EV_DELETE, NULL) == 0);
    CHECK(poll_now(kq, ev, 4) == 0);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_DELETE, NULL) == -1 && errno == ENOENT);
    close(sv[0]);
    close(sv[1]);
    close(kq);
}

struct writer {
    int fd;
};

static void *write_later(void *arg)
{
    struct timespec ts = {0, 30000000};
    nanosleep(&ts, NULL);
    if (write(((struct writer *)arg)->fd, "d", 1) != 1) perror("write");
    return NULL;
}

static void test_clear(void)
{
    int sv[2], kq = kqueue();
    struct kevent ev[4];
    char buf[8];
    struct timespec ts = {0, 30000000};
    struct writer w;
    pthread_t t;
    double t0;
    int n;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, NULL) == 0);
    CHECK(write(sv[1], "a", 1) == 1);
    CHECK(poll_now(kq, ev, 4) == 1 && ev[0].data == 1 && (ev[0].flags & EV_CLEAR));
    CHECK(poll_now(kq, ev, 4) == 0); /* reported once */
    t0 = now_ms();
    CHECK(kevent(kq, NULL, 0, ev, 4, &ts) == 0); /* waits, does not re-report */
    CHECK(now_ms() - t0 >= 30.0);
    CHECK(write(sv[1], "b", 1) == 1);
    CHECK(poll_now(kq, ev, 4) == 1 && ev[0].data == 2); /* more data arrived */
    CHECK(read(sv[0], buf, 1) == 1);
    CHECK(poll_now(kq, ev, 4) == 0); /* partial read is not an edge */
    CHECK(read(sv[0], buf, sizeof buf) == 1);
    CHECK(poll_now(kq, ev, 4) == 0);
    CHECK(write(sv[1], "c", 1) == 1);
    CHECK(poll_now(kq, ev, 4) == 1 && ev[0].data == 1);
    CHECK(change(kq, sv[1], EVFILT_WRITE, EV_ADD | EV_CLEAR, NULL) == 0);
    CHECK(poll_now(kq, ev, 4) == 1 && ev[0].filter == EVFILT_WRITE);
    CHECK(poll_now(kq, ev, 4) == 0);
    /* drained and refilled to the same count between two calls: still an edge
       (the read also frees send space on sv[1]: a WRITE edge, as on BSD) */
    CHECK(read(sv[0], buf, sizeof buf) == 1);
    CHECK(write(sv[1], "c", 1) == 1);
    n = poll_now(kq, ev, 4);
    CHECK(n >= 1 && find(ev, n, EVFILT_READ) && find(ev, n, EVFILT_READ)->data == 1);
    CHECK(poll_now(kq, ev, 4) == 0);
    /* blocked with both knotes already reported: another thread's write wakes it */
    w.fd = sv[1];
    CHECK(pthread_create(&t, NULL, write_later, &w) == 0);
    t0 = now_ms();
    CHECK(kevent(kq, NULL, 0, ev, 4, NULL) == 1 && ev[0].filter == EVFILT_READ && ev[0].data == 2);
    CHECK(now_ms() - t0 >= 25.0);
    pthread_join(t, NULL);
    close(sv[0]);
    close(sv[1]);
    close(kq);
}

static void test_eof(void)
{
    int sv[2], kq = kqueue();
    struct kevent ev[4];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_ADD, NULL) == 0);
    CHECK(shutdown(sv[1], SHUT_WR) == 0);
    CHECK(poll_now(kq, ev, 4) == 1 && (ev[0].flags & EV_EOF) && ev[0].data == 0);
    close(sv[1]);
    CHECK(poll_now(kq, ev, 4) == 1 && (ev[0].flags & EV_EOF));
    close(sv[0]);
    /* full close with data still queued */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, NULL) == 0);
    CHECK(write(sv[1], "xyz", 3) == 3);
    CHECK(poll_now(kq, ev, 4) == 1 && ev[0].data == 3 && !(ev[0].flags & EV_EOF));
    close(sv[1]);
    CHECK(poll_now(kq, ev, 4) == 1 && ev[0].data == 3 && (ev[0].flags & EV_EOF)); /* EOF edge */
    CHECK(poll_now(kq, ev, 4) == 0);
    close(sv[0]);
    close(kq);
}

static void test_errors(void)
{
    int sv[2], kq = kqueue(), closed_fd, old_fd;
    struct kevent ev[4], ch[3];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    closed_fd = sv[1];
    close(sv[1]);
    EV_SET(&ch[0], sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
    EV_SET(&ch[1], closed_fd, EVFILT_READ, EV_ADD, 0, 0, NULL);
    EV_SET(&ch[2], sv[0], EVFILT_WRITE, EV_ADD | EV_RECEIPT, 0, 0, NULL);
    CHECK(kevent(kq, ch, 3, ev, 4, NULL) == 2);
    CHECK(ev[0].ident == (uintptr_t)closed_fd && ev[0].flags == EV_ERROR && ev[0].data == EBADF);
    CHECK(ev[1].filter == EVFILT_WRITE && ev[1].flags == EV_ERROR && ev[1].data == 0);
    CHECK(change(kq, closed_fd, EVFILT_WRITE, EV_ADD, NULL) == -1 && errno == EBADF);
    CHECK(change(kq, sv[0], EVFILT_SIGNAL, EV_ADD, NULL) == -1 && errno == EINVAL);
    CHECK(change(kq, sv[0], 99, EV_ADD, NULL) == -1 && errno == EINVAL);
    CHECK(kevent(kq, NULL, -1, ev, 4, &zero_ts) == -1 && errno == EINVAL);
    CHECK(kevent(kq, NULL, 0, ev, -1, &zero_ts) == -1 && errno == EINVAL);
    CHECK(kevent(sv[0], NULL, 0, ev, 4, &zero_ts) == -1 && errno == EBADF);
    CHECK(kevent(-1, NULL, 0, ev, 4, &zero_ts) == -1 && errno == EBADF);
    /* in-place: the same array for changes and events */
    EV_SET(&ev[0], closed_fd, EVFILT_READ, EV_ADD, 0, 0, NULL);
    EV_SET(&ev[1], sv[0], EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, NULL);
    CHECK(kevent(kq, ev, 2, ev, 2, NULL) == 2 && ev[0].data == EBADF && ev[1].data == 0);
    /* a knote whose fd is closed behind our back disappears silently */
    CHECK(poll_now(kq, ev, 4) == 1 && ev[0].filter == EVFILT_WRITE);
    old_fd = sv[0];
    close(sv[0]);
    CHECK(poll_now(kq, ev, 4) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 && sv[0] == old_fd);
    CHECK(poll_now(kq, ev, 4) == 0); /* the dropped knote does not follow the new fd */
    close(sv[0]);
    close(sv[1]);
    close(kq);
    CHECK(kevent(kq, NULL, 0, ev, 4, &zero_ts) == -1 && errno == EBADF);
}

static void test_oneshot_disable(void)
{
    int sv[2], kq = kqueue();
    struct kevent ev[4];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(change(kq, sv[0], EVFILT_WRITE, EV_ADD | EV_ONESHOT, NULL) == 0);
    CHECK(poll_now(kq, ev, 4) == 1 && (ev[0].flags & EV_ONESHOT));
    CHECK(poll_now(kq, ev, 4) == 0);
    CHECK(change(kq, sv[0], EVFILT_WRITE, EV_DELETE, NULL) == -1 && errno == ENOENT);
    CHECK(change(kq, sv[0], EVFILT_WRITE, EV_ADD | EV_DISABLE, NULL) == 0);
    CHECK(poll_now(kq, ev, 4) == 0);
    CHECK(change(kq, sv[0], EVFILT_WRITE, EV_ENABLE, NULL) == 0);
    CHECK(poll_now(kq, ev, 4) == 1);
    CHECK(change(kq, sv[0], EVFILT_WRITE, EV_DISABLE, NULL) == 0);
    CHECK(poll_now(kq, ev, 4) == 0);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_ENABLE, NULL) == -1 && errno == ENOENT);
    /* READ and WRITE on one fd; one slot at a time must not starve either */
    CHECK(change(kq, sv[0], EVFILT_WRITE, EV_ENABLE, NULL) == 0);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_ADD, NULL) == 0);
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK(poll_now(kq, ev, 4) == 2);
    CHECK(poll_now(kq, &ev[0], 1) == 1 && poll_now(kq, &ev[1], 1) == 1);
    CHECK(ev[0].filter != ev[1].filter);
    close(sv[0]);
    close(sv[1]);
    close(kq);
}

static void test_timeout_and_reuse(void)
{
    int kq = kqueue(), kq2;
    int sv[2];
    struct kevent ev[2];
    struct timespec ts = {0, 50000000};
    double t0 = now_ms();
    CHECK(kevent(kq, NULL, 0, ev, 2, &ts) == 0);
    CHECK(now_ms() - t0 >= 50.0);
    ts.tv_nsec = 1000000000L;
    CHECK(kevent(kq, NULL, 0, ev, 2, &ts) == -1 && errno == EINVAL);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(change(kq, sv[0], EVFILT_WRITE, EV_ADD, NULL) == 0);
    close(kq);
    kq2 = kqueue();
    CHECK(kq2 == kq); /* lowest free number comes back: state must be fresh */
    CHECK(poll_now(kq2, ev, 2) == 0);
    CHECK(change(kq2, sv[0], EVFILT_WRITE, EV_DELETE, NULL) == -1 && errno == ENOENT);
    close(sv[0]);
    close(sv[1]);
    close(kq2);
}

static void test_clear_fallback_and_readd(void)
{
    char path[] = "/tmp/kqemu_selftest.XXXXXX";
    int fd = mkstemp(path), kq = kqueue(), sv[2];
    struct kevent ev[2];
    struct timespec ts = {0, 20000000};
    double t0;
    CHECK(fd >= 0);
    unlink(path);
    CHECK(write(fd, "hello", 5) == 5 && lseek(fd, 0, SEEK_SET) == 0);
    /* epoll refuses regular files (always ready): EV_CLEAR reports once per EV_ADD */
    CHECK(change(kq, fd, EVFILT_READ, EV_ADD | EV_CLEAR, NULL) == 0);
    CHECK(poll_now(kq, ev, 2) == 1 && ev[0].data == 5);
    t0 = now_ms();
    CHECK(kevent(kq, NULL, 0, ev, 2, &ts) == 0);
    CHECK(now_ms() - t0 >= 20.0);
    CHECK(change(kq, fd, EVFILT_READ, EV_ADD | EV_CLEAR, NULL) == 0); /* re-add: reported again */
    CHECK(poll_now(kq, ev, 2) == 1);
    CHECK(change(kq, fd, EVFILT_READ, EV_DELETE, NULL) == 0);
    close(fd);
    /* re-adding an epoll-backed EV_CLEAR knote reports it again; level WRITE is level */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, NULL) == 0);
    CHECK(poll_now(kq, ev, 2) == 1 && poll_now(kq, ev, 2) == 0);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, NULL) == 0);
    CHECK(poll_now(kq, ev, 2) == 1 && poll_now(kq, ev, 2) == 0);
    /* EV_CLEAR is fixed when a knote is made: EV_ADD without it re-arms the
       edge knote; only a new knote is level-triggered */
    CHECK(change(kq, sv[0], EVFILT_READ, EV_ADD, NULL) == 0);
    CHECK(poll_now(kq, ev, 2) == 1 && poll_now(kq, ev, 2) == 0);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_DELETE, NULL) == 0);
    CHECK(change(kq, sv[0], EVFILT_READ, EV_ADD, NULL) == 0);
    CHECK(poll_now(kq, ev, 2) == 1 && poll_now(kq, ev, 2) == 1);
    CHECK(change(kq, sv[1], EVFILT_WRITE, EV_ADD, NULL) == 0);
    CHECK(poll_now(kq, ev, 2) == 2 && poll_now(kq, ev, 2) == 2);
    close(sv[0]);
    close(sv[1]);
    close(kq);
}

static volatile sig_atomic_t got_signal;
static void on_signal(int sig)
{
    (void)sig;
    got_signal = 1;
}

static void *kick(void *arg)
{
    struct timespec ts = {0, 30000000};
    nanosleep(&ts, NULL);
    pthread_kill(*(pthread_t *)arg, SIGUSR1);
    return NULL;
}

static void test_eintr(void)
{
    int kq = kqueue();
    struct kevent ev[1];
    struct sigaction sa;
    pthread_t self = pthread_self(), t;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    CHECK(pthread_create(&t, NULL, kick, &self) == 0);
    CHECK(kevent(kq, NULL, 0, ev, 1, NULL) == -1 && errno == EINTR && got_signal);
    pthread_join(t, NULL);
    close(kq);
}

int main(void)
{
    alarm(30); /* a hang is a failure */
    test_read_delete_udata();
    test_clear();
    test_eof();
    test_errors();
    test_oneshot_disable();
    test_timeout_and_reuse();
    test_clear_fallback_and_readd();
    test_eintr();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
