//! Wires the parts together on one tokio runtime; the shutdown driver, run on this task, decides
//! when it ends (see [`crate::lifecycle`]).
//!
//! pingora-core's own `Server` closes its listeners at SIGTERM and then sleeps a fixed grace
//! period: the behaviour lameduck exists to replace. So the data plane runs its own accept loop
//! in our runtime, and only closes the listener when the drain begins.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::admin::Admin;
use crate::config::Config;
use crate::data_plane::DataPlane;
use crate::lifecycle::driver::{self, Signal};
use crate::lifecycle::{Lifecycle, Outcome, Timings};
use crate::metrics::Metrics;
use crate::upstream;
use crate::upstream_pool::UpstreamPool;

/// The two listening sockets, bound by the caller (so that `:0` works and a taken port is the
/// caller's clear error, not a panic inside pingora).
pub struct Listeners {
    pub data: StdTcpListener,
    pub admin: StdTcpListener,
}

impl Listeners {
    /// Binds `--listen` and `--admin-listen`.
    pub fn bind(config: &Config) -> anyhow::Result<Listeners> {
        Ok(Listeners {
            data: bind(config.data_plane.listen, "data plane, --listen")?,
            admin: bind(config.admin.listen, "admin plane, --admin-listen")?,
        })
    }
}

/// The binary's whole run: its runtime, its listeners, the OS signals, then [`run`].
pub fn start(config: Config) -> anyhow::Result<Outcome> {
    let threads = config.runtime.threads;
    // One thread (the default) is a current-thread runtime: no work-stealing machinery, and a
    // woken task runs on the thread that polled the socket. More threads share the work.
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads as usize);
        b
    };
    let runtime = builder
        .thread_name("lameduck")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Signals first: a SIGTERM during start-up must not kill us with the default action.
        let signals = os_signals()?;
        let listeners = Listeners::bind(&config)?;
        run(config, listeners, signals).await
    })
}

/// SIGTERM and SIGINT as a channel of [`Signal`]s.
fn os_signals() -> anyhow::Result<mpsc::Receiver<Signal>> {
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let s = tokio::select! {
                _ = sigterm.recv() => Signal::Term,
                _ = sigint.recv() => Signal::Int,
            };
            if tx.send(s).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<StdTcpListener> {
    let listener =
        StdTcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} ({what})"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Runs lameduck until it has drained and been signalled, or a second signal forces it out.
/// A closed `signals` channel means no more signals will come (a `/drain` still works).
pub async fn run(
    config: Config,
    listeners: Listeners,
    signals: mpsc::Receiver<Signal>,
) -> anyhow::Result<Outcome> {
    let metrics = Arc::new(Metrics::new().context("cannot register metrics")?);
    let lc = Lifecycle::new(metrics.shutdown.clone());

    let data = tokio::net::TcpListener::from_std(listeners.data)?;
    let data_addr = data.local_addr()?;
    let admin_listener = tokio::net::TcpListener::from_std(listeners.admin)?;
    let admin_addr = admin_listener.local_addr()?;

    let Config {
        data_plane: data_config,
        admin: admin_config,
        probe: probe_config,
        shutdown: shutdown_config,
        runtime: _,
    } = config;
    let pool = Arc::new(UpstreamPool::new(
        data_config.upstream,
        data_config.upstream_connect_timeout,
        metrics.data_plane.upstream_connections_opened.clone(),
    ));
    tokio::spawn({
        let pool = pool.clone();
        async move { pool.reap().await }
    });
    let data_plane = Arc::new(DataPlane::new(
        &data_config,
        lc.clone(),
        metrics.data_plane.clone(),
        pool,
    ));
    tokio::spawn(crate::memory::trim_after_bursts(
        lc.drain.clone(),
        data_plane.high_water(),
    ));
    let data_plane = tokio::spawn(data_plane.accept_loop(data));

    let admin = Admin::new(lc.clone(), metrics, admin_config);
    tokio::spawn(admin.clone().serve(admin_listener));
    let probe = tokio::spawn(upstream::probe_loop(lc.clone(), probe_config.clone()));
    let timings = Timings::from(shutdown_config);

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %data_addr,
        admin = %admin_addr,
        upstream = %data_config.upstream,
        app_probe = %probe_config.probe,
        shutdown_delay_ms = shutdown_config.delay.as_millis() as u64,
        shutdown_quiet_ms = shutdown_config.quiet.as_millis() as u64,
        shutdown_delay_max_ms = shutdown_config.delay_max.as_millis() as u64,
        drain_timeout_ms = shutdown_config.drain_timeout.as_millis() as u64,
        "lameduck started"
    );

    // This task is the driver: the shutdown runs here, to the end.
    let outcome = driver::drive(lc.clone(), timings, signals).await;
    if outcome == Outcome::Drained {
        // Every /drain caller gets its answer before the process goes away.
        let _ = tokio::time::timeout(Duration::from_secs(2), admin.drain_waiters_answered()).await;
    }
    data_plane.abort();
    probe.abort();
    summary(&lc);
    Ok(outcome)
}

/// The one line an operator reads after a rollout.
fn summary(lc: &Lifecycle) {
    let phases: Vec<String> = lc
        .phase_durations()
        .into_iter()
        .map(|(p, d)| format!("{}={}ms", p.as_str(), d.as_millis()))
        .collect();
    tracing::info!(
        phase_times = phases.join(" "),
        cause = lc.signal_cause(),
        since_signal_ms = lc.since_signal().map(|d| d.as_millis() as u64),
        requests_after_signal = lc.requests_after_signal(),
        last_request_after_signal_ms = lc.last_arrival().map(|d| d.as_millis() as u64),
        requests_cut = lc.requests_cut(),
        "lameduck exiting"
    );
}
