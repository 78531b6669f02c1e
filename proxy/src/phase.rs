//! The phases of a lameduck process, in order: the one value every other part reads.
//!
//! ```text
//! Starting --app ready--> Serving --SIGTERM | /drain--> LameDuck --window over--> Draining --nothing left--> Drained
//!    \________________ SIGTERM | /drain before the app was ready ______^         (or drain timeout: cut)
//! ```
//!
//! When to move on is decided in one place, [`crate::lifecycle`]; this module only names the
//! phases and the legal edges, so that metrics, `/status` and the logs can name them too
//! without depending on the machine.

use serde::Serialize;

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

    pub fn from_u8(v: u8) -> Phase {
        Phase::ALL[v as usize]
    }

    /// Whether the shutdown has begun (the phase is LameDuck or later).
    pub fn is_shutting_down(self) -> bool {
        self >= Phase::LameDuck
    }

    /// The legal edges of the machine. Everything else is ignored, which makes every trigger
    /// (signal, `/drain`, probe) idempotent.
    pub fn can_go_to(self, to: Phase) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
