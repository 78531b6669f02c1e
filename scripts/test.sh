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

# The end-to-end rollout test on a real Kubernetes (scripts/e2e.sh, docs/e2e.md), only when a
# cluster answers: CI never brings one up, and a machine without one passes without it.
step "e2e on a real cluster (scripts/e2e.sh), if one is reachable"
if ! command -v kubectl >/dev/null || ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
    echo "     skipped: no cluster is reachable (KUBECONFIG=${KUBECONFIG:-unset}; kubectl version failed)"
elif [[ $(id -u) -ne 0 ]]; then
    echo "     skipped: a cluster is reachable, but building its images with podman needs root"
else
    load=${E2E_LOAD:-}
    context=$(kubectl config current-context 2>/dev/null || true)
    if [[ -z $load && $context == kind-* ]]; then
        load=kind
        export E2E_KIND_CLUSTER=${E2E_KIND_CLUSTER:-${context#kind-}}
    elif [[ -z $load ]] && iptables -w -t nat -S KUBE-SERVICES >/dev/null 2>&1 &&
        [[ -S ${E2E_CTR_SOCKET:-${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}} ]]; then
        load=ctr # this machine is the node, with its containerd socket here
    fi
    if [[ -z $load ]]; then
        echo "     skipped: a cluster is reachable ($context), but how to get images onto its nodes is unknown: set E2E_LOAD=ctr|kind|none, or E2E_LOAD=push with E2E_REGISTRY=host[:port][/path]"
    else
        scripts/e2e.sh --load "$load"
    fi
fi

step "all checks passed"
