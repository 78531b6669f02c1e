//! The numbers of a run: the summary row, the table, and the JSON of every request and event.

pub mod svg;
pub mod timeline;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fronts::FrontKind;
use crate::measure::load::LoadConfig;
use crate::measure::record::{Event, EventKind, Outcome, Recorder, RequestRecord};
use crate::measure::LoadKind;
use crate::scenario::Scenario;
use crate::settings::Settings;

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub scenario: String,
    pub front: String,
    /// The scenario runs lameduck, so it must lose nothing.
    pub protected: bool,
    pub requests: usize,
    pub ok: usize,
    pub failed: usize,
    /// Failed requests by kind: refused, reset, 5xx, timeout, other.
    pub failed_by_kind: BTreeMap<String, usize>,
    /// Failed requests by client (`keepalive` / `new`) and by method.
    pub failed_by_client: BTreeMap<String, usize>,
    pub failed_by_method: BTreeMap<String, usize>,
    /// Of the failed keep-alive requests, those sent on a reused connection.
    pub failed_reused: usize,
    /// Of the failed requests, those the front itself lost before any pod was involved.
    pub front_caused: usize,
    /// Requests that succeeded only on a client retry (see `RequestRecord::retried`).
    pub retried: usize,
    /// Containers that ended without the lab asking (killed from outside, or crashed): the
    /// run did not replay what it claims, and its numbers are not to be trusted.
    pub disturbed: Vec<String>,
    /// Latency of the successful requests, milliseconds (wall clock).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Mean wall-clock duration of one rollout, seconds.
    pub rollout_s: f64,
    pub rollouts: usize,
    /// Why the run did not complete, if it did not.
    pub error: Option<String>,
}

pub fn summarize(
    scenario: &Scenario,
    front: FrontKind,
    rec: &Recorder,
    _settings: &Settings,
    error: Option<String>,
) -> RunSummary {
    summarize_records(
        &scenario.name,
        front.name(),
        scenario.runs_lameduck(),
        rec,
        error,
    )
}

/// The summary of whatever `rec` holds: a lab run, or a real cluster's run (the e2e).
pub fn summarize_records(
    scenario: &str,
    front: &str,
    protected: bool,
    rec: &Recorder,
    error: Option<String>,
) -> RunSummary {
    let reqs = rec.requests();
    let events = rec.events();
    let failures = Failures::count(&reqs);
    let latencies = ok_latencies_ms(&reqs);
    let rollouts = rollout_durations(&events);
    let ok = reqs.iter().filter(|r| r.outcome == Outcome::Ok).count();
    RunSummary {
        scenario: scenario.to_string(),
        front: front.to_string(),
        protected,
        requests: reqs.len(),
        ok,
        failed: reqs.len() - ok,
        failed_by_kind: failures.by_kind,
        failed_by_client: failures.by_client,
        failed_by_method: failures.by_method,
        failed_reused: failures.reused,
        front_caused: reqs.iter().filter(|r| r.front_caused).count(),
        retried: reqs
            .iter()
            .filter(|r| r.retried && r.outcome == Outcome::Ok)
            .count(),
        disturbed: unasked_exits(&events),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        rollout_s: if rollouts.is_empty() {
            0.0
        } else {
            rollouts.iter().sum::<f64>() / rollouts.len() as f64
        },
        rollouts: rollouts.len(),
        error,
    }
}

/// The failed requests counted by kind, client and method, and those on a reused connection.
#[derive(Default)]
struct Failures {
    by_kind: BTreeMap<String, usize>,
    by_client: BTreeMap<String, usize>,
    by_method: BTreeMap<String, usize>,
    reused: usize,
}

impl Failures {
    fn count(reqs: &[RequestRecord]) -> Failures {
        let mut f = Failures::default();
        for r in reqs.iter().filter(|r| r.outcome != Outcome::Ok) {
            *f.by_kind.entry(r.outcome.label().to_string()).or_insert(0) += 1;
            *f.by_client.entry(r.client.to_string()).or_insert(0) += 1;
            *f.by_method.entry(r.method.to_string()).or_insert(0) += 1;
            if r.reused {
                f.reused += 1;
            }
        }
        f
    }
}

/// The wall-clock latencies of the successful requests, milliseconds, sorted.
fn ok_latencies_ms(reqs: &[RequestRecord]) -> Vec<f64> {
    let mut lat: Vec<f64> = reqs
        .iter()
        .filter(|r| r.outcome == Outcome::Ok)
        .map(|r| (r.end - r.start) * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    lat
}

/// The `p` percentile (nearest rank) of sorted values; 0 for none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        0.0
    } else {
        sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
    }
}

/// How long each rollout that completed took, seconds, in the order they completed.
fn rollout_durations(events: &[Event]) -> Vec<f64> {
    let mut starts = BTreeMap::new();
    let mut durations = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::RolloutStarted { rollout } => {
                starts.insert(*rollout, e.t);
            }
            EventKind::RolloutComplete { rollout } => {
                if let Some(s) = starts.get(rollout) {
                    durations.push(e.t - s);
                }
            }
            _ => {}
        }
    }
    durations
}

/// Every container that ended without the lab asking, said in a line.
fn unasked_exits(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::UnexpectedExit { container, code, signal } => Some(format!(
                "{} {container} exited at {:.3}s (code {code:?}, signal {signal:?}) without being asked",
                e.pod.as_deref().unwrap_or("?"),
                e.t
            )),
            _ => None,
        })
        .collect()
}

/// The load's settings as run.json, summary.json and `lab loadgen` write them (durations in
/// milliseconds): one shape for a lab run and for a real cluster's (the e2e).
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadJson {
    pub rate: f64,
    pub keepalive_share: f64,
    pub post_share: f64,
    pub long_share: f64,
    pub short_delay_ms: u64,
    pub long_delay_ms: u64,
    pub timeout_ms: u64,
    pub seed: u64,
}

impl From<&LoadConfig> for LoadJson {
    fn from(load: &LoadConfig) -> LoadJson {
        LoadJson {
            rate: load.rate,
            keepalive_share: load.keepalive_share,
            post_share: load.post_share,
            long_share: load.long_share,
            short_delay_ms: load.short_delay.as_millis() as u64,
            long_delay_ms: load.long_delay.as_millis() as u64,
            timeout_ms: load.timeout.as_millis() as u64,
            seed: load.seed,
        }
    }
}

/// A lab run's settings: the time scale, the propagation lag, the restarts and the load (its
/// kind named as `lab loadgen` names it in a real cluster's record).
#[derive(Serialize)]
struct SettingsJson {
    time_scale: f64,
    lag_model_ms: (f64, f64),
    restarts: u32,
    kind: &'static str,
    /// The grpc-* and websocket loads' long-lived connections (none for `http`).
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<usize>,
    /// Replies per `Count` stream (grpc-stream only).
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_messages: Option<u32>,
    #[serde(flatten)]
    load: LoadJson,
}

fn settings_json(s: &Settings) -> SettingsJson {
    SettingsJson {
        time_scale: s.scale.0,
        lag_model_ms: (
            s.lag.0.as_secs_f64() * 1000.0,
            s.lag.1.as_secs_f64() * 1000.0,
        ),
        restarts: s.restarts,
        kind: s.protocol.kind.name(),
        connections: (s.protocol.kind != LoadKind::Http).then_some(s.protocol.connections),
        stream_messages: (s.protocol.kind == LoadKind::GrpcStream)
            .then_some(s.protocol.stream_messages),
        // The matrix gives the load the run's seed (`Settings::seed`).
        load: LoadJson::from(&s.load),
    }
}

/// A lab run's `run.json`: the summary, the settings, every event and every request.
pub fn write_json(
    path: &Path,
    summary: &RunSummary,
    rec: &Recorder,
    settings: &Settings,
) -> Result<()> {
    write_run_json(path, summary, ("settings", &settings_json(settings)), rec)
}

/// `run.json`: the summary, what the run ran with under its name (a lab run's `settings`, a
/// real cluster's `load`), every event and every request.
pub fn write_run_json(
    path: &Path,
    summary: &RunSummary,
    (name, ran_with): (&str, &impl Serialize),
    rec: &Recorder,
) -> Result<()> {
    let doc = serde_json::json!({
        "summary": summary,
        name: ran_with,
        "events": rec.events(),
        "requests": rec.requests(),
    });
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    serde_json::to_writer(std::io::BufWriter::new(f), &doc)
        .with_context(|| format!("writing {}", path.display()))
}

/// `summary.json`: every run's summary row.
pub fn write_summary(path: &Path, rows: &[RunSummary], settings: &Settings) -> Result<()> {
    let doc = serde_json::json!({ "settings": settings_json(settings), "runs": rows });
    std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The scenario x front table, as Markdown (readable in a terminal, pasteable into docs).
pub fn table(rows: &[RunSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| scenario | front | requests | ok | failed | refused | reset | 5xx | timeout | other | of which front | retried ok | p50 ms | p99 ms | rollout s |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let k = |n: &str| r.failed_by_kind.get(n).copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} |",
            r.scenario,
            r.front,
            r.requests,
            r.ok,
            r.failed,
            k("refused"),
            k("reset"),
            k("5xx"),
            k("timeout"),
            k("other"),
            r.front_caused,
            r.retried,
            r.p50_ms,
            r.p99_ms,
            if r.error.is_some() {
                "error".to_string()
            } else if !r.disturbed.is_empty() {
                "disturbed".to_string()
            } else {
                format!("{:.1}", r.rollout_s)
            },
        );
    }
    s
}
