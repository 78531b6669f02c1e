//! The matrix: every chosen scenario through every available front, one run each, then the
//! table, the files and the verdict.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::cli::RolloutArgs;
use crate::cluster::controller::IpPool;
use crate::cluster::pod::{self, Binaries};
use crate::fronts::{self, FrontKind};
use crate::measure::load::LoadConfig;
use crate::measure::progress::Progress;
use crate::measure::ProtocolLoad;
use crate::report::{self, RunSummary};
use crate::run;
use crate::scale::Scale;
use crate::scenario::{self, Scenario};
use crate::settings::Settings;

/// Runs the matrix; `Ok(true)` when every protected scenario lost nothing and every run
/// completed.
pub async fn rollout(args: RolloutArgs) -> Result<bool> {
    let scenarios = scenarios(&args)?;
    let bins = Arc::new(Binaries::locate(args.bin_dir.clone())?);
    check_binaries(&scenarios, &bins)?;
    let fronts = available_fronts(&args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let settings = settings(&args);

    let ips = Arc::new(IpPool::new(20 + (std::process::id() % 200) as u8));
    let progress = Progress::new(args.quiet);
    let mut rows = Vec::new();
    for s in &scenarios {
        for f in &fronts {
            let row = run::run_one(s, *f, &settings, bins.clone(), ips.clone(), &progress)
                .await
                .inspect_err(|e| {
                    eprintln!(
                        "{} through the {} front could not run: {e:#}",
                        s.name,
                        f.name()
                    )
                })?;
            rows.push(row);
        }
    }

    let table = report::table(&rows);
    report::write_summary(&args.out.join("summary.json"), &rows, &settings)?;
    std::fs::write(args.out.join("summary.md"), &table).context("writing summary.md")?;
    print_summary(&args, &table, &rows);
    Ok(verdict(&rows))
}

/// The built-in scenarios asked for (all when none and no manifest is given), then the
/// manifests.
fn scenarios(args: &RolloutArgs) -> Result<Vec<Scenario>> {
    let names: Vec<String> = if args.scenario.is_empty() && args.manifest.is_empty() {
        scenario::BUILTIN
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    } else {
        args.scenario.clone()
    };
    let mut scenarios = Vec::new();
    for n in &names {
        scenarios.push(scenario::builtin(n, args.target_port)?);
    }
    for m in &args.manifest {
        scenarios.push(scenario::from_file(m, args.target_port)?);
    }
    Ok(scenarios)
}

/// Every binary the scenarios need must be there before anything starts.
fn check_binaries(scenarios: &[Scenario], bins: &Binaries) -> Result<()> {
    for s in scenarios {
        let pod = &s.deployment.pod;
        for c in pod.sidecars.iter().chain(&pod.containers) {
            if let Some(b) = pod::binary_for_image(&c.image) {
                bins.path(b)
                    .with_context(|| format!("scenario {}", s.name))?;
            }
        }
    }
    Ok(())
}

/// The fronts asked for (all by default), less those whose program is not installed.
fn available_fronts(args: &RolloutArgs) -> Result<Vec<FrontKind>> {
    let wanted = if args.front.is_empty() {
        FrontKind::defaults_for(args.load)
    } else {
        args.front.clone()
    };
    let mut fronts = Vec::new();
    for f in wanted {
        if let Err(why) = f.carries(args.load) {
            eprintln!(
                "skipping the {} front for the {} load: {why}",
                f.name(),
                args.load.name()
            );
            continue;
        }
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
        bail!(
            "no front can run the {} load: {}",
            args.load.name(),
            if args.front.iter().all(|f| f.carries(args.load).is_err()) {
                "none of the fronts asked for carries it (see above)"
            } else {
                "apt-get install nginx-light haproxy, or use --front service"
            }
        );
    }
    Ok(fronts)
}

fn settings(args: &RolloutArgs) -> Settings {
    let scale = Scale(args.time_scale);
    Settings {
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
        protocol: ProtocolLoad {
            kind: args.load,
            connections: args.connections as usize,
            stream_messages: args.stream_messages,
        },
        // Absolute: nginx resolves relative paths against its `-p` prefix, not our cwd.
        out_dir: std::path::absolute(&args.out).unwrap_or_else(|_| args.out.clone()),
        seed: args.seed,
    }
}

/// The table, and where every picture and file is.
fn print_summary(args: &RolloutArgs, table: &str, rows: &[RunSummary]) {
    println!(
        "\nload {} · time scale {} · lag {}..{} (model) · {} req/s · {} rollouts per run\n",
        args.load.name(),
        args.time_scale,
        humantime::format_duration(args.lag.0),
        humantime::format_duration(args.lag.1),
        args.rate,
        args.restarts
    );
    print!("{table}");
    println!("\nTimelines (open in a browser; hover a mark for details):");
    for r in rows {
        println!("  {}", timeline_path(&args.out, r).display());
    }
    println!(
        "Every request and event: <run>/run.json; summary: {}",
        args.out.join("summary.json").display()
    );
}

fn timeline_path(out: &Path, r: &RunSummary) -> std::path::PathBuf {
    let front = FrontKind::EVERY
        .iter()
        .find(|f| f.name() == r.front)
        .copied()
        .unwrap_or(FrontKind::Service);
    run::run_dir(out, &r.scenario, front).join("timeline.svg")
}

/// Says what went wrong, run by run; true when nothing did.
fn verdict(rows: &[RunSummary]) -> bool {
    let mut ok = true;
    for r in rows {
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
    ok
}
