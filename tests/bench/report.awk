# Turns the raw measurement lines of a benchmark run into markdown tables.
# Input lines: R <bench> <lib> <config> <metric> <value> [<round>]; a
# bench/lib/config/metric seen in several rounds is shown as the median of
# its values. Every figure is followed by its ratio to evloop's (lib /
# evloop): the median over the rounds of the ratio within each round, so that
# both figures of a ratio come from the same minutes of a noisy machine. For
# times and sizes above 1 means the peer needs more, for rates above 1 means
# the peer is faster. Then the issue's targets, each with its figures and
# "met" or "NOT met" (decided on those same per-round ratios).
#
# usage: awk -v rounds=N -f report.awk raw.txt

function add_unique(list, key, item) {
    if ((key SUBSEP item) in seen_) return
    seen_[key SUBSEP item] = 1
    list[key] = (key in list) ? list[key] " " item : item
}

function lib_rank(lib) {
    if (lib == "evloop") return 0
    if (lib ~ /^evloop/) return 1
    if (lib == "rawepoll") return 2
    if (lib == "rawepoll-ctl") return 2.5
    if (lib == "libev") return 3
    if (lib == "libevent") return 4
    if (lib == "libuv") return 5
    if (lib == "nginx") return 5.5
    return 6
}

function sort_libs(s,    a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && lib_rank(a[j - 1]) > lib_rank(a[j]); j--) {
            t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
        }
    s = ""
    for (i = 1; i <= n; i++) s = s (i > 1 ? " " : "") a[i]
    return s
}

function median(s,    a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
            t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
        }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}

# the median, or "" when not measured
function m(bench, config, metric, lib,    k) {
    k = bench SUBSEP config SUBSEP metric SUBSEP lib
    return (k in vals) ? median(vals[k]) : ""
}

# lib / evloop: the median of the per-round ratios, "" when not measured
function ratio(bench, config, metric, lib,    k, ke, rs, n, i, out, e) {
    k = bench SUBSEP config SUBSEP metric SUBSEP lib
    ke = bench SUBSEP config SUBSEP metric SUBSEP "evloop"
    if (!(k in rounds_of) || !(ke in rounds_of)) return ""
    n = split(rounds_of[k], rs, " ")
    out = ""
    for (i = 1; i <= n; i++) {
        if (!((ke SUBSEP rs[i]) in byround)) continue
        e = byround[ke SUBSEP rs[i]] + 0
        if (e == 0) continue
        out = out (out == "" ? "" : " ") (byround[k SUBSEP rs[i]] / e)
    }
    return out == "" ? "" : median(out)
}

function fmt(v) {
    if (v == "") return "n/a"
    v += 0
    if (v == int(v)) return sprintf("%d", v)
    if (v >= 100000 || v <= -100000) return sprintf("%.0f", v)
    if (v >= 100 || v <= -100) return sprintf("%.0f", v)
    if (v >= 10 || v <= -10) return sprintf("%.1f", v)
    return sprintf("%.2f", v)
}

function header(metric) {
    if (metric == "total_us") return "total, CPU µs (lower is better)"
    if (metric == "proc_us") return "processing, CPU µs (lower is better)"
    if (metric == "wall_total_us") return "total, wall µs"
    if (metric == "wall_proc_us") return "processing, wall µs"
    if (metric == "cpu_us_per_rt") return "CPU µs per round trip (lower is better)"
    if (metric == "cpu_ns_per_call") return "CPU ns per call (lower is better)"
    if (metric == "Ir_total") return "Ir/event, total (lower is better)"
    if (metric == "Ir_proc") return "Ir/event, processing (lower is better)"
    if (metric == "start_ms") return "start CPU ms (lower is better)"
    if (metric == "dispatch_ms") return "dispatch CPU ms (lower is better)"
    if (metric == "late_ms") return "last timer late, ms"
    if (metric == "rss_mb") return "peak RSS MiB (lower is better)"
    if (metric == "Ir_start") return "Ir/timer, start (lower is better)"
    if (metric == "Ir_dispatch") return "Ir/timer, dispatch (lower is better)"
    if (metric == "Ir_rt") return "Ir/round trip (lower is better)"
    if (metric == "calls") return "system calls (lower is better)"
    if (metric == "epoll_ctl") return "of which epoll_ctl"
    if (metric == "epoll_wait") return "of which epoll_wait"
    if (metric == "roundtrips_per_s") return "round trips/s (higher is better)"
    if (metric == "calls_per_s") return "calls/s (higher is better)"
    if (metric == "wakeup_callbacks") return "wake-up callbacks"
    if (metric == "bytes") return "bytes (lower is better)"
    if (metric == "text_bytes") return ".text bytes (lower is better)"
    if (metric == "MB_per_s") return "MB/s echoed (higher is better)"
    if (metric == "cpu_ms_per_MB") return "CPU ms per MB, both threads (lower is better)"
    if (metric == "reqs_per_s") return "requests/s (higher is better)"
    if (metric == "cpu_us_per_req") return "server CPU µs per request (lower is better)"
    return metric
}

function no_ratio(metric) {
    return metric == "late_ms" || metric == "wakeup_callbacks"
}

function title(bench) {
    if (bench == "pipes") return "pipes (bench.c method), no timeouts: medians of the iterations, then over the rounds"
    if (bench == "pipes-timeouts") return "pipes, each event with a distinct 10-11 s timeout"
    if (bench == "pipes-cg") return "pipes under callgrind: loop + library instructions per event (program's callback excluded)"
    if (bench == "timers") return "timers (libuv million-timers method)"
    if (bench == "timers-cg") return "timers under callgrind: loop + library instructions per timer (program's callback excluded)"
    if (bench == "pingpong") return "ping-pong: one TCP connection over loopback, 5-byte echo"
    if (bench == "pingpong-cg") return "ping-pong under callgrind: loop + library instructions per round trip (program's callback excluded)"
    if (bench == "syscalls") return "system calls (strace -c, exact): per ping-pong round trip, and per pipes iteration at N=1000 (1000 re-arms, 1100 reads, 1100 writes)"
    if (bench == "async") return "async: another thread posts functions to the loop"
    if (bench == "footprint") return "footprint: bytes per \"fd with a timeout\""
    if (bench == "echo") return "echo: 100 TCP connections over loopback, a client thread pumping 8 KiB writes, the server echoing with the library's buffered stream"
    if (bench == "http") return "HTTP: `wrk -t1 -c50` on 127.0.0.1; c50-1core: examples/http_hello (1 evloop thread) vs nginx-light with 1 worker; c50-2cores: http_hello -t 2 (2 threads, a loop and a SO_REUSEPORT listener each) vs nginx with 2 workers; wrk shares the 2 cores"
    if (bench == "codesize") return "code size (-Os): library code a minimal program (one fd event + one timer) carries, and the whole library"
    return bench
}

function table(bench,    cfgs, nc, c, mets, nm, i, libs, nl, l, row, v, base, cfg, lib, met) {
    if (!(bench in configs)) return
    print "### " title(bench)
    print ""
    nm = split(metrics[bench], mets, " ")
    row = "| config | library |"
    for (i = 1; i <= nm; i++) row = row " " header(mets[i]) " |"
    print row
    row = "|---|---|"
    for (i = 1; i <= nm; i++) row = row "---:|"
    print row
    nc = split(configs[bench], cfgs, " ")
    for (c = 1; c <= nc; c++) {
        cfg = cfgs[c]
        nl = split(sort_libs(libsof[bench SUBSEP cfg]), libs, " ")
        for (l = 1; l <= nl; l++) {
            lib = libs[l]
            row = "| " cfg " | " lib " |"
            for (i = 1; i <= nm; i++) {
                met = mets[i]
                v = m(bench, cfg, met, lib)
                base = ratio(bench, cfg, met, lib)
                if (v == "") { row = row " |"; continue }
                if (no_ratio(met) || base == "" || lib == "evloop")
                    row = row " " fmt(v) " |"
                else
                    row = row " " fmt(v) " (" sprintf("%.2f", base) "x) |"
            }
            print row
        }
    }
    print ""
}

function verdict(ok) {
    return ok ? "met" : "**NOT met**"
}

# evloop's figure against the one of `other`, for every config of a bench
# (or only the config `only`, when given): want "le" (evloop <= factor *
# other) or "ge" (evloop >= factor * other).
function compare_all(bench, metric, other, factor, want, label, only,    cfgs, nc, c, e, o, r, ok, any, s) {
    if (!(bench in configs)) return
    nc = split(configs[bench], cfgs, " ")
    ok = 1; any = 0; s = ""
    for (c = 1; c <= nc; c++) {
        if (only != "" && cfgs[c] != only) continue
        e = m(bench, cfgs[c], metric, "evloop")
        o = m(bench, cfgs[c], metric, other)
        r = ratio(bench, cfgs[c], metric, other)
        if (e == "" || o == "" || r == "" || r + 0 == 0) continue
        any = 1
        r = 1 / r # evloop / other
        if (want == "le" && !(r <= factor)) ok = 0
        if (want == "ge" && !(r >= factor)) ok = 0
        s = s (s == "" ? "" : "; ") cfgs[c] ": " fmt(e) " vs " fmt(o) " (evloop/" other " " sprintf("%.2f", r) ")"
    }
    if (any) print "- " label ": " verdict(ok) ". " s
    else print "- " label ": not measured (" other " missing)"
}

# the best peer's figure (highest if `higher`, else lowest); its name in best_who
function best_peer(bench, config, metric, higher,    libs, nl, l, v, best, who) {
    nl = split(libsof[bench SUBSEP config], libs, " ")
    best = ""; who = ""
    for (l = 1; l <= nl; l++) {
        if (libs[l] ~ /^evloop/ || libs[l] ~ /^rawepoll/) continue
        v = m(bench, config, metric, libs[l])
        if (v != "" && (best == "" || (higher ? v + 0 > best + 0 : v + 0 < best + 0))) {
            best = v; who = libs[l]
        }
    }
    best_who = who
    return best
}

function beat_best(bench, metric, higher, label,    cfgs, nc, c, e, b, r, ok, any, s) {
    if (!(bench in configs)) return
    nc = split(configs[bench], cfgs, " ")
    ok = 1; any = 0; s = ""
    for (c = 1; c <= nc; c++) {
        e = m(bench, cfgs[c], metric, "evloop")
        b = best_peer(bench, cfgs[c], metric, higher)
        if (e == "" || b == "") continue
        r = ratio(bench, cfgs[c], metric, best_who)
        if (r == "" || r + 0 == 0) continue
        any = 1
        r = 1 / r # evloop / best peer
        if (higher ? !(r >= 1) : !(r <= 1)) ok = 0
        s = s (s == "" ? "" : "; ") cfgs[c] ": " fmt(e) " vs " best_who " " fmt(b) " (evloop/" best_who " " sprintf("%.2f", r) ")"
    }
    if (any) print "- " label ": " verdict(ok) ". " s
}

function limit(bench, config, metric, lib, max, label,    v) {
    v = m(bench, config, metric, lib)
    if (v == "") { print "- " label ": not measured"; return }
    print "- " label ": " verdict(v + 0 <= max) ". " fmt(v) " (limit " max ")"
}

$1 == "R" && NF >= 6 {
    bench = $2; lib = $3; cfg = $4; met = $5
    k = bench SUBSEP cfg SUBSEP met SUBSEP lib
    vals[k] = (k in vals) ? vals[k] " " $6 : $6
    rnd = NF >= 7 ? $7 : 0
    byround[k SUBSEP rnd] = $6
    rounds_of[k] = (k in rounds_of) ? rounds_of[k] " " rnd : rnd
    add_unique(configs, bench, cfg)
    add_unique(metrics, bench, met)
    add_unique(libsof, bench SUBSEP cfg, lib)
}

END {
    n = split("pipes pipes-timeouts pipes-cg timers timers-cg pingpong pingpong-cg syscalls async footprint codesize echo http", order, " ")
    for (i = 1; i <= n; i++) table(order[i])

    n = split("pipes pipes-timeouts pipes-cg timers timers-cg pingpong pingpong-cg syscalls async footprint codesize", order, " ")
    any3 = 0
    for (i = 1; i <= n; i++) if (order[i] in configs) any3 = 1
    if (any3) issue3()
    issue4()
}

function issue3() {
    print "### Targets (issue 3)"
    print ""
    compare_all("pipes", "total_us", "libev", 1, "le", "pipes total, no timeouts, evloop <= libev at every N")
    compare_all("pipes-timeouts", "total_us", "libev", 1, "le", "pipes total, with timeouts, evloop <= libev at every N")
    compare_all("pipes", "proc_us", "rawepoll", 1.05, "le", "pipes processing (CPU time) within 5% of the raw epoll floor")
    compare_all("pipes", "wall_proc_us", "rawepoll", 1.05, "le", "pipes processing (wall time) within 5% of the raw epoll floor")
    compare_all("pipes", "proc_us", "rawepoll-ctl", 1.05, "le", "(for information) pipes processing (CPU) within 5% of the floor that also calls epoll_ctl at every re-arm")
    compare_all("timers", "start_ms", "libev", 0.9, "le", "timers start CPU <= 0.9x libev")
    compare_all("timers", "dispatch_ms", "libev", 0.9, "le", "timers dispatch CPU <= 0.9x libev")
    compare_all("timers-cg", "Ir_start", "libev", 0.9, "le", "(for information) timers start Ir <= 0.9x libev (callgrind; the target is the CPU time)")
    compare_all("timers-cg", "Ir_dispatch", "libev", 0.9, "le", "(for information) timers dispatch Ir <= 0.9x libev (callgrind; the target is the CPU time)")
    compare_all("timers", "rss_mb", "libev", 1, "le", "timers peak RSS <= libev")
    nc = split(configs["timers"], cfgs, " ")
    for (c = 1; c <= nc; c++) limit("timers", cfgs[c], "late_ms", "evloop", 5, "timers: last timer fires < 5 ms late (" cfgs[c] ")")
    beat_best("pingpong", "roundtrips_per_s", 1, "ping-pong round trips/s >= best peer")
    beat_best("pingpong", "cpu_us_per_rt", 0, "ping-pong CPU per round trip <= best peer")
    beat_best("pingpong-cg", "Ir_rt", 0, "(for information) ping-pong instructions per round trip <= best peer (callgrind)")
    compare_all("pipes-cg", "Ir_total", "libev", 1, "le", "(for information) pipes instructions per event <= libev (callgrind)")
    compare_all("syscalls", "calls", "libev", 1, "le", "(for information) system calls <= libev's (strace)")
    beat_best("async", "calls_per_s", 1, "async flood calls/s >= best peer")
    beat_best("async", "cpu_ns_per_call", 0, "async flood CPU per call <= best peer")
    beat_best("async", "roundtrips_per_s", 1, "(for information) async handshake round trips/s >= best peer (the target is the flood)")
    beat_best("async", "cpu_us_per_rt", 0, "(for information) async handshake CPU per round trip <= best peer")
    limit("footprint", "fd+timeout", "bytes", "evloop", 64, "sizeof(evloop_event) <= 64")
    limit("codesize", "program", "text_bytes", "evloop", 6144, "minimal program .text <= 6 KB (epoll, NO_SIGNALS/THREADS/STDIO, -Os)")
    limit("codesize", "program", "text_bytes", "evloop-static", 6144, "minimal program .text <= 6 KB, same with EVLOOP_STATIC")
    limit("codesize", "program", "text_bytes", "evloop-gc", 6144, "minimal program .text <= 6 KB, same linked with --gc-sections (as the peers)")
    limit("codesize", "library", "text_bytes", "evloop", 24576, "full core .text <= 24 KB")
    print ""
}

function issue4() {
    if (!("echo" in configs || "http" in configs)) return
    print "### Targets (issue 4)"
    print ""
    if ("http" in configs) {
        compare_all("http", "reqs_per_s", "nginx", 1, "ge", "HTTP requests/s, http_hello (1 thread) >= nginx with 1 worker", "c50-1core")
        compare_all("http", "reqs_per_s", "nginx", 1, "ge", "HTTP requests/s on both cores, http_hello -t 2 >= nginx with 2 workers", "c50-2cores")
        compare_all("http", "cpu_us_per_req", "nginx", 1, "le", "(for information) HTTP server CPU per request <= nginx's (user + kernel; wrk's core limits the rates)")
    } else
        print "- HTTP requests/s against nginx: not measured (wrk or nginx missing)"
    if ("echo" in configs) beat_best("echo", "MB_per_s", 1, "echo MB/s, evloop streams >= best of libevent bufferevents and libuv streams")
    else print "- echo throughput: not measured"
    print ""
}
