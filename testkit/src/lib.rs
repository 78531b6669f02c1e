//! What the integration tests of `slowapp` (app/) and `lameduck` (proxy/) both need, written once.
//!
//! Both suites start the real binaries and talk to them over real loopback sockets, so both grew
//! the same pieces: a free address to listen on, a raw HTTP/1.1 client that shows exactly what
//! came back on which connection, a poll-with-a-deadline wait, and a child process whose stderr
//! is captured line by line. Each suite keeps its own `tests/common/mod.rs` for what is its own
//! (how to start its binary, its defaults) and takes these from here.
//!
//! A dev-dependency only: nothing here belongs in a shipped binary.

#[cfg(feature = "grpc")]
pub mod grpc;
pub mod http;
pub mod net;
pub mod process;
pub mod wait;

use std::time::Duration;

pub use http::{get, read_one_response, Client, Response};
pub use net::{free_addr_on, own_loopback_ip};
pub use process::{addr_field, Proc};
pub use wait::{poll_until, wait_until};

/// The default bound on a wait (a log line, a socket read, an exit) when the caller names none:
/// long enough that a loaded 2-core CI box does not fail a test by being slow, short enough that a
/// test waiting for something that never comes fails in seconds. No test asserts that anything
/// was fast.
pub const DEADLINE: Duration = Duration::from_secs(10);
