//! The whole proxy in the test's own process, through its library API: `lameduck::run` with
//! listeners the test bound and signals the test sends, on a paused clock. Real sockets on
//! loopback, real admin and data planes; only time is virtual, so every duration below is exact
//! and the tests take no real time waiting for windows and timeouts.
//!
//! The black-box suites (shutdown.rs, drain_endpoint.rs, ...) keep the process contract: exit
//! codes, OS signals, logs.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use lameduck::config::RunCommand;
use lameduck::{Listeners, Outcome, Signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

struct InProcess {
    data: SocketAddr,
    admin: SocketAddr,
    signals: mpsc::Sender<Signal>,
    run: JoinHandle<anyhow::Result<Outcome>>,
}

fn loopback() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// Starts lameduck in front of `upstream` with `flags` (parsed as the binary parses them).
fn start(upstream: SocketAddr, flags: &[&str]) -> InProcess {
    let upstream = upstream.to_string();
    let mut argv = vec!["lameduck", "--upstream", &upstream, "--app-probe", "tcp"];
    argv.extend_from_slice(flags);
    let config = RunCommand::try_parse_from(argv)
        .expect("flags parse")
        .run
        .into_config()
        .expect("a valid configuration");
    let listeners = Listeners {
        data: loopback(),
        admin: loopback(),
    };
    let (data, admin) = (
        listeners.data.local_addr().unwrap(),
        listeners.admin.local_addr().unwrap(),
    );
    let (signals, rx) = mpsc::channel(4);
    let run = tokio::spawn(lameduck::run(config, listeners, rx));
    InProcess {
        data,
        admin,
        signals,
        run,
    }
}

/// An app that accepts connections and answers every request 200 after `delay` (virtual).
fn app(delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::from_std(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// GET `path`: the status and body, or the error if the connection broke.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

async fn status(ld: &InProcess) -> serde_json::Value {
    let (_, body) = get(ld.admin, "/status").await.expect("GET /status");
    serde_json::from_str(&body).unwrap()
}

async fn wait_ready(ld: &InProcess) {
    while get(ld.admin, "/ready").await.map(|r| r.0) != Ok(200) {
        tokio::time::sleep(MS(10)).await;
    }
}

fn seconds(v: &serde_json::Value) -> Duration {
    Duration::from_secs_f64(v.as_f64().expect("a number of seconds"))
}

#[tokio::test(start_paused = true)]
async fn drain_endpoint_runs_the_window_and_the_drain_then_waits_for_the_signal() {
    let ld = start(
        app(MS(1)),
        &[
            "--shutdown-delay",
            "5s",
            "--shutdown-quiet",
            "0",
            "--drain-timeout",
            "15s",
        ],
    );
    wait_ready(&ld).await;
    let asked = Instant::now();
    let (code, body) = get(ld.admin, "/drain").await.expect("/drain answers");
    assert_eq!(code, 200);
    assert_eq!(
        Instant::now() - asked,
        MS(5000),
        "answered when drained: the window, exactly"
    );
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["phase"], "drained");
    assert_eq!(answer["shutdown_cause"], "admin /drain");
    assert_eq!(seconds(&answer["phase_seconds"]["lame_duck"]), MS(5000));
    assert_eq!(
        seconds(&answer["phase_seconds"]["draining"]),
        Duration::ZERO
    );
    assert!(
        get(ld.data, "/").await.is_err(),
        "the data listener is closed once drained"
    );

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        !ld.run.is_finished(),
        "a /drain alone does not end the process"
    );
    assert_eq!(status(&ld).await["phase"], "drained");
    ld.signals.send(Signal::Term).await.unwrap();
    assert_eq!(ld.run.await.unwrap().unwrap(), Outcome::Drained);
}

#[tokio::test(start_paused = true)]
async fn requests_in_the_window_keep_it_open_for_the_quiet_period() {
    let ld = start(
        app(MS(1)),
        &[
            "--shutdown-delay",
            "1s",
            "--shutdown-quiet",
            "2s",
            "--shutdown-delay-max",
            "30s",
        ],
    );
    wait_ready(&ld).await;
    let signalled = Instant::now();
    ld.signals.send(Signal::Term).await.unwrap();
    // A front still routing here for 4 s after the signal.
    for _ in 0..8 {
        tokio::time::sleep(MS(500)).await;
        assert_eq!(get(ld.data, "/").await.unwrap(), (200, "ok".into()));
        assert_eq!(status(&ld).await["phase"], "lame_duck");
    }
    let s = status(&ld).await;
    let last = seconds(&s["last_request_after_signal_seconds"]);
    assert_eq!(s["requests_after_signal"], 8);
    assert!(last >= MS(4000), "the last request came 4 s in: {last:?}");
    assert_eq!(ld.run.await.unwrap().unwrap(), Outcome::Drained);
    // The window ended the quiet period after the last arrival (and the drain was empty); the
    // admin plane is gone with the process, so the clock tells. (`last` went through JSON
    // seconds: exact to a microsecond.)
    let took = Instant::now() - signalled;
    assert!(
        took.abs_diff(last + MS(2000)) < Duration::from_micros(1),
        "exited {took:?} after the signal, last arrival {last:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn drain_timeout_cuts_the_request_still_running() {
    let ld = start(
        app(Duration::from_secs(3600)),
        &[
            "--shutdown-delay",
            "1s",
            "--shutdown-quiet",
            "0",
            "--drain-timeout",
            "3s",
        ],
    );
    wait_ready(&ld).await;
    let data = ld.data;
    let slow = tokio::spawn(async move { get(data, "/").await });
    while status(&ld).await["in_flight"] != 1 {
        tokio::time::sleep(MS(10)).await;
    }
    let asked = Instant::now();
    let (_, body) = get(ld.admin, "/drain").await.expect("/drain answers");
    assert_eq!(
        Instant::now() - asked,
        MS(4000),
        "window 1 s + drain timeout 3 s"
    );
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["requests_cut"], 1);
    assert_eq!(seconds(&answer["phase_seconds"]["draining"]), MS(3000));
    assert!(
        slow.await.unwrap().is_err(),
        "the cut request got no answer"
    );
    assert_eq!(status(&ld).await["open_connections"], 0);
}

#[tokio::test(start_paused = true)]
async fn a_second_signal_exits_forced_and_a_signal_before_ready_still_drains() {
    // Nothing listens on the upstream: the app never becomes ready.
    let nowhere = loopback().local_addr().unwrap();
    let ld = start(
        nowhere,
        &["--shutdown-delay", "10s", "--shutdown-delay-max", "20s"],
    );
    assert_eq!(status(&ld).await["phase"], "starting");
    ld.signals.send(Signal::Term).await.unwrap();
    tokio::time::sleep(MS(100)).await;
    assert_eq!(status(&ld).await["phase"], "lame_duck");
    ld.signals.send(Signal::Int).await.unwrap();
    assert_eq!(ld.run.await.unwrap().unwrap(), Outcome::Forced);

    let ld = start(nowhere, &["--shutdown-delay", "100ms"]);
    let t0 = Instant::now();
    ld.signals.send(Signal::Term).await.unwrap();
    assert_eq!(ld.run.await.unwrap().unwrap(), Outcome::Drained);
    assert_eq!(Instant::now() - t0, MS(100));
}
