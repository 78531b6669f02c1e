//! Time scale: one factor applied to every duration of the modelled cluster.
//!
//! The seed's app starts in 10 s and answers in 5 s; a faithful rollout of two pods takes a
//! minute. Multiplying every modelled duration by the same factor (manifest probe timings,
//! preStop sleeps, the grace period, the durations in container args and env, the binaries'
//! own duration defaults, propagation lag, request delays) keeps their ratios, which is what
//! decides whether a request is lost, while the run finishes in seconds. Only real machine
//! costs (process start, a TCP handshake, an nginx reload) are not scaled: at very small factors
//! they start to weigh, which is why the demo stops at 0.1.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale(pub f64);

impl Scale {
    pub fn apply(self, d: Duration) -> Duration {
        Duration::from_secs_f64(d.as_secs_f64() * self.0)
    }

    /// Rewrites a duration-valued string (`5s`, `250ms`, `1m30s`) scaled; `None` if the string
    /// is not a duration with a unit (addresses, names and bare numbers are left alone).
    pub fn rewrite_duration(self, s: &str) -> Option<String> {
        let t = s.trim();
        if !t.starts_with(|c: char| c.is_ascii_digit())
            || !t.ends_with(|c: char| c.is_ascii_alphabetic())
        {
            return None;
        }
        let d = humantime::parse_duration(t).ok()?;
        Some(format_duration(self.apply(d)))
    }
}

/// A duration every binary of the project parses back: whole milliseconds when exact,
/// microseconds otherwise.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_scaled_and_other_values_left_alone() {
        let s = Scale(0.1);
        assert_eq!(s.rewrite_duration("5s").as_deref(), Some("500ms"));
        assert_eq!(s.rewrite_duration("1m30s").as_deref(), Some("9000ms"));
        assert_eq!(s.rewrite_duration("15ms").as_deref(), Some("1500us"));
        assert_eq!(s.rewrite_duration("0.0.0.0:8080"), None);
        assert_eq!(s.rewrite_duration("http:/ready"), None);
        assert_eq!(s.rewrite_duration("2"), None);
    }
}
