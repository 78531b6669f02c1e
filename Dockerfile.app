# slowapp, the seed's slow app: the thing lameduck protects in the examples and the lab.
# Same layout as Dockerfile.proxy: build with cargo, run on a distroless image as nonroot.
#
#   docker build -f Dockerfile.app -t slowapp:0.1.0 .
#
# BUILDER_IMAGE, RUNTIME_IMAGE, `--target from-host` (target/image/slowapp) and the stripping
# work as in Dockerfile.proxy.

ARG BUILDER_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS builder
# The workspace includes lameduck, whose pingora-core needs cmake to resolve and build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --profile dist --locked -p slowapp \
    && mkdir -p /out \
    && objcopy --strip-debug target/dist/slowapp /out/slowapp

FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="slowapp" \
      org.opencontainers.image.description="The seed's slow HTTP app: slow /, /ready after a startup delay, graceful shutdown on SIGTERM" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/lameduck"
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/slowapp"]

FROM runtime AS from-host
COPY target/image/slowapp /usr/local/bin/slowapp

# The default target (last): built from source.
FROM runtime AS from-source
COPY --from=builder /out/slowapp /usr/local/bin/slowapp
