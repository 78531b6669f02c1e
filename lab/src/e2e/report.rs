//! `lab e2e-report`: an e2e's load generator records and what the cluster said, through the
//! lab's report: the table, run.json, summary.json and the timelines; the verdict on each run's
//! expectation.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use super::events;
use super::loadgen::{LoadgenOutput, LoadgenRun};
use crate::measure::record::{EventKind, Recorder};
use crate::report::{self, timeline, RunSummary};

/// `lab e2e-report`: the table, JSON and timelines of an e2e's runs.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// One run: NAME:EXPECT:DIR, EXPECT being `lossless` (runs lameduck: must lose nothing),
    /// `lossy` (must lose requests, or the e2e has no teeth) or `any`. DIR holds loadgen.json
    /// and, when collected, pods.json, events.json, endpointslices.json and rollouts.txt.
    /// Repeatable; the table keeps this order.
    #[arg(long = "run", required = true, value_parser = parse_run)]
    pub runs: Vec<RunSpec>,

    /// The front column of the table (what carried the traffic).
    #[arg(long, default_value = "kube-proxy")]
    pub front: String,

    /// Where summary.json and summary.md go (each run's run.json and timeline.svg go to its DIR).
    #[arg(long)]
    pub out: PathBuf,

    /// An unmet `lossy` expectation is a warning instead of a failure.
    #[arg(long)]
    pub teeth_warn_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Lossless,
    Lossy,
    Any,
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub name: String,
    pub expect: Expect,
    pub dir: PathBuf,
}

fn parse_run(s: &str) -> Result<RunSpec, String> {
    let mut parts = s.splitn(3, ':');
    let (Some(name), Some(expect), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("`{s}` is not NAME:EXPECT:DIR"));
    };
    let expect = match expect {
        "lossless" => Expect::Lossless,
        "lossy" => Expect::Lossy,
        "any" => Expect::Any,
        other => return Err(format!("`{other}` is not lossless, lossy or any")),
    };
    if name.is_empty() {
        return Err(format!("`{s}`: empty NAME"));
    }
    Ok(RunSpec {
        name: name.to_string(),
        expect,
        dir: PathBuf::from(dir),
    })
}

pub fn report(args: ReportArgs) -> Result<bool> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut rows = Vec::new();
    let mut ok = true;
    for run in &args.runs {
        let (summary, rec, load) = one_report(run, &args.front)?;
        rows.push(summary.clone());
        report::write_run_json(&run.dir.join("run.json"), &summary, ("load", &load), &rec)?;
        timeline::write_svg(&run.dir.join("timeline.svg"), &summary, &rec)?;
        let lost = summary.failed;
        match run.expect {
            Expect::Lossless if lost > 0 => {
                eprintln!(
                    "FAIL: {} lost {lost} of {} requests: lameduck must lose none",
                    run.name, summary.requests
                );
                ok = false;
            }
            Expect::Lossy if lost == 0 => {
                let verdict = if args.teeth_warn_only {
                    "warning"
                } else {
                    ok = false;
                    "FAIL"
                };
                eprintln!(
                    "{verdict}: {} lost nothing, but it is wired to lose requests: the e2e has no \
                     teeth on this cluster (endpoint changes reach kube-proxy too fast? raise \
                     its --iptables-min-sync-period, or the rate)",
                    run.name
                );
            }
            _ => {}
        }
        for d in &summary.disturbed {
            eprintln!("DISTURBED: {}: {d}", run.name);
            ok = false;
        }
        if load.stopped_by != "stdin closed" {
            eprintln!(
                "FAIL: {}: the load stopped by {} before the rollouts ended: raise the load \
                 generator's --duration",
                run.name, load.stopped_by
            );
            ok = false;
        }
    }
    let table = report::table(&rows);
    let doc = serde_json::json!({ "runs": rows });
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_vec_pretty(&doc)?,
    )
    .context("writing summary.json")?;
    std::fs::write(args.out.join("summary.md"), &table).context("writing summary.md")?;
    print!("{table}");
    Ok(ok)
}

fn one_report(run: &RunSpec, front: &str) -> Result<(RunSummary, Arc<Recorder>, LoadgenRun)> {
    let path = run.dir.join("loadgen.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // The last line that is a JSON object: `kubectl logs` may hold other lines before it.
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{}: no load generator output in it", path.display()))?;
    let value: Value =
        serde_json::from_str(line).with_context(|| format!("parsing {}", path.display()))?;
    let load = LoadgenOutput::deserialize(value)
        .with_context(|| format!("reading the records in {}", path.display()))?;
    let rec = Recorder::new();
    let t0 = load.run.started_unix;
    for r in load.requests {
        rec.request(r);
    }
    rec.event_at(0.0, None, EventKind::LoadStarted);
    let mut error = None;
    if let Err(e) = events::read(&run.dir, t0, &rec) {
        error = Some(format!("reading the cluster's events: {e:#}"));
    }
    // The load's kind in the scenario column when it is not the HTTP mix: a gRPC run and an
    // HTTP run of the same scenario must not read alike.
    let name = match load.run.kind.as_str() {
        "http" => run.name.clone(),
        kind => format!("{} ({kind})", run.name),
    };
    let summary =
        report::summarize_records(&name, front, run.expect == Expect::Lossless, &rec, error);
    Ok((summary, rec, load.run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_parse() {
        let r = parse_run("bare:lossy:/tmp/x:y").unwrap();
        assert_eq!(r.name, "bare");
        assert_eq!(r.expect, Expect::Lossy);
        assert_eq!(r.dir, PathBuf::from("/tmp/x:y"));
        assert!(parse_run("bare:maybe:/tmp").is_err());
        assert!(parse_run("bare").is_err());
    }
}
