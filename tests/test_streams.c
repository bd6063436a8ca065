/* test_streams.c - tests for evloop's networking layer: buffers, streams,
   the listener and the socket utilities.

   Built once per backend exactly like test_evloop.c (-DEVLOOP_BACKEND_EPOLL /
   _POLL / _SELECT, or _KQUEUE with -Itests/kqueue); also compiles as C++.
   Everything runs over loopback (AF_UNIX socketpairs and 127.0.0.1 TCP).

   The allocator hooks count the library's live blocks (every test ends with
   none left), count calls (to show what does not copy or allocate), refuse
   absurd sizes the way a real allocator fails, and inject ENOMEM. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_ANON, strsignal, dirfd, sigtimedwait for the harness; accept4 */
#endif

#include "alloc_hooks.h"

#define EVLOOP_IMPLEMENTATION
#include "evloop.h"

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*== HELPERS ==*/

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(long ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static struct timeval tv_ms(long ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

static evloop *new_loop(void)
{
    evloop *loop = evloop_new();
    REQUIRE(loop != NULL);
    return loop;
}

/* Every test ends here: the loop gone, nothing left allocated. */
static void free_loop_check(evloop *loop)
{
    evloop_free(loop);
    CHECK_EQ_INT(live_blocks(), 0);
}

typedef struct deadline {
    evloop *loop;
    int hit;
    evloop_event ev;
} deadline;

static void on_deadline(evloop_socket_t fd, short what, void *arg)
{
    deadline *d = (deadline *)arg;
    (void)fd;
    (void)what;
    d->hit = 1;
    evloop_break(d->loop);
}

/* Run until a callback calls evloop_exit / evloop_break or ms pass.
   Returns 1 if the time ran out. */
static int run_ms(evloop *loop, long ms)
{
    deadline d;
    struct timeval tv = tv_ms(ms);
    d.loop = loop;
    d.hit = 0;
    REQUIRE(evloop_timer_assign(&d.ev, loop, on_deadline, &d) == 0);
    REQUIRE(evloop_timer_add(&d.ev, &tv) == 0);
    evloop_run(loop, 0);
    evloop_event_del(&d.ev);
    return d.hit;
}

/* A few rounds that do not wait: lets ready events fire. */
static void spin_rounds(evloop *loop, int n)
{
    while (n-- > 0) evloop_run(loop, EVLOOP_NONBLOCK);
}

static void unix_pair(int fds[2])
{
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
}

static struct sockaddr_in loopback_addr(int port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sin;
}

static int port_of(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    REQUIRE(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
    return ntohs(sin.sin_port);
}

/* A blocking TCP socket listening on 127.0.0.1 at a free port. */
static int listen_tcp(int backlog)
{
    struct sockaddr_in sin = loopback_addr(0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    REQUIRE(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    REQUIRE(listen(fd, backlog) == 0);
    return fd;
}

static int connect_tcp(int port)
{
    struct sockaddr_in sin = loopback_addr(port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    REQUIRE(connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    return fd;
}

/* A connected pair of blocking TCP sockets over loopback. */
static void tcp_pair(int fds[2])
{
    int l = listen_tcp(4);
    fds[0] = connect_tcp(port_of(l));
    fds[1] = accept(l, NULL, NULL);
    REQUIRE(fds[1] >= 0);
    close(l);
}

/* A port on 127.0.0.1 with nothing listening (bound, then released). */
static int closed_port(void)
{
    struct sockaddr_in sin = loopback_addr(0);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    REQUIRE(fd >= 0);
    REQUIRE(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    port = port_of(fd);
    close(fd);
    return port;
}

static int fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* Deterministic bytes: the pattern of stream `id` at offset `off`. */
static unsigned char pattern_byte(unsigned id, size_t off)
{
    uint32_t x = (uint32_t)(off * 2654435761u) ^ (id * 40503u) ^ (uint32_t)(off >> 7);
    return (unsigned char)(x ^ (x >> 11) ^ (x >> 19));
}

static void fill_pattern(unsigned char *p, size_t n, unsigned id, size_t off)
{
    size_t i;
    for (i = 0; i < n; i++) p[i] = pattern_byte(id, off + i);
}

/* A buffer whose bytes each sit in their own chunk: moved in one at a time. */
static evloop_buffer *fragmented(const void *data, size_t len)
{
    evloop_buffer *buf = evloop_buffer_new(), *one = evloop_buffer_new();
    size_t i;
    REQUIRE(buf && one);
    for (i = 0; i < len; i++) {
        REQUIRE(evloop_buffer_add(one, (const char *)data + i, 1) == 0);
        REQUIRE(evloop_buffer_add_buffer(buf, one) == 0);
    }
    evloop_buffer_free(one);
    return buf;
}

static void drain_fd(int fd)
{
    char tmp[4096];
    while (recv(fd, tmp, sizeof tmp, MSG_DONTWAIT) > 0) {
    }
}

/*== BUFFERS ==*/

TEST(buffer_new_free_and_length)
{
    evloop_buffer *buf = evloop_buffer_new();
    REQUIRE(buf != NULL);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(NULL), 0);
    CHECK_EQ_INT(evloop_buffer_add(buf, "abc", 3), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 3);
    CHECK_EQ_INT(evloop_buffer_add(buf, NULL, 0), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 3);
    evloop_buffer_free(buf);
    evloop_buffer_free(NULL);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(buffer_bad_arguments)
{
    evloop_buffer *buf = evloop_buffer_new();
    char c;
    REQUIRE(buf != NULL);
    CHECK_ERR(evloop_buffer_add(NULL, "x", 1), EINVAL);
    CHECK_ERR(evloop_buffer_add(buf, NULL, 1), EINVAL);
    CHECK_ERR(evloop_buffer_remove(NULL, &c, 1), EINVAL);
    CHECK_ERR(evloop_buffer_remove(buf, NULL, 1), EINVAL);
    CHECK_ERR(evloop_buffer_copyout(NULL, &c, 1), EINVAL);
    CHECK_ERR(evloop_buffer_drain(NULL, 1), EINVAL);
    CHECK_ERR(evloop_buffer_add_buffer(buf, NULL), EINVAL);
    CHECK_ERR(evloop_buffer_add_buffer(NULL, buf), EINVAL);
    CHECK_ERR(evloop_buffer_add_buffer(buf, buf), EINVAL);
    CHECK_ERR(evloop_buffer_find(NULL, "x", 1), EINVAL);
    CHECK_ERR(evloop_buffer_find(buf, NULL, 1), EINVAL);
    CHECK_NULL_ERR(evloop_buffer_pullup(NULL, 1), EINVAL);
    CHECK_NULL_ERR(evloop_buffer_pullup(buf, -2), EINVAL);
    CHECK_NULL_ERR(evloop_buffer_readln(NULL, NULL, EVLOOP_EOL_LF), EINVAL);
    CHECK_NULL_ERR(evloop_buffer_readln(buf, NULL, (enum evloop_eol_style)99), EINVAL);
    CHECK_ERR(evloop_buffer_read(NULL, 0, -1), EINVAL);
    CHECK_ERR(evloop_buffer_read(buf, -1, -1), EINVAL);
    CHECK_ERR(evloop_buffer_read(buf, 0, 0), EINVAL);
    CHECK_ERR(evloop_buffer_write(NULL, 1), EINVAL);
    CHECK_ERR(evloop_buffer_write(buf, -1), EINVAL);
    CHECK_ERR(evloop_buffer_add_printf(NULL, "x"), EINVAL);
    CHECK_ERR(evloop_buffer_add_printf(buf, NULL), EINVAL);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 0);
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

/* Random-sized adds and removes of 1 MiB keep every byte in order. */
TEST(buffer_add_remove_keeps_order)
{
    enum { TOTAL = 1 << 20 };
    unsigned char *src = (unsigned char *)malloc(TOTAL), *dst = (unsigned char *)malloc(TOTAL);
    evloop_buffer *buf = evloop_buffer_new();
    size_t in = 0, out = 0;
    unsigned seed = 12345;
    REQUIRE(src && dst && buf);
    fill_pattern(src, TOTAL, 1, 0);
    while (out < TOTAL) {
        size_t n;
        n = harness_rand(&seed, 20000);
        if (in < TOTAL && (seed & 1)) {
            if (n > TOTAL - in) n = TOTAL - in;
            REQUIRE(evloop_buffer_add(buf, src + in, n) == 0);
            in += n;
        } else {
            int got = evloop_buffer_remove(buf, dst + out, n);
            REQUIRE(got >= 0);
            CHECK_EQ_INT((size_t)got, n < in - out ? n : in - out);
            out += (size_t)got;
        }
        REQUIRE_EQ_INT(evloop_buffer_get_length(buf), in - out);
    }
    CHECK(memcmp(src, dst, TOTAL) == 0);
    evloop_buffer_free(buf);
    free(src);
    free(dst);
    CHECK_EQ_INT(live_blocks(), 0);
}

/* Small adds fill the last chunk's free space; draining frees nothing until
   a chunk is used up, and the drained buffer keeps a block for reuse. */
TEST(buffer_small_adds_and_drains_do_not_allocate)
{
    evloop_buffer *buf = evloop_buffer_new();
    char line[100];
    long before;
    int i;
    REQUIRE(buf != NULL);
    memset(line, 'x', sizeof line);
    REQUIRE(evloop_buffer_add(buf, line, sizeof line) == 0);
    before = alloc_count();
    for (i = 0; i < 20; i++) REQUIRE(evloop_buffer_add(buf, line, sizeof line) == 0);
    CHECK_EQ_INT(alloc_count(), before);
    CHECK_EQ_INT(evloop_buffer_drain(buf, 50), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 21 * 100 - 50);
    CHECK_EQ_INT(evloop_buffer_drain(buf, SIZE_MAX), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 0);
    for (i = 0; i < 10; i++) { /* request, consume, request: the same block each time */
        REQUIRE(evloop_buffer_add(buf, line, sizeof line) == 0);
        REQUIRE(evloop_buffer_drain(buf, sizeof line) == 0);
    }
    CHECK_EQ_INT(alloc_count(), before);
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(buffer_copyout_leaves_data)
{
    evloop_buffer *buf = evloop_buffer_new();
    char out[16];
    REQUIRE(buf != NULL);
    REQUIRE(evloop_buffer_add(buf, "hello, world", 12) == 0);
    memset(out, 0, sizeof out);
    CHECK_EQ_INT(evloop_buffer_copyout(buf, out, 5), 5);
    CHECK(memcmp(out, "hello", 5) == 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 12);
    CHECK_EQ_INT(evloop_buffer_copyout(buf, out, sizeof out), 12);
    CHECK(memcmp(out, "hello, world", 12) == 0);
    CHECK_EQ_INT(evloop_buffer_copyout(buf, NULL, 0), 0);
    CHECK_EQ_INT(evloop_buffer_remove(buf, out, 7), 7);
    CHECK_EQ_INT(evloop_buffer_copyout(buf, out, sizeof out), 5);
    CHECK(memcmp(out, "world", 5) == 0);
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(buffer_drain_partial_and_more_than_held)
{
    evloop_buffer *buf = fragmented("abcdefghij", 10);
    char out[10];
    CHECK_EQ_INT(evloop_buffer_drain(buf, 0), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 10);
    CHECK_EQ_INT(evloop_buffer_drain(buf, 3), 0);
    CHECK_EQ_INT(evloop_buffer_remove(buf, out, 2), 2);
    CHECK(memcmp(out, "de", 2) == 0);
    CHECK_EQ_INT(evloop_buffer_drain(buf, 1000), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 0);
    CHECK_EQ_INT(evloop_buffer_remove(buf, out, sizeof out), 0);
    CHECK_EQ_INT(evloop_buffer_drain(buf, 5), 0);
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

/* add_buffer moves chunks: the bytes stay where they were, nothing is allocated. */
TEST(buffer_add_buffer_moves_without_copying)
{
    evloop_buffer *a = evloop_buffer_new(), *b = evloop_buffer_new();
    unsigned char big[10000], out[10010];
    unsigned char *before, *after;
    long calls;
    REQUIRE(a && b);
    fill_pattern(big, sizeof big, 7, 0);
    REQUIRE(evloop_buffer_add(b, big, sizeof big) == 0);
    before = evloop_buffer_pullup(b, -1);
    REQUIRE(before != NULL);
    calls = alloc_count();
    CHECK_EQ_INT(evloop_buffer_add_buffer(a, b), 0);
    CHECK_EQ_INT(alloc_count(), calls);
    CHECK_EQ_INT(evloop_buffer_get_length(b), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(a), sizeof big);
    after = evloop_buffer_pullup(a, -1);
    CHECK_EQ_PTR(after, before);
    CHECK_EQ_INT(evloop_buffer_add_buffer(a, b), 0); /* empty source: nothing to do */
    /* onto a non-empty destination: order kept */
    REQUIRE(evloop_buffer_drain(a, sizeof big - 5) == 0);
    REQUIRE(evloop_buffer_add(b, "0123456789", 10) == 0);
    CHECK_EQ_INT(evloop_buffer_add_buffer(a, b), 0);
    CHECK_EQ_INT(evloop_buffer_remove(a, out, sizeof out), 15);
    CHECK(memcmp(out, big + sizeof big - 5, 5) == 0);
    CHECK(memcmp(out + 5, "0123456789", 10) == 0);
    /* and the source is usable afterwards */
    CHECK_EQ_INT(evloop_buffer_add(b, "z", 1), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(b), 1);
    evloop_buffer_free(a);
    evloop_buffer_free(b);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(buffer_pullup_across_chunks)
{
    const char *text = "The quick brown fox jumps over the lazy dog";
    size_t len = strlen(text);
    evloop_buffer *buf = fragmented(text, len);
    unsigned char *p;
    char out[64];
    p = evloop_buffer_pullup(buf, 9);
    REQUIRE(p != NULL);
    CHECK(memcmp(p, "The quick", 9) == 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), len);
    p = evloop_buffer_pullup(buf, 0);
    CHECK(p != NULL && p[0] == 'T');
    p = evloop_buffer_pullup(buf, -1);
    REQUIRE(p != NULL);
    CHECK(memcmp(p, text, len) == 0);
    CHECK_NULL_ERR(evloop_buffer_pullup(buf, (long)len + 1), EINVAL);
    CHECK_NULL_ERR(evloop_buffer_pullup(buf, LONG_MAX), EINVAL);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), len);
    REQUIRE(evloop_buffer_drain(buf, 4) == 0);
    p = evloop_buffer_pullup(buf, 5);
    CHECK(p != NULL && memcmp(p, "quick", 5) == 0);
    CHECK_EQ_INT(evloop_buffer_remove(buf, out, sizeof out), (int)len - 4);
    CHECK(memcmp(out, text + 4, len - 4) == 0);
    CHECK(evloop_buffer_pullup(buf, -1) == NULL); /* empty: nothing to point at */
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

/* Mixed chunk sizes (big + fragmented tail) so pullup must gather into a new block. */
TEST(buffer_pullup_larger_than_first_chunk)
{
    evloop_buffer *buf = evloop_buffer_new(), *tail;
    unsigned char data[20000], *p;
    REQUIRE(buf != NULL);
    fill_pattern(data, sizeof data, 3, 0);
    REQUIRE(evloop_buffer_add(buf, data, 6000) == 0);
    tail = fragmented(data + 6000, 300);
    REQUIRE(evloop_buffer_add_buffer(buf, tail) == 0);
    REQUIRE(evloop_buffer_add(buf, data + 6300, sizeof data - 6300) == 0);
    REQUIRE(evloop_buffer_drain(buf, 100) == 0);
    p = evloop_buffer_pullup(buf, 15000);
    REQUIRE(p != NULL);
    CHECK(memcmp(p, data + 100, 15000) == 0);
    p = evloop_buffer_pullup(buf, -1);
    REQUIRE(p != NULL);
    CHECK(memcmp(p, data + 100, sizeof data - 100) == 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), sizeof data - 100);
    evloop_buffer_free(tail);
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

static long naive_find(const unsigned char *hay, size_t n, const unsigned char *pat, size_t m)
{
    size_t i;
    if (!m) return 0;
    for (i = 0; i + m <= n; i++)
        if (memcmp(hay + i, pat, m) == 0) return (long)i;
    return -1;
}

TEST(buffer_find_matches_naive_search)
{
    unsigned char hay[600], pat[8];
    unsigned seed = 99;
    int round;
    for (round = 0; round < 300; round++) {
        size_t n, m, i;
        evloop_buffer *buf;
        n = 1 + harness_rand(&seed, sizeof hay);
        m = 1 + (seed >> 20) % 4;
        for (i = 0; i < n; i++) /* small alphabet: many near misses */
            hay[i] = (unsigned char)('a' + harness_rand(&seed, 3));
        for (i = 0; i < m; i++) pat[i] = (unsigned char)('a' + (i * 7 + (size_t)round) % 3);
        buf = (round & 1) ? fragmented(hay, n) : evloop_buffer_new();
        if (!(round & 1)) REQUIRE(evloop_buffer_add(buf, hay, n) == 0);
        CHECK_EQ_INT(evloop_buffer_find(buf, pat, m), naive_find(hay, n, pat, m));
        evloop_buffer_free(buf);
        if (harness_failed()) break;
    }
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(buffer_find_edges)
{
    evloop_buffer *buf = fragmented("hello\r\nworld\r\n", 14);
    CHECK_EQ_INT(evloop_buffer_find(buf, "hello", 5), 0);
    CHECK_EQ_INT(evloop_buffer_find(buf, "\r\n", 2), 5);
    CHECK_EQ_INT(evloop_buffer_find(buf, "world\r\n", 7), 7);
    CHECK_EQ_INT(evloop_buffer_find(buf, "world\r\n!", 8), -1); /* runs past the end */
    CHECK_EQ_INT(evloop_buffer_find(buf, "xyz", 3), -1);
    CHECK_EQ_INT(evloop_buffer_find(buf, "", 0), 0);
    CHECK_EQ_INT(evloop_buffer_find(buf, "h", SIZE_MAX), -1); /* longer than the buffer */
    REQUIRE(evloop_buffer_drain(buf, 6) == 0);
    CHECK_EQ_INT(evloop_buffer_find(buf, "\r\n", 2), 6);
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

/* A model of a buffer: the same bytes in one flat array. */
#define MODEL_CAP (1 << 20)
static struct buffer_model {
    unsigned char bytes[MODEL_CAP], scratch[MODEL_CAP];
    size_t len;
    unsigned seed;
} bm;

static size_t bm_next(size_t n)
{
    return harness_rand(&bm.seed, (unsigned)n);
}

/* Sizes from none to more than a chunk; bytes from a small alphabet with
   every EOL byte in it, so lines and near-miss matches are common. */
static size_t bm_size(void)
{
    static const size_t limits[] = {4, 100, 5000, 70000};
    return bm_next(limits[bm_next(4)]);
}

static void bm_fill(unsigned char *p, size_t n)
{
    static const unsigned char alphabet[] = {'a', 'b', '\r', '\n', '\0', 'x'};
    while (n--) *p++ = alphabet[bm_next(sizeof alphabet)];
}

static void bm_append(const unsigned char *p, size_t n)
{
    memcpy(bm.bytes + bm.len, p, n);
    bm.len += n;
}

static void bm_consume(size_t n)
{
    if (n > bm.len) n = bm.len;
    memmove(bm.bytes, bm.bytes + n, bm.len - n);
    bm.len -= n;
}

/* Where the model's first line ends, and its EOL's length; -1: no line. */
static long bm_eol(enum evloop_eol_style eol, size_t *eol_len)
{
    size_t i, j;
    *eol_len = eol == EVLOOP_EOL_CRLF_STRICT ? 2 : 1;
    for (i = 0; i < bm.len; i++) {
        unsigned char b = bm.bytes[i];
        if (eol == EVLOOP_EOL_ANY && (b == '\r' || b == '\n')) {
            for (j = i; j < bm.len && (bm.bytes[j] == '\r' || bm.bytes[j] == '\n'); j++) continue;
            *eol_len = j - i;
            return (long)i;
        }
        if ((eol == EVLOOP_EOL_LF && b == '\n') || (eol == EVLOOP_EOL_NUL && b == '\0'))
            return (long)i;
        if (eol == EVLOOP_EOL_CRLF && b == '\n') {
            if (i > 0 && bm.bytes[i - 1] == '\r') return (*eol_len = 2), (long)i - 1;
            return (long)i;
        }
        if (eol == EVLOOP_EOL_CRLF_STRICT && b == '\r' && i + 1 < bm.len && bm.bytes[i + 1] == '\n')
            return (long)i;
    }
    return -1;
}

/* One random call on buf (other: a second buffer; sock: a connected pair),
   the same change made to the model, the results compared. */
static void bm_step(evloop_buffer *buf, evloop_buffer *other, const int sock[2])
{
    unsigned char *tmp = bm.scratch;
    size_t n = bm_size(), want = n < bm.len ? n : bm.len, k, eol_len, got;
    int op = (int)bm_next(10);
    long at;
    char *line;
    if (bm.len + 4 * 70000 > MODEL_CAP) op = 2; /* keep the model in bounds */
    switch (op) {
    case 0: /* add */
        bm_fill(tmp, n);
        CHECK_EQ_INT(evloop_buffer_add(buf, tmp, n), 0);
        bm_append(tmp, n);
        break;
    case 1: /* add_buffer: a few adds to other, then all of it moves over */
        for (k = 1 + bm_next(3); k > 0; k--) {
            n = bm_size();
            bm_fill(tmp, n);
            REQUIRE(evloop_buffer_add(other, tmp, n) == 0);
            bm_append(tmp, n);
        }
        CHECK_EQ_INT(evloop_buffer_add_buffer(buf, other), 0);
        CHECK_EQ_INT(evloop_buffer_get_length(other), 0);
        break;
    case 2: /* remove, or copyout then drain */
        if (bm_next(2)) {
            CHECK_EQ_INT(evloop_buffer_remove(buf, tmp, n), want);
        } else {
            CHECK_EQ_INT(evloop_buffer_copyout(buf, tmp, n), want);
            CHECK_EQ_INT(evloop_buffer_drain(buf, n), 0);
        }
        CHECK(memcmp(tmp, bm.bytes, want) == 0);
        bm_consume(want);
        break;
    case 3: /* pullup of some or all */
        if (bm.len) {
            long size = bm_next(3) ? (long)bm_next(bm.len + 1) : -1;
            unsigned char *p = evloop_buffer_pullup(buf, size);
            if (size) CHECK(p && memcmp(p, bm.bytes, size < 0 ? bm.len : (size_t)size) == 0);
        }
        break;
    case 4: /* find a piece of the contents, or random bytes */
        k = bm_next(6);
        if (bm.len && bm_next(2)) {
            at = (long)bm_next(bm.len);
            if (k > bm.len - (size_t)at) k = bm.len - (size_t)at;
            memcpy(tmp, bm.bytes + at, k);
        } else {
            bm_fill(tmp, k);
        }
        CHECK_EQ_INT(evloop_buffer_find(buf, tmp, k), naive_find(bm.bytes, bm.len, tmp, k));
        break;
    case 5:
    case 6: { /* readln in any style */
        enum evloop_eol_style eol = (enum evloop_eol_style)bm_next(5);
        at = bm_eol(eol, &eol_len);
        got = 12345;
        line = evloop_buffer_readln(buf, &got, eol);
        if (at < 0) {
            CHECK(line == NULL);
            break;
        }
        REQUIRE(line != NULL);
        CHECK_EQ_INT(got, at);
        CHECK(memcmp(line, bm.bytes, (size_t)at) == 0 && line[at] == '\0');
        evloop_mem_free(line);
        bm_consume((size_t)at + eol_len);
        break;
    }
    case 7: /* write the front to a socket: what arrives is what left */
        if (!bm.len) break;
        at = evloop_buffer_write(buf, sock[0]);
        REQUIRE(at > 0);
        for (k = 0; k < (size_t)at;) {
            ssize_t r = read(sock[1], tmp + k, (size_t)at - k);
            REQUIRE(r > 0);
            k += (size_t)r;
        }
        CHECK(memcmp(tmp, bm.bytes, k) == 0);
        bm_consume(k);
        break;
    default: /* read from a socket, whole or in pieces */
        n = n > 60000 ? 60000 : n;
        bm_fill(tmp, n);
        REQUIRE(write(sock[1], tmp, n) == (ssize_t)n);
        for (k = 0; k < n;) {
            int r = evloop_buffer_read(buf, sock[0], bm_next(2) ? -1 : 1 + (int)bm_next(n));
            REQUIRE(r > 0);
            bm_append(tmp + k, (size_t)r);
            k += (size_t)r;
        }
        break;
    }
    CHECK_EQ_INT(evloop_buffer_get_length(buf), bm.len);
}

TEST(buffer_matches_byte_model_under_random_calls)
{
    unsigned seed;
    int step, sock[2];
    unix_pair(sock);
    REQUIRE(evloop_make_socket_nonblocking(sock[0]) == 0);
    for (seed = 1; seed <= 100 && !harness_failed(); seed++) {
        evloop_buffer *buf = evloop_buffer_new(), *other = evloop_buffer_new();
        REQUIRE(buf && other);
        bm.len = 0;
        bm.seed = seed;
        for (step = 0; step < 300 && !harness_failed(); step++) bm_step(buf, other, sock);
        CHECK_EQ_INT(evloop_buffer_remove(buf, bm.scratch, bm.len + 1), bm.len);
        CHECK(memcmp(bm.scratch, bm.bytes, bm.len) == 0);
        evloop_buffer_free(buf);
        evloop_buffer_free(other);
    }
    close(sock[0]);
    close(sock[1]);
    CHECK_EQ_INT(live_blocks(), 0);
}

#define TEXT(s) s, sizeof(s) - 1 /* a literal and its length, NULs included */

typedef struct eol_case {
    enum evloop_eol_style eol;
    const char *input;
    size_t input_len;
    const char *lines[5]; /* expected, NULL-terminated */
    const char *rest;     /* what stays in the buffer */
    size_t rest_len;
} eol_case;

/* Runs one case on a contiguous buffer and on one with a chunk per byte. */
static void check_eol_case(const eol_case *c)
{
    int split;
    for (split = 0; split < 2; split++) {
        evloop_buffer *buf;
        char rest[64];
        int i;
        if (split) {
            buf = fragmented(c->input, c->input_len);
        } else {
            buf = evloop_buffer_new();
            REQUIRE(buf && evloop_buffer_add(buf, c->input, c->input_len) == 0);
        }
        for (i = 0; c->lines[i]; i++) {
            size_t n = 12345;
            char *line = evloop_buffer_readln(buf, &n, c->eol);
            CHECK_STR_EQ(line, c->lines[i]);
            if (line) CHECK_EQ_INT(n, strlen(c->lines[i]));
            evloop_mem_free(line);
        }
        {
            size_t n = 12345;
            errno = EINVAL;
            CHECK(evloop_buffer_readln(buf, &n, c->eol) == NULL);
            CHECK_EQ_INT(errno, 0);
            CHECK_EQ_INT(n, 0);
        }
        CHECK_EQ_INT(evloop_buffer_get_length(buf), c->rest_len);
        CHECK_EQ_INT(evloop_buffer_copyout(buf, rest, sizeof rest), (int)c->rest_len);
        CHECK(memcmp(rest, c->rest, c->rest_len) == 0);
        evloop_buffer_free(buf);
    }
}

TEST(readln_eol_any)
{
    static const eol_case c = {
        EVLOOP_EOL_ANY, TEXT("a\r\nb\n\nc\rd\n\r\r\ne"), {"a", "b", "c", "d", NULL}, TEXT("e")};
    check_eol_case(&c);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(readln_eol_crlf)
{
    static const eol_case c = {EVLOOP_EOL_CRLF,
                               TEXT("a\r\nb\nc\r\rd\r\n\nx\r"),
                               {"a", "b", "c\r\rd", "", NULL},
                               TEXT("x\r")};
    check_eol_case(&c);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(readln_eol_crlf_strict)
{
    static const eol_case c = {
        EVLOOP_EOL_CRLF_STRICT, TEXT("a\nb\r\n\r\nc\rd\r"), {"a\nb", "", NULL}, TEXT("c\rd\r")};
    check_eol_case(&c);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(readln_eol_lf)
{
    static const eol_case c = {
        EVLOOP_EOL_LF, TEXT("a\r\nb\n\nc\r"), {"a\r", "b", "", NULL}, TEXT("c\r")};
    check_eol_case(&c);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(readln_eol_nul)
{
    static const eol_case c = {
        EVLOOP_EOL_NUL, TEXT("ab\0\0c\nd\0e"), {"ab", "", "c\nd", NULL}, TEXT("e")};
    check_eol_case(&c);
    CHECK_EQ_INT(live_blocks(), 0);
}

/* A line that arrives in pieces is returned only once complete. */
TEST(readln_line_completed_later_and_long_lines)
{
    evloop_buffer *buf = evloop_buffer_new();
    char *big = (char *)malloc(100001), *line;
    size_t n;
    REQUIRE(buf && big);
    REQUIRE(evloop_buffer_add(buf, "GET / HT", 8) == 0);
    CHECK(evloop_buffer_readln(buf, &n, EVLOOP_EOL_CRLF) == NULL);
    REQUIRE(evloop_buffer_add(buf, "TP/1.1\r", 7) == 0);
    CHECK(evloop_buffer_readln(buf, &n, EVLOOP_EOL_CRLF) == NULL);
    REQUIRE(evloop_buffer_add(buf, "\nHost", 5) == 0);
    line = evloop_buffer_readln(buf, &n, EVLOOP_EOL_CRLF);
    CHECK_STR_EQ(line, "GET / HTTP/1.1");
    evloop_mem_free(line);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 4);
    REQUIRE(evloop_buffer_drain(buf, 4) == 0);
    memset(big, 'q', 100000);
    big[100000] = '\n';
    REQUIRE(evloop_buffer_add(buf, big, 100001) == 0);
    line = evloop_buffer_readln(buf, &n, EVLOOP_EOL_LF);
    REQUIRE(line != NULL);
    CHECK_EQ_INT(n, 100000);
    CHECK_EQ_INT(strlen(line), 100000);
    evloop_mem_free(line);
    evloop_mem_free(NULL);
    evloop_buffer_free(buf);
    free(big);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(add_printf_formats_and_grows)
{
    evloop_buffer *buf = evloop_buffer_new();
    char *big = (char *)malloc(50001), out[64];
    unsigned char *p;
    int i;
    REQUIRE(buf && big);
    CHECK_EQ_INT(evloop_buffer_add_printf(buf, "%d-%s-%c", 42, "x", 'y'), 6);
    CHECK_EQ_INT(evloop_buffer_add_printf(buf, "%s", ""), 0);
    CHECK_EQ_INT(evloop_buffer_add_printf(buf, "%c", 0), 1); /* a NUL byte is data too */
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 7);
    CHECK_EQ_INT(evloop_buffer_remove(buf, out, sizeof out), 7);
    CHECK(memcmp(out, "42-x-y\0", 7) == 0);
    /* longer than any free space: the second formatting pass */
    memset(big, 'k', 50000);
    big[50000] = 0;
    REQUIRE(evloop_buffer_add(buf, "<", 1) == 0);
    CHECK_EQ_INT(evloop_buffer_add_printf(buf, "%s>", big), 50001);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 50002);
    p = evloop_buffer_pullup(buf, -1);
    REQUIRE(p != NULL);
    CHECK(p[0] == '<' && p[1] == 'k' && p[50000] == 'k' && p[50001] == '>');
    REQUIRE(evloop_buffer_drain(buf, SIZE_MAX) == 0);
    for (i = 0; i < 1000; i++) REQUIRE(evloop_buffer_add_printf(buf, "%04d,", i) == 5);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 5000);
    CHECK_EQ_INT(evloop_buffer_find(buf, "0999,", 5), 4995);
    CHECK_EQ_INT(evloop_buffer_find(buf, "0500,", 5), 2500);
    evloop_buffer_free(buf);
    free(big);
    CHECK_EQ_INT(live_blocks(), 0);
}

/* Overflow checks (the CVE-2014-6272 class): sizes near SIZE_MAX fail
   cleanly, leave the buffer as it was, and never read past the caller's data. */
TEST(buffer_sizes_are_checked_for_overflow)
{
    evloop_buffer *buf = evloop_buffer_new();
    char small[4] = {'a', 'b', 'c', 'd'}, out[16]; /* room for all 10 bytes held */
    REQUIRE(buf != NULL);
    REQUIRE(evloop_buffer_add(buf, "0123456789", 10) == 0);
    CHECK_ERR(evloop_buffer_add(buf, small, SIZE_MAX), EOVERFLOW);
    CHECK_ERR(evloop_buffer_add(buf, small, SIZE_MAX - 5), EOVERFLOW);
    CHECK_ERR(evloop_buffer_add(buf, small, SIZE_MAX - 10), ENOMEM); /* fits size_t, not memory */
    /* Fits size_t, but more than the test allocator grants. */
    CHECK_ERR(evloop_buffer_add(buf, small, TEST_ALLOC_MAX * 2), ENOMEM);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 10);
    CHECK_EQ_INT(evloop_buffer_copyout(buf, out, SIZE_MAX), 10);
    CHECK_EQ_INT(evloop_buffer_copyout(buf, out, (size_t)INT_MAX + 10), 10);
    CHECK_NULL_ERR(evloop_buffer_pullup(buf, LONG_MAX), EINVAL);
    CHECK_EQ_INT(evloop_buffer_find(buf, small, SIZE_MAX), -1);
    CHECK_EQ_INT(evloop_buffer_remove(buf, out, SIZE_MAX), 10);
    CHECK(memcmp(out, "0123456789", 8) == 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 0);
    CHECK_EQ_INT(evloop_buffer_add(buf, "x", 1), 0);
    CHECK_EQ_INT(evloop_buffer_drain(buf, SIZE_MAX), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 0);
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(buffer_enomem_leaves_buffer_unchanged)
{
    evloop_buffer *buf = evloop_buffer_new(), *frag;
    char big[8192], out[20];
    size_t n;
    REQUIRE(buf != NULL);
    memset(big, 'b', sizeof big);
    big[sizeof big - 1] = '\0';
    REQUIRE(evloop_buffer_add(buf, "line one\n", 9) == 0);
    set_alloc_fail(1);
    CHECK_NULL_ERR(evloop_buffer_new(), ENOMEM);
    CHECK_ERR(evloop_buffer_add(buf, big, sizeof big), ENOMEM);
    CHECK_ERR(evloop_buffer_add_printf(buf, "%s", big + 4000), ENOMEM); /* 4 KiB: a new chunk */
    CHECK_NULL_ERR(evloop_buffer_readln(buf, &n, EVLOOP_EOL_LF), ENOMEM);
    set_alloc_fail(0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 9);
    CHECK_EQ_INT(evloop_buffer_copyout(buf, out, sizeof out), 9);
    CHECK(memcmp(out, "line one\n", 9) == 0);
    evloop_buffer_free(buf);
    /* pullup that must gather into a new block: the first chunk is full */
    buf = evloop_buffer_new();
    REQUIRE(buf != NULL);
    REQUIRE(evloop_buffer_add(buf, big, sizeof big) == 0);
    frag = fragmented("0123456789abcdefghij", 20);
    REQUIRE(evloop_buffer_add_buffer(buf, frag) == 0);
    set_alloc_fail(1);
    CHECK_NULL_ERR(evloop_buffer_pullup(buf, -1), ENOMEM);
    set_alloc_fail(0);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), sizeof big + 20);
    REQUIRE(evloop_buffer_drain(buf, sizeof big) == 0);
    CHECK_EQ_INT(evloop_buffer_copyout(buf, out, sizeof out), 20);
    CHECK(memcmp(out, "0123456789abcdefghij", 20) == 0);
    CHECK(evloop_buffer_pullup(buf, -1) != NULL);
    evloop_buffer_free(frag);
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

/* Out of memory, a read takes only what fits where the buffer already has
   room, and nothing when it has none: every byte read is kept, the rest
   stays in the socket for the next read. */
TEST(buffer_read_without_memory_loses_nothing)
{
    evloop_buffer *buf = evloop_buffer_new();
    char data[10000], out[10003];
    int fds[2], got;
    size_t i;
    REQUIRE(buf != NULL);
    for (i = 0; i < sizeof data; i++) data[i] = (char)('a' + i % 26);
    unix_pair(fds);
    REQUIRE(evloop_make_socket_nonblocking(fds[0]) == 0);
    REQUIRE(write(fds[1], data, sizeof data) == (ssize_t)sizeof data);
    set_alloc_fail(1);
    CHECK_ERR(evloop_buffer_read(buf, fds[0], -1), ENOMEM); /* no room at all */
    set_alloc_fail(0);
    REQUIRE(evloop_buffer_add(buf, "abc", 3) == 0); /* a chunk with room to spare */
    set_alloc_fail(1);
    got = evloop_buffer_read(buf, fds[0], -1);
    set_alloc_fail(0);
    CHECK(got > 0 && got < (int)sizeof data);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 3 + got);
    while (evloop_buffer_get_length(buf) < 3 + sizeof data)
        if (evloop_buffer_read(buf, fds[0], -1) <= 0) break;
    CHECK_EQ_INT(evloop_buffer_remove(buf, out, sizeof out), sizeof out);
    CHECK(memcmp(out, "abc", 3) == 0);
    CHECK(memcmp(out + 3, data, sizeof data) == 0);
    evloop_buffer_free(buf);
    close(fds[0]);
    close(fds[1]);
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(buffer_read_and_write_on_pipes)
{
    evloop_buffer *buf = evloop_buffer_new();
    int p[2];
    char out[300];
    REQUIRE(buf != NULL);
    REQUIRE(pipe(p) == 0);
    REQUIRE(evloop_make_socket_nonblocking(p[0]) == 0);
    CHECK_ERR(evloop_buffer_read(buf, p[0], -1), EAGAIN);
    REQUIRE(write(p[1], "0123456789", 10) == 10);
    CHECK_EQ_INT(evloop_buffer_read(buf, p[0], 4), 4); /* howmuch caps the read */
    CHECK_EQ_INT(evloop_buffer_read(buf, p[0], -1), 6);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 10);
    /* write goes through write(2) on a pipe (not a socket) */
    CHECK_EQ_INT(evloop_buffer_write(buf, p[1]), 10);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 0);
    CHECK_EQ_INT(evloop_buffer_write(buf, p[1]), 0); /* nothing to write */
    CHECK_EQ_INT(read(p[0], out, sizeof out), 10);
    CHECK(memcmp(out, "0123456789", 10) == 0);
    close(p[1]);
    CHECK_EQ_INT(evloop_buffer_read(buf, p[0], -1), 0); /* end of file */
    close(p[0]);
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

/* 300 chunks, written with gathering writes until empty, arrive in order;
   a read takes more than one chunk's worth at once. */
TEST(buffer_read_write_many_chunks_over_socket)
{
    enum { N = 300, SZ = 1000 };
    evloop_buffer *out = evloop_buffer_new(), *in = evloop_buffer_new(), *one = evloop_buffer_new();
    unsigned char *data = (unsigned char *)malloc(N * SZ), *back = (unsigned char *)malloc(N * SZ);
    int fds[2], i, n;
    REQUIRE(out && in && one && data && back);
    unix_pair(fds);
    REQUIRE(evloop_make_socket_nonblocking(fds[0]) == 0);
    REQUIRE(evloop_make_socket_nonblocking(fds[1]) == 0);
    fill_pattern(data, N * SZ, 5, 0);
    for (i = 0; i < N; i++) {
        REQUIRE(evloop_buffer_add(one, data + i * SZ, SZ) == 0);
        REQUIRE(evloop_buffer_add_buffer(out, one) == 0);
    }
    while (evloop_buffer_get_length(out) || evloop_buffer_get_length(in) < N * SZ) {
        n = evloop_buffer_write(out, fds[0]);
        REQUIRE(n >= 0 || errno == EAGAIN);
        n = evloop_buffer_read(in, fds[1], -1);
        REQUIRE(n > 0 || (n < 0 && errno == EAGAIN));
    }
    CHECK_EQ_INT(evloop_buffer_remove(in, back, N * SZ), N * SZ);
    CHECK(memcmp(data, back, N * SZ) == 0);
    close(fds[0]);
    close(fds[1]);
    evloop_buffer_free(out);
    evloop_buffer_free(in);
    evloop_buffer_free(one);
    free(data);
    free(back);
    CHECK_EQ_INT(live_blocks(), 0);
}

/* Writing to a socket whose peer is gone fails with EPIPE; SIGPIPE is left at
   its default (fatal) disposition, so a signal would kill the test. */
TEST(buffer_write_to_closed_peer_raises_no_sigpipe)
{
    evloop_buffer *buf = evloop_buffer_new();
    int fds[2];
    REQUIRE(buf != NULL);
    signal(SIGPIPE, SIG_DFL);
    unix_pair(fds);
    close(fds[1]);
    REQUIRE(evloop_buffer_add(buf, "data", 4) == 0);
    CHECK_ERR(evloop_buffer_write(buf, fds[0]), EPIPE);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 4);
    close(fds[0]);
    evloop_buffer_free(buf);
    CHECK_EQ_INT(live_blocks(), 0);
}

/*== SOCKET UTILITIES ==*/

TEST(socket_utilities)
{
    int fds[2];
    CHECK_ERR(evloop_socketpair(AF_UNIX, SOCK_STREAM, 0, NULL), EINVAL);
    REQUIRE(evloop_socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    CHECK((fcntl(fds[0], F_GETFL) & O_NONBLOCK) == 0);
    CHECK_EQ_INT(evloop_make_socket_nonblocking(fds[0]), 0);
    CHECK((fcntl(fds[0], F_GETFL) & O_NONBLOCK) != 0);
    CHECK_EQ_INT(evloop_make_socket_nonblocking(fds[0]), 0); /* already: fine */
    CHECK((fcntl(fds[1], F_GETFD) & FD_CLOEXEC) == 0);
    CHECK_EQ_INT(evloop_make_socket_closeonexec(fds[1]), 0);
    CHECK((fcntl(fds[1], F_GETFD) & FD_CLOEXEC) != 0);
    CHECK_EQ_INT(write(fds[0], "x", 1), 1);
    close(fds[0]);
    close(fds[1]);
    CHECK_ERR(evloop_make_socket_nonblocking(fds[0]), EBADF);
    CHECK_ERR(evloop_make_socket_closeonexec(-1), EBADF);
}

/*== STREAMS ==*/

/* What a stream's callbacks saw; behaviour switches for the tests. */
typedef struct rec {
    evloop *loop;
    evloop_stream *s;
    evloop_buffer *got; /* readcb moves the input here */
    int reads, writes, nevents;
    short events[8];
    int errs[8];
    int64_t event_us[8];
    size_t max_input;  /* largest input length seen in readcb */
    size_t exit_at;    /* exit the loop once `got` holds this much (0: never) */
    int keep_input;    /* readcb leaves the input where it is */
    int free_in;       /* FREE_IN_* bits: free the stream in that callback */
    int exit_on_event; /* evloop_exit in the event callback */
    int exit_on_write; /* evloop_exit in the write callback */
    size_t write_len;  /* output length seen by the last writecb */
    char order[16];    /* 'r' per read callback (first 8), 'E' for EOF */
    int norder;
} rec;

#define FREE_IN_READ  1
#define FREE_IN_WRITE 2
#define FREE_IN_EVENT 4

static void rec_init(rec *r, evloop *loop)
{
    memset(r, 0, sizeof *r);
    r->loop = loop;
    r->got = evloop_buffer_new();
    REQUIRE(r->got != NULL);
}

static void rec_done(rec *r)
{
    evloop_buffer_free(r->got);
    r->got = NULL;
}

static void rec_order(rec *r, char c)
{
    if (r->norder < (int)sizeof r->order - 1) r->order[r->norder++] = c;
}

static void rec_read(evloop_stream *s, void *arg)
{
    rec *r = (rec *)arg;
    size_t len = evloop_buffer_get_length(evloop_stream_get_input(s));
    r->reads++;
    if (len > r->max_input) r->max_input = len;
    if (r->reads <= 8) rec_order(r, 'r');
    if (!r->keep_input) evloop_buffer_add_buffer(r->got, evloop_stream_get_input(s));
    if (r->free_in & FREE_IN_READ) {
        evloop_stream_free(s);
        r->s = NULL;
        evloop_exit(r->loop, NULL);
        return;
    }
    if (r->exit_at && evloop_buffer_get_length(r->got) >= r->exit_at) evloop_exit(r->loop, NULL);
}

static void rec_write(evloop_stream *s, void *arg)
{
    rec *r = (rec *)arg;
    r->writes++;
    r->write_len = evloop_buffer_get_length(evloop_stream_get_output(s));
    if (r->free_in & FREE_IN_WRITE) {
        evloop_stream_free(s);
        r->s = NULL;
        evloop_exit(r->loop, NULL);
        return;
    }
    if (r->exit_on_write) evloop_exit(r->loop, NULL);
}

static void rec_event(evloop_stream *s, short what, void *arg)
{
    rec *r = (rec *)arg;
    int err = errno;
    if (r->nevents < 8) {
        r->events[r->nevents] = what;
        r->errs[r->nevents] = err;
        r->event_us[r->nevents] = mono_us();
    }
    r->nevents++;
    if (what & EVLOOP_STREAM_EOF) rec_order(r, 'E');
    if (r->free_in & FREE_IN_EVENT) {
        evloop_stream_free(s);
        r->s = NULL;
        evloop_exit(r->loop, NULL);
        return;
    }
    if (r->exit_on_event) evloop_exit(r->loop, NULL);
}

static evloop_stream *rec_stream(rec *r, int fd, int options)
{
    evloop_stream *s = evloop_stream_new(r->loop, fd, options);
    REQUIRE(s != NULL);
    evloop_stream_setcb(s, rec_read, rec_write, rec_event, r);
    r->s = s;
    return s;
}

/* A stream is usually a socket, but a pipe works too: its reads and writes
   fall back from recv and send to read and write (the first attempt fails
   with ENOTSOCK, which must not reach the callbacks). Both directions, data
   intact, then EOF when the writer goes. */
TEST(stream_over_pipes_reads_and_writes)
{
    evloop *loop = new_loop();
    rec rd, wr;
    int p[2];
    char big[20000];
    REQUIRE(pipe(p) == 0);
    rec_init(&rd, loop);
    rec_init(&wr, loop);
    rec_stream(&rd, p[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    rec_stream(&wr, p[1], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(evloop_stream_enable(rd.s, EVLOOP_READ) == 0);
    memset(big, 'p', sizeof big);
    REQUIRE(evloop_stream_write(wr.s, "hello ", 6) == 0);
    REQUIRE(evloop_stream_write(wr.s, big, sizeof big) == 0);
    rd.exit_at = 6 + sizeof big;
    CHECK(!run_ms(loop, 3000));
    CHECK_EQ_INT(evloop_buffer_get_length(rd.got), 6 + (int)sizeof big);
    CHECK(memcmp(evloop_buffer_pullup(rd.got, 6), "hello ", 6) == 0);
    CHECK_EQ_INT(rd.nevents, 0);
    CHECK_EQ_INT(wr.nevents, 0);
    CHECK(wr.writes >= 1);
    evloop_stream_free(wr.s); /* closes the write end: EOF for the reader */
    rd.exit_on_event = 1;
    CHECK(!run_ms(loop, 3000));
    REQUIRE(rd.nevents == 1);
    CHECK_EQ_INT(rd.events[0], EVLOOP_STREAM_READING | EVLOOP_STREAM_EOF);
    evloop_stream_free(rd.s);
    rec_done(&rd);
    rec_done(&wr);
    free_loop_check(loop);
}

/* A stream on a pipe whose reader is gone reports WRITING|ERROR with EPIPE,
   as on a socket: SIGPIPE (fatal by default here) is never raised, and none
   is left pending. evloop_buffer_write on such a pipe fails the same way. */
TEST(stream_on_pipe_without_reader_reports_epipe_not_sigpipe)
{
    evloop *loop = new_loop();
    evloop_buffer *buf = evloop_buffer_new();
    rec r;
    int p[2];
    sigset_t pending;
    REQUIRE(buf != NULL);
    REQUIRE(pipe(p) == 0);
    close(p[0]); /* the reader is gone */
    rec_init(&r, loop);
    rec_stream(&r, p[1], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    REQUIRE(evloop_stream_write(r.s, "abc", 3) == 0);
    CHECK(!run_ms(loop, 2000));
    REQUIRE(r.nevents == 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_WRITING | EVLOOP_STREAM_ERROR);
    CHECK_EQ_INT(r.errs[0], EPIPE);
    REQUIRE(evloop_buffer_add(buf, "xyz", 3) == 0);
    CHECK_ERR(evloop_buffer_write(buf, p[1]), EPIPE);
    CHECK_EQ_INT(evloop_buffer_get_length(buf), 3);
    REQUIRE(sigpending(&pending) == 0);
    CHECK(!sigismember(&pending, SIGPIPE));
    evloop_stream_free(r.s);
    evloop_buffer_free(buf);
    rec_done(&r);
    free_loop_check(loop);
}

TEST(stream_new_arguments_and_defaults)
{
    evloop *loop = new_loop();
    evloop_stream *s;
    int fds[2];
    unix_pair(fds);
    CHECK_NULL_ERR(evloop_stream_new(NULL, fds[0], 0), EINVAL);
    CHECK_NULL_ERR(evloop_stream_new(loop, -2, 0), EINVAL);
    CHECK_NULL_ERR(evloop_stream_new(loop, fds[0], 0x100), EINVAL);
    s = evloop_stream_new(loop, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(s != NULL);
    CHECK((fcntl(fds[0], F_GETFL) & O_NONBLOCK) != 0); /* made non-blocking */
    CHECK_EQ_INT(evloop_stream_get_fd(s), fds[0]);
    CHECK_EQ_INT(evloop_stream_get_enabled(s), EVLOOP_WRITE); /* libevent's default */
    CHECK(evloop_stream_get_input(s) != NULL);
    CHECK(evloop_stream_get_output(s) != NULL);
    CHECK(evloop_stream_get_input(s) != evloop_stream_get_output(s));
    CHECK_ERR(evloop_stream_enable(s, EVLOOP_TIMEOUT), EINVAL);
    CHECK_ERR(evloop_stream_disable(s, 0x100), EINVAL);
    CHECK_ERR(evloop_stream_enable(NULL, EVLOOP_READ), EINVAL);
    CHECK_ERR(evloop_stream_write(NULL, "x", 1), EINVAL);
    CHECK_ERR(evloop_stream_write(s, NULL, 1), EINVAL);
    CHECK_ERR(evloop_stream_write_buffer(s, NULL), EINVAL);
    CHECK_ERR(evloop_stream_connect(s, NULL, 16), EINVAL);
    CHECK_EQ_INT(evloop_stream_read(NULL, NULL, 0), 0);
    CHECK_EQ_INT(evloop_stream_get_fd(NULL), -1);
    CHECK_EQ_INT(evloop_stream_get_enabled(NULL), 0);
    CHECK(evloop_stream_get_input(NULL) == NULL);
    /* a stream's own buffers are not the caller's to free */
    evloop_buffer_free(evloop_stream_get_input(s));
    evloop_stream_free(s);
    evloop_stream_free(NULL);
    CHECK(!fd_is_open(fds[0])); /* CLOSE_ON_FREE */
    close(fds[1]);
    CHECK_NULL_ERR(evloop_stream_new(loop, fds[1], 0), EBADF);
    s = evloop_stream_new(loop, -1, 0);
    CHECK(s != NULL);
    CHECK_EQ_INT(evloop_stream_get_fd(s), -1);
    evloop_stream_free(s);
    set_alloc_fail(1);
    unix_pair(fds);
    CHECK_NULL_ERR(evloop_stream_new(loop, fds[0], 0), ENOMEM);
    set_alloc_fail(0);
    CHECK(fd_is_open(fds[0]));
    close(fds[0]);
    close(fds[1]);
    free_loop_check(loop);
}

TEST(stream_read_callback_gets_data)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2];
    char out[16];
    rec_init(&r, loop);
    unix_pair(fds);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.keep_input = 1;
    r.exit_at = 0;
    CHECK_EQ_INT(evloop_stream_enable(r.s, EVLOOP_READ), 0);
    CHECK_EQ_INT(evloop_stream_get_enabled(r.s), EVLOOP_READ | EVLOOP_WRITE);
    REQUIRE(write(fds[1], "hello", 5) == 5);
    spin_rounds(loop, 3);
    CHECK_EQ_INT(r.reads, 1);
    CHECK_EQ_INT(evloop_stream_read(r.s, out, sizeof out), 5);
    CHECK(memcmp(out, "hello", 5) == 0);
    CHECK_EQ_INT(evloop_stream_read(r.s, out, sizeof out), 0);
    CHECK_EQ_INT(r.nevents, 0);
    evloop_stream_free(r.s);
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

TEST(stream_disable_read_stops_callbacks)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2];
    rec_init(&r, loop);
    unix_pair(fds);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(write(fds[1], "abc", 3) == 3);
    spin_rounds(loop, 3);
    CHECK_EQ_INT(r.reads, 0); /* reading starts disabled */
    CHECK_EQ_INT(evloop_stream_enable(r.s, EVLOOP_READ), 0);
    spin_rounds(loop, 3);
    CHECK_EQ_INT(r.reads, 1);
    CHECK_EQ_INT(evloop_stream_disable(r.s, EVLOOP_READ), 0);
    CHECK_EQ_INT(evloop_stream_get_enabled(r.s), EVLOOP_WRITE);
    REQUIRE(write(fds[1], "def", 3) == 3);
    spin_rounds(loop, 3);
    CHECK_EQ_INT(r.reads, 1);
    CHECK_EQ_INT(evloop_stream_enable(r.s, EVLOOP_READ), 0);
    spin_rounds(loop, 3);
    CHECK_EQ_INT(r.reads, 2);
    CHECK_EQ_INT(evloop_buffer_get_length(r.got), 6);
    CHECK_EQ_INT(evloop_buffer_find(r.got, "abcdef", 6), 0);
    CHECK_EQ_INT(evloop_run(loop, EVLOOP_NONBLOCK), 0);
    evloop_stream_free(r.s);
    CHECK_EQ_INT(evloop_run(loop, 0), 1); /* the freed stream left nothing pending */
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

/* Two streams in one loop: 1 MiB written on one end arrives intact at the
   other; the write callback runs once the output has drained. */
TEST(stream_write_delivers_everything_in_order)
{
    enum { TOTAL = 1 << 20 };
    evloop *loop = new_loop();
    rec a, b;
    int fds[2];
    unsigned char *data = (unsigned char *)malloc(TOTAL), *back = (unsigned char *)malloc(TOTAL);
    REQUIRE(data && back);
    fill_pattern(data, TOTAL, 9, 0);
    rec_init(&a, loop);
    rec_init(&b, loop);
    unix_pair(fds);
    rec_stream(&a, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    rec_stream(&b, fds[1], EVLOOP_STREAM_CLOSE_ON_FREE);
    b.exit_at = TOTAL;
    REQUIRE(evloop_stream_enable(b.s, EVLOOP_READ) == 0);
    CHECK_EQ_INT(evloop_stream_write(a.s, data, TOTAL / 2), 0);
    CHECK_EQ_INT(evloop_buffer_add(evloop_stream_get_output(a.s), data + TOTAL / 2, TOTAL / 2), 0);
    CHECK_EQ_INT(run_ms(loop, 5000), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(b.got), TOTAL);
    CHECK_EQ_INT(evloop_buffer_remove(b.got, back, TOTAL), TOTAL);
    CHECK(memcmp(data, back, TOTAL) == 0);
    CHECK_GE_INT(a.writes, 1);
    CHECK_EQ_INT(a.write_len, 0);
    CHECK_EQ_INT(evloop_buffer_get_length(evloop_stream_get_output(a.s)), 0);
    evloop_stream_free(a.s);
    evloop_stream_free(b.s);
    rec_done(&a);
    rec_done(&b);
    free(data);
    free(back);
    free_loop_check(loop);
}

/* Data queued from a read callback is written when the callback returns. */
static void echo_read(evloop_stream *s, void *arg)
{
    (void)arg;
    evloop_stream_write_buffer(s, evloop_stream_get_input(s));
}

TEST(stream_write_buffer_and_reply_from_read_callback)
{
    evloop *loop = new_loop();
    evloop_stream *echo;
    evloop_buffer *msg = evloop_buffer_new();
    rec c;
    int fds[2];
    char out[32];
    REQUIRE(msg != NULL);
    rec_init(&c, loop);
    unix_pair(fds);
    echo = evloop_stream_new(loop, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(echo != NULL);
    evloop_stream_setcb(echo, echo_read, NULL, NULL, NULL);
    REQUIRE(evloop_stream_enable(echo, EVLOOP_READ) == 0);
    rec_stream(&c, fds[1], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(evloop_stream_enable(c.s, EVLOOP_READ) == 0);
    c.exit_at = 12;
    REQUIRE(evloop_buffer_add_printf(msg, "ping %d %s", 42, "pong") == 12);
    CHECK_EQ_INT(evloop_stream_write_buffer(c.s, msg), 0);
    CHECK_EQ_INT(evloop_buffer_get_length(msg), 0);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(evloop_buffer_remove(c.got, out, sizeof out), 12);
    CHECK(memcmp(out, "ping 42 pong", 12) == 0);
    evloop_stream_free(echo);
    evloop_stream_free(c.s);
    evloop_buffer_free(msg);
    rec_done(&c);
    free_loop_check(loop);
}

/* A read callback of one stream writing to another (a broadcast, a proxy):
   the other stream's output goes out although none of its callbacks ran. */
static void relay_read(evloop_stream *s, void *arg)
{
    evloop_stream_write_buffer((evloop_stream *)arg, evloop_stream_get_input(s));
}

TEST(stream_write_from_another_streams_callback)
{
    evloop *loop = new_loop();
    evloop_stream *from, *to;
    rec r;
    int a[2], b[2];
    char out[16];
    unix_pair(a);
    unix_pair(b);
    rec_init(&r, loop);
    to = evloop_stream_new(loop, b[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    from = evloop_stream_new(loop, a[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(to && from);
    evloop_stream_setcb(from, relay_read, NULL, NULL, to);
    REQUIRE(evloop_stream_enable(from, EVLOOP_READ) == 0);
    rec_stream(&r, b[1], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_at = 5;
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    REQUIRE(write(a[1], "relay", 5) == 5);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(evloop_buffer_remove(r.got, out, sizeof out), 5);
    CHECK(memcmp(out, "relay", 5) == 0);
    evloop_stream_free(from);
    evloop_stream_free(to);
    evloop_stream_free(r.s);
    close(a[1]);
    rec_done(&r);
    free_loop_check(loop);
}

TEST(stream_read_low_watermark)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2];
    rec_init(&r, loop);
    unix_pair(fds);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    evloop_stream_setwatermark(r.s, EVLOOP_READ, 10, 0);
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    REQUIRE(write(fds[1], "12345", 5) == 5);
    spin_rounds(loop, 4);
    CHECK_EQ_INT(r.reads, 0);
    CHECK_EQ_INT(evloop_buffer_get_length(evloop_stream_get_input(r.s)), 5);
    REQUIRE(write(fds[1], "67890", 5) == 5);
    spin_rounds(loop, 4);
    CHECK_EQ_INT(r.reads, 1);
    CHECK_EQ_INT(r.max_input, 10);
    evloop_stream_free(r.s);
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

/* With a read high watermark the input never grows past it; draining the
   input (through the buffer API) resumes reading until all data is in. */
typedef struct hw_state {
    evloop_stream *s;
    size_t high, max_seen, taken, total;
    int rounds_full;
} hw_state;

static void hw_read(evloop_stream *s, void *arg)
{
    hw_state *h = (hw_state *)arg;
    size_t len = evloop_buffer_get_length(evloop_stream_get_input(s));
    if (len > h->max_seen) h->max_seen = len;
}

static void hw_drain(hw_state *h)
{
    evloop_buffer *in = evloop_stream_get_input(h->s);
    size_t len = evloop_buffer_get_length(in);
    if (len > h->max_seen) h->max_seen = len;
    if (len >= h->high) h->rounds_full++;
    h->taken += len;
    evloop_buffer_drain(in, len);
}

TEST(stream_read_high_watermark_bounds_input)
{
    evloop *loop = new_loop();
    hw_state h;
    int fds[2], sent = 0;
    char chunk[8192];
    int64_t start = mono_us();
    memset(&h, 0, sizeof h);
    memset(chunk, 'h', sizeof chunk);
    unix_pair(fds);
    REQUIRE(evloop_make_socket_nonblocking(fds[1]) == 0);
    h.s = evloop_stream_new(loop, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(h.s != NULL);
    h.high = 3000;
    h.total = 400000;
    evloop_stream_setcb(h.s, hw_read, NULL, NULL, &h);
    evloop_stream_setwatermark(h.s, EVLOOP_READ, 0, h.high);
    REQUIRE(evloop_stream_enable(h.s, EVLOOP_READ) == 0);
    while (h.taken < h.total && mono_us() - start < 8000000) {
        while (sent < (int)h.total) {
            ssize_t n = write(fds[1], chunk, sizeof chunk);
            if (n <= 0) break;
            sent += (int)n;
        }
        spin_rounds(loop, 3);
        CHECK_LE_INT(evloop_buffer_get_length(evloop_stream_get_input(h.s)), h.high);
        hw_drain(&h);
        if (harness_failed()) break;
    }
    CHECK_GE_INT(h.taken, h.total);
    CHECK_LE_INT(h.max_seen, h.high);
    CHECK_GE_INT(h.rounds_full, 1); /* it did fill up and pause */
    evloop_stream_free(h.s);
    close(fds[1]);
    free_loop_check(loop);
}

TEST(stream_write_low_watermark)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2];
    char big[200000];
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    evloop_stream_setwatermark(r.s, EVLOOP_WRITE, 50000, 0);
    memset(big, 'w', sizeof big);
    REQUIRE(evloop_stream_write(r.s, big, sizeof big) == 0);
    r.exit_on_write = 1;
    REQUIRE(evloop_make_socket_nonblocking(fds[1]) == 0);
    while (!r.writes) {
        spin_rounds(loop, 1);
        drain_fd(fds[1]);
    }
    CHECK_LE_INT(r.write_len, 50000);
    evloop_stream_free(r.s);
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

/* A peer that never reads: the writer is refused with ENOBUFS at the write
   high watermark instead of growing its output without bound. */
/* Two streams on one connection, random calls on both while the loop runs:
   writes of any size (refused ones must leave the output as it was), read
   and write watermarks set and cleared, reading enabled and disabled, input
   drained in random amounts from the read callback and from outside. Every
   byte must arrive once and in order, then exactly one EOF. */
static struct random_streams {
    evloop_stream *tx, *rx;
    size_t total, sent, got, tx_high;
    unsigned seed;
    int eofs, errors;
    unsigned char block[70000];
} rs;

static size_t rs_next(size_t n)
{
    return harness_rand(&rs.seed, (unsigned)n);
}

static void rs_take(size_t n)
{
    size_t i, r = evloop_stream_read(rs.rx, rs.block, n < sizeof rs.block ? n : sizeof rs.block);
    for (i = 0; i < r; i++)
        if (rs.block[i] != pattern_byte(0, rs.got + i)) break;
    CHECK_EQ_INT(i, r); /* the first wrong byte, if any */
    rs.got += r;
}

static void rs_push(void)
{
    evloop_buffer *out = evloop_stream_get_output(rs.tx);
    size_t n = rs_next(rs_next(2) ? 300 : sizeof rs.block), before = evloop_buffer_get_length(out);
    if (n > rs.total - rs.sent) n = rs.total - rs.sent;
    fill_pattern(rs.block, n, 0, rs.sent);
    if (evloop_stream_write(rs.tx, rs.block, n) == 0) {
        rs.sent += n;
    } else {
        CHECK_EQ_INT(errno, ENOBUFS);
        CHECK(rs.tx_high && before + n > rs.tx_high); /* refused only past the mark */
        CHECK_EQ_INT(evloop_buffer_get_length(out), before);
    }
}

static void rs_read(evloop_stream *s, void *arg)
{
    (void)s, (void)arg;
    rs_take(rs_next(40000));
}

static void rs_write(evloop_stream *s, void *arg)
{
    (void)s, (void)arg;
    if (rs_next(2)) rs_push();
}

static void rs_event(evloop_stream *s, short what, void *arg)
{
    (void)arg;
    if (s == rs.rx && what == (EVLOOP_STREAM_READING | EVLOOP_STREAM_EOF))
        rs.eofs++;
    else
        rs.errors++;
}

/* One random call, or none; then a round of the loop. */
static void rs_step(evloop *loop)
{
    size_t low = rs_next(5000), high = rs_next(2) ? 0 : rs_next(200000);
    switch (rs_next(8)) {
    case 0:
        rs_push();
        break;
    case 1:
        if (rs_next(3))
            evloop_stream_enable(rs.rx, EVLOOP_READ);
        else
            evloop_stream_disable(rs.rx, EVLOOP_READ);
        break;
    case 2:
        evloop_stream_setwatermark(rs.rx, EVLOOP_READ, rs_next(2) ? low : 0, high / 2);
        break;
    case 3:
        evloop_stream_setwatermark(rs.tx, EVLOOP_WRITE, low, high);
        rs.tx_high = high && high < low ? low : high; /* a high mark below the low one is raised */
        break;
    case 4:
        rs_take(rs_next(100000));
        break;
    default:
        break;
    }
    evloop_run(loop, EVLOOP_NONBLOCK);
}

TEST(streams_deliver_every_byte_under_random_calls)
{
    unsigned seed;
    int fds[2], round;
    for (seed = 1; seed <= 20 && !harness_failed(); seed++) {
        evloop *loop = new_loop();
        memset(&rs, 0, sizeof rs);
        rs.seed = seed;
        rs.total = rs_next(2000000);
        unix_pair(fds);
        rs.tx = evloop_stream_new(loop, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
        rs.rx = evloop_stream_new(loop, fds[1], EVLOOP_STREAM_CLOSE_ON_FREE);
        REQUIRE(rs.tx && rs.rx);
        evloop_stream_setcb(rs.tx, NULL, rs_write, rs_event, NULL);
        evloop_stream_setcb(rs.rx, rs_read, NULL, rs_event, NULL);
        evloop_stream_enable(rs.rx, EVLOOP_READ);
        for (round = 0; round < 2000 && rs.sent < rs.total; round++) rs_step(loop);
        /* then the rest with no limits, taking all there is */
        evloop_stream_setwatermark(rs.tx, EVLOOP_WRITE, 0, 0);
        rs.tx_high = 0;
        evloop_stream_setwatermark(rs.rx, EVLOOP_READ, 0, 0);
        evloop_stream_enable(rs.rx, EVLOOP_READ);
        while (rs.sent < rs.total) rs_push();
        for (round = 0; round < 10000 && rs.got < rs.total && !harness_failed(); round++) {
            rs_take(SIZE_MAX);
            evloop_run(loop, EVLOOP_NONBLOCK);
        }
        CHECK_EQ_INT(rs.got, rs.total);
        evloop_stream_free(rs.tx);
        for (round = 0; round < 100 && !rs.eofs; round++) evloop_run(loop, EVLOOP_NONBLOCK);
        CHECK_EQ_INT(rs.eofs, 1);
        CHECK_EQ_INT(rs.errors, 0);
        CHECK_EQ_INT(evloop_buffer_get_length(evloop_stream_get_input(rs.rx)), 0);
        evloop_stream_free(rs.rx);
        free_loop_check(loop);
    }
    CHECK_EQ_INT(live_blocks(), 0);
}

TEST(stream_write_high_watermark_refuses_with_enobufs)
{
    evloop *loop = new_loop();
    evloop_stream *s;
    evloop_buffer *extra = evloop_buffer_new();
    int fds[2], i, refused = 0;
    char block[4096];
    size_t high = 64 * 1024;
    REQUIRE(extra != NULL);
    memset(block, 'x', sizeof block);
    unix_pair(fds);
    s = evloop_stream_new(loop, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(s != NULL);
    evloop_stream_setwatermark(s, EVLOOP_WRITE, 0, high);
    for (i = 0; i < 2000 && !refused; i++) {
        errno = 0;
        if (evloop_stream_write(s, block, sizeof block) < 0) {
            CHECK_EQ_INT(errno, ENOBUFS);
            refused = 1;
        }
        spin_rounds(loop, 1);
        CHECK_LE_INT(evloop_buffer_get_length(evloop_stream_get_output(s)), high);
    }
    CHECK(refused);
    CHECK_ERR(evloop_stream_write(s, block, high + 1), ENOBUFS);
    CHECK_ERR(evloop_stream_write(s, block, SIZE_MAX), ENOBUFS);
    REQUIRE(evloop_buffer_add(extra, block, sizeof block) == 0);
    CHECK_ERR(evloop_stream_write_buffer(s, extra), ENOBUFS);
    CHECK_EQ_INT(evloop_buffer_get_length(extra), sizeof block); /* refused: left untouched */
    /* the peer catches up: room again */
    REQUIRE(evloop_make_socket_nonblocking(fds[1]) == 0);
    for (i = 0; i < 100 && evloop_buffer_get_length(evloop_stream_get_output(s)); i++) {
        drain_fd(fds[1]);
        spin_rounds(loop, 1);
    }
    CHECK_EQ_INT(evloop_stream_write(s, block, sizeof block), 0);
    evloop_stream_free(s);
    close(fds[1]);
    evloop_buffer_free(extra);
    free_loop_check(loop);
}

/* shutdown(SHUT_WR) on the peer: every byte arrives through the read
   callback, then exactly one READING|EOF. */
TEST(stream_half_close_delivers_data_then_one_eof)
{
    enum { TOTAL = 300000 };
    evloop *loop = new_loop();
    rec r;
    int fds[2];
    unsigned char *data = (unsigned char *)malloc(TOTAL), *back = (unsigned char *)malloc(TOTAL);
    pid_t pid;
    REQUIRE(data && back);
    fill_pattern(data, TOTAL, 11, 0);
    tcp_pair(fds);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) { /* the peer: write everything, half-close, wait for the reply */
        size_t off = 0;
        char c;
        close(fds[0]);
        while (off < TOTAL) {
            ssize_t n = write(fds[1], data + off, TOTAL - off);
            if (n <= 0) _exit(2);
            off += (size_t)n;
        }
        shutdown(fds[1], SHUT_WR);
        _exit(read(fds[1], &c, 1) == 1 && c == '!' ? 0 : 3);
    }
    close(fds[1]);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    CHECK_EQ_INT(run_ms(loop, 5000), 0);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_READING | EVLOOP_STREAM_EOF);
    CHECK_EQ_INT(evloop_buffer_get_length(r.got), TOTAL);
    CHECK_EQ_INT(evloop_buffer_remove(r.got, back, TOTAL), TOTAL);
    CHECK(memcmp(data, back, TOTAL) == 0);
    CHECK(r.norder >= 2 && r.order[r.norder - 1] == 'E'); /* EOF after the data */
    CHECK_EQ_INT(evloop_stream_get_enabled(r.s) & EVLOOP_READ, 0);
    /* no second EOF, even when reading is enabled again */
    r.exit_on_event = 0;
    CHECK_EQ_INT(evloop_stream_enable(r.s, EVLOOP_READ), 0);
    run_ms(loop, 100);
    CHECK_EQ_INT(r.nevents, 1);
    /* the write side still works after the peer's half-close */
    CHECK_EQ_INT(evloop_stream_write(r.s, "!", 1), 0);
    r.exit_on_write = 1;
    CHECK_EQ_INT(run_ms(loop, 2000), 0);
    {
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    evloop_stream_free(r.s);
    rec_done(&r);
    free(data);
    free(back);
    free_loop_check(loop);
}

/* A reset connection: READING|ERROR with errno ECONNRESET. */
TEST(stream_reset_reports_read_error)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2];
    struct linger lg;
    tcp_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    lg.l_onoff = 1;
    lg.l_linger = 0;
    REQUIRE(setsockopt(fds[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    close(fds[1]); /* with linger 0: RST */
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_READING | EVLOOP_STREAM_ERROR);
    CHECK_EQ_INT(r.errs[0], ECONNRESET);
    CHECK_EQ_INT(evloop_stream_get_enabled(r.s) & EVLOOP_READ, 0);
    evloop_stream_free(r.s);
    rec_done(&r);
    free_loop_check(loop);
}

/* Writing to a peer that is gone: WRITING|ERROR, and no SIGPIPE. */
TEST(stream_write_to_closed_peer_reports_error_without_sigpipe)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2];
    char block[65536];
    signal(SIGPIPE, SIG_DFL);
    memset(block, 'p', sizeof block);
    unix_pair(fds);
    close(fds[1]);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    REQUIRE(evloop_stream_write(r.s, block, sizeof block) == 0);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_WRITING | EVLOOP_STREAM_ERROR);
    CHECK(r.errs[0] == EPIPE || r.errs[0] == ECONNRESET);
    CHECK_EQ_INT(evloop_stream_get_enabled(r.s) & EVLOOP_WRITE, 0);
    evloop_stream_free(r.s); /* the last-chance write on free must not raise SIGPIPE either */
    rec_done(&r);
    free_loop_check(loop);
}

/* An idle peer: READING|TIMEOUT after the read timeout, reading disabled;
   the stream itself stays usable. */
TEST(stream_read_timeout_fires_on_idle_peer)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2];
    struct timeval tv = tv_ms(150);
    int64_t start;
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    CHECK_EQ_INT(evloop_stream_set_timeouts(r.s, &tv, NULL), 0);
    start = mono_us();
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_READING | EVLOOP_STREAM_TIMEOUT);
    CHECK_GE_INT(r.event_us[0] - start, 150000);
    CHECK_LT_INT(r.event_us[0] - start, 1500000);
    CHECK_EQ_INT(evloop_stream_get_enabled(r.s), EVLOOP_WRITE);
    /* enable again: data flows, the clock starts over */
    r.exit_on_event = 0;
    r.exit_at = 2;
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    REQUIRE(write(fds[1], "ok", 2) == 2);
    CHECK_EQ_INT(run_ms(loop, 2000), 0);
    CHECK_EQ_INT(r.reads, 1);
    CHECK_EQ_INT(r.nevents, 1);
    evloop_stream_free(r.s);
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

/* A peer that sends a byte every 50 ms keeps a 200 ms read timeout away;
   when it stops, the timeout comes 200 ms after the last byte. */
typedef struct trickle {
    int fd, left;
    int64_t last_us;
} trickle;

static void trickle_tick(evloop_socket_t fd, short what, void *arg)
{
    trickle *t = (trickle *)arg;
    (void)fd;
    (void)what;
    if (t->left <= 0) return;
    t->left--;
    if (write(t->fd, "t", 1) == 1) t->last_us = mono_us();
}

TEST(stream_read_timeout_restarts_on_progress)
{
    evloop *loop = new_loop();
    evloop_event *tick;
    rec r;
    trickle t;
    int fds[2];
    struct timeval tv = tv_ms(200), every = tv_ms(50);
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    t.fd = fds[1];
    t.left = 8;
    t.last_us = mono_us();
    tick = evloop_event_new(loop, -1, EVLOOP_PERSIST, trickle_tick, &t);
    REQUIRE(tick && evloop_event_add(tick, &every) == 0);
    REQUIRE(evloop_stream_set_timeouts(r.s, &tv, NULL) == 0);
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    CHECK_EQ_INT(run_ms(loop, 4000), 0);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_READING | EVLOOP_STREAM_TIMEOUT);
    CHECK_EQ_INT(t.left, 0);
    CHECK_EQ_INT(evloop_buffer_get_length(r.got), 8);
    CHECK_GE_INT(r.event_us[0] - t.last_us, 200000 - 5000); /* counted from the last byte read */
    evloop_event_free(tick);
    evloop_stream_free(r.s);
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

TEST(stream_write_timeout_when_peer_does_not_read)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2];
    struct timeval tv = tv_ms(150);
    char block[65536];
    int i;
    memset(block, 'z', sizeof block);
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    REQUIRE(evloop_stream_set_timeouts(r.s, NULL, &tv) == 0);
    for (i = 0; i < 64; i++) REQUIRE(evloop_stream_write(r.s, block, sizeof block) == 0);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_WRITING | EVLOOP_STREAM_TIMEOUT);
    CHECK_EQ_INT(evloop_stream_get_enabled(r.s) & EVLOOP_WRITE, 0);
    CHECK_GT_INT(evloop_buffer_get_length(evloop_stream_get_output(r.s)), 0);
    evloop_stream_free(r.s);
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

TEST(stream_set_timeouts_arguments)
{
    evloop *loop = new_loop();
    evloop_stream *s;
    int fds[2];
    struct timeval bad, zero = {0, 0}, ok = tv_ms(50);
    const struct timeval *common;
    unix_pair(fds);
    s = evloop_stream_new(loop, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(s != NULL);
    bad.tv_sec = 0;
    bad.tv_usec = 1000000;
    CHECK_ERR(evloop_stream_set_timeouts(NULL, &ok, &ok), EINVAL);
    CHECK_ERR(evloop_stream_set_timeouts(s, &bad, NULL), EINVAL);
    bad.tv_sec = -1;
    bad.tv_usec = 0;
    CHECK_ERR(evloop_stream_set_timeouts(s, NULL, &bad), EINVAL);
    CHECK_EQ_INT(evloop_stream_set_timeouts(s, &zero, &zero), 0); /* {0,0}: none */
    CHECK_EQ_INT(evloop_stream_set_timeouts(s, NULL, NULL), 0);
    common = evloop_init_common_timeout(loop, &ok);
    REQUIRE(common != NULL);
    CHECK_EQ_INT(evloop_stream_set_timeouts(s, common, common), 0);
    CHECK_EQ_INT(evloop_stream_enable(s, EVLOOP_READ), 0);
    evloop_stream_setcb(s, NULL, NULL, NULL, NULL);
    run_ms(loop, 300); /* the 50 ms common timeout fires: reading stops */
    CHECK_EQ_INT(evloop_stream_get_enabled(s) & EVLOOP_READ, 0);
    evloop_stream_free(s);
    close(fds[1]);
    free_loop_check(loop);
}

/* Output still queued when the stream is freed is written if the socket takes it. */
TEST(stream_free_flushes_queued_output)
{
    evloop *loop = new_loop();
    evloop_stream *s;
    int fds[2];
    char out[64];
    unix_pair(fds);
    s = evloop_stream_new(loop, fds[0], 0);
    REQUIRE(s != NULL);
    REQUIRE(evloop_stream_write(s, "last words", 10) == 0);
    evloop_stream_free(s);
    CHECK(fd_is_open(fds[0])); /* no CLOSE_ON_FREE: the caller's */
    CHECK_EQ_INT(recv(fds[1], out, sizeof out, MSG_DONTWAIT), 10);
    CHECK(memcmp(out, "last words", 10) == 0);
    close(fds[0]);
    close(fds[1]);
    free_loop_check(loop);
}

/*== CONNECT ==*/

typedef struct accepted {
    int fds[64];
    int n;
    int nonblock_cloexec; /* every accepted fd was */
    int family;
    evloop *loop;
    int exit_after;
    int free_after; /* free the listener in the callback after this many */
    evloop_listener *l;
} accepted;

static void on_accept(evloop_listener *l, evloop_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    accepted *a = (accepted *)arg;
    if (a->n == 0) a->nonblock_cloexec = 1;
    if (!(fcntl(fd, F_GETFL) & O_NONBLOCK) || !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
        a->nonblock_cloexec = 0;
    a->family = len > 0 ? sa->sa_family : -1;
    if (a->n < 64)
        a->fds[a->n++] = fd;
    else
        close(fd);
    if (a->free_after && a->n == a->free_after) {
        evloop_listener_free(l);
        a->l = NULL;
    }
    if (a->exit_after && a->n >= a->exit_after) evloop_exit(a->loop, NULL);
}

static void accepted_close(accepted *a)
{
    int i;
    for (i = 0; i < a->n; i++) close(a->fds[i]);
    a->n = 0;
}

TEST(stream_connect_reports_connected_then_carries_data)
{
    evloop *loop = new_loop();
    accepted acc;
    evloop_listener *l;
    struct sockaddr_in sin = loopback_addr(0);
    rec r;
    char out[16];
    memset(&acc, 0, sizeof acc);
    acc.loop = loop;
    l = evloop_listener_new_bind(loop, on_accept, &acc,
                                 EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_REUSEABLE, 16,
                                 (struct sockaddr *)&sin, sizeof sin);
    REQUIRE(l != NULL);
    sin = loopback_addr(port_of(evloop_listener_get_fd(l)));
    rec_init(&r, loop);
    rec_stream(&r, -1, EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    REQUIRE(evloop_stream_write(r.s, "queued", 6) == 0); /* before connecting: sent after */
    CHECK_EQ_INT(evloop_stream_connect(r.s, (struct sockaddr *)&sin, sizeof sin), 0);
    CHECK_GE_INT(evloop_stream_get_fd(r.s), 0);
    CHECK((fcntl(evloop_stream_get_fd(r.s), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK_ERR(evloop_stream_connect(r.s, (struct sockaddr *)&sin, sizeof sin), EINVAL);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_CONNECTED);
    r.exit_on_event = 0;
    acc.exit_after = 1;
    if (acc.n < 1) run_ms(loop, 3000);
    REQUIRE(acc.n == 1);
    CHECK(acc.nonblock_cloexec);
    CHECK_EQ_INT(acc.family, AF_INET);
    r.exit_on_write = 1;
    if (evloop_buffer_get_length(evloop_stream_get_output(r.s))) run_ms(loop, 3000);
    {
        int got = 0, tries;
        for (tries = 0; tries < 200 && got < 6; tries++) {
            ssize_t n = recv(acc.fds[0], out + got, sizeof out - (size_t)got, MSG_DONTWAIT);
            if (n > 0) got += (int)n;
            if (got < 6) sleep_ms(5);
        }
        CHECK_EQ_INT(got, 6);
        CHECK(memcmp(out, "queued", 6) == 0);
    }
    REQUIRE(send(acc.fds[0], "back", 4, 0) == 4);
    r.exit_at = 4;
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(evloop_buffer_find(r.got, "back", 4), 0);
    evloop_stream_free(r.s);
    evloop_listener_free(l);
    accepted_close(&acc);
    rec_done(&r);
    free_loop_check(loop);
}

TEST(stream_connect_to_closed_port_reports_econnrefused)
{
    evloop *loop = new_loop();
    struct sockaddr_in sin = loopback_addr(closed_port());
    rec r;
    int fd;
    rec_init(&r, loop);
    rec_stream(&r, -1, EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    CHECK_EQ_INT(evloop_stream_connect(r.s, (struct sockaddr *)&sin, sizeof sin), 0);
    fd = evloop_stream_get_fd(r.s);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK(r.events[0] & EVLOOP_STREAM_ERROR);
    CHECK_EQ_INT(r.events[0] & EVLOOP_STREAM_CONNECTED, 0);
    CHECK_EQ_INT(r.errs[0], ECONNREFUSED);
    /* nothing else fires afterwards */
    r.exit_on_event = 0;
    CHECK_EQ_INT(evloop_stream_enable(r.s, EVLOOP_READ | EVLOOP_WRITE), 0);
    CHECK_EQ_INT(evloop_stream_write(r.s, "x", 1), 0);
    CHECK_EQ_INT(run_ms(loop, 100), 1);
    CHECK_EQ_INT(r.nevents, 1);
    evloop_stream_free(r.s);
    CHECK(!fd_is_open(fd));
    rec_done(&r);
    free_loop_check(loop);
}

/* connect() failing at once (here: an address family the socket is not) is
   reported through the event callback too, from the loop. */
TEST(stream_connect_immediate_failure_is_reported_from_the_loop)
{
    evloop *loop = new_loop();
    struct sockaddr_in sin = loopback_addr(1);
    rec r;
    int fds[2];
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    CHECK_EQ_INT(evloop_stream_connect(r.s, (struct sockaddr *)&sin, sizeof sin), 0);
    CHECK_EQ_INT(r.nevents, 0); /* not from inside evloop_stream_connect */
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_ERROR);
    CHECK_NE_INT(r.errs[0], 0);
    evloop_stream_free(r.s);
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

/* The same on a stream whose write event was added with a timeout: the
   failure is reported once, and the deleted write event does not come back
   as a timer reporting WRITING|TIMEOUT over and over. */
TEST(stream_connect_immediate_failure_with_write_timeout_reported_once)
{
    evloop *loop = new_loop();
    struct sockaddr_in sin = loopback_addr(1);
    struct timeval wtv = tv_ms(30);
    rec r;
    int fds[2];
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(evloop_stream_set_timeouts(r.s, NULL, &wtv) == 0);
    REQUIRE(evloop_stream_write(r.s, "hello", 5) == 0); /* the write event waits, with a timeout */
    CHECK_EQ_INT(evloop_stream_connect(r.s, (struct sockaddr *)&sin, sizeof sin), 0);
    CHECK_EQ_INT(run_ms(loop, 300), 1);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_ERROR);
    evloop_stream_free(r.s);
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

/* A listener whose accept queue is full drops new SYNs, so a connect to it
   hangs: the write timeout bounds it with WRITING|TIMEOUT. */
TEST(stream_connect_timeout_reports_writing_timeout)
{
    evloop *loop = new_loop();
    int lfd = listen_tcp(0), fill[4], i;
    struct sockaddr_in sin = loopback_addr(port_of(lfd));
    struct timeval tv = tv_ms(200);
    int64_t start;
    rec r;
    for (i = 0; i < 4; i++) { /* the queue holds one; the rest keep it full */
        fill[i] = socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fill[i] >= 0 && evloop_make_socket_nonblocking(fill[i]) == 0);
        connect(fill[i], (struct sockaddr *)&sin, sizeof sin);
    }
    sleep_ms(20);
    rec_init(&r, loop);
    rec_stream(&r, -1, EVLOOP_STREAM_CLOSE_ON_FREE);
    r.exit_on_event = 1;
    REQUIRE(evloop_stream_set_timeouts(r.s, NULL, &tv) == 0);
    start = mono_us();
    CHECK_EQ_INT(evloop_stream_connect(r.s, (struct sockaddr *)&sin, sizeof sin), 0);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_WRITING | EVLOOP_STREAM_TIMEOUT);
    CHECK_EQ_INT(r.errs[0], ETIMEDOUT);
    CHECK_GE_INT(r.event_us[0] - start, 200000);
    CHECK_EQ_INT(evloop_run(loop, 0), 1); /* the stream waits for nothing any more */
    evloop_stream_free(r.s);
    for (i = 0; i < 4; i++) close(fill[i]);
    close(lfd);
    rec_done(&r);
    free_loop_check(loop);
}

/*== FREEING A STREAM FROM ITS OWN CALLBACKS ==*/

/* Each case frees the stream in one callback; ASan and the block count catch
   any later touch or leak, and CLOSE_ON_FREE must have closed the fd. */
TEST(stream_free_inside_read_callback)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2], fd;
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    fd = fds[0];
    r.free_in = FREE_IN_READ;
    REQUIRE(evloop_stream_write(r.s, "reply", 5) == 0); /* queued: flushed by the free */
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    REQUIRE(write(fds[1], "data", 4) == 4);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK(r.s == NULL);
    CHECK(!fd_is_open(fd));
    CHECK_EQ_INT(evloop_run(loop, 0), 1); /* nothing of the stream left pending */
    CHECK_EQ_INT(r.reads, 1);
    {
        char out[8];
        CHECK_EQ_INT(recv(fds[1], out, sizeof out, MSG_DONTWAIT), 5);
    }
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

TEST(stream_free_inside_write_callback)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2], fd;
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    fd = fds[0];
    r.free_in = FREE_IN_WRITE;
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    REQUIRE(evloop_stream_write(r.s, "bye", 3) == 0);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK(r.s == NULL);
    CHECK_EQ_INT(r.writes, 1);
    CHECK(!fd_is_open(fd));
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

/* The write callback also runs after a write made inside the read callback. */
static void reply_then_free_in_write(evloop_stream *s, void *arg)
{
    (void)arg;
    evloop_stream_write(s, "pong", 4);
}

TEST(stream_free_inside_write_callback_after_reply)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2];
    char out[8];
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    evloop_stream_setcb(r.s, reply_then_free_in_write, rec_write, rec_event, &r);
    r.free_in = FREE_IN_WRITE;
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    REQUIRE(write(fds[1], "ping", 4) == 4);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK(r.s == NULL);
    CHECK_EQ_INT(recv(fds[1], out, sizeof out, MSG_DONTWAIT), 4);
    CHECK(memcmp(out, "pong", 4) == 0);
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

TEST(stream_free_inside_event_callback_on_eof)
{
    evloop *loop = new_loop();
    rec r;
    int fds[2], fd;
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    fd = fds[0];
    r.free_in = FREE_IN_EVENT;
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    REQUIRE(write(fds[1], "tail", 4) == 4);
    close(fds[1]);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK(r.s == NULL);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_READING | EVLOOP_STREAM_EOF);
    CHECK_EQ_INT(evloop_buffer_get_length(r.got), 4);
    CHECK(!fd_is_open(fd));
    rec_done(&r);
    free_loop_check(loop);
}

TEST(stream_free_inside_event_callback_on_error_and_timeout)
{
    evloop *loop = new_loop();
    struct sockaddr_in sin = loopback_addr(closed_port());
    struct timeval tv = tv_ms(30);
    rec r;
    int fds[2];
    /* connect error */
    rec_init(&r, loop);
    rec_stream(&r, -1, EVLOOP_STREAM_CLOSE_ON_FREE);
    r.free_in = FREE_IN_EVENT;
    REQUIRE(evloop_stream_connect(r.s, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK(r.s == NULL);
    CHECK_EQ_INT(r.nevents, 1);
    rec_done(&r);
    /* read timeout */
    unix_pair(fds);
    rec_init(&r, loop);
    rec_stream(&r, fds[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    r.free_in = FREE_IN_EVENT;
    REQUIRE(evloop_stream_set_timeouts(r.s, &tv, &tv) == 0);
    REQUIRE(evloop_stream_enable(r.s, EVLOOP_READ) == 0);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK(r.s == NULL);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_READING | EVLOOP_STREAM_TIMEOUT);
    CHECK(!fd_is_open(fds[0]));
    close(fds[1]);
    rec_done(&r);
    free_loop_check(loop);
}

TEST(stream_free_inside_event_callback_on_connected)
{
    evloop *loop = new_loop();
    int lfd = listen_tcp(8);
    struct sockaddr_in sin = loopback_addr(port_of(lfd));
    rec r;
    rec_init(&r, loop);
    rec_stream(&r, -1, EVLOOP_STREAM_CLOSE_ON_FREE);
    r.free_in = FREE_IN_EVENT;
    REQUIRE(evloop_stream_write(r.s, "hello", 5) == 0);
    REQUIRE(evloop_stream_connect(r.s, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK(r.s == NULL);
    CHECK_EQ_INT(r.nevents, 1);
    CHECK_EQ_INT(r.events[0], EVLOOP_STREAM_CONNECTED);
    {
        int c = accept(lfd, NULL, NULL);
        char out[8];
        CHECK(c >= 0);
        CHECK_EQ_INT(recv(c, out, sizeof out, 0), 5); /* flushed on free */
        close(c);
    }
    close(lfd);
    rec_done(&r);
    free_loop_check(loop);
}

/* Freeing a stream whose callback is already queued for this round, from an
   earlier callback, cancels it. */
typedef struct pair_kill {
    evloop_stream *victim;
    int victim_calls;
} pair_kill;

static void killer_read(evloop_stream *s, void *arg)
{
    pair_kill *k = (pair_kill *)arg;
    evloop_buffer_drain(evloop_stream_get_input(s), SIZE_MAX);
    if (k->victim) evloop_stream_free(k->victim);
    k->victim = NULL;
}

static void victim_read(evloop_stream *s, void *arg)
{
    (void)s;
    ((pair_kill *)arg)->victim_calls++;
}

TEST(stream_free_of_another_stream_with_queued_callback)
{
    evloop *loop = new_loop();
    evloop_stream *a, *b;
    pair_kill k;
    int p1[2], p2[2];
    unix_pair(p1);
    unix_pair(p2);
    a = evloop_stream_new(loop, p1[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    b = evloop_stream_new(loop, p2[0], EVLOOP_STREAM_CLOSE_ON_FREE);
    REQUIRE(a && b);
    k.victim = b;
    k.victim_calls = 0;
    evloop_stream_setcb(a, killer_read, NULL, NULL, &k);
    evloop_stream_setcb(b, killer_read, NULL, NULL, &k);
    REQUIRE(evloop_stream_enable(a, EVLOOP_READ) == 0);
    REQUIRE(evloop_stream_enable(b, EVLOOP_READ) == 0);
    REQUIRE(write(p1[1], "x", 1) == 1);
    REQUIRE(write(p2[1], "y", 1) == 1);
    /* whichever runs first frees the other (or itself, if b goes first) */
    k.victim = b;
    evloop_stream_setcb(b, victim_read, NULL, NULL, &k);
    evloop_run(loop, EVLOOP_NONBLOCK);
    evloop_run(loop, EVLOOP_NONBLOCK);
    CHECK(k.victim == NULL || k.victim_calls > 0);
    if (k.victim) evloop_stream_free(k.victim);
    evloop_stream_free(a);
    close(p1[1]);
    close(p2[1]);
    free_loop_check(loop);
}

/*== LISTENER ==*/

TEST(listener_arguments)
{
    evloop *loop = new_loop();
    accepted acc;
    struct sockaddr_in sin = loopback_addr(0);
    evloop_listener *l;
    int fd;
    memset(&acc, 0, sizeof acc);
    CHECK_NULL_ERR(evloop_listener_new(NULL, on_accept, &acc, 0, 8, 3), EINVAL);
    CHECK_NULL_ERR(evloop_listener_new(loop, NULL, &acc, 0, 8, 3), EINVAL);
    CHECK_NULL_ERR(evloop_listener_new(loop, on_accept, &acc, 0, 8, -1), EINVAL);
    CHECK_NULL_ERR(evloop_listener_new(loop, on_accept, &acc, 0x10000, 8, 3), EINVAL);
    CHECK_NULL_ERR(evloop_listener_new_bind(loop, on_accept, &acc, 0, 8, NULL, 16), EINVAL);
    CHECK_NULL_ERR(
        evloop_listener_new_bind(loop, on_accept, &acc, 0, 8, (struct sockaddr *)&sin, 0), EINVAL);
    CHECK_ERR(evloop_listener_enable(NULL), EINVAL);
    CHECK_ERR(evloop_listener_disable(NULL), EINVAL);
    CHECK_EQ_INT(evloop_listener_get_fd(NULL), -1);
    evloop_listener_free(NULL);
    l = evloop_listener_new_bind(loop, on_accept, &acc, EVLOOP_LISTENER_CLOSE_ON_FREE, -1,
                                 (struct sockaddr *)&sin, sizeof sin);
    REQUIRE(l != NULL);
    fd = evloop_listener_get_fd(l);
    CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    /* the port is taken: EADDRINUSE, and no descriptor leaks */
    sin = loopback_addr(port_of(fd));
    CHECK_NULL_ERR(
        evloop_listener_new_bind(loop, on_accept, &acc, 0, 8, (struct sockaddr *)&sin, sizeof sin),
        EADDRINUSE);
    evloop_listener_free(l);
    CHECK(!fd_is_open(fd));
    /* ENOMEM: the caller's socket is left alone */
    fd = listen_tcp(4);
    set_alloc_fail(1);
    CHECK_NULL_ERR(evloop_listener_new(loop, on_accept, &acc, EVLOOP_LISTENER_CLOSE_ON_FREE, 0, fd),
                   ENOMEM);
    set_alloc_fail(0);
    CHECK(fd_is_open(fd));
    close(fd);
    free_loop_check(loop);
}

TEST(listener_accepts_every_pending_connection)
{
    evloop *loop = new_loop();
    accepted acc;
    struct sockaddr_in sin = loopback_addr(0);
    evloop_listener *l;
    int clients[10], i, fd;
    memset(&acc, 0, sizeof acc);
    acc.loop = loop;
    acc.exit_after = 10;
    l = evloop_listener_new_bind(loop, on_accept, &acc, EVLOOP_LISTENER_REUSEABLE, 32,
                                 (struct sockaddr *)&sin, sizeof sin);
    REQUIRE(l != NULL);
    fd = evloop_listener_get_fd(l);
    for (i = 0; i < 10; i++) clients[i] = connect_tcp(port_of(fd));
    sleep_ms(20);
    CHECK_EQ_INT(evloop_run(loop, EVLOOP_ONCE), 0); /* one wakeup takes them all */
    CHECK_EQ_INT(acc.n, 10);
    CHECK(acc.nonblock_cloexec);
    CHECK_EQ_INT(acc.family, AF_INET);
    evloop_listener_free(l);
    CHECK(fd_is_open(fd)); /* no CLOSE_ON_FREE */
    close(fd);
    for (i = 0; i < 10; i++) close(clients[i]);
    accepted_close(&acc);
    free_loop_check(loop);
}

TEST(listener_wraps_existing_socket)
{
    evloop *loop = new_loop();
    accepted acc;
    evloop_listener *l;
    struct sockaddr_in sin = loopback_addr(0);
    int fd = socket(AF_INET, SOCK_STREAM, 0), c, port;
    memset(&acc, 0, sizeof acc);
    acc.loop = loop;
    acc.exit_after = 1;
    REQUIRE(fd >= 0);
    REQUIRE(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    l = evloop_listener_new(loop, on_accept, &acc, EVLOOP_LISTENER_CLOSE_ON_FREE, 16, fd);
    REQUIRE(l != NULL); /* backlog > 0: listen() was called for us */
    port = port_of(fd);
    c = connect_tcp(port);
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(acc.n, 1);
    evloop_listener_free(l);
    CHECK(!fd_is_open(fd));
    close(c);
    accepted_close(&acc);
    /* backlog 0: already listening */
    fd = listen_tcp(8);
    l = evloop_listener_new(loop, on_accept, &acc, EVLOOP_LISTENER_CLOSE_ON_FREE, 0, fd);
    REQUIRE(l != NULL);
    c = connect_tcp(port_of(fd));
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(acc.n, 1);
    evloop_listener_free(l);
    close(c);
    accepted_close(&acc);
    free_loop_check(loop);
}

TEST(listener_disable_enable)
{
    evloop *loop = new_loop();
    accepted acc;
    struct sockaddr_in sin = loopback_addr(0);
    evloop_listener *l;
    int c1, c2;
    memset(&acc, 0, sizeof acc);
    acc.loop = loop;
    l = evloop_listener_new_bind(loop, on_accept, &acc,
                                 EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_DISABLED, 8,
                                 (struct sockaddr *)&sin, sizeof sin);
    REQUIRE(l != NULL);
    c1 = connect_tcp(port_of(evloop_listener_get_fd(l)));
    sleep_ms(20);
    CHECK_EQ_INT(evloop_run(loop, 0), 1); /* created disabled: nothing pending */
    CHECK_EQ_INT(acc.n, 0);
    CHECK_EQ_INT(evloop_listener_enable(l), 0);
    CHECK_EQ_INT(evloop_listener_enable(l), 0); /* twice: fine */
    acc.exit_after = 1;
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(acc.n, 1);
    CHECK_EQ_INT(evloop_listener_disable(l), 0);
    c2 = connect_tcp(port_of(evloop_listener_get_fd(l)));
    sleep_ms(20);
    CHECK_EQ_INT(evloop_run(loop, 0), 1); /* nothing pending while disabled */
    CHECK_EQ_INT(acc.n, 1);
    CHECK_EQ_INT(evloop_listener_enable(l), 0);
    acc.exit_after = 2;
    CHECK_EQ_INT(run_ms(loop, 3000), 0);
    CHECK_EQ_INT(acc.n, 2);
    evloop_listener_free(l);
    close(c1);
    close(c2);
    accepted_close(&acc);
    free_loop_check(loop);
}

TEST(listener_reuseable_port_allows_two_listeners)
{
    evloop *loop = new_loop();
    accepted acc;
    struct sockaddr_in sin = loopback_addr(0);
    evloop_listener *a, *b;
    memset(&acc, 0, sizeof acc);
    a = evloop_listener_new_bind(loop, on_accept, &acc,
                                 EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_REUSEABLE_PORT, 8,
                                 (struct sockaddr *)&sin, sizeof sin);
    REQUIRE(a != NULL);
    sin = loopback_addr(port_of(evloop_listener_get_fd(a)));
    b = evloop_listener_new_bind(loop, on_accept, &acc,
                                 EVLOOP_LISTENER_CLOSE_ON_FREE | EVLOOP_LISTENER_REUSEABLE_PORT, 8,
                                 (struct sockaddr *)&sin, sizeof sin);
    CHECK(b != NULL);
    evloop_listener_free(a);
    evloop_listener_free(b);
    free_loop_check(loop);
}

TEST(listener_free_inside_callback_stops_accepting)
{
    evloop *loop = new_loop();
    accepted acc;
    struct sockaddr_in sin = loopback_addr(0);
    int clients[5], i, fd;
    memset(&acc, 0, sizeof acc);
    acc.loop = loop;
    acc.free_after = 2;
    acc.l = evloop_listener_new_bind(loop, on_accept, &acc, EVLOOP_LISTENER_CLOSE_ON_FREE, 8,
                                     (struct sockaddr *)&sin, sizeof sin);
    REQUIRE(acc.l != NULL);
    fd = evloop_listener_get_fd(acc.l);
    for (i = 0; i < 5; i++) clients[i] = connect_tcp(port_of(fd));
    sleep_ms(20);
    CHECK_EQ_INT(evloop_run(loop, 0), 1); /* the listener is gone: nothing left */
    CHECK_EQ_INT(acc.n, 2);
    CHECK(acc.l == NULL);
    CHECK(!fd_is_open(fd));
    for (i = 0; i < 5; i++) close(clients[i]);
    accepted_close(&acc);
    free_loop_check(loop);
}

/* At the descriptor limit: accept fails with EMFILE. The listener must rest
   (not spin on the still-readable socket), keep its socket, and accept again
   once descriptors are free. Runs in a child with a low RLIMIT_NOFILE; the
   parent connects. */
typedef struct fdlimit {
    evloop *loop;
    int held[64];
    int nheld, accepted;
    int released;
} fdlimit;

static void fdlimit_accept(evloop_listener *l, evloop_socket_t fd, struct sockaddr *sa, int len,
                           void *arg)
{
    fdlimit *f = (fdlimit *)arg;
    (void)l;
    (void)sa;
    (void)len;
    f->accepted++;
    if (!f->released && f->nheld < 64)
        f->held[f->nheld++] = fd; /* keep it: use up the descriptors */
    else
        close(fd);
}

static void fdlimit_release(evloop_socket_t fd, short what, void *arg)
{
    fdlimit *f = (fdlimit *)arg;
    (void)fd;
    (void)what;
    while (f->nheld) close(f->held[--f->nheld]);
    f->released = 1;
}

static int fdlimit_child(int port_pipe)
{
    evloop *loop = evloop_new();
    fdlimit f;
    struct sockaddr_in sin = loopback_addr(0);
    evloop_listener *l;
    evloop_event *release;
    struct timeval at = tv_ms(600);
    struct rlimit rl;
    struct rusage ru0, ru1;
    int64_t start;
    long rounds_at_limit = 0, cpu_us;
    int port, lfd;
    if (!loop) return 10;
    memset(&f, 0, sizeof f);
    l = evloop_listener_new_bind(loop, fdlimit_accept, &f, EVLOOP_LISTENER_CLOSE_ON_FREE, 64,
                                 (struct sockaddr *)&sin, sizeof sin);
    if (!l) return 11;
    lfd = evloop_listener_get_fd(l);
    port = port_of(lfd);
    /* room for exactly 3 more descriptors */
    rl.rlim_cur = (rlim_t)(lfd + 4);
    rl.rlim_max = (rlim_t)1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 12;
    rl.rlim_cur = (rlim_t)(lfd + 4);
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return 13;
    release = evloop_event_new(loop, -1, 0, fdlimit_release, &f);
    if (!release) return 14;
    if (write(port_pipe, &port, sizeof port) != (ssize_t)sizeof port) return 15;
    /* 10 clients connect: 3 accepted, then EMFILE until the release at 600 ms */
    evloop_event_add(release, &at);
    getrusage(RUSAGE_SELF, &ru0);
    start = mono_us();
    while (mono_us() - start < 3000000 && f.accepted < 10) {
        evloop_run(loop, EVLOOP_ONCE);
        if (f.nheld == 3 && !f.released) rounds_at_limit++;
    }
    getrusage(RUSAGE_SELF, &ru1);
    cpu_us = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1000000L +
             (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
             (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1000000L +
             (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
    fprintf(stderr, "fdlimit: accepted %d, rounds at limit %ld, cpu %ld us\n", f.accepted,
            rounds_at_limit, cpu_us);
    if (f.accepted != 10) return 20;        /* resumed after the release */
    if (!f.released) return 21;             /* ... and only after it */
    if (rounds_at_limit > 40) return 22;    /* resting, not spinning (~6 expected) */
    if (cpu_us > 400000) return 23;         /* and not burning the CPU */
    if (fcntl(lfd, F_GETFD) < 0) return 24; /* the listening socket survived */
    while (f.nheld) close(f.held[--f.nheld]);
    evloop_event_free(release);
    evloop_listener_free(l);
    evloop_free(loop);
    return 0;
}

TEST(listener_at_fd_limit_rests_and_resumes)
{
    int p[2], port = 0, clients[10], i, status = 0;
    pid_t pid;
    REQUIRE(pipe(p) == 0);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        _exit(fdlimit_child(p[1]));
    }
    close(p[1]);
    REQUIRE(read(p[0], &port, sizeof port) == (ssize_t)sizeof port);
    close(p[0]);
    for (i = 0; i < 10; i++) clients[i] = connect_tcp(port); /* the backlog holds them */
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_EQ_INT(WEXITSTATUS(status), 0);
    for (i = 0; i < 10; i++) close(clients[i]);
}

/*== INTEGRATION: 1,000 CLIENTS THROUGH A STREAM ECHO SERVER ==*/

/* The server (a forked child) echoes with streams; a client closes after it
   got its 64 KiB back, and the server frees a stream at EOF once its output
   has drained. The clients are streams too, connected with
   evloop_stream_connect, each checking every byte it gets back. Server and
   clients are in separate processes so each stays under select's
   FD_SETSIZE. */
#define ECHO_CLIENTS 1000
#define ECHO_BYTES   (64 * 1024)

static void echo_srv_read(evloop_stream *s, void *arg)
{
    (void)arg;
    evloop_buffer_add_buffer(evloop_stream_get_output(s), evloop_stream_get_input(s));
}

static void echo_srv_write(evloop_stream *s, void *arg)
{
    (void)arg;
    if (!(evloop_stream_get_enabled(s) & EVLOOP_READ))
        evloop_stream_free(s); /* EOF seen, drained */
}

static void echo_srv_event(evloop_stream *s, short what, void *arg)
{
    (void)arg;
    if ((what & EVLOOP_STREAM_EOF) && evloop_buffer_get_length(evloop_stream_get_output(s))) return;
    evloop_stream_free(s);
}

static void echo_srv_accept(evloop_listener *l, evloop_socket_t fd, struct sockaddr *sa, int len,
                            void *arg)
{
    evloop_stream *s = evloop_stream_new((evloop *)arg, fd, EVLOOP_STREAM_CLOSE_ON_FREE);
    (void)l;
    (void)sa;
    (void)len;
    if (!s) {
        close(fd);
        return;
    }
    evloop_stream_setcb(s, echo_srv_read, echo_srv_write, echo_srv_event, NULL);
    evloop_stream_enable(s, EVLOOP_READ);
}

static void echo_server_child(int lfd, int ready_fd)
{
    evloop *loop = evloop_new();
    evloop_listener *l;
    char c = 'r';
    if (!loop) _exit(2);
    l = evloop_listener_new(loop, echo_srv_accept, loop, EVLOOP_LISTENER_CLOSE_ON_FREE, 0, lfd);
    if (!l) _exit(3);
    if (write(ready_fd, &c, 1) != 1) _exit(4);
    close(ready_fd);
    evloop_dispatch(loop); /* until killed */
    _exit(0);
}

typedef struct echo_client {
    evloop_stream *s;
    unsigned id;
    size_t got;
    int done, bad;
    struct echo_all *all;
} echo_client;

typedef struct echo_all {
    evloop *loop;
    int finished, connected, errors, mismatches;
} echo_all;

static void echo_cli_read(evloop_stream *s, void *arg)
{
    echo_client *c = (echo_client *)arg;
    evloop_buffer *in = evloop_stream_get_input(s);
    unsigned char tmp[8192];
    int n, i;
    while ((n = evloop_buffer_remove(in, tmp, sizeof tmp)) > 0) {
        for (i = 0; i < n; i++)
            if (tmp[i] != pattern_byte(c->id, c->got + (size_t)i)) c->bad = 1;
        c->got += (size_t)n;
    }
    if (c->got >= ECHO_BYTES && !c->done) {
        c->done = 1;
        if (c->bad || c->got != ECHO_BYTES) c->all->mismatches++;
        evloop_stream_free(s);
        c->s = NULL;
        if (++c->all->finished == ECHO_CLIENTS) evloop_exit(c->all->loop, NULL);
    }
}

static void echo_cli_event(evloop_stream *s, short what, void *arg)
{
    echo_client *c = (echo_client *)arg;
    if (what == EVLOOP_STREAM_CONNECTED) {
        c->all->connected++;
        return;
    }
    fprintf(stderr, "client %u: event 0x%x (%s) after %zu bytes\n", c->id, (unsigned)what,
            strerror(errno), c->got);
    c->all->errors++;
    evloop_stream_free(s);
    c->s = NULL;
    c->done = 1;
    if (++c->all->finished == ECHO_CLIENTS) evloop_exit(c->all->loop, NULL);
}

TEST(echo_1000_clients_64k_each_every_byte_verified)
{
    evloop *loop;
    echo_all all;
    echo_client *cl = (echo_client *)calloc(ECHO_CLIENTS, sizeof *cl);
    unsigned char *msg = (unsigned char *)malloc(ECHO_BYTES);
    int lfd, rp[2], status = 0, i;
    struct sockaddr_in sin;
    char c;
    pid_t pid;
    int64_t start;
    REQUIRE(cl && msg);
    lfd = listen_tcp(ECHO_CLIENTS + 24);
    sin = loopback_addr(port_of(lfd));
    REQUIRE(pipe(rp) == 0);
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(rp[0]);
        echo_server_child(lfd, rp[1]);
    }
    close(rp[1]);
    close(lfd);
    REQUIRE(read(rp[0], &c, 1) == 1);
    close(rp[0]);
    loop = new_loop();
    memset(&all, 0, sizeof all);
    all.loop = loop;
    start = mono_us();
    for (i = 0; i < ECHO_CLIENTS; i++) {
        echo_client *e = &cl[i];
        e->id = (unsigned)i + 1;
        e->all = &all;
        e->s = evloop_stream_new(loop, -1, EVLOOP_STREAM_CLOSE_ON_FREE);
        REQUIRE(e->s != NULL);
        evloop_stream_setcb(e->s, echo_cli_read, NULL, echo_cli_event, e);
        fill_pattern(msg, ECHO_BYTES, e->id, 0);
        REQUIRE(evloop_stream_write(e->s, msg, ECHO_BYTES) == 0);
        REQUIRE(evloop_stream_enable(e->s, EVLOOP_READ) == 0);
        REQUIRE(evloop_stream_connect(e->s, (struct sockaddr *)&sin, sizeof sin) == 0);
    }
    CHECK_EQ_INT(run_ms(loop, 25000), 0);
    fprintf(stderr, "echo: %d clients in %.2f s\n", all.finished, (mono_us() - start) / 1e6);
    CHECK_EQ_INT(all.finished, ECHO_CLIENTS);
    CHECK_EQ_INT(all.connected, ECHO_CLIENTS);
    CHECK_EQ_INT(all.errors, 0);
    CHECK_EQ_INT(all.mismatches, 0);
    for (i = 0; i < ECHO_CLIENTS; i++) {
        if (cl[i].s) evloop_stream_free(cl[i].s);
        CHECK(cl[i].done);
        if (harness_failed()) break;
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    free(cl);
    free(msg);
    free_loop_check(loop);
}

/*== MAIN ==*/

static const harness_test tests[] = {
    HARNESS_TEST(buffer_new_free_and_length),
    HARNESS_TEST(buffer_bad_arguments),
    HARNESS_TEST(buffer_add_remove_keeps_order),
    HARNESS_TEST(buffer_small_adds_and_drains_do_not_allocate),
    HARNESS_TEST(buffer_copyout_leaves_data),
    HARNESS_TEST(buffer_drain_partial_and_more_than_held),
    HARNESS_TEST(buffer_add_buffer_moves_without_copying),
    HARNESS_TEST(buffer_pullup_across_chunks),
    HARNESS_TEST(buffer_pullup_larger_than_first_chunk),
    HARNESS_TEST(buffer_find_matches_naive_search),
    HARNESS_TEST(buffer_find_edges),
    HARNESS_TEST(buffer_matches_byte_model_under_random_calls),
    HARNESS_TEST(readln_eol_any),
    HARNESS_TEST(readln_eol_crlf),
    HARNESS_TEST(readln_eol_crlf_strict),
    HARNESS_TEST(readln_eol_lf),
    HARNESS_TEST(readln_eol_nul),
    HARNESS_TEST(readln_line_completed_later_and_long_lines),
    HARNESS_TEST(add_printf_formats_and_grows),
    HARNESS_TEST(buffer_sizes_are_checked_for_overflow),
    HARNESS_TEST(buffer_enomem_leaves_buffer_unchanged),
    HARNESS_TEST(buffer_read_without_memory_loses_nothing),
    HARNESS_TEST(buffer_read_and_write_on_pipes),
    HARNESS_TEST(stream_over_pipes_reads_and_writes),
    HARNESS_TEST(stream_on_pipe_without_reader_reports_epipe_not_sigpipe),
    HARNESS_TEST(buffer_read_write_many_chunks_over_socket),
    HARNESS_TEST(buffer_write_to_closed_peer_raises_no_sigpipe),
    HARNESS_TEST(socket_utilities),
    HARNESS_TEST(stream_new_arguments_and_defaults),
    HARNESS_TEST(stream_read_callback_gets_data),
    HARNESS_TEST(stream_disable_read_stops_callbacks),
    HARNESS_TEST(stream_write_delivers_everything_in_order),
    HARNESS_TEST(stream_write_buffer_and_reply_from_read_callback),
    HARNESS_TEST(stream_write_from_another_streams_callback),
    HARNESS_TEST(stream_read_low_watermark),
    HARNESS_TEST(stream_read_high_watermark_bounds_input),
    HARNESS_TEST(stream_write_low_watermark),
    HARNESS_TEST(stream_write_high_watermark_refuses_with_enobufs),
    HARNESS_TEST(streams_deliver_every_byte_under_random_calls),
    HARNESS_TEST(stream_half_close_delivers_data_then_one_eof),
    HARNESS_TEST(stream_reset_reports_read_error),
    HARNESS_TEST(stream_write_to_closed_peer_reports_error_without_sigpipe),
    HARNESS_TEST(stream_read_timeout_fires_on_idle_peer),
    HARNESS_TEST(stream_read_timeout_restarts_on_progress),
    HARNESS_TEST(stream_write_timeout_when_peer_does_not_read),
    HARNESS_TEST(stream_set_timeouts_arguments),
    HARNESS_TEST(stream_free_flushes_queued_output),
    HARNESS_TEST(stream_connect_reports_connected_then_carries_data),
    HARNESS_TEST(stream_connect_to_closed_port_reports_econnrefused),
    HARNESS_TEST(stream_connect_immediate_failure_is_reported_from_the_loop),
    HARNESS_TEST(stream_connect_immediate_failure_with_write_timeout_reported_once),
    HARNESS_TEST(stream_connect_timeout_reports_writing_timeout),
    HARNESS_TEST(stream_free_inside_read_callback),
    HARNESS_TEST(stream_free_inside_write_callback),
    HARNESS_TEST(stream_free_inside_write_callback_after_reply),
    HARNESS_TEST(stream_free_inside_event_callback_on_eof),
    HARNESS_TEST(stream_free_inside_event_callback_on_error_and_timeout),
    HARNESS_TEST(stream_free_inside_event_callback_on_connected),
    HARNESS_TEST(stream_free_of_another_stream_with_queued_callback),
    HARNESS_TEST(listener_arguments),
    HARNESS_TEST(listener_accepts_every_pending_connection),
    HARNESS_TEST(listener_wraps_existing_socket),
    HARNESS_TEST(listener_disable_enable),
    HARNESS_TEST(listener_reuseable_port_allows_two_listeners),
    HARNESS_TEST(listener_free_inside_callback_stops_accepting),
    HARNESS_TEST(listener_at_fd_limit_rests_and_resumes),
    HARNESS_TEST(echo_1000_clients_64k_each_every_byte_verified),
};

int main(int argc, char **argv)
{
    char suite[48];
    evloop *loop = evloop_new();
    if (!loop) {
        perror("evloop_new");
        return 1;
    }
    snprintf(suite, sizeof suite, "streams-%s", evloop_backend(loop));
    evloop_free(loop);
    return harness_main(argc, argv, tests, sizeof tests / sizeof tests[0], suite);
}
