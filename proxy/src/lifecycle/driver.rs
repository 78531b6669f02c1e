//! The one task that runs the shutdown: it waits for whatever [`Shutdown`] says it is waiting
//! for (a signal, `/drain`, the app's readiness, the drain emptying, the next deadline), feeds
//! it in with the time, and carries out the answer: publish the phase, count the cut, exit.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::core::{Event, Outcome, Shutdown, Step, Timings};
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
    signals: mpsc::Receiver<Signal>,
) -> Outcome {
    let mut core = Shutdown::new(timings);
    let mut inputs = Inputs {
        app_ready: lc.app_ready_rx(),
        signals,
        signals_open: true,
    };
    loop {
        let phase = core.phase();
        let (event, cause) = inputs.next(&lc, phase, core.deadline()).await;
        let now = Instant::now();
        if event == Event::Timer {
            // Arrivals are not events of their own (that would cost every request a message):
            // the latest is read here, when it can matter.
            if let Some(at) = lc.last_arrival_at() {
                core.handle(now, Event::Arrival(at));
            }
        }
        let step = core.handle(now, event);
        carry_out(&lc, &core, &step, phase, (event, cause), now, timings);
        match step.exit {
            None => {}
            Some(Outcome::Forced) => return Outcome::Forced,
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

/// What the driver waits on besides the lifecycle's own notifications.
struct Inputs {
    signals: mpsc::Receiver<Signal>,
    signals_open: bool,
    app_ready: tokio::sync::watch::Receiver<bool>,
}

impl Inputs {
    /// The next event the core waits for in `phase`, and its cause for the logs: a signal,
    /// `/drain`, the app turning ready (Starting), the drain emptying (Draining), the deadline.
    async fn next(
        &mut self,
        lc: &Lifecycle,
        phase: Phase,
        deadline: Option<Instant>,
    ) -> (Event, &'static str) {
        loop {
            return tokio::select! {
                biased;
                s = self.signals.recv(), if self.signals_open => match s {
                    Some(s) => (Event::Signal, s.as_str()),
                    None => {
                        self.signals_open = false;
                        continue;
                    }
                },
                _ = lc.drain_requested.notified() => (Event::DrainRequested, "admin /drain"),
                // The sender lives in `lc`: this cannot fail.
                _ = self.app_ready.wait_for(|r| *r), if phase == Phase::Starting => {
                    (Event::AppReady, "")
                }
                _ = lc.drain.empty(), if phase == Phase::Draining => (Event::Empty, ""),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() => (Event::Timer, ""),
            };
        }
    }
}

/// Carries out a step of the core: the logs, the window's start, the count of what was cut,
/// the phase published.
fn carry_out(
    lc: &Lifecycle,
    core: &Shutdown,
    step: &Step,
    phase: Phase,
    (event, cause): (Event, &'static str),
    now: Instant,
    timings: Timings,
) {
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
    if step.exit == Some(Outcome::Forced) {
        tracing::warn!(
            signal = cause,
            phase = phase.as_str(),
            in_flight = lc.drain.in_flight(),
            "second signal: exiting now, without finishing the drain"
        );
    }
}

/// The driver on a paused clock: every timing edge, exact to the nanosecond, in no real time.
/// Requests are stood in for by what the data plane does for one: `note_arrival` and a drain
/// guard.
#[cfg(test)]
mod tests {
    use tokio::task::JoinHandle;

    use super::*;
    use crate::lifecycle::Window;
    use crate::metrics::Metrics;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    struct Rig {
        lc: Arc<Lifecycle>,
        signals: mpsc::Sender<Signal>,
        driver: JoinHandle<Outcome>,
        t0: Instant,
    }

    /// delay, quiet, max, drain timeout in ms.
    fn rig(delay: u64, quiet: u64, max: u64, drain: u64) -> Rig {
        let lc = Lifecycle::new(Metrics::new().unwrap().shutdown);
        let timings = Timings {
            window: Window {
                delay: MS(delay),
                quiet: MS(quiet),
                max: MS(max),
            },
            drain_timeout: MS(drain),
        };
        let (signals, rx) = mpsc::channel(4);
        let driver = tokio::spawn(drive(lc.clone(), timings, rx));
        Rig {
            lc,
            signals,
            driver,
            t0: Instant::now(),
        }
    }

    impl Rig {
        async fn ready(&self) {
            self.lc.set_app_ready(true);
            self.lc.reached(Phase::Serving).await;
        }

        async fn signal(&self) {
            self.signals.send(Signal::Term).await.unwrap();
            settle().await;
        }

        /// Sleeps until `ms` after the rig started, then lets the driver run.
        async fn at(&self, ms: u64) {
            tokio::time::sleep_until(self.t0 + MS(ms)).await;
            settle().await;
        }

        fn phase(&self) -> Phase {
            self.lc.phase()
        }

        /// How long the phase `p` lasted (or has lasted).
        fn spent(&self, p: Phase) -> Duration {
            self.lc
                .phase_durations()
                .into_iter()
                .find(|(q, _)| *q == p)
                .map(|(_, d)| d)
                .unwrap_or_else(|| panic!("{p:?} never entered"))
        }
    }

    /// Lets every task that can run, run, without moving the clock.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn minimum_window_then_an_empty_drain_ends_at_once() {
        let mut r = rig(5000, 0, 5000, 15000);
        r.ready().await;
        r.signal().await;
        assert_eq!(r.phase(), Phase::LameDuck);
        r.at(4999).await;
        assert_eq!(
            r.phase(),
            Phase::LameDuck,
            "still in the window 1 ms before its end"
        );
        r.at(5000).await;
        assert_eq!((&mut r.driver).await.unwrap(), Outcome::Drained);
        assert_eq!(r.spent(Phase::LameDuck), MS(5000));
        assert_eq!(r.spent(Phase::Draining), Duration::ZERO);
        assert_eq!(r.lc.requests_cut(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_period_follows_the_last_arrival() {
        let mut r = rig(1000, 500, 10_000, 15_000);
        r.ready().await;
        r.signal().await;
        for t in [200, 900, 1300, 1700] {
            r.at(t).await;
            r.lc.note_arrival();
        }
        r.at(2199).await;
        assert_eq!(r.phase(), Phase::LameDuck, "1700 + 500 not reached");
        r.at(2200).await;
        assert_eq!((&mut r.driver).await.unwrap(), Outcome::Drained);
        assert_eq!(r.spent(Phase::LameDuck), MS(2200));
        assert_eq!(r.lc.requests_after_signal(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_max_caps_the_window_however_requests_keep_coming() {
        let mut r = rig(1000, 500, 3000, 15_000);
        r.ready().await;
        r.signal().await;
        for t in (100..3000).step_by(100) {
            r.at(t).await;
            r.lc.note_arrival();
            assert_eq!(r.phase(), Phase::LameDuck);
        }
        r.at(3000).await;
        assert_eq!((&mut r.driver).await.unwrap(), Outcome::Drained);
        assert_eq!(r.spent(Phase::LameDuck), MS(3000));
    }

    #[tokio::test(start_paused = true)]
    async fn draining_waits_for_in_flight_requests_and_connections() {
        let mut r = rig(100, 0, 100, 15_000);
        r.ready().await;
        let conn = r.lc.drain.connection();
        let req = r.lc.drain.request();
        r.signal().await;
        r.at(100).await;
        assert_eq!(r.phase(), Phase::Draining);
        r.at(700).await;
        drop(req);
        settle().await;
        assert_eq!(r.phase(), Phase::Draining, "the connection is still open");
        r.at(900).await;
        drop(conn);
        assert_eq!((&mut r.driver).await.unwrap(), Outcome::Drained);
        assert_eq!(r.spent(Phase::Draining), MS(800));
        assert_eq!(r.lc.requests_cut(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_timeout_cuts_and_counts_what_is_left() {
        let mut r = rig(100, 0, 100, 300);
        r.ready().await;
        let _conn = r.lc.drain.connection();
        let _reqs = [r.lc.drain.request(), r.lc.drain.request()];
        r.signal().await;
        r.at(399).await;
        assert_eq!(r.phase(), Phase::Draining);
        r.at(400).await;
        assert_eq!(r.phase(), Phase::Drained, "cut at the drain timeout");
        assert_eq!(r.lc.requests_cut(), 2);
        assert_eq!(r.spent(Phase::Draining), MS(300));
        // The guards here are not tasks that see Drained: the exit waits its grace, no longer.
        assert_eq!((&mut r.driver).await.unwrap(), Outcome::Drained);
        assert_eq!(Instant::now() - r.t0, MS(400) + CUT_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn second_signal_forces_the_exit() {
        let mut r = rig(10_000, 0, 10_000, 15_000);
        r.ready().await;
        r.signal().await;
        r.at(50).await;
        r.signals.send(Signal::Int).await.unwrap();
        assert_eq!((&mut r.driver).await.unwrap(), Outcome::Forced);
        assert_eq!(Instant::now() - r.t0, MS(50), "at once");
    }

    #[tokio::test(start_paused = true)]
    async fn signal_before_the_app_is_ready_still_drains() {
        let mut r = rig(100, 0, 100, 15_000);
        r.signal().await;
        assert_eq!(r.phase(), Phase::LameDuck, "straight from Starting");
        r.lc.set_app_ready(true);
        settle().await;
        assert_eq!(
            r.phase(),
            Phase::LameDuck,
            "readiness after the signal changes nothing"
        );
        r.at(100).await;
        assert_eq!((&mut r.driver).await.unwrap(), Outcome::Drained);
        assert!(r
            .lc
            .phase_durations()
            .iter()
            .all(|(p, _)| *p != Phase::Serving));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_request_drains_and_then_waits_for_a_signal() {
        let mut r = rig(200, 0, 200, 15_000);
        r.ready().await;
        r.lc.request_drain();
        settle().await;
        assert_eq!(r.phase(), Phase::LameDuck);
        assert_eq!(r.lc.signal_cause(), Some("admin /drain"));
        r.at(200).await;
        assert_eq!(r.phase(), Phase::Drained);
        r.at(60_000).await;
        assert!(
            !r.driver.is_finished(),
            "drained, but stays up until its own SIGTERM"
        );
        r.signal().await;
        assert_eq!((&mut r.driver).await.unwrap(), Outcome::Drained);
        assert_eq!(r.spent(Phase::LameDuck), MS(200));
    }

    #[tokio::test(start_paused = true)]
    async fn pingora_learns_the_lame_duck_window_from_the_phase() {
        let r = rig(1000, 0, 1000, 15_000);
        let mut lame = r.lc.lame_duck_watch();
        r.ready().await;
        settle().await;
        assert!(!*lame.borrow(), "serving: no GOAWAY");
        r.signal().await;
        assert!(*lame.borrow_and_update(), "the window opened: GOAWAY");
        // A watch made later starts out true.
        assert!(*r.lc.lame_duck_watch().borrow());
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_signal_channel_is_not_a_signal() {
        let Rig {
            lc,
            signals,
            driver,
            ..
        } = rig(100, 0, 100, 15_000);
        drop(signals);
        lc.set_app_ready(true);
        lc.request_drain();
        lc.reached(Phase::Drained).await;
        tokio::time::sleep(MS(60_000)).await;
        assert!(!driver.is_finished());
    }
}
