//! HTTP/2 clients whose requests go to the app as HTTP/2 (`--upstream-protocol auto|h2c`): gRPC.
//!
//! Each client connection is a hyper HTTP/2 server connection and each of its streams one
//! request on the app's pooled h2c connections ([`H2Upstream`]): headers, body frames and
//! trailers (`grpc-status`) pass through as they come, in both directions at once, and HTTP/2
//! flow control holds each side back to the other's pace (a body frame is taken from one side
//! only when the other has room for it).
//!
//! The shutdown, stream by stream, the way grpc-go and Envoy do it:
//! - **Lame-duck window opens**: GOAWAY with last stream id 2^31-1 and a PING; once the PING
//!   comes back, a second GOAWAY with the real last stream id (h2's `graceful_shutdown`). A
//!   client moves its new streams to another connection (a new one goes elsewhere, since
//!   `/ready` fails); streams already open run on. A connection opened during the window is
//!   told at once.
//! - **Drain timeout**: every stream still open ends visibly. A gRPC call gets trailers with
//!   `grpc-status: 14` (UNAVAILABLE) and a message saying it was cut, which every gRPC client
//!   reports as UNAVAILABLE and which its retry policy may retry (a RST_STREAM would not do
//!   here: REFUSED_STREAM maps to UNAVAILABLE but tells the client the call was *not*
//!   processed, so grpc-go retries it transparently, possibly running a non-idempotent call
//!   twice; CANCEL maps to CANCELLED, INTERNAL_ERROR to INTERNAL). Any other HTTP/2 request
//!   gets RST_STREAM(CANCEL), answered or not. They were in flight when the drain timed out,
//!   so `lameduck_requests_cut_total` counts them.
//!
//! When the app cannot be reached or fails a call, a gRPC client gets HTTP 200 with
//! `grpc-status: 14` and a `grpc-message` that says why (a timeout: 4, DEADLINE_EXCEEDED), the
//! answer it can act on; anything else gets the 502/503/504 of the other forwarders.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::scope::{hold_until_ready, upstream_error_response, RequestScope};
use crate::lifecycle::Lifecycle;
use crate::metrics::{DataPlaneMetrics, GoawayReason, UpstreamErrorKind};
use crate::phase::Phase;
use crate::upstream_h2::{H2Upstream, SendError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// After the drain timeout, how long a connection may take to write out the ends of its
/// streams before it is dropped (the shutdown driver waits 1 s for every connection).
const CUT_FLUSH: Duration = Duration::from_millis(500);

/// Flow-control windows offered to clients: as for the app ([`crate::upstream_h2`]), large
/// enough that a 16 MiB message does not crawl at 64 KiB per round trip.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// gRPC status codes lameduck answers with.
const GRPC_UNAVAILABLE: u32 = 14;
const GRPC_DEADLINE_EXCEEDED: u32 = 4;

/// Serves HTTP/2 client connections onto the app's h2c connections; see the module docs.
pub struct H2Forwarder {
    lc: Arc<Lifecycle>,
    metrics: Arc<DataPlaneMetrics>,
    app: H2Upstream,
    upstream: SocketAddr,
    startup_hold: Duration,
    upstream_timeout: Duration,
    /// `--idle-timeout`: a client connection with no stream open for this long is told to go
    /// (GOAWAY), as idle HTTP/1 connections are closed.
    idle_timeout: Duration,
    lame_duck: watch::Receiver<bool>,
}

/// Whether a client connection is in use: streams open on it, and when the last one ended.
struct Activity {
    open: std::sync::atomic::AtomicUsize,
    last: parking_lot::Mutex<tokio::time::Instant>,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            open: std::sync::atomic::AtomicUsize::new(0),
            last: parking_lot::Mutex::new(tokio::time::Instant::now()),
        })
    }

    /// When the connection became idle, or `None` while a stream is open.
    fn idle_since(&self) -> Option<tokio::time::Instant> {
        let last = *self.last.lock();
        (self.open.load(std::sync::atomic::Ordering::Acquire) == 0).then_some(last)
    }
}

/// Held by each stream (inside its [`Scope`]) for as long as it lives.
struct ActiveStream(Arc<Activity>);

impl ActiveStream {
    fn new(activity: &Arc<Activity>) -> Self {
        activity
            .open
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        ActiveStream(Arc::clone(activity))
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        *self.0.last.lock() = tokio::time::Instant::now();
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl H2Forwarder {
    pub fn new(
        args: &crate::config::DataPlaneConfig,
        lc: Arc<Lifecycle>,
        metrics: Arc<DataPlaneMetrics>,
    ) -> Self {
        H2Forwarder {
            lame_duck: lc.lame_duck_watch(),
            lc,
            metrics,
            app: H2Upstream::new(args.upstream, args.upstream_connect_timeout),
            upstream: args.upstream,
            startup_hold: args.startup_hold,
            upstream_timeout: args.upstream_timeout,
            idle_timeout: args.idle_timeout,
        }
    }

    /// Whether the app takes HTTP/2; see [`H2Upstream::speaks_h2c`].
    pub async fn app_speaks_h2c(&self) -> bool {
        self.app.speaks_h2c().await
    }

    /// Serves one client connection whose first bytes, `read`, were the HTTP/2 preface (`h2`)
    /// or, with `--upstream-protocol h2c`, the start of an HTTP/1 request: both become streams
    /// on the app's h2c connections. Returns once the connection has closed, or been cut at the
    /// drain timeout.
    pub async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        read: Vec<u8>,
        peer: SocketAddr,
        h2: bool,
    ) {
        let io = TokioIo::new(Prefixed {
            prefix: read,
            at: 0,
            inner: stream,
        });
        let this = Arc::clone(&self);
        let activity = Activity::new();
        let streams = Arc::clone(&activity);
        let service = service_fn(move |req| {
            let this = Arc::clone(&this);
            let active = ActiveStream::new(&streams);
            async move { this.forward(req, peer, active).await }
        });
        if h2 {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW);
            // GOAWAY(2^31-1) + PING as the window opens, GOAWAY(last id) on the PING's ack;
            // the connection then ends once its streams have.
            let lame_duck = wait_true(self.lame_duck.clone());
            let idle = idle_for(activity, self.idle_timeout);
            let told = async move {
                Some(tokio::select! {
                    _ = lame_duck => GoawayReason::Shutdown,
                    _ = idle => GoawayReason::Idle,
                })
            };
            self.drive(builder.serve_connection(io, service), told, peer)
                .await;
        } else {
            // HTTP/1: responses during the window carry `Connection: close` (see `forward`);
            // an idle connection is closed when draining begins, as on the native path.
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new());
            let lc = Arc::clone(&self.lc);
            let told = async move {
                lc.reached(Phase::Draining).await;
                None
            };
            self.drive(builder.serve_connection(io, service), told, peer)
                .await;
        }
    }

    /// Runs a client connection: `graceful_shutdown` once `tell` resolves (with why, for an
    /// HTTP/2 connection: that is its GOAWAY, counted); at the drain timeout
    /// each stream sees the cut switch and ends itself (trailers or RST_STREAM), and the
    /// connection gets a moment to write those frames out.
    async fn drive<C>(
        &self,
        conn: C,
        tell: impl Future<Output = Option<GoawayReason>>,
        peer: SocketAddr,
    ) where
        C: GracefulConnection,
        C::Error: std::fmt::Display,
    {
        tokio::pin!(conn);
        tokio::pin!(tell);
        // Drained with streams still open: the drain timeout cut them.
        let cut = self.lc.reached(Phase::Drained);
        tokio::pin!(cut);
        let mut told = false;
        loop {
            tokio::select! {
                biased;
                _ = &mut cut => break,
                goaway = tell.as_mut(), if !told => {
                    if let Some(reason) = goaway {
                        self.metrics.http2_goaway(reason);
                    }
                    conn.as_mut().graceful_shutdown();
                    told = true;
                }
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "client connection (h2c path) ended with an error");
                    }
                    return;
                }
            }
        }
        if !told {
            conn.as_mut().graceful_shutdown();
        }
        let _ = tokio::time::timeout(CUT_FLUSH, conn.as_mut()).await;
    }

    /// One stream: the request to the app, its response back.
    ///
    /// An `Err` resets the stream (hyper sends RST_STREAM with the error's h2 reason): that is
    /// how a plain HTTP/2 request still waiting for the app ends at the drain timeout.
    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        active: ActiveStream,
    ) -> Result<Response<ProxyBody>, h2::Error> {
        let grpc = is_grpc(req.headers());
        let http1_client = req.version() < http::Version::HTTP_2;
        let scope = Scope {
            request: RequestScope::open(&self.lc, &self.metrics),
            _active: active,
        };
        if scope.request.phase() == Phase::Starting && !self.lc.app_ready() {
            let held =
                hold_until_ready(&self.lc, &self.metrics, self.startup_hold, self.upstream).await;
            if let Err(refusal) = held {
                return Ok(answer(
                    scope,
                    grpc,
                    StatusCode::SERVICE_UNAVAILABLE,
                    GRPC_UNAVAILABLE,
                    refusal,
                ));
            }
        }
        let req = match self.upstream_request(req, peer) {
            Ok(req) => req,
            Err(why) => return Ok(answer(scope, grpc, StatusCode::BAD_REQUEST, 13, why)),
        };
        let sent = tokio::select! {
            biased;
            _ = self.lc.reached(Phase::Drained) => {
                if !grpc {
                    return Err(h2::Error::from(h2::Reason::CANCEL));
                }
                let why = "lameduck: the pod is shutting down and the drain timeout was reached before the app answered; call cut, retry elsewhere".to_string();
                return Ok(answer(scope, grpc, StatusCode::SERVICE_UNAVAILABLE, GRPC_UNAVAILABLE, why));
            }
            sent = tokio::time::timeout(self.upstream_timeout, self.app.send(req)) => sent,
        };
        let failure = match sent {
            Ok(Ok(resp)) => return Ok(self.relay(resp, scope, grpc, http1_client)),
            Ok(Err(e)) => e,
            Err(_) => SendError {
                kind: UpstreamErrorKind::Timeout,
                detail: format!(
                    "no response head within {}",
                    crate::config::fmt_duration(self.upstream_timeout)
                ),
            },
        };
        Ok(self.failed(scope, grpc, failure))
    }

    /// The app's response, on its way to the client: its head now, its body frame by frame.
    fn relay(
        &self,
        resp: Response<Incoming>,
        mut scope: Scope,
        grpc: bool,
        http1_client: bool,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = resp.into_parts();
        strip_connection_headers(&mut parts.headers);
        if http1_client && self.lc.phase().is_shutting_down() {
            // Moves an HTTP/1 client's next request to a new connection, elsewhere.
            parts
                .headers
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        scope.request.answered(parts.status.as_u16());
        let body = ProxyBody::Relay(Relay {
            inner: body,
            cut: Box::pin(drained(Arc::clone(&self.lc))),
            grpc,
            upstream: self.upstream,
            ended: false,
            scope,
        });
        Response::from_parts(parts, body)
    }

    /// The answer when the app could not be reached or gave no response head: for gRPC the
    /// status a client acts on (14 UNAVAILABLE, 4 DEADLINE_EXCEEDED), else 502/504; both say
    /// why.
    fn failed(&self, scope: Scope, grpc: bool, failure: SendError) -> Response<ProxyBody> {
        self.metrics.upstream_error(failure.kind);
        tracing::warn!(kind = failure.kind.as_str(), upstream = %self.upstream, grpc, error = %failure.detail, "upstream error (h2c)");
        let (status, text) = upstream_error_response(failure.kind, self.upstream);
        let code = if failure.kind == UpstreamErrorKind::Timeout {
            GRPC_DEADLINE_EXCEEDED
        } else {
            GRPC_UNAVAILABLE
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        let text = format!("{}: {}\n", text.trim_end(), failure.detail);
        answer(scope, grpc, status, code, text)
    }

    /// The client's request as it goes to the app: same method, path, headers and body;
    /// connection-specific headers dropped, `X-Forwarded-*` added as the other forwarders do.
    fn upstream_request(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Request<Incoming>, String> {
        let (mut parts, body) = req.into_parts();
        // HTTP/2 names the authority in `:authority`; an HTTP/1 client's `Host` becomes it.
        let host = parts.headers.remove(http::header::HOST);
        let authority = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .or_else(|| host.and_then(|h| h.to_str().ok().map(str::to_string)))
            .unwrap_or_else(|| self.upstream.to_string());
        parts.version = http::Version::HTTP_2;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = http::Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|e| format!("lameduck: bad request target: {e}\n"))?;
        strip_connection_headers(&mut parts.headers);
        let ip = peer.ip().to_string();
        let xff = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            parts.headers.insert("x-forwarded-for", v);
        }
        if !parts.headers.contains_key("x-forwarded-proto") {
            parts
                .headers
                .insert("x-forwarded-proto", HeaderValue::from_static("http"));
        }
        Ok(Request::from_parts(parts, body))
    }
}

/// HTTP/2 forbids connection-specific headers (RFC 9113, 8.2.2); `TE: trailers` is the one
/// allowed, and gRPC servers insist on it.
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
    let te_ok = headers
        .get_all(http::header::TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_ok {
        headers.remove(http::header::TE);
    }
}

/// Whether a request is a gRPC call (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim();
            ct.len() >= 16
                && ct[..16].eq_ignore_ascii_case("application/grpc")
                && matches!(ct.as_bytes().get(16), None | Some(b'+') | Some(b';'))
        })
}

/// lameduck's own answer: for gRPC, HTTP 200 with `grpc-status` and `grpc-message` in one
/// HEADERS frame (a "trailers-only" response, what gRPC servers send for an immediate error);
/// for anything else, `status` with `text`.
fn answer(
    mut scope: Scope,
    grpc: bool,
    status: StatusCode,
    grpc_code: u32,
    text: String,
) -> Response<ProxyBody> {
    if grpc {
        scope.request.answered(200);
        let mut resp = Response::new(ProxyBody::Own {
            data: None,
            _scope: scope,
        });
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        grpc_status(headers, grpc_code, text.trim_end());
        return resp;
    }
    scope.request.answered(status.as_u16());
    let mut resp = Response::new(ProxyBody::Own {
        data: Some(Bytes::from(text)),
        _scope: scope,
    });
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if matches!(status.as_u16(), 502 | 503) {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

fn grpc_status(headers: &mut HeaderMap, code: u32, message: &str) {
    headers.insert(GRPC_STATUS.clone(), HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE.clone(), v);
    }
}

/// `grpc-message` is percent-encoded: every byte outside printable ASCII, and `%` itself.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolves at the drain timeout's cut.
/// Completes once the connection has had no stream open for `timeout`.
async fn idle_for(activity: Arc<Activity>, timeout: Duration) {
    let mut check = tokio::time::Instant::now() + timeout;
    loop {
        tokio::time::sleep_until(check).await;
        match activity.idle_since() {
            Some(since) if since + timeout <= tokio::time::Instant::now() => return,
            Some(since) => check = since + timeout,
            None => check = tokio::time::Instant::now() + timeout,
        }
    }
}

async fn drained(lc: Arc<Lifecycle>) {
    lc.reached(Phase::Drained).await;
}

/// Resolves once the switch is on.
async fn wait_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|on| *on).await;
}

/// One stream for as long as its response is being sent: the request (counted in flight,
/// recorded when it ends however it ends) and the connection's activity (for its idle timeout).
struct Scope {
    request: RequestScope,
    _active: ActiveStream,
}

/// A response body: lameduck's own answer, or the app's relayed.
enum ProxyBody {
    Own { data: Option<Bytes>, _scope: Scope },
    Relay(Relay),
}

/// The app's response body, passed through frame by frame (trailers included) until it ends,
/// or the drain timeout cuts it, or the app breaks it off.
struct Relay {
    inner: Incoming,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
    grpc: bool,
    upstream: SocketAddr,
    ended: bool,
    /// Held until the body ends or is dropped: that is when the stream is recorded.
    scope: Scope,
}

impl Relay {
    /// The stream's last frame when lameduck has to end a gRPC call: trailers with a status.
    fn grpc_end(
        &mut self,
        code: u32,
        message: &str,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.ended = true;
        let mut trailers = HeaderMap::new();
        grpc_status(&mut trailers, code, message);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let relay = match self.get_mut() {
            ProxyBody::Own { data, .. } => {
                return Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
            }
            ProxyBody::Relay(relay) => relay,
        };
        if relay.ended {
            return Poll::Ready(None);
        }
        if relay.cut.as_mut().poll(cx).is_ready() {
            if relay.grpc {
                return relay.grpc_end(
                    GRPC_UNAVAILABLE,
                    "lameduck: the pod is shutting down and the drain timeout was reached; stream cut, retry elsewhere",
                );
            }
            relay.ended = true;
            return Poll::Ready(Some(Err(Box::new(h2::Error::from(h2::Reason::CANCEL)))));
        }
        match Pin::new(&mut relay.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                relay.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_trailers() {
                    relay.ended = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                relay
                    .scope
                    .request
                    .metrics()
                    .upstream_error(UpstreamErrorKind::Closed);
                let detail = crate::upstream_h2::error_text(&e);
                tracing::warn!(kind = "closed", upstream = %relay.upstream, grpc = relay.grpc, error = %detail, "upstream error (h2c) mid-response");
                if relay.grpc {
                    let message = format!(
                        "lameduck: the app at {} broke the stream off: {detail}",
                        relay.upstream
                    );
                    return relay.grpc_end(GRPC_UNAVAILABLE, &message);
                }
                relay.ended = true;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Own { data, .. } => data.is_none(),
            ProxyBody::Relay(relay) => relay.ended,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Own {
                data: Some(data), ..
            } => SizeHint::with_exact(data.len() as u64),
            ProxyBody::Own { data: None, .. } => SizeHint::with_exact(0),
            ProxyBody::Relay(_) => SizeHint::default(),
        }
    }
}

/// The client connection with the bytes already read (the preface) put back in front.
struct Prefixed {
    prefix: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let mut h = HeaderMap::new();
        for (ct, want) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC; charset=x", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&h), want, "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("a b%c\u{e9}\n"), "a b%25c%C3%A9%0A");
    }
}
