//! Rollout limits as the Deployment controller computes them.

use crate::IntOrString;

/// The Deployment default for both `maxSurge` and `maxUnavailable`.
pub const DEFAULT_ROLLOUT_LIMIT: &str = "25%";

/// A `maxUnavailable` / `maxSurge` against `replicas`: a number as is, a percentage rounded down
/// for `maxUnavailable` and up for `maxSurge` (`round_up`), as the Deployment controller does.
/// None when the value is neither.
pub fn resolve_limit(limit: &IntOrString, replicas: i64, round_up: bool) -> Option<i64> {
    match limit {
        IntOrString::Int(i) => Some(*i),
        IntOrString::Str(s) => {
            let pct: i64 = s.strip_suffix('%')?.trim().parse().ok()?;
            let scaled = pct * replicas;
            Some(if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_the_controller() {
        let pct = |s: &str| IntOrString::Str(s.to_string());
        assert_eq!(resolve_limit(&pct("25%"), 2, false), Some(0));
        assert_eq!(resolve_limit(&pct("25%"), 2, true), Some(1));
        assert_eq!(resolve_limit(&pct("25%"), 3, true), Some(1));
        assert_eq!(resolve_limit(&pct("50%"), 4, false), Some(2));
        assert_eq!(resolve_limit(&IntOrString::Int(1), 4, false), Some(1));
        assert_eq!(resolve_limit(&pct("lots"), 4, false), None);
    }
}
