//! The webhook's two listeners and its shutdown: HTTPS for the API server, plain HTTP for the
//! kubelet and Prometheus; SIGTERM fails `/ready`, keeps serving for the shutdown delay, then
//! drains.

use std::convert::Infallible;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::TlsAcceptor;

use super::admission::{self, OptIn, Verdict};
use super::tls::CertFiles;
use super::ServeArgs;
use crate::inject::settings::InjectOptions;

/// The API server sends a Pod, rarely more than a few hundred KiB; anything past this is not a
/// review.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// A TLS handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Exit code when a second signal ends the process before it drained.
const EXIT_INTERRUPTED: u8 = 1;

/// What the webhook counts.
struct Metrics {
    registry: Registry,
    reviews: IntCounterVec,
    tls_reloads: IntCounterVec,
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let reviews = IntCounterVec::new(
            Opts::new(
                "lameduck_webhook_reviews_total",
                "AdmissionReviews answered, by outcome (injected, already_injected, \
                 not_opted_in, skipped, unchanged, error; malformed: answered 400)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "lameduck_webhook_tls_reloads_total",
                "Changes of the certificate files: loaded (ok) or rejected, the old pair kept \
                 (error)",
            ),
            &["result"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(reviews.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(tls_reloads.clone()))
            .expect("unique metric");
        // Every series exists from the start, at 0: a rate() or an alert has something to see.
        for v in Verdict::ALL {
            reviews.with_label_values(&[v.label()]);
        }
        reviews.with_label_values(&["malformed"]);
        tls_reloads.with_label_values(&["ok"]);
        tls_reloads.with_label_values(&["error"]);
        Metrics {
            registry,
            reviews,
            tls_reloads,
        }
    }

    fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        out
    }
}

struct State {
    inject: InjectOptions,
    metrics: Metrics,
    /// False from the shutdown signal on: `/ready` then answers 503.
    serving: AtomicBool,
}

type Resp = Response<Full<Bytes>>;

pub fn run(args: &ServeArgs, cert: &Path, key: &Path) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args.clone(), cert, key))
}

async fn serve(args: ServeArgs, cert: &Path, key: &Path) -> Result<ExitCode> {
    let certs = CertFiles::load(cert, key)?;
    let acceptor = TlsAcceptor::from(Arc::new(certs.server_config()?));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on --listen {}", args.listen))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on --admin-listen {}", args.admin_listen))?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let state = Arc::new(State {
        inject: args.inject.clone(),
        metrics: Metrics::new(),
        serving: AtomicBool::new(true),
    });
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin.local_addr()?,
        image = %args.inject.image,
        "lameduck webhook started"
    );
    tokio::spawn(reload_loop(
        certs.clone(),
        args.tls_reload_interval,
        state.clone(),
    ));
    tokio::spawn(serve_admin(admin, state.clone()));

    let graceful = GracefulShutdown::new();
    let mut signalled: Option<tokio::time::Instant> = None;
    loop {
        let delay_over = async {
            match signalled {
                Some(at) => tokio::time::sleep_until(at + args.shutdown_delay).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            tcp = accept(&listener, "accept failed") => {
                tokio::spawn(serve_tls(tcp, acceptor.clone(), state.clone(), graceful.watcher()));
            }
            _ = delay_over => break,
            name = next_signal(&mut sigterm, &mut sigint) => {
                if signalled.is_some() {
                    tracing::warn!(signal = name, "second signal: exiting now, without draining");
                    return Ok(ExitCode::from(EXIT_INTERRUPTED));
                }
                state.serving.store(false, Ordering::Release);
                tracing::info!(
                    signal = name,
                    shutdown_delay_ms = args.shutdown_delay.as_millis() as u64,
                    "shutting down: /ready fails, still serving until the delay is over"
                );
                signalled = Some(tokio::time::Instant::now());
            }
        }
    }
    drop(listener);
    drain(graceful, args.drain_timeout, &mut sigterm, &mut sigint).await
}

/// The next accepted connection; a failed accept (EMFILE) is logged and retried after a pause,
/// not in a tight loop.
async fn accept(listener: &TcpListener, what: &'static str) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => return tcp,
            Err(e) => {
                tracing::warn!(error = %e, "{what}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One API-server connection: the TLS handshake (bounded), then HTTP/1.1 or HTTP/2 until it
/// ends or the drain closes it.
async fn serve_tls(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(req, &state).await) }
    });
    let conn = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), svc)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "webhook connection error");
    }
}

/// After the listener closed: waits for the open connections, at most the drain timeout; a
/// second signal ends it at once.
async fn drain(
    graceful: GracefulShutdown,
    timeout: Duration,
    sigterm: &mut tokio::signal::unix::Signal,
    sigint: &mut tokio::signal::unix::Signal,
) -> Result<ExitCode> {
    let open = graceful.count();
    tracing::info!(open_connections = open, "listener closed, draining");
    tokio::select! {
        _ = graceful.shutdown() => {
            tracing::info!("drained, exiting");
            Ok(ExitCode::SUCCESS)
        }
        _ = tokio::time::sleep(timeout) => {
            tracing::warn!("drain timeout: exiting with connections still open");
            Ok(ExitCode::SUCCESS)
        }
        name = next_signal(sigterm, sigint) => {
            tracing::warn!(signal = name, "second signal: exiting now, without finishing the drain");
            Ok(ExitCode::from(EXIT_INTERRUPTED))
        }
    }
}

async fn next_signal(
    sigterm: &mut tokio::signal::unix::Signal,
    sigint: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    }
}

async fn reload_loop(certs: Arc<CertFiles>, every: Duration, state: Arc<State>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut failing = false;
    loop {
        tick.tick().await;
        match certs.reload() {
            Ok(false) => failing = false,
            Ok(true) => {
                failing = false;
                state.metrics.tls_reloads.with_label_values(&["ok"]).inc();
                tracing::info!("certificate files changed: new certificate loaded");
            }
            Err(e) => {
                // Counted once per bad change, not once per tick.
                if !failing {
                    state
                        .metrics
                        .tls_reloads
                        .with_label_values(&["error"])
                        .inc();
                    tracing::warn!(error = %format!("{e:#}"), "certificate files changed but cannot be served: keeping the old certificate");
                }
                failing = true;
            }
        }
    }
}

/// The HTTPS side: the two review paths.
async fn route(req: Request<Incoming>, state: &State) -> Resp {
    let opt_in = match req.uri().path() {
        "/mutate" => OptIn::Namespace,
        "/mutate/opt-in" => OptIn::PodAnnotation,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "not found: lameduck webhook serves POST /mutate and POST /mutate/opt-in\n",
            )
        }
    };
    if req.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: POST a review\n",
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            state
                .metrics
                .reviews
                .with_label_values(&["malformed"])
                .inc();
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("cannot read the body: {e}\n"),
            );
        }
    };
    match admission::review(&body, opt_in, &state.inject) {
        Ok((answer, verdict)) => {
            state
                .metrics
                .reviews
                .with_label_values(&[verdict.label()])
                .inc();
            let uid = answer["response"]["uid"].as_str().unwrap_or("");
            tracing::info!(uid, outcome = verdict.label(), "review answered");
            Response::builder()
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(
                    serde_json::to_vec(&answer).expect("a Value serialises"),
                )))
                .expect("static response")
        }
        Err(e) => {
            state
                .metrics
                .reviews
                .with_label_values(&["malformed"])
                .inc();
            tracing::warn!(error = %e, "malformed review");
            text(
                StatusCode::BAD_REQUEST,
                &format!("bad AdmissionReview: {e}\n"),
            )
        }
    }
}

/// The plain-HTTP side: /ready /live /metrics.
async fn serve_admin(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = accept(&listener, "admin accept failed").await;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(admin_route(&req, &state)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn admin_route(req: &Request<Incoming>, state: &State) -> Resp {
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/ready") => {
            if state.serving.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            }
        }
        (&Method::GET | &Method::HEAD, "/live") => text(StatusCode::OK, "live\n"),
        (&Method::GET, "/metrics") => Response::builder()
            .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(state.metrics.render())))
            .expect("static response"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: the webhook's admin port serves /ready /live /metrics\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response")
}
