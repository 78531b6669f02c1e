#!/usr/bin/env bash
# Builds the two container images and runs them as a pod, then stops the pod the way the kubelet
# does and checks that no request was lost:
#
#   1. podman (with runc and catatonit, ulimits lowered in a private containers.conf) is installed
#      if missing (scripts/images.sh, shared with scripts/e2e.sh); no image can be pulled here, so
#   2. the runtime base is made locally, distroless-style, from Debian's libc6 and libgcc-s1
#      packages (what gcr.io/distroless/cc-debian12 holds, plus a nonroot user 65532), and
#   3. the binaries are built on the host (`cargo build --profile dist --locked`, stripped as the
#      Dockerfiles strip them) and copied in with `--target from-host`: the Dockerfiles' own builder
#      stage needs a Rust image, which cannot be pulled here;
#   4. both images are built from Dockerfile.proxy and Dockerfile.app with those build args;
#   5. a pod runs slowapp and lameduck with the Kubernetes manifests' security settings
#      (nonroot, read-only root filesystem, all capabilities dropped, no new privileges), on the
#      host network so that everything stays on one loopback address, 127.0.77.1;
#   6. a slow request goes in through lameduck; then, as the kubelet does with the manifests in
#      k8s/: lameduck gets SIGTERM (`podman stop`) while the app's preStop calls lameduck's
#      /drain; a new request arrives during the lame-duck window; once /drain answers the app
#      gets its SIGTERM (`podman stop`); both requests must complete with 200 and both
#      containers exit 0.
#
# --from-source instead runs the Dockerfiles' own builder stage (cargo build --locked inside the
# build): its BUILDER_IMAGE is then a local Debian bookworm made with debootstrap (gcc, make,
# binutils), and since no Rust image can be pulled, the host's Rust toolchain and crate cache are
# bind-mounted into the build (`podman build -v`: read-only toolchain, the crate cache); the
# builder's own `apt-get install cmake` runs for real. Slow: a full dist-profile build per image.
#
# Not part of CI by default: it installs podman, needs root, and builds dist-profile binaries (minutes
# on a cold target/). Run it by hand: `sudo scripts/podman-pod-test.sh [--from-source]`.
# Exit: 0 pass; 1 a check failed, or no container engine could be set up (said on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/images.sh

FROM_SOURCE=0
case ${1:-} in
--from-source) FROM_SOURCE=1 ;;
"") ;;
*) echo "usage: $0 [--from-source]" >&2; exit 2 ;;
esac

IP=127.0.77.1
DATA_PORT=18080
ADMIN_PORT=19901
APP_PORT=19090
POD=lameduck-pod-test
VERSION=$IMAGE_VERSION
WORK=$IMAGES_WORK

die() { echo "podman-pod-test: FAIL: $*" >&2; exit 1; }
step() { echo "==> $*"; }
started=$(date +%s)

step "container engine"
[[ $(id -u) -eq 0 ]] || die "needs root (rootful podman with runc); no container engine set up, nothing tested"
need curl curl
if ((FROM_SOURCE)); then images_engine --from-source; else images_engine; fi
images_base
if ((FROM_SOURCE)); then images_builder; else images_binaries lameduck slowapp; fi

step "images"
images_build Dockerfile.proxy "localhost/lameduck:$VERSION"
images_build Dockerfile.app "localhost/slowapp:$VERSION"
for image in lameduck slowapp; do
    ref=localhost/$image:$VERSION
    size=$(podman image inspect --format '{{.Size}}' "$ref")
    user=$(podman image inspect --format '{{.Config.User}}' "$ref")
    [[ $user == 65532:65532 ]] || die "$ref runs as '$user', not 65532:65532"
    if podman run --rm --entrypoint /bin/sh "$ref" -c true >/dev/null 2>&1; then
        die "$ref has a shell"
    fi
    echo "ok   $ref: $((size / 1000000)) MB ($size bytes), user $user, no shell"
done

cleanup() { podman pod rm -f "$POD" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

step "pod $POD on $IP"
# The manifests' securityContext: nonroot (the images' user), read-only root, no capabilities.
secure=(--read-only --cap-drop ALL --security-opt no-new-privileges)
podman pod create --name "$POD" --network host >/dev/null
podman run -d --pod "$POD" --name "$POD-app" "${secure[@]}" "localhost/slowapp:$VERSION" \
    --listen "$IP:$APP_PORT" --startup-delay 1s --response-delay 3s --shutdown-timeout 10s >/dev/null
podman run -d --pod "$POD" --name "$POD-lameduck" "${secure[@]}" "localhost/lameduck:$VERSION" \
    --listen "$IP:$DATA_PORT" --admin-listen "$IP:$ADMIN_PORT" --upstream "$IP:$APP_PORT" \
    --shutdown-delay 2s --shutdown-quiet 500ms --shutdown-delay-max 5s --drain-timeout 15s \
    --termination-grace-period 45s >/dev/null

admin=http://$IP:$ADMIN_PORT
data=http://$IP:$DATA_PORT
# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 100 ms until it succeeds.
wait_for() {
    local what=$1 deadline=$(($(date +%s) + $2))
    shift 2
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) < deadline)) || {
            podman logs "$POD-lameduck" >&2 || true
            podman logs "$POD-app" >&2 || true
            die "timed out waiting for $what"
        }
        sleep 0.1
    done
}
wait_for "lameduck /ready 200" 30 curl -fsS "$admin/ready"
echo "ok   lameduck /ready 200 (the app is ready behind it)"

in_flight() { curl -fsS "$admin/metrics" | grep -q "^lameduck_in_flight_requests $1\$"; }

# A slow request (3 s in the app), in flight when the shutdown starts.
curl -sS -o "$WORK/early.body" -w '%{http_code}' "$data/" >"$WORK/early.code" 2>"$WORK/early.err" &
early=$!
wait_for "the slow request to be in flight" 10 in_flight 1

for c in lameduck app; do
    pid=$(podman inspect --format '{{.State.Pid}}' "$POD-$c")
    echo "     $c peak RSS so far: $(awk '/^VmHWM/ {print $2, $3}' "/proc/$pid/status")"
done

step "shutdown, as the kubelet does it"
t0=$(date +%s%N)
# lameduck (no preStop) gets SIGTERM at once...
podman stop --time 45 "$POD-lameduck" >"$WORK/stop-lameduck.out" 2>&1 &
stop_lameduck=$!
wait_for "/ready 503 after SIGTERM" 5 bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' $admin/ready) == 503 ]]"
echo "ok   /ready 503 $((($(date +%s%N) - t0) / 1000000)) ms after podman stop"
# ...while the app's preStop calls /drain, which answers once lameduck has drained. (The kubelet
# starts both at once; waiting for the SIGTERM first makes it the shutdown's cause every run.)
curl -sS -o "$WORK/drain.body" -w '%{http_code}' "$admin/drain" >"$WORK/drain.code" 2>"$WORK/drain.err" &
drain=$!
# A request that arrives after SIGTERM, as one does while endpoint removal propagates.
curl -sS -o "$WORK/late.body" -w '%{http_code}' "$data/" >"$WORK/late.code" 2>"$WORK/late.err" &
late=$!
wait "$drain" || true
t_drained=$(date +%s%N)
[[ $(cat "$WORK/drain.code") == 200 ]] || die "/drain answered $(cat "$WORK/drain.code") $(cat "$WORK/drain.err")"
echo "ok   /drain answered 200 after $(((t_drained - t0) / 1000000)) ms: $(tr -d '\n' <"$WORK/drain.body")"
# The preStop returned: now the app gets its SIGTERM.
podman stop --time 15 "$POD-app" >/dev/null
wait "$stop_lameduck" || true
t_stopped=$(date +%s%N)
wait "$early" || true
wait "$late" || true

failures=0
for req in early late; do
    code=$(cat "$WORK/$req.code")
    if [[ $code == 200 ]]; then
        echo "ok   $req request: 200 $(tr -d '\n' <"$WORK/$req.body" | head -c 60)"
    else
        echo "FAIL $req request: '$code' $(cat "$WORK/$req.err")" >&2
        failures=$((failures + 1))
    fi
done
for c in lameduck app; do
    code=$(podman inspect --format '{{.State.ExitCode}}' "$POD-$c")
    if [[ $code == 0 ]]; then
        echo "ok   $c exited 0"
    else
        echo "FAIL $c exited $code" >&2
        failures=$((failures + 1))
    fi
done
echo "     SIGTERM -> both containers stopped: $(((t_stopped - t0) / 1000000)) ms"
echo "     lameduck's exit summary: $(podman logs "$POD-lameduck" 2>&1 | tail -n 1)"

if ((failures)); then
    podman logs "$POD-lameduck" >&2 || true
    podman logs "$POD-app" >&2 || true
    die "$failures check(s) failed"
fi
echo "podman-pod-test: passed in $(($(date +%s) - started)) s"
