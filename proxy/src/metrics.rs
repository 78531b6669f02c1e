//! The Prometheus registry and every metric handle, built once at start.
//!
//! Label lookups hash and lock, so nothing on the request path calls `with_label_values`: every
//! labelled series a request can touch is resolved here, up front, into a plain handle.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::phase::Phase;

/// What went wrong talking to the app; the `kind` label of `lameduck_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Nothing listens on the upstream port (app not started, or restarting).
    ConnectRefused,
    /// Connecting took longer than --upstream-connect-timeout.
    ConnectTimeout,
    /// Other connect failures (no route, socket errors).
    ConnectError,
    /// The app took longer than --upstream-timeout to answer.
    Timeout,
    /// The app closed or reset the connection mid-request.
    Closed,
    /// The app sent something that is not valid HTTP.
    Protocol,
}

impl UpstreamErrorKind {
    const ALL: [UpstreamErrorKind; 6] = [
        UpstreamErrorKind::ConnectRefused,
        UpstreamErrorKind::ConnectTimeout,
        UpstreamErrorKind::ConnectError,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Closed,
        UpstreamErrorKind::Protocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectRefused => "connect_refused",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::ConnectError => "connect_error",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Closed => "closed",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }
}

/// Status classes for `lameduck_requests_total`; `error` is a request that got no response.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// Every metric, registered in one registry, in three parts: each part of the process is given
/// its own part at start and nothing else (no part reaches another's counters through a shared
/// handle). `/metrics` renders the registry.
pub struct Metrics {
    registry: Registry,
    pub shutdown: Arc<ShutdownMetrics>,
    pub data_plane: Arc<DataPlaneMetrics>,
    pub admin: Arc<AdminMetrics>,
}

/// What the shutdown records: the phase, the app's readiness, what the drain counts (open
/// connections and requests in flight), when requests arrived after the signal, what was cut.
pub struct ShutdownMetrics {
    phase: [IntGauge; 5],
    shutdown_phase: [Gauge; 5],
    pub app_ready: IntGauge,
    pub in_flight: IntGauge,
    pub open_connections: IntGauge,
    pub requests_after_shutdown: Histogram,
    pub requests_cut: IntCounter,
}

/// What the data plane records: each request, each failure talking to the app, and what its
/// connection handling did (held, closed idle, refused, told to go).
pub struct DataPlaneMetrics {
    /// `[phase][class]`
    requests: [[IntCounter; 6]; 5],
    pub request_duration: Histogram,
    upstream_errors: [IntCounter; 6],
    pub requests_held: IntCounter,
    pub held_timeouts: IntCounter,
    pub idle_closed: IntCounter,
    pub upstream_connections_opened: IntCounter,
    pub upstream_retries: IntCounter,
    pub pingora_handoffs: IntCounter,
    pub accept_errors: IntCounter,
    pub connection_limit_reached: IntCounter,
    pub websocket_going_away: IntCounter,
    /// `[GoawayReason]`
    http2_goaway: [IntCounter; 2],
}

/// What the admin plane records.
pub struct AdminMetrics {
    pub connections_refused: IntCounter,
}

/// Why an HTTP/2 client connection was sent GOAWAY; the `reason` label of
/// `lameduck_http2_goaway_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoawayReason {
    /// The lame-duck window opened (or the connection arrived during it).
    Shutdown = 0,
    /// No stream was open for `--idle-timeout`.
    Idle = 1,
}

impl GoawayReason {
    const ALL: [GoawayReason; 2] = [GoawayReason::Shutdown, GoawayReason::Idle];

    pub fn as_str(self) -> &'static str {
        match self {
            GoawayReason::Shutdown => "shutdown",
            GoawayReason::Idle => "idle",
        }
    }
}

/// Registers each metric as it is made, so that each part's `register` reads as the list it is.
struct Reg(Registry);

type R<T> = Result<T, prometheus::Error>;

impl Reg {
    fn add<T: prometheus::core::Collector + Clone + 'static>(&self, c: T) -> R<T> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn counter(&self, name: &str, help: &str) -> R<IntCounter> {
        self.add(IntCounter::new(name, help)?)
    }

    fn gauge(&self, name: &str, help: &str) -> R<IntGauge> {
        self.add(IntGauge::new(name, help)?)
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> R<IntCounterVec> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> R<IntGaugeVec> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn float_gauges(&self, name: &str, help: &str, labels: &[&str]) -> R<GaugeVec> {
        self.add(GaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> R<Histogram> {
        self.add(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets),
        )?)
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Reg(Registry::new_custom(Some("lameduck".into()), None)?);
        let shutdown = Arc::new(ShutdownMetrics::register(&r)?);
        let data_plane = Arc::new(DataPlaneMetrics::register(&r)?);
        let admin = Arc::new(AdminMetrics {
            connections_refused: r.counter(
                "admin_connections_refused_total",
                "Admin-plane connections closed at once because too many were open",
            )?,
        });
        r.gauges(
            "build_info",
            "Always 1; the version label says which lameduck",
            &["version"],
        )?
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        Ok(Metrics {
            registry: r.0,
            shutdown,
            data_plane,
            admin,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl ShutdownMetrics {
    fn register(r: &Reg) -> R<Self> {
        let phase_vec = r.gauges(
            "phase",
            "The shutdown state machine: 1 for the current phase",
            &["phase"],
        )?;
        let shutdown_vec = r.float_gauges(
            "shutdown_phase_seconds",
            "Time spent in each shutdown phase (set when the phase ends)",
            &["phase"],
        )?;
        Ok(ShutdownMetrics {
            phase: Phase::ALL.map(|p| phase_vec.with_label_values(&[p.as_str()])),
            shutdown_phase: Phase::ALL.map(|p| shutdown_vec.with_label_values(&[p.as_str()])),
            app_ready: r.gauge("app_ready", "1 when the app's readiness probe passes")?,
            in_flight: r.gauge("in_flight_requests", "Requests being served right now")?,
            open_connections: r.gauge(
                "open_connections",
                "Client connections open on the data plane",
            )?,
            requests_after_shutdown: r.histogram(
                "requests_after_shutdown_seconds",
                "How long after the shutdown signal each request arrived: how long endpoint removal really takes to propagate",
                vec![
                    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
                    120.0,
                ],
            )?,
            requests_cut: r.counter(
                "requests_cut_total",
                "Requests still in flight when the drain timeout expired, cut off",
            )?,
        })
    }

    pub fn set_phase(&self, current: Phase) {
        for p in Phase::ALL {
            self.phase[p as usize].set((p == current) as i64);
        }
    }

    pub fn shutdown_phase_seconds(&self, phase: Phase, spent: Duration) {
        self.shutdown_phase[phase as usize].set(spent.as_secs_f64());
    }
}

impl DataPlaneMetrics {
    fn register(r: &Reg) -> R<Self> {
        let requests_vec = r.counters(
            "requests_total",
            "Requests on the data plane, by response status class and the phase they arrived in",
            &["class", "phase"],
        )?;
        let upstream_vec = r.counters(
            "upstream_errors_total",
            "Failures talking to the app, by kind",
            &["kind"],
        )?;
        let goaway_vec = r.counters(
            "http2_goaway_total",
            "HTTP/2 client connections sent GOAWAY (told to open their next streams elsewhere), by reason",
            &["reason"],
        )?;
        Ok(DataPlaneMetrics {
            requests: Phase::ALL
                .map(|p| CLASSES.map(|c| requests_vec.with_label_values(&[c, p.as_str()]))),
            request_duration: r.histogram(
                "request_duration_seconds",
                "Time from request arrival to the end of the response",
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0, 30.0, 60.0,
                ],
            )?,
            upstream_errors: UpstreamErrorKind::ALL
                .map(|k| upstream_vec.with_label_values(&[k.as_str()])),
            requests_held: r.counter(
                "requests_held_total",
                "Requests that arrived before the app was ready and were held",
            )?,
            held_timeouts: r.counter(
                "requests_held_timeout_total",
                "Held requests answered 503 because the app was not ready within --startup-hold",
            )?,
            idle_closed: r.counter(
                "idle_connections_closed_total",
                "Idle keep-alive connections closed at the start of the shutdown so clients reconnect elsewhere",
            )?,
            // A pool that keeps opening connections means the app closes them (a short
            // keep-alive timeout), which is also when the close race and its retries happen.
            upstream_connections_opened: r.counter(
                "upstream_connections_opened_total",
                "Connections opened to the app (the rest of the requests reused pooled ones)",
            )?,
            upstream_retries: r.counter(
                "upstream_retries_total",
                "Requests sent again on a new connection because a pooled one died under them",
            )?,
            pingora_handoffs: r.counter(
                "pingora_handoffs_total",
                "HTTP/2 client connections handed to pingora-proxy (the app does not speak h2c)",
            )?,
            // The fd limit reached shows here first; the data plane then backs off instead of
            // spinning, and --max-connections keeps descriptors for the admin plane's probes.
            accept_errors: r.counter(
                "accept_errors_total",
                "Failed accepts on the data plane (EMFILE: out of file descriptors)",
            )?,
            connection_limit_reached: r.counter(
                "connection_limit_reached_total",
                "Times the data plane stopped accepting because --max-connections client connections were open",
            )?,
            websocket_going_away: r.counter(
                "websocket_going_away_total",
                "WebSocket connections sent Close 1001 (Going Away) when draining began",
            )?,
            http2_goaway: GoawayReason::ALL.map(|g| goaway_vec.with_label_values(&[g.as_str()])),
        })
    }

    /// Counts one finished request. `status` is `None` when no response could be sent.
    pub fn request_done(&self, arrived_in: Phase, status: Option<u16>, took: Duration) {
        let class = match status {
            Some(s @ 100..=599) => (s / 100 - 1) as usize,
            _ => 5,
        };
        self.requests[arrived_in as usize][class].inc();
        self.request_duration.observe(took.as_secs_f64());
    }

    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        let i = UpstreamErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.upstream_errors[i].inc();
    }

    pub fn http2_goaway(&self, reason: GoawayReason) {
        self.http2_goaway[reason as usize].inc();
    }
}
