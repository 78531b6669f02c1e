//! The numbers of a run: the summary row, the table, and the JSON of every request and event.

pub mod svg;
pub mod timeline;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::fronts::FrontKind;
use crate::measure::record::{EventKind, Outcome, Recorder};
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
    let mut failed_by_kind = BTreeMap::new();
    let mut failed_by_client = BTreeMap::new();
    let mut failed_by_method = BTreeMap::new();
    let mut failed_reused = 0;
    for r in reqs.iter().filter(|r| r.outcome != Outcome::Ok) {
        *failed_by_kind
            .entry(r.outcome.label().to_string())
            .or_insert(0) += 1;
        *failed_by_client.entry(r.client.to_string()).or_insert(0) += 1;
        *failed_by_method.entry(r.method.to_string()).or_insert(0) += 1;
        if r.reused {
            failed_reused += 1;
        }
    }
    let mut lat: Vec<f64> = reqs
        .iter()
        .filter(|r| r.outcome == Outcome::Ok)
        .map(|r| (r.end - r.start) * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    let events = rec.events();
    let mut starts = BTreeMap::new();
    let mut durations = Vec::new();
    for e in &events {
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
    let ok = reqs.iter().filter(|r| r.outcome == Outcome::Ok).count();
    let disturbed = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::UnexpectedExit { container, code, signal } => Some(format!(
                "{} {container} exited at {:.3}s (code {code:?}, signal {signal:?}) without being asked",
                e.pod.as_deref().unwrap_or("?"),
                e.t
            )),
            _ => None,
        })
        .collect();
    RunSummary {
        scenario: scenario.to_string(),
        front: front.to_string(),
        protected,
        requests: reqs.len(),
        ok,
        failed: reqs.len() - ok,
        failed_by_kind,
        failed_by_client,
        failed_by_method,
        failed_reused,
        front_caused: reqs.iter().filter(|r| r.front_caused).count(),
        retried: reqs
            .iter()
            .filter(|r| r.retried && r.outcome == Outcome::Ok)
            .count(),
        disturbed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        rollout_s: if durations.is_empty() {
            0.0
        } else {
            durations.iter().sum::<f64>() / durations.len() as f64
        },
        rollouts: durations.len(),
        error,
    }
}

#[derive(Serialize)]
struct SettingsJson {
    time_scale: f64,
    lag_model_ms: (f64, f64),
    restarts: u32,
    rate: f64,
    keepalive_share: f64,
    post_share: f64,
    long_share: f64,
    short_delay_ms: u64,
    long_delay_ms: u64,
    timeout_ms: u64,
    seed: u64,
}

fn settings_json(s: &Settings) -> SettingsJson {
    SettingsJson {
        time_scale: s.scale.0,
        lag_model_ms: (
            s.lag.0.as_secs_f64() * 1000.0,
            s.lag.1.as_secs_f64() * 1000.0,
        ),
        restarts: s.restarts,
        rate: s.load.rate,
        keepalive_share: s.load.keepalive_share,
        post_share: s.load.post_share,
        long_share: s.load.long_share,
        short_delay_ms: s.load.short_delay.as_millis() as u64,
        long_delay_ms: s.load.long_delay.as_millis() as u64,
        timeout_ms: s.load.timeout.as_millis() as u64,
        seed: s.seed,
    }
}

/// `run.json`: the summary, the settings, every event and every request.
pub fn write_json(
    path: &Path,
    summary: &RunSummary,
    rec: &Recorder,
    settings: &Settings,
) -> Result<()> {
    let doc = serde_json::json!({
        "summary": summary,
        "settings": settings_json(settings),
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
