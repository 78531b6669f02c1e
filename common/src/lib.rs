//! What the workspace's binaries share, so that they cannot drift apart: how a duration is
//! written on a command line, and how logs are set up.
//!
//! A crate of its own because the binaries share nothing else: slowapp must not pull in the
//! proxy (pingora) to parse `5s`, and the lab is a separate binary too.

#![forbid(unsafe_code)]

pub mod duration;
pub mod logging;
