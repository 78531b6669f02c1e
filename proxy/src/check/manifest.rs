//! Finding what `lameduck check` looks at in a rendered manifest: the workloads and the
//! Services, read through the shared Kubernetes model (`lameduck-k8s`, the same types `inject`
//! and the webhook rewrite). Unknown fields are kept by the model and ignored here, so the same
//! code reads manifests written for any Kubernetes version. Schema correctness is the job of
//! `scripts/validate-k8s.sh`; this module only has to understand wiring.

pub use lameduck_k8s::{Container, IntOrString, Service, Workload};

/// A manifest that cannot be checked at all (exit 2), as opposed to a finding (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Read(#[from] lameduck_k8s::ReadError),
    #[error(transparent)]
    Shape(#[from] lameduck_k8s::ShapeError),
    #[error(
        "no Deployment, StatefulSet, DaemonSet, ReplicaSet or Pod in the input: nothing to check"
    )]
    NoWorkload,
}

/// Everything in the input that the check looks at.
#[derive(Debug, Default)]
pub struct Manifest {
    pub workloads: Vec<Workload>,
    pub services: Vec<Service>,
}

/// Reads a multi-document YAML (or JSON) stream, `kind: List` included (what
/// `kubectl get -o yaml` prints). Jobs, CronJobs and kinds without pods are skipped.
pub fn parse(text: &str) -> Result<Manifest, InputError> {
    let mut manifest = Manifest::default();
    let mut failure = None;
    for doc in lameduck_k8s::read_documents(text)? {
        lameduck_k8s::for_each_object(&doc, &mut |obj| {
            if failure.is_some() {
                return;
            }
            match collect(obj, &mut manifest) {
                Ok(()) => {}
                Err(e) => failure = Some(e),
            }
        });
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if manifest.workloads.is_empty() {
        return Err(InputError::NoWorkload);
    }
    Ok(manifest)
}

fn collect(obj: &serde_json::Value, manifest: &mut Manifest) -> Result<(), InputError> {
    if let Some(w) = Workload::from_object(obj)? {
        if w.kind.is_served() {
            manifest.workloads.push(w);
        }
    } else if let Some(s) = Service::from_object(obj)? {
        manifest.services.push(s);
    }
    Ok(())
}
