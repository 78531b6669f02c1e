//! One run (a scenario through a front) from the first pod to the last byte of the JSON.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{mpsc, watch};

use crate::cluster::controller::{Controller, IpPool};
use crate::cluster::endpoints;
use crate::cluster::kubelet::Node;
use crate::cluster::pod::Binaries;
use crate::cluster::Cluster;
use crate::cluster::Endpoint;
use crate::fronts::{self, Front, FrontKind};
use crate::measure::load::Load;
use crate::measure::progress::Progress;
use crate::measure::record::{EventKind, Recorder};
use crate::report::timeline;
use crate::report::{self, RunSummary};
use crate::scenario::Scenario;
use crate::settings::Settings;

/// Runs one scenario through one front and writes its JSON and SVG.
pub async fn run_one(
    scenario: &Scenario,
    front_kind: FrontKind,
    settings: &Settings,
    bins: Arc<Binaries>,
    ips: Arc<IpPool>,
    progress: &Progress,
) -> Result<RunSummary> {
    let label = format!("{}-{}", scenario.name, front_kind.name());
    let dir = settings.out_dir.join(&label);
    let log_dir = fresh_run_dir(&dir)?;
    let rec = Recorder::new();
    let scale = settings.scale;
    let cluster = Arc::new(Cluster::new());
    let front_addr = SocketAddr::from((ips.next(), 8000));
    let front = Arc::new(Front::start(front_kind, front_addr, &dir, scale).await?);
    let node = Arc::new(Node {
        rec: rec.clone(),
        cluster: cluster.clone(),
        spec: scenario.deployment.pod.clone(),
        scale,
        bins,
        log_dir,
    });
    let (loops, mut applied) = EndpointLoops::start(&cluster, &front, scenario, settings, &rec);

    let mut controller = Controller::new(node, scenario.deployment.clone(), ips);
    let result = drive(
        scenario,
        &mut controller,
        &front,
        &mut applied,
        settings,
        &rec,
        &label,
        progress,
    )
    .await;

    attribute_to_pods(&front, &cluster, &rec);
    // Teardown, whatever happened: pods, front, control loops.
    front.stop().await;
    if let Some(ids) = front.handled_ids() {
        rec.blame_front(|id| ids.contains(&id));
    }
    controller.teardown().await;
    loops.stop();
    let outcome_note = result.as_ref().err().map(|e| format!("{e:#}"));
    if let Some(n) = &outcome_note {
        let text = format!("run failed: {n}");
        rec.event(None, EventKind::Note { text });
    }

    let summary = report::summarize(scenario, front_kind, &rec, settings, outcome_note);
    report::write_json(&dir.join("run.json"), &summary, &rec, settings)?;
    timeline::write_svg(&dir.join("timeline.svg"), &summary, &rec)?;
    Ok(summary)
}

/// Empties the run's directory of an earlier run's files; returns its `logs/`, created.
fn fresh_run_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let log_dir = dir.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    Ok(log_dir)
}

/// The endpoints' control loops: the publisher (ready pods to endpoints) and the propagation
/// to the front, with its lag.
struct EndpointLoops {
    publisher: tokio::task::JoinHandle<()>,
    propagator: tokio::task::JoinHandle<()>,
}

impl EndpointLoops {
    /// Starts both; the receiver sees the endpoints the front has applied.
    fn start(
        cluster: &Arc<Cluster>,
        front: &Arc<Front>,
        scenario: &Scenario,
        settings: &Settings,
        rec: &Arc<Recorder>,
    ) -> (EndpointLoops, watch::Receiver<Vec<Endpoint>>) {
        let (pub_tx, pub_rx) = mpsc::unbounded_channel();
        let (applied_tx, applied) = watch::channel::<Vec<Endpoint>>(Vec::new());
        let publisher = tokio::spawn(endpoints::publish(
            cluster.clone(),
            scenario.deployment.target_port,
            rec.clone(),
            pub_tx,
        ));
        let scale = settings.scale;
        let lag = (scale.apply(settings.lag.0), scale.apply(settings.lag.1));
        let propagator = tokio::spawn(fronts::propagation::propagate(
            front.clone(),
            pub_rx,
            lag,
            settings.seed,
            rec.clone(),
            applied_tx,
        ));
        let loops = EndpointLoops {
            publisher,
            propagator,
        };
        (loops, applied)
    }

    fn stop(self) {
        self.publisher.abort();
        self.propagator.abort();
    }
}

/// Where the front sent each request no pod answered (`routed_to`), from its routing log by
/// client port, for the fronts that keep one (the L4 service).
fn attribute_to_pods(front: &Front, cluster: &Cluster, rec: &Recorder) {
    let Some(routes) = front.routes() else {
        return;
    };
    let pods = cluster.snapshot();
    rec.attribute(|port| {
        let b = routes.get(&port)?;
        pods.iter()
            .find(|p| std::net::IpAddr::V4(p.ip) == b.ip())
            .map(|p| p.name.clone())
    });
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    scenario: &Scenario,
    controller: &mut Controller,
    front: &Front,
    applied: &mut watch::Receiver<Vec<Endpoint>>,
    settings: &Settings,
    rec: &Arc<Recorder>,
    label: &str,
    progress: &Progress,
) -> Result<()> {
    let scale = settings.scale;
    let d = &scenario.deployment;
    // Generous bounds (model time, scaled), only to turn a hang into a clear error.
    let grace = d.pod.termination_grace;
    let start_bound = scale.apply(Duration::from_secs(120)) + Duration::from_secs(20);
    let rollout_bound = scale.apply((grace + Duration::from_secs(120)) * d.replicas.max(1))
        + Duration::from_secs(30);

    progress.set(label, "starting pods");
    controller
        .scale_up(start_bound)
        .await
        .context("scaling up the first revision")?;
    // Load starts once the front routes to every first pod.
    let deadline = tokio::time::Instant::now() + start_bound;
    while applied.borrow().len() < d.replicas as usize {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the {} front never learnt the first {} endpoints",
                front.kind().name(),
                d.replicas
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), applied.changed()).await;
    }
    rec.event(None, EventKind::LoadStarted);
    let load = Load::start_kind(
        &settings.protocol,
        front.target(),
        settings.load.clone(),
        rec.clone(),
    )?;
    let ticker = progress.ticker(label, rec.clone(), settings.restarts);
    let warmup = scale.apply(Duration::from_secs(3));
    tokio::time::sleep(warmup).await;
    let mut result = Ok(());
    for n in 1..=settings.restarts {
        progress.rollout(n);
        if let Err(e) = controller.rollout(n, rollout_bound).await {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        result = controller
            .settle(scale.apply(grace) + Duration::from_secs(10))
            .await;
    }
    // A tail, so requests right after the last pod left are measured too.
    tokio::time::sleep(warmup).await;
    load.stop().await;
    rec.event(None, EventKind::LoadStopped);
    ticker.abort();
    progress.done(label, rec);
    result
}

/// Where the run's files are.
pub fn run_dir(out: &Path, scenario: &str, front: FrontKind) -> PathBuf {
    out.join(format!("{scenario}-{}", front.name()))
}
