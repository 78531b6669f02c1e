//! The shutdown contract (Go's `Server.Shutdown` in the seed): at SIGTERM or SIGINT the listener
//! closes at once, in-flight requests finish, idle connections close, and whatever still runs at
//! `--shutdown-timeout` is cut; the process exits 0 in every case.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;

use common::{get, read_one_response, SlowApp};

#[test]
fn a_request_in_flight_at_sigterm_completes() {
    let mut app = SlowApp::start(&["--startup-delay", "0s", "--shutdown-timeout", "1m"]);
    let addr = app.addr;
    let client = thread::spawn(move || get(addr, "/in-flight?delay_ms=1500"));
    app.wait_for_log(r#"path="/in-flight""#);

    app.signal(libc::SIGTERM);
    app.wait_for_log("stopped accepting");

    let response = client
        .join()
        .unwrap()
        .expect("the in-flight request must be answered");
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "Hello World!")
    );
    assert_eq!(app.wait_exit().code(), Some(0));
    assert!(
        app.log_contains("Graceful shutdown done"),
        "log:\n{}",
        app.log().join("\n")
    );
}

#[test]
fn a_new_connection_after_sigterm_is_refused() {
    // A request that outlives the test keeps the process draining while we knock.
    let mut app = SlowApp::start(&["--startup-delay", "0s", "--shutdown-timeout", "10m"]);
    let addr = app.addr;
    let _client = thread::spawn(move || get(addr, "/long?delay_ms=600000"));
    app.wait_for_log(r#"path="/long""#);

    app.signal(libc::SIGTERM);
    app.wait_for_log("stopped accepting");

    let err = TcpStream::connect(app.addr).expect_err("the listener must be closed after SIGTERM");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(
        app.try_exit().is_none(),
        "still draining: the long request has minutes to go"
    );
}

#[test]
fn idle_keep_alive_connections_are_closed_and_do_not_hold_the_exit() {
    let mut app = SlowApp::start(&[
        "--startup-delay",
        "0s",
        "--response-delay",
        "0s",
        "--shutdown-timeout",
        "10m",
    ]);
    let mut idle = TcpStream::connect(app.addr).unwrap();
    write!(idle, "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_one_response(&mut idle).unwrap().status, 200);

    // SIGINT takes the same path as SIGTERM.
    app.signal(libc::SIGINT);

    // The server closes the idle connection: the next read sees EOF, not a timeout.
    idle.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let err = read_one_response(&mut idle).expect_err("the idle connection must be closed");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");

    // Drained long before the 10m deadline, so it was the drain, not the deadline, that ended it.
    assert_eq!(app.wait_exit().code(), Some(0));
    assert!(
        app.log_contains("Graceful shutdown done"),
        "log:\n{}",
        app.log().join("\n")
    );
    assert!(app.log_contains(r#"signal="SIGINT""#));
}

#[test]
fn a_request_longer_than_the_shutdown_timeout_is_cut_and_the_exit_is_still_0() {
    let mut app = SlowApp::start(&["--startup-delay", "0s", "--shutdown-timeout", "500ms"]);
    let addr = app.addr;
    let client = thread::spawn(move || get(addr, "/too-long?delay_ms=600000"));
    app.wait_for_log(r#"path="/too-long""#);

    app.signal(libc::SIGTERM);
    assert_eq!(
        app.wait_exit().code(),
        Some(0),
        "log:\n{}",
        app.log().join("\n")
    );
    let cut = app.wait_for_log("shutdown timeout reached");
    assert!(cut.contains("cut=1"), "{cut}");

    let outcome = client.join().unwrap();
    assert!(
        outcome.is_err(),
        "the cut request must get no response, got {outcome:?}"
    );
}

#[test]
fn an_h2_request_in_flight_at_sigterm_completes() {
    let mut app = SlowApp::start(&["--startup-delay", "0s", "--shutdown-timeout", "1m"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = app.addr;
    let response = rt.spawn(async move {
        use http_body_util::{BodyExt, Empty};
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("http://{addr}/h2?delay_ms=1500"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    app.wait_for_log(r#"path="/h2""#);

    app.signal(libc::SIGTERM);
    let (status, body) = rt.block_on(response).unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"Hello World!");
    assert_eq!(app.wait_exit().code(), Some(0));
    assert!(app.log_contains("Graceful shutdown done"));
}
