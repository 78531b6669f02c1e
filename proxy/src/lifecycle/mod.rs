//! The shutdown: one pure rule ([`core`]), one task that drives it ([`driver`]), one primitive
//! the drain waits on ([`drain`]), and the state every other part reads ([`Lifecycle`]).
//!
//! Everything else *derives* from the phase, published on one `watch<Phase>` by the driver
//! alone: `/ready` fails from LameDuck on, responses carry `Connection: close` and pingora
//! sends HTTP/2 GOAWAY from LameDuck on ([`Lifecycle::lame_duck_watch`] adapts the phase to
//! pingora's `ShutdownWatch`), the listener closes and idle connections close at Draining,
//! and connections still open are cut at Drained. No other switch exists.
//!
//! Inputs reach the driver by cheap paths: a request's arrival is an atomic store
//! ([`Lifecycle::note_arrival`], read by the driver when it wakes), app readiness is a `watch`,
//! a `/drain` call a `Notify`, process signals a channel.

pub mod core;
pub mod drain;
pub mod driver;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

pub use self::core::{Outcome, Timings, Window};
pub use self::drain::Drain;
use crate::metrics::ShutdownMetrics;
use crate::phase::Phase;

/// What the driver has recorded about the shutdown, for `/status` and the exit summary.
#[derive(Debug, Clone, Copy, Default)]
struct Record {
    /// When each phase was entered.
    entered: [Option<Instant>; 5],
    /// What began the shutdown (SIGTERM, SIGINT or `/drain`).
    cause: Option<&'static str>,
    requests_cut: u64,
}

/// The state every part of the process shares: the phase, the shutdown clock, app readiness,
/// the drain's counts. Only the [driver](driver::drive) moves the phase.
pub struct Lifecycle {
    phase_tx: watch::Sender<Phase>,
    /// Mirror of `phase_tx` for the per-request hot path (an atomic load, no lock).
    phase_fast: AtomicU8,
    started: Instant,
    record: Mutex<Record>,
    /// When the shutdown began; read on every request after it.
    signal_at: OnceLock<Instant>,
    /// Arrival of the latest request after the signal, in ns since `signal_at` (0 = none yet).
    last_arrival_ns: AtomicU64,
    requests_after_signal: AtomicU64,
    app_ready_tx: watch::Sender<bool>,
    drain_requested: Notify,
    /// Open connections and in-flight requests: what Draining waits for.
    pub drain: Drain,
    /// What the shutdown records; the rest of the process's metrics are not reachable here.
    metrics: Arc<ShutdownMetrics>,
}

impl Lifecycle {
    pub fn new(metrics: Arc<ShutdownMetrics>) -> Arc<Self> {
        let now = Instant::now();
        let mut record = Record::default();
        record.entered[Phase::Starting as usize] = Some(now);
        metrics.set_phase(Phase::Starting);
        Arc::new(Lifecycle {
            phase_tx: watch::channel(Phase::Starting).0,
            phase_fast: AtomicU8::new(Phase::Starting as u8),
            started: now,
            record: Mutex::new(record),
            signal_at: OnceLock::new(),
            last_arrival_ns: AtomicU64::new(0),
            requests_after_signal: AtomicU64::new(0),
            app_ready_tx: watch::channel(false).0,
            drain_requested: Notify::new(),
            drain: Drain::new(metrics.open_connections.clone(), metrics.in_flight.clone()),
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

    /// pingora's `ShutdownWatch` (true: answer HTTP/1.1 with `Connection: close`, send HTTP/2
    /// GOAWAY), derived from the phase: true from LameDuck on. Needs a tokio runtime.
    pub fn lame_duck_watch(&self) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(self.phase().is_shutting_down());
        let mut phase = self.subscribe();
        tokio::spawn(async move {
            if phase.wait_for(|p| p.is_shutting_down()).await.is_ok() {
                let _ = tx.send(true);
            }
        });
        rx
    }

    /// Asks the driver to begin the shutdown, as a signal does (`/drain`).
    pub fn request_drain(&self) {
        self.drain_requested.notify_one();
    }

    pub fn signal_cause(&self) -> Option<&'static str> {
        self.record.lock().cause
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

    fn last_arrival_at(&self) -> Option<Instant> {
        Some(self.signal_at()? + self.last_arrival()?)
    }

    pub fn requests_after_signal(&self) -> u64 {
        self.requests_after_signal.load(Ordering::Relaxed)
    }

    pub fn requests_cut(&self) -> u64 {
        self.record.lock().requests_cut
    }

    /// Time spent in each phase so far (the current one up to now).
    pub fn phase_durations(&self) -> Vec<(Phase, Duration)> {
        let entered = self.record.lock().entered;
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

    /// Records the app probe's verdict; the driver moves Starting to Serving on the first
    /// "ready".
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
    }

    /// The driver's: records the shutdown's start.
    fn begin(&self, at: Instant, cause: &'static str) {
        let _ = self.signal_at.set(at);
        self.record.lock().cause = Some(cause);
        tracing::info!(cause, phase = self.phase().as_str(), "shutdown signalled");
    }

    /// The driver's: records what the drain timeout cut.
    fn add_cut(&self, n: u64) {
        self.record.lock().requests_cut += n;
        self.metrics.requests_cut.inc_by(n);
    }

    /// The driver's: enters `to`. The transition is logged and exported *before* waiters are
    /// woken, so that nothing that reacts to a phase (the exit, a `/drain` answer) can overtake
    /// its record.
    fn enter(&self, to: Phase, now: Instant) {
        let mut record = self.record.lock();
        let from = *self.phase_tx.borrow();
        record.entered[to as usize] = Some(now);
        let spent = record.entered[from as usize]
            .map(|t| now - t)
            .unwrap_or_default();
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
            in_flight = self.drain.in_flight(),
            open_conns = self.drain.open_connections(),
            app_ready = self.app_ready(),
            "phase changed"
        );
        // Still under the record's lock: transitions are serialised.
        self.phase_tx.send_replace(to);
    }
}
