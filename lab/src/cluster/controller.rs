//! The deployment controller: a rolling update that honours maxSurge and maxUnavailable.
//!
//! It follows the Deployment controller's own arithmetic (`reconcileNewReplicaSet` /
//! `reconcileOldReplicaSets`): the new revision may grow while old + new pods stay within
//! `replicas + maxSurge`; old pods may be deleted while the available pods stay at least
//! `replicas - maxUnavailable`, unready old pods first. Terminating pods count for neither, as
//! in Kubernetes. A pod is available once it has been ready for `minReadySeconds`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cluster::kubelet::{self, Node, PodHandle};
use crate::cluster::PodStatus;
use crate::manifest::Deployment;
use crate::measure::record::EventKind;

/// Hands out the pods' loopback addresses: 127.0.X.Y, never reused within a lab process, so a
/// new pod never meets an old pod's TIME_WAIT sockets or a stale front entry.
#[derive(Debug)]
pub struct IpPool {
    next: std::sync::Mutex<u32>,
}

impl IpPool {
    /// Starts at 127.0.`x`.1.
    pub fn new(x: u8) -> IpPool {
        IpPool {
            next: std::sync::Mutex::new(u32::from(x) * 250),
        }
    }

    pub fn next(&self) -> Ipv4Addr {
        let mut n = self.next.lock().expect("ip pool lock");
        let v = *n;
        *n += 1;
        let x = (v / 250) % 254 + 1;
        let y = v % 250 + 1;
        Ipv4Addr::new(127, 0, x as u8, y as u8)
    }
}

pub struct Controller {
    node: Arc<Node>,
    deployment: Deployment,
    ips: Arc<IpPool>,
    /// Pods not deleted yet.
    pods: Vec<PodHandle>,
    /// Every pod ever created, for the teardown.
    all: Vec<PodHandle>,
    revision: u32,
    seq: u64,
}

impl Controller {
    pub fn new(node: Arc<Node>, deployment: Deployment, ips: Arc<IpPool>) -> Controller {
        Controller {
            node,
            deployment,
            ips,
            pods: Vec::new(),
            all: Vec::new(),
            revision: 0,
            seq: 0,
        }
    }

    async fn create(&mut self) -> Result<()> {
        self.seq += 1;
        let name = format!("pod-{}", self.seq);
        let ip = self.ips.next();
        let h = kubelet::start_pod(self.node.clone(), name, ip, self.revision, self.seq).await?;
        self.all.push(h.clone());
        self.pods.push(h);
        Ok(())
    }

    fn delete(&mut self, name: &str) {
        if let Some(i) = self.pods.iter().position(|p| p.name == name) {
            self.pods.remove(i).delete();
        }
    }

    /// Live (not terminating) pods, by the cluster's view.
    fn live(&self) -> Vec<PodStatus> {
        self.node
            .cluster
            .snapshot()
            .into_iter()
            .filter(|p| !p.terminating && !p.gone && self.pods.iter().any(|h| h.name == p.name))
            .collect()
    }

    fn available(&self, p: &PodStatus) -> bool {
        let min_ready = self.deployment.min_ready_seconds * self.node.scale.0;
        p.ready
            && p.ready_since
                .is_some_and(|t| self.node.rec.now() - t >= min_ready)
    }

    /// The first container that exited unasked, with the end of its log: a binary that refuses
    /// its flags (a budget check, a bad value) says why there.
    fn unexpected_exit(&self) -> Option<String> {
        self.node.rec.events().iter().find_map(|e| match &e.kind {
            EventKind::UnexpectedExit {
                container, code, ..
            } => {
                let pod = e.pod.clone().unwrap_or_default();
                let log = self.node.log_dir.join(format!("{pod}-{container}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                Some(format!(
                    "{pod} {container} (exit code {code:?}); {} ends with: {}",
                    log.display(),
                    tail.join(" | ")
                ))
            }
            _ => None,
        })
    }

    /// Creates the first revision and waits until every replica is available.
    pub async fn scale_up(&mut self, timeout: Duration) -> Result<()> {
        for _ in 0..self.deployment.replicas {
            self.create().await?;
        }
        let mut changes = self.node.cluster.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let live = self.live();
            if live.iter().filter(|p| self.available(p)).count() as u32 >= self.deployment.replicas
            {
                return Ok(());
            }
            if let Some(why) = self.unexpected_exit() {
                bail!("a container of the first pods exited during start-up: {why}");
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the first {} pods did not become ready within {timeout:?}; see the container logs under {}",
                    self.deployment.replicas,
                    self.node.log_dir.display()
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), changes.changed()).await;
        }
    }

    /// One `kubectl rollout restart`: a new revision rolled out to completion.
    pub async fn rollout(&mut self, n: u32, timeout: Duration) -> Result<()> {
        self.revision += 1;
        let rev = self.revision;
        self.node
            .rec
            .event(None, EventKind::RolloutStarted { rollout: n });
        let replicas = self.deployment.replicas as i64;
        let mut changes = self.node.cluster.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (new, old): (Vec<_>, Vec<_>) =
                self.live().into_iter().partition(|p| p.revision == rev);
            let new_available = new.iter().filter(|p| self.available(p)).count() as i64;
            if old.is_empty() && new.len() as i64 == replicas && new_available == replicas {
                self.node
                    .rec
                    .event(None, EventKind::RolloutComplete { rollout: n });
                return Ok(());
            }
            let grow = self.surge_room(new.len(), old.len() + new.len());
            for _ in 0..grow {
                self.create().await?;
            }
            for name in self.old_to_delete(&old, &new, grow, new_available) {
                self.delete(&name);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("rollout {n} did not complete within {timeout:?}; see the container logs under {}", self.node.log_dir.display());
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), changes.changed()).await;
        }
    }

    /// How many pods of the new revision to create now: up to the replica count, within the
    /// surge (`total` pods may run at most replicas + maxSurge).
    fn surge_room(&self, new: usize, total: usize) -> i64 {
        let d = &self.deployment;
        let (replicas, surge) = (d.replicas as i64, d.max_surge as i64);
        (replicas - new as i64)
            .min(replicas + surge - total as i64)
            .max(0)
    }

    /// The old pods to delete now, within the availability floor (replicas - maxUnavailable),
    /// counting the `grown` new pods just created as not yet available: unavailable old pods
    /// first, then available ones while enough stay available, each oldest first.
    fn old_to_delete(
        &self,
        old: &[PodStatus],
        new: &[PodStatus],
        grown: i64,
        new_available: i64,
    ) -> Vec<String> {
        let d = &self.deployment;
        let min_available = d.replicas as i64 - d.max_unavailable as i64;
        let total = (old.len() + new.len()) as i64 + grown;
        let new_unavailable = (new.len() as i64 + grown) - new_available;
        let mut budget = total - min_available - new_unavailable;
        let mut removed = Vec::new();
        if budget <= 0 {
            return removed;
        }
        let mut old_sorted = old.to_vec();
        old_sorted.sort_by_key(|p| (self.available(p), p.seq));
        for p in old_sorted.iter().filter(|p| !self.available(p)) {
            if budget == 0 {
                break;
            }
            removed.push(p.name.clone());
            budget -= 1;
        }
        let available_all = old.iter().chain(new).filter(|p| self.available(p)).count() as i64;
        let mut scale_down = (available_all - min_available).min(budget);
        for p in old_sorted.iter().filter(|p| self.available(p)) {
            if scale_down <= 0 {
                break;
            }
            removed.push(p.name.clone());
            scale_down -= 1;
        }
        removed
    }

    /// Waits until every deleted pod has exited.
    pub async fn settle(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.node.cluster.subscribe();
        loop {
            if self
                .node
                .cluster
                .snapshot()
                .iter()
                .all(|p| !p.terminating || p.gone)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("terminating pods were still running {timeout:?} after the last rollout");
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), changes.changed()).await;
        }
    }

    /// Kills every pod (teardown, after the measurement) and waits for them to be gone.
    pub async fn teardown(&mut self) {
        self.pods.clear();
        for p in &self.all {
            p.kill();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut changes = self.node.cluster.subscribe();
        while !self.node.cluster.snapshot().iter().all(|p| p.gone)
            && tokio::time::Instant::now() < deadline
        {
            let _ = tokio::time::timeout(Duration::from_millis(50), changes.changed()).await;
        }
    }
}
