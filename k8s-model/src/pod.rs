//! The pod spec: containers, their ports, probes and hooks, the grace period.
//!
//! A probe and a lifecycle hook share one type, [`Handler`]: the action shapes are the same
//! (`httpGet`, `tcpSocket`, `exec`, `grpc`, `sleep`), and a probe's timing fields
//! (`periodSeconds`, ...) stay in its `extra` map.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Extra;

/// Kubernetes' `IntOrString`, as used by ports and rollout limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl PodSpec {
    /// Every container port of the pod, main and init containers alike, with its container.
    pub fn all_ports(&self) -> impl Iterator<Item = (&Container, &ContainerPort)> {
        self.containers
            .iter()
            .chain(&self.init_containers)
            .flat_map(|c| c.ports.iter().map(move |p| (c, p)))
    }

    /// Resolves a Service's targetPort the way the endpoints controller does: a number as is, a
    /// name looked up across all of the pod's containers.
    pub fn resolve_service_target(&self, target: &IntOrString) -> Option<u16> {
        match target {
            IntOrString::Int(i) => u16::try_from(*i).ok(),
            IntOrString::Str(name) => self
                .all_ports()
                .find(|(_, p)| p.name.as_deref() == Some(name.as_str()))
                .map(|(_, p)| p.container_port),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Handler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Handler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Handler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
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

    /// Resolves a probe's or hook's port as the kubelet does: a number, or a name among this
    /// container's ports.
    pub fn resolve_port(&self, port: &IntOrString) -> Option<u16> {
        match port {
            IntOrString::Int(i) => u16::try_from(*i).ok(),
            IntOrString::Str(name) => self.named_port(name),
        }
    }

    /// The image's name without registry, tag or digest: `lameduck` for
    /// `ghcr.io/x/lameduck:1.0@sha256:...`.
    pub fn image_name(&self) -> &str {
        let image = self.image.as_deref().unwrap_or("");
        let image = image.split('@').next().unwrap_or(image);
        let last = image.rsplit('/').next().unwrap_or(image);
        last.split(':').next().unwrap_or(last)
    }

    pub fn pre_stop(&self) -> Option<&Handler> {
        self.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A probe or a lifecycle hook: the same action shapes, so one type serves both. A probe's
/// timing (`periodSeconds`, `failureThreshold`, ...) is in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handler {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Exec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Grpc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<Sleep>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Handler {
    /// An `httpGet` handler on `path` and a numeric `port`, nothing else.
    pub fn http_get(path: &str, port: u16) -> Handler {
        Handler {
            http_get: Some(HttpGet {
                path: Some(path.to_string()),
                port: IntOrString::Int(i64::from(port)),
                ..HttpGet::default()
            }),
            ..Handler::default()
        }
    }

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
        } else if let Some(g) = &self.grpc {
            match &g.service {
                Some(s) => format!("grpc on port {} (service {s})", g.port),
                None => format!("grpc on port {}", g.port),
            }
        } else if let Some(s) = &self.sleep {
            format!("sleep {}s", s.seconds)
        } else {
            "an empty handler".to_string()
        }
    }
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub port: IntOrString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpSocket {
    pub port: IntOrString,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exec {
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `grpc: {port, service}`: the port is a number only (the API has no named gRPC port).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grpc {
    pub port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sleep {
    #[serde(default)]
    pub seconds: i64,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<Handler>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything lameduck does not model survives a round trip, nested fields included.
    #[test]
    fn unknown_fields_round_trip() {
        let text = r#"
containers:
- name: app
  image: web:1
  imagePullPolicy: Always
  resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]
  ports:
  - {name: http, containerPort: 8080, hostIP: 10.0.0.1}
  readinessProbe:
    httpGet: {path: /ready, port: http, httpHeaders: [{name: X, value: y}]}
    periodSeconds: 3
  lifecycle:
    postStart: {exec: {command: [touch, /tmp/x]}}
    preStop: {sleep: {seconds: 5}}
  someFutureField: {deep: [1, 2]}
schedulerName: custom
hostNetwork: false
"#;
        let original: Value = serde_yaml::from_str(text).unwrap();
        let spec: PodSpec = serde_json::from_value(original.clone()).unwrap();
        assert_eq!(spec.containers[0].named_port("http"), Some(8080));
        assert_eq!(
            spec.containers[0].readiness_probe.as_ref().unwrap().extra["periodSeconds"],
            3
        );
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn image_names_lose_registry_tag_and_digest() {
        let c = Container {
            image: Some("ghcr.io/x/lameduck:1.0@sha256:abc".into()),
            ..Container::default()
        };
        assert_eq!(c.image_name(), "lameduck");
    }
}
