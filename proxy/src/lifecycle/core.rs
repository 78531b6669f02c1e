//! The shutdown rule itself, with no I/O and no clock of its own (sans-IO, as quinn-proto does
//! for QUIC): it is told what happened and when, and answers where the process is now and when
//! it next needs to be woken. The [driver](super::driver) does the waiting; tests drive this
//! with made-up instants, exactly.
//!
//! ```text
//! Starting --app ready--> Serving --signal | /drain--> LameDuck --window over--> Draining --nothing left--> Drained
//!    \_______________ signal | /drain before the app was ready ______^              (or drain timeout: cut)
//! ```
//!
//! The process exits once it is Drained *and* has had a process signal: drained early by a
//! preStop `/drain` (native sidecar), lameduck stays up until its own SIGTERM. A second signal
//! before Drained forces the exit.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::ShutdownConfig;
use crate::phase::Phase;

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

/// The shutdown's timings, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub window: Window,
    /// Cap on Draining: what is still running after it is cut.
    pub drain_timeout: Duration,
}

impl From<ShutdownConfig> for Timings {
    fn from(c: ShutdownConfig) -> Self {
        Timings {
            window: Window {
                delay: c.delay,
                quiet: c.quiet,
                max: c.delay_max,
            },
            drain_timeout: c.drain_timeout,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Drained and signalled: every request had its answer (or was cut at the drain timeout).
    Drained,
    /// A second signal ended the process before it drained.
    Forced,
}

impl Outcome {
    /// 0 drained, 1 forced (the same code as a runtime failure: the pod did not end cleanly).
    pub fn exit_code(self) -> std::process::ExitCode {
        match self {
            Outcome::Drained => std::process::ExitCode::SUCCESS,
            Outcome::Forced => std::process::ExitCode::from(1),
        }
    }
}

/// What the core is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The app probe succeeded.
    AppReady,
    /// A process signal (SIGTERM, SIGINT).
    Signal,
    /// A `/drain` call: begins the shutdown as a signal does, but does not count towards exit.
    DrainRequested,
    /// A request arrived at this instant (the latest one known).
    Arrival(Instant),
    /// Every connection and in-flight request is gone (reported only while Draining).
    Empty,
    /// The driver woke at (or after) [`Shutdown::deadline`].
    Timer,
}

/// The answer to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    /// The phase entered, if the event moved the machine.
    pub entered: Option<Phase>,
    /// The drain timeout expired: what is still running is cut (and Drained is entered).
    pub cut: bool,
    /// The process should end now, this way.
    pub exit: Option<Outcome>,
    /// A signal or `/drain` came while the shutdown was already under way (and did not end
    /// the process): the driver logs it.
    pub repeated: bool,
}

/// The state of the shutdown; see the module docs.
#[derive(Debug, Clone)]
pub struct Shutdown {
    timings: Timings,
    phase: Phase,
    signal_at: Option<Instant>,
    /// Process signals received (a `/drain` is not one).
    signals: u32,
    last_arrival: Option<Instant>,
    draining_at: Option<Instant>,
}

impl Shutdown {
    pub fn new(timings: Timings) -> Self {
        Shutdown {
            timings,
            phase: Phase::Starting,
            signal_at: None,
            signals: 0,
            last_arrival: None,
            draining_at: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the shutdown began.
    pub fn signal_at(&self) -> Option<Instant> {
        self.signal_at
    }

    /// When the driver must next wake the core with [`Event::Timer`], if ever.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::LameDuck => {
                let signal = self.signal_at?;
                let last = self
                    .last_arrival
                    .map(|t| t.saturating_duration_since(signal));
                Some(signal + self.timings.window.end(last))
            }
            Phase::Draining => Some(self.draining_at? + self.timings.drain_timeout),
            _ => None,
        }
    }

    /// Applies one event that happened at `now`.
    pub fn handle(&mut self, now: Instant, event: Event) -> Step {
        match event {
            Event::AppReady if self.phase == Phase::Starting => self.enter(Phase::Serving),
            Event::AppReady => Step::default(),
            Event::Signal => {
                self.signals += 1;
                match self.phase {
                    Phase::Drained => Step {
                        exit: Some(Outcome::Drained),
                        ..Step::default()
                    },
                    _ if self.signals > 1 => Step {
                        exit: Some(Outcome::Forced),
                        ..Step::default()
                    },
                    _ => self.begin(now),
                }
            }
            Event::DrainRequested => self.begin(now),
            Event::Arrival(at) => {
                if self.phase == Phase::LameDuck && self.signal_at.is_some_and(|s| at >= s) {
                    self.last_arrival = self.last_arrival.max(Some(at));
                }
                Step::default()
            }
            Event::Empty if self.phase == Phase::Draining => self.finish(false),
            Event::Empty => Step::default(),
            Event::Timer => match self.deadline() {
                Some(at) if now >= at && self.phase == Phase::LameDuck => {
                    self.draining_at = Some(now);
                    self.enter(Phase::Draining)
                }
                Some(at) if now >= at && self.phase == Phase::Draining => self.finish(true),
                _ => Step::default(),
            },
        }
    }

    /// A signal or `/drain`: the first one opens the lame-duck window.
    fn begin(&mut self, now: Instant) -> Step {
        if self.signal_at.is_some() {
            return Step {
                repeated: true,
                ..Step::default()
            };
        }
        self.signal_at = Some(now);
        self.enter(Phase::LameDuck)
    }

    fn finish(&mut self, cut: bool) -> Step {
        let mut step = self.enter(Phase::Drained);
        step.cut = cut;
        if self.signals > 0 {
            step.exit = Some(Outcome::Drained);
        }
        step
    }

    fn enter(&mut self, to: Phase) -> Step {
        debug_assert!(self.phase.can_go_to(to), "{:?} -> {:?}", self.phase, to);
        self.phase = to;
        Step {
            entered: Some(to),
            ..Step::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const S: fn(u64) -> Duration = Duration::from_secs;

    fn machine(delay: u64, quiet: u64, max: u64, drain: u64) -> Shutdown {
        Shutdown::new(Timings {
            window: Window {
                delay: S(delay),
                quiet: S(quiet),
                max: S(max),
            },
            drain_timeout: S(drain),
        })
    }

    fn entered(step: Step) -> Option<Phase> {
        step.entered
    }

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
    fn the_whole_way_with_a_quiet_front() {
        let t0 = Instant::now();
        let mut m = machine(5, 1, 15, 10);
        assert_eq!(m.deadline(), None, "nothing to wait for before the signal");
        assert_eq!(entered(m.handle(t0, Event::AppReady)), Some(Phase::Serving));
        assert_eq!(
            entered(m.handle(t0 + S(1), Event::Signal)),
            Some(Phase::LameDuck)
        );
        assert_eq!(m.deadline(), Some(t0 + S(6)), "the minimum window");
        // Woken early (a spurious wake-up): nothing moves.
        assert_eq!(m.handle(t0 + S(5), Event::Timer), Step::default());
        assert_eq!(
            entered(m.handle(t0 + S(6), Event::Timer)),
            Some(Phase::Draining)
        );
        assert_eq!(m.deadline(), Some(t0 + S(16)), "the drain timeout");
        let step = m.handle(t0 + S(7), Event::Empty);
        assert_eq!(step.entered, Some(Phase::Drained));
        assert!(!step.cut);
        assert_eq!(step.exit, Some(Outcome::Drained), "drained and signalled");
        assert_eq!(m.deadline(), None);
    }

    #[test]
    fn late_arrivals_hold_the_window_open_until_quiet_then_the_max_ends_it() {
        let t0 = Instant::now();
        let mut m = machine(5, 2, 15, 10);
        m.handle(t0, Event::AppReady);
        m.handle(t0, Event::Signal);
        m.handle(t0 + S(1), Event::Arrival(t0 + S(1)));
        assert_eq!(
            m.deadline(),
            Some(t0 + S(5)),
            "early arrival: the minimum still"
        );
        m.handle(t0 + S(6), Event::Arrival(t0 + S(6)));
        assert_eq!(
            m.deadline(),
            Some(t0 + S(8)),
            "quiet period after the last arrival"
        );
        assert_eq!(m.handle(t0 + S(7), Event::Timer).entered, None);
        // An arrival reported late (the driver reads them at wake-up) still counts when it was.
        m.handle(t0 + S(8), Event::Arrival(t0 + MS(7900)));
        assert_eq!(m.deadline(), Some(t0 + MS(9900)));
        m.handle(t0 + S(9), Event::Arrival(t0 + S(14)));
        assert_eq!(m.deadline(), Some(t0 + S(15)), "capped at the max");
        assert_eq!(
            entered(m.handle(t0 + S(15), Event::Timer)),
            Some(Phase::Draining)
        );
        // Arrivals while draining (already-open connections) no longer move anything.
        m.handle(t0 + S(16), Event::Arrival(t0 + S(16)));
        assert_eq!(m.deadline(), Some(t0 + S(25)));
    }

    #[test]
    fn drain_timeout_cuts() {
        let t0 = Instant::now();
        let mut m = machine(1, 0, 1, 3);
        m.handle(t0, Event::AppReady);
        m.handle(t0, Event::Signal);
        m.handle(t0 + S(1), Event::Timer);
        assert_eq!(m.handle(t0 + MS(3999), Event::Timer), Step::default());
        let step = m.handle(t0 + S(4), Event::Timer);
        assert_eq!(step.entered, Some(Phase::Drained));
        assert!(step.cut);
        assert_eq!(step.exit, Some(Outcome::Drained));
        // The tracker emptying after the cut changes nothing.
        assert_eq!(m.handle(t0 + S(5), Event::Empty), Step::default());
    }

    #[test]
    fn a_second_signal_forces_the_exit_unless_drained() {
        let t0 = Instant::now();
        let mut m = machine(5, 0, 5, 10);
        m.handle(t0, Event::Signal);
        assert_eq!(
            m.phase(),
            Phase::LameDuck,
            "a signal before ready opens the window"
        );
        assert_eq!(
            m.handle(t0 + S(1), Event::Signal).exit,
            Some(Outcome::Forced)
        );

        let mut m = machine(1, 0, 1, 10);
        m.handle(t0, Event::Signal);
        m.handle(t0 + S(1), Event::Timer);
        m.handle(t0 + S(1), Event::Empty);
        assert_eq!(m.phase(), Phase::Drained);
        assert_eq!(
            m.handle(t0 + S(2), Event::Signal).exit,
            Some(Outcome::Drained)
        );
    }

    #[test]
    fn drain_request_begins_but_only_a_signal_ends_the_process() {
        let t0 = Instant::now();
        let mut m = machine(1, 0, 1, 10);
        m.handle(t0, Event::AppReady);
        assert_eq!(
            entered(m.handle(t0, Event::DrainRequested)),
            Some(Phase::LameDuck)
        );
        assert!(m.handle(t0, Event::DrainRequested).repeated);
        m.handle(t0 + S(1), Event::Timer);
        let step = m.handle(t0 + S(1), Event::Empty);
        assert_eq!(step.entered, Some(Phase::Drained));
        assert_eq!(step.exit, None, "stays up for its own SIGTERM");
        assert_eq!(
            m.handle(t0 + S(9), Event::Signal).exit,
            Some(Outcome::Drained)
        );
    }

    #[test]
    fn signal_during_the_window_after_a_drain_request_is_not_a_second_signal() {
        let t0 = Instant::now();
        let mut m = machine(5, 0, 5, 10);
        m.handle(t0, Event::DrainRequested);
        let step = m.handle(t0 + S(1), Event::Signal);
        assert_eq!(step.exit, None);
        assert!(step.repeated);
        assert_eq!(
            m.deadline(),
            Some(t0 + S(5)),
            "the window still runs from /drain"
        );
    }

    #[test]
    fn app_readiness_after_the_signal_changes_nothing() {
        let t0 = Instant::now();
        let mut m = machine(5, 0, 5, 10);
        m.handle(t0, Event::Signal);
        assert_eq!(m.handle(t0, Event::AppReady), Step::default());
        assert_eq!(m.phase(), Phase::LameDuck);
    }
}
