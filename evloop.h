/* evloop.h - a single-header event loop for C and C++.             version 0.1.0

   evloop is a reactor in the class of libevent, libev and libuv: read and
   write events on file descriptors, timers on a 4-ary heap, POSIX signal
   events, priorities and cross-thread posting, over one kernel backend chosen
   at compile time (epoll on Linux, kqueue on the BSDs and macOS, poll or
   select elsewhere). The API mirrors libevent 2.x with an `evloop_` prefix.

USAGE

   In exactly one C or C++ file of your program:

       #define EVLOOP_IMPLEMENTATION
       #include "evloop.h"

   Everywhere else, include "evloop.h" plainly. Link with -pthread unless you
   define EVLOOP_NO_THREADS.

EXAMPLE

       static void on_tick(evloop_socket_t fd, short what, void *arg)
       {
           (void)fd; (void)what;
           printf("tick %d\n", ++*(int *)arg);
       }

       int main(void)
       {
           int ticks = 0;
           struct timeval second = {1, 0};
           evloop *loop = evloop_new();
           evloop_event *tick = evloop_event_new(loop, -1, EVLOOP_PERSIST, on_tick, &ticks);
           evloop_event_add(tick, &second);
           evloop_dispatch(loop);           // runs until evloop_exit or nothing is left
           evloop_event_free(tick);
           evloop_free(loop);
       }

OPTIONS

   Define these before including the header. "every file" options must be the
   same in every file that includes evloop.h; the others matter only in the
   file that defines EVLOOP_IMPLEMENTATION.

   EVLOOP_IMPLEMENTATION      (one file)  expand the implementation here
   EVLOOP_STATIC              (every file) make every function static: a
                              private copy in each implementation file
   EVLOOP_BACKEND_EPOLL,
   EVLOOP_BACKEND_KQUEUE,
   EVLOOP_BACKEND_POLL,
   EVLOOP_BACKEND_SELECT      (impl. file) force a backend; default: epoll on
                              Linux, kqueue on FreeBSD/OpenBSD/NetBSD/DragonFly
                              and macOS, poll elsewhere. Defining two is an error.
   EVLOOP_MALLOC(n), EVLOOP_REALLOC(p, n), EVLOOP_FREE(p)
                              (impl. file) allocator hooks: all three or none
   EVLOOP_ASSERT(x)           (impl. file) internal invariant checks
                              (default: assert from <assert.h>)
   EVLOOP_NO_SIGNALS          (every file) leave signal events out: no global
                              state, no signal handlers
   EVLOOP_NO_THREADS          (every file) leave evloop_post out and build
                              without pthread; evloop_exit and evloop_break
                              are then not thread-safe
   EVLOOP_NO_TSC              (impl. file) never use the x86 cycle counter to
                              time a burst of adds (see TIME)
   EVLOOP_NO_STDIO            (every file) leave evloop_dump_events and
                              evloop_buffer_add_printf out (no <stdio.h>)
   EVLOOP_NO_STREAMS          (every file) leave the networking layer out:
                              buffers, streams, the listener, socket utilities

   A build optimized for size (-Os, __OPTIMIZE_SIZE__) keeps only the general
   code paths: no inlined short paths for the common cases and no cycle
   counter. It behaves the same with some 600 bytes less code.

BACKENDS

   epoll   Interest changes are collected and applied just before each wait,
           only where they differ from what the kernel has, so deleting and
           re-adding an event between two waits costs no system call. Regular
           files cannot be watched: adding one fails with EPERM.
   kqueue  Changes ride in the same kevent() call that waits.
   poll    Portable; EVLOOP_ET and EVLOOP_CLOSED are not reported.
   select  Like poll; descriptors >= FD_SETSIZE are refused with EINVAL.

   On every backend the first add of a descriptor checks it right away, so a
   closed descriptor fails with EBADF at add time. If you close a descriptor
   and get the same number back, assign its events again (evloop_event_assign)
   before adding them: that tells evloop the kernel object is new.

   Signals and evloop_post share one internal descriptor (an eventfd on Linux,
   a pipe elsewhere). All internal descriptors are close-on-exec.

ERRORS

   Functions that can fail return -1 (or NULL) and set errno, and leave the
   loop and the event as they were. Beyond the kernel's own errors:
   EINVAL   bad flags or bits, malformed timeval (negative, or tv_usec out of
            range), READ/WRITE with fd < 0, signal number out of range, NULL
            callback, priority out of range, an event never assigned, an
            fd event whose EVLOOP_ET differs from the fd's other events
   EBADF    adding a closed descriptor (checked at the first add)
   EPERM    adding a regular file under epoll
   EBUSY    a second loop adding a signal another loop watches; evloop_run
            from inside a callback of the same loop; evloop_priority_init
            while events are pending; evloop_event_priority_set on an event
            whose callback is queued
   ENOMEM   allocation failed; more than 256 common timeouts

   Several events may watch one descriptor; they must agree on EVLOOP_ET
   (adding one that differs fails with EINVAL, as in libevent), because the
   kernel has one mode for the descriptor. Signal callbacks get the
   signal number as fd and EVLOOP_SIGNAL as what. evloop_event_active runs
   the callback once with what == res (ncalls is accepted for libevent
   compatibility). Events are not copied: an evloop_event must stay where it
   is while it is pending.

   Priorities: 0 is the most important. Each round runs the queued callbacks
   of the most important non-empty priority (those queued before the round
   began), then polls again. A callback that makes a more important event
   active ends the round when it returns, so that event runs before the rest
   of the round's priority, as in libevent.

TIME

   Timers run on CLOCK_MONOTONIC in nanoseconds. The loop reads the clock once
   per round, after waiting. A timeout counts from a reading taken when it is
   added, so timers never fire early. On x86 with an invariant TSC, adds in
   quick succession (within ~2 us) carry the last reading forward with the
   cycle counter instead of calling the clock again; such a timeout may start
   a few tens of ns after the add returns, never before the call
   (EVLOOP_NO_TSC or -Os: always call the clock). Equal timeouts expire in
   the order they were added. Timeouts beyond about 100 years are clamped.

LICENSE

   MIT; see the end of this file.
*/

#ifndef EVLOOP_H
#define EVLOOP_H

/* The implementation needs POSIX (sigaction, clock_gettime, pthread). Under a
   strict -std=c99 these must be asked for before the first system header, so
   include evloop.h first in the implementation file, or define them yourself. */
#if defined(EVLOOP_IMPLEMENTATION) && !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) &&      \
    !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE) &&                 \
    !defined(__APPLE__)
#define _DEFAULT_SOURCE 1
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdint.h>
#include <sys/time.h>
#ifndef EVLOOP_NO_STREAMS
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#endif
#ifndef EVLOOP_NO_STDIO
#include <stdio.h>
#endif

#define EVLOOP_VERSION_MAJOR  0
#define EVLOOP_VERSION_MINOR  1
#define EVLOOP_VERSION_PATCH  0
#define EVLOOP_VERSION_STRING "0.1.0"

#ifdef EVLOOP_STATIC
#define EVLOOP_DEF static
#else
#define EVLOOP_DEF extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*== TYPES AND FLAGS ==*/

typedef int evloop_socket_t;
typedef struct evloop evloop;
typedef struct evloop_event evloop_event;
typedef void (*evloop_event_cb)(evloop_socket_t fd, short what, void *arg);
typedef int (*evloop_foreach_cb)(const evloop *loop, const evloop_event *ev, void *arg);

#define EVLOOP_TIMEOUT 0x01 /* a timer expired */
#define EVLOOP_READ    0x02 /* the descriptor is readable */
#define EVLOOP_WRITE   0x04 /* the descriptor is writable */
#define EVLOOP_SIGNAL  0x08 /* a signal arrived */
#define EVLOOP_PERSIST 0x10 /* stay pending after firing */
#define EVLOOP_ET      0x20 /* edge-triggered, where the backend has it */
#define EVLOOP_CLOSED  0x80 /* the peer hung up, where the backend can tell */

#define EVLOOP_ONCE             0x01 /* run until something fired and was handled */
#define EVLOOP_NONBLOCK         0x02 /* do not wait: run what is ready (a round a priority at most) */
#define EVLOOP_NO_EXIT_ON_EMPTY 0x04 /* keep running when nothing is pending */

/* An event. The type is complete so it can be embedded in your own structs,
   but its fields are private: use the functions below. 48 bytes on LP64. */
struct evloop_event {
    evloop *loop;
    evloop_event_cb cb;
    void *arg;
    int64_t timeout;      /* restart interval in ns, or a no-timeout/common-queue code */
    evloop_socket_t fd;   /* descriptor, or signal number */
    int timer_idx;        /* slot in the timer heap or common queue, -1 if none */
    int active_idx;       /* slot in the active queue, -1 if not active */
    unsigned char events; /* what the user asked for (every EVLOOP_ bit fits in 8) */
    unsigned char res;    /* what fired, while active */
    unsigned char flags;
    unsigned char priority;
};

/*== THE LOOP ==*/

EVLOOP_DEF const char *evloop_version(void); /* "0.1.0" */

EVLOOP_DEF evloop *evloop_new(void); /* NULL and errno on failure */
/* Deletes every pending event (their memory stays yours) and frees what
   evloop_once allocated. */
EVLOOP_DEF void evloop_free(evloop *loop);
EVLOOP_DEF const char *evloop_backend(const evloop *loop); /* "epoll", "kqueue", "poll", "select" */
/* 1..256 priority levels; call before adding events. EBUSY if events are pending. */
EVLOOP_DEF int evloop_priority_init(evloop *loop, int npriorities);
/* In a child after fork(): rebuild kernel state, keep every event. */
EVLOOP_DEF int evloop_reinit(evloop *loop);

/* 0: exited by exit/break or ONCE/NONBLOCK done; 1: nothing left; -1: error. */
EVLOOP_DEF int evloop_run(evloop *loop, int flags);
EVLOOP_DEF int evloop_dispatch(evloop *loop); /* evloop_run(loop, 0) */
/* Stop after delay (NULL: once this round of callbacks is done; with no run
   in progress, after the next run's first round); of several delays the
   earliest counts. Thread-safe. */
EVLOOP_DEF int evloop_exit(evloop *loop, const struct timeval *delay);
EVLOOP_DEF int evloop_break(evloop *loop); /* stop after the running callback. Thread-safe. */
EVLOOP_DEF int evloop_got_exit(evloop *loop);
EVLOOP_DEF int evloop_got_break(evloop *loop);

/* Wall-clock time as of the start of this round (no system call after the first). */
EVLOOP_DEF int evloop_gettimeofday_cached(evloop *loop, struct timeval *tv);
EVLOOP_DEF int evloop_update_cache_time(evloop *loop); /* re-read the clocks now */
EVLOOP_DEF evloop_event *evloop_get_running_event(evloop *loop);

/* A duration that evloop_event_add recognizes: events added with it share an
   O(1) FIFO queue instead of the heap. At most 256 per loop. */
EVLOOP_DEF const struct timeval *evloop_init_common_timeout(evloop *loop,
                                                            const struct timeval *duration);
/* Fire cb once (fd, timer, or both), then free the bookkeeping. */
EVLOOP_DEF int evloop_once(evloop *loop, evloop_socket_t fd, short what, evloop_event_cb cb,
                           void *arg, const struct timeval *timeout);
/* Visit each pending or active event once; stop at the first non-zero return. */
EVLOOP_DEF int evloop_foreach_event(evloop *loop, evloop_foreach_cb fn, void *arg);
#ifndef EVLOOP_NO_STDIO
EVLOOP_DEF void evloop_dump_events(evloop *loop, FILE *out); /* one line an event */
#endif
#ifndef EVLOOP_NO_THREADS
/* Run fn(arg) on the loop's thread soon, in FIFO order. Thread-safe;
   lock-free while fewer than 1024 posts wait, then through a locked queue
   (after yielding the CPU once, so a loop on the same CPU can catch up). */
EVLOOP_DEF int evloop_post(evloop *loop, void (*fn)(void *arg), void *arg);
#endif

/*== EVENTS ==*/

EVLOOP_DEF int evloop_event_assign(evloop_event *ev, evloop *loop, evloop_socket_t fd, short what,
                                   evloop_event_cb cb, void *arg);
EVLOOP_DEF evloop_event *evloop_event_new(evloop *loop, evloop_socket_t fd, short what,
                                          evloop_event_cb cb, void *arg);
EVLOOP_DEF void evloop_event_free(evloop_event *ev); /* deletes first if pending */
/* Make pending; timeout NULL: none. Re-adding replaces the timeout. */
EVLOOP_DEF int evloop_event_add(evloop_event *ev, const struct timeval *timeout);
EVLOOP_DEF int evloop_event_del(evloop_event *ev); /* also cancels a queued callback */
EVLOOP_DEF int evloop_event_remove_timer(evloop_event *ev);
EVLOOP_DEF void evloop_event_active(evloop_event *ev, int res, short ncalls);
EVLOOP_DEF int evloop_event_priority_set(evloop_event *ev, int priority);
/* The bits of `what` that are pending or active; tv_out gets the expiry (wall clock). */
EVLOOP_DEF int evloop_event_pending(const evloop_event *ev, short what, struct timeval *tv_out);
EVLOOP_DEF int evloop_event_initialized(const evloop_event *ev);

EVLOOP_DEF evloop_socket_t evloop_event_get_fd(const evloop_event *ev);
EVLOOP_DEF evloop *evloop_event_get_loop(const evloop_event *ev);
EVLOOP_DEF short evloop_event_get_events(const evloop_event *ev);
EVLOOP_DEF evloop_event_cb evloop_event_get_callback(const evloop_event *ev);
EVLOOP_DEF void *evloop_event_get_callback_arg(const evloop_event *ev);
EVLOOP_DEF int evloop_event_get_priority(const evloop_event *ev);

#define evloop_timer_assign(ev, loop, cb, arg) evloop_event_assign((ev), (loop), -1, 0, (cb), (arg))
#define evloop_timer_new(loop, cb, arg)        evloop_event_new((loop), -1, 0, (cb), (arg))
#define evloop_timer_add(ev, tv)               evloop_event_add((ev), (tv))
#define evloop_timer_del(ev)                   evloop_event_del(ev)
#define evloop_timer_pending(ev, tv)           evloop_event_pending((ev), EVLOOP_TIMEOUT, (tv))
#define evloop_signal_assign(ev, loop, signum, cb, arg)                                            \
    evloop_event_assign((ev), (loop), (signum), EVLOOP_SIGNAL | EVLOOP_PERSIST, (cb), (arg))
#define evloop_signal_new(loop, signum, cb, arg)                                                   \
    evloop_event_new((loop), (signum), EVLOOP_SIGNAL | EVLOOP_PERSIST, (cb), (arg))
#define evloop_signal_add(ev, tv) evloop_event_add((ev), (tv))
#define evloop_signal_del(ev)     evloop_event_del(ev)

/*== BUFFERS, STREAMS AND THE LISTENER ==*/

/* The networking layer, libevent's evbuffer / bufferevent / evconnlistener
   under evloop names. Leave it out with EVLOOP_NO_STREAMS (every file).

   evloop_buffer is a queue of bytes kept as a chain of chunks: adding,
   removing and moving whole buffers does not copy in the common case.
   evloop_stream pairs a socket with an input and an output buffer and runs
   your callbacks as data arrives and drains; evloop_listener accepts
   connections. Functions that can fail return -1 (or NULL) and set errno;
   EINVAL for a NULL object or a bad argument. Free streams and listeners
   before their loop. As in libevent, a socket is closed on free only with the
   CLOSE_ON_FREE option or flag, also one that connect or new_bind made. */
#ifndef EVLOOP_NO_STREAMS

#if defined(__GNUC__) || defined(__clang__)
#define EVLOOP__FORMAT(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define EVLOOP__FORMAT(fmt, args)
#endif

/* Buffers. Sizes that would overflow fail with EOVERFLOW; counts returned as
   int are clamped to INT_MAX (a call moves at most that much). */
typedef struct evloop_buffer evloop_buffer;

enum evloop_eol_style {
    EVLOOP_EOL_ANY,         /* any run of CR and LF characters */
    EVLOOP_EOL_CRLF,        /* LF, optionally preceded by CR */
    EVLOOP_EOL_CRLF_STRICT, /* exactly CR LF */
    EVLOOP_EOL_LF,          /* exactly LF */
    EVLOOP_EOL_NUL          /* a NUL byte */
};

EVLOOP_DEF evloop_buffer *evloop_buffer_new(void);
/* Frees buf and its bytes. Does nothing for a stream's own buffers. */
EVLOOP_DEF void evloop_buffer_free(evloop_buffer *buf);
EVLOOP_DEF size_t evloop_buffer_get_length(const evloop_buffer *buf);               /* 0 for NULL */
EVLOOP_DEF int evloop_buffer_add(evloop_buffer *buf, const void *data, size_t len); /* copies */
#ifndef EVLOOP_NO_STDIO
/* Appends printf-formatted text (no NUL); returns the bytes added. */
EVLOOP_DEF int evloop_buffer_add_printf(evloop_buffer *buf, const char *fmt, ...)
    EVLOOP__FORMAT(2, 3);
EVLOOP_DEF int evloop_buffer_add_vprintf(evloop_buffer *buf, const char *fmt, va_list ap)
    EVLOOP__FORMAT(2, 0);
#endif
/* Moves all of src to the end of dst (chunks change owner, bytes are not copied). */
EVLOOP_DEF int evloop_buffer_add_buffer(evloop_buffer *dst, evloop_buffer *src);
/* Moves up to len bytes from the front into data; returns how many. */
EVLOOP_DEF int evloop_buffer_remove(evloop_buffer *buf, void *data, size_t len);
/* Copies up to len bytes from the front into data, leaving them; returns how many. */
EVLOOP_DEF int evloop_buffer_copyout(const evloop_buffer *buf, void *data, size_t len);
EVLOOP_DEF int evloop_buffer_drain(evloop_buffer *buf, size_t len); /* drops up to len bytes */
/* Makes the first size bytes contiguous (-1: all) and returns them. NULL when
   the buffer holds fewer (EINVAL), is empty, or memory runs out (ENOMEM). */
EVLOOP_DEF unsigned char *evloop_buffer_pullup(evloop_buffer *buf, long size);
/* Offset of the first occurrence of what[0..len), or -1 if there is none. */
EVLOOP_DEF long evloop_buffer_find(const evloop_buffer *buf, const void *what, size_t len);
/* Removes the first line and returns it NUL-terminated without its EOL (free
   it with evloop_mem_free); *n_read (if not NULL) gets its length. NULL
   (errno 0) while no complete line is there. */
EVLOOP_DEF char *evloop_buffer_readln(evloop_buffer *buf, size_t *n_read,
                                      enum evloop_eol_style eol);
EVLOOP_DEF void evloop_mem_free(void *p); /* releases what evloop_buffer_readln returned */
/* One read from fd into buf, at most howmuch bytes (negative: what one call
   can take, about 64 KiB). Returns the bytes read, 0 at end of file, -1 with
   errno (EAGAIN when nothing is there). howmuch 0 is EINVAL. */
EVLOOP_DEF int evloop_buffer_read(evloop_buffer *buf, evloop_socket_t fd, int howmuch);
/* One write of buf's front to fd, never raising SIGPIPE (send with
   MSG_NOSIGNAL on a socket; on a pipe the signal is held back for the call);
   drains and returns what went, -1 with errno (EAGAIN, EPIPE...). */
EVLOOP_DEF int evloop_buffer_write(evloop_buffer *buf, evloop_socket_t fd);

/* Streams: a socket with an input and an output buffer. */
typedef struct evloop_stream evloop_stream;
typedef void (*evloop_stream_data_cb)(evloop_stream *s, void *arg);
typedef void (*evloop_stream_event_cb)(evloop_stream *s, short what, void *arg);

#define EVLOOP_STREAM_CLOSE_ON_FREE 0x01 /* option: evloop_stream_free closes the socket */

#define EVLOOP_STREAM_READING   0x01 /* event: happened while reading */
#define EVLOOP_STREAM_WRITING   0x02 /* event: happened while writing */
#define EVLOOP_STREAM_EOF       0x10 /* event: the peer closed its side (once, after the data) */
#define EVLOOP_STREAM_ERROR     0x20 /* event: a socket error; errno tells which */
#define EVLOOP_STREAM_TIMEOUT   0x40 /* event: no progress in time; that direction is disabled */
#define EVLOOP_STREAM_CONNECTED 0x80 /* event: evloop_stream_connect completed */

/* fd: a connected socket (made non-blocking here), or -1 to connect later.
   Writing starts enabled, reading disabled. */
EVLOOP_DEF evloop_stream *evloop_stream_new(evloop *loop, evloop_socket_t fd, int options);
/* Safe inside the stream's own callbacks. Output still queued gets one last
   non-blocking write; the socket is closed with EVLOOP_STREAM_CLOSE_ON_FREE. */
EVLOOP_DEF void evloop_stream_free(evloop_stream *s);
EVLOOP_DEF void evloop_stream_setcb(evloop_stream *s, evloop_stream_data_cb readcb,
                                    evloop_stream_data_cb writecb, evloop_stream_event_cb eventcb,
                                    void *arg);
EVLOOP_DEF int evloop_stream_enable(evloop_stream *s, short what); /* EVLOOP_READ|EVLOOP_WRITE */
EVLOOP_DEF int evloop_stream_disable(evloop_stream *s, short what);
EVLOOP_DEF short evloop_stream_get_enabled(const evloop_stream *s);
EVLOOP_DEF evloop_buffer *evloop_stream_get_input(evloop_stream *s);  /* yours to drain */
EVLOOP_DEF evloop_buffer *evloop_stream_get_output(evloop_stream *s); /* yours to fill */
/* Queue data for the socket. -1/ENOBUFS (nothing queued) if it would take the
   output past the write high watermark. */
EVLOOP_DEF int evloop_stream_write(evloop_stream *s, const void *data, size_t len);
EVLOOP_DEF int evloop_stream_write_buffer(evloop_stream *s, evloop_buffer *buf); /* moves all */
EVLOOP_DEF size_t evloop_stream_read(evloop_stream *s, void *data, size_t len);
/* events: EVLOOP_READ and/or EVLOOP_WRITE. Read: the read callback waits for
   lowmark bytes; reading pauses while the input holds highmark (0: no limit).
   Write: the write callback runs when the output drains to lowmark; highmark
   (0: none) bounds what evloop_stream_write accepts. */
EVLOOP_DEF void evloop_stream_setwatermark(evloop_stream *s, short events, size_t lowmark,
                                           size_t highmark);
/* Time allowed without progress (NULL or {0,0}: none). The write timeout also
   bounds a connect. */
EVLOOP_DEF int evloop_stream_set_timeouts(evloop_stream *s, const struct timeval *read_tv,
                                          const struct timeval *write_tv);
/* Non-blocking connect (makes the socket if the stream has none). Returns 0
   and reports CONNECTED or ERROR (errno set) through the event callback; -1
   only for a bad argument or when no socket can be made. */
EVLOOP_DEF int evloop_stream_connect(evloop_stream *s, const struct sockaddr *sa, int socklen);
EVLOOP_DEF evloop_socket_t evloop_stream_get_fd(const evloop_stream *s);

/* Listener: accepts connections and hands each new fd (non-blocking,
   close-on-exec) to the callback. */
typedef struct evloop_listener evloop_listener;
typedef void (*evloop_listener_cb)(evloop_listener *l, evloop_socket_t fd, struct sockaddr *addr,
                                   int socklen, void *arg);

#define EVLOOP_LISTENER_CLOSE_ON_FREE  0x02 /* evloop_listener_free closes the socket */
#define EVLOOP_LISTENER_REUSEABLE      0x08 /* SO_REUSEADDR (new_bind) */
#define EVLOOP_LISTENER_DISABLED       0x20 /* start disabled: call evloop_listener_enable */
#define EVLOOP_LISTENER_REUSEABLE_PORT 0x40 /* SO_REUSEPORT (new_bind) */

/* Wraps a bound socket: backlog > 0 calls listen(backlog), < 0 listen with a
   default, 0 means it listens already. */
EVLOOP_DEF evloop_listener *evloop_listener_new(evloop *loop, evloop_listener_cb cb, void *arg,
                                                unsigned flags, int backlog, evloop_socket_t fd);
/* Makes, binds and listens on a socket for sa (backlog <= 0: a default). */
EVLOOP_DEF evloop_listener *evloop_listener_new_bind(evloop *loop, evloop_listener_cb cb, void *arg,
                                                     unsigned flags, int backlog,
                                                     const struct sockaddr *sa, int socklen);
EVLOOP_DEF void evloop_listener_free(evloop_listener *l); /* safe inside its callback */
EVLOOP_DEF int evloop_listener_enable(evloop_listener *l);
EVLOOP_DEF int evloop_listener_disable(evloop_listener *l);
EVLOOP_DEF evloop_socket_t evloop_listener_get_fd(const evloop_listener *l);

/* Socket utilities. */
EVLOOP_DEF int evloop_make_socket_nonblocking(evloop_socket_t fd);
EVLOOP_DEF int evloop_make_socket_closeonexec(evloop_socket_t fd);
EVLOOP_DEF int evloop_socketpair(int family, int type, int protocol, evloop_socket_t fds[2]);

#endif /* EVLOOP_NO_STREAMS */

#ifdef __cplusplus
}
#endif
#endif /* EVLOOP_H */

/* ======================================================================== */
/*                              IMPLEMENTATION                              */
/* ======================================================================== */

#if defined(EVLOOP_IMPLEMENTATION) && !defined(EVLOOP__IMPLEMENTED)
#define EVLOOP__IMPLEMENTED

/*== CONFIGURATION ==*/

#if defined(EVLOOP_MALLOC) && defined(EVLOOP_REALLOC) && defined(EVLOOP_FREE)
/* all three hooks given */
#elif !defined(EVLOOP_MALLOC) && !defined(EVLOOP_REALLOC) && !defined(EVLOOP_FREE)
#include <stdlib.h>
#define EVLOOP_MALLOC(n)     malloc(n)
#define EVLOOP_REALLOC(p, n) realloc((p), (n))
#define EVLOOP_FREE(p)       free(p)
#else
#error "evloop: define all of EVLOOP_MALLOC, EVLOOP_REALLOC and EVLOOP_FREE, or none"
#endif

#ifndef EVLOOP_ASSERT
#include <assert.h>
#define EVLOOP_ASSERT(x) assert(x)
#endif

#if !defined(EVLOOP_BACKEND_EPOLL) && !defined(EVLOOP_BACKEND_KQUEUE) &&                           \
    !defined(EVLOOP_BACKEND_POLL) && !defined(EVLOOP_BACKEND_SELECT)
#if defined(__linux__)
#define EVLOOP_BACKEND_EPOLL
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__) || \
    defined(__DragonFly__)
#define EVLOOP_BACKEND_KQUEUE
#else
#define EVLOOP_BACKEND_POLL
#endif
#endif

#if (defined(EVLOOP_BACKEND_EPOLL) + defined(EVLOOP_BACKEND_KQUEUE) +                              \
     defined(EVLOOP_BACKEND_POLL) + defined(EVLOOP_BACKEND_SELECT)) != 1
#error "evloop: define at most one EVLOOP_BACKEND_*"
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if !defined(EVLOOP_NO_SIGNALS) || !defined(EVLOOP_NO_STREAMS)
#include <signal.h>
#endif
#ifndef EVLOOP_NO_THREADS
#include <pthread.h>
#include <sched.h>
#endif
#ifndef EVLOOP_NO_SIGNALS
#if defined(NSIG)
#define EVLOOP__NSIG NSIG
#elif defined(_NSIG)
#define EVLOOP__NSIG _NSIG
#else
#define EVLOOP__NSIG 65
#endif
#endif
#if defined(__linux__)
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#define EVLOOP__HAVE_EVENTFD 1
#endif

/* Helpers only some backends use, and a static API the program calls in
   part, must not trip -Wunused-function. */
#if defined(__GNUC__)
#define EVLOOP__MAYBE_UNUSED __attribute__((unused))
#else
#define EVLOOP__MAYBE_UNUSED
#endif

/* The small steps of re-arming and activating an event are folded into
   their callers: a call each would cost more in saved registers than the
   step itself. Short paths that repeat what a general path does, for its
   commonest case, are tested with `if (EVLOOP__SHORT_PATHS && ...)`. When
   optimizing for size (-Os) neither is done: a call is smaller, and the
   general paths give the same results. */
#if defined(__GNUC__) && !defined(__OPTIMIZE_SIZE__)
#define EVLOOP__HOT static inline __attribute__((always_inline))
#else
#define EVLOOP__HOT static
#endif
#ifdef __OPTIMIZE_SIZE__
#define EVLOOP__SHORT_PATHS 0
#else
#define EVLOOP__SHORT_PATHS 1
#endif

#ifdef EVLOOP_STATIC
#define EVLOOP__API static EVLOOP__MAYBE_UNUSED
#else
#define EVLOOP__API
#endif

/* Flags shared with another thread or a signal handler. The GNU builtins work
   in C99 and C++ with both gcc and clang; elsewhere volatile has to do. */
#if defined(__GNUC__)
#define EVLOOP__ATOMIC_OK 1
#endif

/*== PRIVATE TYPES ==*/

enum {
    EVLOOP__F_INIT = 0x01,     /* assigned */
    EVLOOP__F_IO = 0x02,       /* on its fd's list */
    EVLOOP__F_SIG = 0x04,      /* on its signal's list */
    EVLOOP__F_NEWFD = 0x08,    /* assigned since last added: make the backend look again */
    EVLOOP__F_INTERNAL = 0x10, /* the loop's own: callback runs at once, never listed */
    EVLOOP__F_COMMON = 0x20    /* stands in the heap for a common-timeout queue */
};

#define EVLOOP__IO_BITS     (EVLOOP_READ | EVLOOP_WRITE | EVLOOP_CLOSED)
#define EVLOOP__FD_BITS     (EVLOOP__IO_BITS | EVLOOP_ET)
#define EVLOOP__ALL_BITS    (EVLOOP__FD_BITS | EVLOOP_TIMEOUT | EVLOOP_SIGNAL | EVLOOP_PERSIST)
#define EVLOOP__KMASK_STALE 0x100u /* or-ed into an "old" mask: the fd may name a new file */
#define EVLOOP__NO_TIMEOUT  (-1)   /* ev->timeout: no timer; <= -2: common queue -(code + 2) */
#define EVLOOP__NS          INT64_C(1000000000)
#define EVLOOP__MAX_NS      (INT64_C(100) * 366 * 86400 * EVLOOP__NS) /* ~100 years */
#define EVLOOP__MAX_COMMON  256
/* A common-timeout timeval carries this tag and its queue index in tv_usec,
   above the 20 bits that hold the microseconds. */
#define EVLOOP__COMMON_TAG  0x40000000L
#define EVLOOP__COMMON_MASK 0x70000000L

/* The events on one fd (or one signal), in the order they were added. Most
   fds have one or two: a lone event sits in place, a second one moves the
   list to an array that is then kept for reuse, since streams add and delete
   their write event all the time. Keeping the list here and not as a link in
   each event is what lets an event fit in 48 bytes. */
typedef struct evloop__fdinfo {
    union {
        evloop_event *one;   /* capl == 0 */
        evloop_event **many; /* capl > 0: room for 1 << capl */
    } evs;
    int n;
    unsigned char capl;
    unsigned char kmask;  /* interest the backend has now */
    unsigned char queued; /* on the change list */
    unsigned char ready;  /* kqueue: bits gathered from one batch */
#ifdef EVLOOP_BACKEND_EPOLL
    unsigned gen; /* epoll: generation of the fd's registration, in its data */
#endif
} evloop__fdinfo;

typedef struct evloop__timer {
    int64_t at; /* deadline, cached beside the pointer so sifting stays in the array */
    evloop_event *ev;
} evloop__timer;

/* Events sharing one duration expire in the order they were added, so a ring
   is a sorted queue: O(1) push at the tail, pop at the head. Removal from the
   middle leaves a hole that is skipped or compacted away. */
typedef struct evloop__common {
    int64_t duration;
    struct timeval tv; /* what evloop_init_common_timeout handed out */
    evloop__timer *ring;
    int head, count, cap, holes;
    evloop_event head_ev; /* sits in the heap at the first entry's deadline */
} evloop__common;

typedef struct evloop__queue {
    evloop_event **q;
    int n, cap;
} evloop__queue;

typedef struct evloop__once {
    evloop_event ev;
    evloop_event_cb cb;
    void *arg;
    struct evloop__once *prev, *next;
} evloop__once;

#ifndef EVLOOP_NO_THREADS
typedef struct evloop__post {
    void (*fn)(void *);
    void *arg;
} evloop__post;

/* Posting goes through a ring of EVLOOP__RING_SLOTS slots (a power of two)
   while it has room, and through a growable array under the lock when it is
   full. Positions count in steps of 2, so bit 0 of the claim counter is free
   to say "the ring is closed: post to the array". */
#define EVLOOP__RING_SLOTS 1024
#define EVLOOP__OVERFLOW   1u
#define EVLOOP__LINE       64 /* cache line size, for padding */

/* A slot's seq says whose turn it is: position p may claim it when seq == p,
   and it holds p's post when seq == p + 1. The loop hands it to the next lap
   with seq = p + 2 * EVLOOP__RING_SLOTS. Padded to 32 bytes so that, with the
   ring aligned, no slot spans two cache lines. */
typedef struct evloop__slot {
    void (*fn)(void *);
    void *arg;
    unsigned seq;
    char spare[32 - sizeof(void (*)(void *)) - sizeof(void *) - sizeof(unsigned)];
} evloop__slot;
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(EVLOOP_NO_TSC) &&  \
    !defined(__OPTIMIZE_SIZE__)
#include <cpuid.h>
#define EVLOOP__HAVE_TSC   1
#define EVLOOP__TSC_WINDOW 4096 /* cycles a clock reading is carried: ~2 us at 2 GHz */
typedef struct evloop__tsc {
    uint64_t at;     /* the counter, read just before the clock reading ns */
    int64_t ns;      /* the last clock reading evloop__stamp took */
    uint64_t cal_at; /* where the measurement of the counter's rate started */
    int64_t cal_ns;
    uint64_t mult; /* ns per cycle << 20, rounded up; 0 while not known */
    int usable;    /* the CPU says the counter keeps one rate */
} evloop__tsc;
#endif

/*== BACKEND STATE ==*/

#if defined(EVLOOP_BACKEND_EPOLL)
#include <sys/epoll.h>
typedef struct evloop__backend {
    int epfd;
    int cap;
    int stale; /* rebuild the set: a report came from a registration nothing
                  here owns (or the last rebuild failed) */
    struct epoll_event *out;
} evloop__backend;
#elif defined(EVLOOP_BACKEND_KQUEUE)
#include <sys/types.h>
#include <sys/event.h>
typedef struct evloop__backend {
    int kq;
    int nchanges, changes_cap, out_cap;
    struct kevent *changes, *out;
} evloop__backend;
#elif defined(EVLOOP_BACKEND_POLL)
#include <poll.h>
typedef struct evloop__backend {
    struct pollfd *pfds;
    int n, cap;
    int *slot; /* fd -> index in pfds, -1 if absent */
    int slot_cap;
} evloop__backend;
#else
#include <sys/select.h>
typedef struct evloop__backend {
    fd_set rd, wr;
    int maxfd;
} evloop__backend;
#endif

struct evloop {
    int64_t now;   /* monotonic ns, read once per round */
    int64_t wall;  /* wall ns at `now`, valid if wall_ok */
    int64_t stamp; /* the last start of a timeout (evloop__stamp) */
#ifdef EVLOOP__HAVE_TSC
    evloop__tsc tsc;
#endif
    evloop__fdinfo *fds;
    int nfds;
    int *changes;
    int nchanges, changes_cap;
    evloop__timer *heap;
    int nheap, heap_cap, heap_warm; /* slots below heap_warm are faulted in */
    evloop__common **commons;
    int ncommons;
    evloop__queue *active;
    int npri;
    int nactive;  /* queued callbacks, all priorities */
    int run_prio; /* priority whose callbacks are running (0 between rounds); -1: a more
                     important callback was queued, so the round stops */
    int nlive;    /* user events pending or active */
    evloop_event *running;
    evloop__once *onces;
    unsigned char in_run, wall_ok, time_stale;
#ifndef EVLOOP_NO_THREADS
    /* An exit asked while no run was in progress, or from another thread:
       monotonic ns, -1 if none. The loop's thread takes it (under lock) when
       its run starts, or from a post; see evloop_exit. */
    int64_t exit_at;
#endif
    unsigned got_exit, got_break; /* written from other threads: atomics */
    int wake_rd, wake_wr;         /* wakeup descriptor(s); equal for an eventfd */
    evloop_event wake_ev, exit_ev;
    evloop__backend be;
#ifndef EVLOOP_NO_SIGNALS
    evloop__fdinfo sigs[EVLOOP__NSIG]; /* only the event lists are used */
    int nsigs;
#endif
#ifndef EVLOOP_NO_THREADS
    /* The loop's side of posting: only its thread touches these. */
    unsigned post_head;  /* next ring position to run */
    evloop__post *batch; /* overflow taken from the posters, being run */
    int nbatch, batch_pos, batch_cap;
    /* The posters' side. Every post writes here, so it sits between two
       cache lines of padding: sharing a line with fields the loop writes in
       every round (time_stale, nactive, ...) would move that line between
       the cores on every post. */
    char post_gap0[EVLOOP__LINE];
    unsigned post_tail; /* next position to claim, | EVLOOP__OVERFLOW */
    unsigned wake_sent; /* a wakeup is in flight */
    evloop__slot *ring; /* aligned inside ring_mem; NULL until the first post */
    void *ring_mem;
    pthread_mutex_t lock; /* guards posts, owner, in_run, ring_mem */
    pthread_t owner;      /* thread inside evloop_run, valid if in_run */
    evloop__post *posts;  /* overflow: posts made while the ring was closed */
    int nposts, posts_cap;
    char post_gap1[EVLOOP__LINE];
#endif
};

/*== SMALL HELPERS ==*/

/* The words other threads touch (the exit and break flags, the posting
   protocol's counters) go through these, all sequentially consistent: the
   posting protocol's wakeup check is a store followed by a load on each side
   (a poster claims a position, then reads wake_sent; the loop clears
   wake_sent, then reads the claim counter), which only such operations keep
   in order. The loads, the ones on hot paths, compile to plain loads on x86
   and ARMv8. Without the GNU builtins the posting ring is never made: every
   post takes the lock, and volatile has to do for what is read unlocked. */
static unsigned evloop__load(const unsigned *p)
{
#ifdef EVLOOP__ATOMIC_OK
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
#else
    return *(const volatile unsigned *)p;
#endif
}

static void evloop__store(unsigned *p, unsigned v)
{
#ifdef EVLOOP__ATOMIC_OK
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
#else
    *(volatile unsigned *)p = v;
#endif
}

EVLOOP__MAYBE_UNUSED static unsigned evloop__exchange(unsigned *p, unsigned v)
{
#ifdef EVLOOP__ATOMIC_OK
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
#else
    unsigned old = *(volatile unsigned *)p;
    *(volatile unsigned *)p = v;
    return old;
#endif
}

static int evloop__fail(int err)
{
    errno = err;
    return -1;
}

/* Grow an array to hold at least `need` elements, doubling. Returns the new
   block (the old one stays valid on failure, which returns NULL). */
static void *evloop__grow(void *p, int *cap, int need, size_t elem)
{
    size_t n = *cap ? (size_t)*cap : 8;
    void *np;
    while (n < (size_t)need && n <= (size_t)INT_MAX) n *= 2;
    if (need < 0 || n > (size_t)INT_MAX || n > SIZE_MAX / elem) {
        errno = ENOMEM;
        return NULL;
    }
    np = EVLOOP_REALLOC(p, n * elem);
    if (!np) {
        errno = ENOMEM;
        return NULL;
    }
    *cap = (int)n;
    return np;
}

static int64_t evloop__clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * EVLOOP__NS + ts.tv_nsec;
}

static void evloop__update_time(evloop *loop)
{
    loop->now = evloop__clock(CLOCK_MONOTONIC);
    loop->time_stale = 0;
    loop->wall_ok = 0;
}

/* The cached time is exact only between a wakeup and the first callback;
   after that (or outside evloop_run) read the clock, so that a timeout
   counts from the moment it is set and never fires early. */
static int64_t evloop__now(const evloop *loop)
{
    return loop->time_stale ? evloop__clock(CLOCK_MONOTONIC) : loop->now;
}

#ifdef EVLOOP__HAVE_TSC
/* The counter must tick at one rate whatever the CPU's speed (CPUID's
   "invariant TSC"), or carrying a clock reading forward by it means nothing. */
static int evloop__tsc_usable(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8));
}

/* A fresh clock reading ns, taken just after the counter read tsc: the base
   for the next carries, and a point to measure the counter's rate from. The
   rate is measured over 1 to 100 ms (longer could span a suspend, where the
   two part ways) and rounded up by 1/1024 (far above the measurement's own
   error), so a carried reading errs late, never early. */
static void evloop__tsc_learn(evloop *loop, uint64_t tsc, int64_t ns)
{
    evloop__tsc *k = &loop->tsc;
    int64_t span = ns - k->cal_ns;
    k->at = tsc;
    k->ns = ns;
    if (k->mult || !k->usable) return;
    if (!k->cal_ns || span > 100000000 || tsc <= k->cal_at) {
        k->cal_at = tsc; /* (re)start the measurement */
        k->cal_ns = ns;
    } else if (span >= 1000000) {
        double per = (double)span / (double)(tsc - k->cal_at); /* ns per cycle */
        if (per < 0.05 || per > 2.0)
            k->usable = 0; /* not a 0.5-20 GHz counter: do not trust it */
        else
            k->mult = (uint64_t)(per * (1.0 + 1.0 / 1024) * 1048576.0) + 1;
    }
}
#endif

/* Where a new timeout starts counting: never before the moment of the call,
   so the timeout never fires early, and later than every start handed out
   before, so equal timeouts expire in the order they were set even where
   the clock can read the same twice. On x86, a clock reading less than
   EVLOOP__TSC_WINDOW cycles old is carried forward by the cycles counted
   since (from the counter read before the clock, at a rate rounded up: late
   by about one clock call at most, never early): a burst of adds pays a
   clock call (~25 ns under a hypervisor) per window, not per add. */
static int64_t evloop__stamp(evloop *loop)
{
    int64_t t;
#ifdef EVLOOP__HAVE_TSC
    uint64_t tsc = __builtin_ia32_rdtsc(), d = tsc - loop->tsc.at;
    if (loop->tsc.mult && d < EVLOOP__TSC_WINDOW) {
        t = loop->tsc.ns + (int64_t)((d * loop->tsc.mult) >> 20);
    } else {
        t = evloop__clock(CLOCK_MONOTONIC);
        evloop__tsc_learn(loop, tsc, t);
    }
#else
    t = evloop__clock(CLOCK_MONOTONIC);
#endif
    if (t <= loop->stamp) t = loop->stamp + 1;
    return loop->stamp = t;
}

static int evloop__tv_valid(const struct timeval *tv)
{
    return tv->tv_sec >= 0 && tv->tv_usec >= 0 && tv->tv_usec < 1000000;
}

static int64_t evloop__tv_to_ns(const struct timeval *tv)
{
    int64_t max_sec = EVLOOP__MAX_NS / EVLOOP__NS;
    if ((int64_t)tv->tv_sec >= max_sec) return EVLOOP__MAX_NS;
    return (int64_t)tv->tv_sec * EVLOOP__NS + (int64_t)tv->tv_usec * 1000;
}

static void evloop__ns_to_tv(int64_t ns, struct timeval *tv)
{
    tv->tv_sec = (time_t)(ns / EVLOOP__NS);
    tv->tv_usec = (suseconds_t)(ns % EVLOOP__NS / 1000);
}

/* Both setters skip the second call when the flag is there already. */
#if !defined(EVLOOP_NO_SIGNALS) || !defined(EVLOOP_NO_STREAMS)
/* This thread's signal mask (the process's, built without threads). */
static void evloop__sigmask(int how, const sigset_t *set, sigset_t *old)
{
#ifndef EVLOOP_NO_THREADS
    pthread_sigmask(how, set, old);
#else
    sigprocmask(how, set, old);
#endif
}
#endif

EVLOOP__MAYBE_UNUSED static int evloop__set_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0) return -1;
    if (!(fl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) return -1;
    return 0;
}

EVLOOP__MAYBE_UNUSED static int evloop__set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    return 0;
}

/* Wall-clock time of a monotonic instant, from one pair of clock readings
   per round so that repeated questions get the same answer. */
static int64_t evloop__wall_at(evloop *loop, int64_t mono_ns)
{
    if (!loop->wall_ok) {
        int64_t mono = evloop__clock(CLOCK_MONOTONIC);
        loop->wall = evloop__clock(CLOCK_REALTIME) - (mono - loop->now);
        loop->wall_ok = 1;
    }
    return loop->wall + (mono_ns - loop->now);
}

/* The check every backend makes the first time it sees a descriptor. */
EVLOOP__MAYBE_UNUSED static int evloop__fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0 ? 0 : -1;
}

static inline int evloop__is_live(const evloop_event *ev)
{
    /* The and of two slots is negative only when both are -1: one test. */
    return (ev->flags & (EVLOOP__F_IO | EVLOOP__F_SIG)) || (ev->timer_idx & ev->active_idx) >= 0;
}

/* Keep loop->nlive, the "anything left to wait for" count, in step with an
   event's state: call with what evloop__is_live said before the change. */
static void evloop__relive(evloop *loop, const evloop_event *ev, int was)
{
    if (ev->flags & EVLOOP__F_INTERNAL) return;
    loop->nlive += evloop__is_live(ev) - was;
}

/*== TIMER HEAP (4-ary, min at 0) ==*/

/* The sifts keep the array and its length in locals: the stores to
   ev->timer_idx could otherwise alias them and force a reload every level. */
static void evloop__heap_place(evloop__timer *heap, int i, evloop__timer t)
{
    heap[i] = t;
    t.ev->timer_idx = i;
}

/* Sift t up from the free slot i. */
static void evloop__heap_up_from(evloop__timer *heap, int i, evloop__timer t)
{
    while (i > 0) {
        int parent = (i - 1) / 4;
        if (heap[parent].at <= t.at) break;
        evloop__heap_place(heap, i, heap[parent]);
        i = parent;
    }
    evloop__heap_place(heap, i, t);
}

static void evloop__heap_up(evloop *loop, int i)
{
    evloop__heap_up_from(loop->heap, i, loop->heap[i]);
}

/* Moves down while the smallest child is earlier. A node with all four
   children, the usual case, finds that child by a small tournament: three
   comparisons and no loop (a short path). Ties go to the first child, as
   with the loop. */
static void evloop__heap_down(evloop *loop, int i)
{
    evloop__timer *heap = loop->heap, t = heap[i];
    const int n = loop->nheap;
    for (;;) {
        int c = 4 * i + 1, best;
        if (EVLOOP__SHORT_PATHS && c + 4 <= n) {
            int a = heap[c + 1].at < heap[c].at ? c + 1 : c;
            int b = heap[c + 3].at < heap[c + 2].at ? c + 3 : c + 2;
            best = heap[b].at < heap[a].at ? b : a;
        } else if (c < n) {
            int end = c + 4 < n ? c + 4 : n;
            for (best = c++; c < end; c++)
                if (heap[c].at < heap[best].at) best = c;
        } else {
            break;
        }
        if (heap[best].at >= t.at) break;
        evloop__heap_place(heap, i, heap[best]);
        i = best;
    }
    evloop__heap_place(heap, i, t);
}

/* A big heap is faulted in ahead of use, 256 KiB at a time, by one madvise
   call instead of 64 page faults: under a hypervisor a fault costs several
   microseconds, and faults were most of the time it took to start a million
   timers on some hosts. Only the slots about to be used are touched, so the
   resident size grows as before, at most one step ahead (1 MiB steps left
   0.8 MB more resident than libev with a million timers). Where the call is
   missing (not Linux, a kernel before 5.14, memory it cannot populate)
   nothing is done and pages fault as usual. */
#define EVLOOP__WARM_BYTES (1 << 18)
static void evloop__heap_warm(evloop *loop)
{
    int warm = loop->heap_cap;
#ifdef MADV_POPULATE_WRITE
    const int step = EVLOOP__WARM_BYTES / (int)sizeof *loop->heap;
    if (loop->heap_cap >= 2 * step) {
        uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), from, to;
        if (loop->nheap + step < warm) warm = loop->nheap + step;
        from = ((uintptr_t)(loop->heap + loop->nheap) + pg - 1) & ~(pg - 1);
        to = (uintptr_t)(loop->heap + warm) & ~(pg - 1);
        if (to > from) (void)madvise((void *)from, to - from, MADV_POPULATE_WRITE);
    }
#endif
    loop->heap_warm = warm;
}

static int evloop__heap_reserve(evloop *loop)
{
    if (loop->nheap < loop->heap_warm) return 0;
    if (loop->nheap >= loop->heap_cap) {
        void *p = evloop__grow(loop->heap, &loop->heap_cap, loop->nheap + 1, sizeof *loop->heap);
        if (!p) return -1;
        loop->heap = (evloop__timer *)p;
    }
    evloop__heap_warm(loop);
    return 0;
}

/* Capacity must have been reserved. Deadlines mostly grow, so the new entry
   usually stays where it lands: that case is checked before the sift. */
static inline void evloop__heap_push(evloop *loop, evloop_event *ev, int64_t at)
{
    evloop__timer *heap = loop->heap, t;
    int i = loop->nheap++;
    t.at = at;
    t.ev = ev;
    if (i == 0 || heap[(unsigned)(i - 1) / 4].at <= at)
        evloop__heap_place(heap, i, t);
    else
        evloop__heap_up_from(heap, i, t);
}

static void evloop__heap_remove(evloop *loop, evloop_event *ev)
{
    int i = ev->timer_idx;
    EVLOOP_ASSERT(i >= 0 && i < loop->nheap && loop->heap[i].ev == ev);
    ev->timer_idx = -1;
    if (i == --loop->nheap) return;
    evloop__heap_place(loop->heap, i, loop->heap[loop->nheap]);
    if (i > 0 && loop->heap[(i - 1) / 4].at > loop->heap[i].at)
        evloop__heap_up(loop, i);
    else
        evloop__heap_down(loop, i);
}

/* Move an entry to a new deadline in place. */
static void evloop__heap_retime(evloop *loop, evloop_event *ev, int64_t at)
{
    int i = ev->timer_idx;
    int64_t old = loop->heap[i].at;
    loop->heap[i].at = at;
    if (at < old)
        evloop__heap_up(loop, i);
    else
        evloop__heap_down(loop, i);
}

/*== COMMON-TIMEOUT QUEUES ==*/

static evloop__common *evloop__common_of(const evloop *loop, const evloop_event *ev)
{
    return loop->commons[-(ev->timeout + 2)];
}

static int evloop__common_code(const struct timeval *tv)
{
    if ((tv->tv_usec & EVLOOP__COMMON_MASK) != EVLOOP__COMMON_TAG) return -1;
    return (int)((tv->tv_usec >> 20) & 0xff);
}

static evloop__timer *evloop__ring_at(evloop__common *c, int k)
{
    return &c->ring[(c->head + k) % c->cap];
}

/* Squeeze the holes out, keeping order; entries keep their ring slots valid. */
static void evloop__common_compact(evloop__common *c)
{
    int r, w = 0;
    for (r = 0; r < c->count; r++) {
        evloop__timer t = *evloop__ring_at(c, r);
        if (!t.ev) continue;
        *evloop__ring_at(c, w) = t;
        t.ev->timer_idx = (c->head + w) % c->cap;
        w++;
    }
    c->count = w;
    c->holes = 0;
}

static int evloop__common_reserve(evloop__common *c)
{
    int k, old_cap = c->cap;
    evloop__timer *old = c->ring, *fresh;
    if (c->count < c->cap) return 0;
    if (c->holes * 2 >= c->count && c->holes > 0) {
        evloop__common_compact(c);
        return 0;
    }
    fresh = (evloop__timer *)evloop__grow(NULL, &c->cap, c->count + 1, sizeof *fresh);
    if (!fresh) return -1;
    for (k = 0; k < c->count; k++) {
        fresh[k] = old[(c->head + k) % old_cap];
        if (fresh[k].ev) fresh[k].ev->timer_idx = k;
    }
    EVLOOP_FREE(old);
    c->ring = fresh;
    c->head = 0;
    return 0;
}

/* The queue's stand-in follows its first live entry. */
static void evloop__common_sync_head(evloop *loop, evloop__common *c)
{
    while (c->count > 0 && !c->ring[c->head].ev) {
        c->head = (c->head + 1) % c->cap;
        c->count--;
        c->holes--;
    }
    if (c->count == 0) {
        if (c->head_ev.timer_idx >= 0) evloop__heap_remove(loop, &c->head_ev);
        return;
    }
    if (c->head_ev.timer_idx >= 0)
        evloop__heap_retime(loop, &c->head_ev, c->ring[c->head].at);
    else
        evloop__heap_push(loop, &c->head_ev, c->ring[c->head].at);
}

/* Ring and heap capacity must have been reserved. Entries come in deadline
   order, except a late periodic timer keeping its period: its deadline can
   precede those of entries added since, which move back one slot. */
static void evloop__common_push(evloop *loop, evloop__common *c, evloop_event *ev, int64_t at)
{
    int k = c->count;
    evloop__timer *t;
    for (; k > 0 && (t = evloop__ring_at(c, k - 1))->at > at; k--) {
        *evloop__ring_at(c, k) = *t;
        if (t->ev) t->ev->timer_idx = (c->head + k) % c->cap;
    }
    t = evloop__ring_at(c, k);
    t->at = at;
    t->ev = ev;
    ev->timer_idx = (c->head + k) % c->cap;
    c->count++;
    if (k == 0) evloop__common_sync_head(loop, c);
}

static void evloop__common_remove(evloop *loop, evloop__common *c, evloop_event *ev)
{
    int slot = ev->timer_idx;
    EVLOOP_ASSERT(c->ring[slot].ev == ev);
    c->ring[slot].ev = NULL;
    ev->timer_idx = -1;
    c->holes++;
    if (slot == c->head) evloop__common_sync_head(loop, c);
}

/*== TIMERS (heap or common queue, by ev->timeout) ==*/

static int evloop__timer_reserve(evloop *loop, int64_t timeout)
{
    if (evloop__heap_reserve(loop) < 0) return -1;
    if (timeout <= -2) return evloop__common_reserve(loop->commons[-(timeout + 2)]);
    return 0;
}

static void evloop__timer_stop(evloop *loop, evloop_event *ev)
{
    if (ev->timer_idx < 0) return;
    if (ev->timeout <= -2)
        evloop__common_remove(loop, evloop__common_of(loop, ev), ev);
    else
        evloop__heap_remove(loop, ev);
}

static int64_t evloop__timer_duration(const evloop *loop, const evloop_event *ev)
{
    return ev->timeout <= -2 ? evloop__common_of(loop, ev)->duration : ev->timeout;
}

/* Start ev's timer at `at`; capacity must have been reserved. */
static void evloop__timer_start(evloop *loop, evloop_event *ev, int64_t at)
{
    if (ev->timeout <= -2)
        evloop__common_push(loop, evloop__common_of(loop, ev), ev, at);
    else
        evloop__heap_push(loop, ev, at);
}

static int64_t evloop__timer_deadline(const evloop *loop, const evloop_event *ev)
{
    if (ev->timeout <= -2) return evloop__common_of(loop, ev)->ring[ev->timer_idx].at;
    return loop->heap[ev->timer_idx].at;
}

/*== FD TABLE AND CHANGE LIST ==*/

/* The change list can hold every fd once, so queueing a change never fails. */
static int evloop__fd_grow(evloop *loop, int fd)
{
    int cap = loop->nfds;
    void *p = evloop__grow(loop->fds, &cap, fd + 1, sizeof *loop->fds);
    if (!p) return -1;
    loop->fds = (evloop__fdinfo *)p;
    if (loop->changes_cap < cap) {
        p = evloop__grow(loop->changes, &loop->changes_cap, cap, sizeof(int));
        if (!p) return -1;
        loop->changes = (int *)p;
    }
    memset(loop->fds + loop->nfds, 0, (size_t)(cap - loop->nfds) * sizeof *loop->fds);
    loop->nfds = cap;
    return 0;
}

/* The table grows only for an open fd: a closed one, however large its
   number, fails with EBADF before anything is allocated. */
EVLOOP__HOT int evloop__fd_reserve(evloop *loop, int fd)
{
    if (fd < loop->nfds) return 0;
    return evloop__fd_is_open(fd) < 0 ? -1 : evloop__fd_grow(loop, fd);
}

static inline evloop_event **evloop__evs(evloop__fdinfo *fi)
{
    return fi->capl ? fi->evs.many : &fi->evs.one;
}

/* Room for one more event on fi's list; on failure nothing changed. */
static int evloop__list_grow(evloop__fdinfo *fi)
{
    evloop_event **v;
    size_t cap = (size_t)1 << fi->capl;
    if (fi->capl >= 24) return evloop__fail(ENOMEM);
    v = (evloop_event **)EVLOOP_REALLOC(fi->capl ? fi->evs.many : NULL, cap * 2 * sizeof *v);
    if (!v) return evloop__fail(ENOMEM);
    if (!fi->capl) v[0] = fi->evs.one;
    fi->evs.many = v;
    fi->capl++;
    return 0;
}

static inline int evloop__list_reserve(evloop__fdinfo *fi)
{
    return fi->n < (1 << fi->capl) ? 0 : evloop__list_grow(fi);
}

EVLOOP__HOT void evloop__list_remove(evloop__fdinfo *fi, const evloop_event *ev)
{
    evloop_event **v = fi->evs.many;
    int i = 0;
    if (!fi->capl) { /* a lone event, so it is ev */
        fi->n = 0;
        return;
    }
    while (v[i] != ev) i++;
    for (fi->n--; i < fi->n; i++) v[i] = v[i + 1];
}

EVLOOP__HOT unsigned evloop__fd_wanted(evloop__fdinfo *fi)
{
    unsigned m = 0;
    int i;
    if (EVLOOP__SHORT_PATHS && !fi->capl)
        m = fi->n ? fi->evs.one->events & EVLOOP__FD_BITS : 0u;
    else
        for (i = 0; i < fi->n; i++) m |= (unsigned)evloop__evs(fi)[i]->events & EVLOOP__FD_BITS;
    return (m & EVLOOP__IO_BITS) ? m : 0;
}

static void evloop__fd_queue(evloop *loop, int fd)
{
    if (loop->fds[fd].queued) return;
    loop->changes[loop->nchanges++] = fd;
    loop->fds[fd].queued = 1;
}

/* Round a wait up to whole milliseconds so it never ends before a deadline. */
EVLOOP__MAYBE_UNUSED static int evloop__ns_to_ms(int64_t ns)
{
    int64_t ms;
    if (ns < 0) return -1;
    ms = (ns + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void evloop__fd_ready(evloop *loop, int fd, unsigned bits);

/* Each backend below implements the same five names:
     evloop__be_name                       what evloop_backend() says
     evloop__be_init(loop)                 create kernel state
     evloop__be_free(loop)                 release it (also in a forked child)
     evloop__be_change(loop, fd, old, new) move fd's interest from old to new;
                                           old == 0 or with EVLOOP__KMASK_STALE
                                           means the kernel may not know fd:
                                           check it and register it afresh
     evloop__be_wait(loop, timeout_ns)     wait (-1: forever), read the clock
                                           (so restarted timeouts count from
                                           the wakeup), then report each ready
                                           fd with evloop__fd_ready            */

#if defined(EVLOOP_BACKEND_EPOLL)
/*== BACKEND: EPOLL ==*/

static const char evloop__be_name[] = "epoll";

/* The mask conversions below rely on these two. */
typedef char
    evloop__epoll_bits_check[(EPOLLIN == EVLOOP_READ >> 1 && EPOLLOUT == EVLOOP_WRITE) ? 1 : -1];

static int evloop__be_init(evloop *loop)
{
    loop->be.stale = 0;
    loop->be.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->be.epfd < 0) return -1;
    loop->be.cap = 64;
    loop->be.out = (struct epoll_event *)EVLOOP_MALLOC(64 * sizeof(struct epoll_event));
    if (!loop->be.out) {
        close(loop->be.epfd);
        return evloop__fail(ENOMEM);
    }
    return 0;
}

static void evloop__be_free(evloop *loop)
{
    if (loop->be.epfd >= 0) close(loop->be.epfd);
    EVLOOP_FREE(loop->be.out);
    loop->be.epfd = -1;
    loop->be.out = NULL;
}

/* A registration made or rewritten here carries the fd and the next
   generation of the fd's registrations in its data; every way out but one
   (an ADD refused for a registration already as wanted, which keeps its
   own) moves the fd to that generation, so a report from an older
   registration, still in the set (see evloop__epoll_rebuild), gives itself
   away. */
static int evloop__epoll_rebuild(evloop *loop);

EVLOOP__HOT int evloop__be_change(evloop *loop, int fd, unsigned old, unsigned mask)
{
    struct epoll_event e;
    unsigned gen;
    int op;
    if (loop->be.epfd < 0 && evloop__epoll_rebuild(loop) < 0) return -1; /* no set: see there */
    gen = loop->fds[fd].gen;
    loop->fds[fd].gen = gen + 1;
    if (!mask) {
        /* The fd may be closed already, which removed it from the set (or
           left it there, if the file is open elsewhere). */
        if (old) epoll_ctl(loop->be.epfd, EPOLL_CTL_DEL, fd, &e);
        return 0;
    }
    memset(&e, 0, sizeof e);
    /* EVLOOP_WRITE is EPOLLOUT and EVLOOP_READ is EPOLLIN one bit up (the
       typedef above checks it), so the usual masks take two operations. */
    e.events = (mask & EVLOOP_WRITE) | ((mask & EVLOOP_READ) >> 1);
    if (mask & (EVLOOP_CLOSED | EVLOOP_ET))
        e.events |= ((mask & EVLOOP_CLOSED) ? (unsigned)EPOLLRDHUP : 0u) |
                    ((mask & EVLOOP_ET) ? (unsigned)EPOLLET : 0u);
    e.data.u64 = (uint64_t)(gen + 1) << 32 | (uint32_t)fd;
    /* Unknown or stale (the number may name a new file): ADD. EEXIST proves
       the kernel still watches this very file, and a refused ADD is cheaper
       than a MOD, which polls the file again; it is then done if the mask is
       what the kernel already has (an event re-assigned to the same fd). */
    op = old && !(old & EVLOOP__KMASK_STALE) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->be.epfd, op, fd, &e) == 0) return 0;
    if (errno != (op == EPOLL_CTL_MOD ? ENOENT : EEXIST)) return -1;
    if (op == EPOLL_CTL_ADD && (old & ~EVLOOP__KMASK_STALE) == mask) {
        loop->fds[fd].gen = gen;
        return 0;
    }
    /* MOD of an fd the kernel dropped: ADD; ADD of one it has: MOD. */
    return epoll_ctl(loop->be.epfd, op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &e);
}

/* The kernel reported a registration nothing here owns: one a file left
   when it was closed here after its events were deleted but is still open
   elsewhere (a dup, a forked child), so the delete had no fd to name it by;
   or the one of the file an fd number named before. Only a new epoll set
   sheds it: one rebuilt from what the fd table says the kernel has. */
static int evloop__epoll_rebuild(evloop *loop)
{
    int fd, epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0 && errno != EMFILE && errno != ENFILE) return -1; /* the next wait tries again */
    /* Out of descriptors: the old set goes first and the new one takes its
       slot (the old one, kept, would end every wait at once with its stale
       report). If even that fails (the slot was above a lowered limit, or
       another thread took it), there is no set until a later try makes one:
       waits and changes fail with the error meanwhile. */
    if (loop->be.epfd >= 0) close(loop->be.epfd);
    loop->be.epfd = epfd >= 0 ? epfd : epoll_create1(EPOLL_CLOEXEC);
    if (loop->be.epfd < 0) return -1;
    loop->be.stale = 0;
    for (fd = 0; fd < loop->nfds; fd++) {
        evloop__fdinfo *fi = &loop->fds[fd];
        if (fi->kmask && evloop__be_change(loop, fd, 0, fi->kmask) < 0) fi->kmask = 0;
    }
    return 0;
}

static int evloop__be_wait(evloop *loop, int64_t timeout_ns)
{
    int i, n;
    if (loop->be.stale && evloop__epoll_rebuild(loop) < 0 && loop->be.epfd < 0) return -1;
    n = epoll_wait(loop->be.epfd, loop->be.out, loop->be.cap, evloop__ns_to_ms(timeout_ns));
    evloop__update_time(loop);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (i = 0; i < n; i++) {
        unsigned e = loop->be.out[i].events;
        unsigned bits = (e & EPOLLOUT) | ((e & EPOLLIN) << 1);
        uint64_t data = loop->be.out[i].data.u64;
        int fd = (int)(uint32_t)data;
        if ((unsigned)fd >= (unsigned)loop->nfds || loop->fds[fd].gen != (unsigned)(data >> 32)) {
            loop->be.stale = 1;
            continue;
        }
        if (e & (EPOLLHUP | EPOLLERR)) bits |= EVLOOP_READ | EVLOOP_WRITE;
        if (e & (EPOLLRDHUP | EPOLLHUP)) bits |= EVLOOP_CLOSED;
        evloop__fd_ready(loop, fd, bits);
    }
    if (loop->be.stale) evloop__epoll_rebuild(loop); /* at once, if it can */
    if (n == loop->be.cap && n < 4096) {
        /* A full batch hints at more ready fds than we can take at once. */
        int cap = loop->be.cap;
        void *p = evloop__grow(loop->be.out, &cap, cap * 2, sizeof *loop->be.out);
        if (p) loop->be.out = (struct epoll_event *)p, loop->be.cap = cap;
    }
    return 0;
}

#elif defined(EVLOOP_BACKEND_KQUEUE)
/*== BACKEND: KQUEUE ==*/

static const char evloop__be_name[] = "kqueue";

static int evloop__be_init(evloop *loop)
{
    memset(&loop->be, 0, sizeof loop->be);
    loop->be.kq = kqueue();
    if (loop->be.kq < 0) return -1;
    if (evloop__set_cloexec(loop->be.kq) < 0) {
        close(loop->be.kq);
        return -1;
    }
    return 0;
}

static void evloop__be_free(evloop *loop)
{
    if (loop->be.kq >= 0) close(loop->be.kq);
    EVLOOP_FREE(loop->be.changes);
    EVLOOP_FREE(loop->be.out);
    memset(&loop->be, 0, sizeof loop->be);
    loop->be.kq = -1;
}

static int evloop__kq_push(evloop *loop, int fd, int filter, int flags)
{
    evloop__backend *be = &loop->be;
    if (be->nchanges == be->changes_cap) {
        void *p =
            evloop__grow(be->changes, &be->changes_cap, be->nchanges + 1, sizeof(struct kevent));
        if (!p) return -1;
        be->changes = (struct kevent *)p;
    }
    EV_SET(&be->changes[be->nchanges], (uintptr_t)fd, filter, flags, 0, 0, 0);
    be->nchanges++;
    return 0;
}

/* Edge-triggered for EVLOOP_ET, and for a read filter that only watches for
   the peer's hang-up: level-triggered, unread data would keep it ready, and
   wake every wait for an event that wants none of it. */
static int evloop__kq_clear(int filter, unsigned mask)
{
    return (mask & EVLOOP_ET) ||
           (filter == EVFILT_READ && (mask & (EVLOOP_READ | EVLOOP_CLOSED)) == EVLOOP_CLOSED);
}

/* Whether the filter's knote stays but changes mode (EV_CLEAR on or off). */
static int evloop__kq_mode_changes(int filter, unsigned old, unsigned mask, unsigned want_bits)
{
    return (old & want_bits) && (mask & want_bits) &&
           evloop__kq_clear(filter, old) != evloop__kq_clear(filter, mask);
}

/* EV_ADD keeps an existing knote's EV_CLEAR, so for a change of mode the
   knote goes first, and with it any change still queued for it. At once,
   not in the batch: there an error for a knote already gone (its fd was
   closed) would make that kevent call return nothing else. */
static void evloop__kq_drop(evloop *loop, int fd, int filter)
{
    evloop__backend *be = &loop->be;
    struct kevent del;
    int i, kept = 0;
    for (i = 0; i < be->nchanges; i++)
        if (be->changes[i].ident != (uintptr_t)fd || be->changes[i].filter != filter)
            be->changes[kept++] = be->changes[i];
    be->nchanges = kept;
    EV_SET(&del, (uintptr_t)fd, filter, EV_DELETE, 0, 0, 0);
    (void)kevent(be->kq, &del, 1, NULL, 0, NULL);
}

/* One filter: add, re-add (a new file, or a new mode: see above), or
   delete, as the masks differ. */
static int evloop__kq_filter(evloop *loop, int fd, int filter, unsigned old, unsigned mask,
                             unsigned want_bits, int new_mode)
{
    int had = (old & want_bits) != 0, wants = (mask & want_bits) != 0;
    int clear = evloop__kq_clear(filter, mask), stale = (old & EVLOOP__KMASK_STALE) != 0;
    if (wants && (!had || stale || new_mode))
        return evloop__kq_push(loop, fd, filter, EV_ADD | EV_ENABLE | (clear ? EV_CLEAR : 0));
    /* Deleting only what we added: a failed change makes kevent return at
       once with nothing but the error. */
    if (!wants && had) return evloop__kq_push(loop, fd, filter, EV_DELETE);
    return 0;
}

static int evloop__be_change(evloop *loop, int fd, unsigned old, unsigned mask)
{
    const unsigned rbits = EVLOOP_READ | EVLOOP_CLOSED, wbits = EVLOOP_WRITE;
    int rmode = evloop__kq_mode_changes(EVFILT_READ, old, mask, rbits);
    int wmode = evloop__kq_mode_changes(EVFILT_WRITE, old, mask, wbits);
    int saved;
    if ((old == 0 || (old & EVLOOP__KMASK_STALE)) && evloop__fd_is_open(fd) < 0) return -1;
    if (rmode) evloop__kq_drop(loop, fd, EVFILT_READ);
    if (wmode) evloop__kq_drop(loop, fd, EVFILT_WRITE);
    saved = loop->be.nchanges;
    if (evloop__kq_filter(loop, fd, EVFILT_READ, old, mask, rbits, rmode) < 0 ||
        evloop__kq_filter(loop, fd, EVFILT_WRITE, old, mask, wbits, wmode) < 0) {
        loop->be.nchanges = saved;
        return -1;
    }
    return 0;
}

static int evloop__be_wait(evloop *loop, int64_t timeout_ns)
{
    evloop__backend *be = &loop->be;
    struct timespec ts, *tsp = NULL;
    int i, n, want = be->nchanges > 64 ? be->nchanges : 64;
    if (be->out_cap < want) {
        /* Room for an error entry per change, so kevent never fails for it. */
        void *p = evloop__grow(be->out, &be->out_cap, want, sizeof(struct kevent));
        if (!p) return -1;
        be->out = (struct kevent *)p;
    }
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / EVLOOP__NS);
        ts.tv_nsec = (long)(timeout_ns % EVLOOP__NS);
        tsp = &ts;
    }
    n = kevent(be->kq, be->changes, be->nchanges, be->out, be->out_cap, tsp);
    evloop__update_time(loop);
    be->nchanges = 0;
    if (n < 0) return errno == EINTR ? 0 : -1;
    /* READ and WRITE of one fd come as two entries: gather them first, so a
       non-persistent event watching both sees both bits in one callback. */
    for (i = 0; i < n; i++) {
        const struct kevent *k = &be->out[i];
        int fd = (int)k->ident;
        if ((k->flags & EV_ERROR) || fd >= loop->nfds) continue; /* e.g. closed meanwhile */
        if (k->filter == EVFILT_READ)
            loop->fds[fd].ready |= EVLOOP_READ | ((k->flags & EV_EOF) ? EVLOOP_CLOSED : 0u);
        else if (k->filter == EVFILT_WRITE)
            loop->fds[fd].ready |= EVLOOP_WRITE;
    }
    for (i = 0; i < n; i++) {
        int fd = (int)be->out[i].ident;
        unsigned bits;
        if ((be->out[i].flags & EV_ERROR) || fd >= loop->nfds || !loop->fds[fd].ready) continue;
        bits = loop->fds[fd].ready;
        loop->fds[fd].ready = 0;
        evloop__fd_ready(loop, fd, bits);
    }
    return 0;
}

#elif defined(EVLOOP_BACKEND_POLL)
/*== BACKEND: POLL ==*/

static const char evloop__be_name[] = "poll";

static int evloop__be_init(evloop *loop)
{
    memset(&loop->be, 0, sizeof loop->be);
    return 0;
}

static void evloop__be_free(evloop *loop)
{
    EVLOOP_FREE(loop->be.pfds);
    EVLOOP_FREE(loop->be.slot);
    memset(&loop->be, 0, sizeof loop->be);
}

static int evloop__poll_add(evloop *loop, int fd)
{
    evloop__backend *be = &loop->be;
    void *p;
    if (fd >= be->slot_cap) {
        int old = be->slot_cap;
        p = evloop__grow(be->slot, &be->slot_cap, fd + 1, sizeof(int));
        if (!p) return -1;
        be->slot = (int *)p;
        memset(be->slot + old, 0xff, (size_t)(be->slot_cap - old) * sizeof(int)); /* -1 */
    }
    if (be->n == be->cap) {
        p = evloop__grow(be->pfds, &be->cap, be->n + 1, sizeof(struct pollfd));
        if (!p) return -1;
        be->pfds = (struct pollfd *)p;
    }
    be->slot[fd] = be->n;
    be->pfds[be->n].fd = fd;
    be->pfds[be->n].revents = 0;
    return be->n++;
}

static int evloop__be_change(evloop *loop, int fd, unsigned old, unsigned mask)
{
    evloop__backend *be = &loop->be;
    int i = fd < be->slot_cap ? be->slot[fd] : -1;
    /* A slot may be left from before the fd was closed: check it anyway. */
    if (mask && (old == 0 || (old & EVLOOP__KMASK_STALE)) && evloop__fd_is_open(fd) < 0) return -1;
    /* poll cannot tell a hang-up alone (EVLOOP_CLOSED): an fd that wants
       nothing else stays out of the set, where POLLHUP, always reported,
       would end every wait for an event that does not want it. */
    if (!(mask & (EVLOOP_READ | EVLOOP_WRITE))) {
        if (i < 0) return 0;
        be->pfds[i] = be->pfds[--be->n];
        be->slot[be->pfds[i].fd] = i;
        be->slot[fd] = -1;
        return 0;
    }
    if (i < 0 && (i = evloop__poll_add(loop, fd)) < 0) return -1;
    be->pfds[i].events =
        (short)(((mask & EVLOOP_READ) ? POLLIN : 0) | ((mask & EVLOOP_WRITE) ? POLLOUT : 0));
    return 0;
}

static int evloop__be_wait(evloop *loop, int64_t timeout_ns)
{
    evloop__backend *be = &loop->be;
    int i, n = poll(be->pfds, (nfds_t)be->n, evloop__ns_to_ms(timeout_ns));
    evloop__update_time(loop);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (i = 0; i < be->n && n > 0; i++) {
        unsigned r = (unsigned)be->pfds[i].revents, bits = 0;
        if (!r) continue;
        n--;
        /* POLLNVAL: closed behind our back; report it so the owner notices. */
        if (r & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) bits |= EVLOOP_READ;
        if (r & (POLLOUT | POLLHUP | POLLERR | POLLNVAL)) bits |= EVLOOP_WRITE;
        evloop__fd_ready(loop, be->pfds[i].fd, bits);
    }
    return 0;
}

#else
/*== BACKEND: SELECT ==*/

static const char evloop__be_name[] = "select";

static int evloop__be_init(evloop *loop)
{
    FD_ZERO(&loop->be.rd);
    FD_ZERO(&loop->be.wr);
    loop->be.maxfd = -1;
    return 0;
}

static void evloop__be_free(evloop *loop)
{
    evloop__be_init(loop);
}

static int evloop__be_change(evloop *loop, int fd, unsigned old, unsigned mask)
{
    evloop__backend *be = &loop->be;
    if (fd >= FD_SETSIZE) return evloop__fail(EINVAL); /* FD_SET would write out of bounds */
    if ((old == 0 || (old & EVLOOP__KMASK_STALE)) && mask && evloop__fd_is_open(fd) < 0) return -1;
    FD_CLR(fd, &be->rd);
    FD_CLR(fd, &be->wr);
    if (mask & EVLOOP_READ) FD_SET(fd, &be->rd);
    if (mask & EVLOOP_WRITE) FD_SET(fd, &be->wr);
    if ((mask & (EVLOOP_READ | EVLOOP_WRITE)) && fd > be->maxfd) be->maxfd = fd;
    while (be->maxfd >= 0 && !FD_ISSET(be->maxfd, &be->rd) && !FD_ISSET(be->maxfd, &be->wr))
        be->maxfd--;
    return 0;
}

static int evloop__be_wait(evloop *loop, int64_t timeout_ns)
{
    evloop__backend *be = &loop->be;
    fd_set rd = be->rd, wr = be->wr;
    struct timeval tv, *tvp = NULL;
    int fd, n;
    if (timeout_ns >= 0) {
        evloop__ns_to_tv(timeout_ns + 999, &tv); /* round up to whole microseconds */
        tvp = &tv;
    }
    n = select(be->maxfd + 1, &rd, &wr, NULL, tvp);
    evloop__update_time(loop);
    if (n < 0 && errno == EBADF) {
        /* Some fd was closed behind our back: report those so the owner notices. */
        for (fd = 0; fd <= be->maxfd; fd++)
            if ((FD_ISSET(fd, &be->rd) || FD_ISSET(fd, &be->wr)) && evloop__fd_is_open(fd) < 0)
                evloop__fd_ready(loop, fd, EVLOOP_READ | EVLOOP_WRITE);
        return 0;
    }
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (fd = 0; fd <= be->maxfd && n > 0; fd++) {
        unsigned bits =
            (FD_ISSET(fd, &rd) ? EVLOOP_READ : 0u) | (FD_ISSET(fd, &wr) ? EVLOOP_WRITE : 0u);
        if (!bits) continue;
        n -= (bits & EVLOOP_READ ? 1 : 0) + (bits & EVLOOP_WRITE ? 1 : 0);
        evloop__fd_ready(loop, fd, bits);
    }
    return 0;
}

#endif

/*== FD EVENTS ==*/

/* Put ev on its fd's list. The first time the backend hears of an fd, or when
   the event was assigned since it was last added (the number may now name a
   new file), the backend is told at once so a bad fd fails here, with nothing
   changed. Every other change waits on the change list for the next wait. */
EVLOOP__HOT int evloop__io_start(evloop *loop, evloop_event *ev)
{
    evloop__fdinfo *fi;
    unsigned want;
    if (evloop__fd_reserve(loop, ev->fd) < 0) return -1;
    fi = &loop->fds[ev->fd];
    want = evloop__fd_wanted(fi);
    /* The kernel has one mode for an fd: an event in the other would miss
       reports (level-triggered) or get them again and again (edge). */
    if (want && ((want ^ (unsigned)ev->events) & EVLOOP_ET)) return evloop__fail(EINVAL);
    if (evloop__list_reserve(fi) < 0) return -1;
    want |= (unsigned)ev->events & EVLOOP__FD_BITS;
    if (!fi->kmask || (ev->flags & EVLOOP__F_NEWFD)) {
        unsigned old = fi->kmask ? fi->kmask | EVLOOP__KMASK_STALE : 0;
        if (evloop__be_change(loop, ev->fd, old, want) < 0) return -1;
        fi->kmask = (unsigned char)want;
        /* The kernel now has what the list will say: a change queued just
           before (the delete of a delete, assign, add) has nothing left to do. */
        if (EVLOOP__SHORT_PATHS && fi->queued && loop->changes[loop->nchanges - 1] == ev->fd) {
            fi->queued = 0;
            loop->nchanges--;
        }
    } else if (want != fi->kmask) {
        evloop__fd_queue(loop, ev->fd);
    }
    evloop__evs(fi)[fi->n++] = ev;
    ev->flags = (unsigned char)((ev->flags | EVLOOP__F_IO) & ~EVLOOP__F_NEWFD);
    return 0;
}

EVLOOP__HOT void evloop__io_stop(evloop *loop, evloop_event *ev)
{
    evloop__list_remove(&loop->fds[ev->fd], ev);
    ev->flags &= (unsigned char)~EVLOOP__F_IO;
    evloop__fd_queue(loop, ev->fd);
}

/* Tell the backend fd's interest if it changed. Failing here means the fd
   was closed under its events: they cannot fire any more, and the kernel
   holds nothing for it. */
EVLOOP__HOT void evloop__fd_apply(evloop *loop, int fd)
{
    evloop__fdinfo *fi = &loop->fds[fd];
    unsigned want = evloop__fd_wanted(fi);
    if (want == fi->kmask) return;
    fi->kmask = evloop__be_change(loop, fd, fi->kmask, want) < 0 ? 0 : (unsigned char)want;
}

/* Apply what changed since the last wait, skipping fds whose interest ended
   up where it started (a delete followed by an add). */
static void evloop__reify(evloop *loop)
{
    int i;
    for (i = 0; i < loop->nchanges; i++) {
        loop->fds[loop->changes[i]].queued = 0;
        evloop__fd_apply(loop, loop->changes[i]);
    }
    loop->nchanges = 0;
}

/* Close without losing the errno that explains why we gave up. */
EVLOOP__MAYBE_UNUSED static void evloop__sock_close(int fd)
{
    int err = errno;
    close(fd);
    errno = err;
}

/* Before the loop's own code closes an fd: apply its pending change now, so
   the kernel is not asked about a number that may already name another
   thread's new file by the next wait. */
EVLOOP__MAYBE_UNUSED static void evloop__close_fd(evloop *loop, int fd)
{
    if (fd < loop->nfds) {
        int err = errno;
        evloop__fd_apply(loop, fd);
        errno = err;
    }
    evloop__sock_close(fd);
}

/*== WAKEUP DESCRIPTOR (signals and other threads) ==*/

#if !defined(EVLOOP_NO_SIGNALS) || !defined(EVLOOP_NO_THREADS)
#define EVLOOP__HAVE_WAKE 1

/* Async-signal-safe: the signal handler calls this. */
static void evloop__wake_fd(int fd)
{
#ifdef EVLOOP__HAVE_EVENTFD
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
#else
    char one = 1;
    ssize_t r = write(fd, &one, 1);
#endif
    (void)r; /* full means a wakeup is pending already */
}

#ifndef EVLOOP_NO_THREADS
/* Keeps a rare path out of a hot caller, whose prologue would otherwise save
   the registers only the rare path needs. */
#if defined(__GNUC__)
#define EVLOOP__NOINLINE __attribute__((noinline))
#else
#define EVLOOP__NOINLINE
#endif

static int evloop__cas(unsigned *p, unsigned old, unsigned v)
{
#ifdef EVLOOP__ATOMIC_OK
    return __atomic_compare_exchange_n(p, &old, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
#else
    if (*(volatile unsigned *)p != old) return 0;
    *(volatile unsigned *)p = v;
    return 1;
#endif
}

/* A plain load first: in a flood of posts the wakeup is nearly always in
   flight already, and the load spares a locked instruction. */
static void evloop__wake(evloop *loop)
{
    if (!evloop__load(&loop->wake_sent) && !evloop__exchange(&loop->wake_sent, 1))
        evloop__wake_fd(loop->wake_wr);
}
#endif

#ifndef EVLOOP_NO_SIGNALS
static void evloop__sig_dispatch(evloop *loop);
#endif

static void evloop__wake_cb(evloop_socket_t fd, short what, void *arg)
{
    evloop *loop = (evloop *)arg;
    char buf[64];
    ssize_t n;
    (void)what;
#ifdef EVLOOP__HAVE_EVENTFD
    n = read(fd, buf, sizeof buf); /* one read empties an eventfd */
#else
    while ((n = read(fd, buf, sizeof buf)) > 0) continue;
#endif
    (void)n;
#ifndef EVLOOP_NO_THREADS
    /* Cleared before looking at posts and signals, so anything that arrives
       after this point writes again and wakes the next wait. The loop looks
       at the posts later in this round (evloop__run_posted, then
       evloop__posted before it waits). */
    evloop__exchange(&loop->wake_sent, 0);
#endif
#ifndef EVLOOP_NO_SIGNALS
    evloop__sig_dispatch(loop);
#endif
}

static int evloop__wake_open(evloop *loop)
{
#ifdef EVLOOP__HAVE_EVENTFD
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return -1;
    loop->wake_rd = loop->wake_wr = fd;
#else
    int p[2];
    if (pipe(p) < 0) return -1;
    loop->wake_rd = p[0];
    loop->wake_wr = p[1];
    if (evloop__set_cloexec(p[0]) < 0 || evloop__set_cloexec(p[1]) < 0 ||
        evloop__set_nonblock(p[0]) < 0 || evloop__set_nonblock(p[1]) < 0)
        return -1;
#endif
    evloop_event_assign(&loop->wake_ev, loop, loop->wake_rd, EVLOOP_READ | EVLOOP_PERSIST,
                        evloop__wake_cb, loop);
    loop->wake_ev.flags |= EVLOOP__F_INTERNAL;
    return evloop__io_start(loop, &loop->wake_ev);
}

static void evloop__wake_close(evloop *loop)
{
    if (loop->wake_ev.flags & EVLOOP__F_IO) evloop__io_stop(loop, &loop->wake_ev);
    if (loop->wake_wr >= 0 && loop->wake_wr != loop->wake_rd) close(loop->wake_wr);
    if (loop->wake_rd >= 0) close(loop->wake_rd);
    loop->wake_rd = loop->wake_wr = -1;
}
#endif

/*== SIGNALS ==*/

#ifndef EVLOOP_NO_SIGNALS
/* Process-wide: a signal has one disposition, so one loop at a time owns it. */
static struct evloop__sigslot {
    evloop *owner;
    struct sigaction old;
} evloop__sigs[EVLOOP__NSIG];
/* Nonzero: caught and not reported yet; the process that caught it (its pid),
   so that after fork() each side reports only its own. */
static volatile sig_atomic_t evloop__sig_caught[EVLOOP__NSIG];
static volatile sig_atomic_t evloop__sig_wakefd[EVLOOP__NSIG]; /* owner's wakeup fd + 1; 0: none */
#ifndef EVLOOP_NO_THREADS
static pthread_mutex_t evloop__sig_lock = PTHREAD_MUTEX_INITIALIZER;
#define EVLOOP__SIG_LOCK()   pthread_mutex_lock(&evloop__sig_lock)
#define EVLOOP__SIG_UNLOCK() pthread_mutex_unlock(&evloop__sig_lock)
#else
#define EVLOOP__SIG_LOCK()   ((void)0)
#define EVLOOP__SIG_UNLOCK() ((void)0)
#endif

/* Only what is async-signal-safe: note the signal, poke the loop. */
static void evloop__sig_handler(int sig)
{
    int saved = errno;
    int fd = (int)evloop__sig_wakefd[sig] - 1; /* read once: the loop may change it */
    evloop__sig_caught[sig] = (sig_atomic_t)getpid();
    if (fd >= 0) evloop__wake_fd(fd);
    errno = saved;
}

static int evloop__sig_install(evloop *loop, int sig)
{
    struct sigaction sa;
    int rc = 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = evloop__sig_handler;
    sigfillset(&sa.sa_mask);
#ifdef SA_RESTART
    sa.sa_flags = SA_RESTART; /* absent only in a strict mode without POSIX */
#endif
    EVLOOP__SIG_LOCK();
    if (evloop__sigs[sig].owner) {
        rc = evloop__fail(EBUSY);
    } else {
        evloop__sig_caught[sig] = 0;
        evloop__sig_wakefd[sig] = loop->wake_wr + 1;
        if (sigaction(sig, &sa, &evloop__sigs[sig].old) < 0) {
            evloop__sig_wakefd[sig] = 0;
            rc = -1;
        } else {
            evloop__sigs[sig].owner = loop;
            loop->nsigs++;
        }
    }
    EVLOOP__SIG_UNLOCK();
    return rc;
}

static void evloop__sig_restore(evloop *loop, int sig)
{
    EVLOOP__SIG_LOCK();
    sigaction(sig, &evloop__sigs[sig].old, NULL);
    evloop__sigs[sig].owner = NULL;
    evloop__sig_wakefd[sig] = 0;
    evloop__sig_caught[sig] = 0;
    loop->nsigs--;
    EVLOOP__SIG_UNLOCK();
}

static int evloop__sig_start(evloop *loop, evloop_event *ev)
{
    evloop__fdinfo *si = &loop->sigs[ev->fd];
    if (evloop__list_reserve(si) < 0) return -1;
    if (!si->n && evloop__sig_install(loop, ev->fd) < 0) return -1;
    evloop__evs(si)[si->n++] = ev;
    ev->flags |= EVLOOP__F_SIG;
    return 0;
}

static void evloop__sig_stop(evloop *loop, evloop_event *ev)
{
    evloop__list_remove(&loop->sigs[ev->fd], ev);
    ev->flags &= (unsigned char)~EVLOOP__F_SIG;
    if (!loop->sigs[ev->fd].n) evloop__sig_restore(loop, ev->fd);
}

/* Point the handler at this loop's (new) wakeup fd, after evloop_reinit. A
   signal the parent caught before the fork is the parent's to report; one
   this process caught since (its wakeup went to the parent's descriptor)
   wakes the new one. */
static void evloop__sig_rewire(evloop *loop)
{
    sigset_t all, old;
    sig_atomic_t self = (sig_atomic_t)getpid();
    int sig;
    /* Blocked meanwhile, so a signal caught between the look at its flag
       and the clearing of the parent's is not cleared with it: it arrives
       after, and finds the new descriptor. */
    sigfillset(&all);
    evloop__sigmask(SIG_BLOCK, &all, &old);
    for (sig = 1; sig < EVLOOP__NSIG; sig++) {
        if (!loop->sigs[sig].n) continue;
        evloop__sig_wakefd[sig] = loop->wake_wr + 1;
        if (evloop__sig_caught[sig] != self)
            evloop__sig_caught[sig] = 0;
        else
            evloop__wake_fd(loop->wake_wr);
    }
    evloop__sigmask(SIG_SETMASK, &old, NULL);
}
#endif

/*== ACTIVATION AND DISPATCH ==*/

static inline void evloop__unpend(evloop *loop, evloop_event *ev)
{
    if (ev->flags & EVLOOP__F_IO) evloop__io_stop(loop, ev);
#ifndef EVLOOP_NO_SIGNALS
    if (ev->flags & EVLOOP__F_SIG) evloop__sig_stop(loop, ev);
#endif
    if (ev->timer_idx >= 0) evloop__timer_stop(loop, ev);
}

/* A failed allocation drops the timer rather than the event. */
static void evloop__restart_timer(evloop *loop, evloop_event *ev, int64_t at)
{
    if (ev->timer_idx >= 0 && ev->timeout > -2) {
        evloop__heap_retime(loop, ev, at); /* one sift in place */
        return;
    }
    evloop__timer_stop(loop, ev);
    if (evloop__timer_reserve(loop, ev->timeout) == 0) evloop__timer_start(loop, ev, at);
}

static int evloop__priority_of(const evloop *loop, const evloop_event *ev)
{
    return ev->priority < loop->npri ? ev->priority : loop->npri - 1;
}

/* Drop the first `done` slots and the holes cancelled events left behind. */
static void evloop__queue_shift(evloop__queue *q, int done)
{
    int r, w = 0;
    for (r = done; r < q->n; r++) {
        evloop_event *ev = q->q[r];
        if (!ev) continue;
        q->q[w] = ev;
        ev->active_idx = w++;
    }
    q->n = w;
}

EVLOOP__HOT int evloop__queue_push(evloop *loop, evloop_event *ev)
{
    int prio = evloop__priority_of(loop, ev);
    evloop__queue *q = &loop->active[prio];
    if (q->n == q->cap) {
        void *p = evloop__grow(q->q, &q->cap, q->n + 1, sizeof *q->q);
        if (!p) return -1;
        q->q = (evloop_event **)p;
    }
    ev->active_idx = q->n;
    q->q[q->n++] = ev;
    loop->nactive++;
    if (prio < loop->run_prio) loop->run_prio = -1;
    return 0;
}

static void evloop__queue_cancel(evloop *loop, evloop_event *ev)
{
    loop->active[evloop__priority_of(loop, ev)].q[ev->active_idx] = NULL;
    ev->active_idx = -1;
    ev->res = 0;
    loop->nactive--;
}

/* Queue ev's callback with `res`, or add the bits to the one already queued.
   A non-persistent event stops being pending here; a pending persistent one
   with a timeout starts its timeout again (timer expiry re-arms it itself).
   One that is not pending (deleted, then activated by hand) stays so. */
static void evloop__activate_any(evloop *loop, evloop_event *ev, short res)
{
    int was = evloop__is_live(ev);
    if (!(ev->events & EVLOOP_PERSIST))
        evloop__unpend(loop, ev);
    else if (ev->timeout != EVLOOP__NO_TIMEOUT && !(res & EVLOOP_TIMEOUT) &&
             ((ev->flags & (EVLOOP__F_IO | EVLOOP__F_SIG)) || ev->timer_idx >= 0))
        evloop__restart_timer(loop, ev, evloop__now(loop) + evloop__timer_duration(loop, ev));
    if (ev->flags & EVLOOP__F_INTERNAL) {
        ev->cb(ev->fd, res, ev->arg);
        return;
    }
    if (ev->active_idx >= 0)
        ev->res |= (unsigned char)res;
    else if (evloop__queue_push(loop, ev) == 0)
        ev->res = (unsigned char)res;
    evloop__relive(loop, ev, was);
}

/* The common case gets a short path in each caller: a watcher that stays
   pending and is not queued yet restarts its timeout, if it has one, and
   joins the queue. */
EVLOOP__HOT void evloop__activate(evloop *loop, evloop_event *ev, short res)
{
    if (EVLOOP__SHORT_PATHS && (ev->events & EVLOOP_PERSIST) && ev->active_idx < 0 &&
        (ev->flags & (EVLOOP__F_IO | EVLOOP__F_SIG)) && !(ev->flags & EVLOOP__F_INTERNAL)) {
        if (ev->timeout != EVLOOP__NO_TIMEOUT && !(res & EVLOOP_TIMEOUT))
            evloop__restart_timer(loop, ev, evloop__now(loop) + evloop__timer_duration(loop, ev));
        if (evloop__queue_push(loop, ev) == 0) ev->res = (unsigned char)res;
        return;
    }
    evloop__activate_any(loop, ev, res);
}

/* Activate every event on fi's list that wants `bits`. Activating a
   non-persistent event takes it off the list, and the next one moves into its
   place. The list is looked up afresh each time: an internal callback runs
   inside evloop__activate. */
static void evloop__list_activate(evloop *loop, evloop__fdinfo *fi, unsigned bits)
{
    int i = 0;
    while (i < fi->n) {
        evloop_event *ev = evloop__evs(fi)[i];
        unsigned got = bits & (unsigned)ev->events;
        if (got) evloop__activate(loop, ev, (short)got);
        if (i < fi->n && evloop__evs(fi)[i] == ev) i++;
    }
}

static void evloop__fd_ready(evloop *loop, int fd, unsigned bits)
{
    evloop__fdinfo *fi;
    if ((unsigned)fd >= (unsigned)loop->nfds) return; /* also fd < 0 */
    fi = &loop->fds[fd];
    bits &= EVLOOP__IO_BITS;
    if (!EVLOOP__SHORT_PATHS || fi->capl) {
        evloop__list_activate(loop, fi, bits);
    } else if (fi->n && (bits & fi->evs.one->events)) { /* the usual: one event */
        evloop__activate(loop, fi->evs.one, (short)(bits & fi->evs.one->events));
    }
}

#ifndef EVLOOP_NO_SIGNALS
static void evloop__sig_dispatch(evloop *loop)
{
    int sig;
    if (!loop->nsigs) return;
    for (sig = 1; sig < EVLOOP__NSIG; sig++) {
        if (!loop->sigs[sig].n || !evloop__sig_caught[sig]) continue;
        evloop__sig_caught[sig] = 0;
        evloop__list_activate(loop, &loop->sigs[sig], EVLOOP_SIGNAL);
    }
}
#endif

/* Next deadline of a persistent timer that just expired at `at`: keep the
   period when we are on time, restart from now when we fell behind. */
static int64_t evloop__next_period(const evloop *loop, int64_t at, int64_t period)
{
    int64_t next = at + period;
    if (next <= loop->now) next = loop->now + (period > 0 ? period : 1);
    return next;
}

static void evloop__timers_expire(evloop *loop)
{
    while (loop->nheap && loop->heap[0].at <= loop->now) {
        evloop_event *ev = loop->heap[0].ev;
        int64_t at = loop->heap[0].at;
        if (ev->flags & EVLOOP__F_COMMON) {
            evloop__common *c = (evloop__common *)ev->arg;
            ev = c->ring[c->head].ev;
        }
        if (ev->events & EVLOOP_PERSIST)
            evloop__restart_timer(loop, ev,
                                  evloop__next_period(loop, at, evloop__timer_duration(loop, ev)));
        evloop__activate(loop, ev, EVLOOP_TIMEOUT);
    }
}

/* Run the queued callbacks of the most important non-empty priority, the
   ones queued before we started: anything they activate waits a round. A
   callback that activates a more important event ends the round early, so
   that event runs before the rest of this priority (as in libevent); *cut
   tells. */
static int evloop__run_active(evloop *loop, int *cut)
{
    evloop__queue *q;
    int i, n, ran = 0;
    *cut = 0;
    if (!loop->nactive) return 0;
    for (q = loop->active; !q->n; q++) continue;
    n = q->n;
    loop->run_prio = (int)(q - loop->active);
    for (i = 0; i < n && loop->run_prio >= 0 && !evloop__load(&loop->got_break); i++) {
        evloop_event *ev = q->q[i];
        short res;
        if (!ev) continue;
        q->q[i] = NULL;
        ev->active_idx = -1;
        loop->nactive--;
        res = ev->res;
        ev->res = 0;
        /* Added again while it waited here: a non-persistent event is never
           pending in its own callback (as in libevent). */
        if (!(ev->events & EVLOOP_PERSIST)) evloop__unpend(loop, ev);
        if (!evloop__is_live(ev)) loop->nlive--;
        loop->running = ev;
        loop->time_stale = 1;
        ev->cb(ev->fd, res, ev->arg); /* may free ev: not touched after this */
        ran++;
    }
    loop->running = NULL;
    *cut = loop->run_prio < 0;
    loop->run_prio = 0;
    evloop__queue_shift(q, i);
    return ran;
}

#ifndef EVLOOP_NO_THREADS
#ifdef EVLOOP__ATOMIC_OK
static evloop__slot *evloop__ring_get(evloop *loop)
{
    return __atomic_load_n(&loop->ring, __ATOMIC_ACQUIRE);
}
#endif

/* Anything claimed counts, even a post still being written: the loop must
   not sleep on it, since its poster may have seen a wakeup in flight. */
static int evloop__posted(evloop *loop)
{
    return loop->batch_pos < loop->nbatch || evloop__load(&loop->post_tail) != loop->post_head;
}

static int evloop__run_batch(evloop *loop)
{
    int ran = 0;
    while (loop->batch_pos < loop->nbatch && !evloop__load(&loop->got_break)) {
        evloop__post p = loop->batch[loop->batch_pos++];
        p.fn(p.arg);
        ran++;
    }
    return ran;
}

/* Run the ring's posts up to position `stop`, in order. A slot claimed but
   not yet written ends the run: its poster is between two instructions, and
   the next round (which will not wait, see evloop__posted) takes it up. */
static int evloop__run_ring(evloop *loop, unsigned stop)
{
#ifdef EVLOOP__ATOMIC_OK
    evloop__slot *ring = evloop__ring_get(loop);
    unsigned head = loop->post_head;
    int ran = 0;
    while (head != stop && !evloop__load(&loop->got_break)) {
        evloop__slot *s = &ring[(head >> 1) & (EVLOOP__RING_SLOTS - 1)];
        void (*fn)(void *);
        void *arg;
        if (__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) != head + 1) break;
        fn = s->fn;
        arg = s->arg;
        __atomic_store_n(&s->seq, head + 2 * EVLOOP__RING_SLOTS, __ATOMIC_RELEASE);
        loop->post_head = head += 2;
        fn(arg);
        ran++;
    }
    return ran;
#else
    (void)loop, (void)stop; /* no ring: nothing is ever claimed */
    return 0;
#endif
}

/* The ring closed at the position it had then; everything before it has run.
   Take the array the posters filled since, and open the ring again in the
   same critical section, so a thread's posts to the array all come before
   its next post to the ring. */
static void evloop__take_overflow(evloop *loop)
{
    evloop__post *t;
    int cap;
    pthread_mutex_lock(&loop->lock);
    t = loop->batch, loop->batch = loop->posts, loop->posts = t;
    cap = loop->batch_cap, loop->batch_cap = loop->posts_cap, loop->posts_cap = cap;
    loop->nbatch = loop->nposts;
    loop->nposts = 0;
    loop->batch_pos = 0;
    evloop__store(&loop->post_tail, loop->post_head);
    pthread_mutex_unlock(&loop->lock);
}

#ifdef EVLOOP__ATOMIC_OK
static void evloop__post_nothing(void *arg)
{
    (void)arg;
}
#endif

/* In a forked child only this thread is left: a post that another thread
   was writing at the fork will never be finished, and the loop would not
   sleep again waiting for it. It becomes a call that does nothing. */
static void evloop__posts_after_fork(evloop *loop)
{
#ifdef EVLOOP__ATOMIC_OK
    unsigned pos, tail = loop->post_tail & ~EVLOOP__OVERFLOW;
    if (!loop->ring) return;
    for (pos = loop->post_head; pos != tail; pos += 2) {
        evloop__slot *s = &loop->ring[(pos >> 1) & (EVLOOP__RING_SLOTS - 1)];
        if (s->seq == pos + 1) continue;
        s->fn = evloop__post_nothing;
        s->arg = NULL;
        s->seq = pos + 1;
    }
#else
    (void)loop;
#endif
}

/* Run what was posted before we started, oldest first: what is left of an
   array taken earlier, then the ring up to where it was, then, once the ring
   has run dry at the point where it closed, the array. Later posts (also the
   ones these functions make) wait a round; a break leaves the rest for the
   next round. */
static int evloop__run_posted(evloop *loop)
{
    unsigned stop = evloop__load(&loop->post_tail);
    int ran;
    if (stop == loop->post_head && loop->batch_pos == loop->nbatch) return 0;
    loop->time_stale = 1;
    ran = evloop__run_batch(loop);
    ran += evloop__run_ring(loop, stop & ~EVLOOP__OVERFLOW);
    if ((stop & EVLOOP__OVERFLOW) && loop->post_head == (stop & ~EVLOOP__OVERFLOW) &&
        !evloop__load(&loop->got_break)) {
        evloop__take_overflow(loop);
        ran += evloop__run_batch(loop);
    }
    return ran;
}
#else
static int evloop__posted(evloop *loop)
{
    (void)loop;
    return 0;
}

static int evloop__run_posted(evloop *loop)
{
    (void)loop;
    return 0;
}
#endif

/* How long the backend may wait: not at all when work is queued, until the
   next deadline when there is one, else forever. */
static int64_t evloop__wait_time(evloop *loop, int flags)
{
    int64_t d;
    if (loop->nactive || (flags & EVLOOP_NONBLOCK) || evloop__posted(loop)) return 0;
    if (!loop->nheap) return -1;
    d = loop->heap[0].at - evloop__now(loop);
    return d < 0 ? 0 : d;
}

/* loop->lock guards what other threads may look at: in_run, owner, exit_at. */
static void evloop__lock(evloop *loop)
{
#ifndef EVLOOP_NO_THREADS
    pthread_mutex_lock(&loop->lock);
#else
    (void)loop;
#endif
}

static void evloop__unlock(evloop *loop)
{
#ifndef EVLOOP_NO_THREADS
    pthread_mutex_unlock(&loop->lock);
#else
    (void)loop;
#endif
}

/* A run starts afresh: exit and break asked before it are spent, and an
   exit asked with no run in progress (exit_at) is taken, in the same locked
   step; returned, -1 if none. */
static int64_t evloop__set_running(evloop *loop, int on)
{
    int64_t exit_at = -1;
    evloop__lock(loop);
#ifndef EVLOOP_NO_THREADS
    loop->owner = pthread_self();
    if (on) {
        exit_at = loop->exit_at;
        loop->exit_at = -1;
    }
#endif
    loop->in_run = (unsigned char)on;
    if (on) {
        evloop__store(&loop->got_exit, 0);
        evloop__store(&loop->got_break, 0);
    }
    evloop__unlock(loop);
    return exit_at;
}

/* 0: no run in progress; 1: a run in this thread; 2: in another thread.
   With loop->lock held. */
static int evloop__run_state(const evloop *loop)
{
#ifndef EVLOOP_NO_THREADS
    return !loop->in_run ? 0 : pthread_equal(loop->owner, pthread_self()) ? 1 : 2;
#else
    return loop->in_run;
#endif
}

/* Wake the loop if it is waiting in another thread. */
static void evloop__wake_other(evloop *loop)
{
#ifndef EVLOOP_NO_THREADS
    int state;
    evloop__lock(loop);
    state = evloop__run_state(loop);
    evloop__unlock(loop);
    if (state == 2) evloop__wake(loop);
#else
    (void)loop;
#endif
}

/*== EXIT TIMER ==*/

/* The delayed exit counts as pending work, so the loop waits for it. */
static void evloop__exit_cb(evloop_socket_t fd, short what, void *arg)
{
    evloop *loop = (evloop *)arg;
    (void)fd, (void)what;
    loop->nlive--;
    evloop__store(&loop->got_exit, 1);
}

/* Of several delayed exits the earliest counts: a later, longer one must
   not put off the one already due (as with libevent's loopexit). */
/* Exit at monotonic time `at` (the earliest of several counts). */
static int evloop__schedule_exit(evloop *loop, int64_t at)
{
    if (loop->exit_ev.timer_idx >= 0) {
        if (loop->heap[loop->exit_ev.timer_idx].at <= at) return 0;
        evloop__heap_remove(loop, &loop->exit_ev);
    } else {
        if (evloop__heap_reserve(loop) < 0) return -1;
        loop->nlive++;
    }
    evloop__heap_push(loop, &loop->exit_ev, at);
    return 0;
}

#ifndef EVLOOP_NO_THREADS
/* On the loop's thread: schedule an exit taken from exit_at (at >= 0).
   Without room for its timer the run ends now rather than never. */
static void evloop__exit_taken(evloop *loop, int64_t at)
{
    if (at >= 0 && evloop__schedule_exit(loop, at) < 0) evloop__store(&loop->got_exit, 1);
}

static void evloop__exit_posted(void *arg)
{
    evloop *loop = (evloop *)arg;
    int64_t at;
    evloop__lock(loop);
    at = loop->exit_at;
    loop->exit_at = -1; /* taken: a second post finds nothing */
    evloop__unlock(loop);
    evloop__exit_taken(loop, at);
}
#endif

/*== ONE-SHOT EVENTS ==*/

static void evloop__once_unlink(evloop *loop, evloop__once *o)
{
    if (o->prev)
        o->prev->next = o->next;
    else
        loop->onces = o->next;
    if (o->next) o->next->prev = o->prev;
}

/* The bookkeeping goes first so the callback may do anything, even add
   another once-event. */
static void evloop__once_cb(evloop_socket_t fd, short what, void *arg)
{
    evloop__once *o = (evloop__once *)arg;
    evloop_event_cb cb = o->cb;
    void *cb_arg = o->arg;
    evloop__once_unlink(o->ev.loop, o);
    EVLOOP_FREE(o);
    cb(fd, what, cb_arg);
}

/*== TEARDOWN ==*/

static void evloop__detach_list(evloop__fdinfo *fi, unsigned char flag)
{
    evloop_event **v = evloop__evs(fi);
    int i;
    for (i = 0; i < fi->n; i++) v[i]->flags &= (unsigned char)~flag;
    fi->n = 0;
    if (fi->capl) EVLOOP_FREE(fi->evs.many);
    fi->capl = 0;
}

/* Forget every event without telling the kernel: used by evloop_free. The
   events' memory is the caller's and stays usable (not pending). */
static void evloop__detach_all(evloop *loop)
{
    int i, k;
    evloop_event *ev;
    for (i = 0; i < loop->nfds; i++) evloop__detach_list(&loop->fds[i], EVLOOP__F_IO);
#ifndef EVLOOP_NO_SIGNALS
    for (i = 1; i < EVLOOP__NSIG; i++) {
        if (loop->sigs[i].n) evloop__sig_restore(loop, i);
        evloop__detach_list(&loop->sigs[i], EVLOOP__F_SIG); /* an empty list may keep an array */
    }
#endif
    for (i = 0; i < loop->nheap; i++) loop->heap[i].ev->timer_idx = -1;
    for (i = 0; i < loop->ncommons; i++) {
        evloop__common *c = loop->commons[i];
        for (k = 0; k < c->count; k++)
            if ((ev = evloop__ring_at(c, k)->ev)) ev->timer_idx = -1;
    }
    for (i = 0; i < loop->npri; i++)
        for (k = 0; k < loop->active[i].n; k++)
            if ((ev = loop->active[i].q[k])) ev->active_idx = -1, ev->res = 0;
}

static void evloop__free_tables(evloop *loop)
{
    int i;
    for (i = 0; i < loop->ncommons; i++) {
        EVLOOP_FREE(loop->commons[i]->ring);
        EVLOOP_FREE(loop->commons[i]);
    }
    EVLOOP_FREE(loop->commons);
    for (i = 0; i < loop->npri; i++) EVLOOP_FREE(loop->active[i].q);
    EVLOOP_FREE(loop->active);
    EVLOOP_FREE(loop->heap);
    EVLOOP_FREE(loop->fds);
    EVLOOP_FREE(loop->changes);
#ifndef EVLOOP_NO_THREADS
    EVLOOP_FREE(loop->posts);
    EVLOOP_FREE(loop->batch);
    EVLOOP_FREE(loop->ring_mem);
#endif
}

/*== PUBLIC: THE LOOP ==*/

EVLOOP__API const char *evloop_version(void)
{
    return EVLOOP_VERSION_STRING;
}

static void evloop__init_internal(evloop *loop, evloop_event *ev, evloop_event_cb cb, void *arg)
{
    memset(ev, 0, sizeof *ev);
    ev->loop = loop;
    ev->cb = cb;
    ev->arg = arg;
    ev->fd = -1;
    ev->timeout = EVLOOP__NO_TIMEOUT;
    ev->timer_idx = ev->active_idx = -1;
    ev->flags = EVLOOP__F_INIT | EVLOOP__F_INTERNAL;
}

EVLOOP__API evloop *evloop_new(void)
{
    evloop *loop = (evloop *)EVLOOP_MALLOC(sizeof *loop);
    int err;
    if (!loop) {
        errno = ENOMEM;
        return NULL;
    }
    memset(loop, 0, sizeof *loop);
    loop->wake_rd = loop->wake_wr = -1;
    loop->npri = 1;
#ifndef EVLOOP_NO_THREADS
    loop->exit_at = -1;
#endif
    evloop__init_internal(loop, &loop->exit_ev, evloop__exit_cb, loop);
    evloop__update_time(loop);
    loop->time_stale = 1; /* timers added before the first run read the clock again */
#ifdef EVLOOP__HAVE_TSC
    loop->tsc.usable = evloop__tsc_usable();
#endif
    loop->active = (evloop__queue *)EVLOOP_MALLOC(sizeof *loop->active);
    if (!loop->active) {
        EVLOOP_FREE(loop);
        errno = ENOMEM;
        return NULL;
    }
    memset(loop->active, 0, sizeof *loop->active);
#ifndef EVLOOP_NO_THREADS
    pthread_mutex_init(&loop->lock, NULL);
#endif
    if (evloop__be_init(loop) < 0) {
        err = errno;
        evloop__free_tables(loop);
#ifndef EVLOOP_NO_THREADS
        pthread_mutex_destroy(&loop->lock);
#endif
        EVLOOP_FREE(loop);
        errno = err;
        return NULL;
    }
#ifdef EVLOOP__HAVE_WAKE
    if (evloop__wake_open(loop) < 0) {
        err = errno;
        evloop_free(loop);
        errno = err;
        return NULL;
    }
#endif
    return loop;
}

EVLOOP__API void evloop_free(evloop *loop)
{
    if (!loop) return;
    /* Handlers go back first: until then a signal would write to the wakeup fd. */
    evloop__detach_all(loop);
    while (loop->onces) { /* detached above, so nothing points at them now */
        evloop__once *o = loop->onces;
        loop->onces = o->next;
        EVLOOP_FREE(o);
    }
#ifdef EVLOOP__HAVE_WAKE
    evloop__wake_close(loop);
#endif
    evloop__be_free(loop);
    evloop__free_tables(loop);
#ifndef EVLOOP_NO_THREADS
    pthread_mutex_destroy(&loop->lock);
#endif
    EVLOOP_FREE(loop);
}

EVLOOP__API const char *evloop_backend(const evloop *loop)
{
    (void)loop;
    return evloop__be_name;
}

EVLOOP__API int evloop_priority_init(evloop *loop, int npriorities)
{
    evloop__queue *q;
    int i;
    if (!loop || npriorities < 1 || npriorities > 256) return evloop__fail(EINVAL);
    if (loop->nlive || loop->nactive || loop->in_run) return evloop__fail(EBUSY);
    q = (evloop__queue *)EVLOOP_MALLOC((size_t)npriorities * sizeof *q);
    if (!q) return evloop__fail(ENOMEM);
    memset(q, 0, (size_t)npriorities * sizeof *q);
    for (i = 0; i < loop->npri; i++) EVLOOP_FREE(loop->active[i].q);
    EVLOOP_FREE(loop->active);
    loop->active = q;
    loop->npri = npriorities;
    return 0;
}

/* In a forked child: new kernel objects, same events. The parent's epoll or
   kqueue set is only closed here, never modified, so the parent keeps its own. */
EVLOOP__API int evloop_reinit(evloop *loop)
{
    int fd;
    if (!loop) return evloop__fail(EINVAL);
    evloop__be_free(loop);
    if (evloop__be_init(loop) < 0) return -1;
    for (fd = 0; fd < loop->nfds; fd++) loop->fds[fd].kmask = 0, loop->fds[fd].queued = 0;
    loop->nchanges = 0;
#ifndef EVLOOP_NO_THREADS
    pthread_mutex_init(&loop->lock, NULL); /* another thread may have held it at fork */
    evloop__posts_after_fork(loop);
#endif
#ifdef EVLOOP__HAVE_WAKE
    evloop__wake_close(loop);
#ifndef EVLOOP_NO_THREADS
    loop->wake_sent = 0;
#endif
    if (evloop__wake_open(loop) < 0) return -1;
#endif
#ifndef EVLOOP_NO_SIGNALS
    evloop__sig_rewire(loop);
#endif
    for (fd = 0; fd < loop->nfds; fd++)
        if (loop->fds[fd].n && !loop->fds[fd].kmask) evloop__fd_queue(loop, fd);
    return 0;
}

EVLOOP__API int evloop_run(evloop *loop, int flags)
{
    int rc, rounds = 0;
    if (!loop || (flags & ~(EVLOOP_ONCE | EVLOOP_NONBLOCK | EVLOOP_NO_EXIT_ON_EMPTY)))
        return evloop__fail(EINVAL);
    if (loop->in_run) return evloop__fail(EBUSY);
#ifndef EVLOOP_NO_THREADS
    evloop__exit_taken(loop, evloop__set_running(loop, 1));
#else
    (void)evloop__set_running(loop, 1);
#endif
    loop->time_stale = 1;
    for (;;) {
        int ran, cut;
        if (evloop__load(&loop->got_exit) || evloop__load(&loop->got_break)) {
            rc = 0;
            break;
        }
        if (!(flags & EVLOOP_NO_EXIT_ON_EMPTY) && !loop->nlive && !evloop__posted(loop)) {
            evloop__reify(loop); /* leave the kernel with what the events say */
            rc = 1;
            break;
        }
        evloop__reify(loop);
        if (evloop__be_wait(loop, evloop__wait_time(loop, flags)) < 0) {
            rc = -1;
            break;
        }
        evloop__timers_expire(loop);
        ran = evloop__run_posted(loop);
        ran += evloop__run_active(loop, &cut);
        /* NONBLOCK: until nothing is active, or as many whole rounds as there
           are priorities, so callbacks that keep activating events cannot
           hold it forever. A round cut short (a more important event was
           activated) does not count: what it left is what was ready. */
        if (((flags & EVLOOP_ONCE) && ran && !loop->nactive) ||
            ((flags & EVLOOP_NONBLOCK) && (!loop->nactive || (!cut && ++rounds >= loop->npri)))) {
            rc = 0;
            break;
        }
    }
    loop->time_stale = 1;
    evloop__set_running(loop, 0);
    return rc;
}

EVLOOP__API int evloop_dispatch(evloop *loop)
{
    return evloop_run(loop, 0);
}

EVLOOP__API int evloop_exit(evloop *loop, const struct timeval *delay)
{
    int64_t at;
    int state;
    if (!loop || (delay && !evloop__tv_valid(delay))) return evloop__fail(EINVAL);
    /* With no run in progress NULL is a zero delay: the next run ends after
       its first round (libevent's loopexit is a zero-timeout event too). */
    at = delay ? evloop__clock(CLOCK_MONOTONIC) + evloop__tv_to_ns(delay) : 0;
    evloop__lock(loop);
    state = evloop__run_state(loop);
    if (!delay && state) {
        evloop__store(&loop->got_exit, 1); /* the run ends after this round */
#ifndef EVLOOP_NO_THREADS
    } else if (state != 1) {
        /* The timer heap belongs to the thread that runs the loop: it takes
           this when its run starts, or from the post below. */
        if (loop->exit_at < 0 || at < loop->exit_at) loop->exit_at = at;
#endif
    }
    evloop__unlock(loop);
    if (!delay && state) {
#ifndef EVLOOP_NO_THREADS
        if (state == 2) evloop__wake(loop);
#endif
        return 0;
    }
#ifndef EVLOOP_NO_THREADS
    if (state == 2) return evloop_post(loop, evloop__exit_posted, loop);
    if (state == 0) return 0;
#endif
    return evloop__schedule_exit(loop, at);
}

EVLOOP__API int evloop_break(evloop *loop)
{
    if (!loop) return evloop__fail(EINVAL);
    evloop__store(&loop->got_break, 1);
    evloop__wake_other(loop);
    return 0;
}

EVLOOP__API int evloop_got_exit(evloop *loop)
{
    return loop ? (int)evloop__load(&loop->got_exit) : 0;
}

EVLOOP__API int evloop_got_break(evloop *loop)
{
    return loop ? (int)evloop__load(&loop->got_break) : 0;
}

EVLOOP__API int evloop_gettimeofday_cached(evloop *loop, struct timeval *tv)
{
    if (!loop || !tv) return evloop__fail(EINVAL);
    evloop__ns_to_tv(evloop__wall_at(loop, loop->now), tv);
    return 0;
}

EVLOOP__API int evloop_update_cache_time(evloop *loop)
{
    if (!loop) return evloop__fail(EINVAL);
    evloop__update_time(loop);
    loop->time_stale = 1; /* timeouts set from here on still read the clock */
    return 0;
}

EVLOOP__API evloop_event *evloop_get_running_event(evloop *loop)
{
    return loop ? loop->running : NULL;
}

EVLOOP__API const struct timeval *evloop_init_common_timeout(evloop *loop,
                                                             const struct timeval *duration)
{
    evloop__common *c;
    int i, code;
    int64_t ns;
    void *p;
    struct timeval plain;
    if (!loop || !duration) return errno = EINVAL, (const struct timeval *)NULL;
    code = evloop__common_code(duration);
    if (code >= 0) {
        /* A handle: this loop's own, or another loop's, whose low bits still
           hold its duration (then this loop's queue for that duration). */
        if (code < loop->ncommons && loop->commons[code]->tv.tv_sec == duration->tv_sec &&
            loop->commons[code]->tv.tv_usec == duration->tv_usec)
            return &loop->commons[code]->tv;
        plain.tv_sec = duration->tv_sec;
        plain.tv_usec = duration->tv_usec & 0xfffff;
        duration = &plain;
    }
    if (!evloop__tv_valid(duration)) return errno = EINVAL, (const struct timeval *)NULL;
    ns = evloop__tv_to_ns(duration);
    for (i = 0; i < loop->ncommons; i++)
        if (loop->commons[i]->duration == ns) return &loop->commons[i]->tv;
    if (loop->ncommons == EVLOOP__MAX_COMMON) return errno = ENOMEM, (const struct timeval *)NULL;
    c = (evloop__common *)EVLOOP_MALLOC(sizeof *c);
    p = EVLOOP_REALLOC(loop->commons, (size_t)(loop->ncommons + 1) * sizeof *loop->commons);
    if (!c || !p) {
        EVLOOP_FREE(c);
        if (p) loop->commons = (evloop__common **)p;
        return errno = ENOMEM, (const struct timeval *)NULL;
    }
    loop->commons = (evloop__common **)p;
    memset(c, 0, sizeof *c);
    c->duration = ns;
    c->tv.tv_sec = duration->tv_sec;
    c->tv.tv_usec =
        (suseconds_t)(EVLOOP__COMMON_TAG | ((long)loop->ncommons << 20) | (long)duration->tv_usec);
    evloop__init_internal(loop, &c->head_ev, NULL, c);
    c->head_ev.flags |= EVLOOP__F_COMMON;
    loop->commons[loop->ncommons++] = c;
    return &c->tv;
}

EVLOOP__API int evloop_once(evloop *loop, evloop_socket_t fd, short what, evloop_event_cb cb,
                            void *arg, const struct timeval *timeout)
{
    static const struct timeval zero = {0, 0};
    evloop__once *o;
    if (!loop || !cb || (what & (EVLOOP_PERSIST | EVLOOP_SIGNAL)) || (what & ~EVLOOP__ALL_BITS))
        return evloop__fail(EINVAL);
    o = (evloop__once *)EVLOOP_MALLOC(sizeof *o);
    if (!o) return evloop__fail(ENOMEM);
    if (evloop_event_assign(&o->ev, loop, fd, what, evloop__once_cb, o) < 0) {
        EVLOOP_FREE(o);
        return -1;
    }
    o->cb = cb;
    o->arg = arg;
    if (!timeout && !(what & EVLOOP__IO_BITS)) timeout = &zero;
    if (evloop_event_add(&o->ev, timeout) < 0) {
        EVLOOP_FREE(o);
        return -1;
    }
    o->prev = NULL;
    o->next = loop->onces;
    if (o->next) o->next->prev = o;
    loop->onces = o;
    return 0;
}

static int evloop__visit(const evloop *loop, const evloop_event *ev, evloop_foreach_cb fn,
                         void *arg)
{
    return (ev->flags & EVLOOP__F_INTERNAL) ? 0 : fn(loop, ev, arg);
}

static int evloop__visit_list(const evloop *loop, evloop__fdinfo *fi, evloop_foreach_cb fn,
                              void *arg)
{
    int i, r;
    for (i = 0; i < fi->n; i++)
        if ((r = evloop__visit(loop, evloop__evs(fi)[i], fn, arg))) return r;
    return 0;
}

/* Each event is visited from one place only: its fd or signal list if it is
   on one, else the timers, else the active queues. */
EVLOOP__API int evloop_foreach_event(evloop *loop, evloop_foreach_cb fn, void *arg)
{
    const evloop_event *ev;
    int i, k, r;
    if (!loop || !fn) return evloop__fail(EINVAL);
    for (i = 0; i < loop->nfds; i++)
        if ((r = evloop__visit_list(loop, &loop->fds[i], fn, arg))) return r;
#ifndef EVLOOP_NO_SIGNALS
    for (i = 1; i < EVLOOP__NSIG; i++)
        if ((r = evloop__visit_list(loop, &loop->sigs[i], fn, arg))) return r;
#endif
    for (i = 0; i < loop->nheap; i++)
        if (!(loop->heap[i].ev->flags & (EVLOOP__F_IO | EVLOOP__F_SIG)) &&
            (r = evloop__visit(loop, loop->heap[i].ev, fn, arg)))
            return r;
    for (i = 0; i < loop->ncommons; i++)
        for (k = 0; k < loop->commons[i]->count; k++)
            if ((ev = evloop__ring_at(loop->commons[i], k)->ev) &&
                !(ev->flags & (EVLOOP__F_IO | EVLOOP__F_SIG)) &&
                (r = evloop__visit(loop, ev, fn, arg)))
                return r;
    for (i = 0; i < loop->npri; i++)
        for (k = 0; k < loop->active[i].n; k++)
            if ((ev = loop->active[i].q[k]) && !(ev->flags & (EVLOOP__F_IO | EVLOOP__F_SIG)) &&
                ev->timer_idx < 0 && (r = evloop__visit(loop, ev, fn, arg)))
                return r;
    return 0;
}

#ifndef EVLOOP_NO_STDIO
static int evloop__dump_one(const evloop *loop, const evloop_event *ev, void *arg)
{
    FILE *out = (FILE *)arg;
    short e = ev->events;
    fprintf(out, "  event %p: fd %d%s%s%s%s%s%s prio %d", (const void *)ev, (int)ev->fd,
            (e & EVLOOP_READ) ? " READ" : "", (e & EVLOOP_WRITE) ? " WRITE" : "",
            (e & EVLOOP_SIGNAL) ? " SIGNAL" : "", (e & EVLOOP_CLOSED) ? " CLOSED" : "",
            (e & EVLOOP_ET) ? " ET" : "", (e & EVLOOP_PERSIST) ? " PERSIST" : "",
            (int)ev->priority);
    if (ev->timer_idx >= 0)
        fprintf(out, " timeout in %.3f s",
                (double)(evloop__timer_deadline(loop, ev) - loop->now) / 1e9);
    if (ev->active_idx >= 0) fprintf(out, " active(0x%x)", (unsigned)ev->res);
    fputc('\n', out);
    return 0;
}

EVLOOP__API void evloop_dump_events(evloop *loop, FILE *out)
{
    if (!loop || !out) return;
    fprintf(out, "evloop %p (%s): %d live events, %d active\n", (void *)loop, evloop__be_name,
            loop->nlive, loop->nactive);
    evloop_foreach_event(loop, evloop__dump_one, out);
}
#endif

#ifndef EVLOOP_NO_THREADS
#ifdef EVLOOP__ATOMIC_OK
/* How far slot `t`'s turn is ahead of position t: 0 free for it, > 0 taken
   by another thread since t was read, < 0 still holding the last lap's post. */
static int evloop__slot_lag(evloop__slot *s, unsigned t)
{
    return (int)(__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) - t);
}
#endif

/* Claim the ring's next position and fill its slot: one compare-and-swap,
   on a cache line the loop reads once a round. 0: no room, or the ring is
   closed or not there yet. */
static inline int evloop__ring_push(evloop *loop, void (*fn)(void *), void *arg)
{
#ifdef EVLOOP__ATOMIC_OK
    evloop__slot *ring = evloop__ring_get(loop), *s;
    unsigned t;
    if (!ring) return 0;
    for (;;) {
        int lag;
        t = evloop__load(&loop->post_tail);
        if (t & EVLOOP__OVERFLOW) return 0;
        s = &ring[(t >> 1) & (EVLOOP__RING_SLOTS - 1)];
        lag = evloop__slot_lag(s, t);
        if (lag < 0) return 0;
        if (lag == 0 && evloop__cas(&loop->post_tail, t, t + 2)) break;
    }
    s->fn = fn;
    s->arg = arg;
    __atomic_store_n(&s->seq, t + 1, __ATOMIC_RELEASE);
    return 1;
#else
    (void)loop, (void)fn, (void)arg;
    return 0;
#endif
}

/* Whether the ring (made here on the first post, so that a loop nobody posts
   to spends no memory on it) has room at position t. Called with the lock
   held and the ring open; without memory the posts use the array. */
static int evloop__ring_room(evloop *loop, unsigned t)
{
#ifdef EVLOOP__ATOMIC_OK
    size_t size = EVLOOP__RING_SLOTS * sizeof(evloop__slot);
    evloop__slot *ring;
    unsigned i;
    if (loop->ring_mem)
        return evloop__slot_lag(&loop->ring[(t >> 1) & (EVLOOP__RING_SLOTS - 1)], t) >= 0;
    if (!(loop->ring_mem = EVLOOP_MALLOC(size + EVLOOP__LINE))) return 0;
    ring = (evloop__slot *)(((uintptr_t)loop->ring_mem + EVLOOP__LINE - 1) &
                            ~(uintptr_t)(EVLOOP__LINE - 1));
    memset(ring, 0, size);
    /* No thread claims before the ring is there, so t stays put meanwhile. */
    for (i = 0; i < EVLOOP__RING_SLOTS; i++)
        ring[((t >> 1) + i) & (EVLOOP__RING_SLOTS - 1)].seq = t + 2 * i;
    __atomic_store_n(&loop->ring, ring, __ATOMIC_RELEASE);
    return 1;
#else
    (void)loop, (void)t;
    return 0;
#endif
}

/* The slow path: the ring was full, closed or not there. Closing it is the
   same compare-and-swap that claims, so each claim comes before or after
   the close, and the loop runs the array only after the ring has run up to
   where it closed. 1: posted; 0: the ring has room, try it again; -1: out of
   memory. */
static int evloop__overflow_push(evloop *loop, void (*fn)(void *), void *arg)
{
    int rc = -1;
    pthread_mutex_lock(&loop->lock);
    for (;;) {
        unsigned t = evloop__load(&loop->post_tail);
        if (!(t & EVLOOP__OVERFLOW) && evloop__ring_room(loop, t)) {
            rc = 0;
            break;
        }
        if (loop->nposts == loop->posts_cap) {
            void *p =
                evloop__grow(loop->posts, &loop->posts_cap, loop->nposts + 1, sizeof *loop->posts);
            if (!p) break;
            loop->posts = (evloop__post *)p;
        }
        if ((t & EVLOOP__OVERFLOW) || evloop__cas(&loop->post_tail, t, t | EVLOOP__OVERFLOW)) {
            loop->posts[loop->nposts].fn = fn;
            loop->posts[loop->nposts].arg = arg;
            loop->nposts++;
            rc = 1;
            break;
        }
    }
    pthread_mutex_unlock(&loop->lock);
    return rc;
}

/* Wake the loop unless a wakeup is in flight or we are its thread, in a
   callback: it looks at the posts before it waits again. */
static EVLOOP__NOINLINE int evloop__post_wake(evloop *loop)
{
    int own_thread;
    pthread_mutex_lock(&loop->lock);
    own_thread = loop->in_run && pthread_equal(loop->owner, pthread_self());
    pthread_mutex_unlock(&loop->lock);
    if (!own_thread) evloop__wake(loop);
    return 0;
}

/* The ring is there and open, so the fast path found it full: the loop is
   behind. When it shares this CPU (a busy machine), giving the CPU up once
   lets it catch up, and the post still takes the ring instead of the array
   (which grows, page by page, when the loop cannot run). When it runs on
   another CPU, this costs one system call each time the ring fills. */
static int evloop__yield_if_full(evloop *loop)
{
#ifdef EVLOOP__ATOMIC_OK
    if (!evloop__ring_get(loop) || (evloop__load(&loop->post_tail) & EVLOOP__OVERFLOW)) return 0;
    sched_yield();
    return 1;
#else
    (void)loop;
    return 0;
#endif
}

static EVLOOP__NOINLINE int evloop__post_slow(evloop *loop, void (*fn)(void *), void *arg)
{
    int rc = evloop__yield_if_full(loop) ? evloop__ring_push(loop, fn, arg) : 0;
    while (!rc && !(rc = evloop__overflow_push(loop, fn, arg)))
        rc = evloop__ring_push(loop, fn, arg);
    if (rc < 0) return -1;
    return evloop__load(&loop->wake_sent) ? 0 : evloop__post_wake(loop);
}

/* The fast path keeps to the ring and tail-calls everything else, so it
   saves no registers. */
EVLOOP__API int evloop_post(evloop *loop, void (*fn)(void *arg), void *arg)
{
    if (!loop || !fn) return evloop__fail(EINVAL);
    if (!evloop__ring_push(loop, fn, arg)) return evloop__post_slow(loop, fn, arg);
    return evloop__load(&loop->wake_sent) ? 0 : evloop__post_wake(loop);
}
#endif

/*== PUBLIC: EVENTS ==*/

EVLOOP__API int evloop_event_assign(evloop_event *ev, evloop *loop, evloop_socket_t fd, short what,
                                    evloop_event_cb cb, void *arg)
{
    if (!ev || !loop || !cb || (what & ~EVLOOP__ALL_BITS)) return evloop__fail(EINVAL);
    if (what & EVLOOP_SIGNAL) {
#ifdef EVLOOP_NO_SIGNALS
        return evloop__fail(EINVAL);
#else
        if ((what & EVLOOP__FD_BITS) || fd <= 0 || fd >= EVLOOP__NSIG) return evloop__fail(EINVAL);
#endif
    } else if ((what & EVLOOP__IO_BITS) && fd < 0) {
        return evloop__fail(EINVAL);
    }
    ev->loop = loop;
    ev->cb = cb;
    ev->arg = arg;
    ev->timeout = EVLOOP__NO_TIMEOUT;
    ev->fd = fd;
    ev->timer_idx = ev->active_idx = -1;
    ev->events = (unsigned char)what;
    ev->res = 0;
    ev->flags = EVLOOP__F_INIT | EVLOOP__F_NEWFD;
    ev->priority = (unsigned char)((unsigned)loop->npri / 2);
    return 0;
}

EVLOOP__API evloop_event *evloop_event_new(evloop *loop, evloop_socket_t fd, short what,
                                           evloop_event_cb cb, void *arg)
{
    evloop_event *ev = (evloop_event *)EVLOOP_MALLOC(sizeof *ev);
    if (!ev) {
        errno = ENOMEM;
        return NULL;
    }
    if (evloop_event_assign(ev, loop, fd, what, cb, arg) < 0) {
        EVLOOP_FREE(ev);
        return NULL;
    }
    return ev;
}

EVLOOP__API void evloop_event_free(evloop_event *ev)
{
    if (!ev) return;
    evloop_event_del(ev);
    EVLOOP_FREE(ev);
}

/* A timeval is either a plain duration or a common-timeout handle. */
static int evloop__parse_timeout(const evloop *loop, const struct timeval *tv, int64_t *out)
{
    int code;
    const evloop__common *c;
    if (evloop__tv_valid(tv)) { /* a handle's tagged tv_usec is out of range */
        *out = evloop__tv_to_ns(tv);
        return 0;
    }
    code = evloop__common_code(tv);
    c = code >= 0 && code < loop->ncommons ? loop->commons[code] : NULL;
    if (!c || c->tv.tv_usec != tv->tv_usec || c->tv.tv_sec != tv->tv_sec)
        return evloop__fail(EINVAL);
    *out = -(int64_t)code - 2;
    return 0;
}

EVLOOP__API int evloop_event_add(evloop_event *ev, const struct timeval *tv)
{
    evloop *loop;
    int64_t timeout = EVLOOP__NO_TIMEOUT;
    int was;
    if (!ev || !(ev->flags & EVLOOP__F_INIT)) return evloop__fail(EINVAL);
    loop = ev->loop;
    /* The busiest cases get a short path, for an event that is neither
       pending nor active: an fd event with no timeout or a plain one, and a
       plain timeout for an event that is only a timer. */
    if (EVLOOP__SHORT_PATHS && !(ev->flags & EVLOOP__F_IO) &&
        (ev->timer_idx & ev->active_idx) < 0 && !(ev->events & EVLOOP_SIGNAL) &&
        (tv ? evloop__tv_valid(tv) && loop->nheap < loop->heap_warm
            : (ev->events & EVLOOP__IO_BITS) != 0)) {
        if ((ev->events & EVLOOP__IO_BITS) && evloop__io_start(loop, ev) < 0) return -1;
        ev->timeout = tv ? evloop__tv_to_ns(tv) : EVLOOP__NO_TIMEOUT;
        if (tv) evloop__heap_push(loop, ev, evloop__stamp(loop) + ev->timeout);
        if (!(ev->flags & EVLOOP__F_INTERNAL)) loop->nlive++;
        return 0;
    }
    /* Everything that can fail comes before the first change. */
    if (tv &&
        (evloop__parse_timeout(loop, tv, &timeout) < 0 || evloop__timer_reserve(loop, timeout) < 0))
        return -1;
    was = evloop__is_live(ev);
    if ((ev->events & EVLOOP__IO_BITS) && !(ev->flags & EVLOOP__F_IO) &&
        evloop__io_start(loop, ev) < 0)
        return -1;
#ifndef EVLOOP_NO_SIGNALS
    if ((ev->events & EVLOOP_SIGNAL) && !(ev->flags & EVLOOP__F_SIG) &&
        evloop__sig_start(loop, ev) < 0)
        return -1;
#endif
    if (ev->timer_idx >= 0) evloop__timer_stop(loop, ev);
    ev->timeout = timeout;
    if (tv) evloop__timer_start(loop, ev, evloop__stamp(loop) + evloop__timer_duration(loop, ev));
    evloop__relive(loop, ev, was); /* re-added with NULL, a timer stops being pending */
    return 0;
}

EVLOOP__API int evloop_event_del(evloop_event *ev)
{
    evloop *loop;
    if (!ev || !(ev->flags & EVLOOP__F_INIT)) return evloop__fail(EINVAL);
    if (!evloop__is_live(ev)) return 0; /* the loop may be gone: do not touch it */
    loop = ev->loop;
    /* The busiest case: a user's fd event that is only waiting for its fd. */
    if (EVLOOP__SHORT_PATHS &&
        (ev->flags & (EVLOOP__F_IO | EVLOOP__F_SIG | EVLOOP__F_INTERNAL)) == EVLOOP__F_IO &&
        (ev->timer_idx & ev->active_idx) < 0) {
        evloop__io_stop(loop, ev);
        loop->nlive--;
        return 0;
    }
    evloop__unpend(loop, ev);
    if (ev->active_idx >= 0) evloop__queue_cancel(loop, ev);
    if (!(ev->flags & EVLOOP__F_INTERNAL)) loop->nlive--;
    return 0;
}

EVLOOP__API int evloop_event_remove_timer(evloop_event *ev)
{
    int was;
    if (!ev || !(ev->flags & EVLOOP__F_INIT)) return evloop__fail(EINVAL);
    was = evloop__is_live(ev);
    if (ev->timer_idx >= 0) evloop__timer_stop(ev->loop, ev);
    ev->timeout = EVLOOP__NO_TIMEOUT;
    if (was) evloop__relive(ev->loop, ev, was);
    return 0;
}

EVLOOP__API void evloop_event_active(evloop_event *ev, int res, short ncalls)
{
    evloop *loop;
    (void)ncalls;
    if (!ev || !(ev->flags & EVLOOP__F_INIT) || !ev->loop) return;
    loop = ev->loop;
    /* The activation paths leave an EVLOOP_TIMEOUT to the expiry, which has
       moved the deadline already; by hand, the timeout restarts here. */
    if ((res & EVLOOP_TIMEOUT) && (ev->events & EVLOOP_PERSIST) &&
        ev->timeout != EVLOOP__NO_TIMEOUT && ev->timer_idx >= 0)
        evloop__restart_timer(loop, ev, evloop__now(loop) + evloop__timer_duration(loop, ev));
    evloop__activate(loop, ev, (short)res);
}

EVLOOP__API int evloop_event_priority_set(evloop_event *ev, int priority)
{
    if (!ev || !(ev->flags & EVLOOP__F_INIT) || priority < 0 || priority >= ev->loop->npri)
        return evloop__fail(EINVAL);
    if (ev->active_idx >= 0) return evloop__fail(EBUSY);
    ev->priority = (unsigned char)priority;
    return 0;
}

EVLOOP__API int evloop_event_pending(const evloop_event *ev, short what, struct timeval *tv_out)
{
    int got = 0;
    if (!ev || !(ev->flags & EVLOOP__F_INIT)) return 0;
    if (ev->flags & EVLOOP__F_IO) got |= ev->events & EVLOOP__IO_BITS;
    if (ev->flags & EVLOOP__F_SIG) got |= EVLOOP_SIGNAL;
    if (ev->timer_idx >= 0) {
        got |= EVLOOP_TIMEOUT;
        if (tv_out)
            evloop__ns_to_tv(evloop__wall_at(ev->loop, evloop__timer_deadline(ev->loop, ev)),
                             tv_out);
    }
    if (ev->active_idx >= 0) got |= ev->res;
    return got & what & (EVLOOP__IO_BITS | EVLOOP_SIGNAL | EVLOOP_TIMEOUT);
}

EVLOOP__API int evloop_event_initialized(const evloop_event *ev)
{
    return ev && (ev->flags & EVLOOP__F_INIT) ? 1 : 0;
}

EVLOOP__API evloop_socket_t evloop_event_get_fd(const evloop_event *ev)
{
    return ev ? ev->fd : -1;
}

EVLOOP__API evloop *evloop_event_get_loop(const evloop_event *ev)
{
    return ev ? ev->loop : NULL;
}

EVLOOP__API short evloop_event_get_events(const evloop_event *ev)
{
    return ev ? ev->events : 0;
}

EVLOOP__API evloop_event_cb evloop_event_get_callback(const evloop_event *ev)
{
    return ev ? ev->cb : NULL;
}

EVLOOP__API void *evloop_event_get_callback_arg(const evloop_event *ev)
{
    return ev ? ev->arg : NULL;
}

EVLOOP__API int evloop_event_get_priority(const evloop_event *ev)
{
    return ev ? ev->priority : -1;
}

#ifndef EVLOOP_NO_STREAMS

/* The networking layer sits on the public event API only: a stream is two
   ordinary events (read and write) on its socket, a listener one event and a
   timer. Nothing below reaches into the loop's private state. */

#include <stdarg.h>
#include <sys/socket.h>
#include <sys/uio.h>
#ifndef EVLOOP_NO_STDIO
#include <stdio.h>
#endif

/*== BUFFERS ==*/

/* A buffer is a singly linked chain of chunks, each a header followed by its
   bytes in the same allocation. Every chunk holds data, except one empty
   "spare" kept when the buffer drains, so a connection that reads and
   consumes requests one at a time reuses one block instead of allocating. */
typedef struct evloop__chunk {
    struct evloop__chunk *next;
    unsigned char *data; /* cap bytes, right after this header */
    size_t cap;
    size_t off; /* bytes already consumed at the front */
    size_t len; /* live bytes from off */
} evloop__chunk;

/* How a stream follows its buffers: called after the length changed. */
typedef void (*evloop__buf_hook)(evloop_buffer *buf, void *arg);

struct evloop_buffer {
    evloop__chunk *first, *last;
    size_t total;
    evloop__buf_hook hook;
    void *hook_arg;
    int embedded; /* part of a stream: evloop_buffer_free must not touch it */
    int bulk;     /* the last read took a chunk's worth or more */
};

#define EVLOOP__CHUNK_MIN   (4096 - sizeof(evloop__chunk))  /* a page with its header */
#define EVLOOP__CHUNK_BIG   ((size_t)65536)                 /* growth stops doubling here */
#define EVLOOP__SPARE_MAX   ((size_t)65536)                 /* bigger drained chunks are freed */
#define EVLOOP__READ_CHUNK  (16384 - sizeof(evloop__chunk)) /* a read's new chunk */
#define EVLOOP__READ_BULK   (65536 - sizeof(evloop__chunk)) /* ... and the one behind it */
#define EVLOOP__WRITE_IOVS  32                              /* chunks handed to one writev */
#define EVLOOP__NOT_FOUND   ((size_t)-1)
#define EVLOOP__ACCEPT_WAIT 100000 /* us a listener rests after running out of fds */

static evloop__chunk *evloop__chunk_new(size_t cap)
{
    evloop__chunk *c;
    if (cap > SIZE_MAX - sizeof *c) {
        errno = EOVERFLOW;
        return NULL;
    }
    c = (evloop__chunk *)EVLOOP_MALLOC(sizeof *c + cap);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    c->next = NULL;
    c->data = (unsigned char *)(c + 1);
    c->cap = cap;
    c->off = c->len = 0;
    return c;
}

static size_t evloop__chunk_room(const evloop__chunk *c)
{
    return c->cap - c->off - c->len;
}

static unsigned char *evloop__chunk_end(evloop__chunk *c)
{
    return c->data + c->off + c->len;
}

/* Chunks double from a page up to 64 KiB as a buffer grows, so a big
   transfer takes few allocations and a small one wastes little. */
static size_t evloop__chunk_size(const evloop_buffer *buf, size_t need)
{
    size_t size = EVLOOP__CHUNK_MIN;
    if (buf->last && buf->last->cap >= size)
        size = buf->last->cap < EVLOOP__CHUNK_BIG / 2 ? buf->last->cap * 2 : EVLOOP__CHUNK_BIG;
    return need > size ? need : size;
}

static void evloop__buf_init(evloop_buffer *buf)
{
    memset(buf, 0, sizeof *buf);
}

static void evloop__buf_clear(evloop_buffer *buf)
{
    evloop__chunk *c, *next;
    for (c = buf->first; c; c = next) {
        next = c->next;
        EVLOOP_FREE(c);
    }
    buf->first = buf->last = NULL;
    buf->total = 0;
}

static void evloop__buf_changed(evloop_buffer *buf)
{
    if (buf->hook) buf->hook(buf, buf->hook_arg);
}

/* Append the chain first..last holding n bytes (all chunks with data). */
static void evloop__buf_splice(evloop_buffer *buf, evloop__chunk *first, evloop__chunk *last,
                               size_t n)
{
    if (!buf->total && buf->first) { /* only the spare: it would sit empty in the middle */
        EVLOOP_FREE(buf->first);
        buf->first = buf->last = NULL;
    }
    if (buf->last)
        buf->last->next = first;
    else
        buf->first = first;
    buf->last = last;
    last->next = NULL;
    buf->total += n;
}

/* Copy len bytes in: into the last chunk's free space, the rest into one new
   chunk. All or nothing. */
static int evloop__buf_append(evloop_buffer *buf, const unsigned char *p, size_t len)
{
    evloop__chunk *last = buf->last, *c = NULL;
    size_t room = last ? evloop__chunk_room(last) : 0, head = len < room ? len : room;
    if (head < len && !(c = evloop__chunk_new(evloop__chunk_size(buf, len - head)))) return -1;
    if (head) {
        memcpy(evloop__chunk_end(last), p, head);
        last->len += head;
        buf->total += head;
    }
    if (c) {
        memcpy(c->data, p + head, len - head);
        c->len = len - head;
        evloop__buf_splice(buf, c, c, c->len);
    }
    return 0;
}

/* The first chunk is used up: free it, or keep it as the spare when it was
   the only one and is not oversized. */
static void evloop__buf_pop(evloop_buffer *buf)
{
    evloop__chunk *c = buf->first;
    if (c == buf->last && c->cap <= EVLOOP__SPARE_MAX) {
        c->off = c->len = 0;
        return;
    }
    buf->first = c->next;
    if (!buf->first) buf->last = NULL;
    EVLOOP_FREE(c);
}

static void evloop__buf_drop(evloop_buffer *buf, size_t len)
{
    if (len > buf->total) len = buf->total;
    buf->total -= len;
    while (len) {
        evloop__chunk *c = buf->first;
        if (len < c->len) {
            c->off += len;
            c->len -= len;
            return;
        }
        len -= c->len;
        evloop__buf_pop(buf);
    }
}

static size_t evloop__buf_copy(const evloop_buffer *buf, unsigned char *out, size_t len)
{
    const evloop__chunk *c;
    size_t done = 0;
    for (c = buf->first; c && done < len; c = c->next) {
        size_t n = c->len < len - done ? c->len : len - done;
        memcpy(out + done, c->data + c->off, n);
        done += n;
    }
    return done;
}

static size_t evloop__int_clamp(size_t n)
{
    return n > (size_t)INT_MAX ? (size_t)INT_MAX : n;
}

/* Does p[0..len) start at byte i of chunk c (possibly running into the next)? */
static int evloop__buf_match(const evloop__chunk *c, size_t i, const unsigned char *p, size_t len)
{
    while (len) {
        size_t n;
        if (!c) return 0;
        n = c->len - i < len ? c->len - i : len;
        if (memcmp(c->data + c->off + i, p, n) != 0) return 0;
        p += n;
        len -= n;
        c = c->next;
        i = 0;
    }
    return 1;
}

/* Offset of the first p[0..len) (len > 0), memchr on its first byte. */
static size_t evloop__buf_search(const evloop_buffer *buf, const unsigned char *p, size_t len)
{
    const evloop__chunk *c;
    size_t base = 0;
    for (c = buf->first; c; base += c->len, c = c->next) {
        const unsigned char *d = c->data + c->off, *hit;
        size_t i = 0;
        while (i < c->len && (hit = (const unsigned char *)memchr(d + i, p[0], c->len - i))) {
            i = (size_t)(hit - d);
            if (buf->total - (base + i) < len) return EVLOOP__NOT_FOUND;
            if (evloop__buf_match(c, i, p, len)) return base + i;
            i++;
        }
    }
    return EVLOOP__NOT_FOUND;
}

/* Where the first CR or LF is, as an offset and as (chunk, index). */
static size_t evloop__buf_find_crlf(const evloop_buffer *buf, const evloop__chunk **at, size_t *idx)
{
    const evloop__chunk *c;
    size_t base = 0;
    for (c = buf->first; c; base += c->len, c = c->next) {
        const unsigned char *d = c->data + c->off;
        const unsigned char *cr = (const unsigned char *)memchr(d, '\r', c->len);
        const unsigned char *lf =
            (const unsigned char *)memchr(d, '\n', cr ? (size_t)(cr - d) : c->len);
        const unsigned char *hit = lf ? lf : cr;
        if (hit) {
            *at = c;
            *idx = (size_t)(hit - d);
            return base + *idx;
        }
    }
    return EVLOOP__NOT_FOUND;
}

static int evloop__is_crlf(unsigned char b)
{
    return b == '\r' || b == '\n';
}

/* EOL_ANY: the line ends at the first CR or LF and the EOL is the whole run
   of CR and LF bytes that follows (it may continue into later chunks). */
static size_t evloop__eol_any(const evloop_buffer *buf, size_t *eol_len)
{
    const evloop__chunk *c = NULL;
    size_t i = 0, n = 0, pos = evloop__buf_find_crlf(buf, &c, &i);
    if (pos == EVLOOP__NOT_FOUND) return pos;
    for (; c; c = c->next, i = 0) {
        for (; i < c->len && evloop__is_crlf(c->data[c->off + i]); i++) n++;
        if (i < c->len) break;
    }
    *eol_len = n;
    return pos;
}

static unsigned char evloop__buf_byte(const evloop_buffer *buf, size_t pos)
{
    const evloop__chunk *c = buf->first;
    for (; pos >= c->len; c = c->next) pos -= c->len;
    return c->data[c->off + pos];
}

/* Length of the first line and of its EOL, or EVLOOP__NOT_FOUND. */
static size_t evloop__buf_eol(const evloop_buffer *buf, enum evloop_eol_style eol, size_t *eol_len)
{
    static const unsigned char crlf[2] = {'\r', '\n'};
    size_t pos;
    *eol_len = 1;
    switch (eol) {
    case EVLOOP_EOL_ANY:
        return evloop__eol_any(buf, eol_len);
    case EVLOOP_EOL_CRLF:
        pos = evloop__buf_search(buf, crlf + 1, 1);
        if (pos != EVLOOP__NOT_FOUND && pos > 0 && evloop__buf_byte(buf, pos - 1) == '\r') {
            *eol_len = 2;
            pos--;
        }
        return pos;
    case EVLOOP_EOL_CRLF_STRICT:
        *eol_len = 2;
        return evloop__buf_search(buf, crlf, 2);
    case EVLOOP_EOL_LF:
        return evloop__buf_search(buf, crlf + 1, 1);
    case EVLOOP_EOL_NUL:
        return evloop__buf_search(buf, (const unsigned char *)"", 1);
    }
    return EVLOOP__NOT_FOUND;
}

/* Append a read target to iov (at most `left` bytes of it); returns its size. */
static size_t evloop__iov_put(struct iovec *iov, int *niov, void *base, size_t len, size_t left)
{
    size_t n = len < left ? len : left;
    if (!n) return 0;
    iov[*niov].iov_base = base;
    iov[*niov].iov_len = n;
    (*niov)++;
    return n;
}

/* Hand the first n bytes of a read to the buffer: they went into the last
   chunk's free space, then into the new chunks, in order. Unused new chunks
   are freed. */
static void evloop__buf_commit(evloop_buffer *buf, size_t room, evloop__chunk **fresh, size_t n)
{
    size_t k = n < room ? n : room;
    int i;
    if (k) {
        buf->last->len += k;
        buf->total += k;
        n -= k;
    }
    for (i = 0; i < 2; i++) {
        evloop__chunk *c = fresh[i];
        if (!c) continue;
        k = n < c->cap ? n : c->cap;
        if (!k) {
            EVLOOP_FREE(c);
            continue;
        }
        c->len = k;
        evloop__buf_splice(buf, c, c, k);
        n -= k;
    }
}

/* One read into the places iov names. A single place on a socket is a
   recv, which the kernel serves by a shorter path than read or readv (in
   a request-response server that is a few percent of all its time). *kind
   is as for evloop__sendv: 0 not known yet, 1 a socket, 2 anything else. */
static ssize_t evloop__recvv(int fd, struct iovec *iov, int niov, int *kind)
{
    ssize_t r;
    if (niov == 1 && *kind != 2) {
        do r = recv(fd, iov[0].iov_base, iov[0].iov_len, 0);
        while (r < 0 && errno == EINTR);
        if (r >= 0 || errno != ENOTSOCK) {
            *kind = 1;
            return r;
        }
        *kind = 2;
    }
    do r = niov == 1 ? read(fd, iov[0].iov_base, iov[0].iov_len) : readv(fd, iov, niov);
    while (r < 0 && errno == EINTR);
    return r;
}

/* One read into the last chunk's free space, a new chunk when that is
   small, and, while reads come in bulk, a large one behind them: a single
   system call takes what the socket has. Every byte has its place before
   the call, so a failed allocation loses nothing (it limits the read
   instead), and a connection that reads little never allocates the large
   chunk. */
static int evloop__buf_readv(evloop_buffer *buf, int fd, size_t want, int *kind)
{
    struct iovec iov[3];
    evloop__chunk *last = buf->last, *fresh[2] = {NULL, NULL};
    size_t room = last ? evloop__chunk_room(last) : 0, size;
    int niov = 0, err;
    ssize_t r;
    if (want > SIZE_MAX - buf->total) want = SIZE_MAX - buf->total;
    size = evloop__iov_put(iov, &niov, room ? evloop__chunk_end(last) : NULL, room, want);
    if (size < want && room < 4096 && (fresh[0] = evloop__chunk_new(EVLOOP__READ_CHUNK)))
        size += evloop__iov_put(iov, &niov, fresh[0]->data, fresh[0]->cap, want - size);
    if (size < want && buf->bulk && (fresh[1] = evloop__chunk_new(EVLOOP__READ_BULK)))
        size += evloop__iov_put(iov, &niov, fresh[1]->data, fresh[1]->cap, want - size);
    if (!size) return -1; /* ENOMEM, before anything was read */
    r = evloop__recvv(fd, iov, niov, kind);
    err = errno; /* the allocator's free may change it */
    evloop__buf_commit(buf, room, fresh, r > 0 ? (size_t)r : 0);
    buf->bulk = r >= (ssize_t)EVLOOP__READ_CHUNK;
    errno = err;
    return (int)r;
}

/* writev to a pipe (or anything else that is not a socket) whose reader is
   gone raises SIGPIPE, which no flag turns off: it is blocked in this thread
   for the call, and taken back if this write raised it, so the caller gets
   EPIPE as from a socket. */
static ssize_t evloop__writev_quiet(int fd, struct iovec *iov, int niov)
{
    sigset_t pipe_only, old, pending;
    ssize_t r;
    int err, sig, had;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    had = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    evloop__sigmask(SIG_BLOCK, &pipe_only, &old);
    do r = writev(fd, iov, niov);
    while (r < 0 && errno == EINTR);
    err = errno;
    if (r < 0 && err == EPIPE && !had && sigpending(&pending) == 0 &&
        sigismember(&pending, SIGPIPE))
        sigwait(&pipe_only, &sig);
    evloop__sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return r;
}

/* send or sendmsg with MSG_NOSIGNAL on sockets so a closed peer gives EPIPE,
   not a SIGPIPE (send, the kernel's shorter path, when there is one chunk);
   a quiet writev for anything else. *kind remembers which (0: not known). */
static ssize_t evloop__sendv(int fd, struct iovec *iov, int niov, int *kind)
{
    ssize_t r;
#ifdef MSG_NOSIGNAL
    if (*kind != 2) {
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = iov;
#ifdef __GNUC__
        m.msg_iovlen = (__typeof__(m.msg_iovlen))niov; /* size_t in glibc, int in others */
#else
        m.msg_iovlen = niov;
#endif
        do
            r = niov == 1 ? send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                          : sendmsg(fd, &m, MSG_NOSIGNAL);
        while (r < 0 && errno == EINTR);
        if (r >= 0 || errno != ENOTSOCK) {
            *kind = 1;
            return r;
        }
        *kind = 2;
    }
#else
    (void)kind;
#endif
    return evloop__writev_quiet(fd, iov, niov);
}

/* One gathering write of the first chunks (at most INT_MAX bytes). */
static int evloop__buf_writev(evloop_buffer *buf, int fd, int *kind)
{
    struct iovec iov[EVLOOP__WRITE_IOVS];
    evloop__chunk *c;
    size_t sum = 0;
    int niov = 0;
    ssize_t r;
    for (c = buf->first; c && niov < EVLOOP__WRITE_IOVS && sum < (size_t)INT_MAX; c = c->next) {
        size_t n = c->len < (size_t)INT_MAX - sum ? c->len : (size_t)INT_MAX - sum;
        if (!n) continue;
        iov[niov].iov_base = c->data + c->off;
        iov[niov++].iov_len = n;
        sum += n;
    }
    if (!niov) return 0;
    r = evloop__sendv(fd, iov, niov, kind);
    if (r > 0) evloop__buf_drop(buf, (size_t)r);
    return (int)r;
}

/* Gather the first n bytes (0 < n <= total) into one chunk: the first one
   when it has room behind its bytes, else a new head. */
static unsigned char *evloop__buf_gather(evloop_buffer *buf, size_t n)
{
    evloop__chunk *t = buf->first;
    if (t->cap - t->off < n) {
        if (!(t = evloop__chunk_new(n < EVLOOP__CHUNK_MIN ? EVLOOP__CHUNK_MIN : n))) return NULL;
        t->next = buf->first;
        buf->first = t;
    }
    while (t->len < n) {
        evloop__chunk *c = t->next;
        size_t take = n - t->len < c->len ? n - t->len : c->len;
        memcpy(evloop__chunk_end(t), c->data + c->off, take);
        t->len += take;
        c->off += take;
        c->len -= take;
        if (c->len) continue;
        t->next = c->next;
        if (buf->last == c) buf->last = t;
        EVLOOP_FREE(c);
    }
    return t->data + t->off;
}

EVLOOP__API evloop_buffer *evloop_buffer_new(void)
{
    evloop_buffer *buf = (evloop_buffer *)EVLOOP_MALLOC(sizeof *buf);
    if (!buf) {
        errno = ENOMEM;
        return NULL;
    }
    evloop__buf_init(buf);
    return buf;
}

EVLOOP__API void evloop_buffer_free(evloop_buffer *buf)
{
    if (!buf || buf->embedded) return;
    evloop__buf_clear(buf);
    EVLOOP_FREE(buf);
}

EVLOOP__API size_t evloop_buffer_get_length(const evloop_buffer *buf)
{
    return buf ? buf->total : 0;
}

EVLOOP__API int evloop_buffer_add(evloop_buffer *buf, const void *data, size_t len)
{
    if (!buf || (!data && len)) return evloop__fail(EINVAL);
    if (len > SIZE_MAX - buf->total) return evloop__fail(EOVERFLOW);
    if (!len) return 0;
    if (evloop__buf_append(buf, (const unsigned char *)data, len) < 0) return -1;
    evloop__buf_changed(buf);
    return 0;
}

#ifndef EVLOOP_NO_STDIO
/* Format straight into the last chunk's free space; only when the text does
   not fit, format a second time into a chunk of the size the first call told. */
EVLOOP__API int evloop_buffer_add_vprintf(evloop_buffer *buf, const char *fmt, va_list ap)
{
    evloop__chunk *last, *c;
    size_t room;
    va_list first;
    int n;
    if (!buf || !fmt) return evloop__fail(EINVAL);
    last = buf->last;
    room = last ? evloop__chunk_room(last) : 0;
    va_copy(first, ap);
    n = vsnprintf(room ? (char *)evloop__chunk_end(last) : NULL, room, fmt, first);
    va_end(first);
    if (n < 0) return evloop__fail(errno ? errno : EINVAL);
    if ((size_t)n > SIZE_MAX - buf->total) return evloop__fail(EOVERFLOW);
    if ((size_t)n < room) {
        last->len += (size_t)n;
        buf->total += (size_t)n;
    } else {
        if (!(c = evloop__chunk_new(evloop__chunk_size(buf, (size_t)n + 1)))) return -1;
        vsnprintf((char *)c->data, (size_t)n + 1, fmt, ap);
        c->len = (size_t)n;
        evloop__buf_splice(buf, c, c, c->len);
    }
    if (n) evloop__buf_changed(buf);
    return n;
}

EVLOOP__API int evloop_buffer_add_printf(evloop_buffer *buf, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = evloop_buffer_add_vprintf(buf, fmt, ap);
    va_end(ap);
    return n;
}
#endif

EVLOOP__API int evloop_buffer_add_buffer(evloop_buffer *dst, evloop_buffer *src)
{
    evloop__chunk *first, *last;
    size_t n;
    if (!dst || !src || dst == src) return evloop__fail(EINVAL);
    if (!src->total) return 0;
    if (src->total > SIZE_MAX - dst->total) return evloop__fail(EOVERFLOW);
    first = src->first;
    last = src->last;
    n = src->total;
    src->first = src->last = NULL;
    src->total = 0;
    evloop__buf_splice(dst, first, last, n);
    evloop__buf_changed(src);
    evloop__buf_changed(dst);
    return 0;
}

EVLOOP__API int evloop_buffer_copyout(const evloop_buffer *buf, void *data, size_t len)
{
    if (!buf || (!data && len)) return evloop__fail(EINVAL);
    return (int)evloop__buf_copy(buf, (unsigned char *)data, evloop__int_clamp(len));
}

EVLOOP__API int evloop_buffer_remove(evloop_buffer *buf, void *data, size_t len)
{
    size_t n;
    if (!buf || (!data && len)) return evloop__fail(EINVAL);
    n = evloop__buf_copy(buf, (unsigned char *)data, evloop__int_clamp(len));
    if (!n) return 0;
    evloop__buf_drop(buf, n);
    evloop__buf_changed(buf);
    return (int)n;
}

EVLOOP__API int evloop_buffer_drain(evloop_buffer *buf, size_t len)
{
    if (!buf) return evloop__fail(EINVAL);
    if (!len || !buf->total) return 0;
    evloop__buf_drop(buf, len);
    evloop__buf_changed(buf);
    return 0;
}

EVLOOP__API unsigned char *evloop_buffer_pullup(evloop_buffer *buf, long size)
{
    size_t n;
    if (!buf || size < -1 || (size >= 0 && (unsigned long)size > buf->total)) {
        errno = EINVAL;
        return NULL;
    }
    if (!buf->total) return NULL;
    n = size < 0 ? buf->total : (size_t)size;
    if (buf->first->len >= n) return buf->first->data + buf->first->off;
    return evloop__buf_gather(buf, n);
}

EVLOOP__API long evloop_buffer_find(const evloop_buffer *buf, const void *what, size_t len)
{
    size_t pos;
    if (!buf || (!what && len)) return evloop__fail(EINVAL);
    if (!len) return 0;
    pos = evloop__buf_search(buf, (const unsigned char *)what, len);
    if (pos == EVLOOP__NOT_FOUND) return -1;
    if (pos > (size_t)LONG_MAX) return evloop__fail(EOVERFLOW);
    return (long)pos;
}

EVLOOP__API char *evloop_buffer_readln(evloop_buffer *buf, size_t *n_read,
                                       enum evloop_eol_style eol)
{
    size_t eol_len = 0, len;
    char *line;
    if (n_read) *n_read = 0;
    if (!buf || (unsigned)eol > (unsigned)EVLOOP_EOL_NUL) {
        errno = EINVAL;
        return NULL;
    }
    len = evloop__buf_eol(buf, eol, &eol_len);
    errno = 0;
    if (len == EVLOOP__NOT_FOUND) return NULL;
    if (!(line = (char *)EVLOOP_MALLOC(len + 1))) { /* len < total: len + 1 cannot wrap */
        errno = ENOMEM;
        return NULL;
    }
    evloop__buf_copy(buf, (unsigned char *)line, len);
    line[len] = '\0';
    evloop__buf_drop(buf, len + eol_len);
    evloop__buf_changed(buf);
    if (n_read) *n_read = len;
    return line;
}

EVLOOP__API void evloop_mem_free(void *p)
{
    EVLOOP_FREE(p);
}

EVLOOP__API int evloop_buffer_read(evloop_buffer *buf, evloop_socket_t fd, int howmuch)
{
    int kind = 0, n;
    if (!buf || fd < 0 || howmuch == 0) return evloop__fail(EINVAL);
    if (buf->total == SIZE_MAX) return evloop__fail(EOVERFLOW);
    n = evloop__buf_readv(buf, fd, howmuch < 0 ? (size_t)INT_MAX : (size_t)howmuch, &kind);
    if (n > 0) evloop__buf_changed(buf);
    return n;
}

EVLOOP__API int evloop_buffer_write(evloop_buffer *buf, evloop_socket_t fd)
{
    int kind = 0, n;
    if (!buf || fd < 0) return evloop__fail(EINVAL);
    n = evloop__buf_writev(buf, fd, &kind);
    if (n > 0) evloop__buf_changed(buf);
    return n;
}

/*== SOCKET UTILITIES ==*/

EVLOOP__API int evloop_make_socket_nonblocking(evloop_socket_t fd)
{
    return evloop__set_nonblock(fd);
}

EVLOOP__API int evloop_make_socket_closeonexec(evloop_socket_t fd)
{
    return evloop__set_cloexec(fd);
}

EVLOOP__API int evloop_socketpair(int family, int type, int protocol, evloop_socket_t fds[2])
{
    if (!fds) return evloop__fail(EINVAL);
    return socketpair(family, type, protocol, fds);
}

/* Where the platform has no MSG_NOSIGNAL, the socket itself is told. */
static void evloop__sock_nosigpipe(int fd)
{
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
#else
    (void)fd;
#endif
}

/* A non-blocking, close-on-exec socket: atomically where the system can. */
static int evloop__socket(int family)
{
    int fd;
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 || errno != EINVAL) return fd; /* EINVAL: a kernel without the flags */
#endif
    fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (evloop_make_socket_nonblocking(fd) < 0 || evloop_make_socket_closeonexec(fd) < 0) {
        evloop__sock_close(fd);
        return -1;
    }
    return fd;
}

/* accept4 sets both flags in the accepting call. glibc declares it only
   under _GNU_SOURCE; under _DEFAULT_SOURCE (what evloop.h asks for when
   nothing else was) the raw system call does the same. */
static int evloop__accept(int fd, struct sockaddr *sa, socklen_t *len)
{
    int c;
#if defined(__linux__) && defined(SOCK_NONBLOCK) && defined(_GNU_SOURCE)
    c = accept4(fd, sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0 || errno != ENOSYS) return c;
#elif defined(__linux__) && defined(SOCK_NONBLOCK) && defined(SYS_accept4) &&                      \
    defined(_DEFAULT_SOURCE)
    c = (int)syscall(SYS_accept4, fd, sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0 || errno != ENOSYS) return c;
#endif
    c = accept(fd, sa, len);
    if (c < 0) return -1;
    /* A fresh socket has no other flags to keep: set, without reading first. */
    if (fcntl(c, F_SETFL, O_NONBLOCK) < 0 || fcntl(c, F_SETFD, FD_CLOEXEC) < 0) {
        evloop__sock_close(c);
        return -1;
    }
    return c;
}

static void evloop__noop(evloop_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Check a timeout exactly as evloop_event_add will (a common-timeout value
   from this loop included) by adding a throwaway timer. */
static int evloop__tv_check(evloop *loop, const struct timeval *tv)
{
    evloop_event probe;
    int r;
    if (evloop_timer_assign(&probe, loop, evloop__noop, NULL) < 0) return -1;
    r = evloop_event_add(&probe, tv);
    evloop_event_del(&probe);
    return r;
}

/*== STREAMS ==*/

/* The stream runs one persistent READ event while it wants input and one
   persistent WRITE event while output waits. Output queued from inside the
   stream's own callbacks is written as soon as the callback returns, so a
   request answered in the read callback costs no change of interest.

   Freeing from a callback: `depth` counts the stream's handlers on the stack;
   evloop_stream_free then only marks the stream and stops its events, and
   the handler that brings depth back to 0 releases it. */
struct evloop_stream {
    evloop *loop;
    evloop_event rev, wev; /* assigned whenever fd >= 0 */
    evloop_buffer input, output;
    evloop_stream_data_cb readcb, writecb;
    evloop_stream_event_cb eventcb;
    void *arg;
    size_t read_low, read_high, write_low, write_high;
    struct timeval read_tv, write_tv;
    evloop_socket_t fd;
    int options;
    int depth;
    int connect_err; /* connect() failed at once; reported from the loop */
    int sock_kind;   /* for evloop__sendv and evloop__recvv */
    short enabled;
    unsigned char reading, writing; /* rev / wev are added */
    unsigned char has_read_tv, has_write_tv;
    unsigned char connecting, broken, eof, freed, flush_due;
};

static int evloop__stream_want_read(const evloop_stream *s)
{
    return s->fd >= 0 && !s->freed && !s->connecting && !s->broken && !s->eof &&
           (s->enabled & EVLOOP_READ) && !(s->read_high && s->input.total >= s->read_high);
}

static int evloop__stream_want_write(const evloop_stream *s)
{
    if (s->fd < 0 || s->freed || s->broken) return 0;
    if (s->connecting) return !s->connect_err;
    return (s->enabled & EVLOOP_WRITE) && s->output.total;
}

/* Add or delete one direction's event to match what the stream wants. */
static int evloop__stream_sync(evloop_event *ev, int want, unsigned char *on,
                               const struct timeval *tv)
{
    if (want && !*on) {
        if (evloop_event_add(ev, tv) < 0) return -1;
        *on = 1;
    } else if (!want && *on) {
        evloop_event_del(ev);
        *on = 0;
    }
    return 0;
}

static int evloop__stream_sync_read(evloop_stream *s)
{
    return evloop__stream_sync(&s->rev, evloop__stream_want_read(s), &s->reading,
                               s->has_read_tv ? &s->read_tv : NULL);
}

static int evloop__stream_sync_write(evloop_stream *s)
{
    return evloop__stream_sync(&s->wev, evloop__stream_want_write(s), &s->writing,
                               s->has_write_tv ? &s->write_tv : NULL);
}

/* Input drained below the high watermark resumes reading (and the reverse). */
static void evloop__stream_input_hook(evloop_buffer *buf, void *arg)
{
    (void)buf;
    evloop__stream_sync_read((evloop_stream *)arg);
}

static void evloop__stream_output_hook(evloop_buffer *buf, void *arg)
{
    evloop_stream *s = (evloop_stream *)arg;
    if (s->writing || !buf->total) return;
    if (s->depth)
        s->flush_due = 1; /* the handler on the stack writes when the callback returns */
    else
        evloop__stream_sync_write(s);
}

static void evloop__stream_event(evloop_stream *s, short what, int err)
{
    if (!s->eventcb) return;
    errno = err;
    s->eventcb(s, what, s->arg);
}

/* Stop one direction (EVLOOP_READ or EVLOOP_WRITE) and tell the user why. */
static void evloop__stream_stop(evloop_stream *s, short dir, short what, int err)
{
    s->enabled &= (short)~dir;
    evloop__stream_sync_read(s);
    evloop__stream_sync_write(s);
    evloop__stream_event(s, what, err);
}

static void evloop__stream_do_read(evloop_stream *s)
{
    size_t want = (size_t)INT_MAX;
    int n;
    if (s->read_high) want = s->read_high > s->input.total ? s->read_high - s->input.total : 1;
    n = evloop__buf_readv(&s->input, s->fd, want < (size_t)INT_MAX ? want : (size_t)INT_MAX,
                          &s->sock_kind);
    if (n > 0) {
        /* No re-add for the read timeout: rev is persistent, and the loop
           restarts its timeout each time it fires for input. */
        evloop__stream_sync_read(s); /* pause at the high watermark */
        if (s->input.total >= s->read_low && s->readcb) s->readcb(s, s->arg);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n == 0) {
        s->eof = 1;
        evloop__stream_stop(s, EVLOOP_READ, EVLOOP_STREAM_READING | EVLOOP_STREAM_EOF, 0);
    } else {
        evloop__stream_stop(s, EVLOOP_READ, EVLOOP_STREAM_READING | EVLOOP_STREAM_ERROR, errno);
    }
}

static void evloop__stream_do_write(evloop_stream *s)
{
    int n;
    if (!(s->enabled & EVLOOP_WRITE) || s->connecting || s->broken || !s->output.total) return;
    n = evloop__buf_writev(&s->output, s->fd, &s->sock_kind);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        evloop__stream_stop(s, EVLOOP_WRITE, EVLOOP_STREAM_WRITING | EVLOOP_STREAM_ERROR, errno);
        return;
    }
    if (s->has_write_tv && s->writing) evloop_event_add(&s->wev, &s->write_tv); /* progress */
    if (s->output.total <= s->write_low && s->writecb) s->writecb(s, s->arg);
}

/* The write event of a connecting stream fired (or a failure was queued). */
static void evloop__stream_connected(evloop_stream *s, short what)
{
    int err = s->connect_err;
    socklen_t len = sizeof err;
    if (!err && !(what & (EVLOOP_READ | EVLOOP_WRITE))) { /* the write timeout bounds connect */
        s->connecting = 0;
        s->broken = 1;
        evloop__stream_stop(s, EVLOOP_WRITE, EVLOOP_STREAM_WRITING | EVLOOP_STREAM_TIMEOUT,
                            ETIMEDOUT);
        return;
    }
    if (!err && getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    s->connecting = 0;
    s->connect_err = 0;
    s->broken = err != 0;
    evloop__stream_sync_write(s);
    if (err) {
        evloop__stream_event(s, EVLOOP_STREAM_ERROR, err);
        return;
    }
    evloop__stream_sync_read(s);
    s->flush_due = 1; /* output queued while connecting */
    evloop__stream_event(s, EVLOOP_STREAM_CONNECTED, 0);
}

static void evloop__stream_destroy(evloop_stream *s);

/* Last step of every handler: write what its callbacks queued, then either
   release a stream freed meanwhile or arm the write event for what is left. */
static void evloop__stream_leave(evloop_stream *s)
{
    if (s->depth == 1 && !s->freed && s->flush_due) {
        s->flush_due = 0;
        evloop__stream_do_write(s);
    }
    if (--s->depth) return;
    if (s->freed)
        evloop__stream_destroy(s);
    else
        evloop__stream_sync_write(s);
}

static void evloop__stream_on_read(evloop_socket_t fd, short what, void *arg)
{
    evloop_stream *s = (evloop_stream *)arg;
    (void)fd;
    s->depth++;
    if (what & EVLOOP_READ)
        evloop__stream_do_read(s);
    else
        evloop__stream_stop(s, EVLOOP_READ, EVLOOP_STREAM_READING | EVLOOP_STREAM_TIMEOUT,
                            ETIMEDOUT);
    evloop__stream_leave(s);
}

static void evloop__stream_on_write(evloop_socket_t fd, short what, void *arg)
{
    evloop_stream *s = (evloop_stream *)arg;
    (void)fd;
    s->depth++;
    if (s->connecting)
        evloop__stream_connected(s, what);
    else if (what & EVLOOP_WRITE)
        evloop__stream_do_write(s);
    else
        evloop__stream_stop(s, EVLOOP_WRITE, EVLOOP_STREAM_WRITING | EVLOOP_STREAM_TIMEOUT,
                            ETIMEDOUT);
    evloop__stream_leave(s);
}

static void evloop__stream_attach(evloop_stream *s, evloop_socket_t fd)
{
    s->fd = fd;
    evloop_event_assign(&s->rev, s->loop, fd, EVLOOP_READ | EVLOOP_PERSIST, evloop__stream_on_read,
                        s);
    evloop_event_assign(&s->wev, s->loop, fd, EVLOOP_WRITE | EVLOOP_PERSIST,
                        evloop__stream_on_write, s);
    evloop__sock_nosigpipe(fd);
}

/* What is still queued gets one more chance while the socket takes it. */
static void evloop__stream_destroy(evloop_stream *s)
{
    if (s->fd >= 0 && !s->connecting && !s->broken) {
        while (s->output.total && evloop__buf_writev(&s->output, s->fd, &s->sock_kind) > 0) {
        }
    }
    if (s->fd >= 0 && (s->options & EVLOOP_STREAM_CLOSE_ON_FREE)) evloop__close_fd(s->loop, s->fd);
    evloop__buf_clear(&s->input);
    evloop__buf_clear(&s->output);
    EVLOOP_FREE(s);
}

EVLOOP__API evloop_stream *evloop_stream_new(evloop *loop, evloop_socket_t fd, int options)
{
    evloop_stream *s;
    if (!loop || fd < -1 || (options & ~EVLOOP_STREAM_CLOSE_ON_FREE)) {
        errno = EINVAL;
        return NULL;
    }
    if (fd >= 0 && evloop_make_socket_nonblocking(fd) < 0) return NULL;
    if (!(s = (evloop_stream *)EVLOOP_MALLOC(sizeof *s))) {
        errno = ENOMEM;
        return NULL;
    }
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->fd = -1;
    s->options = options;
    s->enabled = EVLOOP_WRITE; /* as in libevent: reading starts when enabled */
    evloop__buf_init(&s->input);
    evloop__buf_init(&s->output);
    s->input.embedded = s->output.embedded = 1;
    s->input.hook = evloop__stream_input_hook;
    s->output.hook = evloop__stream_output_hook;
    s->input.hook_arg = s->output.hook_arg = s;
    if (fd >= 0) evloop__stream_attach(s, fd);
    return s;
}

EVLOOP__API void evloop_stream_free(evloop_stream *s)
{
    if (!s || s->freed) return;
    s->freed = 1;
    s->readcb = s->writecb = NULL;
    s->eventcb = NULL;
    if (s->fd >= 0) { /* also cancels a queued callback, e.g. a failed connect */
        evloop_event_del(&s->rev);
        evloop_event_del(&s->wev);
        s->reading = s->writing = 0;
    }
    if (!s->depth) evloop__stream_destroy(s);
}

EVLOOP__API void evloop_stream_setcb(evloop_stream *s, evloop_stream_data_cb readcb,
                                     evloop_stream_data_cb writecb, evloop_stream_event_cb eventcb,
                                     void *arg)
{
    if (!s || s->freed) return;
    s->readcb = readcb;
    s->writecb = writecb;
    s->eventcb = eventcb;
    s->arg = arg;
}

/* Move the enabled set to `enabled`, undoing it if the loop refuses. */
static int evloop__stream_set_enabled(evloop_stream *s, short enabled)
{
    short old = s->enabled;
    s->enabled = enabled;
    if (evloop__stream_sync_read(s) == 0 && evloop__stream_sync_write(s) == 0) return 0;
    {
        int err = errno;
        s->enabled = old;
        evloop__stream_sync_read(s);
        evloop__stream_sync_write(s);
        return evloop__fail(err);
    }
}

EVLOOP__API int evloop_stream_enable(evloop_stream *s, short what)
{
    if (!s || s->freed || (what & ~(EVLOOP_READ | EVLOOP_WRITE))) return evloop__fail(EINVAL);
    return evloop__stream_set_enabled(s, (short)(s->enabled | what));
}

EVLOOP__API int evloop_stream_disable(evloop_stream *s, short what)
{
    if (!s || s->freed || (what & ~(EVLOOP_READ | EVLOOP_WRITE))) return evloop__fail(EINVAL);
    return evloop__stream_set_enabled(s, (short)(s->enabled & ~what));
}

EVLOOP__API short evloop_stream_get_enabled(const evloop_stream *s)
{
    return s ? s->enabled : 0;
}

EVLOOP__API evloop_buffer *evloop_stream_get_input(evloop_stream *s)
{
    return s ? &s->input : NULL;
}

EVLOOP__API evloop_buffer *evloop_stream_get_output(evloop_stream *s)
{
    return s ? &s->output : NULL;
}

/* The write high watermark: refuse n more bytes that would pass it. */
static int evloop__stream_room(const evloop_stream *s, size_t n)
{
    if (!s->write_high) return 0;
    if (n > s->write_high || s->output.total > s->write_high - n) return evloop__fail(ENOBUFS);
    return 0;
}

EVLOOP__API int evloop_stream_write(evloop_stream *s, const void *data, size_t len)
{
    if (!s || s->freed || (!data && len)) return evloop__fail(EINVAL);
    if (evloop__stream_room(s, len) < 0) return -1;
    return evloop_buffer_add(&s->output, data, len);
}

EVLOOP__API int evloop_stream_write_buffer(evloop_stream *s, evloop_buffer *buf)
{
    if (!s || s->freed || !buf) return evloop__fail(EINVAL);
    if (evloop__stream_room(s, buf->total) < 0) return -1;
    return evloop_buffer_add_buffer(&s->output, buf);
}

EVLOOP__API size_t evloop_stream_read(evloop_stream *s, void *data, size_t len)
{
    size_t n;
    if (!s || !data) return 0;
    n = evloop__buf_copy(&s->input, (unsigned char *)data, len);
    if (!n) return 0;
    evloop__buf_drop(&s->input, n);
    evloop__buf_changed(&s->input);
    return n;
}

EVLOOP__API void evloop_stream_setwatermark(evloop_stream *s, short events, size_t lowmark,
                                            size_t highmark)
{
    if (!s) return;
    if (highmark && highmark < lowmark) highmark = lowmark;
    if (events & EVLOOP_WRITE) {
        s->write_low = lowmark;
        s->write_high = highmark;
    }
    if (events & EVLOOP_READ) {
        s->read_low = lowmark;
        s->read_high = highmark;
        evloop__stream_sync_read(s);
    }
}

/* NULL or {0, 0} means no timeout, as in libevent. */
static int evloop__stream_take_tv(evloop *loop, const struct timeval *tv, struct timeval *dst,
                                  unsigned char *has)
{
    if (!tv || (!tv->tv_sec && !tv->tv_usec)) {
        *has = 0;
        return 0;
    }
    if (evloop__tv_check(loop, tv) < 0) return -1;
    *dst = *tv;
    *has = 1;
    return 0;
}

EVLOOP__API int evloop_stream_set_timeouts(evloop_stream *s, const struct timeval *read_tv,
                                           const struct timeval *write_tv)
{
    struct timeval rtv, wtv;
    unsigned char has_r, has_w;
    if (!s || s->freed) return evloop__fail(EINVAL);
    if (evloop__stream_take_tv(s->loop, read_tv, &rtv, &has_r) < 0 ||
        evloop__stream_take_tv(s->loop, write_tv, &wtv, &has_w) < 0)
        return -1;
    s->has_read_tv = has_r;
    s->has_write_tv = has_w;
    if (has_r) s->read_tv = rtv;
    if (has_w) s->write_tv = wtv;
    if (s->reading) evloop_event_add(&s->rev, has_r ? &s->read_tv : NULL);
    if (s->writing) evloop_event_add(&s->wev, has_w ? &s->write_tv : NULL);
    return 0;
}

EVLOOP__API int evloop_stream_connect(evloop_stream *s, const struct sockaddr *sa, int socklen)
{
    int made = 0;
    if (!s || !sa || socklen <= 0 || s->freed || s->connecting || s->broken)
        return evloop__fail(EINVAL);
    if (s->fd < 0) {
        int fd = evloop__socket(sa->sa_family);
        if (fd < 0) return -1;
        evloop__stream_attach(s, fd);
        made = 1;
    }
    s->connecting = 1;
    if (connect(s->fd, sa, (socklen_t)socklen) < 0 && errno != EINPROGRESS && errno != EINTR) {
        s->connect_err = errno; /* reported through the event callback, from the loop */
        evloop__stream_sync_read(s);
        evloop__stream_sync_write(s);
        evloop_event_active(&s->wev, EVLOOP_WRITE, 1);
        return 0;
    }
    evloop__stream_sync_read(s);
    if (evloop__stream_sync_write(s) == 0) return 0;
    s->connecting = 0;
    if (made) {
        evloop__close_fd(s->loop, s->fd);
        s->fd = -1;
    }
    return -1;
}

EVLOOP__API evloop_socket_t evloop_stream_get_fd(const evloop_stream *s)
{
    return s ? s->fd : -1;
}

/*== LISTENER ==*/

/* Accepting runs until EAGAIN. When accept fails for want of descriptors
   (EMFILE, ENFILE) or memory, the pending connection stays in the backlog
   and the socket stays readable, so retrying at once would spin: instead the
   listener rests on a timer and tries again. */
struct evloop_listener {
    evloop *loop;
    evloop_event ev;    /* READ|PERSIST on the listening socket */
    evloop_event pause; /* ends a rest after accept ran out of resources */
    evloop_listener_cb cb;
    void *arg;
    evloop_socket_t fd;
    unsigned flags;
    int depth; /* as for streams: free inside the callback waits for 0 */
    unsigned char enabled, paused, freed;
};

#define EVLOOP__LISTENER_FLAGS                                                                     \
    (EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_REUSEABLE | EVLOOP_LISTENER_DISABLED |        \
     EVLOOP_LISTENER_REUSEABLE_PORT)

static void evloop__listener_destroy(evloop_listener *l)
{
    if (l->flags & EVLOOP_LISTENER_CLOSE_ON_FREE) evloop__close_fd(l->loop, l->fd);
    EVLOOP_FREE(l);
}

static void evloop__listener_rest(evloop_listener *l)
{
    struct timeval tv = {0, EVLOOP__ACCEPT_WAIT};
    evloop_event_del(&l->ev);
    l->paused = 1;
    evloop_event_add(&l->pause, &tv);
}

static void evloop__listener_on_rested(evloop_socket_t fd, short what, void *arg)
{
    evloop_listener *l = (evloop_listener *)arg;
    (void)fd;
    (void)what;
    l->paused = 0;
    if (l->enabled && evloop_event_add(&l->ev, NULL) < 0) evloop__listener_rest(l);
}

/* After a failed accept: 1 to go on with the next connection, 0 to stop. */
static int evloop__listener_failed(evloop_listener *l, int err)
{
    if (err == EINTR || err == ECONNABORTED || err == EPROTO) return 1; /* that one is gone */
    if (err == EAGAIN || err == EWOULDBLOCK) return 0;
    evloop__listener_rest(l); /* EMFILE, ENFILE, ENOBUFS, ENOMEM, or worse */
    return 0;
}

static void evloop__listener_on_accept(evloop_socket_t fd, short what, void *arg)
{
    evloop_listener *l = (evloop_listener *)arg;
    (void)fd;
    (void)what;
    l->depth++;
    while (l->enabled && !l->paused && !l->freed) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int c = evloop__accept(l->fd, (struct sockaddr *)&ss, &len);
        if (c >= 0)
            l->cb(l, c, (struct sockaddr *)&ss, (int)len, l->arg);
        else if (!evloop__listener_failed(l, errno))
            break;
    }
    if (--l->depth == 0 && l->freed) evloop__listener_destroy(l);
}

EVLOOP__API evloop_listener *evloop_listener_new(evloop *loop, evloop_listener_cb cb, void *arg,
                                                 unsigned flags, int backlog, evloop_socket_t fd)
{
    evloop_listener *l;
    if (!loop || !cb || fd < 0 || (flags & ~(unsigned)EVLOOP__LISTENER_FLAGS)) {
        errno = EINVAL;
        return NULL;
    }
    if (backlog && listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) return NULL;
    if (evloop_make_socket_nonblocking(fd) < 0) return NULL;
    if (!(l = (evloop_listener *)EVLOOP_MALLOC(sizeof *l))) {
        errno = ENOMEM;
        return NULL;
    }
    memset(l, 0, sizeof *l);
    l->loop = loop;
    l->cb = cb;
    l->arg = arg;
    l->fd = fd;
    l->flags = flags;
    evloop_event_assign(&l->ev, loop, fd, EVLOOP_READ | EVLOOP_PERSIST, evloop__listener_on_accept,
                        l);
    evloop_timer_assign(&l->pause, loop, evloop__listener_on_rested, l);
    if (!(flags & EVLOOP_LISTENER_DISABLED) && evloop_listener_enable(l) < 0) {
        int err = errno;
        EVLOOP_FREE(l); /* the socket stays the caller's */
        errno = err;
        return NULL;
    }
    return l;
}

static int evloop__sock_option(int fd, int name)
{
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, name, &on, sizeof on);
}

static int evloop__listener_prepare(int fd, unsigned flags, const struct sockaddr *sa, int socklen)
{
    if ((flags & EVLOOP_LISTENER_REUSEABLE) && evloop__sock_option(fd, SO_REUSEADDR) < 0) return -1;
    if (flags & EVLOOP_LISTENER_REUSEABLE_PORT) {
#ifdef SO_REUSEPORT
        if (evloop__sock_option(fd, SO_REUSEPORT) < 0) return -1;
#else
        return evloop__fail(ENOPROTOOPT);
#endif
    }
    return bind(fd, sa, (socklen_t)socklen);
}

EVLOOP__API evloop_listener *evloop_listener_new_bind(evloop *loop, evloop_listener_cb cb,
                                                      void *arg, unsigned flags, int backlog,
                                                      const struct sockaddr *sa, int socklen)
{
    evloop_listener *l;
    int fd;
    if (!loop || !cb || !sa || socklen <= 0 || (flags & ~(unsigned)EVLOOP__LISTENER_FLAGS)) {
        errno = EINVAL;
        return NULL;
    }
    if ((fd = evloop__socket(sa->sa_family)) < 0) return NULL;
    if (evloop__listener_prepare(fd, flags, sa, socklen) < 0 ||
        !(l = evloop_listener_new(loop, cb, arg, flags, backlog > 0 ? backlog : -1, fd))) {
        evloop__sock_close(fd);
        return NULL;
    }
    return l;
}

EVLOOP__API void evloop_listener_free(evloop_listener *l)
{
    if (!l || l->freed) return;
    l->freed = 1;
    l->enabled = 0;
    evloop_event_del(&l->ev);
    evloop_event_del(&l->pause);
    if (!l->depth) evloop__listener_destroy(l);
}

EVLOOP__API int evloop_listener_enable(evloop_listener *l)
{
    if (!l || l->freed) return evloop__fail(EINVAL);
    if (l->enabled || l->paused) { /* a rest in progress re-adds the event when it ends */
        l->enabled = 1;
        return 0;
    }
    if (evloop_event_add(&l->ev, NULL) < 0) return -1;
    l->enabled = 1;
    return 0;
}

EVLOOP__API int evloop_listener_disable(evloop_listener *l)
{
    if (!l || l->freed) return evloop__fail(EINVAL);
    l->enabled = 0;
    l->paused = 0;
    evloop_event_del(&l->ev);
    evloop_event_del(&l->pause);
    return 0;
}

EVLOOP__API evloop_socket_t evloop_listener_get_fd(const evloop_listener *l)
{
    return l ? l->fd : -1;
}

#endif /* EVLOOP_NO_STREAMS */

#endif /* EVLOOP_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
This software is available under the MIT License.
------------------------------------------------------------------------------
Copyright (c) 2026 the evloop authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
