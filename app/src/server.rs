//! The server's life: the startup delay, the accept loop, and the graceful shutdown.
//!
//! The shutdown is Go's `http.Server.Shutdown(ctx)`, which the seed relies on, rebuilt from
//! hyper-util parts: the listener is closed at once (new connections are refused), every open
//! connection is told to finish ([`GracefulShutdown`]: idle HTTP/1.1 connections close, busy ones
//! close after their response, HTTP/2 ones get GOAWAY), and whatever still runs at the deadline
//! is cut. Either way the process then exits 0, as the seed does.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{Either, Full};
use humantime::format_duration;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tonic::codegen::Service;
use tonic::service::Routes;

use crate::config::Config;
use crate::grpc::{self, Tracked};
use crate::handler::{App, InFlight};
use crate::respond::SERVED_BY;
use crate::shutdown::Signal;

/// Either the HTTP app's answer or a gRPC one.
type AnyBody = Either<Full<Bytes>, Tracked<tonic::body::Body>>;

/// One request: gRPC (by `content-type`) to the tonic services, the rest to the HTTP app. Both
/// stamp `X-Served-By` (a response header, which gRPC clients see as metadata).
async fn route(
    app: Arc<App>,
    mut grpc: Routes,
    req: Request<Incoming>,
) -> Result<Response<AnyBody>, Infallible> {
    if !grpc::is_grpc(grpc::content_type(&req)) {
        let response = app.handle(req).await?;
        return Ok(response.map(Either::Left));
    }
    let guard = InFlight::enter(app.stats());
    let mut response = match grpc.call(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response
        .headers_mut()
        .insert(SERVED_BY.clone(), app.served_by().clone());
    Ok(response.map(|body| Either::Right(Tracked::new(body, guard))))
}

/// How a run ended, for the summary line at exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Requests answered.
    pub completed: u64,
    /// Requests still running at the shutdown deadline, cut when the process exits.
    pub cut: usize,
}

/// Runs slowapp until `shutdown` resolves and the drain is over.
///
/// `shutdown` is awaited during the startup delay too: a signal then ends the run before it binds.
pub async fn run(
    config: &Config,
    shutdown: impl Future<Output = Signal>,
) -> anyhow::Result<Report> {
    tokio::pin!(shutdown);
    let app = Arc::new(App::new(config.served_by(), config.response_delay));

    if !wait_startup_delay(config, shutdown.as_mut()).await {
        return Ok(Report {
            completed: 0,
            cut: 0,
        });
    }

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    tracing::info!(%addr, name = ?app.served_by(), "Start server");

    let grpc = grpc::services(app.served_by(), app.response_delay()).await;
    let graceful = GracefulShutdown::new();
    let signal = accept_until(&listener, shutdown.as_mut(), &app, &grpc.routes, &graceful).await;
    grpc.not_serving().await;

    // Closing the listener is what makes new connections be refused, like Go's Shutdown does
    // first. (lameduck exists because this is too early while a Service still routes here.)
    drop(listener);
    tracing::info!(
        signal = signal.name(),
        in_flight = app.stats().in_flight(),
        open_conns = graceful.count(),
        websockets = app.websockets().count(),
        "stopped accepting; draining for up to {}",
        format_duration(config.shutdown_timeout)
    );

    let report = drain(config, &app, graceful).await;
    // Upgraded connections are not hyper's any more: nothing waits for them or closes them, so
    // they end with the process, without a Close frame, as in an app with no help at shutdown.
    let websockets = app.websockets().count();
    if websockets > 0 {
        tracing::warn!(
            websockets,
            "{websockets} WebSocket connection(s) end with the process, without a Close frame"
        );
    }
    Ok(report)
}

/// Waits `--startup-delay` before binding (a slow-starting app). Returns false when a signal
/// came first: the run ends without serving.
async fn wait_startup_delay<S>(config: &Config, shutdown: Pin<&mut S>) -> bool
where
    S: Future<Output = Signal>,
{
    if config.startup_delay.is_zero() {
        return true;
    }
    tracing::info!(listen = %config.listen, "waiting {} before binding", format_duration(config.startup_delay));
    tokio::select! {
        _ = tokio::time::sleep(config.startup_delay) => true,
        signal = shutdown => {
            tracing::info!(signal = signal.name(), "shutdown signal during the startup delay: exiting without serving");
            false
        }
    }
}

/// Lets the connections finish for up to `--shutdown-timeout`; what still runs then is cut.
async fn drain(config: &Config, app: &App, graceful: GracefulShutdown) -> Report {
    match tokio::time::timeout(config.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => {
            let report = Report {
                completed: app.stats().completed(),
                cut: 0,
            };
            tracing::info!(
                completed = report.completed,
                cut = report.cut,
                "Graceful shutdown done"
            );
            report
        }
        Err(_) => {
            let report = Report {
                completed: app.stats().completed(),
                cut: app.stats().in_flight(),
            };
            tracing::warn!(
                completed = report.completed,
                cut = report.cut,
                "shutdown timeout reached: cutting {} in-flight request(s)",
                report.cut
            );
            report
        }
    }
}

/// Accepts connections and serves each on its own task until the shutdown signal.
async fn accept_until<S>(
    listener: &TcpListener,
    mut shutdown: Pin<&mut S>,
    app: &Arc<App>,
    grpc: &Routes,
    graceful: &GracefulShutdown,
) -> Signal
where
    S: Future<Output = Signal>,
{
    // One builder for every connection: it detects HTTP/1.1 or prior-knowledge HTTP/2 (h2c).
    // The timers enable hyper's header-read timeout, so a silent client cannot hold a
    // connection open across the shutdown.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());

    loop {
        tokio::select! {
            signal = shutdown.as_mut() => return signal,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let app = Arc::clone(app);
                    let grpc = grpc.clone();
                    let service = service_fn(move |req| route(Arc::clone(&app), grpc.clone(), req));
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
