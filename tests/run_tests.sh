#!/usr/bin/env bash
# The whole test suite, as `make test` runs it:
#   1. formatting (clang-format, when installed)
#   2. compile checks: gcc and clang (when installed), C99, C11 and C++11,
#      every backend, two translation units, EVLOOP_STATIC, each EVLOOP_NO_*
#      option, 32-bit x86 (when gcc -m32 links), and the combinations that
#      must refuse to compile
#   3. the test programs (core, networking layer) on every backend, plain
#      and under ASan+UBSan, built for size (-Os) on epoll, built for 32-bit
#      x86 on epoll and poll (run natively or under qemu-i386), and the
#      system calls the change list makes (epoll, kqueue)
#   4. the threaded tests under TSan
#   5. the examples, started and talked to by tests/test_examples.c and
#      tests/test_stream_examples.c, built on every backend (the servers on
#      streams also under ASan+UBSan, the threaded ones, threaded_server and
#      http_hello, under TSan)
# It ends with "N passed, N failed, N skipped" and fails if anything failed.
set -u
cd "$(dirname "$0")/.."

B=build/test
mkdir -p "$B"
WARN="-Wall -Wextra -Wpedantic -Werror"
STRICT="-Wshadow -Wconversion -Wsign-conversion -Wcast-qual -Wstrict-prototypes -Wmissing-prototypes
    -Wundef -Wcast-align -Wformat=2 -Wdouble-promotion"
BACKENDS="epoll poll select kqueue"
passed=0 failed=0 skipped=0

ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
skip() { echo "skip $1: $2"; skipped=$((skipped + 1)); }
have() { command -v "$1" >/dev/null 2>&1; }

# check NAME CMD...: one pass or fail, showing the output of a failure.
check() {
    local name=$1 log="$B/check.log"
    shift
    if "$@" >"$log" 2>&1; then ok "$name"; else bad "$name"; sed 's/^/    /' "$log" | head -40; fi
}

# check_fails NAME CMD...: the command must fail (a build that must be refused).
check_fails() {
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then bad "$name (compiled but must not)"; else ok "$name"; fi
}

backend_flags() {
    local b=$1
    if [ "$b" = kqueue ]; then echo "-DEVLOOP_BACKEND_KQUEUE -Itests/kqueue"; else echo "-DEVLOOP_BACKEND_${b^^}"; fi
}

# Add up a finished suite's "N passed, N failed" line; a suite that died
# without printing one counts as one failure.
tally() {
    local name=$1 out=$2 rc=$3 line p f
    grep -E '^(FAIL|not ok)' "$out" | sed "s/^/[$name] /"
    line=$(grep -Eo '[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    if [ -z "$line" ]; then
        bad "$name: no summary line (exit $rc)"
        tail -n 20 "$out" | sed 's/^/    /'
        return
    fi
    p=${line%% passed*}
    f=${line#*, }
    f=${f%% failed*}
    echo "$name: $line"
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then bad "$name: exit status $rc"; fi
}

compilers="gcc"
have clang && compilers="gcc clang"

# 32-bit x86 (size_t, long and pointers of 32 bits, as on the small boards
# evloop gets vendored into) when the compiler can link for it (Debian:
# gcc-multilib). The programs run natively when the kernel runs 32-bit code,
# else under qemu-i386 (Debian: qemu-user) when installed.
m32=""
if echo 'int main(void) { return 0; }' | gcc -m32 -x c - -o "$B/probe32" >/dev/null 2>&1; then
    m32=gcc
    if "$B/probe32" 2>/dev/null; then
        run32=""
    elif have qemu-i386; then
        run32=qemu-i386
    else
        run32=none
    fi
fi

echo "== formatting"
if have clang-format; then
    check "make format-check" make -s format-check
else
    skip "format-check" "clang-format not installed"
fi

# examples_m32 CC: every example builds for 32-bit x86 under the strict warnings.
examples_m32() {
    local ex
    for ex in examples/*.c; do
        "$1" -m32 -std=c99 $WARN $STRICT -pthread -I. "$ex" -o "$B/ex" || return 1
    done
}

echo "== compile checks"
have clang || skip "clang compile checks" "clang not installed"
for cc in $compilers; do
    cxx=g++
    [ "$cc" = clang ] && cxx=clang++
    for b in $BACKENDS; do
        bf=$(backend_flags "$b")
        for std in c99 c11; do
            check "$cc -std=$std $b: minimal program builds and runs" \
                sh -c "$cc -std=$std $WARN -pthread -I. $bf tests/compile/minimal.c -o $B/min && $B/min"
        done
        check "$cxx -std=c++11 $b: minimal program builds and runs" \
            sh -c "$cxx -x c++ -std=c++11 $WARN -pthread -I. $bf tests/compile/minimal.c -o $B/min && $B/min"
        for t in test_evloop test_streams; do
            check "$cxx -std=c++11 $b: $t compiles as C++" \
                $cxx -x c++ -std=c++11 $WARN -pthread -I. -Itests $bf -c tests/$t.c -o "$B/cxx.o"
        done
    done
    for opt in EVLOOP_NO_SIGNALS EVLOOP_NO_THREADS EVLOOP_NO_STDIO EVLOOP_NO_STREAMS EVLOOP_NO_TSC \
        "EVLOOP_NO_SIGNALS -DEVLOOP_NO_THREADS -DEVLOOP_NO_STDIO -DEVLOOP_NO_STREAMS"; do
        pt=-pthread
        case "$opt" in *NO_THREADS*) pt= ;; esac
        check "$cc -D$opt builds and runs" \
            sh -c "$cc -std=c99 $WARN $pt -I. -D$opt tests/compile/minimal.c -o $B/min && $B/min"
        check "$cxx -D$opt compiles as C++" \
            $cxx -x c++ -std=c++11 $WARN -I. -D$opt -c tests/compile/minimal.c -o "$B/min.o"
    done
    # Users build with stricter warnings than ours: the implementation stays
    # clean under the common extra ones too.
    for b in $BACKENDS; do
        check "$cc $b: implementation clean under -Wconversion -Wsign-conversion -Wshadow and more" \
            $cc -std=c99 $WARN $STRICT -pthread -I. $(backend_flags "$b") -c tests/compile/minimal.c -o "$B/min.o"
    done
    check "$cc two translation units link and run" \
        sh -c "$cc -std=c99 $WARN -pthread -I. tests/compile/tu_impl.c tests/compile/tu_other.c -o $B/tu && $B/tu"
    check "$cxx two translation units link and run" \
        sh -c "$cxx -x c++ -std=c++11 $WARN -pthread -I. tests/compile/tu_impl.c tests/compile/tu_other.c -o $B/tu && $B/tu"
    check "$cc EVLOOP_STATIC in two translation units" \
        sh -c "$cc -std=c99 $WARN -pthread -I. -c -DTU_NAME=static_a tests/compile/tu_static.c -o $B/sa.o &&
               $cc -std=c99 $WARN -pthread -I. -c -DTU_NAME=static_b tests/compile/tu_static.c -o $B/sb.o &&
               $cc -std=c99 $WARN -pthread tests/compile/static_main.c $B/sa.o $B/sb.o -o $B/st && $B/st"
    check "$cc allocator hooks: all freed, none in the steady state" \
        sh -c "$cc -std=c99 $WARN -pthread -I. tests/compile/hooks.c -o $B/hooks && $B/hooks"
    check_fails "$cc refuses one allocator hook without the others" \
        $cc -std=c99 -I. -c tests/compile/bad_hooks.c -o "$B/bad.o"
    check_fails "$cc refuses two forced backends" \
        $cc -std=c99 -I. -DEVLOOP_BACKEND_EPOLL -DEVLOOP_BACKEND_POLL -c tests/compile/minimal.c -o "$B/bad.o"
    check "$cc kqueue test double passes its self-test" \
        sh -c "$cc -std=c99 $WARN -Itests/kqueue tests/kqueue/kqemu_selftest.c -o $B/kqst && $B/kqst"
    for ex in examples/*.c; do
        check "$cc builds $ex warning-free, strict warnings too" $cc -std=c99 $WARN $STRICT -pthread -I. "$ex" -o "$B/ex"
    done
    if [ -n "$m32" ]; then
        for b in $BACKENDS; do
            check "$cc -m32 $b: implementation clean under strict warnings" \
                $cc -m32 -std=c99 $WARN $STRICT -pthread -I. $(backend_flags "$b") -c tests/compile/minimal.c -o "$B/min.o"
        done
        check "$cc -m32: every example builds warning-free, strict warnings too" examples_m32 "$cc"
    fi
done
[ -n "$m32" ] || skip "32-bit builds and tests" "gcc -m32 cannot link (Debian: gcc-multilib)"

# Sanitizers: clang when present (its runtime is the reference), else gcc.
san_cc=gcc
have clang && san_cc=clang

echo "== building the test program"
# Two compilers at a time: the machine has two cores.
build_suite() { # NAME SOURCE BACKEND CC [FLAGS...]
    local name=$1 src=$2 b=$3 cc=$4
    shift 4
    $cc -std=c99 $WARN -g -O1 "$@" -pthread -I. -Itests $(backend_flags "$b") "tests/$src.c" \
        -o "$B/$name" >"$B/build_$name.log" 2>&1
}
SAN="-fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
for b in $BACKENDS; do
    build_suite "test_$b" test_evloop "$b" gcc &
    build_suite "asan_$b" test_evloop "$b" $san_cc $SAN &
    wait
    build_suite "streams_$b" test_streams "$b" gcc &
    build_suite "asan_streams_$b" test_streams "$b" $san_cc $SAN &
    wait
done
# Built for size, the library keeps only its general paths (no short paths,
# no cycle counter): the same tests must pass.
build_suite os_epoll test_evloop epoll gcc -Os &
build_suite os_streams_epoll test_streams epoll gcc -Os &
wait
if [ -n "$m32" ]; then
    for b in epoll poll; do
        build_suite "m32_$b" test_evloop "$b" gcc -m32 &
        build_suite "m32_streams_$b" test_streams "$b" gcc -m32 &
        wait
    done
fi
$san_cc -std=c99 $WARN -g -O1 -fsanitize=thread -pthread -I. -Itests -DEVLOOP_BACKEND_EPOLL \
    tests/test_evloop.c -o "$B/tsan_epoll" >"$B/build_tsan.log" 2>&1
make -s examples >"$B/build_examples.log" 2>&1
for t in test_examples test_stream_examples; do
    gcc -std=c99 $WARN -g -O1 -pthread -I. tests/$t.c -o "$B/$t" >>"$B/build_examples.log" 2>&1
done
# The same examples on the other backends (build/examples is epoll, the default here).
for b in poll select kqueue; do
    mkdir -p "$B/examples_$b"
    : >"$B/build_examples_$b.log"
    for src in examples/*.c; do
        gcc -std=c99 $WARN -g -O1 -pthread -I. $(backend_flags $b) "$src" \
            -o "$B/examples_$b/$(basename "$src" .c)" >>"$B/build_examples_$b.log" 2>&1
    done &
done
wait
mkdir -p "$B/asan_examples" "$B/tsan_examples"
for ex in rot13_stream echo_stream chat_server http_hello tcp_client threaded_server; do
    $san_cc -std=c99 $WARN -g -O1 $SAN -pthread -I. "examples/$ex.c" -o "$B/asan_examples/$ex" \
        >>"$B/build_examples.log" 2>&1
done
for ex in threaded_server http_hello; do
    $san_cc -std=c99 $WARN -g -O1 -fsanitize=thread -pthread -I. "examples/$ex.c" \
        -o "$B/tsan_examples/$ex" >>"$B/build_examples.log" 2>&1
done

for log in "$B"/build_*.log; do
    if [ -s "$log" ]; then bad "build: $log"; sed 's/^/    /' "$log" | head -40; fi
done

# Two suites at a time: the machine has two cores and the tests are timed.
run_pair() {
    local a=$1 b=$2 ra rb
    shift 2
    "$B/$a" "$@" >"$B/$a.out" 2>&1 &
    local pa=$!
    "$B/$b" "$@" >"$B/$b.out" 2>&1 &
    local pb=$!
    wait $pa; ra=$?
    wait $pb; rb=$?
    tally "$a" "$B/$a.out" $ra
    tally "$b" "$B/$b.out" $rb
}

echo "== test program, every backend"
run_pair test_epoll test_poll
run_pair test_select test_kqueue
run_pair streams_epoll streams_poll
run_pair streams_select streams_kqueue
echo "== test program built for size (-Os: general paths only)"
run_pair os_epoll os_streams_epoll

if [ -n "$m32" ]; then
    echo "== test program built for 32-bit x86${run32:+ (run by $run32)}"
    if [ "$run32" = none ]; then
        skip "32-bit test programs" "the kernel runs no 32-bit programs and qemu-i386 is missing (Debian: qemu-user)"
    else
        # Under qemu a program cannot exec itself (the kernel cannot run it).
        excl=""
        [ "$run32" = qemu-i386 ] && excl='!internal_fds_do_not_leak_across_exec' &&
            skip "internal_fds_do_not_leak_across_exec (32-bit)" "needs exec, which qemu-i386 cannot give"
        for b in epoll poll; do
            $run32 "$B/m32_$b" $excl >"$B/m32_$b.out" 2>&1 &
            pa=$!
            $run32 "$B/m32_streams_$b" >"$B/m32_streams_$b.out" 2>&1
            rb=$?
            wait $pa
            tally "m32_$b" "$B/m32_$b.out" $?
            tally "m32_streams_$b" "$B/m32_streams_$b.out" $rb
        done
    fi
fi

echo "== system calls made by the change list"
for b in epoll kqueue; do
    if gcc -std=c99 $WARN -g -pthread -I. $(backend_flags $b) tests/test_syscalls.c -o "$B/syscalls_$b" >"$B/syscalls_$b.out" 2>&1; then
        "$B/syscalls_$b" >"$B/syscalls_$b.out" 2>&1
        tally "syscalls_$b" "$B/syscalls_$b.out" $?
    else
        bad "build tests/test_syscalls.c ($b)"
        sed 's/^/    /' "$B/syscalls_$b.out" | head -20
    fi
done

echo "== test program under ASan+UBSan ($san_cc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
run_pair asan_epoll asan_poll
run_pair asan_select asan_kqueue
run_pair asan_streams_epoll asan_streams_poll
run_pair asan_streams_select asan_streams_kqueue

echo "== threaded tests under TSan ($san_cc)"
if [ -x "$B/tsan_epoll" ]; then
    tsan_tests=$("$B/tsan_epoll" -l 2>/dev/null | grep -E 'thread|post' | tr '\n' ' ')
    # shellcheck disable=SC2086
    TSAN_OPTIONS=halt_on_error=1 "$B/tsan_epoll" $tsan_tests >"$B/tsan.out" 2>&1
    tally tsan_epoll "$B/tsan.out" $?
fi

echo "== examples"
if [ -x "$B/test_examples" ]; then
    "$B/test_examples" build/examples >"$B/examples.out" 2>&1
    tally examples "$B/examples.out" $?
fi
if [ -x "$B/test_stream_examples" ]; then
    "$B/test_stream_examples" build/examples >"$B/stream_examples.out" 2>&1
    tally stream-examples "$B/stream_examples.out" $?
    # The same servers under ASan+UBSan (its allocator needs more room than the
    # RSS bound the plain run checks), and the threaded ones under TSan.
    ASAN_OPTIONS=quarantine_size_mb=16:detect_leaks=1 STREAM_EXAMPLES_RSS_MB=256 \
        "$B/test_stream_examples" "$B/asan_examples" >"$B/stream_examples_asan.out" 2>&1
    tally stream-examples-asan "$B/stream_examples_asan.out" $?
    TSAN_OPTIONS=halt_on_error=1:exitcode=66 \
        "$B/test_stream_examples" "$B/tsan_examples" threaded_server http_hello \
        >"$B/stream_examples_tsan.out" 2>&1
    tally stream-examples-tsan "$B/stream_examples_tsan.out" $?
fi
echo "== examples on the other backends"
for b in poll select kqueue; do
    [ -x "$B/test_examples" ] && "$B/test_examples" "$B/examples_$b" >"$B/examples_$b.out" 2>&1
    tally "examples-$b" "$B/examples_$b.out" $?
    [ -x "$B/test_stream_examples" ] &&
        "$B/test_stream_examples" "$B/examples_$b" >"$B/stream_examples_$b.out" 2>&1
    tally "stream-examples-$b" "$B/stream_examples_$b.out" $?
done

# A real HTTP client against http_hello, when one is installed.
if have curl && [ -x build/examples/http_hello ]; then
    # Below the kernel's ephemeral range (32768 up), so no client socket of
    # an earlier step holds it; another try on a different port if it is busy.
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 10000))
        build/examples/http_hello "$port" >"$B/http_hello.out" 2>&1 &
        hp=$!
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            grep -q listening "$B/http_hello.out" && break
            kill -0 $hp 2>/dev/null || break
            sleep 0.2
        done
        grep -q listening "$B/http_hello.out" && break
        wait $hp 2>/dev/null
    done
    check "curl gets Hello, World! from http_hello (keep-alive, two requests)" \
        sh -c "curl -sS --max-time 5 http://127.0.0.1:$port/ http://127.0.0.1:$port/a >$B/curl.out &&
               test \"\$(cat $B/curl.out)\" = 'Hello, World!Hello, World!' &&
               curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H 'X-Big: '\$(head -c 70000 /dev/zero | tr '\\0' a) http://127.0.0.1:$port/ | grep -q 431"
    kill -TERM $hp 2>/dev/null
    wait $hp 2>/dev/null
else
    skip "curl against http_hello" "curl not installed"
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
