//! The pod table every control loop reads: the lab's stand-in for the API server.
//!
//! The kubelets write pod conditions into it; the deployment controller and the endpoints
//! controller wake on every change (a `watch` generation counter, so a burst of changes wakes
//! them once and they read the latest state, as informers do).

pub mod controller;
pub mod endpoints;
pub mod kubelet;
pub mod pod;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use tokio::sync::watch;

/// A pod as a front reaches it: what the endpoints controller publishes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub pod: String,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct PodStatus {
    pub name: String,
    pub ip: Ipv4Addr,
    pub revision: u32,
    /// Creation order, for "oldest first".
    pub seq: u64,
    pub ready: bool,
    /// Seconds (run clock) since when the pod has been ready.
    pub ready_since: Option<f64>,
    /// Has a deletionTimestamp.
    pub terminating: bool,
    /// Every container has exited.
    pub gone: bool,
}

#[derive(Debug)]
pub struct Cluster {
    pods: Mutex<BTreeMap<String, PodStatus>>,
    generation: watch::Sender<u64>,
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            pods: Mutex::new(BTreeMap::new()),
            generation: watch::channel(0).0,
        }
    }

    pub fn insert(&self, p: PodStatus) {
        self.pods
            .lock()
            .expect("cluster lock")
            .insert(p.name.clone(), p);
        self.bump();
    }

    /// Applies `f` to the pod's status and wakes the control loops if anything changed.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut PodStatus)) {
        let changed = {
            let mut pods = self.pods.lock().expect("cluster lock");
            match pods.get_mut(name) {
                Some(p) => {
                    let before = (p.ready, p.terminating, p.gone);
                    f(p);
                    before != (p.ready, p.terminating, p.gone)
                }
                None => false,
            }
        };
        if changed {
            self.bump();
        }
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn snapshot(&self) -> Vec<PodStatus> {
        let mut v: Vec<PodStatus> = self
            .pods
            .lock()
            .expect("cluster lock")
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|p| p.seq);
        v
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
