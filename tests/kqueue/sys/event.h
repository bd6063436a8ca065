/*
 * tests/kqueue/sys/event.h -- TEST DOUBLE. NOT PART OF EVLOOP.
 *
 * A small emulation of the BSD kqueue API on Linux, so that evloop's kqueue
 * backend can be compiled and tested there. The test build adds -Itests/kqueue
 * so that `#include <sys/event.h>` finds this file. Nothing here is shipped or
 * installed; do not use it outside the tests.
 *
 * Emulated: kqueue(), kevent(), struct kevent, EV_SET; filters EVFILT_READ and
 * EVFILT_WRITE on file descriptors; EV_ADD, EV_DELETE, EV_ENABLE, EV_DISABLE,
 * EV_ONESHOT, EV_CLEAR, EV_RECEIPT; EV_ERROR entries for failed changes
 * (returned without waiting, as BSD does; -1/errno when `events` has no room);
 * EV_EOF; READ data = FIONREAD byte count (1 where FIONREAD fails); EBADF for
 * changes on a closed fd; knotes of a closed fd silently disappear.
 *
 * Not emulated: EVFILT_SIGNAL (declared, but EV_ADD fails with EINVAL), every
 * other filter, EV_DISPATCH, fflags (always 0 on output), WRITE data (always 1,
 * not the free buffer space), fork, several threads in kevent() on one kqueue
 * at once. A knote whose fd is closed and reopened under the same number
 * before the next kevent() call follows the new file (the kernel drops it),
 * until a change names that fd: then it is dropped, as at close, if the fd
 * now names another file (told by st_dev and st_ino).
 *
 * How: the kqueue handle is an epoll descriptor (epoll_create1(0): not
 * close-on-exec until the caller says so); state lives in a table indexed by
 * it and is reset when kqueue() returns the number again. Level-triggered
 * knotes are sampled with poll(2), one pollfd per fd. EV_CLEAR (edge) knotes
 * are registered EPOLLET in that epoll, so a wake-up (new data, EOF, freed
 * send space) makes them reportable once, if still ready when sampled; EV_ADD
 * and EV_ENABLE make them reportable once more, as BSD re-evaluates them. When
 * one fd has EV_CLEAR READ and WRITE knotes they share one registration, and
 * a wake-up counts for both (a new byte also reports a still-writable WRITE
 * knote, as Linux epoll does). Fds epoll refuses (regular files, /dev/null:
 * no poll support, so always ready) are reported once per EV_ADD/EV_ENABLE.
 *
 * The includer must request POSIX (e.g. _POSIX_C_SOURCE 200809L or
 * _GNU_SOURCE) before its first #include. POLLRDHUP (peer shut down its
 * writing side) is used for level-triggered READ knotes only when <poll.h>
 * provides it (_GNU_SOURCE); without it, that EOF shows once the data is
 * drained. kqueue handles are recognised by inode, and epoll shares one
 * anonymous inode with eventfd/timerfd, so a kqueue number closed and reused
 * by one of those is not detected. State is guarded by one mutex, released
 * while blocked in poll().
 */
#ifndef KQEMU_SYS_EVENT_H
#define KQEMU_SYS_EVENT_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct kevent {
    uintptr_t ident;
    short filter;
    unsigned short flags;
    unsigned int fflags;
    intptr_t data;
    void *udata;
};

#define EV_SET(kevp, a, b, c, d, e, f)                                                             \
    do {                                                                                           \
        struct kevent *kqemu_kevp_ = (kevp);                                                       \
        kqemu_kevp_->ident = (uintptr_t)(a);                                                       \
        kqemu_kevp_->filter = (short)(b);                                                          \
        kqemu_kevp_->flags = (unsigned short)(c);                                                  \
        kqemu_kevp_->fflags = (unsigned int)(d);                                                   \
        kqemu_kevp_->data = (intptr_t)(e);                                                         \
        kqemu_kevp_->udata = (f);                                                                  \
    } while (0)

#define EVFILT_READ   (-1)
#define EVFILT_WRITE  (-2)
#define EVFILT_SIGNAL (-6)

#define EV_ADD     0x0001
#define EV_DELETE  0x0002
#define EV_ENABLE  0x0004
#define EV_DISABLE 0x0008
#define EV_ONESHOT 0x0010
#define EV_CLEAR   0x0020
#define EV_RECEIPT 0x0040
#define EV_ERROR   0x4000
#define EV_EOF     0x8000

#ifdef POLLRDHUP
#define KQEMU_POLLRDHUP POLLRDHUP
#else
#define KQEMU_POLLRDHUP 0
#endif
#define KQEMU_MAX_SEC (1L << 30) /* longer timeouts wait this long (34 years) */

struct kqemu_knote {
    uintptr_t ident;
    short filter;
    unsigned short flags; /* EV_CLEAR | EV_ONESHOT */
    void *udata;
    int disabled;
    int gone;     /* to be removed at the end of a scan */
    int pidx;     /* pollfd index during a scan, -1 if not polled */
    int edge;     /* EV_CLEAR: may be reported when next seen ready */
    uint32_t reg; /* epoll mask registered for this fd (same in all its knotes), 0 if none */
    dev_t dev;    /* the file the knote was made for */
    ino_t ino;
};

struct kqemu_queue {
    int live;
    dev_t dev;
    ino_t ino;
    struct kqemu_knote *kn;
    size_t nkn, kn_cap;
    struct pollfd *pfd;
    size_t pfd_cap;
    size_t rot; /* where the next scan starts, so a full `events` does not starve knotes */
};

struct kqemu_state {
    pthread_mutex_t lock;
    struct kqemu_queue *q; /* indexed by the kqueue's descriptor */
    size_t nq;
};

static inline struct kqemu_state *kqemu_global(void)
{
    static struct kqemu_state st = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};
    return &st;
}

static inline void kqemu_reset(struct kqemu_queue *q)
{
    free(q->kn);
    free(q->pfd);
    memset(q, 0, sizeof *q);
}

/* The queue for descriptor kq, or NULL if kq is not a live emulated kqueue. */
static inline struct kqemu_queue *kqemu_get(int kq)
{
    struct kqemu_state *st = kqemu_global();
    struct stat sb;
    if (kq < 0 || (size_t)kq >= st->nq || !st->q[kq].live) return NULL;
    if (fstat(kq, &sb) != 0 || sb.st_dev != st->q[kq].dev || sb.st_ino != st->q[kq].ino) {
        kqemu_reset(&st->q[kq]); /* closed, or reused by something else */
        return NULL;
    }
    return &st->q[kq];
}

static inline int kqueue(void)
{
    struct kqemu_state *st = kqemu_global();
    struct stat sb;
    int fd = epoll_create1(0), err = ENOMEM;
    if (fd < 0) return -1;
    pthread_mutex_lock(&st->lock);
    if (fstat(fd, &sb) != 0) {
        err = errno;
        goto fail;
    }
    if ((size_t)fd >= st->nq) {
        size_t n = st->nq ? st->nq : 16;
        struct kqemu_queue *p;
        while (n <= (size_t)fd) n *= 2;
        p = (struct kqemu_queue *)realloc(st->q, n * sizeof *p);
        if (!p) goto fail;
        memset(p + st->nq, 0, (n - st->nq) * sizeof *p);
        st->q = p;
        st->nq = n;
    }
    kqemu_reset(&st->q[fd]); /* a previous kqueue with this number was close()d */
    st->q[fd].live = 1;
    st->q[fd].dev = sb.st_dev;
    st->q[fd].ino = sb.st_ino;
    pthread_mutex_unlock(&st->lock);
    return fd;
fail:
    pthread_mutex_unlock(&st->lock);
    close(fd);
    errno = err;
    return -1;
}

/* The epoll mask currently registered for ident. */
static inline uint32_t kqemu_reg(const struct kqemu_queue *q, uintptr_t ident)
{
    size_t i;
    for (i = 0; i < q->nkn; i++)
        if (q->kn[i].ident == ident) return q->kn[i].reg;
    return 0;
}

/* Makes kq's epoll registration of ident match its EV_CLEAR knotes (was `have`). */
static inline void kqemu_epsync(struct kqemu_queue *q, int kq, uintptr_t ident, uint32_t have)
{
    struct epoll_event ee;
    uint32_t want = 0;
    size_t i;
    int op, r;
    for (i = 0; i < q->nkn; i++)
        if (q->kn[i].ident == ident && (q->kn[i].flags & EV_CLEAR))
            want |= q->kn[i].filter == EVFILT_READ ? (uint32_t)(EPOLLIN | EPOLLRDHUP) : EPOLLOUT;
    if (want == have) return;
    memset(&ee, 0, sizeof ee);
    ee.events = want | EPOLLET;
    ee.data.fd = (int)ident;
    op = !want ? EPOLL_CTL_DEL : have ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    r = epoll_ctl(kq, op, (int)ident, &ee);
    if (r != 0 && op != EPOLL_CTL_DEL && (errno == ENOENT || errno == EEXIST))
        r = epoll_ctl(kq, op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, (int)ident, &ee);
    if (r != 0) want = 0; /* EPERM: no poll support (regular file), always ready */
    for (i = 0; i < q->nkn; i++)
        if (q->kn[i].ident == ident) q->kn[i].reg = want;
}

static inline void kqemu_drop(struct kqemu_queue *q, int kq, size_t i)
{
    uintptr_t ident = q->kn[i].ident;
    uint32_t have = q->kn[i].reg;
    for (q->nkn--; i < q->nkn; i++) q->kn[i] = q->kn[i + 1];
    kqemu_epsync(q, kq, ident, have);
}

/* Applies one change; returns 0 or the errno value BSD would report. */
static inline int kqemu_apply(struct kqemu_queue *q, int kq, const struct kevent *kev)
{
    struct kqemu_knote *kn;
    size_t i;
    uint32_t have;
    if (kev->filter != EVFILT_READ && kev->filter != EVFILT_WRITE) return EINVAL;
    for (i = 0; i < q->nkn; i++)
        if (q->kn[i].ident == kev->ident && q->kn[i].filter == kev->filter) break;
    if (kev->ident > INT_MAX || fcntl((int)kev->ident, F_GETFD) == -1) {
        if (i < q->nkn) kqemu_drop(q, kq, i); /* the kernel drops knotes on close() */
        return EBADF;
    }
    if (i < q->nkn) {
        struct stat st;
        if (fstat((int)kev->ident, &st) == 0 &&
            (st.st_dev != q->kn[i].dev || st.st_ino != q->kn[i].ino)) {
            kqemu_drop(q, kq, i); /* BSD dropped it when the old file's fd closed */
            i = q->nkn;
        }
    }
    if (kev->flags & EV_DELETE) {
        if (i == q->nkn) return ENOENT;
        kqemu_drop(q, kq, i);
        return 0;
    }
    have = kqemu_reg(q, kev->ident);
    if (i == q->nkn) {
        if (!(kev->flags & EV_ADD)) return ENOENT;
        if (q->nkn == q->kn_cap) {
            size_t n = q->kn_cap ? 2 * q->kn_cap : 8;
            kn = (struct kqemu_knote *)realloc(q->kn, n * sizeof *kn);
            if (!kn) return ENOMEM;
            q->kn = kn;
            q->kn_cap = n;
        }
        kn = &q->kn[q->nkn++];
        memset(kn, 0, sizeof *kn);
        kn->ident = kev->ident;
        kn->filter = kev->filter;
        kn->disabled = (kev->flags & EV_DISABLE) != 0;
        kn->reg = have;
        /* Fixed when the knote is made: BSD's EV_ADD on an existing knote
           changes its udata (and filter data), never EV_CLEAR or EV_ONESHOT. */
        kn->flags = kev->flags & (EV_CLEAR | EV_ONESHOT);
        {
            struct stat st;
            if (fstat((int)kev->ident, &st) == 0) kn->dev = st.st_dev, kn->ino = st.st_ino;
        }
    }
    kn = &q->kn[i];
    if (kev->flags & EV_ADD) kn->udata = kev->udata;
    if (kev->flags & EV_ENABLE)
        kn->disabled = 0;
    else if (kev->flags & EV_DISABLE)
        kn->disabled = 1;
    if (kev->flags & (EV_ADD | EV_ENABLE)) kn->edge = 1; /* BSD re-evaluates the knote */
    kqemu_epsync(q, kq, kev->ident, have);
    return 0;
}

/* Marks the EV_CLEAR knotes that epoll saw a wake-up for since the last call. */
static inline void kqemu_drain(struct kqemu_queue *q, int kq)
{
    struct epoll_event ee[32];
    int i, n;
    size_t k;
    do {
        n = epoll_wait(kq, ee, 32, 0);
        for (i = 0; i < n; i++) {
            for (k = 0; k < q->nkn; k++) {
                struct kqemu_knote *kn = &q->kn[k];
                uint32_t m =
                    kn->filter == EVFILT_READ ? (uint32_t)(EPOLLIN | EPOLLRDHUP) : EPOLLOUT;
                if (kn->ident == (uintptr_t)ee[i].data.fd && (kn->flags & EV_CLEAR) &&
                    (ee[i].events & (m | EPOLLHUP | EPOLLERR)))
                    kn->edge = 1;
            }
        }
    } while (n == 32);
}

/*
 * Fills q->pfd with one entry per fd of the enabled knotes and returns how many.
 * With `armed` (about to block), EV_CLEAR knotes are left out and the kqueue's own
 * epoll fd, readable once a registered fd had a wake-up, is polled instead.
 */
static inline int kqemu_build(struct kqemu_queue *q, int kq, int armed)
{
    size_t i, j, n = 0;
    if (q->pfd_cap < q->nkn + 1) {
        struct pollfd *p = (struct pollfd *)realloc(q->pfd, (q->nkn + 1) * sizeof *p);
        if (!p) return -1;
        q->pfd = p;
        q->pfd_cap = q->nkn + 1;
    }
    for (i = 0; i < q->nkn; i++) {
        struct kqemu_knote *kn = &q->kn[i];
        int rd = kn->filter == EVFILT_READ;
        kn->pidx = -1;
        if (kn->disabled) continue;
        if (armed && (kn->flags & EV_CLEAR)) continue;
        for (j = 0; j < n && q->pfd[j].fd != (int)kn->ident; j++) continue;
        if (j == n) {
            q->pfd[n].fd = (int)kn->ident;
            q->pfd[n].events = 0;
            q->pfd[n++].revents = 0;
        }
        q->pfd[j].events |= rd ? (short)(POLLIN | KQEMU_POLLRDHUP) : (short)POLLOUT;
        kn->pidx = (int)j;
    }
    if (armed) {
        q->pfd[n].fd = kq;
        q->pfd[n].events = POLLIN;
        q->pfd[n++].revents = 0;
    }
    return (int)n;
}

/* For a stream socket polled readable with no bytes queued: has the peer shut down? */
static inline int kqemu_peer_closed(int fd)
{
    int type = 0;
    socklen_t len = sizeof type;
    char c;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return 0;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Level-triggered readiness of kn given its fd's revents; sets *data and *eof. */
static inline int kqemu_level(const struct kqemu_knote *kn, short re, intptr_t *data, int *eof)
{
    int n = 0;
    *data = 1;
    if (kn->filter == EVFILT_WRITE) {
        *eof = (re & (POLLHUP | POLLERR)) != 0;
        return (re & (POLLOUT | POLLHUP | POLLERR)) != 0;
    }
    *eof = (re & (POLLHUP | KQEMU_POLLRDHUP)) != 0;
    if (!(re & (POLLIN | POLLHUP | POLLERR | KQEMU_POLLRDHUP))) return 0;
    if (ioctl((int)kn->ident, FIONREAD, &n) == 0) {
        *data = n;
        if (n == 0 && !*eof && (re & POLLIN)) *eof = kqemu_peer_closed((int)kn->ident);
    }
    return 1;
}

/* Samples every enabled knote without blocking; stores up to max events. */
static inline int kqemu_collect(struct kqemu_queue *q, int kq, struct kevent *events, int max)
{
    size_t k, i, n = q->nkn;
    int nfds, out = 0;
    kqemu_drain(q, kq);
    nfds = kqemu_build(q, kq, 0);
    if (nfds < 0 || (nfds > 0 && poll(q->pfd, (nfds_t)nfds, 0) < 0)) return -1;
    if (q->rot >= n) q->rot = 0;
    for (k = 0; k < n; k++) {
        struct kqemu_knote *kn = &q->kn[i = (q->rot + k) % n];
        struct kevent *ev;
        intptr_t data;
        int eof;
        if (kn->pidx < 0) continue;
        if (q->pfd[kn->pidx].revents & POLLNVAL) {
            kn->gone = 1; /* fd closed behind our back */
            continue;
        }
        if (!kqemu_level(kn, q->pfd[kn->pidx].revents, &data, &eof)) {
            kn->edge = 1; /* for EV_CLEAR, the next readiness is an edge */
            continue;
        }
        if ((kn->flags & EV_CLEAR) && !kn->edge) continue;
        if (out == max) {
            q->rot = i;
            break;
        }
        ev = &events[out++];
        ev->ident = kn->ident;
        ev->filter = kn->filter;
        ev->flags = (unsigned short)(kn->flags | (eof ? EV_EOF : 0));
        ev->fflags = 0;
        ev->data = data;
        ev->udata = kn->udata;
        kn->edge = 0;
        if (kn->flags & EV_ONESHOT) kn->gone = 1;
    }
    if (k == n) q->rot = 0;
    for (i = n; i-- > 0;)
        if (q->kn[i].gone) kqemu_drop(q, kq, i);
    return out;
}

static inline int kevent(int kq, const struct kevent *changes, int nchanges, struct kevent *events,
                         int nevents, const struct timespec *timeout)
{
    struct kqemu_state *st = kqemu_global();
    struct kqemu_queue *q;
    struct timespec deadline, now;
    int i, n, nout = 0, err = 0;
    pthread_mutex_lock(&st->lock);
    q = kqemu_get(kq);
    if (!q) {
        err = EBADF;
        goto out;
    }
    if (nchanges < 0 || nevents < 0) {
        err = EINVAL;
        goto out;
    }
    for (i = 0; i < nchanges; i++) {
        struct kevent kev = changes[i]; /* events may alias changes */
        int e = kqemu_apply(q, kq, &kev);
        if (e == 0 && !(kev.flags & EV_RECEIPT)) continue;
        if (nout == nevents) {
            err = e;
            goto out;
        }
        events[nout] = kev;
        events[nout].flags = EV_ERROR;
        events[nout++].data = e;
    }
    if (nout > 0 || nevents == 0) goto out; /* BSD returns error entries without waiting */
    if (timeout &&
        (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L)) {
        err = EINVAL;
        goto out;
    }
    if (timeout) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout->tv_sec < KQEMU_MAX_SEC ? timeout->tv_sec : KQEMU_MAX_SEC;
        deadline.tv_nsec += timeout->tv_nsec;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    for (;;) {
        struct pollfd *armed = NULL;
        int ms = -1, r;
        if ((n = kqemu_collect(q, kq, events, nevents)) != 0) {
            if (n < 0)
                err = errno;
            else
                nout = n;
            break;
        }
        if (timeout) {
            long long ns;
            clock_gettime(CLOCK_MONOTONIC, &now);
            ns = (long long)(deadline.tv_sec - now.tv_sec) * 1000000000LL +
                 (deadline.tv_nsec - now.tv_nsec);
            if (ns <= 0) break;
            ns = (ns + 999999) / 1000000; /* round up: never wake early */
            ms = ns > INT_MAX ? INT_MAX : (int)ns;
        }
        if ((n = kqemu_build(q, kq, 1)) < 0 ||
            !(armed = (struct pollfd *)malloc((size_t)n * sizeof *armed))) {
            err = ENOMEM;
            break;
        }
        memcpy(armed, q->pfd, (size_t)n * sizeof *armed);
        pthread_mutex_unlock(&st->lock);
        r = poll(armed, (nfds_t)n, ms);
        err = r < 0 ? errno : 0;
        pthread_mutex_lock(&st->lock);
        free(armed);
        if (err) break; /* EINTR included, as on BSD */
        if (!(q = kqemu_get(kq))) {
            err = EBADF;
            break;
        }
    }
out:
    pthread_mutex_unlock(&st->lock);
    if (err) {
        errno = err;
        return -1;
    }
    return nout;
}

#endif /* KQEMU_SYS_EVENT_H */
