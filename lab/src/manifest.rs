//! The Deployment the lab replays, read from a real Kubernetes manifest.
//!
//! The manifest is read through the project's one Kubernetes model (`lameduck-k8s`, the same
//! types `lameduck check`, `inject` and the webhook read, with the same rollout rounding), then
//! reduced to what the lab runs: the fields that decide whether a rollout drops requests
//! (replicas, the rolling-update strategy, readiness probes, preStop hooks, the grace period,
//! container args and env, native sidecars); everything else in the YAML is ignored, so a
//! manifest rendered by `kubectl kustomize` can be fed in as it is. A field the lab cannot model faithfully (an exec
//! probe, an exec preStop that is not a sleep) is an error naming the field, never a silent skip:
//! a lab that quietly ignored a hook would report a rollout it never ran.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use lameduck_k8s::{
    self as k8s, resolve_limit, IntOrString, Service, Workload, DEFAULT_ROLLOUT_LIMIT,
};
use serde_json::Value;

/// A Deployment, reduced to what the lab runs.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub replicas: u32,
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub min_ready_seconds: f64,
    pub pod: PodSpec,
    /// The port the Service sends traffic to, resolved to a number.
    pub target_port: u16,
}

/// The pod template.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub termination_grace: Duration,
    /// Native sidecars: `initContainers` with `restartPolicy: Always`, in declaration order.
    pub sidecars: Vec<Container>,
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub ports: Vec<(Option<String>, u16)>,
    pub readiness: Option<Probe>,
    pub pre_stop: Option<Handler>,
}

#[derive(Debug, Clone)]
pub struct EnvVar {
    pub name: String,
    pub value: EnvValue,
}

#[derive(Debug, Clone)]
pub enum EnvValue {
    Literal(String),
    PodName,
    PodIp,
}

/// A readiness probe with the kubelet's defaults filled in.
#[derive(Debug, Clone)]
pub struct Probe {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

#[derive(Debug, Clone)]
pub enum ProbeAction {
    HttpGet { port: u16, path: String },
    TcpSocket { port: u16 },
}

/// A preStop hook.
#[derive(Debug, Clone)]
pub enum Handler {
    /// `exec` running `sleep N` (bare or through `sh -c`), or the `sleep` action: modelled as a
    /// sleep, because that is all it does and the lab runs no shell.
    Sleep(Duration),
    /// `httpGet`: the kubelet's GET to podIP:port/path, bounded only by the grace period.
    HttpGet { port: u16, path: String },
}

impl Container {
    /// Resolves a probe or hook port: a number, or the name of one of this container's ports.
    fn resolve_port(&self, v: &IntOrString, what: &str) -> Result<u16> {
        resolve_port(v, &self.ports).with_context(|| format!("container `{}`: {what}", self.name))
    }
}

fn resolve_port(v: &IntOrString, ports: &[(Option<String>, u16)]) -> Result<u16> {
    match v {
        IntOrString::Int(n) => {
            u16::try_from(*n).map_err(|_| anyhow!("port {n} is not a valid port number"))
        }
        IntOrString::Str(s) => {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(n);
            }
            ports
                .iter()
                .find(|(name, _)| name.as_deref() == Some(s.as_str()))
                .map(|(_, p)| *p)
                .ok_or_else(|| anyhow!("no container port is named `{s}`"))
        }
    }
}

/// Reads the Deployment (and, if present, the Service whose targetPort says where traffic goes)
/// from a YAML file that may hold several documents.
pub fn load_file(path: &Path, target_port: Option<u16>) -> Result<Deployment> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    parse(&text, target_port).with_context(|| format!("manifest {}", path.display()))
}

/// Parses manifest text; see [`load_file`].
pub fn parse(text: &str, target_port: Option<u16>) -> Result<Deployment> {
    let docs = lameduck_k8s::read_documents(text).context("not valid YAML")?;
    let mut deployment: Option<(Workload, f64)> = None;
    let mut service_target: Option<IntOrString> = None;
    let mut failure = None;
    for doc in &docs {
        lameduck_k8s::for_each_object(doc, &mut |obj| match obj["kind"].as_str() {
            Some("Deployment") if deployment.is_none() && failure.is_none() => {
                match Workload::from_object(obj) {
                    Ok(Some(w)) => {
                        let min_ready = obj["spec"]["minReadySeconds"].as_f64().unwrap_or(0.0);
                        deployment = Some((w, min_ready));
                    }
                    Ok(None) => {}
                    Err(e) => failure = Some(e),
                }
            }
            Some("Service") if service_target.is_none() => {
                if let Ok(Some(svc)) = Service::from_object(obj) {
                    service_target = svc.spec.ports.first().map(|p| p.target());
                }
            }
            _ => {}
        });
    }
    if let Some(e) = failure {
        return Err(anyhow!(e).context("the Deployment does not have the expected shape"));
    }
    let (w, min_ready_seconds) =
        deployment.ok_or_else(|| anyhow!("no document of kind Deployment"))?;
    build(w, min_ready_seconds, service_target, target_port)
}

fn build(
    w: Workload,
    min_ready_seconds: f64,
    service_target: Option<IntOrString>,
    target_port: Option<u16>,
) -> Result<Deployment> {
    let replicas = u32::try_from(w.replicas.unwrap_or(1))
        .map_err(|_| anyhow!("spec.replicas must not be negative"))?;
    let (max_surge, max_unavailable) = rolling_update(w.strategy.unwrap_or_default(), replicas)?;
    let pod = w.spec;
    let (sidecars, containers) = pod_containers(pod.init_containers, pod.containers)?;
    let all_ports: Vec<(Option<String>, u16)> = sidecars
        .iter()
        .chain(&containers)
        .flat_map(|c| c.ports.iter().cloned())
        .collect();
    let target_port = match (target_port, service_target) {
        (Some(p), _) => p,
        (None, Some(v)) => resolve_port(&v, &all_ports).context("the Service's targetPort")?,
        (None, None) => all_ports
            .iter()
            .find(|(n, _)| n.as_deref() == Some("http"))
            .or_else(|| all_ports.first())
            .map(|(_, p)| *p)
            .ok_or_else(|| anyhow!("no container port to send traffic to: add a port named `http` or pass --target-port"))?,
    };
    let grace = pod.termination_grace_period_seconds.unwrap_or(30).max(0);
    Ok(Deployment {
        replicas,
        max_surge,
        max_unavailable,
        min_ready_seconds,
        pod: PodSpec {
            termination_grace: Duration::from_secs(grace as u64),
            sidecars,
            containers,
        },
        target_port,
    })
}

/// maxSurge and maxUnavailable as pod counts; a strategy the lab does not replay, or one that
/// could never make progress, is an error.
fn rolling_update(strategy: k8s::DeploymentStrategy, replicas: u32) -> Result<(u32, u32)> {
    if strategy.kind.as_deref() == Some("Recreate") {
        bail!("strategy Recreate is not modelled: the lab replays rolling updates");
    }
    let ru = strategy.rolling_update.unwrap_or_default();
    let max_surge = rollout_limit(ru.max_surge.as_ref(), replicas, true)
        .context("strategy.rollingUpdate.maxSurge")?;
    let max_unavailable = rollout_limit(ru.max_unavailable.as_ref(), replicas, false)
        .context("strategy.rollingUpdate.maxUnavailable")?;
    if max_surge == 0 && max_unavailable == 0 {
        bail!("maxSurge and maxUnavailable are both 0: the rollout could never make progress");
    }
    Ok((max_surge, max_unavailable))
}

/// The native sidecars (init containers with `restartPolicy: Always`) and the containers;
/// a run-to-completion init container, or no container, is an error.
fn pod_containers(
    init_containers: Vec<k8s::Container>,
    containers: Vec<k8s::Container>,
) -> Result<(Vec<Container>, Vec<Container>)> {
    let mut sidecars = Vec::new();
    for c in init_containers {
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.push(container(c)?);
        } else {
            bail!("initContainer `{}` is a run-to-completion init container, which the lab does not model", c.name);
        }
    }
    let containers = containers
        .into_iter()
        .map(container)
        .collect::<Result<Vec<_>>>()?;
    if containers.is_empty() {
        bail!("the pod template has no containers");
    }
    Ok((sidecars, containers))
}

/// A rollout limit, rounded as the Deployment controller does (the shared rule in
/// `lameduck-k8s`); unset means the default 25%.
fn rollout_limit(v: Option<&IntOrString>, replicas: u32, round_up: bool) -> Result<u32> {
    let default = IntOrString::Str(DEFAULT_ROLLOUT_LIMIT.to_string());
    let v = v.unwrap_or(&default);
    let n = resolve_limit(v, i64::from(replicas), round_up)
        .ok_or_else(|| anyhow!("{v} is neither an integer nor a percentage"))?;
    u32::try_from(n).map_err(|_| anyhow!("{v} must not be negative"))
}

fn container(c: k8s::Container) -> Result<Container> {
    let mut out = Container {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        command: c.command.clone(),
        args: c.args.clone(),
        env: Vec::new(),
        ports: c
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.container_port))
            .collect(),
        readiness: None,
        pre_stop: None,
    };
    for e in &c.env {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => EnvValue::Literal(v.clone()),
            (None, Some(from)) => {
                let path = from
                    .get("fieldRef")
                    .and_then(|f| f.get("fieldPath"))
                    .and_then(Value::as_str);
                match path {
                    Some("metadata.name") => EnvValue::PodName,
                    Some("status.podIP") => EnvValue::PodIp,
                    _ => bail!(
                        "container `{}`: env `{}` uses a valueFrom the lab cannot model (only fieldRef metadata.name and status.podIP)",
                        c.name,
                        e.name
                    ),
                }
            }
            (None, None) => EnvValue::Literal(String::new()),
        };
        out.env.push(EnvVar {
            name: e.name.clone(),
            value,
        });
    }
    if let Some(p) = &c.readiness_probe {
        out.readiness = Some(probe(&out, p).context("readinessProbe")?);
    }
    if let Some(h) = c.pre_stop() {
        out.pre_stop = Some(handler(&out, h).context("lifecycle.preStop")?);
    }
    Ok(out)
}

fn probe(c: &Container, p: &k8s::Handler) -> Result<Probe> {
    let action = if let Some(h) = &p.http_get {
        ProbeAction::HttpGet {
            port: c.resolve_port(&h.port, "readinessProbe.httpGet.port")?,
            path: h.path.clone().unwrap_or_else(|| "/".into()),
        }
    } else if let Some(t) = &p.tcp_socket {
        ProbeAction::TcpSocket {
            port: c.resolve_port(&t.port, "readinessProbe.tcpSocket.port")?,
        }
    } else {
        bail!(
            "container `{}`: only httpGet and tcpSocket readiness probes are modelled",
            c.name
        );
    };
    // The probe's timing is not typed in the shared model: read from its other fields.
    let secs = |field: &str, default: f64| {
        p.extra
            .get(field)
            .and_then(Value::as_f64)
            .unwrap_or(default)
    };
    let count = |field: &str, default: u64| {
        p.extra
            .get(field)
            .and_then(Value::as_u64)
            .unwrap_or(default)
            .clamp(1, u64::from(u32::MAX)) as u32
    };
    // The kubelet's defaults.
    Ok(Probe {
        action,
        initial_delay: Duration::from_secs_f64(secs("initialDelaySeconds", 0.0)),
        period: Duration::from_secs_f64(secs("periodSeconds", 10.0)),
        timeout: Duration::from_secs_f64(secs("timeoutSeconds", 1.0)),
        success_threshold: count("successThreshold", 1),
        failure_threshold: count("failureThreshold", 3),
    })
}

fn handler(c: &Container, h: &k8s::Handler) -> Result<Handler> {
    if let Some(e) = &h.exec {
        return parse_sleep_command(&e.command).map(Handler::Sleep).ok_or_else(|| {
            anyhow!(
                "container `{}`: exec preStop {:?} is not a sleep; the lab models only `sleep N` and `sh -c \"sleep N\"` (use httpGet for anything else)",
                c.name,
                e.command
            )
        });
    }
    if let Some(g) = &h.http_get {
        return Ok(Handler::HttpGet {
            port: c.resolve_port(&g.port, "preStop.httpGet.port")?,
            path: g.path.clone().unwrap_or_else(|| "/".into()),
        });
    }
    if let Some(s) = &h.sleep {
        return Ok(Handler::Sleep(Duration::from_secs(s.seconds.max(0) as u64)));
    }
    bail!(
        "container `{}`: preStop has no exec, httpGet or sleep",
        c.name
    )
}

/// `["sleep", "2"]`, `["/bin/sleep", "2"]`, `["sh", "-c", "sleep 2"]`, `["/bin/sh", "-c", "sleep 2s"]`.
pub fn parse_sleep_command(cmd: &[String]) -> Option<Duration> {
    let words: Vec<String> = match cmd {
        [sh, c, script] if sh.ends_with("sh") && c == "-c" => {
            script.split_whitespace().map(str::to_string).collect()
        }
        _ => cmd.to_vec(),
    };
    match words.as_slice() {
        [sleep, n] if sleep == "sleep" || sleep.ends_with("/sleep") => {
            let n = n.trim_end_matches('s');
            n.parse::<f64>()
                .ok()
                .filter(|s| *s >= 0.0)
                .map(Duration::from_secs_f64)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sleep_commands_are_recognised() {
        assert_eq!(
            parse_sleep_command(&s(&["sh", "-c", "sleep 2"])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_sleep_command(&s(&["/bin/sleep", "1.5"])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_sleep_command(&s(&["sh", "-c", "sleep 2 && kill 1"])),
            None
        );
        assert_eq!(parse_sleep_command(&s(&["echo", "2"])), None);
    }

    #[test]
    fn builtin_manifests_parse() {
        for (name, text) in crate::scenario::BUILTIN {
            let d = parse(text, None).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(d.replicas, 2, "{name}");
        }
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        let v = IntOrString::Str("25%".into());
        assert_eq!(rollout_limit(Some(&v), 3, true).unwrap(), 1);
        assert_eq!(rollout_limit(Some(&v), 3, false).unwrap(), 0);
        assert_eq!(rollout_limit(None, 4, false).unwrap(), 1);
    }

    #[test]
    fn exec_that_is_not_a_sleep_is_an_error() {
        let text = crate::scenario::BUILTIN[0].1.replace("periodSeconds: 5", "periodSeconds: 5\n        lifecycle:\n          preStop:\n            exec:\n              command: [\"nginx\", \"-s\", \"quit\"]");
        let err = format!("{:#}", parse(&text, None).unwrap_err());
        assert!(err.contains("not a sleep"), "{err}");
    }
}
