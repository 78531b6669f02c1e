//! slowapp speaks gRPC on its one port: the `slowapp.v1.Slow` service (unary, server streaming,
//! bidirectional) with the `/` handler's delay knob, and the standard `grpc.health.v1.Health`.
//! Real tonic clients over h2c against the real binary; HTTP on the same port keeps working.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use slowapp::proto::{CountRequest, EchoMessage, HelloRequest, SlowClient, MAX_MESSAGE_BYTES};
use testkit::grpc::{channel, runtime};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

async fn slow_client(addr: SocketAddr) -> SlowClient<Channel> {
    SlowClient::new(channel(addr).await)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

#[test]
fn unary_hello_honours_the_delay_knob_and_names_the_pod() {
    let app = SlowApp::start(&[
        "--startup-delay",
        "0s",
        "--response-delay",
        "30s",
        "--name",
        "pod-g",
    ]);
    runtime().block_on(async {
        let mut client = slow_client(app.addr).await;
        // The default delay is 30 s: only the per-call knob lets this test finish.
        let response = client
            .hello(HelloRequest {
                delay_ms: Some(20),
                ..Default::default()
            })
            .await
            .expect("Hello");
        assert_eq!(
            response.metadata().get("x-served-by").unwrap(),
            "pod-g",
            "the pod's name is metadata too"
        );
        let reply = response.into_inner();
        assert_eq!(reply.message, "Hello World!");
        assert_eq!(reply.served_by, "pod-g");
        assert_eq!(reply.seq, 1);
    });
    app.wait_for_log("delay_ms=20");
    // HTTP on the same port, unaffected.
    let r = get(app.addr, "/ready").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "Ready!"));
}

#[test]
fn server_streaming_count_and_bidirectional_echo() {
    let app = SlowApp::start(&["--startup-delay", "0s", "--response-delay", "10ms"]);
    runtime().block_on(async {
        let mut client = slow_client(app.addr).await;
        let mut stream = client
            .count(CountRequest {
                count: 4,
                delay_ms: None,
            })
            .await
            .expect("Count")
            .into_inner();
        let mut seqs = Vec::new();
        while let Some(reply) = stream.message().await.expect("a stream message") {
            seqs.push(reply.seq);
        }
        assert_eq!(
            seqs,
            [1, 2, 3, 4],
            "every message, in order, then a clean OK end"
        );

        let outgoing = tokio_stream::iter((0..3u8).map(|i| EchoMessage {
            payload: Bytes::from(vec![i; 1000]),
        }));
        let mut echoed = client.echo(outgoing).await.expect("Echo").into_inner();
        let mut got = Vec::new();
        while let Some(m) = echoed.message().await.expect("an echoed message") {
            got.push((m.payload.len(), m.payload[0]));
        }
        assert_eq!(got, [(1000, 0), (1000, 1), (1000, 2)]);
    });
}

#[test]
fn sixteen_mib_messages_both_ways() {
    let app = SlowApp::start(&["--startup-delay", "0s", "--response-delay", "0s"]);
    runtime().block_on(async {
        let mut client = slow_client(app.addr).await;
        let size = 16 * 1024 * 1024;
        let reply = client
            .hello(HelloRequest {
                delay_ms: None,
                payload: Bytes::from(vec![7u8; size]),
                reply_bytes: size as u64,
            })
            .await
            .expect("a 16 MiB Hello")
            .into_inner();
        assert_eq!(reply.received_bytes, size as u64);
        assert_eq!(reply.payload.len(), size);

        let too_big = client
            .hello(HelloRequest {
                reply_bytes: 1 << 40,
                ..Default::default()
            })
            .await
            .expect_err("an absurd reply size is refused");
        assert_eq!(too_big.code(), tonic::Code::InvalidArgument);
    });
}

#[test]
fn health_says_serving_and_not_found_for_unknown_services() {
    let app = SlowApp::start(&["--startup-delay", "0s"]);
    runtime().block_on(async {
        let mut health = HealthClient::new(channel(app.addr).await);
        for service in ["", "slowapp.v1.Slow"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.to_string(),
                })
                .await
                .unwrap_or_else(|e| panic!("Check({service:?}): {e}"))
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".to_string(),
            })
            .await
            .expect_err("an unknown service is not reported as serving");
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    });
}

#[test]
fn a_stream_in_flight_at_sigterm_runs_to_its_end() {
    let mut app = SlowApp::start(&[
        "--startup-delay",
        "0s",
        "--response-delay",
        "200ms",
        "--shutdown-timeout",
        "20s",
    ]);
    let rt = runtime();
    let mut stream = rt.block_on(async {
        let mut client = slow_client(app.addr).await;
        let mut stream = client
            .count(CountRequest {
                count: 5,
                delay_ms: None,
            })
            .await
            .expect("Count")
            .into_inner();
        let first = stream.message().await.unwrap().expect("the first message");
        assert_eq!(first.seq, 1);
        stream
    });
    app.signal(libc::SIGTERM);
    app.wait_for_log("stopped accepting");
    let rest = rt.block_on(async {
        let mut seqs = Vec::new();
        while let Some(reply) = stream.message().await.expect("the stream is not cut") {
            seqs.push(reply.seq);
        }
        seqs
    });
    assert_eq!(rest, [2, 3, 4, 5]);
    assert!(app.wait_exit().success());
    let done = app.wait_for_log("Graceful shutdown done");
    assert!(done.contains("cut=0"), "{done}");
}
