#!/usr/bin/env bash
# scripts/e2e.sh: rolling restarts under load on a real Kubernetes, every request counted.
#
# Runs against whatever cluster KUBECONFIG (or kubectl's default) names, and touches nothing
# outside its own namespaces (lameduck-e2e-<scenario>), which it deletes at the end. For each
# scenario (scripts/e2e/<name>/, kustomize overlays of the shipped k8s/ manifests; one with an
# inject.args file is rendered, then passed through `lameduck inject` with those flags):
#   1. applies it with the images this script built and loaded, waits for the rollout;
#   2. starts the lab's open-loop load generator (`lab loadgen`, Dockerfile.lab) as a Pod aimed at
#      the Service's ClusterIP: fresh and keep-alive connections, GET and POST, short and 5 s
#      requests (or, with --traffic, gRPC calls or WebSocket messages on long-lived
#      connections); it stops when its stdin (a `kubectl attach -i`) closes;
#   3. runs `kubectl rollout restart` N times, each followed by `rollout status` and a wait for the
#      old pods to be gone, while watching the pods and EndpointSlices;
#   4. brings the records back (`kubectl logs`) with the cluster's Events.
# Then `lab e2e-report` prints the lab's table and writes summary.json, and per scenario run.json
# and timeline.svg (pod phases from the real pods' status, and every request).
#
# Exit: 0 every lameduck scenario lost nothing and every miswired one lost something (the test's
# teeth); 1 otherwise, or the run failed; 2 a bad flag. docs/e2e.md says more.
#
#   scripts/e2e.sh --load ctr [--ctr-socket PATH]   import into a containerd node on this machine
#   scripts/e2e.sh --load kind [--kind-cluster NAME]
#   scripts/e2e.sh --load push REGISTRY            podman push to REGISTRY (the nodes pull from it)
#   scripts/e2e.sh --load none                     the images are on the nodes already
# Options: --scenarios a,b,...  --restarts N (3)  --rate R (80)  --out DIR (target/e2e, or
#          target/e2e-KIND for --traffic KIND)  --teeth-warn-only (a miswired scenario that
#          loses nothing only warns)
#          --traffic http|grpc-unary|grpc-stream|websocket (http): what the load sends (lab
#          loadgen --load; not to be confused with --load, how the images reach the nodes)
# Needs root for podman (the images are built as scripts/podman-pod-test.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
source scripts/lib.sh
source scripts/images.sh
# The binaries images_binaries builds (the dist profile): the same lameduck runs inject and check
# here as in the image.
BIN=$REPO/target/dist

ALL_SCENARIOS=(bare prestop-sleep lameduck lameduck-native lameduck-no-drain injected)
LOAD=${E2E_LOAD:-}
REGISTRY=${E2E_REGISTRY:-}
CTR_SOCKET=${E2E_CTR_SOCKET:-${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}}
KIND_CLUSTER=${E2E_KIND_CLUSTER:-kind}
SCENARIOS=${E2E_SCENARIOS:-$(IFS=,; echo "${ALL_SCENARIOS[*]}")}
RESTARTS=${E2E_RESTARTS:-3}
RATE=${E2E_RATE:-80}
OUT=${E2E_OUT:-}
TRAFFIC=${E2E_TRAFFIC:-http}
TEETH_WARN_ONLY=
LOAD_MAX=20m # the load generator's own cap, should the attach that stops it be lost

die() { echo "e2e: FAIL: $*" >&2; exit 1; }
usage() { echo "e2e: $*" >&2; sed -n '22,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
step() { echo "==> $*"; }
stamp() { date +%s.%N; }

while (($#)); do
    case $1 in
    --load) LOAD=${2:-}; shift 2 || usage "--load needs ctr, kind, push REGISTRY or none"
        if [[ $LOAD == push ]]; then REGISTRY=${1:-}; shift || true; fi ;;
    --ctr-socket) CTR_SOCKET=${2:?}; shift 2 ;;
    --kind-cluster) KIND_CLUSTER=${2:?}; shift 2 ;;
    --scenarios) SCENARIOS=${2:?}; shift 2 ;;
    --restarts) RESTARTS=${2:?}; shift 2 ;;
    --rate) RATE=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --traffic) TRAFFIC=${2:-}; shift 2 || usage "--traffic needs http, grpc-unary, grpc-stream or websocket" ;;
    --teeth-warn-only) TEETH_WARN_ONLY=--teeth-warn-only; shift ;;
    -h | --help) usage "rolling restarts under load on a real cluster" ;;
    *) usage "unknown flag $1" ;;
    esac
done
case $LOAD in
ctr | kind | none) ;;
push) [[ -n $REGISTRY ]] || usage "--load push needs a REGISTRY (host[:port][/path])" ;;
"") usage "--load is required: ctr, kind, push REGISTRY or none" ;;
*) usage "--load $LOAD: not ctr, kind, push or none" ;;
esac
[[ $RESTARTS =~ ^[1-9][0-9]?$ ]] || usage "--restarts $RESTARTS: not a number from 1 to 99"
[[ $RATE =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage "--rate $RATE: not a number"
case $TRAFFIC in
http | grpc-unary | grpc-stream | websocket) ;;
*) usage "--traffic $TRAFFIC: not http, grpc-unary, grpc-stream or websocket" ;;
esac
if [[ -z $OUT ]]; then
    # One directory per kind of traffic, so a gRPC run does not overwrite the HTTP one.
    if [[ $TRAFFIC == http ]]; then OUT=target/e2e; else OUT=target/e2e-$TRAFFIC; fi
fi
IFS=, read -ra WANT <<<"$SCENARIOS"
for s in "${WANT[@]}"; do
    [[ -d scripts/e2e/$s ]] || usage "--scenarios: unknown scenario $s (known: ${ALL_SCENARIOS[*]})"
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
started=$SECONDS

step "cluster"
command -v kubectl >/dev/null || die "kubectl is not installed"
version_json=$(kubectl version -o json --request-timeout=10s 2>"$OUT/kubectl-version.err") ||
    die "no cluster answers (kubectl version: $(tail -n 1 "$OUT/kubectl-version.err"))"
server_minor=$(sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' <<<"$version_json" | tail -n 1)
server_git=$(sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' <<<"$version_json" | tail -n 1)
[[ -n $server_minor ]] || die "cannot read the server's version from kubectl version"
echo "     server $server_git ($(kubectl config current-context 2>/dev/null || echo "no context"))"

step "images"
[[ $(id -u) -eq 0 ]] || die "needs root (rootful podman builds the images)"
images_engine
images_base
images_binaries lameduck slowapp lab
declare -A IMAGE
for pair in lameduck:Dockerfile.proxy slowapp:Dockerfile.app lameduck-lab:Dockerfile.lab; do
    name=${pair%%:*}
    images_build "${pair#*:}" "localhost/$name:$IMAGE_VERSION"
    # Tagged by content: a node that has an older build under the same tag cannot serve it
    # (imagePullPolicy IfNotPresent, the default for a tag other than latest).
    id=$(podman image inspect --format '{{.Id}}' "localhost/$name:$IMAGE_VERSION")
    tag=e2e-${id:0:12}
    if [[ $LOAD == push ]]; then ref=$REGISTRY/$name:$tag; else ref=localhost/$name:$tag; fi
    podman tag "localhost/$name:$IMAGE_VERSION" "$ref"
    IMAGE[$name]=$ref
    echo "     $name: $ref"
done

step "load images ($LOAD)"
for name in "${!IMAGE[@]}"; do
    ref=${IMAGE[$name]}
    tar=$IMAGES_WORK/$name.tar
    case $LOAD in
    ctr | kind)
        rm -f "$tar"
        podman save --quiet --format docker-archive -o "$tar" "$ref"
        if [[ $LOAD == ctr ]]; then
            command -v ctr >/dev/null || die "ctr is not installed (apt-get install containerd)"
            ctr -a "$CTR_SOCKET" -n k8s.io images import "$tar" >/dev/null ||
                die "ctr -a $CTR_SOCKET -n k8s.io images import $tar failed"
        else
            command -v kind >/dev/null || die "kind is not installed"
            kind load image-archive "$tar" --name "$KIND_CLUSTER" >/dev/null ||
                die "kind load image-archive $tar --name $KIND_CLUSTER failed"
        fi ;;
    push) podman push --quiet "$ref" >/dev/null || die "podman push $ref failed" ;;
    none) ;;
    esac
    echo "     $ref"
done

NAMESPACES=()
WATCHERS=()
cleanup() {
    local pid ns
    for pid in "${WATCHERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for ns in "${NAMESPACES[@]}"; do
        kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# wait_gone NS: waits for every pod of the Deployment that is terminating to be gone.
wait_gone() {
    local pods
    pods=$(kubectl -n "$1" get pods -l app=zero-downtime \
        -o jsonpath='{range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name}{" "}{end}')
    [[ -z $pods ]] && return 0
    # shellcheck disable=SC2086 # one name per word
    kubectl -n "$1" wait --for=delete --timeout=180s $(printf 'pod/%s ' $pods) >/dev/null
}

# on_this_node IP: whether this machine is the cluster's node (its kube-proxy NATs here).
on_this_node() {
    [[ $(id -u) -eq 0 ]] && command -v iptables >/dev/null &&
        iptables -w -t nat -S KUBE-SERVICES >/dev/null 2>&1
}

run_scenario() { # run_scenario NAME EXPECT
    local s=$1 expect=$2 ns=lameduck-e2e-$1 dir=$OUT/$1
    rm -rf "$dir" && mkdir -p "$dir/kustomize"
    local rel
    rel=$(realpath --relative-to="$dir/kustomize" "$REPO/scripts/e2e/$s")
    local registry_prefix=localhost
    [[ $LOAD == push ]] && registry_prefix=$REGISTRY
    cat >"$dir/kustomize/kustomization.yaml" <<EOF
# Generated by scripts/e2e.sh: scenario $s in its own namespace, with the images just built.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $ns
resources:
- $rel
images:
- name: lameduck
  newName: $registry_prefix/lameduck
  newTag: ${IMAGE[lameduck]##*:}
- name: slowapp
  newName: $registry_prefix/slowapp
  newTag: ${IMAGE[slowapp]##*:}
patches:
# No Ingress: a cluster's ingress controller must not pick up a test's.
- patch: |-
    \$patch: delete
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    metadata:
      name: zero-downtime
EOF
    kubectl kustomize "$dir/kustomize" >"$dir/rendered.yaml"
    if [[ -f $REPO/scripts/e2e/$s/inject.args ]]; then
        # What a user does with their own manifests: `lameduck inject` (this tree's) over the
        # rendered scenario, its sidecar image the one just built.
        local inject_args=() summary
        mapfile -t inject_args < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$REPO/scripts/e2e/$s/inject.args")
        mv "$dir/rendered.yaml" "$dir/input.yaml"
        "$BIN/lameduck" inject --image "${IMAGE[lameduck]}" "${inject_args[@]}" \
            "$dir/input.yaml" >"$dir/rendered.yaml" 2>"$dir/inject.txt" ||
            die "$s: lameduck inject failed: $(tail -n 1 "$dir/inject.txt")"
        sed 's/^/     /' "$dir/inject.txt"
        summary=$(tail -n 1 "$dir/inject.txt")
        [[ $summary =~ :\ ([0-9]+)\ of\ ([0-9]+)\ workload && ${BASH_REMATCH[1]} -gt 0 &&
            ${BASH_REMATCH[1]} == "${BASH_REMATCH[2]}" ]] ||
            die "$s: lameduck inject left workloads alone ($summary)"
    fi
    "$BIN/lameduck" check --kube-version "1.$server_minor" "$dir/rendered.yaml" \
        >"$dir/check.txt" 2>&1 || true
    echo "     lameduck check --kube-version 1.$server_minor: $(tail -n 1 "$dir/check.txt")"

    NAMESPACES+=("$ns")
    kubectl delete namespace "$ns" --ignore-not-found --wait=true --timeout=180s >/dev/null
    kubectl create namespace "$ns" --save-config >/dev/null
    if [[ $s == lameduck-native ]]; then
        # 1.28: native sidecars only with the SidecarContainers gate; an API server without it
        # drops restartPolicy from init containers, which a server-side dry run shows.
        local policy
        policy=$(kubectl apply --dry-run=server -f "$dir/rendered.yaml" -o \
            jsonpath='{range .items[?(@.kind=="Deployment")]}{.spec.template.spec.initContainers[0].restartPolicy}{end}' 2>/dev/null || true)
        if [[ $policy != Always ]]; then
            echo "     SKIP $s: this API server (1.$server_minor) drops restartPolicy: Always from init containers (native sidecars need 1.28 with the SidecarContainers gate, or 1.29+)"
            kubectl delete namespace "$ns" --wait=false >/dev/null
            return 0
        fi
    fi
    kubectl apply -f "$dir/rendered.yaml" >"$dir/apply.txt"
    kubectl -n "$ns" rollout status deploy/zero-downtime --timeout=300s >/dev/null ||
        die "$s: the first rollout did not complete (kubectl -n $ns get pods)"
    local ip
    ip=$(kubectl -n "$ns" get service zero-downtime -o jsonpath='{.spec.clusterIP}')
    [[ -n $ip ]] || die "$s: the Service has no ClusterIP"
    if on_this_node; then
        # A SYN sent before kube-proxy's rules exist leaves an un-NATed conntrack entry that later
        # connections from the same source port would hit: wait for the rule, drop such entries.
        local deadline=$((SECONDS + 60))
        until iptables -w -t nat -S KUBE-SERVICES 2>/dev/null | grep -q -- "-d $ip/32"; do
            ((SECONDS < deadline)) || die "$s: kube-proxy never installed a rule for $ip"
            sleep 0.2
        done
        conntrack -D -d "$ip" >/dev/null 2>&1 || true
    fi

    kubectl -n "$ns" get pods -l app=zero-downtime -w -o json >"$dir/pods.json" 2>"$dir/pods.err" &
    WATCHERS+=($!)
    kubectl -n "$ns" get endpointslices -w -o json --show-managed-fields >"$dir/endpointslices.json" 2>"$dir/endpointslices.err" &
    WATCHERS+=($!)

    cat >"$dir/loadgen.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: loadgen
  namespace: $ns
  labels:
    app: lameduck-e2e-loadgen
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  containers:
  - name: loadgen
    image: ${IMAGE[lameduck-lab]}
    args: [loadgen, --target, "$ip:80", --load, $TRAFFIC, --rate, "$RATE", --duration, $LOAD_MAX, --stop-on-stdin-eof]
    # Stopped by closing its stdin: the e2e's \`kubectl attach -i\` ends when the rollouts have.
    stdin: true
    stdinOnce: true
    resources:
      requests:
        cpu: 100m
        memory: 64Mi
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
EOF
    kubectl apply -f "$dir/loadgen.yaml" >/dev/null
    kubectl -n "$ns" wait --for=condition=Ready pod/loadgen --timeout=120s >/dev/null ||
        die "$s: the load generator did not start (kubectl -n $ns describe pod loadgen)"
    rm -f "$dir/stdin.fifo" && mkfifo "$dir/stdin.fifo"
    kubectl -n "$ns" attach -i loadgen -c loadgen <"$dir/stdin.fifo" >/dev/null 2>"$dir/attach.log" &
    local attach=$!
    exec 7>"$dir/stdin.fifo"
    # Warm-up: the load runs on settled pods first (a measurement window, not a wait for a state).
    sleep 5
    kill -0 "$attach" 2>/dev/null || die "$s: kubectl attach to the load generator ended early: $(tail -n 3 "$dir/attach.log")"
    : >"$dir/rollouts.txt"
    local n
    for ((n = 1; n <= RESTARTS; n++)); do
        echo "start $n $(stamp)" >>"$dir/rollouts.txt"
        kubectl -n "$ns" rollout restart deploy/zero-downtime >/dev/null
        kubectl -n "$ns" rollout status deploy/zero-downtime --timeout=300s >/dev/null ||
            die "$s: rollout $n did not complete"
        echo "complete $n $(stamp)" >>"$dir/rollouts.txt"
        wait_gone "$ns" || die "$s: the old pods of rollout $n did not go within 180 s"
        echo "     rollout $n done, old pods gone"
    done
    # Tail: requests right after the last old pod left count too.
    sleep 5
    exec 7>&-
    wait "$attach" || true
    kubectl -n "$ns" wait --for=jsonpath='{.status.phase}'=Succeeded pod/loadgen --timeout=90s >/dev/null ||
        die "$s: the load generator did not finish (kubectl -n $ns logs loadgen)"
    kubectl -n "$ns" logs loadgen -c loadgen >"$dir/loadgen.json"
    kubectl -n "$ns" get events -o json >"$dir/events.json"
    local pid
    for pid in "${WATCHERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    WATCHERS=()
    kubectl delete namespace "$ns" --wait=true --timeout=180s >/dev/null ||
        echo "     note: namespace $ns still terminating"
    REPORT_RUNS+=(--run "$s:$expect:$dir")
}

expect_of() {
    case $1 in
    lameduck | lameduck-native | injected) echo lossless ;;
    bare | lameduck-no-drain) echo lossy ;;
    *) echo any ;;
    esac
}

REPORT_RUNS=()
for s in "${WANT[@]}"; do
    step "scenario $s ($(expect_of "$s")): $RESTARTS rollouts at $RATE req/s, $TRAFFIC"
    run_scenario "$s" "$(expect_of "$s")"
done
((${#REPORT_RUNS[@]})) || die "no scenario ran"

step "report (server $server_git, $RESTARTS rollouts per scenario, $RATE req/s, $TRAFFIC)"
rc=0
"$BIN/lab" e2e-report --out "$OUT" --front kube-proxy $TEETH_WARN_ONLY "${REPORT_RUNS[@]}" || rc=$?
echo "Timelines: $OUT/<scenario>/timeline.svg; every request and event: $OUT/<scenario>/run.json"
echo "e2e: $((SECONDS - started)) s, exit $rc"
exit "$rc"
