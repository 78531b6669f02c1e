//! The measuring instruments: the open-loop loads (HTTP/1.1 requests, gRPC calls, WebSocket
//! messages) and their clients, the record of every request and event (which the cluster model
//! and the fronts write into too), and the progress line. What is made of the record is
//! [`crate::report`]'s.

pub mod grpc;
pub mod httpc;
pub mod load;
pub mod progress;
pub mod record;
pub mod websocket;

use std::net::SocketAddr;

use tokio::sync::watch;

/// What the load sends; each unit (a request, a call, a message) is one [`record::RequestRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadKind {
    /// HTTP/1.1 requests: the keep-alive / connection-per-request, GET / POST, short / long mix.
    Http,
    /// gRPC unary calls (`slowapp.v1.Slow/Hello`) on a few long-lived HTTP/2 channels.
    GrpcUnary,
    /// gRPC server streams (`slowapp.v1.Slow/Count`, `--stream-messages` replies each).
    GrpcStream,
    /// WebSocket messages on a few long-lived connections (slowapp's `/ws` echo).
    Websocket,
}

impl LoadKind {
    pub fn name(self) -> &'static str {
        match self {
            LoadKind::Http => "http",
            LoadKind::GrpcUnary => "grpc-unary",
            LoadKind::GrpcStream => "grpc-stream",
            LoadKind::Websocket => "websocket",
        }
    }
}

/// The load's settings beyond the HTTP mix ([`load::LoadConfig`]).
#[derive(Debug, Clone)]
pub struct ProtocolLoad {
    pub kind: LoadKind,
    /// Long-lived connections (gRPC channels, WebSockets) the load spreads its units over.
    pub connections: usize,
    /// Replies per `Count` stream.
    pub stream_messages: u32,
}

/// Where the load goes: one address (a front), or the endpoints themselves as a client-side
/// balancer's resolver sees them (each change after the propagation lag).
#[derive(Debug, Clone)]
pub enum Target {
    Addr(SocketAddr),
    Endpoints(watch::Receiver<Vec<SocketAddr>>),
}
