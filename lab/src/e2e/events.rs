//! What the cluster said about a run, read from kubectl's JSON (pods, EndpointSlices, Events)
//! and the e2e's rollout times, onto the run's clock as the lab's events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::measure::record::{EventKind, Recorder};

/// Everything the cluster and the e2e said, onto the run's clock (`t0`: the load's start).
/// Kubernetes' timestamps have one-second resolution, rounded down (eventTime: microseconds),
/// so a pod's marks can be up to a second early against the requests.
pub(super) fn read(dir: &Path, t0: f64, rec: &Recorder) -> Result<()> {
    let at = |ts: &str| parse_time(ts).map(|u| u - t0);
    if let Some(text) = read_optional(&dir.join("rollouts.txt"))? {
        // `start N UNIX` / `complete N UNIX`, written by scripts/e2e.sh.
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [what, n, unix] = f[..] else { continue };
            let (Ok(n), Ok(unix)) = (n.parse::<u32>(), unix.parse::<f64>()) else {
                continue;
            };
            let kind = match what {
                "start" => EventKind::RolloutStarted { rollout: n },
                "complete" => EventKind::RolloutComplete { rollout: n },
                _ => continue,
            };
            rec.event_at(unix - t0, None, kind);
        }
    }
    let mut pods = HashSet::new();
    if let Some(text) = read_optional(&dir.join("pods.json"))? {
        pods = pod_events(&text, &at, rec)?;
    }
    if let Some(text) = read_optional(&dir.join("endpointslices.json"))? {
        endpoint_events(&text, &at, rec)?;
    }
    if let Some(text) = read_optional(&dir.join("events.json"))? {
        kube_events(&text, &at, &pods, rec)?;
    }
    Ok(())
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// RFC 3339 (what the API server writes) to Unix seconds.
fn parse_time(ts: &str) -> Option<f64> {
    humantime::parse_rfc3339_weak(ts.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}

/// The objects of a `kubectl get -w -o json` stream (or a List, or one object).
fn objects(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        let v = v.context("a JSON object from kubectl")?;
        match v.get("items").and_then(Value::as_array) {
            Some(items) if v.get("kind").and_then(Value::as_str) == Some("List") => {
                out.extend(items.iter().cloned())
            }
            _ => out.push(v),
        }
    }
    Ok(out)
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

/// The binary behind an image, for the timeline's lameduck lanes.
fn binary(image: &str) -> String {
    let name = image.rsplit('/').next().unwrap_or(image);
    let name = name.split([':', '@']).next().unwrap_or(name);
    name.to_string()
}

/// Pod snapshots (a watch stream) to the lab's pod events: created, containers started and
/// exited (restarts are unexpected exits), Ready changes, deletion (termination start).
/// Returns the pods seen.
fn pod_events(
    text: &str,
    at: &impl Fn(&str) -> Option<f64>,
    rec: &Recorder,
) -> Result<HashSet<String>> {
    let mut watch = PodWatch {
        at,
        rec,
        seen: HashSet::new(),
        ready: HashMap::new(),
        revisions: Vec::new(),
        marked: HashSet::new(),
        restarts: HashMap::new(),
    };
    for pod in objects(text)? {
        let Some(name) = s(&pod, &["metadata", "name"]) else {
            continue;
        };
        watch.first_sight(&pod, name);
        let statuses = ["initContainerStatuses", "containerStatuses"]
            .iter()
            .filter_map(|k| pod.get("status")?.get(*k)?.as_array())
            .flatten();
        for c in statuses {
            watch.restart(name, c);
            watch.container_state(name, c);
        }
        watch.readiness(&pod, name);
        watch.deletion(&pod, name);
    }
    Ok(watch.seen)
}

/// What a pod watch stream has shown so far: each snapshot repeats the whole pod, and only
/// what changed since the last one becomes an event.
struct PodWatch<'a, F> {
    at: &'a F,
    rec: &'a Recorder,
    seen: HashSet<String>,
    ready: HashMap<String, bool>,
    /// pod-template-hash values in the order first seen: revision 0, 1, ...
    revisions: Vec<String>,
    /// (pod, what, key) already recorded, for the marks a snapshot repeats.
    marked: HashSet<(String, String, String)>,
    /// The last restartCount of each (pod, container).
    restarts: HashMap<(String, String), i64>,
}

impl<F: Fn(&str) -> Option<f64>> PodWatch<'_, F> {
    /// True the first time (pod, what, key) is asked about.
    fn once(&mut self, pod: &str, what: &str, key: &str) -> bool {
        self.marked
            .insert((pod.to_string(), what.to_string(), key.to_string()))
    }

    fn event(&self, t: f64, pod: &str, kind: EventKind) {
        self.rec.event_at(t, Some(pod), kind);
    }

    /// A container's end at `t`, with the code and signal of its `terminated` state:
    /// `unexpected` when the kubelet restarted it (the lab did not ask), else an exit.
    fn exit(
        &self,
        t: f64,
        pod: &str,
        container: &str,
        terminated: Option<&Value>,
        unexpected: bool,
    ) {
        let field = |k: &str| {
            terminated
                .and_then(|t| t.get(k)?.as_i64())
                .map(|c| c as i32)
        };
        let (container, code, signal) = (container.to_string(), field("exitCode"), field("signal"));
        let kind = if unexpected {
            EventKind::UnexpectedExit {
                container,
                code,
                signal,
            }
        } else {
            EventKind::ContainerExited {
                container,
                code,
                signal,
            }
        };
        self.event(t, pod, kind);
    }

    /// A pod seen for the first time: created, in the revision of its template hash.
    fn first_sight(&mut self, pod: &Value, name: &str) {
        if !self.seen.insert(name.to_string()) {
            return;
        }
        let hash = s(pod, &["metadata", "labels", "pod-template-hash"]).unwrap_or("");
        if !self.revisions.iter().any(|h| h == hash) {
            self.revisions.push(hash.to_string());
        }
        let revision = self.revisions.iter().position(|h| h == hash).unwrap_or(0) as u32;
        if let Some(t) = s(pod, &["metadata", "creationTimestamp"]).and_then(self.at) {
            let ip = s(pod, &["status", "podIP"]).unwrap_or("").to_string();
            self.event(t, name, EventKind::PodCreated { ip, revision });
        }
    }

    /// A container whose restartCount went up exited without being asked: when its last
    /// state says.
    fn restart(&mut self, name: &str, c: &Value) {
        let cname = s(c, &["name"]).unwrap_or("?");
        let count = c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        let before = self
            .restarts
            .insert((name.to_string(), cname.to_string()), count)
            .unwrap_or(0);
        if count <= before {
            return;
        }
        let last = c.get("lastState").and_then(|l| l.get("terminated"));
        if let Some(t) = last.and_then(|l| s(l, &["finishedAt"])).and_then(self.at) {
            self.exit(t, name, cname, last, true);
        }
    }

    /// A container's current state: running since (started), or terminated at (exited).
    fn container_state(&mut self, name: &str, c: &Value) {
        let cname = s(c, &["name"]).unwrap_or("?");
        let image = s(c, &["image"]).unwrap_or("");
        let state = c.get("state");
        if let Some(started) = state.and_then(|st| s(st, &["running", "startedAt"])) {
            if self.once(name, "started", &format!("{cname}@{started}")) {
                if let Some(t) = (self.at)(started) {
                    let kind = EventKind::ContainerStarted {
                        container: cname.to_string(),
                        binary: binary(image),
                        pid: 0,
                    };
                    self.event(t, name, kind);
                }
            }
        }
        if let Some(term) = state.and_then(|st| st.get("terminated")) {
            let finished = s(term, &["finishedAt"]).unwrap_or("");
            if self.once(name, "exited", &format!("{cname}@{finished}")) {
                if let Some(t) = (self.at)(finished) {
                    self.exit(t, name, cname, Some(term), false);
                }
            }
        }
    }

    /// A change of the pod's Ready condition, at its lastTransitionTime.
    fn readiness(&mut self, pod: &Value, name: &str) {
        let cond = pod
            .get("status")
            .and_then(|st| st.get("conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| s(c, &["type"]) == Some("Ready")));
        let Some(c) = cond else { return };
        let is_ready = s(c, &["status"]) == Some("True");
        if self.ready.get(name).copied().unwrap_or(false) == is_ready {
            return;
        }
        self.ready.insert(name.to_string(), is_ready);
        if let Some(t) = s(c, &["lastTransitionTime"]).and_then(self.at) {
            let kind = if is_ready {
                EventKind::PodReady
            } else {
                EventKind::PodUnready
            };
            self.event(t, name, kind);
        }
    }

    /// The pod's deletion: the start of its termination.
    fn deletion(&mut self, pod: &Value, name: &str) {
        let Some(deletion) = s(pod, &["metadata", "deletionTimestamp"]) else {
            return;
        };
        if !self.once(name, "deleted", "") {
            return;
        }
        // deletionTimestamp is the deadline: the deletion itself was a grace period earlier.
        let grace = pod
            .get("metadata")
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        if let Some(t) = (self.at)(deletion) {
            self.event(t - grace, name, EventKind::Terminating);
        }
    }
}

/// EndpointSlice snapshots: when a pod's endpoint stops being ready (what kube-proxy then
/// applies, after its own sync delay, which no object records). The time is the slice's
/// `endpoints.kubernetes.io/last-change-trigger-time` (the pod change it publishes), else its
/// last managedFields write (kubectl shows those only with --show-managed-fields).
fn endpoint_events(text: &str, at: &impl Fn(&str) -> Option<f64>, rec: &Recorder) -> Result<()> {
    let mut ready: BTreeMap<String, bool> = BTreeMap::new();
    for slice in objects(text)? {
        // An update with neither time (the controller leaves the annotation off some) still
        // moves the state on, unmarked: no time is made up for it.
        let time = slice_time(&slice, at);
        let now = endpoint_readiness(&slice);
        for (pod, was) in &ready {
            let Some(t) = time else { break };
            if *was && !now.get(pod).copied().unwrap_or(false) {
                let front = "EndpointSlice".to_string();
                rec.event_at(t, Some(pod), EventKind::EndpointRemoved { front });
            }
        }
        for (pod, r) in now {
            ready.insert(pod, r);
        }
        ready.retain(|p, _| {
            slice
                .get("endpoints")
                .and_then(Value::as_array)
                .is_some_and(|es| es.iter().any(|e| s(e, &["targetRef", "name"]) == Some(p)))
        });
    }
    Ok(())
}

/// When a slice's change happened: its last-change-trigger-time, else its last managedFields
/// write.
fn slice_time(slice: &Value, at: &impl Fn(&str) -> Option<f64>) -> Option<f64> {
    let trigger = s(
        slice,
        &[
            "metadata",
            "annotations",
            "endpoints.kubernetes.io/last-change-trigger-time",
        ],
    )
    .and_then(at);
    let written = slice
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| s(f, &["time"]).and_then(at))
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    trigger.or(written)
}

/// Each pod's endpoint in the slice, and whether it is ready (unset: ready).
fn endpoint_readiness(slice: &Value) -> BTreeMap<String, bool> {
    let mut now = BTreeMap::new();
    for e in slice
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(pod) = s(e, &["targetRef", "name"]) {
            let r = e
                .get("conditions")
                .and_then(|c| c.get("ready"))
                .and_then(Value::as_bool)
                .unwrap_or(true);
            now.insert(pod.to_string(), r);
        }
    }
    now
}

/// The kubelet's Events about the Deployment's pods (`pods`; not the load generator's): a failed
/// preStop hook shows on the timeline, the rest is kept as notes in run.json.
fn kube_events(
    text: &str,
    at: &impl Fn(&str) -> Option<f64>,
    pods: &HashSet<String>,
    rec: &Recorder,
) -> Result<()> {
    for e in objects(text)? {
        if s(&e, &["involvedObject", "kind"]) != Some("Pod") {
            continue;
        }
        let Some(pod) = s(&e, &["involvedObject", "name"]).filter(|p| pods.contains(*p)) else {
            continue;
        };
        let time = ["eventTime", "lastTimestamp", "firstTimestamp"]
            .iter()
            .find_map(|k| s(&e, &[k]).and_then(at));
        let Some(t) = time else { continue };
        let reason = s(&e, &["reason"]).unwrap_or("");
        let message = s(&e, &["message"]).unwrap_or("");
        let container = s(&e, &["involvedObject", "fieldPath"])
            .and_then(|f| {
                f.strip_prefix("spec.containers{")
                    .or(f.strip_prefix("spec.initContainers{"))
            })
            .map(|f| f.trim_end_matches('}').to_string())
            .unwrap_or_default();
        if reason == "FailedPreStopHook" {
            rec.event_at(
                t,
                Some(pod),
                EventKind::PreStopDone {
                    container,
                    outcome: format!("failed: {message}"),
                },
            );
        } else {
            rec.event_at(
                t,
                Some(pod),
                EventKind::Note {
                    text: format!("{reason}: {message}"),
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_server_times_parse() {
        let a = parse_time("2026-12-01T22:33:09Z").unwrap();
        let b = parse_time("2026-12-01T22:33:09.250000Z").unwrap();
        assert!((b - a - 0.25).abs() < 1e-6);
    }
}
