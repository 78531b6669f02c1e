//! Test support: start the real `lameduck` and `slowapp` binaries on free loopback ports, talk
//! HTTP/1.1 to them over real sockets, and wait on conditions with deadlines.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(10);

/// A port nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().unwrap()
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

/// Polls `cond` until it holds or the deadline passes.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process whose stderr is captured line by line; killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    name: &'static str,
}

impl Proc {
    pub fn spawn(name: &'static str, bin: PathBuf, args: &[String]) -> Proc {
        let mut child = Command::new(bin)
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Proc { child, log, name }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.name);
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "{} did not exit within {deadline:?}; log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn wait_log(&self, needle: &str) -> String {
        let mut found = String::new();
        wait_until(
            &format!("{} to log {needle:?}", self.name),
            DEADLINE,
            || match self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                Some(l) => {
                    found = l.clone();
                    true
                }
                None => false,
            },
        );
        found
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        let data = free_addr();
        let admin = free_addr();
        let mut args: Vec<String> = [
            "--listen",
            &data.to_string(),
            "--admin-listen",
            &admin.to_string(),
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
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn("lameduck", lameduck_bin(), &args);
        let mut ld = Lameduck { proc, data, admin };
        wait_until("lameduck's admin port to accept", DEADLINE, || {
            assert!(
                ld.proc.is_running(),
                "lameduck exited at start:\n{}",
                ld.proc.log_text()
            );
            TcpStream::connect(admin).is_ok()
        });
        ld
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

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let mut c = Client::connect(addr)?;
    c.send(&format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    ))?;
    c.read_response()
}

/// A raw HTTP/1.1 connection, so tests control keep-alive and see exactly what comes back.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(DEADLINE))?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, raw: &str) -> std::io::Result<()> {
        self.stream.write_all(raw.as_bytes())
    }

    pub fn get(&mut self, path: &str) -> std::io::Result<Response> {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))?;
        self.read_response()
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (Content-Length or chunked or until close).
    pub fn read_response(&mut self) -> std::io::Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.fill()? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a full response head ({} bytes)",
                        self.buf.len()
                    ),
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let hv = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let body = if let Some(len) = hv("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                if self.fill()? == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "body cut short",
                    ));
                }
            }
            self.buf.drain(..len).collect()
        } else if hv("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    if self.fill()? == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "chunk cut short",
                        ));
                    }
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&self.buf[..line_end]).trim(),
                    16,
                )
                .unwrap();
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    if self.fill()? == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "chunk cut short",
                        ));
                    }
                }
                body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break body;
                }
            }
        } else if status == 204 || status == 304 || status < 200 {
            Vec::new()
        } else {
            while self.fill()? > 0 {}
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Waits for the server to close the connection; true if it did before the deadline.
    pub fn closed_by_server(&mut self, deadline: Duration) -> bool {
        self.stream.set_read_timeout(Some(deadline)).unwrap();
        let mut b = [0u8; 64];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Runs `f` on its own thread, so a test can have a request in flight while it acts.
pub fn in_background<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(f)
}
