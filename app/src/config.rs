//! Every setting slowapp has, parsed and checked up front, in one place.
//!
//! Each flag is also an environment variable (`SLOWAPP_<FLAG>`), because a pod spec patches `env`
//! more easily than `args`. A wrong flag or value exits 2 with one line naming it, before anything
//! starts: a test or a lab that misspells a delay must fail loudly, not run with the default.

use std::net::SocketAddr;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;
use hyper::header::HeaderValue;

/// The exit code for a usage error: the same code clap uses, so every bad input exits alike.
pub const USAGE_EXIT_CODE: u8 = 2;

/// The seed's slow web app, ported: a slow `/`, `/ready`, a startup delay and a graceful
/// shutdown on SIGTERM. The app lameduck protects, and the bare baseline it is measured against.
#[derive(Debug, Clone, Parser)]
#[command(name = "slowapp", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on (the seed listens on `:9090`).
    #[arg(
        long,
        env = "SLOWAPP_LISTEN",
        default_value = "0.0.0.0:9090",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// How long to wait before binding the listener: the seed sleeps 10s to play an app with a
    /// slow start, so readiness probes have something to wait for.
    #[arg(long, env = "SLOWAPP_STARTUP_DELAY", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub startup_delay: Duration,

    /// How long `/` takes to answer, unless the request says `?delay_ms=N`.
    #[arg(long, env = "SLOWAPP_RESPONSE_DELAY", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub response_delay: Duration,

    /// After SIGTERM or SIGINT, how long in-flight requests may run before they are cut (the
    /// seed's `Shutdown` context timeout).
    #[arg(long, env = "SLOWAPP_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,

    /// Sent back as `X-Served-By` on every response, so a client can tell which pod answered.
    /// Default: the `POD_NAME` environment variable, else the hostname.
    #[arg(long, env = "SLOWAPP_NAME", value_parser = parse_name)]
    pub name: Option<HeaderValue>,

    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "SLOWAPP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

pub use lameduck_common::logging::LogFormat;

/// Why the command line was not turned into a [`Config`].
#[derive(Debug)]
pub enum CliOutcome {
    /// `--help` or `--version`: print the text and exit 0.
    Info(clap::Error),
    /// A usage error, already reduced to the one line to print before exiting 2.
    Usage(String),
}

impl Config {
    /// Parses the command line and the environment.
    ///
    /// clap's own report spans several lines (a tip, the usage, a pointer to `--help`); in a pod's
    /// log only the first line is worth reading, so that is the one kept.
    pub fn from_args() -> Result<Config, CliOutcome> {
        Config::try_parse().map_err(|err| match err.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => CliOutcome::Info(err),
            _ => CliOutcome::Usage(first_line(&err.render().to_string())),
        })
    }

    /// The value of `X-Served-By`: `--name`, else `POD_NAME`, else the hostname.
    ///
    /// Kubernetes sets the hostname to the pod name, but `POD_NAME` (from the downward API) wins
    /// because a pod with `hostname:` or `subdomain:` set reports something else.
    pub fn served_by(&self) -> HeaderValue {
        if let Some(name) = &self.name {
            return name.clone();
        }
        std::env::var("POD_NAME")
            .ok()
            .and_then(|n| parse_name(&n).ok())
            .or_else(|| hostname().and_then(|n| parse_name(&n).ok()))
            .unwrap_or_else(|| HeaderValue::from_static("slowapp"))
    }
}

/// Durations as people write them: `5s`, `250ms`, `1m30s`; a bare `0` means zero. The same
/// parser as lameduck's and the lab's.
pub use lameduck_common::duration::parse as parse_duration;

/// A name must fit in an HTTP header value, or every response would fail to build.
fn parse_name(s: &str) -> Result<HeaderValue, String> {
    if s.is_empty() {
        return Err("the name must not be empty".to_string());
    }
    HeaderValue::from_str(s).map_err(|_| format!("`{s}` cannot be sent as an HTTP header value"))
}

/// The kernel's hostname, which is the pod name in Kubernetes unless the pod spec changes it.
fn hostname() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?;
    let name = name.to_string_lossy().trim().to_string();
    (!name.is_empty()).then_some(name)
}

fn first_line(report: &str) -> String {
    let line = report
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("error: bad command line");
    format!("{} (see slowapp --help)", line.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_human() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err(), "a bare number has no unit");
        assert!(parse_duration("banana").unwrap_err().contains("banana"));
    }

    #[test]
    fn names_must_be_header_values() {
        assert_eq!(parse_name("pod-a").unwrap(), "pod-a");
        assert!(parse_name("").is_err());
        assert!(parse_name("a\nb").is_err());
    }

    #[test]
    fn defaults_match_the_seed() {
        let c = Config::try_parse_from(["slowapp"]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(c.startup_delay, Duration::from_secs(10));
        assert_eq!(c.response_delay, Duration::from_secs(5));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
    }

    #[test]
    fn usage_errors_are_one_line() {
        let line =
            first_line("error: unexpected argument '--x' found\n\n  tip: ...\n\nUsage: slowapp\n");
        assert_eq!(
            line,
            "error: unexpected argument '--x' found (see slowapp --help)"
        );
    }
}
