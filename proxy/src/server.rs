//! Wires the parts together on one tokio runtime and decides when the process exits.
//!
//! pingora-core's own `Server` closes its listeners at SIGTERM and then sleeps a fixed grace
//! period: the behaviour lameduck exists to replace. So the data plane runs its own accept loop
//! in our runtime, and only closes the listener when the drain begins.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::admin::Admin;
use crate::config::RunArgs;
use crate::data_plane::{ConnTracker, Controls, DataPlane};
use crate::metrics::Metrics;
use crate::phase::{Lifecycle, Phase, Window};
use crate::shutdown::{self, Switches};
use crate::upstream;
use crate::upstream_pool::UpstreamPool;

/// Exit code when a second signal ends the process before it drained.
const EXIT_FORCED: u8 = 1;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // One thread (the default) is a current-thread runtime: no work-stealing machinery, and a
    // woken task runs on the thread that polled the socket. More threads share the work.
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads as usize);
        b
    };
    let runtime = builder
        .thread_name("lameduck")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

/// Binds a listener ourselves, so that a taken port is a clear error and not a panic inside
/// pingora, and so that `:0` works (tests, the lab).
fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<StdTcpListener> {
    let listener =
        StdTcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} ({what})"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

async fn serve(args: RunArgs) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(Metrics::new().context("cannot register metrics")?);
    let lc = Lifecycle::new(metrics);

    // Signals first: a SIGTERM during start-up must not kill us with the default action.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let data = tokio::net::TcpListener::from_std(bind(args.listen, "data plane, --listen")?)?;
    let data_addr = data.local_addr()?;
    let admin_listener =
        tokio::net::TcpListener::from_std(bind(args.admin_listen, "admin plane, --admin-listen")?)?;
    let admin_addr = admin_listener.local_addr()?;

    let (lame_tx, lame_rx) = watch::channel(false);
    let (accept_tx, accept_rx) = watch::channel(false);
    let (cut_tx, cut_rx) = watch::channel(false);
    let conns = ConnTracker::new(lc.clone());
    tokio::spawn(crate::memory::trim_after_bursts(conns.watch()));

    let pool = Arc::new(UpstreamPool::new(
        args.upstream,
        args.upstream_connect_timeout,
        lc.metrics.upstream_connections_opened.clone(),
    ));
    tokio::spawn({
        let pool = pool.clone();
        async move { pool.reap().await }
    });
    let data_plane = Arc::new(DataPlane::new(
        &args,
        lc.clone(),
        Controls {
            lame_duck: lame_rx,
            stop_accepting: accept_rx,
            cut: cut_rx,
        },
        conns.clone(),
        pool,
    ));
    let data_plane = tokio::spawn(data_plane.accept_loop(data));

    let admin = Admin::new(
        lc.clone(),
        args.readiness_on_shutdown,
        args.upstream,
        args.app_probe.clone(),
    );
    tokio::spawn(admin.clone().serve(admin_listener));
    tokio::spawn(upstream::probe_loop(
        lc.clone(),
        args.upstream,
        args.app_probe.clone(),
        args.app_probe_interval,
        args.app_probe_timeout,
    ));
    let window = Window {
        delay: args.shutdown_delay,
        quiet: args.shutdown_quiet,
        max: args.shutdown_delay_max,
    };
    tokio::spawn(shutdown::drive(
        lc.clone(),
        window,
        args.drain_timeout,
        Switches {
            lame_duck: lame_tx,
            accept: accept_tx,
            cut: cut_tx,
        },
        conns,
    ));

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %data_addr,
        admin = %admin_addr,
        upstream = %args.upstream,
        app_probe = %args.app_probe,
        shutdown_delay_ms = args.shutdown_delay.as_millis() as u64,
        shutdown_quiet_ms = args.shutdown_quiet.as_millis() as u64,
        shutdown_delay_max_ms = args.shutdown_delay_max.as_millis() as u64,
        drain_timeout_ms = args.drain_timeout.as_millis() as u64,
        "lameduck started"
    );

    // Exit once drained *and* signalled: drained early by a preStop /drain (native sidecar),
    // lameduck stays up until its own SIGTERM, then leaves at once.
    let mut signals = 0u32;
    let mut drained = std::pin::pin!(lc.reached(Phase::Drained));
    let mut is_drained = false;
    loop {
        let name = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
            _ = &mut drained, if !is_drained => {
                is_drained = true;
                if signals > 0 { break } else { continue }
            }
        };
        signals += 1;
        if signals > 1 && !is_drained {
            tracing::warn!(
                signal = name,
                phase = lc.phase().as_str(),
                in_flight = lc.metrics.in_flight.get(),
                "second signal: exiting now, without finishing the drain"
            );
            summary(&lc);
            return Ok(ExitCode::from(EXIT_FORCED));
        }
        if !lc.begin_shutdown(name) {
            tracing::info!(
                signal = name,
                phase = lc.phase().as_str(),
                "signal received; shutdown already under way"
            );
        }
        if is_drained {
            break;
        }
    }
    // Every /drain caller gets its answer before the process goes away.
    let _ = tokio::time::timeout(Duration::from_secs(2), admin.drain_waiters_answered()).await;
    data_plane.abort();
    summary(&lc);
    Ok(ExitCode::SUCCESS)
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
