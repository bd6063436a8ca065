/* fifo_reader.c - read a named pipe with a persistent read event, and reopen it
   each time the last writer goes away (the classic libevent "event-read-fifo").

   Shows:
     - a persistent read event on something that is not a socket;
     - end of file on a FIFO: when every writer has closed, read() returns 0
       and keeps returning 0, so the reader closes the FIFO and opens it again
       to wait for the next writer;
     - re-assigning an event after its descriptor was closed and reopened
       (the new descriptor may reuse the old number, so evloop must be told
       that it is a new kernel object);
     - clean shutdown on SIGINT/SIGTERM, removing the FIFO if we created it.

   Opening the FIFO O_RDWR instead would keep a writer (ourselves) around and
   EOF would never come; that is simpler in production code, but here the
   point is to show the close-and-reopen dance. Some systems other than Linux
   report a FIFO with no writer yet as readable at EOF, which makes this
   reopen loop spin there: use O_RDWR on those.

   Build:  cc -std=c99 -Wall -Wextra -pthread -I. examples/fifo_reader.c -o fifo_reader
   Run:    ./fifo_reader [PATH]                 (default ./event.fifo)
   Try:    echo hello > event.fifo              (in another terminal; repeat at will)
           Ctrl-C (SIGINT) or SIGTERM stops it and removes the FIFO it created. */

/* evloop.h first: it also turns on the POSIX declarations (sigaction,
   clock_gettime, ...) that a strict -std=c99 hides from the headers below. */
#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define DEFAULT_PATH "./event.fifo"

struct fifo_reader {
    evloop *loop;
    const char *path;
    int created; /* we made the FIFO, so we remove it when we stop */
    int fd;
    int status; /* exit status: becomes 1 if reading fails */
    evloop_event read_event;
    evloop_event sigint_event;
    evloop_event sigterm_event;
};

static void on_fifo_readable(evloop_socket_t fd, short what, void *arg);

/* Creates the FIFO, or reuses one that is already there. */
static int create_fifo(struct fifo_reader *r)
{
    struct stat st;

    if (mkfifo(r->path, 0600) == 0) {
        r->created = 1;
        return 0;
    }
    if (errno != EEXIST) {
        fprintf(stderr, "fifo_reader: mkfifo %s: %s\n", r->path, strerror(errno));
        return -1;
    }
    if (stat(r->path, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        fprintf(stderr, "fifo_reader: %s exists and is not a FIFO\n", r->path);
        return -1;
    }
    return 0;
}

/* O_NONBLOCK: opening a FIFO for reading would otherwise block until a writer
   shows up, and the loop could not run meanwhile. */
static int open_fifo(struct fifo_reader *r)
{
    r->fd = open(r->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (r->fd < 0) {
        fprintf(stderr, "fifo_reader: open %s: %s\n", r->path, strerror(errno));
        return -1;
    }
    /* Assign (not just add) every time: the descriptor is new even when its
       number is the same as the one we just closed. */
    if (evloop_event_assign(&r->read_event, r->loop, r->fd, EVLOOP_READ | EVLOOP_PERSIST,
                            on_fifo_readable, r) ||
        evloop_event_add(&r->read_event, NULL)) {
        fprintf(stderr, "fifo_reader: watching %s: %s\n", r->path, strerror(errno));
        close(r->fd);
        r->fd = -1;
        return -1;
    }
    return 0;
}

static void close_fifo(struct fifo_reader *r)
{
    if (r->fd < 0) return;
    evloop_event_del(&r->read_event);
    close(r->fd);
    r->fd = -1;
}

static void fail(struct fifo_reader *r)
{
    r->status = 1;
    evloop_exit(r->loop, NULL);
}

static void print_data(const char *data, size_t len)
{
    fputs("read: ", stdout);
    fwrite(data, 1, len, stdout);
    if (data[len - 1] != '\n') putchar('\n');
    fflush(stdout); /* one write per chunk, so a watcher sees it right away */
}

static void on_fifo_readable(evloop_socket_t fd, short what, void *arg)
{
    struct fifo_reader *r = arg;
    char buf[4096];
    ssize_t n;

    (void)what;
    n = read(fd, buf, sizeof buf);
    if (n > 0) {
        print_data(buf, (size_t)n);
    } else if (n == 0) {
        /* Every writer closed. Deleting, closing and reopening from inside the
           event's own callback is fine: the event is re-assigned before use. */
        close_fifo(r);
        if (open_fifo(r) < 0) {
            fail(r);
            return;
        }
        printf("writer closed, reopened %s\n", r->path);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        fprintf(stderr, "fifo_reader: read %s: %s\n", r->path, strerror(errno));
        fail(r);
    }
}

static void on_signal(evloop_socket_t signum, short what, void *arg)
{
    struct fifo_reader *r = arg;

    (void)what;
    printf("got %s, shutting down\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    evloop_exit(r->loop, NULL);
}

static int reader_start(struct fifo_reader *r)
{
    r->loop = evloop_new();
    if (!r->loop) {
        perror("fifo_reader: evloop_new");
        return -1;
    }
    if (evloop_signal_assign(&r->sigint_event, r->loop, SIGINT, on_signal, r) ||
        evloop_signal_assign(&r->sigterm_event, r->loop, SIGTERM, on_signal, r) ||
        evloop_signal_add(&r->sigint_event, NULL) || evloop_signal_add(&r->sigterm_event, NULL)) {
        perror("fifo_reader: signal events");
        return -1;
    }
    if (create_fifo(r) < 0 || open_fifo(r) < 0) return -1;
    return 0;
}

/* Undoes whatever reader_start managed to do; events are deleted before the
   loop is freed (evloop_event_initialized skips those never assigned). */
static void reader_stop(struct fifo_reader *r)
{
    close_fifo(r);
    if (evloop_event_initialized(&r->sigint_event)) evloop_signal_del(&r->sigint_event);
    if (evloop_event_initialized(&r->sigterm_event)) evloop_signal_del(&r->sigterm_event);
    if (r->created && unlink(r->path) < 0)
        fprintf(stderr, "fifo_reader: unlink %s: %s\n", r->path, strerror(errno));
    evloop_free(r->loop);
}

int main(int argc, char **argv)
{
    struct fifo_reader reader;

    if (argc > 2) {
        fprintf(stderr, "usage: %s [PATH]   (default %s)\n", argv[0], DEFAULT_PATH);
        return 2;
    }
    memset(&reader, 0, sizeof reader);
    reader.path = argc > 1 ? argv[1] : DEFAULT_PATH;
    reader.fd = -1;
    /* Line-buffered even into a pipe, so whoever waits for our lines sees them. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (reader_start(&reader) < 0) {
        reader_stop(&reader);
        return 1;
    }
    printf("reading %s\n", reader.path);
    if (evloop_dispatch(reader.loop) < 0) {
        perror("fifo_reader: evloop_dispatch");
        reader.status = 1;
    }
    reader_stop(&reader);
    return reader.status;
}
