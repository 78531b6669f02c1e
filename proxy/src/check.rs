//! `lameduck check FILE|-`: reads a rendered manifest (what `kubectl kustomize` or
//! `helm template` prints) and reports the wiring that would break a zero-downtime rollout: the
//! probes, the app's preStop, the grace period against lameduck's budget, the rollout strategy
//! and the Service's targetPort. docs/kubernetes.md lists every rule.
//!
//! Exit codes: 0 nothing wrong (warnings allowed), 1 at least one error, 2 the input cannot be
//! read or holds no Deployment, StatefulSet, DaemonSet, ReplicaSet or Pod.

mod manifest;
mod rules;

use std::process::ExitCode;

pub use self::rules::KubeVersion;
use self::rules::Severity;
use crate::manifest_input;

pub fn run(file: &str, version: KubeVersion) -> ExitCode {
    forget_own_settings();
    let text = match manifest_input::read(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("lameduck check: {e}");
            return ExitCode::from(2);
        }
    };
    let manifest = match manifest::parse(&text) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "lameduck check: {}: {e}",
                manifest_input::display_name(file)
            );
            return ExitCode::from(2);
        }
    };

    let (mut errors, mut warnings) = (0, 0);
    for w in &manifest.workloads {
        let verdict = rules::check(w, &manifest.services, version);
        println!("{w}");
        for note in &verdict.notes {
            println!("  {note}");
        }
        for f in &verdict.findings {
            match f.severity {
                Severity::Error => {
                    errors += 1;
                    println!("  error: {}", f.message);
                }
                Severity::Warning => {
                    warnings += 1;
                    println!("  warning: {}", f.message);
                }
            }
        }
    }
    println!(
        "lameduck check: {} workload(s), {errors} error(s), {warnings} warning(s)",
        manifest.workloads.len()
    );
    if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The container's settings are parsed with the binary's own clap definition, which also reads
/// `LAMEDUCK_*` from the process environment: the checker's own variables would leak into the
/// checked config. Removed here, before anything else runs (the process is still
/// single-threaded), so only the manifest's values count.
fn forget_own_settings() {
    let own: Vec<_> = std::env::vars_os()
        .filter(|(k, _)| k.to_string_lossy().starts_with("LAMEDUCK_"))
        .map(|(k, _)| k)
        .collect();
    for k in own {
        std::env::remove_var(k);
    }
}
