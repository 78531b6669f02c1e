//! lameduck owns `/ready`: ready only while it is Serving and the app is ready. Requests that
//! arrive before the app is ready are held, then forwarded.

mod common;

use common::*;

#[test]
fn readiness_follows_the_app() {
    let app_addr = free_addr();
    let mut app = slowapp(app_addr, &["--startup-delay", "700ms"]);
    let ld = Lameduck::start(app_addr, &[]);

    let r = get(ld.admin, "/ready").unwrap();
    assert_eq!(r.status, 503, "not ready before the app listens");
    assert!(r.text().contains("app"), "the body says why: {}", r.text());
    assert_eq!(ld.phase(), "starting");

    ld.wait_ready();
    assert_eq!(ld.phase(), "serving");
    assert_eq!(metric(&ld.metrics(), "lameduck_app_ready"), Some(1.0));

    // The app dies: /ready follows, while lameduck itself keeps running and serving.
    app.child.kill().unwrap();
    app.child.wait().unwrap();
    wait_until("/ready to fail once the app is gone", DEADLINE, || {
        get(ld.admin, "/ready")
            .map(|r| r.status == 503)
            .unwrap_or(false)
    });
    assert_eq!(ld.phase(), "serving");
    assert_eq!(get(ld.admin, "/live").unwrap().status, 200);
}

#[test]
fn early_requests_are_held_then_forwarded() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &["--startup-delay", "800ms"]);
    let ld = Lameduck::start(app_addr, &["--startup-hold", "10s"]);
    assert_eq!(ld.phase(), "starting");

    let r = get(ld.data, "/?delay_ms=1").expect("held, not refused");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello World!");
    assert_eq!(
        metric(&ld.metrics(), "lameduck_requests_held_total"),
        Some(1.0)
    );
}

#[test]
fn held_past_the_startup_hold_gets_503_with_retry_after() {
    let app_addr = free_addr(); // the app never comes up
    let ld = Lameduck::start(app_addr, &["--startup-hold", "300ms"]);
    let r = get(ld.data, "/").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.text().contains("not ready"), "{}", r.text());
    assert_eq!(
        metric(&ld.metrics(), "lameduck_requests_held_timeout_total"),
        Some(1.0)
    );
}

#[test]
fn serve_mode_keeps_ready_through_the_window() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let ld = Lameduck::start_ready(
        app_addr,
        &["--readiness-on-shutdown", "serve", "--shutdown-delay", "3s"],
    );
    let admin = ld.admin;
    let _drain = in_background(move || get(admin, "/drain"));
    ld.wait_phase("lame_duck");
    assert_eq!(get(ld.admin, "/ready").unwrap().status, 200);
}

#[test]
fn tcp_and_none_probes() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    Lameduck::start_ready(app_addr, &["--app-probe", "tcp"]);
    // `none`: ready with nothing behind it.
    Lameduck::start_ready(free_addr(), &["--app-probe", "none"]);
}

#[test]
fn grpc_probe_asks_the_standard_health_service() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &["--startup-delay", "1s"]);
    // The server as a whole (`""`), then a named service: both SERVING in slowapp.
    let ld = Lameduck::start(app_addr, &["--app-probe", "grpc"]);
    assert_eq!(ld.phase(), "starting", "nothing listens yet");
    ld.wait_ready();
    let named = Lameduck::start_ready(app_addr, &["--app-probe", "grpc:slowapp.v1.Slow"]);
    assert_eq!(metric(&named.metrics(), "lameduck_app_ready"), Some(1.0));

    // A service the app does not know is not ready, and the log says what the app answered.
    let unknown = Lameduck::start(app_addr, &["--app-probe", "grpc:no.such.Service"]);
    unknown.proc.wait_log("NotFound");
    let r = get(unknown.admin, "/ready").unwrap();
    assert_eq!(r.status, 503);
    assert!(r.text().contains("grpc:no.such.Service"), "{}", r.text());
    assert_eq!(unknown.phase(), "starting");
}

#[test]
fn grpc_probe_fails_against_an_http1_only_app() {
    // An HTTP/1.1-only server that answers anything with 200 (ready for the http probe); it
    // cannot speak h2c, so the gRPC probe must not pass.
    let app_addr = free_addr();
    let listener = std::net::TcpListener::bind(app_addr).unwrap();
    let _answerer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let ld = Lameduck::start(app_addr, &["--app-probe", "grpc"]);
    ld.proc.wait_log("app probe failing");
    assert_eq!(get(ld.admin, "/ready").unwrap().status, 503);
}
