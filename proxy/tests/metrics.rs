//! `/metrics` in Prometheus text format: present from the start and moving with traffic and
//! phases.

mod common;

use common::*;

#[test]
fn metrics_are_present_and_move() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let ld = Lameduck::start_ready(app_addr, &["--shutdown-delay", "2s"]);

    let m = ld.metrics();
    for name in [
        "lameduck_requests_total",
        "lameduck_request_duration_seconds_bucket",
        "lameduck_in_flight_requests",
        "lameduck_open_connections",
        "lameduck_phase",
        "lameduck_app_ready",
        "lameduck_upstream_errors_total",
        "lameduck_requests_after_shutdown_seconds_bucket",
        "lameduck_shutdown_phase_seconds",
        "lameduck_requests_cut_total",
        "lameduck_build_info",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }
    assert_eq!(metric(&m, r#"lameduck_phase{phase="serving"}"#), Some(1.0));
    assert_eq!(metric(&m, r#"lameduck_phase{phase="starting"}"#), Some(0.0));

    for _ in 0..3 {
        assert_eq!(get(ld.data, "/?delay_ms=1").unwrap().status, 200);
    }
    let m = ld.metrics();
    assert_eq!(
        metric(
            &m,
            r#"lameduck_requests_total{class="2xx",phase="serving"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(&m, "lameduck_request_duration_seconds_count"),
        Some(3.0)
    );

    // After the signal: late arrivals are counted by phase and timed since the signal.
    let admin = ld.admin;
    let _drain = in_background(move || get(admin, "/drain"));
    ld.wait_phase("lame_duck");
    assert_eq!(get(ld.data, "/?delay_ms=1").unwrap().status, 200);
    let m = ld.metrics();
    assert_eq!(
        metric(&m, r#"lameduck_phase{phase="lame_duck"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"lameduck_requests_total{class="2xx",phase="lame_duck"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "lameduck_requests_after_shutdown_seconds_count"),
        Some(1.0)
    );
    assert!(metric(&m, r#"lameduck_shutdown_phase_seconds{phase="lame_duck"}"#).is_some());
}
