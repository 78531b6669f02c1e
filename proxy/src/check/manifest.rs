//! The slice of the Kubernetes object model that `lameduck check` reads, and how to find it in
//! a rendered manifest.
//!
//! Small typed structs rather than the full k8s-openapi types: the check needs a few dozen
//! fields, and unknown fields are simply ignored, so the same code reads manifests written for
//! any Kubernetes version. Schema correctness is the job of `scripts/validate-k8s.sh`; this
//! module only has to understand wiring.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_yaml::Value;

/// A manifest that cannot be checked at all (exit 2), as opposed to a finding (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("document {index}: not YAML or JSON: {source}")]
    Syntax {
        index: usize,
        source: serde_yaml::Error,
    },
    #[error("{what}: {source}")]
    Shape {
        what: String,
        source: serde_yaml::Error,
    },
    #[error("no Deployment, StatefulSet, DaemonSet or Pod in the input: nothing to check")]
    NoWorkload,
}

/// Kubernetes' `IntOrString`, as used by ports and rollout limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    Str(String),
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::Str(s) => write!(f, "\"{s}\""),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    pub termination_grace_period_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub env_from: Vec<Value>,
    pub ports: Vec<ContainerPort>,
    pub readiness_probe: Option<Handler>,
    pub liveness_probe: Option<Handler>,
    pub startup_probe: Option<Handler>,
    pub lifecycle: Option<Lifecycle>,
    pub restart_policy: Option<String>,
}

impl Container {
    /// The container's port called `name`: what the kubelet resolves a named probe or hook port
    /// against (the container's *own* ports only).
    pub fn named_port(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
    }

    /// The image's name without registry, tag or digest: `lameduck` for
    /// `ghcr.io/x/lameduck:1.0@sha256:...`.
    pub fn image_name(&self) -> &str {
        let image = self.image.as_deref().unwrap_or("");
        let image = image.split('@').next().unwrap_or(image);
        let last = image.rsplit('/').next().unwrap_or(image);
        last.split(':').next().unwrap_or(last)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default)]
    pub name: Option<String>,
    pub container_port: u16,
}

/// A probe or a lifecycle hook: the same handler shapes, so one type serves both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Handler {
    pub http_get: Option<HttpGet>,
    pub tcp_socket: Option<TcpSocket>,
    pub exec: Option<Exec>,
    pub grpc: Option<Value>,
    pub sleep: Option<Value>,
}

impl Handler {
    /// Says what the handler does, for messages about a wrong one.
    pub fn describe(&self) -> String {
        if let Some(h) = &self.http_get {
            format!(
                "httpGet {} on port {}",
                h.path.as_deref().unwrap_or("/"),
                h.port
            )
        } else if let Some(t) = &self.tcp_socket {
            format!("tcpSocket on port {}", t.port)
        } else if let Some(e) = &self.exec {
            format!("exec `{}`", e.command.join(" "))
        } else if self.grpc.is_some() {
            "a grpc probe".to_string()
        } else if let Some(s) = &self.sleep {
            let secs = s.get("seconds").and_then(Value::as_i64).unwrap_or(0);
            format!("sleep {secs}s")
        } else {
            "an empty handler".to_string()
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    #[serde(default)]
    pub path: Option<String>,
    pub port: IntOrString,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TcpSocket {
    pub port: IntOrString,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Exec {
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Lifecycle {
    pub pre_stop: Option<Handler>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeploymentStrategy {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub rolling_update: Option<RollingUpdate>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RollingUpdate {
    pub max_unavailable: Option<IntOrString>,
    pub max_surge: Option<IntOrString>,
}

/// Something that runs pods: where the containers to check live.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub pod_labels: BTreeMap<String, String>,
    pub spec: PodSpec,
    /// Deployments only: `spec.replicas` (None when unset: 1) and `spec.strategy`.
    pub replicas: Option<i64>,
    pub strategy: Option<DeploymentStrategy>,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceSpec {
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub target_port: Option<IntOrString>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub namespace: Option<String>,
    pub spec: ServiceSpec,
}

impl Service {
    /// Whether this Service sends traffic to the workload's pods: a non-empty selector that the
    /// pod labels satisfy, in the same namespace (when both name one).
    pub fn selects(&self, w: &Workload) -> bool {
        if let (Some(a), Some(b)) = (&self.namespace, &w.namespace) {
            if a != b {
                return false;
            }
        }
        !self.spec.selector.is_empty()
            && self
                .spec
                .selector
                .iter()
                .all(|(k, v)| w.pod_labels.get(k) == Some(v))
    }
}

/// Everything in the input that the check looks at.
#[derive(Debug, Default)]
pub struct Manifest {
    pub workloads: Vec<Workload>,
    pub services: Vec<Service>,
}

/// Reads a multi-document YAML (or JSON) stream: Deployments, StatefulSets, DaemonSets, Pods
/// and Services, also inside `kind: List` (what `kubectl get -o yaml` prints). Other kinds are
/// skipped.
pub fn parse(text: &str) -> Result<Manifest, InputError> {
    let mut manifest = Manifest::default();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|source| InputError::Syntax {
            index: i + 1,
            source,
        })?;
        collect(value, &mut manifest)?;
    }
    if manifest.workloads.is_empty() {
        return Err(InputError::NoWorkload);
    }
    Ok(manifest)
}

fn collect(value: Value, manifest: &mut Manifest) -> Result<(), InputError> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    match kind {
        "List" => {
            if let Some(items) = value.get("items").and_then(Value::as_sequence) {
                for item in items {
                    collect(item.clone(), manifest)?;
                }
            }
        }
        "Deployment" | "StatefulSet" | "DaemonSet" | "Pod" => {
            manifest.workloads.push(workload(kind, &value)?);
        }
        "Service" => {
            let (name, namespace) = metadata(&value);
            let spec = typed(&value, &["spec"], || format!("Service {name}: spec"))?;
            manifest.services.push(Service {
                name,
                namespace,
                spec,
            });
        }
        _ => {}
    }
    Ok(())
}

fn workload(kind: &str, value: &Value) -> Result<Workload, InputError> {
    let (name, namespace) = metadata(value);
    let what = |field: &str| format!("{kind} {name}: {field}");
    // A Pod carries its spec; the controllers carry a pod template.
    let pod_path: &[&str] = if kind == "Pod" {
        &[]
    } else {
        &["spec", "template"]
    };
    let pod = walk(value, pod_path);
    let pod_labels = typed(pod, &["metadata", "labels"], || what("pod labels"))?;
    let spec = typed(pod, &["spec"], || what("pod spec"))?;
    let (replicas, strategy) = if kind == "Deployment" {
        (
            typed(value, &["spec", "replicas"], || what("spec.replicas"))?,
            typed(value, &["spec", "strategy"], || what("spec.strategy"))?,
        )
    } else {
        (None, None)
    };
    Ok(Workload {
        kind: kind.to_string(),
        name,
        namespace,
        pod_labels,
        spec,
        replicas,
        strategy,
    })
}

fn metadata(value: &Value) -> (String, Option<String>) {
    let meta = walk(value, &["metadata"]);
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_string();
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    (name, namespace)
}

static NULL: Value = Value::Null;

fn walk<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .try_fold(value, |v, key| v.get(*key))
        .unwrap_or(&NULL)
}

/// The typed value at `path`; an absent or null value gives the type's default.
fn typed<T: for<'de> Deserialize<'de> + Default>(
    value: &Value,
    path: &[&str],
    what: impl Fn() -> String,
) -> Result<T, InputError> {
    match walk(value, path) {
        Value::Null => Ok(T::default()),
        v => serde_yaml::from_value(v.clone()).map_err(|source| InputError::Shape {
            what: what(),
            source,
        }),
    }
}
