#!/usr/bin/env bash
# HTTP requests/s of examples/http_hello.c against nginx-light answering the
# same "Hello, World!", both loaded with `wrk -t1 -c50` over 127.0.0.1
# (issue 4): on one core (http_hello, one evloop thread, against nginx with 1
# worker) and on both (http_hello -t 2, two threads each with its own loop
# and SO_REUSEPORT listener, against nginx with 2 workers). Called by run.sh;
# runs alone too:
#
#   bash tests/bench/bench_http.sh [ROUNDS]     (default 3; BENCH_QUICK=1: 1 round, 2 s runs)
#
# Prints one line per valid measurement on stdout, in run.sh's raw format
#   R http <lib> <config> reqs_per_s <value> <round>
# (config c50-1core: http_hello vs nginx with 1 worker; c50-2cores:
# http_hello -t 2 vs nginx with 2 workers; wrk's own thread shares the 2
# cores). Messages go to stderr, tool output to $BENCH_LOG (default
# build/bench/log.txt).
#
# Installs wrk and nginx-light with apt-get when they are missing (as root;
# the package's service is kept from starting); skips with a message when it
# cannot. nginx runs from a temporary prefix with its own config (daemon off,
# so this script owns the process), on a free port; everything it starts is
# stopped and its files removed on exit. Each server is started fresh for
# each measurement, its answer checked with curl first; the two servers of
# a configuration run back to back (which goes first alternates each
# round); a wrk run that reports socket errors or non-2xx answers is
# discarded.
set -u
cd "$(dirname "$0")/../.." || exit 1

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    ROUNDS=${1:-1}
    DUR=2s
else
    ROUNDS=${1:-3}
    DUR=5s
fi
LOG=${BENCH_LOG:-build/bench/log.txt}
mkdir -p "$(dirname "$LOG")"
say() { echo "bench_http: $*" >&2; }

# --- tools ---------------------------------------------------------------------
find_nginx() {
    NGINX=$(command -v nginx 2>/dev/null || true)
    [ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
    [ -n "$NGINX" ]
}
missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
find_nginx || missing="$missing nginx-light"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing$missing (apt-get)"
        # Keep the package's postinst from starting a system nginx on port 80.
        guard=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d &&
                guard=/usr/sbin/policy-rc.d
        fi
        # shellcheck disable=SC2086 # $missing is a list of package names
        inst() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; }
        { inst || { apt-get update -qq && inst; }; } >>"$LOG" 2>&1 ||
            say "apt-get install$missing failed (see $LOG)"
        [ -n "$guard" ] && rm -f "$guard"
    else
        say "cannot install$missing (needs root and apt-get)"
    fi
fi
if ! command -v wrk >/dev/null 2>&1 || ! find_nginx || ! command -v curl >/dev/null 2>&1; then
    say "wrk, nginx or curl missing: HTTP benchmark skipped"
    exit 0
fi

# --- http_hello ------------------------------------------------------------------
if ! make -s build/examples/http_hello >>"$LOG" 2>&1; then
    say "build of examples/http_hello.c failed (see $LOG): HTTP benchmark skipped"
    exit 0
fi
HELLO=build/examples/http_hello

# --- the temporary prefix, and cleanup -------------------------------------------
TMPD=$(mktemp -d /tmp/evloop_bench_http.XXXXXX) || exit 1
SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    # nginx: QUIT is a graceful stop of the master and its workers; http_hello: TERM.
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}
cleanup() {
    stop_server
    rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# A TCP port below the kernel's ephemeral range (wrk's client sockets take
# theirs from there, and one left from a previous run would make the bind
# fail) that no socket holds in any state (local ports in /proc/net/tcp*
# are 4 hex digits).
free_port() {
    local used lo p
    lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
    [ "${lo:-0}" -gt 21000 ] 2>/dev/null || lo=32768
    used=$(awk 'NR > 1 {split($2, a, ":"); print a[2]}' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % (lo - 20000)))
        printf '%s\n' "$used" | grep -qix "$(printf '%04X' "$p")" || { echo "$p"; return 0; }
    done
    return 1
}

nginx_conf() { # WORKERS PORT
    cat <<EOF
worker_processes $1;
daemon off;
master_process on;
pid $TMPD/nginx.pid;
error_log $TMPD/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMPD/client_body;
    server {
        listen 127.0.0.1:$2;
        location / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
    }
}
EOF
}

# start SERVER PORT: nginx1, nginx2, evloop1 or evloop2 (the number: workers
# or threads), listening on 127.0.0.1:PORT
start_server() {
    case $1 in
    nginx*)
        nginx_conf "${1#nginx}" "$2" >"$TMPD/nginx.conf"
        "$NGINX" -p "$TMPD" -c "$TMPD/nginx.conf" -e "$TMPD/error.log" >>"$LOG" 2>&1 &
        ;;
    evloop*) "$HELLO" -t "${1#evloop}" "$2" >>"$LOG" 2>&1 & ;;
    esac
    SERVER_PID=$!
}

# check PORT: the answer is 200 with the body "Hello, World!" (waits up to 5 s)
check() {
    local body
    for _ in $(seq 50); do
        body=$(curl -sf --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null) && break
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    [ "$body" = "Hello, World!" ]
}

# server_ticks: user + system CPU ticks of the server so far: the process
# (every thread of http_hello) and its children (nginx's workers)
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
server_ticks() {
    local p pids
    pids="$SERVER_PID $(pgrep -P "$SERVER_PID" 2>/dev/null)"
    for p in $pids; do
        # fields 14 and 15 (utime, stime), counted after the ")" that ends
        # the command name, which may hold spaces
        sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}'
    done | awk '{s += $1} END {print s + 0}'
}

# measure SERVER CONFIG LIB ROUND
measure() {
    local port out rps
    port=$(free_port) || { say "no free port"; return; }
    start_server "$1" "$port"
    if ! check "$port"; then
        say "$1 on port $port did not answer \"Hello, World!\" (see $LOG, $TMPD/error.log): no figure"
        cat "$TMPD/error.log" >>"$LOG" 2>/dev/null
        stop_server
        return
    fi
    cpu0=$(server_ticks)
    out=$(timeout 60 wrk -t1 -c50 -d"$DUR" "http://127.0.0.1:$port/" 2>&1)
    cpu1=$(server_ticks)
    stop_server
    printf '%s %s round %s:\n%s\n' "$1" "$2" "$4" "$out" >>"$LOG"
    rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec:/ {print $2}')
    reqs=$(printf '%s\n' "$out" | awk '/ requests in / {print $1}')
    if [ -z "$rps" ] || printf '%s\n' "$out" | grep -qE 'Non-2xx|Socket errors'; then
        say "$1 round $4: wrk reported errors or no rate (see $LOG): run discarded"
        return
    fi
    echo "R http $3 $2 reqs_per_s $rps $4"
    # wrk saturates its own core near the servers' rate, so requests/s
    # hides part of a difference in efficiency: the server's CPU time per
    # request shows it (kernel time included, as most of it is the kernel's).
    [ -n "$reqs" ] && [ "$reqs" -gt 0 ] && [ "$cpu1" -gt "$cpu0" ] &&
        awk -v t=$((cpu1 - cpu0)) -v hz="$HZ" -v n="$reqs" -v c="$2" -v l="$3" -v r="$4" \
            'BEGIN {printf "R http %s %s cpu_us_per_req %.3f %s\n", l, c, t / hz * 1e6 / n, r}'
}

for ((r = 0; r < ROUNDS; r++)); do
    say "round $((r + 1))/$ROUNDS: wrk -t1 -c50 -d$DUR: nginx (1 worker) and http_hello, nginx (2 workers) and http_hello -t 2"
    # The two servers of a configuration run back to back, so that their
    # ratio is taken over neighbouring seconds of this noisy machine; which
    # goes first alternates from round to round.
    for n in 1 2; do
        config=c50-1core
        [ "$n" = 2 ] && config=c50-2cores
        if ((r % 2 == 0)); then
            measure "nginx$n" "$config" nginx $((r + 1))
            measure "evloop$n" "$config" evloop $((r + 1))
        else
            measure "evloop$n" "$config" evloop $((r + 1))
            measure "nginx$n" "$config" nginx $((r + 1))
        fi
    done
done
