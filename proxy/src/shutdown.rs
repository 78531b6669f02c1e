//! Drives the shutdown once it has begun: the lame-duck window, then the drain.
//!
//! The phase says *where* we are; this task decides *when* to move on, and flips the switches
//! the data plane watches: `lame_duck` (Connection: close, GOAWAY), `accept` (pingora closes the
//! listener), `cut` (the drain timeout expired).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::data_plane::ConnTracker;
use crate::phase::{Lifecycle, Phase, Window};

pub struct Switches {
    pub lame_duck: watch::Sender<bool>,
    pub accept: watch::Sender<bool>,
    pub cut: watch::Sender<bool>,
}

pub async fn drive(
    lc: Arc<Lifecycle>,
    window: Window,
    drain_timeout: Duration,
    switches: Switches,
    conns: ConnTracker,
) {
    lc.reached(Phase::LameDuck).await;
    let _ = switches.lame_duck.send(true);
    let signal_at = Instant::from_std(
        lc.signal_at()
            .expect("LameDuck is entered with a signal time"),
    );

    // The window: recomputed after each wake-up, since late requests move its end.
    loop {
        let end = signal_at + window.end(lc.last_arrival());
        if Instant::now() >= end {
            break;
        }
        tokio::time::sleep_until(end).await;
    }

    lc.advance(Phase::Draining);
    let _ = switches.accept.send(true);
    let drained = async {
        conns.all_closed().await;
        // HTTP/2 streams run in their own tasks and may outlive their connection's task.
        while lc.metrics.in_flight.get() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(drain_timeout, drained).await.is_err() {
        let cut = lc.metrics.in_flight.get().max(0) as u64;
        lc.add_cut(cut);
        tracing::warn!(
            requests_cut = cut,
            open_conns = lc.metrics.open_connections.get(),
            drain_timeout_ms = drain_timeout.as_millis() as u64,
            "drain timeout: cutting what is left"
        );
        let _ = switches.cut.send(true);
        // Cut connections close as soon as their tasks see the switch.
        let _ = tokio::time::timeout(Duration::from_secs(1), conns.all_closed()).await;
    }
    lc.advance(Phase::Drained);
}
