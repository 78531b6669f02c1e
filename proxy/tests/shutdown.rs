//! The shutdown contract: lame duck, then drain, then exit — with slowapp as the real upstream.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn app_and_lameduck(extra: &[&str]) -> (Proc, Lameduck) {
    let app_addr = free_addr();
    let app = slowapp(app_addr, &[]);
    let ld = Lameduck::start_ready(app_addr, extra);
    (app, ld)
}

#[test]
fn sigterm_fails_readiness_at_once_but_new_connections_are_still_served() {
    let (_app, ld) = app_and_lameduck(&["--shutdown-delay", "3s"]);
    assert_eq!(get(ld.admin, "/ready").unwrap().status, 200);

    ld.proc.sigterm();
    wait_until("/ready to fail after SIGTERM", DEADLINE, || {
        get(ld.admin, "/ready")
            .map(|r| r.status == 503)
            .unwrap_or(false)
    });
    let ready = get(ld.admin, "/ready").unwrap();
    assert!(ready.text().contains("shutting down"), "{}", ready.text());
    assert_eq!(ld.phase(), "lame_duck");

    // A front that has not heard of the removal yet opens a new connection: it is served,
    // and told to reconnect for the next request.
    let r = get(ld.data, "/?delay_ms=10").expect("served during the lame-duck window");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello World!");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        get(ld.admin, "/live").unwrap().status,
        200,
        "/live stays 200 while shutting down"
    );
}

#[test]
fn keepalive_connection_gets_connection_close_in_the_window() {
    let (_app, ld) = app_and_lameduck(&["--shutdown-delay", "3s"]);
    let mut c = Client::connect(ld.data).unwrap();
    let before = c.get("/?delay_ms=1").unwrap();
    assert_eq!(before.header("connection"), Some("keep-alive"));

    // A request already in flight when the signal comes is answered with Connection: close.
    c.send("GET /?delay_ms=500 HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    wait_until("the request to be in flight", DEADLINE, || {
        ld.status()["in_flight"] == 1
    });
    ld.proc.sigterm();
    let during = c.read_response().unwrap();
    assert_eq!(during.status, 200);
    assert_eq!(during.header("connection"), Some("close"));
    assert!(
        c.closed_by_server(DEADLINE),
        "connection closed after the response"
    );
}

#[test]
fn idle_keepalive_connection_is_closed_when_draining_begins() {
    let (_app, ld) = app_and_lameduck(&["--shutdown-delay", "500ms"]);
    let mut c = Client::connect(ld.data).unwrap();
    assert_eq!(c.get("/?delay_ms=1").unwrap().status, 200);

    // /drain rather than SIGTERM, so lameduck stays up to be asked afterwards.
    let admin = ld.admin;
    let _drain = in_background(move || get(admin, "/drain"));
    ld.wait_phase("lame_duck");
    assert!(
        c.closed_by_server(DEADLINE),
        "idle keep-alive connection closed"
    );
    // Closed by the drain, not when the window opened (that races with a client's POST).
    assert_ne!(ld.phase(), "lame_duck");
    let m = ld.metrics();
    assert_eq!(
        metric(&m, "lameduck_idle_connections_closed_total"),
        Some(1.0)
    );
}

#[test]
fn window_stays_open_while_requests_arrive_and_ends_after_the_quiet_period() {
    let (_app, ld) = app_and_lameduck(&[
        "--shutdown-delay",
        "300ms",
        "--shutdown-quiet",
        "400ms",
        "--shutdown-delay-max",
        "20s",
    ]);
    // Begin with /drain rather than SIGTERM: lameduck then stays up once drained, so its
    // /status can be read afterwards.
    let admin = ld.admin;
    let drain = in_background(move || get(admin, "/drain"));
    ld.wait_phase("lame_duck");
    // Keep sending, as fronts with slow endpoint propagation would, well past the minimum.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        assert_eq!(get(ld.data, "/?delay_ms=1").unwrap().status, 200);
        assert_eq!(
            ld.phase(),
            "lame_duck",
            "window closed while requests kept arriving"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Silence: the window ends on its own, long before the 20s cap.
    assert_eq!(drain.join().unwrap().unwrap().status, 200);
    assert_eq!(ld.phase(), "drained");
    let status = ld.status();
    let last = status["last_request_after_signal_seconds"]
        .as_f64()
        .unwrap();
    let lame = status["phase_seconds"]["lame_duck"].as_f64().unwrap();
    assert!(
        lame >= last + 0.4,
        "window {lame}s must outlast the last arrival {last}s by the quiet period"
    );
    assert!(lame < 20.0);
}

#[test]
fn window_never_exceeds_the_max() {
    let (_app, ld) = app_and_lameduck(&[
        "--shutdown-delay",
        "200ms",
        "--shutdown-quiet",
        "10s",
        "--shutdown-delay-max",
        "1s",
    ]);
    let admin = ld.admin;
    let drain = in_background(move || get(admin, "/drain"));
    ld.wait_phase("lame_duck");
    assert_eq!(get(ld.data, "/?delay_ms=1").unwrap().status, 200);
    // The quiet period alone would keep the window open 10s after that request.
    assert_eq!(drain.join().unwrap().unwrap().status, 200);
    let lame = ld.status()["phase_seconds"]["lame_duck"].as_f64().unwrap();
    assert!(
        (0.9..5.0).contains(&lame),
        "lame-duck window lasted {lame}s, cap is 1s"
    );
}

#[test]
fn draining_refuses_new_connections_while_in_flight_requests_complete() {
    let (_app, mut ld) = app_and_lameduck(&["--shutdown-delay", "200ms"]);
    let data = ld.data;
    let slow = in_background(move || get(data, "/?delay_ms=1500"));
    wait_until("the slow request to be in flight", DEADLINE, || {
        ld.status()["in_flight"] == 1
    });

    ld.proc.sigterm();
    ld.wait_phase("draining");
    assert!(
        std::net::TcpStream::connect(ld.data).is_err(),
        "new connections are refused once draining"
    );
    assert_eq!(
        ld.status()["in_flight"],
        1,
        "the slow request is still running"
    );

    let r = slow
        .join()
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello World!");
    let status = ld.proc.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "drained and signalled: exit 0");
    let summary = ld.proc.wait_log("lameduck exiting");
    assert!(summary.contains("requests_cut=0"), "{summary}");
}

#[test]
fn drain_timeout_cuts_what_is_left_and_counts_it() {
    let (_app, mut ld) =
        app_and_lameduck(&["--shutdown-delay", "100ms", "--drain-timeout", "300ms"]);
    let data = ld.data;
    let slow = in_background(move || get(data, "/?delay_ms=5000"));
    wait_until("the slow request to be in flight", DEADLINE, || {
        ld.status()["in_flight"] == 1
    });

    ld.proc.sigterm();
    let status = ld.proc.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0));
    assert!(
        slow.join().unwrap().is_err(),
        "the request past the drain timeout was cut"
    );
    ld.proc.wait_log("drain timeout: cutting what is left");
    let summary = ld.proc.wait_log("lameduck exiting");
    assert!(summary.contains("requests_cut=1"), "{summary}");
}

#[test]
fn second_signal_exits_at_once_with_non_zero() {
    let (_app, mut ld) =
        app_and_lameduck(&["--shutdown-delay", "10s", "--shutdown-delay-max", "20s"]);
    ld.proc.sigterm();
    ld.wait_phase("lame_duck");
    ld.proc.signal(libc::SIGINT);
    let status = ld.proc.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(1));
    ld.proc.wait_log("second signal");
}

#[test]
fn sigterm_before_the_app_is_ready_still_drains_and_exits_zero() {
    let app_addr = free_addr(); // nothing listens here: the app never becomes ready
    let mut ld = Lameduck::start(app_addr, &["--shutdown-delay", "100ms"]);
    assert_eq!(ld.phase(), "starting");
    ld.proc.sigterm();
    assert_eq!(ld.proc.wait_exit(DEADLINE).code(), Some(0));
}
