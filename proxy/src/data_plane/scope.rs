//! What both forwarders share for one request: holding it while the app starts, counting it in
//! flight, and the answer a client gets when the app failed it. One place, so the fast path and
//! the general forwarder answer and count the same way by construction.

use std::net::SocketAddr;
use std::time::Duration;

use crate::lifecycle::drain::Guard;
use crate::lifecycle::Lifecycle;
use crate::metrics::UpstreamErrorKind;

/// Holds a request that arrived before the app was ready, for at most `hold`. On a timeout
/// returns the text of the 503 the client gets.
pub async fn hold_until_ready(
    lc: &Lifecycle,
    hold: Duration,
    upstream: SocketAddr,
) -> std::result::Result<(), String> {
    lc.metrics.requests_held.inc();
    let mut ready = lc.app_ready_rx();
    if tokio::time::timeout(hold, ready.wait_for(|r| *r))
        .await
        .is_ok()
    {
        return Ok(());
    }
    lc.metrics.held_timeouts.inc();
    Err(format!(
        "lameduck: the app at {upstream} is not ready yet (held this request {}); retry shortly\n",
        crate::config::fmt_duration(hold)
    ))
}

/// The status and text a client gets when the app failed it; the same for both forwarders.
pub fn upstream_error_response(kind: UpstreamErrorKind, upstream: SocketAddr) -> (u16, String) {
    match kind {
        UpstreamErrorKind::ConnectRefused => (
            502,
            format!("lameduck: the app at {upstream} refused the connection (not listening: starting, restarting or gone)\n"),
        ),
        UpstreamErrorKind::ConnectTimeout => (
            504,
            format!("lameduck: connecting to the app at {upstream} timed out\n"),
        ),
        UpstreamErrorKind::Timeout => (
            504,
            format!("lameduck: the app at {upstream} did not answer in time\n"),
        ),
        other => (
            502,
            format!("lameduck: error talking to the app at {upstream} ({})\n", other.as_str()),
        ),
    }
}

/// One request in flight, for the drain (and so for `lameduck_in_flight_requests`), until it
/// drops, even half-way.
pub struct InFlight(#[allow(dead_code)] Guard);

impl InFlight {
    pub fn new(lc: &Lifecycle) -> Self {
        InFlight(lc.drain.request())
    }
}
