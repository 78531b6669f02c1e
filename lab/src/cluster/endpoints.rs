//! Endpoints: which pods receive traffic (the EndpointSlice controller's `ready` condition: the
//! pods that are ready and not terminating), published on every change. How late each front
//! learns a change is the fronts' side (`fronts/propagation.rs`).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cluster::{Cluster, Endpoint};
use crate::measure::record::{EventKind, Recorder};

/// Publishes the endpoint set on every pod change, until the cluster's sender is dropped.
pub async fn publish(
    cluster: Arc<Cluster>,
    port: u16,
    rec: Arc<Recorder>,
    out: mpsc::UnboundedSender<(Instant, Vec<Endpoint>)>,
) {
    let mut changes = cluster.subscribe();
    let mut last: Option<Vec<Endpoint>> = None;
    loop {
        let set: Vec<Endpoint> = cluster
            .snapshot()
            .into_iter()
            .filter(|p| p.ready && !p.terminating && !p.gone)
            .map(|p| Endpoint {
                pod: p.name,
                addr: SocketAddr::from((p.ip, port)),
            })
            .collect();
        if last.as_ref() != Some(&set) {
            rec.event(
                None,
                EventKind::EndpointsPublished {
                    pods: set.iter().map(|e| e.pod.clone()).collect(),
                },
            );
            if out.send((Instant::now(), set.clone())).is_err() {
                return;
            }
            last = Some(set);
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
