//! Test helpers: run the real `slowapp` binary on its own loopback address, read its log as it
//! is written, wait on conditions with deadlines, talk plain HTTP/1.1 over real sockets.
//!
//! Nothing here sleeps in place of a condition: every wait polls something observable (a log
//! line, a socket, the exit status) and fails with the log attached when its deadline passes.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "soon": a loaded 2-core CI box must not fail a
/// test by being slow. No test asserts that something was fast.
pub const PATIENCE: Duration = Duration::from_secs(30);

const POLL: Duration = Duration::from_millis(20);

/// A free address on a loopback IP of this test's own (`127.<pid-derived>.<counter>.1`), so
/// concurrent tests, and other suites on the machine, never share an address.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ip = Ipv4Addr::new(127, 100 + (std::process::id() % 100) as u8, n, 1);
    let listener = TcpListener::bind((ip, 0)).expect("binding a probe socket on loopback");
    listener.local_addr().expect("probe socket address")
}

/// The binary under test, with a clean environment: no `SLOWAPP_*`, `POD_NAME` or `RUST_LOG`
/// leaking in from the developer's shell.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slowapp"));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("SLOWAPP_") || key == "POD_NAME" || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A running slowapp. Killed when dropped, so a failing test leaves no process behind.
pub struct SlowApp {
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl SlowApp {
    /// Starts slowapp on a free loopback address with `args` and waits for `Start server`.
    pub fn start(args: &[&str]) -> SlowApp {
        let app = SlowApp::spawn(command(), args);
        app.wait_for_log("Start server");
        app
    }

    /// Starts slowapp on a free loopback address with `args`, without waiting for anything.
    pub fn spawn(mut cmd: Command, args: &[&str]) -> SlowApp {
        let addr = free_addr();
        cmd.arg("--listen").arg(addr.to_string()).args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning slowapp");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        SlowApp { addr, child, log }
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Everything logged so far, one line per entry.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log().iter().any(|l| l.contains(needle))
    }

    /// Waits until a log line contains `needle`, and returns that line.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} within {PATIENCE:?}; log:\n{}",
                self.log().join("\n")
            );
            thread::sleep(POLL);
        }
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGINT`).
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with the pid of our own child; no memory is involved.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("polling the child")
    }

    /// Waits for the process to exit, at most `PATIENCE`.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.try_exit() {
                // Let the log reader catch the last lines before anyone inspects them.
                self.wait_log_closed();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "slowapp did not exit within {PATIENCE:?}; log:\n{}",
                self.log().join("\n")
            );
            thread::sleep(POLL);
        }
    }

    fn wait_log_closed(&self) {
        // The reader thread holds the other Arc until stderr reaches EOF.
        let deadline = Instant::now() + PATIENCE;
        while Arc::strong_count(&self.log) > 1 && Instant::now() < deadline {
            thread::sleep(POLL);
        }
    }
}

impl Drop for SlowApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.1 response.
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

/// `GET path` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    request(addr, "GET", path, &[])
}

/// One request on a fresh connection (`Connection: close`), the response read to EOF.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Reads exactly one response (sized by Content-Length) from a connection that stays open.
pub fn read_one_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        raw.push(byte[0]);
    }
    let head = parse_response(&raw)?;
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(Response { body, ..head })
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what}: {:?}", String::from_utf8_lossy(raw)),
        )
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no complete response head"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}
