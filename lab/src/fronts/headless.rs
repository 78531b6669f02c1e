//! The `headless` front: no proxy at all. A headless Service (`clusterIP: None`) gives clients
//! the pod addresses themselves, and a client that balances on its own side (gRPC's
//! `round_robin` over DNS or xDS) connects to each pod directly. What lags is the client's
//! resolver: it learns each endpoint change after the propagation lag, like any front. This
//! "front" is that resolver's view, which the gRPC load's balanced channel reads.

use std::net::SocketAddr;

use tokio::sync::watch;

use crate::cluster::Endpoint;

pub struct Headless {
    /// Never listened on: kept so every front has an address for the run's messages.
    pub addr: SocketAddr,
    endpoints: watch::Sender<Vec<SocketAddr>>,
}

impl Headless {
    pub fn start(addr: SocketAddr) -> Headless {
        Headless {
            addr,
            endpoints: watch::channel(Vec::new()).0,
        }
    }

    pub fn apply(&self, endpoints: &[Endpoint]) {
        self.endpoints
            .send_replace(endpoints.iter().map(|e| e.addr).collect());
    }

    /// The resolver's view: the endpoint addresses as this front last applied them.
    pub fn resolver(&self) -> watch::Receiver<Vec<SocketAddr>> {
        self.endpoints.subscribe()
    }
}
