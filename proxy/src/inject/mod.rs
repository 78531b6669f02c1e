//! `lameduck inject [FILE|-]`: reads manifests (multi-document YAML or JSON, `kind: List`, what
//! `kubectl kustomize`, `helm template` or `kubectl get -o yaml` print), writes them to stdout
//! with lameduck wired into every Deployment, StatefulSet, DaemonSet, ReplicaSet and Pod, and
//! the input's Services pointed at it; writes to stderr one line per workload saying what it
//! did or why it left the workload alone. Everything else passes through unchanged.
//!
//! The pod-level injection ([`pod::inject_pod`]) is the same one the admission webhook applies.
//! docs/injection.md lists every rule.
//!
//! Exit codes: 0 the output was written (whether or not anything was injected); 2 the input
//! cannot be read, or a flag is wrong.

pub mod pod;
mod ports;
pub mod settings;

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use lameduck_k8s::{
    for_each_object, for_each_object_mut, resolve_limit, Format, IntOrString, Service, ShapeError,
    Workload, WorkloadKind, DEFAULT_ROLLOUT_LIMIT,
};
use serde_json::Value;

use self::pod::{Outcome, ServiceTarget};
use self::settings::InjectOptions;
use crate::manifest_input;

#[derive(Debug, Clone, Args)]
pub struct InjectArgs {
    /// The manifests (YAML or JSON, multi-document, kind: List), or - for stdin.
    #[arg(default_value = "-")]
    pub file: String,

    #[command(flatten)]
    pub options: InjectOptions,
}

/// One workload's account: the line for stderr and any warnings under it.
#[derive(Debug, Clone)]
pub struct Account {
    pub workload: String,
    pub outcome: Outcome,
    pub line: String,
    pub warnings: Vec<String>,
}

pub fn run(args: &InjectArgs) -> ExitCode {
    let text = match manifest_input::read(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("lameduck inject: {e}");
            return ExitCode::from(2);
        }
    };
    let mut docs = match lameduck_k8s::read_documents(&text) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "lameduck inject: {}: {e}",
                manifest_input::display_name(&args.file)
            );
            return ExitCode::from(2);
        }
    };
    let accounts = match inject_documents(&mut docs, &args.options) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "lameduck inject: {}: {e}",
                manifest_input::display_name(&args.file)
            );
            return ExitCode::from(2);
        }
    };
    let out = lameduck_k8s::write_documents(&docs, Format::detect(&text));
    if let Err(e) = std::io::stdout().lock().write_all(out.as_bytes()) {
        eprintln!("lameduck inject: cannot write stdout: {e}");
        return ExitCode::from(1);
    }
    let injected = accounts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Injected(_)))
        .count();
    for a in &accounts {
        eprintln!("{}: {}", a.workload, a.line);
        for w in &a.warnings {
            eprintln!("  warning: {w}");
        }
    }
    eprintln!(
        "lameduck inject: {injected} of {} workload(s) injected",
        accounts.len()
    );
    ExitCode::SUCCESS
}

/// A Service port of the input, resolved against one workload.
struct ServiceRef {
    service: usize,
    port: usize,
    target: IntOrString,
    container_port: u16,
}

/// Injects every workload of `docs` in place and retargets the Services that select them.
pub fn inject_documents(
    docs: &mut [Value],
    opts: &InjectOptions,
) -> Result<Vec<Account>, ShapeError> {
    let mut services = Vec::new();
    let mut failure = None;
    for doc in docs.iter() {
        for_each_object(doc, &mut |obj| match Service::from_object(obj) {
            Ok(Some(s)) => services.push(s),
            Ok(None) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
        });
    }
    if let Some(e) = failure {
        return Err(e);
    }

    let mut accounts = Vec::new();
    // (service, port, new targetPort), applied once every workload is done.
    let mut retarget: Vec<(usize, usize, IntOrString)> = Vec::new();
    for doc in docs.iter_mut() {
        for_each_object_mut(doc, &mut |obj| {
            if failure.is_some() {
                return;
            }
            match inject_object(obj, &services, opts, &mut retarget) {
                Ok(Some(a)) => accounts.push(a),
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        });
    }
    if let Some(e) = failure {
        return Err(e);
    }

    for (si, pi, target) in &retarget {
        services[*si].spec.ports[*pi].target_port = Some(target.clone());
    }
    let mut index = 0;
    for doc in docs.iter_mut() {
        for_each_object_mut(doc, &mut |obj| {
            if obj.get("kind").and_then(Value::as_str) == Some("Service") {
                if retarget.iter().any(|(si, _, _)| *si == index) {
                    services[index].write_spec(obj);
                }
                index += 1;
            }
        });
    }
    Ok(accounts)
}

fn inject_object(
    obj: &mut Value,
    services: &[Service],
    opts: &InjectOptions,
    retarget: &mut Vec<(usize, usize, IntOrString)>,
) -> Result<Option<Account>, ShapeError> {
    let Some(mut w) = Workload::from_object(obj)? else {
        return Ok(None);
    };
    let workload = w.to_string();
    if !w.kind.is_served() {
        let outcome = Outcome::Unchanged(format!(
            "a {} runs to completion: nothing routes to it",
            w.kind
        ));
        return Ok(Some(Account {
            workload,
            line: pod::summary(&outcome),
            outcome,
            warnings: Vec::new(),
        }));
    }
    let refs: Vec<ServiceRef> = services
        .iter()
        .enumerate()
        .filter(|(_, s)| s.selects(&w))
        .flat_map(|(si, s)| {
            let spec = &w.spec;
            s.spec.ports.iter().enumerate().filter_map(move |(pi, p)| {
                let target = p.target();
                Some(ServiceRef {
                    service: si,
                    port: pi,
                    container_port: spec.resolve_service_target(&target)?,
                    target,
                })
            })
        })
        .collect();
    let targets: Vec<ServiceTarget> = refs
        .iter()
        .map(|r| ServiceTarget {
            container_port: r.container_port,
            app_protocol: services[r.service].spec.ports[r.port].app_protocol.clone(),
        })
        .collect();

    let outcome = pod::inject_pod(&mut w.spec, &w.pod_meta, &targets, opts);
    let mut line = pod::summary(&outcome);
    let mut warnings = Vec::new();
    if let Outcome::Injected(inj) = &outcome {
        w.write_pod_spec(obj);
        warnings.extend(inj.warnings.iter().cloned());
        warnings.extend(rollout_warning(&w));
        let mut any_service = false;
        for r in refs.iter().filter(|r| r.container_port == inj.app_port) {
            any_service = true;
            let s = &services[r.service];
            let sp = &s.spec.ports[r.port];
            match &r.target {
                IntOrString::Str(name) if inj.moved_name.as_deref() == Some(name) => {
                    line.push_str(&format!(
                        "; Service {} port {}: targetPort \"{name}\" now lameduck's",
                        s.name, sp.port
                    ));
                }
                _ => {
                    retarget.push((r.service, r.port, IntOrString::Int(inj.data_port.into())));
                    line.push_str(&format!(
                        "; Service {} port {}: targetPort {} -> {}",
                        s.name, sp.port, r.target, inj.data_port
                    ));
                }
            }
        }
        if !any_service {
            warnings.push(format!(
                "no Service in the input targets it: {}",
                inj.service_advice()
            ));
        }
    }
    Ok(Some(Account {
        workload,
        outcome,
        line,
        warnings,
    }))
}

/// The rollout strategy is the user's; a warning says when it can lose capacity.
fn rollout_warning(w: &Workload) -> Option<String> {
    if w.kind != WorkloadKind::Deployment {
        return None;
    }
    let strategy = w.strategy.clone().unwrap_or_default();
    if strategy.kind.as_deref() == Some("Recreate") {
        return Some(
            "strategy Recreate stops every old pod before a new one starts: downtime whatever \
             lameduck does; RollingUpdate with maxUnavailable: 0 and maxSurge: 1 keeps capacity"
                .to_string(),
        );
    }
    let replicas = w.replicas.unwrap_or(1);
    let limit = strategy
        .rolling_update
        .and_then(|r| r.max_unavailable)
        .unwrap_or_else(|| IntOrString::Str(DEFAULT_ROLLOUT_LIMIT.to_string()));
    match resolve_limit(&limit, replicas, false) {
        Some(n) if n > 0 => Some(format!(
            "strategy.rollingUpdate.maxUnavailable {limit} takes {n} of {replicas} ready pod(s) \
             away before their replacements are ready (left as written); maxUnavailable: 0 with \
             maxSurge: 1 keeps full capacity"
        )),
        _ => None,
    }
}
