#!/usr/bin/env bash
# bench/run.sh: lameduck's overhead against direct, nginx and HAProxy, measured in one run.
#
# Why one script: a sidecar's CPU, latency and memory are paid in every pod, so the figures that
# matter are ratios against the proxies people would otherwise use, measured on the same machine
# in the same minutes. Targets are interleaved (direct lameduck nginx haproxy, again and again),
# so drift and noise from other processes hit all of them alike; the table shows the median of
# the rounds.
#
# What it does: finds (or, as root, apt-installs) wrk, h2load, nginx and HAProxy; builds
# lameduck; starts a fast upstream (nginx `return 200 "hello"`, one worker) and the three proxies
# in front of it (one worker / thread each, keep-alive pools to the upstream); then measures
#   - saturation throughput (wrk, closed loop) and the proxy's CPU seconds per request
#     (utime+stime from /proc/PID/stat, before and after) and its RSS under load;
#   - latency at fixed rates (h2load --rps, open loop per connection) p50/p90/p99;
#   - RSS idle, and with N idle keep-alive connections (bench/hold_conns.py holds them);
# in the "pinned" layout (upstream and proxy on CPU 0, load generator on CPU 1: the headline)
# and the "unpinned" one. Everything listens on 127.0.0.1 only; every step is time-bounded.
# Then the HTTP/2 (h2c) and gRPC rows: bench/h2.sh, same targets, with slowapp as the app.
# The table goes to stdout and OUT/table.txt, the raw figures to OUT/results.json.
#
# Usage: bench/run.sh [--quick] [options]   (bench/run.sh --help)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

usage() {
    cat <<'EOF'
Usage: bench/run.sh [options]

  --quick              smoke run (seconds): 1 round, 1 s per measurement, pinned layout only,
                       100 idle connections; checks that the whole pipeline produces a table
  --rounds N           interleaved rounds of every measurement (default 3)
  --duration SEC       seconds per saturation run (default 8)
  --latency-duration SEC
                       seconds per fixed-rate run (default 10)
  --rates "R1 R2"      fixed rates in requests/s (default "1000 5000")
  --connections N      wrk connections for saturation (default 50)
  --idle-conns N       idle keep-alive connections for the RSS figure (default 2000)
  --layouts "L1 L2"    pinned and/or unpinned (default "pinned unpinned")
  --targets "T..."     any of direct lameduck nginx haproxy (default: all four)
  --upstream KIND      nginx (default) or slowapp: the app every target forwards to
  --profile P          dist (default: what ships, fat LTO), release or debug: which build of
                       lameduck/slowapp to run
  --no-build           do not run cargo build; use the binaries already in target/
  --lameduck-bin PATH  run this lameduck binary instead (e.g. a patched build); implies --no-build
  --baseline-bin PATH  also run this lameduck binary (e.g. the last release, or main before a
                       change) as the target "baseline", interleaved with the others in the same
                       rounds, with "ratio to baseline" rows: a before/after in one run (HTTP/1.1
                       rows only; the HTTP/2 rows run lameduck alone)
  --port-base P        first of the ports used on 127.0.0.1: P..P+4 (and P+5, P+6 with
                       --baseline-bin), P+10..P+14 for the HTTP/2 and gRPC rows (bench/h2.sh)
                       (default 28080)
  --out DIR            where raw results go (default target/bench/run-<time>)
  -h, --help           this text
EOF
}

die() { echo "bench: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

QUICK=0 ROUNDS=3 DURATION=8 LAT_DURATION=10 RATES="1000 5000" CONNECTIONS=50 IDLE_CONNS=2000
LAYOUTS="pinned unpinned" TARGETS="direct lameduck nginx haproxy" UPSTREAM_KIND=nginx
PROFILE=dist BUILD=1 PORT_BASE=28080 OUT="" LAMEDUCK_BIN="" BASELINE_BIN=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=${2:?--rounds needs a value}; shift ;;
        --duration) DURATION=${2:?--duration needs a value}; shift ;;
        --latency-duration) LAT_DURATION=${2:?--latency-duration needs a value}; shift ;;
        --rates) RATES=${2:?--rates needs a value}; shift ;;
        --connections) CONNECTIONS=${2:?--connections needs a value}; shift ;;
        --idle-conns) IDLE_CONNS=${2:?--idle-conns needs a value}; shift ;;
        --layouts) LAYOUTS=${2:?--layouts needs a value}; shift ;;
        --targets) TARGETS=${2:?--targets needs a value}; shift ;;
        --upstream) UPSTREAM_KIND=${2:?--upstream needs a value}; shift ;;
        --profile) PROFILE=${2:?--profile needs a value}; shift ;;
        --no-build) BUILD=0 ;;
        --lameduck-bin) LAMEDUCK_BIN=${2:?--lameduck-bin needs a value}; BUILD=0; shift ;;
        --baseline-bin) BASELINE_BIN=${2:?--baseline-bin needs a value}; shift ;;
        --port-base) PORT_BASE=${2:?--port-base needs a value}; shift ;;
        --out) OUT=${2:?--out needs a value}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [[ $QUICK == 1 ]]; then
    ROUNDS=1 DURATION=1 LAT_DURATION=1 RATES="200 1000" IDLE_CONNS=100 LAYOUTS=pinned
fi
for v in ROUNDS DURATION LAT_DURATION CONNECTIONS IDLE_CONNS PORT_BASE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench: --${v,,} must be a positive integer, got '${!v}'" >&2; exit 2; }
done
for r in $RATES; do [[ $r =~ ^[1-9][0-9]*$ ]] || { echo "bench: --rates: '$r' is not a rate" >&2; exit 2; }; done
for l in $LAYOUTS; do [[ $l == pinned || $l == unpinned ]] || { echo "bench: --layouts: unknown layout '$l'" >&2; exit 2; }; done
for t in $TARGETS; do [[ $t =~ ^(direct|lameduck|baseline|nginx|haproxy)$ ]] || { echo "bench: --targets: unknown target '$t'" >&2; exit 2; }; done
[[ $UPSTREAM_KIND == nginx || $UPSTREAM_KIND == slowapp ]] || { echo "bench: --upstream must be nginx or slowapp" >&2; exit 2; }
if [[ -n $BASELINE_BIN ]]; then
    [[ -x $BASELINE_BIN ]] || { echo "bench: --baseline-bin: $BASELINE_BIN is not an executable" >&2; exit 2; }
    [[ " $TARGETS " == *" baseline "* ]] || TARGETS="${TARGETS/lameduck/lameduck baseline}"
    [[ " $TARGETS " == *" baseline "* ]] || TARGETS="$TARGETS baseline"
fi
[[ $PROFILE == dist || $PROFILE == release || $PROFILE == debug ]] || { echo "bench: --profile must be dist, release or debug" >&2; exit 2; }

NCPU=$(nproc)
if [[ $NCPU -lt 2 && $LAYOUTS == *pinned* ]]; then
    log "only $NCPU CPU: the pinned layout needs 2; running unpinned only"
    LAYOUTS=unpinned
fi

# --- tools ------------------------------------------------------------------------------------
need_tools() {
    local missing=() pkgs=()
    command -v wrk >/dev/null || { missing+=(wrk); pkgs+=(wrk); }
    command -v h2load >/dev/null || { missing+=(h2load); pkgs+=(nghttp2-client); }
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || { missing+=(nginx); pkgs+=(nginx-light); }
    command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || { missing+=(haproxy); pkgs+=(haproxy); }
    command -v python3 >/dev/null || { missing+=(python3); pkgs+=(python3); }
    command -v taskset >/dev/null || { missing+=(taskset); pkgs+=(util-linux); }
    command -v curl >/dev/null || { missing+=(curl); pkgs+=(curl); }
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${pkgs[*]} with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" >&2; } ||
            die "could not install ${pkgs[*]}"
    else
        die "missing ${missing[*]}: install them (Debian/Ubuntu: apt-get install ${pkgs[*]})"
    fi
}
need_tools
PATH=$PATH:/usr/sbin
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy)

# --- build ------------------------------------------------------------------------------------
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"
bench_build
LAMEDUCK_BIN=${LAMEDUCK_BIN:-$BIN_DIR/lameduck}
[[ -x $LAMEDUCK_BIN ]] || die "$LAMEDUCK_BIN not found (build it, or drop --no-build)"
[[ $UPSTREAM_KIND != slowapp || -x $BIN_DIR/slowapp ]] || die "$BIN_DIR/slowapp not found"

# --- scratch directory, ports, limits -----------------------------------------------------------
bench_scratch run

P_UPSTREAM=$PORT_BASE P_LAMEDUCK=$((PORT_BASE + 1)) P_ADMIN=$((PORT_BASE + 2))
P_NGINX=$((PORT_BASE + 3)) P_HAPROXY=$((PORT_BASE + 4))
P_BASELINE=$((PORT_BASE + 5)) P_BASELINE_ADMIN=$((PORT_BASE + 6))
bench_ports_free $P_UPSTREAM $P_LAMEDUCK $P_ADMIN $P_NGINX $P_HAPROXY
[[ -z $BASELINE_BIN ]] || bench_ports_free $P_BASELINE $P_BASELINE_ADMIN
# 1000 idle connections (plus the upstream side) need more descriptors than the usual 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[[ $(ulimit -n) == unlimited || $(ulimit -n) -ge $((IDLE_CONNS * 2 + 256)) ]] ||
    die "open-file limit $(ulimit -n) is too low for --idle-conns $IDLE_CONNS"

fd_count() { # pids...: open file descriptors, summed
    local n=0 p
    for p in "$@"; do n=$((n + $(ls /proc/"$p"/fd 2>/dev/null | wc -l))); done
    echo "$n"
}

port_of() {
    case $1 in
        direct) echo "$P_UPSTREAM" ;; lameduck) echo "$P_LAMEDUCK" ;; baseline) echo "$P_BASELINE" ;;
        nginx) echo "$P_NGINX" ;; haproxy) echo "$P_HAPROXY" ;;
    esac
}

wait_http() { # name port
    local deadline=$((SECONDS + 30))
    until curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$2/"; do
        [[ $SECONDS -lt $deadline ]] || die "$1 does not answer on 127.0.0.1:$2 (see $RAW/$1.log)"
        kill -0 "${PID[$1]}" 2>/dev/null || die "$1 exited at start (see $RAW/$1.log)"
        sleep 0.1
    done
}

log "results in $OUT"
UP=127.0.0.1:$P_UPSTREAM
if [[ $UPSTREAM_KIND == nginx ]]; then
    render "$BENCH_DIR/nginx-upstream.conf" "$RAW/nginx-upstream.conf" "$P_UPSTREAM" -
    start direct "$NGINX" -p "$RAW" -e "$RAW/nginx-upstream.error.log" -c "$RAW/nginx-upstream.conf"
else
    start direct "$BIN_DIR/slowapp" --listen "$UP" --startup-delay 0s --response-delay 0s
fi
wait_http direct "$P_UPSTREAM"

for t in $TARGETS; do
    case $t in
        lameduck)
            start lameduck env RUST_LOG="${RUST_LOG:-info}" "$LAMEDUCK_BIN" \
                --listen "127.0.0.1:$P_LAMEDUCK" --admin-listen "127.0.0.1:$P_ADMIN" \
                --upstream "$UP" --app-probe tcp ;;
        baseline)
            [[ -n $BASELINE_BIN ]] || die "the baseline target needs --baseline-bin PATH"
            start baseline env RUST_LOG="${RUST_LOG:-info}" "$BASELINE_BIN" \
                --listen "127.0.0.1:$P_BASELINE" --admin-listen "127.0.0.1:$P_BASELINE_ADMIN" \
                --upstream "$UP" --app-probe tcp ;;
        nginx)
            render "$BENCH_DIR/nginx-proxy.conf" "$RAW/nginx-proxy.conf" "$P_NGINX" "$UP"
            start nginx "$NGINX" -p "$RAW" -e "$RAW/nginx-proxy.error.log" -c "$RAW/nginx-proxy.conf" ;;
        haproxy)
            render "$BENCH_DIR/haproxy.cfg" "$RAW/haproxy.cfg" "$P_HAPROXY" "$UP"
            start haproxy "$HAPROXY" -db -f "$RAW/haproxy.cfg" ;;
    esac
done
for t in $TARGETS; do [[ $t == direct ]] || wait_http "$t" "$(port_of "$t")"; done
curl -sf -o /dev/null "http://127.0.0.1:$P_ADMIN/metrics" 2>/dev/null ||
    [[ " $TARGETS " != *" lameduck "* ]] || die "lameduck's admin plane does not answer /metrics"

# The proxy's own processes; for "direct" there is no proxy, so nothing.
proxy_pids() { [[ $1 == direct ]] || pids_of "$1"; }
upstream_pids() { pids_of direct; }

# --- record helpers -------------------------------------------------------------------------------
num() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]] && echo "$1" || echo null; }
# Other builds on the machine are the main noise source; record how busy it was at each sample.
noise() {
    local builds load _
    builds=$(($(pgrep -c rustc || true) + $(pgrep -c cargo || true)))
    read -r load _ </proc/loadavg
    printf '"builds_running":%s,"loadavg1":%s' "$(num "$builds")" "$(num "$load")"
}
emit() { echo "{$1,$(noise)}" >>"$SAMPLES"; }

set_layout() {
    local mask_srv mask_load t p
    if [[ $1 == pinned ]]; then mask_srv=0 mask_load=1; else mask_srv=0-$((NCPU - 1)) mask_load=$mask_srv; fi
    for t in direct $TARGETS; do
        for p in $(pids_of "$t"); do taskset -a -p -c "$mask_srv" "$p" >/dev/null; done
    done
    # This shell and everything it starts from now on (load generators, samplers).
    taskset -p -c "$mask_load" $$ >/dev/null
}

# --- measurements -----------------------------------------------------------------------------------
saturation() { # layout round target
    local layout=$1 round=$2 t=$3 port f pp up pc0 uc0 pc1 uc1 rss max=0 wpid
    port=$(port_of "$t") f=$RAW/wrk-$layout-$round-$t.txt
    pp=$(proxy_pids "$t") up=$(upstream_pids)
    pc0=$(cpu_ticks $pp) uc0=$(cpu_ticks $up)
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency "http://127.0.0.1:$port/" >"$f" 2>&1 &
    wpid=$!
    # RSS under load: sampled while wrk runs (a few reads a second, no fork).
    while kill -0 "$wpid" 2>/dev/null; do
        rss=$(rss_kb ${pp:-$up})
        ((rss > max)) && max=$rss
        sleep 0.25
    done
    wait "$wpid" || die "wrk failed against $t (see $f)"
    pc1=$(cpu_ticks $pp) uc1=$(cpu_ticks $up)
    local requests secs rps non2xx sockerr
    read -r requests secs < <(awk '/requests in/ {gsub(/s,?$/, "", $4); print $1, $4; exit}' "$f")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$f")
    sockerr=$(awk -F'[ ,]+' '/Socket errors/ {print $5+$7+$9+$11}' "$f")
    emit "\"kind\":\"saturation\",\"layout\":\"$layout\",\"round\":$round,\"target\":\"$t\",\"rps\":$(num "$rps"),\"requests\":$(num "$requests"),\"seconds\":$(num "$secs"),\"non_2xx\":$(num "${non2xx:-0}"),\"socket_errors\":$(num "${sockerr:-0}"),\"proxy_cpu_s\":$(awk -v a="$pc0" -v b="$pc1" -v t="$TICK" 'BEGIN{print (b-a)/t}'),\"upstream_cpu_s\":$(awk -v a="$uc0" -v b="$uc1" -v t="$TICK" 'BEGIN{print (b-a)/t}'),\"rss_load_kb\":$max,\"raw\":\"$f\""
    log "  $layout r$round saturation $t: $rps req/s"
}

fixed_rate() { # layout round target rate
    local layout=$1 round=$2 t=$3 rate=$4 port f lf pp up pc0 uc0 pc1 uc1 clients per
    port=$(port_of "$t") f=$RAW/h2load-$layout-$round-$t-$rate.txt lf=$RAW/h2load-$layout-$round-$t-$rate.tsv
    # 100 requests/s per connection: a 10 ms gap, far above the usual latency here, so a
    # connection is idle when its next request is due and the schedule holds (coordinated
    # omission only when a response takes over 10 ms; the report warns when one did).
    # h2load's per-connection timers fire together if all connections start at once (bursts of
    # every connection each 10 ms); starting them rate/1000 per millisecond spreads the
    # requests over the 10 ms (h2load's --rate-period has a 1 ms resolution).
    clients=$(((rate + 99) / 100)) per=$((rate / clients))
    local stagger=$(((clients + 9) / 10))
    pp=$(proxy_pids "$t") up=$(upstream_pids)
    pc0=$(cpu_ticks $pp) uc0=$(cpu_ticks $up)
    h2load --h1 -t1 -c "$clients" --rps "$per" -r "$stagger" --rate-period 1ms \
        -n $((clients * per * LAT_DURATION)) --log-file "$lf" \
        "http://127.0.0.1:$port/" >"$f" 2>&1 || die "h2load failed against $t (see $f)"
    pc1=$(cpu_ticks $pp) uc1=$(cpu_ticks $up)
    local achieved done_ok failed
    achieved=$(awk '/^finished in/ {gsub(/,/, ""); print $4; exit}' "$f")
    read -r done_ok failed < <(awk '/^requests:/ {print $8, $10; exit}' "$f")
    emit "\"kind\":\"rate\",\"layout\":\"$layout\",\"round\":$round,\"target\":\"$t\",\"rate\":$rate,\"clients\":$clients,\"achieved_rps\":$(num "$achieved"),\"succeeded\":$(num "$done_ok"),\"failed\":$(num "$failed"),\"proxy_cpu_s\":$(awk -v a="$pc0" -v b="$pc1" -v t="$TICK" 'BEGIN{print (b-a)/t}'),\"upstream_cpu_s\":$(awk -v a="$uc0" -v b="$uc1" -v t="$TICK" 'BEGIN{print (b-a)/t}'),\"log\":\"$lf\",\"raw\":\"$f\""
    log "  $layout r$round ${rate}/s $t: $achieved req/s achieved"
}

idle_conns() { # target
    local t=$1 port state hpid deadline rss held still
    port=$(port_of "$t") state=$RAW/hold-$t
    rm -f "$state" "$state.end"
    python3 "$BENCH_DIR/hold_conns.py" 127.0.0.1 "$port" "$IDLE_CONNS" "$state" 2>"$RAW/hold-$t.log" &
    hpid=$!
    deadline=$((SECONDS + 60))
    until [[ -s $state ]]; do
        kill -0 "$hpid" 2>/dev/null || die "hold_conns.py failed against $t (see $RAW/hold-$t.log)"
        [[ $SECONDS -lt $deadline ]] || die "hold_conns.py: $IDLE_CONNS connections to $t not held within 60 s"
        sleep 0.1
    done
    read -r _ held <"$state"
    if [[ $t == direct ]]; then rss=$(rss_kb $(upstream_pids)); else rss=$(rss_kb $(proxy_pids "$t")); fi
    kill -TERM "$hpid"
    wait "$hpid" || true
    still=$(awk '{print $2}' "$state.end" 2>/dev/null || echo null)
    # Once they have closed: does the memory come back? (Wait until the target's descriptors
    # are back below the held count, then 2 s more: lameduck trims its heap 1 s after a burst.)
    local pids fds closed
    if [[ $t == direct ]]; then pids=$(upstream_pids); else pids=$(proxy_pids "$t"); fi
    deadline=$((SECONDS + 20))
    while fds=$(fd_count $pids) && ((fds > held / 4)) && ((SECONDS < deadline)); do sleep 0.2; done
    sleep 2
    closed=$(rss_kb $pids)
    emit "\"kind\":\"rss_conns\",\"target\":\"$t\",\"conns\":$IDLE_CONNS,\"held\":$(num "$held"),\"still_open\":$(num "$still"),\"rss_kb\":$rss,\"rss_closed_kb\":$closed"
    log "  $IDLE_CONNS idle connections $t: RSS $rss kB ($still still open when measured), $closed kB once closed"
}

# --- the run --------------------------------------------------------------------------------------------
cat >"$OUT/meta.json" <<EOF
{"started":"$(date -u +%FT%TZ)","nproc":$NCPU,"cpu":"$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)",
 "kernel":"$(uname -r)","mem_total_kb":$(awk '/MemTotal/ {print $2}' /proc/meminfo),
 "lameduck":"$("$LAMEDUCK_BIN" --version 2>/dev/null | head -1) ($PROFILE, built $(date -u -r "$LAMEDUCK_BIN" +%FT%TZ), tree at git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'))",
 "baseline":"$([[ -z $BASELINE_BIN ]] || echo "$BASELINE_BIN, built $(date -u -r "$BASELINE_BIN" +%FT%TZ)")",
 "upstream":"$UPSTREAM_KIND","wrk":"$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')","h2load":"$(h2load --version | head -1)",
 "nginx":"$("$NGINX" -v 2>&1 | sed 's/.*: //')","haproxy":"$("$HAPROXY" -v | head -1 | awk '{print $3}')",
 "rounds":$ROUNDS,"duration_s":$DURATION,"latency_duration_s":$LAT_DURATION,"rates":[${RATES// /,}],
 "connections":$CONNECTIONS,"idle_conns":$IDLE_CONNS,"layouts":"$LAYOUTS","targets":"direct ${TARGETS//direct/}","quick":$QUICK,
 "clk_tck":$TICK}
EOF

ALL="direct ${TARGETS//direct/}"
# Idle RSS: right after start and one request through each (pools set up, no load yet).
for t in $ALL; do
    emit "\"kind\":\"rss_idle\",\"target\":\"$t\",\"rss_kb\":$(rss_kb $(if [[ $t == direct ]]; then upstream_pids; else proxy_pids "$t"; fi))"
done

for layout in $LAYOUTS; do
    set_layout "$layout"
    log "layout $layout: warm-up"
    for t in $ALL; do
        wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$(port_of "$t")/" >/dev/null 2>&1 || die "warm-up against $t failed"
    done
    for round in $(seq 1 "$ROUNDS"); do
        for t in $ALL; do saturation "$layout" "$round" "$t"; done
    done
    for rate in $RATES; do
        for round in $(seq 1 "$ROUNDS"); do
            for t in $ALL; do fixed_rate "$layout" "$round" "$t" "$rate"; done
        done
    done
done

set_layout "${LAYOUTS%% *}"
log "idle keep-alive connections: $IDLE_CONNS per target"
for t in $ALL; do idle_conns "$t"; done

python3 "$BENCH_DIR/report.py" "$OUT" | tee "$OUT/table.txt"

# HTTP/2 and gRPC: their own app (slowapp: h2c + gRPC) and proxies, on the next ports.
log "HTTP/2 and gRPC rows (bench/h2.sh)"
h2args=(--rounds "$ROUNDS" --duration "$DURATION" --profile "$PROFILE" --lameduck-bin "$LAMEDUCK_BIN"
    --port-base $((PORT_BASE + 10)) --out "$OUT/h2")
[[ $QUICK == 1 ]] && h2args+=(--quick)
echo | tee -a "$OUT/table.txt"
"$BENCH_DIR/h2.sh" "${h2args[@]}" | tee -a "$OUT/table.txt"
log "table: $OUT/table.txt  raw results: $OUT/results.json, $OUT/h2/samples.jsonl"
