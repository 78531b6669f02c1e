# bench/common.sh: what bench/run.sh and bench/h2.sh share, sourced by both: building the
# binaries, the scratch directory, the port check, starting and stopping the targets, and
# reading a target's CPU and memory from /proc (no fork per sample, so sampling does not
# disturb what it measures).
#
# The sourcing script sets REPO, PROFILE, BUILD, PORT_BASE, OUT (may be empty) and defines
# die/log; it gets BIN_DIR, OUT, RAW, SAMPLES, TICK and the functions below.

# Builds lameduck and slowapp (unless --no-build) and sets BIN_DIR.
bench_build() {
    BIN_DIR=$REPO/target/$PROFILE
    if [[ $BUILD == 1 ]]; then
        log "building lameduck and slowapp ($PROFILE)"
        local flag=()
        [[ $PROFILE == release ]] && flag=(--release)
        (cd "$REPO" && cargo build -q "${flag[@]}" -p lameduck -p slowapp) || die "cargo build failed"
    fi
}

# Makes the scratch directory: OUT (default target/bench/<name>-<time>), RAW, SAMPLES.
bench_scratch() { # name
    OUT=${OUT:-$REPO/target/bench/$1-$(date +%Y%m%d-%H%M%S)}
    mkdir -p "$OUT/raw"
    OUT=$(cd "$OUT" && pwd)
    RAW=$OUT/raw
    SAMPLES=$OUT/samples.jsonl
    : >"$SAMPLES"
}

# Fails when any of the ports is taken on 127.0.0.1.
bench_ports_free() { # ports...
    local p
    for p in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            die "port 127.0.0.1:$p is taken; choose others with --port-base"
        fi
    done
}

# A config from a template: @DIR@ the scratch dir, @PORT@ the listen port, @UPSTREAM@ the app.
render() { # template out port upstream
    sed -e "s|@DIR@|$RAW|g" -e "s|@PORT@|$3|g" -e "s|@UPSTREAM@|$4|g" "$1" >"$2"
}

# --- processes: every target started is stopped when the script exits ----------------------------
declare -A PID # target -> main pid
STARTED=()
cleanup() {
    local p
    for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${STARTED[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # target command...: runs it in the background, its output in $RAW/<target>.log
    local t=$1
    shift
    "$@" >"$RAW/$t.log" 2>&1 &
    PID[$t]=$!
    STARTED+=($!)
}

# Every pid of a target: nginx is a master and its worker, the others one process.
pids_of() {
    local main=${PID[$1]} kids
    kids=$(cat "/proc/$main/task/$main/children" 2>/dev/null || true)
    echo "$main" $kids
}

# CPU ticks (utime+stime, all threads) of the given pids.
cpu_ticks() {
    local total=0 p s f
    for p in "$@"; do
        s=$(<"/proc/$p/stat") || die "process $p is gone"
        s=${s##*) }
        read -r -a f <<<"$s"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# Resident set size in kB, summed over the given pids.
rss_kb() {
    local total=0 p k v _
    for p in "$@"; do
        while read -r k v _; do
            [[ $k == VmRSS: ]] && total=$((total + v)) && break
        done <"/proc/$p/status"
    done
    echo "$total"
}
TICK=$(getconf CLK_TCK)
