//! lameduck as a library: [`run`] is the whole proxy, given its configuration, the listeners it
//! serves on (bound by the caller) and the signals it obeys (a channel the caller feeds).
//!
//! The binary ([`start`], called by `main.rs`) binds the configured addresses and forwards the
//! process's SIGTERM/SIGINT into that channel; in-process tests bind `127.0.0.1:0` themselves
//! and send signals as messages, on a paused clock.

// One audited exception: `memory` calls glibc's malloc_trim.
#![deny(unsafe_code)]

mod admin;
pub mod check;
pub mod cli;
pub mod config;
mod data_plane;
pub mod inject;
pub mod lifecycle;
pub mod logging;
mod manifest_input;
mod memory;
mod metrics;
pub mod phase;
mod server;
mod upstream;
mod upstream_h2;
mod upstream_pool;
pub mod webhook;

pub use lifecycle::driver::Signal;
pub use lifecycle::Outcome;
pub use server::{run, start, Listeners};
