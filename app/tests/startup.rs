//! The startup delay: nothing listens until it is over, then `Start server` is logged and the
//! app serves. A pod deleted during the delay exits 0 without ever serving.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{command, get, SlowApp};

#[test]
fn nothing_listens_during_the_startup_delay() {
    // A delay far longer than the test: whatever the machine's speed, it cannot be over yet.
    let mut app = SlowApp::spawn(command(), &["--startup-delay", "10m"]);
    app.wait_for_log("before binding");

    let err =
        TcpStream::connect(app.addr).expect_err("slowapp must not listen during its startup delay");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(!app.log_contains("Start server"));

    // Deleted while still starting: it exits 0 at once, never having served.
    app.signal(libc::SIGTERM);
    let status = app.wait_exit();
    assert_eq!(status.code(), Some(0), "log:\n{}", app.log().join("\n"));
    assert!(app.log_contains("shutdown signal during the startup delay"));
    assert!(!app.log_contains("Start server"));
}

#[test]
fn serves_once_the_startup_delay_is_over() {
    let delay = Duration::from_millis(1500);
    let spawned = Instant::now();
    let app = SlowApp::spawn(
        command(),
        &["--startup-delay", "1500ms", "--response-delay", "0s"],
    );

    app.wait_for_log("Start server");
    // A lower bound only: it can be late on a slow machine, never early.
    assert!(
        spawned.elapsed() >= delay,
        "bound after {:?}, before the {delay:?} delay",
        spawned.elapsed()
    );

    let lines = app.log();
    let waiting = lines
        .iter()
        .position(|l| l.contains("before binding"))
        .expect("a line about the delay");
    let started = lines
        .iter()
        .position(|l| l.contains("Start server"))
        .unwrap();
    assert!(waiting < started, "log:\n{}", lines.join("\n"));

    let response = get(app.addr, "/ready").expect("GET /ready after Start server");
    assert_eq!(response.status, 200);
}
