//! The admin plane: what the kubelet, Prometheus and the app's preStop hook talk to.
//!
//! It has its own port so that probes and scrapes never queue behind data-plane traffic, and so
//! that closing the data listener during the drain leaves it up: `/live` must answer 200 until
//! the process exits, or the kubelet would restart a pod that is draining as designed.
//!
//! - `GET /ready`   200 while Serving and the app is ready; 503 with the reason otherwise.
//! - `GET /live`    200 for as long as the process runs.
//! - `GET /metrics` Prometheus text format.
//! - `GET /status`  JSON: phase, timings, in-flight, connections, app readiness.
//! - `GET|POST /drain` starts the shutdown (as SIGTERM does) and answers once Drained.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{AdminConfig, ReadinessOnShutdown};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::phase::Phase;

pub struct Admin {
    lc: Arc<Lifecycle>,
    config: AdminConfig,
    /// Rendered for `/metrics`.
    metrics: Arc<Metrics>,
    /// How many `/drain` callers are still waiting for (or being sent) their answer; the process
    /// does not exit while this is above zero.
    drain_waiters: watch::Sender<usize>,
}

type Resp = Response<Full<Bytes>>;

/// How long an admin connection may take to send a request head, or sit idle between
/// requests. Probes send theirs at once; the kubelet's probe timeout is 1 s by default.
const ADMIN_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Admin connections open at once: the kubelet, a Prometheus scrape and an operator need a few.
const ADMIN_MAX_CONNS: usize = 64;

impl Admin {
    pub fn new(lc: Arc<Lifecycle>, metrics: Arc<Metrics>, config: AdminConfig) -> Arc<Self> {
        Arc::new(Admin {
            lc,
            config,
            metrics,
            drain_waiters: watch::channel(0).0,
        })
    }

    /// Accepts admin connections until the process exits.
    ///
    /// Every connection must send its request head within [`ADMIN_HEAD_TIMEOUT`], idle ones
    /// included (hyper's header-read timer runs while a keep-alive connection waits), and at
    /// most [`ADMIN_MAX_CONNS`] are open at once: a newer one past that is closed at once. So
    /// slow or idle clients cannot hold the plane the kubelet's probes need.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(tokio::sync::Semaphore::new(ADMIN_MAX_CONNS));
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                self.metrics.admin.connections_refused.inc();
                drop(stream);
                continue;
            };
            let admin = self.clone();
            let owner = self.clone();
            tokio::spawn(async move {
                // Set by a /drain request on this connection; its waiter count is released
                // only once hyper has written the answer and closed the connection.
                let waited = Arc::new(AtomicBool::new(false));
                let flag = waited.clone();
                let svc = service_fn(move |req| {
                    let admin = admin.clone();
                    let flag = flag.clone();
                    async move { Ok::<_, Infallible>(admin.route(req, &flag).await) }
                });
                let _slot = slot;
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(ADMIN_HEAD_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "admin connection error");
                }
                if waited.load(Ordering::Acquire) {
                    owner.drain_waiters.send_modify(|n| *n -= 1);
                }
            });
        }
    }

    async fn route(&self, req: Request<Incoming>, waited: &AtomicBool) -> Resp {
        let path = req.uri().path();
        let method = req.method();
        match (method, path) {
            (&Method::GET | &Method::HEAD, "/ready") => self.ready(),
            (&Method::GET | &Method::HEAD, "/live") => text(StatusCode::OK, "live\n"),
            (&Method::GET, "/metrics") => Response::builder()
                .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
                .body(Full::new(Bytes::from(self.metrics.render())))
                .expect("static response"),
            (&Method::GET, "/status") => json(StatusCode::OK, &self.status()),
            (&Method::GET | &Method::POST, "/drain") => {
                if !waited.swap(true, Ordering::AcqRel) {
                    self.drain_waiters.send_modify(|n| *n += 1);
                }
                self.drain().await
            }
            (_, "/ready" | "/live" | "/metrics" | "/status" | "/drain") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: lameduck's admin plane serves /ready /live /drain /status /metrics\n",
            ),
        }
    }

    fn ready(&self) -> Resp {
        let phase = self.lc.phase();
        let app_ready = self.lc.app_ready();
        let phase_ok = match phase {
            Phase::Serving => true,
            Phase::LameDuck => self.config.readiness_on_shutdown == ReadinessOnShutdown::Serve,
            _ => false,
        };
        match (phase_ok, app_ready) {
            (true, true) => text(StatusCode::OK, "ready\n"),
            (false, _) if phase.is_shutting_down() => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: shutting down (phase {})\n", phase.as_str()),
            ),
            _ => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "not ready: the app at {} is not ready (probe {}; phase {})\n",
                    self.config.upstream,
                    self.config.app_probe,
                    phase.as_str()
                ),
            ),
        }
    }

    fn status(&self) -> Status {
        let lc = &self.lc;
        Status {
            phase: lc.phase(),
            uptime_seconds: lc.uptime().as_secs_f64(),
            shutdown_cause: lc.signal_cause(),
            since_signal_seconds: lc.since_signal().map(|d| d.as_secs_f64()),
            in_flight: lc.drain.in_flight(),
            open_connections: lc.drain.open_connections(),
            app_ready: lc.app_ready(),
            requests_after_signal: lc.requests_after_signal(),
            last_request_after_signal_seconds: lc.last_arrival().map(|d| d.as_secs_f64()),
            requests_cut: lc.requests_cut(),
            phase_seconds: lc
                .phase_durations()
                .into_iter()
                .map(|(p, d)| (p.as_str(), d.as_secs_f64()))
                .collect(),
        }
    }

    async fn drain(&self) -> Resp {
        self.lc.request_drain();
        self.lc.reached(Phase::Drained).await;
        let mut resp = json(StatusCode::OK, &self.status());
        // One answer per connection: the waiter count drops when the connection closes.
        resp.headers_mut()
            .insert(CONNECTION, "close".parse().expect("static header"));
        resp
    }

    /// Waits until every `/drain` caller has had its answer.
    pub async fn drain_waiters_answered(&self) {
        let mut rx = self.drain_waiters.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

#[derive(Serialize)]
struct Status {
    phase: Phase,
    uptime_seconds: f64,
    shutdown_cause: Option<&'static str>,
    since_signal_seconds: Option<f64>,
    in_flight: usize,
    open_connections: usize,
    app_ready: bool,
    requests_after_signal: u64,
    last_request_after_signal_seconds: Option<f64>,
    requests_cut: u64,
    phase_seconds: std::collections::BTreeMap<&'static str, f64>,
}

fn text(status: StatusCode, body: &str) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .expect("static response")
}

fn json(status: StatusCode, value: &impl Serialize) -> Resp {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response")
}
