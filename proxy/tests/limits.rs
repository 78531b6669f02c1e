//! Resource limits, as a contract: clients that hold connections (idle, slow, or simply many)
//! never take the admin plane the kubelet probes, and the data plane serves again as soon as
//! they go. Every bound here is a real one (a real fd limit, real sockets), not a model.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// A tiny app that answers every request with `ok` (keep-alive).
fn ok_app() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut pending = Vec::new();
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        if conn
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn an_idle_or_silent_admin_connection_is_closed() {
    let ld = Lameduck::start_ready(ok_app(), &["--app-probe", "none"]);
    let mut silent = Client::connect(ld.admin).unwrap();
    assert!(
        silent.closed_by_server(DEADLINE),
        "a connection that never sends a head is closed"
    );
    let mut idle = Client::connect(ld.admin).unwrap();
    idle.send("GET /live HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(idle.read_response().unwrap().status, 200);
    assert!(idle.closed_by_server(DEADLINE), "and so is an idle one");
}

#[test]
fn the_admin_plane_answers_while_the_data_plane_is_at_its_connection_limit() {
    let ld = Lameduck::start_ready(ok_app(), &["--app-probe", "none", "--max-connections", "4"]);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(ld.data).unwrap())
        .collect();
    wait_until("four connections open", DEADLINE, || {
        metric(&ld.metrics(), "lameduck_open_connections") == Some(4.0)
    });
    // The fifth waits in the backlog: connected, not served.
    let mut fifth = Client::connect_with_timeout(ld.data, Duration::from_millis(300)).unwrap();
    fifth.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(
        fifth.read_response().is_err(),
        "not served while at the limit"
    );
    assert_eq!(
        get(ld.admin, "/ready").unwrap().status,
        200,
        "the probe still answers"
    );
    assert!(metric(&ld.metrics(), "lameduck_connection_limit_reached_total") >= Some(1.0));
    drop(held);
    // ...and it is served as soon as a slot frees.
    let mut fifth_stream = fifth.stream.try_clone().unwrap();
    fifth_stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let r = testkit::read_one_response(&mut fifth_stream).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn with_the_fd_limit_reached_by_clients_the_probe_answers_and_serving_resumes() {
    // 128 file descriptors for the whole process, and 300 clients that connect and say nothing.
    let ld = Lameduck::start_under(
        &["prlimit", "--nofile=128:128"],
        ok_app(),
        &["--app-probe", "none", "--client-read-timeout", "2s"],
    );
    ld.wait_ready();
    let holders: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(ld.data).ok())
        .collect();
    assert!(holders.len() > 100, "the backlog took them");
    for _ in 0..5 {
        assert_eq!(
            get(ld.admin, "/ready").unwrap().status,
            200,
            "the kubelet's probe is answered while clients hold the data plane"
        );
    }
    drop(holders);
    wait_until("the data plane serves again", DEADLINE, || {
        get(ld.data, "/").is_ok_and(|r| r.status == 200)
    });
    let log = ld.proc.log_text();
    assert!(
        log.matches("accept failed").count() < 20,
        "no accept-error storm in the log:\n{log}"
    );
}

/// Both ways an HTTP/2 client is served: to an h2c app (lameduck's h2 path, which sends GOAWAY
/// and counts it) and to an HTTP/1.1 app (pingora's, which closes the connection).
#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    for protocol in ["auto", "http1"] {
        idle_http2_connection_closes(protocol).await;
    }
}

async fn idle_http2_connection_closes(protocol: &'static str) {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;

    let app_addr = free_addr();
    let app = slowapp(app_addr, &[]);
    let ld = tokio::task::spawn_blocking(move || {
        Lameduck::start_ready(
            app_addr,
            &["--idle-timeout", "1s", "--upstream-protocol", protocol],
        )
    })
    .await
    .unwrap();
    let (mut sender, conn) = h2c_connect(ld.data).await;
    let req = hyper::Request::get("http://t/?delay_ms=1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    // Nothing more is sent: lameduck ends the connection once it has been idle 1 s.
    tokio::time::timeout(DEADLINE, conn)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "--upstream-protocol {protocol}: the idle HTTP/2 connection is closed by lameduck"
            )
        })
        .ok();
    let goaways = metric(
        &ld.metrics(),
        r#"lameduck_http2_goaway_total{reason="idle"}"#,
    );
    let want = if protocol == "auto" { 1.0 } else { 0.0 };
    assert_eq!(goaways, Some(want), "--upstream-protocol {protocol}");
    drop((ld, app));
}
