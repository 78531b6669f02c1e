//! The Deployment the lab replays, read from a real Kubernetes manifest.
//!
//! Only the fields that decide whether a rollout drops requests are modelled (replicas, the
//! rolling-update strategy, readiness probes, preStop hooks, the grace period, container args
//! and env, native sidecars); everything else in the YAML is ignored, so a manifest rendered by
//! `kubectl kustomize` can be fed in as it is. A field the lab cannot model faithfully (an exec
//! probe, an exec preStop that is not a sleep) is an error naming the field, never a silent skip:
//! a lab that quietly ignored a hook would report a rollout it never ran.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_yaml::Value;

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
    fn resolve_port(&self, v: &Value, what: &str) -> Result<u16> {
        resolve_port(v, &self.ports).with_context(|| format!("container `{}`: {what}", self.name))
    }
}

fn resolve_port(v: &Value, ports: &[(Option<String>, u16)]) -> Result<u16> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| anyhow!("port {n} is not a valid port number")),
        Value::String(s) => {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(n);
            }
            ports
                .iter()
                .find(|(name, _)| name.as_deref() == Some(s.as_str()))
                .map(|(_, p)| *p)
                .ok_or_else(|| anyhow!("no container port is named `{s}`"))
        }
        other => bail!("port must be a number or a port name, got {other:?}"),
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
    let mut deployment = None;
    let mut service_target: Option<Value> = None;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).context("not valid YAML")?;
        match value.get("kind").and_then(Value::as_str) {
            Some("Deployment") if deployment.is_none() => deployment = Some(value),
            Some("Service") if service_target.is_none() => {
                service_target = value
                    .get("spec")
                    .and_then(|s| s.get("ports"))
                    .and_then(|p| p.get(0))
                    .and_then(|p| p.get("targetPort").or_else(|| p.get("port")))
                    .cloned();
            }
            _ => {}
        }
    }
    let deployment = deployment.ok_or_else(|| anyhow!("no document of kind Deployment"))?;
    let raw: RawDeployment = serde_yaml::from_value(deployment)
        .context("the Deployment does not have the expected shape")?;
    build(raw, service_target, target_port)
}

fn build(
    raw: RawDeployment,
    service_target: Option<Value>,
    target_port: Option<u16>,
) -> Result<Deployment> {
    let spec = raw.spec;
    let replicas = spec.replicas.unwrap_or(1);
    let ru = spec.strategy.and_then(|s| {
        if s.type_.as_deref() == Some("Recreate") {
            Some(Err(anyhow!(
                "strategy Recreate is not modelled: the lab replays rolling updates"
            )))
        } else {
            s.rolling_update.map(Ok)
        }
    });
    let ru = ru.transpose()?.unwrap_or_default();
    // Kubernetes rounds maxSurge up and maxUnavailable down when they are percentages.
    let max_surge = int_or_percent(ru.max_surge.as_ref(), replicas, true, 25)
        .context("strategy.rollingUpdate.maxSurge")?;
    let max_unavailable = int_or_percent(ru.max_unavailable.as_ref(), replicas, false, 25)
        .context("strategy.rollingUpdate.maxUnavailable")?;
    if max_surge == 0 && max_unavailable == 0 {
        bail!("maxSurge and maxUnavailable are both 0: the rollout could never make progress");
    }
    let pod = spec.template.spec;
    let mut sidecars = Vec::new();
    for c in pod.init_containers.unwrap_or_default() {
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.push(container(c)?);
        } else {
            bail!("initContainer `{}` is a run-to-completion init container, which the lab does not model", c.name);
        }
    }
    let containers = pod
        .containers
        .into_iter()
        .map(container)
        .collect::<Result<Vec<_>>>()?;
    if containers.is_empty() {
        bail!("the pod template has no containers");
    }
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
    Ok(Deployment {
        replicas,
        max_surge,
        max_unavailable,
        min_ready_seconds: spec.min_ready_seconds.unwrap_or(0.0),
        pod: PodSpec {
            termination_grace: Duration::from_secs_f64(
                pod.termination_grace_period_seconds.unwrap_or(30.0),
            ),
            sidecars,
            containers,
        },
        target_port,
    })
}

fn int_or_percent(
    v: Option<&Value>,
    replicas: u32,
    round_up: bool,
    default_pct: u32,
) -> Result<u32> {
    let pct = |p: u32| {
        let x = f64::from(replicas) * f64::from(p) / 100.0;
        (if round_up { x.ceil() } else { x.floor() }) as u32
    };
    match v {
        None => Ok(pct(default_pct)),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| n as u32)
            .ok_or_else(|| anyhow!("{n} is not a non-negative integer")),
        Some(Value::String(s)) => {
            let p = s
                .strip_suffix('%')
                .and_then(|p| p.parse::<u32>().ok())
                .ok_or_else(|| anyhow!("`{s}` is neither an integer nor a percentage"))?;
            Ok(pct(p))
        }
        Some(other) => bail!("expected an integer or a percentage, got {other:?}"),
    }
}

fn container(c: RawContainer) -> Result<Container> {
    let mut out = Container {
        name: c.name.clone(),
        image: c.image.unwrap_or_default(),
        command: c.command.unwrap_or_default(),
        args: c.args.unwrap_or_default(),
        env: Vec::new(),
        ports: c
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name, p.container_port))
            .collect(),
        readiness: None,
        pre_stop: None,
    };
    for e in c.env.unwrap_or_default() {
        let value = match (e.value, e.value_from) {
            (Some(v), _) => EnvValue::Literal(v),
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
            name: e.name,
            value,
        });
    }
    if let Some(p) = c.readiness_probe {
        out.readiness = Some(probe(&out, p).context("readinessProbe")?);
    }
    if let Some(h) = c.lifecycle.and_then(|l| l.pre_stop) {
        out.pre_stop = Some(handler(&out, h).context("lifecycle.preStop")?);
    }
    Ok(out)
}

fn probe(c: &Container, p: RawProbe) -> Result<Probe> {
    let action = if let Some(h) = p.http_get {
        ProbeAction::HttpGet {
            port: c.resolve_port(&h.port, "readinessProbe.httpGet.port")?,
            path: h.path.unwrap_or_else(|| "/".into()),
        }
    } else if let Some(t) = p.tcp_socket {
        ProbeAction::TcpSocket {
            port: c.resolve_port(&t.port, "readinessProbe.tcpSocket.port")?,
        }
    } else {
        bail!(
            "container `{}`: only httpGet and tcpSocket readiness probes are modelled",
            c.name
        );
    };
    // The kubelet's defaults.
    Ok(Probe {
        action,
        initial_delay: Duration::from_secs_f64(p.initial_delay_seconds.unwrap_or(0.0)),
        period: Duration::from_secs_f64(p.period_seconds.unwrap_or(10.0)),
        timeout: Duration::from_secs_f64(p.timeout_seconds.unwrap_or(1.0)),
        success_threshold: p.success_threshold.unwrap_or(1).max(1),
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1),
    })
}

fn handler(c: &Container, h: RawHandler) -> Result<Handler> {
    if let Some(e) = h.exec {
        let cmd = e.command.unwrap_or_default();
        return parse_sleep_command(&cmd).map(Handler::Sleep).ok_or_else(|| {
            anyhow!(
                "container `{}`: exec preStop {:?} is not a sleep; the lab models only `sleep N` and `sh -c \"sleep N\"` (use httpGet for anything else)",
                c.name,
                cmd
            )
        });
    }
    if let Some(h) = h.http_get {
        return Ok(Handler::HttpGet {
            port: c.resolve_port(&h.port, "preStop.httpGet.port")?,
            path: h.path.unwrap_or_else(|| "/".into()),
        });
    }
    if let Some(s) = h.sleep {
        return Ok(Handler::Sleep(Duration::from_secs_f64(s.seconds)));
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

// ---- the YAML shapes (only the fields we read) ----

#[derive(Deserialize)]
struct RawDeployment {
    spec: RawDeploymentSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDeploymentSpec {
    replicas: Option<u32>,
    min_ready_seconds: Option<f64>,
    strategy: Option<RawStrategy>,
    template: RawTemplate,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStrategy {
    #[serde(rename = "type")]
    type_: Option<String>,
    rolling_update: Option<RawRollingUpdate>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawRollingUpdate {
    max_surge: Option<Value>,
    max_unavailable: Option<Value>,
}

#[derive(Deserialize)]
struct RawTemplate {
    spec: RawPodSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPodSpec {
    termination_grace_period_seconds: Option<f64>,
    init_containers: Option<Vec<RawContainer>>,
    containers: Vec<RawContainer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawContainer {
    name: String,
    image: Option<String>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    env: Option<Vec<RawEnv>>,
    ports: Option<Vec<RawPort>>,
    readiness_probe: Option<RawProbe>,
    lifecycle: Option<RawLifecycle>,
    restart_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnv {
    name: String,
    value: Option<String>,
    value_from: Option<BTreeMap<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPort {
    name: Option<String>,
    container_port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProbe {
    http_get: Option<RawHttpGet>,
    tcp_socket: Option<RawTcp>,
    initial_delay_seconds: Option<f64>,
    period_seconds: Option<f64>,
    timeout_seconds: Option<f64>,
    success_threshold: Option<u32>,
    failure_threshold: Option<u32>,
}

#[derive(Deserialize)]
struct RawHttpGet {
    path: Option<String>,
    port: Value,
}

#[derive(Deserialize)]
struct RawTcp {
    port: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLifecycle {
    pre_stop: Option<RawHandler>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHandler {
    exec: Option<RawExec>,
    http_get: Option<RawHttpGet>,
    sleep: Option<RawSleep>,
}

#[derive(Deserialize)]
struct RawExec {
    command: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawSleep {
    seconds: f64,
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
        let v = Value::String("25%".into());
        assert_eq!(int_or_percent(Some(&v), 3, true, 0).unwrap(), 1);
        assert_eq!(int_or_percent(Some(&v), 3, false, 0).unwrap(), 0);
    }

    #[test]
    fn exec_that_is_not_a_sleep_is_an_error() {
        let text = crate::scenario::BUILTIN[0].1.replace("periodSeconds: 5", "periodSeconds: 5\n        lifecycle:\n          preStop:\n            exec:\n              command: [\"nginx\", \"-s\", \"quit\"]");
        let err = format!("{:#}", parse(&text, None).unwrap_err());
        assert!(err.contains("not a sleep"), "{err}");
    }
}
