//! A binary under test as a child process, with its stderr (where the binaries log) captured
//! line by line as it is written, so a test can wait for a log line and show the log when an
//! assertion fails.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::wait::poll_until;
use crate::DEADLINE;

/// A child process whose stderr is captured line by line; killed when dropped, so a failing test
/// leaves no process behind.
pub struct Proc {
    pub child: Child,
    /// Every stderr line so far; a reader thread appends to it until the child closes stderr.
    pub log: Arc<Mutex<Vec<String>>>,
    name: String,
    patience: Duration,
}

impl Proc {
    /// Starts `bin` with `args`. `RUST_LOG` is removed from its environment: a developer's
    /// setting would change the very log lines tests wait for.
    pub fn spawn(
        name: &str,
        bin: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.args(args).env_remove("RUST_LOG");
        Proc::start(name, cmd)
    }

    /// Starts a prepared command, with stdin and stdout on /dev/null and stderr captured.
    pub fn start(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Proc {
            child,
            log,
            name: name.to_string(),
            patience: DEADLINE,
        }
    }

    /// How long [`Proc::wait_log`] waits (default [`DEADLINE`]): a suite whose binaries take
    /// longer to get somewhere says so once, here.
    pub fn with_patience(mut self, patience: Duration) -> Proc {
        self.patience = patience;
        self
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGINT`, ...).
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with the pid of our own child; no memory is involved.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.name);
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("polling the child")
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits for the process to exit, at most `deadline`, then for its last log lines to be
    /// read, so whoever inspects the log next sees all of it.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let mut status = None;
        let exited = poll_until(deadline, || {
            status = self.try_exit();
            status.is_some()
        });
        assert!(
            exited,
            "{} did not exit within {deadline:?}; log:\n{}",
            self.name,
            self.log_text()
        );
        // The reader thread holds the other Arc until stderr reaches EOF. A grandchild holding
        // stderr open would keep it; the log is then as complete as it gets by the deadline.
        poll_until(deadline, || Arc::strong_count(&self.log) == 1);
        status.expect("exited")
    }

    /// Everything logged so far, one line per entry.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Everything logged so far, as one text (for assertion messages).
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The first log line so far that contains `needle`.
    pub fn find_log(&self, needle: &str) -> Option<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }

    /// Waits until a log line contains `needle`, and returns that line; panics with the whole
    /// log if none does within the patience (see [`Proc::with_patience`]).
    pub fn wait_log(&self, needle: &str) -> String {
        let mut found = None;
        let seen = poll_until(self.patience, || {
            found = self.find_log(needle);
            found.is_some()
        });
        assert!(
            seen,
            "{} logged no line with {needle:?} within {:?}; log:\n{}",
            self.name,
            self.patience,
            self.log_text()
        );
        found.expect("seen")
    }
}

/// The address in a `field=ADDR` word of a log line (how lameduck and slowapp say where they
/// listen: `lameduck started listen=127.0.0.1:4711 admin=...`, so a test can bind port 0).
/// Panics naming the field and the line when it is not there.
pub fn addr_field(line: &str, field: &str) -> SocketAddr {
    let prefix = format!("{field}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field}= address in the log line: {line}"))
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
