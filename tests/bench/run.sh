#!/usr/bin/env bash
# `make bench`: evloop side by side with libevent, libev, libuv and a raw
# epoll floor. Installs the peers when missing (Debian packages), builds each
# benchmark once per library (-O2; evloop on its epoll backend), runs the
# libraries interleaved for several rounds, adds callgrind instruction counts
# and code sizes, and writes the tables to stdout and to
# tests/bench/RESULTS.md. See tests/bench/README.md.
#
#   BENCH_QUICK=1   smoke run: small sizes, 3 iterations, one round; its
#                   tables go to build/bench/RESULTS.md (the committed
#                   RESULTS.md keeps the last full run)
#   BENCH_ROUNDS=N  rounds of the timed benchmarks (default 7)
#   BENCH_NET_ROUNDS=N  rounds of the echo and HTTP benchmarks (default 5)
#   CC              compiler (default cc)
# shellcheck disable=SC2086 # word splitting of the library lists is meant
set -u
cd "$(dirname "$0")/../.." || exit 1

B=build/bench
QUICK=${BENCH_QUICK:-0}
CC=${CC:-cc}
RAW=$B/raw.txt
LOG=$B/log.txt
START=$(date +%s)
mkdir -p "$B/cg"
: >"$RAW"
: >"$LOG"

say() { echo "bench: $*" >&2; }

if [ "$QUICK" = 1 ]; then
    ROUNDS=${BENCH_ROUNDS:-1}
    SIZES="100 1000"
    ITERS=3
    NTIMERS=100000
    PINGPONGS=10000
    NPOSTS=100000
    NHANDSHAKES=10000
    CG_PIPES="1000 3"
    CG_TIMERS=20000
    CG_PINGPONGS=5000
    NET_ROUNDS=${BENCH_NET_ROUNDS:-1}
    ECHO_SECS=1
    OUT=$B/RESULTS.md
    CMD="BENCH_QUICK=1 make bench"
else
    ROUNDS=${BENCH_ROUNDS:-7}
    SIZES="100 1000 9000"
    ITERS=25
    NTIMERS=1000000
    PINGPONGS=100000
    NPOSTS=1000000
    NHANDSHAKES=100000
    CG_PIPES="1000 5"
    CG_TIMERS=100000
    CG_PINGPONGS=20000
    NET_ROUNDS=${BENCH_NET_ROUNDS:-5}
    ECHO_SECS=5
    OUT=tests/bench/RESULTS.md
    CMD="make bench"
fi

libflags() {
    case $1 in
    evloop) echo "-I. -DNDEBUG -DEVLOOP_BACKEND_EPOLL" ;;
    libevent) echo "-levent_core -levent_pthreads" ;;
    libev) echo "-lev -lm" ;;
    libuv) echo "-luv" ;;
    *) echo "" ;;
    esac
}

upper() { echo "$1" | tr '[:lower:]' '[:upper:]'; }

# probe LIB: its headers and libraries are there
probe() {
    # shellcheck disable=SC2046
    $CC -O0 -DLIB_"$(upper "$1")" tests/bench/footprint_min.c -o "$B/probe_$1" \
        $(libflags "$1") -pthread >/dev/null 2>&1
}

# --- the peers ---------------------------------------------------------------
missing=""
probe libevent || missing="$missing libevent-dev"
probe libev || missing="$missing libev-dev"
probe libuv || missing="$missing libuv1-dev"
command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
command -v strace >/dev/null 2>&1 || missing="$missing strace"
if [ -n "$missing" ]; then
    say "installing$missing (apt-get)"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            libevent-dev libev-dev libuv1-dev valgrind strace; } >>"$LOG" 2>&1; then
            say "could not install$missing (see $LOG); going on with what is available"
        fi
    else
        say "cannot install$missing (needs root and apt-get); going on with what is available"
    fi
fi
PEERS=""
for lib in libev libevent libuv; do
    if probe "$lib"; then PEERS="$PEERS $lib"; else say "$lib not available: left out"; fi
done
HAVE_CG=0
if command -v valgrind >/dev/null 2>&1 && [ -f /usr/include/valgrind/callgrind.h ]; then
    HAVE_CG=1
else
    say "valgrind/callgrind not available: no instruction counts"
fi

# --- build ---------------------------------------------------------------------
WARN="-Wall -Wextra"
build() { # PROG LIB [extra flags...]: build/bench/PROG_LIB
    local prog=$1 lib=$2
    shift 2
    # shellcheck disable=SC2046
    $CC -O2 -g $WARN -Itests/bench -DLIB_"$(upper "$lib")" "$@" "tests/bench/$prog.c" \
        -o "$B/${prog}_$lib$CG_SUFFIX" $(libflags "$lib") -pthread -lm >>"$LOG" 2>&1 ||
        { say "build of $prog for $lib failed (see $LOG)"; return 1; }
}
say "building"
CG_SUFFIX=""
for lib in evloop rawepoll $PEERS; do
    build bench_pipes "$lib"
    build bench_pingpong "$lib"
    build bench_async "$lib"
    [ "$lib" = rawepoll ] || build bench_timers "$lib"
done
# echo through the buffered streams: the libraries that have them
build bench_echo evloop
ECHO_LIBS=evloop
for lib in $PEERS; do
    case $lib in libevent | libuv) build bench_echo "$lib" && ECHO_LIBS="$ECHO_LIBS $lib" ;; esac
done
# the floor that still calls epoll_ctl at every re-arm (pipes only)
$CC -O2 -g $WARN -Itests/bench -DLIB_RAWEPOLL -DRAWEPOLL_CTL tests/bench/bench_pipes.c \
    -o "$B/bench_pipes_rawepoll-ctl" >>"$LOG" 2>&1 || say "build of bench_pipes for rawepoll-ctl failed"
if [ "$HAVE_CG" = 1 ]; then
    CG_SUFFIX=".cg"
    for lib in evloop rawepoll $PEERS; do
        build bench_pipes "$lib" -DBENCH_CALLGRIND
        build bench_pingpong "$lib" -DBENCH_CALLGRIND
        [ "$lib" = rawepoll ] || build bench_timers "$lib" -DBENCH_CALLGRIND
    done
    CG_SUFFIX=""
fi

# run CMD...: keep its R lines, tagged with the round; a failure is
# reported, never fatal
ROUND=0
run() {
    local out
    if out=$(timeout 300 "$@" 2>>"$LOG"); then
        printf '%s\n' "$out" | grep '^R ' | sed "s/\$/ $ROUND/" >>"$RAW"
    else
        say "FAILED: $* (see $LOG)"
        echo "FAILED: $*" >>"$LOG"
    fi
}

# rotate K WORDS...: the words starting at the K-th (mod count): each round
# runs the libraries in another order so that none always goes first.
rotate() {
    local k=$1
    shift
    local n=$# i
    local -a a=("$@")
    for ((i = 0; i < n; i++)); do printf '%s ' "${a[$(((i + k) % n))]}"; done
}

have() { [ -x "$B/$1" ]; }

# --- timed benchmarks, interleaved ---------------------------------------------
for ((r = 0; r < ROUNDS; r++)); do
    ROUND=$((r + 1))
    say "round $ROUND/$ROUNDS: pipes"
    for n in $SIZES; do
        for lib in $(rotate $r evloop rawepoll rawepoll-ctl $PEERS); do
            have "bench_pipes_$lib" && run "$B/bench_pipes_$lib" "$n" "$ITERS"
        done
        for lib in $(rotate $r evloop $PEERS); do
            have "bench_pipes_$lib" && run "$B/bench_pipes_$lib" "$n" -t "$ITERS"
        done
    done
    say "round $((r + 1))/$ROUNDS: timers"
    for lib in $(rotate $r evloop $PEERS); do
        have "bench_timers_$lib" && run "$B/bench_timers_$lib" "$NTIMERS"
    done
    say "round $((r + 1))/$ROUNDS: ping-pong"
    for lib in $(rotate $r evloop rawepoll $PEERS); do
        have "bench_pingpong_$lib" && run "$B/bench_pingpong_$lib" "$PINGPONGS"
    done
    say "round $((r + 1))/$ROUNDS: async"
    for lib in $(rotate $r evloop rawepoll $PEERS); do
        have "bench_async_$lib" && run "$B/bench_async_$lib" "$NPOSTS" "$NHANDSHAKES"
    done
done

# --- echo throughput through buffered streams (issue 4), interleaved ---------------
for ((r = 0; r < NET_ROUNDS; r++)); do
    ROUND=$((r + 1))
    say "round $ROUND/$NET_ROUNDS: echo, 100 connections pumping 8 KiB writes for $ECHO_SECS s"
    for lib in $(rotate $r $ECHO_LIBS); do
        have "bench_echo_$lib" && run "$B/bench_echo_$lib" "$ECHO_SECS"
    done
done

# --- callgrind: instructions per event ----------------------------------------
# The program dumps two regions (files OUT.1 and OUT.2; ping-pong only one,
# with METRIC2 "-") and prints how many events each held. Instructions of the
# program's own callback (CB, kept out of line) are subtracted, so the figure
# is the loop's and library's.
cg_totals() { awk '/^totals:/ {print $2; exit}' "$1"; }
cg_incl() { # FILE FUNCTION: inclusive Ir of FUNCTION
    callgrind_annotate --inclusive=yes "$1" 2>/dev/null |
        awk -v fn=":$2 " 'index($0, fn) {gsub(",", "", $1); print $1; found = 1; exit}
                          END {if (!found) print 0}'
}
# cg BENCH CONFIG LIB CB METRIC1 METRIC2 -- CMD...
cg() {
    local bench=$1 config=$2 lib=$3 cb=$4 m1=$5 m2=$6 f out ev1 ev2
    shift 7
    f=$B/cg/$bench.$config.$lib
    rm -f "$f" "$f".*
    if ! out=$(timeout 600 valgrind --tool=callgrind --collect-atstart=no \
        --callgrind-out-file="$f" "$@" 2>>"$LOG"); then
        say "FAILED under callgrind: $* (see $LOG)"
        return
    fi
    ev1=$(printf '%s\n' "$out" | awk '$1 == "R" {print $6; exit}')
    ev2=$(printf '%s\n' "$out" | awk '$1 == "R" {n++} $1 == "R" && n == 2 {print $6; exit}')
    [ -z "$ev2" ] && ev2=$ev1
    if [ ! -f "$f.1" ] || { [ "$m2" != - ] && [ ! -f "$f.2" ]; } || [ -z "$ev1" ]; then
        say "callgrind gave no dumps for $lib $bench"
        return
    fi
    if [ "$m2" = - ]; then
        awk -v b="$bench" -v l="$lib" -v c="$config" -v m1="$m1" \
            -v t1="$(cg_totals "$f.1")" -v i1="$(cg_incl "$f.1" "$cb")" -v e1="$ev1" \
            'BEGIN {printf "R %s %s %s %s %.1f\n", b, l, c, m1, (t1 - i1) / e1}' >>"$RAW"
        return
    fi
    awk -v b="$bench" -v l="$lib" -v c="$config" -v m1="$m1" -v m2="$m2" \
        -v t1="$(cg_totals "$f.1")" -v i1="$(cg_incl "$f.1" "$cb")" -v e1="$ev1" \
        -v t2="$(cg_totals "$f.2")" -v i2="$(cg_incl "$f.2" "$cb")" -v e2="$ev2" \
        'BEGIN {printf "R %s %s %s %s %.1f\nR %s %s %s %s %.1f\n",
                b, l, c, m1, (t1 - i1) / e1, b, l, c, m2, (t2 - i2) / e2}' >>"$RAW"
}
if [ "$HAVE_CG" = 1 ]; then
    set -- $CG_PIPES
    say "callgrind: pipes N=$1, $2 iterations; timers $CG_TIMERS"
    for lib in evloop rawepoll $PEERS; do
        have "bench_pipes_$lib.cg" &&
            cg pipes-cg "N=$1" "$lib" on_io Ir_total Ir_proc -- "$B/bench_pipes_$lib.cg" "$1" "$2"
    done
    for lib in evloop $PEERS; do
        have "bench_pipes_$lib.cg" &&
            cg pipes-cg "N=$1+timeouts" "$lib" on_io Ir_total Ir_proc -- \
                "$B/bench_pipes_$lib.cg" "$1" -t "$2"
        have "bench_timers_$lib.cg" &&
            cg timers-cg "$((CG_TIMERS / 1000))k" "$lib" on_timer Ir_start Ir_dispatch -- \
                "$B/bench_timers_$lib.cg" "$CG_TIMERS"
    done
    for lib in evloop rawepoll $PEERS; do
        have "bench_pingpong_$lib.cg" &&
            cg pingpong-cg tcp "$lib" on_io Ir_rt - -- "$B/bench_pingpong_$lib.cg" "$CG_PINGPONGS"
    done
fi

# --- system calls: the kernel work each library asks for -----------------------
# strace -c counts the calls of a whole run, set-up included; each program
# runs at two sizes, and the difference divided by the difference in size is
# the count per round trip (ping-pong) or per iteration (pipes), exactly.
# scount OUT CMD...: "total epoll_ctl epoll_wait" calls of the run
scount() {
    local out=$1
    shift
    strace -f -c -o "$out" "$@" >/dev/null 2>>"$LOG" || return 1
    awk '$NF == "total" {t = $4} $NF == "epoll_ctl" {c = $4} $NF == "epoll_wait" {w = $4}
         END {print t + 0, c + 0, w + 0}' "$out"
}
# sc CONFIG LIB SMALL LARGE CMD: CMD (words) run with SMALL, then LARGE appended
sc() {
    local config=$1 lib=$2 n1=$3 n2=$4 prog=$5 a b
    if ! a=$(scount "$B/strace.1" $prog "$n1") || ! b=$(scount "$B/strace.2" $prog "$n2"); then
        say "FAILED under strace: $prog (see $LOG)"
        return
    fi
    # shellcheck disable=SC2086 # a and b are three numbers each
    set -- $a $b
    awk -v c="$config" -v l="$lib" -v d="$((n2 - n1))" -v t="$(($4 - $1))" -v e="$(($5 - $2))" \
        -v w="$(($6 - $3))" 'BEGIN {printf "R syscalls %s %s calls %.2f\nR syscalls %s %s epoll_ctl %.2f\nR syscalls %s %s epoll_wait %.2f\n",
                                   l, c, t / d, l, c, e / d, l, c, w / d}' >>"$RAW"
    rm -f "$B/strace.1" "$B/strace.2"
}
if command -v strace >/dev/null 2>&1; then
    say "system calls (strace -c): ping-pong and pipes N=1000"
    for lib in evloop rawepoll $PEERS; do
        have "bench_pingpong_$lib" &&
            sc pingpong "$lib" 2000 7000 "$B/bench_pingpong_$lib"
        have "bench_pipes_$lib" && sc pipes-N=1000 "$lib" 2 7 "$B/bench_pipes_$lib 1000"
        [ "$lib" = rawepoll ] && have bench_pipes_rawepoll-ctl &&
            sc pipes-N=1000 rawepoll-ctl 2 7 "$B/bench_pipes_rawepoll-ctl 1000"
        [ "$lib" = rawepoll ] ||
            { have "bench_pipes_$lib" && sc pipes-N=1000+timeouts "$lib" 2 7 "$B/bench_pipes_$lib 1000 -t"; }
    done
else
    say "strace not available: no system call counts"
fi

# --- footprint -----------------------------------------------------------------
say "footprint"
textsz() { size -A "$1" 2>/dev/null | awk '$1 ~ /^\.text/ {s += $2} END {print s + 0}'; }
for lib in evloop $PEERS; do
    # shellcheck disable=SC2046
    if $CC -O2 $WARN -I. -DLIB_"$(upper "$lib")" tests/bench/footprint_sizeof.c \
        -o "$B/footprint_sizeof_$lib" >>"$LOG" 2>&1; then
        "$B/footprint_sizeof_$lib" | awk '{print $1, $2, $3, "fd+timeout", $5, $6}' >>"$RAW"
    fi
done
MIN="-DEVLOOP_NO_SIGNALS -DEVLOOP_NO_THREADS -DEVLOOP_NO_STDIO -DEVLOOP_NO_STREAMS"
# fp NAME FLAGS...: minimal program, -Os; prints its .text
fp() {
    local name=$1
    shift
    $CC -Os $WARN tests/bench/footprint_min.c -o "$B/fp_$name" "$@" >>"$LOG" 2>&1 &&
        "$B/fp_$name" && textsz "$B/fp_$name"
}
base=$(fp none -DLIB_NONE)
codesize() { # NAME CONFIG BYTES
    [ -n "$3" ] && [ -n "$base" ] && echo "R codesize $1 $2 text_bytes $3" >>"$RAW"
}
sub() { [ -n "$1" ] && echo $(($1 - base)); }
EV="-I. -DNDEBUG -DLIB_EVLOOP"
codesize evloop program "$(sub "$(fp evloop $EV $MIN)")"
codesize evloop-static program "$(sub "$(fp evloop_static $EV $MIN -DEVLOOP_STATIC)")"
codesize evloop-gc program "$(sub "$(fp evloop_gc $EV $MIN -ffunction-sections -fdata-sections -Wl,--gc-sections)")"
codesize evloop-poll program "$(sub "$(fp evloop_poll $EV $MIN -DEVLOOP_BACKEND_POLL)")"
codesize evloop-full program "$(sub "$(fp evloop_full $EV -DEVLOOP_NO_STREAMS -pthread)")"
GC="-Wl,--gc-sections -Wl,-Bstatic"
for lib in $PEERS; do
    case $lib in
    libev) static="-lev -Wl,-Bdynamic -lm" so=libev.so ;;
    libevent) static="-levent_core -Wl,-Bdynamic" so=libevent_core.so ;;
    libuv) static="-luv_a -Wl,-Bdynamic -lpthread -ldl" so=libuv.so ;;
    esac
    # shellcheck disable=SC2086
    codesize "$lib" program "$(sub "$(fp "$lib" -DLIB_"$(upper "$lib")" $GC $static)")"
    sofile=$($CC -print-file-name="$so")
    [ -f "$sofile" ] && codesize "$lib" library "$(textsz "$(readlink -f "$sofile")")"
done
printf '#define EVLOOP_IMPLEMENTATION\n#include "evloop.h"\n' >"$B/evloop_impl.c"
$CC -Os -I. -DNDEBUG -DEVLOOP_NO_STREAMS -c "$B/evloop_impl.c" -o "$B/evloop_impl.o" >>"$LOG" 2>&1 &&
    codesize evloop library "$(textsz "$B/evloop_impl.o")"
if grep -q EVLOOP_NO_STREAMS evloop.h; then
    $CC -Os -I. -DNDEBUG -c "$B/evloop_impl.c" -o "$B/evloop_impl_streams.o" >>"$LOG" 2>&1 &&
        codesize evloop+streams library "$(textsz "$B/evloop_impl_streams.o")"
fi

# --- HTTP: http_hello against nginx (issue 4) -------------------------------------
# bench_http.sh installs wrk and nginx-light when missing (or says why it
# skips), runs nginx from a temporary prefix and http_hello interleaved under
# `wrk -t1 -c50`, and prints raw lines (tagged with their round) that the
# report below turns into the "http" table and the issue 4 targets.
say "HTTP: http_hello vs nginx-light, wrk -t1 -c50, $NET_ROUNDS round(s)"
BENCH_LOG=$LOG bash tests/bench/bench_http.sh "$NET_ROUNDS" >>"$RAW" ||
    say "bench_http.sh failed (see $LOG)"

# --- report --------------------------------------------------------------------
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
git diff --quiet HEAD -- evloop.h 2>/dev/null || rev="$rev + uncommitted evloop.h"
secs=$(($(date +%s) - START))
{
    echo "# evloop benchmark results"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- command: \`$CMD\` ($((secs / 60)) min $((secs % 60)) s)"
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)"
    echo "- compiler: $($CC --version | head -1), -O2 (footprint: -Os); evloop at $rev with -DNDEBUG, epoll backend"
    echo "- peers (Debian packages): libevent $(ver libevent-dev), libev $(ver libev-dev), libuv $(ver libuv1-dev); all on epoll; HTTP: nginx-light $(ver nginx-light), wrk $(ver wrk)"
    echo "- method: $ROUNDS round(s), libraries interleaved (order rotated each round); each figure is the median over the rounds; each ratio (library / evloop) is the median over the rounds of the ratio within a round. Callgrind counts are from one run (they do not depend on the machine's load)."
    echo "- sizes: pipes N = ${SIZES// /, } with A = 100 active, W = 1000 writes, $ITERS iterations; $NTIMERS timers; $PINGPONGS ping-pong round trips; $NPOSTS posts (flood) and $NHANDSHAKES handshakes; callgrind: pipes N=${CG_PIPES% *} (${CG_PIPES#* } iterations), $CG_TIMERS timers, $CG_PINGPONGS ping-pong round trips; strace: ping-pong 7000 - 2000 round trips, pipes N=1000 7 - 2 iterations; echo: 100 connections, 8 KiB writes, $ECHO_SECS s, $NET_ROUNDS round(s); HTTP: wrk -t1 -c50 -d$([ "$QUICK" = 1 ] && echo 2 || echo 5)s, $NET_ROUNDS round(s)"
    echo
    awk -v rounds="$ROUNDS" -f tests/bench/report.awk "$RAW"
    echo "Footprint types: evloop: evloop_event; libevent: struct event; libev: ev_io + ev_timer; libuv: uv_poll_t + uv_timer_t."
    echo "Code size rows, \"program\": .text of the minimal program minus that of the same program without a library (evloop: epoll with EVLOOP_NO_SIGNALS/THREADS/STDIO; -static: plus EVLOOP_STATIC; -gc: plus -ffunction-sections and --gc-sections at link time; -poll: poll backend; -full: every option on; peers: their static .a linked with --gc-sections). \"library\": evloop's core as one object (-Os, every option on but the streams layer; evloop+streams: with it) against each peer's shared library."
    echo
    echo "Pipes row rawepoll-ctl: the floor plus one epoll_ctl(MOD) per re-arm, the kernel work a library does when a re-assigned event may name a new file (evloop and libev: one ADD the kernel refuses as already there; libevent and libuv: DEL + ADD)."
} >"$B/RESULTS.tmp"
cp "$B/RESULTS.tmp" "$OUT"
cat "$OUT"
say "done in $((secs / 60)) min $((secs % 60)) s; tables in $OUT, raw figures in $RAW"
