//! The one task that runs the shutdown: it waits for whatever [`Shutdown`] says it is waiting
//! for (a signal, `/drain`, the app's readiness, the drain emptying, the next deadline), feeds
//! it in with the time, and carries out the answer: publish the phase, count the cut, exit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::core::{Event, Outcome, Shutdown, Timings};
use super::Lifecycle;
use crate::phase::Phase;

/// A process signal lameduck obeys; the binary feeds them from the OS, tests send them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
        }
    }
}

/// How long, after a cut, the exit waits for the cut connections' tasks to end.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// Runs the shutdown until the process should exit. A closed `signals` channel means no
/// signal will come any more (a `/drain` still drains, and the process then stays up).
pub async fn drive(
    lc: Arc<Lifecycle>,
    timings: Timings,
    mut signals: mpsc::Receiver<Signal>,
) -> Outcome {
    let mut core = Shutdown::new(timings);
    let mut app_ready = lc.app_ready_rx();
    let mut signals_open = true;
    loop {
        let phase = core.phase();
        let deadline = core.deadline();
        let (event, cause) = tokio::select! {
            biased;
            s = signals.recv(), if signals_open => match s {
                Some(s) => (Event::Signal, s.as_str()),
                None => {
                    signals_open = false;
                    continue;
                }
            },
            _ = lc.drain_requested.notified() => (Event::DrainRequested, "admin /drain"),
            // The sender lives in `lc`: this cannot fail.
            _ = app_ready.wait_for(|r| *r), if phase == Phase::Starting => (Event::AppReady, ""),
            _ = lc.drain.empty(), if phase == Phase::Draining => (Event::Empty, ""),
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                (Event::Timer, "")
            }
        };
        let now = Instant::now();
        if event == Event::Timer {
            // Arrivals are not events of their own (that would cost every request a message):
            // the latest is read here, when it can matter.
            if let Some(at) = lc.last_arrival_at() {
                core.handle(now, Event::Arrival(at));
            }
        }
        let step = core.handle(now, event);
        if step.repeated && event == Event::Signal {
            tracing::info!(
                signal = cause,
                phase = phase.as_str(),
                "signal received; shutdown already under way"
            );
        }
        if step.entered == Some(Phase::LameDuck) {
            lc.begin(core.signal_at().unwrap_or(now), cause);
        }
        if step.cut {
            let cut = lc.drain.in_flight() as u64;
            lc.add_cut(cut);
            tracing::warn!(
                requests_cut = cut,
                open_conns = lc.drain.open_connections(),
                drain_timeout_ms = timings.drain_timeout.as_millis() as u64,
                "drain timeout: cutting what is left"
            );
        }
        if let Some(to) = step.entered {
            lc.enter(to, now);
        }
        match step.exit {
            None => {}
            Some(Outcome::Forced) => {
                tracing::warn!(
                    signal = cause,
                    phase = phase.as_str(),
                    in_flight = lc.drain.in_flight(),
                    "second signal: exiting now, without finishing the drain"
                );
                return Outcome::Forced;
            }
            Some(Outcome::Drained) => {
                if step.cut {
                    // Cut connections close as soon as their tasks see Drained.
                    let _ = tokio::time::timeout(CUT_GRACE, lc.drain.empty()).await;
                }
                return Outcome::Drained;
            }
        }
    }
}
