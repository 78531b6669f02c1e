//! The Kubernetes objects lameduck reads (`lameduck check`, the lab) and rewrites
//! (`lameduck inject`, `lameduck webhook`): one model, so the checker, the injector and the lab
//! cannot disagree about what a probe, a port, a preStop hook or a rounded rollout limit is.
//!
//! # Why our own structs, and not k8s-openapi
//!
//! The injector reads a user's manifest, changes a few fields and writes the manifest back. The
//! k8s-openapi types model one Kubernetes version each and *drop every field they do not know*
//! when deserialising (and reject some they know in another shape): an object written for a newer
//! API server, a field behind a feature gate, or a CRD-ish extension in a pod template would
//! silently vanish on the way through `inject`. So every struct here is typed only where
//! lameduck looks (containers, ports, probes, hooks, the grace period, rollout limits, Service
//! ports) and carries everything else in an `extra` map (`#[serde(flatten)]`), in the order it
//! came in. A round trip through these types changes nothing but the layout of the YAML (key
//! order of the typed fields; empty lists and `null`s of typed fields are dropped, which the
//! API server treats the same). Whole documents stay [`serde_json::Value`]s; only the parts
//! lameduck edits are typed, and written back in place ([`Workload::write_pod_spec`],
//! [`Service::write_spec`]).
//!
//! Schema correctness is not this crate's job: `scripts/validate-k8s.sh` checks manifests
//! against the real OpenAPI schema of every supported version.

#![forbid(unsafe_code)]

mod document;
mod pod;
mod rollout;
mod service;
mod workload;

pub use document::{
    for_each_object, for_each_object_mut, read_documents, write_documents, Format, ReadError,
};
pub use pod::{
    Container, ContainerPort, EnvVar, Exec, Grpc, Handler, HttpGet, IntOrString, Lifecycle,
    PodSpec, Sleep, TcpSocket,
};
pub use rollout::{resolve_limit, DEFAULT_ROLLOUT_LIMIT};
pub use service::{Service, ServicePort, ServiceSpec};
pub use workload::{
    DeploymentStrategy, ObjectMeta, RollingUpdate, ShapeError, Workload, WorkloadKind,
};

/// The fields of an object that lameduck does not model, kept as they came (in input order).
pub type Extra = serde_json::Map<String, serde_json::Value>;
