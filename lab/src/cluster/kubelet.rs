//! The kubelet: runs one pod's containers, probes their readiness, and terminates the pod the
//! way Kubernetes does.
//!
//! Termination, from the pod's deletionTimestamp (t0):
//! - the pod is marked terminating at once, so the endpoints controller drops it;
//! - every container's preStop hook starts at t0, main containers and native sidecars alike;
//! - a main container gets SIGTERM when its own preStop has finished (at once without one);
//! - native sidecars get SIGTERM only once every main container has exited, last declared first;
//! - at t0 + terminationGracePeriodSeconds whatever still runs gets SIGKILL. The countdown
//!   includes the preStop hooks, and a preStop `httpGet` has no timeout of its own.
//!
//! Readiness probes keep running during termination, as the kubelet's do, so the picture shows
//! when each pod's `/ready` turned.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};

use crate::cluster::pod::{self, Binaries, Launch, Running};
use crate::cluster::{Cluster, PodStatus};
use crate::manifest::{Handler, PodSpec, Probe, ProbeAction};
use crate::measure::httpc;
use crate::measure::record::{EventKind, Recorder};
use crate::procs;
use crate::scale::Scale;

/// What every kubelet of a run shares.
#[derive(Debug)]
pub struct Node {
    pub rec: Arc<Recorder>,
    pub cluster: Arc<Cluster>,
    pub spec: PodSpec,
    pub scale: Scale,
    pub bins: Arc<Binaries>,
    pub log_dir: PathBuf,
}

/// The controller's handle on a pod.
#[derive(Debug, Clone)]
pub struct PodHandle {
    pub name: String,
    delete: Arc<Notify>,
    kill: Arc<Notify>,
}

impl PodHandle {
    /// Sets the deletionTimestamp: graceful termination starts.
    pub fn delete(&self) {
        self.delete.notify_one();
    }

    /// Kills the pod outright (teardown after the measurement).
    pub fn kill(&self) {
        self.kill.notify_one();
    }
}

struct Slot {
    launch: Launch,
    run: Running,
    probe: Option<Probe>,
    pre_stop: Option<Handler>,
}

/// Creates a pod: resolves its containers (failing early on a missing binary or a manifest the
/// lab cannot run), starts them, and leaves a task running its lifecycle.
pub async fn start_pod(
    node: Arc<Node>,
    name: String,
    ip: Ipv4Addr,
    revision: u32,
    seq: u64,
) -> Result<PodHandle> {
    let mut launches = Vec::new();
    for c in node.spec.sidecars.iter().chain(&node.spec.containers) {
        launches.push((
            pod::resolve(c, &name, ip, node.scale, &node.bins).await?,
            c.readiness.clone(),
            c.pre_stop.clone(),
        ));
    }
    node.cluster.insert(PodStatus {
        name: name.clone(),
        ip,
        revision,
        seq,
        ready: false,
        ready_since: None,
        terminating: false,
        gone: false,
    });
    node.rec.event(
        Some(&name),
        EventKind::PodCreated {
            ip: ip.to_string(),
            revision,
        },
    );
    let mut slots = Vec::new();
    for (launch, probe, pre_stop) in launches {
        let run = pod::spawn(&launch, &name, &node.log_dir, &node.rec)?;
        slots.push(Slot {
            launch,
            run,
            probe,
            pre_stop,
        });
    }
    let handle = PodHandle {
        name: name.clone(),
        delete: Arc::new(Notify::new()),
        kill: Arc::new(Notify::new()),
    };
    let sidecars = node.spec.sidecars.len();
    let pod = Arc::new(PodRun {
        node,
        name,
        ip,
        slots,
        sidecars,
        killed: AtomicBool::new(false),
    });
    tokio::spawn(lifecycle(pod, handle.clone()));
    Ok(handle)
}

/// One pod as its kubelet runs it: its containers in declaration order, native sidecars first.
struct PodRun {
    node: Arc<Node>,
    name: String,
    ip: Ipv4Addr,
    slots: Vec<Slot>,
    /// How many of the slots are native sidecars.
    sidecars: usize,
    /// Set when the pod is torn down: its containers' exits are then expected.
    killed: AtomicBool,
}

/// The pod's life from its containers' start: readiness as the probes say, termination when
/// the controller deletes it, SIGKILL when it is torn down; over once every container exited.
async fn lifecycle(pod: Arc<PodRun>, handle: PodHandle) {
    let mut changes = pod.watch_containers();
    let mut readiness = Readiness::new(&pod.slots);
    let mut termination: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some((i, ok)) = change else { break };
                if let Some(ready) = readiness.update(&pod.slots, i, ok) {
                    pod.set_ready(ready);
                }
                if pod.slots.iter().all(|s| s.run.has_exited()) {
                    break;
                }
            }
            _ = handle.delete.notified(), if termination.is_none() => {
                termination = Some(pod.begin_termination());
            }
            _ = handle.kill.notified() => pod.kill_all(),
        }
    }
    if let Some(t) = termination {
        let _ = t.await;
    }
    pod.node.cluster.update(&pod.name, |p| {
        p.gone = true;
        p.ready = false;
    });
}

/// The pod is ready when every container is: those with a probe once it passes, those without
/// while they run.
struct Readiness {
    containers: Vec<bool>,
    pod: bool,
}

impl Readiness {
    fn new(slots: &[Slot]) -> Readiness {
        Readiness {
            containers: slots.iter().map(|s| s.probe.is_none()).collect(),
            pod: false,
        }
    }

    /// Container `i` is now `ok` (or not): the pod's new readiness if it changed.
    fn update(&mut self, slots: &[Slot], i: usize, ok: bool) -> Option<bool> {
        self.containers[i] = ok && !slots[i].run.has_exited();
        let now = self.containers.iter().all(|r| *r);
        (now != self.pod).then(|| {
            self.pod = now;
            now
        })
    }
}

impl PodRun {
    /// Starts what watches each container (its readiness prober, lameduck's phase, its exit);
    /// their readiness changes come on the channel, which closes once they all ended.
    fn watch_containers(self: &Arc<Self>) -> mpsc::UnboundedReceiver<(usize, bool)> {
        let (tx, rx) = mpsc::unbounded_channel::<(usize, bool)>();
        let scale = self.node.scale;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(p) = s.probe.clone() {
                tokio::spawn(prober(i, p, self.ip, scale, s.run.clone(), tx.clone()));
            }
            if let Some(admin) = s.launch.admin {
                let (pod, run, rec) = (self.name.clone(), s.run.clone(), self.node.rec.clone());
                tokio::spawn(phase_poller(admin, pod, run, rec));
            }
            tokio::spawn(self.clone().watch_exit(i, tx.clone()));
        }
        rx
    }

    /// Waits for container `i` to end: it is then not ready; an end nobody asked for is
    /// recorded.
    async fn watch_exit(self: Arc<Self>, i: usize, tx: mpsc::UnboundedSender<(usize, bool)>) {
        let s = &self.slots[i];
        let exit = s.run.wait().await;
        // A container that ends while its pod is neither terminating nor torn down was
        // stopped by something outside the lab (or crashed): the run is not what it claims.
        let terminating = self
            .node
            .cluster
            .snapshot()
            .iter()
            .any(|p| p.name == self.name && p.terminating);
        if !terminating && !self.killed.load(Ordering::SeqCst) {
            let kind = EventKind::UnexpectedExit {
                container: s.launch.container.clone(),
                code: exit.code,
                signal: exit.signal,
            };
            self.node.rec.event(Some(&self.name), kind);
        }
        let _ = tx.send((i, false));
    }

    fn set_ready(&self, ready: bool) {
        let kind = if ready {
            EventKind::PodReady
        } else {
            EventKind::PodUnready
        };
        self.node.rec.event(Some(&self.name), kind);
        let t = self.node.rec.now();
        self.node.cluster.update(&self.name, |p| {
            p.ready = ready;
            p.ready_since = ready.then_some(t);
        });
    }

    /// The deletionTimestamp is set: the pod is terminating (the endpoints drop it) and its
    /// termination runs.
    fn begin_termination(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.node
            .rec
            .event(Some(&self.name), EventKind::Terminating);
        self.node
            .cluster
            .update(&self.name, |p| p.terminating = true);
        tokio::spawn(terminate(self.clone()))
    }

    /// Teardown: every container still running is killed, expectedly.
    fn kill_all(&self) {
        self.killed.store(true, Ordering::SeqCst);
        for s in &self.slots {
            if !s.run.has_exited() {
                procs::signal(s.run.pid, libc::SIGKILL);
            }
        }
    }

    /// Sends a container SIGTERM or SIGKILL, recorded on the pod's lane.
    fn signal(&self, s: &Slot, sig: libc::c_int) {
        let container = s.launch.container.clone();
        let kind = if sig == libc::SIGKILL {
            EventKind::Sigkill { container }
        } else {
            EventKind::Sigterm { container }
        };
        self.node.rec.event(Some(&self.name), kind);
        procs::signal(s.run.pid, sig);
    }
}

/// The kubelet's readiness prober for one container.
async fn prober(
    i: usize,
    p: Probe,
    ip: Ipv4Addr,
    scale: Scale,
    run: Running,
    tx: mpsc::UnboundedSender<(usize, bool)>,
) {
    let period = scale.apply(p.period);
    let timeout = scale.apply(p.timeout);
    let mut next = Instant::now() + scale.apply(p.initial_delay);
    let (mut successes, mut failures, mut ready) = (0u32, 0u32, false);
    loop {
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = run.wait() => return,
        }
        next += period;
        let ok = match &p.action {
            ProbeAction::HttpGet { port, path } => {
                matches!(httpc::get(SocketAddr::from((ip, *port)), path, timeout).await, Ok(r) if (200..400).contains(&r.status))
            }
            ProbeAction::TcpSocket { port } => {
                matches!(
                    tokio::time::timeout(timeout, tokio::net::TcpStream::connect((ip, *port)))
                        .await,
                    Ok(Ok(_))
                )
            }
        };
        if ok {
            successes += 1;
            failures = 0;
            if !ready && successes >= p.success_threshold {
                ready = true;
                if tx.send((i, true)).is_err() {
                    return;
                }
            }
        } else {
            failures += 1;
            successes = 0;
            if ready && failures >= p.failure_threshold {
                ready = false;
                if tx.send((i, false)).is_err() {
                    return;
                }
            }
        }
        if Instant::now() > next {
            next = Instant::now();
        }
    }
}

/// Reads lameduck's phase from its admin `/status`, so the picture shows lame duck, draining
/// and drained as lameduck itself saw them.
async fn phase_poller(admin: SocketAddr, pod: String, run: Running, rec: Arc<Recorder>) {
    let mut last = String::new();
    loop {
        if run.has_exited() {
            return;
        }
        if let Ok(r) = httpc::get(admin, "/status", Duration::from_millis(500)).await {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body) {
                if let Some(phase) = v.get("phase").and_then(|p| p.as_str()) {
                    if phase != last {
                        last = phase.to_string();
                        rec.event(
                            Some(&pod),
                            EventKind::LameduckPhase {
                                phase: last.clone(),
                            },
                        );
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = run.wait() => return,
        }
    }
}

/// Graceful termination, as the module doc says: every preStop hook at once; a main
/// container's SIGTERM after its own hook; the native sidecars' once the main containers are
/// gone; SIGKILL for what still runs when the grace period is over.
async fn terminate(pod: Arc<PodRun>) {
    let deadline = Instant::now() + pod.node.scale.apply(pod.node.spec.termination_grace);
    let side_hooks: Vec<_> = (0..pod.sidecars)
        .map(|i| tokio::spawn(pre_stop(pod.clone(), i, deadline)))
        .collect();
    let mains: Vec<_> = (pod.sidecars..pod.slots.len())
        .map(|i| tokio::spawn(pre_stop_then_sigterm(pod.clone(), i, deadline)))
        .collect();
    let (side, main) = pod.slots.split_at(pod.sidecars);
    let grace_over = tokio::select! {
        _ = all_exited(main) => false,
        _ = sleep_until(deadline) => true,
    };
    if !grace_over {
        stop_sidecars(&pod, side, side_hooks, deadline).await;
    }
    tokio::select! {
        _ = all_exited(&pod.slots) => {}
        _ = sleep_until(deadline) => {
            for s in pod.slots.iter().filter(|s| !s.run.has_exited()) {
                pod.signal(s, libc::SIGKILL);
            }
            all_exited(&pod.slots).await;
        }
    }
    for m in mains {
        m.abort();
    }
}

async fn all_exited(slots: &[Slot]) {
    for s in slots {
        s.run.wait().await;
    }
}

/// A main container: its preStop hook, then SIGTERM if it still runs within the grace period.
async fn pre_stop_then_sigterm(pod: Arc<PodRun>, i: usize, deadline: Instant) {
    pre_stop(pod.clone(), i, deadline).await;
    let s = &pod.slots[i];
    if !s.run.has_exited() && Instant::now() < deadline {
        pod.signal(s, libc::SIGTERM);
    }
}

/// Native sidecars, once the main containers are gone: last declared first, each after its
/// preStop hook, each waited for before the next; all bounded by the grace period.
async fn stop_sidecars(
    pod: &PodRun,
    side: &[Slot],
    hooks: Vec<tokio::task::JoinHandle<()>>,
    deadline: Instant,
) {
    for (s, hook) in side.iter().zip(hooks).rev() {
        tokio::select! {
            _ = hook => {}
            _ = sleep_until(deadline) => return,
        }
        if !s.run.has_exited() {
            pod.signal(s, libc::SIGTERM);
        }
        tokio::select! {
            _ = s.run.wait() => {}
            _ = sleep_until(deadline) => return,
        }
    }
}

/// Runs container `i`'s preStop hook, if it has one, bounded by the grace period.
async fn pre_stop(pod: Arc<PodRun>, i: usize, deadline: Instant) {
    let s = &pod.slots[i];
    let Some(hook) = s.pre_stop.clone() else {
        return;
    };
    let (node, container) = (&pod.node, s.launch.container.clone());
    let action = match &hook {
        Handler::Sleep(d) => format!("sleep {}", humantime::format_duration(*d)),
        Handler::HttpGet { port, path } => format!("httpGet :{port}{path}"),
    };
    node.rec.event(
        Some(&pod.name),
        EventKind::PreStopStarted {
            container: container.clone(),
            action,
        },
    );
    let left = deadline.saturating_duration_since(Instant::now());
    let outcome = match hook {
        Handler::Sleep(d) => {
            let d = node.scale.apply(d);
            if d > left {
                tokio::time::sleep(left).await;
                "cut by the grace period".to_string()
            } else {
                tokio::time::sleep(d).await;
                "slept".to_string()
            }
        }
        Handler::HttpGet { port, path } => {
            match httpc::get(SocketAddr::from((pod.ip, port)), &path, left).await {
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => format!("failed: {e}"),
            }
        }
    };
    node.rec.event(
        Some(&pod.name),
        EventKind::PreStopDone { container, outcome },
    );
}
