//! The injection of one pod spec: the one implementation behind `lameduck inject` (which also
//! retargets the input's Services) and `lameduck webhook` (which sees a Pod only).
//!
//! It either wires lameduck in completely, as k8s/base does by hand, or changes nothing and says
//! why: a pod it does not understand (a port that is not HTTP, no port, hostNetwork, already
//! injected, an annotation that does not parse) is left as it was.

use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use lameduck_k8s::{
    Container, ContainerPort, EnvVar, Handler, HttpGet, IntOrString, Lifecycle, ObjectMeta, PodSpec,
};
use serde_json::{json, Value};

use super::ports::{self, Looks};
use super::settings::{self, InjectOptions, PortRef, Resolved};
use crate::config::{AppProbe, RunCommand};

/// The name of the injected container (what `lameduck check` and a second `inject` look for).
pub const CONTAINER: &str = "lameduck";
/// The name of lameduck's admin port.
pub const ADMIN_PORT_NAME: &str = "lameduck-admin";
/// The kubelet's grace period when a pod spec sets none.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// A Service port of the input that targets this pod: the container port it resolves to, and
/// its appProtocol (evidence of what the port speaks).
#[derive(Debug, Clone)]
pub struct ServiceTarget {
    pub container_port: u16,
    pub app_protocol: Option<String>,
}

/// What was done to a pod.
#[derive(Debug, Clone)]
pub struct Injection {
    /// The app's port that lameduck now fronts.
    pub app_port: u16,
    /// lameduck's data port: Services must target it.
    pub data_port: u16,
    /// The app's port name that lameduck's data port took over (Services that target the name
    /// reach lameduck with no change); None when the app's port was unnamed, or in native mode.
    pub moved_name: Option<String>,
    /// The app port's name when it kept it (native mode): Services that target that name still
    /// reach the app.
    pub kept_name: Option<String>,
    /// What was done, for the one line per workload.
    pub done: Vec<String>,
    /// What the user should know (a kept preStop, a rollout that can lose capacity, ...).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Injected(Injection),
    /// Left as it was, and why.
    Unchanged(String),
}

/// Whether lameduck is in the pod already (as `lameduck check` finds it).
pub fn is_injected(spec: &PodSpec) -> bool {
    spec.containers
        .iter()
        .chain(&spec.init_containers)
        .any(|c| c.name == CONTAINER || c.image_name().contains("lameduck"))
}

/// Injects lameduck into `spec` (left untouched unless the outcome is `Injected`).
pub fn inject_pod(
    spec: &mut PodSpec,
    meta: &ObjectMeta,
    targets: &[ServiceTarget],
    opts: &InjectOptions,
) -> Outcome {
    match plan(spec, meta, targets, opts) {
        Ok((new_spec, injection)) => {
            *spec = new_spec;
            Outcome::Injected(injection)
        }
        Err(reason) => Outcome::Unchanged(reason),
    }
}

/// The injected copy of `spec`, or why there is none.
fn plan(
    spec: &PodSpec,
    meta: &ObjectMeta,
    targets: &[ServiceTarget],
    opts: &InjectOptions,
) -> Result<(PodSpec, Injection), String> {
    refusal(spec, meta)?;
    let settings = Resolved::new(opts, meta)?;
    let (ci, pi) = choose_port(spec, targets, settings.port.as_ref())?;

    let mut spec = spec.clone();
    let mut done = Vec::new();
    let mut warnings: Vec<String> = settings
        .unknown
        .iter()
        .map(|k| format!("annotation {k} is not a lameduck setting (misspelt?); ignored"))
        .collect();
    let app_port = spec.containers[ci].ports[pi].container_port;
    let app_name = spec.containers[ci].name.clone();
    let old_port_name = spec.containers[ci].ports[pi].name.clone();

    let taken: Vec<u16> = spec.all_ports().map(|(_, p)| p.container_port).collect();
    let data_port = free_port(opts.data_port, &taken);
    let admin_port = free_port(
        opts.admin_port,
        &taken.iter().copied().chain([data_port]).collect::<Vec<_>>(),
    );
    let (data_port_name, moved_name) = name_ports(&mut spec, ci, pi, settings.native, &mut done);

    // Readiness: lameduck's /ready, which asks the app through --app-probe.
    let (app_probe, probe_note) = readiness(&mut spec.containers[ci], app_port, &settings);
    done.push(probe_note);

    let grace_before = spec.termination_grace_period_seconds;
    let ports = (data_port, admin_port, app_port);
    let (args, grace) = lameduck_args(&settings, ports, &app_probe, grace_before, &mut done)?;
    spec.termination_grace_period_seconds = Some(grace);

    // The app's preStop: SIGTERM only once lameduck has drained.
    for c in &mut spec.containers {
        pre_stop(c, admin_port, &settings, &mut done, &mut warnings);
    }

    let sidecar = sidecar(&settings, args, data_port, &data_port_name, admin_port);
    let kind = if settings.native {
        spec.init_containers.push(sidecar);
        "native sidecar"
    } else {
        spec.containers.push(sidecar);
        "sidecar"
    };
    done.insert(
        0,
        format!(
            "lameduck ({kind}) fronts container \"{app_name}\" port {app_port} on {data_port} \
             (admin {admin_port})"
        ),
    );
    let kept_name = if settings.native { old_port_name } else { None };
    Ok((
        spec,
        Injection {
            app_port,
            data_port,
            moved_name,
            kept_name,
            done,
            warnings,
        },
    ))
}

/// The reasons to leave a pod alone before looking at its ports: opted out, injected already,
/// on the host's network.
fn refusal(spec: &PodSpec, meta: &ObjectMeta) -> Result<(), String> {
    match meta.annotations.get(settings::INJECT).map(String::as_str) {
        Some("disabled") => return Err(format!("annotation {}: disabled", settings::INJECT)),
        Some("enabled") | None => {}
        Some(other) => {
            return Err(format!(
                "annotation {}: \"{other}\" is not \"enabled\" or \"disabled\"",
                settings::INJECT
            ))
        }
    }
    if is_injected(spec) {
        return Err("already injected (it has a lameduck container)".to_string());
    }
    if spec.host_network == Some(true) {
        return Err(
            "hostNetwork: the kubelet sends the preStop httpGet from the node's network \
             namespace, where lameduck's /drain is not"
                .to_string(),
        );
    }
    Ok(())
}

/// Names lameduck's data port; returns the name and, when it took over the app port's name,
/// that name. In classic mode the data port takes the app port's name (the app's is renamed),
/// so Services and Ingresses that target it by name reach lameduck unchanged. Not in native
/// mode: EndpointSlices resolve named ports of init containers only from Kubernetes 1.32 on.
fn name_ports(
    spec: &mut PodSpec,
    ci: usize,
    pi: usize,
    native: bool,
    done: &mut Vec<String>,
) -> (String, Option<String>) {
    let names: Vec<String> = spec
        .all_ports()
        .filter_map(|(_, p)| p.name.clone())
        .collect();
    let app_port = spec.containers[ci].ports[pi].container_port;
    match spec.containers[ci].ports[pi].name.clone() {
        Some(old) if !native => {
            let taken: Vec<&str> = names.iter().map(String::as_str).collect();
            let new_app_name = ports::renamed(&old, app_port, &taken);
            rename_port(&mut spec.containers[ci], &old, &new_app_name);
            done.push(format!(
                "port \"{old}\" now lameduck's (the app's renamed \"{new_app_name}\")"
            ));
            (old.clone(), Some(old))
        }
        _ if names.iter().any(|n| n == "http") => ("lameduck-http".to_string(), None),
        _ => ("http".to_string(), None),
    }
}

/// lameduck's args, and the grace period that covers its budget. The budget is computed by
/// lameduck's own flag parser and arithmetic ([`crate::config::ShutdownBudget`]) from the args
/// themselves, so inject and the binary cannot disagree; the grace period is raised to it,
/// never lowered, and given to lameduck too (`--termination-grace-period`, its start-up check).
fn lameduck_args(
    settings: &Resolved,
    (data_port, admin_port, app_port): (u16, u16, u16),
    app_probe: &str,
    grace_before: Option<i64>,
    done: &mut Vec<String>,
) -> Result<(Vec<String>, i64), String> {
    let app_budget = settings
        .flag("app-shutdown-budget")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}s", grace_before.unwrap_or(DEFAULT_GRACE_SECONDS)));
    let mut args = vec![
        format!("--listen=0.0.0.0:{data_port}"),
        format!("--admin-listen=0.0.0.0:{admin_port}"),
        format!("--upstream=127.0.0.1:{app_port}"),
        format!("--app-probe={app_probe}"),
    ];
    for (flag, value) in &settings.flags {
        if flag != "app-probe" && flag != "app-shutdown-budget" {
            args.push(format!("--{flag}={value}"));
        }
    }
    args.push(format!("--app-shutdown-budget={app_budget}"));
    let budget = parse_lameduck(&args)?.shutdown_budget();
    let grace = grace_before
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .max(ceil_secs(budget.total()));
    args.push(format!("--termination-grace-period={grace}s"));
    parse_lameduck(&args)?
        .validate()
        .map_err(|e| format!("lameduck would refuse to start: {e}"))?;
    if Some(grace) != grace_before {
        done.push(format!(
            "terminationGracePeriodSeconds {} -> {grace} ({budget})",
            grace_before.map_or("unset (30)".to_string(), |g| g.to_string())
        ));
    }
    Ok((args, grace))
}

/// A container port with where it is: (container index, port index, the port).
type Located<'a> = (usize, usize, &'a ContainerPort);

/// Which port of which main container lameduck fronts: `--port` / `lameduck.io/port`, else the
/// one the Services target, else the only HTTP-looking one.
fn choose_port(
    spec: &PodSpec,
    targets: &[ServiceTarget],
    wanted: Option<&PortRef>,
) -> Result<(usize, usize), String> {
    let all: Vec<Located> = spec
        .containers
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| c.ports.iter().enumerate().map(move |(pi, p)| (ci, pi, p)))
        .collect();
    if all.is_empty() {
        return Err("no container declares a port: nothing for lameduck to front".to_string());
    }
    match wanted {
        Some(wanted) => wanted_port(&all, wanted),
        None => inferred_port(&all, targets),
    }
}

/// The port asked for: trusted over the conventions, but never a UDP or SCTP port.
fn wanted_port(all: &[Located], wanted: &PortRef) -> Result<(usize, usize), String> {
    let found = all.iter().find(|(_, _, p)| match wanted {
        PortRef::Number(n) => p.container_port == *n,
        PortRef::Name(n) => p.name.as_deref() == Some(n.as_str()),
    });
    let Some((ci, pi, p)) = found else {
        return Err(format!("port {wanted}: no container has it"));
    };
    if let Some(proto) = p
        .protocol
        .as_deref()
        .filter(|s| !s.eq_ignore_ascii_case("TCP"))
    {
        return Err(format!(
            "port {wanted} is {proto}: lameduck proxies TCP only"
        ));
    }
    Ok((*ci, *pi))
}

/// The one port that looks like HTTP (or, failing that, the one that might), among those the
/// Services target, or all declared ones when no Service targets any. None or several is an
/// error that says which to name.
fn inferred_port(all: &[Located], targets: &[ServiceTarget]) -> Result<(usize, usize), String> {
    let targeted: Vec<&Located> = all
        .iter()
        .filter(|(_, _, p)| targets.iter().any(|t| t.container_port == p.container_port))
        .collect();
    let (candidates, from) = if targeted.is_empty() {
        (all.iter().collect::<Vec<_>>(), "declared")
    } else {
        (targeted, "targeted by the Services")
    };
    let mut http = Vec::new();
    let mut unknown = Vec::new();
    let mut not_http = Vec::new();
    for c in candidates {
        match looks(c.2, targets) {
            Looks::Http => http.push(c),
            Looks::Unknown => unknown.push(c),
            Looks::NotHttp(why) => not_http.push(format!("{} ({why})", describe(c.2))),
        }
    }
    match (http.as_slice(), unknown.as_slice()) {
        ([one], _) | ([], [one]) => Ok((one.0, one.1)),
        ([], []) => Err(format!(
            "no port {from} looks like HTTP or gRPC: {}; say --port or annotate {} if one is",
            not_http.join(", "),
            settings::PORT
        )),
        ([], several) | (several, _) => Err(format!(
            "several ports {from} could be the one to front ({}): say which with --port or the \
             annotation {}",
            several
                .iter()
                .map(|c| describe(c.2))
                .collect::<Vec<_>>()
                .join(", "),
            settings::PORT
        )),
    }
}

/// What a port looks like, by its number, name, protocol and the `appProtocol` of the Service
/// ports that target it.
fn looks(p: &ContainerPort, targets: &[ServiceTarget]) -> Looks {
    let app_protocols: Vec<String> = targets
        .iter()
        .filter(|t| t.container_port == p.container_port)
        .filter_map(|t| t.app_protocol.clone())
        .collect();
    ports::classify(
        p.container_port,
        p.name.as_deref(),
        p.protocol.as_deref(),
        &app_protocols,
    )
}

fn describe(p: &ContainerPort) -> String {
    match &p.name {
        Some(n) => format!("{} \"{n}\"", p.container_port),
        None => p.container_port.to_string(),
    }
}

/// `want`, or the next port no container declares.
fn free_port(want: u16, taken: &[u16]) -> u16 {
    (want..=u16::MAX)
        .find(|p| !taken.contains(p))
        .unwrap_or(want)
}

fn ceil_secs(d: Duration) -> i64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)) as i64
}

/// lameduck's flags as lameduck itself reads them: an annotation value it would reject stops
/// the injection here, not the pod at start-up.
fn parse_lameduck(args: &[String]) -> Result<crate::config::RunArgs, String> {
    let argv = std::iter::once("lameduck".to_string()).chain(args.iter().cloned());
    match RunCommand::try_parse_from(argv) {
        Ok(cli) => Ok(cli.run),
        Err(e) => {
            let first = crate::config::flag_error_summary(&e);
            Err(format!(
                "a lameduck.io/* annotation does not parse: {first}"
            ))
        }
    }
}

/// Renames the app's port and every reference to it by name in the same container's probes
/// and hooks (the kubelet resolves those against the container's own ports).
fn rename_port(c: &mut Container, old: &str, new: &str) {
    for p in &mut c.ports {
        if p.name.as_deref() == Some(old) {
            p.name = Some(new.to_string());
        }
    }
    let fix = |h: &mut Handler| {
        let old_ref = IntOrString::Str(old.to_string());
        if let Some(g) = &mut h.http_get {
            if g.port == old_ref {
                g.port = IntOrString::Str(new.to_string());
            }
        }
        if let Some(t) = &mut h.tcp_socket {
            if t.port == old_ref {
                t.port = IntOrString::Str(new.to_string());
            }
        }
    };
    for h in [
        &mut c.readiness_probe,
        &mut c.liveness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        fix(h);
    }
    if let Some(l) = &mut c.lifecycle {
        if let Some(h) = &mut l.pre_stop {
            fix(h);
        }
        // postStart is not modelled: edited as plain JSON.
        if let Some(post) = l.extra.get_mut("postStart") {
            for action in ["httpGet", "tcpSocket"] {
                if let Some(port) = post.get_mut(action).and_then(|a| a.get_mut("port")) {
                    if port.as_str() == Some(old) {
                        *port = Value::String(new.to_string());
                    }
                }
            }
        }
    }
}

/// Moves the app's readiness probe to lameduck when lameduck can run it for the app (returns
/// the `--app-probe` value); a probe it cannot run stays on the app, and the pod is then ready
/// only when both are.
fn readiness(app: &mut Container, app_port: u16, settings: &Resolved) -> (String, String) {
    let on_app_port = |port: Option<u16>| port == Some(app_port);
    let translated: Option<String> = app.readiness_probe.as_ref().and_then(|p| {
        if let Some(h) = &p.http_get {
            let plain = h.host.as_deref().unwrap_or("").is_empty()
                && !h
                    .scheme
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("https"))
                && h.extra
                    .get("httpHeaders")
                    .is_none_or(|v| v.as_array().is_none_or(Vec::is_empty));
            let probe = format!("http:{}", h.path.as_deref().unwrap_or("/"));
            (plain && on_app_port(app.resolve_port(&h.port)) && AppProbe::from_str(&probe).is_ok())
                .then_some(probe)
        } else if let Some(t) = &p.tcp_socket {
            (on_app_port(app.resolve_port(&t.port)) && t.extra.get("host").is_none())
                .then(|| "tcp".to_string())
        } else if let Some(g) = &p.grpc {
            let probe = match &g.service {
                Some(s) if !s.is_empty() => format!("grpc:{s}"),
                _ => "grpc".to_string(),
            };
            // Only where this lameduck has gRPC probes (`--app-probe grpc`).
            (on_app_port(u16::try_from(g.port).ok()) && AppProbe::from_str(&probe).is_ok())
                .then_some(probe)
        } else {
            None
        }
    });
    let annotated = settings.flag("app-probe").map(str::to_string);
    match (translated, &app.readiness_probe) {
        (Some(probe), Some(old)) => {
            let note = format!(
                "readiness {} moved to lameduck's /ready (--app-probe={})",
                old.describe(),
                annotated.as_deref().unwrap_or(&probe)
            );
            app.readiness_probe = None;
            (annotated.unwrap_or(probe), note)
        }
        (None, Some(old)) => {
            let probe = annotated.unwrap_or_else(|| "tcp".to_string());
            let note = format!(
                "readiness {} kept on \"{}\" (lameduck cannot run it for the app) and lameduck's \
                 /ready added beside it (--app-probe={probe})",
                old.describe(),
                app.name
            );
            (probe, note)
        }
        (_, None) => {
            // No readiness of its own: lameduck waits until the app accepts connections (an
            // HTTP path the app may not have would keep the pod unready forever).
            let probe = annotated.unwrap_or_else(|| "tcp".to_string());
            let note = format!(
                "no readiness probe on the app: lameduck's /ready with --app-probe={probe}"
            );
            (probe, note)
        }
    }
}

/// Gives a main container the preStop that holds its SIGTERM until lameduck has drained; an
/// existing hook of its own is kept (and reported) unless replacing was asked for.
fn pre_stop(
    c: &mut Container,
    admin_port: u16,
    settings: &Resolved,
    done: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let drain = Handler::http_get("/drain", admin_port);
    match c.pre_stop() {
        Some(existing) if !settings.replace_prestop => warnings.push(format!(
            "container \"{}\" keeps its own preStop ({}): it gets SIGTERM without waiting for \
             lameduck's drain; --replace-prestop (or {}: \"true\") replaces it with httpGet \
             /drain on port {admin_port}",
            c.name,
            existing.describe(),
            settings::REPLACE_PRESTOP
        )),
        existing => {
            if let Some(old) = existing {
                done.push(format!(
                    "container \"{}\": preStop {} replaced",
                    c.name,
                    old.describe()
                ));
            }
            c.lifecycle.get_or_insert_with(Lifecycle::default).pre_stop = Some(drain);
        }
    }
}

/// The lameduck container, wired as k8s/base wires it by hand.
fn sidecar(
    settings: &Resolved,
    args: Vec<String>,
    data_port: u16,
    data_port_name: &str,
    admin_port: u16,
) -> Container {
    let mut c = Container {
        name: CONTAINER.to_string(),
        image: Some(settings.image.clone()),
        args,
        env: vec![EnvVar {
            name: "LAMEDUCK_LOG_FORMAT".to_string(),
            value: Some("json".to_string()),
            value_from: None,
        }],
        ports: vec![
            tcp_port(data_port_name, data_port),
            tcp_port(ADMIN_PORT_NAME, admin_port),
        ],
        readiness_probe: Some(admin_get(
            "/ready",
            json!({"periodSeconds": 2, "timeoutSeconds": 1, "failureThreshold": 2}),
        )),
        liveness_probe: Some(admin_get(
            "/live",
            json!({"periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3}),
        )),
        ..Container::default()
    };
    if settings.native {
        as_native_sidecar(&mut c);
    }
    c.extra.insert(
        "resources".to_string(),
        json!({"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}),
    );
    c.extra.insert(
        "securityContext".to_string(),
        json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "capabilities": {"drop": ["ALL"]},
        }),
    );
    c
}

/// A native sidecar (an init container that keeps running): it must be up before the app
/// starts, and it drains in its own preStop, since the kubelet stops it only after the app.
fn as_native_sidecar(c: &mut Container) {
    c.restart_policy = Some("Always".to_string());
    // /live, not /ready: the app starts only once this passes, and /ready waits for it.
    c.startup_probe = Some(admin_get(
        "/live",
        json!({"periodSeconds": 1, "failureThreshold": 30}),
    ));
    c.lifecycle = Some(Lifecycle {
        pre_stop: Some(admin_get("/drain", json!({}))),
        ..Lifecycle::default()
    });
}

/// An HTTP GET of `path` on the admin port, with the probe's timing fields (none for a hook).
fn admin_get(path: &str, timing: Value) -> Handler {
    let mut h = Handler {
        http_get: Some(HttpGet {
            path: Some(path.to_string()),
            port: IntOrString::Str(ADMIN_PORT_NAME.to_string()),
            ..HttpGet::default()
        }),
        ..Handler::default()
    };
    if let Value::Object(m) = timing {
        h.extra = m;
    }
    h
}

fn tcp_port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: number,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

/// A one-line account of an outcome.
pub fn summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Injected(i) => format!("injected: {}", i.done.join("; ")),
        Outcome::Unchanged(why) => format!("unchanged: {why}"),
    }
}

impl Injection {
    /// How the app's port is now reached, for a caller that cannot see the Services (the
    /// webhook): by name it reaches lameduck; by number it still reaches the app.
    pub fn service_advice(&self) -> String {
        match &self.moved_name {
            Some(name) => format!(
                "Services that target port \"{name}\" by name now reach lameduck; a Service \
                 that targets {} by number still reaches the app directly: target \"{name}\"",
                self.app_port
            ),
            None => {
                let by_name = match &self.kept_name {
                    Some(name) => format!(
                        " (by number or by the name \"{name}\", which the app keeps: named \
                         ports of native sidecars resolve only from Kubernetes 1.32 on)"
                    ),
                    None => String::new(),
                };
                format!(
                    "a Service that targets the app's port {}{by_name} still reaches the app \
                     directly: target lameduck's port {} instead",
                    self.app_port, self.data_port
                )
            }
        }
    }
}
