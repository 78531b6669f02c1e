//! The flags' value parsers, shared by `lab rollout` (cli.rs) and `lab loadgen` (e2e/): each
//! says what it expected, which clap prints with the flag's name before exiting 2.

use std::time::Duration;

/// The same duration parser as lameduck's and slowapp's.
pub(crate) use lameduck_common::duration::parse as parse_duration;

/// `MIN..MAX` or one duration (both ends the same).
pub(crate) fn parse_lag(s: &str) -> Result<(Duration, Duration), String> {
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (parse_duration(a)?, parse_duration(b)?),
        None => {
            let d = parse_duration(s)?;
            (d, d)
        }
    };
    if b < a {
        return Err(format!("`{s}`: the maximum is below the minimum"));
    }
    Ok((a, b))
}

/// A time scale: a factor in (0, 10].
pub(crate) fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 10.0 => Ok(v),
        _ => Err(format!("`{s}` is not a factor in (0, 10]")),
    }
}

pub(crate) fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// A share of the load: 0 to 1.
pub(crate) fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a share between 0 and 1")),
    }
}
