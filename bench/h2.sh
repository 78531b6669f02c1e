#!/usr/bin/env bash
# bench/h2.sh: the HTTP/2 (h2c) and gRPC rows of the benchmark, run by bench/run.sh after its
# HTTP/1.1 rows (or on its own, with the same options).
#
# The app is slowapp (the dist build unless --profile says otherwise), which speaks h2c and gRPC on one
# port, with no delay. In front of it, each speaking HTTP/2 to the client (h2c, prior knowledge)
# and to the app: lameduck (`--upstream-protocol auto`), nginx (`grpc_pass`: the only way nginx
# speaks HTTP/2 upstream) and HAProxy (`proto h2` both sides), one worker/thread each; "direct"
# is the app itself. Two workloads, interleaved target by target, round by round:
#   h2c   GET /?delay_ms=0 (the `/` handler) over h2c
#   grpc  slowapp.v1.Slow/Hello, unary, a 7-byte framed protobuf body (HelloRequest{delay_ms:0})
# each saturated with h2load (C connections x M concurrent streams), recording throughput, the
# proxy's CPU seconds per request (utime+stime, /proc) and its peak RSS under load. Pinned
# layout when there are 2+ CPUs: app and proxy on CPU 0, h2load on CPU 1.
# h2load counts an HTTP 2xx as success; a gRPC error is a 200 too, so "failed" in the gRPC rows
# says nothing about grpc-status (the tests check statuses; a warm-up call checks this set-up).
#
# Usage: bench/h2.sh [--quick] [--rounds N] [--duration SEC] [--profile P] [--no-build]
#                    [--lameduck-bin PATH] [--port-base P] [--out DIR]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
die() { echo "bench/h2: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

QUICK=0 ROUNDS=3 DURATION=8 PROFILE=dist BUILD=1 PORT_BASE=28090 OUT="" LAMEDUCK_BIN=""
CONNS=4 STREAMS=25
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=${2:?}; shift ;;
        --duration) DURATION=${2:?}; shift ;;
        --profile) PROFILE=${2:?}; shift ;;
        --no-build) BUILD=0 ;;
        --lameduck-bin) LAMEDUCK_BIN=${2:?}; BUILD=0; shift ;;
        --port-base) PORT_BASE=${2:?}; shift ;;
        --out) OUT=${2:?}; shift ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "bench/h2: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done
[[ $QUICK == 1 ]] && ROUNDS=1 DURATION=1
for v in ROUNDS DURATION PORT_BASE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench/h2: --${v,,} must be a positive integer" >&2; exit 2; }
done
[[ $PROFILE == dist || $PROFILE == release || $PROFILE == debug ]] || { echo "bench/h2: --profile must be dist, release or debug" >&2; exit 2; }
for tool in h2load nginx haproxy python3 taskset; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || die "missing $tool (bench/run.sh installs it)"
done
PATH=$PATH:/usr/sbin

# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"
bench_build
LAMEDUCK_BIN=${LAMEDUCK_BIN:-$BIN_DIR/lameduck}
[[ -x $LAMEDUCK_BIN && -x $BIN_DIR/slowapp ]] || die "lameduck or slowapp not built in $BIN_DIR"

bench_scratch h2

P_APP=$PORT_BASE P_LAMEDUCK=$((PORT_BASE + 1)) P_ADMIN=$((PORT_BASE + 2))
P_NGINX=$((PORT_BASE + 3)) P_HAPROXY=$((PORT_BASE + 4))
bench_ports_free $P_APP $P_LAMEDUCK $P_ADMIN $P_NGINX $P_HAPROXY

port_of() {
    case $1 in direct) echo "$P_APP" ;; lameduck) echo "$P_LAMEDUCK" ;; nginx) echo "$P_NGINX" ;; haproxy) echo "$P_HAPROXY" ;; esac
}
wait_h2() { # name port
    local deadline=$((SECONDS + 30))
    until h2load -n1 -c1 "http://127.0.0.1:$2/?delay_ms=0" 2>/dev/null | grep -q '1 succeeded'; do
        [[ $SECONDS -lt $deadline ]] || die "$1 does not answer h2c on 127.0.0.1:$2 (see $RAW/$1.log)"
        kill -0 "${PID[$1]}" 2>/dev/null || die "$1 exited at start (see $RAW/$1.log)"
        sleep 0.1
    done
}

# The gRPC request body: a message frame (flag 0, length 2) holding HelloRequest{delay_ms: 0}.
printf '\x00\x00\x00\x00\x02\x08\x00' >"$RAW/hello.grpc"

UP=127.0.0.1:$P_APP
# The app logs each request at info: warn keeps its logging out of every row alike.
start direct env RUST_LOG=warn "$BIN_DIR/slowapp" --listen "$UP" --startup-delay 0s --response-delay 0s --name bench
start lameduck env RUST_LOG=warn "$LAMEDUCK_BIN" --listen "127.0.0.1:$P_LAMEDUCK" \
    --admin-listen "127.0.0.1:$P_ADMIN" --upstream "$UP" --app-probe grpc
render "$BENCH_DIR/nginx-grpc.conf" "$RAW/nginx-grpc.conf" "$P_NGINX" "$UP"
start nginx nginx -p "$RAW" -e "$RAW/nginx-grpc.error.log" -c "$RAW/nginx-grpc.conf"
render "$BENCH_DIR/haproxy-h2.cfg" "$RAW/haproxy-h2.cfg" "$P_HAPROXY" "$UP"
start haproxy haproxy -db -f "$RAW/haproxy-h2.cfg"
TARGETS="direct lameduck nginx haproxy"
for t in $TARGETS; do wait_h2 "$t" "$(port_of "$t")"; done

# The online CPUs, not nproc: run.sh starts this script pinned to the load generator's CPU,
# where nproc says 1 (and the rows came out unpinned).
NCPU=$(getconf _NPROCESSORS_ONLN) LAYOUT=unpinned
if [[ $NCPU -ge 2 ]]; then
    LAYOUT=pinned
    for t in $TARGETS; do for p in $(pids_of "$t"); do taskset -a -p -c 0 "$p" >/dev/null; done; done
    taskset -p -c 1 $$ >/dev/null
fi

run() { # round workload target
    local round=$1 w=$2 t=$3 port f pp up pc0 pc1 max=0 rss hpid
    port=$(port_of "$t") f=$RAW/h2load-$round-$w-$t.txt
    up=$(pids_of direct)
    if [[ $t == direct ]]; then pp=$up; else pp=$(pids_of "$t"); fi
    pc0=$(cpu_ticks $pp)
    if [[ $w == grpc ]]; then
        h2load -c "$CONNS" -m "$STREAMS" -D "$DURATION" -d "$RAW/hello.grpc" \
            -H 'content-type: application/grpc' -H 'te: trailers' \
            "http://127.0.0.1:$port/slowapp.v1.Slow/Hello" >"$f" 2>&1 &
    else
        h2load -c "$CONNS" -m "$STREAMS" -D "$DURATION" "http://127.0.0.1:$port/?delay_ms=0" >"$f" 2>&1 &
    fi
    hpid=$!
    while kill -0 "$hpid" 2>/dev/null; do
        rss=$(rss_kb $pp)
        ((rss > max)) && max=$rss
        sleep 0.25
    done
    wait "$hpid" || die "h2load failed against $t (see $f)"
    pc1=$(cpu_ticks $pp)
    local rps succeeded failed
    rps=$(awk '/^finished in/ {gsub(/,/, ""); print $4; exit}' "$f")
    read -r succeeded failed < <(awk '/^requests:/ {print $8, $10; exit}' "$f")
    echo "{\"round\":$round,\"workload\":\"$w\",\"target\":\"$t\",\"rps\":${rps:-null},\"succeeded\":${succeeded:-null},\"failed\":${failed:-null},\"cpu_s\":$(awk -v a="$pc0" -v b="$pc1" -v t="$TICK" 'BEGIN{print (b-a)/t}'),\"rss_load_kb\":$max}" >>"$SAMPLES"
    log "  r$round $w $t: $rps req/s"
}

log "h2c and gRPC rows: layout $LAYOUT, $CONNS connections x $STREAMS streams, ${DURATION}s x $ROUNDS rounds"
for t in $TARGETS; do h2load -c "$CONNS" -m "$STREAMS" -n 2000 "http://127.0.0.1:$(port_of "$t")/?delay_ms=0" >/dev/null 2>&1 || die "warm-up against $t failed"; done
for w in h2c grpc; do
    for round in $(seq 1 "$ROUNDS"); do
        for t in $TARGETS; do run "$round" "$w" "$t"; done
    done
done

python3 - "$SAMPLES" "$LAYOUT" "$CONNS" "$STREAMS" <<'EOF' | tee "$OUT/table.txt"
import json, statistics, sys
samples = [json.loads(l) for l in open(sys.argv[1])]
layout, conns, streams = sys.argv[2], sys.argv[3], sys.argv[4]
targets = ["direct", "lameduck", "nginx", "haproxy"]
def med(w, t, key):
    vals = [s[key] for s in samples if s["workload"] == w and s["target"] == t and s[key] is not None]
    return statistics.median(vals) if vals else None
def row(label, vals, fmt):
    cells = [(fmt % v) if v is not None else "-" for v in vals]
    print(f"{label:<34}" + "".join(f"{c:>12}" for c in cells))
print(f"HTTP/2 and gRPC ({layout}; {conns} connections x {streams} streams; median of rounds)")
print(f"{'figure':<34}" + "".join(f"{t:>12}" for t in targets))
for w, name in (("h2c", "h2c GET"), ("grpc", "gRPC unary")):
    rps = [med(w, t, "rps") for t in targets]
    row(f"{name}: throughput (req/s)", rps, "%.0f")
    cpu = []
    for t in targets:
        runs = [s for s in samples if s["workload"] == w and s["target"] == t and s["succeeded"]]
        cpu.append(statistics.median(s["cpu_s"] / s["succeeded"] * 1e6 for s in runs) if runs else None)
    row(f"{name}: CPU per request (us)", cpu, "%.1f")
    row(f"{name}: RSS under load (MiB)", [None if med(w, t, "rss_load_kb") is None else med(w, t, "rss_load_kb") / 1024 for t in targets], "%.1f")
    row(f"{name}: failed requests", [sum(s["failed"] or 0 for s in samples if s["workload"] == w and s["target"] == t) for t in targets], "%d")
    n = rps[2]
    row(f"{name}: throughput / nginx", [None if (v is None or not n) else v / n for v in rps], "%.2fx")
    nc = cpu[2]
    row(f"{name}: CPU per request / nginx", [None if (v is None or not nc) else v / nc for v in cpu], "%.2fx")
print("(direct: the app alone; its CPU is the app's. Proxies' CPU is their own, the app's not counted.)")
EOF
log "table: $OUT/table.txt"
