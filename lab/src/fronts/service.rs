//! The `service` front: an L4 balancer like kube-proxy.
//!
//! kube-proxy rewrites the destination of each *new* connection to one endpoint (iptables DNAT,
//! or IPVS) and conntrack keeps every packet of that connection on it: established connections
//! stay pinned to their pod even after the pod left the endpoints. This balancer does the same
//! in user space: a backend chosen round robin per accepted connection from the endpoints it
//! currently knows, bytes copied both ways until either side closes.
//!
//! One difference is unavoidable: in a cluster a SYN sent to a pod that no longer listens is
//! answered with a RST, and the client sees "connection refused". Here the balancer has already
//! accepted the client's connection when the pod refuses, so it resets the client's connection
//! (SO_LINGER 0), and the client sees a reset before any response byte. With no endpoints at all
//! it resets too (kube-proxy REJECTs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::cluster::Endpoint;

pub struct Service {
    pub addr: SocketAddr,
    backends: Arc<RwLock<Vec<SocketAddr>>>,
    /// Client port -> backend chosen, the latest per port: what conntrack would show.
    routes: Arc<Mutex<HashMap<u16, SocketAddr>>>,
    task: JoinHandle<()>,
}

impl Service {
    pub async fn start(addr: SocketAddr) -> Result<Service> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("service front: binding {addr}"))?;
        let addr = listener.local_addr()?;
        let backends: Arc<RwLock<Vec<SocketAddr>>> = Arc::new(RwLock::new(Vec::new()));
        let rr = Arc::new(AtomicUsize::new(0));
        let routes: Arc<Mutex<HashMap<u16, SocketAddr>>> = Arc::default();
        let b = backends.clone();
        let r = routes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, peer)) = listener.accept().await else {
                    continue;
                };
                let backend = {
                    let list = b.read().expect("backends lock");
                    if list.is_empty() {
                        None
                    } else {
                        Some(list[rr.fetch_add(1, Ordering::Relaxed) % list.len()])
                    }
                };
                if let Some(b) = backend {
                    r.lock().expect("routes lock").insert(peer.port(), b);
                }
                tokio::spawn(forward(client, backend));
            }
        });
        Ok(Service {
            addr,
            backends,
            routes,
            task,
        })
    }

    pub fn apply(&self, endpoints: &[Endpoint]) {
        *self.backends.write().expect("backends lock") = endpoints.iter().map(|e| e.addr).collect();
    }

    pub fn routes(&self) -> HashMap<u16, SocketAddr> {
        self.routes.lock().expect("routes lock").clone()
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

async fn forward(mut client: TcpStream, backend: Option<SocketAddr>) {
    let _ = client.set_nodelay(true);
    let Some(backend) = backend else {
        return reset(client);
    };
    let mut upstream =
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(backend)).await {
            Ok(Ok(s)) => s,
            _ => return reset(client),
        };
    let _ = upstream.set_nodelay(true);
    if tokio::io::copy_bidirectional(&mut client, &mut upstream)
        .await
        .is_err()
    {
        // One side reset: pass the reset on rather than a polite close.
        reset(client);
        reset(upstream);
    }
}
