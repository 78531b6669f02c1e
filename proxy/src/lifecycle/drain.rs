//! What the drain waits for: every open client connection and every request in flight, each
//! held as a guard for as long as it lives (a [`TaskTracker`] token), so nothing can forget to
//! count itself down, a request dropped half-way included.
//!
//! Two trackers, not one: an HTTP/2 stream runs in its own task and may outlive its
//! connection's, and the drain timeout reports how many *requests* it cut. The Prometheus gauges
//! (`lameduck_in_flight_requests`, `lameduck_open_connections`) only observe these counts; the
//! drain never reads a metric.

use prometheus::IntGauge;
use tokio_util::task::task_tracker::{TaskTracker, TaskTrackerToken};

/// Counts connections and in-flight requests; see the module docs.
#[derive(Clone)]
pub struct Drain {
    connections: Tracked,
    requests: Tracked,
}

/// One count, and the gauge that shows it.
#[derive(Clone)]
struct Tracked {
    tracker: TaskTracker,
    gauge: IntGauge,
}

/// Held for as long as one connection is open, or one request in flight.
#[must_use = "the count drops when the guard does"]
pub struct Guard {
    _token: TaskTrackerToken,
    gauge: IntGauge,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Tracked {
    fn new(gauge: IntGauge) -> Self {
        Tracked {
            tracker: TaskTracker::new(),
            gauge,
        }
    }

    fn guard(&self) -> Guard {
        self.gauge.inc();
        Guard {
            _token: self.tracker.token(),
            gauge: self.gauge.clone(),
        }
    }
}

impl Drain {
    /// The gauges are set from the counts, for `/metrics`; they are never read back.
    pub fn new(open_connections: IntGauge, in_flight: IntGauge) -> Self {
        Drain {
            connections: Tracked::new(open_connections),
            requests: Tracked::new(in_flight),
        }
    }

    /// Counts one client connection until the guard drops.
    pub fn connection(&self) -> Guard {
        self.connections.guard()
    }

    /// Counts one request in flight until the guard drops.
    pub fn request(&self) -> Guard {
        self.requests.guard()
    }

    pub fn open_connections(&self) -> usize {
        self.connections.tracker.len()
    }

    pub fn in_flight(&self) -> usize {
        self.requests.tracker.len()
    }

    /// Waits until no connection is open and no request is in flight. Only the drain calls it,
    /// once the listener is closed (so the counts can only fall, but for a connection accepted
    /// just before the close; hence the loop).
    pub async fn empty(&self) {
        let (conns, reqs) = (&self.connections.tracker, &self.requests.tracker);
        conns.close();
        reqs.close();
        loop {
            conns.wait().await;
            reqs.wait().await;
            if conns.is_empty() && reqs.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn empty_waits_for_connections_and_requests() {
        let gauge = |name| IntGauge::new(name, "test").unwrap();
        let (conns, reqs) = (gauge("conns"), gauge("reqs"));
        let drain = Drain::new(conns.clone(), reqs.clone());
        let conn = drain.connection();
        let req = drain.request();
        assert_eq!((drain.open_connections(), drain.in_flight()), (1, 1));
        assert_eq!((conns.get(), reqs.get()), (1, 1), "the gauges follow");
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.empty().await }
        });
        tokio::task::yield_now().await;
        drop(conn);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "a request outlives its connection (HTTP/2)"
        );
        drop(req);
        waiter.await.unwrap();
        assert_eq!((drain.open_connections(), drain.in_flight()), (0, 0));
        assert_eq!((conns.get(), reqs.get()), (0, 0));
    }
}
