//! Test support: start the real `lameduck` and `slowapp` binaries on free loopback ports, talk
//! HTTP/1.1 to them over real sockets, and wait on conditions with deadlines.
//!
//! The generic pieces (the HTTP client, the captured child process, `wait_until`) live in
//! `testkit`, shared with the slowapp suite, and are re-exported here under the names the tests
//! use; what is lameduck's own (its flags, its admin API, metrics) is here.

#![allow(dead_code)] // each test file uses its own subset

pub mod scripted;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

#[allow(unused_imports)] // like the functions: each test file uses its own subset
pub use testkit::{addr_field, get, wait_until, Client, Proc, Response, DEADLINE};

/// A port nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    testkit::free_addr_on(Ipv4Addr::LOCALHOST)
}

pub fn lameduck_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lameduck"))
}

/// slowapp is built by the same workspace test run, next to lameduck.
pub fn slowapp_bin() -> PathBuf {
    let p = lameduck_bin().with_file_name("slowapp");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` (the test script does)",
        p.display()
    );
    p
}

/// slowapp on a free port, with fast test defaults for the flags `extra` does not set.
pub fn slowapp(addr: SocketAddr, extra: &[&str]) -> Proc {
    let defaults = [
        ("--listen", addr.to_string()),
        ("--startup-delay", "0s".to_string()),
        ("--response-delay", "50ms".to_string()),
        ("--name", "app-under-test".to_string()),
    ];
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.push(flag.to_string());
            args.push(value);
        }
    }
    Proc::spawn("slowapp", slowapp_bin(), &args)
}

/// A lameduck with its data and admin ports, in front of `upstream`.
pub struct Lameduck {
    pub proc: Proc,
    pub data: SocketAddr,
    pub admin: SocketAddr,
}

impl Lameduck {
    /// Starts lameduck with short test timings; `extra` flags come last and win.
    pub fn start(upstream: SocketAddr, extra: &[&str]) -> Lameduck {
        Lameduck::start_under(&[], upstream, extra)
    }

    /// [`Lameduck::start`] as the argument of `wrapper` (e.g. `prlimit --nofile=128`).
    #[allow(dead_code)] // not every test binary uses it
    pub fn start_under(wrapper: &[&str], upstream: SocketAddr, extra: &[&str]) -> Lameduck {
        // Port 0, and the ports lameduck bound read back from its start-up line: a port found
        // free beforehand can be taken by another test before lameduck binds it.
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.to_string(),
            "--app-probe-interval",
            "50ms",
            "--shutdown-delay",
            "300ms",
            "--shutdown-quiet",
            "0",
            "--shutdown-delay-max",
            "5s",
            "--drain-timeout",
            "5s",
            "--log-format",
            "text",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = match wrapper.split_first() {
            None => Proc::spawn("lameduck", lameduck_bin(), &args),
            Some((program, rest)) => {
                let mut all: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
                all.push(lameduck_bin().display().to_string());
                all.extend(args);
                Proc::spawn("lameduck", PathBuf::from(program), &all)
            }
        };
        let started = proc.wait_log("lameduck started");
        let (data, admin) = (
            addr_field(&started, "listen"),
            addr_field(&started, "admin"),
        );
        Lameduck { proc, data, admin }
    }

    /// Starts lameduck and waits until it reports ready.
    pub fn start_ready(upstream: SocketAddr, extra: &[&str]) -> Lameduck {
        let ld = Lameduck::start(upstream, extra);
        ld.wait_ready();
        ld
    }

    pub fn wait_ready(&self) {
        wait_until("lameduck /ready to answer 200", DEADLINE, || {
            get(self.admin, "/ready")
                .map(|r| r.status == 200)
                .unwrap_or(false)
        });
    }

    pub fn status(&self) -> serde_json::Value {
        let r = get(self.admin, "/status").expect("GET /status");
        serde_json::from_slice(&r.body).expect("/status is JSON")
    }

    pub fn phase(&self) -> String {
        self.status()["phase"].as_str().unwrap().to_string()
    }

    pub fn wait_phase(&self, phase: &str) {
        wait_until(&format!("phase {phase}"), DEADLINE, || {
            get(self.admin, "/status")
                .ok()
                .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
                .is_some_and(|v| v["phase"] == phase)
        });
    }

    pub fn metrics(&self) -> String {
        String::from_utf8(get(self.admin, "/metrics").expect("GET /metrics").body).unwrap()
    }
}

/// The value of one metric series, e.g. `lameduck_requests_total{class="2xx",phase="serving"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs `f` on its own thread, so a test can have a request in flight while it acts.
pub fn in_background<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(f)
}

/// The sending half of an h2c client connection with empty request bodies.
#[allow(dead_code)] // not every test binary uses it
pub type H2Sender =
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>;

/// An HTTP/2 prior-knowledge (h2c) client connection to `addr`: the request sender, and the
/// connection's task, which ends when the server closes the connection.
#[allow(dead_code)] // not every test binary uses it
pub async fn h2c_connect(
    addr: SocketAddr,
) -> (H2Sender, tokio::task::JoinHandle<hyper::Result<()>>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c prior-knowledge handshake");
    (sender, tokio::spawn(conn))
}
