/* driver.h - what the examples' drivers share: bookkeeping of checks, child
   processes (spawn with stdout on a pipe, read its lines, stop, reap, an
   emergency handler that cleans up), loopback sockets and bulk transfers, and
   the ROT13 helpers both ROT13 servers are checked with.

   Include it once, from test_examples.c or test_stream_examples.c, after
   defining DRIVER_NAME (the program's name, for its messages). */
#ifndef DRIVER_NAME
#error "define DRIVER_NAME before including driver.h"
#endif

#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 10000 /* generous: examples may run under a sanitizer or valgrind */
#define STOP_TIMEOUT_MS  5000
#define WATCHDOG_SECONDS 120
#define MAX_ARGS         32

/*== BOOKKEEPING ==*/

static int passed, failed;
static char reason[512];
static const char *bindir;

/* Everything the emergency handler must undo; written only outside it. */
static volatile sig_atomic_t live_pid = -1;
static int merge_stderr;    /* the next spawn also sends the child's stderr into the pipe */
static rlim_t child_nofile; /* the next spawn runs with this RLIMIT_NOFILE (0: ours) */
/* Scratch paths the emergency handler removes (test_examples' FIFO). */
static char tmp_dir[64];
static char fifo_path[128];

static int why(const char *fmt, ...)
{
    char buf[sizeof reason]; /* the arguments may include reason itself */
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(reason, buf, sizeof reason);
    return -1;
}

/* A small deterministic generator for the random checks: advances *seed and
   returns a number in 0..n-1 (n > 0). */
static unsigned driver_rand(unsigned *seed, unsigned n)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 8) % n;
}

static void report(const char *name, int rc)
{
    if (rc == 0) {
        printf("ok   %s\n", name);
        passed++;
    } else {
        printf("FAIL %s: %s\n", name, reason);
        failed++;
    }
    fflush(stdout);
}

static void note(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("# ", stdout);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    fflush(stdout);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) continue;
}

/* Only async-signal-safe calls: kill the child, remove our files, leave. */
static void on_emergency(int sig)
{
    static const char msg[] = DRIVER_NAME ": interrupted or timed out, cleaning up\n";
    pid_t pid = (pid_t)live_pid;
    ssize_t ignored;

    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (fifo_path[0]) unlink(fifo_path);
    if (tmp_dir[0]) rmdir(tmp_dir);
    ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(sig == SIGALRM ? 2 : 1);
}

static const int emergency_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGALRM};

/* Blocks (how = SIG_BLOCK) or unblocks the signals that trigger on_emergency. */
static void mask_emergency_signals(int how)
{
    sigset_t set;
    size_t i;

    sigemptyset(&set);
    for (i = 0; i < sizeof emergency_signals / sizeof emergency_signals[0]; i++)
        sigaddset(&set, emergency_signals[i]);
    sigprocmask(how, &set, NULL);
}

static void install_emergency_handlers(void)
{
    struct sigaction sa;
    size_t i;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_emergency;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < sizeof emergency_signals / sizeof emergency_signals[0]; i++)
        sigaction(emergency_signals[i], &sa, NULL);
    /* Writing to a socket the server already closed must fail, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    alarm(WATCHDOG_SECONDS);
}

/*== CHILD PROCESSES ==*/

struct child {
    pid_t pid;
    int out_fd; /* read end of the child's stdout */
    size_t len; /* bytes in buf not yet returned as lines */
    char buf[8192];
};

/* Splits EXAMPLES_WRAPPER on spaces into argv (a prefix for every example). */
static int wrapper_args(char **argv, int max, char *storage, size_t size)
{
    const char *env = getenv("EXAMPLES_WRAPPER");
    char *tok;
    int n = 0;

    if (!env || !*env) return 0;
    snprintf(storage, size, "%s", env);
    for (tok = strtok(storage, " "); tok && n < max; tok = strtok(NULL, " ")) argv[n++] = tok;
    return n;
}

static void exec_child(char **argv, int out_fd)
{
    int devnull = open("/dev/null", O_RDONLY);

    if (devnull > 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    dup2(out_fd, 1);
    if (merge_stderr) dup2(out_fd, 2);
    if (out_fd != 1 && out_fd != 2) close(out_fd);
    if (child_nofile) {
        struct rlimit rl;

        /* The soft limit, as `ulimit -Sn` sets it: the one accept runs into
           (EMFILE). The hard limit stays, so this needs no privilege. */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            rl.rlim_cur = child_nofile;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    /* exec keeps ignored signals ignored and blocked ones blocked: give the
       example a normal start. */
    signal(SIGPIPE, SIG_DFL);
    alarm(0);
    mask_emergency_signals(SIG_UNBLOCK);
    execvp(argv[0], argv);
    fprintf(stderr, DRIVER_NAME ": cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Starts BINDIR/name with the given arguments (NULL-terminated). */
static int spawn(struct child *c, const char *name, const char *const *args)
{
    char *argv[MAX_ARGS + 8];
    char wrapper[512], path[512];
    int fds[2], n, i;

    n = wrapper_args(argv, MAX_ARGS, wrapper, sizeof wrapper);
    snprintf(path, sizeof path, "%s/%s", bindir, name);
    argv[n++] = path;
    for (i = 0; args[i] && i < 6; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    memset(c, 0, sizeof *c);
    c->pid = -1;
    c->out_fd = -1;
    if (access(path, X_OK) < 0) return why("%s: %s", path, strerror(errno));
    if (pipe(fds) < 0) return why("pipe: %s", strerror(errno));
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fflush(stdout);
    /* No emergency exit between fork and recording the pid: it would miss the child. */
    mask_emergency_signals(SIG_BLOCK);
    c->pid = fork();
    if (c->pid == 0) {
        close(fds[0]);
        exec_child(argv, fds[1]);
    }
    live_pid = c->pid;
    mask_emergency_signals(SIG_UNBLOCK);
    close(fds[1]);
    if (c->pid < 0) {
        close(fds[0]);
        return why("fork: %s", strerror(errno));
    }
    c->out_fd = fds[0];
    return 0;
}

/* Next line of the child's stdout, without its '\n'. Returns 1 with a line,
   0 at EOF (the child closed stdout, normally by exiting), -1 on timeout. */
static int read_line(struct child *c, char *line, size_t size, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;

    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        struct pollfd pfd;
        ssize_t n;
        int left;

        if (nl || c->len == sizeof c->buf) {
            size_t take = nl ? (size_t)(nl - c->buf) : c->len;
            size_t copy = take < size - 1 ? take : size - 1;

            memcpy(line, c->buf, copy);
            line[copy] = '\0';
            take += nl ? 1 : 0;
            memmove(c->buf, c->buf + take, c->len - take);
            c->len -= take;
            return 1;
        }
        left = (int)(deadline - now_ms());
        pfd.fd = c->out_fd;
        pfd.events = POLLIN;
        n = poll(&pfd, 1, left > 0 ? left : 0);
        if (n == 0) return -1;
        if (n < 0 && errno != EINTR) return -1;
        if (n < 0) continue;
        n = read(c->out_fd, c->buf + c->len, sizeof c->buf - c->len);
        if (n == 0) return 0;
        if (n > 0) c->len += (size_t)n;
    }
}

/* Reads the next line and checks it equals want (or starts with it). */
static int expect_line(struct child *c, const char *want, int prefix_only, int timeout_ms)
{
    char line[1024];
    int rc = read_line(c, line, sizeof line, timeout_ms);

    if (rc < 0) return why("timed out waiting for \"%s\"", want);
    if (rc == 0) return why("output ended while waiting for \"%s\"", want);
    if (prefix_only ? strncmp(line, want, strlen(want)) != 0 : strcmp(line, want) != 0)
        return why("expected \"%s\", got \"%s\"", want, line);
    return 0;
}

/* Reads lines until one equals want; earlier lines (left over from a check
   that failed halfway) are skipped, so one failure does not cascade. */
static int skip_to_line(struct child *c, const char *want, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;
    char line[1024];
    int rc;

    for (;;) {
        int left = (int)(deadline - now_ms());

        rc = read_line(c, line, sizeof line, left > 0 ? left : 0);
        if (rc <= 0) break;
        if (strcmp(line, want) == 0) return 0;
    }
    return why(rc < 0 ? "timed out waiting for \"%s\"" : "output ended before \"%s\"", want);
}

/* Waits up to timeout_ms for the child to exit. Returns 1 when reaped. */
static int reap(struct child *c, int *status, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;

    for (;;) {
        pid_t r = waitpid(c->pid, status, WNOHANG);

        if (r == c->pid || (r < 0 && errno != EINTR)) return 1;
        if (now_ms() >= deadline) return 0;
        sleep_ms(10);
    }
}

/* Sends sig, waits for the exit, escalates to SIGKILL. Returns 0 when the
   child exited by itself with status 0 ("clean"); otherwise sets reason. */
static int stop_child(struct child *c, int sig)
{
    int status = 0, rc = 0;

    if (c->pid <= 0) return why("not running");
    if (sig) kill(c->pid, sig);
    if (!reap(c, &status, STOP_TIMEOUT_MS)) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, &status, 0);
        rc = why("still running %d ms later; killed", STOP_TIMEOUT_MS);
    } else if (WIFSIGNALED(status)) {
        rc = why("killed by signal %d", WTERMSIG(status));
    } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        rc = why("exit status %d", WEXITSTATUS(status));
    }
    live_pid = -1;
    c->pid = -1;
    if (c->out_fd >= 0) close(c->out_fd);
    c->out_fd = -1;
    return rc;
}

/* Kills a child after a failed check, keeping that check's reason. */
static void kill_child(struct child *c)
{
    char saved[sizeof reason];

    if (c->pid <= 0) return;
    memcpy(saved, reason, sizeof saved);
    stop_child(c, SIGKILL);
    memcpy(reason, saved, sizeof saved);
}

/* Sends sig (0: none), expects last_line (NULL: none) and a clean exit
   (status 0 on its own within STOP_TIMEOUT_MS), and reports that as a check. */
static void finish_child(struct child *c, int sig, const char *name, const char *last_line)
{
    int rc = 0;

    if (sig) kill(c->pid, sig);
    if (last_line) rc = skip_to_line(c, last_line, STOP_TIMEOUT_MS);
    if (rc == 0)
        rc = stop_child(c, 0);
    else
        kill_child(c);
    report(name, rc);
}

/*== SOCKETS ==*/

static int tcp_listen_probe(int port)
{
    struct sockaddr_in sin;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) return -1;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A port nobody listens on right now (the kernel picks it). */
static int free_port(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    int port = -1, fd = tcp_listen_probe(0);

    if (fd < 0) return -1;
    if (getsockname(fd, (struct sockaddr *)&sin, &len) == 0) port = ntohs(sin.sin_port);
    close(fd);
    return port;
}

static int port_is_free(int port)
{
    int fd = tcp_listen_probe(port);

    if (fd < 0) return 0;
    close(fd);
    return 1;
}

/* Connects to 127.0.0.1:port; rcvbuf > 0 shrinks the receive buffer first
   (a slow reader, to make the server hit its partial-write path). The socket
   is non-blocking afterwards. */
static int connect_local(int port, int rcvbuf)
{
    struct sockaddr_in sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) return why("socket: %s", strerror(errno));
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        int err = errno;

        close(fd);
        return why("connect to port %d: %s", port, strerror(err));
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* One client conversation: send out[], half-close, read until EOF into in[]. */
struct transfer {
    int fd;
    const char *out;
    size_t out_len, out_pos;
    int shut; /* our side is shut down (all of out[] was sent) */
    char *in;
    size_t in_len, in_cap, in_max;
    int eof;
    int err; /* errno of a failed call */
};

static void transfer_send(struct transfer *t)
{
    ssize_t n = send(t->fd, t->out + t->out_pos, t->out_len - t->out_pos, 0);

    if (n > 0)
        t->out_pos += (size_t)n;
    else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        t->err = errno;
}

static void transfer_recv(struct transfer *t)
{
    ssize_t n;

    if (t->in_len == t->in_cap) {
        size_t cap = t->in_cap ? t->in_cap * 2 : 65536;
        char *p = cap <= t->in_max ? realloc(t->in, cap) : NULL;

        if (!p) {
            t->err = ENOBUFS; /* far more than expected came back */
            return;
        }
        t->in = p;
        t->in_cap = cap;
    }
    n = recv(t->fd, t->in + t->in_len, t->in_cap - t->in_len, 0);
    if (n > 0)
        t->in_len += (size_t)n;
    else if (n == 0)
        t->eof = 1;
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        t->err = errno;
}

/* Fills pfd for every unfinished transfer; returns how many are unfinished. */
static size_t transfer_poll_set(struct transfer *t, struct pollfd *pfd, size_t n, int reading)
{
    size_t i, busy = 0;

    for (i = 0; i < n; i++) {
        pfd[i].fd = -1;
        pfd[i].events = pfd[i].revents = 0;
        if (t[i].out_pos == t[i].out_len && !t[i].shut) {
            shutdown(t[i].fd, SHUT_WR);
            t[i].shut = 1;
        }
        if (t[i].eof || t[i].err) continue;
        busy++;
        if (t[i].out_pos < t[i].out_len) pfd[i].events |= POLLOUT;
        if (reading) pfd[i].events |= POLLIN;
        if (pfd[i].events) pfd[i].fd = t[i].fd;
    }
    return busy;
}

/* Runs all transfers at once until each saw EOF. Reading starts only after
   read_delay_ms, so the server first has to cope with a client that does not
   read. Returns 0 when all finished, else -1 with reason set. */
static int run_transfers(struct transfer *t, size_t n, int timeout_ms, int read_delay_ms)
{
    struct pollfd *pfd = calloc(n, sizeof *pfd);
    double start = now_ms();
    size_t i, busy = n;

    if (!pfd) return why("out of memory");
    while (busy) {
        double elapsed = now_ms() - start;
        int reading = elapsed >= read_delay_ms;
        int wait = (int)((reading ? timeout_ms : read_delay_ms) - elapsed) + 1;

        busy = transfer_poll_set(t, pfd, n, reading);
        if (!busy || elapsed >= timeout_ms) break;
        if (poll(pfd, (nfds_t)n, wait) < 0 && errno != EINTR) break;
        for (i = 0; i < n; i++) {
            if (pfd[i].revents & POLLOUT) transfer_send(&t[i]);
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) transfer_recv(&t[i]);
        }
    }
    free(pfd);
    for (i = 0; i < n; i++) {
        if (t[i].err) return why("client %zu: %s", i, strerror(t[i].err));
        if (!t[i].eof)
            return why("client %zu: no EOF after %d ms (sent %zu of %zu, got %zu bytes)", i,
                       timeout_ms, t[i].out_pos, t[i].out_len, t[i].in_len);
    }
    return 0;
}

static int compare_bytes(const char *who, const char *got, size_t got_len, const char *want,
                         size_t want_len)
{
    size_t i, n = got_len < want_len ? got_len : want_len;

    for (i = 0; i < n; i++)
        if (got[i] != want[i])
            return why("%s: byte %zu differs (got 0x%02x, want 0x%02x)", who, i,
                       (unsigned char)got[i], (unsigned char)want[i]);
    if (got_len != want_len) return why("%s: got %zu bytes, want %zu", who, got_len, want_len);
    return 0;
}

/* Sends all of data on a non-blocking socket, waiting as needed. */
static int send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        struct pollfd pfd;
        ssize_t n = send(fd, data, len, 0);

        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return why("send: %s", strerror(errno));
        pfd.fd = fd;
        pfd.events = POLLOUT;
        if (poll(&pfd, 1, 2000) == 0) return why("send: timed out");
    }
    return 0;
}

/* Receives exactly len bytes, or up to EOF when len is 0 (then *got says how
   many came, and EOF is required). Returns 0, or -1 with reason set. */
static int recv_some(int fd, char *buf, size_t len, size_t *got, int timeout_ms)
{
    double deadline = now_ms() + timeout_ms;

    *got = 0;
    for (;;) {
        struct pollfd pfd;
        ssize_t n;
        int left = (int)(deadline - now_ms());

        if (len && *got == len) return 0;
        pfd.fd = fd;
        pfd.events = POLLIN;
        if (left <= 0 || poll(&pfd, 1, left) == 0)
            return why("timed out after %d ms (%zu bytes received)", timeout_ms, *got);
        n = recv(fd, buf + *got, (len ? len : 1) - *got, 0);
        if (n == 0) return len ? why("EOF after %zu of %zu bytes", *got, len) : 0;
        if (n > 0)
            *got += (size_t)n;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return why("recv: %s", strerror(errno));
        if (!len && *got) return why("unexpected data before EOF");
    }
}

/*== ROT13 SERVER ==*/

static char rot13(char c)
{
    if ((c >= 'a' && c <= 'm') || (c >= 'A' && c <= 'M')) return (char)(c + 13);
    if ((c >= 'n' && c <= 'z') || (c >= 'N' && c <= 'Z')) return (char)(c - 13);
    return c;
}

static char *rot13_copy(const char *s, size_t len)
{
    char *out = malloc(len ? len : 1);
    size_t i;

    if (out)
        for (i = 0; i < len; i++) out[i] = rot13(s[i]);
    return out;
}

static int check_partial_line(int port)
{
    static const char want[] = "Uryyb, Jbeyq!\n";
    char got[sizeof want];
    size_t n;
    int rc, fd = connect_local(port, 0);

    if (fd < 0) return -1;
    rc = send_all(fd, "Hello", 5);
    /* Without its '\n' the line must stay in the server. */
    if (rc == 0 && recv_some(fd, got, 1, &n, 200) == 0) rc = why("got data before the newline");
    if (rc == 0) rc = send_all(fd, ", World!\n", 9);
    if (rc == 0) rc = recv_some(fd, got, sizeof want - 1, &n, 3000);
    if (rc == 0) rc = compare_bytes("reply", got, n, want, sizeof want - 1);
    close(fd);
    return rc;
}

/* Random text for the rot13 servers: lines of any bytes (NUL, CR, bytes
   above 127), empty lines, lines longer than the servers' 16 KiB buffers,
   and at times a last line without its '\n'. */
static size_t make_random_text(unsigned *seed, char *out, size_t max)
{
    size_t n = 0, target = 1 + driver_rand(seed, (unsigned)max);

    while (n < target) {
        unsigned kind = driver_rand(seed, 10);
        size_t len = kind == 0   ? 16384 + driver_rand(seed, 8192)
                     : kind == 1 ? 0
                                 : driver_rand(seed, 100);
        size_t i;

        if (len > max - n - 1) len = max - n - 1;
        for (i = 0; i < len; i++) {
            out[n + i] = driver_rand(seed, 4) ? (char)('a' + driver_rand(seed, 58))
                                              : (char)driver_rand(seed, 256);
            if (out[n + i] == '\n') out[n + i] = 'x';
        }
        n += len;
        if (n < target || driver_rand(seed, 2)) out[n++] = '\n';
    }
    return n;
}

/* nseeds connections, one after the other, each sending random text in
   random pieces with short pauses (so the server reads it split anywhere),
   then EOF: the reply must be the rot13 of every byte, and then EOF. */
static int check_rot13_random(int port, int nseeds)
{
    size_t max = 48 * 1024;
    char *text = malloc(max), *got = malloc(max + 1), *want = NULL;
    int seed_no, rc = text && got ? 0 : why("out of memory");

    for (seed_no = 1; rc == 0 && seed_no <= nseeds; seed_no++) {
        unsigned seed = (unsigned)seed_no * 2654435761u;
        size_t len = make_random_text(&seed, text, max), sent = 0, n = 0;
        double deadline = now_ms() + 5000;
        int fd = connect_local(port, 0);

        if (fd < 0) {
            rc = -1;
            break;
        }
        while (rc == 0 && sent < len) {
            size_t piece = 1 + driver_rand(&seed, driver_rand(&seed, 8) ? 512 : 8192);

            if (piece > len - sent) piece = len - sent;
            rc = send_all(fd, text + sent, piece);
            sent += piece;
            if (driver_rand(&seed, 8) == 0) sleep_ms(1);
        }
        if (rc == 0) shutdown(fd, SHUT_WR);
        while (rc == 0) { /* the reply, then EOF */
            struct pollfd pfd = {fd, POLLIN, 0};
            int left = (int)(deadline - now_ms());
            ssize_t r;

            if (left <= 0 || poll(&pfd, 1, left) == 0) {
                rc = why("seed %d: timed out after %zu of %zu bytes", seed_no, n, len);
                break;
            }
            r = recv(fd, got + n, max + 1 - n, 0);
            if (r == 0) break;
            if (r > 0) n += (size_t)r;
            if (r < 0 && errno != EAGAIN && errno != EINTR)
                rc = why("seed %d: recv: %s", seed_no, strerror(errno));
            if (n > max) rc = why("seed %d: more bytes back than sent", seed_no);
        }
        close(fd);
        if (rc == 0) {
            char who[32];

            free(want);
            want = rot13_copy(text, len);
            snprintf(who, sizeof who, "seed %d", seed_no);
            rc = want ? compare_bytes(who, got, n, want, len) : why("out of memory");
        }
    }
    free(want);
    free(got);
    free(text);
    return rc;
}

#define ROT13_CLIENTS 50
#define ROT13_LINES   8

static char *make_client_text(int client, size_t *len)
{
    char *text = malloc(ROT13_LINES * 128);
    size_t used = 0;
    int line;

    if (!text) return NULL;
    for (line = 0; line < ROT13_LINES; line++)
        used += (size_t)sprintf(text + used,
                                "client %02d line %d: The Quick Brown Fox Jumps "
                                "Over the Lazy Dog, 0123456789 ~!@#\n",
                                client, line);
    *len = used;
    return text;
}

/* Runs the transfers and checks each reply equals the rot13 of what it sent. */
static int check_rot13_replies(struct transfer *t, size_t n, int timeout_ms, int delay_ms)
{
    size_t i;
    int rc = run_transfers(t, n, timeout_ms, delay_ms);

    for (i = 0; rc == 0 && i < n; i++) {
        char *want = rot13_copy(t[i].out, t[i].out_len);
        char who[32];

        snprintf(who, sizeof who, "client %zu", i);
        rc = want ? compare_bytes(who, t[i].in, t[i].in_len, want, t[i].out_len)
                  : why("out of memory");
        free(want);
    }
    return rc;
}

static void free_transfers(struct transfer *t, size_t n, int free_out)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (t[i].fd >= 0) close(t[i].fd);
        if (free_out) free((char *)t[i].out);
        free(t[i].in);
    }
}

static int check_concurrent_clients(int port)
{
    struct transfer t[ROT13_CLIENTS];
    int i, rc = 0;

    memset(t, 0, sizeof t);
    for (i = 0; i < ROT13_CLIENTS; i++) t[i].fd = -1;
    /* Connect everyone first, so all 50 are open at the same time. */
    for (i = 0; rc == 0 && i < ROT13_CLIENTS; i++) {
        t[i].out = make_client_text(i, &t[i].out_len);
        t[i].in_max = 1 << 20;
        t[i].fd = connect_local(port, 0);
        if (!t[i].out)
            rc = why("out of memory");
        else if (t[i].fd < 0)
            rc = -1;
    }
    if (rc == 0) rc = check_rot13_replies(t, ROT13_CLIENTS, 10000, 0);
    free_transfers(t, ROT13_CLIENTS, 1);
    return rc;
}

#define LONG_LINE_SIZE (100 * 1024)

static int check_long_line(int port)
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
    struct transfer t;
    char *line = malloc(LONG_LINE_SIZE + 1);
    size_t i;
    int rc;

    if (!line) return why("out of memory");
    /* A pattern that does not repeat with the server's buffer size, so a lost
       or repeated chunk shows up. */
    for (i = 0; i < LONG_LINE_SIZE; i++) line[i] = alphabet[(i * 7 + i / 1000) % 63];
    line[LONG_LINE_SIZE] = '\n';
    memset(&t, 0, sizeof t);
    t.out = line;
    t.out_len = LONG_LINE_SIZE + 1;
    t.in_max = 4 << 20;
    /* A small receive buffer and a late start of reading fill the server's
       output buffer, so it has to stop reading and resume (backpressure). */
    t.fd = connect_local(port, 4096);
    rc = t.fd < 0 ? -1 : check_rot13_replies(&t, 1, 10000, 300);
    free_transfers(&t, 1, 0);
    free(line);
    return rc;
}
