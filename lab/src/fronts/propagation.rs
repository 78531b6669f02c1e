//! How late each front learns an endpoint change: each change reaches a front only after that
//! front's own propagation lag, sampled per change from `--lag MIN..MAX` (kube-proxy, an
//! ingress controller and a router each learn a change at their own time in a cluster). Changes
//! are applied in order (a change never overtakes an earlier one), as a watch stream delivers
//! them.

use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::Front;
use crate::cluster::Endpoint;
use crate::measure::record::{EventKind, Recorder};

/// Delivers published endpoint sets to one front, each after a sampled lag, in order. The
/// front's current view is mirrored in `applied` so the run can wait for convergence.
pub async fn propagate(
    front: Arc<Front>,
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<Endpoint>)>,
    lag: (Duration, Duration),
    seed: u64,
    rec: Arc<Recorder>,
    applied: watch::Sender<Vec<Endpoint>>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut last_due = Instant::now();
    let mut current: Vec<Endpoint> = Vec::new();
    let name = front.kind().name();
    while let Some((published, set)) = rx.recv().await {
        let l = if lag.1 > lag.0 {
            rng.gen_range(lag.0..=lag.1)
        } else {
            lag.0
        };
        let due = (published + l).max(last_due);
        last_due = due;
        tokio::time::sleep_until(due).await;
        if let Err(e) = front.apply(&set).await {
            rec.event(
                None,
                EventKind::Note {
                    text: format!("{name}: applying endpoints failed: {e:#}"),
                },
            );
        }
        let lag_ms = published.elapsed().as_secs_f64() * 1000.0;
        rec.event(
            None,
            EventKind::EndpointsApplied {
                front: name.to_string(),
                pods: set.iter().map(|e| e.pod.clone()).collect(),
                lag_ms,
            },
        );
        for gone in current
            .iter()
            .filter(|e| !set.iter().any(|n| n.pod == e.pod))
        {
            rec.event(
                Some(&gone.pod),
                EventKind::EndpointRemoved {
                    front: name.to_string(),
                },
            );
        }
        current = set.clone();
        let _ = applied.send(set);
    }
}
