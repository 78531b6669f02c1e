#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the suite needs, then checks formatting,
# lints, and runs every test of the workspace. Debug builds, one target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step() { echo "==> $*"; }

step "system packages"
need cmake cmake                # pingora-core builds zlib-ng with cmake
need "nginx-light|nginx" nginx  # the ingress controller in proxy and lab tests
need haproxy haproxy            # the router (OpenShift-style) in proxy and lab tests
need wrk wrk                    # the benchmark smoke run: saturation load
need nghttp2-client h2load      #   fixed-rate load
need python3 python3            #   holding idle connections, the report
need curl curl                  #   waiting for each target to answer
need util-linux taskset         #   pinning to CPUs
need openssl openssl            # validate-k8s.sh: a throwaway certificate for k8s/webhook self-signed
need_python grpc python3-grpcio # a second gRPC client (C-core) in the proxy's HTTP/2 tests
install_needed

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

# The debug lameduck `cargo test` just built; ports and output apart from a developer's own runs.
step "benchmark smoke run (checks the pipeline makes a table; no timings asserted)"
smoke=target/bench/test-smoke
rm -rf "$smoke"
bench/run.sh --quick --profile debug --no-build --port-base 28180 --out "$smoke" >/dev/null
grep -Eq '^figure +direct +lameduck +nginx +haproxy$' "$smoke/table.txt" &&
    grep -Eq '^throughput, saturated \(req/s\)( +[0-9.]+){4}$' "$smoke/table.txt" ||
    { echo "benchmark smoke run: no throughput row for all four targets in $smoke/table.txt" >&2; exit 1; }
grep -Eq '^gRPC unary: throughput \(req/s\)( +[0-9.]+){4}$' "$smoke/table.txt" ||
    { echo "benchmark smoke run: no gRPC throughput row for all four targets in $smoke/table.txt" >&2; exit 1; }

step "all checks passed"
