//! Objects that run pods, and where their pod template lives.

use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Extra, IntOrString, PodSpec};

/// A part of an object that does not have the shape its kind prescribes.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ShapeError {
    pub what: String,
    pub source: serde_json::Error,
}

/// The kinds that carry a pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Pod,
    Job,
    CronJob,
}

impl WorkloadKind {
    pub fn from_kind(kind: &str) -> Option<WorkloadKind> {
        Some(match kind {
            "Deployment" => WorkloadKind::Deployment,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "Pod" => WorkloadKind::Pod,
            "Job" => WorkloadKind::Job,
            "CronJob" => WorkloadKind::CronJob,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Pod => "Pod",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
        }
    }

    /// Pods that Services route to and that get replaced while serving. Jobs and CronJobs run
    /// to completion: nothing routes to them, so nothing about their shutdown loses requests.
    pub fn is_served(self) -> bool {
        !matches!(self, WorkloadKind::Job | WorkloadKind::CronJob)
    }

    /// Where the pod (metadata + spec) sits inside the object.
    pub fn pod_path(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Pod => &[],
            WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template"],
            _ => &["spec", "template"],
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metadata fields lameduck reads (names, labels, annotations); everything else in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStrategy {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Something that runs pods: its pod template, typed.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    pub namespace: Option<String>,
    /// The pod's metadata (the template's, or the Pod's own).
    pub pod_meta: ObjectMeta,
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

impl Workload {
    /// The workload in `obj`, or None when `obj` is not of a kind that carries a pod.
    pub fn from_object(obj: &Value) -> Result<Option<Workload>, ShapeError> {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some(kind) = WorkloadKind::from_kind(kind) else {
            return Ok(None);
        };
        let (name, namespace) = metadata(obj);
        let what = |field: &str| format!("{kind} {name}: {field}");
        let pod = walk(obj, kind.pod_path());
        let pod_meta = typed(pod, &["metadata"], || what("pod metadata"))?;
        let spec = typed(pod, &["spec"], || what("pod spec"))?;
        let (replicas, strategy) = if kind == WorkloadKind::Deployment {
            (
                typed(obj, &["spec", "replicas"], || what("spec.replicas"))?,
                typed(obj, &["spec", "strategy"], || what("spec.strategy"))?,
            )
        } else {
            (None, None)
        };
        Ok(Some(Workload {
            kind,
            name,
            namespace,
            pod_meta,
            spec,
            replicas,
            strategy,
        }))
    }

    /// Writes `self.spec` back as the pod spec of the object it was read from.
    pub fn write_pod_spec(&self, obj: &mut Value) {
        let mut pod = obj;
        for key in self.kind.pod_path() {
            pod = &mut pod[*key];
        }
        pod["spec"] = serde_json::to_value(&self.spec).expect("a pod spec always serialises");
    }

    /// A pod-template annotation.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.pod_meta.annotations.get(key).map(String::as_str)
    }
}

/// `metadata.name` (or `generateName`, or "(unnamed)") and `metadata.namespace`.
pub(crate) fn metadata(value: &Value) -> (String, Option<String>) {
    let meta = walk(value, &["metadata"]);
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .or_else(|| meta.get("generateName").and_then(Value::as_str))
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
) -> Result<T, ShapeError> {
    match walk(value, path) {
        Value::Null => Ok(T::default()),
        v => serde_json::from_value(v.clone()).map_err(|source| ShapeError {
            what: what(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_found_per_kind_and_written_back_in_place() {
        let mut cron: Value = serde_yaml::from_str(
            "kind: CronJob\nmetadata: {name: c}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        metadata: {labels: {a: b}}\n        spec: {containers: [{name: x}], restartPolicy: Never}\n",
        )
        .unwrap();
        let mut w = Workload::from_object(&cron).unwrap().unwrap();
        assert!(!w.kind.is_served());
        assert_eq!(w.pod_meta.labels["a"], "b");
        w.spec.containers[0].image = Some("y".into());
        w.write_pod_spec(&mut cron);
        let spec = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["image"], "y");
        assert_eq!(spec["restartPolicy"], "Never");
    }

    #[test]
    fn a_pod_of_the_wrong_shape_names_the_field() {
        let pod: Value =
            serde_yaml::from_str("kind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n")
                .unwrap();
        let err = Workload::from_object(&pod).unwrap_err();
        assert!(err.to_string().starts_with("Pod p: pod spec"), "{err}");
    }
}
