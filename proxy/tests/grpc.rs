//! gRPC through lameduck: HTTP/2 clients reach the app over h2c (`--upstream-protocol auto`,
//! the default), with trailers, streaming both ways, large messages and many calls multiplexed;
//! an app that is down or breaks a stream off gives the gRPC client UNAVAILABLE with a reason,
//! never a bare 502. Real tonic clients, the real lameduck and slowapp binaries, on loopback.

mod common;

use bytes::Bytes;
use common::*;
use slowapp::proto::{CountRequest, EchoMessage, HelloRequest, SlowClient, MAX_MESSAGE_BYTES};
use testkit::grpc::{channel, runtime};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn client(channel: Channel) -> SlowClient<Channel> {
    SlowClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn hello(delay_ms: u64) -> HelloRequest {
    HelloRequest {
        delay_ms: Some(delay_ms),
        ..Default::default()
    }
}

#[test]
fn unary_streaming_both_ways_and_large_messages_pass_through() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let ld = Lameduck::start_ready(app_addr, &[]);
    runtime().block_on(async {
        let ch = channel(ld.data).await;
        let mut slow = client(ch.clone());

        let response = slow.hello(hello(10)).await.expect("unary Hello");
        assert_eq!(
            response.metadata().get("x-served-by").unwrap(),
            "app-under-test"
        );
        assert_eq!(response.into_inner().message, "Hello World!");

        // Server streaming: every message, then the app's OK trailers (a clean end).
        let mut stream = slow
            .count(CountRequest {
                count: 5,
                delay_ms: Some(5),
            })
            .await
            .expect("Count")
            .into_inner();
        let mut seqs = Vec::new();
        while let Some(m) = stream.message().await.expect("a Count message") {
            seqs.push(m.seq);
        }
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        let trailers = stream.trailers().await.expect("trailers").expect("some");
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.to_str().unwrap()),
            Some("0")
        );

        // Both ways at once: each message comes back while the client is still sending. A
        // channel of one slot makes the client wait for each echo before it sends the next.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut echoed = slow
            .echo(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("Echo")
            .into_inner();
        for i in 0..20u8 {
            tx.send(EchoMessage {
                payload: Bytes::from(vec![i; 100_000]),
            })
            .await
            .unwrap();
            let back = echoed.message().await.unwrap().expect("an echo");
            assert_eq!((back.payload.len(), back.payload[0]), (100_000, i));
        }
        drop(tx);
        assert!(echoed.message().await.unwrap().is_none(), "a clean end");

        // 16 MiB each way.
        let size = 16 * 1024 * 1024;
        let reply = slow
            .hello(HelloRequest {
                delay_ms: Some(0),
                payload: Bytes::from(vec![1u8; size]),
                reply_bytes: size as u64,
            })
            .await
            .expect("a 16 MiB call through lameduck")
            .into_inner();
        assert_eq!(
            (reply.received_bytes, reply.payload.len()),
            (size as u64, size)
        );

        // Many calls at once on one client connection: multiplexed both sides.
        let calls = (0..64).map(|_| {
            let mut slow = client(ch.clone());
            async move { slow.hello(hello(200)).await.map(|r| r.into_inner().seq) }
        });
        let results = futures::future::join_all(calls).await;
        assert!(results.iter().all(|r| matches!(r, Ok(1))), "{results:?}");

        // The standard health service, through lameduck.
        let status = HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: "slowapp.v1.Slow".into(),
            })
            .await
            .expect("Check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);
    });
    assert!(
        ld.proc.find_log("upstream error").is_none(),
        "{}",
        ld.proc.log_text()
    );
}

#[test]
fn app_down_is_unavailable_with_the_reason() {
    let ld = Lameduck::start_ready(free_addr(), &["--app-probe", "none"]);
    let status = runtime().block_on(async {
        client(channel(ld.data).await)
            .hello(hello(0))
            .await
            .expect_err("nothing listens behind lameduck")
    });
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("refused the connection"),
        "{status:?}"
    );
    assert_eq!(
        metric(
            &ld.metrics(),
            "lameduck_upstream_errors_total{kind=\"connect_refused\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn app_dying_mid_stream_is_unavailable_not_a_clean_end() {
    let app_addr = free_addr();
    let mut app = slowapp(app_addr, &[]);
    let ld = Lameduck::start_ready(app_addr, &[]);
    let status = runtime().block_on(async {
        let mut stream = client(channel(ld.data).await)
            .count(CountRequest {
                count: 100,
                delay_ms: Some(100),
            })
            .await
            .expect("Count")
            .into_inner();
        assert_eq!(stream.message().await.unwrap().unwrap().seq, 1);
        app.child.kill().unwrap();
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a stream the app never finished ended cleanly"),
                Err(status) => break status,
            }
        }
    });
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("broke the stream off"),
        "{status:?}"
    );
}

#[test]
fn upstream_protocol_h2c_sends_http1_clients_as_http2_and_http1_keeps_todays_way() {
    let app_addr = free_addr();
    let app = slowapp(app_addr, &[]);
    let h2c = Lameduck::start_ready(app_addr, &["--upstream-protocol", "h2c"]);
    let r = get(h2c.data, "/?delay_ms=1").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "Hello World!"));
    app.wait_log("version=HTTP/2.0");

    // `http1`: an HTTP/2 client's request reaches the app as HTTP/1.1, as before this option,
    // which gRPC cannot use (no trailers): the call fails.
    let http1 = Lameduck::start_ready(app_addr, &["--upstream-protocol", "http1"]);
    let outcome =
        runtime().block_on(async { client(channel(http1.data).await).hello(hello(0)).await });
    assert!(
        outcome.is_err(),
        "gRPC over HTTP/1.1 to the app: {outcome:?}"
    );
    assert!(
        h2c.proc.find_log("upstream error").is_none(),
        "{}",
        h2c.proc.log_text()
    );
}

#[test]
fn bad_upstream_protocol_exits_2_naming_it() {
    let out = std::process::Command::new(lameduck_bin())
        .args(["--upstream-protocol", "h3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream-protocol"));
}

#[test]
fn auto_sends_http2_clients_to_an_http1_only_app_as_http1() {
    // An HTTP/1.1-only app that answers everything `200 hello-h1` (and cannot take h2c).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app_addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if buf[..n].starts_with(b"PRI * HTTP/2.0") {
                        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        return;
                    }
                    let _ =
                        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nhello-h1");
                }
            });
        }
    });
    let ld = Lameduck::start_ready(app_addr, &["--app-probe", "tcp"]);
    let body = runtime().block_on(async {
        use http_body_util::{BodyExt, Empty};
        let stream = tokio::net::TcpStream::connect(ld.data).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get("http://app/x")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.expect("an answer");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap().to_bytes()
    });
    assert_eq!(&body[..], b"hello-h1");
    ld.proc.wait_log("does not speak h2c");
}
