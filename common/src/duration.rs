//! Durations as people write them on a command line or in a pod spec.

use std::time::Duration;

/// `5s`, `250ms`, `1m30s`; a bare `0` means zero (any other bare number has no unit and is
/// refused, as `5` could mean seconds or milliseconds).
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("`{s}` is not a duration like 5s or 250ms ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_human() {
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse(" 250ms "), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse("5").is_err(), "a bare number has no unit");
        assert!(parse("5 parsecs").unwrap_err().contains("5 parsecs"));
    }
}
