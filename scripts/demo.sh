#!/usr/bin/env bash
# The main job (README's first command): slowapp behind lameduck, one pod's shutdown played
# out: a slow request in flight, SIGTERM, /ready failing at once while a late request is still
# served (with Connection: close), the in-flight request finishing, lameduck draining and
# exiting 0, and only then the app's own shutdown, as its preStop /drain would order it.
# Then the rollout lab: whole rolling restarts under load, with and without lameduck.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step() { echo; echo "==> $*"; }

step "system packages"
need cmake cmake  # pingora-core builds zlib-ng with cmake
need curl curl    # the demo's client
need "nginx-light|nginx" nginx  # the lab's ingress front
need haproxy haproxy            # the lab's router front
install_needed

step "cargo build --release (slowapp, lameduck, lab)"
cargo build --release --locked -p slowapp -p lameduck -p lab
bin=target/release

app_addr=127.0.0.1:9090
data=127.0.0.1:8080
admin=127.0.0.1:9901
app_log=$(mktemp -t slowapp-demo.XXXXXX.log)
ld_log=$(mktemp -t lameduck-demo.XXXXXX.log)
app_pid=
ld_pid=
cleanup() {
    for pid in $ld_pid $app_pid; do
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    done
    rm -f "$app_log" "$ld_log"
}
trap cleanup EXIT

# Waits (at most 10s) until URL answers 2xx; fails with LOG if PID dies first.
wait_ok() {
    local url=$1 pid=$2 log=$3 name=$4
    for _ in $(seq 100); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited before it was ready (is its port in use?):" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$name not ready after 10s" >&2; cat "$log" >&2; exit 1
}

step "slowapp on $app_addr (2 s per request), lameduck in front on $data (admin $admin)"
"$bin/slowapp" --listen "$app_addr" --startup-delay 0s --response-delay 2s --name demo-pod 2>"$app_log" &
app_pid=$!
"$bin/lameduck" --listen "$data" --admin-listen "$admin" --upstream "$app_addr" \
    --shutdown-delay 2s --shutdown-quiet 500ms 2>"$ld_log" &
ld_pid=$!
wait_ok "http://$admin/ready" "$ld_pid" "$ld_log" lameduck
echo "lameduck /ready: $(curl -sS "http://$admin/ready")"

step "a request through lameduck"
curl -sS -i "http://$data/?delay_ms=100"
echo

step "a slow request in flight, then SIGTERM to lameduck (as the kubelet sends it)"
curl -sS -o /dev/null -w '    in-flight request finished: %{http_code} after %{time_total}s\n' "http://$data/" &
curl_pid=$!
sleep 0.3
kill -TERM "$ld_pid"
sleep 0.05
echo "lameduck /ready right after SIGTERM: $(curl -sS -w ' (%{http_code})' "http://$admin/ready")"
echo "a late request from a front that has not heard yet:"
curl -sS -D- -o /dev/null "http://$data/?delay_ms=10" | grep -iE '^(HTTP|connection|x-served-by)' | sed 's/^/    /'
wait "$curl_pid"

step "lameduck drains and exits"
status=0
wait "$ld_pid" || status=$?
ld_pid=
echo "lameduck exited with status $status"
echo "in a pod the app's preStop /drain returns now, and only then does the app get its SIGTERM:"
kill -TERM "$app_pid"
app_status=0
wait "$app_pid" || app_status=$?
app_pid=
echo "slowapp exited with status $app_status"

step "lameduck's log"
cat "$ld_log"
step "slowapp's log"
cat "$app_log"
[[ $status -eq 0 && $app_status -eq 0 ]]

step "the rollout lab: bare, preStop sleep and lameduck pods, rolled through a Service, nginx and HAProxy"
# A few minutes; prints the table and where the timeline pictures are. Exits non-zero if a
# lameduck scenario lost a request.
"$bin/lab"
