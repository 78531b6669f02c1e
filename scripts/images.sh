# Shared by scripts/podman-pod-test.sh and scripts/e2e.sh: build the project's container images
# with podman, offline (no image can be pulled here). Sourced after scripts/lib.sh; the caller
# defines `die MSG` and `step MSG` and has `set -euo pipefail`.
#
#   images_engine [--from-source]   podman + runc + catatonit (podman's pod infra needs it: a
#                                   Recommends that --no-install-recommends skips) installed,
#                                   a private containers.conf (runc, lowered ulimits), podman info
#   images_base                     the distroless-style runtime base, from Debian's libc6 and
#                                   libgcc-s1 (what gcr.io/distroless/cc-debian12 holds) plus a
#                                   nonroot user 65532, as $BASE_IMAGE
#   images_binaries PKG...          host dist-profile builds of the packages, stripped as the
#                                   Dockerfiles strip them, into target/image/ (--target from-host)
#   images_builder                  instead: the Dockerfiles' own builder stage, with a local
#                                   debootstrap Debian as BUILDER_IMAGE and the host's toolchain
#                                   and crate cache mounted (--target from-source; slow)
#   images_build DOCKERFILE TAG     podman build with the args the two functions above chose

IMAGES_WORK=${IMAGES_WORK:-target/podman}
BASE_IMAGE=localhost/lameduck-runtime-base:bookworm
BUILDER_IMAGE=localhost/lameduck-builder-base:bookworm
IMAGE_VERSION=${IMAGE_VERSION:-0.1.0}
_images_build_args=()

images_engine() {
    need podman podman
    need runc runc
    need catatonit catatonit
    need binutils objcopy
    [[ ${1:-} == --from-source ]] && need debootstrap debootstrap
    install_needed
    mkdir -p "$IMAGES_WORK"
    cat >"$IMAGES_WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
    export CONTAINERS_CONF=$PWD/$IMAGES_WORK/containers.conf
    podman info >"$IMAGES_WORK/podman-info.txt" 2>&1 ||
        die "podman cannot run here (podman info failed; see $IMAGES_WORK/podman-info.txt): no container engine"
    podman --version
}

images_base() {
    step "runtime base image $BASE_IMAGE (Debian libc6 + libgcc-s1, nonroot 65532)"
    local base=$IMAGES_WORK/base
    rm -rf "$base" && mkdir -p "$base/debs" "$base/rootfs"
    (cd "$base/debs" && apt-get download libc6 libgcc-s1 >/dev/null 2>&1) ||
        { apt-get update -qq && (cd "$base/debs" && apt-get download libc6 libgcc-s1 >/dev/null 2>&1); } ||
        die "apt-get download libc6 libgcc-s1 failed"
    local deb
    for deb in "$base"/debs/*.deb; do dpkg-deb -x "$deb" "$base/rootfs"; done
    # Documentation and iconv modules: nothing here uses them.
    rm -rf "$base/rootfs/usr/share" "$base/rootfs/usr/lib/x86_64-linux-gnu/gconv"
    mkdir -p "$base/rootfs/tmp" "$base/rootfs/home/nonroot"
    chmod 1777 "$base/rootfs/tmp"
    chown 65532:65532 "$base/rootfs/home/nonroot"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
        'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$base/rootfs/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$base/rootfs/etc/group"
    tar -C "$base/rootfs" -cf "$base/rootfs.tar" .
    podman import --quiet --change 'USER 65532:65532' "$base/rootfs.tar" "$BASE_IMAGE" >/dev/null
}

images_binaries() {
    step "dist binaries on the host ($*; the profile the Dockerfiles build)"
    local args=() pkg
    for pkg in "$@"; do args+=(-p "$pkg"); done
    cargo build --profile dist --locked "${args[@]}"
    mkdir -p target/image
    for pkg in "$@"; do
        objcopy --strip-debug "target/dist/$pkg" "target/image/$pkg"
    done
    _images_build_args=(--target from-host)
}

images_builder() {
    step "builder base image $BUILDER_IMAGE (debootstrap bookworm; host toolchain mounted)"
    local rootfs=$IMAGES_WORK/builder-rootfs
    if [[ ! -x $rootfs/usr/bin/gcc ]]; then
        rm -rf "$rootfs"
        debootstrap --variant=minbase --include=gcc,libc6-dev,make,binutils,ca-certificates \
            bookworm "$rootfs" http://deb.debian.org/debian >"$IMAGES_WORK/debootstrap.log" 2>&1 ||
            die "debootstrap failed (see $IMAGES_WORK/debootstrap.log)"
    fi
    tar -C "$rootfs" -cf "$IMAGES_WORK/builder-rootfs.tar" .
    # The layout of the official rust images, whose toolchain lives in /usr/local.
    podman import --quiet \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$IMAGES_WORK/builder-rootfs.tar" "$BUILDER_IMAGE" >/dev/null
    local rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
    local cargo_home=${CARGO_HOME:-$HOME/.cargo}
    [[ -d $rustup_home/toolchains && -x $cargo_home/bin/cargo ]] ||
        die "no rustup toolchain in $rustup_home / $cargo_home to mount into the builder"
    # Crates come from the host's cache: fetch them first (a no-op when already there).
    cargo fetch --locked >/dev/null
    _images_build_args=(--network host
        -v "$rustup_home:/usr/local/rustup:ro" -v "$cargo_home/bin:/usr/local/cargo/bin:ro"
        -v "$cargo_home/registry:/usr/local/cargo/registry"
        --build-arg BUILDER_IMAGE="$BUILDER_IMAGE" --target from-source)
}

images_build() { # images_build DOCKERFILE TAG
    local t0=$SECONDS
    podman build --quiet -f "$1" "${_images_build_args[@]}" --build-arg RUNTIME_IMAGE="$BASE_IMAGE" \
        --build-arg VERSION="$IMAGE_VERSION" -t "$2" . >"$IMAGES_WORK/build.log" 2>&1 ||
        { tail -n 30 "$IMAGES_WORK/build.log" >&2; die "podman build -f $1 failed"; }
    echo "     built $2 in $((SECONDS - t0)) s"
}
