//! The command line, and the matrix it runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::controller::IpPool;
use crate::fronts::{self, FrontKind};
use crate::load::LoadConfig;
use crate::pod::{self, Binaries};
use crate::progress::Progress;
use crate::report;
use crate::run::{self, Settings};
use crate::scale::Scale;
use crate::scenario::{self, Scenario};

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

    /// Fronts to send the load through, comma separated. Default: all three.
    #[arg(long, short, env = "LAB_FRONT", value_delimiter = ',', value_enum)]
    pub front: Vec<FrontKind>,

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

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like 5s or 250ms ({e})"))
}

fn parse_lag(s: &str) -> Result<(Duration, Duration), String> {
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

fn parse_scale(s: &str) -> Result<f64, String> {
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

pub(crate) fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a share between 0 and 1")),
    }
}

/// Runs the matrix; `Ok(true)` when every protected scenario lost nothing and every run
/// completed.
pub async fn rollout(args: RolloutArgs) -> Result<bool> {
    let scale = Scale(args.time_scale);
    let mut scenarios: Vec<Scenario> = Vec::new();
    let names: Vec<String> = if args.scenario.is_empty() && args.manifest.is_empty() {
        scenario::BUILTIN
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    } else {
        args.scenario.clone()
    };
    for n in &names {
        scenarios.push(scenario::builtin(n, args.target_port)?);
    }
    for m in &args.manifest {
        scenarios.push(scenario::from_file(m, args.target_port)?);
    }

    // Every binary the scenarios need must be there before anything starts.
    let bins = Arc::new(Binaries::locate(args.bin_dir.clone())?);
    for s in &scenarios {
        let pod = &s.deployment.pod;
        for c in pod.sidecars.iter().chain(&pod.containers) {
            if let Some(b) = pod::binary_for_image(&c.image) {
                bins.path(b)
                    .with_context(|| format!("scenario {}", s.name))?;
            }
        }
    }

    let wanted = if args.front.is_empty() {
        FrontKind::ALL.to_vec()
    } else {
        args.front.clone()
    };
    let mut fronts = Vec::new();
    for f in wanted {
        match f.program() {
            Some(p) if fronts::find_program(p).is_none() => {
                eprintln!(
                    "skipping the {} front: `{p}` is not installed (apt-get install nginx-light haproxy)",
                    f.name()
                );
            }
            _ => fronts.push(f),
        }
    }
    if fronts.is_empty() {
        bail!("no front can run: apt-get install nginx-light haproxy, or use --front service");
    }

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let settings = Settings {
        scale,
        lag: args.lag,
        restarts: args.restarts,
        load: LoadConfig {
            rate: args.rate,
            keepalive_share: args.keepalive_share,
            post_share: args.post_share,
            long_share: args.long_share,
            short_delay: scale.apply(args.short_delay),
            long_delay: scale.apply(args.long_delay),
            timeout: scale.apply(args.request_timeout),
            seed: args.seed,
        },
        // Absolute: nginx resolves relative paths against its `-p` prefix, not our cwd.
        out_dir: std::path::absolute(&args.out).unwrap_or_else(|_| args.out.clone()),
        seed: args.seed,
    };
    let ips = Arc::new(IpPool::new(20 + (std::process::id() % 200) as u8));
    let progress = Progress::new(args.quiet);
    let mut rows = Vec::new();
    for s in &scenarios {
        for f in &fronts {
            let row =
                match run::run_one(s, *f, &settings, bins.clone(), ips.clone(), &progress).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!(
                            "{} through the {} front could not run: {e:#}",
                            s.name,
                            f.name()
                        );
                        return Err(e);
                    }
                };
            rows.push(row);
        }
    }

    let table = report::table(&rows);
    report::write_summary(&args.out.join("summary.json"), &rows, &settings)?;
    std::fs::write(args.out.join("summary.md"), &table).context("writing summary.md")?;
    println!(
        "\ntime scale {} · lag {}..{} (model) · {} req/s · {} rollouts per run\n",
        scale.0,
        humantime::format_duration(args.lag.0),
        humantime::format_duration(args.lag.1),
        args.rate,
        args.restarts
    );
    print!("{table}");
    println!("\nTimelines (open in a browser; hover a mark for details):");
    for r in &rows {
        let front = FrontKind::ALL
            .iter()
            .find(|f| f.name() == r.front)
            .copied()
            .unwrap_or(FrontKind::Service);
        println!(
            "  {}",
            run::run_dir(&args.out, &r.scenario, front)
                .join("timeline.svg")
                .display()
        );
    }
    println!(
        "Every request and event: <run>/run.json; summary: {}",
        args.out.join("summary.json").display()
    );

    let mut ok = true;
    for r in &rows {
        if let Some(e) = &r.error {
            eprintln!("{} through the {}: {e}", r.scenario, r.front);
            ok = false;
        }
        for d in &r.disturbed {
            eprintln!(
                "DISTURBED: {} through the {}: {d}: it crashed, refused its configuration, or was signalled from outside the lab (a `pkill slowapp`?); this run's numbers are not valid",
                r.scenario, r.front
            );
            ok = false;
        }
        if r.protected && r.failed > r.front_caused {
            eprintln!(
                "FAIL: {} lost {} requests through the {} front: lameduck must lose none",
                r.scenario,
                r.failed - r.front_caused,
                r.front
            );
            ok = false;
        }
        if r.protected && r.front_caused > 0 {
            eprintln!(
                "note: {} through the {}: {} requests were lost by the front itself before reaching any pod (an nginx reload closing an idle client connection as a request was sent); not counted against lameduck",
                r.scenario, r.front, r.front_caused
            );
        }
    }
    Ok(ok)
}
