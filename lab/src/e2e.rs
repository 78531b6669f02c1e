//! The lab's load and report against a real cluster (scripts/e2e.sh, docs/e2e.md).
//!
//! `lab loadgen` runs in a Pod: the same open-loop load and per-request record as a lab run,
//! aimed at a Service's ClusterIP (or any address), printed as one JSON line on stdout when it
//! stops (at `--duration`, or when its stdin closes: the e2e keeps `kubectl attach` open for as
//! long as its rollouts take). `lab e2e-report` reads those records back on the host, together
//! with what the cluster said about its pods (`kubectl get pods -w -o json`, `kubectl get
//! events -o json`, EndpointSlices) and the e2e's own rollout times, and reports them with the
//! lab's report code: the same table, JSON and SVG timeline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use crate::measure::load::{Load, LoadConfig};
use crate::measure::record::{EventKind, Recorder, RequestRecord};
use crate::report::{self, timeline, LoadJson, RunSummary};

/// `lab loadgen`: the lab's load against one address, records as JSON on stdout.
#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// Where to send the load: IP:PORT (a Service's ClusterIP; there is no DNS lookup).
    #[arg(long)]
    pub target: SocketAddr,

    /// Requests per second, open loop.
    #[arg(long, default_value_t = 80.0, value_parser = crate::cli::positive_f64)]
    pub rate: f64,

    /// Stop after this long at the latest.
    #[arg(long, default_value = "10m", value_parser = crate::cli::parse_duration)]
    pub duration: Duration,

    /// Also stop when stdin reaches end of file (`kubectl attach -i` closing).
    #[arg(long)]
    pub stop_on_stdin_eof: bool,

    /// Share of requests from keep-alive clients; the rest open a connection per request.
    #[arg(long, default_value_t = 0.5, value_parser = crate::cli::share)]
    pub keepalive_share: f64,

    /// Share of POSTs with a body.
    #[arg(long, default_value_t = 0.3, value_parser = crate::cli::share)]
    pub post_share: f64,

    /// Share of long requests.
    #[arg(long, default_value_t = 0.2, value_parser = crate::cli::share)]
    pub long_share: f64,

    /// `delay_ms` of a short request.
    #[arg(long, default_value = "100ms", value_parser = crate::cli::parse_duration)]
    pub short_delay: Duration,

    /// `delay_ms` of a long request (the seed's handler sleeps 5 s).
    #[arg(long, default_value = "5s", value_parser = crate::cli::parse_duration)]
    pub long_delay: Duration,

    /// A request with no complete response after this counts as a timeout.
    #[arg(long, default_value = "30s", value_parser = crate::cli::parse_duration)]
    pub request_timeout: Duration,

    /// Seed of the load mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What `lab loadgen` prints: how it ran, and every request.
#[derive(Debug, serde::Serialize, Deserialize)]
// The records' client and method are `&'static str`: read back from an owned `Value`.
#[serde(bound(deserialize = "'de: 'static"))]
struct LoadgenOutput {
    #[serde(flatten)]
    run: LoadgenRun,
    requests: Vec<RequestRecord>,
}

/// How a load generator ran: its wall-clock start (to put the cluster's events on the same
/// axis), its target and settings, and what stopped it. run.json keeps it as `load`.
#[derive(Debug, serde::Serialize, Deserialize)]
struct LoadgenRun {
    started_unix: f64,
    target: String,
    #[serde(flatten)]
    load: LoadJson,
    /// Why the load stopped: `duration` or `stdin closed`.
    stopped_by: String,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub async fn loadgen(args: LoadgenArgs) -> Result<bool> {
    let cfg = LoadConfig {
        rate: args.rate,
        keepalive_share: args.keepalive_share,
        post_share: args.post_share,
        long_share: args.long_share,
        short_delay: args.short_delay,
        long_delay: args.long_delay,
        timeout: args.request_timeout,
        seed: args.seed,
    };
    let rec = Recorder::new();
    let started_unix = unix_now();
    let load = Load::start(args.target, cfg.clone(), rec.clone());
    let stdin_closed = async {
        if !args.stop_on_stdin_eof {
            return std::future::pending().await;
        }
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let stopped_by = tokio::select! {
        _ = tokio::time::sleep(args.duration) => "duration",
        _ = stdin_closed => "stdin closed",
    };
    load.stop().await;
    let out = LoadgenOutput {
        run: LoadgenRun {
            started_unix,
            target: args.target.to_string(),
            load: LoadJson::from(&cfg),
            stopped_by: stopped_by.to_string(),
        },
        requests: rec.requests(),
    };
    // One line, so it can be picked out of `kubectl logs` whatever else the runtime adds.
    println!("{}", serde_json::to_string(&out)?);
    Ok(true)
}

/// `lab e2e-report`: the table, JSON and timelines of an e2e's runs.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// One run: NAME:EXPECT:DIR, EXPECT being `lossless` (runs lameduck: must lose nothing),
    /// `lossy` (must lose requests, or the e2e has no teeth) or `any`. DIR holds loadgen.json
    /// and, when collected, pods.json, events.json, endpointslices.json and rollouts.txt.
    /// Repeatable; the table keeps this order.
    #[arg(long = "run", required = true, value_parser = parse_run)]
    pub runs: Vec<RunSpec>,

    /// The front column of the table (what carried the traffic).
    #[arg(long, default_value = "kube-proxy")]
    pub front: String,

    /// Where summary.json and summary.md go (each run's run.json and timeline.svg go to its DIR).
    #[arg(long)]
    pub out: PathBuf,

    /// An unmet `lossy` expectation is a warning instead of a failure.
    #[arg(long)]
    pub teeth_warn_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Lossless,
    Lossy,
    Any,
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub name: String,
    pub expect: Expect,
    pub dir: PathBuf,
}

fn parse_run(s: &str) -> Result<RunSpec, String> {
    let mut parts = s.splitn(3, ':');
    let (Some(name), Some(expect), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("`{s}` is not NAME:EXPECT:DIR"));
    };
    let expect = match expect {
        "lossless" => Expect::Lossless,
        "lossy" => Expect::Lossy,
        "any" => Expect::Any,
        other => return Err(format!("`{other}` is not lossless, lossy or any")),
    };
    if name.is_empty() {
        return Err(format!("`{s}`: empty NAME"));
    }
    Ok(RunSpec {
        name: name.to_string(),
        expect,
        dir: PathBuf::from(dir),
    })
}

pub fn report(args: ReportArgs) -> Result<bool> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut rows = Vec::new();
    let mut ok = true;
    for run in &args.runs {
        let (summary, rec, load) = one_report(run, &args.front)?;
        rows.push(summary.clone());
        report::write_run_json(&run.dir.join("run.json"), &summary, ("load", &load), &rec)?;
        timeline::write_svg(&run.dir.join("timeline.svg"), &summary, &rec)?;
        let lost = summary.failed;
        match run.expect {
            Expect::Lossless if lost > 0 => {
                eprintln!(
                    "FAIL: {} lost {lost} of {} requests: lameduck must lose none",
                    run.name, summary.requests
                );
                ok = false;
            }
            Expect::Lossy if lost == 0 => {
                let verdict = if args.teeth_warn_only {
                    "warning"
                } else {
                    ok = false;
                    "FAIL"
                };
                eprintln!(
                    "{verdict}: {} lost nothing, but it is wired to lose requests: the e2e has no \
                     teeth on this cluster (endpoint changes reach kube-proxy too fast? raise \
                     its --iptables-min-sync-period, or the rate)",
                    run.name
                );
            }
            _ => {}
        }
        for d in &summary.disturbed {
            eprintln!("DISTURBED: {}: {d}", run.name);
            ok = false;
        }
        if load.stopped_by != "stdin closed" {
            eprintln!(
                "FAIL: {}: the load stopped by {} before the rollouts ended: raise the load \
                 generator's --duration",
                run.name, load.stopped_by
            );
            ok = false;
        }
    }
    let table = report::table(&rows);
    let doc = serde_json::json!({ "runs": rows });
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_vec_pretty(&doc)?,
    )
    .context("writing summary.json")?;
    std::fs::write(args.out.join("summary.md"), &table).context("writing summary.md")?;
    print!("{table}");
    Ok(ok)
}

fn one_report(run: &RunSpec, front: &str) -> Result<(RunSummary, Arc<Recorder>, LoadgenRun)> {
    let path = run.dir.join("loadgen.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    // The last line that is a JSON object: `kubectl logs` may hold other lines before it.
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{}: no load generator output in it", path.display()))?;
    let value: Value =
        serde_json::from_str(line).with_context(|| format!("parsing {}", path.display()))?;
    let load = LoadgenOutput::deserialize(value)
        .with_context(|| format!("reading the records in {}", path.display()))?;
    let rec = Recorder::new();
    let t0 = load.run.started_unix;
    for r in load.requests {
        rec.request(r);
    }
    rec.event_at(0.0, None, EventKind::LoadStarted);
    let mut error = None;
    if let Err(e) = cluster_events(&run.dir, t0, &rec) {
        error = Some(format!("reading the cluster's events: {e:#}"));
    }
    let summary = report::summarize_records(
        &run.name,
        front,
        run.expect == Expect::Lossless,
        &rec,
        error,
    );
    Ok((summary, rec, load.run))
}

/// Everything the cluster and the e2e said, onto the run's clock (`t0`: the load's start).
/// Kubernetes' timestamps have one-second resolution, rounded down (eventTime: microseconds),
/// so a pod's marks can be up to a second early against the requests.
fn cluster_events(dir: &Path, t0: f64, rec: &Recorder) -> Result<()> {
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
            let (code, signal) = exit_status(last);
            let container = cname.to_string();
            let kind = EventKind::UnexpectedExit {
                container,
                code,
                signal,
            };
            self.event(t, name, kind);
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
                    let (code, signal) = exit_status(Some(term));
                    let container = cname.to_string();
                    let kind = EventKind::ContainerExited {
                        container,
                        code,
                        signal,
                    };
                    self.event(t, name, kind);
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

/// The exit code and signal of a container's `terminated` state.
fn exit_status(terminated: Option<&Value>) -> (Option<i32>, Option<i32>) {
    let field = |k: &str| {
        terminated
            .and_then(|t| t.get(k)?.as_i64())
            .map(|c| c as i32)
    };
    (field("exitCode"), field("signal"))
}

/// EndpointSlice snapshots: when a pod's endpoint stops being ready (what kube-proxy then
/// applies, after its own sync delay, which no object records). The time is the slice's
/// `endpoints.kubernetes.io/last-change-trigger-time` (the pod change it publishes), else its
/// last managedFields write (kubectl shows those only with --show-managed-fields).
fn endpoint_events(text: &str, at: &impl Fn(&str) -> Option<f64>, rec: &Recorder) -> Result<()> {
    let mut ready: BTreeMap<String, bool> = BTreeMap::new();
    for slice in objects(text)? {
        let trigger = s(
            &slice,
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
        // An update with neither (the controller leaves the annotation off some) still moves
        // the state on, unmarked: no time is made up for it.
        let time = trigger.or(written);
        let mut now: BTreeMap<String, bool> = BTreeMap::new();
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
        for (pod, was) in &ready {
            let Some(t) = time else { break };
            if *was && !now.get(pod).copied().unwrap_or(false) {
                rec.event_at(
                    t,
                    Some(pod),
                    EventKind::EndpointRemoved {
                        front: "EndpointSlice".to_string(),
                    },
                );
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
    use crate::measure::record::Outcome;

    #[test]
    fn runs_parse() {
        let r = parse_run("bare:lossy:/tmp/x:y").unwrap();
        assert_eq!(r.name, "bare");
        assert_eq!(r.expect, Expect::Lossy);
        assert_eq!(r.dir, PathBuf::from("/tmp/x:y"));
        assert!(parse_run("bare:maybe:/tmp").is_err());
        assert!(parse_run("bare").is_err());
    }

    #[test]
    fn api_server_times_parse() {
        let a = parse_time("2026-12-01T22:33:09Z").unwrap();
        let b = parse_time("2026-12-01T22:33:09.250000Z").unwrap();
        assert!((b - a - 0.25).abs() < 1e-6);
    }

    #[test]
    fn outcomes_read_back() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        let r = RequestRecord::deserialize(v(
            r#"{"id":3,"start":1.0,"end":1.5,"client":"new","reused":false,"retried":false,
               "method":"POST","delay_ms":100,"outcome":"refused","local_port":0}"#,
        ))
        .unwrap();
        assert_eq!(r.outcome, Outcome::Refused);
        assert_eq!(r.method, "POST");
        assert!(RequestRecord::deserialize(v(
            r#"{"id":3,"start":1.0,"end":1.5,"client":"x","reused":false,"retried":false,
               "method":"POST","delay_ms":100,"outcome":"ok","local_port":0}"#
        ))
        .is_err());
    }
}
