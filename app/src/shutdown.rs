//! The shutdown signal: SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C at a terminal).
//!
//! The handlers are installed before the startup delay, not after it as in the seed, so a pod
//! deleted while still starting exits 0 at once instead of dying by the signal's default action.

use std::future::Future;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

/// Which signal asked for the shutdown, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
        }
    }
}

/// Installs the handlers now and returns a future that resolves on the first SIGTERM or SIGINT.
///
/// Installing is separate from waiting so that a signal arriving before anyone awaits is kept,
/// not lost. Later signals are ignored, as in the seed: the drain it started runs to its deadline.
pub fn install() -> anyhow::Result<impl Future<Output = Signal>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => Signal::Term,
            _ = int.recv() => Signal::Int,
        }
    })
}
