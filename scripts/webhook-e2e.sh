#!/usr/bin/env bash
# The injection webhook on a real cluster (the one ../shared/realk8s brings up, or any other
# whose API server can reach this host's loopback): `lameduck webhook` runs on the host,
# registered by URL with its caBundle, for one namespace only (labelled lameduck.io/inject=enabled
# and selected by name, so no other namespace of a shared cluster is ever sent to it). A slowapp
# Deployment created there must come up injected, serve through lameduck (the Service's named
# targetPort resolves to lameduck's port), and roll (kubectl rollout restart) under load without
# a failed request. Everything it creates is deleted at the end.
#
#   KUBECONFIG=/var/tmp/realk8s/etc/admin.kubeconfig \
#   LAMEDUCK_IMAGE=localhost/lameduck:TAG SLOWAPP_IMAGE=localhost/slowapp:TAG scripts/webhook-e2e.sh
#
# The images must already be in the node's image store (the cluster pulls nothing).
# Exit: 0 injected and no request failed; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${KUBECONFIG:?set KUBECONFIG to the admin kubeconfig of the cluster}"
: "${LAMEDUCK_IMAGE:?set LAMEDUCK_IMAGE to a lameduck image the node has}"
: "${SLOWAPP_IMAGE:?set SLOWAPP_IMAGE to a slowapp image the node has}"
NS=${NS:-lameduck-webhook-e2e}
SECONDS_OF_LOAD=${SECONDS_OF_LOAD:-40}
WORKERS=${WORKERS:-4}
LAMEDUCK=${LAMEDUCK:-target/debug/lameduck}

die() { echo "webhook-e2e: $*" >&2; exit 1; }
[[ -x $LAMEDUCK ]] || die "$LAMEDUCK is missing: cargo build -p lameduck"

work=$(mktemp -d)
pid=
cleanup() {
    kubectl delete mutatingwebhookconfiguration "$NS" --ignore-not-found >/dev/null || true
    kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null || true
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "==> webhook on the host"
"$LAMEDUCK" webhook cert --ip 127.0.0.1 --out-dir "$work/certs" >/dev/null
"$LAMEDUCK" webhook --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --tls-cert "$work/certs/tls.crt" --tls-key "$work/certs/tls.key" \
    --image "$LAMEDUCK_IMAGE" --shutdown-delay 0 >"$work/webhook.log" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q "webhook started" "$work/webhook.log" && break; sleep 0.1; done
line=$(grep "webhook started" "$work/webhook.log") || die "the webhook did not start: $(cat "$work/webhook.log")"
port=$(sed -n 's/.* listen=127.0.0.1:\([0-9]*\) .*/\1/p' <<<"$line")
admin=$(sed -n 's/.* admin=\(127.0.0.1:[0-9]*\) .*/\1/p' <<<"$line")

kubectl apply -f - >/dev/null <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: $NS
webhooks:
- name: namespace.inject.lameduck.io
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  reinvocationPolicy: IfNeeded
  timeoutSeconds: 5
  clientConfig:
    url: https://127.0.0.1:$port/mutate
    caBundle: $(base64 -w0 "$work/certs/ca.crt")
  rules:
  - {operations: ["CREATE"], apiGroups: [""], apiVersions: ["v1"], resources: ["pods"], scope: Namespaced}
  namespaceSelector:
    matchExpressions:
    - {key: lameduck.io/inject, operator: In, values: ["enabled"]}
    - {key: kubernetes.io/metadata.name, operator: In, values: ["$NS"]}
EOF

echo "==> namespace $NS, labelled for injection, with a plain slowapp Deployment"
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $NS
  labels: {lameduck.io/inject: enabled}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: $NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata:
      labels: {app: web}
      annotations:
        lameduck.io/shutdown-delay: 3s
        lameduck.io/shutdown-delay-max: 6s
        lameduck.io/drain-timeout: 5s
        lameduck.io/app-shutdown-budget: 5s
    spec:
      containers:
      - name: web
        image: $SLOWAPP_IMAGE
        imagePullPolicy: Never
        args: ["--listen", "0.0.0.0:9090", "--startup-delay", "1s", "--response-delay", "100ms"]
        ports: [{name: http, containerPort: 9090}]
        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $NS}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
EOF
kubectl -n "$NS" rollout status deploy/web --timeout=180s >/dev/null
containers=$(kubectl -n "$NS" get pods -o jsonpath='{range .items[*]}{.spec.containers[*].name}{"\n"}{end}')
echo "$containers" | sed 's/^/    pod containers: /'
[[ $(grep -c lameduck <<<"$containers") == 2 ]] || die "the pods were not injected"
ports=$(kubectl -n "$NS" get endpointslices -o jsonpath='{.items[*].ports[*].port}')
echo "    EndpointSlice port: $ports"
[[ $ports == 15080 ]] || die "the Service does not reach lameduck's port"

echo "==> rollout restart under load ($WORKERS workers, a new connection per request, ${SECONDS_OF_LOAD}s)"
cip=$(kubectl -n "$NS" get svc web -o jsonpath='{.spec.clusterIP}')
workers=()
for w in $(seq "$WORKERS"); do
    (
        end=$((SECONDS + SECONDS_OF_LOAD))
        while ((SECONDS < end)); do
            curl -s -o /dev/null -m 5 -w '%{http_code}\n' "http://$cip/" || true
        done >"$work/codes.$w"
    ) &
    workers+=($!)
done
sleep 3
kubectl -n "$NS" rollout restart deploy/web >/dev/null
kubectl -n "$NS" rollout status deploy/web --timeout=180s >/dev/null
wait "${workers[@]}"
total=$(cat "$work"/codes.* | wc -l)
ok=$(grep -c '^200$' <(cat "$work"/codes.*) || true)
echo "    requests: $total, 200: $ok, other: $((total - ok))"
curl -s "http://$admin/metrics" | grep '^lameduck_webhook_reviews_total' | sed 's/^/    /'
((total > 0 && ok == total)) || die "$((total - ok)) request(s) failed"
echo "webhook-e2e: injected, served through lameduck, rolled with 0 failed of $total"
