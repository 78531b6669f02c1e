//! Test helpers: run the real `slowapp` binary on its own loopback address, read its log as it
//! is written, wait on conditions with deadlines, talk plain HTTP/1.1 over real sockets.
//!
//! Nothing here sleeps in place of a condition: every wait polls something observable (a log
//! line, a socket, the exit status) and fails with the log attached when its deadline passes.
//! The generic pieces (addresses, the HTTP client, the captured child) live in `testkit`, shared
//! with the lameduck suite; what is slowapp's own is here.

#![allow(dead_code)] // each test file uses its own subset

use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use testkit::{Client, Proc};

#[allow(unused_imports)] // like the functions: each test file uses its own subset
pub use testkit::{read_one_response, Response};

/// Generous bound for anything that should happen "soon": a loaded 2-core CI box must not fail a
/// test by being slow. No test asserts that something was fast.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long a response may take: tests hold requests open for seconds on purpose.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A free address on a loopback IP of this test's own (`127.<pid-derived>.<counter>.1`), so
/// concurrent tests, and other suites on the machine, never share an address.
pub fn free_addr() -> SocketAddr {
    testkit::free_addr_on(testkit::own_loopback_ip())
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
    proc: Proc,
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
        let proc = Proc::start("slowapp", cmd).with_patience(PATIENCE);
        SlowApp { addr, proc }
    }

    pub fn pid(&self) -> libc::pid_t {
        self.proc.pid()
    }

    /// Everything logged so far, one line per entry.
    pub fn log(&self) -> Vec<String> {
        self.proc.log_lines()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.proc.find_log(needle).is_some()
    }

    /// Waits until a log line contains `needle`, and returns that line.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.proc.wait_log(needle)
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGINT`).
    pub fn signal(&self, sig: libc::c_int) {
        self.proc.signal(sig);
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.proc.try_exit()
    }

    /// Waits for the process to exit, at most `PATIENCE`, and for its last log lines.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.proc.wait_exit(PATIENCE)
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
    let mut client = Client::connect_with_timeout(addr, READ_TIMEOUT)?;
    client.send(&format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ))?;
    client.send_bytes(body)?;
    client.read_to_close()
}
