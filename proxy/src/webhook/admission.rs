//! One AdmissionReview in, one AdmissionReview out: the injection of `inject`, applied to a Pod
//! at creation and answered as a JSONPatch.
//!
//! It never blocks a pod: whatever it cannot handle (not a Pod, a Pod it does not understand,
//! a spec of the wrong shape) is allowed unchanged, with the reason as an AdmissionReview
//! warning and counted in `lameduck_webhook_reviews_total{outcome}`.

use base64::Engine;
use lameduck_k8s::Workload;
use serde_json::{json, Value};

use crate::inject::pod::{self, Outcome};
use crate::inject::settings::{self, InjectOptions};

/// Who opted the pod in: which of the two webhooks of the configuration called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptIn {
    /// `POST /mutate`: the namespace has `lameduck.io/inject=enabled` (the configuration's
    /// namespaceSelector says so); every pod is injected unless it says `disabled`.
    Namespace,
    /// `POST /mutate/opt-in`: any other namespace; only pods annotated
    /// `lameduck.io/inject: "enabled"` are injected.
    PodAnnotation,
}

/// The `outcome` label of `lameduck_webhook_reviews_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Injected,
    /// Already has lameduck (a reinvocation, or wired by hand).
    AlreadyInjected,
    /// Not asked for: no opt-in annotation in a namespace that is not opted in, or `disabled`.
    NotOptedIn,
    /// Not a Pod CREATE: nothing to do.
    Skipped,
    /// A pod it does not understand (non-HTTP port, hostNetwork, ...): allowed unchanged.
    Unchanged,
    /// A pod spec of the wrong shape: allowed unchanged.
    Error,
}

impl Verdict {
    pub const ALL: [Verdict; 6] = [
        Verdict::Injected,
        Verdict::AlreadyInjected,
        Verdict::NotOptedIn,
        Verdict::Skipped,
        Verdict::Unchanged,
        Verdict::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Injected => "injected",
            Verdict::AlreadyInjected => "already_injected",
            Verdict::NotOptedIn => "not_opted_in",
            Verdict::Skipped => "skipped",
            Verdict::Unchanged => "unchanged",
            Verdict::Error => "error",
        }
    }
}

/// A request body that is not an AdmissionReview with a request uid: it cannot be answered as
/// one (the answer must carry the uid), so it gets a 400.
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("not an admission.k8s.io/v1 AdmissionReview with a request.uid")]
    NotAReview,
}

/// Kubernetes shows warnings up to this length whole (longer ones may be cut).
const WARNING_MAX: usize = 256;

/// Answers one AdmissionReview body: the response review and what was decided.
pub fn review(
    body: &[u8],
    opt_in: OptIn,
    opts: &InjectOptions,
) -> Result<(Value, Verdict), BadReview> {
    let review: Value = serde_json::from_slice(body).map_err(BadReview::NotJson)?;
    let request = &review["request"];
    let uid = request["uid"].as_str().ok_or(BadReview::NotAReview)?;
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return Err(BadReview::NotAReview);
    }
    let (patch, warnings, verdict) = decide(request, opt_in, opts);
    let mut response = json!({"uid": uid, "allowed": true});
    if let Some(patch) = patch {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    if !warnings.is_empty() {
        response["warnings"] = json!(warnings
            .into_iter()
            .map(|w| shorten(&w))
            .collect::<Vec<_>>());
    }
    Ok((
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": response,
        }),
        verdict,
    ))
}

/// The JSONPatch (serialised), the warnings, and the verdict for one request.
fn decide(
    request: &Value,
    opt_in: OptIn,
    opts: &InjectOptions,
) -> (Option<Vec<u8>>, Vec<String>, Verdict) {
    let is_pod = request["kind"]["kind"] == "Pod" && request["kind"]["group"] == "";
    if !is_pod || request["operation"] != "CREATE" || request["subResource"].is_string() {
        return (None, Vec::new(), Verdict::Skipped);
    }
    let original = &request["object"];
    let annotation = original["metadata"]["annotations"][settings::INJECT].as_str();
    if opt_in == OptIn::PodAnnotation && annotation != Some("enabled") {
        return (None, Vec::new(), Verdict::NotOptedIn);
    }
    if annotation == Some("disabled") {
        return (None, Vec::new(), Verdict::NotOptedIn);
    }
    let mut w = match Workload::from_object(original) {
        Ok(Some(w)) => w,
        Ok(None) => return (None, Vec::new(), Verdict::Skipped),
        Err(e) => {
            return (
                None,
                vec![format!("lameduck: not injected: {e}")],
                Verdict::Error,
            )
        }
    };
    if pod::is_injected(&w.spec) {
        return (None, Vec::new(), Verdict::AlreadyInjected);
    }
    match pod::inject_pod(&mut w.spec, &w.pod_meta, &[], opts) {
        Outcome::Unchanged(why) => (
            None,
            vec![format!("lameduck: not injected: {why}")],
            Verdict::Unchanged,
        ),
        Outcome::Injected(inj) => {
            let mut patched = original.clone();
            w.write_pod_spec(&mut patched);
            let patch = json_patch::diff(original, &patched);
            let mut warnings: Vec<String> = inj
                .warnings
                .iter()
                .map(|w| format!("lameduck: {w}"))
                .collect();
            if inj.moved_name.is_none() {
                warnings.push(format!("lameduck: {}", inj.service_advice()));
            }
            (
                Some(serde_json::to_vec(&patch).expect("a patch always serialises")),
                warnings,
                Verdict::Injected,
            )
        }
    }
}

fn shorten(w: &str) -> String {
    if w.len() <= WARNING_MAX {
        return w.to_string();
    }
    let mut end = WARNING_MAX - 3;
    while !w.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &w[..end])
}
