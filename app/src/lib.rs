//! slowapp's gRPC contract, as a library: the `slowapp.v1` messages and the generated `Slow`
//! client and server, so tests, the lab and the benchmark speak to slowapp with the very types it
//! serves. The app itself is the `slowapp` binary (`src/main.rs`).

#![forbid(unsafe_code)]

pub mod proto;
