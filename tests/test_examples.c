/* test_examples.c - runs each program in examples/ and checks what it does.

   Usage: test_examples BINDIR

   For every example: start the binary from BINDIR with its stdout on a pipe,
   wait for its ready line, talk to it (TCP on 127.0.0.1, a FIFO in a fresh
   temporary directory, or signals), compare what comes back byte for byte,
   stop it (SIGTERM or SIGINT, then SIGKILL after a timeout) and reap it.
   Needs nothing but a C compiler: no python, nc or curl.

   rot13_server and echo_server also run with a low file descriptor limit
   and more clients than it allows: they must pause accepting rather than
   spin (CPU time from /proc/PID/stat) or flood stderr, and accept again
   once clients leave.

   Each check prints "ok   NAME" or "FAIL NAME: REASON"; the last line is
   "examples: N passed, N failed" and the exit status is 1 on any failure.
   No child process or file survives the run, whichever way it ends: every
   path stops its child, and a watchdog (and SIGINT/SIGTERM to this program)
   kills whatever is left and removes the temporary directory.

   Set EXAMPLES_WRAPPER to run every example under a tool, for example
       EXAMPLES_WRAPPER="valgrind -q --leak-check=full --error-exitcode=99"
   (the examples must then still exit 0). */

#define DRIVER_NAME "test_examples"
#include "driver.h"

#define ROT13_PORT 40713

/* Starts a server example on port and waits for its ready line. Returns 0,
   -1 if it ran but never became ready, -2 if it could not be run at all. */
static int start_server(struct child *c, const char *name, int port, const char *extra)
{
    char port_arg[16], want[64];
    const char *args[3];

    snprintf(port_arg, sizeof port_arg, "%d", port);
    snprintf(want, sizeof want, "listening on 127.0.0.1:%d", port);
    args[0] = port_arg;
    args[1] = extra;
    args[2] = NULL;
    if (spawn(c, name, args) < 0) return -2;
    if (expect_line(c, want, 1, READY_TIMEOUT_MS) == 0) return 0;
    kill_child(c);
    return -1;
}

/* Starts a server on *port (0: any free port). A port that is free when we
   look may be taken before the server binds it (another test run, say), so
   on failure retry a few times on ports the kernel reports free, saying so.
   Leaves the port used in *port. Returns 0, or -1 with reason set. */
static int start_server_on_some_port(struct child *c, const char *name, int *port,
                                     const char *extra)
{
    int attempt, rc = -1;

    for (attempt = 0; attempt < 4 && rc < 0; attempt++) {
        int want = *port;

        if (attempt > 0 || want == 0 || !port_is_free(want)) *port = free_port();
        if (want && *port != want) note("port %d is busy; starting %s on %d", want, name, *port);
        if (*port <= 0) return why("no free port");
        rc = start_server(c, name, *port, extra);
        if (rc == -2) return -1; /* could not even run it: another port will not help */
    }
    return rc;
}

static void test_rot13(void)
{
    struct child c;
    int port = ROT13_PORT;

    if (start_server_on_some_port(&c, "rot13_server", &port, NULL) < 0) {
        report("rot13_server starts and prints its ready line", -1);
        return;
    }
    report("rot13_server starts and prints its ready line", 0);
    report("rot13_server holds a line until its newline", check_partial_line(port));
    report("rot13_server 50 concurrent clients, 8 lines each", check_concurrent_clients(port));
    report("rot13_server 100 KiB line (longer than its buffer) intact", check_long_line(port));
    report("rot13_server 20 random texts in random pieces, then EOF: every byte back",
           check_rot13_random(port, 20));
    finish_child(&c, SIGINT, "rot13_server exits 0 on SIGINT", "got SIGINT, shutting down");
}

/*== ECHO SERVER ==*/

/* Echoes size bytes through the server and compares. The client reads only
   after read_delay_ms: with more data than the kernel buffers hold between
   the two ends (a few MiB on Linux), the server's send() must then come up
   short and its write-backlog path (reading paused) is exercised. */
static int check_echo(int port, size_t size, int read_delay_ms)
{
    struct transfer t;
    char *data = malloc(size);
    unsigned state = 12345;
    size_t i;
    int rc;

    if (!data) return why("out of memory");
    /* Every byte value, NUL and '\n' included: echo must not care. */
    for (i = 0; i < size; i++) data[i] = (char)driver_rand(&state, 256);
    memset(&t, 0, sizeof t);
    t.out = data;
    t.out_len = size;
    t.in_max = 2 * size;
    t.fd = connect_local(port, 8192);
    rc = t.fd < 0 ? -1 : run_transfers(&t, 1, 15000, read_delay_ms);
    if (rc == 0) rc = compare_bytes("echo", t.in, t.in_len, data, size);
    free_transfers(&t, 1, 0);
    free(data);
    return rc;
}

/* Connects, stays silent, and times how long until the server hangs up. */
static int check_idle_close(struct child *c, int port)
{
    double start = now_ms(), secs;
    size_t got;
    char byte;
    int rc, fd = connect_local(port, 0);

    if (fd < 0) return -1;
    rc = recv_some(fd, &byte, 0, &got, 5000);
    secs = (now_ms() - start) / 1000.0;
    close(fd);
    if (rc < 0) return -1;
    if (secs < 0.9 || secs > 3.0) return why("EOF after %.2f s, want 0.9 .. 3 s", secs);
    return expect_line(c, "closing idle connection", 0, 2000);
}

/* Talks every 0.6 s for a while: each exchange must restart the idle timer,
   so the connection outlives the 1 s timeout and closes 1 s after the last. */
static int check_idle_reset(struct child *c, int port)
{
    double start, last = 0, secs;
    size_t got;
    char byte;
    int i, rc = 0, fd = connect_local(port, 0);

    if (fd < 0) return -1;
    start = now_ms();
    for (i = 0; rc == 0 && i < 3; i++) {
        sleep_ms(600);
        rc = send_all(fd, "x", 1);
        if (rc == 0) rc = recv_some(fd, &byte, 1, &got, 2000);
        last = now_ms();
    }
    if (rc == 0) rc = recv_some(fd, &byte, 0, &got, 5000);
    secs = (now_ms() - last) / 1000.0;
    close(fd);
    if (rc < 0) return -1;
    if (secs < 0.9 || secs > 3.0)
        return why("EOF %.2f s after the last byte (%.2f s in all), want 0.9 .. 3 s", secs,
                   (now_ms() - start) / 1000.0);
    return expect_line(c, "closing idle connection", 0, 2000);
}

static void test_echo(void)
{
    struct child c;
    int port = 0;

    if (start_server_on_some_port(&c, "echo_server", &port, "1") < 0) {
        report("echo_server starts and prints its ready line", -1);
        return;
    }
    report("echo_server starts and prints its ready line", 0);
    report("echo_server echoes 1 MiB byte for byte", check_echo(port, 1 << 20, 100));
    /* The late reader stalls for less than the 1 s idle timeout, on purpose. */
    report("echo_server echoes 8 MiB to a late reader (write backlog)",
           check_echo(port, 8 << 20, 500));
    report("echo_server closes an idle connection after 1 s", check_idle_close(&c, port));
    report("echo_server activity restarts the idle timeout", check_idle_reset(&c, port));
    finish_child(&c, SIGTERM, "echo_server exits 0 on SIGTERM", "got SIGTERM, shutting down");
}

/*== OUT OF FILE DESCRIPTORS ==*/

/* The raw-event servers accept on a level-triggered event. When accept fails
   with EMFILE the waiting client stays queued and the listener stays
   readable, so a server that simply retries spins at full CPU and prints an
   error per try; these servers must pause accepting instead. Each runs here
   with a soft RLIMIT_NOFILE of FD_LIMIT (room for about ten clients beside
   its own half dozen descriptors) and gets FD_CLIENTS clients at once. */
#define FD_LIMIT        16
#define FD_CLIENTS      24
#define FD_WATCH_MS     1000
#define FD_MAX_CPU_MS   200 /* over FD_WATCH_MS; a spinning server uses most of it */
#define FD_MAX_MESSAGES 5   /* "accept:" lines over FD_WATCH_MS; spinning prints thousands */

/* CPU time (user + system) the process has used so far, in ms; -1 if /proc
   cannot tell (not Linux). */
static double cpu_ms(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long utime, stime;
    size_t n;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f) return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields 14 and 15, counted after the command name, which is in
       parentheses and may itself hold spaces and parentheses. */
    p = strrchr(buf, ')');
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* Sends line and expects reply back within timeout_ms. */
static int check_exchange(int fd, const char *line, const char *reply, int timeout_ms)
{
    char got[64];
    size_t n;

    if (send_all(fd, line, strlen(line)) < 0) return -1;
    if (recv_some(fd, got, strlen(reply), &n, timeout_ms) < 0) return -1;
    return compare_bytes("reply", got, n, reply, strlen(reply));
}

/* Reads the server's output (stdout and stderr) for ms, counting the lines
   about accept failing; *cpu gets the CPU time it used meanwhile (-1: unknown). */
static int count_accept_messages(struct child *c, int ms, double *cpu)
{
    double before = cpu_ms(c->pid), deadline = now_ms() + ms;
    char line[1024];
    int count = 0, left;

    while ((left = (int)(deadline - now_ms())) > 0 && read_line(c, line, sizeof line, left) == 1)
        if (strstr(line, "accept:")) count++;
    *cpu = before < 0 ? -1 : cpu_ms(c->pid) - before;
    return count;
}

/* While out of descriptors: the first client (accepted before they ran out)
   is still served, the server stays nearly idle and says so once or a few
   times, not once per try. */
static int check_fd_pause(struct child *c, int first_fd, const char *line, const char *reply)
{
    double cpu;
    int messages;

    if (check_exchange(first_fd, line, reply, 2000) < 0)
        return why("the first client, while out of descriptors: %s", reason);
    messages = count_accept_messages(c, FD_WATCH_MS, &cpu);
    if (messages == 0) return why("no \"accept:\" message: did the server run out of descriptors?");
    if (messages > FD_MAX_MESSAGES)
        return why("%d \"accept:\" messages in %d ms, want at most %d", messages, FD_WATCH_MS,
                   FD_MAX_MESSAGES);
    /* A wrapper (valgrind...) adds CPU time of its own: judge only plain runs. */
    if (cpu > FD_MAX_CPU_MS && !getenv("EXAMPLES_WRAPPER"))
        return why("used %.0f ms of CPU in %d ms while out of descriptors, want at most %d", cpu,
                   FD_WATCH_MS, FD_MAX_CPU_MS);
    if (cpu < 0) note("no /proc/PID/stat: CPU time not checked");
    return 0;
}

/* Opens FD_CLIENTS clients (connect succeeds from the listen backlog even when
   the server cannot accept), checks the pause, closes them all, and checks
   that the server accepts and serves a new client again. */
static int check_fd_exhaustion(struct child *c, const char *name, int port, const char *line,
                               const char *reply)
{
    char want[64];
    int fds[FD_CLIENTS], i, n = 0, rc = 0;

    for (i = 0; rc == 0 && i < FD_CLIENTS; i++)
        if ((fds[n] = connect_local(port, 0)) < 0)
            rc = why("client %d: %s", i, reason);
        else
            n++;
    if (rc == 0) rc = check_fd_pause(c, fds[0], line, reply);
    for (i = 0; i < n; i++) close(fds[i]);
    if (rc < 0) return rc;
    /* Closing the clients frees the server's descriptors; the next retry
       (100 ms later) takes the closed ones from the backlog, then this one. */
    fds[0] = connect_local(port, 0);
    if (fds[0] < 0) return -1;
    rc = check_exchange(fds[0], line, reply, 3000);
    close(fds[0]);
    if (rc < 0) return why("a new client after the others left: %s", reason);
    snprintf(want, sizeof want, "%s: accepting new connections again", name);
    return skip_to_line(c, want, 2000);
}

/* Starts name (with extra arguments after the port) under the low fd limit,
   its stderr in the pipe too, and runs the check. */
static void test_fd_exhaustion(const char *name, const char *extra, const char *line,
                               const char *reply)
{
    struct child c;
    char title[160], stop_title[96];
    int rc, port = 0;

    child_nofile = FD_LIMIT;
    merge_stderr = 1;
    rc = start_server_on_some_port(&c, name, &port, extra);
    child_nofile = 0;
    merge_stderr = 0;
    snprintf(title, sizeof title,
             "%s out of descriptors (%d clients, fd limit %d): pauses accepting, little CPU, "
             "few messages, then accepts again",
             name, FD_CLIENTS, FD_LIMIT);
    if (rc == 0) rc = check_fd_exhaustion(&c, name, port, line, reply);
    report(title, rc);
    snprintf(stop_title, sizeof stop_title, "%s (fd limit %d) exits 0 on SIGTERM", name, FD_LIMIT);
    if (c.pid > 0) finish_child(&c, SIGTERM, stop_title, "got SIGTERM, shutting down");
}

/*== FIFO READER ==*/

/* One writer session: open (retrying while no reader is there), write, close. */
static int write_fifo_session(const char *text)
{
    double deadline = now_ms() + 3000;
    int fd;

    while ((fd = open(fifo_path, O_WRONLY | O_NONBLOCK)) < 0) {
        if (errno != ENXIO || now_ms() > deadline) return why("open FIFO: %s", strerror(errno));
        sleep_ms(10);
    }
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        int err = errno;

        close(fd);
        return why("write FIFO: %s", strerror(err));
    }
    close(fd);
    return 0;
}

static int check_fifo_sessions(struct child *c)
{
    static const char *const sessions[] = {"first session", "second session"};
    char want[256];
    size_t i;
    int rc = 0;

    for (i = 0; rc == 0 && i < 2; i++) {
        snprintf(want, sizeof want, "%s\n", sessions[i]);
        rc = write_fifo_session(want);
        snprintf(want, sizeof want, "read: %s", sessions[i]);
        if (rc == 0) rc = expect_line(c, want, 0, 3000);
        /* After the writer closed, the reader must reopen before session 2. */
        snprintf(want, sizeof want, "writer closed, reopened %s", fifo_path);
        if (rc == 0) rc = expect_line(c, want, 0, 3000);
    }
    return rc;
}

static void test_fifo(void)
{
    struct child c;
    const char *args[2];
    char want[256];
    struct stat st;
    int rc;

    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/evloop-examples-XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        tmp_dir[0] = '\0';
        report("fifo_reader starts and prints its ready line", why("mkdtemp: %s", strerror(errno)));
        return;
    }
    snprintf(fifo_path, sizeof fifo_path, "%s/event.fifo", tmp_dir);
    snprintf(want, sizeof want, "reading %s", fifo_path);
    args[0] = fifo_path;
    args[1] = NULL;
    rc = spawn(&c, "fifo_reader", args);
    if (rc == 0) rc = expect_line(&c, want, 0, READY_TIMEOUT_MS);
    report("fifo_reader starts and prints its ready line", rc);
    if (rc == 0) {
        report("fifo_reader reads two writer sessions, reopening in between",
               check_fifo_sessions(&c));
        finish_child(&c, SIGTERM, "fifo_reader exits 0 on SIGTERM", "got SIGTERM, shutting down");
        rc = stat(fifo_path, &st) == 0 ? why("%s still exists", fifo_path) : 0;
        report("fifo_reader removes the FIFO it created", rc);
    } else {
        kill_child(&c);
    }
    unlink(fifo_path);
    fifo_path[0] = '\0';
    rmdir(tmp_dir);
    tmp_dir[0] = '\0';
}

/*== TIMERS ==*/

#define TIMERS_SCALE 2

struct timer_log {
    int ticks;       /* tick lines seen, each numbered one more than the last */
    int next;        /* index of the next non-tick line expected */
    int tick1_first; /* "tick 1" came before "one-shot" */
    int exit_ticks;  /* tick count printed on the exit line */
    long early_ms;   /* a timer that fired early: its elapsed time, else -1 */
};

/* One line of output from timers: "NAME at T ms", "tick N at T ms" or
   "exit at T ms after N ticks". Returns -1 (with reason) on a bad line. */
static int log_timer_line(struct timer_log *log, const char *line)
{
    static const char *const names[] = {"one-shot", "common A", "common B", "common C", "exit"};
    static const long due_ms[] = {100, 120, 120, 120, 400};
    int n;
    long ms;

    if (log->next >= 5) return why("unexpected line \"%s\" after exit", line);
    if (sscanf(line, "tick %d at %ld ms", &n, &ms) == 2) {
        if (n != log->ticks + 1) return why("\"%s\" after tick %d", line, log->ticks);
        log->ticks = n;
        return 0;
    }
    if (strncmp(line, names[log->next], strlen(names[log->next])) != 0 ||
        sscanf(line + strlen(names[log->next]), " at %ld ms", &ms) != 1)
        return why("expected \"%s at ...\", got \"%s\"", names[log->next], line);
    if (log->next == 0) log->tick1_first = log->ticks >= 1;
    if (log->next == 4 && sscanf(line, "exit at %ld ms after %d ticks", &ms, &log->exit_ticks) != 2)
        return why("bad exit line \"%s\"", line);
    if (ms < due_ms[log->next] * TIMERS_SCALE) log->early_ms = ms;
    log->next++;
    return 0;
}

static int check_timer_log(const struct timer_log *log)
{
    if (log->next < 5) return why("output ended before the exit line");
    if (!log->tick1_first) return why("one-shot (100 ms) came before tick 1 (50 ms)");
    if (log->ticks < 6 || log->ticks > 8) return why("%d ticks, want 6 .. 8", log->ticks);
    if (log->exit_ticks != log->ticks)
        return why("exit line says %d ticks, %d were printed", log->exit_ticks, log->ticks);
    if (log->early_ms >= 0) return why("a timer fired early, at %ld ms", log->early_ms);
    return 0;
}

static void test_timers(void)
{
    struct timer_log log;
    struct child c;
    char line[256], scale[8];
    const char *args[2];
    int r, rc;

    memset(&log, 0, sizeof log);
    log.early_ms = -1;
    snprintf(scale, sizeof scale, "%d", TIMERS_SCALE);
    args[0] = scale;
    args[1] = NULL;
    rc = spawn(&c, "timers", args);
    while (rc == 0 && (r = read_line(&c, line, sizeof line, READY_TIMEOUT_MS)) != 0)
        rc = r < 0 ? why("timed out reading output") : log_timer_line(&log, line);
    if (rc == 0) rc = check_timer_log(&log);
    report("timers prints one-shot, ticks, common timeouts and exit in order", rc);
    /* Whatever its output, it must end by itself (evloop_exit) with status 0. */
    if (c.pid > 0) finish_child(&c, 0, "timers exits 0 by itself", NULL);
}

/*== SIGNALS ==*/

static int check_hup(struct child *c)
{
    int i, rc = 0;

    /* Twice: the first SIGHUP must not have ended anything. */
    for (i = 0; rc == 0 && i < 2; i++) {
        kill(c->pid, SIGHUP);
        rc = expect_line(c, "got SIGHUP, reloading configuration", 0, 3000);
    }
    return rc;
}

static void test_signals(void)
{
    struct child c;
    const char *args[1];
    char want[64];
    int rc;

    args[0] = NULL;
    rc = spawn(&c, "signals", args);
    snprintf(want, sizeof want, "pid %ld ready", (long)c.pid);
    if (rc == 0) rc = expect_line(&c, want, 0, READY_TIMEOUT_MS);
    report("signals starts and prints its pid", rc);
    if (rc < 0) {
        kill_child(&c);
        return;
    }
    report("signals SIGHUP reloads and keeps running", check_hup(&c));
    finish_child(&c, SIGTERM, "signals SIGTERM shuts down with exit status 0",
                 "got SIGTERM, shutting down");
}

/*== MAIN ==*/

int main(int argc, char **argv)
{
    struct stat st;

    if (argc != 2 || stat(argv[1], &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "usage: %s BINDIR   (the directory holding the built examples)\n", argv[0]);
        return 2;
    }
    bindir = argv[1];
    install_emergency_handlers();
    test_rot13();
    test_echo();
    test_fd_exhaustion("rot13_server", NULL, "Hello\n", "Uryyb\n");
    test_fd_exhaustion("echo_server", "10", "Hello\n", "Hello\n"); /* idle timeout 10 s */
    test_fifo();
    test_timers();
    test_signals();
    printf("examples: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
