//! What slowapp answers while it serves: the slow `/`, `?delay_ms=N`, `/ready`, `X-Served-By`,
//! POST bodies, h2c, and its logs.

mod common;

use std::time::{Duration, Instant};

use common::{command, get, request, SlowApp};

#[test]
fn root_is_slow_and_says_hello() {
    let app = SlowApp::start(&["--startup-delay", "0s", "--response-delay", "800ms"]);

    let sent = Instant::now();
    let response = get(app.addr, "/").unwrap();
    assert!(
        sent.elapsed() >= Duration::from_millis(800),
        "answered after {:?}, before the response delay",
        sent.elapsed()
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Hello World!");

    // The seed's two log lines, with the same Unix timestamp.
    let start = app.wait_for_log("start ");
    let ts = start
        .split("start ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(ts.parse::<u64>().is_ok(), "timestamp in {start:?}");
    app.wait_for_log(&format!("return {ts}"));
}

#[test]
fn any_path_and_method_but_ready_is_the_slow_handler() {
    let app = SlowApp::start(&["--startup-delay", "0s", "--response-delay", "0s"]);
    for (method, path) in [("GET", "/some/page"), ("PUT", "/"), ("DELETE", "/x?y=1")] {
        let response = request(app.addr, method, path, &[]).unwrap();
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "Hello World!"),
            "{method} {path}"
        );
    }
}

#[test]
fn delay_ms_overrides_the_response_delay_for_one_request() {
    // The default delay is longer than the test's patience: only the override can answer.
    let app = SlowApp::start(&["--startup-delay", "0s", "--response-delay", "10m"]);

    let response = get(app.addr, "/?delay_ms=0").unwrap();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "Hello World!")
    );

    let sent = Instant::now();
    let response = get(app.addr, "/?a=b&delay_ms=700").unwrap();
    assert_eq!(response.status, 200);
    assert!(
        sent.elapsed() >= Duration::from_millis(700),
        "answered after {:?}",
        sent.elapsed()
    );

    let response = get(app.addr, "/?delay_ms=soon").unwrap();
    assert_eq!(response.status, 400);
    assert!(response.text().contains("delay_ms"), "{}", response.text());
}

#[test]
fn ready_answers_ready() {
    // /ready is not slowed down by the response delay.
    let app = SlowApp::start(&["--startup-delay", "0s", "--response-delay", "10m"]);
    let response = get(app.addr, "/ready").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Ready!");
}

#[test]
fn every_response_says_who_served_it() {
    let app = SlowApp::start(&[
        "--startup-delay",
        "0s",
        "--response-delay",
        "0s",
        "--name",
        "pod-a",
    ]);
    for path in ["/", "/ready", "/?delay_ms=nope"] {
        let response = get(app.addr, path).unwrap();
        assert_eq!(response.header("x-served-by"), Some("pod-a"), "{path}");
    }
}

#[test]
fn name_comes_from_the_flag_then_slowapp_name_then_pod_name_then_the_hostname() {
    let served_by = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = command();
        cmd.envs(env.iter().copied());
        let mut all = vec!["--startup-delay", "0s"];
        all.extend_from_slice(args);
        let app = SlowApp::spawn(cmd, &all);
        app.wait_for_log("Start server");
        let response = get(app.addr, "/ready").unwrap();
        response.header("x-served-by").map(str::to_string)
    };

    let both = [("SLOWAPP_NAME", "from-env"), ("POD_NAME", "from-pod")];
    assert_eq!(
        served_by(&both, &["--name", "from-flag"]).as_deref(),
        Some("from-flag")
    );
    assert_eq!(served_by(&both, &[]).as_deref(), Some("from-env"));
    assert_eq!(
        served_by(&[("POD_NAME", "from-pod")], &[]).as_deref(),
        Some("from-pod")
    );

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(served_by(&[], &[]).as_deref(), Some(hostname.trim()));
}

#[test]
fn a_post_body_is_read_to_the_end() {
    let app = SlowApp::start(&["--startup-delay", "0s", "--response-delay", "0s"]);
    let body = vec![b'x'; 300_000];
    let response = request(app.addr, "POST", "/upload", &body).unwrap();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "Hello World!")
    );
    app.wait_for_log("body_bytes=300000");
}

#[test]
fn h2c_with_prior_knowledge_is_served() {
    let app = SlowApp::start(&[
        "--startup-delay",
        "0s",
        "--response-delay",
        "0s",
        "--name",
        "pod-h2",
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, served_by, body) = rt.block_on(async {
        use http_body_util::{BodyExt, Empty};
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(format!("http://{}/", app.addr))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        let status = response.status();
        let served_by = response.headers().get("x-served-by").cloned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, served_by, body)
    });
    assert_eq!(status, 200);
    assert_eq!(served_by.unwrap(), "pod-h2");
    assert_eq!(&body[..], b"Hello World!");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let app = SlowApp::start(&[
        "--startup-delay",
        "0s",
        "--response-delay",
        "0s",
        "--log-format",
        "json",
    ]);
    get(app.addr, "/").unwrap();
    app.wait_for_log("return ");
    for line in app.log() {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["fields"]["message"].is_string(), "{line}");
    }
    let start = app
        .log()
        .into_iter()
        .find(|l| l.contains("Start server"))
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&start).unwrap();
    assert_eq!(value["fields"]["addr"], app.addr.to_string());
}
