//! Services: which pods they select and which port they send traffic to.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::workload::{metadata, ShapeError};
use crate::{Extra, IntOrString, Workload};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub selector: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ServicePort {
    /// The targetPort, defaulted as the API server does: the Service's own port number.
    pub fn target(&self) -> IntOrString {
        self.target_port
            .clone()
            .unwrap_or(IntOrString::Int(i64::from(self.port)))
    }
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub namespace: Option<String>,
    pub spec: ServiceSpec,
}

impl Service {
    /// The Service in `obj`, or None when `obj` is not a Service.
    pub fn from_object(obj: &Value) -> Result<Option<Service>, ShapeError> {
        if obj.get("kind").and_then(Value::as_str) != Some("Service") {
            return Ok(None);
        }
        let (name, namespace) = metadata(obj);
        let spec = match obj.get("spec") {
            None | Some(Value::Null) => ServiceSpec::default(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|source| ShapeError {
                what: format!("Service {name}: spec"),
                source,
            })?,
        };
        Ok(Some(Service {
            name,
            namespace,
            spec,
        }))
    }

    /// Writes `self.spec` back into the Service object it was read from.
    pub fn write_spec(&self, obj: &mut Value) {
        obj["spec"] = serde_json::to_value(&self.spec).expect("a spec always serialises");
    }

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
                .all(|(k, v)| w.pod_meta.labels.get(k) == Some(v))
    }

    /// A headless Service (`clusterIP: None`): DNS names for the pods, no virtual IP.
    pub fn is_headless(&self) -> bool {
        self.spec.extra.get("clusterIP").and_then(Value::as_str) == Some("None")
    }
}
