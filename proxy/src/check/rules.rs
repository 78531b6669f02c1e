//! The wiring rules: what in a pod spec would make a rollout drop or cut requests even with
//! lameduck in the pod. Each rule says what it found, in which container and field, and what to
//! write instead.
//!
//! lameduck's own settings are read the way lameduck reads them: the container's `LAMEDUCK_*`
//! env entries and its `args` go through the same clap definition ([`RunCommand`]) and the same budget
//! arithmetic ([`RunArgs::shutdown_budget`]), so the check cannot drift from the binary.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use clap::{CommandFactory, Parser};

use lameduck_k8s::{resolve_limit, DEFAULT_ROLLOUT_LIMIT};

use super::manifest::{Container, IntOrString, Service, Workload};
use crate::config::{fmt_duration, RunArgs, RunCommand};

/// The grace period the kubelet applies when a pod spec sets none.
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// From this many replicas on, `maxUnavailable > 0` is a warning instead of an error: one pod
/// out is then at most a third of the capacity, which a service with headroom can take.
const REPLICAS_FOR_UNAVAILABLE: i64 = 3;

/// The Kubernetes version the manifest is meant for (`lameduck check --kube-version`): some
/// wiring works on new servers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
}

impl KubeVersion {
    /// The oldest version the docs support for every shipped overlay (native sidecars are beta
    /// and on by default from 1.29): the default, so a check passes only what works everywhere.
    pub const OLDEST_SUPPORTED: KubeVersion = KubeVersion::new(1, 29);
    /// Native sidecars: alpha behind the SidecarContainers gate in 1.28, on by default from 1.29.
    const SIDECARS_ALPHA: KubeVersion = KubeVersion::new(1, 28);
    /// From 1.32 a Service's named targetPort is also looked up in restartable init containers
    /// (kubernetes#127958, fixed by #127976; not backported).
    const NAMED_PORT_IN_SIDECARS: KubeVersion = KubeVersion::new(1, 32);

    pub const fn new(major: u32, minor: u32) -> Self {
        KubeVersion { major, minor }
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// `1.31`, `v1.31`, `1.31.2` or `v1.31.2-gke.100` (what `kubectl version` prints); the patch
/// level is ignored.
impl FromStr for KubeVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("\"{s}\" is not a Kubernetes version like 1.31 or v1.31.2");
        let mut parts = s.strip_prefix('v').unwrap_or(s).splitn(3, '.');
        let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor = parts
            .next()
            .map(|p| p.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)?;
        if major != 1 {
            return Err(bad());
        }
        Ok(KubeVersion::new(major, minor))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
}

/// The outcome for one workload: what was understood (`notes`) and what is wrong (`findings`).
#[derive(Debug, Default)]
pub struct Verdict {
    pub notes: Vec<String>,
    pub findings: Vec<Finding>,
}

impl Verdict {
    fn error(&mut self, message: impl Into<String>) {
        self.findings.push(Finding {
            severity: Severity::Error,
            message: message.into(),
        });
    }

    fn warning(&mut self, message: impl Into<String>) {
        self.findings.push(Finding {
            severity: Severity::Warning,
            message: message.into(),
        });
    }
}

/// What lameduck's configuration says about the pod's ports.
struct Ports {
    data: u16,
    admin: u16,
    /// The app's port: lameduck's `--upstream`.
    app: u16,
}

/// Where a probe, hook or Service port lands.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Data,
    Admin,
    App,
    Other(u16),
}

impl Ports {
    fn classify(&self, port: u16) -> Target {
        if port == self.data {
            Target::Data
        } else if port == self.admin {
            Target::Admin
        } else if port == self.app {
            Target::App
        } else {
            Target::Other(port)
        }
    }
}

/// Checks one workload against the rules for a server at `version`; `services` are the input's
/// Services (the ones that select this workload are checked).
pub fn check(w: &Workload, services: &[Service], version: KubeVersion) -> Verdict {
    let mut v = Verdict::default();
    let Some((lameduck, native)) = find_lameduck(w, &mut v) else {
        return v;
    };
    if native {
        sidecar_support(version, &mut v);
    }
    let Some(cfg) = lameduck_config(lameduck, &mut v) else {
        return v;
    };
    let ports = Ports {
        data: cfg.listen.port(),
        admin: cfg.admin_listen.port(),
        app: cfg.upstream.port(),
    };
    v.notes.push(format!(
        "lameduck: {} (container \"{}\"), data port {}, admin port {}, upstream {}",
        if native {
            "native sidecar"
        } else {
            "classic sidecar"
        },
        lameduck.name,
        ports.data,
        ports.admin,
        cfg.upstream,
    ));

    addresses(&cfg, &mut v);
    let apps: Vec<&Container> = w
        .spec
        .containers
        .iter()
        .filter(|c| c.name != lameduck.name)
        .collect();
    let app_loopback = app_listen(&apps, &ports, &mut v);
    readiness(lameduck, &ports, &mut v);
    for c in w.spec.containers.iter().chain(&w.spec.init_containers) {
        liveness(c, &lameduck.name, &ports, app_loopback, &mut v);
    }
    startup(lameduck, native, &ports, &mut v);
    for app in &apps {
        app_pre_stop(app, native, &ports, &mut v);
    }
    lameduck_pre_stop(lameduck, &ports, &mut v);
    grace_period(w, &cfg, &mut v);
    rollout(w, &mut v);
    for s in services.iter().filter(|s| s.selects(w)) {
        service(s, w, &ports, version, &mut v);
    }
    if !services.iter().any(|s| s.selects(w)) {
        v.notes
            .push("no Service in the input selects these pods: targetPort not checked".to_string());
    }
    v
}

/// lameduck is the container named `lameduck` or running an image whose name contains it, in
/// `containers` (classic sidecar) or `initContainers` with `restartPolicy: Always` (native).
fn find_lameduck<'a>(w: &'a Workload, v: &mut Verdict) -> Option<(&'a Container, bool)> {
    let is_lameduck = |c: &&Container| c.name == "lameduck" || c.image_name().contains("lameduck");
    if let Some(c) = w.spec.containers.iter().find(is_lameduck) {
        return Some((c, false));
    }
    if let Some(c) = w.spec.init_containers.iter().find(is_lameduck) {
        if c.restart_policy.as_deref() == Some("Always") {
            return Some((c, true));
        }
        v.error(format!(
            "container \"{}\" is a plain init container (no restartPolicy: Always): it must exit \
             before the app starts, so it never proxies anything; set restartPolicy: Always \
             (native sidecar, Kubernetes >= 1.29) or move it to containers",
            c.name
        ));
        return None;
    }
    v.error(
        "lameduck container missing: no container is named \"lameduck\" or runs a lameduck image, \
         so traffic reaches the app directly and nothing holds the shutdown until endpoint \
         removal has propagated",
    );
    None
}

/// Native sidecars exist from 1.28 (alpha, gated) and are on by default from 1.29.
fn sidecar_support(version: KubeVersion, v: &mut Verdict) {
    if version < KubeVersion::SIDECARS_ALPHA {
        v.error(format!(
            "native sidecar (restartPolicy: Always on an init container) needs Kubernetes >= \
             1.28; on {version} the field does not exist (rejected or dropped), and lameduck would \
             run as a plain init container that never lets the app start; use the classic \
             sidecar (k8s/base)"
        ));
    } else if version < KubeVersion::OLDEST_SUPPORTED {
        v.warning(format!(
            "native sidecars are alpha in {version}: the SidecarContainers feature gate must be \
             on for the kube-apiserver, the kubelet and the kube-scheduler; on by default from \
             {}",
            KubeVersion::OLDEST_SUPPORTED
        ));
    }
}

/// lameduck's effective configuration: its `LAMEDUCK_*` env entries turned into the flags they
/// stand for, then its args (which win, as they do over env in the binary), parsed by the same
/// clap definition as the binary's.
fn lameduck_config(c: &Container, v: &mut Verdict) -> Option<RunArgs> {
    let mut argv = vec!["lameduck".to_string()];
    argv.extend(env_as_flags(c, v));
    argv.extend(command_flags(c, v));
    argv.extend(c.args.iter().cloned());
    let cli = match RunCommand::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            let first = crate::config::flag_error_summary(&e);
            v.error(format!(
                "container \"{}\": lameduck would not start, its flags do not parse (env \
                 LAMEDUCK_X counts as --x): {first}",
                c.name
            ));
            return None;
        }
    };
    let cfg = cli.run;
    if let Err(e) = cfg.validate() {
        // The same line lameduck itself prints before exiting 2.
        v.error(format!(
            "container \"{}\": lameduck would refuse to start: {e}",
            c.name
        ));
    }
    Some(cfg)
}

/// The container's `LAMEDUCK_*` env entries as the flags they stand for (clap's own env
/// names, so the mapping cannot drift); what cannot be read offline is warned about.
fn env_as_flags(c: &Container, v: &mut Verdict) -> Vec<String> {
    let env_flags: HashMap<String, String> = RunCommand::command()
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_string();
            Some((env, a.get_long()?.to_string()))
        })
        .collect();
    let mut flags = Vec::new();
    for e in c.env.iter().filter(|e| e.name.starts_with("LAMEDUCK_")) {
        let Some(flag) = env_flags.get(&e.name) else {
            v.warning(format!(
                "container \"{}\": env {} is not a lameduck setting (lameduck ignores it; \
                 misspelt?)",
                c.name, e.name
            ));
            continue;
        };
        match (&e.value, &e.value_from) {
            (_, Some(_)) => v.warning(format!(
                "container \"{}\": env {} comes from valueFrom, which cannot be read offline: \
                 checked with lameduck's default for --{flag}",
                c.name, e.name
            )),
            (Some(value), None) => flags.push(format!("--{flag}={value}")),
            (None, None) => flags.push(format!("--{flag}=")),
        }
    }
    if !c.env_from.is_empty() {
        v.warning(format!(
            "container \"{}\": envFrom may set LAMEDUCK_* variables that this check cannot see",
            c.name
        ));
    }
    flags
}

/// The flags in `command` after the lameduck binary itself; a `command` that runs something
/// else replaces the entrypoint, and only `args` can be read.
fn command_flags(c: &Container, v: &mut Verdict) -> Vec<String> {
    let Some(first) = c.command.first() else {
        return Vec::new();
    };
    if first
        .rsplit('/')
        .next()
        .unwrap_or(first)
        .contains("lameduck")
    {
        return c.command[1..].to_vec();
    }
    v.warning(format!(
        "container \"{}\": command `{}` replaces the lameduck entrypoint: only args are \
         read as lameduck's flags",
        c.name,
        c.command.join(" ")
    ));
    Vec::new()
}

/// The data and admin planes must listen on the pod IP: the Service, the kubelet's probes and
/// its preStop call all come from outside the pod's loopback.
fn addresses(cfg: &RunArgs, v: &mut Verdict) {
    if cfg.listen.ip().is_loopback() {
        v.error(format!(
            "lameduck --listen {} is loopback: Services reach the pod IP, never loopback; \
             listen on 0.0.0.0",
            cfg.listen
        ));
    }
    if cfg.admin_listen.ip().is_loopback() {
        v.error(format!(
            "lameduck --admin-listen {} is loopback: the kubelet's probes and preStop calls come \
             to the pod IP; listen on 0.0.0.0",
            cfg.admin_listen
        ));
    }
    if !cfg.upstream.ip().is_loopback() {
        v.warning(format!(
            "lameduck --upstream {} is not on loopback: a sidecar fronts the app in its own pod \
             (127.0.0.1)",
            cfg.upstream
        ));
    }
    if cfg.upstream.ip().is_loopback()
        && (cfg.upstream.port() == cfg.listen.port()
            || cfg.upstream.port() == cfg.admin_listen.port())
    {
        v.error(format!(
            "lameduck --upstream {} shares its port with lameduck's own listeners: the \
             containers of a pod share one network namespace",
            cfg.upstream
        ));
    }
}

/// Finds where the app listens (an arg or env value `host:PORT` with lameduck's upstream port)
/// and warns when that is reachable from outside the pod. Returns whether the app is loopback
/// only, when that can be told.
fn app_listen(apps: &[&Container], ports: &Ports, v: &mut Verdict) -> Option<bool> {
    for app in apps {
        let from_args = app.args.iter().map(|a| ("args", a.as_str()));
        let from_env = app
            .env
            .iter()
            .filter_map(|e| Some(("env", e.value.as_deref()?)));
        for (source, raw) in from_args.chain(from_env) {
            let value = match raw.split_once('=') {
                Some((flag, value)) if flag.starts_with('-') => value,
                _ => raw,
            };
            let Some((host, port)) = value.rsplit_once(':') else {
                continue;
            };
            if port.parse::<u16>() != Ok(ports.app) {
                continue;
            }
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback =
                host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                v.warning(format!(
                    "container \"{}\" listens on {value} ({source}): reachable on the pod IP, so \
                     anything aimed at port {} bypasses lameduck; listen on 127.0.0.1:{}",
                    app.name, ports.app, ports.app
                ));
            }
            return Some(loopback);
        }
    }
    None
}

/// Resolves a probe's or hook's port the way the kubelet does: a number, or a name looked up
/// in the same container's ports.
fn handler_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(i) => u16::try_from(*i).map_err(|_| format!("port {i} is out of range")),
        IntOrString::Str(name) => c.named_port(name).ok_or_else(|| {
            format!(
                "port \"{name}\" is a name, and the kubelet resolves it against container \
                 \"{}\"'s own ports, which have no such name",
                c.name
            )
        }),
    }
}

/// The pod is Ready only while lameduck's /ready says so: serving, and the app ready.
fn readiness(lameduck: &Container, ports: &Ports, v: &mut Verdict) {
    let want = format!("httpGet {{path: /ready, port: {}}}", ports.admin);
    let Some(probe) = &lameduck.readiness_probe else {
        v.error(format!(
            "container \"{}\": no readinessProbe on lameduck's admin /ready: the pod counts as \
             ready before the app is and stays ready through the shutdown; add readinessProbe \
             {want}",
            lameduck.name
        ));
        return;
    };
    let ok = probe.http_get.as_ref().is_some_and(|h| {
        h.path.as_deref() == Some("/ready")
            && handler_port(&h.port, lameduck) == Ok(ports.admin)
            && h.host.as_deref().unwrap_or("").is_empty()
    });
    if !ok {
        v.error(format!(
            "container \"{}\": readinessProbe is {}, not lameduck's admin /ready: readiness \
             must follow lameduck's phase (503 from the shutdown signal on); use {want}",
            lameduck.name,
            probe.describe()
        ));
    }
}

/// A liveness probe must pass for as long as lameduck runs, draining included: a restart in
/// the middle of a drain cuts every request in flight.
fn liveness(
    c: &Container,
    lameduck: &str,
    ports: &Ports,
    app_loopback: Option<bool>,
    v: &mut Verdict,
) {
    let Some(probe) = &c.liveness_probe else {
        return;
    };
    let port = probe
        .http_get
        .as_ref()
        .map(|h| &h.port)
        .or(probe.tcp_socket.as_ref().map(|t| &t.port));
    let Some(port) = port else {
        return; // exec and grpc probes: the app's own business
    };
    let port = match handler_port(port, c) {
        Ok(p) => p,
        Err(e) => {
            v.error(format!(
                "container \"{}\": livenessProbe {e}: it can never pass",
                c.name
            ));
            return;
        }
    };
    let path = probe.http_get.as_ref().and_then(|h| h.path.as_deref());
    let what = probe.describe();
    match ports.classify(port) {
        Target::Admin if probe.http_get.is_some() && path != Some("/live") => v.error(format!(
            "container \"{}\": livenessProbe is {what}, which fails during the shutdown (or \
             while the app is not ready), so the kubelet would restart lameduck mid-drain; use \
             lameduck's /live (port {}), which stays 200 until it exits",
            c.name, ports.admin
        )),
        Target::Data => v.error(format!(
            "container \"{}\": livenessProbe is {what}, lameduck's data port, which is closed \
             while draining and fails whenever the app does; use lameduck's /live on port {}",
            c.name, ports.admin
        )),
        Target::App if c.name != lameduck && app_loopback == Some(true) => v.error(format!(
            "container \"{}\": livenessProbe is {what}, the app's port, which listens on \
             loopback only while the kubelet probes the pod IP: it can never pass",
            c.name
        )),
        _ => {}
    }
}

/// Native sidecar: the kubelet starts the app once lameduck's startupProbe passes, so that
/// probe must not wait for the app.
fn startup(lameduck: &Container, native: bool, ports: &Ports, v: &mut Verdict) {
    match &lameduck.startup_probe {
        Some(p) => {
            let waits_for_app = p.http_get.as_ref().is_some_and(|h| {
                h.path.as_deref() == Some("/ready")
                    && handler_port(&h.port, lameduck) == Ok(ports.admin)
            });
            if waits_for_app && native {
                v.error(format!(
                    "container \"{}\": startupProbe is {}, but as a native sidecar lameduck must \
                     start before the app, and /ready waits for the app: the pod never starts; \
                     use /live",
                    lameduck.name,
                    p.describe()
                ));
            }
        }
        None if native => v.warning(format!(
            "container \"{}\": native sidecar without a startupProbe: the app may start before \
             lameduck listens; add startupProbe httpGet {{path: /live, port: {}}}",
            lameduck.name, ports.admin
        )),
        None => {}
    }
}

/// The app must get SIGTERM only once lameduck has drained: its preStop calls lameduck's
/// /drain, which answers when the last request has finished.
fn app_pre_stop(app: &Container, native: bool, ports: &Ports, v: &mut Verdict) {
    let want = format!(
        "lifecycle.preStop.httpGet {{path: /drain, port: {}}}",
        ports.admin
    );
    let why = if native {
        " (a native sidecar outlives the app, but the app must also outlive lameduck's drain)"
    } else {
        ""
    };
    let Some(hook) = app.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
        v.error(format!(
            "container \"{}\": no preStop hook: it gets SIGTERM at the start of the termination \
             while lameduck still forwards requests to it{why}; add {want}",
            app.name
        ));
        return;
    };
    let Some(h) = &hook.http_get else {
        v.error(format!(
            "container \"{}\": preStop is {}, not a call to lameduck's /drain: a fixed wait \
             guesses how long endpoint removal and the drain take{}; use {want}",
            app.name,
            hook.describe(),
            if hook.exec.is_some() {
                ", and an exec hook needs a shell in the image"
            } else {
                ""
            }
        ));
        return;
    };
    let port = match handler_port(&h.port, app) {
        Ok(p) => p,
        Err(e) => {
            v.error(format!(
                "container \"{}\": preStop {e}; give lameduck's admin port as the number {}",
                app.name, ports.admin
            ));
            return;
        }
    };
    if port != ports.admin || h.path.as_deref() != Some("/drain") {
        v.error(format!(
            "container \"{}\": preStop is {}, not lameduck's /drain on its admin port {}; use \
             {want}",
            app.name,
            hook.describe(),
            ports.admin
        ));
    }
    if h.host.as_deref().is_some_and(|host| !host.is_empty()) {
        v.error(format!(
            "container \"{}\": preStop httpGet has host {}: it must reach this pod's lameduck; \
             leave host unset (the pod IP)",
            app.name,
            h.host.as_deref().unwrap_or("")
        ));
    }
    if h.scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        v.error(format!(
            "container \"{}\": preStop httpGet uses HTTPS; lameduck's admin plane is plain HTTP",
            app.name
        ));
    }
}

/// lameduck's own preStop is optional; an exec one cannot run in its shell-less image.
fn lameduck_pre_stop(lameduck: &Container, ports: &Ports, v: &mut Verdict) {
    let Some(hook) = lameduck
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    else {
        return;
    };
    if hook.exec.is_some() {
        v.error(format!(
            "container \"{}\": preStop is {}, but the lameduck image has no shell; lameduck needs \
             no preStop (it starts its lame-duck window on SIGTERM), or use httpGet /drain",
            lameduck.name,
            hook.describe()
        ));
    } else if let Some(h) = &hook.http_get {
        let drains = h.path.as_deref() == Some("/drain")
            && handler_port(&h.port, lameduck) == Ok(ports.admin);
        if !drains {
            v.warning(format!(
                "container \"{}\": preStop is {}, not /drain on the admin port {}",
                lameduck.name,
                hook.describe(),
                ports.admin
            ));
        }
    }
}

/// The kubelet kills the pod at terminationGracePeriodSeconds, preStop hooks included.
fn grace_period(w: &Workload, cfg: &RunArgs, v: &mut Verdict) {
    let budget = cfg.shutdown_budget();
    let (grace, how) = match w.spec.termination_grace_period_seconds {
        Some(g) => (g, String::new()),
        None => (DEFAULT_GRACE_SECONDS, " (unset: the default)".to_string()),
    };
    v.notes.push(format!(
        "budget: {budget}; terminationGracePeriodSeconds {grace}{how}"
    ));
    let need = budget.total().as_secs() + u64::from(budget.total().subsec_nanos() > 0);
    if grace < 0 || (grace as u64) < need {
        v.error(format!(
            "terminationGracePeriodSeconds {grace}{how} is below lameduck's shutdown budget \
             ({budget}): the kubelet would kill the pod before the drain and the app's own \
             shutdown finish; set it to at least {need} or lower the budget"
        ));
    }
    if let Some(told) = cfg.termination_grace_period {
        if told.as_secs_f64() != grace as f64 {
            v.warning(format!(
                "lameduck is told --termination-grace-period {} but the pod's \
                 terminationGracePeriodSeconds is {grace}{how}: keep them equal so lameduck's own \
                 start-up check means something",
                fmt_duration(told)
            ));
        }
    }
}

/// A rolling update must not take ready pods away before their replacements are ready.
fn rollout(w: &Workload, v: &mut Verdict) {
    let Some(strategy) = &w.strategy else {
        return; // not a Deployment
    };
    if strategy.kind.as_deref() == Some("Recreate") {
        v.error(
            "strategy Recreate stops every old pod before any new one starts: downtime, whatever \
             lameduck does; use RollingUpdate with maxUnavailable: 0 and maxSurge: 1",
        );
        return;
    }
    let replicas = w.replicas.unwrap_or(1);
    let ru = strategy.rolling_update.clone().unwrap_or_default();
    let default = IntOrString::Str(DEFAULT_ROLLOUT_LIMIT.to_string());
    let mu_spec = ru.max_unavailable.unwrap_or_else(|| default.clone());
    let ms_spec = ru.max_surge.unwrap_or(default);
    let (Some(mu), Some(ms)) = (
        resolve_limit(&mu_spec, replicas, false),
        resolve_limit(&ms_spec, replicas, true),
    ) else {
        v.error(format!(
            "strategy.rollingUpdate: maxUnavailable {mu_spec} / maxSurge {ms_spec} is not a \
             number or a percentage"
        ));
        return;
    };
    v.notes.push(format!(
        "rollout: {replicas} replicas, maxUnavailable {mu_spec} = {mu}, maxSurge {ms_spec} = {ms}"
    ));
    if mu == 0 && ms == 0 {
        v.error("strategy.rollingUpdate: maxUnavailable and maxSurge are both 0: the rollout cannot make progress (the API server rejects it); use maxSurge: 1");
    } else if mu > 0 && replicas < REPLICAS_FOR_UNAVAILABLE {
        v.error(format!(
            "strategy.rollingUpdate.maxUnavailable {mu_spec} lets the rollout take {mu} of \
             {replicas} ready pods away before their replacements are ready: with fewer than \
             {REPLICAS_FOR_UNAVAILABLE} replicas that is a third of the capacity or more; set \
             maxUnavailable: 0 and maxSurge: 1"
        ));
    } else if mu > 0 {
        v.warning(format!(
            "strategy.rollingUpdate.maxUnavailable {mu_spec} lets the rollout take {mu} of \
             {replicas} ready pods away before their replacements are ready: fine only with \
             headroom; maxUnavailable: 0 keeps full capacity"
        ));
    }
}

/// A Service's named targetPort as the EndpointSlice controller resolves it: the pod's
/// containers first, then (from 1.32 only) its native sidecars. The second value names the
/// sidecar when only a sidecar declares the port. Plain init containers have exited by the
/// time a pod serves, and no version looks at them.
fn named_target_port<'a>(w: &'a Workload, name: &str) -> Option<(u16, Option<&'a str>)> {
    if let Some(port) = w.spec.containers.iter().find_map(|c| c.named_port(name)) {
        return Some((port, None));
    }
    w.spec
        .init_containers
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .find_map(|c| Some((c.named_port(name)?, Some(c.name.as_str()))))
}

/// The Service must send traffic to lameduck's data port, never around it.
fn service(s: &Service, w: &Workload, ports: &Ports, version: KubeVersion, v: &mut Verdict) {
    for p in &s.spec.ports {
        let label = match &p.name {
            Some(n) => format!("Service {} port {} ({n})", s.name, p.port),
            None => format!("Service {} port {}", s.name, p.port),
        };
        let target = p
            .target_port
            .clone()
            .unwrap_or(IntOrString::Int(i64::from(p.port)));
        let resolved = match &target {
            IntOrString::Int(i) => u16::try_from(*i).ok(),
            IntOrString::Str(name) => match named_target_port(w, name) {
                Some((port, None)) => Some(port),
                Some((port, Some(sidecar))) if version >= KubeVersion::NAMED_PORT_IN_SIDECARS => {
                    v.notes.push(format!(
                        "{label}: targetPort {target} is declared only by native sidecar \
                         \"{sidecar}\", which Kubernetes resolves from 1.32 on (checked for \
                         {version}); the number {port} works on every version"
                    ));
                    Some(port)
                }
                Some((port, Some(sidecar))) => {
                    v.error(format!(
                        "{label}: targetPort {target} is declared only by native sidecar \
                         \"{sidecar}\" (an init container), and Kubernetes before 1.32 resolves \
                         a Service's named targetPort against spec.containers only \
                         (kubernetes#127958): the EndpointSlice gets no port and every connection \
                         is refused; use the number {port} (checked for Kubernetes {version}; \
                         --kube-version sets the server's)"
                    ));
                    continue;
                }
                None => None,
            },
        };
        let Some(port) = resolved else {
            v.error(format!(
                "{label}: targetPort {target} matches no container port of {w}"
            ));
            continue;
        };
        match ports.classify(port) {
            Target::Data => v
                .notes
                .push(format!("{label} -> {port} (lameduck's data port)")),
            Target::App => v.error(format!(
                "{label}: targetPort {target} is the app's port {port}: traffic bypasses \
                 lameduck (and is refused if the app listens on loopback); target lameduck's \
                 data port {}",
                ports.data
            )),
            Target::Admin => v.error(format!(
                "{label}: targetPort {target} is lameduck's admin port {port}, not its data port \
                 {}",
                ports.data
            )),
            Target::Other(_) => v.warning(format!(
                "{label}: targetPort {target} (port {port}) is not lameduck's data port {}: that \
                 traffic does not go through lameduck",
                ports.data
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_versions_parse_like_kubectl_prints_them() {
        let v = |s: &str| s.parse::<KubeVersion>();
        assert_eq!(v("1.31"), Ok(KubeVersion::new(1, 31)));
        assert_eq!(v("v1.32.0"), Ok(KubeVersion::new(1, 32)));
        assert_eq!(v("v1.28.7-gke.100"), Ok(KubeVersion::new(1, 28)));
        assert_eq!(v("1.30+"), Ok(KubeVersion::new(1, 30)));
        assert!(v("latest").is_err());
        assert!(v("2.1").is_err());
        assert!(v("1").is_err());
        assert!(KubeVersion::new(1, 31) < KubeVersion::NAMED_PORT_IN_SIDECARS);
    }

    #[test]
    fn env_names_map_to_flags() {
        // Every LAMEDUCK_* variable the check can translate is a real flag of the binary.
        let cmd = RunCommand::command();
        let envs: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        assert!(envs.contains(&"LAMEDUCK_DRAIN_TIMEOUT".to_string()));
        assert!(envs.iter().all(|e| e.starts_with("LAMEDUCK_")));
    }
}
