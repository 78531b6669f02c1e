//! The two routes of the seed app (plus `/ws`, the WebSocket echo of [`crate::websocket`]), and
//! the counters the shutdown report reads.
//!
//! Routing follows Go's `http.ServeMux` as the seed used it: `/ready` is an exact match and
//! every other path falls through to the slow `/` handler, whatever the method; `/ws` is exact
//! too, added for the lab's long-lived connections.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};

use crate::respond::{delay_override, text, SERVED_BY};

/// What every request handler shares: the settings it answers with and the counters the
/// shutdown report reads.
#[derive(Debug)]
pub struct App {
    served_by: HeaderValue,
    response_delay: Duration,
    stats: Arc<Stats>,
    websockets: Arc<crate::websocket::Open>,
}

/// Request counters. Kept apart from hyper's connection tracking because the shutdown report is
/// about requests (what a client lost), not connections.
#[derive(Debug, Default)]
pub struct Stats {
    next_id: AtomicU64,
    in_flight: AtomicUsize,
    completed: AtomicU64,
}

impl Stats {
    /// Requests whose handler has started and not yet finished: at the shutdown deadline, these
    /// are the ones cut.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Requests answered since start.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }
}

/// Counts a request as in flight for as long as its handler future (or, for gRPC, its response
/// body) lives, so a request dropped mid-way (client gone, shutdown deadline) is uncounted too.
pub struct InFlight(Arc<Stats>);

impl InFlight {
    pub fn enter(stats: &Arc<Stats>) -> Self {
        stats.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(stats))
    }

    pub fn complete(self) {
        self.0.completed.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl App {
    pub fn new(served_by: HeaderValue, response_delay: Duration) -> Self {
        App {
            served_by,
            response_delay,
            stats: Arc::default(),
            websockets: Arc::default(),
        }
    }

    pub fn served_by(&self) -> &HeaderValue {
        &self.served_by
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn response_delay(&self) -> Duration {
        self.response_delay
    }

    /// The open WebSocket connections (`GET /ws`).
    pub fn websockets(&self) -> &Arc<crate::websocket::Open> {
        &self.websockets
    }

    /// The hyper service function: routes, then stamps `X-Served-By` on whatever is answered.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let guard = InFlight::enter(&self.stats);
        let mut response = if req.uri().path() == "/ready" {
            text(StatusCode::OK, "Ready!")
        } else if req.uri().path() == crate::websocket::PATH {
            if crate::websocket::is_upgrade(&req) {
                crate::websocket::accept(req, &self.served_by, &self.websockets)
            } else {
                crate::websocket::upgrade_required()
            }
        } else {
            self.hello(req).await
        };
        response
            .headers_mut()
            .insert(SERVED_BY.clone(), self.served_by.clone());
        guard.complete();
        Ok(response)
    }

    /// The seed's `sayhelloName`: log `start`, take the body, sleep, answer, log `return`.
    async fn hello(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let id = self.stats.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        let ts = unix_seconds();
        let delay = match delay_override(req.uri().query()) {
            Ok(Some(d)) => d,
            Ok(None) => self.response_delay,
            Err(msg) => {
                tracing::info!(req = id, %msg, "rejected");
                return text(StatusCode::BAD_REQUEST, &format!("{msg}\n"));
            }
        };
        let method = req.method().clone();
        let version = req.version();
        tracing::info!(req = id, %method, path = req.uri().path(), ?version, delay_ms = delay.as_millis() as u64, "start {ts}");

        // Read the body to its end, as a real handler would: an upload in flight at SIGTERM is
        // part of the request the shutdown must let finish.
        let body_bytes = match body_len(req.into_body()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(req = id, error = %e, "request body broke off");
                return text(StatusCode::BAD_REQUEST, "request body broke off\n");
            }
        };
        tokio::time::sleep(delay).await;
        tracing::info!(req = id, body_bytes, "return {ts}");
        text(StatusCode::OK, "Hello World!")
    }
}

/// Reads a body to its end without keeping it: only its size is of interest.
async fn body_len(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            len += data.len() as u64;
        }
    }
    Ok(len)
}

/// The seed logs `time.Now().Unix()`: whole seconds since the epoch.
fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_ms_overrides_only_when_present() {
        assert_eq!(delay_override(None), Ok(None));
        assert_eq!(delay_override(Some("a=1&b=2")), Ok(None));
        assert_eq!(
            delay_override(Some("a=1&delay_ms=250")),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(delay_override(Some("delay_ms=0")), Ok(Some(Duration::ZERO)));
        assert!(delay_override(Some("delay_ms=-1"))
            .unwrap_err()
            .contains("-1"));
        assert!(delay_override(Some("delay_ms=")).is_err());
    }

    #[test]
    fn in_flight_is_released_when_dropped_midway() {
        let stats = Arc::new(Stats::default());
        let a = InFlight::enter(&stats);
        let b = InFlight::enter(&stats);
        assert_eq!(stats.in_flight(), 2);
        a.complete();
        drop(b);
        assert_eq!(stats.in_flight(), 0);
        assert_eq!(stats.completed(), 1);
    }
}
