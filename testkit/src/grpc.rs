//! gRPC over h2c for the tests that call slowapp or lameduck with a real tonic client (the
//! `grpc` feature): a small runtime to drive a test's calls from a plain `#[test]`, and a
//! channel to an address.

use std::net::SocketAddr;

use tonic::transport::Channel;

/// A two-thread runtime: the tests drive their calls with `runtime().block_on(...)`, so the
/// blocking helpers (process logs, metrics scrapes) stay usable around them.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a test runtime")
}

/// A connected h2c (prior knowledge) channel to `addr`; panics naming the address when it
/// cannot connect.
pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("an http:// URI")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("h2c connection to {addr}: {e}"))
}
