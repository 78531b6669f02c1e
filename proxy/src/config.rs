//! Every setting lameduck has, parsed and validated up front, in one place.
//!
//! Each flag is also an environment variable (`LAMEDUCK_<FLAG>`), because in a pod spec `env` is
//! often easier to patch (kustomize, Helm) than `args`. A wrong flag or value exits 2 with one
//! line naming it: clap does that for syntax, [`RunArgs::validate`] for the relations between
//! values (the shutdown budget above all), so a misconfigured sidecar never starts half-right.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// Safety margin the budget check adds on top of the three shutdown stages: the kubelet's own
/// signalling, process exit and scheduling jitter all come out of the same grace period.
pub const BUDGET_MARGIN: Duration = Duration::from_secs(2);

/// The proxy's own command line, `lameduck [FLAGS]`, without the subcommands: what `check`
/// and `inject` read a container's lameduck args with (a subcommand there is an error: it
/// would not run the proxy). The binary's whole command line is [`crate::cli::Cli`].
#[derive(Debug, Parser)]
#[command(
    name = "lameduck",
    // As the binary does: a flag given twice takes its last value.
    args_override_self = true
)]
pub struct RunCommand {
    #[command(flatten)]
    pub run: RunArgs,
}

/// The flags of the proxy itself (`lameduck [FLAGS]`).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Data-plane address: what the Service's targetPort points at.
    #[arg(long, env = "LAMEDUCK_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// The app, as host:port. Resolved once at start; requests never go anywhere else.
    #[arg(long, env = "LAMEDUCK_UPSTREAM", default_value = "127.0.0.1:9090", value_parser = parse_upstream)]
    pub upstream: SocketAddr,

    /// Admin address: /ready /live /drain /status /metrics. Never served on the data port.
    #[arg(long, env = "LAMEDUCK_ADMIN_LISTEN", default_value = "0.0.0.0:9901")]
    pub admin_listen: SocketAddr,

    /// How to tell that the app is ready: `http:/PATH` (a 2xx is ready), `tcp` (it accepts a
    /// connection), `grpc` / `grpc:SERVICE` (grpc.health.v1 Check over h2c says SERVING) or
    /// `none` (always ready).
    #[arg(long, env = "LAMEDUCK_APP_PROBE", default_value = "http:/ready")]
    pub app_probe: AppProbe,

    /// How often the app probe runs.
    #[arg(long, env = "LAMEDUCK_APP_PROBE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub app_probe_interval: Duration,

    /// How long one app probe may take before it counts as a failure.
    #[arg(long, env = "LAMEDUCK_APP_PROBE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub app_probe_timeout: Duration,

    /// While starting, requests are held until the app is ready, for at most this long; then
    /// they get 503 with Retry-After.
    #[arg(long, env = "LAMEDUCK_STARTUP_HOLD", default_value = "10s", value_parser = parse_duration)]
    pub startup_hold: Duration,

    /// Minimum lame-duck window: how long after the shutdown signal lameduck keeps serving new
    /// requests while endpoint removal propagates.
    #[arg(long, env = "LAMEDUCK_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// After the minimum window, the window ends once no new request has arrived for this long.
    /// 0 makes the window fixed at --shutdown-delay.
    #[arg(long, env = "LAMEDUCK_SHUTDOWN_QUIET", default_value = "1s", value_parser = parse_duration)]
    pub shutdown_quiet: Duration,

    /// Hard cap on the lame-duck window, however late requests keep arriving.
    #[arg(long, env = "LAMEDUCK_SHUTDOWN_DELAY_MAX", default_value = "15s", value_parser = parse_duration)]
    pub shutdown_delay_max: Duration,

    /// Cap on draining: in-flight requests still running after this are cut (and counted).
    #[arg(long, env = "LAMEDUCK_DRAIN_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// `/ready` during the lame-duck window: `fail` (503 at once; the default) or `serve` (stay
    /// 200, for clusters relying on kube-proxy's fallback to serving-but-terminating endpoints).
    #[arg(long, env = "LAMEDUCK_READINESS_ON_SHUTDOWN", value_enum, default_value_t = ReadinessOnShutdown::Fail)]
    pub readiness_on_shutdown: ReadinessOnShutdown,

    /// The pod's terminationGracePeriodSeconds. When given, lameduck refuses to start if the
    /// shutdown budget does not fit in it.
    #[arg(long, env = "LAMEDUCK_TERMINATION_GRACE_PERIOD", value_parser = parse_duration)]
    pub termination_grace_period: Option<Duration>,

    /// How long the app's own graceful shutdown may take after lameduck has drained (the seed
    /// app's own timeout is 10s). Used only by the budget check.
    #[arg(long, env = "LAMEDUCK_APP_SHUTDOWN_BUDGET", default_value = "10s", value_parser = parse_duration)]
    pub app_shutdown_budget: Duration,

    /// Most client connections open at once on the data plane; past it, new connections wait
    /// in the listen backlog. Default: half of what the file-descriptor limit leaves after 64
    /// kept for the admin plane (each client connection may hold one to the app too).
    #[arg(long, env = "LAMEDUCK_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Keep-alive connections from clients idle for this long are closed. Longer than the usual
    /// 60s of ingress controllers and cloud load balancers, so the client side closes first.
    #[arg(long, env = "LAMEDUCK_IDLE_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// A request head must arrive whole within this, and a request body may not pause for
    /// longer; else the client is disconnected (slowloris protection).
    #[arg(long, env = "LAMEDUCK_CLIENT_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub client_read_timeout: Duration,

    /// Timeout for connecting to the app; a failure is answered 502.
    #[arg(long, env = "LAMEDUCK_UPSTREAM_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub upstream_connect_timeout: Duration,

    /// How long the app may take to send a response head, and then to send each next piece of
    /// a body; a timeout before the head is answered 504.
    #[arg(long, env = "LAMEDUCK_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Worker threads. A sidecar shares the pod's CPU with its app: 1 is plenty for most.
    #[arg(long, env = "LAMEDUCK_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,

    /// The protocol spoken to the app: `auto` sends a client's HTTP/2 requests over h2c (prior
    /// knowledge; what gRPC needs) and HTTP/1.x ones over HTTP/1.1; `h2c` sends everything over
    /// h2c (a gRPC-only app); `http1` sends everything over HTTP/1.1 (an app without h2c).
    #[arg(long, env = "LAMEDUCK_UPSTREAM_PROTOCOL", value_enum, default_value_t = UpstreamProtocol::Auto)]
    pub upstream_protocol: UpstreamProtocol,

    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "LAMEDUCK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadinessOnShutdown {
    Fail,
    Serve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpstreamProtocol {
    Auto,
    Http1,
    H2c,
}

pub use lameduck_common::logging::LogFormat;

/// How lameduck decides that the app behind it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppProbe {
    /// `GET PATH` on the upstream; a 2xx is ready.
    Http { path: String },
    /// The upstream accepts a TCP connection.
    Tcp,
    /// `grpc.health.v1.Health/Check` for `service` over h2c answers `SERVING` (`""`: the
    /// server as a whole, as the gRPC health protocol defines it).
    Grpc { service: String },
    /// Always ready: for apps with no readiness endpoint.
    None,
}

impl FromStr for AppProbe {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(AppProbe::Tcp),
            "none" => Ok(AppProbe::None),
            "grpc" => Ok(AppProbe::Grpc {
                service: String::new(),
            }),
            _ => {
                if let Some(path) = s.strip_prefix("http:") {
                    if path.starts_with('/') && !path.contains(char::is_whitespace) {
                        return Ok(AppProbe::Http {
                            path: path.to_string(),
                        });
                    }
                }
                if let Some(service) = s.strip_prefix("grpc:") {
                    if !service.is_empty() && !service.contains(char::is_whitespace) {
                        return Ok(AppProbe::Grpc {
                            service: service.to_string(),
                        });
                    }
                }
                Err(format!(
                    "expected `http:/PATH`, `tcp`, `grpc`, `grpc:SERVICE` or `none`, got `{s}`"
                ))
            }
        }
    }
}

impl fmt::Display for AppProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppProbe::Http { path } => write!(f, "http:{path}"),
            AppProbe::Tcp => f.write_str("tcp"),
            AppProbe::Grpc { service } if service.is_empty() => f.write_str("grpc"),
            AppProbe::Grpc { service } => write!(f, "grpc:{service}"),
            AppProbe::None => f.write_str("none"),
        }
    }
}

/// File descriptors the default `--max-connections` leaves for the admin plane, the listeners
/// and the logs.
const FDS_KEPT: u64 = 64;

/// Durations as people write them: `5s`, `250ms`, `1m30s`; a bare `0` means zero. The same
/// parser as slowapp's and the lab's.
pub use lameduck_common::duration::parse as parse_duration;

fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("`{s}` is not a host:port that resolves ({e})"))?;
    addrs
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

/// The time a pod needs between the start of its termination and the app's exit, stage by stage.
/// Kubernetes kills the pod at terminationGracePeriodSeconds whatever is still running, so this
/// must fit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownBudget {
    pub shutdown_delay_max: Duration,
    pub drain_timeout: Duration,
    pub app_shutdown_budget: Duration,
    pub margin: Duration,
}

impl ShutdownBudget {
    pub fn total(&self) -> Duration {
        self.shutdown_delay_max + self.drain_timeout + self.app_shutdown_budget + self.margin
    }
}

impl fmt::Display for ShutdownBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shutdown-delay-max {} + drain-timeout {} + app-shutdown-budget {} + margin {} = {}",
            fmt_duration(self.shutdown_delay_max),
            fmt_duration(self.drain_timeout),
            fmt_duration(self.app_shutdown_budget),
            fmt_duration(self.margin),
            fmt_duration(self.total()),
        )
    }
}

/// The first line of a flag error, without clap's `error: ` prefix: what `check` and `inject`
/// quote when the flags they read from a manifest would not start lameduck.
pub fn flag_error_summary(e: &clap::Error) -> String {
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error: ")
        .to_string()
}

/// `1.5s` style for messages (humantime would print `1s 500ms`).
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A configuration that parses but cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--shutdown-delay {delay} is longer than --shutdown-delay-max {max}")]
    DelayOverMax { delay: String, max: String },
    #[error("--termination-grace-period {grace} is too short: {budget}; raise terminationGracePeriodSeconds or lower the budget")]
    GraceTooShort {
        grace: String,
        budget: ShutdownBudget,
    },
    #[error("--listen and --admin-listen are both {0}: the admin plane needs its own port")]
    SamePort(SocketAddr),
}

impl RunArgs {
    /// `--max-connections`, or the default derived from the file-descriptor limit.
    pub fn max_connections(&self) -> usize {
        match self.max_connections {
            Some(n) => n as usize,
            None => {
                let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
                (soft.saturating_sub(FDS_KEPT) / 2).clamp(16, 1 << 20) as usize
            }
        }
    }

    pub fn shutdown_budget(&self) -> ShutdownBudget {
        ShutdownBudget {
            shutdown_delay_max: self.shutdown_delay_max,
            drain_timeout: self.drain_timeout,
            app_shutdown_budget: self.app_shutdown_budget,
            margin: BUDGET_MARGIN,
        }
    }

    /// Checks the relations between values that clap cannot see.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shutdown_delay > self.shutdown_delay_max {
            return Err(ConfigError::DelayOverMax {
                delay: fmt_duration(self.shutdown_delay),
                max: fmt_duration(self.shutdown_delay_max),
            });
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(ConfigError::SamePort(self.listen));
        }
        if let Some(grace) = self.termination_grace_period {
            let budget = self.shutdown_budget();
            if budget.total() > grace {
                return Err(ConfigError::GraceTooShort {
                    grace: fmt_duration(grace),
                    budget,
                });
            }
        }
        Ok(())
    }
}

/// The settings, parsed once and split by the part that uses them (as linkerd does): each part
/// is handed its own config and sees nothing else.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_plane: DataPlaneConfig,
    pub admin: AdminConfig,
    pub probe: ProbeConfig,
    pub shutdown: ShutdownConfig,
    pub runtime: RuntimeConfig,
}

/// The client side and the forwarding to the app.
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub upstream_connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub client_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub startup_hold: Duration,
    /// `--max-connections`, or its default from the file-descriptor limit.
    pub max_connections: usize,
    pub upstream_protocol: UpstreamProtocol,
}

/// The admin plane; the upstream and probe only appear in its `/ready` answers.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub readiness_on_shutdown: ReadinessOnShutdown,
    pub upstream: SocketAddr,
    pub app_probe: AppProbe,
}

/// The app readiness probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub upstream: SocketAddr,
    pub probe: AppProbe,
    pub interval: Duration,
    pub timeout: Duration,
}

/// The lame-duck window and the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    pub delay: Duration,
    pub quiet: Duration,
    pub delay_max: Duration,
    pub drain_timeout: Duration,
}

/// The process around the parts.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeConfig {
    pub threads: u16,
    pub log_format: LogFormat,
}

impl RunArgs {
    /// Validates the flags and splits them into the per-part configs.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        self.validate()?;
        Ok(Config {
            data_plane: DataPlaneConfig {
                listen: self.listen,
                upstream: self.upstream,
                upstream_connect_timeout: self.upstream_connect_timeout,
                upstream_timeout: self.upstream_timeout,
                client_read_timeout: self.client_read_timeout,
                idle_timeout: self.idle_timeout,
                startup_hold: self.startup_hold,
                max_connections: self.max_connections(),
                upstream_protocol: self.upstream_protocol,
            },
            admin: AdminConfig {
                listen: self.admin_listen,
                readiness_on_shutdown: self.readiness_on_shutdown,
                upstream: self.upstream,
                app_probe: self.app_probe.clone(),
            },
            probe: ProbeConfig {
                upstream: self.upstream,
                probe: self.app_probe,
                interval: self.app_probe_interval,
                timeout: self.app_probe_timeout,
            },
            shutdown: ShutdownConfig {
                delay: self.shutdown_delay,
                quiet: self.shutdown_quiet,
                delay_max: self.shutdown_delay_max,
                drain_timeout: self.drain_timeout,
            },
            runtime: RuntimeConfig {
                threads: self.threads,
                log_format: self.log_format,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RunArgs {
        let mut argv = vec!["lameduck"];
        argv.extend_from_slice(args);
        RunCommand::try_parse_from(argv).expect("parses").run
    }

    #[test]
    fn app_probe_forms() {
        assert_eq!("tcp".parse::<AppProbe>(), Ok(AppProbe::Tcp));
        assert_eq!("none".parse::<AppProbe>(), Ok(AppProbe::None));
        assert_eq!(
            "http:/healthz".parse::<AppProbe>(),
            Ok(AppProbe::Http {
                path: "/healthz".into()
            })
        );
        assert!("http:healthz".parse::<AppProbe>().is_err());
        assert_eq!(
            "grpc".parse::<AppProbe>(),
            Ok(AppProbe::Grpc {
                service: String::new()
            })
        );
        let named = "grpc:slowapp.v1.Slow".parse::<AppProbe>();
        assert_eq!(
            named,
            Ok(AppProbe::Grpc {
                service: "slowapp.v1.Slow".into()
            })
        );
        assert_eq!(named.unwrap().to_string(), "grpc:slowapp.v1.Slow");
        assert!("grpc:".parse::<AppProbe>().is_err());
        assert!("grpcx".parse::<AppProbe>().is_err());
    }

    #[test]
    fn budget_arithmetic_is_spelled_out() {
        let args = parse(&["--termination-grace-period", "30s"]);
        let err = args.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "--termination-grace-period 30s is too short: shutdown-delay-max 15s + drain-timeout 15s \
             + app-shutdown-budget 10s + margin 2s = 42s; raise terminationGracePeriodSeconds or lower the budget"
        );
        parse(&["--termination-grace-period", "42s"])
            .validate()
            .unwrap();
    }

    #[test]
    fn delay_must_not_exceed_max() {
        let args = parse(&["--shutdown-delay", "20s"]);
        assert!(matches!(
            args.validate(),
            Err(ConfigError::DelayOverMax { .. })
        ));
    }

    #[test]
    fn each_part_gets_its_own_settings() {
        let c = parse(&[
            "--upstream",
            "127.0.0.1:7000",
            "--shutdown-delay",
            "2s",
            "--shutdown-quiet",
            "0",
            "--app-probe",
            "tcp",
            "--readiness-on-shutdown",
            "serve",
            "--threads",
            "2",
        ])
        .into_config()
        .unwrap();
        let app: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(c.data_plane.upstream, app);
        assert_eq!(c.probe.upstream, app);
        assert_eq!(c.probe.probe, AppProbe::Tcp);
        assert_eq!(c.admin.readiness_on_shutdown, ReadinessOnShutdown::Serve);
        assert_eq!(c.shutdown.delay, Duration::from_secs(2));
        assert_eq!(c.shutdown.quiet, Duration::ZERO);
        assert_eq!(c.runtime.threads, 2);
        assert!(
            parse(&["--shutdown-delay", "20s"]).into_config().is_err(),
            "validated"
        );
    }

    #[test]
    fn zero_is_a_duration() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
