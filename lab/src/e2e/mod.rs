//! The lab's load and report against a real cluster (scripts/e2e.sh, docs/e2e.md).
//!
//! `lab loadgen` runs in a Pod: the same open-loop load and per-request record as a lab run,
//! aimed at a Service's ClusterIP (or any address), printed as one JSON line on stdout when it
//! stops (at `--duration`, or when its stdin closes: the e2e keeps `kubectl attach` open for as
//! long as its rollouts take). `lab e2e-report` reads those records back on the host, together
//! with what the cluster said about its pods (`kubectl get pods -w -o json`, `kubectl get
//! events -o json`, EndpointSlices) and the e2e's own rollout times, and reports them with the
//! lab's report code: the same table, JSON and SVG timeline.
//!
//! The parts: [`loadgen`] (the command that runs in the Pod), [`report`] (the host's report)
//! and [`events`] (what the cluster said, read from kubectl's JSON onto the run's clock).

mod events;
mod loadgen;
mod report;

pub use loadgen::{loadgen, LoadgenArgs};
pub use report::{report, ReportArgs};
