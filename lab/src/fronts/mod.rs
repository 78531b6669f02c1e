//! The fronts a request crosses before it reaches a pod, as in a cluster.
//!
//! - `service`: an L4 balancer like kube-proxy (ours, in-process);
//! - `ingress`: a real nginx, reconfigured and reloaded on every endpoint change, as an
//!   ingress controller does;
//! - `router`: a real HAProxy, updated through its runtime API, as the OpenShift router is;
//! - `headless`: no front, the client balances over the endpoints itself (gRPC only);
//!
//! and how late each learns an endpoint change ([`propagation`]).

pub mod haproxy;
pub mod headless;
pub mod nginx;
pub mod propagation;
pub mod service;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cluster::Endpoint;
use crate::measure::{LoadKind, Target};
use crate::scale::Scale;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FrontKind {
    Service,
    Ingress,
    Router,
    /// A headless Service: the client (gRPC) balances over the pod addresses itself.
    Headless,
}

impl FrontKind {
    /// Every front there is.
    pub const EVERY: [FrontKind; 4] = [
        FrontKind::Service,
        FrontKind::Ingress,
        FrontKind::Router,
        FrontKind::Headless,
    ];

    /// The fronts a load runs through when none are asked for.
    pub fn defaults_for(load: LoadKind) -> Vec<FrontKind> {
        FrontKind::EVERY
            .into_iter()
            .filter(|f| f.carries(load).is_ok())
            .collect()
    }

    /// Whether this front can carry `load`, and if not, why.
    pub fn carries(self, load: LoadKind) -> std::result::Result<(), &'static str> {
        match (self, load) {
            (FrontKind::Headless, LoadKind::GrpcUnary | LoadKind::GrpcStream) => Ok(()),
            (FrontKind::Headless, _) => Err(
                "only a gRPC client balances over the endpoints itself; this load needs an address",
            ),
            (FrontKind::Ingress | FrontKind::Router, LoadKind::GrpcUnary | LoadKind::GrpcStream) => Err(
                "the lab's nginx and HAProxy speak HTTP/1.1 to the pods (gRPC needs nginx's grpc_pass or HAProxy's `proto h2`, not modelled)",
            ),
            _ => Ok(()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FrontKind::Service => "service",
            FrontKind::Ingress => "ingress",
            FrontKind::Router => "router",
            FrontKind::Headless => "headless",
        }
    }

    /// The external program this front needs, if any.
    pub fn program(self) -> Option<&'static str> {
        match self {
            FrontKind::Service => None,
            FrontKind::Ingress => Some("nginx"),
            FrontKind::Router => Some("haproxy"),
            FrontKind::Headless => None,
        }
    }
}

/// Finds a program on PATH or in the sbin directories Debian installs daemons to (which are
/// not on a non-root user's PATH).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/usr/local/sbin", "/sbin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub enum Front {
    Service(service::Service),
    Nginx(nginx::Nginx),
    Haproxy(haproxy::Haproxy),
    Headless(headless::Headless),
}

impl Front {
    pub async fn start(
        kind: FrontKind,
        addr: SocketAddr,
        dir: &Path,
        scale: Scale,
    ) -> Result<Front> {
        Ok(match kind {
            FrontKind::Service => Front::Service(service::Service::start(addr).await?),
            FrontKind::Ingress => Front::Nginx(nginx::Nginx::start(addr, dir, scale).await?),
            FrontKind::Router => Front::Haproxy(haproxy::Haproxy::start(addr, dir, scale).await?),
            FrontKind::Headless => Front::Headless(headless::Headless::start(addr)),
        })
    }

    pub fn kind(&self) -> FrontKind {
        match self {
            Front::Service(_) => FrontKind::Service,
            Front::Nginx(_) => FrontKind::Ingress,
            Front::Haproxy(_) => FrontKind::Router,
            Front::Headless(_) => FrontKind::Headless,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Front::Service(f) => f.addr,
            Front::Nginx(f) => f.addr,
            Front::Haproxy(f) => f.addr,
            Front::Headless(f) => f.addr,
        }
    }

    /// Where a load sends: the front's address, or the headless front's endpoint view.
    pub fn target(&self) -> Target {
        match self {
            Front::Headless(f) => Target::Endpoints(f.resolver()),
            _ => Target::Addr(self.addr()),
        }
    }

    /// Client port -> backend, for the fronts that keep such a log (the L4 service).
    pub fn routes(&self) -> Option<std::collections::HashMap<u16, SocketAddr>> {
        match self {
            Front::Service(f) => Some(f.routes()),
            _ => None,
        }
    }

    /// The request ids the front handled (read from its access log), for the fronts that log
    /// them (nginx).
    pub fn handled_ids(&self) -> Option<std::collections::HashSet<u64>> {
        match self {
            Front::Nginx(f) => Some(f.handled_ids()),
            _ => None,
        }
    }

    pub async fn apply(&self, endpoints: &[Endpoint]) -> Result<()> {
        match self {
            Front::Service(f) => {
                f.apply(endpoints);
                Ok(())
            }
            Front::Nginx(f) => f.apply(endpoints).await,
            Front::Haproxy(f) => f.apply(endpoints).await,
            Front::Headless(f) => {
                f.apply(endpoints);
                Ok(())
            }
        }
    }

    pub async fn stop(&self) {
        match self {
            Front::Service(f) => f.stop(),
            Front::Nginx(f) => f.stop().await,
            Front::Haproxy(f) => f.stop().await,
            Front::Headless(_) => {}
        }
    }
}

/// Waits until something accepts TCP connections on `addr`, or the deadline passes.
pub async fn wait_listening(addr: SocketAddr, timeout: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}
