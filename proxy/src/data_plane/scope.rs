//! What every forwarder shares for one request: its [`RequestScope`] (noted as an arrival,
//! counted in flight, recorded when it ends however it ends), holding it while the app starts,
//! and the answer a client gets when the app failed it. One place, so the HTTP/1 forwarder,
//! the HTTP/2 forwarder and pingora's answer and count the same way by construction.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lifecycle::drain::Guard;
use crate::lifecycle::Lifecycle;
use crate::metrics::{DataPlaneMetrics, UpstreamErrorKind};
use crate::phase::Phase;

/// One request, from its arrival to its end. Opening it notes the arrival (which keeps the
/// lame-duck window open) and counts it in flight for the drain; dropping it, whether the
/// response completed, failed or was abandoned half-way, records it in
/// `lameduck_requests_total` under the phase it arrived in, with the status it was answered
/// (none: no response reached the client).
pub struct RequestScope {
    metrics: Arc<DataPlaneMetrics>,
    phase: Phase,
    arrived: Instant,
    status: Option<u16>,
    _in_flight: Guard,
}

impl RequestScope {
    pub fn open(lc: &Lifecycle, metrics: &Arc<DataPlaneMetrics>) -> Self {
        lc.note_arrival();
        RequestScope {
            metrics: Arc::clone(metrics),
            phase: lc.phase(),
            arrived: Instant::now(),
            status: None,
            _in_flight: lc.drain.request(),
        }
    }

    /// The phase the request arrived in.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The data plane's counters this request is recorded in.
    pub fn metrics(&self) -> &DataPlaneMetrics {
        &self.metrics
    }

    /// The status the client was sent (the last one set counts).
    pub fn answered(&mut self, status: u16) {
        self.status = Some(status);
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        self.metrics
            .request_done(self.phase, self.status, self.arrived.elapsed());
    }
}

/// Holds a request that arrived before the app was ready, for at most `hold`. On a timeout
/// returns the text of the 503 the client gets.
pub async fn hold_until_ready(
    lc: &Lifecycle,
    metrics: &DataPlaneMetrics,
    hold: Duration,
    upstream: SocketAddr,
) -> std::result::Result<(), String> {
    metrics.requests_held.inc();
    let mut ready = lc.app_ready_rx();
    if tokio::time::timeout(hold, ready.wait_for(|r| *r))
        .await
        .is_ok()
    {
        return Ok(());
    }
    metrics.held_timeouts.inc();
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
