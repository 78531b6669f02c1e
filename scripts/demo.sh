#!/usr/bin/env bash
# The main job (README's first command). For now: build the release binaries, run slowapp on
# 127.0.0.1:9090, send it two requests, show what it answered and logged, and stop it with
# SIGTERM the way the kubelet would. lameduck goes in front of it in a later step (marked below).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step() { echo; echo "==> $*"; }

step "system packages"
need cmake cmake  # pingora-core builds zlib-ng with cmake
need curl curl    # the demo's client
install_needed

step "cargo build --release (slowapp, lameduck)"
cargo build --release --locked -p slowapp -p lameduck
bin=target/release

addr=127.0.0.1:9090
log=$(mktemp -t slowapp-demo.XXXXXX.log)
app_pid=
cleanup() {
    if [[ -n $app_pid ]] && kill -0 "$app_pid" 2>/dev/null; then kill -KILL "$app_pid"; fi
    rm -f "$log"
}
trap cleanup EXIT

step "slowapp --listen $addr --startup-delay 0s --response-delay 200ms"
"$bin/slowapp" --listen "$addr" --startup-delay 0s --response-delay 200ms --name demo-pod 2>"$log" &
app_pid=$!

# Wait for /ready, at most 10s; fail with slowapp's log if it dies or never gets there.
for _ in $(seq 100); do
    if curl -fsS -o /dev/null "http://$addr/ready" 2>/dev/null; then break; fi
    if ! kill -0 "$app_pid" 2>/dev/null; then
        echo "slowapp exited before it was ready (is $addr in use?):" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -fsS -o /dev/null "http://$addr/ready" || { echo "slowapp not ready after 10s" >&2; cat "$log" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# LAMEDUCK GOES HERE (lead): start lameduck in front of slowapp and send the requests below to
# lameduck's data port instead of slowapp directly. Until then the requests go straight to the app.
# ---------------------------------------------------------------------------------------------
target=$addr

step "two requests to http://$target/"
for i in 1 2; do
    echo "--- request $i"
    curl -sS -i "http://$target/"
    echo
done

step "SIGTERM to slowapp (pid $app_pid)"
kill -TERM "$app_pid"
status=0
wait "$app_pid" || status=$?
app_pid=
echo "slowapp exited with status $status"

step "slowapp's log"
cat "$log"
exit "$status"
