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
install_needed

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "all checks passed"
