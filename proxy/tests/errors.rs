//! Bad input and a bad upstream get an answer that says what happened, and lameduck keeps
//! serving.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn upstream_down_is_a_502_that_says_so() {
    let app_addr = free_addr(); // nothing listens
    let ld = Lameduck::start_ready(app_addr, &["--app-probe", "none"]);
    let r = get(ld.data, "/").unwrap();
    assert_eq!(r.status, 502);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        r.text().contains(&app_addr.to_string()),
        "names the upstream: {}",
        r.text()
    );
    assert!(r.text().contains("refused"), "{}", r.text());
    let m = ld.metrics();
    assert_eq!(
        metric(
            &m,
            r#"lameduck_upstream_errors_total{kind="connect_refused"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"lameduck_requests_total{class="5xx",phase="serving"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn upstream_too_slow_is_a_504() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let ld = Lameduck::start_ready(app_addr, &["--upstream-timeout", "200ms"]);
    let r = get(ld.data, "/?delay_ms=3000").unwrap();
    assert_eq!(r.status, 504);
    assert!(r.text().contains("did not answer in time"), "{}", r.text());
    assert_eq!(
        get(ld.data, "/?delay_ms=1").unwrap().status,
        200,
        "still serving"
    );
}

#[test]
fn malformed_request_is_a_400_and_the_proxy_keeps_serving() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let ld = Lameduck::start_ready(app_addr, &[]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send("THIS IS NOT HTTP\r\n\r\n").unwrap();
    assert_eq!(c.read_response().unwrap().status, 400);
    let mut c = Client::connect(ld.data).unwrap();
    c.send("GET / HTTP/1.1\r\nHost: test\r\nContent-Length: banana\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 400);
    assert_eq!(
        get(ld.data, "/?delay_ms=1").unwrap().status,
        200,
        "still serving"
    );
}

#[test]
fn a_client_trickling_its_headers_is_disconnected() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let ld = Lameduck::start_ready(app_addr, &["--client-read-timeout", "1s"]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send("GET / HTTP/1.1\r\nHost: te").unwrap(); // ...and nothing more
    assert!(
        c.closed_by_server(Duration::from_secs(8)),
        "slowloris connection dropped"
    );
    assert_eq!(
        get(ld.data, "/?delay_ms=1").unwrap().status,
        200,
        "still serving"
    );
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(lameduck_bin())
        .args(["--listen", &addr, "--admin-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr} (data plane, --listen)")),
        "{err}"
    );
}
