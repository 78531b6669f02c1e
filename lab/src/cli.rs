//! The command line: every flag, parsed and checked (the matrix runs it: `matrix.rs`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::fronts::FrontKind;
use crate::measure::LoadKind;
use crate::values::{parse_duration, parse_lag, parse_scale, positive_f64, share};

#[derive(Debug, Parser)]
#[command(
    name = "lab",
    version,
    about = "Rolling-restart laboratory: replays `kubectl rollout restart` under load through a Service, an nginx ingress and a HAProxy router, and shows every request",
    long_about = "Rolling-restart laboratory. Without arguments it runs the demo matrix (every built-in scenario through every front) and says where the pictures are; `lab [FLAGS]` is `lab rollout [FLAGS]`.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub rollout: RolloutArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run rolling restarts of each scenario through each front, under open-loop load.
    Rollout(RolloutArgs),
    /// The lab's load against one address (a real Service, from a Pod), every request as JSON
    /// on stdout when it stops (scripts/e2e.sh).
    Loadgen(crate::e2e::LoadgenArgs),
    /// Report a real cluster's runs (the load generator's records and the cluster's pod events)
    /// with the lab's table, JSON and timelines (scripts/e2e.sh).
    E2eReport(crate::e2e::ReportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RolloutArgs {
    /// Built-in scenarios to run (bare, prestop-sleep, lameduck, lameduck-native), comma
    /// separated. Default: all of them, unless --manifest is given.
    #[arg(long, short, env = "LAB_SCENARIO", value_delimiter = ',')]
    pub scenario: Vec<String>,

    /// A Deployment manifest to run as a scenario named after the file (multi-document YAML is
    /// fine, e.g. the output of `kubectl kustomize`; a Service in it gives the target port).
    /// Repeatable.
    #[arg(long, short, env = "LAB_MANIFEST")]
    pub manifest: Vec<PathBuf>,

    /// Fronts to send the load through, comma separated (service, ingress, router; headless:
    /// no front, the gRPC client balances over the endpoints). Default: every front that can
    /// carry the load (http: service, ingress, router; grpc-*: service, headless; websocket:
    /// service, ingress, router).
    #[arg(long, short, env = "LAB_FRONT", value_delimiter = ',', value_enum)]
    pub front: Vec<FrontKind>,

    /// What the load sends: HTTP/1.1 requests (the mix below), gRPC unary calls or server
    /// streams on long-lived channels, or WebSocket messages on long-lived connections. Every
    /// request, call or message is one row of the record.
    #[arg(long, env = "LAB_LOAD", value_enum, default_value = "http")]
    pub load: LoadKind,

    /// Long-lived connections of the grpc-* and websocket loads (gRPC channels through an
    /// address, WebSockets); the load spreads its calls or messages over them in turn.
    #[arg(long, env = "LAB_CONNECTIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub connections: u32,

    /// Replies per grpc-stream call (slowapp's `Count`); a stream lasts as long as a request of
    /// the same delay, one reply every delay / N.
    #[arg(long, env = "LAB_STREAM_MESSAGES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub stream_messages: u32,

    /// Requests per second (wall clock), open loop.
    #[arg(long, env = "LAB_RATE", default_value_t = 100.0, value_parser = positive_f64)]
    pub rate: f64,

    /// Rollouts (`kubectl rollout restart`) per run, one after the other.
    #[arg(long, env = "LAB_RESTARTS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub restarts: u32,

    /// Endpoint propagation lag, sampled uniformly per change and per front, in model time
    /// (scaled like every manifest duration): MIN..MAX, e.g. 1s..4s, or one duration.
    #[arg(long, env = "LAB_LAG", default_value = "1s..4s", value_parser = parse_lag)]
    pub lag: (Duration, Duration),

    /// Factor applied to every modelled duration (manifest, binaries' durations, lag, request
    /// delays): 1 replays the seed's 10 s start and 5 s requests in real time, 0.1 ten times
    /// faster.
    #[arg(long, env = "LAB_TIME_SCALE", default_value_t = 0.1, value_parser = parse_scale)]
    pub time_scale: f64,

    /// Output directory: one sub-directory per run (run.json, timeline.svg, logs), plus
    /// summary.json and summary.md.
    #[arg(long, short, env = "LAB_OUT", default_value = "lab-out")]
    pub out: PathBuf,

    /// Where the slowapp and lameduck binaries are. Default: next to the lab's executable.
    #[arg(long, env = "LAB_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,

    /// The pod port the fronts send traffic to. Default: the Service's targetPort in the
    /// manifest, else the container port named `http`.
    #[arg(long, env = "LAB_TARGET_PORT")]
    pub target_port: Option<u16>,

    /// Share of requests from keep-alive clients (a connection pool); the rest open a
    /// connection per request.
    #[arg(long, env = "LAB_KEEPALIVE_SHARE", default_value_t = 0.5, value_parser = share)]
    pub keepalive_share: f64,

    /// Share of requests that are POSTs with a body.
    #[arg(long, env = "LAB_POST_SHARE", default_value_t = 0.3, value_parser = share)]
    pub post_share: f64,

    /// Share of long requests.
    #[arg(long, env = "LAB_LONG_SHARE", default_value_t = 0.2, value_parser = share)]
    pub long_share: f64,

    /// `delay_ms` of a short request, model time.
    #[arg(long, env = "LAB_SHORT_DELAY", default_value = "100ms", value_parser = parse_duration)]
    pub short_delay: Duration,

    /// `delay_ms` of a long request, model time (the seed's handler sleeps 5 s).
    #[arg(long, env = "LAB_LONG_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub long_delay: Duration,

    /// A request with no complete response after this (model time) counts as a timeout.
    #[arg(long, env = "LAB_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Seed of the load mix and of the lag samples, so a run can be replayed.
    #[arg(long, env = "LAB_SEED", default_value_t = 1)]
    pub seed: u64,

    /// No progress line.
    #[arg(long, short, env = "LAB_QUIET")]
    pub quiet: bool,
}
