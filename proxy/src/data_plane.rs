//! The data plane: every client connection, from accept to close, and how each request is
//! forwarded to the app.
//!
//! Two layers, each doing one job:
//! - [`DataPlane`] owns the *connection*. pingora's accept loop hands it each new TCP stream;
//!   it waits for a request while the connection is idle (and closes idle connections when the
//!   shutdown says so), detects HTTP/2 (h2c), counts connections for the drain, and cuts
//!   connections at the drain timeout.
//! - [`Forwarder`] owns the *request*: a pingora-proxy [`ProxyHttp`] that holds early requests
//!   until the app is ready, forwards to the one upstream, adds `Connection: close` once the
//!   shutdown has begun, turns failures into 502/503/504 responses that say what happened, and
//!   counts everything.
//!
//! pingora-proxy streams bodies both ways, handles upgrades (WebSocket), chunked encoding and
//! upstream keep-alive pooling; we only decide *when* and *where*.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, HttpProxy, ProxyHttp, Session};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::config::RunArgs;
use crate::metrics::UpstreamErrorKind;
use crate::phase::{Lifecycle, Phase};

/// The first bytes of every HTTP/2 prior-knowledge (h2c) connection (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Hop-by-hop headers (RFC 9110, 7.6.1): they describe one connection, so they are never
/// forwarded. `Connection` and `Upgrade` are kept on upgrade requests, which need them.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Signals the data plane receives from the shutdown driver.
#[derive(Clone)]
pub struct Controls {
    /// Becomes true when the lame-duck window opens: pingora then answers HTTP/1.1 with
    /// `Connection: close` and sends HTTP/2 GOAWAY.
    pub lame_duck: ShutdownWatch,
    /// Becomes true at the drain timeout: every connection still open is cut.
    pub cut: watch::Receiver<bool>,
}

/// Per-connection handling around pingora-proxy; see the module docs.
pub struct DataPlane {
    proxy: Arc<HttpProxy<Forwarder>>,
    lc: Arc<Lifecycle>,
    controls: Controls,
    conns: ConnTracker,
    idle_timeout: Duration,
    client_read_timeout: Duration,
}

impl DataPlane {
    pub fn new(args: &RunArgs, lc: Arc<Lifecycle>, controls: Controls, conns: ConnTracker) -> Self {
        let conf = Arc::new(pingora_core::server::configuration::ServerConf::default());
        let mut proxy = pingora_proxy::http_proxy(&conf, Forwarder::new(args, lc.clone()));
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy.server_options = Some(options);
        DataPlane {
            proxy: Arc::new(proxy),
            lc,
            controls,
            conns,
            idle_timeout: args.idle_timeout,
            client_read_timeout: args.client_read_timeout,
        }
    }

    /// Waits for the first bytes of the next request on an idle connection and puts them back.
    ///
    /// Returns `None` when the connection should close instead: the client closed it, it was
    /// idle too long, or the shutdown wants it gone: idle connections are closed when draining
    /// begins. Not earlier: closing an idle keep-alive connection races with a client sending
    /// on it at that instant (RFC 9112, 9.6), and a POST lost in that race cannot be retried.
    /// The rollout lab lost POSTs this way through all three fronts when idle connections were
    /// closed as the window opened. During the window every request on such a connection is
    /// answered with `Connection: close`, which moves it elsewhere with no race; by the end of
    /// the window (quiet period) the fronts have stopped sending here.
    async fn next_request(&self, mut stream: Stream, _reused: bool) -> Option<(Stream, Vec<u8>)> {
        let close_at = Phase::Draining;
        let mut phase = self.lc.subscribe();
        let mut buf = vec![0u8; H2_PREFACE.len()];
        let n = tokio::select! {
            read = stream.read(&mut buf) => read.ok()?,
            _ = phase.wait_for(|p| *p >= close_at) => {
                self.lc.metrics.idle_closed.inc();
                return None;
            }
            _ = tokio::time::sleep(self.idle_timeout) => return None,
        };
        if n == 0 {
            return None;
        }
        buf.truncate(n);
        // The preface may arrive in pieces: read on while what we have could still be one.
        while buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) {
            let mut more = [0u8; 24];
            let n = tokio::time::timeout(self.client_read_timeout, stream.read(&mut more))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&more[..n]);
        }
        Some((rewind(stream, &buf)?, buf))
    }

    async fn serve(self: &Arc<Self>, stream: Stream) {
        let lame = &self.controls.lame_duck;
        let Some((stream, first)) = self.next_request(stream, false).await else {
            return;
        };
        if first.starts_with(H2_PREFACE) {
            // HTTP/2: pingora runs the connection (every stream in its own task) and sends
            // GOAWAY when `lame` flips.
            ServerApp::process_new(&self.proxy, stream, lame).await;
            return;
        }
        let mut stream = stream;
        let mut settings = None;
        let mut reused = false;
        loop {
            if reused {
                let Some((s, _)) = self.next_request(stream, true).await else {
                    return;
                };
                stream = s;
            }
            let mut session = ServerSession::new_http1(stream);
            if let Some(s) = settings.take() {
                pingora_core::apps::HttpPersistentSettings::apply_to_session(s, &mut session);
            }
            // The keep-alive timeout doubles as pingora's per-read timeout while it reads the
            // request head: a client that trickles its headers (slowloris) is dropped. Between
            // requests `next_request` applies the longer idle timeout instead.
            let keepalive = if self.lc.phase().is_shutting_down() {
                None
            } else {
                Some(self.client_read_timeout.as_secs().max(1))
            };
            session.set_keepalive(keepalive);
            session.set_read_timeout(Some(self.client_read_timeout));

            let mut cut = self.controls.cut.clone();
            let reusable = tokio::select! {
                r = self.proxy.process_new_http(session, lame) => r,
                _ = cut.wait_for(|c| *c) => return,
            };
            let Some(reusable) = reusable else { return };
            let (s, persistent) = reusable.consume();
            stream = s;
            settings = persistent;
            reused = true;
        }
    }
}

/// Puts bytes already read back in front of the stream, so pingora parses the request whole.
fn rewind(stream: Stream, data: &[u8]) -> Option<Stream> {
    // The data plane only listens on TCP, whose streams are pingora's L4 stream.
    let mut l4 = stream.into_any().downcast::<L4Stream>().ok()?;
    l4.rewind(data);
    Some(l4)
}

#[async_trait]
impl ServerApp for DataPlane {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        _accept: &ShutdownWatch,
    ) -> Option<Stream> {
        let _conn = self.conns.open();
        let mut cut = self.controls.cut.clone();
        tokio::select! {
            _ = self.serve(stream) => {}
            _ = cut.wait_for(|c| *c) => {}
        }
        None
    }
}

/// Counts open client connections so the drain knows when the last one has closed.
#[derive(Clone)]
pub struct ConnTracker {
    count: watch::Sender<usize>,
    lc: Arc<Lifecycle>,
}

impl ConnTracker {
    pub fn new(lc: Arc<Lifecycle>) -> Self {
        ConnTracker {
            count: watch::channel(0).0,
            lc,
        }
    }

    fn open(&self) -> ConnGuard {
        self.count.send_modify(|c| *c += 1);
        self.lc.metrics.open_connections.inc();
        ConnGuard {
            tracker: self.clone(),
        }
    }

    /// Waits until no client connection is open.
    pub async fn all_closed(&self) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|c| *c == 0).await;
    }
}

struct ConnGuard {
    tracker: ConnTracker,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.tracker.count.send_modify(|c| *c -= 1);
        self.tracker.lc.metrics.open_connections.dec();
    }
}

/// Forwards each request to the app; see the module docs.
pub struct Forwarder {
    lc: Arc<Lifecycle>,
    peer: HttpPeer,
    upstream: SocketAddr,
    startup_hold: Duration,
}

impl Forwarder {
    fn new(args: &RunArgs, lc: Arc<Lifecycle>) -> Self {
        let mut peer = HttpPeer::new(args.upstream, false, String::new());
        peer.options.connection_timeout = Some(args.upstream_connect_timeout);
        peer.options.read_timeout = Some(args.upstream_timeout);
        peer.options.write_timeout = Some(args.upstream_timeout);
        // Below typical app keep-alive timeouts (Go's and hyper's default to none or 60s+), so
        // lameduck is the side that closes pooled connections.
        peer.options.idle_timeout = Some(Duration::from_secs(30));
        Forwarder {
            lc,
            peer,
            upstream: args.upstream,
            startup_hold: args.startup_hold,
        }
    }

    /// Holds a request that arrived before the app was ready. Returns whether it may proceed.
    async fn hold_until_ready(&self) -> bool {
        self.lc.metrics.requests_held.inc();
        let mut ready = self.lc.app_ready_rx();
        let ok = tokio::time::timeout(self.startup_hold, ready.wait_for(|r| *r))
            .await
            .is_ok();
        ok
    }
}

/// What lameduck knows about one request while pingora-proxy runs it.
pub struct RequestCtx {
    arrived: Instant,
    phase: Phase,
    upstream_error: Option<UpstreamErrorKind>,
    _in_flight: InFlight,
}

/// Keeps `lameduck_in_flight_requests` right even when a request is dropped half-way.
struct InFlight(Arc<Lifecycle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.in_flight.dec();
    }
}

fn classify(e: &Error) -> Option<UpstreamErrorKind> {
    use ErrorType::*;
    let kind = match e.etype() {
        ConnectRefused => UpstreamErrorKind::ConnectRefused,
        ConnectTimedout => UpstreamErrorKind::ConnectTimeout,
        ConnectNoRoute | ConnectError | SocketError | BindError => UpstreamErrorKind::ConnectError,
        _ if e.esource() != &ErrorSource::Upstream => return None,
        ReadTimedout | WriteTimedout => UpstreamErrorKind::Timeout,
        ConnectionClosed | ReadError | WriteError => UpstreamErrorKind::Closed,
        _ => UpstreamErrorKind::Protocol,
    };
    Some(kind)
}

#[async_trait]
impl ProxyHttp for Forwarder {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        self.lc.metrics.in_flight.inc();
        RequestCtx {
            arrived: Instant::now(),
            phase: self.lc.phase(),
            upstream_error: None,
            _in_flight: InFlight(self.lc.clone()),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        self.lc.note_arrival();
        if ctx.phase == Phase::Starting && !self.lc.app_ready() && !self.hold_until_ready().await {
            self.lc.metrics.held_timeouts.inc();
            let body = format!(
                "lameduck: the app at {} is not ready yet (held this request {}); retry shortly\n",
                self.upstream,
                crate::config::fmt_duration(self.startup_hold)
            );
            respond(session, 503, &body).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // Only ever the configured upstream: an absolute-form request URI cannot make lameduck
        // connect anywhere else.
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        let upgrade = session.is_upgrade_req();
        // Headers named in `Connection` are hop-by-hop too.
        let named: Vec<String> = req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        for name in named.iter().map(String::as_str).chain(HOP_BY_HOP) {
            if upgrade && (name == "connection" || name == "upgrade") {
                continue;
            }
            req.remove_header(name);
        }
        // Absolute-form (`GET http://host/path`): forward origin-form, the authority as Host.
        // (pingora has already refused a Host that contradicts the authority.)
        let raw = req.raw_path();
        if !raw.starts_with(b"/") && raw != b"*" {
            let bad = || Error::explain(ErrorType::InvalidHTTPHeader, "unparsable request target");
            let target: http::Uri = std::str::from_utf8(raw)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(bad)?;
            let path = target.path_and_query().map_or("/", |p| p.as_str());
            req.set_uri(path.parse().map_err(|_| bad())?);
            if let Some(authority) = target.authority() {
                req.insert_header(http::header::HOST, authority.as_str())?;
            }
        }
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            let ip = client.ip().to_string();
            let xff = match req
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip,
            };
            req.insert_header("x-forwarded-for", xff)?;
        }
        // Keep what an ingress in front already said (it terminated TLS); else we saw plain HTTP.
        if !req.headers.contains_key("x-forwarded-proto") {
            req.insert_header("x-forwarded-proto", "http")?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        resp.remove_header("keep-alive");
        resp.remove_header("proxy-connection");
        if self.lc.phase().is_shutting_down() {
            // HTTP/1.1: pingora writes `Connection: close` and closes after the response, so
            // the client's next request opens a connection that the fronts route elsewhere.
            session.set_keepalive(None);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.upstream_error = classify(&e);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        ctx.upstream_error = classify(&e);
        let mut e = e.more_context(format!("upstream {peer}"));
        // pingora's default policy: retry only idempotent requests, and only when a pooled
        // connection turned out to be closed by the app.
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let kind = ctx.upstream_error.or_else(|| classify(e));
        let (code, body) = match (kind, e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => (*code, String::new()),
            (Some(UpstreamErrorKind::ConnectRefused), _) => (
                502,
                format!("lameduck: the app at {} refused the connection (not listening: starting, restarting or gone)\n", self.upstream),
            ),
            (Some(UpstreamErrorKind::ConnectTimeout), _) => (
                504,
                format!("lameduck: connecting to the app at {} timed out\n", self.upstream),
            ),
            (Some(UpstreamErrorKind::Timeout), _) => (
                504,
                format!("lameduck: the app at {} did not answer in time\n", self.upstream),
            ),
            (Some(other), _) => (
                502,
                format!("lameduck: error talking to the app at {} ({})\n", self.upstream, other.as_str()),
            ),
            // The client's side: a broken connection gets nothing, anything else a 400.
            (None, ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed) => (0, String::new()),
            (None, ErrorType::ReadTimedout) => (408, "lameduck: timed out reading the request\n".into()),
            (None, _) if e.esource() == &ErrorSource::Downstream => (400, "lameduck: bad request\n".into()),
            (None, _) => (500, "lameduck: internal error\n".into()),
        };
        if let Some(kind) = kind {
            self.lc.metrics.upstream_error(kind);
            tracing::warn!(kind = kind.as_str(), status = code, upstream = %self.upstream, error = %e, "upstream error");
        }
        if code > 0 {
            if let Err(e) = respond(session, code, &body).await {
                tracing::debug!(error = %e, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map(|r| r.status.as_u16());
        self.lc
            .metrics
            .request_done(ctx.phase, status, ctx.arrived.elapsed());
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // fail_to_proxy logs upstream errors with their kind; client-side errors are routine.
        true
    }
}

/// Writes a small text response made by lameduck itself, closing the connection after it.
async fn respond(session: &mut Session, code: u16, body: &str) -> Result<()> {
    let mut resp = ResponseHeader::build(code, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    if matches!(code, 502 | 503) {
        resp.insert_header(http::header::RETRY_AFTER, "1")?;
    }
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
        .await?;
    session.finish_body().await
}
