//! The shutdown state machine: one small type that every other part of lameduck reads.
//!
//! ```text
//! Starting --app ready--> Serving --SIGTERM | /drain--> LameDuck --window over--> Draining --no conns--> Drained
//!    \________________ SIGTERM | /drain before the app was ready ______^         (or drain timeout: cut)
//! ```
//!
//! Transitions only go forward, each happens once, and each is logged and exported as a metric
//! right here, so the logs, `/status` and `/metrics` can never disagree about where a pod is.
//! The data plane reads the phase on every request, so it is mirrored in an atomic; waiters
//! (the drain driver, `/drain`, idle connections) subscribe to a `watch` channel instead.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Phase {
    /// The app is not ready yet: `/ready` fails, early requests are held.
    Starting = 0,
    /// Normal operation: everything is forwarded.
    Serving = 1,
    /// Shutdown signalled, endpoint removal still propagating: `/ready` fails (by default) but
    /// every request is still served, with `Connection: close` so clients move elsewhere.
    LameDuck = 2,
    /// The listener is closed; in-flight requests finish.
    Draining = 3,
    /// Nothing left in flight: the app may now shut down.
    Drained = 4,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Starting,
        Phase::Serving,
        Phase::LameDuck,
        Phase::Draining,
        Phase::Drained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Serving => "serving",
            Phase::LameDuck => "lame_duck",
            Phase::Draining => "draining",
            Phase::Drained => "drained",
        }
    }

    fn from_u8(v: u8) -> Phase {
        Phase::ALL[v as usize]
    }

    /// Whether the shutdown has begun (the phase is LameDuck or later).
    pub fn is_shutting_down(self) -> bool {
        self >= Phase::LameDuck
    }

    /// The legal edges of the machine. Everything else is ignored, which makes every trigger
    /// (signal, `/drain`, probe) idempotent.
    fn can_go_to(self, to: Phase) -> bool {
        matches!(
            (self, to),
            (Phase::Starting, Phase::Serving)
                | (Phase::Starting, Phase::LameDuck)
                | (Phase::Serving, Phase::LameDuck)
                | (Phase::LameDuck, Phase::Draining)
                | (Phase::Draining, Phase::Drained)
        )
    }
}

/// When the lame-duck window ends, as an offset from the shutdown signal.
///
/// A fixed sleep is a guess at how long endpoint removal takes to reach every kube-proxy and
/// ingress controller. Instead the window lasts at least `delay`, then ends once no new request
/// has arrived for `quiet` (the fronts have stopped routing here), and never exceeds `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub delay: Duration,
    pub quiet: Duration,
    pub max: Duration,
}

impl Window {
    /// `last_arrival` is the arrival of the latest request after the signal, if any.
    pub fn end(&self, last_arrival: Option<Duration>) -> Duration {
        if self.quiet.is_zero() {
            return self.delay.min(self.max);
        }
        let by_quiet = last_arrival.map_or(Duration::ZERO, |t| t + self.quiet);
        self.delay.max(by_quiet).min(self.max)
    }
}

/// The state every part of the process shares: phase, the shutdown clock, app readiness.
pub struct Lifecycle {
    phase_tx: watch::Sender<Phase>,
    /// Mirror of `phase_tx` for the per-request hot path (an atomic load, no lock).
    phase_fast: AtomicU8,
    started: Instant,
    /// When the shutdown began (SIGTERM, SIGINT or `/drain`).
    signal_at: OnceLock<Instant>,
    /// What began it, for the logs.
    signal_cause: OnceLock<&'static str>,
    /// When each phase was entered.
    entered: Mutex<[Option<Instant>; 5]>,
    /// Arrival of the latest request after the signal, in ns since `signal_at` (0 = none yet).
    last_arrival_ns: AtomicU64,
    requests_after_signal: AtomicU64,
    requests_cut: AtomicU64,
    app_ready_tx: watch::Sender<bool>,
    pub metrics: Arc<Metrics>,
}

impl Lifecycle {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        let now = Instant::now();
        let mut entered = [None; 5];
        entered[Phase::Starting as usize] = Some(now);
        metrics.set_phase(Phase::Starting);
        Arc::new(Lifecycle {
            phase_tx: watch::channel(Phase::Starting).0,
            phase_fast: AtomicU8::new(Phase::Starting as u8),
            started: now,
            signal_at: OnceLock::new(),
            signal_cause: OnceLock::new(),
            entered: Mutex::new(entered),
            last_arrival_ns: AtomicU64::new(0),
            requests_after_signal: AtomicU64::new(0),
            requests_cut: AtomicU64::new(0),
            app_ready_tx: watch::channel(false).0,
            metrics,
        })
    }

    /// The current phase (an atomic load: fine on every request).
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase_fast.load(Ordering::Acquire))
    }

    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase_tx.subscribe()
    }

    /// Waits until the phase is at least `phase`.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    /// Moves to `to` if that is a legal edge from the current phase; returns whether it moved.
    ///
    /// The transition is logged and exported *before* waiters are woken, so that nothing that
    /// reacts to a phase (the exit, a `/drain` answer) can overtake its record.
    pub fn advance(&self, to: Phase) -> bool {
        let mut entered = self.entered.lock();
        let from = *self.phase_tx.borrow();
        if !from.can_go_to(to) {
            return false;
        }
        let now = Instant::now();
        entered[to as usize] = Some(now);
        let spent = entered[from as usize].map(|t| now - t).unwrap_or_default();
        self.phase_fast.store(to as u8, Ordering::Release);
        self.metrics.set_phase(to);
        if from.is_shutting_down() {
            self.metrics.shutdown_phase_seconds(from, spent);
        }
        tracing::info!(
            phase = to.as_str(),
            from = from.as_str(),
            from_ms = spent.as_millis() as u64,
            since_signal_ms = self.since_signal().map(|d| d.as_millis() as u64),
            in_flight = self.metrics.in_flight.get(),
            open_conns = self.metrics.open_connections.get(),
            app_ready = self.app_ready(),
            "phase changed"
        );
        // Still under the `entered` lock: transitions are serialised.
        self.phase_tx.send_replace(to);
        true
    }

    /// Begins the shutdown (first call only): records the signal time and enters LameDuck.
    pub fn begin_shutdown(&self, cause: &'static str) -> bool {
        if self.signal_at.set(Instant::now()).is_err() {
            return false;
        }
        let _ = self.signal_cause.set(cause);
        tracing::info!(cause, phase = self.phase().as_str(), "shutdown signalled");
        self.advance(Phase::LameDuck)
    }

    pub fn signal_cause(&self) -> Option<&'static str> {
        self.signal_cause.get().copied()
    }

    pub fn signal_at(&self) -> Option<Instant> {
        self.signal_at.get().copied()
    }

    pub fn since_signal(&self) -> Option<Duration> {
        self.signal_at().map(|t| t.elapsed())
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Called for every request as it arrives. After the signal, it is what keeps the lame-duck
    /// window open, and what tells operators how long propagation really takes.
    pub fn note_arrival(&self) {
        if let Some(signal) = self.signal_at() {
            let after = signal.elapsed();
            // ns since the signal, +1 so that 0 keeps meaning "none yet".
            let ns = after.as_nanos() as u64 + 1;
            self.last_arrival_ns.fetch_max(ns, Ordering::AcqRel);
            self.requests_after_signal.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .requests_after_shutdown
                .observe(after.as_secs_f64());
        }
    }

    /// Arrival of the latest request after the signal, as an offset from the signal.
    pub fn last_arrival(&self) -> Option<Duration> {
        match self.last_arrival_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(Duration::from_nanos(ns - 1)),
        }
    }

    pub fn requests_after_signal(&self) -> u64 {
        self.requests_after_signal.load(Ordering::Relaxed)
    }

    pub fn add_cut(&self, n: u64) {
        self.requests_cut.fetch_add(n, Ordering::Relaxed);
        self.metrics.requests_cut.inc_by(n);
    }

    pub fn requests_cut(&self) -> u64 {
        self.requests_cut.load(Ordering::Relaxed)
    }

    /// Time spent in each phase so far (the current one up to now).
    pub fn phase_durations(&self) -> Vec<(Phase, Duration)> {
        let entered = *self.entered.lock();
        let now = Instant::now();
        let mut out = Vec::new();
        for (i, start) in entered.iter().enumerate() {
            let Some(start) = start else { continue };
            let end = entered[i + 1..]
                .iter()
                .flatten()
                .next()
                .copied()
                .unwrap_or(now);
            out.push((Phase::ALL[i], end.saturating_duration_since(*start)));
        }
        out
    }

    pub fn app_ready(&self) -> bool {
        *self.app_ready_tx.borrow()
    }

    pub fn app_ready_rx(&self) -> watch::Receiver<bool> {
        self.app_ready_tx.subscribe()
    }

    /// Records the app probe's verdict; the first "ready" moves Starting to Serving.
    pub fn set_app_ready(&self, ready: bool) {
        let changed = self
            .app_ready_tx
            .send_if_modified(|r| std::mem::replace(r, ready) != ready);
        if changed {
            self.metrics.app_ready.set(ready as i64);
            if ready {
                tracing::info!("app is ready");
            } else {
                tracing::warn!("app is not ready");
            }
        }
        if ready {
            self.advance(Phase::Serving);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn window_is_fixed_when_quiet_is_zero() {
        let w = Window {
            delay: S(5),
            quiet: Duration::ZERO,
            max: S(30),
        };
        assert_eq!(w.end(None), S(5));
        assert_eq!(w.end(Some(S(20))), S(5));
    }

    #[test]
    fn window_waits_for_quiet_after_minimum() {
        let w = Window {
            delay: S(5),
            quiet: S(2),
            max: S(30),
        };
        assert_eq!(w.end(None), S(5), "no late request: the minimum");
        assert_eq!(w.end(Some(S(1))), S(5), "early request: still the minimum");
        assert_eq!(
            w.end(Some(S(7))),
            S(9),
            "late request extends it by the quiet period"
        );
        assert_eq!(w.end(Some(S(29))), S(30), "never past the max");
    }

    #[test]
    fn only_forward_edges() {
        use Phase::*;
        assert!(Starting.can_go_to(Serving));
        assert!(Starting.can_go_to(LameDuck));
        assert!(Serving.can_go_to(LameDuck));
        assert!(LameDuck.can_go_to(Draining));
        assert!(Draining.can_go_to(Drained));
        assert!(!Serving.can_go_to(Starting));
        assert!(!LameDuck.can_go_to(Serving));
        assert!(!Serving.can_go_to(Draining));
        assert!(!Drained.can_go_to(Drained));
    }
}
