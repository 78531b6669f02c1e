//! Waiting on a condition: poll it, with a deadline, instead of sleeping for a guessed time.

use std::thread;
use std::time::{Duration, Instant};

/// How often a condition is polled: often enough that a test does not idle, rarely enough that
/// polling costs nothing next to the binaries under test.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` until it holds (true) or `deadline` has passed (false).
///
/// For callers that want to say more than [`wait_until`] does when time runs out, such as the
/// log of the process they were waiting on.
pub fn poll_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// Polls `cond` until it holds; panics naming `what` if `deadline` passes first.
pub fn wait_until(what: &str, deadline: Duration, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(deadline, cond),
        "timed out after {deadline:?} waiting for: {what}"
    );
}
