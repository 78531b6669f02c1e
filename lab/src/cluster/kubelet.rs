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
    tokio::spawn(lifecycle(node, name, ip, slots, sidecars, handle.clone()));
    Ok(handle)
}

async fn lifecycle(
    node: Arc<Node>,
    name: String,
    ip: Ipv4Addr,
    slots: Vec<Slot>,
    sidecars: usize,
    handle: PodHandle,
) {
    let slots = Arc::new(slots);
    // Readiness: one prober per container with a probe; containers without one are ready while
    // they run.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, bool)>();
    let mut ready: Vec<bool> = slots.iter().map(|s| s.probe.is_none()).collect();
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (i, s) in slots.iter().enumerate() {
        if let Some(p) = s.probe.clone() {
            tokio::spawn(prober(i, p, ip, node.scale, s.run.clone(), tx.clone()));
        }
        if let Some(admin) = s.launch.admin {
            tokio::spawn(phase_poller(
                admin,
                name.clone(),
                s.run.clone(),
                node.rec.clone(),
            ));
        }
        let tx = tx.clone();
        let run = s.run.clone();
        let (node, pod, container) = (node.clone(), name.clone(), s.launch.container.clone());
        let killed = killed.clone();
        tokio::spawn(async move {
            let exit = run.wait().await;
            // A container that ends while its pod is neither terminating nor torn down was
            // stopped by something outside the lab (or crashed): the run is not what it claims.
            let terminating = node
                .cluster
                .snapshot()
                .iter()
                .any(|p| p.name == pod && p.terminating);
            if !terminating && !killed.load(std::sync::atomic::Ordering::SeqCst) {
                node.rec.event(
                    Some(&pod),
                    EventKind::UnexpectedExit {
                        container,
                        code: exit.code,
                        signal: exit.signal,
                    },
                );
            }
            let _ = tx.send((i, false));
        });
    }
    drop(tx);
    let mut pod_ready = false;
    let mut terminating = false;
    let mut term_task: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some((i, ok)) = msg else { break };
                ready[i] = ok && !slots[i].run.has_exited();
                let now_ready = ready.iter().all(|r| *r);
                if now_ready != pod_ready {
                    pod_ready = now_ready;
                    node.rec.event(Some(&name), if now_ready { EventKind::PodReady } else { EventKind::PodUnready });
                    let t = node.rec.now();
                    node.cluster.update(&name, |p| {
                        p.ready = now_ready;
                        p.ready_since = now_ready.then_some(t);
                    });
                }
                if slots.iter().all(|s| s.run.has_exited()) {
                    break;
                }
            }
            _ = handle.delete.notified(), if !terminating => {
                terminating = true;
                node.rec.event(Some(&name), EventKind::Terminating);
                node.cluster.update(&name, |p| p.terminating = true);
                term_task = Some(tokio::spawn(terminate(node.clone(), name.clone(), ip, slots.clone(), sidecars)));
            }
            _ = handle.kill.notified() => {
                killed.store(true, std::sync::atomic::Ordering::SeqCst);
                for s in slots.iter() {
                    if !s.run.has_exited() {
                        procs::signal(s.run.pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
    if let Some(t) = term_task {
        let _ = t.await;
    }
    node.cluster.update(&name, |p| {
        p.gone = true;
        p.ready = false;
    });
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

async fn terminate(
    node: Arc<Node>,
    name: String,
    ip: Ipv4Addr,
    slots: Arc<Vec<Slot>>,
    sidecars: usize,
) {
    let deadline = Instant::now() + node.scale.apply(node.spec.termination_grace);
    let (side, main) = slots.split_at(sidecars);
    let mut side_hooks = Vec::new();
    for s in side {
        side_hooks.push(tokio::spawn(pre_stop(
            node.clone(),
            name.clone(),
            ip,
            s.pre_stop.clone(),
            s.launch.container.clone(),
            deadline,
        )));
    }
    let mut mains = Vec::new();
    for s in main {
        let hook = pre_stop(
            node.clone(),
            name.clone(),
            ip,
            s.pre_stop.clone(),
            s.launch.container.clone(),
            deadline,
        );
        let node = node.clone();
        let name = name.clone();
        let container = s.launch.container.clone();
        let run = s.run.clone();
        mains.push(tokio::spawn(async move {
            hook.await;
            if !run.has_exited() && Instant::now() < deadline {
                node.rec
                    .event(Some(&name), EventKind::Sigterm { container });
                procs::signal(run.pid, libc::SIGTERM);
            }
        }));
    }
    let all_main_exited = async {
        for s in main {
            s.run.wait().await;
        }
    };
    let grace_over = tokio::select! {
        _ = all_main_exited => false,
        _ = sleep_until(deadline) => true,
    };
    if !grace_over {
        // Native sidecars: SIGTERM once the main containers are gone, last declared first.
        for (s, hook) in side.iter().zip(side_hooks).rev() {
            tokio::select! {
                _ = hook => {}
                _ = sleep_until(deadline) => break,
            }
            if !s.run.has_exited() {
                node.rec.event(
                    Some(&name),
                    EventKind::Sigterm {
                        container: s.launch.container.clone(),
                    },
                );
                procs::signal(s.run.pid, libc::SIGTERM);
            }
            tokio::select! {
                _ = s.run.wait() => {}
                _ = sleep_until(deadline) => break,
            }
        }
    }
    let all_exited = async {
        for s in slots.iter() {
            s.run.wait().await;
        }
    };
    tokio::select! {
        _ = all_exited => {}
        _ = sleep_until(deadline) => {
            for s in slots.iter() {
                if !s.run.has_exited() {
                    node.rec.event(Some(&name), EventKind::Sigkill { container: s.launch.container.clone() });
                    procs::signal(s.run.pid, libc::SIGKILL);
                }
            }
            for s in slots.iter() {
                s.run.wait().await;
            }
        }
    }
    for m in mains {
        m.abort();
    }
}

/// Runs one container's preStop hook, bounded by the grace period.
async fn pre_stop(
    node: Arc<Node>,
    pod: String,
    ip: Ipv4Addr,
    hook: Option<Handler>,
    container: String,
    deadline: Instant,
) {
    let Some(hook) = hook else { return };
    let action = match &hook {
        Handler::Sleep(d) => format!("sleep {}", humantime::format_duration(*d)),
        Handler::HttpGet { port, path } => format!("httpGet :{port}{path}"),
    };
    node.rec.event(
        Some(&pod),
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
            match httpc::get(SocketAddr::from((ip, port)), &path, left).await {
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => format!("failed: {e}"),
            }
        }
    };
    node.rec
        .event(Some(&pod), EventKind::PreStopDone { container, outcome });
}
