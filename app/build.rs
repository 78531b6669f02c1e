//! Generates the `slowapp.v1.Slow` gRPC server and client with tonic-build's `manual` builder:
//! the service is described here and the messages are prost-derived in `src/proto.rs`, so the
//! build needs no `protoc` (no system package). `proto/slow.proto` is the same contract written
//! out for other languages; the two must agree.

use tonic_build::manual::{Builder, Method, Service};

fn method(
    name: &str,
    route: &str,
    input: &str,
    output: &str,
) -> tonic_build::manual::MethodBuilder {
    Method::builder()
        .name(name)
        .route_name(route)
        .input_type(format!("crate::proto::{input}"))
        .output_type(format!("crate::proto::{output}"))
        .codec_path("tonic_prost::ProstCodec")
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let slow = Service::builder()
        .name("Slow")
        .package("slowapp.v1")
        .method(method("hello", "Hello", "HelloRequest", "HelloReply").build())
        .method(
            method("count", "Count", "CountRequest", "HelloReply")
                .server_streaming()
                .build(),
        )
        .method(
            method("echo", "Echo", "EchoMessage", "EchoMessage")
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .build();
    Builder::new().compile(&[slow]);
}
