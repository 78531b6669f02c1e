//! What the drain waits for: every open client connection and every request in flight, each
//! held as a guard for as long as it lives, so nothing can forget to count itself down, a
//! request dropped half-way included.
//!
//! Two counts, not one: an HTTP/2 stream runs in its own task and may outlive its connection's,
//! and the drain timeout reports how many *requests* it cut. Requests, counted on the hot path,
//! are tokio-util [`TaskTracker`] tokens (an atomic each way); connections are a `watch`
//! counter, since the memory trimmer follows their number as it changes. The Prometheus gauges
//! (`lameduck_in_flight_requests`, `lameduck_open_connections`) only observe these counts; the
//! drain never reads a metric.

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::watch;
use tokio_util::task::task_tracker::{TaskTracker, TaskTrackerToken};

/// Counts connections and in-flight requests; see the module docs.
#[derive(Clone)]
pub struct Drain {
    connections: Arc<watch::Sender<usize>>,
    connections_gauge: IntGauge,
    requests: TaskTracker,
    requests_gauge: IntGauge,
}

/// Held for as long as one connection is open, or one request in flight.
#[must_use = "the count drops when the guard does"]
pub struct Guard {
    counted: Counted,
    gauge: IntGauge,
}

enum Counted {
    Connection(Arc<watch::Sender<usize>>),
    Request(#[allow(dead_code)] TaskTrackerToken),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Counted::Connection(count) = &self.counted {
            count.send_modify(|c| *c -= 1);
        }
        self.gauge.dec();
    }
}

impl Drain {
    /// The gauges are set from the counts, for `/metrics`; they are never read back.
    pub fn new(open_connections: IntGauge, in_flight: IntGauge) -> Self {
        Drain {
            connections: Arc::new(watch::channel(0).0),
            connections_gauge: open_connections,
            requests: TaskTracker::new(),
            requests_gauge: in_flight,
        }
    }

    /// Counts one client connection until the guard drops.
    pub fn connection(&self) -> Guard {
        self.connections.send_modify(|c| *c += 1);
        self.connections_gauge.inc();
        Guard {
            counted: Counted::Connection(self.connections.clone()),
            gauge: self.connections_gauge.clone(),
        }
    }

    /// Counts one request in flight until the guard drops.
    pub fn request(&self) -> Guard {
        self.requests_gauge.inc();
        Guard {
            counted: Counted::Request(self.requests.token()),
            gauge: self.requests_gauge.clone(),
        }
    }

    pub fn open_connections(&self) -> usize {
        *self.connections.borrow()
    }

    /// The number of open client connections, as it changes.
    pub fn connections_watch(&self) -> watch::Receiver<usize> {
        self.connections.subscribe()
    }

    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Waits until no connection is open and no request is in flight. Only the drain calls it,
    /// once the listener is closed (so the counts can only fall, but for a connection accepted
    /// just before the close; hence the loop).
    pub async fn empty(&self) {
        self.requests.close();
        let mut conns = self.connections.subscribe();
        loop {
            let _ = conns.wait_for(|c| *c == 0).await;
            self.requests.wait().await;
            if *self.connections.borrow() == 0 && self.requests.is_empty() {
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
