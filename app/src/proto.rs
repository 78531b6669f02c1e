//! The `slowapp.v1` messages (see `proto/slow.proto`, which must agree on every field number) and
//! the generated `Slow` server and client (`build.rs`).
//!
//! Public so that tests, the lab and the benchmark drive slowapp with the same types it serves.

/// `Hello`: one answer after a delay, with an optional payload each way.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HelloRequest {
    /// Overrides `--response-delay` for this call, like `?delay_ms=` does for `/`.
    #[prost(uint64, optional, tag = "1")]
    pub delay_ms: Option<u64>,
    /// Counted into `received_bytes`, then dropped.
    #[prost(bytes = "bytes", tag = "2")]
    pub payload: ::bytes::Bytes,
    /// Size of the payload to send back.
    #[prost(uint64, tag = "3")]
    pub reply_bytes: u64,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
    /// The `--name` of the slowapp that answered (`x-served-by` for HTTP).
    #[prost(string, tag = "2")]
    pub served_by: String,
    /// 1-based position in a `Count` stream; 1 for `Hello`.
    #[prost(uint64, tag = "3")]
    pub seq: u64,
    #[prost(uint64, tag = "4")]
    pub received_bytes: u64,
    #[prost(bytes = "bytes", tag = "5")]
    pub payload: ::bytes::Bytes,
}

/// `Count`: a server stream of `count` replies, one per delay.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CountRequest {
    #[prost(uint32, tag = "1")]
    pub count: u32,
    #[prost(uint64, optional, tag = "2")]
    pub delay_ms: Option<u64>,
}

/// `Echo`: each message comes back as it arrives.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct EchoMessage {
    #[prost(bytes = "bytes", tag = "1")]
    pub payload: ::bytes::Bytes,
}

/// The generated server (`slow_server::SlowServer`, the `Slow` trait) and client
/// (`slow_client::SlowClient`).
pub mod slow {
    #![allow(clippy::all, missing_docs, unreachable_pub)]
    include!(concat!(env!("OUT_DIR"), "/slowapp.v1.Slow.rs"));
}

pub use slow::slow_client::SlowClient;
pub use slow::slow_server::{Slow, SlowServer};

/// The largest message slowapp (and the tests' clients) accept: above the 16 MiB messages the
/// proxy must carry, below anything that would make a test box swap.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
